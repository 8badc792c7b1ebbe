//! The catalog flow in native tests: the fake runtime (`crate::fakes`) stands in for the Cache
//! API, the origin and the clock; the workerd suite (`tests/tests/edge`) is the end-to-end proof.

use std::cell::RefCell;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use shared::DataType;

use super::*;
use crate::fakes::{Fake, failing, other, storable};
use crate::memo::LIFETIME_MS;

const KEY: &str = "https://catalog.test/v1/catalog/acme/prices/us/whatsapp";
const PATH: &str = "/v1/catalog/acme/prices/us/whatsapp";

fn tags() -> Vec<String> {
    ["catalog", "provider:acme", "prices:acme:us"]
        .map(str::to_owned)
        .to_vec()
}

fn tag_list() -> Rc<[String]> {
    tags().into()
}

fn ask() -> Ask<'static> {
    Ask {
        key: KEY,
        path: PATH,
        // prices: fresh 30 s, stale-while-revalidate 30 s, stale-if-error 600 s
        policy: DataType::Prices.policy(),
        origin_timeout_ms: 3_000,
        tags: &tag_list,
        downstream_cache: false,
    }
}

/// What a test sees of an answer.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Body(CacheStatus, String, u64),
    Passthrough(u16),
    Failed(OriginFailure),
}

fn seen(answer: Answer<Vec<u8>, u16>) -> Seen {
    match answer {
        Answer::Representation {
            body, cache, age, ..
        } => {
            let bytes = match body {
                Body::Bytes(b) => b.to_vec(),
                Body::Stored(b) => b,
            };
            Seen::Body(cache, String::from_utf8(bytes).unwrap(), age)
        }
        Answer::Passthrough { response } => Seen::Passthrough(response),
        Answer::Failed(f) => Seen::Failed(f),
    }
}

fn hit(body: &str, age: u64) -> Seen {
    Seen::Body(CacheStatus::Hit, body.to_owned(), age)
}

fn miss(body: &str) -> Seen {
    Seen::Body(CacheStatus::Miss, body.to_owned(), 0)
}

fn stale(body: &str, age: u64) -> Seen {
    Seen::Body(CacheStatus::Stale, body.to_owned(), age)
}

/// Serves one request to the end (background work included).
fn serve(pool: &mut LocalPool, fake: &Fake, catalog: &Rc<Catalog>) -> Seen {
    let out = Rc::new(RefCell::new(None));
    spawn_request(pool, fake, catalog, &out);
    fake.timers.run_for(pool, 10);
    let got = out.borrow_mut().take();
    got.expect("answered within 10 ms")
}

fn spawn_request(
    pool: &mut LocalPool,
    fake: &Fake,
    catalog: &Rc<Catalog>,
    out: &Rc<RefCell<Option<Seen>>>,
) {
    let (fake, catalog, out) = (fake.clone(), catalog.clone(), out.clone());
    pool.spawner()
        .spawn_local(async move {
            let answer = catalog.serve(&fake, &ask()).await;
            *out.borrow_mut() = Some(seen(answer));
        })
        .unwrap();
}

/// `n` requests at once; their answers once all are in (or after `ms`).
fn concurrently(
    pool: &mut LocalPool,
    fake: &Fake,
    catalog: &Rc<Catalog>,
    n: usize,
    ms: u64,
) -> Vec<Seen> {
    let outs: Vec<_> = (0..n).map(|_| Rc::new(RefCell::new(None))).collect();
    for out in &outs {
        spawn_request(pool, fake, catalog, out);
    }
    fake.timers.run_for(pool, ms);
    outs.iter()
        .map(|o| o.borrow_mut().take().expect("every request answered"))
        .collect()
}

