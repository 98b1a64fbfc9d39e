//! Turning a validated [`Config`] into a node's parts: issuer certificates and
//! keys, checked against each other, and the status source. Every failure
//! names the config field it comes from.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::ocsp::issuer::{parse_certificate, Issuer, Issuers};
use crate::ocsp::IssuerId;
use crate::signer::{Pkcs11Signer, Signer, SoftwareSigner};
use crate::status::index_txt::IndexStatus;
use crate::status::mysql::MysqlStatus;

/// What a node serves with, besides its config: loaded from the config by
/// [`load_parts`], replaced as a whole by a reload.
pub struct Parts {
    /// Issuers with their keys.
    pub issuers: Arc<Issuers>,
    /// Status source.
    pub status: Arc<dyn crate::status::StatusSource>,
}

fn field_err(i: usize, field: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError { field: format!("issuer[{i}].{field}"), reason: reason.to_string() }
}

/// Loads every issuer's certificate, key and status database, and insists
/// that a `[mysql]` database answers and has the schema: what `check-config`
/// reports.
pub fn load_parts(config: &Config) -> Result<Parts, ConfigError> {
    if let Some(m) = &config.mysql {
        MysqlStatus::check(m).map_err(|e| ConfigError { field: "mysql".into(), reason: e })?;
    }
    load_parts_for_serving(config)
}

/// A delegated responder certificate closer than this to its notAfter is
/// warned of at start-up and every reload (30 days: time to renew it).
const RESPONDER_CERT_WARN_SECS: u64 = 30 * 86_400;

/// Like [`load_parts`], but a `[mysql]` database that cannot be reached is
/// not an error: the server starts, logs a warning, serves what Redis holds,
/// answers other misses `tryLater` and recovers by itself when the database
/// answers (see [`crate::status::mysql`]). For `serve` and reloads;
/// `check-config` keeps [`load_parts`].
pub fn load_parts_for_serving(config: &Config) -> Result<Parts, ConfigError> {
    let mut issuers = Vec::new();
    let mut status = IndexStatus::new();
    for (i, ic) in config.issuers.iter().enumerate() {
        let read = |field: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| field_err(i, field, format!("{}: {e}", p.display())))
        };
        let cert = parse_certificate(&read("cert", &ic.cert)?).map_err(|e| field_err(i, "cert", e))?;
        let signer: Arc<dyn Signer> = match (&ic.key, &ic.pkcs11) {
            (Some(path), _) => {
                let text = String::from_utf8(read("key", path)?)
                    .map_err(|_| field_err(i, "key", "not a PEM file"))?;
                Arc::new(SoftwareSigner::from_pem(&text).map_err(|e| field_err(i, "key", e))?)
            }
            (None, Some(p11)) => Arc::new(Pkcs11Signer::open(p11).map_err(|e| field_err(i, "pkcs11", e))?),
            (None, None) => return Err(field_err(i, "key", "set key or [issuer.pkcs11]")),
        };
        let responder = match &ic.responder_cert {
            Some(p) => Some(
                parse_certificate(&read("responder_cert", p)?)
                    .map_err(|e| field_err(i, "responder_cert", e))?,
            ),
            None => None,
        };
        let baseline = config.response.profile == crate::config::Profile::Baseline;
        let tags = config.cdn.as_ref().map(|c| Arc::new(crate::cache_tags::TagFormat::new(c)));
        let issuer = Issuer::new(&ic.name, cert, signer, responder)
            .map(|is| is.with_baseline(baseline).with_tags(tags))
            .map_err(|e| {
                let field = match e {
                    crate::ocsp::issuer::IssuerError::Responder(_) => "responder_cert",
                    crate::ocsp::issuer::IssuerError::KeyMismatch(_) => "key",
                    crate::ocsp::issuer::IssuerError::Cert(_) => "cert",
                };
                field_err(i, field, e)
            })?;
        if let Some(until) = issuer.responder_not_after {
            let left = until.saturating_sub(crate::clock::unix_now());
            if left < RESPONDER_CERT_WARN_SECS {
                log::warn!(
                    "issuer {:?}: the delegated responder certificate expires in {} days: renew it and reload",
                    ic.name,
                    left / 86_400
                );
            }
        }
        match &ic.index {
            Some(index) => {
                let n = status.load_file(IssuerId(i as u16), index).map_err(|e| field_err(i, "index", e))?;
                log::info!(
                    "issuer {:?}: {} key, {n} certificates",
                    ic.name,
                    issuer.responder.signer.describe()
                );
            }
            None => log::info!(
                "issuer {:?}: {} key, statuses in MySQL",
                ic.name,
                issuer.responder.signer.describe()
            ),
        }
        issuers.push(issuer);
    }
    let status: Arc<dyn crate::status::StatusSource> = match &config.mysql {
        Some(m) => {
            let names = config
                .issuers
                .iter()
                .enumerate()
                .map(|(i, ic)| (IssuerId(i as u16), ic.name.clone()))
                .collect();
            Arc::new(
                MysqlStatus::start(m, names).map_err(|e| ConfigError { field: "mysql".into(), reason: e })?,
            )
        }
        None => Arc::new(status),
    };
    Ok(Parts { issuers: Arc::new(Issuers::new(issuers)), status })
}
