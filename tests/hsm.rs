//! PKCS#11 (SoftHSM2), each behaviour once:
//!
//! - `softhsm`: answers signed in a token and verified by OpenSSL (EC, RSA,
//!   a delegated responder's key), and start-up errors that say why;
//! - `sessions`: a signer's sessions heal after faults (closed, logged out;
//!   one reopen and one retry per job) and a reload closes the replaced
//!   signers' sessions instead of leaking them;
//! - `under_load`: a slow, a stuck and a restarted HSM and sessions closed
//!   every 100 ms, under load on the real server: hits served at once (stale
//!   but valid while the re-signature waits), misses signed within
//!   `signing.timeout_ms` or `tryLater`, never an error or a wrong answer.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process (at `C_Initialize`), so
//! the tests that load the module into this process share one token
//! ([`common::hsm_in_process`]) and take turns; the others start servers,
//! each with a private token.

mod common;

#[path = "hsm/sessions.rs"]
mod sessions;
#[path = "hsm/softhsm.rs"]
mod softhsm;
#[path = "hsm/under_load.rs"]
mod under_load;
