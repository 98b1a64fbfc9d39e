//! The database is authoritative: every status change committed on the
//! primary, by any writer, reaches every core of every node within the bound
//! (`feed.bound_ms`, 1 s), in the production shape: a MariaDB primary with a
//! real read replica (`replica_url`), Redis, two `serve` nodes.
//!
//! Where traffic runs through a change, `ocsp-origin bench` drives both
//! nodes and judges every answer against the changes it reads from the
//! primary's change feed itself (it knows each change's instant: an answer
//! to a request sent later than that plus the bound must carry it); the test
//! asserts it judged answers after the change and found none wrong. Each
//! test is one of the failures this project shipped before the feed (see the
//! issue's numbered cases), or a fault the feed must survive.
//!
//! Services come from tests/run.sh (the primary, its replica, Redis); tests
//! that stop, kill or fail over Redis start their own. Tests that pause the
//! replica hold `ReplicaControl::exclusive`, so they never overlap with the
//! others here, which hold it shared.

use crate::common;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::BenchRun;
use common::mariadb::{test_replica, ReplicaControl};
use common::redis::{OwnRedis, OwnRedisCluster};
use common::*;
use mysql::prelude::Queryable;

/// The guarantee under test (the default `feed.bound_ms`).
const BOUND_MS: u64 = 1000;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

/// L1 entries that live an hour: only the change feed can make a change
/// visible within the bound.
fn long_l1() -> ConfigBuilder {
    ConfigBuilder::new().set("cache", "l1_max_age_secs", 3600)
}

/// One deployment: a database on the primary (with `n` good certificates,
/// serials from `index_with`), its replica, a Redis, and the config (`[mysql]`,
/// `[redis]`, the issuer) every node of it shares.
struct Deployment {
    dir: tempfile::TempDir,
    url: String,
    config: ConfigBuilder,
    serials: Vec<String>,
    /// `--keyspace` of its bench runs (default: the bench's own).
    keyspace: Option<usize>,
}

impl Deployment {
    /// `redis`: the URL nodes share (`None`: no Redis). `replica`: lookups
    /// go to the replica. `extra`: more of the nodes' config.
    fn new(
        tag: &str,
        n: usize,
        redis: Option<&str>,
        replica: bool,
        extra: ConfigBuilder,
    ) -> Option<Deployment> {
        let url = test_database(tag)?;
        let dir = tempfile::tempdir().unwrap();
        let (index, serials) = index_with(n);
        std::fs::write(dir.path().join("index.txt"), index).unwrap();
        let db = ConfigBuilder::new().mysql(&url).issuer(IssuerTable::test());
        migrate_and_import(&db.write(dir.path().join("db.toml")), &dir.path().join("index.txt"));
        let mut config = extra.mysql(&url).issuer(IssuerTable::test());
        if replica {
            let r = test_replica(&url)?;
            config = config.set("mysql", "replica_url", r);
        }
        if let Some(r) = redis {
            let prefix = unique_prefix(tag);
            config =
                config.redis(r).set("redis", "key_prefix", prefix).set("redis", "command_timeout_ms", 200);
        }
        Some(Deployment { dir, url, config, serials, keyspace: None })
    }

    /// A node with an admin listener (metrics).
    fn node(&self) -> Node {
        let admin = free_port();
        let server = Server::start(&self.config.clone().admin(format!("127.0.0.1:{admin}")));
        Node { server, admin: ([127, 0, 0, 1], admin).into() }
    }

    /// A transaction on the primary that has revoked `serial` and not
    /// committed yet (its seq is taken; `COMMIT` on the connection ends it).
    fn open_revocation(&self, serial: &str) -> mysql::PooledConn {
        let mut conn = mysql::Pool::new(self.url.as_str()).unwrap().get_conn().unwrap();
        conn.query_drop("START TRANSACTION").unwrap();
        conn.query_drop(format!(
            "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = 1 \
             WHERE issuer = 'test' AND serial = UNHEX('{}')",
            der_hex(serial)
        ))
        .unwrap();
        conn
    }

    /// Runs `sql` on the primary.
    fn sql(&self, sql: &str) {
        mysql::Pool::new(self.url.as_str()).unwrap().get_conn().unwrap().query_drop(sql).unwrap();
    }

