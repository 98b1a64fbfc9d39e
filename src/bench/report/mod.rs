//! Turns a [`RunReport`] into what a capacity planner reads: HdrHistogram
//! percentile files (`.hgrm`) and interval logs (`.hlog`) that HdrHistogram's
//! own tools plot and merge, one SVG with throughput and latency per stage, and
//! the capacity summary (`summary.json` for tools, `summary.md` for people).
//!
//! Everything is computed from the report alone, so the same run can be
//! re-exported and two runs compare file by file. Missing data (a stage with no
//! misses, a run with no hits) is reported as "not measured", never as a zero
//! that a planner would divide by.
//!
//! The entry point is [`write_all`]; each kind of file has its own module:
//! `exports` (`.hgrm`, `.hlog`), `summary` (the numbers and the verdict, as
//! `summary.json`), `capacity` (the capacity model inside the summary),
//! `markdown` (`summary.md`), `plot` (`plot.svg`) and, for a run behind a CDN
//! (`--cdn-purge`), `cdn` (its `summary.md` section and `cdn.svg`).

mod capacity;
mod cdn;
mod exports;
#[cfg(test)]
mod fixtures;
mod markdown;
mod plot;
mod stages;
mod summary;

use std::fs;
use std::path::{Path, PathBuf};

use self::cdn::cdn_plot_svg;
use self::exports::{write_hgrms, write_hlogs};
use self::plot::plot_svg;
use self::summary::Summary;
use super::results::RunReport;

/// Histograms hold µs; every export speaks ms, the unit latency budgets use.
const US_PER_MS: f64 = 1000.0;

/// Name of the merged-outcomes histogram and log (`STAGE_all.hgrm`, `all.hlog`).
const ALL: &str = "all";

/// The files [`write_all`] wrote, by kind, so a caller can list or upload them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// `STAGE_OUTCOME.hgrm` and `STAGE_all.hgrm`, in stage then outcome order.
    pub hgrm: Vec<PathBuf>,
    /// `OUTCOME.hlog` and `all.hlog`.
    pub hlog: Vec<PathBuf>,
    /// `plot.svg`.
    pub plot: PathBuf,
    /// `summary.json`.
    pub summary_json: PathBuf,
    /// `summary.md`.
    pub summary_md: PathBuf,
    /// `cdn.svg`, for a run behind a CDN.
    pub cdn_plot: Option<PathBuf>,
}

impl Written {
    /// Every file: histograms, interval logs, plot, JSON and Markdown
    /// summary, and the CDN plot if there is one.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.hgrm
            .iter()
            .chain(&self.hlog)
            .map(PathBuf::as_path)
            .chain([self.plot.as_path(), self.summary_json.as_path(), self.summary_md.as_path()])
            .chain(self.cdn_plot.as_deref())
    }
}

