//! The admin listener: metrics, histogram exports, reload and revocation on
//! an address of their own (`[admin] listen`, loopback by default), so they
//! never compete with OCSP traffic on the shards and are never reachable
//! where OCSP is.
//!
//! | call | does | who may call it |
//! |---|---|---|
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) | loopback callers of a loopback listener; everyone else with the token |
//! | `GET /histograms/{stage}.hgrm` | HdrHistogram percentile text | same |
//! | `POST /reload` | [`Control::reload`](crate::control::Control::reload): 200 with its summary, else 500 (409 while shutting down) | the token, always |
//! | `POST /revoke` | `issuer=NAME&serial=HEX&reason=NAME[&at=TIME]` (form body or query): [`db::revoke`](crate::db::revoke), Redis tombstones ([`crate::revoke`]), [`Control::invalidate`](crate::control::Control::invalidate) on every shard; 200 only once all of that is done | the token, always; 409 without `[mysql]` |
//!
//! **Access.** The token is `Authorization: Bearer <token>`, read from
//! `admin.token_file`, kept only as its SHA-256 and compared in constant
//! time. Mutating calls always need it: without `token_file` they answer 403
//! (and say to set it); a missing or wrong token is 401 with
//! `WWW-Authenticate: Bearer`. Reads are open only when both the listener and
//! the caller are on loopback; a listener on any other address (config
//! validation refuses one without `token_file`) or a caller from a
//! non-loopback address needs the token for everything, and without it gets
//! 401 for every path, existing or not.
//!
//! **Bounds.** One request per connection (`Connection: close`); its head
//! (8 KiB, 2 KiB request line) and body (4 KiB) must arrive within
//! [`REQUEST_DEADLINE`] of the connection; writes time out after as long;
//! [`MAX_CONNECTIONS`] are served at once, on their own threads, and past it a
//! connection gets 503 at once. So a slow or hostile caller can hold at most
//! one slot for a few seconds, and a revocation in progress never blocks a
//! metrics scrape.
//!
//! **Secrets.** Answers and log lines carry no secret: database errors come
//! redacted from [`crate::db`], and every error text passes through
//! [`redact`] once more before it leaves.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{disposition, Failure, HttpError};
use crate::http::parse::{header_values, parse_head, Limits, Method, Parsed};
use crate::metrics::Sources;
use crate::ocsp::Serial;
use crate::status::mysql::redact;

/// Connections served at once; past it a new one gets 503 at once.
pub const MAX_CONNECTIONS: usize = 8;
/// A request must arrive within this of its connection; writes time out after as long.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Request line, head and body limits (a revocation form is ~100 bytes).
const LIMITS: Limits = Limits { max_uri_bytes: 2048, max_header_bytes: 8192, max_body_bytes: 4096 };

/// The admin bearer token, kept as its SHA-256 only: it cannot be printed
/// (`Debug` shows nothing of it) and is compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// A token from its text.
    pub fn new(secret: &[u8]) -> AdminToken {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret).as_ref());
        AdminToken { digest }
    }

    /// Reads `admin.token_file`: the token is the file's content with
    /// surrounding whitespace trimmed, non-empty, printable ASCII without
    /// spaces (RFC 6750 `b64token`). Also returns a warning when the file is
    /// readable by group or others. Errors never quote the file's content.
    pub fn read(path: &Path) -> Result<(AdminToken, Option<String>), String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = text.trim_ascii();
        if token.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        if !token.iter().all(u8::is_ascii_graphic) {
            return Err(format!(
                "{}: the token must be one line of printable ASCII without spaces",
                path.display()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        let warning = (mode & 0o077 != 0).then(|| {
            format!("{} is readable by group or others (mode {mode:03o}); chmod 600 it", path.display())
        });
        Ok((AdminToken::new(token), warning))
    }

    /// Whether an `Authorization` value is `Bearer <this token>` (scheme in
    /// any case, RFC 9110 §11.1).
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        let value = authorization.trim_ascii();
        let Some(space) = value.iter().position(|b| *b == b' ') else { return false };
        let (scheme, token) = value.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = AdminToken::new(token.trim_ascii());
        aws_lc_rs::constant_time::verify_slices_are_equal(&presented.digest, &self.digest).is_ok()
    }
}

