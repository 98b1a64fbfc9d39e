//! `[cdn]`: the cache tags every signed 200 carries, and the purge targets the
//! change feed drives (see `crate::cdn`). Absent: no tags, no purges.
//!
//! ```toml
//! [cdn]
//! tag_header = "xkey"          # Fastly: "Surrogate-Key"; Cloudflare: "Cache-Tag"; Akamai: "Edge-Cache-Tag"
//! tag_separator = " "          # Cloudflare and Akamai: ","
//! tag_prefix = "ocsp-"
//!
//! [[cdn.target]]               # Varnish: PURGE with the tags in a header
//! name = "varnish"
//! kind = "xkey"
//! url = "http://127.0.0.1:6081/"
//!
//! [[cdn.target]]               # a CDN's purge API
//! name = "fastly"
//! kind = "api"
//! url = "https://api.fastly.com/service/SERVICE/purge"
//! body = '{"surrogate_keys": {tags_json}}'
//! token_file = "fastly.token"
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

/// `[cdn]` in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnConfig {
    /// Response header carrying the cache tags. Default `xkey` (Varnish's
    /// xkey vmod).
    pub tag_header: String,
    /// Between two tags in that header and in a purge. Default `" "`.
    pub tag_separator: String,
    /// Put before every tag, so the origin's tags cannot collide with others
    /// the CDN holds. Default `ocsp-`.
    pub tag_prefix: String,
    /// A change is purged once this node applied it and `feed.bound_ms` plus
    /// this many ms have passed since its commit: by then every node answers
    /// the new status (the feed's guarantee), and a CDN fetch begun just
    /// before has come back. Default 200.
    pub settle_ms: u64,
    /// Most tags in one purge request. Default 256.
    pub batch: usize,
    /// Purge requests per second, per target, at most. Default 20.
    pub requests_per_sec: u32,
    /// Changes a target's purger holds read ahead of its purges; past it,
    /// it stops reading (the outbox keeps the rest). Default 100000.
    pub queue: usize,
    /// Attempts per purge before its changes are dead-lettered (logged,
    /// counted, given up). Default 12 (about 4 minutes with the backoff).
    pub max_tries: u32,
    /// First retry delay, ms; it doubles per failed attempt, up to 30 s.
    /// Default 250.
    pub backoff_ms: u64,
    /// Where to purge.
    #[serde(rename = "target")]
    pub targets: Vec<TargetConfig>,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            tag_header: "xkey".into(),
            tag_separator: " ".into(),
            tag_prefix: "ocsp-".into(),
            settle_ms: 200,
            batch: 256,
            requests_per_sec: 20,
            queue: 100_000,
            max_tries: 12,
            backoff_ms: 250,
            targets: Vec::new(),
        }
    }
}

/// How a target is asked to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Varnish with xkey: `PURGE <url>` with the tags in the `xkey-purge`
    /// header (tuning/varnish/ocsp-origin.vcl).
    Xkey,
    /// A CDN's HTTP API: `method url` with `body` (its `{tags}` and
    /// `{tags_json}` filled in) and the bearer token from `token_file`.
    Api,
}

/// One `[[cdn.target]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Name in logs, metrics and the kept position; unique.
    pub name: String,
    /// How to purge.
    pub kind: TargetKind,
    /// `http://` or `https://` URL the request goes to.
    pub url: String,
    /// HTTP method. Default `PURGE` for xkey, `POST` for api.
    #[serde(default)]
    pub method: Option<String>,
    /// xkey: the request header holding the tags. Default `xkey-purge`.
    #[serde(default)]
    pub header: Option<String>,
    /// api: the request body; `{tags}` becomes the tags joined by
    /// `tag_separator`, `{tags_json}` a JSON array of them. Default
    /// `{tags_json}`.
    #[serde(default)]
    pub body: Option<String>,
    /// api: `Content-Type` of the body. Default `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// File holding a bearer token (`Authorization: Bearer <token>`),
    /// trimmed; relative to the config file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// https: PEM CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connect, write and read timeout of one request, ms. Default 5000.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
}

fn d_timeout() -> u64 {
    5000
}

impl TargetConfig {
    /// The method sent.
    pub fn method(&self) -> &str {
        match (&self.method, self.kind) {
            (Some(m), _) => m,
            (None, TargetKind::Xkey) => "PURGE",
            (None, TargetKind::Api) => "POST",
        }
    }
}

