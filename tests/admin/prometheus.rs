//! The operator's Prometheus rules (tuning/prometheus/) against the real
//! tools and a real server:
//!
//! - `promtool check rules` accepts the rules file, with every rule in it;
//! - `promtool test rules` passes the unit tests, which give every alert a
//!   case where it fires and one where it does not; and each alert made
//!   never to fire fails them, so no alert's firing case is vacuous;
//! - every alert has a severity, a summary, a description and a runbook
//!   link whose anchor is a section of ALERTS.md;
//! - `promtool check metrics` finds nothing wrong in a real server's
//!   `/metrics`, with `index.txt` and with MariaDB, its replica, Redis and a
//!   CDN target;
//! - a real Prometheus, run on the shipped example config (the admin
//!   listener off loopback, so only the bearer token it sends lets it in),
//!   scrapes the server (with MariaDB, Redis and a CDN target where the
//!   services are set up), loads both rule groups with every rule evaluated
//!   and healthy, and holds the server's series and a recorded one; no
//!   alert is active.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (tests/run.sh installs it); without them a test says so and passes,
//! except under CI=true, where it fails.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const RULES: &str = "ocsp-origin.rules.yml";
const RULE_TESTS: &str = "ocsp-origin.rules.test.yml";

/// tuning/prometheus/, or a file in it.
fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/prometheus").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(shipped(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `/usr/bin/{name}`, or `name` on PATH, if it runs; else `None` with a
/// note, or a failure under CI=true (as tests/common does for its services).
fn tool(name: &str) -> Option<PathBuf> {
    let found = [Path::new("/usr/bin").join(name), PathBuf::from(name)]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        let fix = "run tests/run.sh, or apt-get install prometheus";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {name} is missing: {fix}");
        eprintln!("note: {name} missing, skipping ({fix})");
    }
    found
}

/// The rules of the rules file: (`record` or `alert`, name).
fn rules() -> Vec<(String, String)> {
    read(RULES)
        .lines()
        .filter_map(|l| {
            let (kind, name) = l.trim().strip_prefix("- ")?.split_once(": ")?;
            matches!(kind, "record" | "alert").then(|| (kind.to_string(), name.trim().to_string()))
        })
        .collect()
}

fn alerts() -> Vec<String> {
    rules().into_iter().filter(|(k, _)| k == "alert").map(|(_, n)| n).collect()
}

/// Runs `promtool test rules` on the shipped tests with `rules` as the rules
/// file, in a fresh directory.
fn unit_test(promtool: &Path, rules: &str) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(RULES), rules).unwrap();
    std::fs::write(d.path().join(RULE_TESTS), read(RULE_TESTS)).unwrap();
    run_within(
        Command::new(promtool).args(["test", "rules"]).arg(d.path().join(RULE_TESTS)),
        Duration::from_secs(60),
    )
}

/// The rules file with `alert`'s expression replaced by one that is never
/// true.
fn never_firing(rules: &str, alert: &str) -> String {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    let mut in_alert = false;
    while let Some(l) = lines.next() {
        if let Some(name) = l.trim().strip_prefix("- alert: ") {
            in_alert = name.trim() == alert;
        }
        let Some(expr) = l.trim_start().strip_prefix("expr:").filter(|_| in_alert) else {
            out.push(l.to_string());
            continue;
        };
        let indent = l.len() - l.trim_start().len();
        if expr.trim() == "|" {
            while lines.peek().is_some_and(|n| n.len() - n.trim_start().len() > indent) {
                lines.next();
            }
        }
        out.push(format!("{}expr: vector(0) > 1", " ".repeat(indent)));
        in_alert = false;
    }
    let mutant = out.join("\n");
    assert_ne!(mutant, rules, "{alert} has no expr");
    mutant
}

