//! Raw-byte HTTP tests against a real server on an ephemeral loopback port:
//! pipelining, keep-alive, HTTP/1.0, limits, timeouts, methods, every GET
//! encoding variant, conditional GETs.

use crate::common;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn request_der() -> Vec<u8> {
    std::fs::read(data("openssl-sha1.der")).unwrap()
}

fn server() -> Server {
    Server::start(
        &ConfigBuilder::new()
            .set("limits", "header_timeout_ms", 400)
            .set("limits", "idle_timeout_ms", 1500)
            .test_issuer(),
    )
}

/// Reads until EOF (or timeout); true if the peer closed.
fn closed_by_peer(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = server();
    let der = request_der();
    let mut raw = get("/");
    raw.extend(get(&format!("/{}", b64(&der))));
    raw.extend(post("/", &der));
    raw.extend(b"DELETE / HTTP/1.1\r\n\r\n");
    raw.extend(get("/"));
    let mut c = s.connect();
    c.write_all(&raw).unwrap();
    let mut r = BufReader::new(c);
    let statuses: Vec<u16> = (0..5).map(|_| read_response(&mut r, false).unwrap().status).collect();
    assert_eq!(statuses, [200, 200, 200, 405, 200]);
}

#[test]
fn pipelined_requests_split_across_writes() {
    let s = server();
    let der = request_der();
    let mut raw = post("/", &der);
    raw.extend(get(&format!("/{}", b64(&der))));
    let mut c = s.connect();
    // Byte-by-byte boundaries inside the head and the body.
    for chunk in raw.chunks(7) {
        c.write_all(chunk).unwrap();
        c.flush().unwrap();
    }
    let mut r = BufReader::new(c);
    let a = read_response(&mut r, false).unwrap();
    let b = read_response(&mut r, false).unwrap();
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.body, b.body, "POST and GET of the same CertID share one cached response");
}

#[test]
fn keep_alive_and_connection_close() {
    let s = server();
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for _ in 0..3 {
        c.write_all(&get("/")).unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), None);
    }
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut c, Duration::from_secs(2)));
}

