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
/// id-kp-OCSPSigning) for the key in `dir/resp.key`, signed by the test CA.
pub fn issue_responder_cert(dir: &Path, cn: &str) {
    let (ok, out) = run(openssl()
        .args(["req", "-new", "-key"])
        .arg(dir.join("resp.key"))
        .args(["-subj", &format!("/CN={cn}"), "-out"])
        .arg(dir.join("resp.csr")));
    assert!(ok, "{out}");
    std::fs::write(dir.join("ext.cnf"), "extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\n").unwrap();
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
