//! One purge target's loop, on a thread of its own: read the outbox, wait
//! until every node serves each change, purge its certificate's tag, and
//! only then move the position (see the module docs of [`crate::cdn`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::Conn;

use super::{position, PurgeStats};
use crate::cache_tags::TagFormat;
use crate::clock::{unix_now, unix_now_ms};
use crate::config::{redact, CdnConfig, FeedConfig, TargetConfig, TargetKind};
use crate::feed::outbox::{self, Cursor, Op};
use crate::feed::FeedStats;

/// Longest wait between two attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often the kept position is written while it moves.
const STORE_EVERY: Duration = Duration::from_secs(1);

/// How a purge request is made for one target.
pub struct Sender {
    name: String,
    kind: TargetKind,
    method: String,
    endpoint: super::http::Endpoint,
    header: String,
    body: String,
    content_type: String,
    token: Option<String>,
    format: TagFormat,
}

impl Sender {
    /// For `t`, reading its token file.
    pub fn new(t: &TargetConfig, format: TagFormat) -> Result<Sender, String> {
        let token = match &t.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cdn.target {}: token_file {}: {e}", t.name, p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Sender {
            name: t.name.clone(),
            kind: t.kind,
            method: t.method().to_string(),
            endpoint: super::http::Endpoint::new(
                &t.url,
                t.ca_file.as_deref(),
                Duration::from_millis(t.timeout_ms),
            )?,
            header: t.header.clone().unwrap_or_else(|| "xkey-purge".into()),
            body: t.body.clone().unwrap_or_else(|| "{tags_json}".into()),
            content_type: t.content_type.clone().unwrap_or_else(|| "application/json".into()),
            token,
            format,
        })
    }

    /// The request body of an api target for `tags`.
    fn body_for(&self, tags: &[String]) -> String {
        let json = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
        self.body.replace("{tags_json}", &json).replace("{tags}", &self.format.join(tags))
    }

    /// Purges `tags`; a 2xx answer is success.
    pub fn purge(&self, tags: &[String]) -> Result<(), String> {
        let joined = self.format.join(tags);
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        let body = match self.kind {
            TargetKind::Xkey => {
                headers.push((&self.header, &joined));
                String::new()
            }
            TargetKind::Api => {
                headers.push(("Content-Type", &self.content_type));
                self.body_for(tags)
            }
        };
        let (code, answer) = self.endpoint.send(&self.method, &headers, body.as_bytes())?;
        if (200..300).contains(&code) {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).trim().to_string();
            Err(format!("{} answered {code}: {text}", self.name))
        }
    }
}

/// Everything a purger needs.
pub struct Setup {
    /// How to reach its target.
    pub send: Sender,
    /// `[cdn]`.
    pub cdn: CdnConfig,
    /// `[feed]` (its bound and timings).
    pub feed_config: FeedConfig,
    /// The primary.
    pub opts: mysql::Opts,
    /// This node's feed (what it has applied).
    pub feed: Arc<FeedStats>,
    /// Every issuer's name (purged whole when changes were lost).
    pub issuers: Vec<String>,
    /// Its figures.
    pub stats: Arc<PurgeStats>,
    /// Set when the server stops.
    pub stop: Arc<AtomicBool>,
}

/// A change read and not yet purged.
struct Pending {
    seq: u64,
    tag: String,
    /// Commit time, Unix ms (the outbox's `changed_at`).
    commit_ms: u64,
    tries: u32,
    /// In the request being made.
    picked: bool,
}

/// Starts the purger's thread.
pub fn start(s: Setup) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("purge-{}", s.stats.target)).spawn(move || run(s))?;
    Ok(())
}

struct State {
    db: Option<Conn>,
    cursor: Option<Cursor>,
    pending: Vec<Pending>,
    failures: u32,
    next_try: Instant,
    last_sent: Instant,
    stored: u64,
    last_store: Instant,
}

