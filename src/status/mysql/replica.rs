//! The read replica's lag, measured on the change feed both sides hold, and
//! the counters of what the fences cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

/// How often the replica's lag is measured.
pub const LAG_INTERVAL: Duration = Duration::from_millis(500);

/// How far the replica is behind, and what the fences cost: shared by the
/// lag monitor (which writes the lag), the lookup threads (which route by it
/// and count) and `/metrics`.
#[derive(Default)]
pub(super) struct Replica {
    /// Milliseconds the replica is behind the primary (`u64::MAX`: it
    /// cannot be read); 0 without a replica.
    pub(super) lag_ms: AtomicU64,
    /// Lookups read again from the primary because the replica's row was
    /// older than a change the node knows of.
    pub(super) fenced_rereads: AtomicU64,
    /// Lookups sent to the primary because the replica lagged too far.
    pub(super) routed_to_primary: AtomicU64,
    /// Lookups that failed because even the primary's row was too old.
    pub(super) behind: AtomicU64,
    /// Lookups the threads answered from the database.
    pub(super) lookups: AtomicU64,
    /// `SELECT`s they made for them (`lookups / queries`: how well misses
    /// are batched).
    pub(super) queries: AtomicU64,
}

/// Measures how far the replica is behind, every [`LAG_INTERVAL`], from the
/// change feed both sides hold: the primary's newest seq is noted with the
/// time it was first seen; the replica's lag is how long ago the primary had
/// the first seq the replica still lacks. No replication privileges are
/// needed, and it measures what lookups see (applied rows), not the I/O
/// thread. Exits when the status source is dropped.
pub(super) fn lag_monitor(primary: Opts, replica: Opts, shared: std::sync::Weak<Replica>) {
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
