//! Answers judged by tools that share no code with the server or with
//! OpenSSL (tests/ocsp/interop.rs), so a misreading common to both cannot
//! hide a fault:
//!
//! - Bouncy Castle (tests/interop/BcOcspCheck.java, Debian's
//!   `libbcpkix-java`), the Java client that finds its SingleResponse by
//!   `CertificateID.equals`, i.e. by the whole CertID: SHA-1 and SHA-256
//!   requests with NULL and with absent hash parameters must each get their
//!   own CertID back, signed by the issuer or by a delegated responder whose
//!   certificate the answer carries, EC and RSA;
//! - pkilint's `lint_ocsp_response` (PyPI), a strict-DER RFC 6960 linter,
//!   over good, revoked, unauthorized, malformedRequest, RSA and delegated
//!   answers: no finding of severity ERROR or above.
//!
//! Each also fails on an answer it must reject, so neither passes vacuously.
//! The tools come from tests/run.sh (`OCSP_TEST_BC_CLASSPATH`,
//! `OCSP_TEST_PKILINT`); without them a test says so and passes, except
//! under CI=true, where it fails.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use ocsp_origin::ocsp::HashAlg;

/// A tool a test needs is missing: under CI=true the test fails, elsewhere
/// it says so and passes vacuously (as the database tests do).
fn missing<T>(tool: &str, fix: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {tool} is missing: {fix}");
    }
    eprintln!("note: {tool} missing, skipping ({fix})");
    None
}

/// Whether `cmd` runs and exits 0.
fn runs(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// The Bouncy Castle classpath (`OCSP_TEST_BC_CLASSPATH`, else Debian's
/// jars where all are installed), with a `java` to run the checker.
fn bc_classpath() -> Option<String> {
    let fix = "run tests/run.sh, or apt-get install default-jdk-headless libbcpkix-java and set \
               OCSP_TEST_BC_CLASSPATH=/usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:\
               /usr/share/java/bcutil.jar";
    let cp = std::env::var("OCSP_TEST_BC_CLASSPATH").ok().filter(|cp| !cp.is_empty()).or_else(|| {
        let jars = ["bcprov", "bcpkix", "bcutil"].map(|j| format!("/usr/share/java/{j}.jar"));
        jars.iter().all(|j| Path::new(j).exists()).then(|| jars.join(":"))
    });
    match cp {
        Some(cp) if runs(Command::new("java").arg("-version")) => Some(cp),
        Some(_) => missing("java", fix),
        None => missing("Bouncy Castle (OCSP_TEST_BC_CLASSPATH)", fix),
    }
}

/// pkilint's `lint_ocsp_response`: `OCSP_TEST_PKILINT`, else the virtualenv
/// tests/run.sh makes, else one on PATH.
fn pkilint() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pkilint-venv/bin/lint_ocsp_response");
    let found = match std::env::var_os("OCSP_TEST_PKILINT").filter(|p| !p.is_empty()) {
        // A path named on purpose is used or fails, never replaced by another.
        Some(p) => Some(PathBuf::from(p)),
        None => [venv, PathBuf::from("lint_ocsp_response")]
            .into_iter()
            .find(|p| runs(Command::new(p).arg("--help"))),
    };
    match found {
        Some(p) => Some(p),
        None => missing(
            "pkilint (OCSP_TEST_PKILINT)",
            "run tests/run.sh, or pip install pkilint and set OCSP_TEST_PKILINT to its lint_ocsp_response",
        ),
    }
}

/// The test CA's own server (ECDSA P-256, its index.txt).
fn ec_server() -> Server {
    Server::start(&ConfigBuilder::new().test_issuer())
}

