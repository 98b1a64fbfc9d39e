//! Test fixtures shared by the report's tests: a three-stage ratchet whose
//! capacity numbers are easy to work out by hand, and readers for the files
//! [`super::write_all`] leaves behind.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::bench::results::{ByOutcome, CapacityInputs, Interval, Outcome, RunMeta, RunReport, StageResult};

pub(super) const STARTED: u64 = 1_700_000_000;
pub(super) const HIT_US: u64 = 250;
pub(super) const MISS_US: u64 = 5_000;

/// A stage of `secs` one-second intervals starting at `start_s`; each
/// `(outcome, n, us)` is spread evenly over the intervals.
pub(super) fn stage(
    name: &str,
    slug: &str,
    start_s: f64,
    secs: usize,
    target: Option<f64>,
    answers: &[(Outcome, u64, u64)],
) -> StageResult {
    let mut intervals = Vec::new();
    let mut total = ByOutcome::default();
    for k in 0..secs {
        let mut b = ByOutcome::default();
        for &(o, n, us) in answers {
            for _ in 0..n / secs as u64 {
                b.record(o, us);
            }
        }
        total.add(&b);
        intervals.push(Interval { start_s: start_s + k as f64, length_s: 1.0, by_outcome: b });
    }
    let completed: u64 = Outcome::ALL.iter().map(|o| total.count(*o)).sum();
    StageResult {
        name: name.into(),
        slug: slug.into(),
        fraction: 0.5,
        target_rate: target,
        start_s,
        duration_s: secs as f64,
        sent: completed,
        wrong: 0,
        connect_errors: 0,
        service_us: total.merged(),
        by_outcome: total,
        intervals,
        keyspace: 1000,
        cold: 500,
        cdn: None,
    }
}

/// Three stages; the peak hit rate is stage 2 (1800/s), the peak miss
/// rate stage 3 (500/s), and stage 3's miss share is 1/3.
pub(super) fn report() -> RunReport {
    use Outcome::*;
    RunReport {
        meta: RunMeta {
            command: "ocsp-origin bench --ratchet".into(),
            commit: "abc1234".into(),
            machine: "Linux 6.1 x86_64, 2 CPUs".into(),
            target: "127.0.0.1:8080".into(),
            mode: "open".into(),
            connections: 64,
            threads: 2,
            post_share: 0.1,
            quirk_share: 0.05,
            zipf_s: 1.1,
            started_unix: STARTED,
            ..Default::default()
        },
        stages: vec![
            stage("1/4", "s1_1of4", 0.0, 2, Some(1000.0), &[(Hit, 1800, HIT_US), (Miss, 200, MISS_US)]),
            stage(
                "1/2",
                "s2_1of2",
                2.0,
                2,
                Some(2000.0),
                &[(Hit, 3000, HIT_US), (HitL2, 600, 900), (Miss, 400, MISS_US)],
            ),
            stage("1", "s3_1of1", 4.0, 2, Some(4000.0), &[(Hit, 2000, HIT_US), (Miss, 1000, MISS_US)]),
        ],
        capacity: CapacityInputs {
            server_cores: 4,
            hsm_sessions: 2,
            node_cores: 16,
            target_rps: 1_000_000.0,
            cdn_hit_ratio: 0.98,
        },
        targets: Vec::new(),
        warm_wrong: 0,
        changes: None,
    }
}

pub(super) fn json(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// The contents of every `<text>` element, trimmed (the SVG backend puts
/// them on their own line).
pub(super) fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_owned()))
        .collect()
}

pub(super) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}
