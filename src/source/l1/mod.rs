//! The L1 layer: answers from the shard-local cache, coalesces concurrent misses
//! for one key into one fetch, and re-signs stale entries in the background.
//!
//! - Fresh hit: answered synchronously, no allocation beyond the `Rc` clone.
//! - Stale hit (past `refresh_fraction` of its lifetime, before nextUpdate): the
//!   still-valid response is served at once and a refresh starts unless one is
//!   already running; so a saturated signer never turns a held response into
//!   `tryLater`.
//! - Miss: joins the in-flight fetch for the key, or starts one. Each fetch is
//!   driven by its own detached task, so a client that disconnects does not
//!   cancel work other waiters share, and every in-flight entry ends (the live
//!   source bounds its own time). At most `max_inflight` fetches run per shard;
//!   past that a miss gets `tryLater` at once.
//!
//! [`Cached::answer`] also says how it served ([`Served`]), which the
//! connection turns into the `X-Cache-Status` header.

pub mod node;
pub mod shed;
pub mod store;
pub mod unknown;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::{FutureExt, Shared};

use self::node::NodeFills;
use self::shed::Admission;
use self::store::L1Cache;
use self::unknown::Unknowns;
use super::{Answer, Query, Source};

use crate::cache::{CacheStatus, CachedResponse, Freshness, Origin, ResponseCache};
use crate::clock::unix_now;
use crate::error::OcspError;
use crate::ocsp::{IssuerId, Serial};
use crate::source::floors::Fence;

/// Counters for this layer, per shard.
#[derive(Default, Debug)]
pub struct CacheStats {
    /// Fresh hits.
    pub hits: std::cell::Cell<u64>,
    /// Stale hits (served, refresh started or joined).
    pub stale_hits: std::cell::Cell<u64>,
    /// Misses that started a fetch.
    pub misses: std::cell::Cell<u64>,
    /// Misses that joined a fetch already running.
    pub coalesced: std::cell::Cell<u64>,
    /// Misses refused because `max_inflight` fetches were running.
    pub overloaded: std::cell::Cell<u64>,
    /// Hits past the L1 max age, checked against the status source.
    pub revalidations: std::cell::Cell<u64>,
    /// Misses refused because the shard lagged (see `source::admission`).
    pub shed_lag: std::cell::Cell<u64>,
    /// Misses answered `unauthorized` from the negative cache ([`unknown`]).
    pub unknown_hits: std::cell::Cell<u64>,
}

fn bump(c: &std::cell::Cell<u64>) {
    c.set(c.get() + 1);
}

/// How [`Cached::answer`] produced its response. Decided in `answer` alone, so
/// the header a client sees always matches the branch that served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// A fresh L1 entry.
    Hit,
    /// An L1 entry past its refresh point (a re-signature was started or
    /// joined), or an unverified one whose status check could not reach the
    /// status source: served because it is still valid, not because it was
    /// checked.
    Stale,
    /// An L1 entry past its max age whose statuses were re-checked and found
    /// unchanged: the same response served again.
    Revalidated,
    /// The answer of a fetch this request started or joined (a miss, or a
    /// re-check that produced a different response); the response's
    /// [`Origin`] says whether it was signed or came from Redis.
    Fetched,
}

impl Served {
    /// The `X-Cache-Status` of a response `r` served this way.
    pub fn cache_status(self, r: &CachedResponse) -> CacheStatus {
        match (self, r.origin) {
            (Served::Hit, _) => CacheStatus::Hit,
            (Served::Stale, _) => CacheStatus::Stale,
            (Served::Revalidated, _) => CacheStatus::Revalidated,
            (Served::Fetched, Origin::Redis | Origin::Node) => CacheStatus::HitL2,
            (Served::Fetched, Origin::Signed) => CacheStatus::Miss,
        }
    }
}

/// A running fetch: its id and the shared answer.
type InFlight = (u64, Shared<Answer>);

