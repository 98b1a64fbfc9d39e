#!/usr/bin/env bash
# ratchet.sh (device): the cache-drop ratchet on a 16-CPU machine, server and
# generator on separate CPUs — what the 2-vCPU development VM cannot show.
#
# USAGE
#   benches/device/ratchet.sh BIN OUT [SHARDS] [DURATION_SECS]
# The server (`serve`, demo P-256 CA with 400,000 certificates, software key,
# one signer thread per shard) is confined to CPUs 0..SHARDS-1 (default 4);
# `ocsp-origin bench` runs on the other CPUs with one thread each, 1000
# connections. First a closed-loop calibration with every serial warm gives
# the closed-loop maximum C; then open loop at 0.9·C, 0.8·C, … until hit p99
# is within SLO_MS (10): the sustained hit rate H (SLO_MS=0 uses C, as the
# first device runs did); then `--ratchet 1/16,1/8,1/4,1/2,1 --rate H`.
# Environment: SIGNERS (signer threads), INFLIGHT
# (cache.max_inflight_per_shard), LAG_MS (cache.max_shard_lag_ms, hits first;
# 0 = off), SLO_MS. Bounded: each bench stops by itself; the server is killed
# at the end.
set -euo pipefail
BIN=${1:?usage: ratchet.sh BIN OUT [SHARDS] [DURATION]}
OUT=${2:?usage: ratchet.sh BIN OUT [SHARDS] [DURATION]}
N=${3:-4}
DUR=${4:-8}
SIGNERS=${SIGNERS:-$N}          # signer threads (fewer than shards reserves CPU for hits)
INFLIGHT=${INFLIGHT:-4096}      # cache.max_inflight_per_shard
LAG_MS=${LAG_MS:-0}             # cache.max_shard_lag_ms (hits first; 0 = off)
SLO_MS=${SLO_MS:-10}            # hit p99 bound for the sustained rate (0 = closed-loop maximum)
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || true
CPUS=$(nproc); LAST=$((CPUS - 1)); GEN=$((CPUS - N))
(( GEN >= 1 )) || { echo "need more than $N CPUs" >&2; exit 1; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"   # free_port, wait_port
P="$(free_port)"
"$BIN" demo --dir "$OUT/ca" --certs 400000 --cores 1 --no-pin --listen "127.0.0.1:$P" >"$OUT/demo.log" 2>&1 &
D=$!; wait_port "$P" "$D"; kill "$D"; wait "$D" 2>/dev/null || true
P="$(free_port)"; A="$(free_port)"
printf 'listen = "127.0.0.1:%s"\ncores = %s\npin = true\n[signing]\nthreads = %s\n[cache]\nmax_inflight_per_shard = %s\nmax_shard_lag_ms = %s\n[limits]\nmax_connections_per_shard = 4096\n[admin]\nlisten = "127.0.0.1:%s"\n[[issuer]]\nname = "demo"\ncert = "%s"\nkey = "%s"\nindex = "%s"\n' \
    "$P" "$N" "$SIGNERS" "$INFLIGHT" "$LAG_MS" "$A" "$OUT/ca/ca.pem" "$OUT/ca/ca.key" "$OUT/ca/index.txt" >"$OUT/server.toml"
taskset -c "0-$((N - 1))" "$BIN" serve --config "$OUT/server.toml" >"$OUT/server.log" 2>&1 &
S=$!
trap 'kill $S 2>/dev/null; wait 2>/dev/null' EXIT
wait_port "$P" "$S"
B=(taskset -c "$N-$LAST" "$BIN" bench --config "$OUT/server.toml" --cpus "$N-$LAST" --threads "$GEN"
    --connections 1000 --server-cores "$N" --hsm-sessions "$SIGNERS")
"${B[@]}" --out "$OUT/calibrate" --duration 5 --keyspace 20000 --warm-passes 4 2>&1 | tail -3
RATE=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["stages"][0]["achieved_rate"]))' "$OUT/calibrate/summary.json")
echo "calibrated: $RATE hits/s closed loop with $N shards"
if ((SLO_MS > 0)); then
    CLOSED=$RATE; RATE=""
    for tenths in 9 8 7 6 5 4 3; do
        r=$((CLOSED * tenths / 10))
        "${B[@]}" --out "$OUT/sustain-$tenths" --rate "$r" --duration 5 --keyspace 20000 --warm-passes 1 2>&1 | tail -1
        p99=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["latency_ms_by_outcome"]["hit"]["p99"])' "$OUT/sustain-$tenths/summary.json")
        echo "open loop $r/s: hit p99 $p99 ms"
        if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$p99" "$SLO_MS"; then
            RATE=$r; break
        fi
    done
    [[ -n "$RATE" ]] || { echo "no rate down to 0.3 x $CLOSED kept hit p99 within $SLO_MS ms" >&2; exit 1; }
    echo "sustained: $RATE hits/s with hit p99 <= $SLO_MS ms (closed loop $CLOSED)"
fi
"${B[@]}" --out "$OUT/ratchet" --ratchet 1/16,1/8,1/4,1/2,1 --rate "$RATE" --duration "$DUR" 2>&1 | tail -8
python3 - "$OUT/ratchet/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["stages"]:
    by = st["latency_ms_by_outcome"]
    print(st["name"], "hit p99", by["hit"]["p99"] if by.get("hit") else None,
          "miss p99", by["miss"]["p99"] if by.get("miss") else None, "tryLater", st["counts"]["try_later"],
          "errors", st["counts"]["error"], "wrong", st["wrong"], "connect_errors", st["connect_errors"])
PY
