//! A real Varnish in front of origin nodes: `varnishd` (Varnish 7, with the
//! xkey and bodyaccess vmods of varnish-modules; tests/run.sh installs them)
//! running `tuning/varnish/ocsp-origin.vcl` with its backends block (between
//! `# BEGIN backends` and `# END backends`) replaced by the given origins
//! behind the round-robin director, on a free loopback port, in the
//! foreground, its working directory and VCL in a fresh temp dir; stopped on
//! drop. Its counters come from `varnishstat`, purges are `PURGE` requests
//! with `xkey-purge`.
//!
//! Without `varnishd` a test says so and passes, except under CI=true, where
//! it fails.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client::{read_response, Response};
use super::server::{free_port, reap, run_within, wait_for};

/// The production VCL.
pub fn vcl_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/varnish/ocsp-origin.vcl")
}

/// `varnishd` on PATH or where Debian installs it.
fn varnishd() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("varnishd"));
    on_path.chain([PathBuf::from("/usr/sbin/varnishd")]).find(|p| p.is_file())
}

/// The production VCL with its backends block naming `origins` (one backend
/// each, all in the `origins` round-robin director).
pub fn vcl_for(origins: &[SocketAddr]) -> String {
    let text = std::fs::read_to_string(vcl_file()).unwrap();
    let (begin, end) = ("# BEGIN backends", "# END backends");
    let from = text.find(begin).expect("the VCL marks its backends block");
    let to = text[from..].find(end).map(|i| from + i + end.len()).expect("the backends block ends");
    let mut block = format!("{begin}\n");
    for (i, a) in origins.iter().enumerate() {
        block += &format!("backend origin{i} {{ .host = \"{}\"; .port = \"{}\"; }}\n", a.ip(), a.port());
    }
    block += "sub vcl_init {\n    new origins = directors.round_robin();\n";
    for i in 0..origins.len() {
        block += &format!("    origins.add_backend(origin{i});\n");
    }
    block += &format!("}}\n{end}");
    format!("{}{block}{}", &text[..from], &text[to..])
}

/// A running `varnishd -F`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Varnish {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Varnish {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SIGTERM: the manager stops its cache process before it exits.
            // SAFETY: kill(2) on our own child's pid.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM)
            };
            wait_for(Duration::from_secs(5), || matches!(c.try_wait(), Ok(Some(_))));
        }
        reap(&mut self.child);
    }
}

impl Varnish {
    /// Varnish in front of `origins`, or `None` (with a note) without
    /// `varnishd`, except under CI=true, where that panics.
    pub fn start(origins: &[SocketAddr]) -> Option<Varnish> {
        let Some(bin) = varnishd() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but varnishd is missing: apt-get install varnish varnish-modules (tests/run.sh does)");
            }
            eprintln!("note: varnishd missing, skipping (apt-get install varnish varnish-modules)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let vcl = dir.path().join("ocsp-origin.vcl");
        std::fs::write(&vcl, vcl_for(origins)).unwrap();
        let log_file = dir.path().join("varnishd.log");
        // A port may be taken between choosing and binding: a few tries.
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let log = std::fs::File::create(&log_file).unwrap();
            let mut child = Some(
                Command::new(&bin)
                    .arg("-F")
                    // No jail: the temp dir is this user's (as root the jail
                    // would switch to the varnish user, who cannot read it).
                    .args(["-j", "none", "-n"])
                    .arg(dir.path().join("n"))
                    .args(["-a", &addr.to_string(), "-T", "none", "-f"])
                    .arg(&vcl)
                    .args(["-s", "malloc,64m", "-p", "vsl_space=1M", "-p", "thread_pools=1"])
                    .args(["-p", "thread_pool_min=10", "-p", "thread_pool_max=100"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("spawn varnishd"),
            );
            let exited = |c: &mut Option<Child>| c.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            // Up once it answers a request it handles itself (a purge of a
            // tag nothing has).
            let up = wait_for(Duration::from_secs(15), || {
                exited(&mut child) || purge_at(addr, &["-"]).is_some_and(|(s, _)| s == 200)
            });
            if up && !exited(&mut child) {
                return Some(Varnish { child, addr, dir });
            }
            reap(&mut child);
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            assert!(log.contains("Address already in use"), "varnishd did not start:\n{log}");
        }
        panic!("varnishd found no free port");
    }

    /// What varnishd printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("varnishd.log")).unwrap_or_default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn roundtrip(&self, raw: &[u8]) -> Response {
        roundtrip_at(self.addr, raw)
            .unwrap_or_else(|| panic!("no answer from Varnish; its log:\n{}", self.log()))
    }

    /// A counter of `varnishstat -1` (`MAIN.cache_hit`, `MAIN.fetch_304`, …).
    pub fn stat(&self, counter: &str) -> u64 {
        let (ok, out) = run_within(
            Command::new("varnishstat").arg("-n").arg(self.dir.path().join("n")).args(["-1", "-f", counter]),
            Duration::from_secs(10),
        );
        assert!(ok, "varnishstat: {out}");
        let value = out.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(counter)).then(|| f.next().and_then(|v| v.parse().ok())).flatten()
        });
        value.unwrap_or_else(|| panic!("no counter {counter} in varnishstat's output:\n{out}"))
    }

    /// [`Varnish::stat`] once it stops moving (two reads 300 ms apart
    /// agree): worker threads add their counts to the totals a little after
    /// they answered, so a read right after an answer may not count it yet.
    pub fn stat_settled(&self, counter: &str) -> u64 {
        let mut last = self.stat(counter);
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.stat(counter);
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("{counter} keeps moving");
    }

    /// `PURGE` with `xkey-purge: <tags>` (no header when `tags` is empty):
    /// the status and `X-Purged`, the number of objects purged.
    pub fn purge(&self, tags: &[&str]) -> (u16, Option<u64>) {
        purge_at(self.addr, tags)
            .unwrap_or_else(|| panic!("no answer to PURGE; Varnish's log:\n{}", self.log()))
    }
}

/// One request on a new connection to `addr`, its response if one came.
fn roundtrip_at(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).ok()?;
    read_response(&mut BufReader::new(s), raw.starts_with(b"HEAD"))
}

/// [`Varnish::purge`] at `addr`, `None` without an answer.
fn purge_at(addr: SocketAddr, tags: &[&str]) -> Option<(u16, Option<u64>)> {
    let header = if tags.is_empty() { String::new() } else { format!("xkey-purge: {}\r\n", tags.join(" ")) };
    let r = roundtrip_at(addr, format!("PURGE / HTTP/1.1\r\nHost: v\r\n{header}\r\n").as_bytes())?;
    Some((r.status, r.header("x-purged").map(|n| n.parse().expect("X-Purged is a count"))))
}
