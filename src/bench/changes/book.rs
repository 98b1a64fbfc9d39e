//! The [`ChangeBook`]: what the generator threads and the change follower
//! share about changes. The follower applies `ocsp_changes` rows to it; every
//! answer is judged against it as it arrives; answers it cannot decide yet
//! wait (bounded by [`MAX_PENDING`]) and are judged again after the final
//! poll; and it counts what the report's change section shows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::history::{explain, insert, judge, History, Judgment, State, Step, Track};
use crate::bench::keyspace::{self, Keyspace};
use crate::bench::results::{client_histogram, ChangeReport, Propagation};
use crate::bench::verify::Asserted;
use crate::ocsp::Serial;

/// Answers kept waiting for the change feed at most; one more is an error
/// (counted, not judged), so a server that lies about many serials cannot
/// make the bench hold every answer.
pub const MAX_PENDING: usize = 100_000;

/// An answer that did not fit what the bench knew when it arrived.
#[derive(Clone, Copy, Debug)]
struct Pending {
    idx: u32,
    target: u16,
    stage: Option<u16>,
    sent_ns: u64,
    received_ns: u64,
    asserted: Asserted,
}

/// What [`ChangeBook::judge_answer`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The answer carries a status it may carry.
    Accepted,
    /// Not decidable yet: judged again after the run.
    Pending,
    /// Not decidable and no room to wait: an error, not judged.
    Overflow,
}

/// A wrong answer found after the run (from the pending ones).
#[derive(Clone, Debug)]
pub struct LateWrong {
    /// The stage the request was sent in (`None`: warm-up).
    pub stage: Option<usize>,
    /// Target index.
    pub target: usize,
    /// What was wrong.
    pub message: String,
}

#[derive(Default, Debug)]
struct Counters {
    judged_against_change: AtomicU64,
    older_in_window: AtomicU64,
    pending: AtomicU64,
    pending_resolved: AtomicU64,
    pending_overflow: AtomicU64,
    wrong: AtomicU64,
    unjudged: AtomicU64,
}

/// Everything the generator threads share about changes: the history of
/// every changed certificate the run asks about, which the follower fills
/// in, and the answers waiting for it.
#[derive(Debug)]
pub struct ChangeBook {
    base: Instant,
    bound_ns: u64,
    keyspace: Arc<Keyspace>,
    /// (issuer index, serial) → entry index, for the entries the run asks about.
    index: HashMap<(u16, Serial), u32>,
    /// Issuer name → issuer index.
    issuers: HashMap<String, u16>,
    /// Target addresses, for messages and the report.
    targets: Vec<String>,
    /// Per entry: has a history (so unchanged entries need no lock).
    changed: Box<[AtomicBool]>,
    histories: RwLock<HashMap<u32, History>>,
    /// τ of the follower's last complete poll, ns since `base`.
    seen_until_ns: AtomicU64,
    pending: Mutex<Vec<Pending>>,
    counters: Counters,
}

impl ChangeBook {
    /// A book for `used` entries of `keyspace` (those the run asks about),
    /// answers from `targets`, times measured from `base` (no later than
    /// the follower's first poll).
    pub fn new(
        base: Instant,
        bound: Duration,
        keyspace: Arc<Keyspace>,
        used: impl IntoIterator<Item = u32>,
        targets: Vec<String>,
    ) -> ChangeBook {
        let index = used
            .into_iter()
            .filter_map(|i| keyspace.entries.get(i as usize).map(|e| ((e.issuer, e.serial), i)))
            .collect();
        let issuers =
            keyspace.issuers.iter().enumerate().map(|(i, is)| (is.name.clone(), i as u16)).collect();
        ChangeBook {
            base,
            bound_ns: bound.as_nanos().min(u64::MAX as u128) as u64,
            changed: (0..keyspace.entries.len()).map(|_| AtomicBool::new(false)).collect(),
            keyspace,
            index,
            issuers,
            targets,
            histories: RwLock::new(HashMap::new()),
            seen_until_ns: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            counters: Counters::default(),
        }
    }

