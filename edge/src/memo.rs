//! The isolate's own copy of hot catalog answers, in front of the Cache API: a fresh answer an
//! isolate has just read or stored is served from its memory for a moment, without a cache
//! lookup (a subrequest to the runtime's cache service, which is most of what a hit costs).
//!
//! It never serves anything the Cache API would not serve as fresh: an entry is kept at most
//! until the answer's own freshness (`s-maxage`) ends, so stale-while-revalidate, refreshes and
//! stale-if-error all still go through the Cache API. What it adds is a lag of at most
//! [`LIFETIME_MS`] before an isolate sees an entry purged from the Cache API by an operator
//! (the origin's L1 has the same bound for the same reason).
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of bodies, no body over
//! [`MAX_BODY`]. When full, expired entries are swept; if it is still full, the new entry is
//! simply not kept (a flood of cold keys cannot evict much: everything here is gone within
//! [`LIFETIME_MS`] anyway).

use std::collections::HashMap;
use std::rc::Rc;

/// Longest an isolate keeps an answer (and so the lag of a purge).
pub const LIFETIME_MS: u64 = 2_000;
pub const MAX_ENTRIES: usize = 512;
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
pub const MAX_BODY: usize = 256 * 1024;

/// One kept answer: what the Cache API holds for its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub body: Rc<[u8]>,
    pub etag: Rc<str>,
    /// When the answer was stored in the Cache API (its `Age` counts from here).
    pub stored_at_ms: u64,
    /// Its cache tags: a purge of any of them forgets it.
    pub tags: Rc<[String]>,
    until_ms: u64,
}

#[derive(Default)]
pub struct Memo {
    entries: HashMap<String, Kept>,
    bytes: usize,
}

