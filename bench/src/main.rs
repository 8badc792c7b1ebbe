//! `make bench`: the origin (and the edge) under a real load generator (wrk), every figure next
//! to a static-response ceiling measured in the same run. Loopback only, bounded in time.
//!
//! - [`procs`]: child processes and their CPU time and memory from `/proc`.
//! - [`chart`]: the PNG chart.
//!
//! Method: every scenario runs `--reps` times, interleaved (scenario 1..n, then again), so drift
//! of this shared machine hits all alike; the table shows the median rep. The machine has 2
//! cores shared by wrk and the servers: compare ratios from one run, not absolute numbers
//! across machines.

mod chart;
mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::{HeaderMap, HeaderValue, header};
use clap::{Parser, Subcommand};
use serde::Serialize;

use procs::{Proc, RssSampler, cpu_ticks, spare_port, start, tree};

#[derive(Parser)]
#[command(name = "bench", about = "NexNum benchmarks (run through `make bench`)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The ceiling: a static Axum server answering every request with the same bytes and
    /// headers as a warm catalog hit.
    Ceiling {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        body: PathBuf,
        #[arg(long)]
        etag: String,
        #[arg(long)]
        cache_control: String,
    },
    /// Every scenario, then the table, `results.json` and `results.png` under `--out`.
    Run {
        #[arg(long, default_value_t = 3)]
        reps: usize,
        #[arg(long, default_value_t = 3)]
        secs: u64,
        #[arg(long, default_value_t = 32)]
        connections: u32,
        #[arg(long, default_value = "bench/out")]
        out: PathBuf,
        /// Skip the edge scenarios (no node / no built worker).
        #[arg(long)]
        skip_edge: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Ceiling {
            port,
            body,
            etag,
            cache_control,
        } => rt.block_on(ceiling(port, &body, &etag, &cache_control)),
        Cmd::Run {
            reps,
            secs,
            connections,
            out,
            skip_edge,
        } => rt.block_on(run(reps, secs, connections, &out, skip_edge)),
    }
}

