//! The report: medians of the reps, ratios to the ceiling, the targets table, and the files
//! (`results.json`, `results.md`, `results.png`).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::results::ScenarioResult;

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub target: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub note: String,
    pub large_seed_secs: f64,
    pub scenarios: Vec<ScenarioResult>,
    pub stampede: serde_json::Value,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(
        large_seed_secs: f64,
        scenarios: Vec<ScenarioResult>,
        stampede: serde_json::Value,
    ) -> Report {
        let targets = targets(&scenarios, &stampede);
        let date = Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output();
        Report {
            date: date
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default(),
            machine: machine(),
            note: "2 cores shared by wrk (1 thread, 32 connections) and the servers: \
                   compare ratios within this run."
                .into(),
            large_seed_secs,
            scenarios,
            stampede,
            targets,
        }
    }

    /// Prints the table and writes `results.{json,md,png}` under `out`.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        let table = render(self);
        println!("{table}");
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(out.join("results.md"), &table)?;
        match crate::chart::draw(&self.scenarios, &out.join("results.png")) {
            Ok(()) => println!("wrote {}", out.join("results.png").display()),
            Err(e) => println!("no chart: {e}"),
        }
        Ok(())
    }
}

/// How much to trust a ratio to the ceiling on a drifting machine: each rep's ratio to the
/// ceiling rep run just before it (the reps are interleaved, so these pairs are seconds apart),
/// and the ratio of CPU time per request (the ceiling's over the scenario's, median reps), which
/// load on the other core moves less than throughput. Shown beside the median's ratio, which
/// alone decides the target.
fn spread(results: &[ScenarioResult], key: &str) -> String {
    let (Some(ceiling), Some(this)) = (results.first(), results.iter().find(|r| r.key == key))
    else {
        return String::new();
    };
    let paired: Vec<String> = ceiling
        .reps
        .iter()
        .zip(&this.reps)
        .map(|(c, s)| format!("{:.2}", s.rps / c.rps))
        .collect();
    format!(
        "reps beside their ceiling {}; CPU/request {:.2}x",
        paired.join(" / "),
        ceiling.median.cpu_us_per_req / this.median.cpu_us_per_req
    )
}

