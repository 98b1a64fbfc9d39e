// `http::get_path::{route, decode}` on an arbitrary request target.
//
// Besides "never panics": a routed remainder is a non-empty piece of the
// target without the query or leading slashes, and whatever `decode` accepts
// decodes again to the same bytes once re-encoded as canonical base64 (so the
// lenient decoder agrees with the strict one on what it produced).
//
// Shared by fuzz/fuzz_targets/get_path.rs and tests/http/fuzz_corpus.rs (which replays the
// committed corpus and regressions under `cargo test`), hence `include!`d and
// written with plain comments.
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ocsp_origin::http::get_path::{decode, route, Route};

fn check_decode(encoded: &[u8]) {
    let (mut scratch, mut der) = (Vec::new(), Vec::new());
    if decode(encoded, &mut scratch, &mut der).is_err() {
        return;
    }
    // Each input byte yields at most one base64 symbol (6 bits).
    assert!(der.len() * 4 <= encoded.len() * 3, "{} bytes from {}", der.len(), encoded.len());
    for again in [STANDARD.encode(&der), URL_SAFE_NO_PAD.encode(&der)] {
        let (mut s2, mut d2) = (Vec::new(), Vec::new());
        decode(again.as_bytes(), &mut s2, &mut d2).expect("canonical base64 of decoded bytes");
        assert_eq!(d2, der, "{again}");
    }
}

/// Panics when `data` breaks an invariant.
pub fn check(data: &[u8]) {
    for prefix in ["", "/ocsp"] {
        match route(data, prefix) {
            Route::Ocsp(rest) => {
                assert!(!rest.is_empty() && rest[0] != b'/' && !rest.contains(&b'?'), "{rest:?}");
                check_decode(rest);
            }
            Route::Health | Route::NotFound => {}
        }
    }
    check_decode(data);
}
