//! Pages and their blocks: drafts change freely and only the admin sees them; publishing
//! (or rolling back, which publishes a copy) makes a new version shoppers see.

use serde_json::{json, Value};

use super::{parse, Write, Written};
use crate::actors::store::{draft_warnings, StoreError};
use crate::ids::{BlockId, Slug};
use crate::store::block_settings::{self, SettingError};
use crate::store::model::{Block, BlockInput};
use crate::store::repo;

pub(super) fn put(w: &Write<'_>, slug: Slug, title: &str, description: &str, blocks: Option<Vec<Value>>) -> Result<Written, StoreError> {
    if title.trim().is_empty() || title.chars().count() > 200 || description.chars().count() > 500 {
        return Err(StoreError::Invalid("title must be 1-200 characters, description at most 500".into()));
    }
    let new_blocks = match blocks {
        Some(raw) => {
            let mut out = Vec::new();
            for (i, b) in raw.into_iter().enumerate() {
                let input: BlockInput = parse(b, &format!("block #{i}"))?;
                let block = new_block(w.tx, input).map_err(|e| StoreError::Invalid(format!("block #{i}: {e}")))?;
                check_settings(&block).map_err(|mut e| {
                    e.path = format!("blocks[{i}].{}", e.path);
                    StoreError::InvalidSetting(e)
                })?;
                out.push(block);
            }
            Some(out)
        }
        None => None,
    };
    repo::upsert_page(w.tx, &slug, title.trim(), description, w.now)?;
    if let Some(blocks) = &new_blocks {
        repo::replace_draft_blocks(w.tx, &slug, blocks, w.now)?;
    }
    let page = repo::page_summary(w.tx, &slug)?;
    let drafts = repo::draft_blocks(w.tx, &slug)?;
    // Title/description of a published page are frozen per version: not yet visible.
    Write::draft(&slug, json!({"page": page, "draft": {"blocks": drafts, "warnings": draft_warnings(&drafts)}}))
}

pub(super) fn delete(w: &Write<'_>, slug: Slug) -> Result<Written, StoreError> {
    let was_live = repo::page_summary(w.tx, &slug)?.is_some_and(|p| p.published_version.is_some());
    if !repo::delete_page(w.tx, &slug)? {
        return Err(StoreError::NotFound(format!("page {slug} not found")));
    }
    if was_live {
        w.visible(json!({"deleted": slug}))
    } else {
        Write::unpublished(json!({"deleted": slug}))
    }
}

pub(super) fn add_block(w: &Write<'_>, page: Slug, block: Value) -> Result<Written, StoreError> {
    require_page(w.tx, &page)?;
    let input: BlockInput = parse(block, "block")?;
    let position = input.position;
    let block = new_block(w.tx, input).map_err(StoreError::Invalid)?;
    check_settings(&block).map_err(StoreError::InvalidSetting)?;
    let mut blocks = repo::draft_blocks(w.tx, &page)?;
    let at = position.unwrap_or(blocks.len()).min(blocks.len());
    blocks.insert(at, block.clone());
    repo::replace_draft_blocks(w.tx, &page, &blocks, w.now)?;
    let warnings = draft_warnings(std::slice::from_ref(&block));
    Write::draft(&page, json!({"block": block, "position": at, "warnings": warnings}))
}

