//! Configuration, layered: built-in defaults ← `config/vitrina.toml` (or `--config`) ←
//! `VITRINA_*` environment variables (nested keys with `__`, e.g.
//! `VITRINA_ACTORS__IDLE_TIMEOUT_SECS=30`) ← command-line flags.
//!
//! Every setting and its default live in this one file on purpose (defaults in one place), which
//! is why it is longer than the rest.

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
    pub cluster: ClusterSettings,
    pub feed: FeedSettings,
    pub replication: ReplicationSettings,
    pub egress: EgressSettings,
    pub domains: DomainSettings,
    pub limits: LimitSettings,
    pub render: RenderSettings,
    pub store_limits: StoreLimitSettings,
    pub secrets: SecretsSettings,
    pub telemetry: TelemetrySettings,
    pub live: LiveSettings,
    pub stats: StatsSettings,
    /// V8 flags applied after the engine's own (`engine::js::DEFAULT_V8_FLAGS`), which they can
    /// undo, e.g. `--maglev --turbofan`; read once, at startup. `VITRINA_V8_FLAGS` sets it.
    pub v8_flags: String,
}

/// Where renders run and what one store may take of them. Block code is the merchant's; these
/// bounds are the operator's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RenderSettings {
    /// Where blocks run: `process` (default), in one worker process per render thread, killed
    /// and replaced when a block runs far past its budget (a builtin that ignores termination)
    /// or V8 fails; `thread`, in the node's own render threads (no process boundary; a block
    /// stuck in such a builtin holds its thread until it ends).
    pub isolation: RenderIsolation,
    /// CPU a block or page may use past twice its budget before its worker process is killed
    /// (`process` isolation): room for V8's helper threads, which count on the worker's clock.
    pub worker_kill_grace_ms: u64,
    /// Render threads, apart from the actor threads: a block never runs on a thread that runs
    /// actor turns (cart writes). 0: one per core.
    pub threads: usize,
    /// Scheduling niceness of the render threads (0-19; HTTP and actor threads run at 0): above
    /// 0, when the cores are busy, render CPU of any store yields to cart writes and requests,
    /// also while a block runs inside a builtin that ignores termination. Off by default: it
    /// costs renders throughput when anything else competes for the cores
    /// (`docs/decisions/render-priority.md`).
    pub nice: i32,
    /// Niceness of a render thread while it is stuck (one job past twice `max_page_cpu_ms`: a
    /// block inside a builtin that ignores termination), given back when the job ends; not above
    /// `nice`: off. Needs `CAP_SYS_NICE` or `RLIMIT_NICE` to give it back; without, it stays off.
    pub stuck_nice: i32,
    /// Operator maxima of the limits a store may set (`settings.limits`): a PATCH above one is
    /// refused (422 `limit_above_maximum`), and a stored value above one is clamped at render.
    pub max_block_cpu_ms: u64,
    pub max_page_cpu_ms: u64,
    pub max_heap_mb: usize,
    pub max_output_kb: usize,
    /// Renders of one store in flight at once on this node; past it that store gets 503
    /// `render_capacity`. 0: half the render threads, at least 1.
    pub store_max_concurrent: usize,
    /// Render CPU one store may use per second on this node (a token bucket refilled at this
    /// rate); a store in debt gets 503 `render_capacity` with Retry-After. 0: no bound.
    pub store_cpu_ms_per_sec: u64,
    /// Size of that bucket: the CPU a quiet store may spend at once. A render starts only once
    /// the bucket holds what the store's last render cost (at most the whole bucket).
    pub store_cpu_burst_ms: u64,
    /// How long a page whose blocks hit a CPU or heap limit is served as it rendered (with
    /// placeholders) instead of running the same blocks on the same inputs again. 0: off.
    pub failed_page_ttl_secs: u64,
    /// Recent block failures kept per store for `GET …/block-failures`.
    pub failures_kept_per_store: usize,
    /// Stores named in the `store` label of `vitrina_block_failures_total`; failures of any
    /// further store count under `store="other"` (bounded label cardinality).
    pub failure_metric_stores: usize,
}

