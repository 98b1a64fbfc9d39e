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

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::future::{FutureExt, Shared};

use super::{Answer, Query, Source};
use crate::cache::l1::L1Cache;
use crate::cache::{CachedResponse, Freshness};
use crate::clock::unix_now;
use crate::error::OcspError;

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
}

fn bump(c: &std::cell::Cell<u64>) {
    c.set(c.get() + 1);
}

struct State {
    l1: L1Cache,
    inflight: RefCell<HashMap<Box<[u8]>, Shared<Answer>>>,
    inner: Rc<dyn Source>,
    max_inflight: usize,
    stats: CacheStats,
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
        Cached {
            state: Rc::new(State {
                l1: L1Cache::new(l1_entries),
                inflight: RefCell::new(HashMap::new()),
                inner,
                max_inflight,
                stats: CacheStats::default(),
            }),
        }
    }

    /// Answers `q` (the hot path; not boxed).
    pub async fn answer(&self, q: Query) -> Result<Rc<CachedResponse>, OcspError> {
        let st = &self.state;
        match st.l1.get(&q.key, unix_now()) {
            Some((r, Freshness::Fresh)) => {
                bump(&st.stats.hits);
                return Ok(r);
            }
            Some((r, _stale)) => {
                bump(&st.stats.stale_hits);
                // Best effort: if the shard is at its in-flight bound the stale
                // response is still valid and the next request retries.
                let _ = self.join_or_start(Rc::new(q));
                return Ok(r);
            }
            None => {}
        }
        let fetch = self.join_or_start(Rc::new(q))?;
        fetch.await
    }

    fn join_or_start(&self, q: Rc<Query>) -> Result<Shared<Answer>, OcspError> {
        let st = &self.state;
        if let Some(f) = st.inflight.borrow().get(&q.key) {
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
        let fut: Answer = Box::pin(async move {
            let key = q.key.clone();
            let r = st2.inner.fetch(q).await;
            st2.inflight.borrow_mut().remove(&key);
            if let Ok(resp) = &r {
                st2.l1.put(&key, resp.clone());
            }
            r
        });
        let shared = fut.shared();
        st.inflight.borrow_mut().insert(key, shared.clone());
        let driver = shared.clone();
        glommio::spawn_local(async move {
            let _ = driver.await;
        })
        .detach();
        Ok(shared)
    }

    /// Drops a cached answer (used when a status changes).
    pub fn invalidate(&self, key: &[u8]) {
        self.state.l1.remove(key);
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

impl Source for Cached {
    fn fetch(&self, q: Rc<Query>) -> Answer {
        let me = self.clone();
        Box::pin(async move { me.answer((*q).clone()).await })
    }
}
