//! `ocsp-origin demo`: a throwaway P-256 CA with N certificates, some revoked
//! with varied reasons, written as the files a real deployment would use
//! (`ca.pem`, `ca.key`, an OpenSSL `index.txt`, a few leaf PEMs and an
//! `ocsp-origin.toml`), so the demo exercises exactly the `serve` code path.
//!
//! It follows the Baseline Requirements profile the server defaults to:
//! revocation reasons are those the BR allows for subscriber certificates,
//! the CA's subjectKeyIdentifier is RFC 5280 §4.2.1.2 method 1 (SHA-1 of the
//! subjectPublicKey bits), and leaves carry their own SKI and an
//! authorityKeyIdentifier naming the CA's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose};

use crate::clock::unix_now;
use crate::ocsp::{RevocationReason, Serial};
use crate::status::index_txt::format_openssl_time;

/// What the demo wrote.
#[derive(Debug)]
pub struct DemoFiles {
    /// The directory.
    pub dir: PathBuf,
    /// Certificates listed in `index.txt`.
    pub total: usize,
    /// Of which revoked.
    pub revoked: usize,
    /// Leaf PEMs written, with their status.
    pub leaves: Vec<(PathBuf, String)>,
    /// A serial (hex) that is not in the database.
    pub unknown_serial: String,
}

/// Every reason the Baseline Requirements allow for a subscriber
/// certificate, rotated through the revoked demo entries.
const REASONS: [RevocationReason; 6] = [
    RevocationReason::KeyCompromise,
    RevocationReason::Superseded,
    RevocationReason::CessationOfOperation,
    RevocationReason::AffiliationChanged,
    RevocationReason::Unspecified,
    RevocationReason::PrivilegeWithdrawn,
];

/// RFC 5280 §4.2.1.2 method 1: the SHA-1 of the subjectPublicKey BIT STRING's
/// bits (rcgen's default is a truncated SHA-256 of the whole SPKI).
fn key_id(key: &KeyPair) -> KeyIdMethod {
    KeyIdMethod::PreSpecified(crate::ocsp::HashAlg::Sha1.digest(key.public_key_raw()))
}

fn random_serial() -> Result<Serial, String> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| "no randomness".to_string())?;
    b[0] = (b[0] & 0x7f) | 0x01; // positive, 16 octets, never a leading zero
    Serial::from_der_content(&b).map_err(|e| e.to_string())
}

/// (year, month, day) of a Unix time, for rcgen's date helper.
fn ymd(unix: u64) -> (i32, u8, u8) {
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(unix))
        .unwrap_or(der::DateTime::INFINITY);
    (dt.year() as i32, dt.month(), dt.day())
}

