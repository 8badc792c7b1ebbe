//! Set-up: the environment the bench needs, the seeded catalogs, the request paths, and the
//! servers (every origin variant through one launcher, the ceiling, the workers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::procs::{self, Proc, spare_port, start};

/// What the bench takes from its environment (`make bench` sets it up).
pub struct BenchEnv {
    pub admin: String,
    pub redis: String,
    /// A Redis Cluster (`REDIS_CLUSTER_URL`, as `make bench` starts one): the third back end.
    pub redis_cluster: Option<String>,
    /// The TLS-only back ends of `scripts/tls-services.sh`: what TLS costs.
    pub tls: Option<TlsBackEnds>,
    pub bin: PathBuf,
}

/// A PostgreSQL that takes only `hostssl` + SCRAM and a TLS-only Redis with an ACL user
/// (`TLS_PG_ADMIN_URL`, `TLS_REDIS_URL`, `TLS_CERTS_DIR`, as `make bench` exports them).
pub struct TlsBackEnds {
    pub admin: String,
    pub redis: String,
    pub certs: PathBuf,
}

impl TlsBackEnds {
    pub fn ca(&self) -> String {
        self.certs.join("ca.pem").display().to_string()
    }
}

/// The CA `rediss://` URLs are verified against when the bench itself talks to Redis.
static REDIS_CA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl BenchEnv {
    pub fn from_environment() -> anyhow::Result<BenchEnv> {
        let admin = plaintext(
            &std::env::var("PG_ADMIN_URL")
                .context("PG_ADMIN_URL is not set (run through make bench)")?,
        );
        let redis =
            std::env::var("REDIS_URL").context("REDIS_URL is not set (run through make bench)")?;
        // `ORIGIN_BIN`: another build's binary, to measure two builds with the same bench.
        let bin = PathBuf::from(
            std::env::var("ORIGIN_BIN").unwrap_or_else(|_| "target/release/origin".to_owned()),
        );
        procs::exists(
            &bin,
            "make bench builds it (cargo build --release -p origin)",
        )?;
        let redis_cluster = std::env::var("REDIS_CLUSTER_URL").ok();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tls = match (
            var("TLS_PG_ADMIN_URL"),
            var("TLS_REDIS_URL"),
            var("TLS_CERTS_DIR"),
        ) {
            (Some(admin), Some(redis), Some(certs)) => Some(TlsBackEnds {
                admin,
                redis,
                certs: certs.into(),
            }),
            _ => None,
        };
        if let Some(t) = &tls {
            let _ = REDIS_CA.set(t.ca());
        }
        Ok(BenchEnv {
            admin,
            redis,
            redis_cluster,
            tls,
            bin,
        })
    }

    /// Starts `origin serve` on `db` with its own key prefix and `extra` settings. The bench is
    /// one client address: the API tier is lifted so it measures the limiter's cost, not its
    /// refusals (leases then last a whole bucket).
    pub async fn origin(
        &self,
        name: &str,
        db: &str,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        self.origin_with(None, name, db, prefix, extra).await
    }

    /// As [`BenchEnv::origin`], run by `wrapper` (e.g. valgrind) when given.
    pub async fn origin_with(
        &self,
        wrapper: Option<Command>,
        name: &str,
        db: &str,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let (port, ops_port) = (spare_port()?, spare_port()?);
        let mut cmd = match wrapper {
            Some(mut w) => {
                w.arg(&self.bin);
                w
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("serve")
            .env("DATABASE_URL", db)
            .env("REDIS_URL", &self.redis)
            .env("ORIGIN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{ops_port}"))
            .env("REDIS_KEY_PREFIX", prefix)
            .env("RATE_LIMITS", "api=1000000000/60000,auth=1000000000/60000")
            .env("REGISTRATIONS_PER_HOUR", "1000000")
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut proc = start(name, cmd, port, "/healthz").await?;
        proc.ops_port = ops_port;
        Ok(proc)
    }
}

/// The two catalogs: the large one seeded fresh (timed), the 10k one idempotently; and the
/// large one again on the TLS PostgreSQL.
pub struct Catalogs {
    pub large: String,
    pub small: String,
    pub large_seed_secs: f64,
    pub tls_large: Option<String>,
}

pub async fn seed_catalogs(env: &BenchEnv) -> anyhow::Result<Catalogs> {
    let large = db_url(&env.admin, "nexnum_bench_large");
    let small = db_url(&env.admin, "nexnum_bench_10k");
    {
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&env.admin).await?;
        sqlx::query("DROP DATABASE IF EXISTS nexnum_bench_large WITH (FORCE)")
            .execute(&mut conn)
            .await?;
    }
    let started = std::time::Instant::now();
    seed(env, &large, "large")?;
    let large_seed_secs = started.elapsed().as_secs_f64();
    seed(env, &small, "10k")?;
    let tls_large = match &env.tls {
        Some(tls) => {
            let url = db_url(&tls.admin, "nexnum_bench_large");
            let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&tls.admin).await?;
            sqlx::query("DROP DATABASE IF EXISTS nexnum_bench_large WITH (FORCE)")
                .execute(&mut conn)
                .await?;
            seed(env, &url, "large")?;
            Some(url)
        }
        None => None,
    };
    Ok(Catalogs {
        large,
        small,
        large_seed_secs,
        tls_large,
    })
}

