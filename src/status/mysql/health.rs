//! Whether the database answers: tripped by a failed batch, cleared by the
//! prober, which tries every side lookups may use until one answers, so an
//! outage costs one timed-out batch and later misses fail at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use crate::config::redact;

/// How often the prober tries an unreachable database. Each try is one
/// connect plus one `SELECT`, each bounded by `timeout_ms`; so after the
/// database returns, lookups resume within about this plus one round trip.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Whether the database answered the last time it was asked. Shared by the
/// shards (which fail fast while it is down), the lookup threads (which trip
/// it) and the prober (which clears it).
///
/// Without it every miss during an outage would queue, take a lookup thread
/// and wait the full `timeout_ms` (a stopped server still accepts TCP
/// connections into its backlog, so even a connect hangs until the read
/// timeout); with it only the first batch pays that, and later misses get
/// `tryLater` at once while one prober thread, not a client, waits on the
/// database.
pub(super) struct Health {
    /// Set by a failed batch, cleared by a successful probe.
    pub(super) down: AtomicBool,
    /// When it went down (for the recovery log line).
    pub(super) since: Mutex<Option<Instant>>,
    /// Wakes the prober.
    pub(super) wake: flume::Sender<()>,
}

impl Health {
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A batch failed with `why`: fail fast from now on and start probing.
    pub(super) fn trip(&self, why: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            if let Ok(mut s) = self.since.lock() {
                *s = Some(Instant::now());
            }
            log::warn!(
                "status database unreachable ({why}); misses answer tryLater (cached responses are still \
                 served) until it answers again"
            );
            let _ = self.wake.try_send(());
        }
    }

    /// A probe succeeded.
    pub(super) fn clear(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            let down_for = self.since.lock().ok().and_then(|mut s| s.take()).map(|t| t.elapsed());
            log::warn!(
                "status database reachable again after {:.1} s",
                down_for.unwrap_or_default().as_secs_f64()
            );
        }
    }
}

/// Whether the database answered, and refused for a reason no wait will fix:
/// access denied (1044, 1045, 1698), unknown database (1049), no such table
/// (1146).
pub(super) fn refused_by_config(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(me) if matches!(me.code, 1044 | 1045 | 1049 | 1146 | 1698))
}

/// One cheap query that needs the whole schema (version 2: the change feed
/// too, without which nothing tells the nodes about changes).
pub(super) const SCHEMA_PROBE: &str = "SELECT 1 FROM ocsp_certificates, ocsp_changes LIMIT 1";

pub(super) fn probe(conn: &mut Conn) -> Result<(), String> {
    conn.query_drop(SCHEMA_PROBE)
        .map_err(|e| format!("{} (has `ocsp-origin db migrate` been run?)", redact(&e.to_string())))
}

/// While the database is down, tries it every [`PROBE_INTERVAL`] with a fresh
/// connection (the replica, then the primary) and clears `health` when one
/// answers. Sleeps while it is up; exits when the status source is dropped.
pub(super) fn prober(sides: Vec<Opts>, health: std::sync::Weak<Health>, woken: flume::Receiver<()>) {
    loop {
        match woken.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        loop {
            let Some(h) = health.upgrade() else { return };
            if !h.is_down() {
                break;
            }
            drop(h);
            let try_one =
                |o: &Opts| Conn::new(o.clone()).map_err(|e| e.to_string()).and_then(|mut c| probe(&mut c));
            let mut ok = Err("no database to probe".to_string());
            for o in &sides {
                ok = try_one(o);
                if ok.is_ok() {
                    break;
                }
            }
            match (ok, health.upgrade()) {
                (_, None) => return,
                (Ok(()), Some(h)) => {
                    h.clear();
                    break;
                }
                (Err(e), Some(_)) => log::debug!("status database probe: {}", redact(&e)),
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
}
