//! Cluster workloads on a local cluster the suite starts (a one-member etcd, then `vitrina serve
//! --cluster` / `--join` on 127.0.0.1); each reports how long its nodes took to acquire shards in
//! etcd (`vitrina_shard_acquire_ms`, summed over the nodes):
//!
//! - **W4 webhook → fresh page**: a signed Shopify `products/update` changes a price through one
//!   node (rotating); one shopper owned by each node has its personalised page polled through
//!   another node until it shows the new price. Latency = from the webhook's 200 to the answer
//!   that showed the new price, for the slowest of the three shoppers in the round.
//! - **S1 scale-out**: warm personalised pages of a few hundred shoppers through the three entry
//!   nodes (closed loop, keep-alive) while a fourth node joins; errors, 503 retries, the fraction
//!   of shoppers whose serving node changed, time to settle, and throughput/latency before,
//!   during and after.
//! - **S2 scale-in**: the same load over four nodes while the operator drains the fourth
//!   (`vitrina cluster drain n4`), its shoppers moving back to the three others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{Answer, Body, Conn, Target};
use crate::report::Row;
use crate::setup;
use crate::spawn::{Spawned, CLUSTER_SECRET, OPERATOR_TOKEN};
use test_support::etcd::EtcdCluster;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1e3
}

fn addr_of(node: &Spawned) -> anyhow::Result<SocketAddr> {
    Ok(Target::parse(&node.base_url, String::new())?.addr)
}

fn admin_target(addr: SocketAddr) -> Target {
    Target { addr, host: addr.to_string() }
}

/// A local cluster on a one-member etcd: `n1` started with `--cluster`, the others `--join` it.
pub struct Cluster {
    pub nodes: Vec<Spawned>,
    pub addrs: Vec<SocketAddr>,
    bin: PathBuf,
    dir: PathBuf,
    /// Dropped after the nodes (fields drop in order): they leave while etcd still answers.
    etcd: EtcdCluster,
}

