//! The edge as a CDN front line (#23 item 5): hostile requests, each checked at the origin side
//! through a [`Tap`] that records what reached it. Every test also fails if the worker panicked
//! (the harness reads the worker's output).

use std::time::{Duration, Instant};

use harness::edge::{EdgeWorker, Tap, TapAnswer, raw_exchange};
use reqwest::StatusCode;

use crate::{SECRET, header, stack};

fn json_answer(status: u16) -> TapAnswer {
    TapAnswer::Fixed(status, vec![("content-type", "application/json")], "{\"ok\":true}")
}

async fn edge_for(tap: &Tap, extra: &[(&str, &str)]) -> EdgeWorker {
    let mut vars = vec![
        ("ORIGIN_URL", tap.url.clone()),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("CORS_ALLOWED_ORIGINS", "https://nexnum.app".to_owned()),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, (*v).to_owned()));
    }
    EdgeWorker::start(&vars).await
}

/// The High item: `Expect: 100-continue` (curl adds it to bodies over 1 MiB) was forwarded, the
/// origin answered `100 Continue`, and building a response with status 100 panicked the isolate
/// (the client got a 500 after the origin had done the work; the limiter was wiped).
#[tokio::test]
async fn expect_100_continue_never_reaches_the_origin_nor_crashes_the_worker() {
    let s = stack(&[], Some(SECRET)).await;
    let body = br#"{"email":"expect@example.com","password":"correct horse battery"}"#;
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, text) = raw_exchange(s.edge.port, &head, body, Duration::from_secs(10)).await;
    assert_eq!(status, 201, "the origin's own answer, once:\n{text}");
    let seen = s.tap.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("expect").is_none(), "Expect was forwarded");

    // An origin that sends an interim 100 as if it were the answer: a JSON 502, no panic.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = sock.write_all(b"HTTP/1.1 103 Early Hints\r\n\r\n").await;
        }
    });
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", url),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("ORIGIN_TIMEOUT_MS", "1500".to_owned()),
    ])
    .await;
    let resp = reqwest::Client::new()
        .post(edge.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert!(
        [502, 504].contains(&resp.status().as_u16()),
        "an unusable origin answer is a gateway error, not a crash: {}",
        resp.status()
    );
    edge.stop().await;
}

#[tokio::test]
async fn unknown_and_unsupported_methods_are_refused_at_the_edge() {
    let tap = Tap::start(json_answer(200)).await;
    let edge = edge_for(&tap, &[]).await;
    let http = reqwest::Client::new();
    let send = |method: &str, path: &str| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        http.request(m, edge.url(path)).send()
    };
    for (method, path) in [
        ("PROPFIND", "/v1/auth/logout"),
        ("PURGE", "/v1/catalog/providers"),
        ("MKCOL", "/v1/me/balance"),
    ] {
        let r = send(method, path).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED, "{method}");
        assert_eq!(crate::json(r).await["error"]["code"], "not_implemented");
    }
    // A method workerd itself does not know never reaches the worker at all.
    let brew = send("BREW", "/v1/catalog/providers").await.unwrap();
    assert!(brew.status().is_client_error() || brew.status().is_server_error());
    let trace = send("TRACE", "/v1/catalog/providers").await.unwrap();
    assert_eq!(trace.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(header(&trace, "allow").contains("GET"));
    assert_eq!(tap.count(), 0, "none reached the origin (before: PROPFIND went on as GET)");
    edge.stop().await;
}

