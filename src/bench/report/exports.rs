//! The histogram exports: one HdrHistogram percentile file (`.hgrm`) per
//! stage and outcome, and one interval log (`.hlog`) per outcome over the
//! whole run, in the formats HdrHistogram's own tools plot and merge, so a
//! run can be compared with any other HdrHistogram-based measurement.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::{write_file, ReportError, Written, ALL, US_PER_MS};
use crate::bench::results::{Interval, Outcome, RunReport};
use crate::metrics::hgrm;

/// One `.hgrm` per stage and outcome with values, and one per stage with all
/// outcomes merged (written even when empty, so every stage has a file).
pub(super) fn write_hgrms(
    report: &RunReport,
    out_dir: &Path,
    written: &mut Written,
) -> Result<(), ReportError> {
    for stage in &report.stages {
        for o in Outcome::ALL {
            let h = &stage.by_outcome.h[o.index()];
            if h.is_empty() {
                continue;
            }
            let path = out_dir.join(format!("{}_{}.hgrm", stage.slug, o.name()));
            write_file(&path, hgrm(h, US_PER_MS).as_bytes())?;
            written.hgrm.push(path);
        }
        let path = out_dir.join(format!("{}_{ALL}.hgrm", stage.slug));
        write_file(&path, hgrm(&stage.by_outcome.merged(), US_PER_MS).as_bytes())?;
        written.hgrm.push(path);
    }
    Ok(())
}

/// One interval log per outcome that has values anywhere in the run, plus
/// `all.hlog`. Every interval of every stage is written, empty ones too: a
/// second without misses is data (it shows where a stage stalled or where the
/// cache had warmed), and HdrHistogram's tools expect an unbroken series.
pub(super) fn write_hlogs(
    report: &RunReport,
    out_dir: &Path,
    written: &mut Written,
) -> Result<(), ReportError> {
    for o in Outcome::ALL {
        let any = report.count(o) > 0
            || report.stages.iter().flat_map(|s| &s.intervals).any(|i| i.by_outcome.count(o) > 0);
        if !any {
            continue;
        }
        let path = out_dir.join(format!("{}.hlog", o.name()));
        let log = interval_log(report, o.name(), |i| i.by_outcome.h[o.index()].clone())
            .map_err(|message| ReportError::IntervalLog { path: path.clone(), message })?;
        write_file(&path, &log)?;
        written.hlog.push(path);
    }
    let path = out_dir.join(format!("{ALL}.hlog"));
    let log = interval_log(report, ALL, |i| i.by_outcome.merged())
        .map_err(|message| ReportError::IntervalLog { path: path.clone(), message })?;
    write_file(&path, &log)?;
    written.hlog.push(path);
    Ok(())
}

/// Renders an interval log in the layout of HdrHistogram's `HistogramLogWriter`:
/// comments, `StartTime`/`BaseTime` (both the run's start, so an interval's
/// timestamp is seconds since the run started and its wall time is
/// `BaseTime + timestamp` = `started_unix + start_s`), the CSV legend, then one
/// `Tag=<stage slug>,` line per interval with V2-deflate histograms and the max
/// in ms.
///
/// The crate's builder writes no legend, and its writer holds the buffer while
/// it lives, so the header goes through one writer, the legend is appended,
/// and a second writer (which only repeats the `MaxValueDivisor` comment)
/// writes the intervals.
fn interval_log(
    report: &RunReport,
    what: &str,
    pick: impl Fn(&Interval) -> Histogram<u64>,
) -> Result<Vec<u8>, String> {
    let start = UNIX_EPOCH + Duration::from_secs(report.meta.started_unix);
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment(&format!("ocsp-origin bench, {what} answers, latency in ms"))
        .add_comment("Histogram log format version 1.3")
        .with_start_time(start)
        .with_base_time(start)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| e.to_string())?;
    buf.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    let mut log = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(US_PER_MS)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| e.to_string())?;
    for stage in &report.stages {
        // check_slugs admits only characters a tag may hold.
        let tag = Tag::new(&stage.slug).ok_or_else(|| format!("{:?} is not a valid tag", stage.slug))?;
        for interval in &stage.intervals {
            let h = pick(interval);
            log.write_histogram(&h, secs(interval.start_s), secs(interval.length_s), Some(tag))
                .map_err(|e| e.to_string())?;
        }
    }
    drop(log);
    Ok(buf)
}

/// Seconds as a `Duration`, treating negative or non-finite input as 0 rather
/// than panicking the way `Duration::from_secs_f64` would.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    use super::secs;
    use crate::bench::report::fixtures::*;
    use crate::bench::report::{write_all, US_PER_MS};
    use std::time::Duration;

    #[test]
    fn hgrm_is_in_ms_and_ends_with_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        write_all(&report(), dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join("s1_1of4_hit.hgrm")).unwrap();
        let footer: Vec<_> = text.lines().rev().take(3).collect();
        assert!(footer[0].starts_with("#[Buckets"), "{text}");
        assert!(footer[1].starts_with("#[Max     =        0.250, Total count    =         1800]"), "{text}");
        let all = fs::read_to_string(dir.path().join("s1_1of4_all.hgrm")).unwrap();
        assert!(all.contains("Total count    =         2000]"), "{all}");
    }

    #[test]
    fn hlog_round_trips_counts_tags_and_times() {
        let r = report();
        let dir = tempfile::tempdir().unwrap();
        write_all(&r, dir.path()).unwrap();
        let text = fs::read(dir.path().join("all.hlog")).unwrap();
        let s = String::from_utf8_lossy(&text);
        assert!(s.contains(&format!("#[StartTime: {STARTED}.000 (seconds since epoch)]")), "{s}");
        assert!(s.contains(
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        ));

        let mut base = None;
        let mut seen = Vec::new();
        let mut deser = Deserializer::new();
        for entry in IntervalLogIterator::new(&text) {
            match entry.unwrap() {
                LogEntry::BaseTime(t) => base = Some(t),
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(i) => {
                    let bytes =
                        base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = deser.deserialize(&mut bytes.as_slice()).unwrap();
                    assert!(close(i.max(), h.max() as f64 / US_PER_MS), "{} vs {}", i.max(), h.max());
                    seen.push((i.tag().unwrap().as_str().to_owned(), i.start_timestamp(), h.len()));
                }
            }
        }
        assert_eq!(base, Some(Duration::from_secs(STARTED)));
        let expected: Vec<_> = r
            .stages
            .iter()
            .flat_map(|s| {
                s.intervals.iter().map(|i| (s.slug.clone(), secs(i.start_s), i.by_outcome.merged().len()))
            })
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(seen.iter().map(|s| s.2).sum::<u64>(), 9_000);

        // Per-outcome logs hold only that outcome.
        let text = fs::read(dir.path().join("hit_l2.hlog")).unwrap();
        let counts: Vec<_> = IntervalLogIterator::new(&text)
            .filter_map(|e| match e.unwrap() {
                LogEntry::Interval(i) => {
                    let bytes =
                        base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = deser.deserialize(&mut bytes.as_slice()).unwrap();
                    Some((i.tag().unwrap().as_str().to_owned(), h.len()))
                }
                _ => None,
            })
            .collect();
        let tags = |t: &str, n| (t.to_owned(), n);
        assert_eq!(
            counts,
            vec![
                tags("s1_1of4", 0),
                tags("s1_1of4", 0),
                tags("s2_1of2", 300),
                tags("s2_1of2", 300),
                tags("s3_1of1", 0),
                tags("s3_1of1", 0)
            ]
        );
    }
}
