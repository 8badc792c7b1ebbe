//! Bounded shares of a scarce thing per client: open connections per socket peer
//! (`MAX_CONNECTIONS_PER_PEER`, in [`crate::server`]) and requests in flight per client
//! (`MAX_IN_FLIGHT_PER_CLIENT`, in the front door), so one address cannot take what every
//! client shares. A client is its IPv4 address or its IPv6 /64
//! ([`shared::ratelimit::client_prefix`]).
//!
//! In-process and exact (a mutex over a map of counts, held for a hash lookup): these bound what
//! one process holds, which no fleet-wide counter could do without a round trip per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many of something each client holds, up to `max` each (0: no bound, only counted).
pub struct Shares {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit held by a client; dropping it gives it back.
pub struct Share {
    shares: Arc<Shares>,
    key: IpAddr,
}

impl Shares {
    pub fn new(max: usize) -> Arc<Shares> {
        Arc::new(Shares {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// One more for `ip`'s client, or `None` when it already holds `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Share> {
        let key = shared::ratelimit::client_prefix(ip);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Share {
            shares: self.clone(),
            key,
        })
    }

    /// What `ip`'s client holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let key = shared::ratelimit::client_prefix(ip);
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&key).copied().unwrap_or(0)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // An empty entry per client ever seen would grow without bound.
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let shares = Shares::new(2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let one = shares.take(a).unwrap();
        let two = shares.take(same_64).unwrap();
        assert!(shares.take(a).is_none(), "a third from the same /64");
        assert!(
            shares.take(other).is_some(),
            "another /64 is another client"
        );
        drop(one);
        assert_eq!(shares.held(a), 1);
        assert!(shares.take(a).is_some(), "one given back, one more taken");
        drop(two);
        assert!(
            shares.held.lock().unwrap().is_empty(),
            "no entry left for what nobody holds"
        );
    }

    #[test]
    fn zero_counts_without_bound() {
        let shares = Shares::new(0);
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let all: Vec<_> = (0..1000).map(|_| shares.take(ip).unwrap()).collect();
        assert_eq!(shares.held(ip), 1000);
        drop(all);
        assert_eq!(shares.held(ip), 0);
    }
}
