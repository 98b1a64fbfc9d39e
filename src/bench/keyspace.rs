//! The serials a bench run asks about, with the status each answer must carry,
//! read from the same status source the server uses (the config's `index.txt`
//! files or its MariaDB/MySQL table), and how a run draws from them: Zipf-like
//! popularity over a stage's keyspace, and per ratchet stage a share of serials
//! that were never asked for before (cold).

use std::path::Path;

use crate::clock::unix_now;
use crate::config::Config;
use crate::ocsp::{HashAlg, RevocationReason, Serial};
use crate::status::CertStatus;

/// An issuer as the client sees it: what goes into a CertID and what verifies
/// the response.
#[derive(Clone, Debug)]
pub struct ClientIssuer {
    /// Config name.
    pub name: String,
    /// SHA-1 of the issuer's DER subject name.
    pub name_hash_sha1: Vec<u8>,
    /// SHA-1 of the issuer's subjectPublicKey bits.
    pub key_hash_sha1: Vec<u8>,
    /// DER subject name (delegated responder certificates must be issued by it).
    pub subject_der: Vec<u8>,
    /// The issuer's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

impl ClientIssuer {
    /// From a certificate file (PEM or DER).
    pub fn from_file(name: &str, path: &Path) -> Result<ClientIssuer, String> {
        use der::Encode;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cert =
            crate::ocsp::issuer::parse_certificate(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let tbs = &cert.tbs_certificate;
        let subject_der = tbs.subject.to_der().map_err(|e| format!("{}: {e}", path.display()))?;
        let spki_der =
            tbs.subject_public_key_info.to_der().map_err(|e| format!("{}: {e}", path.display()))?;
        let (name_hash_sha1, key_hash_sha1) = crate::ocsp::issuer::cert_id_hashes(&cert, HashAlg::Sha1)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ClientIssuer { name: name.to_string(), name_hash_sha1, key_hash_sha1, subject_der, spki_der })
    }
}

/// One certificate the run may ask about.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Index into [`Keyspace::issuers`].
    pub issuer: u16,
    /// Serial.
    pub serial: Serial,
    /// The status its answers must carry.
    pub status: CertStatus,
}

/// Every certificate the run may ask about.
#[derive(Debug)]
pub struct Keyspace {
    /// Issuers, in config order (shared with every thread's verifier).
    pub issuers: std::sync::Arc<[ClientIssuer]>,
    /// Certificates, shuffled (so any prefix is a uniform sample).
    pub entries: Vec<Entry>,
    /// Per entry, the row's `revision` when it was read (0 from `index.txt`):
    /// where the status read at start sits among the changes the change
    /// follower sees (see `super::changes`).
    pub revisions: Vec<u64>,
    /// Certificates left out because they are expired (their answer depends on
    /// the server's `response.expired` policy, which is not what a load test
    /// is about).
    pub skipped_expired: usize,
}

/// A row of `ocsp_certificates`: serial, status, revoked_at, reason,
/// not_after, revision.
type DbRow = (Vec<u8>, u8, Option<u64>, Option<u8>, u64, u64);

/// The status the server answers for a row's `status`, `revoked_at` and
/// `reason` columns (as `status::mysql` reads them: a missing time is 0, an
/// unknown or missing reason unspecified).
pub fn db_status(status: u8, revoked_at: Option<u64>, reason: Option<u8>) -> CertStatus {
    match status {
        0 => CertStatus::Good,
        _ => CertStatus::Revoked {
            at: revoked_at.unwrap_or(0),
            reason: reason
                .and_then(crate::ocsp::RevocationReason::from_code)
                .unwrap_or(RevocationReason::Unspecified),
        },
    }
}

/// Reads the keyspace of `config` (at most `max` certificates, a uniform
/// sample when there are more).
pub fn load(config: &Config, max: usize) -> Result<Keyspace, String> {
    let mut issuers = Vec::new();
    for ic in &config.issuers {
        issuers.push(ClientIssuer::from_file(&ic.name, &ic.cert)?);
    }
    let now = unix_now();
    let mut entries = Vec::new();
    let mut skipped_expired = 0;
    let mut keep = |issuer: u16, serial: Serial, status: CertStatus, not_after: u64, revision: u64| {
        if not_after <= now {
            skipped_expired += 1;
        } else {
            entries.push((Entry { issuer, serial, status }, revision));
        }
    };
    match &config.mysql {
        None => {
            for (i, ic) in config.issuers.iter().enumerate() {
                let Some(path) = &ic.index else { continue };
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let (serial, rec) = crate::status::index_txt::parse_line(line)
                        .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
                    keep(i as u16, serial, rec.status, rec.not_after, 0);
                }
            }
        }
        Some(m) => {
            use mysql::prelude::Queryable;
            let pool = crate::ops::db::connect(m)?;
            let mut conn = pool.get_conn().map_err(|e| crate::config::redact(&e.to_string()))?;
            for (i, ic) in config.issuers.iter().enumerate() {
                let rows: Vec<DbRow> = conn
                    .exec(
                        "SELECT serial, status, revoked_at, reason, not_after, revision \
                         FROM ocsp_certificates WHERE issuer = ? LIMIT ?",
                        (ic.name.as_str(), max as u64 * 2),
                    )
                    .map_err(|e| crate::config::redact(&e.to_string()))?;
                for (serial, status, at, reason, not_after, revision) in rows {
                    let serial =
                        Serial::from_der_content(&serial).map_err(|e| format!("serial in DB: {e}"))?;
                    keep(i as u16, serial, db_status(status, at, reason), not_after, revision);
                }
            }
        }
    }
    if entries.is_empty() {
        return Err("the status source lists no unexpired certificates to ask about".into());
    }
    let mut rng = Rng::seeded();
    rng.shuffle(&mut entries);
    entries.truncate(max);
    let (entries, revisions) = entries.into_iter().unzip();
    Ok(Keyspace { issuers: issuers.into(), entries, revisions, skipped_expired })
}