fn targets(results: &[ScenarioResult], stampede: &serde_json::Value) -> Vec<Target> {
    let get = |key: &str| {
        results
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.median.clone())
    };
    let ceiling_rps = results.first().map_or(1.0, |r| r.median.rps);
    let mut targets = Vec::new();
    if let Some(w) = get("warm_full") {
        let ratio = w.rps / ceiling_rps;
        targets.push(Target {
            target: "warm hit, full path".into(),
            goal: ">= 0.90x ceiling".into(),
            measured: format!("{ratio:.2}x ({})", spread(results, "warm_full")),
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
            target: "warm hit, L1 off".into(),
            goal: ">= 0.70x ceiling".into(),
            measured: format!(
                "{ratio:.2}x ({}{})",
                spread(results, "warm_redis"),
                get("redis_get").map_or(String::new(), |b| format!(
                    "; Axum + one Redis GET: {:.2}x",
                    b.rps / ceiling_rps
                ))
            ),
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
    if let (Some(edge), Some(js)) = (get("edge_hit_direct"), get("js_cache_direct")) {
        let ratio = edge.rps / js.rps;
        targets.push(Target {
            target: "edge HIT vs a JS Cache API worker (worker socket)".into(),
            goal: ">= 1.0x".into(),
            measured: format!("{ratio:.2}x ({:.0} vs {:.0} req/s)", edge.rps, js.rps),
            met: ratio >= 1.0,
        });
    }
    let wasm = &stampede["edge_wasm_gzip_bytes"];
    if let Some(bytes) = wasm.as_u64() {
        targets.push(Target {
            target: "edge wasm, gzip".into(),
            goal: "<= 150 KB".into(),
            measured: format!("{:.0} KB", bytes as f64 / 1000.0),
            met: bytes <= 150_000,
        });
    }
    let loads = stampede["database_loads"].as_f64().unwrap_or(f64::NAN);
    targets.push(Target {
        target: "stampede, 2 origins, 1000 requests".into(),
        goal: "exactly 1 database load".into(),
        measured: format!("{loads}"),
        met: loads == 1.0,
    });
    let ra = &stampede["refresh_ahead"];
    if ra.is_object() {
        let waited = ra["waited_after_warmup"].as_f64().unwrap_or(f64::NAN);
        targets.push(Target {
            target: "hot keys across TTL boundaries: requests that waited on a database load"
                .into(),
            goal: "0 after warm-up".into(),
            measured: format!("{waited}"),
            met: waited == 0.0 && ra["failures"].as_u64() == Some(0),
        });
    }
    let rows: Vec<crate::instructions::Row> =
        serde_json::from_value(stampede["instructions"].clone()).unwrap_or_default();
    for (key, goal) in [("warm_hit", 1.5), ("l1_off", 2.5)] {
        if let Some(r) = rows.iter().find(|r| r.key == key) {
            targets.push(Target {
                target: format!("{}: instructions per request", r.label),
                goal: format!("<= {goal}x the ceiling's"),
                measured: format!("{:.2}x ({:.0})", r.ratio, r.instructions_per_request),
                met: r.ratio <= goal,
            });
        }
    }
    let sync = &stampede["sync"];
    if sync.is_object() {
        let one = &sync["one_percent"];
        let (changed, keys) = (sync["changed"].as_u64(), one["keys_invalidated"].as_u64());
        targets.push(Target {
            target: "catalog sync, 1 % of the large catalog changed: keys invalidated".into(),
            goal: "= the prices changed".into(),
            measured: format!(
                "{} keys for {} changes",
                keys.unwrap_or(0),
                changed.unwrap_or(0)
            ),
            met: keys.is_some() && keys == changed && one["updated"].as_u64() == changed,
        });
    }
    let w = &stampede["write_path"];
    if w.is_object() {
        let busy = &w["busy"];
        let ratio = busy["unchanged_hit_ratio"].as_f64().unwrap_or(0.0);
        targets.push(Target {
            target:
                "write path: edge hit ratio on unchanged products, 10 purchases/s and a 1 % sync"
                    .into(),
            goal: ">= 99.5 %".into(),
            measured: format!("{:.2} %", 100.0 * ratio),
            met: ratio >= 0.995,
        });
        let slowest = w["new_price_after_secs"].as_array().and_then(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_f64)
                .reduce(f64::max)
        });
        targets.push(Target {
            target: "write path: a changed price served by the edge after the sync".into(),
            goal: "<= 1 s".into(),
            measured: slowest.map_or("never".into(), |s| format!("{s:.2} s")),
            met: slowest.is_some_and(|s| s <= 1.0),
        });
        let per_min = busy["cloudflare_calls_per_min"]
            .as_f64()
            .unwrap_or(f64::MAX);
        targets.push(Target {
            target: "write path: Cloudflare purge calls".into(),
            goal: format!("<= {} a minute (the budget)", w["budget_per_min"]),
            measured: format!("{per_min:.1} a minute"),
            met: per_min <= w["budget_per_min"].as_f64().unwrap_or(0.0),
        });
    }
    // Every figure above counts only if each response was the one meant: no 429s, no errors.
    let non_2xx: u64 = results.iter().map(|r| r.median.errors).sum();
    targets.push(Target {
        target: "every counted response was a 2xx".into(),
        goal: "0 non-2xx".into(),
        measured: format!("{non_2xx}"),
        met: non_2xx == 0,
    });
    targets
}

