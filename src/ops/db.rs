//! The database's writer side, for operators and the CA: versioned schema
//! migrations, importing an OpenSSL CA database, revoking and un-holding.
//!
//! Every change gives the row a higher `revision` (the schema's triggers
//! assign it: the change's position in the `ocsp_changes` feed), which orders
//! cache writes and fences stale reads: a response signed from an older
//! revision never replaces or outranks a newer one.

use std::io::Write;
use std::path::Path;

use mysql::prelude::Queryable;
use mysql::{Pool, TxOpts};

use crate::ocsp::CertStatus;
use crate::ocsp::{RevocationReason, Serial};
use crate::status::index_txt::parse_line;
use crate::status::mysql::{redact, MysqlConfig};

/// Migrations, in order: (version, name, SQL).
///
/// Each file is sent as one multi-statement query (the server parses trigger
/// bodies itself, so no client-side delimiter games); a migration re-run after
/// failing half-way starts over safely (`IF NOT EXISTS`, `DROP … IF EXISTS`).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "certificates", include_str!("../../migrations/0001_certificates.sql")),
    (2, "change_feed", include_str!("../../migrations/0002_change_feed.sql")),
    (3, "cdn_positions", include_str!("../../migrations/0003_cdn_positions.sql")),
];

/// Opens a small pool on the primary.
pub fn connect(cfg: &MysqlConfig) -> Result<Pool, String> {
    Pool::new(crate::status::mysql::opts(cfg, &cfg.url, 2)?)
        .map_err(|e| format!("cannot connect to MySQL: {}", redact(&e.to_string())))
}

fn sql_err(e: mysql::Error) -> String {
    redact(&e.to_string())
}

/// Applies every migration not yet recorded; returns the versions applied.
pub fn migrate(pool: &Pool) -> Result<Vec<u32>, String> {
    let mut conn = pool.get_conn().map_err(sql_err)?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS ocsp_schema_migrations (version INT UNSIGNED PRIMARY KEY, \
         name VARCHAR(64) NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB",
    )
    .map_err(sql_err)?;
    let done: Vec<u32> = conn.query("SELECT version FROM ocsp_schema_migrations").map_err(sql_err)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        conn.query_drop(sql).map_err(|e| format!("migration {version} ({name}): {}", sql_err(e)))?;
        conn.exec_drop("INSERT INTO ocsp_schema_migrations (version, name) VALUES (?, ?)", (version, name))
            .map_err(sql_err)?;
        applied.push(*version);
    }
    Ok(applied)
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Lines read.
    pub total: usize,
    /// Rows inserted.
    pub inserted: usize,
    /// Rows whose status changed (revision bumped).
    pub changed: usize,
    /// Rows already identical.
    pub unchanged: usize,
    /// Rows revoked in the database that the index.txt calls good, left
    /// revoked (see [`import`]).
    pub kept_revoked: usize,
}