/// Why an export failed; each names the file (or directory) involved.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Creating the output directory or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stage slug would not make a safe, unique file name or log tag.
    #[error("{}: stage slug {slug:?} {reason}", path.display())]
    BadSlug {
        /// The output directory.
        path: PathBuf,
        /// The offending slug.
        slug: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Encoding an interval log failed.
    #[error("{}: interval log: {message}", path.display())]
    IntervalLog {
        /// The `.hlog` file.
        path: PathBuf,
        /// The serializer's or writer's message.
        message: String,
    },
    /// Drawing the plot failed.
    #[error("{}: plot: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// Serializing the JSON summary failed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

/// Writes every export of `report` into `out_dir` (created if missing):
/// `STAGE_OUTCOME.hgrm` / `STAGE_all.hgrm`, `OUTCOME.hlog` / `all.hlog`,
/// `plot.svg`, `summary.json` and `summary.md`; `cdn.svg` behind a CDN.
///
/// Stage slugs become file names and log tags, so they are checked first
/// (non-empty, `[A-Za-z0-9_.-]`, unique) and nothing is written if one is bad.
pub fn write_all(report: &RunReport, out_dir: &Path) -> Result<Written, ReportError> {
    check_slugs(report, out_dir)?;
    fs::create_dir_all(out_dir).map_err(|source| ReportError::Io { path: out_dir.to_path_buf(), source })?;

    let mut written = Written::default();
    write_hgrms(report, out_dir, &mut written)?;
    write_hlogs(report, out_dir, &mut written)?;

    let summary = Summary::new(report);
    written.summary_json = out_dir.join("summary.json");
    let json = serde_json::to_vec_pretty(&summary)
        .map_err(|source| ReportError::Json { path: written.summary_json.clone(), source })?;
    write_file(&written.summary_json, &json)?;
    written.summary_md = out_dir.join("summary.md");
    write_file(&written.summary_md, summary.markdown().as_bytes())?;

    written.plot = out_dir.join("plot.svg");
    let svg = plot_svg(report)
        .map_err(|e| ReportError::Plot { path: written.plot.clone(), message: e.to_string() })?;
    write_file(&written.plot, svg.as_bytes())?;
    let cdn_path = out_dir.join("cdn.svg");
    if let Some(svg) = cdn_plot_svg(report)
        .map_err(|e| ReportError::Plot { path: cdn_path.clone(), message: e.to_string() })?
    {
        write_file(&cdn_path, svg.as_bytes())?;
        written.cdn_plot = Some(cdn_path);
    }
    Ok(written)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    fs::write(path, bytes).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
}

/// Slugs name files and tag interval-log lines: a `/` would escape `out_dir`,
/// a `,` or space would break the log's `Tag=` field, a duplicate would
/// silently overwrite another stage's files.
fn check_slugs(report: &RunReport, out_dir: &Path) -> Result<(), ReportError> {
    let bad =
        |slug: &str, reason| ReportError::BadSlug { path: out_dir.to_path_buf(), slug: slug.into(), reason };
    for (i, s) in report.stages.iter().enumerate() {
        if s.slug.is_empty() || s.slug == "." || s.slug == ".." {
            return Err(bad(&s.slug, "is not a file name"));
        }
        if !s.slug.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(bad(&s.slug, "may only hold ASCII letters, digits, '_', '-' and '.'"));
        }
        if report.stages[..i].iter().any(|earlier| earlier.slug == s.slug) {
            return Err(bad(&s.slug, "names more than one stage"));
        }
    }
    Ok(())
}

/// Shown for an empty run description, so a report never has a blank.
fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "unknown"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::fixtures::*;
    use super::{write_all, ReportError};

    #[test]
    fn writes_every_file_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/out");
        let w = write_all(&report(), &out).unwrap();
        let mut names: Vec<_> =
            w.files().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        let mut expected: Vec<String> = [
            "s1_1of4_hit.hgrm",
            "s1_1of4_miss.hgrm",
            "s1_1of4_all.hgrm",
            "s2_1of2_hit.hgrm",
            "s2_1of2_hit_l2.hgrm",
            "s2_1of2_miss.hgrm",
            "s2_1of2_all.hgrm",
            "s3_1of1_hit.hgrm",
            "s3_1of1_miss.hgrm",
            "s3_1of1_all.hgrm",
            "hit.hlog",
            "hit_l2.hlog",
            "miss.hlog",
            "all.hlog",
            "plot.svg",
            "summary.json",
            "summary.md",
        ]
        .map(String::from)
        .to_vec();
        expected.sort();
        assert_eq!(names, expected);
        for f in w.files() {
            assert!(f.starts_with(&out), "{}", f.display());
            assert!(fs::metadata(f).unwrap().len() > 0, "{} is empty", f.display());
        }
        // No values, no file: outcomes that never happened leave nothing behind.
        assert!(!out.join("try_later.hlog").exists());
        assert!(!out.join("s1_1of4_hit_l2.hgrm").exists());
    }

    #[test]
    fn unsafe_or_duplicate_slugs_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for slug in ["../escape", "a,b", "", "s1_1of4"] {
            let mut r = report();
            r.stages[1].slug = slug.into();
            let e = write_all(&r, &out).unwrap_err();
            assert!(matches!(e, ReportError::BadSlug { .. }), "{slug}: {e}");
            assert!(e.to_string().contains(&out.display().to_string()), "{e}");
            assert!(!out.exists());
        }
    }
}
