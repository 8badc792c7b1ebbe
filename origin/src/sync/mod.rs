//! Catalog sync: prices and stock from the upstream providers, in bulk, with exactly the changed
//! keys invalidated. One run for one provider, in order:
//!
//! 1. **fetch** the provider's price document (bounded in time and bytes; a timeout, a 5xx or a
//!    429 is retried with exponential backoff and jitter, honouring `Retry-After`), read as it
//!    streams in ([`document`]): a malformed or cut document, or one bad value, refuses the run;
//! 2. **map** its identifiers to our codes ([`mapping`], kept as data) and its money to cents
//!    exactly ([`money`]); unknown ones are skipped and counted;
//! 3. **diff** against PostgreSQL: new, changed, and no longer sold (stock 0); the rest is left
//!    alone;
//! 4. **guard**: an empty document, or a change that looks like an upstream's mistake (half the
//!    prices falling by 90 % or more, half the products leaving), is **held**: nothing applied,
//!    logged at ERROR, counted (`sync_runs_total{outcome="held"}`, an alert);
//! 5. **apply** the changed rows in one transaction ([`crate::db::sync`]): all or nothing;
//! 6. **invalidate** exactly the changed keys (and the provider's lists when a product is new),
//!    a thousand per round trip, each batch published to the replicas once, and purge their cache
//!    tags downstream ([`crate::purge`]).
//!
//! Every run is logged (`sync_runs`: what `origin check` reports) and measured. A provider that
//! fails [`BREAKER_FAILURES`] runs in a row is skipped until `SYNC_BREAKER_SECS` pass (its
//! circuit opens). `origin sync` runs it from the command line; with `SYNC_INTERVAL_SECS`, `serve`
//! runs it periodically, one runner per provider for the whole fleet (a Redis lock).

pub mod bulk;
pub mod document;
pub mod guard;
pub mod inert;
pub mod mapping;
pub mod money;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::ExposeSecret;
use shared::{Product, Slug, keys};

use crate::cache::Cache;
use crate::config::{SyncSettings, SyncUpstream};
use crate::db::Db;
use crate::db::sync::{PriceRow, Reference, SyncRun};
use crate::meters;
use crate::purge::Purger;
use document::{DocumentError, Wanted};
use mapping::Mapping;

/// Failures in a row after which a provider's circuit opens.
pub const BREAKER_FAILURES: u32 = 3;
/// Keys per invalidation round trip (and per message to the replicas).
pub use crate::catalog::INVALIDATE_BATCH;
/// The guard looks at a change only when the provider had at least this many products.
pub const GUARD_MIN_ROWS: usize = 20;
/// First retry's wait; doubled each time, plus up to half again of jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Changes were written and invalidated.
    Applied,
    /// The document matched the catalog: nothing to write.
    Unchanged,
    /// A suspicious document: nothing applied, an operator should look.
    Held,
    /// The document could not be had or read, or the write failed: nothing applied.
    Failed,
    /// Not run: the provider's circuit is open.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Held => "held",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub provider: String,
    pub outcome: Option<Outcome>,
    pub detail: String,
    pub offers: usize,
    pub unmapped: usize,
    pub inserted: usize,
    pub updated: usize,
    pub zeroed: usize,
    pub unchanged: usize,
    pub keys_invalidated: usize,
    pub duration: Duration,
}

impl Report {
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Failed)
    }

    pub fn changed(&self) -> usize {
        self.inserted + self.updated + self.zeroed
    }
}

/// Why a run stopped early.
struct Stop(Outcome, String);

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Stop {
        Stop(Outcome::Failed, format!("database: {e}"))
    }
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// Runs syncs; cheap to clone.
#[derive(Clone)]
pub struct Syncer {
    db: Db,
    cache: Cache,
    purger: Purger,
    http: reqwest::Client,
    settings: Arc<SyncSettings>,
    breakers: Arc<Mutex<HashMap<String, Breaker>>>,
}

/// A changed product and how its cached copies go.
struct Change {
    country: i32,
    service: i32,
    kind: crate::purge::Kind,
}