pub fn seed(env: &BenchEnv, db: &str, scale: &str) -> anyhow::Result<()> {
    let seeded = Command::new(&env.bin)
        .args(["seed", "--scale", scale])
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .output()?;
    if !seeded.status.success() {
        bail!(
            "seeding the {scale} catalog failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
    }
    println!("{}", String::from_utf8_lossy(&seeded.stdout).trim());
    Ok(())
}

/// The requests: one price present in both catalogs, 100 services of one country (as one bulk
/// request and as 100 single ones), and 60 000 distinct cold price paths.
pub struct Paths {
    pub price: String,
    pub bulk: String,
    pub singles_file: PathBuf,
    pub cold_file: PathBuf,
    /// The last cold product, kept out of the cold scenario's reach for the stampede.
    pub stampede_key: (String, String, String),
    pub large_pool: sqlx::PgPool,
}

impl Paths {
    pub async fn build(catalogs: &Catalogs, tmp: &Path) -> anyhow::Result<Paths> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&catalogs.small)
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
            .connect(&catalogs.large)
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

        let stampede_key = cold.last().cloned().context("no cold paths")?;
        Ok(Paths {
            price: price_path,
            bulk: bulk_path,
            singles_file,
            cold_file,
            stampede_key,
            large_pool,
        })
    }
}

/// Every server of the run. Each origin has its own key prefix on the shared Redis (the two
/// stampede origins share one: they are replicas of one deployment).
pub struct Servers {
    pub full: Proc,
    pub no_l1: Proc,
    pub no_metrics: Proc,
    pub no_limiter: Proc,
    pub small_catalog: Proc,
    /// The full path again, for the large services lists: their 29 KB bodies would otherwise
    /// raise the warm-hit origin's memory high-water mark, which a target reads.
    pub lists: Proc,
    pub stampede: [Proc; 2],
    pub ceiling: Proc,
    /// Baseline: the ceiling's answer with its body read by one Redis `GET` per request.
    pub redis_get: Proc,
    /// The edge worker and a static JS worker, unless `--skip-edge`.
    pub edges: Vec<Proc>,
    pub accounts: Accounts,
    /// Through PgBouncer in transaction mode (when `PGBOUNCER_URL` is set): an origin sharing
    /// `full`'s Redis namespace (its sessions) and an L1-off one with its own, for cold misses.
    pub bouncer: Option<(Proc, Proc)>,
    /// On a Redis Cluster (when `REDIS_CLUSTER_URL` is set): the full path, an L1-off one for
    /// cold misses, and the bench users signed in there.
    pub cluster: Option<ClusterServers>,
    /// Over TLS to PostgreSQL and Redis (when `make bench` started the TLS back ends).
    pub tls: Option<TlsServers>,
    /// (Redis URL, prefix) of every namespace the run wrote.
    pub prefixes: Vec<(String, String)>,
    redis: String,
    no_l1_prefix: String,
    bouncer_cold_prefix: String,
}

/// The same origin over TLS to both: the full path, an L1-off one (Redis on every read) that
/// the cold scenario also uses, and the bench users signed in there.
pub struct TlsServers {
    pub redis: String,
    pub full: Proc,
    pub no_l1: Proc,
    pub no_l1_prefix: String,
    pub tokens: PathBuf,
}

