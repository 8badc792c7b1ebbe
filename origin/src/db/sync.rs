//! The catalog sync's reads and writes: a provider's current prices, the reference codes, the one
//! transaction that applies a sync's changes, and the log of runs `origin check` reads.
//!
//! A sync's changes go in **one transaction**: the changed rows are staged (`UNNEST` in batches
//! of [`STAGE_BATCH`] into a temporary table), then one upsert moves them into `prices`, one
//! update zeroes the stock of products the provider stopped selling, and the transaction commits.
//! A failure anywhere (the connection cut, a constraint) rolls all of it back: a sync is applied
//! whole or not at all. Only rows that changed are sent at all.

use std::collections::HashMap;

use super::Db;

/// Rows per staging statement (four arrays of this many values).
pub const STAGE_BATCH: usize = 10_000;

/// Rows as they were when a write locked them: (provider, country, service) → (price, stock).
pub type LockedRows = std::collections::HashMap<(i32, i32, i32), (i64, i64)>;

/// One price row, by reference ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceRow {
    pub provider_id: i32,
    pub country_id: i32,
    pub service_id: i32,
    pub price_cents: i64,
    pub stock: i64,
}

/// An admin's bulk update with an `Idempotency-Key`: recorded with its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRecord {
    pub user_id: i64,
    pub key: String,
    pub request_hash: String,
    /// The answer, as JSON text.
    pub response: String,
}

/// The reference tables a sync maps codes into.
#[derive(Clone, Copy, Debug)]
pub enum Reference {
    Countries,
    Services,
}

/// One sync run, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRun {
    pub provider: String,
    pub outcome: &'static str,
    pub offers: i64,
    pub changed: i64,
    pub detail: String,
    pub duration_ms: i64,
}

/// The last run of each provider: provider, outcome, rows changed, detail, seconds ago, and
/// seconds since its last applied (or unchanged) run, if any.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct LastSync {
    pub provider: String,
    pub outcome: String,
    pub changed: i64,
    pub detail: String,
    pub age_secs: f64,
    pub good_age_secs: Option<f64>,
}

