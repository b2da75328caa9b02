//! The etcd copy ledger (issue 19, item 4), in process against a real etcd: a copy pointer
//! moves only under the current token of its key's shard, so a node that lost the shard can
//! never make its upload current.

use test_support::etcd::EtcdCluster;
use vitrina::config::EtcdSettings;
use vitrina::coordination::etcd::Etcd;
use vitrina::coordination::records::FencedRecords;
use vitrina::coordination::{shard_of, Coordination, CoordinationError};
use vitrina::ids::ActorKey;
use vitrina::replication::{CopyLedger, CopyRef, EtcdLedger, ReplicationError};

const SHARDS: u32 = 16;

fn settings(etcd: &EtcdCluster) -> EtcdSettings {
    EtcdSettings {
        endpoints: etcd.endpoints(),
        prefix: "/ledger-test".into(),
        lease_ttl_secs: 5,
        lease_margin_ms: 500,
        request_timeout_ms: 500,
    }
}

fn copy(token: u64, seq: u64) -> CopyRef {
    CopyRef { object: format!("p/copies/{token:020}-{seq:016}.db"), sha256: "ab".repeat(32), token, seq }
}

#[tokio::test]
async fn only_the_shards_current_owner_moves_a_copy_pointer() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let settings = settings(&etcd);
    let key = ActorKey::parse("shopper:shop:ledger-1").expect("key");
    let shard = shard_of(&key.to_string(), SHARDS);
    let ledger = EtcdLedger::new(FencedRecords::new(&settings).unwrap(), SHARDS);
    assert_eq!(ledger.current(&key).await.unwrap(), None);

    let a = Etcd::start(&settings, "a", "127.0.0.1:1", false).await.unwrap();
    let b = Etcd::start(&settings, "b", "127.0.0.1:2", false).await.unwrap();
    let first = a.acquire(shard).await.unwrap().token;
    ledger.commit(&key, &copy(first, 1)).await.unwrap();
    assert_eq!(ledger.current(&key).await.unwrap(), Some(copy(first, 1)));

    // Token 0 (what an absent ownership key compares equal to) and a made-up token are refused.
    for token in [0, first + 1_000] {
        let refused = ledger.commit(&key, &copy(token, 2)).await.unwrap_err();
        assert!(matches!(refused, ReplicationError::Fenced { .. }), "{refused}");
    }

    // The shard moves to b: a's late upload cannot become current; b's does.
    assert!(matches!(b.acquire(shard).await, Err(CoordinationError::Held { .. })));
    a.release(shard, first).await.unwrap();
    let second = b.acquire(shard).await.unwrap().token;
    assert!(second > first);
    let stale = ledger.commit(&key, &copy(first, 3)).await.unwrap_err();
    assert!(matches!(stale, ReplicationError::Fenced { .. }), "{stale}");
    assert_eq!(ledger.current(&key).await.unwrap(), Some(copy(first, 1)), "a refused commit changes nothing");
    ledger.commit(&key, &copy(second, 4)).await.unwrap();
    assert_eq!(ledger.current(&key).await.unwrap(), Some(copy(second, 4)));

    // Another key's pointer is its own; clearing one leaves the other.
    let other = ActorKey::parse("shopper:shop:ledger-2").expect("key");
    ledger.clear(&key).await.unwrap();
    assert_eq!(ledger.current(&key).await.unwrap(), None);
    assert_eq!(ledger.current(&other).await.unwrap(), None);
}

/// A cluster on etcd keeps its copy pointers in etcd (never `current.json` in the bucket), each
/// committed under the token its shard is held with.
#[tokio::test]
async fn a_cluster_on_etcd_points_at_its_copies_from_etcd() {
    let Some(endpoint) = crate::objects::s3_endpoint() else { return };
    let bucket = crate::objects::new_bucket(&endpoint).await;
    let env_owned = crate::objects::replication_env(&endpoint, &bucket, 200);
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let nodes = test_support::start_cluster(2, &env).await;
    let Some(etcd) = nodes[0].etcd() else { return };
    nodes[0].seed_store("ledger", "Ledger").await;
    let shopper = nodes[1].shopper("ledger");
    assert_eq!(shopper.add_to_cart("mug", 1).await.status, reqwest::StatusCode::CREATED);

    let gateway = vitrina::coordination::gateway::Gateway::new(&etcd.endpoints(), std::time::Duration::from_secs(2)).unwrap();
    let mut pointers = Vec::new();
    for _ in 0..100 {
        pointers = gateway.range(b"/vitrina/copies/", true).await.unwrap().kvs;
        if pointers.iter().any(|kv| kv.key_str().contains("shopper:ledger:"))
            && pointers.iter().any(|kv| kv.key_str().contains("store:ledger"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let shopper_pointer = pointers.iter().find(|kv| kv.key_str().contains("shopper:ledger:")).expect("the shopper's pointer in etcd");
    let copy: serde_json::Value = serde_json::from_slice(&shopper_pointer.value).unwrap();
    assert!(copy["token"].as_u64().is_some_and(|t| t > 0), "a copy carries its shard's token: {copy}");
    let listed = bucket.list("it/v1/".to_string(), None).await.unwrap();
    let names: Vec<String> = listed.iter().flat_map(|page| page.contents.iter().map(|o| o.key.clone())).collect();
    assert!(names.iter().any(|n| n == copy["object"].as_str().unwrap()), "the pointed copy exists: {names:?}");
    assert!(!names.iter().any(|n| n.ends_with("current.json")), "no bucket pointers on etcd: {names:?}");
}
