//! Inputs found by the fuzz targets (`fuzz/`) and property tests
//! (`tests/http/properties.rs`) that once broke an invariant, each named after what
//! went wrong and kept here with its bytes so the fix stays fixed.
//! `fuzz/README.md` says how a new finding becomes a test here.

use ocsp_origin::config::LimitsConfig;
use ocsp_origin::error::HttpError;
use ocsp_origin::http::parse::{parse_head, Limits, Parsed};

/// The answer the connection gives when the bytes arrive one at a time: the
/// first prefix that is not `Incomplete` decides.
fn byte_by_byte(bytes: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    for end in 1..=bytes.len() {
        match parse_head(&bytes[..end], limits) {
            Ok(Parsed::Incomplete) => {}
            decided => return decided,
        }
    }
    Ok(Parsed::Incomplete)
}

/// Found by `properties::http_head_same_answer_however_split` (shrunk there to
/// 65 bytes of NULs and vertical tabs against a 64-byte URI limit). A request
/// line with an invalid first byte and no '\n' within the URI limit was 400
/// when its first bytes arrived alone, but 414 when all of it arrived in one
/// read: the URI limit was checked on the whole buffer before the parser saw
/// the invalid byte. Now the invalid byte, coming first, decides either way.
#[test]
fn http_invalid_byte_before_uri_limit_is_400_however_split() {
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    let mut bytes = vec![0u8; limits.max_uri_bytes + 1];
    bytes[2] = 0x0b;
    assert_eq!(parse_head(&bytes[..1], &limits), Err(HttpError::BadRequest));
    assert_eq!(parse_head(&bytes, &limits), Err(HttpError::BadRequest));
    assert_eq!(byte_by_byte(&bytes, &limits), Err(HttpError::BadRequest));
}

/// The same bug at the head limit: header bytes valid up to the limit and an
/// invalid byte after it were 431 when the first `max_header_bytes + 1` bytes
/// arrived first, but 400 in one read. The limit, reached first, now decides
/// either way, and nothing past it is parsed.
#[test]
fn http_invalid_byte_after_head_limit_is_431_however_split() {
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    let mut bytes = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    bytes.resize(limits.max_header_bytes + 10, b'a');
    bytes.extend_from_slice(b"\x00\r\n\r\n");
    let at_limit = &bytes[..limits.max_header_bytes + 1];
    assert_eq!(parse_head(at_limit, &limits), Err(HttpError::HeadersTooLarge));
    assert_eq!(parse_head(&bytes, &limits), Err(HttpError::HeadersTooLarge));
    assert_eq!(byte_by_byte(&bytes, &limits), Err(HttpError::HeadersTooLarge));
}

/// And the valid side of both limits still works: a long URI just under the
/// limit is a complete head, one byte more is 414 however it arrives.
#[test]
fn http_uri_limit_boundary_however_split() {
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    // "GET /aaa… HTTP/1.1\r" is max_uri_bytes long, its '\n' the next byte.
    let fits = |extra: usize| {
        let path = "a".repeat(limits.max_uri_bytes - "GET / HTTP/1.1\r".len() + extra);
        format!("GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    };
    assert!(matches!(parse_head(&fits(0), &limits), Ok(Parsed::Complete(_))));
    assert!(matches!(byte_by_byte(&fits(0), &limits), Ok(Parsed::Complete(_))));
    assert_eq!(parse_head(&fits(1), &limits), Err(HttpError::UriTooLong));
    assert_eq!(byte_by_byte(&fits(1), &limits), Err(HttpError::UriTooLong));
}

/// Found by `fuzz/run.sh` (target `http_head`, input kept as
/// `tests/data/fuzz-regressions/http_head/nul-in-overlong-request-line`): a GET
/// whose 4104-byte request line has NULs at byte 2476. Read in one go it was
/// 414 (the URI limit was checked first, on the whole buffer); its first 2744
/// bytes alone were already 400. The same bug as the two tests above, found
/// independently; now 400 however it arrives.
#[test]
fn http_nul_in_overlong_request_line_is_400_however_split() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz-regressions/http_head/nul-in-overlong-request-line"
    );
    let bytes = std::fs::read(path).unwrap();
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    assert_eq!(bytes.iter().position(|b| *b == b'\n'), Some(4104), "the request line passes the URI limit");
    assert_eq!(bytes[2476], 0);
    assert_eq!(parse_head(&bytes[..2744], &limits), Err(HttpError::BadRequest));
    assert_eq!(parse_head(&bytes, &limits), Err(HttpError::BadRequest));
    assert_eq!(byte_by_byte(&bytes, &limits), Err(HttpError::BadRequest));
}

/// Found by the `http_head` fuzz target in CI. The URI limit was measured from
/// the buffer's first byte, but the empty lines a server ignores before the
/// request line (RFC 9112 §2.2) came first: one "\r\n" ahead of a request
/// line of any length put a '\n' within the limit, and a 4,590-byte target
/// passed a 4,096-byte limit. The limit now runs from the request line's first
/// byte, and the empty lines count towards the head limit.
#[test]
fn http_empty_lines_before_the_request_line_do_not_lift_the_uri_limit() {
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    let line = |target_len: usize| {
        let mut bytes = b"\r\n\nGET /".to_vec();
        bytes.resize(3 + 5 + target_len - 1, b'a');
        bytes.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        bytes
    };
    let long = line(limits.max_uri_bytes + 500);
    assert_eq!(parse_head(&long, &limits), Err(HttpError::UriTooLong));
    assert_eq!(byte_by_byte(&long, &limits), Err(HttpError::UriTooLong));
    // "GET " + target + " HTTP/1.1\r" is the line before its '\n'.
    let fits = line(limits.max_uri_bytes - 4 - 10);
    let Ok(Parsed::Complete(h)) = parse_head(&fits, &limits) else { panic!("{fits:?}") };
    assert_eq!(h.path, 7..7 + limits.max_uri_bytes - 14);
    assert_eq!(byte_by_byte(&fits, &limits), parse_head(&fits, &limits));
    assert_eq!(parse_head(&line(limits.max_uri_bytes - 13), &limits), Err(HttpError::UriTooLong));
    // Empty lines alone up to the head limit are 431, as any head that long.
    let blank = vec![b'\n'; limits.max_header_bytes + 1];
    assert_eq!(parse_head(&blank, &limits), Err(HttpError::HeadersTooLarge));
    assert_eq!(byte_by_byte(&blank, &limits), Err(HttpError::HeadersTooLarge));
    // Empty lines that push a request line past the head limit: 431, however split.
    let mut late = vec![b'\n'; limits.max_header_bytes - 100];
    late.extend_from_slice(&line(limits.max_uri_bytes - 14)[3..]);
    assert_eq!(parse_head(&late, &limits), Err(HttpError::HeadersTooLarge));
    assert_eq!(byte_by_byte(&late, &limits), Err(HttpError::HeadersTooLarge));
}
