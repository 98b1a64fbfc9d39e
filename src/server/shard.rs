//! One shard: the accept loop and the state every connection on this core shares.

use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use crate::cache::l1::L1Cache;
use crate::config::Config;
use crate::http::parse::Limits;
use crate::http::response::DateCache;
use crate::issuer::Issuers;
use crate::metrics::StageTimes;
use crate::signer::SignPool;
use crate::source::cached::Cached;
use crate::source::live::{Live, LivePolicy};
use crate::source::redis::{self, RedisConfig, RedisL2};
use crate::source::Source;
use crate::status::StatusSource;

/// Read-only parts handed to every shard.
pub struct SharedParts {
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
    /// HTTP error answers.
    pub http_errors: Cell<u64>,
}

/// Everything a connection on this shard uses.
pub struct Shard {
    /// Issuers (for request admission).
    pub issuers: Arc<Issuers>,
    /// The nested sources, entered at the cache layer.
    pub responder: Cached,
    /// HTTP limits.
    pub limits: Limits,
    /// CertIDs per request.
    pub max_cert_ids: usize,
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
    pub stats: ShardStats,
    /// Per-stage times (request, parse, L1, Redis, DB), shared with the
    /// sources that time their own stages.
    pub stages: Rc<StageTimes>,
    /// Send `X-Cache-Status` on 200/304 answers (`response.cache_status_header`).
    pub cache_status_header: bool,
    /// The Redis layer, for its counters.
    pub redis: Option<Rc<RedisL2>>,
}

