//! The CDN ratchet (`--cdn-purge`): the bench's traffic goes to a CDN (a
//! Varnish with the xkey vmod) in front of the origin, and each stage opens by
//! purging a share of the origin's 256 bucket tags (`<prefix>b-00` …
//! `<prefix>b-ff`, a serial's last byte), so that share of the cache is cold
//! while the stage's traffic runs over the whole, otherwise warm keyspace.
//!
//! A purge is `PURGE <path>` with the tags, space-separated, in an
//! `xkey-purge` header, at most `--cdn-purge-batch` tags a request; the CDN
//! answers 200 with `X-Purged: <objects>`. Stage fraction f purges buckets
//! `0 .. round(f·256)-1`; the purger thread sends them a little before the
//! stage starts (in the gap between stages), so the stage begins cold.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::results::PurgeResult;

/// Cache buckets the origin tags responses with (a serial's last byte).
pub const BUCKETS: usize = 256;

/// Failures kept per stage for the report.
const ERRORS_KEPT: usize = 3;

/// Where and how to purge.
#[derive(Clone, Debug)]
pub struct Purger {
    /// The CDN's address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Request path (`/`).
    pub path: String,
    /// Tag prefix (`ocsp-`).
    pub prefix: String,
    /// Most tags in one request.
    pub batch: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Parses `http://IP:PORT[/path]` (no name lookups, no TLS: the CDN's purge
/// listener is on loopback or a management network).
pub fn parse_purge_url(text: &str) -> Result<(SocketAddr, String), String> {
    let bad = |why: &str| format!("--cdn-purge {text:?}: {why} (e.g. http://127.0.0.1:6081/)");
    let rest = text.strip_prefix("http://").ok_or_else(|| bad("not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().map_err(|_| bad("the host is not IP:PORT"))?;
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("the path holds spaces or control characters"));
    }
    Ok((addr, path.to_string()))
}

/// Buckets stage fraction `f` purges: `round(f·256)`, at most 256.
pub fn buckets_for(fraction: f64) -> usize {
    ((fraction * BUCKETS as f64).round().max(0.0) as usize).min(BUCKETS)
}

/// The tags of buckets `0 .. n-1` with `prefix` (`ocsp-b-00`, …).
pub fn bucket_tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n.min(BUCKETS)).map(|b| format!("{prefix}b-{b:02x}")).collect()
}

/// The `xkey-purge` header values: `tags` in groups of at most `batch`.
pub fn batches(tags: &[String], batch: usize) -> Vec<String> {
    tags.chunks(batch.max(1)).map(|c| c.join(" ")).collect()
}

/// Checks a tag prefix: what the origin's `[cdn] tag_prefix` may hold.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        Ok(())
    } else {
        Err(format!("--cdn-tag-prefix {prefix:?}: only letters, digits, '.', '_' and '-'"))
    }
}

impl Purger {
    /// One purge request for `tags` (one header value); the objects purged.
    pub fn request(&self, tags: &str) -> Result<u64, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let _ = s.set_nodelay(true);
        write!(
            s,
            "PURGE {} HTTP/1.1\r\nHost: {}\r\nxkey-purge: {tags}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.path, self.host
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).map_err(|e| format!("receive: {e}"))?;
        purged_from_answer(&answer)
    }

    /// Purges what stage fraction `fraction` asks for; `began_ms` is left to
    /// the caller (it knows the stage's start).
    pub fn purge(&self, fraction: f64) -> PurgeResult {
        let buckets = buckets_for(fraction);
        let mut r = PurgeResult { buckets, ..Default::default() };
        let started = Instant::now();
        for value in batches(&bucket_tags(&self.prefix, buckets), self.batch) {
            r.requests += 1;
            match self.request(&value) {
                Ok(n) => r.purged += n,
                Err(e) => {
                    r.failed += 1;
                    if r.errors.len() < ERRORS_KEPT {
                        r.errors.push(e);
                    }
                }
            }
        }
        r.took_ms = started.elapsed().as_secs_f64() * 1000.0;
        r
    }

    /// Before the run: a purge of a tag no response carries, so a CDN that
    /// refuses purges (ACL, no xkey) stops the run before its warm-up.
    pub fn probe(&self) -> Result<(), String> {
        self.request(&format!("{}bench-probe", self.prefix)).map(|_| ())
    }

    /// Starts the purger thread: for each stage `(start, fraction)` it purges
    /// `lead` before `t0 + start`, and returns the results in stage order.
    pub fn spawn(
        self,
        t0: Instant,
        lead: Duration,
        stages: Vec<(Duration, f64)>,
    ) -> std::io::Result<std::thread::JoinHandle<Vec<PurgeResult>>> {
        std::thread::Builder::new().name("bench-purge".into()).spawn(move || {
            let mut out = Vec::with_capacity(stages.len());
            for (start, fraction) in stages {
                let begin = t0 + start;
                let at = begin.checked_sub(lead).unwrap_or(begin);
                let now = Instant::now();
                if now < at {
                    std::thread::sleep(at - now);
                }
                let began = Instant::now();
                let began_ms = if began >= begin {
                    began.duration_since(begin).as_secs_f64() * 1000.0
                } else {
                    -(begin.duration_since(began).as_secs_f64() * 1000.0)
                };
                let mut r = self.purge(fraction);
                r.began_ms = began_ms;
                out.push(r);
            }
            out
        })
    }
}

