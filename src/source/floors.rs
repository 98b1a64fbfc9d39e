//! Revision floors: the newest revision this node has seen, through the change
//! feed, for every recently changed certificate, and the instant before which
//! a shared-cache copy is not trusted without a status check.
//!
//! A floor is a fence, not a cache: whatever a layer holds or reads for a
//! certificate (an L1 entry being stored, a Redis value, a replica's row) is
//! only used when its revision is at least the floor. So once the feed has
//! seen a change, no core of this node serves or signs from anything older,
//! whatever Redis, a lagging replica or an in-flight fetch still says.
//!
//! A change's floor fences for `feed.fence_window_secs` (an hour by default)
//! from when its statement ran, which must exceed any replication lag the
//! node accepts from a replica (beyond `mysql.max_replica_lag_ms` lookups go
//! to the primary) and any window in which a Redis failover can lose writes.
//! Older changes are fenced by their Redis tombstones, so with `[redis]` a
//! floor is only dropped once this node's tombstone writer has written past
//! it. An insert fences only for the replica's lag bound (there is no older
//! copy of a new certificate anywhere; the fence only sends a lookup the
//! replica cannot answer yet to the primary): a CA issuing millions a day
//! does not fill the floors with them. At most `feed.max_floors` are held;
//! dropping one early instead raises [`Floors::trust_from`], so Redis copies
//! made before it are checked against the database before use.
//!
//! Shared by every shard and the feed threads: striped mutexes, touched on
//! the miss path and on Redis reads only, never on an L1 hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::cache::CachedResponse;
use crate::ocsp::issuer::Issuers;
use crate::ocsp::{CertId, Serial};

/// An issuer as the floors know it: interned from its name, so floors survive
/// a reload that renumbers the configured issuers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FloorIssuer(u32);

/// A change as the floors keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raise {
    /// The revision a copy must have to reflect it.
    pub revision: u64,
    /// Its feed position (a delete's revision is below its seq): the floor
    /// may go once the tombstone writer is past it.
    pub seq: u64,
    /// When its statement ran (Unix seconds).
    pub at: u64,
    /// Until when it fences (Unix seconds).
    pub until: u64,
}

type Floor = Raise;

/// Lock stripes: shards on many cores look floors up at once.
const STRIPES: usize = 16;

type Stripe = HashMap<(FloorIssuer, Serial), Floor>;

/// The node's revision floors (see the module docs).
pub struct Floors {
    names: RwLock<HashMap<Box<str>, FloorIssuer>>,
    stripes: Box<[Mutex<Stripe>]>,
    len: AtomicUsize,
    max: usize,
    /// Copies produced before this (Unix seconds) must be re-checked; the
    /// larger of the two reasons below.
    trust_from: AtomicU64,
    /// Set for good: changes were lost to this node (the outbox was pruned
    /// past its position, or floors were dropped before their time).
    lost_before: AtomicU64,
    /// Set while Redis tombstones lag behind the floors window (at start with
    /// no or an old Redis position); cleared by the tombstone writer.
    catching_up_before: AtomicU64,
}

fn stripe_of(serial: &Serial) -> usize {
    let b = serial.as_bytes();
    (b[b.len() - 1] as usize ^ (b.len() << 3)) % STRIPES
}

impl Floors {
    /// Empty floors holding at most `max` certificates.
    pub fn new(max: usize) -> Floors {
        Floors {
            names: RwLock::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            max: max.max(1),
            trust_from: AtomicU64::new(0),
            lost_before: AtomicU64::new(0),
            catching_up_before: AtomicU64::new(0),
        }
    }

    /// The interned id of issuer `name` (allocated on first use).
    pub fn issuer(&self, name: &str) -> FloorIssuer {
        if let Some(id) = self.names.read().ok().and_then(|n| n.get(name).copied()) {
            return id;
        }
        let mut names = match self.names.write() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = FloorIssuer(names.len() as u32);
        *names.entry(name.into()).or_insert(next)
    }

