//! Configuration: a TOML file deserialised into serde structs whose fields say
//! their unit and default, then validated into a typed [`Config`].
//!
//! Every error names the field it is about (`issuer[1].key: cannot read …`), so
//! `ocsp-origin check-config FILE` tells the operator exactly what to fix.
//! Relative paths are resolved against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration error: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending field (`limits.max_body_bytes`), or the file.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

/// The file format. See README "Configuration" for a commented example.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address every shard listens on (SO_REUSEPORT). Default `127.0.0.1:8080`.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Shards (pinned executor threads). 0 = one per available CPU. Default 0.
    #[serde(default)]
    pub cores: usize,
    /// Pin each shard to its own CPU (glommio `MaxSpread` placement). Default
    /// true: on a dedicated machine pinning keeps caches warm and tails short.
    /// On a small machine shared with other busy processes (a load generator),
    /// unpinned shards can move away from them.
    #[serde(default = "d_true")]
    pub pin: bool,
    /// Path prefix the responder URL carries (`/ocsp`); requests outside it get
    /// 404. Default empty (the responder is at `/`).
    #[serde(default)]
    pub path_prefix: String,
    /// Response validity.
    #[serde(default)]
    pub response: ResponseConfig,
    /// HTTP and request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The signer pool.
    #[serde(default)]
    pub signing: SigningConfig,
    /// The shard-local cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Certificate status in MariaDB/MySQL instead of `index.txt` files.
    #[serde(default)]
    pub mysql: Option<crate::status::mysql::MysqlConfig>,
    /// The change feed that carries every committed status change to every
    /// core (with `[mysql]`).
    #[serde(default)]
    pub feed: FeedConfig,
    /// Signed responses shared through Redis / Redis Cluster (the L2).
    #[serde(default)]
    pub redis: Option<crate::source::redis::RedisConfig>,
    /// The admin listener (metrics, histogram exports).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The issuers answered for (at least one).
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// What happens to requests about certificates past their notAfter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExpiredPolicy {
    /// Keep answering with the recorded status (a revoked certificate stays
    /// revoked after expiry). The default.
    #[default]
    Serve,
    /// Answer `unauthorized`, as for a certificate never issued.
    Unauthorized,
}

/// Validity of signed responses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// nextUpdate − thisUpdate, seconds. Default 345600 (96 h). RFC 5019 caches
    /// honour it; the CDN's cache lifetime follows it.
    pub lifetime_secs: u64,
    /// Fraction of the lifetime after which a cached response is re-signed
    /// (stale-while-revalidate). Default 0.5. Between it and nextUpdate the old
    /// response is still served while a fresh one is signed in the background.
    pub refresh_fraction: f64,
    /// thisUpdate is set this many seconds before signing, for relying parties
    /// with slow clocks. Default 3600. Must be below the lifetime.
    pub backdate_secs: u64,
    /// Policy for expired certificates. Default `serve`.
    pub expired: ExpiredPolicy,
    /// Send `X-Cache-Status: HIT | STALE | REVALIDATED | HIT-L2 | MISS` on 200
    /// and 304 answers, so load generators and operators can tell cache hits
    /// from signatures. Default true; false for operators who do not want to
    /// expose how answers are made.
    pub cache_status_header: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            lifetime_secs: 96 * 3600,
            refresh_fraction: 0.5,
            backdate_secs: 3600,
            expired: ExpiredPolicy::Serve,
            cache_status_header: true,
        }
    }
}