/// A server answering for the test CA through a delegated responder (as in
/// tests/ocsp/interop.rs); the responder's certificate is `resp.pem` in the
/// server's directory.
fn delegated_server() -> (Server, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(openssl()
        .args(["ecparam", "-name", "prime256v1", "-genkey", "-out"])
        .arg(dir.path().join("resp.key")));
    assert!(ok, "{out}");
    issue_responder_cert(dir.path(), "test OCSP responder");
    let issuer = IssuerTable::new("test", data("ca.pem"))
        .key("resp.key")
        .responder_cert("resp.pem")
        .index(data("index.txt"));
    let s = Server::start_in(dir, &ConfigBuilder::new().issuer(issuer));
    let resp = s.dir.path().join("resp.pem");
    (s, resp)
}

/// A server with a self-signed RSA issuer (PKCS#1 key, as in
/// tests/ocsp/interop.rs): serial 05 good, 06 revoked (superseded). Returns
/// the server and the issuer's certificate.
fn rsa_server() -> (Server, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_rsa_ca(p);
    let cfg =
        ConfigBuilder::new().issuer(IssuerTable::new("rsa", "rsa.pem").key("rsa.key").index("rsa-index.txt"));
    let s = Server::start_in(dir, &cfg);
    let ca = s.dir.path().join("rsa.pem");
    (s, ca)
}

/// Runs the Bouncy Castle checker against `server`: one OCSP request per
/// check (`HASH:PARAMS[/LOOKUP]:SERIAL:EXPECT[:REASON]`, see the checker's
/// header). Returns (all passed, its output).
fn bc_check(
    classpath: &str,
    server: &Server,
    issuer: &Path,
    responder: Option<&Path>,
    checks: &[String],
) -> (bool, String) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/BcOcspCheck.java");
    let mut cmd = Command::new("java");
    // A short-lived JVM: skip the optimising compiler, start fast.
    cmd.args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", classpath]).arg(source);
    cmd.args(["--url", &server.url(), "--issuer"]).arg(issuer);
    if let Some(r) = responder {
        cmd.arg("--responder").arg(r);
    }
    run_within(cmd.args(checks), Duration::from_secs(120))
}

/// Every check passed, each with its own "ok" line.
fn assert_all_ok((ok, out): (bool, String), checks: &[String]) {
    assert!(ok, "Bouncy Castle rejected an answer:\n{out}");
    for c in checks {
        assert!(out.lines().any(|l| l.starts_with(&format!("ok {c}: "))), "{c} not passed:\n{out}");
    }
}

/// Every SHA-1 and SHA-256 CertID, NULL and absent parameters, of the good
/// and the revoked leaf.
fn all_certid_forms(good: &str, revoked: &str, reason: &str) -> Vec<String> {
    let mut checks = Vec::new();
    for hash in ["sha1", "sha256"] {
        for params in ["null", "absent"] {
            checks.push(format!("{hash}:{params}:{good}:good"));
            checks.push(format!("{hash}:{params}:{revoked}:revoked:{reason}"));
        }
    }
    checks
}

#[test]
fn bc_finds_its_certid_for_sha1_and_sha256_with_and_without_null() {
    let Some(cp) = bc_classpath() else { return };
    let s = ec_server();
    let mut checks = all_certid_forms(GOOD, REVOKED, "keyCompromise");
    checks.push("sha256:absent:0BADBADBAD:unauthorized".into());
    assert_all_ok(bc_check(&cp, &s, &data("ca.pem"), None, &checks), &checks);
}

/// The checker is not vacuous: a CertID looked up in the other encoding
/// than the one sent, the wrong status and the wrong reason each fail, next
/// to a check that passes.
#[test]
fn bc_rejects_another_certid_encoding_status_or_reason() {
    let Some(cp) = bc_classpath() else { return };
    let s = ec_server();
    let expected = [
        (format!("sha256:absent/null:{GOOD}:good"), "no SingleResponse matches CertID"),
        (format!("sha1:null/absent:{GOOD}:good"), "no SingleResponse matches CertID"),
        (format!("sha1:null:{REVOKED}:good"), "status revoked, expected good"),
        (format!("sha256:absent:{GOOD}:revoked:keyCompromise"), "status good, expected revoked"),
        (format!("sha256:null:{REVOKED}:revoked:superseded"), "reason keyCompromise, expected superseded"),
        (format!("sha1:null:{GOOD}:unauthorized"), "responseStatus successful, expected unauthorized"),
    ];
    let control = format!("sha256:absent:{GOOD}:good");
    let mut checks: Vec<String> = expected.iter().map(|(c, _)| c.clone()).collect();
    checks.push(control.clone());
    let (ok, out) = bc_check(&cp, &s, &data("ca.pem"), None, &checks);
    assert!(!ok, "the checker passed answers it must reject:\n{out}");
    for (check, why) in &expected {
        let line = out.lines().find(|l| l.contains(&format!(" {check}: "))).unwrap_or_default();
        assert!(line.starts_with("FAIL ") && line.contains(why), "{check} must fail with {why:?}:\n{out}");
    }
    assert!(out.lines().any(|l| l.starts_with(&format!("ok {control}: "))), "{out}");
}

