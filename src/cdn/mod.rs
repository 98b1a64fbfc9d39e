//! The CDN: cache tags on every signed 200 (`crate::cache_tags`) and, driven by the
//! change feed, a purge of a certificate's tag at every configured target as
//! soon as every node answers its new status ([`purger`]).
//!
//! ```text
//!  ocsp_changes (outbox) ──seq > position──▶ purger thread, one per [[cdn.target]]
//!     wait: this node applied it (feed position ≥ seq) and feed.bound_ms + settle_ms since commit
//!     batch its certificates' tags (≤ cdn.batch), ≤ requests_per_sec
//!       ├─ xkey: PURGE url, xkey-purge: <tags>          (Varnish, tuning/varnish/)
//!       └─ api:  POST url, body {tags_json}, bearer     (a CDN's purge API)
//!     2xx → position advances (kept in ocsp_cdn_positions)   failure → retry, backoff doubling
//!     max_tries failures → dead-lettered: logged, counted, alert
//! ```
//!
//! **At least once.** A target's position (every change at or below it is
//! purged or dead-lettered) is kept in the database, shared by the nodes
//! (raised, never lowered), and read at start: a change committed while
//! every node was down is purged by the first to start. Changes are read
//! with the feed's cursor, which never skips one committed late. If the
//! outbox no longer holds the changes after the position (it was pruned
//! while every purger was away), the purger cannot know what changed and
//! purges every issuer's tag: the CDN then refills from the origin, which
//! is the load this server is built for, rather than serve a stale "good".
//!
//! **Why wait for every node.** Varnish may refill from any node: a purge
//! sent while one node still holds the old answer would be refilled with
//! it, for days. Every node guarantees the new status within
//! `feed.bound_ms` of the commit (the feed's guarantee), so the purge goes
//! out after that, plus `settle_ms` for a fetch the CDN began just before.

pub mod http;
pub mod position;
pub mod purger;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::feed::FeedStats;

/// One target's figures, for `/metrics`.
pub struct PurgeStats {
    /// The target's name.
    pub target: String,
    /// Purge requests the target acknowledged.
    pub sent: AtomicU64,
    /// Attempts that failed (each is retried).
    pub failed: AtomicU64,
    /// Changes given up after `cdn.max_tries`.
    pub dead_lettered: AtomicU64,
    /// Tags purged.
    pub tags: AtomicU64,
    /// Changes read and not yet purged.
    pub queued: AtomicU64,
    /// Commit time (Unix ms) of the oldest change not yet purged (0: none).
    pub oldest_ms: AtomicU64,
    /// Every change at or below this seq is purged (or dead-lettered).
    pub position: AtomicU64,
    /// Whether the last attempt succeeded (1) or failed (0).
    pub up: AtomicU64,
    /// Commit to the target's acknowledgement, µs.
    pub lag_us: Mutex<hdrhistogram::Histogram<u64>>,
}

impl PurgeStats {
    fn new(target: &str) -> PurgeStats {
        PurgeStats {
            target: target.to_string(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            tags: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(0),
            position: AtomicU64::new(0),
            up: AtomicU64::new(1),
            lag_us: Mutex::new(crate::metrics::latency_histogram()),
        }
    }

    /// Seconds since the commit of the oldest change not yet purged.
    pub fn oldest_secs(&self) -> f64 {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            t => crate::clock::unix_now_ms().saturating_sub(t) as f64 / 1000.0,
        }
    }
}

/// The running purgers of a node; they stop when it is dropped.
pub struct Purgers {
    /// One per target.
    pub stats: Vec<Arc<PurgeStats>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Purgers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts a purger per `[[cdn.target]]` (none without targets, or without
/// the feed they follow).
pub fn start(config: &Config, feed: Option<Arc<FeedStats>>) -> Result<Option<Purgers>, String> {
    let (Some(cdn), Some(m), Some(feed)) = (&config.cdn, &config.mysql, feed) else { return Ok(None) };
    if cdn.targets.is_empty() {
        return Ok(None);
    }
    let opts: mysql::Opts = mysql::OptsBuilder::from_opts(crate::status::mysql::opts(m, &m.url, 1)?)
        .init(vec!["SET time_zone = '+00:00'"])
        .into();
    let stop = Arc::new(AtomicBool::new(false));
    let format = crate::cache_tags::TagFormat::new(cdn);
    let issuers: Vec<String> = config.issuers.iter().map(|i| i.name.clone()).collect();
    let mut stats = Vec::new();
    for t in &cdn.targets {
        let s = Arc::new(PurgeStats::new(&t.name));
        let send = purger::Sender::new(t, format.clone())?;
        purger::start(purger::Setup {
            send,
            cdn: cdn.clone(),
            feed_config: config.feed.clone(),
            opts: opts.clone(),
            feed: feed.clone(),
            issuers: issuers.clone(),
            stats: s.clone(),
            stop: stop.clone(),
        })
        .map_err(|e| format!("cannot start the purger of {}: {e}", t.name))?;
        stats.push(s);
    }
    Ok(Some(Purgers { stats, stop }))
}
