//! Redis: the standalone instance and the Cluster tests/services.sh starts
//! (`OCSP_TEST_REDIS_URL`, `OCSP_TEST_REDIS_CLUSTER_URL`), key prefixes no
//! other test uses, and private instances for tests that stop, kill, freeze
//! or fail them over ([`OwnRedis`], [`OwnRedisCluster`]): the shared ones
//! must stay whole.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server::wait_for;

/// `OCSP_TEST_REDIS_URL` / `OCSP_TEST_REDIS_CLUSTER_URL` (set by tests/run.sh),
/// with the same rule as [`test_database`].
pub fn test_redis(var: &str, tag: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but {var} is not set: run tests via tests/run.sh")
        }
        Err(_) => {
            eprintln!("note: {var} not set, skipping {tag} (tests/run.sh starts private Redis instances)");
            None
        }
    }
}

/// A key prefix no other test uses.
pub fn unique_prefix(tag: &str) -> String {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    format!("t{tag}{}:", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// A free loopback port a Redis Cluster node can use: under 22000, so its
/// cluster bus (port + 10000) is below the ephemeral range too, and free.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..500 {
        let p = super::server::free_port_below(22_000);
        if !taken.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
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
