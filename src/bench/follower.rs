//! The change follower: one OS thread with its own connection to the primary
//! (`[mysql] url`, never the replica: a replica is behind, and the bound is
//! about commits on the primary) that reads `ocsp_changes` every
//! `--change-poll-ms` and hands each change, with the instant it was seen,
//! to the [`ChangeBook`].
//!
//! It records `MAX(seq)` before the keyspace is read ([`open`]) and starts
//! polling at once, so no change between that read and the first poll is
//! missed; changes the keyspace read already reflects land before the status
//! read at start in the history (their revision is not newer) and change
//! nothing.
//!
//! `seq` is an AUTO_INCREMENT taken when a writer's statement runs, not when
//! it commits: a lower seq can become visible after higher ones, and a rolled
//! back statement leaves a hole for good. The [`Tracker`] remembers the seqs
//! below the highest seen that are missing and asks for them again on every
//! poll for up to [`GAP_PATIENCE`]; one that shows up is applied at the
//! instant it was seen, like any other. After the run a final poll reads the
//! whole range again, so a change committed later still than that is known
//! before any answer is judged wrong.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::changes::{ChangeBook, ChangeRow, FeedCounts};
use crate::status::mysql::{redact, MysqlConfig};

/// Rows read by one query; a full page is followed by another at once.
const PAGE: usize = 10_000;

/// How long a missing seq is asked for again.
pub const GAP_PATIENCE: Duration = Duration::from_secs(60);

/// Missing seqs tracked at most (beyond: found by the final poll only).
const MAX_MISSING: usize = 100_000;

/// Missing seqs asked for per poll (in `IN` lists of 1000).
const MISSING_PER_POLL: usize = 2000;

/// How long the final poll keeps trying (reconnecting) before giving up.
const FINAL_PATIENCE: Duration = Duration::from_secs(5);

const COLUMNS: &str = "seq, issuer, serial, op, revision, status, revoked_at, reason";

/// MariaDB's ER_NO_SUCH_TABLE.
const NO_SUCH_TABLE: u16 = 1146;

type Row = (u64, String, Vec<u8>, String, u64, Option<u8>, Option<u64>, Option<u8>);

fn row(r: Row) -> ChangeRow {
    let (seq, issuer, serial, op, revision, status, revoked_at, reason) = r;
    ChangeRow { seq, issuer, serial, op, revision, status, revoked_at, reason }
}

/// Which seqs have been seen, which are missing below the highest one, and
/// since when. Pure bookkeeping, so the gap rules are tested without a
/// database.
#[derive(Debug)]
pub struct Tracker {
    start: u64,
    high: u64,
    known: HashSet<u64>,
    /// Missing seq → when it was first found missing.
    missing: BTreeMap<u64, Instant>,
    /// Seqs given up on after [`GAP_PATIENCE`] or not tracked (too many).
    pub given_up: u64,
    /// Rows that arrived after a higher seq.
    pub late: u64,
}

impl Tracker {
    /// Nothing seen above `start` (the `MAX(seq)` read before the keyspace).
    pub fn new(start: u64) -> Tracker {
        Tracker { start, high: start, known: HashSet::new(), missing: BTreeMap::new(), given_up: 0, late: 0 }
    }

    /// The highest seq seen (the next poll reads above it).
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Takes rows read above [`Tracker::high`] (in seq order) at `now`:
    /// notes the holes they leave and returns the rows not seen before.
    pub fn take_new(&mut self, rows: Vec<ChangeRow>, now: Instant) -> Vec<ChangeRow> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if r.seq <= self.high {
                // Not from a `seq > high` read: treat as late.
                out.extend(self.take_late(vec![r]));
                continue;
            }
            for s in self.high + 1..r.seq {
                if self.missing.len() >= MAX_MISSING {
                    self.given_up += r.seq - s;
                    break;
                }
                self.missing.insert(s, now);
            }
            self.high = r.seq;
            self.known.insert(r.seq);
            out.push(r);
        }
        out
    }

    /// The missing seqs to ask for now (at most `max`), after dropping those
    /// missing for longer than [`GAP_PATIENCE`].
    pub fn missing_now(&mut self, now: Instant, max: usize) -> Vec<u64> {
        let before = self.missing.len();
        self.missing.retain(|_, since| now.saturating_duration_since(*since) < GAP_PATIENCE);
        self.given_up += (before - self.missing.len()) as u64;
        self.missing.keys().take(max).copied().collect()
    }

    /// Takes rows read below [`Tracker::high`] (missing ones, or the final
    /// re-read): returns those not seen before.
    pub fn take_late(&mut self, rows: Vec<ChangeRow>) -> Vec<ChangeRow> {
        let mut out = Vec::new();
        for r in rows {
            if r.seq <= self.start || !self.known.insert(r.seq) {
                continue;
            }
            self.missing.remove(&r.seq);
            self.late += 1;
            out.push(r);
        }
        out
    }
}

