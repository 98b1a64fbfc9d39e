#!/usr/bin/env bash
# feed_ab.sh: what the change feed's fences cost the serving paths. Runs the
# miss and Redis-hit scenarios of miss_and_redis.sh with two builds of
# ocsp-origin, alternating (A B A B ...) in one invocation on one machine, and
# prints each scenario's requests/s, server CPU per request and server memory
# growth per request for both, with the ratio new/old of the medians.
#
# USAGE
#   benches/e2e/feed_ab.sh OLD_BIN NEW_BIN [--rounds 2] [miss_and_redis.sh options...]
#   e.g. benches/e2e/feed_ab.sh /tmp/old/ocsp-origin target/release/ocsp-origin --duration 5s --misses 200000 --no-pin
#   SIGN_QUEUE_BIN is passed through (else miss_and_redis.sh builds it once per run).
#
# Each run starts its own MariaDB and Redis (tests/services.sh) and migrates
# with its own binary, so each build meets the schema it expects. Loopback
# only; every run is bounded by miss_and_redis.sh's own timeouts.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '/^# USAGE/,/^# Each run/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
OLD="$(realpath "$1")"; NEW="$(realpath "$2")"; shift 2
ROUNDS=2
if [[ "${1:-}" == "--rounds" ]]; then ROUNDS="${2:?}"; shift 2; fi
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/ocsp-feed-ab.XXXXXX")"
echo "feed_ab: $ROUNDS rounds, old=$OLD new=$NEW, runs in $OUT" >&2
for r in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        bin="$OLD"; [[ $side == new ]] && bin="$NEW"
        echo "feed_ab: round $r, $side" >&2
        OCSP_ORIGIN_BIN="$bin" bash "$HERE/miss_and_redis.sh" --out "$OUT/$side-$r" "$@" >"$OUT/$side-$r.log" 2>&1 \
            || { tail -20 "$OUT/$side-$r.log" >&2; exit 1; }
    done
done
# Every "RESULT" line of a run's log is one scenario (the wrk run before it names it).
python3 - "$OUT" "$ROUNDS" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def scenarios(path):
    res, name = {}, None
    for line in open(path):
        m = re.search(r"==> wrk (\S+):", line)
        if m:
            name = m.group(1)
        m = re.search(r"RESULT rps=([\d.]+) requests=(\d+) duration_s=([\d.]+).* server_cpu_pct=(\d+)", line)
        if m and name and not name.startswith("warmup"):
            rps, req, dur, cpu = float(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4))
            g = re.search(r" server_rss_growth_kib=(-?\d+)", line)
            rss = int(g.group(1)) * 1024 / max(req, 1) if g else float("nan")
            # req/s, server CPU µs per request, server RSS growth B per request
            res[name] = (rps, cpu / 100 * dur / max(req, 1) * 1e6, rss)
    return res
runs = {side: [scenarios(f"{out}/{side}-{r}.log") for r in range(1, rounds + 1)] for side in ("old", "new")}
names = sorted(set().union(*[set(x) for x in runs["old"] + runs["new"]]))
print("| scenario | old req/s | new req/s | new/old | old CPU µs/req | new CPU µs/req | new/old | old RSS growth B/req | new RSS growth B/req |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    o = [x[n] for x in runs["old"] if n in x]; w = [x[n] for x in runs["new"] if n in x]
    if not o or not w:
        continue
    orps, wrps = statistics.median(v[0] for v in o), statistics.median(v[0] for v in w)
    ocpu, wcpu = statistics.median(v[1] for v in o), statistics.median(v[1] for v in w)
    orss, wrss = statistics.median(v[2] for v in o), statistics.median(v[2] for v in w)
    print(f"| {n} | {orps:,.0f} | {wrps:,.0f} | {wrps / orps:.2f} | {ocpu:.1f} | {wcpu:.1f} | {wcpu / ocpu:.2f} | {orss:,.0f} | {wrss:,.0f} |")
print(f"\nmedians of {rounds} alternating rounds; every run's own table is in {out}/*/results.md")
PY