/// Answers signed by a delegated responder verify against the certificate
/// they carry (issued by the CA, EKU OCSPSigning), and only so: told to
/// expect the CA's own signature, the checker fails on the ResponderID.
#[test]
fn bc_verifies_a_delegated_responders_answers() {
    let Some(cp) = bc_classpath() else { return };
    let (s, resp) = delegated_server();
    let checks = all_certid_forms(GOOD, REVOKED, "keyCompromise");
    let (ok, out) = bc_check(&cp, &s, &data("ca.pem"), Some(&resp), &checks);
    assert!(out.contains("signed by CN=test OCSP responder"), "{out}");
    assert_all_ok((ok, out), &checks);

    let one = [format!("sha256:absent:{GOOD}:good")];
    let (ok, out) = bc_check(&cp, &s, &data("ca.pem"), None, &one);
    assert!(!ok && out.contains("the ResponderID names neither"), "{out}");
}

#[test]
fn bc_verifies_an_rsa_issuers_answers() {
    let Some(cp) = bc_classpath() else { return };
    let (s, ca) = rsa_server();
    let checks = all_certid_forms("05", "06", "superseded");
    let (ok, out) = bc_check(&cp, &s, &ca, None, &checks);
    assert!(out.contains("signed by CN=RSA test CA"), "{out}");
    assert_all_ok((ok, out), &checks);
}

/// One pkilint finding.
#[derive(Debug)]
struct Finding {
    severity: String,
    code: String,
    message: String,
    node: String,
}

