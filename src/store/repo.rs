//! SQL over one store actor's database. Only the store actor calls these, inside its turn.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;

use super::model::*;
use crate::ids::{BlockId, ProductId, Slug};
use crate::sqlite::StorageResult;

pub fn meta_get(conn: &Connection, key: &str) -> StorageResult<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub fn meta_set(tx: &Transaction<'_>, key: &str, value: &str) -> StorageResult<()> {
    tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![key, value])?;
    Ok(())
}

fn counter(conn: &Connection, key: &str) -> StorageResult<i64> {
    Ok(meta_get(conn, key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The version shoppers render against: bumped by every change they can see.
pub fn version(conn: &Connection) -> StorageResult<u64> {
    Ok(counter(conn, "version")? as u64)
}

pub fn bump_version(tx: &Transaction<'_>) -> StorageResult<u64> {
    let next = counter(tx, "version")? + 1;
    meta_set(tx, "version", &next.to_string())?;
    Ok(next as u64)
}

/// Store-wide, never reused: (block id, code_version) always names one piece of code.
pub fn next_code_version(tx: &Transaction<'_>) -> StorageResult<u64> {
    let next = counter(tx, "code_seq")? + 1;
    meta_set(tx, "code_seq", &next.to_string())?;
    Ok(next as u64)
}

pub fn load_settings(conn: &Connection) -> StorageResult<StoreSettings> {
    let row = conn
        .query_row(
            "SELECT name, tagline, currency, locale, seo_title, seo_description, analytics, limits, durability FROM settings WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((name, tagline, currency, locale, seo_title, seo_description, analytics, limits, durability)) = row else {
        return Ok(StoreSettings::default());
    };
    Ok(StoreSettings {
        name,
        tagline,
        currency: Currency::parse(&currency).unwrap_or_default(),
        locale,
        seo: Seo { title: seo_title, description: seo_description },
        analytics: serde_json::from_str(&analytics).unwrap_or_default(),
        limits: serde_json::from_str(&limits).unwrap_or_default(),
        durability: Durability::from_stored(&durability),
    })
}

pub fn save_settings(tx: &Transaction<'_>, s: &StoreSettings, now: i64) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO settings (id, name, tagline, currency, locale, seo_title, seo_description, analytics, limits, updated_at, durability)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, tagline = excluded.tagline,
           currency = excluded.currency, locale = excluded.locale, seo_title = excluded.seo_title,
           seo_description = excluded.seo_description, analytics = excluded.analytics,
           limits = excluded.limits, updated_at = excluded.updated_at, durability = excluded.durability",
        params![
            s.name,
            s.tagline,
            s.currency.code(),
            s.locale,
            s.seo.title,
            s.seo.description,
            serde_json::to_string(&s.analytics)?,
            serde_json::to_string(&s.limits)?,
            now,
            s.durability.as_str()
        ],
    )?;
    Ok(())
}

pub fn load_theme(conn: &Connection) -> StorageResult<Theme> {
    let row = conn
        .query_row("SELECT template, tokens, regions FROM theme WHERE id = 1", [], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .optional()?;
    Ok(match row {
        Some((template, tokens, regions)) => Theme {
            template,
            tokens: serde_json::from_str(&tokens).unwrap_or_default(),
            regions: serde_json::from_str(&regions).unwrap_or_default(),
        },
        None => Theme { template: "classic".into(), ..Default::default() },
    })
}

pub fn save_theme(tx: &Transaction<'_>, t: &Theme) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO theme (id, template, tokens, regions) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET template = excluded.template, tokens = excluded.tokens, regions = excluded.regions",
        params![t.template, serde_json::to_string(&t.tokens)?, serde_json::to_string(&t.regions)?],
    )?;
    Ok(())
}

fn product_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Product>> {
    let id: String = r.get(0)?;
    let handle: String = r.get(1)?;
    let images: String = r.get(6)?;
    let tags: String = r.get(8)?;
    let (Ok(id), Ok(handle)) = (ProductId::parse(&id), Slug::parse(&handle)) else { return Ok(None) };
    Ok(Some(Product {
        id,
        handle,
        title: r.get(2)?,
        description: r.get(3)?,
        price_minor: r.get(4)?,
        compare_at_minor: r.get(5)?,
        images: serde_json::from_str(&images).unwrap_or_default(),
        stock: r.get(7)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        position: r.get(9)?,
        updated_at: r.get(10)?,
    }))
}

const PRODUCT_COLUMNS: &str = "id, handle, title, description, price_minor, compare_at_minor, images, stock, tags, position, updated_at";

pub fn list_products(conn: &Connection) -> StorageResult<Vec<Product>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY position, id"))?;
    let rows = stmt.query_map([], product_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(p) = row? {
            out.push(p);
        }
    }
    Ok(out)
}

pub fn get_product(conn: &Connection, id: &ProductId) -> StorageResult<Option<Product>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1"))?;
    Ok(stmt.query_row([id.as_str()], product_from_row).optional()?.flatten())
}

