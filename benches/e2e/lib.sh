# Helpers shared by the end-to-end benchmark scripts in this folder (sourced).
# The sourcing script defines die() and log() first.

# Ratio a/b with two decimals, "n/a" when b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

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
