//! Traces and logs (issue 21, item 2): a request entering one node and forwarded to its owner
//! is one trace, continued from the caller's `traceparent`, exported by both nodes over
//! OTLP/HTTP to a receiver (a minimal one here); `--log-format json` writes JSON lines.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts OTLP/HTTP JSON posts and keeps their bodies.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize =
                        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                    while buf.len() < end + 4 + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        store.lock().unwrap().push(v);
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if sock.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// The node ids (`service.instance.id`) that exported spans of `trace_id`, and the span names.
fn exporters_of(received: &[Value], trace_id: &str) -> (Vec<String>, Vec<String>) {
    let spans = spans_of(received, trace_id);
    let mut nodes: Vec<String> = Vec::new();
    for span in &spans {
        if !nodes.contains(&span.node) {
            nodes.push(span.node.clone());
        }
    }
    (nodes, spans.into_iter().map(|s| s.name).collect())
}

/// One exported span: the node that exported it, its name, id and parent's id.
struct SpanSeen {
    node: String,
    name: String,
    id: String,
    parent: String,
}

fn spans_of(received: &[Value], trace_id: &str) -> Vec<SpanSeen> {
    let mut spans = Vec::new();
    for batch in received {
        for rs in batch["resourceSpans"].as_array().into_iter().flatten() {
            let node = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.instance.id")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    if span["traceId"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(trace_id)) {
                        let text = |k: &str| span[k].as_str().unwrap_or("").to_ascii_lowercase();
                        spans.push(SpanSeen { node: node.clone(), name: text("name"), id: text("spanId"), parent: text("parentSpanId") });
                    }
                }
            }
        }
    }
    spans
}

/// The names of `span`'s ancestors, nearest first, as far as they were exported.
fn ancestors(spans: &[SpanSeen], span: &SpanSeen) -> Vec<String> {
    let mut names = Vec::new();
    let mut parent = span.parent.clone();
    while let Some(p) = spans.iter().find(|s| !parent.is_empty() && s.id == parent) {
        names.push(p.name.clone());
        parent = p.parent.clone();
    }
    names
}

/// Whether a `name` span exported by `node` (any node: "") descends from the `request` span through `via`.
fn has_span_under(spans: &[SpanSeen], node: &str, name: &str, via: &[&str]) -> bool {
    spans.iter().filter(|s| (node.is_empty() || s.node == node) && s.name == name).any(|s| {
        let up = ancestors(spans, s);
        up.iter().any(|n| n == "request") && via.iter().all(|v| up.iter().any(|n| n == v))
    })
}

