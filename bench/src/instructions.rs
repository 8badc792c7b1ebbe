//! Instructions per request (#26): the servers run under Valgrind's callgrind, which counts every
//! user-space instruction of every thread; counters are zeroed after a warm-up
//! (`callgrind_control -z`), a fixed number of requests is sent over four keep-alive
//! connections, and the counters are dumped (`callgrind_control -d`): their total over the
//! requests is the figure. Wall-clock numbers on this shared 2-core machine move by a third
//! from run to run; these move by a fraction of a percent, so they can gate CI.
//!
//! Why callgrind on the real server and not an in-process harness (iai-callgrind/gungraun): the
//! cost that matters is the whole request as a client sees it (hyper's parsing, the front door,
//! the rate limiter, the cache, the metrics, the response written), under the same runtime and
//! threads as production. A function-level harness would miss the layers, which is where the
//! cost was.
//!
//! What is not counted: the kernel's TCP work (both the ceiling and the origin pay it), and the
//! other processes (Redis, PostgreSQL). Every response is checked (status, and a 2xx or 304
//! only): a refused request would otherwise count as a cheap one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};

use crate::procs::{self, Proc, spare_port, start};
use crate::setup::{BenchEnv, WarmHit, warm_hit};

/// One measured scenario.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub requests: usize,
    pub instructions_per_request: f64,
    /// Against the static ceiling of the same run.
    pub ratio: f64,
}

/// The checked-in figures CI compares a run with (`bench/instructions.json`).
#[derive(serde::Deserialize)]
struct Gate {
    /// Scenario key → instructions per request, as last measured deliberately.
    figures: std::collections::BTreeMap<String, f64>,
    /// How far above its figure a gated scenario may read.
    tolerance_pct: f64,
}

/// A server under callgrind: its dumps land in `dir` as `name.<pid>.<n>`.
struct Grind {
    proc: Proc,
    dir: PathBuf,
    name: String,
}

impl Grind {
    fn valgrind(dir: &Path, name: &str) -> Command {
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}/{name}.%p", dir.display()))
            // Costs per function only (what `callgrind_annotate` reads); no per-instruction
            // or cache simulation: the count is the same, the run faster.
            .arg("--dump-instr=no")
            .arg("--quiet");
        cmd
    }

    /// Zeroes the counters, runs `load`, dumps them: instructions per request.
    async fn measure<F, Fut>(&self, requests: usize, load: F) -> anyhow::Result<f64>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        control(&["-z"], self.proc.pid())?;
        load().await?;
        control(&["-d"], self.proc.pid())?;
        let total = self.latest_total()?;
        Ok(total / requests as f64)
    }

    /// The `totals:` line of the newest dump.
    fn latest_total(&self) -> anyhow::Result<f64> {
        let prefix = format!("{}.{}.", self.name, self.proc.pid());
        let newest = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, e.path()))
            })
            .max_by_key(|(n, _)| *n)
            .with_context(|| format!("no callgrind dump {prefix}* in {}", self.dir.display()))?;
        let text = std::fs::read_to_string(&newest.1)?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no totals in {}", newest.1.display()))
    }
}

