"""The threaded HTTP(S) server the handler runs in."""

import http.server
import socket
import socketserver
import ssl
import sys
import threading

from .common import log_err
from .handler import Handler


class MockServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    ssl_context = None  # set by --tls-cert: HTTPS instead of HTTP

    def finish_request(self, request, client_address):
        # TLS: the handshake runs in the connection's own thread, so that a
        # client that refuses the certificate (or stalls) holds up nobody.
        # A refused handshake is logged and counted, and no request is seen.
        if self.ssl_context is not None:
            try:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError) as exc:
                with self.state.lock:
                    self.state.tls_handshake_failures += 1
                log_err("TLS handshake with %s failed: %s" % (client_address[0], exc))
                return
        super().finish_request(request, client_address)

    def server_bind(self):
        # skip HTTPServer.server_bind's getfqdn() (slow without DNS)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        log_err("connection error from %s: %r" % (client_address, exc))


def make_tls_context(cert_file, key_file):
    """A server context for --tls-cert/--tls-key (TLS 1.2 at least)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def make_server(host, port, state, tls_context=None):
    bind_host = "127.0.0.1" if host.lower() == "localhost" else host
    cls = MockServer
    if ":" in bind_host:
        cls = type("MockServer6", (MockServer,), {"address_family": socket.AF_INET6})
    server = cls((bind_host, port), Handler)
    server.state = state
    server.ssl_context = tls_context
    server.handling_lock = threading.Lock()  # Handler.hold_handling_lock
    return server
