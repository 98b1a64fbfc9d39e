//! The change feed: how a status change committed in the database, by any
//! writer, reaches every core of this node within `feed.bound_ms`.
//!
//! ```text
//!  CA pipeline / revoke / import ──SQL──▶ primary ──triggers──▶ ocsp_changes (outbox)
//!                                                                   │ seq > ?, every poll_interval_ms
//!  feed thread (one per node, primary only) ◀────────────────────────┘
//!    1 floors.raise(cert, revision)     fences: nothing older is stored, read or signed
//!    2 every shard: drop the cert from L1 (single- and multi-CertID entries), acknowledged
//!  tombstone writer (with [redis], its own thread and cursor)
//!    3 Redis: tombstone(cert, revision) over every response key; position kept in Redis
//! ```
//!
//! No writer has to remember anything: the schema's triggers
//! (migrations/0002_change_feed.sql) write every committed change into the
//! outbox in the writer's own transaction, and each node reads it from the
//! **primary** (a replica's copy of the outbox would lag exactly when it
//! matters). The order of the steps is the guarantee: the floor rises before
//! any shard drops its copy, so a fetch that completes in between can neither
//! be stored nor served (see [`floors`]), and once a shard has acknowledged,
//! it holds nothing older. Redis tombstones come after and are not needed
//! for this node's own answers (its floors fence Redis values); they fence
//! other nodes' reads between their polls and, after a change's floors
//! expire, everybody's.
//!
//! **Start.** The feed first reads the last `fence_window_secs` of the outbox
//! (floors for every recent change) before the server answers, bounded by
//! `start_timeout_ms`; the tombstone writer resumes from the position it
//! keeps *in Redis* (`{prefix}feed:pos`), so the position is lost or rolled
//! back exactly when the tombstones behind it are (a flush, a failover to a
//! replica that lacks recent writes), and changes made while every node was
//! down are tombstoned by the first to start.
//!
//! **Faults.** A read that fails is retried every poll with a fresh
//! connection; the node keeps answering from what it holds and its status
//! source, and says it cannot know (`ocsp_origin_feed_up` 0 once the last
//! good read is older than `bound_ms`, a warning). When it reconnects it
//! reads everything it missed. If it was away longer than the outbox keeps
//! changes (`retention_secs`), it cannot know what it missed: it empties
//! every L1 and re-checks every Redis copy against the database before use.

pub mod outbox;
pub mod tombstones;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql::Conn;

use crate::source::floors::{FloorIssuer, Floors};
use outbox::{Change, Cursor};

use crate::clock::unix_now;
use crate::config::redact;
use crate::config::{Config, FeedConfig};
use crate::control::{Command, Control};
use crate::ocsp::Serial;

/// Serials per invalidation command: a shard applies one between two
/// requests, so a mass revocation never holds a shard for long.
const INVALIDATE_CHUNK: usize = 2048;

/// What the feed threads report, for `/metrics` (atomics; the admin thread
/// reads them).
pub struct FeedStats {
    /// The guarantee's bound, ms (`feed.bound_ms`).
    pub bound_ms: u64,
    /// Unix ms of the last successful read of the outbox (0: never).
    pub last_read_ms: AtomicU64,
    /// Everything at or below this seq has been applied on every shard.
    pub position: AtomicU64,
    /// Seqs below the newest read that are not visible yet (transactions
    /// still open, or rolled back).
    pub missing: AtomicU64,
    /// Changes applied.
    pub applied: AtomicU64,
    /// Reads that failed.
    pub read_errors: AtomicU64,
    /// Invalidation commands some shard did not acknowledge within a second
    /// (it applies them when it next runs its commands).
    pub unacknowledged: AtomicU64,
    /// Times the outbox had been pruned past this node's position (it then
    /// re-checks everything).
    pub lost: AtomicU64,
    /// Outbox rows this node deleted as older than `retention_secs`.
    pub pruned: AtomicU64,
    /// Time from the writing statement (the outbox row's `changed_at`) to
    /// every shard's acknowledgement, µs.
    pub apply_us: Mutex<hdrhistogram::Histogram<u64>>,
    /// With `[redis]`: every change at or below this seq has its tombstones
    /// written (also kept in Redis).
    pub tombstone_position: AtomicU64,
    /// Tombstone writes done, and failed (retried).
    pub tombstones_written: AtomicU64,
    /// Tombstone writes that failed (each is retried).
    pub tombstone_errors: AtomicU64,
}