pub struct ClusterServers {
    pub url: String,
    pub full: Proc,
    pub cold: Proc,
    pub cold_prefix: String,
    pub tokens: PathBuf,
}

impl Servers {
    pub async fn start(
        env: &BenchEnv,
        catalogs: &Catalogs,
        paths: &Paths,
        tmp: &Path,
        skip_edge: bool,
    ) -> anyhow::Result<Servers> {
        let mut prefixes = Vec::new();
        let mut prefix = |name: &str| {
            let p = format!("bench:{name}:{}:", uuid::Uuid::new_v4().simple());
            prefixes.push((env.redis.clone(), p.clone()));
            p
        };
        let large = catalogs.large.as_str();
        let full_prefix = prefix("a");
        let full = env
            .origin("origin (full path)", large, &full_prefix, &[])
            .await?;
        let no_l1_prefix = prefix("b");
        let no_l1 = env
            .origin(
                "origin (L1 off)",
                large,
                &no_l1_prefix,
                &[("L1_CACHE", "off")],
            )
            .await?;
        let no_metrics = env
            .origin(
                "origin (metrics off)",
                large,
                &prefix("m"),
                &[("METRICS", "off")],
            )
            .await?;
        let no_limiter = env
            .origin(
                "origin (rate limiter off)",
                large,
                &prefix("n"),
                &[("RATE_LIMIT", "off")],
            )
            .await?;
        let lists = env
            .origin("origin (services lists)", large, &prefix("l"), &[])
            .await?;
        let small_catalog = env
            .origin("origin (10k catalog)", &catalogs.small, &prefix("t"), &[])
            .await?;
        let bouncer_cold_prefix = prefix("c");
        let bouncer = match std::env::var("PGBOUNCER_URL") {
            Ok(url) => {
                let db = db_url(&plaintext(&url), "nexnum_bench_large");
                let pooled = [("DB_POOLER", "pgbouncer-transaction")];
                let cold_env = [pooled[0], ("L1_CACHE", "off")];
                Some((
                    env.origin("origin (PgBouncer)", &db, &full_prefix, &pooled)
                        .await?,
                    env.origin(
                        "origin (PgBouncer, L1 off)",
                        &db,
                        &bouncer_cold_prefix,
                        &cold_env,
                    )
                    .await?,
                ))
            }
            Err(_) => None,
        };
        let cluster = match &env.redis_cluster {
            Some(url) => {
                let (full_p, cold_p) = (prefix("k"), prefix("kc"));
                let on_cluster = [("REDIS_URL", url.as_str())];
                let cold_env = [on_cluster[0], ("L1_CACHE", "off")];
                Some(ClusterServers {
                    url: url.clone(),
                    full: env
                        .origin("origin (Redis Cluster)", large, &full_p, &on_cluster)
                        .await?,
                    cold: env
                        .origin("origin (Redis Cluster, L1 off)", large, &cold_p, &cold_env)
                        .await?,
                    cold_prefix: cold_p,
                    tokens: tmp.join("tokens-cluster.txt"),
                })
            }
            None => None,
        };
        let mut tls_prefixes = Vec::new();
        let tls = match (&env.tls, &catalogs.tls_large) {
            (Some(t), Some(db)) => {
                let ca = t.ca();
                let on_tls = [
                    ("REDIS_URL", t.redis.as_str()),
                    ("REDIS_CA_FILE", ca.as_str()),
                ];
                let no_l1_env = [on_tls[0], on_tls[1], ("L1_CACHE", "off")];
                let fresh = |name: &str| format!("bench:{name}:{}:", uuid::Uuid::new_v4().simple());
                let (full_p, no_l1_p) = (fresh("x"), fresh("xc"));
                let full = env
                    .origin("origin (TLS to both)", db, &full_p, &on_tls)
                    .await?;
                let no_l1 = env
                    .origin("origin (TLS to both, L1 off)", db, &no_l1_p, &no_l1_env)
                    .await?;
                tls_prefixes.push((t.redis.clone(), full_p));
                tls_prefixes.push((t.redis.clone(), no_l1_p.clone()));
                Some((full, no_l1, no_l1_p, db.clone()))
            }
            _ => None,
        };
        let shared_prefix = prefix("s");
        let stampede = [
            env.origin("stampede origin 1", large, &shared_prefix, &[])
                .await?,
            env.origin("stampede origin 2", large, &shared_prefix, &[])
                .await?,
        ];
        let client = reqwest::Client::new();
        let accounts = accounts_setup(&client, &full, &paths.large_pool, tmp).await?;
        if let Some(c) = &cluster {
            // The same users, signed in where their sessions live on the cluster.
            let tokens = sign_in_all(&client, &c.full).await?;
            std::fs::write(&c.tokens, tokens)?;
        }
        let tls = match (tls, &env.tls) {
            (Some((full, no_l1, no_l1_prefix, db)), Some(t)) => {
                // The bench users, funds and numbers in the TLS database too.
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&db)
                    .await?;
                let dir = tmp.join("tls");
                std::fs::create_dir_all(&dir)?;
                let accounts = accounts_setup(&client, &full, &pool, &dir).await?;
                Some(TlsServers {
                    redis: t.redis.clone(),
                    full,
                    no_l1,
                    no_l1_prefix,
                    tokens: accounts.tokens_a,
                })
            }
            _ => None,
        };
        let hit = warm_hit(&client, &full, &paths.price, tmp).await?;
        let ceiling = ceiling(&hit).await?;
        let redis_get =
            redis_baseline(&hit, &env.redis, &format!("{}body", prefix("redis_get"))).await?;
        let edges = if skip_edge {
            Vec::new()
        } else {
            workers(&full, &hit.body, &tmp.join(EDGE_ACCESS_LOG)).await?
        };
        prefixes.extend(tls_prefixes);
        Ok(Servers {
            full,
            no_l1,
            no_metrics,
            no_limiter,
            small_catalog,
            lists,
            stampede,
            ceiling,
            redis_get,
            edges,
            accounts,
            bouncer,
            cluster,
            tls,
            prefixes,
            redis: env.redis.clone(),
            no_l1_prefix,
            bouncer_cold_prefix,
        })
    }

    /// The key prefix of the L1-off origin (its keys are dropped between reps of
    /// the cold scenario).
    pub fn no_l1_prefix(&self) -> &str {
        &self.no_l1_prefix
    }

    /// The same for the L1-off origin behind PgBouncer.
    pub fn bouncer_cold_prefix(&self) -> &str {
        &self.bouncer_cold_prefix
    }

    /// A fresh key prefix on the shared Redis for a server started later (cleaned up with the
    /// rest).
    pub fn extra_prefix(&mut self, name: &str) -> String {
        let p = format!("bench:{name}:{}:", uuid::Uuid::new_v4().simple());
        self.prefixes.push((self.redis.clone(), p.clone()));
        p
    }

    /// Deletes every key the run wrote.
    pub async fn clean(&self) {
        for (redis, p) in &self.prefixes {
            let _ = delete_prefix(redis, p).await;
        }
    }
}

