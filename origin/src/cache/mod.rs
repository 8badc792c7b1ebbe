//! Cache-aside over Redis: the guide's section 1. It knows keys, TTLs and bytes; it does not know
//! HTTP, and a loader's error comes back to its caller as the loader's own type. A file per
//! concern: [`l1`] (the in-process layer), [`flight`] (one load per key per process), [`lock`] (one
//! per key per fleet: the fill lock and its scripts), [`refresh`] (refresh ahead), [`compressed`]
//! (each value's compressed forms, made once).
//!
//! - [`Cache::get_or_load`] is the guide's `cacheGet`: L1 ([`l1`]), then GET;
//!   on a miss one load per key per process ([`flight`]) and one per key for the whole fleet (a
//!   short Redis fill lock, `fill.lua`/`store.lua`; waiters are served the stored result, and a
//!   dead holder's lease simply expires), written back with the policy TTL, counted.
//! - [`Cache::get_multiple`] is the guide's `cacheGetMultiple`: one MGET, one load for every
//!   missing key, one pipelined write-back.
//! - Refresh ahead: a hit on a value in the last part of its Redis TTL ([`refresh_window`])
//!   reloads it in the background, under the same fleet-wide lock, and stores it with a fresh
//!   TTL; the request is served the current value at once. A key read steadily therefore never
//!   expires, and no request waits on a database load for it after the first.
//! - [`Cache::invalidate`] deletes keys (and their fill locks, so a refresh in flight cannot put
//!   an old value back) after a mutation; [`Cache::delete_matching`] by pattern.
//!
//! Values are stored as the exact JSON bytes the client gets, so a hit is served without
//! decoding. A known absence (no such price) is stored as `null` with a short TTL, so repeated
//! asks for it do not reach PostgreSQL either.
//!
//! Redis is an optimisation here, never a dependency: every command is bounded (see
//! [`crate::redis`]); on error or timeout the value is loaded from PostgreSQL, the error is
//! counted, and caching resumes by itself when Redis returns.

pub mod compressed;
pub mod flight;
pub mod format;
pub mod l1;
mod lock;
mod refresh;

pub use lock::FILL_LEASE;
pub use refresh::refresh_window;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use shared::etag::strong_etag;
use shared::{DataType, keys};

use crate::meters;
use crate::redis::{Redis, RedisError};
use flight::{Flights, Role};
use l1::L1;

/// A cached value: the JSON bytes and their strong `ETag` (`shared::etag`), computed once when
/// the value enters this process (from Redis or a load), so a hit hashes and formats nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub bytes: Bytes,
    /// `"<xxh3 hex>"`, quotes included: shared, so a header made from it copies nothing.
    pub etag: Bytes,
}

impl Value {
    pub fn new(bytes: Bytes) -> Value {
        let etag = Bytes::from(strong_etag(&bytes));
        Value { bytes, etag }
    }

    pub fn etag_str(&self) -> &str {
        std::str::from_utf8(&self.etag).unwrap_or_default()
    }
}

/// A cached value, or `None` for a known absence.
pub type Entry = Option<Value>;

/// What a loader found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// The value: stored with the data type's TTL.
    Found(Bytes),
    /// Nothing, for a name that exists (a real service not sold there): stored as `null` for at
    /// most [`NEGATIVE_TTL_SECS`].
    Absent,
    /// Nothing, for a name nobody knows (a made-up code): remembered in L1 only, never written
    /// to Redis, so made-up names cannot crowd the shared Redis (sessions live there too).
    Unknown,
}

impl Loaded {
    fn entry(&self) -> Entry {
        match self {
            Loaded::Found(bytes) => Some(Value::new(bytes.clone())),
            Loaded::Absent | Loaded::Unknown => None,
        }
    }
}

/// Longest a known absence is remembered: short, so a new price shows up quickly, and so
/// requests for made-up codes cannot park data in Redis for an hour.
const NEGATIVE_TTL_SECS: u32 = 30;

const NULL: &[u8] = b"null";

/// Why a cache read produced no value: the loader failed (its own error, shared by every caller
/// that waited on the same load), or the load task itself died.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    #[error("{0}")]
    Loader(Arc<E>),
    #[error("{0}")]
    Aborted(String),
}

#[derive(Clone)]
pub struct Cache {
    redis: Redis,
    ttl_divisor: u32,
    flights: Flights,
    /// L1, when enabled ([`Cache::enable_l1`]).
    l1: Option<L1>,
    /// Keys this process is refreshing ahead now (one refresh per key per process).
    refreshing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    stats: Arc<Stats>,
    /// A test seam ([`Cache::gate_stores`]): when set, every write-back of a load waits here.
    gate: Arc<std::sync::Mutex<Option<Arc<StoreGate>>>>,
}