impl Cluster {
    pub async fn start(bin: &Path, dir: &Path, n: usize) -> anyhow::Result<Cluster> {
        let etcd = EtcdCluster::start(1)
            .await
            .context("the cluster workloads need etcd: install etcd-server (Debian) or set VITRINA_TEST_ETCD_BIN")?;
        let mut cluster = Cluster { nodes: Vec::new(), addrs: Vec::new(), bin: bin.to_path_buf(), dir: dir.to_path_buf(), etcd };
        for _ in 0..n {
            cluster.add_node().await?;
        }
        cluster.wait_active(n, Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Starts the next node (`n{k}`), joining `n1` unless it is the first; does not wait for it
    /// to become active.
    pub async fn add_node(&mut self) -> anyhow::Result<()> {
        let k = self.nodes.len() + 1;
        let (bin, dir) = (self.bin.clone(), self.dir.join(format!("n{k}")));
        let seed = self.addrs.first().map(|a| a.to_string());
        let env = [("VITRINA_CLUSTER__ETCD__ENDPOINTS", self.etcd.endpoints_csv())];
        let node =
            tokio::task::spawn_blocking(move || Spawned::cluster_node(&bin, &dir, &format!("n{k}"), seed.as_deref(), &env)).await??;
        self.addrs.push(addr_of(&node)?);
        self.nodes.push(node);
        Ok(())
    }

    /// Waits until every node's view has `active` active members.
    pub async fn wait_active(&self, active: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in &self.addrs {
            loop {
                let seen = match get_json(*addr, "/cluster/status").await {
                    Ok(s) => s["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["state"] == "active").count()),
                    Err(_) => 0,
                };
                if seen == active {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {addr} sees {seen} active members after {timeout:?}, waiting for {active}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Drains node `id` the way an operator does (`vitrina cluster drain`, through `n1`); returns
    /// once the cluster accepted it (its actors then move).
    pub async fn drain(&self, id: &str) -> anyhow::Result<()> {
        let mut cli = std::process::Command::new(&self.bin);
        cli.args(["cluster", "drain", id, "--config", "/nonexistent/vitrina.toml", "--via", &self.addrs[0].to_string()])
            .env("VITRINA_CLUSTER__SECRET", CLUSTER_SECRET);
        let out = tokio::task::spawn_blocking(move || cli.output()).await??;
        ensure!(out.status.success(), "cluster drain {id}: {}", String::from_utf8_lossy(&out.stderr).trim());
        Ok(())
    }

    /// Waits until none of `watchers` lists member `id` any more (a drained node has left).
    pub async fn wait_gone(&self, id: &str, watchers: &[SocketAddr], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in watchers {
            loop {
                let listed = match get_json(*addr, "/cluster/status").await {
                    Ok(s) => s["members"].as_array().is_none_or(|m| m.iter().any(|m| m["id"] == id)),
                    Err(_) => true,
                };
                if !listed {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {addr} still lists {id} after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// How long shard acquisitions in etcd took on all nodes so far, from their
    /// `vitrina_shard_acquire_ms` histograms: a line for the report.
    pub async fn acquire_latency(&self) -> String {
        let mut buckets: BTreeMap<String, u64> = BTreeMap::new();
        for addr in &self.addrs {
            let Ok(text) = get_text(*addr, "/metrics").await else { continue };
            for (le, n) in acquire_buckets(&text) {
                *buckets.entry(le).or_default() += n;
            }
        }
        let buckets: Vec<(f64, u64)> =
            buckets.into_iter().filter_map(|(le, n)| Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, n))).collect();
        let count = buckets.iter().find(|(le, _)| le.is_infinite()).map_or(0, |(_, n)| *n);
        if count == 0 {
            return "shard acquisitions in etcd: none recorded".into();
        }
        let q = |q: f64| bucket_quantile(&buckets, q).map_or("over the top bucket".into(), |v| format!("{v:.1} ms"));
        format!(
            "shard acquisitions in etcd (all nodes, `vitrina_shard_acquire_ms`, quantiles interpolated within buckets): {count}, p50 {}, p99 {}",
            q(0.5),
            q(0.99)
        )
    }
}

/// `(le, cumulative count)` of every `vitrina_shard_acquire_ms_bucket` line of a `/metrics` text.
fn acquire_buckets(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("vitrina_shard_acquire_ms_bucket{")?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let le = labels.split(',').find_map(|l| l.strip_prefix("le=\""))?.trim_end_matches('"').to_string();
            Some((le, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The `q` quantile of a cumulative histogram (bounds ascending, the last `+Inf`), interpolated
/// linearly within its bucket as Prometheus' `histogram_quantile` does; `None` when it falls in
/// the `+Inf` bucket.
fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let mut sorted = buckets.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.last()?.1 as f64;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, n) in sorted {
        let n = n as f64;
        if n >= rank {
            if le.is_infinite() {
                return None;
            }
            let within = n - below;
            return Some(if within > 0.0 { lower + (le - lower) * (rank - below) / within } else { le });
        }
        (lower, below) = (le, n);
    }
    None
}

async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&get_text(addr, path).await?)?)
}

async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let t = admin_target(addr);
    let mut conn = Conn::new(addr);
    // `/cluster/status` and `/metrics` are the operator's.
    let bearer = format!("Bearer {}", crate::spawn::OPERATOR_TOKEN);
    let a = conn
        .send(|| t.request(Method::GET, path).header("authorization", bearer.as_str()).body(Body::default()).expect("valid request"))
        .await?;
    ensure!(a.status == 200, "GET {path}: HTTP {}", a.status);
    Ok(String::from_utf8_lossy(&a.body).into_owned())
}

/// `nK` → K (the suite names its nodes so); 0 when unknown.
fn node_index(node: Option<&str>) -> u8 {
    node.and_then(|n| n.strip_prefix('n')).and_then(|k| k.parse().ok()).unwrap_or(0)
}

fn shopify_signature(secret: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

const WEBHOOK_SECRET: &str = "loadtest-webhook-secret-0123456789";

/// Sends a signed Shopify `products/update` for product 42 at `price` (`updated_at` grows with
/// `round`) and returns how long the 200 took.
async fn send_webhook(conn: &mut Conn, domain: &str, run: u32, round: usize, price: &str) -> anyhow::Result<Duration> {
    let secs = round as u64 + 1;
    let body = Bytes::from(
        json!({"id": 42, "title": "Lantern", "handle": "lantern", "body_html": "A lantern", "tags": "camp",
               "updated_at": format!("2026-11-02T{:02}:{:02}:{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60),
               "variants": [{"id": 420, "price": price, "inventory_quantity": 10, "inventory_item_id": 4200}], "images": []})
        .to_string(),
    );
    let sig = shopify_signature(WEBHOOK_SECRET, &body);
    let t = admin_target(conn.addr());
    let id = format!("lt-w4-{run:08x}-{round}");
    let started = Instant::now();
    let a = conn
        .send(|| {
            t.request(Method::POST, "/webhooks/shopify")
                .header("content-type", "application/json")
                .header("x-shopify-shop-domain", domain)
                .header("x-shopify-topic", "products/update")
                .header("x-shopify-webhook-id", &id)
                .header("x-shopify-hmac-sha256", &sig)
                .body(Body::new(body.clone()))
                .expect("valid webhook")
        })
        .await?;
    let text = String::from_utf8_lossy(&a.body).into_owned();
    ensure!(a.status == 200 && text.contains("applied"), "webhook round {round}: HTTP {}: {text}", a.status);
    Ok(started.elapsed())
}

/// W4 settings.
pub struct W4 {
    pub rounds: usize,
    pub poll: Duration,
    /// A round fails when a shopper's page still shows the old price this long after the 200.
    pub timeout: Duration,
}

/// W4: webhook → new price on every node's personalised page.
pub async fn w4(bin: &Path, dir: &Path, opts: &W4) -> anyhow::Result<Row> {
    let cluster = Cluster::start(bin, dir, 3).await?;
    let n = cluster.addrs.len();
    let store = format!("w4-{:06}", rand::random::<u32>() % 1_000_000);
    let domain = format!("{store}.myshopify.com");
    let admin0 = admin_target(cluster.addrs[0]);
    let mut conn = Conn::new(cluster.addrs[0]);
    let created = setup::admin(
        &mut conn,
        &admin0,
        OPERATOR_TOKEN,
        Method::POST,
        "/stores",
        Some(&json!({"id": store, "name": "W4 Shop", "currency": "USD"})),
    )
    .await?;
    let token = created["adminToken"].as_str().context("adminToken")?.to_string();
    let page = json!({"title": "Home", "blocks": [
        {"type": "hero", "config": {"heading": "W4 home"}},
        {"type": "product-grid", "config": {"title": "All", "limit": 10}},
    ]});
    setup::admin(&mut conn, &admin0, &token, Method::PUT, &format!("/stores/{store}/pages/home"), Some(&page)).await?;
    setup::admin(&mut conn, &admin0, &token, Method::POST, &format!("/stores/{store}/pages/home/publish"), None).await?;
    let admin1 = admin_target(cluster.addrs[1 % n]);
    let mut conn1 = Conn::new(admin1.addr);
    setup::admin(
        &mut conn1,
        &admin1,
        &token,
        Method::PUT,
        &format!("/stores/{store}/webhooks"),
        Some(&json!({"secret": WEBHOOK_SECRET, "shopifyDomain": domain})),
    )
    .await?;

    let mut hook_conns: Vec<Conn> = cluster.addrs.iter().map(|a| Conn::new(*a)).collect();
    let run: u32 = rand::random();
    let price_of = |round: usize| format!("{}.37", 100 + round % 800);
    let needle = |round: usize| format!("${}", price_of(round));
    send_webhook(&mut hook_conns[0], &domain, run, 0, &price_of(0)).await?;

    // One shopper owned by each node: try session ids until every node owns one.
    let shop = |i: usize| Target { addr: cluster.addrs[i], host: format!("{store}.localhost") };
    let mut shoppers: Vec<Option<String>> = vec![None; n];
    let mut probe = Conn::new(cluster.addrs[0]);
    for i in 0..500 {
        let sid = format!("lt-w4-{run:08x}-s{i}");
        let t = shop(0);
        let a = probe.send(|| setup::page_request(&t, "/", Some(&sid))).await?;
        ensure!(a.status == 200, "W4 shopper page: HTTP {}", a.status);
        let owner = node_index(a.node.as_deref()) as usize;
        if (1..=n).contains(&owner) && shoppers[owner - 1].is_none() {
            ensure!(String::from_utf8_lossy(&a.body).contains(&needle(0)), "the W4 page does not show the product's price");
            shoppers[owner - 1] = Some(sid);
        }
        if shoppers.iter().all(Option::is_some) {
            break;
        }
    }
    let shoppers: Vec<String> = shoppers
        .into_iter()
        .enumerate()
        .map(|(k, s)| s.with_context(|| format!("no shopper owned by n{}", k + 1)))
        .collect::<anyhow::Result<_>>()?;
    // Every (shopper, entry) pair gets its own keep-alive connection, opened and warmed now.
    let mut conns: Vec<Vec<Conn>> = shoppers.iter().map(|_| cluster.addrs.iter().map(|a| Conn::new(*a)).collect()).collect();
    for (s, sid) in shoppers.iter().enumerate() {
        for (e, c) in conns[s].iter_mut().enumerate() {
            let t = shop(e);
            c.send(|| setup::page_request(&t, "/", Some(sid))).await?;
        }
    }

    let (mut all, mut hook) = (histogram(), histogram());
    let mut per_owner: Vec<Histogram<u64>> = (0..n).map(|_| histogram()).collect();
    let (mut ok, mut failed, mut polls) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    let started = Instant::now();
    for round in 1..=opts.rounds {
        let entry = round % n;
        let took = match send_webhook(&mut hook_conns[entry], &domain, run, round, &price_of(round)).await {
            Ok(d) => d,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
                continue;
            }
        };
        let acknowledged = Instant::now();
        let _ = hook.record(took.as_micros().max(1) as u64);
        let want = needle(round);
        let pollers = conns.iter_mut().enumerate().map(|(s, row)| {
            // Through a node other than the shopper's owner (alternating between the others).
            let e = (s + 1 + round % (n - 1).max(1)) % n;
            let (conn, t, sid, want) = (&mut row[e], shop(e), &shoppers[s], &want);
            async move {
                let mut count = 0u64;
                loop {
                    count += 1;
                    let a: anyhow::Result<Answer> = conn.send(|| setup::page_request(&t, "/", Some(sid))).await;
                    if let Ok(a) = a {
                        if a.status == 200 && String::from_utf8_lossy(&a.body).contains(want.as_str()) {
                            return (Some(acknowledged.elapsed()), count);
                        }
                    }
                    if acknowledged.elapsed() > opts.timeout {
                        return (None, count);
                    }
                    tokio::time::sleep(opts.poll).await;
                }
            }
        });
        let results = futures::future::join_all(pollers).await;
        let mut worst = Duration::ZERO;
        let mut round_ok = true;
        for (s, (took, count)) in results.into_iter().enumerate() {
            polls += count;
            match took {
                Some(d) => {
                    let _ = per_owner[s].record(d.as_micros().max(1) as u64);
                    worst = worst.max(d);
                }
                None => {
                    round_ok = false;
                    first_error.get_or_insert(format!(
                        "round {round}: n{}'s shopper still showed the old price after {:?}",
                        s + 1,
                        opts.timeout
                    ));
                }
            }
        }
        if round_ok {
            ok += 1;
            let _ = all.record(worst.as_micros().max(1) as u64);
        } else {
            failed += 1;
        }
        // Let the previous round's pushes settle before the next change.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let mut notes =
        vec![format!("webhook 200 itself: p50 {:.2} ms, p99 {:.2} ms; {polls} page polls in all", ms(&hook, 0.5), ms(&hook, 0.99))];
    let owners: Vec<String> = per_owner
        .iter()
        .enumerate()
        .map(|(k, h)| format!("n{}: p50 {:.2} / p99 {:.2} / max {:.2} ms", k + 1, ms(h, 0.5), ms(h, 0.99), h.max() as f64 / 1e3))
        .collect();
    notes.push(format!("per shopper (by owner) {}", owners.join(", ")));
    notes.push(cluster.acquire_latency().await);
    if let Some(e) = first_error {
        notes.push(format!("first error: {e}"));
    }
    let row = Row {
        id: "w4".into(),
        workload: "W4 webhook → fresh page, 3 nodes".into(),
        mode: format!(
            "{} rounds, webhook to n1/n2/n3 in turn; latency = 200 → new price on all 3 shoppers' pages (one owned by each node, polled every {} ms through another node); throughput column = rounds/s",
            opts.rounds,
            opts.poll.as_millis()
        ),
        ok,
        errors: failed,
        throughput_rps: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: ms(&all, 0.5),
        p90_ms: ms(&all, 0.9),
        p99_ms: ms(&all, 0.99),
        max_ms: all.max() as f64 / 1e3,
        notes: notes.join("; "),
        ..Default::default()
    };
    drop(cluster);
    Ok(row.p99_under(50.0))
}

/// The visible text of an error page (or a JSON error as is), shortened.
fn text_of(body: &str) -> String {
    let body = body.split_once("</style>").map_or(body, |(_, rest)| rest);
    let (mut out, mut in_tag) = (String::new(), false);
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(240).collect()
}

/// What S1 and S2 change under load: through `n1`–`n3` all along, a 4th node joins (S1) or is
/// drained (S2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Join,
    Drain,
}

impl Change {
    fn id(self) -> &'static str {
        match self {
            Change::Join => "s1",
            Change::Drain => "s2",
        }
    }
    fn workload(self) -> &'static str {
        match self {
            Change::Join => "S1 scale-out 3 → 4 nodes",
            Change::Drain => "S2 scale-in 4 → 3 nodes",
        }
    }
    /// The instant answer times are counted from.
    fn event(self) -> &'static str {
        match self {
            Change::Join => "n4's start",
            Change::Drain => "the drain's start",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Change::Join => "the join",
            Change::Drain => "the drain",
        }
    }
}

/// S1 and S2 settings.
pub struct S1 {
    pub shoppers: usize,
    pub connections: usize,
    pub warmup: Duration,
    /// Measured load before the change.
    pub before: Duration,
    /// Load after the change starts (the run ends then, settled or not).
    pub after_join: Duration,
}

/// One answered (or failed) page request of S1.
#[derive(Clone, Copy)]
struct Event {
    /// Seconds since the load started, when the answer arrived.
    t: f64,
    /// Latency from the first attempt, µs (503 retries included).
    us: u64,
    shopper: u32,
    /// Final HTTP status; 0 for a connection error.
    status: u16,
    /// Serving node index (`nK` → K).
    node: u8,
    /// 503 answers retried before this one.
    retried_503: u16,
}

struct Bucket {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    retries_503: u64,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket { hist: histogram(), ok: 0, errors: 0, retries_503: 0 }
    }
    fn add(&mut self, e: &Event) {
        self.retries_503 += e.retried_503 as u64;
        if (200..300).contains(&e.status) {
            self.ok += 1;
            let _ = self.hist.record(e.us.clamp(1, 60_000_000));
        } else {
            self.errors += 1;
        }
    }
}

/// Serving node of every shopper (a `GET /` each, through the entry nodes in turn, 503s retried).
async fn owners(addrs: &[SocketAddr], store: &str, sids: &Arc<Vec<String>>, connections: usize) -> anyhow::Result<Vec<u8>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (addrs, store, sids, next) = (addrs.to_vec(), store.to_string(), sids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conns: Vec<Conn> = addrs.iter().map(|a| Conn::new(*a)).collect();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= sids.len() {
                    return anyhow::Ok(out);
                }
                let e = i % addrs.len();
                let t = Target { addr: addrs[e], host: format!("{store}.localhost") };
                let mut tries = 0;
                loop {
                    let a = conns[e].send(|| setup::page_request(&t, "/", Some(&sids[i]))).await;
                    match a {
                        Ok(a) if a.status == 200 => {
                            out.push((i, node_index(a.node.as_deref())));
                            break;
                        }
                        Ok(a) if tries < 200 && a.status == 503 => {}
                        Err(_) if tries < 200 => {}
                        Ok(a) => bail!("shopper page: HTTP {}", a.status),
                        Err(e) => return Err(e),
                    }
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let mut owners = vec![0u8; sids.len()];
    for t in tasks {
        for (i, node) in t.await?? {
            owners[i] = node;
        }
    }
    Ok(owners)
}

/// S1: a 4th node joins a 3-node cluster under warm-page load; S2: the 4th node of four is
/// drained under the same load.
pub async fn scale(bin: &Path, dir: &Path, opts: &S1, change: Change, http_ceiling: Option<&Row>) -> anyhow::Result<(Vec<Row>, String)> {
    let id = change.id();
    let mut cluster = Cluster::start(bin, dir, if change == Change::Join { 3 } else { 4 }).await?;
    let entries = cluster.addrs[..3].to_vec();
    let store = setup::seed_store(&admin_target(entries[0]), OPERATOR_TOKEN, id).await?;
    let sids = setup::session_ids(id, opts.shoppers);
    eprintln!("[{id}] creating {} shoppers with carts on {} nodes", sids.len(), cluster.addrs.len());
    let shop0 = Target { addr: entries[0], host: format!("{}.localhost", store.id) };
    setup::create_shoppers(&shop0, &store, &sids, true, opts.connections).await?;
    let before_owners = owners(&entries, &store.id, &sids, opts.connections).await?;

    // Closed loop over the 3 original entry nodes, every answer logged.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..opts.connections.max(1) {
        let (stop, next, sids) = (stop.clone(), next.clone(), sids.clone());
        let t = Target { addr: entries[w % entries.len()], host: format!("{}.localhost", store.id) };
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(t.addr);
            let mut events = Vec::new();
            let mut first_error: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let i = (next.fetch_add(1, Ordering::Relaxed) % sids.len() as u64) as usize;
                let first = Instant::now();
                let mut retried_503 = 0u16;
                let (status, node) = loop {
                    match conn.send(|| setup::page_request(&t, "/", Some(&sids[i]))).await {
                        Ok(a) if a.status == 503 && retried_503 < 500 && !stop.load(Ordering::Relaxed) => {
                            retried_503 += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(a) => {
                            if !(200..300).contains(&a.status) && first_error.is_none() {
                                let body = text_of(&String::from_utf8_lossy(&a.body));
                                first_error = Some(format!("HTTP {} from {}: {body}", a.status, a.node.as_deref().unwrap_or("?")));
                            }
                            break (a.status, node_index(a.node.as_deref()));
                        }
                        Err(e) => {
                            first_error.get_or_insert(format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            break (0, 0);
                        }
                    }
                };
                let done = Instant::now();
                events.push(Event {
                    t: done.duration_since(start).as_secs_f64(),
                    us: done.duration_since(first).as_micros() as u64,
                    shopper: i as u32,
                    status,
                    node,
                    retried_503,
                });
            }
            (events, first_error)
        }));
    }
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| test_support::procfs::cpu_time(*p)).sum::<Duration>();
    tokio::time::sleep(opts.warmup).await;
    let cpu_measure = cpu(&cluster.pids());
    let measure_from = start.elapsed().as_secs_f64();
    tokio::time::sleep(opts.before).await;
    let cpu_join = cpu(&cluster.pids());
    let join = start.elapsed().as_secs_f64();
    eprintln!("[{id}] {}", if change == Change::Join { "starting n4" } else { "draining n4" });
    let join_result = async {
        match change {
            Change::Join => cluster.add_node().await?,
            Change::Drain => cluster.drain("n4").await?,
        }
        let listening = start.elapsed().as_secs_f64();
        match change {
            Change::Join => cluster.wait_active(4, opts.after_join).await?,
            Change::Drain => cluster.wait_gone("n4", &entries, opts.after_join).await?,
        }
        anyhow::Ok((listening, start.elapsed().as_secs_f64()))
    }
    .await;
    let remaining = (join + opts.after_join.as_secs_f64() - start.elapsed().as_secs_f64()).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(remaining)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu_end_all = cpu(&cluster.pids());
    let end = start.elapsed().as_secs_f64();
    let mut events = Vec::new();
    let mut first_error = None;
    for w in workers {
        let (e, first) = w.await?;
        events.extend(e);
        first_error = first_error.or(first);
    }
    let (listening, active) = join_result?;
    let after_owners = match change {
        Change::Join => owners(&cluster.addrs, &store.id, &sids, opts.connections).await?,
        Change::Drain => owners(&entries, &store.id, &sids, opts.connections).await?,
    };

