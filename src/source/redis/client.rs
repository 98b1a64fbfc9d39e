//! Building a shard's Redis client (not yet connected), and what fred needs
//! from its surroundings to run on a glommio shard without blocking it.
//!
//! fred 10.1's `glommio` build still calls `tokio::time::timeout` for connect
//! and command timeouts, which panics without a tokio reactor. [`TimerRuntime`]
//! is one small current-thread tokio runtime, on its own thread, whose only job
//! is to drive those timers; each shard enters its context for its whole life
//! (`Handle::enter`), so fred finds a timer driver and wake-ups come back to the
//! shard as ordinary cross-thread wakes.
//!
//! fred's glommio resolver calls the blocking `getaddrinfo` on the shard
//! itself at every (re)connect to a hostname, which stalls every connection on
//! that core for as long as DNS takes. [`ThreadResolver`] does each lookup on
//! a short-lived thread of its own and wakes the shard with the answer;
//! [`connect`] installs it before the client's first connection.

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::{Resolve, RespVersion};

use crate::config::{redact, RedisConfig};

/// The background tokio runtime that drives fred's timers (see module docs).
pub struct TimerRuntime {
    handle: tokio::runtime::Handle,
}

impl TimerRuntime {
    /// Starts the runtime thread.
    pub fn start() -> std::io::Result<TimerRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("fred-timers".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(TimerRuntime { handle })
    }

    /// Enters the runtime on this thread; keep the guard for the thread's life.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle.enter()
    }

    /// A clone of the handle (to enter from another thread).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

/// Builds a client from the config (not yet connected).
pub fn client(cfg: &RedisConfig) -> Result<Client, String> {
    let mut c = if cfg.cluster { Config::from_url_clustered(&cfg.url) } else { Config::from_url(&cfg.url) }
        .map_err(|e| format!("bad Redis URL: {}", redact(&e.to_string())))?;
    c.version = RespVersion::RESP3;
    if let Some(tls) = super::tls::config(cfg)? {
        c.tls = Some(tls);
    }
    // Commands fail at once while disconnected (a miss), instead of queueing.
    c.fail_fast = true;
    let mut b = Builder::from_config(c);
    b.with_connection_config(|cc| {
        cc.connection_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        cc.internal_command_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        cc.max_command_attempts = 1;
    })
    .with_performance_config(|p| {
        p.default_command_timeout = Duration::from_millis(cfg.command_timeout_ms);
    })
    .set_policy(ReconnectPolicy::new_exponential(0, 50, 2000, 2));
    b.build().map_err(|e| e.to_string())
}

/// Most lookups in flight at once, process-wide. A lookup past it waits for
/// a slot (every shard resolves at once at start and after a reload) up to
/// [`SLOT_WAIT`], then fails (fred retries with its backoff), so a hanging
/// DNS never piles up threads without bound.
pub const MAX_LOOKUPS: usize = 64;

/// How long a lookup waits for one of the [`MAX_LOOKUPS`] slots.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_LOOKUPS`] slots, given back on drop.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let mut n = LOOKUPS.load(Ordering::Acquire);
        loop {
            if n >= MAX_LOOKUPS {
                return None;
            }
            match LOOKUPS.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Slot),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LOOKUPS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hostname lookup, blocking; run off the shard by [`ThreadResolver`].
pub type Lookup = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// The system resolver (`getaddrinfo`, via `ToSocketAddrs`).
pub fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// fred's [`Resolve`] that never blocks the calling executor: an IP literal
/// is parsed in place; a hostname is looked up on a thread of its own.
#[derive(Debug, Clone, Copy)]
pub struct ThreadResolver {
    lookup: Lookup,
}

impl ThreadResolver {
    /// With the system resolver.
    pub fn new() -> ThreadResolver {
        ThreadResolver { lookup: system_lookup }
    }

    /// With another lookup (tests: a slow one).
    pub fn with_lookup(lookup: Lookup) -> ThreadResolver {
        ThreadResolver { lookup }
    }

