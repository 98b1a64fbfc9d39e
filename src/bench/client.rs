//! The generator threads: each runs a glommio executor with its share of the
//! connections, one task per connection. A connection sends one request at a
//! time (no pipelining, as an OCSP client or a CDN edge does) over HTTP/1.1
//! keep-alive, reads the answer, checks it, and records the latency under its
//! outcome.
//!
//! Open loop (`--rate`): every connection has a schedule of intended send
//! times (its share of the stage rate, phases spread over the connections);
//! latency is measured from the *intended* time, so a server that stalls is
//! charged for every request that should have been sent meanwhile
//! (coordinated-omission correction, as wrk2 does). Closed loop: send as soon
//! as the previous answer arrived; latency from the actual send.
//!
//! Several targets (nodes): connection i (over all threads) talks to target
//! i mod n for its whole life, so every target gets an even share of the
//! connections, and every thread reaches every target when each thread has
//! at least n connections (`--connections` ≥ `--threads` × targets).
//!
//! With a change book (the config has `[mysql]` and the feed exists), every
//! answer's status is judged against the certificate's history at the
//! instant its request was sent ([`super::changes`]); otherwise against the
//! status read at start.
//!
//! Behind a CDN (`Plan::cdn`): every answer is also counted by the CDN's
//! `X-Cache` header (served from its cache, or fetched from the origin, by
//! the origin's outcome), a CDN hit counts as a hit whatever origin header it
//! carries (the one stored with the object), and the warm-up's pass p sends
//! every warm serial in the p-th form the mix can draw (POST, each GET
//! spelling: each is its own CDN object).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::changes::{ChangeBook, Check};
use super::keyspace::{Keyspace, Rng, StageKeys, Zipf};
use super::request::{self, Form, Mix};
use super::results::{ByOutcome, CdnAnswers, Outcome, OUTCOMES};
use super::verify::{self, Examined, Verifier};
use crate::clock::unix_now;

/// One stage as the clients run it.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Offset from the run's start instant.
    pub start: Duration,
    /// Length.
    pub duration: Duration,
    /// Open loop: total requests/s over all connections.
    pub rate: Option<f64>,
    /// Which serials, by popularity rank.
    pub keys: Arc<StageKeys>,
}

/// Everything the generator threads share (read-only).
pub struct Plan {
    /// Certificates and issuers.
    pub keyspace: Arc<Keyspace>,
    /// Server addresses; connection i talks to `targets[i % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    /// `Host` header value per target.
    pub hosts: Vec<String>,
    /// Responder path prefix (`` or `/ocsp`).
    pub prefix: String,
    /// GET/POST and URL-quirk mix.
    pub mix: Mix,
    /// Popularity over a stage's keys.
    pub zipf: Arc<Zipf>,
    /// Passes over the warm set.
    pub warm_passes: usize,
    /// The longest the warm-up may take.
    pub warm_limit: Duration,
    /// Stages.
    pub stages: Vec<StagePlan>,
    /// Connections over all threads.
    pub connections: usize,
    /// Per-request answer timeout.
    pub timeout: Duration,
    /// Check every answer (off only for non-OCSP ceilings such as a static file).
    pub verify: bool,
    /// Interval length of the interval log.
    pub interval: Duration,
    /// Walk each stage's keys in order instead of by popularity, so no serial
    /// is asked for twice until the keys run out (a pure miss storm).
    pub sequential: bool,
    /// Generator threads (sequential walks interleave by thread).
    pub threads: usize,
    /// Histories of the certificates that changed during the run (when the
    /// change follower runs).
    pub changes: Option<Arc<ChangeBook>>,
    /// The targets are a CDN (`--cdn-purge`): answers are split by `X-Cache`
    /// and the warm-up walks every request form.
    pub cdn: bool,
}

/// What one target got from one thread over the measured stages.
#[derive(Clone, Debug, Default)]
pub struct TargetAcc {
    /// Requests sent.
    pub sent: u64,
    /// Per outcome.
    pub counts: [u64; OUTCOMES],
    /// Wrong answers.
    pub wrong: u64,
}

/// What one stage measured on one thread.
#[derive(Clone, Debug, Default)]
pub struct StageAcc {
    /// Latencies by outcome.
    pub by_outcome: ByOutcome,
    /// Requests sent.
    pub sent: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// Service time from the actual send, µs (see `StageResult::service_us`).
    pub service_us: Option<hdrhistogram::Histogram<u64>>,
    /// Behind a CDN: the answers by `X-Cache`.
    pub cdn: Option<Box<CdnAnswers>>,
}

