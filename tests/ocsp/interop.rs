//! Interop with the `openssl ocsp` CLI against a real server: every answer is
//! verified by OpenSSL against the issuer (signature, CertID, validity).

use crate::common;

use std::path::Path;

use common::*;

fn ocsp_post(server: &Server, extra: &[&str]) -> (bool, String) {
    let url = server.url();
    let mut cmd = openssl();
    cmd.args(["ocsp", "-issuer"]).arg(data("ca.pem")).args(["-url", &url, "-CAfile"]).arg(data("ca.pem"));
    cmd.args(extra);
    run(&mut cmd)
}

#[test]
fn good_revoked_unknown_via_post() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let good = data("leaf-good.pem");
    let (ok, out) = ocsp_post(&s, &["-cert", good.to_str().unwrap(), "-no_nonce"]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains(": good"), "{out}");

    let revoked = data("leaf-revoked.pem");
    let (ok, out) = ocsp_post(&s, &["-cert", revoked.to_str().unwrap(), "-no_nonce"]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains(": revoked"), "{out}");
    assert!(out.contains("Reason: keyCompromise"), "{out}");
    assert!(out.contains("Revocation Time: Nov  1 12:00:00 2026 GMT"), "{out}");

    let (_, out) = ocsp_post(&s, &["-serial", "0x0BADBADBAD", "-no_nonce"]);
    assert!(out.contains("Responder Error: unauthorized (6)"), "{out}");
}

#[test]
fn sha256_certid_and_default_nonce() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let good = data("leaf-good.pem");
    let (ok, out) = ocsp_post(&s, &["-sha256", "-cert", good.to_str().unwrap(), "-no_nonce", "-resp_text"]);
    assert!(ok, "{out}");
    assert!(out.contains("Hash Algorithm: sha256"), "{out}");
    assert!(out.contains(": good"), "{out}");
    // With a nonce (OpenSSL's default) the cached answer carries none: policy,
    // and OpenSSL accepts it with a warning.
    let (ok, out) = ocsp_post(&s, &["-cert", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("WARNING: no nonce in response"), "{out}");
    assert!(out.contains(": good"), "{out}");
}

#[test]
fn unknown_issuer_is_unauthorized() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let dir = tempfile::tempdir().unwrap();
    let other = make_ec_ca(dir.path(), "other");
    let url = s.url();
    let (_, out) = run(openssl().args(["ocsp", "-issuer"]).arg(&other).args([
        "-serial",
        &format!("0x{GOOD}"),
        "-url",
        &url,
        "-no_nonce",
    ]));
    assert!(out.contains("Responder Error: unauthorized (6)"), "{out}");
}

#[test]
fn get_requests_from_every_client_verify() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let dir = tempfile::tempdir().unwrap();
    for (file, sha256) in [
        ("openssl-sha1.der", false),
        ("openssl-sha1-nonce.der", false),
        ("openssl-sha256.der", true),
        ("gnutls.der", false),
        ("python-cryptography-sha1.der", false),
        ("python-cryptography-sha256.der", true),
        ("python-cryptography-nonce.der", false),
    ] {
        let der = std::fs::read(data(file)).unwrap();
        for (how, resp) in [
            ("GET", roundtrip(&s, &get(&format!("/{}", b64(&der))))),
            ("POST", roundtrip(&s, &post("/", &der))),
        ] {
            assert_eq!(resp.status, 200, "{file} {how}");
            assert_eq!(resp.header("content-type"), Some("application/ocsp-response"));
            let path = dir.path().join(format!("{file}.{how}.resp"));
            std::fs::write(&path, &resp.body).unwrap();
            let mut cmd = openssl();
            cmd.args(["ocsp", "-respin"]).arg(&path).arg("-issuer").arg(data("ca.pem"));
            if sha256 {
                cmd.arg("-sha256"); // must precede -serial
            }
            cmd.args(["-serial", &format!("0x{GOOD}"), "-CAfile"]).arg(data("ca.pem")).arg("-no_nonce");
            let (ok, out) = run(&mut cmd);
            assert!(ok && out.contains("Response verify OK"), "{file} {how}: {out}");
            assert!(out.contains(": good"), "{file} {how}: {out}");
        }
    }
}

#[test]
fn two_certids_answered_in_one_response() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let der = std::fs::read(data("openssl-two-certids.der")).unwrap();
    let resp = roundtrip(&s, &post("/", &der));
    assert_eq!(resp.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.resp");
    std::fs::write(&path, &resp.body).unwrap();
    let (ok, out) = run(openssl()
        .args(["ocsp", "-respin"])
        .arg(&path)
        .arg("-issuer")
        .arg(data("ca.pem"))
        .args(["-serial", &format!("0x{GOOD}"), "-serial", &format!("0x{REVOKED}"), "-CAfile"])
        .arg(data("ca.pem"))
        .arg("-no_nonce"));
    assert!(ok, "{out}");
    assert!(out.contains(&format!("0x{GOOD}: good")), "{out}");
    assert!(out.contains(&format!("0x{REVOKED}: revoked")), "{out}");
}

