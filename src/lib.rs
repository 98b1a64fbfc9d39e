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
//!  │ server::conn      bytes, pipelining, timeouts, lingering close           │
//!  │ server::handler   route → http::get_path / body → admit → answer → write │
//!  │ source::admission ocsp::request decode → issuer served? serial sane?     │
//!  │                   else unauthorized / malformedRequest                   │
//!  │ source::l1        shard-local cache, no locks: fresh → reply;            │
//!  │                   stale → reply + background re-sign; miss → coalesce   │
//!  │ source::redis     this shard's fred client; a checked copy → reply       │
//!  │                   (client tracking drops changed certs from L1)         │
//!  │ source::live      status (index.txt | MySQL, fenced) → sign ──────────┐  │
//!  │ http::response    RFC 5019 headers, ETag/304, errors unsigned         │  │
//!  └───────────────────────────────────────────────────────────────────────┼──┘
//!         bounded MPMC queue (full or slow → tryLater at once)             ▼
//!  ┌──── signer::pool: one OS thread per signing context (software / PKCS#11) ──┐
//!  │ takes up to `batch` jobs, signs back to back, answers shards together     │
//!  └─────────────────────────────────────────────────────────────────────────────┘
//!  feed: the database's change feed → source::floors + every shard's L1 + Redis
//!  cdn: cache tags on every 200; purger threads follow the feed → PURGE / purge API at the CDN
//!  admin listener: snapshots → metrics (Prometheus, .hgrm); reload; revoke (ops)
//!  control: SIGTERM / SIGHUP / POST /reload, /revoke → every shard applies
//!           drain, reload (next generation) or invalidate, on its own thread
//! ```
//!
//! Module map. [`app`] is the composition root: it loads the [`config`]
//! (a leaf: serde structs and validation), builds every part and hands each
//! shard what it needs; [`server`] runs shards and connections only. The
//! request path: [`http`], [`source`] (admission → l1 → redis → live, with
//! the revision floors), [`ocsp`] (the codec: request decoding, response
//! encoding, issuers), [`status`] (index.txt, MySQL), [`signer`] (software,
//! PKCS#11, the pool), [`cache`] (the cached response value), [`error`] (the
//! one mapping from failures to HTTP/OCSP answers). Beside it: [`feed`] (the
//! change feed), [`ops`] (status changes: the database writer and the fast
//! path, shared by the CLI and `/revoke`), [`admin`] (access, HTTP, routes),
//! [`metrics`] (rendered from snapshots), [`control`] (how commands reach the
//! shards). [`bench`] is the load generator, a client of the protocol only.
//! Leaves: [`clock`], [`asn1`], [`uring`].

#![deny(unsafe_code, missing_docs, unreachable_pub)]

pub mod admin;
pub mod app;
pub mod asn1;
pub mod bench;
pub mod cache;
pub mod cache_tags;
pub mod cdn;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod ocsp;
pub mod ops;
pub mod server;
pub mod signer;
pub mod source;
pub mod status;
pub mod uring;
