//! The chaos suite (issue 6): `ocsp-origin serve` backed by a real Redis, a
//! real MariaDB and a SoftHSM2 token, under open-loop load from
//! `ocsp-origin bench`, while its dependencies are stopped, killed, restarted
//! and flushed underneath it.
//!
//! This suite starts its **own** redis-server and mariadbd on free loopback
//! ports (the shared instances of tests/run.sh are used by other test
//! binaries, which must not see them stop), its own token and its own server,
//! and kills every child on the way out, panics included (drop guards).
//!
//! One bench run per step, each on fresh serials (so the run's cold serials
//! are really cold: never signed, in no cache) with half of each run's
//! keyspace cold, at 400 requests/s (modest: this box has 2 vCPUs shared with
//! the server, the databases and other work). The fault starts 2 s into the
//! measured stage and lasts `hold`; meanwhile the test's own probe client asks
//! for serials it had cached before the fault and for cold ones, and times
//! the answers. After the fault it measures recovery.
//!
//! | step | fault | policy checked |
//! |---|---|---|
//! | `baseline` | none | the reference figures |
//! | `redis-sigstop` | SIGSTOP redis-server 3 s, SIGCONT | misses signed live within `command_timeout_ms`; no `tryLater`; cache fills resume |
//! | `redis-kill` | SIGKILL, restart on the same port after 3 s | same; fred reconnects by itself |
//! | `redis-flushall` | FLUSHALL | nothing visible; Redis refills |
//! | `db-sigstop` | SIGSTOP mariadbd 4 s, SIGCONT | cached responses served; misses `tryLater` quickly; lookups resume by themselves |
//! | `db-kill` | SIGKILL mariadbd, restart after 3 s | same, through a restart |
//!
//! Every step asserts: no wrong answer (the bench verifies every answer's
//! signature, CertID, status and validity; the probe does the same), no
//! errors (HTTP errors, refused connections, answers later than the bench's
//! 2 s timeout: budget 0), `tryLater` only where the policy allows it (never
//! for Redis faults beyond [`TRY_LATER_SLACK`] of the answers, which is the
//! signers shedding on a loaded box; for database faults only from the fault's
//! start until lookups recovered, plus one interval of slack either side,
//! within the same slack elsewhere), answers served from the caches in every
//! second of the fault, and recovery within [`RECOVERY_BOUND`]. The figures
//! go to stderr and to `$CARGO_TARGET_TMPDIR/chaos-fault-table.md` (the fault
//! table in benches/RESULTS.md is made from them).
//!
//! HSM faults are in `tests/hsm/under_load.rs`: SoftHSM2 runs inside the server
//! process, so it cannot be slowed or stopped from outside.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::load::*;
use common::*;
use ocsp_origin::bench::verify::Verdict;

