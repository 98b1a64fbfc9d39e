//! Keys in a PKCS#11 HSM (cryptoki): ECDSA P-256/P-384 and RSA.
//!
//! - **One `C_Initialize` per process and module**: contexts are kept in a
//!   process-wide registry keyed by module path, so several issuers on one HSM
//!   share it.
//! - **One session per signer thread**: PKCS#11 sessions are `Send` but not
//!   `Sync`. Each signer thread lazily opens (and logs in) its own session per
//!   key and keeps it in thread-local storage, so signing takes no lock.
//! - **Faults heal**: when a signature fails because the session is gone
//!   (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`), the token logged out
//!   (`CKR_USER_NOT_LOGGED_IN`, or the private key's handle became invalid:
//!   `CKR_OBJECT_HANDLE_INVALID`, `CKR_KEY_HANDLE_INVALID`) or the device hiccupped (`CKR_DEVICE_REMOVED`,
//!   `CKR_DEVICE_ERROR`, `CKR_TOKEN_NOT_PRESENT`), the thread drops its session,
//!   opens a new one, logs in and retries the job once. A failure after that is
//!   returned to the shard, which answers `tryLater`: a dead HSM never takes a
//!   shard down.
//! - **Mechanisms**: `CKM_ECDSA` over a SHA-256 (P-256) or SHA-384 (P-384)
//!   digest computed here, with the raw `r‖s` turned into a DER
//!   `ECDSA-Sig-Value`; `CKM_SHA256_RSA_PKCS` for RSA.
//! - **The PIN** comes from an environment variable or a file, is held as a
//!   secret (zeroised on drop, redacted in `Debug`) and is never logged. A
//!   variable is read once, then overwritten and removed from the process
//!   environment, so no child process, core dump or `/proc/<pid>/environ`
//!   reader finds it later; reloads take the PIN kept from that read.
//!
//! At start-up the key's public half is read from the token (the public-key
//! object with the same label or id), so the issuer set-up can refuse a key that
//! does not match its certificate.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{SignError, Signer, SignerCounters};
use crate::asn1::der_tlv;
pub use crate::config::Pkcs11Config;

/// DER of the curve OIDs in `CKA_EC_PARAMS`.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ALG_ECDSA_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ALG_ECDSA_SHA384: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ALG_RSA_SHA256: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];

/// Why a PKCS#11 key could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// Config is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The module failed.
    #[error("{context}: {source}")]
    Module {
        /// What we were doing.
        context: String,
        /// The PKCS#11 error.
        source: P11Error,
    },
    /// Token or key not found, or of an unsupported kind.
    #[error("{0}")]
    NotFound(String),
}

fn module_err(context: impl Into<String>) -> impl FnOnce(P11Error) -> Pkcs11Error {
    let context = context.into();
    move |source| Pkcs11Error::Module { context, source }
}

/// Process-wide contexts, one per module path (one `C_Initialize` each).
fn context_for(module: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let map = CONTEXTS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().map_err(|_| Pkcs11Error::Config("PKCS#11 registry poisoned".into()))?;
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let ctx = Pkcs11::new(module).map_err(module_err(format!("loading {}", module.display())))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(module_err(format!("C_Initialize of {}", module.display())))?;
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    Rsa,
}

/// A key in a PKCS#11 token.
pub struct Pkcs11Signer {
    /// Distinguishes this key's sessions in each thread's session table.
    id: u64,
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    /// Template that finds the private key object.
    private_template: Vec<Attribute>,
    kind: Kind,
    public_bits: Vec<u8>,
    description: String,
    retries: AtomicU64,
    reopens: AtomicU64,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer").field("key", &self.description).field("pin", &"<redacted>").finish()
    }
}

