//! Metrics for operators and capacity planning, served on a separate admin
//! listener (`[admin] listen`, loopback by convention) so they never compete
//! with OCSP traffic on the shards.
//!
//! Shards count and record into plain shard-local cells (no atomics on the hot
//! path) and publish a snapshot once a second into a mutex only the admin
//! thread reads. The admin thread merges the shards' snapshots with the signer
//! pool's histograms and answers:
//!
//! - `GET /metrics` — Prometheus text format (counters by shard; latency
//!   summaries with p50/p90/p99/p99.9 merged over shards);
//! - `GET /histograms/{request,sign_wait,sign,sign_batch}.hgrm` — HdrHistogram's
//!   percentile-distribution text, readable by HdrHistogram's own plotters.
//!
//! Snapshots are up to a second old; counters are monotonic.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::signer::{SignPool, Signer};

/// A new latency histogram in microseconds (1 µs … 60 s, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// What one shard publishes.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    /// Named counters (`requests_ok`, `cache_hits`, …).
    pub counters: Vec<(&'static str, u64)>,
    /// Responses held in L1.
    pub l1_entries: u64,
    /// Request service time on the shard (head parsed → answer written to the
    /// buffer), µs.
    pub request_us: Histogram<u64>,
}

impl Default for ShardSnapshot {
    fn default() -> Self {
        ShardSnapshot { counters: Vec::new(), l1_entries: 0, request_us: latency_histogram() }
    }
}

/// Where shards publish; shared with the admin thread.
pub type Board = Arc<Vec<Mutex<ShardSnapshot>>>;

/// A board for `shards` shards.
pub fn board(shards: usize) -> Board {
    Arc::new((0..shards).map(|_| Mutex::new(ShardSnapshot::default())).collect())
}

/// Everything the admin thread reads.
pub struct Sources {
    /// Shard snapshots.
    pub board: Board,
    /// The signer pool.
    pub pool: SignPool,
    /// Every issuer's signer (fault counters).
    pub signers: Vec<(String, Arc<dyn Signer>)>,
}

fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>, scale: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", h.value_at_quantile(q) as f64 * scale);
    }
    let sum: f64 = h.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum();
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", sum * scale, h.len());
}

/// Renders `/metrics`.
pub fn prometheus(src: &Sources) -> String {
    let mut out = String::new();
    let mut merged = latency_histogram();
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
        let _ = merged.add(&s.request_us);
    }
    let _ = writeln!(out, "# HELP ocsp_origin_l1_entries Responses held in each shard's L1.\n# TYPE ocsp_origin_l1_entries gauge");
    out.push_str(&l1);
    summary(
        &mut out,
        "ocsp_origin_request_seconds",
        "Service time of a request on its shard.",
        &merged,
        1e-6,
    );

    let st = src.pool.stats();
    use std::sync::atomic::Ordering::Relaxed;
    let _ = writeln!(
        out,
        "# HELP ocsp_origin_sign_total Signing jobs by outcome.\n# TYPE ocsp_origin_sign_total counter"
    );
    for (event, v) in [
        ("signed", st.signed.load(Relaxed)),
        ("shed", st.shed.load(Relaxed)),
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
    for (issuer, s) in &src.signers {
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

fn answer(src: &Sources, path: &str) -> (u16, &'static str, String) {
    let merged_requests = || {
        let mut m = latency_histogram();
        for slot in src.board.iter() {
            if let Ok(s) = slot.lock() {
                let _ = m.add(&s.request_us);
            }
        }
        m
    };
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", prometheus(src)),
        "/histograms/request.hgrm" => (200, "text/plain", hgrm(&merged_requests(), 1000.0)),
        "/histograms/sign_wait.hgrm" => (200, "text/plain", hgrm(&src.pool.snapshot().queue_wait_us, 1000.0)),
        "/histograms/sign.hgrm" => (200, "text/plain", hgrm(&src.pool.snapshot().sign_us, 1000.0)),
        "/histograms/sign_batch.hgrm" => (200, "text/plain", hgrm(&src.pool.snapshot().batch_size, 1.0)),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// Binds the admin listener and serves it on its own thread.
pub fn serve_admin(addr: SocketAddr, src: Sources) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let mut n = 0;
            // Read the head (bounded): only the request line matters.
            while n < buf.len() {
                match c.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            let mut parts = line.split_whitespace();
            let (code, ctype, body) = match (parts.next(), parts.next()) {
                (Some("GET"), Some(path)) => answer(&src, path),
                _ => (405, "text/plain", "GET only\n".into()),
            };
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Method Not Allowed",
            };
            let _ = write!(
                c,
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(bound)
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
}
