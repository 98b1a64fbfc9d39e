//! Checking every answer the way a relying party would, plus what only the
//! bench knows (the status the source holds): the response decodes, is
//! `successful` and `id-pkix-ocsp-basic`, names exactly the CertID asked for,
//! carries the source's status (revocation time and reason included), is
//! within its validity window, its responderID matches the signing key, and
//! its signature verifies under the issuer's key or under a delegated
//! responder certificate that the issuer signed for OCSP signing.
//!
//! A signature check costs tens of µs, far more than serving a hit, so each
//! client thread remembers the last few bodies it verified per serial: a body
//! identical byte for byte to one already verified needs only its validity
//! re-checked (same bytes, same signature). What such a body *asserts* is
//! remembered with it and judged again on every answer: the status a body must
//! carry can change during a run (see [`super::changes`]), so a body accepted
//! as good an hour ago is not good now because its bytes are the same.
//!
//! [`Verifier::examine`] checks everything but the status and returns what
//! the answer asserts; [`Verifier::check`] also compares that with the entry's
//! status read at start (the whole check when the source cannot change).

use std::collections::HashMap;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::Certificate;

use super::keyspace::{ClientIssuer, Entry};
use crate::ocsp::RevocationReason;
use crate::status::CertStatus;

/// Allowed clock difference between bench and server, seconds.
const SKEW: u64 = 60;

/// Bodies remembered per serial (one per server shard or node signing it).
const REMEMBERED: usize = 8;

/// The verdict on one answer body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A correct, valid, signed answer.
    Good,
    /// OCSP `tryLater`.
    TryLater,
    /// An OCSP error status other than tryLater and unauthorized (malformed,
    /// internalError, sigRequired): an error, not a lie.
    OcspError(u8),
    /// Anything that asserts something false or cannot be trusted.
    Wrong(String),
}

/// What an answer asserts about the certificate asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asserted {
    /// certStatus good.
    Good,
    /// certStatus revoked at `at` (Unix seconds) with the CRLReason code it
    /// carried (`None`: left out, as for unspecified).
    Revoked {
        /// revocationTime, Unix seconds.
        at: u64,
        /// revocationReason code, if present.
        reason: Option<u8>,
    },
    /// certStatus unknown.
    Unknown,
    /// OCSP responseStatus unauthorized: the responder does not know it.
    Unauthorized,
}

impl Asserted {
    /// True when this is what a certificate with `status` must be answered.
    pub fn is(&self, status: &CertStatus) -> bool {
        match (self, status) {
            (Asserted::Good, CertStatus::Good) => true,
            (Asserted::Revoked { at, reason }, CertStatus::Revoked { at: want_at, reason: want }) => {
                at == want_at && *reason == reason_code(*want)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Asserted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Asserted::Good => write!(f, "good"),
            Asserted::Revoked { at, reason: None } => write!(f, "revoked at {at}"),
            Asserted::Revoked { at, reason: Some(r) } => write!(f, "revoked at {at} reason {r}"),
            Asserted::Unknown => write!(f, "unknown"),
            Asserted::Unauthorized => write!(f, "unauthorized"),
        }
    }
}

/// The revocationReason a response carries for `reason` (unspecified is left
/// out, RFC 5280's recommendation and what the server does).
fn reason_code(reason: RevocationReason) -> Option<u8> {
    (reason != RevocationReason::Unspecified).then_some(reason as u8)
}

/// An answer checked for everything but whether its status is the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// A successful, valid, signed answer for the CertID asked for, or
    /// `unauthorized`: what it asserts, for the caller to judge.
    Asserts(Asserted),
    /// OCSP `tryLater`.
    TryLater,
    /// An OCSP error status other than tryLater and unauthorized.
    OcspError(u8),
    /// Anything that cannot be trusted whatever the status should be.
    Wrong(String),
}

