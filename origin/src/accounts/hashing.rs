//! Password hashing slots, shared fairly between clients. Hashing is the one deliberately slow
//! thing the service does (argon2id, tens of milliseconds of a core), so there is one slot per
//! core, and the Auth tier admits far more sign-ins per address than the slots can hash. A plain
//! first-come queue hands the slots to whoever sends most: one address's flood put everyone
//! else's sign-in behind it, past the queue timeout.
//!
//! Here each client (IPv4 address or IPv6 /64, [`shared::ratelimit::client_prefix`]) holds at
//! most [`Hashing::per_client_slots`] slots and has at most [`Hashing::per_client_waiting`]
//! requests waiting (more are refused at once: a burst of any size queues only its share), and a
//! freed slot goes to the next client in turn, not the next request: with `n` clients waiting, a
//! newcomer's sign-in waits for at most `n` hashes, however deep the others' queues.
//!
//! A slot is a [`Slot`] value that travels into the blocking task doing the hash and is given
//! back when that task drops it (a client that hangs up cannot free a slot its hash still uses).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::password::PasswordError;

/// The slots and who waits for them.
#[derive(Clone)]
pub struct Hashing(Arc<Shared>);

struct Shared {
    per_client_slots: usize,
    per_client_waiting: usize,
    queue: Mutex<Queue>,
    /// Slots handed out so far: one per hash (the tests count work with it).
    granted: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Queue {
    free: usize,
    /// Clients holding a slot or waiting for one (no entry for anyone else).
    clients: HashMap<IpAddr, Client>,
    /// Clients with someone waiting, in turn order (each at most once).
    turn: VecDeque<IpAddr>,
    next_id: u64,
}

#[derive(Default)]
struct Client {
    held: usize,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One hashing slot, held by one client until dropped.
pub struct Slot {
    hashing: Arc<Shared>,
    client: IpAddr,
}

impl Hashing {
    /// One slot per core, shared fairly.
    pub fn per_core() -> Hashing {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hashing::new(cores)
    }

    /// `slots` slots; a client holds at most half of them (at least one) and queues at most
    /// four per slot.
    pub fn new(slots: usize) -> Hashing {
        let slots = slots.max(1);
        Hashing(Arc::new(Shared {
            per_client_slots: (slots / 2).max(1),
            per_client_waiting: 4 * slots,
            queue: Mutex::new(Queue {
                free: slots,
                ..Queue::default()
            }),
            granted: Default::default(),
        }))
    }

    /// Slots one client may hold at once.
    pub fn per_client_slots(&self) -> usize {
        self.0.per_client_slots
    }

    /// Requests one client may have waiting for a slot; more are refused at once.
    pub fn per_client_waiting(&self) -> usize {
        self.0.per_client_waiting
    }

    /// A slot for `client`, waited for at most `wait` ([`PasswordError::Busy`] past it, or at
    /// once when the client already has its share waiting).
    pub async fn slot(&self, client: IpAddr, wait: Duration) -> Result<Slot, PasswordError> {
        let client = shared::ratelimit::client_prefix(client);
        let shared = &self.0;
        let (id, granted) = {
            let mut q = shared.lock();
            let per_client = shared.per_client_slots;
            let free = q.free;
            let c = q.clients.entry(client).or_default();
            if free > 0 && c.held < per_client && c.waiting.is_empty() {
                c.held += 1;
                q.free -= 1;
                return Ok(self.slot_of(client));
            }
            if c.waiting.len() >= shared.per_client_waiting {
                q.forget_if_idle(client);
                return Err(PasswordError::Busy);
            }
            let (tx, rx) = oneshot::channel();
            let id = q.next_id;
            q.next_id += 1;
            let c = q.clients.entry(client).or_default();
            c.waiting.push_back((id, tx));
            if !q.turn.contains(&client) {
                q.turn.push_back(client);
            }
            (id, rx)
        };
        let mut waiter = Waiter {
            hashing: shared.clone(),
            client,
            id,
            granted,
        };
        match tokio::time::timeout(wait, &mut waiter.granted).await {
            Ok(Ok(())) => {
                waiter.id = u64::MAX; // granted and taken: nothing to undo
                Ok(self.slot_of(client))
            }
            // The sender is only dropped by a grant that found us gone: not reachable while
            // we wait, but never a hang.
            Ok(Err(_)) | Err(_) => Err(PasswordError::Busy),
        }
    }

