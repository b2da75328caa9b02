//! The node's HTTP server: actix-web's app served by actix-http, as `HttpServer` would, plus
//! an upgrade path (`upgrade.rs`) that `HttpServer` does not offer, so a WebSocket owns its
//! connection after the handshake.

use std::fmt;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};

/// What `HttpServer` sets by default, kept.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKLOG: u32 = 1024;

/// How the server runs.
pub struct ServerSettings {
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

/// Serves `app` (called once per worker, twice: for requests and for upgrades) on `listener`.
/// Signals are left to the node (`shutdown.rs`).
pub fn run<F, I, S, B>(listener: TcpListener, settings: ServerSettings, app: F) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let server = Server::build()
        .workers(settings.workers)
        .backlog(BACKLOG)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .listen("vitrina-http", listener, move || {
            let upgrade_app = app.clone();
            let upgrade = fn_factory(move || {
                let factory = upgrade_app().into_factory();
                async move {
                    let app = Rc::new(factory.new_service(AppConfig::default()).await.map_err(|e| {
                        tracing::error!(error = ?e, "the upgrade path's app did not start");
                    })?);
                    Ok::<_, ()>(fn_service(move |(req, framed)| super::upgrade::serve(app.clone(), req, framed)))
                }
            });
            let requests = app().into_factory().map_err(|e| e.into().error_response());
            HttpService::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(addr)
                .upgrade(upgrade)
                .finish(map_config(requests, |_| AppConfig::default()))
                .tcp()
        })?
        .run();
    Ok(server)
}
