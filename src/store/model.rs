//! The store's domain types. Constructed only through validation, so code that holds one can
//! trust it: prices are integer minor units of a known currency, ids are safe, blocks have a type.
//!
//! Each type keeps its validation beside it, so the file is long; its tests are at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::block_limits::RenderLimits;
use crate::ids::{BlockId, ProductId, Slug};

/// An ISO 4217 code with the number of digits of its minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl Currency {
    pub fn parse(code: &str) -> Result<Currency, String> {
        let code = code.trim().to_ascii_uppercase();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code))
        } else {
            Err(format!("currency must be a three-letter ISO 4217 code, got {code:?}"))
        }
    }
    pub fn code(&self) -> &str {
        &self.0
    }
    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn exponent(&self) -> u32 {
        match self.0.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV" | "XAF"
            | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
    /// Parses a decimal amount ("49.9", "49.90", "49") into minor units, refusing extra precision.
    pub fn parse_amount(&self, text: &str) -> Result<i64, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not a non-negative amount in {}", self.0);
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let exp = self.exponent() as usize;
        if frac.len() > exp && frac[exp..].bytes().any(|b| b != b'0') {
            return Err(format!("{text:?} has more decimals than {} allows", self.0));
        }
        let mut frac_digits: String = frac.chars().take(exp).collect();
        while frac_digits.len() < exp {
            frac_digits.push('0');
        }
        let scale = 10i64.pow(exp as u32);
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = if frac_digits.is_empty() { 0 } else { frac_digits.parse().map_err(|_| bad())? };
        whole.checked_mul(scale).and_then(|w| w.checked_add(frac)).ok_or_else(bad)
    }
    /// Minor units → major units as a number, for blocks (display only; totals stay integers).
    pub fn to_major(&self, minor: i64) -> f64 {
        minor as f64 / 10f64.powi(self.exponent() as i32)
    }
    /// Minor units → plain decimal string ("49.00"), for JSON APIs.
    pub fn format_plain(&self, minor: i64) -> String {
        let exp = self.exponent();
        if exp == 0 {
            return minor.to_string();
        }
        let scale = 10i64.pow(exp);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs() as i64;
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = exp as usize)
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency("USD".into())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seo {
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analytics {
    /// Microsoft Clarity project id; the snippet is injected only when set and not declined.
    pub clarity_project_id: Option<String>,
}

impl Analytics {
    pub fn validate(&self) -> Result<(), String> {
        match &self.clarity_project_id {
            Some(id) if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Err("analytics.clarityProjectId must be 1-32 letters and digits".into())
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    pub name: String,
    pub tagline: String,
    pub currency: Currency,
    pub locale: String,
    pub seo: Seo,
    pub analytics: Analytics,
    pub limits: RenderLimits,
    pub durability: Durability,
}

/// When a write of this store's actors (its admin writes, its shoppers' carts and preferences)
/// is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the local commit (fsynced). The actor's file reaches object storage within
    /// `replication.snapshot_interval_ms` plus the upload time: that is what a lost node loses.
    #[default]
    Async,
    /// After the local commit and the upload of a snapshot containing it. If the upload fails
    /// the answer is 503 `replication_failed`, but the local commit stands.
    Sync,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Async => "async",
            Durability::Sync => "sync",
        }
    }

    /// Reads the stored value; anything unknown is treated as the stricter `sync`.
    pub fn from_stored(s: &str) -> Durability {
        match s {
            "async" => Durability::Async,
            _ => Durability::Sync,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            name: "New store".into(),
            tagline: String::new(),
            currency: Currency::default(),
            locale: "en-US".into(),
            seo: Seo::default(),
            analytics: Analytics::default(),
            limits: RenderLimits::default(),
            durability: Durability::default(),
        }
    }
}

/// A partial settings update; absent fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub tagline: Option<String>,
    pub currency: Option<String>,
    pub locale: Option<String>,
    pub seo: Option<Seo>,
    pub analytics: Option<Analytics>,
    pub limits: Option<RenderLimits>,
    pub durability: Option<Durability>,
}

