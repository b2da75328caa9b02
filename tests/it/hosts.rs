//! Hosts belong to their stores (issue 17, host takeover), black-box: a store cannot claim
//! another store's default host (existing or not yet created), localhost, IP literals or names
//! under the base domain; a custom domain serves only once its owner proved control of it; the
//! operator assigns, revokes and settles; a host that moves never serves the old store's page;
//! catalogs from before verification keep their hosts.

use std::sync::{Arc, Mutex};

use crate::fake_http::{self, Reply};
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::table::record;
use test_support::*;

const TABLE: &str = "edge-security";
const OPERATOR: &str = "test-operator-token";

/// The home page served at `host` (sent to the node whatever the name resolves to).
async fn home_at(node: &TestNode, host: &str) -> (StatusCode, String) {
    let client = reqwest::Client::builder().resolve(host, node.addr).build().expect("client");
    let res = client.get(format!("http://{host}:{}/", node.addr.port())).header("accept", "text/html").send().await.expect("page");
    (res.status(), res.text().await.unwrap_or_default())
}

async fn claim(node: &TestNode, token: &str, store: &str, host: &str) -> (StatusCode, serde_json::Value) {
    node.admin(token, Method::POST, &format!("/stores/{store}/domains"), Some(json!({"host": host}))).await
}

