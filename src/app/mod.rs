//! The composition root: turns a validated [`Config`] into a running node.
//! Everything is built here, in start-up order — issuers and the status
//! source ([`parts`]), the signer pool, the Redis timer runtime, the revision
//! floors and the change feed, the admin listener, the reloader — and each
//! shard is handed the [`ShardParts`] it needs; [`crate::server`] then runs
//! shards and connections only.
//!
//! Start-up order matters for clear failures: the memlock limit is checked
//! and raised and every listener socket is bound (so "address in use" is
//! reported before any thread starts), then the signer threads, the feed
//! (which reads the fence window before anything is answered), the admin
//! listener, and only then the shards.

pub mod parts;
pub mod reload;
pub mod signals;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use parts::{load_parts, load_parts_for_serving, Parts};
pub use reload::Reload;
pub use signals::handle_signals;

use crate::admin::{AdminState, View};
use crate::config::Config;
use crate::control::Control;
use crate::server::{ServerError, ShardParts};
use crate::signer::{SignPool, SignPoolConfig};
use crate::source::floors::Floors;

/// Runs a node until it is drained. `on_ready` is called with the bound
/// address once every listener (the admin one too) is bound and before
/// shards start accepting (connections made after it wait in the backlog,
/// never refused).
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
    let listeners = crate::server::bind(config)?;
    let addr = listeners.addr();
    let cores = config.cores.max(1);
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
    let floors = Arc::new(Floors::new(config.feed.max_floors));
    let feed = crate::feed::start(config, floors.clone(), control.clone(), timers.clone())
        .map_err(ServerError::Start)?;
    // Purges follow the feed: each waits until this node has applied it.
    let purgers =
        crate::cdn::start(config, feed.as_ref().map(|f| f.stats.clone())).map_err(ServerError::Start)?;
    let view = Arc::new(Mutex::new(Arc::new(View::new(config, &parts.issuers, &parts.status))));
    if let Some(admin) = config.admin {
        let state = AdminState {
            board: board.clone(),
            pool: pool.clone(),
            control: control.clone(),
            view: view.clone(),
            feed: feed.as_ref().map(|f| f.stats.clone()),
            floors: floors.clone(),
            purges: purgers.as_ref().map(|p| p.stats.clone()).unwrap_or_default(),
        };
        let bound = crate::admin::serve(admin, state)
            .map_err(|source| ServerError::Listen { addr: admin, source })?;
        log::info!("admin (metrics, histograms, reload, revoke) on http://{bound}");
    }
    // Only now is every listener bound, the admin one too: say "ready".
    on_ready(addr);
    let first = Arc::new(ShardParts {
        config: config.clone(),
        issuers: parts.issuers,
        status: parts.status,
        pool: pool.clone(),
        timers: timers.clone(),
        board: board.clone(),
        floors: floors.clone(),
        node_fills: Arc::new(crate::source::l1::node::NodeFills::new(config.cache.l1_entries)),
    });
    // Before the reloader: a reload that came in between would find no
    // shard expected and report success on none.
    control.expect_shards(cores);
    if let Some(reload) = reload {
        let lasting = reload::Lasting { running: config.clone(), pool, timers, board, floors, view };
        control.set_reloader(reload::reloader(reload, lasting));
    }
    crate::server::run(listeners, first, control)?;
    drop(signer_threads);
    drop(purgers);
    drop(feed);
    log::info!("drained; exiting");
    Ok(())
}

/// `serve` and `demo`: starts without the status database if it cannot be
/// reached (misses answer `tryLater` until it is); a reload, like
/// `check-config`, insists on it, so a config whose database can't be
/// reached is refused and the running one keeps serving. `load` reads the
/// config file again (with the command line's overrides) for every reload.
pub fn serve(
    config: &Config,
    load: Box<dyn Fn() -> Result<Config, String> + Send>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let parts = load_parts_for_serving(config).map_err(|e| e.to_string())?;
    let reload: Reload = Box::new(move || {
        let config = load()?;
        let parts = load_parts(&config).map_err(|e| e.to_string())?;
        Ok((config, parts))
    });
    let control = Control::new();
    handle_signals(control.clone()).map_err(|e| format!("signal handlers: {e}"))?;
    run(config, parts, control, Some(reload), on_ready).map_err(|e| e.to_string())
}