#[derive(Debug, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
    HandleTaken,
}

pub fn upsert_product(tx: &Transaction<'_>, p: &Product) -> StorageResult<UpsertOutcome> {
    let owner: Option<String> = tx.query_row("SELECT id FROM products WHERE handle = ?1", [p.handle.as_str()], |r| r.get(0)).optional()?;
    if owner.as_deref().is_some_and(|o| o != p.id.as_str()) {
        return Ok(UpsertOutcome::HandleTaken);
    }
    let existed = tx.query_row("SELECT 1 FROM products WHERE id = ?1", [p.id.as_str()], |_| Ok(())).optional()?.is_some();
    tx.execute(
        "INSERT INTO products (id, handle, title, description, price_minor, compare_at_minor, images, stock, tags, position, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(id) DO UPDATE SET handle = excluded.handle, title = excluded.title,
           description = excluded.description, price_minor = excluded.price_minor,
           compare_at_minor = excluded.compare_at_minor, images = excluded.images, stock = excluded.stock,
           tags = excluded.tags, position = excluded.position, updated_at = excluded.updated_at",
        params![
            p.id.as_str(),
            p.handle.as_str(),
            p.title,
            p.description,
            p.price_minor,
            p.compare_at_minor,
            serde_json::to_string(&p.images)?,
            p.stock,
            serde_json::to_string(&p.tags)?,
            p.position,
            p.updated_at
        ],
    )?;
    Ok(if existed { UpsertOutcome::Updated } else { UpsertOutcome::Created })
}

pub fn delete_product(tx: &Transaction<'_>, id: &ProductId) -> StorageResult<bool> {
    Ok(tx.execute("DELETE FROM products WHERE id = ?1", [id.as_str()])? > 0)
}

/// Full-text search over title, description and tags, best match first (bm25, title weighted).
pub fn search_products(conn: &Connection, query: &str, limit: usize) -> StorageResult<Vec<ProductId>> {
    let Some(fts_query) = fts_query(query) else { return Ok(Vec::new()) };
    let mut stmt = conn.prepare_cached(
        "SELECT p.id FROM products_fts f JOIN products p ON p.rowid = f.rowid
         WHERE products_fts MATCH ?1 ORDER BY bm25(products_fts, 10.0, 2.0, 4.0) LIMIT ?2",
    )?;
    let ids = stmt
        .query_map(params![fts_query, limit as i64], |r| r.get::<_, String>(0))?
        .filter_map(|r| r.ok())
        .filter_map(|s| ProductId::parse(&s).ok())
        .collect();
    Ok(ids)
}

