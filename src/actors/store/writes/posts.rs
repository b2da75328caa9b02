//! Blog posts.

use serde_json::{json, Value};

use super::{parse, Write, Written};
use crate::actors::store::StoreError;
use crate::ids::Slug;
use crate::store::model::PostInput;
use crate::store::repo;

pub(super) fn put(w: &Write<'_>, slug: Slug, post: Value) -> Result<Written, StoreError> {
    let input: PostInput = parse(post, "post")?;
    let post = input.into_post(slug, w.now).map_err(StoreError::Invalid)?;
    repo::upsert_post(w.tx, &post, w.now)?;
    w.visible(json!({"post": post}))
}

pub(super) fn delete(w: &Write<'_>, slug: Slug) -> Result<Written, StoreError> {
    if !repo::delete_post(w.tx, &slug)? {
        return Err(StoreError::NotFound(format!("post {slug} not found")));
    }
    w.visible(json!({"deleted": slug}))
}
