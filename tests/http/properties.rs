//! Property tests for the hostile-input parsers (proptest; the fuzz targets in
//! `fuzz/` check the same invariants on arbitrary bytes):
//!
//! - the HTTP head parser gives the same answer however the bytes are split
//!   across reads;
//! - every GET-path encoding a client or proxy may produce decodes to the DER;
//! - OCSP requests built with `x509-ocsp` decode to the CertIDs they carry, and
//!   serials that are not minimal, positive and at most 20 octets are refused;
//! - `Serial` survives the hex round trip.

use crate::common;

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use der::asn1::{Null, OctetString};
use der::{Any, Encode};
use ocsp_origin::config::LimitsConfig;
use ocsp_origin::error::{HttpError, OcspError};
use ocsp_origin::http::get_path::{self, Route};
use ocsp_origin::http::parse::{parse_head, Limits, Parsed};
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use ocsp_origin::ocsp::request::{decode, RequestError};
use ocsp_origin::ocsp::{CertId, HashAlg, HashParams, IssuerId, Serial};
use ocsp_origin::signer::{Signer, SoftwareSigner};
use ocsp_origin::source::admission::{admit, Policy};
use proptest::prelude::*;
use proptest::sample::Index;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{OcspRequest, Request, TbsRequest, Version};

// ---------------------------------------------------------------------------
// (a) HTTP: the answer does not depend on how the bytes arrive.

/// Small limits, so generated requests cross every one of them.
const SMALL: Limits = Limits { max_uri_bytes: 64, max_header_bytes: 256, max_body_bytes: 100 };

/// What the connection does: after each read it parses everything buffered so
/// far, and the first answer that is not `Incomplete` is the answer. `reads`
/// are the byte counts of successive reads (0-byte reads are skipped, as the
/// connection never parses without new bytes).
fn parse_as_read(bytes: &[u8], reads: &[usize], limits: &Limits) -> Result<Parsed, HttpError> {
    let mut end = 0;
    for n in reads.iter().copied().chain([bytes.len()]) {
        let next = (end + n).min(bytes.len());
        if next == end {
            continue;
        }
        end = next;
        match parse_head(&bytes[..end], limits) {
            Ok(Parsed::Incomplete) => {}
            decided => return decided,
        }
    }
    Ok(Parsed::Incomplete)
}

/// Every prefix is either still `Incomplete` or already the whole input's
/// answer (the strongest form: it covers every way of splitting the bytes).
fn assert_prefixes_agree(bytes: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let whole = parse_head(bytes, limits);
    for end in 1..bytes.len() {
        let part = parse_head(&bytes[..end], limits);
        prop_assert!(
            part == Ok(Parsed::Incomplete) || part == whole,
            "the first {} of {} bytes give {:?}, all give {:?}; input {:?}",
            end,
            bytes.len(),
            part,
            whole,
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(())
}

fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: ocsp.example".to_string()),
        (0usize..300).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 99999999999999999999999".to_string()),
        Just("Content-Length: x".to_string()),
        prop::sample::select(vec!["close", "keep-alive", "Keep-Alive, Upgrade", "foo"])
            .prop_map(|v| format!("Connection: {v}")),
        "[ -~]{0,40}".prop_map(|v| format!("If-None-Match: {v}")),
        Just("If-Modified-Since: Sat, 28 Nov 2026 00:00:00 GMT".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        ("[A-Za-z-]{1,12}", "[ -~]{0,120}").prop_map(|(n, v)| format!("{n}: {v}")),
    ]
}

/// Requests from a grammar (valid and near-valid), then a few bytes
/// overwritten so some become invalid at a random place.
fn http_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "DELETE", "G T", "get"]);
    let target = "/[A-Za-z0-9+/=%?-]{0,90}";
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTX/1.1", ""]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\n"]);
    // Empty lines before the request line, which a server ignores (RFC 9112 §2.2).
    let lead = prop::sample::select(vec!["", "", "", "\r\n", "\n\r\n"]);
    let headers = prop::collection::vec(header_line(), 0..8);
    let body = prop::collection::vec(any::<u8>(), 0..40);
    let edits = prop::collection::vec((any::<Index>(), any::<u8>()), 0..3);
    ((lead, method), target, version, eol, headers, body, edits).prop_map(
        |((lead, method), target, version, eol, headers, body, edits)| {
            let mut b = format!("{lead}{method} {target} {version}{eol}").into_bytes();
            for h in headers {
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(eol.as_bytes());
            }
            b.extend_from_slice(eol.as_bytes());
            b.extend_from_slice(&body);
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            b
        },
    )
}

