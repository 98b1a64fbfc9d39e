//! Reloads (SIGHUP, `POST /reload`): the config file read and validated
//! again, its issuers and status source loaded, and handed to every shard as
//! its next generation; settings a running server cannot change refuse the
//! reload as a whole.

use std::sync::{Arc, Mutex};

use super::Parts;
use crate::admin::View;
use crate::config::Config;
use crate::metrics::Board;
use crate::server::ShardParts;
use crate::signer::SignPool;
use crate::source::floors::Floors;

/// Builds what a reload swaps in: the config file read and validated again,
/// and its issuers and status source loaded. Runs on the signal or admin
/// thread, never on a shard.
pub type Reload = Box<dyn Fn() -> Result<(Config, Parts), String> + Send>;

/// What outlives a generation, for building the next one. Holding the first
/// generation's parts instead would keep its issuers (HSM sessions) and
/// status source (a MySQL pool) alive for the life of the process.
pub(super) struct Lasting {
    pub running: Config,
    pub pool: SignPool,
    pub timers: Option<tokio::runtime::Handle>,
    pub board: Board,
    pub floors: Arc<Floors>,
    pub view: Arc<Mutex<Arc<View>>>,
}

/// The control plane's reloader: loads, checks [`restart_only`], swaps the
/// admin view and returns the shards' next parts.
pub(super) fn reloader(reload: Reload, l: Lasting) -> crate::control::Reloader {
    Box::new(move || {
        let (config, parts) = reload()?;
        restart_only(&l.running, &config)?;
        let summary = format!("reloaded: {} issuer(s)", parts.issuers.len());
        let next_view = Arc::new(View::new(&config, &parts.issuers, &parts.status));
        match l.view.lock() {
            Ok(mut v) => *v = next_view,
            Err(poisoned) => *poisoned.into_inner() = next_view,
        }
        let node_fills = Arc::new(crate::source::l1::node::NodeFills::new(config.cache.l1_entries));
        let next = ShardParts {
            node_fills,
            config,
            issuers: parts.issuers,
            status: parts.status,
            pool: l.pool.clone(),
            timers: l.timers.clone(),
            board: l.board.clone(),
            floors: l.floors.clone(),
        };
        Ok((Arc::new(next) as Arc<dyn std::any::Any + Send + Sync>, summary))
    })
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
        ("cdn (its purge targets follow the feed from start)", json(&running.cdn) != json(&next.cdn)),
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
