//! Certificate status: the authoritative answer to "is serial S of issuer I
//! good or revoked?", behind the [`StatusSource`] trait.
//!
//! The embedded source is [`index_txt::IndexStatus`], an in-memory table loaded
//! from OpenSSL CA databases; production uses [`mysql::MysqlStatus`]
//! (MariaDB/MySQL, with an optional read replica) behind the same trait.

#[cfg(test)]
pub(crate) mod fake;
pub mod index_txt;
pub mod mysql;

use std::future::Future;
use std::pin::Pin;

pub use crate::ocsp::CertStatus;
use crate::ocsp::{IssuerId, Serial};

/// What the status source knows of one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertRecord {
    /// Current status.
    pub status: CertStatus,
    /// The certificate's notAfter, Unix seconds (drives the expired policy).
    pub not_after: u64,
    /// Incremented by every change of the row (0 for sources without one);
    /// orders cache writes so an older status never overwrites a newer one.
    pub revision: u64,
}

/// Why a status could not be read. Always transient from the client's point of
/// view: it becomes `tryLater`, never a guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The backing store failed or is unreachable.
    #[error("status source unavailable: {0}")]
    Unavailable(String),
    /// The lookup took longer than its timeout.
    #[error("status lookup timed out")]
    Timeout,
    /// Even the primary's row is older than a change this node has already
    /// seen (a database restored or failed over to a copy missing it):
    /// nothing newer can be read now, and the older status is not served.
    #[error("the database's row (revision {found}) is older than a change already seen (revision {need})")]
    Behind {
        /// The revision read.
        found: u64,
        /// The revision the node knows of.
        need: u64,
    },
    /// The row cannot be answered from (revoked without a revocation time).
    #[error("bad status row: {0}")]
    BadRow(String),
}

/// How fresh a lookup's answer must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Need {
    /// The newest revision of the certificate this node has seen (the change
    /// feed's floor, a Redis tombstone, the cached response being replaced;
    /// 0 when none): a source with copies of different ages (a read replica)
    /// answers from one at least that new, or fails with
    /// [`StatusError::Behind`]; it never returns an older row.
    pub at_least: u64,
    /// Read the authoritative copy (the primary) whatever the replica says:
    /// for a re-check that vouches for a shared copy, where no floor may be
    /// left to fence what the replica has not applied yet.
    pub primary: bool,
}

impl Need {
    /// No older than revision `r`.
    pub fn at_least(r: u64) -> Need {
        Need { at_least: r, primary: false }
    }
}

/// A lookup in flight; runs on the calling shard (`!Send` is fine).
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<CertRecord>, StatusError>> + 'a>>;

/// One source-specific series on `/metrics` (defined with the renderer,
/// which imports nothing of the crate).
pub use crate::metrics::StatusGauge;

/// Where statuses come from. `Ok(None)` means "never issued": the responder
/// answers `unauthorized` and never "good" for it.
pub trait StatusSource: Send + Sync + 'static {
    /// Looks one certificate up, no older than `need` says (see [`Need`]).
    fn lookup(&self, issuer: IssuerId, serial: Serial, need: Need) -> LookupFuture<'_>;

    /// What the source holds for a certificate when it can say at once (an
    /// in-memory table): shared-cache copies are checked against it before
    /// they are served. `None` when that would need a query.
    fn peek(&self, issuer: IssuerId, serial: &Serial) -> Option<Option<CertRecord>> {
        let _ = (issuer, serial);
        None
    }

    /// Whether rows carry revisions that the change feed fences (a
    /// database); `false` for a table that is its own only copy.
    fn has_revisions(&self) -> bool {
        false
    }

    /// Source-specific gauges for `/metrics` (`ocsp_origin_status_{name}`).
    fn gauges(&self) -> Vec<StatusGauge> {
        Vec::new()
    }

    /// What kind of source this is (`index_txt`, `mysql`), for metrics.
    fn kind(&self) -> &'static str;

    /// Whether lookups can be answered now. A source that can go away (a
    /// database) says `false` while misses are answered `tryLater` because
    /// of it; the admin listener exports it as `ocsp_origin_status_source_up`.
    fn is_up(&self) -> bool {
        true
    }
}