#[test]
fn promtool_checks_the_rules() {
    let Some(promtool) = tool("promtool") else { return };
    let (ok, out) = run(Command::new(promtool).args(["check", "rules"]).arg(shipped(RULES)));
    assert!(ok, "{out}");
    let n = rules().len();
    assert!(n >= 20, "the rules file lists {n} rules");
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

#[test]
fn promtool_unit_tests_pass_and_fail_when_an_alert_never_fires() {
    let Some(promtool) = tool("promtool") else { return };
    let rules = read(RULES);
    let (ok, out) = unit_test(&promtool, &rules);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    for alert in alerts() {
        let (ok, out) = unit_test(&promtool, &never_firing(&rules, &alert));
        assert!(!ok, "the unit tests pass with {alert} never firing: {out}");
        assert!(out.contains(&format!("alertname: {alert},")), "{alert}: {out}");
    }
}

/// Every alert: a firing and a quiet case in the unit tests, its labels and
/// annotations, and a runbook section; every recording rule's value tested.
#[test]
fn every_alert_is_unit_tested_and_has_a_runbook() {
    let (text, tests, runbooks) = (read(RULES), read(RULE_TESTS), read("ALERTS.md"));
    // What each `alertname:` case of the unit tests expects.
    let mut cases: Vec<(String, bool)> = Vec::new();
    let mut lines = tests.lines().map(str::trim).filter(|l| !l.starts_with('#'));
    while let Some(l) = lines.next() {
        if let Some(name) = l.strip_prefix("alertname: ") {
            let next = lines.next().unwrap_or("");
            assert!(next.starts_with("exp_alerts:"), "{name}: {next}");
            cases.push((name.to_string(), next != "exp_alerts: []"));
        }
    }
    let alerts = alerts();
    for (name, _) in &cases {
        assert!(alerts.contains(name), "the unit tests name {name}, which is no alert");
    }
    for alert in &alerts {
        for fires in [true, false] {
            assert!(cases.contains(&(alert.clone(), fires)), "{alert}: no case where fires = {fires}");
        }
        let body: String = text
            .split("- alert: ")
            .find(|b| b.starts_with(&format!("{alert}\n")))
            .unwrap_or_else(|| panic!("{alert}"))
            .split("\n      - ")
            .next()
            .unwrap()
            .into();
        assert!(body.contains("severity: page") || body.contains("severity: ticket"), "{alert}: {body}");
        for key in ["summary: ", "description: "] {
            assert!(body.contains(key), "{alert}: no {key}");
        }
        let anchor = alert.to_lowercase();
        let link = format!(
            "runbook: \"https://github.com/ocsp-origin/ocsp-origin/blob/main/tuning/prometheus/ALERTS.md#{anchor}\""
        );
        assert!(body.contains(&link), "{alert}: no {link}");
        assert!(runbooks.lines().any(|l| l == format!("## {alert}")), "ALERTS.md has no section {alert}");
    }
    for (_, record) in rules().into_iter().filter(|(k, _)| k == "record") {
        assert!(tests.contains(&format!("- expr: round({record}, 0.001)")), "{record}'s value is not tested");
        assert!(runbooks.contains(&format!("`{record}`")), "ALERTS.md does not list {record}");
    }
}

/// One request and its whole answer, on a connection of its own (HTTP/1.0:
/// the answer ends when the connection does).
fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = String::new();
    c.read_to_string(&mut raw)?;
    let code = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

const TOKEN: &str = "tok-prometheus";

/// A server on `config` with its admin listener on `ip` (a free port) and
/// [`TOKEN`] in `admin-token` in its directory, after a few OCSP answers;
/// the admin address (on loopback) once it accepts.
fn server_with_admin(ip: &str, config: ConfigBuilder) -> (Server, SocketAddr) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let config = config.admin(format!("{ip}:{port}")).set("admin", "token_file", "admin-token");
    let s = Server::start_in(dir, &config);
    let admin: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(wait_for(Duration::from_secs(5), || TcpStream::connect(admin).is_ok()), "admin on {admin}");
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    for _ in 0..3 {
        assert_eq!(roundtrip(&s, &post("/", &der)).status, 200);
    }
    assert_eq!(roundtrip(&s, &get("/notbase64!!")).body, ocsp_error(1));
    (s, admin)
}