/// A small, fast PRNG (xorshift64*), one per generator thread: the load
/// generator draws several numbers per request and must not be the bottleneck.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the OS.
    pub fn seeded() -> Rng {
        let mut b = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut b);
        Rng::new(u64::from_le_bytes(b))
    }

    /// A fixed seed (tests, reproducible runs).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Zipf-like popularity over ranks `0..n`: P(rank r) ∝ 1/(r+1)^s. Sampled by
/// binary search over the cumulative table (n up to a few million).
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Table for `n` ranks with exponent `s` (0 = uniform).
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 0..n {
            acc += 1.0 / ((r + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// A rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len().saturating_sub(1))
    }

    /// Ranks in the table.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// True for an empty table.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }
}

/// Which entries each stage asks about, by popularity rank.
#[derive(Debug, Clone)]
pub struct StageKeys {
    /// Entry indices; position = popularity rank.
    pub ranked: Vec<u32>,
    /// How many of them were never asked about before this stage.
    pub cold: usize,
}

/// Splits the keyspace for a warm-up and `fractions.len()` stages of `k`
/// serials each: the warm set is `entries[..k]`; stage i takes
/// `round(fractions[i]·k)` serials never used before (cold) and the rest from
/// serials already asked about (the warm set and earlier stages' cold ones),
/// then ranks them at random so cold serials are spread over the popularity
/// curve, as a dropped cache segment would be. Returns (warm set, stages).
pub fn plan_stages(
    n_entries: usize,
    k: usize,
    fractions: &[f64],
    rng: &mut Rng,
) -> (Vec<u32>, Vec<StageKeys>) {
    let warm: Vec<u32> = (0..k.min(n_entries) as u32).collect();
    let mut used: Vec<u32> = warm.clone();
    let mut next_fresh = warm.len();
    let mut stages = Vec::new();
    for f in fractions {
        let want_cold = ((f * k as f64).round() as usize).min(k);
        let cold = want_cold.min(n_entries - next_fresh);
        let mut keys: Vec<u32> = (next_fresh..next_fresh + cold).map(|i| i as u32).collect();
        next_fresh += cold;
        // The warm part: a uniform sample of what was used before.
        let mut pool = used.clone();
        rng.shuffle(&mut pool);
        keys.extend(pool.into_iter().take(k - cold));
        used.extend(next_fresh as u32 - cold as u32..next_fresh as u32);
        rng.shuffle(&mut keys);
        stages.push(StageKeys { ranked: keys, cold });
    }
    (warm, stages)
}

/// The largest per-stage keyspace `k` such that the warm set and every
/// stage's cold serials fit in `n` entries.
pub fn fitting_keyspace(n: usize, fractions: &[f64]) -> usize {
    let need: f64 = 1.0 + fractions.iter().sum::<f64>();
    ((n as f64 / need).floor() as usize).max(1)
}

/// Parses `1/16,1/8,0.25,1` into fractions in (0, 1].
pub fn parse_fractions(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v = match part.split_once('/') {
            Some((a, b)) => {
                let a: f64 = a.trim().parse().map_err(|_| format!("bad fraction {part:?}"))?;
                let b: f64 = b.trim().parse().map_err(|_| format!("bad fraction {part:?}"))?;
                if b == 0.0 {
                    return Err(format!("bad fraction {part:?}: division by zero"));
                }
                a / b
            }
            None => part.parse().map_err(|_| format!("bad fraction {part:?}"))?,
        };
        if !(v > 0.0 && v <= 1.0) {
            return Err(format!("fraction {part:?} is not in (0, 1]"));
        }
        out.push((part.to_string(), v));
    }
    if out.is_empty() {
        return Err("no fractions given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_and_reject_nonsense() {
        let f = parse_fractions("1/16, 1/8,0.25,1").unwrap();
        assert_eq!(f.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0.0625, 0.125, 0.25, 1.0]);
        assert!(parse_fractions("2").is_err());
        assert!(parse_fractions("1/0").is_err());
        assert!(parse_fractions("0").is_err());
        assert!(parse_fractions("x").is_err());
        assert!(parse_fractions("").is_err());
    }

    #[test]
    fn stages_get_fresh_cold_serials_and_warm_ones_from_before() {
        let fr = [0.0625, 0.125, 0.25, 0.5, 1.0];
        let k = fitting_keyspace(10_000, &fr);
        let mut rng = Rng::new(7);
        let (warm, stages) = plan_stages(10_000, k, &fr, &mut rng);
        assert_eq!(warm.len(), k);
        let mut seen: std::collections::HashSet<u32> = warm.iter().copied().collect();
        for (s, f) in stages.iter().zip(fr) {
            assert_eq!(s.ranked.len(), k);
            assert_eq!(s.cold, (f * k as f64).round() as usize);
            let fresh = s.ranked.iter().filter(|i| !seen.contains(i)).count();
            assert_eq!(fresh, s.cold, "cold serials are exactly those never used");
            let distinct: std::collections::HashSet<_> = s.ranked.iter().collect();
            assert_eq!(distinct.len(), k, "no serial twice in a stage");
            seen.extend(s.ranked.iter().copied());
        }
    }

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        // P(rank 0) = 1/H(1000) ≈ 0.134.
        assert!((12_000..15_000).contains(&counts[0]), "{}", counts[0]);
        let u = Zipf::new(10, 0.0);
        let mut c = [0u32; 10];
        for _ in 0..10_000 {
            c[u.sample(&mut rng)] += 1;
        }
        assert!(c.iter().all(|x| (800..1200).contains(x)), "{c:?}");
    }
}
