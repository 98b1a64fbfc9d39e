//! The server under test and the processes around it: `ocsp-origin serve`
//! on an ephemeral loopback port (its config, stdout, log, signals), the real
//! server run inside the test process, commands run to completion or within a
//! time limit, free ports and bounded waits.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::ConfigBuilder;

/// The binary `Server` runs: this build's, or `OCSP_TEST_SERVER_BIN` (another
/// build of the server, e.g. an earlier commit's, to show which guarantees it
/// lacks: the tests and the bench stay this build's).
pub fn server_bin() -> PathBuf {
    std::env::var_os("OCSP_TEST_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or(env!("CARGO_BIN_EXE_ocsp-origin").into())
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Everything the server printed on stdout.
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `ocsp-origin serve` on `config` ([`ConfigBuilder::for_server`]:
    /// an ephemeral loopback port, 2 cores, unless it says otherwise), its
    /// file `ocsp-origin.toml` in a fresh directory.
    pub fn start(config: &ConfigBuilder) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), config)
    }

    /// Like [`Server::start`] in a prepared directory (for the files the
    /// config names relative to it).
    pub fn start_in(dir: tempfile::TempDir, config: &ConfigBuilder) -> Server {
        Server::start_env(dir, config, &[])
    }

    /// Like [`Server::start_in`] with extra environment variables.
    pub fn start_env(dir: tempfile::TempDir, config: &ConfigBuilder, env: &[(String, String)]) -> Server {
        Server::spawn(dir, config, env, Stdio::inherit())
    }

    /// Like [`Server::start_env`], with the server's stderr (its log) going
    /// to `server.log` in `dir` (see [`Server::log`]).
    pub fn start_logged(dir: tempfile::TempDir, config: &ConfigBuilder, env: &[(String, String)]) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        Server::spawn(dir, config, env, Stdio::from(log))
    }

    /// The config file the server was started with.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("ocsp-origin.toml")
    }

    /// What the server printed on stdout so far (after its "listening" line).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What the server logged so far (with [`Server::start_logged`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(
        dir: tempfile::TempDir,
        config: &ConfigBuilder,
        env: &[(String, String)],
        stderr: Stdio,
    ) -> Server {
        let cfg = config.clone().for_server().write(dir.path().join("ocsp-origin.toml"));
        let mut child = Command::new(server_bin())
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            // OCSP_TEST_SERVER_LOG (a RUST_LOG filter) to see more of a
            // failing test's servers, e.g. `warn,ocsp_origin::feed=debug`.
            .env("RUST_LOG", std::env::var("OCSP_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ocsp-origin");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("ocsp-origin listening on http://") {
                        break a.trim().parse().unwrap();
                    }
                }
                _ => {
                    let status = child.wait().unwrap();
                    panic!("server exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Server { child, addr, dir, stdout }
    }

    /// A fresh connection with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `sig` (libc::SIGTERM, SIGHUP, …) to the server process.
    #[allow(unsafe_code)]
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0, "kill({sig})");
    }

    /// Waits up to `within` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's resident memory, KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Whether the server process is still running (it did not crash).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Runs the real server (`app::run`) on `parts` in a thread of this
/// process, for tests that build the parts themselves; returns its address
/// once it listens. `app::run` does not return: the server ends with the
/// test process.
pub fn serve_in_process(config: ocsp_origin::config::Config, parts: ocsp_origin::app::Parts) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = ocsp_origin::app::run(&config, parts, ocsp_origin::control::Control::new(), None, |a| {
            let _ = tx.send(a);
        });
        panic!("the server stopped: {r:?}");
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the server listens")
}

/// Like [`run`], but a process still running after `within` is killed and
/// the test fails saying so, instead of hanging the suite.
pub fn run_within(cmd: &mut Command, within: Duration) -> (bool, String) {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut pipes = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    let readers: Vec<_> = pipes
        .iter_mut()
        .filter_map(Option::take)
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = p.read_to_end(&mut v);
                v
            })
        })
        .collect();
    let until = std::time::Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out: String =
        readers.into_iter().map(|r| String::from_utf8_lossy(&r.join().unwrap()).into_owned()).collect();
    match status {
        Some(st) => (st.success(), out),
        None => panic!("still running after {within:?}, killed; output:\n{out}"),
    }
}

/// Runs a command, returning (success, stdout+stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run command");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// A free loopback port below Linux's ephemeral range (32768 and up).
///
/// A port taken from `bind(:0)` and released is drawn from the same range the
/// kernel gives to outgoing connections, so a client socket of a test running
/// in parallel can take it before the server binds it (CI saw "Address
/// already in use" that way). Ports here are handed out once per process, from
/// a start that differs by pid, and only when nothing is bound to them.
pub fn free_port() -> u16 {
    free_port_below(32_000)
}

/// As `free_port`, with the port under `limit` (a Redis Cluster node needs
/// port + 10000 for its bus).
pub fn free_port_below(limit: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOW: u32 = 10_000;
    let span = u32::from(limit) - LOW;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port under {limit}");
}

/// Polls `ready` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Kills and reaps a child (a stopped one too: SIGKILL needs no SIGCONT).
pub fn reap(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
