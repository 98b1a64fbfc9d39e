//! The value format: a 20-digit revision and a kind byte, then for a
//! response its 20-digit vouched-at time, validity and statuses, and the DER.
//! Decoding checks the framing only; the reader checks the DER against the
//! header before use ([`crate::ocsp::response::agrees`]).

use crate::cache::{CachedResponse, Origin};
use crate::ocsp::response::Validity;
use crate::ocsp::CertStatus;

/// Bytes before a response's binary part: revision (20 digits), kind,
/// vouched-at (20 digits).
const RESPONSE_HEADER: usize = 41;
/// A tombstone: revision and kind.
const TOMBSTONE_LEN: usize = 21;

/// Encodes a tombstone: "this key's status changed at `revision`; re-sign".
pub fn encode_tombstone(revision: u64) -> Vec<u8> {
    format!("{revision:020}T").into_bytes()
}

/// Encodes a signed response, vouched for at `vouched_at` (its signing time,
/// or a later re-check against the database).
pub fn encode_response(r: &CachedResponse, vouched_at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(RESPONSE_HEADER + 40 + r.statuses.len() * 10 + r.der.len());
    v.extend_from_slice(
        format!("{:020}S{:020}", r.revision, vouched_at.max(r.validity.produced_at)).as_bytes(),
    );
    for t in [r.validity.produced_at, r.validity.this_update, r.validity.next_update, r.refresh_at] {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v.push(r.statuses.len() as u8);
    for s in r.statuses.iter() {
        match *s {
            CertStatus::Good => v.extend_from_slice(&[0; 10]),
            CertStatus::Revoked { at, reason } => {
                v.push(1);
                v.extend_from_slice(&at.to_be_bytes());
                v.push(reason as u8);
            }
        }
    }
    v.extend_from_slice(&r.der);
    v
}

/// What a Redis value holds.
#[derive(Debug)]
pub enum Stored {
    /// A signed response.
    Response(CachedResponse),
    /// A tombstone of this revision.
    Tombstone(u64),
}

/// Decodes a value's header and body; `None` when it is not one of ours
/// (treated as a miss). The DER is not looked into here: see
/// [`crate::ocsp::response::agrees`], which a reader applies before use.
pub fn decode(v: &[u8]) -> Option<Stored> {
    if v.len() < TOMBSTONE_LEN {
        return None;
    }
    let digits = |b: &[u8]| -> Option<u64> { std::str::from_utf8(b).ok()?.parse().ok() };
    let revision = digits(&v[..20])?;
    match v[20] {
        b'T' if v.len() == TOMBSTONE_LEN => Some(Stored::Tombstone(revision)),
        b'S' => {
            let vouched_at = digits(v.get(21..RESPONSE_HEADER)?)?;
            let mut p = RESPONSE_HEADER;
            let u64_at = |p: &mut usize| -> Option<u64> {
                let b = v.get(*p..*p + 8)?;
                *p += 8;
                Some(u64::from_be_bytes(b.try_into().ok()?))
            };
            let produced_at = u64_at(&mut p)?;
            let this_update = u64_at(&mut p)?;
            let next_update = u64_at(&mut p)?;
            let refresh_at = u64_at(&mut p)?;
            let n = *v.get(p)? as usize;
            p += 1;
            let mut statuses = Vec::with_capacity(n);
            for _ in 0..n {
                let rec = v.get(p..p + 10)?;
                p += 10;
                statuses.push(match rec[0] {
                    0 => CertStatus::Good,
                    _ => CertStatus::Revoked {
                        at: u64::from_be_bytes(rec[1..9].try_into().ok()?),
                        reason: crate::ocsp::RevocationReason::from_code(rec[9])?,
                    },
                });
            }
            let der = v.get(p..)?.to_vec();
            let validity = Validity { produced_at, this_update, next_update };
            let mut r = CachedResponse::new(der, validity, refresh_at, Origin::Redis);
            r.statuses = statuses.into();
            r.revision = revision;
            r.vouched_at = vouched_at;
            Some(Stored::Response(r))
        }
        _ => None,
    }
}