    /// Revokes `serials` with one plain SQL UPDATE, as a CA's pipeline does.
    fn revoke_with_sql(&self, serials: &[&str]) {
        let list: Vec<String> = serials.iter().map(|s| format!("UNHEX('{}')", der_hex(s))).collect();
        self.sql(&format!(
            "UPDATE ocsp_certificates SET status = 1, reason = 1, revoked_at = UNIX_TIMESTAMP() \
             WHERE issuer = 'test' AND serial IN ({})",
            list.join(",")
        ));
    }

    /// `ocsp-origin revoke` of one serial, which must succeed.
    fn revoke_with_cli(&self, serial: &str) -> String {
        let cfg = self.config.write(self.dir.path().join("node.toml"));
        let (ok, out) = run_within(
            bin().args(["revoke", "--config"]).arg(&cfg).args([
                "--issuer",
                "test",
                "--serial",
                serial,
                "--reason",
                "keyCompromise",
            ]),
            Duration::from_secs(30),
        );
        assert!(ok, "{out}");
        out
    }

    /// `ocsp-origin bench` against `nodes`, following the primary's change
    /// feed: open loop at `rate`, one stage of `secs`, half the keyspace cold.
    fn bench(&self, nodes: &[&Node], rate: u32, secs: f64, tag: &str) -> BenchRun {
        let cfg = ConfigBuilder::new()
            .mysql(&self.url)
            .set("mysql", "timeout_ms", 5000)
            .issuer(IssuerTable::test())
            .write(self.dir.path().join("bench.toml"));
        let targets: Vec<String> = nodes.iter().map(|n| n.server.addr.to_string()).collect();
        let out = self.dir.path().join(format!("bench-{tag}"));
        let mut cmd = bin();
        cmd.arg("bench")
            .arg("--config")
            .arg(&cfg)
            .args(["--target", &targets.join(",")])
            .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
            .args(["--cold", "0.5", "--zipf", "0", "--warm-passes", "1", "--connections", "8"])
            .args(["--timeout-ms", "3000", "--change-bound-ms", &BOUND_MS.to_string()])
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn");
        if let Some(k) = self.keyspace {
            cmd.args(["--keyspace", &k.to_string()]);
        }
        BenchRun::spawn(cmd, out)
    }
}

/// A serve node and its admin listener.
struct Node {
    server: Server,
    admin: SocketAddr,
}

impl Node {
    fn metric(&self, name: &str) -> f64 {
        metric(self.admin, name)
    }
}

/// A metric's value from an admin listener (NaN when absent).
fn metric(admin: SocketAddr, name: &str) -> f64 {
    use std::io::Read;
    let Ok(mut c) = std::net::TcpStream::connect(admin) else { return f64::NAN };
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(f64::NAN)
}