/// Why `got` is not the answer for `entry` whose status is `want`; `None`
/// when it is.
pub fn status_mismatch(entry: &Entry, got: Asserted, want: &CertStatus) -> Option<String> {
    if got.is(want) {
        return None;
    }
    let serial = entry.serial;
    Some(match (got, want) {
        (Asserted::Unauthorized, _) => "unauthorized for a certificate the status source lists".into(),
        (Asserted::Revoked { at, .. }, CertStatus::Revoked { at: want_at, .. }) if at != *want_at => {
            format!("serial {serial}: revocation time {at} but the source says {want_at}")
        }
        (Asserted::Revoked { reason, .. }, CertStatus::Revoked { reason: want, .. }) => {
            format!("serial {serial}: reason {reason:?} but the source says {:?}", reason_code(*want))
        }
        (got, want) => {
            let got = match got {
                Asserted::Good => "good",
                Asserted::Revoked { .. } => "revoked",
                _ => "unknown",
            };
            format!("serial {serial}: {got} but the source says {want:?}")
        }
    })
}

/// What [`Verifier::full_check`] found.
enum Full {
    /// A signed answer that checks out: its nextUpdate and status.
    Signed(u64, Asserted),
    /// An answer without a signature (an OCSP error status).
    Unsigned(Examined),
}

/// A verified body, its nextUpdate and what it asserts.
type Remembered = (Box<[u8]>, u64, Asserted);

/// What a client thread keeps to check answers.
pub struct Verifier {
    issuers: std::sync::Arc<[ClientIssuer]>,
    /// Delegated responder certificates already checked, by DER.
    responders: HashMap<Vec<u8>, Result<Vec<u8>, String>>,
    /// Verified bodies by entry index: (body, nextUpdate).
    seen: HashMap<u32, Vec<Remembered>>,
    /// Full signature checks made (for the report).
    pub full_checks: u64,
}

fn wrong<T>(why: impl Into<String>) -> Result<T, String> {
    Err(why.into())
}

/// (header length, content length) of the DER TLV at the start of `b`.
fn tlv(b: &[u8]) -> Option<(usize, usize)> {
    let len0 = *b.get(1)? as usize;
    if len0 < 0x80 {
        return Some((2, len0));
    }
    let n = len0 & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *b.get(2 + i)? as usize;
    }
    Some((2 + n, len))
}

/// The raw DER of the first element inside the SEQUENCE `seq` (the signed
/// `tbsResponseData`, verified as received, not re-encoded).
fn first_element(seq: &[u8]) -> Option<&[u8]> {
    let (h, _) = tlv(seq)?;
    let inner = seq.get(h..)?;
    let (h2, l2) = tlv(inner)?;
    inner.get(..h2 + l2)
}

const OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");

/// Verifies `sig` over `msg` by the key in `spki_der` with `alg`.
fn verify_sig(spki_der: &[u8], alg: &ObjectIdentifier, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|e| format!("key: {e}"))?;
    crate::ocsp::verify::verify(&spki, alg, msg, sig)
}

fn unix(t: &x509_ocsp::OcspGeneralizedTime) -> u64 {
    t.0.to_unix_duration().as_secs()
}

/// True when `cert` is the issuer's own certificate (same name, same key).
fn is_issuer(issuer: &ClientIssuer, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    tbs.subject.to_der().map(|d| d == issuer.subject_der).unwrap_or(false)
        && tbs.subject_public_key_info.to_der().map(|d| d == issuer.spki_der).unwrap_or(false)
}

impl Verifier {
    /// A verifier for the run's issuers.
    pub fn new(issuers: std::sync::Arc<[ClientIssuer]>) -> Verifier {
        Verifier { issuers, responders: HashMap::new(), seen: HashMap::new(), full_checks: 0 }
    }

    /// Checks the answer `body` to a request for entry `idx` at `now`,
    /// against the status read at start (`entry.status`).
    pub fn check(&mut self, idx: u32, entry: &Entry, body: &[u8], now: u64) -> Verdict {
        match self.examine(idx, entry, body, now) {
            Examined::Asserts(got) => match status_mismatch(entry, got, &entry.status) {
                None => Verdict::Good,
                Some(why) => Verdict::Wrong(why),
            },
            Examined::TryLater => Verdict::TryLater,
            Examined::OcspError(code) => Verdict::OcspError(code),
            Examined::Wrong(why) => Verdict::Wrong(why),
        }
    }

