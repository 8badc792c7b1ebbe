//! Allocations on the hit path (#26), counted on this thread only (`allocation-counter`, this
//! binary's global allocator): a warm hit is driven through the origin's own front door
//! (`origin::http::Public::serve`, exactly what the listener calls per request), polled once by
//! hand. That it finishes in that one poll is asserted too: the hit waits on nothing
//! (no Redis, no timer, no span), which is why it is cheap.

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Uri};
use bytes::Bytes;
use harness::{AppOptions, TestApp, TestDb};
use origin::seed::Scale;

/// Allocations made by `f` on this thread (`allocation-counter` is this test binary's global
/// allocator: it counts per thread, so the server's other tasks and the harness do not count).
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (out.expect("ran"), info.count_total)
}

/// A request as a browser sends it. Its header values are static, as hyper's are slices of one
/// shared read buffer: cloning one (as the front door does) costs a reference count, not an
/// allocation.
fn request(path: &str) -> Request<Body> {
    let value = HeaderValue::from_static;
    // The path in a buffer already shared, as hyper's is (so cloning the URI is not the
    // first clone of an owned buffer, which allocates).
    let shared = Bytes::from(path.to_owned());
    drop(shared.clone());
    let uri = Uri::from_maybe_shared(shared).unwrap();
    Request::get(uri)
        .header("host", value("api.example.test"))
        .header("user-agent", value("Mozilla/5.0"))
        .header("accept", value("application/json"))
        .header("accept-encoding", value("gzip, deflate, br"))
        .body(Body::empty())
        .unwrap()
}

/// The allocations of one request answered in the front door's first poll (panics if it was
/// not: the path waited on something). `public` is made once, as the server makes it: its first
/// requests set up what it keeps (a map's room, shared header values).
fn one_poll(public: &origin::http::Public, req: Request<Body>) -> (StatusCode, u64) {
    let public = public.clone();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let (poll, n) = counted(|| {
        let mut fut = std::pin::pin!(public.serve(req, peer));
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(resp) => Some(resp.status()),
            Poll::Pending => None,
        }
    });
    (poll.expect("answered in its first poll: the hit waits on nothing"), n)
}

/// What a warm hit may allocate: the response's header map (two: its index and its entries),
/// its body (`axum::body::Body` boxes what it holds), and the values of `X-Request-Id` and
/// `RateLimit` (a `HeaderValue` owns its bytes). Everything else (the key, the rate-limit
/// identity, the metric labels) is on the stack or made once. Lower this when one goes; a 304
/// has no body. (Was 14: the hit's client address went into request extensions, a map
/// allocated per request, and a fresh span formatted its fields.)
const HIT_ALLOCATIONS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_hit_is_answered_in_one_poll_with_few_allocations() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let (p, c, s, ..) = harness::some_price(&db.pool, 0).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    // Warm: the entry in L1, and a rate-limit lease for the client address.
    let warm = app.get(&path).await;
    assert_eq!(warm.status(), StatusCode::OK);
    let etag = warm.headers()["etag"].to_str().unwrap().to_owned();

    let public = origin::http::public(app.state.clone());
    // Once on this thread first: what a thread sets up once (its random generator's state) is
    // not the request's.
    one_poll(&public, request(&path));
    let (status, hit) = one_poll(&public, request(&path));
    assert_eq!(status, StatusCode::OK);
    println!("allocations per warm hit: {hit}");
    assert!(
        hit <= HIT_ALLOCATIONS,
        "a warm hit made {hit} allocations (at most {HIT_ALLOCATIONS})"
    );

    let revalidate = || {
        let mut r = request(&path);
        r.headers_mut().insert("if-none-match", etag.parse().unwrap());
        drop(r.headers()["if-none-match"].clone());
        r
    };
    // The first 304 of a process registers its metrics series; the second is what they cost.
    one_poll(&public, revalidate());
    let (status, not_modified) = one_poll(&public, revalidate());
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    println!("allocations per 304: {not_modified}");
    assert!(not_modified < HIT_ALLOCATIONS, "a 304 made {not_modified} allocations");

    // The counter counts: a request that goes to Redis (a known absence is not in L1 on a
    // cold key) is not answered in one poll, and a large body costs allocations.
    let cold = request(&format!("/v1/catalog/{p}/prices/{c}/no-such-service"));
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = std::pin::pin!(public.clone().serve(cold, "127.0.0.1:40000".parse().unwrap()));
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "a cold key waits on Redis");
    let (_, big) = counted(|| vec![0u8; 1 << 20]);
    assert_eq!(big, 1);
}
