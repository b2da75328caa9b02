use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use figment::value::{Dict, Value as FigValue};
use tracing_subscriber::EnvFilter;

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("VITRINA_LOG").unwrap_or_else(|_| EnvFilter::new("info,vitrina::access=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
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
    let settings = Settings::load(&args.config, &flags).context("invalid configuration")?;
    vitrina::engine::init();

    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)?;
        let port = app.port();
        let node = app.node().clone();
        let host = node.settings.listen.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        // Tests and scripts read this line to learn the port.
        println!("vitrina listening on http://{host}:{port}");
        if args.demo {
            let token = vitrina::demo::seed(&node).await?;
            println!("demo store: http://demo.{}:{port}/", node.catalog.base_domain());
            println!("demo admin token: {token}");
            println!("  (also in {})", node.layout.root().join("demo-admin-token").display());
        }
        println!("operator token: {}", node.layout.root().join("node").join("operator-token").display());
        app.run_until_stopped().await.context("server failed")
    })
}