/// Where blocks run (`render.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenderIsolation {
    #[default]
    Process,
    Thread,
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            isolation: RenderIsolation::Process,
            worker_kill_grace_ms: 100,
            threads: 0,
            nice: 0,
            stuck_nice: 19,
            max_block_cpu_ms: 200,
            max_page_cpu_ms: 1000,
            max_heap_mb: 128,
            max_output_kb: 1024,
            store_max_concurrent: 0,
            store_cpu_ms_per_sec: 500,
            store_cpu_burst_ms: 500,
            failed_page_ttl_secs: 10,
            failures_kept_per_store: 50,
            failure_metric_stores: 50,
        }
    }
}

impl RenderSettings {
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }

    /// How long a render thread may run one job before it counts as stuck (`render::threads`):
    /// twice the longest page an operator allows, at least a second.
    pub fn stuck_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.max_page_cpu_ms.saturating_mul(2).max(1000))
    }

    pub fn store_concurrency(&self) -> usize {
        match self.store_max_concurrent {
            0 => (self.thread_count() / 2).max(1),
            n => n,
        }
    }

    /// The store's own limits, each capped by the operator's maximum.
    pub fn clamp(&self, limits: &crate::block_limits::RenderLimits) -> crate::block_limits::RenderLimits {
        crate::block_limits::RenderLimits {
            block_cpu_ms: limits.block_cpu_ms.min(self.max_block_cpu_ms),
            page_cpu_ms: limits.page_cpu_ms.min(self.max_page_cpu_ms),
            heap_mb: limits.heap_mb.min(self.max_heap_mb),
            output_kb: limits.output_kb.min(self.max_output_kb),
        }
    }

    /// The maxima as the API shows them (camelCase, like `settings.limits`).
    pub fn maxima(&self) -> crate::block_limits::RenderLimits {
        crate::block_limits::RenderLimits {
            block_cpu_ms: self.max_block_cpu_ms,
            page_cpu_ms: self.max_page_cpu_ms,
            heap_mb: self.max_heap_mb,
            output_kb: self.max_output_kb,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// Off: a single node that owns every actor. On: a node of a cluster, which needs
    /// `etcd.endpoints` (a node refuses to start with one and not the other).
    pub enabled: bool,
    /// This node's id; defaults to one generated once into `{data_dir}/node/node-id` (never
    /// the address: it is sent to clients in `x-vitrina-node`).
    pub node_id: Option<String>,
    /// `host:port` other nodes reach this node at; defaults to the listen address.
    pub advertise: Option<String>,
    /// Addresses of running nodes to copy the catalog from before joining (`vitrina serve
    /// --join`); the members etcd lists are asked too.
    pub seeds: Vec<String>,
    /// Shared secret authenticating calls between nodes. Required when enabled.
    pub secret: Option<String>,
    /// Virtual nodes per member on the ring (see loadtest/RESULTS.md, "Ring balance").
    pub vnodes: usize,
    /// Shards actor keys are hashed into; each shard has one owner at a time. Every node of a
    /// cluster must use the same number.
    pub shards: u32,
    /// Membership and ownership in etcd (`src/coordination/`): required by a cluster.
    pub etcd: EtcdSettings,
}

/// Where and how a clustered node coordinates through etcd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdSettings {
    /// Client URLs of the etcd members (`http://host:2379` or `host:2379`); empty: a single node.
    /// `VITRINA_CLUSTER__ETCD__ENDPOINTS=10.0.0.1:2379,10.0.0.2:2379` works too.
    #[serde(deserialize_with = "string_list")]
    pub endpoints: Vec<String>,
    /// Every key of this cluster lives under it, so clusters can share an etcd.
    pub prefix: String,
    /// The node's lease: it stops acknowledging writes once it could not renew it for this
    /// long minus `lease_margin_ms`, and others may take its shards after this long.
    pub lease_ttl_secs: u64,
    /// How long before the lease could expire the node stops acting as an owner (clock drift,
    /// a renewal in flight).
    pub lease_margin_ms: u64,
    /// Bound on one call to one etcd endpoint before the next is tried.
    pub request_timeout_ms: u64,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        EtcdSettings {
            endpoints: Vec::new(),
            prefix: "/vitrina".into(),
            lease_ttl_secs: 5,
            lease_margin_ms: 1000,
            request_timeout_ms: 1000,
        }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            enabled: false,
            node_id: None,
            advertise: None,
            seeds: Vec::new(),
            secret: None,
            vnodes: 128,
            shards: 256,
            etcd: EtcdSettings::default(),
        }
    }
}

