#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 20); exits non-zero
# if any target crashes (a panic, a failed invariant, a sanitizer report) or
# does not build. See fuzz/README.md.
#
#   bash fuzz/run.sh            # 20 s per target
#   bash fuzz/run.sh 3600       # an hour per target
#   FUZZ_TARGETS="http_head" bash fuzz/run.sh 600
#   FUZZ_ARGS="-jobs=4 -workers=4" bash fuzz/run.sh 3600   # extra libFuzzer flags
#
# Engine: cargo-fuzz (libFuzzer) on the stable toolchain. cargo-fuzz passes
# nightly-only flags (-Zsanitizer=address and friends) to rustc; stable rustc
# accepts them when RUSTC_BOOTSTRAP=1 is set, which this script does for the
# fuzz build only. That is an escape hatch meant for building the compiler, not a
# supported interface: a future stable rustc may behave differently.
#
# New inputs libFuzzer finds go to fuzz/corpus-work/<target>/ (ignored by git);
# the committed seeds in fuzz/corpus/<target>/ are only read. A crashing input
# is written to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
targets=(${FUZZ_TARGETS:-http_head get_path ocsp_request})
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# -a: debug assertions (and overflow checks) on, as in tests.
build_flags=(-a)
cargo fuzz build "${build_flags[@]}"

# Inputs long enough to cross the default head limit (8192 bytes).
declare -A max_len=([http_head]=10000 [get_path]=4096 [ocsp_request]=4096)

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t" "corpus/$t"
    echo "== fuzz/$t: ${secs}s" >&2
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if ! cargo fuzz run "${build_flags[@]}" "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len="${max_len[$t]:-4096}" -timeout=10 \
        -print_final_stats=1 ${FUZZ_ARGS:-}; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz/run.sh: crash in ${failed[*]}; the input is under fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz/run.sh: no crash in ${targets[*]} (${secs}s each)" >&2
