//! The admin listener against the real binary: Prometheus metrics and
//! HdrHistogram exports, and its security (bearer token, remote callers,
//! bounded listener, `POST /revoke` and `POST /reload`, no secret in any
//! output).

mod common;

#[path = "admin/metrics.rs"]
mod metrics;
#[path = "admin/prometheus.rs"]
mod prometheus;
#[path = "admin/security.rs"]
mod security;
