//! The capacity model: from the best rates any stage delivered, per-unit
//! throughput (hits per server core, signatures per HSM session), and from
//! those, the cores, nodes and HSM sessions a target load needs in normal
//! operation and during a full CDN cache drop. A unit that was not measured
//! gives "not measured" (`None`), never a count divided by zero.

use serde::Serialize;

use super::stages::StageSummary;
use crate::bench::results::{Outcome, RunReport, StageResult};

/// A stage's p99 over all outcomes, for the "how did latency move" line.
#[derive(Clone, Debug, Serialize)]
pub(super) struct StageP99 {
    pub(super) stage: String,
    pub(super) p99_ms: Option<f64>,
}

/// Per-unit throughput measured by the run.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Derived {
    /// Highest (hit + hit_l2)/s of any stage.
    pub(super) peak_hit_rate: f64,
    /// The stage that reached it.
    pub(super) peak_hit_stage: Option<String>,
    /// `peak_hit_rate / server_cores`; `None` when no hits were measured.
    pub(super) hits_per_core_per_s: Option<f64>,
    /// Highest miss/s of any stage.
    pub(super) peak_miss_rate: f64,
    /// The stage that reached it.
    pub(super) peak_miss_stage: Option<String>,
    /// `peak_miss_rate / hsm_sessions`; `None` when no misses were measured.
    pub(super) signatures_per_session_per_s: Option<f64>,
    pub(super) p99_ms_by_stage: Vec<StageP99>,
}

/// Origin load, cores and nodes for one scenario.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Scenario {
    pub(super) origin_rps: f64,
    /// `ceil(origin_rps / hits_per_core_per_s)`.
    pub(super) cores: Option<u64>,
    /// `ceil(cores / node_cores)`.
    pub(super) nodes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Planning {
    pub(super) target_rps: f64,
    pub(super) cdn_hit_ratio: f64,
    /// The CDN hits at `cdn_hit_ratio`; the origin sees the rest.
    pub(super) normal: Scenario,
    /// The CDN's cache is empty; the origin sees everything.
    pub(super) cache_drop: Scenario,
    /// Miss / completed at the last (largest) stage.
    pub(super) miss_share_last_stage: Option<f64>,
    /// `target_rps × miss_share_last_stage`.
    pub(super) cache_drop_miss_rps: Option<f64>,
    /// `ceil(cache_drop_miss_rps / signatures_per_session_per_s)`.
    pub(super) hsm_sessions_during_drop: Option<u64>,
    /// What the numbers above take for granted, in words.
    pub(super) assumptions: Vec<String>,
}

/// The stage with the highest `rate`, if any stage delivered more than 0/s.
fn peak(stages: &[StageResult], rate: impl Fn(&StageResult) -> f64) -> (f64, Option<&str>) {
    let mut best = (0.0, None);
    for s in stages {
        let r = rate(s);
        if r.is_finite() && r > best.0 {
            best = (r, Some(s.name.as_str()));
        }
    }
    best
}

/// `num / den`, `None` unless `den` is a positive measured rate or count.
fn per(num: f64, den: f64) -> Option<f64> {
    (den.is_finite() && den > 0.0).then(|| num / den).filter(|q| q.is_finite())
}

/// `ceil(load / unit)` as a count; `None` when the unit was not measured.
fn units_needed(load: f64, unit: Option<f64>) -> Option<u64> {
    let q = per(load.max(0.0), unit?)?;
    // A float-to-int `as` saturates; the planner gets "a lot", not a wrap.
    Some(q.ceil() as u64)
}

