//! OCSP on the wire (RFC 6960, RFC 5019 profile): request decoding into typed
//! [`types::CertId`]s, response encoding around a signature, and the
//! [`issuer`]s a CertID names (their hashes and responder identity).
//!
//! Both halves are sans-IO: they work on byte slices and know nothing of sockets,
//! caches or signers' threads.

pub mod issuer;
pub mod request;
pub mod responder_cert;
pub mod response;
pub mod types;
pub mod verify;

pub use types::{CertId, CertStatus, HashAlg, HashParams, IssuerId, RevocationReason, Serial};
