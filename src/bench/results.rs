//! What a bench run measured: per stage, per outcome, latency histograms and
//! counts. The client fills these; `report` turns them into `.hgrm` files,
//! HdrHistogram interval logs, an SVG plot and the capacity summary.

use hdrhistogram::Histogram;

/// How an answer was classified. Latencies are recorded per outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Served from the shard's L1 (`X-Cache-Status: HIT` or `STALE`).
    Hit,
    /// Served from the shared Redis cache (`X-Cache-Status: HIT-L2`).
    HitL2,
    /// Signed for this request or one it joined (`X-Cache-Status: MISS`).
    Miss,
    /// OCSP `tryLater` (the server shed the request).
    TryLater,
    /// Anything else that is not a correct answer: HTTP error, OCSP error other
    /// than tryLater, timeout, connection reset or refused. Wrong answers
    /// (bad signature, wrong status, wrong CertID) are counted here *and* in
    /// [`StageResult::wrong`], which fails the run.
    Error,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 5] =
        [Outcome::Hit, Outcome::HitL2, Outcome::Miss, Outcome::TryLater, Outcome::Error];

    /// Index into per-outcome arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// File- and tag-safe name (`hit`, `hit_l2`, `miss`, `try_later`, `error`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::HitL2 => "hit_l2",
            Outcome::Miss => "miss",
            Outcome::TryLater => "try_later",
            Outcome::Error => "error",
        }
    }
}

/// Number of outcomes.
pub const OUTCOMES: usize = Outcome::ALL.len();

/// A latency histogram for the client, in microseconds (1 µs … 60 s, 3 digits).
pub fn client_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// One histogram per outcome.
#[derive(Clone, Debug)]
pub struct ByOutcome {
    /// Indexed by [`Outcome::index`].
    pub h: [Histogram<u64>; OUTCOMES],
}

impl Default for ByOutcome {
    fn default() -> Self {
        ByOutcome { h: std::array::from_fn(|_| client_histogram()) }
    }
}

impl ByOutcome {
    /// Histograms with `digits` significant digits (2 for the many small
    /// per-interval histograms of an interval log, 3 otherwise).
    pub fn with_digits(digits: u8) -> ByOutcome {
        ByOutcome {
            h: std::array::from_fn(|_| {
                Histogram::new_with_bounds(1, 60_000_000, digits)
                    .expect("constant histogram bounds are valid")
            }),
        }
    }

    /// Records `us` for `o` (values past the range are clamped to its top).
    pub fn record(&mut self, o: Outcome, us: u64) {
        let h = &mut self.h[o.index()];
        let _ = h.record(us.clamp(1, h.high()));
    }

    /// Adds another set (same bounds).
    pub fn add(&mut self, other: &ByOutcome) {
        for (a, b) in self.h.iter_mut().zip(other.h.iter()) {
            let _ = a.add(b);
        }
    }

    /// All outcomes merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut m = client_histogram();
        for h in &self.h {
            let _ = m.add(h);
        }
        m
    }

    /// Answers recorded for `o`.
    pub fn count(&self, o: Outcome) -> u64 {
        self.h[o.index()].len()
    }
}

/// One interval of the interval log (one second by default).
#[derive(Clone, Debug)]
pub struct Interval {
    /// Seconds since the run started (not the stage) at the interval's start.
    pub start_s: f64,
    /// Interval length, seconds.
    pub length_s: f64,
    /// Latencies of answers received in the interval.
    pub by_outcome: ByOutcome,
}

