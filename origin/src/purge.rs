//! Telling the caches downstream of the origin what changed: after a catalog change commits and
//! its Redis keys are invalidated, the cache tags of those keys ([`shared::tags::for_key`]) are
//! purged from every cache configured — the edge (its purge route, [`Sink::Edge`]), Cloudflare's
//! cache (its purge-by-tag API, [`Sink::Cloudflare`]) and the Next.js frontend's data cache (its
//! revalidation route, [`Sink::Next`]). The one module that talks to them.
//!
//! Invariants:
//! - A mutation never waits for a purge: [`Purger::tags`] only queues (a bounded channel; when it
//!   is full the next batch purges the whole catalog instead — over-purging, never losing one).
//! - Bursts are coalesced: tags queued within `PURGE_BATCH_MS` go out together, each once, one
//!   call per cache (split at [`CALL_TAGS`] tags), so a thousand purchases in a second cost a
//!   handful of purge calls.
//! - A failed call is retried with exponential backoff and jitter (a 429's `Retry-After` is
//!   honoured) up to [`ATTEMPTS`] times, each cache on its own; every outcome is counted
//!   (`purge_calls_total{sink, outcome}`, `purge_tags_total{sink}`).

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use shared::types::PurgeRequest;
use tokio::sync::mpsc;

use crate::config::PurgeSettings;
use crate::meters;

/// Tags per call (Cloudflare's purge API takes up to 30 tags per request).
pub const CALL_TAGS: usize = 30;
/// Tries per call, the first included.
pub const ATTEMPTS: u32 = 5;
/// The first retry's wait; each next one doubles (plus up to half again of jitter).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest a `Retry-After` is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Batches waiting to go out: beyond, the next batch purges everything.
const QUEUE: usize = 1024;

/// A downstream cache.
#[derive(Clone, Debug)]
pub enum Sink {
    /// The worker's purge route (`EDGE_PURGE_URL`), with the edge secret.
    Edge { url: String, secret: SecretString },
    /// Cloudflare's `POST /zones/{zone}/purge_cache` (`CLOUDFLARE_*`), with an API token.
    Cloudflare {
        api: String,
        zone: String,
        token: SecretString,
    },
    /// The frontend's revalidation route (`NEXT_REVALIDATE_URL`), with its secret.
    Next { url: String, secret: SecretString },
}

impl Sink {
    /// The sinks the settings configure.
    pub fn configured(settings: &PurgeSettings) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if let Some((url, secret)) = &settings.edge {
            sinks.push(Sink::Edge {
                url: url.clone(),
                secret: secret.clone(),
            });
        }
        if let Some((api, zone, token)) = &settings.cloudflare {
            sinks.push(Sink::Cloudflare {
                api: api.clone(),
                zone: zone.clone(),
                token: token.clone(),
            });
        }
        if let Some((url, secret)) = &settings.next {
            sinks.push(Sink::Next {
                url: url.clone(),
                secret: secret.clone(),
            });
        }
        sinks
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sink::Edge { .. } => "edge",
            Sink::Cloudflare { .. } => "cloudflare",
            Sink::Next { .. } => "next",
        }
    }

    fn request(&self, http: &reqwest::Client, tags: &[String]) -> reqwest::RequestBuilder {
        let body = PurgeRequest {
            tags: tags.to_vec(),
            soft: false,
        };
        match self {
            Sink::Edge { url, secret } => http
                .post(url)
                .header(shared::headers::EDGE_SECRET, secret.expose_secret())
                .json(&body),
            Sink::Cloudflare { api, zone, token } => http
                .post(format!("{api}/zones/{zone}/purge_cache"))
                .bearer_auth(token.expose_secret())
                .json(&serde_json::json!({ "tags": tags })),
            Sink::Next { url, secret } => http
                .post(url)
                .header("x-revalidate-secret", secret.expose_secret())
                .json(&body),
        }
    }
}

