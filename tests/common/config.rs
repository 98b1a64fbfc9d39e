//! A small typed builder for the TOML configs the tests write, instead of
//! concatenating TOML text:
//!
//! ```ignore
//! let cfg = ConfigBuilder::new()
//!     .mysql(&url)
//!     .redis(&redis)
//!     .set("redis", "key_prefix", unique_prefix("x"))
//!     .set("cache", "l1_max_age_secs", 3600)
//!     .issuer(IssuerTable::test());
//! let server = Server::start(&cfg);
//! ```
//!
//! Values are TOML values (`impl Into<toml::Value>`: strings, integers,
//! booleans, floats); a table is created on first use, and setting a key
//! again replaces it. [`ConfigBuilder::build`] writes the TOML (keys sorted;
//! the order of keys and tables carries no meaning in TOML).

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::ca::data;
use super::hsm::{softhsm_module, Token};

/// A duration as whole milliseconds, for the `*_ms` keys.
pub fn ms(d: Duration) -> i64 {
    d.as_millis().try_into().expect("a duration of a test")
}

/// A path as the config names it (relative paths are relative to the config
/// file's directory).
fn path(p: impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

/// A config file's content: top-level keys, tables, and `[[issuer]]`s.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    root: Table,
    issuers: Vec<IssuerTable>,
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A top-level key (`listen`, `cores`, `pin`, `path_prefix`, …).
    pub fn top(mut self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.root.insert(key.into(), value.into());
        self
    }

    /// `key = value` in `[table]`.
    pub fn set(mut self, table: &str, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        let t = self.root.entry(table).or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(t) = t else { panic!("{table} is a key, not a table") };
        t.insert(key.into(), value.into());
        self
    }

    /// What [`ConfigBuilder::set`] put in `[table]` under `key`, as a string.
    pub fn get(&self, table: &str, key: &str) -> Option<&str> {
        self.root.get(table)?.as_table()?.get(key)?.as_str()
    }

    /// `listen = "addr"`.
    pub fn listen(self, addr: impl Display) -> ConfigBuilder {
        self.top("listen", addr.to_string())
    }

    /// `cores = n`.
    pub fn cores(self, n: i64) -> ConfigBuilder {
        self.top("cores", n)
    }

    /// `pin = on` (pin shards to cores).
    pub fn pin(self, on: bool) -> ConfigBuilder {
        self.top("pin", on)
    }

    /// `[admin] listen = "addr"`.
    pub fn admin(self, listen: impl Display) -> ConfigBuilder {
        self.set("admin", "listen", listen.to_string())
    }

    /// `[mysql] url = "url"` with the suite's lookup timeout, `timeout_ms =
    /// 2000` (a debug build on a small, shared machine).
    pub fn mysql(self, url: &str) -> ConfigBuilder {
        self.set("mysql", "url", url).set("mysql", "timeout_ms", 2000)
    }

    /// `[redis] url = "url"`.
    pub fn redis(self, url: &str) -> ConfigBuilder {
        self.set("redis", "url", url)
    }

    /// One more `[[issuer]]`.
    pub fn issuer(mut self, issuer: IssuerTable) -> ConfigBuilder {
        self.issuers.push(issuer);
        self
    }

    /// The test CA with its `index.txt`, the issuer of most tests.
    pub fn test_issuer(self) -> ConfigBuilder {
        self.issuer(IssuerTable::test().index(data("index.txt")))
    }

    /// What `Server` runs: this config with `listen = "127.0.0.1:0"` (an
    /// ephemeral port, printed when listening) and `cores = 2` unless set.
    pub fn for_server(mut self) -> ConfigBuilder {
        self.root.entry("listen").or_insert_with(|| "127.0.0.1:0".into());
        self.root.entry("cores").or_insert_with(|| 2.into());
        self
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut root = self.root.clone();
        if !self.issuers.is_empty() {
            let issuers = self.issuers.iter().map(|i| Value::Table(i.0.clone())).collect();
            root.insert("issuer".into(), Value::Array(issuers));
        }
        toml::to_string(&root).expect("a config serialises")
    }

    /// Writes [`ConfigBuilder::build`] to `file`; returns `file`.
    pub fn write(&self, file: impl AsRef<Path>) -> std::path::PathBuf {
        std::fs::write(file.as_ref(), self.build()).unwrap();
        file.as_ref().to_path_buf()
    }
}

/// One `[[issuer]]`.
#[derive(Clone, Debug)]
pub struct IssuerTable(Table);

impl IssuerTable {
    /// `name` with certificate `cert`.
    pub fn new(name: &str, cert: impl AsRef<Path>) -> IssuerTable {
        IssuerTable(Table::new()).set("name", name).set("cert", path(cert))
    }

    /// The test CA ("test"), its certificate and key; statuses from
    /// `[mysql]` unless [`IssuerTable::index`] names an `index.txt`.
    pub fn test() -> IssuerTable {
        IssuerTable::new("test", data("ca.pem")).key(data("ca.key"))
    }

    /// Any key of the issuer table.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> IssuerTable {
        self.0.insert(key.into(), value.into());
        self
    }

    /// `key = "path"`: the signing key's file.
    pub fn key(self, file: impl AsRef<Path>) -> IssuerTable {
        self.set("key", path(file))
    }

    /// `index = "path"`: statuses from an `index.txt`.
    pub fn index(self, file: impl AsRef<Path>) -> IssuerTable {
        self.set("index", path(file))
    }

    /// `responder_cert = "path"`: a delegated responder's certificate.
    pub fn responder_cert(self, file: impl AsRef<Path>) -> IssuerTable {
        self.set("responder_cert", path(file))
    }

    /// `[issuer.pkcs11]`: the signing key in a token.
    pub fn pkcs11(self, table: Pkcs11Table) -> IssuerTable {
        self.set("pkcs11", table.0)
    }
}

/// An `[issuer.pkcs11]` table.
#[derive(Clone, Debug)]
pub struct Pkcs11Table(Table);

impl Pkcs11Table {
    /// Key `key_label` in `token` (SoftHSM2), PIN from `OCSP_TEST_PIN` (see
    /// [`Token::env`]).
    pub fn new(token: &Token, key_label: &str) -> Pkcs11Table {
        Pkcs11Table(Table::new())
            .set("module", path(softhsm_module()))
            .set("token_label", token.label.as_str())
            .set("key_label", key_label)
            .set("pin_env", "OCSP_TEST_PIN")
    }

    /// Any key of the table.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Pkcs11Table {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The PIN from a file instead of `OCSP_TEST_PIN`.
    pub fn pin_file(mut self, file: impl AsRef<Path>) -> Pkcs11Table {
        self.0.remove("pin_env");
        self.set("pin_file", path(file))
    }
}
