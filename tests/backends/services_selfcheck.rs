//! The test services themselves, against the real servers: the MariaDB
//! replica from tests/services.sh follows the primary (and holds back while
//! its SQL thread is stopped), its rows — `revision` included, which the
//! primary's triggers assign — equal the primary's whoever wrote them, and
//! [`OwnRedisCluster`] fails a master over to its replica with the data.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::mariadb::{test_replica, ReplicaControl};
use common::redis::OwnRedisCluster;
use common::*;
use mysql::prelude::Queryable;

/// Every row of both tables, in key order (to compare servers).
fn contents(conn: &mut mysql::PooledConn) -> Vec<Vec<mysql::Value>> {
    ["SELECT * FROM ocsp_certificates ORDER BY issuer, serial", "SELECT * FROM ocsp_changes ORDER BY seq"]
        .iter()
        .flat_map(|q| conn.query::<mysql::Row, _>(*q).unwrap())
        .map(mysql::Row::unwrap)
        .collect()
}

fn cert_row(conn: &mut mysql::PooledConn, serial: u8) -> Option<(u8, u64)> {
    conn.exec_first(
        "SELECT status, revision FROM ocsp_certificates WHERE issuer = 't' AND serial = ?",
        (vec![serial],),
    )
    .unwrap()
}

#[test]
fn the_replica_follows_the_primary_pauses_and_has_the_same_revisions() {
    // The replica's positions cover every database on the primary, so no
    // other test of this binary writes meanwhile, and what they wrote before
    // (a 100,000-row mass revocation among them) is applied first.
    let _turn = schedule::alone();
    if let Some(settle) = ReplicaControl::shared() {
        settle.wait_caught_up(Duration::from_secs(120)).expect("the replica applies earlier tests' writes");
    }
    let t0 = Instant::now();
    let Some(url) = test_database("selfcheck") else { return };
    let Some(replica_url) = test_replica(&url) else { return };
    let primary = mysql::Pool::new(url.as_str()).unwrap();
    ocsp_origin::ops::db::migrate(&primary).unwrap();
    let mut p = primary.get_conn().unwrap();
    let mut r = mysql::Pool::new(replica_url.as_str()).unwrap().get_conn().unwrap();

    let ctl = ReplicaControl::exclusive().expect("a replica is configured");
    // Every kind of writer the triggers have to cope with: plain INSERT,
    // UPDATE of one and of many rows, INSERT … ON DUPLICATE KEY UPDATE,
    // REPLACE, DELETE, in one transaction and in several.
    p.query_drop(
        "INSERT INTO ocsp_certificates (issuer, serial, status, not_after) \
         VALUES ('t', 0x01, 0, 100), ('t', 0x02, 0, 100), ('t', 0x03, 0, 100), ('t', 0x04, 0, 100)",
    )
    .unwrap();
    ctl.wait_caught_up(Duration::from_secs(10)).unwrap();
    let first = cert_row(&mut p, 1).unwrap();
    assert_eq!(cert_row(&mut r, 1), Some(first), "a row inserted on the primary is on the replica");

    // Paused: the change reaches the replica's relay log but is not applied.
    ctl.stop_sql_thread();
    p.query_drop("UPDATE ocsp_certificates SET status = 1, revoked_at = 5, reason = 1 WHERE serial = 0x01")
        .unwrap();
    ctl.wait_received(Duration::from_secs(10)).unwrap();
    assert_eq!(
        cert_row(&mut r, 1),
        Some(first),
        "with the SQL thread stopped, the replica keeps the old row"
    );
    assert!(ctl.wait_caught_up(Duration::from_millis(200)).is_err(), "not caught up while paused");
    ctl.start_sql_thread();
    let lag = ctl.wait_caught_up(Duration::from_secs(10)).unwrap();
    let revoked = cert_row(&mut p, 1).unwrap();
    assert_eq!(revoked.0, 1);
    assert!(revoked.1 > first.1, "the trigger gave the change a higher revision");
    assert_eq!(cert_row(&mut r, 1), Some(revoked), "after start + catch-up the replica has the change");

    p.query_drop(
        "START TRANSACTION; \
         UPDATE ocsp_certificates SET status = 1, revoked_at = 6, reason = 4 WHERE serial IN (0x02, 0x03); \
         INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES ('t', 0x04, 0, 100) \
           ON DUPLICATE KEY UPDATE not_after = 200; \
         INSERT INTO ocsp_certificates (issuer, serial, status, not_after) VALUES ('t', 0x05, 0, 100) \
           ON DUPLICATE KEY UPDATE not_after = 200; \
         COMMIT; \
         REPLACE INTO ocsp_certificates (issuer, serial, status, not_after) VALUES ('t', 0x02, 0, 300); \
         DELETE FROM ocsp_certificates WHERE serial = 0x03; \
         UPDATE ocsp_certificates SET not_after = not_after WHERE serial = 0x04",
    )
    .unwrap();
    // And ocsp-origin's own writers.
    let index = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(index.path(), index_with(20).0).unwrap();
    ocsp_origin::ops::db::import(&primary, "t", index.path(), 7, &mut std::io::sink()).unwrap();
    let serial = ocsp_origin::ocsp::Serial::from_hex("1003").unwrap();
    let hold = ocsp_origin::ocsp::RevocationReason::CertificateHold;
    ocsp_origin::ops::db::revoke(&primary, "t", &serial, hold, 7).unwrap();
    ocsp_origin::ops::db::unrevoke(&primary, "t", &serial).unwrap();
    ctl.wait_caught_up(Duration::from_secs(10)).unwrap();
    let (on_primary, on_replica) = (contents(&mut p), contents(&mut r));
    assert!(on_primary.len() > 40, "{on_primary:#?}");
    assert_eq!(on_primary, on_replica, "the replica's rows (revisions, change feed) are the primary's");
    drop(ctl);

    // A test that panics with the SQL thread stopped still restarts it.
    let panicked = std::thread::spawn(|| {
        let ctl = ReplicaControl::exclusive().unwrap();
        ctl.stop_sql_thread();
        panic!("a test failing while replication is paused");
    })
    .join();
    assert!(panicked.is_err());
    let ctl = ReplicaControl::exclusive().unwrap();
    let status: mysql::Row = r.query_first("SHOW SLAVE STATUS").unwrap().unwrap();
    assert_eq!(status.get::<String, _>("Slave_SQL_Running").as_deref(), Some("Yes"));
    p.query_drop("UPDATE ocsp_certificates SET status = 1, revoked_at = 9, reason = 0 WHERE serial = 0x04")
        .unwrap();
    ctl.wait_caught_up(Duration::from_secs(10)).unwrap();
    assert_eq!(cert_row(&mut r, 4), cert_row(&mut p, 4));
    eprintln!("replica caught up {lag:?} after its SQL thread restarted; selfcheck took {:?}", t0.elapsed());
}

