//! `plot.svg`: throughput per stage (target, achieved, per outcome) above
//! latency percentiles per stage on a log axis, one colour per outcome in
//! both panels, with the stage names on the x axis.

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{or_unknown, US_PER_MS};
use crate::bench::results::{Outcome, RunReport};

/// The plot's size in pixels: wide enough for ~8 stage labels side by side.
const PLOT_SIZE: (u32, u32) = (1200, 1000);

pub(super) type PlotResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// X axis over stages: stage `i` sits at `i`, with half a stage of margin on
/// each side so a single stage still gets a non-empty range; ticks (and their
/// labels, the stage names) fall on stages only. plotters' own `f64` axis picks
/// "nice" ticks between stages, and `WithKeyPoints` loses label formatting, so
/// this small axis does both.
#[derive(Clone, Debug)]
pub(super) struct StageAxis {
    pub(super) stages: usize,
}

impl Ranged for StageAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.stages.max(1) as f64;
        let share = (value + 0.5) / span;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold lines and labels at stages; thin out if they would not fit.
        let max = hint.max_num_points().max(1);
        let step = self.stages.div_ceil(max).max(1);
        (0..self.stages).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..self.stages.max(1) as f64 - 0.5
    }
}

/// Series colours: the same outcome has the same colour in both panels.
pub(super) fn outcome_color(o: Outcome) -> RGBColor {
    match o {
        Outcome::Hit => RGBColor(0x2c, 0xa0, 0x2c),
        Outcome::HitL2 => RGBColor(0x17, 0xbe, 0xcf),
        Outcome::Miss => RGBColor(0xd6, 0x27, 0x28),
        Outcome::TryLater => RGBColor(0xff, 0x7f, 0x0e),
        Outcome::Error => RGBColor(0x94, 0x67, 0xbd),
    }
}

/// Draws one labelled line with a marker at each point, so a single stage (a
/// line of one point) still shows. Empty series are skipped, legend included.
pub(super) fn line<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<impl Ranged<ValueType = f64>, Y>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    label: &str,
) -> PlotResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    if points.is_empty() {
        return Ok(());
    }
    let style = color.stroke_width(width);
    chart
        .draw_series(LineSeries::new(points.clone(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, width + 2, color.filled())))?;
    Ok(())
}

/// The SVG: throughput per stage on top, latency percentiles below.
pub(super) fn plot_svg(report: &RunReport) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let m = &report.meta;
        let title = format!(
            "ocsp-origin bench: {} ({} loop), commit {}",
            or_unknown(&m.target),
            or_unknown(&m.mode),
            or_unknown(&m.commit)
        );
        let body = root.titled(&title, ("sans-serif", 24))?;
        let (top, bottom) = body.split_vertically(PLOT_SIZE.1 as i32 / 2 - 20);
        throughput_panel(&top, report)?;
        latency_panel(&bottom, report)?;
        root.present()?;
    }
    Ok(svg)
}

pub(super) fn stage_labels(report: &RunReport) -> impl Fn(&f64) -> String + '_ {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            report.stages.get(i as usize).map_or(String::new(), |s| s.name.clone())
        } else {
            String::new()
        }
    }
}