thread_local! {
    /// This thread's open session and private-key handle, per signer id.
    static SESSIONS: RefCell<HashMap<u64, (Session, ObjectHandle)>> = RefCell::new(HashMap::new());
    /// The [`RETIRED_COUNT`] this thread last swept its sessions at.
    static SWEPT_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Ids of signers dropped (a reload replaced them). Sessions live in the
/// signer threads' thread-locals, so only those threads can close them: each
/// sweeps its map the next time it signs after this list grew. Without it
/// every reload would leave one logged-in session per signer thread open on
/// the HSM, and HSMs cap sessions.
static RETIRED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static RETIRED_COUNT: AtomicU64 = AtomicU64::new(0);

impl Drop for Pkcs11Signer {
    fn drop(&mut self) {
        if let Ok(mut r) = RETIRED.lock() {
            r.push(self.id);
            RETIRED_COUNT.store(r.len() as u64, Ordering::Release);
        }
    }
}

/// Closes this thread's sessions of retired signers (dropping a `Session`
/// calls C_CloseSession).
fn sweep_retired(sessions: &mut HashMap<u64, (Session, ObjectHandle)>) {
    let count = RETIRED_COUNT.load(Ordering::Acquire);
    if SWEPT_AT.with(|c| c.get()) == count {
        return;
    }
    if let Ok(r) = RETIRED.lock() {
        for id in r.iter() {
            sessions.remove(id);
        }
        SWEPT_AT.with(|c| c.set(r.len() as u64));
    }
}

/// PINs taken from the environment, by variable (see the module docs).
static ENV_PINS: std::sync::Mutex<Option<HashMap<String, String>>> = std::sync::Mutex::new(None);

/// The PIN in environment variable `var`: read once, then scrubbed from the
/// environment (its bytes overwritten where the process's environment block
/// holds them, which is what `/proc/<pid>/environ` shows, then the variable
/// removed) and kept here for later reads. The first read happens while the
/// node loads its issuers, before it starts any thread.
fn pin_from_env(var: &str) -> Option<String> {
    let mut pins = ENV_PINS.lock().unwrap_or_else(|p| p.into_inner());
    let pins = pins.get_or_insert_with(HashMap::new);
    if let Some(pin) = pins.get(var) {
        return Some(pin.clone());
    }
    let pin = std::env::var(var).ok()?;
    scrub_env(var);
    pins.insert(var.to_string(), pin.clone());
    Some(pin)
}

/// Overwrites the value of `var` in place and removes it from the
/// environment.
#[allow(unsafe_code)]
fn scrub_env(var: &str) {
    if let Ok(name) = std::ffi::CString::new(var) {
        // SAFETY: getenv returns NULL or a pointer to the NUL-terminated value
        // inside the environment block, valid until the variable is changed;
        // only its own bytes (strlen of them, not the NUL) are written, and
        // nothing else reads this variable (the PIN is read only here, under
        // ENV_PINS).
        unsafe {
            let value = libc::getenv(name.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, b'0', libc::strlen(value));
            }
        }
    }
    // SAFETY (edition 2024's rule, kept here): the first read happens before
    // the node starts threads; std serialises this with its own env reads.
    std::env::remove_var(var);
}

fn read_pin(cfg: &Pkcs11Config) -> Result<AuthPin, Pkcs11Error> {
    let pin = match (&cfg.pin_env, &cfg.pin_file) {
        (Some(var), None) => pin_from_env(var)
            .ok_or_else(|| Pkcs11Error::Config(format!("pin_env: environment variable {var} is not set")))?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Pkcs11Error::Config(format!("pin_file: {}: {e}", path.display())))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        _ => return Err(Pkcs11Error::Config("set exactly one of pin_env and pin_file".into())),
    };
    if pin.is_empty() {
        return Err(Pkcs11Error::Config("the PIN is empty".into()));
    }
    Ok(AuthPin::new(pin.into()))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn is_session_fault(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent,
            _
        )
    )
}

/// Minimal DER INTEGER content for an unsigned big-endian value.
fn der_uint(mag: &[u8], out: &mut Vec<u8>) {
    let start = mag.iter().position(|b| *b != 0).unwrap_or(mag.len().saturating_sub(1));
    let mag = &mag[start.min(mag.len())..];
    let mut content = Vec::with_capacity(mag.len() + 1);
    if mag.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(mag);
    der_tlv(0x02, &content, out);
}

/// `r‖s` (each half the length) → DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut ints = Vec::with_capacity(raw.len() + 8);
    der_uint(r, &mut ints);
    der_uint(s, &mut ints);
    let mut out = Vec::with_capacity(ints.len() + 3);
    der_tlv(0x30, &ints, &mut out);
    Some(out)
}

