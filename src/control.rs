//! The control plane: how the signal thread and the admin listener reach the
//! shards, which otherwise share nothing mutable.
//!
//! Each shard registers a bounded command channel at start and runs a task
//! that applies commands between requests (shard-local state is never touched
//! from another thread). A broadcast waits for every shard's acknowledgement,
//! with a deadline, so a caller knows when a command has taken effect
//! everywhere on this node: an admin revocation returns only after every
//! shard has dropped the certificate's cached responses.
//!
//! | command | sent by | what a shard does |
//! |---|---|---|
//! | [`Command::Drain`] | SIGTERM / SIGINT | stops accepting, closes idle keep-alive connections, finishes in-flight requests (answers say `Connection: close`), exits when its connections are done or the grace period ends |
//! | [`Command::Reload`] | SIGHUP / `POST /reload` | swaps in the new issuers, status source and per-request settings; open connections keep going on the new state from their next request |
//! | [`Command::Invalidate`] | `POST /revoke`, operators | drops the certificate's L1 entries for every CertID hash algorithm |
//! | [`Command::InvalidateMany`] | the change feed | the same for a batch of one issuer's certificates, multi-CertID entries included |
//! | [`Command::InvalidateAll`] | the change feed, after changes were lost | empties L1 |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ocsp::Serial;

/// Commands a shard applies on its own thread.
pub enum Command {
    /// Stop accepting and wind down (see the module docs).
    Drain,
    /// Replace the shard's request-path state. Opaque here so this module does
    /// not depend on the server's types; the shard downcasts it.
    Reload(Arc<dyn std::any::Any + Send + Sync>),
    /// Drop every cached response about this certificate.
    Invalidate {
        /// Which issuer, by name: each shard resolves it against the issuers
        /// of its current generation (a reload may renumber them).
        issuer: Arc<str>,
        /// Which certificate.
        serial: Serial,
    },
    /// Drop every cached response about these certificates of one issuer
    /// (the change feed's batches).
    InvalidateMany {
        /// Which issuer, by name.
        issuer: Arc<str>,
        /// Which certificates.
        serials: Arc<[Serial]>,
    },
    /// Drop every cached response (changes may have been missed).
    InvalidateAll,
}

/// A command and where to acknowledge it.
pub struct Envelope {
    /// The command.
    pub command: Command,
    /// Sent to once the command is applied (dropping it unsent means "not applied").
    pub ack: flume::Sender<()>,
}

/// Commands queued per shard before a sender waits. Commands are rare
/// (signals, admin calls), so a small bound only guards against a flood of
/// admin calls against a stalled shard.
const SHARD_QUEUE: usize = 64;

/// Builds a fresh generation of the request-path state, for reloads: re-reads
/// the config file and loads issuers and the status source. Runs on the
/// calling (signal or admin) thread, never on a shard. Returns the state and
/// a one-line summary.
pub type Reloader = Box<dyn Fn() -> Result<(Arc<dyn std::any::Any + Send + Sync>, String), String> + Send>;

/// The process-wide control plane (one per server).
#[derive(Default)]
pub struct Control {
    shards: Mutex<Vec<flume::Sender<Envelope>>>,
    /// Shards the server starts; a reload waits until all have registered.
    expected: std::sync::atomic::AtomicUsize,
    draining: AtomicBool,
    reloader: Mutex<Option<Reloader>>,
}

impl Control {
    /// A new control plane, shared by `Arc`.
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// Called once by each shard at start: the receiving end of its commands.
    pub fn register(&self) -> flume::Receiver<Envelope> {
        let (tx, rx) = flume::bounded(SHARD_QUEUE);
        if let Ok(mut shards) = self.shards.lock() {
            shards.push(tx);
        }
        rx
    }

