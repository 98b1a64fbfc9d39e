//! HSM faults under load (issue 6): a slow HSM, a stuck one, sessions closed
//! under the signers, and an HSM that hangs and comes back without its
//! sessions (a restart). The policy: hits keep being served — a cached
//! response past its refresh point but before its nextUpdate is served at
//! once while its re-signature waits — misses get a signature if one comes
//! within `signing.timeout_ms` and `tryLater` otherwise, never an error or a
//! wrong answer, and sessions reopen by themselves when the HSM answers
//! again.
//!
//! **Why in-process.** SoftHSM2 is a library loaded into the server process:
//! there is no HSM process to SIGSTOP and no network to delay, so the chaos
//! suite's way (faults from outside, tests/faults/chaos.rs) cannot reach it. This
//! test therefore runs the real server (`app::run`: shards, L1,
//! coalescing, live signing, the signer pool, HTTP) in this process, with
//! statuses from an index file, around the real `Pkcs11Signer` on a real
//! SoftHSM2 token, and drives it with the real `ocsp-origin bench` from
//! outside (a child process that verifies every answer). The faults enter
//! where a real HSM's trouble shows: the blocking signature call.
//! [`Tapped`] wraps the signer and, when told to, adds latency before each
//! signature (a slow or distant HSM) or holds it until released (a stuck
//! one); sessions are closed by the module's own `C_CloseAllSessions`, as an
//! HSM restart drops them, and the signer has to notice and reopen them
//! itself. Nothing of this is in the production config.
//!
//! One shard, so what the probe had cached before a fault is in the L1 its
//! next connection reaches (shards share nothing; across shards and nodes
//! Redis shares responses, see tests/faults/chaos.rs and tests/sources/redis_cache.rs).
//! Responses are configured stale as soon as they are signed (thisUpdate =
//! now − 1 h, refresh point = thisUpdate + 1 h, nextUpdate = now + 1 h), so
//! every cached answer during a fault is a stale-but-valid one whose
//! re-signature is stuck behind the fault.
//!
//! The server signs with this process's token ([`hsm_in_process`]: SoftHSM2
//! reads SOFTHSM2_CONF once per process, at C_Initialize) and runs alone, so
//! nothing else loads the box while answers are timed; `app::run` does not
//! return, so the server ends with the process.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::load::*;
use common::*;
use ocsp_origin::bench::verify::Verdict;
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use ocsp_origin::ocsp::IssuerId;
use ocsp_origin::signer::{Pkcs11Signer, SignError, Signer, SignerCounters};
use ocsp_origin::status::index_txt::IndexStatus;

/// Open-loop rate, requests/s.
const RATE: u32 = 300;
/// Bench connections: enough that misses held for the signing timeout do
/// not starve the hits queued behind them.
const CONNECTIONS: usize = 192;
const BENCH_SERIALS: usize = 1800;
const PROBE_SERIALS: usize = 60;
const PROBE_WARM: usize = 12;
const FAULT_AT: Duration = Duration::from_secs(2);
const HOLD: Duration = Duration::from_secs(3);
const STAGE: Duration = Duration::from_secs(9);
/// `signing.timeout_ms`: the longest a miss waits for its signature.
const SIGN_TIMEOUT: Duration = Duration::from_millis(500);
/// Latency the slow HSM adds to each signature (2 sessions: at most 40/s).
const SLOW: Duration = Duration::from_millis(50);
/// A cached answer, or a miss while the signers are known stuck, comes
/// within this.
const FAST: Duration = Duration::from_millis(250);
const RECOVERY_BOUND: Duration = Duration::from_secs(3);
/// `tryLater` share tolerated where the policy does not call for it.
const TRY_LATER_SLACK: f64 = 0.01;

/// The real PKCS#11 signer with two taps: a latency added before each
/// signature, and a gate that holds signatures while closed. A lock keeps
/// `C_CloseAllSessions` from running *during* a `C_Sign` of another thread:
/// SoftHSM2 frees a session's state when it closes it, so that would be a
/// use-after-free inside the library (a real HSM's client library survives
/// a restart mid-call); the signer sees the same thing either way — its
/// session handle is invalid at its next call.
struct Tapped {
    inner: Pkcs11Signer,
    delay_ms: AtomicU64,
    gate_closed: Mutex<bool>,
    gate: Condvar,
    calls: RwLock<()>,
}

impl Tapped {
    fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn close_gate(&self, closed: bool) {
        *self.gate_closed.lock().unwrap() = closed;
        self.gate.notify_all();
    }

