//! Encoding `OCSPResponse`s (RFC 6960 §4.2.1).
//!
//! ```text
//! OCSPResponse ::= SEQUENCE {
//!    responseStatus         OCSPResponseStatus,
//!    responseBytes          [0] EXPLICIT ResponseBytes OPTIONAL }
//! ResponseBytes ::= SEQUENCE {
//!    responseType   OBJECT IDENTIFIER,          -- id-pkix-ocsp-basic
//!    response       OCTET STRING }              -- DER BasicOCSPResponse
//! BasicOCSPResponse ::= SEQUENCE {
//!    tbsResponseData      ResponseData,
//!    signatureAlgorithm   AlgorithmIdentifier,
//!    signature            BIT STRING,
//!    certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
//! ```
//!
//! `ResponseData` is built with RustCrypto `x509-ocsp` types; the signed
//! envelope around it is assembled here from already-encoded parts so the
//! `ResponseData` is encoded once and the signature covers exactly those bytes.

use std::time::Duration;

use der::asn1::{GeneralizedTime, OctetString};
use der::{DateTime, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{OcspGeneralizedTime, ResponderId, ResponseData, RevokedInfo, SingleResponse, Version};

use super::types::{CertId, HashParams, RevocationReason};
pub use crate::asn1::der_tlv;
use crate::ocsp::issuer::{Issuer, ResponderIdentity};
use crate::ocsp::CertStatus;

/// `OCSPResponseStatus` (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseStatus {
    /// Response has valid confirmations.
    Successful = 0,
    /// Illegal confirmation request.
    MalformedRequest = 1,
    /// Internal error in issuer.
    InternalError = 2,
    /// Try again later.
    TryLater = 3,
    /// Must sign the request.
    SigRequired = 5,
    /// Request unauthorized.
    Unauthorized = 6,
}

/// The unsigned body of an error response: `SEQUENCE { ENUMERATED status }`.
pub fn error_body(status: ResponseStatus) -> [u8; 5] {
    [0x30, 0x03, 0x0a, 0x01, status as u8]
}

/// id-pkix-ocsp-basic, DER `OBJECT IDENTIFIER` TLV.
const OID_OCSP_BASIC: &[u8] = &[0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// Validity of a response, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// `producedAt`: when it was signed.
    pub produced_at: u64,
    /// `thisUpdate`: the time at which the status is known correct.
    pub this_update: u64,
    /// `nextUpdate`: when newer information will be available; the response
    /// must not be used after it.
    pub next_update: u64,
}

/// Why a `ResponseData` could not be encoded (a time out of range, a serial
/// the DER library refuses): an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("encoding the response failed: {0}")]
pub struct EncodeError(pub der::Error);

fn gen_time(unix: u64) -> Result<OcspGeneralizedTime, der::Error> {
    let dt = DateTime::from_unix_duration(Duration::from_secs(unix))?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_date_time(dt)))
}

fn crl_reason(r: RevocationReason) -> CrlReason {
    use RevocationReason::*;
    match r {
        Unspecified => CrlReason::Unspecified,
        KeyCompromise => CrlReason::KeyCompromise,
        CaCompromise => CrlReason::CaCompromise,
        AffiliationChanged => CrlReason::AffiliationChanged,
        Superseded => CrlReason::Superseded,
        CessationOfOperation => CrlReason::CessationOfOperation,
        CertificateHold => CrlReason::CertificateHold,
        RemoveFromCrl => CrlReason::RemoveFromCRL,
        PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        AaCompromise => CrlReason::AaCompromise,
    }
}

