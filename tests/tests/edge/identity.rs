//! Who a request is, from edge to origin (#23 items 3 and 4): one request id in the client's
//! answer, the edge's log line and the origin's; trusted server-side clients with their own
//! budget and their end user's address; Cloudflare's rate-limit bindings where bound.

use std::time::Duration;

use harness::edge::{EdgeWorker, Tap, TapAnswer};
use harness::process::OriginProcess;
use harness::{TestDb, shared_redis_url};
use origin::seed::Scale;
use reqwest::StatusCode;

use crate::{SECRET, header};

#[tokio::test]
async fn one_request_id_from_the_edge_to_the_origins_log() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let origin = OriginProcess::start(&[
        ("DATABASE_URL", db.app_url()),
        ("REDIS_URL", shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("RUST_LOG", "warn,access=debug".to_owned()),
    ])
    .await;
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", format!("http://127.0.0.1:{}", origin.port)),
        ("EDGE_SECRET", SECRET.to_owned()),
    ])
    .await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for path in ["/v1/catalog/providers", "/v1/client-ip"] {
        // A client's own id is not adopted: the edge makes one.
        let resp = http.get(edge.url(path)).header("x-request-id", "planted").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let id = header(&resp, "x-request-id");
        assert!(id.len() >= 16 && id != "planted", "{path}: {id}");
        assert!(!ids.contains(&id), "a fresh id per request: {ids:?} {id}");
        ids.push(id.clone());

        let line = edge.access_line(&id).await;
        assert_eq!(line["path"], path);
        assert_eq!(line["status"], 200);
        assert_eq!(line["origin_status"], 200, "{line}");
        assert!(line["origin_ms"].as_u64().is_some(), "{line}");
        assert!(line["cache"] == "MISS" || line["cache"] == "BYPASS", "{line}");

        let mut found = None;
        for _ in 0..100 {
            found = origin.log_lines().into_iter().find(|l| l.contains(&id));
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let found = found.unwrap_or_else(|| panic!("no origin log line for {id}"));
        let logged: serde_json::Value = serde_json::from_str(&found).unwrap();
        assert_eq!(logged["fields"]["request_id"], id.as_str(), "{logged}");
        assert_eq!(logged["fields"]["path"], path, "{logged}");
        assert_eq!(logged["fields"]["status"], 200, "{logged}");
        println!("edge:   {line}\norigin: {found}");
    }
    edge.stop().await;
}

const NEXT_KEY: &str = "next-server-key-0123456789abcdef0123";

#[tokio::test]
async fn trusted_server_side_clients_have_their_own_budget_and_name_their_end_user() {
    let tap =
        Tap::start(TapAnswer::Fixed(200, vec![("content-type", "application/json")], "{}")).await;
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", tap.url.clone()),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("RATE_LIMIT_PER_MINUTE", "60".to_owned()),
        ("RATE_LIMIT_BURST", "3".to_owned()),
        ("TRUSTED_CLIENTS", format!("nextjs={NEXT_KEY}")),
        ("TRUSTED_RATE_LIMIT_PER_MINUTE", "60".to_owned()),
        ("TRUSTED_RATE_LIMIT_BURST", "12".to_owned()),
    ])
    .await;
    let http = reqwest::Client::new();
    let from_server = |key: Option<&str>, end_user: &str| {
        let mut req = http
            .get(edge.url("/v1/me/balance"))
            .header("CF-Connecting-IP", "192.0.2.10")
            .header("X-End-User-IP", end_user);
        if let Some(key) = key {
            req = req.header("X-Edge-Client-Key", key);
        }
        req.send()
    };
    // The trusted server: twelve requests for twelve users, all through, each forwarded as its
    // user; the thirteenth is over its own budget.
    for i in 0..12 {
        let r = from_server(Some(NEXT_KEY), &format!("203.0.113.{i}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "trusted request {i}");
    }
    assert_eq!(
        from_server(Some(NEXT_KEY), "203.0.113.99").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let users: Vec<String> =
        tap.seen().iter().map(|s| s.headers["x-client-ip"].to_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(users, expected, "the origin counts each end user");

    // The same address without the key, or with a wrong one: an ordinary client (three), and
    // its X-End-User-IP is ignored.
    let before = tap.count();
    let mut statuses = Vec::new();
    for key in [None, Some("next-server-key-0123456789abcdef0124"), None, None] {
        statuses.push(from_server(key, "203.0.113.50").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    for seen in &tap.seen()[before..] {
        assert_eq!(seen.headers["x-client-ip"], "192.0.2.10", "a forged end user");
    }
    // The key reached neither the origin nor a log line.
    for seen in tap.seen() {
        for (name, value) in &seen.headers {
            assert!(!value.as_bytes().windows(8).any(|w| w == &NEXT_KEY.as_bytes()[..8]), "{name}");
        }
    }
    assert!(edge.lines().iter().all(|l| !l.contains(&NEXT_KEY[..12])), "the key in a log line");
    let trusted_lines =
        edge.access_log().iter().filter(|l| l["caller"] == "trusted:nextjs").count();
    assert_eq!(trusted_lines, 13, "the log names the client, not its key");
    edge.stop().await;
}

#[tokio::test]
async fn cloudflares_rate_limit_bindings_count_where_they_are_bound() {
    let tap = Tap::storable().await;
    let bindings = serde_json::json!({
        "EDGE_RATE_LIMIT": {"simple": {"limit": 3, "period": 60}},
        "EDGE_RATE_LIMIT_V6_56": {"simple": {"limit": 6, "period": 60}},
        "EDGE_RATE_LIMIT_V6_48": {"simple": {"limit": 8, "period": 60}},
        "EDGE_RATE_LIMIT_TRUSTED": {"simple": {"limit": 5, "period": 60}},
    });
    let edge = EdgeWorker::start_with(
        &[
            ("ORIGIN_URL", tap.url.clone()),
            ("EDGE_SECRET", SECRET.to_owned()),
            // The isolate's own limiter would let all of these through.
            ("RATE_LIMIT_BURST", "1000".to_owned()),
            ("TRUSTED_CLIENTS", format!("nextjs={NEXT_KEY}")),
        ],
        bindings,
    )
    .await;
    let http = reqwest::Client::new();
    let ask = |ip: String, key: Option<&'static str>| {
        let mut req = http.get(edge.url("/v1/catalog/providers")).header("CF-Connecting-IP", ip);
        if let Some(key) = key {
            req = req.header("X-Edge-Client-Key", key);
        }
        async move { req.send().await.unwrap() }
    };
    let statuses = |n: usize, ip: &'static str, key| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(ask(ip.to_owned(), key).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses(4, "198.51.100.30", None).await, vec![200, 200, 200, 429]);
    let refused = ask("198.51.100.30".into(), None).await;
    assert_eq!(header(&refused, "retry-after"), "60", "the binding's period");
    assert_eq!(statuses(1, "198.51.100.31", None).await, vec![200], "another address");
    // A trusted client counts on its own binding.
    assert_eq!(
        statuses(6, "198.51.100.30", Some(NEXT_KEY)).await,
        vec![200; 5].into_iter().chain([429]).collect::<Vec<_>>()
    );
    // IPv6: /64s of one /48, each in a /56 of its own: the /48's binding (8) bounds them all.
    let mut admitted = 0;
    for i in 0..12u32 {
        let ip = format!("2001:db8:7:{:x}::1", i << 8);
        admitted += usize::from(ask(ip, None).await.status() == StatusCode::OK);
    }
    assert_eq!(admitted, 8, "one /48 through the binding");
    edge.stop().await;
}
