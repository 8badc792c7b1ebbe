//! Purges by cache tag ([`shared::tags`]) as one isolate knows them. The Cache API cannot find
//! entries by tag (Cloudflare's purge API can, in production: every stored copy carries
//! `Cache-Tag`), so the isolate remembers *when* each tag was purged, and an entry stored (or
//! fetched) no later than that is judged on read:
//!
//! - a **hard** purge makes it a miss: the next read fetches the origin (one fetch per key per
//!   isolate: [`crate::coalesce`]);
//! - a **soft** purge makes it stale: it is served at once (`STALE`) while one background
//!   refresh replaces it, so the herd a purge would send to the origin never forms (Fastly's and
//!   Vercel's soft purge).
//!
//! Invariants: a purge is never forgotten while an entry it covers could still be served — a mark
//! lives as long as the answers carrying its tag are kept ([`shared::tags::retention_secs`]:
//! minutes for price tags, [`MAX_RETENTION_MS`] for the rest); past [`MAX_MARKS`] tags, product
//! marks widen into their country's (`price:p:c:s` → `prices:p:c`, which every price answer of
//! that country carries), and only if that is not enough does the table collapse into one mark
//! for everything (over-purging, never under-purging).

use std::collections::HashMap;

/// Most tags remembered one by one.
pub const MAX_MARKS: usize = 10_000;

/// The longest an entry is kept at the edge (fresh plus the longer stale window), over every
/// cached data type: a mark older than this covers nothing that can still be served.
pub const MAX_RETENTION_MS: u64 = shared::policy::LONGEST_EDGE_RETENTION_SECS as u64 * 1000;

/// A tag's last hard and last soft purge, kept apart: a hard purge is never undone by a later
/// soft one (an entry from before the hard purge stays a miss, whatever comes after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    hard_at_ms: Option<u64>,
    soft_at_ms: Option<u64>,
}

impl Mark {
    fn add(&mut self, soft: bool, now_ms: u64) {
        let slot = if soft {
            &mut self.soft_at_ms
        } else {
            &mut self.hard_at_ms
        };
        *slot = Some(slot.map_or(now_ms, |t| t.max(now_ms)));
    }

    /// As strong as both.
    fn merge(&mut self, other: Mark) {
        self.hard_at_ms = self.hard_at_ms.max(other.hard_at_ms);
        self.soft_at_ms = self.soft_at_ms.max(other.soft_at_ms);
    }

    fn latest_ms(&self) -> u64 {
        self.hard_at_ms.max(self.soft_at_ms).unwrap_or(0)
    }

    fn judge(&self, stored_at_ms: u64) -> Verdict {
        if self.hard_at_ms.is_some_and(|at| stored_at_ms <= at) {
            Verdict::Gone
        } else if self.soft_at_ms.is_some_and(|at| stored_at_ms <= at) {
            Verdict::Stale
        } else {
            Verdict::Current
        }
    }
}

/// How a purge judges an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No purge since it was stored.
    Current,
    /// Soft-purged: serve it stale and refresh it.
    Stale,
    /// Hard-purged: a miss.
    Gone,
}

#[derive(Default)]
pub struct Purges {
    by_tag: HashMap<String, Mark>,
    /// Everything, as of this mark (the table overflowed).
    all: Option<Mark>,
}

