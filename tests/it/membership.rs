//! A cluster's membership as an operator meets it: a node configured as part of a cluster
//! without etcd refuses to start, naming the setting; `vitrina cluster remove` takes out a node
//! that is already gone, and the keys waiting for its files start again.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use test_support::client::{past_503, Shopper};
use test_support::{start_cluster, wait_until, CLUSTER_SECRET, OPERATOR_TOKEN, SESSION_KEY};

/// A node process of the tests' cluster secret with `args` and `env`, its stderr piped for
/// the test to read once it exits.
fn cluster_process(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    test_support::process::serve_command(&test_support::process::vitrina_bin(), dir, "127.0.0.1:0", OPERATOR_TOKEN, SESSION_KEY)
        .args(args)
        .env("VITRINA_CLUSTER__SECRET", CLUSTER_SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_cluster_node_without_etcd_refuses_to_start_naming_the_setting() {
    for extra in [vec!["--cluster"], vec!["--join", "127.0.0.1:9"]] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = cluster_process(dir.path(), &extra, &[]);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{extra:?} without etcd started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains("cluster.etcd.endpoints") && stderr.contains("VITRINA_CLUSTER__ETCD__ENDPOINTS"), "{extra:?}: {stderr}");
    }
}

#[tokio::test]
async fn an_operator_removes_a_node_that_is_gone_and_its_keys_start_again() {
    let mut nodes = start_cluster(2, &[]).await;
    nodes[0].seed_store("shop", "Shop").await;
    // A shopper whose cart n2 holds, written through n1.
    let mut on_n2: Option<Shopper> = None;
    for _ in 0..64 {
        let shopper = nodes[0].shopper("shop");
        let added = past_503(|| shopper.add_to_cart("socks", 1)).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
        if added.headers["x-vitrina-node"] == "n2" {
            on_n2 = Some(shopper);
            break;
        }
    }
    let shopper = on_n2.expect("n2 owns some shoppers");

    // n2 is lost with its disk's files (no object storage): once its lease expired, its cart
    // waits for it rather than starting empty.
    nodes[1].kill();
    wait_until("n2's lease to expire", Duration::from_secs(30), || async {
        !nodes[0].cluster_status().await["members"].as_array().unwrap().iter().any(|m| m["id"] == "n2")
    })
    .await;
    for _ in 0..5 {
        let cart = shopper.cart_answer().await;
        assert_eq!(cart.status, StatusCode::SERVICE_UNAVAILABLE, "a key of a lost holder must not start empty: {}", cart.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator declares n2's files lost: the cart starts again, empty.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrina"))
        .args(["cluster", "remove", "n2", "--config", "/nonexistent.toml", "--via", &nodes[0].addr.to_string()])
        .env("VITRINA_CLUSTER__SECRET", CLUSTER_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cart = past_503(|| shopper.cart_answer()).await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text());
    assert_eq!(cart.body["cart"]["count"], 0, "{}", cart.text());
    assert_eq!(cart.headers["x-vitrina-node"], "n1");
}

#[tokio::test]
async fn a_second_node_given_a_live_nodes_id_refuses_to_start_and_the_first_keeps_its_writes() {
    let ttl = [("VITRINA_CLUSTER__ETCD__LEASE_TTL_SECS", "2")];
    let nodes = start_cluster(1, &ttl).await;
    nodes[0].seed_store("shop", "Shop").await;
    let shopper = nodes[0].shopper("shop");
    assert_eq!(past_503(|| shopper.add_to_cart("socks", 1)).await.status, StatusCode::CREATED);

    let dir = tempfile::tempdir().unwrap();
    let endpoints = nodes[0].etcd().expect("the cluster's etcd").endpoints_csv();
    let mut twin = cluster_process(
        dir.path(),
        &["--cluster", "--node-id", "n1"],
        &[("VITRINA_CLUSTER__ETCD__ENDPOINTS", &endpoints), ("VITRINA_CLUSTER__ETCD__LEASE_TTL_SECS", "2")],
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = twin.try_wait().unwrap() {
            break status;
        }
        // Meanwhile the first node's lease stays its own: its writes are acknowledged.
        let added = shopper.add_to_cart("socks", 1).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
        if started.elapsed() > Duration::from_secs(30) {
            let _ = twin.kill();
            panic!("a second node with a live node's id started");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut stderr = String::new();
    twin.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("is in use") && stderr.contains("--node-id"), "{stderr}");
    let cart = shopper.cart_answer().await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text());
    assert!(cart.body["cart"]["count"].as_u64().unwrap() >= 2, "{}", cart.text());
    assert_eq!(nodes[0].cluster_status().await["members"].as_array().unwrap().len(), 1);
}
