//! Replication-aware helpers: the MariaDB replica that tests/services.sh
//! starts beside the primary ([`test_replica`], [`ReplicaControl`]), and a
//! private Redis Cluster with replicas that a test may fail over, kill or
//! freeze ([`OwnRedisCluster`]).
//!
//! The replica is shared by every test (all test databases replicate to it),
//! so pausing its SQL thread pauses replication of every database: that is
//! only done through [`ReplicaControl::exclusive`], which holds a process-wide
//! lock and restarts the thread when dropped, panics included. Tests in other
//! test binaries never overlap (cargo runs test binaries one at a time).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::load::wait_for;

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

/// A free loopback port a Redis Cluster node can use: at most 55000, with
/// port + 10000 (its cluster bus) free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..500 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p <= 55000 && !taken.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair for a Redis Cluster node");
}

/// What this struct did to a node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeState {
    Running,
    Stopped,
    Killed,
}

struct Node {
    port: u16,
    child: Child,
    state: NodeState,
}

/// A private Redis Cluster: 3 masters with one replica each, on free loopback
/// ports, for tests that fail it over, kill or freeze nodes (the shared one
/// from tests/services.sh must stay whole). Nodes are named by their port.
/// Every node is killed on drop; every wait is bounded and panics saying
/// what did not happen.
///
/// `cluster-node-timeout` is 2 s, so a killed master's replica also takes
/// over by itself a few seconds later (no test here relies on how long).
pub struct OwnRedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// The longest any wait of [`OwnRedisCluster`] lasts.
const CLUSTER_WAIT: Duration = Duration::from_secs(20);

