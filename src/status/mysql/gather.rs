//! The hand-off from a shard to the lookup threads: one message per shard
//! turn, not one per lookup.
//!
//! Under a miss storm a shard's turn starts many misses at once (one read of
//! the Redis connection answers dozens of GETs, and each miss then needs its
//! status). Sent one by one, every lookup woke a parked lookup thread (a
//! futex wake each), and the threads, each woken for one or two lookups, made
//! one `SELECT` per one or two certificates: MariaDB's per-statement cost
//! was most of its CPU per miss. Here the lookups a thread makes are kept
//! in a per-thread batch until the first of them has let every other task
//! that is ready run once ([`futures_lite::future::yield_now`]: the back of
//! the executor's run queue); then the whole batch goes over as one message,
//! one wake-up, and a lookup thread that finds several such messages answers
//! them together, `batch` certificates per query.
//!
//! The shard's cost is one pass of the run queue before a lookup is sent —
//! what is ready runs for microseconds, nothing waits for I/O — and the
//! shard holds nothing back for lookups to come (under load the collecting
//! lookup thread may: [`Intake::take`]). A turn's batch travels in messages
//! of at most `batch`, so a huge turn is still spread over the threads.
//!
//! `queue_depth` bounds the lookups handed over and not yet taken by a
//! thread: past it, a lookup is answered "queue full" (`tryLater`) at once.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Lookup;
use crate::status::StatusError;

/// Tells one source's batches apart on a thread that holds several (a reload
/// builds a new source while the old one still answers).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's lookups not yet handed off, by source.
    static PENDING: RefCell<Vec<(u64, Vec<Lookup>)>> = const { RefCell::new(Vec::new()) };
}

/// The sending side of the lookup queue, shared by every shard. The lookup
/// threads end when it is dropped.
pub(super) struct Queue {
    tx: flume::Sender<Vec<Lookup>>,
    /// Lookups handed off and not yet taken by a lookup thread.
    queued: Arc<AtomicUsize>,
    depth: usize,
    /// Most lookups in one message (`batch`).
    chunk: usize,
    id: u64,
}

/// The lookup threads' side of the queue. One thread at a time collects a
/// batch ([`Intake::take`]) while the others run their queries, so the
/// stream is not split thread by thread into batches of one or two.
#[derive(Clone)]
pub(super) struct Intake {
    rx: flume::Receiver<Vec<Lookup>>,
    queued: Arc<AtomicUsize>,
    turn: Arc<Mutex<Rate>>,
}

/// How fast lookups arrive (an average over recent batches, per second).
struct Rate {
    per_sec: f64,
    last: Instant,
}

/// A batch waits for more lookups only while at least this many more are
/// expected within the window: below it, the wait would add latency and
/// save no query.
const MIN_FILL: f64 = 4.0;

/// The shortest nap of a lingering batch (the timer slack of a sleeping
/// thread is 50 µs by default: shorter naps would mostly add wake-ups).
const MIN_NAP: Duration = Duration::from_micros(100);

/// No take for this many windows: the rate starts afresh.
const QUIET_WINDOWS: f64 = 8.0;

