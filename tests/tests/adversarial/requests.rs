//! What every request gets, as an attacker reads it (hardening, round two).

use harness::{AppOptions, TestApp, TestDb};

/// Item 11: generated request ids say nothing about traffic: no shared prefix, no counter. (The
/// ids before were a per-thread prefix and a counter: `…000000000000003f`.)
#[tokio::test]
async fn request_ids_are_random() {
    let db = TestDb::new(None).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        let r = app.get("/healthz").await;
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let halves = |i: usize| -> std::collections::BTreeSet<String> {
        ids.iter().map(|id| id[i * 16..(i + 1) * 16].to_owned()).collect()
    };
    assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_eq!(halves(0).len(), 64, "no shared prefix: {ids:?}");
    assert_eq!(halves(1).len(), 64, "{ids:?}");
    let low: Vec<u64> = ids.iter().map(|id| u64::from_str_radix(&id[16..], 16).unwrap()).collect();
    let steps = low.windows(2).filter(|w| w[1].wrapping_sub(w[0]) < 1 << 20).count();
    assert!(steps < 4, "consecutive ids are not a counter: {ids:?}");
}

/// Item 5: an IPv6 client counts at its /64, its /56 and its /48, each a budget of its own.
/// Sixty /64s of one /48, each in a /56 of its own, on a tier of 10 a minute: 40 admitted (the
/// /48's four budgets), another /48 still served. (Before, all sixty: a /48 was 65 536 budgets.)
#[tokio::test]
async fn an_ipv6_48_shares_four_budgets() {
    const SECRET: &str = "ipv6-prefix-edge-secret-0123456789";
    let db = TestDb::new(None).await;
    let options = AppOptions::default()
        .env("EDGE_SECRET", SECRET)
        .env("RATE_LIMITS", "api=10/60000")
        .env("REGISTRATIONS_PER_HOUR", "1");
    let app = TestApp::spawn(&db, options).await;
    let ask = |ip: String| {
        let req = app.client.get(app.url("/v1/catalog/providers"));
        req.header("x-edge-secret", SECRET).header("x-client-ip", ip).send()
    };
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..60u32 {
        let status = ask(format!("2001:db8:7:{:x}::1", i << 8)).await.unwrap().status();
        *statuses.entry(status.as_u16()).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&40), "one /48's budget: {statuses:?}");
    assert_eq!(statuses.get(&429), Some(&20), "{statuses:?}");
    let mut one_56 = 0;
    for i in 0..30u32 {
        let ip = format!("2001:db8:9:{:x}::1", 0x100 + i);
        one_56 += usize::from(ask(ip).await.unwrap().status() == 200);
    }
    assert_eq!(one_56, 20, "one /56's budget is two /64s'");
    assert_eq!(ask("2001:db8:8::1".into()).await.unwrap().status(), 200, "another /48");
    assert_eq!(ask("203.0.113.1".into()).await.unwrap().status(), 200, "IPv4 its own");
    // Sign-ups too: one an hour per /64, four per /48.
    let mut created = 0;
    for i in 0..8u32 {
        let body = serde_json::json!({"email": format!("u{i}@example.com"), "password": harness::PASSWORD});
        let req = app.client.post(app.url("/v1/auth/register")).json(&body);
        let ip = format!("2001:db8:a:{:x}::1", i << 8);
        let r = req.header("x-edge-secret", SECRET).header("x-client-ip", ip).send().await;
        created += usize::from(r.unwrap().status() == 201);
    }
    assert_eq!(created, 4, "one /48's sign-ups");
}

/// Item 9: every path counts against a tier, `/openapi.json` and made-up paths too, and the
/// document goes out compressed with a strong ETag (and a 304 for it). Before: 1 100 requests for
/// it from one address, all 200, 94 KB each, uncompressed, no validator.
#[tokio::test]
async fn every_path_is_rate_limited_and_the_document_is_compressed() {
    let db = TestDb::new(None).await;
    let app = TestApp::spawn(&db, AppOptions::default().env("RATE_LIMITS", "api=30/60000")).await;
    let r = app.client.get(app.url("/openapi.json")).header("accept-encoding", "br").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "br");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with("-br\""), "{etag}");
    assert!(r.headers().contains_key("ratelimit"), "counted against a tier");
    let compressed = r.bytes().await.unwrap().len();
    let plain = origin::http::openapi_document().len();
    assert!(compressed * 5 < plain, "{compressed} bytes of {plain}");
    let again = app.client.get(app.url("/openapi.json")).header("accept-encoding", "br");
    let again = again.header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..40 {
        let path = if i % 2 == 0 { "/openapi.json".to_owned() } else { format!("/made/up/{i}") };
        *statuses.entry(app.get(&path).await.status().as_u16()).or_default() += 1;
    }
    // 30 in the window, two of them spent above: 28 more answered (200 or 404), 12 refused.
    assert_eq!(statuses.get(&429), Some(&12), "{statuses:?}");
    assert_eq!(app.get("/healthz").await.status(), 200, "liveness is never limited");
}
