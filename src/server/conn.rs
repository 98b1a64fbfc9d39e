//! One HTTP/1.1 connection: read, parse every complete request in the buffer
//! (pipelining), answer in order, write once per batch.
//!
//! Bounds: the read buffer never holds more than one incomplete request, which
//! the parser caps at `max_header_bytes + max_body_bytes`; a request must
//! arrive within `header_timeout` of its first byte (else 408 and close — a
//! slowloris cannot hold a connection); an idle connection closes after
//! `idle_timeout`; a stuck write after `write_timeout`.
//!
//! Draining (SIGTERM): answers already buffered are sent with
//! `Connection: close` and the connection closes after them; an idle
//! connection closes at once; one whose request is half-read gets the rest of
//! its header timeout.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::shard::{Shard, Slot};
use crate::clock::unix_now;
use crate::error::{disposition, Failure, HttpError};
use crate::http::get_path::{self, Route};
use crate::http::parse::{parse_head, Head, Method, Parsed};
use crate::http::response::{self, ConnHeader};
use crate::metrics::Stage;
use crate::source::cached::Served;
use crate::source::filter;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;

/// Per-connection output and scratch buffers, reused across requests.
struct Buffers {
    output: Vec<u8>,
    scratch: Vec<u8>,
    der: Vec<u8>,
}

/// Serves one connection to completion.
pub(super) async fn serve(slot: &Slot, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut b = Buffers { output: Vec::with_capacity(READ_CHUNK), scratch: Vec::new(), der: Vec::new() };
    // When the first byte of the request being assembled arrived.
    let mut request_started: Option<Instant> = None;
    loop {
        let closing = slot.is_draining();
        // Answer every complete request already buffered.
        let mut consumed = 0;
        let mut close = false;
        let mut refused = false;
        loop {
            let pending = &input[consumed..];
            if pending.is_empty() {
                break;
            }
            // The generation for this request, taken per request: a request
            // is admitted against the issuers of the generation whose cache
            // and sources answer it (admission and the L1 lookup happen
            // without a yield in between, so a reload cannot fall between).
            let shard = &*slot.current();
            match parse_head(pending, &shard.limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Complete(head)) => {
                    let total = head.head_len + head.content_length;
                    if pending.len() < total {
                        break; // body still arriving
                    }
                    let keep =
                        answer(shard, &input[consumed..consumed + total], &head, &mut b, closing).await;
                    consumed += total;
                    request_started = None;
                    if !keep {
                        close = true;
                        break;
                    }
                }
                Err(e) => {
                    write_http_failure(shard, e, &mut b.output);
                    close = true;
                    refused = true;
                    break;
                }
            }
        }
        input.drain(..consumed);
        // Only copies of the settings are kept across the writes and reads
        // below: an idle connection must not keep a retired generation (its
        // HSM sessions, its database pool) alive.
        let (write_timeout, idle_timeout, header_timeout) = {
            let s = slot.current();
            (s.write_timeout, s.idle_timeout, s.header_timeout)
        };
        if !b.output.is_empty() {
            let _ = stream.set_write_timeout(Some(write_timeout));
            if stream.write_all(&b.output).await.is_err() {
                return;
            }
            b.output.clear();
        }
        if refused {
            linger_close(stream).await;
            return;
        }
        if close || (closing && input.is_empty()) {
            let _ = stream.close().await;
            return;
        }

        // Read more, within the request deadline or the idle timeout.
        let timeout = if input.is_empty() {
            idle_timeout
        } else {
            let started = *request_started.get_or_insert_with(Instant::now);
            header_timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1))
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let filled = input.len();
        input.resize(filled + READ_CHUNK, 0);
        let read = async { Some(stream.read(&mut input[filled..]).await) };
        let read = if filled == 0 {
            // Idle between requests: a drain closes the connection now.
            futures_lite::future::or(read, async {
                slot.drained().await;
                None
            })
            .await
        } else {
            read.await
        };
        let Some(read) = read else {
            let _ = stream.close().await;
            return;
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                input.truncate(filled);
                if e.kind() == ErrorKind::TimedOut && filled > 0 {
                    write_http_failure(&slot.current(), HttpError::Timeout, &mut b.output);
                    let _ = stream.write_all(&b.output).await;
                }
                let _ = stream.close().await;
                return;
            }
        };
        input.truncate(filled + n);
        if n == 0 {
            return; // peer closed
        }
        if filled == 0 {
            request_started = Some(Instant::now());
        }
    }
}

/// How long, and how many bytes, a refused client's remaining input is read
/// and discarded before the connection closes.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 << 10;

