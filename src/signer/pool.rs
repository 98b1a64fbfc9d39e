//! The signer pool: a bounded multi-producer queue drained in batches by one OS
//! thread per signing context.
//!
//! Shards never sign. They [`SignPool::submit`] a job (non-blocking; a full
//! queue is an immediate [`SignError::QueueFull`], a slow one [`SignError::Shed`]) and await a oneshot answer,
//! which wakes the shard's executor from the signer thread. Each signer thread
//! blocks for one job, then drains up to `batch` more without blocking and signs
//! them back to back: under load one wake-up serves many jobs, and with many
//! threads every signing context stays busy.
//!
//! A job whose requester has gone away (client closed, timeout) before its turn
//! is dropped unsigned, so abandoned work does not consume signing capacity.
//!
//! Each thread records its own HdrHistograms (queue wait, batch size, sign time)
//! behind an uncontended mutex; [`SignPool::snapshot`] merges them on demand.
//!
//! Sizing (Boulder's rule, restated): the pool can sustain about
//! `threads × signatures/s per session`; give each node `threads ≈ HSM
//! concurrent-session capacity / number of responder nodes`, and keep
//! `queue_depth ≈ sustained rate × the wait you accept` so a full queue means
//! "answer tryLater now" rather than "answer late".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use futures::channel::oneshot;
use hdrhistogram::Histogram;

use super::{SignError, Signer};

/// Sizing of the signer pool.
#[derive(Clone, Debug)]
pub struct SignPoolConfig {
    /// Signer threads (one signing context each).
    pub threads: usize,
    /// Jobs that may wait in the queue; past it, submits fail at once.
    pub queue_depth: usize,
    /// Most jobs a thread takes per wake-up.
    pub batch: usize,
    /// Shed new jobs while jobs are waiting and recent jobs waited longer than
    /// this (µs; 0 = only `queue_depth` sheds). A count-based bound alone
    /// lets a slow signer build a long queue whose every job is answered
    /// late, holding the client's connection (and the hits queued behind it
    /// on that connection); bounding the wait instead answers `tryLater`
    /// within about this long whatever the signer's speed (CoDel's idea:
    /// control the sojourn time, not the length). Signers that hang (a stuck
    /// HSM) are caught too: jobs waiting and none started for
    /// [`STALL_FACTOR`] times this long also sheds.
    pub max_queue_wait_us: u64,
}

/// The answer to one job: the signature value, or why there is none.
pub type SignResult = Result<Vec<u8>, SignError>;

struct SignJob {
    signer: Arc<dyn Signer>,
    tbs: Vec<u8>,
    reply: oneshot::Sender<SignResult>,
    enqueued: Instant,
}

/// Counters shared by all threads (relaxed atomics: statistics, not control).
#[derive(Default, Debug)]
pub struct SignStats {
    /// Signatures made.
    pub signed: AtomicU64,
    /// Jobs refused because the queue was full.
    pub shed: AtomicU64,
    /// Jobs dropped because nobody waited for them any more.
    pub abandoned: AtomicU64,
    /// Signatures that failed.
    pub failed: AtomicU64,
    /// Sum of queue wait in microseconds (for a mean).
    pub queue_wait_us: AtomicU64,
    /// Moving average (1/8 weight) of the queue wait of recently dequeued
    /// jobs, µs: the wait a new job can expect.
    pub recent_wait_us: AtomicU64,
    /// Of `shed`, jobs refused because jobs wait too long: `recent_wait_us`,
    /// or no signer has started a job for that long while jobs wait (stuck
    /// signers: see [`Progress`]).
    pub shed_slow: AtomicU64,
}

/// Per-thread distributions.
#[derive(Clone, Debug)]
pub struct SignHistograms {
    /// Time from submit to the start of signing, µs.
    pub queue_wait_us: Histogram<u64>,
    /// Jobs taken per wake-up.
    pub batch_size: Histogram<u64>,
    /// Time to sign one job, µs.
    pub sign_us: Histogram<u64>,
}

impl SignHistograms {
    fn new() -> SignHistograms {
        // Constant, valid bounds (1 ≤ low, high ≥ 2·low, 3 significant digits).
        let h = |max| Histogram::new_with_bounds(1, max, 3).expect("constant histogram bounds are valid");
        SignHistograms { queue_wait_us: h(60_000_000), batch_size: h(1 << 20), sign_us: h(60_000_000) }
    }

    fn add(&mut self, other: &SignHistograms) {
        let _ = self.queue_wait_us.add(&other.queue_wait_us);
        let _ = self.batch_size.add(&other.batch_size);
        let _ = self.sign_us.add(&other.sign_us);
    }
}

