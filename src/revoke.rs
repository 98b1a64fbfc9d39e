//! Making a status change visible beyond the database: the steps after
//! [`crate::db::revoke`] / [`crate::db::unrevoke`] that `ocsp-origin revoke`
//! and the admin listener's `POST /revoke` share.
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
//! ([`crate::control::Control::invalidate`]).

use std::time::Duration;

use crate::config::Config;
use crate::ocsp::{RevocationReason, Serial};
use crate::status::mysql::redact;

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
        crate::server::raise_memlock(memlock_need)?;
        let timers = crate::source::redis::TimerRuntime::start().map_err(|e| e.to_string())?;
        let (issuer, serial) = (issuer.to_string(), *serial);
        glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().map_err(|e| e.to_string())?.run(
            async move {
                let _g = timers.enter();
                let client = crate::source::redis::client(&rc)?;
                use fred::prelude::ClientLike;
                let _task = client.connect();
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

/// An RFC 5280 reason by its OpenSSL name (`keyCompromise`, …), any case.
pub fn parse_reason(name: &str) -> Result<RevocationReason, String> {
    RevocationReason::from_openssl_name(name).ok_or_else(|| {
        format!(
            "unknown reason {name:?} (keyCompromise, cACompromise, affiliationChanged, superseded, \
             cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise, unspecified)"
        )
    })
}

/// A revocation time: RFC 3339 UTC (`2026-11-01T12:00:00Z`), OpenSSL
/// (`261101120000Z`) or Unix seconds.
pub fn parse_time(t: &str) -> Option<u64> {
    let t = t.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Some(s) = crate::status::index_txt::parse_openssl_time(t) {
        return Some(s);
    }
    let b = t.strip_suffix('Z')?;
    let (date, time) = b.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || h.len() != 3 {
        return None;
    }
    let dt = der::DateTime::new(
        d[0].parse().ok()?,
        d[1].parse().ok()?,
        d[2].parse().ok()?,
        h[0].parse().ok()?,
        h[1].parse().ok()?,
        h[2].parse().ok()?,
    )
    .ok()?;
    Some(dt.unix_duration().as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        assert_eq!(parse_time("2026-11-01T12:00:00Z"), Some(1_793_534_400));
        assert_eq!(parse_time("261101120000Z"), Some(1_793_534_400));
        assert_eq!(parse_time(" 1793534400 "), Some(1_793_534_400));
        for bad in ["", "yesterday", "2026-11-01", "2026-13-01T00:00:00Z", "99999999999999999999999"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reasons_by_name() {
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(RevocationReason::KeyCompromise));
        assert!(parse_reason("whim").unwrap_err().contains("unknown reason \"whim\""));
    }
}
