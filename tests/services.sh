#!/usr/bin/env bash
# Starts private service instances for the test suite, on free loopback ports,
# in a temporary directory, and exports where they are. Sourced by tests/run.sh:
#
#   source tests/services.sh
#   start_mariadb           # primary, binary log on, TLS offered: OCSP_TEST_MYSQL_URL,
#                           # OCSP_TEST_TLS_DIR (ca.pem, server.pem/.key, client.pem/.key)
#   start_mariadb_replica   # GTID replica of it: OCSP_TEST_MYSQL_REPLICA_URL
#   start_redis             # standalone: OCSP_TEST_REDIS_URL
#   start_redis_cluster     # 3 masters + 3 replicas: OCSP_TEST_REDIS_CLUSTER_URL
#   stop_services           # (run from an EXIT trap) stops them all
#
# Nothing system-wide is touched: each MariaDB instance has its own datadir,
# socket and port, every server runs as the current user and is killed on
# exit. Tests that stop or kill servers start their own (tests/common/redis.rs
# has a private Redis and Redis Cluster; ReplicaControl in
# tests/common/mariadb.rs pauses the shared replica).

SERVICES_DIR="${SERVICES_DIR:-$(mktemp -d -t ocsp-origin-services.XXXXXX)}"
SERVICE_PIDS=()

# free_port [LIMIT]: a free loopback port in 10000..LIMIT (default 32000),
# below the kernel's ephemeral range, so no outgoing connection of a running
# test or service can take it between this check and the server's bind.
free_port() {
    python3 -c '
import random, socket, sys
limit = int(sys.argv[1])
for _ in range(2000):
    p = random.randrange(10000, limit)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
else:
    sys.exit("no free loopback port")
' "${1:-32000}"
}

# start_mariadbd NAME SERVER_ID [extra mariadbd args...]: installs a fresh
# datadir under $SERVICES_DIR/NAME, starts a mariadbd on a free loopback port
# with that server id and sets MARIADB_PORT once it answers. (Not used in a
# command substitution: the server's pid must reach SERVICE_PIDS here.)
start_mariadbd() {
    local name=$1 server_id=$2 dir="$SERVICES_DIR/$1" port installer mariadbd i
    shift 2
    port="$(free_port)"
    mkdir -p "$dir/data"
    installer="$(command -v mariadb-install-db || command -v mysql_install_db)"
    mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
    "$installer" --no-defaults --user="$(id -un)" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; return 1; }
    "$mariadbd" --no-defaults --user="$(id -un)" --datadir="$dir/data" --port="$port" \
        --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --skip-name-resolve --innodb-buffer-pool-size=64M --max-connections=500 \
        --server-id="$server_id" "$@" >"$dir/mariadbd.log" 2>&1 &
    SERVICE_PIDS+=($!)
    for i in $(seq 1 100); do
        if mariadb-admin --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot ping >/dev/null 2>&1; then
            MARIADB_PORT="$port"
            return 0
        fi
        sleep 0.2
    done
    echo "services: MariaDB $name did not start; log:" >&2
    tail -20 "$dir/mariadbd.log" >&2
    return 1
}

mariadb_sql() { # PORT SQL: runs SQL as root over TCP
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"
}

# start_mariadb: the primary, with a binary log for the replica (MIXED, the
# format the change-feed triggers are written for: MariaDB logs a statement
# whose triggers write the AUTO_INCREMENT outbox as rows, so the replica
# copies the primary's revisions and outbox rows instead of re-running the
# triggers). Tests connect as root, which may create triggers with binary
# logging on (SUPER). Exports OCSP_TEST_MYSQL_URL.
# make_tls DIR: a throwaway CA (P-256) and, signed by it, a server
# certificate for 127.0.0.1/localhost and a client certificate, as PEM files
# in DIR (ca.pem, server.pem, server.key, client.pem, client.key).
make_tls() {
    local d=$1 kind
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
        -days 2 -subj "/CN=ocsp-origin test services CA" >/dev/null 2>&1 || return 1
    for kind in server client; do
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$kind.key" \
            -out "$d/$kind.csr" -subj "/CN=ocsp-origin test $kind" >/dev/null 2>&1 || return 1
        if [[ $kind == server ]]; then
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/$kind.ext"
        else
            printf 'extendedKeyUsage=clientAuth\n' >"$d/$kind.ext"
        fi
        openssl x509 -req -in "$d/$kind.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
            -extfile "$d/$kind.ext" -out "$d/$kind.pem" >/dev/null 2>&1 || return 1
    done
}