/// Imports an `index.txt` for `issuer`, in transactions of `chunk` rows.
///
/// Idempotent: a row already present with the same status is left alone (its
/// revision is not bumped); a changed status bumps the revision. So an
/// interrupted import is resumed by running it again. A malformed line stops
/// the import before anything of its chunk is written, naming the line.
///
/// The database is authoritative, so an import never turns a revoked row
/// good: a certificate revoked there (by `ocsp-origin revoke`, the admin
/// listener or the CA's own SQL) after the index.txt was written would
/// otherwise be un-revoked by re-importing a stale file, and a revocation is
/// final (RFC 5280 §3.3; only a hold can be lifted, and only on purpose,
/// with `ocsp-origin unrevoke`). Such a row is left as it is, counted in
/// [`ImportSummary::kept_revoked`] and named on `progress` with its line.
/// Good → revoked, another revocation time or reason, and a changed
/// `not_after` are applied.
pub fn import(
    pool: &Pool,
    issuer: &str,
    index: &Path,
    chunk: usize,
    progress: &mut dyn Write,
) -> Result<ImportSummary, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l)).collect();
    let mut parsed = Vec::with_capacity(lines.len());
    for (n, line) in &lines {
        let (serial, rec) = parse_line(line).map_err(|e| format!("{}:{n}: {e}", index.display()))?;
        parsed.push((*n, serial, rec));
    }
    let mut conn = pool.get_conn().map_err(sql_err)?;
    let mut sum = ImportSummary { total: parsed.len(), ..Default::default() };
    let mut kept = Vec::new();
    for (done, part) in parsed.chunks(chunk.max(1)).enumerate() {
        let mut tx = conn.start_transaction(TxOpts::default()).map_err(sql_err)?;
        for (line, serial, rec) in part {
            let (status, at, reason) = match rec.status {
                CertStatus::Good => (0u8, None, None),
                CertStatus::Revoked { at, reason } => (1u8, Some(at), Some(reason as u8)),
            };
            let existing: Option<(u8, Option<u64>, Option<u8>, u64)> = tx
                .exec_first(
                    "SELECT status, revoked_at, reason, not_after FROM ocsp_certificates WHERE issuer = ? AND serial = ? FOR UPDATE",
                    (issuer, serial.as_bytes()),
                )
                .map_err(sql_err)?;
            match existing {
                // The triggers give inserted and changed rows their revision.
                None => {
                    tx.exec_drop(
                        "INSERT INTO ocsp_certificates (issuer, serial, status, revoked_at, reason, not_after) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                        (issuer, serial.as_bytes(), status, at, reason, rec.not_after),
                    )
                    .map_err(sql_err)?;
                    sum.inserted += 1;
                }
                Some(row) if row == (status, at, reason, rec.not_after) => sum.unchanged += 1,
                Some((1, ..)) if status == 0 => kept.push((*line, *serial)),
                Some(_) => {
                    tx.exec_drop(
                        "UPDATE ocsp_certificates SET status = ?, revoked_at = ?, reason = ?, not_after = ? \
                         WHERE issuer = ? AND serial = ?",
                        (status, at, reason, rec.not_after, issuer, serial.as_bytes()),
                    )
                    .map_err(sql_err)?;
                    sum.changed += 1;
                }
            }
        }
        tx.commit().map_err(sql_err)?;
        if !kept.is_empty() {
            // On a line of its own, after the progress line's `\r`.
            let _ = writeln!(progress);
            for (line, serial) in kept.drain(..) {
                let _ = writeln!(
                    progress,
                    "{}:{line}: serial {serial} is revoked in the database; not made good \
                     (only `ocsp-origin unrevoke` lifts certificateHold)",
                    index.display()
                );
                sum.kept_revoked += 1;
            }
        }
        show_progress(progress, "importing", index, ((done + 1) * chunk).min(sum.total), sum.total);
    }
    let _ = writeln!(progress);
    Ok(sum)
}

/// `\r{verb} {path}: n/N (p%)`, rewritten in place after each transaction.
fn show_progress(progress: &mut dyn Write, verb: &str, path: &Path, n: usize, total: usize) {
    let _ = write!(progress, "\r{verb} {}: {n}/{total} ({}%)", path.display(), n * 100 / total.max(1));
    let _ = progress.flush();
}

/// One certificate to revoke (a line of `ocsp-origin revoke --serials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Its serial.
    pub serial: Serial,
    /// Why.
    pub reason: RevocationReason,
    /// When, Unix seconds.
    pub at: u64,
}

/// How many of the serials not in the database [`revoke_many`] names.
pub const NOT_FOUND_NAMED: usize = 10;