    /// Closes every session of this process on the token, between two
    /// signatures.
    fn close_all_sessions(&self, label: &str) {
        let _no_call_in_flight = self.calls.write().unwrap();
        close_all_sessions(label);
    }
}

impl Signer for Tapped {
    fn algorithm_der(&self) -> &[u8] {
        self.inner.algorithm_der()
    }
    fn public_key_bits(&self) -> &[u8] {
        self.inner.public_key_bits()
    }
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut closed = self.gate_closed.lock().unwrap();
        while *closed {
            closed = self.gate.wait(closed).unwrap();
        }
        drop(closed);
        let _call = self.calls.read().unwrap();
        self.inner.sign(tbs)
    }
    fn describe(&self) -> String {
        format!("tapped {}", self.inner.describe())
    }
    fn counters(&self) -> SignerCounters {
        self.inner.counters()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `SLOW` added to every signature.
    Slow,
    /// Every signature held until released.
    Stuck,
    /// `C_CloseAllSessions` every 100 ms.
    SessionsClosed,
    /// Held, then back without its sessions (a restart).
    Gone,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Slow => "hsm-slow",
            Fault::Stuck => "hsm-stuck",
            Fault::SessionsClosed => "hsm-sessions-closed",
            Fault::Gone => "hsm-gone-and-back",
        }
    }

    fn describe(self) -> String {
        let s = HOLD.as_secs();
        match self {
            Fault::Slow => format!("+{} ms per signature for {s} s", SLOW.as_millis()),
            Fault::Stuck => format!("every signature held {s} s"),
            Fault::SessionsClosed => format!("C_CloseAllSessions every 100 ms for {s} s"),
            Fault::Gone => format!("held {s} s, back without its sessions"),
        }
    }
}

/// The test's certificates.
const SERIALS: Serials = Serials { base: 0x20_0000, bench: BENCH_SERIALS, probe: PROBE_SERIALS };

