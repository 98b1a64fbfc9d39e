//! Admission, the first step of the chain: turns request bytes into an
//! admitted [`Query`], or says why not (malformed → `malformedRequest`; an
//! issuer we don't serve, a serial no CA issues or outside the configured
//! prefixes → `unauthorized`). Nothing past this point sees raw input.
//!
//! A query's CertIDs are put in one canonical order, each once: the cache key
//! (and the response) is then the same for every order and repetition of a
//! list, so permutations of a few public serials do not make new cache keys
//! that each need a fresh signature. RFC 6960 does not tie the order of the
//! `SingleResponse`s to the request's; clients find theirs by CertID.

use crate::error::OcspError;
use crate::ocsp::issuer::Issuers;
use crate::ocsp::{request, CertId, Serial};

use super::Query;

/// What admission checks besides the request's own validity.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// CertIDs per request (`limits.max_cert_ids`).
    pub max_cert_ids: usize,
    /// Serial prefixes (`limits.serial_prefixes`); empty admits every serial.
    pub serial_prefixes: Vec<SerialPrefix>,
}

impl Policy {
    /// The policy of `limits` (already validated: every prefix is hex).
    pub fn from_config(limits: &crate::config::LimitsConfig) -> Policy {
        Policy {
            max_cert_ids: limits.max_cert_ids,
            serial_prefixes: limits.serial_prefixes.iter().filter_map(|p| SerialPrefix::parse(p)).collect(),
        }
    }
}

/// A leading run of hex digits of a serial's magnitude, as the serial is
/// written (two digits an octet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPrefix {
    nibbles: Box<[u8]>,
}

impl SerialPrefix {
    /// Parses hex digits (any case); `None` if empty or not hex.
    pub fn parse(text: &str) -> Option<SerialPrefix> {
        let nibbles: Option<Box<[u8]>> = text.chars().map(|c| c.to_digit(16).map(|d| d as u8)).collect();
        nibbles.filter(|n| !n.is_empty()).map(|nibbles| SerialPrefix { nibbles })
    }

    /// Whether `serial`'s hex form starts with this prefix.
    pub fn matches(&self, serial: &Serial) -> bool {
        let mag = serial.magnitude();
        self.nibbles.len() <= mag.len() * 2
            && self.nibbles.iter().enumerate().all(|(i, n)| {
                let b = mag[i / 2];
                *n == if i % 2 == 0 { b >> 4 } else { b & 0x0f }
            })
    }
}

/// Decodes and admits a DER OCSP request.
pub fn admit(der: &[u8], issuers: &Issuers, policy: &Policy) -> Result<Query, OcspError> {
    let mut ids = request::decode(der, issuers, policy.max_cert_ids)?;
    let issuer = ids[0].issuer;
    if ids.iter().any(|id| id.issuer != issuer) {
        return Err(OcspError::MixedIssuers);
    }
    if !policy.serial_prefixes.is_empty()
        && !ids.iter().all(|id| policy.serial_prefixes.iter().any(|p| p.matches(&id.serial)))
    {
        return Err(OcspError::UnknownSerial);
    }
    if ids.len() > 1 {
        ids.sort_unstable();
        ids.dedup();
    }
    let key = cache_key(&ids).into_boxed_slice();
    Ok(Query { issuer, ids, key })
}

/// Cache key for a list of CertIDs (see [`crate::cache::key_of`]).
pub fn cache_key(ids: &[CertId]) -> Vec<u8> {
    crate::cache::key_of(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_prefixes_match_the_hex_form() {
        let s = |h| Serial::from_hex(h).unwrap();
        let p = |t| SerialPrefix::parse(t).unwrap();
        assert!(p("7F").matches(&s("7F0102")));
        assert!(p("7f0").matches(&s("7F0102")), "odd length, any case");
        assert!(!p("7F1").matches(&s("7F0102")));
        assert!(p("F1").matches(&s("F1E2")), "the sign octet is not part of the hex form");
        assert!(!p("00").matches(&s("F1E2")));
        assert!(!p("0A0B0C").matches(&s("0A0B")), "longer than the serial");
        assert!(p("0A").matches(&s("0A")));
        assert_eq!(SerialPrefix::parse(""), None);
        assert_eq!(SerialPrefix::parse("0x"), None);
    }
}
