//! The catalog flow, start to end, over [`Ports`]: one request for a catalog representation
//! becomes an [`Answer`] in three steps, each tried in turn:
//!
//! 1. [`Catalog::try_memo`]: this isolate's copy of an answer fresh a moment ago → `HIT`;
//! 2. [`Catalog::try_cache`]: the edge cache — fresh → `HIT` (and kept in the memo); within
//!    stale-while-revalidate → `STALE` at once, plus one background refresh per key; within
//!    stale-if-error → kept aside in case the origin fails; else nothing. A purge of one of the
//!    entry's tags since it was fetched ([`crate::purge`]) makes it a miss (hard) or stale
//!    (soft);
//! 3. [`Catalog::try_origin`]: one fetch per key in this isolate ([`crate::coalesce`]); a
//!    storable answer → `MISS`, stored after replying and shared with the waiters; a failure or a
//!    5xx → the stale copy if there is one, else the failure; anything else passed through.
//!
//! The answer says *what* to send; `reply` decides the status (200, 304) and headers, and the
//! glue builds the runtime's response.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use shared::CachePolicy;

use crate::coalesce::{Flights, Landed, Role};
use crate::freshness::{Freshness, age_secs, classify};
use crate::headers::CacheStatus;
use crate::memo::Memo;
use crate::ports::{Copy, Fetched, OriginFailure, Ports};
use crate::purge::{Purges, Verdict};

/// The isolate-wide state of the catalog flow.
#[derive(Default)]
pub struct Catalog {
    /// Hot answers this isolate just read or stored, served without a cache lookup.
    memo: RefCell<Memo>,
    /// Origin fetches in progress, by cache key.
    flights: Rc<Flights<Shared>>,
    /// Cache keys being refreshed in the background: at most one refresh per key.
    refreshing: RefCell<HashSet<String>>,
    /// The purges this isolate has been told of, by tag.
    purges: RefCell<Purges>,
}

/// One catalog request.
pub struct Ask<'a> {
    /// The edge cache key: an absolute URL on the configured public host.
    pub key: &'a str,
    /// The canonical path and query, as fetched from the origin.
    pub path: &'a str,
    pub policy: CachePolicy,
    pub origin_timeout_ms: u32,
    /// The answer's cache tags ([`shared::tags::for_route`]), made only when an answer is
    /// stored: a hit never needs them.
    pub tags: &'a dyn Fn() -> Rc<[String]>,
    /// The caller is a cache itself (a trusted server-side client: the Next.js data cache). A
    /// soft-purged copy is not served to it: it would store the old answer as the new one and
    /// keep it for its own lifetime; it waits for the refresh instead.
    pub downstream_cache: bool,
}

/// What to send for a catalog request.
pub enum Answer<B, R> {
    /// The catalog representation, with the policy's headers (or a 304 for a matching tag).
    Representation {
        body: Body<B>,
        etag: Rc<str>,
        cache: CacheStatus,
        age: u64,
    },
    /// The origin's own answer (an error, a personal answer), as it is.
    Passthrough { response: R },
    /// No answer from the origin and nothing stale to serve instead.
    Failed(OriginFailure),
}

/// A representation's bytes: in memory, or the edge cache's body handed on unread.
pub enum Body<B> {
    Bytes(Rc<[u8]>),
    Stored(B),
}

/// What a flight hands to the requests that waited for it: an answer with the moment its fetch
/// began and its tags (a waiter checks them against the purges it knows of), or the failure.
#[derive(Clone)]
enum Shared {
    Answer {
        body: Rc<[u8]>,
        etag: Rc<str>,
        started_ms: u64,
        tags: Rc<[String]>,
    },
    Failed(OriginFailure),
}

/// A copy past stale-while-revalidate, served only if the origin fails.
struct Stale {
    body: Rc<[u8]>,
    etag: Rc<str>,
    age: u64,
}

impl Stale {
    fn answer<B, R>(self) -> Answer<B, R> {
        Answer::Representation {
            body: Body::Bytes(self.body),
            etag: self.etag,
            cache: CacheStatus::Stale,
            age: self.age,
        }
    }
}

/// What the edge cache gave.
enum Cached<B, R> {
    Answer(Answer<B, R>),
    StaleIfError(Stale),
    Nothing,
}

impl Catalog {
    pub async fn serve<P: Ports>(
        self: &Rc<Self>,
        ports: &P,
        ask: &Ask<'_>,
    ) -> Answer<P::Body, P::Passthrough> {
        if let Some(answer) = self.try_memo(ports, ask) {
            return answer;
        }
        let stale = match self.try_cache(ports, ask).await {
            Cached::Answer(answer) => return answer,
            Cached::StaleIfError(stale) => Some(stale),
            Cached::Nothing => None,
        };
        self.try_origin(ports, ask, stale).await
    }