#[test]
fn a_miss_is_fetched_stored_then_served_from_memory_then_from_the_cache() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("{\"p\":1}"));
    let catalog = Rc::new(Catalog::default());

    assert_eq!(serve(&mut pool, &fake, &catalog), miss("{\"p\":1}"));
    assert_eq!(fake.fetches(), 1);
    assert_eq!(fake.cache_puts(), 1, "stored after the answer");
    assert_eq!(fake.cache_body(KEY).as_deref(), Some("{\"p\":1}"));

    // The next moment: from this isolate's memory, no cache lookup.
    let gets = fake.cache_gets();
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("{\"p\":1}", 0));
    assert_eq!(fake.cache_gets(), gets, "the memo answered");

    // Past the memo's lifetime, still fresh: from the cache, with its age.
    fake.timers.advance(LIFETIME_MS + 1_000);
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("{\"p\":1}", 3));
    assert_eq!(fake.cache_gets(), gets + 1);
    assert_eq!(fake.fetches(), 1, "nothing more from the origin");
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("new").after(50));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "old", 35_000, &tags()); // past s-maxage (30 s), within stale-while-revalidate

    let answers = concurrently(&mut pool, &fake, &catalog, 5, 0);
    assert!(
        answers.iter().all(|a| *a == stale("old", 35)),
        "{answers:?}"
    );
    assert_eq!(fake.fetches(), 1, "one refresh for five stale reads");
    fake.timers.run_for(&mut pool, 60);
    assert_eq!(fake.cache_body(KEY).as_deref(), Some("new"));
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("new", 0));

    // The refresh is over: the next stale read refreshes again.
    fake.timers.advance(31_000);
    assert_eq!(serve(&mut pool, &fake, &catalog), stale("new", 31));
    assert_eq!(fake.fetches(), 2);
}

#[test]
fn a_refresh_that_fails_keeps_the_copy_and_lets_the_next_read_try_again() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| failing(OriginFailure::Timeout));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "old", 35_000, &tags());
    assert_eq!(serve(&mut pool, &fake, &catalog), stale("old", 35));
    assert_eq!(serve(&mut pool, &fake, &catalog), stale("old", 35));
    assert_eq!(fake.fetches(), 2, "each failed refresh gave its claim up");
    assert_eq!(fake.cache_body(KEY).as_deref(), Some("old"));
}

#[test]
fn stale_if_error_serves_the_old_copy_only_when_the_origin_fails() {
    let cases = [
        (failing(OriginFailure::Timeout), stale("old", 100)),
        (
            failing(OriginFailure::Unreachable("reset".into())),
            stale("old", 100),
        ),
        (other(503), stale("old", 100)),
        (other(500), stale("old", 100)),
        (other(404), Seen::Passthrough(404)),
        (other(429), Seen::Passthrough(429)),
        (storable("new"), miss("new")),
    ];
    for (script, expected) in cases {
        let mut pool = LocalPool::new();
        let script = RefCell::new(Some(script));
        let fake = Fake::new(&pool, move |_| script.borrow_mut().take().unwrap());
        let catalog = Rc::new(Catalog::default());
        // Past fresh + stale-while-revalidate (60 s), within stale-if-error (630 s).
        fake.cached(KEY, "old", 100_000, &tags());
        assert_eq!(serve(&mut pool, &fake, &catalog), expected);
        assert_eq!(fake.fetches(), 1);
    }
}

#[test]
fn expired_copies_are_misses_and_failures_with_nothing_stale_are_failures() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| failing(OriginFailure::Timeout));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "ancient", 631_000, &tags());
    assert_eq!(
        serve(&mut pool, &fake, &catalog),
        Seen::Failed(OriginFailure::Timeout)
    );
    fake.set_origin(|_| storable("now"));
    assert_eq!(serve(&mut pool, &fake, &catalog), miss("now"));
}

#[test]
fn concurrent_misses_of_one_key_make_one_fetch() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("{}").after(100));
    let catalog = Rc::new(Catalog::default());
    let answers = concurrently(&mut pool, &fake, &catalog, 24, 120);
    assert!(answers.iter().all(|a| *a == miss("{}")), "{answers:?}");
    assert_eq!(fake.fetches(), 1, "one fetch for 24 misses");
    assert_eq!(catalog.in_flight(), 0);
}