impl Shard {
    /// Builds this shard's state from the shared parts.
    pub fn new(shared: &SharedParts) -> Shard {
        let c = &shared.config;
        let stages = Rc::new(StageTimes::default());
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
            },
            stages.clone(),
        ));
        let mut inner: Rc<dyn Source> = Rc::new(live);
        let mut redis_client = None;
        let mut redis_layer = None;
        if let Some(rc) = &c.redis {
            match redis::client(rc) {
                Ok(client) => {
                    let l2 = Rc::new(RedisL2::new(
                        client.clone(),
                        inner,
                        shared.issuers.clone(),
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
        let responder = Cached::with_l1(
            inner,
            Box::new(L1Cache::with_max_age(c.cache.l1_entries, c.cache.l1_max_age_secs.unwrap_or(0))),
            c.cache.max_inflight_per_shard,
        );
        if let (Some(client), Some(rc)) = (redis_client, &c.redis) {
            glommio::spawn_local(connect_and_track(
                client,
                rc.clone(),
                shared.issuers.clone(),
                responder.clone(),
            ))
            .detach();
        }
        Shard {
            issuers: shared.issuers.clone(),
            responder,
            limits: Limits {
                max_uri_bytes: c.limits.max_uri_bytes,
                max_header_bytes: c.limits.max_header_bytes,
                max_body_bytes: c.limits.max_body_bytes,
            },
            max_cert_ids: c.limits.max_cert_ids,
            prefix: c.path_prefix.clone(),
            header_timeout: Duration::from_millis(c.limits.header_timeout_ms),
            idle_timeout: Duration::from_millis(c.limits.idle_timeout_ms),
            write_timeout: Duration::from_millis(c.limits.write_timeout_ms),
            date: RefCell::new(DateCache::default()),
            stats: ShardStats::default(),
            stages,
            cache_status_header: c.response.cache_status_header,
            redis: redis_layer,
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
            ("responses_http_error", s.http_errors.get()),
            ("l1_hits", c.hits.get()),
            ("l1_stale_hits", c.stale_hits.get()),
            ("l1_misses", c.misses.get()),
            ("l1_coalesced", c.coalesced.get()),
            ("l1_overloaded", c.overloaded.get()),
            ("l1_revalidations", c.revalidations.get()),
        ];
        if let Some(r) = &self.redis {
            counters.extend([
                ("redis_hits", r.stats.hits.get()),
                ("redis_misses", r.stats.misses.get()),
                ("redis_errors", r.stats.errors.get()),
                ("redis_refused_writes", r.stats.refused_writes.get()),
            ]);
        }
        crate::metrics::ShardSnapshot {
            counters,
            l1_entries: self.responder.l1_len() as u64,
            stages: self.stages.snapshot(),
        }
    }
}

/// Connects this shard's Redis client and keeps its L1 coherent: client
/// tracking (broadcast, for the key prefix) is enabled on every (re)connect,
/// and every reconnect clears L1, since invalidations may have been missed.
async fn connect_and_track(
    client: fred::prelude::Client,
    rc: RedisConfig,
    issuers: Arc<Issuers>,
    cached: Cached,
) {
    use fred::prelude::*;
    let _task = client.connect();
    let connected = glommio::timer::timeout(Duration::from_millis(rc.connect_timeout_ms), async {
        Ok(client.wait_for_connect().await)
    })
    .await;
    if !matches!(connected, Ok(Ok(()))) {
        log::warn!(
            "redis not reachable yet; answering from L1 and live signing, reconnecting in the background"
        );
    }
    let track = {
        let client = client.clone();
        let prefix = redis::change_prefix(&rc.key_prefix);
        move || {
            let (client, prefix) = (client.clone(), prefix.clone());
            async move {
                // Broadcast mode only reports writes made on the node the
                // connection tracks, and fred sends it to one node of a
                // cluster, so a cluster gets it on every primary here.
                if client.is_clustered() {
                    let nodes =
                        client.cached_cluster_state().map(|s| s.unique_primary_nodes()).unwrap_or_default();
                    for node in nodes {
                        let r: Result<fred::types::Value, _> = client
                            .with_cluster_node(node.clone())
                            .client_tracking("ON", None, vec![prefix.clone()], true, false, false, true)
                            .await;
                        if let Err(e) = r {
                            log::warn!("redis client tracking on {node}: {e}");
                        }
                    }
                } else if let Err(e) = client.start_tracking(vec![prefix], true, false, false, true).await {
                    log::warn!("redis client tracking: {e}");
                }
            }
        }
    };
    if !rc.tracking {
        return;
    }
    track().await;
    let on_change = {
        let cached = cached.clone();
        let track = track.clone();
        move |id: Option<crate::ocsp::CertId>| match id {
            Some(id) => cached.invalidate(&redis::l1_key(id)),
            None => {
                cached.invalidate_all();
                glommio::spawn_local(track()).detach();
            }
        }
    };
    redis::invalidation_loop(client, issuers, rc.key_prefix.clone(), on_change).await;
}

/// The shard's main loop: accept while under the connection cap, one task per
/// connection.
pub async fn run(fd: RawFd, index: usize, shared: Arc<SharedParts>) {
    // fred's timers need a tokio context on this thread for the shard's life.
    let _timers = shared.timers.as_ref().map(|h| h.enter());
    // SAFETY: `fd` is a listening socket created by `listener::bind_all` whose
    // ownership was handed to exactly this shard.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let shard = Rc::new(Shard::new(&shared));
    // Publish metrics once a second for the admin thread.
    {
        let (shard, shared) = (shard.clone(), shared.clone());
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let snap = shard.snapshot();
                if let Some(Ok(mut slot)) = shared.board.get(index).map(|m| m.lock()) {
                    *slot = snap;
                }
            }
        })
        .detach();
    }
    let permits = Rc::new(Semaphore::new(shared.config.limits.max_connections_per_shard as u64));
    loop {
        let Ok(permit) = permits.acquire_static_permit(1).await else { return };
        match listener.accept().await {
            Ok(stream) => {
                shard.stats.connections.set(shard.stats.connections.get() + 1);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    super::conn::serve(&shard, stream).await;
                    drop(permit);
                })
                .detach();
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning; the
                // connection stays in the backlog.
                log::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
