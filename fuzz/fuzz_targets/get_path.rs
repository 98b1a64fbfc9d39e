//! `http::get_path::{route, decode}` on an arbitrary request target.
//!
//! Besides "never panics": a routed remainder is a non-empty piece of the
//! target without the query or leading slashes, and whatever `decode` accepts
//! decodes again to the same bytes once re-encoded as canonical base64 (so the
//! lenient decoder agrees with the strict one on what it produced).
//!
//! The checks live in `fuzz/checks/get_path.rs`.
#![no_main]

include!("../checks/get_path.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
