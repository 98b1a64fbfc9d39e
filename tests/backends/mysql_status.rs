//! Statuses in a real MariaDB (private instance from tests/run.sh): schema
//! migrations, idempotent import, revoke/unrevoke through the CLI, a server
//! reading through the batched lookup pool, revocations seen within the L1
//! max age, and unchanged statuses re-served without re-signing.

use crate::common;

use std::io::{BufReader, Write};
use std::process::Command;
use std::time::Duration;

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

/// A config file for a fresh database (`top` with its `[mysql]` and the
/// test issuer), in a fresh directory; the file, the database's URL and the
/// config.
fn setup(
    tag: &str,
    top: ConfigBuilder,
) -> Option<(tempfile::TempDir, std::path::PathBuf, String, ConfigBuilder)> {
    let url = test_database(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let config = top.mysql(&url).issuer(IssuerTable::test()).for_server();
    let cfg = config.write(dir.path().join("c.toml"));
    Some((dir, cfg, url, config))
}

fn ok(cmd: &mut Command) -> String {
    let (ok, out) = run(cmd);
    assert!(ok, "{cmd:?}: {out}");
    out
}

/// The schema, and the test issuer's two certificates.
fn migrate_and_import(cfg: &std::path::Path) {
    ok(bin().args(["db", "migrate", "--config"]).arg(cfg));
    ok(bin()
        .args(["db", "import", "--config"])
        .arg(cfg)
        .args(["--issuer", "test", "--index"])
        .arg(data("index.txt")));
}

#[test]
fn migrate_and_import_are_idempotent() {
    let _turn = schedule::with_others();
    let Some((dir, cfg, _, _)) = setup("import", ConfigBuilder::new()) else { return };
    let out = ok(bin().args(["db", "migrate", "--config"]).arg(&cfg));
    assert!(out.contains("applied migrations [1, 2, 3]"), "{out}");
    let out = ok(bin().args(["db", "migrate", "--config"]).arg(&cfg));
    assert!(out.contains("schema up to date"), "{out}");

    let import = |index: &std::path::Path| {
        ok(bin()
            .args(["db", "import", "--config"])
            .arg(&cfg)
            .args(["--issuer", "test", "--index"])
            .arg(index))
    };
    let out = import(&data("index.txt"));
    assert!(
        out.contains("imported 2 certificates for issuer \"test\": 2 new, 0 changed, 0 unchanged"),
        "{out}"
    );
    let out = import(&data("index.txt"));
    assert!(out.contains("0 new, 0 changed, 2 unchanged"), "{out}");
    // The CA revoked the good certificate in its own database: re-import picks it up.
    let changed = std::fs::read_to_string(data("index.txt"))
        .unwrap()
        .replace("V\t361125115433Z\t\t0A1B", "R\t361125115433Z\t261120000000Z,superseded\t0A1B");
    let p = dir.path().join("index2.txt");
    std::fs::write(&p, changed).unwrap();
    let out = import(&p);
    assert!(out.contains("0 new, 1 changed, 1 unchanged"), "{out}");
    // The issuer may be named by its certificate file.
    let out = ok(bin()
        .args(["db", "import", "--config"])
        .arg(&cfg)
        .arg("--issuer")
        .arg(data("ca.pem"))
        .arg("--index")
        .arg(&p));
    assert!(out.contains("2 unchanged"), "{out}");
    // A broken line names itself and writes nothing of its chunk.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "V\t361125115433Z\t\t0B\tunknown\t/CN=x\nQ\tbroken\n").unwrap();
    let (okk, out) = run(bin()
        .args(["db", "import", "--config"])
        .arg(&cfg)
        .args(["--issuer", "test", "--index"])
        .arg(&bad));
    assert!(!okk && out.contains("bad.txt:2:"), "{out}");
}

#[test]
fn server_answers_from_mysql_and_sees_revocations() {
    let _turn = schedule::with_others();
    let top = ConfigBuilder::new().set("cache", "l1_max_age_secs", 1);
    let Some((dir, cfg, _, config)) = setup("serve", top) else { return };
    migrate_and_import(&cfg);
    let s = Server::start_in(dir, &config);
    let url = s.url();
    let check = |cert: &str| {
        run(openssl()
            .args(["ocsp", "-issuer"])
            .arg(data("ca.pem"))
            .arg("-cert")
            .arg(data(cert))
            .args(["-url", &url, "-no_nonce", "-CAfile"])
            .arg(data("ca.pem")))
        .1
    };
    let out = check("leaf-good.pem");
    assert!(out.contains("Response verify OK") && out.contains(": good"), "{out}");
    let out = check("leaf-revoked.pem");
    assert!(out.contains(": revoked") && out.contains("keyCompromise"), "{out}");
    let (_, out) = run(openssl().args(["ocsp", "-issuer"]).arg(data("ca.pem")).args([
        "-serial",
        "0x0BAD",
        "-url",
        &url,
        "-no_nonce",
    ]));
    assert!(out.contains("unauthorized (6)"), "{out}");

    // One connection (one shard): past the max age an unchanged status is
    // re-served without a new signature (same bytes, same ETag).
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    let path = format!("/{}", b64(&der));
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    c.write_all(&get(&path)).unwrap();
    let first = read_response(&mut r, false).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    c.write_all(&get(&path)).unwrap();
    let again = read_response(&mut r, false).unwrap();
    assert_eq!(first.header("etag"), again.header("etag"), "revalidated, not re-signed");

    // Revoke through the CLI; within the max age every shard answers revoked.
    // (Revisions are change-feed positions: the import's two rows took 1 and 2.)
    let out = ok(bin().args(["revoke", "--config"]).arg(&cfg).args([
        "--issuer",
        "test",
        "--serial",
        GOOD,
        "--reason",
        "keyCompromise",
        "--at",
        "2026-11-27T10:00:00Z",
    ]));
    // Revisions are the change feed's positions: the migration's placeholder
    // took 1, the import 2 and 3.
    assert!(out.contains("revoked 0A1B2C3D4E5F60718293") && out.contains("revision 4"), "{out}");
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..4 {
        let out = check("leaf-good.pem");
        assert!(
            out.contains(": revoked") && out.contains("Revocation Time: Nov 27 10:00:00 2026 GMT"),
            "{out}"
        );
    }
    c.write_all(&get(&path)).unwrap();
    let after = read_response(&mut r, false).unwrap();
    assert_ne!(first.header("etag"), after.header("etag"), "a changed status is re-signed");
}

#[test]
fn revoke_and_unrevoke_rules() {
    let _turn = schedule::with_others();
    // Holds are RFC 5280's (a private PKI's); the Baseline Requirements
    // forbid them, which the default profile enforces (checked first).
    let rfc = ConfigBuilder::new().set("response", "profile", "rfc6960");
    let Some((dir, cfg, _, config)) = setup("revoke", rfc) else { return };
    migrate_and_import(&cfg);
    let baseline = config.set("response", "profile", "baseline").write(dir.path().join("baseline.toml"));
    let revoke_baseline = |reason: &str, at: &str| {
        run(bin()
            .args(["revoke", "--config"])
            .arg(&baseline)
            .args(["--issuer", "test", "--serial", GOOD, "--reason", reason, "--at", at]))
    };
    for reason in ["certificateHold", "cACompromise", "removeFromCRL", "aACompromise"] {
        let (okk, out) = revoke_baseline(reason, "2026-11-01T00:00:00Z");
        assert!(!okk && out.contains("not one the Baseline Requirements allow"), "{reason}: {out}");
    }
    let (okk, out) = revoke_baseline("keyCompromise", "2099-01-01T00:00:00Z");
    assert!(!okk && out.contains("is in the future"), "{out}");
    let revoke = |serial: &str, reason: &str| {
        run(bin()
            .args(["revoke", "--config"])
            .arg(&cfg)
            .args(["--issuer", "test", "--serial", serial, "--reason", reason]))
    };
    let unrevoke = |serial: &str| {
        run(bin().args(["unrevoke", "--config"]).arg(&cfg).args(["--issuer", "test", "--serial", serial]))
    };

    let (okk, out) = revoke(REVOKED, "superseded");
    assert!(!okk && out.contains("already revoked"), "{out}");
    let (okk, out) = revoke("0BAD", "superseded");
    assert!(!okk && out.contains("no certificate 0BAD"), "{out}");
    let (okk, out) = revoke(GOOD, "notAReason");
    assert!(!okk && out.contains("unknown reason"), "{out}");
    let (okk, out) = unrevoke(REVOKED);
    assert!(!okk && out.contains("only a hold can be undone"), "{out}");
    let (okk, out) = unrevoke(GOOD);
    assert!(!okk && out.contains("is not revoked"), "{out}");

    // Hold, release, hold, then revoke for good (allowed from hold). Each
    // change takes the next change-feed position (the migration's placeholder
    // took 1, the import 2 and 3).
    let (okk, out) = revoke(GOOD, "certificateHold");
    assert!(okk && out.contains("revision 4"), "{out}");
    let (okk, out) = unrevoke(GOOD);
    assert!(okk && out.contains("revision 5"), "{out}");
    assert!(revoke(GOOD, "certificateHold").0);
    let (okk, out) = revoke(GOOD, "keyCompromise");
    assert!(okk && out.contains("revision 7"), "{out}");
    let (okk, out) = run(bin().args(["revoke", "--config"]).arg(&cfg).args([
        "--issuer",
        "nope",
        "--serial",
        GOOD,
        "--reason",
        "superseded",
    ]));
    assert!(!okk && out.contains("no issuer named \"nope\""), "{out}");
}

#[test]
fn config_errors_for_mysql() {
    let _turn = schedule::with_others();
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.toml");
    ConfigBuilder::new()
        .mysql("mysql://root@127.0.0.1:1/x")
        .issuer(IssuerTable::test().index(data("index.txt")))
        .write(&f);
    let (okk, out) = run(bin().arg("check-config").arg(&f));
    assert!(!okk && out.contains("issuer[0].index: statuses come from [mysql]"), "{out}");
    ConfigBuilder::new().issuer(IssuerTable::test()).write(&f);
    let (okk, out) = run(bin().arg("check-config").arg(&f));
    assert!(!okk && out.contains("issuer[0].index: required"), "{out}");
    // Unreachable database: a clear error, the password never printed.
    ConfigBuilder::new().mysql("mysql://ocsp:s3cret@127.0.0.1:1/x").issuer(IssuerTable::test()).write(&f);
    let (okk, out) = run(bin().arg("check-config").arg(&f));
    assert!(!okk && out.contains("mysql:"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
}

/// The policy for a database that is down when a node starts: `serve` starts
/// anyway (it loads with `app::load_parts_for_serving`), answers misses
/// `tryLater` at once, and signs them once the database answers, by itself;
/// `check-config` (`app::load_parts`) still reports the database, and a
/// database without the schema. The server runs in this process (its
/// threads end with it).
#[test]
fn a_node_starts_while_its_database_is_down_and_recovers() {
    let _turn = schedule::with_others();
    let Some((dir, cfg, url, config)) = setup("startdown", ConfigBuilder::new().pin(false)) else { return };
    // The schema is missing: check-config says so.
    let (okk, out) = run(bin().arg("check-config").arg(&cfg));
    assert!(!okk && out.contains("mysql:") && out.contains("db migrate"), "{out}");
    migrate_and_import(&cfg);

    // The same database behind a port where nothing listens yet.
    let upstream: std::net::SocketAddr =
        url.split('@').nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let port = free_port();
    let down_url = url.replace(&upstream.to_string(), &format!("127.0.0.1:{port}"));
    let down_cfg = config.set("mysql", "url", down_url.as_str()).write(dir.path().join("down.toml"));
    let config = ocsp_origin::config::Config::load(&down_cfg).unwrap();

    let (okk, out) = run(bin().arg("check-config").arg(&down_cfg));
    assert!(!okk && out.contains("mysql:"), "check-config insists on the database: {out}");
    let e = ocsp_origin::app::load_parts(&config).err().expect("load_parts insists on the database");
    assert_eq!(e.field, "mysql");
    let t = std::time::Instant::now();
    let parts = ocsp_origin::app::load_parts_for_serving(&config).expect("serve starts without it");
    assert!(t.elapsed() < Duration::from_secs(3), "start-up waited {:?}", t.elapsed());

    let addr = serve_in_process(config, parts);
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    let ask = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&post("/", &der)).unwrap();
        let r = read_response(&mut BufReader::new(s), false).unwrap();
        assert_eq!(r.status, 200);
        r
    };

    // Down: tryLater, at once.
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let r = ask();
        assert_eq!(r.body, ocsp_error(3), "tryLater while the database is down");
        assert!(t.elapsed() < Duration::from_millis(250), "answered in {:?}", t.elapsed());
    }

    // Up: the prober notices, and the miss is signed.
    let _db = Forwarder::start(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(), upstream);
    let up = std::time::Instant::now();
    loop {
        let r = ask();
        if ocsp_status(&r.body) == "good" {
            break;
        }
        assert_eq!(r.body, ocsp_error(3));
        assert!(up.elapsed() < Duration::from_secs(5), "no recovery after the database came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("recovered {:?} after the database came up", up.elapsed());
}

/// `SELECT status, reason, revoked_at` of one serial of issuer "test".
fn row_of(url: &str, serial: &str) -> Option<(u8, Option<u8>, Option<u64>)> {
    use mysql::prelude::Queryable;
    let serial = ocsp_origin::ocsp::Serial::from_hex(serial).unwrap();
    mysql::Pool::new(url)
        .unwrap()
        .get_conn()
        .unwrap()
        .exec_first(
            "SELECT status, reason, revoked_at FROM ocsp_certificates WHERE issuer = 'test' AND serial = ?",
            (serial.as_bytes(),),
        )
        .unwrap()
}

/// The database is authoritative: re-importing an index.txt that still
/// calls a certificate good does not undo its revocation (a hold included:
/// only `unrevoke` lifts one), and says so line by line.
#[test]
fn import_never_turns_a_revoked_row_good() {
    let _turn = schedule::with_others();
    let rfc = ConfigBuilder::new().set("response", "profile", "rfc6960"); // holds
    let Some((_dir, cfg, url, _)) = setup("keeprevoked", rfc) else { return };
    migrate_and_import(&cfg);
    let import = || {
        ok(bin()
            .args(["db", "import", "--config"])
            .arg(&cfg)
            .args(["--issuer", "test", "--index"])
            .arg(data("index.txt")))
    };
    let line =
        std::fs::read_to_string(data("index.txt")).unwrap().lines().position(|l| l.contains(GOOD)).unwrap()
            + 1;
    let kept = format!(
        "index.txt:{line}: serial {GOOD} is revoked in the database; not made good \
         (only `ocsp-origin unrevoke` lifts certificateHold)"
    );
    for reason in ["certificateHold", "keyCompromise"] {
        if reason == "keyCompromise" {
            ok(bin().args(["unrevoke", "--config"]).arg(&cfg).args(["--issuer", "test", "--serial", GOOD]));
            assert!(import().contains("0 changed, 2 unchanged, 0 kept revoked"), "released: good again");
        }
        ok(bin().args(["revoke", "--config"]).arg(&cfg).args([
            "--issuer",
            "test",
            "--serial",
            GOOD,
            "--reason",
            reason,
            "--at",
            "2026-11-27T10:00:00Z",
        ]));
        let out = import();
        assert!(out.contains(&kept), "{reason}: {out}");
        assert!(out.contains("0 new, 0 changed, 1 unchanged, 1 kept revoked"), "{reason}: {out}");
        let code = ocsp_origin::ops::input::parse_reason(reason).unwrap() as u8;
        assert_eq!(row_of(&url, GOOD), Some((1, Some(code), Some(1_795_773_600))), "{reason}: still revoked");
    }
}

/// `revoke --serials FILE`: a mix of per-line and default reasons and times,
/// a bad file refused before any write, a re-run that finds everything done,
/// serials the database lacks counted and named, a hold turned into a
/// revocation, and one change-feed entry per revoked row.
#[test]
fn mass_revocation_from_a_file() {
    let _turn = schedule::with_others();
    use mysql::prelude::Queryable;
    let rfc = ConfigBuilder::new().set("response", "profile", "rfc6960"); // holds
    let Some((dir, cfg, url, _)) = setup("mass", rfc) else { return };
    ok(bin().args(["db", "migrate", "--config"]).arg(&cfg));
    let (index, serials) = index_with(50);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    ok(bin()
        .args(["db", "import", "--config"])
        .arg(&cfg)
        .args(["--issuer", "test", "--index"])
        .arg(dir.path().join("index.txt")));
    let revoke_file = |file: &std::path::Path, extra: &[&str]| {
        run(bin()
            .args(["revoke", "--config"])
            .arg(&cfg)
            .args(["--issuer", "test", "--serials"])
            .arg(file)
            .args(extra))
    };
    let held = |serial: &str| {
        ok(bin().args(["revoke", "--config"]).arg(&cfg).args([
            "--issuer",
            "test",
            "--serial",
            serial,
            "--reason",
            "certificateHold",
        ]))
    };
    // On hold beforehand: one is revoked for good by the file, one held again.
    held(&serials[10]);
    held(&serials[11]);

    let mut text = String::from("# the mass revocation of 2026-11\n\n");
    for (i, s) in serials.iter().enumerate() {
        text.push_str(&match i % 5 {
            _ if i == 11 => format!("{s} certificateHold\n"),
            0 => format!("{s} keyCompromise 2026-11-01T12:00:00Z\n"),
            1 => format!("{s} superseded   # re-issued\n"),
            _ => format!("{s}\n"),
        });
    }
    text.push_str("0BAD01\n0BAD02 keyCompromise\n0BAD03\n");
    let file = dir.path().join("serials.txt");
    std::fs::write(&file, &text).unwrap();

    // Refused before any write: a bad line, or a line without a reason.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, text.replacen("0BAD02 keyCompromise", "0BAD02 keyCompromised", 1)).unwrap();
    let (okk, out) = revoke_file(&bad, &["--reason", "cessationOfOperation"]);
    let bad_line = text.lines().position(|l| l.starts_with("0BAD02")).unwrap() + 1;
    assert!(!okk && out.contains(&format!("bad.txt:{bad_line}: unknown reason \"keyCompromised\"")), "{out}");
    assert!(out.contains("nothing was revoked") && !out.contains("panicked"), "{out}");
    let (okk, out) = revoke_file(&file, &[]);
    assert!(!okk && out.contains(&format!("serials.txt:5: no reason for serial {}", serials[2])), "{out}");
    let (okk, out) = revoke_file(&file, &["--reason", "cessationOfOperation", "--batch", "0"]);
    assert!(!okk && out.contains("--batch: 0 rows"), "{out}");
    let mut conn = mysql::Pool::new(url.as_str()).unwrap().get_conn().unwrap();
    let revoked = |conn: &mut mysql::PooledConn| -> u64 {
        conn.query_first("SELECT COUNT(*) FROM ocsp_certificates WHERE status = 1").unwrap().unwrap()
    };
    assert_eq!(revoked(&mut conn), 2, "nothing written but the two holds");
    let feed_before: u64 = conn.query_first("SELECT COUNT(*) FROM ocsp_changes").unwrap().unwrap();

    let args = ["--reason", "cessationOfOperation", "--at", "2026-11-20T00:00:00Z", "--batch", "7"];
    let (okk, out) = revoke_file(&file, &args);
    assert!(okk, "{out}");
    assert!(out.contains("revoking ") && out.contains("53/53 (100%)"), "progress: {out}");
    assert!(
        out.contains(": 53 certificates of \"test\": 49 revoked, 1 already revoked, 3 not found"),
        "{out}"
    );
    assert!(out.contains("not in the database: 0BAD01, 0BAD02, 0BAD03\n"), "{out}");
    assert!(out.contains("change feed") && !out.contains("tombstoned"), "{out}");
    let (ca, kc, sup) = (Some(5), Some(1), Some(4));
    let (nov1, nov20) = (Some(1_793_534_400), Some(1_795_132_800));
    assert_eq!(row_of(&url, &serials[0]), Some((1, kc, nov1)));
    assert_eq!(row_of(&url, &serials[1]), Some((1, sup, nov20)));
    assert_eq!(row_of(&url, &serials[2]), Some((1, ca, nov20)));
    assert_eq!(row_of(&url, &serials[10]).and_then(|r| r.1), kc, "a hold revoked for good");
    assert_eq!(row_of(&url, &serials[11]).and_then(|r| r.1), Some(6), "still on hold");
    assert_eq!(revoked(&mut conn), 50);
    let feed: u64 = conn.query_first("SELECT COUNT(*) FROM ocsp_changes WHERE op = 'U'").unwrap().unwrap();
    let feed_after: u64 = conn.query_first("SELECT COUNT(*) FROM ocsp_changes").unwrap().unwrap();
    assert_eq!((feed_after - feed_before, feed), (49, 49 + 2), "one change-feed entry per revoked row");

    // Resumed (or repeated): everything is done already.
    let (okk, out) = revoke_file(&file, &args);
    assert!(okk && out.contains("0 revoked, 50 already revoked, 3 not found"), "{out}");

    // Many missing serials: all counted, ten named.
    let missing: String = (0..25).map(|i| format!("{:04X} superseded\n", 0xE000 + i)).collect();
    std::fs::write(&file, missing).unwrap();
    let (okk, out) = revoke_file(&file, &[]);
    assert!(okk && out.contains("0 revoked, 0 already revoked, 25 not found"), "{out}");
    assert!(out.contains("E000, E001, E002, E003, E004, E005, E006, E007, E008, E009 and 15 more"), "{out}");
}

/// A mass revocation's rate: 100,000 rows (a mix of reasons and times, so
/// several UPDATEs per batch) through `revoke --serials` with the default
/// batch; well under a minute even on a shared 2-vCPU machine with the
/// replica applying every change too.
#[test]
fn mass_revocation_of_100000_rows() {
    let _turn = schedule::with_others();
    use mysql::prelude::Queryable;
    const N: usize = 100_000;
    let Some((dir, cfg, url, _)) = setup("mass100k", ConfigBuilder::new()) else { return };
    ok(bin().args(["db", "migrate", "--config"]).arg(&cfg));
    let serials: Vec<String> = (0..N).map(|i| format!("{:06X}", 0x100000 + i)).collect();
    let pool = mysql::Pool::new(url.as_str()).unwrap();
    let mut conn = pool.get_conn().unwrap();
    let t = std::time::Instant::now();
    for part in serials.chunks(5000) {
        let values: Vec<String> = part.iter().map(|s| format!("('test', X'{s}', 0, 2000000000)")).collect();
        conn.query_drop(format!(
            "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    }
    eprintln!("inserted {N} rows in {:?}", t.elapsed());
    let text: String = serials
        .iter()
        .enumerate()
        .map(|(i, s)| match i % 4 {
            0 => format!("{s} keyCompromise 2026-11-01T12:00:00Z\n"),
            1 => format!("{s} superseded\n"),
            _ => format!("{s}\n"),
        })
        .collect();
    let file = dir.path().join("serials.txt");
    std::fs::write(&file, text).unwrap();
    let t = std::time::Instant::now();
    let out = ok(bin()
        .args(["revoke", "--config"])
        .arg(&cfg)
        .args(["--issuer", "test", "--reason", "cessationOfOperation", "--serials"])
        .arg(&file));
    let took = t.elapsed();
    assert!(
        out.contains(&format!("{N} certificates of \"test\": {N} revoked, 0 already revoked, 0 not found"))
    );
    eprintln!("revoked {N} rows in {took:?}: {:.0} rows/s", N as f64 / took.as_secs_f64());
    assert!(took < Duration::from_secs(60), "{took:?}");
    let revoked: u64 =
        conn.query_first("SELECT COUNT(*) FROM ocsp_certificates WHERE status = 1").unwrap().unwrap();
    assert_eq!(revoked, N as u64);
}

/// A storm of misses shares its queries: every shard hands a turn's lookups
/// over at once, and while misses arrive fast a lookup thread waits up to
/// `batch_wait_us` for more (up to `batch`, 16 here) before it queries. 32
/// clients asking for new serials back to back make at least 8 lookups per
/// SELECT; without the wait (`batch_wait_us = 0`) this measured 1.6–1.9, as
/// lookups sent one by one to four threads did (`benches/RESULTS.md`).
#[test]
fn a_storm_of_misses_shares_its_queries() {
    let _turn = schedule::alone();
    let admin = free_port();
    let top = ConfigBuilder::new()
        .admin(format!("127.0.0.1:{admin}"))
        .set("mysql", "threads", 4)
        .set("mysql", "batch", 16)
        .set("mysql", "batch_wait_us", 20_000);
    let Some((dir, cfg, _, config)) = setup("storm", top) else { return };
    let (index, serials) = index_with(1600);
    let index_file = dir.path().join("storm-index.txt");
    std::fs::write(&index_file, index).unwrap();
    common::migrate_and_import(&cfg, &index_file);
    let s = Server::start_in(dir, &config);
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let clients = 32;
    let good = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for chunk in serials.chunks(serials.len() / clients) {
            let (s, good) = (&s, &good);
            scope.spawn(move || {
                let mut c = s.connect();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                for serial in chunk {
                    let der =
                        request_der(&[cert_id_der(ocsp_origin::ocsp::HashAlg::Sha1, true, serial)], &[]);
                    let req = get(&format!("/{}", b64(&der)));
                    // A tryLater (the signers shedding on a busy machine) is
                    // asked again, as a client would.
                    let mut status = String::new();
                    for _ in 0..10 {
                        c.write_all(&req).unwrap();
                        status = ocsp_status(&read_response(&mut r, false).expect("an answer").body);
                        if status != "error TryLater" {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    assert_eq!(status, "good", "{serial}");
                    good.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(good.into_inner(), serials.len());
    let text = load::metrics(admin);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let (lookups, queries) =
        (value("ocsp_origin_status_lookups_total"), value("ocsp_origin_status_queries_total"));
    assert!(lookups >= serials.len() as f64, "{lookups} lookups for {} misses", serials.len());
    assert!(
        lookups / queries >= 8.0,
        "{lookups} lookups in {queries} queries: {:.1} a query",
        lookups / queries
    );
}