/// What one thread measured.
#[derive(Debug, Default)]
pub struct ThreadResult {
    /// Per stage.
    pub stages: Vec<StageAcc>,
    /// The warm-up.
    pub warm: StageAcc,
    /// Warm-up requests answered, and how long the warm-up took.
    pub warm_elapsed: Duration,
    /// Per interval of the run (by receive time since the start instant).
    pub intervals: Vec<ByOutcome>,
    /// The first few wrong answers, for the operator.
    pub wrong_samples: Vec<String>,
    /// The first few errors (not wrong answers), for the operator.
    pub error_samples: Vec<String>,
    /// Full signature verifications made.
    pub full_checks: u64,
    /// Per target, over the measured stages.
    pub targets: Vec<TargetAcc>,
}

/// Per-thread state the connection tasks share.
struct Local {
    plan: Arc<Plan>,
    verifier: RefCell<Verifier>,
    result: RefCell<ThreadResult>,
    start: std::cell::Cell<Option<Instant>>,
    /// Connections still in the warm-up.
    warming: std::cell::Cell<usize>,
    /// This thread's index and its position in a sequential walk, per stage.
    thread: usize,
    walk: RefCell<Vec<usize>>,
}

impl Local {
    /// Records an answer; `x_cache`: the CDN's `X-Cache` (HIT: `Some(true)`).
    fn record(
        &self,
        stage: Option<usize>,
        target: usize,
        o: Outcome,
        x_cache: Option<bool>,
        latency: Duration,
        received: Instant,
    ) {
        let us = latency.as_micros() as u64;
        let mut r = self.result.borrow_mut();
        // A CDN hit carries the origin header stored with the object: it
        // cost the origin nothing.
        let o = match o {
            Outcome::HitL2 | Outcome::Miss if self.plan.cdn && x_cache == Some(true) => Outcome::Hit,
            o => o,
        };
        match stage {
            None => r.warm.by_outcome.record(o, us),
            Some(s) => {
                r.stages[s].by_outcome.record(o, us);
                if self.plan.cdn {
                    let c = r.stages[s].cdn.get_or_insert_with(Default::default);
                    c.record(x_cache, o, us);
                    if let Some(t0) = self.start.get() {
                        let since = received.saturating_duration_since(t0 + self.plan.stages[s].start);
                        c.count_second(since.as_secs() as usize, x_cache == Some(true));
                    }
                }
                if let Some(t) = r.targets.get_mut(target) {
                    t.counts[o.index()] += 1;
                }
                if let Some(t0) = self.start.get() {
                    let i = (received.saturating_duration_since(t0).as_secs_f64()
                        / self.plan.interval.as_secs_f64()) as usize;
                    while r.intervals.len() <= i {
                        r.intervals.push(ByOutcome::with_digits(2));
                    }
                    r.intervals[i].record(o, us);
                }
            }
        }
    }

    fn acc(&self, stage: Option<usize>, f: impl FnOnce(&mut StageAcc)) {
        let mut r = self.result.borrow_mut();
        match stage {
            None => f(&mut r.warm),
            Some(s) => f(&mut r.stages[s]),
        }
    }

    /// A request sent to `target` in `stage`.
    fn sent(&self, stage: Option<usize>, target: usize) {
        self.acc(stage, |a| a.sent += 1);
        if stage.is_some() {
            if let Some(t) = self.result.borrow_mut().targets.get_mut(target) {
                t.sent += 1;
            }
        }
    }

    fn error(&self, why: impl FnOnce() -> String) -> Outcome {
        let mut r = self.result.borrow_mut();
        if r.error_samples.len() < 5 {
            r.error_samples.push(why());
        }
        Outcome::Error
    }

    fn wrong(&self, stage: Option<usize>, target: usize, why: String) {
        self.acc(stage, |a| a.wrong += 1);
        let mut r = self.result.borrow_mut();
        if stage.is_some() {
            if let Some(t) = r.targets.get_mut(target) {
                t.wrong += 1;
            }
        }
        if r.wrong_samples.len() < 10 {
            r.wrong_samples.push(why);
        }
    }
}