    // Moved shoppers, and whether any moved to (S1) or from (S2) another node than n4.
    let moved = before_owners.iter().zip(&after_owners).filter(|(b, a)| b != a).count();
    let odd_moves =
        before_owners.iter().zip(&after_owners).filter(|(b, a)| b != a && if change == Change::Join { **a != 4 } else { **b != 4 }).count();
    // Settled: no failed answer or 503 retry since, and every shopper served by its new owner
    // once after the join.
    let last_error = events
        .iter()
        .filter(|e| e.t >= join && (e.retried_503 > 0 || !(200..300).contains(&e.status)))
        .map(|e| e.t)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    let mut first_by_new_owner: Vec<Option<f64>> = vec![None; sids.len()];
    for e in events.iter().filter(|e| e.t >= join && (200..300).contains(&e.status)) {
        let s = e.shopper as usize;
        if e.node == after_owners[s] {
            first_by_new_owner[s] = Some(first_by_new_owner[s].map_or(e.t, |t: f64| t.min(e.t)));
        }
    }
    let all_served = first_by_new_owner.iter().all(Option::is_some);
    let settled_at = if all_served {
        let served = first_by_new_owner.iter().flatten().fold(join, |m, t| m.max(*t));
        Some(last_error.map_or(served, |l| l.max(served)))
    } else {
        None
    };
    let settle_end = settled_at.unwrap_or(end);

