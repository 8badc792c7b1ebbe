//! Probes that are not wrk runs: the fleet stampede on one cold key, and balance latency one
//! request at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procs::Proc;
use crate::results::percentile;
use crate::setup::Accounts;

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

pub async fn stampede(
    client: &reqwest::Client,
    s1: &Proc,
    s2: &Proc,
    key: &(String, String, String),
) -> anyhow::Result<serde_json::Value> {
    let path = format!("/v1/catalog/{}/prices/{}/{}", key.0, key.1, key.2);
    let series = "db_queries_total{query=\"prices\"}";
    let before =
        scrape(client, s1.ops_port, series).await + scrape(client, s2.ops_port, series).await;
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
    let after =
        scrape(client, s1.ops_port, series).await + scrape(client, s2.ops_port, series).await;
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

/// p50/p99 of single `GET /v1/me/balance` requests on origin B (L1 off): warm (a
/// Redis hit) and cold (the balance key deleted just before, so PostgreSQL answers).
pub async fn balance_latency(
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
    let key = format!("{prefix}{}", shared::keys::balance(acc.user_b));
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

/// Catalog hit latency (p50/p99 over 16 concurrent readers, 3 s) with nothing else running, and
/// again while 64 clients flood sign-ins with wrong passwords for made-up emails (each one an
/// argon2 verification): password hashing must not starve the catalog. Each flooding client
/// connects from its own loopback address (127.0.0.2 …): the origin holds one client to
/// `MAX_IN_FLIGHT_PER_CLIENT`, so a flood from the readers' own address would be refused as
/// theirs (429), which measures the per-client share, not the hashing's isolation.
pub async fn catalog_during_login_flood(
    origin: &Proc,
    price_path: &str,
) -> anyhow::Result<serde_json::Value> {
    let base = format!("http://127.0.0.1:{}", origin.port);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let idle = catalog_latencies(&client, &base, price_path).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..64u8)
        .map(|i| {
            let address = std::net::Ipv4Addr::new(127, 0, 0, 2 + i);
            let client = reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(address))
                .build();
            let (url, stop) = (format!("{base}/v1/auth/login"), stop.clone());
            tokio::spawn(async move {
                let client = client?;
                let (mut answered, mut shed) = (0u64, 0u64);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let creds = serde_json::json!({
                        "email": format!("flood-{i}-{n}@example.com"),
                        "password": "not the password at all",
                    });
                    match client
                        .post(&url)
                        .json(&creds)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                    {
                        Ok(401) => answered += 1,
                        Ok(503) => shed += 1,
                        _ => {}
                    }
                }
                anyhow::Ok((answered, shed))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = catalog_latencies(&client, &base, price_path).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answered, mut shed) = (0, 0);
    for task in flood {
        let (a, s) = task.await??;
        answered += a;
        shed += s;
    }
    Ok(serde_json::json!({
        "idle_p50_ms": percentile(&idle, 0.5),
        "idle_p99_ms": percentile(&idle, 0.99),
        "flood_p50_ms": percentile(&flooded, 0.5),
        "flood_p99_ms": percentile(&flooded, 0.99),
        "logins_refused_401": answered,
        "logins_shed_503": shed,
    }))
}

/// Sorted latencies (ms) of catalog hits from 16 concurrent readers for 3 s; every one a 200.
async fn catalog_latencies(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<Vec<f64>> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = tokio::spawn(catalog_reads(
        client.clone(),
        base.to_owned(),
        path.to_owned(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    readers.await?
}

/// Sorted latencies (ms) of catalog hits from 16 concurrent readers until `stop`; every one a
/// 200.
pub async fn catalog_reads(
    client: reqwest::Client,
    base: String,
    path: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Vec<f64>> {
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, stop) = (client.clone(), format!("{base}{path}"), stop.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client.get(&url).send().await?;
                    if !r.status().is_success() {
                        bail!("catalog read failed: {}", r.status());
                    }
                    r.bytes().await?;
                    out.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// Calls of `command` the Redis at `url` has served (`INFO commandstats`).
pub async fn redis_calls(url: &str, command: &str) -> anyhow::Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    let needle = format!("cmdstat_{command}:calls=");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0))
}

/// Refresh ahead under a steady load: `clients` clients read `paths` (hot price keys) for `secs`
/// on an origin whose price TTL is shortened to `ttl_secs`, so the run crosses dozens of TTL
/// boundaries. Reported per TTL-long window after a warm-up of two TTLs: p99 and max latency (flat
/// when no request pays for an expiry), the requests that waited on a database load after the
/// warm-up (`cache_requests_total` miss/coalesced/error; the goal is 0), and the refreshes.
pub async fn refresh_ahead(
    origin: &Proc,
    paths: &[String],
    ttl_secs: u64,
    secs: u64,
) -> anyhow::Result<serde_json::Value> {
    let clients = 16;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let base = format!("http://127.0.0.1:{}", origin.port);
    for p in paths {
        client.get(format!("{base}{p}")).send().await?;
    }
    let waited = |client: reqwest::Client| async move {
        let mut sum = 0.0;
        for result in ["miss", "coalesced", "error"] {
            let series = format!("cache_requests_total{{type=\"prices\",result=\"{result}\"}}");
            sum += scrape(&client, origin.ops_port, &series).await;
        }
        sum
    };
    let started = Instant::now();
    let warmup = Duration::from_secs(2 * ttl_secs);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            let paths = paths.to_vec();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = i;
                while started.elapsed() < Duration::from_secs(secs) {
                    let t = Instant::now();
                    let at = started.elapsed();
                    let url = format!("{base}{}", paths[n % paths.len()]);
                    let ok = client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    samples.push((at, t.elapsed(), ok));
                    n += 1;
                }
                samples
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let waited_at_warmup = waited(client.clone()).await;
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let waited_after = waited(client.clone()).await - waited_at_warmup;
    let refreshed = scrape(
        &client,
        origin.ops_port,
        "cache_refresh_total{type=\"prices\",outcome=\"refreshed\"}",
    )
    .await;
    let failures = samples.iter().filter(|(_, _, ok)| !ok).count();
    let window = Duration::from_secs(ttl_secs);
    let mut windows: Vec<Vec<f64>> = Vec::new();
    for (at, latency, _) in samples.iter().filter(|(at, ..)| *at >= warmup) {
        let w = ((*at - warmup).as_secs_f64() / window.as_secs_f64()) as usize;
        if windows.len() <= w {
            windows.resize(w + 1, Vec::new());
        }
        windows[w].push(latency.as_secs_f64() * 1000.0);
    }
    let stats: Vec<(f64, f64)> = windows
        .iter_mut()
        .filter(|w| w.len() > 100)
        .map(|w| {
            w.sort_by(f64::total_cmp);
            (percentile(w, 0.99), w.last().copied().unwrap_or(0.0))
        })
        .collect();
    let p99s: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let maxes: Vec<f64> = stats.iter().map(|s| s.1).collect();
    let fold = |v: &[f64], f: fn(f64, f64) -> f64, init| v.iter().copied().fold(init, f);
    let counted = samples.iter().filter(|(at, ..)| *at >= warmup).count();
    let mut sorted_max = maxes.clone();
    sorted_max.sort_by(f64::total_cmp);
    let max_ms_median = percentile(&sorted_max, 0.5);
    Ok(serde_json::json!({
        "secs": secs,
        "ttl_secs": ttl_secs,
        "hot_keys": paths.len(),
        "requests": counted,
        "failures": failures,
        "windows": stats.len(),
        "p99_ms_min": fold(&p99s, f64::min, f64::INFINITY),
        "p99_ms_max": fold(&p99s, f64::max, 0.0),
        "max_ms_median": max_ms_median,
        "max_ms_max": fold(&maxes, f64::max, 0.0),
        "waited_after_warmup": waited_after,
        "refreshed": refreshed,
    }))
}

/// Bytes on the wire for one body in each coding (the services list of the large catalog).
pub async fn compressed_sizes(origin: &Proc, path: &str) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let mut sizes = serde_json::Map::new();
    for coding in ["identity", "gzip", "br"] {
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", origin.port))
            .header("accept-encoding", coding)
            .send()
            .await?;
        let sent = r
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        if sent != coding {
            bail!("asked for {coding}, got {sent}");
        }
        sizes.insert(coding.into(), r.bytes().await?.len().into());
    }
    Ok(serde_json::Value::Object(sizes))
}

/// A Redis of the probe's own on `port`: plaintext, or TLS-only presenting the certificate set's
/// `server.pem`.
fn redis_server(port: u16, certs: Option<&std::path::Path>) -> anyhow::Result<std::process::Child> {
    let mut cmd = std::process::Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    match certs {
        None => {
            cmd.args(["--port", &port.to_string()]);
        }
        Some(dir) => {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("redis-server")?;
    Ok(child)
}

async fn accepting(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Redis restarted under a running origin (SIGKILL, then a new server on the same port), over
/// plaintext and over TLS: milliseconds from the new server accepting connections to the
/// origin's `/readyz` finding Redis again (its shared connection reconnected, TLS handshake
/// included), median of `restarts`.
pub async fn redis_reconnect(
    env: &crate::setup::BenchEnv,
    db: &str,
    restarts: usize,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let mut out = serde_json::json!({"restarts": restarts});
    let mut modes: Vec<(&str, Option<std::path::PathBuf>)> = vec![("plaintext_ms", None)];
    if let Some(t) = &env.tls {
        modes.push(("tls_ms", Some(t.certs.clone())));
    }
    for (key, certs) in modes {
        let port = crate::procs::spare_port()?;
        let mut server = redis_server(port, certs.as_deref())?;
        accepting(port).await?;
        let (url, ca) = match &certs {
            Some(dir) => (
                format!("rediss://localhost:{port}"),
                dir.join("ca.pem").display().to_string(),
            ),
            None => (format!("redis://127.0.0.1:{port}"), String::new()),
        };
        let mut extra = vec![("REDIS_URL", url.as_str()), ("L1_CACHE", "off")];
        if !ca.is_empty() {
            extra.push(("REDIS_CA_FILE", ca.as_str()));
        }
        let origin = env
            .origin("origin (Redis restarts)", db, "bench:reconnect:", &extra)
            .await?;
        let ready = |client: &reqwest::Client| {
            let url = format!("http://127.0.0.1:{}/readyz", origin.ops_port);
            let client = client.clone();
            async move {
                client
                    .get(url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        };
        let mut times = Vec::new();
        for _ in 0..restarts {
            while !ready(&client).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = server.kill();
            let _ = server.wait();
            // The origin sees it gone before the new one comes.
            while ready(&client).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server = redis_server(port, certs.as_deref())?;
            accepting(port).await?;
            let started = Instant::now();
            let deadline = started + Duration::from_secs(20);
            while !ready(&client).await {
                if Instant::now() > deadline {
                    bail!("the origin never found Redis again ({key})");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = server.kill();
        let _ = server.wait();
        times.sort_by(f64::total_cmp);
        out[key] = serde_json::json!(percentile(&times, 0.5));
    }
    Ok(out)
}
