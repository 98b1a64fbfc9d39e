//! Cache tags: the names a CDN files each response under, so one purge finds
//! every copy of a certificate's answers (GET, percent-encoded GET, POST, each
//! hash algorithm, multi-CertID lists naming it) and a staged drop can take a
//! share of the cache at a time.
//!
//! | tag | names |
//! |---|---|
//! | `{prefix}c-{issuer}-{serial}` | one certificate (serial in lower-case hex, no leading zeros) |
//! | `{prefix}i-{issuer}` | everything of one issuer |
//! | `{prefix}b-{xx}` | a bucket: the serial's last byte, 256 groups across issuers |
//!
//! The header line is rendered once per signed response and kept with it,
//! so a hit writes it as bytes.

use crate::config::CdnConfig;

/// How this node writes tags (from `[cdn]`).
#[derive(Debug, Clone)]
pub struct TagFormat {
    header: String,
    separator: String,
    prefix: String,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl TagFormat {
    /// From the config.
    pub fn new(c: &CdnConfig) -> TagFormat {
        TagFormat {
            header: c.tag_header.clone(),
            separator: c.tag_separator.clone(),
            prefix: c.tag_prefix.clone(),
        }
    }

    /// The tag of one certificate, by its serial's magnitude (big-endian,
    /// no leading zero byte).
    pub fn cert(&self, issuer: &str, serial: &[u8]) -> String {
        let mut t = String::with_capacity(self.prefix.len() + issuer.len() + 3 + serial.len() * 2);
        t.push_str(&self.prefix);
        t.push_str("c-");
        t.push_str(issuer);
        t.push('-');
        push_hex(&mut t, serial);
        t
    }

    /// The tag of every response of one issuer.
    pub fn issuer(&self, issuer: &str) -> String {
        format!("{}i-{issuer}", self.prefix)
    }

    /// The tag of bucket `b` (a serial's last byte).
    pub fn bucket(&self, b: u8) -> String {
        format!("{}b-{b:02x}", self.prefix)
    }

    /// The bucket of a serial.
    pub fn bucket_of(serial: &[u8]) -> u8 {
        serial.last().copied().unwrap_or(0)
    }

    /// The tags joined for a header or a purge.
    pub fn join(&self, tags: &[String]) -> String {
        tags.join(&self.separator)
    }

    /// The header line (ending in CRLF) for a response answering `serials`
    /// of `issuer`: each certificate's tag, the issuer's, and each bucket.
    pub fn header_line<'a>(&self, issuer: &str, serials: impl Iterator<Item = &'a [u8]> + Clone) -> String {
        let mut tags: Vec<String> = serials.clone().map(|s| self.cert(issuer, s)).collect();
        tags.push(self.issuer(issuer));
        let mut buckets: Vec<u8> = serials.map(Self::bucket_of).collect();
        buckets.sort_unstable();
        buckets.dedup();
        tags.extend(buckets.into_iter().map(|b| self.bucket(b)));
        format!("{}: {}\r\n", self.header, self.join(&tags))
    }
}

fn push_hex(t: &mut String, bytes: &[u8]) {
    let mut lead = true;
    for b in bytes {
        for nibble in [b >> 4, b & 15] {
            if lead && nibble == 0 {
                continue;
            }
            lead = false;
            t.push(HEX[nibble as usize] as char);
        }
    }
    if lead {
        t.push('0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_header() {
        let f = TagFormat::new(&CdnConfig::default());
        assert_eq!(f.cert("ca-1", &[0x0a, 0x01]), "ocsp-c-ca-1-a01");
        assert_eq!(f.cert("ca-1", &[]), "ocsp-c-ca-1-0");
        assert_eq!(f.issuer("ca-1"), "ocsp-i-ca-1");
        assert_eq!(f.bucket(0x0f), "ocsp-b-0f");
        let serials: [&[u8]; 3] = [&[1, 0xff], &[2, 0xff], &[3]];
        assert_eq!(
            f.header_line("ca", serials.iter().copied()),
            "xkey: ocsp-c-ca-1ff ocsp-c-ca-2ff ocsp-c-ca-3 ocsp-i-ca ocsp-b-03 ocsp-b-ff\r\n"
        );
        let cf = TagFormat::new(&CdnConfig {
            tag_header: "Cache-Tag".into(),
            tag_separator: ",".into(),
            tag_prefix: String::new(),
            ..CdnConfig::default()
        });
        assert_eq!(cf.header_line("ca", [&[7u8][..]].into_iter()), "Cache-Tag: c-ca-7,i-ca,b-07\r\n");
    }
}