    /// Resolves `host:port` without blocking this thread.
    pub async fn resolve_addrs(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let waited = std::time::Instant::now();
        let slot = loop {
            match Slot::take() {
                Some(slot) => break slot,
                None if waited.elapsed() >= SLOT_WAIT => {
                    return Err(std::io::Error::other(format!(
                        "{MAX_LOOKUPS} DNS lookups in flight for {SLOT_WAIT:?}"
                    )))
                }
                None => glommio::timer::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        let (tx, rx) = futures::channel::oneshot::channel();
        let (name, lookup) = (host.to_string(), self.lookup);
        // The slot goes with the thread and is given back when it ends,
        // however it ends (a panicking lookup included); if the thread
        // cannot start, the closure is dropped and the slot with it.
        std::thread::Builder::new().name("redis-dns".into()).spawn(move || {
            let _slot = slot;
            let _ = tx.send(lookup(&name, port));
        })?;
        let addrs = rx.await.map_err(|_| std::io::Error::other("DNS lookup thread ended"))??;
        if addrs.is_empty() {
            return Err(std::io::Error::other(format!("{host} has no address")));
        }
        Ok(addrs)
    }
}

impl Default for ThreadResolver {
    fn default() -> Self {
        ThreadResolver::new()
    }
}

#[async_trait::async_trait(?Send)]
impl Resolve for ThreadResolver {
    async fn resolve(&self, host: fred::bytes_utils::Str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        self.resolve_addrs(&host, port)
            .await
            .map_err(|e| Error::new(ErrorKind::IO, format!("cannot resolve {host}: {e}")))
    }
}

/// Installs [`ThreadResolver`] and starts the client's connection task (fred
/// reconnects in the background from then on). Every Redis client this
/// process connects goes through here.
pub async fn connect(client: &Client) -> fred::types::ConnectHandle {
    client.set_resolver(Rc::new(ThreadResolver::new())).await;
    client.connect()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use super::*;

    fn slow_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_millis(300));
        if host == "nowhere.invalid" {
            return Err(std::io::Error::other("no such host"));
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    /// A lookup that takes 300 ms leaves the executor free: a timer task
    /// keeps ticking every 10 ms meanwhile. Resolving on the executor's own
    /// thread (fred's glommio default) would stop it for the whole lookup.
    #[test]
    fn a_slow_lookup_does_not_block_the_executor() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let ticks = Rc::new(Cell::new(0u32));
            let longest = Rc::new(Cell::new(Duration::ZERO));
            let ticker = {
                let (ticks, longest) = (ticks.clone(), longest.clone());
                glommio::spawn_local(async move {
                    let mut last = Instant::now();
                    loop {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        longest.set(longest.get().max(last.elapsed()));
                        last = Instant::now();
                        ticks.set(ticks.get() + 1);
                    }
                })
                .detach()
            };
            let r = ThreadResolver::with_lookup(slow_lookup);
            let addrs = r.resolve_addrs("redis.example", 6380).await.unwrap();
            assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 6380))]);
            assert!(ticks.get() >= 15, "only {} ticks during a 300 ms lookup", ticks.get());
            assert!(longest.get() < Duration::from_millis(150), "the executor stalled {:?}", longest.get());
            let e = r.resolve_addrs("nowhere.invalid", 1).await.unwrap_err();
            assert!(e.to_string().contains("no such host"), "{e}");
            ticker.cancel();
        });
    }

    /// A lookup that panics gives its slot back: after more panicking
    /// lookups than there are slots, a good lookup still gets one.
    #[test]
    fn a_panicking_lookup_gives_its_slot_back() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            fn boom(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
                panic!("a resolver library bug")
            }
            let bad = ThreadResolver::with_lookup(boom);
            for _ in 0..=MAX_LOOKUPS {
                assert!(bad.resolve_addrs("x.example", 1).await.is_err());
            }
            let good = ThreadResolver::with_lookup(slow_lookup);
            assert!(good.resolve_addrs("redis.example", 2).await.is_ok());
        });
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            fn never(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
                panic!("looked up an IP literal")
            }
            let r = ThreadResolver::with_lookup(never);
            assert_eq!(
                r.resolve_addrs("127.0.0.1", 7).await.unwrap(),
                vec![SocketAddr::from(([127, 0, 0, 1], 7))]
            );
            assert_eq!(r.resolve_addrs("::1", 7).await.unwrap()[0].port(), 7);
        });
    }

    #[test]
    fn localhost_resolves() {
        crate::uring::raise_memlock(1 << 20).unwrap();
        let ex = glommio::LocalExecutorBuilder::default().io_memory(crate::uring::IO_MEMORY).make().unwrap();
        ex.run(async {
            let addrs = ThreadResolver::new().resolve_addrs("localhost", 6379).await.unwrap();
            assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 6379), "{addrs:?}");
        });
    }
}
