//! DER test vectors: requests made by real clients decode into the expected
//! typed CertIDs; broken encodings fail with a position; encoded responses
//! decode back with every field as intended and a signature that verifies.

use crate::common;

use std::sync::Arc;

use der::Decode;
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use ocsp_origin::ocsp::request::{decode, RequestError};
use ocsp_origin::ocsp::response::{assemble, response_data, Validity};
use ocsp_origin::ocsp::{CertId, HashAlg, IssuerId, RevocationReason, Serial};
use ocsp_origin::signer::{Signer, SoftwareSigner};
use ocsp_origin::status::CertStatus;

fn test_issuers() -> Issuers {
    let cert = parse_certificate(&std::fs::read(common::data("ca.pem")).unwrap()).unwrap();
    let key = std::fs::read_to_string(common::data("ca.key")).unwrap();
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(&key).unwrap());
    Issuers::new(vec![Issuer::new("test", cert, signer, None).unwrap()])
}

fn id(alg: HashAlg, serial: &str) -> CertId {
    CertId::new(IssuerId(0), alg, Serial::from_hex(serial).unwrap())
}

#[test]
fn client_requests_decode_to_typed_certids() {
    let issuers = test_issuers();
    let cases: [(&str, Vec<CertId>); 8] = [
        ("openssl-sha1.der", vec![id(HashAlg::Sha1, common::GOOD)]),
        ("openssl-sha1-nonce.der", vec![id(HashAlg::Sha1, common::GOOD)]),
        ("openssl-sha256.der", vec![id(HashAlg::Sha256, common::GOOD)]),
        (
            "openssl-two-certids.der",
            vec![id(HashAlg::Sha1, common::GOOD), id(HashAlg::Sha1, common::REVOKED)],
        ),
        ("gnutls.der", vec![id(HashAlg::Sha1, common::GOOD)]),
        ("python-cryptography-sha1.der", vec![id(HashAlg::Sha1, common::GOOD)]),
        ("python-cryptography-sha256.der", vec![id(HashAlg::Sha256, common::GOOD)]),
        ("python-cryptography-nonce.der", vec![id(HashAlg::Sha1, common::GOOD)]),
    ];
    for (file, want) in cases {
        let der = std::fs::read(common::data(file)).unwrap();
        assert_eq!(decode(&der, &issuers, 8).unwrap(), want, "{file}");
    }
}

#[test]
fn revoked_serial_keeps_its_sign_octet() {
    let issuers = test_issuers();
    let der = std::fs::read(common::data("openssl-two-certids.der")).unwrap();
    let ids = decode(&der, &issuers, 8).unwrap();
    assert_eq!(ids[1].serial.as_bytes()[0], 0x00, "F1E2… has its high bit set");
}

#[test]
fn broken_encodings_fail_with_a_position() {
    let issuers = test_issuers();
    let der = std::fs::read(common::data("openssl-sha1.der")).unwrap();
    let mut trailing = der.clone();
    trailing.extend_from_slice(&[0, 0]);
    match decode(&trailing, &issuers, 8) {
        Err(RequestError::Malformed(e)) => assert!(e.position().is_some(), "{e}"),
        other => panic!("{other:?}"),
    }
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        assert!(matches!(decode(&der[..cut], &issuers, 8), Err(RequestError::Malformed(_))), "cut at {cut}");
    }
    assert!(matches!(decode(&[], &issuers, 8), Err(RequestError::Malformed(_))));
    let two = std::fs::read(common::data("openssl-two-certids.der")).unwrap();
    assert_eq!(decode(&two, &issuers, 1), Err(RequestError::TooMany(2, 1)));
}

