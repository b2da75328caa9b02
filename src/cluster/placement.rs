//! Placement: which member owns which shard of actor keys, by consistent hashing over the
//! active members (a draining member owns nothing).

use consistent_hash::{DefaultHash, Node as RingNode, StaticHashRing};

use super::NodeId;
use crate::coordination::{Membership, ShardId};

/// Where an actor lives under the current membership.
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

/// Consistent-hash placement over a set of nodes.
pub struct Ring {
    ring: StaticHashRing<'static, String, (), DefaultHash>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring({} vnodes)", self.ring.len())
    }
}

impl Ring {
    /// The ring over `membership`'s active members.
    pub fn build(membership: &Membership, vnodes: usize) -> Ring {
        Self::from_nodes(membership.active().map(|(id, _)| id.clone()), vnodes)
    }

    /// A ring over plain node names; used by the balance simulation.
    pub fn from_nodes(nodes: impl Iterator<Item = String>, vnodes: usize) -> Ring {
        let nodes = nodes.map(|n| RingNode::new(n).quantity(vnodes.max(1)));
        Ring { ring: StaticHashRing::new(DefaultHash, nodes) }
    }

    /// The node that owns `shard`, or `None` when no member is active.
    pub fn owner_of_shard(&self, shard: ShardId) -> Option<&str> {
        self.owner_of_str(&format!("shard-{shard}"))
    }

    pub fn owner_of_str(&self, key: &str) -> Option<&str> {
        self.ring.calc_candidates(&key).next().map(|n| n.key.as_str())
    }
}

/// Where `shard` lives: on `me`, on another member of `membership`, or nowhere.
pub fn place(ring: &Ring, membership: &Membership, me: &NodeId, shard: ShardId) -> Placement {
    match ring.owner_of_shard(shard) {
        None => Placement::Nowhere,
        Some(owner) if owner == me.as_str() => Placement::Local,
        Some(owner) => match NodeId::parse(owner) {
            Ok(node) => {
                let addr = membership.members.get(owner).map(|m| m.addr.clone()).unwrap_or_default();
                Placement::Remote { node, addr }
            }
            Err(_) => Placement::Nowhere,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_of_the_keys() {
        let three = Ring::from_nodes(["n1", "n2", "n3"].iter().map(|s| s.to_string()), 128);
        let four = Ring::from_nodes(["n1", "n2", "n3", "n4"].iter().map(|s| s.to_string()), 128);
        let keys: Vec<String> = (0..20_000).map(|i| format!("shopper:demo:s{i}")).collect();
        let moved = keys.iter().filter(|k| three.owner_of_str(k) != four.owner_of_str(k)).count();
        let fraction = moved as f64 / keys.len() as f64;
        assert!((0.18..0.32).contains(&fraction), "moved {fraction}");
        // Only keys that now belong to the new node moved.
        assert!(keys.iter().all(|k| three.owner_of_str(k) == four.owner_of_str(k) || four.owner_of_str(k) == Some("n4")));
    }

    #[test]
    fn a_draining_member_owns_no_shard() {
        use crate::coordination::{Member, MemberState};
        let member = |state| Member { addr: "127.0.0.1:1".into(), state };
        let membership = Membership {
            epoch: 7,
            members: [("n1".to_string(), member(MemberState::Active)), ("n2".to_string(), member(MemberState::Draining))].into(),
        };
        let ring = Ring::build(&membership, 16);
        let n2 = NodeId::parse("n2").unwrap();
        assert!((0..256).all(|s| place(&ring, &membership, &n2, s) != Placement::Local));
        assert!((0..256).all(|s| ring.owner_of_shard(s) == Some("n1")));
    }
}