/// A connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// An answer as read off the wire.
struct HttpAnswer {
    status: u16,
    cache: Option<Outcome>,
    /// The CDN's `X-Cache`: `Some(true)` for HIT, `Some(false)` otherwise.
    x_cache: Option<bool>,
    close: bool,
    body: std::ops::Range<usize>,
    total: usize,
}

/// Parses one whole response at the start of `buf`; `Ok(None)` = need more.
fn parse_answer(buf: &[u8]) -> Result<Option<HttpAnswer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP answer: {e}")),
    };
    let mut len = 0usize;
    let mut cache = None;
    let mut x_cache = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("bad Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("x-cache-status") {
            cache = Some(match h.value {
                b"MISS" => Outcome::Miss,
                b"HIT-L2" => Outcome::HitL2,
                _ => Outcome::Hit, // HIT, STALE, REVALIDATED
            });
        } else if h.name.eq_ignore_ascii_case("x-cache") {
            x_cache = Some(h.value.starts_with(b"HIT"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    if buf.len() < head_len + len {
        return Ok(None);
    }
    Ok(Some(HttpAnswer {
        status: resp.code.unwrap_or(0),
        cache,
        x_cache,
        close,
        body: head_len..head_len + len,
        total: head_len + len,
    }))
}

async fn connect(local: &Local, stage: Option<usize>, target: usize) -> Option<Conn> {
    let plan = &local.plan;
    let addr = plan.targets[target];
    match glommio::timer::timeout(plan.timeout, async {
        TcpStream::connect(addr).await.map_err(|e| glommio::GlommioError::IoError(e.into()))
    })
    .await
    {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(plan.timeout));
            let _ = stream.set_write_timeout(Some(plan.timeout));
            Some(Conn { stream, buf: Vec::with_capacity(4096) })
        }
        Err(_) => {
            local.acc(stage, |a| a.connect_errors += 1);
            None
        }
    }
}

/// Sends one request for entry `idx` to `target` (as `form`, or in a form
/// drawn from the mix) and classifies the answer. Returns the outcome,
/// whether the connection can be reused, and the CDN's `X-Cache`.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    local: &Local,
    stage: Option<usize>,
    target: usize,
    conn: &mut Conn,
    idx: u32,
    form: Option<Form>,
    rng: &mut Rng,
    out: &mut Vec<u8>,
    der: &mut Vec<u8>,
) -> (Outcome, bool, Option<bool>) {
    let plan = &local.plan;
    let entry = &plan.keyspace.entries[idx as usize];
    let issuer = &plan.keyspace.issuers[entry.issuer as usize];
    der.clear();
    request::ocsp_request(issuer, &entry.serial, der);
    out.clear();
    match form {
        Some(f) => request::http_request_as(&plan.hosts[target], &plan.prefix, der, f, out),
        None => request::http_request(&plan.hosts[target], &plan.prefix, der, plan.mix, rng, out),
    }
    // The request goes out after this instant: what the bound is measured to.
    let sent = Instant::now();
    if let Err(e) = conn.stream.write_all(out).await {
        return (local.error(|| format!("send: {e}")), false, None);
    }
    conn.buf.clear();
    let answer = loop {
        match parse_answer(&conn.buf) {
            Ok(Some(a)) => break a,
            Ok(None) => {}
            Err(e) => return (local.error(|| e), false, None),
        }
        let filled = conn.buf.len();
        conn.buf.resize(filled + 4096, 0);
        match conn.stream.read(&mut conn.buf[filled..]).await {
            Ok(0) => return (local.error(|| "connection closed before an answer".into()), false, None),
            Err(e) => return (local.error(|| format!("receive: {e}")), false, None),
            Ok(n) => conn.buf.truncate(filled + n),
        }
    };
    let reuse = !answer.close && answer.total == conn.buf.len();
    let x_cache = answer.x_cache;
    if answer.status != 200 {
        return (local.error(|| format!("HTTP {}", answer.status)), reuse, x_cache);
    }
    if !plan.verify {
        return (answer.cache.unwrap_or(Outcome::Hit), reuse, x_cache);
    }
    let examined =
        local.verifier.borrow_mut().examine(idx, entry, &conn.buf[answer.body.clone()], unix_now());
    // Without the header (another responder), a good answer's provenance is
    // unknown: counted as signed for it, the conservative reading.
    let good = answer.cache.unwrap_or(Outcome::Miss);
    let outcome = match examined {
        Examined::Asserts(got) => match &plan.changes {
            None => match verify::status_mismatch(entry, got, &entry.status) {
                None => good,
                Some(why) => {
                    local.wrong(stage, target, format!("serial {}: {why}", entry.serial));
                    Outcome::Error
                }
            },
            // A pending answer counts under its cache outcome; if it turns
            // out wrong after the run, it is counted wrong then.
            Some(book) => match book.judge_answer(idx, target, stage, sent, Instant::now(), got) {
                Check::Accepted | Check::Pending => good,
                Check::Overflow => local.error(|| {
                    format!(
                        "more than {} answers wait for the change feed: serial {} ({got}) not judged",
                        super::changes::MAX_PENDING,
                        entry.serial
                    )
                }),
            },
        },
        Examined::TryLater => Outcome::TryLater,
        Examined::OcspError(code) => local.error(|| format!("OCSP responseStatus {code}")),
        Examined::Wrong(why) => {
            local.wrong(stage, target, format!("serial {}: {why}", entry.serial));
            Outcome::Error
        }
    };
    (outcome, reuse, x_cache)
}

