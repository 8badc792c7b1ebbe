//! The fleet's one purge sender. Every serving replica competes for a lease in Redis
//! ([`SENDER_LEASE_KEY`], [`LEASE`], renewed every third of it); the holder runs one loop per
//! sink, each taking its next call's tags within the sink's budget and settling them by the
//! answer, so a slow or failing cache never holds the others back. A new holder first queues
//! again whatever its predecessor had in flight. On SIGTERM the holder lets the lease go at once.

use std::time::Duration;

use rand::Rng;

use super::CALL_TAGS;
use super::queue::{Queue, SENDER_LEASE_KEY, Settle, Take};
use super::sink::{Outcome, Sink};
use crate::meters;

/// The sender's lease: a holder that dies is replaced within this.
pub const LEASE: Duration = Duration::from_secs(6);
/// The first wait after a failed call; doubled per failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A 429 without `Retry-After` pauses the sink this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

pub fn spawn(
    queue: Queue,
    sinks: Vec<Sink>,
    http: reqwest::Client,
    poll: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let poll = poll.max(Duration::from_millis(20));
    tokio::spawn(async move {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let redis = queue.redis().clone();
        loop {
            let held = crate::lease::take(&redis, "purge", SENDER_LEASE_KEY, &owner, LEASE).await;
            if !matches!(held, Ok(true)) {
                tokio::select! {
                    _ = tokio::time::sleep(LEASE / 3) => continue,
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
            tracing::info!("this replica sends the fleet's purges");
            meters::purge_sender(true);
            let loops = futures::future::join_all(
                (0..sinks.len()).map(|i| sink_loop(&queue, i, &sinks[i], &http, poll, &owner)),
            );
            let renew = async {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    let ms = LEASE.as_millis() as u64;
                    // Redis unreachable (an error): the sinks' loops wait on it too, and
                    // renewing resumes; another replica takes over only once the lease lapsed,
                    // and the budget lives in Redis, so two senders for a moment share it.
                    let renewed =
                        crate::lease::change(&redis, "purge", SENDER_LEASE_KEY, &owner, &owner, ms)
                            .await;
                    if let Ok(false) = renewed {
                        return;
                    }
                }
            };
            let stop = tokio::select! {
                _ = loops => false,
                _ = renew => false,
                _ = stopping.wait_for(|s| *s) => true,
            };
            meters::purge_sender(false);
            for sink in &queue.sinks {
                meters::purge_backlog(sink.name, 0, Duration::ZERO);
            }
            if stop {
                // Handing over at once (what was in flight the next holder queues again).
                let _ =
                    crate::lease::change(&redis, "purge", SENDER_LEASE_KEY, &owner, "", 1).await;
                return;
            }
            tracing::warn!("this replica lost the purge sender's lease");
        }
    });
}

/// Sends sink `i`'s purges for as long as this replica holds the lease.
async fn sink_loop(
    queue: &Queue,
    i: usize,
    sink: &Sink,
    http: &reqwest::Client,
    poll: Duration,
    owner: &str,
) {
    let name = sink.name();
    let mut failures: u32 = 0;
    loop {
        let (take, backlog) = match queue.take(i, CALL_TAGS, owner).await {
            Ok(taken) => taken,
            Err(_) => {
                // (A take whose reply was lost left its tags in flight: the next take queues
                // them again.)
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if backlog.stranded > 0 {
            tracing::info!(
                sink = name,
                tags = backlog.stranded,
                "queued again what was in flight with no call (a previous sender's)"
            );
        }
        meters::purge_backlog(name, backlog.pending, backlog.oldest);
        meters::purge_expired(name, backlog.expired);
        let (kind, tags) = match take {
            Take::Empty => {
                tokio::time::sleep(poll).await;
                continue;
            }
            // Another replica holds the lease now: this one stops sending.
            Take::Lost => return,
            Take::Wait(wait) => {
                tokio::time::sleep(wait.clamp(Duration::from_millis(5), MAX_BACKOFF)).await;
                continue;
            }
            Take::Call { kind, tags } => (kind, tags),
        };
        let outcome = sink.call(http, &tags, kind).await;
        let settle = match outcome {
            Outcome::Ok => {
                failures = 0;
                meters::purge_call(name, "ok");
                meters::purge_tags(name, tags.len());
                Settle::Done
            }
            Outcome::Refused(status) => {
                tracing::error!(sink = name, status, tags = tags.len(), "purge refused");
                meters::purge_call(name, "refused");
                Settle::Done
            }
            Outcome::RateLimited(after) => {
                tracing::warn!(
                    sink = name,
                    "purge rate limited; the budget is above the cache's"
                );
                meters::purge_call(name, "rate_limited");
                Settle::Back {
                    pause: after.unwrap_or(DEFAULT_PAUSE),
                }
            }
            Outcome::Failed => {
                failures += 1;
                meters::purge_call(name, "failed");
                Settle::Back {
                    pause: Duration::ZERO,
                }
            }
        };
        // Until Redis takes it: unsettled, the tags would stay in flight until the lease moves.
        let mut tries = 0;
        while queue.settle(i, kind, &tags, settle).await.is_err() {
            tries += 1;
            if tries == 1 {
                tracing::warn!(sink = name, "purge queue unreachable while settling a call");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if outcome == Outcome::Failed {
            let backoff = (FIRST_BACKOFF * 2u32.saturating_pow(failures - 1)).min(MAX_BACKOFF);
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        }
    }
}
