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
//! DER decoding is RustCrypto `x509-ocsp`; trailing bytes after the request are
//! an error. Request signatures are not verified (RFC 5019 §2.1.2 clients do not
//! sign) and extensions, including the nonce, are ignored: responses are cached
//! and shared, so they never echo a nonce (RFC 5019 §2.2.1, RFC 9919).

use der::{Decode, Header, Reader, SliceReader, Tag, TagNumber};
use x509_ocsp::OcspRequest;

use super::issuer::Issuers;
use super::types::{CertId, HashAlg, Serial, SerialError};

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
    let req = OcspRequest::from_der(der_bytes).map_err(RequestError::Malformed)?;
    let list = &req.tbs_request.request_list;
    if list.is_empty() {
        return Err(RequestError::Empty);
    }
    if list.len() > max_cert_ids {
        return Err(RequestError::TooMany(list.len(), max_cert_ids));
    }
    let mut ids = Vec::with_capacity(list.len());
    for r in list {
        let c = &r.req_cert;
        let alg = HashAlg::from_oid(&c.hash_algorithm.oid).ok_or(RequestError::UnsupportedHash)?;
        let issuer = issuers
            .identify(alg, c.issuer_name_hash.as_bytes(), c.issuer_key_hash.as_bytes())
            .ok_or(RequestError::UnknownIssuer)?;
        let serial = Serial::from_der_content(c.serial_number.as_bytes()).map_err(RequestError::BadSerial)?;
        ids.push(CertId { issuer, alg, serial });
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
}
