#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine with the Rust toolchain:
#
#   bash tests/run.sh
#
# 1. Installs what the tests drive but the toolchain lacks, when run as root on
#    Debian and it is missing: the `openssl` CLI (interop) and SoftHSM2 (the
#    PKCS#11 tests; each test initialises its own private token under its own
#    SOFTHSM2_CONF, so nothing system-wide is touched).
#    Likewise MariaDB (`mariadb-server`) and Redis (`redis-server`), and the
#    strict clients of tests/ocsp/strict_clients.rs: Bouncy Castle
#    (`libbcpkix-java`, with a JDK to run tests/interop/BcOcspCheck.java) and
#    pkilint (PyPI, pinned, in a private virtualenv, target/pkilint-venv);
#    points the tests at them (OCSP_TEST_BC_CLASSPATH, OCSP_TEST_PKILINT).
#    Either variable set beforehand names one's own copy instead.
# 2. Starts, each on free loopback ports (tests/services.sh): a private MariaDB
#    primary (own datadir, binary log, TLS offered with a throwaway CA's
#    certificates, OCSP_TEST_TLS_DIR) and a replica of it (GTID replication,
#    so every test database also appears there), a standalone Redis and a
#    Redis Cluster of 3 masters with one replica each; points the tests at
#    them (OCSP_TEST_MYSQL_URL, OCSP_TEST_MYSQL_REPLICA_URL,
#    OCSP_TEST_REDIS_URL, OCSP_TEST_REDIS_CLUSTER_URL) and stops them on exit.
#    (tests/backends/tls.rs starts its own TLS-only redis-server.)
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
# run by plain `cargo test` without OCSP_TEST_MYSQL_URL, or a strict-client test
# without Bouncy Castle or pkilint, says so and passes vacuously, except under
# CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v softhsm2-util >/dev/null 2>&1 || need_pkgs+=(softhsm2)
{ command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } || need_pkgs+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# `python3 -m venv` needs ensurepip, which Debian ships apart, in python3-venv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
# javac, not only java: running a source file (the checker) needs the JDK.
command -v javac >/dev/null 2>&1 || need_pkgs+=(default-jdk-headless)
# The CDN tests (tests/cdn/) run a real Varnish 7 with xkey and bodyaccess.
{ command -v varnishd >/dev/null 2>&1 || [[ -x /usr/sbin/varnishd ]]; } || need_pkgs+=(varnish)
[[ -e /usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so || -n $(find /usr/lib -name libvmod_xkey.so -print -quit 2>/dev/null) ]] \
    || need_pkgs+=(varnish-modules)
# The operator's rules (tuning/prometheus/) are checked by promtool and
# scraped by a real Prometheus; Debian's package ships both.
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
bc_jars=(/usr/share/java/bcprov.jar /usr/share/java/bcpkix.jar /usr/share/java/bcutil.jar)
if [[ -z ${OCSP_TEST_BC_CLASSPATH:-} ]]; then
    for jar in "${bc_jars[@]}"; do
        [[ -e $jar ]] || { need_pkgs+=(libbcprov-java libbcpkix-java libbcutil-java); break; }
    done
fi
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

if [[ -z ${OCSP_TEST_BC_CLASSPATH:-} ]]; then
    OCSP_TEST_BC_CLASSPATH=$(IFS=:; echo "${bc_jars[*]}")
fi
export OCSP_TEST_BC_CLASSPATH
if [[ -z ${OCSP_TEST_PKILINT:-} ]]; then
    pkilint_venv=target/pkilint-venv
    OCSP_TEST_PKILINT=$PWD/$pkilint_venv/bin/lint_ocsp_response
    if ! "$OCSP_TEST_PKILINT" --help >/dev/null 2>&1; then
        echo "tests/run.sh: installing pkilint into $pkilint_venv" >&2
        rm -rf "$pkilint_venv"
        python3 -m venv "$pkilint_venv"
        "$pkilint_venv/bin/pip" install -q --disable-pip-version-check pkilint==0.13.3
    fi
fi
export OCSP_TEST_PKILINT

source tests/services.sh
trap stop_services EXIT
start_mariadb
start_mariadb_replica
start_redis
start_redis_cluster

# Benches are compiled and each run once (criterion's test mode) so they can't rot.
cargo test --locked --all-targets "$@"
cargo test --locked --doc "$@"
# Tests that hold a time bound under load (#[ignore]d, so a plain `cargo test`
# leaves them out) run one at a time with the machine to themselves; only in
# the full suite (no arguments).
if [[ $# -eq 0 ]]; then
    cargo test --locked --test sources -- --ignored --test-threads 1
fi
