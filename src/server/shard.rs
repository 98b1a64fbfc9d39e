//! One shard: the accept loop and the state every connection on this core shares.

use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use crate::cache::l1::L1Cache;
use crate::config::Config;
use crate::control::{Command, Control};
use crate::feed::Fence;
use crate::http::parse::Limits;
use crate::http::response::DateCache;
use crate::issuer::Issuers;
use crate::metrics::StageTimes;
use crate::signer::SignPool;
use crate::source::admission::Admission;
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
    /// The node's revision floors, raised by the change feed.
    pub floors: Arc<crate::feed::Floors>,
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

/// Everything a connection on this shard uses: one generation of the
/// request-path state. A reload builds the next generation and swaps it into
/// the shard's [`Slot`]; the counters, stage histograms and the L1 (emptied)
/// carry over.
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
    pub stats: Rc<ShardStats>,
    /// Per-stage times (request, parse, L1, Redis, DB), shared with the
    /// sources that time their own stages.
    pub stages: Rc<StageTimes>,
    /// Send `X-Cache-Status` on 200/304 answers (`response.cache_status_header`).
    pub cache_status_header: bool,
    /// The Redis layer, for its counters.
    pub redis: Option<Rc<RedisL2>>,
    /// This generation's Redis client and the task keeping L1 coherent with
    /// it; stopped when a reload retires the generation.
    redis_conn: Option<(fred::prelude::Client, glommio::task::JoinHandle<()>)>,
}

impl Shard {
    /// Builds this shard's first generation from the shared parts.
    pub fn new(shared: &SharedParts) -> Shard {
        Shard::build(shared, None)
    }

