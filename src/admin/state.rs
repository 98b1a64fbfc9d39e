//! What the admin listener reads and acts on: the node's long-lived parts
//! (the shards' board, the signer pool, the control plane, the change feed's
//! figures, the floors) and a [`View`] of the running generation, which a
//! reload replaces. [`AdminState::snapshot`] turns them into the plain values
//! [`crate::metrics`] renders.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::cdn::PurgeStats;
use crate::config::Config;
use crate::control::Control;
use crate::feed::FeedStats;
use crate::metrics::{Board, FeedSnapshot, NodeSnapshot, PurgeSnapshot, SignSnapshot, StatusSnapshot};
use crate::ocsp::issuer::Issuers;
use crate::signer::{SignPool, Signer};
use crate::source::floors::Floors;
use crate::status::StatusSource;

/// Everything the admin listener reads and acts on.
pub struct AdminState {
    /// Shard snapshots.
    pub board: Board,
    /// The signer pool.
    pub pool: SignPool,
    /// The shards' control plane (reload, invalidation).
    pub control: Arc<Control>,
    /// What the running generation is made of; a reload replaces it.
    pub view: Arc<Mutex<Arc<View>>>,
    /// The change feed's figures (with `[mysql]`).
    pub feed: Option<Arc<FeedStats>>,
    /// The node's revision floors.
    pub floors: Arc<Floors>,
    /// The CDN purgers' figures, one per target.
    pub purges: Vec<Arc<PurgeStats>>,
}

/// The parts of the running generation the admin listener reads.
pub struct View {
    /// The config (the admin token, `[mysql]` and `[redis]` for revocations,
    /// issuer names).
    pub config: Config,
    /// Every issuer's signer (fault counters).
    pub signers: Vec<(String, Arc<dyn Signer>)>,
    /// The status source (whether it is up).
    pub status: Arc<dyn StatusSource>,
    /// Per issuer with a delegated responder: its certificate's notAfter.
    pub responder_not_after: Vec<(String, u64)>,
}

impl View {
    /// The view of a generation: its config, its issuers' signers and its
    /// status source.
    pub fn new(config: &Config, issuers: &Issuers, status: &Arc<dyn StatusSource>) -> View {
        let signers = issuers.iter().map(|(_, i)| (i.name.clone(), i.responder.signer.clone())).collect();
        let responder_not_after =
            issuers.iter().filter_map(|(_, i)| i.responder_not_after.map(|t| (i.name.clone(), t))).collect();
        View { config: config.clone(), signers, status: status.clone(), responder_not_after }
    }
}

impl AdminState {
    /// The running generation's view.
    pub fn view(&self) -> Arc<View> {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The node's figures now, for `/metrics` and the histogram exports.
    pub fn snapshot(&self) -> NodeSnapshot {
        // Poisoned or not, every shard keeps its index (its `shard` label).
        let shards = self
            .board
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            })
            .collect();
        let st = self.pool.stats();
        let h = self.pool.snapshot();
        let sign = SignSnapshot {
            events: vec![
                ("signed", st.signed.load(Relaxed)),
                ("shed", st.shed.load(Relaxed)),
                ("shed_slow", st.shed_slow.load(Relaxed)),
                ("abandoned", st.abandoned.load(Relaxed)),
                ("failed", st.failed.load(Relaxed)),
            ],
            queued: self.pool.queued(),
            queue_wait_us: h.queue_wait_us,
            sign_us: h.sign_us,
            batch_size: h.batch_size,
        };
        let view = self.view();
        let signer_faults = view
            .signers
            .iter()
            .map(|(name, s)| {
                let c = s.counters();
                (name.clone(), c.retries, c.session_reopens)
            })
            .collect();
        let status = StatusSnapshot {
            kind: view.status.kind(),
            up: view.status.is_up(),
            gauges: view.status.gauges(),
        };
        let feed = self.feed.as_ref().map(|f| FeedSnapshot {
            silence_ms: f.silence_ms(),
            up: f.is_up(),
            position: f.position.load(Relaxed),
            missing: f.missing.load(Relaxed),
            tombstone_position: f.tombstone_position.load(Relaxed),
            events: vec![
                ("applied", f.applied.load(Relaxed)),
                ("read_errors", f.read_errors.load(Relaxed)),
                ("unacknowledged", f.unacknowledged.load(Relaxed)),
                ("lost", f.lost.load(Relaxed)),
                ("pruned", f.pruned.load(Relaxed)),
                ("tombstones_written", f.tombstones_written.load(Relaxed)),
                ("tombstone_errors", f.tombstone_errors.load(Relaxed)),
            ],
            apply_us: match f.apply_us.lock() {
                Ok(h) => h.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
        });
        let now = crate::clock::unix_now() as i64;
        let responder_cert_expiry = view
            .responder_not_after
            .iter()
            .map(|(name, until)| (name.clone(), *until as i64 - now))
            .collect();
        NodeSnapshot {
            shards,
            sign,
            signer_faults,
            responder_cert_expiry,
            status,
            floors: self.floors.len(),
            trust_from: self.floors.trust_from(),
            feed,
            purges: self.purges.iter().map(|p| purge_snapshot(p)).collect(),
        }
    }
}

fn purge_snapshot(p: &PurgeStats) -> PurgeSnapshot {
    PurgeSnapshot {
        target: p.target.clone(),
        sent: p.sent.load(Relaxed),
        failed: p.failed.load(Relaxed),
        dead_lettered: p.dead_lettered.load(Relaxed),
        tags: p.tags.load(Relaxed),
        queued: p.queued.load(Relaxed),
        oldest_secs: p.oldest_secs(),
        position: p.position.load(Relaxed),
        up: p.up.load(Relaxed) == 1,
        lag_us: match p.lag_us.lock() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        },
    }
}