/// Who may call what (see the module docs).
#[derive(Clone, Debug)]
pub struct Access {
    /// The listener is on a loopback address.
    pub loopback_listener: bool,
    /// From `admin.token_file`.
    pub token: Option<AdminToken>,
}

/// What [`Access::verdict`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// 401: a valid bearer token is needed.
    Unauthorized,
    /// 403: mutating calls are off (no `admin.token_file`).
    Disabled,
}

/// Loopback, including IPv4-mapped IPv6 (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

impl Access {
    /// The verdict for a call (`mutating`: reload, revoke) from `peer` with
    /// these `Authorization` values (more than one is refused).
    pub fn verdict(&self, mutating: bool, peer: IpAddr, authorization: &[&[u8]]) -> Verdict {
        let authed = match (&self.token, authorization) {
            (Some(t), [one]) => t.accepts(one),
            _ => false,
        };
        let open_reads = self.loopback_listener && is_loopback(peer);
        if authed {
            Verdict::Allow
        } else if !open_reads {
            // Remote callers learn nothing, not even that calls are disabled.
            Verdict::Unauthorized
        } else if !mutating {
            Verdict::Allow
        } else if self.token.is_none() {
            Verdict::Disabled
        } else {
            Verdict::Unauthorized
        }
    }
}

/// An answer; every one closes the connection.
#[derive(Debug)]
struct Reply {
    code: u16,
    content_type: &'static str,
    body: String,
    /// `Allow` for 405s.
    allow: Option<&'static str>,
}

impl Reply {
    fn text(code: u16, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Reply { code, content_type: "text/plain; charset=utf-8", body, allow: None }
    }

    /// An error whose text may come from a lower layer: scrubbed of secrets.
    fn error(code: u16, text: &str) -> Reply {
        Reply::text(code, redact(text))
    }

    fn reason(&self) -> &'static str {
        match self.code {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Internal Server Error",
        }
    }

    fn write_to(&self, c: &mut TcpStream) {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.code,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        if self.code == 401 {
            head.push_str("WWW-Authenticate: Bearer realm=\"ocsp-origin admin\"\r\n");
        }
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        head.push_str("\r\n");
        let _ = c.write_all(head.as_bytes()).and_then(|()| c.write_all(self.body.as_bytes()));
        let _ = c.shutdown(Shutdown::Write);
    }
}

/// A request as read from the connection.
struct Request {
    bytes: Vec<u8>,
    method: Method,
    target: std::ops::Range<usize>,
    head_len: usize,
    content_length: usize,
}

impl Request {
    fn target(&self) -> &[u8] {
        &self.bytes[self.target.clone()]
    }
    fn head(&self) -> &[u8] {
        &self.bytes[..self.head_len]
    }
    fn body(&self) -> &[u8] {
        &self.bytes[self.head_len..self.head_len + self.content_length]
    }
}

/// Reads one request within [`REQUEST_DEADLINE`] of `start`. `Ok(None)`
/// when the peer went away before sending a whole request.
fn read_request(c: &mut TcpStream, start: Instant) -> Result<Option<Request>, HttpError> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Parsed::Complete(h) = parse_head(&bytes, &LIMITS)? {
            if bytes.len() >= h.head_len + h.content_length {
                return Ok(Some(Request {
                    method: h.method,
                    target: h.path,
                    head_len: h.head_len,
                    content_length: h.content_length,
                    bytes,
                }));
            }
        }
        let left = REQUEST_DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        let _ = c.set_read_timeout(Some(left));
        match c.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(HttpError::Timeout)
            }
            Err(_) => return Ok(None),
        }
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `/metrics`, `/histograms/…` (GET).
    Export,
    /// `POST /reload`.
    Reload,
    /// `POST /revoke`.
    Revoke,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    match path {
        "/reload" => Some(Endpoint::Reload),
        "/revoke" => Some(Endpoint::Revoke),
        "/metrics" => Some(Endpoint::Export),
        p if p.starts_with("/histograms/") => Some(Endpoint::Export),
        _ => None,
    }
}

