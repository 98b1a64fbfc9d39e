//! `change_feed`: how fast a status change committed in the database becomes
//! every node's answer, with nothing but plain SQL (the CA's own pipeline).
//!
//! Two `ocsp-origin serve` nodes (2 shards each) share a MariaDB database
//! (with `OCSP_TEST_MYSQL_REPLICA_URL`, lookups go to a real replica) and,
//! with `OCSP_TEST_REDIS_URL`, a Redis. Then:
//!
//! 1. `commit_to_every_node`: one certificate at a time, warm in every
//!    shard's cache, is revoked with a plain `UPDATE` (autocommit); from the
//!    instant the commit returns, four keep-alive connections per node ask
//!    for it every millisecond until each has answered `revoked`. The
//!    latency of a change is the last of those first `revoked` answers:
//!    commit → every node (and shard asked) serves the change.
//! 2. `bulk_update`: one `UPDATE` of many rows (100,000 in the full run);
//!    from its commit: the time until each node's feed has applied them all
//!    (`ocsp_origin_feed_position` on its admin listener), which gives the
//!    rate one feed thread applies changes at, and until a sample of them
//!    answers `revoked` on every connection.
//!
//! `cargo bench --bench change_feed` (or `bash benches/e2e/change_feed.sh`,
//! which starts private services first) runs 1,000 changes and a
//! 100,000-row update; `cargo test` runs it small as a smoke test. It needs
//! `OCSP_TEST_MYSQL_URL` (tests/services.sh); without it it says so and
//! exits 0, except under CI=true. `CHANGE_FEED_SIZE=CHANGES,ROWS` resizes a
//! run; `FEED_POLL_MS` sets the nodes' `feed.poll_interval_ms`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use ocsp_origin::bench::keyspace::ClientIssuer;
use ocsp_origin::ocsp::Serial;

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client-requests").join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A serve node, killed on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &std::path::Path, name: &str, body: &str) -> Node {
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ncores = 2\npin = false\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{body}"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("ocsp-origin listening on") => break,
            Some(Ok(_)) => {}
            _ => panic!("node {name} exited before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Node { child, addr: ([127, 0, 0, 1], port).into(), admin: ([127, 0, 0, 1], admin).into() }
}

