#!/usr/bin/env bash
# miss_and_redis.sh: end-to-end benchmark of the cache-miss path (MariaDB status
# + software P-256 signature + Redis write) and of Redis-served hits, each next
# to its physical limit on the same machine.
#
# WHAT IT MEASURES (one run)
#   A. miss_mysql_redis_p256_c<N>   every request a distinct serial that is in
#      MariaDB but in no cache: status lookup, just-in-time P-256 signature,
#      Redis write. Versus the raw signing rate of the same key (ca.key of
#      tests/data/client-requests) by `sign_queue`: the sessions=<cores> row's
#      "raw sig/s", <cores> threads signing back to back = the most signatures
#      those cores can make. Ratio = miss req/s / raw sig/s.
#      With --signer softhsm (scenario miss_mysql_redis_softhsm_p256_c<N>) the
#      same key lives in a private SoftHSM2 token that the server signs through
#      over PKCS#11 with signing.threads = <cores> sessions, and the limit is
#      `sign_queue --backend softhsm` at the same number of sessions.
#   B. hit_redis_l1off_c<N>   1000 serials already in Redis, `[cache]
#      l1_entries = 0`, GET rotating over them: every answer is read from Redis;
#      hit_redis_l1on_c<N>       the same with the L1 on (after a warm-up);
#      redis_benchmark_get_c<N>  `redis-benchmark -t get` on the same Redis with
#      values of the size ocsp-origin stores, same connection count.
#      Ratio = hit req/s / redis-benchmark GET/s.
#   Per scenario: req/s, latency p50/p99/p99.9/max, answers that are not a
#   signed "good" (split into non-200, OCSP errors such as tryLater - bodies
#   under 20 bytes - and other signed answers), socket errors, server CPU, the
#   Redis/MariaDB traffic it caused (keyspace hits/misses, SELECTs), and how
#   much the server's resident memory grew per answer (on a miss run: what each
#   new response costs to keep in the L1 and the node's shared fills while they
#   fill, page-table first touch included).
#
# HOW
#   1. builds ocsp-origin and the sign_queue bench (or takes $OCSP_ORIGIN_BIN /
#      $SIGN_QUEUE_BIN) before any service starts;
#   2. starts a private MariaDB and Redis (tests/services.sh) on free loopback
#      ports, `db migrate`, and bulk-loads --misses + 1000 + 2 rows with
#      multi-row INSERTs (python3 | mariadb);
#   3. derives every request from tests/data/client-requests/openssl-sha1.der by
#      replacing its 10-byte serial: miss serials 1A..., hit serials 2B...,
#      sanity serials 3C...; GET paths are /base64 with + / = percent-encoded;
#   4. A: measures the raw signing rate, starts ocsp-origin (L1 on), checks two
#      sanity serials with `openssl ocsp -respin ... -CAfile` ("Response verify
#      OK", "good"), then one wrk run without warm-up in which each wrk thread
#      walks its own slice of the miss paths, so no path is requested twice
#      (checked and reported: "repeats");
#   5. B: restarts ocsp-origin with l1_entries = 0, GETs the 1000 hit paths once
#      (signed, written to Redis), verifies one Redis-served answer, measures;
#      restarts with the L1 on, 2 s warm-up, measures; stops ocsp-origin and runs
#      redis-benchmark (SET then GET over 1000 keys of the stored value size);
#   6. prints a Markdown table (also saved as $OUT/results.md) with the commit,
#      machine and exact command line, ready for benches/RESULTS.md.
#
# SCOPE
#   Loopback only (127.0.0.1), nothing is exposed; private MariaDB/Redis with
#   their own datadirs, never the system instances. On a small box the load
#   generator, MariaDB, Redis and ocsp-origin share the CPUs, so absolute numbers
#   are lower bounds and the ratios are the figures to compare between runs.
#   Every process the script starts is stopped on exit (trap); every step is
#   bounded (wrk by --duration, the rest by timeouts).
#
# USAGE
#   benches/e2e/miss_and_redis.sh [--duration 5s] [--connections 64] [--threads 2]
#                                 [--cores 2] [--misses 600000] [--out DIR] [--no-pin]
#                                 [--signer software|softhsm] [--miss-only]
#   --misses   distinct miss serials (each wrk thread gets misses/threads of them)
#   --no-pin   start ocsp-origin with unpinned shards (a small box shared with wrk)
#   --signer software|softhsm   the key as a PEM file (default) or in a SoftHSM2
#              token (needs softhsm2-util; Debian: apt-get install softhsm2)
#   --miss-only  run A only (no Redis-hit scenarios, no redis-benchmark)
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary (else: cargo build --release)
#   SIGN_QUEUE_BIN=/path/to/sign_queue    use a prebuilt bench (else: cargo bench --no-run)
set -euo pipefail

CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE="${CMDLINE% }"
[[ -n "${SIGN_QUEUE_BIN:-}" ]] && CMDLINE="SIGN_QUEUE_BIN=$(printf '%q' "$SIGN_QUEUE_BIN") $CMDLINE"
[[ -n "${OCSP_ORIGIN_BIN:-}" ]] && CMDLINE="OCSP_ORIGIN_BIN=$(printf '%q' "$OCSP_ORIGIN_BIN") $CMDLINE"

DURATION=5s
CONNECTIONS=64
THREADS=2
CORES=2
MISSES=600000
HITS=1000
OUT=""
PIN=true
WARMUP=2s
SIGN_SECONDS=3
SIGNER=software
MISS_ONLY=false