/// Everything a handler needs, shared by the connection threads.
struct State {
    src: Sources,
    access: Access,
    active: AtomicUsize,
}

/// Binds the admin listener and serves it on its own threads. The access
/// rules come from the config in `src` (`admin.token_file`) and the bound
/// address.
pub fn serve(addr: SocketAddr, src: Sources) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let access =
        Access { loopback_listener: is_loopback(bound.ip()), token: src.view().config.admin_token.clone() };
    let state = Arc::new(State { src, access, active: AtomicUsize::new(0) });
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_write_timeout(Some(REQUEST_DEADLINE));
            if state.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                state.active.fetch_sub(1, Ordering::SeqCst);
                Reply::text(503, "too many admin connections; retry").write_to(&mut c);
                continue;
            }
            let st = state.clone();
            let spawned = std::thread::Builder::new().name("admin-conn".into()).spawn(move || {
                // Released on return and on unwind alike.
                struct Slot<'a>(&'a AtomicUsize);
                impl Drop for Slot<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _slot = Slot(&st.active);
                handle(&st, c);
            });
            if spawned.is_err() {
                // The thread never ran, so its slot is released here.
                state.active.fetch_sub(1, Ordering::SeqCst);
                log::warn!("admin: cannot start a connection thread");
            }
        }
    })?;
    Ok(bound)
}

/// Serves one connection: one request, one answer, close.
fn handle(state: &State, mut c: TcpStream) {
    let start = Instant::now();
    let Ok(peer) = c.peer_addr() else { return };
    let reply = match read_request(&mut c, start) {
        Ok(Some(req)) => route(state, &req, peer),
        Ok(None) => return,
        Err(e) => {
            let (code, reason) = disposition(&Failure::Http(e)).http;
            Reply::text(code, reason)
        }
    };
    reply.write_to(&mut c);
}

