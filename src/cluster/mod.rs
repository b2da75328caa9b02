//! The cluster: membership views with a ring epoch, placement of actor keys on a consistent-hash
//! ring, forwarding of requests to the owner, and hand-off of actor files when owners change.
//!
//! Protocol (see ARCHITECTURE.md for failure modes):
//! - A view `{epoch, members}` is changed only by the *coordinator* (the lowest-id active member
//!   reachable from the proposer; other nodes forward proposals to it) and pushed to every
//!   member. Every node also pulls a peer's view each heartbeat; a node adopts any view that
//!   supersedes its own (higher epoch, ties broken by digest).
//! - Join: a new node asks a seed to propose `Join`; it gets the new view and the catalog.
//! - Drain: the node becomes `Draining` (owns nothing), pushes its actors to their new owners,
//!   then proposes `Left` for itself. Remove: an operator marks a node `Left`.
//! - Failure: the coordinator marks a member `Down` after `down_after_ms` without an answer.
//! - Hand-off: an owner activating a key without a local file pulls it from the key's owners in
//!   earlier views (which passivate their instance first), else restores it from object storage.

pub mod auth;
pub mod handoff;
pub mod ownership;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::ids::ActorKey;
use view::{Member, MemberState, NodeId, Ring, View};

use futures::future::BoxFuture;

use crate::config::ClusterSettings;
use crate::coordination::{Coordination, Membership, ShardId};
use crate::runtime::registry::Registry;
use crate::sqlite::DataLayout;

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
}

/// Where an actor lives under the current view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Local,
    Remote {
        node: NodeId,
        addr: String,
    },
    /// No active member (a cluster whose every node is draining).
    Nowhere,
}

/// A change to the membership, applied by the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Proposal {
    Join { node: NodeId, addr: String },
    Drain { node: NodeId },
    Left { node: NodeId },
    Remove { node: NodeId },
    Down { node: NodeId },
}

impl Proposal {
    fn apply(&self, view: &View) -> Option<View> {
        let set = |node: &NodeId, state: MemberState| {
            let current = view.members.get(node)?;
            (current.state != state).then(|| {
                view.with(|m| {
                    if let Some(member) = m.get_mut(node) {
                        member.state = state;
                    }
                })
            })
        };
        match self {
            Proposal::Join { node, addr } => {
                let same = view.members.get(node).is_some_and(|m| &m.addr == addr && m.state == MemberState::Active);
                (!same).then(|| {
                    view.with(|m| {
                        m.insert(node.clone(), Member { addr: addr.clone(), state: MemberState::Active });
                    })
                })
            }
            Proposal::Drain { node } => set(node, MemberState::Draining),
            Proposal::Left { node } | Proposal::Remove { node } => set(node, MemberState::Left),
            Proposal::Down { node } => {
                // Only an active or draining member can go down; a left one is already out.
                let m = view.members.get(node)?;
                matches!(m.state, MemberState::Active | MemberState::Draining).then(|| {
                    view.with(|ms| {
                        if let Some(member) = ms.get_mut(node) {
                            member.state = MemberState::Down;
                        }
                    })
                })
            }
        }
    }
}

struct State {
    view: View,
    ring: Arc<Ring>,
    /// Rings of the view's earlier placements (`View::previous`), newest first.
    previous_rings: Vec<Arc<Ring>>,
}

fn previous_rings(view: &View, vnodes: usize) -> Vec<Arc<Ring>> {
    view.previous.iter().map(|ids| Arc::new(Ring::from_nodes(0, ids.iter().map(|id| id.as_str().to_string()), vnodes))).collect()
}

pub struct Cluster {
    pub id: NodeId,
    pub addr: String,
    pub settings: ClusterSettings,
    secret: Vec<u8>,
    state: RwLock<State>,
    client: reqwest::Client,
    last_seen: Mutex<HashMap<NodeId, Instant>>,
    /// Woken whenever the view changes, so the rebalancer moves actors without polling.
    pub changed: tokio::sync::Notify,
    view_file: std::path::PathBuf,
    /// Membership and shard ownership: `Local` until `start` joins through etcd.
    coordination: RwLock<Arc<dyn Coordination>>,
    /// Shard ownership as this node uses it (etcd only).
    pub(crate) shards: ownership::Shards,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster call to {0} failed: {1}")]
    Call(String, String),
    #[error("{0}")]
    Refused(String),
}

