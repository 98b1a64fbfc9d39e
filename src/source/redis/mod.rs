//! The L2 layer: signed responses shared through Redis (or Redis Cluster), one
//! `fred` client per shard. Redis is a cache of the database, never a second
//! authority.
//!
//! - **Read**: a fresh copy is answered without signing only if it is
//!   believable ([`RedisL2`]): its DER says what its header says, for the
//!   CertID asked (a damaged or misfiled value is a miss); its revision is at
//!   least the node's floor for the certificate (a change the change feed has
//!   brought, which Redis may not have yet, e.g. while it was stopped, or on
//!   a promoted replica that lacks recent writes); with statuses in memory
//!   (`index.txt`), it says what the table says, so an edited file and a
//!   reload change what every node serves. A copy vouched for before the
//!   node's trust horizon (changes may have been missed: see
//!   `crate::source::floors::Floors::trust_from`) is checked against the database
//!   first. Anything else falls through to the live source, no older than
//!   the tombstone or copy found; its answer is written back. A stale but
//!   valid copy is served when the live answer would be `tryLater`, checked
//!   against the floor again after that wait.
//! - **Versioned writes** ([`WRITE`]): each value carries the status revision
//!   it was signed from; an older revision never replaces a newer one, so a
//!   slow miss that read the database before a revocation can't overwrite
//!   the revocation's tombstone or the revoked response; a same-revision
//!   refresh replaces the older copy, so sharing goes on past the refresh
//!   point.
//! - **Tombstones** ([`TOMBSTONE`]): a change's revision over every response
//!   key of the certificate (its keys share a Cluster slot, so one script
//!   call); written by every node's tombstone writer from the change feed,
//!   and by `revoke` / `POST /revoke`, which also set the change key.
//! - **Errors are misses**: every command has a timeout (`command_timeout_ms`);
//!   a timeout, a refused connection or a broken value means "sign live", never
//!   a failed request. fred reconnects in the background.
//! - **Invalidation fast path**: with `tracking`, each client enables RESP3
//!   client-side caching in broadcast mode for the change-key prefix
//!   (`{prefix}chg:`). `revoke` / `POST /revoke` set the certificate's change
//!   key, which reaches every shard of every node at once. Correctness does
//!   not depend on it: the change feed reaches every shard within
//!   `feed.bound_ms` whoever wrote the change. Response keys are not tracked,
//!   so cache fills cause no invalidation traffic.
//!
//! Multi-CertID responses are not shared: they live in L1 only, dropped by a
//! change of any certificate they name.
//!
//!
//! Files: [`store`] (the commands the read path needs, behind a trait
//! so its policy is tested against fakes too), [`codec`] (the value format), [`keys`] (the key schema and its
//! Cluster hash tags), [`scripts`] (the versioned write and the tombstone),
//! [`client`] (building a shard's client: timers and a resolver that never
//! block the shard), [`tracking`] (client tracking and the invalidation loop
//! that keeps L1 coherent); this file is the layer itself.

pub mod client;
pub mod codec;
pub mod keys;
pub mod scripts;
pub mod store;
pub mod tls;
pub mod tracking;

pub use client::{client, TimerRuntime};
pub use codec::{decode, encode_response, encode_tombstone, Stored};
pub use keys::{certids_of_change, change_key, change_prefix, key_for, keys_of_cert, l1_key, position_key};
pub use scripts::{tombstone, write_versioned, Script, RAISE, TOMBSTONE, WRITE};
pub use store::Store;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::{Answer, Query, Source};
use crate::cache::CachedResponse;
use crate::clock::unix_now;
pub use crate::config::RedisConfig;
use crate::error::{disposition, Failure, OcspError};
use crate::metrics::{Stage, StageTimes};
use crate::ocsp::issuer::Issuers;
use crate::ocsp::response::ResponseStatus;
use crate::ocsp::CertId;
use crate::source::floors::Fence;
use crate::status::StatusSource;

