//! The fast path of a status change: Redis tombstones and the change key,
//! after the database write ([`super::db`]).
//!
//! The database row is the truth, and the change feed carries every committed
//! change to every core of every node within `feed.bound_ms`, whoever wrote
//! it ([`crate::feed`]): correctness needs nothing from this module. What it
//! adds is a fast path for changes made through ocsp-origin itself: with
//! `[redis]`, [`push_to_redis`] writes tombstones over the certificate's
//! response keys (for every CertID hash algorithm) and sets its change key,
//! which every tracking shard of every node hears about at once and drops
//! the certificate from its L1 ([`crate::source::redis`]); waiting
//! [`SETTLE_MS`] afterwards lets those invalidations land. The admin listener
//! also tells this node's shards directly
//! ([`crate::control::Control::invalidate`], see [`super::change`]).

use std::time::Duration;

use crate::config::redact;
use crate::config::Config;
use crate::ocsp::Serial;

/// How long to wait after the tombstones for every tracking shard to have
/// applied the invalidation, ms (it takes well under a millisecond on a
/// healthy network).
pub const SETTLE_MS: u64 = 50;

/// What [`push_to_redis`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStep {
    /// No `[redis]`: each server sees the change through the change feed,
    /// within `feed.bound_ms` (this many ms).
    NotShared {
        /// `feed.bound_ms`.
        bound_ms: u64,
    },
    /// Tombstones and the change key are in Redis.
    Tombstoned,
}

/// Tombstones the certificate's Redis keys so every node drops its copy, on
/// a small glommio executor on the calling thread (fred runs on glommio).
/// `memlock_need` is the RLIMIT_MEMLOCK the whole process needs with that
/// executor added (the CLI: 1 MiB; a server: its shards' share plus that).
///
/// Commands get at least 2 s each and one retry: the request path's Redis
/// timeouts are tuned for misses, this step must rather succeed. Errors have
/// any password redacted.
pub fn push_to_redis(
    cfg: &Config,
    issuer: &str,
    serial: &Serial,
    revision: u64,
    memlock_need: usize,
) -> Result<CacheStep, String> {
    let Some(mut rc) = cfg.redis.clone() else {
        return Ok(CacheStep::NotShared { bound_ms: cfg.feed.bound_ms });
    };
    rc.command_timeout_ms = rc.command_timeout_ms.max(2000);
    rc.connect_timeout_ms = rc.connect_timeout_ms.max(2000);
    // Tombstones outlive any response signed before the change.
    let ttl = cfg.response.lifetime_secs + cfg.response.backdate_secs;
    let run = || -> Result<(), String> {
        crate::uring::raise_memlock(memlock_need)?;
        let timers = crate::source::redis::TimerRuntime::start().map_err(|e| e.to_string())?;
        let (issuer, serial) = (issuer.to_string(), *serial);
        glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().map_err(|e| e.to_string())?.run(
            async move {
                let _g = timers.enter();
                let client = crate::source::redis::client(&rc)?;
                use fred::prelude::ClientLike;
                let _task = crate::source::redis::client::connect(&client).await;
                let wait = Duration::from_millis(rc.connect_timeout_ms);
                match glommio::timer::timeout(wait, async { Ok(client.wait_for_connect().await) }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("timed out connecting".into()),
                }
                let tomb = || async {
                    crate::source::redis::tombstone(
                        &client,
                        &rc.key_prefix,
                        &issuer,
                        &serial,
                        revision,
                        ttl,
                        true,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
                };
                let r = match tomb().await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        log::warn!("cache step failed ({}); retrying once", redact(&e));
                        tomb().await
                    }
                };
                let _ = client.quit().await;
                r
            },
        )
    };
    run().map(|()| CacheStep::Tombstoned).map_err(|e| redact(&e))
}
