//! Database files on disk: WAL sidecars, consistent copies and integrity checks.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::StorageResult;

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

/// Copies every frame of the WAL of the database at `path` into the file and truncates the
/// WAL, leaving WAL mode on: after it the file alone carries every committed write.
pub fn checkpoint(path: &Path) -> StorageResult<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(std::io::Error::other("the WAL is in use; cannot checkpoint it").into());
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
