//! The run summary: per stage, per target and for the change feed, the counts
//! and latencies (in ms) a planner reads, the verdict with its reasons, and
//! the capacity model on top. `summary.json` is this structure serialized;
//! `summary.md` renders it for people (see `markdown`).

use serde::Serialize;

use super::capacity::{Derived, Planning};
pub(super) use super::stages::{LatencyMs, OutcomeCounts, StageSummary};
use crate::bench::results::{CapacityInputs, ChangeReport, Outcome, RunMeta, RunReport, TargetResult};

/// One target (node) over the measured stages.
#[derive(Clone, Debug, Serialize)]
pub(super) struct TargetSummary {
    pub(super) target: String,
    pub(super) sent: u64,
    /// Correct answers, tryLater included.
    pub(super) answers: u64,
    /// Error outcomes (wrong answers included).
    pub(super) errors: u64,
    pub(super) wrong: u64,
    pub(super) counts: OutcomeCounts,
}

impl TargetSummary {
    pub(super) fn new(t: &TargetResult) -> TargetSummary {
        TargetSummary {
            target: t.target.clone(),
            sent: t.sent,
            answers: t.answers(),
            errors: t.counts[Outcome::Error.index()],
            wrong: t.wrong,
            counts: OutcomeCounts::of(|o| t.counts[o.index()]),
        }
    }
}

/// Per target: from τ to the first answer with a change's status.
#[derive(Clone, Debug, Serialize)]
pub(super) struct PropagationSummary {
    pub(super) target: String,
    /// Changes the target answered with (one value each).
    pub(super) changes: u64,
    /// Changes asked about after τ that it never answered with.
    pub(super) not_shown: u64,
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    pub(super) max_ms: Option<f64>,
}

/// Change-aware verification (see `ChangeReport` for each field).
#[derive(Clone, Debug, Serialize)]
pub(super) struct ChangesSummary {
    pub(super) bound_ms: u64,
    pub(super) poll_ms: u64,
    pub(super) seen: u64,
    pub(super) seen_in_keyspace: u64,
    pub(super) late: u64,
    pub(super) gaps_given_up: u64,
    pub(super) poll_errors: u64,
    pub(super) final_poll: bool,
    pub(super) entries_changed: u64,
    pub(super) answers_judged_against_change: u64,
    pub(super) answers_older_in_window: u64,
    pub(super) pending: u64,
    pub(super) pending_resolved: u64,
    pub(super) pending_overflow: u64,
    pub(super) wrong: u64,
    pub(super) unjudged: u64,
    /// τ (the follower saw the change) → receipt of the first answer, to a
    /// request sent after τ, carrying the change's status; per target.
    pub(super) seen_to_first_new_answer_ms: Vec<PropagationSummary>,
}

impl ChangesSummary {
    pub(super) fn new(c: &ChangeReport) -> ChangesSummary {
        ChangesSummary {
            bound_ms: c.bound_ms,
            poll_ms: c.poll_ms,
            seen: c.seen,
            seen_in_keyspace: c.seen_in_keyspace,
            late: c.late,
            gaps_given_up: c.gaps_given_up,
            poll_errors: c.poll_errors,
            final_poll: c.final_poll,
            entries_changed: c.entries_changed,
            answers_judged_against_change: c.judged_against_change,
            answers_older_in_window: c.older_in_window,
            pending: c.pending,
            pending_resolved: c.pending_resolved,
            pending_overflow: c.pending_overflow,
            wrong: c.wrong,
            unjudged: c.unjudged,
            seen_to_first_new_answer_ms: c
                .propagation
                .iter()
                .map(|p| {
                    let l = LatencyMs::of(&p.shown_us);
                    PropagationSummary {
                        target: p.target.clone(),
                        changes: p.shown_us.len(),
                        not_shown: p.not_shown,
                        p50_ms: l.as_ref().map(|l| l.p50),
                        p99_ms: l.as_ref().map(|l| l.p99),
                        max_ms: l.as_ref().map(|l| l.max),
                    }
                })
                .collect(),
        }
    }
}

/// The whole capacity summary; `summary.json` is this, `summary.md` renders it.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Summary<'a> {
    pub(super) passed: bool,
    /// Why the run failed; empty when it passed.
    pub(super) fail_reasons: Vec<String>,
    pub(super) meta: &'a RunMeta,
    pub(super) capacity: &'a CapacityInputs,
    pub(super) stages: Vec<StageSummary>,
    /// Per target over the measured stages (their sums are the stages').
    pub(super) targets: Vec<TargetSummary>,
    /// Wrong answers during the warm-up (not in any stage's count).
    pub(super) warm_up_wrong: u64,
    /// Change-aware verification; `null` unless the change follower ran.
    pub(super) changes: Option<ChangesSummary>,
    pub(super) derived: Derived,
    pub(super) planning: Planning,
}

impl Summary<'_> {
    /// Summarizes `report`; nothing else is read, so a run re-exports alike.
    pub(super) fn new(report: &RunReport) -> Summary<'_> {
        let stages: Vec<_> = report.stages.iter().map(StageSummary::new).collect();
        let derived = Derived::new(report, &stages);
        let planning = Planning::new(report, &derived);
        let fail_reasons = fail_reasons(report);
        Summary {
            passed: fail_reasons.is_empty(),
            fail_reasons,
            meta: &report.meta,
            capacity: &report.capacity,
            stages,
            targets: report.targets.iter().map(TargetSummary::new).collect(),
            warm_up_wrong: report.warm_wrong,
            changes: report.changes.as_ref().map(ChangesSummary::new),
            derived,
            planning,
        }
    }
}