/// The same three measurements on each back end, with ratios to the direct set-up (one
/// PostgreSQL, one Redis) of this run.
fn backends(results: &[ScenarioResult]) -> String {
    let rps = |key: &str| results.iter().find(|r| r.key == key).map(|r| r.median.rps);
    let rows = [
        (
            "direct (PostgreSQL, one Redis)",
            ["warm_full", "cold", "purchases"],
        ),
        (
            "PgBouncer (transaction mode)",
            ["warm_pgbouncer", "cold_pgbouncer", "purchases_pgbouncer"],
        ),
        (
            "Redis Cluster (3 masters, 3 replicas)",
            ["warm_cluster", "cold_cluster", "purchases_cluster"],
        ),
    ];
    let base = rows[0].1.map(rps);
    let mut s = String::from(
        "\n| back end | warm hit req/s | cold miss req/s | purchases/s |\n|---|---:|---:|---:|\n",
    );
    for (name, keys) in rows {
        let cells: Vec<String> = keys
            .iter()
            .zip(base)
            .map(|(k, b)| match (rps(k), b) {
                (Some(v), Some(b)) => format!("{v:.0} ({:.2}x)", v / b),
                _ => "not run".into(),
            })
            .collect();
        s.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    s
}

/// What TLS to PostgreSQL and Redis costs: each scenario over plaintext and over TLS, from the
/// same run, and how long the origin takes to use Redis again after a restart.
fn tls_costs(results: &[ScenarioResult], reconnect: &serde_json::Value) -> String {
    let find = |key: &str| results.iter().find(|r| r.key == key);
    let rows = [
        ("warm hit, full path (L1)", "warm_full", "warm_tls"),
        (
            "warm hit, L1 off (one Redis round trip)",
            "warm_redis",
            "warm_redis_tls",
        ),
        ("cold miss (Redis + PostgreSQL)", "cold", "cold_tls"),
        (
            "purchases (PostgreSQL transaction)",
            "purchases",
            "purchases_tls",
        ),
    ];
    let mut s = String::from(
        "\n| over TLS vs plaintext | plaintext req/s | TLS req/s | TLS / plaintext | CPU µs/req plaintext | CPU µs/req TLS |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (name, plain, tls) in rows {
        match (find(plain), find(tls)) {
            (Some(p), Some(t)) => s.push_str(&format!(
                "| {name} | {:.0} | {:.0} | {:.2}x | {:.1} | {:.1} |\n",
                p.median.rps,
                t.median.rps,
                t.median.rps / p.median.rps,
                p.median.cpu_us_per_req,
                t.median.cpu_us_per_req
            )),
            _ => s.push_str(&format!("| {name} | not run | | | | |\n")),
        }
    }
    let ms = |k: &str| {
        reconnect[k]
            .as_f64()
            .map_or("not run".to_owned(), |v| format!("{v:.0} ms"))
    };
    s.push_str(&format!(
        "\nRedis restarted under an origin (SIGKILL, then the same port): Redis served again after {} \
         in plaintext, {} over TLS (median of {} restarts each)\n",
        ms("plaintext_ms"),
        ms("tls_ms"),
        reconnect["restarts"]
    ));
    s
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
    s.push_str(&backends(&r.scenarios));
    s.push_str(&tls_costs(&r.scenarios, &r.stampede["redis_reconnect"]));
    let st = &r.stampede;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "\nstampede: {} concurrent requests on one cold key over {} origins: {} database \
         load(s), {} failures, p50 {:.1} ms, p99 {:.1} ms\n",
        st["requests"],
        st["origins"],
        st["database_loads"],
        st["failures"],
        f(&st["p50_ms"]),
        f(&st["p99_ms"])
    ));
    let lf = &st["login_flood"];
    let g = |k: &str| lf[k].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "catalog hits (16 readers): idle p50 {:.3} ms p99 {:.3} ms; during a 64-client login flood \
         p50 {:.3} ms p99 {:.3} ms ({} sign-ins answered 401, {} shed with 503)\n",
        g("idle_p50_ms"),
        g("idle_p99_ms"),
        g("flood_p50_ms"),
        g("flood_p99_ms"),
        lf["logins_refused_401"],
        lf["logins_shed_503"]
    ));
    let bl = &st["balance_latency"];
    let f = |k: &str| bl[k].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "GET /v1/me/balance one at a time (L1 off): warm p50 {:.3} ms p99 {:.3} ms; cold p50 {:.3} ms p99 {:.3} ms\n",
        f("warm_p50_ms"), f("warm_p99_ms"), f("cold_p50_ms"), f("cold_p99_ms")
    ));
    let cs = &st["compressed_sizes"];
    if cs.is_object() {
        s.push_str(&format!(
            "services list (large catalog, one provider): {} bytes as JSON, {} gzip, {} brotli \
             (compressed once per entry)\n",
            cs["identity"], cs["gzip"], cs["br"]
        ));
    }
    let ec = &st["edge_cold_start"];
    if ec.is_object() {
        let f = |k: &str| ec[k].as_f64().unwrap_or(0.0);
        s.push_str(&format!(
            "edge cold start (worker socket): first request {:.1} ms (isolate start, wasm \
             instantiation, origin miss), second {:.1} ms (hit); wasm {} bytes gzip\n",
            f("first_ms"),
            f("second_ms"),
            st["edge_wasm_gzip_bytes"]
        ));
    }
    let ra = &st["refresh_ahead"];
    if ra.is_object() {
        let f = |k: &str| ra[k].as_f64().unwrap_or(0.0);
        s.push_str(&format!(
            "refresh ahead: {} s over {} hot price keys with a {} s TTL (16 clients, {} requests after a \
             2-TTL warm-up): p99 per TTL window {:.2}–{:.2} ms over {} windows, max per window median \
             {:.2} ms, worst {:.2} ms; requests that waited on a database load after warm-up: {}; \
             refreshed {} times; {} failed requests\n",
            ra["secs"], ra["hot_keys"], ra["ttl_secs"], ra["requests"], f("p99_ms_min"),
            f("p99_ms_max"), ra["windows"], f("max_ms_median"), f("max_ms_max"),
            ra["waited_after_warmup"], ra["refreshed"], ra["failures"]
        ));
    }
    s.push_str(&sync_table(&st["sync"]));
    s.push_str(&write_path_table(&st["write_path"]));
    let rows: Vec<crate::instructions::Row> =
        serde_json::from_value(st["instructions"].clone()).unwrap_or_default();
    if !rows.is_empty() {
        s.push_str(
            "\nuser-space instructions per request under callgrind (all threads, 4 keep-alive \
             connections, counters zeroed after a warm-up; the 10k catalog):\n\n",
        );
        s.push_str(&crate::instructions::table(&rows));
        s.push('\n');
    }
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

