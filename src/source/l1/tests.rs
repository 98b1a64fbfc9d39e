//! Unit tests of the L1 layer: coalescing, stale serving, revalidation,
//! fences and what an invalidation detaches.

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
            ids: vec![CertId::new(crate::ocsp::IssuerId(0), HashAlg::Sha1, Serial::from_hex("01").unwrap())],
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
        assert!(t.elapsed() < Duration::from_millis(40), "stale answered without waiting for the refresh");
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

/// A source for which every serial is unknown, after 20 ms, counting calls.
struct Unknown(Rc<Cell<u32>>);

impl Source for Unknown {
    fn fetch(&self, _q: Rc<Query>, _at_least: u64) -> Answer {
        self.0.set(self.0.get() + 1);
        Box::pin(async {
            glommio::timer::sleep(Duration::from_millis(20)).await;
            Err(OcspError::UnknownSerial)
        })
    }
}

fn single(serial: u8) -> Query {
    let id = CertId::new(crate::ocsp::IssuerId(0), HashAlg::Sha1, Serial::from_magnitude(&[serial]).unwrap());
    Query { issuer: id.issuer, ids: vec![id], key: crate::cache::key_of(&[id]).into() }
}

/// An unknown serial is looked up once per TTL; an invalidation of the
/// certificate (the feed's report of its insert) ends that, and so does one
/// that reaches the shard while the lookup runs (its answer is not kept).
#[test]
fn unknown_serials_are_looked_up_once_until_the_certificate_changes() {
    on_executor(async {
        let calls = Rc::new(Cell::new(0));
        let c = Cached::new(Rc::new(Unknown(calls.clone())), 100, 16);
        c.set_unknowns(600, 100);
        for _ in 0..5 {
            assert_eq!(c.answer(single(1)).await.unwrap_err(), OcspError::UnknownSerial);
        }
        assert_eq!(calls.get(), 1, "one lookup, then the negative cache");
        assert_eq!(c.stats().unknown_hits.get(), 4);
        let serial = Serial::from_magnitude(&[1]).unwrap();
        c.invalidate_cert(crate::ocsp::IssuerId(0), &serial);
        assert_eq!(c.answer(single(1)).await.unwrap_err(), OcspError::UnknownSerial);
        assert_eq!(calls.get(), 2, "looked up again after the change");
        // A change arriving while the lookup runs: its "unknown" is not kept.
        let c2 = c.clone();
        let asking = glommio::spawn_local(async move { c2.answer(single(2)).await });
        glommio::timer::sleep(Duration::from_millis(5)).await;
        c.invalidate_cert(crate::ocsp::IssuerId(0), &Serial::from_magnitude(&[2]).unwrap());
        assert_eq!(asking.await.unwrap_err(), OcspError::UnknownSerial);
        assert_eq!(c.answer(single(2)).await.unwrap_err(), OcspError::UnknownSerial);
        assert_eq!(calls.get(), 4, "the overtaken lookup's answer was not cached");
    });
}