fn control(args: &[&str], pid: u32) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    ensure!(
        out.status.success(),
        "callgrind_control {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// What one scenario sends: request `i`'s builder on `client`, and the status it must get.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// `requests` requests over four keep-alive connections (one client each), every answer
/// checked for `status` and read whole. `offset` shifts the index given to `make` (so a
/// warm-up and the measured run can use different keys).
async fn drive(
    make: &MakeRequest,
    requests: usize,
    offset: usize,
    status: u16,
) -> anyhow::Result<()> {
    const CONNECTIONS: usize = 4;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?;
                let mut i = c;
                while i < requests {
                    let r = make(&client, offset + i).send().await?;
                    let got = r.status().as_u16();
                    r.bytes().await?;
                    if got != status {
                        bail!("request {i}: {got}, not the {status} this scenario measures");
                    }
                    i += CONNECTIONS;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The scenarios' requests, from the 10k catalog.
struct Requests {
    price: String,
    bulk20: String,
    /// Every other price path (distinct keys for the cold misses).
    others: Vec<String>,
}

impl Requests {
    async fn load(db: &str) -> anyhow::Result<Requests> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(db)
            .await?;
        let all: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT pr.code, c.code, s.code FROM prices x JOIN providers pr ON pr.id = x.provider_id
               JOIN countries c ON c.id = x.country_id JOIN services s ON s.id = x.service_id
              ORDER BY (s.code <> 'whatsapp'), pr.code, c.code, s.code",
        )
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        let (p, c, _) = all.first().context("an empty catalog")?.clone();
        let services: Vec<&str> = all
            .iter()
            .filter(|(pp, cc, _)| (pp, cc) == (&p, &c))
            .map(|(_, _, s)| s.as_str())
            .take(20)
            .collect();
        ensure!(services.len() == 20, "fewer than 20 services in {p}/{c}");
        let path = |(p, c, s): &(String, String, String)| format!("/v1/catalog/{p}/prices/{c}/{s}");
        Ok(Requests {
            price: path(&all[0]),
            bulk20: format!("/v1/catalog/{p}/prices/{c}?services={}", services.join(",")),
            others: all[1..].iter().map(path).collect(),
        })
    }
}

/// Every scenario; `requests` per scenario (a quarter of that for the cold misses, each a
/// PostgreSQL load). Servers start under callgrind in `tmp` and stop before this returns.
pub async fn measure(env: &BenchEnv, tmp: &Path, requests: usize) -> anyhow::Result<Vec<Row>> {
    procs::require(
        "valgrind",
        "make bench-instructions installs it (Debian package valgrind)",
    )?;
    let dir = tmp.join("callgrind");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = crate::setup::db_url(&env.admin, "nexnum_bench_10k");
    crate::setup::seed(env, &db, "10k")?;
    let reqs = Requests::load(&db).await?;
    let prefix = |name: &str| format!("bench:cg-{name}:{}:", uuid::Uuid::new_v4().simple());
    let (full_p, no_l1_p) = (prefix("a"), prefix("b"));

    let origin = |name: &'static str, prefix: String, extra: Vec<(&'static str, &'static str)>| {
        let dir = dir.clone();
        let db = db.clone();
        async move {
            let cmd = Grind::valgrind(&dir, name);
            let proc = env
                .origin_with(Some(cmd), name, &db, &prefix, &extra)
                .await?;
            anyhow::Ok(Grind {
                proc,
                dir,
                name: name.to_owned(),
            })
        }
    };
    // Every feature on, logging included: the default filter (`info`), as deployed.
    let log = ("RUST_LOG", origin::config::DEFAULT_LOG_FILTER);
    let full = origin("origin", full_p.clone(), vec![log]).await?;
    let no_l1 = origin(
        "origin-l1-off",
        no_l1_p.clone(),
        vec![log, ("L1_CACHE", "off")],
    )
    .await?;

    // The warm hit's bytes and headers, which the ceiling answers with.
    let client = reqwest::Client::new();
    let WarmHit {
        body_file,
        etag,
        cache_control,
        ..
    } = warm_hit(&client, &full.proc, &reqs.price, &dir).await?;
    let ceiling = {
        let port = spare_port()?;
        let mut cmd = Grind::valgrind(&dir, "ceiling");
        cmd.arg(std::env::current_exe()?)
            .args(["ceiling", "--port", &port.to_string(), "--body"])
            .arg(&body_file)
            .args(["--etag", &etag, "--cache-control", &cache_control]);
        Grind {
            proc: start("ceiling (callgrind)", cmd, port, "/").await?,
            dir: dir.clone(),
            name: "ceiling".into(),
        }
    };
    // What a minimal cache-aside read costs: the ceiling's answer, its body from one redis-rs
    // `GET` per request.
    let redis_get = {
        let key = format!("{}body", prefix("redis-get"));
        let mut conn = redis::Client::open(env.redis.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(std::fs::read(&body_file)?)
            .arg("EX")
            .arg(3600)
            .query_async(&mut conn)
            .await?;
        let port = spare_port()?;
        let mut cmd = Grind::valgrind(&dir, "redis-get");
        cmd.arg(std::env::current_exe()?)
            .args([
                "redis-get",
                "--port",
                &port.to_string(),
                "--redis",
                &env.redis,
            ])
            .args(["--key", &key])
            .args(["--etag", &etag, "--cache-control", &cache_control]);
        Grind {
            proc: start("redis-get (callgrind)", cmd, port, "/").await?,
            dir: dir.clone(),
            name: "redis-get".into(),
        }
    };
    let token = sign_in(&client, full.proc.port, "bench-instructions@example.com").await?;

    let get = |port: u16, path: String| -> MakeRequest {
        Arc::new(move |c: &reqwest::Client, _| c.get(format!("http://127.0.0.1:{port}{path}")))
    };
    let scenarios: Vec<(&str, &str, &Grind, MakeRequest, u16, usize)> = vec![
        (
            "ceiling",
            "static Axum (ceiling)",
            &ceiling,
            get(ceiling.proc.port, reqs.price.clone()),
            200,
            requests,
        ),
        (
            "redis_get",
            "Axum + one redis-rs GET (baseline)",
            &redis_get,
            get(redis_get.proc.port, reqs.price.clone()),
            200,
            requests,
        ),
        (
            "warm_hit",
            "origin, warm hit (L1)",
            &full,
            get(full.proc.port, reqs.price.clone()),
            200,
            requests,
        ),
        (
            "not_modified",
            "origin, 304 (If-None-Match)",
            &full,
            {
                let (port, path, etag) = (full.proc.port, reqs.price.clone(), etag.clone());
                Arc::new(move |c: &reqwest::Client, _| {
                    c.get(format!("http://127.0.0.1:{port}{path}"))
                        .header("if-none-match", &etag)
                })
            },
            304,
            requests,
        ),
        (
            "bulk_20",
            "origin, bulk of 20 (L1)",
            &full,
            get(full.proc.port, reqs.bulk20.clone()),
            200,
            requests,
        ),
        (
            "l1_off",
            "origin, L1 off (Redis)",
            &no_l1,
            get(no_l1.proc.port, reqs.price.clone()),
            200,
            requests,
        ),
        (
            "cold_miss",
            "origin, cold miss (PostgreSQL)",
            &no_l1,
            {
                let (port, others) = (no_l1.proc.port, Arc::new(reqs.others.clone()));
                Arc::new(move |c: &reqwest::Client, i| {
                    c.get(format!(
                        "http://127.0.0.1:{port}{}",
                        others[i % others.len()]
                    ))
                })
            },
            200,
            (requests / 4).min(reqs.others.len() / 2),
        ),
        (
            "balance",
            "origin, GET /v1/me/balance (signed in)",
            &full,
            {
                let port = full.proc.port;
                Arc::new(move |c: &reqwest::Client, _| {
                    c.get(format!("http://127.0.0.1:{port}/v1/me/balance"))
                        .bearer_auth(&token)
                })
            },
            200,
            requests,
        ),
    ];
    let mut rows = Vec::new();
    for (key, label, server, make, status, n) in scenarios {
        // Warm-up (the cold scenario's on keys it will not measure), then the counted run.
        let warm = 200.min(n);
        let offset = if key == "cold_miss" { n } else { 0 };
        drive(&make, warm, offset, status).await?;
        let per = server
            .measure(n, || async { drive(&make, n, 0, status).await })
            .await?;
        rows.push(Row {
            key: key.into(),
            label: label.into(),
            requests: n,
            instructions_per_request: per,
            ratio: 0.0,
        });
    }
    let ceiling_per = rows[0].instructions_per_request;
    for r in &mut rows {
        r.ratio = r.instructions_per_request / ceiling_per;
    }
    drop((full, no_l1, ceiling, redis_get));
    for p in [full_p, no_l1_p] {
        let _ = crate::setup::delete_prefix(&env.redis, &p).await;
    }
    Ok(rows)
}

/// A bench user registered (if new) and signed in on the origin at `port`: its token.
pub(crate) async fn sign_in(
    client: &reqwest::Client,
    port: u16,
    email: &str,
) -> anyhow::Result<String> {
    let creds = serde_json::json!({
        "email": email,
        "password": "bench password 0123",
    });
    client
        .post(format!("http://127.0.0.1:{port}/v1/auth/register"))
        .json(&creds)
        .send()
        .await?;
    let login: serde_json::Value = client
        .post(format!("http://127.0.0.1:{port}/v1/auth/login"))
        .json(&creds)
        .send()
        .await?
        .json()
        .await?;
    Ok(login["token"]
        .as_str()
        .context("no token from sign-in")?
        .to_owned())
}

/// The table, as `make bench` and `make bench-instructions` print it.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| scenario | requests | instructions / request | x ceiling |\n|---|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} |\n",
            r.label, r.requests, r.instructions_per_request, r.ratio
        ));
    }
    s
}

