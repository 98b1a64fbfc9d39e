//! The CDN ratchet's exports (`--cdn-purge`): the "Through the CDN" section
//! of `summary.md` (per stage: the purge, the CDN hit ratio, the origin's
//! requests by outcome, errors, wrong answers and latency) and `cdn.svg`
//! (hit ratio, origin requests/s by outcome and latency per stage).

use std::fmt::Write as _;

use plotters::prelude::*;

use super::plot::{latency_chart, legend, line, outcome_color, stage_labels, PlotResult, Series, StageAxis};
use super::summary::{LatencyMs, Summary};
use super::{or_unknown, US_PER_MS};
use crate::bench::results::{Outcome, RunReport};

/// The plot's size in pixels (three panels).
const CDN_PLOT_SIZE: (u32, u32) = (1200, 1350);

/// The x axis's title: what a stage did.
const X_DESC: &str = "stage (share of the CDN cache purged first)";

impl Summary<'_> {
    /// The "Through the CDN" section; nothing unless a stage ran behind one.
    pub(super) fn markdown_cdn(&self, out: &mut String) {
        if self.stages.iter().all(|s| s.cdn.is_none()) {
            return;
        }
        let _ = writeln!(out, "\n## Through the CDN\n");
        let _ = writeln!(
            out,
            "The targets are a CDN in front of the origin, purged at `{}`. Each stage first purged its \
             share f of the origin's 256 bucket tags (buckets 0 .. round(f·256)-1), then sent its traffic \
             over the whole warm keyspace. CDN hit ratio: answers with `X-Cache: HIT` over all answers. \
             Origin requests: answers with `X-Cache: MISS`, by the origin's `X-Cache-Status` (HIT: its L1, \
             HIT-L2: Redis, MISS: signed for it) or as judged (tryLater, error). `no answer`: requests \
             without any answer (timeouts, refused connections, unsent). The stage table above counts a \
             CDN hit as a hit, so its hit column is CDN hits plus origin L1 hits, and the capacity plan \
             below reads the CDN's throughput, not the origin's. Latency in ms over all answers, from \
             the intended send time.\n",
            self.meta.cdn_purge.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            out,
            "| stage | buckets purged | objects purged | purge ms | CDN hit ratio | in the 1st s | CDN hits | \
             origin requests | origin/s | origin HIT | origin HIT-L2 | origin MISS (signed) | origin tryLater | origin errors | \
             no answer | errors | wrong | p50 | p99 | p99.9 |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &self.stages {
            let Some(c) = &s.cdn else { continue };
            let lat = |f: fn(&LatencyMs) -> f64| {
                s.latency_ms.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
            };
            let p = &c.purge;
            let purged = if p.failed > 0 {
                format!("{} ({} of {} requests failed)", p.purged, p.failed, p.requests)
            } else {
                p.purged.to_string()
            };
            let o = &c.origin;
            let pct = |r: Option<f64>| r.map_or("–".into(), |r| format!("{:.2}%", r * 100.0));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name.replace('|', "\\|"),
                p.buckets,
                purged,
                p.took_ms,
                pct(c.hit_ratio),
                pct(c.first_second_hit_ratio),
                c.cdn_hits,
                c.origin_requests,
                c.origin_rate,
                o.hit,
                o.hit_l2,
                o.miss,
                o.try_later,
                o.error,
                c.no_answer,
                s.counts.error,
                s.wrong,
                lat(|l| l.p50),
                lat(|l| l.p99),
                lat(|l| l.p99_9),
            );
        }
        let _ = writeln!(out, "\n| stage | CDN hit p50 | CDN hit p99 | origin p50 | origin p99 | origin p99.9 | purge began (ms from the stage's start) |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        let ms = |l: &Option<LatencyMs>, f: fn(&LatencyMs) -> f64| {
            l.as_ref().map_or("–".into(), |l| format!("{:.3}", f(l)))
        };
        for s in &self.stages {
            let Some(c) = &s.cdn else { continue };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.0} |",
                s.name.replace('|', "\\|"),
                ms(&c.cdn_hit_latency_ms, |l| l.p50),
                ms(&c.cdn_hit_latency_ms, |l| l.p99),
                ms(&c.origin_latency_ms, |l| l.p50),
                ms(&c.origin_latency_ms, |l| l.p99),
                ms(&c.origin_latency_ms, |l| l.p99_9),
                c.purge.began_ms,
            );
        }
    }
}