impl OwnRedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok` and every replica has synced
    /// (`master_link_status:up`).
    pub fn start() -> OwnRedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = OwnRedisCluster { dir, nodes: Vec::new() };
        for i in 0..6 {
            let n = c.spawn_node(i);
            c.nodes.push(n);
        }
        let addrs: Vec<String> = c.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c.wait_healthy();
        c
    }

    /// One node (attempt a few ports: one may be taken between choosing and
    /// binding), up and answering PING.
    fn spawn_node(&self, i: usize) -> Node {
        let taken: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        for _ in 0..3 {
            let port = free_cluster_port(&taken);
            let d = self.dir.path();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--repl-diskless-sync-delay", "0", "--dir"])
                .arg(d)
                .arg("--cluster-config-file")
                .arg(d.join(format!("nodes-{i}-{port}.conf")))
                .arg("--logfile")
                .arg(d.join(format!("redis-{port}.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server (apt-get install redis-server)");
            if wait_for(Duration::from_secs(5), || cli_at(port, &["ping"]) == "PONG") {
                return Node { port, child, state: NodeState::Running };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("a Redis Cluster node did not start; logs in {}", self.dir.path().display());
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A cluster URL naming every node (`redis://127.0.0.1:P?node=…`), so a
    /// client can bootstrap from any node still up; use it with
    /// `cluster = true`.
    pub fn url(&self) -> String {
        let mut ports = self.ports().into_iter();
        let first = ports.next().expect("nodes");
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis://127.0.0.1:{first}?{}", rest.join("&"))
    }

    /// `redis-cli -p PORT ARGS…` on one node; its output, trimmed (an error
    /// reply reads `ERR …`, `MOVED …`).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_at(port, args)
    }

    /// Feeds `script` (one command a line) to `redis-cli -p PORT` on one
    /// connection, e.g. `"SET k v\nWAIT 1 2000\n"` (WAIT counts the
    /// replicas that acknowledged this connection's writes) or
    /// `"READONLY\nGET k\n"` (a read from a replica); the replies, one a line.
    pub fn script(&self, port: u16, script: &str) -> String {
        redis_cli(port, &[], Some(script))
    }

    /// The process id of a node (to look at it in /proc).
    pub fn pid(&self, port: u16) -> u32 {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .map(|n| n.child.id())
            .unwrap_or_else(|| panic!("no node {port}"))
    }

    /// A node this struct has neither stopped nor killed (to ask about the
    /// cluster).
    fn running(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.iter().filter(|n| n.state == NodeState::Running).map(|n| n.port)
    }

    /// `CLUSTER NODES` as seen by the first running node: (port, flags,
    /// master id or "-", id, slots) per node.
    fn cluster_nodes(&self) -> Vec<ClusterNode> {
        let port = self.running().next().expect("a running node");
        parse_cluster_nodes(&self.cli(port, &["cluster", "nodes"]))
    }

    /// The masters serving slots, by port (failed ones left out).
    pub fn masters(&self) -> Vec<u16> {
        self.cluster_nodes()
            .iter()
            .filter(|n| n.has_flag("master") && !n.failed() && !n.slots.is_empty())
            .map(|n| n.port)
            .collect()
    }

    /// The replica of `master` (a running one, if it has several).
    pub fn replica_of(&self, master: u16) -> u16 {
        let nodes = self.cluster_nodes();
        let id = &nodes.iter().find(|n| n.port == master).unwrap_or_else(|| panic!("no node {master}")).id;
        nodes
            .iter()
            .find(|n| n.has_flag("slave") && !n.failed() && &n.master == id)
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("master {master} has no replica: {nodes:#?}"))
    }

    /// The master serving `key`'s slot.
    pub fn master_of_key(&self, key: &str) -> u16 {
        let port = self.running().next().expect("a running node");
        let slot: u16 = self.cli(port, &["cluster", "keyslot", key]).parse().expect("CLUSTER KEYSLOT");
        self.cluster_nodes()
            .iter()
            .find(|n| {
                n.has_flag("master") && !n.failed() && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// `CLUSTER FAILOVER TAKEOVER` on `replica`: it becomes the master of its
    /// master's slots at once, without the master's agreement or a last sync
    /// (so it may lack the master's latest writes). Returns once it reports
    /// role master and `cluster_state:ok`, and every running node routes its
    /// slots to it.
    pub fn failover_takeover(&self, replica: u16) {
        let r = self.cli(replica, &["cluster", "failover", "takeover"]);
        assert_eq!(r, "OK", "CLUSTER FAILOVER TAKEOVER on {replica}");
        let promoted = wait_for(CLUSTER_WAIT, || {
            self.cli(replica, &["role"]).lines().next() == Some("master")
                && self.cli(replica, &["cluster", "info"]).contains("cluster_state:ok")
        });
        assert!(promoted, "{replica} did not become a master with cluster_state:ok within {CLUSTER_WAIT:?}");
        let agreed = wait_for(CLUSTER_WAIT, || {
            self.running().all(|p| {
                let view = parse_cluster_nodes(&self.cli(p, &["cluster", "nodes"]));
                view.iter().any(|n| n.port == replica && n.has_flag("master") && !n.slots.is_empty())
            })
        });
        assert!(agreed, "not every running node routes to the new master {replica} within {CLUSTER_WAIT:?}");
        self.wait_healthy();
    }

    /// Waits until every running node reports `cluster_state:ok`, every
    /// running replica `master_link_status:up`, and all running nodes agree
    /// which node is whose replica (roles spread by gossip: right after
    /// `--cluster create` or a failover, some nodes still have the old view).
    pub fn wait_healthy(&self) {
        let ok = wait_for(CLUSTER_WAIT, || {
            let states_ok = self.running().all(|p| {
                let repl = self.cli(p, &["info", "replication"]);
                self.cli(p, &["cluster", "info"]).contains("cluster_state:ok")
                    && (!repl.contains("role:slave") || repl.contains("master_link_status:up"))
            });
            let views: Vec<_> = self.running().map(|p| self.roles(p)).collect();
            states_ok && views.windows(2).all(|w| w[0] == w[1]) && views.iter().all(|v| !v.is_empty())
        });
        assert!(
            ok,
            "the Redis Cluster did not become healthy within {CLUSTER_WAIT:?}; logs in {}",
            self.dir.path().display()
        );
    }

    /// Node `p`'s view of the running nodes: (port, the port of its master
    /// or 0 for a master), sorted; empty while it sees a master without
    /// slots (a node `--cluster create` has not made a replica yet).
    fn roles(&self, p: u16) -> Vec<(u16, u16)> {
        let view = parse_cluster_nodes(&self.cli(p, &["cluster", "nodes"]));
        let running: Vec<u16> = self.running().collect();
        let view: Vec<&ClusterNode> = view.iter().filter(|n| running.contains(&n.port)).collect();
        if view.iter().any(|n| n.has_flag("master") && n.slots.is_empty()) {
            return Vec::new();
        }
        let mut roles: Vec<(u16, u16)> = view
            .iter()
            .map(|n| (n.port, view.iter().find(|m| m.id == n.master).map_or(0, |m| m.port)))
            .collect();
        roles.sort();
        roles
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// SIGKILLs a node (it stays dead).
    pub fn kill(&mut self, port: u16) {
        let n = self.node(port);
        let _ = n.child.kill();
        let _ = n.child.wait();
        n.state = NodeState::Killed;
    }

    /// SIGSTOPs a node: its connections stay open and nothing answers.
    pub fn stop(&mut self, port: u16) {
        let n = self.node(port);
        signal(&n.child, libc::SIGSTOP);
        n.state = NodeState::Stopped;
    }

    /// SIGCONTs a node stopped with [`OwnRedisCluster::stop`].
    pub fn cont(&mut self, port: u16) {
        let n = self.node(port);
        signal(&n.child, libc::SIGCONT);
        n.state = NodeState::Running;
    }

    /// The directory holding the nodes' logs and config files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

#[allow(unsafe_code)]
fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0, "kill({sig})");
}

/// How long one redis-cli call may take (a stopped node never answers).
const CLI_TIMEOUT: Duration = Duration::from_secs(5);

fn cli_at(port: u16, args: &[&str]) -> String {
    redis_cli(port, args, None)
}

/// Runs redis-cli on `port` with `args`, feeding it `script` (one command a
/// line, all on one connection) if given; its stdout, trimmed, or
/// "TIMEOUT" if it did not finish within [`CLI_TIMEOUT`].
fn redis_cli(port: u16, args: &[&str], script: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(if script.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run redis-cli (apt-get install redis-tools)");
    if let (Some(text), Some(mut stdin)) = (script, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    if !wait_for(CLI_TIMEOUT, || !matches!(child.try_wait(), Ok(None))) {
        let _ = child.kill();
        let _ = child.wait();
        return "TIMEOUT".into();
    }
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    out.trim().to_string()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct ClusterNode {
    id: String,
    port: u16,
    flags: Vec<String>,
    /// The master's id for a replica, "-" for a master.
    master: String,
    /// Slot ranges served (masters).
    slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    fn failed(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot> <slot> …`; importing/migrating entries (`[…]`) skipped.
fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(ClusterNode {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(String::from).collect(),
                master: f[3].to_string(),
                slots,
            })
        })
        .collect()
}

/// A private standalone redis-server on `port`, for tests that stop, kill or
/// restart it (the shared one from tests/services.sh must stay up); killed
/// on drop.
pub struct OwnRedis(Child);

impl OwnRedis {
    /// Starts it and waits (up to 2 s) until it accepts connections.
    pub fn start(port: u16) -> OwnRedis {
        let c = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis(c)
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    pub fn stop(&self) {
        signal(&self.0, libc::SIGSTOP);
    }

    /// Thaws it (SIGCONT).
    pub fn cont(&self) {
        signal(&self.0, libc::SIGCONT);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
