//! The CDN as part of the system, with a real Varnish 7 in front: cache tags
//! and purges driven by the change feed (`cdn/purge.rs`), and the 304s every
//! core of a node gives for a response any of them issued
//! (`cdn/across_cores.rs`); what the production VCL caches, revalidates and
//! purges, against real nodes (`cdn/varnish_cache.rs`); the bench's ratchet
//! through Varnish (`cdn/ratchet.rs`).

mod common;

#[path = "cdn/across_cores.rs"]
mod across_cores;
#[path = "cdn/purge.rs"]
mod purge;
#[path = "cdn/ratchet.rs"]
mod ratchet;
#[path = "cdn/varnish_cache.rs"]
mod varnish_cache;
