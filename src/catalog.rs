//! The node catalog: which stores exist, which host names serve them, their hashed admin
//! tokens, and the alarm index. Shared by every request, so it sits behind an r2d2 pool with a
//! moka cache in front of host resolution (the hot path of every shopper request).

use std::time::Duration;

use base64::Engine as _;
use r2d2_sqlite::SqliteConnectionManager;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::ids::{ActorKey, StoreId};
use crate::sqlite;
use crate::sqlite::{DataLayout, SchemaKind, StorageError, StorageResult};

pub mod domain_check;
pub mod host_policy;

use host_policy::{HostKind, HostRefusal};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("store {0} already exists")]
    StoreExists(StoreId),
    #[error("host {0} is already mapped to another store")]
    HostTaken(String),
    #[error("{}", .0.message)]
    HostRefused(HostRefusal),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Storage(e.into())
    }
}

/// A bearer token as handed out once; only its hash is stored.
pub struct AdminToken(pub String);

impl AdminToken {
    pub fn generate() -> AdminToken {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        AdminToken(format!("vt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct NodeCatalog {
    pool: r2d2::Pool<SqliteConnectionManager>,
    base_domain: String,
    hosts: moka::sync::Cache<String, Option<StoreId>>,
    /// Stores known to exist. Stores are never deleted, so a positive answer stays true; every
    /// actor activation asks, and a query each was visible in the new-session profile.
    existing_stores: parking_lot::RwLock<std::collections::HashSet<StoreId>>,
}

impl NodeCatalog {
    pub fn open(layout: &DataLayout, base_domain: &str) -> Result<NodeCatalog, CatalogError> {
        let path = layout.catalog_db();
        // Create and migrate once with a plain connection; pooled connections only set pragmas.
        drop(sqlite::open(&path, SchemaKind::Catalog)?);
        let manager = SqliteConnectionManager::file(&path).with_init(|c| {
            c.pragma_update(None, "synchronous", "FULL")?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            c.busy_timeout(Duration::from_secs(5))
        });
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        let base_domain = base_domain.trim_matches('.').to_ascii_lowercase();
        drop_unservable_hosts(&*pool.get()?, &base_domain)?;
        Ok(NodeCatalog {
            pool,
            base_domain,
            hosts: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
            existing_stores: Default::default(),
        })
    }

    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    /// Registers a new store with the hash of its admin token.
    pub fn create_store(&self, store: &StoreId, token: &AdminToken) -> Result<(), CatalogError> {
        let conn = self.pool.get()?;
        let inserted = conn.execute(
            "INSERT INTO stores (id, admin_token_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO NOTHING",
            params![store.as_str(), hash_token(&token.0), now_ms()],
        )?;
        if inserted == 0 {
            return Err(CatalogError::StoreExists(store.clone()));
        }
        self.hosts.invalidate_all();
        Ok(())
    }

    /// Replaces a store's admin token (the rotate route; `--demo` hands out a known token
    /// again). Token lookups are not cached, so the old token is refused from the commit on.
    pub fn rotate_token(&self, store: &StoreId, token: &AdminToken) -> Result<(), CatalogError> {
        let conn = self.pool.get()?;
        conn.execute(
            "UPDATE stores SET admin_token_hash = ?2, token_version = max(?3, token_version + 1) WHERE id = ?1",
            params![store.as_str(), hash_token(&token.0), now_ms()],
        )?;
        Ok(())
    }

    pub fn store_exists(&self, store: &StoreId) -> Result<bool, CatalogError> {
        if self.existing_stores.read().contains(store) {
            return Ok(true);
        }
        let conn = self.pool.get()?;
        let exists =
            conn.prepare_cached("SELECT 1 FROM stores WHERE id = ?1")?.query_row([store.as_str()], |_| Ok(())).optional()?.is_some();
        if exists {
            self.existing_stores.write().insert(store.clone());
        }
        Ok(exists)
    }

    /// Counts this start of the node and returns the count (1 at the first start).
    pub fn next_boot(&self) -> Result<u64, CatalogError> {
        let conn = self.pool.get()?;
        let count: i64 = conn.query_row(
            "INSERT INTO node_boots (id, count) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET count = count + 1 RETURNING count",
            [],
            |row| row.get(0),
        )?;
        Ok(count as u64)
    }

    pub fn stores(&self) -> Result<Vec<StoreId>, CatalogError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare("SELECT id FROM stores ORDER BY id")?;
        let ids =
            stmt.query_map([], |row| row.get::<_, String>(0))?.filter_map(|r| r.ok()).filter_map(|s| StoreId::parse(&s).ok()).collect();
        Ok(ids)
    }

    /// The store whose admin token this is, if any.
    pub fn store_for_token(&self, token: &str) -> Result<Option<StoreId>, CatalogError> {
        let conn = self.pool.get()?;
        let id: Option<String> =
            conn.query_row("SELECT id FROM stores WHERE admin_token_hash = ?1", [hash_token(token)], |row| row.get(0)).optional()?;
        Ok(id.and_then(|s| StoreId::parse(&s).ok()))
    }

    /// The store whose admin token this is, with the version of that token (when it was last
    /// rotated), read together so a rotation cannot fall between them.
    pub fn token_grant(&self, token: &str) -> Result<Option<(StoreId, i64)>, CatalogError> {
        let conn = self.pool.get()?;
        let row: Option<(String, i64)> = conn
            .query_row("SELECT id, token_version FROM stores WHERE admin_token_hash = ?1", [hash_token(token)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        Ok(row.and_then(|(s, v)| StoreId::parse(&s).ok().map(|s| (s, v))))
    }

    /// The version of `store`'s admin token (changes with every rotation); `None` for no store.
    pub fn token_version(&self, store: &StoreId) -> Result<Option<i64>, CatalogError> {
        let conn = self.pool.get()?;
        Ok(conn.query_row("SELECT token_version FROM stores WHERE id = ?1", [store.as_str()], |row| row.get(0)).optional()?)
    }

    /// A store claims a custom domain: `Verified` when it already serves it (or is the store's
    /// default host), else a pending claim with the token that proves control of the domain.
    pub fn claim_host(&self, host: &str, store: &StoreId) -> Result<HostStatus, CatalogError> {
        let host = normalise_host(host);
        if host_policy::check_claim(&host, store, &self.base_domain).map_err(CatalogError::HostRefused)? == HostKind::OwnDefault {
            return Ok(HostStatus::Verified);
        }
        let conn = self.pool.get()?;
        let owner: Option<String> = conn.query_row("SELECT store_id FROM hosts WHERE host = ?1", [&host], |r| r.get(0)).optional()?;
        match owner {
            Some(o) if o == store.as_str() => return Ok(HostStatus::Verified),
            Some(_) => return Err(CatalogError::HostTaken(host)),
            None => {}
        }
        conn.execute(
            "INSERT INTO host_claims (host, store_id, token, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(host, store_id) DO NOTHING",
            params![host, store.as_str(), verification_token(), now_ms()],
        )?;
        let token: String =
            conn.query_row("SELECT token FROM host_claims WHERE host = ?1 AND store_id = ?2", params![host, store.as_str()], |r| r.get(0))?;
        Ok(HostStatus::Pending { token })
    }

    /// The token of `store`'s pending claim on `host`.
    pub fn claim_token(&self, host: &str, store: &StoreId) -> Result<Option<String>, CatalogError> {
        let conn = self.pool.get()?;
        Ok(conn
            .query_row(
                "SELECT token FROM host_claims WHERE host = ?1 AND store_id = ?2",
                params![normalise_host(host), store.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// `store` proved control of `host`: it serves from now on, and every claim on it ends.
    pub fn confirm_host(&self, host: &str, store: &StoreId) -> Result<(), CatalogError> {
        let host = normalise_host(host);
        host_policy::check_claim(&host, store, &self.base_domain).map_err(CatalogError::HostRefused)?;
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let owner: Option<String> = tx.query_row("SELECT store_id FROM hosts WHERE host = ?1", [&host], |r| r.get(0)).optional()?;
        if owner.as_deref().is_some_and(|o| o != store.as_str()) {
            return Err(CatalogError::HostTaken(host));
        }
        tx.execute("INSERT INTO hosts (host, store_id) VALUES (?1, ?2) ON CONFLICT(host) DO NOTHING", params![host, store.as_str()])?;
        tx.execute("DELETE FROM host_claims WHERE host = ?1", [&host])?;
        tx.commit()?;
        self.hosts.invalidate(&host);
        Ok(())
    }

    /// The operator maps `host` to `store`, verified, taking it from any other store.
    pub fn assign_host(&self, host: &str, store: &StoreId) -> Result<(), CatalogError> {
        let host = normalise_host(host);
        host_policy::check_claim(&host, store, &self.base_domain).map_err(CatalogError::HostRefused)?;
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO hosts (host, store_id) VALUES (?1, ?2) ON CONFLICT(host) DO UPDATE SET store_id = excluded.store_id",
            params![host, store.as_str()],
        )?;
        tx.execute("DELETE FROM host_claims WHERE host = ?1", [&host])?;
        tx.commit()?;
        self.hosts.invalidate(&host);
        Ok(())
    }

    /// The operator removes `host` from whichever store holds or claims it.
    pub fn revoke_host(&self, host: &str) -> Result<bool, CatalogError> {
        let host = normalise_host(host);
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let n =
            tx.execute("DELETE FROM hosts WHERE host = ?1", [&host])? + tx.execute("DELETE FROM host_claims WHERE host = ?1", [&host])?;
        tx.commit()?;
        self.hosts.invalidate(&host);
        Ok(n > 0)
    }

    /// Who serves `host` and which stores claim it.
    pub fn host_owner(&self, host: &str) -> Result<(Option<StoreId>, Vec<StoreId>), CatalogError> {
        let host = normalise_host(host);
        let conn = self.pool.get()?;
        let owner: Option<String> = conn.query_row("SELECT store_id FROM hosts WHERE host = ?1", [&host], |r| r.get(0)).optional()?;
        let mut stmt = conn.prepare("SELECT store_id FROM host_claims WHERE host = ?1 ORDER BY created_at")?;
        let claims =
            stmt.query_map([&host], |r| r.get::<_, String>(0))?.filter_map(|r| r.ok()).filter_map(|s| StoreId::parse(&s).ok()).collect();
        Ok((owner.and_then(|s| StoreId::parse(&s).ok()), claims))
    }

    /// A store gives up `host`, verified or claimed.
    pub fn unmap_host(&self, host: &str, store: &StoreId) -> Result<bool, CatalogError> {
        let host = normalise_host(host);
        let conn = self.pool.get()?;
        let n = conn.execute("DELETE FROM hosts WHERE host = ?1 AND store_id = ?2", params![host, store.as_str()])?
            + conn.execute("DELETE FROM host_claims WHERE host = ?1 AND store_id = ?2", params![host, store.as_str()])?;
        self.hosts.invalidate(&host);
        Ok(n > 0)
    }

    /// A store's custom domains: (host, status), verified ones first.
    pub fn hosts_of(&self, store: &StoreId) -> Result<Vec<(String, HostStatus)>, CatalogError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare("SELECT host FROM hosts WHERE store_id = ?1 ORDER BY host")?;
        let mut hosts: Vec<(String, HostStatus)> =
            stmt.query_map([store.as_str()], |r| r.get(0))?.filter_map(|r| r.ok()).map(|h| (h, HostStatus::Verified)).collect();
        let mut stmt = conn.prepare("SELECT host, token FROM host_claims WHERE store_id = ?1 ORDER BY host")?;
        let claims = stmt.query_map([store.as_str()], |r| Ok((r.get(0)?, HostStatus::Pending { token: r.get(1)? })))?;
        hosts.extend(claims.filter_map(|r| r.ok()));
        Ok(hosts)
    }

    /// Resolves a `Host` header to a store: `{store}.{base_domain}`, or a verified custom domain.
    pub fn resolve_host(&self, host_header: &str) -> Result<Option<StoreId>, CatalogError> {
        let host = normalise_host(host_header);
        if let Some(hit) = self.hosts.get(&host) {
            return Ok(hit);
        }
        let resolved = self.resolve_uncached(&host)?;
        self.hosts.insert(host, resolved.clone());
        Ok(resolved)
    }

    fn resolve_uncached(&self, host: &str) -> Result<Option<StoreId>, CatalogError> {
        // The base domain first: a default host is its store's even if a row says otherwise.
        if host == self.base_domain || host.ends_with(&format!(".{}", self.base_domain)) {
            return match host_policy::default_host_store(host, &self.base_domain) {
                Some(store) => Ok(self.store_exists(&store)?.then_some(store)),
                None => Ok(None),
            };
        }
        if host_policy::check_shared(host, &self.base_domain).is_err() {
            return Ok(None);
        }
        let conn = self.pool.get()?;
        let mapped: Option<String> = conn.query_row("SELECT store_id FROM hosts WHERE host = ?1", [host], |r| r.get(0)).optional()?;
        Ok(mapped.and_then(|store| StoreId::parse(&store).ok()))
    }

    /// Maps a Shopify shop domain (`x.myshopify.com`) to the store its webhooks update,
    /// replacing the store's previous domain.
    pub fn set_shopify_domain(&self, domain: &str, store: &StoreId) -> Result<(), CatalogError> {
        let domain = normalise_host(domain);
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let owner: Option<String> =
            tx.query_row("SELECT store_id FROM shopify_domains WHERE domain = ?1", [&domain], |r| r.get(0)).optional()?;
        if owner.as_deref().is_some_and(|o| o != store.as_str()) {
            return Err(CatalogError::HostTaken(domain));
        }
        tx.execute("DELETE FROM shopify_domains WHERE store_id = ?1", [store.as_str()])?;
        tx.execute("INSERT INTO shopify_domains (domain, store_id) VALUES (?1, ?2)", params![domain, store.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    pub fn store_for_shopify_domain(&self, domain: &str) -> Result<Option<StoreId>, CatalogError> {
        let conn = self.pool.get()?;
        let id: Option<String> =
            conn.query_row("SELECT store_id FROM shopify_domains WHERE domain = ?1", [normalise_host(domain)], |r| r.get(0)).optional()?;
        Ok(id.and_then(|s| StoreId::parse(&s).ok()))
    }

    pub fn shopify_domain_of(&self, store: &StoreId) -> Result<Option<String>, CatalogError> {
        let conn = self.pool.get()?;
        Ok(conn.query_row("SELECT domain FROM shopify_domains WHERE store_id = ?1", [store.as_str()], |r| r.get(0)).optional()?)
    }

    /// Records that `key` wants to be woken at `due_ms` (earliest alarm wins).
    pub fn set_alarm_hint(&self, key: &ActorKey, due_ms: i64) -> StorageResult<()> {
        let conn = self.pool.get().map_err(|e| StorageError::Join(e.to_string()))?;
        conn.execute(
            "INSERT INTO alarm_index (actor_key, due_ms) VALUES (?1, ?2)
             ON CONFLICT(actor_key) DO UPDATE SET due_ms = min(due_ms, excluded.due_ms)",
            params![key.to_string(), due_ms],
        )?;
        Ok(())
    }

    /// Replaces the hint with the actor's next alarm, or removes it when it has none.
    pub fn reset_alarm_hint(&self, key: &ActorKey, next_due_ms: Option<i64>) -> StorageResult<()> {
        let conn = self.pool.get().map_err(|e| StorageError::Join(e.to_string()))?;
        match next_due_ms {
            Some(due) => conn.execute(
                "INSERT INTO alarm_index (actor_key, due_ms) VALUES (?1, ?2)
                 ON CONFLICT(actor_key) DO UPDATE SET due_ms = excluded.due_ms",
                params![key.to_string(), due],
            )?,
            None => conn.execute("DELETE FROM alarm_index WHERE actor_key = ?1", [key.to_string()])?,
        };
        Ok(())
    }

    /// Actors with an alarm due at or before `now_ms`.
    pub fn due_alarms(&self, now_ms: i64, limit: usize) -> StorageResult<Vec<ActorKey>> {
        let conn = self.pool.get().map_err(|e| StorageError::Join(e.to_string()))?;
        let mut stmt = conn.prepare("SELECT actor_key FROM alarm_index WHERE due_ms <= ?1 ORDER BY due_ms LIMIT ?2")?;
        let keys = stmt
            .query_map(params![now_ms, limit as i64], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok())
            .filter_map(|k| ActorKey::parse(&k))
            .collect();
        Ok(keys)
    }
}

/// Whether a custom domain serves yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStatus {
    Verified,
    /// Claimed; serves once `token` is found at the domain.
    Pending {
        token: String,
    },
}

fn verification_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("vv_{}", hex::encode(bytes))
}

/// Deletes host mappings the host rules forbid (made before they existed, or under a base
/// domain that changed): they would never be served, and a store could not add them again.
fn drop_unservable_hosts(conn: &rusqlite::Connection, base: &str) -> Result<(), CatalogError> {
    let mut stmt = conn.prepare("SELECT host, store_id FROM hosts")?;
    let rows: Vec<(String, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.filter_map(|r| r.ok()).collect();
    for (host, store) in rows {
        if let Err(refusal) = host_policy::check_shared(&host, base) {
            tracing::warn!(%host, %store, reason = %refusal.message, "custom host mapping dropped: it is not a claimable domain");
            conn.execute("DELETE FROM hosts WHERE host = ?1", [&host])?;
        }
    }
    Ok(())
}

/// Lower-cases and strips the port and any trailing dot. A header that is not a host name (or a
/// bracketed IPv6 literal) with an optional numeric port normalises to "", which no store
/// serves: `a:1:2`, `[::1]x` or `a b` must not be half-parsed into something that might match.
pub fn normalise_host(host: &str) -> String {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        // IPv6 literal: `[::1]:8080` → `[::1]`
        match host.find(']') {
            Some(end) => (&host[..=end], &host[end + 1..]),
            None => return String::new(),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, host.get(name.len()..).unwrap_or(port)),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name = name.trim_end_matches('.');
    let name_ok = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if port_ok && name_ok {
        name.to_ascii_lowercase()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_host;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalise_host("Demo.LocalHost:8080"), "demo.localhost");
        assert_eq!(normalise_host("shop.example.com."), "shop.example.com");
        assert_eq!(normalise_host("shop.example.com"), "shop.example.com");
        assert_eq!(normalise_host("[::1]:8080"), "[::1]");
        assert_eq!(normalise_host("shop.example.com.:443"), "shop.example.com");
    }

    #[test]
    fn what_is_not_a_host_normalises_to_nothing() {
        // Found by fuzzing: `a:8080:8080` became `a:8080`, which normalised again to `a`.
        for bad in ["DocalLost:8080:8080", "a:", "a:x", "[::1]x", "[::1", "a b", "a/b", "", "...", "[]", "a:8080:"] {
            assert_eq!(normalise_host(bad), "", "{bad:?}");
        }
    }
}

/// Everything a node catalog holds that other nodes need: replicated to every member.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CatalogDump {
    /// (store id, admin token hash, created_ms)
    pub stores: Vec<(String, String, i64)>,
    /// (host, store id)
    pub hosts: Vec<(String, String)>,
    /// (Shopify shop domain, store id)
    #[serde(default)]
    pub shopify_domains: Vec<(String, String)>,
    /// Pending custom-domain claims: (host, store id, token, created_ms)
    #[serde(default)]
    pub host_claims: Vec<(String, String, String, i64)>,
    /// (store id, token version): when each store's admin token was last rotated. A dump's
    /// token replaces a node's only if it is at least as new.
    #[serde(default)]
    pub token_versions: Vec<(String, i64)>,
}

impl NodeCatalog {
    pub fn dump(&self) -> Result<CatalogDump, CatalogError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare("SELECT id, admin_token_hash, created_at FROM stores ORDER BY id")?;
        let stores = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.filter_map(|r| r.ok()).collect();
        let mut stmt = conn.prepare("SELECT host, store_id FROM hosts ORDER BY host")?;
        let hosts = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.filter_map(|r| r.ok()).collect();
        let mut stmt = conn.prepare("SELECT domain, store_id FROM shopify_domains ORDER BY domain")?;
        let shopify_domains = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.filter_map(|r| r.ok()).collect();
        let mut stmt = conn.prepare("SELECT host, store_id, token, created_at FROM host_claims ORDER BY host, store_id")?;
        let host_claims = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.filter_map(|r| r.ok()).collect();
        let mut stmt = conn.prepare("SELECT id, token_version FROM stores WHERE token_version > 0 ORDER BY id")?;
        let token_versions = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.filter_map(|r| r.ok()).collect();
        Ok(CatalogDump { stores, hosts, shopify_domains, host_claims, token_versions })
    }

    /// Merges another node's catalog: stores and their tokens are upserted; each listed store's
    /// host mappings are replaced by the dump's.
    pub fn apply(&self, dump: &CatalogDump) -> Result<(), CatalogError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let versions: std::collections::HashMap<&str, i64> = dump.token_versions.iter().map(|(id, v)| (id.as_str(), *v)).collect();
        for (id, hash, created) in &dump.stores {
            if StoreId::parse(id).is_err() {
                continue;
            }
            // An older token (a node that had not heard of a rotation yet) never replaces a newer one.
            tx.execute(
                "INSERT INTO stores (id, admin_token_hash, created_at, token_version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET admin_token_hash = excluded.admin_token_hash, token_version = excluded.token_version
                 WHERE excluded.token_version >= stores.token_version",
                params![id, hash, created, versions.get(id.as_str()).copied().unwrap_or(0)],
            )?;
            tx.execute("DELETE FROM hosts WHERE store_id = ?1", [id])?;
            tx.execute("DELETE FROM shopify_domains WHERE store_id = ?1", [id])?;
            tx.execute("DELETE FROM host_claims WHERE store_id = ?1", [id])?;
        }
        for (host, store, token, created) in &dump.host_claims {
            tx.execute(
                "INSERT INTO host_claims (host, store_id, token, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(host, store_id) DO NOTHING",
                params![normalise_host(host), store, token, created],
            )?;
        }
        for (domain, store) in &dump.shopify_domains {
            tx.execute(
                "INSERT INTO shopify_domains (domain, store_id) VALUES (?1, ?2) ON CONFLICT(domain) DO UPDATE SET store_id = excluded.store_id",
                params![domain, store],
            )?;
        }
        for (host, store) in &dump.hosts {
            tx.execute(
                "INSERT INTO hosts (host, store_id) VALUES (?1, ?2) ON CONFLICT(host) DO UPDATE SET store_id = excluded.store_id",
                params![normalise_host(host), store],
            )?;
        }
        tx.commit()?;
        self.hosts.invalidate_all();
        Ok(())
    }
}
