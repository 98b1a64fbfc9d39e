//! SoftHSM2: where its PKCS#11 module is, private tokens (each in its own
//! directory, under its own `SOFTHSM2_CONF`), and the one token of the
//! module loaded into the test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::ca::data;
use super::config::Pkcs11Table;
use super::schedule;
use super::server::run;

/// The SoftHSM2 PKCS#11 module, where Debian installs it.
pub fn softhsm_module() -> PathBuf {
    for p in ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("SoftHSM2 is not installed (Debian: apt-get install softhsm2); tests/run.sh installs it");
}

/// A private SoftHSM2 token in its own directory (its own SOFTHSM2_CONF).
pub struct Token {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
}

/// User PIN of test tokens.
pub const PIN: &str = "1234";

impl Token {
    /// Initialises a token labelled `label` with user PIN [`PIN`].
    pub fn new(label: &str) -> Token {
        Token::with_pin(label, PIN)
    }

    /// Initialises a token labelled `label` with user PIN `pin`.
    pub fn with_pin(label: &str, pin: &str) -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let t = Token { dir, conf, label: label.to_string(), pin: pin.to_string() };
        t.util(&["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"]);
        t
    }

    /// Runs softhsm2-util against this token's config.
    pub fn util(&self, args: &[&str]) {
        let (ok, out) = run(Command::new("softhsm2-util").args(args).env("SOFTHSM2_CONF", &self.conf));
        assert!(ok, "softhsm2-util {args:?}: {out}");
    }

    /// Imports a PKCS#8 PEM key pair under `label` / `id` (hex).
    pub fn import(&self, pkcs8_pem: &Path, label: &str, id: &str) {
        let key = pkcs8_pem.to_str().unwrap();
        self.util(&[
            "--import",
            key,
            "--token",
            &self.label,
            "--label",
            label,
            "--id",
            id,
            "--pin",
            &self.pin,
        ]);
    }

    /// An `[issuer.pkcs11]` table for key `key_label`, PIN from
    /// `OCSP_TEST_PIN` (see [`Token::env`]).
    pub fn pkcs11(&self, key_label: &str) -> Pkcs11Table {
        Pkcs11Table::new(self, key_label)
    }

    /// Environment a server using this token needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf.display().to_string()),
            ("OCSP_TEST_PIN".into(), self.pin.clone()),
        ]
    }
}

/// Calls the module's own `C_CloseAllSessions` on the slot of token `label`
/// (a token of the module loaded into this process): every session this
/// process has there is gone afterwards, as after an HSM restart.
#[allow(unsafe_code)]
pub fn close_all_sessions(label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let ctx = Pkcs11::new(softhsm_module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)); // already: fine
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == label)
        .unwrap();
    // SAFETY: dlopen of the already-loaded module returns the same instance;
    // C_CloseAllSessions takes a slot id and returns a CK_RV.
    unsafe {
        let lib = libloading::Library::new(softhsm_module()).unwrap();
        let f: libloading::Symbol<unsafe extern "C" fn(u64) -> u64> = lib.get(b"C_CloseAllSessions").unwrap();
        assert_eq!(f(slot.id()), 0, "CKR_OK");
    }
}

/// The label of the token of the PKCS#11 module loaded into this process.
const IN_PROCESS_TOKEN: &str = "in-process";
/// The variable holding its PIN.
const IN_PROCESS_PIN_ENV: &str = "OCSP_IN_PROCESS_PIN";

/// This process's token: SoftHSM2 reads `SOFTHSM2_CONF` once per process (at
/// the first `C_Initialize`, and the signer keeps one context per module), so
/// every test that loads the module into this process uses this one token,
/// made on first use, with the test CA's key imported as "issuer".
fn process_token() -> &'static Token {
    static TOKEN: OnceLock<Token> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let token = Token::new(IN_PROCESS_TOKEN);
        token.import(&data("ca.key"), "issuer", "01");
        // Process-global, before the first C_Initialize; no other test runs
        // meanwhile (the caller holds `schedule::alone`).
        std::env::set_var("SOFTHSM2_CONF", &token.conf);
        std::env::set_var(IN_PROCESS_PIN_ENV, &token.pin);
        token
    })
}

/// Runs `test` with the signer config of the test CA's key on this process's
/// token ([`process_token`]): alone (it closes sessions, logs the token out
/// or counts the sessions every test of this process opened), and on a thread
/// of its own that has ended, its thread-local PKCS#11 sessions closed, when
/// the next test gets its turn.
pub fn hsm_in_process(test: impl FnOnce(&ocsp_origin::signer::Pkcs11Config) + Send) {
    let _turn = schedule::alone();
    process_token();
    let cfg = ocsp_origin::signer::Pkcs11Config {
        module: softhsm_module(),
        token_label: IN_PROCESS_TOKEN.into(),
        key_label: Some("issuer".into()),
        key_id: None,
        pin_env: Some(IN_PROCESS_PIN_ENV.into()),
        pin_file: None,
    };
    std::thread::scope(|s| {
        if let Err(panic) = s.spawn(|| test(&cfg)).join() {
            std::panic::resume_unwind(panic);
        }
    });
}
