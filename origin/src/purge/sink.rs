//! The downstream caches and one purge call to each: the edge's purge route, Cloudflare's API,
//! the Next.js revalidation route. A call either lands, is refused for good (a 4xx: a bad token or
//! route; a redirect, never followed since every call carries a secret), is rate limited (a 429,
//! with its `Retry-After`), or fails (a 5xx, a timeout, no connection) and is tried again later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use shared::types::PurgeRequest;

use super::Kind;
use crate::config::{PurgeSettings, Rate};

/// Longest a `Retry-After` is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A downstream cache.
#[derive(Debug)]
pub struct Sink {
    pub target: Target,
    /// The fleet's budget of calls to it.
    pub rate: Rate,
    /// Cloudflare refused `invalidate_cache` (its soft purge) once: soft purges go out hard.
    soft_refused: AtomicBool,
}

#[derive(Clone, Debug)]
pub enum Target {
    /// The worker's purge route (`EDGE_PURGE_URL`), with the edge secret; soft purges as such.
    Edge { url: String, secret: SecretString },
    /// Cloudflare's `POST /zones/{zone}/purge_cache` (hard) and `…/invalidate_cache` (soft:
    /// copies kept, marked stale, revalidated on the next request), with an API token.
    Cloudflare {
        api: String,
        zone: String,
        token: SecretString,
    },
    /// The frontend's revalidation route (`NEXT_REVALIDATE_URL`), with its secret; soft purges
    /// as `revalidateTag(tag, "max")` there, hard ones expire at once.
    Next { url: String, secret: SecretString },
}

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused for good: retrying changes nothing.
    Refused(u16),
    /// 429, with how long to wait if the sink said.
    RateLimited(Option<Duration>),
    /// Worth another try later.
    Failed,
}

impl Sink {
    /// The sinks the settings configure.
    pub fn configured(settings: &PurgeSettings) -> Vec<Sink> {
        let sink = |target, rate| Sink {
            target,
            rate,
            soft_refused: AtomicBool::new(false),
        };
        let mut sinks = Vec::new();
        if let Some((url, secret)) = &settings.edge {
            let (url, secret) = (url.clone(), secret.clone());
            sinks.push(sink(Target::Edge { url, secret }, settings.edge_rate));
        }
        if let Some((api, zone, token)) = &settings.cloudflare {
            let (api, zone, token) = (api.clone(), zone.clone(), token.clone());
            sinks.push(sink(
                Target::Cloudflare { api, zone, token },
                settings.cloudflare_rate,
            ));
        }
        if let Some((url, secret)) = &settings.next {
            let (url, secret) = (url.clone(), secret.clone());
            sinks.push(sink(Target::Next { url, secret }, settings.next_rate));
        }
        sinks
    }

    pub fn name(&self) -> &'static str {
        match self.target {
            Target::Edge { .. } => "edge",
            Target::Cloudflare { .. } => "cloudflare",
            Target::Next { .. } => "next",
        }
    }

    /// Purges `tags` (at most [`shared::types::MAX_PURGE_TAGS`]) once.
    pub async fn call(&self, http: &reqwest::Client, tags: &[String], kind: Kind) -> Outcome {
        let soft = kind == Kind::Soft;
        let request = match &self.target {
            Target::Edge { url, secret } => http
                .post(url)
                .header(shared::headers::EDGE_SECRET, secret.expose_secret())
                .json(&PurgeRequest {
                    tags: tags.to_vec(),
                    soft,
                }),
            Target::Next { url, secret } => http
                .post(url)
                .header("x-revalidate-secret", secret.expose_secret())
                .json(&PurgeRequest {
                    tags: tags.to_vec(),
                    soft,
                }),
            Target::Cloudflare { api, zone, token } => {
                let soft = soft && !self.soft_refused.load(Ordering::Relaxed);
                let outcome = cloudflare(http, api, zone, token, tags, soft).await;
                return match outcome {
                    // The zone has no invalidation (its plan): purge instead, from now on. (Not
                    // for a bad token, a redirect or a rate limit: those are the sink's answer.)
                    Outcome::Refused(status)
                        if soft && (400..500).contains(&status) && status != 401 =>
                    {
                        tracing::warn!(
                            status,
                            "Cloudflare refused invalidate_cache (soft purge); purging hard instead"
                        );
                        crate::meters::purge_call("cloudflare", "soft_refused");
                        self.soft_refused.store(true, Ordering::Relaxed);
                        cloudflare(http, api, zone, token, tags, false).await
                    }
                    other => other,
                };
            }
        };
        outcome_of(request.send().await)
    }
}

async fn cloudflare(
    http: &reqwest::Client,
    api: &str,
    zone: &str,
    token: &SecretString,
    tags: &[String],
    soft: bool,
) -> Outcome {
    let action = if soft {
        "invalidate_cache"
    } else {
        "purge_cache"
    };
    let request = http
        .post(format!("{api}/zones/{zone}/{action}"))
        .bearer_auth(token.expose_secret())
        .json(&serde_json::json!({ "tags": tags }));
    outcome_of(request.send().await)
}

fn outcome_of(sent: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    let Ok(resp) = sent else {
        return Outcome::Failed;
    };
    let status = resp.status();
    if status.is_success() {
        Outcome::Ok
    } else if status.as_u16() == 429 {
        Outcome::RateLimited(crate::outbound::retry_after(&resp, MAX_RETRY_AFTER))
    } else if status.is_redirection() || status.is_client_error() {
        Outcome::Refused(status.as_u16())
    } else {
        Outcome::Failed
    }
}
