//! Keeping a shard's L1 coherent with Redis: RESP3 client tracking in
//! broadcast mode for the change-key prefix, enabled on every (re)connect, and
//! the loop that turns each invalidation into an L1 drop (a reconnect empties
//! L1: invalidations may have been missed).

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;

use super::keys::{certids_of_change, change_prefix};
use crate::config::RedisConfig;
use crate::ocsp::issuer::Issuers;
use crate::ocsp::CertId;
use crate::source::l1::Cached;

/// Runs the invalidation loop of one shard: every certificate whose change key
/// Redis reports modified is dropped from this shard's L1 (all hash-algorithm
/// variants). On a reconnect, invalidations may have been missed, so the whole
/// L1 is cleared.
pub async fn invalidation_loop(
    client: Client,
    issuers: Arc<Issuers>,
    prefix: String,
    drop_key: impl Fn(Option<CertId>) + 'static,
) {
    // Invalidations name change keys; each drops every hash-algorithm variant.
    let rx = client.invalidation_rx();
    let reconnects = client.reconnect_rx();
    loop {
        let inv = futures_lite::future::or(async { rx.recv().await.ok().map(Some) }, async {
            reconnects.recv().await.ok().map(|_| None)
        })
        .await;
        match inv {
            Some(Some(inv)) => {
                for k in inv.keys {
                    for id in certids_of_change(&prefix, &issuers, k.as_bytes()).unwrap_or_default() {
                        drop_key(Some(id));
                    }
                }
            }
            Some(None) => drop_key(None), // reconnected: forget everything
            None => return,               // client gone
        }
    }
}

/// Connects this shard's Redis client and keeps its L1 coherent: client
/// tracking (broadcast, for the key prefix) is enabled on every (re)connect,
/// and every reconnect clears L1, since invalidations may have been missed.
pub async fn connect_and_track(
    client: fred::prelude::Client,
    rc: RedisConfig,
    issuers: Arc<Issuers>,
    cached: Cached,
) {
    let _task = super::client::connect(&client).await;
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
        let prefix = change_prefix(&rc.key_prefix);
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
        move |id: Option<CertId>| match id {
            Some(id) => cached.invalidate_cert(id.issuer, &id.serial),
            None => {
                cached.invalidate_all();
                glommio::spawn_local(track()).detach();
            }
        }
    };
    invalidation_loop(client, issuers, rc.key_prefix.clone(), on_change).await;
}