/// What `promtool check metrics` reports, once the shards have published
/// and every series in `expect` is in `/metrics`. Exit status 1 (the text
/// does not parse) fails; 3 (lint problems) returns them, one a line.
fn lint_metrics(promtool: &Path, admin: SocketAddr, expect: &[&str]) -> Vec<String> {
    let mut metrics = String::new();
    let complete = wait_for(Duration::from_secs(10), || {
        metrics = http_get(admin, "/metrics", Some(TOKEN)).map(|(_, m)| m).unwrap_or_default();
        expect.iter().all(|e| metrics.contains(e))
    });
    assert!(complete, "/metrics lacks one of {expect:?}:\n{metrics}");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<String> = report.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    match out.status.code() {
        Some(0) => assert!(problems.is_empty(), "{report}"),
        Some(3) => assert!(!problems.is_empty(), "exit status 3 without a problem named"),
        _ => panic!("promtool check metrics: {}\n{report}\n{metrics}", out.status),
    }
    problems
}

#[test]
fn promtool_finds_nothing_wrong_in_an_index_txt_servers_metrics() {
    let Some(promtool) = tool("promtool") else { return };
    let (_s, admin) = server_with_admin("127.0.0.1", ConfigBuilder::new().test_issuer());
    let expect = ["ocsp_origin_shard_total{shard=\"1\",counter=\"requests\"}", "ocsp_origin_sign_total"];
    let problems = lint_metrics(&promtool, admin, &expect);
    assert!(problems.is_empty(), "promtool check metrics:\n{}", problems.join("\n"));
}