/// The DER content hex of a serial given in `index.txt` hex.
fn der_hex(serial: &str) -> String {
    ocsp_origin::ocsp::Serial::from_hex(serial)
        .unwrap()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The run ended well and proved the guarantee: it judged answers sent after
/// a change plus the bound, on every node, and none carried an older status.
fn assert_no_stale_answer(run: &mut BenchRun, ctx: &str) -> serde_json::Value {
    let (status, log) = run.wait(Duration::from_secs(120));
    let summary = run.summary();
    let all = format!("{ctx}\n{log}\n{summary:#}");
    assert!(status.success(), "bench failed ({status}): {all}");
    let c = &summary["changes"];
    assert_eq!(c["wrong"], 0, "{all}");
    assert!(c["seen_in_keyspace"].as_u64().unwrap_or(0) > 0, "the bench saw the change: {all}");
    assert!(c["answers_judged_against_change"].as_u64().unwrap_or(0) > 0, "answers judged after it: {all}");
    for t in summary["targets"].as_array().unwrap() {
        assert_eq!(t["wrong"], 0, "{all}");
        assert!(t["answers"].as_u64().unwrap_or(0) > 0, "every node answered: {all}");
    }
    summary
}

/// One keep-alive connection's answer to `req` (a DER OCSP request), by
/// POST: "good", "revoked", "error N" (N the OCSP status).
fn ask(c: &mut std::net::TcpStream, r: &mut BufReader<std::net::TcpStream>, req: &[u8]) -> String {
    c.write_all(&post("/", req)).unwrap();
    let resp = read_response(r, false).expect("an answer");
    assert_eq!(resp.status, 200);
    ocsp_status(&resp.body)
}

/// Connections to every node, several per node so every shard is asked.
fn connections(nodes: &[&Node]) -> Vec<(std::net::TcpStream, BufReader<std::net::TcpStream>)> {
    nodes
        .iter()
        .flat_map(|n| (0..4).map(|_| n.server.connect()))
        .map(|c| {
            let r = BufReader::new(c.try_clone().unwrap());
            (c, r)
        })
        .collect()
}

/// Asks `req` on every connection until each answers `want`, for at most
/// `within`; the time it took.
fn until_everywhere(
    conns: &mut [(std::net::TcpStream, BufReader<std::net::TcpStream>)],
    req: &[u8],
    want: &str,
    within: Duration,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let last = conns.iter_mut().map(|(c, r)| ask(c, r, req)).collect::<Vec<_>>();
        if last.iter().all(|s| s == want) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > within {
            return Err(format!("after {:?}: {last:?}", t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `url` with its server replaced by a forwarder on `port`. The driver must
/// not move to the server's Unix socket after connecting (`prefer_socket`,
/// its default on loopback), or cutting the forwarder would cut nothing.
fn through(url: &str, upstream: SocketAddr, port: u16) -> String {
    format!("{}?prefer_socket=false", url.replace(&upstream.to_string(), &format!("127.0.0.1:{port}")))
}

/// A listener on `port` again, once a cut forwarder's thread has let go of
/// it (up to 2 s).
fn rebind(port: u16) -> std::net::TcpListener {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) if Instant::now() > until => panic!("cannot listen on {port} again: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// DER OCSP requests (SHA-1, no nonce) with several CertIDs of the test issuer.
fn multi_request(serials: &[&str]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("multi.der");
    let mut cmd = openssl();
    cmd.args(["ocsp", "-issuer"]).arg(data("ca.pem"));
    for s in serials {
        cmd.args(["-serial", &format!("0x{s}")]);
    }
    let (ok, msg) = run(cmd.args(["-no_nonce", "-reqout"]).arg(&out));
    assert!(ok, "{msg}");
    std::fs::read(out).unwrap()
}

/// Every SingleResponse's status of a response body.
fn statuses(der: &[u8]) -> Vec<String> {
    use der::Decode;
    let r = x509_ocsp::OcspResponse::from_der(der).unwrap();
    let Some(rb) = r.response_bytes else { return vec![format!("error {:?}", r.response_status)] };
    let basic = x509_ocsp::BasicOcspResponse::from_der(rb.response.as_bytes()).unwrap();
    basic
        .tbs_response_data
        .responses
        .iter()
        .map(|s| match s.cert_status {
            x509_ocsp::CertStatus::Good(_) => "good".to_string(),
            x509_ocsp::CertStatus::Revoked(_) => "revoked".to_string(),
            x509_ocsp::CertStatus::Unknown(_) => "unknown".to_string(),
        })
        .collect()
}

/// Case 1: `ocsp-origin revoke` while the replica lags (its SQL thread
/// stopped), warm and cold serials. Before the feed the miss was signed from
/// the replica's old row and kept, although Redis held a newer tombstone.
#[test]
fn a_revocation_reaches_both_nodes_while_the_replica_lags() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_lagging") else { return };
    let Some(d) = Deployment::new("feed_lag", 40, Some(&redis), true, ConfigBuilder::new()) else { return };
    let Some(replica) = ReplicaControl::exclusive() else { return };
    let (a, b) = (d.node(), d.node());
    let mut run = d.bench(&[&a, &b], 400, 5.0, "lag");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(500));
    replica.stop_sql_thread();
    // A quarter of the keyspace: with half of it cold, warm and cold serials.
    for s in d.serials.iter().step_by(4) {
        d.revoke_with_cli(s);
    }
    assert_no_stale_answer(&mut run, "revoked while the replica's SQL thread was stopped");
    let rereads = a.metric("ocsp_origin_status_fenced_rereads_total")
        + b.metric("ocsp_origin_status_fenced_rereads_total");
    assert!(rereads > 0.0, "the replica's older rows were read again from the primary: {rereads}");
    drop(replica); // restarts the SQL thread
}

/// Case 2: the CA's own pipeline revokes with plain SQL and tells nobody.
/// Before the feed nothing invalidated L1 or Redis, and the L1 re-check
/// trusted Redis's copy of the same revision for up to 48 h.
#[test]
fn a_plain_sql_update_reaches_both_nodes() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_sql") else { return };
    let Some(d) = Deployment::new("feed_sql", 40, Some(&redis), true, ConfigBuilder::new()) else { return };
    let _running = ReplicaControl::shared();
    let (a, b) = (d.node(), d.node());
    let mut run = d.bench(&[&a, &b], 400, 4.0, "sql");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(800));
    let changed: Vec<&str> = d.serials.iter().step_by(5).map(String::as_str).collect();
    d.revoke_with_sql(&changed);
    // A revision bump alone (no status change) is no change at all.
    d.sql("UPDATE ocsp_certificates SET revision = revision + 1");
    assert_no_stale_answer(&mut run, "revoked with plain SQL");
}

/// Case 3: a multi-CertID response cached before the change. Before, only
/// single-CertID keys were dropped.
#[test]
fn a_multi_certid_response_follows_a_change_of_either_certificate() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_multi") else { return };
    let Some(d) = Deployment::new("feed_multi", 4, Some(&redis), true, long_l1()) else {
        return;
    };
    let _running = ReplicaControl::shared();
    let (a, b) = (d.node(), d.node());
    let req = multi_request(&[&d.serials[0], &d.serials[1]]);
    let mut conns = connections(&[&a, &b]);
    let ask_all =
        |conns: &mut Vec<(std::net::TcpStream, BufReader<std::net::TcpStream>)>| -> Vec<Vec<String>> {
            conns
                .iter_mut()
                .map(|(c, r)| {
                    c.write_all(&post("/", &req)).unwrap();
                    statuses(&read_response(r, false).unwrap().body)
                })
                .collect()
        };
    for _ in 0..3 {
        assert!(ask_all(&mut conns).iter().all(|s| s == &["good", "good"]));
    }
    d.revoke_with_sql(&[&d.serials[1]]);
    std::thread::sleep(Duration::from_millis(BOUND_MS));
    for got in ask_all(&mut conns) {
        assert_eq!(got, ["good", "revoked"], "every connection of both nodes, one bound after the commit");
    }
}

/// Case 4: `db import` of the CA's original `index.txt`, re-run after a
/// revocation, used to turn the row back to good.
#[test]
fn reimporting_the_original_index_keeps_a_revocation() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_reimport") else { return };
    let Some(d) = Deployment::new("feed_reimport", 40, Some(&redis), true, ConfigBuilder::new()) else {
        return;
    };
    let _running = ReplicaControl::shared();
    let (a, b) = (d.node(), d.node());
    let mut run = d.bench(&[&a, &b], 400, 4.0, "reimport");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(500));
    for s in d.serials.iter().take(5) {
        d.revoke_with_cli(s);
    }
    sleep_until(t0 + Duration::from_millis(1500));
    let cfg = d.dir.path().join("db.toml");
    let (ok, out) = run_within(
        bin()
            .args(["db", "import", "--config"])
            .arg(&cfg)
            .args(["--issuer", "test", "--index"])
            .arg(d.dir.path().join("index.txt")),
        Duration::from_secs(30),
    );
    assert!(ok && out.contains("5 kept revoked"), "{out}");
    assert_no_stale_answer(&mut run, "the original index.txt imported again after the revocations");
}