/// Counters of this layer, per shard.
#[derive(Default, Debug)]
pub struct RedisStats {
    /// Fresh responses answered from Redis.
    pub hits: std::cell::Cell<u64>,
    /// Absent, stale, tombstoned or undecodable entries.
    pub misses: std::cell::Cell<u64>,
    /// Commands that failed or timed out (treated as misses).
    pub errors: std::cell::Cell<u64>,
    /// Writes refused because Redis held a newer revision (or, for the
    /// write to a key the read found empty, any value: see
    /// [`Store::put_new`]).
    pub refused_writes: std::cell::Cell<u64>,
    /// Values below the node's revision floor (a change this node has seen
    /// and Redis not yet): treated as misses.
    pub fenced: std::cell::Cell<u64>,
    /// Values whose header disagreed with their DER, or (`index.txt`) with
    /// the status table: treated as misses.
    pub rejected: std::cell::Cell<u64>,
    /// Values vouched for before the node's trust horizon, checked against
    /// the database before use.
    pub rechecked: std::cell::Cell<u64>,
}

fn bump(c: &std::cell::Cell<u64>) {
    c.set(c.get() + 1);
}

/// What a read found, after every check.
enum Found {
    /// A fresh copy that may be answered as it is.
    Fresh(CachedResponse),
    /// A fresh copy that must be checked against the database first (vouched
    /// for before the trust horizon).
    Unvouched(CachedResponse),
    /// A copy past its refresh point but still valid: re-sign, and serve it if
    /// that fails for want of capacity.
    Stale(CachedResponse),
    /// Nothing usable; a fetch must be at least this revision (a tombstone's,
    /// a fenced or superseded copy's).
    Nothing,
    /// The key holds nothing at all: the answer is written back only if it
    /// still holds nothing ([`Store::put_new`]).
    Absent,
}

/// The Redis layer of one shard.
pub struct RedisL2 {
    store: Rc<dyn Store>,
    inner: Rc<dyn Source>,
    issuers: Arc<Issuers>,
    /// For sources that can say at once what they hold (`index.txt`): copies
    /// are checked against it.
    status: Arc<dyn StatusSource>,
    fence: Fence,
    prefix: String,
    /// Counters.
    pub stats: RedisStats,
    /// The shard's stage histograms (`redis`: each GET's round trip).
    stages: Rc<StageTimes>,
}

impl RedisL2 {
    /// Wraps `inner` with Redis through `store` (a connected client);
    /// GETs are timed into `stages`; copies are held to `fence` and, where it
    /// can say at once, to `status`.
    pub fn new(
        store: Rc<dyn Store>,
        inner: Rc<dyn Source>,
        issuers: Arc<Issuers>,
        status: Arc<dyn StatusSource>,
        fence: Fence,
        prefix: String,
        stages: Rc<StageTimes>,
    ) -> RedisL2 {
        RedisL2 { store, inner, issuers, status, fence, prefix, stats: RedisStats::default(), stages }
    }

    fn key(&self, q: &Query) -> Option<String> {
        match q.ids.as_slice() {
            [id] => Some(key_for(&self.prefix, &self.issuers.get(id.issuer).name, id)),
            _ => None,
        }
    }

    /// Whether a decoded copy says what it claims and what the node holds:
    /// its DER agrees with its header and the CertID asked for, it is no
    /// older than the floor, and an in-memory status table (if that is the
    /// source) says the same.
    fn believable(&self, r: &CachedResponse, id: &CertId, floor: u64) -> bool {
        if r.revision < floor {
            bump(&self.stats.fenced);
            return false;
        }
        let issuer = self.issuers.get(id.issuer);
        let agrees =
            crate::ocsp::response::agrees(&r.der, issuer, std::slice::from_ref(id), &r.statuses, r.validity);
        let current = match self.status.peek(id.issuer, &id.serial) {
            None => true,
            Some(rec) => rec.map(|rec| rec.status) == r.statuses.first().copied(),
        };
        if !(agrees && current) {
            bump(&self.stats.rejected);
        }
        agrees && current
    }

