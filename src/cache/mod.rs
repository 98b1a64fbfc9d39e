//! Signed responses kept for reuse, and the cache traits they live behind.
//!
//! A [`CachedResponse`] carries the DER body plus the HTTP headers that only
//! depend on it (Content-Length, Last-Modified, Expires, ETag), rendered once
//! at signing time so a cache hit only formats Date and max-age.
//!
//! Its bytes are immutable once built and held behind `Arc`s, so the copies
//! a response has at once (the signing shard's L1, the node's shared fills,
//! another shard's L1 that took it from there) share one body, ETag and
//! header block instead of each holding its own: a clone is a few reference
//! counts, not five allocations and their copies. Cloning happens when a
//! response is shared or taken across shards, never per hit (a hit clones
//! the shard-local `Rc` around it), so the atomic counts cost nothing on the
//! hit path and a popular entry's counts are not bounced between cores.

use std::rc::Rc;
use std::sync::Arc;

use crate::ocsp::response::Validity;
use crate::ocsp::{CertId, HashAlg, HashParams, IssuerId, Serial};

/// The cache key of a list of CertIDs: per CertID, issuer (2 bytes), hash
/// algorithm and its parameters' encoding (1: [`alg_byte`]), serial length
/// (1) and serial. Distinct lists give distinct keys; the same CertIDs from
/// any client give the same key, so responses are shared whatever the
/// request's nonce. (Admission sorts and de-duplicates a list first, so its
/// order and repeats do not make new keys either.)
pub fn key_of(ids: &[CertId]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ids.len() * 24);
    for id in ids {
        k.extend_from_slice(&id.issuer.0.to_be_bytes());
        k.push(alg_byte(id.alg, id.params));
        let s = id.serial.as_bytes();
        k.push(s.len() as u8);
        k.extend_from_slice(s);
    }
    k
}

/// The key byte of a hash algorithm as a client encoded it: the algorithm's
/// index, with the high bit set for absent parameters.
pub fn alg_byte(alg: HashAlg, params: HashParams) -> u8 {
    alg as u8 | if params == HashParams::Absent { 0x80 } else { 0 }
}

/// The certificates a key names (issuer, serial), in order; an undecodable
/// tail is ignored (keys are only ever made by [`key_of`]).
pub fn certs_of_key(key: &[u8]) -> Vec<(IssuerId, Serial)> {
    let mut out = Vec::new();
    let mut rest = key;
    while rest.len() >= 4 {
        let issuer = IssuerId(u16::from_be_bytes([rest[0], rest[1]]));
        let n = rest[3] as usize;
        let Some(serial) = rest.get(4..4 + n).and_then(|b| Serial::from_der_content(b).ok()) else { break };
        out.push((issuer, serial));
        rest = &rest[4 + n..];
    }
    out
}

/// A signed OCSP response ready to send.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// DER `OCSPResponse`.
    pub der: Arc<[u8]>,
    /// Its validity.
    pub validity: Validity,
    /// After this (Unix seconds) the response is stale: still valid and served,
    /// but re-signed in the background.
    pub refresh_at: u64,
    /// Where the `ETag` value lies in `headers` (see [`Self::etag`]): the
    /// header block carries it anyway, so it is not held twice.
    etag_at: u16,
    /// Pre-rendered header lines (each ending in CRLF). Only ever appended
    /// to ([`Self::add_header_line`]): [`Self::etag`] reads it at the offset
    /// recorded when it was rendered.
    pub headers: Arc<str>,
    /// The statuses it asserts, in CertID order: a cached response whose
    /// statuses still match the status source can be served again without
    /// re-signing (see `source::l1`, max-age revalidation).
    pub statuses: Arc<[crate::ocsp::CertStatus]>,
    /// Highest status revision it was signed from (orders shared-cache writes).
    pub revision: u64,
    /// The revision of each CertID's status, in CertID order (fences compare
    /// them with the change feed's floors); empty = all [`Self::revision`].
    pub revisions: Arc<[u64]>,
    /// The last time the database confirmed these statuses were current
    /// (Unix seconds): the signing time, or a later re-check of a Redis copy.
    /// A node that distrusts older copies (`Floors::trust_from`) re-checks a
    /// copy vouched for before then.
    pub vouched_at: u64,
    /// Where this copy was made: a fetched answer reports `MISS` when it was
    /// signed for it and `HIT-L2` when it came out of Redis (`X-Cache-Status`).
    pub origin: Origin,
}

