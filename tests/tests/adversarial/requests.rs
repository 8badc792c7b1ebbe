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
