//! The tombstone writer: every change of the outbox (but inserts, which have
//! no older copy to fence) becomes a tombstone over the certificate's Redis
//! response keys, at least once, in seq order.
//!
//! It runs apart from the feed thread on purpose: the feed's work (floors,
//! every shard's L1) never waits on Redis, and a Redis that is down or slow
//! only makes this writer fall behind, never lose anything: it keeps its own
//! cursor over the outbox and advances its position, which it also keeps *in
//! Redis* (`{prefix}feed:pos`, raised by every node, never lowered), only
//! past changes whose tombstones Redis has acknowledged. A write that fails
//! is retried until it succeeds. The feed drops a certificate's floor only
//! once this writer is past it ([`super::Floors::expire`]), so until then the
//! floor fences what Redis still holds.
//!
//! Where it starts (read from Redis on start and after every reconnect):
//!
//! | Redis position | meaning | start |
//! |---|---|---|
//! | at or past the fence window's start | Redis has every older tombstone | there, less a minute re-asserted (a failover to a replica may have lost the newest) |
//! | before the window, still in the outbox | tombstones behind (every node was down, or Redis was away) | there; Redis copies older than the window are re-checked until this writer passes the window's start |
//! | missing, or pruned from the outbox | Redis flushed or lost the key; or history lost | the window's start; copies older than the window are re-checked |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use futures::StreamExt;
use mysql::Conn;

use super::outbox::{self, Change, Cursor};
use super::FeedStats;
use crate::clock::unix_now;
use crate::config::redact;
use crate::config::FeedConfig;
use crate::source::floors::Floors;
use crate::source::redis::{self as l2, RedisConfig};

/// Tombstone writes in flight at once (fred pipelines them).
const IN_FLIGHT: usize = 128;

/// The tombstones of the last this many seconds are written again after a
/// reconnect: a Redis replica promoted by a failover lacks the master's last
/// writes.
const REASSERT_SECS: u64 = 60;

/// Everything the writer needs.
pub(super) struct Setup {
    pub(super) redis: RedisConfig,
    pub(super) opts: mysql::Opts,
    pub(super) feed: FeedConfig,
    /// Tombstone TTL: the response lifetime plus the backdating, so a
    /// tombstone outlives every response signed before its change.
    pub(super) ttl: u64,
    pub(super) floors: Arc<Floors>,
    pub(super) stats: Arc<FeedStats>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) timers: tokio::runtime::Handle,
}

/// Starts the writer on a thread of its own (a small glommio executor: fred
/// runs on glommio).
pub(super) fn start(s: Setup) -> std::io::Result<()> {
    std::thread::Builder::new().name("feed-redis".into()).spawn(move || {
        let _timers = s.timers.enter();
        let ex = match glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make() {
            Ok(ex) => ex,
            Err(e) => {
                log::error!(
                    "tombstone writer: cannot start its executor: {e}; Redis is fenced by floors only"
                );
                return;
            }
        };
        ex.run(writer(s));
    })?;
    Ok(())
}

