//! `ocsp-origin bench` against a real server: a short ratchet passes, checks
//! every answer and writes its exports; a server that lies fails the run;
//! bad arguments get a readable error; several targets are driven and
//! reported one by one; and with `[mysql]` the bench follows the database's
//! change feed: a server that keeps answering a status the database no
//! longer has, past the bound, fails the run, while the old status inside
//! the bound is allowed (and counted).

mod common;

use std::process::Command;
use std::time::Duration;

use common::load::BenchRun;
use common::*;

fn bench_cmd(config: &std::path::Path, target: std::net::SocketAddr, out: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ocsp-origin"));
    c.arg("bench")
        .arg("--config")
        .arg(config)
        .arg("--target")
        .arg(target.to_string())
        .arg("--out")
        .arg(out)
        .args(["--connections", "4"])
        .env("RUST_LOG", "warn");
    c
}

/// A server on the test issuer with `n` good serials; returns it and the
/// config file the bench reads (the server's own).
fn server_with(n: usize) -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = index_with(n);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let config = ConfigBuilder::new().issuer(IssuerTable::test().index(dir.path().join("index.txt")));
    let server = Server::start_in(dir, &config);
    let cfg = server.config_file();
    (server, cfg)
}

#[test]
fn a_short_ratchet_passes_and_writes_every_export() {
    let (server, cfg) = server_with(300);
    let out = server.dir.path().join("out");
    let o = bench_cmd(&cfg, server.addr, &out)
        .args([
            "--ratchet",
            "1/2,1",
            "--rate",
            "300",
            "--duration",
            "1.5",
            "--keyspace",
            "100",
            "--timeout-ms",
            "5000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1/2") && stdout.contains("achieved/s"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let stages = summary["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2, "{summary}");
    for s in stages {
        assert_eq!(s["wrong"], 0, "{s}");
        assert_eq!(s["counts"]["error"], 0, "{s}");
        // Open loop at 300/s × fraction for 1.5 s: most of the schedule was sent.
        let sent = s["sent"].as_u64().unwrap() as f64;
        let want = 300.0 * s["fraction"].as_f64().unwrap() * 1.5;
        assert!(sent >= want * 0.8 && sent <= want * 1.1, "sent {sent}, scheduled {want}: {s}");
    }
    // Stage "1": every serial cold, so some answers were signed for it; the
    // 1/2 stage's warm half was served from cache.
    assert!(stages[1]["counts"]["miss"].as_u64().unwrap() > 0, "{summary}");
    assert!(stages[0]["counts"]["hit"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["passed"], true, "{summary}");

    for f in ["summary.md", "plot.svg", "all.hlog", "s1_1of2_all.hgrm", "s2_1_all.hgrm"] {
        let p = out.join(f);
        assert!(
            p.is_file(),
            "{} missing; exports: {:?}",
            p.display(),
            std::fs::read_dir(&out).unwrap().count()
        );
    }
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "not an SVG");
}

#[test]
fn a_server_that_lies_fails_the_run() {
    // The server says "good" for every serial; the bench's copy of the status
    // source says they are all revoked.
    let (server, _) = server_with(60);
    let (index, _) = index_with(60);
    let revoked: String = index
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("R\t{}\t261101120000Z,keyCompromise\t{}\t{}\t{}\n", f[1], f[3], f[4], f[5])
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.txt"), revoked).unwrap();
    let cfg = ConfigBuilder::new()
        .issuer(IssuerTable::test().index(dir.path().join("index.txt")))
        .write(dir.path().join("bench.toml"));
    let o = bench_cmd(&cfg, server.addr, &dir.path().join("out"))
        .args(["--duration", "0.5", "--warm-passes", "0", "--timeout-ms", "5000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("WRONG") && stderr.contains("wrong answers"), "{stderr}");
    assert!(stderr.contains("good but the source says Revoked"), "{stderr}");
}

#[test]
fn bad_arguments_get_a_readable_error() {
    let (server, cfg) = server_with(10);
    let out = server.dir.path().join("out");
    for (args, want) in [
        (&["--ratchet", "2"][..], "not in (0, 1]"),
        (&["--ratchet", "1/0"][..], "division by zero"),
        (&["--keyspace", "1000000"][..], "does not fit"),
        (&["--cpus", "9-3"][..], "bad CPU list"),
        (&["--rate", "0"][..], "--rate must be positive"),
        (&["--target", "127.0.0.1:1,"][..], "empty address"),
        (&["--target", "localhost:80"][..], "is not IP:PORT"),
        (&["--target", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4"][..], "fewer than the 5 targets"),
        (&["--change-poll-ms", "0"][..], "--change-poll-ms must be"),
        (&["--cdn-purge", "http://127.0.0.1:1/"][..], "--cdn-purge needs --ratchet"),
        (&["--cdn-purge", "127.0.0.1:1", "--ratchet", "1"][..], "not an http:// URL"),
        (
            &["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1", "--cdn-purge-batch", "0"][..],
            "--cdn-purge-batch",
        ),
        (
            &["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1", "--cdn-tag-prefix", "a b"][..],
            "--cdn-tag-prefix",
        ),
        // Nothing listens there: the probe purge before the warm-up says so.
        (&["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1"][..], "a test purge failed"),
    ] {
        let o = bench_cmd(&cfg, server.addr, &out).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_server_that_never_answers_ends_the_run_on_time_with_errors() {
    // A listener nobody accepts on: connections complete in the kernel's
    // backlog and every request times out.
    let (server, cfg) = server_with(20);
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = server.dir.path().join("out-hole");
    let started = std::time::Instant::now();
    let o = bench_cmd(&cfg, hole.local_addr().unwrap(), &out)
        .args(["--rate", "400", "--duration", "1", "--timeout-ms", "300", "--warm-passes", "0"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "errors are not wrong answers: {stderr}");
    assert!(took < std::time::Duration::from_secs(15), "the run took {took:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let s = &summary["stages"][0];
    // 400/s for 1 s: every scheduled request ends as an error, sent or not.
    assert!(s["counts"]["error"].as_u64().unwrap() >= 300, "{s}");
    assert_eq!(summary["passed"], false, "{summary}");
    drop(hole);
}

#[test]
fn several_targets_each_get_connections_and_are_reported() {
    // Two servers with the same certificates (two nodes).
    let (a, cfg) = server_with(50);
    let (b, _) = server_with(50);
    let out = a.dir.path().join("out-two");
    let o = bench_cmd(&cfg, a.addr, &out)
        .args(["--target", &b.addr.to_string()])
        .args(["--rate", "200", "--duration", "1.5", "--zipf", "0", "--timeout-ms", "5000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let names = [a.addr.to_string(), b.addr.to_string()];
    assert_eq!(summary["meta"]["targets"], serde_json::json!(names), "{summary}");
    let targets = summary["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{summary}");
    let mut answers = 0;
    for (t, name) in targets.iter().zip(&names) {
        assert_eq!(t["target"], name.as_str(), "{t}");
        // 4 connections, 2 each: about half the 300 scheduled requests.
        assert!(t["answers"].as_u64().unwrap() >= 100, "{t}");
        assert_eq!(t["wrong"], 0, "{t}");
        assert_eq!(t["errors"], 0, "{t}");
        answers += t["answers"].as_u64().unwrap();
        assert!(stdout.contains(name.as_str()), "the table has a line for {name}:\n{stdout}");
    }
    assert_eq!(answers, summary["stages"][0]["completed"].as_u64().unwrap(), "{summary}");
    assert_eq!(summary["meta"]["change_feed"], "off", "{summary}");
}

/// The serial the tests revoke (every serial is asked for as often: --zipf 0).
const CHANGED: &str = "1000";

/// Revokes `serial` of the test issuer with plain SQL, as a CA's pipeline
/// would: nothing tells the responders.
fn revoke_with_sql(url: &str, serial: &str) {
    use mysql::prelude::Queryable;
    let pool = mysql::Pool::new(url).unwrap();
    pool.get_conn()
        .unwrap()
        .query_drop(format!(
            "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
             WHERE issuer = 'test' AND serial = UNHEX('{serial}')"
        ))
        .unwrap();
}

/// A bench config whose statuses come from a fresh database holding the
/// certificates of `index_with(n)` (migrated and imported like production).
fn bench_config_on_database(dir: &std::path::Path, url: &str, n: usize) -> std::path::PathBuf {
    let (index, _) = index_with(n);
    let index_path = dir.join("db-index.txt");
    std::fs::write(&index_path, index).unwrap();
    let cfg = ConfigBuilder::new().issuer(IssuerTable::test()).mysql(url).write(dir.join("bench-db.toml"));
    migrate_and_import(&cfg, &index_path);
    cfg
}

/// A server answering from its own `index.txt` (it never sees the
/// database), a bench following the database, and one serial revoked in the
/// database 0.5 s into the measured stage. Returns the bench's exit code,
/// output (stdout and stderr) and summary.
fn stale_server_run(tag: &str, bound_ms: u64) -> Option<(Option<i32>, String, serde_json::Value)> {
    let url = test_database(tag)?;
    let (server, _) = server_with(20);
    let dir = server.dir.path();
    let cfg = bench_config_on_database(dir, &url, 20);
    let out = dir.join("out-stale");
    let mut cmd = bench_cmd(&cfg, server.addr, &out);
    let bound = bound_ms.to_string();
    cmd.args(["--rate", "400", "--duration", "3", "--zipf", "0", "--warm-passes", "1"]).args([
        "--timeout-ms",
        "5000",
        "--change-bound-ms",
        &bound,
    ]);
    let mut run = BenchRun::spawn(cmd, out);
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(500));
    revoke_with_sql(&url, CHANGED);
    let (status, log) = run.wait(Duration::from_secs(60));
    Some((status.code(), log, run.summary()))
}

#[test]
fn a_server_that_misses_a_database_change_fails_the_run() {
    let Some((code, log, summary)) = stale_server_run("bench_stale", 500) else { return };
    let ctx = format!("{log}\n{summary}");
    assert_eq!(code, Some(1), "{ctx}");
    // Answers sent at least 500 ms after the bench saw the revocation still
    // said good: wrong, naming the serial, what it said and what it should.
    assert!(
        log.contains(&format!("WRONG: serial {CHANGED} (issuer test)"))
            && log.contains("answered good, expected revoked at"),
        "{ctx}"
    );
    let c = &summary["changes"];
    assert_eq!(c["seen_in_keyspace"], 1, "{ctx}");
    assert_eq!(c["entries_changed"], 1, "{ctx}");
    // About 20 answers/s for the serial over the 2 s past the bound.
    assert!(c["wrong"].as_u64().unwrap() >= 10, "{ctx}");
    assert_eq!(summary["stages"][0]["wrong"], c["wrong"], "{ctx}");
    assert_eq!(summary["targets"][0]["wrong"], c["wrong"], "{ctx}");
    assert_eq!(summary["passed"], false, "{ctx}");
    // The answers inside the bound were allowed (and counted).
    assert!(c["answers_older_in_window"].as_u64().unwrap() > 0, "{ctx}");
    assert!(log.contains("changes: 1 seen"), "{ctx}");
}

#[test]
fn the_old_status_is_allowed_inside_the_bound() {
    let Some((code, log, summary)) = stale_server_run("bench_window", 60_000) else { return };
    let ctx = format!("{log}\n{summary}");
    assert_eq!(code, Some(0), "{ctx}");
    let c = &summary["changes"];
    assert_eq!(c["seen_in_keyspace"], 1, "{ctx}");
    assert_eq!(c["wrong"], 0, "{ctx}");
    assert_eq!(c["answers_judged_against_change"], 0, "nothing was sent 60 s after τ: {ctx}");
    // The serial was asked for after τ and still said good: inside the window.
    assert!(c["answers_older_in_window"].as_u64().unwrap() >= 10, "{ctx}");
    assert_eq!(summary["meta"]["change_feed"], "on", "{ctx}");
    assert_eq!(summary["passed"], true, "{ctx}");
}

#[test]
fn nodes_that_reread_the_database_show_the_change_and_the_bench_times_it() {
    let Some(url) = test_database("bench_follow") else { return };
    // Two nodes whose cached answers are checked against the database after
    // at most a second: they show the revocation well within 3 s.
    let work = tempfile::tempdir().unwrap();
    let cfg = bench_config_on_database(work.path(), &url, 20);
    let config =
        ConfigBuilder::new().mysql(&url).set("cache", "l1_max_age_secs", 1).issuer(IssuerTable::test());
    let a = Server::start(&config);
    let b = Server::start(&config);
    let out = work.path().join("out-follow");
    let mut cmd = bench_cmd(&cfg, a.addr, &out);
    cmd.args(["--target", &b.addr.to_string()])
        .args(["--rate", "400", "--duration", "4.5", "--zipf", "0", "--warm-passes", "1"])
        .args(["--timeout-ms", "5000", "--change-bound-ms", "3000"]);
    let mut run = BenchRun::spawn(cmd, out);
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(300));
    revoke_with_sql(&url, CHANGED);
    let (status, log) = run.wait(Duration::from_secs(60));
    let summary = run.summary();
    let ctx = format!("{log}\n{summary}");
    assert!(status.success(), "{ctx}");
    let c = &summary["changes"];
    assert_eq!(c["wrong"], 0, "{ctx}");
    assert!(c["answers_judged_against_change"].as_u64().unwrap() > 0, "{ctx}");
    let shown = c["seen_to_first_new_answer_ms"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{ctx}");
    for p in shown {
        assert_eq!(p["changes"], 1, "each node showed the revocation: {ctx}");
        assert!(p["max_ms"].as_f64().unwrap() < 3000.0, "{ctx}");
    }
    for t in summary["targets"].as_array().unwrap() {
        assert!(t["answers"].as_u64().unwrap() > 100, "{ctx}");
    }
}
