#!/usr/bin/env bash
# measure.sh: the measured effect of each tuning knob, with `ocsp-origin bench`
# against `ocsp-origin serve` on loopback. One run per variant, same machine,
# same minute: compare the rows with each other, not with other machines.
#
# USAGE
#   tuning/measure.sh [--out DIR] [--duration SECS] [--only VARIANT,VARIANT]
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary
#
# Variants (each: a fresh server, then one bench run):
#   pin on / off             hits, closed loop, 1000 warm serials
#   cores 1 / 2              same
#   l1_entries 100000 / 2000 20000 serials, Zipf 1: hit share and rate
#   signing.batch 1 / 16     miss storm (every serial cold), closed loop
#   queue_depth 32 / 1024    miss storm, open loop above the signing rate
#   listen_backlog 8 / 4096  2000 connections opened at once
#   RLIMIT_NOFILE 512        2000 connections against a low fd limit
#   RLIMIT_MEMLOCK 16 KiB    start-up with too little lockable memory
# Writes DIR/tuning.md (the table) and each run's bench exports.
set -euo pipefail
OUT=""
DURATION=6
ONLY=""
die() { echo "measure: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="${2:?}"; shift 2 ;;
        --duration) DURATION="${2:?}"; shift 2 ;;
        --only) ONLY="${2:?}"; shift 2 ;;
        -h|--help) sed -n '/^# USAGE/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1" ;;
    esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive integer"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/e2e/lib.sh
source "$REPO/benches/e2e/lib.sh"
OUT="${OUT:-$REPO/bench-out/tuning-$(date +%s)}"
mkdir -p "$OUT"
if [[ -n "${OCSP_ORIGIN_BIN:-}" ]]; then BIN="$OCSP_ORIGIN_BIN"; else
    (cd "$REPO" && cargo build --release >&2); BIN="$REPO/target/release/ocsp-origin"; fi
export OCSP_ORIGIN_COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"

SERVER_PID=""
cleanup() { [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; true; }
trap cleanup EXIT

CA="$OUT/ca"
P="$(free_port)"
"$BIN" demo --dir "$CA" --certs 200000 --cores 1 --no-pin --listen "127.0.0.1:$P" >"$OUT/demo.log" 2>&1 &
D=$!
wait_http "http://127.0.0.1:$P/" "$D" demo "$OUT/demo.log"
kill "$D"; wait "$D" 2>/dev/null || true

# variant NAME "TOML LINES" "ULIMIT ARGS" BENCH ARGS...
variant() {
    local name=$1 toml=$2 limits=$3
    shift 3
    [[ -z "$ONLY" || ",$ONLY," == *",$name,"* ]] || return 0
    local port
    port="$(free_port)"
    printf 'listen = "127.0.0.1:%s"\n%b\n[[issuer]]\nname = "demo"\ncert = "%s"\nkey = "%s"\nindex = "%s"\n' \
        "$port" "$toml" "$CA/ca.pem" "$CA/ca.key" "$CA/index.txt" >"$OUT/$name.toml"
    # shellcheck disable=SC2086
    (ulimit $limits 2>/dev/null; exec "$BIN" serve --config "$OUT/$name.toml") >"$OUT/$name-server.log" 2>&1 &
    SERVER_PID=$!
    if ! wait_port "$port" "$SERVER_PID"; then
        echo "| $name | server did not start: $(tail -1 "$OUT/$name-server.log" | cut -c1-120) |" >>"$OUT/rows.md"
        SERVER_PID=""
        return
    fi
    "$BIN" bench --config "$OUT/$name.toml" --out "$OUT/$name" --duration "$DURATION" "$@" \
        >"$OUT/$name-bench.txt" 2>&1 || true
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    python3 - "$OUT/$name/summary.json" "$name" >>"$OUT/rows.md" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"| {sys.argv[2]} | bench failed: {e} |"); sys.exit()
st = s["stages"][0]; c = st["counts"]; n = max(1, sum(c.values()))
print(f"| {sys.argv[2]} | {st['achieved_rate']:.0f} | {(c['hit'] + c['hit_l2']) / n:.3f} | {c['miss'] / st['duration_s']:.0f} | "
      f"{c['try_later']} | {c['error']} | {st['connect_errors']} | {st['latency_ms']['p50']:.2f} | "
      f"{st['latency_ms']['p99']:.2f} | {st['wrong']} |")
PY
    log "$(tail -1 "$OUT/rows.md")"
}

: >"$OUT/rows.md"
HITS=(--keyspace 1000 --warm-passes 8)
STORM=(--cold 1 --keyspace 60000 --zipf 0 --warm-passes 0 --connections 64)
variant pin-on "cores = 2\npin = true" "" "${HITS[@]}" --connections 64
variant pin-off "cores = 2\npin = false" "" "${HITS[@]}" --connections 64
variant cores-1 "cores = 1\npin = false" "" "${HITS[@]}" --connections 64
variant cores-2 "cores = 2\npin = false" "" "${HITS[@]}" --connections 64
variant l1-100000 "cores = 2\npin = false\n[cache]\nl1_entries = 100000" "" --keyspace 20000 --warm-passes 1
variant l1-2000 "cores = 2\npin = false\n[cache]\nl1_entries = 2000" "" --keyspace 20000 --warm-passes 1
variant batch-1 "cores = 2\npin = false\n[signing]\nbatch = 1" "" "${STORM[@]}"
variant batch-16 "cores = 2\npin = false\n[signing]\nbatch = 16" "" "${STORM[@]}"
variant queue-32 "cores = 2\npin = false\n[signing]\nqueue_depth = 32" "" "${STORM[@]}" --rate 60000
variant queue-1024 "cores = 2\npin = false\n[signing]\nqueue_depth = 1024" "" "${STORM[@]}" --rate 60000
variant backlog-8 "cores = 2\npin = false\n[limits]\nlisten_backlog = 8" "" "${HITS[@]}" --connections 2000 --timeout-ms 5000
variant backlog-4096 "cores = 2\npin = false\n[limits]\nlisten_backlog = 4096" "" "${HITS[@]}" --connections 2000 --timeout-ms 5000
variant nofile-512 "cores = 2\npin = false" "-n 512" "${HITS[@]}" --connections 2000 --timeout-ms 5000
variant memlock-16k "cores = 2\npin = false" "-l 16" "${HITS[@]}" --connections 64

{
    echo "Commit \`$OCSP_ORIGIN_COMMIT\`, $(date -u +%Y-%m-%d), $(uname -srm), $(nproc) CPUs; bench and server share the CPUs."
    echo "Command: \`tuning/measure.sh --duration $DURATION\`"
    echo
    echo "| variant | answers/s | hit share | signed/s | tryLater | errors | connect errors | p50 ms | p99 ms | wrong |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$OUT/rows.md"
} >"$OUT/tuning.md"
cat "$OUT/tuning.md"
