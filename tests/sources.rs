//! Where answers come from past L1, against real services: the shared Redis
//! cache (two nodes, revocations on every core, Redis flushed, killed,
//! clustered, stale-but-valid copies) and the database's change feed (every
//! committed change reaches every core of every node within the bound,
//! through a lagging replica, Redis faults and failovers).

mod common;

#[path = "sources/change_feed.rs"]
mod change_feed;
#[path = "sources/redis_cache.rs"]
mod redis_cache;