impl Syncer {
    pub fn new(
        db: Db,
        cache: Cache,
        purger: Purger,
        settings: SyncSettings,
        roots: &crate::outbound::Roots,
    ) -> Result<Syncer, crate::outbound::ClientError> {
        // A document from another host is not the provider's, and an http:// hop would expose
        // the API key in its URL: same host, https only.
        let http = roots.client(
            "SYNC_PROVIDERS",
            settings.timeout,
            crate::outbound::Redirects::SameHostHttps,
        )?;
        Ok(Syncer {
            db,
            cache,
            purger,
            http,
            settings: Arc::new(settings),
            breakers: Arc::default(),
        })
    }

    pub fn upstreams(&self) -> &[SyncUpstream] {
        &self.settings.upstreams
    }

    /// Waits for the downstream purges this syncer queued (before a command-line run exits).
    pub async fn flush_purges(&self, within: Duration) {
        self.purger.flush(within).await;
    }

    /// One run for one provider, logged and measured whatever happens.
    pub async fn run(&self, upstream: &SyncUpstream) -> Report {
        self.run_with(upstream, false).await
    }

    /// [`Syncer::run`], with `accept`: a person has looked at what the guard would hold, applies
    /// it anyway and makes it the new baseline (`origin sync --provider P --accept`).
    pub async fn run_with(&self, upstream: &SyncUpstream, accept: bool) -> Report {
        let started = Instant::now();
        let name = upstream.provider.clone();
        if self.circuit_open(&name) {
            meters::sync_run(&name, Outcome::Skipped.as_str());
            return Report {
                provider: name,
                outcome: Some(Outcome::Skipped),
                detail: "circuit open after repeated failures".into(),
                ..Report::default()
            };
        }
        let mut report = Report {
            provider: name.clone(),
            ..Report::default()
        };
        // The whole run (fetch, read, diff, write) within the deadline: a document that is slow
        // to arrive or to read cannot hold a replica's sync (or its lock) for longer.
        let deadline = self.settings.deadline;
        let attempted =
            tokio::time::timeout(deadline, self.attempt(upstream, &mut report, accept)).await;
        let attempted = attempted.unwrap_or_else(|_| {
            Err(Stop(
                Outcome::Failed,
                format!(
                    "the run passed SYNC_DEADLINE_SECS ({} s): nothing applied",
                    deadline.as_secs()
                ),
            ))
        });
        match attempted {
            Ok(outcome) => report.outcome = Some(outcome),
            Err(Stop(outcome, detail)) => {
                report.outcome = Some(outcome);
                report.detail = inert::text(&detail);
            }
        }
        report.duration = started.elapsed();
        let outcome = report.outcome();
        self.note(&name, outcome);
        match outcome {
            Outcome::Held | Outcome::Failed => {
                tracing::error!(provider = %name, outcome = outcome.as_str(), detail = %report.detail, "catalog sync not applied");
            }
            _ => {
                tracing::info!(provider = %name, outcome = outcome.as_str(), changed = report.changed(), "catalog sync")
            }
        }
        meters::sync_run(&name, outcome.as_str());
        meters::sync_rows(&name, report.changed());
        meters::sync_keys(&name, report.keys_invalidated);
        meters::sync_duration(&name, report.duration.as_secs_f64());
        if matches!(outcome, Outcome::Applied | Outcome::Unchanged) {
            meters::sync_succeeded(&name);
        }
        let run = SyncRun {
            provider: name,
            outcome: outcome.as_str(),
            offers: report.offers as i64,
            changed: report.changed() as i64,
            detail: report.detail.clone(),
            duration_ms: report.duration.as_millis() as i64,
        };
        if let Err(e) = self.db.record_sync(&run).await {
            tracing::warn!(error = %e, "the sync log could not be written");
        }
        report
    }