struct State {
    l1: Box<dyn ResponseCache>,
    /// Fetches running, by key, with the id of the fetch (so a fetch that was
    /// invalidated while running neither removes its successor nor fills L1).
    inflight: RefCell<HashMap<Box<[u8]>, InFlight>>,
    next_fetch: std::cell::Cell<u64>,
    /// Replaced on a reload ([`Cached::replace_inner`]); a fetch keeps the
    /// source it started with.
    inner: RefCell<Rc<dyn Source>>,
    /// The node's revision floors as this generation's issuers see them.
    fence: RefCell<Fence>,
    max_inflight: usize,
    stats: CacheStats,
    /// The shard's lag-based miss admission, if enabled.
    admission: RefCell<Option<Rc<Admission>>>,
    /// Serials recently found unknown (off until [`Cached::set_unknowns`]).
    unknowns: RefCell<Unknowns>,
    /// The node's shared fills, if any ([`node`]).
    node: RefCell<Option<Arc<NodeFills>>>,
}

/// L1 cache + coalescing in front of an inner source. One per shard.
#[derive(Clone)]
pub struct Cached {
    state: Rc<State>,
}

impl Cached {
    /// Wraps `inner` with an L1 of `l1_entries` and at most `max_inflight`
    /// concurrent fetches.
    pub fn new(inner: Rc<dyn Source>, l1_entries: usize, max_inflight: usize) -> Cached {
        Cached::with_l1(inner, Box::new(L1Cache::new(l1_entries)), max_inflight)
    }

    /// Wraps `inner` with the given L1.
    pub fn with_l1(inner: Rc<dyn Source>, l1: Box<dyn ResponseCache>, max_inflight: usize) -> Cached {
        Cached {
            state: Rc::new(State {
                l1,
                inflight: RefCell::new(HashMap::new()),
                next_fetch: std::cell::Cell::new(0),
                inner: RefCell::new(inner),
                fence: RefCell::new(Fence::empty()),
                max_inflight,
                stats: CacheStats::default(),
                admission: RefCell::new(None),
                unknowns: RefCell::new(Unknowns::new(0, 1)),
                node: RefCell::new(None),
            }),
        }
    }

    /// Keeps serials found unknown for `ttl_secs` (at most `entries`), see
    /// [`unknown`]; 0 turns it off.
    pub fn set_unknowns(&self, ttl_secs: u64, entries: usize) {
        *self.state.unknowns.borrow_mut() = Unknowns::new(ttl_secs, entries);
    }

    /// Shares single-CertID fills with the node's other shards through
    /// `node` (one per generation), see [`node`].
    pub fn set_node_fills(&self, node: Option<Arc<NodeFills>>) {
        *self.state.node.borrow_mut() = node;
    }

    /// Holds every answer to the node's revision floors from now on.
    pub fn set_fence(&self, fence: Fence) {
        *self.state.fence.borrow_mut() = fence;
    }

    /// Whether `r`, an answer for `q` obtained after an await, may be served
    /// now: still before its nextUpdate, and no older than any change of its
    /// certificates this node has seen since (the floors rise before a change
    /// reaches this shard as an invalidation). `fence` is the one of the
    /// generation `q` was admitted under: a reload meanwhile renumbers
    /// issuers, so the current one could read another issuer's floors.
    fn servable(fence: &Fence, r: &CachedResponse, q: &Query) -> bool {
        r.valid_at(unix_now()) && fence.holds(r, &q.ids)
    }

