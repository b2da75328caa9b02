//! `ActorDb`: one actor's connection, opened lazily, committed on the commit threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::committer;
use super::open_files;
use super::ShopperFiles;
use crate::ids::StoreId;
use crate::sqlite::{create_from_template, migrate, open, remove_sidecars, SchemaKind, StorageError, StorageResult};
use crate::trace_context::TurnTrace;

/// Called after every committed write of an actor, on the committing thread. Replication uses
/// it to mark the actor dirty; it must be cheap and must not block.
pub type CommitHook = Arc<dyn Fn() + Send + Sync>;

fn run_commit_hook(hook: Option<&CommitHook>) {
    if let Some(hook) = hook {
        hook();
    }
}

/// An actor's connection. Only the owning actor touches it, one turn at a time, so the mutex
/// is never contended; it exists so a commit can run on a commit thread.
#[derive(Clone)]
pub struct ActorDb {
    conn: Arc<Mutex<Db>>,
    on_commit: Option<CommitHook>,
    /// The trace of the owning actor's running turn: commits are its children.
    trace: TurnTrace,
}

/// The connection, or the promise of one: an actor without a file yet has none, and an idle
/// actor may have closed its own (`close_idle`) while keeping its state in memory.
pub(super) struct Db {
    conn: Option<Connection>,
    /// Whether `conn` is the file's connection (not the empty in-memory stand-in).
    pub(super) conn_is_file: bool,
    /// Whether the file exists; `false` until the first write creates it.
    file_exists: bool,
    path: PathBuf,
    kind: SchemaKind,
    /// A file connection was opened since the handle last looked: it must be admitted to the
    /// node's open-file budget ([`open_files`]) once this lock is released.
    newly_opened: bool,
    /// Times a file connection was opened for the open-file queue ([`open_files`]): each left
    /// an entry there that this handle's drop reports.
    admissions: usize,
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
            self.admissions += 1;
        }
        Ok(())
    }

    /// Closes the file's connection (its last commits stay in the WAL); the next access reopens it.
    pub(super) fn close_file(&mut self) {
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
        open_files::note_dropped(self.admissions);
    }
}

impl ActorDb {
    fn with_db(db: Db) -> ActorDb {
        ActorDb { conn: Arc::new(Mutex::new(db)), on_commit: None, trace: TurnTrace::default() }
    }

    pub fn open(path: &Path, kind: SchemaKind) -> StorageResult<ActorDb> {
        let db = Self::with_db(Db {
            conn: None,
            conn_is_file: false,
            file_exists: true,
            path: path.to_path_buf(),
            kind,
            newly_opened: false,
            admissions: 0,
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
            admissions: 0,
            quota: None,
            fresh: false,
        }))
    }

    /// Closes the file's connection (its page cache, file descriptors and shared memory) until
    /// the next read or write reopens it. For actors that keep their state in memory and are
    /// idle: an open connection costs more than the rest of a warm shopper. Runs on a
    /// commit thread: closing unmaps the shared memory and closes three files.
    pub async fn close_idle(&self) {
        let conn = self.conn.clone();
        if committer::run(move || conn.lock().close_file()).await.is_err() {
            tracing::warn!("closing an idle actor's database panicked");
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

    /// Where the owning actor records its running turn's trace (shared by this handle's clones).
    pub fn turn_trace(&self) -> TurnTrace {
        self.trace.clone()
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

    /// Runs `f` in an IMMEDIATE transaction on a commit thread and commits it; resolves only
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
    /// polled: the commit runs on a commit thread while the caller goes on with other work on
    /// its own thread (a shopper renders the page a product view belongs to while the view
    /// commits). The write completes even if the returned future is dropped.
    pub fn start_write_as<T, E, F>(&self, kind: Commit, f: F) -> impl std::future::Future<Output = Result<T, E>> + 'static
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let conn = self.conn.clone();
        let span = commit_span(kind, &self.trace);
        let commit = committer::run(move || span.in_scope(|| Self::commit(&conn, kind, f)));
        let on_commit = self.on_commit.clone();
        async move {
            let value = commit.await.map_err(|committer::Panicked| StorageError::Join("the commit panicked".into()))??;
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
        let value = commit_span(kind, &self.trace).in_scope(|| Self::commit(&self.conn, kind, f))?;
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
                    let started = std::time::Instant::now();
                    tx.commit().map_err(StorageError::from)?;
                    crate::metrics::observe_seconds(
                        "vitrina_sqlite_commit_seconds",
                        &[("durability", durability_label(kind))],
                        started.elapsed().as_secs_f64(),
                    );
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

/// The span of one commit: a child of the actor's running turn's trace when it runs in one.
fn commit_span(kind: Commit, trace: &TurnTrace) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!("commit", durability = durability_label(kind));
    if let Some(parent) = trace.parent() {
        let _ = span.set_parent(parent);
    }
    span
}

fn durability_label(kind: Commit) -> &'static str {
    if kind == Commit::Durable {
        "durable"
    } else {
        "may_be_lost"
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