    async fn attempt(
        &self,
        upstream: &SyncUpstream,
        report: &mut Report,
        accept: bool,
    ) -> Result<Outcome, Stop> {
        let failed = |detail: String| Stop(Outcome::Failed, detail);
        let mapping = Mapping::builtin(&upstream.mapping).map_err(|e| failed(e.to_string()))?;
        let provider_id = self
            .db
            .provider_id(&upstream.provider)
            .await?
            .ok_or_else(|| {
                failed(format!(
                    "no provider {:?} in the catalog",
                    upstream.provider
                ))
            })?;
        let countries = self.db.reference_ids(Reference::Countries).await?;
        let services = self.db.reference_ids(Reference::Services).await?;

        let targets = Arc::new(Targets {
            mapping: mapping.clone(),
            countries: countries.clone(),
            services: services.clone(),
        });
        let read = self.fetch(upstream, &targets).await?;
        report.offers = read.offers + read.skipped;
        report.unmapped = read.skipped;
        if report.offers == 0 {
            return Err(Stop(
                Outcome::Held,
                "an empty document: nothing applied".into(),
            ));
        }
        // Mapped to our ids as it was read (the last of duplicate spellings wins).
        let wanted = read.wanted;
        if wanted.is_empty() {
            return Err(Stop(
                Outcome::Held,
                format!("none of the {} offers maps to the catalog", report.offers),
            ));
        }

        let current = self.db.provider_prices(provider_id).await?;
        let (mut upserts, mut changes) = (Vec::new(), Vec::new());
        for (&(country, service), &(price_cents, stock)) in &wanted {
            match current.get(&(country, service)) {
                None => report.inserted += 1,
                Some(&(old_price, old_stock)) => {
                    if (old_price, old_stock) == (price_cents, stock) {
                        report.unchanged += 1;
                        continue;
                    }
                    report.updated += 1;
                }
            }
            upserts.push(PriceRow {
                provider_id,
                country_id: country,
                service_id: service,
                price_cents,
                stock,
            });
            // Written either way; stale (invalidated, purged) only if what its answers show
            // changed: most stock movements stay within their availability step.
            let old = current.get(&(country, service)).copied();
            if let Some(kind) = crate::catalog::change_of(old, (price_cents, stock)) {
                changes.push(Change {
                    country,
                    service,
                    kind,
                });
            }
        }
        let on_sale = current.values().filter(|(_, stock)| *stock > 0).count();
        let zeroed: Vec<(i32, i32, i32)> = current
            .iter()
            .filter(|(k, (_, stock))| *stock > 0 && !wanted.contains_key(k))
            .map(|(&(c, s), _)| (provider_id, c, s))
            .collect();
        report.zeroed = zeroed.len();

        let baseline = self
            .db
            .baseline(provider_id)
            .await?
            .map(|(median, products, age)| guard::Baseline {
                median_cents: median,
                products,
                age: Duration::from_secs_f64(age.max(0.0)),
            });
        let record = if accept {
            Some((
                guard::median(wanted.values().map(|(p, _)| *p)),
                wanted.len() as i32,
            ))
        } else {
            match guard::judge(
                &current,
                &wanted,
                zeroed.len(),
                on_sale,
                baseline,
                self.settings.guard,
            ) {
                guard::Verdict::Hold(why) => return Err(Stop(Outcome::Held, why)),
                guard::Verdict::Apply { baseline } => baseline,
            }
        };
        if let Some((median, products)) = record {
            self.db.set_baseline(provider_id, median, products).await?;
        }
        if upserts.is_empty() && zeroed.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        let (_, locked) = self.db.apply_prices(&upserts, &zeroed, None).await?;
        // Judged again against the rows as locked: a purchase between the read above and the
        // write may have moved a product's step, which the answers cached since then show.
        for row in &upserts {
            let key = (row.provider_id, row.country_id, row.service_id);
            let then = current.get(&(row.country_id, row.service_id)).copied();
            let now = locked.get(&key).copied();
            if now == then {
                continue;
            }
            if let Some(kind) = crate::catalog::change_of(now, (row.price_cents, row.stock)) {
                changes.push(Change {
                    country: row.country_id,
                    service: row.service_id,
                    kind,
                });
            }
        }

        // Off sale: gone from every cache at once.
        changes.extend(zeroed.iter().map(|&(_, country, service)| Change {
            country,
            service,
            kind: crate::purge::Kind::Hard,
        }));
        report.keys_invalidated = self
            .invalidate(
                &upstream.provider,
                &countries,
                &services,
                &changes,
                report.inserted > 0,
            )
            .await;
        Ok(Outcome::Applied)
    }