/// A warm hit of the full path, as the baselines answer it.
/// A warm hit's body (also written to `body_file`) and validators, which the baselines answer
/// with.
pub(crate) struct WarmHit {
    pub(crate) body: bytes::Bytes,
    pub(crate) body_file: PathBuf,
    pub(crate) etag: String,
    pub(crate) cache_control: String,
}

pub(crate) async fn warm_hit(
    client: &reqwest::Client,
    full: &Proc,
    price_path: &str,
    tmp: &Path,
) -> anyhow::Result<WarmHit> {
    let warm = client
        .get(format!("http://127.0.0.1:{}{price_path}", full.port))
        .send()
        .await?;
    anyhow::ensure!(
        warm.status().is_success(),
        "the price path: {}",
        warm.status()
    );
    let header = |name: &str| {
        warm.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (etag, cache_control) = (header("etag"), header("cache-control"));
    let body = warm.bytes().await?;
    let body_file = tmp.join("body.json");
    std::fs::write(&body_file, &body)?;
    Ok(WarmHit {
        body,
        body_file,
        etag,
        cache_control,
    })
}

/// The ceiling: a static Axum server answering with the bytes and headers of a warm hit.
async fn ceiling(hit: &WarmHit) -> anyhow::Result<Proc> {
    let port = spare_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["ceiling", "--port", &port.to_string(), "--body"])
        .arg(&hit.body_file)
        .args(["--etag", &hit.etag, "--cache-control", &hit.cache_control]);
    start("ceiling", cmd, port, "/").await
}

