//! Certificate status in MariaDB/MySQL, the authoritative production source.
//!
//! The `mysql` crate blocks, so it never runs on a shard: lookups go through a
//! bounded queue to a small pool of OS threads, each holding its own
//! connection (opened on first use, dropped after any error so a half-read
//! answer is never mistaken for the next one). A thread takes every lookup
//! waiting (up to `batch`) and answers them with one `SELECT … WHERE issuer = ?
//! AND serial IN (…)` per issuer, so a storm of misses costs a few round trips
//! instead of one per request. Every socket read, write and connect has a
//! timeout; the shard also bounds its own wait. A full queue, a timeout or a
//! database error is a `StatusError`, which the responder turns into
//! `tryLater` — never a guess.
//!
//! **Read replicas.** With `replica_url` lookups read the replica, but never
//! an older row than the node knows of: each lookup carries the newest
//! revision the change feed, a Redis tombstone or the response being replaced
//! has shown for its certificate ([`Need::at_least`]), and
//! a replica row below it (or missing while a change is known) is read again
//! from the primary, all of a batch's in one query; a primary row still below
//! it is [`StatusError::Behind`] (`tryLater`). A lag monitor measures how far
//! the replica is behind (on the change feed both hold, no replication
//! privileges needed); past `max_replica_lag_ms`, or while the replica cannot
//! be read, lookups go to the primary.
//!
//! **Failure policy.** A failed batch marks the database down: from then on a
//! lookup fails at once (the shard serves what L1 and Redis hold and answers
//! other misses `tryLater` without waiting), and one prober thread tries the
//! database every [`PROBE_INTERVAL`] until it answers. [`MysqlStatus::start`]
//! does not need the database (a node can start during an outage and serve
//! what Redis holds); it is then down from the start. [`MysqlStatus::check`]
//! is the strict test `check-config` makes.
//!
//! The schema (`migrations/`) is applied by `ocsp-origin db migrate`; see
//! [`crate::db`] for the writer side (import, revoke).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts};

use super::{CertRecord, CertStatus, LookupFuture, Need, StatusError, StatusSource};
use crate::ocsp::{IssuerId, RevocationReason, Serial};

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
    /// Most lookups answered by one query. Default 64.
    #[serde(default = "d_batch")]
    pub batch: usize,
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
fn d_queue() -> usize {
    4096
}
fn d_timeout() -> u64 {
    1000
}
fn d_max_lag() -> u64 {
    30_000
}

impl MysqlConfig {
    /// Connection options for `url` with this config's timeouts; `pool_max`
    /// connections.
    pub fn opts(&self, url: &str, pool_max: usize) -> Result<Opts, String> {
        let base = Opts::from_url(url).map_err(|e| format!("bad MySQL URL: {}", redact(&e.to_string())))?;
        let t = Some(Duration::from_millis(self.timeout_ms));
        let constraints = PoolConstraints::new(1, pool_max.max(1)).ok_or("bad pool size")?;
        Ok(OptsBuilder::from_opts(base)
            .tcp_connect_timeout(t)
            .read_timeout(t)
            .write_timeout(t)
            .pool_opts(PoolOpts::default().with_constraints(constraints).with_reset_connection(false))
            .into())
    }
}

/// Replaces the password of every URL in `text` (`scheme://user:password@host`)
/// with `***`: for MySQL and Redis URLs and any error text that might quote
/// one. The user info ends at the authority's last `@` (a password may hold
/// an unescaped `@`); the authority ends at `/`, `?`, `#` or whitespace.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

struct Lookup {
    issuer: IssuerId,
    serial: Serial,
    /// How fresh the answer must be.
    need: Need,
    reply: oneshot::Sender<Result<Option<CertRecord>, StatusError>>,
}

/// How often the prober tries an unreachable database. Each try is one
/// connect plus one `SELECT`, each bounded by `timeout_ms`; so after the
/// database returns, lookups resume within about this plus one round trip.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How often the replica's lag is measured.
pub const LAG_INTERVAL: Duration = Duration::from_millis(500);

