//! Routing a request target and decoding the GET form of an OCSP request
//! (RFC 6960 Appendix A.1: `{url}/{url-encoding of base-64 encoding of the DER}`).
//!
//! Real clients and the proxies between them vary; every variant below decodes
//! to the same DER:
//!
//! - percent-encoding (`%2B`, `%2F`, `%3D`), in any case;
//! - `+` turned into a space (`' '` or `%20`) by form-decoding proxies;
//! - `/` inside the base64, read as path separators by nobody here;
//! - a leading `//` (a responder URL configured with a trailing slash);
//! - missing `=` padding;
//! - the URL-safe alphabet (`-` and `_`).

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;

use crate::error::OcspError;

/// Where a request target leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/` or the bare prefix: the health answer.
    Health,
    /// Under the prefix, with the still-encoded remainder.
    Ocsp(&'a [u8]),
    /// Outside the prefix.
    NotFound,
}

/// The path of an absolute-form target (`http://host[:port]/path`, RFC 9112
/// §3.2.2: what a client talking to a proxy sends, and what a server must
/// accept), or the target itself (origin form). The authority ends at the
/// first `/` (it holds none), so a `/` inside the base64 stays in the path.
fn origin_form(target: &[u8]) -> &[u8] {
    let scheme_len = [&b"http://"[..], b"https://"]
        .into_iter()
        .find(|s| target.len() >= s.len() && target[..s.len()].eq_ignore_ascii_case(s))
        .map(<[u8]>::len);
    match scheme_len {
        None => target,
        Some(n) => {
            let rest = &target[n..];
            match rest.iter().position(|b| *b == b'/' || *b == b'?') {
                Some(i) if rest[i] == b'/' => &rest[i..],
                _ => b"/",
            }
        }
    }
}

/// Splits a request target into a route. `prefix` is empty or `/x` (no
/// trailing slash); the query string is ignored; an absolute-form target is
/// routed by its path.
pub fn route<'a>(target: &'a [u8], prefix: &str) -> Route<'a> {
    let target = origin_form(target);
    if target.first() != Some(&b'/') {
        return Route::NotFound; // neither origin nor absolute form
    }
    let path = match target.iter().position(|b| *b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    let Some(rest) = path.strip_prefix(prefix.as_bytes()) else {
        return if path == b"/" { Route::Health } else { Route::NotFound };
    };
    if !prefix.is_empty() && !rest.is_empty() && rest[0] != b'/' {
        return Route::NotFound; // "/ocspfoo" is not under "/ocsp"
    }
    let start = rest.iter().position(|b| *b != b'/').unwrap_or(rest.len());
    let rest = &rest[start..];
    if rest.is_empty() {
        Route::Health
    } else {
        Route::Ocsp(rest)
    }
}

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the encoded remainder of a GET path into DER, reusing `scratch`
/// and `out` (cleared first) so a connection allocates once.
pub fn decode(encoded: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), OcspError> {
    scratch.clear();
    out.clear();
    let mut i = 0;
    while i < encoded.len() {
        let mut b = encoded[i];
        i += 1;
        if b == b'%' {
            let (Some(h), Some(l)) =
                (encoded.get(i).copied().and_then(hex), encoded.get(i + 1).copied().and_then(hex))
            else {
                return Err(OcspError::BadBase64);
            };
            b = h << 4 | l;
            i += 2;
        }
        match b {
            b' ' | b'-' => scratch.push(b'+'),
            b'_' => scratch.push(b'/'),
            b'=' | b'\r' | b'\n' => {}
            _ => scratch.push(b),
        }
    }
    LENIENT.decode_vec(&scratch[..], out).map_err(|_| OcspError::BadBase64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn dec(s: &str) -> Result<Vec<u8>, OcspError> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        decode(s.as_bytes(), &mut a, &mut b).map(|_| b)
    }

    #[test]
    fn routes() {
        assert_eq!(route(b"/", ""), Route::Health);
        assert_eq!(route(b"/?x=1", ""), Route::Health);
        assert_eq!(route(b"/MEow", ""), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"//MEow", ""), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"/ocsp/MEow", "/ocsp"), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"/ocsp//MEow", "/ocsp"), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"/ocsp", "/ocsp"), Route::Health);
        assert_eq!(route(b"/", "/ocsp"), Route::Health);
        assert_eq!(route(b"/other/MEow", "/ocsp"), Route::NotFound);
        assert_eq!(route(b"/ocspx/MEow", "/ocsp"), Route::NotFound);
    }

    /// RFC 9112 §3.2.2: a server must accept the absolute form.
    #[test]
    fn absolute_form_targets_route_by_their_path() {
        assert_eq!(route(b"http://ocsp.example/MEow", ""), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"HTTP://ocsp.example:8080/ME/ow", ""), Route::Ocsp(b"ME/ow"));
        assert_eq!(route(b"https://h/ocsp/MEow", "/ocsp"), Route::Ocsp(b"MEow"));
        assert_eq!(route(b"http://h", ""), Route::Health);
        assert_eq!(route(b"http://h?x", ""), Route::Health);
        assert_eq!(route(b"http://h/other/MEow", "/ocsp"), Route::NotFound);
        assert_eq!(route(b"httpx://h/MEow", ""), Route::NotFound, "not a scheme we know: not a path either");
    }

    #[test]
    fn every_variant_decodes_the_same() {
        // Bytes chosen so the base64 has '+', '/' and padding.
        let der: Vec<u8> = vec![0x30, 0x00, 0x00, 0xfb, 0xff, 0xff, 0x01];
        let std = STANDARD.encode(&der);
        assert!(std.contains('+') && std.contains('/') && std.ends_with('='), "{std}");
        let variants = [
            std.clone(),
            std.trim_end_matches('=').to_string(),
            std.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"),
            std.replace('+', "%2b").replace('/', "%2f"),
            std.replace('+', " "),
            std.replace('+', "%20"),
            URL_SAFE_NO_PAD.encode(&der),
        ];
        for v in variants {
            assert_eq!(dec(&v).unwrap(), der, "variant {v}");
        }
    }

    #[test]
    fn garbage_is_bad_base64() {
        assert_eq!(dec("%zz"), Err(OcspError::BadBase64));
        assert_eq!(dec("%4"), Err(OcspError::BadBase64));
        assert_eq!(dec("a*b"), Err(OcspError::BadBase64));
        assert_eq!(dec("a"), Err(OcspError::BadBase64));
    }
}