/// The objects purged from a purge answer: `200` with `X-Purged: <n>`.
fn purged_from_answer(answer: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(answer);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(if status.is_empty() { "no HTTP answer".into() } else { status.to_string() });
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("x-purged") {
                return value
                    .trim()
                    .parse()
                    .map_err(|_| format!("X-Purged {:?} is not a count", value.trim()));
            }
        }
    }
    Err("200 without X-Purged (is the CDN's purge the xkey vmod's?)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_fractions_pick_leading_buckets() {
        assert_eq!(buckets_for(1.0 / 16.0), 16);
        assert_eq!(buckets_for(1.0 / 8.0), 32);
        assert_eq!(buckets_for(0.25), 64);
        assert_eq!(buckets_for(0.5), 128);
        assert_eq!(buckets_for(1.0), 256);
        assert_eq!(buckets_for(0.001), 0);
        assert_eq!(buckets_for(1.0 / 3.0), 85);
        let t = bucket_tags("ocsp-", 16);
        assert_eq!(t.len(), 16);
        assert_eq!(t[0], "ocsp-b-00");
        assert_eq!(t[15], "ocsp-b-0f");
        let all = bucket_tags("x.", 256);
        assert_eq!(all[255], "x.b-ff");
        assert_eq!(all.iter().collect::<std::collections::HashSet<_>>().len(), 256);
        assert_eq!(bucket_tags("ocsp-", 999).len(), 256);
    }

    #[test]
    fn tags_go_out_in_batches_of_at_most_the_limit() {
        let tags = bucket_tags("ocsp-", 256);
        let b = batches(&tags, 64);
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|v| v.split(' ').count() == 64));
        assert!(b[0].starts_with("ocsp-b-00 ocsp-b-01 "));
        assert!(b[3].ends_with(" ocsp-b-ff"));
        let b = batches(&bucket_tags("ocsp-", 85), 64);
        assert_eq!(b.iter().map(|v| v.split(' ').count()).collect::<Vec<_>>(), vec![64, 21]);
        assert!(batches(&[], 64).is_empty());
        assert_eq!(batches(&tags[..3], 0).len(), 3, "a batch of 0 is one tag a request");
    }

    #[test]
    fn purge_urls_and_prefixes() {
        let (a, p) = parse_purge_url("http://127.0.0.1:6081/").unwrap();
        assert_eq!((a.to_string().as_str(), p.as_str()), ("127.0.0.1:6081", "/"));
        let (a, p) = parse_purge_url("http://[::1]:80").unwrap();
        assert_eq!((a.port(), p.as_str()), (80, "/"));
        assert_eq!(parse_purge_url("http://127.0.0.1:1/purge").unwrap().1, "/purge");
        for bad in [
            "https://127.0.0.1:1/",
            "127.0.0.1:1",
            "http://localhost:1/",
            "http://127.0.0.1/",
            "http://1.2.3.4:1/a b",
        ] {
            assert!(parse_purge_url(bad).is_err(), "{bad}");
        }
        assert!(check_prefix("ocsp-").is_ok() && check_prefix("").is_ok());
        assert!(check_prefix("a b").is_err() && check_prefix("a,").is_err());
    }

    #[test]
    fn purge_answers() {
        assert_eq!(purged_from_answer(b"HTTP/1.1 200 Purged\r\nX-Purged: 42\r\n\r\nPurged\n"), Ok(42));
        assert_eq!(purged_from_answer(b"HTTP/1.1 200 OK\r\nx-purged:  0\r\n\r\n"), Ok(0));
        assert!(purged_from_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap_err().contains("403"));
        assert!(purged_from_answer(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err().contains("X-Purged"));
        assert!(purged_from_answer(b"HTTP/1.1 200 OK\r\nX-Purged: x\r\n\r\n").is_err());
        assert!(purged_from_answer(b"").is_err());
    }

    #[test]
    fn purges_against_a_fake_cdn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8(got).unwrap();
                let tags = text.lines().find_map(|l| l.strip_prefix("xkey-purge: ")).unwrap().to_string();
                let n = tags.split(' ').count();
                write!(s, "HTTP/1.1 200 Purged\r\nX-Purged: {}\r\nConnection: close\r\n\r\n", n * 10)
                    .unwrap();
                seen.push((text.lines().next().unwrap().to_string(), n));
            }
            seen
        });
        let p = Purger {
            addr,
            host: addr.to_string(),
            path: "/".into(),
            prefix: "ocsp-".into(),
            batch: 64,
            timeout: Duration::from_secs(2),
        };
        p.probe().unwrap();
        let r = p.purge(0.5);
        assert_eq!((r.buckets, r.requests, r.failed, r.purged), (128, 2, 0, 1280));
        let seen = server.join().unwrap();
        assert_eq!(seen[0], ("PURGE / HTTP/1.1".to_string(), 1));
        assert_eq!(seen[1].1 + seen[2].1, 128);
        // Nobody listens any more: every request fails, and says why.
        let r = p.purge(1.0);
        assert_eq!((r.requests, r.failed, r.purged), (4, 4, 0));
        assert_eq!(r.errors.len(), ERRORS_KEPT);
    }
}
