//! Software keys (aws-lc-rs): ECDSA P-256/P-384 and RSA 2048–4096, loaded from
//! PKCS#8, SEC1 or PKCS#1 PEM.
//!
//! aws-lc-rs is used because it signs RSA about 2.5× faster than ring on this
//! machine kind and builds with a C compiler alone.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

use super::{SignError, Signer};

/// DER `AlgorithmIdentifier` of ecdsa-with-SHA256 (RFC 5758 §3.2, no parameters).
const ALG_ECDSA_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// DER `AlgorithmIdentifier` of ecdsa-with-SHA384.
const ALG_ECDSA_SHA384: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// DER `AlgorithmIdentifier` of sha256WithRSAEncryption (RFC 4055, NULL parameters).
const ALG_RSA_SHA256: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];

enum Key {
    Ec(EcdsaKeyPair, &'static [u8], &'static str),
    Rsa(RsaKeyPair),
}

/// A private key held in process memory.
pub struct SoftwareSigner {
    key: Key,
    rng: SystemRandom,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PEM block we understand.
    #[error("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY PEM block found")]
    NoKey,
    /// The PEM text is broken.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// The key is of a kind or size we do not sign with.
    #[error("unsupported or invalid key: {0}")]
    Unsupported(String),
}

impl SoftwareSigner {
    /// Loads the first private key found in `pem_text`.
    pub fn from_pem(pem_text: &str) -> Result<SoftwareSigner, KeyError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        for block in blocks {
            let der = block.contents();
            match block.tag() {
                "PRIVATE KEY" => return Self::from_pkcs8(der),
                "EC PRIVATE KEY" => return Self::from_sec1(der),
                "RSA PRIVATE KEY" => {
                    let k = RsaKeyPair::from_der(der).map_err(|e| KeyError::Unsupported(e.to_string()))?;
                    return Self::rsa(k);
                }
                _ => continue, // e.g. "EC PARAMETERS" written by `openssl ecparam -genkey`
            }
        }
        Err(KeyError::NoKey)
    }

    /// Loads a PKCS#8 `PrivateKeyInfo` (EC or RSA).
    pub fn from_pkcs8(der: &[u8]) -> Result<SoftwareSigner, KeyError> {
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der) {
            return Ok(Self::ec(k, ALG_ECDSA_SHA256, "ECDSA P-256"));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der) {
            return Ok(Self::ec(k, ALG_ECDSA_SHA384, "ECDSA P-384"));
        }
        match RsaKeyPair::from_pkcs8(der) {
            Ok(k) => Self::rsa(k),
            Err(e) => Err(KeyError::Unsupported(format!("not a P-256, P-384 or RSA key ({e})"))),
        }
    }

    fn from_sec1(der: &[u8]) -> Result<SoftwareSigner, KeyError> {
        if let Ok(k) = EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der) {
            return Ok(Self::ec(k, ALG_ECDSA_SHA256, "ECDSA P-256"));
        }
        match EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der) {
            Ok(k) => Ok(Self::ec(k, ALG_ECDSA_SHA384, "ECDSA P-384")),
            Err(e) => Err(KeyError::Unsupported(format!("EC key is not P-256 or P-384 ({e})"))),
        }
    }

    fn ec(k: EcdsaKeyPair, alg: &'static [u8], name: &'static str) -> SoftwareSigner {
        SoftwareSigner { key: Key::Ec(k, alg, name), rng: SystemRandom::new() }
    }

    fn rsa(k: RsaKeyPair) -> Result<SoftwareSigner, KeyError> {
        let bits = k.public_modulus_len() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(KeyError::Unsupported(format!("RSA-{bits}: only 2048 to 4096 bits are supported")));
        }
        Ok(SoftwareSigner { key: Key::Rsa(k), rng: SystemRandom::new() })
    }
}

impl Signer for SoftwareSigner {
    fn algorithm_der(&self) -> &[u8] {
        match &self.key {
            Key::Ec(_, alg, _) => alg,
            Key::Rsa(_) => ALG_RSA_SHA256,
        }
    }

    fn public_key_bits(&self) -> &[u8] {
        match &self.key {
            Key::Ec(k, _, _) => k.public_key().as_ref(),
            Key::Rsa(k) => k.public_key().as_ref(),
        }
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.key {
            Key::Ec(k, _, _) => k
                .sign(&self.rng, tbs)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Failed("ECDSA signing failed".into())),
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, tbs, &mut sig)
                    .map_err(|_| SignError::Failed("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }

    fn describe(&self) -> String {
        match &self.key {
            Key::Ec(_, _, name) => (*name).to_string(),
            Key::Rsa(k) => format!("RSA-{}", k.public_modulus_len() * 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_KEY: &str = include_str!("../../tests/data/client-requests/ca.key");

    #[test]
    fn loads_test_issuer_key_and_signs() {
        let s = SoftwareSigner::from_pem(CA_KEY).unwrap();
        assert_eq!(s.describe(), "ECDSA P-256");
        assert_eq!(s.public_key_bits().len(), 65);
        let sig = s.sign(b"hello").unwrap();
        assert_eq!(sig[0], 0x30);
        let pk = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, s.public_key_bits());
        pk.verify(b"hello", &sig).unwrap();
    }

    fn verify(s: &SoftwareSigner, alg: &'static dyn signature::VerificationAlgorithm) {
        let sig = s.sign(b"tbs").unwrap();
        signature::UnparsedPublicKey::new(alg, s.public_key_bits()).verify(b"tbs", &sig).unwrap();
    }

    #[test]
    fn p384_and_rsa_pkcs8_keys() {
        let rng = SystemRandom::new();
        let p384 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng).unwrap();
        let s = SoftwareSigner::from_pkcs8(p384.as_ref()).unwrap();
        assert_eq!(s.describe(), "ECDSA P-384");
        assert_eq!(s.algorithm_der(), ALG_ECDSA_SHA384);
        verify(&s, &signature::ECDSA_P384_SHA384_ASN1);

        use aws_lc_rs::encoding::AsDer;
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", rsa.as_der().unwrap().as_ref().to_vec()));
        let s = SoftwareSigner::from_pem(&pem).unwrap();
        assert_eq!(s.describe(), "RSA-2048");
        assert_eq!(s.algorithm_der(), ALG_RSA_SHA256);
        verify(&s, &signature::RSA_PKCS1_2048_8192_SHA256);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(SoftwareSigner::from_pem("nothing here"), Err(KeyError::NoKey)));
        let bad = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(SoftwareSigner::from_pem(bad), Err(KeyError::Unsupported(_))));
    }
}
