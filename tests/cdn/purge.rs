//! A revocation reaches relying parties behind a real Varnish: the purger
//! follows the change feed and purges the certificate's cache tag once every
//! node serves the new status, so the next answer through Varnish is revoked
//! within the feed's bound plus the purge (target ≤ 2 s) — for GET,
//! percent-encoded GET and POST, whoever wrote the change (the CLI, the admin
//! `POST /revoke`, the CA's own SQL). Without the purge Varnish would serve
//! its "good" copy for hours (`max-age`). And a purge target that is down
//! loses nothing: the change waits, is retried with backoff, the alert
//! metrics say so, and it is purged once the target is back; past
//! `cdn.max_tries` it is dead-lettered, loudly.
//!
//! Services: the MariaDB primary from tests/run.sh; Varnish started here.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::metrics;
use common::mariadb::Forwarder;
use common::varnish::Varnish;
use common::*;
use mysql::prelude::Queryable;

/// The purge must land within this of the commit (the target).
const TARGET: Duration = Duration::from_secs(2);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

/// A node on a fresh test database of `n` good certificates, with `[cdn]`
/// purging at `purge_at`, an admin listener with a token, and a feed bound of
/// 300 ms; L1 entries live an hour, so only the feed and purges move answers.
struct Origin {
    dir: tempfile::TempDir,
    url: String,
    server: Server,
    admin: SocketAddr,
    token: String,
    serials: Vec<String>,
}

fn target(name: &str, url: &str) -> toml::Value {
    let mut t = toml::map::Map::new();
    t.insert("name".into(), name.into());
    t.insert("kind".into(), "xkey".into());
    t.insert("url".into(), url.into());
    toml::Value::Table(t)
}

impl Origin {
    fn start(tag: &str, purge_at: &str, cdn: &[(&str, i64)]) -> Option<Origin> {
        let url = test_database(tag)?;
        let dir = tempfile::tempdir().unwrap();
        let (index, serials) = index_with(8);
        std::fs::write(dir.path().join("index.txt"), index).unwrap();
        let db = ConfigBuilder::new().mysql(&url).issuer(IssuerTable::test());
        migrate_and_import(&db.write(dir.path().join("db.toml")), &dir.path().join("index.txt"));
        let token = "purge-test-token".to_string();
        std::fs::write(dir.path().join("admin.token"), &token).unwrap();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut config = ConfigBuilder::new()
            .mysql(&url)
            .issuer(IssuerTable::test())
            .admin(admin)
            .set("admin", "token_file", dir.path().join("admin.token").display().to_string())
            .set("feed", "poll_interval_ms", 50)
            .set("feed", "bound_ms", 300)
            .set("cache", "l1_max_age_secs", 3600)
            .set("cdn", "settle_ms", 100)
            .set("cdn", "target", toml::Value::Array(vec![target("varnish", purge_at)]));
        for (k, v) in cdn {
            config = config.set("cdn", k, *v);
        }
        config.write(dir.path().join("node.toml"));
        let server = Server::start_logged(tempfile::tempdir().unwrap(), &config, &[]);
        Some(Origin { dir, url, server, admin, token, serials })
    }

    fn sql(&self, sql: &str) {
        mysql::Pool::new(self.url.as_str()).unwrap().get_conn().unwrap().query_drop(sql).unwrap();
    }

