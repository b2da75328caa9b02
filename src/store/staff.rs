//! Staff, their roles, console session generations and the audit log: the model and its SQL.
//! Only the store actor calls the SQL, inside its turn.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use crate::sqlite::StorageResult;

/// The principal a console session of the store's admin token is issued to (not a valid staff
/// name, so no staff member can be it).
pub const TOKEN_PRINCIPAL: &str = "~";
/// How the admin token's principal is named in the audit log.
pub const TOKEN_ACTOR: &str = "admin token";
/// How the node's operator token is named in the audit log.
pub const OPERATOR_ACTOR: &str = "operator";
const MAX_NAME: usize = 40;
const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 256;
const MAX_SUMMARY: usize = 300;

/// What a caller may do, in increasing order: each role can do everything the ones below can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Drafts, publish, rollback, theme, blog.
    Editor,
    /// Everything: settings, feed, domains, tokens, staff.
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "owner" => Ok(Role::Owner),
            "editor" => Ok(Role::Editor),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("role {:?} is not one of owner, editor, viewer", truncate(other, 40))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A staff name: 1 to 40 of `A-Z a-z 0-9 _ -` (it travels in the session cookie and the audit
/// log, so nothing that needs escaping is accepted).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("a staff name is 1 to {MAX_NAME} letters, digits, '_' or '-'"))
    }
}

pub fn check_password(password: &str) -> Result<(), String> {
    // Bytes at most (what a login accepts), characters at least.
    if password.chars().count() >= MIN_PASSWORD && password.len() <= MAX_PASSWORD {
        Ok(())
    } else {
        Err(format!("a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters (bytes, beyond ASCII)"))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffMember {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub created_by: String,
}

/// What a login is checked against.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub role: Role,
    pub password_hash: String,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub summary: String,
}

fn role_of(raw: String) -> Role {
    // The column's CHECK admits only the three; anything else reads as the least privilege.
    Role::parse(&raw).unwrap_or(Role::Viewer)
}

pub fn list(conn: &Connection) -> StorageResult<Vec<StaffMember>> {
    let mut stmt = conn.prepare("SELECT name, role, created_at, created_by FROM staff ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| Ok(StaffMember { name: r.get(0)?, role: role_of(r.get(1)?), created_at: r.get(2)?, created_by: r.get(3)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn role(conn: &Connection, name: &str) -> StorageResult<Option<Role>> {
    Ok(conn.query_row("SELECT role FROM staff WHERE name = ?1", [name], |r| r.get::<_, String>(0)).optional()?.map(role_of))
}

pub fn credentials(conn: &Connection, name: &str) -> StorageResult<Option<Credentials>> {
    let row = conn
        .query_row("SELECT role, password_hash FROM staff WHERE name = ?1", [name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    let Some((role, password_hash)) = row else { return Ok(None) };
    Ok(Some(Credentials { role: role_of(role), password_hash, generation: generation(conn, name)? }))
}

pub fn generation(conn: &Connection, principal: &str) -> StorageResult<i64> {
    Ok(conn
        .query_row("SELECT generation FROM console_generations WHERE principal = ?1", [principal], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Ends every console session of `principal`.
pub fn bump_generation(tx: &Transaction<'_>, principal: &str) -> StorageResult<i64> {
    tx.execute(
        "INSERT INTO console_generations (principal, generation) VALUES (?1, 1)
         ON CONFLICT(principal) DO UPDATE SET generation = generation + 1",
        [principal],
    )?;
    generation(tx, principal)
}

/// Refuses the session `nonce` from now on; forgets logouts whose sessions have expired.
pub fn log_out(tx: &Transaction<'_>, nonce: &str, expires_at: i64, now_secs: i64) -> StorageResult<()> {
    tx.execute("DELETE FROM console_logouts WHERE expires_at <= ?1", [now_secs])?;
    tx.execute(
        "INSERT INTO console_logouts (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT(nonce) DO NOTHING",
        params![nonce, expires_at],
    )?;
    Ok(())
}

pub fn logged_out(conn: &Connection, nonce: &str) -> StorageResult<bool> {
    Ok(conn.query_row("SELECT 1 FROM console_logouts WHERE nonce = ?1", [nonce], |_| Ok(())).optional()?.is_some())
}

/// Adds a member; `false` when the name is taken.
pub fn insert(tx: &Transaction<'_>, name: &str, role: Role, hash: &str, by: &str, now: i64) -> StorageResult<bool> {
    let n = tx.execute(
        "INSERT INTO staff (name, role, password_hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING",
        params![name, role.as_str(), hash, now, by],
    )?;
    Ok(n == 1)
}

/// Changes a member's role and/or password; `false` when there is no such member.
pub fn update(tx: &Transaction<'_>, name: &str, role: Option<Role>, hash: Option<&str>) -> StorageResult<bool> {
    let n = tx.execute(
        "UPDATE staff SET role = COALESCE(?2, role), password_hash = COALESCE(?3, password_hash) WHERE name = ?1",
        params![name, role.map(Role::as_str), hash],
    )?;
    Ok(n == 1)
}

pub fn delete(tx: &Transaction<'_>, name: &str) -> StorageResult<bool> {
    Ok(tx.execute("DELETE FROM staff WHERE name = ?1", [name])? == 1)
}

/// Appends an entry and drops all but the newest `kept`.
pub fn record(tx: &Transaction<'_>, at: i64, actor: &str, action: &str, summary: &str, kept: i64) -> StorageResult<i64> {
    tx.execute(
        "INSERT INTO audit_log (at_ms, actor, action, summary) VALUES (?1, ?2, ?3, ?4)",
        params![at, truncate(actor, 64), truncate(action, 64), truncate(summary, MAX_SUMMARY)],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute("DELETE FROM audit_log WHERE id <= ?1", [id - kept.max(1)])?;
    Ok(id)
}

/// Up to `limit` entries older than `before` (all when `None`), newest first.
pub fn audit_page(conn: &Connection, before: Option<i64>, limit: i64) -> StorageResult<Vec<AuditEntry>> {
    let mut stmt = conn.prepare("SELECT id, at_ms, actor, action, summary FROM audit_log WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), limit], |r| {
        Ok(AuditEntry { id: r.get(0)?, at: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, summary: r.get(4)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roles_and_passwords_are_checked() {
        assert!(check_name("alice_2-b").is_ok());
        for bad in ["", "<b>x</b>", "a.b", "a b", "~", &"x".repeat(41), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Role::parse("editor"), Ok(Role::Editor));
        assert!(Role::parse("admin").is_err());
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());
        assert!(check_password(&"p".repeat(257)).is_err());
        assert!(check_password(&"é".repeat(200)).is_err(), "400 bytes");
    }
}
