//! Which copy of an actor is current: the pointer that restore reads and that every upload must
//! move, guarded by the uploader's fencing token.
//!
//! An upload writes a new object and then asks the ledger to make it current. The ledger
//! refuses when the current copy carries a greater token: a newer owner wrote it, and the
//! uploader is stale. Restore reads the ledger, never "the newest object" in the bucket.
//!
//! [`BucketLedger`] keeps the pointer as a small JSON object beside the copies
//! (`{key dir}/current.json`). Its check and write are two requests: they are atomic against
//! this node's own uploads of the key (one upload of a key at a time, `Replicator::turn`), not
//! against another node's. A ledger on a coordination engine (a transaction compared against
//! the shard owner's token) closes that window; it implements the same trait.

use futures::future::BoxFuture;
use s3::Bucket;
use serde::{Deserialize, Serialize};

use super::{key_dir, ReplicationError, ReplicationResult};
use crate::ids::ActorKey;

/// One copy of an actor's file in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRef {
    /// The object key within the bucket.
    pub object: String,
    /// Hex sha256 of the object's bytes.
    pub sha256: String,
    /// The fencing token of the node that uploaded it.
    pub token: u64,
    /// The uploader's sequence number (increasing per node), for people reading the bucket.
    pub seq: u64,
}

/// Where the current copy of each key is recorded.
pub trait CopyLedger: Send + Sync {
    /// The copy a restore must read; `None`: the key has no copy.
    fn current<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<Option<CopyRef>>>;

    /// Makes `copy` the current copy of `key`, guarded by `copy.token`: refused with
    /// [`ReplicationError::Fenced`] when the current copy was committed under a greater token.
    /// Any other error leaves it unknown whether the commit happened.
    fn commit<'a>(&'a self, key: &'a ActorKey, copy: &'a CopyRef) -> BoxFuture<'a, ReplicationResult<()>>;

    /// Forgets the current copy of `key` (the key is being deleted); no pointer is not an error.
    fn clear<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<()>>;
}

/// The pointer as `{prefix}/…/{key}/current.json` in the bucket of the copies.
pub struct BucketLedger {
    bucket: Box<Bucket>,
    prefix: String,
}

impl BucketLedger {
    pub fn new(bucket: Box<Bucket>, prefix: String) -> BucketLedger {
        BucketLedger { bucket, prefix }
    }

    fn pointer(&self, key: &ActorKey) -> String {
        format!("{}/current.json", key_dir(&self.prefix, key))
    }

    async fn read(&self, key: &ActorKey) -> ReplicationResult<Option<CopyRef>> {
        let object = self.pointer(key);
        let response = self.bucket.get_object(format!("/{object}")).await?;
        match response.status_code() {
            200 => {}
            404 if super::is_no_such_key(response.as_slice()) => return Ok(None),
            status => return Err(ReplicationError::Status { operation: "GET", object, status }),
        }
        let copy: CopyRef = serde_json::from_slice(response.as_slice())
            .map_err(|e| ReplicationError::Ledger(format!("pointer {object} is not a copy reference: {e}")))?;
        Ok(Some(copy))
    }

    async fn write(&self, key: &ActorKey, copy: &CopyRef) -> ReplicationResult<()> {
        let object = self.pointer(key);
        let body = serde_json::to_vec(copy).map_err(|e| ReplicationError::Ledger(e.to_string()))?;
        let response = self.bucket.put_object_with_content_type(format!("/{object}"), &body, "application/json").await?;
        if !(200..300).contains(&response.status_code()) {
            return Err(ReplicationError::Status { operation: "PUT", object, status: response.status_code() });
        }
        Ok(())
    }
}

impl CopyLedger for BucketLedger {
    fn current<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<Option<CopyRef>>> {
        Box::pin(self.read(key))
    }

    fn commit<'a>(&'a self, key: &'a ActorKey, copy: &'a CopyRef) -> BoxFuture<'a, ReplicationResult<()>> {
        Box::pin(async move {
            if let Some(current) = self.read(key).await? {
                if current.token > copy.token {
                    return Err(ReplicationError::Fenced {
                        key: key.to_string(),
                        reason: format!("uploaded under token {}, but the current copy has token {}", copy.token, current.token),
                    });
                }
            }
            self.write(key, copy).await
        })
    }

    fn clear<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, ReplicationResult<()>> {
        Box::pin(async move {
            let object = self.pointer(key);
            let response = self.bucket.delete_object(format!("/{object}")).await?;
            match response.status_code() {
                200..=299 | 404 => Ok(()),
                status => Err(ReplicationError::Status { operation: "DELETE", object, status }),
            }
        })
    }
}
