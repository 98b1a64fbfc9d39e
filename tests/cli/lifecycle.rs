//! Process lifecycle: SIGTERM drains (no new connections, requests already
//! sent are answered with `Connection: close`, idle connections close, exit
//! status 0), and SIGHUP reloads issuers and statuses without dropping
//! connections; a reload that cannot apply leaves the running config serving.

use crate::common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn request_for(serial: &str) -> Vec<u8> {
    post("/", &requests_for(&[serial.to_string()])[0])
}

/// Asks on a kept-alive connection and returns the first CertID's status.
fn ask(s: &mut TcpStream, r: &mut BufReader<TcpStream>, req: &[u8]) -> (String, Response) {
    s.write_all(req).unwrap();
    let resp = read_response(r, false).expect("an answer on the kept-alive connection");
    (ocsp_status(&resp.body), resp)
}

/// A copy of the test issuer with its own index.txt, so a test can edit it.
fn editable_issuer(dir: &std::path::Path) -> (ConfigBuilder, std::path::PathBuf) {
    let index = dir.join("index.txt");
    std::fs::copy(data("index.txt"), &index).unwrap();
    (ConfigBuilder::new().issuer(IssuerTable::test().index("index.txt")), index)
}

/// The test issuer, a long header timeout and a drain timeout of `ms`.
fn drain_limits(ms: i64) -> ConfigBuilder {
    ConfigBuilder::new()
        .set("limits", "header_timeout_ms", 60_000)
        .set("limits", "drain_timeout_ms", ms)
        .test_issuer()
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let mut server =
        Server::start(&ConfigBuilder::new().set("limits", "header_timeout_ms", 5000).test_issuer());
    let req = request_for(GOOD);

    // An idle kept-alive connection, one with half a request sent, and one
    // that has been answered once and is about to ask again.
    let mut idle = server.connect();
    let (mut busy, mut busy_r) = {
        let s = server.connect();
        (s.try_clone().unwrap(), BufReader::new(s))
    };
    assert_eq!(ask(&mut busy, &mut busy_r, &req).0, "good");
    let mut half = server.connect();
    let (head, rest) = req.split_at(20);
    half.write_all(head).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the server read the half

    let t0 = Instant::now();
    server.signal(libc::SIGTERM);

    // The idle connection is closed at once (EOF, not a reset or a hang).
    let mut buf = [0u8; 1];
    assert_eq!(idle.read(&mut buf).unwrap(), 0, "idle connection closed on drain");
    assert!(t0.elapsed() < Duration::from_secs(2), "idle close took {:?}", t0.elapsed());

    // Every shard has stopped accepting (each applies the drain on its own
    // thread, so wait until no listener is left).
    let until = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < until, "still accepting 3 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }

    // The half-sent request is finished and answered, with Connection: close.
    half.write_all(rest).unwrap();
    let mut r = BufReader::new(half.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("the in-flight request is answered");
    assert_eq!(resp.status, 200);
    assert_eq!(ocsp_status(&resp.body), "good");
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(r.read(&mut buf).unwrap(), 0, "then the connection closes");

    // The process exits 0 once its connections are done; `busy` was
    // answered and closed too, since it sat idle between requests.
    let status = server.wait_exit(Duration::from_secs(8)).expect("exits after draining");
    assert!(status.success(), "exit status {status}");
    assert_eq!(busy_r.read(&mut buf).unwrap_or(0), 0);
}

#[test]
fn drain_gives_up_on_a_stuck_client_after_the_grace_period() {
    // A client that never finishes its request holds the drain at most
    // limits.drain_timeout_ms (or its header timeout, whichever is first).
    let mut server = Server::start(&drain_limits(700));
    let mut stuck = server.connect();
    stuck.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits after the grace period");
    assert!(status.success(), "exit status {status}");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut server = Server::start(&drain_limits(30_000));
    let mut stuck = server.connect();
    stuck.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.wait_exit(Duration::from_millis(100)).is_none(), "still draining the stuck client");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(3)).expect("exits at the second signal");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn sighup_reloads_statuses_and_issuers_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (config, index) = editable_issuer(dir.path());
    let server = Server::start_in(dir, &config);
    let req = request_for(GOOD);
    let s = server.connect();
    let (mut w, mut r) = (s.try_clone().unwrap(), BufReader::new(s));
    let (status, first) = ask(&mut w, &mut r, &req);
    assert_eq!(status, "good");
    assert_eq!(ask(&mut w, &mut r, &req).1.header("x-cache-status"), Some("HIT"));

    // The CA revokes the certificate in index.txt, then signals.
    let text = std::fs::read_to_string(&index).unwrap().replace(
        &format!("V\t361125115433Z\t\t{GOOD}"),
        &format!("R\t361125115433Z\t261128120000Z,superseded\t{GOOD}"),
    );
    std::fs::write(&index, text).unwrap();
    server.signal(libc::SIGHUP);

    // On the same connection the answer turns to revoked, soon, and it was
    // signed afresh (the old response is never served again).
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, resp) = ask(&mut w, &mut r, &req);
        if status == "revoked" {
            assert_eq!(resp.header("x-cache-status"), Some("MISS"));
            assert_ne!(resp.body, first.body);
            break;
        }
        assert_eq!(status, "good");
        assert!(Instant::now() < until, "reload not applied within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both shards: fresh connections (spread by SO_REUSEPORT) all see it.
    for _ in 0..8 {
        assert_eq!(ocsp_status(&roundtrip(&server, &req).body), "revoked");
    }
}

#[test]
fn a_reload_that_cannot_apply_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, index) = editable_issuer(dir.path());
    let server = Server::start_in(dir, &config);
    let cfg = server.config_file();
    let req = request_for(REVOKED);
    let s = server.connect();
    let (mut w, mut r) = (s.try_clone().unwrap(), BufReader::new(s));
    assert_eq!(ask(&mut w, &mut r, &req).0, "revoked");

    // 1. A broken index.txt (line 2 unreadable), 2. a setting that needs a
    // restart: each reload is refused as a whole and the server keeps
    // answering from what it had, on the same connection.
    // Pending signals of one kind coalesce, so each step gets time to be
    // handled (a reload of this config takes a few ms) before the next edit.
    let reload = || {
        server.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(500));
    };
    std::fs::write(&index, "V\t361125115433Z\t\t0A1B\tunknown\t/CN=x\nthis is not a line\n").unwrap();
    reload();
    std::fs::write(&index, std::fs::read_to_string(data("index.txt")).unwrap()).unwrap();
    config.for_server().cores(1).write(&cfg);
    reload();
    std::fs::write(&cfg, "not toml [").unwrap();
    reload();
    for _ in 0..5 {
        let (status, resp) = ask(&mut w, &mut r, &req);
        assert_eq!(status, "revoked");
        assert_eq!(resp.header("x-cache-status"), Some("HIT"), "L1 kept: nothing was swapped");
    }
    assert_eq!(ocsp_status(&roundtrip(&server, &request_for(GOOD)).body), "good");
}
