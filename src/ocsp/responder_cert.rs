//! Checks of a delegated responder certificate (RFC 6960 §4.2.2.2, BR
//! §4.9.9), made when an issuer is set up (start-up and every reload), so a
//! certificate relying parties would reject is refused before it signs
//! anything: the issuer's signature on it verifies, it is within its
//! validity, it carries id-kp-OCSPSigning (checked by the caller, with the
//! issuer name) and id-pkix-ocsp-nocheck (without it a client is asked to
//! check the responder's own status, which the BR forbids leaving undefined).

use const_oid::ObjectIdentifier;
use der::Encode;
use x509_cert::Certificate;

/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
const OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");

/// Whether `issuer`'s key signed `cert`.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let sig = cert.signature.as_bytes().ok_or("the signature is not whole octets")?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    super::verify::verify(spki, &cert.signature_algorithm.oid, &tbs, sig)
        .map_err(|e| format!("the issuer's key: {e}"))
}

/// Checks `cert`, a delegated responder certificate of `issuer`, at `now`
/// (Unix seconds); its notAfter. The error names what is wrong.
pub fn check(cert: &Certificate, issuer: &Certificate, now: u64) -> Result<u64, String> {
    signed_by(cert, issuer)?;
    let v = &cert.tbs_certificate.validity;
    let (from, until) = (v.not_before.to_unix_duration().as_secs(), v.not_after.to_unix_duration().as_secs());
    if now < from {
        return Err(format!("not valid before {} (notBefore)", v.not_before));
    }
    if now > until {
        return Err(format!("expired at {} (notAfter)", v.not_after));
    }
    let nocheck = cert.tbs_certificate.extensions.iter().flatten().any(|e| e.extn_id == OCSP_NOCHECK);
    if !nocheck {
        return Err("lacks the id-pkix-ocsp-nocheck extension (RFC 6960 §4.2.2.2.1; the Baseline Requirements require it)".into());
    }
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    const DAY: u64 = 86_400;

    fn new_ca() -> (rcgen::Certificate, KeyPair, CertificateParams) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        (cert, key, p)
    }

    fn responder(
        ca: &(rcgen::Certificate, KeyPair, CertificateParams),
        nocheck: bool,
        days: (i64, i64),
    ) -> Certificate {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        if nocheck {
            p.custom_extensions =
                vec![CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 5], vec![0x05, 0x00])];
        }
        let now = crate::clock::unix_now() as i64;
        let ymd = |unix: i64| {
            let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(unix as u64)).unwrap();
            (dt.year() as i32, dt.month(), dt.day())
        };
        let (from, until) = (ymd(now + days.0 * DAY as i64), ymd(now + days.1 * DAY as i64));
        // Midnight UTC of those days, as rcgen takes times.
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let issuer = rcgen::Issuer::from_params(&ca.2, &ca.1);
        Certificate::from_der(p.signed_by(&key, &issuer).unwrap().der()).unwrap()
    }

    #[test]
    fn a_good_delegated_certificate_passes_with_its_not_after() {
        let ca = new_ca();
        let issuer = Certificate::from_der(ca.0.der()).unwrap();
        let rc = responder(&ca, true, (-1, 30));
        let until = check(&rc, &issuer, crate::clock::unix_now()).unwrap();
        assert!(until > crate::clock::unix_now() + 29 * DAY);
    }

    #[test]
    fn every_fault_is_named() {
        let ca = new_ca();
        let issuer = Certificate::from_der(ca.0.der()).unwrap();
        let now = crate::clock::unix_now();
        let e = check(&responder(&ca, false, (-1, 30)), &issuer, now).unwrap_err();
        assert!(e.contains("id-pkix-ocsp-nocheck"), "{e}");
        let e = check(&responder(&ca, true, (-30, -1)), &issuer, now).unwrap_err();
        assert!(e.contains("expired") && e.contains("notAfter"), "{e}");
        let e = check(&responder(&ca, true, (2, 30)), &issuer, now).unwrap_err();
        assert!(e.contains("notBefore"), "{e}");
        // Signed by another CA with the same (empty) name.
        let other = new_ca();
        let e = check(&responder(&other, true, (-1, 30)), &issuer, now).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }
}
