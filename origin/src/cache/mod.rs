//! Cache-aside over Redis: the guide's section 1, in one module.
//!
//! - [`Cache::get_or_load`] is the guide's `cacheGet`: the in-process layer ([`l1`]), then GET;
//!   on a miss one load per key per process ([`flight`]) and one per key for the whole fleet (a
//!   short Redis fill lock, `fill.lua`/`store.lua`; waiters are served the stored result, and a
//!   dead holder's lease simply expires), written back with the policy TTL, counted.
//! - [`Cache::get_multiple`] is the guide's `cacheGetMultiple`: one MGET, one load for every
//!   missing key, one pipelined write-back.
//! - [`Cache::invalidate`] deletes keys after a mutation.
//!
//! Values are stored as the exact JSON bytes the client gets, so a hit is served without
//! decoding. A known absence (no such price) is stored as `null` with a short TTL, so repeated
//! asks for it do not reach PostgreSQL either.
//!
//! Redis is an optimisation here, never a dependency: every command is bounded by
//! `REDIS_TIMEOUT_MS`; on error or timeout the value is loaded from PostgreSQL, the error is
//! counted, and the connection manager reconnects in the background so caching resumes by
//! itself when Redis returns.

pub mod flight;
pub mod l1;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use serde::Serialize;
use shared::DataType;

use crate::config::Settings;
use crate::error::ApiError;
use flight::{Flights, Role};
use l1::L1;

static FILL: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("fill.lua")));
static STORE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("store.lua")));

/// How long a fill lock is held at most: a load takes milliseconds; if its holder dies, waiters
/// take over after this.
pub const FILL_LEASE: Duration = Duration::from_secs(2);
/// How often a waiter looks for the holder's result.
const FILL_POLL: Duration = Duration::from_millis(10);

/// A cached value: the JSON bytes, or `None` for a known absence.
pub type Entry = Option<Bytes>;

/// Longest a known absence is remembered: short, so a new price shows up quickly, and so
/// requests for made-up codes cannot park data in Redis for an hour.
const NEGATIVE_TTL_SECS: u32 = 30;

const NULL: &[u8] = b"null";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis {op} timed out")]
    Timeout { op: &'static str },
    #[error("redis {op} failed: {source}")]
    Redis {
        op: &'static str,
        source: redis::RedisError,
    },
}

#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    /// `REDIS_KEY_PREFIX`, prepended to every key built by `shared::keys`.
    prefix: Arc<str>,
    timeout: Duration,
    ttl_divisor: u32,
    flights: Flights,
    /// The in-process layer, when enabled ([`Cache::enable_l1`]).
    l1: Option<L1>,
    client: redis::Client,
}

/// What a fleet-wide fill attempt found.
enum Fill {
    Found(Bytes),
    Locked,
    Wait,
}