#[test]
fn concurrent_misses_share_a_failure_and_waiters_use_their_stale_copy() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| failing(OriginFailure::Timeout).after(600));
    let catalog = Rc::new(Catalog::default());
    let answers = concurrently(&mut pool, &fake, &catalog, 16, 700);
    assert!(
        answers
            .iter()
            .all(|a| *a == Seen::Failed(OriginFailure::Timeout)),
        "{answers:?}"
    );
    assert_eq!(fake.fetches(), 1, "the struggling origin was asked once");

    // With a copy in the stale-if-error window, everyone gets it.
    fake.cached(KEY, "old", 100_000, &tags());
    let answers = concurrently(&mut pool, &fake, &catalog, 8, 700);
    assert!(
        answers.iter().all(|a| *a == stale("old", 100)),
        "{answers:?}"
    );
    assert_eq!(fake.fetches(), 2);
}

#[test]
fn answers_that_cannot_be_shared_send_each_waiter_to_the_origin() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| other(200).after(100));
    let catalog = Rc::new(Catalog::default());
    let answers = concurrently(&mut pool, &fake, &catalog, 6, 400);
    assert!(answers.iter().all(|a| *a == Seen::Passthrough(200)));
    assert_eq!(fake.fetches(), 6, "a personal answer is nobody else's");
    assert_eq!(fake.cache_puts(), 0);
}

#[test]
fn a_leader_whose_client_went_away_releases_its_waiters() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("{}").after(1_000));
    let catalog = Rc::new(Catalog::default());
    // The leader's request, polled until it is fetching, then dropped.
    let leader = {
        let (fake, catalog) = (fake.clone(), catalog.clone());
        pool.spawner()
            .spawn_local_with_handle(async move {
                let _ = catalog.serve(&fake, &ask()).await;
            })
            .unwrap()
    };
    pool.run_until_stalled();
    assert_eq!((fake.fetches(), catalog.in_flight()), (1, 1));
    let out = Rc::new(RefCell::new(None));
    spawn_request(&mut pool, &fake, &catalog, &out);
    fake.timers.run_for(&mut pool, 20);
    assert!(out.borrow().is_none(), "the waiter waits for the leader");
    drop(leader);
    fake.set_origin(|_| storable("{}"));
    fake.timers.run_for(&mut pool, 20);
    assert_eq!(out.borrow_mut().take(), Some(miss("{}")));
    assert_eq!(fake.fetches(), 2, "the waiter fetched for itself");
    assert_eq!(catalog.in_flight(), 0);
}

#[test]
fn a_memo_copy_never_outlives_the_answers_freshness() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("v"));
    let catalog = Rc::new(Catalog::default());
    // Fresh for one more second only: the memo keeps it one second, not its whole lifetime.
    fake.cached(KEY, "v", 29_000, &tags());
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("v", 29));
    fake.timers.advance(1_000);
    let gets = fake.cache_gets();
    assert_eq!(serve(&mut pool, &fake, &catalog), stale("v", 30));
    assert_eq!(
        fake.cache_gets(),
        gets + 1,
        "the stale read went to the cache"
    );
}

#[test]
fn a_hard_purge_makes_a_cached_answer_a_miss_and_one_fetch_replaces_it() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("old"));
    let catalog = Rc::new(Catalog::default());
    assert_eq!(serve(&mut pool, &fake, &catalog), miss("old"));
    assert_eq!(
        serve(&mut pool, &fake, &catalog),
        hit("old", 0),
        "from the memo"
    );
    fake.set_origin(|_| storable("new").after(50));
    fake.timers.advance(10);
    // Another country's purge touches nothing.
    assert_eq!(
        catalog.purge(&["prices:acme:de".to_owned()], false, fake.timers.now()),
        0
    );
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("old", 0));
    assert_eq!(
        catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now()),
        1
    );
    // A burst right after the purge (a millisecond: a fetch that begins in the purge's own
    // millisecond cannot be told from one before it, and is not trusted after it): one fetch,
    // everyone gets the new answer.
    fake.timers.advance(1);
    let answers = concurrently(&mut pool, &fake, &catalog, 50, 80);
    assert!(answers.iter().all(|a| *a == miss("new")), "{answers:?}");
    assert_eq!(fake.fetches(), 2, "the first miss and one after the purge");
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("new", 0));
}

