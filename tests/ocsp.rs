//! OCSP messages: DER test vectors (requests real clients make decode to the
//! expected CertIDs, responses encode and verify) and interop with the
//! `openssl ocsp` CLI against a real server (every answer verified by
//! OpenSSL: signature, CertID, validity; delegated responders, RSA next to
//! EC).

mod common;

#[path = "ocsp/der_vectors.rs"]
mod der_vectors;
#[path = "ocsp/interop.rs"]
mod interop;
