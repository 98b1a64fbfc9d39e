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

# start_redis: a standalone instance; exports OCSP_TEST_REDIS_URL.
start_redis() {
    local dir="$SERVICES_DIR/redis" port
    port="$(free_port)"
    mkdir -p "$dir"
    "$(redis_bin)" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
    SERVICE_PIDS+=($!)
    wait_redis "$port" || return 1
    export OCSP_TEST_REDIS_URL="redis://127.0.0.1:$port"
    echo "services: Redis on 127.0.0.1:$port" >&2
}

# start_redis_cluster: three masters, no replicas; exports
# OCSP_TEST_REDIS_CLUSTER_URL (one node's URL).
start_redis_cluster() {
    local ports=() p i
    for i in 1 2 3; do
        p="$(free_port)"
        ports+=("$p")
        mkdir -p "$SERVICES_DIR/cluster-$p"
        "$(redis_bin)" --port "$p" --bind 127.0.0.1 --save "" --appendonly no --cluster-enabled yes \
            --cluster-config-file "$SERVICES_DIR/cluster-$p/nodes.conf" --dir "$SERVICES_DIR/cluster-$p" \
            --logfile "$SERVICES_DIR/cluster-$p/redis.log" >/dev/null 2>&1 &
        SERVICE_PIDS+=($!)
    done
    for p in "${ports[@]}"; do wait_redis "$p" || return 1; done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$SERVICES_DIR/cluster-create.log" 2>&1 \
        || { cat "$SERVICES_DIR/cluster-create.log" >&2; return 1; }
    for i in $(seq 1 100); do
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
    for i in $(seq 1 100); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    echo "services: Redis on port $1 did not start" >&2
    return 1
}
