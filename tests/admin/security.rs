//! The admin surface against the real binary: mutating calls need the bearer
//! token (401 without or with a wrong one, 403 when no `admin.token_file` is
//! set), a caller from a non-loopback address gets 401 for everything,
//! `POST /revoke` records a revocation in a real MariaDB and pushes it to the
//! caches, `POST /reload` reloads, and no secret (database and Redis
//! passwords, the HSM PIN, the admin token) ever appears in any output, log,
//! error or metric.

use crate::common;

use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

/// A port for a listener the server binds itself, free now on every
/// address: from the process's one port cursor (`common::free_port`), so it
/// is never a port another test of this binary was just given. (A random
/// pick of its own here once gave `metrics_and_histograms`' admin port to a
/// second server: "Address already in use" in CI.)
fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = crate::common::free_port();
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on every address");
}

/// A random hex mark, so secrets are strings nothing else prints.
fn mark() -> String {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `content` to `dir/name`, mode 0600.
fn secret_file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// One call to the admin listener at `addr`, from local address `from` (any
/// when `None`), with extra header lines and a form body.
fn call(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Response {
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
    if let Some(ip) = from {
        sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    }
    sock.connect_timeout(&addr.into(), Duration::from_secs(5)).unwrap();
    let mut c: TcpStream = sock.into();
    if let Some(ip) = from {
        assert_eq!(c.local_addr().unwrap().ip(), ip, "the call comes from {ip}");
    }
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The answer may come (and the connection close) before all of an
    // oversized request is written: a failed write is not the verdict.
    let sent = write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    let got = std::io::Read::read_to_end(&mut c, &mut raw);
    read_response(&mut BufReader::new(&raw[..]), false).unwrap_or_else(|| {
        panic!(
            "{method} {path}: no answer (write {sent:?}, read {got:?}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn assert_401(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {} {}", r.status, text(r));
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: WWW-Authenticate {challenge:?}");
    assert!(!text(r).contains("ocsp_origin_"), "{what}: no metrics in a 401");
}

/// A server with an admin listener on `ip` and, with `token`, a token file.
struct Admin {
    server: Server,
    /// Where to reach the admin listener (loopback when it listens on 0.0.0.0).
    addr: SocketAddr,
}

fn start_admin(ip: &str, token: Option<&str>, config: ConfigBuilder) -> Admin {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = config.admin(format!("{ip}:{port}"));
    if let Some(t) = token {
        secret_file(dir.path(), "admin-token", &format!("{t}\n"));
        config = config.set("admin", "token_file", "admin-token");
    }
    let server = Server::start_in(dir, &config);
    let ip: IpAddr = ip.parse().unwrap();
    let ip = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
    let addr = SocketAddr::new(ip, port);
    wait_for_admin(addr);
    Admin { server, addr }
}

/// Waits (5 s at most) until the admin listener accepts connections: the
/// server says "listening" before it binds the admin address (see
/// `regression_admin_listener_is_bound_before_ready`).
fn wait_for_admin(addr: SocketAddr) {
    assert!(
        poll_until(Duration::from_secs(5), || TcpStream::connect(addr).is_ok()),
        "the admin listener on {addr} never came up"
    );
}

/// The server prints "listening" (its readiness signal; `app::run`'s
/// `on_ready` promises every listener is bound by then) before it binds the
/// admin listener, so a script or probe that calls the admin API as soon as
/// the server is ready can be refused.
#[test]
fn regression_admin_listener_is_bound_before_ready() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let s = Server::start_in(dir, &ConfigBuilder::new().admin(format!("127.0.0.1:{port}")).test_issuer());
        let first = TcpStream::connect(("127.0.0.1", port));
        assert!(first.is_ok(), "the admin call right after \"listening\" was refused: {first:?}");
        drop(s);
    }
}

/// The first-CertID status the server gives the good test certificate, on a
/// fresh connection.
fn status_of_good(s: &Server) -> String {
    let resp = roundtrip(s, &post("/", &std::fs::read(data("openssl-sha1.der")).unwrap()));
    assert_eq!(resp.status, 200);
    ocsp_status(&resp.body)
}

#[test]
fn mutating_calls_need_the_bearer_token() {
    let token = format!("tok-{}", mark());
    let a = start_admin("127.0.0.1", Some(&token), ConfigBuilder::new().test_issuer());
    for path in ["/reload", "/revoke"] {
        assert_401(&call(a.addr, None, "POST", path, "", ""), &format!("{path} without a token"));
        assert_401(
            &call(a.addr, None, "POST", path, &bearer("tok-wrong"), ""),
            &format!("{path}, wrong token"),
        );
        let prefix = &token[..token.len() - 1];
        assert_401(&call(a.addr, None, "POST", path, &bearer(prefix), ""), &format!("{path}, a prefix"));
        let basic = format!("Authorization: Basic {token}\r\n");
        assert_401(&call(a.addr, None, "POST", path, &basic, ""), &format!("{path}, another scheme"));
        let twice = format!("{}{}", bearer("tok-wrong"), bearer(&token));
        assert_401(
            &call(a.addr, None, "POST", path, &twice, ""),
            &format!("{path}, two Authorization fields"),
        );
        // With the token the method is checked next.
        let r = call(a.addr, None, "GET", path, &bearer(&token), "");
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "{path}");
    }
    // Reads stay open on loopback.
    let r = call(a.addr, None, "GET", "/metrics", "", "");
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("ocsp_origin_shard_total"));
    assert_eq!(call(a.addr, None, "GET", "/histograms/request.hgrm", "", "").status, 200);
    assert_eq!(call(a.addr, None, "GET", "/nope", "", "").status, 404);
    let r = call(a.addr, None, "POST", "/metrics", "", "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    // The token works (any case of the scheme), and a revocation here says
    // where statuses come from.
    let lower = format!("Authorization: bearer {token}\r\n");
    let r = call(a.addr, None, "POST", "/revoke", &lower, "issuer=test&serial=0A&reason=keyCompromise");
    assert_eq!(r.status, 409, "{}", text(&r));
    assert!(text(&r).contains("index.txt") && text(&r).contains("POST /reload"), "{}", text(&r));
    // The OCSP listener knows nothing of these.
    assert_eq!(roundtrip(&a.server, &post("/reload", b"")).body, ocsp_error(1));
}

#[test]
fn the_admin_listener_is_bounded() {
    // Not start_admin: its readiness probe would hold a slot for a moment.
    let port = free_port();
    let server = Server::start(&ConfigBuilder::new().admin(format!("127.0.0.1:{port}")).test_issuer());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Eight callers that never finish their request hold every slot...
    let mut silent = Vec::new();
    let held = poll_until(Duration::from_secs(5), || {
        if let Ok(mut c) = TcpStream::connect(addr) {
            c.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            silent.push(c);
        }
        silent.len() == 8
    });
    assert!(held, "the admin listener came up");
    let a = Admin { server, addr };
    let start = Instant::now();
    // ...so a ninth is told so at once instead of waiting behind them.
    let r = call(a.addr, None, "GET", "/metrics", "", "");
    assert_eq!(r.status, 503, "{}", text(&r));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    // They get 408 at the 5 s request deadline, and the listener serves again.
    for mut c in silent {
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let r = read_response(&mut BufReader::new(&mut c), false).expect("a 408");
        assert_eq!(r.status, 408);
    }
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    assert_eq!(call(a.addr, None, "GET", "/metrics", "", "").status, 200);
    // Heads and bodies are size-limited like on the OCSP listener.
    let big = format!("X-Pad: {}\r\n", "a".repeat(9000));
    assert_eq!(call(a.addr, None, "GET", "/metrics", &big, "").status, 431);
    let body = "issuer=".to_string() + &"a".repeat(5000);
    assert_eq!(call(a.addr, None, "POST", "/revoke", "", &body).status, 413);
}

#[test]
fn without_a_token_file_mutating_calls_are_disabled() {
    let a = start_admin("127.0.0.1", None, ConfigBuilder::new().test_issuer());
    for path in ["/reload", "/revoke"] {
        for headers in [String::new(), bearer("anything")] {
            let r = call(a.addr, None, "POST", path, &headers, "issuer=test&serial=0A&reason=keyCompromise");
            assert_eq!(r.status, 403, "{path}: {}", text(&r));
            assert!(text(&r).contains("set admin.token_file"), "{}", text(&r));
        }
    }
    assert_eq!(call(a.addr, None, "GET", "/metrics", "", "").status, 200);
    assert_eq!(status_of_good(&a.server), "good", "nothing was reloaded or revoked");
}

/// The first non-loopback IPv4 address of this machine.
#[allow(unsafe_code)]
fn non_loopback_ipv4() -> Option<Ipv4Addr> {
    let mut found = None;
    // SAFETY: getifaddrs fills a list we walk read-only and then free.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let a = (*cur).ifa_addr;
            if !a.is_null() && i32::from((*a).sa_family) == libc::AF_INET {
                let ip = Ipv4Addr::from(u32::from_be((*(a as *const libc::sockaddr_in)).sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_unspecified() && found.is_none() {
                    found = Some(ip);
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

#[test]
fn a_remote_caller_gets_401_for_everything() {
    let Some(ip) = non_loopback_ipv4() else {
        let msg = "this machine has no non-loopback IPv4 address: a remote caller cannot be simulated \
                   (admin::access::tests::the_access_rules covers the peer check)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("note: {msg}");
        return;
    };
    let token = format!("tok-{}", mark());
    let a = start_admin("0.0.0.0", Some(&token), ConfigBuilder::new().test_issuer());
    let remote = SocketAddr::new(IpAddr::V4(ip), a.addr.port());
    let from = Some(IpAddr::V4(ip));
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/histograms/request.hgrm"),
        ("GET", "/nope"),
        ("POST", "/reload"),
        ("POST", "/revoke"),
        ("DELETE", "/metrics"),
    ] {
        let what = format!("{method} {path} from {ip}");
        assert_401(&call(remote, from, method, path, "", ""), &what);
        assert_401(&call(remote, from, method, path, &bearer("tok-wrong"), ""), &what);
    }
    // With the token the same caller is served.
    let r = call(remote, from, "GET", "/metrics", &bearer(&token), "");
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("ocsp_origin_shard_total"));
    // On a listener off loopback, loopback callers need the token too.
    assert_401(&call(a.addr, None, "GET", "/metrics", "", ""), "GET /metrics on 0.0.0.0 from loopback");
    assert_eq!(call(a.addr, None, "GET", "/metrics", &bearer(&token), "").status, 200);
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    for listen in ["0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090"] {
        ConfigBuilder::new().admin(listen).test_issuer().write(&cfg);
        let (ok, out) = run(bin().arg("check-config").arg(&cfg));
        assert!(!ok && out.contains("admin.token_file: required"), "{listen}: {out}");
        let (ok, out) = run(bin().args(["serve", "--config"]).arg(&cfg));
        assert!(!ok && out.contains("admin.token_file"), "{listen}: {out}");
    }
    // An empty or missing token file is refused by name; a readable one is warned about.
    let token = dir.path().join("t");
    std::fs::write(&token, " \n").unwrap();
    ConfigBuilder::new().admin("127.0.0.1:9090").set("admin", "token_file", "t").test_issuer().write(&cfg);
    let (ok, out) = run(bin().arg("check-config").arg(&cfg));
    assert!(!ok && out.contains("admin.token_file") && out.contains("is empty"), "{out}");
    std::fs::write(&token, "tok-readable\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = run(bin().arg("check-config").arg(&cfg));
    assert!(ok && out.contains("readable by group or others"), "{out}");
    assert!(!out.contains("tok-readable"), "{out}");
}

#[test]
fn reload_with_the_token_picks_up_a_changed_index() {
    let token = format!("tok-{}", mark());
    let dir = tempfile::tempdir().unwrap();
    let index = std::fs::read_to_string(data("index.txt")).unwrap();
    std::fs::write(dir.path().join("index.txt"), &index).unwrap();
    let port = free_port();
    secret_file(dir.path(), "admin-token", &token);
    // The issuer's index.txt lives in the server's directory.
    let config = ConfigBuilder::new()
        .admin(format!("127.0.0.1:{port}"))
        .set("admin", "token_file", "admin-token")
        .issuer(IssuerTable::test().index("index.txt"));
    let s = Server::start_in(dir, &config);
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_admin(admin);
    assert_eq!(status_of_good(&s), "good");
    // The CA revokes the good certificate in its database; the server reloads.
    let revoked =
        index.replace("V\t361125115433Z\t\t0A1B", "R\t361125115433Z\t261120000000Z,keyCompromise\t0A1B");
    assert_ne!(revoked, index);
    std::fs::write(s.dir.path().join("index.txt"), &revoked).unwrap();
    assert_401(&call(admin, None, "POST", "/reload", "", ""), "reload without the token");
    assert_eq!(status_of_good(&s), "good", "not reloaded without the token");
    let r = call(admin, None, "POST", "/reload", &bearer(&token), "");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).starts_with("reloaded: "), "{}", text(&r));
    for _ in 0..10 {
        assert_eq!(status_of_good(&s), "revoked", "every shard answers from the reloaded index");
    }
    // A broken index: the reload fails, says why, and the server keeps serving.
    std::fs::write(s.dir.path().join("index.txt"), "garbage\n").unwrap();
    let r = call(admin, None, "POST", "/reload", &bearer(&token), "");
    assert_eq!(r.status, 500, "{}", text(&r));
    assert!(text(&r).contains("index"), "{}", text(&r));
    assert_eq!(status_of_good(&s), "revoked");
}

/// A fresh database holding the test issuer's certificates; its URL.
fn database_with_certificates(tag: &str) -> Option<String> {
    let url = test_database(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    ConfigBuilder::new().mysql(&url).issuer(IssuerTable::test()).write(&cfg);
    migrate_and_import(&cfg, &data("index.txt"));
    Some(url)
}

/// (status, reason, revoked_at, revision) of a certificate of issuer "test".
fn row(url: &str, serial_hex: &str) -> (u8, Option<u8>, Option<u64>, u64) {
    use mysql::prelude::Queryable;
    let serial: Vec<u8> = (0..serial_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial_hex[i..i + 2], 16).unwrap())
        .collect();
    let pool = mysql::Pool::new(url).unwrap();
    pool.get_conn()
        .unwrap()
        .exec_first(
            "SELECT status, reason, revoked_at, revision FROM ocsp_certificates WHERE issuer = 'test' AND serial = ?",
            (serial,),
        )
        .unwrap()
        .expect("the row")
}

fn poll_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn revoke_with_the_token_records_it_in_the_database() {
    let Some(url) = database_with_certificates("adminrevoke") else { return };
    let token = format!("tok-{}", mark());
    let a =
        start_admin("127.0.0.1", Some(&token), ConfigBuilder::new().mysql(&url).issuer(IssuerTable::test()));
    assert_eq!(status_of_good(&a.server), "good");
    let form = format!("issuer=test&serial={GOOD}&reason=keyCompromise&at=2026-11-01T12%3A00%3A00Z");
    assert_401(&call(a.addr, None, "POST", "/revoke", "", &form), "revoke without the token");
    assert_401(&call(a.addr, None, "POST", "/revoke", &bearer("nope"), &form), "revoke, wrong token");
    assert_eq!(row(&url, GOOD), (0, None, None, 2), "nothing written without the token");

    // Input errors name the field; nothing is written.
    for (body, status, says) in [
        ("issuer=test&serial=0A1B2C3D4E5F60718293&reason=whim", 400, "reason: unknown reason"),
        ("issuer=nobody&serial=0A1B2C3D4E5F60718293&reason=keyCompromise", 400, "issuer: no issuer named"),
        ("issuer=test&serial=xyz&reason=keyCompromise", 400, "serial"),
        ("issuer=test&serial=0A1B2C3D4E5F60718293&reason=keyCompromise&at=soon", 400, "at: cannot read"),
        ("issuer=test&reason=keyCompromise", 400, "serial is required"),
        ("issuer=test&serial=0A1B2C3D4E5F60718293&reason=keyCompromise&pin=1", 400, "unknown field"),
        ("issuer=test&serial=0BADBAD0&reason=keyCompromise", 404, "no certificate 0BADBAD0"),
    ] {
        let r = call(a.addr, None, "POST", "/revoke", &bearer(&token), body);
        assert_eq!(r.status, status, "{body}: {}", text(&r));
        assert!(text(&r).contains(says), "{body}: {}", text(&r));
    }
    assert_eq!(row(&url, GOOD), (0, None, None, 2));

    let r = call(a.addr, None, "POST", "/revoke", &bearer(&token), &form);
    let body = text(&r);
    assert!(
        body.starts_with(&format!(
            "revoked {GOOD} of \"test\" (keyCompromise) in the database at revision 4; no shared cache"
        )),
        "{body}"
    );
    assert!(body.contains(" of 2 shards of this node dropped their cached copies"), "{body}");
    // Whether every shard confirmed is `revoke_drops_every_cached_copy_at_once`'s concern.
    assert_eq!(row(&url, GOOD), (1, Some(1), Some(1_793_534_400), 4), "revision: the change feed position");
    // The query string works as well as a form body; revoking twice is a conflict.
    let r = call(
        a.addr,
        None,
        "POST",
        &format!("/revoke?issuer=test&serial={GOOD}&reason=superseded"),
        &bearer(&token),
        "",
    );
    assert_eq!(r.status, 409, "{}", text(&r));
    assert!(text(&r).contains("already revoked"), "{}", text(&r));
    assert_eq!(row(&url, GOOD).3, 4, "no second change");
    // Every connection sees it at once (this node's shards were told).
    assert!((0..6).all(|_| status_of_good(&a.server) == "revoked"), "revoked everywhere");
}

#[test]
fn revoke_drops_every_cached_copy_at_once() {
    let Some(url) = database_with_certificates("admininval") else { return };
    let token = format!("tok-{}", mark());
    // L1 entries would live an hour: only the invalidation can make the change visible.
    let config =
        ConfigBuilder::new().set("cache", "l1_max_age_secs", 3600).mysql(&url).issuer(IssuerTable::test());
    let a = start_admin("127.0.0.1", Some(&token), config);
    for _ in 0..20 {
        assert_eq!(status_of_good(&a.server), "good"); // fresh connections: both shards cache it
    }
    let form = format!("issuer=test&serial={GOOD}&reason=keyCompromise");
    let r = call(a.addr, None, "POST", "/revoke", &bearer(&token), &form);
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("2 of 2 shards of this node dropped their cached copies"), "{}", text(&r));
    for i in 0..20 {
        assert_eq!(status_of_good(&a.server), "revoked", "connection {i}, right after the 200");
    }
}

#[test]
fn revoke_tombstones_the_shared_cache_for_other_nodes() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "admin revoke with Redis") else { return };
    let Some(url) = database_with_certificates("adminredis") else { return };
    let token = format!("tok-{}", mark());
    let shared = ConfigBuilder::new()
        .set("cache", "l1_max_age_secs", 3600)
        .mysql(&url)
        .redis(&redis)
        .set("redis", "key_prefix", unique_prefix("adm"))
        .issuer(IssuerTable::test());
    let a = start_admin("127.0.0.1", Some(&token), shared.clone());
    // Another node, sharing the database and Redis, without an admin listener.
    let other = Server::start(&shared);
    for _ in 0..10 {
        assert_eq!(status_of_good(&a.server), "good");
        assert_eq!(status_of_good(&other), "good");
    }
    let form = format!("issuer=test&serial={GOOD}&reason=keyCompromise");
    let r = call(a.addr, None, "POST", "/revoke", &bearer(&token), &form);
    assert!(
        text(&r).contains("revision 4; tombstoned in Redis, every tracking node drops its copy"),
        "{}",
        text(&r)
    );
    // The other node dropped its copies through Redis tracking: within the
    // settle time the revoke waited, every one of its connections says revoked.
    for i in 0..10 {
        assert_eq!(status_of_good(&other), "revoked", "other node, connection {i}");
    }
}