/// How much one store may keep. A write that would pass a limit is refused whole (422 on the
/// admin API and sync, 413 on webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreLimitSettings {
    /// Products (not deleted) one store may hold.
    pub max_products_per_store: usize,
    /// Bytes of a store's published snapshot as blocks see it (storefront and products JSON).
    pub max_snapshot_bytes: usize,
}

impl Default for StoreLimitSettings {
    fn default() -> Self {
        StoreLimitSettings { max_products_per_store: 5_000, max_snapshot_bytes: 8 * 1024 * 1024 }
    }
}

/// Outbound HTTP to merchant-configured URLs (catalog sync, order delivery, domain checks):
/// see `src/egress/`. Replication and cluster traffic go to operator-configured addresses and
/// do not pass through it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EgressSettings {
    /// CIDR ranges that may be reached although they are loopback, private, link-local, ...
    /// (e.g. `["127.0.0.0/8"]` for an upstream on this machine). Addresses in them may use any
    /// port. `VITRINA_EGRESS__ALLOW=127.0.0.0/8,10.0.0.0/8` works too.
    #[serde(deserialize_with = "string_list")]
    pub allow: Vec<String>,
    /// Ports merchant URLs may use on other addresses; empty: any port. A name counts as
    /// "other" unless pinned in `resolve` (ports are checked before DNS, on every hop).
    #[serde(deserialize_with = "port_list")]
    pub ports: Vec<u16>,
    /// Names resolved without DNS, `"name=address"` (still subject to the ranges above).
    #[serde(deserialize_with = "string_list")]
    pub resolve: Vec<String>,
    /// Redirects followed per request, each re-checked; more fails the request.
    pub max_redirects: usize,
    pub connect_timeout_ms: u64,
    /// Deadline of a whole request (connect, redirects, body) when its caller sets none shorter.
    pub total_timeout_ms: u64,
    /// Largest response body read; a larger one is cut off and the request fails.
    pub max_response_bytes: u64,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            allow: Vec::new(),
            ports: vec![80, 443, 8080, 8443],
            resolve: Vec::new(),
            max_redirects: 3,
            connect_timeout_ms: 5_000,
            total_timeout_ms: 30_000,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Custom domains of stores: how ownership is verified before one serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainSettings {
    /// Port of `http://{domain}/.well-known/vitrina-verification/{token}` (80 but in tests).
    pub verify_port: u16,
    /// Deadline of one verification fetch or DNS query.
    pub verify_timeout_ms: u64,
    /// Resolvers asked for `_vitrina-verification.{domain}` TXT records (`"ip"` or
    /// `"ip:port"`); empty: the system's (`/etc/resolv.conf`).
    #[serde(deserialize_with = "string_list")]
    pub dns_servers: Vec<String>,
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings { verify_port: 80, verify_timeout_ms: 5_000, dns_servers: Vec::new() }
    }
}

/// A list given as a TOML array or, from the environment, as one comma-separated string.
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        Raw::Many(v) => v,
    })
}

fn port_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Port(u16),
        Text(String),
        Many(Vec<u16>),
    }
    match Raw::deserialize(d)? {
        Raw::Port(p) => Ok(vec![p]),
        Raw::Many(v) => Ok(v),
        Raw::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| p.parse().map_err(|_| serde::de::Error::custom(format!("{p:?} is not a port"))))
            .collect(),
    }
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `text` (human-readable) or `json` (one object per line, with the request's span fields:
    /// its request id and trace id). `vitrina serve --log-format json` sets it.
    pub log_format: LogFormat,
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP endpoint (`http://host:4318`); spans
    /// go to `{endpoint}/v1/traces` as OTLP JSON. Empty: no traces are exported.
    pub otlp_endpoint: String,
    /// The `service.name` of this node's spans.
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings { log_format: LogFormat::Text, otlp_endpoint: String::new(), service_name: "vitrina".into() }
    }
}