usage() {
    sed -n '/^# USAGE/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "miss_and_redis: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --cores) CORES="${2:?}"; shift 2 ;;
        --misses) MISSES="${2:?}"; shift 2 ;;
        --out) OUT="${2:?}"; shift 2 ;;
        --duration=*) DURATION="${1#*=}"; shift ;;
        --connections=*) CONNECTIONS="${1#*=}"; shift ;;
        --threads=*) THREADS="${1#*=}"; shift ;;
        --cores=*) CORES="${1#*=}"; shift ;;
        --misses=*) MISSES="${1#*=}"; shift ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --no-pin) PIN=false; shift ;;
        --signer) SIGNER="${2:?}"; shift 2 ;;
        --signer=*) SIGNER="${1#*=}"; shift ;;
        --miss-only) MISS_ONLY=true; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
for v in CONNECTIONS THREADS CORES MISSES; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, got '${!v}'"
done
[[ "$DURATION" =~ ^[0-9]+[smh]?$ ]] || die "--duration must look like 5s / 2m, got '$DURATION'"
(( THREADS <= CONNECTIONS )) || die "--threads ($THREADS) must not exceed --connections ($CONNECTIONS)"
(( MISSES >= THREADS * 1000 )) || die "--misses must be at least 1000 per wrk thread"
(( MISSES < 16 ** 8 )) || die "--misses must be below $(( 16 ** 8 ))"
[[ "$SIGNER" == software || "$SIGNER" == softhsm ]] || die "--signer must be software or softhsm, got '$SIGNER'"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="$REPO/tests/data/client-requests"
CA="$DATA/ca.pem"
KEY="$DATA/ca.key"
TEMPLATE="$DATA/openssl-sha1.der"
for f in "$CA" "$KEY" "$TEMPLATE" "$REPO/tests/services.sh"; do
    [[ -r "$f" ]] || die "$f is missing"
done

# ---------------------------------------------------------------- tools
for t in wrk redis-benchmark redis-cli redis-server mariadb mariadb-admin openssl curl python3 awk timeout; do
    command -v "$t" >/dev/null || die "$t is required (Debian: apt-get install wrk redis-server redis-tools mariadb-server mariadb-client openssl curl)"
done
[[ -x "$(command -v mariadbd || echo /usr/sbin/mariadbd)" ]] || die "mariadbd is required (apt-get install mariadb-server)"
SOFTHSM_MODULE=""
if [[ "$SIGNER" == softhsm ]]; then
    command -v softhsm2-util >/dev/null || die "--signer softhsm needs softhsm2-util (Debian: apt-get install softhsm2)"
    SOFTHSM_MODULE="$(softhsm_module)"
    [[ -n "$SOFTHSM_MODULE" ]] || die "libsofthsm2.so not found (apt-get install softhsm2)"
fi

# ---------------------------------------------------------------- out dir
if [[ -z "$OUT" ]]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/ocsp-e2e-miss.XXXXXX")"
else
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)"
fi
echo "out dir: $OUT"
mkdir -p "$OUT/wrk" "$OUT/sanity"
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$OUT/services"

# ---------------------------------------------------------------- cleanup
# Everything started here: wrk, the ocsp-origin servers (PIDS), and the
# private MariaDB/Redis of tests/services.sh (SERVICE_PIDS, stopped last, with
# a bounded wait before stop_services removes their directory).
PIDS=()
SERVICE_PIDS=()
WRK_PID=""
SERVICES_SOURCED=""
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    [[ -n "$WRK_PID" ]] && kill -TERM "$WRK_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$SERVICES_SOURCED" ]]; then
        cp "$SERVICES_DIR/mariadb/mariadbd.log" "$OUT/mariadbd.log" 2>/dev/null || true
        cp "$SERVICES_DIR/redis/redis.log" "$OUT/redis.log" 2>/dev/null || true
        for pid in "${SERVICE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${SERVICE_PIDS[@]}"; do
            for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
        stop_services
    fi
    # The generated inputs are large and reproducible.
    rm -f "$OUT/miss_paths.txt"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# wait_http URL PID NAME LOGFILE: until URL answers 2xx, PID alive, 30 s at most.

# check_alive PID NAME LOGFILE: fail loudly if a server died during a run.

# ---------------------------------------------------------------- builds
# Both binaries before any service starts, so that no compilation overlaps a
# measurement and both come from the same tree.
if [[ -n "${OCSP_ORIGIN_BIN:-}" ]]; then
    BIN="$OCSP_ORIGIN_BIN"
    [[ -x "$BIN" ]] || die "OCSP_ORIGIN_BIN=$BIN is not executable"
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release >&2)
    BIN="$REPO/target/release/ocsp-origin"
fi
if [[ -n "${SIGN_QUEUE_BIN:-}" ]]; then
    SIGNQ="$SIGN_QUEUE_BIN"
else
    log "cargo bench --bench sign_queue --no-run"
    SIGNQ="$(cd "$REPO" && cargo bench --bench sign_queue --no-run --message-format=json \
        | python3 -c 'import json,sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "sign_queue"]
print(exe[-1] if exe else "")')" || true
    [[ -n "$SIGNQ" ]] || die "could not build the sign_queue bench (cargo bench --bench sign_queue --no-run)"
fi
[[ -x "$SIGNQ" ]] || die "sign_queue bench $SIGNQ is not executable"