impl Cluster {
    /// `bound_addr` is the address the HTTP server actually listens on; `boot` counts the
    /// node's starts (the fencing token of a single node).
    pub fn new(settings: &ClusterSettings, bound_addr: &str, data_dir: &std::path::Path, boot: u64) -> anyhow::Result<Cluster> {
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
        let view_file = data_dir.join("node").join("cluster-view.json");
        // A restarted node starts from the view it last knew; peers correct it if it is stale.
        let view = std::fs::read(&view_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<View>(&b).ok())
            .filter(|v| settings.enabled && v.members.contains_key(&id))
            .unwrap_or_else(|| View::single(id.clone(), addr.clone()));
        let ring = Ring::build(&view, settings.vnodes);
        let previous = previous_rings(&view, settings.vnodes);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(20))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        let local = crate::coordination::local::Local::new(id.as_str(), &addr, boot);
        Ok(Cluster {
            coordination: RwLock::new(Arc::new(local)),
            shards: ownership::Shards::default(),
            id,
            addr,
            settings: settings.clone(),
            secret,
            state: RwLock::new(State { view, ring, previous_rings: previous }),
            client,
            last_seen: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            view_file,
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Membership and ownership live in etcd (`cluster.etcd.endpoints` set).
    pub fn on_etcd(&self) -> bool {
        self.settings.enabled && !self.settings.etcd.endpoints.is_empty()
    }

    pub fn coordination(&self) -> Arc<dyn Coordination> {
        self.coordination.read().clone()
    }

    /// The shard `key` belongs to.
    pub fn shard_of(&self, key: &ActorKey) -> ShardId {
        crate::coordination::shard_of(&key.to_string(), self.settings.shards)
    }

    /// Whether a write to `key` committed here may be acknowledged: this node holds the key's
    /// shard under a live lease (always, for a single node or the home-made protocol).
    pub fn may_acknowledge(&self, key: &ActorKey) -> bool {
        !self.on_etcd() || self.coordination().token(self.shard_of(key)).is_some()
    }

    /// Routes by etcd's membership from now on: the view is derived from it.
    fn install_membership(&self, membership: &Membership) {
        let members = membership
            .members
            .iter()
            .filter_map(|(id, m)| {
                let state = match m.state {
                    crate::coordination::MemberState::Active => MemberState::Active,
                    crate::coordination::MemberState::Draining => MemberState::Draining,
                };
                Some((NodeId::parse(id).ok()?, Member { addr: m.addr.clone(), state }))
            })
            .collect();
        let view = View { epoch: membership.epoch, members, previous: Vec::new() };
        {
            let mut state = self.state.write();
            if state.view == view {
                return;
            }
            state.ring = Ring::build(&view, self.settings.vnodes);
            state.previous_rings = Vec::new();
            state.view = view.clone();
        }
        tracing::info!(epoch = view.epoch, members = ?view.members.iter().map(|(k, m)| format!("{k}={:?}", m.state)).collect::<Vec<_>>(), "membership changed");
        crate::metrics::incr("vitrina_cluster_view_changes_total", &[]);
        self.changed.notify_waiters();
    }

    pub fn view(&self) -> View {
        self.state.read().view.clone()
    }

    pub fn epoch(&self) -> u64 {
        self.state.read().view.epoch
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn placement(&self, key: &ActorKey) -> Placement {
        if !self.enabled() {
            return Placement::Local;
        }
        let state = self.state.read();
        // On etcd the ring places shards, whose ownership etcd records.
        let owner = if self.on_etcd() { state.ring.owner_of_str(&format!("shard-{}", self.shard_of(key))) } else { state.ring.owner(key) };
        match owner {
            None => Placement::Nowhere,
            Some(owner) if owner == self.id.as_str() => Placement::Local,
            Some(owner) => match NodeId::parse(owner) {
                Ok(node) => {
                    let addr = state.view.addr_of(&node).unwrap_or_default().to_string();
                    Placement::Remote { node, addr }
                }
                Err(_) => Placement::Nowhere,
            },
        }
    }

    pub fn owns(&self, key: &ActorKey) -> bool {
        self.placement(key) == Placement::Local
    }

    /// Nodes that owned `key` in earlier views and may still hold its file, newest first;
    /// `bool` says whether that node is still reachable in principle (active or draining).
    pub fn previous_holders(&self, key: &ActorKey) -> Vec<(NodeId, String, bool)> {
        if self.on_etcd() {
            return self.shards.previous_holders(self, self.shard_of(key));
        }
        let state = self.state.read();
        let mut out: Vec<(NodeId, String, bool)> = Vec::new();
        for old_ring in &state.previous_rings {
            let Some(owner) = old_ring.owner(key) else { continue };
            let Ok(node) = NodeId::parse(owner) else { continue };
            if node == self.id || out.iter().any(|(n, _, _)| n == &node) {
                continue;
            }
            let Some(member) = state.view.members.get(&node) else { continue };
            let alive = matches!(member.state, MemberState::Active | MemberState::Draining);
            out.push((node, member.addr.clone(), alive));
        }
        out
    }

    /// Adopts `view` if it supersedes the current one. Returns whether it did.
    pub fn adopt(&self, view: View) -> bool {
        // On etcd, membership comes from etcd alone.
        if self.on_etcd() {
            return false;
        }
        {
            let mut state = self.state.write();
            if !view.supersedes(&state.view) {
                return false;
            }
            state.ring = Ring::build(&view, self.settings.vnodes);
            state.previous_rings = previous_rings(&view, self.settings.vnodes);
            state.view = view.clone();
        }
        if let Ok(bytes) = serde_json::to_vec(&view) {
            let _ = crate::private_files::write_text(&self.view_file, &String::from_utf8_lossy(&bytes));
        }
        tracing::info!(epoch = view.epoch, members = ?view.members.iter().map(|(k, m)| format!("{k}={:?}", m.state)).collect::<Vec<_>>(), "adopted cluster view");
        crate::metrics::incr("vitrina_cluster_view_changes_total", &[]);
        self.changed.notify_waiters();
        true
    }

    fn mark_seen(&self, node: &NodeId) {
        self.last_seen.lock().insert(node.clone(), Instant::now());
    }

    fn seen_within(&self, node: &NodeId, window: Duration) -> bool {
        node == &self.id || self.last_seen.lock().get(node).is_some_and(|t| t.elapsed() < window)
    }

    /// The member that applies proposals: the lowest-id active member we can reach.
    fn coordinator(&self) -> Option<(NodeId, String)> {
        let window = Duration::from_millis(self.settings.down_after_ms);
        let view = self.view();
        let found = view.active().find(|(id, _)| self.seen_within(id, window)).map(|(id, m)| (id.clone(), m.addr.clone()));
        found
    }

    /// A signed internal call to another node.
    pub async fn call(&self, addr: &str, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<reqwest::Response, ClusterError> {
        let (ts, sig) = auth::sign(&self.secret, method.as_str(), path, &body);
        self.client
            .request(method, format!("http://{addr}{path}"))
            .header(auth::NODE_HEADER, self.id.as_str())
            .header(auth::TS_HEADER, ts)
            .header(auth::AUTH_HEADER, sig)
            .header(auth::EPOCH_HEADER, self.epoch().to_string())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ClusterError::Call(addr.to_string(), e.to_string()))
    }

    pub async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClusterError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let res = self.call(addr, method, path, bytes).await?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(ClusterError::Refused(format!("{addr}{path} answered {status}: {text}")));
        }
        res.json().await.map_err(|e| ClusterError::Call(addr.to_string(), e.to_string()))
    }

    /// Applies a proposal here if this node coordinates, else asks the coordinator. On etcd,
    /// drain and remove are written to etcd; joins, leaves and failures happen through leases.
    pub async fn propose(&self, proposal: Proposal) -> Result<View, ClusterError> {
        if self.on_etcd() {
            let coordination = self.coordination();
            let result = match &proposal {
                Proposal::Drain { node } => coordination.set_state(node.as_str(), crate::coordination::MemberState::Draining).await,
                Proposal::Remove { node } => coordination.remove(node.as_str()).await,
                Proposal::Left { node } if *node == self.id => coordination.leave().await,
                Proposal::Join { .. } | Proposal::Left { .. } | Proposal::Down { .. } => Ok(()),
            };
            result.map_err(|e| ClusterError::Refused(e.to_string()))?;
            return Ok(self.view());
        }
        match self.coordinator() {
            Some((coordinator, addr)) if coordinator != self.id => {
                match self.call_json::<View>(&addr, reqwest::Method::POST, "/internal/propose", &proposal).await {
                    Ok(view) => {
                        self.adopt(view.clone());
                        return Ok(view);
                    }
                    Err(e) => tracing::warn!(error = %e, "coordinator unreachable; applying the proposal here"),
                }
            }
            _ => {}
        }
        let next = {
            let current = self.view();
            match proposal.apply(&current) {
                Some(next) => next,
                None => return Ok(current),
            }
        };
        self.adopt(next.clone());
        self.broadcast_view().await;
        Ok(next)
    }

    /// Pushes the current view to every other member (best effort; heartbeats converge the rest).
    pub async fn broadcast_view(&self) {
        let view = self.view();
        let targets: Vec<String> = view
            .members
            .iter()
            .filter(|(id, m)| **id != self.id && matches!(m.state, MemberState::Active | MemberState::Draining))
            .map(|(_, m)| m.addr.clone())
            .collect();
        let calls = targets.iter().map(|addr| self.call_json::<serde_json::Value>(addr, reqwest::Method::POST, "/internal/view", &view));
        for result in futures::future::join_all(calls).await {
            if let Err(e) = result {
                tracing::debug!(error = %e, "view push failed");
            }
        }
    }

    /// Other members worth talking to (active or draining).
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        self.view()
            .members
            .into_iter()
            .filter(|(id, m)| *id != self.id && matches!(m.state, MemberState::Active | MemberState::Draining))
            .map(|(id, m)| (id, m.addr))
            .collect()
    }
}