/// The write-path probe: the quiet phase (readers only) beside the busy one (purchases and a sync).
pub fn write_path_table(w: &serde_json::Value) -> String {
    if !w.is_object() {
        return String::new();
    }
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let after: Vec<String> = w["new_price_after_secs"]
        .as_array()
        .map(|a| a.iter().map(|v| format!("{:.2}", f(v))).collect())
        .unwrap_or_default();
    let mut s = format!(
        "\nthe write path (#34): {} readers over one country's {} price URLs at the edge (workerd); busy: \
         {} purchases a second of one of them and a sync changing {} of the provider's {} prices; \
         purge budget {} calls a minute per sink; the changed products' new price served {} s after \
         the sync ended:\n\n\
         | phase | seconds | reads | hit ratio, unchanged products | hit ratio, the bought product | \
         catalog requests at the origin | edge purge calls (/min) | Cloudflare calls (/min) | purchases |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        w["readers"],
        w["read_urls"],
        w["purchases_per_sec"],
        w["changed"],
        w["offers"],
        w["budget_per_min"],
        after.join(", "),
    );
    for name in ["quiet", "busy"] {
        let p = &w[name];
        s.push_str(&format!(
            "| {name} | {:.1} | {} | {:.2} % | {:.2} % | {} | {} ({:.1}) | {} ({:.1}) | {} |\n",
            f(&p["secs"]),
            p["reads"],
            100.0 * f(&p["unchanged_hit_ratio"]),
            100.0 * f(&p["bought_product_hit_ratio"]),
            p["origin_catalog_requests"],
            p["edge_purge_calls"],
            f(&p["edge_purge_calls_per_min"]),
            p["cloudflare_calls"],
            f(&p["cloudflare_calls_per_min"]),
            p["purchases"],
        ));
    }
    s.push('\n');
    s
}