# ---------------------------------------------------------------- services
export SERVICES_DIR="$OUT/services"
# shellcheck source=../../tests/services.sh
source "$REPO/tests/services.sh"
SERVICES_SOURCED=1
start_mariadb
MARIADB_PID="${SERVICE_PIDS[0]}"
start_redis
REDIS_PID="${SERVICE_PIDS[1]}"
MYSQL_PORT="$(sed -n 's|^mysql://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$OCSP_TEST_MYSQL_URL")"
REDIS_PORT="${OCSP_TEST_REDIS_URL##*:}"
[[ -n "$MYSQL_PORT" && -n "$REDIS_PORT" ]] || die "cannot tell the service ports ($OCSP_TEST_MYSQL_URL, $OCSP_TEST_REDIS_URL)"
MYSQL_URL="mysql://root@127.0.0.1:$MYSQL_PORT/bench"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
sql() { timeout 600 mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -uroot "$@"; }
rcli() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
sql -e 'CREATE DATABASE bench'

# The signing key: the PEM file, or the same key imported into a private
# SoftHSM2 token under $OUT (its PIN reaches the server through the environment).
if [[ "$SIGNER" == softhsm ]]; then
    softhsm_token "$OUT/softhsm" "$KEY"
    export MISS_BENCH_PIN=1234
    ISSUER_KEY="$(printf '[issuer.pkcs11]\nmodule = "%s"\ntoken_label = "bench"\nkey_label = "ca"\npin_env = "MISS_BENCH_PIN"' "$SOFTHSM_MODULE")"
else
    ISSUER_KEY="key = \"$KEY\""
fi

# write_config FILE PORT L1_ENTRIES
write_config() {
    cat >"$1" <<EOF
# Written by benches/e2e/miss_and_redis.sh
listen = "127.0.0.1:$2"
cores = $CORES
pin = $PIN

[signing]
threads = $CORES
queue_depth = 4096

[cache]
l1_entries = $3

[mysql]
url = "$MYSQL_URL"
threads = 4
batch = 64

[redis]
url = "$REDIS_URL"

[[issuer]]
name = "test"
cert = "$CA"
$ISSUER_KEY
EOF
}
write_config "$OUT/migrate.toml" "$(free_port)" 100000
timeout 60 "$BIN" db migrate --config "$OUT/migrate.toml" >&2

# ---------------------------------------------------------------- requests + rows
# Serials: 10 bytes, first byte < 0x80 and != 0 (a positive DER INTEGER with no
# padding, so the template's lengths stay), then a counter. Miss 1A.., hit 2B..,
# sanity 3C.. (requested by the sanity checks only).
log "generating $MISSES miss + $HITS hit + 2 sanity requests and loading them into MariaDB"
python3 - "$TEMPLATE" "$OUT" "$MISSES" "$HITS" >"$OUT/load.sql" <<'PY'
import base64, sys
tmpl, out, misses, hits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
der = open(tmpl, "rb").read()
old = bytes.fromhex("0A1B2C3D4E5F60718293")
at = der.find(b"\x02\x0a" + old)
assert at > 0 and der.count(old) == 1, "template serial not found once"
at += 2
def serial(prefix, k):
    return bytes([prefix]) + k.to_bytes(9, "big")
def path(s):
    b = base64.b64encode(der[:at] + s + der[at + 10:]).decode()
    return "/" + b.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
sets = {"miss": [serial(0x1A, k) for k in range(misses)],
        "hit": [serial(0x2B, k) for k in range(hits)],
        "sanity": [serial(0x3C, k) for k in range(2)]}
for name, serials in sets.items():
    with open(f"{out}/{name}_paths.txt", "w") as f:
        f.write("".join(path(s) + "\n" for s in serials))
with open(f"{out}/sanity_serials.txt", "w") as f:
    f.write("".join(s.hex().upper() + "\n" for s in sets["sanity"]))
with open(f"{out}/hit_serials.txt", "w") as f:
    f.write("".join(s.hex().upper() + "\n" for s in sets["hit"]))
w = sys.stdout.write
w("SET unique_checks=0; SET autocommit=0;\n")
rows = [s for v in sets.values() for s in v]
for i in range(0, len(rows), 5000):
    w("INSERT INTO ocsp_certificates (issuer, serial, status, not_after, revision) VALUES ")
    w(",".join(f"('test',X'{s.hex()}',0,2000000000,1)" for s in rows[i:i + 5000]))
    w(";\n")
w("COMMIT;\n")
PY
T0=$(date +%s.%N)
sql bench <"$OUT/load.sql"
rm -f "$OUT/load.sql"
ROWS="$(sql -N bench -e 'SELECT COUNT(*) FROM ocsp_certificates')"
[[ "$ROWS" -eq $(( MISSES + HITS + 2 )) ]] || die "MariaDB has $ROWS rows, expected $(( MISSES + HITS + 2 ))"
log "loaded $ROWS rows in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
[[ "$(wc -l <"$OUT/miss_paths.txt")" -eq "$MISSES" ]] || die "miss_paths.txt is short"

