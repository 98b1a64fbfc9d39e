//! Replays every fuzz seed (`fuzz/corpus/<target>/`) and every input a fuzz run
//! or property test once failed on (`tests/data/fuzz-regressions/<target>/`)
//! through the fuzz targets' own checks, under plain `cargo test`. The libFuzzer
//! build is too slow for CI on a small machine (see `fuzz/README.md`); this
//! keeps the invariants and the findings checked on every run.

use std::path::Path;

mod http_head {
    include!("../../fuzz/checks/http_head.rs");
}
mod get_path {
    include!("../../fuzz/checks/get_path.rs");
}
mod ocsp_request {
    include!("../../fuzz/checks/ocsp_request.rs");
}

/// Runs `check` on each file of the target's corpus and regressions; returns
/// how many seeds there were (a replay of nothing must not pass).
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = 0;
    for dir in [root.join("fuzz/corpus").join(target), root.join("tests/data/fuzz-regressions").join(target)]
    {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{} fails {target}'s checks", f.display());
            seeds += 1;
        }
    }
    seeds
}

#[test]
fn http_head_corpus_passes() {
    assert!(replay("http_head", http_head::check) >= 40);
}

#[test]
fn get_path_corpus_passes() {
    assert!(replay("get_path", get_path::check) >= 60);
}

#[test]
fn ocsp_request_corpus_passes() {
    assert!(replay("ocsp_request", ocsp_request::check) >= 8);
}
