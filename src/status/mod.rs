//! Certificate status: the authoritative answer to "is serial S of issuer I
//! good or revoked?", behind the [`StatusSource`] trait.
//!
//! The embedded source is [`index_txt::IndexStatus`], an in-memory table loaded
//! from OpenSSL CA databases. A production deployment puts MariaDB/MySQL behind
//! the same trait.

pub mod index_txt;
pub mod mysql;

use std::future::Future;
use std::pin::Pin;

use crate::ocsp::{IssuerId, RevocationReason, Serial};

/// Status of one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked at `at` (Unix seconds) for `reason`.
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
        /// RFC 5280 reason; `Unspecified` is left out of responses.
        reason: RevocationReason,
    },
}

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
}

/// A lookup in flight; runs on the calling shard (`!Send` is fine).
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<CertRecord>, StatusError>> + 'a>>;

/// Where statuses come from. `Ok(None)` means "never issued": the responder
/// answers `unauthorized` and never "good" for it.
pub trait StatusSource: Send + Sync + 'static {
    /// Looks one certificate up.
    fn lookup(&self, issuer: IssuerId, serial: Serial) -> LookupFuture<'_>;

    /// What kind of source this is (`index_txt`, `mysql`), for metrics.
    fn kind(&self) -> &'static str;

    /// Whether lookups can be answered now. A source that can go away (a
    /// database) says `false` while misses are answered `tryLater` because
    /// of it; the admin listener exports it as `ocsp_origin_status_source_up`.
    fn is_up(&self) -> bool {
        true
    }
}
