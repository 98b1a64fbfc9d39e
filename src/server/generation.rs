//! One generation of a shard's request-path state, built from the
//! [`ShardParts`] the composition root hands over: the nested sources
//! (admission → L1 → Redis → live), HTTP limits, counters. A reload builds
//! the next one from new parts, carrying the counters, stage times and the
//! (emptied) L1 over.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::http::parse::Limits;
use crate::http::response::DateCache;
use crate::metrics::StageTimes;
use crate::ocsp::issuer::Issuers;
use crate::signer::SignPool;
use crate::source::floors::{Fence, Floors};
use crate::source::l1::shed::Admission;
use crate::source::l1::store::L1Cache;
use crate::source::l1::Cached;
use crate::source::live::{Live, LivePolicy};
use crate::source::redis::{self, RedisL2};
use crate::source::Source;
use crate::status::StatusSource;

/// Read-only parts handed to every shard.
pub struct ShardParts {
    /// Validated config.
    pub config: Config,
    /// Issuers.
    pub issuers: Arc<Issuers>,
    /// Status source.
    pub status: Arc<dyn StatusSource>,
    /// Signer pool handle.
    pub pool: SignPool,
    /// Drives fred's timers when Redis is configured (see `source::redis`).
    pub timers: Option<tokio::runtime::Handle>,
    /// Where shards publish their metrics.
    pub board: crate::metrics::Board,
    /// The node's revision floors, raised by the change feed.
    pub floors: Arc<Floors>,
    /// Fills the shards share (this generation's; see `source::l1::node`).
    pub node_fills: Arc<crate::source::l1::node::NodeFills>,
}

/// Per-shard request counters (plain cells: one thread).
#[derive(Default, Debug)]
pub struct ShardStats {
    /// Connections accepted.
    pub connections: Cell<u64>,
    /// Requests answered (any outcome).
    pub requests: Cell<u64>,
    /// Signed responses sent (200 with a BasicOCSPResponse).
    pub ok: Cell<u64>,
    /// 304 answers.
    pub not_modified: Cell<u64>,
    /// OCSP error answers.
    pub ocsp_errors: Cell<u64>,
    /// Of those, `tryLater` (overload, a status source or signer unavailable).
    pub try_later: Cell<u64>,
    /// HTTP error answers.
    pub http_errors: Cell<u64>,
}

/// Everything a connection on this shard uses: one generation of the
/// request-path state. A reload builds the next generation and swaps it into
/// the [`super::shard::Shard`]; the counters, stage histograms and the L1
/// (emptied) carry over.
pub struct Generation {
    /// Issuers (for request admission).
    pub issuers: Arc<Issuers>,
    /// The nested sources, entered at the cache layer.
    pub responder: Cached,
    /// HTTP limits.
    pub limits: Limits,
    /// What admission checks (CertIDs per request, serial prefixes).
    pub admission: crate::source::admission::Policy,
    /// Normalised path prefix.
    pub prefix: String,
    /// Time allowed for a whole request to arrive.
    pub header_timeout: Duration,
    /// Idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// Write progress timeout.
    pub write_timeout: Duration,
    /// Cached Date header.
    pub date: RefCell<DateCache>,
    /// Counters.
    pub stats: Rc<ShardStats>,
    /// Per-stage times (request, parse, L1, Redis, DB), shared with the
    /// sources that time their own stages.
    pub stages: Rc<StageTimes>,
    /// Send `X-Cache-Status` on 200/304 answers (`response.cache_status_header`).
    pub cache_status_header: bool,
    /// The Redis layer, for its counters.
    pub redis: Option<Rc<RedisL2>>,
    /// The live source, for its counters.
    live: Rc<Live>,
    /// This generation's Redis client and the task keeping L1 coherent with
    /// it; stopped when a reload retires the generation.
    redis_conn: Option<(fred::prelude::Client, glommio::task::JoinHandle<()>)>,
}

impl Generation {
    /// Builds this shard's first generation from the shared parts.
    pub fn new(shared: &ShardParts) -> Generation {
        Generation::build(shared, None)
    }

