"""Many HubSpot accounts ("hubs"), each reached with its own credentials and
limited on its own (the control endpoints in control.py's docstring).

A hub has static tokens (service keys, static-auth apps: any number, in
POST /__mock/hubs) and the OAuth tokens the authorization-code grant and the
refresh grant issued for it (oauth.py).  A /marketing/ request whose Bearer
token is one of them is the hub's request: its log entry names the hub
(``hub_id``) and the credential (``token_label``: ``static:<index in the
hub's tokens list>`` or ``oauth:<n>``, the n-th access token issued for the
hub; never the token), its answer carries the hub's rate-limit headers, the
hub's limiter may refuse it (429, logged with ``limited`` hub_rate or
hub_daily), and the hub's stats count it.  A hub's credential is looked up
before the --token-file token and the single OAuth grant's tokens; a
revoked one answers 401 INVALID_AUTHENTICATION even when the mock accepts
any token (no --token-file).  The global knobs (rate_limit, token_scopes,
faults ...) apply to a hub's requests as to any other.

Everything here lives in State and is read and changed under State.lock;
the classes hold data and the arithmetic, State (state.py) the decisions.
"""

import collections
import os

from .common import RATE_INTERVAL_MS

HUB_FIELDS = ("hub_id", "tokens", "rate_limit", "rate_window_ms", "daily_limit")
HUB_ID_MAX = 2 ** 53
WINDOW_MS_MAX = 24 * 3600 * 1000
TOKEN_MAX = 4096


class HubError(ValueError):
    """A hub definition or control request the mock cannot use (answered 400)."""


