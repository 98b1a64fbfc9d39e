//! Turns a [`RunReport`] into what a capacity planner reads: HdrHistogram
//! percentile files (`.hgrm`) and interval logs (`.hlog`) that HdrHistogram's
//! own tools plot and merge, one SVG with throughput and latency per stage, and
//! the capacity summary (`summary.json` for tools, `summary.md` for people).
//!
//! Everything is computed from the report alone, so the same run can be
//! re-exported and two runs compare file by file. Missing data (a stage with no
//! misses, a run with no hits) is reported as "not measured", never as a zero
//! that a planner would divide by.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::results::{CapacityInputs, ChangeReport, Outcome, RunMeta, RunReport, StageResult, TargetResult};
use crate::metrics::hgrm;

/// Histograms hold µs; every export speaks ms, the unit latency budgets use.
const US_PER_MS: f64 = 1000.0;

/// Name of the merged-outcomes histogram and log (`STAGE_all.hgrm`, `all.hlog`).
const ALL: &str = "all";

/// The plot's size in pixels: wide enough for ~8 stage labels side by side.
const PLOT_SIZE: (u32, u32) = (1200, 1000);

/// The files [`write_all`] wrote, by kind, so a caller can list or upload them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// `STAGE_OUTCOME.hgrm` and `STAGE_all.hgrm`, in stage then outcome order.
    pub hgrm: Vec<PathBuf>,
    /// `OUTCOME.hlog` and `all.hlog`.
    pub hlog: Vec<PathBuf>,
    /// `plot.svg`.
    pub plot: PathBuf,
    /// `summary.json`.
    pub summary_json: PathBuf,
    /// `summary.md`.
    pub summary_md: PathBuf,
}

impl Written {
    /// Every file: histograms, interval logs, plot, JSON and Markdown summary.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.hgrm.iter().chain(&self.hlog).map(PathBuf::as_path).chain([
            self.plot.as_path(),
            self.summary_json.as_path(),
            self.summary_md.as_path(),
        ])
    }
}

/// Why an export failed; each names the file (or directory) involved.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Creating the output directory or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stage slug would not make a safe, unique file name or log tag.
    #[error("{}: stage slug {slug:?} {reason}", path.display())]
    BadSlug {
        /// The output directory.
        path: PathBuf,
        /// The offending slug.
        slug: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Encoding an interval log failed.
    #[error("{}: interval log: {message}", path.display())]
    IntervalLog {
        /// The `.hlog` file.
        path: PathBuf,
        /// The serializer's or writer's message.
        message: String,
    },
    /// Drawing the plot failed.
    #[error("{}: plot: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// Serializing the JSON summary failed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

/// Writes every export of `report` into `out_dir` (created if missing):
/// `STAGE_OUTCOME.hgrm` / `STAGE_all.hgrm`, `OUTCOME.hlog` / `all.hlog`,
/// `plot.svg`, `summary.json` and `summary.md`.
///
/// Stage slugs become file names and log tags, so they are checked first
/// (non-empty, `[A-Za-z0-9_.-]`, unique) and nothing is written if one is bad.
pub fn write_all(report: &RunReport, out_dir: &Path) -> Result<Written, ReportError> {
    check_slugs(report, out_dir)?;
    fs::create_dir_all(out_dir).map_err(|source| ReportError::Io { path: out_dir.to_path_buf(), source })?;

    let mut written = Written::default();
    write_hgrms(report, out_dir, &mut written)?;
    write_hlogs(report, out_dir, &mut written)?;

    let summary = Summary::new(report);
    written.summary_json = out_dir.join("summary.json");
    let json = serde_json::to_vec_pretty(&summary)
        .map_err(|source| ReportError::Json { path: written.summary_json.clone(), source })?;
    write_file(&written.summary_json, &json)?;
    written.summary_md = out_dir.join("summary.md");
    write_file(&written.summary_md, summary.markdown().as_bytes())?;

    written.plot = out_dir.join("plot.svg");
    let svg = plot_svg(report)
        .map_err(|e| ReportError::Plot { path: written.plot.clone(), message: e.to_string() })?;
    write_file(&written.plot, svg.as_bytes())?;
    Ok(written)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    fs::write(path, bytes).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
}

/// Slugs name files and tag interval-log lines: a `/` would escape `out_dir`,
/// a `,` or space would break the log's `Tag=` field, a duplicate would
/// silently overwrite another stage's files.
fn check_slugs(report: &RunReport, out_dir: &Path) -> Result<(), ReportError> {
    let bad =
        |slug: &str, reason| ReportError::BadSlug { path: out_dir.to_path_buf(), slug: slug.into(), reason };
    for (i, s) in report.stages.iter().enumerate() {
        if s.slug.is_empty() || s.slug == "." || s.slug == ".." {
            return Err(bad(&s.slug, "is not a file name"));
        }
        if !s.slug.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(bad(&s.slug, "may only hold ASCII letters, digits, '_', '-' and '.'"));
        }
        if report.stages[..i].iter().any(|earlier| earlier.slug == s.slug) {
            return Err(bad(&s.slug, "names more than one stage"));
        }
    }
    Ok(())
}