impl Memo {
    /// The answer kept under `key`, if it is still to be served at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Kept> {
        self.entries
            .get(key)
            .filter(|k| now_ms < k.until_ms)
            .cloned()
    }

    /// Keeps an answer stored at `stored_at_ms` that is fresh until `fresh_until_ms`, for at
    /// most [`LIFETIME_MS`] from `now_ms`; returns whether it was kept.
    #[allow(clippy::too_many_arguments)] // the parts of one entry, each a different type of fact
    pub fn put(
        &mut self,
        key: &str,
        body: Rc<[u8]>,
        etag: Rc<str>,
        tags: Rc<[String]>,
        stored_at_ms: u64,
        fresh_until_ms: u64,
        now_ms: u64,
    ) -> bool {
        let until_ms = fresh_until_ms.min(now_ms + LIFETIME_MS);
        if until_ms <= now_ms || body.len() > MAX_BODY {
            return false;
        }
        self.remove(key);
        if self.entries.len() >= MAX_ENTRIES || self.bytes + body.len() > MAX_BYTES {
            self.sweep(now_ms);
        }
        if self.entries.len() >= MAX_ENTRIES || self.bytes + body.len() > MAX_BYTES {
            return false;
        }
        self.bytes += body.len();
        let kept = Kept {
            body,
            etag,
            tags,
            stored_at_ms,
            until_ms,
        };
        self.entries.insert(key.to_owned(), kept);
        true
    }

    /// Forgets every entry carrying one of `tags`; returns how many.
    pub fn forget_tagged(&mut self, tags: &[String]) -> usize {
        let before = self.entries.len();
        let bytes = &mut self.bytes;
        self.entries.retain(|_, k| {
            let purged = k.tags.iter().any(|t| tags.contains(t));
            if purged {
                *bytes -= k.body.len();
            }
            !purged
        });
        before - self.entries.len()
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.body.len();
        }
    }

    fn sweep(&mut self, now_ms: u64) {
        let bytes = &mut self.bytes;
        self.entries.retain(|_, k| {
            let live = now_ms < k.until_ms;
            if !live {
                *bytes -= k.body.len();
            }
            live
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(bytes: &[u8]) -> Rc<[u8]> {
        Rc::from(bytes)
    }

    fn t(etag: &str) -> Rc<str> {
        Rc::from(etag)
    }

    fn tags() -> Rc<[String]> {
        Rc::from(vec!["catalog".to_owned()])
    }

    #[test]
    fn kept_for_its_lifetime_and_never_past_its_freshness() {
        let mut m = Memo::default();
        assert!(m.put("a", b(b"{}"), t("\"t\""), tags(), 1_000, 1_000_000, 5_000));
        let got = m.get("a", 5_000).unwrap();
        assert_eq!(
            (&*got.body, &*got.etag, got.stored_at_ms),
            (&b"{}"[..], "\"t\"", 1_000)
        );
        assert!(m.get("a", 5_000 + LIFETIME_MS - 1).is_some());
        assert_eq!(m.get("a", 5_000 + LIFETIME_MS), None, "lifetime");
        // Fresh for only 500 ms more: kept 500 ms, not the whole lifetime.
        assert!(m.put("b", b(b"{}"), t("\"t\""), tags(), 0, 5_500, 5_000));
        assert!(m.get("b", 5_499).is_some());
        assert_eq!(m.get("b", 5_500), None, "freshness ends first");
        assert!(
            !m.put("c", b(b"{}"), t("\"t\""), tags(), 0, 5_000, 5_000),
            "already stale"
        );
        assert_eq!(m.get("c", 5_000), None);
    }

    #[test]
    fn a_purge_forgets_exactly_the_tagged_entries() {
        let mut m = Memo::default();
        let tagged = |t: &[&str]| -> Rc<[String]> { t.iter().map(|s| s.to_string()).collect() };
        assert!(m.put(
            "a",
            b(&[0; 10]),
            t("\"a\""),
            tagged(&["catalog", "prices:p:c"]),
            0,
            u64::MAX,
            0
        ));
        assert!(m.put(
            "b",
            b(&[0; 20]),
            t("\"b\""),
            tagged(&["catalog", "prices:p:d"]),
            0,
            u64::MAX,
            0
        ));
        assert_eq!(m.forget_tagged(&["prices:p:c".to_owned()]), 1);
        assert_eq!((m.len(), m.bytes()), (1, 20));
        assert!(m.get("a", 1).is_none() && m.get("b", 1).is_some());
        assert_eq!(m.forget_tagged(&["catalog".to_owned()]), 1);
        assert_eq!((m.len(), m.bytes()), (0, 0));
    }

    #[test]
    fn a_replaced_entry_is_counted_once() {
        let mut m = Memo::default();
        assert!(m.put("a", b(&[0; 100]), t("\"1\""), tags(), 0, u64::MAX, 0));
        assert!(m.put("a", b(&[0; 40]), t("\"2\""), tags(), 0, u64::MAX, 0));
        assert_eq!((m.len(), m.bytes()), (1, 40));
        assert_eq!(&*m.get("a", 1).unwrap().etag, "\"2\"");
    }

    #[test]
    fn memory_is_bounded_and_a_full_memo_sweeps_then_refuses() {
        let mut m = Memo::default();
        assert!(!m.put(
            "big",
            b(&vec![0; MAX_BODY + 1]),
            t("\"t\""),
            tags(),
            0,
            u64::MAX,
            0
        ));
        for i in 0..MAX_ENTRIES {
            assert!(m.put(
                &format!("k{i}"),
                b(b"x"),
                t("\"t\""),
                tags(),
                0,
                u64::MAX,
                0
            ));
        }
        assert!(
            !m.put("one-more", b(b"x"), t("\"t\""), tags(), 0, u64::MAX, 1),
            "full of live entries"
        );
        assert_eq!(m.len(), MAX_ENTRIES);
        // Once they have lived their lifetime, the next put sweeps them away.
        assert!(m.put(
            "later",
            b(b"x"),
            t("\"t\""),
            tags(),
            0,
            u64::MAX,
            LIFETIME_MS
        ));
        assert_eq!((m.len(), m.bytes()), (1, 1));
        // And the byte bound holds on its own.
        let mut m = Memo::default();
        let body = vec![0; MAX_BODY];
        let fit = MAX_BYTES / MAX_BODY;
        for i in 0..fit {
            assert!(m.put(
                &format!("b{i}"),
                b(&body),
                t("\"t\""),
                tags(),
                0,
                u64::MAX,
                0
            ));
        }
        assert!(!m.put("over", b(&body), t("\"t\""), tags(), 0, u64::MAX, 0));
        assert!(m.bytes() <= MAX_BYTES);
    }
}
