#!/usr/bin/env bash
# Starts private service instances for the test suite, on free loopback ports,
# in a temporary directory, and exports where they are. Sourced by tests/run.sh:
#
#   source tests/services.sh && start_mariadb   # exports OCSP_TEST_MYSQL_URL
#   stop_services                               # (run from an EXIT trap)
#
# Nothing system-wide is touched: the MariaDB instance has its own datadir,
# socket and port, runs as the current user and is killed on exit.

SERVICES_DIR="${SERVICES_DIR:-$(mktemp -d -t ocsp-origin-services.XXXXXX)}"
SERVICE_PIDS=()

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_mariadb() {
    local dir="$SERVICES_DIR/mariadb" port
    port="$(free_port)"
    mkdir -p "$dir/data"
    local installer mariadbd
    installer="$(command -v mariadb-install-db || command -v mysql_install_db)"
    mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
    "$installer" --no-defaults --user="$(id -un)" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; return 1; }
    "$mariadbd" --no-defaults --user="$(id -un)" --datadir="$dir/data" --port="$port" \
        --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
        --max-connections=500 >"$dir/mariadbd.log" 2>&1 &
    SERVICE_PIDS+=($!)
    local i
    for i in $(seq 1 100); do
        if mariadb-admin --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot ping >/dev/null 2>&1; then
            export OCSP_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port/"
            echo "services: MariaDB on 127.0.0.1:$port (datadir $dir/data)" >&2
            return 0
        fi
        sleep 0.2
    done
    echo "services: MariaDB did not start; log:" >&2
    tail -20 "$dir/mariadbd.log" >&2
    return 1
}

stop_services() {
    local pid
    for pid in "${SERVICE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVICE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SERVICES_DIR"
}

redis_bin() { command -v redis-server || echo /usr/bin/redis-server; }

# A free port usable by a Redis Cluster node: at most 55535 (its cluster bus
# listens on port + 10000) with the bus port free too.
free_cluster_port() {
    python3 -c '
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if p <= 55000:
        try:
            b = socket.socket(); b.bind(("127.0.0.1", p + 10000)); b.close()
            a.close(); print(p); break
        except OSError:
            pass
    a.close()
'
}

# start_redis_node DIR [extra redis-server args...]: starts one redis-server on
# a free port, retrying on another port if it does not come up (a port taken
# between choosing and binding), and sets REDIS_NODE_PORT. (Not used in a
# command substitution: the server's pid must reach SERVICE_PIDS here.)
start_redis_node() {
    local dir=$1 port attempt
    shift
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        if [[ " $* " == *" --cluster-enabled yes "* ]]; then port="$(free_cluster_port)"; else port="$(free_port)"; fi
        "$(redis_bin)" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
            --logfile "$dir/redis-$port.log" "$@" >/dev/null 2>&1 &
        SERVICE_PIDS+=($!)
        if wait_redis "$port"; then
            REDIS_NODE_PORT="$port"
            return 0
        fi
        echo "services: Redis on port $port did not come up (attempt $attempt); log:" >&2
        tail -5 "$dir/redis-$port.log" >&2 2>/dev/null || true
    done
    return 1
}

# start_redis: a standalone instance; exports OCSP_TEST_REDIS_URL.
start_redis() {
    local port
    start_redis_node "$SERVICES_DIR/redis" || return 1
    port="$REDIS_NODE_PORT"
    export OCSP_TEST_REDIS_URL="redis://127.0.0.1:$port"
    echo "services: Redis on 127.0.0.1:$port" >&2
}

# start_redis_cluster: three masters, no replicas; exports
# OCSP_TEST_REDIS_CLUSTER_URL (one node's URL).
start_redis_cluster() {
    local ports=() i
    for i in 1 2 3; do
        start_redis_node "$SERVICES_DIR/cluster-$i" --cluster-enabled yes \
            --cluster-config-file "$SERVICES_DIR/cluster-$i/nodes.conf" || return 1
        ports+=("$REDIS_NODE_PORT")
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$SERVICES_DIR/cluster-create.log" 2>&1 \
        || { cat "$SERVICES_DIR/cluster-create.log" >&2; return 1; }
    for i in $(seq 1 200); do
        if redis-cli -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
            export OCSP_TEST_REDIS_CLUSTER_URL="redis://127.0.0.1:${ports[0]}"
            echo "services: Redis Cluster on 127.0.0.1:${ports[*]}" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "services: Redis Cluster did not become ready" >&2
    return 1
}

wait_redis() {
    local i
    for i in $(seq 1 200); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    return 1
}
