//! The HTTP server loop: hyper with the connection-level limits a public server needs, which
//! `axum::serve` does not expose (nginx's `client_header_timeout`, `keepalive_timeout` and
//! `large_client_header_buffers`, in hyper's terms):
//!
//! - a client must send a whole request head within `HEADER_READ_TIMEOUT_MS`; the same timer
//!   runs while a kept-alive connection waits for its next request, so idle connections are
//!   dropped too;
//! - a request line and headers larger than [`MAX_HEAD_BYTES`] are refused (hyper answers 414 or
//!   431) before any of it reaches the router;
//! - HTTP/1 only: the head deadline then runs from the first byte a connection owes (nothing
//!   here needs h2c, and the auto-detecting builder waited for a protocol with no timer at all,
//!   so a connection that sent nothing, or only an HTTP/2 preface, was held for ever);
//! - one socket peer holds at most `MAX_CONNECTIONS_PER_PEER` connections (IPv6 by /64);
//!   beyond, a new one is closed at once;
//! - out of file descriptors (`EMFILE`), the loop backs off (doubling up to a second), keeps
//!   serving the connections it has, and logs once per episode rather than per attempt.
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

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Largest request line plus headers, in bytes (hyper's lower bound is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What [`serve`] holds every connection to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `HEADER_READ_TIMEOUT_MS`: a whole request head within this, from the connection's first
    /// byte owed; also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS_PER_PEER` (0: unlimited).
    pub max_per_peer: usize,
}

/// Serves `app` (called with each request and its connection's peer address) on `listener`
/// until `shutdown` resolves, then drains the open connections.
pub async fn serve<A, F>(
    listener: TcpListener,
    app: A,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let peers = crate::admission::Shares::new(limits.max_per_peer);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    if !backoff.is_zero() {
                        tracing::info!("accepting connections again");
                        backoff = Duration::ZERO;
                    }
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause (doubling, up to a second)
                    // instead of spinning; the connections already open keep being served, and
                    // their deadlines free descriptors.
                    if backoff.is_zero() {
                        tracing::warn!(error = %e, "accept failed; backing off until it succeeds");
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(held) = peers.take(peer.ip()) else {
            // Closed at once: this peer has its share open already.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| app(req, peer));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _held = held;
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
