#!/usr/bin/env bash
# ratchet.sh: the CDN cache-drop ratchet with `ocsp-origin bench`, against the
# embedded defaults and against Redis + MariaDB + SoftHSM2, plus the same load
# side by side against nginx (static file), `openssl ocsp -multi 2` and CFSSL's
# `cfssl ocspserve`.
#
# WHAT IT RUNS (one invocation, every server on loopback, stopped on exit)
#   calibrate   ocsp-origin embedded, every serial warm: first closed loop,
#               the most answers/s it gives (C, a saturation point: any
#               open-loop schedule at C queues without bound); then open loop
#               at 0.9·C, 0.8·C, … down to 0.3·C, stopping at the first rate
#               whose hit p99 is within --slo-ms (10): the hit rate this
#               machine *sustains* (H). The ratchet's rate is H unless --rate
#               is given; --slo-ms 0 uses C as before.
#   embedded    `ocsp-origin serve` on a demo CA (index.txt, software P-256 key),
#               bench --ratchet $RATCHET --rate H: stage f sends f·H requests/s
#               with f of the stage's keyspace never asked for before.
#   production  the same CA with statuses in a private MariaDB (`db import`),
#               responses cached in a private Redis, the key in a private
#               SoftHSM2 token (PKCS#11): the same ratchet.
#   compare     a 1000-certificate CA, every answer warm where the server
#               caches, GET only (nginx cannot POST to a file), closed loop,
#               same connections and duration against: ocsp-origin, nginx
#               serving one response body as a static file (--no-verify: the
#               ceiling for hits), `openssl ocsp -multi 2 -ndays 1` (signs
#               every answer), and `cfssl ocspserve` serving responses
#               pre-signed by the same CA key (Debian's golang-cfssl).
#   Connections: a CDN opens many; with few, an open-loop schedule backs up in
#   the generator (misses hold the connections) and the server never sees the
#   load it must shed. The ratchet uses --connections (1000); the side-by-side
#   runs --compare-connections (64: `openssl ocsp` serves one connection per
#   process).
#   Every OCSP answer is verified by the bench (signature, CertID, status,
#   validity); a wrong answer fails the script. Exports of every run (hgrm,
#   interval logs, plot.svg, summary.md/json, the server's own histograms)
#   land in $OUT/<scenario>/; $OUT/results.md has the tables with commit,
#   machine and command.
#
# USAGE
#   benches/e2e/ratchet.sh [--out DIR] [--duration SECS] [--ratchet LIST]
#                          [--rate R] [--cores N] [--connections C] [--compare-connections C]
#                          [--certs N] [--threads T] [--skip embedded,production,compare]
#                          [--server-toml 'key = value']... [--server-cpus LIST] [--bench-cpus LIST]
#   --slo-ms       hit p99 bound for the sustained rate (default 10; 0 = use C)
#   --server-toml  a line added to ocsp-origin's config before its tables
#                  (repeatable; a table, e.g. '[cache]', then its keys)
#   --server-cpus / --bench-cpus  run the servers / the generator under
#                  `taskset -c LIST`, so they do not share CPUs
#   OCSP_ORIGIN_BIN=/path/to/ocsp-origin  use a prebuilt binary
#   Needs (Debian): openssl curl python3 mariadb-server redis-server softhsm2
#   nginx-light golang-cfssl; installs the missing ones when run as root.
set -euo pipefail

CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE="${CMDLINE% }"
[[ -n "${OCSP_ORIGIN_BIN:-}" ]] && CMDLINE="OCSP_ORIGIN_BIN=$(printf '%q' "$OCSP_ORIGIN_BIN") $CMDLINE"

OUT=""
DURATION=10
RATCHET="1/16,1/8,1/4,1/2,1"
RATE=""
CORES=1
CONNECTIONS=1000
COMPARE_CONNECTIONS=64
CERTS=300000
THREADS=1
SKIP=""
SERVER_TOML=()
SLO_MS=10
RATE_NOTE=""
SERVER_CPUS=""
BENCH_CPUS=""