/// One `.hgrm` per stage and outcome with values, and one per stage with all
/// outcomes merged (written even when empty, so every stage has a file).
fn write_hgrms(report: &RunReport, out_dir: &Path, written: &mut Written) -> Result<(), ReportError> {
    for stage in &report.stages {
        for o in Outcome::ALL {
            let h = &stage.by_outcome.h[o.index()];
            if h.is_empty() {
                continue;
            }
            let path = out_dir.join(format!("{}_{}.hgrm", stage.slug, o.name()));
            write_file(&path, hgrm(h, US_PER_MS).as_bytes())?;
            written.hgrm.push(path);
        }
        let path = out_dir.join(format!("{}_{ALL}.hgrm", stage.slug));
        write_file(&path, hgrm(&stage.by_outcome.merged(), US_PER_MS).as_bytes())?;
        written.hgrm.push(path);
    }
    Ok(())
}

/// One interval log per outcome that has values anywhere in the run, plus
/// `all.hlog`. Every interval of every stage is written, empty ones too: a
/// second without misses is data (it shows where a stage stalled or where the
/// cache had warmed), and HdrHistogram's tools expect an unbroken series.
fn write_hlogs(report: &RunReport, out_dir: &Path, written: &mut Written) -> Result<(), ReportError> {
    for o in Outcome::ALL {
        let any = report.count(o) > 0
            || report.stages.iter().flat_map(|s| &s.intervals).any(|i| i.by_outcome.count(o) > 0);
        if !any {
            continue;
        }
        let path = out_dir.join(format!("{}.hlog", o.name()));
        let log = interval_log(report, o.name(), |i| i.by_outcome.h[o.index()].clone())
            .map_err(|message| ReportError::IntervalLog { path: path.clone(), message })?;
        write_file(&path, &log)?;
        written.hlog.push(path);
    }
    let path = out_dir.join(format!("{ALL}.hlog"));
    let log = interval_log(report, ALL, |i| i.by_outcome.merged())
        .map_err(|message| ReportError::IntervalLog { path: path.clone(), message })?;
    write_file(&path, &log)?;
    written.hlog.push(path);
    Ok(())
}

/// Renders an interval log in the layout of HdrHistogram's `HistogramLogWriter`:
/// comments, `StartTime`/`BaseTime` (both the run's start, so an interval's
/// timestamp is seconds since the run started and its wall time is
/// `BaseTime + timestamp` = `started_unix + start_s`), the CSV legend, then one
/// `Tag=<stage slug>,` line per interval with V2-deflate histograms and the max
/// in ms.
///
/// The crate's builder writes no legend, and its writer holds the buffer while
/// it lives, so the header goes through one writer, the legend is appended,
/// and a second writer (which only repeats the `MaxValueDivisor` comment)
/// writes the intervals.
fn interval_log(
    report: &RunReport,
    what: &str,
    pick: impl Fn(&super::results::Interval) -> Histogram<u64>,
) -> Result<Vec<u8>, String> {
    let start = UNIX_EPOCH + Duration::from_secs(report.meta.started_unix);
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment(&format!("ocsp-origin bench, {what} answers, latency in ms"))
        .add_comment("Histogram log format version 1.3")
        .with_start_time(start)
        .with_base_time(start)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| e.to_string())?;
    buf.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    let mut log = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(US_PER_MS)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| e.to_string())?;
    for stage in &report.stages {
        // check_slugs admits only characters a tag may hold.
        let tag = Tag::new(&stage.slug).ok_or_else(|| format!("{:?} is not a valid tag", stage.slug))?;
        for interval in &stage.intervals {
            let h = pick(interval);
            log.write_histogram(&h, secs(interval.start_s), secs(interval.length_s), Some(tag))
                .map_err(|e| e.to_string())?;
        }
    }
    drop(log);
    Ok(buf)
}

/// Seconds as a `Duration`, treating negative or non-finite input as 0 rather
/// than panicking the way `Duration::from_secs_f64` would.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Summary

