//! A real `vitrina` node for black-box tests: the binary on a random port of 127.0.0.1 with a
//! temporary data directory, `{store}.localhost` resolved to it, killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{Admin, Shopper};
use crate::process;
use crate::wait_until;

/// The operator token every test node is started with.
pub const OPERATOR_TOKEN: &str = "test-operator-token";
/// The key test nodes sign session ids with (`http.session_key`), so a test can hold a session
/// of its own choosing, as a browser holds one the node minted.
pub const SESSION_KEY: &str = "test-session-key";
/// The secret test cluster nodes share.
pub const CLUSTER_SECRET: &str = "test-cluster-secret";

/// A `Cookie` header value for session `sid` (an id the node would have minted).
pub fn session_cookie(sid: &str) -> String {
    crate::session::cookie(SESSION_KEY.as_bytes(), sid)
}

pub struct TestNode {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    stdout_lines: Vec<String>,
    /// The etcd a cluster node coordinates through, shared by the cluster's nodes (dropped,
    /// and so stopped, after the last of them).
    etcd: Option<std::sync::Arc<crate::etcd::EtcdCluster>>,
}

impl TestNode {
    pub fn start() -> TestNode {
        Self::start_with(&[])
    }

    /// Starts a node with extra `VITRINA_*` environment settings.
    pub fn start_with(env: &[(&str, &str)]) -> TestNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut node = Self::spawn(&dir, &env, &[], "127.0.0.1:0");
        node._temp = Some(temp);
        node
    }

    /// Starts a node on a data directory the caller provides (and removes).
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> TestNode {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(dir, &env, &[], "127.0.0.1:0")
    }

    pub fn start_demo() -> TestNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut node = Self::spawn(&dir, &[], &["--demo"], "127.0.0.1:0");
        node._temp = Some(temp);
        node
    }

    /// A demo node returned as soon as it prints its address, before the demo store is seeded.
    pub fn start_demo_listening() -> TestNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut node = Self::spawn_reading(&dir, &[], &["--demo"], "127.0.0.1:0", false);
        node._temp = Some(temp);
        node
    }

    /// A cluster node `id`, joining through `seed` (none for the first node).
    pub fn start_cluster_node(id: &str, seed: Option<SocketAddr>, env: &[(&str, &str)]) -> TestNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.push(("VITRINA_CLUSTER__SECRET".into(), CLUSTER_SECRET.into()));
        // Hundreds of shoppers from one address in seconds: past any sane per-IP limit (unless
        // the test turns the limits on itself).
        if !env.iter().any(|(k, _)| k == "VITRINA_LIMITS__ENABLED") {
            env.push(("VITRINA_LIMITS__ENABLED".into(), "false".into()));
        }
        let seed = seed.map(|s| s.to_string());
        let mut extra = vec!["--cluster", "--node-id", id];
        if let Some(seed) = &seed {
            extra.push("--join");
            extra.push(seed);
        }
        let mut node = Self::spawn(&dir, &env, &extra, "127.0.0.1:0");
        node._temp = Some(temp);
        node
    }

    /// A new node `id` joining the cluster this node is in (its etcd, this node as seed).
    pub fn join(&self, id: &str) -> TestNode {
        let owned = self.etcd_env();
        let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut node = Self::start_cluster_node(id, Some(self.addr), &env);
        node.etcd = self.etcd.clone();
        node
    }

    fn etcd_env(&self) -> Vec<(&'static str, String)> {
        self.etcd.iter().map(|e| ("VITRINA_CLUSTER__ETCD__ENDPOINTS", e.endpoints_csv())).collect()
    }

    /// The etcd this cluster node coordinates through (`None`: one its test started itself).
    pub fn etcd(&self) -> Option<&crate::etcd::EtcdCluster> {
        self.etcd.as_deref()
    }

    /// SIGKILL, no restart.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to `within`) for the process to exit; its exit status, or
    /// `None` if it was still running then (it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        signal(self.child.id(), "TERM");
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// A graceful restart: SIGTERM, the exit (asserted 0 within `within`), and a new process on
    /// the same data directory, environment, arguments and port.
    pub fn terminate_and_restart(mut self, within: Duration) -> TestNode {
        let status = self.terminate(within);
        assert!(status.is_some_and(|s| s.success()), "the node did not exit 0 within {within:?} of SIGTERM: {status:?}");
        self.respawn()
    }

    /// SIGSTOP: the process keeps its sockets and files but runs nothing (a paused VM, a long
    /// GC, a stalled disk).
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// SIGCONT after [`TestNode::pause`].
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    /// `GET /cluster/status` with the operator token.
    pub async fn cluster_status(&self) -> Value {
        self.plain()
            .get(format!("http://{}/cluster/status", self.addr))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /metrics` with the operator token, as text.
    pub async fn metrics_text(&self) -> String {
        self.plain().get(format!("http://{}/metrics", self.addr)).bearer_auth(OPERATOR_TOKEN).send().await.unwrap().text().await.unwrap()
    }

    fn spawn(dir: &Path, env: &[(String, String)], extra: &[&str], listen: &str) -> TestNode {
        Self::spawn_reading(dir, env, extra, listen, true)
    }

    /// Starts the binary; with `read_startup`, also waits for what a demo node prints after its
    /// address (the demo store's token, printed once it is seeded).
    fn spawn_reading(dir: &Path, env: &[(String, String)], extra: &[&str], listen: &str, read_startup: bool) -> TestNode {
        let mut cmd = process::serve_command(&process::vitrina_bin(), dir, listen, OPERATOR_TOKEN, SESSION_KEY);
        cmd.args(extra).stderr(stderr_for(extra));
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A test's own log filter, for following what the nodes did (`VITRINA_LOG` is theirs).
        if let Some(filter) = std::env::var_os("VITRINA_TEST_LOG") {
            cmd.env("VITRINA_LOG", filter);
        }
        let started = process::start(cmd, "vitrina listening on ", Duration::from_secs(60)).expect("start vitrina");
        let (child, addr, mut lines, rx) = (started.child, started.addr, started.printed, started.rest);
        // Keep reading what the node prints (the demo token comes after the address).
        let demo = read_startup && extra.contains(&"--demo");
        let extra_wait = if demo { Duration::from_secs(60) } else { Duration::from_millis(0) };
        let until = Instant::now() + extra_wait;
        while demo && Instant::now() < until {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let done = line.starts_with("operator token");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let args = extra.iter().filter(|a| **a != "--demo").map(|a| a.to_string()).collect();
        TestNode { child, addr, data_dir: dir.to_path_buf(), _temp: None, env: env.to_vec(), args, stdout_lines: lines, etcd: None }
    }

    /// Kills the process (SIGKILL: no shutdown hooks run) and starts a new one on the same
    /// data directory and port, so clients and their cookies keep working.
    pub fn kill_and_restart(mut self) -> TestNode {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.respawn()
    }

    /// A new process on this node's data directory, environment, arguments and port, once the
    /// old one has exited (`terminate`, `kill`).
    pub fn start_again(self) -> TestNode {
        self.respawn()
    }

    /// A new process on this node's data directory, environment, arguments and port (the old
    /// one already gone).
    fn respawn(mut self) -> TestNode {
        let temp = self._temp.take();
        let listen = self.addr.to_string();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut node = Self::spawn(&self.data_dir, &self.env, &args, &listen);
        node._temp = temp;
        node.etcd = self.etcd.take();
        node
    }

    /// Kills the process (SIGKILL), wipes its whole data directory — actor files, WAL, node
    /// catalog: a lost disk — and starts a fresh node on the empty directory, with the same
    /// environment (so the same replication bucket) and port.
    pub fn kill_and_lose_disk(mut self) -> TestNode {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.data_dir).expect("wipe data dir");
        std::fs::create_dir_all(&self.data_dir).expect("recreate data dir");
        self.respawn()
    }

    /// Value of one series in `GET /metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines().filter_map(|l| l.rsplit_once(' ')).find(|(name, _)| *name == series).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
    }

    /// `vitrina_replication_pending_actors`; `None` when the node does not report it.
    pub async fn replication_pending(&self) -> Option<u64> {
        let text =
            self.plain().get(format!("http://{}/metrics", self.addr)).bearer_auth(OPERATOR_TOKEN).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix("vitrina_replication_pending_actors ")).and_then(|v| v.trim().parse().ok())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many shopper files (`.db`) the node has written for `store`.
    pub fn shopper_files(&self, store: &str) -> usize {
        let dir = self.data_dir.join("stores").join(store).join("shoppers");
        let Ok(fanouts) = std::fs::read_dir(dir) else { return 0 };
        fanouts
            .flatten()
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(|files| files.flatten())
            .filter(|f| f.file_name().to_string_lossy().ends_with(".db"))
            .count()
    }

    /// Files under the data directory the node process has open now (from `/proc`).
    pub fn open_data_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else { return Vec::new() };
        let root = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        entries
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&root))
            .map(|target| target.display().to_string())
            .collect()
    }

    pub fn printed(&self) -> &[String] {
        &self.stdout_lines
    }

    pub fn base(&self, store: &str) -> String {
        format!("http://{store}.localhost:{}", self.addr.port())
    }

    /// A client for one store without a cookie jar (every cookie is the test's choice), no
    /// redirects followed.
    pub fn bare_client(&self, store: &str) -> Client {
        Client::builder()
            .resolve(&format!("{store}.localhost"), self.addr)
            // Tests kill and restart nodes: never reuse a connection to a dead process.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// A new shopper of `store`: a browser of its own (its cookies, its user agent), all on
    /// this machine's one address.
    pub fn shopper(&self, store: &str) -> Shopper {
        static BROWSERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let browser = BROWSERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let http = Client::builder()
            .resolve(&format!("{store}.localhost"), self.addr)
            .user_agent(format!("vitrina-test-shopper/{browser}"))
            .cookie_store(true)
            // Tests kill and restart nodes: never reuse a connection to a dead process.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Shopper::new(http, self.base(store))
    }

    /// The admin API of `store` with `token`.
    pub fn store_admin(&self, store: &str, token: &str) -> Admin {
        Admin::new(self.plain(), self.admin_url(""), store, token)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}/admin/api/v1{path}", self.addr)
    }

    pub fn plain(&self) -> Client {
        Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
    }

    /// Creates a store with the operator token; returns its admin token.
    pub async fn create_store(&self, id: &str, name: &str) -> String {
        let res = self
            .plain()
            .post(self.admin_url("/stores"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"id": id, "name": name, "currency": "USD", "tagline": format!("{name} tagline")}))
            .send()
            .await
            .expect("create store");
        assert_eq!(res.status(), StatusCode::CREATED, "create store {id}");
        let body: Value = res.json().await.expect("json");
        body["adminToken"].as_str().expect("token").to_string()
    }

    /// Sends an admin request and returns (status, body).
    pub async fn admin(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.plain().request(method, self.admin_url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("admin request");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A store with products and a published home page of default blocks.
    pub async fn seed_store(&self, id: &str, name: &str) -> String {
        let token = self.create_store(id, name).await;
        let admin = self.store_admin(id, &token);
        let (s, b) = admin
            .put_products(json!([
                {"id": "mug", "handle": "mug", "title": "Enamel Mug", "description": "A camp mug", "price": "12.50", "stock": 5, "tags": ["kitchen"]},
                {"id": "tent", "handle": "tent", "title": "Two-person Tent", "description": "Light tent for trails", "price": "199.00", "stock": 2, "tags": ["camp"]},
                {"id": "socks", "handle": "wool-socks", "title": "Wool Socks", "description": "Warm merino socks", "price": "18.00", "stock": 100, "tags": ["apparel"]},
            ]))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        admin
            .publish_new_page(
                "home",
                json!({"title": "Home", "blocks": [
                    {"type": "hero", "config": {"heading": format!("Welcome to {name}")}},
                    {"type": "product-grid", "config": {"title": "Everything", "limit": 12}},
                ]}),
            )
            .await;
        token
    }

    /// The node's `GET /healthz` answer.
    pub async fn health(&self) -> Value {
        self.plain().get(format!("http://{}/healthz", self.addr)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn live_shoppers(&self) -> u64 {
        self.health().await["liveActors"]["shoppers"].as_u64().unwrap()
    }

    pub async fn live_isolates(&self) -> i64 {
        self.health().await["liveIsolates"].as_i64().unwrap()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a cluster of `n` nodes on a one-member etcd (`n1` seeds the catalog, the others
/// join it) and waits until every node sees all of them active. A cluster needs etcd: without
/// an etcd binary this panics, saying how to get one.
pub async fn start_cluster(n: usize, env: &[(&str, &str)]) -> Vec<TestNode> {
    let etcd = crate::etcd::EtcdCluster::start(1)
        .await
        .map(std::sync::Arc::new)
        .expect("a cluster needs etcd: install etcd-server (Debian) or set VITRINA_TEST_ETCD_BIN");
    let mut nodes = start_nodes(n, env, &etcd.endpoints_csv()).await;
    for node in &mut nodes {
        node.etcd = Some(etcd.clone());
    }
    nodes
}

/// Starts `n` nodes coordinating through the etcd at `endpoints` (comma-separated), which the
/// caller keeps (to kill, pause or restart its members), and waits until all are active.
pub async fn start_cluster_on(endpoints: &str, n: usize, env: &[(&str, &str)]) -> Vec<TestNode> {
    start_nodes(n, env, endpoints).await
}

async fn start_nodes(n: usize, env: &[(&str, &str)], endpoints: &str) -> Vec<TestNode> {
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("VITRINA_CLUSTER__ETCD__ENDPOINTS", endpoints));
    let first = TestNode::start_cluster_node("n1", None, &env);
    let seed = first.addr;
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(TestNode::start_cluster_node(&format!("n{i}"), Some(seed), &env));
    }
    for node in &nodes {
        assert_eq!(node.cluster_status().await["coordination"], "etcd", "a cluster node started with etcd endpoints");
    }
    wait_for_active(&nodes.iter().collect::<Vec<_>>(), n).await;
    nodes
}

/// Waits (up to 30 s) until each of `nodes` counts `active` active members.
pub async fn wait_for_active(nodes: &[&TestNode], active: usize) {
    for node in nodes {
        wait_until("every node to see the same active members", Duration::from_secs(30), || async {
            let s = node.cluster_status().await;
            s["members"].as_array().is_some_and(|m| m.iter().filter(|m| m["state"] == "active").count() == active)
        })
        .await;
    }
}

/// Where a node's logs go: inherited, or with `VITRINA_TEST_LOG_DIR` set, appended to
/// `{dir}/{node id}.log` (one file per node across restarts, to follow a hand-off between them).
fn stderr_for(args: &[&str]) -> Stdio {
    let Some(dir) = std::env::var_os("VITRINA_TEST_LOG_DIR") else { return Stdio::inherit() };
    let id = args.iter().position(|a| *a == "--node-id").and_then(|i| args.get(i + 1)).copied().unwrap_or("node");
    let _ = std::fs::create_dir_all(&dir);
    match std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join(format!("{id}.log"))) {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::inherit(),
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}
