//! One SQLite file per actor: where it lives, how it is opened, how it is migrated, and how a
//! write is made durable before it is acknowledged.
//!
//! Layout under the data directory (every component is a validated id or a fixed name):
//! ```text
//! node/catalog.db                              node-level catalog (stores, hosts, tokens, alarms)
//! stores/{store}/store.db                      the store actor
//! stores/{store}/shoppers/{xx}/{sid}.db        a shopper actor; xx = first byte of sha256(sid)
//! ```
//! Files are 0600 and directories 0700: the node sets its umask to 077 at startup (SQLite's
//! files, WAL and shared memory included), creates its own with explicit modes, and tightens
//! what an older version left readable ([`walk_private`]).
//!
//! Durability: WAL with `synchronous=FULL`, so a commit returns only after the WAL is fsynced.
//! `NORMAL` would let a power loss drop the last acknowledged commits, which breaks the rule that
//! an acknowledged write is on disk. Commits run on the blocking pool so that commits of
//! different actors proceed in parallel (the disk's parallel fsync rate is an order of magnitude
//! above its serial rate) while the actor's turn waits for its own commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::ids::{ActorKey, SessionId, StoreId};

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

/// A numbered migration from `schema/{kind}/NNNN_name.sql`.
pub struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($($version:literal => $file:literal),* $(,)?) => {
        &[$(Migration { version: $version, sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/", $file)) }),*]
    };
}

/// The schema each kind of database owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Store,
    Shopper,
    Catalog,
}

impl SchemaKind {
    fn migrations(self) -> &'static [Migration] {
        match self {
            SchemaKind::Store => migrations![1 => "store/0001_init.sql", 2 => "store/0002_webhooks.sql", 3 => "store/0003_durability.sql"],
            SchemaKind::Shopper => migrations![1 => "shopper/0001_init.sql", 2 => "shopper/0002_orders.sql"],
            SchemaKind::Catalog => {
                migrations![1 => "catalog/0001_init.sql", 2 => "catalog/0002_shopify_domains.sql", 3 => "catalog/0003_host_claims.sql", 4 => "catalog/0004_token_versions.sql"]
            }
        }
    }
}

/// Where files live under the data directory.
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

/// Opens (creating if needed) a database file, sets the pragmas every Vitrina file uses and
/// applies pending migrations.
pub fn open(path: &Path, kind: SchemaKind) -> StorageResult<Connection> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if kind != SchemaKind::Catalog {
        keep_wal_small_and_in_place(&conn)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&mut conn, kind)?;
    Ok(conn)
}

/// Creates a shopper's file by copying an empty, migrated database instead of running the
/// migrations on the new file: one write and one `fdatasync` where the migrations cost a WAL
/// switch, a transaction per migration and a checkpoint, each synced (the W2p profile: file
/// creation was the largest part of a new session's first write). The rename and the new
/// directories are fsynced, so the acknowledged first write can be found after a power loss
/// (SQLite syncs the directory of the WAL it creates, not of the database file).
pub fn create_from_template(path: &Path) -> StorageResult<()> {
    use std::io::Write as _;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("actor file has no directory"))?;
    let mut created_dirs = Vec::new();
    let mut missing = Some(dir);
    while let Some(d) = missing.filter(|d| !d.exists()) {
        created_dirs.push(d.to_path_buf());
        missing = d.parent();
    }
    create_private_dir_all(dir)?;
    let Some(template) = shopper_template(dir) else { return Ok(()) };
    let tmp = path.with_extension("db.new");
    let written = (|| {
        let mut file = private_file(&tmp)?;
        file.write_all(template)?;
        file.sync_data()
    })();
    if let Err(e) = written {
        // A full disk leaves a partial copy: remove it so it neither wastes the space nor is
        // mistaken for a database.
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    // A WAL beside the path would belong to an older database of the same name.
    remove_sidecars(path)?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    for created in &created_dirs {
        if let Some(parent) = created.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates (or truncates) a file with mode 0600, for writing.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Walks `root` recursively: every directory is made 0700 and every file 0600 where an older
/// version (or another umask) left them readable by others; `each_file` sees every file with its
/// metadata. Entries that vanish meanwhile are skipped.
pub fn walk_private(root: &Path, each_file: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                if mode & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
                }
                pending.push(path);
            } else if meta.is_file() {
                if mode & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                }
                each_file(&path, &meta);
            }
        }
    }
    Ok(())
}

