#!/usr/bin/env bash
# hit_vs_nginx.sh: end-to-end cache-hit benchmark of `ocsp-origin demo` next to
# nginx serving a static file of the same size.
#
# WHAT IT MEASURES
#   Throughput (requests/s) and latency percentiles (p50/p90/p99/p99.9) of
#   already-cached OCSP answers over HTTP/1.1 keep-alive:
#     hit_get_p256_keepalive_c<N>   ocsp-origin, GET /{url-encoded base64 DER},
#                                   rotating over --urls distinct serials
#     nginx_static_c<N>             nginx, GET /resp.der, a static file whose size
#                                   equals one real ocsp-origin response
#     hit_post_p256_keepalive_c<N>  ocsp-origin, POST / with the DER request body,
#                                   rotating over the same serials
#   plus the ratio ocsp-origin / nginx for requests/s. nginx is the "how close
#   to a plain static file server are we" yardstick, not a competitor.
#
# HOW
#   1. builds (or takes $OCSP_ORIGIN_BIN) and starts `ocsp-origin demo` on a free
#      loopback port; waits for the health answer on `GET /`;
#   2. makes one DER OCSP request per serial from the demo's index.txt with
#      `openssl ocsp -reqout` (in parallel), turns each into a GET path
#      (standard base64, with + / = percent-encoded as real clients do) and
#      keeps the raw DER for POST;
#   3. checks one GET and one POST answer with `openssl ocsp -respin ... -CAfile`
#      (aborts unless "Response verify OK");
#   4. starts nginx (`daemon off`, config in the out dir) on another loopback port;
#   5. wrk Lua scripts rotate through the paths / bodies, count non-200 answers
#      and print a machine-readable `RESULT ...` line; every scenario gets a 2 s
#      warm-up (which signs and caches every answer) before its measured run;
#   6. prints a Markdown table (also saved as $OUT/results.md) with the commit,
#      machine and exact command line, ready for benches/RESULTS.md.
#
# SCOPE
#   Loopback only (127.0.0.1), nothing is exposed. The load generator shares the
#   CPUs with the server under test, so absolute numbers are lower bounds and the
#   ocsp-origin/nginx ratio is the figure to compare between runs. Every server
#   the script starts is stopped on exit (trap), and every run is bounded by
#   --duration.
#
# USAGE
#   benches/e2e/hit_vs_nginx.sh [--duration 10s] [--connections 64] [--threads 2]
#                               [--cores 2] [--urls 1000] [--out DIR] [--no-pin]
#   --no-pin   start the demo with unpinned shards (a 2-core box shared with wrk)
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary (else: cargo build --release)
set -euo pipefail

CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE="${CMDLINE% }"
[[ -n "${OCSP_ORIGIN_BIN:-}" ]] && CMDLINE="OCSP_ORIGIN_BIN=$(printf '%q' "$OCSP_ORIGIN_BIN") $CMDLINE"

DURATION=10s
CONNECTIONS=64
THREADS=2
CORES=2
URLS=1000
OUT=""
PIN_ARG=""
WARMUP=2s

usage() {
    sed -n '/^# USAGE/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "hit_vs_nginx: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --cores) CORES="${2:?}"; shift 2 ;;
        --urls) URLS="${2:?}"; shift 2 ;;
        --out) OUT="${2:?}"; shift 2 ;;
        --duration=*) DURATION="${1#*=}"; shift ;;
        --connections=*) CONNECTIONS="${1#*=}"; shift ;;
        --threads=*) THREADS="${1#*=}"; shift ;;
        --cores=*) CORES="${1#*=}"; shift ;;
        --urls=*) URLS="${1#*=}"; shift ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --no-pin) PIN_ARG="--no-pin"; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
