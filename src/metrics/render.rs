//! Rendering: Prometheus text and `.hgrm` exports from a [`NodeSnapshot`],
//! plain values the admin listener gathers, so rendering needs nothing but
//! the numbers.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::{ShardSnapshot, Stage, Stages};

/// Everything `/metrics` and the histogram exports show, at one moment.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    /// Every shard's last published snapshot, by shard index.
    pub shards: Vec<ShardSnapshot>,
    /// The signer pool.
    pub sign: SignSnapshot,
    /// Per issuer key: (issuer, signature retries, session reopens).
    pub signer_faults: Vec<(String, u64, u64)>,
    /// Per issuer signing through a delegated responder certificate: the
    /// seconds until it expires (negative once it has).
    pub responder_cert_expiry: Vec<(String, i64)>,
    /// The status source.
    pub status: StatusSnapshot,
    /// Certificates whose recent change fences older copies.
    pub floors: usize,
    /// Redis copies vouched for before this Unix time are re-checked (0: none).
    pub trust_from: u64,
    /// The change feed (with `[mysql]`).
    pub feed: Option<FeedSnapshot>,
    /// One per CDN purge target.
    pub purges: Vec<PurgeSnapshot>,
}

/// One CDN purge target's figures.
#[derive(Debug, Clone)]
pub struct PurgeSnapshot {
    /// Its name (the `target` label).
    pub target: String,
    /// Requests acknowledged, attempts failed, changes dead-lettered.
    pub sent: u64,
    /// Attempts that failed (retried).
    pub failed: u64,
    /// Changes given up.
    pub dead_lettered: u64,
    /// Tags purged.
    pub tags: u64,
    /// Changes read and not yet purged.
    pub queued: u64,
    /// Age of the oldest of them, seconds (0: none).
    pub oldest_secs: f64,
    /// Every change at or below this seq is purged.
    pub position: u64,
    /// The last attempt succeeded.
    pub up: bool,
    /// Commit to acknowledgement, µs.
    pub lag_us: Histogram<u64>,
}

/// The signer pool's figures.
#[derive(Debug, Clone)]
pub struct SignSnapshot {
    /// Jobs by outcome (`signed`, `shed`, …).
    pub events: Vec<(&'static str, u64)>,
    /// Jobs waiting for a signer now.
    pub queued: usize,
    /// Queue wait, µs.
    pub queue_wait_us: Histogram<u64>,
    /// One signature, µs.
    pub sign_us: Histogram<u64>,
    /// Jobs per signer wake-up.
    pub batch_size: Histogram<u64>,
}

/// One source-specific series on `/metrics`: `ocsp_origin_status_{name}`, a
/// counter when the name ends in `_total`, else a gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusGauge {
    /// The name after `ocsp_origin_status_`.
    pub name: &'static str,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// Its value now.
    pub value: f64,
}

/// The status source's figures.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    /// `index.txt` or `mysql`.
    pub kind: &'static str,
    /// Whether lookups can be answered now.
    pub up: bool,
    /// Its own gauges and counters (`_total`).
    pub gauges: Vec<StatusGauge>,
}

/// The change feed's figures.
#[derive(Debug, Clone)]
pub struct FeedSnapshot {
    /// Since the last good read, ms (`u64::MAX`: never).
    pub silence_ms: u64,
    /// Read within `feed.bound_ms`.
    pub up: bool,
    /// Every change at or below this seq is applied on every shard.
    pub position: u64,
    /// Seqs below the newest read not visible yet.
    pub missing: u64,
    /// Every change at or below this seq has its Redis tombstones.
    pub tombstone_position: u64,
    /// Events by name (`applied`, `lost`, …).
    pub events: Vec<(&'static str, u64)>,
    /// Commit to every shard's acknowledgement, µs.
    pub apply_us: Histogram<u64>,
}

fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>, scale: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", h.value_at_quantile(q) as f64 * scale);
    }
    // `+ 0.0`: an empty f64 sum is -0.0, which would render as "-0".
    let sum: f64 =
        h.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum::<f64>()
            + 0.0;
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", sum * scale, h.len());
}

/// `stage` merged over every shard.
fn merged(src: &NodeSnapshot, stage: Stage) -> Histogram<u64> {
    let mut m = Stages::default().get(stage).clone();
    for s in &src.shards {
        let _ = m.add(s.stages.get(stage));
    }
    m
}

