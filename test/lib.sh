# test/lib.sh: shared by test/run.sh and test/demo.sh.
#
# Installs what is missing (as root), builds and installs the extension,
# and runs a throwaway PostgreSQL cluster and the mock HubSpot as the
# unprivileged "postgres" OS user (PostgreSQL refuses to run as root), on a
# unix socket and 127.0.0.1 only.  Everything lives in one temporary folder
# that hs_cleanup removes.

set -euo pipefail

HS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HS_PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libjson-c-dev libssl-dev
             python3 python3-psycopg2 make gcc pkg-config libipc-run-perl openssl)
HS_RUN_AS=postgres

hs_log() { printf '== %s\n' "$*" >&2; }
hs_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

hs_require_root() {
    [ "$(id -u)" = 0 ] || hs_die "run this as root (bash $0 as root, or sudo bash $0): it installs packages and the extension, then runs PostgreSQL as the '$HS_RUN_AS' user"
}

# Install the Debian packages that are missing: the ones named, or HS_PACKAGES.
hs_install_packages() {
    local missing=()
    [ $# -gt 0 ] || set -- "${HS_PACKAGES[@]}"
    for p in "$@"; do
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
# PostgreSQL installation (one lock per pg_config, on fd 9, held until the
# process exits: hs_install_lock).
hs_install_lock() {
    local pgc; pgc="$(hs_pg_config)"
    exec 9>"/tmp/hubspot_events.install.$(printf '%s' "$pgc" | md5sum | cut -c1-12).lock"
    flock 9
}

hs_build_install() {
    local pgc; pgc="$(hs_pg_config)"
    hs_install_lock
    hs_log "building and installing hubspot_events"
    # the scripts another checkout installed (a full script this one does
    # not have, say) would be used by CREATE EXTENSION: only ours are there
    rm -f "$("$pgc" --sharedir)"/extension/hubspot_events--*.sql
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

# ---- PostgreSQL servers built from Debian's source packages ----
# Debian 12 ships PostgreSQL 15 only.  The other tested versions, and the
# AddressSanitizer pass (Debian's postgres binary cannot load an ASan build:
# preloading libasan deadlocks it in bindtextdomain at startup), use servers
# built here from Debian's own source packages, each once into its own prefix
# under /opt and reused by later runs.  The source comes through a private
# sources list and apt state directory: the machine's own apt sources are
# never changed, and no other suite's binary package is installed.

# The Debian archive the machine's own apt sources name (bookworm's).
hs_debian_archive_uri() {
    local uri=""
    uri="$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u != "" { print u; exit }' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    [ -n "$uri" ] || uri="$(sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\) bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)"
    [ -n "$uri" ] || hs_die "cannot find the Debian archive in the machine's apt sources"
    printf '%s\n' "$uri"
}

# hs_fetch_pg_source VERSION SUITE DIR: download the upstream tarball of
# Debian's source package postgresql-VERSION in SUITE into DIR; prints its path.
hs_fetch_pg_source() {
    local v="$1" suite="$2" dir="$3" apt="$3/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$(hs_debian_archive_uri)" "$suite" > "$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || true
    ( cd "$dir" && apt-get "${opts[@]}" source -qq --download-only "postgresql-$v/$suite" >/dev/null 2>&1 ) || true
    ls "$dir"/postgresql-"$v"_*.orig.tar.* 2>/dev/null | head -1
}

# Where each tested version comes from: Debian 12's own packages, or the
# suite whose source package is built.  (16 is in none of the suites the
# archive serves; 17's and 19's source files are listed by trixie and
# experimental but not served here: see README.)
declare -A HS_PG_SUITE=([18]=sid)
HS_PG_DEBIAN=15                 # Debian 12's own server
HS_PG_NEWEST=18                 # the newest tested: the AddressSanitizer pass runs on it

# The prefix of a built server: hs_pg_prefix VERSION [asan]
hs_pg_prefix() { local a="${2:-}"; echo "/opt/hubspot_events-pg$1${a:+-$a}"; }

# hs_build_pg VERSION [asan]: build (once) PostgreSQL VERSION from Debian's
# source package: the server, pg_regress, the isolation tester, the TAP
# modules and dblink (08_upgrade), with ICU as Debian builds it (a test
# creates an ICU database); with "asan", under AddressSanitizer.
hs_build_pg() {
    local v="$1" asan="${2:-}" prefix; prefix="$(hs_pg_prefix "$1" "${2:-}")"
    local marker="$prefix/.complete"
    [ -x "$prefix/bin/postgres" ] && [ -f "$marker" ] && return 0
    local suite="${HS_PG_SUITE[$v]:-}"
    [ "$v" = "$HS_PG_DEBIAN" ] && suite=bookworm
    [ -n "$suite" ] || hs_die "no Debian suite is known to have the source of PostgreSQL $v"
    rm -rf "$prefix"
    hs_log "building PostgreSQL $v from Debian's source package ($suite)${asan:+ under AddressSanitizer} into $prefix (once; a few minutes)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq bison flex bzip2 perl make gcc libicu-dev pkg-config libipc-run-perl >/dev/null
    local src; src="$(mktemp -d /tmp/hs-pg-src.XXXXXX)"
    local tarball; tarball="$(hs_fetch_pg_source "$v" "$suite" "$src")"
    [ -n "$tarball" ] || hs_die "could not download Debian's postgresql-$v source package from $suite"
    tar -C "$src" -xf "$tarball"
    local dir; dir="$(ls -d "$src"/postgresql-"$v"*/ | head -1)"
    local cflags="-O2 -g" ldflags=""
    [ -n "$asan" ] && cflags="-O1 -g -fsanitize=address -fno-omit-frame-pointer" && ldflags="-fsanitize=address"
    (
        cd "$dir"
        ./configure --prefix="$prefix" --enable-tap-tests --enable-debug \
            --without-readline --with-icu --without-zlib \
            CFLAGS="$cflags" LDFLAGS="$ldflags" >/dev/null
        export ASAN_OPTIONS=detect_leaks=0
        make -s -j"$(( $(nproc) + 1 ))" >/dev/null 2>&1
        make -s install >/dev/null
        for d in contrib/dblink src/test/regress src/test/isolation src/test/perl; do
            make -s -C "$d" install >/dev/null 2>&1
        done
    ) || hs_die "the build of PostgreSQL $v${asan:+ under AddressSanitizer} failed"
    touch "$marker"
    rm -rf "$src"
}
