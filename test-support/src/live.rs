//! A page's live socket (`GET /live`), as a browser opens it: on the store's host, with the
//! store's `Origin` and the page's cookie, over a TCP connection to the node itself.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// An open live socket.
pub struct LiveSocket {
    ws: WebSocketStream<TcpStream>,
}

/// How a socket was refused before the upgrade: the status and the body (JSON when it is).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

/// Opens `/live` of `store` on the node at `addr`. `origin`: the `Origin` header (a page of
/// the store sends `http://{store}.localhost:PORT`); `cookie`: a `Cookie` header value.
pub async fn open(addr: SocketAddr, store: &str, origin: Option<&str>, cookie: Option<&str>) -> Result<LiveSocket, Refused> {
    open_at(addr, store, "/live", origin, cookie).await
}

/// Opens the WebSocket at `path` (`/live`, or the console's `/admin/live`) like [`open`].
pub async fn open_at(addr: SocketAddr, store: &str, path: &str, origin: Option<&str>, cookie: Option<&str>) -> Result<LiveSocket, Refused> {
    let url = format!("ws://{store}.localhost:{}{path}", addr.port());
    let mut req = url.into_client_request().expect("request");
    if let Some(origin) = origin {
        req.headers_mut().insert("origin", origin.parse().expect("origin"));
    }
    if let Some(cookie) = cookie {
        req.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
    }
    let tcp = TcpStream::connect(addr).await.map_err(|e| Refused { status: 0, body: Value::String(e.to_string()) })?;
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(LiveSocket { ws }),
        Err(tungstenite::Error::Http(res)) => {
            let status = res.status().as_u16();
            let text = res.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
            Err(Refused { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) })
        }
        Err(e) => Err(Refused { status: 0, body: Value::String(e.to_string()) }),
    }
}

/// The `Origin` a page of `store` on the node at `addr` sends.
pub fn origin(addr: SocketAddr, store: &str) -> String {
    format!("http://{store}.localhost:{}", addr.port())
}

impl LiveSocket {
    /// The next event (a JSON text message) within `within`; `None` on timeout or close.
    /// Pings are answered by the client library as they pass.
    pub async fn next_event(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??;
            match frame {
                Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next event of `kind`, skipping others, within `within`.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await?;
            if event["type"] == kind {
                return Some(event);
            }
        }
    }

    /// Waits for the server's hello (sent once the socket receives events); panics without it.
    pub async fn hello(&mut self) -> Value {
        self.next_of("hello", Duration::from_secs(10)).await.expect("the live socket says hello")
    }

    /// The close frame's code, if the server closes within `within` (events before it skipped;
    /// pings answered); `None` if it is still open then.
    pub async fn closed_with(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await.ok()? {
                Some(Ok(Message::Close(frame))) => return Some(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Some(1006),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }
}
