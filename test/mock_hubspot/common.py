"""Helpers and HubSpot's texts shared by the mock's modules."""

import datetime
import ipaddress
import os
import sys
import threading

RATE_MAX = 190  # X-HubSpot-RateLimit-Max without a rate_limit knob (not enforced)
RATE_INTERVAL_MS = 10000
DAILY_MAX = 250000
REQUIRED_SCOPE = "crm.objects.marketing_events.write"

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication "
    "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
EXPIRED_MESSAGE = "The OAuth token used to make this call expired 5 minute(s) ago."
SCOPES_MESSAGE = (
    "This app hasn't been granted all required scopes to make this call. "
    "Read more about required scopes here: https://developers.hubspot.com/scopes."
)
POLICY_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}
PROXY_502_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class BodyError(Exception):
    """A request body the mock cannot read: answered with status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def log_err(msg):
    """One short line to stderr; never raises."""
    try:
        sys.stderr.write("mock_hubspot: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def is_loopback_host(host):
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


_ID_POOL_BYTES = 4096
_id_lock = threading.Lock()
_id_pool = [b"", 0]  # os.urandom bytes, the offset of the first unused one


def new_correlation_id():
    """str(uuid.uuid4()), without the UUID object, its 16 random bytes taken
    from os.urandom 4 KB at a time (every request makes one, and under load
    each system call of a handler thread hands the GIL to another)."""
    with _id_lock:
        pool, start = _id_pool
        if start + 16 > len(pool):
            pool, start = os.urandom(_ID_POOL_BYTES), 0
        _id_pool[:] = pool, start + 16
    raw = bytearray(pool[start:start + 16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return "%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