    fn try_memo<P: Ports>(
        &self,
        ports: &P,
        ask: &Ask<'_>,
    ) -> Option<Answer<P::Body, P::Passthrough>> {
        let now = ports.now_ms();
        let kept = self.memo.borrow().get(ask.key, now)?;
        Some(Answer::Representation {
            age: age_secs(kept.stored_at_ms, now),
            body: Body::Bytes(kept.body),
            etag: kept.etag,
            cache: CacheStatus::Hit,
        })
    }

    async fn try_cache<P: Ports>(
        self: &Rc<Self>,
        ports: &P,
        ask: &Ask<'_>,
    ) -> Cached<P::Body, P::Passthrough> {
        let Some(entry) = ports.cache_get(ask.key).await else {
            return Cached::Nothing;
        };
        let now = ports.now_ms();
        let age = age_secs(entry.stored_at_ms, now);
        let verdict = self
            .purges
            .borrow()
            .verdict(&entry.tags, entry.stored_at_ms);
        let freshness = match (verdict, classify(age, &ask.policy)) {
            (Verdict::Gone, _) => return Cached::Nothing,
            (Verdict::Stale, Freshness::Fresh | Freshness::StaleWhileRevalidate)
                if ask.downstream_cache =>
            {
                return Cached::Nothing;
            }
            (Verdict::Stale, Freshness::Fresh) => Freshness::StaleWhileRevalidate,
            (_, freshness) => freshness,
        };
        match freshness {
            // Read once into this isolate's memory: the requests of the next moment are answered
            // from there without a cache lookup.
            Freshness::Fresh => {
                let Some(bytes) = ports.read(entry.body).await else {
                    return Cached::Nothing;
                };
                let (body, etag): (Rc<[u8]>, Rc<str>) = (bytes.into(), entry.etag.into());
                let tags: Rc<[String]> = entry.tags.into();
                self.keep(
                    ask.key,
                    &body,
                    &etag,
                    &tags,
                    entry.stored_at_ms,
                    &ask.policy,
                    now,
                );
                Cached::Answer(Answer::Representation {
                    body: Body::Bytes(body),
                    etag,
                    cache: CacheStatus::Hit,
                    age,
                })
            }
            Freshness::StaleWhileRevalidate => {
                self.refresh(ports, ask);
                Cached::Answer(Answer::Representation {
                    body: Body::Stored(entry.body),
                    etag: entry.etag.into(),
                    cache: CacheStatus::Stale,
                    age,
                })
            }
            Freshness::StaleIfError => match ports.read(entry.body).await {
                Some(bytes) => Cached::StaleIfError(Stale {
                    body: bytes.into(),
                    etag: entry.etag.into(),
                    age,
                }),
                None => Cached::Nothing,
            },
            Freshness::Expired => Cached::Nothing,
        }
    }

    async fn try_origin<P: Ports>(
        self: &Rc<Self>,
        ports: &P,
        ask: &Ask<'_>,
        stale: Option<Stale>,
    ) -> Answer<P::Body, P::Passthrough> {
        let leading = match self.flights.join(ask.key) {
            Role::Leader(leading) => {
                // The memo again, now that this request leads: a flight that landed while its
                // cache lookup was out left its answer there (and is gone, so this request would
                // otherwise fetch a second time).
                let now = ports.now_ms();
                let kept = self.memo.borrow().get(ask.key, now);
                if let Some(kept) = kept {
                    leading.land(Shared::Answer {
                        body: kept.body.clone(),
                        etag: kept.etag.clone(),
                        started_ms: kept.stored_at_ms,
                        tags: kept.tags.clone(),
                    });
                    return Answer::Representation {
                        age: age_secs(kept.stored_at_ms, now),
                        body: Body::Bytes(kept.body),
                        etag: kept.etag,
                        cache: CacheStatus::Hit,
                    };
                }
                Some(leading)
            }
            Role::Waiter(waiting) => {
                let joined_ms = ports.now_ms();
                match waiting
                    .wait(|ms| ports.sleep(ms), ask.origin_timeout_ms)
                    .await
                {
                    // A flight that began before a purge of its tags, joined after it: its answer
                    // predates what this request asked after, so it fetches for itself. (One
                    // joined before the purge takes it: it asked before the change.)
                    Landed::Shared(Shared::Answer {
                        body,
                        etag,
                        started_ms,
                        tags,
                    }) if !self.purged_between(&tags, started_ms, joined_ms) => {
                        return Answer::Representation {
                            body: Body::Bytes(body),
                            etag,
                            cache: CacheStatus::Miss,
                            age: 0,
                        };
                    }
                    Landed::Shared(Shared::Answer { .. }) => None,
                    Landed::Shared(Shared::Failed(failure)) => {
                        return stale.map_or(Answer::Failed(failure), Stale::answer);
                    }
                    Landed::Nothing => None,
                }
            }
        };
        // A copy is stamped with the moment its fetch began: a purge that lands while the
        // fetch is out covers what it brings back.
        let started = ports.now_ms();
        match ports.fetch(ask.path).await {
            Ok(Fetched::Storable { body, etag }) => {
                let copy = self.copy_of(ports, ask, started, body, etag);
                let (p, key, stored) = (ports.clone(), ask.key.to_owned(), copy.clone());
                ports.in_background(async move { p.cache_put(&key, &stored).await });
                if let Some(leading) = leading {
                    leading.land(Shared::Answer {
                        body: copy.body.clone(),
                        etag: copy.etag.clone(),
                        started_ms: copy.stored_at_ms,
                        tags: copy.tags.clone(),
                    });
                }
                Answer::Representation {
                    body: Body::Bytes(copy.body),
                    etag: copy.etag,
                    cache: CacheStatus::Miss,
                    age: 0,
                }
            }
            // Nothing to share (dropping `leading` says so): each waiter fetches for itself.
            Ok(Fetched::Other { status, response }) => match stale {
                Some(stale) if status >= 500 => stale.answer(),
                _ => Answer::Passthrough { response },
            },
            Err(failure) => {
                if let Some(leading) = leading {
                    leading.land(Shared::Failed(failure.clone()));
                }
                stale.map_or(Answer::Failed(failure), Stale::answer)
            }
        }
    }

