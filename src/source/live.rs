//! The last source: reads the status and has the issuer's key sign a fresh
//! response, just in time.
//!
//! Validity: `thisUpdate = now − backdate`, `nextUpdate = thisUpdate +
//! lifetime`, refreshed after `refresh_fraction` of the lifetime. The status
//! lookup and the signature each have a bound (the status source's own timeout,
//! `signing.timeout_ms`); a full signing queue is an immediate `tryLater`.
//! Each status lookup's time, as the shard sees it (queueing in the lookup
//! pool included), goes into the shard's `db` stage histogram.
//!
//! **Fences.** Nothing is signed from a status older than the newest revision
//! this node knows for the certificate: the change feed's floor, what a layer
//! above saw (a Redis tombstone or value: `at_least`), and the response being
//! replaced. The status source reads a copy at least that new (a lagging
//! replica's row is read again from the primary) or fails (`tryLater`); if a
//! change arrives while the lookups run, they are made once more before
//! signing.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all as future_join;
use futures_lite::future;

use super::{Answer, Query, Source};
use crate::cache::{CachedResponse, Origin};
use crate::clock::unix_now;
use crate::config::ExpiredPolicy;
use crate::error::OcspError;
use crate::metrics::{Stage, StageTimes};
use crate::ocsp::issuer::Issuers;
use crate::ocsp::response::{self, Validity};
use crate::ocsp::CertId;
use crate::ocsp::CertStatus;
use crate::signer::{SignError, SignPool};
use crate::source::floors::Fence;
use crate::status::{Need, StatusError, StatusSource};

/// Validity and policy knobs of live signing.
#[derive(Clone, Debug)]
pub struct LivePolicy {
    /// nextUpdate − thisUpdate, seconds.
    pub lifetime_secs: u64,
    /// Fraction of the lifetime after which a response is re-signed.
    pub refresh_fraction: f64,
    /// thisUpdate backdating, seconds.
    pub backdate_secs: u64,
    /// What to do about expired certificates.
    pub expired: ExpiredPolicy,
    /// Longest wait for a signature.
    pub sign_timeout: Duration,
    /// Fresh multi-CertID signatures per second (burst as many).
    pub multi_signs_per_sec: u32,
}

/// A token bucket: `rate` a second, at most `rate` saved up.
struct Budget {
    rate: f64,
    tokens: Cell<f64>,
    last: Cell<Instant>,
}

impl Budget {
    fn new(rate: u32) -> Budget {
        let rate = f64::from(rate.max(1));
        Budget { rate, tokens: Cell::new(rate), last: Cell::new(Instant::now()) }
    }

    fn take(&self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.last.get()).as_secs_f64() * self.rate;
        self.last.set(now);
        let t = (self.tokens.get() + earned).min(self.rate);
        let ok = t >= 1.0;
        self.tokens.set(if ok { t - 1.0 } else { t });
        ok
    }
}

/// Status + signing. Shared by reference within a shard.
pub struct Live {
    issuers: Arc<Issuers>,
    status: Arc<dyn StatusSource>,
    pool: SignPool,
    policy: LivePolicy,
    /// The shard's stage histograms (`db`).
    stages: Rc<StageTimes>,
    /// The node's revision floors.
    fence: Fence,
    /// Fresh multi-CertID signatures left this second: such lists are
    /// cached under their exact (canonical) list, so a client choosing
    /// lists of public serials could otherwise ask for any number.
    multi: Budget,
    /// Multi-CertID misses refused for want of budget (`tryLater`).
    pub multi_refused: Cell<u64>,
}

impl Live {
    /// Builds the live source; lookups are timed into `stages` and held to
    /// `fence`.
    pub fn new(
        issuers: Arc<Issuers>,
        status: Arc<dyn StatusSource>,
        pool: SignPool,
        policy: LivePolicy,
        stages: Rc<StageTimes>,
        fence: Fence,
    ) -> Live {
        let multi = Budget::new(policy.multi_signs_per_sec);
        Live { issuers, status, pool, policy, stages, fence, multi, multi_refused: Cell::new(0) }
    }

