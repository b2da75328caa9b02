//! `vitrina-load`: load generator and benchmark suite for a Vitrina node (issue 6).
//!
//! - `vitrina-load suite --vitrina-bin target/release/vitrina` measures the ceilings (hello-world
//!   HTTP, serial and parallel fsync), then starts a fresh node per workload with the settings
//!   that workload needs and runs W1, W1b, W2, W3, W2w, W5 and F1 (CPU fairness between stores), then starts local clusters
//!   (a one-member etcd, then `serve --cluster` / `--join` on 127.0.0.1) for W4 (webhook → fresh
//!   page on 3 nodes), S1 (3 → 4 nodes under load) and S2 (4 → 3, a drain under load), with the nodes' shard acquisition latency
//!   in etcd; it writes JSON and a Markdown table (`loadtest/run.sh`
//!   appends that to `loadtest/RESULTS.md`).
//! - `vitrina-load run --nodes http://127.0.0.1:8080 --operator-token T` runs the request
//!   workloads against nodes that are already running.
//! - `vitrina-load hello` and `vitrina-load fsync` are the ceilings on their own.
//!
//! Only loopback addresses are ever targeted.

mod ceilings;
mod client;
mod cluster;
mod driver;
mod fairness;
mod live;
use test_support::procfs;
mod report;
mod setup;
mod spawn;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use ceilings::SyncKind;
use client::Target;
use driver::{Check, MakeRequest, Phase};
use report::{MemRow, Report, Row};
use setup::Store;
use spawn::{Spawned, OPERATOR_TOKEN};