impl Purges {
    /// Records a purge of `tags` at `now_ms`.
    pub fn record(&mut self, tags: &[String], soft: bool, now_ms: u64) {
        for tag in tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .add(soft, now_ms);
        }
        if self.by_tag.len() > MAX_MARKS {
            self.by_tag.retain(|tag, m| {
                let kept_ms = u64::from(shared::tags::retention_secs(tag)) * 1000;
                now_ms.saturating_sub(m.latest_ms()) < kept_ms
            });
        }
        if self.by_tag.len() > MAX_MARKS {
            // Product marks into their country's: broader, never missing an entry.
            let products: Vec<String> = self
                .by_tag
                .keys()
                .filter(|t| shared::tags::country_of(t).is_some())
                .cloned()
                .collect();
            for tag in products {
                let (Some(mark), Some(country)) =
                    (self.by_tag.remove(&tag), shared::tags::country_of(&tag))
                else {
                    continue;
                };
                self.by_tag.entry(country).or_default().merge(mark);
            }
        }
        if self.by_tag.len() > MAX_MARKS {
            // Collapsed into one mark for everything, as strong as the strongest it replaces.
            let mut all = self.all.unwrap_or_default();
            for m in self.by_tag.values() {
                if m.hard_at_ms.is_some() {
                    all.add(false, now_ms);
                }
                if m.soft_at_ms.is_some() {
                    all.add(true, now_ms);
                }
            }
            self.by_tag.clear();
            self.all = Some(all);
        }
    }

    /// The verdict on an entry with `tags`, stored (or fetched) at `stored_at_ms`: the strongest
    /// of every mark that covers it.
    pub fn verdict(&self, tags: &[String], stored_at_ms: u64) -> Verdict {
        let mut verdict = Verdict::Current;
        for mark in tags
            .iter()
            .filter_map(|t| self.by_tag.get(t))
            .chain(self.all.as_ref())
        {
            match mark.judge(stored_at_ms) {
                Verdict::Gone => return Verdict::Gone,
                Verdict::Stale => verdict = Verdict::Stale,
                Verdict::Current => {}
            }
        }
        verdict
    }

    pub fn len(&self) -> usize {
        self.by_tag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty() && self.all.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_entry_stored_before_a_purge_of_one_of_its_tags_is_judged() {
        let mut p = Purges::default();
        let price = tags(&["catalog", "provider:p", "prices:p:c"]);
        let other = tags(&["catalog", "provider:p", "prices:p:d"]);
        p.record(&tags(&["prices:p:c"]), false, 1_000);
        assert_eq!(p.verdict(&price, 999), Verdict::Gone);
        assert_eq!(
            p.verdict(&price, 1_000),
            Verdict::Gone,
            "fetched at the purge's moment"
        );
        assert_eq!(
            p.verdict(&price, 1_001),
            Verdict::Current,
            "stored after it"
        );
        assert_eq!(p.verdict(&other, 999), Verdict::Current, "another country");
        p.record(&tags(&["provider:p"]), true, 2_000);
        assert_eq!(p.verdict(&other, 1_500), Verdict::Stale);
        assert_eq!(p.verdict(&price, 999), Verdict::Gone, "hard wins over soft");
        assert_eq!(p.verdict(&price, 1_500), Verdict::Stale);
    }

    #[test]
    fn a_later_soft_purge_never_revives_a_hard_purged_entry() {
        let mut p = Purges::default();
        let t = tags(&["catalog"]);
        p.record(&t, false, 5);
        p.record(&t, true, 5);
        assert_eq!(p.verdict(&t, 5), Verdict::Gone);
        // (This said Stale before: the soft purge of 6 replaced the hard one of 5.)
        p.record(&t, true, 6);
        assert_eq!(
            p.verdict(&t, 5),
            Verdict::Gone,
            "stored before the hard purge: a miss"
        );
        assert_eq!(
            p.verdict(&t, 6),
            Verdict::Stale,
            "stored between them: the soft one's"
        );
        assert_eq!(p.verdict(&t, 7), Verdict::Current);
    }

    #[test]
    fn memory_is_bounded_and_overflow_purges_everything() {
        let mut p = Purges::default();
        for i in 0..=MAX_MARKS {
            p.record(&[format!("prices:p:{i}")], false, 10);
        }
        assert!(p.len() <= MAX_MARKS, "{}", p.len());
        let anything = tags(&["catalog", "providers"]);
        assert_eq!(
            p.verdict(&anything, 9),
            Verdict::Gone,
            "over-purged, never under"
        );
        assert_eq!(p.verdict(&anything, 11), Verdict::Current);
        // Old marks are dropped before anything collapses.
        let mut p = Purges::default();
        p.record(&tags(&["old"]), false, 0);
        for i in 0..MAX_MARKS {
            p.record(&[format!("t{i}")], false, MAX_RETENTION_MS + 1);
        }
        assert_eq!(
            p.verdict(&tags(&["old"]), 0),
            Verdict::Current,
            "expired mark swept"
        );
        assert_eq!(p.verdict(&tags(&["t1"]), 0), Verdict::Gone);
    }

    /// Per-product tags (#34): a busy day purges more distinct tags than the table holds; that
    /// widens them to their countries, never to the whole catalog, and a price mark goes once no
    /// price answer from before it can be served.
    #[test]
    fn many_product_purges_widen_to_their_countries_not_to_everything() {
        let mut p = Purges::default();
        for i in 0..=MAX_MARKS {
            p.record(&[format!("price:p:c{}:s{i}", i % 50)], true, 10);
        }
        assert!(p.len() <= MAX_MARKS, "{}", p.len());
        let lists = tags(&["catalog", "provider:p", "countries:p"]);
        assert_eq!(
            p.verdict(&lists, 9),
            Verdict::Current,
            "not the whole catalog"
        );
        let sibling = tags(&["catalog", "provider:p", "prices:p:c7", "price:p:c7:other"]);
        assert_eq!(
            p.verdict(&sibling, 9),
            Verdict::Stale,
            "its country: broader, still soft"
        );
        assert_eq!(p.verdict(&sibling, 11), Verdict::Current);
        let elsewhere = tags(&["catalog", "provider:q", "prices:q:c7", "price:q:c7:s1"]);
        assert_eq!(
            p.verdict(&elsewhere, 9),
            Verdict::Current,
            "another provider"
        );

        // A price mark older than the price answers' retention is swept first.
        let price_ms = u64::from(shared::policy::DataType::Prices.policy().edge_retention()) * 1000;
        let mut p = Purges::default();
        p.record(&tags(&["price:p:c:old", "countries:p"]), false, 0);
        for i in 0..MAX_MARKS - 1 {
            p.record(&[format!("t{i}")], false, price_ms + 1);
        }
        let old = tags(&["prices:p:c", "price:p:c:old"]);
        assert_eq!(
            p.verdict(&old, 0),
            Verdict::Current,
            "a price mark outlives no price answer"
        );
        assert_eq!(
            p.verdict(&tags(&["countries:p"]), 0),
            Verdict::Gone,
            "a list mark stays"
        );
    }
}