/// Whether `s` may appear in a cache tag: every CDN named accepts these.
pub fn tag_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks `[cdn]`; `issuers` are the issuer names (each becomes part of a
/// tag); relative paths are resolved against `base`.
pub(super) fn validate(
    c: &mut CdnConfig,
    issuers: &[&str],
    base: &std::path::Path,
) -> Result<(), ConfigError> {
    if !is_token(&c.tag_header) {
        return Err(err("cdn.tag_header", "must be an HTTP header name"));
    }
    if !matches!(c.tag_separator.as_str(), " " | ",") {
        return Err(err("cdn.tag_separator", "must be \" \" or \",\""));
    }
    if !c.tag_prefix.is_empty() && !tag_safe(&c.tag_prefix) {
        return Err(err("cdn.tag_prefix", "may hold only letters, digits, '.', '_' and '-'"));
    }
    for (i, name) in issuers.iter().enumerate() {
        if !tag_safe(name) {
            return Err(err(
                format!("issuer[{i}].name"),
                "with [cdn] it is part of cache tags: only letters, digits, '.', '_' and '-'",
            ));
        }
    }
    for (name, v) in [
        ("cdn.batch", c.batch as u64),
        ("cdn.requests_per_sec", u64::from(c.requests_per_sec)),
        ("cdn.queue", c.queue as u64),
        ("cdn.max_tries", u64::from(c.max_tries)),
        ("cdn.backoff_ms", c.backoff_ms),
    ] {
        if v == 0 {
            return Err(err(name, "must be above 0"));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, t) in c.targets.iter_mut().enumerate() {
        let field = |f: &str| format!("cdn.target[{i}].{f}");
        if !tag_safe(&t.name) || !names.insert(t.name.clone()) {
            return Err(err(field("name"), "must be unique: letters, digits, '.', '_' and '-'"));
        }
        match url::Url::parse(&t.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => return Err(err(field("url"), format!("{:?} is not an http:// or https:// URL", t.url))),
        }
        if !is_token(t.method()) {
            return Err(err(field("method"), "must be an HTTP method"));
        }
        if t.header.as_deref().is_some_and(|h| !is_token(h)) {
            return Err(err(field("header"), "must be an HTTP header name"));
        }
        if t.kind == TargetKind::Xkey && (t.body.is_some() || t.content_type.is_some()) {
            return Err(err(field("body"), "only an api target has a body"));
        }
        if t.kind == TargetKind::Api && t.header.is_some() {
            return Err(err(field("header"), "an api target carries the tags in its body"));
        }
        if let Some(b) = &t.body {
            if !b.contains("{tags}") && !b.contains("{tags_json}") {
                return Err(err(field("body"), "must hold {tags} or {tags_json}"));
            }
        }
        if t.timeout_ms == 0 {
            return Err(err(field("timeout_ms"), "must be above 0"));
        }
        for (f, p) in [("token_file", &mut t.token_file), ("ca_file", &mut t.ca_file)] {
            if let Some(p) = p {
                *p = base.join(&*p);
                if !p.is_file() {
                    return Err(err(field(f), format!("{}: no such file", p.display())));
                }
            }
        }
        if t.ca_file.is_some() && !t.url.starts_with("https://") {
            return Err(err(field("ca_file"), "only for an https:// URL"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, url: &str) -> TargetConfig {
        TargetConfig {
            name: "v".into(),
            kind,
            url: url.into(),
            method: None,
            header: None,
            body: None,
            content_type: None,
            token_file: None,
            ca_file: None,
            timeout_ms: 5000,
        }
    }

    fn check(c: &mut CdnConfig) -> Result<(), String> {
        validate(c, &["ca-1"], std::path::Path::new("/")).map_err(|e| e.to_string())
    }

    #[test]
    fn each_fault_names_its_field() {
        let mut c = CdnConfig::default();
        assert!(check(&mut c).is_ok());
        assert_eq!(target(TargetKind::Xkey, "x").method(), "PURGE");
        assert_eq!(target(TargetKind::Api, "x").method(), "POST");
        c.targets.push(target(TargetKind::Xkey, "ftp://x/"));
        assert!(check(&mut c).unwrap_err().starts_with("cdn.target[0].url"));
        c.targets[0].url = "http://127.0.0.1:6081/".into();
        assert!(check(&mut c).is_ok());
        c.targets.push(target(TargetKind::Xkey, "http://127.0.0.1:6082/"));
        assert!(check(&mut c).unwrap_err().starts_with("cdn.target[1].name"), "duplicate name");
        c.targets[1].name = "w".into();
        c.targets[1].body = Some("{tags}".into());
        assert!(check(&mut c).unwrap_err().starts_with("cdn.target[1].body"));
        c.targets[1].kind = TargetKind::Api;
        c.targets[1].body = Some("{}".into());
        assert!(check(&mut c).unwrap_err().contains("{tags}"));
        c.targets[1].body = Some("{\"k\": {tags_json}}".into());
        c.targets[1].token_file = Some("no-such-token".into());
        assert!(check(&mut c).unwrap_err().starts_with("cdn.target[1].token_file"));
        c.targets[1].token_file = None;
        assert!(check(&mut c).is_ok());
        c.tag_separator = ";".into();
        assert!(check(&mut c).unwrap_err().starts_with("cdn.tag_separator"));
        c.tag_separator = ",".into();
        c.tag_header = "Cache Tag".into();
        assert!(check(&mut c).unwrap_err().starts_with("cdn.tag_header"));
        c.tag_header = "Cache-Tag".into();
        let e = validate(&mut c, &["ca 1"], std::path::Path::new("/")).unwrap_err();
        assert_eq!(e.field, "issuer[0].name");
    }
}
