#!/usr/bin/env bash
# cdn_ratchet.sh: the cache-drop ratchet through a real CDN: a Varnish with
# tuning/varnish/ocsp-origin.vcl (xkey purges) in front of one or two
# ocsp-origin nodes, driven by `ocsp-origin bench --cdn-purge`.
#
# WHAT IT RUNS (every process on free loopback ports, all stopped on exit)
#   CA        `ocsp-origin demo` writes a demo CA with --certs certificates
#             (index.txt, software P-256 key) and is stopped.
#   origins   --nodes 1: one `ocsp-origin serve` with `[cdn]` in its config
#             (so every signed 200 carries `xkey: ocsp-c-… ocsp-i-… ocsp-b-xx`);
#             --nodes 2: two of them sharing a private `redis-server`
#             (`[redis]`: a miss on one node is a HIT-L2 on the other).
#   varnish   /usr/sbin/varnishd -F with the VCL, its `# BEGIN backends` …
#             `# END backends` block replaced by the origin nodes (one
#             round-robin director), -s malloc,--varnish-mem.
#   bench     `ocsp-origin bench --target <varnish> --cdn-purge <varnish>
#             --ratchet $RATCHET --rate $RATE`: the warm-up walks every warm
#             serial in every request form (POST, each GET spelling) through
#             Varnish, so the CDN holds the keyspace; then each stage purges
#             its share f of the 256 bucket tags (buckets 0 .. round(f·256)-1)
#             and sends --rate requests/s of verified Zipf traffic over the
#             whole warm keyspace for --duration seconds. Every answer is
#             checked (signature, CertID, status, validity); a wrong answer
#             fails the script.
#   Results in --out (default benches/results/cdn-ratchet-<date>): per round
#   round<r>/ with the bench's exports (summary.md/json with the "Through the
#   CDN" table, plot.svg, cdn.svg, per-stage all-outcome .hgrm, all.hlog, the
#   origin's metrics, what the bench printed) and varnishstat; varnish.vcl as
#   run; results.md (commit, machine, command, per-stage medians over the
#   rounds and each round's table).
#   The whole script is bounded by --max-secs (a watchdog stops it).
#
# USAGE
#   benches/e2e/cdn_ratchet.sh [--out DIR] [--nodes 1|2] [--rate R] [--duration SECS]
#                              [--ratchet LIST] [--certs N] [--keyspace K] [--connections C]
#                              [--threads T] [--cores N] [--warm-passes P] [--warm-secs S]
#                              [--vcl FILE] [--varnish-mem SIZE] [--rounds N] [--max-secs S]
#                              [--server-cpus LIST] [--bench-cpus LIST] [--varnish-cpus LIST]
#   defaults: --nodes 1 --rate 6000 --duration 10 --ratchet 1/16,1/8,1/4,1/2,1
#             --certs 20000 (keyspace: every unexpired one) --connections 400
#             --threads 1 --cores 1 --warm-passes 7 (one per request form)
#             --warm-secs 180 --varnish-mem 256m --rounds 1
#             --max-secs 300 + rounds x (warm-secs + stages x (duration + 1) + 60)
#   --rounds      run the bench N times against the same Varnish and origin
#                 (each round warms Varnish again first); results.md has the
#                 per-stage medians over the rounds and every round's table
#   --rate        the same at every stage (the CDN takes all traffic; the purge
#                 decides what reaches the origin). 6000/s: on the 2-vCPU VM of
#                 benches/RESULTS.md, one node + Varnish + the generator kept
#                 p99 within a few ms up to 10000/s; at 15000/s the full purge
#                 stage's p99 went to ~70 ms.
#   --*-cpus      run that part under `taskset -c LIST`
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary
#   Needs (Debian): varnish varnish-modules (xkey, bodyaccess), redis-server
#   (--nodes 2), openssl, curl, python3.
set -euo pipefail

CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE="${CMDLINE% }"
[[ -n "${OCSP_ORIGIN_BIN:-}" ]] && CMDLINE="OCSP_ORIGIN_BIN=$(printf '%q' "$OCSP_ORIGIN_BIN") $CMDLINE"

OUT=""
NODES=1
RATE=6000
DURATION=10
RATCHET="1/16,1/8,1/4,1/2,1"
CERTS=20000
KEYSPACE=""
CONNECTIONS=400
THREADS=1
CORES=1
WARM_PASSES=7
WARM_SECS=180
VCL=""
VARNISH_MEM=256m
MAX_SECS=""
ROUNDS=1
SERVER_CPUS=""
BENCH_CPUS=""
VARNISH_CPUS=""

