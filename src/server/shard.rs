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
use crate::signer::SignPool;
use crate::source::cached::Cached;
use crate::source::live::{Live, LivePolicy};
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
}

impl Shard {
    /// Builds this shard's state from the shared parts.
    pub fn new(shared: &SharedParts) -> Shard {
        let c = &shared.config;
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
        ));
        let inner: Rc<dyn Source> = Rc::new(live);
        Shard {
            issuers: shared.issuers.clone(),
            responder: Cached::with_l1(
                inner,
                Box::new(L1Cache::with_max_age(c.cache.l1_entries, c.cache.l1_max_age_secs.unwrap_or(0))),
                c.cache.max_inflight_per_shard,
            ),
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
        }
    }
}

/// The shard's main loop: accept while under the connection cap, one task per
/// connection.
pub async fn run(fd: RawFd, shared: Arc<SharedParts>) {
    // SAFETY: `fd` is a listening socket created by `listener::bind_all` whose
    // ownership was handed to exactly this shard.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let shard = Rc::new(Shard::new(&shared));
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
