//! OCSP answers signed inside a PKCS#11 token (SoftHSM2, a private token per
//! test) and verified by `openssl ocsp`, for EC and RSA keys; start-up refuses
//! keys that don't match their certificate, and says why for a wrong PIN or a
//! missing token.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Issuer "hsm" with `cert` and `index`, its key `key_label` in `token`.
fn hsm_issuer(
    token: &Token,
    key_label: &str,
    cert: impl AsRef<Path>,
    index: impl AsRef<Path>,
) -> IssuerTable {
    IssuerTable::new("hsm", cert).index(index).pkcs11(token.pkcs11(key_label))
}

fn check_config(dir: &Path, issuer: IssuerTable, env: &[(String, String)]) -> (bool, String) {
    let f = ConfigBuilder::new().issuer(issuer).write(dir.join("check.toml"));
    run(Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
        .arg("check-config")
        .arg(&f)
        .envs(env.iter().map(|(k, v)| (k, v))))
}

#[test]
fn ec_key_in_softhsm_signs_verifiable_answers() {
    let _turn = schedule::with_others();
    let token = Token::new("ocsp-ec");
    token.import(&data("ca.key"), "issuer-ec", "01");
    let issuer = hsm_issuer(&token, "issuer-ec", data("ca.pem"), data("index.txt"));
    let s =
        Server::start_env(tempfile::tempdir().unwrap(), &ConfigBuilder::new().issuer(issuer), &token.env());
    // The PIN was read, then scrubbed from the server's environment: nothing
    // reading /proc/<pid>/environ (or a child, or a core dump) finds it.
    let environ = std::fs::read(format!("/proc/{}/environ", s.pid())).unwrap();
    let pin = format!("OCSP_TEST_PIN={}", token.env()[1].1);
    assert!(!environ.windows(pin.len()).any(|w| w == pin.as_bytes()), "the PIN is still in the environment");
    assert!(environ.windows(14).any(|w| w == b"SOFTHSM2_CONF="), "the environment was read");
    let url = s.url();
    for (cert, want) in [("leaf-good.pem", ": good"), ("leaf-revoked.pem", ": revoked")] {
        for sha in [&[][..], &["-sha256"][..]] {
            let (ok, out) = run(openssl()
                .args(["ocsp", "-issuer"])
                .arg(data("ca.pem"))
                .args(sha)
                .arg("-cert")
                .arg(data(cert))
                .args(["-url", &url, "-no_nonce", "-CAfile"])
                .arg(data("ca.pem")));
            assert!(ok && out.contains("Response verify OK") && out.contains(want), "{cert} {sha:?}: {out}");
        }
    }
}

#[test]
fn rsa_key_in_softhsm_signs_verifiable_answers() {
    let _turn = schedule::with_others();
    let token = Token::new("ocsp-rsa");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (ok, out) = run(openssl()
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(p.join("rsa.key")));
    assert!(ok, "{out}");
    let (ok, out) = run(openssl()
        .args(["req", "-x509", "-new", "-key"])
        .arg(p.join("rsa.key"))
        .args(["-days", "30", "-subj", "/CN=RSA HSM CA", "-out"])
        .arg(p.join("rsa.pem")));
    assert!(ok, "{out}");
    token.import(&p.join("rsa.key"), "issuer-rsa", "02");
    std::fs::write(p.join("index.txt"), "V\t361125115433Z\t\t0A\tunknown\t/CN=a\nR\t361125115433Z\t261001000000Z,cessationOfOperation\t0B\tunknown\t/CN=b\n").unwrap();
    let issuer = hsm_issuer(&token, "issuer-rsa", "rsa.pem", "index.txt");
    let ca = p.join("rsa.pem");
    let s = Server::start_env(dir, &ConfigBuilder::new().issuer(issuer), &token.env());
    let url = s.url();
    let (ok, out) = run(openssl()
        .args(["ocsp", "-issuer"])
        .arg(&ca)
        .args(["-serial", "0x0A", "-serial", "0x0B", "-url", &url, "-no_nonce", "-resp_text", "-CAfile"])
        .arg(&ca));
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("sha256WithRSAEncryption"), "{out}");
    assert!(out.contains("0x0A: good") && out.contains("0x0B: revoked"), "{out}");
    assert!(out.contains("Reason: cessationOfOperation"), "{out}");
}

