//! The hostile-block corpus: every file `tests/hostile/{class}/{case}.js` is a block a hostile
//! merchant could write, published between two good library blocks on a store's home page.
//!
//! The first line of a case says what must happen:
//! - `// expect: placeholder <reason>[|<reason>…]` — the page renders as a guest and as a shopper
//!   with a cart, with the good blocks' HTML and the hostile block as its placeholder for one of
//!   the reasons (`heap-limit`, `timeout`, `error`, `output-too-large`); then the same shopper's
//!   next request and another store's page succeed, the process is alive and its RSS is back
//!   under [`RSS_BOUND_MB`] above what it was before the case.
//! - `// expect: refused <rule>[ at <line>:<column>]` — publishing the page is refused (4xx) and
//!   `POST …/blocks/validate` names the rule with a line and column (exactly these, if given).
//!
//! An optional second line `// limits: {"blockCpuMs": 5000}` sets the store's render limits for
//! that case (a hostile merchant may raise its own limits within what the node allows).
//!
//! The cases of one class run against one node. `CONTAINMENT_CLASS=strings` runs one class.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::*;

const HTML: &str = "text/html,application/xhtml+xml";

/// How far above its RSS before a case the node may stay once the case is over, in MiB.
const RSS_BOUND_MB: u64 = 160;
/// How long RSS may take to come back under the bound (freed memory is trimmed every 30 s).
const RSS_SETTLE: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Placeholder(Vec<String>),
    Refused { rule: String, at: Option<(u64, u64)> },
}

struct Case {
    class: String,
    name: String,
    code: String,
    expect: Expect,
    limits: Option<Value>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn parse_case(class: &str, path: &Path) -> Result<Case, String> {
    let code = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let mut lines = code.lines();
    let first = lines.next().unwrap_or_default();
    let expect =
        first.strip_prefix("// expect:").map(str::trim).ok_or_else(|| format!("{}: first line must be `// expect: …`", path.display()))?;
    let expect = match expect.split_once(' ') {
        Some(("placeholder", reasons)) => {
            let reasons: Vec<String> = reasons.trim().split('|').map(|r| r.trim().to_string()).collect();
            for r in &reasons {
                if !["heap-limit", "timeout", "error", "output-too-large"].contains(&r.as_str()) {
                    return Err(format!("{}: unknown placeholder reason {r:?}", path.display()));
                }
            }
            Expect::Placeholder(reasons)
        }
        Some(("refused", rest)) => {
            let mut words = rest.split_whitespace();
            let rule = words.next().ok_or_else(|| format!("{}: refused needs a rule", path.display()))?.to_string();
            let at = match (words.next(), words.next()) {
                (Some("at"), Some(pos)) => {
                    let (l, c) = pos.split_once(':').ok_or_else(|| format!("{}: position must be line:column", path.display()))?;
                    Some((
                        l.parse().map_err(|_| format!("{}: bad line", path.display()))?,
                        c.parse().map_err(|_| format!("{}: bad column", path.display()))?,
                    ))
                }
                (None, _) => None,
                _ => return Err(format!("{}: expected `refused <rule> [at L:C]`", path.display())),
            };
            Expect::Refused { rule, at }
        }
        _ => return Err(format!("{}: expected `placeholder <reason>` or `refused <rule>`, got {expect:?}", path.display())),
    };
    let limits = match lines.next().and_then(|l| l.strip_prefix("// limits:")) {
        Some(json) => Some(serde_json::from_str(json.trim()).map_err(|e| format!("{}: limits: {e}", path.display()))?),
        None => None,
    };
    Ok(Case { class: class.to_string(), name, code, expect, limits })
}

/// Every class directory and its cases, sorted.
fn corpus() -> Vec<(String, Vec<Case>)> {
    let only = std::env::var("CONTAINMENT_CLASS").ok();
    let mut classes: Vec<PathBuf> =
        std::fs::read_dir(corpus_dir()).expect("tests/hostile").filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_dir()).collect();
    classes.sort();
    let mut out = Vec::new();
    for dir in classes {
        let class = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if only.as_ref().is_some_and(|o| !o.split(',').any(|c| c == class)) {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("class dir")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "js"))
            .collect();
        files.sort();
        let cases = files.iter().map(|f| parse_case(&class, f).unwrap_or_else(|e| panic!("{e}"))).collect();
        out.push((class, cases));
    }
    out
}

