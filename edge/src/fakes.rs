//! In-memory stand-ins for the Workers runtime, for native tests of the catalog flow: a clock
//! whose timers the test advances, an edge cache, an origin that answers as the test scripts it,
//! and background work on the test's own executor. Nothing here is compiled into the worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;

use crate::ports::{Copy, Entry, Fetched, OriginFailure, Ports};

/// A clock that moves only when the test says, with timers that fire when it passes them.
#[derive(Clone, Default)]
pub struct Timers {
    inner: Rc<TimersInner>,
}

#[derive(Default)]
struct TimersInner {
    now: Cell<u64>,
    waiting: RefCell<Vec<(u64, Waker)>>,
}

/// The fake epoch: an ordinary moment in ms, so ages computed from it are plausible.
pub const EPOCH_MS: u64 = 1_790_000_000_000;

impl Timers {
    pub fn now(&self) -> u64 {
        EPOCH_MS + self.inner.now.get()
    }

    pub fn sleep(&self, ms: u64) -> Sleep {
        Sleep {
            timers: self.inner.clone(),
            until: self.inner.now.get() + ms,
        }
    }

    /// Moves the clock on and wakes every timer it passed.
    pub fn advance(&self, ms: u64) {
        let now = self.inner.now.get() + ms;
        self.inner.now.set(now);
        let due: Vec<Waker> = {
            let mut waiting = self.inner.waiting.borrow_mut();
            let (due, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(at, _)| *at <= now);
            *waiting = later;
            due.into_iter().map(|(_, w)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Runs everything runnable, a millisecond at a time, for `ms`.
    pub fn run_for(&self, pool: &mut LocalPool, ms: u64) {
        pool.run_until_stalled();
        for _ in 0..ms {
            self.advance(1);
            pool.run_until_stalled();
        }
    }
}

pub struct Sleep {
    timers: Rc<TimersInner>,
    until: u64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timers.now.get() >= self.until {
            return Poll::Ready(());
        }
        self.timers
            .waiting
            .borrow_mut()
            .push((self.until, cx.waker().clone()));
        Poll::Pending
    }
}

/// What the fake origin does for one fetch: answer after `delay_ms`.
pub struct Script {
    pub delay_ms: u64,
    pub result: Result<Fetched<u16>, OriginFailure>,
}

/// A `200` the cache may keep, with the body's tag.
pub fn storable(body: &str) -> Script {
    Script {
        delay_ms: 0,
        result: Ok(Fetched::Storable {
            body: body.as_bytes().to_vec(),
            etag: shared::etag::strong_etag(body.as_bytes()),
        }),
    }
}

/// Any other answer (status only).
pub fn other(status: u16) -> Script {
    Script {
        delay_ms: 0,
        result: Ok(Fetched::Other {
            status,
            response: status,
        }),
    }
}

pub fn failing(failure: OriginFailure) -> Script {
    Script {
        delay_ms: 0,
        result: Err(failure),
    }
}

impl Script {
    pub fn after(mut self, delay_ms: u64) -> Self {
        self.delay_ms = delay_ms;
        self
    }
}

type Origin = Box<dyn FnMut(&str) -> Script>;

/// The runtime: edge cache, origin, clock, background work.
#[derive(Clone)]
pub struct Fake {
    pub timers: Timers,
    inner: Rc<FakeInner>,
}

/// body, etag, stored at, tags
type CachedEntry = (Vec<u8>, String, u64, Vec<String>);

struct FakeInner {
    cache: RefCell<HashMap<String, CachedEntry>>,
    origin: RefCell<Origin>,
    fetched: RefCell<Vec<String>>,
    cache_gets: Cell<usize>,
    /// How long a cache lookup takes (0: answered at once); what it answers is what the cache
    /// held when it began, as a lookup in flight would.
    cache_get_ms: Cell<u64>,
    cache_puts: Cell<usize>,
    spawner: LocalSpawner,
}

impl Fake {
    /// A fake whose background work runs on `pool`, with an origin that answers per `origin`.
    pub fn new(pool: &LocalPool, origin: impl FnMut(&str) -> Script + 'static) -> Fake {
        Fake {
            timers: Timers::default(),
            inner: Rc::new(FakeInner {
                cache: RefCell::default(),
                origin: RefCell::new(Box::new(origin)),
                fetched: RefCell::default(),
                cache_gets: Cell::new(0),
                cache_get_ms: Cell::new(0),
                cache_puts: Cell::new(0),
                spawner: pool.spawner(),
            }),
        }
    }

    pub fn set_origin(&self, origin: impl FnMut(&str) -> Script + 'static) {
        *self.inner.origin.borrow_mut() = Box::new(origin);
    }

    /// Puts an entry in the edge cache as if stored `age_ms` ago, with `tags`.
    pub fn cached(&self, key: &str, body: &str, age_ms: u64, tags: &[String]) {
        let stored_at = self.timers.now() - age_ms;
        let etag = shared::etag::strong_etag(body.as_bytes());
        let entry = (body.as_bytes().to_vec(), etag, stored_at, tags.to_vec());
        self.inner.cache.borrow_mut().insert(key.to_owned(), entry);
    }

    /// The body the edge cache holds for `key`.
    pub fn cache_body(&self, key: &str) -> Option<String> {
        let cache = self.inner.cache.borrow();
        cache
            .get(key)
            .map(|(body, ..)| String::from_utf8_lossy(body).into_owned())
    }

    /// Origin fetches so far.
    /// Cache lookups take `ms` from now on (the others' work interleaves with them).
    pub fn slow_cache(&self, ms: u64) {
        self.inner.cache_get_ms.set(ms);
    }

    pub fn fetches(&self) -> usize {
        self.inner.fetched.borrow().len()
    }

    pub fn cache_gets(&self) -> usize {
        self.inner.cache_gets.get()
    }

    pub fn cache_puts(&self) -> usize {
        self.inner.cache_puts.get()
    }
}

impl Ports for Fake {
    type Body = Vec<u8>;
    type Passthrough = u16;

    fn now_ms(&self) -> u64 {
        self.timers.now()
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + 'static {
        self.timers.sleep(ms)
    }

    async fn cache_get(&self, key: &str) -> Option<Entry<Vec<u8>>> {
        self.inner.cache_gets.set(self.inner.cache_gets.get() + 1);
        let found = {
            let cache = self.inner.cache.borrow();
            cache.get(key).map(|(body, etag, stored_at, tags)| Entry {
                body: body.clone(),
                etag: etag.clone(),
                stored_at_ms: *stored_at,
                tags: tags.clone(),
            })
        };
        let delay = self.inner.cache_get_ms.get();
        if delay > 0 {
            self.timers.sleep(delay).await;
        }
        found
    }

    async fn read(&self, body: Vec<u8>) -> Option<Vec<u8>> {
        Some(body)
    }

    async fn cache_put(&self, key: &str, copy: &Copy) {
        self.inner.cache_puts.set(self.inner.cache_puts.get() + 1);
        self.inner.cache.borrow_mut().insert(
            key.to_owned(),
            (
                copy.body.to_vec(),
                copy.etag.to_string(),
                copy.stored_at_ms,
                copy.tags.to_vec(),
            ),
        );
    }

    async fn fetch(&self, path: &str) -> Result<Fetched<u16>, OriginFailure> {
        self.inner.fetched.borrow_mut().push(path.to_owned());
        let script = (self.inner.origin.borrow_mut())(path);
        self.timers.sleep(script.delay_ms).await;
        script.result
    }

    fn in_background(&self, work: impl Future<Output = ()> + 'static) {
        self.inner
            .spawner
            .spawn_local(work)
            .expect("the test's executor is running");
    }
}
