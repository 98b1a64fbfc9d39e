//! The L2 layer: signed responses shared through Redis (or Redis Cluster), one
//! `fred` client per shard. Redis is a cache of the database, never a second
//! authority.
//!
//! - **Read**: a fresh copy is answered without signing only if it is
//!   believable ([`RedisL2`]): its DER says what its header says, for the
//!   CertID asked (a damaged or misfiled value is a miss); its revision is at
//!   least the node's floor for the certificate (a change the change feed has
//!   brought, which Redis may not have yet, e.g. while it was stopped, or on
//!   a promoted replica that lacks recent writes); with statuses in memory
//!   (`index.txt`), it says what the table says, so an edited file and a
//!   reload change what every node serves. A copy vouched for before the
//!   node's trust horizon (changes may have been missed: see
//!   `crate::feed::Floors::trust_from`) is checked against the database
//!   first. Anything else falls through to the live source, no older than
//!   the tombstone or copy found; its answer is written back. A stale but
//!   valid copy is served when the live answer would be `tryLater`, checked
//!   against the floor again after that wait.
//! - **Versioned writes** ([`WRITE`]): each value carries the status revision
//!   it was signed from; an older revision never replaces a newer one, so a
//!   slow miss that read the database before a revocation can't overwrite
//!   the revocation's tombstone or the revoked response; a same-revision
//!   refresh replaces the older copy, so sharing goes on past the refresh
//!   point.
//! - **Tombstones** ([`TOMBSTONE`]): a change's revision over every response
//!   key of the certificate (its keys share a Cluster slot, so one script
//!   call); written by every node's tombstone writer from the change feed,
//!   and by `revoke` / `POST /revoke`, which also set the change key.
//! - **Errors are misses**: every command has a timeout (`command_timeout_ms`);
//!   a timeout, a refused connection or a broken value means "sign live", never
//!   a failed request. fred reconnects in the background.
//! - **Invalidation fast path**: with `tracking`, each client enables RESP3
//!   client-side caching in broadcast mode for the change-key prefix
//!   (`{prefix}chg:`). `revoke` / `POST /revoke` set the certificate's change
//!   key, which reaches every shard of every node at once. Correctness does
//!   not depend on it: the change feed reaches every shard within
//!   `feed.bound_ms` whoever wrote the change. Response keys are not tracked,
//!   so cache fills cause no invalidation traffic.
//!
//! Multi-CertID responses are not shared: they live in L1 only, dropped by a
//! change of any certificate they name.
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
use crate::feed::Fence;
use crate::issuer::Issuers;
use crate::metrics::{Stage, StageTimes};
use crate::ocsp::response::{ResponseStatus, Validity};
use crate::ocsp::{CertId, HashAlg, Serial};
use crate::status::{CertStatus, StatusSource};

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

