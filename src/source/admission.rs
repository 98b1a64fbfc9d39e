//! Admission, the first step of the chain: turns request bytes into an
//! admitted [`Query`], or says why not (malformed → `malformedRequest`; an issuer we don't serve or a serial
//! no CA issues → `unauthorized`). Nothing past this point sees raw input.

use crate::error::OcspError;
use crate::ocsp::issuer::Issuers;
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

/// Cache key for a list of CertIDs (see [`crate::cache::key_of`]).
pub fn cache_key(ids: &[CertId]) -> Vec<u8> {
    crate::cache::key_of(ids)
}
