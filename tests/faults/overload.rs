//! Overload beyond capacity: a miss storm against a server whose signer is
//! slow on purpose (an RSA-4096 key, about 100 signatures/s on one thread)
//! is shed early and cheaply. Every answer is checked by `ocsp-origin bench`:
//! nothing is wrong, nothing is an error (HTTP error, reset, timeout), the
//! excess misses get `tryLater`, and warm serials keep being served from the
//! cache throughout. The server stays up and healthy afterwards.

use crate::common;

use std::process::Command;

use common::*;

#[test]
fn a_miss_storm_beyond_signing_capacity_gets_try_later_never_errors() {
    let _turn = schedule::alone();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, msg) = run(openssl()
        .args(["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "3650", "-subj", "/CN=Slow RSA CA"])
        .arg("-keyout")
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("ca.pem")));
    assert!(ok, "{msg}");
    let (index, _) = index_with(4000);
    std::fs::write(d.join("index.txt"), index).unwrap();
    // One signer thread, a short queue and a small in-flight bound: the
    // limits under test.
    let config = ConfigBuilder::new()
        .set("signing", "threads", 1)
        .set("signing", "queue_depth", 8)
        .set("signing", "max_queue_wait_ms", 20)
        .set("cache", "max_inflight_per_shard", 16)
        .issuer(IssuerTable::new("slow", "ca.pem").key("ca.key").index("index.txt"));
    let server = Server::start_in(dir, &config);
    let cfg = server.config_file();
    let out = server.dir.path().join("out");

    // Closed loop, 48 connections, half of each request's serials never
    // asked before: far more misses than one RSA-4096 thread can sign.
    let o = Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
        .arg("bench")
        .arg("--config")
        .arg(&cfg)
        .arg("--target")
        .arg(server.addr.to_string())
        .arg("--out")
        .arg(&out)
        .args(["--connections", "48", "--duration", "3", "--keyspace", "1000", "--cold", "0.5"])
        .args(["--warm-passes", "1", "--zipf", "0", "--timeout-ms", "5000"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let s = &summary["stages"][0];
    eprintln!("miss storm: {}", s["counts"]);
    let count = |k: &str| s["counts"][k].as_u64().unwrap();
    assert_eq!(s["wrong"], 0, "{s}");
    assert_eq!(count("error"), 0, "shed, never failed: {s}");
    assert!(count("try_later") > 0, "the storm exceeded signing capacity, so some misses were shed: {s}");
    assert!(count("miss") > 0, "and the signer kept signing: {s}");
    assert!(count("hit") > count("miss"), "warm serials were served from cache throughout: {s}");

    // Still up, still right.
    let health = roundtrip(&server, &get("/"));
    assert_eq!(health.status, 200);
}
