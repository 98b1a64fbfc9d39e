//! One shard's state: its current [`Generation`], its drain signal, and the
//! control-plane commands (drain, reload, invalidate) it applies on its own
//! thread. The accept loop that owns it is [`super::accept`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::generation::{Generation, ShardParts};
use crate::control::Command;

/// A shard: its current [`Generation`] and its drain signal. Connections
/// take the current generation per batch of requests, so a reload applies to
/// open connections from their next request without closing them.
pub struct Shard {
    current: RefCell<Rc<Generation>>,
    /// Never has permits; closed when the shard starts draining, which wakes
    /// every task waiting in [`Shard::drained`] at once.
    drain: Semaphore,
    draining: Cell<bool>,
}

impl Shard {
    pub(super) fn new(gen: Generation) -> Shard {
        Shard { current: RefCell::new(Rc::new(gen)), drain: Semaphore::new(0), draining: Cell::new(false) }
    }

    /// The generation to answer the next request with.
    pub fn current(&self) -> Rc<Generation> {
        self.current.borrow().clone()
    }

    /// True once the shard drains: answers say `Connection: close`.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves when the shard starts draining.
    pub async fn drained(&self) {
        // Nothing ever releases a permit: this returns only with the close.
        let _ = self.drain.acquire(1).await;
    }

    pub(super) fn start_drain(&self) {
        if !self.draining.replace(true) {
            self.drain.close();
        }
    }

    /// Applies one control-plane command on this thread.
    pub(super) fn apply(&self, command: Command) {
        match command {
            Command::Drain => self.start_drain(),
            Command::Reload(state) => match state.downcast::<ShardParts>() {
                Ok(parts) => {
                    let old = self.current();
                    let next = Rc::new(Generation::build(&parts, Some(&old)));
                    old.retire();
                    *self.current.borrow_mut() = next;
                }
                Err(_) => log::error!("reload: unexpected state type; nothing changed"),
            },
            Command::Invalidate { issuer, serial } => {
                let gen = self.current();
                if let Some(issuer) = gen.issuers.by_name(&issuer) {
                    gen.responder.invalidate_cert(issuer, &serial);
                }
            }
            Command::InvalidateMany { issuer, serials } => {
                let gen = self.current();
                if let Some(issuer) = gen.issuers.by_name(&issuer) {
                    for serial in serials.iter() {
                        gen.responder.invalidate_cert(issuer, serial);
                    }
                }
            }
            Command::InvalidateAll => self.current().responder.invalidate_all(),
        }
    }
}
