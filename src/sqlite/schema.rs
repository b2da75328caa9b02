//! The numbered migrations each kind of database owns (`schema/{kind}/NNNN_name.sql`).

use rusqlite::{Connection, TransactionBehavior};

use super::{StorageError, StorageResult};

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
            SchemaKind::Store => migrations![
                1 => "store/0001_init.sql", 2 => "store/0002_webhooks.sql", 3 => "store/0003_durability.sql", 4 => "store/0004_drop_outbox.sql",
                5 => "store/0005_staff.sql",
                6 => "store/0006_day_stats.sql",
                7 => "store/0007_cdn_purge.sql"
            ],
            SchemaKind::Shopper => migrations![1 => "shopper/0001_init.sql", 2 => "shopper/0002_orders.sql"],
            SchemaKind::Catalog => {
                migrations![1 => "catalog/0001_init.sql", 2 => "catalog/0002_shopify_domains.sql", 3 => "catalog/0003_host_claims.sql", 4 => "catalog/0004_token_versions.sql", 5 => "catalog/0005_node_boots.sql"]
            }
        }
    }
}

/// Applies the migrations `kind` has that the database at `conn` has not, one transaction each.
pub fn migrate(conn: &mut Connection, kind: SchemaKind) -> StorageResult<()> {
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
