//! TLS to Redis (`rediss://`): rustls on aws-lc-rs, with the operator's CA
//! file instead of the system's roots when `tls_ca_file` is set, and a client
//! certificate when the server asks for one (`tls_cert_file`, `tls_key_file`).
//! The server's name is checked against the URL's host (an IP literal against
//! the certificate's IP addresses).

use std::path::Path;
use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::RedisConfig;

fn read_pem(path: &Path) -> Result<Vec<pem::Pem>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pem::parse_many(text).map_err(|e| format!("{}: {e}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = read_pem(path)?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no PEM CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    read_pem(path)?
        .into_iter()
        .find_map(|p| match p.tag() {
            "PRIVATE KEY" => Some(PrivateKeyDer::Pkcs8(p.into_contents().into())),
            "EC PRIVATE KEY" => Some(PrivateKeyDer::Sec1(p.into_contents().into())),
            "RSA PRIVATE KEY" => Some(PrivateKeyDer::Pkcs1(p.into_contents().into())),
            _ => None,
        })
        .ok_or_else(|| format!("{}: no PEM private key in it", path.display()))
}

/// The TLS set-up for `cfg`, or `None` where fred's own (for `rediss://`:
/// the system's roots, no client certificate; else no TLS) is right.
pub fn config(cfg: &RedisConfig) -> Result<Option<TlsConfig>, String> {
    if cfg.tls_ca_file.is_none() && cfg.tls_cert_file.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.tls_ca_file {
        Some(ca) => {
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| format!("redis.tls_ca_file: {}: {e}", ca.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("redis TLS: {e}"))?
        .with_root_certificates(roots);
    let client = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                certificates(cert).map_err(|e| format!("redis.tls_cert_file: {e}"))?,
                private_key(key).map_err(|e| format!("redis.tls_key_file: {e}"))?,
            )
            .map_err(|e| format!("redis.tls_key_file: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(TlsConnector::from(client).into()))
}