/// Handle to the pool; cheap to clone, one per shard.
#[derive(Clone)]
pub struct SignPool {
    tx: flume::Sender<SignJob>,
    stats: Arc<SignStats>,
    hists: Arc<Vec<Arc<Mutex<SignHistograms>>>>,
    max_wait_us: u64,
    progress: Arc<Progress>,
}

/// No job started for this many times `max_queue_wait` while jobs wait means
/// the signers hang. More than one: a signer thread the kernel did not
/// schedule for a few tens of milliseconds on a busy machine is not a hung
/// HSM (the wait estimate covers signers that are merely slow).
pub const STALL_FACTOR: u64 = 4;

/// When the signers last showed progress: a signer thread starting a job, or
/// a submit finding the queue empty.
///
/// `recent_wait_us` learns from jobs as signer threads take them, so signers
/// that hang (a stuck HSM) teach it nothing: it keeps the short waits from
/// before the hang and every new miss would be queued and wait its whole
/// `signing.timeout_ms` for `tryLater`. This covers that case. If the queue
/// is not empty and nothing has progressed for a while, the queue has not
/// been empty since (a submit to an empty queue counts as progress) and no
/// job started meanwhile, so the job at its head has waited at least that
/// long. Past [`STALL_FACTOR`] × `max_queue_wait` a new job is shed at once,
/// like one behind slow signers.
struct Progress {
    epoch: Instant,
    /// µs since `epoch`.
    last_us: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress { epoch: Instant::now(), last_us: AtomicU64::new(0) }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn touch(&self) {
        self.last_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// µs since the last progress.
    fn stalled_us(&self) -> u64 {
        self.now_us().saturating_sub(self.last_us.load(Ordering::Relaxed))
    }
}

impl SignPool {
    /// Starts the signer threads. They exit when every handle is dropped.
    pub fn start(cfg: &SignPoolConfig) -> std::io::Result<(SignPool, Vec<JoinHandle<()>>)> {
        let (tx, rx) = flume::bounded::<SignJob>(cfg.queue_depth.max(1));
        let stats = Arc::new(SignStats::default());
        let progress = Arc::new(Progress::new());
        let mut handles = Vec::new();
        let mut hists = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let rx = rx.clone();
            let stats = stats.clone();
            let batch = cfg.batch.max(1);
            let h = Arc::new(Mutex::new(SignHistograms::new()));
            hists.push(h.clone());
            handles.push(std::thread::Builder::new().name(format!("signer-{i}")).spawn({
                let progress = progress.clone();
                move || signer_thread(rx, batch, stats, h, progress)
            })?);
        }
        let max_wait_us = cfg.max_queue_wait_us;
        Ok((SignPool { tx, stats, hists: Arc::new(hists), max_wait_us, progress }, handles))
    }

    /// Queues `tbs` for signing with `signer`. Never blocks: a full queue is
    /// [`SignError::QueueFull`] and a queue whose jobs wait too long is
    /// [`SignError::Shed`], both straight away, so the caller can shed load.
    pub fn submit(
        &self,
        signer: Arc<dyn Signer>,
        tbs: Vec<u8>,
    ) -> Result<oneshot::Receiver<SignResult>, SignError> {
        if self.max_wait_us > 0 {
            if self.tx.is_empty() {
                self.progress.touch();
            } else if self.stats.recent_wait_us.load(Ordering::Relaxed) > self.max_wait_us
                || self.progress.stalled_us() > self.max_wait_us.saturating_mul(STALL_FACTOR)
            {
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
                self.stats.shed_slow.fetch_add(1, Ordering::Relaxed);
                return Err(SignError::Shed);
            }
        }
        let (reply, rx) = oneshot::channel();
        let job = SignJob { signer, tbs, reply, enqueued: Instant::now() };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(flume::TrySendError::Full(_)) => {
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
                Err(SignError::QueueFull)
            }
            Err(flume::TrySendError::Disconnected(_)) => Err(SignError::Stopped),
        }
    }

    /// Jobs waiting now.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Shared counters.
    pub fn stats(&self) -> &SignStats {
        &self.stats
    }

    /// All threads' histograms merged.
    pub fn snapshot(&self) -> SignHistograms {
        let mut all = SignHistograms::new();
        for h in self.hists.iter() {
            if let Ok(h) = h.lock() {
                all.add(&h);
            }
        }
        all
    }

    /// Clears every thread's histograms (between benchmark phases).
    pub fn reset_histograms(&self) {
        for h in self.hists.iter() {
            if let Ok(mut h) = h.lock() {
                *h = SignHistograms::new();
            }
        }
    }
}

