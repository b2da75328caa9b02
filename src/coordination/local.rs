//! A single node: the only member, owner of every shard. Its fencing token is the node's boot
//! counter (kept in the node catalog by the caller), so a token from an earlier run of the
//! same node is older than any of this run.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Acquired, Coordination, CoordinationError, CoordinationResult, LeaseHealth, Member, MemberState, Membership, ShardId, Token};

pub struct Local {
    id: String,
    boot: Token,
    membership: tokio::sync::watch::Sender<Arc<Membership>>,
}

impl Local {
    /// `boot`: this run's boot counter (grows at every start of the node).
    pub fn new(id: &str, addr: &str, boot: Token) -> Local {
        let membership =
            Membership { epoch: 1, members: [(id.to_string(), Member { addr: addr.to_string(), state: MemberState::Active })].into() };
        Local { id: id.to_string(), boot, membership: tokio::sync::watch::Sender::new(Arc::new(membership)) }
    }
}

impl Coordination for Local {
    fn node_id(&self) -> &str {
        &self.id
    }

    fn membership(&self) -> tokio::sync::watch::Receiver<Arc<Membership>> {
        self.membership.subscribe()
    }

    fn acquire(&self, _shard: ShardId) -> BoxFuture<'_, CoordinationResult<Acquired>> {
        let acquired = Acquired { token: self.boot, previous_holders: Vec::new(), local_files_stale: false };
        Box::pin(async move { Ok(acquired) })
    }

    fn release(&self, shard: ShardId, token: Token) -> BoxFuture<'_, CoordinationResult<()>> {
        let result = if token == self.boot { Ok(()) } else { Err(CoordinationError::Fenced(shard)) };
        Box::pin(async move { result })
    }

    fn previous_holders(&self, _shard: ShardId) -> BoxFuture<'_, CoordinationResult<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn holds(&self, _shard: ShardId, token: Token) -> bool {
        token == self.boot
    }

    fn token(&self, _shard: ShardId) -> Option<Token> {
        Some(self.boot)
    }

    fn lease_health(&self) -> LeaseHealth {
        LeaseHealth::Live
    }

    fn set_state(&self, node: &str, _state: MemberState) -> BoxFuture<'_, CoordinationResult<()>> {
        let node = node.to_string();
        Box::pin(async move { Err(CoordinationError::Refused(format!("{node}: a single node has no cluster to leave"))) })
    }

    fn remove(&self, node: &str) -> BoxFuture<'_, CoordinationResult<()>> {
        self.set_state(node, MemberState::Draining)
    }

    fn leave(&self) -> BoxFuture<'_, CoordinationResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn resign(&self) -> BoxFuture<'_, CoordinationResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_node_owns_every_shard_with_its_boot_counter() {
        let local = Local::new("n1", "127.0.0.1:1", 7);
        let acquired = local.acquire(42).await.unwrap();
        assert_eq!(acquired.token, 7);
        assert!(local.holds(42, 7) && local.holds(0, 7));
        assert!(!local.holds(42, 6), "a token of an earlier boot is stale");
        assert!(matches!(local.release(42, 6).await, Err(CoordinationError::Fenced(42))));
        let m = local.membership().borrow().clone();
        assert_eq!(m.members.len(), 1);
        assert_eq!(m.active().count(), 1);
    }
}
