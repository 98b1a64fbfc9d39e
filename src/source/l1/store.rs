//! The shard-local L1 cache: a bounded map with CLOCK (second-chance) eviction.
//!
//! One instance per shard, so no locks: interior mutability through `RefCell`,
//! never borrowed across an `.await`. Keys are the compact byte encoding of the
//! request's CertIDs (see `source::admission::cache_key`), values are shared
//! `Rc<CachedResponse>`s. Expired entries are dropped when met.
//!
//! A multi-CertID entry is also listed under each certificate it names, so a
//! status change of any of them drops it ([`ResponseCache::remove_cert`]);
//! single-CertID keys are derived from the certificate itself.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::cache::{certs_of_key, key_of, CachedResponse, Freshness, ResponseCache};
use crate::ocsp::{CertId, HashAlg, HashParams, IssuerId, Serial};

struct Slot {
    resp: Rc<CachedResponse>,
    referenced: Cell<bool>,
    /// When it was stored (Unix seconds), for the max age.
    stored_at: u64,
}

struct Inner {
    /// Keys are shared with `clock`: one allocation per entry, not two (a
    /// multi-CertID entry's key is also copied into `multi`, once per
    /// certificate it names).
    map: HashMap<Rc<[u8]>, Slot>,
    /// Eviction order; may hold keys already removed from `map` (skipped).
    clock: VecDeque<Rc<[u8]>>,
    /// Multi-CertID keys by the certificates they name.
    multi: HashMap<(IssuerId, Serial), Vec<Box<[u8]>>>,
}

impl Inner {
    /// Removes `key` from the map (and from the multi-CertID index).
    fn drop_key(&mut self, key: &[u8]) -> bool {
        if self.map.remove(key).is_none() {
            return false;
        }
        let certs = certs_of_key(key);
        if certs.len() > 1 {
            for c in certs {
                if let Some(keys) = self.multi.get_mut(&c) {
                    keys.retain(|k| &k[..] != key);
                    if keys.is_empty() {
                        self.multi.remove(&c);
                    }
                }
            }
        }
        true
    }

    fn index(&mut self, key: &[u8]) {
        let certs = certs_of_key(key);
        if certs.len() > 1 {
            for c in certs {
                let keys = self.multi.entry(c).or_default();
                if !keys.iter().any(|k| &k[..] == key) {
                    keys.push(key.into());
                }
            }
        }
    }
}

/// Bounded, lock-free (single-threaded), freshness-aware response cache.
pub struct L1Cache {
    capacity: usize,
    /// Seconds an entry is served before it must be re-verified (0 = no limit).
    max_age: u64,
    inner: RefCell<Inner>,
}

impl L1Cache {
    /// A cache holding at most `capacity` responses (0 disables it).
    pub fn new(capacity: usize) -> L1Cache {
        L1Cache::with_max_age(capacity, 0)
    }

    /// A cache whose entries must be re-verified after `max_age` seconds
    /// (0 = never).
    pub fn with_max_age(capacity: usize, max_age: u64) -> L1Cache {
        L1Cache {
            capacity,
            max_age,
            inner: RefCell::new(Inner { map: HashMap::new(), clock: VecDeque::new(), multi: HashMap::new() }),
        }
    }
}

impl ResponseCache for L1Cache {
    /// Looks `key` up at `now`; an expired entry is removed and reported as a miss.
    fn get(&self, key: &[u8], now: u64) -> Option<(Rc<CachedResponse>, Freshness)> {
        let mut inner = self.inner.borrow_mut();
        let slot = inner.map.get(key)?;
        match slot.resp.freshness(now) {
            Freshness::Expired => {
                inner.drop_key(key);
                None
            }
            _ if self.max_age > 0 && now.saturating_sub(slot.stored_at) >= self.max_age => {
                Some((slot.resp.clone(), Freshness::Unverified))
            }
            f => {
                slot.referenced.set(true);
                Some((slot.resp.clone(), f))
            }
        }
    }

    /// Stores a response, evicting as needed.
    fn put(&self, key: &[u8], resp: Rc<CachedResponse>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let stored_at = crate::clock::unix_now();
        if let Some(slot) = inner.map.get_mut(key) {
            slot.resp = resp;
            slot.stored_at = stored_at;
            return;
        }
        while inner.map.len() >= self.capacity {
            let Some(victim) = inner.clock.pop_front() else { break };
            match inner.map.get(&victim) {
                Some(s) if s.referenced.get() => {
                    s.referenced.set(false);
                    inner.clock.push_back(victim);
                }
                Some(_) => {
                    inner.drop_key(&victim);
                }
                None => {} // removed earlier (expired or invalidated)
            }
        }
        let key: Rc<[u8]> = key.into();
        inner.clock.push_back(key.clone());
        inner.index(&key);
        inner.map.insert(key, Slot { resp, referenced: Cell::new(false), stored_at });
        // Entries removed out of band (expiry, invalidation) leave their keys in
        // the ring; rebuild it from the map when it grows to twice the bound.
        if inner.clock.len() > 2 * self.capacity.max(16) {
            let Inner { map, clock, .. } = &mut *inner;
            *clock = map.keys().cloned().collect();
        }
    }

    /// Drops `key` (e.g. on a revocation notice).
    fn remove(&self, key: &[u8]) {
        self.inner.borrow_mut().drop_key(key);
    }

