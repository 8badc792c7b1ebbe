//! A hostile upstream document against a serving origin (#33 items 1, 3, 4): it cannot take the
//! replica's memory, stall its requests on one core, or redirect the sync elsewhere.

use std::time::{Duration, Instant};

use harness::TestDb;
use harness::process::OriginProcess;
use harness::upstream::Upstream;
use origin::seed::Scale;

/// An sms-activate document of one country with `n` products no mapping knows (~38 bytes each).
fn unmapped_document(n: usize) -> String {
    let mut doc = String::with_capacity(n * 40 + 16);
    doc.push_str("{\"0\": {");
    for i in 0..n {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!("\"svc{i:07}\": {{\"cost\": 12.5, \"count\": 40}}"));
    }
    doc.push_str("}}");
    doc
}

/// Peak resident memory of a process so far, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// A serving origin syncing `upstream` every second (provider `sms-activate`).
async fn syncing_origin(db: &TestDb, upstream: &Upstream, one_core: bool) -> OriginProcess {
    let env = vec![
        ("DATABASE_URL", db.serving_url()),
        ("REDIS_URL", harness::shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("SYNC_PROVIDERS", format!("sms-activate=sms-activate@{}", upstream.url)),
        ("SYNC_INTERVAL_SECS", "1".into()),
        ("SYNC_ATTEMPTS", "1".into()),
        ("SYNC_MAX_BYTES", (256u64 << 20).to_string()),
        ("RATE_LIMITS", "api=100000000/60000".into()),
    ];
    if one_core {
        OriginProcess::start_on_one_core(&env).await
    } else {
        OriginProcess::start(&env).await
    }
}

/// Waits until the sync log has `n` runs of the provider.
async fn runs_logged(db: &TestDb, n: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let runs: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE provider = 'sms-activate'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if runs >= n || Instant::now() > deadline {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 1: a 38 MB document of 1 000 000 products no mapping knows (the whole of one country)
/// is read in memory bounded by what is kept: the replica's peak stays under 128 MiB (it reached
/// 956 MB when every offer was collected before mapping).
#[tokio::test]
async fn a_huge_unmapped_document_is_read_in_bounded_memory() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let doc = unmapped_document(1_000_000);
    let size_mb = doc.len() as f64 / 1e6;
    let upstream = Upstream::start(doc).await;
    let origin = syncing_origin(&db, &upstream, false).await;
    let before = peak_rss_mib(origin.pid().unwrap());
    assert!(runs_logged(&db, 1, Duration::from_secs(60)).await >= 1, "no sync run logged");
    let peak = peak_rss_mib(origin.pid().unwrap());
    let (outcome, detail): (String, String) = sqlx::query_as(
        "SELECT outcome, detail FROM sync_runs WHERE provider = 'sms-activate' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    eprintln!(
        "a {size_mb:.0} MB document of 1 000 000 unmapped products: peak RSS {before:.0} -> \
         {peak:.0} MiB; the run: {outcome} ({detail})"
    );
    assert_eq!(outcome, "held", "nothing maps: held, not applied");
    assert!(peak < 128.0, "peak RSS {peak:.0} MiB for a {size_mb:.0} MB document");
}

/// Item 3: on one core, health and the catalog keep answering while a hostile sync reads a
/// large document (24 of 26 probes timed out when the reader's channel blocked the runtime's
/// thread), and SIGTERM ends the run in progress within the shutdown grace (it took ~55 s).
#[tokio::test]
async fn on_one_core_a_hostile_sync_stalls_neither_health_nor_the_catalog() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let upstream = Upstream::start(unmapped_document(1_500_000)).await;
    let origin = syncing_origin(&db, &upstream, true).await;
    let (p, c, s, _, _) = harness::some_price(&db.pool, 1).await;
    let price = origin.url(&format!("/v1/catalog/{p}/prices/{c}/{s}"));
    let health = origin.url("/healthz");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    // Probe while the sync runs: every 100 ms, each must answer within a second.
    let fetches_before = upstream.requests();
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.requests() == fetches_before {
        assert!(Instant::now() < deadline, "the sync never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut answered, mut probes) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        for url in [&health, &price] {
            probes += 1;
            if http.get(url.as_str()).send().await.is_ok_and(|r| r.status().is_success()) {
                answered += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "one core, a hostile sync running: {answered} of {probes} probes answered within 1 s"
    );
    assert_eq!(answered, probes, "every probe answered within a second");

    // SIGTERM while a run is in progress: out within the grace (10 s) and a little.
    while upstream.requests() < fetches_before + 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    origin.sigterm();
    let status = origin.wait_exit(Duration::from_secs(13)).await;
    let took = stopping.elapsed();
    eprintln!("SIGTERM during a sync: exited in {:.1} s", took.as_secs_f64());
    assert!(status.is_some_and(|s| s.success()), "exited cleanly within 13 s: {status:?}");
}

/// Item 4: the sync follows a redirect only to the same host over https: a document redirected
/// to another address (or to plain http) is refused and never fetched there, with the provider's
/// URL (and any API key in it) never sent to it. Before, any redirect was followed and its
/// document applied.
#[tokio::test]
async fn a_sync_never_follows_a_redirect_to_another_host() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let elsewhere =
        Upstream::start_at("127.0.0.2", r#"{"0": {"wa": {"cost": 1, "count": 1}}}"#.into()).await;
    let upstream = Upstream::start("{}".into()).await;
    upstream.fault(&[harness::upstream::Fault::Redirect(format!("{}?stolen=1", elsewhere.url))]);
    let origin = syncing_origin(&db, &upstream, false).await;
    assert!(runs_logged(&db, 1, Duration::from_secs(20)).await >= 1);
    let (outcome, detail): (String, String) = sqlx::query_as(
        "SELECT outcome, detail FROM sync_runs WHERE provider = 'sms-activate' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    eprintln!("a redirect to another host: {outcome} ({detail})");
    assert_eq!(outcome, "failed");
    assert!(detail.contains("redirected"), "{detail}");
    assert_eq!(elsewhere.requests(), 0, "nothing was fetched from the other host");
    drop(origin);
}