impl Db {
    /// A provider's id, if it exists.
    pub async fn provider_id(&self, code: &str) -> Result<Option<i32>, sqlx::Error> {
        self.count("sync_provider");
        let mut conn = self.conn().await?;
        let id = sqlx::query_scalar("SELECT id FROM providers WHERE code = $1")
            .persistent(self.persistent())
            .bind(code)
            .fetch_optional(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(id)
    }

    /// Every code of a reference table, with its id.
    pub async fn reference_ids(
        &self,
        table: Reference,
    ) -> Result<HashMap<String, i32>, sqlx::Error> {
        self.count("sync_reference");
        let sql = match table {
            Reference::Countries => "SELECT code, id FROM countries",
            Reference::Services => "SELECT code, id FROM services",
        };
        let mut conn = self.conn().await?;
        let rows: Vec<(String, i32)> = sqlx::query_as(sql)
            .persistent(self.persistent())
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(rows.into_iter().collect())
    }

    /// A provider's current prices: (country id, service id) → (price, stock).
    pub async fn provider_prices(
        &self,
        provider_id: i32,
    ) -> Result<HashMap<(i32, i32), (i64, i64)>, sqlx::Error> {
        self.count("sync_current");
        let mut conn = self.conn().await?;
        let rows: Vec<(i32, i32, i64, i64)> = sqlx::query_as(
            "SELECT country_id, service_id, price_cents, stock FROM prices WHERE provider_id = $1",
        )
        .persistent(self.persistent())
        .bind(provider_id)
        .fetch_all(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(rows
            .into_iter()
            .map(|(c, s, price, stock)| ((c, s), (price, stock)))
            .collect())
    }

    /// Applies a sync (or an admin's bulk update) in one transaction: `upserts` (new or changed
    /// rows), `zeroed` (products no longer sold: stock 0, as (provider, country, service)), and
    /// the request's idempotency record if any (so it is recorded exactly when it took effect).
    /// Returns the rows written, and each upserted row that existed as it was when locked (a
    /// purchase may have changed its stock since the caller read it: the change is judged
    /// against this).
    pub async fn apply_prices(
        &self,
        upserts: &[PriceRow],
        zeroed: &[(i32, i32, i32)],
        record: Option<&BulkRecord>,
    ) -> Result<(u64, LockedRows), sqlx::Error> {
        self.count("sync_apply");
        let persistent = self.persistent();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "CREATE TEMP TABLE sync_stage (provider_id INT, country_id INT, service_id INT,
                                           price_cents BIGINT, stock BIGINT) ON COMMIT DROP",
        )
        .persistent(persistent)
        .execute(&mut *tx)
        .await?;
        for batch in upserts.chunks(STAGE_BATCH) {
            let providers: Vec<i32> = batch.iter().map(|r| r.provider_id).collect();
            let countries: Vec<i32> = batch.iter().map(|r| r.country_id).collect();
            let services: Vec<i32> = batch.iter().map(|r| r.service_id).collect();
            let prices: Vec<i64> = batch.iter().map(|r| r.price_cents).collect();
            let stocks: Vec<i64> = batch.iter().map(|r| r.stock).collect();
            sqlx::query(
                "INSERT INTO sync_stage
                 SELECT * FROM unnest($1::int[], $2::int[], $3::int[], $4::bigint[], $5::bigint[])",
            )
            .persistent(persistent)
            .bind(&providers)
            .bind(&countries)
            .bind(&services)
            .bind(&prices)
            .bind(&stocks)
            .execute(&mut *tx)
            .await?;
        }
        // Locked in one order (every writer of many rows locks so: no deadlock between them).
        let locked: Vec<(i32, i32, i32, i64, i64)> = sqlx::query_as(
            "SELECT p.provider_id, p.country_id, p.service_id, p.price_cents, p.stock
               FROM prices p JOIN sync_stage s USING (provider_id, country_id, service_id)
              ORDER BY p.provider_id, p.country_id, p.service_id
                FOR UPDATE OF p",
        )
        .persistent(persistent)
        .fetch_all(&mut *tx)
        .await?;
        let upserted = sqlx::query(
            "INSERT INTO prices (provider_id, country_id, service_id, price_cents, stock)
             SELECT provider_id, country_id, service_id, price_cents, stock FROM sync_stage
             ON CONFLICT (provider_id, country_id, service_id)
             DO UPDATE SET price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock,
                           updated_at = now()",
        )
        .persistent(persistent)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut zeroed_rows = 0;
        for batch in zeroed.chunks(STAGE_BATCH) {
            let providers: Vec<i32> = batch.iter().map(|(p, _, _)| *p).collect();
            let countries: Vec<i32> = batch.iter().map(|(_, c, _)| *c).collect();
            let services: Vec<i32> = batch.iter().map(|(_, _, s)| *s).collect();
            zeroed_rows += sqlx::query(
                "UPDATE prices SET stock = 0, updated_at = now()
                  WHERE (provider_id, country_id, service_id)
                        IN (SELECT * FROM unnest($1::int[], $2::int[], $3::int[]))",
            )
            .persistent(persistent)
            .bind(&providers)
            .bind(&countries)
            .bind(&services)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(r) = record {
            sqlx::query(
                "INSERT INTO bulk_price_requests (user_id, key, request_hash, response)
                 VALUES ($1, $2, $3, $4::jsonb)",
            )
            .persistent(persistent)
            .bind(r.user_id)
            .bind(&r.key)
            .bind(&r.request_hash)
            .bind(&r.response)
            .execute(&mut *tx)
            .await?;
        }
        // Tests cut the sync here, after every write and before the commit.
        fail::fail_point!("sync::before_commit", |_| Err(sqlx::Error::Protocol(
            "fault injected before the commit".into()
        )));
        tx.commit().await?;
        let locked = locked
            .into_iter()
            .map(|(p, c, s, price, stock)| ((p, c, s), (price, stock)))
            .collect();
        Ok((upserted + zeroed_rows, locked))
    }

    /// An earlier bulk update of this user with this key: its request hash and answer (JSON).
    pub async fn bulk_request(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        self.count("bulk_request");
        let mut conn = self.conn().await?;
        let row = sqlx::query_as(
            "SELECT request_hash, response::text FROM bulk_price_requests
              WHERE user_id = $1 AND key = $2",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(row)
    }

    /// Every provider's id by code.
    pub async fn provider_ids(&self) -> Result<HashMap<String, i32>, sqlx::Error> {
        self.count("sync_providers");
        let mut conn = self.conn().await?;
        let rows: Vec<(String, i32)> = sqlx::query_as("SELECT code, id FROM providers")
            .persistent(self.persistent())
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(rows.into_iter().collect())
    }

    /// The current price and stock of some products, by ids.
    pub async fn prices_of(
        &self,
        products: &[(i32, i32, i32)],
    ) -> Result<HashMap<(i32, i32, i32), (i64, i64)>, sqlx::Error> {
        self.count("bulk_current");
        let providers: Vec<i32> = products.iter().map(|(p, _, _)| *p).collect();
        let countries: Vec<i32> = products.iter().map(|(_, c, _)| *c).collect();
        let services: Vec<i32> = products.iter().map(|(_, _, s)| *s).collect();
        let mut conn = self.conn().await?;
        let rows: Vec<(i32, i32, i32, i64, i64)> = sqlx::query_as(
            "SELECT p.provider_id, p.country_id, p.service_id, p.price_cents, p.stock
               FROM prices p
               JOIN unnest($1::int[], $2::int[], $3::int[]) AS w(provider_id, country_id, service_id)
                 USING (provider_id, country_id, service_id)",
        )
        .persistent(self.persistent())
        .bind(&providers)
        .bind(&countries)
        .bind(&services)
        .fetch_all(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(rows
            .into_iter()
            .map(|(p, c, s, price, stock)| ((p, c, s), (price, stock)))
            .collect())
    }

    /// Logs one run.
    pub async fn record_sync(&self, run: &SyncRun) -> Result<(), sqlx::Error> {
        self.count("sync_record");
        let mut conn = self.conn().await?;
        sqlx::query(
            "INSERT INTO sync_runs (provider, outcome, offers, changed, detail, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .persistent(self.persistent())
        .bind(&run.provider)
        .bind(run.outcome)
        .bind(run.offers)
        .bind(run.changed)
        .bind(&run.detail)
        .bind(run.duration_ms)
        .execute(&mut *conn)
        .await?;
        conn.done().await
    }

    /// The guard's baseline of a provider: (median cents, products, age in seconds).
    pub async fn baseline(&self, provider_id: i32) -> Result<Option<(i64, i32, f64)>, sqlx::Error> {
        self.count("sync_baseline");
        let mut conn = self.conn().await?;
        let row = sqlx::query_as(
            "SELECT median_cents, products, EXTRACT(EPOCH FROM now() - recorded_at)::float8
               FROM sync_baselines WHERE provider_id = $1",
        )
        .persistent(self.persistent())
        .bind(provider_id)
        .fetch_optional(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(row)
    }

    /// Records a provider's baseline now.
    pub async fn set_baseline(
        &self,
        provider_id: i32,
        median_cents: i64,
        products: i32,
    ) -> Result<(), sqlx::Error> {
        self.count("sync_set_baseline");
        let mut conn = self.conn().await?;
        sqlx::query(
            "INSERT INTO sync_baselines (provider_id, median_cents, products, recorded_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (provider_id) DO UPDATE
                SET median_cents = EXCLUDED.median_cents, products = EXCLUDED.products,
                    recorded_at = now()",
        )
        .persistent(self.persistent())
        .bind(provider_id)
        .bind(median_cents)
        .bind(products)
        .execute(&mut *conn)
        .await?;
        conn.done().await
    }

    /// Each provider's last run, and how long ago its last good one was.
    pub async fn last_syncs(&self) -> Result<Vec<LastSync>, sqlx::Error> {
        self.count("sync_last");
        let mut conn = self.conn().await?;
        let rows = sqlx::query_as(
            "SELECT DISTINCT ON (r.provider) r.provider, r.outcome, r.changed::bigint AS changed,
                    r.detail, EXTRACT(EPOCH FROM now() - r.finished_at)::float8 AS age_secs,
                    (SELECT EXTRACT(EPOCH FROM now() - max(g.finished_at))::float8
                       FROM sync_runs g
                      WHERE g.provider = r.provider AND g.outcome IN ('applied', 'unchanged'))
                    AS good_age_secs
               FROM sync_runs r ORDER BY r.provider, r.finished_at DESC",
        )
        .persistent(self.persistent())
        .fetch_all(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(rows)
    }
}
