"""The mock's shared state: the limiter and its quotas, the stats, the events
known to exist, the participations HubSpot holds (participations.py, under
the same lock), the hubs (hubs.py), OAuth's tokens, and the request log."""

import collections
import gc
import hmac
import json
import math
import os
import random
import threading
import time

from .common import RATE_INTERVAL_MS, RATE_MAX, iso_now, log_err
from .hubs import AccessToken, Hub, HubError, RefreshToken, new_secret
from .participations import Participations
from .spec import DEFAULT_DATE_VERSIONS


LOG_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # what json.dumps(..., these) makes


def log_line(entry, body_json=None):
    """The --log line of an entry: json.dumps(entry, separators=(",", ":"),
    default=str) and a newline.  With body_json (the compact JSON of
    entry["body"]) the body is not written again: an object is its members
    in order, so the members before "body", "body":<body_json> and the ones
    after make the same text."""
    encode = LOG_ENCODER.encode
    if body_json is None or "body" not in entry:
        return encode(entry) + "\n"
    before, after = {}, {}
    part = before
    for key, value in entry.items():
        if key == "body":
            part = after
        else:
            part[key] = value
    members = [encode(before)[1:-1], '"body":' + body_json, encode(after)[1:-1]]
    return "{" + ",".join(m for m in members if m) + "}\n"


class KeptBody:
    """The body of a kept entry as its compact JSON text (parse_json_body):
    one string instead of a tree of objects (a batch of 100 is 201 dicts and
    lists) that the memory and the garbage collector would have to keep."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def value(self):
        return json.loads(self.text)


FREEZE_EVERY = 256  # records between two freeze_survivors()


def freeze_survivors():
    """Spare the cyclic garbage collector what the mock keeps.

    The entries, the participations (a batch of 100 new contacts adds 100
    records) and the OpenAPI documents only grow until a reset, and Python's
    full collections walk all of them again and again (with the entries'
    parsed bodies kept, a third of the mock's CPU at batch 100; without them
    still a tenth).  Collecting the young generations and then freezing
    (gc.freeze) what survived takes those objects out of every later
    collection.  Reference counting still frees them (a reset drops the
    entries); only a reference cycle alive at the freeze (a request in
    flight in another thread) is never collected."""
    gc.collect(1)
    gc.freeze()


class Quota:
    """Rate-limit header values for one answer, and the limiter's verdict."""

    def __init__(self):
        self.max = RATE_MAX
        self.remaining = RATE_MAX
        self.interval_ms = RATE_INTERVAL_MS
        self.daily = None  # daily headers are sent only when set
        self.daily_remaining = None
        self.verdict = None  # None (admitted) | "rate" | "daily" | "storm"
        self.retry_after = None  # seconds, for a storm
        self.admitted_at = None  # time.monotonic() of the admission
        self.counted = False  # holds a place in the window and the daily count
        self.hub = None  # the Hub of a hub's request: its limiter counts it too, its headers are sent


