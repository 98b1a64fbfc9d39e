//! One HTTP/1.1 connection, as bytes: read, find every complete request in
//! the buffer (pipelining), have [`super::handler`] answer each in order,
//! write once per batch; timeouts and the lingering close live here.
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

use super::handler::{self, Buffers};
use super::shard::Shard;
use crate::error::HttpError;
use crate::http::parse::{parse_head, Parsed};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;

/// Serves one connection to completion.
pub(super) async fn serve(shard: &Shard, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut b = Buffers::with_capacity(READ_CHUNK);
    // When the first byte of the request being assembled arrived.
    let mut request_started: Option<Instant> = None;
    loop {
        let closing = shard.is_draining();
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
            let gen = &*shard.current();
            match parse_head(pending, &gen.limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Complete(head)) => {
                    let total = head.head_len + head.content_length;
                    if pending.len() < total {
                        break; // body still arriving
                    }
                    let keep =
                        handler::answer(gen, &input[consumed..consumed + total], &head, &mut b, closing)
                            .await;
                    consumed += total;
                    request_started = None;
                    if !keep {
                        close = true;
                        break;
                    }
                }
                Err(e) => {
                    handler::write_http_failure(gen, e, &mut b.output);
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
            let s = shard.current();
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
                shard.drained().await;
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
                    handler::write_http_failure(&shard.current(), HttpError::Timeout, &mut b.output);
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