# ---------------------------------------------------------------- ocsp-origin
SERVER_PID=""
SERVER_LOG=""
BASE=""
# start_server NAME L1_ENTRIES: config $OUT/NAME.toml, logs $OUT/NAME.{out,err}.
start_server() {
    local name=$1 port
    port="$(free_port)"
    write_config "$OUT/$name.toml" "$port" "$2"
    BASE="http://127.0.0.1:$port"
    SERVER_LOG="$OUT/$name.err"
    log "starting ocsp-origin ($name, l1_entries = $2) on $BASE"
    "$BIN" serve --config "$OUT/$name.toml" >"$OUT/$name.out" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "$BASE/" "$SERVER_PID" "ocsp-origin ($name)" "$SERVER_LOG"
}
# stop_server: SIGTERM, 10 s, then SIGKILL (reported as odd).
stop_server() {
    local i rc=0
    check_alive "$SERVER_PID" ocsp-origin "$SERVER_LOG"
    kill -TERM "$SERVER_PID"
    for ((i = 0; i < 100; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "ocsp-origin (pid $SERVER_PID) ignored SIGTERM for 10 s: SIGKILL"
        NOTES+=("ocsp-origin $(basename "$SERVER_LOG" .err) ignored SIGTERM for 10 s and was killed")
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || rc=$?
    [[ "$rc" -eq 0 || "$rc" -eq 143 ]] || NOTES+=("ocsp-origin $(basename "$SERVER_LOG" .err) exited with status $rc")
    SERVER_PID=""
}
NOTES=()

# verify_serial HEX WHAT PATH: the answer must verify against ca.pem and say good.
verify_serial() {
    local hex=$1 what=$2 path=$3 code outp
    code="$(curl -sS --max-time 10 -o "$OUT/sanity/$hex.der" -w '%{http_code}' "$BASE$path")"
    [[ "$code" == 200 ]] || die "$what sanity check: HTTP $code"
    outp="$(openssl ocsp -respin "$OUT/sanity/$hex.der" -issuer "$CA" -serial "0x$hex" -CAfile "$CA" -no_nonce 2>&1)" || true
    if ! grep -q 'Response verify OK' <<<"$outp" || ! grep -q ': good' <<<"$outp"; then
        echo "$outp" >&2
        die "$what answer for 0x$hex did not verify"
    fi
    log "$what answer for 0x$hex: Response verify OK, $(grep ': good' <<<"$outp" | tr -d '\t')"
}

# ---------------------------------------------------------------- wrk script
# args: PATHS_FILE THREADS MODE. MODE "slice": thread k walks only its own
# 1/THREADS of the file (no two requests for one path while requests <= paths;
# "repeats" counts requests past the slice); "rotate": every thread rotates over
# the whole file from its own offset. Answers are classified: non-200; OCSP
# error (body < 20 bytes: 30 03 0a 01 <status>, tryLater = 3); signed "good"
# (certStatus [0] NULL followed by thisUpdate: 80 00 18 0f); other signed.
cat >"$OUT/wrk/get.lua" <<'EOF'
local threads = {}
local next_id = 0
function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local reqs, i
n = 0
issued = 0
mode = "rotate"
function init(args)
   local file, nthreads = args[1], tonumber(args[2])
   mode = args[3]
   local total = 0
   for _ in io.lines(file) do total = total + 1 end
   assert(total > 0, "no paths in " .. file)
   local lo, hi = 0, total
   if mode == "slice" then
      local per = math.floor(total / nthreads)
      lo, hi = id * per, (id + 1) * per
   end
   reqs = {}
   local k = 0
   for line in io.lines(file) do
      if k >= lo and k < hi and #line > 0 then reqs[#reqs + 1] = wrk.format("GET", line) end
      k = k + 1
   end
   n = #reqs
   assert(n > 0, "empty slice of " .. file)
   i = 0
   if mode ~= "slice" then i = (id * 7919) % n end
end
function request()
   local r = reqs[i + 1]
   i = (i + 1) % n
   issued = issued + 1
   return r
end

non200 = 0
last_bad = 0
ocsp_err = 0
try_later = 0
last_err = -1
good = 0
other = 0
body_bytes = 0
function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      last_bad = status
   elseif #body < 20 then
      ocsp_err = ocsp_err + 1
      local s = body:byte(#body) or -1
      if body == "\48\3\10\1\3" then try_later = try_later + 1 end
      last_err = s
   elseif body:find("\128\0\24\15", 1, true) then
      good = good + 1
      body_bytes = #body
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local t = { non200 = 0, ocsp_err = 0, try_later = 0, good = 0, other = 0, issued = 0 }
   local code, err, repeats, size, slice = 0, -1, 0, 0, 0
   for _, th in ipairs(threads) do
      for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
      if (th:get("last_bad") or 0) ~= 0 then code = th:get("last_bad") end
      if (th:get("last_err") or -1) ~= -1 then err = th:get("last_err") end
      local tn, ti = th:get("n") or 0, th:get("issued") or 0
      if th:get("mode") == "slice" then
         -- disjoint slices: distinct paths add up; past its slice a thread repeats
         if ti > tn then repeats = repeats + ti - tn end
         slice = slice + tn
      else
         -- every thread rotates over the same paths: repeats are the point
         repeats = -1
         if tn > slice then slice = tn end
      end
      if (th:get("body_bytes") or 0) > 0 then size = th:get("body_bytes") end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT rps=%.1f requests=%d duration_s=%.3f bytes=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f " ..
      "non200=%d last_non200_status=%d ocsp_err=%d try_later=%d last_ocsp_err_status=%d good=%d other_signed=%d " ..
      "issued=%d paths=%d repeats=%d good_body_bytes=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
      summary.requests / (summary.duration / 1e6), summary.requests, summary.duration / 1e6,
      summary.bytes, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, t.non200, code, t.ocsp_err, t.try_later, err, t.good, t.other,
      t.issued, slice, repeats, size, e.connect, e.read, e.write, e.timeout))
end
EOF

# ---------------------------------------------------------------- runs
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() {
    local t
    t="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null)" || t=0
    echo "${t:-0}"
}
redis_stat() { rcli info stats | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }
mysql_selects() { sql -N -e "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{ print $2 }'; }
# cpu_idle_total: idle+iowait and total jiffies of the whole machine.
cpu_idle_total() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t; exit }' /proc/stat; }
# thread_ticks PID FILE: "tid name ticks" of every thread of PID into FILE.
thread_ticks() {
    local f
    : >"$2"
    for f in /proc/"$1"/task/*/stat; do
        awk '{ n = $0; sub(/^[0-9]+ \(/, "", n); sub(/\) .*$/, "", n); gsub(/ /, "_", n)
               r = $0; sub(/^.*\) /, "", r); split(r, a, " "); print $1, n, a[12] + a[13] }' "$f" 2>/dev/null >>"$2" || true
    done
}
# thread_cpu BEFORE AFTER SECONDS: CPU % of one core per thread name (digits
# folded: signer-0 + signer-1 = signer-*), largest first.
thread_cpu() {
    awk -v hz="$CLK_TCK" -v s="$3" 'NR == FNR { b[$1] = $3; next }
        { n = $2; gsub(/[0-9]+$/, "*", n); d[n] += $3 - ($1 in b ? b[$1] : 0) }
        END { for (n in d) if (d[n] > 0) printf "%s %.0f\n", n, 100 * d[n] / hz / s }' "$1" "$2" \
        | sort -k2,2nr | awk '{ printf "%s%s %s%%", (NR > 1 ? ", " : ""), $1, $2 } END { print "" }'
}
pct() { awk -v d="$1" -v hz="$CLK_TCK" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? 100 * d / hz / s : 0) }'; }
# rss_kib PID: resident memory of a process, KiB (what a run's new cache
# entries and everything they hold cost, read before and after it).
rss_kib() { awk '/^VmRSS:/ { print $2; exit }' "/proc/$1/status" 2>/dev/null || echo 0; }

declare -A RES THREADS_CPU
# run_wrk NAME DURATION PATHS MODE: runs wrk against $BASE, keeps its output,
# stores the RESULT line plus server/MariaDB/Redis CPU (% of one core) and the
# Redis/MariaDB traffic of the run in RES[NAME].
run_wrk() {
    local name=$1 dur=$2 list=$3 mode=$4 line s c0 c1 m0 m1 r0 r1 h0 h1 k0 k1 q0 q1 i0 t0 i1 t1 rs0 rs1
    log "wrk $name: -t$THREADS -c$CONNECTIONS -d$dur $BASE ($mode over $(wc -l <"$list") paths)"
    c0="$(cpu_ticks "$SERVER_PID")"; m0="$(cpu_ticks "$MARIADB_PID")"; r0="$(cpu_ticks "$REDIS_PID")"
    h0="$(redis_stat keyspace_hits)"; k0="$(redis_stat keyspace_misses)"; q0="$(mysql_selects)"
    thread_ticks "$SERVER_PID" "$OUT/threads-$name.0"
    rs0="$(rss_kib "$SERVER_PID")"
    read -r i0 t0 < <(cpu_idle_total)
    # In the background + wait, so that a signal to this script is handled at
    # once (the trap then stops wrk too) rather than after the run.
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "$dur" --timeout 5s -s "$OUT/wrk/get.lua" "$BASE" -- "$list" "$THREADS" "$mode" \
        >"$OUT/wrk-$name.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$OUT/wrk-$name.txt" >&2; die "wrk failed ($name)"; }
    WRK_PID=""
    read -r i1 t1 < <(cpu_idle_total)
    rs1="$(rss_kib "$SERVER_PID")"
    thread_ticks "$SERVER_PID" "$OUT/threads-$name.1"
    c1="$(cpu_ticks "$SERVER_PID")"; m1="$(cpu_ticks "$MARIADB_PID")"; r1="$(cpu_ticks "$REDIS_PID")"
    h1="$(redis_stat keyspace_hits)"; k1="$(redis_stat keyspace_misses)"; q1="$(mysql_selects)"
    line="$(grep '^RESULT ' "$OUT/wrk-$name.txt" | tail -n 1)" || true
    [[ -n "$line" ]] || { cat "$OUT/wrk-$name.txt" >&2; die "no RESULT line from wrk ($name)"; }
    s="$(sed -n 's/.* duration_s=\([^ ]*\).*/\1/p' <<<"$line")"
    line="$line server_cpu_pct=$(pct $(( c1 - c0 )) "$s") mariadb_cpu_pct=$(pct $(( m1 - m0 )) "$s")"
    line="$line redis_cpu_pct=$(pct $(( r1 - r0 )) "$s") redis_hits=$(( h1 - h0 )) redis_misses=$(( k1 - k0 ))"
    line="$line mysql_selects=$(( q1 - q0 ))"
    line="$line machine_idle_pct=$(awk -v i=$(( i1 - i0 )) -v t=$(( t1 - t0 )) 'BEGIN { printf "%.0f", (t > 0 ? 100 * i / t : 0) }')"
    line="$line server_rss_growth_kib=$(( rs1 - rs0 ))"
    echo "    $line" >&2
    RES[$name]="$line"
    THREADS_CPU[$name]="$(thread_cpu "$OUT/threads-$name.0" "$OUT/threads-$name.1" "$s")"
    echo "    server threads: ${THREADS_CPU[$name]}" >&2
    check_alive "$SERVER_PID" ocsp-origin "$SERVER_LOG"
}
# field NAME KEY: one key=value out of RES[NAME].
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" ${RES[$1]}"; }

