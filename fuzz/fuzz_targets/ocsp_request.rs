//! `ocsp::request::decode` and `source::admission::admit` on arbitrary bytes,
//! against the test issuer of `tests/data/client-requests`.
//!
//! Besides "never panics": `admit` agrees with `decode`; accepted CertIDs are
//! within the bound, name the issuer, carry a serial that re-validates and
//! survives the hex round trip; and decode → DER encode → decode gives the same
//! CertIDs.
//!
//! The checks live in `fuzz/checks/ocsp_request.rs`.
#![no_main]

include!("../checks/ocsp_request.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