    /// Checks everything about the answer `body` to a request for entry
    /// `idx` at `now` but its status, and returns what it asserts. A body
    /// identical to one verified before skips the signature check, not the
    /// validity check, and still returns its status for the caller to judge.
    pub fn examine(&mut self, idx: u32, entry: &Entry, body: &[u8], now: u64) -> Examined {
        if let Some(list) = self.seen.get(&idx) {
            if let Some((_, next, asserted)) = list.iter().find(|(b, _, _)| &b[..] == body) {
                return if *next > now {
                    Examined::Asserts(*asserted)
                } else {
                    Examined::Wrong(format!("served past its nextUpdate ({next} <= {now})"))
                };
            }
        }
        match self.full_check(entry, body, now) {
            // Unsigned and a few bytes: nothing worth remembering.
            Ok(Full::Unsigned(e)) => e,
            Ok(Full::Signed(next, asserted)) => {
                let list = self.seen.entry(idx).or_default();
                if list.len() >= REMEMBERED {
                    list.remove(0);
                }
                list.push((body.into(), next, asserted));
                Examined::Asserts(asserted)
            }
            Err(why) => Examined::Wrong(why),
        }
    }

    /// A signed answer's nextUpdate and status once everything about it but
    /// the status checks out, or an unsigned one (tryLater, unauthorized,
    /// another error status); `Err` for anything that cannot be trusted.
    fn full_check(&mut self, entry: &Entry, body: &[u8], now: u64) -> Result<Full, String> {
        let resp = x509_ocsp::OcspResponse::from_der(body).map_err(|e| format!("undecodable: {e}"))?;
        use x509_ocsp::OcspResponseStatus as S;
        match resp.response_status {
            S::Successful => {}
            S::TryLater => return Ok(Full::Unsigned(Examined::TryLater)),
            S::Unauthorized => return Ok(Full::Unsigned(Examined::Asserts(Asserted::Unauthorized))),
            other => return Ok(Full::Unsigned(Examined::OcspError(other as u8))),
        }
        let rb = resp.response_bytes.ok_or("successful without responseBytes")?;
        if rb.response_type != const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC {
            return wrong(format!("response type {}", rb.response_type));
        }
        let basic_der = rb.response.as_bytes();
        let basic = x509_ocsp::BasicOcspResponse::from_der(basic_der).map_err(|e| format!("basic: {e}"))?;
        self.full_checks += 1;
        let issuers = self.issuers.clone();
        let issuer = issuers.get(entry.issuer as usize).ok_or("unknown issuer index")?;
        let tbs = &basic.tbs_response_data;
        if tbs.responses.len() != 1 {
            return wrong(format!("{} SingleResponses for one CertID", tbs.responses.len()));
        }
        let single = &tbs.responses[0];
        let id = &single.cert_id;
        if id.hash_algorithm.oid != const_oid::db::rfc5912::ID_SHA_1
            || id.issuer_name_hash.as_bytes() != issuer.name_hash_sha1
            || id.issuer_key_hash.as_bytes() != issuer.key_hash_sha1
            || id.serial_number.as_bytes() != entry.serial.as_bytes()
        {
            return wrong(format!("CertID does not match the request for serial {}", entry.serial));
        }
        let asserted = match &single.cert_status {
            x509_ocsp::CertStatus::Good(_) => Asserted::Good,
            x509_ocsp::CertStatus::Revoked(info) => Asserted::Revoked {
                at: unix(&info.revocation_time),
                reason: info.revocation_reason.map(|r| r as u8),
            },
            x509_ocsp::CertStatus::Unknown(_) => Asserted::Unknown,
        };
        let this_update = unix(&single.this_update);
        let next_update =
            single.next_update.as_ref().map(unix).ok_or("no nextUpdate (RFC 5019 requires one)")?;
        if this_update > now + SKEW {
            return wrong(format!("thisUpdate {this_update} is in the future (now {now})"));
        }
        if unix(&tbs.produced_at) > now + SKEW {
            return wrong("producedAt is in the future");
        }
        if next_update <= now {
            return wrong(format!("nextUpdate {next_update} has passed (now {now})"));
        }
        if next_update <= this_update {
            return wrong("nextUpdate is not after thisUpdate");
        }
        // Who signed: a delegated responder (first certificate) or the issuer.
        let signer_spki = match basic.certs.as_ref().and_then(|c| c.first()) {
            // Some responders (openssl ocsp -rsigner ca.pem) include the
            // issuer's own certificate: then the issuer signed.
            Some(cert) if is_issuer(issuer, cert) => issuer.spki_der.clone(),
            Some(cert) => self.responder_key(issuer, cert)?,
            None => issuer.spki_der.clone(),
        };
        let spki = spki::SubjectPublicKeyInfoOwned::from_der(&signer_spki).map_err(|e| e.to_string())?;
        let key_id = crate::ocsp::HashAlg::Sha1.digest(spki.subject_public_key.raw_bytes());
        match &tbs.responder_id {
            x509_ocsp::ResponderId::ByKey(k) if k.as_bytes() == key_id => {}
            x509_ocsp::ResponderId::ByKey(_) => return wrong("responderID byKey does not name the signer"),
            x509_ocsp::ResponderId::ByName(_) => {} // allowed by RFC 6960; the signature decides
        }
        let tbs_raw = first_element(basic_der).ok_or("cannot find tbsResponseData")?;
        let sig = basic.signature.as_bytes().ok_or("signature has unused bits")?;
        verify_sig(&signer_spki, &basic.signature_algorithm.oid, tbs_raw, sig)?;
        Ok(Full::Signed(next_update, asserted))
    }

