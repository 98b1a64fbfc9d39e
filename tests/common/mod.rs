//! Shared helpers for integration tests: a real `ocsp-origin serve` process on
//! an ephemeral loopback port, a minimal raw HTTP/1.1 client, and the test
//! issuer from `tests/data/client-requests`.
#![allow(dead_code)]

pub mod load;
pub mod schedule;
pub mod services;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The test issuer's files.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client-requests").join(name)
}

/// Serial of `leaf-good.pem`.
pub const GOOD: &str = "0A1B2C3D4E5F60718293";
/// Serial of `leaf-revoked.pem` (revoked 2026-11-01 12:00:00Z, keyCompromise).
pub const REVOKED: &str = "F1E2D3C4B5A6978877";

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

/// A config with the test issuer plus `extra` TOML (top-level keys and tables
/// other than `[[issuer]]` go first, so `extra` must not start with an issuer
/// table unless `issuers` is empty).
pub fn test_issuer_toml() -> String {
    format!(
        "[[issuer]]\nname = \"test\"\ncert = \"{}\"\nkey = \"{}\"\nindex = \"{}\"\n",
        data("ca.pem").display(),
        data("ca.key").display(),
        data("index.txt").display()
    )
}

impl Server {
    /// Starts `ocsp-origin serve` with `top` (top-level keys and tables) and
    /// `issuers` (`[[issuer]]` tables) in its config.
    pub fn start(top: &str, issuers: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server::start_in(dir, top, issuers)
    }

    /// Like [`Server::start`] with a prepared directory (for extra key files).
    pub fn start_in(dir: tempfile::TempDir, top: &str, issuers: &str) -> Server {
        Server::start_env(dir, top, issuers, &[])
    }

    /// Like [`Server::start_in`] with extra environment variables.
    pub fn start_env(dir: tempfile::TempDir, top: &str, issuers: &str, env: &[(String, String)]) -> Server {
        Server::spawn(dir, top, issuers, env, Stdio::inherit())
    }

    /// Like [`Server::start_env`], with the server's stderr (its log) going
    /// to `server.log` in `dir` (see [`Server::log`]).
    pub fn start_logged(
        dir: tempfile::TempDir,
        top: &str,
        issuers: &str,
        env: &[(String, String)],
    ) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        Server::spawn(dir, top, issuers, env, Stdio::from(log))
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
        top: &str,
        issuers: &str,
        env: &[(String, String)],
        stderr: Stdio,
    ) -> Server {
        let cfg = dir.path().join("ocsp-origin.toml");
        let text = format!("listen = \"127.0.0.1:0\"\ncores = 2\n{top}\n{issuers}");
        std::fs::write(&cfg, text).unwrap();
        let mut child = Command::new(server_bin())
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
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

/// Runs the real server (`server::run`) on `parts` in a thread of this
/// process, for tests that build the parts themselves; returns its address
/// once it listens. `server::run` does not return: the server ends with the
/// test process.
pub fn serve_in_process(
    config: ocsp_origin::config::Config,
    parts: ocsp_origin::server::Parts,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = ocsp_origin::server::run(&config, parts, ocsp_origin::control::Control::new(), None, |a| {
            let _ = tx.send(a);
        });
        panic!("the server stopped: {r:?}");
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the server listens")
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `r` (`head_only` for HEAD requests / 304s).
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; if head_only || status == 304 { 0 } else { len }];
    r.read_exact(&mut body).ok()?;
    Some(Response { status, headers, body })
}

/// Sends raw bytes on a new connection and reads one response.
pub fn roundtrip(server: &Server, raw: &[u8]) -> Response {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, raw.starts_with(b"HEAD")).expect("a response")
}