    /// `t` as ns since the base.
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos().min(u64::MAX as u128) as u64
    }

    /// Applies a change row seen at `seen`; returns whether it is about a
    /// certificate the run asks about. Placeholder (`P`) rows are not changes.
    pub fn apply(&self, row: &ChangeRow, seen: Instant) -> bool {
        let state = match row.op.as_str() {
            "D" => State::Absent,
            "I" | "U" => {
                State::Status(keyspace::db_status(row.status.unwrap_or(0), row.revoked_at, row.reason))
            }
            _ => return false,
        };
        let Some(&issuer) = self.issuers.get(&row.issuer) else { return false };
        let Ok(serial) = Serial::from_der_content(&row.serial) else { return false };
        let Some(&idx) = self.index.get(&(issuer, serial)) else { return false };
        let mut step = Step::change(row.seq, row.revision, state, self.ns(seen));
        step.track = Some(Arc::new(Track::new(self.targets.len())));
        let mut map = self.histories.write().unwrap_or_else(|e| e.into_inner());
        let history = map.entry(idx).or_insert_with(|| {
            let status = self.keyspace.entries[idx as usize].status;
            vec![Step::initial(status, self.keyspace.revisions.get(idx as usize).copied().unwrap_or(0))]
        });
        insert(history, step);
        self.changed[idx as usize].store(true, Ordering::Release);
        true
    }

    /// Records that every change not applied yet will be seen after `seen`
    /// (the follower's poll that returned then is applied in full).
    pub fn seen_until(&self, seen: Instant) {
        self.seen_until_ns.fetch_max(self.ns(seen), Ordering::Release);
    }

    /// Judges an answer from target `target` asserting `a` for entry `idx`,
    /// to a request sent at `sent` in `stage` (`None`: warm-up), received at
    /// `received`.
    pub fn judge_answer(
        &self,
        idx: u32,
        target: usize,
        stage: Option<usize>,
        sent: Instant,
        received: Instant,
        a: Asserted,
    ) -> Check {
        let (sent_ns, received_ns) = (self.ns(sent), self.ns(received));
        // Final only if no change the follower has yet to see can apply.
        let until = self.seen_until_ns.load(Ordering::Acquire);
        let decidable = sent_ns <= until.saturating_add(self.bound_ns);
        if decidable && !self.changed[idx as usize].load(Ordering::Acquire) {
            if a.is(&self.keyspace.entries[idx as usize].status) {
                return Check::Accepted;
            }
        } else if decidable {
            let map = self.histories.read().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = map.get(&idx) {
                let j = judge(h, sent_ns, self.bound_ns, a);
                if j.accepted {
                    self.count(h, &j, target, sent_ns, received_ns, a);
                    return Check::Accepted;
                }
            }
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            self.counters.pending_overflow.fetch_add(1, Ordering::Relaxed);
            return Check::Overflow;
        }
        pending.push(Pending {
            idx,
            target: target as u16,
            stage: stage.map(|s| s as u16),
            sent_ns,
            received_ns,
            asserted: a,
        });
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        Check::Pending
    }

    /// Counts a judged answer and notes which changes it showed (or, asked
    /// after their τ, did not).
    fn count(&self, h: &[Step], j: &Judgment, target: usize, sent_ns: u64, received_ns: u64, a: Asserted) {
        if j.accepted && j.against_change {
            self.counters.judged_against_change.fetch_add(1, Ordering::Relaxed);
        }
        if j.older_in_window {
            self.counters.older_in_window.fetch_add(1, Ordering::Relaxed);
        }
        for s in h.get(j.istar..).unwrap_or(&[]) {
            let (Some(seen), Some(track)) = (s.seen_ns, &s.track) else { continue };
            if seen > sent_ns {
                continue;
            }
            if let Some(asked) = track.asked.get(target) {
                asked.store(true, Ordering::Relaxed);
            }
            if s.state.accepts(a) {
                if let Some(first) = track.first_new_ns.get(target) {
                    first.fetch_min(received_ns, Ordering::Relaxed);
                }
            }
        }
    }

    /// Judges the pending answers again, once the follower has made its final
    /// poll (`complete`: it succeeded, so every change a server could have
    /// answered from is known). Returns the wrong ones; without a final poll,
    /// those that still do not fit are counted as not judged instead.
    pub fn resolve(&self, complete: bool) -> Vec<LateWrong> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let map = self.histories.read().unwrap_or_else(|e| e.into_inner());
        let mut wrongs = Vec::new();
        for p in pending {
            let entry = &self.keyspace.entries[p.idx as usize];
            let initial;
            let h: &[Step] = match map.get(&p.idx) {
                Some(h) => h,
                None => {
                    let revision = self.keyspace.revisions.get(p.idx as usize).copied().unwrap_or(0);
                    initial = [Step::initial(entry.status, revision)];
                    &initial
                }
            };
            let j = judge(h, p.sent_ns, self.bound_ns, p.asserted);
            self.count(h, &j, p.target as usize, p.sent_ns, p.received_ns, p.asserted);
            if j.accepted {
                self.counters.pending_resolved.fetch_add(1, Ordering::Relaxed);
            } else if !complete {
                self.counters.unjudged.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.wrong.fetch_add(1, Ordering::Relaxed);
                let issuer =
                    self.keyspace.issuers.get(entry.issuer as usize).map_or("?", |i| i.name.as_str());
                let target = self.targets.get(p.target as usize).map_or("?", String::as_str);
                wrongs.push(LateWrong {
                    stage: p.stage.map(usize::from),
                    target: p.target as usize,
                    message: format!(
                        "serial {} (issuer {issuer}) from {target}: {}",
                        entry.serial,
                        explain(h, &j, p.sent_ns, self.bound_ns, p.asserted)
                    ),
                });
            }
        }
        wrongs
    }

    /// The numbers for the report (after [`ChangeBook::resolve`]).
    pub fn report(&self, feed: &FeedCounts, poll: Duration) -> ChangeReport {
        let map = self.histories.read().unwrap_or_else(|e| e.into_inner());
        let mut propagation: Vec<Propagation> = self
            .targets
            .iter()
            .map(|t| Propagation { target: t.clone(), shown_us: client_histogram(), not_shown: 0 })
            .collect();
        for h in map.values() {
            for s in h {
                // A REPLACE's delete is never the row's state (its insert has
                // the same revision and wins): nothing to show.
                if s.deletion && h.iter().any(|o| o.revision == s.revision && !o.deletion) {
                    continue;
                }
                let (Some(seen), Some(track)) = (s.seen_ns, &s.track) else { continue };
                for (t, p) in propagation.iter_mut().enumerate() {
                    let first = track.first_new_ns[t].load(Ordering::Relaxed);
                    if first != u64::MAX {
                        let us = first.saturating_sub(seen) / 1000;
                        let _ = p.shown_us.record(us.clamp(1, p.shown_us.high()));
                    } else if track.asked[t].load(Ordering::Relaxed) {
                        p.not_shown += 1;
                    }
                }
            }
        }
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChangeReport {
            poll_ms: poll.as_millis() as u64,
            bound_ms: self.bound_ns / 1_000_000,
            seen: feed.seen,
            seen_in_keyspace: feed.in_keyspace,
            late: feed.late,
            gaps_given_up: feed.given_up,
            poll_errors: feed.poll_errors,
            final_poll: feed.final_poll,
            entries_changed: map.len() as u64,
            judged_against_change: n(&c.judged_against_change),
            older_in_window: n(&c.older_in_window),
            pending: n(&c.pending),
            pending_resolved: n(&c.pending_resolved),
            pending_overflow: n(&c.pending_overflow),
            wrong: n(&c.wrong),
            unjudged: n(&c.unjudged),
            propagation,
        }
    }
}