#[test]
fn a_soft_purge_serves_the_old_answer_stale_while_one_refresh_replaces_it() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("new").after(50));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "old", 5_000, &tags());
    fake.timers.advance(1);
    catalog.purge(&["provider:acme".to_owned()], true, fake.timers.now());
    fake.timers.advance(1);
    let answers = concurrently(&mut pool, &fake, &catalog, 20, 0);
    assert!(answers.iter().all(|a| *a == stale("old", 5)), "{answers:?}");
    assert_eq!(fake.fetches(), 1, "one refresh for the herd");
    fake.timers.run_for(&mut pool, 60);
    assert_eq!(serve(&mut pool, &fake, &catalog), hit("new", 0));
}

/// A cache downstream (a trusted server-side client: the Next.js data cache, purged too) is not
/// handed the soft-purged copy (#34): it would store the old answer as new for its own lifetime
/// (seen in the browser test: the page kept the old price past the purge). It waits for the one
/// refresh the public's stale reads share.
#[test]
fn a_soft_purged_copy_is_not_served_to_a_cache_downstream() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("new").after(50));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "old", 5_000, &tags());
    fake.timers.advance(1);
    catalog.purge(&["provider:acme".to_owned()], true, fake.timers.now());
    fake.timers.advance(1);
    let out = Rc::new(RefCell::new(None));
    let (f, c, o) = (fake.clone(), catalog.clone(), out.clone());
    pool.spawner()
        .spawn_local(async move {
            let ask = Ask {
                downstream_cache: true,
                ..ask()
            };
            let answer = c.serve(&f, &ask).await;
            *o.borrow_mut() = Some(seen(answer));
        })
        .unwrap();
    fake.timers.run_for(&mut pool, 60);
    assert_eq!(
        out.borrow_mut().take(),
        Some(miss("new")),
        "the new answer, not the old"
    );
    assert_eq!(fake.fetches(), 1);
    assert_eq!(
        serve(&mut pool, &fake, &catalog),
        hit("new", 0),
        "and everyone's since"
    );
}

#[test]
fn an_answer_fetched_across_a_purge_is_not_trusted_after_it() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("old").after(100));
    let catalog = Rc::new(Catalog::default());
    let out = Rc::new(RefCell::new(None));
    spawn_request(&mut pool, &fake, &catalog, &out);
    fake.timers.run_for(&mut pool, 50);
    // The price changes (and is purged) while that fetch is out; it brings the old answer back.
    catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now());
    fake.timers.run_for(&mut pool, 60);
    assert_eq!(
        out.borrow_mut().take(),
        Some(miss("old")),
        "its own client gets what it fetched"
    );
    fake.set_origin(|_| storable("new"));
    fake.timers.advance(LIFETIME_MS);
    assert_eq!(
        serve(&mut pool, &fake, &catalog),
        miss("new"),
        "the stored copy predates the purge"
    );
}