/// Case 5: a revocation committed while Redis was stopped (SIGSTOP), Redis
/// back 3 s later, still holding the old "good" copies.
#[test]
fn a_revocation_while_redis_is_stopped() {
    if test_redis("OCSP_TEST_REDIS_URL", "feed_redis_stopped").is_none() {
        return;
    }
    let port = free_port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let Some(d) = Deployment::new("feed_redisstop", 40, Some(&url), true, ConfigBuilder::new()) else {
        return;
    };
    let _running = ReplicaControl::shared();
    let (a, b) = (d.node(), d.node());
    let mut run = d.bench(&[&a, &b], 300, 6.0, "redisstop");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(500));
    redis.stop();
    let changed: Vec<&str> = d.serials.iter().step_by(4).map(String::as_str).collect();
    d.revoke_with_sql(&changed);
    std::thread::sleep(Duration::from_secs(3));
    redis.cont();
    assert_no_stale_answer(&mut run, "revoked while Redis was stopped");
    // Once Redis answers, the tombstone writers catch up.
    let top = {
        let pool = mysql::Pool::new(d.url.as_str()).unwrap();
        let v: Option<u64> =
            pool.get_conn().unwrap().query_first("SELECT MAX(seq) FROM ocsp_changes").unwrap();
        v.unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(10), || a.metric("ocsp_origin_feed_tombstone_position") >= top as f64),
        "tombstones written once Redis was back"
    );
}

