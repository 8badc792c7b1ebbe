//! The fleet behind a real load balancer (`make fleet`; ignored by plain `cargo test`): the edge
//! worker in workerd → HAProxy (`ops/haproxy.cfg`) → three `origin` processes → PgBouncer →
//! PostgreSQL, a Redis Cluster of 3 masters and 3 replicas, under a bounded steady load (through
//! the edge, forwarded and cached, and straight at HAProxy). Every origin is restarted in turn
//! (SIGTERM, then a new one on its ports): no request may fail. Then one is killed (SIGKILL): at
//! most its in-flight requests may fail. Then the Redis master holding the hot price key is
//! killed: no request may fail (the catalog falls back to PostgreSQL, the limiter fails open),
//! and the time until the replica has taken over is reported.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::edge::EdgeWorker;
use harness::process::OriginProcess;
use harness::{RedisCluster, TestDb, spare_port};
use origin::seed::Scale;

/// Concurrent clients of the steady load: the most requests that can be in flight at once.
const CLIENTS: usize = 8;
const SECRET: &str = "fleet-edge-secret-0123456789";

struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `CLIENTS` clients, each at most one request at a time, round-robin over `urls`, until stopped.
fn steady_load(urls: Vec<String>) -> Load {
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let tasks = (0..CLIENTS)
        .map(|i| {
            let url = urls[i % urls.len()].clone();
            let (stop, ok, failed, client) =
                (stop.clone(), ok.clone(), failed.clone(), client.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            eprintln!("load: {}", r.status());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("load: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    Load { stop, ok, failed, tasks }
}

impl Load {
    /// (succeeded, failed) so far.
    fn counts(&self) -> (u64, u64) {
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// HAProxy in the foreground with `ops/haproxy.cfg` for these origins; killed on drop.
fn haproxy(listen: u16, origins: &[(u16, u16)]) -> tokio::process::Child {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = std::fs::read_to_string(root.join("ops/haproxy.cfg")).expect("ops/haproxy.cfg");
    let servers: String = origins
        .iter()
        .enumerate()
        .map(|(i, (port, ops))| format!("    server origin{i} 127.0.0.1:{port} check port {ops}\n"))
        .collect();
    let config =
        template.replace("@LISTEN_PORT@", &listen.to_string()).replace("@SERVERS@", &servers);
    let path = std::env::temp_dir().join(format!("nexnum-haproxy-{listen}.cfg"));
    std::fs::write(&path, config).unwrap();
    tokio::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy must be installed (Debian package haproxy)")
}

async fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "the fleet scenario: make fleet"]
async fn a_rolling_restart_loses_nothing_and_a_crash_only_its_in_flight_requests() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let bouncer = std::env::var("PGBOUNCER_URL").expect("PGBOUNCER_URL (make fleet sets it)");
    let prefix = format!("fleet:{}:", uuid::Uuid::new_v4().simple());
    let mut cluster = RedisCluster::start(3);
    let env = vec![
        ("DATABASE_URL", harness::with_database(&bouncer, db.name())),
        ("DB_POOLER", "pgbouncer-transaction".to_owned()),
        ("REDIS_URL", cluster.url()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        // One client address (HAProxy's or the edge's) for the whole load: lift the API tier.
        ("RATE_LIMITS", "api=100000000/60000".to_owned()),
        ("EDGE_SECRET", SECRET.to_owned()),
    ];
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (spare_port(), spare_port())).collect();
    let mut origins = Vec::new();
    for &(port, ops) in &ports {
        origins.push(Some(OriginProcess::start_on(&env, port, ops).await));
    }
    let listen = spare_port();
    let _lb = haproxy(listen, &ports);
    let lb = format!("http://127.0.0.1:{listen}");
    let price = "/v1/catalog/5sim/prices/ad/whatsapp";
    wait_for(&format!("{lb}{price}")).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // every server marked up (rise 2)
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", lb.clone()),
        ("EDGE_SECRET", SECRET.into()),
        ("RATE_LIMIT_PER_MINUTE", "100000000".into()),
        ("RATE_LIMIT_BURST", "100000000".into()),
    ])
    .await;
    // Through the edge: a forwarded route (every request reaches the fleet) and a cached one;
    // and straight at HAProxy.
    let load = steady_load(vec![
        edge.url("/v1/client-ip"),
        edge.url(price),
        format!("{lb}{price}"),
        edge.url("/v1/client-ip"),
    ]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Rolling restart: each origin in turn stops gracefully and a new one takes its ports.
    for (i, &(port, ops)) in ports.iter().enumerate() {
        let old = origins[i].take().unwrap();
        let status = old.terminate().await;
        assert!(status.is_some_and(|s| s.success()), "origin {i} drained and exited cleanly");
        origins[i] = Some(OriginProcess::start_on(&env, port, ops).await);
        tokio::time::sleep(Duration::from_millis(800)).await; // back in rotation
    }
    let (ok, failed_rolling) = load.counts();
    eprintln!("rolling restart of 3 origins: {ok} requests answered, {failed_rolling} failed");
    assert!(ok > 100, "the load kept flowing: {ok}");
    assert_eq!(failed_rolling, 0, "a rolling restart must lose no request");

    // A crash: at most the requests in flight on that origin fail.
    origins[1].take().unwrap().kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok_after, failed_after) = load.counts();
    let failed_crash = failed_after - failed_rolling;
    eprintln!("SIGKILL of one origin: {} more answered, {failed_crash} failed", ok_after - ok);
    assert!(ok_after > ok, "the others kept answering");
    assert!(
        failed_crash <= CLIENTS as u64,
        "{failed_crash} failed: more than the {CLIENTS} that could be in flight"
    );

    // A Redis master dies: the one holding the hot price key.
    let victim = cluster.master_of(&format!("{prefix}cache:prices:5sim:ad:whatsapp"));
    let killed_at = Instant::now();
    cluster.nodes[victim].stop();
    let mut recovered = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        if cluster.healthy() {
            recovered = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("the replica never took over");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok_end, failed_end) = load.counts();
    load.stop().await;
    let failed_master = failed_end - failed_after;
    eprintln!(
        "SIGKILL of a Redis master: replica promoted after {:.2} s; {} more answered, \
         {failed_master} failed",
        recovered.as_secs_f64(),
        ok_end - ok_after
    );
    assert!(ok_end > ok_after, "the fleet kept answering");
    assert_eq!(failed_master, 0, "a Redis master kill must cost no request");
}
