//! A stuck signer (a software key behind the same trait, so this runs without
//! SoftHSM2) never stalls answers, checked on the sources themselves with the
//! queue's wait bound off: a miss gets `tryLater` no sooner and no later than
//! the signing timeout, a full queue gets `tryLater` at once
//! (`SignError::QueueFull`), and a still-valid cached response is served at
//! once while its refresh waits on the stuck signer. `tests/hsm/under_load.rs`
//! proves the same policy end to end on a real token, with the wait bound on.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocsp_origin::config::ExpiredPolicy;
use ocsp_origin::error::{disposition, Failure, OcspError};
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use ocsp_origin::ocsp::response::ResponseStatus;
use ocsp_origin::ocsp::{CertId, HashAlg, IssuerId, Serial};
use ocsp_origin::signer::{SignError, SignPool, SignPoolConfig, Signer, SignerCounters, SoftwareSigner};
use ocsp_origin::source::admission::cache_key;
use ocsp_origin::source::l1::{Cached, Served};
use ocsp_origin::source::live::{Live, LivePolicy};
use ocsp_origin::source::{Query, Source};
use ocsp_origin::status::index_txt::IndexStatus;

/// Signs normally until `stuck` is set, then takes 2 s per signature.
struct StuckHsm {
    inner: SoftwareSigner,
    stuck: AtomicBool,
}

impl Signer for StuckHsm {
    fn algorithm_der(&self) -> &[u8] {
        self.inner.algorithm_der()
    }
    fn public_key_bits(&self) -> &[u8] {
        self.inner.public_key_bits()
    }
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        if self.stuck.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(2));
        }
        self.inner.sign(tbs)
    }
    fn describe(&self) -> String {
        "stuck HSM".into()
    }
    fn counters(&self) -> SignerCounters {
        SignerCounters::default()
    }
}

fn query(serial: &str) -> Query {
    let ids = vec![CertId::new(IssuerId(0), HashAlg::Sha1, Serial::from_hex(serial).unwrap())];
    Query { issuer: IssuerId(0), key: cache_key(&ids).into(), ids }
}

fn try_later(e: OcspError) -> bool {
    disposition(&Failure::Ocsp(e)).ocsp == Some(ResponseStatus::TryLater)
}

#[test]
fn stuck_signer_gives_bounded_try_later_and_stale_answers() {
    // It times its answers: nothing else of this binary runs meanwhile.
    let _turn = crate::common::schedule::alone();
    let key = std::fs::read_to_string(crate::common::data("ca.key")).unwrap();
    let hsm =
        Arc::new(StuckHsm { inner: SoftwareSigner::from_pem(&key).unwrap(), stuck: AtomicBool::new(false) });
    let cert = parse_certificate(&std::fs::read(crate::common::data("ca.pem")).unwrap()).unwrap();
    let issuers = Arc::new(Issuers::new(vec![Issuer::new("t", cert, hsm.clone(), None).unwrap()]));
    let mut status = IndexStatus::new();
    let index = std::fs::read_to_string(crate::common::data("index.txt")).unwrap()
        + "V\t361125115433Z\t\t01\tunknown\t/CN=one\nV\t361125115433Z\t\t02\tunknown\t/CN=two\n";
    status.load_str(IssuerId(0), &index).unwrap();
    let (pool, _threads) =
        SignPool::start(&SignPoolConfig { threads: 1, queue_depth: 1, batch: 1, max_queue_wait_us: 0 })
            .unwrap();
    // Responses are stale as soon as they are signed (refresh point in the
    // past), so every hit after the first starts a background refresh.
    let policy = LivePolicy {
        lifetime_secs: 4 * 86_400,
        refresh_fraction: 0.001,
        backdate_secs: 3600,
        expired: ExpiredPolicy::Serve,
        sign_timeout: Duration::from_millis(200),
        multi_signs_per_sec: 100,
    };
    ocsp_origin::uring::raise_memlock(4 << 20).unwrap();
    glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap().run(async move {
        let live: Rc<dyn Source> = Rc::new(Rc::new(Live::new(
            issuers,
            Arc::new(status),
            pool.clone(),
            policy,
            Rc::default(),
            ocsp_origin::source::floors::Fence::empty(),
        )));
        let cached = Cached::new(live, 100, 16);
        let good = crate::common::GOOD;
        let revoked = crate::common::REVOKED;

        // Healthy: signed and cached.
        let (first, how) = cached.answer(query(good)).await.unwrap();
        assert_eq!(how, Served::Fetched);

        hsm.stuck.store(true, Ordering::Relaxed);
        // A held response is served at once although its refresh is stuck.
        let t = Instant::now();
        let (again, how) = cached.answer(query(good)).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(50), "stale served at once: {:?}", t.elapsed());
        assert!(Rc::ptr_eq(&first, &again));
        assert_eq!(how, Served::Stale);

        // Let the signer thread take the refresh job (and get stuck in it).
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.queued(), 0, "the refresh is being signed, not queued");

        // A miss while the signer is stuck: tryLater after the signing timeout.
        // (The refresh above occupies the only signer thread; the queue of one
        // holds this job.)
        let t = Instant::now();
        let e = cached.answer(query(revoked)).await.unwrap_err();
        let waited = t.elapsed();
        assert!(try_later(e.clone()), "{e:?}");
        assert!(
            waited >= Duration::from_millis(180) && waited < Duration::from_millis(800),
            "bounded by signing.timeout_ms: {waited:?}"
        );

        // Queue full (the signer is busy with the refresh, the queue of one
        // still holds the abandoned job): the next miss is refused at once.
        let t = Instant::now();
        let e = cached.answer(query("01")).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "shed at once: {:?}", t.elapsed());
        assert_eq!(e, OcspError::Sign(SignError::QueueFull));
        assert!(try_later(e));
        assert_eq!(pool.stats().shed.load(Ordering::Relaxed), 1);

        // The stale response is still what clients get.
        let t = Instant::now();
        assert!(cached.answer(query(good)).await.is_ok());
        assert!(t.elapsed() < Duration::from_millis(50));
    });
}
