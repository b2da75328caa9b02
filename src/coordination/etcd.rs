//! Membership and shard ownership in etcd.
//!
//! Keys, under `cluster.etcd.prefix`:
//! - `members/{id}` = `{addr, state}`, on the node's lease: a node that stops renewing its
//!   lease drops out of the membership when the lease expires.
//! - `owners/{shard}` = the owner's id, on the owner's lease, created only if absent
//!   (`create_revision == 0`): at most one owner per shard, and the key's create revision is
//!   the owner's fencing token.
//! - `holders/{shard}` = `{node, previous}`, without a lease: the last node that acquired the
//!   shard (and the one before it), so a new owner knows whose files to pull even after that
//!   node died. An operator's `remove` clears the entries naming the removed node: its files
//!   are lost.
//!
//! The node renews its lease every third of its TTL. It counts as holding its shards only
//! while its last successful renewal was *sent* less than TTL minus `lease_margin_ms` ago;
//! past that it acts as if the lease had expired, before etcd can give its shards to others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::gateway::{Compare, EventKind, Gateway, GatewayError, Op};
use super::{Acquired, Coordination, CoordinationError, CoordinationResult, LeaseHealth, Member, MemberState, Membership, ShardId, Token};
use crate::config::EtcdSettings;

/// The value of `holders/{shard}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HolderRecord {
    /// The last node that acquired the shard ("" after an operator removed it).
    node: String,
    /// Earlier holders, newest first, that may still have files of the shard's keys `node`
    /// has not pulled yet.
    #[serde(default)]
    previous: Vec<String>,
}

/// Beyond twice the TTL, how long a previous lease of this node's id may take to expire
/// before the id is taken to be in use.
const PREVIOUS_LEASE_SLACK: Duration = Duration::from_secs(2);
/// How long a previous holder's address has to accept a connection to count as maybe live.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Earlier holders a record remembers: a key's file has long been pushed or pulled by then.
const PREVIOUS_HOLDERS: usize = 4;

impl HolderRecord {
    /// The record once `node` acquired the shard.
    fn taken_by(&self, node: &str) -> HolderRecord {
        let mut previous: Vec<String> = Vec::new();
        for holder in std::iter::once(&self.node).chain(&self.previous) {
            if !holder.is_empty() && holder != node && !previous.contains(holder) {
                previous.push(holder.clone());
            }
        }
        previous.truncate(PREVIOUS_HOLDERS);
        HolderRecord { node: node.to_string(), previous }
    }
}

struct Lease {
    id: u64,
    /// When the last renewal that succeeded (or the grant) was sent.
    renewed: Instant,
}

struct Inner {
    id: String,
    addr: String,
    prefix: String,
    ttl: Duration,
    margin: Duration,
    gateway: Gateway,
    /// `None` while the node has no lease (lost, not yet granted again).
    lease: Mutex<Option<Lease>>,
    /// Shards held on the current lease, with their tokens. Cleared when the lease is lost.
    held: Mutex<HashMap<ShardId, Token>>,
    /// This node's own member state, put again with every new lease.
    state: Mutex<MemberState>,
    membership: tokio::sync::watch::Sender<Arc<Membership>>,
    /// Set once the node left the cluster: no new lease after that.
    left: std::sync::atomic::AtomicBool,
}

