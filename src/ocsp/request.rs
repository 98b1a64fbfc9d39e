//! Decoding an `OCSPRequest` (RFC 6960 §4.1.1) into the CertIDs we answer for.
//!
//! ```text
//! OCSPRequest ::= SEQUENCE {
//!     tbsRequest              TBSRequest,
//!     optionalSignature   [0] EXPLICIT Signature OPTIONAL }
//! TBSRequest ::= SEQUENCE {
//!     version             [0] EXPLICIT Version DEFAULT v1,
//!     requestorName       [1] EXPLICIT GeneralName OPTIONAL,
//!     requestList             SEQUENCE OF Request,
//!     requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
//! ```
//!
//! Decoding is the `der` crate's, over borrowed views of just what we read
//! (the types below), so what we ignore is never parsed beyond its DER
//! framing: a signed request's signature and certificates (RFC 5019 §2.1.2
//! clients do not sign, and we do not verify; a certificate in there that
//! would not parse is no reason to refuse the request) and the requestor name.
//! Trailing bytes after the request are an error.
//!
//! Extensions (RFC 6960 §4.4): the nonce, acceptable-responses and
//! preferred-signature-algorithms request extensions and the service-locator
//! single-request extension are understood and ignored (responses are cached
//! and shared, so they never echo a nonce: RFC 5019 §2.2.1, RFC 9919; the one
//! response type is basic, the one algorithm the issuer's key). Any other
//! extension is ignored unless marked critical, which RFC 6960 §4.4 (by RFC
//! 5280's rule) makes a request we must not answer: `malformedRequest`.
//!
//! The serial is read as any DER INTEGER, so one no CA issues (negative, or
//! longer than RFC 5280's 20 octets) is told apart from bad DER: it gets
//! `unauthorized`, as the README says, not `malformedRequest`.

use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, IntRef, OctetStringRef};
use der::{Decode, Header, Reader, Sequence, SliceReader, Tag, TagNumber, Tagged};
use spki::AlgorithmIdentifierRef;

use super::issuer::Issuers;
use super::types::{CertId, HashAlg, HashParams, Serial, SerialError};

/// Why a request gets no status answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a DER `OCSPRequest` (the error carries the byte position).
    #[error("malformed OCSP request: {0}")]
    Malformed(der::Error),
    /// An empty `requestList`.
    #[error("OCSP request lists no CertID")]
    Empty,
    /// More CertIDs than the configured bound.
    #[error("OCSP request lists {0} CertIDs, more than the limit of {1}")]
    TooMany(usize, usize),
    /// A critical extension this responder does not understand (RFC 6960
    /// §4.4): the request must not be answered as if it were absent.
    #[error("unsupported critical extension {0}")]
    CriticalExtension(ObjectIdentifier),
    /// Hash `parameters` other than absent or NULL.
    #[error("CertID hash algorithm with parameters other than absent or NULL")]
    BadHashParams,
    /// A CertID hash algorithm we do not support (e.g. MD5).
    #[error("unsupported CertID hash algorithm")]
    UnsupportedHash,
    /// The CertID names an issuer we do not serve.
    #[error("issuer not served here")]
    UnknownIssuer,
    /// A serial no conforming CA issues (negative, too long).
    #[error("serial: {0}")]
    BadSerial(SerialError),
}

/// id-pkix-ocsp-nonce (RFC 6960 §4.4.1, RFC 8954).
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-pkix-ocsp-response, acceptable response types (RFC 6960 §4.4.3).
const OID_ACCEPTABLE_RESPONSES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.4");
/// id-pkix-ocsp-pref-sig-algs (RFC 6960 §4.4.7).
const OID_PREF_SIG_ALGS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.8");
/// id-pkix-ocsp-service-locator (RFC 6960 §4.4.6), a single-request extension.
const OID_SERVICE_LOCATOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.7");

/// `OCSPRequest`, signature left unparsed.
#[derive(Sequence)]
struct OcspRequestRef<'a> {
    tbs_request: TbsRequestRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    _optional_signature: Option<AnyRef<'a>>,
}

/// `TBSRequest`, requestor name left unparsed.
#[derive(Sequence)]
struct TbsRequestRef<'a> {
    #[asn1(context_specific = "0", default = "Default::default", tag_mode = "EXPLICIT")]
    _version: x509_ocsp::Version,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    _requestor_name: Option<AnyRef<'a>>,
    request_list: Vec<RequestRef<'a>>,
    #[asn1(context_specific = "2", optional = "true", tag_mode = "EXPLICIT")]
    request_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// `Request`.
