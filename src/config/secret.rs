//! Secrets in the config and what may be printed of them: URLs with their
//! passwords redacted, the admin bearer token kept as a digest only.

use std::net::IpAddr;
use std::path::Path;

/// Replaces the password of every URL in `text` (`scheme://user:password@host`)
/// with `***`: for MySQL and Redis URLs and any error text that might quote
/// one. The user info ends at the authority's last `@` (a password may hold
/// an unescaped `@`); the authority ends at `/`, `?`, `#` or whitespace.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The admin bearer token, kept as its SHA-256 only: it cannot be printed
/// (`Debug` shows nothing of it) and is compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// A token from its text.
    pub fn new(secret: &[u8]) -> AdminToken {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret).as_ref());
        AdminToken { digest }
    }

    /// Reads `admin.token_file`: the token is the file's content with
    /// surrounding whitespace trimmed, non-empty, printable ASCII without
    /// spaces (RFC 6750 `b64token`). Also returns a warning when the file is
    /// readable by group or others. Errors never quote the file's content.
    pub fn read(path: &Path) -> Result<(AdminToken, Option<String>), String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = text.trim_ascii();
        if token.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        if !token.iter().all(u8::is_ascii_graphic) {
            return Err(format!(
                "{}: the token must be one line of printable ASCII without spaces",
                path.display()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        let warning = (mode & 0o077 != 0).then(|| {
            format!("{} is readable by group or others (mode {mode:03o}); chmod 600 it", path.display())
        });
        Ok((AdminToken::new(token), warning))
    }

    /// Whether an `Authorization` value is `Bearer <this token>` (scheme in
    /// any case, RFC 9110 §11.1).
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        let value = authorization.trim_ascii();
        let Some(space) = value.iter().position(|b| *b == b' ') else { return false };
        let (scheme, token) = value.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = AdminToken::new(token.trim_ascii());
        aws_lc_rs::constant_time::verify_slices_are_equal(&presented.digest, &self.digest).is_ok()
    }
}

/// Loopback, including IPv4-mapped IPv6 (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}