/// What a mass revocation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevokeManySummary {
    /// Certificates asked for.
    pub total: usize,
    /// Revoked now (good before, or on hold and now revoked for another reason).
    pub revoked: usize,
    /// Already revoked (a re-run, or revoked by someone else): left as they are.
    pub already_revoked: usize,
    /// Not in the database for this issuer.
    pub not_found: usize,
    /// The first [`NOT_FOUND_NAMED`] of those, in input order.
    pub not_found_serials: Vec<Serial>,
}

/// Revokes every certificate of `revocations` of `issuer`, `batch` rows per
/// transaction, writing progress (`\rrevoking {label}: n/N (p%)`) after each.
///
/// One transaction per batch and one `UPDATE … WHERE serial IN (…)` per
/// (reason, time) in it, so a million rows are a thousand commits rather than
/// a million round trips; the triggers still give every row its own revision
/// and change-feed entry, which is how the responders learn of them. Only
/// good rows, and held rows revoked for another reason, are changed (what
/// [`revoke`] allows), so an interrupted run is resumed by running it again:
/// what it did already counts as already revoked. No row is created: a
/// serial the database does not have is counted (the first few named), not
/// an error. A database error stops the run; the batches committed before it
/// stay done.
pub fn revoke_many(
    pool: &Pool,
    issuer: &str,
    revocations: &[Revocation],
    batch: usize,
    label: &Path,
    progress: &mut dyn Write,
) -> Result<RevokeManySummary, String> {
    use std::collections::{BTreeMap, HashSet};
    let mut conn = pool.get_conn().map_err(sql_err)?;
    let mut sum = RevokeManySummary { total: revocations.len(), ..Default::default() };
    let mut done = 0;
    for part in revocations.chunks(batch.max(1)) {
        let mut tx = conn.start_transaction(TxOpts::default()).map_err(sql_err)?;
        let serials = part.iter().map(|r| r.serial.as_bytes().into());
        let found: HashSet<Vec<u8>> = tx
            .exec(
                format!(
                    "SELECT serial FROM ocsp_certificates WHERE issuer = ? AND serial IN ({})",
                    placeholders(part.len())
                ),
                std::iter::once(issuer.into()).chain(serials).collect::<Vec<mysql::Value>>(),
            )
            .map_err(sql_err)?
            .into_iter()
            .collect();
        let mut groups: BTreeMap<(u8, u64), Vec<&Serial>> = BTreeMap::new();
        for r in part {
            if found.contains(r.serial.as_bytes()) {
                groups.entry((r.reason as u8, r.at)).or_default().push(&r.serial);
            } else {
                sum.not_found += 1;
                if sum.not_found_serials.len() < NOT_FOUND_NAMED {
                    sum.not_found_serials.push(r.serial);
                }
            }
        }
        let mut revoked = 0;
        for (&(reason, at), serials) in &groups {
            // Good rows; and held ones, unless this is another hold.
            let hold = RevocationReason::CertificateHold as u8;
            let which = if reason == hold {
                "status = 0".to_string()
            } else {
                format!("(status = 0 OR reason <=> {hold})")
            };
            let mut params: Vec<mysql::Value> = vec![at.into(), reason.into(), issuer.into()];
            params.extend(serials.iter().map(|s| s.as_bytes().into()));
            tx.exec_drop(
                format!(
                    "UPDATE ocsp_certificates SET status = 1, revoked_at = ?, reason = ? \
                     WHERE issuer = ? AND serial IN ({}) AND {which}",
                    placeholders(serials.len())
                ),
                params,
            )
            .map_err(sql_err)?;
            revoked += tx.affected_rows() as usize;
        }
        tx.commit().map_err(sql_err)?;
        sum.revoked += revoked;
        sum.already_revoked += groups.values().map(Vec::len).sum::<usize>() - revoked;
        done += part.len();
        show_progress(progress, "revoking", label, done, sum.total);
    }
    let _ = writeln!(progress);
    Ok(sum)
}

/// `?, ?, …` (`n` of them).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The row after a status change.
#[derive(Debug, PartialEq, Eq)]
pub struct Changed {
    /// The new revision.
    pub revision: u64,
}

