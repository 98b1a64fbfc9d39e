//! The L2 layer: signed responses shared through Redis (or Redis Cluster), one
//! `fred` client per shard.
//!
//! - **Read**: a fresh entry in Redis is answered without signing; a missing,
//!   stale, undecodable or tombstoned one falls through to the inner (live)
//!   source, whose answer is written back. A stale entry that is still valid
//!   (before its nextUpdate) is kept and served when the inner source's answer
//!   would be `tryLater` (database down, signers saturated or stuck).
//! - **Versioned writes**: each value carries the status revision it was signed
//!   from; a server-side script ([`WRITE_SCRIPT`]) refuses to replace a newer
//!   revision, so a slow miss that read the database before a revocation can't
//!   overwrite the revocation's tombstone or the revoked response.
//! - **Errors are misses**: every command has a timeout (`command_timeout_ms`);
//!   a timeout, a refused connection or a broken value means "sign live", never
//!   a failed request. fred reconnects in the background.
//! - **Invalidation**: with `tracking`, each client enables RESP3 client-side
//!   caching in broadcast mode for the change-key prefix (`{prefix}chg:`). A
//!   status change (`revoke`, `unrevoke`) sets the certificate's change key,
//!   which reaches every shard of every node, and each drops the certificate
//!   from its L1. Response keys (`{prefix}r:`) are not tracked, so cache fills
//!   cause no invalidation traffic (with broadcast tracking on them, every miss
//!   would message every other shard of every node). Behind a proxy that cannot
//!   track, L1 entries instead expire after `cache.l1_max_age_secs`.
//!
//! Multi-CertID responses are not shared (their keys could not be invalidated
//! per certificate); they are cached in L1 only when nothing can change.
//!
//! ## fred on glommio
//! fred 10.1's `glommio` build still calls `tokio::time::timeout` for connect
//! and command timeouts, which panics without a tokio reactor. [`TimerRuntime`]
//! is one small current-thread tokio runtime, on its own thread, whose only job
//! is to drive those timers; each shard enters its context for its whole life
//! (`Handle::enter`), so fred finds a timer driver and wake-ups come back to the
//! shard as ordinary cross-thread wakes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::RespVersion;

use super::{Answer, Query, Source};
use crate::cache::{CachedResponse, Origin};
use crate::clock::unix_now;
use crate::error::{disposition, Failure, OcspError};
use crate::issuer::Issuers;
use crate::metrics::{Stage, StageTimes};
use crate::ocsp::response::{ResponseStatus, Validity};
use crate::ocsp::{CertId, HashAlg, Serial};
use crate::status::CertStatus;

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
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::status::mysql::redact(&self.url))
            .field("cluster", &self.cluster)
            .field("tracking", &self.tracking)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