/// Joins through the seeds (if this node is not yet in a multi-node view), then runs the
/// heartbeat/failure-detector and rebalancer loops.
pub async fn start(node: Arc<dyn Host>) -> anyhow::Result<()> {
    let cluster = &node.cluster();
    if !cluster.enabled() {
        return Ok(());
    }
    if cluster.on_etcd() {
        return ownership::start(node.clone()).await;
    }
    let seeds: Vec<String> = cluster.settings.seeds.iter().filter(|s| **s != cluster.addr).cloned().collect();
    // First learn the cluster's current view (from the seeds, or the peers of the view this node
    // last knew). A restarted member that was declared down meanwhile must set its old files
    // aside before it owns anything again.
    let mut contacts: Vec<String> = seeds.clone();
    contacts.extend(cluster.peers().into_iter().map(|(_, addr)| addr));
    let mut known_view = None;
    for addr in &contacts {
        if let Ok(view) = cluster.call_json::<View>(addr, reqwest::Method::GET, "/internal/view", &()).await {
            cluster.adopt(view.clone());
            known_view = Some(view);
            break;
        }
    }
    handoff::rejoin_if_down(&*node).await;
    // Active in the cluster's own view (not just in this node's single-node view)?
    let member = known_view.is_some_and(|v| v.members.get(&cluster.id).is_some_and(|m| m.state == MemberState::Active))
        || cluster.view().members.len() > 1 && cluster.view().members.get(&cluster.id).is_some_and(|m| m.state == MemberState::Active);
    if !seeds.is_empty() && !member {
        let mut joined = false;
        for attempt in 0..20 {
            for seed in &seeds {
                // Copy the catalog (stores, hosts) before joining: once the new view is out,
                // the other nodes forward requests for keys this node owns, and without the
                // catalog it would answer them 404 `no store is served at …`. It is pulled
                // again after the join for stores created meanwhile.
                if let Err(e) = node.pull_catalog(seed).await {
                    tracing::warn!(%seed, attempt, error = %e, "catalog pull before joining failed");
                    continue;
                }
                let join = Proposal::Join { node: cluster.id.clone(), addr: cluster.addr.clone() };
                match cluster.call_json::<View>(seed, reqwest::Method::POST, "/internal/join", &join).await {
                    Ok(view) => {
                        cluster.adopt(view);
                        joined = true;
                        break;
                    }
                    Err(e) => tracing::warn!(%seed, attempt, error = %e, "join failed"),
                }
            }
            if joined {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !joined {
            anyhow::bail!("could not join the cluster through {seeds:?}");
        }
    }
    // The catalog (stores, hosts, tokens) comes from any peer.
    for (_, addr) in cluster.peers() {
        if node.pull_catalog(&addr).await.is_ok() {
            break;
        }
    }
    actix_web::rt::spawn(heartbeat_loop(node.clone()));
    actix_web::rt::spawn(handoff::rebalance_loop(node.clone()));
    Ok(())
}

async fn heartbeat_loop(node: Arc<dyn Host>) {
    let cluster = &node.cluster();
    let every = Duration::from_millis(cluster.settings.heartbeat_ms.max(50));
    let down_after = Duration::from_millis(cluster.settings.down_after_ms);
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let peers = cluster.peers();
        let probes = peers.iter().map(|(id, addr)| async move {
            let result = cluster.call_json::<View>(addr, reqwest::Method::GET, "/internal/view", &()).await;
            (id.clone(), result)
        });
        for (id, result) in futures::future::join_all(probes).await {
            if let Ok(view) = result {
                cluster.mark_seen(&id);
                if cluster.adopt(view) {
                    // A newer view may come with new stores: keep the catalog in step.
                }
            }
        }
        // Failure detection, by the coordinator only, and not before everyone had a chance to
        // answer since this node started.
        if started.elapsed() < down_after {
            continue;
        }
        if cluster.coordinator().is_some_and(|(c, _)| c == cluster.id) {
            for (id, _) in peers {
                if !cluster.seen_within(&id, down_after) {
                    tracing::warn!(node = %id, "member unreachable; declaring it down");
                    let _ = cluster.propose(Proposal::Down { node: id }).await;
                }
            }
        }
    }
}
