//! Sans-IO parsing of a request head from the connection buffer.
//!
//! [`parse_head`] works on `&[u8]` and returns byte ranges into it, so nothing is
//! copied; [`Parsed::Incomplete`] is a state ("read more"), not an error. Limits
//! are checked here: a request line longer than `max_uri_bytes` is 414, a head
//! larger than `max_header_bytes` (or with more than [`MAX_HEADERS`] fields) is
//! 431, a declared body larger than `max_body_bytes` is 413.

use std::ops::Range;

use crate::error::HttpError;

/// Most header fields parsed in one request.
pub const MAX_HEADERS: usize = 32;

/// Request limits (from `[limits]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request-line bytes.
    pub max_uri_bytes: usize,
    /// Head bytes.
    pub max_header_bytes: usize,
    /// Body bytes.
    pub max_body_bytes: usize,
}

impl Limits {
    /// The parser's share of `[limits]`.
    pub fn from_config(c: &crate::config::LimitsConfig) -> Limits {
        Limits {
            max_uri_bytes: c.max_uri_bytes,
            max_header_bytes: c.max_header_bytes,
            max_body_bytes: c.max_body_bytes,
        }
    }
}

/// Request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD (answered like GET, without the body)
    Head,
    /// POST
    Post,
    /// Anything else (405)
    Other,
}

/// A parsed head. Ranges index the buffer given to [`parse_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Request target.
    pub path: Range<usize>,
    /// Body length (0 when absent).
    pub content_length: usize,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// `If-None-Match` value.
    pub if_none_match: Option<Range<usize>>,
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
}

/// Outcome of a parse attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A complete head.
    Complete(Head),
}

fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadersTooLarge,
        httparse::Error::Version => HttpError::VersionNotSupported,
        _ => HttpError::BadRequest,
    }
}

/// A `Content-Length` value: `1*DIGIT` (RFC 9110 §8.6) between optional
/// whitespace, nothing else — no sign (`str::parse` would take `+5`), no list,
/// no other script's digits, since a front proxy reading the field
/// differently is how requests are smuggled. A number too large for `usize`
/// is still a number, and larger than any body limit: `u64::MAX` stands for
/// it, so it gets 413 like any other oversized length, not 400.
fn content_length_value(value: &[u8]) -> Result<usize, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest);
    }
    Ok(digits
        .iter()
        .try_fold(0usize, |n, d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
        .unwrap_or(usize::MAX))
}

/// Bytes of CR and LF at the start of `buf`: the empty lines before a request
/// line. A stray CR among them is left for httparse to refuse.
fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(buf.len())
}

