# Helpers shared by the end-to-end benchmark scripts in this folder (sourced).
# The sourcing script defines die() and log() first.

# Ratio a/b with two decimals, "n/a" when b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# softhsm_module: the path of libsofthsm2.so, or nothing.
softhsm_module() {
    ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so 2>/dev/null | head -n 1
}

# softhsm_token DIR KEY: a private SoftHSM2 token under DIR (label "bench",
# user PIN 1234) holding the PEM key KEY (label "ca", id 01); exports
# SOFTHSM2_CONF so that this script and the servers it starts find it.
softhsm_token() {
    mkdir -p "$1/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$1/tokens" >"$1/softhsm2.conf"
    export SOFTHSM2_CONF="$1/softhsm2.conf"
    timeout 60 softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
    timeout 60 softhsm2-util --import "$2" --token bench --label ca --id 01 --pin 1234 >/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {
    local url=$1 pid=$2 name=$3 logf=$4 i
    for ((i = 0; i < 300; i++)); do
        curl -sf -o /dev/null --max-time 1 "$url" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 || true
            die "$name exited before answering $url"
        fi
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 || true
    die "$name did not answer $url within 30 s"
}

check_alive() {
    kill -0 "$1" 2>/dev/null && return 0
    tail -n 30 "$3" >&2 || true
    die "$2 (pid $1) is gone"
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts a connection (30 s at most);
# fails at once if PID exits. For servers without an HTTP health answer, and
# for machines without curl.
wait_port() {
    local i
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
