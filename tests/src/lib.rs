//! Test harness for the end-to-end suites: real PostgreSQL, real Redis, the real origin on a
//! real port. Isolation without Docker:
//! - every [`TestDb`] is a fresh database on the server at `DATABASE_URL`, migrated and seeded,
//!   dropped when the test ends;
//! - every [`TestApp`] gets a unique `REDIS_KEY_PREFIX` on the shared Redis (never `FLUSHDB`),
//!   or a [`RedisServer`] of its own on a spare port when the test must stop Redis or count its
//!   commands. The shared Redis is `REDIS_URL`: one server, or a cluster (`redis+cluster://…`,
//!   as `make test`'s third pass sets it); [`TestApp::redis`] speaks to either.
//! - [`RedisCluster`] is a private cluster of the test's own, for failover tests.

pub mod edge;
pub mod pg;
pub mod process;
pub mod sink;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use origin::db::Db;
use origin::db::accounts::CreditOutcome;
use origin::seed::Scale;
use origin::state::AppState;
use origin::{Application, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// The PostgreSQL server tests create their databases on: `PG_ADMIN_URL` (as `make test` sets
/// it), else `DATABASE_URL`, else the local default.
pub fn admin_database_url() -> String {
    std::env::var("PG_ADMIN_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The shared Redis (`REDIS_URL`, as `make test` sets it).
pub fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |j| j + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Where the apps under test reach PostgreSQL: directly, or through the private PgBouncer in
/// transaction mode (`TEST_DB_BACKEND=pgbouncer`, as `make test`'s second pass sets it; the
/// database is created, migrated and seeded directly either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbBackend {
    Direct,
    PgBouncer,
}

pub fn db_backend() -> DbBackend {
    match std::env::var("TEST_DB_BACKEND").as_deref() {
        Ok("pgbouncer") => DbBackend::PgBouncer,
        _ => DbBackend::Direct,
    }
}

/// A fresh, migrated (and optionally seeded) database, dropped on `Drop`.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    name: String,
}

/// The `skip`-th seeded price in code order: (provider, country, service, price_cents, stock),
/// so tests never hard-code what the seed happens to produce.
pub async fn some_price(pool: &PgPool, skip: i64) -> (String, String, String, i64, i64) {
    sqlx::query_as(
        "SELECT pr.code, c.code, s.code, p.price_cents, p.stock
           FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          ORDER BY pr.code, c.code, s.code OFFSET $1 LIMIT 1",
    )
    .bind(skip)
    .fetch_one(pool)
    .await
    .expect("a seeded price")
}

/// The exact stock of a product (`{"provider", "country", "service"}`) in PostgreSQL: answers
/// show only its availability step.
pub async fn stock_of(pool: &PgPool, product: &Value) -> i64 {
    sqlx::query_scalar(
        "SELECT p.stock FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          WHERE pr.code = $1 AND c.code = $2 AND s.code = $3",
    )
    .bind(product["provider"].as_str().unwrap())
    .bind(product["country"].as_str().unwrap())
    .bind(product["service"].as_str().unwrap())
    .fetch_one(pool)
    .await
    .expect("the product's stock")
}

impl TestDb {
    pub async fn new(scale: Option<Scale>) -> TestDb {
        let name = format!("nexnum_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_database_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at DATABASE_URL ({admin}): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&admin, &name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&url)
            .await
            .expect("connect to test database");
        origin::MIGRATOR.run(&pool).await.expect("migrate");
        if let Some(scale) = scale {
            origin::seed::seed(&pool, scale).await.expect("seed");
        }
        // The apps under test connect as the serving role, granted as `origin grant` grants it
        // in a deployment: every query the suites make runs with those privileges only.
        let mut owner = pool.acquire().await.expect("owner connection");
        // Once per process: concurrent ALTER ROLEs of one role collide ("tuple concurrently
        // updated"), and the role belongs to the whole server anyway.
        static ROLE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        ROLE.get_or_init(|| async {
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin connection");
            origin::db::roles::ensure_role(&mut conn, SERVING_ROLE, Some(SERVING_PASSWORD))
                .await
                .expect("the serving role");
        })
        .await;
        origin::db::roles::grant_serving(&mut owner, SERVING_ROLE).await.expect("its grants");
        drop(owner);
        TestDb { url, pool, name }
    }

    /// This database as the serving role sees it (what the apps under test connect with).
    pub fn serving_url(&self) -> String {
        as_user(&self.url, SERVING_ROLE, SERVING_PASSWORD)
    }
}

/// The role the apps under test connect as (`origin::db::roles`), and its password.
pub const SERVING_ROLE: &str = "nexnum_serving_test";
pub const SERVING_PASSWORD: &str = "serving-role-test-password";

/// The serving user's Redis ACL rules as shipped (`ops/redis/serving.acl`, one per line).
pub fn serving_acl_rules() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/redis/serving.acl");
    std::fs::read_to_string(&path)
        .expect("ops/redis/serving.acl")
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A `REDIS_KEY_PREFIX` of a test's own, under the deployment's `nexnum:` (the serving user's
/// Redis ACL allows keys and channels under it only: ops/redis/serving.acl).
pub fn key_prefix() -> String {
    format!("nexnum:test:{}:", uuid::Uuid::new_v4().simple())
}

/// `url` with its user and password replaced.
pub fn as_user(url: &str, user: &str, password: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a database URL");
    parsed.set_username(user).expect("a user");
    parsed.set_password(Some(password)).expect("a password");
    parsed.to_string()
}

impl TestDb {
    /// What an origin process needs to reach this database the way the suite's back end says
    /// (through PgBouncer in transaction mode for that back end).
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("DATABASE_URL", self.app_url())];
        if db_backend() == DbBackend::PgBouncer {
            env.push(("DB_POOLER", "pgbouncer-transaction".to_owned()));
        }
        env
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL an app under test uses for this database: as the serving role, or through
    /// PgBouncer for that backend (whose user list holds the owner only).
    pub fn app_url(&self) -> String {
        match db_backend() {
            DbBackend::Direct => self.serving_url(),
            DbBackend::PgBouncer => {
                let bouncer = std::env::var("PGBOUNCER_URL")
                    .expect("TEST_DB_BACKEND=pgbouncer needs PGBOUNCER_URL (make test sets it)");
                with_database(&bouncer, &self.name)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database_blocking(self.name.clone());
    }
}

/// Drops database `name` (its connections forced closed) on the server tests use, from
/// anywhere: a short-lived runtime on its own thread does it, so this works in `Drop` and in an
/// async test alike. Failure only leaves a database behind.
pub fn drop_database_blocking(name: String) {
    let admin = admin_database_url();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join();
}

/// A free TCP port on loopback (bound then released).
///
/// Drawn from 20000–32767, below the kernel's ephemeral range (32768–60999): a port from there
/// could be handed to one of the thousands of outgoing connections a load test opens (or a
/// database connection) between the moment it is chosen and the moment a server binds it.
pub fn spare_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread tests of concurrent processes apart; step through the range from there.
    let seed = std::process::id().wrapping_mul(7919) % 12_000;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed + n.wrapping_mul(31)) % 12_768) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("spare port")
}

/// A private `redis-server` on a spare port, for tests that stop Redis or count its commands.
/// In a TLS run ([`tls::TlsEnv`]) it listens only for TLS, with the default user off, as the
/// shared one does.
pub struct RedisServer {
    pub port: u16,
    pub(crate) child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    tls: Option<tls::TlsEnv>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--maxmemory", "1mb"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_with_ports(|| extra.clone())
    }

    /// Starts on a spare port with the arguments `extra()` gives (asked again on every attempt,
    /// so arguments naming ports can pick fresh ones). A spare port is only free when chosen:
    /// another test may take it first, and then the server exits at once; it is tried again on
    /// another port, a few times.
    pub fn start_with_ports(extra: impl Fn() -> Vec<String>) -> RedisServer {
        Self::start_inner(tls::TlsEnv::from_env(), extra)
    }

    /// A plaintext server, whatever the run.
    pub fn start_plain() -> RedisServer {
        Self::start_inner(None, Vec::new)
    }

    /// A plaintext server with these extra arguments, whatever the run.
    pub fn start_plain_with(extra: &[String]) -> RedisServer {
        let extra = extra.to_vec();
        Self::start_inner(None, move || extra.clone())
    }

    /// A TLS-only server presenting `tls`'s `server.pem` (whatever the run), with its ACL user.
    pub fn start_tls(tls: tls::TlsEnv, extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_inner(Some(tls), || extra.clone())
    }

    fn start_inner(tls: Option<tls::TlsEnv>, extra: impl Fn() -> Vec<String>) -> RedisServer {
        for _ in 0..5 {
            let port = spare_port();
            let dir = std::env::temp_dir()
                .join(format!("nexnum-redis-{port}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("redis dir");
            let mut server =
                RedisServer { port, child: None, dir, extra: extra(), tls: tls.clone() };
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 spare ports");
    }

    pub fn url(&self) -> String {
        match &self.tls {
            Some(tls) => tls.redis_url(self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `redis-cli` arguments that reach this server (TLS and the ACL user in a TLS run).
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_owned(), self.port.to_string()];
        if let Some(tls) = &self.tls {
            args.extend(tls.redis_cli_args());
        }
        args
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) {
        assert!(self.try_start(), "redis-server did not start on {}", self.port);
    }

    /// Starts the server; false if it exited (its port was taken) or never answered.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let listen: Vec<String> = match &self.tls {
            Some(tls) => tls.redis_server_args(self.port),
            None => vec!["--port".into(), self.port.to_string()],
        };
        let child = Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever answered may be another test's server on a port ours failed to bind (ours then
        // exits at once): ours must still be running a moment later.
        std::thread::sleep(Duration::from_millis(50));
        if self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
            self.stop();
            return false;
        }
        true
    }

    /// Kills the server (SIGKILL: no goodbye to clients, like a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis_client(&self.url())
            .get_multiplexed_async_connection()
            .await
            .expect("connect private redis")
    }

    /// `calls` of one command from `INFO commandstats` (0 when never called).
    pub async fn command_calls(&self, command: &str) -> u64 {
        let mut conn = self.client().await;
        let info: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("INFO");
        commandstat_calls(&info, command)
    }
}

