//! Reading what an operator gives: revocation reasons by name and times in
//! the forms the CLI, the admin form and serial lists accept.

use crate::ocsp::RevocationReason;

/// An RFC 5280 reason by its OpenSSL name (`keyCompromise`, …), any case.
pub fn parse_reason(name: &str) -> Result<RevocationReason, String> {
    RevocationReason::from_openssl_name(name)
        .ok_or_else(|| format!("unknown reason {name:?} ({})", RevocationReason::names()))
}

/// Whether a revocation may be recorded: never at a time later than `now`
/// (a response must not state a revocation in the future), and under the
/// Baseline Requirements (`baseline`) only for a reason the BR allows for
/// subscriber certificates.
pub fn check_revocation(baseline: bool, reason: RevocationReason, at: u64, now: u64) -> Result<(), String> {
    if at > now {
        return Err(format!("revocation time {at} is in the future (now is {now})"));
    }
    if baseline && !reason.br_subscriber_allowed() {
        let allowed: Vec<&str> = RevocationReason::ALL
            .iter()
            .filter(|(r, _)| r.br_subscriber_allowed())
            .map(|(_, n)| *n)
            .collect();
        return Err(format!(
            "reason {} is not one the Baseline Requirements allow for subscriber certificates (response.profile = \"baseline\"); use {}",
            reason.openssl_name(),
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// A revocation time: RFC 3339 UTC (`2026-11-01T12:00:00Z`), OpenSSL
/// (`261101120000Z`) or Unix seconds.
pub fn parse_time(t: &str) -> Option<u64> {
    let t = t.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Some(s) = crate::status::index_txt::parse_openssl_time(t) {
        return Some(s);
    }
    let b = t.strip_suffix('Z')?;
    let (date, time) = b.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || h.len() != 3 {
        return None;
    }
    let dt = der::DateTime::new(
        d[0].parse().ok()?,
        d[1].parse().ok()?,
        d[2].parse().ok()?,
        h[0].parse().ok()?,
        h[1].parse().ok()?,
        h[2].parse().ok()?,
    )
    .ok()?;
    Some(dt.unix_duration().as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        assert_eq!(parse_time("2026-11-01T12:00:00Z"), Some(1_793_534_400));
        assert_eq!(parse_time("261101120000Z"), Some(1_793_534_400));
        assert_eq!(parse_time(" 1793534400 "), Some(1_793_534_400));
        for bad in ["", "yesterday", "2026-11-01", "2026-13-01T00:00:00Z", "99999999999999999999999"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn revocations_in_the_future_or_for_reasons_the_br_forbids_are_refused() {
        use RevocationReason::*;
        assert_eq!(check_revocation(true, KeyCompromise, 100, 100), Ok(()));
        assert!(check_revocation(true, KeyCompromise, 101, 100).unwrap_err().contains("in the future"));
        assert!(check_revocation(false, KeyCompromise, 101, 100).is_err(), "whatever the profile");
        for r in [CaCompromise, CertificateHold, RemoveFromCrl, AaCompromise] {
            let e = check_revocation(true, r, 1, 100).unwrap_err();
            assert!(e.contains(r.openssl_name()) && e.contains("superseded"), "{e}");
            assert_eq!(check_revocation(false, r, 1, 100), Ok(()));
        }
    }

    #[test]
    fn reasons_by_name() {
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(RevocationReason::KeyCompromise));
        assert!(parse_reason("whim").unwrap_err().contains("unknown reason \"whim\""));
    }
}
