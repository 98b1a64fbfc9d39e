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

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::signer::{SignPool, Signer};

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

/// Everything the admin listener reads and acts on.
pub struct Sources {
    /// Shard snapshots.
    pub board: Board,
    /// The signer pool.
    pub pool: SignPool,
    /// The shards' control plane (reload, invalidation).
    pub control: Arc<crate::control::Control>,
    /// What the running generation is made of; a reload replaces it.
    pub view: Arc<Mutex<Arc<View>>>,
    /// The change feed's figures (with `[mysql]`).
    pub feed: Option<Arc<crate::feed::FeedStats>>,
    /// The node's revision floors.
    pub floors: Arc<crate::feed::Floors>,
}

/// The parts of the running generation the admin listener reads.
pub struct View {
    /// The config (the admin token, `[mysql]` and `[redis]` for revocations,
    /// issuer names).
    pub config: crate::config::Config,
    /// Every issuer's signer (fault counters).
    pub signers: Vec<(String, Arc<dyn Signer>)>,
    /// The status source (whether it is up).
    pub status: Arc<dyn crate::status::StatusSource>,
}

impl View {
    /// The view of a generation: its config, its issuers' signers and its
    /// status source.
    pub fn new(config: &crate::config::Config, parts: &crate::server::Parts) -> View {
        let signers =
            parts.issuers.iter().map(|(_, i)| (i.name.clone(), i.responder.signer.clone())).collect();
        View { config: config.clone(), signers, status: parts.status.clone() }
    }
}

impl Sources {
    /// The running generation's view.
    pub fn view(&self) -> Arc<View> {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>, scale: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", h.value_at_quantile(q) as f64 * scale);
    }
    let sum: f64 = h.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum();
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", sum * scale, h.len());
}

/// `stage` merged over every shard.
fn merged(src: &Sources, stage: Stage) -> Histogram<u64> {
    let mut m = Stages::default().get(stage).clone();
    for slot in src.board.iter() {
        if let Ok(s) = slot.lock() {
            let _ = m.add(s.stages.get(stage));
        }
    }
    m
}

/// Renders `/metrics`.
pub fn prometheus(src: &Sources) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_shard_total Per-shard counters (requests, cache and Redis events)."
    );
    let _ = writeln!(out, "# TYPE ocsp_origin_shard_total counter");
    let mut l1 = String::new();
    for (i, slot) in src.board.iter().enumerate() {
        let Ok(s) = slot.lock() else { continue };
        for (name, v) in &s.counters {
            let _ = writeln!(out, "ocsp_origin_shard_total{{shard=\"{i}\",counter=\"{name}\"}} {v}");
        }
        let _ = writeln!(l1, "ocsp_origin_l1_entries{{shard=\"{i}\"}} {}", s.l1_entries);
    }
    let _ = writeln!(out, "# HELP ocsp_origin_l1_entries Responses held in each shard's L1.\n# TYPE ocsp_origin_l1_entries gauge");
    out.push_str(&l1);
    for stage in Stage::ALL {
        let name = format!("ocsp_origin_{}_seconds", stage.name());
        summary(&mut out, &name, stage.help(), &merged(src, stage), 1.0 / stage.per_second());
    }

    let st = src.pool.stats();
    use std::sync::atomic::Ordering::Relaxed;
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_sign_total Signing jobs by outcome.\n# TYPE ocsp_origin_sign_total counter"
    );
    for (event, v) in [
        ("signed", st.signed.load(Relaxed)),
        ("shed", st.shed.load(Relaxed)),
        ("shed_slow", st.shed_slow.load(Relaxed)),
        ("abandoned", st.abandoned.load(Relaxed)),
        ("failed", st.failed.load(Relaxed)),
    ] {
        let _ = writeln!(out, "ocsp_origin_sign_total{{event=\"{event}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_sign_queue_jobs Jobs waiting for a signer.\n# TYPE ocsp_origin_sign_queue_jobs gauge\nocsp_origin_sign_queue_jobs {}",
        src.pool.queued()
    );
    let _ = writeln!(out, "# HELP ocsp_origin_signer_faults_total Signature retries and session reopens per issuer key.\n# TYPE ocsp_origin_signer_faults_total counter");
    for (issuer, s) in &src.view().signers {
        let c = s.counters();
        let _ = writeln!(
            out,
            "ocsp_origin_signer_faults_total{{issuer=\"{issuer}\",fault=\"retry\"}} {}",
            c.retries
        );
        let _ = writeln!(
            out,
            "ocsp_origin_signer_faults_total{{issuer=\"{issuer}\",fault=\"session_reopen\"}} {}",
            c.session_reopens
        );
    }
    let view = src.view();
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_status_source_up 1 while certificate statuses can be looked up; 0 while \
         misses are answered tryLater because the status source (the database) is unreachable.\n\
         # TYPE ocsp_origin_status_source_up gauge\nocsp_origin_status_source_up{{source=\"{}\"}} {}",
        view.status.kind(),
        u8::from(view.status.is_up())
    );
    for (name, v) in view.status.gauges() {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# TYPE ocsp_origin_status_{name} {kind}\nocsp_origin_status_{name} {v}");
    }
    feed_metrics(&mut out, src);
    let h = src.pool.snapshot();
    summary(
        &mut out,
        "ocsp_origin_sign_queue_wait_seconds",
        "Time a signing job waited in the queue.",
        &h.queue_wait_us,
        1e-6,
    );
    summary(&mut out, "ocsp_origin_sign_seconds", "Time to make one signature.", &h.sign_us, 1e-6);
    summary(
        &mut out,
        "ocsp_origin_sign_batch_jobs",
        "Jobs a signer thread took per wake-up.",
        &h.batch_size,
        1.0,
    );
    out
}