#[test]
fn malformed_requests_get_malformed_request() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let resp = roundtrip(&s, &post("/", b"\x30\x03\x02\x01\x00 not an OCSP request"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, ocsp_error(1));
    assert_eq!(resp.header("cache-control"), Some("max-age=0, no-cache"));
    let resp = roundtrip(&s, &get("/MEQwQjBAMD4wPDAJBgUrDgMCGgUABBQ"));
    assert_eq!(resp.body, ocsp_error(1));
    let resp = roundtrip(&s, &get("/%%%%"));
    assert_eq!(resp.body, ocsp_error(1));
    // Trailing garbage after a valid request is malformed, not ignored.
    let mut der = std::fs::read(data("openssl-sha1.der")).unwrap();
    der.push(0);
    assert_eq!(roundtrip(&s, &post("/", &der)).body, ocsp_error(1));
}

/// Creates a self-signed P-256 CA in `dir`, returning the certificate path.
fn make_ec_ca(dir: &Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let (ok, out) = run(openssl()
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "30", "-subj", &format!("/CN={name} CA")]));
    assert!(ok, "{out}");
    cert
}

#[test]
fn delegated_responder_cert_is_included_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // SEC1 ("EC PRIVATE KEY") responder key, with the EC PARAMETERS block
    // `openssl ecparam -genkey` writes first.
    let (ok, out) =
        run(openssl().args(["ecparam", "-name", "prime256v1", "-genkey", "-out"]).arg(p.join("resp.key")));
    assert!(ok, "{out}");
    issue_responder_cert(p, "test OCSP responder");
    let issuer = IssuerTable::new("test", data("ca.pem"))
        .key("resp.key")
        .responder_cert("resp.pem")
        .index(data("index.txt"));
    let s = Server::start_in(dir, &ConfigBuilder::new().issuer(issuer));
    let good = data("leaf-good.pem");
    let (ok, out) = ocsp_post(&s, &["-cert", good.to_str().unwrap(), "-no_nonce", "-resp_text"]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("Subject: CN=test OCSP responder"), "responder cert included: {out}");
    assert!(out.contains(": good"), "{out}");
}

/// A delegated responder certificate relying parties would reject is refused
/// at start-up, naming the field and the fault; a good one's remaining life
/// is exported.
#[test]
fn delegated_responder_certs_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (ok, out) =
        run(openssl().args(["ecparam", "-name", "prime256v1", "-genkey", "-out"]).arg(p.join("resp.key")));
    assert!(ok, "{out}");
    let issuer = || {
        IssuerTable::new("test", data("ca.pem"))
            .key("resp.key")
            .responder_cert("resp.pem")
            .index(data("index.txt"))
    };
    let check = |what: &str| {
        let cfg = ConfigBuilder::new().issuer(issuer()).write(p.join("c.toml"));
        let (ok, out) = run(std::process::Command::new(server_bin()).arg("check-config").arg(&cfg));
        assert!(!ok, "{what}: accepted: {out}");
        out
    };
    issue_responder_cert_with(p, "no nocheck", "extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\n");
    let out = check("without id-pkix-ocsp-nocheck");
    assert!(out.contains("issuer[0].responder_cert") && out.contains("id-pkix-ocsp-nocheck"), "{out}");
    issue_responder_cert_with(p, "no eku", "basicConstraints=CA:FALSE\nnoCheck=ignored\n");
    let out = check("without id-kp-OCSPSigning");
    assert!(out.contains("issuer[0].responder_cert") && out.contains("id-kp-OCSPSigning"), "{out}");

    issue_responder_cert(p, "test OCSP responder");
    let port = free_port();
    let s = Server::start_in(dir, &ConfigBuilder::new().admin(format!("127.0.0.1:{port}")).issuer(issuer()));
    drop(s.url());
    let metrics = load::metrics(([127, 0, 0, 1], port).into());
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ocsp_origin_responder_cert_expiry_seconds{issuer=\"test\"}"))
        .unwrap_or_else(|| panic!("no expiry gauge: {metrics}"));
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((29.0 * 86_400.0..=30.0 * 86_400.0).contains(&secs), "{line}: openssl -days 30");
}

#[test]
fn rsa_issuer_next_to_ec_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_rsa_ca(p);
    let issuers = ConfigBuilder::new()
        .test_issuer()
        .issuer(IssuerTable::new("rsa", "rsa.pem").key("rsa.key").index("rsa-index.txt"));
    let rsa_ca = p.join("rsa.pem");
    let s = Server::start_in(dir, &issuers);
    let url = s.url();
    let (ok, out) = run(openssl()
        .args(["ocsp", "-issuer"])
        .arg(&rsa_ca)
        .args(["-serial", "0x05", "-serial", "0x06", "-url", &url, "-CAfile"])
        .arg(&rsa_ca)
        .args(["-no_nonce", "-resp_text"]));
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("sha256WithRSAEncryption"), "{out}");
    assert!(out.contains("0x05: good"), "{out}");
    assert!(out.contains("0x06: revoked"), "{out}");
    assert!(out.contains("Reason: superseded"), "{out}");
    // The EC issuer still answers on the same server.
    let (ok, out) = ocsp_post(&s, &["-cert", data("leaf-good.pem").to_str().unwrap(), "-no_nonce"]);
    assert!(ok && out.contains(": good"), "{out}");
}
