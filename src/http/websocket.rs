//! A WebSocket whose connection belongs to the task serving it. Once a handler accepts the
//! handshake ([`accept`]), the server's upgrade path (`upgrade.rs`) writes the 101 and hands
//! the bare TCP stream here: no HTTP dispatcher, and no read or write buffer kept between
//! frames. An idle socket is then the stream, the codec's state and what its task holds.
//!
//! Frames are read into a buffer allocated when bytes arrive and freed once they are decoded;
//! each frame sent is encoded into its own buffer. Only the server side of the protocol is
//! spoken (clients' frames must be masked).

use std::io;
use std::time::Duration;

use actix_http::ws::{self, CloseReason, Frame, Message, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use bytestring::ByteString;
use futures::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read per wake-up: the frames these sockets accept are small.
const READ_CHUNK: usize = 2048;
/// How long closing a socket may take: its close frame written, then the peer's end of the
/// connection awaited.
pub const CLOSE_BOUND: Duration = Duration::from_secs(2);

/// What runs on an accepted socket's connection once the 101 is written. Carried from the
/// handler to the upgrade path in the response's extensions.
pub struct Accepted(Box<dyn FnOnce(WebSocket) -> LocalBoxFuture<'static, ()>>);

impl Accepted {
    pub(super) async fn run(self, socket: WebSocket) {
        (self.0)(socket).await
    }
}

/// Answers a WebSocket handshake: the 101 response, with `serve` to run on the connection
/// after it. `Err` when the request is not a valid handshake (say why to the client).
pub fn accept<F, Fut>(req: &HttpRequest, max_frame: usize, serve: F) -> Result<HttpResponse, String>
where
    F: FnOnce(WebSocket) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let mut res = HttpResponse::from(ws::handshake(req.head()).map_err(|e| e.to_string())?.finish().map_into_boxed_body());
    let run: Box<dyn FnOnce(WebSocket) -> LocalBoxFuture<'static, ()>> =
        Box::new(move |socket: WebSocket| Box::pin(serve(socket.max_frame_size(max_frame))));
    res.extensions_mut().insert(Accepted(run));
    Ok(res)
}

/// The server's end of one WebSocket.
pub struct WebSocket {
    io: TcpStream,
    codec: ws::Codec,
    /// Bytes read but not yet decoded; empty, without an allocation, between frames.
    pending: BytesMut,
}

impl WebSocket {
    /// `early` holds what the client sent after its handshake, read with the request.
    pub(super) fn new(io: TcpStream, early: &[u8]) -> WebSocket {
        WebSocket { io, codec: ws::Codec::new(), pending: BytesMut::from(early) }
    }

    fn max_frame_size(mut self, max: usize) -> WebSocket {
        self.codec = self.codec.max_size(max);
        self
    }

    /// The next frame; `None` once the peer closed the connection. Cancel-safe: bytes read
    /// are kept for the next call.
    pub async fn recv(&mut self) -> Option<Result<Frame, ProtocolError>> {
        loop {
            if !self.pending.is_empty() {
                let decoded = self.codec.decode(&mut self.pending);
                if self.pending.is_empty() {
                    self.pending = BytesMut::new();
                }
                match decoded {
                    Ok(Some(frame)) => return Some(Ok(frame)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.io.readable().await.is_err() {
                return None;
            }
            self.pending.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.pending) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.pending.is_empty() {
                        self.pending = BytesMut::new();
                    }
                }
                Err(_) => return None,
            }
        }
    }

    pub async fn text(&mut self, text: &str) -> io::Result<()> {
        self.send(Message::Text(ByteString::from(text))).await
    }

    pub async fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(Message::Ping(Bytes::copy_from_slice(payload))).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(Message::Pong(Bytes::copy_from_slice(payload))).await
    }

    /// Not cancel-safe: a frame cut off mid-write leaves the stream unusable (drop the socket).
    async fn send(&mut self, message: Message) -> io::Result<()> {
        let mut frame = BytesMut::new();
        self.codec.encode(message, &mut frame).map_err(io::Error::other)?;
        self.io.write_all(&frame).await
    }

    /// Sends a close frame, ends the sending side, and waits for the peer to end the
    /// connection, all within [`CLOSE_BOUND`]: closing a socket with unread bytes would reset
    /// it, and the peer could lose the close frame.
    pub async fn close(mut self, reason: Option<CloseReason>) {
        let _ = tokio::time::timeout(CLOSE_BOUND, async {
            if self.send(Message::Close(reason)).await.is_err() {
                return;
            }
            let _ = self.io.shutdown().await;
            let mut sink = [0u8; 512];
            while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