#[test]
fn foreign_issuer_is_unknown() {
    let issuers = test_issuers();
    let mut der = std::fs::read(common::data("openssl-sha1.der")).unwrap();
    // Flip a bit inside the issuerKeyHash (offset found by searching the known hash).
    let cert = parse_certificate(&std::fs::read(common::data("ca.pem")).unwrap()).unwrap();
    let key_hash =
        HashAlg::Sha1.digest(cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes());
    let at = der.windows(20).position(|w| w == key_hash.as_slice()).unwrap();
    der[at] ^= 1;
    assert_eq!(decode(&der, &issuers, 8), Err(RequestError::UnknownIssuer));
}

#[test]
fn encoded_response_decodes_and_verifies() {
    let issuers = test_issuers();
    let issuer = issuers.get(IssuerId(0));
    let v = Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
    let answers = [
        (id(HashAlg::Sha256, common::GOOD), CertStatus::Good),
        (
            id(HashAlg::Sha1, common::REVOKED),
            CertStatus::Revoked { at: 1_793_534_400, reason: RevocationReason::KeyCompromise },
        ),
        (
            id(HashAlg::Sha1, "01"),
            CertStatus::Revoked { at: 1_793_534_400, reason: RevocationReason::Unspecified },
        ),
    ];
    let tbs = response_data(issuer, &answers, v).unwrap();
    let sig = issuer.responder.signer.sign(&tbs).unwrap();
    let der = assemble(&tbs, &issuer.responder, &sig);

    let outer = x509_ocsp::OcspResponse::from_der(&der).unwrap();
    assert_eq!(outer.response_status, x509_ocsp::OcspResponseStatus::Successful);
    let rb = outer.response_bytes.unwrap();
    assert_eq!(rb.response_type, const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC);
    let basic = x509_ocsp::BasicOcspResponse::from_der(rb.response.as_bytes()).unwrap();
    assert!(basic.certs.is_none());
    let data = &basic.tbs_response_data;
    assert_eq!(
        data.responder_id,
        x509_ocsp::ResponderId::ByKey(der::asn1::OctetString::new(issuer.key_hash(HashAlg::Sha1)).unwrap())
    );
    assert_eq!(data.responses.len(), 3);
    let r0 = &data.responses[0];
    assert_eq!(r0.cert_id.hash_algorithm.oid, HashAlg::Sha256.oid());
    assert_eq!(r0.cert_id.issuer_key_hash.as_bytes(), issuer.key_hash(HashAlg::Sha256));
    assert_eq!(r0.cert_id.serial_number.as_bytes(), Serial::from_hex(common::GOOD).unwrap().as_bytes());
    assert_eq!(r0.cert_status, x509_ocsp::CertStatus::good());
    assert_eq!(r0.this_update.0.to_unix_duration().as_secs(), v.this_update);
    assert_eq!(r0.next_update.unwrap().0.to_unix_duration().as_secs(), v.next_update);
    match &data.responses[1].cert_status {
        x509_ocsp::CertStatus::Revoked(info) => {
            assert_eq!(info.revocation_time.0.to_unix_duration().as_secs(), 1_793_534_400);
            assert_eq!(info.revocation_reason, Some(x509_cert::ext::pkix::CrlReason::KeyCompromise));
        }
        other => panic!("{other:?}"),
    }
    match &data.responses[2].cert_status {
        x509_ocsp::CertStatus::Revoked(info) => {
            assert_eq!(info.revocation_reason, None, "unspecified omitted")
        }
        other => panic!("{other:?}"),
    }
    // The signature covers exactly the ResponseData bytes that were encoded.
    use der::Encode;
    assert_eq!(data.to_der().unwrap(), tbs);
    let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        issuer.responder.signer.public_key_bits(),
    );
    pk.verify(&tbs, basic.signature.raw_bytes()).unwrap();
}

#[test]
fn key_must_match_certificate() {
    let cert = parse_certificate(&std::fs::read(common::data("ca.pem")).unwrap()).unwrap();
    let other = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pkcs8(other.as_ref()).unwrap());
    assert!(Issuer::new("x", cert, signer, None).is_err());
}
