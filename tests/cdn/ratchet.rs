//! The seed's ratchet through a real CDN: `ocsp-origin bench --cdn-purge`
//! drives Varnish (production VCL) in front of an origin, purging 1/16 and
//! then all of the origin's bucket tags before its two stages. Every answer
//! is verified; the purges reach Varnish and drop objects (`X-Purged`), the
//! CDN's hit ratio falls as the purged share grows, the origin's requests
//! rise, and no answer is wrong or an error.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::varnish::Varnish;
use common::*;

#[test]
fn a_ratchet_through_varnish_purges_more_and_hits_less_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = index_with(600);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = ConfigBuilder::new()
        .issuer(IssuerTable::test().index(dir.path().join("index.txt")))
        .set("cdn", "tag_prefix", "ocsp-")
        .admin(admin);
    let origin = Server::start_in(dir, &config);
    let Some(v) = Varnish::start(&[origin.addr()]) else { return };
    let out = origin.dir.path().join("ratchet");
    let o = run_within(
        Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
            .arg("bench")
            .arg("--config")
            .arg(origin.config_file())
            .args(["--target", &v.addr().to_string(), "--cdn-purge", &format!("{}/", v.url())])
            .args(["--ratchet", "1/16,1", "--rate", "400", "--duration", "3"])
            .args(["--connections", "8", "--keyspace", "500", "--warm-passes", "7"])
            .args(["--timeout-ms", "5000"])
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn"),
        Duration::from_secs(120),
    );
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap_or_default();
    assert!(o.0, "the ratchet passes: {}\n{text}", o.1);
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["passed"], true, "{summary:#}");
    let stages = summary["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2, "{summary:#}");
    let cdn = |i: usize| &stages[i]["cdn"];
    let f = |i: usize, k: &str| cdn(i)[k].as_f64().unwrap_or_else(|| panic!("stage {i} {k}: {summary:#}"));
    for (i, stage) in stages.iter().enumerate() {
        assert_eq!(stage["wrong"], 0, "{summary:#}");
        assert_eq!(stage["counts"]["error"], 0, "{summary:#}");
        assert_eq!(cdn(i)["purge"]["failed"], 0, "{summary:#}");
        assert!(cdn(i)["purge"]["purged"].as_u64().unwrap() > 0, "stage {i} purged objects: {summary:#}");
        assert!(f(i, "cdn_hits") > 0.0 && f(i, "origin_requests") > 0.0, "{summary:#}");
    }
    // 16 of 256 buckets, then all 256: one request of ≤ 64 tags, then four.
    assert_eq!(
        (cdn(0)["purge"]["buckets"].as_u64(), cdn(0)["purge"]["requests"].as_u64()),
        (Some(16), Some(1))
    );
    assert_eq!(
        (cdn(1)["purge"]["buckets"].as_u64(), cdn(1)["purge"]["requests"].as_u64()),
        (Some(256), Some(4))
    );
    assert!(
        cdn(1)["purge"]["purged"].as_u64() > cdn(0)["purge"]["purged"].as_u64(),
        "all buckets drop more objects than 1/16: {summary:#}"
    );
    assert!(f(0, "hit_ratio") > f(1, "hit_ratio"), "purging more, the CDN hits less: {summary:#}");
    assert!(f(0, "origin_requests") < f(1, "origin_requests"), "{summary:#}");
}