impl Derived {
    /// The per-unit rates from the stages that delivered the most.
    pub(super) fn new(report: &RunReport, stages: &[StageSummary]) -> Derived {
        let cap = &report.capacity;
        let (peak_hit_rate, peak_hit_stage) =
            peak(&report.stages, |s| s.outcome_rate(Outcome::Hit) + s.outcome_rate(Outcome::HitL2));
        let (peak_miss_rate, peak_miss_stage) = peak(&report.stages, |s| s.outcome_rate(Outcome::Miss));
        let hits_per_core =
            if peak_hit_rate > 0.0 { per(peak_hit_rate, cap.server_cores as f64) } else { None };
        let sigs_per_session =
            if peak_miss_rate > 0.0 { per(peak_miss_rate, cap.hsm_sessions as f64) } else { None };
        Derived {
            peak_hit_rate,
            peak_hit_stage: peak_hit_stage.map(str::to_owned),
            hits_per_core_per_s: hits_per_core,
            peak_miss_rate,
            peak_miss_stage: peak_miss_stage.map(str::to_owned),
            signatures_per_session_per_s: sigs_per_session,
            p99_ms_by_stage: stages
                .iter()
                .map(|s| StageP99 { stage: s.name.clone(), p99_ms: s.latency_ms.as_ref().map(|l| l.p99) })
                .collect(),
        }
    }
}

