//! Garbage and bad rows against a real MariaDB: serials the database does not
//! know are read from it once per negative-cache TTL, not once per request,
//! and the change feed's report of an insert ends that at once; a flood of
//! them (and of new multi-CertID lists) leaves legitimate misses signed; a
//! revoked row without a revocation time is an error, not "revoked in 1970".

use crate::common;

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use ocsp_origin::ocsp::HashAlg;

/// A fresh database with `n` good certificates (serials 0x1000 + i) of
/// issuer "test", and a one-shard server on it with an admin listener:
/// the server, its admin address, the database URL and the serials.
fn node(
    tag: &str,
    n: usize,
    top: ConfigBuilder,
) -> Option<(Server, std::net::SocketAddr, String, Vec<String>)> {
    let url = test_database(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = top.cores(1).admin(admin).mysql(&url).issuer(IssuerTable::test()).for_server();
    let cfg = config.write(dir.path().join("c.toml"));
    let (index, serials) = index_with(n);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    migrate_and_import(&cfg, &dir.path().join("index.txt"));
    Some((Server::start_in(dir, &config), admin, url, serials))
}

fn single(serial: &str) -> Vec<u8> {
    request_der(&[cert_id_der(HashAlg::Sha1, true, serial)], &[])
}

/// A keep-alive client on one connection.
struct Client {
    c: std::net::TcpStream,
    r: BufReader<std::net::TcpStream>,
}

impl Client {
    fn new(s: &Server) -> Client {
        let c = s.connect();
        Client { r: BufReader::new(c.try_clone().unwrap()), c }
    }

    fn ask(&mut self, der: &[u8]) -> Vec<u8> {
        self.c.write_all(&post("/", der)).unwrap();
        let r = read_response(&mut self.r, false).expect("an answer");
        assert_eq!(r.status, 200);
        r.body
    }
}

/// Status lookups the node made (the count of its `db` stage).
fn db_lookups(admin: std::net::SocketAddr) -> u64 {
    let text = load::metrics(admin);
    let line =
        text.lines().find(|l| l.starts_with("ocsp_origin_db_seconds_count")).expect("the db stage count");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_flood_of_garbage_reaches_the_database_once_a_serial_and_real_misses_are_signed() {
    let _turn = schedule::with_others();
    let top = ConfigBuilder::new().set("cache", "unknown_serial_secs", 600).set(
        "limits",
        "multi_cert_id_signs_per_sec",
        5,
    );
    let Some((s, admin, _url, serials)) = node("garbage", 120, top) else { return };
    let garbage: Arc<Vec<Vec<u8>>> =
        Arc::new((0..50).map(|i| single(&format!("{:04X}", 0x9000 + i))).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let lists = Arc::new(AtomicU64::new(0));
    let serials = Arc::new(serials);
    let flooders: Vec<_> = (0..3)
        .map(|t| {
            let (garbage, stop, sent, serials) =
                (garbage.clone(), stop.clone(), sent.clone(), serials.clone());
            let lists = lists.clone();
            let mut c = Client::new(&s);
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    // Unknown serials, over and over: unauthorized each time.
                    assert_eq!(c.ask(&garbage[i % garbage.len()]), ocsp_error(6));
                    // And a new multi-CertID list of real serials now and then.
                    if i % 10 == 0 {
                        let list = [
                            cert_id_der(HashAlg::Sha1, true, &serials[i % 60]),
                            cert_id_der(HashAlg::Sha256, i % 20 == 0, &serials[60 + (i / 10) % 60]),
                        ];
                        let answer = c.ask(&request_der(&list, &[]));
                        assert!(answer == ocsp_error(3) || ocsp_status(&answer) == "good", "{answer:?}");
                        lists.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 3;
                }
            })
        })
        .collect();
    // Meanwhile: legitimate misses, each a certificate never asked for.
    let mut c = Client::new(&s);
    let started = Instant::now();
    for serial in &serials[..40] {
        assert_eq!(ocsp_status(&c.ask(&single(serial))), "good", "a legitimate miss during the flood");
    }
    let legit_took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2).saturating_sub(legit_took));
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let (sent, lists) = (sent.load(Ordering::Relaxed), lists.load(Ordering::Relaxed));
    // Every garbage request past the first of each serial was answered from
    // the negative cache, except those that joined the serial's first lookup
    // while it ran (at most one a flooder a serial). Shards publish their
    // counters once a second: wait for the last of them (a loaded box is late).
    let expected = sent.saturating_sub(50 + 3 * 50);
    let published = Instant::now();
    let unknown_hits = loop {
        let n = load::counter(admin, "l1_unknown_hits");
        if n >= expected || published.elapsed() > Duration::from_secs(10) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let refused = load::counter(admin, "multi_cert_id_refused");
    let lookups = db_lookups(admin);
    eprintln!(
        "{sent} garbage requests, {lists} new lists; {lookups} database lookups, {unknown_hits} negative-cache answers, {refused} lists refused; 40 misses in {legit_took:?}"
    );
    assert!(sent >= 500, "the flood was too thin to prove anything: {sent}");
    // The database saw the 50 garbage serials once each, the 40 real
    // misses, and two lookups for each list the budget let through.
    let through = lists - refused.min(lists);
    assert!(lookups <= 50 + 40 + 2 * through + 5, "{lookups} lookups for {sent} garbage requests");
    assert!(unknown_hits >= expected, "{unknown_hits} of {sent} answered from the negative cache");
    assert!(refused > 0, "new multi-CertID lists were never refused");
}