pub struct Etcd {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Inner {
    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}/{rest}", self.prefix).into_bytes()
    }

    fn member_key(&self, id: &str) -> Vec<u8> {
        self.key(&format!("members/{id}"))
    }

    fn lease_id(&self) -> Option<u64> {
        self.lease.lock().as_ref().map(|l| l.id)
    }

    fn health(&self) -> LeaseHealth {
        match &*self.lease.lock() {
            Some(lease) if lease.renewed.elapsed() + self.margin < self.ttl => LeaseHealth::Live,
            _ => LeaseHealth::Lost,
        }
    }

    /// Forgets the lease and every shard held on it.
    fn lose_lease(&self) {
        *self.lease.lock() = None;
        let lost = std::mem::take(&mut *self.held.lock());
        if !lost.is_empty() {
            tracing::warn!(shards = lost.len(), "lease expired: no longer owner of its shards");
        }
        coordination_event("lease_lost");
    }

    /// Grants a lease and puts this node's member key on it.
    /// A member key of this id on a lease is this node's from before a restart, or another
    /// live process's that was given the same id. Ending the lease of a live holder would let
    /// it acknowledge writes on shards this node then takes, until its next renewal fails; so
    /// the lease is revoked (its shards free at once) only when its holder cannot be serving:
    /// its address is the one this process now listens on, or refuses connections. Otherwise
    /// this waits for the lease to expire, and refuses to start if something keeps renewing it.
    async fn end_previous_lease(&self, addr_is_bound_here: bool) -> anyhow::Result<()> {
        let key = self.member_key(&self.id);
        let Ok(old) = self.gateway.range(&key, false).await else { return Ok(()) };
        let Some(kv) = old.kvs.into_iter().find(|kv| kv.lease != 0) else { return Ok(()) };
        let holder = serde_json::from_slice::<Member>(&kv.value).map(|m| m.addr).unwrap_or_default();
        let serving = !(addr_is_bound_here && holder == self.addr) && may_be_serving(&holder).await;
        if !serving {
            let _ = self.gateway.lease_revoke(kv.lease).await;
            return Ok(());
        }
        tracing::warn!(id = %self.id, %holder, "this node id's lease is held by a process that may be live; waiting for it to expire");
        let until = Instant::now() + self.ttl * 2 + PREVIOUS_LEASE_SLACK;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.gateway.range(&key, false).await {
                Ok(now) if !now.kvs.iter().any(|k| k.lease == kv.lease) => return Ok(()),
                _ => {}
            }
        }
        anyhow::bail!(
            "node id {:?} is in use: its lease in etcd is still renewed by a node at {holder}; give this node another --node-id \
             (cluster.node_id)",
            self.id
        )
    }

    async fn establish(&self) -> Result<(), GatewayError> {
        let sent = Instant::now();
        let (id, _) = self.gateway.lease_grant(self.ttl.as_secs().max(1)).await?;
        let state = *self.state.lock();
        let member = serde_json::to_vec(&Member { addr: self.addr.clone(), state }).unwrap_or_default();
        if let Err(e) = self.gateway.put(&self.member_key(&self.id), &member, id).await {
            let _ = self.gateway.lease_revoke(id).await;
            return Err(e);
        }
        *self.lease.lock() = Some(Lease { id, renewed: sent });
        coordination_event("lease_granted");
        tracing::info!(lease = id, "etcd lease granted; member key put");
        Ok(())
    }

    /// Renews the lease every third of its TTL; grants a new one when it expired.
    async fn keep_alive(self: Arc<Self>) {
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            if self.left.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Some(id) = self.lease_id() else {
                if let Err(e) = self.establish().await {
                    tracing::warn!(error = %e, "cannot grant an etcd lease; retrying");
                }
                continue;
            };
            let sent = Instant::now();
            match self.gateway.lease_keepalive(id).await {
                Ok(Some(_)) => {
                    if let Some(lease) = self.lease.lock().as_mut().filter(|l| l.id == id) {
                        lease.renewed = sent;
                    }
                }
                Ok(None) => {
                    self.lose_lease();
                    if let Err(e) = self.establish().await {
                        tracing::warn!(error = %e, "cannot grant an etcd lease; retrying");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, health = ?self.health(), "etcd lease renewal failed");
                    coordination_event("keepalive_failed");
                }
            }
        }
    }

    fn parse_member(&self, key: &[u8], value: &[u8]) -> Option<(String, Member)> {
        let key = std::str::from_utf8(key).ok()?;
        let id = key.strip_prefix(&format!("{}/members/", self.prefix))?;
        let member: Member = serde_json::from_slice(value).ok()?;
        Some((id.to_string(), member))
    }

    /// Publishes a new membership, and follows this node's own state (a drain set by another).
    fn publish(&self, membership: Membership) {
        if let Some(me) = membership.members.get(&self.id) {
            *self.state.lock() = me.state;
        }
        self.membership.send_if_modified(|current| {
            if current.members == membership.members && current.epoch >= membership.epoch {
                return false;
            }
            *current = Arc::new(membership);
            true
        });
    }

    /// Reads the members, then follows changes with a watch, resuming after a broken stream
    /// from the revision after the last one seen (reading afresh if it was compacted).
    async fn watch_members(self: Arc<Self>) {
        let prefix = self.key("members/");
        loop {
            let range = match self.gateway.range(&prefix, true).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the members from etcd; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut members: std::collections::BTreeMap<String, Member> =
                range.kvs.iter().filter_map(|kv| self.parse_member(&kv.key, &kv.value)).collect();
            let mut seen = range.header.revision;
            self.publish(Membership { epoch: seen, members: members.clone() });
            'stream: loop {
                let mut watch = match self.gateway.watch(&prefix, seen + 1).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the members; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                loop {
                    match watch.next().await {
                        Ok(batch) => {
                            for event in &batch.events {
                                let Ok(key) = std::str::from_utf8(&event.kv.key) else { continue };
                                let Some(id) = key.strip_prefix(&format!("{}/members/", self.prefix)) else { continue };
                                match event.kind {
                                    EventKind::Delete => {
                                        members.remove(id);
                                    }
                                    EventKind::Put => {
                                        if let Some((id, member)) = self.parse_member(&event.kv.key, &event.kv.value) {
                                            members.insert(id, member);
                                        }
                                    }
                                }
                                seen = seen.max(event.kv.mod_revision);
                            }
                            if !batch.events.is_empty() {
                                self.publish(Membership { epoch: seen, members: members.clone() });
                            }
                        }
                        Err(GatewayError::Compacted(_)) => break 'stream,
                        Err(e) => {
                            tracing::debug!(error = %e, "member watch broke; resuming");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue 'stream;
                        }
                    }
                }
            }
        }
    }

    async fn holder_record(&self, shard: ShardId) -> Result<(Option<HolderRecord>, u64), GatewayError> {
        let range = self.gateway.range(&self.key(&format!("holders/{shard}")), false).await?;
        Ok(match range.kvs.first() {
            Some(kv) => (serde_json::from_slice(&kv.value).ok(), kv.mod_revision),
            None => (None, 0),
        })
    }

    async fn acquire(&self, shard: ShardId) -> CoordinationResult<Acquired> {
        let owners = self.key(&format!("owners/{shard}"));
        let holders = self.key(&format!("holders/{shard}"));
        for _ in 0..5 {
            let lease = match (self.lease_id(), self.health()) {
                (Some(id), LeaseHealth::Live) => id,
                _ => return Err(CoordinationError::NoLease),
            };
            let (record, holders_rev) = self.holder_record(shard).await?;
            let record = record.unwrap_or_default();
            let next = record.taken_by(&self.id);
            let value = serde_json::to_vec(&next).unwrap_or_default();
            let txn = self
                .gateway
                .txn(
                    &[Compare::CreateRevision(owners.clone(), 0), Compare::ModRevision(holders.clone(), holders_rev)],
                    &[Op::Put(owners.clone(), self.id.clone().into_bytes(), lease), Op::Put(holders.clone(), value, 0)],
                    &[Op::Get(owners.clone())],
                )
                .await?;
            if txn.succeeded {
                let token = txn.header.revision;
                self.held.lock().insert(shard, token);
                // Another node acquired the shard after this one last held it (if ever): any
                // file of the shard this node still has may be older than that node's. Whether
                // this node is still named among the earlier holders does not matter (it is
                // not once it left); only a record no one holds (an operator removed its
                // holder) leaves this node's files the newest there are.
                let local_files_stale = !record.node.is_empty() && record.node != self.id;
                return Ok(Acquired { token, previous_holders: next.previous, local_files_stale });
            }
            let owner = txn.ranges().into_iter().next().and_then(|r| r.kvs.into_iter().next());
            match owner {
                // Ours already (an earlier attempt whose answer was lost, or acquired twice):
                // the record already names this node.
                Some(kv) if kv.value == self.id.as_bytes() && kv.lease == lease => {
                    let token = kv.create_revision;
                    self.held.lock().insert(shard, token);
                    return Ok(Acquired { token, previous_holders: record.taken_by(&self.id).previous, local_files_stale: false });
                }
                Some(kv) => {
                    return Err(CoordinationError::Held { shard, holder: Some(String::from_utf8_lossy(&kv.value).into_owned()) });
                }
                // The holder record changed under us (another node acquired and released): again.
                None => continue,
            }
        }
        Err(CoordinationError::Held { shard, holder: None })
    }

    async fn release(&self, shard: ShardId, token: Token) -> CoordinationResult<()> {
        let owners = self.key(&format!("owners/{shard}"));
        let txn = self.gateway.txn(&[Compare::CreateRevision(owners.clone(), token)], &[Op::Delete(owners)], &[]).await?;
        {
            let mut held = self.held.lock();
            if held.get(&shard) == Some(&token) {
                held.remove(&shard);
            }
        }
        if txn.succeeded {
            Ok(())
        } else {
            Err(CoordinationError::Fenced(shard))
        }
    }

    async fn set_state(&self, node: &str, state: MemberState) -> CoordinationResult<()> {
        let key = self.member_key(node);
        let range = self.gateway.range(&key, false).await?;
        let Some(kv) = range.kvs.into_iter().next() else {
            return Err(CoordinationError::Refused(format!("{node} is not a member")));
        };
        let mut member: Member =
            serde_json::from_slice(&kv.value).map_err(|e| CoordinationError::Refused(format!("{node}: bad member record: {e}")))?;
        if node == self.id {
            *self.state.lock() = state;
        }
        if member.state == state {
            return Ok(());
        }
        member.state = state;
        let value = serde_json::to_vec(&member).unwrap_or_default();
        // On the member's own lease, and only if the record is still the one read.
        let txn = self.gateway.txn(&[Compare::ModRevision(key.clone(), kv.mod_revision)], &[Op::Put(key, value, kv.lease)], &[]).await?;
        if txn.succeeded {
            Ok(())
        } else {
            Err(CoordinationError::Refused(format!("{node} changed meanwhile; try again")))
        }
    }

    async fn remove(&self, node: &str) -> CoordinationResult<()> {
        let key = self.member_key(node);
        if let Some(kv) = self.gateway.range(&key, false).await?.kvs.into_iter().next() {
            // Its lease carries its member key and its ownership keys.
            if kv.lease != 0 {
                self.gateway.lease_revoke(kv.lease).await?;
            }
            self.gateway.delete(&key, false).await?;
        }
        // Its claim as last holder: its files are declared lost.
        self.forget_holder(node).await?;
        tracing::warn!(%node, "member removed; files it held are declared lost");
        Ok(())
    }

    async fn leave(&self) -> CoordinationResult<()> {
        self.resign().await?;
        // Its files went to the new owners: no one needs to wait for it.
        self.forget_holder(&self.id).await
    }

    /// Gives the lease up (and with it the member key and every shard held), for good.
    async fn resign(&self) -> CoordinationResult<()> {
        self.left.store(true, std::sync::atomic::Ordering::SeqCst);
        let lease = self.lease.lock().take();
        self.held.lock().clear();
        if let Some(lease) = lease {
            self.gateway.lease_revoke(lease.id).await?;
        }
        Ok(())
    }

    /// Takes `node` out of every shard's holder record.
    async fn forget_holder(&self, node: &str) -> CoordinationResult<()> {
        let holders = self.gateway.range(&self.key("holders/"), true).await?;
        for kv in holders.kvs {
            let Ok(record) = serde_json::from_slice::<HolderRecord>(&kv.value) else { continue };
            if record.node != node && !record.previous.iter().any(|p| p == node) {
                continue;
            }
            let cleared = HolderRecord {
                node: if record.node == node { String::new() } else { record.node.clone() },
                previous: record.previous.into_iter().filter(|p| p != node).collect(),
            };
            let value = serde_json::to_vec(&cleared).unwrap_or_default();
            self.gateway.txn(&[Compare::ModRevision(kv.key.clone(), kv.mod_revision)], &[Op::Put(kv.key.clone(), value, 0)], &[]).await?;
        }
        Ok(())
    }
}