/// Renders `/metrics`.
pub fn prometheus(src: &NodeSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_shard_total Per-shard counters (requests, cache and Redis events)."
    );
    let _ = writeln!(out, "# TYPE ocsp_origin_shard_total counter");
    let mut l1 = String::new();
    for (i, s) in src.shards.iter().enumerate() {
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

    let _ = writeln!(
        out,
        "# HELP ocsp_origin_sign_total Signing jobs by outcome.\n# TYPE ocsp_origin_sign_total counter"
    );
    for (event, v) in &src.sign.events {
        let _ = writeln!(out, "ocsp_origin_sign_total{{event=\"{event}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_sign_queue_jobs Jobs waiting for a signer.\n# TYPE ocsp_origin_sign_queue_jobs gauge\nocsp_origin_sign_queue_jobs {}",
        src.sign.queued
    );
    let _ = writeln!(out, "# HELP ocsp_origin_signer_faults_total Signature retries and session reopens per issuer key.\n# TYPE ocsp_origin_signer_faults_total counter");
    for (issuer, retries, reopens) in &src.signer_faults {
        let _ =
            writeln!(out, "ocsp_origin_signer_faults_total{{issuer=\"{issuer}\",fault=\"retry\"}} {retries}");
        let _ = writeln!(
            out,
            "ocsp_origin_signer_faults_total{{issuer=\"{issuer}\",fault=\"session_reopen\"}} {reopens}"
        );
    }
    if !src.responder_cert_expiry.is_empty() {
        let _ = writeln!(out, "# HELP ocsp_origin_responder_cert_expiry_seconds Seconds until the delegated responder certificate expires (a reload with a renewed one resets it).\n# TYPE ocsp_origin_responder_cert_expiry_seconds gauge");
        for (issuer, secs) in &src.responder_cert_expiry {
            let _ = writeln!(out, "ocsp_origin_responder_cert_expiry_seconds{{issuer=\"{issuer}\"}} {secs}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_status_source_up 1 while certificate statuses can be looked up; 0 while \
         misses are answered tryLater because the status source (the database) is unreachable.\n\
         # TYPE ocsp_origin_status_source_up gauge\nocsp_origin_status_source_up{{source=\"{}\"}} {}",
        src.status.kind,
        u8::from(src.status.up)
    );
    for g in &src.status.gauges {
        let (name, help, v) = (g.name, g.help, g.value);
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(
            out,
            "# HELP ocsp_origin_status_{name} {help}\n# TYPE ocsp_origin_status_{name} {kind}\n\
             ocsp_origin_status_{name} {v}"
        );
    }
    feed_metrics(&mut out, src);
    purge_metrics(&mut out, &src.purges);
    let h = &src.sign;
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
fn feed_metrics(out: &mut String, src: &NodeSnapshot) {
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_floors Certificates whose recent change fences older copies.\n# TYPE ocsp_origin_floors gauge\nocsp_origin_floors {}",
        src.floors
    );
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_redis_trust_from_seconds Redis copies vouched for before this Unix time are checked against the database before use (0: none).\n# TYPE ocsp_origin_redis_trust_from_seconds gauge\nocsp_origin_redis_trust_from_seconds {}",
        src.trust_from
    );
    let Some(f) = &src.feed else { return };
    let silence = f.silence_ms;
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_up 1 while this node has read the change feed within feed.bound_ms; 0 while it cannot know of new changes.\n# TYPE ocsp_origin_feed_up gauge\nocsp_origin_feed_up {}",
        u8::from(f.up)
    );
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_silence_seconds Time since the last successful read of the change feed.\n# TYPE ocsp_origin_feed_silence_seconds gauge\nocsp_origin_feed_silence_seconds {}",
        if silence == u64::MAX { f64::INFINITY } else { silence as f64 / 1000.0 }
    );
    let _ = writeln!(out, "# HELP ocsp_origin_feed_position Every change at or below this seq is applied on every shard.\n# TYPE ocsp_origin_feed_position gauge\nocsp_origin_feed_position {}", f.position);
    let _ = writeln!(out, "# HELP ocsp_origin_feed_missing Seqs below the newest read not visible yet (open or rolled-back transactions).\n# TYPE ocsp_origin_feed_missing gauge\nocsp_origin_feed_missing {}", f.missing);
    let _ = writeln!(out, "# HELP ocsp_origin_feed_tombstone_position Every change at or below this seq has its Redis tombstones.\n# TYPE ocsp_origin_feed_tombstone_position gauge\nocsp_origin_feed_tombstone_position {}", f.tombstone_position);
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_feed_total Change-feed events.\n# TYPE ocsp_origin_feed_total counter"
    );
    for (event, v) in &f.events {
        let _ = writeln!(out, "ocsp_origin_feed_total{{event=\"{event}\"}} {v}");
    }
    summary(
        out,
        "ocsp_origin_feed_apply_seconds",
        "From the writing statement (the change's changed_at) to every shard's acknowledgement.",
        &f.apply_us,
        1e-6,
    );
}

