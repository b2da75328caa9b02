//! The settings each library block declares (`actors/blocks/{type}.settings.json`): its fields
//! with their type, label, default and bounds. A draft's settings for a library block are
//! checked against them when saved (a refusal names the field's path), and the console builds
//! each block's form from them. A block given its own code takes any settings: its code reads
//! them, not the library's.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::is_safe_url;
use crate::ids::ProductId;

/// The declarations, embedded at build time, in the block library's order.
const DECLARED: &[(&str, &str)] = &[
    ("hero", include_str!("../../actors/blocks/hero.settings.json")),
    ("product-grid", include_str!("../../actors/blocks/product-grid.settings.json")),
    ("product-detail", include_str!("../../actors/blocks/product-detail.settings.json")),
    ("text", include_str!("../../actors/blocks/text.settings.json")),
    ("gallery", include_str!("../../actors/blocks/gallery.settings.json")),
    ("blog-list", include_str!("../../actors/blocks/blog-list.settings.json")),
    ("blog-post", include_str!("../../actors/blocks/blog-post.settings.json")),
    ("cart-summary", include_str!("../../actors/blocks/cart-summary.settings.json")),
    ("recently-viewed", include_str!("../../actors/blocks/recently-viewed.settings.json")),
    ("cart", include_str!("../../actors/blocks/cart.settings.json")),
    ("search-results", include_str!("../../actors/blocks/search-results.settings.json")),
    ("order-confirmation", include_str!("../../actors/blocks/order-confirmation.settings.json")),
];

/// Default and upper bound for text without a `maxLength` of its own.
const TEXT_MAX: usize = 2000;
const LIST_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Multiline,
    Number,
    Boolean,
    Colour,
    Select,
    Product,
    Products,
    Image,
    Url,
    /// A list of `{src, alt}` (image URL, text).
    Images,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub label: String,
    #[serde(default)]
    pub default: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockSettings {
    #[serde(rename = "type", default)]
    pub block_type: String,
    pub label: String,
    pub fields: Vec<Field>,
}

/// A refused setting: where (`config.images[1].src`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

static ALL: LazyLock<Vec<BlockSettings>> = LazyLock::new(|| {
    DECLARED
        .iter()
        .filter_map(|(ty, text)| match serde_json::from_str::<BlockSettings>(text) {
            Ok(s) => Some(BlockSettings { block_type: ty.to_string(), ..s }),
            Err(e) => {
                // Embedded files, checked by a unit test: this is a build that skipped it.
                tracing::error!(block = ty, error = %e, "a library block's settings declaration does not parse");
                None
            }
        })
        .collect()
});

/// Every library block's declaration.
pub fn all() -> &'static [BlockSettings] {
    &ALL
}

pub fn of(block_type: &str) -> Option<&'static BlockSettings> {
    ALL.iter().find(|s| s.block_type == block_type)
}

/// Checks `config` (the settings of a library block of `block_type`) against its declaration:
/// every key declared, every value of its field's type and within its bounds.
pub fn check(block_type: &str, config: &Value) -> Result<(), SettingError> {
    let Some(schema) = of(block_type) else { return Ok(()) };
    let err = |path: String, message: String| Err(SettingError { path, message });
    let Some(object) = config.as_object() else { return err("config".into(), "must be an object".into()) };
    for (key, value) in object {
        let path = format!("config.{key}");
        let Some(field) = schema.fields.iter().find(|f| &f.name == key) else {
            let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
            return err(path, format!("the {} block has no setting {key:?}; it has {known:?}", schema.block_type));
        };
        if value.is_null() {
            continue; // the block's default
        }
        check_value(field, value, &path)?;
    }
    Ok(())
}

fn text(value: &Value, max: usize) -> Result<&str, String> {
    let s = value.as_str().ok_or("must be text")?;
    if s.chars().count() > max {
        return Err(format!("is at most {max} characters"));
    }
    Ok(s)
}

fn url(value: &Value, what: &str) -> Result<(), String> {
    let s = text(value, 2048)?;
    if !s.is_empty() && !is_safe_url(s) {
        return Err(format!("{what} must be an https:, http:, data:image/ or / URL"));
    }
    Ok(())
}

fn single_line(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control()) {
        return Err("must be one line of text".into());
    }
    Ok(())
}