fn d_true() -> bool {
    true
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

/// The background tokio runtime that drives fred's timers (see module docs).
pub struct TimerRuntime {
    handle: tokio::runtime::Handle,
}

impl TimerRuntime {
    /// Starts the runtime thread.
    pub fn start() -> std::io::Result<TimerRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("fred-timers".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(TimerRuntime { handle })
    }

    /// Enters the runtime on this thread; keep the guard for the thread's life.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle.enter()
    }

    /// A clone of the handle (to enter from another thread).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

/// The server-side write: `KEYS[1]` = key, `ARGV[1]` = value, `ARGV[2]` = TTL
/// seconds. Values start with a 20-digit revision and a kind byte (`R`
/// response, `T` tombstone). A write goes through when the key is absent,
/// holds a lower revision, or holds a tombstone of the same revision (the
/// revocation's own re-signed response replacing its tombstone). Returns 1 when
/// written, 0 when refused.
pub const WRITE_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
local new_rev = tonumber(string.sub(ARGV[1], 1, 20))
if cur then
  local cur_rev = tonumber(string.sub(cur, 1, 20))
  local cur_kind = string.sub(cur, 21, 21)
  if cur_rev == nil then cur_rev = -1 end
  if cur_rev > new_rev or (cur_rev == new_rev and cur_kind ~= 'T') then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"#;

/// SHA-1 (hex) of [`WRITE_SCRIPT`], for `EVALSHA`.
fn write_script_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| {
        HashAlg::Sha1.digest(WRITE_SCRIPT.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Runs [`WRITE_SCRIPT`] by hash (`EVALSHA`, no script text on the wire), falling
/// back to `EVAL` (which also caches it) when the server does not have it yet.
pub async fn write_versioned(client: &Client, key: String, value: &[u8], ttl: u64) -> Result<i64, Error> {
    let args = || vec![Value::from(value), Value::from(ttl as i64)];
    match client.evalsha::<i64, _, _, _>(write_script_sha(), vec![key.clone()], args()).await {
        Err(e) if e.details().contains("NOSCRIPT") => client.eval(WRITE_SCRIPT, vec![key], args()).await,
        other => other,
    }
}

/// Redis key of the response for one CertID: `{prefix}r:{issuer}:{hash}:{serial}`.
/// Response keys are not tracked: fills by other shards need not evict anyone.
pub fn key_for(prefix: &str, issuer_name: &str, alg: HashAlg, serial: &Serial) -> String {
    format!("{prefix}r:{issuer_name}:{}:{serial}", alg.name())
}

/// Redis key announcing a status change of a certificate:
/// `{prefix}chg:{issuer}:{serial}`. Only these keys are tracked (broadcast
/// mode, prefix [`change_prefix`]), so invalidation traffic is one message per
/// shard per *status change*, not per cache fill.
pub fn change_key(prefix: &str, issuer_name: &str, serial: &Serial) -> String {
    format!("{prefix}chg:{issuer_name}:{serial}")
}

/// The tracked prefix.
pub fn change_prefix(prefix: &str) -> String {
    format!("{prefix}chg:")
}

/// Parses a change key back into the CertIDs (every hash algorithm) whose L1
/// entries must go.
pub fn certids_of_change(prefix: &str, issuers: &Issuers, key: &[u8]) -> Option<Vec<CertId>> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(&change_prefix(prefix))?;
    let (name, serial) = key.rsplit_once(':')?;
    let serial = Serial::from_hex(serial).ok()?;
    let issuer = issuers.by_name(name)?;
    Some(HashAlg::ALL.into_iter().map(|alg| CertId { issuer, alg, serial }).collect())
}

const HEADER: usize = 21;

/// Encodes a tombstone: "this key's status changed at `revision`; re-sign".
pub fn encode_tombstone(revision: u64) -> Vec<u8> {
    format!("{revision:020}T").into_bytes()
}

/// Encodes a signed response.
pub fn encode_response(r: &CachedResponse) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + 40 + r.statuses.len() * 10 + r.der.len());
    v.extend_from_slice(format!("{:020}R", r.revision).as_bytes());
    for t in [r.validity.produced_at, r.validity.this_update, r.validity.next_update, r.refresh_at] {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v.push(r.statuses.len() as u8);
    for s in r.statuses.iter() {
        match *s {
            CertStatus::Good => v.extend_from_slice(&[0; 10]),
            CertStatus::Revoked { at, reason } => {
                v.push(1);
                v.extend_from_slice(&at.to_be_bytes());
                v.push(reason as u8);
            }
        }
    }
    v.extend_from_slice(&r.der);
    v
}

/// What a Redis value holds.
#[derive(Debug)]
pub enum Stored {
    /// A signed response.
    Response(CachedResponse),
    /// A tombstone of this revision.
    Tombstone(u64),
}

/// Decodes a value; `None` when it is not one of ours (treated as a miss).
pub fn decode(v: &[u8]) -> Option<Stored> {
    if v.len() < HEADER {
        return None;
    }
    let revision: u64 = std::str::from_utf8(&v[..20]).ok()?.parse().ok()?;
    match v[20] {
        b'T' => Some(Stored::Tombstone(revision)),
        b'R' => {
            let mut p = HEADER;
            let u64_at = |p: &mut usize| -> Option<u64> {
                let b = v.get(*p..*p + 8)?;
                *p += 8;
                Some(u64::from_be_bytes(b.try_into().ok()?))
            };
            let produced_at = u64_at(&mut p)?;
            let this_update = u64_at(&mut p)?;
            let next_update = u64_at(&mut p)?;
            let refresh_at = u64_at(&mut p)?;
            let n = *v.get(p)? as usize;
            p += 1;
            let mut statuses = Vec::with_capacity(n);
            for _ in 0..n {
                let rec = v.get(p..p + 10)?;
                p += 10;
                statuses.push(match rec[0] {
                    0 => CertStatus::Good,
                    _ => CertStatus::Revoked {
                        at: u64::from_be_bytes(rec[1..9].try_into().ok()?),
                        reason: crate::status::mysql::reason_from_code(rec[9])?,
                    },
                });
            }
            let der = v.get(p..)?.to_vec();
            if der.first() != Some(&0x30) {
                return None;
            }
            let validity = Validity { produced_at, this_update, next_update };
            let mut r = CachedResponse::new(der, validity, refresh_at, Origin::Redis);
            r.statuses = statuses.into();
            r.revision = revision;
            Some(Stored::Response(r))
        }
        _ => None,
    }
}

/// Builds a client from the config (not yet connected).
pub fn client(cfg: &RedisConfig) -> Result<Client, String> {
    let mut c = if cfg.cluster { Config::from_url_clustered(&cfg.url) } else { Config::from_url(&cfg.url) }
        .map_err(|e| format!("bad Redis URL: {}", crate::status::mysql::redact(&e.to_string())))?;
    c.version = RespVersion::RESP3;
    // Commands fail at once while disconnected (a miss), instead of queueing.
    c.fail_fast = true;
    let mut b = Builder::from_config(c);
    b.with_connection_config(|cc| {
        cc.connection_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        cc.internal_command_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        cc.max_command_attempts = 1;
    })
    .with_performance_config(|p| {
        p.default_command_timeout = Duration::from_millis(cfg.command_timeout_ms);
    })
    .set_policy(ReconnectPolicy::new_exponential(0, 50, 2000, 2));
    b.build().map_err(|e| e.to_string())
}

/// Counters of this layer, per shard.
#[derive(Default, Debug)]
pub struct RedisStats {
    /// Fresh responses answered from Redis.
    pub hits: std::cell::Cell<u64>,
    /// Absent, stale, tombstoned or undecodable entries.
    pub misses: std::cell::Cell<u64>,
    /// Commands that failed or timed out (treated as misses).
    pub errors: std::cell::Cell<u64>,
    /// Writes refused because Redis held a newer revision.
    pub refused_writes: std::cell::Cell<u64>,
}

fn bump(c: &std::cell::Cell<u64>) {
    c.set(c.get() + 1);
}

/// The Redis layer of one shard.
pub struct RedisL2 {
    client: Client,
    inner: Rc<dyn Source>,
    issuers: Arc<Issuers>,
    prefix: String,
    /// Counters.
    pub stats: RedisStats,
    /// The shard's stage histograms (`redis`: each GET's round trip).
    stages: Rc<StageTimes>,
}

impl RedisL2 {
    /// Wraps `inner` with Redis through `client` (connected by the caller);
    /// GETs are timed into `stages`.
    pub fn new(
        client: Client,
        inner: Rc<dyn Source>,
        issuers: Arc<Issuers>,
        prefix: String,
        stages: Rc<StageTimes>,
    ) -> RedisL2 {
        RedisL2 { client, inner, issuers, prefix, stats: RedisStats::default(), stages }
    }

    fn key(&self, q: &Query) -> Option<String> {
        match q.ids.as_slice() {
            [id] => Some(key_for(&self.prefix, &self.issuers.get(id.issuer).name, id.alg, &id.serial)),
            _ => None,
        }
    }

    /// The still-valid response held in Redis for `key`, if any, and whether
    /// it is fresh (before its refresh point). The GET is timed whatever its
    /// outcome: a timeout is time the request spent too.
    async fn read(&self, key: &str) -> Option<(CachedResponse, bool)> {
        let sent = Instant::now();
        let got = self.client.get::<Option<Vec<u8>>, _>(key).await;
        self.stages.record(Stage::Redis, sent.elapsed());
        let now = unix_now();
        match got {
            Ok(Some(v)) => match decode(&v) {
                // Before its refresh point, and (whatever a damaged or
                // hand-written record claims) before its nextUpdate.
                Some(Stored::Response(r)) if now < r.refresh_at && now < r.validity.next_update => {
                    bump(&self.stats.hits);
                    Some((r, true))
                }
                Some(Stored::Response(r)) if now < r.validity.next_update => {
                    bump(&self.stats.misses);
                    Some((r, false))
                }
                _ => {
                    bump(&self.stats.misses);
                    None
                }
            },
            Ok(None) => {
                bump(&self.stats.misses);
                None
            }
            Err(e) => {
                bump(&self.stats.errors);
                log::debug!("redis GET {key}: {e}");
                None
            }
        }
    }

    /// Writes `r` under `key` in the background (versioned; errors ignored:
    /// Redis only ever holds what can be regenerated).
    fn write_back(self: &Rc<Self>, key: String, r: &CachedResponse) {
        let ttl = r.validity.next_update.saturating_sub(unix_now());
        if ttl == 0 {
            return;
        }
        let value = encode_response(r);
        let me = self.clone();
        glommio::spawn_local(async move {
            let res = write_versioned(&me.client, key, &value, ttl).await;
            match res {
                Ok(0) => bump(&me.stats.refused_writes),
                Ok(_) => {}
                Err(e) => {
                    bump(&me.stats.errors);
                    log::debug!("redis write: {e}");
                }
            }
        })
        .detach();
    }
}

/// Whether `e` would be answered `tryLater` (the status source, the signers
/// or the shard's miss bound failed): then a stale but still valid response is
/// the better answer.
fn would_try_later(e: &OcspError) -> bool {
    disposition(&Failure::Ocsp(e.clone())).ocsp == Some(ResponseStatus::TryLater)
}

impl Source for Rc<RedisL2> {
    fn fetch(&self, q: Rc<Query>) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let Some(key) = me.key(&q) else { return me.inner.fetch(q).await };
            let stale = match me.read(&key).await {
                Some((r, true)) => return Ok(Rc::new(r)),
                Some((r, false)) => Some(r),
                None => None,
            };
            match me.inner.fetch(q).await {
                Ok(r) => {
                    me.write_back(key, &r);
                    Ok(r)
                }
                // Past its refresh point but before nextUpdate: re-signing
                // failed (database down, HSM slow), so serve it rather than
                // tryLater. A tombstone never gets here (a revocation
                // replaced it), so this is never an older status than the
                // database's last known one.
                // Checked again now: the failed fetch may have taken until
                // after its nextUpdate.
                Err(e) if would_try_later(&e) => match stale {
                    Some(r) if unix_now() < r.validity.next_update => Ok(Rc::new(r)),
                    _ => Err(e),
                },
                Err(e) => Err(e),
            }
        })
    }

    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let Some(key) = me.key(&q) else { return me.inner.revalidate(q, prev).await };
            // Redis holding this revision or a newer one is as good as a status
            // check: every change writes a higher revision there first.
            if let Some((r, true)) = me.read(&key).await {
                if r.revision >= prev.revision {
                    return Ok(Rc::new(r));
                }
            }
            let r = me.inner.revalidate(q, prev.clone()).await?;
            if !Rc::ptr_eq(&r, &prev) {
                me.write_back(key, &r);
            }
            Ok(r)
        })
    }
}

