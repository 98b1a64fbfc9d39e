//! Hits first: a shard refuses new misses while it is behind on its own work.
//!
//! A miss costs its shard several times a hit (status lookup, encoding, the
//! signature's hand-off and, where signers share the shard's cores, the
//! signature itself). When a cache drop sends more misses than a shard can
//! absorb, every request on it, hits included, queues behind them: the
//! signer's queue limits (`signing.queue_depth`, `max_queue_wait_ms`) do not
//! see that, because the signer may be keeping up while the shard's CPU is
//! not.
//!
//! So each shard measures its **scheduling lag**: a probe task asks to be
//! woken every [`PROBE`] and records how late it ran (an EWMA over about 16
//! probes). The lag is how long a ready task waits for the shard right now —
//! what a hit waits before it is answered. While the lag is above
//! `cache.max_shard_lag_ms`, a request that would start a new fetch gets
//! `tryLater` at once (before any Redis, status or signing work), and a stale
//! hit is served without starting its refresh; hits, coalesced misses and
//! re-checks of entries past their L1 max age go on as usual. Shedding cuts
//! the miss work, the lag falls, misses are admitted again: the shard settles
//! where its CPU serves every hit and the misses that fit beside them.
//!
//! The probe costs one timer wake-up per [`PROBE`] per shard (about a
//! microsecond each).

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// How often the probe asks to be woken.
pub const PROBE: Duration = Duration::from_millis(2);

/// A shard's scheduling lag and the bound past which misses are shed.
#[derive(Debug)]
pub struct Admission {
    /// EWMA of the probe's lateness, µs.
    lag_us: Cell<u64>,
    /// Shed new misses above this lag, µs; 0 = never.
    max_lag_us: u64,
}

impl Admission {
    /// Creates the admission state and starts its probe on the current
    /// glommio executor; the probe stops when the returned `Rc` is dropped.
    /// With `max_lag` zero nothing is started and nothing is ever shed.
    pub fn start(max_lag: Duration) -> Rc<Admission> {
        let a = Rc::new(Admission::new(max_lag));
        if a.max_lag_us > 0 {
            glommio::spawn_local(probe(Rc::downgrade(&a))).detach();
        }
        a
    }

    pub(crate) fn new(max_lag: Duration) -> Admission {
        Admission { lag_us: Cell::new(0), max_lag_us: max_lag.as_micros() as u64 }
    }

    /// Records one probe's lateness.
    pub(crate) fn observe(&self, late: Duration) {
        let late = late.as_micros().min(u64::MAX as u128) as u64;
        // EWMA with weight 1/8: about 16 ms of memory at a 2 ms probe.
        let lag = self.lag_us.get();
        self.lag_us.set(lag - lag / 8 + late / 8);
    }

    /// The current lag estimate, µs.
    pub fn lag_us(&self) -> u64 {
        self.lag_us.get()
    }

    /// Whether new work for a miss (a fetch, or a stale entry's refresh) may
    /// start now.
    pub fn admit_miss(&self) -> bool {
        self.max_lag_us == 0 || self.lag_us.get() <= self.max_lag_us
    }
}

async fn probe(a: Weak<Admission>) {
    loop {
        let asked = Instant::now();
        glommio::timer::sleep(PROBE).await;
        let Some(a) = a.upgrade() else { return };
        a.observe(asked.elapsed().saturating_sub(PROBE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_only_above_the_bound_and_recovers() {
        let a = Admission::new(Duration::from_millis(5));
        assert!(a.admit_miss());
        for _ in 0..40 {
            a.observe(Duration::from_millis(20));
        }
        assert!(a.lag_us() > 5_000);
        assert!(!a.admit_miss());
        for _ in 0..40 {
            a.observe(Duration::ZERO);
        }
        assert!(a.admit_miss(), "lag back to {} µs", a.lag_us());
    }

    #[test]
    fn zero_bound_never_sheds() {
        let a = Admission::new(Duration::ZERO);
        a.observe(Duration::from_secs(1));
        assert!(a.admit_miss());
    }

    #[test]
    fn a_busy_shard_is_measured_as_lagging() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap().run(async {
            let a = Admission::start(Duration::from_millis(5));
            glommio::timer::sleep(Duration::from_millis(40)).await;
            let idle = a.lag_us();
            // Hog the shard in 20 ms slices, yielding between them, as a
            // queue of expensive requests would.
            for _ in 0..20 {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(20) {}
                futures_lite::future::yield_now().await;
            }
            assert!(a.lag_us() > idle + 5_000, "idle lag {idle} µs, busy {} µs", a.lag_us());
            assert!(!a.admit_miss(), "busy: lag {} µs", a.lag_us());
        });
    }
}
