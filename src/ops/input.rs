//! Reading what an operator gives: revocation reasons by name and times in
//! the forms the CLI, the admin form and serial lists accept.

use crate::ocsp::RevocationReason;

/// An RFC 5280 reason by its OpenSSL name (`keyCompromise`, …), any case.
pub fn parse_reason(name: &str) -> Result<RevocationReason, String> {
    RevocationReason::from_openssl_name(name)
        .ok_or_else(|| format!("unknown reason {name:?} ({})", RevocationReason::names()))
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
    fn reasons_by_name() {
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(RevocationReason::KeyCompromise));
        assert!(parse_reason("whim").unwrap_err().contains("unknown reason \"whim\""));
    }
}
