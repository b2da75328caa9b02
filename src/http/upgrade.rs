//! Requests that ask to switch protocols (`Upgrade: websocket`, and `CONNECT`). The HTTP
//! dispatcher hands them here with their connection. They go through the same app as any
//! request, with every middleware and check; then either the handler accepted a WebSocket
//! ([`websocket::accept`]) and the connection becomes that socket's, or the answer is written
//! and the connection closed (it cannot go back to the dispatcher).
//!
//! Owning the connection is the point: under the dispatcher, each idle socket kept the
//! dispatcher's read and write buffers and its connection task for its whole life.

use std::rc::Rc;

use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::{h1, ConnectionType, Request, Response, StatusCode};
use actix_service::Service;
use actix_web::body::BoxBody;
use futures::SinkExt;
use tokio::net::TcpStream;

use super::websocket::{Accepted, WebSocket};

/// Serves one upgrade request on `app` (this worker's instance of the node's app).
pub(super) async fn serve<S, B>(app: Rc<S>, req: Request, mut framed: Framed<TcpStream, h1::Codec>) -> Result<(), actix_web::Error>
where
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<actix_web::Error>,
    B: MessageBody + 'static,
{
    let mut res: Response<BoxBody> = match app.call(req).await {
        Ok(res) => res.into().map_into_boxed_body(),
        Err(e) => e.into().error_response().into(),
    };
    let accepted = res.extensions_mut().remove::<Accepted>();
    match accepted {
        Some(accepted) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let (head, _) = res.into_parts();
            if let Err(e) = framed.send(h1::Message::Item((head, BodySize::None))).await {
                tracing::debug!(error = %e, "handshake answer not written");
                return Ok(());
            }
            // The dispatcher's buffers and this connection's task end here: the socket runs
            // in a task of its own that holds only the stream and the bytes sent early.
            let socket = {
                let parts = framed.into_parts();
                WebSocket::new(parts.io, &parts.read_buf)
            };
            actix_web::rt::spawn(accepted.run(socket));
        }
        _ => answer_and_close(framed, res).await,
    }
    Ok(())
}

/// Writes a whole answer with `Connection: close`, then closes.
async fn answer_and_close(mut framed: Framed<TcpStream, h1::Codec>, res: Response<BoxBody>) {
    let (mut head, body) = res.into_parts();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = match actix_web::body::to_bytes(body).await {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(error = %e, "answer to an upgrade request had a failing body");
            return;
        }
    };
    let size = BodySize::Sized(body.len() as u64);
    // Fed, then flushed once: head and body leave in one write, as the dispatcher sends them.
    let written = async {
        framed.feed(h1::Message::Item((head, size))).await?;
        if !body.is_empty() {
            framed.feed(h1::Message::Chunk(Some(body))).await?;
        }
        framed.feed(h1::Message::Chunk(None)).await?;
        // `close` alone would not write what was fed (Framed's close only flushes the stream).
        framed.flush().await?;
        framed.close().await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "answer to an upgrade request not written");
    }
}