/// The Redis baseline: the same answer, its body read by one `GET` of `key` per request (the
/// key is written here, under a prefix the run cleans up).
async fn redis_baseline(hit: &WarmHit, redis: &str, key: &str) -> anyhow::Result<Proc> {
    let mut conn = redis::Client::open(redis)?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(hit.body.as_ref())
        .query_async(&mut conn)
        .await?;
    let port = spare_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["redis-get", "--port", &port.to_string(), "--redis", redis])
        .args(["--key", key])
        .args(["--etag", &hit.etag, "--cache-control", &hit.cache_control]);
    start("redis_get", cmd, port, "/").await
}

/// Where the edge worker's log lines go during the bench (in its `tmp` directory).
pub const EDGE_ACCESS_LOG: &str = "edge-access.log";

/// The edge worker in front of `origin` (its log lines to `log`), and a static JS worker
/// answering `body`.
async fn workers(origin: &Proc, body: &[u8], log: &Path) -> anyhow::Result<Vec<Proc>> {
    procs::require("node", "install Node.js 20+")?;
    procs::exists(
        Path::new("edge/build/worker/shim.mjs"),
        "make bench builds it (scripts/build-edge.sh)",
    )?;
    let vars = serde_json::json!({
        "EDGE_ENV": "local",
        "ORIGIN_URL": format!("http://127.0.0.1:{}", origin.port),
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "RATE_LIMIT_BURST": "1000000000",
        "EDGE_INSECURE_DEV": "true",
    });
    // Each worker also on its own socket, so the worker is measured and not Miniflare's proxy;
    // the 20-line JS worker answering from `caches.default` is the edge HIT's baseline there.
    let worker = |name: &'static str, env: Vec<(&'static str, String)>| async move {
        let (port, direct) = (spare_port()?, spare_port()?);
        let mut cmd = Command::new("node");
        cmd.arg("tests/edge/serve.mjs")
            .env("EDGE_PORT", port.to_string())
            .env("EDGE_DIRECT_PORT", direct.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = start(name, cmd, port, "/healthz").await?;
        proc.direct_port = direct;
        anyhow::Ok(proc)
    };
    let origin_url = format!("http://127.0.0.1:{}", origin.port);
    // The worker logs one line per request; workerd writes them to a file rather than through
    // Miniflare's Node process (which would re-read and print each, a relay costing about as
    // much CPU as the request itself, and one no deployed worker has). Counted after the run.
    std::fs::write(log, "")?;
    let edge = worker(
        "edge worker (workerd)",
        vec![
            ("EDGE_VARS", vars.to_string()),
            ("EDGE_LOG_FILE", log.display().to_string()),
        ],
    )
    .await?;
    let static_body = String::from_utf8_lossy(body).into_owned();
    let static_worker = worker(
        "static worker (workerd)",
        vec![("EDGE_STATIC_BODY", static_body)],
    )
    .await?;
    let js_cache = worker(
        "JS Cache API worker (workerd)",
        vec![("EDGE_JS_CACHE_ORIGIN", origin_url)],
    )
    .await?;
    Ok(vec![edge, static_worker, js_cache])
}

