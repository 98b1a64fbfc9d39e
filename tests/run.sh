#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine with the Rust toolchain:
#
#   bash tests/run.sh
#
# 1. Installs what the tests drive but the toolchain lacks, when run as root on
#    Debian and it is missing: the `openssl` CLI (interop) and SoftHSM2 (the
#    PKCS#11 tests; each test initialises its own private token under its own
#    SOFTHSM2_CONF, so nothing system-wide is touched).
#    Likewise MariaDB (`mariadb-server`) and Redis (`redis-server`).
# 2. Starts, each on free loopback ports (tests/services.sh): a private MariaDB
#    primary (own datadir, binary log) and a replica of it (GTID replication,
#    so every test database also appears there), a standalone Redis and a
#    Redis Cluster of 3 masters with one replica each; points the tests at
#    them (OCSP_TEST_MYSQL_URL, OCSP_TEST_MYSQL_REPLICA_URL,
#    OCSP_TEST_REDIS_URL, OCSP_TEST_REDIS_CLUSTER_URL) and stops them on exit.
# 3. Runs every unit, integration, doc and bench-smoke test. The integration
#    tests are one binary per thing they prove (tests/<group>.rs, its modules
#    in tests/<group>/): http, ocsp, sources, backends, hsm, admin, faults, cli,
#    bench_harness and structure (the layout's rules); tests/common/ holds
#    their helpers, by service. Servers
#    the tests start listen on ephemeral loopback ports and are killed when a
#    test ends. The chaos suite (tests/faults/chaos.rs, ~75 s) runs its own
#    redis-server and mariadbd, since it stops and kills them, and runs alone
#    in its binary, as does the miss storm (tests/faults/overload.rs);
#    tests/hsm/under_load.rs (~40 s) injects HSM faults into an in-process
#    server on a SoftHSM2 token, alone in its binary;
#    tests/sources/change_feed.rs (~45 s) runs two nodes per test against the
#    primary, the replica (pausing its SQL thread) and Redis (its own when it
#    stops it, its own Cluster when it fails it over), judged by the bench's
#    change-aware verification. OCSP_TEST_SERVER_BIN=/path/to/ocsp-origin
#    runs the servers of the integration tests from another build (an earlier
#    commit's, to see which guarantees it lacks).
#
# A test that needs an external tool fails when it is missing. A database test
# run by plain `cargo test` without OCSP_TEST_MYSQL_URL says so and passes
# vacuously, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v softhsm2-util >/dev/null 2>&1 || need_pkgs+=(softhsm2)
{ command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } || need_pkgs+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing ${need_pkgs[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        echo "tests/run.sh: missing ${need_pkgs[*]}; install it (Debian: apt-get install ${need_pkgs[*]})" >&2
        exit 1
    fi
fi

source tests/services.sh
trap stop_services EXIT
start_mariadb
start_mariadb_replica
start_redis
start_redis_cluster

# Benches are compiled and each run once (criterion's test mode) so they can't rot.
cargo test --locked --all-targets "$@"
cargo test --locked --doc "$@"