impl Pkcs11Signer {
    /// Opens the token, logs in once to find the key and read its public half.
    pub fn open(cfg: &Pkcs11Config) -> Result<Pkcs11Signer, Pkcs11Error> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let pin = read_pin(cfg)?;
        let key_attr = match (&cfg.key_label, &cfg.key_id) {
            (Some(l), None) => Attribute::Label(l.as_bytes().to_vec()),
            (None, Some(id)) => Attribute::Id(
                parse_hex(id).ok_or_else(|| Pkcs11Error::Config(format!("key_id {id:?} is not hex")))?,
            ),
            _ => return Err(Pkcs11Error::Config("set exactly one of key_label and key_id".into())),
        };
        let ctx = context_for(&cfg.module)?;
        let slots = ctx.get_slots_with_token().map_err(module_err("listing slots"))?;
        let slot = slots
            .into_iter()
            .find(|s| ctx.get_token_info(*s).map(|t| t.label().trim() == cfg.token_label).unwrap_or(false))
            .ok_or_else(|| Pkcs11Error::NotFound(format!("no token labelled {:?}", cfg.token_label)))?;
        let session = ctx.open_ro_session(slot).map_err(module_err("opening a session"))?;
        login(&session, &pin).map_err(module_err("logging in"))?;

        let private_template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY), key_attr.clone()];
        let privs = session.find_objects(&private_template).map_err(module_err("finding the private key"))?;
        if privs.len() != 1 {
            return Err(Pkcs11Error::NotFound(format!(
                "{} private keys match {key_attr:?} on token {:?} (need exactly one)",
                privs.len(),
                cfg.token_label
            )));
        }
        let pubs = session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), key_attr.clone()])
            .map_err(module_err("finding the public key"))?;
        let pub_obj = *pubs.first().ok_or_else(|| {
            Pkcs11Error::NotFound(format!(
                "no public-key object matches {key_attr:?}; import the key pair (not just the private key)"
            ))
        })?;
        let attrs = session
            .get_attributes(
                pub_obj,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(module_err("reading the public key"))?;
        let mut key_type = None;
        let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(k) => key_type = Some(k),
                Attribute::EcParams(v) => params = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                Attribute::Modulus(v) => modulus = Some(v),
                Attribute::PublicExponent(v) => exponent = Some(v),
                _ => {}
            }
        }
        let (kind, public_bits, description) = match key_type {
            Some(KeyType::EC) => {
                let params =
                    params.ok_or_else(|| Pkcs11Error::NotFound("EC key without CKA_EC_PARAMS".into()))?;
                let kind = match params.as_slice() {
                    P256_PARAMS => Kind::P256,
                    P384_PARAMS => Kind::P384,
                    _ => {
                        return Err(Pkcs11Error::NotFound("EC key on a curve other than P-256/P-384".into()))
                    }
                };
                // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
                let point =
                    point.ok_or_else(|| Pkcs11Error::NotFound("EC key without CKA_EC_POINT".into()))?;
                let bits = ec_point_bits(&point)
                    .ok_or_else(|| Pkcs11Error::NotFound("CKA_EC_POINT is not an OCTET STRING".into()))?;
                let name = if kind == Kind::P256 { "P-256" } else { "P-384" };
                (kind, bits, format!("ECDSA {name} (PKCS#11 token {:?})", cfg.token_label))
            }
            Some(KeyType::RSA) => {
                let (n, e) = modulus
                    .zip(exponent)
                    .ok_or_else(|| Pkcs11Error::NotFound("RSA key without modulus".into()))?;
                let mut ints = Vec::new();
                der_uint(&n, &mut ints);
                der_uint(&e, &mut ints);
                let mut bits = Vec::new();
                der_tlv(0x30, &ints, &mut bits);
                let size = n.iter().skip_while(|b| **b == 0).count() * 8;
                (Kind::Rsa, bits, format!("RSA-{size} (PKCS#11 token {:?})", cfg.token_label))
            }
            other => return Err(Pkcs11Error::NotFound(format!("unsupported key type {other:?}"))),
        };
        Ok(Pkcs11Signer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ctx,
            slot,
            pin,
            private_template,
            kind,
            public_bits,
            description,
            retries: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    fn open_session(&self) -> Result<(Session, ObjectHandle), P11Error> {
        let session = self.ctx.open_ro_session(self.slot)?;
        login(&session, &self.pin)?;
        let key = session
            .find_objects(&self.private_template)?
            .into_iter()
            .next()
            .ok_or(P11Error::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::FindObjects))?;
        Ok((session, key))
    }

    fn sign_once(&self, tbs: &[u8]) -> Result<Vec<u8>, P11Error> {
        SESSIONS.with(|cell| {
            let mut sessions = cell.borrow_mut();
            sweep_retired(&mut sessions);
            let (session, key) = match sessions.entry(self.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(self.open_session()?),
            };
            let key = *key;
            let result = match self.kind {
                Kind::P256 | Kind::P384 => {
                    let alg = if self.kind == Kind::P256 {
                        &aws_lc_rs::digest::SHA256
                    } else {
                        &aws_lc_rs::digest::SHA384
                    };
                    let digest = aws_lc_rs::digest::digest(alg, tbs);
                    session.sign(&Mechanism::Ecdsa, key, digest.as_ref())
                }
                Kind::Rsa => session.sign(&Mechanism::Sha256RsaPkcs, key, tbs),
            };
            if let Err(e) = &result {
                if is_session_fault(e) {
                    // Forget the broken session; the retry opens a new one.
                    sessions.remove(&self.id);
                    self.reopens.fetch_add(1, Ordering::Relaxed);
                }
            }
            result
        })
    }
}

