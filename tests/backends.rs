//! The status backend and the test services: statuses in a real MariaDB
//! (migrations, import, revoke and unrevoke, mass revocation, a node that
//! starts while its database is down), and a self-check of the services the
//! other suites rely on (the MariaDB replica, a private Redis Cluster).

mod common;

#[path = "backends/mysql_status.rs"]
mod mysql_status;
#[path = "backends/services_selfcheck.rs"]
mod services_selfcheck;
