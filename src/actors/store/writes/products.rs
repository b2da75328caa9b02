//! Products: a batch is all-or-nothing; a handle belongs to one product.

use serde_json::{json, Value};

use super::{parse, Write, Written};
use crate::actors::store::StoreError;
use crate::ids::ProductId;
use crate::store::model::ProductInput;
use crate::store::repo::{self, UpsertOutcome};

pub(super) fn upsert(w: &Write<'_>, items: Vec<(Option<ProductId>, Value)>) -> Result<Written, StoreError> {
    let mut products = Vec::with_capacity(items.len());
    for (i, (path_id, raw)) in items.into_iter().enumerate() {
        let input: ProductInput = parse(raw, &format!("product #{i}"))?;
        let p = input.into_product(path_id.as_ref(), w.currency, w.now).map_err(|e| StoreError::Invalid(format!("product #{i}: {e}")))?;
        products.push(p);
    }
    let (mut created, mut updated) = (0, 0);
    for p in &products {
        match repo::upsert_product(w.tx, p)? {
            UpsertOutcome::Created => created += 1,
            UpsertOutcome::Updated => updated += 1,
            UpsertOutcome::HandleTaken => {
                return Err(StoreError::Conflict(format!("handle {} is used by another product", p.handle)));
            }
        }
    }
    let body = if products.len() == 1 {
        json!({"product": products[0], "created": created == 1})
    } else {
        json!({"created": created, "updated": updated})
    };
    w.visible(body)
}

pub(super) fn delete(w: &Write<'_>, id: ProductId) -> Result<Written, StoreError> {
    if !repo::delete_product(w.tx, &id)? {
        return Err(StoreError::NotFound(format!("product {id} not found")));
    }
    w.visible(json!({"deleted": id}))
}