/// The bytes of an empty shopper database with every migration applied and WAL mode set in
/// its header; built once per process, in `scratch` (a directory on the same disk). `None` if
/// it could not be built (logged): that file is created by running the migrations, and the next
/// new file tries again (a full disk must not cost the fast path for the rest of the process).
fn shopper_template(scratch: &Path) -> Option<&'static [u8]> {
    static TEMPLATE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(bytes) = TEMPLATE.get() {
        return Some(bytes);
    }
    let path = scratch.join(format!(".template-{}-{:016x}.db", std::process::id(), rand::random::<u64>()));
    let built = (|| -> StorageResult<Vec<u8>> {
        let conn = open(&path, SchemaKind::Shopper)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(conn);
        Ok(std::fs::read(&path)?)
    })();
    let _ = std::fs::remove_file(&path);
    let _ = remove_sidecars(&path);
    match built {
        Ok(bytes) => Some(TEMPLATE.get_or_init(|| bytes)),
        Err(error) => {
            tracing::warn!(%error, "no shopper database template; this new file runs the migrations");
            None
        }
    }
}

/// Checkpoints every frame of the WAL of the database at `path` into the file and switches it
/// out of WAL mode, so the file alone carries every committed write. Fails, rather than leave
/// frames behind, if another connection holds the WAL.
pub fn fold_wal_into_file(path: &Path) -> StorageResult<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(std::io::Error::other("the WAL is in use; cannot fold it into the database").into());
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(std::io::Error::other(format!("database stayed in {mode} mode")).into());
    }
    Ok(())
}

/// Removes the WAL and shared-memory files beside a database path, if any: before a database
/// file from elsewhere is installed there (they would be replayed into it), or after one moved.
pub fn remove_sidecars(path: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(suffix);
        match std::fs::remove_file(PathBuf::from(sidecar)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Actor files commit a few pages at a time. Two settings keep those commits to one disk write:
/// - a small auto-checkpoint (`ACTOR_WAL_CHECKPOINT_PAGES`) makes SQLite restart the WAL
///   from its beginning every few commits, so once the WAL reached that size commits overwrite
///   blocks already allocated and `fdatasync` has no file size or extent to persist (an
///   appending commit costs a second, metadata write on ext4; the default of 1000 pages kept a
///   shopper's WAL growing for its whole life);
/// - a persistent WAL (`SQLITE_FCNTL_PERSIST_WAL`) is not deleted when the actor passivates,
///   so waking it does not create (and grow) a new one. Files installed by hand-off or restore
///   have their WAL removed first (`cluster::handoff`, `replication`), so a kept WAL is only
///   ever replayed into the database it belongs to;
/// - closing does not checkpoint (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`): an idle or passivating
///   actor's close would otherwise write its last commits into the database and fsync it
///   (~5 % of a new session's CPU in W2p); they stay in the WAL, which the next open reads.
///   Whoever needs one self-contained file (hand-off, snapshot copies) checkpoints or reads
///   through SQLite.
fn keep_wal_small_and_in_place(conn: &Connection) -> StorageResult<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "wal_autocheckpoint", ACTOR_WAL_CHECKPOINT_PAGES)?;
    let mut persist: std::os::raw::c_int = 1;
    // SAFETY: `conn.handle()` is a live connection for the duration of the call; "main" is a
    // NUL-terminated schema name and `persist` is the int this file control reads and writes.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut persist as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::warn!(rc, "SQLITE_FCNTL_PERSIST_WAL not accepted; the WAL is recreated after each passivation");
    }
    Ok(())
}

/// Pages in an actor's WAL before SQLite checkpoints it and starts over (see
/// [`keep_wal_small_and_in_place`]). A shopper's commit is 2–4 pages.
const ACTOR_WAL_CHECKPOINT_PAGES: i64 = 16;

