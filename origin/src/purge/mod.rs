//! Telling the caches downstream of the origin what changed: after a catalog change commits and
//! its Redis keys are invalidated, the cache tags of those keys ([`shared::tags::for_key`]) are
//! purged from every cache configured — the edge (its purge route), Cloudflare's cache (its API)
//! and the Next.js frontend's data cache (its revalidation route). The one module that talks to
//! them.
//!
//! - [`Purger`] (here): what mutations call. It never waits: tags gather in memory for
//!   `PURGE_BATCH_MS` and go to the fleet's queue in Redis in one round trip.
//! - [`queue`]: the fleet's queue, per sink: tags to purge hard and soft, each once, the tags in
//!   flight, the sink's budget (`*_PURGE_RATE`), as Lua scripts.
//! - [`sender`]: the one replica holding the sender's lease takes each sink's next call within
//!   its budget and sends it; the lease moves when its holder dies.
//! - [`sink`]: one call to one cache, and what its answer means.
//!
//! Invariants:
//! - A change is never lost to load: when the queue holds more than a sink's budget sends in
//!   [`queue::MERGE_AFTER`], product tags merge into their country's tag (`prices:p:c`), which
//!   covers them. Overload never escalates to a whole-catalog purge; `catalog` goes out only when
//!   an operator drops a whole data type. The worst case is the TTL: a tag still unsent after
//!   every cache has let its copies go ([`queue::TAG_LIFETIME`]) is dropped and counted.
//! - The fleet stays within each cache's budget: one sender at a time, and the budget itself
//!   lives in Redis, so a new sender inherits it.
//! - A price change purges soft (the copies stay, stale, while one refresh replaces them: the
//!   herd a purge sends to the origin never forms); taking a product off sale, a new product and
//!   an operator's drop purge hard ([`Kind`]).
//! - Every outcome is counted (`purge_calls_total{sink, outcome}`, `purge_tags_total{sink}`,
//!   `purge_queue_tags{sink}`, `purge_queue_oldest_seconds{sink}`, `purge_merged_tags_total`,
//!   `purge_expired_tags_total`) and alerted on when failures or delay persist.

mod queue;
mod sender;
mod sink;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use queue::{MERGE_AFTER, SENDER_LEASE_KEY, TAG_LIFETIME};
pub use sink::{Outcome, Sink, Target};

use crate::config::PurgeSettings;
use crate::meters;
use crate::redis::Redis;

/// Tags per call: what every sink takes in one request (Cloudflare: 100 purge operations per
/// request on every plan; the edge's route and the Next.js route take as many).
pub const CALL_TAGS: usize = shared::types::MAX_PURGE_TAGS;

/// Tags held in one replica's memory while Redis cannot take them; past it, product tags merge
/// into their countries' (never into the whole catalog).
const LOCAL_CAP: usize = 10_000;

/// How a cache lets go of the copies a tag covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Kept and marked stale: served at once while one refresh replaces them (a price change:
    /// a buyer who acts on the stale price is refused with `price_changed` and charged nothing).
    Soft,
    /// Gone: the next read fetches (a product off sale, a new one, an operator's drop).
    Hard,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Soft => "s",
            Kind::Hard => "h",
        }
    }
}

