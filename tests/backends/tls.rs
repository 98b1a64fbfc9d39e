//! TLS to both backends, against real servers: the shared MariaDB primary
//! offers TLS with certificates tests/services.sh made (`OCSP_TEST_TLS_DIR`),
//! and this test starts its own redis-server on a TLS-only port that demands
//! a client certificate. A database account that requires X.509 and a Redis
//! that speaks nothing but TLS mean every answer below crossed TLS; the
//! negative checks show the same set-up without the certificates is refused.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
}

/// Where tests/services.sh put the test CA and the server and client
/// certificates; `None` (skip) without it, a failure under CI=true.
fn tls_dir() -> Option<PathBuf> {
    match std::env::var("OCSP_TEST_TLS_DIR") {
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but OCSP_TEST_TLS_DIR is not set: run tests via tests/run.sh")
        }
        Err(_) => {
            eprintln!("note: OCSP_TEST_TLS_DIR not set, skipping (tests/run.sh makes it)");
            None
        }
    }
}

/// A redis-server listening only on a TLS port, requiring a client
/// certificate signed by the test CA; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    tls: PathBuf,
}

impl TlsRedis {
    fn start(tls: &Path) -> TlsRedis {
        let port = free_port();
        let f = |n: &str| tls.join(n).display().to_string();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--tls-auth-clients", "yes"])
            .args(["--tls-cert-file", &f("server.pem"), "--tls-key-file", &f("server.key")])
            .args(["--tls-ca-cert-file", &f("ca.pem")])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let r = TlsRedis { child, port, tls: tls.to_path_buf() };
        let until = Instant::now() + Duration::from_secs(5);
        while r.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < until, "the TLS redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `redis-cli` over TLS with the client certificate.
    fn cli(&self, args: &[&str]) -> String {
        let f = |n: &str| self.tls.join(n).display().to_string();
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", &f("ca.pem"), "--cert", &f("client.pem"), "--key", &f("client.key")])
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn answers_revocations_and_shared_copies_travel_over_tls_to_mariadb_and_redis() {
    let _turn = schedule::with_others();
    let Some(tls) = tls_dir() else { return };
    let Some(root_url) = test_database("tls") else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.txt");
    std::fs::write(&index, std::fs::read(data("index.txt")).unwrap()).unwrap();
    // The schema and rows, as root in the clear; then an account that can
    // only connect with a client certificate over TLS.
    let root = ConfigBuilder::new().mysql(&root_url).issuer(IssuerTable::test()).for_server();
    migrate_and_import(&root.write(dir.path().join("root.toml")), &index);
    let db = root_url.rsplit('/').next().unwrap().to_string();
    let user = format!("tls_{}", &db[db.len() - 8..]);
    let mut conn = mysql::Pool::new(root_url.as_str()).unwrap().get_conn().unwrap();
    conn.query_drop(format!(
        "CREATE USER '{user}'@'127.0.0.1' REQUIRE X509; GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.* TO '{user}'@'127.0.0.1'"
    ))
    .unwrap();
    let host = root_url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let f = |n: &str| tls.join(n).display().to_string();
    let plain_url = format!("mysql://{user}@{host}/{db}");
    let tls_url = format!(
        "{plain_url}?root_cert_path={}&cert_chain_path={}&priv_key_path={}",
        f("ca.pem"),
        f("client.pem"),
        f("client.key")
    );

    let redis = TlsRedis::start(&tls);
    let redis_table = |with_client_cert: bool| {
        let mut t = toml::Table::new();
        t.insert("url".into(), format!("rediss://127.0.0.1:{}", redis.port).into());
        t.insert("tls_ca_file".into(), f("ca.pem").into());
        if with_client_cert {
            t.insert("tls_cert_file".into(), f("client.pem").into());
            t.insert("tls_key_file".into(), f("client.key").into());
        }
        t.insert("key_prefix".into(), format!("{user}:").into());
        toml::Value::Table(t)
    };

    // Without the client certificate the database refuses the account.
    let no_cert = ConfigBuilder::new().mysql(&plain_url).issuer(IssuerTable::test()).for_server();
    let (ok, out) = run(bin().arg("check-config").arg(no_cert.write(dir.path().join("plain.toml"))));
    assert!(!ok && out.contains("Access denied"), "a REQUIRE X509 account got in without TLS: {out}");
    // A client-certificate file for Redis names its field if the URL is not TLS.
    let bad = ConfigBuilder::new()
        .top("redis", {
            let mut t = redis_table(true).as_table().unwrap().clone();
            t.insert("url".into(), format!("redis://127.0.0.1:{}", redis.port).into());
            toml::Value::Table(t)
        })
        .test_issuer();
    let (ok, out) = run(bin().arg("check-config").arg(bad.write(dir.path().join("bad.toml"))));
    assert!(!ok && out.contains("redis.tls_ca_file") && out.contains("rediss://"), "{out}");

    let config = ConfigBuilder::new()
        .mysql(&tls_url)
        .top("redis", redis_table(true))
        .issuer(IssuerTable::test())
        .for_server();
    let cfg = config.write(dir.path().join("tls.toml"));
    let s = Server::start_in(dir, &config);
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    let first = roundtrip(&s, &post("/", &der));
    assert_eq!(ocsp_status(&first.body), "good", "read from MariaDB over TLS");
    // The signed copy went to Redis over TLS (with the client certificate
    // it demands): its key is there.
    let until = Instant::now() + Duration::from_secs(5);
    while !redis.cli(&["--scan", "--pattern", &format!("{user}:r:*")]).contains(&format!("{user}:r:")) {
        assert!(Instant::now() < until, "no response copy reached the TLS Redis");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A revocation by the CLI over TLS reaches the answer (the change feed
    // reads the outbox over TLS too).
    let (ok, out) = run(bin().args(["revoke", "--config"]).arg(&cfg).args([
        "--issuer",
        "test",
        "--serial",
        GOOD,
        "--reason",
        "keyCompromise",
        "--at",
        "2026-11-27T10:00:00Z",
    ]));
    assert!(ok, "{out}");
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let r = roundtrip(&s, &post("/", &der));
        if ocsp_status(&r.body) == "revoked" {
            break;
        }
        assert!(Instant::now() < until, "still {} 3 s after the revocation", ocsp_status(&r.body));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
    // And the same node without the Redis client certificate cannot use
    // Redis (the server refuses the handshake): answers still come, signed
    // live, and nothing more reaches Redis.
    let keys_before = redis.cli(&["DBSIZE"]);
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .mysql(&tls_url)
        .top("redis", redis_table(false))
        .issuer(IssuerTable::test())
        .for_server();
    let s = Server::start_in(dir, &config);
    let other = std::fs::read(data("openssl-sha256.der")).unwrap();
    assert_eq!(ocsp_status(&roundtrip(&s, &post("/", &other)).body), "revoked");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(redis.cli(&["DBSIZE"]), keys_before, "a client without its certificate wrote to Redis");
}