#[derive(Parser)]
#[command(about = "Load generator and benchmark suite for Vitrina")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ceilings, every single-node workload (each on a fresh node it starts), then W4, S1 and S2 on
    /// local clusters it starts. A flag given twice takes its last value.
    #[command(args_override_self = true)]
    Suite(SuiteArgs),
    /// Request workloads (w1, w2, w3; w1b / w2w if the nodes are configured for them) against
    /// running nodes.
    Run(RunArgs),
    /// Serve `GET /` → `ok` (the HTTP ceiling); prints `hello listening on http://ADDR`.
    Hello {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// L1: open `--sockets` idle live sockets on a node it starts and report its RSS per socket.
    LiveSockets(live::LiveArgs),
    /// Measure the disk's fsync rate in `--dir`, serially and with `--files` threads.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 16)]
        files: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Shoppers with carts for W1, W1b, W3 and W2w.
    #[arg(long, default_value_t = 1000)]
    shoppers: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each phase.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The latency phase of W1, W1b, W2 and W3 runs open-loop at this fraction of the
    /// throughput the closed-loop phase reached.
    #[arg(long, default_value_t = 0.5)]
    latency_load: f64,
    /// W2w: wake requests per second (open loop, one request per hibernated shopper).
    #[arg(long, default_value_t = 250.0)]
    wake_rate: f64,
    /// JSON results file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Markdown table file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(Args)]
struct SuiteArgs {
    #[command(flatten)]
    common: Common,
    /// The node binary (build with `cargo build --release`).
    #[arg(long, default_value = "target/release/vitrina")]
    vitrina_bin: PathBuf,
    /// Scratch directory for node data, logs and fsync files (on the disk being measured). Left
    /// in place for the caller to remove (`loadtest/run.sh` does): deleting files mid-suite
    /// slows later file creation on some disks (see `spawn.rs`).
    #[arg(long)]
    work_dir: PathBuf,
    /// Comma-separated workloads: ceilings,w1,w1b,w2,w3,w2w,w4,s1,s2,w5,f1 (w4, s1 and s2 start local
    /// clusters; w2 runs W2 and W2p, and w2p is accepted for it).
    #[arg(long, default_value = "ceilings,w1,w1b,w2,w3,w2w,w4,s1,s2,w5,f1", value_delimiter = ',')]
    workloads: Vec<String>,
    /// W4: webhook rounds (one price change each).
    #[arg(long, default_value_t = 50)]
    w4_rounds: usize,
    /// W4: milliseconds between two polls of a shopper's page.
    #[arg(long, default_value_t = 2)]
    w4_poll_ms: u64,
    /// S1 and S2: shoppers whose warm pages are loaded while the 4th node joins (S1) or is
    /// drained (S2).
    #[arg(long, default_value_t = 300)]
    s1_shoppers: usize,
    /// S1 and S2: measured seconds of load before the 4th node starts (S1) or is drained (S2).
    #[arg(long, default_value_t = 10.0)]
    s1_before: f64,
    /// S1 and S2: seconds of load after the change starts (the run ends then, settled or not).
    #[arg(long, default_value_t = 30.0)]
    s1_after_join: f64,
    /// Threads (one file each) for the parallel fsync ceiling.
    #[arg(long, default_value_t = 16)]
    fsync_files: usize,
    /// W2 and W2w nodes passivate shoppers after this many idle seconds.
    #[arg(long, default_value_t = 3)]
    short_idle_secs: u64,
    /// W5: shopper counts to measure memory at.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    w5_counts: Vec<usize>,
    /// W5: largest count given a live isolate each (1.6 MiB each: 10k would need ~16 GiB).
    /// Larger counts render on a node whose isolate budget (`actors.max_live_isolates`) is this
    /// and whose byte budget is `--w5-memory-mb`.
    #[arg(long, default_value_t = 2000)]
    w5_live_max: usize,
    /// W5: the byte budget of isolates (`actors.isolate_memory_mb`) for counts above
    /// `--w5-live-max`; their rendered row's target is the node's RSS within it.
    #[arg(long, default_value_t = 1024)]
    w5_memory_mb: usize,
    /// W5 nodes passivate after this many idle seconds, plus 1 s per 200 actors (must exceed the
    /// isolate idle time by 48 s: the wait for a malloc trim before the warm row, and margin).
    #[arg(long, default_value_t = 65)]
    w5_idle_secs: u64,
    /// W5 nodes drop idle actors' isolates and close their files after this many seconds (must
    /// exceed the time to render the largest live count).
    #[arg(long, default_value_t = 15)]
    w5_isolate_idle_secs: u64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Base URLs of running nodes, comma-separated. Every workload here targets the first; the
    /// cluster workloads W4, S1 and S2 run in `suite`, which starts its own local clusters.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    #[arg(long, env = "VITRINA_OPERATOR_TOKEN")]
    operator_token: String,
    /// PID of the (first) node, for CPU per request.
    #[arg(long)]
    pid: Option<u32>,
    /// Comma-separated: w1, w1b (node must run with cache.personal_html_ttl_secs = 0), w2, w3,
    /// w2w (node must run with a short actors.idle_timeout_secs).
    #[arg(long, default_value = "w1,w2,w3", value_delimiter = ',')]
    workloads: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Hello { listen } => ceilings::serve_hello(&listen),
        Command::Fsync { dir, files, seconds } => {
            let d = Duration::from_secs_f64(seconds);
            for (n, kind, what) in
                [(1, SyncKind::Overwrite, "overwrite"), (files, SyncKind::Overwrite, "overwrite"), (files, SyncKind::Create, "create")]
            {
                let c = ceilings::fsync_ceiling(&dir, n, d, kind)?;
                println!(
                    "fsync {what} {n} thread(s): {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                    c.rate(),
                    c.hist.value_at_quantile(0.5) as f64 / 1e3,
                    c.hist.value_at_quantile(0.99) as f64 / 1e3
                );
            }
            ceilings::remove_created_files(&dir);
            Ok(())
        }
        Command::Suite(args) => runtime().block_on(suite(args)),
        Command::Run(args) => runtime().block_on(run_external(args)),
        Command::LiveSockets(args) => runtime().block_on(live::run(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// A node under test: where it listens and, if known, its pid.
struct NodeRef {
    base_url: String,
    pid: Option<u32>,
    /// Operator token (creates the workload's store).
    token: String,
}

impl NodeRef {
    fn of(s: &Spawned) -> NodeRef {
        NodeRef { base_url: s.base_url.clone(), pid: Some(s.pid), token: OPERATOR_TOKEN.into() }
    }
    fn admin(&self) -> anyhow::Result<Target> {
        let t = Target::parse(&self.base_url, String::new())?;
        Ok(Target { host: t.addr.to_string(), ..t })
    }
    fn shop(&self, store: &Store) -> anyhow::Result<Target> {
        Target::parse(&self.base_url, format!("{}.localhost", store.id))
    }
}

impl Common {
    fn phase(&self) -> Phase {
        Phase {
            connections: self.connections,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            rate: None,
            max_requests: None,
        }
    }
}

fn closed_mode(p: &Phase) -> String {
    format!("closed loop, {} conns", p.connections)
}

/// A closed-loop phase (throughput) and an open-loop phase at `latency_load` × that throughput
/// (latency from intended send times).
#[allow(clippy::too_many_arguments)]
async fn throughput_and_latency(
    common: &Common,
    id: &str,
    name: &str,
    target: &Target,
    pid: Option<u32>,
    make: MakeRequest,
    check: Check,
) -> (Row, Row) {
    let phase = common.phase();
    eprintln!("[{id}] closed loop {:?}", phase.duration);
    let max = driver::run(target, &phase, make.clone(), check, pid).await;
    let max_row = Row::from_measured(id, name, closed_mode(&phase), &max);
    let rate = (max.throughput() * common.latency_load).max(1.0);
    let open = Phase { rate: Some(rate), ..phase };
    eprintln!("[{id}] open loop at {rate:.0}/s");
    let lat = driver::run(target, &open, make, check, pid).await;
    let lat_row = Row::from_measured(
        &format!("{id}@{:.0}%", common.latency_load * 100.0),
        name,
        format!("open loop {rate:.0}/s ({:.0}% of max), {} conns", common.latency_load * 100.0, open.connections),
        &lat,
    );
    (max_row, lat_row)
}

fn personal_page(a: &client::Answer) -> bool {
    a.status == 200 && a.cache.as_deref() == Some("personal")
}

/// W1 (or W1b on a node without the personal HTML cache): warm shoppers with carts, `GET /`.
async fn warm_page(common: &Common, id: &str, name: &str, node: &NodeRef) -> anyhow::Result<(Row, Row)> {
    let store = setup::seed_store(&node.admin()?, &node.token, id).await?;
    let target = node.shop(&store)?;
    let sids = setup::session_ids(id, common.shoppers);
    eprintln!("[{id}] creating {} shoppers with carts", sids.len());
    setup::create_shoppers(&target, &store, &sids, true, common.connections).await?;
    let t = target.clone();
    let make: MakeRequest = Arc::new(move |i| setup::page_request(&t, "/", Some(&sids[i as usize % sids.len()])));
    Ok(throughput_and_latency(common, id, name, &target, node.pid, make, personal_page).await)
}

/// Any page a shopper can be served: personalised, or the store's anonymous page (what a
/// session with nothing in it gets).
fn any_page(a: &client::Answer) -> bool {
    a.status == 200 && matches!(a.cache.as_deref(), Some("personal" | "anonymous-hit" | "anonymous-miss"))
}

/// W2: a fresh session id every request, `GET /`. The session has no state yet, so the node
/// activates its actor without a file or an isolate and answers with the store's anonymous page.
/// W2p (`first_write`): the fresh session's first request is a product page, which records the
/// view — the full cold path: SQLite file created and migrated, isolate from the snapshot, render.
async fn cold_actor(common: &Common, node: &NodeRef, first_write: bool) -> anyhow::Result<(Row, Row)> {
    let id = if first_write { "w2p" } else { "w2" };
    let store = setup::seed_store(&node.admin()?, &node.token, id).await?;
    let target = node.shop(&store)?;
    let t = target.clone();
    let phase_tag = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run: u32 = rand::random();
    let handles = store.handles.clone();
    // Request numbers restart per phase: a per-make counter keeps every sid new.
    let make: MakeRequest = Arc::new(move |_| {
        let n = phase_tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = if first_write { format!("/products/{}", handles[n as usize % handles.len()]) } else { "/".to_string() };
        setup::page_request(&t, &path, Some(&format!("cold-{run:08x}-{n}")))
    });
    let (name, check): (&str, Check) =
        if first_write { ("W2p cold actor, first request writes", personal_page) } else { ("W2 cold actor (new session)", any_page) };
    Ok(throughput_and_latency(common, id, name, &target, node.pid, make, check).await)
}

/// W3: durable add-to-cart, round-robin over the shoppers and products.
async fn add_to_cart(common: &Common, node: &NodeRef) -> anyhow::Result<(Row, Row)> {
    let store = setup::seed_store(&node.admin()?, &node.token, "w3").await?;
    let target = node.shop(&store)?;
    let sids = setup::session_ids("w3", common.shoppers);
    eprintln!("[w3] creating {} shoppers with carts", sids.len());
    setup::create_shoppers(&target, &store, &sids, false, common.connections).await?;
    let (t, products) = (target.clone(), store.products.clone());
    let make: MakeRequest = Arc::new(move |i| {
        let n = sids.len() as u64;
        let product = &products[((i / n) as usize) % products.len()];
        setup::add_to_cart_request(&t, &sids[(i % n) as usize], product)
    });
    Ok(throughput_and_latency(common, "w3", "W3 durable add-to-cart", &target, node.pid, make, |a| a.status == 201).await)
}

/// W2w: shoppers that hibernated (file closed, memory freed) each asked for their page once.
async fn wake(common: &Common, node: &NodeRef) -> anyhow::Result<Row> {
    let store = setup::seed_store(&node.admin()?, &node.token, "w2w").await?;
    let target = node.shop(&store)?;
    let sids = setup::session_ids("w2w", common.shoppers);
    eprintln!("[w2w] creating {} shoppers, then waiting for them to hibernate", sids.len());
    setup::create_shoppers(&target, &store, &sids, true, common.connections).await?;
    wait_for_live(node, 0, Duration::from_secs(120)).await?;
    let t = target.clone();
    let make: MakeRequest = Arc::new(move |i| setup::page_request(&t, "/", Some(&sids[i as usize])));
    let phase = Phase {
        connections: common.connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(600),
        rate: Some(common.wake_rate),
        max_requests: Some(common.shoppers as u64),
    };
    let m = driver::run(&target, &phase, make, personal_page, node.pid).await;
    let mode = format!("open loop {:.0}/s, one request per hibernated shopper, {} conns", common.wake_rate, common.connections);
    Ok(Row::from_measured("w2w", "W2w wake hibernated", mode, &m).p99_under(3.0))
}

/// Waits until `want` shoppers are live and no actor is still activating or passivating: a
/// passivating shopper has not closed (or saved its pages to) its file yet.
async fn wait_for_live(node: &NodeRef, want: u64, timeout: Duration) -> anyhow::Result<()> {
    let admin = node.admin()?;
    let deadline = Instant::now() + timeout;
    loop {
        let (live, changing) = setup::live_and_changing(&admin).await?;
        if live == want && changing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{live} live shoppers after {timeout:?}, waiting for {want}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn fsync_row(id: &str, name: &str, c: &ceilings::FsyncCeiling) -> Row {
    Row {
        id: id.into(),
        workload: name.into(),
        mode: format!("{} thread(s), 4 KiB overwrite + fdatasync", c.files),
        ok: c.ops,
        errors: 0,
        throughput_rps: c.rate(),
        p50_ms: c.hist.value_at_quantile(0.5) as f64 / 1e3,
        p90_ms: c.hist.value_at_quantile(0.9) as f64 / 1e3,
        p99_ms: c.hist.value_at_quantile(0.99) as f64 / 1e3,
        max_ms: c.hist.max() as f64 / 1e3,
        // The syncing threads' own CPU per operation: the floor under W3's CPU per request.
        node_cpu_us_per_req: Some(c.cpu_us_per_op()),
        notes: "CPU column: the syncing threads' own CPU per operation, no node involved".into(),
        ..Default::default()
    }
}

/// Waits until the kernel has written back what the workloads before left dirty (their nodes'
/// unsynced commits, the ceilings' files): a workload's own fsyncs would otherwise queue behind
/// that writeback, and its latency would measure its predecessor.
async fn settle_disk() {
    let _ = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Hello-world actix-web under the open loop of another workload's latency phase.
async fn hello_open_loop(common: &Common, dir: &std::path::Path, rate: f64) -> anyhow::Result<Row> {
    let hello = Spawned::hello(dir)?;
    let target = Target::parse(&hello.base_url, "hello.localhost".into())?;
    let t = target.clone();
    let make: MakeRequest = Arc::new(move |_| setup::page_request(&t, "/", None));
    let phase = Phase { rate: Some(rate), ..common.phase() };
    eprintln!("[ceiling-http] open loop at {rate:.0}/s");
    let m = driver::run(&target, &phase, make, |a| a.status == 200, Some(hello.pid)).await;
    let mode = format!("open loop {rate:.0}/s (W1's latency phase), {} conns", phase.connections);
    Ok(Row::from_measured("ceiling-http@w1", "hello-world actix-web", mode, &m))
}

async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let common = &args.common;
    const KNOWN: [&str; 12] = ["ceilings", "w1", "w1b", "w2", "w2p", "w3", "w2w", "w4", "s1", "s2", "w5", "f1"];
    if let Some(unknown) = args.workloads.iter().find(|w| !KNOWN.contains(&w.as_str())) {
        bail!("unknown workload {unknown:?}; the suite runs {}", KNOWN.join(","));
    }
    // W2 and W2p share their setup and run together.
    let wants = |w: &str| args.workloads.iter().any(|x| x == w || (w == "w2" && x == "w2p"));
    let bin = std::fs::canonicalize(&args.vitrina_bin).with_context(|| format!("node binary {}", args.vitrina_bin.display()))?;
    std::fs::create_dir_all(&args.work_dir)?;
    let dir = |name: &str| args.work_dir.join(name);
    let mut report = Report::default();
    let (mut http, mut fsync_parallel, mut fsync_create) = (None, None, None);

    if wants("ceilings") {
        let hello = Spawned::hello(&dir("hello"))?;
        let target = Target::parse(&hello.base_url, "hello.localhost".into())?;
        let t = target.clone();
        let make: MakeRequest = Arc::new(move |_| setup::page_request(&t, "/", None));
        eprintln!("[ceiling-http] closed loop");
        let phase = common.phase();
        let m = driver::run(&target, &phase, make, |a| a.status == 200, Some(hello.pid)).await;
        let row = Row::from_measured("ceiling-http", "hello-world actix-web", closed_mode(&phase), &m);
        http = Some(row.clone());
        report.rows.push(row);
        drop(hello);

        let d = Duration::from_secs_f64(common.duration.min(5.0));
        let fsync_dir = dir("fsync");
        let files = args.fsync_files;
        eprintln!("[ceiling-fsync] 1 and {files} files");
        let (serial, parallel, create) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            Ok((
                ceilings::fsync_ceiling(&fsync_dir, 1, d, SyncKind::Overwrite)?,
                ceilings::fsync_ceiling(&fsync_dir, files, d, SyncKind::Overwrite)?,
                ceilings::fsync_ceiling(&fsync_dir, files, d, SyncKind::Create)?,
            ))
        })
        .await??;
        report.rows.push(fsync_row("ceiling-fsync-1", "fsync, one file", &serial));
        let row = fsync_row(&format!("ceiling-fsync-{files}"), &format!("fsync, {files} files in parallel"), &parallel);
        fsync_parallel = Some(row.clone());
        report.rows.push(row);
        let mut row = fsync_row(&format!("ceiling-create-{files}"), &format!("new file + fsync, {files} threads"), &create);
        row.mode = format!("{files} threads, create + 4 KiB write + fsync");
        fsync_create = Some(row.clone());
        report.rows.push(row);
    }

    if wants("w1") {
        settle_disk().await;
        let node = Spawned::node(&bin, &dir("node-w1"), &[])?;
        match warm_page(common, "w1", "W1 warm personalised page", &NodeRef::of(&node)).await {
            Ok((max, lat)) => {
                report.rows.push(max.against(http.as_ref(), Some(0.5)));
                let rate = lat.throughput_rps;
                report.rows.push(lat.p99_under(2.0));
                drop(node);
                if wants("ceilings") {
                    // The latency floor of this box at that rate: the same open loop against
                    // the hello-world server (load generator and server share the cores).
                    report.rows.push(hello_open_loop(common, &dir("hello-w1"), rate).await?);
                }
            }
            Err(e) => report.skipped.push(format!("W1 failed: {e:#}")),
        }
    }
    if wants("w1b") {
        settle_disk().await;
        let env = [("VITRINA_CACHE__PERSONAL_HTML_TTL_SECS", "0".to_string())];
        let node = Spawned::node(&bin, &dir("node-w1b"), &env)?;
        match warm_page(common, "w1b", "W1b warm page, HTML cache off", &NodeRef::of(&node)).await {
            Ok((max, lat)) => {
                report.rows.push(max.against(http.as_ref(), Some(0.6)));
                report.rows.push(lat.against(http.as_ref(), None));
            }
            Err(e) => report.skipped.push(format!("W1b failed: {e:#}")),
        }
    }
    if wants("w2") {
        // Short idle timeout: thousands of new actors per phase would otherwise all keep their
        // isolates (~1.6 MiB each) for the default 120 s.
        let env = [("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", args.short_idle_secs.to_string())];
        // W2's requests are plain page views (the HTTP ceiling applies); every W2p request
        // creates a file (the create + fsync rate is its disk ceiling).
        for (first_write, name, ceiling) in [(false, "w2", &http), (true, "w2p", &fsync_create)] {
            settle_disk().await;
            let node = Spawned::node(&bin, &dir(&format!("node-{name}")), &env)?;
            match cold_actor(common, &NodeRef::of(&node), first_write).await {
                Ok((max, lat)) => {
                    let max = max.against(ceiling.as_ref(), None);
                    // ≥ 1,000 new sessions/s per core: at most 1 ms of the node's CPU each.
                    report.rows.push(if first_write { max.cpu_at_most(1000.0) } else { max });
                    report.rows.push(lat.p99_under(5.0));
                }
                Err(e) => report.skipped.push(format!("{} failed: {e:#}", name.to_uppercase())),
            }
        }
    }
    if wants("w3") {
        settle_disk().await;
        let env = [("VITRINA_SHOPPER__MAX_QUANTITY", "1000000000".to_string())];
        let node = Spawned::node(&bin, &dir("node-w3"), &env)?;
        match add_to_cart(common, &NodeRef::of(&node)).await {
            Ok((max, lat)) => {
                report.rows.push(max.against(fsync_parallel.as_ref(), Some(0.5)).cpu_at_most(100.0));
                report.rows.push(lat.against(fsync_parallel.as_ref(), None).p99_under(5.0));
            }
            Err(e) => report.skipped.push(format!("W3 failed: {e:#}")),
        }
    }
    if wants("f1") {
        settle_disk().await;
        let env = [
            ("VITRINA_SHOPPER__MAX_QUANTITY", "1000000000".to_string()),
            // Per-store render bounds (the other workloads lift them): the default concurrency,
            // and render CPU per store set by `VITRINA_F1_STORE_CPU_MS_PER_SEC` (default 100).
            ("VITRINA_RENDER__STORE_MAX_CONCURRENT", "0".to_string()),
            ("VITRINA_RENDER__STORE_CPU_MS_PER_SEC", std::env::var("VITRINA_F1_STORE_CPU_MS_PER_SEC").unwrap_or_else(|_| "100".into())),
        ];
        let node = Spawned::node(&bin, &dir("node-f1"), &env)?;
        match fairness::f1(common, &NodeRef::of(&node)).await {
            Ok(rows) => report.rows.extend(rows),
            Err(e) => report.skipped.push(format!("F1 failed: {e:#}")),
        }
    }
    if wants("w2w") {
        settle_disk().await;
        let env = [("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", args.short_idle_secs.to_string())];
        let node = Spawned::node(&bin, &dir("node-w2w"), &env)?;
        match wake(common, &NodeRef::of(&node)).await {
            Ok(row) => report.rows.push(row),
            Err(e) => report.skipped.push(format!("W2w failed: {e:#}")),
        }
    }
    if wants("w4") {
        settle_disk().await;
        eprintln!("[w4] 3-node cluster, {} webhook rounds", args.w4_rounds);
        let opts = cluster::W4 { rounds: args.w4_rounds, poll: Duration::from_millis(args.w4_poll_ms), timeout: Duration::from_secs(3) };
        match cluster::w4(&bin, &dir("cluster-w4"), &opts).await {
            Ok(row) => report.rows.push(row),
            Err(e) => report.skipped.push(format!("W4 failed: {e:#}")),
        }
    }
    for (change, name) in [(cluster::Change::Join, "s1"), (cluster::Change::Drain, "s2")] {
        if !wants(name) {
            continue;
        }
        settle_disk().await;
        match change {
            cluster::Change::Join => eprintln!("[s1] 3-node cluster, a 4th node joins after {} s", args.s1_before),
            cluster::Change::Drain => eprintln!("[s2] 4-node cluster, the 4th node is drained after {} s", args.s1_before),
        }
        let opts = cluster::S1 {
            shoppers: args.s1_shoppers,
            connections: common.connections,
            warmup: Duration::from_secs_f64(common.warmup),
            before: Duration::from_secs_f64(args.s1_before),
            after_join: Duration::from_secs_f64(args.s1_after_join),
        };
        match cluster::scale(&bin, &dir(&format!("cluster-{name}")), &opts, change, http.as_ref()).await {
            Ok((rows, section)) => {
                report.rows.extend(rows);
                report.sections.push(section);
            }
            Err(e) => report.skipped.push(format!("{} failed: {e:#}", name.to_uppercase())),
        }
    }
    if wants("w5") {
        for &count in &args.w5_counts {
            settle_disk().await;
            match memory(&args, &bin, count).await {
                Ok(rows) => report.memory.extend(rows),
                Err(e) => report.skipped.push(format!("W5 at {count} actors failed: {e:#}")),
            }
        }
    }

    let md = report.markdown();
    println!("{md}");
    if let Some(p) = &common.markdown {
        std::fs::write(p, &md)?;
    }
    if let Some(p) = &common.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// W5: node RSS per shopper actor — warm without an isolate (activated by `GET /cart` as JSON,
/// which never renders), with a live isolate (after `GET /`), and hibernated (after the idle
/// timeout passivated them all).
/// Longer than the node's interval between two malloc trims (`memory::MIN_INTERVAL`, 30 s)
/// plus the time a passivated actor's isolate waits as a spare before it is deleted (at most
/// 4.5 s: `SPARE_MAX_AGE` and half of it between sweeps), and than the idle time after which a
/// render worker that hosts no isolate is recycled (10 s: `engine/worker/recycle.rs`).
const TRIM_WAIT: Duration = Duration::from_secs(38);

async fn memory(args: &SuiteArgs, bin: &std::path::Path, count: usize) -> anyhow::Result<Vec<MemRow>> {
    anyhow::ensure!(
        args.w5_idle_secs >= args.w5_isolate_idle_secs + TRIM_WAIT.as_secs() + 10,
        "--w5-idle-secs must exceed --w5-isolate-idle-secs by {} s or more, or actors passivate before the warm row is measured",
        TRIM_WAIT.as_secs() + 10
    );
    // Activating 10k actors takes tens of seconds: the first must not passivate before the last
    // is measured warm.
    let idle_secs = args.w5_idle_secs + count as u64 / 200;
    let capped = count > args.w5_live_max;
    let mut env = vec![
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", idle_secs.to_string()),
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", args.w5_isolate_idle_secs.to_string()),
    ];
    if capped {
        env.push(("VITRINA_ACTORS__MAX_LIVE_ISOLATES", args.w5_live_max.to_string()));
        env.push(("VITRINA_ACTORS__ISOLATE_MEMORY_MB", args.w5_memory_mb.to_string()));
    }
    let spawned = Spawned::node(bin, &args.work_dir.join(format!("node-w5-{count}")), &env)?;
    let node = NodeRef::of(&spawned);
    let pid = spawned.pid;
    let store = setup::seed_store(&node.admin()?, &node.token, "w5").await?;
    let target = node.shop(&store)?;
    let connections = args.common.connections;
    // Baseline: the store actor live, V8 initialised and the snapshot built by one render,
    // whose shopper has passivated again.
    let probe = setup::session_ids("w5probe", 1);
    setup::create_shoppers(&target, &store, &probe, true, 1).await?;
    wait_for_live(&node, 0, Duration::from_secs(idle_secs + 60)).await?;
    let baseline = procfs::rss_kib(pid).context("node RSS")?;

    let sids = setup::session_ids("w5", count);
    let pass =
        Phase { connections, warmup: Duration::ZERO, duration: Duration::from_secs(600), rate: None, max_requests: Some(count as u64) };
    let started = Instant::now();
    // A cart line each: the actor has state, its file and an open connection, and has never
    // rendered (a session without state would cost no file and no connection at all).
    let (t, s, products) = (target.clone(), sids.clone(), store.products.clone());
    let cart: MakeRequest = Arc::new(move |i| setup::add_to_cart_request(&t, &s[i as usize], &products[i as usize % products.len()]));
    let m = driver::run(&target, &pass, cart, |a| a.status == 201, None).await;
    anyhow::ensure!(m.errors == 0, "activating {count} shoppers: {} errors, first: {:?}", m.errors, m.first_error);
    let row = |state: &str, target: &str, limit_kib: Option<f64>, live: u64, per: u64, notes: String| {
        let rss = procfs::rss_kib(pid).unwrap_or(0);
        let kib_per_actor = rss.saturating_sub(baseline) as f64 / per.max(1) as f64;
        MemRow {
            actors: count,
            state: state.into(),
            live_shoppers: live,
            rss_kib: rss,
            baseline_kib: baseline,
            kib_per_actor,
            open_fds: procfs::open_fds(pid).unwrap_or(0),
            target: target.into(),
            meets_target: limit_kib.map(|l| kib_per_actor <= l),
            notes,
        }
    };
    let mut rows = Vec::new();
    let activated_in = started.elapsed().as_secs_f64();
    // The states of an actor, in order: warm (state in memory; past actors.isolate_idle_secs it
    // holds no isolate and no open file), rendered (isolate live), passivated (nothing). Each
    // is measured after the node's malloc trim (at most every 30 s) has run.
    tokio::time::sleep(Duration::from_secs(args.w5_isolate_idle_secs) + TRIM_WAIT).await;
    let live = setup::live_shoppers(&node.admin()?).await?;
    rows.push(row(
        "warm, isolate dropped",
        "≤ 64 KiB",
        Some(64.0),
        live,
        live,
        format!(
            "activated by one POST /cart/items each in {activated_in:.1} s, then idle past actors.isolate_idle_secs = {} and a malloc trim: no isolate, SQLite file closed, cart in memory",
            args.w5_isolate_idle_secs
        ),
    ));
    let (t, s) = (target.clone(), sids.clone());
    let page: MakeRequest = Arc::new(move |i| setup::page_request(&t, "/", Some(&s[i as usize])));
    let rendering = Instant::now();
    let m = driver::run(&target, &pass, page, personal_page, None).await;
    anyhow::ensure!(m.errors == 0, "rendering {count} pages: {} errors, first: {:?}", m.errors, m.first_error);
    let rendered_in = rendering.elapsed().as_secs_f64();
    let live = setup::live_shoppers(&node.admin()?).await?;
    if !capped {
        rows.push(row(
            "live isolate",
            "≤ 2048 KiB",
            Some(2048.0),
            live,
            live,
            "after GET / (isolate + its rendered page in the personal HTML cache)".into(),
        ));
    } else {
        // Measured after the node's malloc trim, like the other rows, with the budget's worth
        // of isolates still live: the most recently rendered shoppers (the last of `sids`) are
        // kept active meanwhile by a JSON cart read, which reaches the actor and renders
        // nothing.
        let keep: Arc<Vec<String>> = Arc::new(sids[count.saturating_sub(args.w5_live_max)..].to_vec());
        let pings = Phase { max_requests: Some(keep.len() as u64), ..pass.clone() };
        let waited = Instant::now();
        while waited.elapsed() < TRIM_WAIT {
            let (t, k) = (target.clone(), keep.clone());
            let ping: MakeRequest = Arc::new(move |i| setup::cart_json_request(&t, &k[i as usize]));
            let m = driver::run(&target, &pings, ping, |a| a.status == 200, None).await;
            anyhow::ensure!(m.errors == 0, "keeping {} shoppers active: {} errors, first: {:?}", keep.len(), m.errors, m.first_error);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let health = setup::health(&node.admin()?).await?;
        let isolates = health["liveIsolates"].as_i64().unwrap_or(-1);
        let counted_mib = health["isolateBytes"].as_f64().unwrap_or(-1.0) / 1048576.0;
        let pooled_mib = health["pooledIsolateBytes"].as_f64().unwrap_or(-1.0) / 1048576.0;
        // What the budget promises: all isolates (live, spare and ready) within the byte
        // budget, plus what a rendered actor keeps outside its isolate (its cart, its SQLite
        // connection while open, its cached pages: the warm row's 64 KiB target, ~55 KiB
        // measured).
        let limit = (args.w5_memory_mb as f64 * 1024.0 + count as f64 * 64.0) / count as f64;
        rows.push(row(
            &format!("rendered, isolate budget {} MiB", args.w5_memory_mb),
            &format!("≤ {limit:.0} KiB ({} MiB + 64 KiB each)", args.w5_memory_mb),
            Some(limit),
            live,
            count as u64,
            format!(
                "after GET / for all {count} in {rendered_in:.1} s on a node with actors.isolate_memory_mb = {} (and actors.max_live_isolates = {}), then {} s with the last {} kept active (GET /cart as JSON every 5 s) and a malloc trim: {isolates} isolates live when measured, counted at {counted_mib:.0} MiB ({pooled_mib:.0} MiB of them spare or ready); per actor is over all {count}",
                args.w5_memory_mb,
                args.w5_live_max,
                TRIM_WAIT.as_secs(),
                keep.len()
            ),
        ));
    }
    wait_for_live(&node, 0, Duration::from_secs(idle_secs + 120)).await?;
    tokio::time::sleep(TRIM_WAIT).await;
    // Back where it started: within 10 % of the baseline, whatever the run went through.
    let hibernated_limit = 0.1 * baseline as f64 / count as f64;
    rows.push(row(
        "hibernated",
        "≤ 1.1 × baseline",
        Some(hibernated_limit),
        0,
        count as u64,
        format!("all passivated, measured {} s later (after the node's malloc trim and the render workers' idle trim or recycling); what the allocators still hold counts here, as does the node-wide personal HTML cache (TTL 60 s)", TRIM_WAIT.as_secs()),
    ));
    Ok(rows)
}

async fn run_external(args: RunArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let node = NodeRef { base_url: args.nodes.first().context("--nodes")?.clone(), pid: args.pid, token: args.operator_token.clone() };
    if args.nodes.len() > 1 {
        eprintln!("note: {} nodes given; these workloads use the first (W4/S1/S2 run in `suite` on clusters it starts)", args.nodes.len());
    }
    let mut report = Report::default();
    for w in &args.workloads {
        match w.as_str() {
            "w1" | "w1b" => {
                let (max, lat) = warm_page(common, w, w, &node).await?;
                report.rows.extend([max, lat]);
            }
            "w2" | "w2p" => {
                let (max, lat) = cold_actor(common, &node, w == "w2p").await?;
                report.rows.extend([max, lat]);
            }
            "w3" => {
                let (max, lat) = add_to_cart(common, &node).await?;
                report.rows.extend([max, lat]);
            }
            "w2w" => report.rows.push(wake(common, &node).await?),
            "f1" => report.rows.extend(fairness::f1(common, &node).await?),
            other => bail!("unknown workload {other:?} for run (suite runs ceilings, w4, s1 and w5)"),
        }
    }
    let md = report.markdown();
    println!("{md}");
    if let Some(p) = &common.markdown {
        std::fs::write(p, &md)?;
    }
    if let Some(p) = &common.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