/// Latency of one histogram, ms.
#[derive(Clone, Debug, Serialize)]
struct LatencyMs {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

impl LatencyMs {
    /// `None` for an empty histogram: a percentile of nothing is not 0 ms.
    fn of(h: &Histogram<u64>) -> Option<LatencyMs> {
        if h.is_empty() {
            return None;
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / US_PER_MS;
        Some(LatencyMs {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            max: h.max() as f64 / US_PER_MS,
        })
    }
}

/// Answers per outcome (named fields so the JSON keeps report order).
#[derive(Clone, Debug, Default, Serialize)]
struct OutcomeCounts {
    hit: u64,
    hit_l2: u64,
    miss: u64,
    try_later: u64,
    error: u64,
}

impl OutcomeCounts {
    fn of(count: impl Fn(Outcome) -> u64) -> OutcomeCounts {
        OutcomeCounts {
            hit: count(Outcome::Hit),
            hit_l2: count(Outcome::HitL2),
            miss: count(Outcome::Miss),
            try_later: count(Outcome::TryLater),
            error: count(Outcome::Error),
        }
    }
}

/// Latency per outcome; outcomes without values are left out.
#[derive(Clone, Debug, Default, Serialize)]
struct OutcomeLatency {
    #[serde(skip_serializing_if = "Option::is_none")]
    hit: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hit_l2: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miss: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    try_later: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<LatencyMs>,
}

#[derive(Clone, Debug, Serialize)]
struct StageSummary {
    name: String,
    slug: String,
    fraction: f64,
    /// `None` in closed loop.
    target_rate: Option<f64>,
    achieved_rate: f64,
    duration_s: f64,
    sent: u64,
    completed: u64,
    counts: OutcomeCounts,
    wrong: u64,
    connect_errors: u64,
    keyspace: usize,
    cold: usize,
    /// All outcomes merged; `None` when the stage received no answer.
    latency_ms: Option<LatencyMs>,
    latency_ms_by_outcome: OutcomeLatency,
    /// From the actual send (see `StageResult::service_us`).
    service_ms: Option<LatencyMs>,
}

impl StageSummary {
    fn new(s: &StageResult) -> StageSummary {
        let c = |o| s.by_outcome.count(o);
        let l = |o: Outcome| LatencyMs::of(&s.by_outcome.h[o.index()]);
        StageSummary {
            name: s.name.clone(),
            slug: s.slug.clone(),
            fraction: s.fraction,
            target_rate: s.target_rate,
            achieved_rate: s.rate(),
            duration_s: s.duration_s,
            sent: s.sent,
            completed: s.completed(),
            counts: OutcomeCounts::of(c),
            wrong: s.wrong,
            connect_errors: s.connect_errors,
            keyspace: s.keyspace,
            cold: s.cold,
            latency_ms: LatencyMs::of(&s.by_outcome.merged()),
            service_ms: LatencyMs::of(&s.service_us),
            latency_ms_by_outcome: OutcomeLatency {
                hit: l(Outcome::Hit),
                hit_l2: l(Outcome::HitL2),
                miss: l(Outcome::Miss),
                try_later: l(Outcome::TryLater),
                error: l(Outcome::Error),
            },
        }
    }
}

/// One target (node) over the measured stages.
#[derive(Clone, Debug, Serialize)]
struct TargetSummary {
    target: String,
    sent: u64,
    /// Correct answers, tryLater included.
    answers: u64,
    /// Error outcomes (wrong answers included).
    errors: u64,
    wrong: u64,
    counts: OutcomeCounts,
}

impl TargetSummary {
    fn new(t: &TargetResult) -> TargetSummary {
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
struct PropagationSummary {
    target: String,
    /// Changes the target answered with (one value each).
    changes: u64,
    /// Changes asked about after τ that it never answered with.
    not_shown: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// Change-aware verification (see `ChangeReport` for each field).
#[derive(Clone, Debug, Serialize)]
struct ChangesSummary {
    bound_ms: u64,
    poll_ms: u64,
    seen: u64,
    seen_in_keyspace: u64,
    late: u64,
    gaps_given_up: u64,
    poll_errors: u64,
    final_poll: bool,
    entries_changed: u64,
    answers_judged_against_change: u64,
    answers_older_in_window: u64,
    pending: u64,
    pending_resolved: u64,
    pending_overflow: u64,
    wrong: u64,
    unjudged: u64,
    /// τ (the follower saw the change) → receipt of the first answer, to a
    /// request sent after τ, carrying the change's status; per target.
    seen_to_first_new_answer_ms: Vec<PropagationSummary>,
}

impl ChangesSummary {
    fn new(c: &ChangeReport) -> ChangesSummary {
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

/// A stage's p99 over all outcomes, for the "how did latency move" line.
#[derive(Clone, Debug, Serialize)]
struct StageP99 {
    stage: String,
    p99_ms: Option<f64>,
}

/// Per-unit throughput measured by the run.
#[derive(Clone, Debug, Serialize)]
struct Derived {
    /// Highest (hit + hit_l2)/s of any stage.
    peak_hit_rate: f64,
    /// The stage that reached it.
    peak_hit_stage: Option<String>,
    /// `peak_hit_rate / server_cores`; `None` when no hits were measured.
    hits_per_core_per_s: Option<f64>,
    /// Highest miss/s of any stage.
    peak_miss_rate: f64,
    /// The stage that reached it.
    peak_miss_stage: Option<String>,
    /// `peak_miss_rate / hsm_sessions`; `None` when no misses were measured.
    signatures_per_session_per_s: Option<f64>,
    p99_ms_by_stage: Vec<StageP99>,
}

/// Origin load, cores and nodes for one scenario.
#[derive(Clone, Debug, Serialize)]
struct Scenario {
    origin_rps: f64,
    /// `ceil(origin_rps / hits_per_core_per_s)`.
    cores: Option<u64>,
    /// `ceil(cores / node_cores)`.
    nodes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
struct Planning {
    target_rps: f64,
    cdn_hit_ratio: f64,
    /// The CDN hits at `cdn_hit_ratio`; the origin sees the rest.
    normal: Scenario,
    /// The CDN's cache is empty; the origin sees everything.
    cache_drop: Scenario,
    /// Miss / completed at the last (largest) stage.
    miss_share_last_stage: Option<f64>,
    /// `target_rps × miss_share_last_stage`.
    cache_drop_miss_rps: Option<f64>,
    /// `ceil(cache_drop_miss_rps / signatures_per_session_per_s)`.
    hsm_sessions_during_drop: Option<u64>,
    /// What the numbers above take for granted, in words.
    assumptions: Vec<String>,
}

/// The whole capacity summary; `summary.json` is this, `summary.md` renders it.
#[derive(Clone, Debug, Serialize)]
struct Summary<'a> {
    passed: bool,
    /// Why the run failed; empty when it passed.
    fail_reasons: Vec<String>,
    meta: &'a RunMeta,
    capacity: &'a CapacityInputs,
    stages: Vec<StageSummary>,
    /// Per target over the measured stages (their sums are the stages').
    targets: Vec<TargetSummary>,
    /// Wrong answers during the warm-up (not in any stage's count).
    warm_up_wrong: u64,
    /// Change-aware verification; `null` unless the change follower ran.
    changes: Option<ChangesSummary>,
    derived: Derived,
    planning: Planning,
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

impl Summary<'_> {
    fn new(report: &RunReport) -> Summary<'_> {
        let cap = &report.capacity;
        let stages: Vec<_> = report.stages.iter().map(StageSummary::new).collect();

        let (peak_hit_rate, peak_hit_stage) =
            peak(&report.stages, |s| s.outcome_rate(Outcome::Hit) + s.outcome_rate(Outcome::HitL2));
        let (peak_miss_rate, peak_miss_stage) = peak(&report.stages, |s| s.outcome_rate(Outcome::Miss));
        let hits_per_core =
            if peak_hit_rate > 0.0 { per(peak_hit_rate, cap.server_cores as f64) } else { None };
        let sigs_per_session =
            if peak_miss_rate > 0.0 { per(peak_miss_rate, cap.hsm_sessions as f64) } else { None };
        let derived = Derived {
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
        };

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
        let planning = Planning {
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
        };

        let mut fail_reasons = Vec::new();
        for s in &report.stages {
            if s.wrong > 0 {
                fail_reasons.push(format!("stage {}: {} wrong answers", s.name, s.wrong));
            }
            let errors = s.by_outcome.count(Outcome::Error);
            if errors > 0 {
                fail_reasons.push(format!("stage {}: {errors} error answers", s.name));
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

        Summary {
            passed: fail_reasons.is_empty(),
            fail_reasons,
            meta: &report.meta,
            capacity: cap,
            stages,
            targets: report.targets.iter().map(TargetSummary::new).collect(),
            warm_up_wrong: report.warm_wrong,
            changes: report.changes.as_ref().map(ChangesSummary::new),
            derived,
            planning,
        }
    }

    /// `summary.md`: verdict, run description, stage table, planning.
    fn markdown(&self) -> String {
        let m = self.meta;
        let c = self.capacity;
        let mut out = String::new();
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "# ocsp-origin bench: {verdict}\n");
        if self.passed {
            let _ = writeln!(out, "**PASS**: every answer was correct and no request ended in an error.\n");
        } else {
            let _ = writeln!(out, "**FAIL**: {}.\n", self.fail_reasons.join("; "));
        }
        let _ = writeln!(
            out,
            "Run against `{}` in {} loop from commit `{}` on {}, started at Unix time {}: {} connections \
             over {} generator threads, {:.0}% POST, {:.0}% of GETs with URL quirks, serial popularity \
             Zipf s = {}. The server ran {} shards and {} signing sessions. Command: `{}`.\n",
            m.target,
            m.mode,
            or_unknown(&m.commit),
            or_unknown(&m.machine),
            m.started_unix,
            m.connections,
            m.threads,
            m.post_share * 100.0,
            m.quirk_share * 100.0,
            m.zipf_s,
            c.server_cores,
            c.hsm_sessions,
            m.command,
        );

        let _ = writeln!(out, "## Stages\n");
        let _ = writeln!(
            out,
            "Latencies in ms over all outcomes; open loop measures from the intended send time. \
             `svc` columns: from the actual send; a large gap to the corrected columns means the \
             run fell behind schedule (the server's backlog, or the generator's own: compare with \
             the server's request histogram).\n"
        );
        let _ = writeln!(
            out,
            "| stage | target/s | achieved/s | hit | hit_l2 | miss | tryLater | error | wrong | p50 | p99 | p99.9 | svc p50 | svc p99 |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.stages {
            let k = &s.counts;
            let lat = |f: fn(&LatencyMs) -> f64| {
                s.latency_ms.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
            };
            let svc = |f: fn(&LatencyMs) -> f64| {
                s.service_ms.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name.replace('|', "\\|"),
                s.target_rate.map_or("–".into(), |t| format!("{t:.1}")),
                s.achieved_rate,
                k.hit,
                k.hit_l2,
                k.miss,
                k.try_later,
                k.error,
                s.wrong,
                lat(|l| l.p50),
                lat(|l| l.p99),
                lat(|l| l.p99_9),
                svc(|l| l.p50),
                svc(|l| l.p99),
            );
        }

        self.markdown_targets(&mut out);
        self.markdown_changes(&mut out);

        let d = &self.derived;
        let p = &self.planning;
        let _ = writeln!(out, "\n## Capacity planning\n");
        let _ = writeln!(
            out,
            "- Hits per core: {} (peak {:.1} hits/s{} over {} cores)",
            rate_or_not(d.hits_per_core_per_s),
            d.peak_hit_rate,
            d.peak_hit_stage.as_deref().map_or(String::new(), |s| format!(" at stage {s}")),
            c.server_cores
        );
        let _ = writeln!(
            out,
            "- Signatures per HSM session: {} (peak {:.1} misses/s{} over {} sessions)",
            rate_or_not(d.signatures_per_session_per_s),
            d.peak_miss_rate,
            d.peak_miss_stage.as_deref().map_or(String::new(), |s| format!(" at stage {s}")),
            c.hsm_sessions
        );
        let p99s: Vec<_> = d
            .p99_ms_by_stage
            .iter()
            .map(|s| {
                format!("{} {}", s.stage, s.p99_ms.map_or("not measured".into(), |v| format!("{v:.3} ms")))
            })
            .collect();
        let p99s = if p99s.is_empty() { "no stages".into() } else { p99s.join(", ") };
        let _ = writeln!(out, "- p99 by stage: {p99s}\n");

        let _ = writeln!(
            out,
            "For {:.0} requests/s at the CDN with a {:.1}% CDN hit ratio ({} cores per node):\n",
            p.target_rps,
            p.cdn_hit_ratio * 100.0,
            c.node_cores
        );
        let _ = writeln!(out, "| scenario | origin requests/s | cores | nodes |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (name, s) in [("normal operation", &p.normal), ("full cache drop", &p.cache_drop)] {
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {} | {} |",
                s.origin_rps,
                count_or_not(s.cores),
                count_or_not(s.nodes)
            );
        }
        let _ = writeln!(
            out,
            "\nHSM sessions needed during a full cache drop: {} (miss share at the last stage: {}, so {} \
             signatures/s).\n",
            count_or_not(p.hsm_sessions_during_drop),
            p.miss_share_last_stage.map_or("not measured".into(), |m| format!("{:.1}%", m * 100.0)),
            p.cache_drop_miss_rps.map_or("not measured".into(), |r| format!("{r:.1}")),
        );
        let _ = writeln!(out, "Assumptions:\n");
        for a in &p.assumptions {
            let _ = writeln!(out, "- {a}");
        }
        out
    }
}

impl Summary<'_> {
    fn markdown_targets(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n## Targets\n\nOver the measured stages; connection i went to target i mod {}.\n",
            self.targets.len()
        );
        let _ = writeln!(out, "| target | sent | answers | hit | hit_l2 | miss | tryLater | error | wrong |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &self.targets {
            let k = &t.counts;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.target, t.sent, t.answers, k.hit, k.hit_l2, k.miss, k.try_later, k.error, t.wrong
            );
        }
        if self.warm_up_wrong > 0 {
            let _ = writeln!(out, "\nWrong answers during the warm-up: {}.", self.warm_up_wrong);
        }
    }

    fn markdown_changes(&self, out: &mut String) {
        let Some(c) = &self.changes else {
            let _ = writeln!(
                out,
                "\nChange feed: {} (answers checked against the statuses read at start).",
                self.meta.change_feed
            );
            return;
        };
        let _ = writeln!(out, "\n## Changes during the run\n");
        let _ = writeln!(
            out,
            "The change follower read `ocsp_changes` on the primary every {} ms. A change is seen at τ, when \
             the poll that returned it came back (so it was committed by then); an answer to a request sent \
             {} ms (the bound under test) or more after τ must carry the change's status or a newer one.\n",
            c.poll_ms, c.bound_ms
        );
        let rows: [(&str, String); 12] = [
            ("changes seen", c.seen.to_string()),
            ("of them for certificates the run asks about", c.seen_in_keyspace.to_string()),
            ("certificates changed", c.entries_changed.to_string()),
            ("changes seen after higher seqs (late)", c.late.to_string()),
            (
                "answers judged against a change (sent after τ + bound)",
                c.answers_judged_against_change.to_string(),
            ),
            (
                "answers with the older status inside the window (allowed)",
                c.answers_older_in_window.to_string(),
            ),
            ("answers pending for the feed", c.pending.to_string()),
            ("of them resolved after the final poll", c.pending_resolved.to_string()),
            ("wrong (after the final poll)", c.wrong.to_string()),
            ("not judged (pending queue full)", c.pending_overflow.to_string()),
            ("not judged (final poll failed)", c.unjudged.to_string()),
            ("failed polls", c.poll_errors.to_string()),
        ];
        let _ = writeln!(out, "| | |\n|---|---:|");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(
            out,
            "\nSeen to first new answer: per change and target, from τ to the receipt of the first answer, \
             to a request sent after τ, carrying the change's status. An upper bound of how long after τ the \
             node showed the change, limited by how often the run asks for that serial.\n"
        );
        let _ = writeln!(out, "| target | changes shown | not shown | p50 ms | p99 ms | max ms |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        for p in &c.seen_to_first_new_answer_ms {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                p.target,
                p.changes,
                p.not_shown,
                ms(p.p50_ms),
                ms(p.p99_ms),
                ms(p.max_ms)
            );
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "unknown"
    } else {
        s
    }
}

fn rate_or_not(r: Option<f64>) -> String {
    r.map_or("not measured".into(), |r| format!("{r:.1}/s"))
}

fn count_or_not(n: Option<u64>) -> String {
    n.map_or("not measured".into(), |n| n.to_string())
}

// ---------------------------------------------------------------------------
// Plot

type PlotResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// X axis over stages: stage `i` sits at `i`, with half a stage of margin on
/// each side so a single stage still gets a non-empty range; ticks (and their
/// labels, the stage names) fall on stages only. plotters' own `f64` axis picks
/// "nice" ticks between stages, and `WithKeyPoints` loses label formatting, so
/// this small axis does both.
#[derive(Clone, Debug)]
struct StageAxis {
    stages: usize,
}

impl Ranged for StageAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.stages.max(1) as f64;
        let share = (value + 0.5) / span;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold lines and labels at stages; thin out if they would not fit.
        let max = hint.max_num_points().max(1);
        let step = self.stages.div_ceil(max).max(1);
        (0..self.stages).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..self.stages.max(1) as f64 - 0.5
    }
}

/// Series colours: the same outcome has the same colour in both panels.
fn outcome_color(o: Outcome) -> RGBColor {
    match o {
        Outcome::Hit => RGBColor(0x2c, 0xa0, 0x2c),
        Outcome::HitL2 => RGBColor(0x17, 0xbe, 0xcf),
        Outcome::Miss => RGBColor(0xd6, 0x27, 0x28),
        Outcome::TryLater => RGBColor(0xff, 0x7f, 0x0e),
        Outcome::Error => RGBColor(0x94, 0x67, 0xbd),
    }
}

/// Draws one labelled line with a marker at each point, so a single stage (a
/// line of one point) still shows. Empty series are skipped, legend included.
fn line<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<impl Ranged<ValueType = f64>, Y>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    label: &str,
) -> PlotResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    if points.is_empty() {
        return Ok(());
    }
    let style = color.stroke_width(width);
    chart
        .draw_series(LineSeries::new(points.clone(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, width + 2, color.filled())))?;
    Ok(())
}