/// A server-side script, sent by hash (`EVALSHA`, no script text on the
/// wire) and by text once when the server does not have it yet.
pub struct Script {
    text: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Script {
    const fn new(text: &'static str) -> Script {
        Script { text, sha: std::sync::OnceLock::new() }
    }

    /// The script's source.
    pub fn text(&self) -> &'static str {
        self.text
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            HashAlg::Sha1.digest(self.text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// Runs it on `keys` (one slot in a cluster) with `args`.
    pub async fn run(&self, client: &Client, keys: Vec<String>, args: Vec<Value>) -> Result<i64, Error> {
        match client.evalsha::<i64, _, _, _>(self.sha(), keys.clone(), args.clone()).await {
            Err(e) if e.details().contains("NOSCRIPT") => client.eval(self.text, keys, args).await,
            other => other,
        }
    }
}

/// The versioned write of a response: `KEYS[1]` = key, `ARGV[1]` = value,
/// `ARGV[2]` = TTL seconds. Values start with a 20-digit revision and a kind
/// byte (`S` response, then its 20-digit vouched-at time; `T` tombstone).
/// A response goes in when the key is absent or holds a lower revision, a
/// tombstone of the same revision (the change's own response replacing it),
/// or a response of the same revision vouched for earlier (a refresh
/// replaces the older copy, so the shared cache keeps sharing after the
/// refresh point). A tombstone never replaces its own revision. Returns 1
/// when written, 0 when refused.
pub static WRITE: Script = Script::new(
    r#"
local cur = redis.call('GET', KEYS[1])
local new_rev = tonumber(string.sub(ARGV[1], 1, 20))
local new_kind = string.sub(ARGV[1], 21, 21)
if cur then
  local cur_rev = tonumber(string.sub(cur, 1, 20)) or -1
  if cur_rev > new_rev then return 0 end
  if cur_rev == new_rev then
    if new_kind == 'T' then return 0 end
    if string.sub(cur, 21, 21) == 'S' then
      local cur_v = tonumber(string.sub(cur, 22, 41)) or -1
      local new_v = tonumber(string.sub(ARGV[1], 22, 41)) or -1
      if new_v <= cur_v then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"#,
);

/// A certificate's status changed at a revision: `KEYS` = its response keys
/// (every hash algorithm; one slot, see [`key_for`]) and, when `ARGV[3]` is
/// `1`, its change key last; `ARGV[1]` = the tombstone, `ARGV[2]` = TTL.
/// Each response key holding a lower revision (or nothing) gets the
/// tombstone; then the change key, which tracking nodes hear of, is set.
/// Returns how many keys took the tombstone.
pub static TOMBSTONE: Script = Script::new(
    r#"
local new_rev = tonumber(string.sub(ARGV[1], 1, 20))
local last = #KEYS
if ARGV[3] == '1' then last = last - 1 end
local n = 0
for i = 1, last do
  local cur = redis.call('GET', KEYS[i])
  local cur_rev = -1
  if cur then cur_rev = tonumber(string.sub(cur, 1, 20)) or -1 end
  if cur_rev < new_rev then
    redis.call('SET', KEYS[i], ARGV[1], 'EX', tonumber(ARGV[2]))
    n = n + 1
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[#KEYS], tostring(new_rev), 'EX', tonumber(ARGV[2]))
end
return n
"#,
);

/// Raises a number kept under `KEYS[1]` to `ARGV[1]` (never lowers it): the
/// tombstone writers' shared position. Returns 1 when raised.
pub static RAISE: Script = Script::new(
    r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"#,
);

/// Runs [`WRITE`].
pub async fn write_versioned(client: &Client, key: String, value: &[u8], ttl: u64) -> Result<i64, Error> {
    WRITE.run(client, vec![key], vec![Value::from(value), Value::from(ttl as i64)]).await
}

/// The slot-sharing part of every key of one certificate: a Redis Cluster
/// hash tag, so its response keys (one per hash algorithm) and its change
/// key live on one node and one script call covers them all.
fn cert_tag(issuer_name: &str, serial: &Serial) -> String {
    format!("{{{issuer_name}:{serial}}}")
}

/// Redis key of the response for one CertID:
/// `{prefix}r:{<issuer>:<serial>}:<hash>`. Response keys are not tracked:
/// fills by other shards need not evict anyone.
pub fn key_for(prefix: &str, issuer_name: &str, alg: HashAlg, serial: &Serial) -> String {
    format!("{prefix}r:{}:{}", cert_tag(issuer_name, serial), alg.name())
}

/// Every response key of a certificate (one per hash algorithm).
pub fn keys_of_cert(prefix: &str, issuer_name: &str, serial: &Serial) -> Vec<String> {
    HashAlg::ALL.into_iter().map(|alg| key_for(prefix, issuer_name, alg, serial)).collect()
}

/// Redis key announcing a status change of a certificate:
/// `{prefix}chg:{<issuer>:<serial>}`. Only these keys are tracked (broadcast
/// mode, prefix [`change_prefix`]), so invalidation traffic is one message per
/// shard per *status change*, not per cache fill.
pub fn change_key(prefix: &str, issuer_name: &str, serial: &Serial) -> String {
    format!("{prefix}chg:{}", cert_tag(issuer_name, serial))
}

/// The tracked prefix.
pub fn change_prefix(prefix: &str) -> String {
    format!("{prefix}chg:")
}

/// Where the tombstone writers keep their position (see `crate::feed`).
pub fn position_key(prefix: &str) -> String {
    format!("{prefix}feed:pos")
}

/// Parses a change key back into the CertIDs (every hash algorithm) whose L1
/// entries must go.
pub fn certids_of_change(prefix: &str, issuers: &Issuers, key: &[u8]) -> Option<Vec<CertId>> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(&change_prefix(prefix))?;
    let (name, serial) = key.strip_prefix('{')?.strip_suffix('}')?.rsplit_once(':')?;
    let serial = Serial::from_hex(serial).ok()?;
    let issuer = issuers.by_name(name)?;
    Some(HashAlg::ALL.into_iter().map(|alg| CertId { issuer, alg, serial }).collect())
}

/// Bytes before a response's binary part: revision (20 digits), kind,
/// vouched-at (20 digits).
const RESPONSE_HEADER: usize = 41;
/// A tombstone: revision and kind.
const TOMBSTONE_LEN: usize = 21;

/// Encodes a tombstone: "this key's status changed at `revision`; re-sign".
pub fn encode_tombstone(revision: u64) -> Vec<u8> {
    format!("{revision:020}T").into_bytes()
}

/// Encodes a signed response, vouched for at `vouched_at` (its signing time,
/// or a later re-check against the database).
pub fn encode_response(r: &CachedResponse, vouched_at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(RESPONSE_HEADER + 40 + r.statuses.len() * 10 + r.der.len());
    v.extend_from_slice(
        format!("{:020}S{:020}", r.revision, vouched_at.max(r.validity.produced_at)).as_bytes(),
    );
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

/// Decodes a value's header and body; `None` when it is not one of ours
/// (treated as a miss). The DER is not looked into here: see
/// [`crate::ocsp::response::agrees`], which a reader applies before use.
pub fn decode(v: &[u8]) -> Option<Stored> {
    if v.len() < TOMBSTONE_LEN {
        return None;
    }
    let digits = |b: &[u8]| -> Option<u64> { std::str::from_utf8(b).ok()?.parse().ok() };
    let revision = digits(&v[..20])?;
    match v[20] {
        b'T' if v.len() == TOMBSTONE_LEN => Some(Stored::Tombstone(revision)),
        b'S' => {
            let vouched_at = digits(v.get(21..RESPONSE_HEADER)?)?;
            let mut p = RESPONSE_HEADER;
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
            let validity = Validity { produced_at, this_update, next_update };
            let mut r = CachedResponse::new(der, validity, refresh_at, Origin::Redis);
            r.statuses = statuses.into();
            r.revision = revision;
            r.vouched_at = vouched_at;
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
    /// Values below the node's revision floor (a change this node has seen
    /// and Redis not yet): treated as misses.
    pub fenced: std::cell::Cell<u64>,
    /// Values whose header disagreed with their DER, or (`index.txt`) with
    /// the status table: treated as misses.
    pub rejected: std::cell::Cell<u64>,
    /// Values vouched for before the node's trust horizon, checked against
    /// the database before use.
    pub rechecked: std::cell::Cell<u64>,
}

fn bump(c: &std::cell::Cell<u64>) {
    c.set(c.get() + 1);
}

/// What a read found, after every check.
enum Found {
    /// A fresh copy that may be answered as it is.
    Fresh(CachedResponse),
    /// A fresh copy that must be checked against the database first (vouched
    /// for before the trust horizon).
    Unvouched(CachedResponse),
    /// A copy past its refresh point but still valid: re-sign, and serve it if
    /// that fails for want of capacity.
    Stale(CachedResponse),
    /// Nothing usable; a fetch must be at least this revision (a tombstone's,
    /// a fenced or superseded copy's).
    Nothing,
}

/// The Redis layer of one shard.
pub struct RedisL2 {
    client: Client,
    inner: Rc<dyn Source>,
    issuers: Arc<Issuers>,
    /// For sources that can say at once what they hold (`index.txt`): copies
    /// are checked against it.
    status: Arc<dyn StatusSource>,
    fence: Fence,
    prefix: String,
    /// Counters.
    pub stats: RedisStats,
    /// The shard's stage histograms (`redis`: each GET's round trip).
    stages: Rc<StageTimes>,
}

impl RedisL2 {
    /// Wraps `inner` with Redis through `client` (connected by the caller);
    /// GETs are timed into `stages`; copies are held to `fence` and, where it
    /// can say at once, to `status`.
    pub fn new(
        client: Client,
        inner: Rc<dyn Source>,
        issuers: Arc<Issuers>,
        status: Arc<dyn StatusSource>,
        fence: Fence,
        prefix: String,
        stages: Rc<StageTimes>,
    ) -> RedisL2 {
        RedisL2 { client, inner, issuers, status, fence, prefix, stats: RedisStats::default(), stages }
    }

    fn key(&self, q: &Query) -> Option<String> {
        match q.ids.as_slice() {
            [id] => Some(key_for(&self.prefix, &self.issuers.get(id.issuer).name, id.alg, &id.serial)),
            _ => None,
        }
    }

    /// Whether a decoded copy says what it claims and what the node holds:
    /// its DER agrees with its header and the CertID asked for, it is no
    /// older than the floor, and an in-memory status table (if that is the
    /// source) says the same.
    fn believable(&self, r: &CachedResponse, id: &CertId, floor: u64) -> bool {
        if r.revision < floor {
            bump(&self.stats.fenced);
            return false;
        }
        let issuer = self.issuers.get(id.issuer);
        let agrees =
            crate::ocsp::response::agrees(&r.der, issuer, std::slice::from_ref(id), &r.statuses, r.validity);
        let current = match self.status.peek(id.issuer, &id.serial) {
            None => true,
            Some(rec) => rec.map(|rec| rec.status) == r.statuses.first().copied(),
        };
        if !(agrees && current) {
            bump(&self.stats.rejected);
        }
        agrees && current
    }

    /// Reads `key` for `id` and classifies what is there; also returns the
    /// revision a fetch must reach. The GET is timed whatever its outcome: a
    /// timeout is time the request spent too.
    async fn read(&self, key: &str, id: &CertId, at_least: u64) -> (Found, u64) {
        let sent = Instant::now();
        let got = self.client.get::<Option<Vec<u8>>, _>(key).await;
        self.stages.record(Stage::Redis, sent.elapsed());
        // Read after the GET: a change seen meanwhile counts.
        let floor = self.fence.floor(id).max(at_least);
        let now = unix_now();
        let found = match got {
            Ok(Some(v)) => match decode(&v) {
                Some(Stored::Response(r))
                    if now < r.validity.next_update && self.believable(&r, id, floor) =>
                {
                    let known = floor.max(r.revision);
                    let vouched = r.vouched_at >= self.fence.trust_from();
                    return match (now >= r.refresh_at, vouched) {
                        (false, true) => (Found::Fresh(r), known),
                        (false, false) => (Found::Unvouched(r), known),
                        // Stale: re-signed, and served if that fails, but
                        // only if nothing says it may predate a lost change.
                        (true, true) => (Found::Stale(r), known),
                        (true, false) => (Found::Nothing, known),
                    };
                }
                Some(Stored::Tombstone(t)) => return (Found::Nothing, floor.max(t)),
                _ => Found::Nothing,
            },
            Ok(None) => Found::Nothing,
            Err(e) => {
                bump(&self.stats.errors);
                log::debug!("redis GET {key}: {e}");
                return (Found::Nothing, floor);
            }
        };
        (found, floor)
    }

    /// Writes `r` under `key` in the background (versioned; errors ignored:
    /// Redis only ever holds what can be regenerated).
    fn write_back(self: &Rc<Self>, key: String, r: &CachedResponse, vouched_at: u64) {
        let ttl = r.validity.next_update.saturating_sub(unix_now());
        if ttl == 0 {
            return;
        }
        let value = encode_response(r, vouched_at);
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
    fn fetch(&self, q: Rc<Query>, at_least: u64) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let (Some(key), [id]) = (me.key(&q), q.ids.as_slice()) else {
                return me.inner.fetch(q, at_least).await;
            };
            let id = *id;
            let (found, known) = me.read(&key, &id, at_least).await;
            let stale = match found {
                Found::Fresh(r) => {
                    bump(&me.stats.hits);
                    return Ok(Rc::new(r));
                }
                Found::Unvouched(r) => {
                    // Made before this node's trust horizon: the database
                    // says whether it still holds (then it is vouched for
                    // anew in Redis, for every node) or a change superseded
                    // it (then a new response is signed).
                    bump(&me.stats.rechecked);
                    let r = Rc::new(r);
                    // Vouched for as of before the read, not after it.
                    let asked = unix_now();
                    let checked = me.inner.recheck(q.clone(), r.clone()).await?;
                    let vouched = if Rc::ptr_eq(&checked, &r) { asked } else { checked.validity.produced_at };
                    me.write_back(key, &checked, vouched);
                    return Ok(checked);
                }
                Found::Stale(r) => Some(r),
                Found::Nothing => None,
            };
            bump(&me.stats.misses);
            match me.inner.fetch(q, known).await {
                Ok(r) => {
                    me.write_back(key, &r, r.validity.produced_at);
                    Ok(r)
                }
                // Past its refresh point but before nextUpdate: re-signing
                // failed (database down, HSM slow), so serve it rather than
                // tryLater, if it is still valid and no change of the
                // certificate has been seen since it was read (the failed
                // fetch took time).
                Err(e) if would_try_later(&e) => match stale {
                    Some(r) if r.valid_at(unix_now()) && r.revision >= me.fence.floor(&id) => Ok(Rc::new(r)),
                    _ => Err(e),
                },
                Err(e) => Err(e),
            }
        })
    }

    /// An L1 entry past its max age: checked against the database, not
    /// against Redis (the age is the safety net for a change nothing told
    /// this node of, which Redis would not know either). A changed response
    /// is written back.
    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        let me = self.clone();
        Box::pin(async move {
            let Some(key) = me.key(&q) else { return me.inner.revalidate(q, prev).await };
            let r = me.inner.revalidate(q, prev.clone()).await?;
            if !Rc::ptr_eq(&r, &prev) {
                me.write_back(key, &r, r.validity.produced_at);
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

/// After a status change at `revision`: tombstones every hash-algorithm
/// response key of the certificate (so no older response can be served or
/// written back) and, with `announce`, sets its change key, which every
/// tracking shard is told about: one script call. Each is kept `ttl` seconds
/// (at least the response lifetime). Returns how many keys took it.
pub async fn tombstone(
    client: &Client,
    prefix: &str,
    issuer: &str,
    serial: &Serial,
    revision: u64,
    ttl: u64,
    announce: bool,
) -> Result<i64, Error> {
    let mut keys = keys_of_cert(prefix, issuer, serial);
    if announce {
        keys.push(change_key(prefix, issuer, serial));
    }
    let args = vec![
        Value::from(encode_tombstone(revision).as_slice()),
        Value::from(ttl as i64),
        Value::from(if announce { "1" } else { "0" }),
    ];
    TOMBSTONE.run(client, keys, args).await
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
        let v = encode_response(&r, 6);
        assert_eq!(&v[..41], b"00000000000000000042S00000000000000000006");
        match decode(&v).unwrap() {
            Stored::Response(d) => {
                assert_eq!(d.der, r.der);
                assert_eq!(d.validity, r.validity);
                assert_eq!(d.refresh_at, 7);
                assert_eq!(d.statuses, r.statuses);
                assert_eq!(d.revision, 42);
                assert_eq!(d.vouched_at, 6);
                assert_eq!(d.etag, r.etag);
                assert_eq!(d.origin, Origin::Redis, "a decoded copy knows it came from Redis");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&encode_response(&r, 0)[21..41], b"00000000000000000005", "never vouched before signing");
        assert!(matches!(decode(&encode_tombstone(7)), Some(Stored::Tombstone(7))));
        assert!(decode(b"garbage").is_none());
        assert!(decode(&v[..30]).is_none());
        let mut old = v.clone();
        old[20] = b'R';
        assert!(decode(&old).is_none(), "the previous format is a miss, not misread");
    }

    #[test]
    fn a_certificate_s_keys_share_one_cluster_slot() {
        let s = Serial::from_hex("0A1B").unwrap();
        let keys: Vec<String> = keys_of_cert("ocsp:", "my:CA", &s)
            .into_iter()
            .chain([change_key("ocsp:", "my:CA", &s)])
            .collect();
        for k in &keys {
            let tag = &k[k.find('{').unwrap() + 1..k.find('}').unwrap()];
            assert_eq!(tag, "my:CA:0A1B", "{k}");
        }
        assert_eq!(key_for("ocsp:", "test", HashAlg::Sha1, &s), "ocsp:r:{test:0A1B}:sha1");
        assert_eq!(change_key("ocsp:", "test", &s), "ocsp:chg:{test:0A1B}");
    }
}
