//! Validation: a deserialised [`FileConfig`] checked field by field into a
//! [`Config`]. Each error names its field; URLs are checked by the client
//! libraries' own parsers, so nothing that passes here is refused at start.

use std::net::SocketAddr;
use std::path::Path;

use super::secret::{is_loopback, redact, AdminToken};
use super::{available_cores, err, Config, ConfigError, FileConfig};

/// Most serials `[mysql] batch` may put in one `SELECT … IN (…)`: a query's
/// placeholders are bounded (65,535 in MySQL's protocol), and past a few
/// thousand a query stops getting cheaper per serial.
const MAX_MYSQL_BATCH: usize = 4096;

impl Config {
    /// Validates a deserialised file.
    pub fn validate(mut f: FileConfig, base: &Path) -> Result<Config, ConfigError> {
        let listen: SocketAddr = f
            .listen
            .parse()
            .map_err(|_| err("listen", format!("{:?} is not an IP:port address", f.listen)))?;
        let available = available_cores();
        let cores = if f.cores == 0 { available } else { f.cores };
        if cores > available {
            return Err(err("cores", format!("{cores} requested but only {available} CPUs are available")));
        }
        let mut prefix = f.path_prefix.trim().trim_end_matches('/').to_string();
        if !prefix.is_empty() && !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if prefix.contains(['?', '#', ' ']) {
            return Err(err("path_prefix", "must be a plain path"));
        }
        let r = &f.response;
        if !(60..=366 * 86_400).contains(&r.lifetime_secs) {
            return Err(err("response.lifetime_secs", "must be between 60 and 31622400 (366 days)"));
        }
        if !(r.refresh_fraction > 0.0 && r.refresh_fraction <= 1.0) {
            return Err(err("response.refresh_fraction", "must be in (0, 1]"));
        }
        if r.backdate_secs >= r.lifetime_secs {
            return Err(err("response.backdate_secs", "must be below response.lifetime_secs"));
        }
        if r.profile == super::Profile::Baseline {
            baseline_validity(r.lifetime_secs, r.refresh_fraction)?;
        }
        let l = &f.limits;
        for (name, v, min) in [
            ("limits.max_uri_bytes", l.max_uri_bytes, 64),
            ("limits.max_header_bytes", l.max_header_bytes, 256),
            ("limits.max_body_bytes", l.max_body_bytes, 64),
            ("limits.max_cert_ids", l.max_cert_ids, 1),
            ("limits.max_connections_per_shard", l.max_connections_per_shard, 1),
            ("signing.queue_depth", f.signing.queue_depth, 1),
            ("signing.batch", f.signing.batch, 1),
            ("cache.max_inflight_per_shard", f.cache.max_inflight_per_shard, 1),
            ("cache.unknown_serial_entries", f.cache.unknown_serial_entries, 1),
            ("limits.multi_cert_id_signs_per_sec", l.multi_cert_id_signs_per_sec as usize, 1),
        ] {
            if v < min {
                return Err(err(name, format!("must be at least {min}")));
            }
        }
        for (i, p) in l.serial_prefixes.iter().enumerate() {
            // 40 hex digits: RFC 5280's 20 octets.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) || p.len() > 40 {
                return Err(err(
                    format!("limits.serial_prefixes[{i}]"),
                    format!("{p:?} is not a hex serial prefix"),
                ));
            }
        }
        if l.max_uri_bytes > l.max_header_bytes {
            return Err(err("limits.max_uri_bytes", "must not exceed limits.max_header_bytes"));
        }
        for (name, v) in [
            ("limits.header_timeout_ms", l.header_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.write_timeout_ms", l.write_timeout_ms),
            ("limits.drain_timeout_ms", l.drain_timeout_ms),
            ("signing.timeout_ms", f.signing.timeout_ms),
        ] {
            if v == 0 {
                return Err(err(name, "must be above 0"));
            }
        }
        if f.signing.threads == 0 {
            f.signing.threads = cores;
        }
        if f.issuers.is_empty() {
            return Err(err("issuer", "at least one [[issuer]] is required"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, is) in f.issuers.iter_mut().enumerate() {
            if is.name.trim().is_empty() {
                return Err(err(format!("issuer[{i}].name"), "must not be empty"));
            }
            if !names.insert(is.name.clone()) {
                return Err(err(format!("issuer[{i}].name"), format!("{:?} is used twice", is.name)));
            }
            match (&is.key, &is.pkcs11) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("issuer[{i}].key"),
                        "set either key or [issuer.pkcs11], not both",
                    ))
                }
                (None, None) => return Err(err(format!("issuer[{i}].key"), "set key or [issuer.pkcs11]")),
                (None, Some(p)) => {
                    let f = |x: &str| format!("issuer[{i}].pkcs11.{x}");
                    if p.key_label.is_some() == p.key_id.is_some() {
                        return Err(err(f("key_label"), "set exactly one of key_label and key_id"));
                    }
                    if p.pin_env.is_some() == p.pin_file.is_some() {
                        return Err(err(f("pin_env"), "set exactly one of pin_env and pin_file"));
                    }
                    if !p.module.is_file() {
                        return Err(err(
                            f("module"),
                            format!("{} is not a readable file", p.module.display()),
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            match (&is.index, &f.mysql) {
                (None, None) => {
                    return Err(err(format!("issuer[{i}].index"), "required (or configure [mysql])"))
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("issuer[{i}].index"),
                        "statuses come from [mysql]; import the file with `ocsp-origin db import` instead",
                    ))
                }
                _ => {}
            }
            let pin_file = is.pkcs11.as_mut().and_then(|p| p.pin_file.as_mut());
            for (field, p) in
                [("cert", Some(&mut is.cert)), ("key", is.key.as_mut()), ("index", is.index.as_mut())]
                    .into_iter()
                    .chain(std::iter::once(("responder_cert", is.responder_cert.as_mut())))
                    .chain(std::iter::once(("pkcs11.pin_file", pin_file)))
            {
                let Some(p) = p else { continue };
                if p.is_relative() {
                    *p = base.join(&*p);
                }
                if !p.is_file() {
                    return Err(err(
                        format!("issuer[{i}].{field}"),
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        if let Some(m) = &f.mysql {
            if m.threads == 0 || m.batch == 0 || m.queue_depth == 0 || m.timeout_ms == 0 {
                return Err(err("mysql", "threads, batch, queue_depth and timeout_ms must be above 0"));
            }
            if m.batch > MAX_MYSQL_BATCH {
                return Err(err(
                    "mysql.batch",
                    format!("{} is more than {MAX_MYSQL_BATCH} serials in one query", m.batch),
                ));
            }
            if m.batch_wait_us > m.timeout_ms.saturating_mul(1000) / 4 {
                return Err(err(
                    "mysql.batch_wait_us",
                    format!(
                        "{} µs is more than a quarter of timeout_ms ({} ms)",
                        m.batch_wait_us, m.timeout_ms
                    ),
                ));
            }
            check_mysql_url(&m.url).map_err(|e| err("mysql.url", e))?;
            if let Some(r) = &m.replica_url {
                check_mysql_url(r).map_err(|e| err("mysql.replica_url", e))?;
            }
            let fd = &f.feed;
            for (name, v) in [
                ("feed.poll_interval_ms", fd.poll_interval_ms),
                ("feed.batch", fd.batch as u64),
                ("feed.max_floors", fd.max_floors as u64),
                ("feed.hole_timeout_secs", fd.hole_timeout_secs),
            ] {
                if v == 0 {
                    return Err(err(name, "must be above 0"));
                }
            }
            if fd.bound_ms < 2 * fd.poll_interval_ms {
                return Err(err("feed.bound_ms", "must be at least twice feed.poll_interval_ms"));
            }
            if fd.fence_window_secs < 60 {
                return Err(err("feed.fence_window_secs", "must be at least 60"));
            }
            if fd.max_floors < 1000 {
                return Err(err("feed.max_floors", "must be at least 1000"));
            }
            if fd.hole_timeout_secs >= fd.fence_window_secs {
                return Err(err("feed.hole_timeout_secs", "must be below feed.fence_window_secs"));
            }
            if fd.retention_secs != 0 && fd.retention_secs < fd.fence_window_secs {
                return Err(err(
                    "feed.retention_secs",
                    "must be 0 (never prune) or at least feed.fence_window_secs",
                ));
            }
            if m.max_replica_lag_ms / 1000 >= fd.fence_window_secs {
                return Err(err("mysql.max_replica_lag_ms", "must be below feed.fence_window_secs"));
            }
            if f.cache.l1_max_age_secs.is_none() {
                f.cache.l1_max_age_secs = Some(60);
            }
        }
        if let Some(r) = &f.redis {
            if r.command_timeout_ms == 0 || r.connect_timeout_ms == 0 {
                return Err(err("redis", "command_timeout_ms and connect_timeout_ms must be above 0"));
            }
            let parsed = if r.cluster {
                fred::types::config::Config::from_url_clustered(&r.url)
            } else {
                fred::types::config::Config::from_url(&r.url)
            };
            parsed.map_err(|e| err("redis.url", format!("bad Redis URL: {}", redact(&e.to_string()))))?;
        }
        if let Some(r) = &mut f.redis {
            let tls = r.url.starts_with("rediss://") || r.url.starts_with("rediss-cluster://");
            for (name, file) in [
                ("tls_ca_file", &mut r.tls_ca_file),
                ("tls_cert_file", &mut r.tls_cert_file),
                ("tls_key_file", &mut r.tls_key_file),
            ] {
                if let Some(p) = file {
                    if !tls {
                        return Err(err(format!("redis.{name}"), "is for TLS: use a rediss:// URL"));
                    }
                    *p = base.join(&*p);
                    if !p.is_file() {
                        return Err(err(format!("redis.{name}"), format!("{}: no such file", p.display())));
                    }
                }
            }
            if r.tls_cert_file.is_some() != r.tls_key_file.is_some() {
                return Err(err(
                    "redis.tls_cert_file",
                    "set both tls_cert_file and tls_key_file, or neither",
                ));
            }
        }
        let (admin, admin_token) = match &f.admin {
            Some(a) => {
                let listen = a
                    .listen
                    .parse::<SocketAddr>()
                    .map_err(|_| err("admin.listen", format!("{:?} is not an IP:port address", a.listen)))?;
                let token = match &a.token_file {
                    Some(p) => {
                        let p = if p.is_relative() { base.join(p) } else { p.clone() };
                        let (token, warning) =
                            AdminToken::read(&p).map_err(|e| err("admin.token_file", e))?;
                        if let Some(w) = warning {
                            log::warn!("admin.token_file: {w}");
                        }
                        Some(token)
                    }
                    None => None,
                };
                if token.is_none() && !is_loopback(listen.ip()) {
                    return Err(err(
                        "admin.token_file",
                        format!(
                            "required when admin.listen ({listen}) is not a loopback address: every admin \
                             call from there must carry the bearer token"
                        ),
                    ));
                }
                (Some(listen), token)
            }
            None => (None, None),
        };
        if let Some(c) = &mut f.cdn {
            let names: Vec<&str> = f.issuers.iter().map(|i| i.name.as_str()).collect();
            super::cdn::validate(c, &names, base)?;
            if !c.targets.is_empty() && f.mysql.is_none() {
                return Err(err("cdn.target", "purges are driven by the change feed: they need [mysql]"));
            }
        }
        Ok(Config {
            admin,
            admin_token,
            cdn: f.cdn,
            mysql: f.mysql,
            feed: f.feed,
            redis: f.redis,
            listen,
            cores,
            pin: f.pin,
            path_prefix: prefix,
            response: f.response,
            limits: f.limits,
            signing: f.signing,
            cache: f.cache,
            issuers: f.issuers,
        })
    }
}

/// The MySQL client's own URL parser, so `serve` never refuses what passed.
fn check_mysql_url(url: &str) -> Result<(), String> {
    mysql::Opts::from_url(url).map(drop).map_err(|e| format!("bad MySQL URL: {}", redact(&e.to_string())))
}

/// The Baseline Requirements' rules for a response's validity (BR §4.9.10),
/// for `lifetime` = nextUpdate − thisUpdate and the refresh point live
/// signing uses (thisUpdate + lifetime × fraction). The BR counts the
/// validity interval inclusively: nextUpdate − thisUpdate + 1 second.
pub(super) fn baseline_validity(lifetime: u64, fraction: f64) -> Result<(), ConfigError> {
    const HOUR: u64 = 3600;
    let interval = lifetime + 1;
    if !(8 * HOUR..=10 * 24 * HOUR).contains(&interval) {
        return Err(err(
            "response.lifetime_secs",
            format!(
                "{lifetime} makes a validity interval of {interval} s (nextUpdate - thisUpdate + 1 s); the Baseline Requirements (profile = \"baseline\") allow 28800 (8 h) to 864000 (10 days): lifetime_secs 28799 to 863999"
            ),
        ));
    }
    let refresh = (lifetime as f64 * fraction) as u64;
    let before_next = lifetime - refresh;
    if interval < 16 * HOUR {
        if before_next < interval.div_ceil(2) {
            return Err(err(
                "response.refresh_fraction",
                format!("{fraction} refreshes {before_next} s before nextUpdate; with a validity interval under 16 h the Baseline Requirements want it at least half the interval ({} s) before: at most {:.4}", interval.div_ceil(2), (lifetime - interval.div_ceil(2)) as f64 / lifetime as f64),
            ));
        }
    } else if before_next < 8 * HOUR || refresh > 4 * 24 * HOUR {
        return Err(err(
            "response.refresh_fraction",
            format!(
                "{fraction} refreshes {refresh} s after thisUpdate and {before_next} s before nextUpdate; the Baseline Requirements want it at least 8 h (28800 s) before nextUpdate and at most 4 days (345600 s) after thisUpdate"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod baseline_tests {
    use super::baseline_validity;

    fn field(lifetime: u64, fraction: f64) -> Option<String> {
        baseline_validity(lifetime, fraction)
            .err()
            .map(|e| e.to_string().split(':').next().unwrap().to_string())
    }

    #[test]
    fn the_br_validity_interval_is_8_hours_to_10_days_inclusive() {
        assert_eq!(field(8 * 3600 - 1, 0.5), None, "exactly 8 h counted inclusively");
        assert_eq!(field(8 * 3600 - 2, 0.5).as_deref(), Some("response.lifetime_secs"));
        assert_eq!(field(10 * 86_400 - 1, 0.3), None, "exactly 10 days");
        assert_eq!(field(10 * 86_400, 0.3).as_deref(), Some("response.lifetime_secs"));
        assert_eq!(field(96 * 3600, 0.5), None, "the default");
    }

    #[test]
    fn the_br_update_point_bounds_the_refresh() {
        // Under 16 h: refresh no later than half the interval before nextUpdate.
        assert_eq!(field(12 * 3600, 0.49), None);
        assert_eq!(field(12 * 3600, 0.51).as_deref(), Some("response.refresh_fraction"));
        // 16 h and more: at least 8 h before nextUpdate, at most 4 days after thisUpdate.
        assert_eq!(field(24 * 3600, 0.66), None);
        assert_eq!(field(24 * 3600, 0.7).as_deref(), Some("response.refresh_fraction"));
        assert_eq!(
            field(10 * 86_400 - 1, 0.5).as_deref(),
            Some("response.refresh_fraction"),
            "5 days after thisUpdate"
        );
        assert_eq!(field(7 * 86_400, 0.5), None, "3.5 days");
    }
}
