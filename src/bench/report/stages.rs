//! Per-stage figures of a run: answers per outcome and latencies in ms, the
//! input both the summary and the capacity model read.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::US_PER_MS;
use crate::bench::results::{Outcome, StageResult};

/// Latency of one histogram, ms.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LatencyMs {
    pub(super) count: u64,
    pub(super) p50: f64,
    pub(super) p90: f64,
    pub(super) p99: f64,
    pub(super) p99_9: f64,
    pub(super) max: f64,
}

impl LatencyMs {
    /// `None` for an empty histogram: a percentile of nothing is not 0 ms.
    pub(super) fn of(h: &Histogram<u64>) -> Option<LatencyMs> {
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
pub(super) struct OutcomeCounts {
    pub(super) hit: u64,
    pub(super) hit_l2: u64,
    pub(super) miss: u64,
    pub(super) try_later: u64,
    pub(super) error: u64,
}

impl OutcomeCounts {
    pub(super) fn of(count: impl Fn(Outcome) -> u64) -> OutcomeCounts {
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
pub(super) struct OutcomeLatency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hit: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hit_l2: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) miss: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) try_later: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<LatencyMs>,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct StageSummary {
    pub(super) name: String,
    pub(super) slug: String,
    pub(super) fraction: f64,
    /// `None` in closed loop.
    pub(super) target_rate: Option<f64>,
    pub(super) achieved_rate: f64,
    pub(super) duration_s: f64,
    pub(super) sent: u64,
    pub(super) completed: u64,
    pub(super) counts: OutcomeCounts,
    pub(super) wrong: u64,
    pub(super) connect_errors: u64,
    pub(super) keyspace: usize,
    pub(super) cold: usize,
    /// All outcomes merged; `None` when the stage received no answer.
    pub(super) latency_ms: Option<LatencyMs>,
    pub(super) latency_ms_by_outcome: OutcomeLatency,
    /// From the actual send (see `StageResult::service_us`).
    pub(super) service_ms: Option<LatencyMs>,
}

impl StageSummary {
    pub(super) fn new(s: &StageResult) -> StageSummary {
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