    /// One background refresh per key, on behalf of the client that found the entry stale.
    fn refresh<P: Ports>(self: &Rc<Self>, ports: &P, ask: &Ask<'_>) {
        if !self.refreshing.borrow_mut().insert(ask.key.to_owned()) {
            return;
        }
        let guard = Refreshing {
            catalog: self.clone(),
            key: ask.key.to_owned(),
        };
        let (p, path, policy, tags) =
            (ports.clone(), ask.path.to_owned(), ask.policy, (ask.tags)());
        let timeout = ask.origin_timeout_ms;
        ports.in_background(async move {
            let started = p.now_ms();
            if let Ok(Fetched::Storable { body, etag }) = p.fetch(&path).await {
                let tags = move || tags.clone();
                let ask = Ask {
                    key: &guard.key,
                    path: &path,
                    policy,
                    origin_timeout_ms: timeout,
                    tags: &tags,
                    downstream_cache: false,
                };
                let copy = guard.catalog.copy_of(&p, &ask, started, body, etag);
                p.cache_put(&guard.key, &copy).await;
            }
            drop(guard);
        });
    }

    /// The copy of a fresh origin answer to store, stamped with the moment its fetch began, and
    /// kept in the memo with the same stamp.
    fn copy_of<P: Ports>(
        &self,
        ports: &P,
        ask: &Ask<'_>,
        started_ms: u64,
        body: Vec<u8>,
        etag: String,
    ) -> Copy {
        let copy = Copy {
            body: body.into(),
            etag: etag.into(),
            stored_at_ms: started_ms,
            policy: ask.policy,
            tags: (ask.tags)(),
        };
        let now = ports.now_ms();
        self.keep(
            ask.key,
            &copy.body,
            &copy.etag,
            &copy.tags,
            started_ms,
            &ask.policy,
            now,
        );
        copy
    }

    /// Keeps an answer stored at `stored_at_ms` in the memo, at most while it is fresh, and never
    /// one a purge already covers: a fetch that began before a purge and returned after it would
    /// otherwise put the old answer back into the memo the purge had just cleared.
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &self,
        key: &str,
        body: &Rc<[u8]>,
        etag: &Rc<str>,
        tags: &Rc<[String]>,
        stored_at_ms: u64,
        policy: &CachePolicy,
        now_ms: u64,
    ) {
        if self.purges.borrow().verdict(tags, stored_at_ms) != Verdict::Current {
            return;
        }
        let fresh_until_ms = stored_at_ms + u64::from(policy.s_maxage) * 1000;
        self.memo.borrow_mut().put(
            key,
            body.clone(),
            etag.clone(),
            tags.clone(),
            stored_at_ms,
            fresh_until_ms,
            now_ms,
        );
    }

    /// Whether a purge of `tags` came after a fetch began (`started_ms`) and before a request
    /// joined it (`joined_ms`).
    fn purged_between(&self, tags: &[String], started_ms: u64, joined_ms: u64) -> bool {
        let purges = self.purges.borrow();
        purges.verdict(tags, started_ms) != Verdict::Current
            && purges.verdict(tags, joined_ms) == Verdict::Current
    }

    /// A purge of `tags` at `now_ms`: entries fetched no later are a miss (`soft`: stale) from
    /// now on, and this isolate's copies of them are forgotten. Returns how many copies.
    pub fn purge(&self, tags: &[String], soft: bool, now_ms: u64) -> usize {
        self.purges.borrow_mut().record(tags, soft, now_ms);
        self.memo.borrow_mut().forget_tagged(tags)
    }

    /// Keys with an origin fetch in progress (for tests).
    pub fn in_flight(&self) -> usize {
        self.flights.in_flight()
    }
}

/// A key's claim on its background refresh, given up however the refresh ends (the runtime may
/// cancel work after the response).
struct Refreshing {
    catalog: Rc<Catalog>,
    key: String,
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.catalog.refreshing.borrow_mut().remove(&self.key);
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