/// The catalog sync probe: both runs side by side, warm-hit latency beside idle.
fn sync_table(sync: &serde_json::Value) -> String {
    if !sync.is_object() {
        return String::new();
    }
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let mut s = format!(
        "\ncatalog sync of {} offers from {} providers (5sim's shape, a stand-in upstream), \
         `origin sync` beside an origin serving warm hits (16 readers; idle p50 {:.3} ms p99 {:.3} ms):\n\n\
         | run | seconds | rows written | keys invalidated | Redis DEL calls | PUBLISH calls | sync peak RSS MiB | hit p50 ms | hit p99 ms | hit p99 / idle |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        sync["offers"],
        sync["providers"],
        f(&sync["idle_hit_p50_ms"]),
        f(&sync["idle_hit_p99_ms"]),
    );
    for (name, run) in [
        ("first load", &sync["first_load"]),
        ("1 % changed", &sync["one_percent"]),
    ] {
        s.push_str(&format!(
            "| {name} | {:.1} | {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2}x |\n",
            f(&run["seconds"]),
            run["rows_written"],
            run["keys_invalidated"],
            run["redis_del_calls"],
            run["redis_publish_calls"],
            f(&run["sync_peak_rss_mib"]),
            f(&run["hit_p50_ms"]),
            f(&run["hit_p99_ms"]),
            f(&run["hit_p99_ms"]) / f(&sync["idle_hit_p99_ms"]).max(1e-9),
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Sample;

    fn result(key: &str, reps: &[(f64, f64)]) -> ScenarioResult {
        let reps: Vec<Sample> = reps
            .iter()
            .map(|&(rps, cpu_us_per_req)| Sample {
                rps,
                p50_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                cpu_us_per_req,
                peak_rss_mib: 0.0,
                requests: 0,
                errors: 0,
            })
            .collect();
        ScenarioResult {
            key: key.into(),
            label: key.into(),
            median: reps[1].clone(),
            ratio_to_ceiling: 0.0,
            reps,
        }
    }

    #[test]
    fn spread_pairs_each_rep_with_the_ceiling_rep_beside_it() {
        let results = [
            result("ceiling", &[(100.0, 10.0), (50.0, 10.0), (80.0, 10.0)]),
            result("warm_full", &[(70.0, 12.0), (45.0, 20.0), (76.0, 12.5)]),
        ];
        assert_eq!(
            spread(&results, "warm_full"),
            "reps beside their ceiling 0.70 / 0.90 / 0.95; CPU/request 0.50x"
        );
        assert_eq!(spread(&results, "missing"), "");
    }

    #[test]
    fn the_l1_off_target_shows_the_redis_baseline_of_the_same_run() {
        let results = [
            result("ceiling", &[(100.0, 10.0), (100.0, 10.0), (100.0, 10.0)]),
            result("redis_get", &[(56.0, 18.0), (55.0, 18.0), (57.0, 18.0)]),
            result("warm_redis", &[(50.0, 20.0), (48.0, 20.0), (51.0, 20.0)]),
        ];
        let all = targets(&results, &serde_json::Value::Null);
        let t = all.iter().find(|t| t.target == "warm hit, L1 off").unwrap();
        assert!(!t.met);
        assert!(
            t.measured.starts_with("0.48x (reps beside"),
            "{}",
            t.measured
        );
        assert!(
            t.measured.ends_with("; Axum + one Redis GET: 0.55x)"),
            "{}",
            t.measured
        );
        // Without the baseline in the run, the row says nothing of it.
        let all = targets(
            &[results[0].clone(), results[2].clone()],
            &serde_json::Value::Null,
        );
        let t = all.iter().find(|t| t.target == "warm hit, L1 off").unwrap();
        assert!(!t.measured.contains("Redis GET"), "{}", t.measured);
    }
}