fn http_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => http_request(),
        1 => prop::collection::vec(any::<u8>(), 0..400),
        1 => prop::collection::vec(any::<u8>(), 0..400).prop_map(|mut v| {
            v.splice(0..0, b"GET /".iter().copied());
            v
        }),
    ]
}

proptest! {
    #[test]
    fn http_head_same_answer_however_split(
        bytes in http_bytes(),
        reads in prop::collection::vec(0usize..64, 0..12),
    ) {
        for limits in [SMALL, ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default())] {
            let whole = parse_head(&bytes, &limits);
            prop_assert_eq!(parse_as_read(&bytes, &reads, &limits), whole.clone());
            if let Ok(Parsed::Complete(h)) = &whole {
                prop_assert!(h.head_len <= bytes.len() && h.head_len <= limits.max_header_bytes);
                prop_assert!(h.path.len() < limits.max_uri_bytes, "{:?}", h);
                prop_assert_eq!(parse_head(&bytes[..h.head_len], &limits), whole.clone());
            }
        }
        assert_prefixes_agree(&bytes, &SMALL)?;
    }
}

/// The HTTP generator reaches every answer the parser gives (a property whose
/// interesting cases never occur would pass for nothing).
#[test]
fn http_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = http_bytes();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        seen.insert(match parse_head(&bytes, &SMALL) {
            Ok(Parsed::Complete(_)) => "complete".to_string(),
            Ok(Parsed::Incomplete) => "incomplete".to_string(),
            Err(e) => format!("{e:?}"),
        });
    }
    let want = [
        "complete",
        "incomplete",
        "BadRequest",
        "UriTooLong",
        "HeadersTooLarge",
        "PayloadTooLarge",
        "LengthRequired",
        "VersionNotSupported",
    ];
    for w in want {
        assert!(seen.contains(w), "never {w}; saw {seen:?}");
    }
}

// ---------------------------------------------------------------------------
// (b) GET path: every encoding a client or proxy may produce decodes back.

fn get_decode(encoded: &[u8]) -> Result<Vec<u8>, OcspError> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    get_path::decode(encoded, &mut scratch, &mut out).map(|()| out)
}

/// The encodings `get_path`'s module doc promises to accept.
fn get_encodings(der: &[u8], upper_hex: bool) -> Vec<String> {
    let std = STANDARD.encode(der);
    let pct = |s: &str| {
        let (p, sl, eq) = if upper_hex { ("%2B", "%2F", "%3D") } else { ("%2b", "%2f", "%3d") };
        s.replace('+', p).replace('/', sl).replace('=', eq)
    };
    let every_byte: String = std.bytes().map(|b| format!("%{b:02X}")).collect();
    vec![
        std.clone(),
        STANDARD_NO_PAD.encode(der),
        pct(&std),
        pct(&STANDARD_NO_PAD.encode(der)),
        std.replace('+', " "),
        std.replace('+', "%20"),
        pct(&std).replace("%2B", " ").replace("%2b", " "),
        URL_SAFE.encode(der),
        URL_SAFE_NO_PAD.encode(der),
        every_byte,
    ]
}

