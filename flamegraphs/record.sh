#!/usr/bin/env bash
# record.sh: flamegraphs of the hit path and the miss path under bench load.
#
# USAGE
#   flamegraphs/record.sh [SUFFIX]   (writes hit_bench_SUFFIX.svg, miss_bench_SUFFIX.svg here)
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary (else cargo build --release)
# Needs perf (Debian linux-perf) and inferno (`cargo install inferno`).
#
# One shard pinned to CPU 0 (`serve`, demo P-256 CA with 300,000 certificates,
# software key, one signer thread), `ocsp-origin bench` pinned to CPU 1, closed
# loop, 64 connections. Hits: 1000 serials warmed 8 times. Misses: every request
# a serial never asked before (`--cold 1 --sequential`). perf samples the
# server's threads with `cpu-clock` (VMs without hardware counters) at 1999 Hz
# for 4 s in the middle of each run, DWARF call graphs.
set -euo pipefail
SUFFIX=${1:-$(git rev-parse --short HEAD 2>/dev/null || echo now)}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=benches/e2e/lib.sh
die() { echo "record: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
source "$REPO/benches/e2e/lib.sh"
command -v perf >/dev/null || die "perf is required (apt-get install linux-perf)"
command -v inferno-flamegraph >/dev/null || die "inferno is required (cargo install inferno)"
BIN="${OCSP_ORIGIN_BIN:-}"
if [[ -z "$BIN" ]]; then (cd "$REPO" && cargo build --release >&2); BIN="$REPO/target/release/ocsp-origin"; fi
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
WORK="$(mktemp -d)"
SERVER=""
trap '[[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

P="$(free_port)"
"$BIN" demo --dir "$WORK/ca" --certs 300000 --cores 1 --no-pin --listen "127.0.0.1:$P" >"$WORK/demo.log" 2>&1 &
D=$!
wait_http "http://127.0.0.1:$P/" "$D" demo "$WORK/demo.log"
kill "$D"; wait "$D" 2>/dev/null || true

record() { # NAME TITLE BENCH-ARGS...
    local name=$1 title=$2
    shift 2
    local port
    port="$(free_port)"
    printf 'listen = "127.0.0.1:%s"\ncores = 1\npin = true\n[signing]\nthreads = 1\n[[issuer]]\nname = "demo"\ncert = "%s"\nkey = "%s"\nindex = "%s"\n' \
        "$port" "$WORK/ca/ca.pem" "$WORK/ca/ca.key" "$WORK/ca/index.txt" >"$WORK/$name.toml"
    taskset -c 0 "$BIN" serve --config "$WORK/$name.toml" >"$WORK/$name-server.log" 2>&1 &
    SERVER=$!
    wait_http "http://127.0.0.1:$port/" "$SERVER" server "$WORK/$name-server.log"
    taskset -c 1 "$BIN" bench --config "$WORK/$name.toml" --out "$WORK/$name" --cpus 1 --duration 10 \
        --connections 64 "$@" >"$WORK/$name-bench.txt" 2>&1 &
    local b=$!
    sleep 5
    perf record -e cpu-clock -F 1999 -g --call-graph dwarf,16384 -p "$SERVER" -o "$WORK/$name.perf" -- sleep 4 \
        >/dev/null 2>&1
    wait "$b" || { cat "$WORK/$name-bench.txt"; die "bench failed"; }
    tail -3 "$WORK/$name-bench.txt" >&2
    perf script -i "$WORK/$name.perf" 2>/dev/null | inferno-collapse-perf |
        inferno-flamegraph --title "$title, commit $COMMIT" >"$HERE/${name}_bench_$SUFFIX.svg"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    SERVER=""
    log "wrote $HERE/${name}_bench_$SUFFIX.svg"
}
record hit "ocsp-origin hit path (1 shard, bench closed loop, 1000 warm serials)" \
    --keyspace 1000 --warm-passes 8
record miss "ocsp-origin miss path (1 shard + 1 signer, bench --cold 1 --sequential)" \
    --cold 1 --sequential --keyspace 140000 --warm-passes 0
