//! The cluster: this node's view of the membership (from etcd through `coordination`), placement
//! of actor keys on the active members, and hand-off of actor files when owners change.
//!
//! A single node (no cluster settings) runs on `coordination::Local`: the only member and owner
//! of every shard. A cluster runs on etcd (`cluster.etcd.endpoints`): membership on leases, one
//! owner per shard with a fencing token (`ownership`); files move with `handoff`; calls between
//! nodes are signed (`auth`, `peer`).

pub mod auth;
pub mod handoff;
pub mod ownership;
pub mod peer;
pub mod placement;

use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use futures::future::BoxFuture;

use crate::config::ClusterSettings;
use crate::coordination::{Coordination, MemberState, Membership, ShardId};
use crate::ids::ActorKey;
use crate::runtime::registry::Registry;
use crate::sqlite::DataLayout;

pub use peer::ClusterError;
pub use placement::{Placement, Ring};

/// A node's identity in the cluster (`[A-Za-z0-9_-]{1,64}`, like every id).
pub type NodeId = crate::ids::Slug;

/// The id a node without `cluster.node_id` goes by: generated at its first start, kept in the
/// data directory so it survives restarts.
fn stable_node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node").join("node-id");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let id = existing.trim();
        if NodeId::parse(id).is_ok() {
            return Ok(id.to_string());
        }
    }
    let id = format!("n-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    crate::private_files::write_text(&path, &id)?;
    Ok(id)
}

/// What the cluster's background work and hand-off need from the node they run on. The node
/// implements it: the cluster knows nothing of the actors and the edge above it.
pub trait Host: Send + Sync + 'static {
    fn cluster(&self) -> &Cluster;
    fn layout(&self) -> &DataLayout;
    /// Where live actors are passivated before their files move.
    fn registry(&self) -> &Registry;
    /// Whether a key without a file here may have a copy in object storage (then a lost
    /// previous holder does not stop its activation: the copy is restored).
    fn restorable(&self) -> bool;
    /// Copies the catalog (stores, hosts, tokens) of the node at `addr` into this one's.
    fn pull_catalog<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Keys with acknowledged writes that could not be copied out while this node held no
    /// token for them: they wait for this node to hold their shard again.
    fn keys_awaiting_their_shard(&self) -> Vec<ActorKey>;
    /// `key`'s shard is placed on another node now, which gets its file by hand-off and copies
    /// it out under its own token: this node stops waiting to.
    fn stop_awaiting_shard(&self, key: &ActorKey);
}

/// The membership this node routes by, and the ring over its active members.
struct State {
    membership: Arc<Membership>,
    ring: Arc<Ring>,
}

pub struct Cluster {
    pub id: NodeId,
    pub addr: String,
    pub settings: ClusterSettings,
    peers: peer::Peers,
    state: RwLock<State>,
    /// Woken whenever the membership changes, so the rebalancer moves actors without polling.
    pub changed: tokio::sync::Notify,
    /// Membership and shard ownership: `Local` until `start` joins through etcd.
    coordination: RwLock<Arc<dyn Coordination>>,
    /// Shard ownership as this node uses it (a cluster only).
    pub(crate) shards: ownership::Shards,
    /// On etcd: set once the node's coordination is etcd's (until then it holds no shard).
    joined: std::sync::atomic::AtomicBool,
}

/// Refuses settings that would run several nodes without etcd (each would own every actor).
fn check_settings(settings: &ClusterSettings) -> anyhow::Result<()> {
    let etcd = !settings.etcd.endpoints.is_empty();
    if (settings.enabled || !settings.seeds.is_empty()) && !etcd {
        anyhow::bail!(
            "a cluster needs etcd: set cluster.etcd.endpoints (VITRINA_CLUSTER__ETCD__ENDPOINTS), or drop --cluster/--join \
             (cluster.enabled, cluster.seeds) to run a single node"
        );
    }
    if etcd && !settings.enabled {
        anyhow::bail!(
            "cluster.etcd.endpoints is set but the cluster is not enabled: set cluster.enabled (--cluster) or drop the endpoints"
        );
    }
    Ok(())
}