impl Etcd {
    /// Joins: grants this node's lease, puts its member key, reads the members, and starts
    /// renewing the lease and watching the members.
    /// `addr_is_bound_here`: `addr` is the address this process listens on (not an advertised
    /// name), so no other live process can be serving at it.
    pub async fn start(settings: &EtcdSettings, id: &str, addr: &str, addr_is_bound_here: bool) -> anyhow::Result<Etcd> {
        let gateway = Gateway::new(&settings.endpoints, Duration::from_millis(settings.request_timeout_ms.max(100)))?;
        let ttl = Duration::from_secs(settings.lease_ttl_secs.max(2));
        let inner = Arc::new(Inner {
            id: id.to_string(),
            addr: addr.to_string(),
            prefix: settings.prefix.trim_end_matches('/').to_string(),
            ttl,
            margin: Duration::from_millis(settings.lease_margin_ms).min(ttl / 2),
            gateway,
            lease: Mutex::new(None),
            held: Mutex::new(HashMap::new()),
            state: Mutex::new(MemberState::Active),
            membership: tokio::sync::watch::Sender::new(Arc::new(Membership::default())),
            left: std::sync::atomic::AtomicBool::new(false),
        });
        inner.end_previous_lease(addr_is_bound_here).await?;
        inner.establish().await.map_err(|e| anyhow::anyhow!("cannot join through etcd at {:?}: {e}", settings.endpoints))?;
        let mut rx = inner.membership.subscribe();
        let tasks = vec![tokio::spawn(inner.clone().keep_alive()), tokio::spawn(inner.clone().watch_members())];
        let etcd = Etcd { inner, tasks };
        // Return once the membership includes this node.
        let me = etcd.inner.id.clone();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.members.contains_key(&me)))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not show this node as a member within 10 s"))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(etcd)
    }

    /// The members as etcd lists them now, without joining (a node about to join copies the
    /// catalog from one of them first).
    pub async fn peek_members(settings: &EtcdSettings) -> anyhow::Result<Vec<(String, Member)>> {
        let gateway = Gateway::new(&settings.endpoints, Duration::from_millis(settings.request_timeout_ms.max(100)))?;
        let prefix = format!("{}/members/", settings.prefix.trim_end_matches('/'));
        let range = gateway.range(prefix.as_bytes(), true).await?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| {
                let id = kv.key_str().strip_prefix(&prefix)?.to_string();
                Some((id, serde_json::from_slice(&kv.value).ok()?))
            })
            .collect())
    }

    /// The lease this node's keys are on (`None` while it has none).
    pub fn lease_id(&self) -> Option<u64> {
        self.inner.lease_id()
    }

    pub fn endpoints(&self) -> &[String] {
        self.inner.gateway.endpoints()
    }
}