impl FeedStats {
    fn new(bound_ms: u64) -> FeedStats {
        FeedStats {
            bound_ms,
            last_read_ms: AtomicU64::new(0),
            position: AtomicU64::new(0),
            missing: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            unacknowledged: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
            apply_us: Mutex::new(crate::metrics::latency_histogram()),
            tombstone_position: AtomicU64::new(0),
            tombstones_written: AtomicU64::new(0),
            tombstone_errors: AtomicU64::new(0),
        }
    }

    /// Milliseconds since the last good read (`u64::MAX`: none yet).
    pub fn silence_ms(&self) -> u64 {
        match self.last_read_ms.load(Ordering::Relaxed) {
            0 => u64::MAX,
            t => now_ms().saturating_sub(t),
        }
    }

    /// Whether the node can vouch for the bound now: it read the feed within it.
    pub fn is_up(&self) -> bool {
        self.silence_ms() <= self.bound_ms
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The running feed of a node; its threads stop when it is dropped.
pub struct Feed {
    /// Its metrics.
    pub stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts the feed of a node whose config has `[mysql]` (`None` without):
/// the feed thread, and with `[redis]` the tombstone writer (on `timers`,
/// the runtime fred's timers need). Returns once the fence window has been
/// read, or at once with a warning if the primary cannot be reached (the
/// feed keeps trying), or after `feed.start_timeout_ms` at the latest.
pub fn start(
    config: &Config,
    floors: Arc<Floors>,
    control: Arc<Control>,
    timers: Option<tokio::runtime::Handle>,
) -> Result<Option<Feed>, String> {
    let Some(m) = &config.mysql else { return Ok(None) };
    let fc = config.feed.clone();
    // The window and pruning compare TIMESTAMPs with NOW(): in UTC, a
    // daylight-saving fold of the server's zone cannot shift them.
    let opts: mysql::Opts = mysql::OptsBuilder::from_opts(crate::status::mysql::opts(m, &m.url, 1)?)
        .init(vec!["SET time_zone = '+00:00'"])
        .into();
    let stats = Arc::new(FeedStats::new(fc.bound_ms));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ctx = Ctx {
        opts: opts.clone(),
        fc: fc.clone(),
        floors: floors.clone(),
        control,
        stats: stats.clone(),
        stop: stop.clone(),
        redis: config.redis.is_some(),
        insert_fence_secs: m.max_replica_lag_ms.div_ceil(1000) + 10,
        owed: Mutex::new(Vec::new()),
    };
    std::thread::Builder::new()
        .name("feed".into())
        .spawn(move || run(ctx, ready_tx))
        .map_err(|e| format!("cannot start the change feed: {e}"))?;
    if let (Some(rc), Some(timers)) = (&config.redis, timers) {
        tombstones::start(tombstones::Setup {
            redis: rc.clone(),
            opts,
            feed: fc.clone(),
            ttl: config.response.lifetime_secs + config.response.backdate_secs,
            floors,
            stats: stats.clone(),
            stop: stop.clone(),
            timers,
        })
        .map_err(|e| format!("cannot start the tombstone writer: {e}"))?;
    }
    match ready_rx.recv_timeout(Duration::from_millis(fc.start_timeout_ms)) {
        Ok(Ok(n)) => {
            log::info!("change feed: {n} change(s) of the last {} s read; following", fc.fence_window_secs)
        }
        Ok(Err(e)) => log::warn!(
            "change feed: cannot read the primary ({e}); serving without it (see the README's failure \
             policy) and catching up when it answers"
        ),
        Err(_) => log::warn!(
            "change feed: the primary did not answer within feed.start_timeout_ms ({} ms); serving without \
             it (see the README's failure policy) and catching up when it answers",
            fc.start_timeout_ms
        ),
    }
    Ok(Some(Feed { stats, stop }))
}

struct Ctx {
    opts: mysql::Opts,
    fc: FeedConfig,
    floors: Arc<Floors>,
    control: Arc<Control>,
    stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
    redis: bool,
    /// How long an insert fences: the replica's lag bound and then some.
    insert_fence_secs: u64,
    /// Shards that missed an invalidation (their queue was full): each owes
    /// an [`Command::InvalidateAll`], retried every poll until taken.
    owed: Mutex<Vec<usize>>,
}

impl Ctx {
    fn owe(&self, shards: &[usize]) {
        if shards.is_empty() {
            return;
        }
        if let Ok(mut owed) = self.owed.lock() {
            for s in shards {
                if !owed.contains(s) {
                    log::warn!("change feed: shard {s} missed invalidations (its commands queue stayed full); it empties its L1 when it takes commands again");
                    owed.push(*s);
                }
            }
        }
    }

    /// Delivers what stalled shards owe, without waiting on them.
    fn settle_owed(&self) {
        let Ok(mut owed) = self.owed.lock() else { return };
        owed.retain(|s| !self.control.send_to(*s, Command::InvalidateAll));
    }
}

/// The feed thread: read, apply, sleep, until stopped.
fn run(ctx: Ctx, ready: std::sync::mpsc::Sender<Result<u64, String>>) {
    let poll = Duration::from_millis(ctx.fc.poll_interval_ms);
    let mut conn: Option<Conn> = None;
    let mut cursor: Option<Cursor> = None;
    let mut ready = Some(ready);
    // When the last good read was, and whether its silence was reported.
    let mut last_ok: Option<Instant> = None;
    let mut reported_down = false;
    let mut last_error = String::new();
    let mut next_chores = Instant::now();
    let mut next_sweep = 0;
    let mut next_prune = Instant::now() + Duration::from_secs(60);
    let mut prune = ctx.fc.retention_secs > 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let away = last_ok.map(|t| t.elapsed());
        match step(&ctx, &mut conn, &mut cursor, away) {
            Ok(first) => {
                ctx.stats.last_read_ms.store(now_ms(), Ordering::Relaxed);
                last_ok = Some(Instant::now());
                if reported_down {
                    log::warn!("change feed: reading the primary again; caught up");
                    reported_down = false;
                }
                if let (Some(n), Some(tx)) = (first, ready.take()) {
                    let _ = tx.send(Ok(n));
                }
            }
            Err(e) => {
                conn = None;
                ctx.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                // Unreachable at start: waiting longer would only delay what
                // a node during an outage serves anyway.
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e.clone()));
                }
                let silent = last_ok.map_or(Duration::MAX, |t| t.elapsed());
                if !reported_down && silent > Duration::from_millis(ctx.fc.bound_ms) {
                    log::warn!(
                        "change feed: cannot read the primary ({e}); changes committed meanwhile are not seen \
                         by this node until it can (it keeps answering from what it holds)"
                    );
                    reported_down = true;
                } else if e != last_error {
                    log::debug!("change feed: {e}");
                }
                last_error = e;
            }
        }
        ctx.settle_owed();
        if Instant::now() >= next_chores {
            next_chores = Instant::now() + Duration::from_secs(1);
            let now = unix_now();
            if let Some(c) = cursor.as_mut() {
                c.expire(now.saturating_sub(ctx.fc.hole_timeout_secs));
                ctx.stats.missing.store(c.missing(), Ordering::Relaxed);
                ctx.stats.position.store(c.low_water(), Ordering::Relaxed);
            }
            // A floor can go once its change is older than the window and
            // (with Redis) its tombstones are written; a sweep is a pass over
            // every floor, so not every second.
            if now >= next_sweep {
                next_sweep = now + 10;
                let fenced_up_to =
                    if ctx.redis { ctx.stats.tombstone_position.load(Ordering::Relaxed) } else { u64::MAX };
                ctx.floors.expire(now, fenced_up_to);
            }
        }
        if prune && Instant::now() >= next_prune {
            next_prune = Instant::now() + Duration::from_secs(60);
            if let Some(c) = conn.as_mut() {
                match outbox::prune(c, ctx.fc.retention_secs) {
                    Ok(n) => {
                        ctx.stats.pruned.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(mysql::Error::MySqlError(e)) if matches!(e.code, 1142 | 1227) => {
                        log::warn!(
                            "change feed: not allowed to delete old changes ({}); pruning left to the operator \
                             (grant DELETE on ocsp_changes, or set feed.retention_secs = 0 to silence this)",
                            e.message
                        );
                        prune = false;
                    }
                    Err(e) => {
                        // A timed-out statement may still answer later on it.
                        log::debug!("change feed: pruning: {}", redact(&e.to_string()));
                        conn = None;
                    }
                }
            }
        }
        if let Some(rest) = poll.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// One poll: positions the cursor first if needed, then reads and applies
/// everything new (page by page). Returns, on the poll that positioned the
/// cursor, how many changes the start-up read applied.
fn step(
    ctx: &Ctx,
    conn: &mut Option<Conn>,
    cursor: &mut Option<Cursor>,
    away: Option<Duration>,
) -> Result<Option<u64>, String> {
    let err = |e: mysql::Error| redact(&e.to_string());
    let reconnected = conn.is_none();
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Conn::new(ctx.opts.clone()).map_err(err)?),
    };
    let first = cursor.is_none();
    let cur = match cursor {
        Some(cur) => {
            if reconnected {
                check_gap(ctx, c, cur, away)?;
            }
            cur
        }
        // The fence window, and before it as long as a transaction may
        // stay open: one that began then and has not committed yet is
        // waited for as a hole, not stepped over.
        None => cursor.insert(Cursor::new(
            outbox::position_before(c, ctx.fc.fence_window_secs + ctx.fc.hole_timeout_secs).map_err(err)?,
        )),
    };
    let mut applied = 0;
    // Pages are pipelined: the next page is read while the shards work
    // through the previous one's invalidations, and its floors rise only
    // once they have acknowledged (so the order of the guarantee holds page
    // after page). A mass statement reaches the shards in about the time
    // its pages take to read, not read plus apply.
    let mut applying: Option<Applying> = None;
    let outcome = loop {
        let t = Instant::now();
        let read = match outbox::read(c, cur, ctx.fc.batch) {
            Ok(read) => read,
            Err(e) => break Err(err(e)),
        };
        let t_read = t.elapsed();
        if let Some(a) = applying.take() {
            a.finish(ctx);
        }
        let more = read.more;
        let changes = read.unseen(cur, unix_now());
        applied += changes.len() as u64;
        // The start-up read of the window is not a measure of anything.
        applying = begin_apply(ctx, changes, !first);
        let given_up = cur.take_given_up();
        if given_up > 0 {
            lost(
                ctx,
                &format!("{given_up} seqs given up before their time (more gaps than the cursor keeps)"),
            );
        }
        if let Some(a) = &applying {
            log::debug!(
                "change feed: {} changes: read {:?}, queued {:?}",
                a.changes.len(),
                t_read,
                t.elapsed() - t_read
            );
        }
        if !more {
            break Ok(());
        }
    };
    if let Some(a) = applying {
        a.finish(ctx);
    }
    outcome?;
    ctx.stats.position.store(cur.low_water(), Ordering::Relaxed);
    Ok(first.then_some(applied))
}