pub(super) fn update_block(w: &Write<'_>, page: Slug, block_id: BlockId, block: Value) -> Result<Written, StoreError> {
    require_page(w.tx, &page)?;
    let input: BlockInput = parse(block, "block")?;
    input.check().map_err(StoreError::Invalid)?;
    let mut blocks = repo::draft_blocks(w.tx, &page)?;
    let Some(index) = blocks.iter().position(|b| b.id == block_id) else {
        return Err(StoreError::NotFound(format!("block {block_id} not found on page {page}")));
    };
    let mut b = blocks.remove(index);
    if let Some(t) = input.block_type {
        b.block_type = t;
    }
    if let Some(code) = input.code {
        if code != b.code {
            b.code = code;
            b.code_version = repo::next_code_version(w.tx)?;
        }
    }
    if let Some(config) = input.config {
        b.config = config;
    }
    if let Some(v) = input.visibility {
        b.visibility = v;
    }
    if b.block_type == "custom" && b.code.is_none() {
        return Err(StoreError::Invalid("a custom block needs code".into()));
    }
    check_settings(&b).map_err(StoreError::InvalidSetting)?;
    let at = input.position.unwrap_or(index).min(blocks.len());
    blocks.insert(at, b.clone());
    repo::replace_draft_blocks(w.tx, &page, &blocks, w.now)?;
    let warnings = draft_warnings(std::slice::from_ref(&b));
    Write::draft(&page, json!({"block": b, "position": at, "warnings": warnings}))
}

pub(super) fn delete_block(w: &Write<'_>, page: Slug, block_id: BlockId) -> Result<Written, StoreError> {
    require_page(w.tx, &page)?;
    let mut blocks = repo::draft_blocks(w.tx, &page)?;
    let before = blocks.len();
    blocks.retain(|b| b.id != block_id);
    if blocks.len() == before {
        return Err(StoreError::NotFound(format!("block {block_id} not found on page {page}")));
    }
    repo::replace_draft_blocks(w.tx, &page, &blocks, w.now)?;
    Write::draft(&page, json!({"deleted": block_id}))
}

pub(super) fn publish(w: &Write<'_>, page: Slug) -> Result<Written, StoreError> {
    require_page(w.tx, &page)?;
    let blocks = repo::draft_blocks(w.tx, &page)?;
    let problems = draft_warnings(&blocks);
    if !problems.is_empty() {
        return Err(StoreError::Invalid(format!("page {page} has blocks that fail validation: {}", Value::Array(problems))));
    }
    let version = repo::publish_version(w.tx, &page, &blocks, "publish", w.now)?;
    w.visible(json!({"page": page, "version": version}))
}

pub(super) fn rollback(w: &Write<'_>, page: Slug, version: i64) -> Result<Written, StoreError> {
    require_page(w.tx, &page)?;
    let Some(old) = repo::published_page(w.tx, &page, version)? else {
        return Err(StoreError::NotFound(format!("page {page} has no version {version}")));
    };
    // Rollback publishes a copy as a new version (versions only grow, so caches keyed by
    // version never serve stale HTML) and resets the drafts to it.
    repo::replace_draft_blocks(w.tx, &page, &old.blocks, w.now)?;
    let new_version = repo::publish_version(w.tx, &page, &old.blocks, &format!("rollback:{version}"), w.now)?;
    Ok(w.visible(json!({"page": page, "version": new_version, "restoredFrom": version}))?.with_drafts(&page))
}

/// A library block's settings against its declaration; a block with its own code reads its
/// settings itself.
fn check_settings(block: &Block) -> Result<(), SettingError> {
    if block.code.is_some() {
        return Ok(());
    }
    block_settings::check(&block.block_type, &block.config)
}

fn require_page(tx: &rusqlite::Transaction<'_>, slug: &Slug) -> Result<(), StoreError> {
    repo::page_summary(tx, slug)?.map(|_| ()).ok_or_else(|| StoreError::NotFound(format!("page {slug} not found")))
}

fn new_block(tx: &rusqlite::Transaction<'_>, input: BlockInput) -> Result<Block, String> {
    input.check()?;
    let block_type = input.block_type.ok_or("block type is required")?;
    let code = input.code.flatten();
    if block_type == "custom" && code.is_none() {
        return Err("a custom block needs code".into());
    }
    let code_version = repo::next_code_version(tx).map_err(|e| e.to_string())?;
    Ok(Block {
        id: BlockId::generate(),
        block_type,
        code,
        code_version,
        config: input.config.unwrap_or_else(|| json!({})),
        visibility: input.visibility.unwrap_or_default(),
    })
}
