//! The write path at purchase rates (#34): readers cycle through one country's prices at the edge
//! (the Rust worker in workerd, its Cache API and memo) while one product of that country is
//! bought ten times a second and a catalog sync changes 1 % of the provider's prices. The origin
//! purges through its one sender into the worker's purge route and a stand-in Cloudflare API
//! (which records every call).
//!
//! Two phases on one warm edge: *quiet* (readers only, the baseline) and *busy* (readers, the
//! purchases, and the sync a few seconds in). Reported per phase: the edge's hit ratio on the
//! products whose shown answer did not change (the bought one among them: it stays `in_stock`),
//! catalog requests that reached the origin, purge calls per minute to each sink beside its
//! budget; and for the products the sync changed, how long after the sync ended the edge served
//! their new price. Both phases end before the first copies reach `s-maxage` (30 s for prices),
//! so a miss is a purge's doing, not age's. The probe fails unless every read was a 200 and
//! every purchase a 201 (no 429s).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::extract::Path as UrlPath;

use crate::procs::{Proc, spare_port};
use crate::setup::BenchEnv;
use crate::sync::{Theirs, serve, sync_command};

const PROVIDER: &str = "writepath";
/// The provider's catalog: this many of our countries and services (about 95 % offered).
const COUNTRIES: usize = 10;
const SERVICES: usize = 100;
const READERS: usize = 4;
const PURCHASES_PER_SEC: u64 = 10;
const QUIET: Duration = Duration::from_secs(6);
const BUSY: Duration = Duration::from_secs(16);
/// When, in the busy phase, the sync starts.
const SYNC_AT: Duration = Duration::from_secs(4);
/// The purge budget of each sink in this run (the shipped default).
const BUDGET: &str = "5/s";
const BUDGET_PER_MIN: f64 = 300.0;
const SECRET: &str = "bench-edge-secret-0123456789abcdef";

/// One read through the edge.
struct Read {
    at: Instant,
    url: usize,
    hit: bool,
    price_cents: i64,
}

/// What one phase measured.
struct Phase {
    reads: Vec<Read>,
    secs: f64,
    origin_catalog_requests: f64,
    edge_purge_calls: f64,
    cloudflare_calls: usize,
    purchases: usize,
}

