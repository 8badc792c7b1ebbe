//! PostgreSQL access: the pool (the guide's section 2) and the queries, which live with the
//! data they read and select only the columns they need.
//!
//! - [`accounts`]: users, balances, purchases, the ledger.
//! - [`catalog`]: providers, countries, services and prices.
//! - [`roles`]: the serving role and its grants (least privilege: rows, never the schema).
//! - [`sync`]: the catalog sync's diff reads, its one-transaction write, and its run log.
//!
//! **Behind PgBouncer in transaction mode** (`DB_POOLER=pgbouncer-transaction`) a server
//! connection belongs to a client only for one transaction, so nothing may outlive one: no named
//! prepared statements (sqlx's statement cache is off and every query is `persistent(false)`,
//! an unnamed statement), and every query runs inside a transaction, because sqlx prepares
//! (Parse/Describe, then Sync) and executes (Bind/Execute) in separate round trips that PgBouncer
//! could otherwise send to two different servers. No session `SET`, advisory lock or `LISTEN` is
//! used anywhere. [`Db::conn`] gives every query function the right kind of connection.
//!
//! **A breaker in front of the pool** ([`Breaker`]): when PostgreSQL is gone, a pool keeps
//! trying to connect until its acquire timeout (`DB_CONNECT_TIMEOUT_SECS`, 10 s), and every
//! request that needs the database would hold its in-flight slot that long and then time out.
//! Instead, an acquire that has not succeeded within [`SLOW_ACQUIRE`] sends one probe (a
//! connection of its own, bounded by [`PROBE_BOUND`]); if the probe cannot connect, the breaker
//! opens: every waiting and new acquire fails at once (503 + `Retry-After`), and the probe tries
//! again every [`PROBE_EVERY`] until PostgreSQL answers, which closes the breaker. A pool that
//! is merely busy (the probe connects) is left to wait as before.

pub mod accounts;
pub mod catalog;
pub mod roles;
pub mod schema;
pub mod sync;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use crate::config::Settings;

/// Whether a database error means "the database is out of reach right now" (retry later), as
/// opposed to a bug in a query: no pooled connection in time, the connection refused, reset or
/// closed, or the server saying it is shutting down, starting up or out of connections
/// (SQLSTATE class 08, 57P01–57P03, 53300).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether a failed connect is one that waiting will not mend: the server's certificate refused
/// (or the server does not speak TLS where the URL requires it), the user or password refused,
/// the database missing. Start-up stops on these, naming `DATABASE_URL`; anything else (refused,
/// reset, timed out) may be a server still starting, and only makes the origin not ready.
pub fn is_misconfigured(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
        sqlx::Error::Io(io) => crate::tls::is_handshake_failure(io),
        // 28000 invalid authorization (pg_hba refused), 28P01 wrong password, 3D000 no database.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("28") || code == "3D000"),
        _ => false,
    }
}

/// How long an acquire waits before a probe checks whether PostgreSQL is there at all.
pub const SLOW_ACQUIRE: Duration = Duration::from_millis(250);
/// The probe's own bound on connecting.
pub const PROBE_BOUND: Duration = Duration::from_millis(1000);
/// How often an open breaker probes again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Breaker {
    open: std::sync::atomic::AtomicBool,
    probing: std::sync::atomic::AtomicBool,
    opened: tokio::sync::Notify,
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves when the breaker opens (at once if it is open).
    async fn opened(&self) {
        loop {
            let notified = self.opened.notified();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }
}

fn circuit_open() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "PostgreSQL does not accept connections (circuit open; probing)",
    ))
}

/// The pool plus a count of the queries issued through it, so tests and metrics can prove
/// "one database query" claims instead of timing them.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    /// Shared by clones; one per `Db::connect`, so two origins in one test process count apart.
    queries: Arc<AtomicU64>,
    /// False behind a transaction-mode pooler: unnamed statements, one transaction per use.
    persistent: bool,
    breaker: Arc<Breaker>,
}

/// A connection for one unit of work: a pooled connection, or (behind a transaction-mode
/// pooler) a transaction, committed by [`Conn::done`] and rolled back if dropped.
pub enum Conn {
    Pooled(PoolConnection<Postgres>),
    Tx(Transaction<'static, Postgres>),
}

impl Conn {
    pub async fn done(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pooled(_) => Ok(()),
            Conn::Tx(tx) => tx.commit().await,
        }
    }
}

impl Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Tx(tx) => tx,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Tx(tx) => tx,
        }
    }
}

