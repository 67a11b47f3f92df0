#!/bin/bash
# The benchmark suite (issue 6), from a clone on a Debian 12 machine:
#   sudo bash bench/run.sh
# Installs what is missing (gnuplot-nox, python3-psycopg2...), builds and
# installs the extension (PG_CONFIG=/path/to/pg_config chooses the server,
# Debian's PostgreSQL 15 by default, as for test/run.sh), starts the mock
# HubSpot (--lean) and a throwaway cluster as the "postgres" OS user, runs the
# five scenarios, prints one table with each target and PASS/MISS, and writes
# docs/benchmarks.md and its plots.  Nothing is left running.
#
#   BENCH_SCALE=0.1      shorter runs for development (row counts scaled; the
#                        documented figures come from BENCH_SCALE=1)
#   BENCH_ONLY=1,3       run only these scenarios
#   BENCH_DOCS=0         do not write docs/ (print the table only)
#   BENCH_DRAIN_CAP_S=N  stop a drain after N s and rate what was sent (default 150;
#                        the 1,000,000-contact drain of scenario 5: at least 900)
#   BENCH_WRITE_REPS=N   runs per variant in scenario 1 (default 5; the median counts)
#   BENCH_PROFILE=1      also record perf profiles of the trigger's backend and of the
#                        worker, the claim's plans (auto_explain) and the worker's memory
#                        contexts, into the results folder (use with HS_KEEP=1)
#   HS_KEEP=1            keep the work folder (server log, mock log, raw results)
#
# Not part of test/run.sh or CI: figures depend on the machine.
source "$(dirname "$0")/../test/lib.sh"

HS_PACKAGES+=(gnuplot-nox)

bench_start_mock() {
    hs_log "starting the mock HubSpot (--lean: no entries in memory, no body schema check)"
    setsid runuser -u "$HS_RUN_AS" -- env -C "$HS_WORK" /usr/bin/python3 "$HS_WORK/test/mock_hubspot.py" --host 127.0.0.1 --port 0 \
        --port-file "$HS_WORK/mock.port" --token-file "$HS_WORK/token" \
        --log "$HS_WORK/mock_requests.jsonl" --seed 42 --lean \
        > "$HS_WORK/mock.log" 2>&1 9>&- &
    HS_MOCK_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$HS_WORK/mock.port" ] && break
        kill -0 "$HS_MOCK_PID" 2>/dev/null || { cat "$HS_WORK/mock.log" >&2; hs_die "the mock HubSpot did not start"; }
        sleep 0.1
    done
    [ -s "$HS_WORK/mock.port" ] || hs_die "the mock HubSpot did not report its port"
    HS_MOCK_PORT="$(cat "$HS_WORK/mock.port")"
    HS_MOCK_URL="http://127.0.0.1:$HS_MOCK_PORT"
    export HS_MOCK_PORT HS_MOCK_URL HS_MOCK_LOG="$HS_WORK/mock_requests.jsonl" HS_MOCK_PID
}

# test/lib.sh's hs_build_install, with one difference: installs take turns
# under the machine-wide lock only for the server they share; a private
# server (PG_CONFIG elsewhere) gets a lock of its own, so that a benchmark on
# it never waits for test runs against Debian's (which hold their lock for
# their whole run).  The lock is held until the end, like test/run.sh does.
bench_build_install() {
    local pgc lock; pgc="$(hs_pg_config)"
    lock=/tmp/hubspot_events.install.lock
    if [ "$(readlink -f "$pgc")" != /usr/lib/postgresql/15/bin/pg_config ]; then
        lock="/tmp/hubspot_events.install.$(readlink -f "$pgc" | md5sum | cut -c1-12).lock"
    fi
    exec 9>"$lock"
    flock 9
    hs_log "building and installing hubspot_events ($pgc)"
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" COPT=-Werror clean >/dev/null
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" COPT=-Werror >/dev/null
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" install >/dev/null
}

hs_require_root
hs_install_packages
bench_build_install
hs_make_workdir
cp -r "$HS_SRC/bench" "$HS_WORK/"
chown -R "$HS_RUN_AS:" "$HS_WORK/bench"
hs_write_token
bench_start_mock
# the worker serves the database "bench"; sent rows are kept (scenario 5 needs them)
hs_start_cluster "shared_preload_libraries = 'hubspot_events'" "hubspot_events.database = 'bench'" \
    "hubspot_events.sent_retention = 0" "max_wal_size = '4GB'" "checkpoint_timeout = '30min'"

hs_psql -d postgres -q -c "CREATE DATABASE bench" >/dev/null
hs_psql -d bench -q -c "CREATE EXTENSION hubspot_events" >/dev/null

export BENCH_OUT="$HS_WORK/results"
mkdir -p "$BENCH_OUT"
hs_log "running the scenarios (BENCH_SCALE=${BENCH_SCALE:-1})"
# The driver runs as root: it reads the worker's /proc entries; it connects
# as the postgres role over the cluster's unix socket.
/usr/bin/python3 "$HS_SRC/bench/bench.py" \
    --pghost "$HS_PGHOST" --pgport "$HS_PGPORT" --dbname bench \
    --mock-url "$HS_MOCK_URL" --mock-log "$HS_MOCK_LOG" --mock-pid "$HS_MOCK_PID" \
    --pg-config "$(hs_pg_config)" --out "$BENCH_OUT" --src "$HS_SRC"
