//! Typed clients of a node: a shopper (a browser-like client of one store) and a store's admin,
//! so tests say `shopper.add_to_cart("mug", 2)` and `admin.publish_page("home")` instead of
//! building URLs. Hostile requests (forged origins, odd bodies) still go through the plain
//! `reqwest::Client` a `Shopper` dereferences to.

use std::ops::Deref;

use reqwest::header::{HeaderMap, ACCEPT, SET_COOKIE};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

/// A node's answer: status, headers, and the body as JSON (or as a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn of(res: Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// Status and body, as `json_of` returns them.
    pub fn parts(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }

    /// The first `Set-Cookie` header, if any.
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok())
    }

    /// The body as text (an HTML page, or JSON re-serialised).
    pub fn text(&self) -> String {
        match &self.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A browser-like client of one store (`http://{store}.localhost:PORT`): its own cookie jar, no
/// redirects followed. Dereferences to its `reqwest::Client` for requests built by hand.
#[derive(Clone)]
pub struct Shopper {
    http: Client,
    base: String,
}

impl Deref for Shopper {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.http
    }
}

impl Shopper {
    pub fn new(http: Client, base: String) -> Shopper {
        Shopper { http, base }
    }

    /// `http://{store}.localhost:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The store's URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /cart/items` (JSON): adds `quantity` of `product`.
    pub async fn add_to_cart(&self, product: &str, quantity: impl Into<Value>) -> Answer {
        let body = json!({"productId": product, "quantity": quantity.into()});
        Answer::of(self.http.post(self.url("/cart/items")).json(&body).send().await.expect("add to cart")).await
    }

    /// `PATCH /cart/items/{product}`: sets the line's quantity.
    pub async fn set_quantity(&self, product: &str, quantity: impl Into<Value>) -> Answer {
        let body = json!({"quantity": quantity.into()});
        Answer::of(self.http.patch(self.url(&format!("/cart/items/{product}"))).json(&body).send().await.expect("set quantity")).await
    }

    /// `DELETE /cart/items/{product}`.
    pub async fn remove_from_cart(&self, product: &str) -> Answer {
        Answer::of(self.http.delete(self.url(&format!("/cart/items/{product}"))).send().await.expect("remove from cart")).await
    }

    /// `GET /cart` as JSON, whatever its status.
    pub async fn cart_answer(&self) -> Answer {
        Answer::of(self.http.get(self.url("/cart")).send().await.expect("cart")).await
    }

    /// The cart (`GET /cart` → `cart`); asserts 200.
    pub async fn cart(&self) -> Value {
        let answer = self.cart_answer().await;
        assert_eq!(answer.status, StatusCode::OK, "GET /cart: {}", answer.body);
        answer.body["cart"].clone()
    }

    /// `GET path` as a browser asks for a page (`Accept: text/html`).
    pub async fn page(&self, path: &str) -> Answer {
        Answer::of(self.http.get(self.url(path)).header(ACCEPT, "text/html,application/xhtml+xml").send().await.expect("page")).await
    }
}

/// One store's admin API (`/admin/api/v1/stores/{store}/…`) with a bearer token.
#[derive(Clone)]
pub struct Admin {
    http: Client,
    api: String,
    store: String,
    token: String,
}

impl Admin {
    /// `api` is `http://ADDR/admin/api/v1`.
    pub fn new(http: Client, api: String, store: &str, token: &str) -> Admin {
        Admin { http, api, store: store.to_string(), token: token.to_string() }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// `method` on the store's `path` (`""` for the store itself, else starting with `/`).
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}/stores/{}{path}", self.api, self.store)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer = Answer::of(req.send().await.expect("admin request")).await;
        (answer.status, answer.body)
    }

    /// `POST /products` with `{"products": products}` (upserts several).
    pub async fn put_products(&self, products: Value) -> (StatusCode, Value) {
        self.request(Method::POST, "/products", Some(json!({ "products": products }))).await
    }

    /// `PUT /products/{id}`.
    pub async fn put_product(&self, id: &str, product: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, &format!("/products/{id}"), Some(product)).await
    }

    /// `DELETE /products/{id}`.
    pub async fn delete_product(&self, id: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, &format!("/products/{id}"), None).await
    }

    /// `PUT /pages/{slug}` (the draft).
    pub async fn put_page(&self, slug: &str, page: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, &format!("/pages/{slug}"), Some(page)).await
    }

    /// `POST /pages/{slug}/publish`.
    pub async fn publish_page(&self, slug: &str) -> (StatusCode, Value) {
        self.request(Method::POST, &format!("/pages/{slug}/publish"), None).await
    }

    /// `PUT /pages/{slug}` then publish; asserts both succeed.
    pub async fn publish_new_page(&self, slug: &str, page: Value) {
        let (s, b) = self.put_page(slug, page).await;
        assert_eq!(s, StatusCode::OK, "put page {slug}: {b}");
        let (s, b) = self.publish_page(slug).await;
        assert_eq!(s, StatusCode::OK, "publish page {slug}: {b}");
    }

    /// `PATCH /settings`.
    pub async fn patch_settings(&self, settings: Value) -> (StatusCode, Value) {
        self.request(Method::PATCH, "/settings", Some(settings)).await
    }

    /// `PUT /theme`.
    pub async fn put_theme(&self, theme: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, "/theme", Some(theme)).await
    }
}

/// Sends through `send` until the answer is not a 503 (an actor moving between nodes, a lease
/// coming back), every 100 ms for up to 15 s.
pub async fn past_503<F, Fut>(send: F) -> Answer
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    for _ in 0..150 {
        let answer = send().await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("kept answering 503");
}