/// Open-loop rate of every bench run, requests/s.
const RATE: u32 = 400;
/// Bench connections (a request in flight each).
const CONNECTIONS: usize = 64;
/// Certificates per step in the bench's index (a keyspace of 1500 with 750
/// cold at `--cold 0.5`).
const BENCH_SERIALS: usize = 2250;
/// Serials per step only the probe asks for: the first `PROBE_WARM` are
/// cached before the fault, the rest are cold.
const PROBE_SERIALS: usize = 80;
const PROBE_WARM: usize = 16;
/// When the fault starts, after the measured stage starts.
const FAULT_AT: Duration = Duration::from_secs(2);
/// `[mysql] timeout_ms`: the longest a miss waits for a status.
const DB_TIMEOUT: Duration = Duration::from_millis(1000);
/// `[redis] command_timeout_ms`.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest recovery accepted (fault over → misses signed again, or cache
/// fills landing in Redis again).
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// `tryLater` share tolerated where the policy does not call for it: the
/// signers may shed (`max_queue_wait_ms`) when the box is busy. Measured 0.
const TRY_LATER_SLACK: f64 = 0.01;
/// A miss while the database is known to be down is answered `tryLater`
/// within this (the first ones, before the failure is detected, within
/// `DB_TIMEOUT`).
const FAST_TRY_LATER: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------
// Processes

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args(["-s", sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -s {sig} {}", child.id());
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A private service process on a free loopback port that the suite stops,
/// continues, kills and restarts on the same port; killed on drop.
struct Service {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    /// The command line that runs it on a port, with its files in a folder.
    command: fn(&Path, u16) -> Command,
    /// Whether it answers on a port.
    ready: fn(u16) -> bool,
    child: Option<Child>,
}

impl Service {
    /// Starts it on a free port (another one if that port was taken
    /// meanwhile).
    fn start(
        name: &'static str,
        dir: &Path,
        command: fn(&Path, u16) -> Command,
        ready: fn(u16) -> bool,
    ) -> Service {
        std::fs::create_dir_all(dir).unwrap();
        for _ in 0..3 {
            let mut s =
                Service { name, port: free_port(), dir: dir.to_path_buf(), command, ready, child: None };
            if s.spawn() {
                return s;
            }
        }
        panic!("{name} did not start; its log is in {}", dir.display());
    }

    /// Runs it on `self.port`; true once it answers.
    fn spawn(&mut self) -> bool {
        let child = (self.command)(&self.dir, self.port)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} ({e}); tests/run.sh installs it", self.name));
        self.child = Some(child);
        let port = self.port;
        if wait_for(Duration::from_secs(60), || (self.ready)(port)) {
            return true;
        }
        reap(&mut self.child);
        false
    }

    fn child(&self) -> &Child {
        self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    fn kill(&mut self) {
        reap(&mut self.child);
    }

    fn restart(&mut self) {
        assert!(self.spawn(), "{} did not come back on port {}", self.name, self.port);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

fn redis_server(dir: &Path, port: u16) -> Command {
    let mut c = Command::new("redis-server");
    c.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stderr(Stdio::null());
    c
}

/// One inline Redis command over a fresh connection; the reply's first line.
fn redis_command(port: u16, cmd: &str) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

fn redis_ready(port: u16) -> bool {
    redis_command(port, "PING").as_deref() == Some("+PONG")
}

/// Creates a MariaDB datadir in `dir/data`.
fn install_mariadb(dir: &Path) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let installer = ["mariadb-install-db", "mysql_install_db"]
        .into_iter()
        .find(|b| Command::new("which").arg(b).output().map(|o| o.status.success()).unwrap_or(false))
        .expect("mariadb-install-db (tests/run.sh installs mariadb-server)");
    let (ok, out) = run(Command::new(installer)
        .arg("--no-defaults")
        .arg(format!("--user={}", current_user()))
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]));
    assert!(ok, "{installer}: {out}");
}

fn mariadbd(dir: &Path, port: u16) -> Command {
    let bin = if Path::new("/usr/sbin/mariadbd").exists() { "/usr/sbin/mariadbd" } else { "mariadbd" };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("mariadbd.log")).unwrap();
    let mut c = Command::new(bin);
    c.arg("--no-defaults")
        .arg(format!("--user={}", current_user()))
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .args(["--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M"])
        .stderr(log);
    c
}

fn mariadb_ready(port: u16) -> bool {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_millis(500)))
        .read_timeout(Some(Duration::from_millis(500)));
    mysql::Conn::new(opts).is_ok()
}

// ---------------------------------------------------------------------------
// The suite

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    RedisStop,
    RedisKill,
    RedisFlush,
    DbStop,
    DbKill,
}

impl Fault {
    fn on_db(self) -> bool {
        matches!(self, Fault::DbStop | Fault::DbKill)
    }
}

struct Step {
    name: &'static str,
    fault: Fault,
    hold: Duration,
    stage: Duration,
}