    /// Builds a generation; with `prev`, the counters, stage times and the
    /// cache layer are taken over from it (the cache is emptied: what it holds
    /// was made with the old issuers and statuses).
    pub(super) fn build(shared: &ShardParts, prev: Option<&Generation>) -> Generation {
        let c = &shared.config;
        let stages = prev.map(|p| p.stages.clone()).unwrap_or_default();
        let fence = Fence::new(shared.floors.clone(), &shared.issuers);
        let live = Rc::new(Live::new(
            shared.issuers.clone(),
            shared.status.clone(),
            shared.pool.clone(),
            LivePolicy {
                lifetime_secs: c.response.lifetime_secs,
                refresh_fraction: c.response.refresh_fraction,
                backdate_secs: c.response.backdate_secs,
                expired: c.response.expired,
                sign_timeout: Duration::from_millis(c.signing.timeout_ms),
                multi_signs_per_sec: c.limits.multi_cert_id_signs_per_sec,
            },
            stages.clone(),
            fence.clone(),
        ));
        let mut inner: Rc<dyn Source> = Rc::new(live.clone());
        let mut redis_client = None;
        let mut redis_layer = None;
        if let Some(rc) = &c.redis {
            match redis::client(rc) {
                Ok(client) => {
                    let l2 = Rc::new(RedisL2::new(
                        Rc::new(client.clone()),
                        inner,
                        shared.issuers.clone(),
                        shared.status.clone(),
                        fence.clone(),
                        rc.key_prefix.clone(),
                        stages.clone(),
                    ));
                    inner = Rc::new(l2.clone());
                    redis_layer = Some(l2);
                    redis_client = Some(client);
                }
                Err(e) => log::error!("redis disabled on this shard: {e}"),
            }
        }
        let responder = match prev {
            Some(p) => {
                p.responder.replace_inner(inner, fence);
                p.responder.clone()
            }
            None => {
                let cached = Cached::with_l1(
                    inner,
                    Box::new(L1Cache::with_max_age(c.cache.l1_entries, c.cache.l1_max_age_secs.unwrap_or(0))),
                    c.cache.max_inflight_per_shard,
                );
                if c.cache.max_shard_lag_ms > 0 {
                    cached.set_admission(Admission::start(Duration::from_millis(c.cache.max_shard_lag_ms)));
                }
                cached.set_fence(fence);
                cached
            }
        };
        responder.set_unknowns(c.cache.unknown_serial_secs, c.cache.unknown_serial_entries);
        responder.set_node_fills(c.cache.node_fills.then(|| shared.node_fills.clone()));
        let redis_conn = match (redis_client, &c.redis) {
            (Some(client), Some(rc)) => {
                let task = glommio::spawn_local(redis::tracking::connect_and_track(
                    client.clone(),
                    rc.clone(),
                    shared.issuers.clone(),
                    responder.clone(),
                ))
                .detach();
                Some((client, task))
            }
            _ => None,
        };
        Generation {
            issuers: shared.issuers.clone(),
            responder,
            limits: Limits::from_config(&c.limits),
            admission: crate::source::admission::Policy::from_config(&c.limits),
            prefix: c.path_prefix.clone(),
            header_timeout: Duration::from_millis(c.limits.header_timeout_ms),
            idle_timeout: Duration::from_millis(c.limits.idle_timeout_ms),
            write_timeout: Duration::from_millis(c.limits.write_timeout_ms),
            date: RefCell::new(DateCache::default()),
            stats: prev.map(|p| p.stats.clone()).unwrap_or_default(),
            stages,
            cache_status_header: c.response.cache_status_header,
            redis: redis_layer,
            live,
            redis_conn,
        }
    }

    /// Stops what this generation runs in the background: its invalidation
    /// task (the next generation has its own, which knows the new issuers) and
    /// its Redis connection, once requests still using it are done with it.
    pub(super) fn retire(&self) {
        if let Some((client, task)) = &self.redis_conn {
            task.cancel();
            let client = client.clone();
            glommio::spawn_local(async move {
                use fred::prelude::ClientLike;
                let _ = client.quit().await;
            })
            .detach();
        }
    }

    /// This shard's counters and histograms, for the admin listener.
    pub fn snapshot(&self) -> crate::metrics::ShardSnapshot {
        let s = &self.stats;
        let c = self.responder.stats();
        let mut counters = vec![
            ("connections", s.connections.get()),
            ("requests", s.requests.get()),
            ("responses_ok", s.ok.get()),
            ("responses_not_modified", s.not_modified.get()),
            ("responses_ocsp_error", s.ocsp_errors.get()),
            ("responses_try_later", s.try_later.get()),
            ("responses_http_error", s.http_errors.get()),
            ("l1_hits", c.hits.get()),
            ("l1_stale_hits", c.stale_hits.get()),
            ("l1_misses", c.misses.get()),
            ("l1_coalesced", c.coalesced.get()),
            ("l1_overloaded", c.overloaded.get()),
            ("l1_revalidations", c.revalidations.get()),
            ("l1_shed_lag", c.shed_lag.get()),
            ("l1_unknown_hits", c.unknown_hits.get()),
            ("multi_cert_id_refused", self.live.multi_refused.get()),
        ];
        if let Some(r) = &self.redis {
            counters.extend([
                ("redis_hits", r.stats.hits.get()),
                ("redis_misses", r.stats.misses.get()),
                ("redis_errors", r.stats.errors.get()),
                ("redis_refused_writes", r.stats.refused_writes.get()),
                ("redis_fenced", r.stats.fenced.get()),
                ("redis_rejected", r.stats.rejected.get()),
                ("redis_rechecked", r.stats.rechecked.get()),
            ]);
        }
        crate::metrics::ShardSnapshot {
            counters,
            l1_entries: self.responder.l1_len() as u64,
            stages: self.stages.snapshot(),
        }
    }
}
