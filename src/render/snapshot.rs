//! The store's published state as one immutable, versioned value.
//!
//! Built by the store actor after every change and shared (`Arc`) with every shopper actor of
//! the store on this node; the JSON blocks see is serialised here, once per version, so no render
//! re-serialises the catalog.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;

use crate::engine::StoreRenderData;
use crate::ids::{ProductId, StoreId};
use crate::sqlite::StorageResult;
use crate::store::model::{PageVersion, Post, Product, StoreSettings, Theme};
use crate::store::repo;

#[derive(Debug)]
pub struct StoreSnapshot {
    pub store: StoreId,
    pub version: u64,
    pub settings: StoreSettings,
    pub theme: Theme,
    pub products: Vec<Product>,
    pub posts: Vec<Post>,
    pages: HashMap<String, PageVersion>,
    by_id: HashMap<ProductId, usize>,
    by_handle: HashMap<String, usize>,
    pub render_data: StoreRenderData,
    /// The page shell's store-wide parts (stylesheet per region, navigation).
    pub chrome: super::chrome::Chrome,
    /// Where checkouts are handed over (the store's commerce backend), if configured.
    pub orders_url: Option<String>,
}

impl StoreSnapshot {
    pub fn load(store: &StoreId, conn: &Connection) -> StorageResult<StoreSnapshot> {
        let version = repo::version(conn)?;
        let settings = repo::load_settings(conn)?;
        let theme = repo::load_theme(conn)?;
        let products = repo::list_products(conn)?;
        let posts = repo::list_posts(conn)?;
        let pages: HashMap<String, PageVersion> = repo::live_pages(conn)?.into_iter().map(|p| (p.slug.as_str().to_string(), p)).collect();
        let mut snapshot = Self::assemble(store.clone(), version, settings, theme, products, posts, pages);
        snapshot.orders_url = crate::feed::repo::orders_url(conn)?;
        Ok(snapshot)
    }

    /// A store with nothing published (used when its file cannot be read).
    pub fn empty(store: &StoreId) -> StoreSnapshot {
        Self::assemble(store.clone(), 0, StoreSettings::default(), Theme::default(), Vec::new(), Vec::new(), HashMap::new())
    }

    fn assemble(
        store: StoreId,
        version: u64,
        settings: StoreSettings,
        theme: Theme,
        products: Vec<Product>,
        posts: Vec<Post>,
        pages: HashMap<String, PageVersion>,
    ) -> StoreSnapshot {
        let by_id = products.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        let by_handle = products.iter().enumerate().map(|(i, p)| (p.handle.as_str().to_string(), i)).collect();
        let render_data = render_data(&store, version, &settings, &theme, &products, &posts, &pages);
        let chrome = super::chrome::Chrome::build(&theme, &pages, settings.analytics.clarity_project_id.as_deref());
        StoreSnapshot { store, version, settings, theme, products, posts, pages, by_id, by_handle, render_data, chrome, orders_url: None }
    }

    pub fn product(&self, id: &ProductId) -> Option<&Product> {
        self.by_id.get(id).map(|&i| &self.products[i])
    }
    pub fn product_by_handle(&self, handle: &str) -> Option<&Product> {
        self.by_handle.get(handle).map(|&i| &self.products[i])
    }
    pub fn page(&self, slug: &str) -> Option<&PageVersion> {
        self.pages.get(slug)
    }
    pub fn post(&self, slug: &str) -> Option<&Post> {
        self.posts.iter().find(|p| p.slug.as_str() == slug)
    }
}

pub type SharedSnapshot = Arc<StoreSnapshot>;

/// A snapshot's source data, as the store's owner sends it to other nodes. The receiving node
/// derives indexes and the blocks' JSON itself.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotParts {
    pub version: u64,
    pub settings: StoreSettings,
    pub theme: Theme,
    pub products: Vec<Product>,
    pub posts: Vec<Post>,
    pub pages: Vec<PageVersion>,
}

impl StoreSnapshot {
    pub fn parts(&self) -> SnapshotParts {
        let mut pages: Vec<PageVersion> = self.pages.values().cloned().collect();
        pages.sort_by(|a, b| a.slug.cmp(&b.slug));
        SnapshotParts {
            version: self.version,
            settings: self.settings.clone(),
            theme: self.theme.clone(),
            products: self.products.clone(),
            posts: self.posts.clone(),
            pages,
        }
    }

    pub fn from_parts(store: StoreId, p: SnapshotParts) -> StoreSnapshot {
        let pages = p.pages.into_iter().map(|pv| (pv.slug.as_str().to_string(), pv)).collect();
        Self::assemble(store, p.version, p.settings, p.theme, p.products, p.posts, pages)
    }
}

/// Products as blocks see them; `price` in major units as the seed's blocks expect.
pub fn product_json(p: &Product, settings: &StoreSettings) -> serde_json::Value {
    let c = &settings.currency;
    json!({
        "id": p.id,
        "handle": p.handle,
        "name": p.title,
        "title": p.title,
        "description": p.description,
        "price": c.to_major(p.price_minor),
        "priceMinor": p.price_minor,
        "compareAtPrice": p.compare_at_minor.map(|m| c.to_major(m)),
        "currency": c.code(),
        "image": p.images.first().cloned().unwrap_or_default(),
        "images": p.images,
        "stock": p.stock,
        "available": p.stock > 0,
        "tags": p.tags,
        "url": format!("/products/{}", p.handle),
    })
}

fn render_data(
    store: &StoreId,
    version: u64,
    settings: &StoreSettings,
    theme: &Theme,
    products: &[Product],
    posts: &[Post],
    pages: &HashMap<String, PageVersion>,
) -> StoreRenderData {
    let mut page_list: Vec<_> = pages.values().map(|p| json!({"slug": p.slug, "title": p.title})).collect();
    page_list.sort_by(|a, b| a["slug"].as_str().cmp(&b["slug"].as_str()));
    let storefront = json!({
        "id": store,
        "name": settings.name,
        "tagline": settings.tagline,
        "currency": settings.currency.code(),
        "locale": settings.locale,
        "theme": theme.resolve(None),
        "pages": page_list,
        "posts": posts.iter().map(|p| json!({
            "slug": p.slug,
            "title": p.title,
            "excerpt": p.excerpt,
            "body": p.body,
            "author": p.author,
            "image": p.image,
            "publishedAt": super::iso_from_ms(p.published_at),
            "url": format!("/blog/{}", p.slug),
        })).collect::<Vec<_>>(),
    });
    let products: Vec<_> = products.iter().map(|p| product_json(p, settings)).collect();
    StoreRenderData {
        version,
        storefront_json: storefront.to_string().into(),
        products_json: serde_json::Value::Array(products).to_string().into(),
    }
}