for v in CONNECTIONS THREADS CORES URLS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, got '${!v}'"
done
[[ "$DURATION" =~ ^[0-9]+[smh]?$ ]] || die "--duration must look like 10s / 2m, got '$DURATION'"
(( THREADS <= CONNECTIONS )) || die "--threads ($THREADS) must not exceed --connections ($CONNECTIONS)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# ---------------------------------------------------------------- tools
NGINX="$(command -v nginx || true)"; [[ -n "$NGINX" ]] || { [[ -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx; }
if ! command -v wrk >/dev/null || [[ -z "$NGINX" ]]; then
    log "wrk and/or nginx missing: installing with apt-get install -y wrk nginx-light"
    apt-get install -y wrk nginx-light >&2 || { apt-get update >&2 && apt-get install -y wrk nginx-light >&2; }
    NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi
for t in wrk openssl curl python3 awk base64; do
    command -v "$t" >/dev/null || die "$t is required"
done
[[ -x "$NGINX" ]] || die "nginx not found"

# ---------------------------------------------------------------- out dir
if [[ -z "$OUT" ]]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/ocsp-e2e-hit.XXXXXX")"
else
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)"
fi
echo "out dir: $OUT"
DEMO="$OUT/demo"
mkdir -p "$DEMO" "$OUT/req" "$OUT/www" "$OUT/nginx-tmp" "$OUT/wrk"

# ---------------------------------------------------------------- cleanup
PIDS=()
WRK_PID=""
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
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# wait_http URL PID NAME LOGFILE: until URL answers 2xx, PID alive, 30 s at most.

# check_alive PID NAME LOGFILE: fail loudly if a server died during a run.

# ---------------------------------------------------------------- ocsp-origin
if [[ -n "${OCSP_ORIGIN_BIN:-}" ]]; then
    BIN="$OCSP_ORIGIN_BIN"
    [[ -x "$BIN" ]] || die "OCSP_ORIGIN_BIN=$BIN is not executable"
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release >&2)
    BIN="$REPO/target/release/ocsp-origin"
fi

CERTS=$(( URLS < 5 ? 5 : URLS ))
PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
log "starting ocsp-origin demo on $BASE (--cores $CORES --certs $CERTS)"
"$BIN" demo --dir "$DEMO" --listen "127.0.0.1:$PORT" --cores "$CORES" --certs "$CERTS" $PIN_ARG \
    >"$OUT/ocsp-origin.log" 2>&1 &
OCSP_PID=$!
PIDS+=("$OCSP_PID")
wait_http "$BASE/" "$OCSP_PID" ocsp-origin "$OUT/ocsp-origin.log"
CA="$DEMO/ca.pem"

# ---------------------------------------------------------------- requests
# The first $URLS serials of the CA database (good and revoked alike: a cached
# "revoked" answer is as much a hit as a "good" one).
awk -F'\t' -v n="$URLS" '$4 != "" { print $4; if (++c >= n) exit }' "$DEMO/index.txt" >"$OUT/serials.txt"
[[ "$(wc -l <"$OUT/serials.txt")" -eq "$URLS" ]] || die "index.txt has fewer than $URLS serials"
GOOD_SERIAL="$(awk -F'\t' '$1 == "V" { print $4; exit }' "$DEMO/index.txt")"
[[ -n "$GOOD_SERIAL" ]] || die "no valid certificate in index.txt"

log "writing $URLS DER requests with openssl ($(nproc) in parallel)"
xargs -P "$(nproc)" -I{} openssl ocsp -issuer "$CA" -serial 0x{} -no_nonce -reqout "$OUT/req/{}.der" \
    <"$OUT/serials.txt" >/dev/null
openssl ocsp -issuer "$CA" -serial "0x$GOOD_SERIAL" -no_nonce -reqout "$OUT/good-req.der" >/dev/null

