//! A shard's accept loop: accept while under the connection cap, one task per
//! connection ([`super::conn`]), the control-plane commands applied as they
//! come, metrics published once a second; on drain, stop accepting and let
//! connections finish within `limits.drain_timeout_ms`.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use super::generation::{Generation, ShardParts};
use super::shard::Shard;
use crate::control::Control;

/// The shard's main loop: accept while under the connection cap, one task per
/// connection, until the control plane says drain; then stop accepting (the
/// listener closes), let connections finish what they have (each closes after
/// its current answers, idle ones at once), and return when they are done or
/// `limits.drain_timeout_ms` has passed.
pub(super) async fn run(fd: OwnedFd, index: usize, shared: Arc<ShardParts>, control: Arc<Control>) {
    // fred's timers need a tokio context on this thread for the shard's life.
    let timers = shared.timers.clone();
    let _timers = timers.as_ref().map(|h| h.enter());
    // SAFETY: `fd` is a listening socket created by `listener::bind_all`,
    // owned by this shard alone; `into_raw_fd` hands that ownership on.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
    let shard = Rc::new(Shard::new(Generation::new(&shared)));
    // What the loop needs beyond the first generation, which is dropped here
    // so a reload can retire it completely.
    let board = shared.board.clone();
    let max_conns = shared.config.limits.max_connections_per_shard as u64;
    let grace = Duration::from_millis(shared.config.limits.drain_timeout_ms);
    drop(shared);
    let commands = control.register();
    if control.is_draining() {
        shard.start_drain(); // a SIGTERM that came before this shard registered
    }
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Ok(env) = commands.recv_async().await {
                shard.apply(env.command);
                let _ = env.ack.send(());
            }
        })
        .detach();
    }
    // Publish metrics once a second for the admin thread.
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let snap = shard.current().snapshot();
                if let Some(Ok(mut published)) = board.get(index).map(|m| m.lock()) {
                    *published = snap;
                }
            }
        })
        .detach();
    }
    let permits = Rc::new(Semaphore::new(max_conns));
    loop {
        let permit = or(async { permits.acquire_static_permit(1).await.ok() }, async {
            shard.drained().await;
            None
        })
        .await;
        let Some(permit) = permit else { break };
        let accepted = or(async { Some(listener.accept().await) }, async {
            shard.drained().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let stats = shard.current().stats.clone();
                stats.connections.set(stats.connections.get() + 1);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    super::conn::serve(&shard, stream).await;
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
