//! One bench run from start to finish: checks the options against the
//! config, opens the change follower, loads and plans the keyspace, starts
//! one glommio executor per generator thread (`client::run_thread`), starts
//! the stages together once every thread has warmed up, merges the threads'
//! results into a [`RunReport`], writes the exports and fetches the server's
//! own histograms from its admin listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use super::client::{self, Plan, StagePlan, ThreadResult};
use super::keyspace::{self, Rng, Zipf};
use super::options::{cdn_purger, parse_cpus, parse_targets, BenchArgs};
use super::request::Mix;
use super::results::{
    self, ByOutcome, CapacityInputs, CdnAnswers, CdnStage, Interval, RunMeta, RunReport, StageResult,
    TargetResult,
};
use super::{changes, follower, report};
use crate::config::Config;

fn machine() -> String {
    let uname = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{uname}; {model}; {cpus} CPUs")
}

fn commit() -> String {
    if let Ok(c) = std::env::var("OCSP_ORIGIN_COMMIT") {
        return c;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A plain HTTP GET to the admin listener (loopback; small bodies).
fn admin_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    Ok(body.to_string())
}

/// Runs the bench; returns the report (also written to `out`) and its directory.
pub fn run(args: &BenchArgs, command_line: String) -> Result<(RunReport, PathBuf), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    if args.threads == 0 || args.connections == 0 {
        return Err("--threads and --connections must be at least 1".into());
    }
    if args.connections < args.threads {
        return Err("--connections must be at least --threads".into());
    }
    if !(0.0..=1.0).contains(&args.post_share) || !(0.0..=1.0).contains(&args.quirk_share) {
        return Err("--post-share and --quirk-share are shares in [0, 1]".into());
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return Err("--duration must be in (0, 3600] seconds".into());
    }
    if let Some(r) = args.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err("--rate must be positive".into());
        }
    }
    let stages_spec: Vec<(String, f64)> = match &args.ratchet {
        Some(text) => keyspace::parse_fractions(text)?,
        None => {
            if !(0.0..=1.0).contains(&args.cold) {
                return Err("--cold must be in [0, 1]".into());
            }
            vec![("run".into(), args.cold)]
        }
    };
    let ratchet = args.ratchet.is_some();
    // The CDN ratchet: the purge makes a stage cold, not its keyspace.
    let purger = cdn_purger(args)?;
    let cdn = purger.is_some();
    if let Some(p) = &purger {
        p.probe().map_err(|e| format!("--cdn-purge {}: a test purge failed: {e}", p.addr))?;
    }
    let targets = parse_targets(&args.target, config.listen)?;
    if args.connections < targets.len() {
        return Err(format!(
            "--connections {} is fewer than the {} targets: connection i goes to target i mod {}, so some \
             would get none",
            args.connections,
            targets.len(),
            targets.len()
        ));
    }
    if args.change_poll_ms == 0 || args.change_poll_ms > 60_000 {
        return Err("--change-poll-ms must be in [1, 60000]".into());
    }
    let target_names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    // The change follower records where the feed stands before the keyspace
    // is read and polls from then on, so no change in between is missed.
    let base = Instant::now();
    let (mut follower, change_feed) = match &config.mysql {
        Some(m) if !args.no_verify => match follower::open(m)? {
            Some(opened) => {
                let f =
                    follower::Follower::spawn(opened, m.clone(), Duration::from_millis(args.change_poll_ms))?;
                (Some(f), "on")
            }
            None => {
                eprintln!(
                    "bench: ocsp_changes does not exist (schema v1; `ocsp-origin db migrate` adds it): \
                     answers are checked against the statuses read at start, so a change during the run \
                     shows up as WRONG"
                );
                (None, "unavailable")
            }
        },
        _ => (None, "off"),
    };
    let ks = Arc::new(keyspace::load(&config, args.max_serials)?);
    let cold_fractions: Vec<f64> = stages_spec.iter().map(|s| if cdn { 0.0 } else { s.1 }).collect();
    let fit = keyspace::fitting_keyspace(ks.entries.len(), &cold_fractions);
    let k = args.keyspace.unwrap_or(fit.min(100_000));
    if k > fit {
        return Err(format!(
            "--keyspace {k} does not fit: {} certificates allow at most {fit} per stage for a warm set plus \
             every stage's cold serials",
            ks.entries.len()
        ));
    }
    let mut rng = Rng::seeded();
    let (warm, mut stage_keys) = keyspace::plan_stages(ks.entries.len(), k, &cold_fractions, &mut rng);
    if cdn {
        // One popularity ranking over the warm set for every stage, as a
        // CDN's clients keep theirs while its cache is purged.
        for s in &mut stage_keys {
            *s = keyspace::StageKeys { ranked: warm.clone(), cold: 0 };
        }
    }
    eprintln!(
        "bench: {} certificates ({} expired left out), {k} per stage, warm set {}, {} stage(s), target {}",
        ks.entries.len(),
        ks.skipped_expired,
        warm.len(),
        stage_keys.len(),
        target_names.join(",")
    );
    let bound = Duration::from_millis(args.change_bound_ms);
    let book = follower.as_mut().map(|f| {
        let used = warm.iter().chain(stage_keys.iter().flat_map(|s| s.ranked.iter())).copied();
        let book = Arc::new(changes::ChangeBook::new(base, bound, ks.clone(), used, target_names.clone()));
        f.attach(book.clone());
        eprintln!(
            "bench: following ocsp_changes on the primary every {} ms; bound under test {} ms",
            args.change_poll_ms, args.change_bound_ms
        );
        book
    });

    let dur = Duration::from_secs_f64(args.duration);
    // Behind a CDN the gap holds the next stage's purge (sent `lead` before it).
    let (gap, lead) = if cdn {
        (Duration::from_millis(500), Duration::from_millis(300))
    } else {
        (Duration::from_millis(200), Duration::ZERO)
    };
    let stages: Vec<StagePlan> = stage_keys
        .iter()
        .enumerate()
        .map(|(i, keys)| StagePlan {
            start: (dur + gap) * i as u32,
            duration: dur,
            rate: args.rate.map(|r| if ratchet && !cdn { r * stages_spec[i].1 } else { r }),
            keys: Arc::new(keys.clone()),
        })
        .collect();
    let plan = Arc::new(Plan {
        keyspace: ks,
        hosts: target_names.clone(),
        targets: targets.clone(),
        prefix: config.path_prefix.clone(),
        mix: Mix { post_share: args.post_share, quirk_share: args.quirk_share },
        zipf: Arc::new(Zipf::new(k, args.zipf)),
        warm_passes: args.warm_passes,
        warm_limit: Duration::from_secs_f64(args.warm_secs.max(0.0)),
        stages: stages.clone(),
        connections: args.connections,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        verify: !args.no_verify,
        interval: Duration::from_secs(1),
        sequential: args.sequential,
        threads: args.threads,
        changes: book.clone(),
        cdn,
    });

    // Threads: connections and warm keys dealt out evenly.
    let threads = args.threads;
    let placement = match &args.cpus {
        Some(list) => {
            let cpus = parse_cpus(list)?;
            let set = CpuSet::online()
                .map_err(|e| format!("cannot read the CPU topology: {e}"))?
                .filter(|l| cpus.contains(&l.cpu));
            if set.is_empty() {
                return Err(format!("--cpus {list}: none of those CPUs is online"));
            }
            PoolPlacement::MaxSpread(threads, Some(set))
        }
        None => PoolPlacement::Unbound(threads),
    };
    crate::uring::raise_memlock(crate::uring::memlock_for(threads))?;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (start_tx, start_rx) = flume::bounded::<Instant>(threads);
    let work: Vec<(usize, usize, usize, Vec<u32>)> = (0..threads)
        .map(|t| {
            let first = t * args.connections / threads;
            let next = (t + 1) * args.connections / threads;
            let w: Vec<u32> = warm.iter().skip(t).step_by(threads).copied().collect();
            (t, first, next - first, w)
        })
        .collect();
    let work = Arc::new(std::sync::Mutex::new(work));
    let started_unix = crate::clock::unix_now();
    let plan2 = plan.clone();
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("bench")
        .io_memory(crate::uring::IO_MEMORY)
        .ring_depth(512)
        .on_all_shards(move || {
            let mine = work.lock().ok().and_then(|mut w| w.pop());
            let (plan, done_tx, start_rx) = (plan2.clone(), done_tx.clone(), start_rx.clone());
            async move {
                match mine {
                    Some((t, first, n, w)) => {
                        client::run_thread(plan, t, first, n, w, done_tx, start_rx).await
                    }
                    None => ThreadResult::default(),
                }
            }
        })
        .map_err(|e| format!("cannot start generator threads: {e}"))?;
    // Every thread finishes its warm-up, then all start together.
    let warm_started = Instant::now();
    for _ in 0..threads {
        if done_rx.recv().is_err() {
            break;
        }
    }
    eprintln!("bench: warm-up done in {:.1} s", warm_started.elapsed().as_secs_f64());
    let t0 = Instant::now() + Duration::from_millis(100) + lead;
    let run_offset = (t0 - warm_started).as_secs_f64();
    let purges = match purger {
        Some(p) => {
            let schedule = stages.iter().zip(&stages_spec).map(|(sp, spec)| (sp.start, spec.1)).collect();
            Some(p.spawn(t0, lead, schedule).map_err(|e| format!("cannot start the purger thread: {e}"))?)
        }
        None => None,
    };
    for _ in 0..threads {
        let _ = start_tx.send(t0);
    }
    let mut results = Vec::new();
    for r in handles.join_all() {
        results.push(r.map_err(|e| format!("generator thread failed: {e}"))?);
    }
    let purges = match purges {
        Some(h) => h.join().map_err(|_| "the purger thread panicked".to_string())?,
        None => Vec::new(),
    };
    // Every answer is in: the follower's final poll, then the answers that
    // waited for it.
    let mut late_wrongs = Vec::new();
    let mut change_report = None;
    if let (Some(f), Some(book)) = (follower.take(), &book) {
        let feed = f.finish();
        late_wrongs = book.resolve(feed.final_poll);
        change_report = Some(book.report(&feed, Duration::from_millis(args.change_poll_ms)));
    }

    // Merge the threads.
    let interval_s = plan.interval.as_secs_f64();
    let mut merged_intervals: Vec<ByOutcome> = Vec::new();
    for r in &results {
        for (i, h) in r.intervals.iter().enumerate() {
            while merged_intervals.len() <= i {
                merged_intervals.push(ByOutcome::with_digits(2));
            }
            merged_intervals[i].add(h);
        }
    }
    let mut wrong_samples = Vec::new();
    let mut error_samples: Vec<String> = Vec::new();
    let mut warm_acc = client::StageAcc::default();
    let mut full_checks = 0;
    let mut target_results: Vec<TargetResult> =
        target_names.iter().map(|t| TargetResult { target: t.clone(), ..Default::default() }).collect();
    for r in &results {
        warm_acc.by_outcome.add(&r.warm.by_outcome);
        warm_acc.wrong += r.warm.wrong;
        wrong_samples.extend(r.wrong_samples.iter().cloned());
        error_samples.extend(r.error_samples.iter().cloned());
        full_checks += r.full_checks;
        for (sum, t) in target_results.iter_mut().zip(&r.targets) {
            sum.sent += t.sent;
            sum.wrong += t.wrong;
            for (a, b) in sum.counts.iter_mut().zip(t.counts) {
                *a += b;
            }
        }
    }
    // Wrong answers found after the run count where their requests were sent.
    let mut late_wrong_by_stage = vec![0u64; stages.len()];
    for w in &late_wrongs {
        match w.stage {
            Some(s) => {
                late_wrong_by_stage[s] += 1;
                if let Some(t) = target_results.get_mut(w.target) {
                    t.wrong += 1;
                }
            }
            None => warm_acc.wrong += 1,
        }
        if wrong_samples.len() < 10 {
            wrong_samples.push(w.message.clone());
        }
    }
    let mut stage_results = Vec::new();
    for (i, sp) in stages.iter().enumerate() {
        let mut acc = client::StageAcc { wrong: late_wrong_by_stage[i], ..Default::default() };
        let mut service = results::client_histogram();
        let mut cdn_answers = CdnAnswers::default();
        for r in &results {
            if let Some(s) = r.stages.get(i) {
                if let Some(c) = &s.cdn {
                    cdn_answers.add(c);
                }
                acc.by_outcome.add(&s.by_outcome);
                acc.sent += s.sent;
                acc.wrong += s.wrong;
                acc.connect_errors += s.connect_errors;
                if let Some(h) = &s.service_us {
                    let _ = service.add(h);
                }
            }
        }
        let (start_s, end_s) = (sp.start.as_secs_f64(), (sp.start + sp.duration + gap).as_secs_f64());
        let intervals = merged_intervals
            .iter()
            .enumerate()
            .map(|(j, h)| (j as f64 * interval_s, h))
            .filter(|(s, _)| *s >= start_s && *s < end_s)
            .map(|(s, h)| Interval { start_s: s + run_offset, length_s: interval_s, by_outcome: h.clone() })
            .collect();
        let (name, fraction) = stages_spec[i].clone();
        let slug = if ratchet {
            let label = match name.split_once('/') {
                Some((a, b)) => format!("{}of{}", a.trim(), b.trim()),
                None => name.replace('.', "p"),
            };
            format!("s{}_{}", i + 1, label)
        } else {
            "run".to_string()
        };
        stage_results.push(StageResult {
            name,
            slug,
            fraction,
            target_rate: sp.rate,
            start_s: start_s + run_offset,
            duration_s: sp.duration.as_secs_f64(),
            sent: acc.sent,
            wrong: acc.wrong,
            connect_errors: acc.connect_errors,
            by_outcome: acc.by_outcome,
            intervals,
            service_us: service,
            keyspace: sp.keys.ranked.len(),
            cold: sp.keys.cold,
            cdn: cdn.then(|| CdnStage {
                answers: cdn_answers,
                purge: purges.get(i).cloned().unwrap_or_default(),
            }),
        });
    }
    let report = RunReport {
        meta: RunMeta {
            command: command_line,
            commit: commit(),
            machine: machine(),
            target: target_names.join(","),
            targets: target_names.clone(),
            change_feed: change_feed.to_string(),
            mode: if args.rate.is_some() { "open".into() } else { "closed".into() },
            connections: args.connections,
            threads,
            post_share: args.post_share,
            quirk_share: args.quirk_share,
            zipf_s: args.zipf,
            started_unix,
            cdn_purge: args.cdn_purge.clone(),
        },
        stages: stage_results,
        capacity: CapacityInputs {
            server_cores: args.server_cores.unwrap_or(config.cores),
            hsm_sessions: args.hsm_sessions.unwrap_or(config.signing.threads),
            node_cores: args.node_cores.max(1),
            target_rps: args.target_rps,
            cdn_hit_ratio: args.cdn_hit_ratio,
        },
        targets: target_results,
        warm_wrong: warm_acc.wrong,
        changes: change_report,
    };

    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("bench-out/{started_unix}")));
    report::write_all(&report, &out).map_err(|e| e.to_string())?;
    if let Some(admin) = args.admin.or(config.admin) {
        for name in ["metrics", "request", "parse", "l1", "redis", "db", "sign_wait", "sign", "sign_batch"] {
            let (path, file) = if name == "metrics" {
                ("/metrics".to_string(), "server_metrics.txt".to_string())
            } else {
                (format!("/histograms/{name}.hgrm"), format!("server_{name}.hgrm"))
            };
            match admin_get(admin, &path) {
                Ok(body) => {
                    let _ = std::fs::write(out.join(file), body);
                }
                Err(e) => eprintln!("bench: admin {path}: {e}"),
            }
        }
    }
    eprintln!(
        "bench: warm-up {} answers ({} wrong); {full_checks} signatures verified in full",
        warm_acc.by_outcome.merged().len(),
        warm_acc.wrong
    );
    for s in &report.stages {
        if let Some(c) = &s.cdn {
            let p = &c.purge;
            eprintln!(
                "bench: stage {}: purged {} buckets in {} requests ({} failed): {} objects, {:.1} ms, began {:.0} ms \
                 from the stage's start",
                s.name, p.buckets, p.requests, p.failed, p.purged, p.took_ms, p.began_ms
            );
            for e in &p.errors {
                eprintln!("bench: purge error: {e}");
            }
        }
    }
    for e in error_samples.iter().take(5) {
        eprintln!("bench: error: {e}");
    }
    for w in &wrong_samples {
        eprintln!("bench: WRONG: {w}");
    }
    Ok((report, out))
}