/// Calls of `command` in the text of `INFO commandstats`, 0 when it was never called.
pub fn commandstat_calls(info: &str, command: &str) -> u64 {
    let needle = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Redis Cluster on spare ports (`masters` masters, one replica each), for tests that
/// kill a master. `redis-cli --cluster create` assigns the slots; every node is a
/// [`RedisServer`], killed when the cluster is dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    tls: Option<tls::TlsEnv>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let tls = tls::TlsEnv::from_env();
        let nodes: Vec<RedisServer> = (0..masters * 2)
            .map(|_| {
                RedisServer::start_with_ports(|| {
                    let mut args: Vec<String> = [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        // Failover after 1 s without the master: short, so tests stay short.
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-port",
                        &spare_port().to_string(),
                    ]
                    .map(str::to_owned)
                    .to_vec();
                    if let Some(tls) = &tls {
                        // The bus and replication over TLS too; replicas sign in as the ACL user.
                        args.extend(
                            ["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_owned),
                        );
                        args.extend(["--masteruser".into(), tls::REDIS_USER.into()]);
                        args.extend(["--masterauth".into(), tls.password.clone()]);
                    }
                    args
                })
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let tls_args = tls.as_ref().map(|t| t.redis_cli_args()).unwrap_or_default();
        let out = Command::new("redis-cli")
            .args(&tls_args)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (Debian package redis-tools)");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { nodes, tls };
        cluster.wait_until_healthy(Duration::from_secs(20));
        cluster
    }

    /// `redis+cluster://` (`rediss+cluster://` with the ACL user in a TLS run) naming every node
    /// (the client finds the masters itself).
    pub fn url(&self) -> String {
        let hosts: Vec<String> =
            self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        match &self.tls {
            Some(tls) => {
                format!("rediss+cluster://{}:{}@{}", tls::REDIS_USER, tls.password, hosts.join(","))
            }
            None => format!("redis+cluster://{}", hosts.join(",")),
        }
    }

    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let tls_args = self.tls.as_ref().map(|t| t.redis_cli_args()).unwrap_or_default();
        let out = Command::new("redis-cli")
            .args(&tls_args)
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).replace('\r', ""))
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Whether every live node sees all slots served, and every live replica has synced with
    /// its master (a replica that never synced refuses to take over: its data is too old).
    pub fn healthy(&self) -> bool {
        self.live().all(|n| {
            let served = self.cli(n.port, &["cluster", "info"]).is_some_and(|info| {
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            let synced = self.cli(n.port, &["info", "replication"]).is_some_and(|info| {
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            served && synced
        })
    }

    pub fn wait_until_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.healthy() {
            assert!(Instant::now() < deadline, "the Redis Cluster did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter of `INFO stats` (`total_reads_processed`, …) on node `index`; 0 when absent.
    pub fn stat(&self, index: usize, field: &str) -> u64 {
        let info = self.cli(self.nodes[index].port, &["info", "stats"]).unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The index in [`RedisCluster::nodes`] of the master now serving `key`.
    pub fn master_of(&self, key: &str) -> usize {
        let node = self.live().next().expect("a live node");
        let slot: u16 = self
            .cli(node.port, &["cluster", "keyslot", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        let nodes = self.cli(node.port, &["cluster", "nodes"]).expect("CLUSTER NODES");
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !f.get(2).is_some_and(|flags| flags.contains("master")) {
                continue;
            }
            let serves = f.iter().skip(8).any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    (a.parse().unwrap_or(u16::MAX)..=b.parse().unwrap_or(0)).contains(&slot)
                }
                None => range.parse() == Ok(slot),
            });
            if serves {
                let port: u16 = f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse().ok())
                    .expect("node port");
                return self.nodes.iter().position(|n| n.port == port).expect("a node of ours");
            }
        }
        panic!("no master serves slot {slot}");
    }
}

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// Options for [`TestApp::spawn`], built fluently:
/// `AppOptions::default().private_redis().env("L1_CACHE", "off")`.
#[derive(Default, Clone)]
pub struct AppOptions {
    /// Redis to use; default: the shared one with a fresh key prefix.
    pub redis_url: Option<String>,
    /// Start a `redis-server` of the app's own (to stop, pause or count its commands).
    pub private_redis: bool,
    /// Extra or overriding environment for `Settings::from_lookup`.
    pub env: Vec<(String, String)>,
}

impl AppOptions {
    pub fn private_redis(mut self) -> Self {
        self.private_redis = true;
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn redis_url(mut self, url: String) -> Self {
        self.redis_url = Some(url);
        self
    }
}

/// A running origin on a real port.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The operator listener (`/metrics`, `/readyz`).
    pub ops_addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    pub redis_url: String,
    /// The namespace every key of this app carries.
    pub prefix: String,
    /// The test database's pool (for set-up and for reading back what requests did).
    pub pool: PgPool,
    /// The app's own Redis, with [`AppOptions::private_redis`].
    pub private_redis: Option<RedisServer>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(db: &TestDb, options: AppOptions) -> TestApp {
        let prefix = key_prefix();
        Self::spawn_with_prefix(db, options, prefix).await
    }

    /// As [`TestApp::spawn`], but a refused start-up is returned, not a panic.
    pub async fn try_spawn(
        db: &TestDb,
        options: AppOptions,
    ) -> Result<TestApp, origin::startup::StartupError> {
        let prefix = key_prefix();
        Self::build(db, options, prefix).await
    }

    /// Several origins sharing one prefix behave as replicas of one deployment.
    pub async fn spawn_with_prefix(db: &TestDb, options: AppOptions, prefix: String) -> TestApp {
        Self::build(db, options, prefix).await.expect("build origin")
    }

    async fn build(
        db: &TestDb,
        options: AppOptions,
        prefix: String,
    ) -> Result<TestApp, origin::startup::StartupError> {
        let private_redis = options.private_redis.then(RedisServer::start);
        let redis_url = match &private_redis {
            Some(server) => server.url(),
            None => options.redis_url.clone().unwrap_or_else(shared_redis_url),
        };
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db.app_url()),
            ("REDIS_URL".into(), redis_url.clone()),
            ("ORIGIN_ADDR".into(), "127.0.0.1:0".into()),
            ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
            ("REDIS_KEY_PREFIX".into(), prefix.clone()),
            ("DB_MAX_CONNECTIONS".into(), "10".into()),
            // Suites register users from one address; the sign-up budget has its own test.
            ("REGISTRATIONS_PER_HOUR".into(), "100000".into()),
            // Stampede tests send hundreds of requests at once from one address; the per-client
            // share has its own test.
            ("MAX_IN_FLIGHT_PER_CLIENT".into(), "0".into()),
        ]);
        if db_backend() == DbBackend::PgBouncer {
            env.insert("DB_POOLER".into(), "pgbouncer-transaction".into());
        }
        env.extend(redis_tls_env(&redis_url));
        env.extend(options.env.iter().cloned());
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
        let app = Application::build(settings).await?;
        let addr = app.local_addr();
        let ops_addr = app.ops_addr();
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Ok(TestApp {
            addr,
            ops_addr,
            state,
            client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client"),
            redis_url,
            prefix,
            pool: db.pool.clone(),
            private_redis,
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The app's private Redis ([`AppOptions::private_redis`]).
    pub fn redis_server(&mut self) -> &mut RedisServer {
        self.private_redis.as_mut().expect("spawned with AppOptions::private_redis()")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        send(self.client.get(self.url(path))).await
    }

    /// `GET` on the operator listener (`/metrics`, `/readyz`, `/healthz`).
    pub async fn ops_get(&self, path: &str) -> reqwest::Response {
        send(self.client.get(format!("http://{}{path}", self.ops_addr))).await
    }

    /// The value of one sample line (`name{labels}`) in this process's `/metrics`, 0 when
    /// absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.ops_get("/metrics").await.text().await.unwrap();
        process::sample(&text, series)
    }

    /// The sum of every series of the metric `name` (all label sets) in this process's
    /// `/metrics`: the registry is the test binary's, shared by its tests, so compare two
    /// readings, never one against a constant.
    pub async fn metric_total(&self, name: &str) -> f64 {
        let text = self.ops_get("/metrics").await.text().await.unwrap();
        process::total(&text, name)
    }

    /// `GET` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn post_json_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        send(self.client.post(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// `POST` of raw bytes as JSON (for malformed bodies).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        let req = self.client.post(self.url(path));
        send(req.header("content-type", "application/json").body(body)).await
    }

    pub async fn put_json_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        send(self.client.put(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// Registers `email` with [`PASSWORD`]; returns the new user's id.
    pub async fn register(&self, email: &str) -> i64 {
        let r = self
            .post_json("/v1/auth/register", &json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "registering {email}");
        json_body(r).await["id"].as_i64().expect("id")
    }

    /// Signs `email` in with [`PASSWORD`]; returns the bearer token.
    pub async fn login(&self, email: &str) -> String {
        let r =
            self.post_json("/v1/auth/login", &json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), StatusCode::OK, "signing in {email}");
        json_body(r).await["token"].as_str().expect("token").to_owned()
    }

    /// A signed-in user with `cents` on their balance (credited through the ledger).
    pub async fn user_with(&self, email: &str, cents: i64) -> (i64, String) {
        let id = self.register(email).await;
        if cents > 0 {
            let credited = Db::from_pool(self.pool.clone()).credit(id, cents, None, None).await;
            assert!(matches!(credited, Ok(CreditOutcome::Credited(_))), "credit {email}");
        }
        (id, self.login(email).await)
    }

    /// An admin (`origin admin create`) signed in; returns the token.
    pub async fn admin(&self, email: &str) -> String {
        let creds = shared::types::Credentials { email: email.into(), password: PASSWORD.into() };
        origin::accounts::create_admin(&Db::from_pool(self.pool.clone()), creds)
            .await
            .expect("create admin");
        self.login(email).await
    }

    /// `POST /v1/activations` for `product`, with an `Idempotency-Key` when given.
    pub async fn buy(&self, token: &str, product: &Value, key: Option<&str>) -> reqwest::Response {
        let mut req =
            self.client.post(self.url("/v1/activations")).bearer_auth(token).json(product);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        send(req).await
    }

    /// Queries this origin has sent to PostgreSQL so far.
    pub fn db_queries(&self) -> u64 {
        self.state.db.queries_issued()
    }

    /// Waits until L1's invalidation subscription is live.
    pub async fn wait_for_l1(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.state.cache.l1_live() {
            assert!(Instant::now() < deadline, "L1 never went live");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A connection to the Redis this app uses (one server or a cluster, over TLS as the app
    /// reaches it), for reading keys back.
    pub async fn redis(&self) -> origin::redis::Conn {
        origin::redis::Conn::open_lazy(
            &self.redis_url,
            &self.state.settings.redis_tls,
            Duration::from_secs(2),
        )
        .expect("redis url")
    }

    /// A key as `shared::keys` spells it, named the way this app stores it (prefix added).
    pub fn key(&self, key: &str) -> String {
        origin::redis::prefixed(&self.prefix, key)
    }

    /// `TTL` of a key as `shared::keys` spells it (this app's prefix added).
    pub async fn ttl(&self, key: &str) -> i64 {
        let mut conn = self.redis().await;
        redis::cmd("TTL").arg(self.key(key)).query_async(&mut conn).await.expect("TTL")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The settings that reach a TLS Redis the way this process was told to (`REDIS_CA_FILE` and
/// the client certificate, as `make test`'s TLS passes set them), for a `rediss://` URL only: a
/// plaintext URL with a CA file is refused by the origin's configuration, as it should be.
pub fn redis_tls_env(url: &str) -> Vec<(String, String)> {
    if !url.starts_with("rediss") {
        return Vec::new();
    }
    ["REDIS_CA_FILE", "REDIS_CLIENT_CERT_FILE", "REDIS_CLIENT_KEY_FILE"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_owned(), v)))
        .collect()
}

/// A redis-rs client for `url`, trusting `REDIS_CA_FILE` (or the TLS run's CA) for `rediss://`.
pub fn redis_client(url: &str) -> redis::Client {
    if !url.starts_with("rediss") {
        return redis::Client::open(url).expect("redis url");
    }
    let ca = std::env::var("REDIS_CA_FILE")
        .ok()
        .or_else(|| tls::TlsEnv::from_env().map(|t| t.file("ca.pem")))
        .map(|path| std::fs::read(path).expect("REDIS_CA_FILE"));
    redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: ca })
        .expect("redis url")
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.expect("request")
}

/// Parses a JSON body, panicking with the body text when it is not JSON.
pub async fn json_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The same as [`json_body`] (the suites' historical name).
pub async fn json(resp: reqwest::Response) -> Value {
    json_body(resp).await
}

/// Checks an error answer: `status`, never cached, a JSON body with a message and `code`.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) {
    let url = resp.url().to_string();
    let status = StatusCode::from_u16(status).expect("status");
    assert_eq!(error_code(resp, status).await, code, "{url}");
}

/// Checks an error answer: `status`, never cached, a JSON body with a message; returns its code.
pub async fn error_code(resp: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status, "{}", resp.url());
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let body = json_body(resp).await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body["error"]["code"].as_str().unwrap_or_default().to_owned()
}
