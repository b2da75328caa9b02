//! A minimal HTTP/1.1 client: one persistent (keep-alive) connection per worker.
//!
//! The load generator shares the machine with the node it measures, so its own cost per request
//! must stay small and predictable: no pool, no cookie jar, no redirects — a worker owns one
//! connection (hyper's `conn::http1`) and reconnects only if the server closed it.

use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;

/// What a request answered: status, the `x-vitrina-cache` and `x-vitrina-node` headers and the
/// body.
pub struct Answer {
    pub status: u16,
    pub cache: Option<String>,
    /// The cluster node that served the request (`x-vitrina-node`).
    pub node: Option<String>,
    pub body: Bytes,
}

/// One keep-alive connection to `addr`.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Body>>,
    /// Connections opened so far (1 when keep-alive held for the whole run).
    pub opened: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None, opened: 0 }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Body>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
            // Small request/response pairs: Nagle would add up to 40 ms per request.
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.opened += 1;
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        Ok(sender)
    }

    /// Sends the request `make` builds and reads the whole body. One retry on a fresh
    /// connection if the kept-alive one turned out to be closed (a server may close idle
    /// connections between phases); `make` is called again rather than cloning every request.
    pub async fn send(&mut self, make: impl Fn() -> Request<Body>) -> anyhow::Result<Answer> {
        let first = async {
            let sender = self.connect().await?;
            anyhow::Ok(sender.send_request(make()).await?)
        }
        .await;
        let res = match first {
            Ok(res) => res,
            Err(_) => {
                self.sender = None;
                let sender = self.connect().await?;
                sender.send_request(make()).await?
            }
        };
        read(res).await
    }
}

async fn read(res: Response<hyper::body::Incoming>) -> anyhow::Result<Answer> {
    let status = res.status().as_u16();
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cache = header("x-vitrina-cache");
    let node = header("x-vitrina-node");
    let body = res.into_body().collect().await?.to_bytes();
    Ok(Answer { status, cache, node, body })
}

/// Where requests go: the socket address of a node and the `Host` header naming the store.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT` (only loopback: this tool never loads anything else).
    pub fn parse(base_url: &str, host: String) -> anyhow::Result<Target> {
        let rest = base_url.trim_end_matches('/').strip_prefix("http://").context("node URLs look like http://127.0.0.1:PORT")?;
        let addr: SocketAddr = rest.parse().with_context(|| format!("node address {rest:?} must be IP:PORT"))?;
        anyhow::ensure!(addr.ip().is_loopback(), "refusing to load {addr}: only loopback targets are allowed");
        Ok(Target { addr, host })
    }

    pub fn request(&self, method: hyper::Method, path: &str) -> hyper::http::request::Builder {
        Request::builder().method(method).uri(path).header(hyper::header::HOST, &self.host)
    }
}
