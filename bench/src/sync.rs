//! The catalog sync of the large catalog (#25): five providers in 5sim's document shape served by
//! a stand-in upstream in this process, synced by `origin sync --json` (a separate process, as an
//! operator runs it) into the large catalog while an origin serves warm hits from it.
//!
//! Two runs: the first load (every offer new) and the same documents with 1 % of the prices
//! changed. Reported per run: seconds, rows written, keys invalidated, Redis `DEL`/`PUBLISH`
//! calls, the sync's peak memory, and the warm-hit p50/p99 during the run beside the same with
//! nothing running. The probe fails unless every run applied, the first wrote every offer, and
//! the second wrote and invalidated exactly the changed 1 %.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use origin::sync::mapping::Mapping;

use crate::probes::{catalog_reads, redis_calls};
use crate::procs::{RssSampler, spare_port};
use crate::results::percentile;
use crate::setup::BenchEnv;

const PROVIDERS: usize = 5;
/// One offer in this many has its price changed in the second run.
const CHANGE_EVERY: usize = 100;

/// One run of `origin sync`, summed over the providers.
#[derive(Default)]
struct Run {
    offers: u64,
    inserted: u64,
    updated: u64,
    zeroed: u64,
    keys: u64,
    /// The longest provider's own figure (they run one after another: the sum is `wall`).
    seconds_sum: f64,
    wall: f64,
    peak_mib: f64,
    dels: u64,
    publishes: u64,
    hits: Vec<f64>,
}

impl Run {
    fn json(&self, idle: &[f64]) -> serde_json::Value {
        serde_json::json!({
            "offers": self.offers,
            "rows_written": self.inserted + self.updated + self.zeroed,
            "inserted": self.inserted,
            "updated": self.updated,
            "zeroed": self.zeroed,
            "keys_invalidated": self.keys,
            "redis_del_calls": self.dels,
            "redis_publish_calls": self.publishes,
            "seconds": self.wall,
            "seconds_in_runs": self.seconds_sum,
            "rows_per_second": (self.inserted + self.updated + self.zeroed) as f64 / self.seconds_sum.max(1e-9),
            "sync_peak_rss_mib": self.peak_mib,
            "hit_samples": self.hits.len(),
            "hit_p50_ms": percentile(&self.hits, 0.5),
            "hit_p99_ms": percentile(&self.hits, 0.99),
            "idle_hit_p99_ms": percentile(idle, 0.99),
        })
    }
}