/// A row of `ocsp_changes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    /// Feed position.
    pub seq: u64,
    /// Issuer name.
    pub issuer: String,
    /// Serial, DER INTEGER content octets.
    pub serial: Vec<u8>,
    /// `I`, `U`, `D` or `P`.
    pub op: String,
    /// The row's revision after the change (see the migration).
    pub revision: u64,
    /// `status` after the change (NULL for `D`).
    pub status: Option<u8>,
    /// `revoked_at` after the change.
    pub revoked_at: Option<u64>,
    /// `reason` after the change.
    pub reason: Option<u8>,
}

/// What the follower read, for the report.
#[derive(Clone, Debug, Default)]
pub struct FeedCounts {
    /// Changes read (placeholders not counted).
    pub seen: u64,
    /// Of them, about certificates the run asks about.
    pub in_keyspace: u64,
    /// Rows that became visible after rows with higher `seq` (a transaction
    /// that took its seq earlier committed later).
    pub late: u64,
    /// Missing seqs no longer re-queried after 60 s (rolled back, most likely;
    /// the final poll reads them all again anyway).
    pub given_up: u64,
    /// Failed polls.
    pub poll_errors: u64,
    /// The final poll after the run succeeded.
    pub final_poll: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::CertStatus;

    fn said_revoked(at: u64) -> Asserted {
        Asserted::Revoked { at, reason: Some(1) }
    }