proptest! {
    #[test]
    fn get_path_every_encoding_decodes_back(
        der in prop::collection::vec(any::<u8>(), 0..300),
        upper_hex in any::<bool>(),
    ) {
        for enc in get_encodings(&der, upper_hex) {
            prop_assert_eq!(get_decode(enc.as_bytes()), Ok(der.clone()), "encoding {:?}", enc);
        }
    }

    /// Through the router too. An OCSP request is a DER SEQUENCE (first byte
    /// 0x30), so its base64 starts with 'M' and never with a '/' the router
    /// would take for part of the path.
    #[test]
    fn get_path_routes_and_decodes(
        body in prop::collection::vec(any::<u8>(), 0..300),
        upper_hex in any::<bool>(),
        query in prop::option::of("[a-z=&]{0,10}"),
    ) {
        let mut der = vec![0x30];
        der.extend_from_slice(&body);
        for enc in get_encodings(&der, upper_hex) {
            let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
            for (target, prefix) in [
                (format!("/{enc}{q}"), ""),
                (format!("//{enc}{q}"), ""),
                (format!("/ocsp/{enc}{q}"), "/ocsp"),
                (format!("/ocsp//{enc}{q}"), "/ocsp"),
            ] {
                let Route::Ocsp(rest) = get_path::route(target.as_bytes(), prefix) else {
                    return Err(TestCaseError::fail(format!("{target} with prefix {prefix:?} not routed")));
                };
                prop_assert_eq!(get_decode(rest), Ok(der.clone()), "target {}", target);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// (c) OCSP requests: decode(encode(x)) gives x's CertIDs.

/// Issuer 0: the test issuer of `tests/data/client-requests`; issuer 1: a CA
/// made by `ocsp-origin demo`, for requests that mix issuers.
fn issuers() -> &'static Issuers {
    static ISSUERS: OnceLock<Issuers> = OnceLock::new();
    ISSUERS.get_or_init(|| {
        let load = |name: &str, cert: &[u8], key: &str| {
            let cert = parse_certificate(cert).unwrap();
            let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(key).unwrap());
            Issuer::new(name, cert, signer, None).unwrap()
        };
        let test = load(
            "test",
            &std::fs::read(common::data("ca.pem")).unwrap(),
            &std::fs::read_to_string(common::data("ca.key")).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        ocsp_origin::demo::create(dir.path(), 1).unwrap();
        let other = load(
            "other",
            &std::fs::read(dir.path().join("ca.pem")).unwrap(),
            &std::fs::read_to_string(dir.path().join("ca.key")).unwrap(),
        );
        Issuers::new(vec![test, other])
    })
}

/// Which issuer a generated CertID names: a served one, or none (random hashes).
#[derive(Clone, Copy, Debug)]
enum Names {
    Served(u16),
    Nobody,
}

#[derive(Clone, Debug)]
struct GenCertId {
    names: Names,
    alg: HashAlg,
    /// `hashAlgorithm` parameters: NULL (OpenSSL) or absent (RFC 5754 style).
    null_params: bool,
    /// The INTEGER content octets, valid or not.
    serial: Vec<u8>,
}

/// Independent statement of what `Serial` accepts: minimal DER, positive,
/// 1..=20 octets.
fn serial_ok(c: &[u8]) -> bool {
    let minimal = !(c.len() > 1 && ((c[0] == 0 && c[1] < 0x80) || (c[0] == 0xff && c[1] >= 0x80)));
    !c.is_empty() && c.len() <= 20 && c[0] < 0x80 && minimal
}

fn valid_serial() -> impl Strategy<Value = Vec<u8>> {
    // A magnitude of 1..=20 octets made into minimal positive content octets.
    prop::collection::vec(any::<u8>(), 1..=20).prop_filter_map("over 20 octets", |mag| {
        Serial::from_magnitude(&mag).ok().map(|s| s.as_bytes().to_vec())
    })
}

fn any_serial() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => valid_serial(),
        1 => prop::collection::vec(any::<u8>(), 0..=24),
        1 => prop::collection::vec(any::<u8>(), 1..=22).prop_map(|mut v| {
            v.insert(0, 0); // leading zero: minimal only before a high bit
            v
        }),
        1 => prop::collection::vec(0x80u8.., 1..=20), // negative
    ]
}

fn gen_cert_id(serial: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = GenCertId> {
    let names =
        prop_oneof![8 => Just(Names::Served(0)), 1 => Just(Names::Served(1)), 1 => Just(Names::Nobody)];
    (names, prop::sample::select(HashAlg::ALL.to_vec()), any::<bool>(), serial)
        .prop_map(|(names, alg, null_params, serial)| GenCertId { names, alg, null_params, serial })
}

fn hashes(c: &GenCertId) -> (Vec<u8>, Vec<u8>) {
    match c.names {
        Names::Served(i) => {
            let is = issuers().get(IssuerId(i));
            (is.name_hash(c.alg).to_vec(), is.key_hash(c.alg).to_vec())
        }
        Names::Nobody => (vec![0x5a; c.alg.output_len()], vec![0xa5; c.alg.output_len()]),
    }
}

fn alg_id(c: &GenCertId) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: c.alg.oid(), parameters: c.null_params.then(|| Any::from(Null)) }
}

