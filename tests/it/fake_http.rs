//! A tiny HTTP/1.1 server for tests: upstreams, backends and domain owners the node talks to.
//! One request per connection; the handler sees (method, target) and answers status, extra
//! headers and body. Every request is counted, so a test can prove a request never arrived.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply { status: 200, headers: Vec::new(), body: body.into() }
    }
    pub fn redirect(location: impl Into<String>) -> Reply {
        Reply { status: 302, headers: vec![("location".into(), location.into())], body: String::new() }
    }
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: "{}".into() }
    }
}

pub type Handler = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

pub struct FakeServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl FakeServer {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves `handler` on `bind` (e.g. `127.0.0.1:0`).
pub async fn serve(bind: &str, handler: Handler) -> FakeServer {
    let listener = TcpListener::bind(bind).await.expect("bind fake server");
    let addr = listener.local_addr().expect("local addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let (method, target) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
                let reply = handler(&method, &target);
                let mut res = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    res.push_str(&format!("{k}: {v}\r\n"));
                }
                res.push_str("\r\n");
                res.push_str(&reply.body);
                let _ = sock.write_all(res.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    FakeServer { addr, hits }
}

/// Names in /etc/hosts that resolve to a loopback address (besides `localhost`).
pub fn loopback_names_from_etc_hosts() -> Vec<String> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        let loopback = addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback {
            names.extend(fields.map(str::to_string));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// TXT records served by [`serve_dns`]: name (no trailing dot) → value.
pub type TxtRecords = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// A DNS server on UDP answering TXT queries from `records` (NXDOMAIN otherwise).
pub async fn serve_dns(records: TxtRecords) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
    let addr = socket.local_addr().expect("dns addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
            if let Some(answer) = dns_answer(&buf[..n], &records) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    addr
}

fn dns_answer(query: &[u8], records: &TxtRecords) -> Option<Vec<u8>> {
    // Header (12 bytes), then the first question: labels, type, class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let value = records.lock().ok()?.get(&labels.join(".")).cloned().filter(|_| qtype == 16);
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(if value.is_some() { &[0x81, 0x80] } else { &[0x81, 0x83] });
    out.extend_from_slice(&[0, 1, 0, value.is_some() as u8, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if let Some(value) = value {
        let text = value.as_bytes();
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&((text.len() + 1) as u16).to_be_bytes());
        out.push(text.len() as u8);
        out.extend_from_slice(text);
    }
    Some(out)
}