    /// Shards registered so far.
    pub fn shards(&self) -> usize {
        self.shards.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Sends a command to every shard and waits up to `deadline` for their
    /// acknowledgements; returns how many acknowledged. A shard that has
    /// exited (its receiver dropped) is skipped.
    pub fn broadcast(&self, make: impl Fn() -> Command, deadline: Duration) -> usize {
        let senders = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        let until = Instant::now() + deadline;
        let mut acks = Vec::with_capacity(senders.len());
        for tx in &senders {
            let (ack, done) = flume::bounded(1);
            let env = Envelope { command: make(), ack };
            if tx.send_deadline(env, until).is_ok() {
                acks.push(done);
            }
        }
        // Only a message counts: a shard that exited mid-way drops the ack
        // unsent, which ends the wait for it without counting it (the
        // command is moot there).
        acks.iter().filter(|done| matches!(done.recv_deadline(until), Ok(()))).count()
    }

    /// Sends every command of `commands` (each made once per shard) to every
    /// shard, then waits up to `deadline` for all the acknowledgements:
    /// shards work through the batch while the later commands are still
    /// being queued. Returns how many shards acknowledged every command, and
    /// the shards that could not be sent one (their queue stayed full until
    /// the deadline: a stalled shard), so the caller can make up for it.
    pub fn broadcast_all(
        &self,
        commands: &[&dyn Fn() -> Command],
        deadline: Duration,
    ) -> (usize, Vec<usize>) {
        let sent = self.send_all(commands, deadline);
        let missed = sent.missed.clone();
        (sent.wait(), missed)
    }

    /// The sending half of [`Control::broadcast_all`]: queues every command
    /// on every shard (waiting for room up to `deadline`) and returns without
    /// waiting for the shards to apply them, so the caller can do other work
    /// (read the next page of changes) while they do.
    pub fn send_all(&self, commands: &[&dyn Fn() -> Command], deadline: Duration) -> Sent {
        let senders = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        let until = Instant::now() + deadline;
        let mut acks: Vec<Vec<flume::Receiver<()>>> = vec![Vec::with_capacity(commands.len()); senders.len()];
        let mut complete = vec![true; senders.len()];
        let mut missed = Vec::new();
        for make in commands {
            for (i, tx) in senders.iter().enumerate() {
                let (ack, done) = flume::bounded(1);
                match tx.send_deadline(Envelope { command: make(), ack }, until) {
                    Ok(()) => acks[i].push(done),
                    Err(flume::SendTimeoutError::Timeout(_)) => {
                        complete[i] = false;
                        if !missed.contains(&i) {
                            missed.push(i);
                        }
                    }
                    // An exited shard: the command is moot there.
                    Err(flume::SendTimeoutError::Disconnected(_)) => complete[i] = false,
                }
            }
        }
        Sent { acks, complete, missed, until }
    }

    /// Queues `command` for shard `shard` without waiting; true when it is
    /// queued, or the shard is gone (nothing left to tell it).
    pub fn send_to(&self, shard: usize, command: Command) -> bool {
        let Some(tx) = self.shards.lock().ok().and_then(|s| s.get(shard).cloned()) else { return true };
        let (ack, _) = flume::bounded(1);
        !matches!(tx.try_send(Envelope { command, ack }), Err(flume::TrySendError::Full(_)))
    }

    /// Starts a graceful shutdown (idempotent): every shard stops accepting
    /// and winds down. Returns once every shard has the command queued (at
    /// once, unless a shard's command queue is full: then up to 5 s for it),
    /// without waiting for the shards to finish.
    pub fn drain(&self) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let senders = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        for tx in senders {
            let (ack, _) = flume::bounded(1);
            // Waits (boundedly) for room: a shard's queue is full only when
            // it is stalled on commands, and a lost Drain would keep it
            // accepting forever.
            let _ = tx.send_timeout(Envelope { command: Command::Drain, ack }, Duration::from_secs(5));
        }
    }

    /// True once [`Control::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Drops the certificate's cached responses on every shard of this node;
    /// returns how many shards confirmed within a second.
    pub fn invalidate(&self, issuer: &str, serial: Serial) -> usize {
        let issuer: Arc<str> = issuer.into();
        self.broadcast(|| Command::Invalidate { issuer: issuer.clone(), serial }, Duration::from_secs(1))
    }

    /// Says how many shards will register (before they start).
    pub fn expect_shards(&self, n: usize) {
        self.expected.store(n, Ordering::SeqCst);
    }

    /// Installs the function [`Control::reload`] calls.
    pub fn set_reloader(&self, r: Reloader) {
        if let Ok(mut slot) = self.reloader.lock() {
            *slot = Some(r);
        }
    }

    /// Reloads the config file, issuers and status source and swaps them into
    /// every shard. On any error nothing changes and the error says why (the
    /// running state keeps serving). One reload at a time: another asked for
    /// meanwhile is refused, not queued.
    pub fn reload(&self) -> Result<String, String> {
        if self.is_draining() {
            return Err("shutting down".into());
        }
        let guard = match self.reloader.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return Err("a reload is already running".into()),
            Err(std::sync::TryLockError::Poisoned(_)) => return Err("reload state poisoned".into()),
        };
        let reloader = guard.as_ref().ok_or_else(|| "this server cannot reload".to_string())?;
        let total = self.shards();
        if total < self.expected.load(Ordering::SeqCst) {
            return Err("the server is still starting; reload once it answers".into());
        }
        let (state, summary) = reloader()?;
        let applied = self.broadcast(|| Command::Reload(state.clone()), Duration::from_secs(5));
        if applied < total {
            return Err(format!(
                "reloaded on {applied} of {total} shards within 5 s; the rest have it queued and apply it \
                 when they next run their commands"
            ));
        }
        Ok(format!("{summary}; applied on {applied} shards"))
    }
}

/// Commands queued by [`Control::send_all`] whose acknowledgements are still
/// to come.
#[must_use = "wait() says which shards applied the commands"]
pub struct Sent {
    acks: Vec<Vec<flume::Receiver<()>>>,
    complete: Vec<bool>,
    /// Shards that could not be sent every command (their queue stayed full
    /// until the deadline): known at once, so the caller can make up for it.
    pub missed: Vec<usize>,
    until: Instant,
}

impl Sent {
    /// Waits (until the deadline given to `send_all`) for the shards to
    /// apply the commands; returns how many shards acknowledged every one.
    pub fn wait(self) -> usize {
        let until = self.until;
        self.acks
            .iter()
            .zip(self.complete)
            .filter(|(shard, sent)| {
                *sent && shard.iter().all(|done| matches!(done.recv_deadline(until), Ok(())))
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_counts_acks_and_skips_exited_shards() {
        let c = Control::new();
        let live = c.register();
        let gone = c.register();
        drop(gone);
        let t = std::thread::spawn(move || {
            let env = live.recv().unwrap();
            assert!(matches!(env.command, Command::Invalidate { .. }));
            env.ack.send(()).unwrap();
        });
        let serial = Serial::from_hex("01").unwrap();
        assert_eq!(c.invalidate("test", serial), 1);
        t.join().unwrap();
    }

    #[test]
    fn reload_without_a_reloader_says_so() {
        let c = Control::new();
        assert_eq!(c.reload().unwrap_err(), "this server cannot reload");
        c.drain();
        assert!(c.is_draining());
        assert_eq!(c.reload().unwrap_err(), "shutting down");
    }
}