impl SettingsPatch {
    pub fn apply(self, mut s: StoreSettings) -> Result<StoreSettings, String> {
        if let Some(name) = self.name {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 120 {
                return Err("name must be 1 to 120 characters".into());
            }
            s.name = name;
        }
        if let Some(t) = self.tagline {
            if t.chars().count() > 300 {
                return Err("tagline is at most 300 characters".into());
            }
            s.tagline = t;
        }
        if let Some(c) = self.currency {
            s.currency = Currency::parse(&c)?;
        }
        if let Some(l) = self.locale {
            let ok = (2..=35).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(format!("locale must be a BCP 47 tag like en-US, got {l:?}"));
            }
            s.locale = l;
        }
        if let Some(seo) = self.seo {
            s.seo = seo;
        }
        if let Some(a) = self.analytics {
            a.validate()?;
            s.analytics = a;
        }
        if let Some(limits) = self.limits {
            let ok = (1..=10_000).contains(&limits.block_cpu_ms)
                && (1..=30_000).contains(&limits.page_cpu_ms)
                && (8..=1024).contains(&limits.heap_mb)
                && (1..=16 * 1024).contains(&limits.output_kb);
            if !ok {
                return Err("limits out of range: blockCpuMs 1-10000, pageCpuMs 1-30000, heapMb 8-1024, outputKb 1-16384".into());
            }
            s.limits = limits;
        }
        if let Some(d) = self.durability {
            s.durability = d;
        }
        Ok(s)
    }
}

pub type Tokens = BTreeMap<String, String>;

/// Design tokens. Resolution order: region override → store → template default → global default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Theme {
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default)]
    pub tokens: Tokens,
    #[serde(default)]
    pub regions: BTreeMap<String, Tokens>,
}

fn default_template() -> String {
    "classic".into()
}

/// The defaults every store starts from.
pub const GLOBAL_TOKENS: &[(&str, &str)] = &[
    ("color-primary", "#1f2937"),
    ("color-background", "#ffffff"),
    ("color-text", "#111827"),
    ("color-muted", "#6b7280"),
    ("color-accent", "#2563eb"),
    ("font-body", "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"),
    ("font-heading", "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"),
    ("radius", "8px"),
    ("max-width", "1200px"),
];

/// Templates' defaults, layered over the global defaults.
pub fn template_tokens(template: &str) -> &'static [(&'static str, &'static str)] {
    match template {
        "classic" => &[("font-heading", "Georgia, 'Times New Roman', serif")],
        "bold" => &[("color-primary", "#111111"), ("color-accent", "#e11d48"), ("radius", "0px")],
        "soft" => &[("color-background", "#fdf8f3"), ("color-accent", "#b45309"), ("radius", "16px")],
        _ => &[],
    }
}

pub const TEMPLATES: &[&str] = &["classic", "bold", "soft", "plain"];

impl Theme {
    pub fn validate(&self) -> Result<(), String> {
        if !TEMPLATES.contains(&self.template.as_str()) {
            return Err(format!("unknown template {:?}; one of {TEMPLATES:?}", self.template));
        }
        let check = |tokens: &Tokens| -> Result<(), String> {
            for (k, v) in tokens {
                let key_ok = (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                // Values land inside a <style> block: refuse anything that could end it or
                // open a new rule.
                let value_ok = v.len() <= 200 && !v.contains(['<', '>', '{', '}', ';', '\\']) && !v.contains("/*");
                if !key_ok || !value_ok {
                    return Err(format!("invalid token {k:?}: {v:?}"));
                }
            }
            Ok(())
        };
        check(&self.tokens)?;
        for (region, tokens) in &self.regions {
            if region.is_empty() || region.len() > 16 || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("invalid region {region:?}"));
            }
            check(tokens)?;
        }
        Ok(())
    }

    /// The effective tokens for shoppers in `region` (if any).
    pub fn resolve(&self, region: Option<&str>) -> Tokens {
        let mut out: Tokens = GLOBAL_TOKENS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (k, v) in template_tokens(&self.template) {
            out.insert(k.to_string(), v.to_string());
        }
        out.extend(self.tokens.clone());
        if let Some(over) = region.and_then(|r| self.regions.get(r)) {
            out.extend(over.clone());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: ProductId,
    pub handle: Slug,
    pub title: String,
    pub description: String,
    pub price_minor: i64,
    pub compare_at_minor: Option<i64>,
    pub images: Vec<String>,
    pub stock: i64,
    pub tags: Vec<String>,
    pub position: i64,
    pub updated_at: i64,
}

/// A product as the admin API and the demo seed send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInput {
    pub id: Option<String>,
    pub handle: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Decimal major units as a string ("49.00") or number; or use `priceMinor`.
    pub price: Option<Value>,
    pub price_minor: Option<i64>,
    pub compare_at_price: Option<Value>,
    pub compare_at_price_minor: Option<i64>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub stock: i64,
    #[serde(default)]
    pub tags: Vec<String>,
    pub position: Option<i64>,
}

