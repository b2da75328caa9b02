//! What can go wrong with a SQLite file, and the few cases callers tell apart.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("serialisation: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the database is newer (schema {found}) than this binary knows (schema {known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("blocking task failed: {0}")]
    Join(String),
    /// The actor's file is missing locally and its copy in object storage could not be
    /// fetched or was refused (checksum, integrity check). Activation stops here rather than
    /// start an empty actor whose next upload would overwrite the good copy.
    #[error("restore from object storage failed: {0}")]
    Restore(String),
    /// A new shopper's file was not created: its store has `shopper.max_per_store` files here.
    #[error("this store has reached its limit of {limit} shopper sessions on this node")]
    ShopperLimit { limit: usize },
}

impl StorageError {
    /// The filesystem or SQLite reported no space (ENOSPC, EDQUOT, SQLITE_FULL, or shared
    /// memory that could not grow). The write was rolled back; reads still work.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull || e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
            }
            StorageError::Io(e) => matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)),
            _ => false,
        }
    }

    /// Nothing was written for lack of room: a full disk or the store's shopper limit.
    pub fn is_capacity(&self) -> bool {
        matches!(self, StorageError::ShopperLimit { .. }) || self.is_disk_full()
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