/// The whole probe on the large catalog `db`; `hit` is a warm price path of that catalog.
pub async fn large_catalog(
    env: &BenchEnv,
    db: &str,
    prefix: &str,
    hit: &str,
) -> anyhow::Result<serde_json::Value> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db)
        .await?;
    let providers: Vec<String> = (1..=PROVIDERS).map(|i| format!("sync-{i}")).collect();
    sqlx::query(
        "INSERT INTO providers (code, name) SELECT c, 'Synced ' || c FROM unnest($1::text[]) c
         ON CONFLICT (code) DO NOTHING",
    )
    .bind(&providers)
    .execute(&pool)
    .await?;
    let countries: Vec<String> = sqlx::query_scalar("SELECT code FROM countries ORDER BY code")
        .fetch_all(&pool)
        .await?;
    let services: Vec<String> = sqlx::query_scalar("SELECT code FROM services ORDER BY code")
        .fetch_all(&pool)
        .await?;
    pool.close().await;

    let catalog = Theirs::new(&countries, &services)?;
    ensure!(
        catalog.countries.len() >= 100 && catalog.services.len() >= 500,
        "the 5sim mapping covers only {} countries and {} services of the large catalog",
        catalog.countries.len(),
        catalog.services.len()
    );
    let documents: Arc<RwLock<HashMap<String, Bytes>>> = Arc::default();
    let mut offers = 0;
    for (i, p) in providers.iter().enumerate() {
        let (doc, n, _) = catalog.document(i, false);
        offers += n;
        documents.write().unwrap().insert(p.clone(), doc);
    }
    let upstream = serve(documents.clone()).await?;
    let sync_providers = providers
        .iter()
        .map(|p| format!("{p}=5sim@http://127.0.0.1:{}/{p}", upstream.port))
        .collect::<Vec<_>>()
        .join(",");

    let origin = env
        .origin("origin (during the sync)", db, prefix, &[])
        .await?;
    let base = format!("http://127.0.0.1:{}", origin.port);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()?;
    client.get(format!("{base}{hit}")).send().await?;
    let idle = timed_reads(&client, &base, hit, 3).await?;

    let first = sync(env, db, prefix, &sync_providers, &client, &base, hit).await?;
    ensure!(
        first.inserted == offers as u64 && first.updated == 0 && first.zeroed == 0,
        "the first load wrote {} new / {} changed / {} off-sale rows for {offers} offers",
        first.inserted,
        first.updated,
        first.zeroed
    );

    let mut changed = 0;
    for (i, p) in providers.iter().enumerate() {
        let (doc, _, touched) = catalog.document(i, true);
        changed += touched.len();
        documents.write().unwrap().insert(p.clone(), doc);
    }
    let second = sync(env, db, prefix, &sync_providers, &client, &base, hit).await?;
    ensure!(
        second.updated == changed as u64 && second.inserted == 0 && second.zeroed == 0,
        "1 % changed ({changed} prices) but the sync wrote {} changed / {} new / {} off-sale rows",
        second.updated,
        second.inserted,
        second.zeroed
    );
    ensure!(
        second.keys == second.updated,
        "{} prices changed but {} keys were invalidated",
        second.updated,
        second.keys
    );
    drop(origin);
    Ok(serde_json::json!({
        "providers": PROVIDERS,
        "offers": offers,
        "changed": changed,
        "idle_hit_p50_ms": percentile(&idle, 0.5),
        "idle_hit_p99_ms": percentile(&idle, 0.99),
        "first_load": first.json(&idle),
        "one_percent": second.json(&idle),
    }))
}

/// `origin sync --json` for every provider, warm hits read from `base` until it ends.
async fn sync(
    env: &BenchEnv,
    db: &str,
    prefix: &str,
    providers: &str,
    client: &reqwest::Client,
    base: &str,
    hit: &str,
) -> anyhow::Result<Run> {
    let (dels, publishes) = (
        redis_calls(&env.redis, "del").await?,
        redis_calls(&env.redis, "publish").await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let readers = tokio::spawn(catalog_reads(
        client.clone(),
        base.to_owned(),
        hit.to_owned(),
        stop.clone(),
    ));
    let started = Instant::now();
    let child = sync_command(env, db, prefix, providers, &[])
        .spawn()
        .context("starting origin sync")?;
    let rss = RssSampler::start(child.id());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let wall = started.elapsed().as_secs_f64();
    let peak_mib = rss.finish();
    stop.store(true, Ordering::Relaxed);
    let hits = readers.await??;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "origin sync failed ({}):\n{text}",
        output.status
    );
    let mut run = Run {
        wall,
        peak_mib,
        hits,
        ..Run::default()
    };
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let r: serde_json::Value = serde_json::from_str(line)?;
        if r["outcome"] != "applied" {
            bail!("a provider's sync did not apply: {line}");
        }
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        run.offers += n("offers");
        run.inserted += n("inserted");
        run.updated += n("updated");
        run.zeroed += n("zeroed");
        run.keys += n("keys_invalidated");
        run.seconds_sum += r["seconds"].as_f64().unwrap_or(0.0);
    }
    run.dels = redis_calls(&env.redis, "del").await? - dels;
    run.publishes = redis_calls(&env.redis, "publish").await? - publishes;
    Ok(run)
}

