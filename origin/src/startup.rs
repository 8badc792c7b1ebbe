//! Building and running the server. [`Application::build`] does the boot steps in order and
//! binds the real port, so tests (binding port 0) and `origin serve` run the same thing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio::net::TcpListener;

use crate::accounts::Accounts;
use crate::accounts::sessions::Sessions;
use crate::accounts::throttle::LoginThrottle;
use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::db::Db;
use crate::http;
use crate::meters;
use crate::policies::HeaderPolicies;
use crate::purge::Purger;
use crate::ratelimit::Limiter;
use crate::redis::Redis;
use crate::server;
use crate::state::{AppState, Services};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("DATABASE_URL is not a usable PostgreSQL URL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("REDIS_URL is not a usable Redis URL: {0}")]
    Redis(#[from] redis::RedisError),
    /// A dependency answered and refused us: a certificate, a password, a database name.
    #[error("{name}: cannot connect: {reason}")]
    Refused { name: &'static str, reason: String },
    #[error("DATABASE_URL: {0}")]
    Schema(String),
    #[error("{0}")]
    Sync(String),
    /// An outbound HTTP client could not be built (the message names the setting).
    #[error("{0}")]
    Client(String),
    #[error("cannot listen on {name} {addr}: {source}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    /// The operator listener (`METRICS_ADDR`).
    ops_listener: TcpListener,
    state: AppState,
}

async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { name, addr, source })
}

/// Longest start-up waits for Redis's first answer (a connect and a TLS handshake).
const REDIS_PREFLIGHT: Duration = Duration::from_secs(3);

impl Application {
    /// 1. the PostgreSQL pool and the Redis client (both lazy: they connect on first use),
    /// 2. one connection to each, now ([`preflight`]): a certificate, password or database name
    ///    they refuse stops start-up here, naming the variable; so does a schema behind this
    ///    binary. One that does not answer yet only makes the origin not ready,
    /// 3. L1 with its invalidation subscriber, and the metrics recorder,
    /// 4. the listeners on `ORIGIN_ADDR` and `METRICS_ADDR`.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        crate::tls::install_crypto_provider();
        log_transports(&settings);
        let db = Db::connect_lazy(&settings)?;
        let redis = Redis::from_settings(&settings)?;
        let schema_current = preflight(&settings, &db, &redis).await?;
        let mut cache = Cache::new(redis.clone(), settings.cache_ttl_divisor);
        if settings.l1_enabled {
            cache.enable_l1(settings.l1_max_bytes, settings.l1_ttl);
        }
        let metrics = settings.metrics_enabled.then(meters::handle);
        let providers: Vec<String> = settings
            .sync
            .upstreams
            .iter()
            .map(|u| u.provider.clone())
            .collect();
        meters::sync_baseline(&providers);
        let (stopping, _) = tokio::sync::watch::channel(false);
        let purger = Purger::start(
            &settings.purge,
            &settings.http_roots,
            &redis,
            Some(stopping.subscribe()),
        )
        .map_err(|e| StartupError::Client(e.to_string()))?;
        if !settings.sync.interval.is_zero() && !settings.sync.upstreams.is_empty() {
            crate::sync::check_mappings(&settings.sync)
                .map_err(|e| StartupError::Sync(e.to_string()))?;
            let syncer = crate::sync::Syncer::new(
                db.clone(),
                cache.clone(),
                purger.clone(),
                settings.sync.clone(),
                &settings.http_roots,
            )
            .map_err(|e| StartupError::Client(e.to_string()))?;
            crate::sync::spawn_periodic(
                syncer,
                redis.clone(),
                settings.sync.interval,
                stopping.subscribe(),
            );
        }
        let listener = bind("ORIGIN_ADDR", settings.addr).await?;
        let ops_listener = bind("METRICS_ADDR", settings.metrics_addr).await?;
        let state = AppState::new(Services {
            catalog: Catalog::new(db.clone(), cache.clone()),
            accounts: Accounts::new(
                db.clone(),
                cache.clone(),
                purger.clone(),
                Sessions::new(
                    redis.clone(),
                    settings.cache_ttl_divisor,
                    settings.session_max_age,
                    settings.max_sessions_per_user,
                ),
                LoginThrottle::new(
                    redis.clone(),
                    settings.login_max_failures,
                    settings.login_window.as_secs(),
                    settings.login_max_failures_per_account,
                    settings.registrations_per_hour,
                ),
                settings.password_queue_timeout,
            ),
            limiter: if settings.rate_limit_enabled {
                Limiter::new(redis.clone(), settings.rate_limits.clone())
            } else {
                Limiter::disabled(redis.clone(), settings.rate_limits.clone())
            },
            headers: HeaderPolicies::new(settings.cache_ttl_divisor),
            // As large as L1: every body L1 holds can have its compressed forms beside it.
            compressed: crate::cache::compressed::Compressed::new(settings.l1_max_bytes),
            settings: Arc::new(settings),
            db,
            redis,
            cache,
            metrics,
            purger,
            draining: AtomicBool::new(false),
            stopping,
            schema_current: AtomicBool::new(schema_current),
        });
        Ok(Application {
            listener,
            ops_listener,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.addr)
    }

