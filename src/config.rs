//! Configuration, layered: built-in defaults ← `config/vitrina.toml` (or `--config`) ←
//! `VITRINA_*` environment variables (nested keys with `__`, e.g.
//! `VITRINA_ACTORS__IDLE_TIMEOUT_SECS=30`) ← command-line flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address the HTTP server binds, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub listen: String,
    /// Root of every file this node writes (actor databases, node catalog, tokens).
    pub data_dir: PathBuf,
    /// Stores are served at `{store}.{base_domain}`; custom domains are mapped in the catalog.
    pub base_domain: String,
    /// Bearer token that administers every store and creates stores. When unset, one is
    /// generated at first start and kept in `{data_dir}/node/operator-token`.
    pub operator_token: Option<String>,
    pub actors: ActorSettings,
    pub shopper: ShopperSettings,
    pub http: HttpSettings,
    pub cache: CacheSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ActorSettings {
    /// Actor threads (arbiters); 0 means one per CPU core.
    pub arbiters: usize,
    /// An actor with no message for this long is passivated: file closed, memory freed.
    pub idle_timeout_secs: u64,
    /// How often the node looks for due alarms of passivated actors.
    pub alarm_poll_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ShopperSettings {
    /// A cart untouched this long is emptied by the shopper's alarm.
    pub cart_idle_ttl_secs: u64,
    /// Browsing history entries kept per shopper.
    pub history_limit: usize,
    /// Largest quantity of one product in a cart.
    pub max_quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest JSON or form body accepted on shopper and admin routes; larger gets 413.
    pub body_limit_bytes: usize,
    /// Actix worker threads; 0 means one per CPU core.
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// Time-to-live of a shopper's personalised HTML; 0 disables the cache (every page is
    /// rendered), which is how the render path is benchmarked (W1b).
    pub personal_html_ttl_secs: u64,
    /// Bytes of personalised HTML kept per node.
    pub personal_html_max_bytes: u64,
    /// Bytes of anonymous (first-visit) pages kept per node.
    pub anonymous_page_max_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./vitrina-data"),
            base_domain: "localhost".into(),
            operator_token: None,
            actors: ActorSettings::default(),
            shopper: ShopperSettings::default(),
            http: HttpSettings::default(),
            cache: CacheSettings::default(),
        }
    }
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings { arbiters: 0, idle_timeout_secs: 120, alarm_poll_ms: 1000 }
    }
}

impl Default for ShopperSettings {
    fn default() -> Self {
        ShopperSettings { cart_idle_ttl_secs: 7 * 24 * 3600, history_limit: 50, max_quantity: 99 }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { body_limit_bytes: 256 * 1024, workers: 0 }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            personal_html_ttl_secs: 60,
            personal_html_max_bytes: 256 * 1024 * 1024,
            anonymous_page_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Settings {
    /// Loads defaults ← file ← environment ← `overrides` (flags given on the command line).
    pub fn load(file: &Path, overrides: &figment::value::Dict) -> Result<Settings, figment::Error> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("VITRINA_").split("__"))
            .merge(Serialized::defaults(overrides.clone()))
            .extract()
    }

    pub fn arbiter_count(&self) -> usize {
        match self.actors.arbiters {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}