/// HTTP and request limits; each says what a client gets when it hits it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request line bytes; longer gets 414. Default 4096 (a GET for 8 CertIDs
    /// with a nonce fits in about 1.5 KiB).
    pub max_uri_bytes: usize,
    /// Request line + headers bytes; more gets 431. Default 8192.
    pub max_header_bytes: usize,
    /// POST body bytes; more gets 413. Default 8192.
    pub max_body_bytes: usize,
    /// CertIDs in one request; more gets `malformedRequest`. Default 8.
    pub max_cert_ids: usize,
    /// A request's head must arrive within this, ms; else 408 and close (a
    /// slowloris cannot hold a connection). Default 10000.
    pub header_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this, ms. Default 60000.
    pub idle_timeout_ms: u64,
    /// A write that makes no progress for this long closes the connection, ms.
    /// Default 10000.
    pub write_timeout_ms: u64,
    /// Open connections per shard; past it the shard stops accepting and new
    /// connections wait in the kernel backlog. Default 16384.
    pub max_connections_per_shard: usize,
    /// Listen backlog per shard socket (capped by net.core.somaxconn). Default 4096.
    pub listen_backlog: u32,
    /// On SIGTERM/SIGINT the server stops accepting, lets each connection
    /// finish the requests it has sent (a miss may wait for its signature),
    /// and exits 0 when they are done or after this long, ms. Keep it above
    /// `signing.timeout_ms` and below the supervisor's kill timeout (systemd
    /// `TimeoutStopSec`). Default 10000.
    pub drain_timeout_ms: u64,
}

impl LimitsConfig {
    /// The HTTP parser's share of these limits.
    pub fn http(&self) -> crate::http::parse::Limits {
        crate::http::parse::Limits {
            max_uri_bytes: self.max_uri_bytes,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_uri_bytes: 4096,
            max_header_bytes: 8192,
            max_body_bytes: 8192,
            max_cert_ids: crate::ocsp::request::DEFAULT_MAX_CERT_IDS,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 10_000,
            max_connections_per_shard: 16_384,
            listen_backlog: 4096,
            drain_timeout_ms: 10_000,
        }
    }
}

/// The signer pool (see `signer::pool`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Signer threads. 0 = one per shard. Software keys are CPU-bound, so more
    /// threads than cores only adds switching; an HSM wants about its
    /// concurrent-session capacity divided by the number of responder nodes.
    pub threads: usize,
    /// Jobs waiting for a signer, across all shards; past it a miss is
    /// answered from a still-valid cached response or with `tryLater`.
    /// Default 1024.
    pub queue_depth: usize,
    /// Jobs a signer thread takes per wake-up. Default 16.
    pub batch: usize,
    /// A miss waits at most this long for its signature, ms; then `tryLater`.
    /// Default 2000.
    pub timeout_ms: u64,
    /// Shed new signing jobs (`tryLater`, or a still-valid cached response)
    /// while jobs are queued and recent jobs waited longer than this, or no
    /// signer has started a job for 4 × this (a hung HSM), ms (0 = off).
    /// Under a miss storm beyond the signers' capacity the queue stays about
    /// this long, so misses are refused fast instead of holding their
    /// connections for seconds. Keep it above `batch` × one signature.
    /// Default 25.
    pub max_queue_wait_ms: u64,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig { threads: 0, queue_depth: 1024, batch: 16, timeout_ms: 2000, max_queue_wait_ms: 25 }
    }
}

/// The shard-local L1 cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Responses kept per shard (CLOCK eviction past it). Default 100000
    /// (about 60 MB per shard for P-256 responses).
    pub l1_entries: usize,
    /// Misses being resolved at once per shard (each coalesces any number of
    /// identical requests); past it new misses get `tryLater`. Default 4096.
    pub max_inflight_per_shard: usize,
    /// Seconds an L1 entry is served before its status is checked again
    /// against the status source (re-signed only if it changed). A safety
    /// net: the change feed drops changed certificates from every L1 within
    /// `feed.bound_ms`. Default: none with `index.txt` (it cannot change
    /// while running; a reload empties L1), 60 with `[mysql]`.
    pub l1_max_age_secs: Option<u64>,
    /// Hits first: while the shard's scheduling lag (how late a task that
    /// asked to run gets to) is above this, ms, a request that would start a
    /// new fetch gets `tryLater` at once and stale entries are served without
    /// a refresh; hits and coalesced misses go on. 0 = off, the default:
    /// lag also rises when the OS deschedules the shard (a box shared with
    /// other busy processes), and there this would refuse misses the signers
    /// could take. On dedicated, pinned cores set it to about half the hit
    /// latency budget (5 for a 10 ms p99). See `source::admission`.
    pub max_shard_lag_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_entries: 100_000,
            max_inflight_per_shard: 4096,
            l1_max_age_secs: None,
            max_shard_lag_ms: 0,
        }
    }
}

