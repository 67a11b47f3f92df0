# test/lib.sh: shared by test/run.sh and test/demo.sh.
#
# Installs what is missing (as root), builds and installs the extension,
# and runs a throwaway PostgreSQL cluster and the mock HubSpot as the
# unprivileged "postgres" OS user (PostgreSQL refuses to run as root), on a
# unix socket and 127.0.0.1 only.  Everything lives in one temporary folder
# that hs_cleanup removes.

set -euo pipefail

HS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HS_PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libjson-c-dev
             python3 python3-psycopg2 make gcc pkg-config libipc-run-perl openssl)
HS_RUN_AS=postgres

hs_log() { printf '== %s\n' "$*" >&2; }
hs_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

hs_require_root() {
    [ "$(id -u)" = 0 ] || hs_die "run this as root (sudo $0): it installs packages and the extension, then runs PostgreSQL as the '$HS_RUN_AS' user"
}

# Install the Debian packages that are missing.
hs_install_packages() {
    local missing=()
    for p in "${HS_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        hs_log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || true
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Debian's postgresql-common may create and start a default cluster: we never use it.
}

hs_pg_config() { echo "${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"; }

# Build warning-free (warnings are errors) and install.  Runs from several
# checkouts on one machine take turns: the install is machine-wide, per
# PostgreSQL installation (one lock per pg_config).
hs_build_install() {
    local pgc; pgc="$(hs_pg_config)"
    exec 9>"/tmp/hubspot_events.install.$(printf '%s' "$pgc" | md5sum | cut -c1-12).lock"
    flock 9
    hs_log "building and installing hubspot_events"
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" COPT=-Werror clean >/dev/null
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" COPT=-Werror >/dev/null
    make -C "$HS_SRC" -s PG_CONFIG="$pgc" install >/dev/null
}

# A work folder owned by the unprivileged user, with a copy of the tests.
hs_make_workdir() {
    HS_WORK="$(mktemp -d /tmp/hubspot_events.XXXXXX)"
    chmod 755 "$HS_WORK"
    cp -r "$HS_SRC/test" "$HS_SRC/sql" "$HS_SRC/expected" "$HS_WORK/"
    chown -R "$HS_RUN_AS:" "$HS_WORK"
    export HS_WORK
    trap hs_cleanup EXIT
}

as_pg() { runuser -u "$HS_RUN_AS" -- env -C "$HS_WORK" "$@"; }

# The token the mock expects: random for every run, so that a leak can be grepped for.
hs_write_token() {
    HS_TOKEN="pat-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s\n' "$HS_TOKEN" > "$HS_WORK/token"
    chown "$HS_RUN_AS:" "$HS_WORK/token"
    chmod 600 "$HS_WORK/token"
    # the OAuth test client's secret and refresh token (test/t/008_oauth.pl), random too
    HS_OAUTH_SECRET="cs-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    HS_OAUTH_REFRESH="rt-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    # not exported: servers the tests start inherit the environment, and a
    # postmaster logs its environment at DEBUG3 (run.sh hands the OAuth ones
    # to the TAP tests that need them)
}

# Extra arguments go to the mock (the benchmarks pass --lean).
hs_start_mock() {
    hs_log "starting the mock HubSpot${*:+ ($*)}"
    setsid runuser -u "$HS_RUN_AS" -- env -C "$HS_WORK" /usr/bin/python3 "$HS_WORK/test/mock_hubspot.py" --host 127.0.0.1 --port 0 \
        --port-file "$HS_WORK/mock.port" --token-file "$HS_WORK/token" \
        --log "$HS_WORK/mock_requests.jsonl" --seed 42 "$@" \
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

# Start a throwaway cluster; extra postgresql.conf lines come as arguments.
hs_start_cluster() {
    local bindir; bindir="$("$(hs_pg_config)" --bindir)"
    HS_PGDATA="$HS_WORK/pgdata"
    HS_PGHOST="$HS_WORK"
    HS_PGPORT=54329
    hs_log "starting a throwaway cluster in $HS_PGDATA"
    as_pg "$bindir/initdb" -D "$HS_PGDATA" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$HS_PGHOST'"
        echo "port = $HS_PGPORT"
        echo "fsync = off"
        echo "log_min_messages = info"
        echo "hubspot_events.api_base_url = '$HS_MOCK_URL'"
        echo "hubspot_events.access_token_file = '$HS_WORK/token'"
        for line in "$@"; do echo "$line"; done
    } >> "$HS_PGDATA/postgresql.conf"
    # (9>&-: the server must not inherit the install lock)
    as_pg "$bindir/pg_ctl" -D "$HS_PGDATA" -l "$HS_WORK/postgresql.log" -w start >/dev/null 9>&-
    HS_CLUSTER_UP=1
    export PGHOST="$HS_PGHOST" PGPORT="$HS_PGPORT" PGUSER=postgres HS_BINDIR="$bindir"
}