/// Why the run failed: wrong or error answers, answers the change feed could
/// not judge, or no answers at all. Empty when it passed.
fn fail_reasons(report: &RunReport) -> Vec<String> {
    let mut fail_reasons = Vec::new();
    for s in &report.stages {
        if s.wrong > 0 {
            fail_reasons.push(format!("stage {}: {} wrong answers", s.name, s.wrong));
        }
        let errors = s.by_outcome.count(Outcome::Error);
        if errors > 0 {
            fail_reasons.push(format!("stage {}: {errors} error answers", s.name));
        }
        if let Some(p) = s.cdn.as_ref().map(|c| &c.purge).filter(|p| p.failed > 0) {
            fail_reasons
                .push(format!("stage {}: {} of {} purge requests failed", s.name, p.failed, p.requests));
        }
    }
    if report.warm_wrong > 0 {
        fail_reasons.push(format!("warm-up: {} wrong answers", report.warm_wrong));
    }
    if let Some(c) = &report.changes {
        if c.pending_overflow > 0 {
            fail_reasons
                .push(format!("{} answers not judged: the pending queue was full", c.pending_overflow));
        }
        if c.unjudged > 0 {
            fail_reasons
                .push(format!("{} answers not judged: the change feed's final poll failed", c.unjudged));
        }
    }
    if report.stages.iter().all(|s| s.completed() == 0) {
        fail_reasons.push("no answers were received".into());
    }
    fail_reasons
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::bench::report::fixtures::*;
    use crate::bench::report::write_all;
    use crate::bench::results::Outcome;

    #[test]
    fn wrong_answers_and_errors_fail_the_run() {
        let mut r = report();
        r.stages[0].wrong = 2;
        r.stages[2].by_outcome.record(Outcome::Error, 30_000);
        let dir = tempfile::tempdir().unwrap();
        write_all(&r, dir.path()).unwrap();
        let j = json(dir.path());
        assert_eq!(j["passed"], false);
        assert_eq!(j["fail_reasons"].as_array().unwrap().len(), 2, "{}", j["fail_reasons"]);
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.starts_with("# ocsp-origin bench: FAIL\n"), "{md}");
        assert!(md.contains("stage 1/4: 2 wrong answers; stage 1: 1 error answers"), "{md}");
    }

    #[test]
    fn targets_changes_and_warm_up_wrong_answers_are_in_the_summary() {
        use crate::bench::results::{ChangeReport, Propagation, TargetResult};
        let mut r = report();
        let mut counts = [0; crate::bench::results::OUTCOMES];
        counts[Outcome::Hit.index()] = 90;
        counts[Outcome::Error.index()] = 3;
        r.targets = vec![
            TargetResult { target: "127.0.0.1:1".into(), sent: 93, counts, wrong: 2 },
            TargetResult { target: "127.0.0.1:2".into(), ..Default::default() },
        ];
        r.warm_wrong = 1;
        let mut shown = crate::bench::results::client_histogram();
        for us in [10_000, 20_000, 300_000] {
            shown.record(us).unwrap();
        }
        r.changes = Some(ChangeReport {
            poll_ms: 20,
            bound_ms: 1000,
            seen: 4,
            seen_in_keyspace: 3,
            late: 1,
            gaps_given_up: 0,
            poll_errors: 0,
            final_poll: true,
            entries_changed: 2,
            judged_against_change: 50,
            older_in_window: 7,
            pending: 5,
            pending_resolved: 3,
            pending_overflow: 0,
            wrong: 2,
            unjudged: 0,
            propagation: vec![Propagation { target: "127.0.0.1:1".into(), shown_us: shown, not_shown: 1 }],
        });
        let dir = tempfile::tempdir().unwrap();
        write_all(&r, dir.path()).unwrap();
        let j = json(dir.path());
        assert_eq!(j["targets"][0]["answers"], 90, "{}", j["targets"]);
        assert_eq!(j["targets"][0]["errors"], 3);
        assert_eq!(j["targets"][0]["wrong"], 2);
        assert_eq!(j["targets"][1]["sent"], 0);
        assert_eq!(j["warm_up_wrong"], 1);
        assert_eq!(j["passed"], false);
        let c = &j["changes"];
        assert_eq!(c["answers_older_in_window"], 7, "{c}");
        assert_eq!(c["answers_judged_against_change"], 50);
        let p = &c["seen_to_first_new_answer_ms"][0];
        assert_eq!(p["changes"], 3, "{p}");
        assert!(
            close(p["max_ms"].as_f64().unwrap(), 300.0)
                || (p["max_ms"].as_f64().unwrap() - 300.0).abs() < 0.5
        );
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("| 127.0.0.1:1 | 93 | 90 | 90 | 0 | 0 | 0 | 3 | 2 |"), "{md}");
        assert!(md.contains("| answers with the older status inside the window (allowed) | 7 |"), "{md}");
        assert!(md.contains("warm-up: 1 wrong answers"), "{md}");
        // Without a follower the summary says how answers were checked.
        let r = report();
        write_all(&r, dir.path()).unwrap();
        assert!(json(dir.path())["changes"].is_null());
    }
}
