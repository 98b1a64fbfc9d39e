//! What strict clients and RFC 6960 expect of a request's answer, against a
//! real server: the CertID echoed exactly as sent (Bouncy Castle compares
//! whole CertIDs), unknown critical extensions refused, serials no CA issues
//! answered `unauthorized`, absolute-form targets routed, and the cache-bypass
//! defences (canonical multi-CertID keys, the per-shard budget of fresh
//! multi-CertID signatures, the serial-prefix filter).

use crate::common;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::*;
use ocsp_origin::ocsp::HashAlg;

fn cert_id(alg: HashAlg, null: bool, serial: &[u8]) -> Vec<u8> {
    cert_id_der_raw(alg, null, serial)
}

fn request(cert_ids: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
    request_der(cert_ids, extensions)
}

fn hex(s: &str) -> Vec<u8> {
    ocsp_origin::ocsp::Serial::from_hex(s).unwrap().as_bytes().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ask(s: &Server, der: &[u8]) -> Response {
    let r = roundtrip(s, &post("/", der));
    assert_eq!(r.status, 200);
    r
}

/// Bouncy Castle builds SHA-256 CertIDs without parameters (RFC 5754) and
/// finds its answer by `CertificateID.equals`; OpenSSL sends NULL. Each gets
/// its own CertID back, byte for byte, from its own cache entry.
#[test]
fn the_cert_id_is_echoed_as_sent() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let mut etags = Vec::new();
    for alg in [HashAlg::Sha1, HashAlg::Sha256] {
        for null in [true, false] {
            let id = cert_id(alg, null, &hex(GOOD));
            for round in 0..2 {
                let r = ask(&s, &request(std::slice::from_ref(&id), &[]));
                assert_eq!(ocsp_status(&r.body), "good");
                assert!(
                    contains(&r.body, &id),
                    "{alg:?} null={null} round {round}: the CertID is not echoed as sent"
                );
                if round == 1 {
                    etags.push(r.header("etag").unwrap().to_string());
                }
            }
        }
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 4, "each encoding is cached under its own key");
}

/// RFC 6960 §4.4: an unknown extension marked critical is not ignored.
#[test]
fn unknown_critical_extensions_are_malformed_requests() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let id = cert_id(HashAlg::Sha1, true, &hex(GOOD));
    let ext = extension_der;
    assert_eq!(ask(&s, &request(std::slice::from_ref(&id), &[ext("1.2.3.4", true)])).body, ocsp_error(1));
    assert_eq!(
        ocsp_status(&ask(&s, &request(std::slice::from_ref(&id), &[ext("1.2.3.4", false)])).body),
        "good"
    );
    // A critical nonce is understood (and, the answer being shared, not echoed).
    let nonce = "1.3.6.1.5.5.7.48.1.2";
    assert_eq!(ocsp_status(&ask(&s, &request(std::slice::from_ref(&id), &[ext(nonce, true)])).body), "good");
}

/// RFC 5280 caps serials at 20 octets: a longer one names a certificate no
/// conforming CA issued, `unauthorized` (as the README says), not bad DER.
#[test]
fn serials_over_20_octets_are_unauthorized() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    for len in [21, 22, 40] {
        let serial = vec![0x11; len];
        assert_eq!(
            ask(&s, &request(&[cert_id(HashAlg::Sha1, true, &serial)], &[])).body,
            ocsp_error(6),
            "{len}"
        );
    }
    let cut = request(&[cert_id(HashAlg::Sha1, true, &hex(GOOD))], &[]);
    assert_eq!(ask(&s, &cut[..cut.len() - 1]).body, ocsp_error(1), "bad DER stays malformed");
}

/// RFC 9112 §3.2.2: a server accepts the absolute form of a target.
#[test]
fn absolute_form_get_targets_are_answered() {
    let s = Server::start(&ConfigBuilder::new().test_issuer());
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    for target in [format!("http://{}/{}", s.addr(), b64(&der)), format!("HTTP://ocsp.example/{}", b64(&der))]
    {
        let r = roundtrip(&s, &get(&target));
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(ocsp_status(&r.body), "good", "{target}");
    }
}

/// Permutations and repetitions of one list are one cache entry (one
/// signature), and past the shard's budget a new multi-CertID list gets
/// `tryLater` while single-CertID misses are still signed.
#[test]
fn multi_cert_id_lists_cannot_force_unlimited_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let (index, serials) = index_with(40);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = ConfigBuilder::new()
        .cores(1)
        .admin(admin)
        .set("limits", "multi_cert_id_signs_per_sec", 3)
        .issuer(IssuerTable::test().index(dir.path().join("index.txt")));
    let s = Server::start_in(dir, &config);
    let id = |i: usize| cert_id(HashAlg::Sha1, true, &hex(&serials[i]));
    // One connection: one shard.
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut send = |der: &[u8]| {
        c.write_all(&post("/", der)).unwrap();
        read_response(&mut r, false).unwrap()
    };
    let first = send(&request(&[id(0), id(1), id(2)], &[]));
    assert_eq!(ocsp_status(&first.body), "good");
    for list in
        [vec![id(2), id(0), id(1)], vec![id(1), id(1), id(0), id(2), id(2)], vec![id(0), id(2), id(1), id(0)]]
    {
        let again = send(&request(&list, &[]));
        assert_eq!(again.header("etag"), first.header("etag"), "the same canonical list, the same response");
        assert_eq!(again.header("x-cache-status"), Some("HIT"));
    }
    // New lists: the budget (3 a second, one spent) runs out within a burst.
    let mut refused = 0;
    for i in 3..20 {
        let answer = send(&request(&[id(i), id(i + 20)], &[]));
        if answer.body == ocsp_error(3) {
            refused += 1;
        } else {
            assert_eq!(ocsp_status(&answer.body), "good");
        }
    }
    assert!(refused >= 12, "only {refused} of 17 new lists refused past a budget of 3");
    let single = send(&request(&[id(39)], &[]));
    assert_eq!(ocsp_status(&single.body), "good", "a single-CertID miss is never refused by that budget");
    // Each refusal is counted as a tryLater answer (shards publish once a second).
    let published = std::time::Instant::now();
    while common::load::counter(admin, "requests") < 22 && published.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(common::load::counter(admin, "responses_try_later"), refused);
    assert_eq!(common::load::counter(admin, "responses_ocsp_error"), refused);
}