    /// Drops exactly the changed keys (and the provider's lists when it sells something new),
    /// in batches: one round trip and one message to the replicas each; then purges downstream.
    async fn invalidate(
        &self,
        provider: &str,
        countries: &HashMap<String, i32>,
        services: &HashMap<String, i32>,
        changes: &[Change],
        lists: bool,
    ) -> usize {
        let reverse = |map: &HashMap<String, i32>| -> HashMap<i32, Slug> {
            map.iter()
                .filter_map(|(code, id)| Slug::parse(code).ok().map(|s| (*id, s)))
                .collect()
        };
        let (country_codes, service_codes) = (reverse(countries), reverse(services));
        let Ok(provider) = Slug::parse(provider) else {
            return 0;
        };
        let mut stale = crate::catalog::Stale::default();
        for c in changes {
            let (Some(country), Some(service)) =
                (country_codes.get(&c.country), service_codes.get(&c.service))
            else {
                continue;
            };
            let product = Product {
                provider: provider.clone(),
                country: country.clone(),
                service: service.clone(),
            };
            stale.add(keys::price(&product), c.kind);
        }
        if lists {
            // Something new on sale: the lists gain it (a list a moment behind misleads nobody).
            stale.add(keys::countries(&provider), crate::purge::Kind::Soft);
            stale.add(keys::services(&provider), crate::purge::Kind::Soft);
        }
        crate::catalog::invalidate(&self.cache, &self.purger, &stale).await;
        stale.len()
    }

