//! What a run prints at its end: the stage table, per target when there are
//! several, behind a CDN its hit ratio and origin requests per stage, and the
//! change-aware verification in a few lines. The files
//! under `--out` (see `report`) carry the full numbers.

use super::results::{self, RunReport};

/// The stage table printed at the end of a run.
pub fn table(report: &RunReport) -> String {
    use results::Outcome;
    let mut s = String::from(
        "stage    target/s  achieved/s      hit   hit_l2     miss tryLater    error  wrong   p50 ms   p99 ms p99.9 ms svc p99\n",
    );
    for st in &report.stages {
        let all = st.by_outcome.merged();
        let q = |p: f64| if all.is_empty() { 0.0 } else { all.value_at_quantile(p) as f64 / 1000.0 };
        let c = |o: Outcome| st.by_outcome.count(o);
        s.push_str(&format!(
            "{:<8} {:>9} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>7.2}\n",
            st.name,
            st.target_rate.map(|r| format!("{r:.0}")).unwrap_or_else(|| "closed".into()),
            st.rate(),
            c(Outcome::Hit),
            c(Outcome::HitL2),
            c(Outcome::Miss),
            c(Outcome::TryLater),
            c(Outcome::Error),
            st.wrong,
            q(0.5),
            q(0.99),
            q(0.999),
            if st.service_us.is_empty() {
                0.0
            } else {
                st.service_us.value_at_quantile(0.99) as f64 / 1000.0
            }
        ));
    }
    if report.targets.len() > 1 {
        s.push_str(&format!(
            "{:<22} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
            "target", "sent", "answers", "hit", "hit_l2", "miss", "tryLater", "error", "wrong"
        ));
        for t in &report.targets {
            let c = |o: Outcome| t.counts[o.index()];
            s.push_str(&format!(
                "{:<22} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
                t.target,
                t.sent,
                t.answers(),
                c(Outcome::Hit),
                c(Outcome::HitL2),
                c(Outcome::Miss),
                c(Outcome::TryLater),
                c(Outcome::Error),
                t.wrong
            ));
        }
    }
    if report.stages.iter().any(|st| st.cdn.is_some()) {
        s.push_str(&cdn_table(report));
    }
    if let Some(c) = &report.changes {
        s.push_str(&changes_line(c));
    }
    s
}

/// Behind a CDN: per stage the purge, the CDN hit ratio and the origin's
/// requests by its outcome.
fn cdn_table(report: &RunReport) -> String {
    use results::Outcome;
    let mut s = format!(
        "{:<8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "cdn",
        "buckets",
        "purged",
        "purge ms",
        "hit %",
        "origin",
        "o.hit",
        "o.hit_l2",
        "o.miss",
        "o.tryL",
        "o.error",
        "no answ."
    );
    for st in &report.stages {
        let Some(c) = &st.cdn else { continue };
        let (a, p) = (&c.answers, &c.purge);
        let o = |x: Outcome| a.origin.count(x);
        s.push_str(&format!(
            "{:<8} {:>7} {:>8} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}{}\n",
            st.name,
            p.buckets,
            p.purged,
            p.took_ms,
            a.hit_ratio().map_or("-".into(), |r| format!("{:.2}", r * 100.0)),
            a.origin_requests(),
            o(Outcome::Hit),
            o(Outcome::HitL2),
            o(Outcome::Miss),
            o(Outcome::TryLater),
            o(Outcome::Error),
            a.unmarked,
            if p.failed > 0 { format!("  ({} purge requests failed)", p.failed) } else { String::new() }
        ));
    }
    s
}

/// The change-aware verification in a few lines: what was seen, how answers
/// were judged, and per target how long after τ the new status showed.
pub fn changes_line(c: &results::ChangeReport) -> String {
    let mut s = format!(
        "changes: {} seen ({} for {} certificates asked about, {} late), bound {} ms: {} answers judged \
         against a change, {} with the older status inside the window (allowed), {} pending -> {} resolved, \
         {} wrong{}{}\n",
        c.seen,
        c.seen_in_keyspace,
        c.entries_changed,
        c.late,
        c.bound_ms,
        c.judged_against_change,
        c.older_in_window,
        c.pending,
        c.pending_resolved,
        c.wrong,
        if c.pending_overflow > 0 {
            format!(", {} not judged (queue full)", c.pending_overflow)
        } else {
            String::new()
        },
        if c.unjudged > 0 {
            format!(", {} not judged (final poll failed)", c.unjudged)
        } else {
            String::new()
        },
    );
    for p in &c.propagation {
        let h = &p.shown_us;
        let ms = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            s.push_str(&format!(
                "  seen-to-first-new-answer {}: no change shown ({} asked about after τ)\n",
                p.target, p.not_shown
            ));
        } else {
            s.push_str(&format!(
                "  seen-to-first-new-answer {}: {} changes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} not shown\n",
                p.target,
                h.len(),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                p.not_shown
            ));
        }
    }
    s
}
