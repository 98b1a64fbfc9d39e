//! Metrics for operators and capacity planning, rendered here and served by
//! the admin listener ([`crate::admin`], `[admin] listen`, loopback by
//! default) so they never compete with OCSP traffic on the shards.
//!
//! Shards count and record into plain shard-local cells (no atomics on the hot
//! path) and publish a snapshot once a second into a mutex only the admin
//! thread reads. Each shard times its own stages of a request into a
//! [`StageTimes`] it shares (`Rc`) with its sources:
//!
//! | stage | from → to | unit |
//! |---|---|---|
//! | `request` | head parsed → answer written to the output buffer (every request) | µs |
//! | `parse` | same start → query admitted (route, GET decode or POST body, OCSP decode, filter) | ns |
//! | `l1` | whole service time of requests answered from L1 (`HIT`, `STALE`) | ns |
//! | `redis` | Redis GET sent → reply, timeout or error (`source::redis`) | µs |
//! | `db` | status lookup submitted → its answer, per CertID (`source::live`) | µs |
//!
//! The signer pool adds `sign_wait` (queue wait), `sign` and `sign_batch`.
//! [`export`] merges the shards' snapshots with the pool's histograms into:
//!
//! - `GET /metrics` — Prometheus text format (counters by shard; latency
//!   summaries in seconds with p50/p90/p99/p99.9 merged over shards:
//!   `ocsp_origin_{request,parse,l1,redis,db}_seconds`,
//!   `ocsp_origin_sign_queue_wait_seconds`, `ocsp_origin_sign_seconds`);
//! - `GET /histograms/{request,parse,l1,redis,db,sign_wait,sign,sign_batch}.hgrm`
//!   — HdrHistogram's percentile-distribution text (values in ms; jobs for
//!   `sign_batch`), readable by HdrHistogram's own plotters.
//!
//! Snapshots are up to a second old; counters are monotonic.
//!
//! This module renders from values only ([`render::NodeSnapshot`]): the
//! admin listener gathers them from the shards' board, the signer pool, the
//! status source and the change feed, so nothing here reaches into the
//! server.

mod render;

pub use render::{
    export, hgrm, prometheus, FeedSnapshot, NodeSnapshot, PurgeSnapshot, SignSnapshot, StatusGauge,
    StatusSnapshot,
};

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use hdrhistogram::Histogram;

/// A new latency histogram in microseconds (1 µs … 60 s, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// A histogram in nanoseconds (1 ns … 1 s, 3 significant digits), for stages
/// that take about a microsecond, where µs would round everything to 0 or 1.
pub fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// A timed stage of a request on its shard (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The whole request, µs.
    Request,
    /// Until the query is admitted, ns.
    Parse,
    /// Requests answered from L1, whole service time, ns.
    L1,
    /// One Redis GET, µs.
    Redis,
    /// One status lookup, µs.
    Db,
}

impl Stage {
    /// Every stage, in export order.
    pub const ALL: [Stage; 5] = [Stage::Request, Stage::Parse, Stage::L1, Stage::Redis, Stage::Db];

    /// Name in metric names and `.hgrm` paths.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Parse => "parse",
            Stage::L1 => "l1",
            Stage::Redis => "redis",
            Stage::Db => "db",
        }
    }

    /// Recorded in nanoseconds (else microseconds).
    fn in_ns(self) -> bool {
        matches!(self, Stage::Parse | Stage::L1)
    }

    /// Recorded units per second.
    fn per_second(self) -> f64 {
        if self.in_ns() {
            1e9
        } else {
            1e6
        }
    }

    fn help(self) -> &'static str {
        match self {
            Stage::Request => "Service time of a request on its shard.",
            Stage::Parse => "Time from the start of a request until its OCSP query is admitted (HTTP route, GET decode or POST body, OCSP decode, filter).",
            Stage::L1 => "Service time of requests answered from the shard's L1 cache (fresh or stale hits).",
            Stage::Redis => "Redis GET round trip as seen by the shard (timeouts and errors included).",
            Stage::Db => "Status lookup as seen by the shard, per CertID (submitted to answered).",
        }
    }
}