die() { echo "cdn_ratchet: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
usage() { sed -n '/^# USAGE/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="${2:?}"; shift 2 ;;
        --nodes) NODES="${2:?}"; shift 2 ;;
        --rate) RATE="${2:?}"; shift 2 ;;
        --duration) DURATION="${2:?}"; shift 2 ;;
        --ratchet) RATCHET="${2:?}"; shift 2 ;;
        --certs) CERTS="${2:?}"; shift 2 ;;
        --keyspace) KEYSPACE="${2:?}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --cores) CORES="${2:?}"; shift 2 ;;
        --warm-passes) WARM_PASSES="${2:?}"; shift 2 ;;
        --warm-secs) WARM_SECS="${2:?}"; shift 2 ;;
        --vcl) VCL="${2:?}"; shift 2 ;;
        --varnish-mem) VARNISH_MEM="${2:?}"; shift 2 ;;
        --max-secs) MAX_SECS="${2:?}"; shift 2 ;;
        --rounds) ROUNDS="${2:?}"; shift 2 ;;
        --server-cpus) SERVER_CPUS="${2:?}"; shift 2 ;;
        --bench-cpus) BENCH_CPUS="${2:?}"; shift 2 ;;
        --varnish-cpus) VARNISH_CPUS="${2:?}"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
[[ "$NODES" == 1 || "$NODES" == 2 ]] || die "--nodes must be 1 or 2"
# Default bound: setup, then per round the longest warm-up, every stage and slack.
STAGES="$(tr ',' '\n' <<<"$RATCHET" | grep -c .)"
MAX_SECS="${MAX_SECS:-$((300 + ROUNDS * (WARM_SECS + STAGES * (DURATION + 1) + 60)))}"
for v in RATE DURATION CERTS CONNECTIONS THREADS CORES WARM_SECS MAX_SECS ROUNDS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, got '${!v}'"
done
[[ "$WARM_PASSES" =~ ^[0-9]+$ ]] || die "--warm-passes must be a whole number"
[[ -z "$KEYSPACE" || "$KEYSPACE" =~ ^[1-9][0-9]*$ ]] || die "--keyspace must be a positive integer"
((DURATION <= 600)) || die "--duration is at most 600 s per stage"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VCL="${VCL:-$REPO/tuning/varnish/ocsp-origin.vcl}"
[[ -f "$VCL" ]] || die "no VCL at $VCL"
grep -q '^# BEGIN backends' "$VCL" && grep -q '^# END backends' "$VCL" ||
    die "$VCL has no '# BEGIN backends' ... '# END backends' block to substitute"
OUT="${OUT:-$REPO/benches/results/cdn-ratchet-$(date -u +%Y-%m-%d)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# Logs, configs, the CA and Varnish's work directory: a scratch directory.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cdn-ratchet.XXXXXX")"
# varnishd's child drops to its own user and reads its work directory here.
chmod 755 "$WORK"

VARNISHD=/usr/sbin/varnishd
[[ -x "$VARNISHD" ]] || die "$VARNISHD is missing (Debian: apt-get install varnish varnish-modules)"
for t in openssl curl python3; do command -v "$t" >/dev/null || die "missing: $t"; done
((NODES == 1)) || command -v redis-server >/dev/null || die "--nodes 2 needs redis-server"

PIDS=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "$rc" -ne 0 ]]; then
        log "failed (exit $rc); logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# The watchdog: the whole run is bounded, whatever hangs.
# (Its own stderr is dropped: stopping it at the end must not print
# "Terminated"; its message goes to the script's stderr through fd 3.)
( sleep "$MAX_SECS"; echo "cdn_ratchet: --max-secs $MAX_SECS reached, stopping" >&3; kill -TERM $$ ) 3>&2 2>/dev/null &
PIDS+=($!)

if [[ -n "${OCSP_ORIGIN_BIN:-}" ]]; then
    BIN="$OCSP_ORIGIN_BIN"
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release >&2)
    BIN="$REPO/target/release/ocsp-origin"
fi
[[ -x "$BIN" ]] || die "$BIN is not executable"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$REPO" diff --quiet 2>/dev/null || COMMIT="$COMMIT + working tree"
export OCSP_ORIGIN_COMMIT="$COMMIT"
MACHINE="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) CPUs"

# ------------------------------------------------------------ the CA
CA="$WORK/ca"
log "demo CA with $CERTS certificates"
port="$(free_port)"
"$BIN" demo --dir "$CA" --certs "$CERTS" --cores 1 --no-pin --listen "127.0.0.1:$port" >"$WORK/demo.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_http "http://127.0.0.1:$port/" "$pid" demo "$WORK/demo.log"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