/// Where a [`CachedResponse`] was constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Signed by this process (`source::live`).
    Signed,
    /// Decoded from a Redis value (`source::redis`): signed by some node earlier.
    Redis,
    /// Taken from another shard of this node (`source::l1::node`).
    Node,
}

/// How an answer was obtained, as the `X-Cache-Status` response header tells
/// a load generator or an operator (see `source::l1::Served` for where each
/// is decided).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// `HIT`: a fresh L1 entry.
    Hit,
    /// `STALE`: an L1 entry past its refresh point, served while a re-signature
    /// runs (or while the status source cannot be reached to re-check it).
    Stale,
    /// `REVALIDATED`: an L1 entry past its max age whose statuses were checked
    /// and found unchanged, served again without re-signing.
    Revalidated,
    /// `HIT-L2`: a shared copy, signed earlier by another core of this node
    /// or (from Redis) by any node.
    HitL2,
    /// `MISS`: signed for this request, or for a fetch it joined.
    Miss,
}

impl CacheStatus {
    /// Every value, in the order above.
    pub const ALL: [CacheStatus; 5] = [
        CacheStatus::Hit,
        CacheStatus::Stale,
        CacheStatus::Revalidated,
        CacheStatus::HitL2,
        CacheStatus::Miss,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::HitL2 => "HIT-L2",
            CacheStatus::Miss => "MISS",
        }
    }

    /// Parses a header value (for clients such as the load generator).
    pub fn from_header_value(v: &[u8]) -> Option<CacheStatus> {
        CacheStatus::ALL.into_iter().find(|s| s.as_str().as_bytes() == v.trim_ascii())
    }
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
    /// `origin` is required (not defaulted) so no constructor can mislabel
    /// where its copy came from.
    pub fn new(der: Vec<u8>, validity: Validity, refresh_at: u64, origin: Origin) -> CachedResponse {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        // Rendered by hand: this runs once per signature on the miss path, and
        // the `fmt` machinery (32 `{:02x}` writes, two date formats) was a
        // visible slice of the shard's miss-path profile (flamegraphs/).
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut headers = String::with_capacity(200);
        headers.push_str("Content-Type: application/ocsp-response\r\nContent-Length: ");
        push_decimal(&mut headers, der.len() as u64);
        headers.push_str("\r\nLast-Modified: ");
        push_http_date(&mut headers, validity.this_update);
        headers.push_str("\r\nExpires: ");
        push_http_date(&mut headers, validity.next_update);
        headers.push_str("\r\nETag: ");
        let etag_at = headers.len() as u16;
        headers.push('"');
        for b in digest.as_ref() {
            headers.push(HEX[(b >> 4) as usize] as char);
            headers.push(HEX[(b & 15) as usize] as char);
        }
        headers.push('"');
        headers.push_str("\r\n");
        CachedResponse {
            der: der.into(),
            validity,
            refresh_at,
            etag_at,
            headers: headers.into(),
            // `Arc::default()` of a slice is one shared static, not an
            // allocation each (`Arc::new([])` allocates its counts): most
            // constructors replace both at once.
            statuses: Arc::default(),
            revision: 0,
            revisions: Arc::default(),
            vouched_at: validity.produced_at,
            origin,
        }
    }

    /// Adds a header line (ending in CRLF) to those every 200 and 304 of it
    /// carries: its cache tags.
    pub fn add_header_line(&mut self, line: &str) {
        let mut h = String::with_capacity(self.headers.len() + line.len());
        h.push_str(&self.headers);
        h.push_str(line);
        self.headers = h.into();
    }

    /// `ETag` value, quoted: `"<hex SHA-256 of the body>"`.
    pub fn etag(&self) -> &str {
        let at = usize::from(self.etag_at);
        &self.headers[at..at + ETAG_LEN]
    }

    /// The status revision of CertID `i`.
    pub fn revision_of(&self, i: usize) -> u64 {
        self.revisions.get(i).copied().unwrap_or(self.revision)
    }

    /// Whether it may still be served at `now` (before its nextUpdate).
    pub fn valid_at(&self, now: u64) -> bool {
        now < self.validity.next_update
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

/// Length of a quoted hex SHA-256 ETag.
const ETAG_LEN: usize = 66;

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
    /// Drops every entry that answers for this certificate: its
    /// single-CertID entries (each hash algorithm) and every multi-CertID
    /// entry that names it.
    fn remove_cert(&self, issuer: IssuerId, serial: &Serial);
    /// Drops everything (e.g. when invalidations may have been missed).
    fn clear(&self);
    /// Entries held.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn push_decimal(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|b| *b as char));
}