hs_psql() { as_pg env PGHOST="$HS_PGHOST" PGPORT="$HS_PGPORT" "$HS_BINDIR/psql" -X -v ON_ERROR_STOP=1 -U postgres "$@"; }

hs_cleanup() {
    local rc=$?
    if [ "${HS_CLUSTER_UP:-}" = 1 ]; then
        as_pg "$HS_BINDIR/pg_ctl" -D "$HS_PGDATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "${HS_MOCK_PID:-}" ]; then
        kill -TERM -- "-$HS_MOCK_PID" 2>/dev/null || kill "$HS_MOCK_PID" 2>/dev/null || true
        wait "$HS_MOCK_PID" 2>/dev/null || true
    fi
    if [ -n "${HS_WORK:-}" ] && [ -d "$HS_WORK" ]; then
        if [ "${HS_KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then
            hs_log "work folder kept for inspection: $HS_WORK"
        else
            rm -rf "$HS_WORK"
        fi
    fi
    exit "$rc"
}

# ---- the AddressSanitizer pass ----
# Debian's postgres binary cannot load an ASan build (preloading libasan
# deadlocks it in bindtextdomain at startup), so the ASan pass runs the suite
# against PostgreSQL 15 built from Debian's own source package with
# -fsanitize=address, installed in HS_ASAN_PREFIX (built once, then reused).
HS_ASAN_PREFIX=/opt/hubspot_events-pg15-asan

hs_build_asan_pg() {
    # .complete-icu: built with ICU, as Debian's server is (the tests create an ICU database);
    # an older build without it is built again
    [ -x "$HS_ASAN_PREFIX/bin/postgres" ] && [ -f "$HS_ASAN_PREFIX/.complete-icu" ] && return 0
    rm -rf "$HS_ASAN_PREFIX"
    hs_log "building PostgreSQL 15 from Debian's source package under AddressSanitizer (once; a few minutes)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq bison flex bzip2 perl make gcc libicu-dev pkg-config >/dev/null
    local src; src="$(mktemp -d /tmp/hs-pg-src.XXXXXX)"
    local list=/etc/apt/sources.list.d/hubspot-events-deb-src.sources
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$list"
    apt-get update -qq >/dev/null 2>&1 || true
    ( cd "$src" && apt-get source -qq --download-only postgresql-15 >/dev/null 2>&1 ) || true
    rm -f "$list"
    apt-get update -qq >/dev/null 2>&1 || true
    local tarball; tarball="$(ls "$src"/postgresql-15_*.orig.tar.* 2>/dev/null | head -1)"
    [ -n "$tarball" ] || hs_die "could not download Debian's postgresql-15 source package"
    tar -C "$src" -xf "$tarball"
    local dir; dir="$(ls -d "$src"/postgresql-15*/ | head -1)"
    (
        cd "$dir"
        ./configure --prefix="$HS_ASAN_PREFIX" --enable-tap-tests --enable-debug \
            --without-readline --with-icu --without-zlib \
            CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" >/dev/null
        export ASAN_OPTIONS=detect_leaks=0
        make -s -j"$(( $(nproc) + 1 ))" >/dev/null 2>&1
        make -s install >/dev/null
        for d in contrib/dblink src/test/regress src/test/isolation src/test/perl; do
            make -s -C "$d" install >/dev/null 2>&1
        done
    ) || hs_die "the AddressSanitizer build of PostgreSQL failed"
    touch "$HS_ASAN_PREFIX/.complete-icu"
    rm -rf "$src"
}
