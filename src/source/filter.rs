//! The first source: turns request bytes into an admitted [`Query`], or says
//! why not (malformed → `malformedRequest`; an issuer we don't serve or a serial
//! no CA issues → `unauthorized`). Nothing past this point sees raw input.

use crate::error::OcspError;
use crate::issuer::Issuers;
use crate::ocsp::{request, CertId};

use super::Query;

/// Decodes and admits a DER OCSP request.
pub fn admit(der: &[u8], issuers: &Issuers, max_cert_ids: usize) -> Result<Query, OcspError> {
    let ids = request::decode(der, issuers, max_cert_ids)?;
    let issuer = ids[0].issuer;
    if ids.iter().any(|id| id.issuer != issuer) {
        return Err(OcspError::MixedIssuers);
    }
    let key = cache_key(&ids).into_boxed_slice();
    Ok(Query { issuer, ids, key })
}

/// Cache key for a list of CertIDs: per CertID, issuer (2 bytes), hash
/// algorithm (1), serial length (1) and serial. Distinct lists give distinct
/// keys; the same CertIDs from any client give the same key, so responses are
/// shared whatever the request's nonce or encoding.
pub fn cache_key(ids: &[CertId]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ids.len() * 24);
    for id in ids {
        k.extend_from_slice(&id.issuer.0.to_be_bytes());
        k.push(id.alg as u8);
        let s = id.serial.as_bytes();
        k.push(s.len() as u8);
        k.extend_from_slice(s);
    }
    k
}