impl Intake {
    /// A batch of at least one lookup, with what else is waiting, in whole
    /// messages, until the batch holds at least `batch` lookups; while
    /// lookups arrive fast enough to fill it by [`MIN_FILL`] more, also what
    /// arrives until it does or `window` has passed since the first was
    /// taken (checked after each nap); `None` once the queue is gone.
    ///
    /// Why a window: at one query per wake-up, a lookup thread under a miss
    /// storm finds one or two lookups waiting (the query's round trip is
    /// shorter than the time between misses), and MariaDB's per-statement
    /// cost dominates its CPU per miss. Waiting up to `window` for more
    /// under load turned 11,000–13,000 misses/s on 2 vCPUs into queries of
    /// 37–41 certificates (window 2 ms; `benches/RESULTS.md`), at the cost
    /// of at most `window` added to a miss that is already queued behind a
    /// storm; at a low rate nothing waits.
    pub(super) fn take(&self, batch: usize, window: Duration) -> Option<Vec<Lookup>> {
        let mut rate = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut jobs = self.recv()?;
        let started = Instant::now();
        // After a quiet spell the average is from the storm before it: the
        // first lookup after it is taken at once, not held for a window.
        let quiet = started.duration_since(rate.last).as_secs_f64() > QUIET_WINDOWS * window.as_secs_f64();
        let linger = !window.is_zero() && !quiet && rate.per_sec * window.as_secs_f64() >= MIN_FILL;
        let deadline = started + window;
        // The first nap: until the batch is expected full at the recent rate.
        let mut nap =
            Duration::from_secs_f64(batch.saturating_sub(jobs.len()) as f64 / rate.per_sec.max(1.0));
        loop {
            let mut gone = false;
            while jobs.len() < batch {
                match self.rx.try_recv() {
                    Ok(b) => {
                        self.took(&b);
                        jobs.extend(b);
                    }
                    Err(e) => {
                        gone = e == flume::TryRecvError::Disconnected;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if !linger || gone || jobs.len() >= batch || now >= deadline {
                break;
            }
            // Napping rather than waiting on the channel: a shard handing
            // off finds no receiver waiting, so its send costs no futex
            // wake, and this thread wakes about once per batch instead of
            // once per shard turn. A nap that brought nothing doubles.
            std::thread::sleep(nap.max(MIN_NAP).min(deadline - now));
            if self.rx.is_empty() {
                nap = nap.max(MIN_NAP) * 2;
            }
        }
        // The rate: lookups taken over the time since the previous take
        // ended, a quarter's weight per take, so a storm is seen within a
        // few batches. After a quiet spell (no take for many windows) the
        // old average says nothing: the new sample replaces it, so the
        // lookups after a storm do not wait.
        let now = Instant::now();
        let secs = now.duration_since(rate.last).as_secs_f64().max(1e-6);
        let sample = jobs.len() as f64 / secs;
        rate.per_sec = if secs > QUIET_WINDOWS * window.as_secs_f64() {
            sample
        } else {
            0.75 * rate.per_sec + 0.25 * sample
        };
        rate.last = now;
        Some(jobs)
    }

    /// Waits for one message.
    fn recv(&self) -> Option<Vec<Lookup>> {
        self.rx.recv().ok().inspect(|b| self.took(b))
    }

    fn took(&self, batch: &[Lookup]) {
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
    }
}

impl Queue {
    /// A queue of at most `depth` waiting lookups in messages of at most
    /// `chunk`, and its intake.
    pub(super) fn new(depth: usize, chunk: usize) -> (Queue, Intake) {
        let (tx, rx) = flume::unbounded();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let queued = Arc::new(AtomicUsize::new(0));
        let turn = Arc::new(Mutex::new(Rate { per_sec: 0.0, last: Instant::now() }));
        let queue = Queue { tx, queued: queued.clone(), depth: depth.max(1), chunk: chunk.max(1), id };
        (queue, Intake { rx, queued, turn })
    }

    /// Adds `job` to this thread's batch. `Some` for the first of a batch:
    /// its caller holds the guard until it has yielded once, and dropping
    /// the guard hands the batch off (also when the lookup is dropped first,
    /// so no batch is left behind).
    pub(super) fn push(&self, job: Lookup) -> Option<HandOff<'_>> {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            match p.iter_mut().find(|(id, _)| *id == self.id) {
                Some((_, jobs)) if !jobs.is_empty() => {
                    jobs.push(job);
                    None
                }
                Some((_, jobs)) => {
                    jobs.push(job);
                    Some(HandOff(self, PhantomData))
                }
                None => {
                    p.push((self.id, vec![job]));
                    Some(HandOff(self, PhantomData))
                }
            }
        })
    }

    /// Sends this thread's batch (in messages of at most `chunk`); the
    /// lookups past the depth are answered "queue full" at once.
    fn hand_off(&self) {
        // `try_with`: a guard dropped while the thread's locals are torn
        // down has nothing to send (its lookups' receivers are gone too).
        let jobs = PENDING
            .try_with(|p| {
                let mut p = p.borrow_mut();
                p.iter().position(|(id, _)| *id == self.id).map(|i| p.swap_remove(i).1).unwrap_or_default()
            })
            .unwrap_or_default();
        if jobs.is_empty() {
            return;
        }
        // Reserve the room first, so shards handing off at once cannot
        // together pass the depth.
        let want = jobs.len();
        let reserved = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q + want.min(self.depth.saturating_sub(q)))
            })
            .map_or(0, |q| want.min(self.depth.saturating_sub(q)));
        let mut jobs = jobs.into_iter();
        let mut sending: Vec<Lookup> = jobs.by_ref().take(reserved).collect();
        for j in jobs {
            let _ = j.reply.send(Err(StatusError::Unavailable("status lookup queue full".into())));
        }
        while !sending.is_empty() {
            let rest = sending.split_off(sending.len().min(self.chunk));
            let n = sending.len();
            if let Err(flume::SendError(lost)) = self.tx.send(sending) {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                for j in lost {
                    let _ = j.reply.send(Err(StatusError::Unavailable("status threads gone".into())));
                }
            }
            sending = rest;
        }
    }
}