# GET paths (one per line) and POST body files (one path per line), same order.
python3 - "$OUT" <<'PY'
import base64, sys
out = sys.argv[1]
serials = open(f"{out}/serials.txt").read().split()
with open(f"{out}/get_paths.txt", "w") as g, open(f"{out}/post_bodies.txt", "w") as p:
    for s in serials:
        f = f"{out}/req/{s}.der"
        b64 = base64.b64encode(open(f, "rb").read()).decode()
        g.write("/" + b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D") + "\n")
        p.write(f + "\n")
PY

# ---------------------------------------------------------------- sanity check
# verify_resp FILE WHAT: the answer must verify against the demo CA and say
# "good" for GOOD_SERIAL.
verify_resp() {
    local outp
    outp="$(openssl ocsp -respin "$1" -issuer "$CA" -serial "0x$GOOD_SERIAL" -CAfile "$CA" -no_nonce 2>&1)" || true
    if ! grep -q 'Response verify OK' <<<"$outp" || ! grep -q ': good' <<<"$outp"; then
        echo "$outp" >&2
        die "$2 answer did not verify"
    fi
    log "$2 answer: Response verify OK, $(grep ': good' <<<"$outp" | tr -d '\t')"
}
GOOD_PATH="$(python3 -c 'import base64,sys; b=base64.b64encode(open(sys.argv[1],"rb").read()).decode(); print("/"+b.replace("+","%2B").replace("/","%2F").replace("=","%3D"))' "$OUT/good-req.der")"
read -r GET_CODE GET_HDR GET_BODY < <(curl -sS -o "$OUT/sample-get.der" -w '%{http_code} %{size_header} %{size_download}\n' "$BASE$GOOD_PATH")
[[ "$GET_CODE" == 200 ]] || die "GET sanity check: HTTP $GET_CODE"
verify_resp "$OUT/sample-get.der" GET
read -r POST_CODE POST_HDR POST_BODY < <(curl -sS -o "$OUT/sample-post.der" -w '%{http_code} %{size_header} %{size_download}\n' \
    -H 'Content-Type: application/ocsp-request' --data-binary "@$OUT/good-req.der" "$BASE/")
[[ "$POST_CODE" == 200 ]] || die "POST sanity check: HTTP $POST_CODE"
verify_resp "$OUT/sample-post.der" POST

# ---------------------------------------------------------------- nginx
cp "$OUT/sample-get.der" "$OUT/www/resp.der"
NPORT="$(free_port)"
NBASE="http://127.0.0.1:$NPORT"
NGINX_USER=""
[[ "$(id -u)" -eq 0 ]] && NGINX_USER="user root;"   # workers must read $OUT/www
cat >"$OUT/nginx.conf" <<EOF
# Written by benches/e2e/hit_vs_nginx.sh
$NGINX_USER
daemon off;
master_process on;
worker_processes $CORES;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/ocsp-response;
    client_body_temp_path $OUT/nginx-tmp/body;
    proxy_temp_path $OUT/nginx-tmp/proxy;
    fastcgi_temp_path $OUT/nginx-tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx-tmp/uwsgi;
    scgi_temp_path $OUT/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT reuseport;
        location / { root $OUT/www; }
    }
}
EOF
log "starting nginx on $NBASE"
"$NGINX" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" >>"$OUT/nginx-error.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "$NBASE/resp.der" "$NGINX_PID" nginx "$OUT/nginx-error.log"
read -r NGX_CODE NGX_HDR NGX_BODY < <(curl -sS -o /dev/null -w '%{http_code} %{size_header} %{size_download}\n' "$NBASE/resp.der")
[[ "$NGX_CODE" == 200 && "$NGX_BODY" == "$GET_BODY" ]] || die "nginx sanity check: HTTP $NGX_CODE, $NGX_BODY bytes (want $GET_BODY)"
echo "/resp.der" >"$OUT/nginx_paths.txt"

# ---------------------------------------------------------------- wrk scripts
# Shared part: per-thread id for spreading the rotation, non-200 counting, and
# the RESULT line (latencies in microseconds).
LUA_COMMON='
local threads = {}
local next_id = 0
function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

non200 = 0
last_bad = 0
function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      last_bad = status
   end
end