fn check_value(field: &Field, value: &Value, path: &str) -> Result<(), SettingError> {
    let at = |path: String| move |message: String| SettingError { path, message };
    let max_len = field.max_length.unwrap_or(TEXT_MAX);
    let here = at(path.to_string());
    match field.kind {
        // Text goes into pages as text (blocks escape it): markup in it shows as typed.
        FieldType::Text => text(value, max_len).and_then(single_line).map_err(here),
        FieldType::Multiline => text(value, max_len).map(|_| ()).map_err(here),
        FieldType::Number => number(field, value).map_err(here),
        FieldType::Boolean => value.as_bool().map(|_| ()).ok_or_else(|| here("must be true or false".into())),
        FieldType::Colour => colour(value).map_err(here),
        FieldType::Select => {
            let options = field.options.as_deref().unwrap_or_default();
            match value.as_str() {
                Some(s) if options.iter().any(|o| o == s) => Ok(()),
                _ => Err(here(format!("must be one of {options:?}"))),
            }
        }
        FieldType::Product => product(value).map_err(here),
        FieldType::Products => {
            for (i, item) in list(field, value).map_err(here)?.iter().enumerate() {
                product(item).map_err(at(format!("{path}[{i}]")))?;
            }
            Ok(())
        }
        FieldType::Image => url(value, "an image").map_err(here),
        FieldType::Url => url(value, "a link").map_err(here),
        FieldType::Images => {
            for (i, item) in list(field, value).map_err(here)?.iter().enumerate() {
                let Some(image) = item.as_object() else {
                    return Err(at(format!("{path}[{i}]"))("must be an object {src, alt}".into()));
                };
                image_item(image).map_err(|(key, m)| at(format!("{path}[{i}].{key}"))(m))?;
            }
            Ok(())
        }
    }
}

fn number(field: &Field, value: &Value) -> Result<(), String> {
    let n = value.as_f64().ok_or("must be a number")?;
    if field.integer && !(value.is_i64() || value.is_u64()) {
        return Err("must be a whole number".into());
    }
    if field.min.is_some_and(|min| n < min) || field.max.is_some_and(|max| n > max) {
        let bound = |b: Option<f64>| b.map_or("-".to_string(), |b| b.to_string());
        return Err(format!("must be between {} and {}", bound(field.min), bound(field.max)));
    }
    Ok(())
}

fn colour(value: &Value) -> Result<(), String> {
    let s = text(value, 7)?;
    let hex = s.strip_prefix('#').unwrap_or("");
    if s.is_empty() || ((hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())) {
        Ok(())
    } else {
        Err("must be a colour as #rgb or #rrggbb".into())
    }
}

fn list<'v>(field: &Field, value: &'v Value) -> Result<&'v Vec<Value>, String> {
    let items = value.as_array().ok_or("must be a list")?;
    let max = field.max_items.unwrap_or(LIST_MAX);
    if items.len() > max {
        return Err(format!("has at most {max} items"));
    }
    Ok(items)
}

fn product(value: &Value) -> Result<(), String> {
    let s = value.as_str().ok_or("must be a product id")?;
    ProductId::parse(s).map(|_| ()).map_err(|e| format!("is not a product id: {e}"))
}

fn image_item(image: &Map<String, Value>) -> Result<(), (String, String)> {
    for (key, value) in image {
        match key.as_str() {
            "src" => url(value, "an image").map_err(|m| (key.clone(), m))?,
            "alt" => text(value, 300).and_then(single_line).map_err(|m| (key.clone(), m))?,
            _ => return Err((key.clone(), "an image has only src and alt".into())),
        }
    }
    if image.get("src").and_then(Value::as_str).is_none_or(|s| s.is_empty()) {
        return Err(("src".into(), "an image needs its URL".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_library_block_declares_settings() {
        for ty in crate::store::model::BLOCK_TYPES.iter().filter(|t| **t != "custom") {
            assert!(of(ty).is_some(), "{ty} declares no settings (or its declaration does not parse)");
        }
        assert_eq!(all().len(), DECLARED.len());
        for s in all() {
            for f in &s.fields {
                if !f.default.is_null() {
                    check(&s.block_type, &json!({ &f.name: f.default.clone() }))
                        .unwrap_or_else(|e| panic!("{}: default {e}", s.block_type));
                }
            }
        }
    }

    #[test]
    fn settings_are_checked_with_their_path() {
        assert!(check("hero", &json!({"heading": "<b>Sale</b>", "align": "left", "background": "#fa0", "showCta": false})).is_ok());
        let e = check("hero", &json!({"image": "javascript:alert(1)"})).unwrap_err();
        assert_eq!(e.path, "config.image");
        assert_eq!(check("hero", &json!({"background": "red;}"})).unwrap_err().path, "config.background");
        assert_eq!(check("hero", &json!({"align": "right"})).unwrap_err().path, "config.align");
        assert_eq!(check("hero", &json!({"headline": "x"})).unwrap_err().path, "config.headline");
        assert_eq!(check("product-grid", &json!({"columns": 7})).unwrap_err().path, "config.columns");
        assert_eq!(check("product-grid", &json!({"limit": 2.5})).unwrap_err().path, "config.limit");
        assert_eq!(check("product-grid", &json!({"productIds": ["ok", "../x"]})).unwrap_err().path, "config.productIds[1]");
        let e = check("gallery", &json!({"images": [{"src": "/a.png"}, {"src": "javascript:x", "alt": "b"}]})).unwrap_err();
        assert_eq!(e.path, "config.images[1].src");
        assert!(check("custom", &json!({"anything": 1})).is_ok());
    }
}
