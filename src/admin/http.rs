//! The admin listener's HTTP: one request per connection, read within a
//! deadline with the same parser the shards use, one answer, close; and the
//! form decoding `POST /revoke` takes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use super::{LIMITS, REQUEST_DEADLINE};
use crate::config::redact;
use crate::error::HttpError;
use crate::http::parse::{parse_head, Method, Parsed};

/// An answer; every one closes the connection.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) code: u16,
    pub(super) content_type: &'static str,
    pub(super) body: String,
    /// `Allow` for 405s.
    pub(super) allow: Option<&'static str>,
}

impl Reply {
    pub(super) fn text(code: u16, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Reply { code, content_type: "text/plain; charset=utf-8", body, allow: None }
    }

    /// An error whose text may come from a lower layer: scrubbed of secrets.
    pub(super) fn error(code: u16, text: &str) -> Reply {
        Reply::text(code, redact(text))
    }

    pub(super) fn reason(&self) -> &'static str {
        match self.code {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Internal Server Error",
        }
    }

    pub(super) fn write_to(&self, c: &mut TcpStream) {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.code,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        if self.code == 401 {
            head.push_str("WWW-Authenticate: Bearer realm=\"ocsp-origin admin\"\r\n");
        }
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        head.push_str("\r\n");
        let _ = c.write_all(head.as_bytes()).and_then(|()| c.write_all(self.body.as_bytes()));
        let _ = c.shutdown(Shutdown::Write);
    }
}

/// A request as read from the connection.
pub(super) struct Request {
    pub(super) bytes: Vec<u8>,
    pub(super) method: Method,
    pub(super) target: std::ops::Range<usize>,
    pub(super) head_len: usize,
    pub(super) content_length: usize,
}

impl Request {
    pub(super) fn target(&self) -> &[u8] {
        &self.bytes[self.target.clone()]
    }
    pub(super) fn head(&self) -> &[u8] {
        &self.bytes[..self.head_len]
    }
    pub(super) fn body(&self) -> &[u8] {
        &self.bytes[self.head_len..self.head_len + self.content_length]
    }
}

/// Reads one request within [`REQUEST_DEADLINE`] of `start`. `Ok(None)`
/// when the peer went away before sending a whole request.
pub(super) fn read_request(c: &mut TcpStream, start: Instant) -> Result<Option<Request>, HttpError> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Parsed::Complete(h) = parse_head(&bytes, &LIMITS)? {
            if bytes.len() >= h.head_len + h.content_length {
                return Ok(Some(Request {
                    method: h.method,
                    target: h.path,
                    head_len: h.head_len,
                    content_length: h.content_length,
                    bytes,
                }));
            }
        }
        let left = REQUEST_DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        let _ = c.set_read_timeout(Some(left));
        match c.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(HttpError::Timeout)
            }
            Err(_) => return Ok(None),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs: `+` is a space, `%XX` a byte;
/// names and values must be UTF-8.
pub(super) fn form_pairs(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    pub(super) fn decode(part: &[u8]) -> Result<String, String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                    out.push(byte.ok_or("bad %-escape in the form")?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "the form is not UTF-8".to_string())
    }
    text.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = match p.iter().position(|b| *b == b'=') {
                Some(eq) => (&p[..eq], &p[eq + 1..]),
                None => (p, &b""[..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}