    /// Slots handed out since this was made (each one hash).
    pub fn granted(&self) -> u64 {
        self.0.granted.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot_of(&self, client: IpAddr) -> Slot {
        self.0
            .granted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Slot {
            hashing: self.0.clone(),
            client,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `client`'s slot back and hands the free slots to the clients next in turn.
    fn give_back(&self, client: IpAddr) {
        let mut q = self.lock();
        if let Some(c) = q.clients.get_mut(&client) {
            c.held = c.held.saturating_sub(1);
        }
        q.free += 1;
        q.forget_if_idle(client);
        self.hand_out(&mut q);
    }

    fn hand_out(&self, q: &mut Queue) {
        // Each pass over the turn order either grants a slot or finds nobody it can grant to.
        let mut passed = 0;
        while q.free > 0 && passed < q.turn.len() {
            let Some(client) = q.turn.pop_front() else {
                break;
            };
            let Some(c) = q.clients.get_mut(&client) else {
                continue;
            };
            if c.held >= self.per_client_slots {
                q.turn.push_back(client);
                passed += 1;
                continue;
            }
            let Some((_, tx)) = c.waiting.pop_front() else {
                q.forget_if_idle(client);
                continue;
            };
            if tx.send(()).is_ok() {
                c.held += 1;
                q.free -= 1;
                passed = 0;
            }
            let c = &q.clients[&client];
            if c.waiting.is_empty() {
                q.forget_if_idle(client);
            } else {
                q.turn.push_back(client);
            }
        }
    }
}

impl Queue {
    fn forget_if_idle(&mut self, client: IpAddr) {
        if self
            .clients
            .get(&client)
            .is_some_and(|c| c.held == 0 && c.waiting.is_empty())
        {
            self.clients.remove(&client);
        }
    }
}

/// A request waiting for a slot; dropped (timed out, or its client hung up) it leaves the queue,
/// and gives back a slot granted to it in the meantime.
struct Waiter {
    hashing: Arc<Shared>,
    client: IpAddr,
    id: u64,
    granted: oneshot::Receiver<()>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut q = self.hashing.lock();
        let still_waiting = q.clients.get_mut(&self.client).and_then(|c| {
            let at = c.waiting.iter().position(|(id, _)| *id == self.id)?;
            c.waiting.remove(at)
        });
        if still_waiting.is_some() {
            let client = self.client;
            let nobody_left = q.clients.get(&client).is_none_or(|c| c.waiting.is_empty());
            if nobody_left {
                q.turn.retain(|c| *c != client);
            }
            q.forget_if_idle(client);
            return;
        }
        if self.granted.try_recv().is_ok() {
            // Granted between the timeout and now: the slot is ours to give back.
            drop(q);
            self.hashing.give_back(self.client);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hashing.give_back(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_client_holds_its_share_and_queues_its_share() {
        let h = Hashing::new(4);
        assert_eq!((h.per_client_slots(), h.per_client_waiting()), (2, 16));
        let a = ip("203.0.113.1");
        let held = [
            h.slot(a, LONG).await.unwrap(),
            h.slot(a, LONG).await.unwrap(),
        ];
        // Two slots are free, but not for `a`.
        let third = tokio::time::timeout(Duration::from_millis(50), h.slot(a, LONG)).await;
        assert!(third.is_err(), "a third slot for the same client");
        let b = h.slot(ip("203.0.113.2"), LONG).await;
        assert!(b.is_ok(), "another client takes a free slot at once");
        drop(held);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let h = Hashing::new(1);
        let a = ip("203.0.113.1");
        let held = h.slot(a, LONG).await.unwrap();
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.slot(a, LONG).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(matches!(h.slot(a, LONG).await, Err(PasswordError::Busy)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused without waiting"
        );
        drop(held);
        for w in waiting {
            assert!(
                w.await.unwrap().is_ok(),
                "the queued ones are served in turn"
            );
        }
    }

    /// The subject: a newcomer is served after one hash per client waiting, not after the
    /// whole of another client's queue.
    #[tokio::test]
    async fn a_newcomer_is_served_next_in_turn() {
        let h = Hashing::new(1);
        let flood = ip("203.0.113.1");
        let first = h.slot(flood, LONG).await.unwrap();
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for n in 0..3 {
            let (h, tx) = (h.clone(), order_tx.clone());
            tasks.push(tokio::spawn(async move {
                let slot = h.slot(flood, LONG).await.unwrap();
                tx.send(format!("flood{n}")).unwrap();
                drop(slot);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (h2, tx) = (h.clone(), order_tx.clone());
        tasks.push(tokio::spawn(async move {
            let slot = h2.slot(ip("198.51.100.9"), LONG).await.unwrap();
            tx.send("newcomer".to_owned()).unwrap();
            drop(slot);
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        drop(order_tx);
        let mut order = Vec::new();
        while let Some(who) = order_rx.recv().await {
            order.push(who);
        }
        assert_eq!(order[..2], ["flood0", "newcomer"], "{order:?}");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let h = Hashing::new(1);
        let a = ip("203.0.113.1");
        let held = h.slot(a, LONG).await.unwrap();
        let short = h.slot(ip("203.0.113.2"), Duration::from_millis(20)).await;
        assert!(matches!(short, Err(PasswordError::Busy)));
        let hung_up = tokio::spawn({
            let h = h.clone();
            async move { h.slot(ip("203.0.113.3"), LONG).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hung_up.abort();
        let _ = hung_up.await;
        drop(held);
        let q = h.0.lock();
        assert_eq!(
            (q.free, q.clients.len(), q.turn.len()),
            (1, 0, 0),
            "all given back"
        );
    }
}