if [[ "$SIGNER" == softhsm ]]; then
    S_MISS="miss_mysql_redis_softhsm_p256_c$CONNECTIONS"
    RAW_NAME="raw_sign_softhsm_p256_${CORES}sessions"
else
    S_MISS="miss_mysql_redis_p256_c$CONNECTIONS"
    RAW_NAME="raw_sign_p256_${CORES}threads"
fi
S_L1OFF="hit_redis_l1off_c$CONNECTIONS"
S_L1ON="hit_redis_l1on_c$CONNECTIONS"
S_RB="redis_benchmark_get_c$CONNECTIONS"

# ---- A. raw signing rate, then the miss run
SIGNQ_ARGS=(--backend "$SIGNER" --key p256 --sessions "$CORES" --seconds "$SIGN_SECONDS")
log "raw P-256 signing rate: $SIGNQ ${SIGNQ_ARGS[*]}"
(cd "$REPO" && timeout 120 "$SIGNQ" "${SIGNQ_ARGS[@]}") >"$OUT/sign_queue.txt" 2>&1 \
    || { cat "$OUT/sign_queue.txt" >&2; die "sign_queue failed"; }
read -r RAW_SIG QUEUE_SIG < <(awk -F'|' -v n="$CORES" '{ k = $2; gsub(/ /, "", k) } k == n { gsub(/ /, ""); print $3, $4; exit }' "$OUT/sign_queue.txt") || true
[[ "${RAW_SIG:-}" =~ ^[0-9]+$ ]] || { cat "$OUT/sign_queue.txt" >&2; die "no sessions=$CORES row in the sign_queue output"; }
log "raw sig/s ($SIGNER, $CORES sessions): $RAW_SIG; through the queue: $QUEUE_SIG"