/// Closes a connection whose request was refused mid-stream (413, 431, 400…):
/// the client may still be sending the body or headers we refused, and
/// closing with unread input makes the kernel send a reset, which can destroy
/// the answer in flight before the client has read it. So, like nginx's
/// lingering close: stop writing, read and discard for a bounded while
/// ([`LINGER_TIME`], at most [`LINGER_BYTES`]), then close.
async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; READ_CHUNK];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
    let _ = stream.close().await;
}

fn write_http_failure(shard: &Shard, e: HttpError, out: &mut Vec<u8>) {
    let now = unix_now();
    let d = disposition(&Failure::Http(e));
    shard.stats.http_errors.set(shard.stats.http_errors.get() + 1);
    shard.stats.requests.set(shard.stats.requests.get() + 1);
    let mut date = shard.date.borrow_mut();
    response::write_failure(out, &d, date.get(now), ConnHeader::Close, true);
}

/// Answers one complete request (`req` = head + body); returns whether the
/// connection stays open. Times the request, and L1 answers separately.
async fn answer(shard: &Shard, req: &[u8], head: &Head, b: &mut Buffers, closing: bool) -> bool {
    let started = Instant::now();
    let (keep, served) = answer_inner(shard, req, head, b, started, closing).await;
    let took = started.elapsed();
    shard.stages.record(Stage::Request, took);
    if matches!(served, Some(Served::Hit | Served::Stale)) {
        shard.stages.record(Stage::L1, took);
    }
    keep
}

/// Answers one request; also says how an OCSP answer was served (`None` for
/// failures and non-OCSP routes). `closing`: the shard drains, so this is the
/// connection's last batch.
async fn answer_inner(
    shard: &Shard,
    req: &[u8],
    head: &Head,
    b: &mut Buffers,
    started: Instant,
    closing: bool,
) -> (bool, Option<Served>) {
    let stats = &shard.stats;
    stats.requests.set(stats.requests.get() + 1);
    let keep_alive = head.keep_alive && !closing;
    let conn = match (keep_alive, head.minor_version) {
        (false, _) => ConnHeader::Close,
        (true, 0) => ConnHeader::KeepAlive,
        (true, _) => ConnHeader::Default,
    };
    let with_body = head.method != Method::Head;
    let target = &req[head.path.clone()];
    let der: &[u8] = match (head.method, get_path::route(target, &shard.prefix)) {
        (Method::Other, _) => {
            return (fail(shard, Failure::Http(HttpError::MethodNotAllowed), conn, with_body, b), None)
        }
        (_, Route::NotFound) => {
            return (fail(shard, Failure::Http(HttpError::NotFound), conn, with_body, b), None)
        }
        (Method::Get | Method::Head, Route::Health) => {
            let now = unix_now();
            let mut date = shard.date.borrow_mut();
            response::write_health(&mut b.output, date.get(now), conn, with_body, closing);
            return (keep_alive, None);
        }
        (Method::Get | Method::Head, Route::Ocsp(encoded)) => {
            if let Err(e) = get_path::decode(encoded, &mut b.scratch, &mut b.der) {
                return (fail(shard, Failure::Ocsp(e), conn, with_body, b), None);
            }
            &b.der
        }
        (Method::Post, _) => &req[head.head_len..],
    };
    let query = match filter::admit(der, &shard.issuers, shard.max_cert_ids) {
        Ok(q) => q,
        Err(e) => return (fail(shard, Failure::Ocsp(e), conn, with_body, b), None),
    };
    shard.stages.record(Stage::Parse, started.elapsed());
    match shard.responder.answer(query).await {
        Ok((resp, served)) => {
            let now = unix_now();
            let mut date = shard.date.borrow_mut();
            let cache_status = shard.cache_status_header.then(|| served.cache_status(&resp));
            let conditional = head.method != Method::Post
                && response::not_modified(&resp, head.if_none_match.clone().map(|r| &req[r]));
            if conditional {
                stats.not_modified.set(stats.not_modified.get() + 1);
                response::write_not_modified(&mut b.output, &resp, now, date.get(now), conn, cache_status);
            } else {
                stats.ok.set(stats.ok.get() + 1);
                response::write_ocsp(&mut b.output, &resp, now, date.get(now), conn, with_body, cache_status);
            }
            (keep_alive, Some(served))
        }
        Err(e) => (fail(shard, Failure::Ocsp(e), conn, with_body, b), None),
    }
}

fn fail(shard: &Shard, f: Failure, conn: ConnHeader, with_body: bool, b: &mut Buffers) -> bool {
    let d = disposition(&f);
    let stats = &shard.stats;
    match f {
        Failure::Http(_) => stats.http_errors.set(stats.http_errors.get() + 1),
        Failure::Ocsp(_) => stats.ocsp_errors.set(stats.ocsp_errors.get() + 1),
    }
    let now = unix_now();
    response::write_failure(&mut b.output, &d, shard.date.borrow_mut().get(now), conn, with_body);
    !d.close && conn != ConnHeader::Close
}
