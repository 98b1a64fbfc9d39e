//! Reading the `ocsp_changes` outbox (migrations/0002_change_feed.sql): what a
//! change row says, and a cursor that never skips a change committed late.
//!
//! Sequence numbers are handed out when a writer's statement runs, not when
//! it commits: a transaction holding seq 10 may commit after one holding 11.
//! A reader that only remembered "the highest seq seen" would step over 10
//! for good. So [`Cursor`] also remembers the *holes* below it, seqs not seen
//! yet, and every poll asks for them again until they appear or are older
//! than `feed.hole_timeout_secs` (then they were rolled back: a rolled-back
//! statement's seqs are never used, and an open transaction older than that
//! is not expected of a CA's pipeline).

use std::collections::BTreeMap;

use mysql::prelude::Queryable;
use mysql::Conn;

use crate::ocsp::Serial;

use crate::ocsp::CertStatus;

/// What a change did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Inserted (a new certificate, or REPLACE's new row).
    Insert,
    /// Updated.
    Update,
    /// Deleted (or moved to another key).
    Delete,
}

/// One committed change of `ocsp_certificates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Feed position.
    pub seq: u64,
    /// The row's issuer name.
    pub issuer: String,
    /// The row's serial.
    pub serial: Serial,
    /// What happened.
    pub op: Op,
    /// The revision a copy of the row must have to reflect this change
    /// (inserts and updates: the row's new revision; deletes: the deleted
    /// row's + 1).
    pub revision: u64,
    /// The status after it (`None` for a delete).
    pub status: Option<CertStatus>,
    /// When the writing statement began, Unix microseconds (database clock).
    pub changed_at_us: u64,
}

/// A row as selected: seq, issuer, serial, op, revision, status, revoked_at,
/// reason, changed_at in µs.
type Row = (u64, String, Vec<u8>, String, u64, Option<u8>, Option<u64>, Option<u8>, u64);

/// The columns every outbox read selects, in [`Row`] order.
const COLUMNS: &str = "SELECT seq, issuer, serial, op, revision, status, revoked_at, reason, \
     CAST(UNIX_TIMESTAMP(changed_at) * 1000000 AS UNSIGNED) FROM ocsp_changes";

/// What a read returns.
pub struct Read {
    /// Every row, in seq order: its seq and the change it records (`None`
    /// for a placeholder, which fills its hole all the same).
    pub rows: Vec<(u64, Option<Change>)>,
    /// True when the `seq > high` part came back full: more is waiting.
    pub more: bool,
}

impl Read {
    /// The changes `cursor` had not seen, marking every row seen at `now`.
    pub fn unseen(self, cursor: &mut Cursor, now: u64) -> Vec<Change> {
        self.rows.into_iter().filter(|(seq, _)| cursor.see(*seq, now)).filter_map(|(_, c)| c).collect()
    }
}

fn to_change(r: Row) -> Option<Change> {
    let (seq, issuer, serial, op, revision, status, revoked_at, reason, changed_at_us) = r;
    let op = match op.as_str() {
        "I" => Op::Insert,
        "U" => Op::Update,
        "D" => Op::Delete,
        _ => return None, // 'P': a change that was not made
    };
    // A serial the responder could never be asked about (not a valid DER
    // INTEGER content) cannot be served either: nothing to fence.
    let serial = Serial::from_der_content(&serial).ok()?;
    let status = match (op, status) {
        (Op::Delete, _) | (_, None) => None,
        (_, Some(0)) => Some(CertStatus::Good),
        (_, Some(_)) => Some(CertStatus::Revoked {
            at: revoked_at.unwrap_or(0),
            reason: reason
                .and_then(crate::ocsp::RevocationReason::from_code)
                .unwrap_or(crate::ocsp::RevocationReason::Unspecified),
        }),
    };
    Some(Change { seq, issuer, serial, op, revision, status, changed_at_us })
}

/// Hole ranges asked for in one query.
const RANGES_PER_QUERY: usize = 64;

/// Hole queries per read: with more holes than these cover, each read asks
/// for the next ones in turn, so every hole is asked for again within
/// `holes / (RANGES_PER_QUERY × HOLE_QUERIES)` reads.
const HOLE_QUERIES: usize = 16;

/// Reads what `cursor` has not seen: up to `limit` rows after its high mark,
/// and (up to `limit` rows each) the rows now present in a share of its holes
/// (the next share on the next read).
pub fn read(conn: &mut Conn, cursor: &mut Cursor, limit: usize) -> Result<Read, mysql::Error> {
    let mut rows: Vec<Row> =
        conn.exec(format!("{COLUMNS} WHERE seq > ? ORDER BY seq LIMIT ?"), (cursor.high, limit as u64))?;
    let mut more = rows.len() >= limit;
    for chunk in cursor.next_hole_share(RANGES_PER_QUERY * HOLE_QUERIES).chunks(RANGES_PER_QUERY) {
        let cond = vec!["seq BETWEEN ? AND ?"; chunk.len()].join(" OR ");
        let mut params: Vec<mysql::Value> =
            chunk.iter().flat_map(|(a, b)| [(*a).into(), (*b).into()]).collect();
        params.push((limit as u64).into());
        let late: Vec<Row> = conn.exec(format!("{COLUMNS} WHERE {cond} ORDER BY seq LIMIT ?"), params)?;
        // A big transaction that committed inside a hole comes page by page.
        more |= late.len() >= limit;
        rows.extend(late);
    }
    rows.sort_by_key(|r| r.0);
    Ok(Read { rows: rows.into_iter().map(|r| (r.0, to_change(r))).collect(), more })
}