start_server miss 100000
MISS_ERR_LOG="$SERVER_LOG"
i=0
while read -r hex; do
    i=$(( i + 1 ))
    verify_serial "$hex" "miss-server" "$(sed -n "${i}p" "$OUT/sanity_paths.txt")"
done <"$OUT/sanity_serials.txt"
run_wrk "$S_MISS" "$DURATION" "$OUT/miss_paths.txt" slice
if (( $(field "$S_MISS" repeats) > 0 )); then
    NOTES+=("miss run: $(field "$S_MISS" repeats) requests went past their thread's slice of $(( MISSES / THREADS )) paths (those were repeats, likely hits): raise --misses")
fi
stop_server

L1OFF_ERR_LOG=""; L1ON_ERR_LOG=""; RB_RPS=""; VAL_BYTES=""; RB_KEYS=""; RB_P95=""; RB_SECS=""; RB_ARGS=()
if [[ "$MISS_ONLY" == false ]]; then
# ---- B1. Redis hits, L1 off
start_server l1off 0
L1OFF_ERR_LOG="$SERVER_LOG"
log "GET each of the $HITS hit paths once (signed, written to Redis)"
timeout 120 python3 - "$BASE" "$OUT/hit_paths.txt" <<'PY' || die "populating Redis failed"
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
bad = 0
for p in open(sys.argv[2]).read().split():
    c.request("GET", p)
    r = c.getresponse()
    b = r.read()
    if r.status != 200 or len(b) < 20 or b"\x80\x00\x18\x0f" not in b:
        bad += 1
if bad:
    sys.exit(f"{bad} of the hit paths did not answer a signed good")
PY
sleep 0.5   # the Redis writes are asynchronous to the answers
# Response keys: `ocsp:r:{test:<serial>}:<hash>` (a Cluster hash tag), or
# `ocsp:r:test:<hash>:<serial>` from builds before the change feed (A/B runs).
hit_keys() { { rcli --scan --pattern 'ocsp:r:{test:2B*}:*'; rcli --scan --pattern 'ocsp:r:test:*:2B*'; }; }
RKEYS="$(hit_keys | grep -c . || true)"
[[ "$RKEYS" -eq "$HITS" ]] || die "Redis holds $RKEYS of the $HITS hit serials"
RKEY="$(hit_keys | awk 'NR == 1')"
VAL_BYTES="$(rcli strlen "$RKEY")"
[[ "$VAL_BYTES" =~ ^[0-9]+$ && "$VAL_BYTES" -gt 20 ]] || die "cannot read the Redis value size of $RKEY"
log "Redis: $RKEYS hit keys, e.g. $RKEY = $VAL_BYTES bytes"
verify_serial "$(head -n 1 "$OUT/hit_serials.txt")" "Redis-served (L1 off)" "$(head -n 1 "$OUT/hit_paths.txt")"
run_wrk "$S_L1OFF" "$DURATION" "$OUT/hit_paths.txt" rotate
stop_server

# ---- B2. Redis hits, L1 on
start_server l1on 100000
L1ON_ERR_LOG="$SERVER_LOG"
run_wrk "warmup-$S_L1ON" "$WARMUP" "$OUT/hit_paths.txt" rotate
run_wrk "$S_L1ON" "$DURATION" "$OUT/hit_paths.txt" rotate
stop_server

# ---- B3. redis-benchmark GET on the same Redis, values of the stored size
# (the SET pass fills the 1000 keys that the GET pass then reads; no
# ocsp-origin is running, so no tracking client receives invalidations).
RB_COMMON=(-h 127.0.0.1 -p "$REDIS_PORT" -n 300000 -r "$HITS" -c "$CONNECTIONS" -d "$VAL_BYTES" --threads 2 --csv)
RB_ARGS=(-t get "${RB_COMMON[@]}")
log "redis-benchmark -t set ${RB_COMMON[*]} (fills the $HITS keys)"
timeout 300 redis-benchmark -t set "${RB_COMMON[@]}" >"$OUT/redis-benchmark-set.csv" 2>&1 \
    || { cat "$OUT/redis-benchmark-set.csv" >&2; die "redis-benchmark -t set failed"; }