/// Compares `rows` with the figures in `gate`: every gated scenario more than the tolerance
/// above its figure is an error naming it. A figure well below is reported, not refused: the
/// change that made it cheaper should lower the figure in the same commit.
pub fn check(rows: &[Row], path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let gate: Gate = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a gate file", path.display()))?;
    let (mut over, mut notes) = (Vec::new(), Vec::new());
    for (key, figure) in &gate.figures {
        let row = rows
            .iter()
            .find(|r| &r.key == key)
            .with_context(|| format!("the gate names {key}, which this run did not measure"))?;
        let change = (row.instructions_per_request / figure - 1.0) * 100.0;
        let line = format!(
            "{key}: {:.0} instructions/request against {figure:.0} checked in ({change:+.2} %)",
            row.instructions_per_request
        );
        if change > gate.tolerance_pct {
            over.push(line);
        } else if change < -gate.tolerance_pct {
            notes.push(format!(
                "{line}: cheaper; lower the figure in {}",
                path.display()
            ));
        } else {
            notes.push(line);
        }
    }
    if !over.is_empty() {
        bail!(
            "instructions per request rose more than {} % ({}):\n{}",
            gate.tolerance_pct,
            path.display(),
            over.join("\n")
        );
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, per: f64) -> Row {
        Row {
            key: key.into(),
            label: key.into(),
            requests: 1,
            instructions_per_request: per,
            ratio: 1.0,
        }
    }

    fn gate(figures: &str) -> tempfile_path::Path {
        tempfile_path::Path::with(&format!(
            r#"{{"tolerance_pct": 3.0, "figures": {figures}}}"#
        ))
    }

    /// A file of its own under the system's temporary directory, removed on drop.
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);
        impl Path {
            pub fn with(text: &str) -> Path {
                let p = std::env::temp_dir().join(format!("gate-{}.json", uuid::Uuid::new_v4()));
                std::fs::write(&p, text).unwrap();
                Path(p)
            }
        }
        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn the_gate_refuses_a_rise_past_its_tolerance_and_names_the_scenario() {
        let rows = [row("warm_hit", 1040.0), row("l1_off", 5000.0)];
        let within = gate(r#"{"warm_hit": 1010}"#);
        assert!(check(&rows, &within.0).is_ok(), "+2.97 % is within 3 %");
        let past = gate(r#"{"warm_hit": 1000}"#);
        let err = check(&rows, &past.0).unwrap_err().to_string();
        assert!(
            err.contains("warm_hit: 1040") && err.contains("+4.00 %"),
            "{err}"
        );
        let cheaper = gate(r#"{"warm_hit": 1200}"#);
        let notes = check(&rows, &cheaper.0).unwrap();
        assert!(notes[0].contains("cheaper; lower the figure"), "{notes:?}");
        let unknown = gate(r#"{"no_such": 1}"#);
        assert!(
            check(&rows, &unknown.0).is_err(),
            "a gated scenario the run lacks is an error"
        );
    }

    /// The gate CI runs with (`bench/instructions.json`) read here too, without valgrind (#33
    /// item 15): it parses, names only scenarios `make bench-instructions` measures, and a run
    /// at exactly its figures passes it.
    #[test]
    fn the_shipped_gate_file_is_one_the_gate_reads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("instructions.json");
        let gate: Gate = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            (0.5..=10.0).contains(&gate.tolerance_pct),
            "{}",
            gate.tolerance_pct
        );
        let measured = [
            "ceiling",
            "redis_get",
            "warm_hit",
            "not_modified",
            "bulk_20",
            "l1_off",
            "cold_miss",
            "balance",
        ];
        let source = include_str!("instructions.rs");
        for key in gate.figures.keys() {
            assert!(measured.contains(&key.as_str()), "the gate names {key}");
            assert!(
                source.contains(&format!("\"{key}\",\n")),
                "{key} is not a scenario here"
            );
        }
        let rows: Vec<Row> = gate.figures.iter().map(|(k, v)| row(k, *v)).collect();
        assert!(check(&rows, &path).is_ok());
    }
}