die() { echo "ratchet: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
usage() { sed -n '/^# USAGE/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
# shellcheck source=benches/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="${2:?}"; shift 2 ;;
        --duration) DURATION="${2:?}"; shift 2 ;;
        --ratchet) RATCHET="${2:?}"; shift 2 ;;
        --rate) RATE="${2:?}"; shift 2 ;;
        --cores) CORES="${2:?}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?}"; shift 2 ;;
        --compare-connections) COMPARE_CONNECTIONS="${2:?}"; shift 2 ;;
        --certs) CERTS="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --skip) SKIP="${2:?}"; shift 2 ;;
        --server-toml) SERVER_TOML+=("${2:?}"); shift 2 ;;
        --slo-ms) SLO_MS="${2:?}"; shift 2 ;;
        --server-cpus) SERVER_CPUS="${2:?}"; shift 2 ;;
        --bench-cpus) BENCH_CPUS="${2:?}"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
for v in CORES CONNECTIONS COMPARE_CONNECTIONS CERTS THREADS DURATION; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, got '${!v}'"
done
[[ -z "$RATE" || "$RATE" =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer"
[[ "$SLO_MS" =~ ^[0-9]+$ ]] || die "--slo-ms must be a whole number of milliseconds"
skip() { [[ ",$SKIP," == *",$1,"* ]]; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$REPO/bench-out/ratchet-$(date +%s)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

need=(openssl curl python3)
skip production || need+=(mariadbd redis-server softhsm2-util)
skip compare || need+=(nginx cfssl)
missing=()
for t in "${need[@]}"; do
    command -v "$t" >/dev/null || [[ -x "/usr/sbin/$t" ]] || missing+=("$t")
done
if ((${#missing[@]})); then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        pkgs=()
        for t in "${missing[@]}"; do
            case "$t" in
                mariadbd) pkgs+=(mariadb-server mariadb-client) ;;
                redis-server) pkgs+=(redis-server redis-tools) ;;
                softhsm2-util) pkgs+=(softhsm2) ;;
                nginx) pkgs+=(nginx-light) ;;
                cfssl) pkgs+=(golang-cfssl) ;;
                *) pkgs+=("$t") ;;
            esac
        done
        log "installing ${pkgs[*]}"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
    else
        die "missing: ${missing[*]} (Debian: apt-get install mariadb-server redis-server softhsm2 nginx-light golang-cfssl)"
    fi
fi

PIDS=()
SERVICES_STARTED=false
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    $SERVICES_STARTED && stop_services
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${OCSP_ORIGIN_BIN:-}" ]]; then
    BIN="$OCSP_ORIGIN_BIN"
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release >&2)
    BIN="$REPO/target/release/ocsp-origin"
fi
[[ -x "$BIN" ]] || die "$BIN is not executable"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$REPO" diff --quiet 2>/dev/null || COMMIT="$COMMIT+dirty"
export OCSP_ORIGIN_COMMIT="$COMMIT"
MACHINE="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) CPUs"