RB_KEYS="$(rcli --scan --pattern 'key:*' | grep -c . || true)"
(( RB_KEYS >= HITS * 9 / 10 )) || die "redis-benchmark -t set filled only $RB_KEYS keys"
log "redis-benchmark ${RB_ARGS[*]}"
RB_C0="$(cpu_ticks "$REDIS_PID")"; RB_T0="$(date +%s.%N)"
timeout 300 redis-benchmark "${RB_ARGS[@]}" >"$OUT/redis-benchmark.csv" 2>"$OUT/redis-benchmark.err" \
    || { cat "$OUT/redis-benchmark.csv" "$OUT/redis-benchmark.err" >&2; die "redis-benchmark failed"; }
RB_C1="$(cpu_ticks "$REDIS_PID")"; RB_T1="$(date +%s.%N)"
# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
read -r RB_RPS RB_P50 RB_P95 RB_P99 RB_MAX < <(awk -F, '{ gsub(/"/, "") } $1 == "GET" { print $2, $5, $6, $7, $8 }' "$OUT/redis-benchmark.csv") || true
[[ -n "${RB_RPS:-}" ]] || { cat "$OUT/redis-benchmark.csv" >&2; die "no GET line from redis-benchmark"; }
RB_SECS="$(awk -v a="$RB_T0" -v b="$RB_T1" 'BEGIN { printf "%.3f", b - a }')"
RES[$S_RB]="rps=$RB_RPS p50_us=$(awk -v m="$RB_P50" 'BEGIN { print m * 1000 }') p99_us=$(awk -v m="$RB_P99" 'BEGIN { print m * 1000 }') max_us=$(awk -v m="$RB_MAX" 'BEGIN { print m * 1000 }')"
fi

# ---------------------------------------------------------------- server logs
# Lines at WARN or ERROR (env_logger: "[... WARN ...]") and panics, per server.
log_summary() {
    local f=$1 w e p
    w="$(grep -c ' WARN ' "$f" || true)"; e="$(grep -c ' ERROR ' "$f" || true)"; p="$(grep -c 'panicked' "$f" || true)"
    echo "$(basename "$f"): ${w} WARN, ${e} ERROR, ${p} panic lines"
    if (( w + e + p > 0 )); then
        NOTES+=("$(basename "$f"): $w WARN / $e ERROR / $p panic lines, first: $(grep -m1 -E ' WARN | ERROR |panicked' "$f" | cut -c1-200)")
    fi
}
ABORTED="$(grep -c 'Aborted connection' "$SERVICES_DIR/mariadb/mariadbd.log" || true)"
SERVER_LOGS=("$MISS_ERR_LOG")
[[ "$MISS_ONLY" == false ]] && SERVER_LOGS+=("$L1OFF_ERR_LOG" "$L1ON_ERR_LOG")
LOGS_SUMMARY=""
for f in "${SERVER_LOGS[@]}"; do LOGS_SUMMARY="${LOGS_SUMMARY:+$LOGS_SUMMARY; }$(log_summary "$f")"; done
for f in "${SERVER_LOGS[@]}"; do log_summary "$f" >/dev/null; done

# ---------------------------------------------------------------- report
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$COMMIT" != unknown ]] && ! git -C "$REPO" diff --quiet HEAD -- 2>/dev/null; then
    COMMIT="$COMMIT-dirty"
fi
CPU_MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="$(uname -m)"

us2ms() { [[ -n "$1" ]] && awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }' || echo "-"; }
# row NAME VS_NAME VS_RPS
row() {
    local s=$1 vs=$2 vsr=$3 errs nongood
    errs=$(( $(field "$s" connect_err) + $(field "$s" read_err) + $(field "$s" write_err) + $(field "$s" timeout_err) ))
    nongood=$(( $(field "$s" requests) - $(field "$s" good) ))
    printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%% | %s | %s |\n' "$s" "$(field "$s" rps)" \
        "$(us2ms "$(field "$s" p50_us)")" "$(us2ms "$(field "$s" p99_us)")" "$(us2ms "$(field "$s" p999_us)")" \
        "$(us2ms "$(field "$s" max_us)")" "$nongood" "$(field "$s" non200)" "$(field "$s" ocsp_err)" \
        "$(field "$s" try_later)" "$errs" "$(field "$s" server_cpu_pct)" "$vs $(printf '%.0f' "$vsr")" "$(ratio "$(field "$s" rps)" "$vsr")"
}
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# usper CPU_PCT RPS: µs of CPU per answer (CPU_PCT % of one core over RPS answers/s).
usper() { awk -v c="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f", c * 1e4 / r; else print "-" }'; }
diag() {
    local s=$1 rep n
    rep="$(field "$s" repeats)"; [[ "$rep" == -1 ]] && rep="- (rotating)"
    n="$(field "$s" requests)"
    printf '| %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s (%s) | %s%% | %s%% | %s%% | %s | %s | %s | %s%% | %s |\n' "$s" "$n" \
        "$(field "$s" issued)" "$(field "$s" paths)" "$rep" \
        "$(field "$s" redis_hits)" "$(per "$(field "$s" redis_hits)" "$n")" \
        "$(field "$s" redis_misses)" "$(per "$(field "$s" redis_misses)" "$n")" \
        "$(field "$s" mysql_selects)" "$(per "$n" "$(field "$s" mysql_selects)")" \
        "$(field "$s" server_cpu_pct)" "$(field "$s" mariadb_cpu_pct)" "$(field "$s" redis_cpu_pct)" \
        "$(usper "$(field "$s" server_cpu_pct)" "$(field "$s" rps)")" "$(usper "$(field "$s" mariadb_cpu_pct)" "$(field "$s" rps)")" \
        "$(usper "$(field "$s" redis_cpu_pct)" "$(field "$s" rps)")" "$(field "$s" machine_idle_pct)" \
        "$(awk -v k="$(field "$s" server_rss_growth_kib)" -v n="$n" 'BEGIN { if (n > 0) printf "%.0f", k * 1024 / n; else print "-" }')"
}