/// A keep-alive connection asking for one certificate's status.
struct Probe {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Probe {
    fn new(addr: SocketAddr) -> Probe {
        let w = TcpStream::connect(addr).unwrap();
        w.set_nodelay(true).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Probe { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    /// "good", "revoked", or what else came back.
    fn status(&mut self, post: &[u8]) -> String {
        self.w.write_all(post).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("Content-Length: ") {
                len = v.parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        status_of(&body)
    }
}

fn status_of(der: &[u8]) -> String {
    use der::Decode;
    let Ok(r) = x509_ocsp::OcspResponse::from_der(der) else { return "undecodable".into() };
    let Some(rb) = r.response_bytes else { return format!("{:?}", r.response_status) };
    let Ok(basic) = x509_ocsp::BasicOcspResponse::from_der(rb.response.as_bytes()) else {
        return "undecodable".into();
    };
    match basic.tbs_response_data.responses[0].cert_status {
        x509_ocsp::CertStatus::Good(_) => "good".into(),
        x509_ocsp::CertStatus::Revoked(_) => "revoked".into(),
        x509_ocsp::CertStatus::Unknown(_) => "unknown".into(),
    }
}

fn post(issuer: &ClientIssuer, serial: &Serial) -> Vec<u8> {
    let mut der = Vec::new();
    ocsp_origin::bench::request::ocsp_request(issuer, serial, &mut der);
    let mut v = format!(
        "POST / HTTP/1.1\r\nHost: b\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
        der.len()
    )
    .into_bytes();
    v.extend_from_slice(&der);
    v
}

fn serial(i: usize) -> Serial {
    Serial::from_magnitude(&(0x0100_0000u32 + i as u32).to_be_bytes()).unwrap()
}

/// A metric's value from a node's admin listener.
fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let mut c = TcpStream::connect(admin).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (mut changes, mut bulk) = if full { (1000, 100_000) } else { (20, 2_000) };
    // CHANGE_FEED_SIZE=CHANGES,ROWS for a quicker look.
    if let Some((c, b)) = std::env::var("CHANGE_FEED_SIZE").ok().as_deref().and_then(|v| v.split_once(',')) {
        (changes, bulk) = (c.parse().unwrap_or(changes), b.parse().unwrap_or(bulk));
    }
    let Ok(base) = std::env::var("OCSP_TEST_MYSQL_URL") else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but OCSP_TEST_MYSQL_URL is not set");
        eprintln!("change_feed: OCSP_TEST_MYSQL_URL not set (tests/services.sh starts MariaDB); skipped");
        return;
    };
    let replica = std::env::var("OCSP_TEST_MYSQL_REPLICA_URL").ok();
    let redis = std::env::var("OCSP_TEST_REDIS_URL").ok();
    let mut tag = [0u8; 4];
    aws_lc_rs::rand::fill(&mut tag).unwrap();
    let name = format!("ocsp_feedbench_{}", tag.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let admin_pool = mysql::Pool::new(base.as_str()).unwrap();
    admin_pool.get_conn().unwrap().query_drop(format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", base.trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!("[mysql]\nurl = \"{url}\"\ntimeout_ms = 2000\n");
    if let Some(r) = &replica {
        body.push_str(&format!("replica_url = \"{}/{name}\"\n", r.trim_end_matches('/')));
    }
    if let Some(r) = &redis {
        body.push_str(&format!("[redis]\nurl = \"{r}\"\nkey_prefix = \"{name}:\"\n"));
    }
    // FEED_POLL_MS sets feed.poll_interval_ms (tuning/README.md's sweep).
    if let Ok(ms) = std::env::var("FEED_POLL_MS") {
        let ms: u64 = ms.parse().expect("FEED_POLL_MS: milliseconds");
        body.push_str(&format!("[feed]\npoll_interval_ms = {ms}\nbound_ms = {}\n", (2 * ms).max(1000)));
    }
    body.push_str(&format!(
        "[[issuer]]\nname = \"test\"\ncert = \"{}\"\nkey = \"{}\"\n",
        data("ca.pem").display(),
        data("ca.key").display()
    ));
    // Schema and certificates, with plain SQL as a CA's pipeline would.
    let cfg = dir.path().join("db.toml");
    std::fs::write(&cfg, &body).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
        .args(["db", "migrate", "--config"])
        .arg(&cfg)
        .status();
    assert!(ok.unwrap().success(), "db migrate");
    let pool = mysql::Pool::new(url.as_str()).unwrap();
    let mut db = pool.get_conn().unwrap();
    let total = changes + bulk;
    let loaded = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(5000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| {
                let hex: String = serial(*i).as_bytes().iter().map(|b| format!("{b:02X}")).collect();
                format!("('test', UNHEX('{hex}'), 0, 2000000000)")
            })
            .collect();
        db.query_drop(format!(
            "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES {}",
            rows.join(",")
        ))
        .unwrap();
    }
    eprintln!("change_feed: {total} certificates inserted in {:.1} s", loaded.elapsed().as_secs_f64());
    if replica.is_some() {
        std::thread::sleep(Duration::from_secs(2)); // let the replica have them
    }
    let nodes = [start_node(dir.path(), "a", &body), start_node(dir.path(), "b", &body)];
    let issuer = ClientIssuer::from_file("test", &data("ca.pem")).unwrap();
    let mut probes: Vec<(usize, Probe)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| (0..4).map(move |_| (n, Probe::new(node.addr))))
        .collect();