/// `cdn.svg`: CDN hit ratio, origin requests/s by outcome, and latency, per
/// stage; `None` unless a stage ran behind a CDN.
pub(super) fn cdn_plot_svg(report: &RunReport) -> PlotResult<Option<String>> {
    if report.stages.iter().all(|s| s.cdn.is_none()) {
        return Ok(None);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CDN_PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let m = &report.meta;
        let title = format!(
            "ocsp-origin bench through the CDN {} (purged at {}), commit {}",
            or_unknown(&m.target),
            m.cdn_purge.as_deref().unwrap_or("?"),
            or_unknown(&m.commit)
        );
        let body = root.titled(&title, ("sans-serif", 22))?;
        let panels = body.split_evenly((3, 1));
        hit_ratio_panel(&panels[0], report)?;
        origin_panel(&panels[1], report)?;
        latency_panel(&panels[2], report)?;
        root.present()?;
    }
    Ok(Some(svg))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Points of one line: (stage, value).
type Points = Vec<(f64, f64)>;

fn hit_ratio_panel(area: &Area<'_>, report: &RunReport) -> PlotResult<()> {
    let stages = &report.stages;
    let measured: Vec<(f64, f64)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i as f64, s.cdn.as_ref()?.answers.hit_ratio()? * 100.0)))
        .collect();
    let first: Vec<(f64, f64)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let r = s.cdn.as_ref()?.answers.hit_ratio_by_second().first().copied().flatten()?;
            Some((i as f64, r * 100.0))
        })
        .collect();
    let unpurged: Vec<(f64, f64)> =
        stages.iter().enumerate().map(|(i, s)| (i as f64, (1.0 - s.fraction).max(0.0) * 100.0)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("CDN hit ratio per stage (X-Cache: HIT / all answers)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: stages.len() }, 0.0..105.0)?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc("%")
        .y_max_light_lines(1)
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    line(&mut chart, measured, BLUE, 3, "CDN hit ratio (whole stage)")?;
    line(&mut chart, first, RGBColor(0xd6, 0x27, 0x28), 2, "CDN hit ratio in the first second of the stage")?;
    line(&mut chart, unpurged, BLACK, 1, "share of the cache not purged (1 - f)")?;
    legend(&mut chart, SeriesLabelPosition::LowerLeft)
}

fn origin_panel(area: &Area<'_>, report: &RunReport) -> PlotResult<()> {
    let stages = &report.stages;
    let rate = |s: &crate::bench::results::StageResult, n: u64| {
        if s.duration_s > 0.0 {
            n as f64 / s.duration_s
        } else {
            0.0
        }
    };
    let total: Vec<(f64, f64)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i as f64, rate(s, s.cdn.as_ref()?.answers.origin_requests()))))
        .collect();
    let names = [
        (Outcome::Hit, "origin HIT (L1)"),
        (Outcome::HitL2, "origin HIT-L2 (Redis)"),
        (Outcome::Miss, "origin MISS (signed)"),
        (Outcome::TryLater, "origin tryLater"),
        (Outcome::Error, "origin errors"),
    ];
    let by: Vec<(Outcome, &str, Points)> = names
        .iter()
        .filter(|(o, _)| {
            stages.iter().any(|s| s.cdn.as_ref().is_some_and(|c| c.answers.origin.count(*o) > 0))
        })
        .map(|&(o, name)| {
            let points = stages
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i as f64, rate(s, s.cdn.as_ref()?.answers.origin.count(o)))))
                .collect();
            (o, name, points)
        })
        .collect();
    let y_max = total.iter().map(|p| p.1).filter(|v| v.is_finite()).fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Origin requests per stage (X-Cache: MISS), by the origin outcome", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: stages.len() }, 0.0..y_max * 1.15)?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc("requests/s at the origin")
        .y_max_light_lines(1)
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    line(&mut chart, total, BLUE, 3, "origin requests (all)")?;
    for (o, name, points) in by {
        line(&mut chart, points, outcome_color(o), 2, name)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn latency_panel(area: &Area<'_>, report: &RunReport) -> PlotResult<()> {
    let stages = &report.stages;
    let q = |h: &hdrhistogram::Histogram<u64>, q: f64| (h.value_at_quantile(q) as f64 / US_PER_MS).max(0.001);
    let mut series: Vec<Series> = Vec::new();
    for (qv, name, width) in [(0.5, "p50", 1), (0.99, "p99", 2), (0.999, "p99.9", 3)] {
        let points = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.by_outcome.merged()))
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| (i as f64, q(&h, qv)))
            .collect();
        series.push((format!("all answers {name}"), BLUE, width, points));
    }
    let hit = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.cdn.as_ref()?.answers.hit_us.clone())))
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| (i as f64, q(&h, 0.99)))
        .collect();
    series.push(("CDN hits p99".into(), outcome_color(Outcome::Hit), 2, hit));
    let origin = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.cdn.as_ref()?.answers.origin.merged())))
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| (i as f64, q(&h, 0.99)))
        .collect();
    series.push(("origin requests p99".into(), outcome_color(Outcome::Miss), 2, origin));
    latency_chart(area, report, "Client latency per stage (ms, log scale)", X_DESC, series)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::bench::report::fixtures::*;
    use crate::bench::report::write_all;
    use crate::bench::results::{CdnAnswers, CdnStage, Outcome, PurgeResult};

    /// The fixture behind a CDN: stage i's answers split into CDN hits and
    /// origin requests, and a purge per stage.
    fn cdn_report() -> crate::bench::results::RunReport {
        let mut r = report();
        r.meta.cdn_purge = Some("http://127.0.0.1:6081/".into());
        for (i, s) in r.stages.iter_mut().enumerate() {
            let mut a = CdnAnswers::default();
            for _ in 0..(900 - 300 * i) {
                a.record(Some(true), Outcome::Hit, HIT_US);
            }
            for _ in 0..(100 + 300 * i) {
                a.record(Some(false), Outcome::Hit, 2_000);
            }
            for _ in 0..10 {
                a.record(Some(false), Outcome::Miss, MISS_US);
            }
            a.record(None, Outcome::Error, 2_000_000);
            a.count_second(0, false);
            a.count_second(0, true);
            a.count_second(1, true);
            let buckets = [64, 128, 256][i];
            s.cdn = Some(CdnStage {
                answers: a,
                purge: PurgeResult {
                    buckets,
                    requests: buckets as u64 / 64,
                    purged: buckets as u64 * 100,
                    took_ms: 3.5,
                    began_ms: -300.0,
                    ..Default::default()
                },
            });
        }
        r.stages[2].cdn.as_mut().unwrap().purge.failed = 1;
        r
    }

    #[test]
    fn cdn_stages_are_in_every_export() {
        let dir = tempfile::tempdir().unwrap();
        let w = write_all(&cdn_report(), dir.path()).unwrap();
        assert_eq!(w.cdn_plot.as_deref(), Some(dir.path().join("cdn.svg").as_path()));
        let j = json(dir.path());
        let c = &j["stages"][0]["cdn"];
        assert_eq!(c["cdn_hits"], 900, "{c}");
        assert_eq!(c["origin_requests"], 110);
        assert_eq!(c["origin"]["hit"], 100);
        assert_eq!(c["origin"]["miss"], 10);
        assert_eq!(c["no_answer"], 1);
        assert!(close(c["hit_ratio"].as_f64().unwrap(), 900.0 / 1011.0));
        assert!(close(c["origin_rate"].as_f64().unwrap(), 55.0));
        assert_eq!(c["purge"]["buckets"], 64);
        assert_eq!(c["first_second_hit_ratio"], 0.5);
        assert_eq!(c["hit_ratio_by_second"], serde_json::json!([0.5, 1.0]));
        assert_eq!(c["purge"]["purged"], 6400);
        assert_eq!(j["meta"]["cdn_purge"], "http://127.0.0.1:6081/");
        // A failed purge fails the run: the stage was not what it claims.
        assert_eq!(j["passed"], false);
        assert!(
            j["fail_reasons"].to_string().contains("stage 1: 1 of 4 purge requests failed"),
            "{}",
            j["fail_reasons"]
        );
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("## Through the CDN"), "{md}");
        assert!(
            md.contains(
                "| 1/4 | 64 | 6400 | 3.5 | 89.02% | 50.00% | 900 | 110 | 55.0 | 100 | 0 | 10 | 0 | 0 | 1 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 1 | 256 | 25600 (1 of 4 requests failed) |"), "{md}");
        let svg = fs::read_to_string(dir.path().join("cdn.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts = svg_texts(&svg);
        for label in [
            "CDN hit ratio (whole stage)",
            "CDN hit ratio in the first second of the stage",
            "origin HIT (L1)",
            "origin MISS (signed)",
            "CDN hits p99",
            "all answers p99.9",
        ] {
            assert!(texts.contains(&label.into()), "{label} missing: {texts:?}");
        }
        assert_eq!(texts.windows(3).filter(|w| *w == ["1/4", "1/2", "1"]).count(), 3, "{texts:?}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate");
    }

    #[test]
    fn without_a_cdn_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let w = write_all(&report(), dir.path()).unwrap();
        assert!(w.cdn_plot.is_none() && !dir.path().join("cdn.svg").exists());
        let j = json(dir.path());
        assert!(j["stages"][0].get("cdn").is_none());
        assert!(j["meta"].get("cdn_purge").is_none());
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(!md.contains("Through the CDN"));
    }
}
