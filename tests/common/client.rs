//! A minimal raw HTTP/1.1 client for the server under test, and what the
//! tests read in its OCSP answers.

use std::io::{BufRead, BufReader, Write};

use super::server::Server;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `r` (`head_only` for HEAD requests / 304s).
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; if head_only || status == 304 { 0 } else { len }];
    r.read_exact(&mut body).ok()?;
    Some(Response { status, headers, body })
}

/// Sends raw bytes on a new connection and reads one response.
pub fn roundtrip(server: &Server, raw: &[u8]) -> Response {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, raw.starts_with(b"HEAD")).expect("a response")
}

/// A GET request for `path`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// A POST of an OCSP request body to `path`.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Standard base64 of `der`.
pub fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The unsigned error body for an OCSP response status.
pub fn ocsp_error(status: u8) -> Vec<u8> {
    vec![0x30, 0x03, 0x0a, 0x01, status]
}

/// "good", "revoked" or "error N" for an OCSP response body (first CertID).
pub fn ocsp_status(der: &[u8]) -> String {
    use der::Decode;
    let r = match x509_ocsp::OcspResponse::from_der(der) {
        Ok(r) => r,
        Err(e) => return format!("undecodable: {e}"),
    };
    let Some(rb) = r.response_bytes else { return format!("error {:?}", r.response_status) };
    let basic = x509_ocsp::BasicOcspResponse::from_der(rb.response.as_bytes()).unwrap();
    match basic.tbs_response_data.responses[0].cert_status {
        x509_ocsp::CertStatus::Good(_) => "good".into(),
        x509_ocsp::CertStatus::Revoked(_) => "revoked".into(),
        x509_ocsp::CertStatus::Unknown(_) => "unknown".into(),
    }
}
