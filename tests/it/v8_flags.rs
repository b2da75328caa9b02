//! The `v8_flags` setting (`VITRINA_V8_FLAGS`) reaches the engine of a running node: a flag
//! whose effect a block can see (`--use-strict`) changes what the block renders, and a default
//! flag (no `Temporal`) can be undone.

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::TestNode;

/// Writing to a frozen object throws only in strict code; merchant code is sloppy unless V8
/// is told otherwise.
const MODE_PROBE: &str = r#"function render(ctx) {
  const frozen = Object.freeze({});
  try {
    frozen.x = 1;
    return '<p class="mode">sloppy</p>';
  } catch (e) {
    return '<p class="mode">strict</p>';
  }
}"#;

/// What `typeof Temporal` is in a block.
const TEMPORAL_PROBE: &str = r#"function render(ctx) {
  return '<p class="mode">' + typeof Temporal + '</p>';
}"#;

async fn rendered_mode(env: &[(&str, &str)]) -> String {
    rendered(env, MODE_PROBE, &["sloppy", "strict"]).await
}

/// Publishes `probe` as a page's only block and answers which of `modes` its HTML names.
async fn rendered(env: &[(&str, &str)], probe: &str, modes: &[&str]) -> String {
    let node = TestNode::start_with(env);
    let store = "flags";
    let token = node.seed_store(store, "Flags").await;
    let page = json!({"title": "Probe", "blocks": [{"type": "custom", "code": probe}]});
    let (s, b) = node.admin(&token, Method::PUT, &format!("/stores/{store}/pages/probe"), Some(page)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = node.admin(&token, Method::POST, &format!("/stores/{store}/pages/probe/publish"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let url = format!("{}/pages/probe", node.base(store));
    let res = node.shopper(store).get(&url).header(ACCEPT, "text/html").send().await.expect("page");
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let html = res.text().await.expect("body");
    for mode in modes {
        if html.contains(&format!("<p class=\"mode\">{mode}</p>")) {
            return mode.to_string();
        }
    }
    panic!("the probe block did not render: {html}");
}

#[tokio::test]
async fn v8_flags_from_the_environment_reach_the_engine() {
    assert_eq!(rendered_mode(&[]).await, "sloppy");
    assert_eq!(rendered_mode(&[("VITRINA_V8_FLAGS", "--use-strict")]).await, "strict");
}

#[tokio::test]
async fn blocks_get_no_temporal_unless_the_operator_asks_for_it() {
    assert_eq!(rendered(&[], TEMPORAL_PROBE, &["undefined", "object"]).await, "undefined");
    assert_eq!(rendered(&[("VITRINA_V8_FLAGS", "--harmony-temporal")], TEMPORAL_PROBE, &["undefined", "object"]).await, "object");
}
