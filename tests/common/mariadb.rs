//! MariaDB: fresh test databases on the primary tests/services.sh starts
//! (`OCSP_TEST_MYSQL_URL`), migrated and imported like production, a
//! forwarder that cuts a node off its database, and the replica beside the
//! primary ([`test_replica`], [`ReplicaControl`]).
//!
//! The replica is shared by every test (all test databases replicate to it),
//! so pausing its SQL thread pauses replication of every database: that is
//! only done through [`ReplicaControl::exclusive`], which holds a process-wide
//! lock and restarts the thread when dropped, panics included. Tests in other
//! test binaries never overlap (cargo runs test binaries one at a time).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::server::{run, wait_for};

/// A fresh, empty database on the test MariaDB (from `OCSP_TEST_MYSQL_URL`,
/// set by tests/run.sh). Without it: `None` with a note, except under
/// CI=true, where a database test must not skip.
pub fn test_database(tag: &str) -> Option<String> {
    let Ok(base) = std::env::var("OCSP_TEST_MYSQL_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but OCSP_TEST_MYSQL_URL is not set: run tests via tests/run.sh");
        }
        eprintln!(
            "note: OCSP_TEST_MYSQL_URL not set, skipping {tag} (tests/run.sh starts a private MariaDB)"
        );
        return None;
    };
    use mysql::prelude::Queryable;
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).unwrap();
    let name = format!("ocsp_{tag}_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let pool = mysql::Pool::new(base.as_str()).expect("connect to test MariaDB");
    pool.get_conn().unwrap().query_drop(format!("CREATE DATABASE {name}")).unwrap();
    Some(format!("{}{name}", base.trim_end_matches('/').to_string() + "/"))
}

/// Runs `ocsp-origin db migrate` and `db import` of `index` for issuer
/// "test" with config file `cfg`; both must succeed.
pub fn migrate_and_import(cfg: &Path, index: &Path) {
    let bin = || Command::new(env!("CARGO_BIN_EXE_ocsp-origin"));
    let (ok, out) = run(bin().args(["db", "migrate", "--config"]).arg(cfg));
    assert!(ok, "{out}");
    let (ok, out) = run(bin()
        .args(["db", "import", "--config"])
        .arg(cfg)
        .args(["--issuer", "test", "--index"])
        .arg(index));
    assert!(ok, "{out}");
}

