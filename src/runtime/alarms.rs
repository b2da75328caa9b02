//! Actor alarms: wake-ups an actor schedules for itself, persisted in its own database so they
//! survive passivation and restarts. The node catalog's alarm index (written first) lets the
//! node wake a passivated actor when one falls due; the actor's own table is the truth.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::sqlite::StorageResult;

pub fn set(tx: &Transaction<'_>, name: &str, due_ms: i64) -> StorageResult<()> {
    tx.prepare_cached("INSERT INTO alarms (name, due_ms) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET due_ms = excluded.due_ms")?
        .execute(params![name, due_ms])?;
    Ok(())
}

pub fn clear(tx: &Transaction<'_>, name: &str) -> StorageResult<()> {
    tx.prepare_cached("DELETE FROM alarms WHERE name = ?1")?.execute([name])?;
    Ok(())
}

/// Alarms due at `now_ms`, removed from the table in the same transaction.
pub fn take_due(tx: &Transaction<'_>, now_ms: i64) -> StorageResult<Vec<String>> {
    let names: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT name FROM alarms WHERE due_ms <= ?1 ORDER BY due_ms")?;
        let rows = stmt.query_map([now_ms], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    tx.prepare_cached("DELETE FROM alarms WHERE due_ms <= ?1")?.execute([now_ms])?;
    Ok(names)
}

pub fn next_due(conn: &Connection) -> StorageResult<Option<i64>> {
    Ok(conn.prepare_cached("SELECT min(due_ms) FROM alarms")?.query_row([], |r| r.get::<_, Option<i64>>(0)).optional()?.flatten())
}
