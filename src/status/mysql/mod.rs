//! Certificate status in MariaDB/MySQL, the authoritative production source.
//!
//! The `mysql` crate blocks, so it never runs on a shard: lookups go through a
//! bounded queue to a small pool of OS threads, each holding its own
//! connection (opened on first use, dropped after any error so a half-read
//! answer is never mistaken for the next one). A shard hands over the lookups
//! of one turn as one message ([`gather`]); one thread at a time collects the
//! lookups waiting (under a miss storm, for up to `batch_wait_us` more) and
//! answers them `batch` at a time with one `SELECT … WHERE issuer = ? AND
//! serial IN (…)` per issuer, so a storm of misses costs a few queries instead
//! of one per request. Every socket read, write and connect has a
//! timeout; the shard also bounds its own wait. A full queue, a timeout or a
//! database error is a `StatusError`, which the responder turns into
//! `tryLater` — never a guess.
//!
//! **Read replicas.** With `replica_url` lookups read the replica, but never
//! an older row than the node knows of: each lookup carries the newest
//! revision the change feed, a Redis tombstone or the response being replaced
//! has shown for its certificate ([`Need::at_least`]), and
//! a replica row below it (or missing while a change is known) is read again
//! from the primary, all of a batch's in one query; a primary row still below
//! it is [`StatusError::Behind`] (`tryLater`). A lag monitor measures how far
//! the replica is behind (on the change feed both hold, no replication
//! privileges needed); past `max_replica_lag_ms`, or while the replica cannot
//! be read, lookups go to the primary.
//!
//! **Failure policy.** A failed batch marks the database down: from then on a
//! lookup fails at once (the shard serves what L1 and Redis hold and answers
//! other misses `tryLater` without waiting), and one prober thread tries the
//! database every [`PROBE_INTERVAL`] until it answers. [`MysqlStatus::start`]
//! does not need the database (a node can start during an outage and serve
//! what Redis holds); it is then down from the start. [`MysqlStatus::check`]
//! is the strict test `check-config` makes.
//!
//! The schema (`migrations/`) is applied by `ocsp-origin db migrate`; see
//! [`crate::ops::db`] for the writer side (import, revoke).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts};

mod gather;
mod health;
mod lookup;
mod replica;

use gather::Queue;
pub use health::PROBE_INTERVAL;
use health::{probe, prober, refused_by_config, Health, SCHEMA_PROBE};
use lookup::lookup_thread;
pub use replica::LAG_INTERVAL;
use replica::{lag_monitor, Replica};

use super::{CertRecord, LookupFuture, Need, StatusError, StatusSource};
pub use crate::config::{redact, MysqlConfig};
use crate::ocsp::{IssuerId, Serial};
use crate::status::StatusGauge;

/// Connection options for `url` with `[mysql]`'s timeouts; `pool_max`
/// connections.
pub fn opts(config: &MysqlConfig, url: &str, pool_max: usize) -> Result<Opts, String> {
    let base = Opts::from_url(url).map_err(|e| format!("bad MySQL URL: {}", redact(&e.to_string())))?;
    let t = Some(Duration::from_millis(config.timeout_ms));
    let constraints = PoolConstraints::new(1, pool_max.max(1)).ok_or("bad pool size")?;
    Ok(OptsBuilder::from_opts(base)
        .tcp_connect_timeout(t)
        .read_timeout(t)
        .write_timeout(t)
        .pool_opts(PoolOpts::default().with_constraints(constraints).with_reset_connection(false))
        .into())
}

struct Lookup {
    issuer: IssuerId,
    serial: Serial,
    /// How fresh the answer must be.
    need: Need,
    reply: oneshot::Sender<Result<Option<CertRecord>, StatusError>>,
}

/// Connection options of each side of a read-replica set-up.
#[derive(Clone)]
struct Sides {
    primary: Opts,
    /// `None`: lookups read the primary.
    replica: Option<Opts>,
    max_lag_ms: u64,
    /// `[mysql] batch`: the longest `IN` list.
    batch: usize,
}