impl Planning {
    /// Scales the measured per-unit rates to the planner's target load.
    pub(super) fn new(report: &RunReport, derived: &Derived) -> Planning {
        let cap = &report.capacity;
        let hits_per_core = derived.hits_per_core_per_s;
        let sigs_per_session = derived.signatures_per_session_per_s;

        let scenario = |origin_rps: f64| {
            let cores = units_needed(origin_rps, hits_per_core);
            let nodes = cores.and_then(|c| units_needed(c as f64, Some(cap.node_cores as f64)));
            Scenario { origin_rps, cores, nodes }
        };
        let last = report.stages.last();
        let miss_share =
            last.and_then(|s| per(s.by_outcome.count(Outcome::Miss) as f64, s.completed() as f64));
        let drop_miss_rps = miss_share.map(|m| cap.target_rps * m);
        let last_name = last.map_or("-", |s| s.name.as_str());
        Planning {
            target_rps: cap.target_rps,
            cdn_hit_ratio: cap.cdn_hit_ratio,
            normal: scenario((cap.target_rps * (1.0 - cap.cdn_hit_ratio)).max(0.0)),
            cache_drop: scenario(cap.target_rps),
            miss_share_last_stage: miss_share,
            cache_drop_miss_rps: drop_miss_rps,
            hsm_sessions_during_drop: drop_miss_rps.and_then(|r| units_needed(r, sigs_per_session)),
            assumptions: vec![
                "Per-core and per-session rates are the best any stage delivered at its offered load. \
                 Unless that stage saturated the server (tryLater answers, rising p99), the true ceiling \
                 is higher and the counts below err towards more hardware."
                    .into(),
                "Cores are sized at the hit rate per core for both scenarios; signing is bounded by HSM \
                 sessions, which are sized separately."
                    .into(),
                format!(
                    "During a full cache drop the origin answers the whole target rate, and the share of \
                     misses among those answers is the one measured at the last stage ({last_name}), \
                     whose keyspace is the largest; HSM sessions = ceil(target × that share / signatures \
                     per session per second)."
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::bench::report::fixtures::*;
    use crate::bench::report::write_all;
    use crate::bench::results::Outcome;

    #[test]
    fn summary_json_has_the_derived_numbers() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let j = json(dir.path());
        assert_eq!(j["passed"], true);
        assert_eq!(j["meta"]["commit"], "abc1234");
        assert_eq!(j["capacity"]["server_cores"], 4);
        let s2 = &j["stages"][1];
        assert_eq!(s2["name"], "1/2");
        assert_eq!(s2["counts"]["hit_l2"], 600);
        assert_eq!(s2["counts"]["try_later"], 0);
        assert!(close(s2["achieved_rate"].as_f64().unwrap(), 2000.0));
        assert!(s2["latency_ms_by_outcome"].get("try_later").is_none());
        assert!(close(s2["latency_ms_by_outcome"]["hit"]["max"].as_f64().unwrap(), 0.25));

        let d = &j["derived"];
        // (3000 + 600) / 2 s / 4 cores; 1000 / 2 s / 2 sessions.
        assert!(close(d["hits_per_core_per_s"].as_f64().unwrap(), 450.0), "{d}");
        assert_eq!(d["peak_hit_stage"], "1/2");
        assert!(close(d["signatures_per_session_per_s"].as_f64().unwrap(), 250.0), "{d}");
        assert_eq!(d["peak_miss_stage"], "1");
        // Stage 3: a third of answers are misses at ~5 ms, so p99 is a miss.
        let p99 = d["p99_ms_by_stage"][2]["p99_ms"].as_f64().unwrap();
        assert!((4.99..5.01).contains(&p99), "{p99}");

        let p = &j["planning"];
        // 1e6 × 2% = 20 000/s → 44.4 → 45 cores → 3 nodes of 16.
        assert!(close(p["normal"]["origin_rps"].as_f64().unwrap(), 20_000.0));
        assert_eq!(p["normal"]["cores"], 45);
        assert_eq!(p["normal"]["nodes"], 3);
        // 1e6/s / 450 → 2223 cores → 139 nodes.
        assert_eq!(p["cache_drop"]["cores"], 2223);
        assert_eq!(p["cache_drop"]["nodes"], 139);
        // 1e6 × 1/3 misses / 250 per session → 1334 sessions.
        assert!(close(p["miss_share_last_stage"].as_f64().unwrap(), 1.0 / 3.0));
        assert_eq!(p["hsm_sessions_during_drop"], 1334);
    }

    #[test]
    fn single_stage_with_hits_only_reports_not_measured() {
        let mut r = report();
        r.stages = vec![stage("run", "run", 0.0, 1, None, &[(Outcome::Hit, 10, HIT_US)])];
        r.meta.mode = "closed".into();
        let dir = tempfile::tempdir().unwrap();
        write_all(&r, dir.path()).unwrap();
        let j = json(dir.path());
        assert!(j["derived"]["signatures_per_session_per_s"].is_null());
        assert!(j["planning"]["hsm_sessions_during_drop"].is_null(), "{}", j["planning"]);
        assert!(close(j["planning"]["miss_share_last_stage"].as_f64().unwrap(), 0.0));
        assert!(j["stages"][0]["target_rate"].is_null());
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("Signatures per HSM session: not measured"), "{md}");
        assert!(md.contains("HSM sessions needed during a full cache drop: not measured"), "{md}");
        assert!(md.contains("| run | – | 10.0 |"), "{md}");
        let svg = fs::read_to_string(dir.path().join("plot.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg_texts(&svg).iter().filter(|t| *t == "run").count(), 2);
    }

    #[test]
    fn empty_run_and_zero_inputs_do_not_divide_by_zero() {
        let mut r = report();
        r.stages = vec![stage("1", "s1", 0.0, 0, Some(10.0), &[])];
        r.capacity.server_cores = 0;
        r.capacity.hsm_sessions = 0;
        r.capacity.node_cores = 0;
        let dir = tempfile::tempdir().unwrap();
        let w = write_all(&r, dir.path()).unwrap();
        assert_eq!(w.hlog, vec![dir.path().join("all.hlog")]);
        let j = json(dir.path());
        assert_eq!(j["passed"], false, "nothing answered is not a pass");
        assert!(j["derived"]["hits_per_core_per_s"].is_null());
        assert!(j["planning"]["normal"]["cores"].is_null());
        assert!(j["planning"]["miss_share_last_stage"].is_null());
        assert!(j["stages"][0]["latency_ms"].is_null());
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("Hits per core: not measured"), "{md}");
        assert!(md.contains("| normal operation | 20000.0 | not measured | not measured |"), "{md}");

        // Hits measured but no cores or nodes given: still no division by zero.
        let mut r = report();
        r.capacity.server_cores = 0;
        r.capacity.node_cores = 0;
        write_all(&r, dir.path()).unwrap();
        let j = json(dir.path());
        assert!(j["derived"]["hits_per_core_per_s"].is_null());
        assert!(j["planning"]["cache_drop"]["nodes"].is_null());

        r.stages.clear();
        write_all(&r, dir.path()).unwrap();
        assert!(fs::read_to_string(dir.path().join("plot.svg")).unwrap().starts_with("<svg"));
    }
}
