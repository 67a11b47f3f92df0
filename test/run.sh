#!/bin/bash
# The whole test suite, from a fresh clone on a fresh Debian 12 machine:
#   sudo bash test/run.sh
# Installs missing packages, builds (warnings are errors) and installs the
# extension, starts the mock HubSpot and a throwaway cluster as the
# "postgres" OS user, runs every test, stops everything, and exits non-zero
# on any failure.  It does so twice: against Debian's PostgreSQL, then under
# AddressSanitizer (HS_ASAN=0 skips that pass).  HS_KEEP=1 keeps the work folder for inspection.
source "$(dirname "$0")/lib.sh"

hs_require_root
hs_install_packages

# Two passes: the suite against Debian's PostgreSQL, then once more against
# PostgreSQL built under AddressSanitizer with the extension built the same
# way, where any ASan report fails the run.  HS_ASAN=0 skips the second.
if [ -z "${HS_PASS:-}" ]; then
    total_p=0; total_f=0
    summary() { sed -n 's/^hubspot_events tests: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$1" | tail -1; }
    out1="$(mktemp)"
    set +e; HS_PASS=debian bash "$0" 2>&1 | tee "$out1"; set -e
    read -r p f <<< "$(summary "$out1")"
    total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-1}))
    if [ "${HS_ASAN:-1}" != 0 ]; then
        hs_build_asan_pg
        reports="$(mktemp -d /tmp/hs-asan-reports.XXXXXX)"; chmod 777 "$reports"
        out2="$(mktemp)"
        set +e
        HS_PASS=asan PG_CONFIG="$HS_ASAN_PREFIX/bin/pg_config" \
            ASAN_OPTIONS="detect_leaks=0:log_path=$reports/report:abort_on_error=0" \
            bash "$0" 2>&1 | tee "$out2"
        set -e
        read -r p f <<< "$(summary "$out2")"
        total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-1}))
        if grep -ls "ERROR: AddressSanitizer" "$reports"/* >/dev/null 2>&1; then
            hs_log "FAILED: AddressSanitizer reports:"; cat "$reports"/* >&2; total_f=$((total_f + 1))
        else
            hs_log "AddressSanitizer: no report"; total_p=$((total_p + 1))
        fi
        rm -rf "$reports" "$out2"
    fi
    rm -f "$out1"
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
    p=$(grep -cE '^\s*(test\s+|permutation\s+)?\S+\s+\.\.\.\s+ok' "$out" || true)
    f=$(grep -cE '^\s*(test\s+|permutation\s+)?\S+\s+\.\.\.\s+FAILED' "$out" || true)
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
