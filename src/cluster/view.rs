//! The membership view and the ring derived from it.
//!
//! A view is data: `{epoch, members}`. Every node routes by exactly one view at a time and can
//! say which (`GET /cluster/status`). Views are totally ordered by `(epoch, digest)`, so two
//! nodes that learn of two different views with the same epoch both keep the same one.

use std::collections::BTreeMap;
use std::sync::Arc;

use consistent_hash::{DefaultHash, Node as RingNode, StaticHashRing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::ActorKey;

/// A node's identity in the cluster (`[A-Za-z0-9_-]{1,64}`, like every id).
pub type NodeId = crate::ids::Slug;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Owns its share of the ring.
    Active,
    /// Leaving: owns nothing, hands its actors to their new owners, then becomes `Left`.
    Draining,
    /// Gone after a drain or an operator's removal.
    Left,
    /// Declared unreachable by the coordinator; its actors are restored from object storage.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// `host:port` other nodes and forwarded requests reach this node at.
    pub addr: String,
    pub state: MemberState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub epoch: u64,
    pub members: BTreeMap<NodeId, Member>,
    /// The active members of earlier views, newest first: a key's file may still be with its
    /// owner under one of them. Carried in the view so a node that just joined knows them too.
    #[serde(default)]
    pub previous: Vec<Vec<NodeId>>,
}

/// How many earlier placements a view remembers.
const PREVIOUS: usize = 4;

impl View {
    pub fn single(id: NodeId, addr: String) -> View {
        View { epoch: 1, members: [(id, Member { addr, state: MemberState::Active })].into(), previous: Vec::new() }
    }

    /// A stable fingerprint that breaks ties between views of equal epoch.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(bytes)[..8])
    }

    /// Whether `self` should replace `current`.
    pub fn supersedes(&self, current: &View) -> bool {
        (self.epoch, self.digest()) > (current.epoch, current.digest())
    }

    /// The next view with `change` applied.
    pub fn with(&self, change: impl FnOnce(&mut BTreeMap<NodeId, Member>)) -> View {
        let mut members = self.members.clone();
        change(&mut members);
        let active: Vec<NodeId> = self.active().map(|(id, _)| id.clone()).collect();
        let mut previous = self.previous.clone();
        if previous.first() != Some(&active) && !active.is_empty() {
            previous.insert(0, active);
        }
        previous.truncate(PREVIOUS);
        View { epoch: self.epoch + 1, members, previous }
    }

    pub fn active(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter().filter(|(_, m)| m.state == MemberState::Active)
    }

    pub fn addr_of(&self, id: &NodeId) -> Option<&str> {
        self.members.get(id).map(|m| m.addr.as_str())
    }
}

/// Consistent-hash placement of actor keys over the view's active members.
pub struct Ring {
    pub epoch: u64,
    ring: StaticHashRing<'static, String, (), DefaultHash>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring(epoch {}, {} vnodes)", self.epoch, self.ring.len())
    }
}

impl Ring {
    pub fn build(view: &View, vnodes: usize) -> Arc<Ring> {
        Arc::new(Self::from_nodes(view.epoch, view.active().map(|(id, _)| id.as_str().to_string()), vnodes))
    }

    /// A ring over plain node names; used by the balance simulation.
    pub fn from_nodes(epoch: u64, nodes: impl Iterator<Item = String>, vnodes: usize) -> Ring {
        let nodes = nodes.map(|n| RingNode::new(n).quantity(vnodes.max(1)));
        Ring { epoch, ring: StaticHashRing::new(DefaultHash, nodes) }
    }

    /// The node that owns `key`, or `None` when no member is active.
    pub fn owner(&self, key: &ActorKey) -> Option<&str> {
        self.owner_of_str(&key.to_string())
    }

    pub fn owner_of_str(&self, key: &str) -> Option<&str> {
        self.ring.calc_candidates(&key).next().map(|n| n.key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    #[test]
    fn views_are_ordered_by_epoch_then_digest() {
        let a = View::single(id("a"), "127.0.0.1:1".into());
        let b = a.with(|m| {
            m.insert(id("b"), Member { addr: "127.0.0.1:2".into(), state: MemberState::Active });
        });
        assert!(b.supersedes(&a) && !a.supersedes(&b));
        let c = a.with(|m| {
            m.insert(id("c"), Member { addr: "127.0.0.1:3".into(), state: MemberState::Active });
        });
        assert_eq!(b.epoch, c.epoch);
        assert_ne!(b.supersedes(&c), c.supersedes(&b), "ties are broken the same way everywhere");
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_of_the_keys() {
        let three = Ring::from_nodes(1, ["n1", "n2", "n3"].iter().map(|s| s.to_string()), 128);
        let four = Ring::from_nodes(2, ["n1", "n2", "n3", "n4"].iter().map(|s| s.to_string()), 128);
        let keys: Vec<String> = (0..20_000).map(|i| format!("shopper:demo:s{i}")).collect();
        let moved = keys.iter().filter(|k| three.owner_of_str(k) != four.owner_of_str(k)).count();
        let fraction = moved as f64 / keys.len() as f64;
        assert!((0.18..0.32).contains(&fraction), "moved {fraction}");
        // Only keys that now belong to the new node moved.
        assert!(keys.iter().all(|k| three.owner_of_str(k) == four.owner_of_str(k) || four.owner_of_str(k) == Some("n4")));
    }
}
