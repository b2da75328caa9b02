//! Coordination through etcd, in process against a real etcd: the JSON-gateway client
//! (`coordination::gateway`) and the `Etcd` implementation of membership and shard ownership.

use std::time::{Duration, Instant};

use test_support::etcd::EtcdCluster;
use vitrina::config::EtcdSettings;
use vitrina::coordination::etcd::Etcd;
use vitrina::coordination::gateway::{Compare, EventKind, Gateway, GatewayError, Op};
use vitrina::coordination::{Coordination, CoordinationError, LeaseHealth, MemberState};

fn gateway(endpoints: &[String]) -> Gateway {
    Gateway::new(endpoints, Duration::from_millis(1000)).unwrap()
}

fn settings(etcd: &EtcdCluster, prefix: &str, ttl: u64) -> EtcdSettings {
    EtcdSettings { endpoints: etcd.endpoints(), prefix: prefix.into(), lease_ttl_secs: ttl, lease_margin_ms: 500, request_timeout_ms: 500 }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_gateway_reads_writes_and_compares_keys() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let gw = gateway(&etcd.endpoints());
    let r1 = gw.put(b"/t/a/1", b"one", 0).await.unwrap();
    gw.put(b"/t/a/2", b"two", 0).await.unwrap();
    gw.put(b"/t/b", b"other", 0).await.unwrap();
    let range = gw.range(b"/t/a/", true).await.unwrap();
    let got: Vec<(&str, &[u8])> = range.kvs.iter().map(|kv| (kv.key_str(), kv.value.as_slice())).collect();
    assert_eq!(got, vec![("/t/a/1", &b"one"[..]), ("/t/a/2", &b"two"[..])]);
    assert_eq!(range.kvs[0].create_revision, r1);
    assert!(range.header.revision > r1);

    // Create-if-absent: the first transaction wins, the second sees the winner.
    let create = |value: &'static [u8]| {
        let gw = &gw;
        async move {
            gw.txn(
                &[Compare::CreateRevision(b"/t/owner".to_vec(), 0)],
                &[Op::Put(b"/t/owner".to_vec(), value.to_vec(), 0)],
                &[Op::Get(b"/t/owner".to_vec())],
            )
            .await
            .unwrap()
        }
    };
    let first = create(b"n1").await;
    assert!(first.succeeded);
    let second = create(b"n2").await;
    assert!(!second.succeeded);
    let winner = &second.ranges()[0].kvs[0];
    assert_eq!((winner.value.as_slice(), winner.create_revision), (&b"n1"[..], first.header.revision));

    // A guarded delete with a stale create revision changes nothing.
    let delete = [Op::Delete(b"/t/owner".to_vec())];
    let stale = [Compare::CreateRevision(b"/t/owner".to_vec(), first.header.revision - 1)];
    assert!(!gw.txn(&stale, &delete, &[]).await.unwrap().succeeded);
    let current = [Compare::CreateRevision(b"/t/owner".to_vec(), first.header.revision)];
    assert!(gw.txn(&current, &delete, &[]).await.unwrap().succeeded);
    assert!(gw.range(b"/t/owner", false).await.unwrap().kvs.is_empty());

    gw.delete(b"/t/a/", true).await.unwrap();
    assert!(gw.range(b"/t/a/", true).await.unwrap().kvs.is_empty());
    assert_eq!(gw.range(b"/t/b", false).await.unwrap().kvs.len(), 1, "a prefix delete stays within its prefix");
}

#[tokio::test]
async fn keys_on_a_lease_go_with_it() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let gw = gateway(&etcd.endpoints());
    let (lease, ttl) = gw.lease_grant(2).await.unwrap();
    assert_eq!(ttl, 2);
    gw.put(b"/l/k", b"v", lease).await.unwrap();
    assert_eq!(gw.range(b"/l/k", false).await.unwrap().kvs[0].lease, lease);
    // Renewed, it outlives its TTL.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(gw.lease_keepalive(lease).await.unwrap(), Some(2));
    }
    assert_eq!(gw.range(b"/l/k", false).await.unwrap().kvs.len(), 1);
    // Not renewed, it expires and takes its keys; a renewal then says so.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(gw.range(b"/l/k", false).await.unwrap().kvs.is_empty());
    assert_eq!(gw.lease_keepalive(lease).await.unwrap(), None);
    // Revoked, at once.
    let (lease, _) = gw.lease_grant(30).await.unwrap();
    gw.put(b"/l/k", b"v", lease).await.unwrap();
    gw.lease_revoke(lease).await.unwrap();
    assert!(gw.range(b"/l/k", false).await.unwrap().kvs.is_empty());
    gw.lease_revoke(lease).await.unwrap();
}