/// The MariaDB/MySQL status source.
pub struct MysqlStatus {
    queue: Queue,
    timeout: Duration,
    health: Arc<Health>,
    replica: Arc<Replica>,
    has_replica: bool,
}

impl MysqlStatus {
    /// Checks that the database can be reached and the schema is there (what
    /// `check-config` reports; `serve` starts without it, see [`MysqlStatus::start`]).
    pub fn check(cfg: &MysqlConfig) -> Result<(), String> {
        for url in std::iter::once(&cfg.url).chain(cfg.replica_url.as_ref()) {
            let mut conn = Conn::new(opts(cfg, url, 1)?).map_err(|e| redact(&e.to_string()))?;
            probe(&mut conn)?;
        }
        Ok(())
    }

    /// Starts the lookup threads, the prober and (with a replica) the lag
    /// monitor. `names` maps issuer ids to the names stored in the `issuer`
    /// column.
    ///
    /// Does not need the database: connections are opened on first use, and
    /// a database that cannot be reached now is logged and treated like one
    /// that went away (misses answer `tryLater` at once until a probe
    /// succeeds), so a node can start, and serve what Redis holds, while the
    /// database is down. A database that answers but refuses (wrong
    /// credentials, no such database or schema), a bad URL or a failure to
    /// start threads is an error.
    pub fn start(cfg: &MysqlConfig, names: HashMap<IssuerId, String>) -> Result<MysqlStatus, String> {
        let sides = Sides {
            primary: opts(cfg, &cfg.url, 1)?,
            replica: cfg.replica_url.as_deref().map(|u| opts(cfg, u, 1)).transpose()?,
            max_lag_ms: cfg.max_replica_lag_ms,
            batch: cfg.batch.max(1),
        };
        let (wake, woken) = flume::bounded(1);
        let health = Arc::new(Health { down: AtomicBool::new(false), since: Mutex::new(None), wake });
        let replica = Arc::new(Replica::default());
        let (queue, intake) = Queue::new(cfg.queue_depth, cfg.batch.max(1));
        let names = Arc::new(names);
        for i in 0..cfg.threads.max(1) {
            let (rx, sides, names, health, replica) =
                (intake.clone(), sides.clone(), names.clone(), health.clone(), replica.clone());
            let batch = cfg.batch.max(1);
            let window = Duration::from_micros(cfg.batch_wait_us);
            std::thread::Builder::new()
                .name(format!("mysql-{i}"))
                .spawn(move || lookup_thread(rx, sides, names, batch, window, health, replica))
                .map_err(|e| e.to_string())?;
        }
        // The prober tries each side lookups may use: a batch that failed
        // on both can go on as soon as either answers.
        let probe_opts: Vec<Opts> = sides.replica.iter().cloned().chain([sides.primary.clone()]).collect();
        let weak = Arc::downgrade(&health);
        std::thread::Builder::new()
            .name("mysql-probe".into())
            .spawn(move || prober(probe_opts, weak, woken))
            .map_err(|e| e.to_string())?;
        if let Some(replica_opts) = sides.replica.clone() {
            let (primary, weak) = (sides.primary.clone(), Arc::downgrade(&replica));
            std::thread::Builder::new()
                .name("mysql-lag".into())
                .spawn(move || lag_monitor(primary, replica_opts, weak))
                .map_err(|e| e.to_string())?;
        }
        // Find out now whether it is reachable, so the log says so at start-up
        // and the first misses need not find out the slow way. A database
        // that answers "no" (wrong credentials, no such database or table)
        // is a config error, not an outage: start-up stops and says so.
        for opts in std::iter::once(&sides.primary).chain(sides.replica.as_ref()) {
            let first = Conn::new(opts.clone()).and_then(|mut c| c.query_drop(SCHEMA_PROBE));
            match first {
                Ok(()) => {}
                Err(e) if refused_by_config(&e) => {
                    return Err(format!(
                        "{} (has `ocsp-origin db migrate` been run?)",
                        redact(&e.to_string())
                    ))
                }
                Err(e) => health.trip(&format!("at start-up: {}", redact(&e.to_string()))),
            }
        }
        Ok(MysqlStatus {
            queue,
            timeout: Duration::from_millis(cfg.timeout_ms),
            health,
            replica,
            has_replica: sides.replica.is_some(),
        })
    }
}