    /// Raises the floor of a certificate to `r.revision` (never lowers it);
    /// its seq, time and end only ever move later. Returns whether it rose.
    pub fn raise(&self, issuer: FloorIssuer, serial: Serial, r: Raise) -> bool {
        let mut s = lock(&self.stripes[stripe_of(&serial)]);
        match s.get_mut(&(issuer, serial)) {
            Some(f) => {
                let rose = r.revision > f.revision;
                *f = Floor {
                    revision: f.revision.max(r.revision),
                    seq: f.seq.max(r.seq),
                    at: f.at.max(r.at),
                    until: f.until.max(r.until),
                };
                rose
            }
            None => {
                s.insert((issuer, serial), r);
                self.len.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// The floor of a certificate: 0 when no change of it is known.
    pub fn get(&self, issuer: FloorIssuer, serial: &Serial) -> u64 {
        if self.len.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        lock(&self.stripes[stripe_of(serial)]).get(&(issuer, *serial)).map_or(0, |f| f.revision)
    }

    /// Certificates with a floor.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no floor is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shared-cache copies produced (or last vouched for) before this instant,
    /// Unix seconds, are used only after their statuses were checked against
    /// the database; 0 = every copy above its floor is trusted.
    pub fn trust_from(&self) -> u64 {
        self.trust_from.load(Ordering::Acquire)
    }

    fn update_trust(&self) {
        let t = self.lost_before.load(Ordering::Acquire).max(self.catching_up_before.load(Ordering::Acquire));
        self.trust_from.store(t, Ordering::Release);
    }

    /// Changes before `t` may be unknown to this node for good (the outbox
    /// was pruned past the feed's position): distrust older copies.
    pub fn lost_changes_before(&self, t: u64) {
        self.lost_before.fetch_max(t, Ordering::AcqRel);
        self.update_trust();
    }

    /// Redis tombstones are behind the floors window: distrust copies older
    /// than `t` until [`Floors::tombstones_caught_up`].
    pub fn tombstones_behind(&self, t: u64) {
        self.catching_up_before.fetch_max(t, Ordering::AcqRel);
        self.update_trust();
    }

    /// Redis holds tombstones for every change older than the floors window
    /// again.
    pub fn tombstones_caught_up(&self) {
        self.catching_up_before.store(0, Ordering::Release);
        self.update_trust();
    }

    /// Drops floors fencing until before `now` (Unix seconds) whose change
    /// is at or below feed position `fenced_up_to` (its Redis tombstones are
    /// written; `u64::MAX` without Redis). Then, past `max`, drops the floors
    /// that would end first, whatever they are, and distrusts copies made
    /// before the latest of their changes. Returns how many were dropped.
    pub fn expire(&self, now: u64, fenced_up_to: u64) -> usize {
        let mut dropped = 0;
        for s in self.stripes.iter() {
            let mut s = lock(s);
            let before = s.len();
            s.retain(|_, f| f.until >= now || f.seq > fenced_up_to);
            dropped += before - s.len();
        }
        self.len.fetch_sub(dropped, Ordering::Relaxed);
        if self.len() > self.max {
            let mut until: Vec<u64> = Vec::with_capacity(self.len());
            for s in self.stripes.iter() {
                until.extend(lock(s).values().map(|f| f.until));
            }
            until.sort_unstable();
            // Keep the 90 % that fence longest: room for the next batch
            // without running this again at once.
            let cut = until[until.len() - (self.max * 9 / 10).max(1)];
            let (mut early, mut latest) = (0, 0);
            for s in self.stripes.iter() {
                let mut s = lock(s);
                let before = s.len();
                s.retain(|_, f| {
                    let keep = f.until >= cut;
                    if !keep {
                        latest = latest.max(f.at);
                    }
                    keep
                });
                early += before - s.len();
            }
            self.len.fetch_sub(early, Ordering::Relaxed);
            log::warn!(
                "revision floors: {} held, over feed.max_floors ({}); dropped the {early} ending first and \
                 re-check Redis copies made before their latest change",
                self.len() + early,
                self.max
            );
            // A copy made after the latest dropped change (in its second or
            // later) is fenced by what is left or by tombstones.
            self.lost_changes_before(latest + 1);
            dropped += early;
        }
        dropped
    }
}

/// One generation's view of the node's floors: its issuers mapped to their
/// floor ids once, so a lookup on the request path is two array and hash
/// reads. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct Fence {
    floors: Arc<Floors>,
    ids: Arc<[FloorIssuer]>,
}

impl Fence {
    /// The fence for `issuers` over `floors`.
    pub fn new(floors: Arc<Floors>, issuers: &Issuers) -> Fence {
        let ids = issuers.iter().map(|(_, i)| floors.issuer(&i.name)).collect();
        Fence { floors, ids }
    }

    /// The fence over `floors` for issuers named `names` (issuer id i is
    /// `names[i]`), for tests that have no [`Issuers`].
    pub fn for_ids(floors: Arc<Floors>, names: &[&str]) -> Fence {
        let ids = names.iter().map(|n| floors.issuer(n)).collect();
        Fence { floors, ids }
    }

    /// A fence that never holds anything back (no change feed: statuses
    /// from `index.txt`, tests).
    pub fn empty() -> Fence {
        Fence { floors: Arc::new(Floors::new(1)), ids: Arc::new([]) }
    }

    /// The floor of one CertID's certificate.
    pub fn floor(&self, id: &CertId) -> u64 {
        match self.ids.get(id.issuer.0 as usize) {
            Some(f) => self.floors.get(*f, &id.serial),
            None => 0,
        }
    }

    /// Whether `r`, the answer for `ids`, is at or above every floor: made
    /// from statuses no older than the newest change this node has seen.
    pub fn holds(&self, r: &CachedResponse, ids: &[CertId]) -> bool {
        if self.floors.is_empty() {
            return true;
        }
        ids.iter().enumerate().all(|(i, id)| r.revision_of(i) >= self.floor(id))
    }

    /// See [`Floors::trust_from`].
    pub fn trust_from(&self) -> u64 {
        self.floors.trust_from()
    }
}

fn lock(m: &Mutex<Stripe>) -> std::sync::MutexGuard<'_, Stripe> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(n: u32) -> Serial {
        Serial::from_magnitude(&n.to_be_bytes()).unwrap()
    }