/// How long finished signatures may wait to be answered together while more
/// jobs are queued. Waking a shard that went to sleep costs it a `membarrier`
/// (glommio's sleep protocol: an IPI to every CPU running this process) and a
/// context switch, which on a small machine steals CPU from the signers.
/// Answers are therefore sent when the queue runs dry (so a lightly loaded
/// pool answers at once) or when this much time has passed since the last
/// answers (so under saturation each signer thread wakes shards at most about
/// 1000 times a second). The added latency is bounded by this value and only
/// occurs when jobs are already waiting in the queue, i.e. when queue wait
/// dominates anyway. Measured in `benches/RESULTS.md`.
pub const REPLY_COALESCE: std::time::Duration = std::time::Duration::from_micros(1000);

fn signer_thread(
    rx: flume::Receiver<SignJob>,
    batch: usize,
    stats: Arc<SignStats>,
    hists: Arc<Mutex<SignHistograms>>,
    progress: Arc<Progress>,
) {
    let mut jobs = Vec::with_capacity(batch);
    // (queue wait µs, sign µs) per job of the batch, recorded after it.
    let mut timings = Vec::with_capacity(batch);
    let mut replies: Vec<(oneshot::Sender<SignResult>, SignResult)> = Vec::new();
    let mut last_flush = Instant::now();
    loop {
        // Block for work only with nothing left to answer.
        let first = if replies.is_empty() {
            match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            }
        } else {
            match rx.try_recv() {
                Ok(j) => j,
                Err(flume::TryRecvError::Empty) => {
                    flush(&mut replies);
                    last_flush = Instant::now();
                    continue;
                }
                Err(flume::TryRecvError::Disconnected) => break,
            }
        };
        jobs.push(first);
        while jobs.len() < batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let taken = jobs.len() as u64;
        for job in jobs.drain(..) {
            // Taking a job counts as progress even when it was abandoned:
            // a signer clearing a queue of them after a hang is not hung.
            progress.touch();
            if job.reply.is_canceled() {
                stats.abandoned.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let start = Instant::now();
            let waited = start.duration_since(job.enqueued).as_micros() as u64;
            stats.queue_wait_us.fetch_add(waited, Ordering::Relaxed);
            let recent = stats.recent_wait_us.load(Ordering::Relaxed);
            stats.recent_wait_us.store((recent * 7 + waited) / 8, Ordering::Relaxed);
            let result = job.signer.sign(&job.tbs);
            let end = Instant::now();
            timings.push((waited, end.duration_since(start).as_micros() as u64));
            match &result {
                Ok(_) => stats.signed.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
            };
            replies.push((job.reply, result));
            if end.duration_since(last_flush) >= REPLY_COALESCE {
                flush(&mut replies);
                last_flush = end;
            }
        }
        if let Ok(mut h) = hists.lock() {
            let _ = h.batch_size.record(taken);
            for (w, s) in timings.drain(..) {
                let _ = h.queue_wait_us.record(w.max(1));
                let _ = h.sign_us.record(s.max(1));
            }
        }
        timings.clear();
    }
    flush(&mut replies);
}

