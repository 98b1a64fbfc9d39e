//! Signed responses kept for reuse, and the cache traits they live behind.
//!
//! A [`CachedResponse`] carries the DER body plus the HTTP headers that only
//! depend on it (Content-Length, Last-Modified, Expires, ETag), rendered once
//! at signing time so a cache hit only formats Date and max-age.

pub mod l1;

use std::fmt::Write;
use std::rc::Rc;

use crate::ocsp::response::Validity;

/// A signed OCSP response ready to send.
#[derive(Debug)]
pub struct CachedResponse {
    /// DER `OCSPResponse`.
    pub der: Box<[u8]>,
    /// Its validity.
    pub validity: Validity,
    /// After this (Unix seconds) the response is stale: still valid and served,
    /// but re-signed in the background.
    pub refresh_at: u64,
    /// `ETag` value, quoted: `"<hex SHA-256 of the body>"`.
    pub etag: Box<str>,
    /// Pre-rendered header lines (each ending in CRLF).
    pub headers: Box<str>,
    /// The statuses it asserts, in CertID order: a cached response whose
    /// statuses still match the status source can be served again without
    /// re-signing (see `source::cached`, max-age revalidation).
    pub statuses: Box<[crate::status::CertStatus]>,
    /// Highest status revision it was signed from (orders shared-cache writes).
    pub revision: u64,
}

/// How usable a cached response is at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and re-sign in the background.
    Stale,
    /// Held in L1 longer than its max age: valid, but must be checked against
    /// the status source before it is served again (bounds how long a status
    /// change can go unseen when no invalidation channel exists).
    Unverified,
    /// Past nextUpdate: must not be served.
    Expired,
}

impl CachedResponse {
    /// Wraps a signed body, computing the ETag and rendering static headers.
    pub fn new(der: Vec<u8>, validity: Validity, refresh_at: u64) -> CachedResponse {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let mut etag = String::with_capacity(66);
        etag.push('"');
        for b in digest.as_ref() {
            let _ = write!(etag, "{b:02x}");
        }
        etag.push('"');
        let headers = format!(
            "Content-Type: application/ocsp-response\r\nContent-Length: {}\r\nLast-Modified: {}\r\nExpires: {}\r\nETag: {}\r\n",
            der.len(),
            http_date(validity.this_update),
            http_date(validity.next_update),
            etag
        );
        CachedResponse {
            der: der.into(),
            validity,
            refresh_at,
            etag: etag.into(),
            headers: headers.into(),
            statuses: Box::new([]),
            revision: 0,
        }
    }

    /// Freshness at `now` (Unix seconds).
    pub fn freshness(&self, now: u64) -> Freshness {
        if now >= self.validity.next_update {
            Freshness::Expired
        } else if now >= self.refresh_at {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }
}

/// A synchronous, shard-local response cache (the L1). Implementations are
/// `!Sync` on purpose: one per shard, no locks. Remote caches (Redis) are
/// asynchronous and sit behind the `Source` trait instead.
pub trait ResponseCache {
    /// Looks `key` up at `now`; an expired entry is a miss.
    fn get(&self, key: &[u8], now: u64) -> Option<(Rc<CachedResponse>, Freshness)>;
    /// Stores (or replaces) the response for `key`.
    fn put(&self, key: &[u8], resp: Rc<CachedResponse>);
    /// Drops `key`.
    fn remove(&self, key: &[u8]);
    /// Drops everything (e.g. when invalidations may have been missed).
    fn clear(&self);
    /// Entries held.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 7231 IMF-fixdate for Unix seconds.
pub fn http_date(unix: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}