/// Parses the head at the start of `buf`.
///
/// The answer depends only on the bytes, never on how they were split across
/// reads: it is decided in byte order (an invalid byte before a limit is 400,
/// a limit reached before any invalid byte is 414 / 431), so a prefix is either
/// [`Parsed::Incomplete`] or already gets the answer the whole buffer gets.
/// Bytes past a limit are not looked at.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let head_cap = limits.max_header_bytes + 1;
    // The request line's '\n' must come within max_uri_bytes + 1 bytes of its
    // first byte, and within the head limit, or that limit is reached first.
    // The line starts after the empty lines a server ignores before it
    // (RFC 9112 §2.2; httparse skips them), which count towards the head limit
    // only: measuring from the buffer's start would let "\r\n" before a long
    // request line carry it past the URI limit.
    let start = leading_empty_lines(&buf[..buf.len().min(head_cap)]);
    let uri_cap = start + limits.max_uri_bytes + 1;
    let line_cap = uri_cap.min(head_cap);
    if buf.len() >= line_cap && !buf[start.min(line_cap)..line_cap].contains(&b'\n') {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        return Err(match httparse::Request::new(&mut headers).parse(&buf[..line_cap]) {
            Err(e) => httparse_error(e),
            Ok(_) if uri_cap <= head_cap => HttpError::UriTooLong,
            Ok(_) => HttpError::HeadersTooLarge,
        });
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(&buf[..buf.len().min(head_cap)]).map_err(httparse_error)?;
    let head_len = match status {
        httparse::Status::Partial => {
            if buf.len() >= head_cap {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(Parsed::Incomplete);
        }
        httparse::Status::Complete(n) => n,
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let minor_version = req.version.unwrap_or(1);
    let path = range_of(buf, req.path.unwrap_or("").as_bytes());
    let mut content_length = None;
    let mut keep_alive = minor_version == 1;
    let mut if_none_match = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = content_length_value(h.value)?;
            match content_length {
                Some(b) if b != v => return Err(HttpError::BadRequest),
                _ => content_length = Some(v),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are refused (RFC 9112 §6.1 lets a server answer 411);
            // accepting them next to Content-Length invites request smuggling.
            return Err(HttpError::LengthRequired);
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(range_of(buf, h.value));
        }
    }
    let content_length = match (method, content_length) {
        (Method::Post, None) => return Err(HttpError::LengthRequired),
        (_, Some(n)) if n > limits.max_body_bytes => return Err(HttpError::PayloadTooLarge),
        (_, n) => n.unwrap_or(0),
    };
    Ok(Parsed::Complete(Head {
        method,
        minor_version,
        path,
        content_length,
        keep_alive,
        if_none_match,
        head_len,
    }))
}

/// Every value of header field `name` (any case) in `head`, a head
/// [`parse_head`] accepted (its first `head_len` bytes). For callers off the
/// hot path that need a field [`Head`] does not carry, such as the admin
/// listener's `Authorization`; empty when the head does not parse.
pub fn header_values<'a>(head: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(_) => req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits { max_uri_bytes: 100, max_header_bytes: 300, max_body_bytes: 50 };

    fn complete(b: &[u8]) -> Head {
        match parse_head(b, &L).unwrap() {
            Parsed::Complete(h) => h,
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn get_keepalive_defaults() {
        let b = b"GET /abc HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let h = complete(b);
        assert_eq!(h.method, Method::Get);
        assert_eq!(&b[h.path.clone()], b"/abc");
        assert!(h.keep_alive);
        assert_eq!(h.head_len, b.len() - 4);
        let h = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = complete(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
        assert!(!h.keep_alive);
    }

    #[test]
    fn incomplete_is_a_state() {
        assert_eq!(parse_head(b"GET / HT", &L).unwrap(), Parsed::Incomplete);
        assert_eq!(parse_head(b"", &L).unwrap(), Parsed::Incomplete);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n", &L).unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200));
        assert_eq!(parse_head(long.as_bytes(), &L), Err(HttpError::UriTooLong));
        assert_eq!(parse_head(&[b'a'; 101], &L), Err(HttpError::UriTooLong));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n{}", "a".repeat(90), "Y: b\r\n".repeat(60));
        assert_eq!(parse_head(big.as_bytes(), &L), Err(HttpError::HeadersTooLarge));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 51\r\n\r\n";
        assert_eq!(parse_head(post, &L), Err(HttpError::PayloadTooLarge));
        let post = b"POST / HTTP/1.1\r\n\r\n";
        assert_eq!(parse_head(post, &L), Err(HttpError::LengthRequired));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked, &L), Err(HttpError::LengthRequired));
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_head(two, &L), Err(HttpError::BadRequest));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(complete(same).content_length, 2);
    }

    /// `str::parse::<usize>` accepts a leading `+`, so `Content-Length: +5`
    /// used to be read as 5, where a stricter proxy in front would refuse or
    /// misread it: a request-smuggling seam.
    #[test]
    fn regression_content_length_sign_and_junk_are_refused() {
        for v in ["+5", "-5", "5, 5", "0x10", "5 5", "", " ", "5\u{0665}", "\u{0665}"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(parse_head(raw.as_bytes(), &L), Err(HttpError::BadRequest), "{v:?}");
        }
        assert_eq!(complete(b"POST / HTTP/1.1\r\nContent-Length:  07 \r\n\r\n").content_length, 7);
    }

    /// A length with more digits than `usize` holds used to fail `parse` and
    /// get 400; it is a valid, oversized length: 413 like any other.
    #[test]
    fn regression_overflowing_content_length_is_413() {
        for v in ["18446744073709551615", "18446744073709551616", "99999999999999999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(parse_head(raw.as_bytes(), &L), Err(HttpError::PayloadTooLarge), "{v}");
        }
    }

    #[test]
    fn garbage_and_methods() {
        assert_eq!(parse_head(b"\x00\x01\x02 junk\r\n\r\n", &L), Err(HttpError::BadRequest));
        assert_eq!(complete(b"DELETE / HTTP/1.1\r\n\r\n").method, Method::Other);
        assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n", &L), Err(HttpError::VersionNotSupported));
    }

    #[test]
    fn header_values_are_found_in_any_case() {
        let b = b"POST /x HTTP/1.1\r\nauthorization: Bearer a\r\nX: y\r\nAUTHORIZATION: b\r\n\r\n";
        assert_eq!(header_values(b, "Authorization"), [&b"Bearer a"[..], b"b"]);
        assert!(header_values(b, "Cookie").is_empty());
        assert!(header_values(b"\x00garbage", "X").is_empty());
    }

    #[test]
    fn conditional_headers() {
        let b = b"GET /x HTTP/1.1\r\nIf-None-Match: \"abc\"\r\nIf-Modified-Since: Sat, 28 Nov 2026 00:00:00 GMT\r\n\r\n";
        let h = complete(b);
        assert_eq!(&b[h.if_none_match.unwrap()], b"\"abc\"");
    }
}
