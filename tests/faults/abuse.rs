//! Hostile input against the real binary: slowloris, header floods, huge and
//! endless bodies, thousands of idle connections, pipelining floods, a client
//! that never reads, invalid UTF-8 and NULs, and a request for 10,000 CertIDs.
//!
//! For each abuse the test asserts the exact answer (status, `Connection:
//! close` and an actual close where the connection cannot be trusted,
//! `malformedRequest` for bad OCSP), that it comes within a bound derived from
//! the configured limits, that the server's memory stays bounded where the
//! abuse could make it grow, and that a normal request on a fresh connection
//! is still answered promptly meanwhile. Limits and timeouts are configured
//! small so the suite is fast.

use crate::common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_millis(2000);
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Slack for a debug build on a small, shared machine: scheduling, not work.
const SLACK: Duration = Duration::from_millis(1500);
/// How long a normal request may take while the server is being abused.
const NORMAL: Duration = Duration::from_secs(1);

/// The test issuer, with the suite's small timeouts.
fn limits() -> ConfigBuilder {
    ConfigBuilder::new()
        .set("limits", "header_timeout_ms", ms(HEADER_TIMEOUT))
        .set("limits", "idle_timeout_ms", ms(IDLE_TIMEOUT))
        .set("limits", "write_timeout_ms", ms(WRITE_TIMEOUT))
        .test_issuer()
}

fn server() -> Server {
    Server::start(&limits())
}

/// The server's resident memory once warmed up (first signature, connection
/// buffers, allocator arenas, a few probes), as the baseline for growth.
fn warm_rss(s: &Server) -> u64 {
    let stop = Arc::new(AtomicBool::new(true));
    for _ in 0..3 {
        assert_serves(s, "warm-up");
    }
    prober(s, stop).join().unwrap();
    s.rss_kib()
}

fn request_der() -> Vec<u8> {
    std::fs::read(data("openssl-sha1.der")).unwrap()
}

/// A real OCSP request on a fresh connection is answered `good` within [`NORMAL`].
fn assert_serves(s: &Server, what: &str) {
    let start = Instant::now();
    let resp = roundtrip(s, &post("/", &request_der()));
    let took = start.elapsed();
    assert_eq!(resp.status, 200, "{what}");
    assert_eq!(ocsp_status(&resp.body), "good", "{what}");
    assert!(took < NORMAL, "{what}: a normal request took {took:?}");
}

/// Keeps asking normal requests on fresh connections until `stop`; returns
/// how many were answered and the slowest. Panics on a wrong answer.
fn prober(s: &Server, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, Duration)> {
    let addr = s.addr;
    let req = post("/", &request_der());
    std::thread::spawn(move || {
        let (mut n, mut worst) = (0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let mut c = TcpStream::connect(addr).expect("normal client connects");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(&req).unwrap();
            let resp = read_response(&mut BufReader::new(c), false).expect("normal client answered");
            assert_eq!(resp.status, 200);
            assert_eq!(ocsp_status(&resp.body), "good");
            worst = worst.max(start.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (n, worst)
    })
}

/// True when a read error means the peer closed (RST), not a timeout.
fn is_reset(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe)
}

/// Reads one answer on `c` within `within`, then whether the server closed
/// the connection (FIN or RST) within the rest of it.
fn answer_then_close(c: &TcpStream, within: Duration) -> (Response, bool) {
    let deadline = Instant::now() + within;
    c.set_read_timeout(Some(within)).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("an answer within the bound");
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    c.set_read_timeout(Some(left)).unwrap();
    let mut rest = Vec::new();
    let closed = match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => is_reset(&e),
    };
    (resp, closed)
}

/// How a [`flood`] ended.
struct Flooded {
    /// Bytes the kernel took.
    sent: usize,
    /// When the last write returned.
    ended: Instant,
    /// Whether the server cut it off (reset or broken pipe), rather than the
    /// byte budget running out or a write timing out.
    cut: bool,
}

/// Writes `chunk` repeatedly on a clone of `c` until a write fails or `limit`
/// bytes were written. A write blocked for 20 s ends it too (not `cut`).
fn flood(c: &TcpStream, chunk: Vec<u8>, limit: usize) -> std::thread::JoinHandle<Flooded> {
    let mut w = c.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    std::thread::spawn(move || {
        let mut sent = 0;
        while sent < limit {
            match w.write(&chunk[..chunk.len().min(limit - sent)]) {
                Ok(n) => sent += n,
                Err(e) => return Flooded { sent, ended: Instant::now(), cut: is_reset(&e) },
            }
        }
        Flooded { sent, ended: Instant::now(), cut: false }
    })
}

