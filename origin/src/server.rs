//! The HTTP server loop: hyper with the connection-level limits a public server needs, which
//! `axum::serve` does not expose (nginx's `client_header_timeout`, `keepalive_timeout` and
//! `large_client_header_buffers`, in hyper's terms):
//!
//! - a client must send a whole request head within `HEADER_READ_TIMEOUT_MS`; the same timer
//!   runs while a kept-alive connection waits for its next request, so idle connections are
//!   dropped too;
//! - a request line and headers larger than [`MAX_HEAD_BYTES`] are refused (hyper answers 414 or
//!   431) before any of it reaches the router.
//!
//! Graceful shutdown: on the signal the listener stops accepting, every connection finishes the
//! request it is serving and closes, and the loop returns when all are done.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Largest request line plus headers, in bytes (hyper's lower bound is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `app` (called with each request and its connection's peer address) on `listener`
/// until `shutdown` resolves, then drains the open connections.
pub async fn serve<A, F>(
    listener: TcpListener,
    app: A,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(header_read_timeout)
        .keep_alive_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| app(req, peer));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            // A client that resets or times out is no error of ours.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A plain router as an app for [`serve`]: the peer address as `ConnectInfo`, then routing.
pub fn routed(
    router: Router,
) -> impl Fn(Request<Incoming>, SocketAddr) -> tower::util::Oneshot<Router, Request<Body>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |req, peer| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    }
}