function done(summary, latency, requests)
   local bad, code = 0, 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non200") or 0)
      local c = t:get("last_bad") or 0
      if c ~= 0 then code = c end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT rps=%.1f requests=%d duration_s=%.3f bytes=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f non200=%d last_non200_status=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
      summary.requests / (summary.duration / 1e6), summary.requests, summary.duration / 1e6,
      summary.bytes, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, bad, code, e.connect, e.read, e.write, e.timeout))
end
'

# GET: args[1] is a file of request targets, one per line.
cat >"$OUT/wrk/get.lua" <<EOF
-- GET rotating over the request targets listed in args[1].
local reqs, n, i
function init(args)
   reqs = {}
   for line in io.lines(args[1]) do
      if #line > 0 then reqs[#reqs + 1] = wrk.format("GET", line) end
   end
   n = #reqs
   assert(n > 0, "no paths in " .. args[1])
   i = ((id or 0) * 7919) % n
end
function request()
   local r = reqs[i + 1]
   i = (i + 1) % n
   return r
end
$LUA_COMMON
EOF

# POST: args[1] is a file listing DER request files, one per line.
cat >"$OUT/wrk/post.lua" <<EOF
-- POST / rotating over the DER bodies whose files are listed in args[1].
local reqs, n, i
function init(args)
   reqs = {}
   local hdrs = { ["Content-Type"] = "application/ocsp-request" }
   for file in io.lines(args[1]) do
      if #file > 0 then
         local f = assert(io.open(file, "rb"))
         local body = f:read("*a")
         f:close()
         reqs[#reqs + 1] = wrk.format("POST", "/", hdrs, body)
      end
   end
   n = #reqs
   assert(n > 0, "no bodies in " .. args[1])
   i = ((id or 0) * 7919) % n
end
function request()
   local r = reqs[i + 1]
   i = (i + 1) % n
   return r
end
$LUA_COMMON
EOF

# ---------------------------------------------------------------- runs
# cpu_ticks PID: user+system clock ticks of a process and its direct children
# (nginx workers), all threads included.
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() {
    local p total=0 t
    for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
        t="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null)" || t=0
        total=$(( total + ${t:-0} ))
    done
    echo "$total"
}

declare -A RES
# run_wrk NAME DURATION LUA URL LIST SERVER_PID: runs wrk, keeps its output,
# stores the RESULT line (plus the server's CPU use, in % of one core) in RES[NAME].
run_wrk() {
    local name=$1 dur=$2 lua=$3 url=$4 list=$5 spid=$6 line c0 c1 cpu
    log "wrk $name: -t$THREADS -c$CONNECTIONS -d$dur $url"
    c0="$(cpu_ticks "$spid")"
    # In the background + wait, so that a signal to this script is handled at
    # once (the trap then stops wrk too) rather than after the run.
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "$dur" --timeout 5s -s "$lua" "$url" -- "$list" \
        >"$OUT/wrk-$name.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$OUT/wrk-$name.txt" >&2; die "wrk failed ($name)"; }
    WRK_PID=""
    c1="$(cpu_ticks "$spid")"
    line="$(grep '^RESULT ' "$OUT/wrk-$name.txt" | tail -n 1)" || true
    [[ -n "$line" ]] || { cat "$OUT/wrk-$name.txt" >&2; die "no RESULT line from wrk ($name)"; }
    cpu="$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" -v s="$(sed -n 's/.* duration_s=\([^ ]*\).*/\1/p' <<<"$line")" \
        'BEGIN { printf "%.0f", (s > 0 ? 100 * d / hz / s : 0) }')"
    line="$line server_cpu_pct=$cpu"
    echo "    $line" >&2
    RES[$name]="$line"
}
# field NAME KEY: one key=value out of RES[NAME].
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" ${RES[$1]}"; }

S_GET="hit_get_p256_keepalive_c$CONNECTIONS"
S_NGX="nginx_static_c$CONNECTIONS"
S_POST="hit_post_p256_keepalive_c$CONNECTIONS"

