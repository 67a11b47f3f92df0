"""The mock's shared state: the limiter and its quotas, the stats, the events
known to exist, the participations HubSpot holds (participations.py, under
the same lock), OAuth's tokens, and the request log."""

import collections
import hmac
import json
import math
import os
import random
import threading
import time

from .common import RATE_INTERVAL_MS, RATE_MAX, iso_now, log_err
from .participations import Participations
from .spec import DEFAULT_DATE_VERSIONS


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
        self.known_events = {}  # (externalEventId, externalAccountId) -> monotonic time of its first upsert
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
        with open(self.token_file, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip()

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

    def quota_view(self, legacy_remaining):
        """Headers for a request that is not admitted (it failed validation)."""
        with self.lock:
            return self._quota(legacy_remaining, time.monotonic())

    def admit(self, legacy_remaining):
        """The limiter's decision for a validated request; returns a Quota
        whose verdict is None (counted: answer it) or rate|daily|storm (429)."""
        with self.lock:
            now = time.monotonic()  # taken under the lock: the window stays sorted
            self.stats_validated.append(now)
            quota = self._quota(legacy_remaining, now)
            quota.admitted_at = now
            if self.storm_until is not None and now < self.storm_until:
                quota.verdict, quota.remaining = "storm", 0
                quota.retry_after = max(1, math.ceil(self.storm_until - now))
            elif quota.daily is not None and quota.daily_remaining <= 0:
                quota.verdict = "daily"
            elif "rate_limit" in self.global_knobs and quota.remaining <= 0:
                quota.verdict = "rate"
            else:
                self._prune(now)
                self.limit_window.append(now)
                self.daily_used += 1
                quota.counted = True
                if "rate_limit" in self.global_knobs:
                    quota.remaining = max(0, quota.max - len(self.limit_window))
                if quota.daily is not None:
                    quota.daily_remaining = max(0, quota.daily - self.daily_used)
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

    def event_known(self, event_id, account_id):
        """known_events: whether an events/upsert created this event (True without the knob)."""
        with self.lock:
            if not self.global_knobs.get("known_events"):
                return True
            since = self.known_events.get((event_id, account_id))
            delay = self.global_knobs.get("known_events_delay_ms", 0) / 1000.0
            return since is not None and time.monotonic() >= since + delay

    def note_events(self, inputs):
        with self.lock:
            for item in inputs:
                if isinstance(item, dict):
                    key = (str(item.get("externalEventId")), str(item.get("externalAccountId")))
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

    def record(self, entry, quota=None):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            if not self.lean:
                self.entries.append(entry)
            self._count(entry, quota)
            if self.log_file is not None:
                line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
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
            return len(self.issued)

    def oauth_grant(self, client_id, client_secret, refresh_token):
        """The token endpoint's decision: (status, answer object, record fields)."""
        with self.lock:
            knobs = self.global_knobs
            self.stats_oauth["token_requests"] += 1
            want_id = knobs.get("oauth_client_id")
            want_refresh = self.current_refresh or knobs.get("oauth_refresh_token")
            info = {
                "client_id": client_id,
                "client_id_ok": want_id is not None and client_id == want_id,
                "client_secret_ok": knobs.get("oauth_client_secret") is not None and client_secret is not None
                and hmac.compare_digest(client_secret.encode(), knobs["oauth_client_secret"].encode()),
                "refresh_token_ok": want_refresh is not None and refresh_token is not None
                and hmac.compare_digest(refresh_token.encode(), want_refresh.encode()),
            }
            fail = knobs.get("oauth_fail")
            problem = None
            if fail == "500":
                problem = (500, {"status": "error", "message": "internal error"})
            elif fail == "invalid_grant":
                problem = (400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
            elif fail == "bad_refresh_token" or (info["client_id_ok"] and info["client_secret_ok"]
                                                 and not info["refresh_token_ok"]):
                problem = (400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
            elif not info["client_id_ok"]:
                problem = (400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})
            elif not info["client_secret_ok"]:
                problem = (400, {"status": "BAD_CLIENT_SECRET", "message": "missing or invalid client secret"})
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
        with self.lock:
            return json.dumps(self.entries, default=str).encode("utf-8")