    let mut buckets = [Bucket::new(), Bucket::new(), Bucket::new()];
    for e in &events {
        if e.t < measure_from {
            continue;
        }
        let b = if e.t < join {
            0
        } else if e.t <= settle_end {
            1
        } else {
            2
        };
        buckets[b].add(e);
    }
    let spans = [join - measure_from, settle_end - join, end - settle_end];
    let mode = |what: &str| format!("{what}; closed loop, {} conns over n1–n3, {} shoppers", opts.connections, opts.shoppers);
    let labels = match change {
        Change::Join => [
            ("s1-before", mode("3 nodes, before the join")),
            ("s1-during", mode("from n4's start until settled")),
            ("s1-after", mode("4 nodes, after settling")),
        ],
        Change::Drain => [
            ("s2-before", mode("4 nodes, before the drain")),
            ("s2-during", mode("from the drain's start until settled")),
            ("s2-after", mode("3 nodes, after settling")),
        ],
    };
    let mut rows = Vec::new();
    for ((b, span), (id, mode)) in buckets.iter().zip(spans).zip(labels) {
        let mut notes = vec![format!("{:.1} s", span)];
        if b.retries_503 > 0 {
            notes.push(format!("{} answers 503 retried (not counted as errors)", b.retries_503));
        }
        let row = Row {
            id: id.into(),
            workload: change.workload().into(),
            mode,
            ok: b.ok,
            errors: b.errors,
            throughput_rps: if span > 0.0 { b.ok as f64 / span } else { 0.0 },
            p50_ms: ms(&b.hist, 0.5),
            p90_ms: ms(&b.hist, 0.9),
            p99_ms: ms(&b.hist, 0.99),
            max_ms: b.hist.max() as f64 / 1e3,
            notes: notes.join("; "),
            ..Default::default()
        };
        rows.push(row.against(http_ceiling, None));
    }
    // Node CPU per request (all nodes) before the join and over the rest of the run.
    if buckets[0].ok > 0 {
        rows[0].node_cpu_us_per_req = Some(cpu_join.saturating_sub(cpu_measure).as_secs_f64() * 1e6 / buckets[0].ok as f64);
    }
    let after_ok = buckets[1].ok + buckets[2].ok;
    if after_ok > 0 {
        let c = cpu_end_all.saturating_sub(cpu_join).as_secs_f64() * 1e6 / after_ok as f64;
        rows[2].notes.push_str(&format!("; node CPU µs/req (all nodes, {} to end) {c:.0}", change.noun().trim_start_matches("the ")));
    }
    let (errors, retries): (u64, u64) = (buckets[1].errors + buckets[2].errors, buckets[1].retries_503 + buckets[2].retries_503);
    rows[1].target = "0 errors (503s retried); settles".into();
    rows[1].meets_target = Some(errors == 0 && settled_at.is_some());

