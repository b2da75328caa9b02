//! The etcd the cluster tests run on: a real three-member cluster survives the loss of its
//! leader, and a paused member comes back. The fault tests build on these steps.

use std::time::{Duration, Instant};

use test_support::etcd::EtcdCluster;

async fn put(endpoint: &str, key_b64: &str) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let body = format!(r#"{{"key":"{key_b64}","value":"MQ=="}}"#);
    client.post(format!("{endpoint}/v3/kv/put")).body(body).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_writes_go_on() {
    let Some(mut etcd) = EtcdCluster::start(3).await else { return };
    let leader = etcd.leader().await.expect("a leader");
    etcd.kill(leader);
    let started = Instant::now();
    let mut new_leader = None;
    while started.elapsed() < Duration::from_secs(30) && new_leader.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        new_leader = etcd.leader().await;
    }
    let new_leader = new_leader.expect("a new leader within 30 s");
    assert_ne!(new_leader, leader);
    assert!(put(&etcd.endpoints()[new_leader], "YQ==").await, "a write through the new leader");
    // The killed member rejoins on its data directory.
    etcd.restart(leader).await;
    assert!(put(&etcd.endpoints()[leader], "Yg==").await, "a write through the restarted member");
}

#[tokio::test]
async fn a_paused_member_answers_nothing_until_resumed() {
    let Some(mut etcd) = EtcdCluster::start(1).await else { return };
    let endpoint = etcd.endpoints()[0].clone();
    assert!(put(&endpoint, "YQ==").await);
    etcd.pause(0);
    assert!(!put(&endpoint, "Yg==").await, "a paused etcd must not answer");
    etcd.resume(0);
    assert!(put(&endpoint, "Yw==").await, "answers again once resumed");
}
