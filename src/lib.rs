//! # ocsp-origin
//!
//! An OCSP responder (RFC 6960, RFC 5019 profile) built to be the origin a
//! certificate authority puts behind its CDN, and to stay responsive when the
//! CDN drops its cache and every relying party's request lands on it.
//!
//! Nothing is pre-signed: on a cache miss the status is read and a fresh
//! response is signed just in time, cached and served.
//!
//! ```text
//!  clients / CDN ── HTTP/1.1 GET /{base64} · POST application/ocsp-request ──┐
//!                                 SO_REUSEPORT, one listener per core         │
//!  ┌──────────── shard k (one pinned core, one glommio LocalExecutor) ───────┴─┐
//!  │ server::conn    read → http::parse (in place) → http::get_path / body     │
//!  │ source::filter  ocsp::request decode → issuer served? serial sane?        │
//!  │                 else unauthorized / malformedRequest                      │
//!  │ source::cached  L1 (shard-local, no locks) fresh → reply                  │
//!  │                 stale → reply + background re-sign; miss → coalesce      │
//!  │ source::redis   L2: this shard's fred client; fresh → reply; else ↓      │
//!  │                 (Redis client tracking drops changed certs from L1)      │
//!  │ source::live    status (index.txt | MySQL pool) → ResponseData → sign ─┐ │
//!  │ http::response  RFC 5019 headers, ETag/304, errors unsigned + no-cache │ │
//!  └────────────────────────────────────────────────────────────────────────┼─┘
//!         bounded MPMC queue (full → tryLater at once)                      ▼
//!  ┌──── signer::pool: one OS thread per signing context (software / PKCS#11) ──┐
//!  │ takes up to `batch` jobs, signs back to back, answers shards together     │
//!  └─────────────────────────────────────────────────────────────────────────────┘
//!  status lookups: status::mysql, a bounded pool of blocking threads, batched
//!  admin listener: shards publish snapshots → metrics (Prometheus, .hgrm); reload, revoke
//!  control: SIGTERM / SIGHUP / POST /reload, /revoke → every shard applies
//!           drain, reload (next generation) or invalidate, on its own thread
//! ```
//!
//! Module map, in request order: [`server`] (executors, listeners,
//! connections), [`http`], [`source`] (filter → cached → redis → live),
//! [`ocsp`] (request decoding, response encoding), [`status`] (index.txt,
//! MySQL), [`signer`] (software, PKCS#11, the pool), [`cache`]; [`db`] is the
//! writer side (migrations, import, revoke, mass revocation of a
//! [`serials_file`]) and [`revoke`] pushes a change to the caches; [`admin`] is the admin listener (metrics from [`metrics`],
//! reload, revoke; bearer-token access), [`control`] how it reaches the
//! shards, and [`error`] holds the one mapping from failures to HTTP/OCSP
//! answers.

#![deny(unsafe_code, missing_docs, unreachable_pub)]

pub mod admin;
pub mod app;
pub mod bench;
pub mod cache;
pub mod clock;
pub mod config;
pub mod control;
pub mod db;
pub mod demo;
pub mod error;
pub mod feed;
pub mod http;
pub mod issuer;
pub mod metrics;
pub mod ocsp;
pub mod revoke;
pub mod serials_file;
pub mod server;
pub mod signer;
pub mod source;
pub mod status;