    let mut s = String::new();
    match change {
        Change::Join => {
            let _ = writeln!(s, "\nS1 scale-out (3 → 4 nodes, n4 started {:.1} s into the load):\n", join);
            let _ = writeln!(
                s,
                "- n4 listening {:.2} s after its start, all 4 nodes see 4 active members {:.2} s after it",
                listening - join,
                active - join
            );
        }
        Change::Drain => {
            let _ = writeln!(s, "\nS2 scale-in (4 → 3 nodes, `vitrina cluster drain n4` {:.1} s into the load):\n", join);
            let _ = writeln!(
                s,
                "- the drain accepted {:.2} s after it was asked, n1–n3 no longer list n4 {:.2} s after it",
                listening - join,
                active - join
            );
        }
    }
    let _ = writeln!(
        s,
        "- shoppers whose serving node changed: {moved} of {} ({:.1}%; 1/4 is ideal){}",
        sids.len(),
        moved as f64 * 100.0 / sids.len().max(1) as f64,
        match (odd_moves, change) {
            (0, _) => String::new(),
            (n, Change::Join) => format!(", {n} of them to a node other than n4"),
            (n, Change::Drain) => format!(", {n} of them from a node other than n4"),
        }
    );
    match settled_at {
        Some(t) => {
            let _ = writeln!(
                s,
                "- settled {:.2} s after {} (no error or 503 since, every shopper served by its new owner)",
                t - join,
                change.event()
            );
        }
        None => {
            let never = first_by_new_owner.iter().filter(|t| t.is_none()).count();
            let _ = writeln!(s, "- NOT settled within {:.1} s: {never} shoppers never served by their new owner", end - join);
        }
    }
    if let Some(t) = first_by_new_owner.iter().flatten().fold(None, |m: Option<f64>, t| Some(m.map_or(*t, |m| m.max(*t)))) {
        let _ = writeln!(s, "- every shopper served by its new owner {:.2} s after {}", t - join, change.event());
    }
    // When after the change things went wrong: 503 retries, failures and answers slower than 1 s.
    let mut late: Vec<&Event> =
        events.iter().filter(|e| e.t >= join && (e.retried_503 > 0 || !(200..300).contains(&e.status) || e.us > 1_000_000)).collect();
    late.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut late: Vec<String> = late
        .into_iter()
        .map(|e| {
            let what = if !(200..300).contains(&e.status) { format!("HTTP {}", e.status) } else { format!("{}", e.status) };
            format!("{:.2} s: {what} after {} 503 retries, {:.0} ms", e.t - join, e.retried_503, e.us as f64 / 1e3)
        })
        .collect();
    if !late.is_empty() {
        let more = late.len().saturating_sub(12);
        late.truncate(12);
        let _ = writeln!(
            s,
            "- after {}, answers with a 503 retry, an error or over 1 s (answer time after {}): {}{}",
            change.noun(),
            change.event(),
            late.join("; "),
            if more > 0 { format!("; … {more} more") } else { String::new() }
        );
    }
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| !(200..300).contains(&e.status)) {
        *statuses.entry(e.status).or_default() += 1;
    }
    let statuses: Vec<String> =
        statuses.iter().map(|(k, v)| if *k == 0 { format!("{v}× connection error") } else { format!("{v}× HTTP {k}") }).collect();
    let _ = writeln!(s, "- {}", cluster.acquire_latency().await);
    let _ = writeln!(
        s,
        "- after {}: {errors} errors{}, {retries} answers 503 retried{}",
        change.noun(),
        if statuses.is_empty() { String::new() } else { format!(" ({})", statuses.join(", ")) },
        first_error.map(|e| format!("; first error: {}", e.replace('|', "\\|").replace('\n', " "))).unwrap_or_default()
    );
    // Per-second timeline around the change.
    let mut seconds: BTreeMap<i64, Bucket> = BTreeMap::new();
    for e in events.iter().filter(|e| e.t >= measure_from) {
        let k = (e.t - join).floor() as i64;
        if (-2..=((settle_end - join).ceil() as i64 + 2).min(30)).contains(&k) {
            seconds.entry(k).or_insert_with(Bucket::new).add(e);
        }
    }
    let _ = write!(
        s,
        "\n| second after {} | ok | errors | 503 retried | p50 | p99 | max (ms) |\n|---|---|---|---|---|---|---|\n",
        change.event()
    );
    for (k, b) in &seconds {
        let _ = writeln!(
            s,
            "| {k} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            b.ok,
            b.errors,
            b.retries_503,
            ms(&b.hist, 0.5),
            ms(&b.hist, 0.99),
            b.hist.max() as f64 / 1e3
        );
    }
    drop(cluster);
    Ok((rows, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquisition_quantiles_come_from_the_nodes_buckets() {
        let text = "# TYPE vitrina_shard_acquire_ms histogram\n\
                    vitrina_shard_acquire_ms_bucket{le=\"5\"} 50\n\
                    vitrina_shard_acquire_ms_bucket{le=\"10\"} 90\n\
                    vitrina_shard_acquire_ms_bucket{le=\"25\"} 100\n\
                    vitrina_shard_acquire_ms_bucket{le=\"+Inf\"} 100\n\
                    vitrina_shard_acquire_ms_sum 600\n";
        let buckets: Vec<(f64, u64)> =
            acquire_buckets(text).into_iter().map(|(le, n)| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, n)).collect();
        assert_eq!(buckets.len(), 4);
        assert_eq!(bucket_quantile(&buckets, 0.5), Some(5.0));
        // The 99th of 100 lies in (10, 25]: 9 of its 10 observations up.
        assert!((bucket_quantile(&buckets, 0.99).unwrap() - 23.5).abs() < 1e-9);
        assert_eq!(bucket_quantile(&[(5.0, 1), (f64::INFINITY, 2)], 0.99), None);
    }
}
