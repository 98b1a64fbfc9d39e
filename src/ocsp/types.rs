//! Typed pieces of an OCSP `CertID` that only the request parser constructs.
//!
//! RFC 6960 §4.1.1:
//!
//! ```text
//! CertID ::= SEQUENCE {
//!     hashAlgorithm       AlgorithmIdentifier,
//!     issuerNameHash      OCTET STRING, -- Hash of issuer's DN
//!     issuerKeyHash       OCTET STRING, -- Hash of issuer's public key
//!     serialNumber        CertificateSerialNumber }
//! ```
//!
//! The responder never keeps the client's raw CertID: it keeps which issuer it
//! names, which hash algorithm the client used and the serial, and re-encodes the
//! CertID from the issuer's precomputed hashes. That makes cached responses
//! shareable between clients and keeps the cache key small.

use std::fmt;

use const_oid::ObjectIdentifier;

/// Hash algorithm of a `CertID` (RFC 6960 §4.1.1 `hashAlgorithm`).
///
/// SHA-1 is what most clients still send (RFC 5019 §2.1.1 mandates it); the SHA-2
/// family is accepted too. The response echoes the algorithm the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    /// id-sha1, 1.3.14.3.2.26
    Sha1,
    /// id-sha256, 2.16.840.1.101.3.4.2.1
    Sha256,
    /// id-sha384, 2.16.840.1.101.3.4.2.2
    Sha384,
    /// id-sha512, 2.16.840.1.101.3.4.2.3
    Sha512,
}

impl HashAlg {
    /// Every algorithm the responder accepts, in the order issuer hashes are kept.
    pub const ALL: [HashAlg; 4] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

    /// The algorithm's object identifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlg::Sha1 => const_oid::db::rfc5912::ID_SHA_1,
            HashAlg::Sha256 => const_oid::db::rfc5912::ID_SHA_256,
            HashAlg::Sha384 => const_oid::db::rfc5912::ID_SHA_384,
            HashAlg::Sha512 => const_oid::db::rfc5912::ID_SHA_512,
        }
    }

    /// Recognises an algorithm by OID; `None` for anything else (e.g. MD5).
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|a| a.oid() == *oid)
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Position in [`HashAlg::ALL`], used to index per-algorithm tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Hashes `data` with this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::digest;
        let alg = match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    /// Name as used in logs and config.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }
}

/// Largest serial the responder answers for, in DER INTEGER content octets.
///
/// RFC 5280 §4.1.2.2 caps serials at 20 octets; a client that sends more asks
/// about a certificate no conforming CA issued, and gets `unauthorized`.
pub const MAX_SERIAL_LEN: usize = 20;

/// A certificate serial number: the DER INTEGER content octets, minimal and
/// positive (a leading `0x00` is kept where the high bit is set, as in the
/// certificate itself), at most [`MAX_SERIAL_LEN`] octets.
///
/// Stored inline so a lookup never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial {
    len: u8,
    bytes: [u8; MAX_SERIAL_LEN],
}

/// Why a byte string is not a serial this responder can have issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// Zero octets.
    #[error("empty serial")]
    Empty,
    /// More than [`MAX_SERIAL_LEN`] octets.
    #[error("serial longer than 20 octets")]
    TooLong,
    /// High bit set without a leading zero octet: a negative INTEGER.
    #[error("negative serial")]
    Negative,
    /// A redundant leading zero octet (not minimal DER).
    #[error("serial not minimally encoded")]
    NotMinimal,
    /// Not hexadecimal (when parsed from text).
    #[error("serial is not hexadecimal")]
    NotHex,
}

impl Serial {
    /// Builds a serial from DER INTEGER content octets, checking it is minimal,
    /// positive and short enough.
    pub fn from_der_content(content: &[u8]) -> Result<Serial, SerialError> {
        match content {
            [] => return Err(SerialError::Empty),
            [first, ..] if *first & 0x80 != 0 => return Err(SerialError::Negative),
            [0, second, ..] if *second & 0x80 == 0 => return Err(SerialError::NotMinimal),
            _ => {}
        }
        if content.len() > MAX_SERIAL_LEN {
            return Err(SerialError::TooLong);
        }
        let mut bytes = [0u8; MAX_SERIAL_LEN];
        bytes[..content.len()].copy_from_slice(content);
        Ok(Serial { len: content.len() as u8, bytes })
    }

    /// Builds a serial from an unsigned big-endian magnitude (as written in hex in
    /// `index.txt` or on a command line): leading zeros are dropped and a zero
    /// octet is prepended where the high bit is set.
    pub fn from_magnitude(mag: &[u8]) -> Result<Serial, SerialError> {
        let start = mag.iter().position(|b| *b != 0).unwrap_or(mag.len().saturating_sub(1));
        let mag = &mag[start.min(mag.len())..];
        if mag.is_empty() {
            return Err(SerialError::Empty);
        }
        if mag[0] & 0x80 != 0 {
            let mut v = Vec::with_capacity(mag.len() + 1);
            v.push(0);
            v.extend_from_slice(mag);
            Serial::from_der_content(&v)
        } else {
            Serial::from_der_content(mag)
        }
    }