/// The highest seq in the outbox now (0 when empty).
pub fn max_seq(conn: &mut Conn) -> Result<u64, mysql::Error> {
    Ok(conn.query_first::<Option<u64>, _>("SELECT MAX(seq) FROM ocsp_changes")?.flatten().unwrap_or(0))
}

/// The lowest seq still kept (0 when empty).
pub fn min_seq(conn: &mut Conn) -> Result<u64, mysql::Error> {
    Ok(conn.query_first::<Option<u64>, _>("SELECT MIN(seq) FROM ocsp_changes")?.flatten().unwrap_or(0))
}

/// Where a reader starts to see every change whose statement began in the
/// last `secs` seconds (database clock): the newest seq of a change older
/// than that (0 when none is). Every seq after it is then either read or,
/// not committed yet, waited for as a hole; a transaction still open at
/// start is not stepped over, as long as it began within `secs`.
pub fn position_before(conn: &mut Conn, secs: u64) -> Result<u64, mysql::Error> {
    Ok(conn
        .exec_first::<Option<u64>, _, _>(
            "SELECT MAX(seq) FROM ocsp_changes WHERE changed_at < NOW(6) - INTERVAL ? SECOND",
            (secs,),
        )?
        .flatten()
        .unwrap_or(0))
}

/// Deletes changes older than `secs` seconds, a thousand per statement (each
/// well within the connection's timeout), never the newest row (the sequence
/// must not restart below it on a server that does not persist
/// AUTO_INCREMENT). Returns rows deleted.
pub fn prune(conn: &mut Conn, secs: u64) -> Result<u64, mysql::Error> {
    let newest = max_seq(conn)?;
    let mut total = 0;
    loop {
        conn.exec_drop(
            "DELETE FROM ocsp_changes WHERE changed_at < NOW(6) - INTERVAL ? SECOND AND seq < ? LIMIT 1000",
            (secs, newest),
        )?;
        let n = conn.affected_rows();
        total += n;
        if n < 1000 {
            return Ok(total);
        }
    }
}

/// Most holes a cursor keeps. Each is a range (a transaction's seqs between
/// two other writers' commits), so this is a million interleavings within
/// `hole_timeout_secs`; past it the oldest is given up, which the reader
/// must treat as changes lost ([`Cursor::take_given_up`]).
const MAX_HOLES: usize = 1_000_000;

/// Where a reader of the outbox is: the highest seq seen and the seqs below
/// it not seen yet (see the module docs).
#[derive(Clone, Debug)]
pub struct Cursor {
    high: u64,
    /// Holes: first seq → (last seq, when first missed, Unix seconds).
    holes: BTreeMap<u64, (u64, u64)>,
    max_holes: usize,
    /// Where the next share of holes to ask for starts.
    next_share: u64,
    /// Seqs given up before their time (too many holes), not yet reported.
    given_up: u64,
}

impl Cursor {
    /// A cursor that has seen everything up to `position`.
    pub fn new(position: u64) -> Cursor {
        Cursor { high: position, holes: BTreeMap::new(), max_holes: MAX_HOLES, next_share: 0, given_up: 0 }
    }

    /// The next `n` holes to ask for, in turn: after the last share asked,
    /// wrapping round.
    fn next_hole_share(&mut self, n: usize) -> Vec<(u64, u64)> {
        let mut share: Vec<(u64, u64)> =
            self.holes.range(self.next_share..).take(n).map(|(a, (b, _))| (*a, *b)).collect();
        if share.len() < n {
            let more = n - share.len();
            share.extend(self.holes.range(..self.next_share).take(more).map(|(a, (b, _))| (*a, *b)));
        }
        self.next_share = share.last().map_or(0, |(_, b)| b + 1);
        share
    }