def max_in_window(times, window_s):
    """The largest number of times t_j with t - window_s < t_j <= t, over all t in times."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class State:
    """Everything the handler threads share, under one lock."""

    def __init__(self, specs, token_file=None, log_path=None, seed=None, verbose=False, lean=False):
        self.specs = specs
        self.lean = lean  # --lean: no entries kept in memory, no body schema check
        self.token_file = token_file
        self.verbose = verbose
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rng = random.Random(seed)
        self.seq = 0
        self.entries = []
        self.event_counts = collections.Counter()
        self.global_knobs = {}
        self.rate_window = collections.deque()  # every /marketing/ request (informational headers)
        # the limiter: admission times of counted requests within rate_window_ms
        self.limit_window = collections.deque()
        self.daily_used = 0
        self.storm_until = None  # time.monotonic() deadline of a 429 storm
        self.tls_handshake_failures = 0  # with --tls-cert: handshakes that failed
        self.issued = {}  # access token -> time.monotonic() expiry (survives reset)
        self.current_refresh = None  # a rotated refresh token (survives reset); None: the configured one
        self.last_expiry = None  # time.monotonic() expiry of the token issued last
        self.oauth_log = []
        # the hubs (hubs.py) and what they hold; all of it survives reset (their counters do not)
        self.hubs = {}  # hub_id -> Hub
        self.hub_tokens = {}  # static token -> (hub_id, index in the hub's tokens)
        self.hub_access = {}  # OAuth access token -> AccessToken
        self.hub_refresh = {}  # OAuth refresh token -> RefreshToken
        self.oauth_codes = {}  # authorization code -> {"hub_id", "redirect_uri", "used"}
        # (hub id or None, externalEventId, externalAccountId) -> monotonic time of its first
        # upsert: an event lives in the HubSpot account (hub) it was created in
        self.known_events = {}
        # what the subscriber-state writes left in HubSpot (not with --lean)
        self.participations = Participations(self.lock, keep=not lean)
        self.reset_stats()
        self.log_file = None
        if log_path:
            existed = os.path.exists(log_path)
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if not existed:
                os.fchmod(fd, 0o644)
            self.log_file = os.fdopen(fd, "ab", buffering=0)

    def expected_token(self):
        """None when any token is accepted; raises OSError if unreadable."""
        if not self.token_file:
            return None
        try:  # the file read with three system calls and no file object
            fd = os.open(self.token_file, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = []
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError:  # the error (and its message) open() and read() give
            with open(self.token_file, "rb") as fh:
                data = fh.read()
        else:
            data = b"".join(chunks)
        return data.decode("utf-8", "replace").strip()

    def rate_tick(self):
        now = time.monotonic()
        with self.lock:
            window = self.rate_window
            window.append(now)
            while window and now - window[0] > RATE_INTERVAL_MS / 1000.0:
                window.popleft()
            return max(0, RATE_MAX - len(window))

    # ---- limits (rate_limit, daily_limit, storm_ms) ----------------------

    def _window_s(self):
        return self.global_knobs.get("rate_window_ms", RATE_INTERVAL_MS) / 1000.0

    def _prune(self, now):
        window, span = self.limit_window, self._window_s()
        while window and now - window[0] >= span:
            window.popleft()

    def _quota(self, legacy_remaining, now):
        """Header values for the current window (caller holds the lock)."""
        knobs = self.global_knobs
        quota = Quota()
        if "rate_limit" in knobs:
            self._prune(now)
            quota.max, quota.interval_ms = knobs["rate_limit"], knobs.get("rate_window_ms", RATE_INTERVAL_MS)
            quota.remaining = max(0, quota.max - len(self.limit_window))
        else:
            quota.max, quota.remaining = RATE_MAX, legacy_remaining
        if "daily_limit" in knobs:
            quota.daily = knobs["daily_limit"]
            quota.daily_remaining = max(0, quota.daily - self.daily_used)
        return quota

    def quota_view(self, legacy_remaining, hub_id=None):
        """Headers for a request that is not admitted (it failed validation)."""
        with self.lock:
            now = time.monotonic()
            quota = self._quota(legacy_remaining, now)
            hub = self.hubs.get(hub_id) if hub_id is not None else None
            if hub is not None:
                hub.fill_headers(quota, now)
            return quota

    def admit(self, legacy_remaining, hub_id=None):
        """The limiter's decision for a validated request; returns a Quota
        whose verdict is None (counted: answer it) or rate|daily|storm, or
        for a hub's request hub_rate|hub_daily (429).  A hub's request is
        counted by the global limiter and by its hub's, and its headers are
        the hub's (hubs.py)."""
        with self.lock:
            now = time.monotonic()  # taken under the lock: the window stays sorted
            self.stats_validated.append(now)
            quota = self._quota(legacy_remaining, now)
            quota.admitted_at = now
            hub = quota.hub = self.hubs.get(hub_id) if hub_id is not None else None
            if self.storm_until is not None and now < self.storm_until:
                quota.verdict, quota.remaining = "storm", 0
                quota.retry_after = max(1, math.ceil(self.storm_until - now))
            elif quota.daily is not None and quota.daily_remaining <= 0:
                quota.verdict = "daily"
            elif "rate_limit" in self.global_knobs and quota.remaining <= 0:
                quota.verdict = "rate"
            elif hub is not None and (hub_verdict := hub.verdict(now)) is not None:
                quota.verdict = hub_verdict
            else:
                self._prune(now)
                self.limit_window.append(now)
                self.daily_used += 1
                quota.counted = True
                if "rate_limit" in self.global_knobs:
                    quota.remaining = max(0, quota.max - len(self.limit_window))
                if quota.daily is not None:
                    quota.daily_remaining = max(0, quota.daily - self.daily_used)
                if hub is not None:
                    hub.count(now)
            if hub is not None:
                hub.fill_headers(quota, now)
                if quota.verdict == "storm":
                    quota.remaining = 0
            return quota

    def release(self, quota):
        """Uncount an admitted request that was answered 429 after all."""
        with self.lock:
            if not quota.counted:
                return
            quota.counted = False
            try:
                self.limit_window.remove(quota.admitted_at)
            except ValueError:
                pass  # already out of the window
            self.daily_used = max(0, self.daily_used - 1)
            if quota.daily is not None:
                quota.daily_remaining = max(0, quota.daily - self.daily_used)
            if quota.hub is not None:
                quota.hub.uncount(quota.admitted_at)
                quota.hub.fill_headers(quota, time.monotonic())

    # ---- the global knobs, known events ------------------------------------

    def configure(self, knobs):
        """Install a new global knob set (POST /__mock/config)."""
        with self.lock:
            self.global_knobs = knobs
            if not knobs.get("oauth_rotate"):
                self.current_refresh = None  # the configured refresh token is accepted again
            storm_ms = knobs.get("storm_ms", 0)
            self.storm_until = time.monotonic() + storm_ms / 1000.0 if storm_ms else None
            if "seed" in knobs:
                self.rng.seed(knobs["seed"])

    def event_known(self, event_id, account_id, hub_id=None):
        """known_events: whether an events/upsert into this hub created this event (True
        without the knob)."""
        with self.lock:
            if not self.global_knobs.get("known_events"):
                return True
            since = self.known_events.get((hub_id, event_id, account_id))
            delay = self.global_knobs.get("known_events_delay_ms", 0) / 1000.0
            return since is not None and time.monotonic() >= since + delay

    def note_events(self, inputs, hub_id=None):
        with self.lock:
            for item in inputs:
                if isinstance(item, dict):
                    key = (hub_id, str(item.get("externalEventId")), str(item.get("externalAccountId")))
                    self.known_events.setdefault(key, time.monotonic())

    def served_date_versions(self):
        with self.lock:
            return self.global_knobs.get("api_versions", DEFAULT_DATE_VERSIONS)

    def missing_scopes(self, needed):
        """token_scopes: the scopes of needed the token was not granted ([] without the knob)."""
        with self.lock:
            granted = self.global_knobs.get("token_scopes")
        if granted is None:
            return []
        return [scope for scope in needed if scope not in granted]

    def global_bad_vids(self):
        with self.lock:
            return list(self.global_knobs.get("bad_vids", ()))

    def global_bad_emails(self):
        with self.lock:
            return list(self.global_knobs.get("bad_emails", ()))

    # ---- stats ------------------------------------------------------------

    def reset_stats(self):
        self.stats_since = iso_now()
        self.stats_counts = collections.Counter()
        self.stats_by_status = collections.Counter()
        self.stats_by_fault = collections.Counter()
        self.stats_by_limit = collections.Counter()
        self.stats_by_rejection = collections.Counter()
        self.stats_oauth = collections.Counter()
        self.stats_validated = []  # admission times (monotonic) of validated requests
        self.stats_accepted = []  # admission times of the ones answered 2xx

    def _count(self, entry, quota):
        status = entry.get("status")
        self.stats_counts["requests"] += 1
        self.stats_by_status["none" if status is None else str(status)] += 1
        if entry.get("fault_kind"):
            self.stats_by_fault[entry["fault_kind"]] += 1
        if entry.get("limited"):
            self.stats_by_limit[entry["limited"]] += 1
        if entry.get("rejected"):
            self.stats_by_rejection[entry["rejected"]] += 1
        if status == 429:
            self.stats_counts["responses_429"] += 1
        if status is not None and 200 <= status < 300:
            self.stats_counts["accepted"] += 1
            if quota is not None and quota.admitted_at is not None:
                self.stats_accepted.append(quota.admitted_at)

    def stats(self, window_ms=None):
        """GET /__mock/stats: counts since the last reset."""
        with self.lock:
            if window_ms is None:
                window_ms = self.global_knobs.get("rate_window_ms", RATE_INTERVAL_MS)
            now = time.monotonic()
            self._prune(now)
            storm_left = max(0.0, self.storm_until - now) if self.storm_until is not None else 0.0
            return {
                "ok": True,
                "since": self.stats_since,
                "requests": self.stats_counts["requests"],
                "by_status": dict(self.stats_by_status),
                "by_fault_kind": dict(self.stats_by_fault),
                "by_limit": dict(self.stats_by_limit),
                "by_rejection": dict(self.stats_by_rejection),
                "responses_429": self.stats_counts["responses_429"],
                "accepted": self.stats_counts["accepted"],
                "validated": len(self.stats_validated),
                "window_ms": window_ms,
                "max_accepted_in_window": max_in_window(self.stats_accepted, window_ms / 1000.0),
                "max_validated_in_window": max_in_window(self.stats_validated, window_ms / 1000.0),
                "rate_limit": self.global_knobs.get("rate_limit"),
                "window_used": len(self.limit_window),
                "daily_limit": self.global_knobs.get("daily_limit"),
                "daily_used": self.daily_used,
                "storm_left_ms": int(math.ceil(storm_left * 1000)),
                "tls_handshake_failures": self.tls_handshake_failures,
                "token_requests": self.stats_oauth["token_requests"],
                "tokens_issued": self.stats_oauth["tokens_issued"],
                "token_failures": self.stats_oauth["token_failures"],
                "expired_401": self.stats_oauth["expired_401"],
                "oauth_authorized": self.stats_oauth["oauth_authorized"],
                "hubs": {str(hub_id): hub.stats(now, max_in_window) for hub_id, hub in sorted(self.hubs.items())},
            }

    # ---- per-event counts, the fault dice, the request log ---------------------

    def count_event(self, event_id):
        with self.lock:
            self.event_counts[event_id] += 1
            return self.event_counts[event_id]

    def roll(self):
        with self.lock:
            return self.rng.random()

    def roll_fault(self, rate, mix):
        """(hit, kind): kind is a fault_mix pick (None without a mix).
        Without a mix this draws exactly what roll() did."""
        with self.lock:
            hit = self.rng.random() < rate
            kind = self.rng.choice(mix) if hit and mix else None
            return hit, kind

    def record(self, entry, quota=None, body_json=None):
        """Log one answered (or dropped) request.  body_json: the text of
        entry["body"] if it is that value's compact JSON (parse_json_body),
        which the --log line then holds as it is, and the kept entry instead
        of the value (snapshot gives the value again)."""
        with self.lock:
            self.seq += 1
            if self.seq % FREEZE_EVERY == 0:
                freeze_survivors()
            entry["seq"] = self.seq
            if not self.lean:
                if body_json is not None and "body" in entry:
                    kept = dict(entry)
                    kept["body"] = KeptBody(body_json)
                    self.entries.append(kept)
                else:
                    self.entries.append(entry)
            self._count(entry, quota)
            hub = self.hubs.get(entry.get("hub_id")) if entry.get("hub_id") is not None else None
            if hub is not None:
                admitted = quota.admitted_at if quota is not None else None
                hub.note(entry, admitted if admitted is not None else time.monotonic())
            if self.log_file is not None:
                line = log_line(entry, body_json)
                try:
                    self.log_file.write(line.encode("utf-8"))
                except OSError as exc:
                    log_err("cannot write log: %s" % exc)

    def reset(self):
        with self.lock:
            self.entries = []
            self.event_counts.clear()
            self.global_knobs = {}
            self.rate_window.clear()
            self.limit_window.clear()
            self.daily_used = 0
            self.storm_until = None
            self.oauth_log = []
            self.known_events = {}
            self.participations.clear_locked()
            for hub in self.hubs.values():
                hub.reset_counters()
            self.reset_stats()

    # ---- OAuth ---------------------------------------------------------------

    def oauth_check_token(self, token):
        """None (not an issued token), "ok" or "expired"."""
        with self.lock:
            expiry = self.issued.get(token)
            if expiry is None:
                return None
            if time.monotonic() < expiry:
                self.stats_oauth["oauth_authorized"] += 1
                return "ok"
            self.stats_oauth["expired_401"] += 1
            return "expired"

    def oauth_expire_all(self):
        with self.lock:
            now = time.monotonic()
            for token in self.issued:
                self.issued[token] = min(self.issued[token], now)
            if self.last_expiry is not None:
                self.last_expiry = min(self.last_expiry, now)
            for access in self.hub_access.values():
                access.expiry = min(access.expiry, now)
            for hub in self.hubs.values():
                if hub.last_expiry is not None:
                    hub.last_expiry = min(hub.last_expiry, now)
            return len(self.issued) + len(self.hub_access)

    def _client_info(self, client_id, client_secret):
        """What the token endpoint notes of the client credentials (caller holds the lock)."""
        knobs = self.global_knobs
        want_id, want_secret = knobs.get("oauth_client_id"), knobs.get("oauth_client_secret")
        return {
            "client_id": client_id,
            "client_id_ok": want_id is not None and client_id == want_id,
            "client_secret_ok": want_secret is not None and client_secret is not None
            and hmac.compare_digest(client_secret.encode(), want_secret.encode()),
        }

    def _forced_failure(self):
        """oauth_fail's answer, or None (caller holds the lock)."""
        fail = self.global_knobs.get("oauth_fail")
        if fail == "500":
            return 500, {"status": "error", "message": "internal error"}
        if fail == "invalid_grant":
            return 400, {"error": "invalid_grant", "error_description": "refresh token is invalid"}
        if fail == "bad_refresh_token":
            return 400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
        return None

    @staticmethod
    def _client_failure(info):
        if not info["client_id_ok"]:
            return 400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}
        if not info["client_secret_ok"]:
            return 400, {"status": "BAD_CLIENT_SECRET", "message": "missing or invalid client secret"}
        return None

    def oauth_grant(self, client_id, client_secret, refresh_token):
        """The refresh grant's decision: (status, answer object, record fields).
        A refresh token issued for a hub is the hub's (oauth_hub_refresh);
        any other one is checked against oauth_refresh_token."""
        with self.lock:
            knobs = self.global_knobs
            self.stats_oauth["token_requests"] += 1
            hub_refresh = self.hub_refresh.get(refresh_token) if refresh_token is not None else None
            if hub_refresh is not None:
                return self._oauth_hub_refresh(client_id, client_secret, refresh_token, hub_refresh)
            want_refresh = self.current_refresh or knobs.get("oauth_refresh_token")
            info = self._client_info(client_id, client_secret)
            info["refresh_token_ok"] = (want_refresh is not None and refresh_token is not None
                                        and hmac.compare_digest(refresh_token.encode(), want_refresh.encode()))
            problem = self._forced_failure()
            if problem is None and info["client_id_ok"] and info["client_secret_ok"] and not info["refresh_token_ok"]:
                problem = (400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
            if problem is None:
                problem = self._client_failure(info)
            if problem is not None:
                self.stats_oauth["token_failures"] += 1
                return problem[0], problem[1], info
            expires_in = knobs.get("oauth_expires_in", 1800)
            token = "oat-mock-" + os.urandom(24).hex()
            now = time.monotonic()
            # how early the client refreshed: the lifetime the last token still had
            if self.last_expiry is not None:
                info["previous_token_left_ms"] = int(round((self.last_expiry - now) * 1000))
            self.issued[token] = self.last_expiry = now + expires_in
            new_refresh = refresh_token
            if knobs.get("oauth_rotate"):
                new_refresh = "rt-mock-" + os.urandom(16).hex()
                self.current_refresh = new_refresh
                info["rotated"] = True
            self.stats_oauth["tokens_issued"] += 1
            return 200, {"token_type": "bearer", "refresh_token": new_refresh, "access_token": token,
                         "expires_in": expires_in, "token_use": "access_token"}, info

    def _oauth_hub_refresh(self, client_id, client_secret, refresh_token, record):
        """The refresh grant with a refresh token issued for a hub (caller holds the lock)."""
        hub = self.hubs.get(record.hub_id)
        info = self._client_info(client_id, client_secret)
        info.update({"hub_id": record.hub_id, "refresh_label": record.label,
                     "refresh_token_ok": record.invalid is None and hub is not None})
        problem = self._forced_failure() or self._client_failure(info)
        if problem is None and not info["refresh_token_ok"]:
            why = {"uninstalled": "the app was uninstalled from hub %d" % record.hub_id,
                   "rotated": "the refresh token was replaced by a newer one",
                   "revoked": "the refresh token was revoked"}.get(record.invalid, "unknown hub")
            info["refresh_token_invalid"] = record.invalid or "no_hub"
            problem = (400, {"error": "invalid_grant", "error_description": "refresh token is invalid: " + why})
        if problem is not None:
            self.stats_oauth["token_failures"] += 1
            return problem[0], problem[1], info
        new_refresh = refresh_token
        if self.global_knobs.get("oauth_rotate"):
            record.invalid = "rotated"
            new_refresh = self._issue_refresh(hub)
            info["rotated"] = True
        return 200, self._issue_access(hub, new_refresh, info), info

    def _issue_refresh(self, hub):
        hub.refresh_seq += 1
        token = new_secret("rt-mock-", 16)
        self.hub_refresh[token] = RefreshToken(hub.hub_id, hub.refresh_seq)
        return token

    def _issue_access(self, hub, refresh_token, info):
        """A new access token for the hub: the token endpoint's 200 answer (caller holds the lock)."""
        expires_in = self.global_knobs.get("oauth_expires_in", 1800)
        now = time.monotonic()
        if hub.last_expiry is not None:
            info["previous_token_left_ms"] = int(round((hub.last_expiry - now) * 1000))
        hub.access_seq += 1
        token = new_secret("oat-mock-", 24)
        self.hub_access[token] = AccessToken(hub.hub_id, hub.access_seq, now + expires_in)
        hub.last_expiry = now + expires_in
        hub.counts["tokens_issued"] += 1
        self.stats_oauth["tokens_issued"] += 1
        info["access_label"] = "oauth:%d" % hub.access_seq
        return {"token_type": "bearer", "refresh_token": refresh_token, "access_token": token,
                "expires_in": expires_in, "hub_id": hub.hub_id, "token_use": "access_token"}

    def oauth_code_grant(self, client_id, client_secret, code, redirect_uri):
        """The authorization-code grant's decision: (status, answer object, record fields).
        Success installs the app in the code's hub."""
        with self.lock:
            self.stats_oauth["token_requests"] += 1
            minted = self.oauth_codes.get(code) if code is not None else None
            hub = self.hubs.get(minted["hub_id"]) if minted is not None else None
            info = self._client_info(client_id, client_secret)
            info.update({"hub_id": minted["hub_id"] if minted is not None else None,
                         "code_ok": minted is not None and not minted["used"] and hub is not None,
                         "redirect_uri_ok": minted is not None and redirect_uri == minted["redirect_uri"]})
            problem = self._forced_failure() or self._client_failure(info)
            if problem is None:
                why = None
                if minted is None:
                    why = "unknown authorization code" if code else "missing authorization code"
                elif minted["used"]:
                    why = "the authorization code was already used"
                elif hub is None:
                    why = "the authorization code's hub no longer exists"
                elif not info["redirect_uri_ok"]:
                    why = "redirect_uri does not match the authorization request"
                if why is not None:
                    problem = (400, {"error": "invalid_grant", "error_description": why})
            if problem is not None:
                self.stats_oauth["token_failures"] += 1
                return problem[0], problem[1], info
            minted["used"] = True
            hub.installed = True
            return 200, self._issue_access(hub, self._issue_refresh(hub), info), info

    # ---- hubs (hubs.py; the control endpoints in control.py) --------------

    def hub_credential(self, token):
        """(hub_id, token_label, "ok"|"revoked"|"uninstalled"|"expired") of a
        hub's credential, None for any other token."""
        with self.lock:
            static = self.hub_tokens.get(token)
            if static is not None:
                hub_id, index = static
                revoked = index in self.hubs[hub_id].revoked
                return hub_id, "static:%d" % index, "revoked" if revoked else "ok"
            access = self.hub_access.get(token)
            if access is None:
                return None
            if access.revoked is not None:
                return access.hub_id, access.label, access.revoked
            if time.monotonic() < access.expiry:
                self.stats_oauth["oauth_authorized"] += 1
                return access.hub_id, access.label, "ok"
            self.stats_oauth["expired_401"] += 1
            return access.hub_id, access.label, "expired"

    def hubs_define(self, definitions):
        """Add or replace hubs (hubs.parse_hub's definitions); raises HubError
        (and changes nothing) if a static token would belong to two hubs."""
        with self.lock:
            ids = [d["hub_id"] for d in definitions]
            if len(set(ids)) != len(ids):
                raise HubError("a hub_id is given twice")
            tokens = {t: owner for t, owner in self.hub_tokens.items() if owner[0] not in ids}
            for d in definitions:
                for index, token in enumerate(d["tokens"]):
                    owner = tokens.get(token)
                    if owner is not None:
                        raise HubError("hub %d: tokens[%d] is already a token of hub %d" % (d["hub_id"], index,
                                                                                        owner[0]))
                    tokens[token] = (d["hub_id"], index)
            for d in definitions:
                hub = self.hubs.get(d["hub_id"])
                if hub is None:
                    self.hubs[d["hub_id"]] = Hub(d)
                else:
                    hub.define(d)
            self.hub_tokens = tokens
            return self._hubs_view(ids)

    def _hubs_view(self, ids=None):
        now = time.monotonic()
        return [self.hubs[i].view(now, max_in_window) for i in sorted(self.hubs) if ids is None or i in ids]

    def hubs_view(self):
        with self.lock:
            return self._hubs_view()

    def hubs_clear(self):
        """Remove every hub, its tokens (static and OAuth) and the authorization codes."""
        with self.lock:
            removed = len(self.hubs)
            self.hubs, self.hub_tokens, self.hub_access, self.hub_refresh, self.oauth_codes = {}, {}, {}, {}, {}
            return removed

    def _hub(self, hub_id):
        hub = self.hubs.get(hub_id)
        if hub is None:
            raise HubError("no hub %r" % (hub_id,))
        return hub

    def hub_revoke_token(self, token):
        """Revoke one token of a hub (static, OAuth access or refresh): (hub_id, label)."""
        with self.lock:
            static = self.hub_tokens.get(token)
            if static is not None:
                self.hubs[static[0]].revoked.add(static[1])
                return static[0], "static:%d" % static[1]
            for table, field in ((self.hub_access, "revoked"), (self.hub_refresh, "invalid")):
                record = table.get(token)
                if record is not None:
                    if getattr(record, field) is None:
                        setattr(record, field, "revoked")
                    return record.hub_id, record.label
            raise HubError("not a token of any hub")

    def hub_revoke_oauth(self, hub_id):
        """Revoke every OAuth access token issued for the hub; their labels."""
        with self.lock:
            self._hub(hub_id)
            revoked = [a for a in self.hub_access.values() if a.hub_id == hub_id and a.revoked is None]
            for access in revoked:
                access.revoked = "revoked"
            return sorted((a.label for a in revoked), key=lambda label: int(label.split(":")[1]))

    def hub_uninstall(self, hub_id):
        """The app uninstalled from the hub: its refresh tokens answer
        invalid_grant, its access tokens 401.  (refresh, access) counts."""
        with self.lock:
            self._hub(hub_id).installed = False
            refresh = [r for r in self.hub_refresh.values() if r.hub_id == hub_id and r.invalid is None]
            for record in refresh:
                record.invalid = "uninstalled"
            access = [a for a in self.hub_access.values() if a.hub_id == hub_id and a.revoked is None]
            for record in access:
                record.revoked = "uninstalled"
            return len(refresh), len(access)

    def oauth_mint_code(self, code, hub_id, redirect_uri):
        with self.lock:
            self._hub(hub_id)
            if code in self.oauth_codes:
                raise HubError("that code was minted before: codes are single use")
            self.oauth_codes[code] = {"hub_id": hub_id, "redirect_uri": redirect_uri, "used": False}

    def oauth_issued(self, hub_id=None):
        """The OAuth tokens issued for a hub (every hub: None), for tests."""
        with self.lock:
            if hub_id is not None:
                self._hub(hub_id)
            now = time.monotonic()
            refresh = [{"hub_id": r.hub_id, "label": r.label, "token": t, "invalid": r.invalid}
                       for t, r in self.hub_refresh.items() if hub_id is None or r.hub_id == hub_id]
            access = [{"hub_id": a.hub_id, "label": a.label, "token": t, "revoked": a.revoked,
                       "expires_in_ms": max(0, int(round((a.expiry - now) * 1000)))}
                      for t, a in self.hub_access.items() if hub_id is None or a.hub_id == hub_id]
            return refresh, access

    def oauth_refused(self):
        """Count a token request refused before the grant's decision."""
        with self.lock:
            self.stats_oauth["token_requests"] += 1
            self.stats_oauth["token_failures"] += 1

    def oauth_record(self, entry):
        with self.lock:
            entry["seq"] = len(self.oauth_log) + 1
            self.oauth_log.append(entry)

    def oauth_echo(self):
        with self.lock:
            return self.global_knobs.get("oauth_echo")

    def oauth_delay_s(self):
        with self.lock:
            return self.global_knobs.get("oauth_delay_ms", 0) / 1000.0

    def snapshot(self):
        """GET /__mock/requests: the entries (as JSON)."""
        with self.lock:
            entries = list(self.entries)  # (an entry does not change once recorded)
        entries = [dict(e, body=e["body"].value()) if type(e.get("body")) is KeptBody else e for e in entries]
        return json.dumps(entries, default=str).encode("utf-8")
