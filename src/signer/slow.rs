//! `SlowSigner`: a real key behind added per-signature latency, standing in for
//! a network HSM (or a stuck one) in tests and benchmarks.
//!
//! The delay blocks the signer thread exactly as a remote HSM round trip would,
//! so it shows what many sessions buy: with 2 ms per signature, one session
//! gives at most 500 signatures/s and throughput grows with sessions until the
//! real signing capacity (or the HSM's) is reached.

use std::sync::Arc;
use std::time::Duration;

use super::{SignError, Signer, SignerCounters};

/// Wraps a signer, sleeping `delay` before each signature.
pub struct SlowSigner {
    inner: Arc<dyn Signer>,
    delay: Duration,
}

impl SlowSigner {
    /// `inner` with `delay` added to every signature.
    pub fn new(inner: Arc<dyn Signer>, delay: Duration) -> SlowSigner {
        SlowSigner { inner, delay }
    }
}

impl Signer for SlowSigner {
    fn algorithm_der(&self) -> &[u8] {
        self.inner.algorithm_der()
    }

    fn public_key_bits(&self) -> &[u8] {
        self.inner.public_key_bits()
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        std::thread::sleep(self.delay);
        self.inner.sign(tbs)
    }

    fn describe(&self) -> String {
        format!("{} + {:?} latency", self.inner.describe(), self.delay)
    }

    fn counters(&self) -> SignerCounters {
        self.inner.counters()
    }
}