#[test]
fn an_unknown_serial_is_answered_as_soon_as_the_feed_reports_its_insert() {
    let _turn = schedule::with_others();
    // A TTL far beyond the test: only the feed can end the negative entry.
    let top = ConfigBuilder::new().set("cache", "unknown_serial_secs", 600);
    let Some((s, admin, url, _)) = node("unknown_insert", 2, top) else { return };
    let mut c = Client::new(&s);
    let new = "7777";
    assert_eq!(c.ask(&single(new)), ocsp_error(6));
    assert_eq!(c.ask(&single(new)), ocsp_error(6));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(load::counter(admin, "l1_unknown_hits") >= 1, "the second ask came from the negative cache");
    let mut db = mysql::Pool::new(url.as_str()).unwrap().get_conn().unwrap();
    db.exec_drop(
        "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES ('test', ?, 0, 4102444800)",
        (ocsp_origin::ocsp::Serial::from_hex(new).unwrap().as_bytes(),),
    )
    .unwrap();
    let inserted = Instant::now();
    loop {
        let answer = c.ask(&single(new));
        if ocsp_status(&answer) == "good" {
            break;
        }
        assert_eq!(answer, ocsp_error(6));
        assert!(inserted.elapsed() < Duration::from_secs(3), "still unknown 3 s after the insert committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("known {:?} after the insert", inserted.elapsed());
}

#[test]
fn a_revoked_row_without_a_revocation_time_is_try_later_not_1970() {
    let _turn = schedule::with_others();
    let Some((s, _admin, url, serials)) = node("null_revoked_at", 3, ConfigBuilder::new()) else { return };
    let mut db = mysql::Pool::new(url.as_str()).unwrap().get_conn().unwrap();
    let serial = ocsp_origin::ocsp::Serial::from_hex(&serials[1]).unwrap();
    db.exec_drop(
        "UPDATE ocsp_certificates SET status = 1, revoked_at = NULL, reason = 1, revision = revision + 1 \
         WHERE issuer = 'test' AND serial = ?",
        (serial.as_bytes(),),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // the feed's bound
    let mut c = Client::new(&s);
    assert_eq!(c.ask(&single(&serials[1])), ocsp_error(3), "revoked when? not answerable");
    assert_eq!(ocsp_status(&c.ask(&single(&serials[0]))), "good", "other rows are answered");
    db.exec_drop(
        "UPDATE ocsp_certificates SET revoked_at = 1793534400, revision = revision + 1 WHERE issuer = 'test' AND serial = ?",
        (serial.as_bytes(),),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(ocsp_status(&c.ask(&single(&serials[1]))), "revoked", "mended, answered");
}
