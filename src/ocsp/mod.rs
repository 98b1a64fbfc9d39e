//! OCSP on the wire (RFC 6960, RFC 5019 profile): request decoding into typed
//! [`types::CertId`]s, and response encoding around a signature.
//!
//! Both halves are sans-IO: they work on byte slices and know nothing of sockets,
//! caches or signers' threads.

pub mod request;
pub mod response;
pub mod types;

pub use types::{CertId, HashAlg, IssuerId, RevocationReason, Serial};
