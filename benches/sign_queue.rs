//! The signing queue against the physical limit, shaped like seastar's
//! `smp_submit_to_perf`: many submitters (glommio shards, as in the server),
//! few targets (signer threads, one signing context each).
//!
//! For each session count K it measures
//! 1. **raw**: K threads signing back to back, no queue — the limit;
//! 2. **queue**: a `SignPool` of K threads with batch B, fed by S shards that
//!    each keep W jobs outstanding (submit, await the answer, submit again),
//!    exactly as shards do on misses;
//!
//! and prints signatures/s for both, their ratio, the queue-wait p50/p99 and the
//! mean batch taken per wake-up.
//!
//! ```text
//! cargo bench --bench sign_queue -- [--backend software|softhsm] [--key p256|rsa2048]
//!     [--sessions 1,2,4] [--batch 16] [--shards 2] [--window 64] [--seconds 3] [--slow-ms 0]
//! ```
//!
//! `--backend softhsm` creates a private SoftHSM2 token in a temporary
//! directory (needs `softhsm2-util`, and `openssl` for RSA keys). `--slow-ms N`
//! wraps the signer in `SlowSigner` (N ms added per signature, like a network
//! HSM) to show what more sessions buy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use ocsp_origin::signer::{
    Pkcs11Config, Pkcs11Signer, SignError, SignPool, SignPoolConfig, Signer, SignerCounters, SoftwareSigner,
};

struct Opts {
    backend: String,
    key: String,
    sessions: Vec<usize>,
    batch: usize,
    shards: usize,
    window: usize,
    seconds: f64,
    slow_ms: u64,
    spin_us: u64,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        backend: "software".into(),
        key: "p256".into(),
        sessions: vec![1, 2, 4],
        batch: 16,
        shards: 2,
        window: 64,
        seconds: 3.0,
        slow_ms: 0,
        spin_us: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let mut take = true;
        match a {
            "--backend" => o.backend = v,
            "--key" => o.key = v,
            "--sessions" => {
                o.sessions = v.split(',').map(|s| s.trim().parse().expect("--sessions 1,2,4")).collect()
            }
            "--batch" => o.batch = v.parse().expect("--batch N"),
            "--shards" => o.shards = v.parse().expect("--shards N"),
            "--window" => o.window = v.parse().expect("--window N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--slow-ms" => o.slow_ms = v.parse().expect("--slow-ms N"),
            "--spin-us" => o.spin_us = v.parse().expect("--spin-us N"),
            _ => take = false, // cargo bench passes --bench; ignore unknown flags
        }
        i += if take { 2 } else { 1 };
    }
    o
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a command");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn softhsm_module() -> PathBuf {
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("SoftHSM2 is not installed (apt-get install softhsm2)")
}

/// A PKCS#8 key file of the requested kind.
fn key_file(dir: &Path, key: &str) -> PathBuf {
    let path = dir.join(format!("{key}.key"));
    match key {
        "p256" => {
            std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/ca.key"), &path)
                .unwrap();
        }
        "rsa2048" => run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&path)),
        other => panic!("--key {other}: p256 or rsa2048"),
    }
    path
}

fn make_signer(o: &Opts, dir: &Path) -> Arc<dyn Signer> {
    let key = key_file(dir, &o.key);
    let base: Arc<dyn Signer> = match o.backend.as_str() {
        "software" => Arc::new(SoftwareSigner::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap()),
        "softhsm" => {
            std::fs::create_dir_all(dir.join("tokens")).unwrap();
            let conf = dir.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    dir.join("tokens").display()
                ),
            )
            .unwrap();
            std::env::set_var("SOFTHSM2_CONF", &conf);
            std::env::set_var("SIGN_QUEUE_BENCH_PIN", "1234");
            let util =
                |args: &[&str]| run(Command::new("softhsm2-util").args(args).env("SOFTHSM2_CONF", &conf));
            util(&["--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"]);
            util(&[
                "--import",
                key.to_str().unwrap(),
                "--token",
                "bench",
                "--label",
                "k",
                "--id",
                "01",
                "--pin",
                "1234",
            ]);
            Arc::new(
                Pkcs11Signer::open(&Pkcs11Config {
                    module: softhsm_module(),
                    token_label: "bench".into(),
                    key_label: Some("k".into()),
                    key_id: None,
                    pin_env: Some("SIGN_QUEUE_BENCH_PIN".into()),
                    pin_file: None,
                })
                .unwrap(),
            )
        }
        other => panic!("--backend {other}: software or softhsm"),
    };
    if o.slow_ms > 0 {
        Arc::new(SlowSigner::new(base, Duration::from_millis(o.slow_ms)))
    } else {
        base
    }
}

/// A realistic to-be-signed body (a one-CertID ResponseData is ~150 bytes).
const TBS: &[u8] = &[0x5a; 160];

