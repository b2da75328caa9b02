//! Where files live under the data directory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ids::{ActorKey, SessionId, StoreId};

#[derive(Debug, Clone)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn catalog_db(&self) -> PathBuf {
        self.root.join("node").join("catalog.db")
    }
    pub fn store_dir(&self, store: &StoreId) -> PathBuf {
        self.root.join("stores").join(store.as_str())
    }
    pub fn store_db(&self, store: &StoreId) -> PathBuf {
        self.store_dir(store).join("store.db")
    }
    pub fn shopper_db(&self, store: &StoreId, sid: &SessionId) -> PathBuf {
        let fanout = hex::encode(&Sha256::digest(sid.as_str().as_bytes())[..1]);
        self.store_dir(store).join("shoppers").join(fanout).join(format!("{sid}.db"))
    }
    pub fn actor_db(&self, key: &ActorKey) -> PathBuf {
        match key {
            ActorKey::Store(store) => self.store_db(store),
            ActorKey::Shopper(store, sid) => self.shopper_db(store, sid),
        }
    }
}