#[derive(Sequence)]
struct RequestRef<'a> {
    req_cert: CertIdRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    single_request_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// `CertID`, the serial as any INTEGER (judged by [`Serial`], not the DER
/// library's 20-octet certificate profile).
#[derive(Sequence)]
struct CertIdRef<'a> {
    hash_algorithm: AlgorithmIdentifierRef<'a>,
    issuer_name_hash: OctetStringRef<'a>,
    issuer_key_hash: OctetStringRef<'a>,
    serial_number: IntRef<'a>,
}

/// `Extension` (RFC 5280 §4.1), its value unparsed.
#[derive(Sequence)]
struct ExtensionRef<'a> {
    extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    critical: bool,
    _extn_value: OctetStringRef<'a>,
}

/// Refuses a critical extension not in `understood`.
fn check_extensions(
    exts: Option<&[ExtensionRef<'_>]>,
    understood: &[ObjectIdentifier],
) -> Result<(), RequestError> {
    for e in exts.unwrap_or_default() {
        if e.critical && !understood.contains(&e.extn_id) {
            return Err(RequestError::CriticalExtension(e.extn_id));
        }
    }
    Ok(())
}

/// Decodes a DER `OCSPRequest` and identifies each CertID's issuer.
///
/// Returns the CertIDs in request order; every one must name a served issuer.
pub fn decode(der_bytes: &[u8], issuers: &Issuers, max_cert_ids: usize) -> Result<Vec<CertId>, RequestError> {
    // A cheap check before the full parse: a request listing thousands of
    // CertIDs is refused from its TLV headers alone, without decoding (and
    // allocating) every one of them on the shard.
    if let Some(n) = count_cert_ids(der_bytes) {
        if n > max_cert_ids {
            return Err(RequestError::TooMany(n, max_cert_ids));
        }
    }
    let req = OcspRequestRef::from_der(der_bytes).map_err(RequestError::Malformed)?;
    let tbs = &req.tbs_request;
    let list = &tbs.request_list;
    if list.is_empty() {
        return Err(RequestError::Empty);
    }
    if list.len() > max_cert_ids {
        return Err(RequestError::TooMany(list.len(), max_cert_ids));
    }
    check_extensions(
        tbs.request_extensions.as_deref(),
        &[OID_NONCE, OID_ACCEPTABLE_RESPONSES, OID_PREF_SIG_ALGS],
    )?;
    let mut ids = Vec::with_capacity(list.len());
    for r in list {
        check_extensions(r.single_request_extensions.as_deref(), &[OID_SERVICE_LOCATOR])?;
        let c = &r.req_cert;
        let alg = HashAlg::from_oid(&c.hash_algorithm.oid).ok_or(RequestError::UnsupportedHash)?;
        let params = match c.hash_algorithm.parameters {
            None => HashParams::Absent,
            Some(p) if p.tag() == Tag::Null && p.value().is_empty() => HashParams::Null,
            Some(_) => return Err(RequestError::BadHashParams),
        };
        let issuer = issuers
            .identify(alg, c.issuer_name_hash.as_bytes(), c.issuer_key_hash.as_bytes())
            .ok_or(RequestError::UnknownIssuer)?;
        let serial = Serial::from_der_content(c.serial_number.as_bytes()).map_err(RequestError::BadSerial)?;
        ids.push(CertId { issuer, serial, alg, params });
    }
    Ok(ids)
}

/// Counts the entries of `requestList` by walking TLV headers only (no
/// decoding, no allocation): `OCSPRequest` → `TBSRequest` → skip the optional
/// `[0]` version and `[1]` requestorName → `SEQUENCE OF Request`. `None` when
/// the bytes do not have that shape; the full decoder then says why, with the
/// position.
fn count_cert_ids(der_bytes: &[u8]) -> Option<usize> {
    let mut r = SliceReader::new(der_bytes).ok()?;
    let enter = |r: &mut SliceReader<'_>| -> Option<()> {
        (Header::decode(r).ok()?.tag == Tag::Sequence).then_some(())
    };
    enter(&mut r)?; // OCSPRequest
    enter(&mut r)?; // TBSRequest
    for number in [TagNumber::N0, TagNumber::N1] {
        let h = r.peek_header().ok()?;
        if h.tag == (Tag::ContextSpecific { constructed: true, number }) {
            Header::decode(&mut r).ok()?;
            r.read_slice(h.length).ok()?;
        }
    }
    let list = Header::decode(&mut r).ok()?;
    if list.tag != Tag::Sequence {
        return None;
    }
    let mut items = SliceReader::new(r.read_slice(list.length).ok()?).ok()?;
    let mut n = 0;
    while !items.is_finished() {
        let h = Header::decode(&mut items).ok()?;
        items.read_slice(h.length).ok()?;
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;
    use x509_ocsp::OcspRequest;

    fn with_cert_ids(n: usize) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/openssl-sha1-nonce.der");
        let mut req = OcspRequest::from_der(&std::fs::read(path).unwrap()).unwrap();
        let one = req.tbs_request.request_list[0].clone();
        req.tbs_request.request_list = vec![one; n];
        req.to_der().unwrap()
    }

    #[test]
    fn cert_ids_are_counted_from_headers() {
        for n in [0, 1, 2, 8, 9, 10_000] {
            assert_eq!(count_cert_ids(&with_cert_ids(n)), Some(n), "{n}");
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/");
        for (file, n) in
            [("openssl-two-certids.der", 2), ("gnutls.der", 1), ("python-cryptography-nonce.der", 1)]
        {
            assert_eq!(count_cert_ids(&std::fs::read(format!("{dir}{file}")).unwrap()), Some(n), "{file}");
        }
        assert_eq!(count_cert_ids(b""), None);
        assert_eq!(count_cert_ids(&[0x30, 0x03, 0x30, 0x01]), None, "truncated");
        assert_eq!(count_cert_ids(&[0x04, 0x00]), None, "not a SEQUENCE");
    }

    /// 10,000 CertIDs (~700 KB, once an operator raises `max_body_bytes`)
    /// are refused from the TLV headers: the entries are never decoded, which
    /// a list of 10,000 non-CertIDs shows (the full decoder would call it
    /// malformed at the first one).
    #[test]
    fn ten_thousand_cert_ids_are_refused_before_decoding() {
        let issuers = Issuers::new(Vec::new());
        assert_eq!(decode(&with_cert_ids(10_000), &issuers, 8), Err(RequestError::TooMany(10_000, 8)));
        let tlv = |tag, content: &[u8]| {
            let mut v = Vec::new();
            crate::ocsp::response::der_tlv(tag, content, &mut v);
            v
        };
        let nulls = tlv(0x30, &tlv(0x30, &tlv(0x30, &[0x05, 0x00].repeat(10_000))));
        assert_eq!(decode(&nulls, &issuers, 8), Err(RequestError::TooMany(10_000, 8)));
        assert!(matches!(decode(&nulls, &issuers, 10_000), Err(RequestError::Malformed(_))));
        // Within bounds the full decoder still gives its verdict.
        assert_eq!(decode(&with_cert_ids(0), &issuers, 8), Err(RequestError::Empty));
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        crate::ocsp::response::der_tlv(tag, content, &mut v);
        v
    }

    /// A CertID of the test issuer, SHA-1, with `params` after the OID and
    /// `serial` as the INTEGER's content.
    fn cert_id(params: &[u8], serial: &[u8]) -> Vec<u8> {
        let issuers = crate::ocsp::issuer::test_issuers();
        let is = issuers.get(crate::ocsp::IssuerId(0));
        let alg = [tlv(0x06, HashAlg::Sha1.oid().as_bytes()), params.to_vec()].concat();
        tlv(
            0x30,
            &[
                tlv(0x30, &alg),
                tlv(0x04, is.name_hash(HashAlg::Sha1)),
                tlv(0x04, is.key_hash(HashAlg::Sha1)),
                tlv(0x02, serial),
            ]
            .concat(),
        )
    }

    /// An extension (critical or not) with an opaque value.
    fn extension(oid: &str, critical: bool) -> Vec<u8> {
        let oid = ObjectIdentifier::new_unwrap(oid);
        let crit = if critical { tlv(0x01, &[0xff]) } else { Vec::new() };
        tlv(0x30, &[tlv(0x06, oid.as_bytes()), crit, tlv(0x04, &tlv(0x04, b"x"))].concat())
    }

    /// `OCSPRequest` around one `Request` (its CertID and single extensions),
    /// with request extensions and a raw `optionalSignature` content.
    fn request(
        cert_id: &[u8],
        single_exts: &[Vec<u8>],
        exts: &[Vec<u8>],
        signature: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut one = cert_id.to_vec();
        if !single_exts.is_empty() {
            one.extend(tlv(0xa0, &tlv(0x30, &single_exts.concat())));
        }
        let mut tbs = tlv(0x30, &tlv(0x30, &one));
        if !exts.is_empty() {
            tbs.extend(tlv(0xa2, &tlv(0x30, &exts.concat())));
        }
        let mut req = tlv(0x30, &tbs);
        if let Some(sig) = signature {
            req.extend(tlv(0xa0, sig));
        }
        tlv(0x30, &req)
    }

    fn decode_one(der: &[u8]) -> Result<Vec<CertId>, RequestError> {
        decode(der, &crate::ocsp::issuer::test_issuers(), 8)
    }

    /// Bouncy Castle (and RFC 5754) leave SHA-2 parameters out; OpenSSL
    /// sends NULL. Both are read, and told apart (the response echoes each).
    #[test]
    fn hash_parameters_are_read_as_sent() {
        let null = decode_one(&request(&cert_id(&[0x05, 0x00], &[0x42]), &[], &[], None)).unwrap();
        assert_eq!(null[0].params, HashParams::Null);
        let absent = decode_one(&request(&cert_id(&[], &[0x42]), &[], &[], None)).unwrap();
        assert_eq!(absent[0].params, HashParams::Absent);
        assert_ne!(null[0], absent[0]);
        assert_eq!(
            decode_one(&request(&cert_id(&tlv(0x04, b"?"), &[0x42]), &[], &[], None)),
            Err(RequestError::BadHashParams)
        );
    }

    /// RFC 6960 §4.4: an unknown critical extension is not ignored; unknown
    /// non-critical ones and critical ones we understand are.
    #[test]
    fn unknown_critical_extensions_are_refused() {
        let id = cert_id(&[0x05, 0x00], &[0x42]);
        let nonce = "1.3.6.1.5.5.7.48.1.2";
        let other = "1.2.3.4";
        assert!(decode_one(&request(&id, &[], &[extension(nonce, true)], None)).is_ok());
        assert!(decode_one(&request(&id, &[], &[extension(other, false)], None)).is_ok());
        assert_eq!(
            decode_one(&request(&id, &[], &[extension(nonce, false), extension(other, true)], None)),
            Err(RequestError::CriticalExtension(ObjectIdentifier::new_unwrap(other)))
        );
        assert!(decode_one(&request(&id, &[extension("1.3.6.1.5.5.7.48.1.7", true)], &[], None)).is_ok());
        assert_eq!(
            decode_one(&request(&id, &[extension(other, true)], &[], None)),
            Err(RequestError::CriticalExtension(ObjectIdentifier::new_unwrap(other)))
        );
    }

    /// A serial no CA issues is `BadSerial` (→ `unauthorized`), whatever its
    /// length; bad DER stays malformed.
    #[test]
    fn long_and_negative_serials_are_bad_serials_not_bad_der() {
        for (serial, want) in [
            (vec![0x11; 21], RequestError::BadSerial(SerialError::TooLong)),
            (vec![0x7f; 40], RequestError::BadSerial(SerialError::TooLong)),
            (vec![0x80, 1], RequestError::BadSerial(SerialError::Negative)),
        ] {
            assert_eq!(decode_one(&request(&cert_id(&[0x05, 0x00], &serial), &[], &[], None)), Err(want));
        }
        assert!(decode_one(&request(&cert_id(&[0x05, 0x00], &[0x11; 20]), &[], &[], None)).is_ok());
        assert!(matches!(
            decode_one(&request(&cert_id(&[0x05, 0x00], &[0x00, 0x01]), &[], &[], None)),
            Err(RequestError::Malformed(_))
        ));
    }

    /// The signature of a signed request is not verified, so what it holds
    /// (here a "certificate" that is no certificate) is not parsed either;
    /// its DER framing still is.
    #[test]
    fn a_signed_request_is_answered_whatever_its_certificates_hold() {
        let id = cert_id(&[0x05, 0x00], &[0x42]);
        let alg = tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
        let not_a_cert = tlv(0x30, &tlv(0x02, &[1]));
        let sig = tlv(0x30, &[alg, tlv(0x03, &[0, 1, 2]), tlv(0xa0, &tlv(0x30, &not_a_cert))].concat());
        let der = request(&id, &[], &[], Some(&sig));
        assert!(OcspRequest::from_der(&der).is_err(), "x509-ocsp refuses it");
        assert_eq!(decode_one(&der).unwrap().len(), 1);
        let mut cut = request(&id, &[], &[], Some(&sig));
        let n = cut.len();
        cut.truncate(n - 1);
        assert!(matches!(decode_one(&cut), Err(RequestError::Malformed(_))));
    }
}
