#!/bin/bash
# The whole test suite, from a fresh clone on a fresh Debian 12 machine:
#   bash test/run.sh        (as root)
# Installs missing packages, builds (warnings are errors) and installs the
# extension, starts the mock HubSpot and a throwaway cluster as the
# "postgres" OS user, runs every test, stops everything, and exits non-zero
# on any failure.  It does so once per tested PostgreSQL version (15:
# Debian's server; 18: built from Debian's source package, see lib.sh), then
# once more on the newest under AddressSanitizer, then builds and tests the
# Debian package.  HS_VERSIONS="15" picks versions, HS_ASAN=0 skips the
# AddressSanitizer pass, HS_PACKAGE=0 the package test; HS_KEEP=1 keeps the
# work folders for inspection.
source "$(dirname "$0")/lib.sh"

hs_require_root
hs_install_packages

if [ -z "${HS_PASS:-}" ]; then
    total_p=0; total_f=0
    started=$SECONDS
    summary() { sed -n 's/^\(hubspot_events\|hubspot_events package\|meta_json\|header_map\)\( tests\)\?: \([0-9]*\) passed, \([0-9]*\) failed$/\3 \4/p' "$1" | tail -1; }
    # one pass: its output, counted; a pass that printed no summary counts as a failure
    run_pass() {
        local name="$1"; shift
        local out; out="$(mktemp)"
        local t0=$SECONDS
        set +e; "$@" 2>&1 | tee "$out"; set -e
        read -r p f <<< "$(summary "$out")"
        total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-1}))
        hs_log "pass $name: ${p:-0} passed, ${f:-no summary: 1} failed, $((SECONDS - t0)) s"
        rm -f "$out"
    }
    for v in ${HS_VERSIONS:-$HS_PG_DEBIAN $HS_PG_NEWEST}; do
        if [ "$v" = "$HS_PG_DEBIAN" ]; then
            run_pass "pg$v" env HS_PASS="pg$v" bash "$0"
        else
            hs_build_pg "$v"
            run_pass "pg$v" env HS_PASS="pg$v" PG_CONFIG="$(hs_pg_prefix "$v")/bin/pg_config" bash "$0"
        fi
    done
    if [ "${HS_ASAN:-1}" != 0 ]; then
        v="$HS_PG_NEWEST"
        hs_build_pg "$v" asan
        reports="$(mktemp -d /tmp/hs-asan-reports.XXXXXX)"; chmod 777 "$reports"
        run_pass "pg$v-asan" env HS_PASS="pg$v-asan" PG_CONFIG="$(hs_pg_prefix "$v" asan)/bin/pg_config" \
            ASAN_OPTIONS="detect_leaks=0:log_path=$reports/report:abort_on_error=0" bash "$0"
        if grep -ls "ERROR: AddressSanitizer" "$reports"/* >/dev/null 2>&1; then
            hs_log "FAILED: AddressSanitizer reports:"; cat "$reports"/* >&2; total_f=$((total_f + 1))
        else
            hs_log "AddressSanitizer: no report"; total_p=$((total_p + 1))
        fi
        rm -rf "$reports"
    fi
    if [ "${HS_PACKAGE:-1}" != 0 ]; then
        run_pass package bash "$HS_SRC/test/package.sh"
    fi
    run_pass META.json /usr/bin/python3 "$HS_SRC/test/meta_json.py"
    run_pass header_map /usr/bin/python3 "$HS_SRC/test/header_map.py"
    hs_log "all passes took $((SECONDS - started)) s"
    echo "hubspot_events, all passes: $total_p passed, $total_f failed"
    [ "$total_f" -eq 0 ]
    exit
fi

hs_log "pass: $HS_PASS (pg_config: $(hs_pg_config))"
hs_build_install
hs_make_workdir
hs_write_token
hs_start_mock
hs_start_cluster "shared_preload_libraries = 'hubspot_events'"

passed=0
failed=0

# Count a pg_regress-style run (pg_regress, pg_isolation_regress): its "ok"
# and "FAILED" lines, its diffs shown, and tests that did not run at all
# counted as failed.
count_regress() {
    local out="$1" diffs="$2" expected="$3" what="$4" p f
    # PostgreSQL 15's form ("test x ... ok"), and 16's on ("ok 1 - x", "not ok 2 - x")
    p=$(grep -cE '^\s*(test\s+|permutation\s+)?\S+\s+\.\.\.\s+ok|^ok [0-9]+ ' "$out" || true)
    f=$(grep -cE '^\s*(test\s+|permutation\s+)?\S+\s+\.\.\.\s+FAILED|^not ok [0-9]+ ' "$out" || true)
    passed=$((passed + p)); failed=$((failed + f))
    if [ -s "$diffs" ]; then
        hs_log "differences:"; cat "$diffs"
    fi
    if [ $((p + f)) -ne "$expected" ]; then
        hs_log "$what ran $((p + f)) of $expected tests"; failed=$((failed + expected - p - f))
    fi
}

# ---- pg_regress: the SQL surface and every error path ----
hs_log "running the pg_regress tests"
tests=$(cd "$HS_SRC/sql" && ls *.sql | sed 's/\.sql$//' | sort)
[ -n "${HS_REGRESS:-}" ] && tests="$HS_REGRESS"   # a subset, for development
set +e
as_pg env HS_MOCK_LOG="$HS_MOCK_LOG" HS_MOCK_URL="$HS_MOCK_URL" HS_MOCK_PORT="$HS_MOCK_PORT" \
    HS_TOKEN_FILE="$HS_WORK/token" PGTZ=UTC \
    "$("$(hs_pg_config)" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir="$HS_WORK" --outputdir="$HS_WORK/regress" --bindir="$HS_BINDIR" \
    --host="$HS_PGHOST" --port="$HS_PGPORT" --user=postgres \
    --dbname=contrib_regression $tests 2>&1 | tee "$HS_WORK/regress.out"
set -e
count_regress "$HS_WORK/regress.out" "$HS_WORK/regress/regression.diffs" "$(echo "$tests" | wc -w)" pg_regress

# ---- isolation: concurrent claims ----
hs_log "running the isolation tests"
isotests=$(cd "$HS_SRC/test/specs" && ls *.spec | sed 's/\.spec$//' | sort)
set +e
as_pg "$("$(hs_pg_config)" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
    --inputdir="$HS_WORK/test" --outputdir="$HS_WORK/isolation" --bindir="$HS_BINDIR" \
    --host="$HS_PGHOST" --port="$HS_PGPORT" --user=postgres \
    --dbname=isolation_regression $isotests 2>&1 | tee "$HS_WORK/isolation.out"
set -e
count_regress "$HS_WORK/isolation.out" "$HS_WORK/isolation/regression.diffs" "$(echo "$isotests" | wc -w)" isolation

# ---- fuzz: thousands of random and malformed inputs through the SQL surface ----
hs_log "running the fuzz test"
set +e
as_pg env PGHOST="$HS_PGHOST" PGPORT="$HS_PGPORT" PGUSER=postgres HS_MOCK_URL="$HS_MOCK_URL" \
    /usr/bin/python3 "$HS_WORK/test/fuzz.py" --quiet > "$HS_WORK/fuzz.out" 2>&1
fuzz_rc=$?
set -e
cat "$HS_WORK/fuzz.out"
line=$(tail -1 "$HS_WORK/fuzz.out")
if [[ "$line" =~ ^fuzz:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    [ "$fuzz_rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ] && failed=$((failed + 1))
else
    hs_log "FAILED: the fuzz test did not finish (exit $fuzz_rc)"; failed=$((failed + 1))
fi

# ---- TAP: the worker's life (preloaded clusters of their own) ----
hs_log "running the worker-level TAP tests"
as_pg mkdir -p "$HS_WORK/tap"
tap_tests=$(ls "$HS_WORK"/test/t/*.pl)
[ -n "${HS_TAP:-}" ] && tap_tests=$(for t in $HS_TAP; do echo "$HS_WORK/test/t/$t"; done)
set +e
as_pg env HS_MOCK_URL="$HS_MOCK_URL" HS_TOKEN_FILE="$HS_WORK/token" \
    HS_OAUTH_SECRET="$HS_OAUTH_SECRET" HS_OAUTH_REFRESH="$HS_OAUTH_REFRESH" \
    PATH="$HS_BINDIR:$PATH" PG_REGRESS="$("$(hs_pg_config)" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    PERL5LIB="$("$(hs_pg_config)" --pkglibdir)/pgxs/src/test/perl" TESTDIR="$HS_WORK/tap" \
    TESTDATADIR="$HS_WORK/tap/tmp_check" TESTLOGDIR="$HS_WORK/tap/tmp_check/log" \
    prove -v --timer $tap_tests > "$HS_WORK/tap.out" 2>&1
tap_rc=$?
set -e
cat "$HS_WORK/tap.out"
p=$(grep -cE '^ok [0-9]+' "$HS_WORK/tap.out" || true)
f=$(grep -cE '^not ok [0-9]+' "$HS_WORK/tap.out" || true)
passed=$((passed + p)); failed=$((failed + f))
if [ "$tap_rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    hs_log "FAILED: prove exited $tap_rc"; failed=$((failed + 1))
fi
if [ $((p + f)) -eq 0 ]; then
    hs_log "FAILED: no TAP test ran"; failed=$((failed + 1))
fi
# the TAP clusters' logs, for the checks below
cat "$HS_WORK"/tap/tmp_check/log/*.log >> "$HS_WORK/postgresql.log" 2>/dev/null || true

# ---- the token must never reach the server log ----
# (the suite's token, and the tokens the TAP tests make and rotate, which all
# look like pat-sec-<32 hex>)
if grep -qF "$HS_TOKEN" "$HS_WORK/postgresql.log" || grep -qE 'pat-sec-[0-9a-f]{32}' "$HS_WORK/postgresql.log"; then
    hs_log "FAILED: an access token appears in the server log"; failed=$((failed + 1))
else
    passed=$((passed + 1))
fi
# nor in what the TAP tests logged (their queries and results) or the mock's logs
token_hits=$(grep -lsF "$HS_TOKEN" "$HS_WORK"/tap/tmp_check/log/regress_log_* "$HS_WORK/mock.log" "$HS_MOCK_LOG" || true)
token_hits+=$(grep -lsE 'pat-sec-[0-9a-f]{32}' "$HS_WORK"/tap/tmp_check/log/regress_log_* "$HS_WORK/mock.log" "$HS_MOCK_LOG" || true)
if [ -n "$token_hits" ]; then
    hs_log "FAILED: an access token appears in $token_hits"; failed=$((failed + 1))
else
    passed=$((passed + 1))
fi
# nor the OAuth client secret, the refresh token, or any token the mock issued
# (access tokens "oat-mock-...", rotated refresh tokens "rt-mock-...")
if grep -qF -e "$HS_OAUTH_SECRET" -e "$HS_OAUTH_REFRESH" -e "oat-mock-" -e "rt-mock-" "$HS_WORK/postgresql.log"; then
    hs_log "FAILED: an OAuth secret or token appears in the server log"; failed=$((failed + 1))
else
    passed=$((passed + 1))
fi
if grep -qE 'PANIC|server process .* was terminated by signal' "$HS_WORK/postgresql.log"; then
    hs_log "FAILED: the server log shows a crash"; grep -E 'PANIC|terminated by signal' "$HS_WORK/postgresql.log" >&2
    failed=$((failed + 1))
else
    passed=$((passed + 1))
fi

echo "hubspot_events tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