/// The request as `x509-ocsp` encodes it (valid serials only: `SerialNumber`
/// cannot hold the others).
fn encode_x509_ocsp(ids: &[GenCertId], nonce: Option<&[u8]>) -> Vec<u8> {
    let request_list = ids
        .iter()
        .map(|c| {
            let (nh, kh) = hashes(c);
            // `SerialNumber::new` takes the unsigned magnitude and adds the sign octet itself.
            let serial = SerialNumber::new(Serial::from_der_content(&c.serial).unwrap().magnitude()).unwrap();
            Request {
                req_cert: x509_ocsp::CertId {
                    hash_algorithm: alg_id(c),
                    issuer_name_hash: OctetString::new(nh).unwrap(),
                    issuer_key_hash: OctetString::new(kh).unwrap(),
                    serial_number: serial,
                },
                single_request_extensions: None,
            }
        })
        .collect();
    let request_extensions = nonce.map(|n| {
        vec![Extension {
            extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).unwrap().to_der().unwrap()).unwrap(),
        }]
    });
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list,
            request_extensions,
        },
        optional_signature: None,
    };
    req.to_der().unwrap()
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    match n {
        0..=0x7f => v.push(n as u8),
        0x80..=0xff => v.extend_from_slice(&[0x81, n as u8]),
        _ => v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(content);
    v
}