    fn remove_cert(&self, issuer: IssuerId, serial: &Serial) {
        let mut inner = self.inner.borrow_mut();
        for_each_single_key(issuer, serial, |k| {
            inner.drop_key(k);
        });
        if let Some(keys) = inner.multi.remove(&(issuer, *serial)) {
            for k in keys {
                inner.drop_key(&k);
            }
        }
    }

    fn clear(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.map.clear();
        inner.clock.clear();
        inner.multi.clear();
    }

    /// Entries held now.
    fn len(&self) -> usize {
        self.inner.borrow().map.len()
    }
}

/// Calls `f` with the single-CertID key of each of the certificate's
/// [`CertId::forms`], built once and its algorithm byte rewritten (a mass
/// revocation drops hundreds of thousands).
pub fn for_each_single_key(issuer: IssuerId, serial: &Serial, mut f: impl FnMut(&[u8])) {
    let mut key = key_of(&[CertId::new(issuer, HashAlg::Sha1, *serial)]);
    for alg in HashAlg::ALL {
        for params in HashParams::ALL {
            key[2] = crate::cache::alg_byte(alg, params);
            f(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::response::Validity;

    fn resp(next: u64) -> Rc<CachedResponse> {
        Rc::new(CachedResponse::new(
            vec![1, 2, 3],
            Validity { produced_at: 0, this_update: 0, next_update: next },
            next / 2,
            crate::cache::Origin::Signed,
        ))
    }

    #[test]
    fn freshness_states() {
        let c = L1Cache::new(4);
        c.put(b"k", resp(100));
        assert_eq!(c.get(b"k", 10).unwrap().1, Freshness::Fresh);
        assert_eq!(c.get(b"k", 60).unwrap().1, Freshness::Stale);
        assert!(c.get(b"k", 100).is_none());
        assert!(c.is_empty(), "expired entries are dropped");
    }

    #[test]
    fn bounded_with_second_chance() {
        let c = L1Cache::new(3);
        c.put(b"a", resp(100));
        c.put(b"b", resp(100));
        c.put(b"c", resp(100));
        c.get(b"a", 1); // referenced: survives the next eviction
        c.put(b"d", resp(100));
        assert_eq!(c.len(), 3);
        assert!(c.get(b"a", 1).is_some());
        assert!(c.get(b"b", 1).is_none(), "b was the unreferenced oldest");
        for i in 0..1000u32 {
            c.put(&i.to_be_bytes(), resp(100));
            assert!(c.len() <= 3);
        }
        assert!(c.inner.borrow().clock.len() <= 64);
    }

    #[test]
    fn etag_and_headers() {
        let r = resp(86400);
        assert_eq!(r.etag().len(), 66);
        assert!(r.headers.contains("Content-Length: 3\r\n"));
        assert!(r.headers.contains("Expires: Fri, 02 Jan 1970 00:00:00 GMT\r\n"));
        assert!(r.headers.contains("Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
    }

    #[test]
    fn max_age_makes_entries_unverified() {
        let c = L1Cache::with_max_age(4, 5);
        let now = crate::clock::unix_now();
        let r = Rc::new(CachedResponse::new(
            vec![1],
            Validity { produced_at: now, this_update: now, next_update: now + 1000 },
            now + 500,
            crate::cache::Origin::Signed,
        ));
        c.put(b"k", r);
        assert_eq!(c.get(b"k", now + 1).unwrap().1, Freshness::Fresh);
        assert_eq!(c.get(b"k", now + 5).unwrap().1, Freshness::Unverified);
    }

    fn id(serial: u8, alg: HashAlg) -> CertId {
        CertId::new(IssuerId(0), alg, Serial::from_magnitude(&[serial]).unwrap())
    }

    /// A multi-CertID entry used to survive a status change of one of its
    /// certificates: only single-CertID keys were dropped.
    #[test]
    fn regression_a_change_drops_the_multi_certid_entries_naming_it() {
        let c = L1Cache::new(16);
        let (a, b, other) = (id(1, HashAlg::Sha1), id(2, HashAlg::Sha256), id(3, HashAlg::Sha1));
        c.put(&key_of(&[a]), resp(100));
        c.put(&key_of(&[a, b]), resp(100));
        c.put(&key_of(&[b, a]), resp(100));
        c.put(&key_of(&[b, other]), resp(100));
        c.put(&key_of(&[id(1, HashAlg::Sha256)]), resp(100));
        c.remove_cert(IssuerId(0), &a.serial);
        assert!(c.get(&key_of(&[a]), 1).is_none());
        assert!(c.get(&key_of(&[id(1, HashAlg::Sha256)]), 1).is_none(), "every hash algorithm");
        assert!(c.get(&key_of(&[a, b]), 1).is_none());
        assert!(c.get(&key_of(&[b, a]), 1).is_none());
        assert!(c.get(&key_of(&[b, other]), 1).is_some(), "entries not naming it stay");
        assert_eq!(c.len(), 1);
        // The index forgets evicted and removed entries.
        c.remove(&key_of(&[b, other]));
        assert!(c.inner.borrow().multi.is_empty());
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let c = L1Cache::new(0);
        c.put(b"a", resp(100));
        assert!(c.get(b"a", 1).is_none());
    }
}
