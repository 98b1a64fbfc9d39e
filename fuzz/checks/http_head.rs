// `http::parse::parse_head` with the default `[limits]` on arbitrary bytes.
//
// Besides "never panics", a complete head must be self-consistent (ranges inside
// the head, the head no longer than the limit) and the parse must not depend on
// how the bytes were split across reads: any prefix is either still
// `Incomplete` or already gives the answer the whole input gives.
//
// Shared by fuzz/fuzz_targets/http_head.rs and tests/http/fuzz_corpus.rs (which replays the
// committed corpus and regressions under `cargo test`), hence `include!`d and
// written with plain comments.
use ocsp_origin::config::LimitsConfig;
use ocsp_origin::http::parse::{parse_head, Parsed};

/// Panics when `data` breaks an invariant.
pub fn check(data: &[u8]) {
    let limits = ocsp_origin::http::parse::Limits::from_config(&LimitsConfig::default());
    let whole = parse_head(data, &limits);
    if let Ok(Parsed::Complete(h)) = &whole {
        assert!(h.head_len <= data.len() && h.head_len <= limits.max_header_bytes, "{h:?}");
        // The request line, from its first byte (after any empty lines) to
        // its '\n', is within the URI limit.
        let line = data.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(0);
        let line_end = line + data[line..].iter().position(|b| *b == b'\n').expect("a head has a line");
        assert!(line_end - line < limits.max_uri_bytes + 1, "{h:?}");
        assert!(line <= h.path.start && h.path.end <= line_end, "{h:?}");
        for r in [&Some(h.path.clone()), &h.if_none_match].into_iter().flatten() {
            assert!(r.start <= r.end && r.end <= h.head_len, "{h:?}");
        }
        assert!(h.content_length <= limits.max_body_bytes, "{h:?}");
        assert_eq!(data[h.head_len - 1], b'\n');
        // The head ends exactly at head_len: what follows it changes nothing,
        // one byte less is not yet a head.
        assert_eq!(parse_head(&data[..h.head_len], &limits), whole);
        assert_eq!(parse_head(&data[..h.head_len - 1], &limits), Ok(Parsed::Incomplete));
    }
    let n = data.len();
    let cuts = [
        1,
        n / 3,
        n / 2,
        n * 2 / 3,
        n.saturating_sub(1),
        limits.max_uri_bytes,
        limits.max_uri_bytes + 1,
        limits.max_header_bytes,
        limits.max_header_bytes + 1,
    ];
    for cut in cuts.into_iter().filter(|c| *c <= n) {
        let part = parse_head(&data[..cut], &limits);
        assert!(
            part == Ok(Parsed::Incomplete) || part == whole,
            "prefix of {cut} bytes gives {part:?}, all {n} bytes give {whole:?}"
        );
    }
}