def _int_field(obj, name, low, high, default=None, nullable=True):
    value = obj.get(name, default)
    if value is None:
        if nullable:
            return None
        raise HubError("%s is required" % name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HubError("%s must be an integer in %d..%d%s" % (name, low, high, " or null" if nullable else ""))
    return value


def parse_hub(obj):
    """One hub of a POST /__mock/hubs body -> its definition (a dict), checked."""
    if not isinstance(obj, dict):
        raise HubError("every hub must be a JSON object")
    unknown = sorted(set(obj) - set(HUB_FIELDS))
    if unknown:
        raise HubError("unknown hub field(s) %s" % ", ".join(unknown))
    hub_id = _int_field(obj, "hub_id", 1, HUB_ID_MAX, nullable=False)
    tokens = obj.get("tokens", [])
    if not isinstance(tokens, list):
        raise HubError("hub %d: tokens must be a list of strings" % hub_id)
    for index, token in enumerate(tokens):
        if (not isinstance(token, str) or not token or len(token) > TOKEN_MAX or token != token.strip()
                or any(c in token for c in "\r\n\0")):
            # never repeat the token itself
            raise HubError("hub %d: tokens[%d] must be a non-empty string without spaces around it" % (hub_id, index))
    if len(set(tokens)) != len(tokens):
        raise HubError("hub %d: a token is listed twice" % hub_id)
    return {"hub_id": hub_id, "tokens": list(tokens),
            "rate_limit": _int_field(obj, "rate_limit", 0, 10 ** 9),
            "rate_window_ms": _int_field(obj, "rate_window_ms", 1, WINDOW_MS_MAX, default=RATE_INTERVAL_MS,
                                         nullable=False),
            "daily_limit": _int_field(obj, "daily_limit", 0, 10 ** 12)}


def new_secret(prefix, nbytes):
    return prefix + os.urandom(nbytes).hex()


class AccessToken:
    """An OAuth access token issued for a hub."""

    def __init__(self, hub_id, n, expiry):
        self.hub_id = hub_id
        self.n = n  # the n-th access token issued for the hub
        self.expiry = expiry  # time.monotonic()
        self.revoked = None  # None | "revoked" | "uninstalled"

    @property
    def label(self):
        return "oauth:%d" % self.n


class RefreshToken:
    """An OAuth refresh token issued for a hub."""

    def __init__(self, hub_id, n):
        self.hub_id = hub_id
        self.n = n
        self.invalid = None  # None (valid) | "rotated" | "uninstalled"

    @property
    def label(self):
        return "refresh:%d" % self.n


class Hub:
    """One HubSpot account: its definition, limiter, OAuth install and stats."""

    def __init__(self, definition):
        self.hub_id = definition["hub_id"]
        self.installed = False  # an authorization-code grant installed the app, no uninstall since
        self.access_seq = 0
        self.refresh_seq = 0
        self.last_expiry = None  # expiry of the access token issued last (previous_token_left_ms)
        self.window = collections.deque()  # admission times of counted requests
        self.daily_used = 0
        self.define(definition)
        self.reset_counters()

    def define(self, definition):
        """(Re)define tokens and limits; revocations of static tokens are forgotten."""
        self.tokens = list(definition["tokens"])
        self.revoked = set()  # indexes into tokens
        self.rate_limit = definition["rate_limit"]
        self.rate_window_ms = definition["rate_window_ms"]
        self.daily_limit = definition["daily_limit"]

    def reset_counters(self):
        """The limiter's window, the daily count and the stats (POST /__mock/reset)."""
        self.window.clear()
        self.daily_used = 0
        self.counts = collections.Counter()
        self.by_status = collections.Counter()
        self.by_limit = collections.Counter()
        self.times = []  # arrival (admission) times of the requests answered anything but 401
        self.first_time = self.last_time = None

    # ---- the limiter ---------------------------------------------------

    def prune(self, now):
        span = self.rate_window_ms / 1000.0
        while self.window and now - self.window[0] >= span:
            self.window.popleft()

    def verdict(self, now):
        """None, or hub_daily / hub_rate: why the hub's limiter refuses a request now."""
        self.prune(now)
        if self.daily_limit is not None and self.daily_used >= self.daily_limit:
            return "hub_daily"
        if self.rate_limit is not None and len(self.window) >= self.rate_limit:
            return "hub_rate"
        return None

    def count(self, now):
        self.window.append(now)
        self.daily_used += 1

    def uncount(self, admitted_at):
        try:
            self.window.remove(admitted_at)
        except ValueError:
            pass  # already out of the window
        self.daily_used = max(0, self.daily_used - 1)

    def fill_headers(self, quota, now):
        """The hub's rate-limit header values (only the limits it has)."""
        self.prune(now)
        if self.rate_limit is not None:
            quota.max, quota.interval_ms = self.rate_limit, self.rate_window_ms
            quota.remaining = max(0, self.rate_limit - len(self.window))
        if self.daily_limit is not None:
            quota.daily = self.daily_limit
            quota.daily_remaining = max(0, self.daily_limit - self.daily_used)

    # ---- stats -----------------------------------------------------------

    def note(self, entry, when):
        """Count one answered (or dropped) request of this hub."""
        status = entry.get("status")
        self.counts["requests"] += 1
        self.by_status["none" if status is None else str(status)] += 1
        body = entry.get("body")
        inputs = body.get("inputs") if isinstance(body, dict) else None
        contacts = len(inputs) if isinstance(inputs, list) else 0
        self.counts["contacts"] += contacts
        if status is not None and 200 <= status < 300:
            self.counts["ok"] += 1
            self.counts["contacts_ok"] += contacts
        if status == 429:
            self.counts["limited"] += 1
        if entry.get("limited"):
            self.by_limit[entry["limited"]] += 1
        if status == 401:
            self.counts["unauthorized"] += 1
        else:
            self.times.append(when)
        wall = entry.get("time")
        if self.first_time is None:
            self.first_time = wall
        self.last_time = wall

    def stats(self, now, max_in_window):
        self.prune(now)
        return {
            "requests": self.counts["requests"],
            "ok": self.counts["ok"],
            "limited": self.counts["limited"],
            "unauthorized": self.counts["unauthorized"],
            "contacts": self.counts["contacts"],
            "contacts_ok": self.counts["contacts_ok"],
            "by_status": dict(self.by_status),
            "by_limit": dict(self.by_limit),
            "max_in_window": max_in_window(self.times, self.rate_window_ms / 1000.0),
            "window_ms": self.rate_window_ms,
            "window_used": len(self.window),
            "daily_used": self.daily_used,
            "tokens_issued": self.counts["tokens_issued"],
            "first_request_time": self.first_time,
            "last_request_time": self.last_time,
        }

    def view(self, now, max_in_window):
        """A hub in GET /__mock/hubs: its definition (labels, never tokens) and stats."""
        return {
            "hub_id": self.hub_id,
            "tokens": ["static:%d" % i for i in range(len(self.tokens))],
            "revoked": ["static:%d" % i for i in sorted(self.revoked)],
            "rate_limit": self.rate_limit,
            "rate_window_ms": self.rate_window_ms,
            "daily_limit": self.daily_limit,
            "installed": self.installed,
            "stats": self.stats(now, max_in_window),
        }