fn migrate(conn: &mut Connection, kind: SchemaKind) -> StorageResult<()> {
    let migrations = kind.migrations();
    let known = migrations.last().map(|m| m.version).unwrap_or(0);
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > known {
        return Err(StorageError::SchemaTooNew { found: current, known });
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(migration.sql)?;
        tx.pragma_update(None, "user_version", migration.version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Called after every committed write of an actor, on the committing thread. Replication uses
/// it to mark the actor dirty; it must be cheap and must not block.
pub type CommitHook = Arc<dyn Fn() + Send + Sync>;

fn run_commit_hook(hook: Option<&CommitHook>) {
    if let Some(hook) = hook {
        hook();
    }
}

/// An actor's connection. Only the owning actor touches it, one turn at a time, so the mutex
/// is never contended; it exists so a commit can run on the blocking pool.
#[derive(Clone)]
pub struct ActorDb {
    conn: Arc<Mutex<Db>>,
    on_commit: Option<CommitHook>,
}

/// The connection, or the promise of one: an actor without a file yet has none, and an idle
/// actor may have closed its own (`close_idle`) while keeping its state in memory.
struct Db {
    conn: Option<Connection>,
    /// Whether `conn` is the file's connection (not the empty in-memory stand-in).
    conn_is_file: bool,
    /// Whether the file exists; `false` until the first write creates it.
    file_exists: bool,
    path: PathBuf,
    kind: SchemaKind,
    /// A file connection was opened since the handle last looked: it must be admitted to the
    /// node's open-file budget ([`open_files`]) once this lock is released.
    newly_opened: bool,
    /// For a shopper: the per-store count a new file is admitted against.
    quota: Option<(Arc<ShopperFiles>, StoreId)>,
    /// The file was created for a write that has not committed yet: if that write fails, the
    /// file goes again, so a refused first write (a full disk) leaves no file behind.
    fresh: bool,
}

impl Db {
    fn open_file(&mut self) -> StorageResult<()> {
        self.conn = Some(open(&self.path, self.kind)?);
        self.conn_is_file = true;
        self.file_exists = true;
        if self.kind == SchemaKind::Shopper {
            open_files::OPEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.newly_opened = true;
        }
        Ok(())
    }

    /// Closes the file's connection (its last commits stay in the WAL); the next access reopens it.
    fn close_file(&mut self) {
        if self.conn_is_file {
            self.conn = None;
            self.conn_is_file = false;
            if self.kind == SchemaKind::Shopper {
                open_files::OPEN.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            crate::memory::note_released();
        }
    }

    /// Removes a file created for a first write that did not commit (nothing in it was
    /// acknowledged) and gives its place in the store's count back.
    fn discard_fresh_file(&mut self) {
        self.close_file();
        self.fresh = false;
        self.file_exists = false;
        let _ = std::fs::remove_file(&self.path);
        let _ = remove_sidecars(&self.path);
        if let Some((files, store)) = &self.quota {
            files.release(store);
        }
    }

    /// The connection reads go to: the file's (reopened if it was closed), or for an actor
    /// without a file an empty, migrated in-memory database (made on the first read; most
    /// such actors never read).
    fn readable(&mut self) -> StorageResult<&Connection> {
        if self.conn.is_none() {
            if self.file_exists {
                self.open_file()?;
            } else {
                let mut conn = Connection::open_in_memory()?;
                migrate(&mut conn, self.kind)?;
                self.conn = Some(conn);
            }
        }
        Ok(self.conn.as_ref().expect("connection was just made"))
    }

    /// The file's connection, creating the file first if it does not exist yet.
    fn writable(&mut self) -> StorageResult<&mut Connection> {
        if !self.conn_is_file {
            let creates = !self.file_exists && self.kind == SchemaKind::Shopper && !self.path.exists();
            if creates {
                if let Some((files, store)) = &self.quota {
                    files.admit(store)?;
                }
            }
            let opened = if creates { create_from_template(&self.path).and_then(|()| self.open_file()) } else { self.open_file() };
            if let Err(e) = opened {
                if creates {
                    self.discard_fresh_file();
                }
                return Err(e);
            }
            self.fresh = creates;
        }
        self.conn.as_mut().ok_or_else(|| StorageError::Io(std::io::Error::other("actor database is not open")))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.close_file();
    }
}

impl ActorDb {
    fn with_db(db: Db) -> ActorDb {
        ActorDb { conn: Arc::new(Mutex::new(db)), on_commit: None }
    }

    pub fn open(path: &Path, kind: SchemaKind) -> StorageResult<ActorDb> {
        let db = Self::with_db(Db {
            conn: None,
            conn_is_file: false,
            file_exists: true,
            path: path.to_path_buf(),
            kind,
            newly_opened: false,
            quota: None,
            fresh: false,
        });
        let opened = {
            let mut inner = db.conn.lock();
            inner.open_file()?;
            std::mem::take(&mut inner.newly_opened)
        };
        if opened {
            open_files::admit(&db.conn);
        }
        Ok(db)
    }

    /// Admits a connection opened under the lock just released to the open-file budget.
    fn admit_if_opened(conn: &Arc<Mutex<Db>>, opened: bool) {
        if opened {
            open_files::admit(conn);
        }
    }

    /// Opens the actor's file if it exists; otherwise the actor has no state, reads see an
    /// empty database and the file is created by the first write. A visit that changes nothing
    /// (a first page view, a crawler, a cookie made up by a client) then costs no file, no
    /// fsync and no SQLite connection.
    pub fn open_deferred(path: &Path, kind: SchemaKind) -> StorageResult<ActorDb> {
        if path.exists() {
            return Self::open(path, kind);
        }
        Ok(Self::with_db(Db {
            conn: None,
            conn_is_file: false,
            file_exists: false,
            path: path.to_path_buf(),
            kind,
            newly_opened: false,
            quota: None,
            fresh: false,
        }))
    }

    /// Closes the file's connection (its page cache, file descriptors and shared memory) until
    /// the next read or write reopens it. For actors that keep their state in memory and are
    /// idle: an open connection costs more than the rest of a warm shopper (W5). Runs on the
    /// blocking pool: closing unmaps the shared memory and closes three files.
    pub async fn close_idle(&self) {
        let conn = self.conn.clone();
        let closed = tokio::task::spawn_blocking(move || conn.lock().close_file()).await;
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing an idle actor's database failed");
        }
    }

    /// Whether the file's connection is open now.
    pub fn is_open(&self) -> bool {
        self.conn.lock().conn_is_file
    }

    /// Whether the actor has a file yet.
    pub fn exists(&self) -> bool {
        self.conn.lock().file_exists
    }

    /// Counts the file this (shopper) handle creates against its store's limit (see
    /// [`ShopperFiles`]); a first write past the limit fails with [`StorageError::ShopperLimit`].
    pub fn with_file_quota(self, files: Arc<ShopperFiles>, store: StoreId) -> ActorDb {
        self.conn.lock().quota = Some((files, store));
        self
    }

    /// Runs `hook` after every commit made through this handle (and its clones made later).
    pub fn with_commit_hook(mut self, hook: CommitHook) -> ActorDb {
        self.on_commit = Some(hook);
        self
    }

    fn committed(&self) {
        run_commit_hook(self.on_commit.as_ref());
    }

    /// Runs a read on the caller's thread.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> StorageResult<T>) -> StorageResult<T> {
        let (result, opened) = {
            let mut db = self.conn.lock();
            let result = db.readable().and_then(f);
            (result, std::mem::take(&mut db.newly_opened))
        };
        Self::admit_if_opened(&self.conn, opened);
        result
    }

    /// Runs `f` in an IMMEDIATE transaction on the blocking pool and commits it; resolves only
    /// once the commit is durable. On error the transaction is rolled back and nothing changed.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        self.start_write_as(Commit::Durable, f).await
    }

    /// [`write`](Self::write) with the given durability, started now instead of when first
    /// polled: the commit runs on the blocking pool while the caller goes on with other work on
    /// its own thread (a shopper renders the page a product view belongs to while the view
    /// commits). The write completes even if the returned future is dropped.
    pub fn start_write_as<T, E, F>(&self, kind: Commit, f: F) -> impl std::future::Future<Output = Result<T, E>> + 'static
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let conn = self.conn.clone();
        let commit = tokio::task::spawn_blocking(move || Self::commit(&conn, kind, f));
        let on_commit = self.on_commit.clone();
        async move {
            let value = commit.await.map_err(|e| StorageError::Join(e.to_string()))??;
            run_commit_hook(on_commit.as_ref());
            Ok(value)
        }
    }

    /// Same as [`write`](Self::write) but on the caller's thread, for startup and seeding.
    pub fn write_now<T, E: From<StorageError>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        self.write_now_as(Commit::Durable, f)
    }

    /// [`write_now`](Self::write_now) with the given durability.
    pub fn write_now_as<T, E: From<StorageError>>(&self, kind: Commit, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let value = Self::commit(&self.conn, kind, f)?;
        self.committed();
        Ok(value)
    }

    /// Runs `f` in an IMMEDIATE transaction on the file (created if needed) and commits it, on
    /// the calling thread; a file opened for it is admitted to the budget after the lock is
    /// released.
    fn commit<T, E: From<StorageError>>(
        conn: &Arc<Mutex<Db>>,
        kind: Commit,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let (result, opened) = {
            let mut db = conn.lock();
            let result = (|| {
                let conn = db.writable()?;
                if kind == Commit::MayBeLost {
                    conn.pragma_update(None, "synchronous", "NORMAL").map_err(StorageError::from)?;
                }
                let committed = (|| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StorageError::from)?;
                    let value = f(&tx)?;
                    tx.commit().map_err(StorageError::from)?;
                    Ok::<T, E>(value)
                })();
                if kind == Commit::MayBeLost {
                    conn.pragma_update(None, "synchronous", "FULL").map_err(StorageError::from)?;
                }
                committed
            })();
            if result.is_ok() {
                db.fresh = false;
            } else if db.fresh {
                db.discard_fresh_file();
            }
            (result, std::mem::take(&mut db.newly_opened))
        };
        Self::admit_if_opened(conn, opened);
        result
    }
}