    fn book(n: usize) -> (ChangeBook, Instant) {
        let issuer = crate::bench::keyspace::ClientIssuer {
            name: "test".into(),
            name_hash_sha1: vec![],
            key_hash_sha1: vec![],
            subject_der: vec![],
            spki_der: vec![],
        };
        let entries = (0..n)
            .map(|i| crate::bench::keyspace::Entry {
                issuer: 0,
                serial: Serial::from_der_content(&[0x10, i as u8]).unwrap(),
                status: CertStatus::Good,
            })
            .collect();
        let ks =
            Keyspace { issuers: vec![issuer].into(), entries, revisions: vec![1; n], skipped_expired: 0 };
        let base = Instant::now();
        let b = ChangeBook::new(
            base,
            Duration::from_secs(1),
            Arc::new(ks),
            0..n as u32,
            vec!["a:1".into(), "b:2".into()],
        );
        (b, base)
    }

    fn revoke_row(seq: u64, serial: u8) -> ChangeRow {
        ChangeRow {
            seq,
            issuer: "test".into(),
            serial: vec![0x10, serial],
            op: "U".into(),
            revision: seq,
            status: Some(1),
            revoked_at: Some(100),
            reason: Some(1),
        }
    }

    #[test]
    fn an_answer_the_follower_cannot_explain_yet_waits_and_is_judged_after_the_run() {
        let (b, base) = book(3);
        let at = |ms: u64| base + Duration::from_millis(ms);
        b.seen_until(at(10));
        // The server saw the revocation before the bench's follower did.
        assert_eq!(b.judge_answer(0, 0, Some(0), at(20), at(21), said_revoked(100)), Check::Pending);
        // A stale answer, also waiting; and one for an entry that never changes.
        assert_eq!(b.judge_answer(0, 1, Some(0), at(3000), at(3001), Asserted::Good), Check::Pending);
        assert_eq!(b.judge_answer(1, 1, None, at(3000), at(3001), said_revoked(7)), Check::Pending);
        // Decidable and right: accepted at once.
        assert_eq!(b.judge_answer(2, 0, Some(0), at(20), at(21), Asserted::Good), Check::Accepted);
        // The follower sees the change at 30 ms.
        assert!(b.apply(&revoke_row(5, 0), at(30)));
        assert!(!b.apply(&ChangeRow { op: "P".into(), ..revoke_row(6, 1) }, at(30)), "placeholder");
        assert!(!b.apply(&revoke_row(7, 9), at(30)), "not in the keyspace");
        b.seen_until(at(30));
        let wrongs = b.resolve(true);
        assert_eq!(wrongs.len(), 2, "{wrongs:?}");
        assert!(wrongs
            .iter()
            .any(|w| w.stage == Some(0) && w.target == 1 && w.message.contains("answered good")));
        assert!(wrongs
            .iter()
            .any(|w| w.stage.is_none() && w.message.contains("no change of this certificate")));
        let r = b.report(&FeedCounts::default(), Duration::from_millis(20));
        assert_eq!((r.pending, r.pending_resolved, r.wrong, r.entries_changed), (3, 1, 2, 1));
        // The early revoked answer was sent before τ: it does not time the change.
        assert!(r.propagation.iter().all(|p| p.shown_us.is_empty()));
        assert_eq!(r.propagation[1].not_shown, 1, "target b answered after τ, never revoked");
    }