    /// Builds a generation; with `prev`, the counters, stage times and the
    /// cache layer are taken over from it (the cache is emptied: what it holds
    /// was made with the old issuers and statuses).
    fn build(shared: &SharedParts, prev: Option<&Shard>) -> Shard {
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
            },
            stages.clone(),
            fence.clone(),
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
        let redis_conn = match (redis_client, &c.redis) {
            (Some(client), Some(rc)) => {
                let task = glommio::spawn_local(connect_and_track(
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
        Shard {
            issuers: shared.issuers.clone(),
            responder,
            limits: c.limits.http(),
            max_cert_ids: c.limits.max_cert_ids,
            prefix: c.path_prefix.clone(),
            header_timeout: Duration::from_millis(c.limits.header_timeout_ms),
            idle_timeout: Duration::from_millis(c.limits.idle_timeout_ms),
            write_timeout: Duration::from_millis(c.limits.write_timeout_ms),
            date: RefCell::new(DateCache::default()),
            stats: prev.map(|p| p.stats.clone()).unwrap_or_default(),
            stages,
            cache_status_header: c.response.cache_status_header,
            redis: redis_layer,
            redis_conn,
        }
    }

    /// Stops what this generation runs in the background: its invalidation
    /// task (the next generation has its own, which knows the new issuers) and
    /// its Redis connection, once requests still using it are done with it.
    fn retire(&self) {
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
            ("responses_http_error", s.http_errors.get()),
            ("l1_hits", c.hits.get()),
            ("l1_stale_hits", c.stale_hits.get()),
            ("l1_misses", c.misses.get()),
            ("l1_coalesced", c.coalesced.get()),
            ("l1_overloaded", c.overloaded.get()),
            ("l1_revalidations", c.revalidations.get()),
            ("l1_shed_lag", c.shed_lag.get()),
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
    // Whatever this shard's L1 took from Redis before tracking was on (at
    // start, or since a reload retired the previous generation's connection)
    // may have missed an invalidation: drop it.
    cached.invalidate_all();
    let on_change = {
        let cached = cached.clone();
        let track = track.clone();
        move |id: Option<crate::ocsp::CertId>| match id {
            Some(id) => cached.invalidate_cert(id.issuer, &id.serial),
            None => {
                cached.invalidate_all();
                glommio::spawn_local(track()).detach();
            }
        }
    };
    redis::invalidation_loop(client, issuers, rc.key_prefix.clone(), on_change).await;
}

/// A shard's current [`Shard`] generation and its drain signal. Connections
/// take the current generation per batch of requests, so a reload applies to
/// open connections from their next request without closing them.
pub struct Slot {
    current: RefCell<Rc<Shard>>,
    /// Never has permits; closed when the shard starts draining, which wakes
    /// every task waiting in [`Slot::drained`] at once.
    drain: Semaphore,
    draining: Cell<bool>,
}

impl Slot {
    fn new(shard: Shard) -> Slot {
        Slot { current: RefCell::new(Rc::new(shard)), drain: Semaphore::new(0), draining: Cell::new(false) }
    }

    /// The generation to answer the next request with.
    pub fn current(&self) -> Rc<Shard> {
        self.current.borrow().clone()
    }

    /// True once the shard drains: answers say `Connection: close`.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves when the shard starts draining.
    pub async fn drained(&self) {
        // Nothing ever releases a permit: this returns only with the close.
        let _ = self.drain.acquire(1).await;
    }

    fn start_drain(&self) {
        if !self.draining.replace(true) {
            self.drain.close();
        }
    }

    /// Applies one control-plane command on this thread.
    fn apply(&self, command: Command) {
        match command {
            Command::Drain => self.start_drain(),
            Command::Reload(state) => match state.downcast::<SharedParts>() {
                Ok(parts) => {
                    let old = self.current();
                    let next = Rc::new(Shard::build(&parts, Some(&old)));
                    old.retire();
                    *self.current.borrow_mut() = next;
                }
                Err(_) => log::error!("reload: unexpected state type; nothing changed"),
            },
            Command::Invalidate { issuer, serial } => {
                let shard = self.current();
                if let Some(issuer) = shard.issuers.by_name(&issuer) {
                    shard.responder.invalidate_cert(issuer, &serial);
                }
            }
            Command::InvalidateMany { issuer, serials } => {
                let shard = self.current();
                if let Some(issuer) = shard.issuers.by_name(&issuer) {
                    for serial in serials.iter() {
                        shard.responder.invalidate_cert(issuer, serial);
                    }
                }
            }
            Command::InvalidateAll => self.current().responder.invalidate_all(),
        }
    }
}

/// The shard's main loop: accept while under the connection cap, one task per
/// connection, until the control plane says drain; then stop accepting (the
/// listener closes), let connections finish what they have (each closes after
/// its current answers, idle ones at once), and return when they are done or
/// `limits.drain_timeout_ms` has passed.
pub async fn run(fd: RawFd, index: usize, shared: Arc<SharedParts>, control: Arc<Control>) {
    // fred's timers need a tokio context on this thread for the shard's life.
    let timers = shared.timers.clone();
    let _timers = timers.as_ref().map(|h| h.enter());
    // SAFETY: `fd` is a listening socket created by `listener::bind_all` whose
    // ownership was handed to exactly this shard.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let slot = Rc::new(Slot::new(Shard::new(&shared)));
    // What the loop needs beyond the first generation, which is dropped here
    // so a reload can retire it completely.
    let board = shared.board.clone();
    let max_conns = shared.config.limits.max_connections_per_shard as u64;
    let grace = Duration::from_millis(shared.config.limits.drain_timeout_ms);
    drop(shared);
    let commands = control.register();
    if control.is_draining() {
        slot.start_drain(); // a SIGTERM that came before this shard registered
    }
    {
        let slot = slot.clone();
        glommio::spawn_local(async move {
            while let Ok(env) = commands.recv_async().await {
                slot.apply(env.command);
                let _ = env.ack.send(());
            }
        })
        .detach();
    }
    // Publish metrics once a second for the admin thread.
    {
        let slot = slot.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let snap = slot.current().snapshot();
                if let Some(Ok(mut slot)) = board.get(index).map(|m| m.lock()) {
                    *slot = snap;
                }
            }
        })
        .detach();
    }
    let permits = Rc::new(Semaphore::new(max_conns));
    loop {
        let permit = or(async { permits.acquire_static_permit(1).await.ok() }, async {
            slot.drained().await;
            None
        })
        .await;
        let Some(permit) = permit else { break };
        let accepted = or(async { Some(listener.accept().await) }, async {
            slot.drained().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let shard = slot.current();
                shard.stats.connections.set(shard.stats.connections.get() + 1);
                let slot = slot.clone();
                glommio::spawn_local(async move {
                    super::conn::serve(&slot, stream).await;
                    drop(permit);
                })
                .detach();
            }
            Some(Err(e)) => {
                // EMFILE/ENFILE and friends: back off instead of spinning; the
                // connection stays in the backlog.
                log::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Closing the listener refuses new connections on this shard's socket;
    // load balancers and clients retry elsewhere.
    drop(listener);
    let open = max_conns - permits.available();
    if open > 0 {
        log::info!("shard {index}: draining {open} connection(s), up to {} ms", grace.as_millis());
    }
    match glommio::timer::timeout(grace, async { Ok(permits.acquire(max_conns).await) }).await {
        Ok(_) => log::debug!("shard {index}: drained"),
        Err(_) => log::warn!(
            "shard {index}: {} connection(s) still open after {} ms; closing them",
            max_conns - permits.available(),
            grace.as_millis()
        ),
    }
}
