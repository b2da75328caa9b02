//! `vitrina serve --demo`: seeds the demo storefront `demo` from `config/demo-store.json`
//! through the same admin operations the API uses, so the demo exercises the real write path.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::actors::store::{Admin, AdminOp};
use crate::catalog::AdminToken;
use crate::http::admin::create_store_with;
use crate::ids::{Slug, StoreId};
use crate::node::Node;

const DEMO_STORE: &str = include_str!("../config/demo-store.json");
pub const DEMO_STORE_ID: &str = "demo";

/// Creates and fills the demo store unless it exists. Returns its admin token, which is also
/// kept in `{data_dir}/demo-admin-token` (the catalog stores only its hash).
pub async fn seed(node: &Arc<Node>) -> anyhow::Result<String> {
    let id = StoreId::parse(DEMO_STORE_ID)?;
    let token_file = node.layout.root().join("demo-admin-token");
    if node.catalog.store_exists(&id)? {
        if let Ok(saved) = std::fs::read_to_string(&token_file) {
            let saved = saved.trim().to_string();
            if node.catalog.store_for_token(&saved)?.as_ref() == Some(&id) {
                return Ok(saved);
            }
        }
        let token = AdminToken::generate();
        node.catalog.rotate_token(&id, &token)?;
        node.push_catalog().await;
        crate::private_files::write_text(&token_file, &token.0)?;
        return Ok(token.0);
    }

    let seed: Value = serde_json::from_str(DEMO_STORE)?;
    let (_, token) = create_store_with(node, &id, &seed["settings"]).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = |op: AdminOp| {
        let node = node.clone();
        let id = id.clone();
        async move { node.ask_store(&id, Admin::op(op)).await.map_err(|e| anyhow::anyhow!("{e}"))?.map_err(|e| anyhow::anyhow!("{e}")) }
    };
    run(AdminOp::PutTheme(serde_json::from_value(seed["theme"].clone())?)).await?;

    let products: Vec<(Option<_>, Value)> =
        seed["products"].as_array().map(|list| list.iter().map(|p| (None, demo_product(p))).collect()).unwrap_or_default();
    run(AdminOp::UpsertProducts(products)).await?;

    for page in seed["pages"].as_array().into_iter().flatten() {
        let slug = Slug::parse(page["slug"].as_str().unwrap_or_default())?;
        run(AdminOp::PutPage {
            slug: slug.clone(),
            title: page["title"].as_str().unwrap_or_default().to_string(),
            description: page["description"].as_str().unwrap_or_default().to_string(),
            blocks: page["blocks"].as_array().cloned(),
        })
        .await?;
        run(AdminOp::Publish(slug)).await?;
    }
    for post in seed["posts"].as_array().into_iter().flatten() {
        let slug = Slug::parse(post["slug"].as_str().unwrap_or_default())?;
        let mut body = post.clone();
        if let Value::Object(m) = &mut body {
            m.remove("slug");
        }
        run(AdminOp::PutPost { slug, post: body }).await?;
    }
    crate::private_files::write_text(&token_file, &token.0)?;
    Ok(token.0)
}

/// A seed product with its placeholder picture drawn as an SVG data URI.
fn demo_product(p: &Value) -> Value {
    let mut out = p.clone();
    let swatch = p["swatch"].as_str().unwrap_or("#888888");
    let swatch =
        if swatch.len() == 7 && swatch.starts_with('#') && swatch[1..].bytes().all(|b| b.is_ascii_hexdigit()) { swatch } else { "#888888" };
    let emoji = crate::render::escape_html(p["emoji"].as_str().unwrap_or("🛍️"));
    let title = crate::render::escape_html(p["title"].as_str().unwrap_or_default());
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='600' height='600' viewBox='0 0 600 600'><rect width='600' height='600' fill='{swatch}'/><circle cx='300' cy='270' r='170' fill='#ffffff' fill-opacity='0.18'/><text x='300' y='330' font-size='180' text-anchor='middle'>{emoji}</text><text x='300' y='545' font-family='Georgia, serif' font-size='34' fill='#ffffff' text-anchor='middle'>{title}</text></svg>"
    );
    let uri = format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg));
    if let Value::Object(m) = &mut out {
        m.remove("swatch");
        m.remove("emoji");
        m.insert("images".into(), json!([uri]));
    }
    out
}
