//! What the server's black-box tests (`tests/`) and the load generator (`loadtest/`) share:
//! starting real `vitrina` processes ([`process`], [`node`]) and real etcd ([`etcd`]) on
//! 127.0.0.1, typed clients of a node ([`client`]), session tokens a node accepts ([`session`])
//! and the security suites' outcome tables ([`table`]). It speaks to nodes over HTTP only and does not link the server.

pub mod client;
pub mod etcd;
pub mod history;
pub mod live;
pub mod node;
pub mod process;
pub mod procfs;
pub mod session;
pub mod table;
pub mod webhook;
pub mod ws_wire;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub use client::{Admin, Answer, Shopper};
pub use node::{session_cookie, start_cluster, start_cluster_on, wait_for_active, TestNode, CLUSTER_SECRET, OPERATOR_TOKEN, SESSION_KEY};

/// Asserts the uniform error body (`ApiError`: code, message, details, requestId, timestamp).
pub fn assert_error_body(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "unexpected error body: {body}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["requestId"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["timestamp"].as_str().is_some_and(|m| m.contains('T')), "{body}");
    assert!(e.get("details").is_some(), "{body}");
}

/// Status and body (JSON, or the text as a JSON string) of a response.
pub async fn json_of(res: reqwest::Response) -> (StatusCode, Value) {
    let answer = Answer::of(res).await;
    (answer.status, answer.body)
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
