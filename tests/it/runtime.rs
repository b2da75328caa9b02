//! The runtime layer in process, through its public API: a `Node` built without HTTP, and the
//! registry's activation, one live instance per key, passivation (idle and evicted), busy
//! reservations, and alarms that outlive their actor. Everything else in `tests/` is black-box.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vitrina::actors::shopper::{CartOp, ChangeCart, FireAlarms, GetCart};
use vitrina::actors::store::{Admin, AdminOp};
use vitrina::catalog::{AdminToken, NodeCatalog};
use vitrina::clock::now_ms;
use vitrina::cluster::Cluster;
use vitrina::config::Settings;
use vitrina::ids::{ActorKey, ProductId, SessionId, StoreId};
use vitrina::node::Node;
use vitrina::secrets::SecretBox;
use vitrina::sqlite::DataLayout;

/// A node on `dir` with the registry and actors but no HTTP server, alarm poller or sweeper.
fn node_in(dir: &std::path::Path, tune: impl FnOnce(&mut Settings)) -> Arc<Node> {
    let mut settings = Settings { data_dir: dir.to_path_buf(), ..Settings::default() };
    settings.actors.arbiters = 2;
    tune(&mut settings);
    let layout = DataLayout::new(dir);
    let catalog = NodeCatalog::open(&layout, "localhost").expect("catalog");
    let cluster = Cluster::new(&settings.cluster, "127.0.0.1:0", dir, 1).expect("cluster (off)");
    let secrets = SecretBox::for_node(None, None, &dir.join("secret-key")).expect("secret box");
    Node::new(settings, catalog, "operator".into(), cluster, None, secrets)
}

/// Creates store `id` with one product, `mug`, in stock by the thousand.
async fn store_with_a_mug(node: &Arc<Node>, id: &str) -> StoreId {
    let store = StoreId::parse(id).unwrap();
    node.catalog.create_store(&store, &AdminToken::generate()).expect("catalog row");
    let mug = json!({"id": "mug", "title": "Mug", "price": "5.00", "stock": 100_000});
    let op = AdminOp::UpsertProducts(vec![(Some(ProductId::parse("mug").unwrap()), mug)]);
    node.ask_store(&store, Admin::op(op)).await.expect("store actor answers").expect("products written");
    store
}

async fn cart(node: &Arc<Node>, store: &StoreId, sid: &SessionId) -> Value {
    let raw = node.ask_shopper(store, sid, GetCart).await.expect("shopper answers").expect("cart");
    serde_json::from_str(raw.get()).expect("cart JSON")
}

async fn add_mug(node: &Arc<Node>, store: &StoreId, sid: &SessionId, quantity: i64) {
    let op = CartOp::Add { product: ProductId::parse("mug").unwrap(), quantity };
    node.ask_shopper(store, sid, ChangeCart(op)).await.expect("shopper answers").expect("added");
}

fn shopper_key(store: &StoreId, sid: &SessionId) -> ActorKey {
    ActorKey::Shopper(store.clone(), sid.clone())
}

async fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn asking_an_actor_activates_it_once_and_it_stays_live() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), |_| {});
    assert_eq!(node.registry.live_counts(), (0, 0));
    let store = store_with_a_mug(&node, "shop").await;
    assert!(node.registry.is_live(&ActorKey::Store(store.clone())));
    assert_eq!(node.registry.live_counts(), (1, 0));

    let sid = SessionId::generate();
    assert!(!node.registry.is_live(&shopper_key(&store, &sid)));
    assert_eq!(cart(&node, &store, &sid).await["count"], 0);
    assert!(node.registry.is_live(&shopper_key(&store, &sid)));
    assert_eq!(node.registry.live_counts(), (1, 1));
    // A store that is not in the catalog is never activated.
    let ghost = StoreId::parse("ghost").unwrap();
    let Err(err) = node.ask_shopper(&ghost, &sid, GetCart).await else { panic!("a store not in the catalog answered") };
    assert!(matches!(err, vitrina::runtime::registry::ActorError::NoSuchStore(_)), "{err}");
    assert_eq!(node.registry.live_counts(), (1, 1));
}

