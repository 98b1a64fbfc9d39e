//! What each admin path does, once [`super::access`] has allowed the call:
//! exports from a snapshot of the node, reloads through the control plane,
//! revocations through the shared workflow ([`crate::ops::change`]).

use std::net::SocketAddr;

use super::access::Verdict;
use super::http::{form_pairs, Reply, Request};
use super::state::AdminState;
use super::State;
use crate::config::redact;
use crate::http::parse::{header_values, Method};
use crate::ocsp::Serial;
use crate::ops::change::{apply, Change, Node};
use crate::ops::db::ChangeError;
use crate::ops::input::{parse_reason, parse_time};
use crate::ops::push::{CacheStep, SETTLE_MS};

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

/// Authorises and answers a request.
pub(super) fn route(state: &State, req: &Request, peer: SocketAddr) -> Reply {
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
        Endpoint::Export => match crate::metrics::export(&state.src.snapshot(), path) {
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

fn reload(src: &AdminState) -> Reply {
    match src.control.reload() {
        Ok(summary) => Reply::text(200, format!("reloaded: {}", redact(&summary))),
        Err(e) => {
            Reply::error(if src.control.is_draining() { 409 } else { 500 }, &format!("reload failed: {e}"))
        }
    }
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
fn revoke(src: &AdminState, query: &[u8], body: &[u8]) -> Reply {
    let view = src.view();
    let cfg = &view.config;
    if cfg.mysql.is_none() {
        return Reply::text(
            409,
            "statuses come from index.txt files on this server: mark the certificate revoked in its \
             issuer's index.txt, then POST /reload",
        );
    }
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
    let reason = match parse_reason(&form.reason) {
        Ok(r) => r,
        Err(e) => return Reply::text(400, format!("reason: {e}")),
    };
    let at = match &form.at {
        Some(t) => match parse_time(t) {
            Some(at) => at,
            None => {
                return Reply::text(400, format!("at: cannot read {t:?} as RFC 3339, OpenSSL or Unix time"))
            }
        },
        None => crate::clock::unix_now(),
    };
    let issuer = &form.issuer;
    let node = Node { floors: &src.floors, control: &src.control };
    let change = Change::Revoke { reason, at };
    let done = match apply(cfg, issuer, &serial, change, Some(node), SETTLE_MS) {
        Ok(o) => o,
        Err(e @ ChangeError::NotFound { .. }) => return Reply::error(404, &e.to_string()),
        Err(e @ ChangeError::Refused(_)) => return Reply::error(409, &e.to_string()),
        Err(ChangeError::Database(e)) => return Reply::error(503, &format!("database: {e}")),
    };
    let confirmed = done.shards_dropped.unwrap_or(0);
    let (cache, revision) = (done.cache, done.revision);
    let done = format!(
        "revoked {serial} of {issuer:?} ({}) in the database at revision {revision}",
        reason.openssl_name()
    );
    let bound = cfg.feed.bound_ms;
    let cache_text = match &cache {
        Ok(CacheStep::Tombstoned) => "tombstoned in Redis, every tracking node drops its copy".into(),
        Ok(CacheStep::NotShared { .. }) => {
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
