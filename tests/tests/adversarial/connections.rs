//! Connections that never speak, and bodies that never finish (hardening, round two).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use harness::process::OriginProcess;
use harness::{AppOptions, TestApp, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Whether the server closed `stream` within `within` (reading to the end: EOF or a reset).
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink)).await.is_ok()
}

/// Item 2: a connection that sends nothing, or only an HTTP/2 preface, is closed after
/// `HEADER_READ_TIMEOUT_MS` like a half-sent head (they were held for ever: protocol detection
/// had no timer).
#[tokio::test]
async fn connections_that_never_speak_are_closed_on_the_head_deadline() {
    let db = TestDb::new(None).await;
    let app =
        TestApp::spawn(&db, AppOptions::default().env("HEADER_READ_TIMEOUT_MS", "1000")).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    for _ in 0..5 {
        let mut h2 = TcpStream::connect(app.addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        silent.push(h2);
    }
    let started = Instant::now();
    for s in &mut silent {
        assert!(closed(s, Duration::from_secs(5)).await, "held {:?}", started.elapsed());
    }
    eprintln!("25 silent connections closed after {:?}", started.elapsed());
}

/// Item 2: one address holds at most `MAX_CONNECTIONS_PER_PEER` connections; more are closed
/// at once, and another address is served meanwhile.
#[tokio::test]
async fn one_address_holds_a_bounded_number_of_connections() {
    let db = TestDb::new(None).await;
    let options = AppOptions::default()
        .env("HEADER_READ_TIMEOUT_MS", "5000")
        .env("MAX_CONNECTIONS_PER_PEER", "16");
    let app = TestApp::spawn(&db, options).await;
    let greedy: IpAddr = "127.0.0.7".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(connect_from(greedy, app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..8 {
        let mut extra = connect_from(greedy, app.addr).await.unwrap();
        assert!(closed(&mut extra, Duration::from_secs(1)).await, "the 17th is closed at once");
    }
    let mut other = connect_from("127.0.0.8".parse().unwrap(), app.addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), other.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

/// Item 2: out of file descriptors (`RLIMIT_NOFILE` 256, 300 silent connections from many
/// addresses), the accept loop backs off instead of spinning, keeps the connections it has, and
/// recovers by itself: `/healthz` answers again once the silent ones hit their deadline.
#[tokio::test]
async fn the_accept_loop_survives_running_out_of_file_descriptors() {
    let db = TestDb::new(None).await;
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", harness::shared_redis_url()),
        ("HEADER_READ_TIMEOUT_MS", "1500".to_owned()),
    ];
    let origin = OriginProcess::start_with_nofile(&env, 256).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", origin.port).parse().unwrap();
    let mut silent = Vec::new();
    for i in 0..300u32 {
        let from: IpAddr = format!("127.0.{}.{}", 10 + i / 250, 1 + i % 250).parse().unwrap();
        if let Ok(s) = connect_from(from, addr).await {
            silent.push(s);
        }
    }
    // Past the deadline the server has closed the silent ones and accepts again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = reqwest::Client::new()
            .get(origin.url("/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(silent);
}

/// Item 3: a request whose body trickles in holds no in-flight slot while it does: forty
/// sign-ins from four addresses stall after one byte of a 64-byte body, and meanwhile
/// `/healthz` and the catalog still answer 200 (before, they answered 503 until the request
/// timeout: the slot was taken before the body arrived); the stalled ones get 408 at
/// `BODY_READ_TIMEOUT_MS`.
#[tokio::test]
async fn slow_bodies_take_no_in_flight_slot() {
    const SECRET: &str = "slow-body-edge-secret-0123456789";
    let db = TestDb::new(Some(origin::seed::Scale::Small)).await;
    let options = AppOptions::default()
        .env("MAX_CONCURRENT_REQUESTS", "16")
        .env("BODY_READ_TIMEOUT_MS", "1500")
        .env("EDGE_SECRET", SECRET);
    let app = TestApp::spawn(&db, options).await;
    let mut stalled = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nX-Edge-Secret: {SECRET}\r\n\
             X-Client-IP: 203.0.113.{}\r\nContent-Type: application/json\r\n\
             Content-Length: 64\r\n\r\n{{",
            i % 4
        );
        s.write_all(head.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get("/healthz").await.status(), 200, "health during the trickle");
    assert_eq!(app.get("/v1/catalog/providers").await.status(), 200, "catalog during it");
    for s in &mut stalled {
        let mut answer = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&answer, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&answer));
    }
}

/// Item 3: one client holds at most `MAX_IN_FLIGHT_PER_CLIENT` requests in flight; beyond, 429
/// at once, while another client is served. (Before, one client could take every slot.)
#[tokio::test]
async fn one_client_holds_a_bounded_share_of_the_in_flight_requests() {
    const SECRET: &str = "in-flight-edge-secret-0123456789";
    let db = TestDb::new(Some(origin::seed::Scale::Small)).await;
    let options = AppOptions::default()
        .env("MAX_IN_FLIGHT_PER_CLIENT", "4")
        .env("L1_CACHE", "off")
        .env("EDGE_SECRET", SECRET);
    let app = TestApp::spawn(&db, options).await;
    let get = |path: String, ip: &'static str| {
        let req = app.client.get(app.url(&path));
        req.header("x-edge-secret", SECRET).header("x-client-ip", ip).send()
    };
    let hot = "/v1/catalog/5sim/prices/ad/whatsapp".to_owned();
    assert_eq!(get(hot.clone(), "198.51.100.2").await.unwrap().status(), 200, "warm in Redis");
    let services: Vec<String> = sqlx::query_scalar(
        "SELECT s.code FROM prices x JOIN providers p ON p.id = x.provider_id
           JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
          WHERE p.code = '5sim' AND c.code = 'ad' AND s.code <> 'whatsapp' ORDER BY 1 LIMIT 10",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(services.len(), 10);
    // Every cold read now waits on the table.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let cold =
        services.iter().map(|s| get(format!("/v1/catalog/5sim/prices/ad/{s}"), "203.0.113.9"));
    let cold = futures::future::join_all(cold);
    let probe = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let other = get(hot.clone(), "198.51.100.2").await.unwrap().status();
        blocker.rollback().await.unwrap();
        other
    };
    let (cold, other) = tokio::join!(cold, probe);
    assert_eq!(other, 200, "another client is served meanwhile");
    let statuses: Vec<u16> = cold.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 6, "{statuses:?}");
}
