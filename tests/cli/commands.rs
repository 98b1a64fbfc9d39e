//! The command line: `check-config` reports errors by field, `demo` writes a
//! working CA and its printed `openssl ocsp` commands verify.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

#[test]
fn check_config_accepts_a_good_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.toml");
    ConfigBuilder::new().listen("127.0.0.1:0").test_issuer().write(&f);
    let (ok, out) = run(bin().arg("check-config").arg(&f));
    assert!(ok, "{out}");
    assert!(out.contains("OK (1 issuer(s)"), "{out}");
}

#[test]
fn check_config_names_the_bad_field() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.toml");
    let cases = [
        (ConfigBuilder::new().set("limits", "max_body_bytes", 0).test_issuer(), "limits.max_body_bytes"),
        (
            ConfigBuilder::new().issuer(IssuerTable::test().key(data("nope.key")).index(data("index.txt"))),
            "issuer[0].key",
        ),
        (ConfigBuilder::new().listen("localhost").test_issuer(), "listen"),
        (ConfigBuilder::new().top("colour", "blue"), "unknown field `colour`"),
        // A key that does not belong to the certificate.
        (
            ConfigBuilder::new()
                .issuer(IssuerTable::test().key(d.path().join("other.key")).index(data("index.txt"))),
            "issuer[0].key: the private key does not match",
        ),
    ];
    let (ok, out) = run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(d.path().join("other.key")));
    assert!(ok, "{out}");
    for (config, want) in cases {
        let text = config.build();
        std::fs::write(&f, &text).unwrap();
        let (ok, out) = run(bin().arg("check-config").arg(&f));
        assert!(!ok, "{text}");
        assert!(out.contains(want), "want {want:?} in {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    let (ok, out) = run(bin().arg("check-config").arg(d.path().join("missing.toml")));
    assert!(!ok && out.contains("missing.toml"), "{out}");
}

#[test]
fn demo_writes_a_ca_and_its_commands_verify() {
    let d = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["demo", "--listen", "127.0.0.1:0", "--certs", "200", "--cores", "1", "--dir"])
        .arg(d.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("serving OCSP for it at ") {
            url = Some(u.trim().to_string());
        }
        let done = line.contains("-resp_text") && line.contains("-respin");
        printed.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = url.expect("demo printed its URL");
    assert!(url.starts_with("http://127.0.0.1:"));
    let index = std::fs::read_to_string(d.path().join("index.txt")).unwrap();
    assert_eq!(index.lines().count(), 200);
    assert!(index.lines().filter(|l| l.starts_with("R\t")).count() >= 15);
    // The Baseline Requirements profile: only reasons the BR allows for
    // subscriber certificates, key identifiers by RFC 5280's method 1.
    for l in index.lines().filter(|l| l.starts_with("R\t")) {
        let revocation = l.split('\t').nth(2).unwrap();
        if let Some((_, reason)) = revocation.split_once(',') {
            let r = ocsp_origin::ocsp::RevocationReason::from_openssl_name(reason).unwrap();
            assert!(r.br_subscriber_allowed(), "{l}");
        }
    }
    {
        use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
        let cert = |name: &str| {
            ocsp_origin::ocsp::issuer::parse_certificate(&std::fs::read(d.path().join(name)).unwrap())
                .unwrap()
        };
        let method_1 = |c: &x509_cert::Certificate| {
            let bits = c.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
            ocsp_origin::ocsp::HashAlg::Sha1.digest(bits)
        };
        let ski = |c: &x509_cert::Certificate| {
            let (_, ski) = c.tbs_certificate.get::<SubjectKeyIdentifier>().unwrap().expect("an SKI");
            ski.0.as_bytes().to_vec()
        };
        let ca = cert("ca.pem");
        assert_eq!(ski(&ca), method_1(&ca), "the CA's SKI is RFC 5280 method 1");
        for leaf in ["good-1.pem", "revoked-1.pem"] {
            let leaf = cert(leaf);
            assert_eq!(ski(&leaf), method_1(&leaf));
            let (_, aki) = leaf.tbs_certificate.get::<AuthorityKeyIdentifier>().unwrap().expect("an AKI");
            assert_eq!(
                aki.key_identifier.unwrap().as_bytes(),
                &ski(&ca)[..],
                "the leaf's AKI names the CA's SKI"
            );
        }
    }

    // Run the printed POST commands exactly as a user would paste them.
    let mut verified = 0;
    for line in
        printed.iter().map(|l| l.trim()).filter(|l| l.starts_with("openssl ocsp") && l.contains("-url"))
    {
        let (_, out) = run(Command::new("sh").arg("-c").arg(line));
        if line.contains("good-") {
            assert!(out.contains("Response verify OK") && out.contains(": good"), "{line}\n{out}");
        } else if line.contains("revoked-") {
            assert!(out.contains("Response verify OK") && out.contains(": revoked"), "{line}\n{out}");
        } else {
            assert!(out.contains("unauthorized (6)"), "{line}\n{out}");
        }
        verified += 1;
    }
    assert_eq!(verified, 6, "3 good, 2 revoked, 1 unknown");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn demo_reports_a_busy_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let d = tempfile::tempdir().unwrap();
    let (ok, out) = run(bin()
        .args(["demo", "--certs", "10", "--listen", &taken.local_addr().unwrap().to_string(), "--dir"])
        .arg(d.path()));
    assert!(!ok);
    assert!(out.contains("cannot listen on"), "{out}");
}