/// Runs the invalidation loop of one shard: every certificate whose change key
/// Redis reports modified is dropped from this shard's L1 (all hash-algorithm
/// variants). On a reconnect, invalidations may have been missed, so the whole
/// L1 is cleared.
pub async fn invalidation_loop(
    client: Client,
    issuers: Arc<Issuers>,
    prefix: String,
    drop_key: impl Fn(Option<CertId>) + 'static,
) {
    // Invalidations name change keys; each drops every hash-algorithm variant.
    let rx = client.invalidation_rx();
    let reconnects = client.reconnect_rx();
    loop {
        let inv = futures_lite::future::or(async { rx.recv().await.ok().map(Some) }, async {
            reconnects.recv().await.ok().map(|_| None)
        })
        .await;
        match inv {
            Some(Some(inv)) => {
                for k in inv.keys {
                    for id in certids_of_change(&prefix, &issuers, k.as_bytes()).unwrap_or_default() {
                        drop_key(Some(id));
                    }
                }
            }
            Some(None) => drop_key(None), // reconnected: forget everything
            None => return,               // client gone
        }
    }
}

/// Turns an invalidation key list entry into the cache key L1 uses, for
/// callers that keep their own map.
pub fn l1_key(id: CertId) -> Vec<u8> {
    crate::source::filter::cache_key(&[id])
}