fn raw_rate(signer: &Arc<dyn Signer>, threads: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (signer, stop, count) = (signer.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    signer.sign(TBS).expect("raw signature");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Warm-up: sessions open, caches fill.
    std::thread::sleep(Duration::from_millis(300));
    let c0 = count.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = count.load(Ordering::Relaxed) - c0;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rate
}

struct QueueResult {
    rate: f64,
    shed: u64,
    wait_p50: u64,
    wait_p99: u64,
    batch_mean: f64,
}

fn queue_rate(signer: &Arc<dyn Signer>, o: &Opts, sessions: usize) -> QueueResult {
    let depth = (o.shards * o.window).max(1);
    let (pool, threads) = SignPool::start(&SignPoolConfig {
        threads: sessions,
        queue_depth: depth,
        batch: o.batch,
        max_queue_wait_us: 0,
    })
    .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    ocsp_origin::uring::raise_memlock(o.shards * (256 << 10) + (1 << 20)).unwrap();
    let handles = {
        let (pool, signer, done, stop, window) =
            (pool.clone(), signer.clone(), done.clone(), stop.clone(), o.window);
        let mut builder =
            LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(o.shards)).io_memory(128 << 10);
        if o.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(o.spin_us));
        }
        builder
            .on_all_shards(move || async move {
                let tasks: Vec<_> = (0..window)
                    .map(|_| {
                        let (pool, signer, done, stop) =
                            (pool.clone(), signer.clone(), done.clone(), stop.clone());
                        glommio::spawn_local(async move {
                            while !stop.load(Ordering::Relaxed) {
                                match pool.submit(signer.clone(), TBS.to_vec()) {
                                    Ok(rx) => {
                                        rx.await.expect("answer").expect("signature");
                                        done.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(SignError::QueueFull | SignError::Shed) => {
                                        glommio::timer::sleep(Duration::from_micros(200)).await
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
            })
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    pool.reset_histograms();
    let shed0 = pool.stats().shed.load(Ordering::Relaxed);
    let c0 = done.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(o.seconds));
    let n = done.load(Ordering::Relaxed) - c0;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let h = pool.snapshot();
    let shed = pool.stats().shed.load(Ordering::Relaxed) - shed0;
    stop.store(true, Ordering::Relaxed);
    handles.join_all();
    drop(pool);
    for t in threads {
        t.join().unwrap();
    }
    QueueResult {
        rate,
        shed,
        wait_p50: h.queue_wait_us.value_at_quantile(0.5),
        wait_p99: h.queue_wait_us.value_at_quantile(0.99),
        batch_mean: h.batch_size.mean(),
    }
}

fn main() {
    let o = parse_opts();
    let dir = tempfile::tempdir().unwrap();
    let signer = make_signer(&o, dir.path());
    println!(
        "sign_queue: backend={} key={} ({}) batch={} shards={} window={}/shard seconds={} slow_ms={} cpus={}",
        o.backend,
        o.key,
        signer.describe(),
        o.batch,
        o.shards,
        o.window,
        o.seconds,
        o.slow_ms,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!();
    println!(
        "| sessions | raw sig/s | queue sig/s | queue/raw | queue wait p50 µs | p99 µs | mean batch | shed |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &k in &o.sessions {
        let raw = raw_rate(&signer, k, o.seconds);
        let q = queue_rate(&signer, &o, k);
        println!(
            "| {k} | {raw:.0} | {:.0} | {:.2} | {} | {} | {:.1} | {} |",
            q.rate,
            q.rate / raw,
            q.wait_p50,
            q.wait_p99,
            q.batch_mean,
            q.shed
        );
    }
    let c = signer.counters();
    println!();
    println!("signer counters: retries={} session_reopens={}", c.retries, c.session_reopens);
}

/// A real key behind added per-signature latency, standing in for a network
/// HSM: the delay blocks the signer thread exactly as a remote round trip
/// would, so it shows what many sessions buy (2 ms per signature: at most 500
/// signatures/s per session).
struct SlowSigner {
    inner: Arc<dyn Signer>,
    delay: Duration,
}

impl SlowSigner {
    /// `inner` with `delay` added to every signature.
    fn new(inner: Arc<dyn Signer>, delay: Duration) -> SlowSigner {
        SlowSigner { inner, delay }
    }
}

impl Signer for SlowSigner {
    fn algorithm_der(&self) -> &[u8] {
        self.inner.algorithm_der()
    }

    fn public_key_bits(&self) -> &[u8] {
        self.inner.public_key_bits()
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, SignError> {
        std::thread::sleep(self.delay);
        self.inner.sign(tbs)
    }

    fn describe(&self) -> String {
        format!("{} + {:?} latency", self.inner.describe(), self.delay)
    }

    fn counters(&self) -> SignerCounters {
        self.inner.counters()
    }
}
