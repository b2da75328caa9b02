//! Child processes the suite measures: Vitrina nodes (each with its own data directory and
//! settings) and the hello-world ceiling server. Both print `... listening on http://ADDR`;
//! nodes start as the tests start theirs (`test_support::process`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use test_support::process;

/// The operator token the suite's nodes are started with.
pub const OPERATOR_TOKEN: &str = "loadtest-operator-token";
/// The key the suite's nodes sign session ids with (`http.session_key`): the suite names its
/// own shoppers (`lt-…`) and signs their tokens itself (`setup::session_cookie`), as if the
/// node had minted them.
pub const SESSION_KEY: &str = "loadtest-session-key";
/// The cluster secret the suite's cluster nodes share.
pub const CLUSTER_SECRET: &str = "loadtest-cluster-secret";

pub struct Spawned {
    child: Child,
    pub base_url: String,
    pub pid: u32,
}

impl Spawned {
    /// Starts `cmd` (stderr to `log`) and waits (up to 60 s) for the line `{ready_prefix}http://ADDR`.
    fn start(mut cmd: Command, ready_prefix: &str, log: &Path) -> anyhow::Result<Spawned> {
        let log_file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stderr(Stdio::from(log_file));
        let started = process::start(cmd, ready_prefix, Duration::from_secs(60)).map_err(|e| anyhow!("{e}; see {}", log.display()))?;
        let pid = started.child.id();
        Ok(Spawned { child: started.child, base_url: format!("http://{}", started.addr), pid })
    }

    /// Starts a node on a free loopback port with a fresh data directory `dir` and extra
    /// `VITRINA_*` settings.
    pub fn node(bin: &Path, dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Spawned> {
        Spawned::node_with_args(bin, dir, env, &[])
    }

    /// Starts a cluster node `id` (`--cluster`, or `--join seed` given `seed` as `IP:PORT`) with
    /// the suite's cluster secret.
    pub fn cluster_node(bin: &Path, dir: &Path, id: &str, seed: Option<&str>, env: &[(&str, String)]) -> anyhow::Result<Spawned> {
        let mut env = env.to_vec();
        env.push(("VITRINA_CLUSTER__SECRET", CLUSTER_SECRET.to_string()));
        let mut args = vec!["--node-id", id];
        match seed {
            Some(seed) => args.extend(["--join", seed]),
            None => args.push("--cluster"),
        }
        Spawned::node_with_args(bin, dir, &env, &args)
    }

    fn node_with_args(bin: &Path, dir: &Path, env: &[(&str, String)], args: &[&str]) -> anyhow::Result<Spawned> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut cmd = process::serve_command(bin, &dir.join("data"), "127.0.0.1:0", OPERATOR_TOKEN, SESSION_KEY);
        cmd.args(args)
            // Every load comes from one address at rates no single client reaches: the
            // per-IP and per-session limits would measure themselves (`[limits]`).
            .env("VITRINA_LIMITS__ENABLED", "false")
            // Every workload but F1 has one store: a store's share of the render threads
            // (`[render]`) would cap the node's render throughput. F1 sets the defaults back.
            .env("VITRINA_RENDER__STORE_MAX_CONCURRENT", "1024")
            .env("VITRINA_RENDER__STORE_CPU_MS_PER_SEC", "0")
            // New-session workloads create more shopper files than the default per-store cap.
            .env("VITRINA_SHOPPER__MAX_PER_STORE", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Spawned::start(cmd, "vitrina listening on ", &dir.join("node.log"))
    }

    /// Starts this binary's hello-world server (the HTTP ceiling).
    pub fn hello(dir: &Path) -> anyhow::Result<Spawned> {
        std::fs::create_dir_all(dir)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["hello", "--listen", "127.0.0.1:0"]);
        Spawned::start(cmd, "hello listening on ", &dir.join("hello.log"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The node's data directory stays until the suite's work directory is removed: on ext4
        // without a journal (this machine's disk) the allocator skips inodes deleted within the
        // last minutes, scanning past each of them, so deleting one workload's few thousand
        // actor files made every file creation of the next workloads slower (session 4's W2p
        // profile: 20 % of the node's CPU in `find_inode_bit` → `recently_deleted`; see
        // `ceilings::remove_created_files`).
    }
}
