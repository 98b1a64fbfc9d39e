#!/usr/bin/env bash
# scaling.sh: hit throughput of ocsp-origin with 1, 2, 4, 8 and 16 shards on a
# 16-CPU machine, measured by `ocsp-origin bench` running on other CPUs, plus
# the miss path (just-in-time P-256 signing) with 8 shards next to the raw
# signing rate of the same CPUs (`openssl speed`).
#
# USAGE
#   benches/device/scaling.sh BIN OUT [DURATION_SECS]
#   BIN   a release build of ocsp-origin (built elsewhere and carried; this
#         script needs no toolchain), OUT a directory for the results.
#
# Placement: the server is confined to CPUs 0..N-1 with taskset (shards pinned
# inside that mask), the generator to CPUs 8-15 (8 threads). With 16 shards
# there are no free CPUs left, so that row shares all 16 with the generator:
# it is marked "shared" and is a lower bound. Every server and bench run is
# bounded (bench stops by itself; servers are killed after each run).
#
# Writes OUT/scaling.json, OUT/scaling.md, OUT/scaling.svg (matplotlib, if
# present) and OUT/runs/ (each bench run's exports and logs).
set -euo pipefail
BIN=${1:?usage: scaling.sh BIN OUT [DURATION]}
OUT=${2:?usage: scaling.sh BIN OUT [DURATION]}
DUR=${3:-8}
# Overridable for smaller machines (and a local dry run).
SHARDS_LIST=${SHARDS_LIST-"1 2 4 8 16"}
GEN_CPUS=${GEN_CPUS:-8-15}
GEN_THREADS=${GEN_THREADS:-8}
MISS_LIST=${MISS_LIST-8}
CERTS=${CERTS:-2000000}
MISS_KEYSPACE=${MISS_KEYSPACE:-990000}
MISS_DUR=${MISS_DUR:-5}
mkdir -p "$OUT/runs"
ulimit -n 65536 2>/dev/null || true
log() { echo "==> $(date +%T) $*" >&2; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"   # free_port, wait_port
CPUS=$(nproc)
log "machine: $(uname -srm), $CPUS CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
(( CPUS >= 16 )) || log "only $CPUS CPUs: rows above $((CPUS / 2)) shards share CPUs with the generator"

CA="$OUT/ca"
P="$(free_port)"
"$BIN" demo --dir "$CA" --certs "$CERTS" --cores 1 --no-pin --listen "127.0.0.1:$P" >"$OUT/runs/demo.log" 2>&1 &
D=$!
wait_port "$P" "$D" || { tail "$OUT/runs/demo.log"; exit 1; }
kill "$D"; wait "$D" 2>/dev/null || true
log "demo CA: $(wc -l <"$CA/index.txt") certificates"

# run NAME SHARDS SERVER_CPUS GEN_CPUS BENCH_ARGS...
run() {
    local name=$1 n=$2 scpus=$3 gcpus=$4
    shift 4
    local p a
    p="$(free_port)"; a="$(free_port)"
    cat >"$OUT/runs/$name.toml" <<EOF
listen = "127.0.0.1:$p"
cores = $n
pin = true
[signing]
threads = $n
[limits]
max_connections_per_shard = 4096
[admin]
listen = "127.0.0.1:$a"
[[issuer]]
name = "demo"
cert = "$CA/ca.pem"
key = "$CA/ca.key"
index = "$CA/index.txt"
EOF
    taskset -c "$scpus" "$BIN" serve --config "$OUT/runs/$name.toml" >"$OUT/runs/$name-server.log" 2>&1 &
    local s=$!
    wait_port "$p" "$s" || { tail "$OUT/runs/$name-server.log"; exit 1; }
    log "$name: $n shards on CPUs $scpus, generator on $gcpus"
    taskset -c "$gcpus" "$BIN" bench --config "$OUT/runs/$name.toml" --out "$OUT/runs/$name" \
        --cpus "$gcpus" --threads "$GEN_THREADS" --server-cores "$n" --hsm-sessions "$n" --duration "${RUN_DUR:-$DUR}" "$@" \
        >"$OUT/runs/$name-bench.txt" 2>&1 || { cat "$OUT/runs/$name-bench.txt"; kill "$s"; exit 1; }
    tail -4 "$OUT/runs/$name-bench.txt" >&2
    kill "$s"; wait "$s" 2>/dev/null || true
}

HIT_ARGS=(--keyspace 1000 --warm-passes 16 --connections 512)
LAST=$((CPUS - 1))
for n in $SHARDS_LIST; do
    if (( n <= CPUS / 2 )); then
        run "hits-$n" "$n" "0-$((n - 1))" "$GEN_CPUS" "${HIT_ARGS[@]}"
    else
        run "hits-$n" "$n" "0-$((n - 1))" "0-$LAST" "${HIT_ARGS[@]}"
    fi
done
# Misses: every request a serial nobody asked for (--sequential walk over cold serials;
# MISS_KEYSPACE / MISS_DUR bounds the rate it can measure without repeats).
# Verifying a P-256 signature costs the generator about 3x what signing costs
# the server, so a miss row gives the generator every CPU the server does not
# use (GEN_CPUS applies to hit rows only).
for m in $MISS_LIST; do
    RUN_DUR=$MISS_DUR GEN_THREADS=$((CPUS - m)) run "misses-$m" "$m" "0-$((m - 1))" "$m-$LAST" \
        --cold 1 --keyspace "$MISS_KEYSPACE" --sequential --warm-passes 0 --connections 512
    openssl speed -seconds 3 -multi "$m" ecdsap256 >"$OUT/runs/openssl-speed-$m.txt" 2>&1 || true
done

SHARDS_LIST="$SHARDS_LIST" MISS_LIST="$MISS_LIST" python3 - "$OUT" "$CPUS" <<'PY'
import json, os, sys
out, cpus = sys.argv[1], int(sys.argv[2])
shards = [int(x) for x in os.environ["SHARDS_LIST"].split()]
misses_list = [int(x) for x in os.environ["MISS_LIST"].split()]
rows = []
for n in shards:
    s = json.load(open(f"{out}/runs/hits-{n}/summary.json"))["stages"][0]
    c = s["counts"]
    rows.append({"shards": n, "answers_per_s": s["achieved_rate"],
                 "hit_share": (c["hit"] + c["hit_l2"]) / max(1, sum(c.values())),
                 "p50_ms": s["latency_ms"]["p50"], "p99_ms": s["latency_ms"]["p99"],
                 "errors": c["error"], "wrong": s["wrong"], "shared_cpus": n > cpus // 2})
misses = []
for ms in misses_list:
    m = json.load(open(f"{out}/runs/misses-{ms}/summary.json"))["stages"][0]
    raw = None
    for line in open(f"{out}/runs/openssl-speed-{ms}.txt"):
        f = line.split()
        if "nistp256" in line and len(f) >= 6:
            try:
                raw = float(f[-2])  # "256 bits ecdsa (nistp256) sign verify sign/s verify/s"
            except ValueError:
                pass
    rate = m["counts"]["miss"] / m["duration_s"]
    misses.append({"shards": ms, "signed_per_s": rate, "answers_per_s": m["achieved_rate"],
                   "p50_ms": m["latency_ms"]["p50"], "p99_ms": m["latency_ms"]["p99"],
                   "try_later": m["counts"]["try_later"], "errors": m["counts"]["error"], "wrong": m["wrong"],
                   "openssl_speed_p256_sign_per_s": raw, "ratio_to_raw": (rate / raw) if raw else None})
json.dump({"hits": rows, "misses": misses}, open(f"{out}/scaling.json", "w"), indent=2)
with open(f"{out}/scaling.md", "w") as f:
    if rows:
        base = rows[0]["answers_per_s"]
        f.write("| shards | answers/s | vs 1 shard | hit share | p50 ms | p99 ms | errors | wrong | CPUs |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
        for r in rows:
            f.write(f"| {r['shards']} | {r['answers_per_s']:.0f} | {r['answers_per_s']/base:.2f} | {r['hit_share']:.3f} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['wrong']} | "
                    f"{'shared with generator' if r['shared_cpus'] else 'separate'} |\n")
    if misses:
        f.write("\n| shards (misses) | signed answers/s | p50 ms | p99 ms | tryLater | errors | wrong | openssl speed P-256 sign/s, same CPUs | ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        for m in misses:
            ratio = f"{m['ratio_to_raw']:.2f}" if m["ratio_to_raw"] else "n/a"
            f.write(f"| {m['shards']} | {m['signed_per_s']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['try_later']} | "
                    f"{m['errors']} | {m['wrong']} | {m['openssl_speed_p256_sign_per_s']} | {ratio} |\n")
print(open(f"{out}/scaling.md").read())
try:
    if not rows:
        raise RuntimeError("no hit rows")
    base = rows[0]["answers_per_s"]
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    xs = [r["shards"] for r in rows]
    ys = [r["answers_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, ys, "o-", label="ocsp-origin hits (bench on other CPUs)")
    ax.plot(xs, [base * x for x in xs], "--", color="grey", label="linear from 1 shard")
    ax.annotate("16: shares CPUs\nwith the generator", (16, ys[-1]), textcoords="offset points", xytext=(-110, -30))
    ax.set_xscale("log", base=2); ax.set_xticks(xs); ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("shards (cores)"); ax.set_ylabel("answers/s"); ax.grid(True, alpha=0.3); ax.legend()
    ax.set_title("ocsp-origin cache-hit scaling, 16-CPU machine")
    fig.tight_layout(); fig.savefig(f"{out}/scaling.svg")
except Exception as e:
    print(f"no plot: {e}")
PY
