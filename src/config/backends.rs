//! The backend sections of the config: `[mysql]`, `[redis]` and
//! `[issuer.pkcs11]`. Plain data; the status source, the Redis layer and the
//! PKCS#11 signer build their runtime objects from them. `Debug` never shows a
//! password.

use std::path::PathBuf;

use super::secret::redact;

/// `[mysql]` in the config. `Debug` shows the URLs with their passwords
/// redacted.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// Primary, `mysql://user:password@host:port/database`. Writes (import,
    /// revoke) go here; lookups too unless `replica_url` is set.
    pub url: String,
    /// Optional read replica for lookups.
    #[serde(default)]
    pub replica_url: Option<String>,
    /// Lookup threads (one connection each). Default 4.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Most lookups answered by one query. Default 64, at most 4096.
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// While misses arrive fast enough to fill a query by a few more within
    /// it, how long a lookup thread waits for them before it queries, µs:
    /// fewer, fuller queries (MariaDB's cost is mostly per statement) for at
    /// most this much added to a miss; at a low rate nothing waits. 0: never
    /// wait. Default 2000; at most `timeout_ms` / 4.
    #[serde(default = "d_batch_wait")]
    pub batch_wait_us: u64,
    /// Lookups waiting for a thread; past it a miss gets `tryLater` at once.
    /// Default 4096.
    #[serde(default = "d_queue")]
    pub queue_depth: usize,
    /// Connect, read and write timeout of every query, and the longest a miss
    /// waits for its status, ms. A query that fails (this timeout included)
    /// marks the database down: misses then get `tryLater` at once until a
    /// probe, every [`PROBE_INTERVAL`], gets an answer. Default 1000.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// With `replica_url`: while the replica is further behind the primary
    /// than this, ms (measured on the change feed: how long ago the primary
    /// had what the replica has now), every lookup goes to the primary. A
    /// row the replica returns older than a change the node knows of is
    /// always read again from the primary, whatever the lag. Default 30000.
    #[serde(default = "d_max_lag")]
    pub max_replica_lag_ms: u64,
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &redact(&self.url))
            .field("replica_url", &self.replica_url.as_deref().map(redact))
            .field("threads", &self.threads)
            .field("batch", &self.batch)
            .field("batch_wait_us", &self.batch_wait_us)
            .field("queue_depth", &self.queue_depth)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_replica_lag_ms", &self.max_replica_lag_ms)
            .finish()
    }
}

fn d_threads() -> usize {
    4
}
fn d_batch() -> usize {
    64
}
fn d_batch_wait() -> u64 {
    2000
}
fn d_queue() -> usize {
    4096
}
fn d_timeout() -> u64 {
    1000
}
fn d_max_lag() -> u64 {
    30_000
}

/// `[redis]` in the config. `Debug` shows the URL with its password redacted.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port` (for a cluster, any node; see `cluster`).
    pub url: String,
    /// The URL names one node of a Redis Cluster; the client discovers the rest.
    #[serde(default)]
    pub cluster: bool,
    /// Keep L1 coherent through RESP3 client tracking (broadcast mode). Turn off
    /// behind proxies that cannot relay invalidations; L1 entries then expire
    /// after `cache.l1_max_age_secs`. Default true.
    #[serde(default = "d_true")]
    pub tracking: bool,
    /// Timeout of every Redis command, ms; a timeout is a cache miss. Default 100.
    #[serde(default = "d_cmd")]
    pub command_timeout_ms: u64,
    /// Connect timeout, ms. Default 1000.
    #[serde(default = "d_conn")]
    pub connect_timeout_ms: u64,
    /// Prefix of every key. Default `ocsp:`.
    #[serde(default = "d_prefix")]
    pub key_prefix: String,
    /// With a `rediss://` URL (TLS): the CA certificates (PEM) the server's
    /// certificate must chain to. Default: the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// With `rediss://`: a client certificate chain (PEM), for a server that
    /// asks for one (`tls-auth-clients yes`); with `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("cluster", &self.cluster)
            .field("tracking", &self.tracking)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

fn d_cmd() -> u64 {
    100
}
fn d_conn() -> u64 {
    1000
}
fn d_prefix() -> String {
    "ocsp:".into()
}

fn d_true() -> bool {
    true
}

/// `[issuer.pkcs11]`: which key to use, and how to log in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token holding the key (the slot is found by it).
    pub token_label: String,
    /// `CKA_LABEL` of the key (private and public objects); or use `key_id`.
    #[serde(default)]
    pub key_label: Option<String>,
    /// `CKA_ID` of the key, hex; or use `key_label`.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Environment variable holding the user PIN; or use `pin_file`.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// File whose first line is the user PIN; or use `pin_env`.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
}
