//! The admin listener: Prometheus metrics (per-shard counters, latency
//! summaries, signer pool counters) and HdrHistogram `.hgrm` exports.

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn admin_get(port: u16, path: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    let code = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, s.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Sum of a counter over shards.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ocsp_origin_shard_total{") && l.contains(&format!("counter=\"{name}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn metrics_and_histograms() {
    let port = free_port();
    let s = Server::start(&ConfigBuilder::new().admin(format!("127.0.0.1:{port}")).test_issuer());
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    for _ in 0..5 {
        assert_eq!(roundtrip(&s, &post("/", &der)).status, 200);
    }
    assert_eq!(roundtrip(&s, &get("/notbase64!!")).body, ocsp_error(1));
    assert_eq!(roundtrip(&s, b"DELETE / HTTP/1.1\r\n\r\n").status, 405);
    std::thread::sleep(Duration::from_millis(1500)); // shards publish once a second

    let (code, m) = admin_get(port, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(counter(&m, "responses_ok"), 5, "{m}");
    assert_eq!(counter(&m, "responses_ocsp_error"), 1, "{m}");
    assert_eq!(counter(&m, "responses_http_error"), 1, "{m}");
    assert_eq!(counter(&m, "requests"), 7, "{m}");
    assert!(counter(&m, "l1_misses") >= 1 && counter(&m, "l1_misses") <= 2, "one per shard at most: {m}");
    assert!(m.contains("ocsp_origin_sign_total{event=\"signed\"}"), "{m}");
    assert!(m.contains("ocsp_origin_status_source_up{source=\"index_txt\"} 1"), "{m}");
    assert!(m.contains("ocsp_origin_request_seconds{quantile=\"0.99\"}"), "{m}");
    assert!(m.contains("ocsp_origin_request_seconds_count 7"), "{m}");
    assert!(m.contains("ocsp_origin_sign_queue_wait_seconds_count"), "{m}");
    // Per-stage summaries: 5 admitted queries were parsed, at least 3 were L1
    // hits (one miss per shard at most), one status lookup; no Redis.
    let count = |name: &str| -> u64 {
        let prefix = format!("ocsp_origin_{name}_seconds_count ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name}: {m}"))
            .parse()
            .unwrap()
    };
    assert_eq!(count("parse"), 5, "{m}");
    assert!((3..=4).contains(&count("l1")), "{m}");
    // One lookup: the second shard's miss takes the first's fill (node fills).
    assert_eq!(count("db"), 1, "{m}");
    assert_eq!(count("redis"), 0, "{m}");
    assert!(m.contains("# TYPE ocsp_origin_parse_seconds summary"), "{m}");
    assert!(m.contains("ocsp_origin_l1_seconds{quantile=\"0.5\"}"), "{m}");
    assert!(m.contains("ocsp_origin_signer_faults_total{issuer=\"test\",fault=\"retry\"} 0"), "{m}");

    let (code, h) = admin_get(port, "/histograms/request.hgrm");
    assert_eq!(code, 200);
    assert!(h.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"), "{h}");
    assert!(h.contains("Total count    =            7]"), "{h}");
    for (stage, total) in [("parse", 5), ("l1", counter(&m, "l1_hits")), ("db", 1)] {
        let (code, h) = admin_get(port, &format!("/histograms/{stage}.hgrm"));
        assert_eq!(code, 200, "{stage}");
        assert!(h.contains(&format!("Total count    = {total:12}]")), "{stage}: {h}");
    }
    let (code, h) = admin_get(port, "/histograms/redis.hgrm");
    assert_eq!(code, 200);
    assert!(h.contains("Total count    =            0]"), "{h}");
    let (code, h) = admin_get(port, "/histograms/sign.hgrm");
    assert_eq!(code, 200);
    assert!(h.contains("#[Max"), "{h}");
    assert_eq!(admin_get(port, "/nope").0, 404);
    // OCSP traffic and the admin surface are separate listeners.
    assert_eq!(roundtrip(&s, &get("/metrics")).body, ocsp_error(1));
}
