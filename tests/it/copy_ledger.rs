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

    let a = Etcd::start(&settings, "a", "127.0.0.1:1").await.unwrap();
    let b = Etcd::start(&settings, "b", "127.0.0.1:2").await.unwrap();
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
