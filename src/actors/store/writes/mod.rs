//! The store's admin writes, one file per group of operations. Each runs inside the write
//! transaction: any `Err` rolls the whole transaction back, so a refused write changes nothing.

mod pages;
mod posts;
mod products;
mod settings;

use serde_json::Value;

use super::{AdminOp, Bounds, StoreError};
use crate::clock::now_ms;
use crate::ids::Slug;
use crate::render::snapshot::StoreSnapshot;
use crate::store::model::{Currency, StoreSettings};
use crate::store::repo;

/// What a committed write answers, and — for a change shoppers can see — the store's new
/// snapshot (built and checked inside the transaction) to publish once it has committed.
pub(super) struct Written {
    pub body: Value,
    pub published: Option<StoreSnapshot>,
    /// The page whose drafts this write changed (open console previews of it render again).
    pub drafts: Option<Slug>,
}

/// What one write runs with: its transaction, the store's settings as of the turn, the
/// operator's bounds, and the time it is made at.
struct Write<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    settings: &'a StoreSettings,
    currency: &'a Currency,
    bounds: &'a Bounds,
    now: i64,
}

impl Write<'_> {
    /// A change shoppers see: a new store version, refused past the store limits; its snapshot
    /// is published after the commit.
    fn visible(&self, body: Value) -> Result<Written, StoreError> {
        repo::bump_version(self.tx)?;
        let snapshot = self.bounds.check(self.tx)?;
        Ok(Written { body, published: Some(snapshot), drafts: None })
    }

    /// A change only the admin sees (drafts): no new version.
    fn unpublished(body: Value) -> Result<Written, StoreError> {
        Ok(Written { body, published: None, drafts: None })
    }

    /// A change to `page`'s drafts only the admin sees.
    fn draft(page: &Slug, body: Value) -> Result<Written, StoreError> {
        Ok(Written { body, published: None, drafts: Some(page.clone()) })
    }
}

impl Written {
    fn with_drafts(mut self, page: &Slug) -> Written {
        self.drafts = Some(page.clone());
        self
    }
}

/// Applies `op`, a write, inside `tx`.
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    op: AdminOp,
    settings: &StoreSettings,
    currency: &Currency,
    bounds: &Bounds,
) -> Result<Written, StoreError> {
    let w = Write { tx, settings, currency, bounds, now: now_ms() };
    match op {
        AdminOp::PatchSettings(patch) => settings::patch(&w, patch),
        AdminOp::PutTheme(theme) => settings::put_theme(&w, theme),
        AdminOp::UpsertProducts(items) => products::upsert(&w, items),
        AdminOp::DeleteProduct(id) => products::delete(&w, id),
        AdminOp::PutPage { slug, title, description, blocks } => pages::put(&w, slug, &title, &description, blocks),
        AdminOp::DeletePage(slug) => pages::delete(&w, slug),
        AdminOp::AddBlock { page, block } => pages::add_block(&w, page, block),
        AdminOp::UpdateBlock { page, block_id, block } => pages::update_block(&w, page, block_id, block),
        AdminOp::DeleteBlock { page, block_id } => pages::delete_block(&w, page, block_id),
        AdminOp::Publish(page) => pages::publish(&w, page),
        AdminOp::Rollback { page, version } => pages::rollback(&w, page, version),
        AdminOp::PutPost { slug, post } => posts::put(&w, slug, post),
        AdminOp::DeletePost(slug) => posts::delete(&w, slug),
        AdminOp::Describe
        | AdminOp::GetSettings
        | AdminOp::GetTheme
        | AdminOp::ListProducts
        | AdminOp::GetProduct(_)
        | AdminOp::ListPages
        | AdminOp::GetPage(_)
        | AdminOp::ListVersions(_)
        | AdminOp::ListPosts => Err(StoreError::Invalid("not a write".into())),
    }
}

/// Reads a JSON input as `T`, or says which input was invalid.
fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Invalid(format!("invalid {what}: {e}")))
}