/// A GET request for `path`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// A POST of an OCSP request body to `path`.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Standard base64 of `der`.
pub fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The unsigned error body for an OCSP response status.
pub fn ocsp_error(status: u8) -> Vec<u8> {
    vec![0x30, 0x03, 0x0a, 0x01, status]
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

/// `openssl` must exist: the interop tests are the point.
pub fn openssl() -> Command {
    Command::new("openssl")
}

/// The SoftHSM2 PKCS#11 module, where Debian installs it.
pub fn softhsm_module() -> PathBuf {
    for p in ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("SoftHSM2 is not installed (Debian: apt-get install softhsm2); tests/run.sh installs it");
}

/// A private SoftHSM2 token in its own directory (its own SOFTHSM2_CONF).
pub struct Token {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
}

/// User PIN of test tokens.
pub const PIN: &str = "1234";

impl Token {
    /// Initialises a token labelled `label` with user PIN [`PIN`].
    pub fn new(label: &str) -> Token {
        Token::with_pin(label, PIN)
    }

    /// Initialises a token labelled `label` with user PIN `pin`.
    pub fn with_pin(label: &str, pin: &str) -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let t = Token { dir, conf, label: label.to_string(), pin: pin.to_string() };
        t.util(&["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"]);
        t
    }

    /// Runs softhsm2-util against this token's config.
    pub fn util(&self, args: &[&str]) {
        let (ok, out) = run(Command::new("softhsm2-util").args(args).env("SOFTHSM2_CONF", &self.conf));
        assert!(ok, "softhsm2-util {args:?}: {out}");
    }

    /// Imports a PKCS#8 PEM key pair under `label` / `id` (hex).
    pub fn import(&self, pkcs8_pem: &Path, label: &str, id: &str) {
        let key = pkcs8_pem.to_str().unwrap();
        self.util(&[
            "--import",
            key,
            "--token",
            &self.label,
            "--label",
            label,
            "--id",
            id,
            "--pin",
            &self.pin,
        ]);
    }

    /// An `[issuer.pkcs11]` table for key `label`, PIN from `OCSP_TEST_PIN`.
    pub fn issuer_table(&self, key_label: &str) -> String {
        format!(
            "[issuer.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\nkey_label = \"{key_label}\"\npin_env = \"OCSP_TEST_PIN\"\n",
            softhsm_module().display(),
            self.label
        )
    }

    /// Environment a server using this token needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf.display().to_string()),
            ("OCSP_TEST_PIN".into(), self.pin.clone()),
        ]
    }
}

/// Calls the module's own `C_CloseAllSessions` on the slot of token `label`
/// (a token of the module loaded into this process): every session this
/// process has there is gone afterwards, as after an HSM restart.
#[allow(unsafe_code)]
pub fn close_all_sessions(label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let ctx = Pkcs11::new(softhsm_module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)); // already: fine
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == label)
        .unwrap();
    // SAFETY: dlopen of the already-loaded module returns the same instance;
    // C_CloseAllSessions takes a slot id and returns a CK_RV.
    unsafe {
        let lib = libloading::Library::new(softhsm_module()).unwrap();
        let f: libloading::Symbol<unsafe extern "C" fn(u64) -> u64> = lib.get(b"C_CloseAllSessions").unwrap();
        assert_eq!(f(slot.id()), 0, "CKR_OK");
    }
}

/// The label of the token of the PKCS#11 module loaded into this process.
const IN_PROCESS_TOKEN: &str = "in-process";
/// The variable holding its PIN.
const IN_PROCESS_PIN_ENV: &str = "OCSP_IN_PROCESS_PIN";

/// This process's token: SoftHSM2 reads `SOFTHSM2_CONF` once per process (at
/// the first `C_Initialize`, and the signer keeps one context per module), so
/// every test that loads the module into this process uses this one token,
/// made on first use, with the test CA's key imported as "issuer".
fn process_token() -> &'static Token {
    static TOKEN: OnceLock<Token> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let token = Token::new(IN_PROCESS_TOKEN);
        token.import(&data("ca.key"), "issuer", "01");
        // Process-global, before the first C_Initialize; no other test runs
        // meanwhile (the caller holds `schedule::alone`).
        std::env::set_var("SOFTHSM2_CONF", &token.conf);
        std::env::set_var(IN_PROCESS_PIN_ENV, &token.pin);
        token
    })
}