#[test]
fn every_case_file_states_its_expectation() {
    let corpus = corpus();
    assert!(corpus.iter().map(|(_, cases)| cases.len()).sum::<usize>() > 0, "no cases under {}", corpus_dir().display());
}

/// Resident and peak resident set of the node and its render workers, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    (test_support::procfs::rss_kib(pid).unwrap_or(0), test_support::procfs::peak_rss_kib(pid).unwrap_or(0))
}

/// Resets the peak RSS the kernel keeps for the node and its workers, so each case's peak is its own.
fn reset_peak(pid: u32) {
    test_support::procfs::reset_peak(pid);
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| s.lines().any(|l| l.starts_with("State:") && !l.contains("zombie") && !l.contains("dead")))
        .unwrap_or(false)
}

struct ClassNode {
    node: TestNode,
    token: String,
    store: String,
}

const OTHER: &str = "calm";

async fn start_class_node(class: &str) -> ClassNode {
    // Cases may raise their store's limits past the default operator maxima, and run back to
    // back on one store: the node allows both (per-store CPU fairness is tests/it/fairness.rs).
    let node = TestNode::start_with(&[
        ("VITRINA_RENDER__MAX_BLOCK_CPU_MS", "10000"),
        ("VITRINA_RENDER__MAX_PAGE_CPU_MS", "30000"),
        ("VITRINA_RENDER__STORE_CPU_MS_PER_SEC", "0"),
    ]);
    let store = format!("h-{}", class.replace('_', "-")).chars().take(60).collect::<String>();
    let token = node.seed_store(&store, "Hostile Host").await;
    node.seed_store(OTHER, "Calm Neighbour").await;
    ClassNode { node, token, store }
}

async fn get_html(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let res = client.get(url).header(ACCEPT, HTML).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status();
    (status, res.text().await.unwrap_or_default())
}

/// Checks a rendered home page: both good blocks are there and the hostile one is a placeholder
/// for one of `reasons`. Returns the reason seen.
fn check_page(who: &str, status: StatusCode, html: &str, reasons: &[String]) -> Result<String, String> {
    if status != StatusCode::OK {
        return Err(format!("{who}: status {status}"));
    }
    if !html.contains("data-type=\"hero\"") || !html.contains("Welcome to Hostile Host") {
        return Err(format!("{who}: the hero block is missing"));
    }
    if !html.contains("data-type=\"product-grid\"") || !html.contains("Enamel Mug") {
        return Err(format!("{who}: the product grid is missing"));
    }
    let failed = html.matches("class=\"v-block v-block-failed\"").count();
    if failed != 1 {
        let custom = html.find("data-type=\"custom\"").map(|at| html[at..].chars().take(300).collect::<String>()).unwrap_or_default();
        return Err(format!("{who}: {failed} failed blocks, expected exactly the hostile one: {custom}"));
    }
    let seen = html.split("(custom) failed: ").nth(1).and_then(|rest| rest.split(" -->").next()).unwrap_or("").to_string();
    if !reasons.contains(&seen) {
        let custom = html.find("data-type=\"custom\"").map(|at| html[at..].chars().take(300).collect::<String>()).unwrap_or_default();
        return Err(format!("{who}: placeholder reason {seen:?}, expected one of {reasons:?}: {custom}"));
    }
    Ok(seen)
}

