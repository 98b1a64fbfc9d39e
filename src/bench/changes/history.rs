//! The judging rule on one certificate: its [`History`] of states in revision
//! order, and [`judge`], which says whether an answer sent at some instant may
//! carry the status it carries (see the parent module for why the rule is
//! sound). [`judge`] takes times and states and reads no clock, so every
//! boundary is a unit test.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use crate::bench::verify::Asserted;
use crate::status::CertStatus;

/// A certificate's row at some point: a status, or no row at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The row exists with this status.
    Status(CertStatus),
    /// The row was deleted: the server may answer `unauthorized`.
    Absent,
}

impl State {
    /// True when an answer asserting `a` is the answer for this state.
    pub fn accepts(&self, a: Asserted) -> bool {
        match self {
            State::Status(s) => a.is(s),
            State::Absent => a == Asserted::Unauthorized,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Status(CertStatus::Good) => write!(f, "good"),
            State::Status(CertStatus::Revoked { at, reason }) => write!(f, "revoked at {at} ({reason:?})"),
            State::Absent => write!(f, "deleted (unauthorized)"),
        }
    }
}

/// Per target, the first answer that showed a change.
#[derive(Debug)]
pub struct Track {
    /// Earliest receipt (ns since the book's base) of an answer to a request
    /// sent after τ that carried the change's state; `u64::MAX`: none yet.
    pub(super) first_new_ns: Box<[AtomicU64]>,
    /// Whether any answer to a request sent after τ came back at all.
    pub(super) asked: Box<[AtomicBool]>,
}