impl Step {
    fn describe(&self) -> String {
        let s = self.hold.as_secs();
        match self.fault {
            Fault::None => "none".into(),
            Fault::RedisStop => format!("redis-server SIGSTOP {s} s → SIGCONT"),
            Fault::RedisKill => format!("redis-server SIGKILL, restarted after {s} s"),
            Fault::RedisFlush => "FLUSHALL".into(),
            Fault::DbStop => format!("mariadbd SIGSTOP {s} s → SIGCONT"),
            Fault::DbKill => format!("mariadbd SIGKILL, restarted after {s} s"),
        }
    }
}

struct Suite {
    redis: Service,
    db: Service,
    server: Server,
    admin: SocketAddr,
    dir: PathBuf,
    probe: Probe,
    prefix: String,
}

/// The suite's certificates.
const SERIALS: Serials = Serials { base: 0x10_0000, bench: BENCH_SERIALS, probe: PROBE_SERIALS };

impl Suite {
    fn redis_has(&self, serial: &str) -> bool {
        let serial = ocsp_origin::ocsp::Serial::from_hex(serial).unwrap();
        let key = ocsp_origin::source::redis::key_for(
            &self.prefix,
            "test",
            &ocsp_origin::ocsp::CertId::new(
                ocsp_origin::ocsp::IssuerId(0),
                ocsp_origin::ocsp::HashAlg::Sha1,
                serial,
            ),
        );
        let key = format!("EXISTS {key}");
        redis_command(self.redis.port, &key).as_deref() == Some(":1")
    }

    fn start_fault(&mut self, fault: Fault) {
        match fault {
            Fault::RedisStop => signal(self.redis.child(), "STOP"),
            Fault::RedisKill => self.redis.kill(),
            Fault::RedisFlush => {
                assert_eq!(redis_command(self.redis.port, "FLUSHALL").as_deref(), Some("+OK"))
            }
            Fault::DbStop => signal(self.db.child(), "STOP"),
            Fault::DbKill => self.db.kill(),
            Fault::None => {}
        }
    }

    fn end_fault(&mut self, fault: Fault) {
        match fault {
            Fault::RedisStop => signal(self.redis.child(), "CONT"),
            Fault::RedisKill => self.redis.restart(),
            Fault::DbStop => signal(self.db.child(), "CONT"),
            Fault::DbKill => self.db.restart(),
            Fault::RedisFlush | Fault::None => {}
        }
    }

