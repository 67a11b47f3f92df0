"""The HTTP handler: reading requests, sending answers, and routing them to
the /marketing/ API (api.py), the OAuth token endpoint (oauth.py) and the
/__mock control API (control.py)."""

import http.server
import json
import os
import select
import socket
import struct
import time
import traceback
import urllib.parse

from . import api, control, oauth
from .common import RATE_INTERVAL_MS, RATE_MAX, BodyError, log_err, new_correlation_id
from .state import Quota

MAX_BODY = 10 * 1024 * 1024
MAX_CHUNK_LINE = 4096
POLL_STEP_S = 0.05
REASONS = {423: "Locked", 477: "Migration In Progress", 521: "Web Server Is Down",
           523: "Origin Is Unreachable", 524: "A Timeout Occurred"}


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection's requests; route_request sends each to its module."""

    protocol_version = "HTTP/1.1"
    server_version = "mock-hubspot/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None
    holding = False  # holds the server's handling_lock (hold_handling_lock)

    # ---- plumbing -------------------------------------------------------

    def version_string(self):
        return self.server_version

    _date = (None, None)  # (second, its Date header value)

    def date_time_string(self, timestamp=None):
        """The Date header's value: the stdlib's, made once a second."""
        if timestamp is None:
            timestamp = time.time()
        second = int(timestamp)
        cached_second, text = Handler._date
        if cached_second != second:
            text = super().date_time_string(second)
            Handler._date = (second, text)
        return text

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.state.verbose:
            log_err("%s %s" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    @property
    def state(self):
        return self.server.state

    def dispatch(self):
        self.answered = False
        self.holding = False
        try:
            self.route_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except Exception as exc:
            self.close_connection = True
            log_err("internal error on %s %s: %s" % (self.command, self.path[:200], exc))
            if self.state.verbose:
                traceback.print_exc()
            if not self.answered:
                try:
                    corr = new_correlation_id()
                    self.send_json(500, {"status": "error", "message": "mock internal error",
                                         "correlationId": corr, "category": "INTERNAL_ERROR"},
                                   corr=corr, close=True)
                except Exception:
                    pass
        finally:
            self.drop_handling_lock()

    def hold_handling_lock(self):
        """Take the server's handling lock for the work of a /marketing/
        request between reading its body and sending its answer (checks,
        state, log).  Python runs one thread at a time anyway, but with
        several requests in flight each system call of that work (the token
        file, the log) handed the GIL to another request's thread and back:
        a fifth of the mock's CPU with 4 in flight.  Dropped before anything
        that can wait: sending (send_raw), wait(), and at the end of
        dispatch whatever happened."""
        self.server.handling_lock.acquire()
        self.holding = True

    def drop_handling_lock(self):
        if self.holding:
            self.holding = False
            self.server.handling_lock.release()

    def read_body(self):
        """Read the request body (Content-Length or chunked), at most MAX_BODY bytes."""
        te = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if codings != ["chunked"]:
                self.close_connection = True
                raise BodyError(501, "unsupported Transfer-Encoding %r" % ", ".join(te))
            return self.read_chunked()
        if not lengths:
            return b""
        values = {v.strip() for v in lengths}
        if len(values) != 1 or not next(iter(values)).isdigit():
            self.close_connection = True
            raise BodyError(400, "invalid Content-Length %r" % ", ".join(lengths))
        size = int(next(iter(values)))
        if size > MAX_BODY:
            self.close_connection = True
            raise BodyError(413, "body of %d bytes exceeds %d" % (size, MAX_BODY))
        data = self.rfile.read(size) if size else b""
        if len(data) != size:
            self.close_connection = True
            raise BodyError(400, "body truncated: got %d of %d bytes" % (len(data), size))
        return data

    def read_chunked(self):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE + 1)
            if not line or len(line) > MAX_CHUNK_LINE:
                self.close_connection = True
                raise BodyError(400, "malformed chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self.close_connection = True
                raise BodyError(400, "malformed chunk size %r" % size_text[:40]) from None
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                raise BodyError(413, "chunked body exceeds %d bytes" % MAX_BODY)
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                self.close_connection = True
                raise BodyError(400, "truncated chunk")
            chunks.append(data)
        while True:  # trailers
            line = self.rfile.readline(MAX_CHUNK_LINE + 1)
            if not line or len(line) > MAX_CHUNK_LINE:
                self.close_connection = True
                raise BodyError(400, "malformed chunked trailer")
            if line in (b"\r\n", b"\n"):
                break
        return b"".join(chunks)

    def send_raw(self, status, body=b"", content_type=None, corr=None, extra=(), close=False,
                 ratelimit=None):
        """Send one complete answer.  corr None -> no correlation header."""
        self.drop_handling_lock()
        self.answered = True
        self.send_response(status, REASONS.get(status))
        if corr is not None:
            self.send_header("x-hubspot-correlation-id", corr)
        if isinstance(ratelimit, Quota):
            self.send_header("X-HubSpot-RateLimit-Max", str(ratelimit.max))
            self.send_header("X-HubSpot-RateLimit-Remaining", str(ratelimit.remaining))
            self.send_header("X-HubSpot-RateLimit-Interval-Milliseconds", str(ratelimit.interval_ms))
            if ratelimit.daily is not None:
                self.send_header("X-HubSpot-RateLimit-Daily", str(ratelimit.daily))
                self.send_header("X-HubSpot-RateLimit-Daily-Remaining", str(ratelimit.daily_remaining))
        elif ratelimit is not None:  # just the remaining count, default max and window
            self.send_header("X-HubSpot-RateLimit-Max", str(RATE_MAX))
            self.send_header("X-HubSpot-RateLimit-Remaining", str(ratelimit))
            self.send_header("X-HubSpot-RateLimit-Interval-Milliseconds", str(RATE_INTERVAL_MS))
        for name, value in extra:
            self.send_header(name, value)
        no_body = status in (204, 304)
        if content_type and not no_body:
            self.send_header("Content-Type", content_type)
        if not no_body:  # RFC 9110: no Content-Length on 204/304
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if body and not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, **kw):
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        self.send_raw(status, body, "application/json;charset=utf-8", **kw)

    def client_gone(self):
        """True if the peer closed (or reset) the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def wait(self, seconds):
        """Sleep in small steps; False if the client left (or the server stops)."""
        self.drop_handling_lock()
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self.state.stop.is_set():
                return False
            try:
                readable, _, _ = select.select([self.connection], [], [], min(POLL_STEP_S, left))
            except (OSError, ValueError):
                return False
            if readable:
                if self.client_gone():
                    return False
                time.sleep(min(POLL_STEP_S, max(0.0, deadline - time.monotonic())))

    def reset_connection(self):
        """Abort the TCP connection with an RST, without answering."""
        self.answered = True
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            fd = self.connection.detach()
            if fd >= 0:
                os.close(fd)
        except OSError as exc:
            log_err("reset failed: %s" % exc)

    # ---- routing --------------------------------------------------------

    def route_request(self):
        target = self.path
        if not target.startswith("/"):
            parts = urllib.parse.urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        raw_path = raw_path.split("#", 1)[0]
        if raw_path.startswith("/__mock/") or raw_path == "/__mock":
            return control.serve(self, raw_path, raw_query)
        if raw_path.startswith("/marketing/"):
            return api.serve(self, raw_path, raw_query)
        if raw_path in oauth.OAUTH_PATHS:
            return oauth.serve(self, raw_path, raw_query)
        try:
            self.read_body()
        except BodyError:
            pass
        log_err("unlogged request to unknown path %s %s" % (self.command, raw_path[:200]))
        corr = new_correlation_id()
        self.send_json(404, {"status": "error", "message": "Resource not found", "correlationId": corr,
                             "category": "OBJECT_NOT_FOUND"}, corr=corr)