fn amount_from(value: &Value, currency: &Currency, field: &str) -> Result<i64, String> {
    match value {
        Value::String(s) => currency.parse_amount(s),
        Value::Number(n) => currency.parse_amount(&n.to_string()),
        _ => Err(format!("{field} must be a decimal string like \"49.00\"")),
    }
}

impl ProductInput {
    pub fn into_product(self, path_id: Option<&ProductId>, currency: &Currency, now: i64) -> Result<Product, String> {
        let id = match (path_id, self.id.as_deref()) {
            (Some(p), Some(b)) if p.as_str() != b => return Err("id in the body differs from the id in the path".into()),
            (Some(p), _) => p.clone(),
            (None, Some(b)) => ProductId::parse(b).map_err(|e| e.to_string())?,
            (None, None) => return Err("product id is required".into()),
        };
        let title = self.title.trim().to_string();
        if title.is_empty() || title.chars().count() > 300 {
            return Err("title must be 1 to 300 characters".into());
        }
        let handle_src = self.handle.unwrap_or_else(|| slugify(&title));
        let handle = Slug::parse(&handle_src).map_err(|e| e.to_string())?;
        let price_minor = match (self.price_minor, &self.price) {
            (Some(m), _) => m,
            (None, Some(v)) => amount_from(v, currency, "price")?,
            (None, None) => return Err("price (or priceMinor) is required".into()),
        };
        let compare_at_minor = match (self.compare_at_price_minor, &self.compare_at_price) {
            (Some(m), _) => Some(m),
            (None, Some(Value::Null)) | (None, None) => None,
            (None, Some(v)) => Some(amount_from(v, currency, "compareAtPrice")?),
        };
        if price_minor < 0 || compare_at_minor.is_some_and(|c| c < 0) {
            return Err("prices must not be negative".into());
        }
        if self.stock < 0 {
            return Err("stock must not be negative".into());
        }
        if self.description.len() > 20_000 || self.images.len() > 20 || self.tags.len() > 50 {
            return Err("description ≤ 20000 bytes, ≤ 20 images, ≤ 50 tags".into());
        }
        for url in &self.images {
            if !is_safe_url(url) {
                return Err(format!("image {:?} must be an https:, http:, data:image/ or / URL", truncate(url, 60)));
            }
        }
        Ok(Product {
            id,
            handle,
            title,
            description: self.description,
            price_minor,
            compare_at_minor,
            images: self.images,
            stock: self.stock,
            tags: self.tags.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect(),
            position: self.position.unwrap_or(0),
            updated_at: now,
        })
    }
}

