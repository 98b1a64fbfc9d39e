//! Where answers come from: sources that nest, as Boulder's
//! `ocsp/responder` nests filter → Redis-checked → live.
//!
//! ```text
//! admission::admit   bytes → Query (issuer served? serial sane? limits)
//!   └ l1::Cached       L1 hit → answer; miss → coalesced fetch; stale → serve + refresh
//!       └ redis::RedisL2   shared copy, checked (DER, floor, trust horizon) → answer
//!           └ live::Live       status lookup (fenced) → ResponseData → signer pool
//! ```
//!
//! Redis and live implement [`Source`], so each nests in the one above it;
//! `l1::Cached` is the chain's entry, which also says how it served
//! (`l1::Served`, for `X-Cache-Status`). Futures are `!Send` because they run
//! on the shard that received the request. [`floors`] holds
//! the node's revision floors, which every layer holds its copies to (the
//! change feed, [`crate::feed`], raises them).

pub mod admission;
pub mod floors;
pub mod l1;
pub mod live;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::cache::CachedResponse;
use crate::error::OcspError;
use crate::ocsp::{CertId, IssuerId};

/// An admitted request: the CertIDs to answer and the cache key naming them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The issuer all CertIDs belong to.
    pub issuer: IssuerId,
    /// CertIDs in request order.
    pub ids: Vec<CertId>,
    /// Compact encoding of `ids` (see [`admission::cache_key`]).
    pub key: Box<[u8]>,
}

/// The future a source returns.
pub type Answer = Pin<Box<dyn Future<Output = Result<Rc<CachedResponse>, OcspError>>>>;

/// Something that can produce a signed response for a query.
pub trait Source {
    /// Produces the response for `q`, made from statuses no older than
    /// revision `at_least` (for a single-CertID query: what a layer above
    /// already saw, a Redis tombstone or value; 0 = none). Every source also
    /// holds to the node's revision floors ([`crate::source::floors::Fence`]).
    fn fetch(&self, q: Rc<Query>, at_least: u64) -> Answer;

    /// Produces the response for `q` given a previous one that is still
    /// valid; a source that can check statuses cheaply answers `prev` again
    /// when they have not changed. By default, fetches anew, no older than
    /// `prev`.
    fn revalidate(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        self.fetch(q, prev.revision)
    }

    /// Like [`Source::revalidate`], from the authoritative copy: the check
    /// behind vouching for a shared copy again (every node then trusts it),
    /// where a replica could answer from before a change nobody fences any
    /// more.
    fn recheck(&self, q: Rc<Query>, prev: Rc<CachedResponse>) -> Answer {
        self.revalidate(q, prev)
    }
}