#[tokio::test]
async fn a_watch_resumes_after_a_dropped_stream_without_missing_a_change() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let gw = gateway(&etcd.endpoints());
    let start = gw.put(b"/w/a", b"1", 0).await.unwrap();
    let mut watch = gw.watch(b"/w/", start + 1).await.unwrap();
    gw.put(b"/w/b", b"2", 0).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!((batch.events[0].kind.clone(), batch.events[0].kv.key_str()), (EventKind::Put, "/w/b"));
    let seen = batch.events[0].kv.mod_revision;
    drop(watch);
    // Changes while nobody watches are replayed from the next revision.
    gw.delete(b"/w/a", false).await.unwrap();
    gw.put(b"/w/c", b"3", 0).await.unwrap();
    gw.put(b"/elsewhere", b"x", 0).await.unwrap();
    let mut watch = gw.watch(b"/w/", seen + 1).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap();
        events.extend(batch.events.into_iter().map(|e| (e.kind, e.kv.key_str().to_string())));
    }
    assert_eq!(events, vec![(EventKind::Delete, "/w/a".to_string()), (EventKind::Put, "/w/c".to_string())]);
}

#[tokio::test]
async fn calls_fail_over_to_an_endpoint_that_answers() {
    let Some(mut etcd) = EtcdCluster::start(3).await else { return };
    // An endpoint nobody listens on first: the client moves on.
    let dead = "http://127.0.0.1:9".to_string();
    let mut endpoints = vec![dead.clone()];
    endpoints.extend(etcd.endpoints());
    let gw = gateway(&endpoints);
    gw.put(b"/f/a", b"1", 0).await.unwrap();
    // Kill the leader: calls go on through the others once a new leader is elected.
    let leader = etcd.leader().await.expect("a leader");
    etcd.kill(leader);
    let started = Instant::now();
    loop {
        match gw.put(b"/f/b", b"2", 0).await {
            Ok(_) => break,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(15), "no write 15 s after the leader died: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.range(b"/f/", true).await.unwrap().kvs.len(), 2);
    // Nothing answers: unreachable, not refused.
    let gw = gateway(&[dead]);
    assert!(matches!(gw.put(b"/f/c", b"3", 0).await, Err(GatewayError::Unreachable(_))));
}

#[tokio::test]
async fn members_see_each_other_and_a_shard_has_one_owner_at_a_time() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let s = settings(&etcd, "/c1", 5);
    let a = Etcd::start(&s, "a", "127.0.0.1:1001", false).await.unwrap();
    let b = Etcd::start(&s, "b", "127.0.0.1:1002", false).await.unwrap();
    let mut view = a.membership();
    tokio::time::timeout(Duration::from_secs(5), view.wait_for(|m| m.members.len() == 2)).await.unwrap().unwrap();
    let seen = view.borrow().clone();
    assert_eq!(seen.members["b"].addr, "127.0.0.1:1002");
    assert!(seen.active().count() == 2 && seen.epoch > 0);

    // One owner: a acquires, b is refused and told who holds it.
    let first = a.acquire(7).await.unwrap();
    assert!(first.previous_holders.is_empty(), "a shard never held has no previous holder");
    assert!(a.holds(7, first.token) && a.token(7) == Some(first.token));
    match b.acquire(7).await {
        Err(CoordinationError::Held { shard: 7, holder }) => assert_eq!(holder.as_deref(), Some("a")),
        other => panic!("b acquired a held shard: {other:?}"),
    }
    assert_eq!(a.acquire(7).await.unwrap().token, first.token, "acquiring twice is idempotent");
    assert!(!b.holds(7, first.token));

    // Hand-off: a releases with its token; b acquires with a newer token and learns whom to
    // pull from; a's old token is fenced.
    a.release(7, first.token).await.unwrap();
    assert!(!a.holds(7, first.token));
    let second = b.acquire(7).await.unwrap();
    assert!(second.token > first.token);
    assert_eq!(second.previous_holders, vec!["a".to_string()]);
    assert!(matches!(a.release(7, first.token).await, Err(CoordinationError::Fenced(7))));
    assert!(b.holds(7, second.token), "a stale release takes nothing from the holder");

    // Drain: visible to every member.
    a.set_state("a", MemberState::Draining).await.unwrap();
    let mut view_b = b.membership();
    tokio::time::timeout(Duration::from_secs(5), view_b.wait_for(|m| m.members.get("a").is_some_and(|x| x.state == MemberState::Draining)))
        .await
        .unwrap()
        .unwrap();

    // a leaves; an operator removes it: b's next hand-off no longer names a.
    a.leave().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), view_b.wait_for(|m| !m.members.contains_key("a"))).await.unwrap().unwrap();
    b.remove("a").await.unwrap();
    b.release(7, second.token).await.unwrap();
    let c = Etcd::start(&s, "c", "127.0.0.1:1003", false).await.unwrap();
    let third = c.acquire(7).await.unwrap();
    assert_eq!(third.previous_holders, vec!["b".to_string()], "a's files were declared lost");
}

