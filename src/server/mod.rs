//! The thread-per-core server: one pinned glommio `LocalExecutor` per core,
//! each with its own SO_REUSEPORT listener, connection buffers, L1 cache,
//! coalescing map and counters. The only things shared between cores are
//! read-only (issuers, the embedded status table) or a bounded channel (the
//! signer pool).
//!
//! Start-up order matters for clear failures: the memlock limit is checked
//! and raised, every listener socket is bound (so "address in use" is reported
//! before any thread starts), the signer threads start, then the shards.

mod conn;
mod listener;
pub mod shard;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::Config;
use crate::control::Control;
use crate::issuer::Issuers;
use crate::signer::{SignPool, SignPoolConfig};
use crate::status::StatusSource;

pub use listener::raise_memlock;

/// Registered I/O memory per shard. The server does no DMA file I/O, so this
/// only needs to satisfy glommio's allocator; small keeps RLIMIT_MEMLOCK needs
/// low (cores × this).
pub const IO_MEMORY: usize = 128 << 10;

/// Everything a server needs besides its config.
pub struct Parts {
    /// Issuers with their keys.
    pub issuers: Arc<Issuers>,
    /// Status source.
    pub status: Arc<dyn StatusSource>,
}

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

/// Runs the server until the process is stopped. `on_ready` is called with the
/// bound address once every listener is bound and before shards start
/// accepting (connections made after it wait in the backlog, never refused).
pub fn run(
    config: &Config,
    parts: Parts,
    control: Arc<Control>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let cores = config.cores.max(1);
    raise_memlock(cores * IO_MEMORY + (512 << 10)).map_err(ServerError::Memlock)?;
    let (fds, addr) = listener::bind_all(config.listen, cores, config.limits.listen_backlog)
        .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    let (pool, signer_threads) = SignPool::start(&SignPoolConfig {
        threads: config.signing.threads,
        queue_depth: config.signing.queue_depth,
        max_queue_wait_us: config.signing.max_queue_wait_ms * 1000,
        batch: config.signing.batch,
    })
    .map_err(|e| ServerError::Start(format!("signer threads: {e}")))?;
    log::info!(
        "listening on {addr}: {cores} shards, {} signer threads, {} issuer(s)",
        config.signing.threads,
        parts.issuers.len()
    );
    on_ready(addr);

    let fds = Arc::new(Mutex::new(fds.into_iter().enumerate().collect::<Vec<_>>()));
    let board = crate::metrics::board(cores);
    if let Some(admin) = config.admin {
        let signers =
            parts.issuers.iter().map(|(_, i)| (i.name.clone(), i.responder.signer.clone())).collect();
        let src = crate::metrics::Sources {
            board: board.clone(),
            pool: pool.clone(),
            signers,
            control: control.clone(),
            config: config.clone(),
        };
        let bound =
            crate::admin::serve(admin, src).map_err(|source| ServerError::Listen { addr: admin, source })?;
        log::info!("admin (metrics, histograms) on http://{bound}");
    }
    let timers = match &config.redis {
        Some(_) => Some(
            crate::source::redis::TimerRuntime::start()
                .map_err(|e| ServerError::Start(format!("redis timer thread: {e}")))?
                .handle(),
        ),
        None => None,
    };
    let shared = Arc::new(shard::SharedParts {
        config: config.clone(),
        issuers: parts.issuers,
        status: parts.status,
        pool,
        timers,
        board,
    });
    let placement = if config.pin {
        PoolPlacement::MaxSpread(cores, allowed_cpus())
    } else {
        PoolPlacement::Unbound(cores)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(IO_MEMORY)
        .ring_depth(256)
        .preempt_timer(Duration::from_millis(100))
        .on_all_shards(move || {
            let fd = fds.lock().ok().and_then(|mut v| v.pop());
            let shared = shared.clone();
            async move {
                match fd {
                    Some((index, fd)) => shard::run(fd, index, shared).await,
                    None => log::error!("shard started without a listener"),
                }
            }
        })
        .map_err(|e| ServerError::Start(e.to_string()))?;
    for r in handles.join_all() {
        if let Err(e) = r {
            return Err(ServerError::Start(format!("shard failed: {e}")));
        }
    }
    drop(signer_threads);
    Ok(())
}