/// The follower's connection and where the feed stood before the keyspace
/// was read.
pub struct Opened {
    conn: mysql::Conn,
    start: u64,
}

fn sql_err(e: mysql::Error) -> String {
    redact(&e.to_string())
}

fn connect(cfg: &MysqlConfig) -> Result<mysql::Conn, String> {
    mysql::Conn::new(crate::status::mysql::opts(cfg, &cfg.url, 1)?)
        .map_err(|e| format!("change follower: cannot connect: {}", sql_err(e)))
}

/// Connects to the primary and reads the feed's position; `Ok(None)` when
/// `ocsp_changes` does not exist (schema v1).
pub fn open(cfg: &MysqlConfig) -> Result<Option<Opened>, String> {
    let mut conn = connect(cfg)?;
    match conn.query_first::<u64, _>("SELECT COALESCE(MAX(seq), 0) FROM ocsp_changes") {
        Ok(start) => Ok(Some(Opened { conn, start: start.unwrap_or(0) })),
        Err(mysql::Error::MySqlError(e)) if e.code == NO_SUCH_TABLE => Ok(None),
        Err(e) => Err(format!("change follower: {}", sql_err(e))),
    }
}

/// The running follower; stopped (after a final poll) by [`Follower::finish`].
pub struct Follower {
    stop: Arc<AtomicBool>,
    book_tx: Option<mpsc::Sender<Arc<ChangeBook>>>,
    thread: Option<JoinHandle<FeedCounts>>,
}

impl Follower {
    /// Starts polling every `poll`; changes wait until [`Follower::attach`]
    /// gives the book they go into.
    pub fn spawn(opened: Opened, cfg: MysqlConfig, poll: Duration) -> Result<Follower, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (book_tx, book_rx) = mpsc::channel();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-changes".into())
            .spawn(move || follow(opened, cfg, poll, stop2, book_rx))
            .map_err(|e| format!("cannot start the change follower: {e}"))?;
        Ok(Follower { stop, book_tx: Some(book_tx), thread: Some(thread) })
    }

    /// Hands over the book (built once the keyspace is known).
    pub fn attach(&mut self, book: Arc<ChangeBook>) {
        if let Some(tx) = self.book_tx.take() {
            let _ = tx.send(book);
        }
    }

    /// Makes the final poll (after every answer has arrived) and stops.
    pub fn finish(mut self) -> FeedCounts {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// State of the follower thread.
struct Follow {
    cfg: MysqlConfig,
    conn: Option<mysql::Conn>,
    tracker: Tracker,
    /// Rows seen before the book arrived, with their τ.
    waiting: Vec<(ChangeRow, Instant)>,
    book: Option<Arc<ChangeBook>>,
    /// When the last successful poll returned.
    last_ok: Option<Instant>,
    counts: FeedCounts,
    /// A failure was reported and nothing has succeeded since.
    failing: bool,
}

impl Follow {
    fn conn(&mut self) -> Result<&mut mysql::Conn, String> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.cfg)?);
        }
        self.conn.as_mut().ok_or_else(|| "no connection".to_string())
    }

    /// Reads everything above the highest seq and the missing seqs; returns
    /// the instant the last query returned.
    fn poll(&mut self) -> Result<Instant, String> {
        let sql = format!("SELECT {COLUMNS} FROM ocsp_changes WHERE seq > ? ORDER BY seq LIMIT {PAGE}");
        let mut last;
        loop {
            let high = self.tracker.high();
            let rows: Vec<Row> = self.conn()?.exec(&sql, (high,)).map_err(sql_err)?;
            // τ: the query has returned, so every row in it was committed.
            last = Instant::now();
            let full = rows.len() == PAGE;
            for r in self.tracker.take_new(rows.into_iter().map(row).collect(), last) {
                self.waiting.push((r, last));
            }
            if !full {
                break;
            }
        }
        let missing = self.tracker.missing_now(Instant::now(), MISSING_PER_POLL);
        for chunk in missing.chunks(1000) {
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let sql = format!("SELECT {COLUMNS} FROM ocsp_changes WHERE seq IN ({})", list.join(","));
            let rows: Vec<Row> = self.conn()?.query(sql).map_err(sql_err)?;
            last = Instant::now();
            for r in self.tracker.take_late(rows.into_iter().map(row).collect()) {
                self.waiting.push((r, last));
            }
        }
        Ok(last)
    }

    /// Reads the whole range seen so far again, for seqs that committed
    /// after the follower stopped asking for them.
    fn reread(&mut self) -> Result<Instant, String> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ocsp_changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT {PAGE}"
        );
        let (mut after, high) = (self.tracker.start, self.tracker.high());
        loop {
            let rows: Vec<Row> = self.conn()?.exec(&sql, (after, high)).map_err(sql_err)?;
            let last = Instant::now();
            let full = rows.len() == PAGE;
            after = rows.last().map_or(high, |r| r.0);
            for r in self.tracker.take_late(rows.into_iter().map(row).collect()) {
                self.waiting.push((r, last));
            }
            if !full {
                return Ok(last);
            }
        }
    }

    /// Applies what was seen (once the book is there) and moves `seen_until`.
    fn apply(&mut self, until: Option<Instant>) {
        let Some(book) = &self.book else { return };
        for (r, seen) in self.waiting.drain(..) {
            if r.op == "P" {
                continue;
            }
            self.counts.seen += 1;
            if book.apply(&r, seen) {
                self.counts.in_keyspace += 1;
            }
        }
        if let Some(t) = until {
            book.seen_until(t);
        }
    }

    fn failed(&mut self, e: String) {
        self.counts.poll_errors += 1;
        self.conn = None;
        if !self.failing {
            eprintln!("bench: change follower: {e} (retrying; answers wait until it catches up)");
            self.failing = true;
        }
    }
}