/// A request whose cache lookup is out while another's fetch lands (#33 item 10): the flight is
/// gone by the time it joins, and without a second look at the memo it led a second fetch (the
/// workerd suite's flake: 2 origin fetches for a burst after a purge, 3 of 3 runs with 15 ms
/// added to every lookup). The fake's lookups take 15 ms here, so the two interleave.
#[test]
fn a_lookup_that_outlasts_a_flight_finds_its_answer_in_the_memo() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("old"));
    let catalog = Rc::new(Catalog::default());
    assert_eq!(serve(&mut pool, &fake, &catalog), miss("old"));
    fake.timers.advance(LIFETIME_MS);
    catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now());
    fake.timers.advance(1);
    fake.set_origin(|_| storable("new").after(5));
    fake.slow_cache(15);
    let fetched = fake.fetches();
    // The first request: lookup (15 ms, the purged copy), then leads a 5 ms fetch: lands at 20.
    let (first, second) = (Rc::new(RefCell::new(None)), Rc::new(RefCell::new(None)));
    spawn_request(&mut pool, &fake, &catalog, &first);
    fake.timers.run_for(&mut pool, 10);
    // The second starts at 10: its lookup (still the purged copy) ends at 25, after the landing.
    spawn_request(&mut pool, &fake, &catalog, &second);
    fake.timers.run_for(&mut pool, 40);
    assert_eq!(first.borrow_mut().take(), Some(miss("new")));
    assert_eq!(
        second.borrow_mut().take(),
        Some(hit("new", 0)),
        "from the first's landing"
    );
    assert_eq!(fake.fetches() - fetched, 1, "one fetch for both");
}

/// An answer fetched before a purge and returned after it never enters the memo (#33 item 10):
/// the isolate that took the purge answered `HIT` with the old price for up to 2 s (the memo's
/// lifetime; the test above this one's sibling waited it out).
#[test]
fn an_answer_fetched_across_a_purge_never_enters_the_memo() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("old").after(100));
    let catalog = Rc::new(Catalog::default());
    let out = Rc::new(RefCell::new(None));
    spawn_request(&mut pool, &fake, &catalog, &out);
    fake.timers.run_for(&mut pool, 50);
    catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now());
    fake.timers.run_for(&mut pool, 60);
    assert_eq!(out.borrow_mut().take(), Some(miss("old")));
    fake.set_origin(|_| storable("new"));
    // At once, not after the memo's lifetime: the old answer is not served from memory.
    assert_eq!(serve(&mut pool, &fake, &catalog), miss("new"));
}

/// A request that arrives after a purge does not take the answer of a flight begun before it
/// (#33 item 10): it fetches for itself; a request that had joined before the purge keeps the
/// flight's answer (it asked before the change).
#[test]
fn a_request_after_a_purge_does_not_join_a_flight_from_before_it() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("old").after(100));
    let catalog = Rc::new(Catalog::default());
    let (leader, early, late) = (
        Rc::new(RefCell::new(None)),
        Rc::new(RefCell::new(None)),
        Rc::new(RefCell::new(None)),
    );
    spawn_request(&mut pool, &fake, &catalog, &leader);
    fake.timers.run_for(&mut pool, 20);
    spawn_request(&mut pool, &fake, &catalog, &early);
    fake.timers.run_for(&mut pool, 30);
    catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now());
    fake.set_origin(|_| storable("new").after(10));
    fake.timers.advance(1);
    spawn_request(&mut pool, &fake, &catalog, &late);
    fake.timers.run_for(&mut pool, 100);
    assert_eq!(leader.borrow_mut().take(), Some(miss("old")));
    assert_eq!(
        early.borrow_mut().take(),
        Some(miss("old")),
        "joined before the purge"
    );
    assert_eq!(
        late.borrow_mut().take(),
        Some(miss("new")),
        "joined after it: its own fetch"
    );
}

/// A later soft purge never revives a hard-purged entry (#33 item 10): it stays a miss.
#[test]
fn a_soft_purge_after_a_hard_one_leaves_the_entry_a_miss() {
    let mut pool = LocalPool::new();
    let fake = Fake::new(&pool, |_| storable("new"));
    let catalog = Rc::new(Catalog::default());
    fake.cached(KEY, "old", 1_000, &tags());
    fake.timers.advance(1);
    catalog.purge(&["prices:acme:us".to_owned()], false, fake.timers.now());
    fake.timers.advance(1);
    catalog.purge(&["prices:acme:us".to_owned()], true, fake.timers.now());
    fake.timers.advance(1);
    assert_eq!(
        serve(&mut pool, &fake, &catalog),
        miss("new"),
        "not STALE old"
    );
}