    /// The node's `ocsp_origin_purge_*{target="varnish"…}` value.
    fn purge_metric(&self, name: &str) -> f64 {
        let text = metrics(self.admin);
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l.contains("target=\"varnish\""))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

/// The three spellings of a request for `serial` a CDN caches apart: GET,
/// percent-encoded GET and POST.
fn requests(serial: &str) -> Vec<(&'static str, Vec<u8>)> {
    let der = requests_for(&[serial.to_string()]).remove(0);
    let path = b64(&der);
    let encoded = path.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    vec![
        ("GET", get(&format!("/{path}"))),
        ("GET %-encoded", get(&format!("/{encoded}"))),
        ("POST", post("/", &der)),
    ]
}

/// A serial whose request has a `+`, `/` or `=` in its base64 (so its
/// percent-encoded GET is a URL of its own).
fn with_escapes(serials: &[String]) -> Vec<String> {
    serials
        .iter()
        .filter(|s| {
            let p = b64(&requests_for(&[s.to_string()]).remove(0));
            p.contains(['+', '/', '='])
        })
        .cloned()
        .collect()
}

/// Asks through Varnish until every spelling says `revoked`; the time it took.
fn until_revoked(v: &Varnish, reqs: &[(&str, Vec<u8>)], limit: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut pending: Vec<&(&str, Vec<u8>)> = reqs.iter().collect();
    while !pending.is_empty() {
        if t0.elapsed() > limit {
            let names: Vec<&str> = pending.iter().map(|(n, _)| *n).collect();
            return Err(format!("still good through Varnish after {limit:?}: {names:?}"));
        }
        pending.retain(|(_, raw)| ocsp_status(&v.roundtrip(raw).body) != "revoked");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t0.elapsed())
}

/// Fills Varnish with `good` for every spelling and checks the second ask is
/// Varnish's own copy.
fn cache_good(v: &Varnish, reqs: &[(&str, Vec<u8>)]) {
    for (name, raw) in reqs {
        assert_eq!(ocsp_status(&v.roundtrip(raw).body), "good", "{name}");
        let again = v.roundtrip(raw);
        assert_eq!(again.header("X-Cache"), Some("HIT"), "{name}: {:?}", again.headers);
        assert_eq!(ocsp_status(&again.body), "good");
    }
}

#[test]
fn a_revocation_by_any_writer_is_purged_through_varnish() {
    // Varnish needs the origin's address and the origin Varnish's: a
    // forwarder on a fixed port stands in front of Varnish.
    let purge_port = free_port();
    let Some(o) = Origin::start("cdn_purge", &format!("http://127.0.0.1:{purge_port}/"), &[]) else { return };
    let Some(v) = Varnish::start(&[o.server.addr()]) else { return };
    let _fwd = Forwarder::start(std::net::TcpListener::bind(("127.0.0.1", purge_port)).unwrap(), v.addr());
    let serials = with_escapes(&o.serials);
    assert!(serials.len() >= 3, "three serials whose requests have escapes: {serials:?}");
    let cfg = o.dir.path().join("node.toml");
    type Writer<'a> = (&'static str, Box<dyn Fn(&str) + 'a>);
    let writers: [Writer; 3] = [
        (
            "the CLI",
            Box::new(|s: &str| {
                let (ok, out) = run_within(
                    bin().args(["revoke", "--config"]).arg(&cfg).args([
                        "--issuer",
                        "test",
                        "--serial",
                        s,
                        "--reason",
                        "keyCompromise",
                    ]),
                    Duration::from_secs(30),
                );
                assert!(ok, "{out}");
            }),
        ),
        (
            "POST /revoke",
            Box::new(|s: &str| {
                let body = format!("issuer=test&serial={s}&reason=keyCompromise");
                let raw = format!(
                    "POST /revoke HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nContent-Type: \
                     application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    o.token,
                    body.len()
                );
                let mut c = std::net::TcpStream::connect(o.admin).unwrap();
                std::io::Write::write_all(&mut c, raw.as_bytes()).unwrap();
                let r = read_response(&mut std::io::BufReader::new(c), false).unwrap();
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }),
        ),
        (
            "plain SQL",
            Box::new(|s: &str| {
                o.sql(&format!(
                    "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
                     WHERE issuer = 'test' AND serial = UNHEX('{s}')"
                ))
            }),
        ),
    ];
    let mut took = Vec::new();
    for ((who, revoke), serial) in writers.iter().zip(&serials) {
        let reqs = requests(serial);
        cache_good(&v, &reqs);
        let t0 = Instant::now();
        revoke(serial);
        until_revoked(&v, &reqs, Duration::from_secs(10)).map_err(|e| format!("{who}: {e}")).unwrap();
        took.push((who, t0.elapsed()));
        assert!(
            t0.elapsed() <= TARGET,
            "{who}: revoked through Varnish after {:?} (target {TARGET:?})",
            t0.elapsed()
        );
    }
    eprintln!("commit → revoked through Varnish: {took:?}");
    assert!(o.purge_metric("ocsp_origin_purge_total{target=\"varnish\",result=\"sent\"}") >= 3.0);
    assert_eq!(o.purge_metric("ocsp_origin_purge_queued"), 0.0);
    assert_eq!(o.purge_metric("ocsp_origin_purge_up"), 1.0);
}

#[test]
fn a_purge_target_that_is_down_loses_nothing() {
    let purge_port = free_port();
    let Some(o) =
        Origin::start("cdn_down", &format!("http://127.0.0.1:{purge_port}/"), &[("backoff_ms", 100)])
    else {
        return;
    };
    let Some(v) = Varnish::start(&[o.server.addr()]) else { return };
    let serial = &with_escapes(&o.serials)[0];
    let reqs = requests(serial);
    cache_good(&v, &reqs);
    // Nothing listens where the purges go.
    o.sql(&format!(
        "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
         WHERE issuer = 'test' AND serial = UNHEX('{serial}')"
    ));
    assert!(
        wait_for(Duration::from_secs(10), || o
            .purge_metric("ocsp_origin_purge_total{target=\"varnish\",result=\"failed\"}")
            >= 3.0),
        "failed attempts are counted:\n{}",
        metrics(o.admin)
    );
    assert_eq!(o.purge_metric("ocsp_origin_purge_up"), 0.0, "the alert metric");
    assert_eq!(o.purge_metric("ocsp_origin_purge_queued"), 1.0, "the change waits");
    assert!(
        wait_for(Duration::from_secs(5), || o.purge_metric("ocsp_origin_purge_oldest_seconds") >= 1.0),
        "the oldest unpurged change ages"
    );
    assert_eq!(o.purge_metric("ocsp_origin_purge_queued"), 1.0, "and still waits");
    // The origin answers revoked; Varnish still has its good copy.
    assert_eq!(ocsp_status(&roundtrip(&o.server, &reqs[0].1).body), "revoked");
    for (name, raw) in &reqs {
        assert_eq!(ocsp_status(&v.roundtrip(raw).body), "good", "{name}: Varnish's copy, not purged yet");
    }
    assert!(o.server.log().contains("purge of 1 tag(s) failed"), "{}", o.server.log());
    // The target comes back: the change is purged with the next attempt.
    let _fwd = Forwarder::start(std::net::TcpListener::bind(("127.0.0.1", purge_port)).unwrap(), v.addr());
    until_revoked(&v, &reqs, Duration::from_secs(15)).unwrap();
    assert!(wait_for(Duration::from_secs(5), || o.purge_metric("ocsp_origin_purge_queued") == 0.0));
    assert_eq!(o.purge_metric("ocsp_origin_purge_up"), 1.0);
    assert_eq!(o.purge_metric("ocsp_origin_purge_total{target=\"varnish\",result=\"dead_lettered\"}"), 0.0);
    // The position is kept in the database for the next start.
    let kept = || -> Option<u64> {
        mysql::Pool::new(o.url.as_str())
            .unwrap()
            .get_conn()
            .unwrap()
            .query_first("SELECT seq FROM ocsp_cdn_positions WHERE target = 'varnish'")
            .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(3), || kept()
            .is_some_and(|p| p as f64 >= o.purge_metric("ocsp_origin_purge_position"))),
        "kept position {:?}",
        kept()
    );
}

#[test]
fn a_purge_that_keeps_failing_is_dead_lettered_loudly() {
    let purge_port = free_port();
    let Some(o) = Origin::start(
        "cdn_dead",
        &format!("http://127.0.0.1:{purge_port}/"),
        &[("backoff_ms", 50), ("max_tries", 3)],
    ) else {
        return;
    };
    let serial = &o.serials[0];
    o.sql(&format!(
        "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
         WHERE issuer = 'test' AND serial = UNHEX('{serial}')"
    ));
    assert!(
        wait_for(Duration::from_secs(10), || {
            o.purge_metric("ocsp_origin_purge_total{target=\"varnish\",result=\"dead_lettered\"}") == 1.0
        }),
        "{}",
        metrics(o.admin)
    );
    assert_eq!(o.purge_metric("ocsp_origin_purge_queued"), 0.0, "given up, the position moves on");
    let log = o.server.log();
    assert!(
        log.contains("DEAD-LETTERED 1 change(s)")
            && log.contains(&format!("ocsp-c-test-{}", serial.to_lowercase().trim_start_matches('0'))),
        "{log}"
    );
}
