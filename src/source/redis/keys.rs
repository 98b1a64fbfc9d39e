//! The key schema: every key of one certificate shares a Redis Cluster hash
//! tag, so its response keys (one per hash algorithm) and its change key live
//! on one node and one script call covers them.

use crate::ocsp::issuer::Issuers;
use crate::ocsp::{CertId, HashParams, IssuerId, Serial};

/// The slot-sharing part of every key of one certificate: a Redis Cluster
/// hash tag, so its response keys (one per hash algorithm) and its change
/// key live on one node and one script call covers them all.
fn cert_tag(issuer_name: &str, serial: &Serial) -> String {
    format!("{{{issuer_name}:{serial}}}")
}

/// Redis key of the response for one CertID:
/// `{prefix}r:{<issuer>:<serial>}:<hash>`, with `-np` after the hash where
/// the client sent no hash parameters (the response echoes its CertID).
/// Response keys are not tracked: fills by other shards need not evict
/// anyone.
pub fn key_for(prefix: &str, issuer_name: &str, id: &CertId) -> String {
    let np = if id.params == HashParams::Absent { "-np" } else { "" };
    format!("{prefix}r:{}:{}{np}", cert_tag(issuer_name, &id.serial), id.alg.name())
}

/// Every response key of a certificate (one per CertID form).
pub fn keys_of_cert(prefix: &str, issuer_name: &str, serial: &Serial) -> Vec<String> {
    CertId::forms(IssuerId(0), *serial).map(|id| key_for(prefix, issuer_name, &id)).collect()
}

/// Redis key announcing a status change of a certificate:
/// `{prefix}chg:{<issuer>:<serial>}`. Only these keys are tracked (broadcast
/// mode, prefix [`change_prefix`]), so invalidation traffic is one message per
/// shard per *status change*, not per cache fill.
pub fn change_key(prefix: &str, issuer_name: &str, serial: &Serial) -> String {
    format!("{prefix}chg:{}", cert_tag(issuer_name, serial))
}

/// The tracked prefix.
pub fn change_prefix(prefix: &str) -> String {
    format!("{prefix}chg:")
}

/// Where the tombstone writers keep their position (see `crate::feed`).
pub fn position_key(prefix: &str) -> String {
    format!("{prefix}feed:pos")
}

/// Parses a change key back into the CertIDs (every form) whose L1
/// entries must go.
pub fn certids_of_change(prefix: &str, issuers: &Issuers, key: &[u8]) -> Option<Vec<CertId>> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(&change_prefix(prefix))?;
    let (name, serial) = key.strip_prefix('{')?.strip_suffix('}')?.rsplit_once(':')?;
    let serial = Serial::from_hex(serial).ok()?;
    let issuer = issuers.by_name(name)?;
    Some(CertId::forms(issuer, serial).collect())
}

/// Turns an invalidation key list entry into the cache key L1 uses, for
/// callers that keep their own map.
pub fn l1_key(id: CertId) -> Vec<u8> {
    crate::source::admission::cache_key(&[id])
}
