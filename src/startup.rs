//! Building and running a node: open the catalog, start the actor arbiters, bind the HTTP
//! server, and start the alarm poller.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App};
use anyhow::Context as _;

use crate::actors::{shopper, store};
use crate::catalog::{AdminToken, NodeCatalog};
use crate::clock::now_ms;
use crate::config::Settings;
use crate::error::request_id_middleware;
use crate::ids::ActorKey;
use crate::node::Node;
use crate::replication::Replicator;
use crate::sqlite::DataLayout;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    node: Arc<Node>,
}

impl Application {
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        // Everything the node writes is its own: files 0600, directories 0700 (SQLite's
        // databases, WAL and shared memory take their mode from the umask).
        // SAFETY: umask only swaps the process's file mode creation mask.
        unsafe { libc::umask(0o077) };
        crate::metrics::init();
        // Before the node (and its render threads, whose worker processes take their share of
        // the isolate pools' bytes when they start) exists.
        crate::storage::open_files::set_budget(settings.actors.max_open_files);
        crate::engine::isolate_budget::set_budget(settings.actors.max_live_isolates);
        crate::engine::isolate_budget::set_byte_budget_mb(settings.actors.isolate_memory_mb);
        crate::private_files::create_private_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
        let layout = DataLayout::new(settings.data_dir.clone());
        tighten_node_files(&layout);
        let catalog = NodeCatalog::open(&layout, &settings.base_domain).context("cannot open the node catalog")?;
        let operator_token = operator_token(&layout, &settings)?;
        crate::http::session::set_key(session_key(&layout, &settings)?);
        crate::http::proxy::init(&settings.http)?;
        crate::http::limits::init(&settings.limits);
        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        };
        let bound = listener.local_addr()?.to_string();
        let boot = catalog.next_boot().context("cannot count this start in the node catalog")?;
        let cluster = crate::cluster::Cluster::new(&settings.cluster, &bound, &settings.data_dir, boot)?;
        crate::egress::install(
            crate::egress::Egress::new(&settings.egress).map_err(anyhow::Error::msg).context("invalid [egress] settings")?,
        );
        // On etcd a copy is uploaded under the token its shard is held with, and becomes current
        // only through a transaction on that token (`replication::EtcdLedger`); a node that no
        // longer holds the shard uploads nothing. A single node keeps one constant token: its
        // boot counter restarts with a lost disk, and would then fence the node's own copies.
        let node_slot: Arc<std::sync::OnceLock<std::sync::Weak<Node>>> = Arc::default();
        let (tokens, ledger): (crate::replication::TokenSource, Option<Arc<dyn crate::replication::CopyLedger>>) = if cluster.enabled() {
            let slot = node_slot.clone();
            let tokens: crate::replication::TokenSource = Arc::new(move |key: &crate::ids::ActorKey| {
                let node = slot.get()?.upgrade()?;
                // A file that may be older than a later holder's is never uploaded under this
                // node's newer token: it would replace that holder's copy.
                if node.cluster.shards.is_stale(key) {
                    return None;
                }
                node.cluster.coordination().token(node.cluster.shard_of(key))
            });
            let records =
                crate::coordination::records::FencedRecords::new(&settings.cluster.etcd).context("invalid [cluster.etcd] settings")?;
            let ledger: Arc<dyn crate::replication::CopyLedger> =
                Arc::new(crate::replication::EtcdLedger::new(records, settings.cluster.shards));
            (tokens, Some(ledger))
        } else {
            (crate::replication::constant_token(settings.replication.copy_token), None)
        };
        let replicator =
            Replicator::from_settings(&settings.replication, &layout, tokens, ledger).context("invalid [replication] settings")?;
        let cluster_secret = cluster.enabled().then(|| cluster.secret().to_vec());
        let secrets = crate::secrets::SecretBox::for_node(
            settings.secrets.key.as_deref(),
            cluster_secret.as_deref(),
            &layout.root().join("node").join("secret-key"),
        )
        .context("invalid [secrets] settings")?;
        let node = Node::new(settings, catalog, operator_token, cluster, replicator, secrets);
        let _ = node_slot.set(Arc::downgrade(&node));
        crate::actors::sweeper::count_at_startup(&node);
        crate::http::live::install_relay(&node);
        let data = web::Data::from(node.clone());
        // The access log formats every request before the log filter sees it: only install it
        // when its lines would be written (`VITRINA_LOG` at info for `vitrina::access`).
        let access_log = tracing::enabled!(target: "vitrina::access", tracing::Level::INFO);
        let server_settings =
            crate::http::server::ServerSettings { workers, shutdown_timeout_secs: node.settings.http.shutdown_deadline_secs.max(1) };
        // Signals are the node's (`shutdown`): a cluster node hands its actors off before the
        // server stops accepting.
        let server = crate::http::server::run(listener, server_settings, move || {
            let data = data.clone();
            App::new()
                .wrap(from_fn(crate::http::forward::route_to_owner))
                .wrap(from_fn(crate::http::csrf::check_origin))
                .wrap(from_fn(crate::http::limits::limit_requests))
                .wrap(from_fn(request_id_middleware))
                .wrap(from_fn(crate::http::conditional::conditional_get))
                .wrap(from_fn(crate::http::observe::observe_requests))
                .wrap(from_fn(crate::http::headers::security_headers))
                .wrap(actix_web::middleware::Condition::new(
                    access_log,
                    actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms").log_target("vitrina::access"),
                ))
                .wrap(Compress::default())
                .configure(move |cfg| crate::http::configure(cfg, data))
        })?;
        spawn_alarm_poller(node.clone());
        crate::actors::sweeper::spawn(node.clone());
        crate::actors::day_stats::spawn(node.clone());
        crate::memory::spawn_trimmer();
        if let Some(replicator) = &node.replicator {
            replicator.spawn_snapshot_loop();
            replicator.spawn_sweep_loop();
        }
        Ok(Application { port, server, node })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops the server (`shutdown::run`).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Where a node without a configured operator token keeps the one it generated.
