//! The lookup threads: each takes every waiting lookup (up to `batch`),
//! answers them with one query per issuer on the side the fences allow, and
//! reads rows older than a known change again from the primary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use super::gather::Intake;
use super::health::Health;
use super::replica::Replica;
use super::{Lookup, Sides};
use crate::config::redact;
use crate::ocsp::{CertStatus, IssuerId, RevocationReason, Serial};
use crate::status::{CertRecord, StatusError};

/// This thread's connections, opened on first use and dropped after any
/// error: a connection whose query failed half-way (a read timeout) may still
/// have the rest of that answer in flight, so it is never reused.
#[derive(Default)]
pub(super) struct Conns {
    primary: Option<Conn>,
    replica: Option<Conn>,
}

pub(super) fn lookup_thread(
    rx: Intake,
    sides: Sides,
    names: Arc<HashMap<IssuerId, String>>,
    batch: usize,
    window: Duration,
    health: Arc<Health>,
    replica: Arc<Replica>,
) {
    let mut conns = Conns::default();
    while let Some(mut jobs) = rx.take(batch, window) {
        while !jobs.is_empty() {
            let rest = jobs.split_off(jobs.len().min(batch));
            // Just before its query: a shard that stopped waiting meanwhile
            // costs no database work.
            jobs.retain(|j| !j.reply.is_canceled());
            if !jobs.is_empty() {
                serve_jobs(&mut conns, &sides, &names, jobs, &health, &replica);
            }
            jobs = rest;
        }
    }
}

/// Answers up to `batch` lookups with one query per issuer and side.
fn serve_jobs(
    conns: &mut Conns,
    sides: &Sides,
    names: &HashMap<IssuerId, String>,
    mut jobs: Vec<Lookup>,
    health: &Health,
    replica: &Replica,
) {
    if health.is_down() {
        // Lookups queued before the trip: answer them at once too.
        for j in jobs.drain(..) {
            let _ = j.reply.send(Err(StatusError::Unavailable("status database unreachable".into())));
        }
        return;
    }
    replica.lookups.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    let started = Instant::now();
    let result = serve_batch(conns, sides, names, &jobs, replica);
    if started.elapsed() > Duration::from_secs(1) {
        log::warn!("status lookup of {} serials took {:?}", jobs.len(), started.elapsed());
    }
    match result {
        Ok(answers) => {
            for (j, a) in jobs.drain(..).zip(answers) {
                let _ = j.reply.send(a);
            }
        }
        Err(e) => {
            health.trip(&e);
            for j in jobs.drain(..) {
                let _ = j.reply.send(Err(StatusError::Unavailable(e.clone())));
            }
        }
    }
}

/// What one batch needs from a side: (issuer, serial) pairs.
/// Rows found, by certificate; a row that cannot be answered from (revoked
/// without a revocation time) is an error of its own job only.
pub(super) type Found = HashMap<(IssuerId, Serial), Result<CertRecord, String>>;