/// Shopper files per store on this node, against `shopper.max_per_store`: a new shopper's first
/// write is admitted here before its file is created. Counted at startup from the directory and
/// re-counted at every sweep (`actors::sweeper`), which also corrects for files that came in by
/// hand-off or restore (not admitted here: they are existing shoppers).
pub struct ShopperFiles {
    /// 0: no limit (files are still counted).
    limit: usize,
    counts: Mutex<FileCounts>,
}

#[derive(Default)]
struct FileCounts {
    per_store: std::collections::HashMap<StoreId, usize>,
    /// While a recount walks the directory: admissions and releases since it started, added to
    /// what it finds (a file created during the walk may be counted twice until the next
    /// recount; never missed).
    since_walk: Option<std::collections::HashMap<StoreId, isize>>,
}

impl ShopperFiles {
    pub fn new(limit: usize) -> ShopperFiles {
        ShopperFiles { limit, counts: Default::default() }
    }

    /// Counts one more file for `store`, or refuses it past the limit.
    pub fn admit(&self, store: &StoreId) -> StorageResult<()> {
        let mut counts = self.counts.lock();
        let count = counts.per_store.entry(store.clone()).or_default();
        if self.limit != 0 && *count >= self.limit {
            crate::metrics::incr("vitrina_shopper_files_refused_total", &[]);
            return Err(StorageError::ShopperLimit { limit: self.limit });
        }
        *count += 1;
        if let Some(since) = counts.since_walk.as_mut() {
            *since.entry(store.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// One file of `store` fewer (deleted, or its creation failed).
    pub fn release(&self, store: &StoreId) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.per_store.get_mut(store) {
            *count = count.saturating_sub(1);
        }
        if let Some(since) = counts.since_walk.as_mut() {
            *since.entry(store.clone()).or_default() -= 1;
        }
    }

    /// A walk of the data directory starts: changes from now on are added to what it finds.
    pub fn begin_recount(&self) {
        self.counts.lock().since_walk = Some(Default::default());
    }

    /// The walk found `found` files per store.
    pub fn finish_recount(&self, mut found: std::collections::HashMap<StoreId, usize>) {
        let mut counts = self.counts.lock();
        for (store, delta) in counts.since_walk.take().unwrap_or_default() {
            let n = found.entry(store).or_default();
            *n = n.saturating_add_signed(delta);
        }
        counts.per_store = found;
    }

    pub fn count(&self, store: &StoreId) -> usize {
        self.counts.lock().per_store.get(store).copied().unwrap_or(0)
    }
}

/// Whether a commit must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// On disk before the call returns (`synchronous = FULL`): every write a client is told
    /// succeeded.
    Durable,
    /// In the WAL before the call returns, on disk with the next durable commit or checkpoint:
    /// writes nobody was promised, whose loss at a power failure costs nothing but work or a
    /// detail (a product view, cached pages). Never corrupts the file (WAL mode).
    MayBeLost,
}

/// The node's budget of open shopper files. Every open file costs three descriptors (database,
/// WAL, shared memory) and a page cache; a burst of new sessions opened them faster than idle
/// shoppers closed theirs, and at the process's descriptor limit opens failed with 500s (W5 at
/// 10,000 actors). Past the budget, the oldest-opened file of a shopper that is not in the
/// middle of an access is closed; its actor keeps its state and reopens the file on its next
/// read or write.
pub mod open_files {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Weak};

