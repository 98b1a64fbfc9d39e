//! PKCS#11 sessions of a live signer, on this process's token
//! ([`hsm_in_process`]): faults injected under it heal (sessions closed
//! behind its back by C_CloseAllSessions, and the token logged out, are each
//! met by reopening the session and retrying the job once, on every signer
//! thread), and a reload that replaces signers closes the sessions the old
//! ones had open on the signer threads instead of leaking them (HSMs cap
//! sessions, and a deployment reloading hourly would otherwise run out within
//! days).

use crate::common;

use std::sync::mpsc;
use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ocsp_origin::signer::{Pkcs11Signer, SignPool, SignPoolConfig, Signer};

#[test]
fn session_faults_are_healed_by_reopen_and_one_retry() {
    hsm_in_process(|cfg| {
        let signer = Arc::new(Pkcs11Signer::open(cfg).unwrap());
        let verify = |sig: &[u8]| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, signer.public_key_bits()).verify(b"tbs", sig)
        };

        verify(&signer.sign(b"tbs").unwrap()).unwrap();
        assert_eq!(signer.counters().session_reopens, 0);

        // A second handle on the same (already initialised) module, for injecting.
        let ctx = Pkcs11::new(softhsm_module()).unwrap();
        let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)); // already initialised: fine
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == cfg.token_label)
            .unwrap();

        // Fault 1: every session closed under the signer.
        close_all_sessions(&cfg.token_label);
        verify(&signer.sign(b"tbs").unwrap()).unwrap();
        let c = signer.counters();
        assert_eq!((c.retries, c.session_reopens), (1, 1), "{c:?}");

        // Fault 2: the token logged out (C_Logout is application-wide).
        let s = ctx.open_ro_session(slot).unwrap();
        s.login(UserType::User, Some(&AuthPin::new(PIN.into()))).ok();
        s.logout().unwrap();
        drop(s);
        verify(&signer.sign(b"tbs").unwrap()).unwrap();
        let c = signer.counters();
        assert_eq!((c.retries, c.session_reopens), (2, 2), "{c:?}");

        // Through the pool: four threads, each with its own session, survive a
        // close-all in the middle of a stream of jobs.
        let (pool, handles) =
            SignPool::start(&SignPoolConfig { threads: 4, queue_depth: 256, batch: 8, max_queue_wait_us: 0 })
                .unwrap();
        let sign_many = |n: usize| {
            let rxs: Vec<_> = (0..n).map(|_| pool.submit(signer.clone(), b"tbs".to_vec()).unwrap()).collect();
            rxs.into_iter().map(|rx| futures::executor::block_on(rx).unwrap()).collect::<Vec<_>>()
        };
        for r in sign_many(64) {
            verify(&r.unwrap()).unwrap();
        }
        close_all_sessions(&cfg.token_label);
        for r in sign_many(64) {
            verify(&r.expect("healed after close-all")).unwrap();
        }
        let c = signer.counters();
        assert!(c.session_reopens >= 3, "threads that had sessions reopened them: {c:?}");
        assert_eq!(pool.stats().failed.load(std::sync::atomic::Ordering::Relaxed), 0);
        let h = pool.snapshot();
        assert_eq!(h.sign_us.len(), 128);
        drop(pool);
        for h in handles {
            h.join().unwrap();
        }
    });
}

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

#[test]
fn replaced_signers_sessions_are_closed_on_the_signing_thread() {
    hsm_in_process(|cfg| {
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

        let mut signer = Arc::new(Pkcs11Signer::open(cfg).unwrap());
        sign_on_thread(&signer);
        let one = sessions();
        assert!(one >= 1, "the signing thread holds a session");
        for _ in 0..5 {
            // A reload: the new generation's signer replaces the old one.
            let next = Arc::new(Pkcs11Signer::open(cfg).unwrap());
            drop(std::mem::replace(&mut signer, next));
            sign_on_thread(&signer);
        }
        assert_eq!(sessions(), one, "old signers' sessions were closed, not kept");
        drop(jobs);
        thread.join().unwrap();
    });
}