/// One shard's per-stage histograms, as published.
#[derive(Clone, Debug)]
pub struct Stages {
    /// [`Stage::Request`], µs.
    pub request_us: Histogram<u64>,
    /// [`Stage::Parse`], ns.
    pub parse_ns: Histogram<u64>,
    /// [`Stage::L1`], ns.
    pub l1_ns: Histogram<u64>,
    /// [`Stage::Redis`], µs.
    pub redis_us: Histogram<u64>,
    /// [`Stage::Db`], µs.
    pub db_us: Histogram<u64>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            request_us: latency_histogram(),
            parse_ns: ns_histogram(),
            l1_ns: ns_histogram(),
            redis_us: latency_histogram(),
            db_us: latency_histogram(),
        }
    }
}

impl Stages {
    /// The histogram of `stage`.
    pub fn get(&self, stage: Stage) -> &Histogram<u64> {
        match stage {
            Stage::Request => &self.request_us,
            Stage::Parse => &self.parse_ns,
            Stage::L1 => &self.l1_ns,
            Stage::Redis => &self.redis_us,
            Stage::Db => &self.db_us,
        }
    }

    fn get_mut(&mut self, stage: Stage) -> &mut Histogram<u64> {
        match stage {
            Stage::Request => &mut self.request_us,
            Stage::Parse => &mut self.parse_ns,
            Stage::L1 => &mut self.l1_ns,
            Stage::Redis => &mut self.redis_us,
            Stage::Db => &mut self.db_us,
        }
    }
}

/// Where one shard records its stage times: a plain `RefCell` (one thread, no
/// atomics), shared by `Rc` between the connection code and the sources
/// (`Live`, `RedisL2`). Recording is an array increment; the cost on the hot
/// path is the `Instant::now()` calls around each stage.
#[derive(Debug, Default)]
pub struct StageTimes {
    stages: RefCell<Stages>,
}

impl StageTimes {
    /// Records that `stage` took `took` (clamped to the histogram's range).
    pub fn record(&self, stage: Stage, took: Duration) {
        let v = if stage.in_ns() { took.as_nanos() } else { took.as_micros() };
        // Never panics: a borrow can only be held by `snapshot`, which does
        // not yield, so this never fails; if it ever did, the sample is lost.
        if let Ok(mut s) = self.stages.try_borrow_mut() {
            s.get_mut(stage).saturating_record(u64::try_from(v).unwrap_or(u64::MAX));
        }
    }

    /// A copy of every histogram, for publishing.
    pub fn snapshot(&self) -> Stages {
        self.stages.borrow().clone()
    }
}

/// What one shard publishes.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    /// Named counters (`requests_ok`, `cache_hits`, …).
    pub counters: Vec<(&'static str, u64)>,
    /// Responses held in L1.
    pub l1_entries: u64,
    /// Per-stage histograms.
    pub stages: Stages,
}

/// Where shards publish; shared with the admin thread.
pub type Board = Arc<Vec<Mutex<ShardSnapshot>>>;

/// A board for `shards` shards.
pub fn board(shards: usize) -> Board {
    Arc::new((0..shards).map(|_| Mutex::new(ShardSnapshot::default())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_the_standard_shape() {
        let mut h = latency_histogram();
        for v in [100u64, 200, 300, 5000] {
            h.record(v).unwrap();
        }
        let text = hgrm(&h, 1000.0);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Max     =        5.003, Total count    =            4]"), "{text}");
        let last_row = text.lines().rfind(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
    }

    #[test]
    fn stage_times_record_in_their_units() {
        let t = StageTimes::default();
        t.record(Stage::Parse, Duration::from_nanos(1234));
        t.record(Stage::Db, Duration::from_micros(1500));
        t.record(Stage::Redis, Duration::from_secs(3600)); // past the range: clamped, kept
        let s = t.snapshot();
        assert_eq!(s.parse_ns.len(), 1);
        assert_eq!(s.parse_ns.max(), 1234, "ns, not rounded to µs");
        assert_eq!(s.db_us.max(), 1500);
        assert_eq!(s.redis_us.len(), 1);
        assert_eq!(s.request_us.len(), 0);
        // Both export as milliseconds.
        let ms = |st: Stage| st.per_second() / 1000.0;
        assert!(hgrm(&s.parse_ns, ms(Stage::Parse)).contains("Max     =        0.001,"));
        assert!(hgrm(&s.db_us, ms(Stage::Db)).contains("Max     =        1.500,"));
    }
}