fn throughput_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &RunReport) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let stages = &report.stages;
    let x = |i: usize| i as f64;
    let target: Vec<_> =
        stages.iter().enumerate().filter_map(|(i, s)| Some((x(i), s.target_rate?))).collect();
    let achieved: Vec<_> = stages.iter().enumerate().map(|(i, s)| (x(i), s.rate())).collect();
    let by_outcome: Vec<(Outcome, Vec<(f64, f64)>)> = Outcome::ALL
        .iter()
        .filter(|o| report.count(**o) > 0)
        .map(|&o| (o, stages.iter().enumerate().map(|(i, s)| (x(i), s.outcome_rate(o))).collect()))
        .collect();
    let y_max = target
        .iter()
        .chain(&achieved)
        .chain(by_outcome.iter().flat_map(|(_, p)| p))
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max);

    let mut chart = ChartBuilder::on(area)
        .caption("Throughput per stage", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: stages.len() }, 0.0..y_max * 1.15)?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc("stage (share of traffic reaching the origin)")
        .y_desc("answers/s")
        .y_max_light_lines(1)
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    line(&mut chart, target, BLACK, 1, "target")?;
    line(&mut chart, achieved, BLUE, 3, "achieved (all outcomes)")?;
    for (o, points) in by_outcome {
        line(&mut chart, points, outcome_color(o), 1, o.name())?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn latency_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &RunReport) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let stages = &report.stages;
    // `None`: all outcomes merged. hit_l2 is its own group because a Redis
    // round trip sits between an L1 hit and a signature.
    let groups = [
        ("all", BLUE, None),
        ("hit", outcome_color(Outcome::Hit), Some(Outcome::Hit)),
        ("hit_l2", outcome_color(Outcome::HitL2), Some(Outcome::HitL2)),
        ("miss", outcome_color(Outcome::Miss), Some(Outcome::Miss)),
    ];
    // A stage without values for a group has no point.
    let mut series: Vec<Series> = Vec::new();
    for (name, color, outcome) in groups {
        let hs: Vec<Histogram<u64>> = stages
            .iter()
            .map(|s| outcome.map_or_else(|| s.by_outcome.merged(), |o| s.by_outcome.h[o.index()].clone()))
            .collect();
        for (q, qname, width) in [(0.5, "p50", 1), (0.99, "p99", 2), (0.999, "p99.9", 3)] {
            let points: Vec<(f64, f64)> = hs
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_empty())
                .map(|(i, h)| (i as f64, (h.value_at_quantile(q) as f64 / US_PER_MS).max(0.001)))
                .collect();
            series.push((format!("{name} {qname}"), color, width, points));
        }
    }
    latency_chart(
        area,
        report,
        "Latency per stage (ms, log scale)",
        "stage (share of traffic reaching the origin)",
        series,
    )
}

/// A line of a chart: (label, colour, width, (stage, value) points).
pub(super) type Series = (String, RGBColor, u32, Vec<(f64, f64)>);

/// A latency chart over the stages, in ms on a log axis, with a legend in
/// the upper left: the main plot's and the CDN plot's latency panels.
pub(super) fn latency_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &RunReport,
    caption: &str,
    x_desc: &str,
    series: Vec<Series>,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = log_range(series.iter().flat_map(|s| &s.3).map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(StageAxis { stages: report.stages.len() }, (lo..hi).log_scale())?;
    let labels = stage_labels(report);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("ms")
        .x_label_formatter(&labels)
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    for (label, color, width, points) in series {
        line(&mut chart, points, color, width, &label)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Draws a chart's legend at `position`.
pub(super) fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> PlotResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The range of a log axis over positive `values`, in whole decades, at
/// least two: plotters then labels only powers of ten (with one decade it
/// adds 0.2…0.9 ticks and labels the top twice). A log axis needs a positive,
/// non-empty range; with no values it is 1 µs … 1 s.
pub(super) fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() {
        // The 0.1% slack keeps the end decades inside the range despite float
        // rounding (0.1 × 10 × 10 > 10), so they get their labels.
        let lo = 10_f64.powf(lo.log10().floor());
        (lo * 0.999, 10_f64.powf(hi.log10().ceil()).max(lo * 100.0) * 1.001)
    } else {
        (0.001, 1000.0)
    }
}

/// A log-axis tick in ms without float noise (`0.30000000000000004` → `0.3`).
pub(super) fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::bench::report::fixtures::*;
    use crate::bench::report::write_all;

    #[test]
    fn svg_is_an_svg_with_every_stage_and_the_title() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let svg = fs::read_to_string(dir.path().join("plot.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = svg_texts(&svg);
        // The stage names label each panel's x axis, in order.
        let axis = ["1/4", "1/2", "1"];
        assert_eq!(texts.windows(3).filter(|w| *w == axis).count(), 2, "{texts:?}");
        assert!(texts.contains(&"ocsp-origin bench: 127.0.0.1:8080 (open loop), commit abc1234".into()));
        assert!(texts.contains(&"Throughput per stage".into()), "{texts:?}");
        assert!(texts.contains(&"Latency per stage (ms, log scale)".into()), "{texts:?}");
        for label in ["target", "achieved (all outcomes)", "hit_l2", "all p99.9", "miss p50"] {
            assert!(texts.contains(&label.into()), "legend {label} missing: {texts:?}");
        }
        // Log axis: decades only, 0.1 ms (hits at 0.25 ms) to 10 ms (misses at 5 ms).
        for tick in ["0.1", "1", "10"] {
            assert!(texts.contains(&tick.into()), "tick {tick} missing: {texts:?}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate");
    }
}
