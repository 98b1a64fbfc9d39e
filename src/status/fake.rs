//! Named fakes of the status source for unit tests, beside the real-server
//! tests in `tests/`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{CertRecord, LookupFuture, Need, StatusSource};
use crate::ocsp::{IssuerId, Serial};

/// A replica that lags and ignores [`Need::at_least`], as a naive read of a
/// replica would: it answers its own (older) rows unless the lookup asks for
/// the primary. What the responder must never sign from.
#[derive(Default)]
pub(crate) struct LaggingReplica {
    /// What the replica has applied.
    pub(crate) replica: Mutex<HashMap<(IssuerId, Serial), CertRecord>>,
    /// What the primary has committed.
    pub(crate) primary: Mutex<HashMap<(IssuerId, Serial), CertRecord>>,
    /// Lookups that asked for the primary.
    pub(crate) primary_reads: Mutex<u32>,
}

impl StatusSource for LaggingReplica {
    fn lookup(&self, issuer: IssuerId, serial: Serial, need: Need) -> LookupFuture<'_> {
        let side = if need.primary {
            if let Ok(mut n) = self.primary_reads.lock() {
                *n += 1;
            }
            &self.primary
        } else {
            &self.replica
        };
        let rec = side.lock().ok().and_then(|m| m.get(&(issuer, serial)).copied());
        Box::pin(async move { Ok(rec) })
    }

    fn has_revisions(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "lagging_replica"
    }
}
