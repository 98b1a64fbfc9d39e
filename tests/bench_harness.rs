//! `ocsp-origin bench` against a real server: a short ratchet passes, checks
//! every answer and writes its exports; a server that lies fails the run;
//! bad arguments get a readable error.

mod common;

use std::process::Command;

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
    let issuers = format!(
        "[[issuer]]\nname = \"test\"\ncert = \"{}\"\nkey = \"{}\"\nindex = \"{}\"\n",
        data("ca.pem").display(),
        data("ca.key").display(),
        dir.path().join("index.txt").display()
    );
    let server = Server::start_in(dir, "", &issuers);
    let cfg = server.dir.path().join("ocsp-origin.toml");
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
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[issuer]]\nname = \"test\"\ncert = \"{}\"\nkey = \"{}\"\nindex = \"{}\"\n",
            data("ca.pem").display(),
            data("ca.key").display(),
            dir.path().join("index.txt").display()
        ),
    )
    .unwrap();
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
