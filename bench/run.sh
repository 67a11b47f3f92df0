#!/bin/bash
# The benchmark suite (issue 6), from a clone on a Debian 12 machine:
#   bash bench/run.sh        (as root)
# Installs what is missing (gnuplot-nox, python3-psycopg2...), builds and
# installs the extension (PG_CONFIG=/path/to/pg_config chooses the server,
# Debian's PostgreSQL 15 by default, as for test/run.sh), starts the mock
# HubSpot (full mode) and a throwaway cluster as the "postgres" OS user, runs
# the six scenarios (fsync on, the mock in full mode), prints one table with
# each target and PASS/MISS, and writes docs/benchmarks.md (HubSpot's ceiling
# against the worker's capacity, the figures, the machine, the load and the
# settings, all from this run), docs/benchmarks.json and the plots.  Nothing
# is left running.  bench/report.py rewrites the docs from a kept run.
#
#   BENCH_SCALE=0.1      shorter runs for development (row counts scaled; the
#                        documented figures come from BENCH_SCALE=1)
#   BENCH_ONLY=1,3       run only these scenarios
#   BENCH_BATCHES=100    only these batch sizes in scenario 2 (default 1,10,100)
#   BENCH_DRAIN_REPS=N   drains at batch_size 100 in scenario 2 (default 5; the median counts)
#   BENCH_AB="sql A|sql B"  development: alternate batch-100 drains after running
#                        SQL A or B ("set max_concurrency=8": a worker setting
#                        instead), BENCH_AB_REPS=3 each; prints the medians of
#                        the worker CPU per 10,000 contacts, no table
#   BENCH_DOCS=0         do not write docs/ (print the table only)
#   BENCH_DRAIN_CAP_S=N  stop a drain after N s and rate what was sent (default 150;
#                        the 1,000,000-contact drain of scenario 5: at least 900)
#   BENCH_WRITE_REPS=N   runs per variant in scenario 1 (default 5; the median counts)
#   BENCH_PROFILE=1      also record perf profiles of the trigger's backend and of the
#                        worker, the claim's plans (auto_explain) and the worker's memory
#                        contexts, into the results folder (use with HS_KEEP=1)
#   BENCH_FSYNC=off      lab conditions: no disk flush at commit (default on)
#   BENCH_MOCK=lean      lab conditions: the mock keeps no requests, checks no bodies (default full)
#   BENCH_VACUUM=1       lab conditions: vacuum the outbox before each drain (default: never)
#   BENCH_EXPERIMENT=intake  only bench/intake_floor.py: the floors of an intake design
#                        against the outbox's (issue 17's next step), nothing else;
#                        BENCH_EXPERIMENT_SCRIPT=inflight_floor.py runs that experiment
#                        instead (the drain's SQL with rows in flight in the intake)
#   BENCH_S1_SQL="sql"   development: run this SQL after scenario 1's setup (a change to
#                        try, e.g. the outbox's indexes dropped), then measure as usual
#   HS_KEEP=1            keep the work folder (server log, mock log, raw results)
#
# Not part of test/run.sh or CI: figures depend on the machine.
source "$(dirname "$0")/../test/lib.sh"

HS_PACKAGES+=(gnuplot-nox)

hs_require_root
hs_install_packages
hs_build_install
hs_make_workdir
cp -r "$HS_SRC/bench" "$HS_WORK/"
chown -R "$HS_RUN_AS:" "$HS_WORK/bench"
hs_write_token
# Production conditions (issue 17): fsync on and the mock in full mode (every
# request recorded, every body checked against HubSpot's schema).
# BENCH_FSYNC=off and BENCH_MOCK=lean give the lab conditions of 0.4.0's
# figures, for comparison only.
export BENCH_FSYNC="${BENCH_FSYNC:-on}" BENCH_MOCK="${BENCH_MOCK:-full}"
if [ "$BENCH_MOCK" = lean ]; then
    hs_start_mock --lean     # no entries kept in memory, no body schema check
else
    hs_start_mock
fi
# the worker serves the database "bench"; sent rows are kept (scenario 5 needs them)
hs_start_cluster "shared_preload_libraries = 'hubspot_events'" "hubspot_events.database = 'bench'" \
    "hubspot_events.sent_retention = 0" "max_wal_size = '4GB'" "checkpoint_timeout = '30min'" \
    "fsync = $BENCH_FSYNC" "log_autovacuum_min_duration = 0"

hs_psql -d postgres -q -c "CREATE DATABASE bench" >/dev/null
hs_psql -d bench -q -c "CREATE EXTENSION hubspot_events" >/dev/null

if [ "${BENCH_EXPERIMENT:-}" = intake ]; then
    # issue 17's next step: the floors of an intake design against the outbox's (bench/intake_floor.py)
    # (in a database the worker does not serve: it would take the claimed rows for a crash's)
    hs_psql -d postgres -q -c "CREATE DATABASE bench_intake" >/dev/null
    hs_psql -d bench_intake -q -c "SET client_min_messages = error" -c "CREATE EXTENSION hubspot_events" >/dev/null
    /usr/bin/python3 "$HS_SRC/bench/${BENCH_EXPERIMENT_SCRIPT:-intake_floor.py}" --pghost "$HS_PGHOST" --pgport "$HS_PGPORT" --dbname bench_intake
    exit $?
fi

export BENCH_OUT="$HS_WORK/results"
mkdir -p "$BENCH_OUT"
hs_log "running the scenarios (BENCH_SCALE=${BENCH_SCALE:-1})"
# The driver runs as root: it reads the worker's /proc entries; it connects
# as the postgres role over the cluster's unix socket.
/usr/bin/python3 "$HS_SRC/bench/bench.py" \
    --pghost "$HS_PGHOST" --pgport "$HS_PGPORT" --dbname bench \
    --mock-url "$HS_MOCK_URL" --mock-log "$HS_MOCK_LOG" --mock-pid "$HS_MOCK_PID" \
    --pg-config "$(hs_pg_config)" --out "$BENCH_OUT" --src "$HS_SRC"