    // 1. One change at a time.
    let mut every = ocsp_origin::metrics::latency_histogram();
    let mut per_node = [ocsp_origin::metrics::latency_histogram(), ocsp_origin::metrics::latency_histogram()];
    for i in 0..changes {
        let s = serial(i);
        let req = post(&issuer, &s);
        for (_, p) in probes.iter_mut() {
            assert_eq!(p.status(&req), "good", "warm-up of {s}");
        }
        let hex: String = s.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        // Commits at a random phase of the nodes' poll cycle, not right
        // after the last change was seen (which would lock the two).
        let mut jitter = [0u8; 1];
        aws_lc_rs::rand::fill(&mut jitter).unwrap();
        std::thread::sleep(Duration::from_micros(u64::from(jitter[0]) * 500));
        db.query_drop(format!(
            "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
             WHERE issuer = 'test' AND serial = UNHEX('{hex}')"
        ))
        .unwrap();
        let committed = Instant::now();
        let mut seen: Vec<Option<Duration>> = vec![None; probes.len()];
        while seen.iter().any(Option::is_none) {
            assert!(committed.elapsed() < Duration::from_secs(5), "{s} not revoked everywhere after 5 s");
            for (k, (_, p)) in probes.iter_mut().enumerate() {
                if seen[k].is_none() && p.status(&req) == "revoked" {
                    seen[k] = Some(committed.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let us = |d: &Duration| d.as_micros().max(1) as u64;
        every.saturating_record(seen.iter().flatten().map(us).max().unwrap_or(1));
        for (n, h) in per_node.iter_mut().enumerate() {
            let last = probes
                .iter()
                .zip(&seen)
                .filter(|((m, _), _)| *m == n)
                .filter_map(|(_, d)| d.as_ref())
                .map(us)
                .max();
            h.saturating_record(last.unwrap_or(1));
        }
    }
    println!(
        "commit_to_every_node ({changes} changes, plain UPDATE, 2 nodes x 4 connections): {}",
        quantiles(&every)
    );
    for (n, h) in per_node.iter().enumerate() {
        println!("  node {n}: {}", quantiles(h));
    }

    // 2. One UPDATE of many rows; a sample of them warm in every cache.
    let sample: Vec<Vec<u8>> = (0..200).map(|k| post(&issuer, &serial(changes + k * (bulk / 200)))).collect();
    for req in &sample {
        for (_, p) in probes.iter_mut() {
            assert_eq!(p.status(req), "good");
        }
    }
    let first = serial(changes).as_bytes().iter().map(|b| format!("{b:02X}")).collect::<String>();
    let last = serial(total - 1).as_bytes().iter().map(|b| format!("{b:02X}")).collect::<String>();
    let started = Instant::now();
    db.query_drop(format!(
        "UPDATE ocsp_certificates SET status = 1, reason = 4, revoked_at = UNIX_TIMESTAMP() \
         WHERE issuer = 'test' AND serial BETWEEN UNHEX('{first}') AND UNHEX('{last}')"
    ))
    .unwrap();
    let committed = Instant::now();
    let top: u64 = db.query_first("SELECT MAX(seq) FROM ocsp_changes").unwrap().unwrap_or(0);
    let mut applied: Vec<Option<Duration>> = vec![None; nodes.len()];
    while applied.iter().any(Option::is_none) {
        assert!(committed.elapsed() < Duration::from_secs(120), "the bulk update was not applied in 120 s");
        for (n, node) in nodes.iter().enumerate() {
            if applied[n].is_none()
                && metric(node.admin, "ocsp_origin_feed_position").unwrap_or(0.0) >= top as f64
            {
                applied[n] = Some(committed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Each connection walks the sample until all of it answers revoked.
    let visible = std::thread::scope(|scope| {
        let walkers: Vec<_> = probes
            .iter_mut()
            .map(|(_, p)| {
                let sample = &sample;
                scope.spawn(move || {
                    let mut left: Vec<&Vec<u8>> = sample.iter().collect();
                    while !left.is_empty() {
                        assert!(
                            committed.elapsed() < Duration::from_secs(120),
                            "sample not revoked in 120 s"
                        );
                        left.retain(|req| p.status(req) != "revoked");
                    }
                    committed.elapsed()
                })
            })
            .collect();
        walkers.into_iter().map(|w| w.join().unwrap()).max().unwrap_or_default()
    });
    let slowest = applied.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "bulk_update ({bulk} rows, one UPDATE): statement {:.2} s; commit -> applied on every node {:.2} s \
         (node a {:.2} s, node b {:.2} s: {:.0} changes/s per feed thread); commit -> a 200-row sample, warm before, \
         revoked on every connection {:.2} s",
        (committed - started).as_secs_f64(),
        slowest.as_secs_f64(),
        applied[0].unwrap_or_default().as_secs_f64(),
        applied[1].unwrap_or_default().as_secs_f64(),
        bulk as f64 / slowest.as_secs_f64().max(1e-6),
        visible.as_secs_f64(),
    );
    for node in &nodes {
        let p99 = metric(node.admin, "ocsp_origin_feed_apply_seconds{quantile=\"0.99\"}");
        println!("  node feed_apply p99 (statement start -> every shard acked): {p99:?} s");
    }
    drop(probes);
    drop(nodes);
    let _ = admin_pool.get_conn().unwrap().query_drop(format!("DROP DATABASE {name}"));
}