    fn r(revision: u64, until: u64) -> Raise {
        Raise { revision, seq: revision, at: until.saturating_sub(100), until }
    }

    #[test]
    fn floors_only_rise() {
        let f = Floors::new(100);
        let a = f.issuer("a");
        assert_eq!(f.issuer("a"), a, "interned");
        assert_ne!(f.issuer("b"), a);
        assert_eq!(f.get(a, &serial(1)), 0);
        assert!(f.raise(a, serial(1), r(7, 100)));
        assert!(!f.raise(a, serial(1), r(5, 101)), "never lowered");
        assert_eq!(f.get(a, &serial(1)), 7);
        assert!(f.raise(a, serial(1), r(9, 102)));
        assert_eq!(f.get(a, &serial(1)), 9);
        assert_eq!(f.get(f.issuer("b"), &serial(1)), 0, "per issuer");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn expiry_keeps_what_redis_has_not_fenced() {
        let f = Floors::new(100);
        let a = f.issuer("a");
        f.raise(a, serial(1), r(10, 100));
        f.raise(a, serial(2), r(20, 100));
        f.raise(a, serial(3), r(30, 500));
        // Ended: 1 and 2; but only changes up to seq 15 are tombstoned.
        assert_eq!(f.expire(200, 15), 1);
        assert_eq!((f.get(a, &serial(1)), f.get(a, &serial(2)), f.get(a, &serial(3))), (0, 20, 30));
        assert_eq!(f.expire(200, u64::MAX), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.trust_from(), 0, "expiry within the rules distrusts nothing");
    }

    #[test]
    fn overflow_drops_the_oldest_and_distrusts_older_copies() {
        let f = Floors::new(10);
        let a = f.issuer("a");
        for i in 0..20u32 {
            f.raise(a, serial(i), r(100 + u64::from(i), 1000 + u64::from(i)));
        }
        f.expire(0, 0);
        assert_eq!(f.len(), 9);
        assert_eq!(f.get(a, &serial(19)), 119, "the newest are kept");
        assert_eq!(f.get(a, &serial(0)), 0);
        // The latest dropped change was at 1010 - 100: copies made up to
        // then are re-checked; a floor's end never becomes a horizon in the
        // future.
        assert_eq!(f.trust_from(), 911);
    }

    /// A delete's revision (the deleted row's + 1) is far below its seq: its
    /// floor must stay until the tombstone writer is past its seq.
    #[test]
    fn regression_expiry_compares_the_change_s_seq_with_the_tombstone_position() {
        let f = Floors::new(10);
        let a = f.issuer("a");
        f.raise(a, serial(1), Raise { revision: 3, seq: 50, at: 0, until: 10 });
        assert_eq!(f.expire(100, 20), 0, "tombstones only up to 20: kept");
        assert_eq!(f.expire(100, 50), 1);
    }

    #[test]
    fn a_bound_of_one_is_not_a_panic() {
        let f = Floors::new(1);
        let a = f.issuer("a");
        for i in 0..5u32 {
            f.raise(a, serial(i), r(u64::from(i) + 1, 10 + u64::from(i)));
        }
        f.expire(0, 0);
        assert_eq!(f.len(), 1, "the one ending last is kept");
    }

    #[test]
    fn trust_reasons_combine() {
        let f = Floors::new(10);
        f.tombstones_behind(50);
        assert_eq!(f.trust_from(), 50);
        f.lost_changes_before(40);
        assert_eq!(f.trust_from(), 50);
        f.tombstones_caught_up();
        assert_eq!(f.trust_from(), 40, "a loss is for good");
    }
}