/// Live updates: the WebSocket an open page holds at `GET /live` (`http/live.rs`), and how
/// events reach the node that holds it (`runtime/events.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    /// Off: `/live` answers 404 and pages do not connect.
    pub enabled: bool,
    /// Open sockets on this node; past it a new one is refused (503).
    pub max_sockets: usize,
    /// Open sockets per client IP on this node; past it 429.
    pub max_sockets_per_ip: usize,
    /// Open sockets per shopper session on this node (its tabs); past it 429.
    pub max_sockets_per_session: usize,
    /// Events waiting to be written to one socket; a client that falls this far behind is
    /// disconnected (it reconnects and reloads what it shows).
    pub send_queue: usize,
    /// The server pings every socket this often.
    pub ping_secs: u64,
    /// A socket that answered nothing (no pong, no message) for this long is closed.
    pub idle_timeout_secs: u64,
    /// How long a node's interest in a key lasts at the key's owner (cluster); renewed every third.
    pub interest_ttl_secs: u64,
}

/// Each store's daily visitors, orders and revenue (`store::day_stats`): counted in memory where
/// they happen and handed to the store actor in batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsSettings {
    /// Counts are handed to their store actors this often (the admin API lags by at most this).
    pub flush_ms: u64,
    /// Sessions remembered per store and day to count each visitor once; past it, a session not
    /// remembered counts again on each page it views.
    pub max_visitors_remembered: usize,
    /// Days of counts a store keeps.
    pub days_kept: u32,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings { flush_ms: 5_000, max_visitors_remembered: 100_000, days_kept: 400 }
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            enabled: true,
            max_sockets: 20_000,
            max_sockets_per_ip: 64,
            max_sockets_per_session: 16,
            send_queue: 32,
            ping_secs: 30,
            idle_timeout_secs: 75,
            interest_ttl_secs: 30,
        }
    }
}

/// The key that encrypts secrets kept in actor files (webhook secrets), see `src/secrets.rs`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretsSettings {
    /// 32 bytes, base64. Unset: derived from `cluster.secret` when clustered (every node then
    /// has the same key, as a store's file moves between nodes), else generated once into
    /// `{data_dir}/node/secret-key`. Set it when replication is on: a node that lost its disk
    /// lost its key file too, and the restored stores' secrets could not be read.
    pub key: Option<String>,
}

/// Written by hand so the key never reaches a log line.
impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsSettings").field("key", &self.key.as_ref().map(|_| "<redacted>")).finish()
    }
}