/// A loopback TCP forwarder to `upstream`, for a dependency that comes and
/// goes without stopping the real server behind it (which other tests share):
/// clients of `addr` reach `upstream` while it runs; [`Forwarder::cut`] (or
/// drop) closes the listener and every forwarded connection, as a crashed or
/// unplugged server would.
pub struct Forwarder {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    /// Starts forwarding from `listener` to `upstream`.
    pub fn start(listener: std::net::TcpListener, upstream: SocketAddr) -> Forwarder {
        use std::sync::atomic::Ordering;
        let addr = listener.local_addr().unwrap();
        let f = Forwarder { addr, stop: Default::default(), conns: Default::default() };
        let (stop, conns) = (f.stop.clone(), f.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                if let Ok(mut c) = conns.lock() {
                    c.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        f
    }

    /// Stops accepting and closes every forwarded connection.
    pub fn cut(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Ok(mut c) = self.conns.lock() {
            for s in c.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Replication of the shared replica: read-held while a test relies on it
/// running, write-held while a test pauses it.
static REPLICATION: RwLock<()> = RwLock::new(());

thread_local! {
    /// Whether this thread holds [`REPLICATION`] exclusively (so a helper it
    /// calls must not wait for the lock itself: that would deadlock).
    static HOLDS_EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// `OCSP_TEST_MYSQL_REPLICA_URL` (set by tests/run.sh), with the rule of
/// `test_database`: absent, `None` with a note, except under CI=true.
fn replica_base(tag: &str) -> Option<String> {
    match std::env::var("OCSP_TEST_MYSQL_REPLICA_URL") {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but OCSP_TEST_MYSQL_REPLICA_URL is not set: run tests via tests/run.sh")
        }
        Err(_) => {
            eprintln!(
                "note: OCSP_TEST_MYSQL_REPLICA_URL not set, skipping {tag} (tests/run.sh starts a MariaDB replica)"
            );
            None
        }
    }
}

/// `mysql://…/` with the database name removed.
fn server_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a mysql:// URL");
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/")
}

/// The database name of a `mysql://…/NAME[?…]` URL.
fn database_of(url: &str) -> &str {
    let path = url.split_once("://").map_or(url, |(_, r)| r);
    let name = path.split_once('/').map_or("", |(_, n)| n);
    name.split('?').next().unwrap_or(name)
}

/// The replica's URL for the database of `db_url` (one that `test_database`
/// made on the primary), once replication has created it there (waits up to
/// 10 s). Without a replica: `None` with a note, or a panic under CI=true.
///
/// Call it before stopping the SQL thread: while this thread holds
/// [`ReplicaControl::exclusive`] with the thread stopped, the database never
/// arrives. While another test holds it, this waits for that test first.
pub fn test_replica(db_url: &str) -> Option<String> {
    let name = database_of(db_url).to_string();
    let base = replica_base(&name)?;
    let _running = (!HOLDS_EXCLUSIVE.get()).then(shared_lock);
    let mut conn = small_pool(&base).get_conn().expect("connect to the test MariaDB replica");
    let present = wait_for(Duration::from_secs(10), || {
        let n: Option<u64> = conn
            .exec_first("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", (&name,))
            .expect("query the replica");
        n == Some(1)
    });
    assert!(present, "database {name} did not reach the replica within 10 s: {}", slave_status(&mut conn));
    // The schema's arrival is not its tables' and rows': wait until the
    // replica has applied everything the primary had committed when asked
    // (migrations, imports), or a node started now could find no table there.
    let want: String = small_pool(&server_of(db_url))
        .get_conn()
        .and_then(|mut c| c.query_first("SELECT @@gtid_binlog_pos"))
        .expect("@@gtid_binlog_pos of the primary")
        .unwrap_or_default();
    let applied = wait_for(Duration::from_secs(60), || {
        let have: Option<String> = conn.query_first("SELECT @@gtid_slave_pos").expect("query the replica");
        gtid_covers(&have.unwrap_or_default(), &want)
    });
    assert!(
        applied,
        "the replica did not apply the primary's {want:?} within 60 s: {}",
        slave_status(&mut conn)
    );
    Some(format!("{base}{name}"))
}

/// A pool of at most two connections (`Pool::new` alone opens ten at once).
fn small_pool(url: &str) -> mysql::Pool {
    let opts = mysql::Opts::from_url(url).expect("a mysql:// URL");
    let constraints = mysql::PoolConstraints::new(1, 2).expect("1 ≤ 2");
    let opts = mysql::OptsBuilder::from_opts(opts)
        .pool_opts(mysql::PoolOpts::default().with_constraints(constraints));
    mysql::Pool::new(opts).expect("connect to the test MariaDB")
}

fn shared_lock() -> RwLockReadGuard<'static, ()> {
    REPLICATION.read().unwrap_or_else(|e| e.into_inner())
}

/// A few fields of `SHOW SLAVE STATUS`, for failure messages.
fn slave_status(conn: &mut mysql::PooledConn) -> String {
    let row: Option<mysql::Row> = conn.query_first("SHOW SLAVE STATUS").ok().flatten();
    let Some(row) = row else { return "SHOW SLAVE STATUS: not a replica".into() };
    ["Slave_IO_Running", "Slave_SQL_Running", "Gtid_IO_Pos", "Last_IO_Error", "Last_SQL_Error"]
        .iter()
        .map(|f| format!("{f}={}", row.get::<Option<String>, _>(*f).flatten().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether GTID position `have` (`domain-server-seq,…`) includes `want`:
/// for each replication domain of `want`, `have` is at its sequence number
/// or past it.
pub fn gtid_covers(have: &str, want: &str) -> bool {
    let per_domain = |pos: &str| -> HashMap<u32, u64> {
        let mut m = HashMap::new();
        for g in pos.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut it = g.split('-');
            let (Some(d), Some(_server), Some(s)) = (it.next(), it.next(), it.next()) else { continue };
            let (Ok(d), Ok(s)) = (d.parse(), s.parse::<u64>()) else { continue };
            let e = m.entry(d).or_insert(0);
            *e = (*e).max(s);
        }
        m
    };
    let have = per_domain(have);
    per_domain(want).iter().all(|(d, s)| have.get(d).is_some_and(|h| h >= s))
}

enum Held {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// Control of the shared replica's replication, with the process-wide lock
/// that keeps tests which pause it from overlapping with tests that rely on
/// it. Dropping it restarts a stopped SQL thread (also when the test panics),
/// then releases the lock.
pub struct ReplicaControl {
    primary: mysql::Pool,
    replica: mysql::Pool,
    held: Held,
    sql_stopped: AtomicBool,
}

impl ReplicaControl {
    /// Exclusive control: waits for every other holder, then may stop and
    /// start the SQL thread. `None` (or a CI=true panic) without a replica.
    pub fn exclusive() -> Option<ReplicaControl> {
        assert!(!HOLDS_EXCLUSIVE.get(), "this thread holds ReplicaControl::exclusive() already");
        let (primary, replica) = Self::pools()?;
        let held = Held::Exclusive(REPLICATION.write().unwrap_or_else(|e| e.into_inner()));
        HOLDS_EXCLUSIVE.set(true);
        Some(ReplicaControl { primary, replica, held, sql_stopped: AtomicBool::new(false) })
    }

    /// Shared hold, for a test that needs replication running throughout (it
    /// waits for a test that paused it, and keeps others from pausing it).
    pub fn shared() -> Option<ReplicaControl> {
        assert!(!HOLDS_EXCLUSIVE.get(), "this thread holds ReplicaControl::exclusive(): use that one");
        let (primary, replica) = Self::pools()?;
        let held = Held::Shared(shared_lock());
        Some(ReplicaControl { primary, replica, held, sql_stopped: AtomicBool::new(false) })
    }

    fn pools() -> Option<(mysql::Pool, mysql::Pool)> {
        let replica = replica_base("replica control")?;
        let primary = std::env::var("OCSP_TEST_MYSQL_URL")
            .expect("OCSP_TEST_MYSQL_REPLICA_URL is set but OCSP_TEST_MYSQL_URL is not");
        Some((small_pool(&server_of(&primary)), small_pool(&server_of(&replica))))
    }

    fn replica_sql(&self, sql: &str) {
        self.replica.get_conn().and_then(|mut c| c.query_drop(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `STOP SLAVE SQL_THREAD`: the replica keeps receiving the primary's
    /// changes into its relay log but applies none until
    /// [`ReplicaControl::start_sql_thread`] (or drop). Exclusive only.
    pub fn stop_sql_thread(&self) {
        assert!(
            matches!(self.held, Held::Exclusive(_)),
            "stopping replication needs ReplicaControl::exclusive()"
        );
        self.sql_stopped.store(true, Ordering::SeqCst);
        self.replica_sql("STOP SLAVE SQL_THREAD");
    }

    /// `START SLAVE SQL_THREAD`: the replica applies what it has received.
    pub fn start_sql_thread(&self) {
        self.replica_sql("START SLAVE SQL_THREAD");
        self.sql_stopped.store(false, Ordering::SeqCst);
    }

    /// The primary's current `@@gtid_binlog_pos`.
    pub fn primary_position(&self) -> String {
        let mut c = self.primary.get_conn().expect("connect to the primary");
        c.query_first("SELECT @@gtid_binlog_pos").expect("@@gtid_binlog_pos").unwrap_or_default()
    }

    /// Waits until the replica has *applied* everything the primary had
    /// committed when this was called (`@@gtid_slave_pos` covers the
    /// primary's `@@gtid_binlog_pos`); how long that took, or why not.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<Duration, String> {
        self.wait_replica("applied", timeout, |c| {
            let pos: Option<String> = c.query_first("SELECT @@gtid_slave_pos").map_err(|e| e.to_string())?;
            Ok(pos.unwrap_or_default())
        })
    }

    /// Waits until the replica has *received* (into its relay log, applied
    /// or not) everything the primary had committed when this was called
    /// (`Gtid_IO_Pos` of `SHOW SLAVE STATUS`): with the SQL thread stopped, a
    /// change is then known to be waiting on the replica, not still in flight.
    pub fn wait_received(&self, timeout: Duration) -> Result<Duration, String> {
        self.wait_replica("received", timeout, |c| {
            let row: Option<mysql::Row> = c.query_first("SHOW SLAVE STATUS").map_err(|e| e.to_string())?;
            Ok(row.and_then(|r| r.get::<Option<String>, _>("Gtid_IO_Pos").flatten()).unwrap_or_default())
        })
    }

    /// Polls `have` (the replica's position) every 5 ms until it covers the
    /// primary's position as of the call, or `timeout` passes.
    fn wait_replica(
        &self,
        what: &str,
        timeout: Duration,
        have: impl Fn(&mut mysql::PooledConn) -> Result<String, String>,
    ) -> Result<Duration, String> {
        let want = self.primary_position();
        let t = Instant::now();
        let mut conn = self.replica.get_conn().map_err(|e| e.to_string())?;
        loop {
            let pos = have(&mut conn)?;
            if gtid_covers(&pos, &want) {
                return Ok(t.elapsed());
            }
            if t.elapsed() >= timeout {
                return Err(format!(
                    "the replica {what} up to {pos:?}, the primary is at {want:?}, after {timeout:?}; {}",
                    slave_status(&mut conn)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ReplicaControl {
    fn drop(&mut self) {
        if self.sql_stopped.load(Ordering::SeqCst) {
            if let Err(e) = self.replica.get_conn().and_then(|mut c| c.query_drop("START SLAVE SQL_THREAD")) {
                eprintln!("ReplicaControl: could not restart the replica's SQL thread: {e}");
            }
        }
        if matches!(self.held, Held::Exclusive(_)) {
            HOLDS_EXCLUSIVE.set(false);
        }
    }
}