impl Cache {
    /// Creates the connection manager without connecting, so the origin starts while Redis is
    /// down and picks it up when it appears.
    pub fn new(settings: &Settings) -> Result<Cache, redis::RedisError> {
        let client = redis::Client::open(settings.redis_url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.redis_timeout))
            .set_connection_timeout(Some(settings.redis_timeout.max(Duration::from_millis(250))))
            // Reconnect attempts are cheap and bounded; requests never wait on them because every
            // command below is also bounded by `timeout`.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let redis = client.get_connection_manager_lazy(config)?;
        Ok(Cache {
            redis,
            prefix: settings.redis_key_prefix.as_str().into(),
            timeout: settings.redis_timeout,
            ttl_divisor: settings.cache_ttl_divisor,
            flights: Flights::default(),
            l1: None,
            client,
        })
    }

    /// Turns on the in-process layer and its invalidation subscriber (needs a Tokio runtime).
    pub fn enable_l1(&mut self, max_bytes: u64, ttl: Duration) {
        let l1 = L1::new(max_bytes, ttl);
        l1.spawn_subscriber(self.client.clone(), self.invalidation_channel());
        self.l1 = Some(l1);
    }

    /// Whether the in-process layer is on and its subscription live.
    pub fn l1_live(&self) -> bool {
        self.l1.as_ref().is_some_and(L1::is_live)
    }

    fn invalidation_channel(&self) -> String {
        self.key("cache:invalidate")
    }

    /// The full Redis key for a key built by `shared::keys`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Redis TTL of a data type under this configuration.
    pub fn ttl(&self, data: DataType) -> u32 {
        data.policy().scaled_down(self.ttl_divisor).redis_ttl
    }

    /// The cache-aside read: the in-process layer, then Redis; on a miss (or Redis trouble) one
    /// load per key per process and, through the fill lock, per fleet, written back with the
    /// data type's TTL.
    pub async fn get_or_load<T, F, Fut>(
        &self,
        data: DataType,
        key: String,
        load: F,
    ) -> Result<Entry, ApiError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>, ApiError>> + Send + 'static,
    {
        let full = self.key(&key);
        if let Some(entry) = self.l1.as_ref().and_then(|l1| l1.get(&full)) {
            count(data, "hit", 1);
            return Ok(entry);
        }
        let generation = self.l1.as_ref().map_or(0, L1::generation);
        let redis_ok = match self.get(&full).await {
            Ok(Some(bytes)) => {
                count(data, "hit", 1);
                let entry = decode(bytes);
                self.keep(full, entry.clone(), generation);
                return Ok(entry);
            }
            Ok(None) => true,
            Err(_) => false,
        };
        let this = self.clone();
        let flight_key = full.clone();
        let (result, role) = self
            .flights
            .run(&flight_key, move || {
                async move {
                    let entry = this.fill(data, &full, redis_ok, load).await?;
                    this.keep(full, entry.clone(), generation);
                    Ok(entry)
                }
                .boxed()
            })
            .await;
        let outcome = match (redis_ok, role) {
            (false, _) => "error",
            (true, Role::Leader) => "miss",
            (true, Role::Waiter) => "coalesced",
        };
        count(data, outcome, 1);
        result.map_err(ApiError::from)
    }

    /// The leader's side of a miss: take the fleet's fill lock (or wait for whoever holds it and
    /// use their result), load, store, release.
    async fn fill<T, F, Fut>(
        &self,
        data: DataType,
        full: &str,
        redis_ok: bool,
        load: F,
    ) -> Result<Entry, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, ApiError>>,
    {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let lock = format!("{full}:lock");
        let mut locked = false;
        if redis_ok {
            // Bounded: a holder that died stops blocking anyone once its lease expires (the next
            // poll takes the lock); past twice the lease, load regardless.
            let deadline = Instant::now() + FILL_LEASE * 2;
            loop {
                match self.try_fill(full, &lock, &owner).await {
                    Ok(Fill::Found(bytes)) => return Ok(decode(bytes)),
                    Ok(Fill::Locked) => {
                        locked = true;
                        break;
                    }
                    Ok(Fill::Wait) if Instant::now() < deadline => {
                        tokio::time::sleep(FILL_POLL).await
                    }
                    Ok(Fill::Wait) | Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        let value = load().await?;
        metrics::histogram!("cache_load_duration_seconds", "type" => data.as_str())
            .record(started.elapsed().as_secs_f64());
        let bytes = Bytes::from(serde_json::to_vec(&value)?);
        let ttl = self.entry_ttl(data, value.is_some());
        // A failed write-back is counted in `bounded` and otherwise harmless.
        let _ = if locked {
            self.store_and_unlock(full, &lock, &owner, &bytes, ttl)
                .await
        } else {
            self.set_many(&[(full.to_owned(), bytes.clone(), ttl)])
                .await
        };
        Ok(value.map(|_| bytes))
    }

    async fn try_fill(&self, full: &str, lock: &str, owner: &str) -> Result<Fill, CacheError> {
        let mut conn = self.redis.clone();
        let lease = FILL_LEASE.as_millis() as u64;
        let reply: Vec<redis::Value> = self
            .bounded("fill", async move {
                FILL.key(full)
                    .key(lock)
                    .arg(owner)
                    .arg(lease)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match reply.as_slice() {
            [redis::Value::Int(1), redis::Value::BulkString(v)] => {
                Fill::Found(Bytes::from(v.clone()))
            }
            [redis::Value::Int(2)] => Fill::Locked,
            _ => Fill::Wait,
        })
    }

    async fn store_and_unlock(
        &self,
        full: &str,
        lock: &str,
        owner: &str,
        bytes: &Bytes,
        ttl: u32,
    ) -> Result<(), CacheError> {
        let mut conn = self.redis.clone();
        self.bounded("store", async move {
            STORE
                .key(full)
                .key(lock)
                .arg(owner)
                .arg(bytes.as_ref())
                .arg(ttl)
                .invoke_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Copies an entry into the in-process layer (if on, and nothing was invalidated meanwhile).
    fn keep(&self, full: String, entry: Entry, generation: u64) {
        if let Some(l1) = &self.l1 {
            l1.insert(full, entry, generation);
        }
    }

    /// Bulk cache-aside: one MGET for all `keys`; `load_missing` gets the indices of the keys
    /// that missed and must return one value per index, in order (it is called at most once);
    /// the loaded values go back to Redis in one pipeline.
    pub async fn get_multiple<T, F, Fut>(
        &self,
        data: DataType,
        keys: &[String],
        load_missing: F,
    ) -> Result<Vec<Entry>, ApiError>
    where
        T: Serialize,
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<Option<T>>, ApiError>>,
    {
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let generation = self.l1.as_ref().map_or(0, L1::generation);
        let mut found: Vec<Option<Entry>> = match &self.l1 {
            Some(l1) => full.iter().map(|k| l1.get(k)).collect(),
            None => vec![None; full.len()],
        };
        // One MGET for whatever the in-process layer did not have.
        let remote: Vec<usize> = (0..found.len()).filter(|i| found[*i].is_none()).collect();
        if !remote.is_empty() {
            let remote_keys: Vec<String> = remote.iter().map(|&i| full[i].clone()).collect();
            match self.mget(&remote_keys).await {
                Ok(values) => {
                    for (&i, v) in remote.iter().zip(values) {
                        if let Some(bytes) = v {
                            let entry = decode(bytes);
                            self.keep(full[i].clone(), entry.clone(), generation);
                            found[i] = Some(entry);
                        }
                    }
                }
                Err(_) => count(data, "error", remote.len() as u64),
            }
        }
        let missing: Vec<usize> = (0..found.len()).filter(|i| found[*i].is_none()).collect();
        count(data, "hit", (full.len() - missing.len()) as u64);
        if !missing.is_empty() {
            count(data, "miss", missing.len() as u64);
            let started = Instant::now();
            let loaded = load_missing(missing.clone()).await?;
            metrics::histogram!("cache_load_duration_seconds", "type" => data.as_str())
                .record(started.elapsed().as_secs_f64());
            if loaded.len() != missing.len() {
                return Err(ApiError::Internal(format!(
                    "bulk load returned {} values for {} keys",
                    loaded.len(),
                    missing.len()
                )));
            }
            let mut writes = Vec::with_capacity(missing.len());
            for (&i, value) in missing.iter().zip(loaded) {
                let bytes = Bytes::from(serde_json::to_vec(&value)?);
                writes.push((
                    full[i].clone(),
                    bytes.clone(),
                    self.entry_ttl(data, value.is_some()),
                ));
                let entry = value.map(|_| bytes);
                self.keep(full[i].clone(), entry.clone(), generation);
                found[i] = Some(entry);
            }
            let _ = self.set_many(&writes).await;
        }
        Ok(found.into_iter().map(Option::flatten).collect())
    }

    /// Deletes keys (built by `shared::keys`) after a mutation.
    pub async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        if let Some(l1) = &self.l1 {
            l1.remove(&full);
        }
        // Delete, and tell every replica to drop its in-process copy, in one round trip.
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&full).ignore();
        pipe.cmd("PUBLISH")
            .arg(self.invalidation_channel())
            .arg(full.join("\n"))
            .ignore();
        let mut conn = self.redis.clone();
        self.bounded(
            "del",
            async move { pipe.query_async::<()>(&mut conn).await },
        )
        .await
    }

    /// Deletes every key matching the patterns (built by `shared::keys`; `*` allowed) with SCAN
    /// and UNLINK in batches, never KEYS. Returns how many were deleted.
    pub async fn delete_matching(&self, patterns: &[String]) -> Result<u64, CacheError> {
        let mut deleted = 0u64;
        for pattern in patterns {
            let full = self.key(pattern);
            if !pattern.contains('*') {
                let mut conn = self.redis.clone();
                let n: u64 = self
                    .bounded("unlink", async move {
                        redis::cmd("UNLINK").arg(&full).query_async(&mut conn).await
                    })
                    .await?;
                deleted += n;
                continue;
            }
            let mut cursor: u64 = 0;
            loop {
                let mut conn = self.redis.clone();
                let scan = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&full)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned();
                let (next, batch): (u64, Vec<String>) = self
                    .bounded("scan", async move { scan.query_async(&mut conn).await })
                    .await?;
                if !batch.is_empty() {
                    let mut conn = self.redis.clone();
                    let n: u64 = self
                        .bounded("unlink", async move {
                            redis::cmd("UNLINK")
                                .arg(&batch)
                                .query_async(&mut conn)
                                .await
                        })
                        .await?;
                    deleted += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        let mut conn = self.redis.clone();
        let channel = self.invalidation_channel();
        self.bounded("publish", async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(l1::ALL)
                .query_async::<()>(&mut conn)
                .await
        })
        .await?;
        Ok(deleted)
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.redis.clone();
        self.bounded("ping", async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await
    }

    /// A clone of the connection manager, for modules that run their own commands.
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    fn entry_ttl(&self, data: DataType, present: bool) -> u32 {
        let ttl = self.ttl(data);
        if present {
            ttl
        } else {
            ttl.min(NEGATIVE_TTL_SECS)
        }
    }

    async fn get(&self, full_key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut conn = self.redis.clone();
        let cmd = redis::cmd("GET").arg(full_key).to_owned();
        self.bounded("get", async move {
            cmd.query_async::<Option<Vec<u8>>>(&mut conn).await
        })
        .await
        .map(|v| v.map(Bytes::from))
    }

    async fn mget(&self, full_keys: &[String]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let mut conn = self.redis.clone();
        let cmd = redis::cmd("MGET").arg(full_keys).to_owned();
        let values = self
            .bounded("mget", async move {
                cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await
            })
            .await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    /// `SET key value EX ttl` for each entry, in one pipelined round trip.
    async fn set_many(&self, entries: &[(String, Bytes, u32)]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for (key, value, ttl) in entries {
            pipe.cmd("SET")
                .arg(key)
                .arg(value.as_ref())
                .arg("EX")
                .arg(*ttl)
                .ignore();
        }
        let mut conn = self.redis.clone();
        self.bounded(
            "set",
            async move { pipe.query_async::<()>(&mut conn).await },
        )
        .await
    }

    /// Runs one Redis call under the configured bound, counting failures by kind.
    pub(crate) async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => {
                let kind = if source.is_timeout() {
                    "timeout"
                } else {
                    "error"
                };
                metrics::counter!("redis_errors_total", "op" => op, "kind" => kind).increment(1);
                tracing::warn!(op, error = %source, "redis command failed");
                Err(CacheError::Redis { op, source })
            }
            Err(_) => {
                metrics::counter!("redis_errors_total", "op" => op, "kind" => "timeout")
                    .increment(1);
                Err(CacheError::Timeout { op })
            }
        }
    }
}

fn decode(bytes: Bytes) -> Entry {
    if bytes.as_ref() == NULL {
        None
    } else {
        Some(bytes)
    }
}

fn count(data: DataType, result: &'static str, n: u64) {
    if n > 0 {
        crate::telemetry::cache_counter(data, result).increment(n);
    }
}