/// Upstream catalog sync and order delivery: timeouts, retries, the circuit breaker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedSettings {
    /// Timeout of one HTTP request to an upstream or a commerce backend.
    pub request_timeout_ms: u64,
    /// Retries of one upstream page (exponential backoff with jitter) before the run fails.
    pub retries: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Consecutive failed sync runs that open the circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit skips scheduled runs before one trial run (half-open).
    pub breaker_cooldown_secs: u64,
    /// Products per upstream page (`?page=N&limit=…`).
    pub page_limit: u32,
    /// First retry delay of an undelivered order; doubles per attempt up to `order_retry_max_ms`.
    pub order_retry_base_ms: u64,
    pub order_retry_max_ms: u64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            request_timeout_ms: 10_000,
            retries: 3,
            backoff_base_ms: 250,
            breaker_threshold: 3,
            breaker_cooldown_secs: 300,
            page_limit: 250,
            order_retry_base_ms: 1_000,
            order_retry_max_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ActorSettings {
    /// Actor threads (arbiters); 0 means one per CPU core.
    pub arbiters: usize,
    /// An actor with no message for this long is passivated: file closed, memory freed.
    pub idle_timeout_secs: u64,
    /// An actor with no message for this long drops its V8 isolate but keeps its state; a
    /// shopper also closes its SQLite file until its next write.
    pub isolate_idle_secs: u64,
    /// How often the node looks for due alarms of passivated actors.
    pub alarm_poll_ms: u64,
    /// Shopper files open at once; past it the oldest-opened idle ones are closed (their actors
    /// keep their state). 0: a third of the process's open-file limit, less a reserve, at most
    /// 1,024 (SQLite's cost to open a file grows with the files open).
    pub max_open_files: usize,
    /// V8 isolates live at once on the node; past it the least recently rendered actors drop
    /// theirs (keeping their state). 0: half of physical memory at 6 MiB per isolate.
    pub max_live_isolates: usize,
    /// Bytes (MiB) the live isolates may hold together, as measured (heap, V8's malloc'd
    /// memory, ArrayBuffers); past it the least recently rendered actors drop theirs. 0: half
    /// of physical memory.
    pub isolate_memory_mb: usize,
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
    /// Shopper files one store may have on this node; past it a new shopper's first write is
    /// refused (507 `shopper_limit_reached`) and existing shoppers keep working. 0: no limit.
    pub max_per_store: usize,
    /// A shopper file without a commit for this long (and without an undelivered order) is
    /// deleted by the sweeper, with its WAL and its copy in object storage. 0: never.
    pub idle_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest JSON or form body accepted on shopper and admin routes; larger gets 413.
    pub body_limit_bytes: usize,
    /// Actix worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Key that signs session ids (any string; keep it secret). Unset: derived from
    /// `cluster.secret` in a cluster (every node must verify every node's sessions), else
    /// generated once into `{data_dir}/node/session-key`.
    pub session_key: Option<String>,
    /// `Secure` on cookies: `auto` (when a trusted proxy says `X-Forwarded-Proto: https`),
    /// `always` (a TLS-terminating proxy in front of every request) or `never`.
    pub secure_cookies: SecureCookies,
    /// Proxies (IPs or CIDRs) whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed;
    /// from anyone else they are ignored and the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// How long a merchant console login lasts (the `vitrina_console` cookie, `/admin/`).
    pub console_session_secs: u64,
    /// Audit log entries kept per store (newest first); older ones are dropped on insert.
    pub audit_entries_kept: u32,
    /// On SIGTERM/SIGINT the node stops within this long: in a cluster it first hands its
    /// actors to the other nodes and gives its shards up, then it stops accepting, lets
    /// requests in flight finish, closes every actor's file and exits 0.
    pub shutdown_deadline_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookies {
    Auto,
    Always,
    Never,
}

/// Rate limits at the edge (`src/http/limits.rs`). Rates are per second unless named otherwise;
/// a burst is how many requests may come at once before the rate applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Off: no request is ever refused with 429 (benchmarks of one client machine).
    pub enabled: bool,
    /// New sessions per client IP per minute. Past it, a read is served without a session
    /// and a write without a session gets 429.
    pub sessions_per_minute_per_ip: u32,
    pub sessions_burst_per_ip: u32,
    /// Shopper writes (cart, preferences, consent, checkout) per client IP.
    pub writes_per_sec_per_ip: u32,
    pub writes_burst_per_ip: u32,
    /// Shopper writes per session.
    pub writes_per_sec_per_session: u32,
    pub writes_burst_per_session: u32,
    /// Admin API requests per bearer token.
    pub admin_per_sec_per_token: u32,
    pub admin_burst_per_token: u32,
    /// Failed authentications (admin API, `/metrics`, `/cluster/status`) a client IP may make
    /// before it is locked out; every further failure doubles the lockout, from
    /// `lockout_base_secs` up to `lockout_max_secs`. A locked IP is refused even the right token.
    pub auth_failures_before_lockout: u32,
    pub lockout_base_secs: u64,
    pub lockout_max_secs: u64,
    /// Failed staff logins (and own-password checks) for one name of one store, from all IPs
    /// together, before that name is locked out (its right password refused too; other names
    /// log in); every further failure doubles the lockout, from `name_lockout_base_secs` up to
    /// `name_lockout_max_secs`. Counted by the store's owner node.
    pub login_failures_per_name_before_lockout: u32,
    pub name_lockout_base_secs: u64,
    pub name_lockout_max_secs: u64,
    /// Webhook deliveries per source (client IP and the store it names).
    pub webhooks_per_sec_per_source: u32,
    pub webhooks_burst_per_source: u32,
    /// Clients tracked per limiter: swept every 10 s (clients back to a full allowance are
    /// dropped); a limiter still holding more starts over empty (fails open, never closed).
    pub max_tracked_keys: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            enabled: true,
            sessions_per_minute_per_ip: 120,
            sessions_burst_per_ip: 60,
            writes_per_sec_per_ip: 50,
            writes_burst_per_ip: 200,
            writes_per_sec_per_session: 10,
            writes_burst_per_session: 40,
            admin_per_sec_per_token: 100,
            admin_burst_per_token: 400,
            auth_failures_before_lockout: 10,
            lockout_base_secs: 1,
            lockout_max_secs: 900,
            login_failures_per_name_before_lockout: 20,
            name_lockout_base_secs: 30,
            name_lockout_max_secs: 3600,
            webhooks_per_sec_per_source: 50,
            webhooks_burst_per_source: 200,
            max_tracked_keys: 100_000,
        }
    }
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
    /// How long a shared cache (a CDN) may keep a store's anonymous page (`s-maxage`). Above 0,
    /// a visit without a session gets the page without a session cookie (the session starts
    /// with the first write), so the page is the same for every such visitor and cacheable.
    /// 0 (the default): anonymous pages are `private, no-store` and a first visit gets a
    /// session cookie, which is what records a new visitor's views before its first write.
    pub public_page_secs: u64,
    /// How long past `public_page_secs` a shared cache may serve a page while it refetches it.
    pub stale_while_revalidate_secs: u64,
    /// Attempts at one CDN purge (a store's purge URL, see `src/cdn.rs`) before it is given up.
    pub purge_attempts: u32,
    /// Wait before the second attempt of a purge; doubled before each further one.
    pub purge_backoff_ms: u64,
}

