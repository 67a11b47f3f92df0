#!/bin/bash
# The Debian package, built and tested as a user would get it:
#   bash test/package.sh        (as root, from the repository root)
#
# Installs what is missing, copies the working tree (without .git) to a
# temporary folder and builds the binary package there with
# dpkg-buildpackage -us -uc -b (PostgreSQL 15, the only server-dev in
# Debian 12), runs lintian (any E: tag fails), checks the .deb's contents,
# installs it with dpkg -i, and runs the pg_regress tests against the
# installed package on a throwaway cluster with the library preloaded and
# the mock HubSpot, as test/run.sh does.  The package is removed (dpkg -r)
# at the end, on errors too.  While it is installed, the script holds the
# machine-wide install lock test/lib.sh's hs_build_install takes, so that
# no "make install" of another checkout runs over it.
#
# Ends with "hubspot_events package tests: N passed, N failed" and exits
# non-zero on any failure.  HS_KEEP=1 keeps the work folders;
# HS_REGRESS="00_setup 01_upsert" runs a subset of the regress tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HS_PKG_PGVERSION=15
HS_PKG_NAME="postgresql-$HS_PKG_PGVERSION-hubspot-events"
# the package is for Debian's PostgreSQL 15, whatever PG_CONFIG says
export PG_CONFIG="/usr/lib/postgresql/$HS_PKG_PGVERSION/bin/pg_config"
HS_PKG_TOOLS=(dpkg-dev debhelper postgresql-server-dev-all lintian fakeroot
              libcurl4-openssl-dev libjson-c-dev libssl-dev pkg-config binutils)

passed=0
failed=0
summary_done=
pass() { passed=$((passed + 1)); hs_log "ok: $*"; }
fail() { failed=$((failed + 1)); hs_log "FAILED: $*"; }
summary() {
    summary_done=1
    echo "hubspot_events package tests: $passed passed, $failed failed"
}