pub async fn write_path(
    env: &BenchEnv,
    db: &str,
    prefix: &str,
    tmp: &Path,
) -> anyhow::Result<serde_json::Value> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(db)
        .await?;
    sqlx::query("INSERT INTO providers (code, name) VALUES ($1, 'Write path') ON CONFLICT (code) DO NOTHING")
        .bind(PROVIDER)
        .execute(&pool)
        .await?;
    let countries: Vec<String> = sqlx::query_scalar("SELECT code FROM countries ORDER BY code")
        .fetch_all(&pool)
        .await?;
    let services: Vec<String> = sqlx::query_scalar("SELECT code FROM services ORDER BY code")
        .fetch_all(&pool)
        .await?;
    let mut theirs = Theirs::new(&countries, &services)?;
    theirs.countries.truncate(COUNTRIES);
    theirs.services.truncate(SERVICES);
    ensure!(
        theirs.countries.len() == COUNTRIES && theirs.services.len() == SERVICES,
        "the 5sim mapping covers only {} countries and {} services of the catalog",
        theirs.countries.len(),
        theirs.services.len()
    );
    let (doc, offers, _) = theirs.document(0, false);
    let documents: Arc<RwLock<HashMap<String, axum::body::Bytes>>> = Arc::default();
    documents.write().unwrap().insert(PROVIDER.to_owned(), doc);
    let upstream = serve(documents.clone()).await?;
    let sync_providers = format!(
        "{PROVIDER}=5sim@http://127.0.0.1:{}/{PROVIDER}",
        upstream.port
    );
    let cloudflare = StandIn::start().await?;

    // The origin purging the edge and the stand-in Cloudflare; the edge in front of it.
    let (edge_port, direct) = (spare_port()?, spare_port()?);
    let purge_url = format!("http://127.0.0.1:{edge_port}/__edge/purge");
    let cloudflare_url = format!("http://127.0.0.1:{}", cloudflare.port);
    // The service's purge settings, which `origin sync` is given too (it queues for its sinks).
    let purging = [
        ("EDGE_SECRET", SECRET),
        ("EDGE_PURGE_URL", &purge_url),
        ("EDGE_PURGE_RATE", BUDGET),
        ("CLOUDFLARE_API_URL", &cloudflare_url),
        ("CLOUDFLARE_ZONE_ID", "0123456789abcdef0123456789abcdef"),
        ("CLOUDFLARE_API_TOKEN", "bench-cloudflare-token-0123456789"),
        ("CLOUDFLARE_PURGE_RATE", BUDGET),
    ];
    let origin = env
        .origin("origin (write path)", db, prefix, &purging)
        .await?;
    let edge = start_edge(&origin, edge_port, direct, &tmp.join("write-path-edge.log")).await?;

    // The provider's catalog as its upstream has it (again, after an earlier run's purchases
    // and change), then numbers to buy and a funded buyer.
    run_sync(env, db, prefix, &sync_providers, &purging).await?;
    let read_country = theirs.countries[0].1.clone();
    let read_services: Vec<String> = sqlx::query_scalar(
        "SELECT s.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          WHERE pr.code = $1 AND c.code = $2 AND p.stock > 0 ORDER BY s.code",
    )
    .bind(PROVIDER)
    .bind(&read_country)
    .fetch_all(&pool)
    .await?;
    let bought: String = sqlx::query_scalar(
        "SELECT s.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          WHERE pr.code = $1 AND c.code = $2 ORDER BY p.stock DESC, s.code LIMIT 1",
    )
    .bind(PROVIDER)
    .bind(&read_country)
    .fetch_one(&pool)
    .await?;
    let purchases_planned = PURCHASES_PER_SEC * BUSY.as_secs();
    sqlx::query(
        "INSERT INTO numbers (provider_id, country_id, phone_number)
         SELECT pr.id, c.id, format('+887%s%s', (extract(epoch FROM now()) * 1000)::bigint, i)
           FROM providers pr, countries c, generate_series(1, $3) AS i
          WHERE pr.code = $1 AND c.code = $2",
    )
    .bind(PROVIDER)
    .bind(&read_country)
    .bind(purchases_planned as i32 * 2)
    .execute(&pool)
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let origin_base = format!("http://127.0.0.1:{}", origin.port);
    let token = buyer(&http, &origin, &pool).await?;

    // Warm: every URL of the country is a HIT at the edge.
    let edge_base = format!("http://127.0.0.1:{direct}");
    let urls: Vec<String> = read_services
        .iter()
        .map(|s| format!("{edge_base}/v1/catalog/{PROVIDER}/prices/{read_country}/{s}"))
        .collect();
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = http.get(url).send().await?;
            ensure!(r.status().is_success(), "warming {url}: {}", r.status());
            if header(&r, "x-cache") == "HIT" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{url} never became a HIT at the edge"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let quiet = phase(&http, &urls, &origin, &cloudflare, QUIET).await?;
    // The sync's change: 1 % of the provider's prices, at `SYNC_AT` into the busy phase.
    let (changed_doc, _, changed) = theirs.document(0, true);
    let changing = Changing {
        env,
        db,
        prefix,
        providers: &sync_providers,
        purging: &purging,
        documents: &documents,
        doc: changed_doc,
    };
    let product =
        serde_json::json!({"provider": PROVIDER, "country": read_country, "service": bought});
    let buying = Buying {
        http: &http,
        url: format!("{origin_base}/v1/activations"),
        token: &token,
        product: &product,
    };
    let (busy, sync_done) =
        busy_phase(&http, &urls, &origin, &cloudflare, &buying, &changing).await?;

    // The products the sync changed that the readers read: when their new price showed.
    let changed_here: Vec<usize> = changed
        .iter()
        .filter(|(c, _)| *c == read_country)
        .filter_map(|(_, s)| read_services.iter().position(|r| r == s))
        .collect();
    ensure!(
        !changed_here.is_empty(),
        "the sync changed no product the readers read"
    );
    let mut new_price_after = Vec::new();
    for &i in &changed_here {
        let now: i64 = sqlx::query_scalar(
            "SELECT p.price_cents FROM prices p JOIN providers pr ON pr.id = p.provider_id
               JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
              WHERE pr.code = $1 AND c.code = $2 AND s.code = $3",
        )
        .bind(PROVIDER)
        .bind(&read_country)
        .bind(&read_services[i])
        .fetch_one(&pool)
        .await?;
        let seen = busy
            .reads
            .iter()
            .find(|r| r.url == i && r.price_cents == now && r.at >= sync_done.0)
            .with_context(|| format!("the edge never served {}'s new price", read_services[i]))?;
        new_price_after.push(seen.at.saturating_duration_since(sync_done.1).as_secs_f64());
    }
    let unchanged = |p: &Phase| {
        let reads: Vec<&Read> = p
            .reads
            .iter()
            .filter(|r| !changed_here.contains(&r.url))
            .collect();
        let hits = reads.iter().filter(|r| r.hit).count();
        (hits as f64 / reads.len().max(1) as f64, reads.len())
    };
    let bought_at = read_services
        .iter()
        .position(|s| *s == bought)
        .context("the bought product")?;
    let bought_hits = |p: &Phase| {
        let reads: Vec<&Read> = p.reads.iter().filter(|r| r.url == bought_at).collect();
        reads.iter().filter(|r| r.hit).count() as f64 / reads.len().max(1) as f64
    };
    let json = |p: &Phase| {
        let (ratio, reads) = unchanged(p);
        serde_json::json!({
            "secs": p.secs,
            "reads": p.reads.len(),
            "unchanged_reads": reads,
            "unchanged_hit_ratio": ratio,
            "bought_product_hit_ratio": bought_hits(p),
            "origin_catalog_requests": p.origin_catalog_requests,
            "edge_purge_calls": p.edge_purge_calls,
            "edge_purge_calls_per_min": p.edge_purge_calls / p.secs * 60.0,
            "cloudflare_calls": p.cloudflare_calls,
            "cloudflare_calls_per_min": p.cloudflare_calls as f64 / p.secs * 60.0,
            "purchases": p.purchases,
        })
    };
    drop(edge);
    drop(origin);
    Ok(serde_json::json!({
        "offers": offers,
        "changed": changed.len(),
        "read_urls": urls.len(),
        "readers": READERS,
        "purchases_per_sec": PURCHASES_PER_SEC,
        "budget_per_min": BUDGET_PER_MIN,
        "cloudflare_tags": cloudflare.tags(),
        "new_price_after_secs": new_price_after,
        "quiet": json(&quiet),
        "busy": json(&busy),
    }))
}