/// One ratchet stage (or the single stage of a plain run).
#[derive(Clone, Debug)]
pub struct StageResult {
    /// Display name: `1/16`, …, `1`; `run` for a single stage.
    pub name: String,
    /// File- and tag-safe name: `s1_1of16`, …, `s5_1of1`; `run`.
    pub slug: String,
    /// Share of the CDN's traffic reaching the origin and share of the stage's
    /// keyspace that is cold (0 < fraction ≤ 1).
    pub fraction: f64,
    /// Open loop: the requests/s the stage aimed for; closed loop: `None`.
    pub target_rate: Option<f64>,
    /// Seconds since the run started when the stage began.
    pub start_s: f64,
    /// Measured stage length, seconds.
    pub duration_s: f64,
    /// Requests sent.
    pub sent: u64,
    /// Wrong answers (fail the run).
    pub wrong: u64,
    /// Connections that could not be opened (refused, reset on connect).
    pub connect_errors: u64,
    /// Latency per outcome, µs; open loop measures from the intended send
    /// time (coordinated-omission corrected).
    pub by_outcome: ByOutcome,
    /// Per-second intervals of this stage.
    pub intervals: Vec<Interval>,
    /// Service time, µs, all outcomes: from the moment the request was
    /// actually sent (not the intended time). The gap between this and
    /// `by_outcome` in open loop is time spent behind schedule — the server's
    /// backlog, or the generator's own when it cannot keep up (compare with
    /// the server's `request` histogram).
    pub service_us: Histogram<u64>,
    /// Distinct serials in the stage's keyspace, and how many of them were cold.
    pub keyspace: usize,
    /// Cold serials (never requested before the stage).
    pub cold: usize,
    /// Behind a CDN (`--cdn-purge`): what it served itself, what it fetched
    /// from the origin, and the purge that opened the stage.
    pub cdn: Option<CdnStage>,
}

impl StageResult {
    /// Answers received (every outcome).
    pub fn completed(&self) -> u64 {
        Outcome::ALL.iter().map(|o| self.by_outcome.count(*o)).sum()
    }

    /// Answers received per second.
    pub fn rate(&self) -> f64 {
        self.per_second(self.completed())
    }

    /// Answers with outcome `o` per second.
    pub fn outcome_rate(&self, o: Outcome) -> f64 {
        self.per_second(self.by_outcome.count(o))
    }