# start_server NAME CONFIG [env...]: serve CONFIG, wait for its health answer.
start_server() {
    local name=$1 config=$2 port
    shift 2
    port="$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$config" | head -1)"
    env "$@" ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BIN" serve --config "$config" >"$OUT/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "http://127.0.0.1:$port/" "$SERVER_PID" "$name" "$OUT/$name.log"
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
# bench NAME CONFIG ARGS...: one bench run into $OUT/NAME.
bench() {
    local name=$1 config=$2
    shift 2
    log "bench $name: $*"
    local rc=0
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BIN" bench --config "$config" --out "$OUT/$name" --threads "$THREADS" \
        --connections "$CONNECTIONS" --server-cores "$CORES" "$@" 2>&1 | tee "$OUT/$name.txt" >&2 || rc=$?
    if [[ "$rc" -ne 0 ]]; then
        # Another responder's wrong answers are a finding for the table; ours fail the script.
        [[ "$name" == compare-openssl || "$name" == compare-cfssl ]] || die "bench $name failed (see above)"
        log "bench $name: wrong answers from a third-party responder (counted in the table)"
    fi
}
# demo_ca DIR N: a demo CA with N certificates (the demo server is stopped once written).
demo_ca() {
    local dir=$1 n=$2 port pid
    port="$(free_port)"
    "$BIN" demo --dir "$dir" --certs "$n" --cores 1 --no-pin --listen "127.0.0.1:$port" >"$dir.log" 2>&1 &
    pid=$!
    wait_http "http://127.0.0.1:$port/" "$pid" demo "$dir.log"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
write_config() { # FILE PORT ADMINPORT EXTRA...
    local file=$1 port=$2 admin=$3
    shift 3
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "cores = $CORES"
        echo "pin = false"
        ((${#SERVER_TOML[@]} == 0)) || printf '%s\n' "${SERVER_TOML[@]}"
        printf '%s\n' "$@"
        echo "[admin]"
        echo "listen = \"127.0.0.1:$admin\""
    } >"$file"
}

RESULTS="$OUT/results.md"
{
    echo "Commit \`$COMMIT\`, $(date -u +%Y-%m-%d), machine: $MACHINE."
    echo "Command: \`$CMDLINE\`"
    echo
} >"$RESULTS"

# ------------------------------------------------------------ embedded
CA_DIR="$OUT/ca"
if ! skip embedded; then
log "demo CA with $CERTS certificates"
demo_ca "$CA_DIR" "$CERTS"
EPORT="$(free_port)"; EADMIN="$(free_port)"
write_config "$OUT/embedded.toml" "$EPORT" "$EADMIN" \
    "[[issuer]]" "name = \"demo\"" "cert = \"$CA_DIR/ca.pem\"" "key = \"$CA_DIR/ca.key\"" \
    "index = \"$CA_DIR/index.txt\""
start_server embedded-server "$OUT/embedded.toml"
if [[ -z "$RATE" ]]; then
    bench calibrate "$OUT/embedded.toml" --duration 5 --keyspace 20000 --warm-passes 4
    RATE="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(int(max(x["achieved_rate"] for x in s["stages"])))' "$OUT/calibrate/summary.json")"
    CLOSED="$RATE"
    log "calibrated: $CLOSED answers/s closed loop with every serial warm"
    if ((SLO_MS > 0)); then
        SUSTAINED=""
        for tenths in 9 8 7 6 5 4 3; do
            r=$((CLOSED * tenths / 10))
            # One warm-up pass first: each run draws its own 20,000 serials.
            bench "sustain-$tenths" "$OUT/embedded.toml" --rate "$r" --duration 5 --keyspace 20000 --warm-passes 1
            p99="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stages"][0]; print(s["latency_ms_by_outcome"]["hit"]["p99"])' "$OUT/sustain-$tenths/summary.json")"
            log "open loop at $r/s ($tenths/10 of closed loop): hit p99 $p99 ms"
            if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$p99" "$SLO_MS"; then
                SUSTAINED="$r"
                break
            fi
        done
        [[ -n "$SUSTAINED" ]] || die "no rate down to 0.3 x $CLOSED/s kept hit p99 within $SLO_MS ms"
        RATE="$SUSTAINED"
        RATE_NOTE="; the highest open-loop rate with hit p99 <= $SLO_MS ms, of a $CLOSED/s closed-loop maximum"
        log "sustained: $RATE answers/s with hit p99 <= $SLO_MS ms"
    else
        RATE_NOTE="; the closed-loop maximum"
    fi
fi
stop_server
# A fresh server for the ratchet: nothing cached but the bench's warm-up.
start_server embedded-server "$OUT/embedded.toml"
bench embedded "$OUT/embedded.toml" --ratchet "$RATCHET" --rate "$RATE" --duration "$DURATION"
stop_server
{
    echo "### Ratchet, embedded defaults (index.txt, software P-256 key, L1 only; rate at stage 1 = $RATE/s$RATE_NOTE)"
    echo
    sed -n '/^| stage/,/^$/p' "$OUT/embedded/summary.md"
} >>"$RESULTS"
fi

# ------------------------------------------------------------ production
if ! skip production; then
    skip embedded && die "production needs the embedded run (its CA and calibrated rate)"
    # shellcheck source=tests/services.sh
    source "$REPO/tests/services.sh"
    SERVICES_STARTED=true
    start_mariadb
    start_redis
    MYSQL_URL="${OCSP_TEST_MYSQL_URL}ocsp_bench"
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$(sed 's/.*:\([0-9]*\)\/$/\1/' <<<"$OCSP_TEST_MYSQL_URL")" \
        -uroot -e 'CREATE DATABASE IF NOT EXISTS ocsp_bench'
    softhsm_token "$OUT/softhsm" "$CA_DIR/ca.key"
    MODULE="$(softhsm_module)"
    PPORT="$(free_port)"; PADMIN="$(free_port)"
    write_config "$OUT/production.toml" "$PPORT" "$PADMIN" \
        "[mysql]" "url = \"$MYSQL_URL\"" \
        "[redis]" "url = \"$OCSP_TEST_REDIS_URL\"" \
        "[[issuer]]" "name = \"demo\"" "cert = \"$CA_DIR/ca.pem\"" \
        "[issuer.pkcs11]" "module = \"$MODULE\"" "token_label = \"bench\"" "key_label = \"ca\"" \
        "pin_env = \"BENCH_PIN\""
    "$BIN" db migrate --config "$OUT/production.toml" >&2
    "$BIN" db import --config "$OUT/production.toml" --issuer demo --index "$CA_DIR/index.txt" --chunk 5000 >&2
    start_server production-server "$OUT/production.toml" BENCH_PIN=1234
    bench production "$OUT/production.toml" --ratchet "$RATCHET" --rate "$RATE" --duration "$DURATION"
    stop_server
    {
        echo "### Ratchet, Redis + MariaDB + SoftHSM2 (same CA and rate)"
        echo
        sed -n '/^| stage/,/^$/p' "$OUT/production/summary.md"
    } >>"$RESULTS"
fi

# ------------------------------------------------------------ compare
if ! skip compare; then
    SMALL="$OUT/ca1000"
    demo_ca "$SMALL" 1000
    CPORT="$(free_port)"; CADMIN="$(free_port)"
    write_config "$OUT/compare.toml" "$CPORT" "$CADMIN" \
        "[[issuer]]" "name = \"demo\"" "cert = \"$SMALL/ca.pem\"" "key = \"$SMALL/ca.key\"" \
        "index = \"$SMALL/index.txt\""
    start_server compare-server "$OUT/compare.toml"
    # Every unexpired serial's response, for nginx (one file) and CFSSL (all).
    awk -F'\t' '$1 != "E" { print $4 }' "$SMALL/index.txt" >"$OUT/small-serials.txt"
    first="$(head -1 "$OUT/small-serials.txt")"
    openssl ocsp -issuer "$SMALL/ca.pem" -serial "0x$first" -no_nonce -reqout "$OUT/template.der" >/dev/null
    python3 - "$OUT" "$CPORT" "$first" <<'PY'
import base64, http.client, sys
out, port, first = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tmpl = open(f"{out}/template.der", "rb").read()
old = bytes.fromhex(first)
assert tmpl.count(old) == 1
conn = http.client.HTTPConnection("127.0.0.1", port)
with open(f"{out}/cfssl-responses.txt", "w") as f:
    for s in open(f"{out}/small-serials.txt").read().split():
        new = bytes.fromhex(s)
        assert len(new) == len(old)
        conn.request("POST", "/", tmpl.replace(old, new), {"Content-Type": "application/ocsp-request"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, r.status
        f.write(base64.b64encode(body).decode() + "\n")
        last = body
open(f"{out}/www-resp.der", "wb").write(last)
PY
    CONNECTIONS=$COMPARE_CONNECTIONS bench compare-ocsp-origin "$OUT/compare.toml" --post-share 0 --duration "$DURATION" --warm-passes 4
    CONNECTIONS=$COMPARE_CONNECTIONS bench compare-ocsp-origin-post "$OUT/compare.toml" --post-share 1 --duration "$DURATION" --warm-passes 4
    stop_server

    # nginx: one response body as a static file for every GET path.
    mkdir -p "$OUT/www"
    cp "$OUT/www-resp.der" "$OUT/www/resp.der"
    NPORT="$(free_port)"
    NGINX_USER=""; [[ "$(id -u)" -eq 0 ]] && NGINX_USER="user root;"
    cat >"$OUT/nginx.conf" <<EOF
$NGINX_USER
daemon off;
worker_processes $CORES;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NPORT reuseport backlog=4096;
        root $OUT/www;
        location / { default_type application/ocsp-response; rewrite ^ /resp.der break; }
    }
}
EOF
    nginx -c "$OUT/nginx.conf" &
    NGINX_PID=$!; PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NPORT/x" "$NGINX_PID" nginx "$OUT/nginx-error.log"
    CONNECTIONS=$COMPARE_CONNECTIONS bench compare-nginx "$OUT/compare.toml" --target "127.0.0.1:$NPORT" --no-verify --post-share 0 \
        --duration "$DURATION" --warm-passes 0
    kill -TERM "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true

    # openssl ocsp: signs every answer; one process per connection (-multi 2).
    OPORT="$(free_port)"
    # (openssl ocsp has no bind address: it listens on every interface of this
    # machine for the few seconds of its run; the bench still talks loopback.)
    openssl ocsp -index "$SMALL/index.txt" -port "$OPORT" -rsigner "$SMALL/ca.pem" \
        -rkey "$SMALL/ca.key" -CA "$SMALL/ca.pem" -ndays 1 -multi 2 >"$OUT/openssl-ocsp.log" 2>&1 &
    OPENSSL_PID=$!; PIDS+=("$OPENSSL_PID")
    sleep 1
    check_alive "$OPENSSL_PID" "openssl ocsp" "$OUT/openssl-ocsp.log"
    # Two connections: -multi 2 serves one connection per process and closes it
    # after each answer (HTTP/1.0); with more, its backlog resets connections.
    # POST: its GET handling answers 400 to some of the URL spellings clients
    # use and then resets the connection.
    CONNECTIONS=2 bench compare-openssl "$OUT/compare.toml" --target "127.0.0.1:$OPORT" --post-share 1 \
        --duration "$DURATION" --warm-passes 0
    # Its -multi children outlive the parent and spin on a reset connection:
    # stop them first, by force.
    pkill -KILL -P "$OPENSSL_PID" 2>/dev/null || true
    kill -KILL "$OPENSSL_PID" 2>/dev/null || true
    wait "$OPENSSL_PID" 2>/dev/null || true

    # CFSSL: pre-signed responses (made by ocsp-origin with the same CA key).
    FPORT="$(free_port)"
    cfssl ocspserve -loglevel 4 -address 127.0.0.1 -port "$FPORT" -responses "$OUT/cfssl-responses.txt" \
        >"$OUT/cfssl.log" 2>&1 &
    CFSSL_PID=$!; PIDS+=("$CFSSL_PID")
    sleep 1
    check_alive "$CFSSL_PID" "cfssl ocspserve" "$OUT/cfssl.log"
    # POST: this CFSSL build answers 400 to every GET form.
    CONNECTIONS=$COMPARE_CONNECTIONS bench compare-cfssl "$OUT/compare.toml" --target "127.0.0.1:$FPORT" --post-share 1 \
        --duration "$DURATION" --warm-passes 0
    kill -TERM "$CFSSL_PID"; wait "$CFSSL_PID" 2>/dev/null || true

    python3 - "$OUT" >>"$RESULTS" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("ocsp-origin GET", "compare-ocsp-origin"), ("ocsp-origin POST", "compare-ocsp-origin-post"),
        ("nginx static file (GET)", "compare-nginx"),
        ("openssl ocsp -multi 2 (POST, 2 connections)", "compare-openssl"), ("cfssl ocspserve (POST)", "compare-cfssl")]
data = {n: json.load(open(f"{out}/{d}/summary.json")) for n, d in rows}
base = data["ocsp-origin GET"]["stages"][0]["achieved_rate"]
nginx = data["nginx static file (GET)"]["stages"][0]["achieved_rate"]
print("### Same load, side by side (1000 serials, closed loop, same connections; GET where the server takes it)\n")
print("| server | answers/s | p50 ms | p99 ms | p99.9 ms | errors | wrong | vs nginx | ocsp-origin vs it |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n, _ in rows:
    s = data[n]["stages"][0]
    lat = s["latency_ms"]
    r = s["achieved_rate"]
    vs = f"{base / r:.2f}" if r else "n/a"
    print(f"| {n} | {r:.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p99_9']:.2f} | "
          f"{s['counts']['error']} | {s['wrong']} | {r / nginx:.2f} | {vs} |")
print()
PY
fi

log "results: $RESULTS"
cat "$RESULTS"