/// Holds every write-back of a load (after the database answered, before Redis is written)
/// until the test opens it: the seam that makes a mutation land inside a load, so the race
/// between them can be tested deterministically. Unused in production (one uncontended lock
/// on the miss path when unset).
pub struct StoreGate {
    arrived: tokio::sync::Semaphore,
    open: tokio::sync::Semaphore,
}

impl Default for StoreGate {
    fn default() -> Self {
        StoreGate {
            arrived: tokio::sync::Semaphore::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

impl StoreGate {
    /// Waits until a load has reached the gate.
    pub async fn arrived(&self) {
        if let Ok(permit) = self.arrived.acquire().await {
            permit.forget();
        }
    }

    /// Lets every held and later write-back through.
    pub fn open(&self) {
        self.open
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    async fn pass(&self) {
        self.arrived.add_permits(1);
        let _ = self.open.acquire().await;
    }
}

/// What a test (or an operator reading `/metrics`) needs to know about loads.
#[derive(Default)]
pub struct Stats {
    /// Requests that waited on a database load (a miss, a coalesced wait, or Redis trouble).
    pub waited: std::sync::atomic::AtomicU64,
    /// Values reloaded and stored ahead of their expiry.
    pub refreshed: std::sync::atomic::AtomicU64,
}

impl Cache {
    /// `ttl_divisor` divides every policy TTL (`CACHE_TTL_DIVISOR`, tests only).
    pub fn new(redis: Redis, ttl_divisor: u32) -> Cache {
        Cache {
            redis,
            ttl_divisor,
            flights: Flights::default(),
            l1: None,
            refreshing: Arc::default(),
            stats: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// Installs a [`StoreGate`] (tests only): loads from now on wait at it before they write
    /// back.
    pub fn gate_stores(&self) -> Arc<StoreGate> {
        let gate = Arc::new(StoreGate::default());
        if let Ok(mut slot) = self.gate.lock() {
            *slot = Some(gate.clone());
        }
        gate
    }

    async fn at_gate(&self) {
        let gate = self.gate.lock().ok().and_then(|g| g.clone());
        if let Some(gate) = gate {
            gate.pass().await;
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Turns on L1 and its invalidation subscriber (needs a Tokio runtime).
    pub fn enable_l1(&mut self, max_bytes: u64, ttl: Duration) {
        let l1 = L1::new(max_bytes, ttl);
        l1.spawn_subscriber(self.redis.clone());
        self.l1 = Some(l1);
    }

    /// Whether L1 is on and its subscription live.
    pub fn l1_live(&self) -> bool {
        self.l1.as_ref().is_some_and(L1::is_live)
    }

    /// How many invalidations this replica's L1 has applied (its own and the bus's); 0 without
    /// L1. Rises once a message from another replica has been processed here.
    pub fn l1_generation(&self) -> u64 {
        self.l1.as_ref().map_or(0, L1::generation)
    }

    /// Redis TTL of a data type under this configuration.
    pub fn ttl(&self, data: DataType) -> u32 {
        data.policy().scaled_down(self.ttl_divisor).redis_ttl
    }

    /// The cache-aside read of `key` (built by `shared::keys`): L1, then Redis;
    /// on a miss (or Redis trouble) one load per key per process and, through the fill lock,
    /// per fleet, written back with the data type's TTL (see [`Loaded`] for what is written).
    ///
    /// `loader` makes the load, and is called only when one is needed (a miss, or a hit due
    /// for refreshing ahead): a hit from Redis clones nothing for a load it will not run, and
    /// this future holds a reference rather than the load's captures. The miss path is boxed:
    /// the flight is most of this future's size, and inline it would be carried by every read,
    /// and copied with it into the box the front door puts a read that missed L1 in (#26).
    pub async fn get_or_load<E, M, F, Fut>(
        &self,
        data: DataType,
        key: String,
        loader: M,
    ) -> Result<Entry, LoadError<E>>
    where
        E: Send + Sync + 'static,
        M: FnOnce() -> F,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
    {
        if let Some(entry) = self.l1.as_ref().and_then(|l1| l1.get(&key)) {
            meters::cache_results(data, "hit", 1);
            return Ok(entry);
        }
        let generation = self.l1.as_ref().map_or(0, L1::generation);
        // One GET: the value's expiry is in it (`format`), for refresh ahead.
        let redis_ok = match self.redis.get(&key).await {
            Ok(Some(bytes)) => match decode(bytes) {
                Some((entry, expires_at_ms)) => {
                    meters::cache_results(data, "hit", 1);
                    if entry.is_some() && self.refresh_due(data, expires_at_ms) {
                        self.refresh_ahead(data, key.clone(), loader());
                    }
                    self.keep(key, entry.clone(), generation);
                    return Ok(entry);
                }
                // A later release's format: a miss for this one (loaded, never misread).
                None => true,
            },
            Ok(None) => true,
            Err(_) => false,
        };
        Box::pin(self.load_missing(data, key, redis_ok, generation, loader())).await
    }

    /// [`Cache::get_or_load`]'s miss: one flight per key in this process.
    async fn load_missing<E, F, Fut>(
        &self,
        data: DataType,
        key: String,
        redis_ok: bool,
        generation: u64,
        load: F,
    ) -> Result<Entry, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
    {
        self.stats
            .waited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let this = self.clone();
        let flight_key = key.clone();
        let (result, role) = self
            .flights
            .run(&flight_key, move || {
                async move {
                    let entry = this.fill(data, &key, redis_ok, load).await?;
                    this.keep(key, entry.clone(), generation);
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
        meters::cache_results(data, outcome, 1);
        result
    }

    /// The value under `key` if L1 holds one, counted as a hit: the part of
    /// [`Cache::get_or_load`] that needs no `String` and no `await`. `None` (not held, a known
    /// absence, or L1 off or not live) sends the caller the full way.
    pub fn l1_hit(&self, data: DataType, key: &str) -> Option<Value> {
        let value = self.l1.as_ref()?.get(key)??;
        meters::cache_results(data, "hit", 1);
        Some(value)
    }

    /// Copies an entry into L1 (if on, and nothing was invalidated meanwhile).
    fn keep(&self, key: String, entry: Entry, generation: u64) {
        if let Some(l1) = &self.l1 {
            l1.insert(key, entry, generation);
        }
    }

    /// Bulk cache-aside: one MGET for all `keys`; `load_missing` gets the indices of the keys
    /// that missed and must return one value per index, in order (it is called at most once);
    /// the loaded values go back to Redis in one pipeline.
    pub async fn get_multiple<E, F, Fut>(
        &self,
        data: DataType,
        keys: &[String],
        load_missing: F,
    ) -> Result<Vec<Entry>, LoadError<E>>
    where
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<Loaded>, E>>,
    {
        let generation = self.l1.as_ref().map_or(0, L1::generation);
        let mut found: Vec<Option<Entry>> = match &self.l1 {
            Some(l1) => keys.iter().map(|k| l1.get(k)).collect(),
            None => vec![None; keys.len()],
        };
        // One MGET for whatever L1 did not have.
        let remote: Vec<usize> = (0..found.len()).filter(|i| found[*i].is_none()).collect();
        if !remote.is_empty() {
            let remote_keys: Vec<String> = remote.iter().map(|&i| keys[i].clone()).collect();
            match self.redis.mget(&remote_keys).await {
                Ok(values) => {
                    for (&i, v) in remote.iter().zip(values) {
                        // A later release's format is a miss here, as for one key.
                        if let Some((entry, _)) = v.and_then(decode) {
                            self.keep(keys[i].clone(), entry.clone(), generation);
                            found[i] = Some(entry);
                        }
                    }
                }
                Err(_) => meters::cache_results(data, "error", remote.len() as u64),
            }
        }
        let missing: Vec<usize> = (0..found.len()).filter(|i| found[*i].is_none()).collect();
        meters::cache_results(data, "hit", (keys.len() - missing.len()) as u64);
        if !missing.is_empty() {
            meters::cache_results(data, "miss", missing.len() as u64);
            self.stats
                .waited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The fill lock of every missed key first (all at once), so that the write-back
            // below can store only what no mutation invalidated meanwhile, as a single read
            // does. A key another loader holds is loaded here too, but left for it to store.
            let owner = uuid::Uuid::new_v4().simple().to_string();
            let lease = FILL_LEASE.as_secs() as u32;
            let locks: Vec<String> = missing.iter().map(|&i| keys::fill_lock(&keys[i])).collect();
            let locked: Vec<bool> = futures::future::join_all(
                locks
                    .iter()
                    .map(|lock| self.redis.set_new("fill", lock, owner.as_bytes(), lease)),
            )
            .await
            .into_iter()
            .map(|r| r.unwrap_or(false))
            .collect();
            let started = Instant::now();
            let held: Vec<String> = locks
                .iter()
                .zip(&locked)
                .filter(|(_, l)| **l)
                .map(|(lock, _)| lock.clone())
                .collect();
            let loaded = match self
                .holding(&held, &owner, load_missing(missing.clone()))
                .await
            {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.release_all(&locks, &locked, &owner).await;
                    return Err(LoadError::Loader(Arc::new(e)));
                }
            };
            meters::cache_load(data, started.elapsed());
            if loaded.len() != missing.len() {
                self.release_all(&locks, &locked, &owner).await;
                return Err(LoadError::Aborted(format!(
                    "bulk load returned {} values for {} keys",
                    loaded.len(),
                    missing.len()
                )));
            }
            self.at_gate().await;
            let mut writes = Vec::with_capacity(missing.len());
            for (n, (&i, loaded)) in missing.iter().zip(loaded).enumerate() {
                if locked[n] {
                    writes.push((n, self.stored_form(data, &loaded)));
                }
                let entry = loaded.entry();
                self.keep(keys[i].clone(), entry.clone(), generation);
                found[i] = Some(entry);
            }
            // Concurrent scripts on the one multiplexed connection: pipelined, one round trip
            // (per master on a cluster).
            let owner = owner.as_str();
            let _ = futures::future::join_all(writes.iter().map(|(n, stored)| {
                let (key, lock) = (&keys[missing[*n]], &locks[*n]);
                async move {
                    match stored {
                        Some((bytes, ttl)) => {
                            self.store_and_unlock(key, lock, owner, bytes, *ttl).await
                        }
                        None => self.release(lock, owner).await,
                    }
                }
            }))
            .await;
        }
        Ok(found.into_iter().map(Option::flatten).collect())
    }

    /// Deletes keys (built by `shared::keys`) after a mutation, here and in every replica's
    /// L1.
    pub async fn invalidate(&self, keys: &[String]) -> Result<(), RedisError> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(l1) = &self.l1 {
            l1.remove(keys);
        }
        // Delete (with the fill locks: a refresh in flight loaded what is now old, and must not
        // store it), and tell every replica to drop its in-process copy, in one round trip.
        let with_locks: Vec<String> = keys
            .iter()
            .cloned()
            .chain(keys.iter().map(|k| keys::fill_lock(k)))
            .collect();
        self.redis
            .delete_and_publish(&with_locks, keys::INVALIDATION_CHANNEL, &keys.join("\n"))
            .await
    }

    /// Deletes every key matching the patterns (built by `shared::keys`; `*` allowed), then
    /// empties every replica's L1. Returns how many keys were deleted.
    pub async fn delete_matching(&self, patterns: &[String]) -> Result<u64, RedisError> {
        let mut deleted = 0u64;
        for pattern in patterns {
            deleted += self.redis.delete_matching(pattern).await?;
        }
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        self.redis
            .publish(keys::INVALIDATION_CHANNEL, l1::ALL)
            .await?;
        Ok(deleted)
    }

    /// What goes to Redis for a loaded value (in this release's [`format`]), and for how long;
    /// `None`: nothing.
    fn stored_form(&self, data: DataType, loaded: &Loaded) -> Option<(Bytes, u32)> {
        let ttl = self.ttl(data);
        let (payload, ttl) = match loaded {
            Loaded::Found(bytes) => (bytes.as_ref(), ttl),
            Loaded::Absent => (NULL, ttl.min(NEGATIVE_TTL_SECS)),
            Loaded::Unknown => return None,
        };
        Some((format::encode(payload, ttl, format::now_ms()), ttl))
    }
}

/// A value read from Redis as an entry and its expiry (Unix ms, when the format says); `None`
/// for a later release's format, which this one must not read.
fn decode(bytes: Bytes) -> Option<(Entry, Option<u64>)> {
    match format::decode(bytes) {
        format::Stored::Readable {
            payload,
            expires_at_ms,
        } => {
            let entry = (payload.as_ref() != NULL).then(|| Value::new(payload));
            Some((entry, expires_at_ms))
        }
        format::Stored::Newer => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_window_holds_an_l1_lifetime_twice_and_at_most_half_the_ttl() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Prices: 60 s in Redis, 2 s in L1: the last 12 s.
        assert_eq!(refresh_window(s(60), s(2)), s(12));
        // Lists: 1 h: the last 12 min.
        assert_eq!(refresh_window(s(3600), s(2)), s(720));
        // A TTL shortened to 5 s: L1's 2 s twice would be 4 s, capped at half the TTL.
        assert_eq!(refresh_window(s(5), s(2)), ms(2500));
        // L1 off: a fifth of the TTL.
        assert_eq!(refresh_window(s(3), Duration::ZERO), ms(600));
    }
}
