//! Entry points for the fuzzers (`fuzz/`) and for the replay of their corpora
//! (`tests/it/fuzz_corpus.rs`): each takes arbitrary bytes from a hostile client and must neither
//! panic nor hang, and checks the properties that must hold for every input it accepts.
//!
//! They live in the library, not in `fuzz/`, so that `cargo test` replays the committed corpora
//! on the stable toolchain, without libFuzzer.

use crate::feed::signature::{self, WebhookSecret};
use crate::ids;

/// One fuzz target: arbitrary bytes in, a panic on a broken property.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/*.rs` and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("host_header", host_header),
    ("ids", id_parsing),
    ("cookie_header", cookie_header),
    ("webhook_signature", webhook_signature),
    ("webhook_payload", webhook_payload),
    ("admin_json", admin_json),
    ("block_validation", block_validation),
];

/// A `Host` header: normalised to a lower-case name without port or trailing dot, idempotently.
pub fn host_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let once = crate::catalog::normalise_host(text);
    assert_eq!(crate::catalog::normalise_host(&once), once, "normalising twice changed {text:?}");
    assert!(!once.bytes().any(|b| b.is_ascii_uppercase()), "upper case left in {once:?}");
    // A host a store may claim is a DNS name, never an address in any spelling.
    if crate::catalog::host_policy::check_shared(&once, "localhost").is_ok() {
        assert!(!crate::catalog::host_policy::is_ip_literal(&once), "IP literal {once:?} passed the host policy");
        assert!(once.parse::<std::net::IpAddr>().is_err(), "address {once:?} passed the host policy");
    }
}

/// Path segments and cookie values parsed into ids: whatever is accepted is safe in a file path.
pub fn id_parsing(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let accepted = [
        ids::StoreId::parse(text).map(|v| v.to_string()),
        ids::SessionId::parse(text).map(|v| v.to_string()),
        ids::ProductId::parse(text).map(|v| v.to_string()),
        ids::Slug::parse(text).map(|v| v.to_string()),
        ids::BlockId::parse(text).map(|v| v.to_string()),
    ];
    for id in accepted.into_iter().flatten() {
        assert!(!id.is_empty() && id.len() <= 64, "accepted id of length {}", id.len());
        assert!(!id.contains(['/', '\\', '.', '\0']), "accepted id {id:?} could leave its directory");
    }
    if let Some(key) = ids::ActorKey::parse(text) {
        assert_eq!(ids::ActorKey::parse(&key.to_string()), Some(key.clone()), "actor key does not round-trip: {text:?}");
    }
}

/// A `Cookie` header as a browser (or an attacker) sends it: every cookie is split out and the
/// session cookie, if any, is parsed as the edge does.
pub fn cookie_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // As actix reads the header: `;`-separated pairs, each parsed on its own.
    for cookie in text.split(';').filter_map(|pair| actix_web::cookie::Cookie::parse(pair.trim()).ok()) {
        if cookie.name() == crate::http::tenant::SESSION_COOKIE {
            // The edge verifies the token (`http::session`); what it accepts names a safe id.
            if let Some(token) = crate::http::session::SessionToken::decode(cookie.value()) {
                assert!(cookie.value().starts_with(&format!("{}.", token.sid.as_str())));
                assert!(ids::SessionId::parse(token.sid.as_str()).is_ok());
            }
        }
    }
}

/// Webhook signature headers: a forged header never verifies. Input: first byte picks the format,
/// then the header up to the first newline, then the body.
pub fn webhook_signature(data: &[u8]) {
    let Some((&format, rest)) = data.split_first() else { return };
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (header, body) = rest.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let Ok(header) = std::str::from_utf8(header) else { return };
    let Ok(secret) = WebhookSecret::parse("fuzzing-secret-0123456789") else { return };
    let now = 1_700_000_000;
    let verified = if format % 2 == 0 {
        signature::verify_shopify(&secret, body, Some(header)).is_ok()
    } else {
        signature::verify_generic(&secret, body, Some(header), now).is_ok()
    };
    if verified {
        // Only a header made with the secret can verify: the fuzzer cannot produce one by chance,
        // so a verified input means the check accepts something it should not.
        let genuine = if format % 2 == 0 {
            header.trim() == signature::sign_shopify(&secret, body)
        } else {
            header.split(',').any(|part| part.trim().starts_with("v1=")) && header.contains("t=")
        };
        assert!(genuine, "forged signature header verified: {header:?}");
    }
}

/// Webhook payloads (generic and every Shopify topic) parsed into catalog changes.
pub fn webhook_payload(data: &[u8]) {
    let _ = crate::feed::generic::parse(data);
    for topic in ["products/create", "products/update", "products/delete", "inventory_levels/update"] {
        if let Some(topic) = crate::feed::shopify::Topic::parse(topic) {
            let _ = crate::feed::shopify::change_from_webhook(topic, data, 0);
        }
    }
}

/// Admin API bodies: every document the admin API deserialises, then validates.
pub fn admin_json(data: &[u8]) {
    use crate::store::model::{BlockInput, PostInput, ProductInput, SettingsPatch, StoreSettings, Theme};
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(patch) = serde_json::from_value::<SettingsPatch>(value.clone()) {
        let _ = patch.apply(StoreSettings::default());
    }
    if let Ok(theme) = serde_json::from_value::<Theme>(value.clone()) {
        let _ = theme.validate();
    }
    if let Ok(product) = serde_json::from_value::<ProductInput>(value.clone()) {
        if let Ok(currency) = crate::store::model::Currency::parse("JPY") {
            let _ = product.clone().into_product(None, &currency, 0);
        }
        if let Ok(currency) = crate::store::model::Currency::parse("USD") {
            let _ = product.into_product(None, &currency, 0);
        }
    }
    if let Ok(block) = serde_json::from_value::<BlockInput>(value.clone()) {
        let _ = block.check();
        // A library block's settings against what it declares.
        if let (Some(ty), Some(config)) = (&block.block_type, &block.config) {
            let _ = crate::store::block_settings::check(ty, config);
        }
    }
    if let Ok(post) = serde_json::from_value::<PostInput>(value) {
        if let Ok(slug) = ids::Slug::parse("post") {
            let _ = post.into_post(slug, 0);
        }
    }
}

/// Merchant block code through the publish-time validator.
pub fn block_validation(data: &[u8]) {
    let Ok(code) = std::str::from_utf8(data) else { return };
    let (validation, function) = crate::engine::validate::analyse_block(code);
    if let Some(function) = function {
        assert!(validation.is_ok(), "a function was extracted from code that failed validation");
        assert!(code.get(function.span.clone()).is_some(), "function span {:?} is not inside the code", function.span);
    }
}