async fn writer(s: Setup) {
    let mut rc = s.redis.clone();
    // This writer must rather succeed than be fast.
    rc.command_timeout_ms = rc.command_timeout_ms.max(2000);
    let client = match l2::client(&rc) {
        Ok(c) => c,
        Err(e) => {
            log::error!("tombstone writer: {e}");
            return;
        }
    };
    let _conn_task = crate::source::redis::client::connect(&client).await;
    // Reconnects are noted by a task of their own; the loop looks at the flag.
    let reconnected = std::rc::Rc::new(std::cell::Cell::new(false));
    {
        let (rx, flag) = (client.reconnect_rx(), reconnected.clone());
        glommio::spawn_local(async move {
            while rx.recv().await.is_ok() {
                flag.set(true);
            }
        })
        .detach();
    }
    let mut db: Option<Conn> = None;
    let mut cursor: Option<Cursor> = None;
    // While set: tombstones are behind the fence window until the writer
    // passes this seq.
    let mut catching_up: Option<u64> = None;
    let poll = Duration::from_millis(s.feed.poll_interval_ms);
    let mut failures = 0u32;
    while !s.stop.load(Ordering::Relaxed) {
        if reconnected.replace(false) {
            cursor = None; // re-read where Redis says it is
        }
        let result = match cursor.as_mut() {
            None => position(&s, &client, &mut db).await.map(|(c, up_to)| {
                cursor = Some(c);
                if up_to.is_none() {
                    // Redis has every tombstone older than the window again
                    // (after a reconnect, say): nothing to catch up on.
                    s.floors.tombstones_caught_up();
                }
                catching_up = up_to;
                true
            }),
            Some(c) => step(&s, &client, &mut db, c).await,
        };
        match result {
            Ok(more) => {
                failures = 0;
                if let (Some(target), Some(c)) = (catching_up, cursor.as_ref()) {
                    if c.low_water() >= target {
                        log::info!("tombstone writer: caught up with the fence window");
                        s.floors.tombstones_caught_up();
                        catching_up = None;
                    }
                }
                if !more {
                    glommio::timer::sleep(poll).await;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    log::warn!("tombstone writer: {e}; retrying (the floors fence Redis meanwhile)");
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.quit().await;
}

fn db_conn<'a>(db: &'a mut Option<Conn>, opts: &mysql::Opts) -> Result<&'a mut Conn, String> {
    match db {
        Some(c) => Ok(c),
        None => Ok(db.insert(Conn::new(opts.clone()).map_err(|e| redact(&e.to_string()))?)),
    }
}

/// Where to start from, per the table in the module docs; with the seq the
/// writer must pass before Redis copies older than the window are trusted
/// again.
async fn position(
    s: &Setup,
    client: &Client,
    db: &mut Option<Conn>,
) -> Result<(Cursor, Option<u64>), String> {
    let pos: Option<u64> = client
        .get::<Option<String>, _>(l2::position_key(&s.redis.key_prefix))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|v| v.parse().ok());
    let sql = |e: mysql::Error| redact(&e.to_string());
    let conn = db_conn(db, &s.opts)?;
    let window = s.feed.fence_window_secs;
    let window_start = outbox::position_before(conn, window).map_err(sql)?;
    let recent = outbox::position_before(conn, REASSERT_SECS + s.feed.hole_timeout_secs).map_err(sql)?;
    let oldest = outbox::min_seq(conn).map_err(sql)?;
    let now = unix_now();
    let older_than_window = now.saturating_sub(window);
    Ok(match pos {
        Some(p) if p >= window_start => (Cursor::new(p.min(recent)), None),
        Some(p) if oldest == 0 || p + 1 >= oldest => {
            log::warn!(
                "tombstone writer: Redis has tombstones up to change {p} only, before the fence window (starts \
                 after {window_start}); writing the rest, and re-checking Redis copies older than the window \
                 until done"
            );
            s.floors.tombstones_behind(older_than_window);
            (Cursor::new(p), Some(window_start))
        }
        other => {
            if other.is_some() {
                log::warn!("tombstone writer: the outbox no longer holds the changes after Redis's position");
            }
            // No position: Redis was flushed (it then holds nothing older),
            // or lost the key; either way copies made before the window may
            // predate changes no node tombstoned.
            s.floors.lost_changes_before(older_than_window);
            (Cursor::new(window_start), None)
        }
    })
}

/// One batch: reads what the cursor has not seen, writes its tombstones, and
/// only then moves the cursor and the Redis position. Returns whether more
/// is waiting.
async fn step(
    s: &Setup,
    client: &Client,
    db: &mut Option<Conn>,
    cursor: &mut Cursor,
) -> Result<bool, String> {
    let read = {
        let conn = db_conn(db, &s.opts)?;
        match outbox::read(conn, cursor, s.feed.batch) {
            Ok(r) => r,
            Err(e) => {
                *db = None;
                return Err(redact(&e.to_string()));
            }
        }
    };
    let more = read.more;
    // Mark seen on a copy: the real cursor moves only once Redis has them.
    let mut next = cursor.clone();
    // An insert has nothing older to fence off in Redis (a deleted row's
    // copies got their tombstone from the delete): no write, no key kept.
    let changes: Vec<Change> =
        read.unseen(&mut next, unix_now()).into_iter().filter(|c| c.op != outbox::Op::Insert).collect();
    if next.take_given_up() > 0 {
        // Changes this writer will never tombstone: copies older than now
        // may predate one (the feed thread fences this node's own reads).
        s.floors.lost_changes_before(unix_now() + 1);
    }
    next.expire(unix_now().saturating_sub(s.feed.hole_timeout_secs));
    let prefix = &s.redis.key_prefix;
    let results: Vec<Result<i64, Error>> = futures::stream::iter(changes.iter())
        .map(|c| l2::tombstone(client, prefix, &c.issuer, &c.serial, c.revision, s.ttl, false))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    s.stats.tombstones_written.fetch_add((results.len() - failed) as u64, Ordering::Relaxed);
    if failed > 0 {
        s.stats.tombstone_errors.fetch_add(failed as u64, Ordering::Relaxed);
        let first = results.into_iter().find_map(Result::err).map(|e| e.to_string()).unwrap_or_default();
        return Err(format!("{failed} tombstone write(s) failed: {first}"));
    }
    let moved = next.low_water() != cursor.low_water();
    *cursor = next;
    let low = cursor.low_water();
    if moved || s.stats.tombstone_position.load(Ordering::Relaxed) != low {
        l2::RAISE
            .run(client, vec![l2::position_key(prefix)], vec![Value::from(low.to_string())])
            .await
            .map_err(|e| e.to_string())?;
        s.stats.tombstone_position.store(low, Ordering::Relaxed);
    }
    Ok(more)
}