/// Copies of actor files in S3-compatible object storage (see `src/replication.rs`). Disabled
/// while `endpoint` is unset: a single node then relies on its own disk alone.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationSettings {
    /// Base URL of the object store, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://127.0.0.1:9000`; unset or empty disables replication.
    pub endpoint: Option<String>,
    /// Bucket holding the copies; it must exist.
    pub bucket: String,
    /// Signing region (S3-compatible servers usually accept any, e.g. `us-east-1`).
    pub region: String,
    /// Credentials; when unset, the standard `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// environment variables or profile are used.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (MinIO, moto).
    pub path_style: bool,
    /// Every object key starts with this: `{prefix}/stores/{store}/store/…`. Segments of
    /// `[A-Za-z0-9._-]` separated by `/`; empty puts the copies at the bucket's root.
    pub prefix: String,
    /// How often the files of actors with new commits are uploaded: with `durability = "async"`
    /// a lost node loses at most this much of its latest writes (plus the upload time).
    pub snapshot_interval_ms: u64,
    /// Uploads in flight at once from the periodic snapshot task.
    pub max_concurrent_uploads: usize,
    /// How long a superseded copy stays in the bucket before the sweep deletes it: a restore
    /// that read the previous pointer can still fetch it meanwhile.
    pub sweep_grace_ms: u64,
    /// The fencing token this node's copies are committed under while no coordination engine
    /// gives one per shard: a copy committed under a greater token is never replaced by this
    /// node. Leave it at 0 (every node equal); tests raise it to play a newer owner.
    pub copy_token: u64,
    /// Deadline of one request to the object store. rust-s3 retries a failed request once
    /// (after 1 s), so a `sync` write waits at most about twice this plus a second: keep that
    /// below the actor ask timeout (15 s).
    pub request_timeout_ms: u64,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            endpoint: None,
            bucket: "vitrina".into(),
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
            path_style: true,
            prefix: "vitrina".into(),
            snapshot_interval_ms: 1000,
            max_concurrent_uploads: 8,
            request_timeout_ms: 5_000,
            sweep_grace_ms: 600_000,
            copy_token: 0,
        }
    }
}