#[test]
fn hsm_slow_stuck_and_sessions_closed_under_load() {
    hsm_in_process(|cfg| {
        let started = Instant::now();
        let p11 = Pkcs11Signer::open(cfg).unwrap();
        let hsm = Arc::new(Tapped {
            inner: p11,
            delay_ms: AtomicU64::new(0),
            gate_closed: Mutex::new(false),
            gate: Condvar::new(),
            calls: RwLock::new(()),
        });

        let faults = [Fault::Slow, Fault::Stuck, Fault::SessionsClosed, Fault::Gone];
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("all.txt");
        std::fs::write(&index, SERIALS.all_index(faults.len())).unwrap();
        let cfg_path = ConfigBuilder::new()
            .listen("127.0.0.1:0")
            .cores(1)
            .pin(false)
            .set("signing", "threads", 2)
            .set("signing", "timeout_ms", ms(SIGN_TIMEOUT))
            // Two hours: shorter than the Baseline Requirements allow.
            .set("response", "profile", "rfc6960")
            .set("response", "lifetime_secs", 7200)
            .set("response", "backdate_secs", 3600)
            .set("response", "refresh_fraction", 0.5)
            .issuer(IssuerTable::test().index(&index))
            .write(dir.path().join("server.toml"));
        let config = ocsp_origin::config::Config::load(&cfg_path).unwrap();
        let mut status = IndexStatus::new();
        status.load_file(IssuerId(0), &index).unwrap();
        let cert = parse_certificate(&std::fs::read(data("ca.pem")).unwrap()).unwrap();
        let issuers = Arc::new(Issuers::new(vec![Issuer::new("test", cert, hsm.clone(), None).unwrap()]));
        let parts = ocsp_origin::app::Parts { issuers, status: Arc::new(status) };
        let addr = serve_in_process(config, parts);
        let mut probe = Probe::new(addr);

        let mut rows = Vec::new();
        for (n, fault) in faults.into_iter().enumerate() {
            let name = fault.name();
            eprintln!("hsm: step {name} ({})", fault.describe());
            let bench_index = dir.path().join(format!("bench-{n}.txt"));
            std::fs::write(&bench_index, SERIALS.bench_index(n)).unwrap();
            let bench_cfg = dir.path().join(format!("bench-{n}.toml"));
            bench_config(&bench_cfg, addr, &bench_index);
            let probes = SERIALS.probes(n);
            let idx = |j: usize| (n * PROBE_SERIALS + j) as u32;
            // Cached before the fault (in L1 of the shard that signed each).
            for (j, s) in probes[..PROBE_WARM].iter().enumerate() {
                assert_eq!(probe.ask(idx(j), s).verdict, Verdict::Good);
            }
            let before = hsm.counters();

            let out = dir.path().join(format!("out-{name}"));
            let mut bench = BenchRun::start(&bench_cfg, addr, RATE, CONNECTIONS, STAGE, out);
            let t0 = bench.stage_start();
            sleep_until(t0 + FAULT_AT);
            let fault_start = Instant::now();
            match fault {
                Fault::Slow => hsm.set_delay(SLOW),
                Fault::Stuck | Fault::Gone => hsm.close_gate(true),
                Fault::SessionsClosed => {}
            }
            // During the fault: what was cached is served at once; a cold miss
            // is signed (sessions closed: reopened), or tryLater within the
            // signing timeout.
            let mut next_cold = PROBE_WARM;
            let mut probe_cold = None;
            let mut next_close = fault_start;
            while fault_start.elapsed() < HOLD {
                if fault == Fault::SessionsClosed && Instant::now() >= next_close {
                    hsm.close_all_sessions(&cfg.token_label);
                    next_close += Duration::from_millis(100);
                }
                if probe_cold.is_none() && fault_start.elapsed() >= HOLD / 2 {
                    for (j, s) in probes[..PROBE_WARM].iter().enumerate() {
                        let a = probe.ask(idx(j), s);
                        assert_eq!(a.verdict, Verdict::Good, "{name}: cached {s}: {a:?}");
                        if fault != Fault::SessionsClosed {
                            assert!(a.took < FAST, "{name}: a cached answer took {:?}", a.took);
                        }
                    }
                    let a = probe.ask(idx(next_cold), &probes[next_cold]);
                    next_cold += 1;
                    match fault {
                        Fault::SessionsClosed => assert_eq!(a.verdict, Verdict::Good, "{name}: {a:?}"),
                        Fault::Stuck | Fault::Gone => {
                            // Known stuck (nothing started for 4 × max_queue_wait_ms):
                            // shed at once, not after the signing timeout.
                            assert_eq!(a.verdict, Verdict::TryLater, "{name}: {a:?}");
                            assert!(a.took < FAST, "{name}: tryLater took {:?}", a.took);
                        }
                        Fault::Slow => {}
                    }
                    assert!(a.took < SIGN_TIMEOUT + FAST, "{name}: a cold miss took {:?}", a.took);
                    probe_cold = Some(a.took);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match fault {
                Fault::Slow => hsm.set_delay(Duration::ZERO),
                Fault::Stuck => hsm.close_gate(false),
                Fault::Gone => {
                    hsm.close_all_sessions(&cfg.token_label);
                    hsm.close_gate(false);
                }
                Fault::SessionsClosed => {}
            }
            let fault_end = Instant::now();

            // Recovery: until a cold miss is signed again.
            let recovery = loop {
                assert!(
                    fault_end.elapsed() < RECOVERY_BOUND,
                    "{name}: no recovery within {RECOVERY_BOUND:?}"
                );
                let a = probe.ask(idx(next_cold), &probes[next_cold]);
                if a.verdict == Verdict::Good {
                    break fault_end.elapsed();
                }
                std::thread::sleep(Duration::from_millis(20));
            };

            let run = bench.finish(t0, STAGE + Duration::from_secs(30));
            run.assert_sound(name);
            let slack = (TRY_LATER_SLACK * run.answers() as f64).ceil() as u64;
            let max = run.try_later_max_ms();
            assert!(max < (SIGN_TIMEOUT + FAST).as_secs_f64() * 1000.0, "{name}: a tryLater took {max} ms");
            let after = hsm.counters();
            let reopens = after.session_reopens - before.session_reopens;
            if fault == Fault::SessionsClosed {
                let n = run.count("try_later");
                assert!(
                    n <= slack,
                    "{name}: tryLater beyond the slack ({n} > {slack}): {}",
                    run.context(name)
                );
                assert!(
                    run.misses_between(fault_start, fault_end) > 0,
                    "{name}: misses were signed throughout"
                );
            } else {
                let outside = run.try_later_outside(fault_start, fault_end + recovery + SIGN_TIMEOUT);
                assert!(
                    outside <= slack,
                    "{name}: tryLater outside the fault ({outside}): {:?}",
                    run.try_later
                );
            }
            if matches!(fault, Fault::SessionsClosed | Fault::Gone) {
                assert!(reopens > 0, "{name}: sessions were reopened: {after:?}");
            }
            let cached_during_fault = run.cached_each_second(name, fault_start, fault_end);
            rows.push(Figures {
                step: name,
                fault: fault.describe(),
                run,
                cached_during_fault,
                probe_cold,
                recovery: Some(recovery),
                counters: format!("session reopens +{reopens}, retries +{}", after.retries - before.retries),
            });
        }
        publish("hsm-fault-table", &rows, started);
    });
}