    /// The provider's document, read as it streams, retried on timeouts, 5xx and 429.
    async fn fetch(&self, upstream: &SyncUpstream, targets: &Arc<Targets>) -> Result<Read, Stop> {
        let rule = targets
            .mapping
            .rule()
            .map_err(|e| Stop(Outcome::Failed, e.to_string()))?;
        let attempts = self.settings.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.fetch_once(upstream, targets, rule).await {
                Ok(read) => return Ok(read),
                Err(Fetch::Refused(why)) => return Err(Stop(Outcome::Failed, why)),
                Err(Fetch::Retry(why, after)) => {
                    last = why;
                    if attempt == attempts {
                        break;
                    }
                    let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
                    let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                    let wait = after.unwrap_or(backoff + Duration::from_millis(jitter));
                    tracing::warn!(provider = %upstream.provider, attempt, reason = %last, "sync: retrying the upstream");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Err(Stop(
            Outcome::Failed,
            format!("upstream failed {attempts} times; last: {last}"),
        ))
    }

    async fn fetch_once(
        &self,
        upstream: &SyncUpstream,
        targets: &Arc<Targets>,
        rule: money::Rule,
    ) -> Result<Read, Fetch> {
        let url = upstream.url.expose_secret();
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| Fetch::Retry(transport(&e), None))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = crate::outbound::retry_after(&resp, MAX_RETRY_AFTER);
            return Err(Fetch::Retry(format!("upstream answered {status}"), after));
        }
        if !status.is_success() {
            return Err(Fetch::Refused(format!("upstream answered {status}")));
        }
        // The body goes to a blocking reader as it arrives: the document is never held whole,
        // and only what maps is kept. The channel is async on this side: a reader slower than the
        // network makes this task wait, never the thread it runs on (on a one-core task, a
        // blocking send here stalled every request the process had).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(16);
        let (targets, format) = (targets.clone(), targets.mapping.format);
        let reader = tokio::task::spawn_blocking(move || {
            let mut read = Read::default();
            let mut source = ChannelReader {
                rx,
                chunk: bytes::Bytes::new(),
                failed: None,
            };
            let outcome = document::read(format, &rule, &*targets, &mut source, &mut |o| {
                read.offers += 1;
                if let Some(ids) = targets.ids(&o.country, &o.service) {
                    read.wanted.insert(ids, (o.price_cents, o.stock));
                }
            });
            match outcome {
                Ok(skipped) => read.skipped = skipped.entries,
                Err(e) => read.error = Some(e),
            }
            (read, source.failed.take())
        });
        let max = self.settings.max_bytes;
        let mut received: u64 = 0;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > max {
                        let why = format!("document over SYNC_MAX_BYTES ({max} bytes)");
                        let _ = tx.send(Err(why)).await;
                        break;
                    }
                    if tx.send(Ok(chunk)).await.is_err() {
                        break; // the reader stopped (a bad document): no need for the rest
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(transport(&e))).await;
                    break;
                }
            }
        }
        drop(tx);
        let (mut read, transport_failure) = reader
            .await
            .map_err(|e| Fetch::Refused(format!("reader: {e}")))?;
        if let Some(why) = transport_failure {
            // Cut off by the network or the byte bound: a network cut may mend on a retry.
            return Err(if why.starts_with("document over") {
                Fetch::Refused(why)
            } else {
                Fetch::Retry(why, None)
            });
        }
        if let Some(e) = read.error.take() {
            return Err(Fetch::Refused(e.to_string()));
        }
        Ok(read)
    }

    fn circuit_open(&self, provider: &str) -> bool {
        let Ok(breakers) = self.breakers.lock() else {
            return false;
        };
        breakers
            .get(provider)
            .and_then(|b| b.open_until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn note(&self, provider: &str, outcome: Outcome) {
        let Ok(mut breakers) = self.breakers.lock() else {
            return;
        };
        let b = breakers.entry(provider.to_owned()).or_default();
        if outcome == Outcome::Failed {
            b.failures += 1;
            if b.failures >= BREAKER_FAILURES {
                b.open_until = Some(Instant::now() + self.settings.breaker);
                b.failures = 0;
                tracing::error!(
                    provider,
                    "sync: circuit open after {BREAKER_FAILURES} failures in a row"
                );
            }
        } else if outcome != Outcome::Skipped {
            *b = Breaker::default();
        }
    }
}

/// One fetch's failure: worth another try, or not.
enum Fetch {
    Retry(String, Option<Duration>),
    Refused(String),
}

/// A transport error, without the URL (it may carry the provider's API key).
fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_redirect() {
        "redirected to another host or away from https (not followed)"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body was cut off"
    } else {
        "transport error"
    };
    format!("upstream {kind}")
}

/// The body's chunks as a `Read`, for the blocking document reader.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    chunk: bytes::Bytes,
    failed: Option<String>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(why)) => {
                    self.failed = Some(why.clone());
                    return Err(std::io::Error::other(why));
                }
                // The fetch ended (or was dropped: a deadline, a shutdown): end of input.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// What the reader keeps of a document: the mapped offers by our ids, and counts.
#[derive(Default)]
struct Read {
    /// (country id, service id) → (price cents, stock).
    wanted: HashMap<(i32, i32), (i64, i64)>,
    /// Offers handed on (wanted at the key level).
    offers: usize,
    /// Entries skipped unread (no mapping for their country or service).
    skipped: usize,
    error: Option<DocumentError>,
}

/// The catalog a document is mapped onto: what the reader keeps, decided per key as it reads.
struct Targets {
    mapping: Mapping,
    countries: HashMap<String, i32>,
    services: HashMap<String, i32>,
}

impl Targets {
    fn ids(&self, country: &str, service: &str) -> Option<(i32, i32)> {
        let country = self
            .mapping
            .country(country)
            .and_then(|c| self.countries.get(c))?;
        let service = self
            .mapping
            .service(service)
            .and_then(|s| self.services.get(s.as_ref()).copied())?;
        Some((*country, service))
    }
}