impl Db {
    /// Builds the pool without connecting: the origin starts (and `/readyz` says why it is not
    /// ready) even while PostgreSQL is still coming up.
    pub fn connect_lazy(settings: &Settings) -> Result<Db, sqlx::Error> {
        let mut options: PgConnectOptions = settings.database_url.expose_secret().parse()?;
        let persistent = !settings.db_behind_transaction_pooler;
        if !persistent {
            options = options.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.db_max_connections)
            .idle_timeout(settings.db_idle_timeout)
            .acquire_timeout(settings.db_connect_timeout)
            .connect_lazy_with(options);
        Ok(Db {
            persistent,
            ..Db::from_pool(pool)
        })
    }

    /// A `Db` over a direct connection pool (the command line, tests).
    pub fn from_pool(pool: PgPool) -> Db {
        Db {
            pool,
            queries: Arc::new(AtomicU64::new(0)),
            persistent: true,
            breaker: Arc::default(),
        }
    }

    /// Whether queries may be named prepared statements (false behind a transaction pooler).
    pub(crate) fn persistent(&self) -> bool {
        self.persistent
    }

    /// A connection for one unit of work (see the module documentation), through the breaker.
    pub async fn conn(&self) -> Result<Conn, sqlx::Error> {
        self.through_breaker(async {
            if self.persistent {
                Ok(Conn::Pooled(self.pool.acquire().await?))
            } else {
                Ok(Conn::Tx(self.pool.begin().await?))
            }
        })
        .await
    }

    /// A transaction (a purchase, a credit), through the breaker: with PostgreSQL gone it fails
    /// within about a second (503 + `Retry-After`) instead of waiting out the pool's acquire
    /// timeout past the request's deadline.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.through_breaker(self.pool.begin()).await
    }

    /// `acquire`, unless the breaker is open or opens while it waits (see the module doc).
    async fn through_breaker<T>(
        &self,
        acquire: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        if self.breaker.is_open() {
            return Err(circuit_open());
        }
        let mut acquire = std::pin::pin!(acquire);
        tokio::select! {
            got = &mut acquire => return got,
            () = tokio::time::sleep(SLOW_ACQUIRE) => {}
        }
        self.probe_soon();
        tokio::select! {
            got = &mut acquire => got,
            () = self.breaker.opened() => Err(circuit_open()),
        }
    }

    /// Whether the breaker is open now (PostgreSQL known to be unreachable).
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Starts the probe unless one is running: it opens the breaker if PostgreSQL cannot be
    /// connected to, and keeps probing until it can, which closes it.
    fn probe_soon(&self) {
        if self.breaker.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                match db.probe(PROBE_BOUND).await {
                    Ok(()) => {
                        if db.breaker.open.swap(false, Ordering::AcqRel) {
                            tracing::info!("PostgreSQL answers again; circuit closed");
                        }
                        break;
                    }
                    Err(e) => {
                        if !db.breaker.open.swap(true, Ordering::AcqRel) {
                            tracing::warn!(error = %e, "PostgreSQL unreachable; circuit open, failing fast");
                        }
                        db.breaker.opened.notify_waiters();
                        tokio::time::sleep(PROBE_EVERY).await;
                    }
                }
            }
            db.breaker.probing.store(false, Ordering::Release);
        });
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Queries issued through this handle since it was created.
    pub fn queries_issued(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Every query goes through here first: it is counted per process and in `/metrics`.
    pub(crate) fn count(&self, query: &'static str) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        crate::meters::db_query(query);
    }

    /// Client connections on the server (all databases) and its `max_connections`.
    pub async fn server_connections(&self) -> Result<(i64, i64), sqlx::Error> {
        let mut conn = self.conn().await?;
        let row = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                    current_setting('max_connections')::bigint",
        )
        .persistent(self.persistent)
        .fetch_one(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(row)
    }

    /// Opens one connection outside the pool (with the pool's options, TLS included) and closes
    /// it. The pool reports only that it timed out; this keeps the reason a connect failed.
    pub async fn probe(&self, bound: Duration) -> Result<(), sqlx::Error> {
        let options = self.pool.connect_options();
        let conn = tokio::time::timeout(bound, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {bound:?}"),
                ))
            })??;
        conn.close().await
    }

    /// `SELECT 1` for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.conn().await?;
        sqlx::query("SELECT 1")
            .persistent(self.persistent)
            .execute(&mut *conn)
            .await?;
        conn.done().await
    }
}
