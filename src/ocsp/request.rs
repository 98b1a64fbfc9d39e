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

use der::Decode;
use x509_ocsp::OcspRequest;

use super::types::{CertId, HashAlg, Serial, SerialError};
use crate::issuer::Issuers;

/// Default upper bound on CertIDs in one request. OpenSSL sends one per `-cert`;
/// browsers send one. Each CertID costs a status lookup and a share of a
/// signature, so the bound keeps one request's work small.
pub const DEFAULT_MAX_CERT_IDS: usize = 8;

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