#[test]
fn start_up_refuses_a_key_that_does_not_match() {
    let _turn = schedule::with_others();
    let token = Token::new("ocsp-mismatch");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(openssl()
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(dir.path().join("other.key")));
    assert!(ok, "{out}");
    token.import(&dir.path().join("other.key"), "other", "03");
    let issuer = hsm_issuer(&token, "other", data("ca.pem"), data("index.txt"));
    let (ok, out) = check_config(dir.path(), issuer, &token.env());
    assert!(!ok);
    assert!(out.contains("issuer[0].key: the private key does not match"), "{out}");
}

#[test]
fn start_up_errors_are_clear() {
    let _turn = schedule::with_others();
    let token = Token::new("ocsp-errors");
    token.import(&data("ca.key"), "issuer-ec", "01");
    let dir = tempfile::tempdir().unwrap();
    let (ca, index) = (data("ca.pem"), data("index.txt"));
    // Wrong PIN.
    let mut env = token.env();
    env[1].1 = "9999".into();
    let (ok, out) = check_config(dir.path(), hsm_issuer(&token, "issuer-ec", &ca, &index), &env);
    assert!(!ok && out.contains("issuer[0].pkcs11: logging in") && out.contains("PIN is incorrect"), "{out}");
    assert!(!out.contains("9999"), "the PIN is never printed: {out}");
    // PIN variable unset.
    let (ok, out) = check_config(dir.path(), hsm_issuer(&token, "issuer-ec", &ca, &index), &token.env()[..1]);
    assert!(!ok && out.contains("OCSP_TEST_PIN is not set"), "{out}");
    // No such key, no such token.
    let (ok, out) = check_config(dir.path(), hsm_issuer(&token, "nope", &ca, &index), &token.env());
    assert!(!ok && out.contains("0 private keys match"), "{out}");
    let issuer = IssuerTable::new("hsm", &ca)
        .index(&index)
        .pkcs11(token.pkcs11("issuer-ec").set("token_label", "no-such-token"));
    let (ok, out) = check_config(dir.path(), issuer, &token.env());
    assert!(!ok && out.contains("no token labelled \"no-such-token\""), "{out}");
    // Both a key file and a token.
    let issuer = hsm_issuer(&token, "issuer-ec", &ca, &index).key(data("ca.key"));
    let (ok, out) = check_config(dir.path(), issuer, &token.env());
    assert!(!ok && out.contains("set either key or [issuer.pkcs11], not both"), "{out}");
}

#[test]
fn delegated_responder_key_in_softhsm() {
    let _turn = schedule::with_others();
    let token = Token::new("ocsp-delegated");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (ok, out) = run(openssl()
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(p.join("resp.key")));
    assert!(ok, "{out}");
    issue_responder_cert(p, "HSM OCSP responder");
    token.import(&p.join("resp.key"), "responder", "0a");
    // The issuer key stays offline; only the responder key is in the HSM.
    std::fs::remove_file(p.join("resp.key")).unwrap();
    let issuer = IssuerTable::new("hsm", data("ca.pem"))
        .responder_cert("resp.pem")
        .index(data("index.txt"))
        .pkcs11(token.pkcs11("responder"));
    let s = Server::start_env(dir, &ConfigBuilder::new().issuer(issuer), &token.env());
    let url = s.url();
    let (ok, out) = run(openssl()
        .args(["ocsp", "-issuer"])
        .arg(data("ca.pem"))
        .arg("-cert")
        .arg(data("leaf-good.pem"))
        .args(["-url", &url, "-no_nonce", "-resp_text", "-CAfile"])
        .arg(data("ca.pem")));
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("Subject: CN=HSM OCSP responder"), "{out}");
    assert!(out.contains(": good"), "{out}");
}