/// `[feed]`: how a node follows the database's change feed (the
/// `ocsp_changes` outbox its triggers fill, see `crate::feed`). Only used with
/// `[mysql]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// How often the node reads new changes from the primary, ms. Each read
    /// is one indexed query. Default 100.
    pub poll_interval_ms: u64,
    /// The guarantee: a change committed on the primary is no longer
    /// answered the old way, on any core, this long after its commit, ms.
    /// When the node has not read the feed for longer (the primary is
    /// unreachable from it), it says so (`ocsp_origin_feed_up` 0, a
    /// warning): it can no longer know. Must be at least twice
    /// `poll_interval_ms`. Default 1000.
    pub bound_ms: u64,
    /// Changes read per query; a larger backlog takes several. Default 10000.
    pub batch: usize,
    /// How long each change fences older copies of its certificate (Redis
    /// values, replica rows, fetches in flight), seconds: keep it far above
    /// any replication lag (`mysql.max_replica_lag_ms`) and Redis failover
    /// window. Changes made this long before a node starts are read again at
    /// start. Default 3600.
    pub fence_window_secs: u64,
    /// Most certificates fenced at once (about 50 bytes each); past it the
    /// oldest fences go, and Redis copies made before them are checked
    /// against the database before use. Default 1000000.
    pub max_floors: usize,
    /// Outbox rows older than this are deleted by the nodes, seconds (the
    /// responder's database user then needs DELETE on `ocsp_changes`); 0
    /// leaves pruning to the operator. A node whose feed was down longer than
    /// this re-checks everything it and Redis hold. At least
    /// `fence_window_secs`. Default 691200 (8 days).
    pub retention_secs: u64,
    /// A seq missing below the newest one read (a transaction that took its
    /// seq earlier and has not committed yet) is waited for this long,
    /// seconds; then it counts as rolled back. Keep it above the longest
    /// transaction the CA's pipeline runs on `ocsp_certificates`. Default 600.
    pub hole_timeout_secs: u64,
    /// At start, the server reads the fence window before it answers, for at
    /// most this long, ms; past it (the primary is unreachable) it starts
    /// anyway and catches up when it can. Default 10000.
    pub start_timeout_ms: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            poll_interval_ms: 100,
            bound_ms: 1000,
            batch: 10_000,
            fence_window_secs: 3600,
            max_floors: 1_000_000,
            retention_secs: 8 * 86_400,
            hole_timeout_secs: 600,
            start_timeout_ms: 10_000,
        }
    }
}

