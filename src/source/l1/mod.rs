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

pub mod shed;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::future::{FutureExt, Shared};

use self::shed::Admission;
use self::store::L1Cache;
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
            (Served::Fetched, Origin::Redis) => CacheStatus::HitL2,
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
            }),
        }
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
            None => Rc::new(q),
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
        let fut: Answer = Box::pin(async move {
            let key = q.key.clone();
            let r = match prev {
                Some(prev) => inner.revalidate(q.clone(), prev).await,
                None => inner.fetch(q.clone(), 0).await,
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
                if let Ok(resp) = &r {
                    if Cached::servable(&fence, resp, &q) {
                        st2.l1.put(&key, resp.clone());
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
        self.state.inflight.borrow_mut().remove(key);
    }

    /// A certificate's status changed: drops every L1 entry answering for it
    /// (each hash algorithm, multi-CertID entries too) and detaches its
    /// single-CertID fetches. A multi-CertID fetch in flight is not looked
    /// for: its answer is checked against the floors before it is stored or
    /// served.
    pub fn invalidate_cert(&self, issuer: IssuerId, serial: &Serial) {
        self.state.l1.remove_cert(issuer, serial);
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
        self.state.inflight.borrow_mut().clear();
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
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::ocsp::response::Validity;
    use crate::ocsp::{CertId, HashAlg};

    /// A source that takes 50 ms per fetch and counts calls.
    struct SlowCounting {
        calls: Rc<Cell<u32>>,
        validity: Validity,
        refresh_at: u64,
    }

    impl Source for SlowCounting {
        fn fetch(&self, _q: Rc<Query>, _at_least: u64) -> Answer {
            self.calls.set(self.calls.get() + 1);
            let (v, r) = (self.validity, self.refresh_at);
            Box::pin(async move {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                Ok(Rc::new(CachedResponse::new(vec![1, 2, 3], v, r, Origin::Signed)))
            })
        }

        /// Statuses never change here: the previous response is answered again.
        fn revalidate(&self, _q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
            self.calls.set(self.calls.get() + 1);
            Box::pin(async move { Ok(prev) })
        }
    }

    fn query(k: u8) -> Query {
        Query { issuer: crate::ocsp::IssuerId(0), ids: vec![], key: vec![k].into() }
    }

    fn on_executor(f: impl std::future::Future<Output = ()> + 'static) {
        crate::uring::raise_memlock(1 << 20).unwrap();
        glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap().run(f);
    }

    fn source(validity: Validity, refresh_at: u64, max_inflight: usize) -> (Cached, Rc<Cell<u32>>) {
        let calls = Rc::new(Cell::new(0));
        let inner: Rc<dyn Source> = Rc::new(SlowCounting { calls: calls.clone(), validity, refresh_at });
        (Cached::new(inner, 100, max_inflight), calls)
    }

    /// A fetched answer used to be served however long its fetch took, even
    /// past its nextUpdate; now every answer that was awaited is checked
    /// again right before it is served.
    #[test]
    fn regression_an_answer_at_or_past_next_update_is_never_served() {
        on_executor(async {
            let now = unix_now();
            // As if the clock jumped forward past nextUpdate while signing.
            let v = Validity { produced_at: now - 10, this_update: now - 10, next_update: now };
            let (c, calls) = source(v, now - 5, 16);
            assert_eq!(c.answer(query(1)).await.unwrap_err(), OcspError::NotCurrent, "tryLater, not expired");
            assert_eq!(calls.get(), 2, "fetched once more before giving up");
            assert_eq!(c.l1_len(), 0, "nothing expired is kept");
        });
    }

    /// An answer fetched while a change arrived (the floors rose under it) is
    /// neither served nor kept: the request fetches again.
    #[test]
    fn an_answer_overtaken_by_a_change_is_fetched_again() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let f = std::sync::Arc::new(crate::source::floors::Floors::new(10));
            let fence = Fence::for_ids(f.clone(), &["test"]);
            let calls = Rc::new(Cell::new(0));
            let inner: Rc<dyn Source> =
                Rc::new(Revisioned { calls: calls.clone(), validity: v, floors: f.clone() });
            let c = Cached::new(inner, 100, 16);
            c.set_fence(fence);
            let q = || Query {
                issuer: crate::ocsp::IssuerId(0),
                ids: vec![CertId {
                    issuer: crate::ocsp::IssuerId(0),
                    alg: HashAlg::Sha1,
                    serial: Serial::from_hex("01").unwrap(),
                }],
                key: vec![1].into(),
            };
            let (r, _) = c.answer(q()).await.unwrap();
            assert_eq!((r.revision, calls.get()), (2, 2), "the first answer (revision 1) was overtaken");
            let (r, how) = c.answer(q()).await.unwrap();
            assert_eq!((r.revision, how), (2, Served::Hit), "the current one was kept");
        });
    }

    /// Answers revision n on its n-th fetch, raising the floor to n + 1 during
    /// the first (a change the feed brings while it runs).
    struct Revisioned {
        calls: Rc<Cell<u32>>,
        validity: Validity,
        floors: std::sync::Arc<crate::source::floors::Floors>,
    }

    impl Source for Revisioned {
        fn fetch(&self, _q: Rc<Query>, _at_least: u64) -> Answer {
            self.calls.set(self.calls.get() + 1);
            let n = u64::from(self.calls.get());
            let (v, floors) = (self.validity, self.floors.clone());
            Box::pin(async move {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                if n == 1 {
                    let now = unix_now();
                    let r = crate::source::floors::Raise { revision: 2, seq: 2, at: now, until: now + 60 };
                    floors.raise(floors.issuer("test"), Serial::from_hex("01").unwrap(), r);
                }
                let mut r = CachedResponse::new(vec![1], v, v.next_update - 1, Origin::Signed);
                r.revision = n;
                Ok(Rc::new(r))
            })
        }
    }

    #[test]
    fn replace_inner_serves_nothing_from_the_old_source() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let (c, old_calls) = source(v, now + 500, 16);
            assert!(c.answer(query(1)).await.is_ok()); // cached under the old source
                                                       // A fetch under the old source still running at the swap.
            let running = {
                let c = c.clone();
                glommio::spawn_local(async move { c.answer(query(2)).await.map(|(r, _)| r) })
            };
            glommio::timer::sleep(Duration::from_millis(10)).await;
            let new_calls = Rc::new(Cell::new(0));
            c.replace_inner(
                Rc::new(SlowCounting { calls: new_calls.clone(), validity: v, refresh_at: now + 500 }),
                Fence::empty(),
            );
            assert!(running.await.is_ok(), "a request already waiting still gets its answer");
            for k in [1, 2] {
                let (_, served) = c.answer(query(k)).await.unwrap();
                assert_eq!(served, Served::Fetched, "key {k}: asked of the new source");
            }
            assert_eq!((old_calls.get(), new_calls.get()), (2, 2));
        });
    }

    #[test]
    fn a_lagging_shard_refuses_new_misses_but_serves_hits_and_joins() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let (c, calls) = source(v, now + 500, 16);
            let a = Rc::new(Admission::new(Duration::from_millis(5)));
            c.set_admission(a.clone());
            assert!(c.answer(query(1)).await.is_ok(), "no lag: a miss is fetched");
            // A fetch running for key 2 when the shard starts lagging.
            let running = {
                let c = c.clone();
                glommio::spawn_local(async move { c.answer(query(2)).await.is_ok() })
            };
            glommio::timer::sleep(Duration::from_millis(5)).await;
            for _ in 0..40 {
                a.observe(Duration::from_millis(50));
            }
            assert_eq!(c.answer(query(1)).await.unwrap().1, Served::Hit, "hits go on");
            assert_eq!(c.answer(query(2)).await.unwrap().1, Served::Fetched, "joins the running fetch");
            assert!(running.await);
            assert_eq!(c.answer(query(3)).await.unwrap_err(), OcspError::Overloaded, "a new miss is shed");
            assert_eq!(c.stats().shed_lag.get(), 1);
            assert_eq!(calls.get(), 2, "no fetch started for the shed miss");
            for _ in 0..40 {
                a.observe(Duration::ZERO);
            }
            assert!(c.answer(query(3)).await.is_ok(), "admitted again once the lag falls");
        });
    }

    #[test]
    fn concurrent_misses_for_one_key_cause_one_fetch() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let (c, calls) = source(v, now + 500, 16);
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let c = c.clone();
                    glommio::spawn_local(async move { c.answer(query(7)).await.is_ok() })
                })
                .collect();
            for t in tasks {
                assert!(t.await);
            }
            assert_eq!(calls.get(), 1, "one fetch for 50 concurrent misses");
            assert_eq!(c.stats().coalesced.get(), 49);
            assert!(c.answer(query(7)).await.is_ok());
            assert_eq!(calls.get(), 1, "then a hit");
            assert_eq!(c.inflight(), 0);
        });
    }

    /// An L1 whose entries are always past their max age.
    struct AlwaysUnverified(L1Cache);

    impl ResponseCache for AlwaysUnverified {
        fn get(&self, key: &[u8], now: u64) -> Option<(Rc<CachedResponse>, Freshness)> {
            self.0.get(key, now).map(|(r, _)| (r, Freshness::Unverified))
        }
        fn put(&self, key: &[u8], resp: Rc<CachedResponse>) {
            self.0.put(key, resp)
        }
        fn remove(&self, key: &[u8]) {
            self.0.remove(key)
        }
        fn remove_cert(&self, issuer: IssuerId, serial: &Serial) {
            self.0.remove_cert(issuer, serial)
        }
        fn clear(&self) {
            self.0.clear()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
    }

    #[test]
    fn answers_say_how_they_were_served() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let (c, _) = source(v, now + 500, 16);
            let (r, how) = c.answer(query(1)).await.unwrap();
            assert_eq!((how, how.cache_status(&r)), (Served::Fetched, CacheStatus::Miss));
            let (r, how) = c.answer(query(1)).await.unwrap();
            assert_eq!((how, how.cache_status(&r)), (Served::Hit, CacheStatus::Hit));

            // A fetched copy that came out of Redis reports HIT-L2.
            let from_redis = CachedResponse::new(vec![1], v, now + 500, Origin::Redis);
            assert_eq!(Served::Fetched.cache_status(&from_redis), CacheStatus::HitL2);

            let stale = Validity { produced_at: now - 100, this_update: now - 100, next_update: now + 1000 };
            let (c, _) = source(stale, now - 1, 16);
            c.answer(query(1)).await.unwrap();
            let (r, how) = c.answer(query(1)).await.unwrap();
            assert_eq!((how, how.cache_status(&r)), (Served::Stale, CacheStatus::Stale));

            let calls = Rc::new(Cell::new(0));
            let inner: Rc<dyn Source> =
                Rc::new(SlowCounting { calls: calls.clone(), validity: v, refresh_at: now + 500 });
            let c = Cached::with_l1(inner, Box::new(AlwaysUnverified(L1Cache::new(10))), 16);
            let (first, how) = c.answer(query(1)).await.unwrap();
            assert_eq!(how, Served::Fetched);
            let (again, how) = c.answer(query(1)).await.unwrap();
            assert_eq!((how, how.cache_status(&again)), (Served::Revalidated, CacheStatus::Revalidated));
            assert!(Rc::ptr_eq(&first, &again), "the same response, re-checked");
            assert_eq!(calls.get(), 2, "one fetch, one status check");
        });
    }

    #[test]
    fn stale_is_served_at_once_and_refreshed_in_background() {
        on_executor(async {
            let now = unix_now();
            // Already past refresh_at but before nextUpdate: stale.
            let v = Validity { produced_at: now - 100, this_update: now - 100, next_update: now + 1000 };
            let (c, calls) = source(v, now - 1, 16);
            c.answer(query(1)).await.unwrap();
            assert_eq!(calls.get(), 1);
            let t = std::time::Instant::now();
            c.answer(query(1)).await.unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(40),
                "stale answered without waiting for the refresh"
            );
            assert_eq!(calls.get(), 2, "refresh started");
            assert_eq!(c.stats().stale_hits.get(), 1);
            glommio::timer::sleep(Duration::from_millis(80)).await;
            assert_eq!(c.inflight(), 0);
        });
    }

    #[test]
    fn inflight_bound_gives_overloaded() {
        on_executor(async {
            let now = unix_now();
            let v = Validity { produced_at: now, this_update: now, next_update: now + 1000 };
            let (c, _) = source(v, now + 500, 2);
            let a = glommio::spawn_local({
                let c = c.clone();
                async move { c.answer(query(1)).await.is_ok() }
            });
            let b = glommio::spawn_local({
                let c = c.clone();
                async move { c.answer(query(2)).await.is_ok() }
            });
            glommio::yield_if_needed().await;
            glommio::timer::sleep(Duration::from_millis(5)).await;
            assert_eq!(c.inflight(), 2);
            assert_eq!(c.answer(query(3)).await.unwrap_err(), OcspError::Overloaded);
            assert!(a.await && b.await);
            assert!(c.answer(query(3)).await.is_ok(), "capacity is back");
        });
    }
}