/// After a status change at `revision`: writes tombstones over every
/// hash-algorithm response key of the certificate (so no older response can be
/// served or written back), then sets its change key, which every tracking
/// shard is told about. Each is kept `ttl` seconds (at least the response
/// lifetime).
pub async fn tombstone(
    client: &Client,
    prefix: &str,
    issuer: &str,
    serial: &Serial,
    revision: u64,
    ttl: u64,
) -> Result<(), String> {
    let value = encode_tombstone(revision);
    for alg in HashAlg::ALL {
        let key = key_for(prefix, issuer, alg, serial);
        write_versioned(client, key, &value, ttl).await.map_err(|e| e.to_string())?;
    }
    let _: () = client
        .set(
            change_key(prefix, issuer, serial),
            revision as i64,
            Some(Expiration::EX(ttl as i64)),
            None,
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::RevocationReason;

    #[test]
    fn values_round_trip() {
        let mut r = CachedResponse::new(
            vec![0x30, 1, 2],
            Validity { produced_at: 5, this_update: 4, next_update: 9 },
            7,
            Origin::Signed,
        );
        r.statuses =
            vec![CertStatus::Good, CertStatus::Revoked { at: 3, reason: RevocationReason::KeyCompromise }]
                .into();
        r.revision = 42;
        let v = encode_response(&r);
        assert_eq!(&v[..21], b"00000000000000000042R");
        match decode(&v).unwrap() {
            Stored::Response(d) => {
                assert_eq!(d.der, r.der);
                assert_eq!(d.validity, r.validity);
                assert_eq!(d.refresh_at, 7);
                assert_eq!(d.statuses, r.statuses);
                assert_eq!(d.revision, 42);
                assert_eq!(d.etag, r.etag);
                assert_eq!(d.origin, Origin::Redis, "a decoded copy knows it came from Redis");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(&encode_tombstone(7)), Some(Stored::Tombstone(7))));
        assert!(decode(b"garbage").is_none());
        assert!(decode(&v[..30]).is_none());
    }
}
