//! The fleet's fill lock: one load per key for the whole fleet. A miss takes `{<key>}:lock`
//! (`fill.lua`: the value if someone stored it meanwhile, else the lock, else wait), loads while
//! renewing the lease every half lease (`extend.lua`), and writes back only while the lock is
//! still its own (`store.lua`: a mutation meanwhile deleted key and lock together, so a load that
//! read the old row stores nothing), then lets go (`release.lua`). Whatever goes wrong, the lock
//! goes with it, so waiters never sit out a lease; a holder that dies is outlived by its lease.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::{DataType, keys};

use super::{Cache, Entry, Loaded, decode};
use crate::meters;
use crate::redis::RedisError;

pub(super) static FILL: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("fill.lua")));

pub(super) static STORE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("store.lua")));

static EXTEND: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("extend.lua")));

static RELEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("release.lua")));

/// A fill lock's lease: a load takes milliseconds, and its holder renews the lease every half
/// lease while it loads; if the holder dies, waiters take over after this.
pub const FILL_LEASE: Duration = Duration::from_secs(2);

/// How often a waiter looks for the holder's result.
const FILL_POLL: Duration = Duration::from_millis(10);

/// What a fleet-wide fill attempt found.
pub(super) enum Fill {
    Found(Bytes),
    Locked,
    Wait,
}

impl Cache {
    /// The leader's side of a miss: take the fleet's fill lock (or wait for whoever holds it and
    /// use their result), load, store, release.
    pub(super) async fn fill<E, F, Fut>(
        &self,
        data: DataType,
        key: &str,
        redis_ok: bool,
        load: F,
    ) -> Result<Entry, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded, E>>,
    {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let lock = keys::fill_lock(key);
        let mut locked = false;
        if redis_ok {
            // Bounded: a holder that died stops blocking anyone once its lease expires (the next
            // poll takes the lock); past twice the lease, load regardless.
            let deadline = Instant::now() + FILL_LEASE * 2;
            loop {
                match self.try_fill(key, &lock, &owner).await {
                    Ok(Fill::Found(bytes)) => match decode(bytes) {
                        Some((entry, _)) => return Ok(entry),
                        // A later release's value: load it ourselves, store nothing over it.
                        None => break,
                    },
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
        let held: &[String] = if locked {
            std::slice::from_ref(&lock)
        } else {
            &[]
        };
        let loaded = match self.holding(held, &owner, load()).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Whatever went wrong, the lock goes now: waiters must not sit out its lease.
                if locked {
                    let _ = self.release(&lock, &owner).await;
                }
                return Err(e);
            }
        };
        meters::cache_load(data, started.elapsed());
        self.at_gate().await;
        // Written back only under our fill lock (stored only while the lock is still ours: a
        // mutation meanwhile deleted both). Without the lock (Redis failed, or the wait for
        // another loader ran out) nothing says no mutation came between our read and now, so the
        // value is served but not stored. A failed write-back is counted by the Redis module
        // and otherwise harmless.
        let _ = match (self.stored_form(data, &loaded), locked) {
            (Some((bytes, ttl)), true) => {
                self.store_and_unlock(key, &lock, &owner, &bytes, ttl).await
            }
            (None, true) => self.release(&lock, &owner).await,
            (_, false) => Ok(()),
        };
        Ok(loaded.entry())
    }

    pub(super) async fn try_fill(
        &self,
        key: &str,
        lock: &str,
        owner: &str,
    ) -> Result<Fill, RedisError> {
        let lease = FILL_LEASE.as_millis() as u64;
        let reply: Vec<redis::Value> = self
            .redis
            .eval("fill", &FILL, &[key, lock], (owner, lease))
            .await?;
        Ok(match reply.as_slice() {
            [redis::Value::Int(1), redis::Value::BulkString(v)] => {
                Fill::Found(Bytes::from(v.clone()))
            }
            [redis::Value::Int(2)] => Fill::Locked,
            _ => Fill::Wait,
        })
    }

    pub(super) async fn store_and_unlock(
        &self,
        key: &str,
        lock: &str,
        owner: &str,
        bytes: &Bytes,
        ttl: u32,
    ) -> Result<(), RedisError> {
        self.redis
            .eval("store", &STORE, &[key, lock], (owner, bytes.as_ref(), ttl))
            .await
    }

    /// Runs `load` while renewing the fill locks it holds every half lease, so a load slower
    /// than the lease keeps them (a waiter would otherwise take over and load again).
    pub(super) async fn holding<T>(
        &self,
        locks: &[String],
        owner: &str,
        load: impl Future<Output = T>,
    ) -> T {
        if locks.is_empty() {
            return load.await;
        }
        let mut load = std::pin::pin!(load);
        let lease = FILL_LEASE.as_millis() as u64;
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + FILL_LEASE / 2, FILL_LEASE / 2);
        loop {
            tokio::select! {
                out = &mut load => return out,
                _ = renew.tick() => {
                    futures::future::join_all(locks.iter().map(|lock| async move {
                        self.redis
                            .eval::<i64>("fill", &EXTEND, &[lock.as_str()], (owner, lease))
                            .await
                    }))
                    .await;
                }
            }
        }
    }

    /// Releases the locks of `locks` this load took (`locked`).
    pub(super) async fn release_all(&self, locks: &[String], locked: &[bool], owner: &str) {
        let held = locks.iter().zip(locked).filter(|(_, l)| **l);
        futures::future::join_all(held.map(|(lock, _)| self.release(lock, owner))).await;
    }

    pub(super) async fn release(&self, lock: &str, owner: &str) -> Result<(), RedisError> {
        self.redis
            .eval::<i64>("release", &RELEASE, &[lock], owner)
            .await
            .map(|_| ())
    }
}