fn follow(
    opened: Opened,
    cfg: MysqlConfig,
    poll: Duration,
    stop: Arc<AtomicBool>,
    book_rx: mpsc::Receiver<Arc<ChangeBook>>,
) -> FeedCounts {
    let mut f = Follow {
        cfg,
        conn: Some(opened.conn),
        tracker: Tracker::new(opened.start),
        waiting: Vec::new(),
        book: None,
        last_ok: None,
        counts: FeedCounts::default(),
        failing: false,
    };
    loop {
        // Read before polling: a stop seen here means every answer has
        // arrived, so this poll is the final one.
        if stop.load(Ordering::SeqCst) {
            if f.book.is_some() {
                f.final_poll(poll);
            }
            f.counts.late = f.tracker.late;
            f.counts.given_up = f.tracker.given_up;
            return f.counts;
        }
        match f.poll() {
            Ok(t) => {
                f.failing = false;
                f.last_ok = Some(t);
                f.apply(Some(t));
            }
            Err(e) => {
                f.failed(e);
                f.apply(None);
            }
        }
        if f.book.is_some() {
            std::thread::sleep(poll);
            continue;
        }
        // Until the keyspace is read: poll, and take the book the moment it
        // comes, so the run starts with the follower caught up.
        match book_rx.recv_timeout(poll) {
            Ok(book) => {
                f.book = Some(book);
                let until = f.last_ok;
                f.apply(until);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(poll),
        }
    }
}

impl Follow {
    /// The poll after the run, and a re-read of every seq seen missing,
    /// retried for [`FINAL_PATIENCE`].
    fn final_poll(&mut self, poll: Duration) {
        let deadline = Instant::now() + FINAL_PATIENCE;
        loop {
            match self.poll().and_then(|_| self.reread()) {
                Ok(t) => {
                    self.apply(Some(t));
                    self.counts.final_poll = true;
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    self.failed(e);
                    std::thread::sleep(poll.max(Duration::from_millis(100)));
                }
                Err(e) => {
                    self.failed(e);
                    eprintln!(
                        "bench: change follower: the final poll failed; answers that did not fit are not judged"
                    );
                    self.apply(None);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u64) -> ChangeRow {
        ChangeRow {
            seq,
            issuer: "test".into(),
            serial: vec![1],
            op: "U".into(),
            revision: seq,
            status: Some(0),
            revoked_at: None,
            reason: None,
        }
    }

    fn seqs(rows: &[ChangeRow]) -> Vec<u64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn holes_are_asked_for_again_until_they_show_up_or_time_runs_out() {
        let t0 = Instant::now();
        let mut t = Tracker::new(10);
        assert_eq!(seqs(&t.take_new(vec![r(11), r(13), r(16)], t0)), vec![11, 13, 16]);
        assert_eq!(t.high(), 16);
        assert_eq!(t.missing_now(t0, 100), vec![12, 14, 15]);
        // 14 commits late; a repeat of 13 and a seq from before the start are not new.
        assert_eq!(seqs(&t.take_late(vec![r(14), r(13), r(9)])), vec![14]);
        assert_eq!(t.late, 1);
        assert_eq!(t.missing_now(t0 + Duration::from_secs(1), 1), vec![12]);
        // The rest were rolled back: given up after the patience.
        assert!(t.missing_now(t0 + GAP_PATIENCE, 100).is_empty());
        assert_eq!(t.given_up, 2);
        // The final re-read still finds one that committed after that.
        assert_eq!(seqs(&t.take_late(vec![r(11), r(12), r(13), r(14), r(15), r(16)])), vec![12, 15]);
        assert_eq!(t.late, 3);
    }
}
