//! What the fault suites (tests/faults/chaos.rs, tests/hsm/under_load.rs) share: a
//! `ocsp-origin bench` run in the background whose measured stage the suite
//! times its faults against, the run's per-second outcome counts, a probe
//! client that verifies every answer in full, and the fault table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ocsp_origin::bench::keyspace::{ClientIssuer, Entry};
use ocsp_origin::bench::request::ocsp_request;
use ocsp_origin::bench::verify::{Verdict, Verifier};
use ocsp_origin::ocsp::Serial;
use ocsp_origin::status::CertStatus;

use super::ca::{data, index_line};
use super::client::{post, read_response};
use super::config::{ConfigBuilder, IssuerTable};
use super::server::reap;

/// The bench's per-request timeout, ms: a later answer is an error.
pub const BENCH_TIMEOUT_MS: u64 = 2000;

/// The certificates of a fault suite, step by step: `bench` per step for
/// that step's bench run (one in ten revoked), and `probe` good ones only the
/// probe asks for. A serial is the hex of `base + 0x1_0000 × step + i`, the
/// probe's from `0x8000` within its step, so every step starts cold.
#[derive(Clone, Copy)]
pub struct Serials {
    pub base: usize,
    pub bench: usize,
    pub probe: usize,
}

impl Serials {
    fn serial(&self, step: usize, i: usize) -> String {
        format!("{:06X}", self.base + 0x1_0000 * step + i)
    }

    /// The probe's serials of `step`.
    pub fn probes(&self, step: usize) -> Vec<String> {
        (0..self.probe).map(|j| self.serial(step, 0x8000 + j)).collect()
    }

    /// `index.txt` of `step`'s bench serials (for the bench's config).
    pub fn bench_index(&self, step: usize) -> String {
        (0..self.bench).map(|i| index_line(&self.serial(step, i), i % 10 == 9)).collect()
    }

    /// `index.txt` of every serial of `steps` steps (for the status source).
    pub fn all_index(&self, steps: usize) -> String {
        (0..steps)
            .map(|n| {
                let probes: String = self.probes(n).iter().map(|s| index_line(s, false)).collect();
                self.bench_index(n) + &probes
            })
            .collect()
    }
}

/// Writes a bench config for the test issuer whose certificates (and
/// expected statuses) are `index`, aimed at `target`.
pub fn bench_config(path: &Path, target: SocketAddr, index: &Path) {
    ConfigBuilder::new().listen(target).issuer(IssuerTable::test().index(index)).write(path);
}

/// A running `ocsp-origin bench`, killed on drop; what it prints (stdout and
/// stderr) is collected line by line as it comes.
pub struct BenchRun {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    out: PathBuf,
}

impl BenchRun {
    /// The fault suites' run: open loop, one stage, half of its keyspace
    /// cold, uniform popularity, one warm-up pass.
    pub fn start(
        config: &Path,
        target: SocketAddr,
        rate: u32,
        connections: usize,
        stage: Duration,
        out: PathBuf,
    ) -> BenchRun {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocsp-origin"));
        cmd.arg("bench")
            .arg("--config")
            .arg(config)
            .args(["--target", &target.to_string()])
            .args(["--rate", &rate.to_string(), "--duration", &stage.as_secs_f64().to_string()])
            .args(["--cold", "0.5", "--zipf", "0", "--warm-passes", "1"])
            .args(["--connections", &connections.to_string(), "--timeout-ms", &BENCH_TIMEOUT_MS.to_string()])
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn");
        BenchRun::spawn(cmd, out)
    }

    /// Starts `cmd`, a bench command line that writes its exports to `out`.
    pub fn spawn(mut cmd: Command, out: PathBuf) -> BenchRun {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        BenchRun { child: Some(child), lines, log: Vec::new(), out }
    }