/// The same request by hand, so a serial can carry any content octets. Agrees
/// byte for byte with [`encode_x509_ocsp`] where both apply (checked below).
fn encode_by_hand(ids: &[GenCertId], nonce: Option<&[u8]>) -> Vec<u8> {
    let mut list = Vec::new();
    for c in ids {
        let (nh, kh) = hashes(c);
        let mut alg = tlv(0x06, c.alg.oid().as_bytes());
        if c.null_params {
            alg.extend_from_slice(&[0x05, 0x00]);
        }
        let cert_id = [tlv(0x30, &alg), tlv(0x04, &nh), tlv(0x04, &kh), tlv(0x02, &c.serial)].concat();
        list.extend(tlv(0x30, &tlv(0x30, &cert_id)));
    }
    let mut tbs = tlv(0x30, &list);
    if let Some(n) = nonce {
        let ext =
            [tlv(0x06, const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE.as_bytes()), tlv(0x04, &tlv(0x04, n))]
                .concat();
        tbs.extend(tlv(0xa2, &tlv(0x30, &tlv(0x30, &ext))));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

const MAX_IDS: usize = 8;

fn check_request(ids: &[GenCertId], nonce: Option<&[u8]>) -> Result<(), TestCaseError> {
    let der = encode_by_hand(ids, nonce);
    let got = decode(&der, issuers(), MAX_IDS);
    let all_valid = ids.iter().all(|c| serial_ok(&c.serial));
    if !all_valid {
        // Refused (never a panic, never an answer), whatever the check that sees it first.
        let some_unknown = ids.iter().any(|c| matches!(c.names, Names::Nobody));
        prop_assert!(
            match &got {
                Err(RequestError::Malformed(_) | RequestError::BadSerial(_)) => true,
                Err(RequestError::UnknownIssuer) => some_unknown,
                Err(RequestError::TooMany(..)) => ids.len() > MAX_IDS,
                _ => false,
            },
            "{:?} for {:?}",
            got,
            ids
        );
        return Ok(());
    }
    prop_assert_eq!(&der, &encode_x509_ocsp(ids, nonce), "hand encoding differs from x509-ocsp");
    if ids.len() > MAX_IDS {
        prop_assert_eq!(got, Err(RequestError::TooMany(ids.len(), MAX_IDS)));
        return Ok(());
    }
    if ids.iter().any(|c| matches!(c.names, Names::Nobody)) {
        prop_assert_eq!(got, Err(RequestError::UnknownIssuer));
        return Ok(());
    }
    let want: Vec<CertId> = ids
        .iter()
        .map(|c| CertId {
            issuer: match c.names {
                Names::Served(i) => IssuerId(i),
                Names::Nobody => unreachable!(),
            },
            alg: c.alg,
            serial: Serial::from_der_content(&c.serial).unwrap(),
            params: if c.null_params { HashParams::Null } else { HashParams::Absent },
        })
        .collect();
    prop_assert_eq!(got.as_ref(), Ok(&want));
    for (id, c) in want.iter().zip(ids) {
        prop_assert_eq!(id.serial.as_bytes(), &c.serial[..]);
    }
    // admit: one issuer per request.
    match admit(&der, issuers(), &Policy { max_cert_ids: MAX_IDS, ..Policy::default() }) {
        Ok(q) => {
            prop_assert!(want.iter().all(|id| id.issuer == q.issuer));
            // Admitted in one canonical order, each CertID once (the cache
            // key is the same for every order and repetition of a list).
            let mut canonical = want.clone();
            canonical.sort();
            canonical.dedup();
            prop_assert_eq!(q.ids, canonical);
        }
        Err(OcspError::MixedIssuers) => prop_assert!(want.iter().any(|id| id.issuer != want[0].issuer)),
        Err(e) => return Err(TestCaseError::fail(format!("admit: {e}"))),
    }
    Ok(())
}

proptest! {
    #[test]
    fn ocsp_request_round_trip(
        ids in prop::collection::vec(gen_cert_id(valid_serial()), 1..=10),
        nonce in prop::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
    ) {
        check_request(&ids, nonce.as_deref())?;
    }

    #[test]
    fn ocsp_request_bad_serials_are_refused(
        ids in prop::collection::vec(gen_cert_id(any_serial()), 1..=4),
        nonce in prop::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
    ) {
        check_request(&ids, nonce.as_deref())?;
    }
}

/// The generators above reach every outcome the properties distinguish (a
/// property whose interesting cases never occur would pass for nothing).
#[test]
fn ocsp_request_generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    let round_trip = prop::collection::vec(gen_cert_id(valid_serial()), 1..=10);
    let bad_serials = prop::collection::vec(gen_cert_id(any_serial()), 1..=4);
    for strategy in [round_trip.boxed(), bad_serials.boxed()] {
        for _ in 0..2000 {
            let ids = strategy.new_tree(&mut runner).unwrap().current();
            let der = encode_by_hand(&ids, None);
            seen.insert(
                match admit(&der, issuers(), &Policy { max_cert_ids: MAX_IDS, ..Policy::default() }) {
                    Ok(_) => "ok".to_string(),
                    Err(OcspError::Request(RequestError::Malformed(_))) => "Malformed".to_string(),
                    Err(OcspError::Request(e)) => format!("{e:?}").split('(').next().unwrap().to_string(),
                    Err(e) => format!("{e:?}"),
                },
            );
            if let Err(RequestError::BadSerial(e)) = decode(&der, issuers(), MAX_IDS) {
                seen.insert(format!("{e:?}"));
            }
        }
    }
    let want =
        ["ok", "Malformed", "TooMany", "UnknownIssuer", "MixedIssuers", "BadSerial", "Negative", "TooLong"];
    for w in want {
        assert!(seen.contains(w), "never {w}; saw {seen:?}");
    }
}

// ---------------------------------------------------------------------------
// (d) Serial: hex text round trip.

proptest! {
    #[test]
    fn serial_hex_round_trip(
        mag in prop::collection::vec(any::<u8>(), 1..=22),
        lower in any::<bool>(),
        prefix in any::<bool>(),
    ) {
        let stripped: &[u8] = match mag.iter().position(|b| *b != 0) {
            Some(i) => &mag[i..],
            None => &[0],
        };
        let fits = stripped.len() + usize::from(stripped[0] & 0x80 != 0) <= 20;
        match Serial::from_magnitude(&mag) {
            Ok(s) => {
                prop_assert!(fits);
                prop_assert_eq!(s.magnitude(), stripped);
                let text = s.to_string();
                let want: String = stripped.iter().map(|b| format!("{b:02X}")).collect();
                prop_assert_eq!(&text, &want);
                let typed = match (lower, prefix) {
                    (true, true) => format!("0x{}", text.to_lowercase()),
                    (true, false) => text.to_lowercase(),
                    (false, true) => format!("0X{text}"),
                    (false, false) => text.clone(),
                };
                prop_assert_eq!(Serial::from_hex(&typed), Ok(s));
                // Leading zero digits and an odd digit count name the same serial.
                prop_assert_eq!(Serial::from_hex(&format!("000{text}")), Ok(s));
                prop_assert_eq!(Serial::from_der_content(s.as_bytes()), Ok(s));
            }
            Err(e) => {
                prop_assert!(!fits, "{:?} refused: {}", mag, e);
            }
        }
    }
}