/// After a reconnect: were changes pruned from the outbox before this node
/// read them? Then it cannot know what they were: every shard empties its
/// L1 and Redis copies are re-checked before use.
fn check_gap(ctx: &Ctx, c: &mut Conn, cur: &Cursor, away: Option<Duration>) -> Result<(), String> {
    let retention = ctx.fc.retention_secs;
    let away = away.unwrap_or_default();
    // Rows are only pruned once older than the retention; a shorter absence
    // cannot have lost any (a gap is then a rolled-back statement's seqs).
    if retention == 0 || away < Duration::from_secs(retention.saturating_sub(3600)) {
        return Ok(());
    }
    let min = outbox::min_seq(c).map_err(|e| redact(&e.to_string()))?;
    if min > cur.low_water() + 1 {
        lost(
            ctx,
            &format!(
                "the outbox no longer holds the changes after position {} (it starts at {min}; this node could \
                 not read it for {:.0} s, feed.retention_secs is {retention}): they may have been pruned unseen",
                cur.low_water(),
                away.as_secs_f64()
            ),
        );
    }
    Ok(())
}

/// Changes may have been committed that this node will never read: every
/// shard empties its L1 and every Redis copy is re-checked against the
/// database before use.
fn lost(ctx: &Ctx, why: &str) {
    log::error!("change feed: {why}; emptying every L1 and re-checking Redis copies before use");
    ctx.stats.lost.fetch_add(1, Ordering::Relaxed);
    // Copies are vouched for to the second: one vouched for in this second
    // may predate the loss.
    ctx.floors.lost_changes_before(unix_now() + 1);
    let (_, missed) = ctx.control.broadcast_all(&[&|| Command::InvalidateAll], Duration::from_secs(1));
    ctx.owe(&missed);
}

