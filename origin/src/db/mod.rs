//! PostgreSQL access: the pool (the guide's section 2) and the queries, which live with the
//! data they read and select only the columns they need.
//!
//! - [`accounts`]: users, balances, purchases, the ledger.
//! - [`catalog`]: providers, countries, services and prices.

pub mod accounts;
pub mod catalog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

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

/// The pool plus a count of the queries issued through it, so tests and metrics can prove
/// "one database query" claims instead of timing them.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    /// Shared by clones; one per `Db::connect`, so two origins in one test process count apart.
    queries: Arc<AtomicU64>,
}

impl Db {
    /// Builds the pool without connecting: the origin starts (and `/readyz` says why it is not
    /// ready) even while PostgreSQL is still coming up.
    pub fn connect_lazy(settings: &Settings) -> Result<Db, sqlx::Error> {
        let options: PgConnectOptions = settings.database_url.expose_secret().parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.db_max_connections)
            .idle_timeout(settings.db_idle_timeout)
            .acquire_timeout(settings.db_connect_timeout)
            .connect_lazy_with(options);
        Ok(Db::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Db {
        Db {
            pool,
            queries: Arc::new(AtomicU64::new(0)),
        }
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

    /// `SELECT 1` for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