/// Whether the database answered the last time it was asked. Shared by the
/// shards (which fail fast while it is down), the lookup threads (which trip
/// it) and the prober (which clears it).
///
/// Without it every miss during an outage would queue, take a lookup thread
/// and wait the full `timeout_ms` (a stopped server still accepts TCP
/// connections into its backlog, so even a connect hangs until the read
/// timeout); with it only the first batch pays that, and later misses get
/// `tryLater` at once while one prober thread, not a client, waits on the
/// database.
struct Health {
    /// Set by a failed batch, cleared by a successful probe.
    down: AtomicBool,
    /// When it went down (for the recovery log line).
    since: Mutex<Option<Instant>>,
    /// Wakes the prober.
    wake: flume::Sender<()>,
}

impl Health {
    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A batch failed with `why`: fail fast from now on and start probing.
    fn trip(&self, why: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            if let Ok(mut s) = self.since.lock() {
                *s = Some(Instant::now());
            }
            log::warn!(
                "status database unreachable ({why}); misses answer tryLater (cached responses are still \
                 served) until it answers again"
            );
            let _ = self.wake.try_send(());
        }
    }

    /// A probe succeeded.
    fn clear(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            let down_for = self.since.lock().ok().and_then(|mut s| s.take()).map(|t| t.elapsed());
            log::warn!(
                "status database reachable again after {:.1} s",
                down_for.unwrap_or_default().as_secs_f64()
            );
        }
    }
}

/// How far the replica is behind, and what the fences cost: shared by the
/// lag monitor (which writes the lag), the lookup threads (which route by it
/// and count) and `/metrics`.
#[derive(Default)]
struct Replica {
    /// Milliseconds the replica is behind the primary (`u64::MAX`: it
    /// cannot be read); 0 without a replica.
    lag_ms: AtomicU64,
    /// Lookups read again from the primary because the replica's row was
    /// older than a change the node knows of.
    fenced_rereads: AtomicU64,
    /// Lookups sent to the primary because the replica lagged too far.
    routed_to_primary: AtomicU64,
    /// Lookups that failed because even the primary's row was too old.
    behind: AtomicU64,
}

/// Connection options of each side of a read-replica set-up.
#[derive(Clone)]
struct Sides {
    primary: Opts,
    /// `None`: lookups read the primary.
    replica: Option<Opts>,
    max_lag_ms: u64,
}

/// The MariaDB/MySQL status source.
pub struct MysqlStatus {
    tx: flume::Sender<Lookup>,
    timeout: Duration,
    health: Arc<Health>,
    replica: Arc<Replica>,
    has_replica: bool,
}

impl MysqlStatus {
    /// Checks that the database can be reached and the schema is there (what
    /// `check-config` reports; `serve` starts without it, see [`MysqlStatus::start`]).
    pub fn check(cfg: &MysqlConfig) -> Result<(), String> {
        for url in std::iter::once(&cfg.url).chain(cfg.replica_url.as_ref()) {
            let mut conn = Conn::new(cfg.opts(url, 1)?).map_err(|e| redact(&e.to_string()))?;
            probe(&mut conn)?;
        }
        Ok(())
    }