impl Track {
    pub(super) fn new(targets: usize) -> Track {
        Track {
            first_new_ns: (0..targets).map(|_| AtomicU64::new(u64::MAX)).collect(),
            asked: (0..targets).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

/// One state in a certificate's history.
#[derive(Clone, Debug)]
pub struct Step {
    /// The row's revision in this state (for a `D`: the deleted row's + 1).
    pub revision: u64,
    /// A `D` change (loses a revision tie).
    pub deletion: bool,
    /// The row's state after the change.
    pub state: State,
    /// τ, ns since the book's base; `None` for the status read at start,
    /// which applies from the beginning.
    pub seen_ns: Option<u64>,
    /// The change's `seq` (0 for the status read at start).
    pub seq: u64,
    /// Which targets showed it, and when (`None` for the status read at start).
    pub track: Option<Arc<Track>>,
}

impl Step {
    /// The status read at start, at the row's revision then.
    pub fn initial(status: CertStatus, revision: u64) -> Step {
        Step { revision, deletion: false, state: State::Status(status), seen_ns: None, seq: 0, track: None }
    }

    /// A change seen at `seen_ns`.
    pub fn change(seq: u64, revision: u64, state: State, seen_ns: u64) -> Step {
        let deletion = state == State::Absent;
        Step { revision, deletion, state, seen_ns: Some(seen_ns), seq, track: None }
    }

    fn order(&self) -> (u64, bool) {
        (self.revision, !self.deletion)
    }
}

/// A certificate's states in revision order.
pub type History = Vec<Step>;

/// Inserts `step` in revision order (ties: a deletion before the state that
/// replaced it; otherwise after the steps already there, so the status read
/// at start comes before the change it reflects).
pub fn insert(history: &mut History, step: Step) {
    let at = history.partition_point(|s| s.order() <= step.order());
    history.insert(at, step);
}

/// The verdict on one answer against a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgment {
    /// Index of `i*`: the newest step with τ + bound ≤ t_send.
    pub istar: usize,
    /// The answer carries the state of `i*` or of a newer step.
    pub accepted: bool,
    /// `i*` is a change, not the status read at start: the answer was sent
    /// after τ + bound of a change of its certificate.
    pub against_change: bool,
    /// Accepted, but with a state older than a change seen before the
    /// request was sent: the old status inside that change's bound window.
    pub older_in_window: bool,
}

/// Judges an answer asserting `a` to a request sent at `t_send_ns` (see the
/// module docs); `history` holds at least the status read at start.
pub fn judge(history: &[Step], t_send_ns: u64, bound_ns: u64, a: Asserted) -> Judgment {
    let applies = |s: &Step| s.seen_ns.is_none_or(|t| t.saturating_add(bound_ns) <= t_send_ns);
    let istar = history.iter().rposition(applies).unwrap_or(0);
    let newer = history.get(istar..).unwrap_or(&[]);
    let accepted = newer.iter().any(|s| s.state.accepts(a));
    // The newest step seen before the request went out.
    let seen_before = |s: &Step| s.seen_ns.is_none_or(|t| t <= t_send_ns);
    let last_seen = history.iter().rposition(seen_before).unwrap_or(istar).max(istar);
    let older_in_window = accepted
        && last_seen > istar
        && !history.get(last_seen..).unwrap_or(&[]).iter().any(|s| s.state.accepts(a));
    Judgment {
        istar,
        accepted,
        against_change: newer.first().is_some_and(|s| s.seen_ns.is_some()),
        older_in_window,
    }
}

/// Why an answer does not fit `history`, for the operator: what it carried,
/// what it should have, and when it was sent relative to the changes' τ.
pub fn explain(history: &[Step], j: &Judgment, t_send_ns: u64, bound_ns: u64, a: Asserted) -> String {
    let mut want: Vec<String> = Vec::new();
    for s in history.get(j.istar..).unwrap_or(&[]) {
        let w = s.state.to_string();
        if !want.contains(&w) {
            want.push(w);
        }
    }
    let rel = |s: &Step| {
        let tau = s.seen_ns.unwrap_or(0);
        let d = t_send_ns as f64 / 1e9 - tau as f64 / 1e9;
        format!(
            "sent τ{d:+.3} s of change seq {} (rev {}, bound {:.3} s)",
            s.seq,
            s.revision,
            bound_ns as f64 / 1e9
        )
    };
    let when = match history.get(j.istar) {
        Some(s) if s.seen_ns.is_some() => rel(s),
        _ => match history.iter().rev().find(|s| s.seen_ns.is_some()) {
            Some(s) => format!("no change applied yet: {}", rel(s)),
            None => "no change of this certificate seen".to_string(),
        },
    };
    format!("answered {a}, expected {}; {when}", want.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::RevocationReason;

    const MS: u64 = 1_000_000;
    const BOUND: u64 = 1000 * MS;

    fn revoked(at: u64) -> CertStatus {
        CertStatus::Revoked { at, reason: RevocationReason::KeyCompromise }
    }

    fn said_revoked(at: u64) -> Asserted {
        Asserted::Revoked { at, reason: Some(1) }
    }

    fn history(steps: Vec<Step>) -> History {
        let mut h = Vec::new();
        for s in steps {
            insert(&mut h, s);
        }
        h
    }

    #[test]
    fn history_orders_by_revision_and_a_replace_beats_its_delete() {
        // Seen out of order (a late seq), and a REPLACE: its insert (rev 9)
        // was seen before the delete carrying the same revision.
        let h = history(vec![
            Step::initial(CertStatus::Good, 5),
            Step::change(9, 9, State::Status(revoked(100)), 10 * MS),
            Step::change(10, 9, State::Absent, 20 * MS),
            Step::change(7, 7, State::Status(CertStatus::Good), 30 * MS),
        ]);
        let revs: Vec<(u64, bool)> = h.iter().map(|s| (s.revision, s.deletion)).collect();
        assert_eq!(revs, vec![(5, false), (7, false), (9, true), (9, false)]);
        assert_eq!(h.last().unwrap().state, State::Status(revoked(100)), "the REPLACE's row is the state");
        // A change the start read already reflected sorts before it.
        let h = history(vec![
            Step::initial(revoked(100), 12),
            Step::change(12, 12, State::Status(revoked(100)), 5 * MS),
            Step::change(11, 11, State::Status(CertStatus::Good), 5 * MS),
        ]);
        assert_eq!(h.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![11, 0, 12]);
    }

    #[test]
    fn istar_is_the_newest_change_past_its_bound_at_the_boundary() {
        let h = history(vec![
            Step::initial(CertStatus::Good, 1),
            Step::change(2, 2, State::Status(revoked(100)), 1000 * MS),
        ]);
        // One ns before τ + bound: the old status is still allowed, and it is
        // inside the window (the change was seen before the request).
        let j = judge(&h, 2000 * MS - 1, BOUND, Asserted::Good);
        assert_eq!((j.istar, j.accepted, j.against_change, j.older_in_window), (0, true, false, true));
        // The new one too.
        assert!(judge(&h, 2000 * MS - 1, BOUND, said_revoked(100)).accepted);
        // At τ + bound exactly: only the new status.
        let j = judge(&h, 2000 * MS, BOUND, Asserted::Good);
        assert_eq!((j.istar, j.accepted, j.against_change), (1, false, true));
        let j = judge(&h, 2000 * MS, BOUND, said_revoked(100));
        assert_eq!((j.istar, j.accepted, j.against_change, j.older_in_window), (1, true, true, false));
        // Sent before τ: the old status, not counted as inside the window.
        let j = judge(&h, 999 * MS, BOUND, Asserted::Good);
        assert!(j.accepted && !j.older_in_window && !j.against_change);
        // Wrong reason or time is not the revoked status.
        assert!(!judge(&h, 3000 * MS, BOUND, Asserted::Revoked { at: 100, reason: None }).accepted);
        assert!(!judge(&h, 3000 * MS, BOUND, said_revoked(101)).accepted);
        assert!(!judge(&h, 3000 * MS, BOUND, Asserted::Unknown).accepted);
    }

    #[test]
    fn a_newer_change_is_accepted_and_an_older_one_is_not() {
        // Revoked at τ=1 s, un-revoked at τ=1.5 s: at 2.2 s i* is the
        // revocation; good (the newer change) is fine, and at 2.6 s only good.
        let h = history(vec![
            Step::initial(CertStatus::Good, 1),
            Step::change(2, 2, State::Status(revoked(100)), 1000 * MS),
            Step::change(3, 3, State::Status(CertStatus::Good), 1500 * MS),
        ]);
        let j = judge(&h, 2200 * MS, BOUND, Asserted::Good);
        assert!(j.accepted && j.against_change && j.istar == 1 && !j.older_in_window);
        assert!(judge(&h, 2200 * MS, BOUND, said_revoked(100)).older_in_window);
        assert!(!judge(&h, 2600 * MS, BOUND, said_revoked(100)).accepted);
        // A late lower seq seen last never outranks a higher revision.
        let h = history(vec![
            Step::initial(CertStatus::Good, 1),
            Step::change(5, 5, State::Status(revoked(100)), 1000 * MS),
            Step::change(4, 4, State::Status(revoked(50)), 1200 * MS),
        ]);
        assert_eq!(judge(&h, 5000 * MS, BOUND, said_revoked(100)).istar, 2);
        assert!(!judge(&h, 5000 * MS, BOUND, said_revoked(50)).accepted);
    }

    #[test]
    fn a_deleted_certificate_may_be_unauthorized_and_nothing_else_may() {
        let h =
            history(vec![Step::initial(CertStatus::Good, 1), Step::change(2, 2, State::Absent, 1000 * MS)]);
        assert!(judge(&h, 2000 * MS, BOUND, Asserted::Unauthorized).accepted);
        assert!(!judge(&h, 2000 * MS, BOUND, Asserted::Good).accepted);
        assert!(judge(&h, 1500 * MS, BOUND, Asserted::Good).accepted, "inside the window");
        assert!(judge(&h, 1500 * MS, BOUND, Asserted::Unauthorized).accepted, "already deleted");
        // Without a deletion, unauthorized is never right.
        let h = history(vec![Step::initial(CertStatus::Good, 1)]);
        assert!(!judge(&h, 0, BOUND, Asserted::Unauthorized).accepted);
        assert!(judge(&h, 0, BOUND, Asserted::Good).accepted);
    }
}