/// Answers a batch, in job order. Lookups read the replica while it is within
/// `max_replica_lag_ms` (else the primary); a job whose replica row is older
/// than its `at_least` (or missing while the node knows of a change), or
/// that asked for the primary, is read from the primary, all such jobs in one
/// query; a primary row still older fails that job with
/// [`StatusError::Behind`]. The batch fails as a whole only when the side it
/// needed cannot be read.
pub(super) fn serve_batch(
    conns: &mut Conns,
    sides: &Sides,
    names: &HashMap<IssuerId, String>,
    jobs: &[Lookup],
    replica: &Replica,
) -> Result<Vec<Result<Option<CertRecord>, StatusError>>, String> {
    let lag = replica.lag_ms.load(Ordering::Relaxed);
    let via_replica = match &sides.replica {
        Some(_) if lag <= sides.max_lag_ms => true,
        Some(_) => {
            replica.routed_to_primary.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            false
        }
        None => false,
    };
    let key = |j: &Lookup| (j.issuer, j.serial);
    let mut found = Found::new();
    let mut to_primary: Vec<(IssuerId, Serial)> = jobs.iter().filter(|j| j.need.primary).map(key).collect();
    let replica_jobs: Vec<&Lookup> = jobs.iter().filter(|j| !j.need.primary).collect();
    match (&sides.replica, via_replica) {
        (Some(opts), true) if !replica_jobs.is_empty() => {
            let keys: Vec<(IssuerId, Serial)> = replica_jobs.iter().map(|j| key(j)).collect();
            match answer_batch(&mut conns.replica, opts, names, &keys, sides.batch, &replica.queries) {
                Ok(f) => {
                    found = f;
                    let stale = |j: &Lookup| match found.get(&key(j)) {
                        Some(Ok(r)) => r.revision < j.need.at_least,
                        // A bad replica row: the primary's is the one to judge.
                        Some(Err(_)) => true,
                        None => j.need.at_least > 0,
                    };
                    let again: Vec<(IssuerId, Serial)> =
                        replica_jobs.iter().filter(|j| stale(j)).map(|j| key(j)).collect();
                    replica.fenced_rereads.fetch_add(again.len() as u64, Ordering::Relaxed);
                    to_primary.extend(again);
                }
                // The replica failed: the primary answers this batch (the lag
                // monitor moves later ones over within a second).
                Err(e) => {
                    log::debug!("replica lookup failed ({e}); reading the primary");
                    to_primary.extend(keys);
                }
            }
        }
        _ => to_primary.extend(replica_jobs.iter().map(|j| key(j))),
    }
    if !to_primary.is_empty() {
        for k in &to_primary {
            found.remove(k);
        }
        found.extend(answer_batch(
            &mut conns.primary,
            &sides.primary,
            names,
            &to_primary,
            sides.batch,
            &replica.queries,
        )?);
    }
    Ok(jobs
        .iter()
        .map(|j| match found.get(&key(j)) {
            Some(Ok(r)) if r.revision < j.need.at_least => {
                replica.behind.fetch_add(1, Ordering::Relaxed);
                Err(StatusError::Behind { found: r.revision, need: j.need.at_least })
            }
            Some(Ok(r)) => Ok(Some(*r)),
            Some(Err(why)) => Err(StatusError::BadRow(why.clone())),
            // Absent on the primary: deleted or never issued. `unauthorized`
            // is never a wrong "good".
            None => Ok(None),
        })
        .collect())
}

/// Answers a batch on one side's connection (opening one if it has none).
/// Any error drops the connection. A kept connection that turns out dead
/// (the server restarted: EOF, reset) is replaced and the batch tried once
/// more; a timeout is not retried (the database is slow or stopped, and the
/// shard has stopped waiting).
pub(super) fn answer_batch(
    conn: &mut Option<Conn>,
    opts: &Opts,
    names: &HashMap<IssuerId, String>,
    keys: &[(IssuerId, Serial)],
    batch: usize,
    queries: &AtomicU64,
) -> Result<Found, String> {
    let reused = conn.is_some();
    let mut attempt = || {
        let result = query_batch(conn, opts, names, keys, batch, queries);
        if result.is_err() {
            *conn = None;
        }
        result
    };
    match attempt() {
        Err(e) if reused && is_stale_connection(&e) => {
            log::debug!("status connection was dead ({}); reconnecting", redact(&e.to_string()));
            attempt().map_err(|e| redact(&e.to_string()))
        }
        other => other.map_err(|e| redact(&e.to_string())),
    }
}

/// A connection the server closed while it sat idle, as opposed to a database
/// that is slow or stopped now (a socket timeout, which the driver reports as
/// `WouldBlock` or `TimedOut`, possibly inside a codec error).
pub(super) fn is_stale_connection(e: &mysql::Error) -> bool {
    let timed_out = |io: &std::io::Error| {
        matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
    };
    match e {
        mysql::Error::IoError(io) => !timed_out(io),
        // The codec's own error type is not exported; its `source` is the
        // socket error when there is one.
        mysql::Error::CodecError(c) => {
            !matches!(std::error::Error::source(c).and_then(|s| s.downcast_ref()), Some(io) if timed_out(io))
        }
        _ => false,
    }
}

pub(super) type Row = (Vec<u8>, u8, Option<u64>, Option<u8>, u64, u64);