    /// Answers `q` (the hot path; not boxed), saying how.
    ///
    /// A fresh or stale L1 hit is answered without awaiting (L1 holds
    /// nothing older than a change this shard was told of). Everything else
    /// awaits a fetch, so it is checked again right before it is served
    /// ([`Cached::servable`]); a fetch overtaken by a change is replaced by
    /// one fetch of this request's own, and if that is overtaken too the
    /// answer is `tryLater`, never the older status.
    pub async fn answer(&self, q: Query) -> Result<(Rc<CachedResponse>, Served), OcspError> {
        let st = &self.state;
        let held = match st.l1.get(&q.key, unix_now()) {
            Some((r, Freshness::Fresh)) => {
                bump(&st.stats.hits);
                return Ok((r, Served::Hit));
            }
            other => other,
        };
        // Past the hit path: the fence of this request's generation.
        let fence = st.fence.borrow().clone();
        let servable = |r: &CachedResponse, q: &Query| Cached::servable(&fence, r, q);
        let q = match held {
            Some((r, Freshness::Unverified)) => {
                // Past its L1 max age: the status must be checked before it is
                // served again (a re-signature only if the status changed).
                bump(&st.stats.revalidations);
                let q = Rc::new(q);
                let check = self.join_or_start(q.clone(), Some(r.clone()))?;
                match check.await {
                    // The same response back: its statuses still hold.
                    Ok(fresh) if servable(&fresh, &q) => {
                        let how = if Rc::ptr_eq(&fresh, &r) { Served::Revalidated } else { Served::Fetched };
                        return Ok((fresh, how));
                    }
                    // Overtaken by a change while it was checked: fetch anew.
                    Ok(_) => q,
                    // The status source is down: no revocation can have been
                    // recorded through it, and the response is still valid
                    // and no older than any change the feed has brought.
                    Err(OcspError::Status(_)) if servable(&r, &q) => return Ok((r, Served::Stale)),
                    Err(e) => return Err(e),
                }
            }
            Some((r, _stale)) => {
                bump(&st.stats.stale_hits);
                // Best effort: if the shard is at its in-flight bound or
                // lagging, the stale response is still valid and a later
                // request starts the refresh.
                // Lagging shard: refreshes wait, except in the last quarter of
                // the stale window, so a hot entry is never left to expire
                // while the lag lasts (and then be shed as a miss).
                let now = unix_now();
                let window = r.validity.next_update.saturating_sub(r.refresh_at);
                let late = now >= r.refresh_at.saturating_add(window - window / 4);
                if late || self.admission().is_none_or(|a| a.admit_miss()) {
                    let _ = self.join_or_start(Rc::new(q), None);
                }
                return Ok((r, Served::Stale));
            }
            None => {
                if let [id] = q.ids[..] {
                    if st.unknowns.borrow().holds(id.issuer, &id.serial, unix_now()) {
                        bump(&st.stats.unknown_hits);
                        return Err(OcspError::UnknownSerial);
                    }
                }
                Rc::new(q)
            }
        };
        // A new miss on a lagging shard is refused before any work; one that
        // can join a fetch already running costs nothing more and joins.
        if !st.inflight.borrow().contains_key(&q.key) {
            if let Some(a) = self.admission() {
                if !a.admit_miss() {
                    bump(&st.stats.shed_lag);
                    return Err(OcspError::Overloaded);
                }
            }
        }
        let r = self.join_or_start(q.clone(), None)?.await?;
        if servable(&r, &q) {
            return Ok((r, Served::Fetched));
        }
        // The fetch began before a change this shard has now seen (or its
        // answer expired while it ran): one fetch of this request's own.
        st.inflight.borrow_mut().remove(&q.key);
        let r = self.join_or_start(q.clone(), None)?.await?;
        if servable(&r, &q) {
            Ok((r, Served::Fetched))
        } else {
            Err(OcspError::NotCurrent)
        }
    }

    /// Joins the fetch running for `q`'s key, or starts one; with `prev`, the
    /// fetch may answer `prev` again if its statuses still hold.
    fn join_or_start(
        &self,
        q: Rc<Query>,
        prev: Option<Rc<CachedResponse>>,
    ) -> Result<Shared<Answer>, OcspError> {
        let st = &self.state;
        if let Some((_, f)) = st.inflight.borrow().get(&q.key) {
            bump(&st.stats.coalesced);
            return Ok(f.clone());
        }
        if st.inflight.borrow().len() >= st.max_inflight {
            bump(&st.stats.overloaded);
            return Err(OcspError::Overloaded);
        }
        bump(&st.stats.misses);
        let key = q.key.clone();
        let st2 = st.clone();
        let id = st.next_fetch.get();
        st.next_fetch.set(id + 1);
        let inner = st.inner.borrow().clone();
        // The generation this fetch belongs to (see `servable`).
        let fence = st.fence.borrow().clone();
        let node = st.node.borrow().clone().filter(|_| q.ids.len() == 1);
        let fut: Answer = Box::pin(async move {
            let key = q.key.clone();
            // Another core's fresh copy, held to this generation's fence
            // and trust horizon like a Redis copy.
            let shared = match (&prev, &node) {
                (None, Some(n)) => n
                    .get(&key, unix_now())
                    .filter(|r| Cached::servable(&fence, r, &q) && r.vouched_at >= fence.trust_from()),
                _ => None,
            };
            let r = match (shared, prev) {
                (Some(r), _) => {
                    let mut copy = CachedResponse::clone(&r);
                    copy.origin = Origin::Node;
                    Ok(Rc::new(copy))
                }
                (None, Some(prev)) => inner.revalidate(q.clone(), prev).await,
                (None, None) => inner.fetch(q.clone(), 0).await,
            };
            // Still the current fetch for the key? Then nothing invalidated it
            // while it ran, and its answer may be cached if it is still no
            // older than the floors (a change whose invalidation has not
            // reached this shard yet has already raised them). Otherwise
            // answer the requests that were already waiting (each checks
            // the answer again before serving it) but cache nothing.
            let current = matches!(st2.inflight.borrow().get(&key), Some((cur, _)) if *cur == id);
            if current {
                st2.inflight.borrow_mut().remove(&key);
                // Unknown, and no change of it reached this shard while the
                // lookup ran (that would have detached this fetch).
                if let (Err(OcspError::UnknownSerial), [id]) = (&r, &q.ids[..]) {
                    st2.unknowns.borrow_mut().insert(id.issuer, id.serial, unix_now());
                }
                if let Ok(resp) = &r {
                    if Cached::servable(&fence, resp, &q) {
                        st2.l1.put(&key, resp.clone());
                        if let (Some(n), false) = (&node, resp.origin == Origin::Node) {
                            n.put(&key, resp);
                        }
                    }
                }
            }
            r
        });
        let shared = fut.shared();
        st.inflight.borrow_mut().insert(key, (id, shared.clone()));
        let driver = shared.clone();
        glommio::spawn_local(async move {
            let _ = driver.await;
        })
        .detach();
        Ok(shared)
    }

