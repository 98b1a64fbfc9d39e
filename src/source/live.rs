//! The last source: reads the status and has the issuer's key sign a fresh
//! response, just in time.
//!
//! Validity: `thisUpdate = now − backdate`, `nextUpdate = thisUpdate +
//! lifetime`, refreshed after `refresh_fraction` of the lifetime. The status
//! lookup and the signature each have a bound (the status source's own timeout,
//! `signing.timeout_ms`); a full signing queue is an immediate `tryLater`.
//! Each status lookup's time, as the shard sees it (queueing in the lookup
//! pool included), goes into the shard's `db` stage histogram.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use super::{Answer, Query, Source};
use crate::cache::{CachedResponse, Origin};
use crate::clock::unix_now;
use crate::config::ExpiredPolicy;
use crate::error::OcspError;
use crate::issuer::Issuers;
use crate::metrics::{Stage, StageTimes};
use crate::ocsp::response::{self, Validity};
use crate::ocsp::CertId;
use crate::signer::{SignError, SignPool};
use crate::status::{CertStatus, StatusSource};

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
}

impl Live {
    /// Builds the live source; lookups are timed into `stages`.
    pub fn new(
        issuers: Arc<Issuers>,
        status: Arc<dyn StatusSource>,
        pool: SignPool,
        policy: LivePolicy,
        stages: Rc<StageTimes>,
    ) -> Live {
        Live { issuers, status, pool, policy, stages }
    }

    /// Reads every CertID's status (applying the expired policy).
    async fn statuses(&self, q: &Query, now: u64) -> Result<(Vec<(CertId, CertStatus)>, u64), OcspError> {
        let mut answers = Vec::with_capacity(q.ids.len());
        let mut revision = 0;
        for id in &q.ids {
            let asked = Instant::now();
            let rec = self.status.lookup(id.issuer, id.serial).await;
            self.stages.record(Stage::Db, asked.elapsed());
            let rec = rec?.ok_or(OcspError::UnknownSerial)?;
            if rec.not_after < now && self.policy.expired == ExpiredPolicy::Unauthorized {
                return Err(OcspError::Expired);
            }
            revision = revision.max(rec.revision);
            answers.push((*id, rec.status));
        }
        Ok((answers, revision))
    }

    /// Re-checks the statuses behind `prev`: unchanged → `prev` again (no
    /// signature); changed → a fresh response.
    pub async fn revalidate(
        &self,
        q: &Query,
        prev: Rc<CachedResponse>,
    ) -> Result<Rc<CachedResponse>, OcspError> {
        let now = unix_now();
        let (answers, revision) = self.statuses(q, now).await?;
        if answers.len() == prev.statuses.len()
            && answers.iter().zip(prev.statuses.iter()).all(|((_, a), b)| a == b)
        {
            return Ok(prev);
        }
        self.sign(q, answers, revision, now).await.map(Rc::new)
    }

    /// Looks up every CertID, signs one response for all of them.
    pub async fn answer(&self, q: &Query) -> Result<CachedResponse, OcspError> {
        let now = unix_now();
        let (answers, revision) = self.statuses(q, now).await?;
        self.sign(q, answers, revision, now).await
    }

    async fn sign(
        &self,
        q: &Query,
        answers: Vec<(CertId, CertStatus)>,
        revision: u64,
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
        resp.revision = revision;
        Ok(resp)
    }
}

impl Source for Rc<Live> {
    fn fetch(&self, q: Rc<Query>) -> Answer {
        let me = self.clone();
        Box::pin(async move { me.answer(&q).await.map(Rc::new) })
    }

    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move { Live::revalidate(&me, &q, prev).await })
    }
}