    /// Reads every CertID's status (applying the expired policy), each no
    /// older than its fence (see the module docs); with the revision of each.
    async fn statuses(
        &self,
        q: &Query,
        now: u64,
        at_least: u64,
        prev: Option<&CachedResponse>,
        primary: bool,
    ) -> Result<(Vec<(CertId, CertStatus)>, Vec<u64>), OcspError> {
        // A source without revisions (an in-memory table) is the one copy:
        // there is nothing older to fence off.
        let fenced = self.status.has_revisions();
        for _ in 0..2 {
            let needs: Vec<u64> = q
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    if !fenced {
                        return 0;
                    }
                    let above = if q.ids.len() == 1 { at_least } else { 0 };
                    self.fence.floor(id).max(above).max(prev.map_or(0, |p| p.revision_of(i)))
                })
                .collect();
            // All of a request's lookups at once: they travel, and are
            // answered, in one batch.
            let recs = future_join(q.ids.iter().zip(&needs).map(|(id, &need)| async move {
                let asked = Instant::now();
                let rec = self.status.lookup(id.issuer, id.serial, Need { at_least: need, primary }).await;
                (rec, asked.elapsed())
            }))
            .await;
            for (_, took) in &recs {
                self.stages.record(Stage::Db, *took);
            }
            let mut answers = Vec::with_capacity(q.ids.len());
            let mut revisions = Vec::with_capacity(q.ids.len());
            for ((id, (rec, _)), need) in q.ids.iter().zip(recs).zip(needs) {
                let rec = rec?.ok_or(OcspError::UnknownSerial)?;
                if rec.revision < need {
                    return Err(StatusError::Behind { found: rec.revision, need }.into());
                }
                if rec.not_after < now && self.policy.expired == ExpiredPolicy::Unauthorized {
                    return Err(OcspError::Expired);
                }
                revisions.push(rec.revision);
                answers.push((*id, not_in_the_future(rec.status, id, now)));
            }
            // A change the feed brought while the lookups ran: read again
            // rather than sign what is already older.
            if !fenced || q.ids.iter().zip(&revisions).all(|(id, r)| *r >= self.fence.floor(id)) {
                return Ok((answers, revisions));
            }
        }
        Err(OcspError::NotCurrent)
    }

    /// Re-checks the statuses behind `prev`: unchanged (same revisions and
    /// statuses) → `prev` again (no signature); changed → a fresh response.
    /// With `primary`, the statuses are read from the primary (a re-check
    /// that vouches for a shared copy).
    pub async fn revalidate(
        &self,
        q: &Query,
        prev: Rc<CachedResponse>,
        primary: bool,
    ) -> Result<Rc<CachedResponse>, OcspError> {
        let now = unix_now();
        let (answers, revisions) = self.statuses(q, now, 0, Some(&prev), primary).await?;
        let same = answers.len() == prev.statuses.len()
            && answers.iter().zip(prev.statuses.iter()).all(|((_, a), b)| a == b)
            && revisions.iter().enumerate().all(|(i, r)| *r == prev.revision_of(i));
        if same {
            return Ok(prev);
        }
        self.spend(q)?;
        self.sign(q, answers, revisions, now).await.map(Rc::new)
    }

    /// Looks up every CertID (no older than `at_least` for a single one),
    /// signs one response for all of them.
    pub async fn answer(&self, q: &Query, at_least: u64) -> Result<CachedResponse, OcspError> {
        let now = unix_now();
        // Before the lookups: a refused list costs no database read either.
        self.spend(q)?;
        let (answers, revisions) = self.statuses(q, now, at_least, None, false).await?;
        self.sign(q, answers, revisions, now).await
    }

    /// A multi-CertID signature takes from the shard's budget; past it,
    /// `tryLater` (a single-CertID one is never refused here).
    fn spend(&self, q: &Query) -> Result<(), OcspError> {
        if q.ids.len() > 1 && !self.multi.take() {
            self.multi_refused.set(self.multi_refused.get() + 1);
            return Err(OcspError::Overloaded);
        }
        Ok(())
    }

    async fn sign(
        &self,
        q: &Query,
        answers: Vec<(CertId, CertStatus)>,
        revisions: Vec<u64>,
        now: u64,
    ) -> Result<CachedResponse, OcspError> {
        let p = &self.policy;
        // Never before a revocation it reports (a revocation within the
        // backdate window): the status was not known true before it.
        let revoked_at = answers
            .iter()
            .filter_map(|(_, s)| match s {
                CertStatus::Revoked { at, .. } => Some(*at),
                CertStatus::Good => None,
            })
            .max()
            .unwrap_or(0);
        let this_update = now.saturating_sub(p.backdate_secs).max(revoked_at.min(now));
        let validity = Validity { produced_at: now, this_update, next_update: this_update + p.lifetime_secs };
        let refresh_at = this_update + (p.lifetime_secs as f64 * p.refresh_fraction) as u64;
        let issuer = self.issuers.get(q.issuer);
        let tbs = response::response_data(issuer, &answers, validity)?;
        let identity = &issuer.responder;
        let rx = self.pool.submit(identity.signer.clone(), tbs.clone())?;
        let signed = future::or(async { Some(rx.await) }, async {
            glommio::timer::sleep(p.sign_timeout).await;
            None
        })
        .await;
        let signature = match signed {
            None => return Err(SignError::Timeout.into()),
            Some(Err(_canceled)) => return Err(SignError::Stopped.into()),
            Some(Ok(r)) => r?,
        };
        let der = response::assemble(&tbs, identity, &signature);
        let mut resp = CachedResponse::new(der, validity, refresh_at, Origin::Signed);
        if let Some(line) = issuer.tag_line(answers.iter().map(|(id, _)| id)) {
            resp.add_header_line(&line);
        }
        resp.statuses = answers.iter().map(|(_, s)| *s).collect();
        resp.revision = revisions.iter().copied().max().unwrap_or(0);
        resp.revisions = revisions.into();
        Ok(resp)
    }
}

