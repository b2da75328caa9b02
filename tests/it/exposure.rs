//! What a node shows the world, black-box: security headers on pages, errors and the admin
//! API; a CSP whose hashes cover exactly the shell's inline script and styles (and the
//! analytics snippet of a store that opted in); `/metrics` and `/cluster/status` only for the
//! operator; `x-vitrina-node` a stable id, never an address. Rows of the `edge-security` table.

use base64::Engine as _;
use reqwest::header::ACCEPT;
use reqwest::StatusCode;
use serde_json::json;
use sha2::Digest as _;
use test_support::table::record_with;
use test_support::*;

const HTML: &str = "text/html,application/xhtml+xml";
const TABLE: &str = "edge-security";

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(res, "referrer-policy"), "strict-origin-when-cross-origin", "{what}");
    assert_eq!(header(res, "x-frame-options"), "SAMEORIGIN", "{what}");
    let csp = header(res, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'self'"), "{what}: {csp}");
}

/// The text of every inline `<tag>…</tag>` (no attributes) in `html`.
fn inline(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes())))
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let node = TestNode::start();
    let token = node.seed_store("hdr", "Headers").await;
    let c = node.shopper("hdr");
    let base = node.base("hdr");
    let cases = [
        ("store page", c.get(&base).header(ACCEPT, HTML)),
        ("JSON cart", c.get(format!("{base}/cart"))),
        ("404 page", c.get(format!("{base}/pages/nope")).header(ACCEPT, HTML)),
        ("404 JSON", c.get(format!("{base}/nope"))),
        ("unknown host", node.plain().get(format!("http://{}/", node.addr)).header("host", "nobody.localhost")),
        ("admin API", node.plain().get(node.admin_url("/stores/hdr")).bearer_auth(&token)),
        ("admin API 401", node.plain().get(node.admin_url("/stores/hdr")).bearer_auth("wrong")),
        ("healthz", node.plain().get(format!("http://{}/healthz", node.addr))),
    ];
    for (what, req) in cases {
        let res = req.send().await.unwrap();
        assert_security_headers(&res, what);
        record_with(TABLE, "exposure", &format!("security headers: {what}"), "verified", &res.status().as_u16().to_string());
    }
}

#[tokio::test]
async fn the_page_policy_allows_the_shell_and_the_opted_in_analytics_only() {
    let node = TestNode::start();
    let token = node.seed_store("csp", "Csp").await;
    let c = node.shopper("csp");
    let base = node.base("csp");
    // A merchant block that writes a <script>: its hash is not in the policy, so it cannot run.
    let page = json!({"title": "Home", "blocks": [
        {"type": "hero", "config": {"heading": "Hello"}},
        {"type": "custom", "code": "function evil() { return '<script>alert(1)</script><p>hi</p>'; }"},
    ]});
    let (s, b) = node.store_admin("csp", &token).put_page("home", page).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.store_admin("csp", &token).publish_page("home").await;
    assert_eq!(s, 200, "{b}");

    let check = |html: &str, csp: &str| {
        let scripts = inline(html, "script");
        assert!(!scripts.is_empty());
        for script in &scripts {
            let allowed = csp.contains(&hash_source(script));
            assert_eq!(allowed, !script.contains("alert(1)"), "script {:.60}… allowed={allowed}: {csp}", script);
        }
        for style in inline(html, "style") {
            assert!(csp.contains(&hash_source(&style)), "the shell's stylesheet is allowed");
        }
        assert!(!csp.contains("'unsafe-inline'") || csp.contains("style-src-attr 'unsafe-inline'"), "{csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'") && !csp.contains("unsafe-eval"), "{csp}");
    };
    let res = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    let csp = header(&res, "content-security-policy");
    let html = res.text().await.unwrap();
    check(&html, &csp);
    assert!(!csp.contains("clarity"), "no analytics origin for a store without analytics: {csp}");
    record_with(TABLE, "exposure", "a <script> in a merchant block", "refused", "not in the page's CSP hashes");

    // Opting into analytics adds its snippet's hash and origin, and nothing else.
    let (s, b) = node.store_admin("csp", &token).patch_settings(json!({"analytics": {"clarityProjectId": "abc123"}})).await;
    assert_eq!(s, 200, "{b}");
    let res = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    let csp = header(&res, "content-security-policy");
    let html = res.text().await.unwrap();
    assert!(html.contains("clarity.ms/tag/"));
    check(&html, &csp);
    assert!(csp.contains("https://www.clarity.ms"), "{csp}");
    record_with(TABLE, "exposure", "CSP of a store that opted into analytics", "verified", "snippet hash + clarity.ms only");
}

#[tokio::test]
async fn metrics_and_cluster_status_need_the_operator_token() {
    // Twelve refusals from one address: past the default lockout allowance (tests/it/abuse.rs).
    let node = TestNode::start_with(&[("VITRINA_LIMITS__AUTH_FAILURES_BEFORE_LOCKOUT", "100")]);
    let store_token = node.create_store("peek", "Peek").await;
    let hosts = [format!("{}", node.addr), format!("peek.localhost:{}", node.addr.port())];
    for path in ["/metrics", "/cluster/status"] {
        for host in &hosts {
            for (who, bearer) in
                [("no token", None), ("a store's admin token", Some(store_token.as_str())), ("a wrong token", Some("nope"))]
            {
                let mut req = node.plain().get(format!("http://{}{path}", node.addr)).header("host", host);
                if let Some(b) = bearer {
                    req = req.bearer_auth(b);
                }
                let (s, body) = json_of(req.send().await.unwrap()).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} on {host} with {who}: {body}");
                assert_error_body(&body, "unauthorized");
                record_with(
                    TABLE,
                    "exposure",
                    &format!("{path} on {} with {who}", if host.starts_with("peek") { "a store host" } else { "the node address" }),
                    "refused",
                    "401",
                );
            }
        }
        let res = node.plain().get(format!("http://{}{path}", node.addr)).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path} with the operator token");
    }
    assert!(node.metrics_text().await.contains("vitrina_live_actors"));
}

#[tokio::test]
async fn the_node_header_is_a_stable_id_not_an_address() {
    let node = TestNode::start();
    node.seed_store("who", "Who").await;
    let res = node.shopper("who").get(node.base("who")).send().await.unwrap();
    let id = header(&res, "x-vitrina-node");
    let port = node.addr.port().to_string();
    assert!(!id.is_empty() && !id.contains("127") && !id.contains(&port), "{id}");
    let node = node.kill_and_restart();
    let res = node.shopper("who").get(node.base("who")).send().await.unwrap();
    assert_eq!(header(&res, "x-vitrina-node"), id, "stable across restarts");
    record_with(TABLE, "exposure", "x-vitrina-node", "refused", "a generated node id, no address");
}