# What is undone at the end, and by the EXIT trap on any error, in this
# order: the cluster (it has the library loaded), the package, the build
# folder; then lib.sh's hs_cleanup (the mock, the work folder), which exits
# with the script's status.
HS_PKG_INSTALLED=
HS_PKG_BUILD=
pkg_stop_cluster() {
    if [ "${HS_CLUSTER_UP:-}" = 1 ]; then
        as_pg "$HS_BINDIR/pg_ctl" -D "$HS_PGDATA" -m fast stop >/dev/null 2>&1 ||
            as_pg "$HS_BINDIR/pg_ctl" -D "$HS_PGDATA" -m immediate stop >/dev/null 2>&1 || true
        HS_CLUSTER_UP=0
    fi
}
pkg_remove() {
    [ -n "$HS_PKG_INSTALLED" ] || return 0
    hs_log "removing $HS_PKG_NAME"
    if dpkg -r "$HS_PKG_NAME" > "$HS_PKG_BUILD/dpkg-r.log" 2>&1; then
        HS_PKG_INSTALLED=
    else
        cat "$HS_PKG_BUILD/dpkg-r.log" >&2
        fail "dpkg -r $HS_PKG_NAME (remove it by hand)"
        return 1
    fi
}
pkg_cleanup() {
    local rc=$?
    set +e
    pkg_stop_cluster
    pkg_remove || { [ "$rc" = 0 ] && rc=1; }
    if [ -n "$HS_PKG_BUILD" ] && [ -d "$HS_PKG_BUILD" ]; then
        if [ "${HS_KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then
            hs_log "build folder kept for inspection: $HS_PKG_BUILD"
        else
            rm -rf "$HS_PKG_BUILD"
        fi
    fi
    # an unexpected error ended the script: it still gets its closing line
    if [ -z "$summary_done" ]; then
        [ "$rc" != 0 ] && [ "$failed" = 0 ] && failed=1
        summary
    fi
    (exit "$rc")
    hs_cleanup
}
trap pkg_cleanup EXIT

hs_require_root
[ -f "$HS_SRC/debian/control" ] || hs_die "no debian/control in $HS_SRC"
hs_install_packages
hs_install_packages "${HS_PKG_TOOLS[@]}"

# ---- build ----
version="$(dpkg-parsechangelog -l "$HS_SRC/debian/changelog" -S Version)"
upstream="${version%-*}"
HS_PKG_BUILD="$(mktemp -d /tmp/hubspot_events.pkg.XXXXXX)"
tree="$HS_PKG_BUILD/hubspot-events-$upstream"
mkdir "$tree"
tar -C "$HS_SRC" --exclude=./.git -cf - . | tar -C "$tree" -xf -
hs_log "building $HS_PKG_NAME $version in $tree (log: $HS_PKG_BUILD/build.log)"
set +e
(cd "$tree" && dpkg-buildpackage -us -uc -b) > "$HS_PKG_BUILD/build.log" 2>&1
build_rc=$?
set -e
deb="$(ls "$HS_PKG_BUILD/${HS_PKG_NAME}_"*.deb 2>/dev/null | head -1 || true)"
changes="$(ls "$HS_PKG_BUILD"/hubspot-events_*.changes 2>/dev/null | head -1 || true)"
if [ "$build_rc" -ne 0 ] || [ -z "$deb" ]; then
    tail -40 "$HS_PKG_BUILD/build.log" >&2
    fail "dpkg-buildpackage (exit $build_rc) made no ${HS_PKG_NAME}_*.deb"
    summary
    exit 1
fi
# the package build must not add -Werror (only the test harness does)
if grep -E '^(gcc|cc) ' "$HS_PKG_BUILD/build.log" | grep -qE -- '-Werror( |$)'; then
    fail "the package build compiled with -Werror"
else
    pass "build: $(basename "$deb")"
fi

# ---- lintian ----
hs_log "lintian $(basename "${changes:-$deb}") (the .debs and the .buildinfo it lists)"
lintian_out="$HS_PKG_BUILD/lintian.out"
set +e
lintian --fail-on none "${changes:-$deb}" > "$lintian_out" 2>&1
lintian_rc=$?
set -e
grep -v '^running with root privileges is not recommended!$' "$lintian_out" >&2 || true
if [ "$lintian_rc" -ne 0 ]; then
    fail "lintian exited $lintian_rc"
elif grep -q '^E: ' "$lintian_out"; then
    fail "lintian: $(grep -c '^E: ' "$lintian_out") error tag(s)"
else
    pass "lintian: no error tag ($(grep -c '^W: ' "$lintian_out" || true) warning(s))"
fi

# ---- contents ----
contents_ok=1
listing="$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')"
libdir="/usr/lib/postgresql/$HS_PKG_PGVERSION/lib"
extdir="/usr/share/postgresql/$HS_PKG_PGVERSION/extension"
want=("$libdir/hubspot_events.so" "$extdir/hubspot_events.control")
for f in "$HS_SRC"/hubspot_events--*.sql; do want+=("$extdir/$(basename "$f")"); done
for f in "${want[@]}"; do
    grep -qxF "$f" <<< "$listing" || { hs_log "the package lacks $f"; contents_ok=; }
done
# no script the repository does not have
while read -r f; do
    [ -n "$f" ] || continue
    [ -f "$HS_SRC/$(basename "$f")" ] || { hs_log "the package has $f, which the repository does not"; contents_ok=; }
done <<< "$(grep -E "^$extdir/hubspot_events--.*\.sql$" <<< "$listing" || true)"
# the packaged control file is the repository's, and the library is a real
# module (a build that found no sources would link an empty one)
unpacked="$HS_PKG_BUILD/unpacked"
dpkg-deb -x "$deb" "$unpacked"
cmp -s "$unpacked$extdir/hubspot_events.control" "$HS_SRC/hubspot_events.control" ||
    { hs_log "the packaged hubspot_events.control differs from the repository's"; contents_ok=; }
if [ -f "$unpacked$libdir/hubspot_events.so" ]; then
    syms="$(nm -D --defined-only "$unpacked$libdir/hubspot_events.so" | awk '{print $NF}')"
    for s in Pg_magic_func _PG_init hubspot_upsert_subscriber; do
        grep -qxF "$s" <<< "$syms" || { hs_log "hubspot_events.so does not define $s"; contents_ok=; }
    done
fi
if [ -n "$contents_ok" ]; then
    pass "contents: hubspot_events.so in $libdir; hubspot_events.control and $(( ${#want[@]} - 2 )) SQL scripts in $extdir"
else
    dpkg-deb -c "$deb" >&2
    fail "contents of $(basename "$deb")"
fi

# ---- install (under the machine-wide install lock, until the end) ----
hs_install_lock
if dpkg-query -W -f='${Status}' "$HS_PKG_NAME" 2>/dev/null | grep -q "install ok installed"; then
    fail "$HS_PKG_NAME is installed already; this test installs and removes its own build (dpkg -r $HS_PKG_NAME first)"
    summary
    exit 1
fi
hs_log "dpkg -i $(basename "$deb")"
HS_PKG_INSTALLED=1
# (dpkg -V: the files on disk are the package's)
if dpkg -i "$deb" > "$HS_PKG_BUILD/dpkg.log" 2>&1 &&
   dpkg-query -W -f='${Status}' "$HS_PKG_NAME" 2>/dev/null | grep -q "install ok installed" &&
   [ -z "$(dpkg -V "$HS_PKG_NAME" 2>&1)" ]; then
    pass "install: $HS_PKG_NAME $(dpkg-query -W -f='${Version}' "$HS_PKG_NAME")"
else
    cat "$HS_PKG_BUILD/dpkg.log" >&2
    fail "dpkg -i $(basename "$deb")"
    summary
    exit 1
fi

# ---- pg_regress against the installed package ----
hs_make_workdir
trap pkg_cleanup EXIT          # hs_make_workdir set its own; ours calls it
hs_write_token
hs_start_mock
hs_start_cluster "shared_preload_libraries = 'hubspot_events'"

hs_log "running the pg_regress tests against the installed package"
tests=$(cd "$HS_SRC/sql" && ls *.sql | sed 's/\.sql$//' | sort)
[ -n "${HS_REGRESS:-}" ] && tests="$HS_REGRESS"
set +e
as_pg env HS_MOCK_LOG="$HS_MOCK_LOG" HS_MOCK_URL="$HS_MOCK_URL" HS_MOCK_PORT="$HS_MOCK_PORT" \
    HS_TOKEN_FILE="$HS_WORK/token" PGTZ=UTC \
    "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir="$HS_WORK" --outputdir="$HS_WORK/regress" --bindir="$HS_BINDIR" \
    --host="$HS_PGHOST" --port="$HS_PGPORT" --user=postgres \
    --dbname=contrib_regression $tests 2>&1 | tee "$HS_WORK/regress.out"
set -e
p=$(grep -cE '^\s*(test\s+)?\S+\s+\.\.\.\s+ok' "$HS_WORK/regress.out" || true)
f=$(grep -cE '^\s*(test\s+)?\S+\s+\.\.\.\s+FAILED' "$HS_WORK/regress.out" || true)
passed=$((passed + p)); failed=$((failed + f))
if [ -s "$HS_WORK/regress/regression.diffs" ]; then
    hs_log "differences:"; cat "$HS_WORK/regress/regression.diffs"
fi
expected=$(echo "$tests" | wc -w)
if [ $((p + f)) -ne "$expected" ]; then
    hs_log "FAILED: pg_regress ran $((p + f)) of $expected tests"; failed=$((failed + expected - p - f))
fi
# the tests ran on the package's files: nothing replaced them meanwhile
changed="$(dpkg -V "$HS_PKG_NAME" 2>&1 || true)"
if [ -n "$changed" ]; then
    printf '%s\n' "$changed" >&2
    fail "the package's installed files changed during the tests (dpkg -V)"
fi

pkg_stop_cluster
pkg_remove || true
summary
[ "$failed" -eq 0 ]
