//! The thread-per-core server: one pinned glommio `LocalExecutor` per core,
//! each with its own SO_REUSEPORT listener, connection buffers, L1 cache,
//! coalescing map and counters. The only things shared between cores are
//! read-only (issuers, the embedded status table) or a bounded channel (the
//! signer pool).
//!
//! This module runs shards and connections only. What they serve comes
//! ready-made from the composition root ([`crate::app`]) as [`ShardParts`];
//! the listeners are bound first ([`bind`]) so "address in use" is reported
//! before any thread starts.
//!
//! Files, in request order: `accept` (the accept loop), [`shard`] (a
//! shard's state and control commands),
//! `conn` (bytes, pipelining, timeouts), `handler` (route → decode → admit →
//! answer → write), [`generation`] (the nested sources and limits one
//! generation of a shard answers with), `listener` (the sockets).

mod accept;
mod conn;
pub mod generation;
mod handler;
mod listener;
pub mod shard;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

pub use generation::{Generation, ShardParts, ShardStats};
pub use shard::Shard;

use crate::config::Config;
use crate::control::Control;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// RLIMIT_MEMLOCK too low and cannot be raised.
    #[error("{0}")]
    Memlock(String),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Threads or executors could not start.
    #[error("cannot start: {0}")]
    Start(String),
}

/// The online CPUs this process may run on (its affinity mask, as `taskset` or
/// a cgroup cpuset left it), for pinning. glommio's `MaxSpread` with no set
/// spreads over every online CPU and would pin a shard outside the mask, where
/// the kernel refuses it or a co-located process was promised the core.
/// `None` (glommio's default) when either side cannot be read, or when they
/// share no CPU.
fn allowed_cpus() -> Option<CpuSet> {
    let allowed: std::collections::HashSet<usize> =
        core_affinity::get_core_ids()?.into_iter().map(|c| c.id).collect();
    let online = match CpuSet::online() {
        Ok(set) => set,
        Err(e) => {
            log::warn!("cannot read the CPU topology ({e}); pinning over all online CPUs");
            return None;
        }
    };
    let set = online.filter(|l| allowed.contains(&l.cpu));
    if set.is_empty() {
        log::warn!("no online CPU is in the affinity mask; pinning over all online CPUs");
        return None;
    }
    Some(set)
}

/// Every shard's listening socket, bound, and the memlock limit raised for
/// the shards' executors. Dropped without [`run`], the sockets close.
pub struct Listeners {
    fds: Vec<OwnedFd>,
    addr: SocketAddr,
}

impl Listeners {
    /// The bound address (the port picked when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Checks and raises the memlock limit for `config.cores` executors and
/// binds every shard's listener.
pub fn bind(config: &Config) -> Result<Listeners, ServerError> {
    let cores = config.cores.max(1);
    crate::uring::raise_memlock(crate::uring::memlock_for(cores)).map_err(ServerError::Memlock)?;
    let (fds, addr) = listener::bind_all(config.listen, cores, config.limits.listen_backlog)
        .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    Ok(Listeners { fds, addr })
}

/// Runs one shard per listener until every shard has drained
/// ([`Control::drain`]). Each shard builds its first [`Generation`] from
/// `first`; `control` reaches them afterwards (reloads, invalidations).
pub fn run(listeners: Listeners, first: Arc<ShardParts>, control: Arc<Control>) -> Result<(), ServerError> {
    let cores = listeners.fds.len();
    let pin = first.config.pin;
    // Sockets no shard took (executors that failed to start) close with the
    // last handle on this list.
    let fds = Arc::new(Mutex::new(listeners.fds.into_iter().enumerate().collect::<Vec<_>>()));
    control.expect_shards(cores);
    let first_gen = Arc::new(Mutex::new(vec![first; cores]));
    let placement =
        if pin { PoolPlacement::MaxSpread(cores, allowed_cpus()) } else { PoolPlacement::Unbound(cores) };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(crate::uring::IO_MEMORY)
        .ring_depth(256)
        .preempt_timer(Duration::from_millis(100))
        .on_all_shards(move || {
            // Each shard takes its socket and its handle on the first
            // generation once, so nothing here keeps that generation alive
            // after a reload replaced it.
            let fd = fds.lock().ok().and_then(|mut v| v.pop());
            let shared = first_gen.lock().ok().and_then(|mut v| v.pop());
            let control = control.clone();
            async move {
                match (fd, shared) {
                    (Some((index, fd)), Some(shared)) => accept::run(fd, index, shared, control).await,
                    _ => log::error!("shard started without a listener"),
                }
            }
        })
        .map_err(|e| ServerError::Start(e.to_string()))?;
    for r in handles.join_all() {
        if let Err(e) = r {
            return Err(ServerError::Start(format!("shard failed: {e}")));
        }
    }
    Ok(())
}
