//! The store's staff, console session generations and audit log, kept in the store's database
//! (see `store::staff`). Passwords arrive hashed: the edge hashes and verifies them on its
//! blocking pool, never on the actor's turn.

use actix::prelude::*;
use serde_json::{json, Value};

use super::{StoreActor, StoreError};
use crate::clock::now_ms;
use crate::store::staff::{self as sql, Role};

#[derive(Debug, Clone)]
pub enum StaffOp {
    List,
    /// The role, password hash and session generation of a member, for a login.
    Credentials(String),
    /// The role a console session of `principal` issued under `generation` has now, or
    /// `{"valid": false}` when it has ended (logged out, its member changed or removed).
    Session {
        principal: String,
        generation: i64,
        nonce: String,
    },
    /// The current generation of `principal` (to issue a session under).
    Generation(String),
    /// Ends the session `nonce` (which would expire at `expires`, unix seconds).
    Logout {
        nonce: String,
        expires: i64,
    },
    Add {
        name: String,
        role: Role,
        password_hash: String,
        by: String,
    },
    Update {
        name: String,
        role: Option<Role>,
        password_hash: Option<String>,
    },
    Remove(String),
    Record {
        actor: String,
        action: String,
        summary: String,
    },
    Audit {
        before: Option<i64>,
        limit: i64,
    },
}

#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct Staff(pub StaffOp);

impl Handler<Staff> for StoreActor {
    type Result = AtomicResponse<Self, Result<Value, StoreError>>;

    fn handle(&mut self, Staff(op): Staff, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let ready = |r: Result<Value, StoreError>| -> Self::Result { AtomicResponse::new(Box::pin(fut::ready(r))) };
        let write = match op {
            StaffOp::List => return ready(db.read(|c| Ok(json!({"staff": sql::list(c)?}))).map_err(Into::into)),
            StaffOp::Credentials(name) => {
                return ready(
                    db.read(|c| sql::credentials(c, &name))
                        .map(|found| match found {
                            Some(c) => json!({"role": c.role, "passwordHash": c.password_hash, "generation": c.generation}),
                            None => Value::Null,
                        })
                        .map_err(Into::into),
                )
            }
            StaffOp::Session { principal, generation, nonce } => {
                return ready(
                    db.read(|c| {
                        let role = if principal == sql::TOKEN_PRINCIPAL { Some(Role::Owner) } else { sql::role(c, &principal)? };
                        Ok(match role {
                            Some(role) if sql::generation(c, &principal)? == generation && !sql::logged_out(c, &nonce)? => {
                                json!({"valid": true, "role": role})
                            }
                            _ => json!({"valid": false}),
                        })
                    })
                    .map_err(Into::into),
                )
            }
            StaffOp::Generation(principal) => {
                return ready(db.read(|c| Ok(json!({"generation": sql::generation(c, &principal)?}))).map_err(Into::into))
            }
            StaffOp::Audit { before, limit } => {
                return ready(
                    db.read(|c| {
                        let entries = sql::audit_page(c, before, limit)?;
                        let next = if entries.len() as i64 == limit { entries.last().map(|e| e.id) } else { None };
                        Ok(json!({"entries": entries, "next": next}))
                    })
                    .map_err(Into::into),
                )
            }
            write => write,
        };
        let node = self.node.clone();
        let key = crate::ids::ActorKey::Store(self.store.clone());
        let durability = self.snapshot.settings.durability;
        let kept = i64::from(self.node.settings.http.audit_entries_kept);
        let fut = async move {
            let body = db.write(move |tx| apply(tx, write, kept)).await?;
            node.acknowledge(&key, durability).await?;
            Ok(body)
        };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(fut)))
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: StaffOp, audit_kept: i64) -> Result<Value, StoreError> {
    let now = now_ms();
    match op {
        StaffOp::Logout { nonce, expires } => {
            sql::log_out(tx, &nonce, expires, now / 1000)?;
            Ok(json!({"loggedOut": true}))
        }
        StaffOp::Add { name, role, password_hash, by } => {
            if !sql::insert(tx, &name, role, &password_hash, &by, now)? {
                return Err(StoreError::Conflict(format!("a staff member named {name} already exists")));
            }
            // A name added again after a removal starts past every session it ever had.
            sql::bump_generation(tx, &name)?;
            Ok(json!({"name": name, "role": role, "createdAt": now, "createdBy": by}))
        }
        StaffOp::Update { name, role, password_hash } => {
            if !sql::update(tx, &name, role, password_hash.as_deref())? {
                return Err(StoreError::NotFound(format!("no staff member named {name}")));
            }
            let generation = sql::bump_generation(tx, &name)?;
            let role = sql::role(tx, &name)?;
            Ok(json!({"name": name, "role": role, "generation": generation}))
        }
        StaffOp::Remove(name) => {
            if !sql::delete(tx, &name)? {
                return Err(StoreError::NotFound(format!("no staff member named {name}")));
            }
            sql::bump_generation(tx, &name)?;
            Ok(json!({"deleted": name}))
        }
        StaffOp::Record { actor, action, summary } => Ok(json!({"id": sql::record(tx, now, &actor, &action, &summary, audit_kept)?})),
        StaffOp::List | StaffOp::Credentials(_) | StaffOp::Session { .. } | StaffOp::Generation(_) | StaffOp::Audit { .. } => {
            Err(StoreError::Invalid("not a write".into()))
        }
    }
}