    /// Reads `key` for `id` and classifies what is there; also returns the
    /// revision a fetch must reach. The GET is timed whatever its outcome: a
    /// timeout is time the request spent too.
    async fn read(&self, key: &str, id: &CertId, at_least: u64) -> (Found, u64) {
        let sent = Instant::now();
        let got = self.store.get(key.to_string()).await;
        self.stages.record(Stage::Redis, sent.elapsed());
        // Read after the GET: a change seen meanwhile counts.
        let floor = self.fence.floor(id).max(at_least);
        let now = unix_now();
        let found = match got {
            Ok(Some(v)) => match decode(&v) {
                Some(Stored::Response(mut r))
                    if now < r.validity.next_update && self.believable(&r, id, floor) =>
                {
                    if let Some(line) = self.issuers.get(id.issuer).tag_line(std::iter::once(id)) {
                        r.add_header_line(&line);
                    }
                    let known = floor.max(r.revision);
                    let vouched = r.vouched_at >= self.fence.trust_from();
                    return match (now >= r.refresh_at, vouched) {
                        (false, true) => (Found::Fresh(r), known),
                        (false, false) => (Found::Unvouched(r), known),
                        // Stale: re-signed, and served if that fails, but
                        // only if nothing says it may predate a lost change.
                        (true, true) => (Found::Stale(r), known),
                        (true, false) => (Found::Nothing, known),
                    };
                }
                Some(Stored::Tombstone(t)) => return (Found::Nothing, floor.max(t)),
                _ => Found::Nothing,
            },
            Ok(None) => Found::Absent,
            Err(e) => {
                bump(&self.stats.errors);
                log::debug!("redis GET {key}: {e}");
                return (Found::Nothing, floor);
            }
        };
        (found, floor)
    }

    /// Writes `r` under `key` in the background (versioned; errors ignored:
    /// Redis only ever holds what can be regenerated). With `absent` (the
    /// read found the key empty), as a plain `SET NX`: see [`Store::put_new`].
    fn write_back(self: &Rc<Self>, key: String, r: &CachedResponse, vouched_at: u64, absent: bool) {
        let ttl = r.validity.next_update.saturating_sub(unix_now());
        if ttl == 0 {
            return;
        }
        let value = encode_response(r, vouched_at);
        let me = self.clone();
        glommio::spawn_local(async move {
            let res = if absent {
                me.store.put_new(key, value, ttl).await.map(i64::from)
            } else {
                me.store.write_versioned(key, value, ttl).await
            };
            match res {
                Ok(0) => bump(&me.stats.refused_writes),
                Ok(_) => {}
                Err(e) => {
                    bump(&me.stats.errors);
                    log::debug!("redis write: {e}");
                }
            }
        })
        .detach();
    }
}

/// Whether `e` would be answered `tryLater` (the status source, the signers
/// or the shard's miss bound failed): then a stale but still valid response is
/// the better answer.
fn would_try_later(e: &OcspError) -> bool {
    disposition(&Failure::Ocsp(e.clone())).ocsp == Some(ResponseStatus::TryLater)
}