/// Encodes the `ResponseData` (the to-be-signed part) for `answers`, all of
/// which belong to `issuer`. CertIDs are rebuilt from the issuer's hashes with
/// the client's algorithm, its parameters encoded as the client sent them
/// (NULL or absent: a client comparing whole CertIDs, as Bouncy Castle does,
/// finds only its own form).
///
/// A revocation reason of `unspecified` is omitted, as RFC 5280 §5.3.1
/// advises, and so is one the issuer's profile does not show
/// ([`Issuer::shown_reason`]).
pub fn response_data(
    issuer: &Issuer,
    answers: &[(CertId, CertStatus)],
    v: Validity,
) -> Result<Vec<u8>, EncodeError> {
    let enc = || -> Result<Vec<u8>, der::Error> {
        let this_update = gen_time(v.this_update)?;
        let next_update = gen_time(v.next_update)?;
        let mut responses = Vec::with_capacity(answers.len());
        for (id, status) in answers {
            let cert_id = x509_ocsp::CertId {
                hash_algorithm: AlgorithmIdentifierOwned {
                    oid: id.alg.oid(),
                    parameters: match id.params {
                        HashParams::Null => Some(der::Any::null()),
                        HashParams::Absent => None,
                    },
                },
                issuer_name_hash: OctetString::new(issuer.name_hash(id.alg))?,
                issuer_key_hash: OctetString::new(issuer.key_hash(id.alg))?,
                serial_number: SerialNumber::new(id.serial.magnitude())?,
            };
            let cert_status = match *status {
                CertStatus::Good => x509_ocsp::CertStatus::good(),
                CertStatus::Revoked { at, reason } => x509_ocsp::CertStatus::Revoked(RevokedInfo {
                    revocation_time: gen_time(at)?,
                    revocation_reason: issuer.shown_reason(reason).map(crl_reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id,
                cert_status,
                this_update,
                next_update: Some(next_update),
                single_extensions: None,
            });
        }
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(issuer.responder.key_hash.as_slice())?),
            produced_at: gen_time(v.produced_at)?,
            responses,
            response_extensions: None,
        };
        data.to_der()
    };
    enc().map_err(EncodeError)
}

/// Wraps signed `ResponseData` into a complete, successful `OCSPResponse`.
pub fn assemble(tbs: &[u8], identity: &ResponderIdentity, signature: &[u8]) -> Vec<u8> {
    let alg = identity.signer.algorithm_der();
    let certs = identity.certs_field.as_deref().unwrap_or(&[]);
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(signature);

    let mut basic_inner = Vec::with_capacity(tbs.len() + alg.len() + bits.len() + certs.len() + 8);
    basic_inner.extend_from_slice(tbs);
    basic_inner.extend_from_slice(alg);
    der_tlv(0x03, &bits, &mut basic_inner);
    basic_inner.extend_from_slice(certs);
    let mut basic = Vec::with_capacity(basic_inner.len() + 4);
    der_tlv(0x30, &basic_inner, &mut basic);

    let mut rb_inner = Vec::with_capacity(basic.len() + 20);
    rb_inner.extend_from_slice(OID_OCSP_BASIC);
    der_tlv(0x04, &basic, &mut rb_inner);
    let mut rb = Vec::with_capacity(rb_inner.len() + 4);
    der_tlv(0x30, &rb_inner, &mut rb);

    let mut outer_inner = Vec::with_capacity(rb.len() + 8);
    outer_inner.extend_from_slice(&[0x0a, 0x01, ResponseStatus::Successful as u8]);
    der_tlv(0xa0, &rb, &mut outer_inner);
    let mut out = Vec::with_capacity(outer_inner.len() + 4);
    der_tlv(0x30, &outer_inner, &mut out);
    out
}

/// Whether `der`, a successful `OCSPResponse`, says exactly this: one
/// `SingleResponse` per CertID of `ids` (same hash algorithm, `issuer`'s
/// hashes, serial) with `statuses`, and the times of `v`. A copy read back
/// from a shared cache is checked with it before its header is believed (a
/// damaged, hand-written or misfiled value is a miss, not an answer). The
/// signature is not checked: that costs a verification per hit, and the
/// bytes were signed by a node of this deployment.
///
/// It runs on every Redis-served hit, so it walks the DER in place, without
/// allocating (a full `x509-ocsp` decode took five times as long; the tests
/// hold the two to the same verdicts).
pub fn agrees(der: &[u8], issuer: &Issuer, ids: &[CertId], statuses: &[CertStatus], v: Validity) -> bool {
    agrees_in_place(der, issuer, ids, statuses, v).unwrap_or(false)
}

/// A DER reader over borrowed bytes: one TLV at a time.
struct Tlv<'a>(&'a [u8]);