fn run(s: Setup) {
    let mut st = State {
        db: None,
        cursor: None,
        pending: Vec::new(),
        failures: 0,
        next_try: Instant::now(),
        last_sent: Instant::now() - Duration::from_secs(1),
        stored: 0,
        last_store: Instant::now(),
    };
    let mut db_failures = 0u32;
    while !s.stop.load(Ordering::Relaxed) {
        match step(&s, &mut st) {
            Ok(busy) => {
                db_failures = 0;
                let idle = Duration::from_millis(s.feed_config.poll_interval_ms);
                std::thread::sleep(if busy {
                    Duration::from_millis(5)
                } else if st.pending.is_empty() {
                    idle
                } else {
                    Duration::from_millis(20)
                });
            }
            Err(e) => {
                db_failures += 1;
                if db_failures == 1 || db_failures % 100 == 0 {
                    log::warn!("purger {}: {e}; retrying", s.stats.target);
                }
                st.db = None;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn conn<'a>(db: &'a mut Option<Conn>, opts: &mysql::Opts) -> Result<&'a mut Conn, String> {
    match db {
        Some(c) => Ok(c),
        None => Ok(db.insert(Conn::new(opts.clone()).map_err(|e| redact(&e.to_string()))?)),
    }
}

/// Where to start: the kept position, or (none kept) the fence window's
/// start. A kept position the outbox no longer follows means lost changes.
fn start_at(s: &Setup, c: &mut Conn) -> Result<(Cursor, bool), String> {
    let sql = |e: mysql::Error| redact(&e.to_string());
    let kept = match position::load(c, &s.stats.target) {
        Ok(p) => p,
        Err(e) => {
            log::warn!(
                "purger {}: cannot read its kept position ({}); run `ocsp-origin db migrate`. Starting at the \
                 fence window",
                s.stats.target,
                sql(e)
            );
            None
        }
    };
    let oldest = outbox::min_seq(c).map_err(sql)?;
    Ok(match kept {
        Some(p) if oldest == 0 || p + 1 >= oldest => (Cursor::new(p), false),
        Some(p) => {
            log::error!(
                "purger {}: the outbox no longer holds the changes after its position {p} (oldest kept: {oldest}); \
                 purging every issuer's tag",
                s.stats.target
            );
            (Cursor::new(outbox::max_seq(c).map_err(sql)?), true)
        }
        None => {
            (Cursor::new(outbox::position_before(c, s.feed_config.fence_window_secs).map_err(sql)?), false)
        }
    })
}

/// Tags for "we cannot know what changed": every issuer's.
fn everything(s: &Setup) -> Vec<Pending> {
    let now = unix_now_ms();
    s.issuers
        .iter()
        .map(|i| Pending { seq: 0, tag: s.send.format.issuer(i), commit_ms: now, tries: 0, picked: false })
        .collect()
}

/// One round: read, purge what is due, keep the position. Returns whether
/// it did something (then the next round comes at once). Database errors
/// are returned; purge failures are handled here.
fn step(s: &Setup, st: &mut State) -> Result<bool, String> {
    let c = conn(&mut st.db, &s.opts)?;
    if st.cursor.is_none() {
        let (cursor, lost) = start_at(s, c)?;
        st.stored = cursor.low_water();
        s.stats.position.store(st.stored, Ordering::Relaxed);
        if lost {
            st.pending.extend(everything(s));
        }
        st.cursor = Some(cursor);
    }
    let cursor = st.cursor.as_mut().expect("set above");
    if st.pending.len() < s.cdn.queue {
        let limit = (s.cdn.queue - st.pending.len()).min(s.feed_config.batch);
        let read = outbox::read(c, cursor, limit).map_err(|e| redact(&e.to_string()))?;
        let now = unix_now();
        for ch in read.unseen(cursor, now) {
            // An insert has no older copy anywhere to purge (failures are
            // never cached), and a replaced row's delete is purged.
            if ch.op == Op::Insert {
                continue;
            }
            st.pending.push(Pending {
                seq: ch.seq,
                tag: s.send.format.cert(&ch.issuer, ch.serial.magnitude()),
                commit_ms: ch.changed_at_us / 1000,
                tries: 0,
                picked: false,
            });
        }
        cursor.expire(now.saturating_sub(s.feed_config.hole_timeout_secs));
        if cursor.take_given_up() > 0 {
            st.pending.extend(everything(s));
        }
    }
    let busy = purge_due(s, st);
    keep_position(s, st);
    Ok(busy)
}

/// Sends one request for the due changes, if the rate and backoff allow.
fn purge_due(s: &Setup, st: &mut State) -> bool {
    let now = Instant::now();
    let min_gap = Duration::from_secs(1) / s.cdn.requests_per_sec;
    if st.pending.is_empty() || now < st.next_try || now < st.last_sent + min_gap {
        return false;
    }
    let applied = s.feed.position.load(Ordering::Relaxed);
    let settled = unix_now_ms().saturating_sub(s.feed_config.bound_ms + s.cdn.settle_ms);
    let mut tags: Vec<String> = Vec::new();
    for p in st.pending.iter_mut() {
        if p.seq > applied || p.commit_ms > settled {
            continue;
        }
        if !tags.contains(&p.tag) {
            if tags.len() >= s.cdn.batch {
                continue;
            }
            tags.push(p.tag.clone());
        }
        p.picked = true;
    }
    if tags.is_empty() {
        return false;
    }
    st.last_sent = now;
    let result = s.send.purge(&tags);
    let stats = &s.stats;
    match result {
        Ok(()) => {
            st.failures = 0;
            stats.up.store(1, Ordering::Relaxed);
            stats.sent.fetch_add(1, Ordering::Relaxed);
            stats.tags.fetch_add(tags.len() as u64, Ordering::Relaxed);
            let done_ms = unix_now_ms();
            if let Ok(mut h) = stats.lag_us.lock() {
                for p in st.pending.iter().filter(|p| p.picked) {
                    let _ = h.record(done_ms.saturating_sub(p.commit_ms).max(1) * 1000);
                }
            }
            st.pending.retain(|p| !p.picked);
        }
        Err(e) => {
            st.failures += 1;
            stats.up.store(0, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
            let backoff = Duration::from_millis(s.cdn.backoff_ms)
                .saturating_mul(1 << (st.failures - 1).min(16))
                .min(MAX_BACKOFF);
            st.next_try = Instant::now() + backoff;
            if st.failures == 1 || st.failures % 10 == 0 {
                log::warn!(
                    "purger {}: purge of {} tag(s) failed ({e}); attempt {}, retrying in {backoff:?}",
                    stats.target,
                    tags.len(),
                    st.failures
                );
            }
            for p in st.pending.iter_mut().filter(|p| p.picked) {
                p.picked = false;
                p.tries += 1;
            }
            let gone: Vec<String> =
                st.pending.iter().filter(|p| p.tries >= s.cdn.max_tries).map(|p| p.tag.clone()).collect();
            if !gone.is_empty() {
                stats.dead_lettered.fetch_add(gone.len() as u64, Ordering::Relaxed);
                log::error!(
                    "purger {}: DEAD-LETTERED {} change(s) after {} failed attempts ({e}); the CDN may serve their \
                     old answers until max-age runs out; purge by hand: {}",
                    stats.target,
                    gone.len(),
                    s.cdn.max_tries,
                    gone.join(" ")
                );
                st.pending.retain(|p| p.tries < s.cdn.max_tries);
            }
        }
    }
    true
}

/// Publishes the figures and writes the position when it moved.
fn keep_position(s: &Setup, st: &mut State) {
    let Some(cursor) = &st.cursor else { return };
    let first_pending = st.pending.iter().filter(|p| p.seq > 0).map(|p| p.seq).min();
    let lost_pending = st.pending.iter().any(|p| p.seq == 0);
    let mut low = cursor.low_water();
    if let Some(first) = first_pending {
        low = low.min(first - 1);
    }
    if lost_pending {
        low = low.min(st.stored);
    }
    let stats = &s.stats;
    stats.queued.store(st.pending.len() as u64, Ordering::Relaxed);
    stats.oldest_ms.store(st.pending.iter().map(|p| p.commit_ms).min().unwrap_or(0), Ordering::Relaxed);
    stats.position.store(low, Ordering::Relaxed);
    if low > st.stored && (st.pending.is_empty() || st.last_store.elapsed() >= STORE_EVERY) {
        if let Some(c) = st.db.as_mut() {
            match position::store(c, &stats.target, low) {
                Ok(()) => st.stored = low,
                Err(e) => log::debug!(
                    "purger {}: cannot keep its position: {}",
                    stats.target,
                    redact(&e.to_string())
                ),
            }
        }
        st.last_store = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bodies_fill_in_the_tags() {
        let t = TargetConfig {
            name: "f".into(),
            kind: TargetKind::Api,
            url: "http://127.0.0.1:1/purge".into(),
            method: None,
            header: None,
            body: Some("{\"surrogate_keys\": {tags_json}, \"text\": \"{tags}\"}".into()),
            content_type: None,
            token_file: None,
            ca_file: None,
            timeout_ms: 100,
        };
        let cdn = CdnConfig::default();
        let s = Sender::new(&t, TagFormat::new(&cdn)).unwrap();
        assert_eq!(
            s.body_for(&["a".into(), "b\"".into()]),
            "{\"surrogate_keys\": [\"a\",\"b\\\"\"], \"text\": \"a b\"\"}"
        );
        assert!(s.purge(&["a".into()]).unwrap_err().contains("127.0.0.1:1"));
    }
}