fn assert_limit_answer(resp: &Response, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {resp:?}");
    assert_eq!(resp.header("connection"), Some("close"), "{what}");
    assert_eq!(resp.header("cache-control"), Some("max-age=0, no-cache"), "{what}");
}

/// Sends `head` and then `chunk` over and over (up to 256 MiB): the server
/// must answer `status` with `Connection: close`, close the connection and so
/// cut the flood off, all within [`NORMAL`] + [`SLACK`], without its memory
/// growing more than 16 MiB; and then still serve a normal request.
fn assert_cut_off(s: &Server, head: &[u8], chunk: Vec<u8>, status: u16, what: &str) {
    let before = warm_rss(s);
    let c = s.connect();
    let start = Instant::now();
    (&c).write_all(head).unwrap();
    let writer = flood(&c, chunk, 256 << 20);
    let (resp, closed) = answer_then_close(&c, NORMAL + SLACK);
    let answered = start.elapsed();
    assert_limit_answer(&resp, status, what);
    assert!(closed, "{what}: the connection is closed after the answer");
    assert!(answered < NORMAL + SLACK, "{what}: answered after {answered:?}");
    let f = writer.join().unwrap();
    assert!(f.cut, "{what}: the server cut the flood off by closing ({} bytes sent)", f.sent);
    assert!(f.ended - start < NORMAL + SLACK, "{what}: cut after {:?}", f.ended - start);
    // What the kernel's buffers took, not what the server read.
    assert!(f.sent < 64 << 20, "{what}: {} bytes went in before the cut", f.sent);
    let grew = s.rss_kib().saturating_sub(before);
    assert!(grew < 16 << 10, "{what}: memory grew by {grew} KiB");
    assert_serves(s, what);
}

// ---------------------------------------------------------------- slowloris

