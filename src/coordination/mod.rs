//! Coordination between nodes: who is a member, and which node owns which shard of actor keys.
//!
//! Two implementations of one interface ([`Coordination`]):
//! - [`local::Local`]: a single node. It is the only member, owns every shard, and its fencing
//!   token is its boot counter (kept in the node catalog); nothing to set up.
//! - [`etcd::Etcd`]: membership on leases and single ownership with fencing tokens in etcd,
//!   spoken to through its JSON gateway ([`gateway`]).
//!
//! Actor keys map to shards (`shard_of`, a hash mod `cluster.shards`); the cluster layer places
//! shards on active members and asks this layer to own them. Whether a shard is still held is
//! answered from memory ([`Coordination::holds`]): the acknowledgement of every write asks it.

pub mod etcd;
pub mod gateway;
pub mod local;
pub mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A shard of the actor keys.
pub type ShardId = u32;

/// A fencing token: grows with every acquisition of a shard (etcd: the create revision of the
/// shard's ownership key; locally: the boot counter). A holder's token says it owned the shard
/// from then on; a write carrying an older token than the shard's current one is stale.
pub type Token = u64;

/// The shard an actor key (its display form) belongs to, among `shards`.
pub fn shard_of(key: &str, shards: u32) -> ShardId {
    let digest = Sha256::digest(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(shards.max(1))) as ShardId
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// On the ring: owns its share of the shards.
    Active,
    /// Leaving: owns nothing, hands its actors over, then leaves.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// `host:port` other nodes reach this member at.
    pub addr: String,
    pub state: MemberState,
}

/// The members as of one revision of the coordination store (its `epoch`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub epoch: u64,
    pub members: BTreeMap<String, Member>,
}

impl Membership {
    pub fn active(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.members.iter().filter(|(_, m)| m.state == MemberState::Active)
    }
}

/// The state of this node's lease, as far as it can tell without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseHealth {
    /// Renewed recently enough that it cannot have expired (TTL minus a margin).
    Live,
    /// Not renewed for TTL minus the margin: it may have expired; this node acts as if it had.
    Lost,
}

/// A shard just acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub token: Token,
    /// Other nodes that held the shard before, newest first (empty: none, or their files were
    /// declared lost). An actor of the shard without a file here must be pulled from them
    /// before it starts.
    pub previous_holders: Vec<String>,
    /// Another node held the shard since this one last did: this node's own files of the
    /// shard's keys are older than that node's and must not be served.
    pub local_files_stale: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("coordination unreachable: {0}")]
    Unreachable(String),
    /// Another node holds the shard (`None`: unknown who).
    #[error("shard {shard} is held by {holder:?}")]
    Held { shard: ShardId, holder: Option<String> },
    /// The token is no longer the shard's current one: the shard was lost meanwhile.
    #[error("shard {0}: the token is stale")]
    Fenced(ShardId),
    /// This node's lease is not live: it may own nothing until it has one again.
    #[error("no live lease")]
    NoLease,
    #[error("{0}")]
    Refused(String),
}

impl From<gateway::GatewayError> for CoordinationError {
    fn from(e: gateway::GatewayError) -> Self {
        match e {
            gateway::GatewayError::Unreachable(m) => CoordinationError::Unreachable(m),
            other => CoordinationError::Refused(other.to_string()),
        }
    }
}

pub type CoordinationResult<T> = Result<T, CoordinationError>;

/// Membership, ownership of shards and the lease behind both.
pub trait Coordination: Send + Sync + 'static {
    fn node_id(&self) -> &str;

    /// The current membership; the receiver sees every change.
    fn membership(&self) -> tokio::sync::watch::Receiver<Arc<Membership>>;

    /// Takes ownership of `shard` on this node's lease. `Held` when another node has it.
    /// Acquiring a shard this node already holds returns its current token.
    fn acquire(&self, shard: ShardId) -> BoxFuture<'_, CoordinationResult<Acquired>>;

    /// Gives `shard` up, if `token` is still its current token (else `Fenced`, and nothing
    /// changes). The node stays the shard's last holder until another acquires it.
    fn release(&self, shard: ShardId, token: Token) -> BoxFuture<'_, CoordinationResult<()>>;

    /// The previous holders `shard`'s record names now (an operator's `remove` takes a lost
    /// node out of it), when this node is its last holder.
    fn previous_holders(&self, shard: ShardId) -> BoxFuture<'_, CoordinationResult<Vec<String>>>;

    /// Whether this node holds `shard` with `token` under a live lease; from memory.
    fn holds(&self, shard: ShardId, token: Token) -> bool;

    /// The token this node holds `shard` with, if it holds it under a live lease.
    fn token(&self, shard: ShardId) -> Option<Token>;

    fn lease_health(&self) -> LeaseHealth;

    /// Sets a member's state (draining before it leaves).
    fn set_state(&self, node: &str, state: MemberState) -> BoxFuture<'_, CoordinationResult<()>>;

    /// Takes a member out for good (an operator's `cluster remove`): its membership and its
    /// claim as last holder of any shard go, so its files count as lost.
    fn remove(&self, node: &str) -> BoxFuture<'_, CoordinationResult<()>>;

    /// Ends this node's membership once it has handed every file over (a drained node): releases
    /// what it holds, and no shard waits for it as a previous holder any more.
    fn leave(&self) -> BoxFuture<'_, CoordinationResult<()>>;

    /// Ends this node's membership while it still has files it could not hand over (a
    /// shutdown cut short): its lease goes, so its shards are free at once, but it stays named
    /// as their earlier holder, so their next owners wait for it (503) rather than start its
    /// keys empty, and pull the files once it is back.
    fn resign(&self) -> BoxFuture<'_, CoordinationResult<()>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_spread_keys_and_stay_put() {
        let shards = 256;
        let mut counts = vec![0usize; shards as usize];
        for i in 0..25_600 {
            counts[shard_of(&format!("shopper:demo:s{i}"), shards) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (50..170).contains(&c)), "{counts:?}");
        assert_eq!(shard_of("store:demo", shards), shard_of("store:demo", shards));
        assert_eq!(shard_of("store:demo", 1), 0);
    }
}
