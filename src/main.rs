use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use figment::value::{Dict, Value as FigValue};

use vitrina::config::Settings;
use vitrina::startup::Application;

/// Vitrina: an actor-based, stateful edge runtime for personalised storefronts.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: serve shoppers, the admin API and webhooks over HTTP.
    Serve(ServeArgs),
    /// Inspect or change the cluster through any of its nodes.
    Cluster(ClusterArgs),
    /// Stores, live actors and shoppers, through any node (the operator token).
    Operator(OperatorArgs),
    /// A render worker: started by a node for each render thread, never by hand.
    #[command(hide = true)]
    RenderWorker(RenderWorkerArgs),
}

#[derive(Parser)]
struct RenderWorkerArgs {
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    v8_flags: String,
    #[arg(long, default_value_t = usize::MAX)]
    pooled_limit: usize,
    #[arg(long, default_value_t = 0)]
    nice: i32,
    /// `json` to log as the node does with `telemetry.log_format = "json"`.
    #[arg(long, default_value = "text")]
    log_format: String,
}

#[derive(Parser)]
struct OperatorArgs {
    /// Configuration file (for the operator token); `VITRINA_OPERATOR_TOKEN` works too.
    #[arg(long, default_value = "config/vitrina.toml", global = true)]
    config: PathBuf,
    /// A node to talk to (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    via: String,
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Every store in the catalog.
    Stores,
    /// The live actors of the node named by --via.
    Actors,
    /// A store's shoppers with a file, on every node, by session id.
    Shoppers {
        store: String,
        /// Start after this session id (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One shopper's state (cart, history, preferences, orders) and file.
    Inspect { store: String, session: String },
    /// One shopper's state as JSON, for the shopper who asked for their data.
    Export { store: String, session: String },
    /// Erase one shopper everywhere: live instance, file, WAL, object-storage copies.
    Erase { store: String, session: String },
}

#[derive(Parser)]
struct ClusterArgs {
    /// Configuration file (for the cluster secret); `VITRINA_CLUSTER__SECRET` works too.
    #[arg(long, default_value = "config/vitrina.toml", global = true)]
    config: PathBuf,
    /// A node of the cluster to talk to (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    via: String,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the members, their states and the ring epoch.
    Status,
    /// Move every actor off a node, then mark it left (the node can then be stopped).
    Drain { node: String },
    /// Mark a node left without moving its actors (for a node that is gone for good).
    Remove { node: String },
}

#[derive(Parser)]
struct ServeArgs {
    /// Configuration file (missing is fine: defaults apply).
    #[arg(long, default_value = "config/vitrina.toml")]
    config: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Directory for every file the node writes.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Stores answer at {store}.{base-domain}.
    #[arg(long)]
    base_domain: Option<String>,
    /// Seed the demo storefront `demo` and print its URL and admin token.
    #[arg(long)]
    demo: bool,
    /// Join a cluster, copying the catalog from this node first (`host:port`; repeatable).
    /// Enables clustering, which needs etcd (`cluster.etcd.endpoints`).
    #[arg(long)]
    join: Vec<String>,
    /// This node's id in the cluster.
    #[arg(long)]
    node_id: Option<String>,
    /// Address other nodes reach this node at (defaults to the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Run as a cluster node even without --join (the first node of a cluster); needs etcd
    /// (`cluster.etcd.endpoints`).
    #[arg(long)]
    cluster: bool,
    /// Log lines as `text` or `json` (sets telemetry.log_format).
    #[arg(long)]
    log_format: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(_) => {}
        Command::RenderWorker(args) => vitrina::telemetry::init_for_worker(args.log_format == "json"),
        _ => vitrina::telemetry::init_for_tools(),
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Cluster(args) => cluster(args),
        Command::Operator(args) => operator(args),
        Command::RenderWorker(args) => vitrina::engine::worker::serve::serve(&vitrina::engine::worker::serve::WorkerOptions {
            v8_flags: args.v8_flags,
            pooled_limit: args.pooled_limit,
            nice: args.nice,
        }),
    }
}