/// With `limits.serial_prefixes`, a serial outside them is `unauthorized`
/// without a lookup; one inside is answered as ever.
#[test]
fn serials_outside_the_configured_prefixes_are_unauthorized() {
    let s = Server::start(&ConfigBuilder::new().set("limits", "serial_prefixes", vec!["0a1b"]).test_issuer());
    let good = ask(&s, &request(&[cert_id(HashAlg::Sha1, true, &hex(GOOD))], &[]));
    assert_eq!(ocsp_status(&good.body), "good");
    let revoked = ask(&s, &request(&[cert_id(HashAlg::Sha1, true, &hex(REVOKED))], &[]));
    assert_eq!(revoked.body, ocsp_error(6), "F1E2… is outside 0A1B");
}

/// `openssl ca -revoke` with `-crl_hold`, `-crl_compromise` and
/// `-crl_CA_compromise` writes pseudo-reasons with a detail
/// (`holdInstruction,<OID>`, `keyTime,<time>`, `CAkeyTime,<time>`): an
/// `index.txt` the real tool wrote is served, with the reasons the profile
/// shows (the Baseline Requirements show neither a hold nor cACompromise).
#[test]
fn index_txt_rows_written_by_openssl_ca_revoke_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("newcerts")).unwrap();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("serial"), "1000\n").unwrap();
    let cnf = format!(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\nnew_certs_dir = {0}/newcerts\nserial = {0}/serial\n\
         certificate = {1}\nprivate_key = {2}\ndefault_md = sha256\npolicy = any\ndefault_days = 30\n[any]\ncommonName = supplied\n",
        d.display(),
        data("ca.pem").display(),
        data("ca.key").display()
    );
    std::fs::write(d.join("ca.cnf"), cnf).unwrap();
    let revocations: [&[&str]; 3] = [
        &["-crl_hold", "holdInstructionReject"],
        &["-crl_compromise", "20261101120000Z"],
        &["-crl_CA_compromise", "20261101120000Z"],
    ];
    for (i, how) in revocations.iter().enumerate() {
        let (key, csr, pem) =
            (d.join(format!("l{i}.key")), d.join(format!("l{i}.csr")), d.join(format!("l{i}.pem")));
        let (ok, out) = run(openssl()
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", &format!("/CN=l{i}")]));
        assert!(ok, "{out}");
        let (ok, out) = run(openssl()
            .args(["ca", "-batch", "-config"])
            .arg(d.join("ca.cnf"))
            .arg("-in")
            .arg(&csr)
            .arg("-out")
            .arg(&pem));
        assert!(ok, "{out}");
        let (ok, out) =
            run(openssl().args(["ca", "-config"]).arg(d.join("ca.cnf")).arg("-revoke").arg(&pem).args(*how));
        assert!(ok, "{out}");
    }
    let index = std::fs::read_to_string(d.join("index.txt")).unwrap();
    for written in [
        ",holdInstruction,holdInstructionReject\t",
        ",keyTime,20261101120000Z\t",
        ",CAkeyTime,20261101120000Z\t",
    ] {
        assert!(index.contains(written), "openssl ca wrote another form: {index}");
    }
    for (profile, reasons) in [
        ("rfc6960", ["Reason: certificateHold", "Reason: keyCompromise", "Reason: cACompromise"]),
        ("baseline", ["", "Reason: keyCompromise", ""]),
    ] {
        let issuer = IssuerTable::test().index(d.join("index.txt"));
        let s = Server::start(&ConfigBuilder::new().set("response", "profile", profile).issuer(issuer));
        for (i, reason) in reasons.iter().enumerate() {
            let (ok, out) = run(openssl()
                .args(["ocsp", "-issuer"])
                .arg(data("ca.pem"))
                .arg("-cert")
                .arg(d.join(format!("l{i}.pem")))
                .args(["-url", &s.url(), "-no_nonce", "-CAfile"])
                .arg(data("ca.pem")));
            assert!(
                ok && out.contains("Response verify OK") && out.contains(": revoked"),
                "{profile} l{i}: {out}"
            );
            if reason.is_empty() {
                assert!(!out.contains("Reason:"), "{profile} l{i}: a reason the BR forbids is shown: {out}");
            } else {
                assert!(out.contains(reason), "{profile} l{i}: {out}");
            }
        }
    }
}