/// A page of changes whose floors have risen and whose invalidations are
/// queued on every shard, acknowledgements still to come.
struct Applying {
    changes: Vec<Change>,
    sent: crate::control::Sent,
    timed: bool,
}

/// Starts applying changes in the guarantee's order: floors first, then
/// every shard's L1 (queued here; [`Applying::finish`] waits for the
/// acknowledgements and counts). `None` when there is nothing to apply.
fn begin_apply(ctx: &Ctx, changes: Vec<Change>, timed: bool) -> Option<Applying> {
    if changes.is_empty() {
        return None;
    }
    let now = unix_now();
    let mut by_issuer: HashMap<&str, Vec<Serial>> = HashMap::new();
    // Changes come in runs of one issuer: intern its name once per run.
    let mut last: Option<(&str, FloorIssuer)> = None;
    for c in &changes {
        // Fences from when its statement ran (the database clock; never
        // later than now), for as long as its kind needs (see `floors`),
        // and whatever its age at least the replica's lag bound from now (a
        // change read late still has fetches in flight and replicas behind
        // it).
        let keep = if c.op == outbox::Op::Insert { ctx.insert_fence_secs } else { ctx.fc.fence_window_secs };
        let at = (c.changed_at_us / 1_000_000).min(now);
        let until = (at + keep).max(now + ctx.insert_fence_secs);
        let id = match last {
            Some((name, id)) if name == c.issuer => id,
            _ => {
                let id = ctx.floors.issuer(&c.issuer);
                last = Some((&c.issuer, id));
                id
            }
        };
        ctx.floors.raise(
            id,
            c.serial,
            crate::source::floors::Raise { revision: c.revision, seq: c.seq, at, until },
        );
        by_issuer.entry(c.issuer.as_str()).or_default().push(c.serial);
    }
    let batches: Vec<(Arc<str>, Arc<[Serial]>)> = by_issuer
        .into_iter()
        .flat_map(|(issuer, serials)| {
            let issuer: Arc<str> = issuer.into();
            serials.chunks(INVALIDATE_CHUNK).map(|c| (issuer.clone(), c.into())).collect::<Vec<_>>()
        })
        .collect();
    let makers: Vec<Box<dyn Fn() -> Command>> = batches
        .into_iter()
        .map(|(issuer, serials)| {
            Box::new(move || Command::InvalidateMany { issuer: issuer.clone(), serials: serials.clone() })
                as Box<dyn Fn() -> Command>
        })
        .collect();
    let refs: Vec<&dyn Fn() -> Command> = makers.iter().map(|m| m.as_ref()).collect();
    let sent = ctx.control.send_all(&refs, Duration::from_secs(1));
    // A shard whose queue stayed full for the whole deadline (stalled) did
    // not get these: it owes a full invalidation, delivered as soon as it
    // takes commands again.
    ctx.owe(&sent.missed);
    Some(Applying { changes, sent, timed })
}

impl Applying {
    /// Waits for every shard to acknowledge the page (up to the deadline),
    /// then counts it.
    fn finish(self, ctx: &Ctx) {
        let acked = self.sent.wait();
        if acked < ctx.control.shards() {
            ctx.stats.unacknowledged.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats.applied.fetch_add(self.changes.len() as u64, Ordering::Relaxed);
        if !self.timed {
            return;
        }
        let done_us = now_ms() * 1000;
        if let Ok(mut h) = ctx.stats.apply_us.lock() {
            for c in &self.changes {
                h.saturating_record(done_us.saturating_sub(c.changed_at_us).max(1));
            }
        }
    }
}
