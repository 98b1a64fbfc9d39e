//! A reload replaces PKCS#11 signers; the sessions the old ones had open on
//! the signer threads are closed, not leaked (HSMs cap sessions, and a
//! deployment reloading hourly would otherwise run out within days).
//!
//! Its own test binary: SoftHSM2 reads SOFTHSM2_CONF once per process.

mod common;

use std::sync::mpsc;
use std::sync::Arc;

use common::*;
/// Sessions open in this process. SoftHSM2 reports no session count in its
/// token info, but hands out small sequential handles, so the open ones are
/// found by asking `C_GetSessionInfo` about each (CKR_OK = open).
#[allow(unsafe_code)]
fn sessions() -> usize {
    // SAFETY: dlopen of the already-loaded module returns the same instance;
    // C_GetSessionInfo(handle, *mut CK_SESSION_INFO) writes four CK_ULONGs.
    unsafe {
        let lib = libloading::Library::new(softhsm_module()).unwrap();
        let f: libloading::Symbol<unsafe extern "C" fn(u64, *mut [u64; 4]) -> u64> =
            lib.get(b"C_GetSessionInfo").unwrap();
        (1..=4096u64).filter(|h| f(*h, &mut [0u64; 4]) == 0).count()
    }
}
use ocsp_origin::signer::{Pkcs11Config, Pkcs11Signer, Signer};

#[test]
fn replaced_signers_sessions_are_closed_on_the_signing_thread() {
    let token = Token::new("ocsp-reload");
    token.import(&data("ca.key"), "issuer-ec", "01");
    std::env::set_var("SOFTHSM2_CONF", &token.conf);
    std::env::set_var("OCSP_RELOAD_PIN", PIN);
    let cfg = Pkcs11Config {
        module: softhsm_module(),
        token_label: "ocsp-reload".into(),
        key_label: Some("issuer-ec".into()),
        key_id: None,
        pin_env: Some("OCSP_RELOAD_PIN".into()),
        pin_file: None,
    };
    // One long-lived "signer thread", as in the pool.
    let (jobs, rx) = mpsc::channel::<(Arc<Pkcs11Signer>, mpsc::Sender<bool>)>();
    let thread = std::thread::spawn(move || {
        for (signer, done) in rx {
            done.send(signer.sign(b"tbs").is_ok()).unwrap();
        }
    });
    let sign_on_thread = |s: &Arc<Pkcs11Signer>| {
        let (tx, done) = mpsc::channel();
        jobs.send((s.clone(), tx)).unwrap();
        assert!(done.recv().unwrap(), "signed");
    };

    let mut signer = Arc::new(Pkcs11Signer::open(&cfg).unwrap());
    sign_on_thread(&signer);
    let one = sessions();
    assert!(one >= 1, "the signing thread holds a session");
    for _ in 0..5 {
        // A reload: the new generation's signer replaces the old one.
        let next = Arc::new(Pkcs11Signer::open(&cfg).unwrap());
        drop(std::mem::replace(&mut signer, next));
        sign_on_thread(&signer);
    }
    assert_eq!(sessions(), one, "old signers' sessions were closed, not kept");
    drop(jobs);
    thread.join().unwrap();
}
