//! HTTP/1.1 and the request path from bytes to CertIDs: a real server driven
//! with raw bytes (pipelining, keep-alive, limits, timeouts, every GET
//! encoding, conditional GETs, `X-Cache-Status`), and the hostile-input
//! parsers (HTTP head, GET path, OCSP request) by property tests, by a replay
//! of the fuzz corpus and by the findings they once failed on.

mod common;

#[path = "http/fuzz_corpus.rs"]
mod fuzz_corpus;
#[path = "http/fuzz_regressions.rs"]
mod fuzz_regressions;
#[path = "http/properties.rs"]
mod properties;
#[path = "http/raw.rs"]
mod raw;