    fn run_step(&mut self, n: usize, step: &Step) -> Figures {
        eprintln!("chaos: step {} ({})", step.name, step.describe());
        // The bench's certificates for this step (one in ten revoked).
        let index = self.dir.join(format!("bench-{n}.txt"));
        std::fs::write(&index, SERIALS.bench_index(n)).unwrap();
        let cfg = self.dir.join(format!("bench-{n}.toml"));
        bench_config(&cfg, self.server.addr, &index);
        let probes = SERIALS.probes(n);
        let idx = |j: usize| (n * PROBE_SERIALS + j) as u32;
        // Cached before the fault: in Redis, and in L1 of the shard that signed it.
        for (j, s) in probes[..PROBE_WARM].iter().enumerate() {
            assert_eq!(self.probe.ask(idx(j), s).verdict, Verdict::Good);
        }
        assert!(
            wait_for(Duration::from_secs(5), || probes[..PROBE_WARM].iter().all(|s| self.redis_has(s))),
            "the probe's responses were written to Redis"
        );
        let redis_errors_before = counter(self.admin, "redis_errors");

        let out = self.dir.join(format!("out-{n}-{}", step.name));
        let mut bench = BenchRun::start(&cfg, self.server.addr, RATE, CONNECTIONS, step.stage, out);
        let t0 = bench.stage_start();

        let mut next_cold = PROBE_WARM;
        let mut probe_cold = None;
        sleep_until(t0 + FAULT_AT);
        let fault_start = Instant::now();
        if step.fault != Fault::None {
            self.start_fault(step.fault);
            // Half-way through (past the detection of a database failure,
            // DB_TIMEOUT): what was cached is still served; a cold miss is
            // answered tryLater at once (database) or signed live (Redis).
            sleep_until(fault_start + step.hold / 2);
            for (j, s) in probes[..PROBE_WARM].iter().enumerate() {
                let a = self.probe.ask(idx(j), s);
                assert_eq!(a.verdict, Verdict::Good, "{}: cached {s} during the fault: {a:?}", step.name);
                if step.fault.on_db() {
                    assert_ne!(
                        a.cache, "MISS",
                        "{}: {s} cannot have been signed without a status",
                        step.name
                    );
                }
            }
            let j = next_cold;
            next_cold += 1;
            let a = self.probe.ask(idx(j), &probes[j]);
            if step.fault.on_db() {
                assert_eq!(a.verdict, Verdict::TryLater, "{}: a cold miss, database down: {a:?}", step.name);
                assert!(a.took < FAST_TRY_LATER, "{}: tryLater took {:?}", step.name, a.took);
            } else {
                assert_eq!(
                    a.verdict,
                    Verdict::Good,
                    "{}: a cold miss with Redis down is signed live",
                    step.name
                );
                assert!(a.took < REDIS_TIMEOUT + Duration::from_secs(1), "{}: took {:?}", step.name, a.took);
            }
            probe_cold = Some(a.took);
            sleep_until(fault_start + step.hold);
            self.end_fault(step.fault);
        }
        let fault_end = Instant::now();

        // Recovery: for the database, until a cold miss is signed again; for
        // Redis, until a fresh miss's response lands in Redis again.
        let mut recovery = None;
        if step.fault != Fault::None {
            let deadline = fault_end + RECOVERY_BOUND;
            recovery = Some(loop {
                assert!(Instant::now() < deadline, "{}: no recovery within {RECOVERY_BOUND:?}", step.name);
                assert!(next_cold < PROBE_SERIALS, "{}: out of probe serials", step.name);
                let j = next_cold;
                let a = self.probe.ask(idx(j), &probes[j]);
                if step.fault.on_db() {
                    if a.verdict == Verdict::Good {
                        break fault_end.elapsed();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    assert_eq!(a.verdict, Verdict::Good, "{}: {a:?}", step.name);
                    next_cold += 1;
                    if wait_for(Duration::from_millis(200), || self.redis_has(&probes[j])) {
                        break fault_end.elapsed();
                    }
                }
            });
        }

        let run = bench.finish(t0, step.stage + Duration::from_secs(30));
        run.assert_sound(step.name);
        let slack = (TRY_LATER_SLACK * run.answers() as f64).ceil() as u64;
        if step.fault.on_db() {
            // tryLater from the fault's start until lookups recovered
            // (answers count when they arrive: up to DB_TIMEOUT late).
            let until = fault_end + recovery.unwrap_or_default() + DB_TIMEOUT;
            let outside = run.try_later_outside(fault_start, until);
            assert!(
                outside <= slack,
                "tryLater outside the fault ({outside} > {slack}): {:?}",
                run.try_later
            );
            // Each tryLater came within the lookup timeout (plus scheduling).
            let max = run.try_later_max_ms();
            assert!(
                max < (DB_TIMEOUT.as_secs_f64() + 0.5) * 1000.0,
                "{}: a tryLater took {max} ms",
                step.name
            );
        } else {
            let n = run.count("try_later");
            assert!(
                n <= slack,
                "tryLater beyond the signers' slack ({n} > {slack}): {}",
                run.context(step.name)
            );
        }
        let cached_during_fault = run.cached_each_second(step.name, fault_start, fault_end);
        let redis_errors = counter(self.admin, "redis_errors") - redis_errors_before;
        Figures {
            step: step.name,
            fault: step.describe(),
            run,
            cached_during_fault,
            probe_cold,
            recovery,
            counters: format!("redis_errors +{redis_errors}"),
        }
    }
}

/// Whether tests/run.sh's services are up, and so redis-server and mariadbd
/// are installed (the suite runs its own instances of them). Without them the
/// suite says so and passes vacuously, like the other service tests, except
/// under CI=true, where it fails.
fn services_available() -> bool {
    let missing: Vec<&str> = ["OCSP_TEST_MYSQL_URL", "OCSP_TEST_REDIS_URL"]
        .into_iter()
        .filter(|v| std::env::var(v).is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} not set: run tests via tests/run.sh");
    }
    eprintln!("note: {missing:?} not set, skipping the chaos suite (tests/run.sh starts MariaDB and Redis)");
    false
}

