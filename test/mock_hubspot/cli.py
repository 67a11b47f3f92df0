"""The command line: ``mock_hubspot.py --help`` (test/mock_hubspot.py runs main)."""

import argparse
import os
import signal
import ssl
import sys
import tempfile
import threading

from .common import is_loopback_host, log_err
from .server import make_server, make_tls_context
from .spec import Specs
from .state import State

OPENAPI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "openapi")
DEFAULT_SPECS = [os.path.join(OPENAPI_DIR, "marketing-events-2026-09.openapi.json"),
                 os.path.join(OPENAPI_DIR, "marketing-events-v3.openapi.json")]


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("%d\n" % port)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Mock HubSpot Marketing Events API for tests.")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    ap.add_argument("--port-file", help="write the bound port number here (atomically)")
    ap.add_argument("--token-file", help="file with the expected bearer token (re-read per request)")
    ap.add_argument("--spec", action="append",
                    help="an OpenAPI JSON, one per API version; may be repeated "
                         "(default: the 2026-09 and v3 specs in openapi/)")
    ap.add_argument("--log", help="append one JSON object per /marketing/ request (JSON Lines)")
    ap.add_argument("--seed", type=int, help="seed for fault-injection decisions")
    ap.add_argument("--verbose", action="store_true", help="log every request line to stderr")
    ap.add_argument("--lean", action="store_true",
                    help="for benchmarks: keep no entries in memory (GET /__mock/requests answers []; "
                         "the writes leave no participations; "
                         "the --log file and /__mock/stats still have everything) and skip the "
                         "JSON-schema check of request bodies (routes, query, headers and the token "
                         "are still checked)")
    ap.add_argument("--self-test", action="store_true", help="run the built-in self test and exit")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain) instead of HTTP")
    ap.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    return ap.parse_args(argv)


def fail(message):
    print("mock_hubspot: %s" % message, file=sys.stderr)
    return 2


def setup(args, spec_paths):
    """(server, state, tls_context), or an exit code after a message on stderr."""
    if not is_loopback_host(args.host):
        return fail("refusing non-loopback host %r" % args.host)
    if not 0 <= args.port <= 65535:
        return fail("bad port %d" % args.port)
    try:
        specs = Specs.load(spec_paths)
    except (OSError, ValueError, KeyError) as exc:
        return fail("cannot load specs %s: %s" % (", ".join(spec_paths), exc))
    try:
        state = State(specs, token_file=args.token_file, log_path=args.log, seed=args.seed, verbose=args.verbose,
                      lean=args.lean)
    except OSError as exc:
        return fail("cannot open log %s: %s" % (args.log, exc))
    tls_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            return fail("--tls-cert and --tls-key go together")
        try:
            tls_context = make_tls_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            return fail("cannot load the TLS certificate or key: %s" % exc)
    try:
        server = make_server(args.host, args.port, state, tls_context)
    except OSError as exc:
        return fail("cannot bind %s:%d: %s" % (args.host, args.port, exc))
    return server, state, tls_context


def run(args, server, state, tls_context):
    """Serve until SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    if args.port_file:
        try:
            write_port_file(args.port_file, port)
        except OSError as exc:
            print("mock_hubspot: cannot write port file: %s" % exc, file=sys.stderr)
            server.shutdown()
            return 2
    log_err("listening on %s port %d%s" % (args.host, port, " (HTTPS)" if tls_context else ""))
    while not stop.wait(0.5):
        pass
    state.stop.set()
    server.shutdown()
    server.server_close()
    log_err("stopped")
    return 0


def main(argv=None):
    args = parse_args(argv)
    spec_paths = args.spec or DEFAULT_SPECS
    if args.self_test:
        from .selftest import self_test
        return self_test(spec_paths)
    started = setup(args, spec_paths)
    if isinstance(started, int):
        return started
    return run(args, *started)