/// Runs `test` with the signer config of the test CA's key on this process's
/// token ([`process_token`]): alone (it closes sessions, logs the token out
/// or counts the sessions every test of this process opened), and on a thread
/// of its own that has ended, its thread-local PKCS#11 sessions closed, when
/// the next test gets its turn.
pub fn hsm_in_process(test: impl FnOnce(&ocsp_origin::signer::Pkcs11Config) + Send) {
    let _turn = schedule::alone();
    process_token();
    let cfg = ocsp_origin::signer::Pkcs11Config {
        module: softhsm_module(),
        token_label: IN_PROCESS_TOKEN.into(),
        key_label: Some("issuer".into()),
        key_id: None,
        pin_env: Some(IN_PROCESS_PIN_ENV.into()),
        pin_file: None,
    };
    std::thread::scope(|s| {
        if let Err(panic) = s.spawn(|| test(&cfg)).join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// A fresh, empty database on the test MariaDB (from `OCSP_TEST_MYSQL_URL`,
/// set by tests/run.sh). Without it: `None` with a note, except under
/// CI=true, where a database test must not skip.
pub fn test_database(tag: &str) -> Option<String> {
    let Ok(base) = std::env::var("OCSP_TEST_MYSQL_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but OCSP_TEST_MYSQL_URL is not set: run tests via tests/run.sh");
        }
        eprintln!(
            "note: OCSP_TEST_MYSQL_URL not set, skipping {tag} (tests/run.sh starts a private MariaDB)"
        );
        return None;
    };
    use mysql::prelude::Queryable;
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).unwrap();
    let name = format!("ocsp_{tag}_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let pool = mysql::Pool::new(base.as_str()).expect("connect to test MariaDB");
    pool.get_conn().unwrap().query_drop(format!("CREATE DATABASE {name}")).unwrap();
    Some(format!("{}{name}", base.trim_end_matches('/').to_string() + "/"))
}

/// A `[mysql]` table for `url`.
pub fn mysql_table(url: &str) -> String {
    format!("[mysql]\nurl = \"{url}\"\ntimeout_ms = 2000\n")
}

/// Runs `ocsp-origin db migrate` and `db import` of `index` for issuer
/// "test" with config file `cfg`; both must succeed.
pub fn migrate_and_import(cfg: &Path, index: &Path) {
    let bin = || Command::new(env!("CARGO_BIN_EXE_ocsp-origin"));
    let (ok, out) = run(bin().args(["db", "migrate", "--config"]).arg(cfg));
    assert!(ok, "{out}");
    let (ok, out) = run(bin()
        .args(["db", "import", "--config"])
        .arg(cfg)
        .args(["--issuer", "test", "--index"])
        .arg(index));
    assert!(ok, "{out}");
}

/// `[[issuer]]` for the test CA with statuses in MySQL.
pub fn test_issuer_mysql_toml() -> String {
    format!(
        "[[issuer]]\nname = \"test\"\ncert = \"{}\"\nkey = \"{}\"\n",
        data("ca.pem").display(),
        data("ca.key").display()
    )
}

/// `OCSP_TEST_REDIS_URL` / `OCSP_TEST_REDIS_CLUSTER_URL` (set by tests/run.sh),
/// with the same rule as [`test_database`].
pub fn test_redis(var: &str, tag: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but {var} is not set: run tests via tests/run.sh")
        }
        Err(_) => {
            eprintln!("note: {var} not set, skipping {tag} (tests/run.sh starts private Redis instances)");
            None
        }
    }
}

