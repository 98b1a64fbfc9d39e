//! The status-change workflow: the database first (the change is made once
//! it commits), then the fast path — Redis tombstones and the change key,
//! which every tracking shard of every node hears of at once, and, inside a
//! running node, its own revision floor and its shards' L1.
//!
//! A fast-path failure is reported, never an error: the change feed makes the
//! committed change every node's answer within `feed.bound_ms`.

use std::time::Duration;

use super::db::{self, ChangeError};
use super::push::{push_to_redis, CacheStep};
use crate::config::Config;
use crate::control::Control;
use crate::ocsp::{RevocationReason, Serial};
use crate::source::floors::{Floors, Raise};

/// What to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Revoke, at `at` (Unix seconds), for `reason`.
    Revoke {
        /// RFC 5280 reason.
        reason: RevocationReason,
        /// Revocation time, Unix seconds.
        at: u64,
    },
    /// Undo a `certificateHold`.
    Release,
}

/// The running node a change is made in (`POST /revoke`), so its own shards
/// drop their copies at once and its fence holds a lagging replica's older
/// row off before the change feed has read the change.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    /// The node's revision floors.
    pub floors: &'a Floors,
    /// Its shards' control plane.
    pub control: &'a Control,
}

/// What the workflow did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The row's new revision.
    pub revision: u64,
    /// The Redis step, or why it failed (redacted).
    pub cache: Result<CacheStep, String>,
    /// Inside a node: how many of its shards confirmed dropping their copies.
    pub shards_dropped: Option<usize>,
}

/// RLIMIT_MEMLOCK the Redis step needs on its own (its one small executor).
const OWN_MEMLOCK: usize = 1 << 20;

/// Makes `change` to `serial` of `issuer` (a name in the config) in the
/// database, then takes the fast path ([`spread`]). Without `[mysql]` there
/// is nothing to change: [`ChangeError::Refused`].
pub fn apply(
    cfg: &Config,
    issuer: &str,
    serial: &Serial,
    change: Change,
    node: Option<Node<'_>>,
    settle_ms: u64,
) -> Result<Outcome, ChangeError> {
    let revision = commit(cfg, issuer, serial, change)?;
    Ok(spread(cfg, issuer, serial, revision, node, settle_ms))
}

/// The database step alone: the change, committed; its new revision.
pub fn commit(cfg: &Config, issuer: &str, serial: &Serial, change: Change) -> Result<u64, ChangeError> {
    let Some(mysql) = &cfg.mysql else {
        return Err(ChangeError::Refused("statuses are not kept in a database ([mysql])".into()));
    };
    if let Change::Revoke { reason, at } = change {
        let baseline = cfg.response.profile == crate::config::Profile::Baseline;
        super::input::check_revocation(baseline, reason, at, crate::clock::unix_now())
            .map_err(ChangeError::Refused)?;
    }
    let pool = db::connect(mysql).map_err(ChangeError::Database)?;
    let changed = match change {
        Change::Revoke { reason, at } => db::revoke(&pool, issuer, serial, reason, at)?,
        Change::Release => db::unrevoke(&pool, issuer, serial)?,
    };
    Ok(changed.revision)
}

/// The fast path after a committed change at `revision`: Redis tombstones
/// and the change key (then `settle_ms` for tracking shards to apply them),
/// and inside a node its floor and its shards. Never fails: what it could
/// not do is in the [`Outcome`], and the change feed does it within its
/// bound.
pub fn spread(
    cfg: &Config,
    issuer: &str,
    serial: &Serial,
    revision: u64,
    node: Option<Node<'_>>,
    settle_ms: u64,
) -> Outcome {
    // Inside a server the shards already hold their share of locked memory.
    let memlock = match node {
        Some(_) => crate::uring::memlock_for(cfg.cores) + OWN_MEMLOCK,
        None => OWN_MEMLOCK,
    };
    let cache = push_to_redis(cfg, issuer, serial, revision, memlock);
    if cache == Ok(CacheStep::Tombstoned) {
        std::thread::sleep(Duration::from_millis(settle_ms));
    }
    // The fence first (a lagging replica's older row is then read again from
    // the primary), then the shards drop their copies, even when Redis
    // failed; the change feed does both on every node within its bound.
    let shards_dropped = node.map(|n| {
        let now = crate::clock::unix_now();
        // Its seq is its revision (an update); the feed raises the same floor.
        let r = Raise { revision, seq: revision, at: now, until: now + cfg.feed.fence_window_secs };
        n.floors.raise(n.floors.issuer(issuer), *serial, r);
        n.control.invalidate(issuer, *serial)
    });
    Outcome { revision, cache, shards_dropped }
}
