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

/// Builds what a reload swaps in: the config file read and validated again,
/// and its issuers and status source loaded. Runs on the signal or admin
/// thread, never on a shard.
pub type Reload = Box<dyn Fn() -> Result<(Config, Parts), String> + Send>;

/// Runs the server until it is drained. `on_ready` is called with the bound
/// address once every listener is bound and before shards start accepting
/// (connections made after it wait in the backlog, never refused).
///
/// `control` drains it ([`Control::drain`]; [`handle_signals`] wires SIGTERM
/// to that) and reloads it through `reload` (SIGHUP, `POST /reload`).
/// Returns `Ok` when every shard has drained, so the process exits 0.
pub fn run(
    config: &Config,
    parts: Parts,
    control: Arc<Control>,
    reload: Option<Reload>,
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

    let fds = Arc::new(Mutex::new(fds.into_iter().enumerate().collect::<Vec<_>>()));
    let board = crate::metrics::board(cores);
    let timers = match &config.redis {
        Some(_) => Some(
            crate::source::redis::TimerRuntime::start()
                .map_err(|e| ServerError::Start(format!("redis timer thread: {e}")))?
                .handle(),
        ),
        None => None,
    };
    // The change feed reads the fence window before anything is answered
    // (bounded by feed.start_timeout_ms), so no shard starts without the
    // floors of recent changes.
    let floors = Arc::new(crate::feed::Floors::new(config.feed.max_floors));
    let feed = crate::feed::start(config, floors.clone(), control.clone(), timers.clone())
        .map_err(ServerError::Start)?;
    let view = Arc::new(Mutex::new(Arc::new(crate::metrics::View::new(config, &parts))));
    if let Some(admin) = config.admin {
        let src = crate::metrics::Sources {
            board: board.clone(),
            pool: pool.clone(),
            control: control.clone(),
            view: view.clone(),
            feed: feed.as_ref().map(|f| f.stats.clone()),
            floors: floors.clone(),
        };
        let bound =
            crate::admin::serve(admin, src).map_err(|source| ServerError::Listen { addr: admin, source })?;
        log::info!("admin (metrics, histograms, reload, revoke) on http://{bound}");
    }
    // Only now is every listener bound, the admin one too: say "ready".
    on_ready(addr);
    let shared = Arc::new(shard::SharedParts {
        config: config.clone(),
        issuers: parts.issuers,
        status: parts.status,
        pool,
        timers,
        board,
        floors: floors.clone(),
    });
    control.expect_shards(cores);
    if let Some(reload) = reload {
        // Only what outlives a generation: holding the first SharedParts here
        // would keep its issuers (HSM sessions) and status source (a MySQL
        // pool) alive for the life of the process.
        let (running, pool, timers, board, floors) = (
            config.clone(),
            shared.pool.clone(),
            shared.timers.clone(),
            shared.board.clone(),
            shared.floors.clone(),
        );
        control.set_reloader(Box::new(move || {
            let (config, parts) = reload()?;
            restart_only(&running, &config)?;
            let summary = format!("reloaded: {} issuer(s)", parts.issuers.len());
            let next_view = Arc::new(crate::metrics::View::new(&config, &parts));
            match view.lock() {
                Ok(mut v) => *v = next_view,
                Err(poisoned) => *poisoned.into_inner() = next_view,
            }
            let next = shard::SharedParts {
                config,
                issuers: parts.issuers,
                status: parts.status,
                pool: pool.clone(),
                timers: timers.clone(),
                board: board.clone(),
                floors: floors.clone(),
            };
            Ok((Arc::new(next) as Arc<dyn std::any::Any + Send + Sync>, summary))
        }));
    }
    let first_gen = Arc::new(Mutex::new(vec![shared; cores]));
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
            // Each shard takes its socket and its handle on the first
            // generation once, so nothing here keeps that generation alive
            // after a reload replaced it.
            let fd = fds.lock().ok().and_then(|mut v| v.pop());
            let shared = first_gen.lock().ok().and_then(|mut v| v.pop());
            let control = control.clone();
            async move {
                match (fd, shared) {
                    (Some((index, fd)), Some(shared)) => shard::run(fd, index, shared, control).await,
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
    drop(signer_threads);
    drop(feed);
    log::info!("drained; exiting");
    Ok(())
}

/// Settings a running server cannot change (sockets, threads and per-shard
/// structures are sized from them at start). A reload that changes one is
/// refused as a whole, naming it, so what runs is always one config file.
fn restart_only(running: &Config, next: &Config) -> Result<(), String> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let l = (&running.limits, &next.limits);
    let changed = [
        ("listen", running.listen != next.listen),
        ("cores", running.cores != next.cores),
        ("pin", running.pin != next.pin),
        ("admin", running.admin != next.admin || running.admin_token != next.admin_token),
        ("signing", json(&running.signing) != json(&next.signing)),
        ("cache", json(&running.cache) != json(&next.cache)),
        ("redis (adding or removing it)", running.redis.is_some() != next.redis.is_some()),
        (
            "mysql (adding or removing it, or its primary url)",
            running.mysql.as_ref().map(|m| &m.url) != next.mysql.as_ref().map(|m| &m.url),
        ),
        ("feed", json(&running.feed) != json(&next.feed)),
        ("limits.listen_backlog", l.0.listen_backlog != l.1.listen_backlog),
        ("limits.max_connections_per_shard", l.0.max_connections_per_shard != l.1.max_connections_per_shard),
        ("limits.drain_timeout_ms", l.0.drain_timeout_ms != l.1.drain_timeout_ms),
    ];
    let names: Vec<&str> = changed.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    if names.is_empty() {
        Ok(())
    } else {
        Err(format!("{} changed: that needs a restart; nothing was reloaded", names.join(", ")))
    }
}

/// Installs the process's signal handling, on a thread of its own:
/// SIGTERM/SIGINT drain the server through `control` (the second one exits at
/// once, status 1); SIGHUP reloads, as `POST /reload` does. Process-wide, so
/// the binary calls it, not [`run`] (a test or an embedding process keeps its
/// own signals).
pub fn handle_signals(control: Arc<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            match sig {
                // On a thread of its own: loading issuers can block on an
                // HSM, and this loop must stay free to handle SIGTERM.
                SIGHUP => {
                    let control = control.clone();
                    let spawned = std::thread::Builder::new().name("reload".into()).spawn(move || {
                        match control.reload() {
                            Ok(summary) => log::info!("SIGHUP: {summary}"),
                            Err(e) => {
                                log::error!("SIGHUP: reload failed, still serving the previous config: {e}")
                            }
                        }
                    });
                    if let Err(e) = spawned {
                        log::error!("SIGHUP: cannot start the reload: {e}");
                    }
                }
                _ if control.is_draining() => {
                    log::warn!("second stop signal: exiting without waiting for connections");
                    // _exit: no atexit handlers or destructors racing the
                    // PKCS#11 and executor threads still running.
                    #[allow(unsafe_code)]
                    // SAFETY: _exit(2) only ends the process.
                    unsafe {
                        libc::_exit(1)
                    };
                }
                _ => {
                    log::info!("stop signal: no new connections; finishing the requests in flight");
                    control.drain();
                }
            }
        }
    })?;
    Ok(())
}