    /// Seqs given up before their time since the last call: changes that
    /// may have been committed and will not be read.
    pub fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }

    /// The highest seq seen.
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Every seq at or below this has been seen or given up.
    pub fn low_water(&self) -> u64 {
        self.holes.keys().next().map_or(self.high, |first| first - 1)
    }

    /// The holes, as inclusive ranges.
    pub fn holes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.holes.iter().map(|(a, (b, _))| (*a, *b))
    }

    /// Seqs not seen yet below the high mark.
    pub fn missing(&self) -> u64 {
        self.holes().map(|(a, b)| b - a + 1).sum()
    }

    /// Records that `seq` was read at `now` (Unix seconds); false when it
    /// had been seen before.
    pub fn see(&mut self, seq: u64, now: u64) -> bool {
        if seq > self.high {
            if seq > self.high + 1 {
                self.holes.insert(self.high + 1, (seq - 1, now));
                if self.holes.len() > self.max_holes {
                    if let Some((a, (b, _))) = self.holes.pop_first() {
                        log::error!(
                            "change feed: more than {} gaps; gave up waiting for seqs {a}..={b}",
                            self.max_holes
                        );
                        self.given_up += b - a + 1;
                    }
                }
            }
            self.high = seq;
            return true;
        }
        let Some((&start, &(end, since))) = self.holes.range(..=seq).next_back() else { return false };
        if seq > end {
            return false;
        }
        self.holes.remove(&start);
        if start < seq {
            self.holes.insert(start, (seq - 1, since));
        }
        if seq < end {
            self.holes.insert(seq + 1, (end, since));
        }
        true
    }

    /// Gives up holes first missed before `before` (Unix seconds); returns
    /// how many seqs were given up.
    pub fn expire(&mut self, before: u64) -> u64 {
        let old: Vec<u64> =
            self.holes.iter().filter(|(_, (_, since))| *since < before).map(|(a, _)| *a).collect();
        let mut n = 0;
        for a in old {
            if let Some((b, _)) = self.holes.remove(&a) {
                n += b - a + 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_commit_below_the_high_mark_is_not_skipped() {
        let mut c = Cursor::new(9);
        assert!(c.see(11, 100), "11 commits first");
        assert_eq!(c.holes().collect::<Vec<_>>(), vec![(10, 10)]);
        assert_eq!(c.low_water(), 9, "the position does not pass the hole");
        assert!(c.see(10, 101), "10 commits later and is still read");
        assert_eq!(c.holes().count(), 0);
        assert_eq!(c.low_water(), 11);
        assert!(!c.see(10, 102), "seen once");
        assert!(!c.see(11, 102));
    }

    #[test]
    fn holes_split_and_expire() {
        let mut c = Cursor::new(0);
        c.see(10, 100);
        assert_eq!(c.missing(), 9);
        c.see(5, 101);
        assert_eq!(c.holes().collect::<Vec<_>>(), vec![(1, 4), (6, 9)]);
        c.see(1, 102);
        c.see(9, 102);
        assert_eq!(c.holes().collect::<Vec<_>>(), vec![(2, 4), (6, 8)]);
        c.see(20, 200);
        assert_eq!(c.expire(150), 6, "the holes missed at 100 are given up");
        assert_eq!(c.holes().collect::<Vec<_>>(), vec![(11, 19)]);
        assert_eq!(c.low_water(), 10);
        assert_eq!(c.expire(201), 9);
        assert_eq!(c.low_water(), 20);
    }

    /// A big transaction interleaved with other writers' commits leaves a
    /// hole between each two of them. Holes used to be given up silently
    /// past 1024: the big transaction's changes were then never read.
    #[test]
    fn regression_too_many_holes_is_reported_as_a_loss() {
        let mut c = Cursor::new(0);
        c.max_holes = 3;
        for s in [2, 4, 6, 8, 10] {
            c.see(s, u64::from(s as u8));
        }
        assert_eq!(c.holes().collect::<Vec<_>>(), vec![(5, 5), (7, 7), (9, 9)]);
        assert_eq!(c.take_given_up(), 2, "seqs 1 and 3, given up early, are reported");
        assert_eq!(c.take_given_up(), 0);
    }

    #[test]
    fn holes_are_asked_for_in_turn() {
        let mut c = Cursor::new(0);
        for s in (2..=20).step_by(2) {
            c.see(s, 1);
        }
        assert_eq!(c.holes().count(), 10);
        let first = c.next_hole_share(4);
        assert_eq!(first, vec![(1, 1), (3, 3), (5, 5), (7, 7)]);
        assert_eq!(c.next_hole_share(4), vec![(9, 9), (11, 11), (13, 13), (15, 15)]);
        assert_eq!(c.next_hole_share(4), vec![(17, 17), (19, 19), (1, 1), (3, 3)], "wraps round");
    }

    #[test]
    fn placeholders_and_odd_serials_are_not_changes() {
        let row = |op: &str, serial: Vec<u8>| -> Row {
            (1, "a".into(), serial, op.into(), 1, Some(1), Some(5), Some(1), 7)
        };
        assert!(to_change(row("P", vec![1])).is_none());
        assert!(to_change(row("U", vec![0x80])).is_none(), "negative: never a serial");
        let c = to_change(row("U", vec![1])).unwrap();
        assert_eq!(
            c.status,
            Some(CertStatus::Revoked { at: 5, reason: crate::ocsp::RevocationReason::KeyCompromise })
        );
        assert_eq!(to_change(row("D", vec![1])).unwrap().status, None);
    }
}
