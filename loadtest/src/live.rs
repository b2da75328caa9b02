//! L1: idle live sockets on one node (`vitrina-load live-sockets`). Starts a node, puts the
//! demo store on it, measures its RSS, opens `--sockets` WebSockets at `/live` as open pages
//! would (the store's Origin; a share of them with shopper sessions of their own), waits for
//! each one's hello, lets the shopper actors those sessions woke passivate (an idle socket
//! holds none), and reports the node's RSS per socket. Every socket comes from 127.0.0.1: the
//! node's per-IP cap is raised for the run; the client needs `ulimit -n` above the count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use futures::StreamExt;
use test_support::live::{self, LiveSocket};
use test_support::procfs;

use crate::client::Target;
use crate::setup;
use crate::spawn::{Spawned, OPERATOR_TOKEN};

#[derive(clap::Args)]
pub struct LiveArgs {
    /// The node binary (build with `cargo build --release`).
    #[arg(long, default_value = "target/release/vitrina")]
    vitrina_bin: PathBuf,
    /// Scratch directory for the node's data and log.
    #[arg(long)]
    work_dir: PathBuf,
    /// Sockets to open.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Percent of the sockets that carry a shopper session (one each); the rest are guests'.
    #[arg(long, default_value_t = 50)]
    shopper_percent: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// The target per socket, KiB of node RSS.
    #[arg(long, default_value_t = 10.0)]
    target_kib: f64,
}

pub async fn run(args: LiveArgs) -> anyhow::Result<()> {
    let limit = fd_limit();
    ensure!(
        limit > args.sockets as u64 + 256,
        "ulimit -n is {limit}: opening {} sockets needs more (raise it, e.g. `ulimit -n 65536`)",
        args.sockets
    );
    let node = Spawned::node(
        &args.vitrina_bin,
        &args.work_dir,
        &[
            ("VITRINA_LIVE__MAX_SOCKETS_PER_IP", (args.sockets + 16).to_string()),
            ("VITRINA_LIVE__MAX_SOCKETS", (args.sockets + 16).to_string()),
            // Shopper actors woken by a socket's session check passivate soon after.
            ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "5".to_string()),
            ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "2".to_string()),
            // The client reads nothing after the hello (so it answers no ping): sockets must
            // outlive the run without pongs.
            ("VITRINA_LIVE__PING_SECS", "600".to_string()),
            ("VITRINA_LIVE__IDLE_TIMEOUT_SECS", "1200".to_string()),
        ],
    )?;
    let target = Target::parse(&node.base_url, String::new())?;
    let store = setup::seed_store(&target, OPERATOR_TOKEN, "live").await?;
    let addr = target.addr;
    let origin = live::origin(addr, &store.id);

    // Warm: the first sockets set up what every later one shares (the hub, the caps' maps).
    for _ in 0..8 {
        live::open(addr, &store.id, Some(&origin), None).await.map_err(|e| anyhow::anyhow!("{e:?}"))?.hello().await;
    }
    settle(&target).await?;
    let before = procfs::rss_kib(node.pid).context("node RSS")?;

    let shoppers = args.sockets * args.shopper_percent.min(100) / 100;
    let sids = setup::session_ids("live", shoppers);
    let started = Instant::now();
    let opened: Vec<anyhow::Result<LiveSocket>> = futures::stream::iter(0..args.sockets)
        .map(|i| {
            let (store, origin, sids) = (store.id.clone(), origin.clone(), sids.clone());
            async move {
                let cookie = sids.get(i).map(|sid| setup::session_cookie(sid));
                let mut s =
                    live::open(addr, &store, Some(&origin), cookie.as_deref()).await.map_err(|e| anyhow::anyhow!("socket {i}: {e:?}"))?;
                s.hello().await;
                Ok(s)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let open_secs = started.elapsed().as_secs_f64();
    let sockets: Vec<LiveSocket> = opened.into_iter().collect::<anyhow::Result<_>>()?;
    settle(&target).await?;
    let after = procfs::rss_kib(node.pid).context("node RSS")?;
    let per_socket = (after.saturating_sub(before)) as f64 / sockets.len() as f64;
    let verdict = if per_socket <= args.target_kib { "met" } else { "missed" };
    println!("| workload | sockets | of them shoppers' | opened in | node RSS before | after | per socket | target |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| L1 idle live sockets | {} | {shoppers} | {open_secs:.1} s | {:.1} MiB | {:.1} MiB | **{per_socket:.2} KiB** | ≤ {} KiB: {verdict} |",
        sockets.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        args.target_kib
    );
    drop(sockets);
    Ok(())
}

/// Waits until the node holds no shopper actor (those the sockets' session checks woke have
/// passivated), then a few seconds for freed memory to be given back.
async fn settle(target: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while setup::live_shoppers(target).await? > 0 {
        ensure!(Instant::now() < deadline, "shopper actors did not passivate within 180 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The node trims freed memory at most every 30 s (`memory.rs`).
    tokio::time::sleep(Duration::from_secs(32)).await;
    Ok(())
}

fn fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        0
    }
}