    /// Starts the lookup threads, the prober and (with a replica) the lag
    /// monitor. `names` maps issuer ids to the names stored in the `issuer`
    /// column.
    ///
    /// Does not need the database: connections are opened on first use, and
    /// a database that cannot be reached now is logged and treated like one
    /// that went away (misses answer `tryLater` at once until a probe
    /// succeeds), so a node can start, and serve what Redis holds, while the
    /// database is down. A database that answers but refuses (wrong
    /// credentials, no such database or schema), a bad URL or a failure to
    /// start threads is an error.
    pub fn start(cfg: &MysqlConfig, names: HashMap<IssuerId, String>) -> Result<MysqlStatus, String> {
        let sides = Sides {
            primary: cfg.opts(&cfg.url, 1)?,
            replica: cfg.replica_url.as_deref().map(|u| cfg.opts(u, 1)).transpose()?,
            max_lag_ms: cfg.max_replica_lag_ms,
        };
        let (wake, woken) = flume::bounded(1);
        let health = Arc::new(Health { down: AtomicBool::new(false), since: Mutex::new(None), wake });
        let replica = Arc::new(Replica::default());
        let (tx, rx) = flume::bounded::<Lookup>(cfg.queue_depth.max(1));
        let names = Arc::new(names);
        for i in 0..cfg.threads.max(1) {
            let (rx, sides, names, health, replica) =
                (rx.clone(), sides.clone(), names.clone(), health.clone(), replica.clone());
            let batch = cfg.batch.max(1);
            std::thread::Builder::new()
                .name(format!("mysql-{i}"))
                .spawn(move || lookup_thread(rx, sides, names, batch, health, replica))
                .map_err(|e| e.to_string())?;
        }
        // The prober tries each side lookups may use: a batch that failed
        // on both can go on as soon as either answers.
        let probe_opts: Vec<Opts> = sides.replica.iter().cloned().chain([sides.primary.clone()]).collect();
        let weak = Arc::downgrade(&health);
        std::thread::Builder::new()
            .name("mysql-probe".into())
            .spawn(move || prober(probe_opts, weak, woken))
            .map_err(|e| e.to_string())?;
        if let Some(replica_opts) = sides.replica.clone() {
            let (primary, weak) = (sides.primary.clone(), Arc::downgrade(&replica));
            std::thread::Builder::new()
                .name("mysql-lag".into())
                .spawn(move || lag_monitor(primary, replica_opts, weak))
                .map_err(|e| e.to_string())?;
        }
        // Find out now whether it is reachable, so the log says so at start-up
        // and the first misses need not find out the slow way. A database
        // that answers "no" (wrong credentials, no such database or table)
        // is a config error, not an outage: start-up stops and says so.
        for opts in std::iter::once(&sides.primary).chain(sides.replica.as_ref()) {
            let first = Conn::new(opts.clone()).and_then(|mut c| c.query_drop(SCHEMA_PROBE));
            match first {
                Ok(()) => {}
                Err(e) if refused_by_config(&e) => {
                    return Err(format!(
                        "{} (has `ocsp-origin db migrate` been run?)",
                        redact(&e.to_string())
                    ))
                }
                Err(e) => health.trip(&format!("at start-up: {}", redact(&e.to_string()))),
            }
        }
        Ok(MysqlStatus {
            tx,
            timeout: Duration::from_millis(cfg.timeout_ms),
            health,
            replica,
            has_replica: sides.replica.is_some(),
        })
    }
}

/// Whether the database answered, and refused for a reason no wait will fix:
/// access denied (1044, 1045, 1698), unknown database (1049), no such table
/// (1146).
fn refused_by_config(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(me) if matches!(me.code, 1044 | 1045 | 1049 | 1146 | 1698))
}

/// One cheap query that needs the whole schema (version 2: the change feed
/// too, without which nothing tells the nodes about changes).
const SCHEMA_PROBE: &str = "SELECT 1 FROM ocsp_certificates, ocsp_changes LIMIT 1";

fn probe(conn: &mut Conn) -> Result<(), String> {
    conn.query_drop(SCHEMA_PROBE)
        .map_err(|e| format!("{} (has `ocsp-origin db migrate` been run?)", redact(&e.to_string())))
}

