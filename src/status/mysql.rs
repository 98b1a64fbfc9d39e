//! Certificate status in MariaDB/MySQL, the authoritative production source.
//!
//! The `mysql` crate blocks, so it never runs on a shard: lookups go through a
//! bounded queue to a small pool of OS threads, each holding one pooled
//! connection. A thread takes every lookup waiting (up to `batch`) and answers
//! them with one `SELECT … WHERE issuer = ? AND serial IN (…)` per issuer, so a
//! storm of misses costs a few round trips instead of one per request.
//! Connections are not reset on checkout (no `COM_RESET_CONNECTION` round trip
//! per query) and every socket read, write and connect has a timeout; the
//! shard also bounds its own wait. A full queue, a timeout or a database error
//! is a `StatusError`, which the responder turns into `tryLater` — never a
//! guess. Lookups may go to a read replica (`replica_url`).
//!
//! The schema (`migrations/`) is applied by `ocsp-origin db migrate`; see
//! [`crate::db`] for the writer side (import, revoke).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use super::{CertRecord, CertStatus, LookupFuture, StatusError, StatusSource};
use crate::ocsp::{IssuerId, RevocationReason, Serial};

/// `[mysql]` in the config. `Debug` shows the URLs with their passwords
/// redacted.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// Primary, `mysql://user:password@host:port/database`. Writes (import,
    /// revoke) go here; lookups too unless `replica_url` is set.
    pub url: String,
    /// Optional read replica for lookups.
    #[serde(default)]
    pub replica_url: Option<String>,
    /// Lookup threads (one connection each). Default 4.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Most lookups answered by one query. Default 64.
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// Lookups waiting for a thread; past it a miss gets `tryLater` at once.
    /// Default 4096.
    #[serde(default = "d_queue")]
    pub queue_depth: usize,
    /// Connect, read and write timeout of every query, and the longest a miss
    /// waits for its status, ms. Default 1000.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &redact(&self.url))
            .field("replica_url", &self.replica_url.as_deref().map(redact))
            .field("threads", &self.threads)
            .field("batch", &self.batch)
            .field("queue_depth", &self.queue_depth)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn d_threads() -> usize {
    4
}
fn d_batch() -> usize {
    64
}
fn d_queue() -> usize {
    4096
}
fn d_timeout() -> u64 {
    1000
}

impl MysqlConfig {
    /// Connection options for `url` with this config's timeouts; `pool_max`
    /// connections.
    pub fn opts(&self, url: &str, pool_max: usize) -> Result<Opts, String> {
        let base = Opts::from_url(url).map_err(|e| format!("bad MySQL URL: {}", redact(&e.to_string())))?;
        let t = Some(Duration::from_millis(self.timeout_ms));
        let constraints = PoolConstraints::new(1, pool_max.max(1)).ok_or("bad pool size")?;
        Ok(OptsBuilder::from_opts(base)
            .tcp_connect_timeout(t)
            .read_timeout(t)
            .write_timeout(t)
            .pool_opts(PoolOpts::default().with_constraints(constraints).with_reset_connection(false))
            .into())
    }
}

/// Replaces the password of every URL in `text` (`scheme://user:password@host`)
/// with `***`: for MySQL and Redis URLs and any error text that might quote
/// one. The user info ends at the authority's last `@` (a password may hold
/// an unescaped `@`); the authority ends at `/`, `?`, `#` or whitespace.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

struct Lookup {
    issuer: IssuerId,
    serial: Serial,
    reply: oneshot::Sender<Result<Option<CertRecord>, StatusError>>,
}

/// The MariaDB/MySQL status source.
pub struct MysqlStatus {
    tx: flume::Sender<Lookup>,
    timeout: Duration,
}

impl MysqlStatus {
    /// Connects (checking the schema is there) and starts the lookup threads.
    /// `names` maps issuer ids to the names stored in the `issuer` column.
    pub fn start(cfg: &MysqlConfig, names: HashMap<IssuerId, String>) -> Result<MysqlStatus, String> {
        let url = cfg.replica_url.as_deref().unwrap_or(&cfg.url);
        let pool = Pool::new(cfg.opts(url, cfg.threads)?).map_err(|e| redact(&e.to_string()))?;
        {
            let mut conn = pool.get_conn().map_err(|e| redact(&e.to_string()))?;
            conn.query_drop("SELECT 1 FROM ocsp_certificates LIMIT 1").map_err(|e| {
                format!("{} (has `ocsp-origin db migrate` been run?)", redact(&e.to_string()))
            })?;
        }
        let (tx, rx) = flume::bounded::<Lookup>(cfg.queue_depth.max(1));
        let names = Arc::new(names);
        for i in 0..cfg.threads.max(1) {
            let (rx, pool, names, batch) = (rx.clone(), pool.clone(), names.clone(), cfg.batch.max(1));
            std::thread::Builder::new()
                .name(format!("mysql-{i}"))
                .spawn(move || lookup_thread(rx, pool, names, batch))
                .map_err(|e| e.to_string())?;
        }
        Ok(MysqlStatus { tx, timeout: Duration::from_millis(cfg.timeout_ms) })
    }
}

