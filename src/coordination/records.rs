//! Records only a shard's current owner may write: a small value in etcd whose put is a
//! transaction compared against the shard's ownership key. The fencing token is that key's
//! create revision, so a node that lost the shard (its lease expired, another node acquired it)
//! can no longer write, whatever it still believes. Object-storage copy pointers live here
//! (`copies/{key}`).

use std::time::Duration;

use super::gateway::{Compare, Gateway, Op};
use super::{CoordinationError, CoordinationResult, ShardId, Token};
use crate::config::EtcdSettings;

/// The ownership key of `shard` under `prefix` (what `Etcd` acquires).
pub fn owner_key(prefix: &str, shard: ShardId) -> Vec<u8> {
    format!("{}/owners/{shard}", prefix.trim_end_matches('/')).into_bytes()
}

pub struct FencedRecords {
    gateway: Gateway,
    prefix: String,
}

impl FencedRecords {
    pub fn new(settings: &EtcdSettings) -> anyhow::Result<FencedRecords> {
        let gateway = Gateway::new(&settings.endpoints, Duration::from_millis(settings.request_timeout_ms.max(100)))?;
        Ok(FencedRecords { gateway, prefix: settings.prefix.trim_end_matches('/').to_string() })
    }

    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}/{name}", self.prefix).into_bytes()
    }

    /// The record's value; `None` when there is none.
    pub async fn get(&self, name: &str) -> CoordinationResult<Option<Vec<u8>>> {
        let range = self.gateway.range(&self.key(name), false).await?;
        Ok(range.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Writes the record if `token` is the current token of `shard` (its ownership key exists
    /// and was created at that revision); else `Fenced` and nothing changes.
    pub async fn put(&self, name: &str, value: &[u8], shard: ShardId, token: Token) -> CoordinationResult<()> {
        // Token 0 would compare equal to an absent ownership key: no owner is not a licence.
        if token == 0 {
            return Err(CoordinationError::Fenced(shard));
        }
        let guard = [Compare::CreateRevision(owner_key(&self.prefix, shard), token)];
        let put = [Op::Put(self.key(name), value.to_vec(), 0)];
        let answer = self.gateway.txn(&guard, &put, &[]).await?;
        if answer.succeeded {
            Ok(())
        } else {
            Err(CoordinationError::Fenced(shard))
        }
    }

    /// Removes the record (no record is not an error).
    pub async fn delete(&self, name: &str) -> CoordinationResult<()> {
        self.gateway.delete(&self.key(name), false).await?;
        Ok(())
    }
}
