//! Real etcd for the cluster tests: one or three members as child processes on 127.0.0.1, each
//! cluster in its own temporary directory so tests never share keys, and the faults the tests
//! need (kill, SIGSTOP/SIGCONT, restart, find the leader). The binary is `etcd` on the PATH
//! (Debian's `etcd-server`, which `.ci/run` installs) or `VITRINA_TEST_ETCD_BIN`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The etcd binary, or `None` (with a visible SKIPPED line) when there is none outside CI.
/// Under CI (`CI` set) a missing binary is a failure: `.ci/run` must install it.
pub fn etcd_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("VITRINA_TEST_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let found =
        std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).map(|p| p.join("etcd")).find(|p| p.is_file())).unwrap_or(None);
    match found {
        Some(bin) => Some(bin),
        None if std::env::var_os("CI").is_some() => panic!("etcd is not on the PATH: CI must install etcd-server (see .ci/run)"),
        None => {
            // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must
            // be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: install etcd (Debian: etcd-server) or set VITRINA_TEST_ETCD_BIN to run the etcd tests"
            );
            None
        }
    }
}

/// One member: its name, URLs and process (absent while killed).
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl EtcdMember {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// An etcd cluster of one or more members, killed when dropped.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    initial_cluster: String,
    bin: PathBuf,
    _temp: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster has a leader and answers writes.
    /// `None` when no etcd binary exists outside CI (the caller skips its test).
    pub async fn start(size: usize) -> Option<EtcdCluster> {
        let bin = etcd_bin()?;
        let temp = tempfile::tempdir().expect("temp dir");
        let members: Vec<EtcdMember> = (0..size)
            .map(|i| EtcdMember {
                name: format!("etcd{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                data_dir: temp.path().join(format!("etcd{i}")),
                child: None,
                stopped: false,
            })
            .collect();
        let initial_cluster = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, bin, _temp: temp };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_ready(Duration::from_secs(30)).await;
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(m.data_dir.with_extension("log")).expect("etcd log file");
        let child = Command::new(&self.bin)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url, "--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url, "--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "vitrina-test"])
            // Fast elections: a killed leader is replaced within about a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
        self.members[i].stopped = false;
    }

    /// Client URLs of every member, killed ones included (clients fail over between them).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The endpoints as `cluster.etcd.endpoints` takes them from the environment.
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// The index of the member that is leader now, asked of the running members.
    pub async fn leader(&self) -> Option<usize> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        for m in self.members.iter().filter(|m| m.child.is_some() && !m.stopped) {
            let Ok(res) = client.post(format!("{}/v3/maintenance/status", m.client_url)).body("{}").send().await else { continue };
            let Ok(status) = res.json::<Value>().await else { continue };
            let leader = status["leader"].as_str().map(str::to_string);
            let me = status["header"]["member_id"].as_str().map(str::to_string);
            if leader.is_some() && leader == me {
                return Some(self.members.iter().position(|x| x.client_url == m.client_url).expect("member"));
            }
        }
        None
    }

    /// SIGKILL member `i` (its data stays; `restart` brings it back).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on its data directory and waits until it serves writes.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if put_ready_key(&client, &self.members[i].client_url).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd member {i} not serving 30 s after its restart; logs in {}", self._temp.path().display());
    }

    /// SIGSTOP member `i`: it holds its sockets but answers nothing.
    pub fn pause(&mut self, i: usize) {
        signal(self.members[i].pid().expect("running member"), "STOP");
        self.members[i].stopped = true;
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        signal(self.members[i].pid().expect("running member"), "CONT");
        self.members[i].stopped = false;
    }

    /// Waits until some running member is leader and a write through it succeeds.
    pub async fn wait_ready(&self, timeout: Duration) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.leader().await.is_some() {
                for m in self.members.iter().filter(|m| m.child.is_some() && !m.stopped) {
                    if put_ready_key(&client, &m.client_url).await {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd cluster not ready after {timeout:?}; logs in {}", self._temp.path().display());
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                if m.stopped {
                    signal(child.id(), "CONT");
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Writes key "vitrina-test-ready" (base64 below) through `endpoint`.
async fn put_ready_key(client: &reqwest::Client, endpoint: &str) -> bool {
    let put = client.post(format!("{endpoint}/v3/kv/put")).body(r#"{"key":"dml0cmluYS10ZXN0LXJlYWR5","value":"MQ=="}"#);
    put.send().await.is_ok_and(|r| r.status().is_success())
}

/// A port free now on 127.0.0.1 (the small race with other tests' binds is accepted: etcd fails
/// loudly if it lost it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}
