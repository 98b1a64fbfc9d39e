//! Signing: the [`Signer`] trait every key implements ([`software`] keys and
//! [`pkcs11`] HSM sessions) and the [`pool`] of signer threads that shards
//! hand work to.
//!
//! Signing is the scarce resource of a just-in-time responder and it is CPU- (or
//! HSM-) bound, so it never runs on a shard: shards queue jobs into a bounded
//! queue and await the answer.

pub mod pkcs11;
pub mod pool;
pub mod software;

pub use pkcs11::{Pkcs11Config, Pkcs11Signer};
pub use pool::{SignPool, SignPoolConfig};
pub use software::SoftwareSigner;

/// Fault counters a signer keeps (HSM session health).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignerCounters {
    /// Jobs retried after a session fault.
    pub retries: u64,
    /// Sessions reopened after a fault.
    pub session_reopens: u64,
}

/// Why a signature could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key refused to sign (library or device failure).
    #[error("signing failed: {0}")]
    Failed(String),
    /// The queue was full (`signing.queue_depth` jobs waiting).
    #[error("signing queue full")]
    QueueFull,
    /// Shed before queueing: jobs lately waited longer than
    /// `signing.max_queue_wait_ms`, or the signers made no progress for a
    /// multiple of it (a stuck HSM), so a new job would wait too long.
    #[error("signing queue too slow: shed")]
    Shed,
    /// The signer threads are gone (shutdown).
    #[error("signer pool stopped")]
    Stopped,
    /// No answer within the configured signing timeout.
    #[error("signing timed out")]
    Timeout,
}

/// A private key that signs OCSP `ResponseData`.
///
/// Implementations are shared by all signer threads, so they are `Send + Sync`;
/// a device whose sessions are not `Sync` keeps one session per thread behind
/// this interface.
pub trait Signer: Send + Sync + 'static {
    /// DER of the `AlgorithmIdentifier` that goes into `BasicOCSPResponse.signatureAlgorithm`.
    fn algorithm_der(&self) -> &[u8];
    /// The public key as it appears in a certificate's `subjectPublicKey` BIT
    /// STRING (used to match the key to its certificate and for `byKey` IDs).
    fn public_key_bits(&self) -> &[u8];
    /// Signs `tbs` (the DER `ResponseData`), returning the signature value as it
    /// goes into the BIT STRING (DER `ECDSA-Sig-Value` for EC, raw for RSA).
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError>;
    /// Human-readable key description for logs (`ECDSA P-256`, `RSA-2048`).
    fn describe(&self) -> String;
    /// Fault counters (zero for signers that cannot fault).
    fn counters(&self) -> SignerCounters {
        SignerCounters::default()
    }
}