/// A certificate inserted on the primary goes from `unauthorized` to good on
/// every node within the bound, even while the replica does not have it.
#[test]
fn a_new_certificate_goes_from_unauthorized_to_good() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_insert") else { return };
    let Some(d) = Deployment::new("feed_insert", 4, Some(&redis), true, ConfigBuilder::new()) else { return };
    let Some(replica) = ReplicaControl::exclusive() else { return };
    let (a, b) = (d.node(), d.node());
    let fresh = "7777";
    let req = &requests_for(&[fresh.to_string()])[0];
    let mut conns = connections(&[&a, &b]);
    for (c, r) in conns.iter_mut() {
        assert_eq!(ask(c, r, req), "error Unauthorized", "not issued: unauthorized");
    }
    replica.stop_sql_thread();
    d.sql(&format!(
        "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES ('test', UNHEX('{}'), 0, 2000000000)",
        der_hex(fresh)
    ));
    let took = until_everywhere(&mut conns, req, "good", Duration::from_millis(BOUND_MS)).unwrap();
    eprintln!("insert: good on every connection of both nodes {took:?} after the commit");
    drop(replica);
}

/// A node that was down while a change was committed, with Redis still
/// holding the old "good" copy that nobody tombstoned (every node was down),
/// answers the change as soon as it is back.
#[test]
fn a_node_restarted_during_a_change() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_restart") else { return };
    let Some(d) = Deployment::new("feed_restart", 4, Some(&redis), true, ConfigBuilder::new()) else {
        return;
    };
    let _running = ReplicaControl::shared();
    let req = &requests_for(&[d.serials[0].clone()])[0];
    {
        let a = d.node();
        let mut conns = connections(&[&a]);
        until_everywhere(&mut conns, req, "good", Duration::ZERO).unwrap();
        // The copy is in Redis.
        std::thread::sleep(Duration::from_millis(300));
    } // every node down
    d.revoke_with_sql(&[&d.serials[0]]);
    let a = d.node();
    let b = d.node();
    let mut conns = connections(&[&a, &b]);
    until_everywhere(&mut conns, req, "revoked", Duration::ZERO).expect("revoked from the first answer");
}