# ------------------------------------------------------------ Redis (2 nodes)
REDIS_TOML=()
if ((NODES == 2)); then
    RPORT="$(free_port)"
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
        >"$WORK/redis.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$RPORT" "$pid" || { tail -n 20 "$WORK/redis.log" >&2; die "redis-server did not start"; }
    REDIS_TOML=("[redis]" "url = \"redis://127.0.0.1:$RPORT\"")
fi

# ------------------------------------------------------------ origin nodes
NODE_PORTS=()
ADMIN_PORTS=()
for ((n = 1; n <= NODES; n++)); do
    port="$(free_port)"; admin="$(free_port)"
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "cores = $CORES"
        echo "pin = false"
        echo "[cdn]"
        ((${#REDIS_TOML[@]} == 0)) || printf '%s\n' "${REDIS_TOML[@]}"
        echo "[[issuer]]"
        echo "name = \"demo\""
        echo "cert = \"$CA/ca.pem\""
        echo "key = \"$CA/ca.key\""
        echo "index = \"$CA/index.txt\""
        echo "[admin]"
        echo "listen = \"127.0.0.1:$admin\""
    } >"$WORK/node$n.toml"
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BIN" serve --config "$WORK/node$n.toml" >"$WORK/node$n.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$pid" "node$n" "$WORK/node$n.log"
    NODE_PORTS+=("$port")
    ADMIN_PORTS+=("$admin")
done
log "origin nodes on ${NODE_PORTS[*]}"

# ------------------------------------------------------------ Varnish
python3 - "$VCL" "$WORK/varnish.vcl" "${NODE_PORTS[@]}" <<'PY'
import sys
src, dst, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
vcl = open(src).read()
begin, end = vcl.index("# BEGIN backends"), vcl.index("# END backends")
out = ["# BEGIN backends (substituted by benches/e2e/cdn_ratchet.sh)"]
for i, p in enumerate(ports, 1):
    out.append(f'backend origin{i} {{ .host = "127.0.0.1"; .port = "{p}"; .connect_timeout = 1s; '
               f'.first_byte_timeout = 5s; .between_bytes_timeout = 2s; }}')
out.append("sub vcl_init {\n    new origins = directors.round_robin();")
out += [f"    origins.add_backend(origin{i});" for i in range(1, len(ports) + 1)]
out.append("}\n")
open(dst, "w").write(vcl[:begin] + "\n".join(out) + vcl[end:])
PY
VPORT="$(free_port)"
${VARNISH_CPUS:+taskset -c "$VARNISH_CPUS"} "$VARNISHD" -F -n "$WORK/varnish" -a "127.0.0.1:$VPORT" \
    -f "$WORK/varnish.vcl" -s "malloc,$VARNISH_MEM" >"$WORK/varnish.log" 2>&1 &
VARNISH_PID=$!
PIDS+=("$VARNISH_PID")
# The health answer through Varnish (passed to the origin, never cached).
wait_http "http://127.0.0.1:$VPORT/" "$VARNISH_PID" varnishd "$WORK/varnish.log"
log "varnish on 127.0.0.1:$VPORT"

# ------------------------------------------------------------ the ratchet
# Round r: the bench's warm-up refills Varnish (the previous round's last
# stage purged all of it), then the ratchet; exports in $OUT/round<r>/.
failed=()
cp "$WORK/varnish.vcl" "$OUT/varnish.vcl"
for ((r = 1; r <= ROUNDS; r++)); do
    EXPORTS="$WORK/bench$r"
    ROUND="$OUT/round$r"
    rm -rf "$ROUND"
    mkdir -p "$ROUND"
    log "round $r/$ROUNDS: warm-up through Varnish ($WARM_PASSES passes), then $RATCHET at $RATE/s, $DURATION s a stage"
    rc=0
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BIN" bench --config "$WORK/node1.toml" --out "$EXPORTS" \
        --target "127.0.0.1:$VPORT" --cdn-purge "http://127.0.0.1:$VPORT/" \
        --ratchet "$RATCHET" --rate "$RATE" --duration "$DURATION" \
        --threads "$THREADS" --connections "$CONNECTIONS" --server-cores "$CORES" \
        --warm-passes "$WARM_PASSES" --warm-secs "$WARM_SECS" ${KEYSPACE:+--keyspace "$KEYSPACE"} \
        2>&1 | tee "$ROUND/bench.txt" >&2 || rc=$?
    ((rc == 0)) || failed+=("round $r (exit $rc)")
    varnishstat -n "$WORK/varnish" -1 >"$ROUND/varnishstat.txt" 2>/dev/null || true
    for ((n = 2; n <= NODES; n++)); do
        curl -sf --max-time 5 "http://127.0.0.1:${ADMIN_PORTS[n - 1]}/metrics" >"$ROUND/server_metrics_node$n.txt" || true
    done
    [[ -f "$EXPORTS/summary.json" ]] || die "round $r: the bench wrote no summary (see above)"
    # What is kept: summaries, plots, the per-stage all-outcome histograms,
    # the interval log and the origin's metrics (the bench fetched node 1's).
    for f in summary.md summary.json plot.svg cdn.svg all.hlog server_metrics.txt; do
        if [[ -f "$EXPORTS/$f" ]]; then cp "$EXPORTS/$f" "$ROUND/"; fi
    done
    cp "$EXPORTS"/*_all.hgrm "$ROUND/" 2>/dev/null || true
done

python3 - "$OUT" "$ROUNDS" "$COMMIT" "$MACHINE" "$CMDLINE" "$NODES" "$RATE" "$DURATION" >"$OUT/results.md" <<'PY'
import json, statistics, sys
out, rounds, commit, machine, cmd, nodes, rate, duration = sys.argv[1:]
runs = [json.load(open(f"{out}/round{r}/summary.json")) for r in range(1, int(rounds) + 1)]
print("# CDN ratchet through Varnish\n")
print(f"Commit `{commit}`, machine: {machine}.\n")
print(f"Command: `{cmd}`\n")
print(f"{nodes} origin node(s){' sharing one Redis' if nodes == '2' else ''}, Varnish in front; "
      f"{rate} requests/s open loop at every stage, {duration} s a stage, "
      f"{runs[0]['stages'][0]['keyspace']} serials, {rounds} round(s) against the same Varnish and origin.\n")
pct = lambda r: "–" if r is None else f"{r * 100:.2f}%"
ms = lambda v: "–" if v is None else f"{v:.2f}"
def row(st):
    c, lat = st["cdn"], st["latency_ms"] or {}
    o = c["origin"]
    return {
        "purged": c["purge"]["purged"], "hit": c["hit_ratio"], "first": c["first_second_hit_ratio"],
        "orate": c["origin_rate"], "ohit": o["hit"], "ol2": o["hit_l2"], "omiss": o["miss"],
        "otl": o["try_later"], "oerr": o["error"], "err": st["counts"]["error"], "wrong": st["wrong"],
        "p50": lat.get("p50"), "p99": lat.get("p99"), "p999": lat.get("p99_9"),
    }
HEAD = ("| stage | objects purged | CDN hit ratio | in the 1st s | origin req/s | origin HIT | HIT-L2 | "
        "MISS (signed) | tryLater | origin errors | errors | wrong | p50 ms | p99 ms | p99.9 ms |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def line(name, x, fmt_int=lambda v: f"{v:.0f}"):
    return (f"| {name} | {fmt_int(x['purged'])} | {pct(x['hit'])} | {pct(x['first'])} | {x['orate']:.1f} | "
            f"{fmt_int(x['ohit'])} | {fmt_int(x['ol2'])} | {fmt_int(x['omiss'])} | {fmt_int(x['otl'])} | "
            f"{fmt_int(x['oerr'])} | {fmt_int(x['err'])} | {fmt_int(x['wrong'])} | {ms(x['p50'])} | {ms(x['p99'])} | "
            f"{ms(x['p999'])} |")
names = [st["name"] for st in runs[0]["stages"]]
if len(runs) > 1:
    print(f"Median over the {rounds} rounds (each cell its own median; wrong and errors are sums):\n")
    print(HEAD)
    for i, name in enumerate(names):
        rows = [row(r["stages"][i]) for r in runs]
        med = {}
        for k in rows[0]:
            vals = [x[k] for x in rows if x[k] is not None]
            med[k] = (sum(vals) if k in ("wrong", "err") else statistics.median(vals)) if vals else None
        print(line(name, med))
    print()
for r, s in enumerate(runs, 1):
    verdict = "PASS" if s["passed"] else "FAIL: " + "; ".join(s["fail_reasons"])
    print(f"Round {r}: {verdict}. Plots: [cdn.svg](round{r}/cdn.svg), [plot.svg](round{r}/plot.svg); "
          f"tables: [summary.md](round{r}/summary.md).\n")
    print(HEAD)
    for st in s["stages"]:
        print(line(st["name"], row(st)))
    print()
PY
log "results: $OUT/results.md"
cat "$OUT/results.md"
((${#failed[@]} == 0)) || die "the bench failed in ${failed[*]}: wrong answers or errors, see $OUT/round*/bench.txt"