    /// Parses hexadecimal text (optionally `0x`-prefixed, any case).
    pub fn from_hex(text: &str) -> Result<Serial, SerialError> {
        let t = text.trim();
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SerialError::NotHex);
        }
        let padded;
        let t = if t.len() % 2 == 1 {
            padded = format!("0{t}");
            padded.as_str()
        } else {
            t
        };
        let mut mag = Vec::with_capacity(t.len() / 2);
        for pair in t.as_bytes().chunks(2) {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            mag.push(hi << 4 | lo);
        }
        Serial::from_magnitude(&mag)
    }

    /// DER INTEGER content octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The magnitude without the sign octet, as written in `index.txt`.
    pub fn magnitude(&self) -> &[u8] {
        match self.as_bytes() {
            [0, rest @ ..] if !rest.is_empty() => rest,
            all => all,
        }
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl fmt::Display for Serial {
    /// Upper-case hex of the magnitude, as OpenSSL prints serials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.magnitude() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// Index of an issuer in the responder's issuer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerId(pub u16);

/// How the client encoded the `parameters` of its CertID's hash
/// `AlgorithmIdentifier`: both forms are in use (OpenSSL sends NULL; RFC 5754
/// says SHA-2 parameters are absent, and Bouncy Castle builds them so), and a
/// client that compares CertIDs by equality (Bouncy Castle's
/// `CertificateID.equals`) finds only the form it sent. The response echoes
/// it, so it is part of every cache key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashParams {
    /// `parameters` is an explicit NULL (`05 00`).
    #[default]
    Null,
    /// `parameters` is absent.
    Absent,
}

impl HashParams {
    /// Both forms, in the order keys of one certificate are enumerated.
    pub const ALL: [HashParams; 2] = [HashParams::Null, HashParams::Absent];
}

/// A CertID the responder recognises: the issuer it names (matched by both name
/// and key hash), the hash algorithm the client used (and how it encoded
/// the algorithm's parameters), and the serial.
///
/// Ordered by certificate first (issuer, serial), so a sorted multi-CertID
/// list is one canonical form whatever order a client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertId {
    /// Which configured issuer the CertID's hashes name.
    pub issuer: IssuerId,
    /// The certificate serial.
    pub serial: Serial,
    /// The client's hash algorithm, echoed in the response.
    pub alg: HashAlg,
    /// The client's encoding of the algorithm's parameters, echoed too.
    pub params: HashParams,
}

impl CertId {
    /// A CertID with NULL hash parameters (what OpenSSL sends).
    pub fn new(issuer: IssuerId, alg: HashAlg, serial: Serial) -> CertId {
        CertId { issuer, serial, alg, params: HashParams::Null }
    }

    /// Every form a CertID of this certificate can take (each hash
    /// algorithm, each parameters encoding): what a change of it must reach.
    pub fn forms(issuer: IssuerId, serial: Serial) -> impl Iterator<Item = CertId> {
        HashAlg::ALL.into_iter().flat_map(move |alg| {
            HashParams::ALL.into_iter().map(move |params| CertId { issuer, serial, alg, params })
        })
    }
}

/// Revocation reason (RFC 5280 §5.3.1 `CRLReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RevocationReason {
    /// unspecified (0): omitted from responses, as RFC 5280 recommends.
    Unspecified = 0,
    /// keyCompromise (1)
    KeyCompromise = 1,
    /// cACompromise (2)
    CaCompromise = 2,
    /// affiliationChanged (3)
    AffiliationChanged = 3,
    /// superseded (4)
    Superseded = 4,
    /// cessationOfOperation (5)
    CessationOfOperation = 5,
    /// certificateHold (6)
    CertificateHold = 6,
    /// removeFromCRL (8)
    RemoveFromCrl = 8,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn = 9,
    /// aACompromise (10)
    AaCompromise = 10,
}

impl RevocationReason {
    /// Every reason, with its RFC 5280 code and the name OpenSSL writes into
    /// `index.txt`: the one list the parsers, the CLI and the database use.
    pub const ALL: [(RevocationReason, &'static str); 10] = {
        use RevocationReason::*;
        [
            (Unspecified, "unspecified"),
            (KeyCompromise, "keyCompromise"),
            (CaCompromise, "CACompromise"),
            (AffiliationChanged, "affiliationChanged"),
            (Superseded, "superseded"),
            (CessationOfOperation, "cessationOfOperation"),
            (CertificateHold, "certificateHold"),
            (RemoveFromCrl, "removeFromCRL"),
            (PrivilegeWithdrawn, "privilegeWithdrawn"),
            (AaCompromise, "AACompromise"),
        ]
    };

    /// Parses the names OpenSSL writes into `index.txt` (case-insensitive).
    pub fn from_openssl_name(name: &str) -> Option<RevocationReason> {
        Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(r, _)| *r)
    }