/// The first request to a freshly started edge worker (its isolate compiles and instantiates
/// the wasm module, then misses to the origin), and the second (a hit), on the worker socket.
pub async fn edge_cold_start(origin: &Proc, path: &str) -> anyhow::Result<serde_json::Value> {
    let vars = serde_json::json!({
        "EDGE_ENV": "local",
        "ORIGIN_URL": format!("http://127.0.0.1:{}", origin.port),
        "EDGE_INSECURE_DEV": "true",
    });
    let (port, direct) = (spare_port()?, spare_port()?);
    let mut cmd = Command::new("node");
    cmd.arg("tests/edge/serve.mjs")
        .env("EDGE_PORT", port.to_string())
        .env("EDGE_DIRECT_PORT", direct.to_string())
        .env("EDGE_VARS", vars.to_string());
    let proc = procs::start_listening("edge worker (cold start)", cmd, direct).await?;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{direct}{path}");
    let mut times = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let r = client.get(&url).send().await?;
        let status = r.status();
        r.bytes().await?;
        if !status.is_success() {
            bail!("edge cold start: {status}");
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    drop(proc);
    Ok(serde_json::json!({"first_ms": times[0], "second_ms": times[1]}))
}

/// Bytes of `path` gzipped at the highest level (the wasm module's transfer size).
pub fn gzip_len(path: &Path) -> anyhow::Result<usize> {
    let out = Command::new("gzip")
        .args(["-9c"])
        .arg(path)
        .output()
        .with_context(|| format!("gzip {}", path.display()))?;
    Ok(out.stdout.len())
}

/// `url` with `sslmode=disable` unless it names a mode: the plaintext baseline must be
/// plaintext, and libpq's default (`prefer`) takes the TLS this machine's PostgreSQL offers.
pub fn plaintext(url: &str) -> String {
    if url.contains("sslmode=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=disable")
}

/// `admin` with its database replaced by `name` (its query, TLS parameters included, kept).
pub fn db_url(admin: &str, name: &str) -> String {
    let (url, query) = match admin.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (admin, String::new()),
    };
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/{name}{query}")
}

pub async fn delete_prefix(redis: &str, prefix: &str) -> anyhow::Result<()> {
    // The origin's own Redis module: SCAN + UNLINK on one server or on every cluster master.
    let tls = origin::config::RedisTls::for_url(redis, |k| match k {
        "REDIS_CA_FILE" if redis.starts_with("rediss") => REDIS_CA.get().cloned(),
        _ => None,
    })?;
    let redis = origin::redis::Redis::connect_lazy(redis, &tls, prefix, Duration::from_secs(5))?;
    redis.delete_matching("*").await?;
    Ok(())
}

pub struct Accounts {
    /// Bearer tokens of the 32 bench users on origin A (one per line).
    pub tokens_a: PathBuf,
    /// The first bench user's id (its balance is read on origin B).
    pub user_b: i64,
    /// Purchase bodies spread over every provider and country (number pools are per pair).
    pub bodies: PathBuf,
}

const BENCH_USERS: usize = 32;

fn bench_user(i: usize) -> serde_json::Value {
    serde_json::json!({"email": format!("bench-{i}@example.com"), "password": "bench password 0123"})
}

/// Signs every bench user in on `origin`: their bearer tokens, one per line.
async fn sign_in_all(client: &reqwest::Client, origin: &Proc) -> anyhow::Result<String> {
    let mut tokens = String::new();
    for i in 0..BENCH_USERS {
        let login: serde_json::Value = client
            .post(format!("http://127.0.0.1:{}/v1/auth/login", origin.port))
            .json(&bench_user(i))
            .send()
            .await?
            .json()
            .await?;
        tokens.push_str(login["token"].as_str().context("login token")?);
        tokens.push('\n');
    }
    Ok(tokens)
}

/// 32 funded users signed in on A, and purchase bodies for them.
async fn accounts_setup(
    client: &reqwest::Client,
    a: &Proc,
    pool: &sqlx::PgPool,
    tmp: &Path,
) -> anyhow::Result<Accounts> {
    for i in 0..BENCH_USERS {
        let r = client
            .post(format!("http://127.0.0.1:{}/v1/auth/register", a.port))
            .json(&bench_user(i))
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            bail!("registering a bench user: {}", r.status());
        }
    }
    let tokens = sign_in_all(client, a).await?;
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
    // Numbers for every purchase the scenario can make (≈ 6 000/s × 4 s × 4 runs): without
    // them the pools drain mid-run and purchases become 409s the bench would count as figures.
    sqlx::query(
        "INSERT INTO numbers (provider_id, country_id, phone_number)
         SELECT pr.id, co.id, format('+888%s%s%s', lpad(pr.id::text, 2, '0'),
                                     lpad(co.id::text, 3, '0'), lpad(i::text, 5, '0'))
           FROM providers pr, countries co, generate_series(1, 150) AS i
         ON CONFLICT (phone_number) DO NOTHING",
    )
    .execute(pool)
    .await?;
    // Fresh statistics, or the planner may scan the grown pools on every purchase.
    sqlx::query("ANALYZE numbers").execute(pool).await?;
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