/// The SVG: throughput per stage on top, latency percentiles below.
fn plot_svg(report: &RunReport) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let m = &report.meta;
        let title = format!(
            "ocsp-origin bench: {} ({} loop), commit {}",
            or_unknown(&m.target),
            or_unknown(&m.mode),
            or_unknown(&m.commit)
        );
        let body = root.titled(&title, ("sans-serif", 24))?;
        let (top, bottom) = body.split_vertically(PLOT_SIZE.1 as i32 / 2 - 20);
        throughput_panel(&top, report)?;
        latency_panel(&bottom, report)?;
        root.present()?;
    }
    Ok(svg)
}

fn stage_labels(report: &RunReport) -> impl Fn(&f64) -> String + '_ {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            report.stages.get(i as usize).map_or(String::new(), |s| s.name.clone())
        } else {
            String::new()
        }
    }
}

fn throughput_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &RunReport) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let stages = &report.stages;
    let x = |i: usize| i as f64;
    let target: Vec<_> =
        stages.iter().enumerate().filter_map(|(i, s)| Some((x(i), s.target_rate?))).collect();
    let achieved: Vec<_> = stages.iter().enumerate().map(|(i, s)| (x(i), s.rate())).collect();
    let by_outcome: Vec<(Outcome, Vec<(f64, f64)>)> = Outcome::ALL
        .iter()
        .filter(|o| report.count(**o) > 0)
        .map(|&o| (o, stages.iter().enumerate().map(|(i, s)| (x(i), s.outcome_rate(o))).collect()))
        .collect();
    let y_max = target
        .iter()
        .chain(&achieved)
        .chain(by_outcome.iter().flat_map(|(_, p)| p))
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max);

    let mut chart = ChartBuilder::on(area)
        .caption("Throughput per stage", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: stages.len() }, 0.0..y_max * 1.15)?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc("stage (share of traffic reaching the origin)")
        .y_desc("answers/s")
        .y_max_light_lines(1)
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    line(&mut chart, target, BLACK, 1, "target")?;
    line(&mut chart, achieved, BLUE, 3, "achieved (all outcomes)")?;
    for (o, points) in by_outcome {
        line(&mut chart, points, outcome_color(o), 1, o.name())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn latency_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &RunReport) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let stages = &report.stages;
    // `None`: all outcomes merged. hit_l2 is its own group because a Redis
    // round trip sits between an L1 hit and a signature.
    let groups = [
        ("all", BLUE, None),
        ("hit", outcome_color(Outcome::Hit), Some(Outcome::Hit)),
        ("hit_l2", outcome_color(Outcome::HitL2), Some(Outcome::HitL2)),
        ("miss", outcome_color(Outcome::Miss), Some(Outcome::Miss)),
    ];
    // (label, colour, width, points); a stage without values for a group has no point.
    let mut series = Vec::new();
    for (name, color, outcome) in groups {
        let hs: Vec<Histogram<u64>> = stages
            .iter()
            .map(|s| outcome.map_or_else(|| s.by_outcome.merged(), |o| s.by_outcome.h[o.index()].clone()))
            .collect();
        for (q, qname, width) in [(0.5, "p50", 1), (0.99, "p99", 2), (0.999, "p99.9", 3)] {
            let points: Vec<(f64, f64)> = hs
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_empty())
                .map(|(i, h)| (i as f64, (h.value_at_quantile(q) as f64 / US_PER_MS).max(0.001)))
                .collect();
            series.push((format!("{name} {qname}"), color, width, points));
        }
    }
    let values = || series.iter().flat_map(|s| &s.3).map(|p| p.1);
    let (lo, hi) = values().fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Whole decades, at least two: plotters then labels only powers of ten
    // (with one decade it adds 0.2…0.9 ticks and labels the top twice). A log
    // axis needs a positive, non-empty range; with no values draw 1 µs … 1 s.
    let (lo, hi) = if lo.is_finite() {
        // The 0.1% slack keeps the end decades inside the range despite float
        // rounding (0.1 × 10 × 10 > 10), so they get their labels.
        let lo = 10_f64.powf(lo.log10().floor());
        (lo * 0.999, 10_f64.powf(hi.log10().ceil()).max(lo * 100.0) * 1.001)
    } else {
        (0.001, 1000.0)
    };

    let mut chart = ChartBuilder::on(area)
        .caption("Latency per stage (ms, log scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: stages.len() }, (lo..hi).log_scale())?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc("stage (share of traffic reaching the origin)")
        .y_desc("ms")
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    for (label, color, width, points) in series {
        line(&mut chart, points, color, width, &label)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A log-axis tick in ms without float noise (`0.30000000000000004` → `0.3`).
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::{ByOutcome, Interval};
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use serde_json::Value;

    const STARTED: u64 = 1_700_000_000;
    const HIT_US: u64 = 250;
    const MISS_US: u64 = 5_000;

    /// A stage of `secs` one-second intervals starting at `start_s`; each
    /// `(outcome, n, us)` is spread evenly over the intervals.
    fn stage(
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
        }
    }

    /// Three stages; the peak hit rate is stage 2 (1800/s), the peak miss
    /// rate stage 3 (500/s), and stage 3's miss share is 1/3.
    fn report() -> RunReport {
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

    fn json(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
    }

    /// The contents of every `<text>` element, trimmed (the SVG backend puts
    /// them on their own line).
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_owned()))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn writes_every_file_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/out");
        let w = write_all(&report(), &out).unwrap();
        let mut names: Vec<_> =
            w.files().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        let mut expected: Vec<String> = [
            "s1_1of4_hit.hgrm",
            "s1_1of4_miss.hgrm",
            "s1_1of4_all.hgrm",
            "s2_1of2_hit.hgrm",
            "s2_1of2_hit_l2.hgrm",
            "s2_1of2_miss.hgrm",
            "s2_1of2_all.hgrm",
            "s3_1of1_hit.hgrm",
            "s3_1of1_miss.hgrm",
            "s3_1of1_all.hgrm",
            "hit.hlog",
            "hit_l2.hlog",
            "miss.hlog",
            "all.hlog",
            "plot.svg",
            "summary.json",
            "summary.md",
        ]
        .map(String::from)
        .to_vec();
        expected.sort();
        assert_eq!(names, expected);
        for f in w.files() {
            assert!(f.starts_with(&out), "{}", f.display());
            assert!(fs::metadata(f).unwrap().len() > 0, "{} is empty", f.display());
        }
        // No values, no file: outcomes that never happened leave nothing behind.
        assert!(!out.join("try_later.hlog").exists());
        assert!(!out.join("s1_1of4_hit_l2.hgrm").exists());
    }

    #[test]
    fn hgrm_is_in_ms_and_ends_with_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join("s1_1of4_hit.hgrm")).unwrap();
        let footer: Vec<_> = text.lines().rev().take(3).collect();
        assert!(footer[0].starts_with("#[Buckets"), "{text}");
        assert!(footer[1].starts_with("#[Max     =        0.250, Total count    =         1800]"), "{text}");
        let all = fs::read_to_string(dir.path().join("s1_1of4_all.hgrm")).unwrap();
        assert!(all.contains("Total count    =         2000]"), "{all}");
    }

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
    fn markdown_has_verdict_table_and_plan() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.starts_with("# ocsp-origin bench: PASS\n"), "{md}");
        assert!(md.contains(
            "| stage | target/s | achieved/s | hit | hit_l2 | miss | tryLater | error | wrong | p50 | p99 | p99.9 |"
        ));
        assert!(md.contains("| 1/2 | 2000.0 | 2000.0 | 3000 | 600 | 400 | 0 | 0 | 0 |"), "{md}");
        assert!(md.contains("| normal operation | 20000.0 | 45 | 3 |"), "{md}");
        assert!(md.contains("| full cache drop | 1000000.0 | 2223 | 139 |"), "{md}");
        assert!(md.contains("HSM sessions needed during a full cache drop: 1334"), "{md}");
        assert!(md.contains("measured at the last stage (1)"), "{md}");
    }

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

    #[test]
    fn hlog_round_trips_counts_tags_and_times() {
        let r = report();
        let dir = tempfile::tempdir().unwrap();
        write_all(&r, dir.path()).unwrap();
        let text = fs::read(dir.path().join("all.hlog")).unwrap();
        let s = String::from_utf8_lossy(&text);
        assert!(s.contains(&format!("#[StartTime: {STARTED}.000 (seconds since epoch)]")), "{s}");
        assert!(s.contains(
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        ));

        let mut base = None;
        let mut seen = Vec::new();
        let mut deser = Deserializer::new();
        for entry in IntervalLogIterator::new(&text) {
            match entry.unwrap() {
                LogEntry::BaseTime(t) => base = Some(t),
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(i) => {
                    let bytes =
                        base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = deser.deserialize(&mut bytes.as_slice()).unwrap();
                    assert!(close(i.max(), h.max() as f64 / US_PER_MS), "{} vs {}", i.max(), h.max());
                    seen.push((i.tag().unwrap().as_str().to_owned(), i.start_timestamp(), h.len()));
                }
            }
        }
        assert_eq!(base, Some(Duration::from_secs(STARTED)));
        let expected: Vec<_> = r
            .stages
            .iter()
            .flat_map(|s| {
                s.intervals.iter().map(|i| (s.slug.clone(), secs(i.start_s), i.by_outcome.merged().len()))
            })
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(seen.iter().map(|s| s.2).sum::<u64>(), 9_000);

        // Per-outcome logs hold only that outcome.
        let text = fs::read(dir.path().join("hit_l2.hlog")).unwrap();
        let counts: Vec<_> = IntervalLogIterator::new(&text)
            .filter_map(|e| match e.unwrap() {
                LogEntry::Interval(i) => {
                    let bytes =
                        base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = deser.deserialize(&mut bytes.as_slice()).unwrap();
                    Some((i.tag().unwrap().as_str().to_owned(), h.len()))
                }
                _ => None,
            })
            .collect();
        let tags = |t: &str, n| (t.to_owned(), n);
        assert_eq!(
            counts,
            vec![
                tags("s1_1of4", 0),
                tags("s1_1of4", 0),
                tags("s2_1of2", 300),
                tags("s2_1of2", 300),
                tags("s3_1of1", 0),
                tags("s3_1of1", 0)
            ]
        );
    }

    #[test]
    fn svg_is_an_svg_with_every_stage_and_the_title() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let svg = fs::read_to_string(dir.path().join("plot.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = svg_texts(&svg);
        // The stage names label each panel's x axis, in order.
        let axis = ["1/4", "1/2", "1"];
        assert_eq!(texts.windows(3).filter(|w| *w == axis).count(), 2, "{texts:?}");
        assert!(texts.contains(&"ocsp-origin bench: 127.0.0.1:8080 (open loop), commit abc1234".into()));
        assert!(texts.contains(&"Throughput per stage".into()), "{texts:?}");
        assert!(texts.contains(&"Latency per stage (ms, log scale)".into()), "{texts:?}");
        for label in ["target", "achieved (all outcomes)", "hit_l2", "all p99.9", "miss p50"] {
            assert!(texts.contains(&label.into()), "legend {label} missing: {texts:?}");
        }
        // Log axis: decades only, 0.1 ms (hits at 0.25 ms) to 10 ms (misses at 5 ms).
        for tick in ["0.1", "1", "10"] {
            assert!(texts.contains(&tick.into()), "tick {tick} missing: {texts:?}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate");
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

    #[test]
    fn unsafe_or_duplicate_slugs_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for slug in ["../escape", "a,b", "", "s1_1of4"] {
            let mut r = report();
            r.stages[1].slug = slug.into();
            let e = write_all(&r, &out).unwrap_err();
            assert!(matches!(e, ReportError::BadSlug { .. }), "{slug}: {e}");
            assert!(e.to_string().contains(&out.display().to_string()), "{e}");
            assert!(!out.exists());
        }
    }
}