/// The warm-up's requests: entry and, behind a CDN, the form to ask in.
type WarmQueue = std::vec::IntoIter<(u32, Option<Form>)>;

/// One connection's life: its share of the warm-up, then every stage.
async fn connection_task(
    local: Rc<Local>,
    global_index: usize,
    warm_queue: Rc<RefCell<WarmQueue>>,
    warm_deadline: Instant,
    go: futures::future::Shared<futures::channel::oneshot::Receiver<Instant>>,
) {
    let plan = local.plan.clone();
    let target = global_index % plan.targets.len();
    let mut rng = Rng::seeded();
    let (mut out, mut der) = (Vec::with_capacity(512), Vec::with_capacity(128));
    let mut conn: Option<Conn> = None;

    // Warm-up: closed loop over the thread's share of the warm set.
    loop {
        if Instant::now() >= warm_deadline {
            break;
        }
        let Some((idx, form)) = warm_queue.borrow_mut().next() else { break };
        let sent = Instant::now();
        if conn.is_none() {
            conn = connect(&local, None, target).await;
        }
        let Some(c) = conn.as_mut() else {
            local.record(None, target, Outcome::Error, None, sent.elapsed(), Instant::now());
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        };
        local.sent(None, target);
        let (o, reuse, x_cache) =
            exchange(&local, None, target, c, idx, form, &mut rng, &mut out, &mut der).await;
        local.record(None, target, o, x_cache, sent.elapsed(), Instant::now());
        if !reuse {
            conn = None;
        }
    }
    local.warming.set(local.warming.get() - 1);
    // Wait for the common start instant (a dropped sender ends the run).
    let Ok(t0) = go.await else { return };

    for (si, stage) in plan.stages.iter().enumerate() {
        let begin = t0 + stage.start;
        let end = begin + stage.duration;
        let now = Instant::now();
        if now < begin {
            glommio::timer::sleep(begin - now).await;
        }
        // Open loop: this connection's period and phase.
        let period = stage.rate.map(|r| Duration::from_secs_f64(plan.connections as f64 / r.max(1e-9)));
        let mut intended = match period {
            Some(p) => begin + p.mul_f64(global_index as f64 / plan.connections as f64),
            None => begin,
        };
        loop {
            if let Some(p) = period {
                if intended >= end {
                    break;
                }
                // A stuck or unreachable server makes every attempt take up
                // to the timeout; the stage still ends on time: what is left
                // of this connection's schedule counts as errors, unsent.
                if Instant::now() > end + plan.timeout {
                    while intended < end {
                        local.record(
                            Some(si),
                            target,
                            Outcome::Error,
                            None,
                            intended.elapsed(),
                            Instant::now(),
                        );
                        intended += p;
                    }
                    break;
                }
                let now = Instant::now();
                if now < intended {
                    glommio::timer::sleep(intended - now).await;
                }
            } else {
                intended = Instant::now();
                if intended >= end {
                    break;
                }
            }
            let n = stage.keys.ranked.len();
            let pick = if plan.sequential {
                let k = {
                    let mut w = local.walk.borrow_mut();
                    w[si] += 1;
                    w[si] - 1
                };
                (k * plan.threads + local.thread) % n
            } else {
                plan.zipf.sample(&mut rng) % n
            };
            let idx = stage.keys.ranked[pick];
            if conn.is_none() {
                conn = connect(&local, Some(si), target).await;
            }
            match conn.as_mut() {
                None => {
                    local.record(Some(si), target, Outcome::Error, None, intended.elapsed(), Instant::now());
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                Some(c) => {
                    local.sent(Some(si), target);
                    let sent_at = Instant::now();
                    let (o, reuse, x_cache) =
                        exchange(&local, Some(si), target, c, idx, None, &mut rng, &mut out, &mut der).await;
                    let received = Instant::now();
                    let service = received.saturating_duration_since(sent_at).as_micros() as u64;
                    local.acc(Some(si), |a| {
                        let h = a.service_us.get_or_insert_with(super::results::client_histogram);
                        let _ = h.record(service.clamp(1, h.high()));
                    });
                    local.record(
                        Some(si),
                        target,
                        o,
                        x_cache,
                        received.saturating_duration_since(intended),
                        received,
                    );
                    if !reuse {
                        conn = None;
                    }
                }
            }
            if let Some(p) = period {
                intended += p;
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = c.stream.close().await;
    }
}

/// Runs one generator thread: `conns` connections with global indices from
/// `first_conn`, its share `warm` of the warm set. Reports warm-up completion
/// on `warm_done` and takes the common start instant from `start_rx`.
#[allow(clippy::too_many_arguments)]
pub async fn run_thread(
    plan: Arc<Plan>,
    thread: usize,
    first_conn: usize,
    conns: usize,
    warm: Vec<u32>,
    warm_done: std::sync::mpsc::Sender<()>,
    start_rx: flume::Receiver<Instant>,
) -> ThreadResult {
    let stages = plan.stages.len();
    let local = Rc::new(Local {
        verifier: RefCell::new(Verifier::new(plan.keyspace.issuers.clone())),
        result: RefCell::new(ThreadResult {
            stages: vec![StageAcc::default(); stages],
            targets: vec![TargetAcc::default(); plan.targets.len()],
            ..Default::default()
        }),
        start: std::cell::Cell::new(None),
        warming: std::cell::Cell::new(conns),
        thread,
        walk: RefCell::new(vec![0; stages]),
        plan: plan.clone(),
    });
    // Behind a CDN, pass p asks in the p-th form the mix can draw.
    let forms = if plan.cdn { plan.mix.forms() } else { Vec::new() };
    let mut queue = Vec::with_capacity(warm.len() * plan.warm_passes);
    for pass in 0..plan.warm_passes {
        let form = (!forms.is_empty()).then(|| forms[pass % forms.len()]);
        queue.extend(warm.iter().map(|i| (*i, form)));
    }
    let queue = Rc::new(RefCell::new(queue.into_iter()));
    let warm_started = Instant::now();
    let warm_deadline = warm_started + plan.warm_limit;
    let (go_tx, go_rx) = futures::channel::oneshot::channel::<Instant>();
    let go_rx = futures::FutureExt::shared(go_rx);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (local, queue) = (local.clone(), queue.clone());
        tasks.push(glommio::spawn_local(connection_task(
            local,
            first_conn + i,
            queue,
            warm_deadline,
            go_rx.clone(),
        )));
    }
    // The warm-up ends when every connection has left it (queue drained or
    // time up; an in-flight request ends within the answer timeout).
    while local.warming.get() > 0 {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    local.result.borrow_mut().warm_elapsed = warm_started.elapsed();
    let _ = warm_done.send(());
    if let Ok(t0) = start_rx.recv_async().await {
        local.start.set(Some(t0));
        let _ = go_tx.send(t0);
    }
    for t in tasks {
        t.await;
    }
    let mut r = local.result.take();
    r.full_checks = local.verifier.borrow().full_checks;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_cdn_and_origin_cache_headers() {
        let head =
            |extra: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{extra}\r\nab").into_bytes();
        let a = parse_answer(&head("X-Cache-Status: MISS\r\nX-Cache: HIT\r\n")).unwrap().unwrap();
        assert_eq!((a.cache, a.x_cache, a.body.len()), (Some(Outcome::Miss), Some(true), 2));
        let a = parse_answer(&head("x-cache: MISS\r\nX-Cache-Status: HIT-L2\r\n")).unwrap().unwrap();
        assert_eq!((a.cache, a.x_cache), (Some(Outcome::HitL2), Some(false)));
        let a = parse_answer(&head("X-Cache-Status: STALE\r\n")).unwrap().unwrap();
        assert_eq!((a.cache, a.x_cache), (Some(Outcome::Hit), None));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").unwrap().is_none());
    }
}
