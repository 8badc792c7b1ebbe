//! L1, the in-process cache in front of Redis: a small, short-lived copy of hot entries (moka),
//! kept correct across replicas by an invalidation bus on Redis pub/sub.
//!
//! - Every mutation removes its keys here, then deletes them in Redis and publishes them on
//!   the invalidation channel (`shared::keys::INVALIDATION_CHANNEL`, under the deployment's
//!   prefix) in the same pipeline; every origin's subscriber removes them from its own layer.
//!   Entries are keyed, and messages spelled, as `shared::keys` builds keys (without the
//!   prefix, which is the same for every replica of a deployment).
//! - The layer is used only while the subscription is live: until it is confirmed, and from the
//!   moment it drops, reads bypass it and it is emptied, so a missed message can never leave a
//!   stale copy behind.
//! - A read that fetched from Redis stores its copy only if no invalidation arrived since it
//!   started (a generation counter), so an in-flight read cannot re-insert what a concurrent
//!   mutation just removed.
//! - Entries live at most `L1_TTL_MS` (default 2 s): the bound on staleness should a message be
//!   delayed, and on how long a price outlives its Redis expiry here.
//!
//! What remains: between a mutation's commit and a replica processing the message there is the
//! pub/sub delivery time (tens of microseconds on one host); a read on that replica inside that
//! window can still see the old value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use shared::keys::INVALIDATION_CHANNEL;

use super::Entry;
use crate::redis::Redis;

/// Message meaning "drop everything" (pattern invalidations).
pub const ALL: &str = "*";

#[derive(Clone)]
pub struct L1 {
    entries: moka::sync::Cache<String, Entry>,
    /// True only while the invalidation subscription is confirmed live.
    live: Arc<AtomicBool>,
    /// Bumped on every invalidation seen (local or from the bus).
    generation: Arc<AtomicU64>,
    ttl: Duration,
    /// Held by every handle but the subscriber's own: when the last one is dropped (the
    /// application with it), the subscriber stops instead of resubscribing for ever.
    owners: Option<Arc<tokio::sync::watch::Sender<()>>>,
}

impl L1 {
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Entry| {
                let size = k.len() + v.as_ref().map_or(0, |v| v.bytes.len() + v.etag.len()) + 64;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        L1 {
            entries,
            live: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
            ttl,
            owners: Some(Arc::new(tokio::sync::watch::channel(()).0)),
        }
    }

    /// Longest an entry lives here.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(key)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores a copy read at `generation`, unless an invalidation arrived since.
    pub fn insert(&self, key: String, entry: Entry, generation: u64) {
        if self.live.load(Ordering::Acquire) && self.generation() == generation {
            self.entries.insert(key, entry);
        }
    }

    pub fn remove(&self, keys: &[String]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for k in keys {
            self.entries.invalidate(k);
        }
    }

    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    fn set_live(&self, live: bool) {
        self.clear();
        self.live.store(live, Ordering::Release);
        self.clear();
        crate::meters::cache_l1_live(live);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Applies one bus message: newline-separated full keys, or [`ALL`].
    fn apply(&self, payload: &str) {
        if payload == ALL {
            self.clear();
        } else {
            let keys: Vec<String> = payload.lines().map(str::to_owned).collect();
            self.remove(&keys);
        }
    }

    /// Keeps a subscription to the invalidation channel alive for as long as the layer has an
    /// owner, resubscribing after a short pause; the layer is live only while subscribed.
    pub fn spawn_subscriber(&self, redis: Redis) {
        let Some(owners) = &self.owners else {
            return;
        };
        let mut gone = owners.subscribe();
        let l1 = L1 {
            owners: None,
            ..self.clone()
        };
        tokio::spawn(async move {
            let subscribed = async {
                loop {
                    if let Ok(messages) = redis.subscribe(INVALIDATION_CHANNEL).await {
                        l1.set_live(true);
                        let mut messages = std::pin::pin!(messages);
                        while let Some(payload) = messages.next().await {
                            l1.apply(&payload);
                        }
                    }
                    l1.set_live(false);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            };
            tokio::select! {
                () = subscribed => {}
                // Err: every owner is gone.
                _ = gone.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Value;
    use bytes::Bytes;

    #[test]
    fn only_live_and_only_unchanged_generations_are_cached() {
        let l1 = L1::new(1 << 20, Duration::from_secs(5));
        let g = l1.generation();
        l1.insert("k".into(), Some(Value::new(Bytes::from_static(b"v"))), g);
        assert_eq!(l1.get("k"), None, "not live yet");
        l1.set_live(true);
        let g = l1.generation();
        l1.insert("k".into(), Some(Value::new(Bytes::from_static(b"v"))), g);
        assert_eq!(
            l1.get("k"),
            Some(Some(Value::new(Bytes::from_static(b"v"))))
        );
        let stale = l1.generation();
        l1.apply("k\nother");
        assert_eq!(l1.get("k"), None);
        l1.insert(
            "k".into(),
            Some(Value::new(Bytes::from_static(b"old"))),
            stale,
        );
        assert_eq!(
            l1.get("k"),
            None,
            "a read that raced an invalidation is not kept"
        );
        let g = l1.generation();
        l1.insert("k".into(), None, g);
        assert_eq!(l1.get("k"), Some(None), "absences are cached too");
        l1.apply(ALL);
        assert_eq!(l1.get("k"), None);
        l1.set_live(false);
        assert_eq!(l1.get("k"), None);
    }
}