#[test]
fn http_1_0_closes_unless_keep_alive_asked() {
    let s = server();
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert!(closed_by_peer(&mut c, Duration::from_secs(2)));

    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for _ in 0..2 {
        c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn limits_get_their_status_and_close() {
    let s = server();
    let long = format!("/{}", "A".repeat(5000));
    assert_eq!(roundtrip(&s, &get(&long)).status, 414);
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(200)
    );
    assert_eq!(roundtrip(&s, many.as_bytes()).status, 431);
    let big = b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    let resp = roundtrip(&s, big);
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(roundtrip(&s, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status, 411);
    assert_eq!(roundtrip(&s, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").status, 400);
    assert_eq!(roundtrip(&s, b"GET / HTTP/3.0\r\n\r\n").status, 505);
}

#[test]
fn bad_methods_get_405_with_allow() {
    let s = server();
    for m in ["PUT", "DELETE", "OPTIONS", "PATCH"] {
        let resp = roundtrip(&s, format!("{m} / HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(resp.status, 405, "{m}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
    }
}

#[test]
fn slow_headers_are_cut_off() {
    let s = server();
    // A slowloris: one byte every 100 ms never completes a head. It must be
    // answered 408 and closed near header_timeout (400 ms), not held forever.
    let mut c = s.connect();
    let start = Instant::now();
    let mut got_408 = false;
    for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().chain(b"a".repeat(100).iter()) {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = c.read(&mut buf) {
            got_408 = n > 0 && buf.starts_with(b"HTTP/1.1 408");
            break;
        }
        c.set_nonblocking(false).unwrap();
    }
    assert!(got_408, "slowloris answered 408");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "cut off near the header timeout: {:?}",
        start.elapsed()
    );
}

#[test]
fn idle_connections_are_closed() {
    let s = server();
    let mut c = s.connect();
    c.write_all(&get("/")).unwrap();
    let start = Instant::now();
    assert!(closed_by_peer(&mut c, Duration::from_secs(5)));
    let t = start.elapsed();
    assert!(t >= Duration::from_millis(1000) && t < Duration::from_secs(4), "idle close after {t:?}");
}

#[test]
fn every_get_encoding_variant_gets_the_same_answer() {
    let s = server();
    // Both the good and the revoked CertID: the revoked serial's base64 is
    // different, so more characters are exercised.
    for file in ["openssl-sha1.der", "openssl-two-certids.der", "python-cryptography-nonce.der"] {
        let der = std::fs::read(data(file)).unwrap();
        let std = b64(&der);
        // One connection, so one shard and one L1: every variant must hit the
        // very response the POST put there (other shards sign their own).
        let mut c = s.connect();
        let mut r = BufReader::new(c.try_clone().unwrap());
        c.write_all(&post("/", &der)).unwrap();
        let reference = read_response(&mut r, false).unwrap();
        assert_eq!(reference.status, 200);
        let url_safe = std.replace('+', "-").replace('/', "_");
        let variants = [
            format!("/{std}"),
            format!("/{}", std.trim_end_matches('=')),
            format!("/{}", std.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")),
            format!("/{}", std.replace('+', "%2b").replace('/', "%2f").replace('=', "%3d")),
            format!("/{}", std.replace('+', "%20")),
            format!("//{std}"),
            format!("/{}", url_safe.trim_end_matches('=')),
            format!("/{std}?cache-buster=1"),
        ];
        for v in variants {
            c.write_all(&get(&v)).unwrap();
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.status, 200, "{v}");
            assert_eq!(resp.body, reference.body, "{file}: variant {v}");
        }
        // A literal space (as a proxy may write it) cannot go in a request
        // line, so a form-decoding proxy's `+`→space only reaches us
        // percent-encoded; both forms were covered above.
    }
}

#[test]
fn conditional_get_gives_304() {
    let s = server();
    let path = format!("/{}", b64(&request_der()));
    // One connection: validators name the bytes this shard's L1 holds (each
    // shard signs its own copy until a shared L2 exists).
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ask = |extra: &str| {
        c.write_all(format!("GET {path} HTTP/1.1\r\n{extra}\r\n").as_bytes()).unwrap();
        read_response(&mut r, false).unwrap()
    };
    let first = ask("");
    assert_eq!(first.status, 200);
    let etag = first.header("etag").unwrap().to_string();
    let last_modified = first.header("last-modified").unwrap().to_string();
    let cc = first.header("cache-control").unwrap();
    assert!(cc.starts_with("max-age=") && cc.ends_with(", public, no-transform, must-revalidate"), "{cc}");
    assert!(first.header("expires").is_some());

    let nm = ask(&format!("If-None-Match: {etag}\r\n"));
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("etag"), Some(etag.as_str()));
    assert_eq!(ask(&format!("If-None-Match: \"x\", {etag}\r\n")).status, 304);
    assert_eq!(ask("If-None-Match: \"nope\"\r\n").status, 200);
    // Only the strong ETag of this very response: a date, `*` or a weakened
    // tag cannot prove the client holds the current answer.
    assert_eq!(ask(&format!("If-Modified-Since: {last_modified}\r\n")).status, 200);
    assert_eq!(ask("If-None-Match: *\r\n").status, 200);
    assert_eq!(ask(&format!("If-None-Match: W/{etag}\r\n")).status, 200);
}

#[test]
fn head_has_headers_but_no_body() {
    let s = server();
    let path = format!("/{}", b64(&request_der()));
    // One connection: the same shard, so the same signed bytes (ECDSA
    // signatures from different shards differ in length by a byte or two).
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    c.write_all(&get(&path)).unwrap();
    let full = read_response(&mut r, false).unwrap();
    c.write_all(format!("HEAD {path} HTTP/1.1\r\n\r\n").as_bytes()).unwrap();
    c.write_all(&get("/")).unwrap(); // the next response must start right after the head
    let head = read_response(&mut r, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), full.header("content-length"));
    assert_eq!(head.header("etag"), full.header("etag"));
    assert_eq!(read_response(&mut r, false).unwrap().body, b"OK\n");
}

#[test]
fn path_prefix_is_honoured() {
    let s = Server::start(&ConfigBuilder::new().top("path_prefix", "/ocsp").test_issuer());
    let der = request_der();
    assert_eq!(roundtrip(&s, &get(&format!("/ocsp/{}", b64(&der)))).status, 200);
    assert_eq!(roundtrip(&s, &post("/ocsp", &der)).status, 200);
    assert_eq!(roundtrip(&s, &get(&format!("/elsewhere/{}", b64(&der)))).status, 404);
    assert_eq!(roundtrip(&s, &get("/")).status, 200);
}

#[test]
fn errors_are_unsigned_and_uncached() {
    let s = server();
    let resp = roundtrip(&s, &get("/notbase64!!"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, ocsp_error(1));
    assert_eq!(resp.header("cache-control"), Some("max-age=0, no-cache"));
    assert_eq!(resp.header("etag"), None);
}

#[test]
fn many_connections_at_once() {
    let s = server();
    let path = format!("/{}", b64(&request_der()));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let addr = s.addr;
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                for _ in 0..50 {
                    c.write_all(&get(&path)).unwrap();
                    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Reads one answer to `raw` sent on an open connection.
fn ask_on(
    c: &mut std::net::TcpStream,
    r: &mut BufReader<std::net::TcpStream>,
    raw: &[u8],
) -> common::Response {
    c.write_all(raw).unwrap();
    read_response(r, raw.starts_with(b"HEAD")).expect("an answer")
}

#[test]
fn x_cache_status_says_miss_then_hit() {
    let s = server();
    let der = request_der();
    // One connection stays on one shard, whose L1 the first answer fills.
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let first = ask_on(&mut c, &mut r, &get(&format!("/{}", b64(&der))));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache-status"), Some("MISS"), "{:?}", first.headers);
    let second = ask_on(&mut c, &mut r, &post("/", &der));
    assert_eq!(second.header("x-cache-status"), Some("HIT"));
    assert_eq!(first.body, second.body);
    let etag = second.header("etag").unwrap().to_string();
    let not_modified = ask_on(
        &mut c,
        &mut r,
        format!("GET /{} HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n", b64(&der)).as_bytes(),
    );
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("x-cache-status"), Some("HIT"), "304s say it too");
    let head = ask_on(&mut c, &mut r, format!("HEAD /{} HTTP/1.1\r\n\r\n", b64(&der)).as_bytes());
    assert_eq!(head.header("x-cache-status"), Some("HIT"));
    // Not on errors or the health answer: nothing was cached or signed.
    let health = ask_on(&mut c, &mut r, &get("/"));
    assert_eq!(health.header("x-cache-status"), None);
    let malformed = ask_on(&mut c, &mut r, &get("/notbase64!!"));
    assert_eq!(malformed.body, ocsp_error(1));
    assert_eq!(malformed.header("x-cache-status"), None);
}

#[test]
fn x_cache_status_can_be_turned_off() {
    let s = Server::start(&ConfigBuilder::new().set("response", "cache_status_header", false).test_issuer());
    let der = request_der();
    for _ in 0..2 {
        let resp = roundtrip(&s, &post("/", &der));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-cache-status"), None, "{:?}", resp.headers);
    }
}