/// While the database is down, tries it every [`PROBE_INTERVAL`] with a fresh
/// connection (the replica, then the primary) and clears `health` when one
/// answers. Sleeps while it is up; exits when the status source is dropped.
fn prober(sides: Vec<Opts>, health: std::sync::Weak<Health>, woken: flume::Receiver<()>) {
    loop {
        match woken.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        loop {
            let Some(h) = health.upgrade() else { return };
            if !h.is_down() {
                break;
            }
            drop(h);
            let try_one =
                |o: &Opts| Conn::new(o.clone()).map_err(|e| e.to_string()).and_then(|mut c| probe(&mut c));
            let mut ok = Err("no database to probe".to_string());
            for o in &sides {
                ok = try_one(o);
                if ok.is_ok() {
                    break;
                }
            }
            match (ok, health.upgrade()) {
                (_, None) => return,
                (Ok(()), Some(h)) => {
                    h.clear();
                    break;
                }
                (Err(e), Some(_)) => log::debug!("status database probe: {}", redact(&e)),
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
}

/// Measures how far the replica is behind, every [`LAG_INTERVAL`], from the
/// change feed both sides hold: the primary's newest seq is noted with the
/// time it was first seen; the replica's lag is how long ago the primary had
/// the first seq the replica still lacks. No replication privileges are
/// needed, and it measures what lookups see (applied rows), not the I/O
/// thread. Exits when the status source is dropped.
fn lag_monitor(primary: Opts, replica: Opts, shared: std::sync::Weak<Replica>) {
    let mut seen: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
    let (mut p, mut r): (Option<Conn>, Option<Conn>) = (None, None);
    let max_of = |c: &mut Option<Conn>, opts: &Opts| -> Option<u64> {
        let conn = match c {
            Some(c) => c,
            None => c.insert(Conn::new(opts.clone()).ok()?),
        };
        match conn.query_first::<Option<u64>, _>("SELECT MAX(seq) FROM ocsp_changes") {
            Ok(v) => Some(v.flatten().unwrap_or(0)),
            Err(_) => {
                *c = None;
                None
            }
        }
    };
    loop {
        let Some(shared) = shared.upgrade() else { return };
        if let Some(top) = max_of(&mut p, &primary) {
            if seen.back().is_none_or(|(s, _)| *s < top) {
                seen.push_back((top, Instant::now()));
            }
        }
        let lag = match max_of(&mut r, &replica) {
            None => u64::MAX,
            Some(have) => {
                // Observations the replica has caught up with are done.
                while seen.len() > 1 && seen.get(1).is_some_and(|(s, _)| *s <= have) {
                    seen.pop_front();
                }
                match seen.iter().find(|(s, _)| *s > have) {
                    None => 0,
                    Some((_, at)) => at.elapsed().as_millis() as u64,
                }
            }
        };
        if seen.len() > 10_000 {
            seen.pop_front();
        }
        let before = shared.lag_ms.swap(lag, Ordering::Relaxed);
        if lag == u64::MAX && before != u64::MAX {
            log::warn!("read replica unreachable: status lookups go to the primary");
        } else if lag != u64::MAX && before == u64::MAX {
            log::warn!("read replica reachable again");
        }
        drop(shared);
        std::thread::sleep(LAG_INTERVAL);
    }
}

/// This thread's connections, opened on first use and dropped after any
/// error: a connection whose query failed half-way (a read timeout) may still
/// have the rest of that answer in flight, so it is never reused.
#[derive(Default)]
struct Conns {
    primary: Option<Conn>,
    replica: Option<Conn>,
}

fn lookup_thread(
    rx: flume::Receiver<Lookup>,
    sides: Sides,
    names: Arc<HashMap<IssuerId, String>>,
    batch: usize,
    health: Arc<Health>,
    replica: Arc<Replica>,
) {
    let mut conns = Conns::default();
    let mut jobs: Vec<Lookup> = Vec::with_capacity(batch);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        jobs.retain(|j| !j.reply.is_canceled());
        if jobs.is_empty() {
            continue;
        }
        if health.is_down() {
            // Lookups queued before the trip: answer them at once too.
            for j in jobs.drain(..) {
                let _ = j.reply.send(Err(StatusError::Unavailable("status database unreachable".into())));
            }
            continue;
        }
        let started = Instant::now();
        let result = serve_batch(&mut conns, &sides, &names, &jobs, &replica);
        if started.elapsed() > Duration::from_secs(1) {
            log::warn!("status lookup of {} serials took {:?}", jobs.len(), started.elapsed());
        }
        match result {
            Ok(answers) => {
                for (j, a) in jobs.drain(..).zip(answers) {
                    let _ = j.reply.send(a);
                }
            }
            Err(e) => {
                health.trip(&e);
                for j in jobs.drain(..) {
                    let _ = j.reply.send(Err(StatusError::Unavailable(e.clone())));
                }
            }
        }
    }
}

/// What one batch needs from a side: (issuer, serial) pairs.
type Found = HashMap<(IssuerId, Serial), CertRecord>;

/// Answers a batch, in job order. Lookups read the replica while it is within
/// `max_replica_lag_ms` (else the primary); a job whose replica row is older
/// than its `at_least` (or missing while the node knows of a change), or
/// that asked for the primary, is read from the primary, all such jobs in one
/// query; a primary row still older fails that job with
/// [`StatusError::Behind`]. The batch fails as a whole only when the side it
/// needed cannot be read.
fn serve_batch(
    conns: &mut Conns,
    sides: &Sides,
    names: &HashMap<IssuerId, String>,
    jobs: &[Lookup],
    replica: &Replica,
) -> Result<Vec<Result<Option<CertRecord>, StatusError>>, String> {
    let lag = replica.lag_ms.load(Ordering::Relaxed);
    let via_replica = match &sides.replica {
        Some(_) if lag <= sides.max_lag_ms => true,
        Some(_) => {
            replica.routed_to_primary.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            false
        }
        None => false,
    };
    let key = |j: &Lookup| (j.issuer, j.serial);
    let mut found = Found::new();
    let mut to_primary: Vec<(IssuerId, Serial)> = jobs.iter().filter(|j| j.need.primary).map(key).collect();
    let replica_jobs: Vec<&Lookup> = jobs.iter().filter(|j| !j.need.primary).collect();
    match (&sides.replica, via_replica) {
        (Some(opts), true) if !replica_jobs.is_empty() => {
            let keys: Vec<(IssuerId, Serial)> = replica_jobs.iter().map(|j| key(j)).collect();
            match answer_batch(&mut conns.replica, opts, names, &keys) {
                Ok(f) => {
                    found = f;
                    let stale = |j: &Lookup| match found.get(&key(j)) {
                        Some(r) => r.revision < j.need.at_least,
                        None => j.need.at_least > 0,
                    };
                    let again: Vec<(IssuerId, Serial)> =
                        replica_jobs.iter().filter(|j| stale(j)).map(|j| key(j)).collect();
                    replica.fenced_rereads.fetch_add(again.len() as u64, Ordering::Relaxed);
                    to_primary.extend(again);
                }
                // The replica failed: the primary answers this batch (the lag
                // monitor moves later ones over within a second).
                Err(e) => {
                    log::debug!("replica lookup failed ({e}); reading the primary");
                    to_primary.extend(keys);
                }
            }
        }
        _ => to_primary.extend(replica_jobs.iter().map(|j| key(j))),
    }
    if !to_primary.is_empty() {
        for k in &to_primary {
            found.remove(k);
        }
        found.extend(answer_batch(&mut conns.primary, &sides.primary, names, &to_primary)?);
    }
    Ok(jobs
        .iter()
        .map(|j| match found.get(&key(j)) {
            Some(r) if r.revision < j.need.at_least => {
                replica.behind.fetch_add(1, Ordering::Relaxed);
                Err(StatusError::Behind { found: r.revision, need: j.need.at_least })
            }
            // Absent on the primary: deleted or never issued. `unauthorized`
            // is never a wrong "good".
            other => Ok(other.copied()),
        })
        .collect())
}

/// Answers a batch on one side's connection (opening one if it has none).
/// Any error drops the connection. A kept connection that turns out dead
/// (the server restarted: EOF, reset) is replaced and the batch tried once
/// more; a timeout is not retried (the database is slow or stopped, and the
/// shard has stopped waiting).
fn answer_batch(
    conn: &mut Option<Conn>,
    opts: &Opts,
    names: &HashMap<IssuerId, String>,
    keys: &[(IssuerId, Serial)],
) -> Result<Found, String> {
    let reused = conn.is_some();
    let mut attempt = || {
        let result = query_batch(conn, opts, names, keys);
        if result.is_err() {
            *conn = None;
        }
        result
    };
    match attempt() {
        Err(e) if reused && is_stale_connection(&e) => {
            log::debug!("status connection was dead ({}); reconnecting", redact(&e.to_string()));
            attempt().map_err(|e| redact(&e.to_string()))
        }
        other => other.map_err(|e| redact(&e.to_string())),
    }
}

/// A connection the server closed while it sat idle, as opposed to a database
/// that is slow or stopped now (a socket timeout, which the driver reports as
/// `WouldBlock` or `TimedOut`, possibly inside a codec error).
fn is_stale_connection(e: &mysql::Error) -> bool {
    let timed_out = |io: &std::io::Error| {
        matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
    };
    match e {
        mysql::Error::IoError(io) => !timed_out(io),
        // The codec's own error type is not exported; its `source` is the
        // socket error when there is one.
        mysql::Error::CodecError(c) => {
            !matches!(std::error::Error::source(c).and_then(|s| s.downcast_ref()), Some(io) if timed_out(io))
        }
        _ => false,
    }
}

type Row = (Vec<u8>, u8, Option<u64>, Option<u8>, u64, u64);

fn query_batch(
    conn: &mut Option<Conn>,
    opts: &Opts,
    names: &HashMap<IssuerId, String>,
    keys: &[(IssuerId, Serial)],
) -> Result<Found, mysql::Error> {
    let mut by_issuer: HashMap<IssuerId, Vec<Serial>> = HashMap::new();
    for (issuer, serial) in keys {
        by_issuer.entry(*issuer).or_default().push(*serial);
    }
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(Conn::new(opts.clone())?),
    };
    let mut found = HashMap::new();
    for (issuer, serials) in by_issuer {
        let Some(name) = names.get(&issuer) else { continue };
        let marks = vec!["?"; serials.len()].join(",");
        let sql = format!(
            "SELECT serial, status, revoked_at, reason, not_after, revision FROM ocsp_certificates \
             WHERE issuer = ? AND serial IN ({marks})"
        );
        let mut params: Vec<mysql::Value> = Vec::with_capacity(serials.len() + 1);
        params.push(name.as_str().into());
        params.extend(serials.iter().map(|s| mysql::Value::from(s.as_bytes())));
        let rows: Vec<Row> = conn.exec(sql, params)?;
        for (serial, status, revoked_at, reason, not_after, revision) in rows {
            let Ok(serial) = Serial::from_der_content(&serial) else { continue };
            let status = match status {
                0 => CertStatus::Good,
                _ => CertStatus::Revoked {
                    at: revoked_at.unwrap_or(0),
                    reason: reason.and_then(reason_from_code).unwrap_or(RevocationReason::Unspecified),
                },
            };
            found.insert((issuer, serial), CertRecord { status, not_after, revision });
        }
    }
    Ok(found)
}

/// RFC 5280 CRLReason code → reason.
pub fn reason_from_code(code: u8) -> Option<RevocationReason> {
    use RevocationReason::*;
    Some(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        6 => CertificateHold,
        8 => RemoveFromCrl,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        _ => return None,
    })
}