#[tokio::test]
async fn an_expired_lease_takes_the_shards_with_it() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let s = settings(&etcd, "/c2", 2);
    let a = Etcd::start(&s, "a", "127.0.0.1:1001", false).await.unwrap();
    let b = Etcd::start(&s, "b", "127.0.0.1:1002", false).await.unwrap();
    let held = a.acquire(3).await.unwrap();
    // Someone ends a's lease (as etcd does when a's renewals stop arriving).
    let lease = a.lease_id().unwrap();
    gateway(&etcd.endpoints()).lease_revoke(lease).await.unwrap();
    let taken = b.acquire(3).await.unwrap();
    assert!(taken.token > held.token);
    assert_eq!(taken.previous_holders, vec!["a".to_string()]);
    // a notices at its next renewal, stops holding, and joins again on a new lease.
    eventually("a drops the shard", Duration::from_secs(3), || !a.holds(3, held.token)).await;
    eventually("a has a new lease", Duration::from_secs(3), || a.lease_id().is_some_and(|l| l != lease)).await;
    let mut view = b.membership();
    tokio::time::timeout(Duration::from_secs(5), view.wait_for(|m| m.members.contains_key("a"))).await.unwrap().unwrap();
    assert!(matches!(a.acquire(3).await, Err(CoordinationError::Held { .. })));
}

#[tokio::test]
async fn a_node_cut_off_from_etcd_stops_holding_before_its_lease_can_expire() {
    let Some(mut etcd) = EtcdCluster::start(1).await else { return };
    let s = settings(&etcd, "/c3", 3);
    let a = Etcd::start(&s, "a", "127.0.0.1:1001", false).await.unwrap();
    let held = a.acquire(1).await.unwrap();
    assert_eq!(a.lease_health(), LeaseHealth::Live);
    etcd.pause(0);
    let cut = Instant::now();
    eventually("the lease counts as lost", Duration::from_secs(4), || a.lease_health() == LeaseHealth::Lost).await;
    // TTL 3 s minus the 500 ms margin, counted from the last renewal sent (at most TTL/3 ago).
    let after = cut.elapsed();
    assert!(after < Duration::from_millis(3000), "lost only after {after:?}");
    assert!(!a.holds(1, held.token) && a.token(1).is_none());
    etcd.resume(0);
    // Back: either the lease survived (same token) or a new one was granted (shard gone).
    eventually("a lease again", Duration::from_secs(10), || a.lease_health() == LeaseHealth::Live).await;
}

/// A node id's previous lease is ended at once only when its holder cannot be serving; a
/// holder that may be live (its address accepts) keeps it until it expires, and one that keeps
/// renewing makes the newcomer refuse to start: two live processes never both hold one id.
#[tokio::test]
async fn a_node_id_in_use_is_not_taken_from_a_live_holder() {
    let Some(etcd) = EtcdCluster::start(1).await else { return };
    let s = settings(&etcd, "/c4", 2);
    // Its address accepts connections (the kernel's backlog, as for a paused process).
    let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = listening.local_addr().unwrap().to_string();

    // Renewing: the newcomer with the same id waits, then refuses, naming the setting.
    let live = Etcd::start(&s, "a", &live_addr, false).await.unwrap();
    let held = live.acquire(5).await.unwrap();
    let started = Instant::now();
    let refused = Etcd::start(&s, "a", "127.0.0.1:1011", false).await.err().expect("a second live holder of one id was admitted");
    assert!(refused.to_string().contains("in use") && refused.to_string().contains("node_id"), "{refused}");
    assert!(started.elapsed() >= Duration::from_secs(4), "refused only after the lease had two TTLs to expire");
    assert!(live.holds(5, held.token), "the live holder keeps its shard");

    // Stopped renewing (paused) but still accepting: the newcomer waits for the TTL, no less.
    drop(live);
    let started = Instant::now();
    let newcomer = Etcd::start(&s, "a", "127.0.0.1:1012", false).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1000), "took a possibly live holder's lease after {waited:?}");
    let b = Etcd::start(&s, "b", "127.0.0.1:1013", false).await.unwrap();
    assert!(b.acquire(5).await.unwrap().token > held.token);

    // Gone (its address refuses): the lease ends at once, as after a crash and restart.
    let lease = newcomer.lease_id().unwrap();
    drop(newcomer);
    let started = Instant::now();
    let restarted = Etcd::start(&s, "a", "127.0.0.1:1014", false).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500), "waited {:?} for a dead holder", started.elapsed());
    assert_ne!(restarted.lease_id(), Some(lease));
    drop(listening);
}
