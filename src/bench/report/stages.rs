//! Per-stage figures of a run: answers per outcome and latencies in ms, the
//! input both the summary and the capacity model read; behind a CDN, its hit
//! ratio, what it fetched from the origin and the stage's purge.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::US_PER_MS;
use crate::bench::results::{CdnStage, Outcome, PurgeResult, StageResult};

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
    /// Behind a CDN (`--cdn-purge`); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cdn: Option<CdnSummary>,
}

/// One stage behind a CDN.
#[derive(Clone, Debug, Serialize)]
pub(super) struct CdnSummary {
    /// CDN hits over every answer (`X-Cache: HIT` / all); `None` without answers.
    pub(super) hit_ratio: Option<f64>,
    /// The same in the stage's first second (right after the purge).
    pub(super) first_second_hit_ratio: Option<f64>,
    /// The same per second of the stage (by receive time; the last one
    /// holds the answers that arrived after the stage's end).
    pub(super) hit_ratio_by_second: Vec<Option<f64>>,
    /// Answers the CDN served from its cache.
    pub(super) cdn_hits: u64,
    /// Answers it fetched from the origin (`X-Cache: MISS`).
    pub(super) origin_requests: u64,
    /// Those per second of the stage.
    pub(super) origin_rate: f64,
    /// The origin requests by the origin's outcome (`hit`: its L1, `hit_l2`:
    /// Redis, `miss`: signed for it; `try_later` and `error` as judged).
    pub(super) origin: OutcomeCounts,
    /// Answers without an `X-Cache` header (no answer at all).
    pub(super) no_answer: u64,
    pub(super) cdn_hit_latency_ms: Option<LatencyMs>,
    pub(super) origin_latency_ms: Option<LatencyMs>,
    pub(super) purge: PurgeResult,
}

impl CdnSummary {
    pub(super) fn new(c: &CdnStage, duration_s: f64) -> CdnSummary {
        let a = &c.answers;
        let origin_requests = a.origin_requests();
        let by_second = a.hit_ratio_by_second();
        CdnSummary {
            hit_ratio: a.hit_ratio(),
            first_second_hit_ratio: by_second.first().copied().flatten(),
            hit_ratio_by_second: by_second,
            cdn_hits: a.hits(),
            origin_requests,
            origin_rate: if duration_s > 0.0 { origin_requests as f64 / duration_s } else { 0.0 },
            origin: OutcomeCounts::of(|o| a.origin.count(o)),
            no_answer: a.unmarked,
            cdn_hit_latency_ms: LatencyMs::of(&a.hit_us),
            origin_latency_ms: LatencyMs::of(&a.origin.merged()),
            purge: c.purge.clone(),
        }
    }
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
            cdn: s.cdn.as_ref().map(|c| CdnSummary::new(c, s.duration_s)),
        }
    }
}