    /// Waits for the warm-up to end; returns when the measured stage starts
    /// (the bench starts it 100 ms after saying so).
    pub fn stage_start(&mut self) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l.contains("warm-up done");
                    self.log.push(l);
                    if done {
                        return Instant::now() + Duration::from_millis(100);
                    }
                }
                Err(_) => panic!("bench never finished its warm-up:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Waits (at most `limit`) for the run to end: its exit status and all
    /// it printed.
    pub fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("the run is waited for once");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("bench did not end in time:\n{}", self.log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The readers end with the pipes, which end with the process.
        self.log.extend(self.lines.iter());
        (status, std::mem::take(&mut self.log).join("\n"))
    }

    /// The run's `summary.json` (`Null` if it wrote none).
    pub fn summary(&self) -> serde_json::Value {
        std::fs::read_to_string(self.out.join("summary.json"))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits (at most `limit`) for the run to end and reads its results;
    /// `t0` is what [`BenchRun::stage_start`] returned.
    pub fn finish(mut self, t0: Instant, limit: Duration) -> RunResult {
        let (status, log) = self.wait(limit);
        assert!(status.success(), "bench failed ({status}):\n{log}");
        let summary = self.summary();
        let out = &self.out;
        RunResult {
            stage: summary["stages"][0].clone(),
            t0,
            hit: per_second(out, "hit"),
            hit_l2: per_second(out, "hit_l2"),
            miss: per_second(out, "miss"),
            try_later: per_second(out, "try_later"),
            log,
        }
    }
}

impl Drop for BenchRun {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// Answers per one-second interval of the stage for one outcome (`hit`,
/// `try_later`, …), from the bench's interval log; empty when the outcome
/// never occurred.
fn per_second(out: &Path, outcome: &str) -> Vec<u64> {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let Ok(text) = std::fs::read(out.join(format!("{outcome}.hlog"))) else { return Vec::new() };
    let mut deser = Deserializer::new();
    let mut counts = Vec::new();
    for entry in IntervalLogIterator::new(&text) {
        if let LogEntry::Interval(i) = entry.unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram()).unwrap();
            let h: hdrhistogram::Histogram<u64> = deser.deserialize(&mut bytes.as_slice()).unwrap();
            counts.push(h.len());
        }
    }
    counts
}

fn at(v: &[u64], i: usize) -> u64 {
    v.get(i).copied().unwrap_or(0)
}

/// A finished run: its stage summary (summary.json) and, per second of the
/// stage (interval i covers `[t0 + i s, t0 + i + 1 s)`, answers counted
/// when they arrive), the count of each outcome.
pub struct RunResult {
    pub stage: serde_json::Value,
    pub t0: Instant,
    pub hit: Vec<u64>,
    pub hit_l2: Vec<u64>,
    pub miss: Vec<u64>,
    pub try_later: Vec<u64>,
    pub log: String,
}

impl RunResult {
    pub fn count(&self, outcome: &str) -> u64 {
        self.stage["counts"][outcome].as_u64().unwrap()
    }

    pub fn answers(&self) -> u64 {
        self.stage["completed"].as_u64().unwrap()
    }

    /// Errors: HTTP errors, answers later than the timeout, connections that failed.
    pub fn errors(&self) -> u64 {
        self.count("error") + self.stage["connect_errors"].as_u64().unwrap()
    }

    pub fn wrong(&self) -> u64 {
        self.stage["wrong"].as_u64().unwrap()
    }

    fn ms(&self, pointer: &str) -> f64 {
        self.stage.pointer(pointer).and_then(|v| v.as_f64()).unwrap_or(0.0)
    }

    pub fn p99_ms(&self) -> f64 {
        self.ms("/latency_ms/p99")
    }

    pub fn try_later_max_ms(&self) -> f64 {
        self.ms("/latency_ms_by_outcome/try_later/max")
    }

    /// The whole stage and the bench's log, for failure messages.
    pub fn context(&self, step: &str) -> String {
        format!("{step}: {}\n{}", self.stage, self.log)
    }

    /// The policy every step keeps: no wrong answer, no error, and misses.
    pub fn assert_sound(&self, step: &str) {
        assert_eq!(self.wrong(), 0, "wrong answers: {}", self.context(step));
        assert_eq!(self.errors(), 0, "errors (budget 0): {}", self.context(step));
        assert!(self.count("miss") > 0, "the run had misses: {}", self.context(step));
    }

    fn second(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64()
    }

    /// Answers served from a cache (L1 fresh or stale, or Redis) in the whole
    /// seconds between `from` and `to`; asserts there were some in each.
    pub fn cached_each_second(&self, step: &str, from: Instant, to: Instant) -> u64 {
        let (a, b) = (self.second(from).ceil() as usize, self.second(to).floor() as usize);
        let mut sum = 0;
        for i in a..b {
            let cached = at(&self.hit, i) + at(&self.hit_l2, i);
            assert!(cached > 0, "{step}: no cached answer in second {i}: hits {:?}", self.hit);
            sum += cached;
        }
        sum
    }

    /// Misses signed in the whole seconds between `from` and `to`.
    pub fn misses_between(&self, from: Instant, to: Instant) -> u64 {
        let (a, b) = (self.second(from).ceil() as usize, self.second(to).floor() as usize);
        (a..b).map(|i| at(&self.miss, i)).sum()
    }

