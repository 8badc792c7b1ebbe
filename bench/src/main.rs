//! `make bench`: the origin (and the edge) under a real load generator (wrk), every figure next
//! to a static-response ceiling measured in the same run. Loopback only, bounded in time.
//!
//! [`run`] reads top-down: set-up, scenarios, report.
//!
//! - [`setup`]: the environment, the seeded catalogs, the request paths, the servers.
//! - [`instructions`]: instructions per request under callgrind, and the CI gate on them.
//! - [`load`]: wrk runs of each scenario and the interleaved reps.
//! - [`probes`]: measurements that are not wrk runs (fleet stampede, balance latency).
//! - [`sync`]: the catalog sync of the large catalog (first load, 1 % changed) under warm hits.
//! - [`writepath`]: readers at the edge while one product is bought 10 times a second and a sync
//!   changes 1 % of the prices: the edge's hit ratio, purge calls, origin requests.
//! - [`results`]: what was measured, as plain data (samples, medians, percentiles).
//! - [`report`]: ratios, targets, the table and the result files.
//! - [`procs`]: child processes and their CPU time and memory from `/proc`.
//! - [`chart`]: the PNG chart.
//!
//! Method: every scenario runs `--reps` times, interleaved (scenario 1..n, then again), so drift
//! of this shared machine hits all alike; the table shows the median rep. The machine has 2
//! cores shared by wrk and the servers: compare ratios from one run, not absolute numbers
//! across machines.

mod chart;
mod instructions;
mod load;
mod probes;
mod procs;
mod report;
mod results;
mod setup;
mod sync;
mod writepath;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use clap::{Parser, Subcommand};

use report::Report;
use setup::{BenchEnv, Paths, Servers};

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
    /// The Redis baseline: the ceiling's headers, and the body read by one `GET` on a
    /// multiplexed redis-rs connection per request; what a minimal cache-aside handler costs.
    RedisGet {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        redis: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        etag: String,
        #[arg(long)]
        cache_control: String,
    },
    /// Instructions per request under callgrind (the servers on the 10k catalog), the table,
    /// `instructions.json` under `--out`, and with `--gate` a failure when a gated scenario
    /// rose past the checked-in figure (`make bench-instructions`, in CI).
    Instructions {
        #[arg(long, default_value_t = 4000)]
        requests: usize,
        #[arg(long, default_value = "bench/out")]
        out: PathBuf,
        #[arg(long)]
        gate: Option<PathBuf>,
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
        /// Length of the refresh-ahead run over hot keys (0: skip it).
        #[arg(long, default_value_t = 180)]
        refresh_secs: u64,
    },
    /// The write-path scenario alone (`make bench-write-path`): readers at the edge, purchases
    /// and a sync; its table on stdout and `write-path.json` under `--out`.
    WritePath {
        #[arg(long, default_value = "bench/out")]
        out: PathBuf,
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
        Cmd::RedisGet {
            port,
            redis,
            key,
            etag,
            cache_control,
        } => rt.block_on(redis_get(port, &redis, &key, &etag, &cache_control)),
        Cmd::Instructions {
            requests,
            out,
            gate,
        } => rt.block_on(instructions_only(requests, &out, gate.as_deref())),
        Cmd::Run {
            reps,
            secs,
            connections,
            out,
            skip_edge,
            refresh_secs,
        } => rt.block_on(run(reps, secs, connections, &out, skip_edge, refresh_secs)),
        Cmd::WritePath { out } => rt.block_on(write_path_alone(&out)),
    }
}