impl<'a> Tlv<'a> {
    /// The next TLV's (tag, content). Low tag numbers only (all OCSP uses).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&l0, rest) = rest.split_first()?;
        let (len, rest) = if l0 < 0x80 {
            (l0 as usize, rest)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            (rest[..n].iter().fold(0usize, |a, b| a << 8 | *b as usize), &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        self.0 = &rest[len..];
        Some((tag, &rest[..len]))
    }

    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, c) if t == tag => Some(c),
            _ => None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// `GeneralizedTime` content `YYYYMMDDHHMMSSZ` (RFC 5280's only form) as Unix
/// seconds.
fn generalized_time(b: &[u8]) -> Option<u64> {
    if b.len() != 15 || b[14] != b'Z' || !b[..14].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| b[r].iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
    let dt = DateTime::new(
        n(0..4),
        n(4..6) as u8,
        n(6..8) as u8,
        n(8..10) as u8,
        n(10..12) as u8,
        n(12..14) as u8,
    )
    .ok()?;
    Some(dt.unix_duration().as_secs())
}

fn agrees_in_place(
    der: &[u8],
    issuer: &Issuer,
    ids: &[CertId],
    statuses: &[CertStatus],
    v: Validity,
) -> Option<bool> {
    let mut top = Tlv(der);
    let mut resp = Tlv(top.take(0x30)?);
    if !top.done() || resp.take(0x0a)? != [ResponseStatus::Successful as u8] {
        return Some(false);
    }
    let mut bytes = Tlv(Tlv(resp.take(0xa0)?).take(0x30)?);
    if bytes.take(0x06)? != &OID_OCSP_BASIC[2..] {
        return Some(false);
    }
    let mut basic = Tlv(Tlv(bytes.take(0x04)?).take(0x30)?);
    let mut tbs = Tlv(basic.take(0x30)?);
    if tbs.peek()? == 0xa0 {
        tbs.next()?; // version, v1 = default
    }
    match tbs.next()? {
        (0xa1 | 0xa2, _) => {} // responderID
        _ => return Some(false),
    }
    if generalized_time(tbs.take(0x18)?)? != v.produced_at || statuses.len() != ids.len() {
        return Some(false);
    }
    let mut responses = Tlv(tbs.take(0x30)?);
    for (id, status) in ids.iter().zip(statuses) {
        let mut single = Tlv(responses.take(0x30)?);
        let mut cert_id = Tlv(single.take(0x30)?);
        let mut alg = Tlv(cert_id.take(0x30)?);
        let same_alg = alg.take(0x06)? == id.alg.oid().as_bytes()
            && match id.params {
                HashParams::Null => alg.take(0x05)?.is_empty() && alg.done(),
                HashParams::Absent => alg.done(),
            };
        let same_id = same_alg
            && cert_id.take(0x04)? == issuer.name_hash(id.alg)
            && cert_id.take(0x04)? == issuer.key_hash(id.alg)
            && cert_id.take(0x02)? == id.serial.as_bytes();
        let same_status = match (single.next()?, status) {
            ((0x80, []), CertStatus::Good) => true,
            ((0xa1, info), CertStatus::Revoked { at, reason }) => {
                let mut info = Tlv(info);
                let time = generalized_time(info.take(0x18)?)?;
                let code = match info.next() {
                    None => None,
                    Some((0xa0, r)) => match Tlv(r).take(0x0a)? {
                        [c] => Some(*c),
                        _ => return Some(false),
                    },
                    Some(_) => return Some(false),
                };
                time == *at && code == issuer.shown_reason(*reason).map(|r| r as u8)
            }
            _ => false,
        };
        let same_times = generalized_time(single.take(0x18)?)? == v.this_update
            && generalized_time(Tlv(single.take(0xa0)?).take(0x18)?)? == v.next_update;
        if !(same_id && same_status && same_times) {
            return Some(false);
        }
    }
    Some(responses.done())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same verdict by a full `x509-ocsp` decode: the in-place walk of
    /// [`agrees`] is held to it.
    fn agrees_by_full_decode(
        der: &[u8],
        issuer: &Issuer,
        ids: &[CertId],
        statuses: &[CertStatus],
        v: Validity,
    ) -> bool {
        use der::Decode;
        let secs = |t: &OcspGeneralizedTime| t.0.to_unix_duration().as_secs();
        let check = || -> Option<bool> {
            let resp = x509_ocsp::OcspResponse::from_der(der).ok()?;
            if resp.response_status != x509_ocsp::OcspResponseStatus::Successful {
                return Some(false);
            }
            let basic =
                x509_ocsp::BasicOcspResponse::from_der(resp.response_bytes?.response.as_bytes()).ok()?;
            let tbs = &basic.tbs_response_data;
            if secs(&tbs.produced_at) != v.produced_at || tbs.responses.len() != ids.len() {
                return Some(false);
            }
            for ((single, id), status) in tbs.responses.iter().zip(ids).zip(statuses) {
                let c = &single.cert_id;
                let params = match id.params {
                    HashParams::Null => Some(der::Any::null()),
                    HashParams::Absent => None,
                };
                let same_id = c.hash_algorithm.oid == id.alg.oid()
                    && c.hash_algorithm.parameters == params
                    && c.issuer_name_hash.as_bytes() == issuer.name_hash(id.alg)
                    && c.issuer_key_hash.as_bytes() == issuer.key_hash(id.alg)
                    && c.serial_number.as_bytes() == id.serial.as_bytes();
                let same_status = match (&single.cert_status, status) {
                    (x509_ocsp::CertStatus::Good(_), CertStatus::Good) => true,
                    (x509_ocsp::CertStatus::Revoked(info), CertStatus::Revoked { at, reason }) => {
                        secs(&info.revocation_time) == *at
                            && info.revocation_reason.map(|r| r as u8)
                                == issuer.shown_reason(*reason).map(|r| r as u8)
                    }
                    _ => false,
                };
                let same_times = secs(&single.this_update) == v.this_update
                    && single.next_update.as_ref().map(secs) == Some(v.next_update);
                if !(same_id && same_status && same_times) {
                    return Some(false);
                }
            }
            Some(true)
        };
        check().unwrap_or(false)
    }

    #[test]
    fn agrees_walks_the_der_as_a_full_decode_reads_it() {
        use crate::ocsp::{HashAlg, IssuerId, Serial};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/");
        let cert =
            crate::ocsp::issuer::parse_certificate(&std::fs::read(format!("{dir}ca.pem")).unwrap()).unwrap();
        let key = std::fs::read_to_string(format!("{dir}ca.key")).unwrap();
        let signer: std::sync::Arc<dyn crate::signer::Signer> =
            std::sync::Arc::new(crate::signer::SoftwareSigner::from_pem(&key).unwrap());
        let issuer = Issuer::new("t", cert, signer, None).unwrap();
        let id = |alg, n: u8| CertId::new(IssuerId(0), alg, Serial::from_magnitude(&[n, 0x80]).unwrap());
        let absent = |c: CertId| CertId { params: crate::ocsp::HashParams::Absent, ..c };
        let v =
            Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
        let revoked = |r| CertStatus::Revoked { at: 1_790_000_000, reason: r };
        let cases: Vec<(Vec<CertId>, Vec<CertStatus>)> = vec![
            (vec![id(HashAlg::Sha1, 1)], vec![CertStatus::Good]),
            (vec![id(HashAlg::Sha256, 2)], vec![revoked(RevocationReason::KeyCompromise)]),
            (vec![id(HashAlg::Sha384, 3)], vec![revoked(RevocationReason::Unspecified)]),
            (vec![id(HashAlg::Sha1, 9)], vec![revoked(RevocationReason::CertificateHold)]),
            (vec![absent(id(HashAlg::Sha256, 6))], vec![CertStatus::Good]),
            (
                vec![absent(id(HashAlg::Sha1, 7)), id(HashAlg::Sha1, 8)],
                vec![CertStatus::Good, CertStatus::Good],
            ),
            (
                vec![id(HashAlg::Sha1, 4), id(HashAlg::Sha512, 5)],
                vec![CertStatus::Good, revoked(RevocationReason::Superseded)],
            ),
        ];
        for (ids, statuses) in cases {
            let answers: Vec<_> = ids.iter().copied().zip(statuses.iter().copied()).collect();
            let tbs = response_data(&issuer, &answers, v).unwrap();
            let der = assemble(&tbs, &issuer.responder, &issuer.responder.signer.sign(&tbs).unwrap());
            let both = |d: &[u8], i: &[CertId], s: &[CertStatus], v: Validity| {
                let (a, b) = (agrees(d, &issuer, i, s, v), agrees_by_full_decode(d, &issuer, i, s, v));
                assert_eq!(a, b, "the two readings differ for {i:?} {s:?}");
                a
            };
            assert!(both(&der, &ids, &statuses, v), "{ids:?}");
            // Anything else it might be claimed to say: no.
            let other_serial: Vec<CertId> =
                ids.iter().map(|c| CertId { serial: Serial::from_hex("77").unwrap(), ..*c }).collect();
            assert!(!both(&der, &other_serial, &statuses, v));
            let other_alg: Vec<CertId> = ids
                .iter()
                .map(|c| CertId {
                    alg: if c.alg == HashAlg::Sha1 { HashAlg::Sha256 } else { HashAlg::Sha1 },
                    ..*c
                })
                .collect();
            assert!(!both(&der, &other_alg, &statuses, v));
            let other_params: Vec<CertId> = ids
                .iter()
                .map(|c| CertId {
                    params: match c.params {
                        crate::ocsp::HashParams::Null => crate::ocsp::HashParams::Absent,
                        crate::ocsp::HashParams::Absent => crate::ocsp::HashParams::Null,
                    },
                    ..*c
                })
                .collect();
            assert!(!both(&der, &other_params, &statuses, v), "the other parameters encoding");
            let flipped: Vec<CertStatus> = statuses
                .iter()
                .map(|s| {
                    if *s == CertStatus::Good {
                        revoked(RevocationReason::KeyCompromise)
                    } else {
                        CertStatus::Good
                    }
                })
                .collect();
            assert!(!both(&der, &ids, &flipped, v));
            for w in [
                Validity { produced_at: v.produced_at + 1, ..v },
                Validity { this_update: v.this_update - 1, ..v },
                Validity { next_update: v.next_update + 3600, ..v },
            ] {
                assert!(!both(&der, &ids, &statuses, w));
            }
            assert!(!both(&der[..der.len() - 1], &ids, &statuses, v), "truncated");
            let mut longer = der.clone();
            longer.push(0);
            assert!(!both(&longer, &ids, &statuses, v), "trailing bytes");
            if ids.len() > 1 {
                assert!(!both(&der, &ids[..1], &statuses[..1], v), "fewer CertIDs than it holds");
            }
        }
        assert!(!agrees(
            &error_body(ResponseStatus::TryLater),
            &issuer,
            &[id(HashAlg::Sha1, 1)],
            &[CertStatus::Good],
            v
        ));
    }

    /// Under the Baseline Requirements a reason the BR forbids for a
    /// subscriber certificate is left out (the status stays revoked); under
    /// RFC 6960 it is shown.
    #[test]
    fn baseline_leaves_out_reasons_the_br_forbids() {
        use crate::ocsp::{HashAlg, IssuerId, Serial};
        use der::Decode;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/");
        let key = std::fs::read_to_string(format!("{dir}ca.key")).unwrap();
        let issuer = |baseline| {
            let cert =
                crate::ocsp::issuer::parse_certificate(&std::fs::read(format!("{dir}ca.pem")).unwrap())
                    .unwrap();
            let signer: std::sync::Arc<dyn crate::signer::Signer> =
                std::sync::Arc::new(crate::signer::SoftwareSigner::from_pem(&key).unwrap());
            Issuer::new("t", cert, signer, None).unwrap().with_baseline(baseline)
        };
        let id = CertId::new(IssuerId(0), HashAlg::Sha1, Serial::from_hex("42").unwrap());
        let v =
            Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
        let reason_of = |is: &Issuer, r: RevocationReason| {
            let tbs =
                response_data(is, &[(id, CertStatus::Revoked { at: 1_790_000_000, reason: r })], v).unwrap();
            let data = x509_ocsp::ResponseData::from_der(&tbs).unwrap();
            match &data.responses[0].cert_status {
                x509_ocsp::CertStatus::Revoked(info) => info.revocation_reason.map(|c| c as u8),
                other => panic!("{other:?}"),
            }
        };
        let (br, rfc) = (issuer(true), issuer(false));
        for (r, _) in RevocationReason::ALL {
            let want_br =
                (r.br_subscriber_allowed() && r != RevocationReason::Unspecified).then_some(r as u8);
            assert_eq!(reason_of(&br, r), want_br, "{r:?} under the BR");
            assert_eq!(reason_of(&rfc, r), (r != RevocationReason::Unspecified).then_some(r as u8), "{r:?}");
        }
        assert_eq!(reason_of(&br, RevocationReason::CertificateHold), None);
    }

    #[test]
    fn tlv_lengths() {
        let mut v = Vec::new();
        der_tlv(0x04, &[0u8; 5], &mut v);
        assert_eq!(&v[..2], &[0x04, 5]);
        let mut v = Vec::new();
        der_tlv(0x04, &[0u8; 200], &mut v);
        assert_eq!(&v[..3], &[0x04, 0x81, 200]);
        let mut v = Vec::new();
        der_tlv(0x04, &[0u8; 300], &mut v);
        assert_eq!(&v[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn error_bodies_decode() {
        use der::Decode;
        for (s, want) in [
            (ResponseStatus::MalformedRequest, x509_ocsp::OcspResponseStatus::MalformedRequest),
            (ResponseStatus::TryLater, x509_ocsp::OcspResponseStatus::TryLater),
            (ResponseStatus::Unauthorized, x509_ocsp::OcspResponseStatus::Unauthorized),
            (ResponseStatus::InternalError, x509_ocsp::OcspResponseStatus::InternalError),
        ] {
            let r = x509_ocsp::OcspResponse::from_der(&error_body(s)).unwrap();
            assert_eq!(r.response_status, want);
            assert!(r.response_bytes.is_none());
        }
    }
}
