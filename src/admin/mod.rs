//! The admin listener: metrics, histogram exports, reload and revocation on
//! an address of their own (`[admin] listen`, loopback by default), so they
//! never compete with OCSP traffic on the shards and are never reachable
//! where OCSP is.
//!
//! | call | does | who may call it |
//! |---|---|---|
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) | loopback callers of a loopback listener; everyone else with the token |
//! | `GET /histograms/{stage}.hgrm` | HdrHistogram percentile text | same |
//! | `POST /reload` | [`Control::reload`](crate::control::Control::reload): 200 with its summary, else 500 (409 while shutting down) | the token, always |
//! | `POST /revoke` | `issuer=NAME&serial=HEX&reason=NAME[&at=TIME]` (form body or query): the status-change workflow ([`crate::ops::change`]: the database, Redis tombstones, this node's floor and shards); 200 once the database has it | the token, always; 409 without `[mysql]` |
//!
//! **Access.** The token is `Authorization: Bearer <token>`, read from
//! `admin.token_file`, kept only as its SHA-256 and compared in constant
//! time. Mutating calls always need it: without `token_file` they answer 403
//! (and say to set it); a missing or wrong token is 401 with
//! `WWW-Authenticate: Bearer`. Reads are open only when both the listener and
//! the caller are on loopback; a listener on any other address (config
//! validation refuses one without `token_file`) or a caller from a
//! non-loopback address needs the token for everything, and without it gets
//! 401 for every path, existing or not.
//!
//! **Bounds.** One request per connection (`Connection: close`); its head
//! (8 KiB, 2 KiB request line) and body (4 KiB) must arrive within
//! [`REQUEST_DEADLINE`] of the connection; writes time out after as long;
//! [`MAX_CONNECTIONS`] are served at once, on their own threads, and past it a
//! connection gets 503 at once. So a slow or hostile caller can hold at most
//! one slot for a few seconds, and a revocation in progress never blocks a
//! metrics scrape.
//!
//! Files: [`access`] (the policy), [`http`] (reading a request, writing an
//! answer, forms), [`routes`] (what each path does), [`state`] (what the
//! listener reads: the node's parts and a snapshot of its figures); this file
//! runs the listener and its connection threads.
//!
//! **Secrets.** Answers and log lines carry no secret: database errors come
//! redacted from [`crate::ops::db`], and every error text passes through
//! [`crate::config::redact`] once more before it leaves.

mod access;
mod http;
mod routes;
mod state;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use access::{Access, Verdict};
use http::{read_request, Reply};
pub use state::{AdminState, View};

use crate::config::is_loopback;
use crate::error::{disposition, Failure};
use crate::http::parse::Limits;

/// Connections served at once; past it a new one gets 503 at once.
pub const MAX_CONNECTIONS: usize = 8;
/// A request must arrive within this of its connection; writes time out after as long.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Request line, head and body limits (a revocation form is ~100 bytes).
const LIMITS: Limits = Limits { max_uri_bytes: 2048, max_header_bytes: 8192, max_body_bytes: 4096 };

/// Everything a handler needs, shared by the connection threads.
struct State {
    src: AdminState,
    access: Access,
    active: AtomicUsize,
}

/// Binds the admin listener and serves it on its own threads. The access
/// rules come from the config in `src` (`admin.token_file`) and the bound
/// address.
pub fn serve(addr: SocketAddr, src: AdminState) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let access =
        Access { loopback_listener: is_loopback(bound.ip()), token: src.view().config.admin_token.clone() };
    let state = Arc::new(State { src, access, active: AtomicUsize::new(0) });
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_write_timeout(Some(REQUEST_DEADLINE));
            if state.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                state.active.fetch_sub(1, Ordering::SeqCst);
                Reply::text(503, "too many admin connections; retry").write_to(&mut c);
                continue;
            }
            let st = state.clone();
            let spawned = std::thread::Builder::new().name("admin-conn".into()).spawn(move || {
                // Released on return and on unwind alike.
                struct Slot<'a>(&'a AtomicUsize);
                impl Drop for Slot<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _slot = Slot(&st.active);
                handle(&st, c);
            });
            if spawned.is_err() {
                // The thread never ran, so its slot is released here.
                state.active.fetch_sub(1, Ordering::SeqCst);
                log::warn!("admin: cannot start a connection thread");
            }
        }
    })?;
    Ok(bound)
}

/// Serves one connection: one request, one answer, close.
fn handle(state: &State, mut c: TcpStream) {
    let start = Instant::now();
    let Ok(peer) = c.peer_addr() else { return };
    let reply = match read_request(&mut c, start) {
        Ok(Some(req)) => routes::route(state, &req, peer),
        Ok(None) => return,
        Err(e) => {
            let (code, reason) = disposition(&Failure::Http(e)).http;
            Reply::text(code, reason)
        }
    };
    reply.write_to(&mut c);
}