/// The second sync, with 1 % of the prices changed.
struct Changing<'a> {
    env: &'a BenchEnv,
    db: &'a str,
    prefix: &'a str,
    providers: &'a str,
    purging: &'a [(&'a str, &'a str)],
    documents: &'a RwLock<HashMap<String, axum::body::Bytes>>,
    doc: axum::body::Bytes,
}

/// The purchases: one product, one buyer, `PURCHASES_PER_SEC`.
struct Buying<'a> {
    http: &'a reqwest::Client,
    url: String,
    token: &'a str,
    product: &'a serde_json::Value,
}

/// The busy phase: readers, purchases throughout, the sync at `SYNC_AT`. Returns the phase and
/// when the sync started and ended.
async fn busy_phase(
    http: &reqwest::Client,
    urls: &[String],
    origin: &Proc,
    cloudflare: &StandIn,
    buying: &Buying<'_>,
    changing: &Changing<'_>,
) -> anyhow::Result<(Phase, (Instant, Instant))> {
    let purchases = async {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / PURCHASES_PER_SEC));
        let started = Instant::now();
        let mut made = 0;
        while started.elapsed() < BUSY {
            tick.tick().await;
            let r = buying
                .http
                .post(&buying.url)
                .bearer_auth(buying.token)
                .json(buying.product)
                .send()
                .await?;
            ensure!(
                r.status().as_u16() == 201,
                "a purchase answered {}",
                r.status()
            );
            made += 1;
        }
        anyhow::Ok(made)
    };
    let sync = async {
        tokio::time::sleep(SYNC_AT).await;
        changing
            .documents
            .write()
            .unwrap()
            .insert(PROVIDER.to_owned(), changing.doc.clone());
        let started = Instant::now();
        run_sync(
            changing.env,
            changing.db,
            changing.prefix,
            changing.providers,
            changing.purging,
        )
        .await?;
        anyhow::Ok((started, Instant::now()))
    };
    let (phase, made, sync) =
        tokio::join!(phase(http, urls, origin, cloudflare, BUSY), purchases, sync);
    let mut phase = phase?;
    phase.purchases = made?;
    Ok((phase, sync?))
}