/// Hands this thread's batch off when dropped (see [`Queue::push`]). Not
/// `Send`: dropped on another thread it would hand off that thread's batch
/// and leave its own behind.
pub(super) struct HandOff<'a>(&'a Queue, PhantomData<*const ()>);

impl Drop for HandOff<'_> {
    fn drop(&mut self) {
        self.0.hand_off();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::{IssuerId, Serial};
    use crate::status::Need;
    use futures::channel::oneshot;

    fn job(n: u8) -> (Lookup, oneshot::Receiver<Result<Option<crate::status::CertRecord>, StatusError>>) {
        let (reply, rx) = oneshot::channel();
        let serial = Serial::from_magnitude(&[n]).unwrap();
        (Lookup { issuer: IssuerId(0), serial, need: Need::default(), reply }, rx)
    }

    /// Lookups pushed before the first one's guard drops travel as one
    /// message; the next push starts a new batch.
    #[test]
    fn a_turn_s_lookups_travel_as_one_message() {
        let (q, rx) = Queue::new(100, 64);
        let (a, _ra) = job(1);
        let guard = q.push(a).expect("the first of a batch hands it off");
        let mut rest = Vec::new();
        for n in 2..=5 {
            let (j, r) = job(n);
            assert!(q.push(j).is_none(), "later lookups join the batch");
            rest.push(r);
        }
        assert!(rx.rx.is_empty(), "nothing is sent before the hand-off");
        drop(guard);
        assert_eq!(rx.rx.len(), 1, "exactly one message");
        let batch = rx.take(64, Duration::ZERO).expect("one message");
        assert_eq!(batch.iter().map(|j| j.serial.as_bytes()[0]).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let (j, _r) = job(6);
        drop(q.push(j).expect("a new batch after the hand-off"));
        assert_eq!(rx.take(64, Duration::ZERO).unwrap().len(), 1);
    }

    /// A turn of more lookups than `batch` travels in messages of at most
    /// `batch`, so several threads can answer it.
    #[test]
    fn a_big_turn_is_split_into_messages_of_a_batch() {
        let (q, rx) = Queue::new(1000, 64);
        let (a, _ra) = job(0);
        let guard = q.push(a).unwrap();
        let mut replies = Vec::new();
        for n in 1..150u32 {
            let (j, r) = job((n % 250) as u8 + 1);
            assert!(q.push(j).is_none());
            replies.push(r);
        }
        drop(guard);
        let sizes: Vec<usize> = std::iter::from_fn(|| rx.rx.try_recv().ok()).map(|b| b.len()).collect();
        assert_eq!(sizes, [64, 64, 22]);
    }

    /// Past `queue_depth` waiting lookups, the rest are answered "queue
    /// full" at once instead of queueing.
    #[test]
    fn lookups_past_the_depth_are_refused_at_once() {
        let (q, rx) = Queue::new(3, 64);
        let mut replies = Vec::new();
        let (a, ra) = job(1);
        let guard = q.push(a).unwrap();
        replies.push(ra);
        for n in 2..=5 {
            let (j, r) = job(n);
            assert!(q.push(j).is_none());
            replies.push(r);
        }
        drop(guard);
        let sent = rx.rx.try_recv().unwrap();
        assert_eq!(sent.len(), 3, "the depth's worth is sent");
        for mut r in replies.drain(3..) {
            match r.try_recv() {
                Ok(Some(Err(StatusError::Unavailable(why)))) => assert!(why.contains("queue full"), "{why}"),
                other => panic!("not refused: {other:?}"),
            }
        }
        // Still 3 waiting (none taken): a new lookup is refused too.
        let (j, mut r) = job(9);
        drop(q.push(j).unwrap());
        assert!(matches!(r.try_recv(), Ok(Some(Err(StatusError::Unavailable(_))))));
        rx.took(&sent);
        let (j, _r) = job(10);
        drop(q.push(j).unwrap());
        assert_eq!(rx.rx.try_recv().unwrap().len(), 1, "room again once a thread took them");
    }

    /// Two sources on one thread (a reload): each batch goes to its own
    /// queue.
    #[test]
    fn two_sources_on_one_thread_keep_their_batches_apart() {
        let (q1, rx1) = Queue::new(10, 64);
        let (q2, rx2) = Queue::new(10, 64);
        let (a, _ra) = job(1);
        let (b, _rb) = job(2);
        let g1 = q1.push(a).unwrap();
        let g2 = q2.push(b).unwrap();
        drop((g1, g2));
        assert_eq!(rx1.take(8, Duration::ZERO).unwrap()[0].serial.as_bytes()[0], 1);
        assert_eq!(rx2.take(8, Duration::ZERO).unwrap()[0].serial.as_bytes()[0], 2);
    }

    /// While lookups arrive fast, a batch waits (up to the window) for more;
    /// while they arrive slowly, the first is answered alone at once.
    #[test]
    fn a_batch_waits_for_more_only_while_lookups_arrive_fast() {
        let (q, rx) = Queue::new(100, 64);
        let send = |q: &Queue, n| {
            let (j, r) = job(n);
            drop(q.push(j).unwrap());
            r
        };
        // Slow (no rate yet): the first is taken alone, though a second
        // follows within the window.
        let _a = send(&q, 1);
        let q = Arc::new(q);
        let later = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                send(&q, 2)
            })
        };
        let t = Instant::now();
        assert_eq!(rx.take(2, Duration::from_secs(5)).unwrap().len(), 1);
        assert!(t.elapsed() < Duration::from_millis(300), "no wait at a low rate: {:?}", t.elapsed());
        let _b = later.join().unwrap();
        assert_eq!(rx.take(2, Duration::ZERO).unwrap().len(), 1);
        // Fast: the batch waits for the second.
        rx.turn.lock().unwrap().per_sec = 1e6;
        let _c = send(&q, 3);
        let later = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                send(&q, 4)
            })
        };
        let batch = rx.take(2, Duration::from_secs(5)).unwrap();
        assert_eq!(batch.iter().map(|j| j.serial.as_bytes()[0]).collect::<Vec<_>>(), [3, 4]);
        let _d = later.join().unwrap();
    }

    /// The first lookup after a quiet spell is not held for a window on the
    /// strength of the storm before it.
    #[test]
    fn the_first_lookup_after_a_quiet_spell_does_not_wait() {
        let (q, rx) = Queue::new(100, 64);
        let window = Duration::from_millis(200);
        {
            let mut rate = rx.turn.lock().unwrap();
            rate.per_sec = 1e6;
            rate.last = Instant::now() - window * 9;
        }
        let (j, _r) = job(1);
        drop(q.push(j).unwrap());
        let t = Instant::now();
        assert_eq!(rx.take(2, window).unwrap().len(), 1);
        assert!(t.elapsed() < window, "held after a quiet spell: {:?}", t.elapsed());
    }
}
