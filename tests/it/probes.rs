//! `/healthz` and `/readyz` (issue 21, item 3): readiness says whether a node should get
//! traffic — joined with a live lease, not draining — and answers on every host, unforwarded.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use test_support::*;

async fn readyz(node: &TestNode) -> (StatusCode, Value) {
    let res = node.plain().get(format!("http://{}/readyz", node.addr)).timeout(Duration::from_secs(5)).send().await.unwrap();
    json_of(res).await
}

#[tokio::test]
async fn a_single_node_is_ready_once_started_on_every_host() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let (status, body) = readyz(&node).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["dataDirWritable"], true, "{body}");
    let on_store_host = node.bare_client("shop").get(format!("{}/readyz", node.base("shop"))).send().await.unwrap();
    assert_eq!(on_store_host.status(), StatusCode::OK);
    let head = node.plain().head(format!("http://{}/readyz", node.addr)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_node_cut_off_from_etcd_or_draining_is_not_ready() {
    let nodes = start_cluster(2, &[]).await;
    let Some(etcd) = nodes[0].etcd() else { return };
    for node in &nodes {
        assert_eq!(readyz(node).await.0, StatusCode::OK);
    }
    // etcd stops answering: past the lease's TTL minus its margin, nobody is ready.
    signal_etcd(etcd, "STOP");
    wait_until("node 1 to report its lease lost", Duration::from_secs(20), || async {
        let (status, body) = readyz(&nodes[0]).await;
        status == StatusCode::SERVICE_UNAVAILABLE && body["error"]["details"]["checks"]["lease"] == false
    })
    .await;
    let (_, body) = readyz(&nodes[0]).await;
    assert_error_body(&body, "not_ready");
    signal_etcd(etcd, "CONT");
    wait_until("node 1 ready again", Duration::from_secs(30), || async { readyz(&nodes[0]).await.0 == StatusCode::OK }).await;

    // A draining node says so.
    let drain = std::process::Command::new(env!("CARGO_BIN_EXE_vitrina"))
        .args(["cluster", "drain", "n2", "--config", "/nonexistent.toml", "--via", &nodes[0].addr.to_string()])
        .env("VITRINA_CLUSTER__SECRET", CLUSTER_SECRET)
        .env("VITRINA_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .unwrap();
    assert!(drain.status.success(), "{}", String::from_utf8_lossy(&drain.stderr));
    wait_until("n2 to stop being ready", Duration::from_secs(30), || async {
        let (status, body) = readyz(&nodes[1]).await;
        status == StatusCode::SERVICE_UNAVAILABLE
            && (body["error"]["details"]["checks"]["notDraining"] == false || body["error"]["details"]["checks"]["joined"] == false)
    })
    .await;
    assert_eq!(readyz(&nodes[0]).await.0, StatusCode::OK, "the other node stays ready");
}

fn signal_etcd(etcd: &test_support::etcd::EtcdCluster, sig: &str) {
    let pid = etcd.members()[0].pid().expect("etcd running");
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}
