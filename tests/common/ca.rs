//! The test CA of `tests/data/client-requests`: its files, its certificates'
//! serials, `index.txt` lines and OCSP requests for any serial of it (made by
//! `openssl`), and delegated responder certificates it issues.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::server::run;

/// The test issuer's files.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client-requests").join(name)
}

/// Serial of `leaf-good.pem`.
pub const GOOD: &str = "0A1B2C3D4E5F60718293";
/// Serial of `leaf-revoked.pem` (revoked 2026-11-01 12:00:00Z, keyCompromise).
pub const REVOKED: &str = "F1E2D3C4B5A6978877";

/// `openssl` must exist: the interop tests are the point.
pub fn openssl() -> Command {
    Command::new("openssl")
}

/// DER OCSP requests (SHA-1, no nonce) for serials of the test issuer, made by openssl.
pub fn requests_for(serials: &[String]) -> Vec<Vec<u8>> {
    let d = tempfile::tempdir().unwrap();
    serials
        .iter()
        .map(|s| {
            let out = d.path().join(format!("{s}.der"));
            let (ok, msg) = run(openssl()
                .args(["ocsp", "-issuer"])
                .arg(data("ca.pem"))
                .args(["-serial", &format!("0x{s}"), "-no_nonce", "-reqout"])
                .arg(&out));
            assert!(ok, "{msg}");
            std::fs::read(out).unwrap()
        })
        .collect()
}

/// An index.txt with `n` good certificates, serials 0x1000 + i.
pub fn index_with(n: usize) -> (String, Vec<String>) {
    let serials: Vec<String> = (0..n).map(|i| format!("{:04X}", 0x1000 + i)).collect();
    let text = serials.iter().map(|s| format!("V\t361125115433Z\t\t{s}\tunknown\t/CN={s}\n")).collect();
    (text, serials)
}

/// Issues `dir/resp.pem`, a delegated OCSP responder certificate (EKU
/// id-kp-OCSPSigning, id-pkix-ocsp-nocheck) for the key in `dir/resp.key`,
/// signed by the test CA.
pub fn issue_responder_cert(dir: &Path, cn: &str) {
    issue_responder_cert_with(
        dir,
        cn,
        "extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\nnoCheck=ignored\n",
    )
}

/// [`issue_responder_cert`] with these OpenSSL extension lines.
pub fn issue_responder_cert_with(dir: &Path, cn: &str, extensions: &str) {
    let (ok, out) = run(openssl()
        .args(["req", "-new", "-key"])
        .arg(dir.join("resp.key"))
        .args(["-subj", &format!("/CN={cn}"), "-out"])
        .arg(dir.join("resp.csr")));
    assert!(ok, "{out}");
    std::fs::write(dir.join("ext.cnf"), extensions).unwrap();
    let (ok, out) = run(openssl()
        .args(["x509", "-req", "-in"])
        .arg(dir.join("resp.csr"))
        .arg("-CA")
        .arg(data("ca.pem"))
        .arg("-CAkey")
        .arg(data("ca.key"))
        .args(["-set_serial", "0x77", "-days", "30", "-extfile"])
        .arg(dir.join("ext.cnf"))
        .arg("-out")
        .arg(dir.join("resp.pem")));
    assert!(ok, "{out}");
}

/// An `index.txt` line for a certificate valid until 2036.
pub fn index_line(serial: &str, revoked: bool) -> String {
    if revoked {
        format!("R\t361125115433Z\t250101000000Z,keyCompromise\t{serial}\tunknown\t/CN={serial}\n")
    } else {
        format!("V\t361125115433Z\t\t{serial}\tunknown\t/CN={serial}\n")
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    ocsp_origin::asn1::der_tlv(tag, content, &mut v);
    v
}

/// A CertID (DER) naming the test issuer: `alg`, with NULL hash parameters
/// (as OpenSSL sends them) or none (as Bouncy Castle does), for the serial
/// with hex form `serial`.
pub fn cert_id_der(alg: ocsp_origin::ocsp::HashAlg, null: bool, serial: &str) -> Vec<u8> {
    let serial = ocsp_origin::ocsp::Serial::from_hex(serial).unwrap();
    cert_id_der_raw(alg, null, serial.as_bytes())
}

/// [`cert_id_der`] with any INTEGER content octets as the serial.
pub fn cert_id_der_raw(alg: ocsp_origin::ocsp::HashAlg, null: bool, serial: &[u8]) -> Vec<u8> {
    let ca = ocsp_origin::ocsp::issuer::parse_certificate(&std::fs::read(data("ca.pem")).unwrap()).unwrap();
    let (name_hash, key_hash) = ocsp_origin::ocsp::issuer::cert_id_hashes(&ca, alg).unwrap();
    let mut alg_id = tlv(0x06, alg.oid().as_bytes());
    if null {
        alg_id.extend_from_slice(&[0x05, 0x00]);
    }
    tlv(0x30, &[tlv(0x30, &alg_id), tlv(0x04, &name_hash), tlv(0x04, &key_hash), tlv(0x02, serial)].concat())
}

/// An `OCSPRequest` (DER) listing `cert_ids`, with `extensions` (each a
/// whole `Extension`) as its `requestExtensions`.
pub fn request_der(cert_ids: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
    let list: Vec<u8> = cert_ids.iter().flat_map(|c| tlv(0x30, c)).collect();
    let mut tbs = tlv(0x30, &list);
    if !extensions.is_empty() {
        tbs.extend(tlv(0xa2, &tlv(0x30, &extensions.concat())));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

/// An `Extension` (DER) with an opaque value.
pub fn extension_der(oid: &str, critical: bool) -> Vec<u8> {
    let oid = const_oid::ObjectIdentifier::new_unwrap(oid);
    let crit = if critical { tlv(0x01, &[0xff]) } else { Vec::new() };
    tlv(0x30, &[tlv(0x06, oid.as_bytes()), crit, tlv(0x04, &tlv(0x04, b"0123456789abcdef"))].concat())
}

/// A self-signed RSA CA in `dir`: `rsa.key` (PKCS#1, "RSA PRIVATE KEY"),
/// `rsa.pem`, and `rsa-index.txt` with serial 05 good and 06 revoked
/// (superseded).
pub fn make_rsa_ca(dir: &Path) {
    let (ok, out) =
        run(openssl().args(["genrsa", "-traditional", "-out"]).arg(dir.join("rsa.key")).arg("2048"));
    assert!(ok, "{out}");
    let (ok, out) = run(openssl()
        .args(["req", "-x509", "-new", "-key"])
        .arg(dir.join("rsa.key"))
        .args(["-days", "30", "-subj", "/CN=RSA test CA", "-out"])
        .arg(dir.join("rsa.pem")));
    assert!(ok, "{out}");
    std::fs::write(
        dir.join("rsa-index.txt"),
        "V\t361125115433Z\t\t05\tunknown\t/CN=rsa-leaf\nR\t361125115433Z\t260102030405Z,superseded\t06\tunknown\t/CN=rsa-old\n",
    )
    .unwrap();
}
