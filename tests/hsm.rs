//! PKCS#11 (SoftHSM2), each behaviour once: answers signed in a token and
//! verified by OpenSSL (EC, RSA, a delegated responder key) and clear
//! start-up errors; sessions that heal after faults and are not leaked by
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
#[path = "hsm/stuck_signer.rs"]
mod stuck_signer;
#[path = "hsm/under_load.rs"]
mod under_load;
