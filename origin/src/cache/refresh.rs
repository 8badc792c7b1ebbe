//! Refresh ahead: a hit on a value in the last part of its Redis TTL ([`refresh_window`])
//! reloads it in the background — one refresh per key per process, and through the fill lock
//! (taken with `SET NX`, a refresh never waits) one per fleet — and stores it with a fresh TTL
//! only while the lock is still its own (`refresh.lua`, as `store.lua` for a load). The request is
//! served the current value at once: a key read steadily never expires, and no request waits on a
//! database load for it after the first.

use std::future::Future;
use std::time::{Duration, Instant};

use shared::{DataType, keys};

use super::lock::FILL_LEASE;
use super::{Cache, Loaded, l1::L1};
use crate::meters;

static REFRESH: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("refresh.lua")));

/// When a hit starts a refresh: in the last fifth of the Redis TTL, but never less than twice
/// L1's lifetime (a hot key is read from Redis only when its L1 copy ends, so the window must
/// hold at least one such read), and never more than half the TTL.
pub fn refresh_window(ttl: Duration, l1_ttl: Duration) -> Duration {
    (ttl / 5).max(l1_ttl * 2).min(ttl / 2)
}

impl Cache {
    /// Whether a hit on a value expiring at `expires_at_ms` (Unix ms; `None`: unknown, a value
    /// of the previous release's format, which simply expires) should be refreshed ahead.
    pub(super) fn refresh_due(&self, data: DataType, expires_at_ms: Option<u64>) -> bool {
        let Some(expires_at_ms) = expires_at_ms else {
            return false;
        };
        let left = expires_at_ms.saturating_sub(super::format::now_ms());
        let ttl = Duration::from_secs(self.ttl(data).into());
        let l1_ttl = self.l1.as_ref().map_or(Duration::ZERO, L1::ttl);
        left > 0 && u128::from(left) < refresh_window(ttl, l1_ttl).as_millis()
    }

    /// Reloads `key` in the background (one refresh per key per process, and through the fill
    /// lock one per fleet); the caller does not wait.
    pub(super) fn refresh_ahead<E, F, Fut>(&self, data: DataType, key: String, load: F)
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
    {
        let fresh = self
            .refreshing
            .lock()
            .map(|mut set| set.insert(key.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = this.refresh(data, &key, load).await;
            if let Ok(mut set) = this.refreshing.lock() {
                set.remove(&key);
            }
            meters::cache_refresh(data, outcome);
        });
    }

    pub(super) async fn refresh<E, F, Fut>(
        &self,
        data: DataType,
        key: &str,
        load: F,
    ) -> &'static str
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded, E>>,
    {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let lock = keys::fill_lock(key);
        let lease = FILL_LEASE.as_secs() as u32;
        match self
            .redis
            .set_new("refresh", &lock, owner.as_bytes(), lease)
            .await
        {
            Ok(true) => {}
            // Another process is loading it: nothing to do.
            Ok(false) => return "skipped",
            Err(_) => return "failed",
        }
        let started = Instant::now();
        let Ok(loaded) = load().await else {
            let _ = self.release(&lock, &owner).await;
            return "failed";
        };
        meters::cache_load(data, started.elapsed());
        let Some((bytes, ttl)) = self.stored_form(data, &loaded) else {
            let _ = self.release(&lock, &owner).await;
            return "skipped";
        };
        let stored = self
            .redis
            .eval::<i64>(
                "refresh",
                &REFRESH,
                &[key, &lock],
                (&owner, bytes.as_ref(), ttl),
            )
            .await;
        match stored {
            Ok(1) => {
                self.stats
                    .refreshed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "refreshed"
            }
            Ok(_) => "superseded",
            Err(_) => "failed",
        }
    }
}
