//! Puts a realistic store on a node through the admin API — the demo store's settings, theme,
//! 24 products, published home page and posts — and creates shoppers with carts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::client::{Body, Conn, Target};
use crate::driver::{self, Phase};

const DEMO_STORE: &str = include_str!("../../config/demo-store.json");

/// A store set up for the workloads.
#[derive(Clone)]
pub struct Store {
    pub id: String,
    pub products: Vec<String>,
    /// Product handles (`/products/{handle}`), in the order of `products`.
    pub handles: Vec<String>,
}

pub async fn admin(conn: &mut Conn, node: &Target, token: &str, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let bytes = Bytes::from(body.map(Value::to_string).unwrap_or_default());
    let answer = conn
        .send(|| {
            node.request(method.clone(), &format!("/admin/api/v1{path}"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::new(bytes.clone()))
                .expect("valid admin request")
        })
        .await?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    ensure!((200..300).contains(&answer.status), "{method} {path}: HTTP {}: {text}", answer.status);
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a store named `{prefix}-{random}` (so runs against a long-lived node never collide)
/// with the operator token and fills it like the demo store. Product stock is effectively
/// unlimited so W3 never runs out.
pub async fn seed_store(node: &Target, operator_token: &str, prefix: &str) -> anyhow::Result<Store> {
    let id = &format!("{prefix}-{:06}", rand::random::<u32>() % 1_000_000);
    let seed: Value = serde_json::from_str(DEMO_STORE)?;
    let mut conn = Conn::new(node.addr);
    let admin_node = Target { addr: node.addr, host: node.addr.to_string() };
    let mut create = seed["settings"].clone();
    create["id"] = json!(id);
    let created = admin(&mut conn, &admin_node, operator_token, Method::POST, "/stores", Some(&create)).await?;
    let token = created["adminToken"].as_str().context("adminToken in the create answer")?.to_string();
    let base = format!("/stores/{id}");
    admin(&mut conn, &admin_node, &token, Method::PUT, &format!("{base}/theme"), Some(&seed["theme"])).await?;

    let mut products = Vec::new();
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    for p in seed["products"].as_array().context("products")? {
        let mut p = p.clone();
        let pid = p["id"].as_str().context("product id")?.to_string();
        handles.push(p["handle"].as_str().context("product handle")?.to_string());
        if let Value::Object(m) = &mut p {
            m.remove("swatch");
            m.remove("emoji");
            m.insert("stock".into(), json!(1_000_000_000));
            m.insert("images".into(), json!([format!("/img/{pid}.svg")]));
        }
        ids.push(pid);
        products.push(p);
    }
    admin(&mut conn, &admin_node, &token, Method::POST, &format!("{base}/products"), Some(&json!({ "products": products }))).await?;
    for page in seed["pages"].as_array().context("pages")? {
        let slug = page["slug"].as_str().context("slug")?;
        let body = json!({"title": page["title"], "description": page["description"], "blocks": page["blocks"]});
        admin(&mut conn, &admin_node, &token, Method::PUT, &format!("{base}/pages/{slug}"), Some(&body)).await?;
        admin(&mut conn, &admin_node, &token, Method::POST, &format!("{base}/pages/{slug}/publish"), None).await?;
    }
    for post in seed["posts"].as_array().context("posts")? {
        let slug = post["slug"].as_str().context("slug")?;
        let mut body = post.clone();
        if let Value::Object(m) = &mut body {
            m.remove("slug");
        }
        admin(&mut conn, &admin_node, &token, Method::PUT, &format!("{base}/posts/{slug}"), Some(&body)).await?;
    }
    Ok(Store { id: id.to_string(), products: ids, handles })
}

/// `count` session ids unique to this run (`tag` distinguishes sets within a run).
pub fn session_ids(tag: &str, count: usize) -> Arc<Vec<String>> {
    let run: u32 = rand::random();
    Arc::new((0..count).map(|i| format!("lt-{tag}-{run:08x}-{i}")).collect())
}

/// The `Cookie` header of the suite's shopper `sid`: its token signed with the nodes' key.
pub fn session_cookie(sid: &str) -> String {
    test_support::session::cookie(crate::spawn::SESSION_KEY.as_bytes(), sid)
}

/// A browser-like page request for shopper `sid`.
pub fn page_request(target: &Target, path: &str, sid: Option<&str>) -> Request<Body> {
    let mut b = target
        .request(Method::GET, path)
        .header("accept", "text/html")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) vitrina-load");
    if let Some(sid) = sid {
        b = b.header("cookie", session_cookie(sid));
    }
    b.body(Body::default()).expect("valid page request")
}

/// `GET /cart` as JSON: a message to the shopper's actor (it counts as activity) that renders
/// nothing.
pub fn cart_json_request(target: &Target, sid: &str) -> Request<Body> {
    target
        .request(Method::GET, "/cart")
        .header("accept", "application/json")
        .header("cookie", session_cookie(sid))
        .body(Body::default())
        .expect("valid cart request")
}

/// `POST /cart/items` as JSON, one of `product`.
pub fn add_to_cart_request(target: &Target, sid: &str, product: &str) -> Request<Body> {
    target
        .request(Method::POST, "/cart/items")
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .header("cookie", session_cookie(sid))
        .body(Body::new(Bytes::from(format!(r#"{{"productId":"{product}","quantity":1}}"#))))
        .expect("valid cart request")
}

/// Gives every shopper in `sids` one cart line (a durable write) and, if `render`, renders
/// their home page once (creates the isolate, fills the personal HTML cache).
pub async fn create_shoppers(
    target: &Target,
    store: &Store,
    sids: &Arc<Vec<String>>,
    render: bool,
    connections: usize,
) -> anyhow::Result<()> {
    let pass = Phase {
        connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(600),
        rate: None,
        max_requests: Some(sids.len() as u64),
    };
    let (t, s, products) = (target.clone(), sids.clone(), store.products.clone());
    let add: driver::MakeRequest = Arc::new(move |i| add_to_cart_request(&t, &s[i as usize], &products[i as usize % products.len()]));
    let out = driver::run(target, &pass, add, |a| a.status == 201, None).await;
    ensure!(out.errors == 0, "adding to {} carts: {} errors, first: {:?}", sids.len(), out.errors, out.first_error);
    if render {
        let (t, s) = (target.clone(), sids.clone());
        let page: driver::MakeRequest = Arc::new(move |i| page_request(&t, "/", Some(&s[i as usize])));
        let out = driver::run(target, &pass, page, |a| a.status == 200, None).await;
        ensure!(out.errors == 0, "rendering {} pages: {} errors, first: {:?}", sids.len(), out.errors, out.first_error);
    }
    Ok(())
}

/// The node's `GET /healthz` answer.
pub async fn health(node: &Target) -> anyhow::Result<Value> {
    let mut conn = Conn::new(node.addr);
    let answer = conn.send(|| node.request(Method::GET, "/healthz").body(Body::default()).expect("valid request")).await?;
    Ok(serde_json::from_slice(&answer.body)?)
}

/// `GET /healthz` → live shopper actors.
pub async fn live_shoppers(node: &Target) -> anyhow::Result<u64> {
    Ok(live_and_changing(node).await?.0)
}

/// `GET /healthz` → live shopper actors, and actors of any kind still activating or closing
/// their files (0 from builds that do not report it).
pub async fn live_and_changing(node: &Target) -> anyhow::Result<(u64, u64)> {
    let health = health(node).await?;
    let live = health["liveActors"]["shoppers"].as_u64().context("liveActors.shoppers in /healthz")?;
    Ok((live, health["changingActors"].as_u64().unwrap_or(0)))
}