pub fn operator_token_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("node").join("operator-token")
}

/// The operator token: from configuration, or generated once and kept in [`operator_token_file`].
fn operator_token(layout: &DataLayout, settings: &Settings) -> anyhow::Result<String> {
    if let Some(token) = settings.operator_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(token.clone());
    }
    let path = operator_token_file(layout.root());
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = AdminToken::generate().0;
    crate::private_files::write_text(&path, &token)?;
    Ok(token)
}

/// The key that signs session tokens (`http::session`): configured, else derived from the
/// cluster secret (every node verifies every node's tokens), else generated once into
/// `node/session-key`.
fn session_key(layout: &DataLayout, settings: &Settings) -> anyhow::Result<Vec<u8>> {
    use hmac::Mac;
    if let Some(key) = settings.http.session_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(key.as_bytes().to_vec());
    }
    if let Some(secret) = settings.cluster.secret.as_ref().filter(|s| settings.cluster.enabled && !s.is_empty()) {
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
        mac.update(b"vitrina session key v1");
        return Ok(mac.finalize().into_bytes().to_vec());
    }
    let path = layout.root().join("node").join("session-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if let Ok(key) = hex::decode(existing.trim()) {
            if key.len() >= 32 {
                return Ok(key);
            }
        }
    }
    let key: [u8; 32] = rand::random();
    crate::private_files::write_text(&path, &hex::encode(key))?;
    Ok(key.to_vec())
}

/// Makes the data directory and the node's own files (catalog, tokens, keys) owner-only, where
/// an older version left them readable by others; shopper and store files are tightened by the
/// sweeper's first walk.
fn tighten_node_files(layout: &DataLayout) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(layout.root(), std::fs::Permissions::from_mode(0o700));
    if let Err(e) = crate::private_files::walk_private(&layout.root().join("node"), &mut |_, _| {}) {
        tracing::warn!(error = %e, "cannot tighten the modes of the node's files");
    }
}

/// Wakes actors whose alarms are due, whether or not they are live: the catalog's alarm index
/// names them, the actor's own table decides.
fn spawn_alarm_poller(node: Arc<Node>) {
    let every = Duration::from_millis(node.settings.actors.alarm_poll_ms.max(10));
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let n = node.clone();
            let due = match web::block(move || n.catalog.due_alarms(now_ms(), 256)).await {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "alarm index unreadable");
                    continue;
                }
                Err(_) => continue,
            };
            for key in due {
                let result = match &key {
                    ActorKey::Store(s) => node.ask_store(s, store::FireAlarms).await.map(|_| ()),
                    ActorKey::Shopper(s, sid) => node.ask_shopper(s, sid, shopper::FireAlarms).await.map(|_| ()),
                };
                if let Err(e) = result {
                    tracing::warn!(%key, error = %e, "alarm could not be delivered");
                    if matches!(e, crate::runtime::registry::ActorError::NoSuchStore(_)) {
                        let _ = node.catalog.reset_alarm_hint(&key, None);
                    }
                }
            }
        }
    });
}
