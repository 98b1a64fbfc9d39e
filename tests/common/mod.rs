//! Shared helpers for the integration tests, by what they stand for:
//!
//! - [`server`]: the `ocsp-origin serve` process under test (ephemeral
//!   loopback port, its log and stdout, signals), the real server inside the
//!   test process, commands, free ports and bounded waits;
//! - [`client`]: a minimal raw HTTP/1.1 client and OCSP answer helpers;
//! - [`config`]: a typed builder for the TOML configs the tests write;
//! - [`ca`]: the test CA of `tests/data/client-requests`, its serials,
//!   `index.txt` lines and `openssl`-made requests;
//! - [`mariadb`]: test databases, the replica, a forwarder to cut a node off;
//! - [`redis`]: the shared Redis instances, private ones to stop or fail over;
//! - [`hsm`]: SoftHSM2 tokens, and the one of the module in this process;
//! - [`load`]: `ocsp-origin bench` runs and the fault suites' probe and table;
//! - [`schedule`]: tests that must run alone within their binary.
//!
//! Everything but `load` and `schedule` is re-exported here.
#![allow(dead_code)]

pub mod ca;
pub mod client;
pub mod config;
pub mod hsm;
pub mod load;
pub mod mariadb;
pub mod redis;
pub mod schedule;
pub mod server;
pub mod varnish;

// Not every test binary uses every one.
#[allow(unused_imports)]
pub use {ca::*, client::*, config::*, hsm::*, mariadb::*, redis::*, server::*};