impl Source for Rc<RedisL2> {
    fn fetch(&self, q: Rc<Query>, at_least: u64) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let (Some(key), [id]) = (me.key(&q), q.ids.as_slice()) else {
                return me.inner.fetch(q, at_least).await;
            };
            let id = *id;
            let (found, known) = me.read(&key, &id, at_least).await;
            let absent = matches!(found, Found::Absent);
            let stale = match found {
                Found::Fresh(r) => {
                    bump(&me.stats.hits);
                    return Ok(Rc::new(r));
                }
                Found::Unvouched(r) => {
                    // Made before this node's trust horizon: the database
                    // says whether it still holds (then it is vouched for
                    // anew in Redis, for every node) or a change superseded
                    // it (then a new response is signed).
                    bump(&me.stats.rechecked);
                    let r = Rc::new(r);
                    // Vouched for as of before the read, not after it.
                    let asked = unix_now();
                    let checked = me.inner.recheck(q.clone(), r.clone()).await?;
                    let vouched = if Rc::ptr_eq(&checked, &r) { asked } else { checked.validity.produced_at };
                    me.write_back(key, &checked, vouched, false);
                    return Ok(checked);
                }
                Found::Stale(r) => Some(r),
                Found::Nothing | Found::Absent => None,
            };
            bump(&me.stats.misses);
            match me.inner.fetch(q, known).await {
                Ok(r) => {
                    me.write_back(key, &r, r.validity.produced_at, absent);
                    Ok(r)
                }
                // Past its refresh point but before nextUpdate: re-signing
                // failed (database down, HSM slow), so serve it rather than
                // tryLater, if it is still valid and no change of the
                // certificate has been seen since it was read (the failed
                // fetch took time).
                Err(e) if would_try_later(&e) => match stale {
                    Some(r) if r.valid_at(unix_now()) && r.revision >= me.fence.floor(&id) => Ok(Rc::new(r)),
                    _ => Err(e),
                },
                Err(e) => Err(e),
            }
        })
    }

    /// An L1 entry past its max age: checked against the database, not
    /// against Redis (the age is the safety net for a change nothing told
    /// this node of, which Redis would not know either). A changed response
    /// is written back.
    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let Some(key) = me.key(&q) else { return me.inner.revalidate(q, prev).await };
            let r = me.inner.revalidate(q, prev.clone()).await?;
            if !Rc::ptr_eq(&r, &prev) {
                me.write_back(key, &r, r.validity.produced_at, false);
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Origin;
    use crate::ocsp::response::Validity;
    use crate::ocsp::RevocationReason;
    use crate::ocsp::{CertStatus, HashAlg, Serial};

    /// A live source that answers at once and counts its calls.
    struct Counting {
        calls: std::cell::Cell<u32>,
        validity: Validity,
    }

    impl Source for Rc<Counting> {
        fn fetch(&self, _q: Rc<Query>, _at_least: u64) -> Answer {
            self.calls.set(self.calls.get() + 1);
            let v = self.validity;
            Box::pin(async move {
                Ok(Rc::new(CachedResponse::new(vec![0x30, 0], v, v.next_update, Origin::Signed)))
            })
        }
    }

    /// The layer over `store`, with a [`Counting`] live source whose answers
    /// are valid for an hour, the test issuers and no floors.
    fn layer(store: Rc<dyn Store>) -> (Rc<RedisL2>, Rc<Counting>, Validity) {
        let now = unix_now();
        let validity = Validity { produced_at: now, this_update: now, next_update: now + 3600 };
        let live = Rc::new(Counting { calls: Default::default(), validity });
        let issuers = crate::ocsp::issuer::test_issuers();
        let fence = Fence::new(Arc::new(crate::source::floors::Floors::new(1000)), &issuers);
        let status: Arc<dyn StatusSource> = Arc::new(crate::status::index_txt::IndexStatus::new());
        let l2 = RedisL2::new(
            store,
            Rc::new(live.clone()),
            issuers,
            status,
            fence,
            "t:".into(),
            Rc::new(StageTimes::default()),
        );
        (Rc::new(l2), live, validity)
    }

    /// A single-CertID query for serial `n` of the first issuer, and its
    /// Redis key.
    fn query(l2: &RedisL2, n: u8) -> (Rc<Query>, String) {
        let id = CertId::new(crate::ocsp::IssuerId(0), HashAlg::Sha1, Serial::from_magnitude(&[n]).unwrap());
        let q = Rc::new(Query { issuer: id.issuer, ids: vec![id], key: vec![n].into() });
        let key = l2.key(&q).unwrap();
        (q, key)
    }

    /// Redis down: every GET and write fails, and every answer is the live
    /// source's, as if Redis held nothing. An error that reached the client
    /// (or a retry loop) would fail this.
    #[test]
    fn a_down_redis_is_a_miss_never_a_failed_request() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let down = Rc::new(store::DownRedis::default());
            let (l2, live, validity) = layer(down.clone());
            for n in 1..=3u8 {
                let (q, _) = query(&l2, n);
                let r = l2.fetch(q, 0).await.expect("answered by the live source");
                assert_eq!(r.validity, validity);
            }
            // Let the background write-backs run (and fail).
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            assert_eq!(live.calls.get(), 3, "every request signed live");
            assert_eq!(down.calls.get(), 6, "a GET and a write-back per request");
            assert_eq!(l2.stats.errors.get(), 6);
            assert_eq!(l2.stats.hits.get(), 0);
        });
    }

    /// A miss on an empty key writes back with `SET NX` (no script, no
    /// forced flush); a miss over a tombstone, whose revision must be
    /// compared, with the versioned write.
    #[test]
    fn a_miss_on_an_empty_key_writes_back_without_the_script() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let mem = Rc::new(store::MemRedis::default());
            let (l2, live, _) = layer(mem.clone());
            let (q, key) = query(&l2, 1);
            l2.fetch(q, 0).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(*mem.log.borrow(), ["GET", "SET NX"]);
            assert!(matches!(decode(&mem.map.borrow()[&key]), Some(Stored::Response(_))));

            let (q, key) = query(&l2, 2);
            mem.map.borrow_mut().insert(key.clone(), encode_tombstone(0));
            mem.log.borrow_mut().clear();
            l2.fetch(q, 0).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(*mem.log.borrow(), ["GET", "EVALSHA"], "over a tombstone: versioned");
            assert!(matches!(decode(&mem.map.borrow()[&key]), Some(Stored::Response(_))));
            assert_eq!(live.calls.get(), 2);
        });
    }

    #[test]
    fn values_round_trip() {
        let mut r = CachedResponse::new(
            vec![0x30, 1, 2],
            Validity { produced_at: 5, this_update: 4, next_update: 9 },
            7,
            Origin::Signed,
        );
        r.statuses =
            vec![CertStatus::Good, CertStatus::Revoked { at: 3, reason: RevocationReason::KeyCompromise }]
                .into();
        r.revision = 42;
        let v = encode_response(&r, 6);
        assert_eq!(&v[..41], b"00000000000000000042S00000000000000000006");
        match decode(&v).unwrap() {
            Stored::Response(d) => {
                assert_eq!(d.der, r.der);
                assert_eq!(d.validity, r.validity);
                assert_eq!(d.refresh_at, 7);
                assert_eq!(d.statuses, r.statuses);
                assert_eq!(d.revision, 42);
                assert_eq!(d.vouched_at, 6);
                assert_eq!(d.etag(), r.etag());
                assert_eq!(d.origin, Origin::Redis, "a decoded copy knows it came from Redis");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&encode_response(&r, 0)[21..41], b"00000000000000000005", "never vouched before signing");
        assert!(matches!(decode(&encode_tombstone(7)), Some(Stored::Tombstone(7))));
        assert!(decode(b"garbage").is_none());
        assert!(decode(&v[..30]).is_none());
        let mut old = v.clone();
        old[20] = b'R';
        assert!(decode(&old).is_none(), "the previous format is a miss, not misread");
    }

    #[test]
    fn a_certificate_s_keys_share_one_cluster_slot() {
        let s = Serial::from_hex("0A1B").unwrap();
        let keys: Vec<String> = keys_of_cert("ocsp:", "my:CA", &s)
            .into_iter()
            .chain([change_key("ocsp:", "my:CA", &s)])
            .collect();
        for k in &keys {
            let tag = &k[k.find('{').unwrap() + 1..k.find('}').unwrap()];
            assert_eq!(tag, "my:CA:0A1B", "{k}");
        }
        let id = CertId::new(crate::ocsp::IssuerId(0), HashAlg::Sha1, s);
        assert_eq!(key_for("ocsp:", "test", &id), "ocsp:r:{test:0A1B}:sha1");
        let id = CertId { params: crate::ocsp::HashParams::Absent, alg: HashAlg::Sha256, ..id };
        assert_eq!(key_for("ocsp:", "test", &id), "ocsp:r:{test:0A1B}:sha256-np");
        assert_eq!(keys.len(), 9, "4 algorithms x 2 parameter encodings, and the change key");
        assert_eq!(change_key("ocsp:", "test", &s), "ocsp:chg:{test:0A1B}");
    }
}