/// Creates the demo CA in `dir` (created if missing) with `n` certificates.
pub fn create(dir: &Path, n: usize) -> Result<DemoFiles, String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    let now = unix_now();
    let day = 86_400;

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.distinguished_name.push(DnType::CommonName, "ocsp-origin demo CA");
    ca_params.distinguished_name.push(DnType::OrganizationName, "ocsp-origin demo");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_identifier_method = key_id(&ca_key);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let nb = ymd(now - day);
    let na = ymd(now + 3650 * day);
    ca_params.not_before = rcgen::date_time_ymd(nb.0, nb.1, nb.2);
    ca_params.not_after = rcgen::date_time_ymd(na.0, na.1, na.2);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);

    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| io(&dir.join(name).display().to_string(), e))
    };
    write("ca.pem", &ca_cert.pem())?;
    write("ca.key", &ca_key.serialize_pem())?;

    let mut index = String::new();
    let mut leaves = Vec::new();
    let mut revoked = 0;
    let leaf_not_after = now + 90 * day;
    for i in 0..n {
        let serial = random_serial()?;
        // The first entries are fixed so the printed commands cover each case;
        // then ~10% revoked with rotating reasons, and ~1% expired.
        let (flag, not_after, rev) = match i {
            0..=2 => ('V', leaf_not_after, None),
            3 => ('R', leaf_not_after, Some(RevocationReason::KeyCompromise)),
            4 => ('R', leaf_not_after, Some(RevocationReason::Superseded)),
            _ if i % 10 == 7 => ('R', leaf_not_after, Some(REASONS[(i / 10) % REASONS.len()])),
            _ if i % 100 == 51 => ('E', now - 30 * day, None),
            _ => ('V', leaf_not_after, None),
        };
        let rev_field = match rev {
            None => String::new(),
            Some(r) => {
                revoked += 1;
                let at = format_openssl_time(now - day - (i as u64 % 7) * 3600);
                if r == RevocationReason::Unspecified {
                    at
                } else {
                    format!("{at},{}", r.openssl_name())
                }
            }
        };
        let cn = format!("host{i}.demo.example");
        let _ = writeln!(
            index,
            "{flag}\t{}\t{rev_field}\t{serial}\tunknown\t/CN={cn}",
            format_openssl_time(not_after)
        );
        if i <= 4 {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
            let mut p = CertificateParams::new(vec![cn.clone()]).map_err(|e| e.to_string())?;
            p.distinguished_name.push(DnType::CommonName, cn);
            // basicConstraints CA:FALSE, which is also what makes rcgen write the SKI.
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_identifier_method = key_id(&key);
            p.use_authority_key_identifier_extension = true;
            p.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
            p.not_before = ca_params.not_before;
            let la = ymd(not_after);
            p.not_after = rcgen::date_time_ymd(la.0, la.1, la.2);
            let cert = p.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
            let (name, label) = match rev {
                None => (format!("good-{}.pem", i + 1), "good".to_string()),
                Some(r) => (format!("revoked-{}.pem", i - 2), format!("revoked ({})", r.openssl_name())),
            };
            write(&name, &cert.pem())?;
            leaves.push((dir.join(name), label));
        }
    }
    write("index.txt", &index)?;
    let config = "# Written by `ocsp-origin demo`; serve it with `ocsp-origin serve --config <this file>`.\n\
         listen = \"127.0.0.1:8080\"\n\n[[issuer]]\nname = \"demo\"\ncert = \"ca.pem\"\nkey = \"ca.key\"\nindex = \"index.txt\"\n";
    write("ocsp-origin.toml", config)?;
    let unknown_serial = random_serial()?.to_string();
    Ok(DemoFiles { dir: dir.to_path_buf(), total: n, revoked, leaves, unknown_serial })
}

/// The ready-to-paste commands printed by the demo.
pub fn instructions(files: &DemoFiles, url: &str) -> String {
    let d = files.dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "demo CA in {d}: {} certificates, {} revoked", files.total, files.revoked);
    let _ = writeln!(s, "serving OCSP for it at {url}\n");
    let _ = writeln!(s, "POST (openssl ocsp), verified against the demo CA:");
    for (p, label) in &files.leaves {
        let _ = writeln!(
            s,
            "  # {label}\n  openssl ocsp -issuer {d}/ca.pem -cert {} -url {url} -CAfile {d}/ca.pem -resp_text",
            p.display()
        );
    }
    let _ = writeln!(
        s,
        "  # never issued -> unauthorized\n  openssl ocsp -issuer {d}/ca.pem -serial 0x{} -url {url} -CAfile {d}/ca.pem",
        files.unknown_serial
    );
    if let Some((good, _)) = files.leaves.first() {
        let _ = writeln!(s, "\nGET (RFC 5019), fetched with curl and verified with openssl:");
        let _ = writeln!(
            s,
            "  openssl ocsp -issuer {d}/ca.pem -cert {} -no_nonce -reqout {d}/req.der",
            good.display()
        );
        let _ = writeln!(s, "  curl -sS -o {d}/resp.der -D - {url}/$(base64 -w0 {d}/req.der)");
        let _ = writeln!(
            s,
            "  openssl ocsp -respin {d}/resp.der -issuer {d}/ca.pem -cert {} -CAfile {d}/ca.pem -no_nonce -resp_text",
            good.display()
        );
    }
    s
}
