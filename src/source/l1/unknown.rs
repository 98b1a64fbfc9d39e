//! The negative cache: serials the status source said it does not know,
//! answered `unauthorized` again for a short while without a lookup, so a
//! flood of garbage serials costs one database read per serial and TTL, not
//! one per request. Per shard; bounded (oldest out first); an entry goes when
//! the change feed reports the certificate (its insert reaches the shard as
//! an invalidation, [`Unknowns::forget`]) and on a reload ([`Unknowns::clear`]).
//!
//! Only single-CertID answers are kept: an unknown serial in a multi-CertID
//! request is refused by its own lookup, and such requests are bounded apart.

use std::collections::{HashMap, VecDeque};

use crate::ocsp::{IssuerId, Serial};

/// Serials found unknown, until when (Unix seconds).
pub struct Unknowns {
    until: HashMap<(IssuerId, Serial), u64>,
    /// Insertion order, for eviction; may hold keys already forgotten or
    /// re-added (skipped or re-checked when popped).
    order: VecDeque<((IssuerId, Serial), u64)>,
    ttl: u64,
    max: usize,
}

impl Unknowns {
    /// At most `max` entries, each kept `ttl_secs` (0 keeps none).
    pub fn new(ttl_secs: u64, max: usize) -> Unknowns {
        Unknowns { until: HashMap::new(), order: VecDeque::new(), ttl: ttl_secs, max: max.max(1) }
    }

    /// Whether `serial` was found unknown less than the TTL ago.
    pub fn holds(&self, issuer: IssuerId, serial: &Serial, now: u64) -> bool {
        !self.until.is_empty() && self.until.get(&(issuer, *serial)).is_some_and(|u| now < *u)
    }

    /// Records that `serial` is unknown as of `now`.
    pub fn insert(&mut self, issuer: IssuerId, serial: Serial, now: u64) {
        if self.ttl == 0 {
            return;
        }
        let until = now + self.ttl;
        let key = (issuer, serial);
        let new = !self.until.contains_key(&key);
        while (new && self.until.len() >= self.max) || self.order.len() >= 2 * self.max {
            let Some((key, u)) = self.order.pop_front() else { break };
            // Only the entry this order record made (not a later re-insert).
            if self.until.get(&key) == Some(&u) {
                self.until.remove(&key);
            }
        }
        self.until.insert(key, until);
        self.order.push_back((key, until));
    }

    /// The certificate now exists (or changed): no longer unknown.
    pub fn forget(&mut self, issuer: IssuerId, serial: &Serial) {
        if !self.until.is_empty() {
            self.until.remove(&(issuer, *serial));
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.until.clear();
        self.order.clear();
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u16) -> Serial {
        Serial::from_magnitude(&n.to_be_bytes()).unwrap()
    }

    #[test]
    fn held_for_the_ttl_then_not() {
        let mut u = Unknowns::new(10, 100);
        u.insert(IssuerId(0), s(1), 1000);
        assert!(u.holds(IssuerId(0), &s(1), 1009));
        assert!(!u.holds(IssuerId(0), &s(1), 1010));
        assert!(!u.holds(IssuerId(1), &s(1), 1000), "per issuer");
        assert!(!u.holds(IssuerId(0), &s(2), 1000));
    }

    #[test]
    fn forgotten_when_the_feed_reports_it() {
        let mut u = Unknowns::new(10, 100);
        u.insert(IssuerId(0), s(1), 1000);
        u.forget(IssuerId(0), &s(1));
        assert!(!u.holds(IssuerId(0), &s(1), 1001));
        u.insert(IssuerId(0), s(2), 1000);
        u.clear();
        assert!(u.is_empty());
    }

    #[test]
    fn bounded_oldest_out() {
        let mut u = Unknowns::new(10, 3);
        for n in 1..=5 {
            u.insert(IssuerId(0), s(n), 1000);
        }
        assert_eq!(u.len(), 3);
        assert!(!u.holds(IssuerId(0), &s(1), 1000) && !u.holds(IssuerId(0), &s(2), 1000));
        assert!((3..=5).all(|n| u.holds(IssuerId(0), &s(n), 1000)));
        // Re-inserting one many times neither grows the order list past
        // its bound nor evicts the entry by its own older records.
        for t in 0..100 {
            u.insert(IssuerId(0), s(5), 1000 + t);
            assert!(u.holds(IssuerId(0), &s(5), 1000 + t));
            assert!(u.order.len() <= 6 && u.len() <= 3);
        }
    }

    #[test]
    fn zero_ttl_keeps_nothing() {
        let mut u = Unknowns::new(0, 3);
        u.insert(IssuerId(0), s(1), 1000);
        assert!(u.is_empty());
    }
}