/// `[admin]`: metrics, histogram exports, reload and revocation on their own
/// listener (see [`crate::admin`]). Absent: no admin listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener, e.g. `127.0.0.1:9090`. On loopback,
    /// reads (`/metrics`, `/histograms/*`) are open to local callers; on any
    /// other address (`0.0.0.0`, a management network) every call needs the
    /// token, so `token_file` is then required.
    pub listen: String,
    /// File holding the bearer token (`Authorization: Bearer <token>`) that
    /// `POST /reload` and `POST /revoke` always need, and every call from a
    /// non-loopback address. Surrounding whitespace is trimmed; keep it mode
    /// 0600 (a group- or world-readable file is warned about). Without it the
    /// mutating calls answer 403. Relative to the config file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// One issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Name used in logs and metrics; unique.
    pub name: String,
    /// Issuer certificate, PEM or DER.
    pub cert: PathBuf,
    /// Signing key, PEM (PKCS#8, SEC1 or PKCS#1): the issuer's key, or the
    /// delegated responder's key when `responder_cert` is set. Exactly one of
    /// `key` and `[issuer.pkcs11]` is required.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The signing key in a PKCS#11 HSM instead of a file.
    #[serde(default)]
    pub pkcs11: Option<crate::signer::Pkcs11Config>,
    /// Optional delegated responder certificate (issued by this issuer, with
    /// id-kp-OCSPSigning); it is included in every response.
    #[serde(default)]
    pub responder_cert: Option<PathBuf>,
    /// OpenSSL CA database (`index.txt`) with this issuer's certificates;
    /// required unless statuses come from `[mysql]` (where it is not allowed,
    /// to avoid two sources of truth).
    #[serde(default)]
    pub index: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Shards to run.
    pub cores: usize,
    /// Pin shards to CPUs.
    pub pin: bool,
    /// Normalised prefix: empty, or `/x/y` without a trailing slash.
    pub path_prefix: String,
    /// See [`ResponseConfig`].
    pub response: ResponseConfig,
    /// See [`LimitsConfig`].
    pub limits: LimitsConfig,
    /// See [`SigningConfig`]; `threads` resolved.
    pub signing: SigningConfig,
    /// See [`CacheConfig`].
    pub cache: CacheConfig,
    /// MySQL status source, if configured.
    pub mysql: Option<crate::status::mysql::MysqlConfig>,
    /// See [`FeedConfig`].
    pub feed: FeedConfig,
    /// Redis L2, if configured.
    pub redis: Option<crate::source::redis::RedisConfig>,
    /// Admin listener address, if configured.
    pub admin: Option<SocketAddr>,
    /// The admin bearer token from `admin.token_file` (only with `admin`).
    pub admin_token: Option<crate::admin::AdminToken>,
    /// Issuers with paths resolved.
    pub issuers: Vec<IssuerConfig>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base)
    }

    /// Parses and validates TOML text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let span =
                e.span().map(|s| line_of(text, s.start)).map(|l| format!("line {l}")).unwrap_or_default();
            err(if span.is_empty() { "config".to_string() } else { span }, e.message().to_string())
        })?;
        Config::validate(file, base)
    }

    /// Validates a deserialised file.
    pub fn validate(mut f: FileConfig, base: &Path) -> Result<Config, ConfigError> {
        let listen: SocketAddr = f
            .listen
            .parse()
            .map_err(|_| err("listen", format!("{:?} is not an IP:port address", f.listen)))?;
        let available = available_cores();
        let cores = if f.cores == 0 { available } else { f.cores };
        if cores > available {
            return Err(err("cores", format!("{cores} requested but only {available} CPUs are available")));
        }
        let mut prefix = f.path_prefix.trim().trim_end_matches('/').to_string();
        if !prefix.is_empty() && !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if prefix.contains(['?', '#', ' ']) {
            return Err(err("path_prefix", "must be a plain path"));
        }
        let r = &f.response;
        if !(60..=366 * 86_400).contains(&r.lifetime_secs) {
            return Err(err("response.lifetime_secs", "must be between 60 and 31622400 (366 days)"));
        }
        if !(r.refresh_fraction > 0.0 && r.refresh_fraction <= 1.0) {
            return Err(err("response.refresh_fraction", "must be in (0, 1]"));
        }
        if r.backdate_secs >= r.lifetime_secs {
            return Err(err("response.backdate_secs", "must be below response.lifetime_secs"));
        }
        let l = &f.limits;
        for (name, v, min) in [
            ("limits.max_uri_bytes", l.max_uri_bytes, 64),
            ("limits.max_header_bytes", l.max_header_bytes, 256),
            ("limits.max_body_bytes", l.max_body_bytes, 64),
            ("limits.max_cert_ids", l.max_cert_ids, 1),
            ("limits.max_connections_per_shard", l.max_connections_per_shard, 1),
            ("signing.queue_depth", f.signing.queue_depth, 1),
            ("signing.batch", f.signing.batch, 1),
            ("cache.max_inflight_per_shard", f.cache.max_inflight_per_shard, 1),
        ] {
            if v < min {
                return Err(err(name, format!("must be at least {min}")));
            }
        }
        if l.max_uri_bytes > l.max_header_bytes {
            return Err(err("limits.max_uri_bytes", "must not exceed limits.max_header_bytes"));
        }
        for (name, v) in [
            ("limits.header_timeout_ms", l.header_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.write_timeout_ms", l.write_timeout_ms),
            ("limits.drain_timeout_ms", l.drain_timeout_ms),
            ("signing.timeout_ms", f.signing.timeout_ms),
        ] {
            if v == 0 {
                return Err(err(name, "must be above 0"));
            }
        }
        if f.signing.threads == 0 {
            f.signing.threads = cores;
        }
        if f.issuers.is_empty() {
            return Err(err("issuer", "at least one [[issuer]] is required"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, is) in f.issuers.iter_mut().enumerate() {
            if is.name.trim().is_empty() {
                return Err(err(format!("issuer[{i}].name"), "must not be empty"));
            }
            if !names.insert(is.name.clone()) {
                return Err(err(format!("issuer[{i}].name"), format!("{:?} is used twice", is.name)));
            }
            match (&is.key, &is.pkcs11) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("issuer[{i}].key"),
                        "set either key or [issuer.pkcs11], not both",
                    ))
                }
                (None, None) => return Err(err(format!("issuer[{i}].key"), "set key or [issuer.pkcs11]")),
                (None, Some(p)) => {
                    let f = |x: &str| format!("issuer[{i}].pkcs11.{x}");
                    if p.key_label.is_some() == p.key_id.is_some() {
                        return Err(err(f("key_label"), "set exactly one of key_label and key_id"));
                    }
                    if p.pin_env.is_some() == p.pin_file.is_some() {
                        return Err(err(f("pin_env"), "set exactly one of pin_env and pin_file"));
                    }
                    if !p.module.is_file() {
                        return Err(err(
                            f("module"),
                            format!("{} is not a readable file", p.module.display()),
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            match (&is.index, &f.mysql) {
                (None, None) => {
                    return Err(err(format!("issuer[{i}].index"), "required (or configure [mysql])"))
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("issuer[{i}].index"),
                        "statuses come from [mysql]; import the file with `ocsp-origin db import` instead",
                    ))
                }
                _ => {}
            }
            let pin_file = is.pkcs11.as_mut().and_then(|p| p.pin_file.as_mut());
            for (field, p) in
                [("cert", Some(&mut is.cert)), ("key", is.key.as_mut()), ("index", is.index.as_mut())]
                    .into_iter()
                    .chain(std::iter::once(("responder_cert", is.responder_cert.as_mut())))
                    .chain(std::iter::once(("pkcs11.pin_file", pin_file)))
            {
                let Some(p) = p else { continue };
                if p.is_relative() {
                    *p = base.join(&*p);
                }
                if !p.is_file() {
                    return Err(err(
                        format!("issuer[{i}].{field}"),
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        if let Some(m) = &f.mysql {
            if m.threads == 0 || m.batch == 0 || m.queue_depth == 0 || m.timeout_ms == 0 {
                return Err(err("mysql", "threads, batch, queue_depth and timeout_ms must be above 0"));
            }
            crate::status::mysql::MysqlConfig::opts(m, &m.url, 1).map_err(|e| err("mysql.url", e))?;
            if let Some(r) = &m.replica_url {
                m.opts(r, 1).map_err(|e| err("mysql.replica_url", e))?;
            }
            let fd = &f.feed;
            for (name, v) in [
                ("feed.poll_interval_ms", fd.poll_interval_ms),
                ("feed.batch", fd.batch as u64),
                ("feed.max_floors", fd.max_floors as u64),
                ("feed.hole_timeout_secs", fd.hole_timeout_secs),
            ] {
                if v == 0 {
                    return Err(err(name, "must be above 0"));
                }
            }
            if fd.bound_ms < 2 * fd.poll_interval_ms {
                return Err(err("feed.bound_ms", "must be at least twice feed.poll_interval_ms"));
            }
            if fd.fence_window_secs < 60 {
                return Err(err("feed.fence_window_secs", "must be at least 60"));
            }
            if fd.max_floors < 1000 {
                return Err(err("feed.max_floors", "must be at least 1000"));
            }
            if fd.hole_timeout_secs >= fd.fence_window_secs {
                return Err(err("feed.hole_timeout_secs", "must be below feed.fence_window_secs"));
            }
            if fd.retention_secs != 0 && fd.retention_secs < fd.fence_window_secs {
                return Err(err(
                    "feed.retention_secs",
                    "must be 0 (never prune) or at least feed.fence_window_secs",
                ));
            }
            if m.max_replica_lag_ms / 1000 >= fd.fence_window_secs {
                return Err(err("mysql.max_replica_lag_ms", "must be below feed.fence_window_secs"));
            }
            if f.cache.l1_max_age_secs.is_none() {
                f.cache.l1_max_age_secs = Some(60);
            }
        }
        if let Some(r) = &f.redis {
            if r.command_timeout_ms == 0 || r.connect_timeout_ms == 0 {
                return Err(err("redis", "command_timeout_ms and connect_timeout_ms must be above 0"));
            }
            crate::source::redis::client(r).map_err(|e| err("redis.url", e))?;
        }
        let (admin, admin_token) = match &f.admin {
            Some(a) => {
                let listen = a
                    .listen
                    .parse::<SocketAddr>()
                    .map_err(|_| err("admin.listen", format!("{:?} is not an IP:port address", a.listen)))?;
                let token = match &a.token_file {
                    Some(p) => {
                        let p = if p.is_relative() { base.join(p) } else { p.clone() };
                        let (token, warning) =
                            crate::admin::AdminToken::read(&p).map_err(|e| err("admin.token_file", e))?;
                        if let Some(w) = warning {
                            log::warn!("admin.token_file: {w}");
                        }
                        Some(token)
                    }
                    None => None,
                };
                if token.is_none() && !crate::admin::is_loopback(listen.ip()) {
                    return Err(err(
                        "admin.token_file",
                        format!(
                            "required when admin.listen ({listen}) is not a loopback address: every admin \
                             call from there must carry the bearer token"
                        ),
                    ));
                }
                (Some(listen), token)
            }
            None => (None, None),
        };
        Ok(Config {
            admin,
            admin_token,
            mysql: f.mysql,
            feed: f.feed,
            redis: f.redis,
            listen,
            cores,
            pin: f.pin,
            path_prefix: prefix,
            response: f.response,
            limits: f.limits,
            signing: f.signing,
            cache: f.cache,
            issuers: f.issuers,
        })
    }

    /// The lifetime as a duration.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.response.lifetime_secs)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// CPUs this process may run on.
pub fn available_cores() -> usize {
    core_affinity::get_core_ids()
        .map(|v| v.len())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn d_true() -> bool {
    true
}

fn d_listen() -> String {
    "127.0.0.1:8080".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_files() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "ca.key", "index.txt"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        d
    }

    const MINIMAL: &str =
        "[[issuer]]\nname = \"a\"\ncert = \"ca.pem\"\nkey = \"ca.key\"\nindex = \"index.txt\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let d = dir_with_files();
        let c = Config::from_toml(MINIMAL, d.path()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.response.lifetime_secs, 345_600);
        assert_eq!(c.issuers[0].cert, d.path().join("ca.pem"));
        assert!(c.signing.threads >= 1);
        assert!(c.response.cache_status_header, "on by default");
        let c = Config::from_toml(&format!("[response]\ncache_status_header = false\n{MINIMAL}"), d.path())
            .unwrap();
        assert!(!c.response.cache_status_header);
    }

    #[test]
    fn errors_name_the_field() {
        let d = dir_with_files();
        let e = Config::from_toml(&format!("listen = \"nope\"\n{MINIMAL}"), d.path()).unwrap_err();
        assert_eq!(e.field, "listen");
        let e = Config::from_toml(&format!("[limits]\nmax_body_bytes = 1\n{MINIMAL}"), d.path()).unwrap_err();
        assert_eq!(e.field, "limits.max_body_bytes");
        let e = Config::from_toml(&MINIMAL.replace("ca.key", "missing.key"), d.path()).unwrap_err();
        assert_eq!(e.field, "issuer[0].key");
        let e = Config::from_toml("bogus = 1\n", d.path()).unwrap_err();
        assert!(e.reason.contains("unknown field"), "{e}");
        assert_eq!(e.field, "line 1");
        let e = Config::from_toml("", d.path()).unwrap_err();
        assert_eq!(e.field, "issuer");
        let e = Config::from_toml(&format!("[response]\nrefresh_fraction = 2.0\n{MINIMAL}"), d.path())
            .unwrap_err();
        assert_eq!(e.field, "response.refresh_fraction");
    }

    #[test]
    fn admin_token_file_rules() {
        let d = dir_with_files();
        std::fs::write(d.path().join("token"), "tok-abc\n").unwrap();
        let c =
            Config::from_toml(&format!("[admin]\nlisten = \"127.0.0.1:9090\"\n{MINIMAL}"), d.path()).unwrap();
        assert_eq!((c.admin.unwrap().port(), c.admin_token), (9090, None));
        let with_token = |listen: &str| {
            Config::from_toml(
                &format!("[admin]\nlisten = \"{listen}\"\ntoken_file = \"token\"\n{MINIMAL}"),
                d.path(),
            )
        };
        let c = with_token("0.0.0.0:9090").unwrap();
        assert!(c.admin_token.unwrap().accepts(b"Bearer tok-abc"), "relative to the config, trimmed");
        for listen in ["0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090"] {
            let e = Config::from_toml(&format!("[admin]\nlisten = \"{listen}\"\n{MINIMAL}"), d.path())
                .unwrap_err();
            assert_eq!(e.field, "admin.token_file", "{listen}");
            assert!(e.reason.contains("not a loopback address"), "{e}");
        }
        std::fs::write(d.path().join("token"), "").unwrap();
        assert_eq!(with_token("127.0.0.1:9090").unwrap_err().field, "admin.token_file");
        std::fs::remove_file(d.path().join("token")).unwrap();
        assert_eq!(with_token("127.0.0.1:9090").unwrap_err().field, "admin.token_file");
    }

    /// `Config` is `Debug`; it must never print the database or Redis
    /// password or the admin token.
    #[test]
    fn debug_output_has_no_secrets() {
        let d = dir_with_files();
        std::fs::write(d.path().join("token"), "tok-SECRET-4\n").unwrap();
        let text = "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken_file = \"token\"\n\
             [mysql]\nurl = \"mysql://ocsp:db-SECRET-1@db:3306/ocsp\"\n\
             replica_url = \"mysql://ocsp:db-SECRET-2@replica:3306/ocsp\"\n\
             [redis]\nurl = \"redis://:redis-SECRET-3@127.0.0.1:6379\"\n\
             [[issuer]]\nname = \"a\"\ncert = \"ca.pem\"\nkey = \"ca.key\"\n";
        let c = Config::from_toml(text, d.path()).unwrap();
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("mysql://ocsp:***@db:3306/ocsp"), "{debug}");
        assert!(debug.contains("redis://:***@127.0.0.1:6379"), "{debug}");
    }

    #[test]
    fn prefix_is_normalised() {
        let d = dir_with_files();
        let c = Config::from_toml(&format!("path_prefix = \"ocsp/\"\n{MINIMAL}"), d.path()).unwrap();
        assert_eq!(c.path_prefix, "/ocsp");
    }
}
