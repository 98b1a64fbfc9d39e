//! Writing HTTP/1.1 responses into the connection's output buffer.
//!
//! Successful OCSP answers carry the RFC 5019 §6 caching headers:
//! `Last-Modified` (thisUpdate), `Expires` (nextUpdate), `ETag` (SHA-256 of
//! the body) and `Cache-Control: max-age=<seconds to the refresh point>,
//! public, no-transform, must-revalidate`. Failures carry `max-age=0,
//! no-cache`.
//!
//! `max-age` runs to the response's refresh point (where this origin would
//! sign it anew), not to nextUpdate: a CDN's copy is fetched again by then,
//! so what relying parties get from it is updated when the Baseline
//! Requirements want it updated (RFC 5019 §6.2 allows any value before
//! nextUpdate). Past its refresh point a response still served here (while
//! its re-signature runs) carries `max-age=0`.
//!
//! 200 and 304 answers may also carry `X-Cache-Status` (`HIT`, `STALE`,
//! `REVALIDATED`, `HIT-L2`, `MISS`; see [`CacheStatus`]) so load generators and
//! operators can tell how each answer was made; `response.cache_status_header =
//! false` leaves it out. It is one static line: nothing is formatted for it.

use std::io::Write;

use crate::cache::{CacheStatus, CachedResponse};
use crate::error::Disposition;
use crate::ocsp::response::error_body;

/// The `Connection` header to send, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHeader {
    /// HTTP/1.1 keeping the connection: nothing to say.
    Default,
    /// HTTP/1.0 client that asked for keep-alive.
    KeepAlive,
    /// The connection closes after this response.
    Close,
}

impl ConnHeader {
    fn line(self) -> &'static [u8] {
        match self {
            ConnHeader::Default => b"",
            ConnHeader::KeepAlive => b"Connection: keep-alive\r\n",
            ConnHeader::Close => b"Connection: close\r\n",
        }
    }
}

/// The `X-Cache-Status` header line, if one is sent.
fn cache_status_line(s: Option<CacheStatus>) -> &'static [u8] {
    match s {
        None => b"",
        Some(CacheStatus::Hit) => b"X-Cache-Status: HIT\r\n",
        Some(CacheStatus::Stale) => b"X-Cache-Status: STALE\r\n",
        Some(CacheStatus::Revalidated) => b"X-Cache-Status: REVALIDATED\r\n",
        Some(CacheStatus::HitL2) => b"X-Cache-Status: HIT-L2\r\n",
        Some(CacheStatus::Miss) => b"X-Cache-Status: MISS\r\n",
    }
}

/// The current `Date` header value, re-rendered once per second per shard.
pub struct DateCache {
    sec: u64,
    text: String,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache { sec: u64::MAX, text: String::new() }
    }
}

impl DateCache {
    /// IMF-fixdate for `now`.
    pub fn get(&mut self, now: u64) -> &str {
        if now != self.sec {
            self.sec = now;
            self.text = crate::cache::http_date(now);
        }
        &self.text
    }
}

/// A signed OCSP response (200), or its head only for HEAD requests;
/// `cache_status` is the `X-Cache-Status` to send, if any.
pub fn write_ocsp(
    out: &mut Vec<u8>,
    r: &CachedResponse,
    now: u64,
    date: &str,
    conn: ConnHeader,
    body: bool,
    cache_status: Option<CacheStatus>,
) {
    let max_age = max_age(r, now);
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nServer: ocsp-origin\r\nDate: {date}\r\n{}Cache-Control: max-age={max_age}, public, no-transform, must-revalidate\r\n",
        r.headers
    );
    out.extend_from_slice(cache_status_line(cache_status));
    out.extend_from_slice(conn.line());
    out.extend_from_slice(b"\r\n");
    if body {
        out.extend_from_slice(&r.der);
    }
}

/// 304 for a conditional GET whose validator matches; `cache_status` as for
/// [`write_ocsp`].
pub fn write_not_modified(
    out: &mut Vec<u8>,
    r: &CachedResponse,
    now: u64,
    date: &str,
    conn: ConnHeader,
    cache_status: Option<CacheStatus>,
) {
    let max_age = max_age(r, now);
    let _ = write!(
        out,
        "HTTP/1.1 304 Not Modified\r\nServer: ocsp-origin\r\nDate: {date}\r\nETag: {}\r\nLast-Modified: {}\r\nExpires: {}\r\nCache-Control: max-age={max_age}, public, no-transform, must-revalidate\r\n",
        r.etag(),
        crate::cache::http_date(r.validity.this_update),
        crate::cache::http_date(r.validity.next_update),
    );
    out.extend_from_slice(cache_status_line(cache_status));
    out.extend_from_slice(conn.line());
    out.extend_from_slice(b"\r\n");
}

/// Seconds a shared cache may keep `r`: to its refresh point.
fn max_age(r: &CachedResponse, now: u64) -> u64 {
    r.refresh_at.min(r.validity.next_update).saturating_sub(now)
}