/// URLs merchants may put in pages: no `javascript:` and friends.
pub fn is_safe_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    url.len() <= 512 * 1024
        && (lower.starts_with("https://")
            || lower.starts_with("http://")
            || lower.starts_with("data:image/")
            || (lower.starts_with('/') && !lower.starts_with("//")))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(|c| c.to_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    out.chars().take(64).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Desktop,
    Tablet,
    Mobile,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Tablet => "tablet",
            Device::Mobile => "mobile",
        }
    }
    /// Device class from a User-Agent: coarse on purpose, it only picks which blocks show.
    pub fn from_user_agent(ua: &str) -> Device {
        let ua = ua.to_ascii_lowercase();
        if ua.contains("ipad") || ua.contains("tablet") || (ua.contains("android") && !ua.contains("mobile")) {
            Device::Tablet
        } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("ipod") {
            Device::Mobile
        } else {
            Device::Desktop
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserType {
    Guest,
    Customer,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DateRange {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub start: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub end: Option<OffsetDateTime>,
}

/// Who sees a block. An absent rule does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Visibility {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_types: Option<Vec<UserType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_range: Option<DateRange>,
}

impl Visibility {
    pub fn allows(&self, device: Device, user: UserType, now: OffsetDateTime) -> bool {
        self.devices.as_ref().is_none_or(|d| d.contains(&device))
            && self.user_types.as_ref().is_none_or(|u| u.contains(&user))
            && self.date_range.as_ref().is_none_or(|r| r.start.is_none_or(|s| now >= s) && r.end.is_none_or(|e| now <= e))
    }
}

pub const BLOCK_TYPES: &[&str] = &[
    "hero",
    "product-grid",
    "product-detail",
    "text",
    "gallery",
    "blog-list",
    "blog-post",
    "cart-summary",
    "recently-viewed",
    "cart",
    "search-results",
    "order-confirmation",
    "custom",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub id: BlockId,
    #[serde(rename = "type")]
    pub block_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub code_version: u64,
    pub config: Value,
    #[serde(default)]
    pub visibility: Visibility,
}

/// A block as sent to the admin API (new or edited draft).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockInput {
    #[serde(rename = "type")]
    pub block_type: Option<String>,
    /// `null` clears custom code (the library block of `type` renders instead).
    #[serde(default, deserialize_with = "double_option")]
    pub code: Option<Option<String>>,
    pub config: Option<Value>,
    pub visibility: Option<Visibility>,
    pub position: Option<usize>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub const MAX_BLOCK_CODE_BYTES: usize = 64 * 1024;

impl BlockInput {
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = &self.block_type {
            if !BLOCK_TYPES.contains(&t.as_str()) {
                return Err(format!("unknown block type {t:?}; one of {BLOCK_TYPES:?}"));
            }
        }
        if let Some(Some(code)) = &self.code {
            if code.len() > MAX_BLOCK_CODE_BYTES {
                return Err(format!("block code is at most {MAX_BLOCK_CODE_BYTES} bytes"));
            }
        }
        if let Some(c) = &self.config {
            if !c.is_object() {
                return Err("config must be a JSON object".into());
            }
            if c.to_string().len() > 64 * 1024 {
                return Err("config is at most 64 KiB".into());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageVersion {
    pub slug: Slug,
    pub version: i64,
    pub title: String,
    pub description: String,
    pub blocks: Vec<Block>,
    pub published_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    pub slug: Slug,
    pub title: String,
    pub excerpt: String,
    pub body: String,
    pub author: String,
    pub image: Option<String>,
    pub published_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostInput {
    pub title: String,
    #[serde(default)]
    pub excerpt: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub author: String,
    pub image: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
}

impl PostInput {
    pub fn into_post(self, slug: Slug, now_ms: i64) -> Result<Post, String> {
        if self.title.trim().is_empty() || self.title.chars().count() > 300 {
            return Err("title must be 1 to 300 characters".into());
        }
        if self.body.len() > 200_000 {
            return Err("body is at most 200000 bytes".into());
        }
        if let Some(img) = &self.image {
            if !is_safe_url(img) {
                return Err("image must be an https:, http:, data:image/ or / URL".into());
            }
        }
        Ok(Post {
            slug,
            title: self.title.trim().to_string(),
            excerpt: self.excerpt,
            body: self.body,
            author: self.author,
            image: self.image,
            published_at: self.published_at.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).unwrap_or(now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_minor_units() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(usd.parse_amount("49.9"), Ok(4990));
        assert_eq!(usd.parse_amount("49"), Ok(4900));
        assert_eq!(usd.parse_amount("0.010"), Ok(1));
        assert!(usd.parse_amount("0.001").is_err());
        assert!(usd.parse_amount("-1").is_err());
        assert!(usd.parse_amount("1e3").is_err());
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.parse_amount("1200"), Ok(1200));
        assert_eq!(usd.format_plain(4990), "49.90");
    }

    #[test]
    fn theme_tokens_resolve_by_precedence() {
        let mut theme = Theme { template: "bold".into(), ..Default::default() };
        theme.tokens.insert("radius".into(), "4px".into());
        theme.regions.insert("EU".into(), [("radius".to_string(), "2px".to_string())].into());
        assert_eq!(theme.resolve(None)["radius"], "4px");
        assert_eq!(theme.resolve(Some("EU"))["radius"], "2px");
        assert_eq!(theme.resolve(None)["color-accent"], "#e11d48");
        assert_eq!(theme.resolve(None)["max-width"], "1200px");
    }

    #[test]
    fn devices_from_user_agents() {
        assert_eq!(Device::from_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"), Device::Mobile);
        assert_eq!(Device::from_user_agent("Mozilla/5.0 (iPad; CPU OS 17_0)"), Device::Tablet);
        assert_eq!(Device::from_user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/120"), Device::Desktop);
    }
}
