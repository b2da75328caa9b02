//! WebSocket bytes written by hand, for what a client library will not send: frames in the
//! same write as the handshake, unmasked frames, frames past a size cap, and requests that ask
//! for an upgrade where none is offered.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A handshake for `path` on `store`'s host with the store's `Origin`, as a page sends it.
pub fn handshake(addr: SocketAddr, store: &str, path: &str) -> Vec<u8> {
    let host = format!("{store}.localhost:{}", addr.port());
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// One client frame (FIN set), masked unless `masked` is false.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A connection that wrote `bytes` in one write, and what it has read since.
pub struct Wire {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub async fn send(addr: SocketAddr, bytes: &[u8]) -> Wire {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(bytes).await.expect("write");
        Wire { tcp, buf: Vec::new() }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }

    /// The response head (up to the blank line), within `within`.
    pub async fn head(&mut self, within: Duration) -> String {
        tokio::time::timeout(within, async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                    self.buf.drain(..end + 4);
                    return head;
                }
                assert!(self.fill().await, "connection ended before a response head: {:?}", String::from_utf8_lossy(&self.buf));
            }
        })
        .await
        .expect("a response head in time")
    }

    /// Everything until the server ends the connection, within `within`.
    pub async fn rest(&mut self, within: Duration) -> Vec<u8> {
        tokio::time::timeout(within, async { while self.fill().await {} }).await.expect("the server ends the connection");
        std::mem::take(&mut self.buf)
    }

    /// The next server frame as (opcode, payload); `None` if the connection ends first or
    /// nothing comes within `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(within, async {
            loop {
                if let Some((len, frame)) = parse(&self.buf) {
                    self.buf.drain(..len);
                    return Some(frame);
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The close code the server sends within `within`, skipping other frames; `None` if the
    /// connection ends without one.
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        loop {
            let (opcode, payload) = self.next_frame(within).await?;
            if opcode == CLOSE {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

/// A whole unmasked server frame at the start of `buf`: its length and (opcode, payload).
fn parse(buf: &[u8]) -> Option<(usize, (u8, Vec<u8>))> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((at + len, (b0 & 0x0f, payload.to_vec())))
}