/// A revocation time later than now (a writer's clock or typo) is reported
/// as now: a response never states a revocation in the future, and the
/// certificate is revoked already by the database's word.
fn not_in_the_future(status: CertStatus, id: &CertId, now: u64) -> CertStatus {
    match status {
        CertStatus::Revoked { at, reason } if at > now => {
            log::warn!(
                "certificate {} has a revocation time {at} in the future; answering revoked as of now",
                id.serial
            );
            CertStatus::Revoked { at: now, reason }
        }
        other => other,
    }
}

impl Source for Rc<Live> {
    fn fetch(&self, q: Rc<Query>, at_least: u64) -> Answer {
        let me = self.clone();
        Box::pin(async move { me.answer(&q, at_least).await.map(Rc::new) })
    }

    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move { Live::revalidate(&me, &q, prev, false).await })
    }

    fn recheck(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move { Live::revalidate(&me, &q, prev, true).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::{HashAlg, IssuerId, RevocationReason, Serial};
    use crate::signer::SignPoolConfig;
    use crate::source::floors::{Floors, Raise};
    use crate::status::fake::LaggingReplica;
    use crate::status::CertRecord;

    /// A live source over `status` with one signer thread (which ends with
    /// the pool), a 1-hour lifetime and `backdate` seconds of backdating.
    fn test_live(
        status: Arc<LaggingReplica>,
        floors: Arc<Floors>,
        issuers: Arc<Issuers>,
        backdate: u64,
    ) -> Live {
        let (pool, _threads) =
            SignPool::start(&SignPoolConfig { threads: 1, queue_depth: 16, max_queue_wait_us: 0, batch: 1 })
                .unwrap();
        let policy = LivePolicy {
            lifetime_secs: 3600,
            refresh_fraction: 0.5,
            backdate_secs: backdate,
            expired: ExpiredPolicy::Serve,
            sign_timeout: Duration::from_secs(5),
            multi_signs_per_sec: 100,
        };
        let fence = Fence::new(floors, &issuers);
        Live::new(issuers, status, pool, policy, Rc::new(StageTimes::default()), fence)
    }

    /// The multi-CertID budget: a burst of `rate`, then about `rate` a
    /// second.
    #[test]
    fn the_multi_cert_id_budget_refills_at_its_rate() {
        let b = Budget::new(3);
        assert!((0..3).all(|_| b.take()), "a full burst");
        assert!(!b.take(), "then nothing");
        std::thread::sleep(Duration::from_millis(400));
        assert!(b.take(), "one more after a third of a second");
        assert!(!b.take());
    }

    /// The change feed has brought revision 2 (a revocation) of a
    /// certificate; the replica still has revision 1 (good) and hands it out
    /// whatever it is asked. Live must not sign that row: it answers
    /// `Behind` (`tryLater`), and a re-check from the primary signs the
    /// revocation. Without the floor check this signs "good".
    #[test]
    fn a_lagging_replica_never_gets_a_stale_good_signed() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let serial = Serial::from_magnitude(&[0x42]).unwrap();
            let issuer = IssuerId(0);
            let status = Arc::new(LaggingReplica::default());
            let revoked = CertStatus::Revoked { at: 1_700_000_000, reason: RevocationReason::KeyCompromise };
            status.replica.lock().unwrap().insert(
                (issuer, serial),
                CertRecord { status: CertStatus::Good, not_after: u64::MAX, revision: 1 },
            );
            status
                .primary
                .lock()
                .unwrap()
                .insert((issuer, serial), CertRecord { status: revoked, not_after: u64::MAX, revision: 2 });
            let issuers = crate::ocsp::issuer::test_issuers();
            let floors = Arc::new(Floors::new(1000));
            let now = unix_now();
            floors.raise(
                floors.issuer("t"),
                serial,
                Raise { revision: 2, seq: 2, at: now, until: now + 600 },
            );
            let live = test_live(status.clone(), floors, issuers, 60);
            let id = CertId::new(issuer, HashAlg::Sha256, serial);
            let q = Query { issuer, ids: vec![id], key: vec![1].into() };
            match live.answer(&q, 0).await {
                Err(OcspError::Status(StatusError::Behind { found: 1, need: 2 })) => {}
                other => panic!("signed from a row older than the floor: {:?}", other.map(|r| r.statuses)),
            }
            // The re-check that vouches for a shared copy reads the primary.
            let prev = Rc::new(CachedResponse::new(
                vec![0x30, 0],
                Validity { produced_at: now, this_update: now, next_update: now + 60 },
                now + 30,
                Origin::Signed,
            ));
            let fresh = live.revalidate(&q, prev, true).await.expect("the primary answers");
            assert_eq!(&*fresh.statuses, &[revoked]);
            assert_eq!(fresh.revision, 2);
            assert_eq!(*status.primary_reads.lock().unwrap(), 1);
        });
    }

    /// A revocation within the backdate window: thisUpdate is not before it
    /// (the status was not known true earlier); a revocation time in the
    /// future (a writer's clock) is stated as now, never later.
    #[test]
    fn a_revoked_answer_never_starts_before_its_revocation_or_states_a_future_one() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let now = unix_now();
            let status = Arc::new(LaggingReplica::default());
            let (recent, future) =
                (Serial::from_magnitude(&[1]).unwrap(), Serial::from_magnitude(&[2]).unwrap());
            for (serial, at) in [(recent, now - 10), (future, now + 86_400)] {
                let revoked = CertStatus::Revoked { at, reason: RevocationReason::KeyCompromise };
                status.replica.lock().unwrap().insert(
                    (IssuerId(0), serial),
                    CertRecord { status: revoked, not_after: u64::MAX, revision: 1 },
                );
            }
            let live = test_live(status, Arc::new(Floors::new(10)), crate::ocsp::issuer::test_issuers(), 600);
            let ask = |serial| {
                let id = CertId::new(IssuerId(0), HashAlg::Sha1, serial);
                Query { issuer: IssuerId(0), ids: vec![id], key: crate::cache::key_of(&[id]).into() }
            };
            let r = live.answer(&ask(recent), 0).await.unwrap();
            assert_eq!(
                r.validity.this_update,
                now - 10,
                "thisUpdate moved up to the revocation, not 600 s before"
            );
            assert_eq!(r.validity.next_update, now - 10 + 3600);
            let r = live.answer(&ask(future), 0).await.unwrap();
            match r.statuses[0] {
                CertStatus::Revoked { at, .. } => {
                    assert!((now..now + 5).contains(&at), "stated as now: {at}")
                }
                CertStatus::Good => panic!("revoked is revoked"),
            }
            assert!(r.validity.this_update <= unix_now());
        });
    }
}