    /// The name OpenSSL uses.
    pub fn openssl_name(self) -> &'static str {
        Self::ALL.iter().find(|(r, _)| *r == self).map(|(_, n)| *n).unwrap_or("unspecified")
    }

    /// The RFC 5280 `CRLReason` code (what the database's `reason` column holds).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// RFC 5280 `CRLReason` code → reason; `None` for 7 (unused) and codes
    /// above 10.
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        Self::ALL.iter().find(|(r, _)| *r as u8 == code).map(|(r, _)| *r)
    }

    /// Whether the Baseline Requirements (§7.2.2) allow this reason for a
    /// subscriber certificate: unspecified (left out of responses),
    /// keyCompromise, affiliationChanged, superseded, cessationOfOperation
    /// and privilegeWithdrawn. cACompromise and aACompromise are for CA and
    /// attribute-authority certificates; certificateHold and removeFromCRL
    /// are forbidden.
    pub fn br_subscriber_allowed(self) -> bool {
        use RevocationReason::*;
        matches!(
            self,
            Unspecified
                | KeyCompromise
                | AffiliationChanged
                | Superseded
                | CessationOfOperation
                | PrivilegeWithdrawn
        )
    }

    /// The accepted names, comma separated, for error messages.
    pub fn names() -> String {
        Self::ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// Status of one certificate: the OCSP `CertStatus` choice less `unknown`,
/// which the responder decides from where a serial is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked at `at` (Unix seconds) for `reason`.
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
        /// RFC 5280 reason; `Unspecified` is left out of responses.
        reason: RevocationReason,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_high_bit_gets_sign_octet() {
        let s = Serial::from_hex("F1E2D3C4B5A6978877").unwrap();
        assert_eq!(s.as_bytes()[0], 0);
        assert_eq!(s.as_bytes().len(), 10);
        assert_eq!(s.to_string(), "F1E2D3C4B5A6978877");
        assert_eq!(s.magnitude().len(), 9);
    }

    #[test]
    fn serial_rejects_bad_der() {
        assert_eq!(Serial::from_der_content(&[]), Err(SerialError::Empty));
        assert_eq!(Serial::from_der_content(&[0x80]), Err(SerialError::Negative));
        assert_eq!(Serial::from_der_content(&[0, 1]), Err(SerialError::NotMinimal));
        assert_eq!(Serial::from_der_content(&[1; 21]), Err(SerialError::TooLong));
        assert!(Serial::from_der_content(&[0]).is_ok());
        assert!(Serial::from_der_content(&[0, 0x80]).is_ok());
    }

    #[test]
    fn serial_hex_forms() {
        assert_eq!(Serial::from_hex("0x0a").unwrap(), Serial::from_hex("A").unwrap());
        assert_eq!(Serial::from_hex("000A").unwrap().as_bytes(), &[0x0a]);
        assert_eq!(Serial::from_hex("zz"), Err(SerialError::NotHex));
        assert_eq!(Serial::from_hex("00").unwrap().as_bytes(), &[0]);
    }

    #[test]
    fn reasons_round_trip() {
        for (r, name) in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(RevocationReason::from_openssl_name(name), Some(r));
            assert_eq!(RevocationReason::from_openssl_name(&name.to_uppercase()), Some(r));
            assert_eq!(r.openssl_name(), name);
        }
        assert_eq!(RevocationReason::from_code(7), None);
        // Every variant is in ALL: this match stops compiling when one is
        // added, and the count then says ALL needs it too.
        fn listed(r: RevocationReason) -> bool {
            use RevocationReason::*;
            match r {
                Unspecified | KeyCompromise | CaCompromise | AffiliationChanged | Superseded
                | CessationOfOperation | CertificateHold | RemoveFromCrl | PrivilegeWithdrawn
                | AaCompromise => RevocationReason::ALL.iter().any(|(x, _)| *x == r),
            }
        }
        assert!(RevocationReason::ALL.iter().all(|(r, _)| listed(*r)));
        assert_eq!(RevocationReason::ALL.len(), 10);
        assert_eq!(RevocationReason::from_code(11), None);
    }

    #[test]
    fn hash_alg_oid_round_trip() {
        for a in HashAlg::ALL {
            assert_eq!(HashAlg::from_oid(&a.oid()), Some(a));
            assert_eq!(a.digest(b"x").len(), a.output_len());
        }
    }
}
