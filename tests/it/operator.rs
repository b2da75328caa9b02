//! The operator's API (issue 21, item 5): stores, live actors, a store's shoppers across the
//! cluster, inspecting and exporting one, and erasing one everywhere — file, WAL and copies.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use test_support::*;

async fn op(node: &TestNode, method: Method, path: &str) -> (StatusCode, Value) {
    let res = node.plain().request(method, format!("http://{}{path}", node.addr)).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    json_of(res).await
}

#[tokio::test]
async fn an_operator_lists_inspects_exports_and_erases_shoppers() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let sids = ["operator-a", "operator-b", "operator-c"];
    let client = node.bare_client("shop");
    for (i, sid) in sids.iter().enumerate() {
        let res = client
            .post(format!("{}/cart/items", node.base("shop")))
            .header("cookie", session_cookie(sid))
            .json(&serde_json::json!({"productId": "mug", "quantity": i + 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    let (s, body) = op(&node, Method::GET, "/operator/v1/stores").await;
    assert_eq!(s, 200, "{body}");
    assert!(body["stores"].as_array().unwrap().iter().any(|v| v == "shop"), "{body}");
    let (s, body) = op(&node, Method::GET, "/operator/v1/actors").await;
    assert_eq!(s, 200);
    assert!(body["actors"].as_array().unwrap().iter().any(|a| a["key"] == "shopper:shop:operator-a"), "{body}");

    // Paged by session id.
    let (s, first) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers?limit=2").await;
    assert_eq!(s, 200, "{first}");
    let listed: Vec<&str> = first["shoppers"].as_array().unwrap().iter().map(|v| v["session"].as_str().unwrap()).collect();
    assert_eq!(listed, ["operator-a", "operator-b"]);
    assert!(first["shoppers"][0]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(first["next"], "operator-b");
    let (_, second) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers?limit=2&after=operator-b").await;
    assert_eq!(second["shoppers"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], Value::Null);

    // Inspect and export.
    let (s, inspected) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers/operator-b").await;
    assert_eq!(s, 200, "{inspected}");
    assert_eq!(inspected["shopper"]["cart"][0]["productId"], "mug");
    assert_eq!(inspected["shopper"]["cart"][0]["quantity"], 2);
    assert!(inspected["file"]["bytes"].as_u64().unwrap() > 0);
    let export = node
        .plain()
        .get(format!("http://{}/operator/v1/stores/shop/shoppers/operator-b/export", node.addr))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(export.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let exported: Value = export.json().await.unwrap();
    assert_eq!(exported["session"], "operator-b");

    // Erase: the file and its sidecars go, the cart is empty afterwards, and it is not listed.
    let files_before = node.shopper_files("shop");
    let (s, erased) = op(&node, Method::DELETE, "/operator/v1/stores/shop/shoppers/operator-b").await;
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["erased"], true);
    // Its live instance was stopped for the erase, and counted so.
    assert_eq!(node.metric("vitrina_actor_passivations_total{kind=\"shopper\",reason=\"evicted\"}").await, 1);
    assert_eq!(node.shopper_files("shop"), files_before - 1);
    let (s, _) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers/operator-b").await;
    assert_eq!(s, 404);
    let cart: Value = client
        .get(format!("{}/cart", node.base("shop")))
        .header("cookie", session_cookie("operator-b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["cart"]["count"], 0, "{cart}");
    let (_, listed) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers").await;
    assert!(!listed["shoppers"].as_array().unwrap().iter().any(|v| v["session"] == "operator-b"), "{listed}");

    // The CLI says the same.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrina"))
            .arg("operator")
            .args(args)
            .args(["--config", "/nonexistent.toml", "--via", &node.addr.to_string()])
            .env("VITRINA_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["shoppers", "shop"]);
    assert!(listed.contains("operator-a") && listed.contains("operator-c") && !listed.contains("operator-b"), "{listed}");
    assert!(cli(&["inspect", "shop", "operator-c"]).contains("\"quantity\": 3"));
    assert!(cli(&["erase", "shop", "operator-c"]).contains("\"erased\": true"));

    // Only the operator; only well-formed ids.
    let anonymous = node.plain().get(format!("http://{}/operator/v1/stores", node.addr)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let (s, body) = op(&node, Method::GET, "/operator/v1/stores/shop/shoppers/..%2Fetc").await;
    assert!(s.is_client_error(), "{s} {body}");
    let (s, _) = op(&node, Method::GET, "/operator/v1/stores/nope/shoppers").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn in_a_cluster_any_node_lists_and_erases_on_the_owner() {
    let Some(endpoint) = crate::objects::s3_endpoint() else { return };
    let bucket = crate::objects::new_bucket(&endpoint).await;
    let env_owned = crate::objects::replication_env(&endpoint, &bucket, 100);
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let nodes = start_cluster(2, &env).await;
    nodes[0].seed_store("shop", "Shop").await;
    let client = nodes[0].bare_client("shop");
    let sids: Vec<String> = (0..12).map(|i| format!("cluster-op-{i:02}")).collect();
    for sid in &sids {
        let res = client
            .post(format!("{}/cart/items", nodes[0].base("shop")))
            .header("cookie", session_cookie(sid))
            .json(&serde_json::json!({"productId": "mug", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let (s, listed) = op(&nodes[1], Method::GET, "/operator/v1/stores/shop/shoppers?limit=100").await;
    assert_eq!(s, 200, "{listed}");
    let shoppers = listed["shoppers"].as_array().unwrap();
    assert_eq!(shoppers.len(), sids.len(), "every node's shoppers: {listed}");
    let holders: std::collections::BTreeSet<&str> = shoppers.iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(holders.len(), 2, "both nodes hold some: {listed}");

    // Erase, through node 2, a shopper held by node 1 (and one held by node 2).
    for holder in ["n1", "n2"] {
        let victim = shoppers.iter().find(|s| s["node"] == holder).unwrap()["session"].as_str().unwrap().to_string();
        wait_until("its copy in object storage", std::time::Duration::from_secs(10), || {
            let bucket = bucket.clone();
            let victim = victim.clone();
            async move {
                let pages = bucket.list("it/v1/".to_string(), None).await.unwrap();
                pages.iter().flat_map(|p| p.contents.iter()).any(|o| o.key.contains(&victim))
            }
        })
        .await;
        let (s, erased) = op(&nodes[1], Method::DELETE, &format!("/operator/v1/stores/shop/shoppers/{victim}")).await;
        assert_eq!(s, 200, "{erased}");
        assert_eq!(erased["erased"], true);
        assert_eq!(erased["node"], holder);
        let pages = bucket.list("it/v1/".to_string(), None).await.unwrap();
        let left: Vec<String> =
            pages.iter().flat_map(|p| p.contents.iter()).filter(|o| o.key.contains(&victim)).map(|o| o.key.clone()).collect();
        assert!(left.is_empty(), "no copy of an erased shopper stays: {left:?}");
        let (s, _) = op(&nodes[0], Method::GET, &format!("/operator/v1/stores/shop/shoppers/{victim}")).await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn the_cli_run_beside_a_node_finds_the_operator_token_it_generated() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A node started as the README starts the demo: no token configured, defaults relative to
    // its working directory.
    let mut serve = std::process::Command::new(process::vitrina_bin());
    serve
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("VITRINA_OPERATOR_TOKEN")
        .env("VITRINA_LOG", "warn");
    let mut started = process::start(serve, "vitrina listening on ", std::time::Duration::from_secs(60)).expect("start");
    let addr = started.addr.to_string();
    let cli = |cwd: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vitrina"))
            .current_dir(cwd)
            .args(["operator", "stores", "--via", &addr])
            .env_remove("VITRINA_OPERATOR_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("cli")
    };
    let beside = cli(dir.path());
    assert!(beside.status.success(), "{}", String::from_utf8_lossy(&beside.stderr));
    assert!(String::from_utf8_lossy(&beside.stdout).contains("stores"), "{}", String::from_utf8_lossy(&beside.stdout));
    // Elsewhere there is no token to find, and the error says where it looked.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let away = cli(elsewhere.path());
    assert!(!away.status.success());
    let said = String::from_utf8_lossy(&away.stderr);
    assert!(said.contains("VITRINA_OPERATOR_TOKEN") && said.contains("operator-token"), "{said}");
    let _ = started.child.kill();
    let _ = started.child.wait();
}
