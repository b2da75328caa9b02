//! The store's settings and theme.

use serde_json::{json, Value};

use super::{parse, Write, Written};
use crate::actors::store::StoreError;
use crate::store::model::{SettingsPatch, Theme};
use crate::store::repo;

pub(super) fn patch(w: &Write<'_>, patch: Value) -> Result<Written, StoreError> {
    let patch: SettingsPatch = parse(patch, "settings")?;
    if let Some(limits) = &patch.limits {
        w.bounds.check_block_limits(limits)?;
    }
    let next = patch.apply(w.settings.clone()).map_err(StoreError::Invalid)?;
    repo::save_settings(w.tx, &next, w.now)?;
    w.visible(json!({"settings": next}))
}

pub(super) fn put_theme(w: &Write<'_>, theme: Theme) -> Result<Written, StoreError> {
    theme.validate().map_err(StoreError::Invalid)?;
    repo::save_theme(w.tx, &theme)?;
    w.visible(json!({"theme": theme, "resolved": theme.resolve(None)}))
}
