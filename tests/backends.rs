//! The status backend and the test services: statuses in a real MariaDB
//! (migrations, import, revoke and unrevoke, mass revocation, a node that
//! starts while its database is down; garbage serials, floods and bad rows; TLS to MariaDB and Redis),
//! and a self-check of the services the
//! other suites rely on (the MariaDB replica, a private Redis Cluster).
//!
//! The replica self-check waits for the replica to cover everything the
//! primary committed, so it runs alone ([`common::schedule::alone`]) and the
//! others beside each other.

mod common;

#[path = "backends/mysql_status.rs"]
mod mysql_status;
#[path = "backends/services_selfcheck.rs"]
mod services_selfcheck;
#[path = "backends/tls.rs"]
mod tls;
#[path = "backends/unknown_serials.rs"]
mod unknown_serials;
