//! The copy pointer in etcd: `{prefix}/copies/{key}`, written only in a transaction that finds
//! the key's shard still owned under the uploader's token. Unlike the bucket's pointer, the
//! check and the write are one atomic step, so a stale owner's upload can never become current,
//! however late it arrives.

use futures::future::BoxFuture;

use super::{CopyLedger, CopyRef, ReplicationError, ReplicationResult};
use crate::coordination::records::FencedRecords;
use crate::coordination::{shard_of, CoordinationError};
use crate::ids::ActorKey;

pub struct EtcdLedger {
    records: FencedRecords,
    shards: u32,
}

impl EtcdLedger {
    pub fn new(records: FencedRecords, shards: u32) -> EtcdLedger {
        EtcdLedger { records, shards }
    }

    fn name(key: &ActorKey) -> String {
        format!("copies/{key}")
    }
}

fn ledger_error(e: CoordinationError) -> ReplicationError {
    ReplicationError::Ledger(e.to_string())
}

impl CopyLedger for EtcdLedger {
    fn current<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<Option<CopyRef>>> {
        Box::pin(async move {
            let Some(value) = self.records.get(&Self::name(key)).await.map_err(ledger_error)? else { return Ok(None) };
            let copy = serde_json::from_slice(&value)
                .map_err(|e| ReplicationError::Ledger(format!("the pointer of {key} is not a copy reference: {e}")))?;
            Ok(Some(copy))
        })
    }

    fn commit<'a>(&'a self, key: &'a ActorKey, copy: &'a CopyRef) -> BoxFuture<'a, ReplicationResult<()>> {
        Box::pin(async move {
            let value = serde_json::to_vec(copy).map_err(|e| ReplicationError::Ledger(e.to_string()))?;
            let shard = shard_of(&key.to_string(), self.shards);
            match self.records.put(&Self::name(key), &value, shard, copy.token).await {
                Ok(()) => Ok(()),
                Err(CoordinationError::Fenced(_)) => Err(ReplicationError::Fenced {
                    key: key.to_string(),
                    reason: format!("token {} no longer owns shard {shard}", copy.token),
                }),
                Err(e) => Err(ledger_error(e)),
            }
        })
    }

    fn clear<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<()>> {
        Box::pin(async move { self.records.delete(&Self::name(key)).await.map_err(ledger_error) })
    }
}