#[test]
fn chaos_redis_and_database_faults_under_load() {
    let _turn = schedule::alone();
    if !services_available() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let token = Token::new("chaos");
    token.import(&data("ca.key"), "issuer", "01");
    let redis = Service::start("redis-server", &dir.path().join("redis"), redis_server, redis_ready);
    install_mariadb(&dir.path().join("mariadb"));
    let db = Service::start("mariadbd", &dir.path().join("mariadb"), mariadbd, mariadb_ready);
    {
        use mysql::prelude::Queryable;
        let url = format!("mysql://root@127.0.0.1:{}/", db.port);
        mysql::Conn::new(mysql::Opts::from_url(&url).unwrap())
            .unwrap()
            .query_drop("CREATE DATABASE chaos")
            .unwrap();
    }
    let db_url = format!("mysql://root@127.0.0.1:{}/chaos", db.port);
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let prefix = "chaos:".to_string();
    let issuer = IssuerTable::new("test", data("ca.pem")).pkcs11(token.pkcs11("issuer"));
    let config = ConfigBuilder::new()
        .pin(false)
        .admin(admin)
        .set("mysql", "url", db_url.as_str())
        .set("mysql", "timeout_ms", ms(DB_TIMEOUT))
        .redis(&format!("redis://127.0.0.1:{}", redis.port))
        .set("redis", "key_prefix", prefix.as_str())
        .set("redis", "command_timeout_ms", ms(REDIS_TIMEOUT))
        .issuer(issuer.clone());

    let secs = Duration::from_secs;
    let steps = [
        Step { name: "baseline", fault: Fault::None, hold: Duration::ZERO, stage: secs(6) },
        Step { name: "redis-sigstop", fault: Fault::RedisStop, hold: secs(3), stage: secs(11) },
        Step { name: "redis-kill", fault: Fault::RedisKill, hold: secs(3), stage: secs(11) },
        Step { name: "redis-flushall", fault: Fault::RedisFlush, hold: Duration::ZERO, stage: secs(8) },
        Step { name: "db-sigstop", fault: Fault::DbStop, hold: secs(4), stage: secs(12) },
        Step { name: "db-kill", fault: Fault::DbKill, hold: secs(3), stage: secs(11) },
    ];

    // Every step's certificates, and the probe's, in the database.
    std::fs::write(dir.path().join("all.txt"), SERIALS.all_index(steps.len())).unwrap();
    let db_cfg = ConfigBuilder::new()
        .set("mysql", "url", db_url.as_str())
        .issuer(issuer)
        .write(dir.path().join("db.toml"));
    let bin = || Command::new(env!("CARGO_BIN_EXE_ocsp-origin"));
    let (ok, out) = run(bin().args(["db", "migrate", "--config"]).arg(&db_cfg));
    assert!(ok, "{out}");
    let (ok, out) = run(bin()
        .args(["db", "import", "--config"])
        .arg(&db_cfg)
        .args(["--issuer", "test", "--index"])
        .arg(dir.path().join("all.txt")));
    assert!(ok, "{out}");

    let server = Server::start_env(tempfile::tempdir().unwrap(), &config, &token.env());
    let probe = Probe::new(server.addr);
    let mut suite = Suite { redis, db, server, admin, dir: dir.path().to_path_buf(), probe, prefix };
    let rows: Vec<Figures> = steps.iter().enumerate().map(|(n, step)| suite.run_step(n, step)).collect();
    publish("chaos-fault-table", &rows, started);
}
