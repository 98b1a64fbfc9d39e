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

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        Live { issuers, status, pool, policy, stages, fence }
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
            let mut answers = Vec::with_capacity(q.ids.len());
            let mut revisions = Vec::with_capacity(q.ids.len());
            for (i, id) in q.ids.iter().enumerate() {
                let need = if fenced {
                    let above = if q.ids.len() == 1 { at_least } else { 0 };
                    self.fence.floor(id).max(above).max(prev.map_or(0, |p| p.revision_of(i)))
                } else {
                    0
                };
                let asked = Instant::now();
                let rec = self.status.lookup(id.issuer, id.serial, Need { at_least: need, primary }).await;
                self.stages.record(Stage::Db, asked.elapsed());
                let rec = rec?.ok_or(OcspError::UnknownSerial)?;
                if rec.revision < need {
                    return Err(StatusError::Behind { found: rec.revision, need }.into());
                }
                if rec.not_after < now && self.policy.expired == ExpiredPolicy::Unauthorized {
                    return Err(OcspError::Expired);
                }
                revisions.push(rec.revision);
                answers.push((*id, rec.status));
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
        self.sign(q, answers, revisions, now).await.map(Rc::new)
    }

    /// Looks up every CertID (no older than `at_least` for a single one),
    /// signs one response for all of them.
    pub async fn answer(&self, q: &Query, at_least: u64) -> Result<CachedResponse, OcspError> {
        let now = unix_now();
        let (answers, revisions) = self.statuses(q, now, at_least, None, false).await?;
        self.sign(q, answers, revisions, now).await
    }

    async fn sign(
        &self,
        q: &Query,
        answers: Vec<(CertId, CertStatus)>,
        revisions: Vec<u64>,
        now: u64,
    ) -> Result<CachedResponse, OcspError> {
        let p = &self.policy;
        let this_update = now.saturating_sub(p.backdate_secs);
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
        resp.statuses = answers.iter().map(|(_, s)| *s).collect();
        resp.revision = revisions.iter().copied().max().unwrap_or(0);
        resp.revisions = revisions.into();
        Ok(resp)
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
            let (pool, _threads) = SignPool::start(&SignPoolConfig {
                threads: 1,
                queue_depth: 16,
                max_queue_wait_us: 0,
                batch: 1,
            })
            .unwrap();
            let policy = LivePolicy {
                lifetime_secs: 3600,
                refresh_fraction: 0.5,
                backdate_secs: 60,
                expired: ExpiredPolicy::Serve,
                sign_timeout: Duration::from_secs(5),
            };
            let fence = Fence::new(floors, &issuers);
            let status_source: Arc<dyn StatusSource> = status.clone();
            let live = Live::new(issuers, status_source, pool, policy, Rc::new(StageTimes::default()), fence);
            let id = CertId { issuer, alg: HashAlg::Sha256, serial };
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
}
