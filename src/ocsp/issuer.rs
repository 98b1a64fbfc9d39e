//! The issuers this responder answers for: each issuer's certificate, the
//! hashes that identify it in a CertID (per hash algorithm, computed once), and
//! the identity that signs its responses (the issuer key itself, or a delegated
//! responder certificate and key, RFC 6960 §4.2.2.2).

use std::sync::Arc;

use const_oid::db::rfc5280::ID_KP_OCSP_SIGNING;
use der::{Decode, DecodePem, Encode};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;

use super::{CertId, HashAlg, IssuerId, RevocationReason};
use crate::signer::Signer;

/// Who signs an issuer's responses.
pub struct ResponderIdentity {
    /// SHA-1 of the signing certificate's `subjectPublicKey` (RFC 6960 `KeyHash`),
    /// used for `ResponderID byKey`.
    pub key_hash: [u8; 20],
    /// DER of `[0] EXPLICIT SEQUENCE OF Certificate` carrying the delegated
    /// responder certificate, ready to append to a `BasicOCSPResponse`; `None`
    /// when the issuer signs its own responses.
    pub certs_field: Option<Vec<u8>>,
    /// The key.
    pub signer: Arc<dyn Signer>,
}

/// One issuing CA.
pub struct Issuer {
    /// Operator-chosen name (config, logs, metrics).
    pub name: String,
    /// The issuer certificate, DER.
    pub cert_der: Vec<u8>,
    /// Per [`HashAlg::index`]: hash of the issuer's subject Name DER.
    name_hashes: Vec<Vec<u8>>,
    /// Per [`HashAlg::index`]: hash of the issuer's `subjectPublicKey` bits.
    key_hashes: Vec<Vec<u8>>,
    /// Who signs.
    pub responder: ResponderIdentity,
    /// The delegated responder certificate's notAfter (Unix seconds), if
    /// one signs: exported as `ocsp_origin_responder_cert_expiry_seconds`.
    pub responder_not_after: Option<u64>,
    /// Held to the Baseline Requirements (`response.profile`): only the
    /// reasons the BR allows for subscriber certificates are shown.
    pub baseline: bool,
    /// With `[cdn]`: the cache tags its responses carry.
    pub tags: Option<Arc<crate::cache_tags::TagFormat>>,
}

/// Why an issuer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The certificate does not parse.
    #[error("certificate: {0}")]
    Cert(String),
    /// The key does not belong to the certificate.
    #[error("the private key does not match the public key of {0}")]
    KeyMismatch(&'static str),
    /// The delegated responder certificate is not usable for this issuer.
    #[error("responder certificate: {0}")]
    Responder(String),
}

/// Parses a PEM or DER certificate.
pub fn parse_certificate(bytes: &[u8]) -> Result<Certificate, IssuerError> {
    let text = std::str::from_utf8(bytes).ok().filter(|t| t.contains("-----BEGIN"));
    match text {
        Some(t) => Certificate::from_pem(t.trim_start()),
        None => Certificate::from_der(bytes),
    }
    .map_err(|e| IssuerError::Cert(e.to_string()))
}

fn spki_bits(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes()
}

/// The CertID hashes naming `cert` as issuer under `alg`: (issuerNameHash,
/// issuerKeyHash). Shared by the responder and the bench's request builder so
/// both always agree on what a CertID for this issuer looks like.
pub fn cert_id_hashes(cert: &Certificate, alg: HashAlg) -> Result<(Vec<u8>, Vec<u8>), der::Error> {
    let subject_der = cert.tbs_certificate.subject.to_der()?;
    Ok((alg.digest(&subject_der), alg.digest(spki_bits(cert))))
}

impl Issuer {
    /// Builds an issuer from its certificate and signing key, optionally with a
    /// delegated responder certificate (then `signer` is the responder's key).
    ///
    /// Refuses a key that does not match the certificate it signs for, and a
    /// responder certificate that the issuer did not issue or that lacks the
    /// id-kp-OCSPSigning extended key usage (clients would reject its
    /// answers), or that fails [`super::responder_cert::check`] now (not
    /// signed by the issuer, outside its validity, no id-pkix-ocsp-nocheck).
    pub fn new(
        name: &str,
        cert: Certificate,
        signer: Arc<dyn Signer>,
        responder_cert: Option<Certificate>,
    ) -> Result<Issuer, IssuerError> {
        let cert_der = cert.to_der().map_err(|e| IssuerError::Cert(e.to_string()))?;
        let mut responder_not_after = None;
        let (name_hashes, key_hashes) = HashAlg::ALL
            .iter()
            .map(|a| cert_id_hashes(&cert, *a))
            .collect::<Result<(Vec<_>, Vec<_>), _>>()
            .map_err(|e| IssuerError::Cert(e.to_string()))?;

        let (signing_cert, certs_field) = match &responder_cert {
            None => (&cert, None),
            Some(rc) => {
                if rc.tbs_certificate.issuer != cert.tbs_certificate.subject {
                    return Err(IssuerError::Responder("not issued by this issuer".into()));
                }
                let has_eku = rc
                    .tbs_certificate
                    .get::<ExtendedKeyUsage>()
                    .ok()
                    .flatten()
                    .map(|(_, eku)| eku.0.contains(&ID_KP_OCSP_SIGNING))
                    .unwrap_or(false);
                if !has_eku {
                    return Err(IssuerError::Responder("lacks extendedKeyUsage id-kp-OCSPSigning".into()));
                }
                let until = super::responder_cert::check(rc, &cert, crate::clock::unix_now())
                    .map_err(IssuerError::Responder)?;
                responder_not_after = Some(until);
                let rc_der = rc.to_der().map_err(|e| IssuerError::Responder(e.to_string()))?;
                let mut seq = Vec::new();
                crate::asn1::der_tlv(0x30, &rc_der, &mut seq);
                let mut field = Vec::new();
                crate::asn1::der_tlv(0xa0, &seq, &mut field);
                (rc, Some(field))
            }
        };
        if signer.public_key_bits() != spki_bits(signing_cert) {
            return Err(IssuerError::KeyMismatch(if responder_cert.is_some() {
                "the responder certificate"
            } else {
                "the issuer certificate"
            }));
        }
        let mut key_hash = [0u8; 20];
        key_hash.copy_from_slice(&HashAlg::Sha1.digest(spki_bits(signing_cert)));
        Ok(Issuer {
            name: name.to_string(),
            cert_der,
            name_hashes,
            key_hashes,
            responder: ResponderIdentity { key_hash, certs_field, signer },
            baseline: true,
            responder_not_after,
            tags: None,
        })
    }