/// Tags waiting in this replica for the next round trip to the queue.
#[derive(Default)]
struct Pending {
    hard: BTreeSet<String>,
    soft: BTreeSet<String>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Pending {
    fn add(&mut self, tags: impl IntoIterator<Item = String>, kind: Kind) {
        for tag in tags {
            match kind {
                Kind::Hard => {
                    self.soft.remove(&tag);
                    self.hard.insert(tag);
                }
                Kind::Soft if !self.hard.contains(&tag) => {
                    self.soft.insert(tag);
                }
                Kind::Soft => {}
            }
        }
        if self.hard.len() + self.soft.len() > LOCAL_CAP {
            let merge = |set: &mut BTreeSet<String>| {
                *set = std::mem::take(set)
                    .into_iter()
                    .map(|t| shared::tags::country_of(&t).unwrap_or(t))
                    .collect();
            };
            merge(&mut self.hard);
            merge(&mut self.soft);
        }
    }

    fn is_empty(&self) -> bool {
        self.hard.is_empty() && self.soft.is_empty()
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
}

/// The handle mutations use; cheap to clone.
#[derive(Clone)]
pub struct Purger {
    shared: Option<Arc<Shared>>,
}

impl Purger {
    /// Starts queueing for the configured sinks (none configured: a purger that does nothing);
    /// with `stopping`, this replica also competes for the sender's lease and sends (`serve`),
    /// until it is set. `origin sync` only queues: the serving fleet sends.
    pub fn start(
        settings: &PurgeSettings,
        roots: &crate::outbound::Roots,
        redis: &Redis,
        stopping: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Purger, crate::outbound::ClientError> {
        let sinks = Sink::configured(settings);
        if sinks.is_empty() {
            return Ok(Purger::disabled());
        }
        let queue = queue::Queue::new(
            redis.clone(),
            sinks
                .iter()
                .map(|s| queue::SinkQueue::new(s.name(), s.rate, CALL_TAGS))
                .collect(),
        );
        if let Some(stopping) = stopping {
            // Never redirected: every call carries a sink's secret (docs/security.md).
            let http = roots.client(
                "EDGE_PURGE_URL/CLOUDFLARE_API_URL/NEXT_REVALIDATE_URL",
                settings.timeout,
                crate::outbound::Redirects::None,
            )?;
            sender::spawn(queue.clone(), sinks, http, settings.batch, stopping);
        }
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(enqueue(shared.clone(), queue, settings.batch));
        Ok(Purger {
            shared: Some(shared),
        })
    }

    pub fn disabled() -> Purger {
        Purger { shared: None }
    }

    /// Whether no sink is configured (every purge is dropped).
    pub fn is_disabled(&self) -> bool {
        self.shared.is_none()
    }

    /// Queues the purge of `tags`; never waits.
    pub fn tags(&self, tags: Vec<String>, kind: Kind) {
        let Some(shared) = &self.shared else { return };
        if tags.is_empty() {
            return;
        }
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(tags, kind);
        shared.wake.notify_one();
    }

    /// Queues the purge of what invalidating these Redis keys makes out of date.
    pub fn keys(&self, keys: &[String], kind: Kind) {
        self.tags(
            shared::tags::for_keys(keys.iter().map(String::as_str)),
            kind,
        );
    }

    /// Waits (at most `within`) until every tag queued here so far is in the fleet's queue: for a
    /// process about to exit (`origin sync`). The serving fleet sends them.
    pub async fn flush(&self, within: Duration) {
        let Some(shared) = &self.shared else { return };
        let (done, wait) = tokio::sync::oneshot::channel();
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flushes
            .push(done);
        shared.wake.notify_one();
        let _ = tokio::time::timeout(within, wait).await;
    }
}

/// Moves what gathers in memory to the fleet's queue, a batch window at a time; while Redis
/// cannot take it, it stays (bounded by [`LOCAL_CAP`]) and is tried again every second.
async fn enqueue(shared: Arc<Shared>, queue: queue::Queue, batch: Duration) {
    loop {
        shared.wake.notified().await;
        tokio::time::sleep(batch).await;
        loop {
            let (hard, soft, flushes) = {
                let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                let flushes = std::mem::take(&mut pending.flushes);
                let hard: Vec<String> = std::mem::take(&mut pending.hard).into_iter().collect();
                let soft: Vec<String> = std::mem::take(&mut pending.soft).into_iter().collect();
                (hard, soft, flushes)
            };
            if hard.is_empty() && soft.is_empty() {
                for done in flushes {
                    let _ = done.send(());
                }
                break;
            }
            match queue.enqueue(&hard, &soft).await {
                Ok(merged) => {
                    for (sink, merged) in queue.sinks.iter().zip(merged) {
                        meters::purge_merged(sink.name, merged);
                    }
                    for done in flushes {
                        let _ = done.send(());
                    }
                    if shared
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_empty()
                    {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tags = hard.len() + soft.len(), "purge queue unreachable; held here");
                    meters::purge_enqueue_failed();
                    {
                        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                        pending.add(hard, Kind::Hard);
                        pending.add(soft, Kind::Soft);
                        pending.flushes.extend(flushes);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