impl StatusSource for MysqlStatus {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn is_up(&self) -> bool {
        !self.health.is_down()
    }

    fn has_revisions(&self) -> bool {
        true
    }

    fn gauges(&self) -> Vec<StatusGauge> {
        let r = &self.replica;
        let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut g = vec![
            StatusGauge {
                name: "fenced_rereads_total",
                help: "Lookups read again from the primary because the replica's row was older \
                       than a change this node knows of.",
                value: count(&r.fenced_rereads),
            },
            StatusGauge {
                name: "lookups_total",
                help: "Status lookups the lookup threads sent to the database (answered or failed).",
                value: count(&r.lookups),
            },
            StatusGauge {
                name: "queries_total",
                help: "SELECTs the lookup threads made for them (lookups_total / queries_total: \
                       certificates per query).",
                value: count(&r.queries),
            },
            StatusGauge {
                name: "behind_total",
                help: "Lookups answered tryLater because even the primary's row was older than a \
                       change this node knows of.",
                value: count(&r.behind),
            },
        ];
        if self.has_replica {
            let lag = r.lag_ms.load(Ordering::Relaxed);
            g.push(StatusGauge {
                name: "replica_lag_seconds",
                help: "How far the read replica is behind the primary, measured on the change \
                       feed (+Inf: the replica cannot be read).",
                value: if lag == u64::MAX { f64::INFINITY } else { lag as f64 / 1000.0 },
            });
            g.push(StatusGauge {
                name: "routed_to_primary_total",
                help: "Lookups sent to the primary because the replica lagged past \
                       mysql.max_replica_lag_ms or could not be read.",
                value: count(&r.routed_to_primary),
            });
        }
        g
    }

    fn lookup(&self, issuer: IssuerId, serial: Serial, need: Need) -> LookupFuture<'_> {
        if self.health.is_down() {
            // Known down: no queueing, no waiting; the prober finds out when
            // it is back.
            return Box::pin(std::future::ready(Err(StatusError::Unavailable(
                "status database unreachable".into(),
            ))));
        }
        let (reply, rx) = oneshot::channel();
        // The first lookup of this turn hands the turn's batch over once
        // every other ready task has run (and made its lookups); dropped
        // unpolled, the guard hands it over too.
        let hand_off = self.queue.push(Lookup { issuer, serial, need, reply });
        let timeout = self.timeout;
        Box::pin(async move {
            if let Some(hand_off) = hand_off {
                futures_lite::future::yield_now().await;
                drop(hand_off);
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
    use crate::ocsp::RevocationReason;
    use std::time::Instant;

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

    /// Nothing listens on port 1: start-up goes on, `check` refuses, and
    /// lookups fail at once instead of each waiting for a connection.
    #[test]
    fn unreachable_at_start_up_fails_fast() {
        let cfg: MysqlConfig =
            toml::from_str("url = \"mysql://root@127.0.0.1:1/x\"\ntimeout_ms = 300").unwrap();
        assert!(MysqlStatus::check(&cfg).is_err());
        let t = Instant::now();
        let status = MysqlStatus::start(&cfg, HashMap::new()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "start-up waited {:?}", t.elapsed());
        for _ in 0..3 {
            let t = Instant::now();
            let r = futures::executor::block_on(status.lookup(
                IssuerId(0),
                Serial::from_hex("01").unwrap(),
                Need::default(),
            ));
            assert!(matches!(r, Err(StatusError::Unavailable(_))), "{r:?}");
            assert!(t.elapsed() < Duration::from_millis(50), "failed in {:?}", t.elapsed());
        }
    }

    #[test]
    fn reason_codes() {
        for c in [0u8, 1, 2, 3, 4, 5, 6, 8, 9, 10] {
            assert_eq!(RevocationReason::from_code(c).map(|r| r as u8), Some(c));
        }
        assert_eq!(RevocationReason::from_code(7), None);
    }
}
