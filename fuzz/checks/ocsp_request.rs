// `ocsp::request::decode` and `source::admission::admit` on arbitrary bytes,
// against the test issuer of `tests/data/client-requests`.
//
// Besides "never panics": `admit` agrees with `decode` (its CertIDs are
// decode's, sorted, each once); accepted CertIDs are within the bound, name
// the issuer, carry a serial that re-validates and survives the hex round
// trip; and where `x509-ocsp` reads the request too (it also parses what we
// skip: a signature's certificates, the requestor name), its DER encode →
// decode gives the same CertIDs.
//
// Shared by fuzz/fuzz_targets/ocsp_request.rs and tests/http/fuzz_corpus.rs (which replays the
// committed corpus and regressions under `cargo test`), hence `include!`d and
// written with plain comments.
use std::sync::{Arc, LazyLock};

use der::{Decode, Encode};
use ocsp_origin::error::OcspError;
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use ocsp_origin::config::DEFAULT_MAX_CERT_IDS;
use ocsp_origin::ocsp::request::decode;
use ocsp_origin::ocsp::{IssuerId, Serial};
use ocsp_origin::signer::{Signer, SoftwareSigner};
use ocsp_origin::source::admission::{admit, cache_key, Policy};
use x509_ocsp::OcspRequest;

static ISSUERS: LazyLock<Issuers> = LazyLock::new(|| {
    let cert = parse_certificate(include_bytes!("../../tests/data/client-requests/ca.pem")).unwrap();
    let key = include_str!("../../tests/data/client-requests/ca.key");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(key).unwrap());
    Issuers::new(vec![Issuer::new("test", cert, signer, None).unwrap()])
});

/// Panics when `data` breaks an invariant.
pub fn check(data: &[u8]) {
    let issuers = &*ISSUERS;
    let decoded = decode(data, issuers, DEFAULT_MAX_CERT_IDS);
    let policy = Policy { max_cert_ids: DEFAULT_MAX_CERT_IDS, ..Policy::default() };
    let admitted = admit(data, issuers, &policy);
    match (&decoded, admitted) {
        (Ok(ids), Ok(q)) => {
            assert!(!ids.is_empty() && ids.len() <= DEFAULT_MAX_CERT_IDS);
            let mut canonical = ids.clone();
            canonical.sort();
            canonical.dedup();
            assert_eq!(q.ids, canonical);
            assert_eq!(q.issuer, IssuerId(0));
            assert_eq!(&q.key[..], &cache_key(&canonical)[..]);
            for id in ids {
                assert_eq!(id.issuer, IssuerId(0));
                assert_eq!(Serial::from_der_content(id.serial.as_bytes()), Ok(id.serial));
                assert_eq!(Serial::from_hex(&id.serial.to_string()), Ok(id.serial));
            }
            if let Ok(req) = OcspRequest::from_der(data) {
                let again = req.to_der().expect("re-encode");
                assert_eq!(decode(&again, issuers, DEFAULT_MAX_CERT_IDS).as_ref(), Ok(ids));
            }
        }
        (Err(d), Err(OcspError::Request(a))) => assert_eq!(d, &a),
        (d, a) => panic!("decode gave {d:?} but admit gave {a:?}"),
    }
}
