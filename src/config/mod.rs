//! Configuration: a TOML file deserialised into serde structs whose fields say
//! their unit and default, then validated into a typed [`Config`].
//!
//! Every error names the field it is about (`issuer[1].key: cannot read …`), so
//! `ocsp-origin check-config FILE` tells the operator exactly what to fix.
//! Relative paths are resolved against the config file's directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod backends;
mod cdn;
mod load;
mod secret;
mod validate;

pub use backends::{MysqlConfig, Pkcs11Config, RedisConfig};
pub use cdn::{tag_safe, CdnConfig, TargetConfig, TargetKind};
pub use secret::{is_loopback, redact, AdminToken};

/// Default upper bound on CertIDs in one request. OpenSSL sends one per `-cert`;
/// browsers send one. Each CertID costs a status lookup and a share of a
/// signature, so the bound keeps one request's work small.
pub const DEFAULT_MAX_CERT_IDS: usize = 8;

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
    pub mysql: Option<MysqlConfig>,
    /// The change feed that carries every committed status change to every
    /// core (with `[mysql]`).
    #[serde(default)]
    pub feed: FeedConfig,
    /// Signed responses shared through Redis / Redis Cluster (the L2).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// The admin listener (metrics, histogram exports).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Cache tags on responses and purges at the CDN (see `crate::cdn`).
    #[serde(default)]
    pub cdn: Option<CdnConfig>,
    /// The issuers answered for (at least one).
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// Which rules responses are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The CA/Browser Forum Baseline Requirements (a publicly-trusted CA):
    /// a validity interval of 8 hours to 10 days, refreshed by the BR's
    /// update point; only the revocation reasons the BR allows for
    /// subscriber certificates appear in responses (any other is left out,
    /// as unspecified) or are accepted by `revoke`. The default.
    #[default]
    Baseline,
    /// RFC 6960 / RFC 5019 only (a private PKI): any lifetime the other
    /// checks allow, every RFC 5280 reason.
    Rfc6960,
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
    /// `baseline` (default) or `rfc6960`: see [`Profile`].
    pub profile: Profile,
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
            profile: Profile::Baseline,
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
    /// Fresh signatures of multi-CertID responses per second per shard
    /// (burst as many); past it such a miss gets `tryLater`. A multi-CertID
    /// response is cached under its exact list, so lists made of a few public
    /// serials could otherwise force any number of signatures; single-CertID
    /// misses (what relying parties send) are not counted. Default 100.
    pub multi_cert_id_signs_per_sec: u32,
    /// When not empty, only serials whose hex form (upper-case, two digits a
    /// magnitude octet, as `index.txt` and the CLI write them) starts with one
    /// of these are looked up; any other gets `unauthorized` without a
    /// database read. For a CA whose serials carry a fixed prefix. Default
    /// empty.
    pub serial_prefixes: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_uri_bytes: 4096,
            max_header_bytes: 8192,
            max_body_bytes: 8192,
            max_cert_ids: DEFAULT_MAX_CERT_IDS,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 10_000,
            max_connections_per_shard: 16_384,
            listen_backlog: 4096,
            drain_timeout_ms: 10_000,
            multi_cert_id_signs_per_sec: 100,
            serial_prefixes: Vec::new(),
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
    /// Responses kept per shard (CLOCK eviction past it); 0 keeps none, in
    /// the L1 or the node's shared fills. Default 100000 (about 130 MB per
    /// shard for P-256 responses, node-fill listing included: measured
    /// ≈ 1.3 KB of resident memory per new answer, `benches/RESULTS.md`).
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
    /// A serial the status source does not know is answered `unauthorized`
    /// from a per-shard negative cache for this long, seconds, so garbage
    /// serials at line rate do not each cost a database read. An entry goes
    /// as soon as the change feed reports the certificate (its insert), and
    /// on a reload. 0 = off. Default 10.
    pub unknown_serial_secs: u64,
    /// Entries of that negative cache per shard (about 40 bytes each); past
    /// it the oldest go. Default 65536.
    pub unknown_serial_entries: usize,
    /// Share single-CertID fills between the shards of the node
    /// (`source::l1::node`): every core then sends the same bytes and ETag
    /// for a request, so a CDN's revalidation gets a 304 whichever core
    /// takes it, and a miss another core resolved costs no signature. Holds
    /// up to `l1_entries` more responses (none when that is 0). Default true.
    pub node_fills: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_entries: 100_000,
            max_inflight_per_shard: 4096,
            l1_max_age_secs: None,
            max_shard_lag_ms: 0,
            unknown_serial_secs: 10,
            unknown_serial_entries: 65_536,
            node_fills: true,
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
    pub pkcs11: Option<Pkcs11Config>,
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
    pub mysql: Option<MysqlConfig>,
    /// See [`FeedConfig`].
    pub feed: FeedConfig,
    /// Redis L2, if configured.
    pub redis: Option<RedisConfig>,
    /// Admin listener address, if configured.
    pub admin: Option<SocketAddr>,
    /// The admin bearer token from `admin.token_file` (only with `admin`).
    pub admin_token: Option<AdminToken>,
    /// See [`CdnConfig`]; paths resolved.
    pub cdn: Option<CdnConfig>,
    /// Issuers with paths resolved.
    pub issuers: Vec<IssuerConfig>,
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