/// A config with every part that has metrics: MariaDB (a fresh database
/// holding the test issuer's certificates) with its replica, Redis and a
/// CDN purge target (`lint`, never sent anything: nothing changes). `None`
/// with a note where the services are not set up (under CI=true, a failure).
fn full_config(tag: &str) -> Option<ConfigBuilder> {
    let redis = test_redis("OCSP_TEST_REDIS_URL", "the metrics of a node with Redis")?;
    let url = test_database(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ConfigBuilder::new().mysql(&url).issuer(IssuerTable::test()).write(dir.path().join("c.toml"));
    migrate_and_import(&cfg, &data("index.txt"));
    let replica = test_replica(&url)?;
    let target = toml::Value::Table(
        toml::from_str("name = 'lint'\nkind = 'xkey'\nurl = 'http://127.0.0.1:9/'").unwrap(),
    );
    Some(
        ConfigBuilder::new()
            .mysql(&url)
            .set("mysql", "replica_url", replica)
            .redis(&redis)
            .set("redis", "key_prefix", unique_prefix(tag))
            .set("cdn", "target", toml::Value::Array(vec![target]))
            .issuer(IssuerTable::test()),
    )
}

/// With [`full_config`]: the status source's, the change feed's, Redis's
/// and the purger's metrics too, by the names the rules use.
#[test]
fn promtool_finds_nothing_wrong_in_a_mysql_redis_and_cdn_servers_metrics() {
    let Some(promtool) = tool("promtool") else { return };
    let Some(config) = full_config("promlint") else { return };
    let (_s, admin) = server_with_admin("127.0.0.1", config);
    let expect = [
        "ocsp_origin_status_source_up{source=\"mysql\"} 1",
        "ocsp_origin_status_replica_lag_seconds ",
        "ocsp_origin_feed_up 1",
        "ocsp_origin_feed_total{event=\"tombstones_written\"}",
        "counter=\"redis_errors\"}",
        "ocsp_origin_purge_total{target=\"lint\",result=\"dead_lettered\"} 0",
        "ocsp_origin_purge_tags_total{target=\"lint\"} 0",
        "ocsp_origin_purge_queued{target=\"lint\"} ",
        "ocsp_origin_purge_oldest_seconds{target=\"lint\"} ",
        "ocsp_origin_purge_up{target=\"lint\"} 1",
        "ocsp_origin_purge_lag_seconds{target=\"lint\",quantile=\"0.99\"} ",
        "ocsp_origin_purge_lag_seconds_count{target=\"lint\"} 0",
    ];
    let problems = lint_metrics(&promtool, admin, &expect);
    assert!(problems.is_empty(), "promtool check metrics:\n{}", problems.join("\n"));
}

/// A Prometheus on a free loopback port; killed on drop.
struct Prometheus {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

impl Prometheus {
    fn start(bin: &Path, config: &str, dir: tempfile::TempDir) -> Prometheus {
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child: Some(child), addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/{path}`'s `data`, if it answered with success.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.addr, &format!("/api/v1/{path}"), None).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    /// The series an instant query returns now.
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        self.api(&format!("query?query={q}"))
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Polls (30 s at most) until `q` returns a series that `ok` accepts.
    fn wait_for_series(&self, q: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let mut found = None;
        wait_for(Duration::from_secs(30), || {
            found = self.query(q).into_iter().find(&ok);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(200));
            }
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!("no {q} in Prometheus after 30 s: {:?}\nlog:\n{}", self.query(q), self.log())
        })
    }
}

/// The shipped example with its placeholders made this test's: the admin
/// address, the token file, the rules file, 1 s intervals. Each must be in
/// the example.
fn example_config(admin: SocketAddr, token_file: &Path) -> String {
    let mut config = read("prometheus.yml");
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".to_string()),
        ("/etc/ocsp-origin/admin-token", token_file.display().to_string()),
        ("- ocsp-origin.rules.yml", format!("- {}", shipped(RULES).display())),
        ("10.0.0.11:9091", admin.to_string()),
    ] {
        assert!(config.contains(from), "prometheus.yml has no {from:?}");
        config = config.replace(from, &to);
    }
    config
}

#[test]
fn a_real_prometheus_scrapes_the_server_with_the_rules_loaded() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else { return };
    // Every part with metrics where the services are set up, so every rule
    // evaluates real series; else index.txt alone.
    let full = full_config("prome2e");
    let source = if full.is_some() { "mysql" } else { "index_txt" };
    let config = full.unwrap_or_else(|| ConfigBuilder::new().test_issuer());
    // Off loopback: every call needs the token, so a scrape without it is 401.
    let (s, admin) = server_with_admin("0.0.0.0", config);
    assert_eq!(http_get(admin, "/metrics", None).unwrap().0, 401);
    let token = s.dir.path().join("admin-token");
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(admin, &token);
    std::fs::write(dir.path().join("check.yml"), &config).unwrap();
    let (ok, out) = run(Command::new(promtool).args(["check", "config"]).arg(dir.path().join("check.yml")));
    assert!(ok, "promtool check config:\n{out}\n{config}");
    let p = Prometheus::start(&prometheus, &config, dir);

    let up = p.wait_for_series("up", |r| r["metric"]["job"] == "ocsp-origin" && r["value"][1] == "1");
    assert_eq!(up["metric"]["instance"], admin.to_string(), "{up}");
    let up = p.wait_for_series("ocsp_origin_status_source_up", |r| r["value"][1] == "1");
    assert_eq!(up["metric"]["source"], source, "{up}");
    if source == "mysql" {
        p.wait_for_series("ocsp_origin_feed_up", |r| r["value"][1] == "1");
        p.wait_for_series("ocsp_origin_purge_up", |r| {
            r["metric"]["target"] == "lint" && r["value"][1] == "1"
        });
    }
    // A recorded series: 4 OCSP answers were counted before the first scrape.
    let rate = p.wait_for_series("instance:ocsp_origin_requests:rate5m", |_| true);
    assert_eq!(rate["metric"]["job"], "ocsp-origin", "{rate}");
    assert!(rate["metric"].get("shard").is_none(), "{rate}");

    // Both groups, every rule of the file, each evaluated without error.
    let never = "0001-01-01T00:00:00Z";
    let mut loaded = Vec::new();
    wait_for(Duration::from_secs(30), || {
        let groups = p.api("rules").and_then(|d| d["groups"].as_array().cloned()).unwrap_or_default();
        loaded = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (r["name"].clone(), r["health"].clone(), r["lastEvaluation"] != never, r["lastError"].clone())
            })
            .collect();
        let done = loaded.len() == rules().len() && loaded.iter().all(|r| r.2);
        if !done {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut names: Vec<_> = groups.iter().map(|g| g["name"].clone()).collect();
        names.sort_by_key(|n| n.to_string()); // the API lists groups by name
        done && names == ["ocsp-origin.alerts", "ocsp-origin.records"]
    });
    assert_eq!(loaded.len(), rules().len(), "{loaded:?}\nlog:\n{}", p.log());
    for (name, health, evaluated, error) in &loaded {
        assert!(*evaluated && health == "ok", "{name}: {health} {error}\nlog:\n{}", p.log());
    }
    // Nothing fires, or is pending, for a healthy node.
    let active = p.api("alerts").map(|d| d["alerts"].clone()).unwrap_or_default();
    assert_eq!(active, serde_json::json!([]), "{active}");
}