async fn publish(cn: &ClassNode, case: &Case) -> (StatusCode, Value) {
    let page = json!({"title": "Home", "blocks": [
        {"type": "hero", "config": {"heading": "Welcome to Hostile Host"}},
        {"type": "custom", "code": case.code, "config": {}},
        {"type": "product-grid", "config": {"title": "Everything", "limit": 12}},
    ]});
    let (s, b) = cn.node.admin(&cn.token, Method::PUT, &format!("/stores/{}/pages/home", cn.store), Some(page)).await;
    assert!(s.is_success(), "{}/{}: PUT page: {s} {b}", case.class, case.name);
    cn.node.admin(&cn.token, Method::POST, &format!("/stores/{}/pages/home/publish", cn.store), None).await
}

async fn set_limits(cn: &ClassNode, limits: Value) -> Result<(), String> {
    let (s, b) = cn.node.admin(&cn.token, Method::PATCH, &format!("/stores/{}/settings", cn.store), Some(json!({"limits": limits}))).await;
    if s.is_success() {
        Ok(())
    } else {
        Err(format!("setting limits: {s} {b}"))
    }
}

/// Runs one placeholder case; `Ok(detail)` when every assertion held.
async fn run_placeholder(cn: &ClassNode, case: &Case, reasons: &[String]) -> Result<String, String> {
    let pid = cn.node.pid();
    let (rss_before, _) = rss_kib(pid);
    reset_peak(pid);
    let defaults = json!({"blockCpuMs": 50, "pageCpuMs": 1000, "heapMb": 128, "outputKb": 1024});
    let mut limits = defaults.clone();
    if let (Some(Value::Object(over)), Value::Object(base)) = (&case.limits, &mut limits) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    set_limits(cn, limits).await?;
    let (s, b) = publish(cn, case).await;
    if !s.is_success() {
        return Err(format!("publish refused: {s} {b}"));
    }
    let base = cn.node.base(&cn.store);
    let started = Instant::now();

    // A guest: the store actor renders the anonymous page.
    let guest = cn.node.shopper(&cn.store);
    let (status, html) = get_html(&guest, &base).await;
    let guest_reason = check_page("guest", status, &html, reasons)?;

    // A shopper with a cart: its own actor and isolate render the page.
    let shopper = cn.node.shopper(&cn.store);
    let res = shopper
        .post(format!("{base}/cart/items"))
        .json(&json!({"productId": "mug", "quantity": 1}))
        .send()
        .await
        .map_err(|e| format!("add to cart: {e}"))?;
    if res.status() != StatusCode::CREATED {
        return Err(format!("add to cart: {}", res.status()));
    }
    let (status, html) = get_html(&shopper, &base).await;
    let shopper_reason = check_page("shopper", status, &html, reasons)?;

    // The same shopper's next request, and another store's page.
    let (status, html) = get_html(&shopper, &format!("{base}/cart")).await;
    if status != StatusCode::OK || !html.contains("Enamel Mug") {
        return Err(format!("the shopper's next request: {status}"));
    }
    let (status, html) = get_html(&cn.node.shopper(OTHER), &cn.node.base(OTHER)).await;
    if status != StatusCode::OK || !html.contains("Welcome to Calm Neighbour") || html.contains("class=\"v-block v-block-failed\"") {
        return Err(format!("another store's page: {status}"));
    }
    let elapsed = started.elapsed();
    if !alive(pid) {
        return Err("the node process is gone".into());
    }
    let health = cn.node.plain().get(format!("http://{}/healthz", cn.node.addr)).send().await.map_err(|e| format!("healthz: {e}"))?;
    if health.status() != StatusCode::OK {
        return Err(format!("healthz: {}", health.status()));
    }
    let (_, peak) = rss_kib(pid);
    // Memory comes back.
    let bound = rss_before + RSS_BOUND_MB * 1024;
    let settle = Instant::now();
    let rss_after = loop {
        let (rss, _) = rss_kib(pid);
        if rss <= bound || settle.elapsed() > RSS_SETTLE {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if rss_after > bound {
        return Err(format!("RSS {} MiB after the case, bound {} MiB ({} MiB before)", rss_after / 1024, bound / 1024, rss_before / 1024));
    }
    set_limits(cn, defaults).await?;
    let reason = if guest_reason == shopper_reason { guest_reason } else { format!("{guest_reason}/{shopper_reason}") };
    Ok(format!("{reason}; peak RSS {} MiB; {} ms", peak / 1024, elapsed.as_millis()))
}

/// Runs one refused case; `Ok(detail)` when publishing was refused with the rule and position.
async fn run_refused(cn: &ClassNode, case: &Case, rule: &str, at: Option<(u64, u64)>) -> Result<String, String> {
    let (s, b) =
        cn.node.admin(&cn.token, Method::POST, &format!("/stores/{}/blocks/validate", cn.store), Some(json!({"code": case.code}))).await;
    if s != StatusCode::OK {
        return Err(format!("validate: {s} {b}"));
    }
    let errors = b["errors"].as_array().cloned().unwrap_or_default();
    let found = errors.iter().find(|e| e["rule"] == rule).ok_or_else(|| format!("validate did not name rule {rule}: {b}"))?;
    let (line, column) = (found["line"].as_u64().unwrap_or(0), found["column"].as_u64().unwrap_or(0));
    if line == 0 || column == 0 {
        return Err(format!("rule {rule} without a line and column: {found}"));
    }
    if let Some(expected) = at {
        if (line, column) != expected {
            return Err(format!("rule {rule} at {line}:{column}, expected {}:{}", expected.0, expected.1));
        }
    }
    let (s, b) = publish(cn, case).await;
    if !s.is_client_error() {
        return Err(format!("publish answered {s}, expected a refusal: {b}"));
    }
    assert_error_body(&b, b["error"]["code"].as_str().unwrap_or("?"));
    let message = b["error"]["message"].as_str().unwrap_or_default();
    if !message.contains(rule) {
        return Err(format!("publish refusal does not name {rule}: {message}"));
    }
    Ok(format!("{rule} at {line}:{column}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_blocks_are_contained() {
    let mut failures = Vec::new();
    for (class, cases) in corpus() {
        if cases.is_empty() {
            continue;
        }
        let cn = start_class_node(&class).await;
        for case in &cases {
            let started = Instant::now();
            let result = match &case.expect {
                Expect::Placeholder(reasons) => run_placeholder(&cn, case, reasons).await.map(|d| ("placeholder", d)),
                Expect::Refused { rule, at } => run_refused(&cn, case, rule, *at).await.map(|d| ("refused", d)),
            };
            match result {
                Ok((outcome, detail)) => {
                    eprintln!("containment {class}/{}: {outcome} ({detail}) in {} ms", case.name, started.elapsed().as_millis());
                    test_support::table::record_with("containment", &class, &case.name, outcome, &detail);
                }
                Err(error) => {
                    eprintln!("containment {class}/{}: FAILED: {error}", case.name);
                    failures.push(format!("{class}/{}: {error}", case.name));
                    if !alive(cn.node.pid()) {
                        failures.push(format!("{class}: node died; the class's remaining cases were not run"));
                        break;
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) not contained:\n{}", failures.len(), failures.join("\n"));
}

/// Isolates are accounted by what they measure, not by a fixed estimate: six shoppers whose
/// page keeps a 16 MB typed array in each isolate do not fit a 64 MiB budget, so the least
/// recently rendered drop theirs although the count budget is far away.
#[tokio::test]
async fn isolates_are_evicted_by_their_measured_bytes() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__ISOLATE_MEMORY_MB", "64")]);
    let store = "fat";
    let token = node.seed_store(store, "Fat Blocks").await;
    let (s, b) = node
        .admin(
            &token,
            Method::PATCH,
            &format!("/stores/{store}/settings"),
            Some(json!({"limits": {"blockCpuMs": 200, "pageCpuMs": 1000, "heapMb": 128, "outputKb": 1024}})),
        )
        .await;
    assert!(s.is_success(), "{b}");
    // The block's own function object keeps 2M doubles (16 MB of ArrayBuffer) alive between renders.
    let code = "function render(ctx) {\n  render.kept = render.kept || new Float64Array(2000000).fill(0.5);\n  return '<p>kept ' + render.kept.length + '</p>';\n}";
    let page = json!({"title": "Home", "blocks": [{"type": "custom", "code": code, "config": {}}]});
    let (s, b) = node.admin(&token, Method::PUT, &format!("/stores/{store}/pages/home"), Some(page)).await;
    assert!(s.is_success(), "{b}");
    let (s, b) = node.admin(&token, Method::POST, &format!("/stores/{store}/pages/home/publish"), None).await;
    assert!(s.is_success(), "{b}");
    let health = node.health().await;
    assert_eq!(health["isolateByteBudget"], 64 << 20, "{health}");
    let evicted_before = node.metric("vitrina_isolates_evicted_total").await;

    let base = node.base(store);
    for i in 0..6 {
        let shopper = node.shopper(store);
        assert_eq!(shopper.add_to_cart("mug", 1).await.status, StatusCode::CREATED, "shopper {i}");
        let (status, html) = get_html(&shopper, &base).await;
        assert_eq!(status, StatusCode::OK, "shopper {i}");
        assert!(html.contains("<p>kept 2000000</p>"), "shopper {i}: the block did not render");
    }
    let evicted = node.metric("vitrina_isolates_evicted_total").await - evicted_before;
    assert!(evicted >= 3, "only {evicted} isolates evicted: six of ~18 MB each cannot fit 64 MiB");
    let health = node.health().await;
    let bytes = health["isolateBytes"].as_u64().expect("isolateBytes");
    assert!(bytes <= 64 << 20, "{health}");
    assert!(bytes >= 16 << 20, "the live isolates should measure their kept arrays: {health}");
    wait_until("evicted isolates to be dropped", Duration::from_secs(10), || async { node.live_isolates().await <= 3 }).await;
    assert!(node.metric("vitrina_isolate_bytes").await <= 64 << 20);
}

/// A store near the catalog limit takes its render worker longer to load than its blocks may
/// run: the loading counts against the page, so the first block of its first page renders and
/// the worker is not killed for it (it was, and the hero block failed with `timeout`).
#[tokio::test]
async fn loading_a_large_catalog_does_not_get_the_first_block_killed() {
    // A tight kill bound for blocks: twice 10 ms and the grace, far below the loading below.
    let node = TestNode::start_with(&[("VITRINA_RENDER__WORKER_KILL_GRACE_MS", "20")]);
    let store = "big";
    let token = node.seed_store(store, "Big Catalog").await;
    let admin = node.store_admin(store, &token);
    // 4,990 products of ~1 KB, in batches under the request body limit.
    for batch in 0..20 {
        let products: Vec<Value> = (0..(if batch < 19 { 250 } else { 240 }))
            .map(|i| {
                let n = batch * 250 + i;
                json!({"id": format!("b{n}"), "handle": format!("b{n}"), "title": format!("Item {n}"),
                       "description": "a word or two ".repeat(60), "price": "1.00", "stock": 1})
            })
            .collect();
        let (s, b) = admin.put_products(Value::Array(products)).await;
        assert_eq!(s, StatusCode::OK, "batch {batch}: {b}");
    }
    let limits = json!({"limits": {"blockCpuMs": 10, "pageCpuMs": 1000, "heapMb": 128, "outputKb": 1024}});
    let (s, b) = node.admin(&token, Method::PATCH, &format!("/stores/{store}/settings"), Some(limits)).await;
    assert!(s.is_success(), "{b}");
    let kills_before = node.metric("vitrina_render_worker_kills_total{reason=\"cpu\"}").await;

    let (status, html) = get_html(&node.shopper(store), &node.base(store)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Welcome to Big Catalog"), "the hero block did not render");
    let failed = "class=\"v-block v-block-failed\"";
    assert!(!html.contains(failed), "a block failed: {}", html.split(failed).nth(1).unwrap_or("").chars().take(300).collect::<String>());
    let kills = node.metric("vitrina_render_worker_kills_total{reason=\"cpu\"}").await - kills_before;
    assert_eq!(kills, 0, "the render worker was killed while it loaded the catalog");
}
