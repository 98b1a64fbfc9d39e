//! The embedded status source: OpenSSL CA databases (`index.txt`, as written by
//! `openssl ca` and easy-rsa) held in memory.
//!
//! Each line has six tab-separated fields:
//!
//! ```text
//! V|R|E <TAB> notAfter <TAB> [revoked-at[,reason[,detail]]] <TAB> serial-hex <TAB> file <TAB> subject
//! ```
//!
//! The revocation field is what `openssl ca` writes: the time, then a reason
//! name, then for three of them a detail — `-crl_hold` writes
//! `holdInstruction,<OID>` (certificateHold), `-crl_compromise`
//! `keyTime,<time>` (keyCompromise, with the key's compromise time) and
//! `-crl_CA_compromise` `CAkeyTime,<time>` (cACompromise). The detail (a hold
//! instruction, an invalidity date) is read past: a response states the
//! revocation time and reason only.
//!
//! Times are `YYMMDDHHMMSSZ` (UTCTime, years 50–99 are 19xx) or
//! `YYYYMMDDHHMMSSZ`. `E` (expired) rows are treated as not revoked; whether an
//! expired certificate is answered at all is the responder's policy, not the
//! store's. A broken line is a load error with its line number: a status
//! database we cannot read fully must not be half-served.

use std::collections::HashMap;
use std::path::Path;

use super::{CertRecord, CertStatus, LookupFuture, Need, StatusSource};
use crate::ocsp::{IssuerId, RevocationReason, Serial};

/// Why an `index.txt` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid OpenSSL CA database entry.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// File path.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// In-memory status table for any number of issuers.
#[derive(Default)]
pub struct IndexStatus {
    records: HashMap<(IssuerId, Serial), CertRecord>,
}