/// `origin sync --json` of `providers` into `db`, as an operator runs it (its report on stdout).
pub(crate) fn sync_command(
    env: &BenchEnv,
    db: &str,
    prefix: &str,
    providers: &str,
    extra: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(&env.bin);
    cmd.envs(extra.iter().copied());
    cmd.args(["sync", "--json"])
        .env("DATABASE_URL", db)
        .env("REDIS_URL", &env.redis)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("SYNC_PROVIDERS", providers)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

async fn timed_reads(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    secs: u64,
) -> anyhow::Result<Vec<f64>> {
    let stop = Arc::new(AtomicBool::new(false));
    let readers = tokio::spawn(catalog_reads(
        client.clone(),
        base.to_owned(),
        path.to_owned(),
        stop.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    readers.await?
}

/// A catalog in 5sim's names: each of our countries and services that 5sim's mapping names,
/// under the name 5sim gives it (the shipped mapping read backwards), beside ours.
pub(crate) struct Theirs {
    /// (theirs, ours)
    pub(crate) countries: Vec<(String, String)>,
    pub(crate) services: Vec<(String, String)>,
}

impl Theirs {
    pub(crate) fn new(countries: &[String], services: &[String]) -> anyhow::Result<Theirs> {
        let mapping = Mapping::builtin("5sim")?;
        let back = |table: &std::collections::BTreeMap<String, String>, ours: &str| {
            table
                .iter()
                .find(|(_, o)| o.as_str() == ours)
                .map(|(theirs, _)| theirs.clone())
        };
        let countries = countries
            .iter()
            .filter_map(|c| Some((back(&mapping.countries, c)?, c.clone())))
            .collect();
        // An unlisted service keeps its own name (the mapping says so); a listed one is renamed.
        let services = services
            .iter()
            .map(|s| {
                (
                    back(&mapping.services, s).unwrap_or_else(|| s.clone()),
                    s.clone(),
                )
            })
            .filter(|(theirs, _)| mapping.service(theirs).is_some())
            .collect();
        Ok(Theirs {
            countries,
            services,
        })
    }

    /// Provider `p`'s document (~95 % of the products offered, deterministic), with every
    /// [`CHANGE_EVERY`]th offer one rouble dearer when `changed` (+1.32 ¢ after the rate and
    /// markup: every one a different price in cents). Returns the document, its offers, and the
    /// products (our country and service codes) `changed` touches.
    pub(crate) fn document(
        &self,
        p: usize,
        changed: bool,
    ) -> (Bytes, usize, Vec<(String, String)>) {
        let mut out = String::with_capacity(self.countries.len() * self.services.len() * 56);
        let (mut offers, mut touched) = (0, Vec::new());
        out.push('{');
        for (ci, (country, our_country)) in self.countries.iter().enumerate() {
            if ci > 0 {
                out.push(',');
            }
            out.push_str(&format!("\"{country}\":{{"));
            let mut first = true;
            for (si, (service, our_service)) in self.services.iter().enumerate() {
                let h = mix(p, ci, si);
                if h % 100 >= 95 {
                    continue;
                }
                let mut tenths = 50 + (h >> 8) % 4000; // 5.0 … 404.9 roubles
                if changed && offers % CHANGE_EVERY == 0 {
                    tenths += 10;
                    touched.push((our_country.clone(), our_service.clone()));
                }
                let count = 1 + (h >> 24) % 5000;
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!(
                    "\"{service}\":{{\"virtual21\":{{\"cost\":{}.{},\"count\":{count},\"rate\":97.5}}}}",
                    tenths / 10,
                    tenths % 10
                ));
                offers += 1;
            }
            out.push('}');
        }
        out.push('}');
        (Bytes::from(out), offers, touched)
    }
}

fn mix(p: usize, c: usize, s: usize) -> u64 {
    let x = (p as u64) << 40 | (c as u64) << 20 | s as u64;
    let x = (x ^ (x >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// The stand-in upstream: `GET /{provider}` answers that provider's current document.
pub(crate) async fn serve(
    documents: Arc<RwLock<HashMap<String, Bytes>>>,
) -> anyhow::Result<Upstream> {
    let port = spare_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new().route(
        "/{provider}",
        axum::routing::get(move |UrlPath(p): UrlPath<String>| {
            let doc = documents.read().unwrap().get(&p).cloned();
            async move {
                match doc {
                    Some(d) => ([(header::CONTENT_TYPE, "application/json")], d).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Upstream { port, task })
}

pub(crate) struct Upstream {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
