//! Starting `vitrina serve` (or any child that prints `... listening on http://ADDR`) and
//! waiting until it listens. The tests' `TestNode` and the load generator's nodes both start
//! here, so a node is started the same way wherever it is measured or tested.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The `vitrina` binary next to the running test binary (`target/{profile}/deps/NAME` →
/// `target/{profile}/vitrina`; cargo builds a package's binaries before its integration tests),
/// or `VITRINA_BIN` when set.
pub fn vitrina_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VITRINA_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current executable");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary in target/{profile}/deps");
    profile_dir.join("vitrina")
}

/// `vitrina serve` on `listen` with data in `data_dir`, no configuration file (defaults and
/// environment only), the given operator token and session key, and warnings-only logs.
pub fn serve_command(bin: &Path, data_dir: &Path, listen: &str, operator_token: &str, session_key: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(["--config", "/nonexistent/vitrina.toml"])
        .env("VITRINA_OPERATOR_TOKEN", operator_token)
        .env("VITRINA_HTTP__SESSION_KEY", session_key)
        .env("VITRINA_LOG", "warn");
    cmd
}

/// A child that said where it listens.
pub struct Started {
    pub child: Child,
    pub addr: SocketAddr,
    /// What it printed up to and including the address line.
    pub printed: Vec<String>,
    /// What it prints next (a reader thread drains stdout for the child's whole life, whether
    /// or not this is read, so the child never blocks on a full pipe).
    pub rest: Receiver<String>,
}

/// Starts `cmd` with stdout piped (stderr as the caller set it) and waits up to `timeout` for
/// the line `{ready_prefix}http://ADDR`. On failure the child is killed.
pub fn start(mut cmd: Command, ready_prefix: &str, timeout: Duration) -> Result<Started, String> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("start {cmd:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let prefix = format!("{ready_prefix}http://");
    let mut printed = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not print its address within {timeout:?}"));
        };
        printed.push(line.clone());
        if let Some(addr) = line.strip_prefix(&prefix) {
            let Ok(addr) = addr.trim().parse::<SocketAddr>() else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} printed an address that does not parse: {line}"));
            };
            return Ok(Started { child, addr, printed, rest: rx });
        }
    }
}