/// The feed cut from the primary (its node keeps answering from what it
/// holds and says it cannot know), a thousand changes committed meanwhile,
/// then the connection back: the node catches up within the bound.
#[test]
fn the_feed_falls_behind_and_catches_up() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_behind") else { return };
    let Some(mut d) = Deployment::new("feed_behind", 1000, Some(&redis), true, long_l1()) else {
        return;
    };
    let _running = ReplicaControl::shared();
    // The feed (and the primary reads) through a forwarder that can be cut;
    // lookups go to the replica directly.
    let upstream: SocketAddr = d.url.split('@').nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let port = free_port();
    let listen = || rebind(port);
    let mut fwd = Forwarder::start(listen(), upstream);
    let via = through(&d.url, upstream, port);
    d.config = d.config.set("mysql", "url", via);
    let a = d.node();
    let reqs = requests_for(&d.serials[..3]);
    let mut conns = connections(&[&a]);
    for req in &reqs {
        until_everywhere(&mut conns, req, "good", Duration::ZERO).unwrap();
    }
    fwd.cut();
    assert!(
        wait_for(Duration::from_secs(3), || a.metric("ocsp_origin_feed_up") == 0.0),
        "the node says it cannot know"
    );
    let all: Vec<&str> = d.serials.iter().map(String::as_str).collect();
    for chunk in all.chunks(100) {
        d.revoke_with_sql(chunk);
    }
    // While it cannot read the feed, the node serves what it holds.
    let (c, r) = &mut conns[0];
    assert_eq!(ask(c, r, &reqs[0]), "good");
    fwd = Forwarder::start(listen(), upstream);
    let back = Instant::now();
    assert!(wait_for(Duration::from_secs(5), || a.metric("ocsp_origin_feed_up") == 1.0));
    for req in &reqs {
        until_everywhere(&mut conns, req, "revoked", Duration::from_millis(BOUND_MS)).unwrap();
    }
    eprintln!("caught up with 1000 changes {:?} after the primary was reachable again", back.elapsed());
    drop(fwd);
}

/// A Redis Cluster primary failed over right after a revocation, to a
/// replica that never received the tombstone: the promoted copy still says
/// "good", and no node may serve it.
#[test]
fn a_redis_cluster_failover_right_after_a_revocation() {
    if test_redis("OCSP_TEST_REDIS_CLUSTER_URL", "feed_failover").is_none() {
        return;
    }
    let mut cluster = OwnRedisCluster::start();
    let Some(mut d) = Deployment::new("feed_failover", 40, Some(&cluster.url()), true, ConfigBuilder::new())
    else {
        return;
    };
    d.config = d.config.set("redis", "cluster", true);
    let _running = ReplicaControl::shared();
    let (a, b) = (d.node(), d.node());
    let victim = d.serials[7].clone();
    let req = &requests_for(std::slice::from_ref(&victim))[0];
    let mut conns = connections(&[&a, &b]);
    until_everywhere(&mut conns, req, "good", Duration::ZERO).unwrap();
    let prefix = d.config.get("redis", "key_prefix").unwrap().to_string();
    let key = ocsp_origin::source::redis::key_for(
        &prefix,
        "test",
        &ocsp_origin::ocsp::CertId::new(
            ocsp_origin::ocsp::IssuerId(0),
            ocsp_origin::ocsp::HashAlg::Sha1,
            ocsp_origin::ocsp::Serial::from_hex(&victim).unwrap(),
        ),
    );
    let master = cluster.master_of_key(&key);
    let replica = cluster.replica_of(master);
    assert!(
        wait_for(Duration::from_secs(5), || cluster
            .script(replica, &format!("READONLY\nEXISTS {key}\n"))
            .contains('1')),
        "the good copy reached the replica"
    );
    // The replica stops receiving; the revocation's tombstone reaches only
    // the master, which then dies.
    cluster.stop(replica);
    let mut run = d.bench(&[&a, &b], 300, 6.0, "failover");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(300));
    // Every certificate (so the bench, which asks a sample, judges some):
    // those whose keys live on the dying master lose their tombstones.
    let all: Vec<&str> = d.serials.iter().map(String::as_str).collect();
    d.revoke_with_sql(&all);
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(master);
    cluster.cont(replica);
    cluster.failover_takeover(replica);
    assert_no_stale_answer(&mut run, "revoked, then its Redis master failed over to a replica without it");
    until_everywhere(&mut conns, req, "revoked", Duration::from_millis(BOUND_MS)).unwrap();
}