/// pkilint's findings (every severity) on `der`, an OCSPResponse, and the
/// validators that ran.
fn lint(tool: &Path, der: &[u8]) -> (Vec<Finding>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answer.der");
    std::fs::write(&file, der).unwrap();
    let out = Command::new(tool)
        .args(["lint", "--severity", "ALL", "--format", "JSON", "--document-format", "DER"])
        .arg(&file)
        .output()
        .expect("run lint_ocsp_response");
    // The exit status counts findings; only an unreadable report is a failure to lint.
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("pkilint gave no report ({e}): {text}{}", String::from_utf8_lossy(&out.stderr))
    });
    let (mut findings, mut validators) = (Vec::new(), Vec::new());
    for r in report["results"].as_array().expect("a results list") {
        validators.push(r["validator"].as_str().unwrap_or_default().to_string());
        for f in r["finding_descriptions"].as_array().into_iter().flatten() {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            findings.push(Finding {
                severity: s("severity"),
                code: s("code"),
                message: s("message"),
                node: r["node_path"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    (findings, validators)
}

fn is_error_or_worse(f: &Finding) -> bool {
    matches!(f.severity.as_str(), "ERROR" | "CRITICAL" | "FATAL")
}

/// POSTs `der` and returns the answer's body.
fn answer(s: &Server, der: &[u8]) -> Vec<u8> {
    let r = roundtrip(s, &post("/", der));
    assert_eq!(r.status, 200);
    r.body
}

/// An OCSP request (no nonce) from `openssl` for `serial` of `issuer`.
fn openssl_request(issuer: &Path, serial: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("req.der");
    let (ok, msg) = run(openssl()
        .args(["ocsp", "-issuer"])
        .arg(issuer)
        .args(["-serial", &format!("0x{serial}"), "-no_nonce", "-reqout"])
        .arg(&out));
    assert!(ok, "{msg}");
    std::fs::read(out).unwrap()
}

fn req(alg: HashAlg, null: bool, serial: &str) -> Vec<u8> {
    request_der(&[cert_id_der(alg, null, serial)], &[])
}

/// Every kind of answer the server gives passes pkilint without an ERROR
/// (or worse); every finding is printed. Each answer is first checked to be
/// the kind it stands for, and pkilint to have decoded a successful one down
/// to its SingleResponse.
#[test]
fn pkilint_finds_no_error_in_any_answer_kind() {
    let Some(tool) = pkilint() else { return };
    let ec = ec_server();
    let (delegated, _) = delegated_server();
    let (rsa, rsa_ca) = rsa_server();
    let answers = [
        ("good, SHA-1 NULL", "good", answer(&ec, &req(HashAlg::Sha1, true, GOOD))),
        ("good, SHA-256 absent", "good", answer(&ec, &req(HashAlg::Sha256, false, GOOD))),
        ("revoked", "revoked", answer(&ec, &req(HashAlg::Sha1, true, REVOKED))),
        ("unknown serial", "Unauthorized", answer(&ec, &req(HashAlg::Sha256, false, "0BADBADBAD"))),
        ("malformed request", "MalformedRequest", answer(&ec, b"\x30\x03\x02\x01\x00 not an OCSP request")),
        ("RSA issuer, good", "good", answer(&rsa, &openssl_request(&rsa_ca, "05"))),
        ("RSA issuer, revoked", "revoked", answer(&rsa, &openssl_request(&rsa_ca, "06"))),
        ("delegated, good", "good", answer(&delegated, &req(HashAlg::Sha1, true, GOOD))),
        ("delegated, revoked", "revoked", answer(&delegated, &req(HashAlg::Sha256, false, REVOKED))),
    ];
    let mut errors = Vec::new();
    for (kind, status, der) in &answers {
        assert!(ocsp_status(der).contains(status), "{kind}: {}", ocsp_status(der));
        let (findings, validators) = lint(&tool, der);
        if matches!(*status, "good" | "revoked") {
            assert!(
                validators.iter().any(|v| v == "OCSPSaneValidityPeriodValidator"),
                "{kind}: pkilint did not reach the SingleResponse: {validators:?}"
            );
        }
        eprintln!("pkilint, {kind}: {} finding(s)", findings.len());
        for f in &findings {
            eprintln!("  {} {} at {}: {}", f.severity, f.code, f.node, f.message);
        }
        errors.extend(findings.into_iter().filter(is_error_or_worse).map(|f| (kind, f)));
    }
    assert!(errors.is_empty(), "pkilint found errors in the server's answers: {errors:#?}");
}

/// pkilint is not vacuous here: a real answer relabelled malformedRequest
/// (an error status with a response body) and the unused status 4 are
/// ERRORs.
#[test]
fn pkilint_flags_a_broken_answer() {
    let Some(tool) = pkilint() else { return };
    let s = ec_server();
    let mut der = answer(&s, &req(HashAlg::Sha256, false, GOOD));
    // The responseStatus ENUMERATED follows the outer SEQUENCE's header.
    let at = if der[1] & 0x80 == 0 { 2 } else { 2 + usize::from(der[1] & 0x7f) };
    assert_eq!(der[at..at + 3], [0x0a, 0x01, 0x00], "successful responseStatus");
    der[at + 2] = 1;
    for (what, der, code) in [
        ("an error status with a body", der, "pkix.ocsp_error_response_has_response_body"),
        ("status 4", vec![0x30, 0x03, 0x0a, 0x01, 0x04], "pkix.ocsp_response_status_code_4"),
    ] {
        let (findings, _) = lint(&tool, &der);
        assert!(
            findings.iter().any(|f| is_error_or_worse(f) && f.code == code),
            "{what}: no ERROR {code}: {findings:#?}"
        );
    }
}
