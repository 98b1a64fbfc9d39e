//! Who may call what: loopback reads open on a loopback listener, the bearer
//! token for everything else (see [`super`]).

use std::net::IpAddr;

use crate::config::{is_loopback, AdminToken};

/// Who may call what (see the module docs).
#[derive(Clone, Debug)]
pub struct Access {
    /// The listener is on a loopback address.
    pub loopback_listener: bool,
    /// From `admin.token_file`.
    pub token: Option<AdminToken>,
}

/// What [`Access::verdict`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// 401: a valid bearer token is needed.
    Unauthorized,
    /// 403: mutating calls are off (no `admin.token_file`).
    Disabled,
}

impl Access {
    /// The verdict for a call (`mutating`: reload, revoke) from `peer` with
    /// these `Authorization` values (more than one is refused).
    pub fn verdict(&self, mutating: bool, peer: IpAddr, authorization: &[&[u8]]) -> Verdict {
        let authed = match (&self.token, authorization) {
            (Some(t), [one]) => t.accepts(one),
            _ => false,
        };
        let open_reads = self.loopback_listener && is_loopback(peer);
        if authed {
            Verdict::Allow
        } else if !open_reads {
            // Remote callers learn nothing, not even that calls are disabled.
            Verdict::Unauthorized
        } else if !mutating {
            Verdict::Allow
        } else if self.token.is_none() {
            Verdict::Disabled
        } else {
            Verdict::Unauthorized
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const V4_REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn access(loopback_listener: bool, token: Option<&str>) -> Access {
        Access { loopback_listener, token: token.map(|t| AdminToken::new(t.as_bytes())) }
    }

    #[test]
    fn peers_are_loopback_only_when_they_are() {
        assert!(is_loopback(V4_LOOP));
        assert!(is_loopback("127.9.9.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        for remote in ["192.0.2.7", "10.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_loopback(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn the_access_rules() {
        use Verdict::*;
        let good: &[&[u8]] = &[b"Bearer s3cret"];
        let wrong: &[&[u8]] = &[b"Bearer s3cre"];
        let none: &[&[u8]] = &[];
        // (listener on loopback, token configured, mutating, peer, authorization) → verdict
        type Row<'a> = (bool, Option<&'a str>, bool, IpAddr, &'a [&'a [u8]], Verdict);
        let table: &[Row<'_>] = &[
            // Reads on loopback are open; mutations need the token.
            (true, None, false, V4_LOOP, none, Allow),
            (true, None, true, V4_LOOP, none, Disabled),
            (true, None, true, V4_LOOP, good, Disabled),
            (true, Some("s3cret"), false, V4_LOOP, none, Allow),
            (true, Some("s3cret"), true, V4_LOOP, none, Unauthorized),
            (true, Some("s3cret"), true, V4_LOOP, wrong, Unauthorized),
            (true, Some("s3cret"), true, V4_LOOP, good, Allow),
            // A remote peer needs the token for everything, and learns nothing without it.
            (true, Some("s3cret"), false, V4_REMOTE, none, Unauthorized),
            (true, Some("s3cret"), false, V4_REMOTE, wrong, Unauthorized),
            (true, Some("s3cret"), false, V4_REMOTE, good, Allow),
            (true, None, true, V4_REMOTE, none, Unauthorized),
            (true, None, false, V4_REMOTE, good, Unauthorized),
            // A listener off loopback (0.0.0.0) needs it even from loopback peers.
            (false, Some("s3cret"), false, V4_LOOP, none, Unauthorized),
            (false, Some("s3cret"), false, V4_LOOP, good, Allow),
            (false, Some("s3cret"), true, V4_REMOTE, good, Allow),
        ];
        for (i, (lo, token, mutating, peer, auth, want)) in table.iter().enumerate() {
            assert_eq!(access(*lo, *token).verdict(*mutating, *peer, auth), *want, "row {i}");
        }
        // Two Authorization fields are refused even if one is right.
        let two: &[&[u8]] = &[b"Bearer s3cret", b"Bearer s3cret"];
        assert_eq!(access(true, Some("s3cret")).verdict(true, V4_LOOP, two), Unauthorized);
    }

    #[test]
    fn bearer_values() {
        let t = AdminToken::new(b"s3cret");
        for ok in [&b"Bearer s3cret"[..], b"bearer s3cret", b"BEARER   s3cret  ", b" Bearer s3cret"] {
            assert!(t.accepts(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer",
            b"",
            b"Bearers3cret",
        ] {
            assert!(!t.accepts(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        std::fs::write(&p, "  tok-123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (t, warning) = AdminToken::read(&p).unwrap();
        assert!(t.accepts(b"Bearer tok-123"), "trimmed");
        assert_eq!(warning, None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = AdminToken::read(&p).unwrap().1.unwrap();
        assert!(warning.contains("mode 644") && warning.contains("chmod 600"), "{warning}");
        for (content, why) in [("\n \n", "is empty"), ("two words", "printable ASCII without spaces")] {
            std::fs::write(&p, content).unwrap();
            let e = AdminToken::read(&p).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("words"), "never quotes the content: {e}");
        }
        assert!(AdminToken::read(&d.path().join("missing")).unwrap_err().contains("missing"));
        assert!(AdminToken::read(d.path()).unwrap_err().contains("is not a file"));
    }
}