/// One SQL UPDATE of 100,000 rows under bench load: every node answers each
/// of them revoked within the bound, and the re-signing storm that follows is
/// shed (`tryLater`, stale), never errors.
///
/// The bound is a time on a 2-vCPU machine: another test's servers sharing
/// it took it past 1 s once in CI, so `tests/run.sh` runs this test on its
/// own after the rest (`cargo test --test sources -- --ignored`).
#[test]
#[ignore = "a time bound under load: tests/run.sh runs it alone, after the rest"]
fn a_100000_row_revocation_under_load() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_mass") else { return };
    let Some(mut d) = Deployment::new("feed_mass", 4, Some(&redis), true, ConfigBuilder::new()) else {
        return;
    };
    d.keyspace = Some(200);
    let _running = ReplicaControl::shared();
    // 100,000 more certificates, inserted as a CA's pipeline would.
    let pool = mysql::Pool::new(d.url.as_str()).unwrap();
    let mut db = pool.get_conn().unwrap();
    let n = 100_000u32;
    for start in (0..n).step_by(5000) {
        let rows: Vec<String> = (start..start + 5000)
            .map(|i| format!("('test', UNHEX('{:08X}'), 0, 2000000000)", 0x2000_0000 + i))
            .collect();
        db.query_drop(format!(
            "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES {}",
            rows.join(",")
        ))
        .unwrap();
    }
    let (a, b) = (d.node(), d.node());
    // The bench asks about 200 of them, for long enough that the statement
    // (2-3 s alone, 20 s and more on a loaded 2-vCPU machine) commits
    // inside it.
    let mut run = d.bench(&[&a, &b], 400, 40.0, "mass");
    let t0 = run.stage_start();
    sleep_until(t0 + Duration::from_millis(1000));
    let started = Instant::now();
    db.query_drop("UPDATE ocsp_certificates SET status = 1, reason = 4, revoked_at = UNIX_TIMESTAMP() WHERE issuer = 'test' AND serial >= UNHEX('20000000')").unwrap();
    let committed = Instant::now();
    let top: u64 = db.query_first("SELECT MAX(seq) FROM ocsp_changes").unwrap().unwrap();
    let applied = wait_for(Duration::from_secs(30), || {
        a.metric("ocsp_origin_feed_position") >= top as f64
            && b.metric("ocsp_origin_feed_position") >= top as f64
    });
    let took = committed.elapsed();
    assert!(applied, "100,000 changes applied on both nodes");
    eprintln!(
        "100,000-row UPDATE: statement {:.2} s; every node applied it {:.2} s after the commit",
        (committed - started).as_secs_f64(),
        took.as_secs_f64()
    );
    let summary = assert_no_stale_answer(&mut run, "a 100,000-row UPDATE");
    let errors = summary["stages"][0]["counts"]["error"].as_u64().unwrap_or(0);
    assert_eq!(errors, 0, "the re-signing storm is shed, never errors: {summary:#}");
}

/// With statuses in `index.txt` and a shared Redis, an edited file and a
/// reload used to change nothing a Redis copy answered (index rows are
/// revision 0): copies are now checked against the table.
#[test]
fn an_index_txt_reload_changes_what_redis_served() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_index") else { return };
    let prefix = unique_prefix("idx");
    let dir = tempfile::tempdir().unwrap();
    let (index, serials) = index_with(4);
    std::fs::write(dir.path().join("index.txt"), &index).unwrap();
    let config = ConfigBuilder::new()
        .redis(&redis)
        .set("redis", "key_prefix", prefix.as_str())
        .issuer(IssuerTable::test().index(dir.path().join("index.txt")));
    let a = Server::start(&config);
    let req = &requests_for(&[serials[0].clone()])[0];
    let first = roundtrip(&a, &post("/", req));
    assert_eq!(ocsp_status(&first.body), "good");
    std::thread::sleep(Duration::from_millis(300)); // written back to Redis
    let revoked = index.replacen(
        &format!("V\t361125115433Z\t\t{}", serials[0]),
        &format!("R\t361125115433Z\t261120000000Z,keyCompromise\t{}", serials[0]),
        1,
    );
    std::fs::write(dir.path().join("index.txt"), revoked).unwrap();
    a.signal(libc::SIGHUP);
    let b = Server::start(&config); // reads the edited file at start
    assert!(
        wait_for(Duration::from_secs(5), || ocsp_status(&roundtrip(&a, &post("/", req)).body) == "revoked"),
        "the reloaded node answers the edited file"
    );
    for _ in 0..8 {
        assert_eq!(ocsp_status(&roundtrip(&a, &post("/", req)).body), "revoked");
        let r = roundtrip(&b, &post("/", req));
        assert_eq!(ocsp_status(&r.body), "revoked", "not Redis's good copy: {:?}", r.headers);
    }
}

