//! One request, once its bytes are complete: route → decode → admit →
//! answer → write into the connection's output buffer. Every failure goes
//! through the one mapping ([`crate::error::disposition`]).

use std::time::Instant;

use super::generation::Generation;
use crate::clock::unix_now;
use crate::error::{disposition, Failure, HttpError};
use crate::http::get_path::{self, Route};
use crate::http::parse::{Head, Method};
use crate::http::response::{self, ConnHeader};
use crate::metrics::Stage;
use crate::ocsp::response::ResponseStatus;
use crate::source::admission;
use crate::source::l1::Served;

/// Per-connection output and scratch buffers, reused across requests.
pub(super) struct Buffers {
    pub(super) output: Vec<u8>,
    scratch: Vec<u8>,
    der: Vec<u8>,
}

impl Buffers {
    pub(super) fn with_capacity(output: usize) -> Buffers {
        Buffers { output: Vec::with_capacity(output), scratch: Vec::new(), der: Vec::new() }
    }
}

pub(super) fn write_http_failure(gen: &Generation, e: HttpError, out: &mut Vec<u8>) {
    let now = unix_now();
    let d = disposition(&Failure::Http(e));
    gen.stats.http_errors.set(gen.stats.http_errors.get() + 1);
    gen.stats.requests.set(gen.stats.requests.get() + 1);
    let mut date = gen.date.borrow_mut();
    response::write_failure(out, &d, date.get(now), ConnHeader::Close, true);
}

/// Answers one complete request (`req` = head + body); returns whether the
/// connection stays open. Times the request, and L1 answers separately.
pub(super) async fn answer(
    gen: &Generation,
    req: &[u8],
    head: &Head,
    b: &mut Buffers,
    closing: bool,
) -> bool {
    let started = Instant::now();
    let (keep, served) = answer_inner(gen, req, head, b, started, closing).await;
    let took = started.elapsed();
    gen.stages.record(Stage::Request, took);
    if matches!(served, Some(Served::Hit | Served::Stale)) {
        gen.stages.record(Stage::L1, took);
    }
    keep
}

/// Answers one request; also says how an OCSP answer was served (`None` for
/// failures and non-OCSP routes). `closing`: the shard drains, so this is the
/// connection's last batch.
async fn answer_inner(
    gen: &Generation,
    req: &[u8],
    head: &Head,
    b: &mut Buffers,
    started: Instant,
    closing: bool,
) -> (bool, Option<Served>) {
    let stats = &gen.stats;
    stats.requests.set(stats.requests.get() + 1);
    let keep_alive = head.keep_alive && !closing;
    let conn = match (keep_alive, head.minor_version) {
        (false, _) => ConnHeader::Close,
        (true, 0) => ConnHeader::KeepAlive,
        (true, _) => ConnHeader::Default,
    };
    let with_body = head.method != Method::Head;
    let target = &req[head.path.clone()];
    let der: &[u8] = match (head.method, get_path::route(target, &gen.prefix)) {
        (Method::Other, _) => {
            return (fail(gen, Failure::Http(HttpError::MethodNotAllowed), conn, with_body, b), None)
        }
        (_, Route::NotFound) => {
            return (fail(gen, Failure::Http(HttpError::NotFound), conn, with_body, b), None)
        }
        (Method::Get | Method::Head, Route::Health) => {
            let now = unix_now();
            let mut date = gen.date.borrow_mut();
            response::write_health(&mut b.output, date.get(now), conn, with_body, closing);
            return (keep_alive, None);
        }
        (Method::Get | Method::Head, Route::Ocsp(encoded)) => {
            if let Err(e) = get_path::decode(encoded, &mut b.scratch, &mut b.der) {
                return (fail(gen, Failure::Ocsp(e), conn, with_body, b), None);
            }
            &b.der
        }
        (Method::Post, _) => &req[head.head_len..],
    };
    let query = match admission::admit(der, &gen.issuers, &gen.admission) {
        Ok(q) => q,
        Err(e) => return (fail(gen, Failure::Ocsp(e), conn, with_body, b), None),
    };
    gen.stages.record(Stage::Parse, started.elapsed());
    match gen.responder.answer(query).await {
        Ok((resp, served)) => {
            let now = unix_now();
            let mut date = gen.date.borrow_mut();
            let cache_status = gen.cache_status_header.then(|| served.cache_status(&resp));
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
        Err(e) => (fail(gen, Failure::Ocsp(e), conn, with_body, b), None),
    }
}

fn fail(gen: &Generation, f: Failure, conn: ConnHeader, with_body: bool, b: &mut Buffers) -> bool {
    let d = disposition(&f);
    let stats = &gen.stats;
    match f {
        Failure::Http(_) => stats.http_errors.set(stats.http_errors.get() + 1),
        Failure::Ocsp(_) => stats.ocsp_errors.set(stats.ocsp_errors.get() + 1),
    }
    if d.ocsp == Some(ResponseStatus::TryLater) {
        stats.try_later.set(stats.try_later.get() + 1);
    }
    let now = unix_now();
    response::write_failure(&mut b.output, &d, gen.date.borrow_mut().get(now), conn, with_body);
    !d.close && conn != ConnHeader::Close
}