/// Authorises and answers a request.
fn route(state: &State, req: &Request, peer: SocketAddr) -> Reply {
    let target = req.target();
    let (path, query) = match target.iter().position(|b| *b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    let path = std::str::from_utf8(path).unwrap_or("");
    let ep = endpoint(path);
    let mutating = matches!(ep, Some(Endpoint::Reload | Endpoint::Revoke));
    let auth = header_values(req.head(), "authorization");
    match state.access.verdict(mutating, peer.ip(), &auth) {
        Verdict::Allow => {}
        Verdict::Unauthorized => {
            log::warn!("admin: {:?} {path:?} from {peer}: no valid bearer token (401)", req.method);
            return Reply::text(
                401,
                "a valid bearer token is required (Authorization: Bearer <admin.token_file>)",
            );
        }
        Verdict::Disabled => {
            return Reply::text(
                403,
                "mutating admin calls are disabled: set admin.token_file in the config to enable them",
            );
        }
    }
    let ep = match (ep, req.method) {
        (None, _) => return Reply::text(404, "not found"),
        (Some(Endpoint::Export), Method::Get) => Endpoint::Export,
        (Some(e @ (Endpoint::Reload | Endpoint::Revoke)), Method::Post) => e,
        (Some(Endpoint::Export), _) => return Reply { allow: Some("GET"), ..Reply::text(405, "GET only") },
        (Some(_), _) => return Reply { allow: Some("POST"), ..Reply::text(405, "POST only") },
    };
    let reply = match ep {
        Endpoint::Export => match crate::metrics::export(&state.src, path) {
            Some((content_type, body)) => Reply { code: 200, content_type, body, allow: None },
            None => Reply::text(404, "not found"),
        },
        Endpoint::Reload => reload(&state.src),
        Endpoint::Revoke => revoke(&state.src, query, req.body()),
    };
    if mutating {
        let first_line = reply.body.lines().next().unwrap_or("");
        log::info!("admin: POST {path} from {peer}: {} {first_line}", reply.code);
    }
    reply
}

fn reload(src: &Sources) -> Reply {
    match src.control.reload() {
        Ok(summary) => Reply::text(200, format!("reloaded: {}", redact(&summary))),
        Err(e) => {
            Reply::error(if src.control.is_draining() { 409 } else { 500 }, &format!("reload failed: {e}"))
        }
    }
}

/// `application/x-www-form-urlencoded` pairs: `+` is a space, `%XX` a byte;
/// names and values must be UTF-8.
fn form_pairs(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn decode(part: &[u8]) -> Result<String, String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                    out.push(byte.ok_or("bad %-escape in the form")?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "the form is not UTF-8".to_string())
    }
    text.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = match p.iter().position(|b| *b == b'=') {
                Some(eq) => (&p[..eq], &p[eq + 1..]),
                None => (p, &b""[..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// The fields of a revocation, from the query string and the form body.
#[derive(Debug, PartialEq, Eq)]
struct RevokeForm {
    issuer: String,
    serial: String,
    reason: String,
    at: Option<String>,
}

fn revoke_form(query: &[u8], body: &[u8]) -> Result<RevokeForm, String> {
    let (mut issuer, mut serial, mut reason, mut at) = (None, None, None, None);
    for (name, value) in form_pairs(query)?.into_iter().chain(form_pairs(body)?) {
        let slot = match name.as_str() {
            "issuer" => &mut issuer,
            "serial" => &mut serial,
            "reason" => &mut reason,
            "at" => &mut at,
            other => return Err(format!("unknown field {other:?} (issuer, serial, reason, at)")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(RevokeForm {
        issuer: need(issuer, "issuer")?,
        serial: need(serial, "serial")?,
        reason: need(reason, "reason")?,
        at,
    })
}

/// `POST /revoke`: the database, then the fast path (Redis, this node's
/// shards); 200 once the database has it (the change feed carries it to
/// every node within `feed.bound_ms`), the body saying what the fast path did.
fn revoke(src: &Sources, query: &[u8], body: &[u8]) -> Reply {
    let view = src.view();
    let cfg = &view.config;
    let Some(mysql) = &cfg.mysql else {
        return Reply::text(
            409,
            "statuses come from index.txt files on this server: mark the certificate revoked in its \
             issuer's index.txt, then POST /reload",
        );
    };
    let form = match revoke_form(query, body) {
        Ok(f) => f,
        Err(e) => return Reply::text(400, e),
    };
    if !cfg.issuers.iter().any(|i| i.name == form.issuer) {
        return Reply::text(400, format!("issuer: no issuer named {:?} in the config", form.issuer));
    }
    let serial = match Serial::from_hex(&form.serial) {
        Ok(s) => s,
        Err(e) => return Reply::text(400, format!("serial: {e}")),
    };
    let reason = match crate::revoke::parse_reason(&form.reason) {
        Ok(r) => r,
        Err(e) => return Reply::text(400, format!("reason: {e}")),
    };
    let at = match &form.at {
        Some(t) => match crate::revoke::parse_time(t) {
            Some(at) => at,
            None => {
                return Reply::text(400, format!("at: cannot read {t:?} as RFC 3339, OpenSSL or Unix time"))
            }
        },
        None => crate::clock::unix_now(),
    };
    let issuer = &form.issuer;
    let changed = match crate::db::connect(mysql)
        .map_err(crate::db::ChangeError::Database)
        .and_then(|pool| crate::db::revoke(&pool, issuer, &serial, reason, at))
    {
        Ok(c) => c,
        Err(e @ crate::db::ChangeError::NotFound { .. }) => return Reply::error(404, &e.to_string()),
        Err(e @ crate::db::ChangeError::Refused(_)) => return Reply::error(409, &e.to_string()),
        Err(crate::db::ChangeError::Database(e)) => return Reply::error(503, &format!("database: {e}")),
    };
    let done = format!(
        "revoked {serial} of {issuer:?} ({}) in the database at revision {}",
        reason.openssl_name(),
        changed.revision
    );
    // The shards' share of locked memory, plus room for this executor.
    let memlock = cfg.cores * crate::server::IO_MEMORY + (512 << 10) + (1 << 20);
    let cache = crate::revoke::push_to_redis(cfg, issuer, &serial, changed.revision, memlock);
    if cache == Ok(crate::revoke::CacheStep::Tombstoned) {
        std::thread::sleep(Duration::from_millis(crate::revoke::SETTLE_MS));
    }
    // This node's fence first (a lagging replica's older row is then read
    // again from the primary), then its shards drop their copies, even when
    // Redis failed; the change feed does both on every node within its bound.
    let now = crate::clock::unix_now();
    // Its seq is its revision (an update); the feed raises the same floor.
    let r = crate::feed::floors::Raise {
        revision: changed.revision,
        seq: changed.revision,
        at: now,
        until: now + cfg.feed.fence_window_secs,
    };
    src.floors.raise(src.floors.issuer(issuer), serial, r);
    let confirmed = src.control.invalidate(issuer, serial);
    let bound = cfg.feed.bound_ms;
    let cache_text = match &cache {
        Ok(crate::revoke::CacheStep::Tombstoned) => {
            "tombstoned in Redis, every tracking node drops its copy".into()
        }
        Ok(crate::revoke::CacheStep::NotShared { .. }) => {
            format!("no shared cache: other nodes see it through the change feed within {bound} ms")
        }
        Err(e) => format!(
            "the Redis fast path FAILED ({e}): other nodes see it through the change feed within {bound} ms"
        ),
    };
    let mut text = format!(
        "{done}; {cache_text}; {confirmed} of {} shards of this node dropped their cached copies",
        cfg.cores
    );
    if confirmed < cfg.cores {
        text.push_str(&format!(" (the others see it through the change feed within {bound} ms)"));
    }
    // Committed in the database: the change feed makes it every node's answer
    // within the bound; the steps above only made it faster.
    Reply::text(200, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const V4_REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn access(loopback_listener: bool, token: Option<&str>) -> Access {
        Access { loopback_listener, token: token.map(|t| AdminToken::new(t.as_bytes())) }
    }

    #[test]
    fn peers_are_loopback_only_when_they_are() {
        assert!(is_loopback(V4_LOOP));
        assert!(is_loopback("127.9.9.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        for remote in ["192.0.2.7", "10.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_loopback(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn the_access_rules() {
        use Verdict::*;
        let good: &[&[u8]] = &[b"Bearer s3cret"];
        let wrong: &[&[u8]] = &[b"Bearer s3cre"];
        let none: &[&[u8]] = &[];
        // (listener on loopback, token configured, mutating, peer, authorization) → verdict
        type Row<'a> = (bool, Option<&'a str>, bool, IpAddr, &'a [&'a [u8]], Verdict);
        let table: &[Row<'_>] = &[
            // Reads on loopback are open; mutations need the token.
            (true, None, false, V4_LOOP, none, Allow),
            (true, None, true, V4_LOOP, none, Disabled),
            (true, None, true, V4_LOOP, good, Disabled),
            (true, Some("s3cret"), false, V4_LOOP, none, Allow),
            (true, Some("s3cret"), true, V4_LOOP, none, Unauthorized),
            (true, Some("s3cret"), true, V4_LOOP, wrong, Unauthorized),
            (true, Some("s3cret"), true, V4_LOOP, good, Allow),
            // A remote peer needs the token for everything, and learns nothing without it.
            (true, Some("s3cret"), false, V4_REMOTE, none, Unauthorized),
            (true, Some("s3cret"), false, V4_REMOTE, wrong, Unauthorized),
            (true, Some("s3cret"), false, V4_REMOTE, good, Allow),
            (true, None, true, V4_REMOTE, none, Unauthorized),
            (true, None, false, V4_REMOTE, good, Unauthorized),
            // A listener off loopback (0.0.0.0) needs it even from loopback peers.
            (false, Some("s3cret"), false, V4_LOOP, none, Unauthorized),
            (false, Some("s3cret"), false, V4_LOOP, good, Allow),
            (false, Some("s3cret"), true, V4_REMOTE, good, Allow),
        ];
        for (i, (lo, token, mutating, peer, auth, want)) in table.iter().enumerate() {
            assert_eq!(access(*lo, *token).verdict(*mutating, *peer, auth), *want, "row {i}");
        }
        // Two Authorization fields are refused even if one is right.
        let two: &[&[u8]] = &[b"Bearer s3cret", b"Bearer s3cret"];
        assert_eq!(access(true, Some("s3cret")).verdict(true, V4_LOOP, two), Unauthorized);
    }

    #[test]
    fn bearer_values() {
        let t = AdminToken::new(b"s3cret");
        for ok in [&b"Bearer s3cret"[..], b"bearer s3cret", b"BEARER   s3cret  ", b" Bearer s3cret"] {
            assert!(t.accepts(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer",
            b"",
            b"Bearers3cret",
        ] {
            assert!(!t.accepts(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        std::fs::write(&p, "  tok-123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (t, warning) = AdminToken::read(&p).unwrap();
        assert!(t.accepts(b"Bearer tok-123"), "trimmed");
        assert_eq!(warning, None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = AdminToken::read(&p).unwrap().1.unwrap();
        assert!(warning.contains("mode 644") && warning.contains("chmod 600"), "{warning}");
        for (content, why) in [("\n \n", "is empty"), ("two words", "printable ASCII without spaces")] {
            std::fs::write(&p, content).unwrap();
            let e = AdminToken::read(&p).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("words"), "never quotes the content: {e}");
        }
        assert!(AdminToken::read(&d.path().join("missing")).unwrap_err().contains("missing"));
        assert!(AdminToken::read(d.path()).unwrap_err().contains("is not a file"));
    }

    #[test]
    fn revoke_forms() {
        let f = revoke_form(b"issuer=test", b"serial=0A1B&reason=keyCompromise&at=2026-11-01T12%3A00%3A00Z")
            .unwrap();
        assert_eq!(
            f,
            RevokeForm {
                issuer: "test".into(),
                serial: "0A1B".into(),
                reason: "keyCompromise".into(),
                at: Some("2026-11-01T12:00:00Z".into())
            }
        );
        assert_eq!(revoke_form(b"issuer=my+CA&serial=1&reason=x", b"").unwrap().issuer, "my CA");
        for (q, b, why) in [
            (&b""[..], &b"serial=1&reason=x"[..], "issuer is required"),
            (b"issuer=a&serial=1&reason=x", b"issuer=b", "issuer is given twice"),
            (b"issuer=a&serial=1&reason=x&pin=1", b"", "unknown field \"pin\""),
            (b"issuer=%zz&serial=1&reason=x", b"", "bad %-escape"),
            (b"issuer=%ff&serial=1&reason=x", b"", "not UTF-8"),
            (b"issuer=a%", b"", "bad %-escape"),
        ] {
            let e = revoke_form(q, b).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("/metrics"), Some(Endpoint::Export));
        assert_eq!(endpoint("/histograms/request.hgrm"), Some(Endpoint::Export));
        assert_eq!(endpoint("/reload"), Some(Endpoint::Reload));
        assert_eq!(endpoint("/revoke"), Some(Endpoint::Revoke));
        assert_eq!(endpoint("/reload/"), None);
        assert_eq!(endpoint("/"), None);
    }
}