#[test]
fn slowloris_head_gets_408_and_close_within_the_header_timeout() {
    let _turn = schedule::with_others();
    let s = server();
    let c = s.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let trickle = {
        let mut w = c.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let bytes = b"GET / HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
            for b in bytes {
                if stop.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (resp, closed) = answer_then_close(&c, HEADER_TIMEOUT + SLACK);
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    assert_limit_answer(&resp, 408, "slowloris");
    assert!(closed, "the connection is closed after the 408");
    assert!(took >= HEADER_TIMEOUT - Duration::from_millis(50), "not before the timeout: {took:?}");
    assert!(took < HEADER_TIMEOUT + SLACK, "408 after {took:?}");
    assert_serves(&s, "after a slowloris");
}

#[test]
fn slowloris_body_gets_408_and_close_within_the_header_timeout() {
    let _turn = schedule::with_others();
    let s = server();
    let mut c = s.connect();
    let start = Instant::now();
    c.write_all(b"POST / HTTP/1.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let mut w = c.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(b"0").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (resp, closed) = answer_then_close(&c, HEADER_TIMEOUT + SLACK);
    let took = start.elapsed();
    assert_limit_answer(&resp, 408, "slow body");
    assert!(closed);
    assert!(took < HEADER_TIMEOUT + SLACK, "408 after {took:?}");
    trickle.join().unwrap();
}

#[test]
fn many_slowloris_connections_do_not_block_normal_clients() {
    let _turn = schedule::with_others();
    const N: usize = 200;
    let s = server();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(&s, stop.clone());
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = (0..N).map(|_| s.connect()).collect();
    let head = b"GET / HTTP/1.1\r\nX-Slow: ";
    // Per connection: bytes received, when the answer arrived, when it closed.
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut answered: Vec<Option<Duration>> = vec![None; N];
    let mut closed: Vec<Option<Duration>> = vec![None; N];
    for c in &conns {
        c.set_nonblocking(true).unwrap();
    }
    let deadline = start + HEADER_TIMEOUT + SLACK * 2;
    let mut tick = 0;
    while closed.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, c) in conns.iter_mut().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            // One byte per connection per tick: the head never completes.
            let _ = c.write(&[*head.get(tick).unwrap_or(&b'a')]);
            let mut buf = [0u8; 1024];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => {
                        closed[i] = Some(start.elapsed());
                        break;
                    }
                    Ok(n) => {
                        got[i].extend_from_slice(&buf[..n]);
                        if answered[i].is_none() && got[i].windows(4).any(|w| w == b"\r\n\r\n") {
                            answered[i] = Some(start.elapsed());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if is_reset(&e) => {
                        closed[i] = Some(start.elapsed());
                        break;
                    }
                    Err(e) => panic!("connection {i}: {e}"),
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (probes, worst) = probe.join().unwrap();
    for i in 0..N {
        let text = String::from_utf8_lossy(&got[i]);
        assert!(text.starts_with("HTTP/1.1 408 "), "connection {i}: {text:?}");
        assert!(text.contains("\r\nConnection: close\r\n"), "connection {i}: {text:?}");
        let at = answered[i].unwrap();
        assert!(at < HEADER_TIMEOUT + SLACK, "connection {i} answered after {at:?}");
        assert!(closed[i].is_some(), "connection {i} was not closed");
    }
    assert!(probes >= 5, "normal requests kept being answered during the attack: {probes}");
    assert!(worst < NORMAL, "slowest normal request during the attack: {worst:?}");
}

// ------------------------------------------------------------ header floods

#[test]
fn too_many_headers_get_431_and_close() {
    let _turn = schedule::with_others();
    let s = server();
    // 40 small fields: under the byte limit, over the field limit (32).
    let raw = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(40));
    assert!(raw.len() < 8192);
    let mut c = s.connect();
    let start = Instant::now();
    c.write_all(raw.as_bytes()).unwrap();
    let (resp, closed) = answer_then_close(&c, NORMAL);
    assert_limit_answer(&resp, 431, "40 header fields");
    assert!(closed);
    assert!(start.elapsed() < NORMAL);
    assert_serves(&s, "after a header-count flood");
}

#[test]
fn an_endless_stream_of_headers_gets_431_and_close_without_being_read() {
    let _turn = schedule::with_others();
    let s = server();
    // Small header fields without end; the server must answer after the
    // first 8 KiB and stop reading.
    let fields = "X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(100);
    assert_cut_off(&s, b"GET / HTTP/1.1\r\n", fields.into_bytes(), 431, "header flood");
}

#[test]
fn one_endless_header_gets_431_and_close() {
    let _turn = schedule::with_others();
    let s = server();
    assert_cut_off(&s, b"GET / HTTP/1.1\r\nX-Giant: ", vec![b'a'; 64 << 10], 431, "endless header");
}

// ------------------------------------------------------------------- bodies

#[test]
fn huge_declared_content_length_gets_413_at_once() {
    let _turn = schedule::with_others();
    let s = server();
    for cl in [
        "8193",
        "1000000000000",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999",
    ] {
        let mut c = s.connect();
        let start = Instant::now();
        // No body is sent: the answer must not wait for one.
        c.write_all(format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n").as_bytes()).unwrap();
        let (resp, closed) = answer_then_close(&c, NORMAL);
        assert_limit_answer(&resp, 413, cl);
        assert!(closed, "{cl}");
        assert!(start.elapsed() < NORMAL, "{cl}: {:?}", start.elapsed());
    }
    assert_serves(&s, "after huge Content-Lengths");
}

/// `Content-Length` is 1*DIGIT (RFC 9110 §8.6): a sign, a list or anything
/// else a front proxy might read differently is refused (request smuggling).
#[test]
fn regression_content_length_with_a_sign_is_refused() {
    let _turn = schedule::with_others();
    let s = server();
    for cl in ["+5", "-5", "5, 5", "0x10", "5 5", "٥"] {
        let mut c = s.connect();
        c.write_all(format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n12345").as_bytes()).unwrap();
        let (resp, closed) = answer_then_close(&c, NORMAL);
        assert_limit_answer(&resp, 400, cl);
        assert!(closed, "{cl}");
    }
}

#[test]
fn an_endless_body_gets_413_and_close_with_bounded_memory() {
    let _turn = schedule::with_others();
    let s = server();
    let head = b"POST / HTTP/1.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: 1000000000000000\r\n\r\n";
    assert_cut_off(&s, head, vec![0x30; 64 << 10], 413, "endless body");
}

/// After refusing a request the server closes in stages (RFC 9112 §9.6):
/// it half-closes and keeps reading and discarding what the client still
/// sends, for a bounded while, so the client's writes are not answered with
/// a reset that can destroy the refusal before the client reads it (across a
/// real network; on loopback the answer survives either way, so this checks
/// the staged close itself).
#[test]
fn regression_a_refusal_is_a_staged_close_not_a_reset() {
    let _turn = schedule::with_others();
    let s = server();
    let c = s.connect();
    (&c).write_all(b"POST / HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n").unwrap();
    let (resp, closed) = answer_then_close(&c, NORMAL);
    assert_limit_answer(&resp, 413, "refused body");
    assert!(closed, "half-closed: the client reads EOF");
    // The client goes on sending the body it had started: the server still
    // takes it (a closed socket would answer the first write with a reset and
    // fail the next ones).
    for i in 0..10 {
        (&c).write_all(&[0x30u8; 8 << 10]).unwrap_or_else(|e| panic!("write {i} after the answer: {e}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_serves(&s, "after a staged close");
}

#[test]
fn an_endless_body_without_length_gets_411_and_close() {
    let _turn = schedule::with_others();
    let s = server();
    let head = b"POST / HTTP/1.1\r\nContent-Type: application/ocsp-request\r\n\r\n";
    assert_cut_off(&s, head, vec![0x30; 64 << 10], 411, "body without length");
}

#[test]
fn chunked_post_gets_411_and_close() {
    let _turn = schedule::with_others();
    let s = server();
    let endless_chunk: Vec<u8> = b"10000\r\n".iter().chain(&[b'a'; 65536]).copied().collect();
    for te in ["chunked", "gzip, chunked", "identity"] {
        let head = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_cut_off(&s, head.as_bytes(), endless_chunk.clone(), 411, te);
    }
    // Content-Length and Transfer-Encoding together: the classic smuggling pair.
    let resp =
        roundtrip(&s, b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_limit_answer(&resp, 411, "CL + TE");
}

#[test]
fn a_body_longer_than_declared_is_a_bad_next_request() {
    let _turn = schedule::with_others();
    // The declared length is honoured; what follows is read as the next
    // pipelined request, which is garbage: 400 and close, never a hang.
    let s = server();
    let mut c = s.connect();
    let mut raw = post("/", &request_der());
    raw.extend(vec![0x30; 100]);
    raw.extend(b"\r\n\r\n");
    c.write_all(&raw).unwrap();
    c.set_read_timeout(Some(NORMAL)).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let first = read_response(&mut r, false).unwrap();
    assert_eq!((first.status, ocsp_status(&first.body).as_str()), (200, "good"));
    let second = read_response(&mut r, false).unwrap();
    assert_limit_answer(&second, 400, "trailing garbage");
}

// ------------------------------------------------------------- connections

/// Raises this process's open-file limit to at least `want` (the server,
/// started afterwards, inherits it). Fails when the hard limit is too low.
#[allow(unsafe_code)]
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= want as libc::rlim_t {
            return;
        }
        assert!(
            lim.rlim_max >= want as libc::rlim_t,
            "RLIMIT_NOFILE hard limit {} is below the {want} this test needs (ulimit -Hn)",
            lim.rlim_max
        );
        lim.rlim_cur = want as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Whether `c` (non-blocking) is still open with nothing to read.
fn still_open(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(c.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn thousands_of_idle_connections_are_held_then_closed_by_the_idle_timeout() {
    let _turn = schedule::with_others();
    const N: usize = 2500;
    raise_nofile(N as u64 + 1024);
    let s = server();
    let opened = Instant::now();
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| TcpStream::connect(s.addr).unwrap_or_else(|e| panic!("connection {i} refused: {e}")))
        .collect();
    let all_open = opened.elapsed();
    for c in &conns {
        c.set_nonblocking(true).unwrap();
    }
    // Held: the server answers others at once while they sit there.
    assert_serves(&s, "with 2500 idle connections");
    // Poll until every idle connection is closed; none may go before the timeout.
    let mut closed_at: Vec<Option<Duration>> = vec![None; N];
    let deadline = opened + all_open + IDLE_TIMEOUT + SLACK * 2;
    while closed_at.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, c) in conns.iter_mut().enumerate() {
            if closed_at[i].is_none() && !still_open(c) {
                closed_at[i] = Some(opened.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = closed_at.iter().flatten().min().copied();
    let open = closed_at.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} idle connections still open after {:?}", opened.elapsed());
    let first = first.unwrap();
    assert!(
        first >= IDLE_TIMEOUT - Duration::from_millis(100),
        "an idle connection closed after only {first:?}"
    );
    assert_serves(&s, "after the idle connections went");
}

#[test]
fn past_the_connection_cap_new_connections_wait_in_the_backlog() {
    let _turn = schedule::with_others();
    // Two shards of 4 connections each; 24 idle connections fill both (each
    // shard gets at least 4 of them unless the kernel's hash is very lopsided).
    let s = Server::start(
        &ConfigBuilder::new()
            .set("limits", "max_connections_per_shard", 4)
            .set("limits", "idle_timeout_ms", 1000)
            .set("limits", "header_timeout_ms", 5000)
            .test_issuer(),
    );
    let idle = Duration::from_millis(1000);
    let hogs: Vec<TcpStream> = (0..24).map(|_| s.connect()).collect();
    std::thread::sleep(Duration::from_millis(200)); // the shards accept their 4
    let start = Instant::now();
    let mut c = TcpStream::connect(s.addr).expect("not refused: it waits in the backlog");
    c.write_all(&post("/", &request_der())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let resp = read_response(&mut BufReader::new(c), false).expect("answered once a slot frees");
    let took = start.elapsed();
    assert_eq!((resp.status, ocsp_status(&resp.body).as_str()), (200, "good"));
    assert!(took >= idle - Duration::from_millis(300), "it had to wait for an idle slot: {took:?}");
    // At most every hog ahead of it on one shard, 4 per idle period.
    assert!(took < idle * 7 + SLACK, "waited {took:?}");
    drop(hogs);
}

#[test]
fn many_more_clients_than_the_cap_are_all_served_none_refused() {
    let _turn = schedule::with_others();
    const N: usize = 300;
    let s = Server::start(&ConfigBuilder::new().set("limits", "max_connections_per_shard", 4).test_issuer());
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| TcpStream::connect(s.addr).unwrap_or_else(|e| panic!("client {i} refused: {e}")))
        .collect();
    for c in &mut conns {
        c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    }
    for (i, c) in conns.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let resp = read_response(&mut BufReader::new(c), false).unwrap_or_else(|| panic!("client {i}"));
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"OK\n"[..]), "client {i}");
    }
    assert!(start.elapsed() < Duration::from_secs(10), "{N} clients took {:?}", start.elapsed());
}

// -------------------------------------------------------------- pipelining

#[test]
fn a_pipelining_flood_is_answered_in_order() {
    let _turn = schedule::with_others();
    const N: usize = 5000;
    let s = server();
    let der = request_der();
    let ocsp = get(&format!("/{}", b64(&der)));
    let health = get("/");
    let mut raw = Vec::new();
    for i in 0..N {
        raw.extend(if i % 2 == 0 { &ocsp } else { &health });
    }
    let c = s.connect();
    let start = Instant::now();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&raw).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(&s, stop.clone());
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ocsp_body = None;
    for i in 0..N {
        let resp = read_response(&mut r, false).unwrap_or_else(|| panic!("answer {i} of {N}"));
        assert_eq!(resp.status, 200, "answer {i}");
        if i % 2 == 0 {
            // One connection, one shard, one cached response.
            assert_eq!(&resp.body, ocsp_body.get_or_insert_with(|| resp.body.clone()), "answer {i}");
        } else {
            assert_eq!(resp.body, b"OK\n", "answer {i}");
        }
    }
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (_, worst) = probe.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20), "{N} pipelined took {:?}", start.elapsed());
    assert!(worst < NORMAL, "slowest normal request during the flood: {worst:?}");
    assert_eq!(ocsp_status(ocsp_body.as_ref().unwrap()), "good");
}

#[test]
fn a_client_that_never_reads_is_closed_by_the_write_timeout() {
    let _turn = schedule::with_others();
    let s = server();
    let before = warm_rss(&s);
    // A tiny receive window so the server's answers back up quickly.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let c: TcpStream = sock.into();
    let mut chunk = Vec::new();
    for _ in 0..100 {
        chunk.extend(get(&format!("/{}", b64(&request_der()))));
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(&s, stop.clone());
    let writer = flood(&c, chunk, 1 << 30);
    let f = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (probes, worst) = probe.join().unwrap();
    assert!(f.cut, "the server closed the connection ({} bytes of requests sent)", f.sent);
    // Filling the socket buffers takes a moment; then one write timeout.
    assert!(f.ended - start < WRITE_TIMEOUT + SLACK * 4, "closed after {:?}", f.ended - start);
    let grew = s.rss_kib().saturating_sub(before);
    assert!(grew < 16 << 10, "memory grew by {grew} KiB while the client did not read");
    assert!(probes >= 1 && worst < NORMAL, "normal requests meanwhile: {probes}, slowest {worst:?}");
    assert_serves(&s, "after a client that never reads");
}

// -------------------------------------------------- invalid UTF-8 and NULs

/// What a hostile request gets.
enum Expect {
    /// This HTTP error, `Connection: close`.
    Refused(u16),
    /// 200 with exactly this body.
    Body(Vec<u8>),
    /// 200 with a signed `good`.
    Good,
}

#[test]
fn invalid_utf8_and_nul_bytes_get_400_or_malformed_request_never_a_crash() {
    let _turn = schedule::with_others();
    let mut s = server();
    let der = request_der();
    let malformed = || Expect::Body(ocsp_error(1));
    let health = || Expect::Body(b"OK\n".to_vec());
    let mut cases: Vec<(Vec<u8>, Expect, &str)> = vec![
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "invalid UTF-8 in the path"),
        (b"GET /\xc3 HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "truncated UTF-8 in the path"),
        (b"GET /a\x00b HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "NUL in the path"),
        (b"GET \x00 HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "NUL as the path"),
        (b"G\x00T / HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "NUL in the method"),
        (b"\xff\xfe\xfd / HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused(400), "invalid UTF-8 method"),
        (b"GET / HTTP/1.1\x00\r\n\r\n".to_vec(), Expect::Refused(400), "NUL after the version"),
        (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n".to_vec(), Expect::Refused(400), "NUL in a header value"),
        (b"GET / HTTP/1.1\r\nX-\x00: b\r\n\r\n".to_vec(), Expect::Refused(400), "NUL in a header name"),
        (b"GET / HTTP/1.1\r\nX-\xff: b\r\n\r\n".to_vec(), Expect::Refused(400), "invalid UTF-8 header name"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: \xff\r\n\r\n".to_vec(),
            Expect::Refused(400),
            "invalid UTF-8 length",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\x00\r\n\r\n".to_vec(),
            Expect::Refused(400),
            "NUL in the length",
        ),
        (b"GET /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\n\r\n".to_vec(), malformed(), "valid UTF-8, not base64"),
        (b"GET /%00%00 HTTP/1.1\r\n\r\n".to_vec(), malformed(), "percent-encoded NULs"),
        (b"GET /%ff%fe%C3 HTTP/1.1\r\n\r\n".to_vec(), malformed(), "percent-encoded invalid UTF-8"),
        (b"GET /MA%00== HTTP/1.1\r\n\r\n".to_vec(), malformed(), "NUL inside base64"),
        (b"GET /% HTTP/1.1\r\n\r\n".to_vec(), malformed(), "a lone %"),
        (
            b"GET / HTTP/1.1\r\nX-A: \xff\xfe\x80\r\n\r\n".to_vec(),
            health(),
            "obs-text header value is ignored",
        ),
        (
            b"GET / HTTP/1.1\r\nIf-None-Match: \xff\r\nIf-Modified-Since: \xfe\r\n\r\n".to_vec(),
            health(),
            "invalid UTF-8 validators",
        ),
    ];
    // A NUL in a validator is not a valid header value.
    let mut raw = format!("GET /{} HTTP/1.1\r\nIf-Modified-Since: ", b64(&der)).into_bytes();
    raw.extend(b"\xff\xfe\x00\r\n\r\n");
    cases.push((raw, Expect::Refused(400), "NUL in a validator"));
    // Validators with invalid UTF-8 on an OCSP GET: ignored, a full 200.
    let mut raw = format!("GET /{} HTTP/1.1\r\nIf-None-Match: ", b64(&der)).into_bytes();
    raw.extend(b"\"\xff\xfe\"\r\nIf-Modified-Since: \xc3\x28\r\n\r\n");
    cases.push((raw, Expect::Good, "invalid UTF-8 validators on an OCSP GET"));
    // A POST body of NULs and invalid UTF-8 is not DER.
    cases.push((post("/", &[0u8; 100]), malformed(), "NUL body"));
    cases.push((post("/", &[0xff; 100]), malformed(), "0xff body"));
    for (raw, expect, what) in cases {
        let mut c = s.connect();
        let start = Instant::now();
        c.write_all(&raw).unwrap();
        c.set_read_timeout(Some(NORMAL)).unwrap();
        let resp = read_response(&mut BufReader::new(c.try_clone().unwrap()), false)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        match expect {
            Expect::Refused(status) => assert_limit_answer(&resp, status, what),
            Expect::Body(b) => assert_eq!((resp.status, &resp.body), (200, &b), "{what}"),
            Expect::Good => {
                assert_eq!((resp.status, ocsp_status(&resp.body).as_str()), (200, "good"), "{what}")
            }
        }
        assert!(start.elapsed() < NORMAL, "{what}: {:?}", start.elapsed());
    }
    assert!(s.alive(), "the server survived");
    assert_serves(&s, "after invalid bytes");
}

// ------------------------------------------------------- 10,000 CertIDs

/// A DER OCSP request listing the test CertID `n` times.
fn request_with_cert_ids(n: usize) -> Vec<u8> {
    use der::{Decode, Encode};
    let mut req = x509_ocsp::OcspRequest::from_der(&request_der()).unwrap();
    let one = req.tbs_request.request_list[0].clone();
    req.tbs_request.request_list = vec![one; n];
    req.to_der().unwrap()
}

#[test]
fn ten_thousand_cert_ids_get_413_by_default() {
    let _turn = schedule::with_others();
    let s = server();
    let body = request_with_cert_ids(10_000);
    assert!(body.len() > 300_000, "{} bytes", body.len());
    // The head alone is enough: the declared length is over max_body_bytes.
    let c = s.connect();
    let start = Instant::now();
    let raw = post("/", &body);
    let len = raw.len();
    let writer = flood(&c, raw, len);
    let (resp, closed) = answer_then_close(&c, NORMAL);
    assert_limit_answer(&resp, 413, "10,000 CertIDs");
    assert!(closed);
    assert!(start.elapsed() < NORMAL, "{:?}", start.elapsed());
    writer.join().unwrap();
    // As a GET the request line is far over max_uri_bytes.
    let resp = roundtrip(&s, &get(&format!("/{}", b64(&body))));
    assert_limit_answer(&resp, 414, "10,000 CertIDs by GET");
    assert_serves(&s, "after 10,000 CertIDs");
}

#[test]
fn ten_thousand_cert_ids_are_malformed_past_max_cert_ids() {
    let _turn = schedule::with_others();
    let s = Server::start(&limits().set("limits", "max_body_bytes", 1048576));
    let body = request_with_cert_ids(10_000);
    let before = warm_rss(&s);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(&s, stop.clone());
    for _ in 0..5 {
        let mut c = s.connect();
        let start = Instant::now();
        c.write_all(&post("/", &body)).unwrap();
        c.set_read_timeout(Some(NORMAL)).unwrap();
        let resp = read_response(&mut BufReader::new(c), false).expect("an answer");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, ocsp_error(1), "malformedRequest: over limits.max_cert_ids (8)");
        assert_eq!(resp.header("cache-control"), Some("max-age=0, no-cache"));
        assert!(start.elapsed() < NORMAL, "{:?}", start.elapsed());
    }
    // Just over the limit, and just at it.
    assert_eq!(roundtrip(&s, &post("/", &request_with_cert_ids(9))).body, ocsp_error(1));
    let resp = roundtrip(&s, &post("/", &request_with_cert_ids(8)));
    assert_eq!((resp.status, ocsp_status(&resp.body).as_str()), (200, "good"));
    stop.store(true, Ordering::Relaxed);
    let (_, worst) = probe.join().unwrap();
    assert!(worst < NORMAL, "slowest normal request meanwhile: {worst:?}");
    let grew = s.rss_kib().saturating_sub(before);
    assert!(grew < 32 << 10, "memory grew by {grew} KiB");
}