impl Cluster {
    /// `bound_addr` is the address the HTTP server actually listens on; `boot` counts the
    /// node's starts (the fencing token of a single node).
    pub fn new(settings: &ClusterSettings, bound_addr: &str, data_dir: &std::path::Path, boot: u64) -> anyhow::Result<Cluster> {
        check_settings(settings)?;
        let addr = settings.advertise.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| bound_addr.to_string());
        let id_text = match settings.node_id.clone().filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => stable_node_id(data_dir)?,
        };
        let id = NodeId::parse(&id_text).map_err(|e| anyhow::anyhow!("cluster.node_id: {e}"))?;
        let secret = match (&settings.secret, settings.enabled) {
            (Some(s), _) if !s.is_empty() => s.as_bytes().to_vec(),
            (_, true) => anyhow::bail!("cluster.secret (VITRINA_CLUSTER__SECRET) is required when the cluster is enabled"),
            _ => Vec::new(),
        };
        let local = crate::coordination::local::Local::new(id.as_str(), &addr, boot);
        // A cluster node starts with no member at all: its server answers before it has
        // joined, and others may forward to it as soon as its member key is in etcd. Under
        // `Local`'s membership (itself alone) it would open, and create, every actor from its
        // own disk meanwhile.
        let membership = if settings.enabled { Arc::new(Membership::default()) } else { local.membership().borrow().clone() };
        let ring = Arc::new(Ring::build(&membership, settings.vnodes));
        Ok(Cluster {
            coordination: RwLock::new(Arc::new(local)),
            shards: ownership::Shards::default(),
            peers: peer::Peers::new(id.clone(), secret)?,
            id,
            addr,
            settings: settings.clone(),
            state: RwLock::new(State { membership, ring }),
            changed: tokio::sync::Notify::new(),
            joined: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A cluster of nodes on etcd (else a single node on `Local`).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn coordination(&self) -> Arc<dyn Coordination> {
        self.coordination.read().clone()
    }

    /// On etcd: whether the node has joined (its coordination is etcd's). Before, it holds
    /// nothing and acknowledges nothing.
    pub fn joined(&self) -> bool {
        self.joined.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Routes by etcd from now on: `coordination` holds this node's shards.
    pub(crate) fn join_with(&self, coordination: Arc<dyn Coordination>, membership: Arc<Membership>) {
        *self.coordination.write() = coordination;
        self.joined.store(true, std::sync::atomic::Ordering::SeqCst);
        self.install_membership(membership);
    }

    /// The shard `key` belongs to.
    pub fn shard_of(&self, key: &ActorKey) -> ShardId {
        crate::coordination::shard_of(&key.to_string(), self.settings.shards)
    }

    /// Whether a write to `key` committed here may be acknowledged: this node holds the key's
    /// shard under a live lease (a single node always does).
    pub fn may_acknowledge(&self, key: &ActorKey) -> bool {
        !self.enabled() || self.joined() && self.coordination().token(self.shard_of(key)).is_some()
    }

    /// Routes by `membership` from now on.
    pub(crate) fn install_membership(&self, membership: Arc<Membership>) {
        {
            let mut state = self.state.write();
            if *state.membership == *membership {
                return;
            }
            state.ring = Arc::new(Ring::build(&membership, self.settings.vnodes));
            state.membership = membership.clone();
        }
        tracing::info!(epoch = membership.epoch, members = ?membership.members.iter().map(|(k, m)| format!("{k}={:?}", m.state)).collect::<Vec<_>>(), "membership changed");
        crate::metrics::incr("vitrina_cluster_view_changes_total", &[]);
        self.changed.notify_waiters();
    }

    /// The members this node routes by; its epoch is the etcd revision of the last change.
    pub fn membership(&self) -> Arc<Membership> {
        self.state.read().membership.clone()
    }

    pub fn epoch(&self) -> u64 {
        self.state.read().membership.epoch
    }

    /// This node's state in the membership (`None`: not a member, e.g. its lease lapsed).
    pub fn my_state(&self) -> Option<MemberState> {
        self.state.read().membership.members.get(self.id.as_str()).map(|m| m.state)
    }

    pub fn secret(&self) -> &[u8] {
        self.peers.secret()
    }

    pub fn client(&self) -> &reqwest::Client {
        self.peers.client()
    }

    pub async fn call(&self, addr: &str, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<reqwest::Response, ClusterError> {
        self.peers.call(addr, method, path, body).await
    }

    pub async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClusterError> {
        self.peers.call_json(addr, method, path, body).await
    }

    pub fn placement(&self, key: &ActorKey) -> Placement {
        if !self.enabled() {
            return Placement::Local;
        }
        self.placement_of_shard(self.shard_of(key))
    }

    /// Where the ring places `shard` (whose ownership etcd records).
    pub fn placement_of_shard(&self, shard: ShardId) -> Placement {
        let state = self.state.read();
        placement::place(&state.ring, &state.membership, &self.id, shard)
    }

    pub fn owns(&self, key: &ActorKey) -> bool {
        self.placement(key) == Placement::Local
    }

    /// Nodes that held `key`'s shard before this one and may still hold its file, newest first;
    /// `bool` says whether that node is still a member.
    pub fn previous_holders(&self, key: &ActorKey) -> Vec<(NodeId, String, bool)> {
        if !self.enabled() {
            return Vec::new();
        }
        self.shards.previous_holders(self, self.shard_of(key))
    }

    /// Marks `node` draining (an operator's `vitrina cluster drain`, or this node shutting
    /// down): it owns no shard from then on and hands its files over.
    pub async fn drain(&self, node: &NodeId) -> Result<(), ClusterError> {
        self.coordination().set_state(node.as_str(), MemberState::Draining).await.map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// Takes `node` out for good (`vitrina cluster remove`), a member or a node already gone
    /// (its lease expired): the files it held are declared lost.
    pub async fn remove(&self, node: &NodeId) -> Result<(), ClusterError> {
        self.coordination().remove(node.as_str()).await.map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// Ends this node's membership (after its files went to their new owners).
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.coordination().leave().await.map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// Ends this node's membership with files not handed over: it stays named as their holder
    /// (see `Coordination::resign`).
    pub async fn resign(&self) -> Result<(), ClusterError> {
        self.coordination().resign().await.map_err(|e| ClusterError::Refused(e.to_string()))
    }

    /// Other members worth talking to.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        self.membership()
            .members
            .iter()
            .filter(|(id, _)| *id != self.id.as_str())
            .filter_map(|(id, m)| Some((NodeId::parse(id).ok()?, m.addr.clone())))
            .collect()
    }
}

/// A cluster node joins through etcd and starts following membership and ownership; a single
/// node has nothing to start.
pub async fn start(node: Arc<dyn Host>) -> anyhow::Result<()> {
    if !node.cluster().enabled() {
        return Ok(());
    }
    ownership::start(node).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: bool, seeds: &[&str], endpoints: &[&str]) -> ClusterSettings {
        let mut s = ClusterSettings { enabled, seeds: seeds.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        s.etcd.endpoints = endpoints.iter().map(|s| s.to_string()).collect();
        s
    }

    #[test]
    fn a_cluster_without_etcd_is_refused_naming_the_setting() {
        assert!(check_settings(&settings(false, &[], &[])).is_ok(), "a single node needs nothing");
        assert!(check_settings(&settings(true, &["127.0.0.1:1"], &["127.0.0.1:2379"])).is_ok());
        for refused in [settings(true, &[], &[]), settings(true, &["127.0.0.1:1"], &[]), settings(false, &["127.0.0.1:1"], &[])] {
            let e = check_settings(&refused).unwrap_err().to_string();
            assert!(e.contains("cluster.etcd.endpoints") && e.contains("VITRINA_CLUSTER__ETCD__ENDPOINTS"), "{e}");
        }
        let e = check_settings(&settings(false, &[], &["127.0.0.1:2379"])).unwrap_err().to_string();
        assert!(e.contains("cluster.enabled"), "{e}");
    }
}