    /// The SPKI of a delegated responder certificate, once it is checked:
    /// issued by `issuer` (name and signature) and allowed to sign OCSP.
    fn responder_key(&mut self, issuer: &ClientIssuer, cert: &Certificate) -> Result<Vec<u8>, String> {
        let der = cert.to_der().map_err(|e| e.to_string())?;
        if let Some(r) = self.responders.get(&der) {
            return r.clone();
        }
        let r = (|| {
            let tbs = &cert.tbs_certificate;
            if tbs.issuer.to_der().map_err(|e| e.to_string())? != issuer.subject_der {
                return wrong("responder certificate not issued by the issuer");
            }
            let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
            let sig = cert.signature.as_bytes().ok_or("certificate signature has unused bits")?;
            verify_sig(&issuer.spki_der, &cert.signature_algorithm.oid, &tbs_der, sig)
                .map_err(|e| format!("responder certificate: {e}"))?;
            let eku_ok = tbs
                .get::<x509_cert::ext::pkix::ExtendedKeyUsage>()
                .ok()
                .flatten()
                .is_some_and(|(_, eku)| eku.0.contains(&OCSP_SIGNING));
            if !eku_ok {
                return wrong("responder certificate lacks id-kp-OCSPSigning");
            }
            tbs.subject_public_key_info.to_der().map_err(|e| e.to_string())
        })();
        self.responders.insert(der, r.clone());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_reads_short_and_long_lengths() {
        assert_eq!(tlv(&[0x30, 0x03, 1, 2, 3]), Some((2, 3)));
        assert_eq!(tlv(&[0x30, 0x82, 0x01, 0x00]), Some((4, 256)));
        assert_eq!(tlv(&[0x30]), None);
        assert_eq!(tlv(&[0x30, 0x80]), None);
        assert_eq!(first_element(&[0x30, 0x05, 0x04, 0x01, 0xaa, 0x05, 0x00]), Some(&[0x04, 0x01, 0xaa][..]));
    }
}