run_wrk "warmup-$S_GET" "$WARMUP" "$OUT/wrk/get.lua" "$BASE" "$OUT/get_paths.txt" "$OCSP_PID"
run_wrk "$S_GET" "$DURATION" "$OUT/wrk/get.lua" "$BASE" "$OUT/get_paths.txt" "$OCSP_PID"
check_alive "$OCSP_PID" ocsp-origin "$OUT/ocsp-origin.log"

run_wrk "warmup-$S_NGX" "$WARMUP" "$OUT/wrk/get.lua" "$NBASE" "$OUT/nginx_paths.txt" "$NGINX_PID"
run_wrk "$S_NGX" "$DURATION" "$OUT/wrk/get.lua" "$NBASE" "$OUT/nginx_paths.txt" "$NGINX_PID"
check_alive "$NGINX_PID" nginx "$OUT/nginx-error.log"

run_wrk "warmup-$S_POST" "$WARMUP" "$OUT/wrk/post.lua" "$BASE/" "$OUT/post_bodies.txt" "$OCSP_PID"
run_wrk "$S_POST" "$DURATION" "$OUT/wrk/post.lua" "$BASE/" "$OUT/post_bodies.txt" "$OCSP_PID"
check_alive "$OCSP_PID" ocsp-origin "$OUT/ocsp-origin.log"
curl -sf -o /dev/null --max-time 2 "$BASE/" || die "ocsp-origin health check failed after the runs"
OCSP_RSS_KB="$(ps -o rss= -p "$OCSP_PID" | tr -d ' ')"

# ---------------------------------------------------------------- report
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$COMMIT" != unknown ]] && ! git -C "$REPO" diff --quiet HEAD -- 2>/dev/null; then
    COMMIT="$COMMIT-dirty"
fi
CPU_MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="$(uname -m)"

us2ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
row() {
    local s=$1 vs=$2 errs
    errs=$(( $(field "$s" connect_err) + $(field "$s" read_err) + $(field "$s" write_err) + $(field "$s" timeout_err) ))
    printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s%% | %s |\n' "$s" "$(field "$s" rps)" \
        "$(us2ms "$(field "$s" p50_us)")" "$(us2ms "$(field "$s" p90_us)")" \
        "$(us2ms "$(field "$s" p99_us)")" "$(us2ms "$(field "$s" p999_us)")" \
        "$(field "$s" non200)" "$errs" "$(field "$s" server_cpu_pct)" "$vs"
}
NGX_RPS="$(field "$S_NGX" rps)"

{
    echo "### Cache hits vs nginx static file (loopback, HTTP/1.1 keep-alive)"
    echo
    echo "- commit: \`$COMMIT\`; binary: \`$BIN\`"
    echo "- machine: $(nproc) CPUs, $CPU_MODEL; kernel $(uname -r)"
    echo "- tools: $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(openssl version | awk '{ print $1, $2 }')"
    echo "- load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after a $WARMUP warm-up each); server: --cores $CORES ${PIN_ARG:-(pinned)}, nginx worker_processes $CORES; client and servers share the CPUs; server CPU = user+sys of the server process(es) during the run, 100% = one core"
    echo "- ocsp-origin: $URLS distinct serials (P-256, SHA-1 CertID), answer $GET_BODY B body + $GET_HDR B headers; nginx: one $NGX_BODY B file + $NGX_HDR B headers"
    echo "- command: \`$CMDLINE\`"
    echo
    echo "| scenario | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | non-200 | socket errors | server CPU | req/s vs nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    row "$S_GET" "$(ratio "$(field "$S_GET" rps)" "$NGX_RPS")"
    row "$S_NGX" "1.00"
    row "$S_POST" "$(ratio "$(field "$S_POST" rps)" "$NGX_RPS")"
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
echo "ocsp-origin RSS after the runs: ${OCSP_RSS_KB:-?} KiB"
echo "raw wrk output, logs and results.md in $OUT"