    /// `n` over the stage's measured length; 0 for a stage that measured no
    /// time, so an aborted stage reads as "nothing delivered", not as infinity.
    fn per_second(&self, n: u64) -> f64 {
        if self.duration_s > 0.0 {
            n as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

/// Answers through a CDN, split by its `X-Cache` header.
#[derive(Clone, Debug)]
pub struct CdnAnswers {
    /// Latency of the answers the CDN served from its cache (`X-Cache: HIT`),
    /// µs, every outcome (a wrong one too).
    pub hit_us: Histogram<u64>,
    /// Answers the CDN fetched from the origin (`X-Cache: MISS`), by the
    /// origin's outcome: its `X-Cache-Status` for a good answer, tryLater and
    /// errors as the bench judged them.
    pub origin: ByOutcome,
    /// Answers without an `X-Cache` header: no answer at all (timeouts,
    /// refused or reset connections, requests left unsent) or not the CDN's.
    pub unmarked: u64,
    /// Per second since the stage's start (by receive time): (CDN hits,
    /// answers), so the drop right after the purge and the refill show.
    pub by_second: Vec<(u64, u64)>,
}

impl Default for CdnAnswers {
    fn default() -> Self {
        CdnAnswers {
            hit_us: client_histogram(),
            origin: ByOutcome::default(),
            unmarked: 0,
            by_second: Vec::new(),
        }
    }
}

impl CdnAnswers {
    /// Records one answer: `x_cache` is `Some(true)` for `X-Cache: HIT`,
    /// `Some(false)` for `MISS`, `None` without the header.
    pub fn record(&mut self, x_cache: Option<bool>, o: Outcome, us: u64) {
        match x_cache {
            Some(true) => {
                let _ = self.hit_us.record(us.clamp(1, self.hit_us.high()));
            }
            Some(false) => self.origin.record(o, us),
            None => self.unmarked += 1,
        }
    }

    /// Counts one answer received `second` whole seconds into the stage.
    pub fn count_second(&mut self, second: usize, hit: bool) {
        if self.by_second.len() <= second {
            self.by_second.resize(second + 1, (0, 0));
        }
        let b = &mut self.by_second[second];
        b.0 += u64::from(hit);
        b.1 += 1;
    }

    /// Adds another thread's.
    pub fn add(&mut self, other: &CdnAnswers) {
        let _ = self.hit_us.add(&other.hit_us);
        self.origin.add(&other.origin);
        self.unmarked += other.unmarked;
        if self.by_second.len() < other.by_second.len() {
            self.by_second.resize(other.by_second.len(), (0, 0));
        }
        for (a, b) in self.by_second.iter_mut().zip(&other.by_second) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    /// CDN hits over answers per second of the stage (`None` for a second
    /// without answers).
    pub fn hit_ratio_by_second(&self) -> Vec<Option<f64>> {
        self.by_second.iter().map(|(h, n)| (*n > 0).then(|| *h as f64 / *n as f64)).collect()
    }

    /// Answers the CDN served from its cache.
    pub fn hits(&self) -> u64 {
        self.hit_us.len()
    }

    /// Answers the CDN fetched from the origin.
    pub fn origin_requests(&self) -> u64 {
        Outcome::ALL.iter().map(|o| self.origin.count(*o)).sum()
    }

    /// Every answer counted (with and without the header).
    pub fn total(&self) -> u64 {
        self.hits() + self.origin_requests() + self.unmarked
    }

    /// CDN hits over every answer; `None` when there was none.
    pub fn hit_ratio(&self) -> Option<f64> {
        let all = self.total();
        (all > 0).then(|| self.hits() as f64 / all as f64)
    }
}

/// The purge at the start of a CDN ratchet stage.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PurgeResult {
    /// Buckets purged (`0 .. buckets-1`, of 256).
    pub buckets: usize,
    /// Purge requests sent (at most `--cdn-purge-batch` tags each).
    pub requests: u64,
    /// Of them, those that failed (no 200 with `X-Purged`).
    pub failed: u64,
    /// Objects the CDN said it purged (sum of `X-Purged`).
    pub purged: u64,
    /// When the purge began, ms from the stage's start (negative: before it).
    pub began_ms: f64,
    /// How long the purge requests took together, ms.
    pub took_ms: f64,
    /// The first few failures.
    pub errors: Vec<String>,
}

/// One stage behind a CDN.
#[derive(Clone, Debug, Default)]
pub struct CdnStage {
    /// Its answers by `X-Cache`.
    pub answers: CdnAnswers,
    /// The purge that opened it.
    pub purge: PurgeResult,
}

/// How the run was made (goes into every export).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunMeta {
    /// The command line.
    pub command: String,
    /// `git describe`-like commit if known (from `OCSP_ORIGIN_COMMIT` or
    /// the build), else empty.
    pub commit: String,
    /// Machine: `uname -srm`, CPU model and count.
    pub machine: String,
    /// Target addresses, comma-separated (as given to `--target`).
    pub target: String,
    /// Target addresses; connection i went to target i mod n.
    pub targets: Vec<String>,
    /// How answers were checked against the status source: `off` (no
    /// `[mysql]` or `--no-verify`), `unavailable` (no `ocsp_changes`: schema
    /// v1, statuses as read at start), or `on` (the change follower ran).
    pub change_feed: String,
    /// `open` (rate-driven) or `closed`.
    pub mode: String,
    /// Connections in total.
    pub connections: usize,
    /// Generator threads.
    pub threads: usize,
    /// Share of POST requests.
    pub post_share: f64,
    /// Share of GET requests that carry URL quirks.
    pub quirk_share: f64,
    /// Zipf exponent of serial popularity.
    pub zipf_s: f64,
    /// Unix time the run started.
    pub started_unix: u64,
    /// `--cdn-purge`: where the CDN was purged (the targets are the CDN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdn_purge: Option<String>,
}

/// What the capacity summary is computed for (CLI flags).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CapacityInputs {
    /// Shards the server ran with.
    pub server_cores: usize,
    /// Signing sessions (signer threads / HSM sessions) the server ran with.
    pub hsm_sessions: usize,
    /// Cores per node for the node count.
    pub node_cores: usize,
    /// The load to plan for, requests/s arriving at the CDN.
    pub target_rps: f64,
    /// The CDN's normal hit ratio (0.98 → 2% of the target reaches the origin).
    pub cdn_hit_ratio: f64,
}

/// What one target (node) got over the measured stages.
#[derive(Clone, Debug, Default)]
pub struct TargetResult {
    /// Its address.
    pub target: String,
    /// Requests sent to it.
    pub sent: u64,
    /// Answers (and unsent scheduled requests, as errors) per outcome, indexed
    /// by [`Outcome::index`].
    pub counts: [u64; OUTCOMES],
    /// Wrong answers from it (also counted under `Error`).
    pub wrong: u64,
}

impl TargetResult {
    /// Correct answers, tryLater included (every outcome but `Error`).
    pub fn answers(&self) -> u64 {
        Outcome::ALL.iter().filter(|o| **o != Outcome::Error).map(|o| self.counts[o.index()]).sum()
    }
}

/// From τ (the change follower saw a change) to the first answer from one
/// target, to a request sent after τ, that carried the change's status.
#[derive(Clone, Debug)]
pub struct Propagation {
    /// The target.
    pub target: String,
    /// One value per change the target showed, µs (an upper bound of how
    /// long after τ the node answered with it: the bench asks for a serial
    /// only so often).
    pub shown_us: Histogram<u64>,
    /// Changes the target was asked about after τ but never answered with.
    pub not_shown: u64,
}

/// What change-aware verification saw (see `bench::changes`).
#[derive(Clone, Debug)]
pub struct ChangeReport {
    /// `--change-poll-ms`.
    pub poll_ms: u64,
    /// `--change-bound-ms`: the bound under test.
    pub bound_ms: u64,
    /// Changes the follower read from `ocsp_changes` (placeholders excluded).
    pub seen: u64,
    /// Of them, about certificates the run asks about.
    pub seen_in_keyspace: u64,
    /// Changes that became visible after higher `seq`s did (each applied at
    /// the instant it was seen).
    pub late: u64,
    /// Missing `seq`s no longer re-queried after 60 s.
    pub gaps_given_up: u64,
    /// Polls that failed.
    pub poll_errors: u64,
    /// Whether the final poll after the run succeeded (else answers that did
    /// not fit are `unjudged`, not wrong).
    pub final_poll: bool,
    /// Certificates with at least one change.
    pub entries_changed: u64,
    /// Answers to requests sent after τ + bound of a change of their
    /// certificate (judged against a change, not the status read at start).
    pub judged_against_change: u64,
    /// Answers with a status older than a change seen before the request was
    /// sent, inside that change's bound (allowed).
    pub older_in_window: u64,
    /// Answers that did not fit what the bench knew when they arrived.
    pub pending: u64,
    /// Of them, those that fit after the run's final poll.
    pub pending_resolved: u64,
    /// Answers not judged because the pending queue was full (errors).
    pub pending_overflow: u64,
    /// Pending answers that still did not fit: wrong.
    pub wrong: u64,
    /// Pending answers not judged because the final poll failed.
    pub unjudged: u64,
    /// Per target: τ to the first answer with the new status.
    pub propagation: Vec<Propagation>,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How it was made.
    pub meta: RunMeta,
    /// Stages in order.
    pub stages: Vec<StageResult>,
    /// Capacity inputs.
    pub capacity: CapacityInputs,
    /// Per target, over the measured stages.
    pub targets: Vec<TargetResult>,
    /// Wrong answers during the warm-up (they fail the run too).
    pub warm_wrong: u64,
    /// Change-aware verification, when the change follower ran.
    pub changes: Option<ChangeReport>,
}

impl RunReport {
    /// Wrong answers over the warm-up and all stages.
    pub fn wrong(&self) -> u64 {
        self.warm_wrong + self.stages.iter().map(|s| s.wrong).sum::<u64>()
    }

    /// Answers that could not be judged (the change feed was unreachable at
    /// the end): they might be wrong, so they fail the run as well.
    pub fn unjudged(&self) -> u64 {
        self.changes.as_ref().map_or(0, |c| c.unjudged)
    }

    /// Answers with outcome `o` over all stages.
    pub fn count(&self, o: Outcome) -> u64 {
        self.stages.iter().map(|s| s.by_outcome.count(o)).sum()
    }
}
