//! `summary.md`: the run summary for people. The verdict first, then what
//! ran, the stage table, per target and change-feed tables, behind a CDN its
//! section (see `cdn`), and the capacity plan with the assumptions it rests on.

use std::fmt::Write as _;

use super::or_unknown;
use super::summary::{LatencyMs, Summary};

impl Summary<'_> {
    /// `summary.md`: verdict, run description, stage table, planning.
    pub(super) fn markdown(&self) -> String {
        let m = self.meta;
        let c = self.capacity;
        let mut out = String::new();
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "# ocsp-origin bench: {verdict}\n");
        if self.passed {
            let _ = writeln!(out, "**PASS**: every answer was correct and no request ended in an error.\n");
        } else {
            let _ = writeln!(out, "**FAIL**: {}.\n", self.fail_reasons.join("; "));
        }
        let _ = writeln!(
            out,
            "Run against `{}` in {} loop from commit `{}` on {}, started at Unix time {}: {} connections \
             over {} generator threads, {:.0}% POST, {:.0}% of GETs with URL quirks, serial popularity \
             Zipf s = {}. The server ran {} shards and {} signing sessions. Command: `{}`.\n",
            m.target,
            m.mode,
            or_unknown(&m.commit),
            or_unknown(&m.machine),
            m.started_unix,
            m.connections,
            m.threads,
            m.post_share * 100.0,
            m.quirk_share * 100.0,
            m.zipf_s,
            c.server_cores,
            c.hsm_sessions,
            m.command,
        );

        let _ = writeln!(out, "## Stages\n");
        let _ = writeln!(
            out,
            "Latencies in ms over all outcomes; open loop measures from the intended send time. \
             `svc` columns: from the actual send; a large gap to the corrected columns means the \
             run fell behind schedule (the server's backlog, or the generator's own: compare with \
             the server's request histogram).\n"
        );
        let _ = writeln!(
            out,
            "| stage | target/s | achieved/s | hit | hit_l2 | miss | tryLater | error | wrong | p50 | p99 | p99.9 | svc p50 | svc p99 |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.stages {
            let k = &s.counts;
            let lat = |f: fn(&LatencyMs) -> f64| {
                s.latency_ms.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
            };
            let svc = |f: fn(&LatencyMs) -> f64| {
                s.service_ms.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name.replace('|', "\\|"),
                s.target_rate.map_or("–".into(), |t| format!("{t:.1}")),
                s.achieved_rate,
                k.hit,
                k.hit_l2,
                k.miss,
                k.try_later,
                k.error,
                s.wrong,
                lat(|l| l.p50),
                lat(|l| l.p99),
                lat(|l| l.p99_9),
                svc(|l| l.p50),
                svc(|l| l.p99),
            );
        }

        self.markdown_targets(&mut out);
        self.markdown_changes(&mut out);
        self.markdown_cdn(&mut out);

        let d = &self.derived;
        let p = &self.planning;
        let _ = writeln!(out, "\n## Capacity planning\n");
        let _ = writeln!(
            out,
            "- Hits per core: {} (peak {:.1} hits/s{} over {} cores)",
            rate_or_not(d.hits_per_core_per_s),
            d.peak_hit_rate,
            d.peak_hit_stage.as_deref().map_or(String::new(), |s| format!(" at stage {s}")),
            c.server_cores
        );
        let _ = writeln!(
            out,
            "- Signatures per HSM session: {} (peak {:.1} misses/s{} over {} sessions)",
            rate_or_not(d.signatures_per_session_per_s),
            d.peak_miss_rate,
            d.peak_miss_stage.as_deref().map_or(String::new(), |s| format!(" at stage {s}")),
            c.hsm_sessions
        );
        let p99s: Vec<_> = d
            .p99_ms_by_stage
            .iter()
            .map(|s| {
                format!("{} {}", s.stage, s.p99_ms.map_or("not measured".into(), |v| format!("{v:.3} ms")))
            })
            .collect();
        let p99s = if p99s.is_empty() { "no stages".into() } else { p99s.join(", ") };
        let _ = writeln!(out, "- p99 by stage: {p99s}\n");

        let _ = writeln!(
            out,
            "For {:.0} requests/s at the CDN with a {:.1}% CDN hit ratio ({} cores per node):\n",
            p.target_rps,
            p.cdn_hit_ratio * 100.0,
            c.node_cores
        );
        let _ = writeln!(out, "| scenario | origin requests/s | cores | nodes |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (name, s) in [("normal operation", &p.normal), ("full cache drop", &p.cache_drop)] {
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {} | {} |",
                s.origin_rps,
                count_or_not(s.cores),
                count_or_not(s.nodes)
            );
        }
        let _ = writeln!(
            out,
            "\nHSM sessions needed during a full cache drop: {} (miss share at the last stage: {}, so {} \
             signatures/s).\n",
            count_or_not(p.hsm_sessions_during_drop),
            p.miss_share_last_stage.map_or("not measured".into(), |m| format!("{:.1}%", m * 100.0)),
            p.cache_drop_miss_rps.map_or("not measured".into(), |r| format!("{r:.1}")),
        );
        let _ = writeln!(out, "Assumptions:\n");
        for a in &p.assumptions {
            let _ = writeln!(out, "- {a}");
        }
        out
    }

    fn markdown_targets(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n## Targets\n\nOver the measured stages; connection i went to target i mod {}.\n",
            self.targets.len()
        );
        let _ = writeln!(out, "| target | sent | answers | hit | hit_l2 | miss | tryLater | error | wrong |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &self.targets {
            let k = &t.counts;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.target, t.sent, t.answers, k.hit, k.hit_l2, k.miss, k.try_later, k.error, t.wrong
            );
        }
        if self.warm_up_wrong > 0 {
            let _ = writeln!(out, "\nWrong answers during the warm-up: {}.", self.warm_up_wrong);
        }
    }

    fn markdown_changes(&self, out: &mut String) {
        let Some(c) = &self.changes else {
            let _ = writeln!(
                out,
                "\nChange feed: {} (answers checked against the statuses read at start).",
                self.meta.change_feed
            );
            return;
        };
        let _ = writeln!(out, "\n## Changes during the run\n");
        let _ = writeln!(
            out,
            "The change follower read `ocsp_changes` on the primary every {} ms. A change is seen at τ, when \
             the poll that returned it came back (so it was committed by then); an answer to a request sent \
             {} ms (the bound under test) or more after τ must carry the change's status or a newer one.\n",
            c.poll_ms, c.bound_ms
        );
        let rows: [(&str, String); 12] = [
            ("changes seen", c.seen.to_string()),
            ("of them for certificates the run asks about", c.seen_in_keyspace.to_string()),
            ("certificates changed", c.entries_changed.to_string()),
            ("changes seen after higher seqs (late)", c.late.to_string()),
            (
                "answers judged against a change (sent after τ + bound)",
                c.answers_judged_against_change.to_string(),
            ),
            (
                "answers with the older status inside the window (allowed)",
                c.answers_older_in_window.to_string(),
            ),
            ("answers pending for the feed", c.pending.to_string()),
            ("of them resolved after the final poll", c.pending_resolved.to_string()),
            ("wrong (after the final poll)", c.wrong.to_string()),
            ("not judged (pending queue full)", c.pending_overflow.to_string()),
            ("not judged (final poll failed)", c.unjudged.to_string()),
            ("failed polls", c.poll_errors.to_string()),
        ];
        let _ = writeln!(out, "| | |\n|---|---:|");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(
            out,
            "\nSeen to first new answer: per change and target, from τ to the receipt of the first answer, \
             to a request sent after τ, carrying the change's status. An upper bound of how long after τ the \
             node showed the change, limited by how often the run asks for that serial.\n"
        );
        let _ = writeln!(out, "| target | changes shown | not shown | p50 ms | p99 ms | max ms |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        for p in &c.seen_to_first_new_answer_ms {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                p.target,
                p.changes,
                p.not_shown,
                ms(p.p50_ms),
                ms(p.p99_ms),
                ms(p.max_ms)
            );
        }
    }
}

fn rate_or_not(r: Option<f64>) -> String {
    r.map_or("not measured".into(), |r| format!("{r:.1}/s"))
}

fn count_or_not(n: Option<u64>) -> String {
    n.map_or("not measured".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::bench::report::fixtures::*;
    use crate::bench::report::write_all;

    #[test]
    fn markdown_has_verdict_table_and_plan() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.starts_with("# ocsp-origin bench: PASS\n"), "{md}");
        assert!(md.contains(
            "| stage | target/s | achieved/s | hit | hit_l2 | miss | tryLater | error | wrong | p50 | p99 | p99.9 |"
        ));
        assert!(md.contains("| 1/2 | 2000.0 | 2000.0 | 3000 | 600 | 400 | 0 | 0 | 0 |"), "{md}");
        assert!(md.contains("| normal operation | 20000.0 | 45 | 3 |"), "{md}");
        assert!(md.contains("| full cache drop | 1000000.0 | 2223 | 139 |"), "{md}");
        assert!(md.contains("HSM sessions needed during a full cache drop: 1334"), "{md}");
        assert!(md.contains("measured at the last stage (1)"), "{md}");
    }
}