    /// Where the operator listener (`/metrics`, `/readyz`) answers.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.metrics_addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
    /// `SHUTDOWN_GRACE_SECS`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let state = self.state.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining");
            state.draining.store(true, Ordering::Release);
            state.stopping.send_replace(true);
            let _ = drain_tx.send(true);
            let _ = stopping_tx.send(());
        };
        let drained = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|draining| *draining).await;
        };
        let limits = server::Limits {
            header_read_timeout: self.state.settings.header_read_timeout,
            max_per_peer: self.state.settings.max_connections_per_peer,
        };
        let grace = self.state.settings.shutdown_grace;
        let purger = self.state.purger.clone();
        let public = http::public(self.state.clone());
        let app = move |req, peer| public.clone().serve(req, peer).map(Ok);
        let ops = server::routed(http::ops_router(self.state));
        // The operator listener outlives the public one: `/readyz` keeps answering "draining"
        // to the load balancer until the last public request is done.
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let public = async move {
            server::serve(self.listener, app, limits, drained(drain_rx)).await;
            let _ = done_tx.send(true);
        };
        let server = async move {
            tokio::join!(
                signal,
                public,
                server::serve(
                    self.ops_listener,
                    ops,
                    server::Limits {
                        max_per_peer: 0,
                        ..limits
                    },
                    drained(done_rx)
                ),
            );
            // What the last requests changed is in the fleet's purge queue before the process
            // goes (the other replicas' sender sends it); bounded, within the grace period.
            purger.flush(Duration::from_secs(2)).await;
            Ok(())
        };
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!("requests still running after the grace period; stopping anyway");
                Ok(())
            }
        }
    }
}

/// Says once, at start, how each dependency is reached, and warns where that is not fit for a
/// deployment (an unverified or plaintext link to another host). Never prints a password.
fn log_transports(settings: &Settings) {
    use crate::config::Grade;
    if settings.local {
        tracing::warn!(
            "ORIGIN_ENV=local: a development run. The published example EDGE_SECRET, unverified \
             TLS (#insecure) and a remote DATABASE_URL without sslmode are accepted; never run a \
             deployment so (origin check fails it on a non-loopback listener)"
        );
    }
    let (pg_grade, pg) = settings.database_tls.posture();
    let (redis_grade, redis) = settings.redis_tls.posture();
    if pg_grade == Grade::Good {
        tracing::info!(transport = %pg, "PostgreSQL (DATABASE_URL)");
    } else {
        tracing::warn!(transport = %pg, "PostgreSQL (DATABASE_URL) is not verified TLS to a remote host");
    }
    if settings.redis_tls.insecure {
        tracing::warn!(
            transport = %redis,
            "Redis (REDIS_URL): certificate verification is OFF (#insecure, ORIGIN_ENV=local)"
        );
    } else if redis_grade == Grade::Good {
        tracing::info!(transport = %redis, "Redis (REDIS_URL)");
    } else {
        tracing::warn!(transport = %redis, "Redis (REDIS_URL) is not verified TLS to a remote host");
    }
}

/// Boot step 2: one connection to PostgreSQL and one command to Redis, concurrently. Returns
/// whether the schema was found current (false: the database did not answer yet; `/readyz`
/// checks it until it does).
async fn preflight(settings: &Settings, db: &Db, redis: &Redis) -> Result<bool, StartupError> {
    let (pg, ping) = tokio::join!(
        db.probe(settings.db_connect_timeout),
        redis.preflight(REDIS_PREFLIGHT.max(settings.redis_timeout)),
    );
    match ping {
        Ok(()) => {}
        Err(e) if e.is_misconfigured() => {
            return Err(StartupError::Refused {
                name: "REDIS_URL",
                reason: e.to_string(),
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "Redis (REDIS_URL) does not answer yet; serving from PostgreSQL until it does")
        }
    }
    match pg {
        Ok(()) => {}
        Err(e) if crate::db::is_misconfigured(&e) => {
            return Err(StartupError::Refused {
                name: "DATABASE_URL",
                reason: e.to_string(),
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "PostgreSQL (DATABASE_URL) does not answer yet; not ready until it does and its schema checks out");
            return Ok(false);
        }
    }
    let status = crate::db::schema::status(db, &crate::MIGRATOR).await?;
    if !status.is_current() {
        return Err(StartupError::Schema(status.describe()));
    }
    tracing::info!(schema = %status.describe(), "PostgreSQL schema");
    Ok(true)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
