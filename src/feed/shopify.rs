//! Shopify's REST product shape → [`CatalogChange`].
//!
//! Mapping: id = the Shopify id as a string; price and compare-at price from the first variant;
//! stock = sum of the variants' `inventory_quantity` (negative, i.e. oversold, counts as 0);
//! description = `body_html` reduced to text; tags = the comma-separated `tags` string; images
//! = `images[].src` that are safe URLs. Locations are not modelled: an
//! `inventory_levels/update` sets the item's stock to `available` as if it had one location.

use serde::Deserialize;
use serde_json::Value;

use super::{rfc3339_ms, CatalogChange, ProductUpsert};
use crate::ids::ProductId;
use crate::store::model::{is_safe_url, slugify, ProductInput};

/// The `X-Shopify-Topic`s we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    ProductCreate,
    ProductUpdate,
    ProductDelete,
    InventoryLevelUpdate,
}

impl Topic {
    pub fn parse(raw: &str) -> Option<Topic> {
        match raw.trim() {
            "products/create" => Some(Topic::ProductCreate),
            "products/update" => Some(Topic::ProductUpdate),
            "products/delete" => Some(Topic::ProductDelete),
            "inventory_levels/update" => Some(Topic::InventoryLevelUpdate),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ShopifyProduct {
    pub id: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body_html: Option<String>,
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub variants: Vec<ShopifyVariant>,
    #[serde(default)]
    pub images: Vec<ShopifyImage>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ShopifyVariant {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub price: Option<Value>,
    #[serde(default)]
    pub compare_at_price: Option<Value>,
    #[serde(default)]
    pub inventory_quantity: Option<i64>,
    #[serde(default)]
    pub inventory_item_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct ShopifyImage {
    pub src: String,
}

#[derive(Debug, Deserialize)]
struct DeletePayload {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct InventoryLevel {
    inventory_item_id: u64,
    available: Option<i64>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// Parses a webhook body of `topic`; `now_ms` stamps payloads that carry no `updated_at`.
pub fn change_from_webhook(topic: Topic, body: &[u8], now_ms: i64) -> Result<CatalogChange, String> {
    match topic {
        Topic::ProductCreate | Topic::ProductUpdate => {
            let p: ShopifyProduct = serde_json::from_slice(body).map_err(|e| format!("invalid product payload: {e}"))?;
            product_change(p, now_ms)
        }
        Topic::ProductDelete => {
            let d: DeletePayload = serde_json::from_slice(body).map_err(|e| format!("invalid delete payload: {e}"))?;
            Ok(CatalogChange::Delete { product: product_id(d.id)?, updated_ms: now_ms })
        }
        Topic::InventoryLevelUpdate => {
            let l: InventoryLevel = serde_json::from_slice(body).map_err(|e| format!("invalid inventory payload: {e}"))?;
            Ok(CatalogChange::InventoryLevel {
                item: l.inventory_item_id.to_string(),
                available: l.available.unwrap_or(0).max(0),
                updated_ms: timestamp(l.updated_at.as_deref(), now_ms)?,
            })
        }
    }
}

fn product_id(id: u64) -> Result<ProductId, String> {
    ProductId::parse(&id.to_string()).map_err(|e| e.to_string())
}

fn timestamp(raw: Option<&str>, now_ms: i64) -> Result<i64, String> {
    match raw {
        None => Ok(now_ms),
        Some(t) => rfc3339_ms(t).ok_or_else(|| format!("updated_at {t:?} is not an RFC 3339 timestamp")),
    }
}

/// One Shopify product (webhook body or an element of `products.json`) as an upsert.
pub fn product_change(p: ShopifyProduct, now_ms: i64) -> Result<CatalogChange, String> {
    let id = product_id(p.id)?;
    let first = p.variants.first().ok_or_else(|| format!("product {id} has no variants"))?;
    let price = first.price.clone().ok_or_else(|| format!("product {id}: the first variant has no price"))?;
    let items: Vec<(String, i64)> = p
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let item = match (v.inventory_item_id, v.id) {
                (Some(item), _) => item.to_string(),
                (None, Some(variant)) => format!("variant:{variant}"),
                (None, None) => format!("product:{id}:{i}"),
            };
            (item, v.inventory_quantity.unwrap_or(0).max(0))
        })
        .collect();
    let handle = p.handle.as_deref().map(slugify).filter(|h| !h.is_empty()).unwrap_or_else(|| slugify(&p.title));
    let input = ProductInput {
        id: Some(id.to_string()),
        handle: Some(if handle.is_empty() { format!("product-{id}") } else { handle }),
        title: p.title.chars().take(300).collect(),
        description: html_to_text(p.body_html.as_deref().unwrap_or(""), 20_000),
        price: Some(price),
        price_minor: None,
        compare_at_price: first.compare_at_price.clone().filter(|v| !v.is_null() && v.as_str() != Some("")),
        compare_at_price_minor: None,
        images: p.images.into_iter().map(|i| i.src).filter(|s| is_safe_url(s) && s.len() <= 2048).take(20).collect(),
        stock: 0,
        tags: p.tags.as_deref().unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()).take(50).map(str::to_string).collect(),
        position: None,
    };
    let updated_ms = timestamp(p.updated_at.as_deref(), now_ms)?;
    Ok(CatalogChange::Upsert(Box::new(ProductUpsert { input, id, updated_ms, items })))
}

/// Merchant HTML reduced to plain text: tags dropped (with the contents of `script` and
/// `style`), the common entities decoded, whitespace collapsed, at most `max_bytes`. Blocks
/// escape descriptions when they render them; this keeps markup out of the data altogether.
pub fn html_to_text(html: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(html.len().min(max_bytes));
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &lower[i..];
            let skip_to = ["script", "style"].iter().find_map(|tag| {
                let open = format!("<{tag}");
                rest.starts_with(&open).then(|| rest.find(&format!("</{tag}")).map(|end| i + end).unwrap_or(bytes.len()))
            });
            let from = skip_to.unwrap_or(i);
            i = match lower[from..].find('>') {
                Some(end) => from + end + 1,
                None => bytes.len(),
            };
            out.push(' ');
            continue;
        }
        let next = html[i..].find('<').map(|n| i + n).unwrap_or(bytes.len());
        out.push_str(&html[i..next]);
        i = next;
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut text = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_becomes_text() {
        let html = "<p>Warm <b>wool</b>&nbsp;socks &amp; more</p><script>alert(1)</script><style>p{}</style>\n<ul><li>one</li></ul>";
        assert_eq!(html_to_text(html, 1000), "Warm wool socks & more one");
        assert_eq!(html_to_text("<p>héllo wörld</p>", 4), "hél");
        assert_eq!(html_to_text("a <unclosed", 100), "a");
    }

    #[test]
    fn a_rest_product_maps_to_an_upsert() {
        let body = json!({
            "id": 632910392, "title": "IPod Nano - 8GB", "body_html": "<p>It's the <em>small</em> iPod</p>",
            "handle": "ipod-nano", "tags": "Emotive, Flash Memory, ",
            "updated_at": "2024-01-02T10:00:00-05:00",
            "variants": [
                {"id": 1, "price": "199.00", "compare_at_price": null, "inventory_quantity": 10, "inventory_item_id": 808950810},
                {"id": 2, "price": "209.00", "inventory_quantity": -2, "inventory_item_id": 808950811}
            ],
            "images": [{"src": "https://cdn.example/ipod.png"}, {"src": "javascript:alert(1)"}]
        });
        let change = change_from_webhook(Topic::ProductUpdate, body.to_string().as_bytes(), 0).unwrap();
        let CatalogChange::Upsert(u) = change else { panic!("not an upsert") };
        assert_eq!(u.id.as_str(), "632910392");
        assert_eq!(u.input.description, "It's the small iPod");
        assert_eq!(u.input.tags, vec!["Emotive", "Flash Memory"]);
        assert_eq!(u.input.images, vec!["https://cdn.example/ipod.png"]);
        assert_eq!(u.items, vec![("808950810".to_string(), 10), ("808950811".to_string(), 0)]);
        assert_eq!(u.updated_ms, 1_704_207_600_000);
        assert!(change_from_webhook(Topic::ProductUpdate, br#"{"id": 1, "variants": []}"#, 0).is_err());
    }
}