    /// `tryLater` answers that arrived outside `from..=to`, give or take the
    /// second either side (interval rounding).
    pub fn try_later_outside(&self, from: Instant, to: Instant) -> u64 {
        let (first, last) = (self.second(from).floor() as usize, self.second(to).ceil() as usize);
        self.try_later.iter().enumerate().filter(|(i, _)| *i + 1 < first || *i > last).map(|(_, c)| c).sum()
    }
}

/// A client that checks every answer in full, like the bench: signature,
/// CertID, status (all its serials are good) and validity.
pub struct Probe {
    addr: SocketAddr,
    verifier: Verifier,
    issuer: ClientIssuer,
}

/// What one probe request got.
#[derive(Debug)]
pub struct ProbeAnswer {
    pub verdict: Verdict,
    pub cache: String,
    pub took: Duration,
}

impl Probe {
    pub fn new(addr: SocketAddr) -> Probe {
        let issuer = ClientIssuer::from_file("test", &data("ca.pem")).unwrap();
        Probe { addr, verifier: Verifier::new(vec![issuer.clone()].into()), issuer }
    }

    /// Asks about the good certificate `serial` (`idx` names it for the
    /// verifier) on a fresh connection, so successive probes reach every
    /// shard; only a verified answer or `tryLater` passes.
    pub fn ask(&mut self, idx: u32, serial: &str) -> ProbeAnswer {
        let serial = Serial::from_hex(serial).unwrap();
        let mut der = Vec::new();
        ocsp_request(&self.issuer, &serial, &mut der);
        let t = Instant::now();
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&post("/", &der)).unwrap();
        let resp = read_response(&mut BufReader::new(s), false).expect("an answer");
        let took = t.elapsed();
        assert_eq!(resp.status, 200, "probe for {serial}");
        let entry = Entry { issuer: 0, serial, status: CertStatus::Good };
        let verdict = self.verifier.check(idx, &entry, &resp.body, ocsp_origin::clock::unix_now());
        assert!(
            matches!(verdict, Verdict::Good | Verdict::TryLater),
            "probe for {serial}: {verdict:?} (cache {:?})",
            resp.header("x-cache-status")
        );
        ProbeAnswer { verdict, cache: resp.header("x-cache-status").unwrap_or("").to_string(), took }
    }
}

/// A server's `/metrics` text (with the response head).
pub fn metrics(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// Sums a per-shard counter of a server's `/metrics`.
pub fn counter(admin: SocketAddr, name: &str) -> u64 {
    let text = metrics(admin);
    let pat = format!("counter=\"{name}\"}} ");
    text.lines().filter_map(|l| l.split_once(&pat)).filter_map(|(_, v)| v.trim().parse::<u64>().ok()).sum()
}

/// One row of the fault table.
pub struct Figures {
    pub step: &'static str,
    pub fault: String,
    pub run: RunResult,
    /// Answers from a cache in the whole seconds of the fault.
    pub cached_during_fault: u64,
    /// How long the probe's cold miss took during the fault.
    pub probe_cold: Option<Duration>,
    /// Fault over → recovered (`None` where there is nothing to recover).
    pub recovery: Option<Duration>,
    /// What the operator's counters showed.
    pub counters: String,
}

/// The fault table, Markdown.
pub fn table(rows: &[Figures]) -> String {
    let mut s = String::from(
        "| step | fault | achieved/s | answers | from cache during fault | tryLater | tryLater max ms | errors | wrong | p99 ms | cold miss during fault | recovery | counters |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {:.1} | {} | {} | {} |\n",
            r.step,
            r.fault,
            r.run.stage["achieved_rate"].as_f64().unwrap_or(0.0),
            r.run.answers(),
            r.cached_during_fault,
            r.run.count("try_later"),
            r.run.try_later_max_ms(),
            r.run.errors(),
            r.run.wrong(),
            r.run.p99_ms(),
            r.probe_cold.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "–".into()),
            r.recovery.map(|d| format!("{:.2} s", d.as_secs_f64())).unwrap_or_else(|| "–".into()),
            r.counters,
        ));
    }
    s
}

/// Prints the table and writes it to `$CARGO_TARGET_TMPDIR/{name}.md`.
pub fn publish(name: &str, rows: &[Figures], started: Instant) {
    let t = table(rows);
    eprintln!("{name}: fault table ({:.0} s in all)\n{t}", started.elapsed().as_secs_f64());
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.md")), t).unwrap();
}