impl StatusSource for MysqlStatus {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn is_up(&self) -> bool {
        !self.health.is_down()
    }

    fn has_revisions(&self) -> bool {
        true
    }

    fn gauges(&self) -> Vec<(&'static str, f64)> {
        let r = &self.replica;
        let mut g = vec![
            ("fenced_rereads_total", r.fenced_rereads.load(Ordering::Relaxed) as f64),
            ("behind_total", r.behind.load(Ordering::Relaxed) as f64),
        ];
        if self.has_replica {
            let lag = r.lag_ms.load(Ordering::Relaxed);
            g.push((
                "replica_lag_seconds",
                if lag == u64::MAX { f64::INFINITY } else { lag as f64 / 1000.0 },
            ));
            g.push(("routed_to_primary_total", r.routed_to_primary.load(Ordering::Relaxed) as f64));
        }
        g
    }

    fn lookup(&self, issuer: IssuerId, serial: Serial, need: Need) -> LookupFuture<'_> {
        if self.health.is_down() {
            // Known down: no queueing, no waiting; the prober finds out when
            // it is back.
            return Box::pin(std::future::ready(Err(StatusError::Unavailable(
                "status database unreachable".into(),
            ))));
        }
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.try_send(Lookup { issuer, serial, need, reply });
        let timeout = self.timeout;
        Box::pin(async move {
            if let Err(e) = sent {
                return Err(match e {
                    flume::TrySendError::Full(_) => {
                        StatusError::Unavailable("status lookup queue full".into())
                    }
                    flume::TrySendError::Disconnected(_) => {
                        StatusError::Unavailable("status threads gone".into())
                    }
                });
            }
            let answer = futures_lite::future::or(async { Some(rx.await) }, async {
                glommio::timer::sleep(timeout).await;
                None
            })
            .await;
            match answer {
                None => Err(StatusError::Timeout),
                Some(Err(_)) => Err(StatusError::Unavailable("status thread dropped the lookup".into())),
                Some(Ok(r)) => r,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("mysql://ocsp:s3cret@db:3306/ocsp"), "mysql://ocsp:***@db:3306/ocsp");
        assert_eq!(redact("mysql://root@127.0.0.1/ocsp"), "mysql://root@127.0.0.1/ocsp");
        assert_eq!(redact("no url here"), "no url here");
        // Every URL in a text, not just the first.
        assert_eq!(
            redact("primary mysql://a:p1@x/db, replica mysql://b:p2@y/db failed"),
            "primary mysql://a:***@x/db, replica mysql://b:***@y/db failed"
        );
        // An '@' in the text before the URL does not shift what is hidden.
        assert_eq!(
            redact("user root@localhost: redis://:p3@h:6379"),
            "user root@localhost: redis://:***@h:6379"
        );
    }

    /// `redact` used to cut the user info at the first `@`, so a password
    /// holding an unescaped `@` leaked its tail (`mysql://u:***@ss@h`).
    #[test]
    fn regression_password_with_an_at_sign_is_hidden_whole() {
        assert_eq!(redact("mysql://u:p@ss@db:3306/x"), "mysql://u:***@db:3306/x");
        assert_eq!(redact("bad URL \"redis://:p@ss@h\""), "bad URL \"redis://:***@h\"");
    }

    /// Nothing listens on port 1: start-up goes on, `check` refuses, and
    /// lookups fail at once instead of each waiting for a connection.
    #[test]
    fn unreachable_at_start_up_fails_fast() {
        let cfg: MysqlConfig =
            toml::from_str("url = \"mysql://root@127.0.0.1:1/x\"\ntimeout_ms = 300").unwrap();
        assert!(MysqlStatus::check(&cfg).is_err());
        let t = Instant::now();
        let status = MysqlStatus::start(&cfg, HashMap::new()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "start-up waited {:?}", t.elapsed());
        for _ in 0..3 {
            let t = Instant::now();
            let r = futures::executor::block_on(status.lookup(
                IssuerId(0),
                Serial::from_hex("01").unwrap(),
                Need::default(),
            ));
            assert!(matches!(r, Err(StatusError::Unavailable(_))), "{r:?}");
            assert!(t.elapsed() < Duration::from_millis(50), "failed in {:?}", t.elapsed());
        }
    }

    #[test]
    fn reason_codes() {
        for c in [0u8, 1, 2, 3, 4, 5, 6, 8, 9, 10] {
            assert_eq!(reason_from_code(c).map(|r| r as u8), Some(c));
        }
        assert_eq!(reason_from_code(7), None);
    }
}
