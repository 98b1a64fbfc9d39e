//! Fills shared by the shards of one node: a response one core signed (or
//! took from Redis) is offered to the others, so every core of a node sends
//! the same bytes for the same request and answers 304 to a conditional
//! request carrying the ETag any of them issued — which a CDN revalidating
//! through one connection pool spread over every core needs (without it,
//! each core signed its own copy and about half of the revalidations got a
//! 200) — and a miss that another core already resolved costs no signature.
//!
//! Only single-CertID answers are shared (multi-CertID lists are rare and
//! budgeted). Every copy is held to the same rules as a Redis copy: taken
//! only while fresh and, by the taking shard, only if it still holds against
//! the node's revision floors ([`crate::source::floors::Fence`]); the
//! invalidations that reach a shard's L1 drop it here too. 64 stripes, each
//! a short `Mutex` over a map (a lookup and an `Arc` clone): no shard waits
//! on another's work. Bounded (`cache.l1_entries` in all); past it an
//! arbitrary entry of the stripe goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::CachedResponse;
use crate::ocsp::{IssuerId, Serial};

const STRIPES: usize = 64;

type Stripe = Mutex<HashMap<Box<[u8]>, Arc<CachedResponse>>>;

/// The node's shared fills (one per generation: keys name issuers by the
/// generation's numbering).
pub struct NodeFills {
    stripes: Vec<Stripe>,
    per_stripe: usize,
}

fn stripe_of(key: &[u8]) -> usize {
    // FNV-1a: keys are short and not attacker-chosen beyond serials already
    // admitted; the map inside each stripe is SipHash-keyed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % STRIPES as u64) as usize
}

impl NodeFills {
    /// Holding at most about `entries` responses; none with `entries = 0`
    /// (`l1_entries = 0` turns every in-process copy off, not only the L1).
    pub fn new(entries: usize) -> NodeFills {
        NodeFills {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            per_stripe: entries.div_ceil(STRIPES),
        }
    }

    fn stripe(&self, key: &[u8]) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Arc<CachedResponse>>> {
        match self.stripes[stripe_of(key)].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The copy under `key`, if one is still before its refresh point at `now`.
    pub fn get(&self, key: &[u8], now: u64) -> Option<Arc<CachedResponse>> {
        let mut s = self.stripe(key);
        match s.get(key) {
            Some(r) if now < r.refresh_at && now < r.validity.next_update => Some(r.clone()),
            Some(_) => {
                s.remove(key);
                None
            }
            None => None,
        }
    }

    /// Offers `r` under `key`, unless a copy signed later is there.
    pub fn put(&self, key: &[u8], r: &CachedResponse) {
        if self.per_stripe == 0 {
            return;
        }
        let mut s = self.stripe(key);
        if s.get(key).is_some_and(|old| old.validity.produced_at > r.validity.produced_at) {
            return;
        }
        if s.len() >= self.per_stripe && !s.contains_key(key) {
            if let Some(k) = s.keys().next().cloned() {
                s.remove(&k);
            }
        }
        s.insert(key.into(), Arc::new(r.clone()));
    }

    /// Drops the copy under `key`.
    pub fn remove(&self, key: &[u8]) {
        self.stripe(key).remove(key);
    }

    /// Drops every copy about a certificate (each of its single-CertID keys).
    pub fn remove_cert(&self, issuer: IssuerId, serial: &Serial) {
        super::store::for_each_single_key(issuer, serial, |k| self.remove(k));
    }

    /// Drops everything.
    pub fn clear(&self) {
        for s in &self.stripes {
            match s.lock() {
                Ok(mut g) => g.clear(),
                Err(poisoned) => poisoned.into_inner().clear(),
            }
        }
    }

    /// Copies held.
    pub fn len(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().map(|g| g.len()).unwrap_or(0)).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Origin;
    use crate::ocsp::response::Validity;
    use crate::ocsp::{CertId, HashAlg};

    fn resp(produced: u64, refresh: u64) -> CachedResponse {
        let v = Validity { produced_at: produced, this_update: produced, next_update: refresh + 100 };
        CachedResponse::new(vec![produced as u8], v, refresh, Origin::Signed)
    }

    #[test]
    fn fresh_copies_are_shared_and_dropped_by_certificate() {
        let n = NodeFills::new(1000);
        let serial = Serial::from_magnitude(&[7]).unwrap();
        let key = crate::cache::key_of(&[CertId::new(IssuerId(0), HashAlg::Sha256, serial)]);
        n.put(&key, &resp(10, 50));
        assert_eq!(n.get(&key, 20).unwrap().der[..], [10]);
        n.put(&key, &resp(5, 50));
        assert_eq!(n.get(&key, 20).unwrap().der[..], [10], "an older signature does not replace a newer");
        assert!(n.get(&key, 50).is_none(), "not past its refresh point");
        assert!(n.is_empty(), "and dropped then");
        n.put(&key, &resp(10, 50));
        n.remove_cert(IssuerId(0), &serial);
        assert!(n.get(&key, 20).is_none());
        n.put(&key, &resp(10, 50));
        n.clear();
        assert!(n.is_empty());
    }

    /// The node's copy and the L1's are one response: offering it to the
    /// other shards copies no bytes (each cached answer is held once per
    /// node, not once per place that lists it).
    #[test]
    fn an_offered_copy_shares_the_bytes_it_was_made_from() {
        let n = NodeFills::new(1000);
        let key = crate::cache::key_of(&[CertId::new(
            IssuerId(0),
            HashAlg::Sha1,
            Serial::from_magnitude(&[9]).unwrap(),
        )]);
        let r = resp(10, 50);
        n.put(&key, &r);
        let got = n.get(&key, 20).unwrap();
        assert!(Arc::ptr_eq(&got.der, &r.der), "the DER body is shared");
        assert!(Arc::ptr_eq(&got.headers, &r.headers), "the header block is shared");
        assert!(Arc::ptr_eq(&got.statuses, &r.statuses) && Arc::ptr_eq(&got.revisions, &r.revisions));
    }

    /// With the L1 off (`l1_entries = 0`) the node keeps no copies either:
    /// every answer comes from Redis or a signature, as the setting says.
    #[test]
    fn none_are_kept_with_no_entries() {
        let n = NodeFills::new(0);
        for i in 0..100u32 {
            n.put(&i.to_be_bytes(), &resp(1, 50));
        }
        assert!(n.is_empty(), "{}", n.len());
        assert!(n.get(&7u32.to_be_bytes(), 2).is_none());
    }

    #[test]
    fn bounded() {
        let n = NodeFills::new(64);
        for i in 0..1000u32 {
            n.put(&i.to_be_bytes(), &resp(1, 50));
        }
        assert!(n.len() <= 64, "{}", n.len());
    }
}