start_mariadb() {
    make_tls "$SERVICES_DIR/tls" || { echo "services: could not make the test TLS certificates" >&2; return 1; }
    export OCSP_TEST_TLS_DIR="$SERVICES_DIR/tls"
    # TLS offered (not required): the TLS tests connect with it and make
    # accounts that require it; every other test connects in the clear.
    start_mariadbd mariadb 1 --log-bin="$SERVICES_DIR/mariadb/data/mysql-bin" --binlog-format=MIXED \
        --ssl-ca="$OCSP_TEST_TLS_DIR/ca.pem" --ssl-cert="$OCSP_TEST_TLS_DIR/server.pem" \
        --ssl-key="$OCSP_TEST_TLS_DIR/server.key" || return 1
    MARIADB_PRIMARY_PORT="$MARIADB_PORT"
    # The replica's account (a real deployment's is never root).
    mariadb_sql "$MARIADB_PRIMARY_PORT" "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';" || return 1
    export OCSP_TEST_MYSQL_URL="mysql://root@127.0.0.1:$MARIADB_PRIMARY_PORT/"
    echo "services: MariaDB primary on 127.0.0.1:$MARIADB_PRIMARY_PORT (datadir $SERVICES_DIR/mariadb/data)" >&2
}

# start_mariadb_replica (after start_mariadb): a second mariadbd replicating
# everything from the primary's first binlog event on, by GTID, so every
# database a test creates on the primary appears here. Read-only for clients
# (the SQL thread writes regardless). Exports OCSP_TEST_MYSQL_REPLICA_URL once
# both replication threads run.
start_mariadb_replica() {
    local dir="$SERVICES_DIR/mariadb-replica" port status i
    [[ -n "${MARIADB_PRIMARY_PORT:-}" ]] || { echo "services: start_mariadb first" >&2; return 1; }
    start_mariadbd mariadb-replica 2 --skip-log-bin --read-only --skip-slave-start \
        --relay-log="$dir/data/relay-bin" || return 1
    port="$MARIADB_PORT"
    mariadb_sql "$port" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MARIADB_PRIMARY_PORT,
        MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos;
        START SLAVE;" || return 1
    for i in $(seq 1 100); do
        status="$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot -e 'SHOW SLAVE STATUS\G' 2>/dev/null)" || true
        if grep -q 'Slave_IO_Running: Yes' <<<"$status" && grep -q 'Slave_SQL_Running: Yes' <<<"$status"; then
            export OCSP_TEST_MYSQL_REPLICA_URL="mysql://root@127.0.0.1:$port/"
            echo "services: MariaDB replica on 127.0.0.1:$port of 127.0.0.1:$MARIADB_PRIMARY_PORT" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "services: the MariaDB replica did not start replicating:" >&2
    grep -E 'Running|Error' <<<"$status" >&2
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

# A free port usable by a Redis Cluster node: under 22000, so its cluster bus
# (port + 10000) is below the ephemeral range too, with the bus port free.
free_cluster_port() {
    local p i
    for i in $(seq 200); do
        p="$(free_port 22000)" || return 1
        if python3 -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$((p + 10000))" 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
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

# start_redis_cluster: three masters, each with one replica (redis-cli picks
# the pairs; `CLUSTER NODES` tells them); exports OCSP_TEST_REDIS_CLUSTER_URL
# (a master's URL) once every node reports cluster_state:ok and every replica
# master_link_status:up (its initial sync done).
start_redis_cluster() {
    local ports=() i p ready
    for i in 1 2 3 4 5 6; do
        # No diskless-sync delay: a replica's first sync would wait 5 s for company.
        start_redis_node "$SERVICES_DIR/cluster-$i" --cluster-enabled yes \
            --cluster-config-file "$SERVICES_DIR/cluster-$i/nodes.conf" --repl-diskless-sync-delay 0 || return 1
        ports+=("$REDIS_NODE_PORT")
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 1 --cluster-yes >"$SERVICES_DIR/cluster-create.log" 2>&1 \
        || { cat "$SERVICES_DIR/cluster-create.log" >&2; return 1; }
    for i in $(seq 1 300); do
        ready=1
        for p in "${ports[@]}"; do
            redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || { ready=0; break; }
            if redis-cli -p "$p" info replication 2>/dev/null | grep -q 'role:slave'; then
                redis-cli -p "$p" info replication | grep -q 'master_link_status:up' || { ready=0; break; }
            fi
        done
        if ((ready)); then
            export OCSP_TEST_REDIS_CLUSTER_URL="redis://127.0.0.1:${ports[0]}"
            echo "services: Redis Cluster (3 masters, 3 replicas) on 127.0.0.1:${ports[*]}" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "services: Redis Cluster did not become ready; state of each node:" >&2
    for p in "${ports[@]}"; do
        echo "  $p: $(redis-cli -p "$p" cluster info 2>&1 | grep cluster_state) $(redis-cli -p "$p" info replication 2>&1 | grep -E 'role|master_link_status' | tr -d '\r' | tr '\n' ' ')" >&2
    done
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