#[tokio::test]
async fn default_hosts_localhost_and_ip_literals_cannot_be_claimed() {
    let node = TestNode::start();
    let attacker = node.seed_store("attacker", "Attacker").await;
    node.seed_store("victim", "Victim").await;

    for (case, host, code) in [
        ("another store's default host", "victim.localhost", "host_reserved"),
        ("another store's default host, upper case with port and dot", "VICTIM.localhost.:8080", "host_reserved"),
        ("default host of a store not yet created", "future.localhost", "host_reserved"),
        ("name under another store's default host", "www.victim.localhost", "host_reserved"),
        ("the base domain itself (localhost)", "localhost", "host_reserved"),
        ("IP literal 127.0.0.1", "127.0.0.1", "host_ip_literal"),
        ("IP literal 127.1", "127.1", "host_ip_literal"),
        ("IP literal 2130706433 (decimal)", "2130706433", "host_ip_literal"),
        ("IP literal 0x7f.1 (hex)", "0x7f.1", "host_ip_literal"),
        ("IP literal 0177.0.0.1 (octal)", "0177.0.0.1", "host_ip_literal"),
        ("IP literal [::1]", "[::1]", "host_ip_literal"),
        ("IP literal ::ffff:127.0.0.1", "::ffff:127.0.0.1", "host_ip_literal"),
        ("IP literal 10.0.0.1", "10.0.0.1", "host_ip_literal"),
    ] {
        let (s, b) = claim(&node, &attacker, "attacker", host).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {b}");
        assert_error_body(&b, code);
        record(TABLE, "host-takeover", &format!("claim {case}"), "refused");
    }
    let (s, b) = claim(&node, &attacker, "attacker", "not a host!").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_error_body(&b, "invalid_host");
    // Its own default host needs no claim and is not an error.
    let (s, b) = claim(&node, &attacker, "attacker", "attacker.localhost").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "verified");

    // The victim is still served at its host, and the store created later at its own.
    let (s, page) = home_at(&node, "victim.localhost").await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Victim"), "the victim's page");
    node.seed_store("future", "Future").await;
    let (s, page) = home_at(&node, "future.localhost").await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Future") && !page.contains("Attacker"), "the new store's own page");
    record(TABLE, "host-takeover", "store created after another store tried its host serves itself", "refused");

    // The operator API is the operator's.
    let (s, b) = node.admin(&attacker, Method::PUT, "/hosts/victim-shop.test", Some(json!({"store": "attacker"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = node.admin(&attacker, Method::DELETE, "/hosts/victim.localhost", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    record(TABLE, "host-takeover", "store token on the operator's host API", "refused");
    // Nor can the operator hand one store's default host to another.
    let (s, b) = node.admin(OPERATOR, Method::PUT, "/hosts/victim.localhost", Some(json!({"store": "attacker"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_error_body(&b, "host_reserved");
}

#[tokio::test]
async fn custom_domains_serve_once_verified_and_the_operator_settles() {
    // The domain owner's web server: serves whatever token the test puts there.
    let served: Arc<Mutex<String>> = Arc::default();
    let handler: fake_http::Handler = {
        let served = served.clone();
        Arc::new(move |_m, target| {
            let token = served.lock().expect("lock").clone();
            if !token.is_empty() && target == format!("/.well-known/vitrina-verification/{token}") {
                Reply::ok(format!("{token}\n"))
            } else {
                Reply::status(404)
            }
        })
    };
    let owner_site = fake_http::serve("127.0.0.3:0", handler).await;
    let port = owner_site.addr.port().to_string();
    let dns = fake_http::serve_dns(Default::default()).await.to_string();
    let node = TestNode::start_with(&[
        ("VITRINA_DOMAINS__DNS_SERVERS", dns.as_str()),
        ("VITRINA_EGRESS__ALLOW", "127.0.0.3/32"),
        ("VITRINA_EGRESS__RESOLVE", "shop.victim-goods.test=127.0.0.3,inside.test=127.0.0.1"),
        ("VITRINA_DOMAINS__VERIFY_PORT", port.as_str()),
    ]);
    let attacker = node.seed_store("attacker", "Attacker").await;
    let victim = node.seed_store("victim", "Victim").await;
    let domain = "shop.victim-goods.test";

    // A claim serves nothing until verified.
    let (s, b) = claim(&node, &attacker, "attacker", domain).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "pending");
    let attacker_token = b["verification"]["token"].as_str().expect("token").to_string();
    assert_eq!(b["verification"]["dns"]["name"], format!("_vitrina-verification.{domain}"), "{b}");
    assert!(b["verification"]["http"]["url"].as_str().is_some_and(|u| u.ends_with(&attacker_token)), "{b}");
    let (s, _) = home_at(&node, domain).await;
    assert_eq!(s, 404, "a pending domain serves no store");
    record(TABLE, "host-takeover", "unverified claim of another merchant's domain", "refused");

    // The attacker cannot produce the token at the domain.
    let (s, b) = node.admin(&attacker, Method::POST, &format!("/stores/attacker/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_error_body(&b, "verification_failed");
    let (s, _) = home_at(&node, domain).await;
    assert_eq!(s, 404);
    record(TABLE, "host-takeover", "verification without the token at the domain", "refused");

    // The domain's owner claims it too, serves its token, verifies: the domain is its.
    let (s, b) = claim(&node, &victim, "victim", domain).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let victim_token = b["verification"]["token"].as_str().expect("token").to_string();
    assert_ne!(victim_token, attacker_token);
    *served.lock().expect("lock") = victim_token;
    let (s, b) = node.admin(&victim, Method::POST, &format!("/stores/victim/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "verified");
    let (s, page) = home_at(&node, domain).await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Victim"));
    record(TABLE, "host-takeover", "custom domain verified by an HTTP token through the egress client", "verified");

    // The attacker's claim ended; it can neither claim, verify nor remove the domain now.
    let (s, b) = claim(&node, &attacker, "attacker", domain).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_error_body(&b, "host_taken");
    let (s, _) = node.admin(&attacker, Method::POST, &format!("/stores/attacker/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = node.admin(&attacker, Method::DELETE, &format!("/stores/attacker/domains/{domain}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, page) = home_at(&node, domain).await;
    assert!(s == 200 && page.contains("Welcome to Victim"));
    record(TABLE, "host-takeover", "removing or re-claiming another store's verified domain", "refused");

    // Verification goes through the egress policy: a domain resolving inside is refused.
    let (s, b) = claim(&node, &attacker, "attacker", "inside.test").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = node.admin(&attacker, Method::POST, "/stores/attacker/domains/inside.test/verify", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["message"].as_str().is_some_and(|m| m.contains("refused by policy")), "{b}");
    record(TABLE, "ssrf", "domain verification of a name resolving to loopback", "refused");

    // The operator settles a dispute by moving the domain: the anonymous page cache is keyed
    // by store, so the moved host serves the new store's page at once.
    let (s, page) = home_at(&node, domain).await;
    assert!(s == 200 && page.contains("Welcome to Victim"), "cache warmed with the victim's page");
    let (s, b) = node.admin(OPERATOR, Method::GET, &format!("/hosts/{domain}"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["store"], "victim");
    let (s, b) = node.admin(OPERATOR, Method::PUT, &format!("/hosts/{domain}"), Some(json!({"store": "attacker"}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, page) = home_at(&node, domain).await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Attacker") && !page.contains("Welcome to Victim"), "no page of the old store after the move");
    record(TABLE, "host-takeover", "anonymous page cache after a host moves between stores", "refused");

    // Back to the victim; the owning store can always remove its own domain.
    let (s, _) = node.admin(OPERATOR, Method::PUT, &format!("/hosts/{domain}"), Some(json!({"store": "victim"}))).await;
    assert_eq!(s, 200);
    let (s, b) = node.admin(&victim, Method::DELETE, &format!("/stores/victim/domains/{domain}"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(home_at(&node, domain).await.0, 404);
    // And the operator can revoke.
    let (s, _) = node.admin(OPERATOR, Method::PUT, &format!("/hosts/{domain}"), Some(json!({"store": "victim"}))).await;
    assert_eq!(s, 200);
    let (s, b) = node.admin(OPERATOR, Method::DELETE, &format!("/hosts/{domain}"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(home_at(&node, domain).await.0, 404);
    let (_, list) = node.admin(&victim, Method::GET, "/stores/victim/domains", None).await;
    assert_eq!(list["domains"], json!([]), "{list}");
}

#[tokio::test]
async fn a_dns_txt_record_verifies_a_domain() {
    let records: fake_http::TxtRecords = Default::default();
    let dns = fake_http::serve_dns(records.clone()).await.to_string();
    // No egress.allow: the HTTP check of this name cannot succeed, only the TXT record can.
    let node = TestNode::start_with(&[("VITRINA_DOMAINS__DNS_SERVERS", dns.as_str())]);
    let owner = node.seed_store("owner", "Owner").await;
    let other = node.seed_store("other", "Other").await;
    let domain = "www.owner-goods.test";
    let (s, b) = claim(&node, &owner, "owner", domain).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = b["verification"]["dns"]["value"].as_str().expect("token").to_string();
    let (s, b) = claim(&node, &other, "other", domain).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let other_token = b["verification"]["token"].as_str().expect("token").to_string();

    // No record yet: refused, and the answer says where to put it.
    let (s, b) = node.admin(&owner, Method::POST, &format!("/stores/owner/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_error_body(&b, "verification_failed");
    assert_eq!(b["error"]["details"]["txt"], format!("_vitrina-verification.{domain}"));
    // A record with another store's token proves nothing for this one.
    records.lock().expect("lock").insert(format!("_vitrina-verification.{domain}"), token.clone());
    let (s, b) = node.admin(&other, Method::POST, &format!("/stores/other/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_ne!(token, other_token);
    assert_eq!(home_at(&node, domain).await.0, 404);
    record(TABLE, "host-takeover", "DNS TXT record holding another store's token", "refused");

    let (s, b) = node.admin(&owner, Method::POST, &format!("/stores/owner/domains/{domain}/verify"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, page) = home_at(&node, domain).await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Owner"));
    record(TABLE, "host-takeover", "custom domain verified by a DNS TXT record", "verified");
}

#[tokio::test]
async fn catalogs_from_before_verification_keep_their_hosts_and_lose_hijacked_ones() {
    let node = TestNode::start();
    node.seed_store("legacy", "Legacy").await;
    node.seed_store("victim", "Victim").await;
    let node = {
        let mut node = node;
        node.kill();
        // Rows a node without host rules could have written, and the schema before claims (and
        // before the migrations after them).
        let conn = rusqlite::Connection::open(node.data_dir.join("node").join("catalog.db")).expect("catalog");
        conn.execute_batch(
            "DROP TABLE host_claims; DROP TABLE node_boots; ALTER TABLE stores DROP COLUMN token_version; PRAGMA user_version = 2;
             INSERT INTO hosts (host, store_id) VALUES ('shop.legacy-goods.test', 'legacy'), ('victim.localhost', 'legacy'), ('127.0.0.1', 'legacy');",
        )
        .expect("downgrade");
        drop(conn);
        node.kill_and_restart()
    };
    let (s, page) = home_at(&node, "shop.legacy-goods.test").await;
    assert_eq!(s, 200);
    assert!(page.contains("Welcome to Legacy"), "a host mapped before verification stays verified");
    let (_, list) = node.admin(OPERATOR, Method::GET, "/stores/legacy/domains", None).await;
    assert_eq!(list["domains"], json!([{"host": "shop.legacy-goods.test", "store": "legacy", "status": "verified"}]), "{list}");
    let (s, page) = home_at(&node, "victim.localhost").await;
    assert!(s == 200 && page.contains("Welcome to Victim"), "a hijacked default host is its store's again");
    record(TABLE, "host-takeover", "default host hijacked before the upgrade", "refused");
}

/// The status line and body the node answers one raw request with (`version` is `1.0` or `1.1`).
fn raw_get(node: &TestNode, version: &str, head: &str) -> (String, String) {
    raw_get_target(node, "/", version, head)
}

/// As [`raw_get`], for the request-target `target` (origin-form `/…` or absolute-form).
fn raw_get_target(node: &TestNode, target: &str, version: &str, head: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(node.addr).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let request = format!("GET {target} HTTP/{version}\r\n{head}Accept: application/json\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).expect("reply");
    let (status, rest) = reply.split_once("\r\n").unwrap_or((&reply, ""));
    (status.to_string(), rest.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn a_missing_repeated_or_malformed_host_is_a_bad_request() {
    let node = TestNode::start();
    node.seed_store("victim", "Victim").await;
    let port = node.addr.port();
    // HTTP/1.1 without a Host or with two: the HTTP parser answers 400 before any handler runs.
    for (case, head) in [
        ("no Host header (HTTP/1.1)", String::new()),
        ("two Host headers, the store's first", format!("Host: victim.localhost:{port}\r\nHost: evil.example\r\n")),
        ("two Host headers, the store's second", format!("Host: evil.example\r\nHost: victim.localhost:{port}\r\n")),
    ] {
        let (status, body) = raw_get(&node, "1.1", &head);
        assert!(status.contains(" 400 "), "{case}: {status} {body}");
        record(TABLE, "host-takeover", &format!("request with {case}"), "refused");
    }
    // The rest reach the node, which names the problem.
    for (version, case, head) in [
        ("1.0", "no Host header (HTTP/1.0)", String::new()),
        ("1.1", "a list of hosts", format!("Host: victim.localhost:{port}, evil.example\r\n")),
        ("1.1", "userinfo before the host", format!("Host: evil@victim.localhost:{port}\r\n")),
        ("1.1", "a port that is not a number", "Host: victim.localhost:80x\r\n".to_string()),
        ("1.1", "an empty Host", "Host: \r\n".to_string()),
    ] {
        let (status, body) = raw_get(&node, version, &head);
        assert!(status.contains(" 400 "), "{case}: {status} {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{case}: {e}: {body}"));
        assert_error_body(&body, "invalid_host");
        record(TABLE, "host-takeover", &format!("request with {case}"), "refused");
    }
    // The store's own host, once, is served.
    let (status, body) = raw_get(&node, "1.1", &format!("Host: victim.localhost:{port}\r\n"));
    assert!(status.contains(" 200 "), "{status} {body}");
}

#[tokio::test]
async fn an_absolute_request_target_names_the_store_whatever_the_host_header_says() {
    let node = TestNode::start();
    node.seed_store("victim", "Victim").await;
    let port = node.addr.port();
    // A proxy or cache in front keys by the request-target (RFC 9112 §3.2.2): so does the node.
    let (status, body) =
        raw_get_target(&node, &format!("http://nosuch.localhost:{port}/"), "1.1", &format!("Host: victim.localhost:{port}\r\n"));
    assert!(status.contains(" 404 "), "{status} {body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_error_body(&body, "unknown_host");
    record(TABLE, "host-takeover", "absolute request-target of another host than the Host header", "refused");
    let (status, body) = raw_get_target(&node, &format!("http://victim.localhost:{port}/"), "1.1", "Host: evil.example\r\n");
    assert!(status.contains(" 200 ") && body.contains("Welcome to Victim"), "{status}");
    let (status, _) =
        raw_get_target(&node, &format!("http://evil@victim.localhost:{port}/"), "1.1", &format!("Host: victim.localhost:{port}\r\n"));
    assert!(status.contains(" 400 "), "userinfo in the request-target: {status}");
}