/// The CDN purgers' part of `/metrics` (nothing without targets).
fn purge_metrics(out: &mut String, purges: &[PurgeSnapshot]) {
    if purges.is_empty() {
        return;
    }
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&PurgeSnapshot) -> String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in purges {
            let _ = writeln!(out, "{name}{{target=\"{}\"}} {}", p.target, value(p));
        }
    };
    family("ocsp_origin_purge_tags_total", "counter", "Cache tags purged at the CDN target.", &|p| {
        p.tags.to_string()
    });
    family(
        "ocsp_origin_purge_queued",
        "gauge",
        "Changes read from the feed and not yet purged at the target.",
        &|p| p.queued.to_string(),
    );
    family(
        "ocsp_origin_purge_oldest_seconds",
        "gauge",
        "Since the commit of the oldest change not yet purged at the target (0: none).",
        &|p| p.oldest_secs.to_string(),
    );
    family(
        "ocsp_origin_purge_position",
        "gauge",
        "Every change at or below this seq is purged at the target (or dead-lettered).",
        &|p| p.position.to_string(),
    );
    family("ocsp_origin_purge_up", "gauge", "1 when the last purge attempt to the target succeeded.", &|p| {
        u8::from(p.up).to_string()
    });
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_purge_total Purge requests acknowledged (sent), attempts failed (retried), changes dead-lettered (never purged).\n# TYPE ocsp_origin_purge_total counter"
    );
    for p in purges {
        for (result, v) in [("sent", p.sent), ("failed", p.failed), ("dead_lettered", p.dead_lettered)] {
            let _ =
                writeln!(out, "ocsp_origin_purge_total{{target=\"{}\",result=\"{result}\"}} {v}", p.target);
        }
    }
    let name = "ocsp_origin_purge_lag_seconds";
    let _ = writeln!(out, "# HELP {name} From a change's commit to the target's acknowledgement of its purge.\n# TYPE {name} summary");
    for p in purges {
        let t = &p.target;
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let v = p.lag_us.value_at_quantile(q) as f64 * 1e-6;
            let _ = writeln!(out, "{name}{{target=\"{t}\",quantile=\"{q}\"}} {v}");
        }
        let sum = p.lag_us.mean() * p.lag_us.len() as f64 * 1e-6;
        let _ = writeln!(
            out,
            "{name}_sum{{target=\"{t}\"}} {sum}\n{name}_count{{target=\"{t}\"}} {}",
            p.lag_us.len()
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
/// path. The admin listener serves these.
pub fn export(src: &NodeSnapshot, path: &str) -> Option<(&'static str, String)> {
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
        "/histograms/sign_wait.hgrm" => ("text/plain", hgrm(&src.sign.queue_wait_us, 1000.0)),
        "/histograms/sign.hgrm" => ("text/plain", hgrm(&src.sign.sign_us, 1000.0)),
        "/histograms/sign_batch.hgrm" => ("text/plain", hgrm(&src.sign.batch_size, 1.0)),
        "/histograms/feed.hgrm" => ("text/plain", hgrm(&src.feed.as_ref()?.apply_us, 1000.0)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_summary_sums_to_zero_not_minus_zero() {
        let mut out = String::new();
        summary(&mut out, "x_seconds", "Help.", &super::super::latency_histogram(), 1e-6);
        assert!(out.contains("\nx_seconds_sum 0\nx_seconds_count 0\n"), "{out}");
    }
}