/// A key prefix no other test uses.
pub fn unique_prefix(tag: &str) -> String {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    format!("t{tag}{}:", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// "good", "revoked" or "error N" for an OCSP response body (first CertID).
pub fn ocsp_status(der: &[u8]) -> String {
    use der::Decode;
    let r = match x509_ocsp::OcspResponse::from_der(der) {
        Ok(r) => r,
        Err(e) => return format!("undecodable: {e}"),
    };
    let Some(rb) = r.response_bytes else { return format!("error {:?}", r.response_status) };
    let basic = x509_ocsp::BasicOcspResponse::from_der(rb.response.as_bytes()).unwrap();
    match basic.tbs_response_data.responses[0].cert_status {
        x509_ocsp::CertStatus::Good(_) => "good".into(),
        x509_ocsp::CertStatus::Revoked(_) => "revoked".into(),
        x509_ocsp::CertStatus::Unknown(_) => "unknown".into(),
    }
}

/// DER OCSP requests (SHA-1, no nonce) for serials of the test issuer, made by openssl.
pub fn requests_for(serials: &[String]) -> Vec<Vec<u8>> {
    let d = tempfile::tempdir().unwrap();
    serials
        .iter()
        .map(|s| {
            let out = d.path().join(format!("{s}.der"));
            let (ok, msg) = run(openssl()
                .args(["ocsp", "-issuer"])
                .arg(data("ca.pem"))
                .args(["-serial", &format!("0x{s}"), "-no_nonce", "-reqout"])
                .arg(&out));
            assert!(ok, "{msg}");
            std::fs::read(out).unwrap()
        })
        .collect()
}

/// An index.txt with `n` good certificates, serials 0x1000 + i.
pub fn index_with(n: usize) -> (String, Vec<String>) {
    let serials: Vec<String> = (0..n).map(|i| format!("{:04X}", 0x1000 + i)).collect();
    let text = serials.iter().map(|s| format!("V\t361125115433Z\t\t{s}\tunknown\t/CN={s}\n")).collect();
    (text, serials)
}

/// Issues `dir/resp.pem`, a delegated OCSP responder certificate (EKU
/// id-kp-OCSPSigning) for the key in `dir/resp.key`, signed by the test CA.
pub fn issue_responder_cert(dir: &Path, cn: &str) {
    let (ok, out) = run(openssl()
        .args(["req", "-new", "-key"])
        .arg(dir.join("resp.key"))
        .args(["-subj", &format!("/CN={cn}"), "-out"])
        .arg(dir.join("resp.csr")));
    assert!(ok, "{out}");
    std::fs::write(dir.join("ext.cnf"), "extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\n").unwrap();
    let (ok, out) = run(openssl()
        .args(["x509", "-req", "-in"])
        .arg(dir.join("resp.csr"))
        .arg("-CA")
        .arg(data("ca.pem"))
        .arg("-CAkey")
        .arg(data("ca.key"))
        .args(["-set_serial", "0x77", "-days", "30", "-extfile"])
        .arg(dir.join("ext.cnf"))
        .arg("-out")
        .arg(dir.join("resp.pem")));
    assert!(ok, "{out}");
}

/// A loopback TCP forwarder to `upstream`, for a dependency that comes and
/// goes without stopping the real server behind it (which other tests share):
/// clients of `addr` reach `upstream` while it runs; [`Forwarder::cut`] (or
/// drop) closes the listener and every forwarded connection, as a crashed or
/// unplugged server would.
pub struct Forwarder {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    /// Starts forwarding from `listener` to `upstream`.
    pub fn start(listener: std::net::TcpListener, upstream: SocketAddr) -> Forwarder {
        use std::sync::atomic::Ordering;
        let addr = listener.local_addr().unwrap();
        let f = Forwarder { addr, stop: Default::default(), conns: Default::default() };
        let (stop, conns) = (f.stop.clone(), f.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                if let Ok(mut c) = conns.lock() {
                    c.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        f
    }

    /// Stops accepting and closes every forwarded connection.
    pub fn cut(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Ok(mut c) = self.conns.lock() {
            for s in c.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}