/// One lease or ownership event, as `vitrina_coordination_events_total{event}` counts them.
fn coordination_event(event: &'static str) {
    crate::metrics::incr("vitrina_coordination_events_total", &[("event", event)]);
}

impl Coordination for Etcd {
    fn node_id(&self) -> &str {
        &self.inner.id
    }

    fn membership(&self) -> tokio::sync::watch::Receiver<Arc<Membership>> {
        self.inner.membership.subscribe()
    }

    fn acquire(&self, shard: ShardId) -> BoxFuture<'_, CoordinationResult<Acquired>> {
        Box::pin(async move {
            let acquired = self.inner.acquire(shard).await;
            coordination_event(if acquired.is_ok() { "shard_acquired" } else { "shard_refused" });
            acquired
        })
    }

    fn release(&self, shard: ShardId, token: Token) -> BoxFuture<'_, CoordinationResult<()>> {
        Box::pin(async move {
            let released = self.inner.release(shard, token).await;
            if released.is_ok() {
                coordination_event("shard_released");
            }
            released
        })
    }

    fn previous_holders(&self, shard: ShardId) -> BoxFuture<'_, CoordinationResult<Vec<String>>> {
        Box::pin(async move {
            let (record, _) = self.inner.holder_record(shard).await?;
            Ok(record.filter(|r| r.node == self.inner.id).map(|r| r.previous).unwrap_or_default())
        })
    }

    fn holds(&self, shard: ShardId, token: Token) -> bool {
        self.inner.health() == LeaseHealth::Live && self.inner.held.lock().get(&shard) == Some(&token)
    }

    fn token(&self, shard: ShardId) -> Option<Token> {
        if self.inner.health() != LeaseHealth::Live {
            return None;
        }
        self.inner.held.lock().get(&shard).copied()
    }

    fn lease_health(&self) -> LeaseHealth {
        self.inner.health()
    }

    fn set_state(&self, node: &str, state: MemberState) -> BoxFuture<'_, CoordinationResult<()>> {
        let node = node.to_string();
        Box::pin(async move { self.inner.set_state(&node, state).await })
    }

    fn remove(&self, node: &str) -> BoxFuture<'_, CoordinationResult<()>> {
        let node = node.to_string();
        Box::pin(async move { self.inner.remove(&node).await })
    }

    fn leave(&self) -> BoxFuture<'_, CoordinationResult<()>> {
        Box::pin(self.inner.leave())
    }

    fn resign(&self) -> BoxFuture<'_, CoordinationResult<()>> {
        Box::pin(self.inner.resign())
    }
}

/// Whether something accepts connections at `addr`: a refusal means no process serves there
/// (a paused one still accepts; its TTL decides).
async fn may_be_serving(addr: &str) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
        _ => true,
    }
}
