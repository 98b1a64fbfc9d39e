//! `http::parse::parse_head` with the default `[limits]` on arbitrary bytes.
//!
//! Besides "never panics", a complete head must be self-consistent (ranges inside
//! the head, the head no longer than the limit) and the parse must not depend on
//! how the bytes were split across reads: any prefix is either still
//! `Incomplete` or already gives the answer the whole input gives.
//!
//! The checks live in `fuzz/checks/http_head.rs`.
#![no_main]

include!("../checks/http_head.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