thread_local! {
    /// The last few (second → IMF-fixdate) renderings: responses signed in the
    /// same second share thisUpdate and nextUpdate.
    static DATES: std::cell::RefCell<[(u64, [u8; 29]); 4]> = const { std::cell::RefCell::new([(u64::MAX, [0; 29]); 4]) };
}

/// Appends the IMF-fixdate of `unix` (29 bytes), memoised per thread.
fn push_http_date(out: &mut String, unix: u64) {
    DATES.with(|d| {
        let mut d = d.borrow_mut();
        let slot = (unix % 4) as usize;
        if d[slot].0 != unix {
            let text = http_date(unix);
            let mut b = [b' '; 29];
            let n = text.len().min(29);
            b[..n].copy_from_slice(&text.as_bytes()[..n]);
            d[slot] = (unix, b);
        }
        out.push_str(std::str::from_utf8(&d[slot].1).unwrap_or(""));
    });
}

/// RFC 7231 IMF-fixdate for Unix seconds.
pub fn http_date(unix: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

#[cfg(test)]
mod render_tests {
    use super::*;

    /// The hand-rendered headers equal what `format!` would produce.
    #[test]
    fn headers_match_the_formatted_reference() {
        for (len, this, next) in [(0usize, 0u64, 1u64), (280, 1_794_996_400, 1_795_342_000), (65_535, 4, 8)] {
            let der = vec![7u8; len];
            let v = Validity { produced_at: this, this_update: this, next_update: next };
            let r = CachedResponse::new(der.clone(), v, this, Origin::Signed);
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
            let etag: String = std::iter::once("\"".to_string())
                .chain(digest.as_ref().iter().map(|b| format!("{b:02x}")))
                .chain(std::iter::once("\"".to_string()))
                .collect();
            let want = format!(
                "Content-Type: application/ocsp-response\r\nContent-Length: {len}\r\nLast-Modified: {}\r\nExpires: {}\r\nETag: {etag}\r\n",
                http_date(this),
                http_date(next)
            );
            assert_eq!(&*r.headers, want);
            assert_eq!(r.etag(), etag);
        }
    }

    /// The ETag is read out of the header block: cache-tag lines added after
    /// it leave it as it was, and a clone shares every byte.
    #[test]
    fn the_etag_survives_added_lines_and_clones_share_the_bytes() {
        let v = Validity { produced_at: 10, this_update: 10, next_update: 20 };
        let mut r = CachedResponse::new(vec![1, 2, 3], v, 15, Origin::Signed);
        let etag = r.etag().to_string();
        assert_eq!(etag.len(), ETAG_LEN);
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        r.add_header_line("xkey: a b c\r\n");
        assert_eq!(r.etag(), etag);
        assert!(r.headers.ends_with("xkey: a b c\r\n"));
        let c = r.clone();
        assert!(Arc::ptr_eq(&c.der, &r.der) && Arc::ptr_eq(&c.headers, &r.headers));
        assert_eq!(c.etag(), etag);
    }
}