/// A transaction that took its seq before another committed, and commits
/// after it: the feed must not have stepped over it.
#[test]
fn a_change_committed_after_a_later_one_is_not_skipped() {
    let Some(d) = Deployment::new("feed_late", 4, None, false, long_l1()) else {
        return;
    };
    let a = d.node();
    let reqs = requests_for(&d.serials[..2]);
    let mut conns = connections(&[&a]);
    for req in &reqs {
        until_everywhere(&mut conns, req, "good", Duration::ZERO).unwrap();
    }
    let mut slow = d.open_revocation(&d.serials[0]);
    d.revoke_with_sql(&[&d.serials[1]]); // a higher seq, committed first
    until_everywhere(&mut conns, &reqs[1], "revoked", Duration::from_millis(BOUND_MS)).unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || a.metric("ocsp_origin_feed_missing") >= 1.0),
        "the feed waits for the lower seq"
    );
    slow.query_drop("COMMIT").unwrap();
    until_everywhere(&mut conns, &reqs[0], "revoked", Duration::from_millis(BOUND_MS)).unwrap();
}

/// The same with the node starting while the earlier transaction is still
/// open: its first position must not step over that transaction's seq.
#[test]
fn a_transaction_open_while_a_node_starts_is_not_skipped() {
    let Some(d) = Deployment::new("feed_late_start", 4, None, false, long_l1()) else {
        return;
    };
    let reqs = requests_for(&d.serials[..2]);
    // The import is old history: the two changes below are the only ones in
    // the fence window.
    d.sql("UPDATE ocsp_changes SET changed_at = changed_at - INTERVAL 2 HOUR");
    let mut slow = d.open_revocation(&d.serials[0]);
    d.revoke_with_sql(&[&d.serials[1]]); // committed first, with the higher seq
    let a = d.node();
    let mut conns = connections(&[&a]);
    until_everywhere(&mut conns, &reqs[1], "revoked", Duration::ZERO).unwrap();
    until_everywhere(&mut conns, &reqs[0], "good", Duration::ZERO).unwrap();
    slow.query_drop("COMMIT").unwrap();
    until_everywhere(&mut conns, &reqs[0], "revoked", Duration::from_millis(BOUND_MS)).unwrap();
}

/// A node whose feed was away longer than the outbox keeps changes cannot
/// know what it missed: it empties every L1 and re-checks Redis copies.
#[test]
fn changes_pruned_before_the_feed_read_them_empty_every_cache() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "feed_pruned") else { return };
    let extra = long_l1().set("feed", "retention_secs", 60).set("feed", "fence_window_secs", 60).set(
        "feed",
        "hole_timeout_secs",
        30,
    );
    let Some(mut d) = Deployment::new("feed_pruned", 4, Some(&redis), false, extra) else { return };
    let upstream: SocketAddr = d.url.split('@').nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let port = free_port();
    let listen = || rebind(port);
    let fwd = Forwarder::start(listen(), upstream);
    let via = through(&d.url, upstream, port);
    d.config = d.config.set("mysql", "url", via);
    let a = d.node();
    let req = &requests_for(&[d.serials[0].clone()])[0];
    let mut conns = connections(&[&a]);
    until_everywhere(&mut conns, req, "good", Duration::ZERO).unwrap();
    fwd.cut();
    d.revoke_with_sql(&[&d.serials[0]]);
    d.revoke_with_sql(&[&d.serials[1]]);
    // Pruned while the node was away: only the newest change is left.
    d.sql("DELETE FROM ocsp_changes WHERE seq < (SELECT m FROM (SELECT MAX(seq) AS m FROM ocsp_changes) t)");
    let _fwd = Forwarder::start(listen(), upstream);
    until_everywhere(&mut conns, req, "revoked", Duration::from_secs(3)).unwrap();
    assert!(a.metric("ocsp_origin_feed_total{event=\"lost\"}") >= 1.0);
    assert!(a.metric("ocsp_origin_redis_trust_from_seconds") > 0.0, "Redis copies re-checked");
}
