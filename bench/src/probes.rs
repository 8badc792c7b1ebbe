//! Probes that are not wrk runs: the fleet stampede on one cold key, and balance latency one
//! request at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procs::Proc;
use crate::report::percentile;
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