#[tokio::test]
async fn only_allow_listed_headers_reach_the_origin() {
    let tap = Tap::start(json_answer(200)).await;
    let edge = edge_for(&tap, &[]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let head = format!(
        "POST /v1/me/purchases HTTP/1.1\r\nHost: evil.example\r\n\
         CF-Connecting-IP: 198.51.100.20\r\n\
         Authorization: Bearer tok\r\nCookie: __Host-session=s\r\nIdempotency-Key: k-1\r\n\
         Content-Type: application/json\r\nX-Requested-With: fetch\r\n\
         traceparent: {traceparent}\r\ntracestate: rojo=00f067aa0ba902b7\r\n\
         Forwarded: for=203.0.113.1\r\nX-Forwarded-For: 203.0.113.1\r\n\
         X-Forwarded-Host: evil.example\r\nX-Real-IP: 203.0.113.1\r\nTrue-Client-IP: 203.0.113.1\r\n\
         X-HTTP-Method-Override: DELETE\r\nProxy-Authorization: Basic eDp5\r\n\
         X-Edge-Secret: forged-secret-0123456789\r\nX-Client-IP: 203.0.113.66\r\n\
         X-Edge-Client-Key: not-a-key\r\nX-End-User-IP: 203.0.113.77\r\nX-Request-Id: planted\r\n\
         X-Hop: secret-hop\r\nConnection: close, X-Hop\r\nTE: trailers\r\n\
         Content-Length: 2\r\n\r\n"
    );
    let (status, text) = raw_exchange(edge.port, &head, b"{}", Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{text}");
    let seen = tap.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
    for name in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
        "true-client-ip",
        "x-http-method-override",
        "proxy-authorization",
        "x-hop",
        "te",
        "expect",
        "x-edge-client-key",
        "x-end-user-ip",
    ] {
        assert_eq!(get(name), None, "{name} reached the origin");
    }
    assert_eq!(get("x-edge-secret").as_deref(), Some(SECRET), "the edge's own secret only");
    assert_eq!(get("x-client-ip").as_deref(), Some("198.51.100.20"), "the address the edge saw");
    assert_ne!(get("x-request-id").as_deref(), Some("planted"), "the edge's own id");
    assert_eq!(get("traceparent").as_deref(), Some(traceparent));
    assert_eq!(get("tracestate").as_deref(), Some("rojo=00f067aa0ba902b7"));
    for name in ["authorization", "cookie", "idempotency-key", "content-type", "x-requested-with"] {
        assert!(get(name).is_some(), "{name} is the origin's business");
    }
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, b"{}");

    // A malformed traceparent is dropped, and its tracestate with it.
    let r = reqwest::Client::new()
        .get(edge.url("/v1/me/balance"))
        .header("traceparent", "00-XYZ-00f067aa0ba902b7-01")
        .header("tracestate", "a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let last = tap.seen().pop().unwrap();
    assert!(last.headers.get("traceparent").is_none() && last.headers.get("tracestate").is_none());
    edge.stop().await;
}

#[tokio::test]
async fn bodies_over_the_origin_limit_are_refused_before_the_origin_sees_them() {
    let tap = Tap::start(json_answer(200)).await;
    let edge = edge_for(&tap, &[]).await;
    let limit = shared::headers::MAX_REQUEST_BODY_BYTES;

    // 8 MB announced, 1 KB sent: refused at once, not after buffering.
    let started = Instant::now();
    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
                Content-Length: 8000000\r\nConnection: close\r\n\r\n";
    let (status, text) = raw_exchange(edge.port, head, &[b'x'; 1024], Duration::from_secs(5)).await;
    assert_eq!(status, 413, "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered without waiting for the body");

    // No declared length (chunked), one byte over: refused; at the limit: passed on whole.
    let chunked = |len: usize| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(vec![b'a'; len / 2]), Ok(vec![b'b'; len - len / 2])];
        reqwest::Body::wrap_stream(futures::stream::iter(chunks))
    };
    // No connection reuse: one refused before its body was read is closed by the server.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let over = http.post(edge.url("/v1/auth/login")).body(chunked(limit + 1)).send().await.unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(crate::json(over).await["error"]["code"], "payload_too_large");
    let declared_over = http.post(edge.url("/v1/auth/login")).body(vec![b'c'; limit + 1]);
    assert_eq!(declared_over.send().await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(tap.count(), 0, "nothing over the limit reached the origin");

    let at = http.post(edge.url("/v1/auth/login")).body(chunked(limit)).send().await.unwrap();
    assert_eq!(at.status(), StatusCode::OK);
    let declared = http.post(edge.url("/v1/auth/login")).body(vec![b'd'; limit]).send().await;
    assert_eq!(declared.unwrap().status(), StatusCode::OK);
    let lens: Vec<usize> = tap.seen().iter().map(|s| s.body.len()).collect();
    assert_eq!(lens, vec![limit, limit], "bodies at the limit are passed on whole");
    edge.stop().await;
}

#[tokio::test]
async fn preflights_count_against_the_per_client_limit() {
    let tap = Tap::start(json_answer(200)).await;
    let edge = edge_for(&tap, &[("RATE_LIMIT_PER_MINUTE", "60"), ("RATE_LIMIT_BURST", "3")]).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http
            .request(reqwest::Method::OPTIONS, edge.url("/v1/catalog/providers"))
            .header("Origin", "https://nexnum.app")
            .header("Access-Control-Request-Method", "GET")
            .header("CF-Connecting-IP", "198.51.100.9")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![204, 204, 204, 429, 429], "before: 150 of 150 got 204");
    edge.stop().await;
}