/// Turns free text into an FTS5 query of quoted prefix terms, so no input is FTS syntax.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(12)
        .map(|t| format!("\"{}\"*", t.to_lowercase()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

// ---- pages and blocks ----

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageSummary {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub published_version: Option<i64>,
    pub updated_at: i64,
}

const PAGE_COLUMNS: &str = "slug, title, description, published_version, updated_at";

fn page_summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PageSummary> {
    Ok(PageSummary { slug: r.get(0)?, title: r.get(1)?, description: r.get(2)?, published_version: r.get(3)?, updated_at: r.get(4)? })
}

pub fn list_pages(conn: &Connection) -> StorageResult<Vec<PageSummary>> {
    let mut stmt = conn.prepare(&format!("SELECT {PAGE_COLUMNS} FROM pages ORDER BY slug"))?;
    let rows = stmt.query_map([], page_summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn page_summary(conn: &Connection, slug: &Slug) -> StorageResult<Option<PageSummary>> {
    let sql = format!("SELECT {PAGE_COLUMNS} FROM pages WHERE slug = ?1");
    Ok(conn.query_row(&sql, [slug.as_str()], page_summary_from_row).optional()?)
}

pub fn upsert_page(tx: &Transaction<'_>, slug: &Slug, title: &str, description: &str, now: i64) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO pages (slug, title, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(slug) DO UPDATE SET title = excluded.title, description = excluded.description, updated_at = excluded.updated_at",
        params![slug.as_str(), title, description, now],
    )?;
    Ok(())
}

pub fn delete_page(tx: &Transaction<'_>, slug: &Slug) -> StorageResult<bool> {
    Ok(tx.execute("DELETE FROM pages WHERE slug = ?1", [slug.as_str()])? > 0)
}

pub fn draft_blocks(conn: &Connection, slug: &Slug) -> StorageResult<Vec<Block>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, type, code, code_version, config, visibility FROM draft_blocks WHERE page_slug = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([slug.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, block_type, code, code_version, config, visibility) = row?;
        let Ok(id) = BlockId::parse(&id) else { continue };
        out.push(Block {
            id,
            block_type,
            code,
            code_version: code_version as u64,
            config: serde_json::from_str(&config).unwrap_or(Value::Object(Default::default())),
            visibility: serde_json::from_str(&visibility).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Rewrites a page's draft blocks in the given order.
pub fn replace_draft_blocks(tx: &Transaction<'_>, slug: &Slug, blocks: &[Block], now: i64) -> StorageResult<()> {
    tx.execute("DELETE FROM draft_blocks WHERE page_slug = ?1", [slug.as_str()])?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO draft_blocks (page_slug, id, position, type, code, code_version, config, visibility, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (position, b) in blocks.iter().enumerate() {
        stmt.execute(params![
            slug.as_str(),
            b.id.as_str(),
            position as i64,
            b.block_type,
            b.code,
            b.code_version as i64,
            b.config.to_string(),
            serde_json::to_string(&b.visibility)?,
            now
        ])?;
    }
    tx.execute("UPDATE pages SET updated_at = ?2 WHERE slug = ?1", params![slug.as_str(), now])?;
    Ok(())
}

pub fn published_page(conn: &Connection, slug: &Slug, version: i64) -> StorageResult<Option<PageVersion>> {
    let row = conn
        .query_row(
            "SELECT title, description, blocks, published_at FROM page_versions WHERE page_slug = ?1 AND version = ?2",
            params![slug.as_str(), version],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)),
        )
        .optional()?;
    Ok(match row {
        Some((title, description, blocks, published_at)) => {
            Some(PageVersion { slug: slug.clone(), version, title, description, blocks: serde_json::from_str(&blocks)?, published_at })
        }
        None => None,
    })
}

/// Every page's live version.
pub fn live_pages(conn: &Connection) -> StorageResult<Vec<PageVersion>> {
    let mut out = Vec::new();
    for page in list_pages(conn)? {
        let (Some(v), Ok(slug)) = (page.published_version, Slug::parse(&page.slug)) else { continue };
        if let Some(p) = published_page(conn, &slug, v)? {
            out.push(p);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    pub version: i64,
    pub published_at: i64,
    pub source: String,
    pub block_count: usize,
    pub live: bool,
}

pub fn page_versions(conn: &Connection, slug: &Slug) -> StorageResult<Vec<VersionSummary>> {
    let live: Option<i64> =
        conn.query_row("SELECT published_version FROM pages WHERE slug = ?1", [slug.as_str()], |r| r.get(0)).optional()?.flatten();
    let mut stmt = conn.prepare(
        "SELECT version, published_at, source, json_array_length(blocks) FROM page_versions WHERE page_slug = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([slug.as_str()], |r| {
        let version: i64 = r.get(0)?;
        Ok(VersionSummary {
            version,
            published_at: r.get(1)?,
            source: r.get(2)?,
            block_count: r.get::<_, i64>(3)? as usize,
            live: Some(version) == live,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Freezes `blocks` (with the page's current title/description) as the next version and makes
/// it live. Returns the new version number.
pub fn publish_version(tx: &Transaction<'_>, slug: &Slug, blocks: &[Block], source: &str, now: i64) -> StorageResult<i64> {
    let (title, description): (String, String) =
        tx.query_row("SELECT title, description FROM pages WHERE slug = ?1", [slug.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let next: i64 =
        tx.query_row("SELECT coalesce(max(version), 0) + 1 FROM page_versions WHERE page_slug = ?1", [slug.as_str()], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO page_versions (page_slug, version, title, description, blocks, published_at, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![slug.as_str(), next, title, description, serde_json::to_string(blocks)?, now, source],
    )?;
    tx.execute("UPDATE pages SET published_version = ?2 WHERE slug = ?1", params![slug.as_str(), next])?;
    Ok(next)
}

// ---- posts ----

pub fn list_posts(conn: &Connection) -> StorageResult<Vec<Post>> {
    let mut stmt =
        conn.prepare_cached("SELECT slug, title, excerpt, body, author, image, published_at FROM posts ORDER BY published_at DESC, slug")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (slug, title, excerpt, body, author, image, published_at) = row?;
        let Ok(slug) = Slug::parse(&slug) else { continue };
        out.push(Post { slug, title, excerpt, body, author, image, published_at });
    }
    Ok(out)
}

pub fn upsert_post(tx: &Transaction<'_>, p: &Post, now: i64) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO posts (slug, title, excerpt, body, author, image, published_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(slug) DO UPDATE SET title = excluded.title, excerpt = excluded.excerpt, body = excluded.body,
           author = excluded.author, image = excluded.image, published_at = excluded.published_at, updated_at = excluded.updated_at",
        params![p.slug.as_str(), p.title, p.excerpt, p.body, p.author, p.image, p.published_at, now],
    )?;
    Ok(())
}

pub fn delete_post(tx: &Transaction<'_>, slug: &Slug) -> StorageResult<bool> {
    Ok(tx.execute("DELETE FROM posts WHERE slug = ?1", [slug.as_str()])? > 0)
}