#[test]
fn own_redis_cluster_fails_a_master_over_with_its_data() {
    let _turn = schedule::with_others();
    let t0 = Instant::now();
    if test_redis("OCSP_TEST_REDIS_CLUSTER_URL", "own cluster").is_none() {
        return;
    }
    let mut c = OwnRedisCluster::start();
    let masters = c.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for m in &masters {
        assert_ne!(c.replica_of(*m), *m);
    }

    // A key written through its master, acknowledged by the replica.
    let key = "selfcheck:key";
    let m = c.master_of_key(key);
    assert_eq!(c.script(m, &format!("SET {key} v1\nWAIT 1 5000\n")), "OK\n1");
    let r = c.replica_of(m);
    assert_eq!(c.script(r, &format!("READONLY\nGET {key}\n")), "OK\nv1");

    // ocsp-origin's own client reaches it through url(): a revocation's
    // tombstones and change key land in the cluster.
    let fred_key = revoke_through(&c);

    c.failover_takeover(r);
    assert_eq!(c.cli(r, &["get", key]), "v1", "the new master serves the key");
    assert!(c.cli(m, &["get", key]).starts_with("MOVED"), "the old master redirects");
    assert!(c.masters().contains(&r) && !c.masters().contains(&m));
    assert_eq!(c.replica_of(r), m, "the old master follows the new one");
    if let Some(k) = fred_key {
        let owner = c.master_of_key(&k);
        let replica = c.replica_of(owner);
        let synced = wait_for(Duration::from_secs(5), || {
            c.script(replica, &format!("READONLY\nEXISTS {k}\n")) == "OK\n1"
        });
        assert!(synced, "{k} reached the replica of {owner}");
        c.failover_takeover(replica);
        assert_eq!(c.cli(replica, &["exists", &k]), "1", "{k} served after its master's failover");
    }

    // Freezing, thawing and killing nodes.
    let frozen = c.replica_of(c.masters()[0]);
    c.stop(frozen);
    let state = || std::fs::read_to_string(format!("/proc/{}/stat", c.pid(frozen))).unwrap();
    let stopped = wait_for(Duration::from_secs(2), || state().split_whitespace().nth(2) == Some("T"));
    assert!(stopped, "stopped: {}", state());
    c.cont(frozen);
    assert_eq!(c.cli(frozen, &["ping"]), "PONG");
    c.kill(frozen);
    assert!(Command::new("redis-cli")
        .args(["-p", &frozen.to_string(), "ping"])
        .output()
        .unwrap()
        .stdout
        .is_empty());
    c.wait_healthy();
    eprintln!("own Redis Cluster selfcheck took {:?}", t0.elapsed());
}

/// Revokes a serial with `[redis]` pointing at `c.url()` (cluster = true);
/// the change key it set. `None` without a test database.
fn revoke_through(c: &OwnRedisCluster) -> Option<String> {
    let url = test_database("selfcheck_redis")?;
    let dir = tempfile::tempdir().unwrap();
    let (index, serials) = index_with(1);
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    let prefix = unique_prefix("self");
    let cfg = ConfigBuilder::new()
        .mysql(&url)
        .redis(&c.url())
        .set("redis", "cluster", true)
        .set("redis", "key_prefix", prefix.as_str())
        .issuer(IssuerTable::test())
        .write(dir.path().join("c.toml"));
    migrate_and_import(&cfg, &dir.path().join("index.txt"));
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_ocsp-origin"))
        .args(["revoke", "--config"])
        .arg(&cfg)
        .args(["--issuer", "test", "--serial", &serials[0], "--reason", "keyCompromise"]));
    assert!(ok && out.contains("tombstoned in Redis"), "{out}");
    let serial = ocsp_origin::ocsp::Serial::from_hex(&serials[0]).unwrap();
    let key = ocsp_origin::source::redis::change_key(&prefix, "test", &serial);
    let owner = c.master_of_key(&key);
    assert_eq!(c.cli(owner, &["exists", &key]), "1", "{key} on its master");
    Some(key)
}