/// Pads a list of serials to the next power of two (at most `batch`) by
/// repeating its last one, so a thread's queries take one of a few shapes
/// (`IN` lists of 1, 2, 4, … marks; log2(`batch`) + 2 at most) and each is
/// prepared once and kept in the connection's statement cache (32 by
/// default): lists of every length from 1 to `batch` would each be a
/// statement of their own, prepared, evicted and closed again and again. A
/// serial named twice matches its row once.
pub(super) fn pad(serials: &mut Vec<Serial>, batch: usize) {
    if let Some(&last) = serials.last() {
        let len = serials.len();
        serials.resize(len.next_power_of_two().min(batch).max(len), last);
    }
}

pub(super) fn query_batch(
    conn: &mut Option<Conn>,
    opts: &Opts,
    names: &HashMap<IssuerId, String>,
    keys: &[(IssuerId, Serial)],
    batch: usize,
    queries: &AtomicU64,
) -> Result<Found, mysql::Error> {
    let mut by_issuer: HashMap<IssuerId, Vec<Serial>> = HashMap::new();
    for (issuer, serial) in keys {
        by_issuer.entry(*issuer).or_default().push(*serial);
    }
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(Conn::new(opts.clone())?),
    };
    let mut found = HashMap::new();
    for (issuer, mut serials) in by_issuer {
        let Some(name) = names.get(&issuer) else { continue };
        pad(&mut serials, batch);
        let marks = vec!["?"; serials.len()].join(",");
        let sql = format!(
            "SELECT serial, status, revoked_at, reason, not_after, revision FROM ocsp_certificates \
             WHERE issuer = ? AND serial IN ({marks})"
        );
        let mut params: Vec<mysql::Value> = Vec::with_capacity(serials.len() + 1);
        params.push(name.as_str().into());
        params.extend(serials.iter().map(|s| mysql::Value::from(s.as_bytes())));
        queries.fetch_add(1, Ordering::Relaxed);
        let rows: Vec<Row> = conn.exec(sql, params)?;
        for (serial, status, revoked_at, reason, not_after, revision) in rows {
            let Ok(serial) = Serial::from_der_content(&serial) else { continue };
            let record = match (status, revoked_at) {
                (0, _) => Ok(CertStatus::Good),
                (_, Some(at)) => Ok(CertStatus::Revoked {
                    at,
                    reason: reason
                        .and_then(RevocationReason::from_code)
                        .unwrap_or(RevocationReason::Unspecified),
                }),
                // Revoked, but when? Not 1970 (the time is what a relying
                // party judges signatures made before it by): an error,
                // `tryLater`, loud, until the row is mended.
                (_, None) => {
                    log::error!(
                        "ocsp_certificates row {name}/{serial} is revoked with a NULL revoked_at: answering tryLater until it is set"
                    );
                    Err(format!("{name}/{serial} is revoked with a NULL revoked_at"))
                }
            };
            found.insert((issuer, serial), record.map(|status| CertRecord { status, not_after, revision }));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every list length from 1 to 64 becomes one of seven query shapes,
    /// each holding every serial asked for.
    #[test]
    fn lists_are_padded_to_a_few_shapes() {
        let mut shapes = std::collections::BTreeSet::new();
        for n in 1..=64u8 {
            let asked: Vec<Serial> = (1..=n).map(|i| Serial::from_magnitude(&[i]).unwrap()).collect();
            let mut padded = asked.clone();
            pad(&mut padded, 64);
            assert!(
                padded.len().is_power_of_two()
                    && padded.len() >= asked.len()
                    && padded.len() < 2 * asked.len().max(1) + 1
            );
            assert_eq!(&padded[..asked.len()], &asked[..]);
            assert!(padded[asked.len()..].iter().all(|s| s == asked.last().unwrap()));
            shapes.insert(padded.len());
        }
        assert_eq!(shapes.into_iter().collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 64]);
        let mut none: Vec<Serial> = Vec::new();
        pad(&mut none, 64);
        assert!(none.is_empty());
        // A batch that is not a power of two caps the padding at itself.
        let mut forty: Vec<Serial> = (1..=40u8).map(|i| Serial::from_magnitude(&[i]).unwrap()).collect();
        pad(&mut forty, 50);
        assert_eq!(forty.len(), 50);
    }
}