/// Where this node's blocks run (`render.isolation`): in worker processes running this same
/// executable, or in the node's own render threads.
fn start_engine(settings: &Settings) -> anyhow::Result<()> {
    use vitrina::config::RenderIsolation;
    use vitrina::engine::worker::{self, WorkerConfig};
    let log_format = match settings.telemetry.log_format {
        vitrina::config::LogFormat::Json => "json",
        vitrina::config::LogFormat::Text => "text",
    };
    match settings.render.isolation {
        RenderIsolation::Thread => vitrina::engine::init(&settings.v8_flags),
        RenderIsolation::Process => worker::enable(WorkerConfig {
            // The running image itself, even if its file was replaced since (an upgrade in
            // place): a worker must speak its node's protocol.
            program: match std::path::Path::new("/proc/self/exe").exists() {
                true => "/proc/self/exe".into(),
                false => std::env::current_exe().context("cannot find the node's executable for its render workers")?,
            },
            args: vec![
                "render-worker".into(),
                format!("--v8-flags={}", settings.v8_flags),
                format!("--nice={}", settings.render.nice),
                format!("--log-format={log_format}"),
            ],
            workers: settings.render.thread_count(),
            kill_grace: std::time::Duration::from_millis(settings.render.worker_kill_grace_ms),
            // Only for a worker that stops without using CPU (CPU is what budgets count).
            wall_limit: settings.render.stuck_after() * 5,
            io_timeout: std::time::Duration::from_secs(10),
        }),
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut flags = Dict::new();
    if let Some(listen) = args.listen {
        flags.insert("listen".into(), FigValue::from(listen));
    }
    if let Some(dir) = args.data_dir {
        flags.insert("data_dir".into(), FigValue::from(dir.to_string_lossy().into_owned()));
    }
    if let Some(domain) = args.base_domain {
        flags.insert("base_domain".into(), FigValue::from(domain));
    }
    let mut cluster = Dict::new();
    if args.cluster || !args.join.is_empty() {
        cluster.insert("enabled".into(), FigValue::from(true));
    }
    if !args.join.is_empty() {
        cluster.insert("seeds".into(), FigValue::from(args.join.clone()));
    }
    if let Some(id) = args.node_id {
        cluster.insert("node_id".into(), FigValue::from(id));
    }
    if let Some(a) = args.advertise {
        cluster.insert("advertise".into(), FigValue::from(a));
    }
    if !cluster.is_empty() {
        flags.insert("cluster".into(), FigValue::from(cluster));
    }
    if let Some(format) = &args.log_format {
        let mut telemetry = Dict::new();
        telemetry.insert("log_format".into(), FigValue::from(format.clone()));
        flags.insert("telemetry".into(), FigValue::from(telemetry));
    }
    let settings = Settings::load(&args.config, &flags).context("invalid configuration")?;
    // Spans name the node: its configured id, or the one it generated at its first start.
    let node_id = settings
        .cluster
        .node_id
        .clone()
        .or_else(|| std::fs::read_to_string(settings.data_dir.join("node").join("node-id")).ok().map(|id| id.trim().to_string()));
    let _telemetry = vitrina::telemetry::init(&settings.telemetry, node_id.as_deref())?;
    start_engine(&settings)?;

    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)?;
        let port = app.port();
        let node = app.node().clone();
        let handle = app.server_handle();
        node.set_starting(args.demo);
        // The server only accepts once its future runs: start it before joining, since other
        // members forward requests to this node as soon as etcd lists it.
        let server = actix_web::rt::spawn(app.run_until_stopped());
        let host = node.settings.listen.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        vitrina::cluster::start(node.clone()).await?;
        // Tests and scripts read this line to learn the port.
        println!("vitrina listening on http://{host}:{port}");
        if node.cluster.enabled() {
            println!("cluster node {} at {} (epoch {})", node.cluster.id, node.cluster.addr, node.cluster.epoch());
        }
        if args.demo {
            let token = vitrina::demo::seed(&node).await?;
            node.set_starting(false);
            println!("demo store: http://demo.{}:{port}/", node.catalog.base_domain());
            println!("demo admin token: {token}");
            println!("  (also in {})", node.layout.root().join("demo-admin-token").display());
        }
        if node.settings.operator_token.as_ref().is_none_or(|t| t.is_empty()) {
            // `vitrina operator` and `vitrina cluster status` run from this directory read it.
            println!("operator token: {}", vitrina::startup::operator_token_file(node.layout.root()).display());
        } else {
            println!("operator token: from the configuration");
        }
        tokio::select! {
            served = server => served.context("server task failed")?.context("server failed"),
            () = vitrina::shutdown::signalled() => {
                if vitrina::shutdown::run(node, handle).await {
                    Ok(())
                } else {
                    anyhow::bail!("shutdown did not finish within http.shutdown_deadline_secs")
                }
            }
        }
    })
}

fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.config, &Dict::new()).context("invalid configuration")?;
    let secret = settings.cluster.secret.clone().filter(|s| !s.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        let (method, path, body) = match &args.command {
            ClusterCommand::Status => (reqwest::Method::GET, "/cluster/status".to_string(), Vec::new()),
            ClusterCommand::Drain { node } => (
                reqwest::Method::POST,
                "/internal/membership".to_string(),
                serde_json::to_vec(&serde_json::json!({"op": "drain", "node": node}))?,
            ),
            ClusterCommand::Remove { node } => (
                reqwest::Method::POST,
                "/internal/membership".to_string(),
                serde_json::to_vec(&serde_json::json!({"op": "remove", "node": node}))?,
            ),
        };
        let mut req = client.request(method.clone(), format!("http://{}{path}", args.via)).header("content-type", "application/json");
        if method == reqwest::Method::GET {
            // The status is the operator's: the operator token (configuration or environment).
            req = req.bearer_auth(operator_token(&settings)?);
        } else {
            let secret = secret.context("changing the cluster needs the cluster secret (VITRINA_CLUSTER__SECRET or cluster.secret)")?;
            let (ts, sig) = vitrina::cluster::auth::sign(secret.as_bytes(), method.as_str(), &path, &body);
            req = req.header(vitrina::cluster::auth::TS_HEADER, ts).header(vitrina::cluster::auth::AUTH_HEADER, sig);
        }
        let res = req.body(body).send().await.with_context(|| format!("cannot reach {}", args.via))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            anyhow::bail!("{status}: {body}");
        }
        match args.command {
            ClusterCommand::Status => print_status(&body),
            _ => println!("ok: epoch {}", body["epoch"]),
        }
        Ok(())
    })
}

fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.config, &Dict::new()).context("invalid configuration")?;
    let token = operator_token(&settings)?;
    let (method, path) = match &args.command {
        OperatorCommand::Stores => (reqwest::Method::GET, "/operator/v1/stores".to_string()),
        OperatorCommand::Actors => (reqwest::Method::GET, "/operator/v1/actors".to_string()),
        OperatorCommand::Shoppers { store, after, limit } => {
            let after = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
            (reqwest::Method::GET, format!("/operator/v1/stores/{store}/shoppers?limit={limit}{after}"))
        }
        OperatorCommand::Inspect { store, session } => (reqwest::Method::GET, format!("/operator/v1/stores/{store}/shoppers/{session}")),
        OperatorCommand::Export { store, session } => {
            (reqwest::Method::GET, format!("/operator/v1/stores/{store}/shoppers/{session}/export"))
        }
        OperatorCommand::Erase { store, session } => (reqwest::Method::DELETE, format!("/operator/v1/stores/{store}/shoppers/{session}")),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        let res = client
            .request(method, format!("http://{}{path}", args.via))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", args.via))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            anyhow::bail!("{status}: {body}");
        }
        match args.command {
            OperatorCommand::Shoppers { .. } => {
                println!("{:<40} {:>10} {:<32} NODE", "SESSION", "BYTES", "LAST WRITE");
                for s in body["shoppers"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
                    println!("{:<40} {:>10} {:<32} {}", text("session"), s["bytes"], text("lastWrite"), text("node"));
                }
                if let Some(next) = body["next"].as_str() {
                    println!("more: --after {next}");
                }
            }
            _ => println!("{}", serde_json::to_string_pretty(&body)?),
        }
        Ok(())
    })
}

/// The operator token for the CLI: configured (`operator_token`, `VITRINA_OPERATOR_TOKEN`), else
/// the one a node with this configuration generated into its data directory.
fn operator_token(settings: &Settings) -> anyhow::Result<String> {
    let configured = settings.operator_token.clone().or_else(|| std::env::var("VITRINA_OPERATOR_TOKEN").ok());
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let file = vitrina::startup::operator_token_file(&settings.data_dir);
    let token = std::fs::read_to_string(&file).map(|t| t.trim().to_string()).unwrap_or_default();
    if token.is_empty() {
        anyhow::bail!(
            "no operator token: set VITRINA_OPERATOR_TOKEN or operator_token, or run this where the node's data directory is ({} not found)",
            file.display()
        );
    }
    Ok(token)
}

fn print_status(s: &serde_json::Value) {
    println!(
        "node {} · coordination {} · epoch {} · {} shards · {} vnodes per member",
        s["node"], s["coordination"], s["epoch"], s["shards"], s["vnodes"]
    );
    println!("{:<24} {:<24} STATE", "MEMBER", "ADDRESS");
    for m in s["members"].as_array().into_iter().flatten() {
        println!("{:<24} {:<24} {}", m["id"].as_str().unwrap_or(""), m["addr"].as_str().unwrap_or(""), m["state"].as_str().unwrap_or(""));
    }
}