#[tokio::test]
async fn one_request_is_one_trace_across_two_nodes() {
    let (endpoint, received) = otlp_receiver().await;
    let env = [("VITRINA_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let nodes = start_cluster(2, &env).await;
    nodes[0].seed_store("shop", "Shop").await;
    // A shopper the second node owns, reached through the first.
    let client = nodes[0].bare_client("shop");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut forwarded = false;
    for i in 0..64 {
        let res = client
            .post(format!("{}/cart/items", nodes[0].base("shop")))
            .header("cookie", session_cookie(&format!("traced-{i}")))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&serde_json::json!({"productId": "mug", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        if res.headers()["x-vitrina-node"] == "n2" {
            forwarded = true;
            break;
        }
    }
    assert!(forwarded, "no shopper of 64 was owned by n2");
    // The first node's forward span closes after its answer: it may come in a later batch.
    wait_until("spans of the trace from both nodes, the forward among them", Duration::from_secs(20), || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap().clone();
            let (nodes, names) = exporters_of(&got, trace_id);
            nodes.contains(&"n1".to_string())
                && nodes.contains(&"n2".to_string())
                && names.iter().any(|n| n == "request")
                && names.iter().any(|n| n == "forward")
        }
    })
    .await;
    // The owner's commit of the cart change, made in the shopper actor's turn on n2, is a
    // child of that node's request span for the forwarded request.
    wait_until("the owner's commit span under its request span", Duration::from_secs(20), || {
        let received = received.clone();
        async move { has_span_under(&spans_of(&received.lock().unwrap(), trace_id), "n2", "commit", &[]) }
    })
    .await;
}

#[tokio::test]
async fn a_commit_is_a_span_of_the_render_and_request_that_caused_it() {
    let (endpoint, received) = otlp_receiver().await;
    let node = TestNode::start_with(&[("VITRINA_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    node.seed_store("shop", "Shop").await;
    let client = node.bare_client("shop");
    let cookie = session_cookie("viewer");
    // A cart change first (a durable commit, under the request), then a product page: its view
    // is recorded by a commit in the shopper's render turn.
    let add_trace = "5bf92f3577b34da6a3ce929d0e0e4731";
    let res = client
        .post(format!("{}/cart/items", node.base("shop")))
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{add_trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"productId": "mug", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let view_trace = "5bf92f3577b34da6a3ce929d0e0e4732";
    let res = client
        .get(format!("{}/products/mug", node.base("shop")))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .header("traceparent", format!("00-{view_trace}-00f067aa0ba902b8-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_until("commit spans under their requests", Duration::from_secs(20), || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap();
            has_span_under(&spans_of(&got, add_trace), "", "commit", &[])
                && has_span_under(&spans_of(&got, view_trace), "", "commit", &["render"])
        }
    })
    .await;
}

#[tokio::test]
async fn an_activation_is_a_span_of_the_request_that_caused_it() {
    let (endpoint, received) = otlp_receiver().await;
    let node = TestNode::start_with(&[("VITRINA_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    node.seed_store("shop", "Shop").await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let res = node
        .bare_client("shop")
        .post(format!("{}/cart/items", node.base("shop")))
        .header("cookie", session_cookie("activated-once"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&serde_json::json!({"productId": "mug", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    wait_until("the activation span of the trace", Duration::from_secs(20), || {
        let received = received.clone();
        async move { exporters_of(&received.lock().unwrap(), trace_id).1.iter().any(|n| n == "activation") }
    })
    .await;
    // The session id never reaches an exported span.
    let all = serde_json::to_string(&*received.lock().unwrap()).unwrap();
    assert!(!all.contains("activated-once"), "a session id was exported");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd =
        test_support::process::serve_command(&test_support::process::vitrina_bin(), dir.path(), "127.0.0.1:0", OPERATOR_TOKEN, SESSION_KEY);
    cmd.args(["--log-format", "json"]).env("VITRINA_LOG", "info").stderr(std::process::Stdio::piped());
    let mut started = test_support::process::start(cmd, "vitrina listening on ", Duration::from_secs(60)).expect("start");
    let stderr = started.child.stderr.take().unwrap();
    // Render workers log into the same stream, in the node's format: let them start.
    let started_at = std::time::Instant::now();
    while test_support::procfs::children(started.child.id()).is_empty() && started_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let _ = started.child.kill();
    let _ = started.child.wait();
    let lines: Vec<String> = std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect();
    assert!(!lines.is_empty(), "the node logged nothing at info");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("startup snapshot")), "a render worker's line is among them: {lines:?}");
}

#[tokio::test]
async fn a_hand_off_is_a_span() {
    let (endpoint, received) = otlp_receiver().await;
    let env = [("VITRINA_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let mut nodes = start_cluster(2, &env).await;
    nodes[0].seed_store("shop", "Shop").await;
    for i in 0..24 {
        assert_eq!(nodes[i % 2].shopper("shop").add_to_cart("mug", 1).await.status, 201);
    }
    // The new node takes a third of the keys: the old owners push their files to it.
    nodes.push(nodes[0].join("n3"));
    wait_until("a hand-off span from an old owner", Duration::from_secs(60), || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap();
            got.iter().flat_map(|batch| batch["resourceSpans"].as_array().cloned().unwrap_or_default()).any(|rs| {
                rs["scopeSpans"].as_array().into_iter().flatten().flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default()).any(
                    |span| {
                        span["name"] == "handoff"
                            && span["attributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|a| a["key"] == "direction" && a["value"]["stringValue"] == "out")
                    },
                )
            })
        }
    })
    .await;
}
