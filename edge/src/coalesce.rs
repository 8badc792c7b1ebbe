//! Request coalescing inside one isolate (pingora-cache's `lock.rs`, for one thread): concurrent
//! misses of one key make one origin fetch. The first request to [`Flights::join`] a key leads
//! and fetches; the others wait for what it [`Leading::land`]s.
//!
//! Invariants:
//! - A key has at most one leader at a time; a waiter never waits on a flight that has ended
//!   (the key is removed when the leader is done, however it ends).
//! - Whatever happens to the leader (an answer that cannot be shared, an error, its request
//!   dropped because the client went away), its waiters are released: dropping a [`Leading`]
//!   that did not land lands [`Landed::Nothing`], and each waiter then fetches for itself.
//! - A waiter waits at most the origin timeout (plus a margin): a fetch bounded by that timeout
//!   has ended by then, one way or another.
//!
//! Waiters look every few milliseconds instead of being woken by the leader: a wake-up from the
//! leader would run the waiter's code inside the leader's request, and workerd refuses a
//! response built there to the waiter's ("Cannot perform I/O on behalf of a different
//! request"). A timer a waiter set itself resumes it in its own request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

/// How often a waiting request looks at the leader's outcome.
pub const POLL_MS: u64 = 5;

/// What a flight came to, for its waiters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Landed<T> {
    /// The leader's outcome, the same for every waiter.
    Shared(T),
    /// Nothing to share (or the wait ran out): each waiter fetches for itself.
    Nothing,
}

type Slot<T> = Rc<RefCell<Option<Landed<T>>>>;

/// The flights in progress in this isolate, by key.
pub struct Flights<T> {
    by_key: RefCell<HashMap<String, Slot<T>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            by_key: RefCell::new(HashMap::new()),
        }
    }
}

/// This request's part in a key's flight.
pub enum Role<T> {
    Leader(Leading<T>),
    Waiter(Waiting<T>),
}

impl<T: Clone> Flights<T> {
    pub fn join(self: &Rc<Self>, key: &str) -> Role<T> {
        let mut by_key = self.by_key.borrow_mut();
        if let Some(slot) = by_key.get(key) {
            return Role::Waiter(Waiting { slot: slot.clone() });
        }
        let slot = Slot::default();
        by_key.insert(key.to_owned(), slot.clone());
        Role::Leader(Leading {
            flights: self.clone(),
            key: key.to_owned(),
            slot,
        })
    }

    /// Keys with a flight in progress.
    pub fn in_flight(&self) -> usize {
        self.by_key.borrow().len()
    }
}

/// The leading request's claim on a key.
pub struct Leading<T> {
    flights: Rc<Flights<T>>,
    key: String,
    slot: Slot<T>,
}

impl<T> Leading<T> {
    /// Hands `value` to every waiter and ends the flight.
    pub fn land(self, value: T) {
        *self.slot.borrow_mut() = Some(Landed::Shared(value));
    }
}

impl<T> Drop for Leading<T> {
    fn drop(&mut self) {
        let mut by_key = self.flights.by_key.borrow_mut();
        if by_key
            .get(&self.key)
            .is_some_and(|slot| Rc::ptr_eq(slot, &self.slot))
        {
            by_key.remove(&self.key);
        }
        self.slot.borrow_mut().get_or_insert(Landed::Nothing);
    }
}

/// A waiting request's view of a flight.
pub struct Waiting<T> {
    slot: Slot<T>,
}

impl<T: Clone> Waiting<T> {
    /// The flight's outcome, if it has landed.
    pub fn landed(&self) -> Option<Landed<T>> {
        self.slot.borrow().clone()
    }

    /// Waits for the outcome, looking every [`POLL_MS`] (`sleep` is the runtime's timer), at
    /// most about `timeout_ms`.
    pub async fn wait<F: Future<Output = ()>>(
        self,
        sleep: impl Fn(u64) -> F,
        timeout_ms: u32,
    ) -> Landed<T> {
        let polls = u64::from(timeout_ms) / POLL_MS + 20;
        for _ in 0..polls {
            if let Some(landed) = self.landed() {
                return landed;
            }
            sleep(POLL_MS).await;
        }
        Landed::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::Timers;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    #[test]
    fn one_leader_per_key_and_its_waiters_share_its_answer() {
        let flights: Rc<Flights<u32>> = Rc::default();
        let Role::Leader(lead) = flights.join("k") else {
            panic!("the first is the leader")
        };
        let Role::Waiter(w1) = flights.join("k") else {
            panic!("the second waits")
        };
        let Role::Waiter(w2) = flights.join("k") else {
            panic!("so does the third")
        };
        assert!(
            matches!(flights.join("other"), Role::Leader(_)),
            "keys are apart"
        );
        assert_eq!(w1.landed(), None);
        lead.land(7);
        assert_eq!(flights.in_flight(), 0, "landing ends the flight");
        assert_eq!(
            (w1.landed(), w2.landed()),
            (Some(Landed::Shared(7)), Some(Landed::Shared(7)))
        );
        assert!(
            matches!(flights.join("k"), Role::Leader(_)),
            "a new flight after it"
        );
    }

    #[test]
    fn a_leader_that_goes_away_releases_its_waiters() {
        let flights: Rc<Flights<u32>> = Rc::default();
        let lead = flights.join("k");
        let Role::Waiter(w) = flights.join("k") else {
            panic!()
        };
        drop(lead);
        assert_eq!(w.landed(), Some(Landed::Nothing));
        assert_eq!(flights.in_flight(), 0);
    }

    #[test]
    fn waiters_wake_on_their_own_timer_and_give_up_after_the_timeout() {
        let timers = Timers::default();
        let mut pool = LocalPool::new();
        let flights: Rc<Flights<u32>> = Rc::default();
        let Role::Leader(lead) = flights.join("k") else {
            panic!()
        };
        let got = Rc::new(RefCell::new(Vec::new()));
        for _ in 0..3 {
            let Role::Waiter(w) = flights.join("k") else {
                panic!()
            };
            let (t, got) = (timers.clone(), got.clone());
            pool.spawner()
                .spawn_local(async move {
                    let landed = w.wait(|ms| t.sleep(ms), 100).await;
                    got.borrow_mut().push((landed, t.now()));
                })
                .unwrap();
        }
        timers.run_for(&mut pool, 42);
        assert!(got.borrow().is_empty(), "nobody answered before the leader");
        lead.land(9);
        timers.run_for(&mut pool, POLL_MS);
        let got = got.borrow();
        assert_eq!(got.len(), 3);
        for (landed, at) in got.iter() {
            assert_eq!(*landed, Landed::Shared(9));
            let waited = at - crate::fakes::EPOCH_MS;
            assert!(waited <= 42 + POLL_MS, "seen within one poll: {waited} ms");
        }

        // A leader that never lands (and is never dropped): waiters give up after the timeout.
        let Role::Leader(_stuck) = flights.join("s") else {
            panic!()
        };
        let Role::Waiter(w) = flights.join("s") else {
            panic!()
        };
        let out = Rc::new(RefCell::new(None));
        let (t, o) = (timers.clone(), out.clone());
        let start = timers.now();
        pool.spawner()
            .spawn_local(async move {
                *o.borrow_mut() = Some((w.wait(|ms| t.sleep(ms), 100).await, t.now()))
            })
            .unwrap();
        timers.run_for(&mut pool, 1_000);
        let (landed, at) = out.borrow().clone().unwrap();
        assert_eq!(landed, Landed::Nothing);
        assert!(
            (100..=300).contains(&(at - start)),
            "gave up after {} ms",
            at - start
        );
    }
}