/// Parses `YYMMDDHHMMSSZ` or `YYYYMMDDHHMMSSZ` into Unix seconds.
pub fn parse_openssl_time(t: &str) -> Option<u64> {
    let t = t.strip_suffix('Z')?;
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match t.len() {
        12 => {
            let yy: u16 = t[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &t[2..])
        }
        14 => (t[..4].parse().ok()?, &t[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<u8>().ok();
    let dt = der::DateTime::new(year, n(0)?, n(2)?, n(4)?, n(6)?, n(8)?).ok()?;
    Some(dt.unix_duration().as_secs())
}

/// Formats Unix seconds as `YYMMDDHHMMSSZ` (or the 4-digit-year form past 2049),
/// as `openssl ca` writes them.
pub fn format_openssl_time(unix: u64) -> String {
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(unix))
        .unwrap_or(der::DateTime::INFINITY);
    let body =
        format!("{:02}{:02}{:02}{:02}{:02}Z", dt.month(), dt.day(), dt.hour(), dt.minutes(), dt.seconds());
    if (1950..2050).contains(&dt.year()) {
        format!("{:02}{body}", dt.year() % 100)
    } else {
        format!("{:04}{body}", dt.year())
    }
}

/// Parses one `index.txt` line into a serial and record.
pub fn parse_line(line: &str) -> Result<(Serial, CertRecord), String> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() < 4 {
        return Err(format!("expected 6 tab-separated fields, found {}", fields.len()));
    }
    let not_after =
        parse_openssl_time(fields[1]).ok_or_else(|| format!("bad expiry time {:?}", fields[1]))?;
    let serial = Serial::from_hex(fields[3]).map_err(|e| format!("bad serial {:?}: {e}", fields[3]))?;
    let status = match fields[0] {
        "V" | "E" => CertStatus::Good,
        "R" => {
            let mut parts = fields[2].split(',');
            let at_text = parts.next().unwrap_or("");
            let at = parse_openssl_time(at_text).ok_or_else(|| format!("bad revocation time {at_text:?}"))?;
            let reason = match parts.next() {
                None | Some("") => RevocationReason::Unspecified,
                Some(name) => {
                    openssl_ca_reason(name).ok_or_else(|| format!("unknown revocation reason {name:?}"))?
                }
            };
            CertStatus::Revoked { at, reason }
        }
        other => return Err(format!("unknown status flag {other:?} (expected V, R or E)")),
    };
    Ok((serial, CertRecord { status, not_after, revision: 0 }))
}

/// A reason as `openssl ca` writes it into the revocation field: a CRL
/// reason name, or one of its three pseudo-reasons that carry a detail.
fn openssl_ca_reason(name: &str) -> Option<RevocationReason> {
    match name {
        n if n.eq_ignore_ascii_case("holdInstruction") => Some(RevocationReason::CertificateHold),
        n if n.eq_ignore_ascii_case("keyTime") => Some(RevocationReason::KeyCompromise),
        n if n.eq_ignore_ascii_case("CAkeyTime") => Some(RevocationReason::CaCompromise),
        n => RevocationReason::from_openssl_name(n),
    }
}

impl IndexStatus {
    /// An empty table.
    pub fn new() -> IndexStatus {
        IndexStatus::default()
    }

    /// Loads `path` as the database of `issuer`.
    pub fn load_file(&mut self, issuer: IssuerId, path: &Path) -> Result<usize, IndexError> {
        let p = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| IndexError::Io { path: p.clone(), source })?;
        self.load_str(issuer, &text).map_err(|(line, reason)| IndexError::Line { path: p, line, reason })
    }

    /// Loads database text for `issuer`; on error returns (line number, reason).
    pub fn load_str(&mut self, issuer: IssuerId, text: &str) -> Result<usize, (usize, String)> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (serial, rec) = parse_line(line).map_err(|r| (i + 1, r))?;
            if self.records.insert((issuer, serial), rec).is_some() {
                return Err((i + 1, format!("serial {serial} listed twice")));
            }
            n += 1;
        }
        Ok(n)
    }

    /// Looks a certificate up without going through the async trait.
    pub fn get(&self, issuer: IssuerId, serial: &Serial) -> Option<CertRecord> {
        self.records.get(&(issuer, *serial)).copied()
    }

    /// Number of certificates held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl StatusSource for IndexStatus {
    fn kind(&self) -> &'static str {
        "index_txt"
    }

    /// The table is the one copy: any [`Need`] is met.
    fn lookup(&self, issuer: IssuerId, serial: Serial, _need: Need) -> LookupFuture<'_> {
        let r = self.get(issuer, &serial);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn peek(&self, issuer: IssuerId, serial: &Serial) -> Option<Option<CertRecord>> {
        Some(self.get(issuer, serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = include_str!("../../tests/data/client-requests/index.txt");

    #[test]
    fn loads_test_issuer_index() {
        let mut s = IndexStatus::new();
        assert_eq!(s.load_str(IssuerId(0), INDEX).unwrap(), 2);
        let good = s.get(IssuerId(0), &Serial::from_hex("0A1B2C3D4E5F60718293").unwrap()).unwrap();
        assert_eq!(good.status, CertStatus::Good);
        let rev = s.get(IssuerId(0), &Serial::from_hex("F1E2D3C4B5A6978877").unwrap()).unwrap();
        // 2026-11-01 12:00:00Z
        assert_eq!(
            rev.status,
            CertStatus::Revoked { at: 1_793_534_400, reason: RevocationReason::KeyCompromise }
        );
        assert!(s.get(IssuerId(1), &Serial::from_hex("0A1B2C3D4E5F60718293").unwrap()).is_none());
    }

    #[test]
    fn times_round_trip() {
        for t in ["261101120000Z", "491231235959Z", "700101000000Z", "991231235959Z", "20510101000000Z"] {
            assert_eq!(format_openssl_time(parse_openssl_time(t).unwrap()), t);
        }
        assert_eq!(parse_openssl_time("700101000000Z"), Some(0));
        assert_eq!(parse_openssl_time("700101000000Z"), parse_openssl_time("19700101000000Z"));
        assert!(parse_openssl_time("2611011200Z").is_none());
        assert!(parse_openssl_time("26110112000xZ").is_none());
    }

    /// What `openssl ca -revoke` writes with `-crl_hold`, `-crl_compromise`
    /// and `-crl_CA_compromise`.
    #[test]
    fn openssl_ca_pseudo_reasons_are_read() {
        for (field, want) in [
            ("261101120000Z,holdInstruction,holdInstructionReject", RevocationReason::CertificateHold),
            ("261101120000Z,holdInstruction,1.2.840.10040.2.2", RevocationReason::CertificateHold),
            ("261101120000Z,keyTime,20261031000000Z", RevocationReason::KeyCompromise),
            ("261101120000Z,CAkeyTime,20261030000000Z", RevocationReason::CaCompromise),
            ("261101120000Z,keyCompromise", RevocationReason::KeyCompromise),
            ("261101120000Z,superseded", RevocationReason::Superseded),
            ("261101120000Z", RevocationReason::Unspecified),
        ] {
            let line = format!("R\t361125115433Z\t{field}\t0A\tunknown\t/CN=x");
            let (_, rec) = parse_line(&line).unwrap_or_else(|e| panic!("{field}: {e}"));
            assert_eq!(rec.status, CertStatus::Revoked { at: 1_793_534_400, reason: want }, "{field}");
        }
        assert!(parse_line("R\t361125115433Z\t261101120000Z,whim\t0A\tunknown\t/CN=x").is_err());
    }

    #[test]
    fn bad_lines_name_their_line() {
        let mut s = IndexStatus::new();
        let text = "V\t361125115433Z\t\t01\tunknown\t/CN=a\nX\t361125115433Z\t\t02\tunknown\t/CN=b\n";
        let (line, reason) = s.load_str(IssuerId(0), text).unwrap_err();
        assert_eq!(line, 2);
        assert!(reason.contains("status flag"), "{reason}");
        let dup = "V\t361125115433Z\t\t01\tunknown\t/CN=a\nV\t361125115433Z\t\t01\tunknown\t/CN=a\n";
        assert!(IndexStatus::new().load_str(IssuerId(0), dup).unwrap_err().1.contains("twice"));
        let hold =
            "R\t361125115433Z\t261101120000Z,certificateHold,holdInstructionReject\t03\tunknown\t/CN=c\n";
        let mut s = IndexStatus::new();
        s.load_str(IssuerId(0), hold).unwrap();
        assert!(matches!(
            s.get(IssuerId(0), &Serial::from_hex("03").unwrap()).unwrap().status,
            CertStatus::Revoked { reason: RevocationReason::CertificateHold, .. }
        ));
    }
}
