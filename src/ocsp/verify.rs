//! Verifying a signature made by the key of a `SubjectPublicKeyInfo`: an
//! issuer's signature on a delegated responder certificate (checked at
//! start-up, [`super::responder_cert`]) and, in the load generator, the
//! signature on every answer and on the certificates it carries. ECDSA on
//! P-256/P-384 with SHA-256/384, and RSA PKCS#1 v1.5 with SHA-256/384/512:
//! what the signers make.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use const_oid::ObjectIdentifier;
use spki::SubjectPublicKeyInfoOwned;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Verifies `sig` over `msg` by the key of `spki` with signature algorithm
/// `alg`; the error says why not.
pub fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &ObjectIdentifier,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let va: &'static dyn VerificationAlgorithm = match (*alg, curve) {
        (ECDSA_SHA256, Some(P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, Some(P256)) => &signature::ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA256, Some(P384)) => &signature::ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, Some(P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        (RSA_SHA256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RSA_SHA384, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RSA_SHA512, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (a, c) => return Err(format!("unsupported signature algorithm {a} for key curve {c:?}")),
    };
    UnparsedPublicKey::new(va, spki.subject_public_key.raw_bytes())
        .verify(msg, sig)
        .map_err(|_| "signature does not verify".to_string())
}