/// The change feed's part of `/metrics`.
fn feed_metrics(out: &mut String, src: &Sources) {
    use std::sync::atomic::Ordering::Relaxed;
    let floors = &src.floors;
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_floors Certificates whose recent change fences older copies.\n# TYPE ocsp_origin_floors gauge\nocsp_origin_floors {}",
        floors.len()
    );
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_redis_trust_from_seconds Redis copies vouched for before this Unix time are checked against the database before use (0: none).\n# TYPE ocsp_origin_redis_trust_from_seconds gauge\nocsp_origin_redis_trust_from_seconds {}",
        floors.trust_from()
    );
    let Some(f) = &src.feed else { return };
    let silence = f.silence_ms();
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_up 1 while this node has read the change feed within feed.bound_ms; 0 while it cannot know of new changes.\n# TYPE ocsp_origin_feed_up gauge\nocsp_origin_feed_up {}",
        u8::from(f.is_up())
    );
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_silence_seconds Time since the last successful read of the change feed.\n# TYPE ocsp_origin_feed_silence_seconds gauge\nocsp_origin_feed_silence_seconds {}",
        if silence == u64::MAX { f64::INFINITY } else { silence as f64 / 1000.0 }
    );
    let _ = writeln!(out, "# HELP ocsp_origin_feed_position Every change at or below this seq is applied on every shard.\n# TYPE ocsp_origin_feed_position gauge\nocsp_origin_feed_position {}", f.position.load(Relaxed));
    let _ = writeln!(out, "# HELP ocsp_origin_feed_missing Seqs below the newest read not visible yet (open or rolled-back transactions).\n# TYPE ocsp_origin_feed_missing gauge\nocsp_origin_feed_missing {}", f.missing.load(Relaxed));
    let _ = writeln!(out, "# HELP ocsp_origin_feed_tombstone_position Every change at or below this seq has its Redis tombstones.\n# TYPE ocsp_origin_feed_tombstone_position gauge\nocsp_origin_feed_tombstone_position {}", f.tombstone_position.load(Relaxed));
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_total Change-feed events.\n# TYPE ocsp_origin_feed_total counter"
    );
    for (event, v) in [
        ("applied", f.applied.load(Relaxed)),
        ("read_errors", f.read_errors.load(Relaxed)),
        ("unacknowledged", f.unacknowledged.load(Relaxed)),
        ("lost", f.lost.load(Relaxed)),
        ("pruned", f.pruned.load(Relaxed)),
        ("tombstones_written", f.tombstones_written.load(Relaxed)),
        ("tombstone_errors", f.tombstone_errors.load(Relaxed)),
    ] {
        let _ = writeln!(out, "ocsp_origin_feed_total{{event=\"{event}\"}} {v}");
    }
    if let Ok(h) = f.apply_us.lock() {
        summary(
            out,
            "ocsp_origin_feed_apply_seconds",
            "From the writing statement (the change's changed_at) to every shard's acknowledgement.",
            &h,
            1e-6,
        );
    }
}

/// HdrHistogram's percentile-distribution (`.hgrm`) text, values divided by
/// `unit` (1000 for µs → ms).
pub fn hgrm(h: &Histogram<u64>, unit: f64) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:.2}", 1.0 / (1.0 - q)) } else { String::new() };
        let _ = writeln!(
            out,
            "{:12.3} {:2.12} {:10} {:14}",
            v.value_iterated_to() as f64 / unit,
            q,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.mean() / unit,
        h.stdev() / unit,
        h.max() as f64 / unit,
        h.len(),
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// The export at `path`: `/metrics` (Prometheus text) or
/// `/histograms/{stage}.hgrm`, with its content type; `None` for any other
/// path. The admin listener ([`crate::admin`]) serves these.
pub fn export(src: &Sources, path: &str) -> Option<(&'static str, String)> {
    let stage = path
        .strip_prefix("/histograms/")
        .and_then(|p| p.strip_suffix(".hgrm"))
        .and_then(|name| Stage::ALL.into_iter().find(|s| s.name() == name));
    if let Some(stage) = stage {
        // Exports are in milliseconds whatever the recording unit.
        return Some(("text/plain", hgrm(&merged(src, stage), stage.per_second() / 1000.0)));
    }
    Some(match path {
        "/metrics" => ("text/plain; version=0.0.4", prometheus(src)),
        "/histograms/sign_wait.hgrm" => ("text/plain", hgrm(&src.pool.snapshot().queue_wait_us, 1000.0)),
        "/histograms/sign.hgrm" => ("text/plain", hgrm(&src.pool.snapshot().sign_us, 1000.0)),
        "/histograms/sign_batch.hgrm" => ("text/plain", hgrm(&src.pool.snapshot().batch_size, 1.0)),
        "/histograms/feed.hgrm" => {
            let h = src.feed.as_ref()?.apply_us.lock().ok()?.clone();
            ("text/plain", hgrm(&h, 1000.0))
        }
        _ => return None,
    })
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