/// Readers over `urls` at the edge for `length`; the origin's and the sinks' counters around it.
async fn phase(
    http: &reqwest::Client,
    urls: &[String],
    origin: &Proc,
    cloudflare: &StandIn,
    length: Duration,
) -> anyhow::Result<Phase> {
    let (requests, purges, calls) = (
        catalog_requests(http, origin).await?,
        edge_purges(http, origin).await?,
        cloudflare.calls(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|k| {
            let (http, urls, stop) = (http.clone(), urls.to_vec(), stop.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                let mut i = k * urls.len() / READERS;
                while !stop.load(Ordering::Relaxed) {
                    let url = i % urls.len();
                    let r = http.get(&urls[url]).send().await?;
                    ensure!(r.status().is_success(), "a read answered {}", r.status());
                    let hit = header(&r, "x-cache") == "HIT";
                    let body: serde_json::Value = r.json().await?;
                    reads.push(Read {
                        at: Instant::now(),
                        url,
                        hit,
                        price_cents: body["price_cents"].as_i64().unwrap_or(-1),
                    });
                    i += 1;
                }
                anyhow::Ok(reads)
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    // What the phase's last changes sent, counted once the sender has had a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Phase {
        reads,
        secs,
        origin_catalog_requests: catalog_requests(http, origin).await? - requests,
        edge_purge_calls: edge_purges(http, origin).await? - purges,
        cloudflare_calls: cloudflare.calls() - calls,
        purchases: 0,
    })
}

async fn run_sync(
    env: &BenchEnv,
    db: &str,
    prefix: &str,
    providers: &str,
    purging: &[(&str, &str)],
) -> anyhow::Result<()> {
    let child = sync_command(env, db, prefix, providers, purging)
        .spawn()
        .context("starting origin sync")?;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "origin sync failed ({}):\n{text}",
        output.status
    );
    ensure!(
        text.contains("\"applied\""),
        "the sync did not apply:\n{text}"
    );
    Ok(())
}

/// A buyer with money, signed in on the origin.
async fn buyer(
    http: &reqwest::Client,
    origin: &Proc,
    pool: &sqlx::PgPool,
) -> anyhow::Result<String> {
    const BUYER: &str = "write-path@example.com";
    let token = crate::instructions::sign_in(http, origin.port, BUYER).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO transactions (user_id, type, amount_cents)
         SELECT id, 'credit', 1000000000 FROM users WHERE email = $1",
    )
    .bind(BUYER)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET balance_cents = balance_cents + 1000000000 WHERE email = $1")
        .bind(BUYER)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// The edge worker in workerd in front of `origin`, answering its purge route with `SECRET`.
async fn start_edge(origin: &Proc, port: u16, direct: u16, log: &Path) -> anyhow::Result<Proc> {
    let vars = serde_json::json!({
        "EDGE_ENV": "local",
        "ORIGIN_URL": format!("http://127.0.0.1:{}", origin.port),
        "EDGE_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "RATE_LIMIT_BURST": "1000000000",
    });
    std::fs::write(log, "")?;
    let mut cmd = Command::new("node");
    cmd.arg("tests/edge/serve.mjs")
        .env("EDGE_PORT", port.to_string())
        .env("EDGE_DIRECT_PORT", direct.to_string())
        .env("EDGE_VARS", vars.to_string())
        .env("EDGE_LOG_FILE", log);
    let mut proc = crate::procs::start("edge worker (write path)", cmd, port, "/healthz").await?;
    proc.direct_port = direct;
    Ok(proc)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn metrics(http: &reqwest::Client, origin: &Proc) -> anyhow::Result<String> {
    Ok(http
        .get(format!("http://127.0.0.1:{}/metrics", origin.ops_port))
        .send()
        .await?
        .text()
        .await?)
}

/// The sum of the series of `name` whose labels contain every one of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Catalog requests the origin has answered so far.
async fn catalog_requests(http: &reqwest::Client, origin: &Proc) -> anyhow::Result<f64> {
    Ok(sum(
        &metrics(http, origin).await?,
        "http_requests_total",
        &["route=\"/v1/catalog/"],
    ))
}

/// Calls to the edge's purge route the origin has made so far (every outcome).
async fn edge_purges(http: &reqwest::Client, origin: &Proc) -> anyhow::Result<f64> {
    Ok(sum(
        &metrics(http, origin).await?,
        "purge_calls_total",
        &["sink=\"edge\""],
    ))
}

/// A stand-in for Cloudflare's purge API: records each call's action and tags, answers success.
struct StandIn {
    port: u16,
    calls: Arc<Mutex<Vec<(String, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> anyhow::Result<StandIn> {
        let port = spare_port()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let calls: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let record = calls.clone();
        let app = axum::Router::new().route(
            "/zones/{zone}/{action}",
            axum::routing::post(
                move |UrlPath((_, action)): UrlPath<(String, String)>,
                      axum::Json(body): axum::Json<serde_json::Value>| {
                    let tags = body["tags"].as_array().map_or(0, Vec::len);
                    record.lock().unwrap().push((action, tags));
                    async {
                        axum::Json(serde_json::json!({"success": true, "errors": [], "messages": [], "result": {"id": "bench"}}))
                    }
                },
            ),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandIn { port, calls, task })
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Calls by action, with the tags they carried.
    fn tags(&self) -> BTreeMap<String, (usize, usize)> {
        let mut by = BTreeMap::new();
        for (action, tags) in self.calls.lock().unwrap().iter() {
            let e: &mut (usize, usize) = by.entry(action.clone()).or_default();
            e.0 += 1;
            e.1 += tags;
        }
        by
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