async fn ceiling(port: u16, body: &Path, etag: &str, cache_control: &str) -> anyhow::Result<()> {
    let body = bytes_of(body)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, HeaderValue::from_str(etag)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(cache_control)?);
    let app = axum::Router::new().fallback(move || {
        let (headers, body) = (headers.clone(), body.clone());
        async move { (headers, body) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn bytes_of(path: &Path) -> anyhow::Result<axum::body::Bytes> {
    Ok(axum::body::Bytes::from(
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    ))
}

/// One wrk run's figures.
#[derive(Clone, Debug, Serialize)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    cpu_us_per_req: f64,
    peak_rss_mib: f64,
    requests: u64,
    errors: u64,
}

#[derive(Clone, Debug, Serialize)]
struct ScenarioResult {
    key: String,
    label: String,
    /// The median rep (by requests per second).
    median: Sample,
    ratio_to_ceiling: f64,
    reps: Vec<Sample>,
}

#[derive(Clone, Debug, Serialize)]
struct Target {
    target: String,
    goal: String,
    measured: String,
    met: bool,
}

#[derive(Serialize)]
struct Report {
    date: String,
    machine: String,
    note: String,
    large_seed_secs: f64,
    scenarios: Vec<ScenarioResult>,
    stampede: serde_json::Value,
    targets: Vec<Target>,
}

struct Scenario {
    key: &'static str,
    label: &'static str,
    url: String,
    paths: Option<PathBuf>,
    /// Process whose tree's CPU and memory are measured.
    pid: u32,
    /// Run before each rep (e.g. drop cached keys so a cold scenario stays cold).
    reset_prefix: Option<String>,
    /// Extra wrk environment (`WRK_METHOD`, `WRK_BODIES`, `WRK_TOKENS`).
    wrk_env: Vec<(&'static str, String)>,
}

#[derive(serde::Deserialize)]
struct WrkLine {
    requests: u64,
    duration_us: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

fn wrk(
    url: &str,
    paths: Option<&Path>,
    env: &[(&'static str, String)],
    secs: u64,
    connections: u32,
) -> anyhow::Result<WrkLine> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
            "bench/wrk/report.lua",
            url,
        ])
        .env(
            "WRK_PATHS",
            paths.map(|p| p.display().to_string()).unwrap_or_default(),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "wrk printed no report:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

fn measure(s: &Scenario, secs: u64, connections: u32) -> anyhow::Result<Sample> {
    let pids = tree(s.pid);
    let cpu0 = cpu_ticks(&pids);
    let sampler = RssSampler::start(s.pid);
    let w = wrk(&s.url, s.paths.as_deref(), &s.wrk_env, secs, connections)?;
    let cpu1 = cpu_ticks(&tree(s.pid));
    let peak = sampler.finish();
    let requests = w.requests.max(1);
    Ok(Sample {
        rps: w.requests as f64 / (w.duration_us as f64 / 1e6),
        p50_ms: w.p50_us as f64 / 1000.0,
        p99_ms: w.p99_us as f64 / 1000.0,
        p999_ms: w.p999_us as f64 / 1000.0,
        // 100 ticks per second: one tick is 10 000 µs.
        cpu_us_per_req: cpu1.saturating_sub(cpu0) as f64 * 10_000.0 / requests as f64,
        peak_rss_mib: peak,
        requests: w.requests,
        errors: w.errors,
    })
}

fn db_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}

async fn origin(
    bin: &Path,
    name: &str,
    db: &str,
    redis: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let port = spare_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("DATABASE_URL", db)
        .env("REDIS_URL", redis)
        .env("ORIGIN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_KEY_PREFIX", prefix)
        // The benchmark is one client address: lift the API tier so it measures the limiter's
        // cost, not its refusals (leases then last a whole bucket).
        .env("RATE_LIMITS", "api=1000000000/60000")
        .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    start(name, cmd, port, "/readyz").await
}

async fn delete_prefix(redis: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(2000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn scrape(client: &reqwest::Client, port: u16, series: &str) -> f64 {
    let Ok(r) = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(
    reps: usize,
    secs: u64,
    connections: u32,
    out: &Path,
    skip_edge: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    procs::require("wrk", "make bench installs it (Debian package wrk)")?;
    let admin = std::env::var("PG_ADMIN_URL")
        .context("PG_ADMIN_URL is not set (run through make bench)")?;
    let redis =
        std::env::var("REDIS_URL").context("REDIS_URL is not set (run through make bench)")?;
    let bin = PathBuf::from("target/release/origin");
    procs::exists(
        &bin,
        "make bench builds it (cargo build --release -p origin)",
    )?;
    std::fs::create_dir_all(out)?;
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp)?;

    // 1. Catalogs: the large one seeded fresh (timed), the 10k one idempotently.
    let large = db_url(&admin, "nexnum_bench_large");
    let small = db_url(&admin, "nexnum_bench_10k");
    {
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&admin).await?;
        sqlx::query("DROP DATABASE IF EXISTS nexnum_bench_large WITH (FORCE)")
            .execute(&mut conn)
            .await?;
    }
    let seed_started = Instant::now();
    let seeded = Command::new(&bin)
        .args(["seed", "--scale", "large"])
        .env("DATABASE_URL", &large)
        .env("RUST_LOG", "warn")
        .output()?;
    let large_seed_secs = seed_started.elapsed().as_secs_f64();
    if !seeded.status.success() {
        bail!(
            "seeding the large catalog failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
    }
    println!("{}", String::from_utf8_lossy(&seeded.stdout).trim());
    let seeded = Command::new(&bin)
        .args(["seed", "--scale", "10k"])
        .env("DATABASE_URL", &small)
        .env("RUST_LOG", "warn")
        .output()?;
    if !seeded.status.success() {
        bail!(
            "seeding the 10k catalog failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
    }
    println!("{}", String::from_utf8_lossy(&seeded.stdout).trim());

    // 2. URLs: one price present in both catalogs; 100 services of one country; cold paths.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&small)
        .await?;
    let (p, c, s): (String, String, String) = sqlx::query_as(
        "SELECT pr.code, c.code, s.code FROM prices x JOIN providers pr ON pr.id = x.provider_id
           JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
          WHERE s.code = 'whatsapp' ORDER BY pr.code, c.code LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let price_path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    let large_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&large)
        .await?;
    let hundred: Vec<String> = sqlx::query_scalar(
        "SELECT s.code FROM prices x JOIN providers pr ON pr.id = x.provider_id
           JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
          WHERE pr.code = $1 AND c.code = $2 ORDER BY s.code LIMIT 100",
    )
    .bind(&p)
    .bind(&c)
    .fetch_all(&large_pool)
    .await?;
    let bulk_path = format!("/v1/catalog/{p}/prices/{c}?services={}", hundred.join(","));
    let singles_file = tmp.join("singles.txt");
    std::fs::write(
        &singles_file,
        hundred
            .iter()
            .map(|sv| format!("/v1/catalog/{p}/prices/{c}/{sv}\n"))
            .collect::<String>(),
    )?;
    let cold: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT pr.code, c.code, s.code FROM prices x JOIN providers pr ON pr.id = x.provider_id
           JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
          ORDER BY md5(x.provider_id::text || ':' || x.country_id || ':' || x.service_id) LIMIT 60000",
    )
    .fetch_all(&large_pool)
    .await?;
    let cold_file = tmp.join("cold.txt");
    std::fs::write(
        &cold_file,
        cold.iter()
            .map(|(p, c, s)| format!("/v1/catalog/{p}/prices/{c}/{s}\n"))
            .collect::<String>(),
    )?;

    // 3. Servers. Each origin has its own key prefix on the shared Redis.
    let prefix = |name: &str| format!("bench:{name}:{}:", uuid::Uuid::new_v4().simple());
    let (pa, pb, pm, pn, pt, ps) = (
        prefix("a"),
        prefix("b"),
        prefix("m"),
        prefix("n"),
        prefix("t"),
        prefix("s"),
    );
    let a = origin(&bin, "origin (full path)", &large, &redis, &pa, &[]).await?;
    let b = origin(
        &bin,
        "origin (in-process layer off)",
        &large,
        &redis,
        &pb,
        &[("L1_CACHE", "off")],
    )
    .await?;
    let m = origin(
        &bin,
        "origin (metrics off)",
        &large,
        &redis,
        &pm,
        &[("METRICS", "off")],
    )
    .await?;
    let n = origin(
        &bin,
        "origin (rate limiter off)",
        &large,
        &redis,
        &pn,
        &[("RATE_LIMIT", "off")],
    )
    .await?;
    let t = origin(&bin, "origin (10k catalog)", &small, &redis, &pt, &[]).await?;
    let s1 = origin(&bin, "stampede origin 1", &large, &redis, &ps, &[]).await?;
    let s2 = origin(&bin, "stampede origin 2", &large, &redis, &ps, &[]).await?;

    let client = reqwest::Client::new();
    let accounts = accounts_setup(&client, &a, &large_pool, &tmp).await?;
    let warm = client
        .get(format!("http://127.0.0.1:{}{price_path}", a.port))
        .send()
        .await?;
    let etag = warm
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let cc = warm
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = warm.bytes().await?;
    let body_file = tmp.join("body.json");
    std::fs::write(&body_file, &body)?;
    let ceiling_port = spare_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["ceiling", "--port", &ceiling_port.to_string(), "--body"])
        .arg(&body_file)
        .args(["--etag", &etag, "--cache-control", &cc]);
    let ceiling = start("ceiling", cmd, ceiling_port, "/").await?;

    let mut edges: Vec<Proc> = Vec::new();
    if !skip_edge {
        procs::require("node", "install Node.js 20+")?;
        procs::exists(
            Path::new("edge/build/worker/shim.mjs"),
            "make bench builds it (scripts/build-edge.sh)",
        )?;
        let vars = serde_json::json!({
            "ORIGIN_URL": format!("http://127.0.0.1:{}", a.port),
            "RATE_LIMIT_PER_MINUTE": "1000000000",
            "RATE_LIMIT_BURST": "1000000000",
        });
        let port = spare_port()?;
        let mut cmd = Command::new("node");
        cmd.arg("tests/edge/serve.mjs")
            .env("EDGE_PORT", port.to_string())
            .env("EDGE_VARS", vars.to_string());
        edges.push(start("edge worker (workerd)", cmd, port, "/healthz").await?);
        let port = spare_port()?;
        let mut cmd = Command::new("node");
        cmd.arg("tests/edge/serve.mjs")
            .env("EDGE_PORT", port.to_string())
            .env(
                "EDGE_STATIC_BODY",
                String::from_utf8_lossy(&body).into_owned(),
            );
        edges.push(start("static worker (workerd)", cmd, port, "/").await?);
    }

    let url = |proc: &Proc, path: &str| format!("http://127.0.0.1:{}{path}", proc.port);
    let mut scenarios = vec![
        Scenario {
            key: "ceiling",
            label: "ceiling: static Axum, same bytes",
            url: url(&ceiling, "/"),
            paths: None,
            pid: ceiling.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "warm_full",
            label: "warm hit, full path",
            url: url(&a, &price_path),
            paths: None,
            pid: a.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "warm_redis",
            label: "warm hit, in-process layer off",
            url: url(&b, &price_path),
            paths: None,
            pid: b.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "warm_no_metrics",
            label: "warm hit, metrics off",
            url: url(&m, &price_path),
            paths: None,
            pid: m.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "warm_no_limiter",
            label: "warm hit, rate limiter off",
            url: url(&n, &price_path),
            paths: None,
            pid: n.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "warm_10k",
            label: "warm hit, 10k-price catalog",
            url: url(&t, &price_path),
            paths: None,
            pid: t.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "cold",
            label: "cold miss (unique keys, layer off)",
            url: url(&b, "/"),
            paths: Some(cold_file.clone()),
            pid: b.pid(),
            reset_prefix: Some(pb.clone()),
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "bulk100",
            label: "bulk: 100 prices per request",
            url: url(&a, &bulk_path),
            paths: None,
            pid: a.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
        Scenario {
            key: "single100",
            label: "single prices (the same 100)",
            url: url(&a, "/"),
            paths: Some(singles_file.clone()),
            pid: a.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        },
    ];
    scenarios.push(Scenario {
        key: "purchases",
        label: "purchases, 32 users concurrently",
        url: url(&a, "/v1/activations"),
        paths: None,
        pid: a.pid(),
        reset_prefix: None,
        wrk_env: vec![
            ("WRK_METHOD", "POST".into()),
            ("WRK_TOKENS", accounts.tokens_a.display().to_string()),
            ("WRK_BODIES", accounts.bodies.display().to_string()),
        ],
    });
    scenarios.push(Scenario {
        key: "balance",
        label: "GET /v1/me/balance, 32 users (warm)",
        url: url(&a, "/v1/me/balance"),
        paths: None,
        pid: a.pid(),
        reset_prefix: None,
        wrk_env: vec![("WRK_TOKENS", accounts.tokens_a.display().to_string())],
    });
    if let [edge, static_worker] = edges.as_slice() {
        scenarios.push(Scenario {
            key: "edge_hit",
            label: "edge HIT (Rust worker, workerd)",
            url: url(edge, &price_path),
            paths: None,
            pid: edge.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        });
        scenarios.push(Scenario {
            key: "static_worker",
            label: "static JS worker (workerd)",
            url: url(static_worker, "/"),
            paths: None,
            pid: static_worker.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        });
    }

    // 4. Warm-up (also fills every cache on the warm paths), then interleaved reps.
    for s in &scenarios {
        if s.reset_prefix.is_none() {
            wrk(&s.url, s.paths.as_deref(), &s.wrk_env, 1, connections)?;
        }
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for rep in 0..reps {
        for (i, s) in scenarios.iter().enumerate() {
            if let Some(prefix) = &s.reset_prefix {
                delete_prefix(&redis, prefix).await?;
            }
            let sample = measure(s, secs, connections)?;
            eprintln!(
                "rep {}/{reps} {:<40} {:>9.0} req/s  p99 {:>7.2} ms",
                rep + 1,
                s.label,
                sample.rps,
                sample.p99_ms
            );
            samples[i].push(sample);
        }
    }

    // 5. The fleet stampede: 1000 concurrent requests on one cold key over two origins.
    let mut stampede = stampede(&client, &s1, &s2, &cold[cold.len() - 1]).await?;
    // 6. Balance latency one request at a time, warm (a Redis hit) vs cold (key just deleted).
    stampede["balance_latency"] = balance_latency(&client, &b, &pb, &redis, &accounts).await?;

    let results: Vec<ScenarioResult> = scenarios
        .iter()
        .zip(samples)
        .map(|(s, reps)| {
            let mut by_rps = reps.clone();
            by_rps.sort_by(|x, y| x.rps.total_cmp(&y.rps));
            let median = by_rps[by_rps.len() / 2].clone();
            ScenarioResult {
                key: s.key.into(),
                label: s.label.into(),
                median,
                ratio_to_ceiling: 0.0,
                reps,
            }
        })
        .collect();
    let ceiling_rps = results[0].median.rps;
    let results: Vec<ScenarioResult> = results
        .into_iter()
        .map(|mut r| {
            r.ratio_to_ceiling = r.median.rps / ceiling_rps;
            r
        })
        .collect();

    let get = |key: &str| {
        results
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.median.clone())
    };
    let mut targets = Vec::new();
    if let Some(w) = get("warm_full") {
        let ratio = w.rps / ceiling_rps;
        targets.push(Target {
            target: "warm hit, full path".into(),
            goal: ">= 0.90x ceiling".into(),
            measured: format!("{ratio:.2}x"),
            met: ratio >= 0.90,
        });
        targets.push(Target {
            target: "origin RSS under warm load".into(),
            goal: "<= 30 MB".into(),
            measured: format!("{:.1} MiB", w.peak_rss_mib),
            met: w.peak_rss_mib * 1.048_576 <= 30.0,
        });
    }
    if let Some(w) = get("warm_redis") {
        let ratio = w.rps / ceiling_rps;
        targets.push(Target {
            target: "warm hit, in-process layer off".into(),
            goal: ">= 0.70x ceiling".into(),
            measured: format!("{ratio:.2}x"),
            met: ratio >= 0.70,
        });
    }
    if let (Some(bulk), Some(single)) = (get("bulk100"), get("single100")) {
        let speedup = 100.0 * bulk.rps / single.rps;
        targets.push(Target {
            target: "bulk of 100 vs 100 single requests".into(),
            goal: ">= 10x faster".into(),
            measured: format!("{speedup:.1}x"),
            met: speedup >= 10.0,
        });
    }
    if let (Some(small), Some(big)) = (get("warm_10k"), get("warm_full")) {
        let growth = big.p50_ms / small.p50_ms;
        targets.push(Target {
            target: "hit latency, 600k vs 10k prices".into(),
            goal: "does not grow".into(),
            measured: format!(
                "p50 {:.3} vs {:.3} ms ({growth:.2}x)",
                big.p50_ms, small.p50_ms
            ),
            met: growth <= 1.10,
        });
    }
    let loads = stampede["database_loads"].as_f64().unwrap_or(f64::NAN);
    targets.push(Target {
        target: "stampede, 2 origins, 1000 requests".into(),
        goal: "exactly 1 database load".into(),
        measured: format!("{loads}"),
        met: loads == 1.0,
    });

    let report = Report {
        date: String::from_utf8_lossy(&Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output()?.stdout).trim().to_owned(),
        machine: machine(),
        note: "2 cores shared by wrk (1 thread, 32 connections) and the servers: compare ratios within this run.".into(),
        large_seed_secs,
        scenarios: results,
        stampede,
        targets,
    };
    let table = render(&report);
    println!("{table}");
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("results.md"), &table)?;
    match chart::draw(&report.scenarios, &out.join("results.png")) {
        Ok(()) => println!("wrote {}", out.join("results.png").display()),
        Err(e) => println!("no chart: {e}"),
    }
    for p in [&pa, &pb, &pm, &pn, &pt, &ps] {
        let _ = delete_prefix(&redis, p).await;
    }
    println!("bench took {:.0} s", started.elapsed().as_secs_f64());
    drop(edges);
    Ok(())
}

async fn stampede(
    client: &reqwest::Client,
    s1: &Proc,
    s2: &Proc,
    key: &(String, String, String),
) -> anyhow::Result<serde_json::Value> {
    let path = format!("/v1/catalog/{}/prices/{}/{}", key.0, key.1, key.2);
    let series = "db_queries_total{query=\"prices\"}";
    let before = scrape(client, s1.port, series).await + scrape(client, s2.port, series).await;
    let wide = reqwest::Client::builder()
        .pool_max_idle_per_host(600)
        .build()?;
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let url = format!(
                "http://127.0.0.1:{}{path}",
                if i % 2 == 0 { s1.port } else { s2.port }
            );
            let (client, barrier) = (wide.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let t = Instant::now();
                let ok = client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                (ok, t.elapsed())
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (ok, d) = t.await?;
        if !ok {
            failures += 1;
        }
        lat.push(d.as_secs_f64() * 1000.0);
    }
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = scrape(client, s1.port, series).await + scrape(client, s2.port, series).await;
    lat.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "requests": 1000,
        "origins": 2,
        "failures": failures,
        "database_loads": after - before,
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": percentile(&lat, 1.0),
    }))
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({model}), loopback")
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "NexNum bench, {}; {}\n{}\n\n",
        r.date, r.machine, r.note
    ));
    s.push_str("| scenario | req/s | x ceiling | p50 ms | p99 ms | p99.9 ms | CPU µs/req | peak RSS MiB | non-2xx |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for x in &r.scenarios {
        let m = &x.median;
        s.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {} |\n",
            x.label,
            m.rps,
            x.ratio_to_ceiling,
            m.p50_ms,
            m.p99_ms,
            m.p999_ms,
            m.cpu_us_per_req,
            m.peak_rss_mib,
            m.errors
        ));
    }
    let st = &r.stampede;
    s.push_str(&format!(
        "\nstampede: {} concurrent requests on one cold key over {} origins: {} database load(s), {} failures, p50 {:.1} ms, p99 {:.1} ms\n",
        st["requests"], st["origins"], st["database_loads"], st["failures"], st["p50_ms"].as_f64().unwrap_or(0.0), st["p99_ms"].as_f64().unwrap_or(0.0)
    ));
    let bl = &st["balance_latency"];
    let f = |k: &str| bl[k].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "GET /v1/me/balance one at a time (in-process layer off): warm p50 {:.3} ms p99 {:.3} ms; cold p50 {:.3} ms p99 {:.3} ms\n",
        f("warm_p50_ms"), f("warm_p99_ms"), f("cold_p50_ms"), f("cold_p99_ms")
    ));
    s.push_str(&format!("large catalog seeded from empty in {:.1} s\n\n| target | goal | measured | met |\n|---|---|---|---|\n", r.large_seed_secs));
    for t in &r.targets {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.target,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "NO" }
        ));
    }
    s
}