/// Why a status change was not made; callers map each to their own answer
/// (the CLI's message, the admin listener's 404 / 409 / 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No row for this issuer and serial.
    #[error("no certificate {serial} of issuer {issuer:?} in the database")]
    NotFound {
        /// Issuer name.
        issuer: String,
        /// The serial asked for.
        serial: Serial,
    },
    /// The row's current status does not allow the change (already revoked,
    /// not on hold).
    #[error("{0}")]
    Refused(String),
    /// The database failed; the text has any password redacted.
    #[error("{0}")]
    Database(String),
}

fn db_err(e: mysql::Error) -> ChangeError {
    ChangeError::Database(sql_err(e))
}

/// Revokes `serial` of `issuer` at `at` (Unix seconds) for `reason`.
///
/// A good certificate, or one on hold (RFC 5280 allows a held certificate to
/// be revoked for good), can be revoked; an already revoked one cannot.
pub fn revoke(
    pool: &Pool,
    issuer: &str,
    serial: &Serial,
    reason: RevocationReason,
    at: u64,
) -> Result<Changed, ChangeError> {
    change_status(pool, issuer, serial, (1, Some(at), Some(reason as u8)), |status, current| {
        if status == 1 && current != Some(RevocationReason::CertificateHold as u8) {
            return Err(ChangeError::Refused(format!("certificate {serial} is already revoked")));
        }
        Ok(())
    })
}

/// Releases a certificate from hold (only `certificateHold` can be undone,
/// RFC 5280 §5.3.1).
pub fn unrevoke(pool: &Pool, issuer: &str, serial: &Serial) -> Result<Changed, ChangeError> {
    change_status(pool, issuer, serial, (0, None, None), |status, current| {
        match (status, current) {
        (1, Some(r)) if r == RevocationReason::CertificateHold as u8 => Ok(()),
        (0, _) => Err(ChangeError::Refused(format!("certificate {serial} is not revoked"))),
        _ => Err(ChangeError::Refused(format!(
            "certificate {serial} is revoked for a reason other than certificateHold; only a hold can be undone"
        ))),
    }
    })
}

/// Locks the certificate's row, lets `allowed` accept or refuse the change
/// given its current (status, reason), and writes `new` = (status, revoked_at,
/// reason) in one transaction; the triggers give it its new revision.
fn change_status(
    pool: &Pool,
    issuer: &str,
    serial: &Serial,
    new: (u8, Option<u64>, Option<u8>),
    allowed: impl FnOnce(u8, Option<u8>) -> Result<(), ChangeError>,
) -> Result<Changed, ChangeError> {
    let mut conn = pool.get_conn().map_err(db_err)?;
    let mut tx = conn.start_transaction(TxOpts::default()).map_err(db_err)?;
    let row: Option<(u8, Option<u8>)> = tx
        .exec_first(
            "SELECT status, reason FROM ocsp_certificates WHERE issuer = ? AND serial = ? FOR UPDATE",
            (issuer, serial.as_bytes()),
        )
        .map_err(db_err)?;
    let Some((status, reason)) = row else {
        return Err(ChangeError::NotFound { issuer: issuer.to_string(), serial: *serial });
    };
    allowed(status, reason)?;
    // The schema's triggers give the row its new revision (the change's feed
    // position); read it back for the caller.
    tx.exec_drop(
        "UPDATE ocsp_certificates SET status = ?, revoked_at = ?, reason = ? WHERE issuer = ? AND serial = ?",
        (new.0, new.1, new.2, issuer, serial.as_bytes()),
    )
    .map_err(db_err)?;
    let revision: Option<u64> = tx
        .exec_first(
            "SELECT revision FROM ocsp_certificates WHERE issuer = ? AND serial = ?",
            (issuer, serial.as_bytes()),
        )
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(Changed { revision: revision.unwrap_or(0) })
}