    #[test]
    fn a_stalled_follower_defers_judgment_and_the_queue_is_bounded() {
        let (b, base) = book(1);
        let at = |ms: u64| base + Duration::from_millis(ms);
        b.seen_until(at(100));
        // Right by what is known, but sent more than a bound after the last
        // poll: a change the follower has not read could apply.
        assert_eq!(b.judge_answer(0, 0, Some(0), at(1101), at(1102), Asserted::Good), Check::Pending);
        assert_eq!(b.judge_answer(0, 0, Some(0), at(1100), at(1102), Asserted::Good), Check::Accepted);
        assert!(b.resolve(true).is_empty());
        for _ in 0..MAX_PENDING {
            assert_eq!(b.judge_answer(0, 0, Some(0), at(5000), at(5001), Asserted::Good), Check::Pending);
        }
        assert_eq!(b.judge_answer(0, 0, Some(0), at(5000), at(5001), Asserted::Good), Check::Overflow);
        assert!(b.resolve(true).is_empty(), "all of them fit once the follower caught up");
        // Without a final poll, an answer that still does not fit is not judged.
        assert_eq!(b.judge_answer(0, 0, Some(0), at(90), at(91), Asserted::Unknown), Check::Pending);
        assert!(b.resolve(false).is_empty());
        let r = b.report(&FeedCounts::default(), Duration::from_millis(20));
        assert_eq!((r.pending_overflow, r.pending_resolved, r.unjudged), (1, MAX_PENDING as u64 + 1, 1));
    }

    #[test]
    fn propagation_is_timed_per_target_from_tau_to_the_first_new_answer() {
        let (b, base) = book(1);
        let at = |ms: u64| base + Duration::from_millis(ms);
        assert!(b.apply(&revoke_row(5, 0), at(100)));
        b.seen_until(at(100));
        // Target 0: old status inside the window, then the new one at 350 ms.
        assert_eq!(b.judge_answer(0, 0, Some(0), at(200), at(210), Asserted::Good), Check::Accepted);
        assert_eq!(b.judge_answer(0, 0, Some(0), at(340), at(350), said_revoked(100)), Check::Accepted);
        assert_eq!(b.judge_answer(0, 0, Some(0), at(400), at(410), said_revoked(100)), Check::Accepted);
        // Target 1: only the old status, inside the window.
        assert_eq!(b.judge_answer(0, 1, Some(0), at(500), at(510), Asserted::Good), Check::Accepted);
        let r = b.report(&FeedCounts::default(), Duration::from_millis(20));
        assert_eq!(r.older_in_window, 2);
        assert_eq!(r.propagation[0].shown_us.len(), 1);
        let us = r.propagation[0].shown_us.max();
        assert!((249_000..=251_000).contains(&us), "{us}");
        assert_eq!((r.propagation[1].shown_us.len(), r.propagation[1].not_shown), (0, 1));
    }

    #[test]
    fn a_replace_times_its_new_row_not_its_delete() {
        let (b, base) = book(1);
        let at = |ms: u64| base + Duration::from_millis(ms);
        // REPLACE: the new row's I (rev 9) and the old row's D (rev 1 + 1 = 2,
        // or 9 when nothing came between; the tie case).
        assert!(b.apply(&ChangeRow { op: "I".into(), ..revoke_row(9, 0) }, at(100)));
        let delete = ChangeRow { seq: 10, op: "D".into(), revision: 9, status: None, ..revoke_row(10, 0) };
        assert!(b.apply(&delete, at(100)));
        b.seen_until(at(1200));
        assert_eq!(b.judge_answer(0, 0, Some(0), at(1200), at(1210), said_revoked(100)), Check::Accepted);
        assert_eq!(b.judge_answer(0, 1, Some(0), at(1200), at(1210), Asserted::Unauthorized), Check::Pending);
        assert_eq!(b.resolve(true).len(), 1, "the deleted state never applies");
        let r = b.report(&FeedCounts::default(), Duration::from_millis(20));
        assert_eq!((r.propagation[0].shown_us.len(), r.propagation[0].not_shown), (1, 0));
        assert_eq!((r.propagation[1].shown_us.len(), r.propagation[1].not_shown), (0, 1));
    }
}