#[actix_rt::test]
async fn concurrent_requests_for_one_key_meet_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), |s| s.shopper.max_quantity = 1000);
    let store = store_with_a_mug(&node, "shop").await;
    let sid = SessionId::generate();
    // 64 adds race for a key nobody has activated: they must all reach the same instance,
    // one turn at a time, or adds are lost between two instances' in-memory carts.
    let adds = (0..64).map(|_| {
        let (node, store, sid) = (node.clone(), store.clone(), sid.clone());
        tokio::spawn(async move { add_mug(&node, &store, &sid, 1).await })
    });
    for add in futures::future::join_all(adds).await {
        add.expect("add task");
    }
    assert_eq!(node.registry.live_counts(), (1, 1), "one store and one shopper instance");
    assert_eq!(cart(&node, &store, &sid).await["count"], 64);
    // The file agrees: a fresh instance (after eviction) reads the same cart.
    node.registry.evict(&shopper_key(&store, &sid)).await;
    assert!(!node.registry.is_live(&shopper_key(&store, &sid)));
    assert_eq!(cart(&node, &store, &sid).await["count"], 64);
}

#[actix_rt::test]
async fn idle_actors_passivate_and_come_back_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), |s| {
        s.actors.idle_timeout_secs = 1;
        s.actors.isolate_idle_secs = 1;
    });
    let store = store_with_a_mug(&node, "shop").await;
    let sid = SessionId::generate();
    add_mug(&node, &store, &sid, 3).await;
    let key = shopper_key(&store, &sid);
    assert!(node.registry.is_live(&key));
    wait_for("the idle shopper and store to passivate", Duration::from_secs(10), || node.registry.live_counts() == (0, 0)).await;
    assert!(!node.registry.is_live(&key));
    // The next request activates a new instance that reads what the old one committed.
    assert_eq!(cart(&node, &store, &sid).await["count"], 3);
    assert!(node.registry.is_live(&key));
}

#[actix_rt::test]
async fn a_reserved_key_holds_its_requests_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), |_| {});
    let store = store_with_a_mug(&node, "shop").await;
    let sid = SessionId::generate();
    let key = shopper_key(&store, &sid);
    let reservation = node.registry.try_reserve(&key).expect("an idle key can be reserved");
    assert!(node.registry.try_reserve(&key).is_none(), "one reservation at a time");
    let waiting = {
        let (node, store, sid) = (node.clone(), store.clone(), sid.clone());
        tokio::spawn(async move { cart(&node, &store, &sid).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a request for a reserved key waits");
    assert!(!node.registry.is_live(&key));
    drop(reservation);
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("released: the request proceeds").unwrap();
    assert_eq!(answered["count"], 0);
    assert!(node.registry.is_live(&key));
    assert!(node.registry.try_reserve(&key).is_none(), "a live key cannot be reserved");
}

#[actix_rt::test]
async fn an_alarm_outlives_its_passivated_actor_and_fires_on_the_next_instance() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), |s| s.shopper.cart_idle_ttl_secs = 1);
    let store = store_with_a_mug(&node, "shop").await;
    let sid = SessionId::generate();
    let key = shopper_key(&store, &sid);
    add_mug(&node, &store, &sid, 2).await;
    // Not due yet: the index does not name it, and firing early keeps the cart.
    assert!(!node.catalog.due_alarms(now_ms(), 256).unwrap().contains(&key));
    node.ask_shopper(&store, &sid, FireAlarms).await.expect("fire early");
    assert_eq!(cart(&node, &store, &sid).await["count"], 2, "an alarm fired before it is due changes nothing");

    node.registry.evict(&key).await;
    assert!(!node.registry.is_live(&key));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The node's index names the passivated actor (what the alarm poller reads) ...
    let due = node.catalog.due_alarms(now_ms(), 256).unwrap();
    assert!(due.contains(&key), "the index wakes passivated actors: {due:?}");
    // ... and delivering it activates a new instance whose own alarm table fires: the idle cart empties.
    node.ask_shopper(&store, &sid, FireAlarms).await.expect("fire");
    assert_eq!(cart(&node, &store, &sid).await["count"], 0);
    assert!(!node.catalog.due_alarms(now_ms(), 256).unwrap().contains(&key), "a fired alarm leaves the index");
}
