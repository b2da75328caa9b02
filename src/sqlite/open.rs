//! Opening a file with the pragmas every Vitrina file uses, and a shopper's new file from a template.

use std::path::Path;

use rusqlite::Connection;

use super::files::remove_sidecars;
use super::schema::{migrate, SchemaKind};
use super::StorageResult;
use crate::private_files::{create_private_dir_all, private_file};

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
/// switch, a transaction per migration and a checkpoint, each synced (`docs/decisions/storage-files.md`).
/// The rename and the new
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
///   (a visible share of a new session's CPU); they stay in the WAL, which the next open reads.
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
