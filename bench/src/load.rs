//! The load generator: wrk runs of one scenario, with the server tree's CPU time and peak memory
//! from `/proc`, and the interleaved reps of every scenario.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::procs::Proc;
use crate::procs::{RssSampler, cpu_ticks, tree};
use crate::results::{Sample, ScenarioResult};
use crate::setup::{Paths, Servers, delete_prefix};

pub struct Scenario {
    pub key: &'static str,
    pub label: &'static str,
    pub url: String,
    pub paths: Option<PathBuf>,
    /// Process whose tree's CPU and memory are measured.
    pub pid: u32,
    /// Run before each rep (e.g. drop cached keys so a cold scenario stays cold).
    /// (Redis URL, prefix) whose keys are dropped before each rep (cold scenarios).
    pub reset_prefix: Option<(String, String)>,
    /// Extra wrk environment (`WRK_METHOD`, `WRK_BODIES`, `WRK_TOKENS`).
    pub wrk_env: Vec<(&'static str, String)>,
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

/// A warm-up of every warm scenario (it also fills every cache on their paths), then `reps`
/// rounds of every scenario in turn, so drift of this shared machine hits all alike.
pub async fn measure_all(
    scenarios: &[Scenario],
    reps: usize,
    secs: u64,
    connections: u32,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    for s in scenarios.iter().filter(|s| s.reset_prefix.is_none()) {
        wrk(&s.url, s.paths.as_deref(), &s.wrk_env, 1, connections)?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for rep in 0..reps {
        for (i, s) in scenarios.iter().enumerate() {
            if let Some((redis, prefix)) = &s.reset_prefix {
                delete_prefix(redis, prefix).await?;
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
    Ok(samples)
}

impl Scenario {
    /// A scenario of one URL on one server, with nothing else set.
    fn on(key: &'static str, label: &'static str, server: &Proc, path: &str) -> Scenario {
        Scenario {
            key,
            label,
            url: format!("http://127.0.0.1:{}{path}", server.port),
            paths: None,
            pid: server.pid(),
            reset_prefix: None,
            wrk_env: Vec::new(),
        }
    }

    /// Cycling through the paths in `file` instead of one URL.
    fn cycling(mut self, file: &std::path::Path) -> Scenario {
        self.paths = Some(file.to_owned());
        self
    }

    fn with_env(mut self, env: Vec<(&'static str, String)>) -> Scenario {
        self.wrk_env = env;
        self
    }
}

/// Every scenario, the ceiling first (ratios are taken to it).
pub fn scenarios(s: &Servers, p: &Paths, redis: &str) -> Vec<Scenario> {
    let tokens = s.accounts.tokens_a.display().to_string();
    let mut cold = Scenario::on("cold", "cold miss (unique keys, layer off)", &s.no_l1, "/");
    cold = cold.cycling(&p.cold_file);
    cold.reset_prefix = Some((redis.to_owned(), s.no_l1_prefix().to_owned()));
    let mut scenarios = vec![
        Scenario::on(
            "ceiling",
            "ceiling: static Axum, same bytes",
            &s.ceiling,
            "/",
        ),
        Scenario::on("warm_full", "warm hit, full path", &s.full, &p.price),
        Scenario::on(
            "redis_get",
            "baseline: Axum + one Redis GET, same bytes",
            &s.redis_get,
            "/",
        ),
        Scenario::on("warm_redis", "warm hit, L1 off", &s.no_l1, &p.price),
        Scenario::on(
            "warm_no_metrics",
            "warm hit, metrics off",
            &s.no_metrics,
            &p.price,
        ),
        Scenario::on(
            "warm_no_limiter",
            "warm hit, rate limiter off",
            &s.no_limiter,
            &p.price,
        ),
        Scenario::on(
            "warm_10k",
            "warm hit, 10k-price catalog",
            &s.small_catalog,
            &p.price,
        ),
        cold,
        Scenario::on("bulk100", "bulk: 100 prices per request", &s.full, &p.bulk),
        Scenario::on("single100", "single prices (the same 100)", &s.full, "/")
            .cycling(&p.singles_file),
        Scenario::on(
            "purchases",
            "purchases, 32 users concurrently",
            &s.full,
            "/v1/activations",
        )
        .with_env(vec![
            ("WRK_METHOD", "POST".into()),
            ("WRK_TOKENS", tokens.clone()),
            ("WRK_BODIES", s.accounts.bodies.display().to_string()),
        ]),
        Scenario::on(
            "balance",
            "GET /v1/me/balance, 32 users (warm)",
            &s.full,
            "/v1/me/balance",
        )
        .with_env(vec![("WRK_TOKENS", tokens)]),
    ];
    // The large catalog's services list of one provider (tens of KB), as it is and compressed.
    let services = "/v1/catalog/5sim/services";
    scenarios.push(Scenario::on(
        "services_identity",
        "services list (large), uncompressed",
        &s.lists,
        services,
    ));
    scenarios.push(
        Scenario::on(
            "services_br",
            "services list (large), brotli",
            &s.lists,
            services,
        )
        .with_env(vec![("WRK_ACCEPT_ENCODING", "br".into())]),
    );
    if let Some((pooled, pooled_cold)) = &s.bouncer {
        let mut cold = Scenario::on(
            "cold_pgbouncer",
            "cold miss through PgBouncer",
            pooled_cold,
            "/",
        )
        .cycling(&p.cold_file);
        cold.reset_prefix = Some((redis.to_owned(), s.bouncer_cold_prefix().to_owned()));
        scenarios.push(Scenario::on(
            "warm_pgbouncer",
            "warm hit through PgBouncer",
            pooled,
            &p.price,
        ));
        scenarios.push(cold);
        scenarios.push(
            Scenario::on(
                "purchases_pgbouncer",
                "purchases through PgBouncer",
                pooled,
                "/v1/activations",
            )
            .with_env(vec![
                ("WRK_METHOD", "POST".into()),
                ("WRK_TOKENS", s.accounts.tokens_a.display().to_string()),
                ("WRK_BODIES", s.accounts.bodies.display().to_string()),
            ]),
        );
    }
    if let Some(c) = &s.cluster {
        let mut cold = Scenario::on("cold_cluster", "cold miss on a Redis Cluster", &c.cold, "/")
            .cycling(&p.cold_file);
        cold.reset_prefix = Some((c.url.clone(), c.cold_prefix.clone()));
        scenarios.push(Scenario::on(
            "warm_cluster",
            "warm hit on a Redis Cluster",
            &c.full,
            &p.price,
        ));
        scenarios.push(cold);
        scenarios.push(
            Scenario::on(
                "purchases_cluster",
                "purchases on a Redis Cluster",
                &c.full,
                "/v1/activations",
            )
            .with_env(vec![
                ("WRK_METHOD", "POST".into()),
                ("WRK_TOKENS", c.tokens.display().to_string()),
                ("WRK_BODIES", s.accounts.bodies.display().to_string()),
            ]),
        );
    }
    if let Some(t) = &s.tls {
        let mut cold =
            Scenario::on("cold_tls", "cold miss over TLS", &t.no_l1, "/").cycling(&p.cold_file);
        cold.reset_prefix = Some((t.redis.clone(), t.no_l1_prefix.clone()));
        scenarios.push(Scenario::on(
            "warm_tls",
            "warm hit over TLS (PostgreSQL, Redis)",
            &t.full,
            &p.price,
        ));
        scenarios.push(Scenario::on(
            "warm_redis_tls",
            "warm hit, L1 off, over TLS",
            &t.no_l1,
            &p.price,
        ));
        scenarios.push(cold);
        scenarios.push(
            Scenario::on(
                "purchases_tls",
                "purchases over TLS",
                &t.full,
                "/v1/activations",
            )
            .with_env(vec![
                ("WRK_METHOD", "POST".into()),
                ("WRK_TOKENS", t.tokens.display().to_string()),
                ("WRK_BODIES", s.accounts.bodies.display().to_string()),
            ]),
        );
    }
    if let [edge, static_worker, js_cache] = s.edges.as_slice() {
        scenarios.push(Scenario::on(
            "edge_hit",
            "edge HIT (Rust worker, workerd)",
            edge,
            &p.price,
        ));
        scenarios.push(Scenario::on(
            "static_worker",
            "static JS worker (workerd)",
            static_worker,
            "/",
        ));
        // The same three on the workers' own sockets: the worker, not Miniflare's proxy.
        let direct = |key, label, server: &Proc, path: &str| {
            let mut s = Scenario::on(key, label, server, path);
            s.url = format!("http://127.0.0.1:{}{path}", server.direct_port);
            s
        };
        scenarios.push(direct(
            "edge_hit_direct",
            "edge HIT, worker socket (Rust worker)",
            edge,
            &p.price,
        ));
        scenarios.push(direct(
            "js_cache_direct",
            "JS Cache API worker HIT, worker socket",
            js_cache,
            &p.price,
        ));
        scenarios.push(direct(
            "static_direct",
            "static JS worker, worker socket",
            static_worker,
            "/",
        ));
    }
    scenarios
}

/// Each scenario's median rep (by requests per second) and its ratio to the ceiling (the first).
pub fn summarise(scenarios: &[Scenario], samples: Vec<Vec<Sample>>) -> Vec<ScenarioResult> {
    let mut results: Vec<ScenarioResult> = scenarios
        .iter()
        .zip(samples)
        .map(|(s, reps)| {
            let mut by_rps = reps.clone();
            by_rps.sort_by(|x, y| x.rps.total_cmp(&y.rps));
            ScenarioResult {
                key: s.key.into(),
                label: s.label.into(),
                median: by_rps[by_rps.len() / 2].clone(),
                ratio_to_ceiling: 0.0,
                reps,
            }
        })
        .collect();
    let ceiling_rps = results.first().map_or(1.0, |r| r.median.rps);
    for r in &mut results {
        r.ratio_to_ceiling = r.median.rps / ceiling_rps;
    }
    results
}

/// The edge worker logs one line per request: its log must hold at least one `HIT` line for
/// every request the edge HIT scenarios counted (warm-ups and probes add more), or the figure
/// was measured with the access log off.
pub fn check_edge_log(
    scenarios: &[Scenario],
    samples: &[Vec<Sample>],
    log: &Path,
) -> anyhow::Result<serde_json::Value> {
    let counted: u64 = scenarios
        .iter()
        .zip(samples)
        .filter(|(s, _)| matches!(s.key, "edge_hit" | "edge_hit_direct"))
        .flat_map(|(_, reps)| reps.iter().map(|r| r.requests))
        .sum();
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let hits = text
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"cache\":\"HIT\""))
        .count() as u64;
    anyhow::ensure!(
        hits >= counted,
        "the edge logged {hits} HIT lines for {counted} HIT requests counted: the access log was \
         not on for every request measured"
    );
    println!("edge access log: {hits} HIT lines for the {counted} HIT requests counted");
    Ok(serde_json::json!({"hit_lines": hits, "hit_requests_counted": counted}))
}
