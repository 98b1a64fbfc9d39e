//! HTTP/1.1 on the shard: sans-IO request-head parsing ([`parse`]), GET-path
//! decoding into DER ([`get_path`]) and response writing ([`response`]).
//!
//! Only what an OCSP responder needs: GET/HEAD/POST, keep-alive, pipelining,
//! HTTP/1.0, conditional GET. Bodies must have a Content-Length.

pub mod get_path;
pub mod parse;
pub mod response;