fn lookup_thread(
    rx: flume::Receiver<Lookup>,
    pool: Pool,
    names: Arc<HashMap<IssuerId, String>>,
    batch: usize,
) {
    let mut jobs: Vec<Lookup> = Vec::with_capacity(batch);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        jobs.retain(|j| !j.reply.is_canceled());
        let started = Instant::now();
        let result = answer_batch(&pool, &names, &jobs);
        if started.elapsed() > Duration::from_secs(1) {
            log::warn!("status lookup of {} serials took {:?}", jobs.len(), started.elapsed());
        }
        match result {
            Ok(mut found) => {
                for j in jobs.drain(..) {
                    let _ = j.reply.send(Ok(found.remove(&(j.issuer, j.serial))));
                }
            }
            Err(e) => {
                log::warn!("status lookup failed: {e}");
                for j in jobs.drain(..) {
                    let _ = j.reply.send(Err(StatusError::Unavailable(e.clone())));
                }
            }
        }
    }
}

type Row = (Vec<u8>, u8, Option<u64>, Option<u8>, u64, u64);

fn answer_batch(
    pool: &Pool,
    names: &HashMap<IssuerId, String>,
    jobs: &[Lookup],
) -> Result<HashMap<(IssuerId, Serial), CertRecord>, String> {
    let mut by_issuer: HashMap<IssuerId, Vec<Serial>> = HashMap::new();
    for j in jobs {
        by_issuer.entry(j.issuer).or_default().push(j.serial);
    }
    let mut conn = pool.get_conn().map_err(|e| redact(&e.to_string()))?;
    let mut found = HashMap::new();
    for (issuer, serials) in by_issuer {
        let Some(name) = names.get(&issuer) else { continue };
        let marks = vec!["?"; serials.len()].join(",");
        let sql = format!(
            "SELECT serial, status, revoked_at, reason, not_after, revision FROM ocsp_certificates \
             WHERE issuer = ? AND serial IN ({marks})"
        );
        let mut params: Vec<mysql::Value> = Vec::with_capacity(serials.len() + 1);
        params.push(name.as_str().into());
        params.extend(serials.iter().map(|s| mysql::Value::from(s.as_bytes())));
        let rows: Vec<Row> = conn.exec(sql, params).map_err(|e| redact(&e.to_string()))?;
        for (serial, status, revoked_at, reason, not_after, revision) in rows {
            let Ok(serial) = Serial::from_der_content(&serial) else { continue };
            let status = match status {
                0 => CertStatus::Good,
                _ => CertStatus::Revoked {
                    at: revoked_at.unwrap_or(0),
                    reason: reason.and_then(reason_from_code).unwrap_or(RevocationReason::Unspecified),
                },
            };
            found.insert((issuer, serial), CertRecord { status, not_after, revision });
        }
    }
    Ok(found)
}

/// RFC 5280 CRLReason code → reason.
pub fn reason_from_code(code: u8) -> Option<RevocationReason> {
    use RevocationReason::*;
    Some(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        6 => CertificateHold,
        8 => RemoveFromCrl,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        _ => return None,
    })
}

impl StatusSource for MysqlStatus {
    fn lookup(&self, issuer: IssuerId, serial: Serial) -> LookupFuture<'_> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.try_send(Lookup { issuer, serial, reply });
        let timeout = self.timeout;
        Box::pin(async move {
            if let Err(e) = sent {
                return Err(match e {
                    flume::TrySendError::Full(_) => {
                        StatusError::Unavailable("status lookup queue full".into())
                    }
                    flume::TrySendError::Disconnected(_) => {
                        StatusError::Unavailable("status threads gone".into())
                    }
                });
            }
            let answer = futures_lite::future::or(async { Some(rx.await) }, async {
                glommio::timer::sleep(timeout).await;
                None
            })
            .await;
            match answer {
                None => Err(StatusError::Timeout),
                Some(Err(_)) => Err(StatusError::Unavailable("status thread dropped the lookup".into())),
                Some(Ok(r)) => r,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("mysql://ocsp:s3cret@db:3306/ocsp"), "mysql://ocsp:***@db:3306/ocsp");
        assert_eq!(redact("mysql://root@127.0.0.1/ocsp"), "mysql://root@127.0.0.1/ocsp");
        assert_eq!(redact("no url here"), "no url here");
        // Every URL in a text, not just the first.
        assert_eq!(
            redact("primary mysql://a:p1@x/db, replica mysql://b:p2@y/db failed"),
            "primary mysql://a:***@x/db, replica mysql://b:***@y/db failed"
        );
        // An '@' in the text before the URL does not shift what is hidden.
        assert_eq!(
            redact("user root@localhost: redis://:p3@h:6379"),
            "user root@localhost: redis://:***@h:6379"
        );
    }

    /// `redact` used to cut the user info at the first `@`, so a password
    /// holding an unescaped `@` leaked its tail (`mysql://u:***@ss@h`).
    #[test]
    fn regression_password_with_an_at_sign_is_hidden_whole() {
        assert_eq!(redact("mysql://u:p@ss@db:3306/x"), "mysql://u:***@db:3306/x");
        assert_eq!(redact("bad URL \"redis://:p@ss@h\""), "bad URL \"redis://:***@h\"");
    }

    #[test]
    fn reason_codes() {
        for c in [0u8, 1, 2, 3, 4, 5, 6, 8, 9, 10] {
            assert_eq!(reason_from_code(c).map(|r| r as u8), Some(c));
        }
        assert_eq!(reason_from_code(7), None);
    }
}
