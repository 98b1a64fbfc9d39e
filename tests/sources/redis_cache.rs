//! The shared cache, against real Redis and MariaDB (private instances from
//! tests/run.sh): two nodes sharing one Redis and one database never answer
//! "good" for a certificate after `revoke` returned, on any core; Redis
//! flushed, killed and restarted under load never causes a wrong or failed
//! answer; a 3-node Redis Cluster works the same.

use crate::common;

use std::io::{BufReader, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::OwnRedis;
use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

struct Setup {
    dir: tempfile::TempDir,
    /// `config`'s file.
    cfg: std::path::PathBuf,
    config: ConfigBuilder,
    mysql: String,
    redis: String,
    serials: Vec<String>,
}

/// A database with `n` good certificates and a config using it and Redis.
fn setup(tag: &str, redis_var: &str, cluster: bool, n: usize) -> Option<Setup> {
    let redis = test_redis(redis_var, tag)?;
    let mysql = test_database(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let (index, serials) = index_with(n);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let config = ConfigBuilder::new()
        .mysql(&mysql)
        .redis(&redis)
        .set("redis", "cluster", cluster)
        .set("redis", "key_prefix", unique_prefix(tag))
        .set("redis", "command_timeout_ms", 200)
        .issuer(IssuerTable::test());
    let cfg = config.write(dir.path().join("c.toml"));
    migrate_and_import(&cfg, &dir.path().join("index.txt"));
    Some(Setup { dir, cfg, config, mysql, redis, serials })
}

impl Setup {
    /// A server node on this setup (own temp dir, same database and Redis).
    fn node(&self) -> Server {
        Server::start(&self.config)
    }
}

/// One keep-alive connection's GET of `req`.
fn ask(c: &mut std::net::TcpStream, r: &mut BufReader<std::net::TcpStream>, req: &[u8]) -> String {
    c.write_all(&get(&format!("/{}", b64(req)))).unwrap();
    let resp = read_response(r, false).expect("an answer");
    assert_eq!(resp.status, 200);
    ocsp_status(&resp.body)
}

#[test]
fn revocations_reach_every_core_of_two_nodes_at_once() {
    let Some(s) = setup("race", "OCSP_TEST_REDIS_URL", false, 10) else { return };
    let reqs = Arc::new(requests_for(&s.serials));
    let nodes = [s.node(), s.node()];
    // Warm both nodes, several connections each (so both shards of each).
    for node in &nodes {
        for _ in 0..4 {
            let mut c = node.connect();
            let mut r = BufReader::new(c.try_clone().unwrap());
            for req in reqs.iter() {
                assert_eq!(ask(&mut c, &mut r, req), "good");
            }
        }
    }
    // Clients hammer every serial on both nodes while serials are revoked one
    // by one; each answer is recorded with the instant its request started.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(usize, Instant, String)>>> = Arc::default();
    let clients: Vec<_> = nodes
        .iter()
        .flat_map(|n| [n.addr, n.addr, n.addr])
        .map(|addr| {
            let (stop, log, reqs) = (stop.clone(), log.clone(), reqs.clone());
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % reqs.len();
                    let t = Instant::now();
                    let st = ask(&mut c, &mut r, &reqs[k]);
                    log.lock().unwrap().push((k, t, st));
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut revoked_at = vec![None; s.serials.len()];
    for (k, serial) in s.serials.iter().enumerate().step_by(2) {
        let (ok, out) = run(bin().args(["revoke", "--config"]).arg(&s.cfg).args([
            "--issuer",
            "test",
            "--serial",
            serial,
            "--reason",
            "keyCompromise",
        ]));
        assert!(ok && out.contains("tombstoned in Redis"), "{out}");
        revoked_at[k] = Some(Instant::now());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let log = log.lock().unwrap();
    let mut checked_after = vec![0usize; s.serials.len()];
    let mut wrong = Vec::new();
    for (k, t, st) in log.iter() {
        match revoked_at[*k] {
            Some(r) if *t > r => {
                checked_after[*k] += 1;
                if st != "revoked" {
                    wrong.push((s.serials[*k].clone(), st.clone()));
                }
            }
            None => assert_eq!(st, "good", "never-revoked serial {} answered {st}", s.serials[*k]),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers after revoke returned were not revoked: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    for (k, r) in revoked_at.iter().enumerate() {
        if r.is_some() {
            assert!(checked_after[k] > 0, "serial {} was asked after its revocation", s.serials[k]);
        }
    }
    eprintln!(
        "race: {} answers checked, {} after revocations",
        log.len(),
        checked_after.iter().sum::<usize>()
    );
}

fn redis_keys(port: u16, pattern: &str) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn redis_flushed_killed_and_restarted_under_load() {
    // This test runs its own Redis so it can kill it.
    if test_redis("OCSP_TEST_REDIS_URL", "flush").is_none() {
        return;
    }
    let port = free_port();
    let mut redis = Some(OwnRedis::start(port));
    let Some(mysql) = test_database("flush") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (index, serials) = index_with(40);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let config = ConfigBuilder::new()
        .mysql(&mysql)
        .redis(&format!("redis://127.0.0.1:{port}"))
        .set("redis", "command_timeout_ms", 100)
        .set("redis", "connect_timeout_ms", 300)
        .issuer(IssuerTable::test());
    let cfg = config.write(dir.path().join("c.toml"));
    migrate_and_import(&cfg, &dir.path().join("index.txt"));
    let reqs = requests_for(&serials);
    let node = Server::start(&config);
    let mut c = node.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ask_timed = |req: &[u8]| {
        let t = Instant::now();
        let st = ask(&mut c, &mut r, req);
        (st, t.elapsed())
    };
    for req in &reqs[..10] {
        assert_eq!(ask_timed(req).0, "good");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(redis_keys(port, "ocsp:r:*"), 10, "misses were written to Redis");

    // Flushed: everything still answered correctly.
    assert!(Command::new("redis-cli")
        .args(["-p", &port.to_string(), "flushall"])
        .status()
        .unwrap()
        .success());
    for req in &reqs[..20] {
        assert_eq!(ask_timed(req).0, "good");
    }

    // Killed: misses are signed live, promptly.
    redis.take();
    for req in &reqs[20..30] {
        let (st, took) = ask_timed(req);
        assert_eq!(st, "good");
        assert!(took < Duration::from_millis(1500), "a dead Redis costs at most its timeouts: {took:?}");
    }

    // Back: caching resumes once fred has reconnected.
    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 30;
    while redis_keys(port, "ocsp:r:*") == 0 {
        assert!(Instant::now() < deadline, "caching did not resume after Redis came back");
        let (st, _) = ask_timed(&reqs[i % reqs.len()]);
        assert_eq!(st, "good");
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn redis_cluster_shares_responses_and_revocations() {
    let Some(s) = setup("cluster", "OCSP_TEST_REDIS_CLUSTER_URL", true, 6) else { return };
    let reqs = requests_for(&s.serials);
    let node = s.node();
    let mut conns: Vec<_> = (0..4)
        .map(|_| {
            let c = node.connect();
            let r = BufReader::new(c.try_clone().unwrap());
            (c, r)
        })
        .collect();
    for (c, r) in conns.iter_mut() {
        for req in &reqs {
            assert_eq!(ask(c, r, req), "good");
        }
    }
    let (ok, out) = run(bin().args(["revoke", "--config"]).arg(&s.cfg).args([
        "--issuer",
        "test",
        "--serial",
        &s.serials[3],
        "--reason",
        "superseded",
    ]));
    assert!(ok && out.contains("tombstoned in Redis"), "{out}");
    for (c, r) in conns.iter_mut() {
        assert_eq!(ask(c, r, &reqs[3]), "revoked");
        assert_eq!(ask(c, r, &reqs[2]), "good");
    }
    let _ = (&s.dir, &s.mysql, &s.redis);
}

#[test]
fn versioned_writes_never_go_backwards() {
    let Some(url) = test_redis("OCSP_TEST_REDIS_URL", "versioned") else { return };
    let port = url.rsplit(':').next().unwrap().to_string();
    let key = format!("{}k", unique_prefix("ver"));
    let write = |value: &str| -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port, "EVAL", ocsp_origin::source::redis::WRITE.text(), "1", &key, value, "60"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let resp = |r: u64, vouched: u64| format!("{r:020}S{vouched:020}payload");
    let tomb = |r: u64| format!("{r:020}T");
    assert_eq!(write(&resp(5, 100)), "1", "absent key: written");
    assert_eq!(write(&resp(4, 900)), "0", "older revision refused");
    assert_eq!(write(&resp(5, 100)), "0", "the same copy again refused");
    assert_eq!(write(&resp(5, 200)), "1", "a refresh of the same revision replaces the older copy");
    assert_eq!(write(&resp(5, 150)), "0", "but never an older one");
    assert_eq!(write(&tomb(6)), "1", "a revocation's tombstone goes over");
    assert_eq!(write(&resp(5, 300)), "0", "the slow miss from before the revocation is refused");
    assert_eq!(write(&tomb(6)), "0", "a tombstone never replaces its own revision");
    assert_eq!(write(&resp(6, 300)), "1", "the revocation's own response replaces its tombstone");
    assert_eq!(write(&tomb(6)), "0", "nor its own response");
    assert_eq!(write(&resp(6, 300)), "0");
}

/// The write-back after a GET found a key empty (`Store::put_new`, a plain
/// `SET NX`) never replaces what another writer put there in between: a
/// tombstone or another node's copy stays, whatever its revision, and what
/// it writes expires. A plain `SET` here could put a response signed before
/// a revocation over the revocation's tombstone.
#[test]
fn a_write_back_to_an_empty_key_never_replaces_what_appeared_meanwhile() {
    use fred::prelude::ClientLike;
    use ocsp_origin::source::redis::{encode_tombstone, Store, TimerRuntime};
    let Some(url) = test_redis("OCSP_TEST_REDIS_URL", "putnew") else { return };
    let port = url.rsplit(':').next().unwrap().to_string();
    let key = format!("{}k", unique_prefix("putnew"));
    let rc: ocsp_origin::source::redis::RedisConfig =
        toml::from_str(&format!("url = {url:?}\ncommand_timeout_ms = 5000\nconnect_timeout_ms = 5000"))
            .unwrap();
    ocsp_origin::uring::raise_memlock(4 << 20).unwrap();
    let timers = TimerRuntime::start().unwrap();
    let cli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli").args(["-p", &port]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    glommio::LocalExecutorBuilder::default().io_memory(64 << 10).make().unwrap().run(async move {
        let _g = timers.enter();
        let client = ocsp_origin::source::redis::client(&rc).unwrap();
        let _task = ocsp_origin::source::redis::client::connect(&client).await;
        client.wait_for_connect().await.unwrap();
        let store: &dyn Store = &client;
        assert!(store.put_new(key.clone(), b"first".to_vec(), 60).await.unwrap(), "an empty key is written");
        let ttl: i64 = cli(&["TTL", &key]).parse().unwrap();
        assert!((1..=60).contains(&ttl), "written with its expiry: TTL {ttl}");
        assert!(!store.put_new(key.clone(), b"second".to_vec(), 60).await.unwrap(), "a held key is refused");
        assert_eq!(store.get(key.clone()).await.unwrap().as_deref(), Some(&b"first"[..]));
        // A tombstone written between a miss's GET and its write-back stays.
        cli(&["DEL", &key]);
        assert!(store.get(key.clone()).await.unwrap().is_none());
        let tomb = encode_tombstone(7);
        cli(&["SET", &key, std::str::from_utf8(&tomb).unwrap(), "EX", "60"]);
        assert!(!store.put_new(key.clone(), b"00000000000000000006Sslow miss".to_vec(), 60).await.unwrap());
        assert_eq!(store.get(key.clone()).await.unwrap(), Some(tomb), "the tombstone is still there");
        let _ = client.quit().await;
    });
}

#[test]
fn revoke_with_redis_down_is_recorded_and_warns() {
    let Some(mysql) = test_database("redisdown") else { return };
    let dead = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ConfigBuilder::new()
        .mysql(&mysql)
        .redis(&format!("redis://127.0.0.1:{dead}"))
        .set("redis", "connect_timeout_ms", 300)
        .issuer(IssuerTable::test())
        .write(dir.path().join("c.toml"));
    migrate_and_import(&cfg, &data("index.txt"));
    let out = bin()
        .args(["revoke", "--config"])
        .arg(&cfg)
        .args(["--issuer", "test", "--serial", GOOD, "--reason", "keyCompromise"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The database has it, and the change feed carries it to every server:
    // a failed fast path is a warning, not a failed revocation.
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: the Redis fast path failed"), "{text}");
    assert!(text.contains("through the change feed within"), "{text}");
    let (okk, again) = run(bin().args(["revoke", "--config"]).arg(&cfg).args([
        "--issuer",
        "test",
        "--serial",
        GOOD,
        "--reason",
        "keyCompromise",
    ]));
    assert!(!okk && again.contains("already revoked"), "the database kept it: {again}");
}

#[test]
fn second_node_answers_from_redis_with_hit_l2() {
    // Redis only: statuses from index.txt, so this runs without MariaDB.
    let Some(url) = test_redis("OCSP_TEST_REDIS_URL", "hitl2") else { return };
    let port: u16 = url.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let prefix = unique_prefix("hitl2");
    let config = ConfigBuilder::new().redis(&url).set("redis", "key_prefix", prefix.as_str()).test_issuer();
    let admin = free_port();
    let a = Server::start(&config);
    let b = Server::start(&config.clone().admin(format!("127.0.0.1:{admin}")));
    let req = get(&format!("/{}", b64(&std::fs::read(data("openssl-sha1.der")).unwrap())));
    let first = roundtrip(&a, &req);
    assert_eq!((first.status, first.header("x-cache-status")), (200, Some("MISS")));
    // The write-back to Redis runs in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis_keys(port, &format!("{prefix}r:*")) == 0 {
        assert!(Instant::now() < deadline, "node A never wrote its response to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = b.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    c.write_all(&req).unwrap();
    let from_redis = read_response(&mut r, false).expect("an answer");
    assert_eq!(from_redis.header("x-cache-status"), Some("HIT-L2"), "{:?}", from_redis.headers);
    assert_eq!(from_redis.body, first.body, "the copy node A signed");
    c.write_all(&req).unwrap();
    let again = read_response(&mut r, false).expect("an answer");
    assert_eq!(again.header("x-cache-status"), Some("HIT"), "then from this shard's L1");

    // Node B's Redis GET was timed (shards publish once a second).
    std::thread::sleep(Duration::from_millis(1500));
    let mut m = String::new();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    std::io::Read::read_to_string(&mut conn, &mut m).unwrap();
    assert!(m.contains("ocsp_origin_redis_seconds_count 1\n"), "{m}");
    assert!(m.contains("ocsp_origin_db_seconds_count 0\n"), "nothing was looked up on node B: {m}");
}

/// A response in Redis past its refresh point but before its nextUpdate is
/// still a valid answer: when it cannot be re-signed (here the database is
/// unreachable), a node that does not hold it in L1 serves Redis's copy
/// (`HIT-L2`) rather than `tryLater`; a certificate nothing holds gets
/// `tryLater`.
#[test]
fn stale_but_valid_redis_copy_is_served_while_the_database_is_down() {
    let Some(s) = setup("stale", "OCSP_TEST_REDIS_URL", false, 4) else { return };
    // Stale as soon as signed (refresh point = thisUpdate + 3600 s = now),
    // valid for another hour.
    let config = s
        .config
        .clone()
        // Two hours: shorter than the Baseline Requirements allow.
        .set("response", "profile", "rfc6960")
        .set("response", "lifetime_secs", 7200)
        .set("response", "backdate_secs", 3600)
        .set("response", "refresh_fraction", 0.5);
    let a = Server::start(&config);
    // Node B reaches the database through a forwarder that can be cut.
    let upstream: std::net::SocketAddr =
        s.mysql.split('@').nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let db = Forwarder::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), upstream);
    let via = s.mysql.replace(&upstream.to_string(), &db.addr.to_string());
    let b = Server::start(&config.clone().set("mysql", "url", via));

    let reqs: Vec<Vec<u8>> = requests_for(&s.serials).iter().map(|r| get(&format!("/{}", b64(r)))).collect();
    let signed = roundtrip(&a, &reqs[0]);
    assert_eq!((ocsp_status(&signed.body).as_str(), signed.header("x-cache-status")), ("good", Some("MISS")));
    let port: u16 = s.redis.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let prefix = config.get("redis", "key_prefix").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis_keys(port, &format!("{prefix}r:*")) == 0 {
        assert!(Instant::now() < deadline, "node A never wrote its response to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }

    db.cut();
    let served = roundtrip(&b, &reqs[0]);
    assert_eq!(served.header("x-cache-status"), Some("HIT-L2"), "{:?}", served.headers);
    assert_eq!(served.body, signed.body, "node A's copy, still valid");
    let other = roundtrip(&b, &reqs[1]);
    assert_eq!(other.body, ocsp_error(3), "nothing holds this one: tryLater");
}
