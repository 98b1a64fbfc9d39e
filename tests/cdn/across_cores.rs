//! Every core of a node answers 304 to a conditional GET carrying the ETag
//! any of its cores issued, while that response is current — without Redis.
//! A CDN revalidates over many connections, which SO_REUSEPORT spreads over
//! the cores; before the node's shared fills (`cache.node_fills`) each core
//! signed its own copy, so about half of those revalidations got a 200 with
//! new bytes. The second test turns the fills off and shows the 200s come
//! back, so the first cannot pass by luck of connection placement.

use crate::common;

use std::io::{BufReader, Write};

use common::*;

/// Conditional GETs, each on a new connection (so both cores get some).
const TRIES: usize = 40;

fn node(fills: bool) -> (Server, String) {
    let config = ConfigBuilder::new().test_issuer().pin(false).set("cache", "node_fills", fills).for_server();
    let server = Server::start(&config);
    let path = format!("/{}", b64(&std::fs::read(data("openssl-sha1.der")).unwrap()));
    (server, path)
}

/// Sends `If-None-Match: etag` on `TRIES` fresh connections: each answer's
/// status and `X-Cache-Status`.
fn revalidate(server: &Server, path: &str, etag: &str) -> Vec<(u16, String)> {
    (0..TRIES)
        .map(|_| {
            let mut s = server.connect();
            write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").unwrap();
            let r = read_response(&mut BufReader::new(s), false).expect("an answer");
            (r.status, r.header("X-Cache-Status").unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn every_core_answers_304_for_a_response_any_core_issued() {
    let (server, path) = node(true);
    let first = roundtrip(&server, &get(&path));
    assert_eq!(first.status, 200);
    assert_eq!(ocsp_status(&first.body), "good");
    let etag = first.header("ETag").expect("an ETag").to_string();
    let answers = revalidate(&server, &path, &etag);
    assert!(answers.iter().all(|(s, _)| *s == 304), "every core knows the response: {answers:?}");
    // The other core took it from the shared fills once (HIT-L2), not by
    // signing (MISS), and then held it (HIT).
    let how: Vec<&str> = answers.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(how.iter().filter(|h| **h == "HIT-L2").count(), 1, "{how:?}");
    assert!(!how.contains(&"MISS"), "{how:?}");
    // And a plain GET on any core sends the very same bytes.
    for _ in 0..10 {
        let again = roundtrip(&server, &get(&path));
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        assert_eq!(again.body, first.body);
    }
}

#[test]
fn without_shared_fills_the_other_core_signs_its_own() {
    let (server, path) = node(false);
    let first = roundtrip(&server, &get(&path));
    let etag = first.header("ETag").expect("an ETag").to_string();
    let statuses: Vec<u16> = revalidate(&server, &path, &etag).into_iter().map(|(s, _)| s).collect();
    assert!(statuses.contains(&304), "the core that signed it: {statuses:?}");
    assert!(statuses.contains(&200), "the other core signed its own copy: {statuses:?}");
}