#[tokio::test]
async fn every_answer_with_cors_headers_varies_on_origin() {
    let tap = Tap::start(TapAnswer::Fixed(
        200,
        vec![("content-type", "application/json"), ("vary", "Accept-Encoding")],
        "{}",
    ))
    .await;
    let edge = edge_for(&tap, &[]).await;
    let http = reqwest::Client::new();
    let from_site = |path: &str| http.get(edge.url(path)).header("Origin", "https://nexnum.app");
    let forwarded = from_site("/v1/me/balance").send().await.unwrap();
    assert_eq!(header(&forwarded, "access-control-allow-origin"), "https://nexnum.app");
    assert_eq!(header(&forwarded, "vary"), "Accept-Encoding, Origin");
    let refused = from_site("/metrics").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&refused, "access-control-allow-origin"), "https://nexnum.app");
    assert!(header(&refused, "vary").contains("Origin"));
    edge.stop().await;
}

#[tokio::test]
async fn the_cache_key_is_the_configured_host_not_the_requests() {
    let tap = Tap::storable().await;
    let edge = edge_for(&tap, &[("PUBLIC_HOST", "catalog.nexnum.test")]).await;
    let http = reqwest::Client::new();
    let get = |host: &'static str| http.get(edge.url("/v1/catalog/providers")).header("Host", host);
    assert_eq!(header(&get("a.example").send().await.unwrap(), "x-cache"), "MISS");
    let deadline = Instant::now() + Duration::from_secs(3);
    for host in ["b.example", "c.example", "127.0.0.1"] {
        loop {
            if header(&get(host).send().await.unwrap(), "x-cache") == "HIT" {
                break;
            }
            assert!(Instant::now() < deadline, "{host} never hit the entry another host made");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(tap.count(), 1, "three Host values, one entry (before: one miss per Host)");
    edge.stop().await;
}

#[tokio::test]
async fn head_is_answered_from_the_cache_without_a_body() {
    let tap = Tap::storable().await;
    let edge = edge_for(&tap, &[]).await;
    let http = reqwest::Client::new();
    // A cold HEAD is fetched (as a GET) and stored; the next HEAD and GET are hits.
    let cold = http.head(edge.url("/v1/catalog/providers")).send().await.unwrap();
    assert_eq!(cold.status(), StatusCode::OK);
    assert_eq!(header(&cold, "x-cache"), "MISS");
    let etag = header(&cold, "etag");
    let policy = header(&cold, "cache-control");
    assert!(cold.bytes().await.unwrap().is_empty());
    assert_eq!(tap.seen()[0].method, "GET", "the edge fetches what it can store");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let head = http.head(edge.url("/v1/catalog/providers")).send().await.unwrap();
        if header(&head, "x-cache") == "HIT" {
            assert_eq!(header(&head, "etag"), etag);
            assert_eq!(header(&head, "cache-control"), policy);
            assert!(head.bytes().await.unwrap().is_empty(), "a HEAD has no body");
            break;
        }
        assert!(Instant::now() < deadline, "HEAD never answered from the cache");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = http.get(edge.url("/v1/catalog/providers")).send().await.unwrap();
    assert_eq!(header(&get, "x-cache"), "HIT");
    assert_eq!(get.text().await.unwrap(), "{\"providers\":[]}");
    assert_eq!(tap.count(), 1, "before: every HEAD was forwarded (BYPASS)");
    edge.stop().await;
}

/// `EDGE_ENV` outside `local` keeps the rules (#23 item 2, and the #22 claim that the edge
/// refuses to run without `EDGE_SECRET`): every request a JSON 500, the reason in the log.
#[tokio::test]
async fn an_unsafe_configuration_is_refused_outside_local_development() {
    let tap = Tap::storable().await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("EDGE_ENV", "production"), ("PUBLIC_HOST", "catalog.nexnum.test")], "ORIGIN_URL"),
        (
            &[
                ("EDGE_ENV", "production"),
                ("ORIGIN_URL", "https://origin.nexnum.test"),
                ("PUBLIC_HOST", "catalog.nexnum.test"),
                ("EDGE_SECRET", ""),
            ],
            "EDGE_SECRET",
        ),
        (
            &[
                ("EDGE_ENV", "staging"),
                ("ORIGIN_URL", "https://origin.nexnum.test"),
                ("PUBLIC_HOST", "catalog.nexnum.test"),
                ("CACHE_TTL_DIVISOR", "30"),
            ],
            "CACHE_TTL_DIVISOR",
        ),
    ];
    for (vars, names) in cases {
        let edge = edge_for(&tap, vars).await;
        let r = reqwest::get(edge.url("/v1/catalog/providers")).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{names}");
        assert!(!header(&r, "x-request-id").is_empty());
        assert_eq!(crate::json(r).await["error"]["code"], "misconfigured");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !edge.lines().iter().any(|l| l.contains("misconfigured") && l.contains(names)) {
            assert!(Instant::now() < deadline, "the log names {names}: {:#?}", edge.lines());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edge.stop().await;
    }
    assert_eq!(tap.count(), 0);
}