async fn ceiling(port: u16, body: &Path, etag: &str, cache_control: &str) -> anyhow::Result<()> {
    let body = bytes_of(body)?;
    let headers = hit_headers(etag, cache_control)?;
    let app = axum::Router::new().fallback(move || {
        let (headers, body) = (headers.clone(), body.clone());
        async move { (headers, body) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn redis_get(
    port: u16,
    redis: &str,
    key: &str,
    etag: &str,
    cache_control: &str,
) -> anyhow::Result<()> {
    let headers = hit_headers(etag, cache_control)?;
    let conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    let key: std::sync::Arc<str> = key.into();
    let app = axum::Router::new().fallback(move || {
        let (headers, mut conn, key) = (headers.clone(), conn.clone(), key.clone());
        async move {
            match redis::AsyncCommands::get::<_, Option<Vec<u8>>>(&mut conn, &*key).await {
                Ok(Some(body)) => (headers, body).into_response(),
                _ => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The headers of a warm catalog hit, as the baselines send them.
fn hit_headers(etag: &str, cache_control: &str) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, HeaderValue::from_str(etag)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(cache_control)?);
    Ok(headers)
}

fn bytes_of(path: &Path) -> anyhow::Result<axum::body::Bytes> {
    Ok(axum::body::Bytes::from(
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    ))
}

/// `make bench-instructions`: the callgrind table alone, and the gate.
async fn instructions_only(requests: usize, out: &Path, gate: Option<&Path>) -> anyhow::Result<()> {
    let env = BenchEnv::from_environment()?;
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let rows = instructions::measure(&env, &tmp, requests).await?;
    let table = instructions::table(&rows);
    println!("{table}");
    std::fs::write(
        out.join("instructions.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    std::fs::write(out.join("instructions.md"), &table)?;
    if let Some(gate) = gate {
        for line in instructions::check(&rows, gate)? {
            println!("{line}");
        }
        println!("gate {}: passed", gate.display());
    }
    Ok(())
}

/// The write-path scenario on the 10k catalog, without the rest of the run.
async fn write_path_alone(out: &Path) -> anyhow::Result<()> {
    let env = BenchEnv::from_environment()?;
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let small = setup::db_url(&env.admin, "nexnum_bench_10k");
    setup::seed(&env, &small, "10k")?;
    let prefix = format!("bench:write-path:{}:", uuid::Uuid::new_v4().simple());
    let result = writepath::write_path(&env, &small, &prefix, &tmp).await;
    let _ = setup::delete_prefix(&env.redis, &prefix).await;
    let result = result?;
    std::fs::write(
        out.join("write-path.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    print!("{}", report::write_path_table(&result));
    Ok(())
}

/// The whole run: 1. set-up, 2. scenarios and probes, 3. report.
async fn run(
    reps: usize,
    secs: u64,
    connections: u32,
    out: &Path,
    skip_edge: bool,
    refresh_secs: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    procs::require("wrk", "make bench installs it (Debian package wrk)")?;
    let env = BenchEnv::from_environment()?;
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp)?;

    // 1. Set-up: the catalogs, the requests, the servers.
    let catalogs = setup::seed_catalogs(&env).await?;
    let paths = Paths::build(&catalogs, &tmp).await?;
    let mut servers = Servers::start(&env, &catalogs, &paths, &tmp, skip_edge).await?;

    // 2. Every scenario under wrk (interleaved reps), then the probes.
    let scenarios = load::scenarios(&servers, &paths, &env.redis);
    let samples = load::measure_all(&scenarios, reps, secs, connections).await?;
    let client = reqwest::Client::new();
    let [s1, s2] = &servers.stampede;
    let mut probes = probes::stampede(&client, s1, s2, &paths.stampede_key).await?;
    probes["balance_latency"] = probes::balance_latency(
        &client,
        &servers.no_l1,
        servers.no_l1_prefix(),
        &env.redis,
        &servers.accounts,
    )
    .await?;
    probes["login_flood"] = probes::catalog_during_login_flood(&servers.full, &paths.price).await?;
    probes["compressed_sizes"] =
        probes::compressed_sizes(&servers.lists, "/v1/catalog/5sim/services").await?;
    probes["redis_reconnect"] = probes::redis_reconnect(&env, &catalogs.large, 5).await?;
    if !skip_edge {
        probes["edge_access_log"] =
            load::check_edge_log(&scenarios, &samples, &tmp.join(setup::EDGE_ACCESS_LOG))?;
        probes["edge_cold_start"] = setup::edge_cold_start(&servers.full, &paths.price).await?;
        probes["edge_wasm_gzip_bytes"] =
            serde_json::json!(setup::gzip_len(Path::new("edge/build/index_bg.wasm"))?);
    }
    if refresh_secs > 0 {
        // Prices live 60 s / 12 = 5 s here: the run crosses a TTL boundary every 5 s.
        let divisor = 12;
        let origin = env
            .origin(
                "origin (refresh ahead, TTL / 12)",
                &catalogs.large,
                &servers.extra_prefix("r"),
                &[("CACHE_TTL_DIVISOR", "12")],
            )
            .await?;
        let hot: Vec<String> = std::fs::read_to_string(&paths.singles_file)?
            .lines()
            .take(20)
            .map(str::to_owned)
            .collect();
        probes["refresh_ahead"] =
            probes::refresh_ahead(&origin, &hot, 60 / divisor, refresh_secs).await?;
    }

    if !skip_edge {
        let prefix = servers.extra_prefix("write-path");
        probes["write_path"] = writepath::write_path(&env, &catalogs.small, &prefix, &tmp).await?;
    }
    let prefix = servers.extra_prefix("sync");
    probes["sync"] = sync::large_catalog(&env, &catalogs.large, &prefix, &paths.price).await?;
    // Last, with nothing else running: instructions per request under callgrind.
    if procs::require("valgrind", "").is_ok() {
        let rows = instructions::measure(&env, &tmp, 4000).await?;
        probes["instructions"] = serde_json::to_value(&rows)?;
    }

    // 3. The report.
    let results = load::summarise(&scenarios, samples);
    Report::new(catalogs.large_seed_secs, results, probes).write(out)?;
    servers.clean().await;
    println!("bench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