struct Accounts {
    /// Bearer tokens of the 32 bench users on origin A (one per line).
    tokens_a: PathBuf,
    /// The first bench user's id (its balance is read on origin B).
    user_b: i64,
    /// Purchase bodies spread over every provider and country (number pools are per pair).
    bodies: PathBuf,
}

/// 32 funded users signed in on A, and purchase bodies for them.
async fn accounts_setup(
    client: &reqwest::Client,
    a: &Proc,
    pool: &sqlx::PgPool,
    tmp: &Path,
) -> anyhow::Result<Accounts> {
    let password = "bench password 0123";
    let mut tokens = String::new();
    for i in 0..32 {
        let creds =
            serde_json::json!({"email": format!("bench-{i}@example.com"), "password": password});
        let r = client
            .post(format!("http://127.0.0.1:{}/v1/auth/register", a.port))
            .json(&creds)
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            bail!("registering a bench user: {}", r.status());
        }
        let login: serde_json::Value = client
            .post(format!("http://127.0.0.1:{}/v1/auth/login", a.port))
            .json(&creds)
            .send()
            .await?
            .json()
            .await?;
        tokens.push_str(login["token"].as_str().context("login token")?);
        tokens.push('\n');
    }
    // Funds through the ledger, as an admin credit would.
    sqlx::query(
        "INSERT INTO transactions (user_id, type, amount_cents)
         SELECT id, 'credit', 1000000000 FROM users WHERE email LIKE 'bench-%'",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE users SET balance_cents = balance_cents + 1000000000 WHERE email LIKE 'bench-%'",
    )
    .execute(pool)
    .await?;
    let user_b: i64 =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'bench-0@example.com'")
            .fetch_one(pool)
            .await?;
    let products: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (x.provider_id, x.country_id, x.service_id % 5) pr.code, c.code, s.code
           FROM prices x JOIN providers pr ON pr.id = x.provider_id
           JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
          WHERE x.stock > 100
          ORDER BY x.provider_id, x.country_id, x.service_id % 5, x.service_id",
    )
    .fetch_all(pool)
    .await?;
    // Interleaved so consecutive purchases hit different number pools and price rows.
    let mut bodies = String::new();
    for k in 0..5 {
        for (i, (p, c, s)) in products.iter().enumerate() {
            if i % 5 == k {
                bodies.push_str(
                    &serde_json::json!({"provider": p, "country": c, "service": s}).to_string(),
                );
                bodies.push('\n');
            }
        }
    }
    let (tokens_a, bodies_file) = (tmp.join("tokens.txt"), tmp.join("purchases.txt"));
    std::fs::write(&tokens_a, tokens)?;
    std::fs::write(&bodies_file, bodies)?;
    Ok(Accounts {
        tokens_a,
        user_b,
        bodies: bodies_file,
    })
}