    /// Holds responses to the Baseline Requirements (`true`, the default) or
    /// to RFC 6960 only.
    pub fn with_baseline(mut self, baseline: bool) -> Issuer {
        self.baseline = baseline;
        self
    }

    /// Tags its responses for a CDN (`[cdn]`).
    pub fn with_tags(mut self, tags: Option<Arc<crate::cache_tags::TagFormat>>) -> Issuer {
        self.tags = tags;
        self
    }

    /// The cache-tag header line for a response answering `ids`, if tagged.
    pub fn tag_line<'a>(&self, ids: impl Iterator<Item = &'a CertId> + Clone) -> Option<String> {
        self.tags.as_ref().map(|t| t.header_line(&self.name, ids.map(|id| id.serial.magnitude())))
    }

    /// The `revocationReason` a response shows for `reason`: none for
    /// unspecified (RFC 5280 §5.3.1 advises leaving it out, the BR requires
    /// it) and, under the Baseline Requirements, none for a reason the BR does
    /// not allow for subscriber certificates (§7.2.2: cACompromise,
    /// certificateHold, removeFromCRL, aACompromise): the status stays
    /// revoked, only the reason is left out.
    pub fn shown_reason(&self, reason: RevocationReason) -> Option<RevocationReason> {
        match reason {
            RevocationReason::Unspecified => None,
            r if self.baseline && !r.br_subscriber_allowed() => None,
            r => Some(r),
        }
    }

    /// Hash of the issuer's Name under `alg` (CertID `issuerNameHash`).
    pub fn name_hash(&self, alg: HashAlg) -> &[u8] {
        &self.name_hashes[alg.index()]
    }

    /// Hash of the issuer's public key under `alg` (CertID `issuerKeyHash`).
    pub fn key_hash(&self, alg: HashAlg) -> &[u8] {
        &self.key_hashes[alg.index()]
    }
}

/// The issuer table, shared read-only by all shards.
pub struct Issuers {
    list: Vec<Issuer>,
}

impl Issuers {
    /// Wraps a list; at most `u16::MAX` issuers.
    pub fn new(list: Vec<Issuer>) -> Issuers {
        assert!(list.len() < u16::MAX as usize, "too many issuers");
        Issuers { list }
    }

    /// Finds the issuer a CertID names: both hashes must match (a key hash alone
    /// could name a re-issued CA certificate with another subject).
    pub fn identify(&self, alg: HashAlg, name_hash: &[u8], key_hash: &[u8]) -> Option<IssuerId> {
        self.list
            .iter()
            .position(|i| i.key_hash(alg) == key_hash && i.name_hash(alg) == name_hash)
            .map(|p| IssuerId(p as u16))
    }

    /// The issuer with this id.
    pub fn get(&self, id: IssuerId) -> &Issuer {
        &self.list[id.0 as usize]
    }

    /// Looks an issuer up by its configured name.
    pub fn by_name(&self, name: &str) -> Option<IssuerId> {
        self.list.iter().position(|i| i.name == name).map(|p| IssuerId(p as u16))
    }

    /// All issuers.
    pub fn iter(&self) -> impl Iterator<Item = (IssuerId, &Issuer)> {
        self.list.iter().enumerate().map(|(i, is)| (IssuerId(i as u16), is))
    }

    /// Number of issuers.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The test CA of `tests/data/client-requests/` as the one issuer `"t"`
/// (software key), for unit tests that need a real issuer.
#[cfg(test)]
pub(crate) fn test_issuers() -> Arc<Issuers> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/");
    let cert = parse_certificate(&std::fs::read(format!("{dir}ca.pem")).unwrap()).unwrap();
    let key = std::fs::read_to_string(format!("{dir}ca.key")).unwrap();
    let signer: Arc<dyn Signer> = Arc::new(crate::signer::SoftwareSigner::from_pem(&key).unwrap());
    Arc::new(Issuers::new(vec![Issuer::new("t", cert, signer, None).unwrap()]))
}