impl Wanted for Targets {
    fn country(&self, theirs: &str) -> bool {
        self.mapping
            .country(theirs)
            .is_some_and(|c| self.countries.contains_key(c))
    }
    fn service(&self, theirs: &str) -> bool {
        self.mapping
            .service(theirs)
            .is_some_and(|s| self.services.contains_key(s.as_ref()))
    }
}

/// A syncer for the command line: its own pool and Redis client (no L1: a one-off run's
/// invalidations still reach every serving replica through Redis), purging downstream; every
/// upstream's mapping is checked first, so a bad name stops here naming `SYNC_PROVIDERS`.
pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Syncer> {
    check_mappings(&settings.sync)?;
    let db = Db::connect_lazy(settings)?;
    let redis = crate::redis::Redis::from_settings(settings)?;
    // Queues only: the serving fleet's sender sends. It queues for the sinks it is told of, so
    // it needs the service's purge settings; without them the caches keep changes until TTL.
    let purger = Purger::start(&settings.purge, &settings.http_roots, &redis, None)?;
    if purger.is_disabled() {
        tracing::warn!(
            "no purge sink configured (EDGE_PURGE_URL, CLOUDFLARE_ZONE_ID, NEXT_REVALIDATE_URL): \
             downstream caches keep what this sync changes until their TTL; run it with the \
             service's settings"
        );
    }
    let cache = Cache::new(redis, settings.cache_ttl_divisor);
    Ok(Syncer::new(
        db,
        cache,
        purger,
        settings.sync.clone(),
        &settings.http_roots,
    )?)
}

/// Every upstream's mapping exists and loads.
pub fn check_mappings(settings: &SyncSettings) -> anyhow::Result<()> {
    for upstream in &settings.upstreams {
        Mapping::builtin(&upstream.mapping)
            .map_err(|e| anyhow::anyhow!("SYNC_PROVIDERS ({}): {e}", upstream.provider))?;
    }
    Ok(())
}

/// The periodic runner of `serve` (`SYNC_INTERVAL_SECS`): every interval, each provider is synced
/// by whichever replica takes its Redis lock first. The lock is a lease ([`RUN_LEASE`]) renewed
/// while the run is alive, so a replica that dies mid-run frees the provider within a lease (the
/// next replica's tick takes it), and a run longer than the lease is never run twice. When a run
/// ends, the lock becomes "done" for the rest of the interval (the fleet runs each provider once
/// per interval); when it is cut short (shutdown), the lock is released at once. A run is bounded
/// by `SYNC_DEADLINE_SECS`, and `stopping` (set on SIGTERM) ends the runner and the run in
/// progress within the shutdown grace.
pub fn spawn_periodic(
    syncer: Syncer,
    redis: crate::redis::Redis,
    interval: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            for upstream in syncer.upstreams().to_vec() {
                let lock = keys::sync_lock(&upstream.provider);
                if !matches!(
                    crate::lease::take(&redis, "sync", &lock, &owner, RUN_LEASE).await,
                    Ok(true)
                ) {
                    continue;
                }
                let renew = async {
                    let mut every = tokio::time::interval_at(
                        tokio::time::Instant::now() + RUN_LEASE / 3,
                        RUN_LEASE / 3,
                    );
                    loop {
                        every.tick().await;
                        let ms = RUN_LEASE.as_millis() as u64;
                        let _ =
                            crate::lease::change(&redis, "sync", &lock, &owner, &owner, ms).await;
                    }
                };
                let finished = tokio::select! {
                    _ = syncer.run(&upstream) => true,
                    _ = renew => false,
                    _ = stopping.wait_for(|s| *s) => false,
                };
                // Every exit leaves the lock right: done for the interval, or free now.
                let (value, ttl) = if finished {
                    ("done", interval.as_millis() as u64)
                } else {
                    ("", 0)
                };
                let _ = crate::lease::change(&redis, "sync", &lock, &owner, value, ttl).await;
                if !finished {
                    return;
                }
            }
        }
    });
}

/// How long a running sync's lock lasts without renewal (renewed every third of it).
pub const RUN_LEASE: Duration = Duration::from_secs(30);