/// What the purging task receives.
enum Msg {
    Tags(Vec<String>),
    /// Answered once everything queued before it has gone out.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The handle mutations use; cheap to clone.
#[derive(Clone)]
pub struct Purger {
    tx: Option<mpsc::Sender<Msg>>,
    overflowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Purger {
    /// Starts the purging task for the configured sinks (none configured: a purger that does
    /// nothing).
    pub fn start(
        settings: &PurgeSettings,
        roots: &crate::outbound::Roots,
    ) -> Result<Purger, crate::outbound::ClientError> {
        let sinks = Sink::configured(settings);
        let overflowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if sinks.is_empty() {
            return Ok(Purger {
                tx: None,
                overflowed,
            });
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        // Never redirected: every call carries a sink's secret (docs/security.md).
        let http = roots.client(
            "EDGE_PURGE_URL/CLOUDFLARE_API_URL/NEXT_REVALIDATE_URL",
            settings.timeout,
            crate::outbound::Redirects::None,
        )?;
        tokio::spawn(run(rx, sinks, http, settings.batch, overflowed.clone()));
        Ok(Purger {
            tx: Some(tx),
            overflowed,
        })
    }

    pub fn disabled() -> Purger {
        Purger {
            tx: None,
            overflowed: std::sync::Arc::default(),
        }
    }

    /// Queues the purge of `tags`; never waits.
    pub fn tags(&self, tags: Vec<String>) {
        let Some(tx) = &self.tx else { return };
        if tags.is_empty() {
            return;
        }
        if tx.try_send(Msg::Tags(tags)).is_err() {
            self.overflowed
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Waits (at most `within`) until every purge queued so far has been sent (or given up):
    /// for a process about to exit (`origin sync`).
    pub async fn flush(&self, within: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = tokio::sync::oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }

    /// Queues the purge of what invalidating these Redis keys makes out of date.
    pub fn keys(&self, keys: &[String]) {
        self.tags(shared::tags::for_keys(keys.iter().map(String::as_str)));
    }
}

async fn run(
    mut rx: mpsc::Receiver<Msg>,
    sinks: Vec<Sink>,
    http: reqwest::Client,
    batch: Duration,
    overflowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    while let Some(first) = rx.recv().await {
        // Gather what else arrives within the batch window (a flush ends the window at once).
        let mut tags: BTreeSet<String> = BTreeSet::new();
        let mut flushes = Vec::new();
        let take = |msg: Msg, tags: &mut BTreeSet<String>, flushes: &mut Vec<_>| match msg {
            Msg::Tags(more) => tags.extend(more),
            Msg::Flush(done) => flushes.push(done),
        };
        take(first, &mut tags, &mut flushes);
        let deadline = tokio::time::Instant::now() + batch;
        while flushes.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => take(msg, &mut tags, &mut flushes),
                _ => break,
            }
        }
        while let Ok(msg) = rx.try_recv() {
            take(msg, &mut tags, &mut flushes);
        }
        if tags.is_empty() && !overflowed.load(std::sync::atomic::Ordering::Acquire) {
            for done in flushes {
                let _ = done.send(());
            }
            continue;
        }
        if overflowed.swap(false, std::sync::atomic::Ordering::AcqRel)
            || tags.contains(shared::tags::CATALOG)
        {
            tags = BTreeSet::from([shared::tags::CATALOG.to_owned()]);
        }
        let tags: Vec<String> = tags.into_iter().collect();
        let http = &http;
        let calls = sinks.iter().flat_map(|sink| {
            tags.chunks(CALL_TAGS)
                .map(move |chunk| send(http, sink, chunk.to_vec()))
        });
        futures::future::join_all(calls).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// One call to one sink, retried.
async fn send(http: &reqwest::Client, sink: &Sink, tags: Vec<String>) {
    let name = sink.name();
    for attempt in 1..=ATTEMPTS {
        let outcome = sink.request(http, &tags).send().await;
        let retry_after = match &outcome {
            Ok(resp) if resp.status().is_success() => {
                meters::purge_call(name, "ok");
                meters::purge_tags(name, tags.len());
                return;
            }
            // The cache refused the request itself (a bad token, a bad route), or sent it
            // elsewhere (a redirect is never followed: the call carries a secret): retrying
            // changes nothing.
            Ok(resp)
                if resp.status().is_redirection()
                    || (resp.status().is_client_error() && resp.status().as_u16() != 429) =>
            {
                tracing::error!(
                    sink = name,
                    status = resp.status().as_u16(),
                    "purge refused"
                );
                meters::purge_call(name, "refused");
                return;
            }
            Ok(resp) => resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
            Err(_) => None,
        };
        if attempt == ATTEMPTS {
            break;
        }
        meters::purge_call(name, "retried");
        let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        let wait = retry_after.unwrap_or(backoff + Duration::from_millis(jitter));
        tokio::time::sleep(wait).await;
    }
    tracing::error!(sink = name, tags = tags.len(), "purge failed after retries");
    meters::purge_call(name, "failed");
}