/// p50/p99 of single `GET /v1/me/balance` requests on origin B (in-process layer off): warm (a
/// Redis hit) and cold (the balance key deleted just before, so PostgreSQL answers).
async fn balance_latency(
    client: &reqwest::Client,
    b: &Proc,
    prefix: &str,
    redis: &str,
    acc: &Accounts,
) -> anyhow::Result<serde_json::Value> {
    let mut conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    // Signed in here, not at set-up: the cold scenario empties B's keys, sessions included.
    let creds =
        serde_json::json!({"email": "bench-0@example.com", "password": "bench password 0123"});
    let login: serde_json::Value = client
        .post(format!("http://127.0.0.1:{}/v1/auth/login", b.port))
        .json(&creds)
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login token")?.to_owned();
    let key = format!("{prefix}cache:balance:{}", acc.user_b);
    let url = format!("http://127.0.0.1:{}/v1/me/balance", b.port);
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        for out in [&mut cold, &mut warm] {
            let t = Instant::now();
            let r = client.get(&url).bearer_auth(&token).send().await?;
            if !r.status().is_success() {
                bail!("balance read failed: {}", r.status());
            }
            r.bytes().await?;
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    warm.sort_by(f64::total_cmp);
    cold.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "samples": 400,
        "warm_p50_ms": percentile(&warm, 0.5),
        "warm_p99_ms": percentile(&warm, 0.99),
        "cold_p50_ms": percentile(&cold, 0.5),
        "cold_p99_ms": percentile(&cold, 0.99),
    }))
}