/// A failure: an unsigned OCSP error body with HTTP 200, or a plain HTTP error.
pub fn write_failure(out: &mut Vec<u8>, d: &Disposition, date: &str, conn: ConnHeader, body: bool) {
    let conn = if d.close { ConnHeader::Close } else { conn };
    let (code, reason) = d.http;
    let ocsp_body;
    let (ctype, payload): (&str, &[u8]) = match d.ocsp {
        Some(s) => {
            ocsp_body = error_body(s);
            ("application/ocsp-response", &ocsp_body)
        }
        None => ("text/plain", reason.as_bytes()),
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nServer: ocsp-origin\r\nDate: {date}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: max-age=0, no-cache\r\n",
        payload.len()
    );
    if code == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD, POST\r\n");
    }
    out.extend_from_slice(conn.line());
    out.extend_from_slice(b"\r\n");
    if body {
        out.extend_from_slice(payload);
    }
}

/// The health answer for `GET /`: 200 `OK`, or 503 `draining` while the
/// server shuts down, so a load balancer probing over a kept-alive connection
/// stops sending before the connection closes.
pub fn write_health(out: &mut Vec<u8>, date: &str, conn: ConnHeader, body: bool, draining: bool) {
    let (status, text) =
        if draining { ("503 Service Unavailable", "draining\n") } else { ("200 OK", "OK\n") };
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nServer: ocsp-origin\r\nDate: {date}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n",
        text.len()
    );
    out.extend_from_slice(conn.line());
    out.extend_from_slice(b"\r\n");
    if body {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Whether a conditional GET may be answered 304: only when the client
/// provably holds `r`, the response this node would send now: one of its
/// `If-None-Match` entries is exactly `r`'s strong ETag (the SHA-256 of the
/// body, so a match means those very bytes).
///
/// Dates never make a 304: thisUpdate is backdated and has a one-second
/// grain, so a client's `If-Modified-Since` from a "good" response can be at
/// or after the thisUpdate of the "revoked" one signed since (on another
/// node, or in the same second), and a 304 would hide the revocation.
/// `If-Modified-Since` is ignored (a 200 is always a valid answer to a
/// conditional request), and so are `*` (it says nothing of which response
/// the client holds) and weak tags (`no-transform` leaves no weakened copy
/// to match).
pub fn not_modified(r: &CachedResponse, if_none_match: Option<&[u8]>) -> bool {
    if_none_match.is_some_and(|inm| inm.split(|b| *b == b',').any(|t| t.trim_ascii() == r.etag().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::response::Validity;

    fn resp() -> CachedResponse {
        CachedResponse::new(
            vec![9; 10],
            Validity { produced_at: 1000, this_update: 1000, next_update: 5000 },
            3000,
            crate::cache::Origin::Signed,
        )
    }

    #[test]
    fn ok_headers() {
        let mut out = Vec::new();
        write_ocsp(&mut out, &resp(), 2000, "D", ConnHeader::Default, true, Some(CacheStatus::Hit));
        let s = String::from_utf8_lossy(&out);
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        // To the refresh point (3000), not to nextUpdate (5000).
        assert!(s.contains("Cache-Control: max-age=1000, public, no-transform, must-revalidate\r\n"));
        assert!(s.contains("Content-Length: 10\r\n"));
        assert!(s.contains("\r\nX-Cache-Status: HIT\r\n"));
        assert!(s.ends_with("\r\n\r\n\t\t\t\t\t\t\t\t\t\t"));
        out.clear();
        write_ocsp(&mut out, &resp(), 2000, "D", ConnHeader::Default, true, None);
        assert!(!String::from_utf8_lossy(&out).contains("X-Cache-Status"), "turned off");
    }

    #[test]
    fn cache_status_lines_match_their_values() {
        for s in CacheStatus::ALL {
            let line = std::str::from_utf8(cache_status_line(Some(s))).unwrap();
            assert_eq!(line, format!("X-Cache-Status: {}\r\n", s.as_str()));
            assert_eq!(CacheStatus::from_header_value(s.as_str().as_bytes()), Some(s));
        }
        assert_eq!(CacheStatus::from_header_value(b"hit"), None);
        let mut out = Vec::new();
        write_not_modified(&mut out, &resp(), 2000, "D", ConnHeader::Close, Some(CacheStatus::Miss));
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("\r\nX-Cache-Status: MISS\r\nConnection: close\r\n\r\n"), "{s}");
    }

    #[test]
    fn conditionals() {
        let r = resp();
        assert!(not_modified(&r, Some(r.etag().as_bytes())));
        let listed: Vec<u8> = b"\"x\", ".iter().chain(r.etag().as_bytes()).copied().collect();
        assert!(not_modified(&r, Some(&listed)), "one of a list");
        assert!(!not_modified(&r, Some(b"\"other\"")));
        assert!(!not_modified(&r, None));
    }

    /// `*`, a weakened tag and dates used to give 304s: none of them proves
    /// the client holds this response, and a date from a "good" response can
    /// be at or after the (backdated, one-second) thisUpdate of the "revoked"
    /// one signed since, so the 304 hid a revocation.
    #[test]
    fn regression_only_the_strong_etag_of_this_response_gives_a_304() {
        let r = resp();
        assert!(!not_modified(&r, Some(b"*")));
        let weak: Vec<u8> = b"W/".iter().chain(r.etag().as_bytes()).copied().collect();
        assert!(!not_modified(&r, Some(&weak)));
    }
}