    /// A status changed: drops the cached answer, and detaches any fetch
    /// running for the key so later requests start a new one and its (possibly
    /// older) answer is not cached.
    pub fn invalidate(&self, key: &[u8]) {
        self.state.l1.remove(key);
        if let Some(n) = &*self.state.node.borrow() {
            n.remove(key);
        }
        self.state.inflight.borrow_mut().remove(key);
        let mut unknowns = self.state.unknowns.borrow_mut();
        if !unknowns.is_empty() {
            for (issuer, serial) in crate::cache::certs_of_key(key) {
                unknowns.forget(issuer, &serial);
            }
        }
    }

    /// A certificate's status changed: drops every L1 entry answering for it
    /// (each hash algorithm, multi-CertID entries too) and detaches its
    /// single-CertID fetches. A multi-CertID fetch in flight is not looked
    /// for: its answer is checked against the floors before it is stored or
    /// served.
    pub fn invalidate_cert(&self, issuer: IssuerId, serial: &Serial) {
        self.state.l1.remove_cert(issuer, serial);
        if let Some(n) = &*self.state.node.borrow() {
            n.remove_cert(issuer, serial);
        }
        self.state.unknowns.borrow_mut().forget(issuer, serial);
        let mut inflight = self.state.inflight.borrow_mut();
        if !inflight.is_empty() {
            crate::source::l1::store::for_each_single_key(issuer, serial, |k| {
                inflight.remove(k);
            });
        }
    }

    /// Drops every cached answer and detaches every running fetch.
    pub fn invalidate_all(&self) {
        self.state.l1.clear();
        if let Some(n) = &*self.state.node.borrow() {
            n.clear();
        }
        self.state.inflight.borrow_mut().clear();
        self.state.unknowns.borrow_mut().clear();
    }

    /// A reload: later fetches go to `inner` (new issuers, status source or
    /// Redis settings) under `fence` (its issuers' view of the floors), and
    /// nothing cached or in flight under the old one is served again: L1 is
    /// cleared and running fetches are detached, so their answers reach only
    /// the requests already waiting for them. The counters and the L1's
    /// allocation are kept.
    pub fn replace_inner(&self, inner: Rc<dyn Source>, fence: Fence) {
        *self.state.inner.borrow_mut() = inner;
        self.set_fence(fence);
        self.invalidate_all();
    }

    /// Enables lag-based miss admission with the shard's [`Admission`].
    pub fn set_admission(&self, a: Rc<Admission>) {
        *self.state.admission.borrow_mut() = Some(a);
    }

    fn admission(&self) -> Option<Rc<Admission>> {
        self.state.admission.borrow().clone()
    }

    /// This layer's counters.
    pub fn stats(&self) -> &CacheStats {
        &self.state.stats
    }

    /// Responses held in L1.
    pub fn l1_len(&self) -> usize {
        self.state.l1.len()
    }

    /// Fetches running now.
    pub fn inflight(&self) -> usize {
        self.state.inflight.borrow().len()
    }
}

#[cfg(test)]
mod tests;
