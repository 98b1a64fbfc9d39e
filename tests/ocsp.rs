//! OCSP messages: DER test vectors (requests real clients make decode to the
//! expected CertIDs, responses encode and verify) and interop with the
//! `openssl ocsp` CLI against a real server (every answer verified by
//! OpenSSL: signature, CertID, validity; delegated responders, RSA next to
//! EC), conformance with what strict clients and RFC 6960 expect, and
//! answers judged by tools sharing no code with either (Bouncy Castle,
//! pkilint).

mod common;

#[path = "ocsp/conformance.rs"]
mod conformance;
#[path = "ocsp/der_vectors.rs"]
mod der_vectors;
#[path = "ocsp/interop.rs"]
mod interop;
#[path = "ocsp/strict_clients.rs"]
mod strict_clients;