{
    if [[ "$SIGNER" == softhsm ]]; then KEYDESC="P-256 in a SoftHSM2 token, $CORES PKCS#11 sessions"; else KEYDESC="P-256 PEM key (aws-lc)"; fi
    HITS_TITLE="; Redis hits vs redis-benchmark"; [[ "$MISS_ONLY" == true ]] && HITS_TITLE=""
    echo "### Miss path (MariaDB + Redis + $KEYDESC) vs raw signing$HITS_TITLE (loopback, HTTP/1.1 keep-alive)"
    echo
    echo "- commit: \`$COMMIT\`; binaries: \`$BIN\`, \`$SIGNQ\`"
    echo "- machine: $(nproc) CPUs, $CPU_MODEL; kernel $(uname -r); wrk, ocsp-origin, MariaDB and Redis (and redis-benchmark) all share these CPUs"
    echo "- tools: $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), $(mariadbd --version 2>/dev/null | awk '{ print $2, $3 }' || echo mariadbd), Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), $(openssl version | awk '{ print $1, $2 }')"
    echo "- server: cores = $CORES, pin = $PIN, signing.threads = $CORES, queue_depth 4096, [mysql] threads 4 batch 64, [redis] one client per shard; issuer: tests/data/client-requests (P-256, $SIGNER), SHA-1 CertIDs"
    if [[ "$MISS_ONLY" == true ]]; then
        echo "- load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 5s, no warm-up, $MISSES distinct serials, each wrk thread walks its own $(( MISSES / THREADS )) (--miss-only: no hit scenarios)"
        echo "- limit: raw = \`sign_queue ${SIGNQ_ARGS[*]}\` \"raw sig/s\" ($CORES threads signing back to back with the same key, nothing else running; through its queue: $QUEUE_SIG sig/s)"
    else
        echo "- load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 5s. Miss: no warm-up, $MISSES distinct serials, each wrk thread walks its own $(( MISSES / THREADS )); hits: $HITS serials in Redis (value $VAL_BYTES B, answer $(field "$S_L1OFF" good_body_bytes) B body), rotating; L1 on after a $WARMUP warm-up"
        echo "- limits: raw = \`sign_queue ${SIGNQ_ARGS[*]}\` \"raw sig/s\" ($CORES threads signing back to back with the same key, nothing else running; through its queue: $QUEUE_SIG sig/s); redis = \`redis-benchmark ${RB_ARGS[*]}\`, after a \`-t set\` pass with the same options filled $RB_KEYS keys (GET p95 $RB_P95 ms; the GET run took $RB_SECS s, redis-server CPU $(pct $(( RB_C1 - RB_C0 )) "$RB_SECS")%; it has no p99.9)"
    fi
    echo "- non-good = answers that are not a signed \"good\" (non-200 + OCSP errors + other signed); OCSP err = 200 with a body < 20 B (tryLater counted separately); server CPU: user+sys of ocsp-origin during the run, 100% = one core; CPU per answer = that CPU time / answers"
    echo "- command: \`$CMDLINE\`"
    echo
    echo "| scenario | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-good | non-200 | OCSP err | tryLater | socket errors | server CPU | limit (/s) | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    row "$S_MISS" "raw sign" "$RAW_SIG"
    if [[ "$MISS_ONLY" == false ]]; then
        row "$S_L1OFF" "redis GET" "$RB_RPS"
        row "$S_L1ON" "redis GET" "$RB_RPS"
        printf '| %s | %.0f | %s | %s | - | %s | - | - | - | - | - | - | - | 1.00 |\n' "$S_RB" "$RB_RPS" "$RB_P50" "$RB_P99" "$RB_MAX"
    fi
    printf '| %s | %s | - | - | - | - | - | - | - | - | - | - | - | 1.00 |\n' "$RAW_NAME" "$RAW_SIG"
    echo
    echo "| scenario | answers | requests issued | distinct paths | repeats | Redis keyspace hits (per answer) | Redis keyspace misses (per answer) | MariaDB SELECTs (answers per SELECT) | server CPU | mariadbd CPU | redis CPU | server µs/answer | mariadbd µs/answer | redis µs/answer | machine idle | server RSS growth, B/answer |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    SCENARIOS=("$S_MISS")
    [[ "$MISS_ONLY" == false ]] && SCENARIOS+=("$S_L1OFF" "$S_L1ON")
    for n in "${SCENARIOS[@]}"; do diag "$n"; done
    echo
    for n in "${SCENARIOS[@]}"; do echo "- ocsp-origin threads, $n (% of one core): ${THREADS_CPU[$n]}"; done
    echo "- machine load average before the run: $LOADAVG"
    echo "- server stderr: $LOGS_SUMMARY; mariadbd.log: $ABORTED \"Aborted connection\" warnings (connections of a stopped ocsp-origin)"
    for n in "${NOTES[@]}"; do echo "- note: $n"; done
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
echo "raw wrk / sign_queue / redis-benchmark output, configs, server and service logs and results.md in $OUT"