fn login(session: &Session, pin: &AuthPin) -> Result<(), P11Error> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The uncompressed point inside `CKA_EC_POINT`, which PKCS#11 specifies as a
/// DER OCTET STRING; some modules return the bare point, so both are accepted.
fn ec_point_bits(bytes: &[u8]) -> Option<Vec<u8>> {
    use der::Decode;
    match der::asn1::OctetString::from_der(bytes) {
        Ok(o) => Some(o.as_bytes().to_vec()),
        Err(_) if matches!(bytes.first(), Some(0x04)) => Some(bytes.to_vec()),
        Err(_) => None,
    }
}

impl Signer for Pkcs11Signer {
    fn algorithm_der(&self) -> &[u8] {
        match self.kind {
            Kind::P256 => ALG_ECDSA_SHA256,
            Kind::P384 => ALG_ECDSA_SHA384,
            Kind::Rsa => ALG_RSA_SHA256,
        }
    }

    fn public_key_bits(&self) -> &[u8] {
        &self.public_bits
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        let raw = match self.sign_once(tbs) {
            Ok(sig) => sig,
            Err(e) if is_session_fault(&e) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                self.sign_once(tbs).map_err(|e| SignError::Failed(format!("PKCS#11 after reopening: {e}")))?
            }
            Err(e) => return Err(SignError::Failed(format!("PKCS#11: {e}"))),
        };
        match self.kind {
            Kind::Rsa => Ok(raw),
            _ => ecdsa_raw_to_der(&raw)
                .ok_or_else(|| SignError::Failed("HSM returned a malformed ECDSA signature".into())),
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn counters(&self) -> SignerCounters {
        SignerCounters {
            retries: self.retries.load(Ordering::Relaxed),
            session_reopens: self.reopens.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_to_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a sign octet
        raw[32] = 0x00; // s has leading zeros to strip
        raw[33] = 0x01;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x44, 0x02, 0x21, 0x00]);
        assert_eq!(der[2 + 2 + 33], 0x02);
        assert_eq!(der[2 + 2 + 33 + 1], 31);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn pin_sources() {
        let cfg = |env: Option<&str>, file: Option<PathBuf>| Pkcs11Config {
            module: "/nonexistent".into(),
            token_label: "t".into(),
            key_label: Some("k".into()),
            key_id: None,
            pin_env: env.map(str::to_string),
            pin_file: file,
        };
        assert!(read_pin(&cfg(None, None)).is_err());
        assert!(read_pin(&cfg(Some("OCSP_ORIGIN_TEST_PIN_UNSET_VAR"), None)).is_err());
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pin");
        std::fs::write(&f, "1234\n").unwrap();
        assert!(read_pin(&cfg(None, Some(f))).is_ok());
        // From the environment: read once, then gone from it, kept for reloads.
        std::env::set_var("OCSP_ORIGIN_TEST_PIN_SCRUBBED", "2468");
        assert!(read_pin(&cfg(Some("OCSP_ORIGIN_TEST_PIN_SCRUBBED"), None)).is_ok());
        assert!(std::env::var_os("OCSP_ORIGIN_TEST_PIN_SCRUBBED").is_none(), "removed from the environment");
        assert!(read_pin(&cfg(Some("OCSP_ORIGIN_TEST_PIN_SCRUBBED"), None)).is_ok(), "a reload still has it");
        assert!(format!("{:?}", cfg(None, None)).contains("pin_env"));
    }
}
