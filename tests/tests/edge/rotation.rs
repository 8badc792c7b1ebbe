//! Rotating `EDGE_SECRET` (#32 item 6) as docs/operations.md says, one step at a time, with the
//! real origin and the real worker: at every step the origin believes the edge's client address
//! (edge → origin) and the edge takes the origin's purges (origin → edge); a wrong secret is
//! counted and believed by neither.

use std::time::{Duration, Instant};

use harness::edge::EdgeWorker;
use harness::{AppOptions, TestApp, TestDb, json};
use origin::seed::Scale;

const OLD: &str = "rotation-old-secret-0001";
const NEW: &str = "rotation-new-secret-0002";

/// One step: the origin's and the edge's (EDGE_SECRET, EDGE_SECRET_PREVIOUS).
async fn step(
    db: &TestDb,
    origin: (&str, Option<&str>),
    edge: (&str, Option<&str>),
) -> (bool, bool, f64) {
    let edge_port = harness::spare_port();
    let mut options = AppOptions::default()
        .env("EDGE_SECRET", origin.0)
        .env("EDGE_PURGE_URL", &format!("http://127.0.0.1:{edge_port}/__edge/purge"))
        .env("PURGE_BATCH_MS", "10");
    if let Some(previous) = origin.1 {
        options = options.env("EDGE_SECRET_PREVIOUS", previous);
    }
    let app = TestApp::spawn(db, options).await;
    let mut vars =
        vec![("ORIGIN_URL", format!("http://{}", app.addr)), ("EDGE_SECRET", edge.0.to_owned())];
    if let Some(previous) = edge.1 {
        vars.push(("EDGE_SECRET_PREVIOUS", previous.to_owned()));
    }
    let worker = EdgeWorker::start_on(edge_port, &vars).await;
    let previous_before = app.metric_total("edge_secret_previous_total").await;

    // Edge → origin: the client's address reaches the origin's answer only if it believed it.
    let r = reqwest::Client::new()
        .get(worker.url("/v1/client-ip"))
        .header("cf-connecting-ip", "203.0.113.77")
        .send()
        .await
        .unwrap();
    let believed = json(r).await["ip"] == "203.0.113.77";

    // Origin → edge: a purge the origin sends is taken (the worker logs it) or refused (404).
    app.state.purger.tags(vec!["catalog".to_owned()], origin::purge::Kind::Hard);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut purged = false;
    while Instant::now() < deadline && !purged {
        purged = worker.lines().iter().any(|l| l.contains("\"forgotten\""));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let used_previous = app.metric_total("edge_secret_previous_total").await - previous_before;
    worker.stop().await;
    (believed, purged, used_previous)
}

#[tokio::test]
async fn every_step_of_a_rotation_keeps_both_directions_working() {
    let db = TestDb::new(Some(Scale::Small)).await;
    // Before: both sides hold the old value.
    assert_eq!(step(&db, (OLD, None), (OLD, None)).await, (true, true, 0.0));
    // 1. The origin first: new current, old previous (it presents the old one to the edge).
    let (believed, purged, used) = step(&db, (NEW, Some(OLD)), (OLD, None)).await;
    assert!(believed && purged, "step 1: edge→origin {believed}, origin→edge {purged}");
    assert!(used >= 1.0, "the origin counts the edge's old value: {used}");
    // 2. The edge: new current, old previous.
    assert_eq!(step(&db, (NEW, Some(OLD)), (NEW, Some(OLD))).await, (true, true, 0.0));
    // 3. The origin drops the old value (edge_secret_previous_total stopped rising in step 2).
    assert_eq!(step(&db, (NEW, None), (NEW, Some(OLD))).await, (true, true, 0.0));
    // 4. The edge drops it too: done.
    assert_eq!(step(&db, (NEW, None), (NEW, None)).await, (true, true, 0.0));

    // Out of order (the edge moved to a value the origin does not hold): neither direction is
    // believed, and the origin counts the mismatch.
    let edge_port = harness::spare_port();
    let app = TestApp::spawn(
        &db,
        AppOptions::default()
            .env("EDGE_SECRET", OLD)
            .env("EDGE_PURGE_URL", &format!("http://127.0.0.1:{edge_port}/__edge/purge")),
    )
    .await;
    let before = app.metric_total("edge_secret_mismatch_total").await;
    let worker = EdgeWorker::start_on(
        edge_port,
        &[("ORIGIN_URL", format!("http://{}", app.addr)), ("EDGE_SECRET", NEW.to_owned())],
    )
    .await;
    let r = reqwest::Client::new()
        .get(worker.url("/v1/client-ip"))
        .header("cf-connecting-ip", "203.0.113.77")
        .send()
        .await
        .unwrap();
    assert_ne!(json(r).await["ip"], "203.0.113.77", "a wrong secret is not believed");
    assert!(app.metric_total("edge_secret_mismatch_total").await > before, "and it is counted");
    worker.stop().await;
}