/// Asserts none of `secrets` occurs in `seen`, quoting where one does.
fn assert_no_secret(seen: &str, secrets: &[&str]) {
    for s in secrets {
        if let Some(i) = seen.find(s) {
            let from = seen[..i].char_indices().rev().nth(200).map(|(j, _)| j).unwrap_or(0);
            let to = (i + s.len() + 200).min(seen.len());
            panic!("secret {s:?} leaked: …{}…", &seen[from..to]);
        }
    }
}

#[test]
fn secrets_never_appear_in_output_logs_errors_or_metrics() {
    let Some(root_url) = database_with_certificates("secrets") else { return };
    let m = mark();
    let (db_pw, db_wrong, redis_pw, pin, pin_wrong, token, token_wrong) = (
        format!("dbpw-{m}"),
        format!("dbwrong-{m}"),
        format!("rdpw-{m}"),
        format!("pin-{m}"),
        format!("pinwrong-{m}"),
        format!("tok-{m}"),
        format!("tokwrong-{m}"),
    );
    let secrets = [db_pw.as_str(), &db_wrong, &redis_pw, &pin, &pin_wrong, &token, &token_wrong];

    // A database user with a password, on the test database.
    use mysql::prelude::Queryable;
    let (server_part, db_name) = root_url.trim_start_matches("mysql://root@").split_once('/').unwrap();
    let user = format!("sec{m}");
    let mut root = mysql::Pool::new(root_url.as_str()).unwrap().get_conn().unwrap();
    root.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{db_pw}'")).unwrap();
    root.query_drop(format!("GRANT ALL ON {db_name}.* TO '{user}'@'%'")).unwrap();
    let db_url = |pw: &str, at: &str| format!("mysql://{user}:{pw}@{at}/{db_name}");
    let dead = format!("127.0.0.1:{}", free_port());
    // Redis with a password it does not have (AUTH fails), or where nothing listens.
    let redis_url = match std::env::var("OCSP_TEST_REDIS_URL") {
        Ok(u) => u.replacen("redis://", &format!("redis://:{redis_pw}@"), 1),
        Err(_) => format!("redis://:{redis_pw}@{dead}"),
    };
    // The issuer's key in SoftHSM2 behind a PIN from a file.
    let hsm = Token::with_pin("secrets", &pin);
    hsm.import(&data("ca.key"), "issuer", "01");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret_file(d, "pin", &format!("{pin}\n"));
    secret_file(d, "pin-wrong", &format!("{pin_wrong}\n"));
    secret_file(d, "admin-token", &format!("{token}\n"));
    let admin_port = free_port();
    let top = |db: &str, pin_file: &str| {
        ConfigBuilder::new()
            .admin(format!("127.0.0.1:{admin_port}"))
            .set("admin", "token_file", d.join("admin-token").display().to_string())
            .mysql(db)
            .set("mysql", "timeout_ms", 1000)
            .redis(&redis_url)
            .set("redis", "command_timeout_ms", 50)
            .set("redis", "connect_timeout_ms", 200)
            .issuer(
                IssuerTable::new("test", data("ca.pem"))
                    .pkcs11(hsm.pkcs11("issuer").pin_file(d.join(pin_file))),
            )
    };
    let good = top(&db_url(&db_pw, server_part), "pin");
    let env = [
        ("SOFTHSM2_CONF".to_string(), hsm.conf.display().to_string()),
        ("RUST_LOG".to_string(), "debug".to_string()),
    ];
    let mut seen = String::new();
    let mut cli = |name: &str, config: &ConfigBuilder, args: &[&str], expect_ok: bool| {
        let f = config.clone().for_server().write(d.join(format!("{name}.toml")));
        let mut cmd = bin();
        for a in args {
            cmd.arg(if *a == "CONFIG" { f.as_os_str() } else { std::ffi::OsStr::new(a) });
        }
        // `serve` with a bad secret must stop by itself; a hang fails here.
        let (ok, out) = run_within(cmd.envs(env.iter().map(|(k, v)| (k, v))), Duration::from_secs(60));
        assert_eq!(ok, expect_ok, "{name}: {out}");
        seen.push_str(&format!("--- {name}\n{out}\n"));
        out
    };
    let out = cli("good", &good, &["check-config", "CONFIG"], true);
    assert!(out.contains("OK (1 issuer(s)"), "{out}");
    let out = cli(
        "wrong-db-password",
        &top(&db_url(&db_wrong, server_part), "pin"),
        &["check-config", "CONFIG"],
        false,
    );
    assert!(out.contains("mysql") && out.contains("Access denied"), "the error says why: {out}");
    cli("db-unreachable", &top(&db_url(&db_pw, &dead), "pin"), &["check-config", "CONFIG"], false);
    let bad_port = top(&db_url(&db_pw, "127.0.0.1:notaport"), "pin");
    let out = cli("db-url-unreadable", &bad_port, &["check-config", "CONFIG"], false);
    assert!(out.contains("mysql.url"), "{out}");
    let out =
        cli("wrong-pin", &top(&db_url(&db_pw, server_part), "pin-wrong"), &["check-config", "CONFIG"], false);
    assert!(out.contains("PIN"), "the error says why: {out}");
    cli(
        "serve-wrong-db-password",
        &top(&db_url(&db_wrong, server_part), "pin"),
        &["serve", "--config", "CONFIG"],
        false,
    );
    cli(
        "serve-wrong-pin",
        &top(&db_url(&db_pw, server_part), "pin-wrong"),
        &["serve", "--config", "CONFIG"],
        false,
    );
    let revoke_args =
        ["revoke", "--config", "CONFIG", "--issuer", "test", "--serial", "0BAD", "--reason", "keyCompromise"];
    cli("cli-revoke-unknown", &good, &revoke_args, false);
    cli("cli-revoke-wrong-db-password", &top(&db_url(&db_wrong, server_part), "pin"), &revoke_args, false);
    let revoke_revoked = [
        "revoke",
        "--config",
        "CONFIG",
        "--issuer",
        "test",
        "--serial",
        REVOKED,
        "--reason",
        "keyCompromise",
    ];
    // Already revoked by the import: refused; the database answered through the password URL.
    let out = cli("cli-revoke-refused", &good, &revoke_revoked, false);
    assert!(out.contains("already revoked"), "{out}");

    // A running server, logging at debug level, with Redis failing under it.
    let s = Server::start_logged(tempfile::tempdir().unwrap(), &good, &env);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    wait_for_admin(admin);
    assert_eq!(status_of_good(&s), "good", "signed in the HSM, status from MySQL, Redis failing");
    let up = call(admin, None, "GET", "/metrics", &bearer(&token), "");
    assert!(text(&up).contains("ocsp_origin_status_source_up{source=\"mysql\"} 1"), "{}", text(&up));
    let mut answers = Vec::new();
    answers.push(call(
        admin,
        None,
        "POST",
        "/revoke",
        &bearer(&token_wrong),
        "issuer=test&serial=0A&reason=keyCompromise",
    ));
    answers.push(call(admin, None, "POST", "/reload", &bearer(&token_wrong), ""));
    answers.push(call(admin, None, "POST", "/reload", &bearer(&token), ""));
    let r =
        call(admin, None, "POST", "/revoke", &bearer(&token), "issuer=test&serial=0BAD&reason=keyCompromise");
    assert_eq!(r.status, 404, "{}", text(&r));
    answers.push(r);
    // Now the database refuses this user: lookups and revocations fail at run time.
    root.query_drop(format!("ALTER USER '{user}'@'%' IDENTIFIED BY '{db_wrong}'")).unwrap();
    let ids: Vec<u64> =
        root.query(format!("SELECT id FROM information_schema.processlist WHERE user = '{user}'")).unwrap();
    for id in ids {
        let _ = root.query_drop(format!("KILL CONNECTION {id}"));
    }
    let revoked_req = requests_for(&[REVOKED.to_string()]).remove(0);
    let resp = roundtrip(&s, &post("/", &revoked_req));
    assert_eq!(resp.body, ocsp_error(3), "tryLater while the database refuses");
    let r = call(
        admin,
        None,
        "POST",
        "/revoke",
        &bearer(&token),
        &format!("issuer=test&serial={GOOD}&reason=keyCompromise"),
    );
    assert_eq!(r.status, 503, "{}", text(&r));
    answers.push(r);
    std::thread::sleep(Duration::from_millis(1500)); // shards publish metrics once a second
    let r = call(admin, None, "GET", "/metrics", &bearer(&token), "");
    assert_eq!(r.status, 200);
    // The operator sees the database as down, not only in the log.
    assert!(text(&r).contains("ocsp_origin_status_source_up{source=\"mysql\"} 0"), "{}", text(&r));
    answers.push(r);
    for r in &answers {
        seen.push_str(&format!("--- admin {}\n{:?}\n{}\n", r.status, r.headers, text(r)));
    }
    let log = s.log();
    assert!(
        poll_until(Duration::from_secs(3), || s.log().contains("status database unreachable")),
        "the run-time database error is logged: {log}"
    );
    seen.push_str(&s.log());
    seen.push_str(&s.stdout());
    assert!(seen.contains("Access denied"), "errors reached the output: {seen}");
    assert_no_secret(&seen, &secrets);
}