impl ReplicationSettings {
    /// Replication is on when an endpoint is configured.
    pub fn enabled(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| !e.trim().is_empty())
    }
}

/// Written by hand so the secret key never reaches a log line.
impl std::fmt::Debug for ReplicationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<redacted>"))
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("snapshot_interval_ms", &self.snapshot_interval_ms)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("sweep_grace_ms", &self.sweep_grace_ms)
            .field("copy_token", &self.copy_token)
            .finish()
    }
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
            cluster: Default::default(),
            feed: FeedSettings::default(),
            replication: ReplicationSettings::default(),
            egress: EgressSettings::default(),
            domains: DomainSettings::default(),
            limits: LimitSettings::default(),
            render: RenderSettings::default(),
            store_limits: StoreLimitSettings::default(),
            secrets: SecretsSettings::default(),
            telemetry: TelemetrySettings::default(),
            live: LiveSettings::default(),
            stats: StatsSettings::default(),
            v8_flags: String::new(),
        }
    }
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings {
            arbiters: 0,
            idle_timeout_secs: 120,
            isolate_idle_secs: 30,
            alarm_poll_ms: 1000,
            max_open_files: 0,
            max_live_isolates: 0,
            isolate_memory_mb: 0,
        }
    }
}

impl Default for ShopperSettings {
    fn default() -> Self {
        ShopperSettings {
            cart_idle_ttl_secs: 7 * 24 * 3600,
            history_limit: 50,
            max_quantity: 99,
            max_per_store: 100_000,
            idle_ttl_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_limit_bytes: 256 * 1024,
            workers: 0,
            session_key: None,
            secure_cookies: SecureCookies::Auto,
            trusted_proxies: Vec::new(),
            console_session_secs: 8 * 3600,
            audit_entries_kept: 10_000,
            shutdown_deadline_secs: 60,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            personal_html_ttl_secs: 60,
            personal_html_max_bytes: 256 * 1024 * 1024,
            anonymous_page_max_bytes: 64 * 1024 * 1024,
            public_page_secs: 0,
            stale_while_revalidate_secs: 600,
            purge_attempts: 5,
            purge_backoff_ms: 500,
        }
    }
}

impl Settings {
    /// Loads defaults ← file ← environment ← `overrides` (flags given on the command line).
    /// The error is boxed: figment's is large, and it is only ever reported.
    pub fn load(file: &Path, overrides: &figment::value::Dict) -> Result<Settings, Box<figment::Error>> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("VITRINA_").split("__"))
            .merge(Serialized::defaults(overrides.clone()))
            .extract()
            .map_err(Box::new)
    }

    pub fn arbiter_count(&self) -> usize {
        match self.actors.arbiters {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config/vitrina.toml` documents the defaults; it must not become a second source of them.
    #[test]
    fn the_shipped_config_file_states_the_built_in_defaults() {
        let shipped: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(include_str!("../config/vitrina.toml")))
            .extract()
            .expect("config/vitrina.toml parses");
        let shipped = serde_json::to_value(&shipped).expect("serialises");
        let built_in = serde_json::to_value(Settings::default()).expect("serialises");
        let mut differ = Vec::new();
        diff("", &shipped, &built_in, &mut differ);
        assert!(differ.is_empty(), "config/vitrina.toml and Settings::default() disagree on: {differ:?}");
    }

    fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                for (k, v) in x {
                    diff(&format!("{path}.{k}"), v, y.get(k).unwrap_or(&serde_json::Value::Null), out);
                }
            }
            _ if a != b => out.push(format!("{path}: file {a}, default {b}")),
            _ => {}
        }
    }
}