fn flush(replies: &mut Vec<(oneshot::Sender<SignResult>, SignResult)>) {
    for (reply, result) in replies.drain(..) {
        let _ = reply.send(result); // requester may have gone; nothing to do
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::SoftwareSigner;

    #[test]
    fn signs_and_sheds_when_full() {
        let key = include_str!("../../tests/data/client-requests/ca.key");
        let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(key).unwrap());
        // No threads draining yet would block forever, so use a real pool and a
        // queue of one: flood it faster than it drains and expect some QueueFull.
        let (pool, handles) =
            SignPool::start(&SignPoolConfig { threads: 1, queue_depth: 1, batch: 4, max_queue_wait_us: 0 })
                .unwrap();
        let mut rxs = Vec::new();
        let mut full = 0;
        for _ in 0..200 {
            match pool.submit(signer.clone(), b"tbs".to_vec()) {
                Ok(rx) => rxs.push(rx),
                Err(SignError::QueueFull) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full > 0, "a queue of one must shed a burst of 200");
        for rx in rxs {
            let sig = futures::executor::block_on(rx).unwrap().unwrap();
            assert_eq!(sig[0], 0x30);
        }
        drop(pool);
        for h in handles {
            h.join().unwrap();
        }
    }

    /// Signs once `open` is set; until then every signature hangs.
    struct Hung {
        inner: SoftwareSigner,
        open: std::sync::atomic::AtomicBool,
    }

    impl Signer for Hung {
        fn algorithm_der(&self) -> &[u8] {
            self.inner.algorithm_der()
        }
        fn public_key_bits(&self) -> &[u8] {
            self.inner.public_key_bits()
        }
        fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.inner.sign(tbs)
        }
        fn describe(&self) -> String {
            "hung".into()
        }
    }

    #[test]
    fn sheds_at_once_while_the_signers_hang() {
        let key = include_str!("../../tests/data/client-requests/ca.key");
        let hung = Arc::new(Hung {
            inner: SoftwareSigner::from_pem(key).unwrap(),
            open: std::sync::atomic::AtomicBool::new(false),
        });
        let signer: Arc<dyn Signer> = hung.clone();
        let (pool, handles) = SignPool::start(&SignPoolConfig {
            threads: 1,
            queue_depth: 100,
            batch: 1,
            max_queue_wait_us: 5_000,
        })
        .unwrap();
        // The only signer thread takes the first job and hangs in it.
        let first = pool.submit(signer.clone(), b"t".to_vec()).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while pool.queued() > 0 {
            assert!(Instant::now() < deadline, "the signer never took the job");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // An empty queue accepts. Recent waits were short, so the wait
        // estimate alone would accept every job after it too, each to wait
        // its whole timeout.
        let queued = pool.submit(signer.clone(), b"t".to_vec()).expect("an empty queue accepts");
        assert!(pool.stats().recent_wait_us.load(Ordering::Relaxed) < 5_000);
        // Once nothing has started for longer than the bound, new jobs are
        // refused at once instead of queueing behind the hang.
        while pool.progress.stalled_us() <= 5_000 * STALL_FACTOR {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(matches!(pool.submit(signer.clone(), b"t".to_vec()), Err(SignError::Shed)));
        assert_eq!(pool.stats().shed_slow.load(Ordering::Relaxed), 1);
        // The signer recovers: the accepted jobs are answered, and once the
        // queue is empty new jobs are accepted again.
        hung.open.store(true, Ordering::SeqCst);
        for rx in [first, queued] {
            assert!(futures::executor::block_on(rx).unwrap().is_ok());
        }
        let rx = pool.submit(signer.clone(), b"t".to_vec()).expect("accepted after the hang");
        assert!(futures::executor::block_on(rx).unwrap().is_ok());
        drop(pool);
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn sheds_by_wait_while_the_queue_is_slow_and_recovers_when_it_drains() {
        let key = include_str!("../../tests/data/client-requests/ca.key");
        let fast: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(key).unwrap());
        /// The fast key with 2 ms added to every signature (a network HSM).
        struct Slow(Arc<dyn Signer>);
        impl Signer for Slow {
            fn algorithm_der(&self) -> &[u8] {
                self.0.algorithm_der()
            }
            fn public_key_bits(&self) -> &[u8] {
                self.0.public_key_bits()
            }
            fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
                std::thread::sleep(std::time::Duration::from_millis(2));
                self.0.sign(tbs)
            }
            fn describe(&self) -> String {
                "slow".into()
            }
        }
        let slow: Arc<dyn Signer> = Arc::new(Slow(fast));
        let (pool, handles) = SignPool::start(&SignPoolConfig {
            threads: 1,
            queue_depth: 10_000,
            batch: 1,
            max_queue_wait_us: 5_000,
        })
        .unwrap();
        // A burst the count bound accepts: 100 jobs × 2 ms = 200 ms of work.
        let burst: Vec<_> = (0..100).map(|_| pool.submit(slow.clone(), b"t".to_vec()).unwrap()).collect();
        // Once dequeued jobs have waited past 5 ms (job k waits about 2k ms),
        // new ones are refused at once. Polled, not slept: a loaded machine
        // only makes the waits longer.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while pool.stats().recent_wait_us.load(Ordering::Relaxed) <= 5_000 {
            assert!(Instant::now() < deadline, "waits never grew");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(pool.queued() > 0, "the burst cannot have drained while waits grow");
        let refused = (0..10)
            .filter(|_| matches!(pool.submit(slow.clone(), b"t".to_vec()), Err(SignError::Shed)))
            .count();
        assert_eq!(refused, 10, "recent wait {} µs", pool.stats().recent_wait_us.load(Ordering::Relaxed));
        assert_eq!(pool.stats().shed_slow.load(Ordering::Relaxed), 10);
        // Every accepted job is still answered.
        for rx in burst {
            assert!(futures::executor::block_on(rx).unwrap().is_ok());
        }
        // Drained: accepted again, and answered.
        let rx = pool.submit(slow.clone(), b"t".to_vec()).expect("an empty queue accepts");
        assert!(futures::executor::block_on(rx).unwrap().is_ok());
        drop(pool);
        for h in handles {
            h.join().unwrap();
        }
    }
}