    use parking_lot::Mutex;

    use super::Db;

    pub(super) static OPEN: AtomicUsize = AtomicUsize::new(0);
    static BUDGET: crate::budget::Budget = crate::budget::Budget::derived_by(derived_budget);
    static OPENED: Mutex<VecDeque<Weak<Mutex<Db>>>> = Mutex::new(VecDeque::new());

    /// At most this many shopper files open when the budget is derived. SQLite's unix VFS walks
    /// its list of every open file (database and WAL) on each open, so an open costs O(files
    /// open): with the ~6,600 a 20,000-descriptor limit allowed, that walk was 9 % of a new
    /// shopper's CPU (W2p profile) and a new session cost 6.5 ms of CPU; at 1,024, 4.3-5.7 ms.
    /// A closed file costs its actor nothing until its next write, which reopens it.
    const DERIVED_MAX: usize = 1024;

    /// Sets the budget; 0 derives it from the process's open-file limit (a third of it, less a
    /// reserve for sockets and the node's own files), at most `DERIVED_MAX`.
    pub fn set_budget(files: usize) {
        BUDGET.set(files);
    }

    fn derived_budget() -> usize {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid out pointer for getrlimit.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur as usize } else { 1024 };
        (soft.saturating_sub(1024) / 3).clamp(64, DERIVED_MAX)
    }

    fn budget() -> usize {
        BUDGET.get()
    }

    /// Shopper files open now.
    pub fn open_now() -> usize {
        OPEN.load(Ordering::Relaxed)
    }

    /// Records a newly opened file and closes the oldest others while over budget. Called with
    /// no database lock held; others' locks are only tried, never waited for.
    pub(super) fn admit(opened: &Arc<Mutex<Db>>) {
        let mut queue = OPENED.lock();
        queue.push_back(Arc::downgrade(opened));
        let budget = budget();
        let mut tries = queue.len();
        while OPEN.load(Ordering::Relaxed) > budget && tries > 0 {
            tries -= 1;
            let Some(weak) = queue.pop_front() else { break };
            let Some(db) = weak.upgrade() else { continue };
            if Arc::ptr_eq(&db, opened) {
                queue.push_back(weak);
                continue;
            }
            let busy = match db.try_lock() {
                Some(mut guard) => {
                    guard.close_file();
                    false
                }
                None => true,
            };
            if busy {
                queue.push_back(weak);
            }
        }
        // Entries of files closed by their idle actors stay queued until popped: keep the
        // queue proportional to the budget.
        if queue.len() > budget.saturating_mul(2).max(1024) {
            queue.retain(|weak| weak.upgrade().is_some_and(|db| db.try_lock().is_none_or(|g| g.conn_is_file)));
        }
    }
}

/// Writes a transactionally consistent copy of the database at `src` to `dest` with
/// `VACUUM INTO`, from a separate read-only connection: safe while the owning actor keeps
/// committing (the copy is one read transaction over the database and its WAL), and never a
/// torn copy of raw pages, which copying the file (or the file plus its `-wal`) would risk.
/// Returns `false` when `src` does not exist.
pub fn consistent_copy(src: &Path, dest: &Path) -> StorageResult<bool> {
    use rusqlite::OpenFlags;
    if !src.exists() {
        return Ok(false);
    }
    let conn = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let dest_str = dest.to_str().ok_or_else(|| std::io::Error::other("snapshot path is not UTF-8"))?;
    conn.execute("VACUUM INTO ?1", [dest_str])?;
    Ok(true)
}

/// `PRAGMA integrity_check` on the file at `path`: `Ok(None)` when it passes, else the first
/// problems SQLite reports. Opening a file that is not a database at all is also a failure.
pub fn integrity_problems(path: &Path) -> StorageResult<Option<String>> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let rows: Vec<String> = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(None)
    } else {
        Ok(Some(rows.join("; ")))
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
