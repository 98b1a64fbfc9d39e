//! Every way a request can fail, and the one function ([`disposition`]) that
//! turns a failure into what the client gets: HTTP status, OCSP status (for
//! OCSP-level failures, sent with HTTP 200 as RFC 5019 expects), and whether
//! the connection must close.
//!
//! Error answers are never cached by anyone: they carry
//! `Cache-Control: max-age=0, no-cache` and are not signed (RFC 6960 §2.3).

use crate::ocsp::request::RequestError;
use crate::ocsp::response::{EncodeError, ResponseStatus};
use crate::signer::SignError;
use crate::status::StatusError;

/// Why no signed status answer was produced for a well-formed HTTP request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    /// The request bytes are not an OCSP request we answer.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The GET path is not valid base64 (after every tolerated variation).
    #[error("GET path is not base64")]
    BadBase64,
    /// CertIDs of different issuers in one request (one response has one signer).
    #[error("CertIDs of more than one issuer in one request")]
    MixedIssuers,
    /// The issuer is served but this serial was never issued.
    #[error("serial not issued by this issuer")]
    UnknownSerial,
    /// The certificate is expired and policy says not to answer.
    #[error("certificate expired")]
    Expired,
    /// Too many misses in flight on this shard.
    #[error("too many misses in flight")]
    Overloaded,
    /// No answer both current (no older than the newest change of its
    /// certificates this node has seen) and within its validity could be
    /// made: the status kept changing while it was answered, or the clock
    /// passed nextUpdate while it was made.
    #[error("no current, valid answer could be made in time")]
    NotCurrent,
    /// The status source failed.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// Signing failed or was shed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The response could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// HTTP-level failures, answered before any OCSP processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Unparseable request line or headers.
    #[error("bad request")]
    BadRequest,
    /// Path outside the configured prefix.
    #[error("not found")]
    NotFound,
    /// A method other than GET, HEAD or POST.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The head did not arrive within the header timeout.
    #[error("request timeout")]
    Timeout,
    /// POST without Content-Length (chunked bodies are not accepted).
    #[error("length required")]
    LengthRequired,
    /// Body larger than `limits.max_body_bytes`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Request line longer than `limits.max_uri_bytes`.
    #[error("URI too long")]
    UriTooLong,
    /// Head larger than `limits.max_header_bytes` or too many headers.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// An HTTP version other than 1.0 and 1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

/// What the client is sent for a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disposition {
    /// HTTP status code and reason phrase.
    pub http: (u16, &'static str),
    /// For OCSP-level failures, the unsigned `OCSPResponse` status in the body.
    pub ocsp: Option<ResponseStatus>,
    /// Close the connection after answering (the stream can't be trusted).
    pub close: bool,
}

/// Anything that ends a request without a signed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Failed at the HTTP layer.
    Http(HttpError),
    /// Failed at the OCSP layer.
    Ocsp(OcspError),
}

/// The single mapping from failures to answers.
///
/// - malformed input → `malformedRequest`;
/// - an issuer, serial or certificate we do not vouch for → `unauthorized`
///   (never "good" for what was not issued);
/// - transient capacity or dependency trouble → `tryLater`;
/// - our own encoding bug → `internalError`.
pub fn disposition(f: &Failure) -> Disposition {
    let ocsp = |s| Disposition { http: (200, "OK"), ocsp: Some(s), close: false };
    let http = |code, reason, close| Disposition { http: (code, reason), ocsp: None, close };
    match f {
        Failure::Ocsp(e) => ocsp(match e {
            OcspError::Request(
                RequestError::Malformed(_)
                | RequestError::Empty
                | RequestError::TooMany(..)
                | RequestError::CriticalExtension(_)
                | RequestError::BadHashParams,
            )
            | OcspError::BadBase64 => ResponseStatus::MalformedRequest,
            OcspError::Request(
                RequestError::UnknownIssuer | RequestError::UnsupportedHash | RequestError::BadSerial(_),
            )
            | OcspError::MixedIssuers
            | OcspError::UnknownSerial
            | OcspError::Expired => ResponseStatus::Unauthorized,
            OcspError::Overloaded | OcspError::NotCurrent | OcspError::Status(_) | OcspError::Sign(_) => {
                ResponseStatus::TryLater
            }
            OcspError::Encode(_) => ResponseStatus::InternalError,
        }),
        Failure::Http(e) => match e {
            HttpError::BadRequest => http(400, "Bad Request", true),
            HttpError::NotFound => http(404, "Not Found", false),
            HttpError::MethodNotAllowed => http(405, "Method Not Allowed", false),
            HttpError::Timeout => http(408, "Request Timeout", true),
            HttpError::LengthRequired => http(411, "Length Required", true),
            HttpError::PayloadTooLarge => http(413, "Payload Too Large", true),
            HttpError::UriTooLong => http(414, "URI Too Long", true),
            HttpError::HeadersTooLarge => http(431, "Request Header Fields Too Large", true),
            HttpError::VersionNotSupported => http(505, "HTTP Version Not Supported", true),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknowns_are_unauthorized_never_good() {
        for e in
            [OcspError::UnknownSerial, OcspError::Expired, OcspError::Request(RequestError::UnknownIssuer)]
        {
            assert_eq!(disposition(&Failure::Ocsp(e)).ocsp, Some(ResponseStatus::Unauthorized));
        }
    }

    #[test]
    fn capacity_trouble_is_try_later() {
        for e in [
            OcspError::Overloaded,
            OcspError::Sign(SignError::QueueFull),
            OcspError::Sign(SignError::Shed),
            OcspError::Sign(SignError::Timeout),
        ] {
            let d = disposition(&Failure::Ocsp(e));
            assert_eq!(d.ocsp, Some(ResponseStatus::TryLater));
            assert_eq!(d.http.0, 200);
        }
    }

    #[test]
    fn limits_close_the_connection() {
        for e in [
            HttpError::PayloadTooLarge,
            HttpError::UriTooLong,
            HttpError::HeadersTooLarge,
            HttpError::Timeout,
        ] {
            assert!(disposition(&Failure::Http(e)).close);
        }
    }
}
