"""The /marketing/ API.

Every request is checked against the OpenAPI spec of its version (route,
query and path parameters, body, the headers our client must send, the
token and, with token_scopes, its scopes), logged, and answered: a violation
with HubSpot's error (400, 401, 403, 404), a valid request as the limiter and
its knobs say (faults.py).  A subscriber-state write answered 2xx is recorded
as the participations HubSpot holds, which the participation reads answer
(participations.py).  A request made with a hub's credential is that hub's
(hubs.py): limited, counted and answered with the hub's headers."""

import hmac
import time
import urllib.parse

from . import faults, participations
from .common import (AUTH_MESSAGE, DAILY_MAX, EXPIRED_MESSAGE, POLICY_MESSAGES, SCOPES_MESSAGE, BodyError,
                     log_err, new_correlation_id)
from .knobs import knob_pairs_from_event_id, parse_knobs
from .spec import JSONProblem, parse_json_body

USER_AGENT_PREFIX = "hubspot_events/"
HANG_MAX_S = 120.0
# FACTS.md: the documented values are lowercase register/attend/cancel;
# the read APIs' REGISTERED/ATTENDED/... must never be sent
SUBSCRIBER_STATES = ("register", "attend", "cancel")


def serve(handler, raw_path, raw_query):
    """Check and answer one request under /marketing/."""
    MarketingRequest(handler, raw_path, raw_query).serve()


def new_entry(method, raw_path, raw_query, received):
    """A request log entry, filled in as the request is checked and answered."""
    return {
        "seq": None, "time": received, "method": method, "raw_path": raw_path,
        "raw_query": raw_query, "path": {}, "operation": None, "query": {}, "headers": {},
        "body": None, "spec_errors": [], "status": None, "correlation_id": None,
        "knobs": {}, "knob_source": None, "fault_kind": None, "limited": None, "rejected": None,
        "api_version": None, "spec": None, "hub_id": None, "token_label": None,
    }


HUB_AUTH = {"ok": (None, "Bearer <token>"), "revoked": ("the token was revoked", "Bearer <revoked>"),
            "uninstalled": ("the app was uninstalled from the hub", "Bearer <revoked>"),
            "expired": ("expired", "Bearer <oauth-expired>")}


def check_auth(headers, state):
    """Returns (problem or None, masked header value or None, credential):
    credential is (hub_id, token_label) for a hub's token (hubs.py), else None."""
    values = headers.get_all("Authorization") or []
    if not values:
        return "missing", None, None
    if len(values) > 1:
        return "sent %d times" % len(values), "<duplicate>", None
    value = values[0]
    if not value.startswith("Bearer "):
        return "must be 'Bearer <token>'", "<malformed>", None
    token = value[len("Bearer "):]
    if not token or token != token.strip():
        return "empty or padded token", "Bearer <wrong>", None
    hub = state.hub_credential(token)
    if hub is not None:
        hub_id, label, verdict = hub
        problem, masked = HUB_AUTH[verdict]
        if verdict == "ok" and label.startswith("oauth:"):
            masked = "Bearer <oauth>"
        return problem, masked, (hub_id, label)
    try:
        expected = state.expected_token()
    except OSError as exc:
        log_err("cannot read token file: %s" % exc)
        return "token file unreadable", "Bearer <wrong>", None
    if expected is not None and expected and hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        return None, "Bearer <token>", None
    issued = state.oauth_check_token(token)
    if issued == "ok":
        return None, "Bearer <oauth>", None
    if issued == "expired":
        return "expired", "Bearer <oauth-expired>", None
    if expected is None:
        return None, "Bearer <token>", None
    return "token does not match", "Bearer <wrong>", None


def check_headers(headers, route, body, problems):
    """Header checks other than Authorization; appends (kind, where, message)."""
    ctypes = headers.get_all("Content-Type") or []
    if route["body"] is not None or body:
        if len(ctypes) != 1:
            problems.append(("header", "Content-Type",
                             "missing" if not ctypes else "sent %d times" % len(ctypes)))
        else:
            fields = [f.strip() for f in ctypes[0].split(";")]
            if fields[0].lower() != "application/json":
                problems.append(("header", "Content-Type", "must be application/json, got %r" % ctypes[0]))
            for param in fields[1:]:
                name, _, value = param.partition("=")
                if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                    problems.append(("header", "Content-Type", "charset must be utf-8, got %r" % value))
    accept = headers.get_all("Accept") or []
    acceptable = False
    for item in ",".join(accept).split(","):
        fields = [f.strip() for f in item.split(";")]
        if fields[0].lower() != "application/json":
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            acceptable = True
    if not acceptable:
        problems.append(("header", "Accept", "must include application/json, got %r" % ", ".join(accept)))
    agents = headers.get_all("User-Agent") or []
    if len(agents) != 1 or not agents[0].startswith(USER_AGENT_PREFIX):
        problems.append(("header", "User-Agent", "must start with %r, got %r" % (USER_AGENT_PREFIX, ", ".join(agents))))


class MarketingRequest:
    """One /marketing/ request: serve() checks it, answer_valid() answers a valid one."""

    def __init__(self, handler, raw_path, raw_query):
        self.handler = handler
        self.state = handler.state
        self.raw_path = raw_path
        self.raw_query = raw_query
        received = time.time()
        self.remaining = self.state.rate_tick()
        self.corr = new_correlation_id()
        self.entry = new_entry(handler.command, raw_path, raw_query, received)
        self.problems = []  # (kind, where, message)
        self.body = b""
        self.parsed = self.parse_problem = None
        self.body_json = None  # the body's text if it is the parsed value's compact JSON
        self.query = {}
        self.spec = self.route = None
        self.params = {}

    # ---- checks ------------------------------------------------------------

    def serve(self):
        """Check the request: a violation is answered 401, 400 or 404 (logged
        with its spec_errors), a valid request goes on to answer_valid."""
        body_error = self.read_body()
        self.handler.hold_handling_lock()  # until the answer is sent (or a wait)
        auth_problem = self.record_headers()
        self.parse_body()
        self.parse_query()
        if body_error is not None:
            self.problems.append(("body", "(body)", body_error.message))
            return self.answer_error(body_error.status, "VALIDATION_ERROR",
                                     "Invalid request body: %s" % body_error.message, close=True)
        command = self.handler.command
        if not self.match_route():
            self.problems.append(("route", self.raw_path, "no operation for %s in the spec" % command))
            return self.answer_error(404, "OBJECT_NOT_FOUND",
                                     "Unable to route %s %s: no such resource" % (command, self.raw_path))
        self.check_params()
        check_headers(self.handler.headers, self.route, self.body, self.problems)
        self.check_body()
        problems = self.problems
        if auth_problem == "expired":
            problems.insert(0, ("header", "Authorization", "the OAuth token expired"))
            return self.answer_error(401, "EXPIRED_AUTHENTICATION", EXPIRED_MESSAGE)
        if auth_problem is not None:
            problems.insert(0, ("header", "Authorization", auth_problem))
            return self.answer_error(401, "INVALID_AUTHENTICATION", AUTH_MESSAGE)
        missing = self.state.missing_scopes(self.route["scopes"])
        if missing:
            problems.insert(0, ("scope", ", ".join(missing), "not granted to the token (token_scopes)"))
            return self.answer_error(403, "MISSING_SCOPES", SCOPES_MESSAGE,
                                     more=faults.missing_scopes_fields({}, missing))
        if problems:
            first = "%s: %s" % (problems[0][1], problems[0][2])
            more = " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""
            return self.answer_error(400, "VALIDATION_ERROR", "Invalid input JSON: %s%s" % (first, more),
                                     errors=[{"message": m, "in": w} for _, w, m in problems])
        self.answer_valid(self.state.admit(self.remaining, self.entry["hub_id"]))

    def read_body(self):
        """Read the body into self.body; returns the BodyError, if any."""
        try:
            self.body = self.handler.read_body()
        except BodyError as exc:
            return exc
        return None

    def record_headers(self):
        """Log the headers, the Authorization value masked; returns check_auth's problem."""
        auth_problem, auth_masked, hub = check_auth(self.handler.headers, self.state)
        if hub is not None:
            self.entry["hub_id"], self.entry["token_label"] = hub
        headers = {}
        for name, value in self.handler.headers.items():
            name = name.lower()
            if name == "authorization":
                continue
            headers[name] = value if name not in headers else headers[name] + ", " + value
        if auth_masked is not None:
            headers["authorization"] = auth_masked
        self.entry["headers"] = headers
        return auth_problem

    def parse_body(self):
        """Parse the JSON body (strictly); a problem is noted for check_body."""
        if self.body:
            try:
                self.parsed, self.body_json = parse_json_body(self.body)
                self.entry["body"] = self.parsed
            except JSONProblem as exc:
                self.parse_problem = str(exc)
                self.entry["body_raw"] = self.body.decode("utf-8", "replace")

    def parse_query(self):
        """Parse the query string into self.query ({name: [values]}) and the log entry."""
        try:
            query = urllib.parse.parse_qs(self.raw_query, keep_blank_values=True, errors="strict")
            self.entry["query"] = {k: v[0] for k, v in query.items()}
        except (UnicodeDecodeError, ValueError) as exc:
            query = {}
            self.problems.append(("query", "(query string)", "not valid percent-encoded UTF-8: %s" % exc))
        self.query = query

    def match_route(self):
        """Find the spec and route of the path, decode its parameters; False if none."""
        state, entry = self.state, self.entry
        self.spec, entry["spec"], entry["api_version"], self.route, raw_params = \
            state.specs.match(self.handler.command, self.raw_path, state.served_date_versions())
        if self.route is None:
            return False
        entry["operation"] = self.route["operation_id"]
        params = self.params
        for name, raw in raw_params.items():
            try:
                params[name] = urllib.parse.unquote(raw, errors="strict")
            except UnicodeDecodeError:
                params[name] = urllib.parse.unquote(raw, errors="replace")
                self.problems.append(("path", name, "not valid percent-encoded UTF-8: %r" % raw))
        entry["path"] = params
        return True

    def check_params(self):
        """The route's query and path parameters against their schemas."""
        spec, query, params, problems = self.spec, self.query, self.params, self.problems
        for p in self.route["params"]:
            name, where = p.get("name"), p.get("in")
            schema = p.get("schema") or {}
            if where == "query":
                if name not in query:
                    if p.get("required"):
                        problems.append(("query", name, "required query parameter missing"))
                    continue
                value = query[name][0]
                if p.get("required") and value == "":
                    problems.append(("query", name, "required query parameter is empty"))
                    continue
                if len(query[name]) > 1:
                    problems.append(("query", name, "given %d times" % len(query[name])))
                ptype = spec.resolve(schema).get("type") if isinstance(schema, dict) else None
                if ptype == "integer":
                    try:
                        value = int(value)
                    except ValueError:
                        problems.append(("query", name, "expected integer, got %r" % value))
                        continue
                if ptype in ("string", "integer"):
                    sub = []
                    spec.validate(schema, value, name, sub)
                    problems.extend(("query", w, m) for w, m in sub)
            elif where == "path" and name in params:
                sub = []
                spec.validate(schema, params[name], name, sub)
                problems.extend(("path", w, m) for w, m in sub)
        if "subscriberState" in params and params["subscriberState"] not in SUBSCRIBER_STATES:
            problems.append(("path", "subscriberState",
                             "must be one of register, attend, cancel, got %r" % params["subscriberState"]))
        if participations.route_kind(self.route) == "breakdown":
            participations.check_read_query(query, problems)

    def check_body(self):
        """The JSON body against the route's schema (not with --lean)."""
        rb, problems = self.route["body"], self.problems
        if rb is not None:
            if not self.body:
                if rb.get("required"):
                    problems.append(("body", "(body)", "request body is required"))
            elif self.parse_problem:
                problems.append(("body", "(body)", self.parse_problem))
            else:
                content = rb.get("content") or {}
                media = content.get("application/json") or next(iter(content.values()), None) or {}
                if media.get("schema") is not None and not self.state.lean:
                    sub = []
                    self.spec.validate(media["schema"], self.parsed, "", sub)
                    problems.extend(("body", w or "(body)", m) for w, m in sub)
        elif self.parse_problem:
            problems.append(("body", "(body)", self.parse_problem))

    def answer_error(self, status, category, message, close=False, errors=None, more=None):
        """HubSpot's error for a request that failed the checks (not counted by the limiter)."""
        corr, entry = self.corr, self.entry
        payload = {"status": "error", "message": message, "correlationId": corr, "category": category}
        if errors:
            payload["errors"] = errors
        if more:
            payload.update(more)
        entry["status"], entry["correlation_id"] = status, corr
        entry["spec_errors"] = ["%s %s: %s" % p for p in self.problems]
        self.state.record(entry, body_json=self.body_json)
        self.handler.send_json(status, payload, corr=corr, close=close,
                               ratelimit=self.state.quota_view(self.remaining, entry["hub_id"]))

    # ---- answers to valid requests ---------------------------------------------

    def answer_valid(self, quota):
        """Decisions in order: storm, daily limit, rate limit (quota.verdict),
        bad input, unknown event (known_events), then the knobs (faults.py)."""
        event_id = self.params.get("externalEventId")
        knobs = self.resolve_knobs(event_id)
        parsed = self.parsed
        inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
        inputs = inputs if isinstance(inputs, list) else []

        if quota.verdict is not None:  # storm, daily or rate limit, or the hub's
            return self.answer_limited(quota)
        rejection = faults.find_bad_input(self.state, self.handler.headers, knobs, event_id, inputs,
                                          attendance="/attendance/" in self.route["template"])
        if rejection is not None:
            return self.answer_rejected(quota, *rejection)
        if not self.check_event_known(event_id, inputs, quota):
            return
        plan = faults.plan_answer(self.state, knobs, event_id, self.entry)
        if plan.close or plan.hang:
            return self.drop(plan, quota)
        self.answer(plan, knobs, inputs, quota)

    def resolve_knobs(self, event_id):
        """The request's knobs (a mock: event id) or else the global ones; logged."""
        pairs = knob_pairs_from_event_id(event_id) if event_id is not None else None
        if pairs is not None:
            knobs, knob_problems = parse_knobs(pairs, per_request=True)
            source = "request"
            if knob_problems:
                log_err("ignored knob(s) in %r: %s" % (event_id[:200], "; ".join(knob_problems)))
                knobs["_invalid"] = knob_problems
        else:
            with self.state.lock:
                knobs = dict(self.state.global_knobs)
            source = "global" if knobs else None
        # a copy: plan_answer adds fault_hit and fail_after_phase to the logged one
        self.entry["knobs"], self.entry["knob_source"] = dict(knobs), source
        return knobs

    def answer_limited(self, quota):
        """429 from the limiter (rate_limit, daily_limit, storm_ms, or the hub's limits)."""
        corr, entry = self.corr, self.entry
        policy = "DAILY" if quota.verdict in ("daily", "hub_daily") else "TEN_SECONDLY_ROLLING"
        payload = {"status": "error", "message": POLICY_MESSAGES[policy], "errorType": "RATE_LIMIT",
                   "correlationId": corr, "policyName": policy}
        extra = []
        if quota.retry_after is not None:
            extra.append(("Retry-After", str(quota.retry_after)))
        entry["limited"] = quota.verdict
        entry["status"], entry["correlation_id"] = 429, corr
        self.state.record(entry, quota, self.body_json)
        self.handler.send_json(429, payload, corr=corr, extra=extra, ratelimit=quota)

    def answer_rejected(self, quota, kind, message, context, errors):
        """400 VALIDATION_ERROR for bad_event / bad_vids: the request's own fault."""
        corr, entry = self.corr, self.entry
        payload = {"status": "error", "message": message, "correlationId": corr,
                   "category": "VALIDATION_ERROR", "context": context, "errors": errors}
        entry["rejected"] = kind
        entry["status"], entry["correlation_id"] = 400, corr
        self.state.record(entry, quota, self.body_json)
        self.handler.send_json(400, payload, corr=corr, ratelimit=quota)

    def check_event_known(self, event_id, inputs, quota):
        """known_events: an upsert creates its events in the hub it reached; a
        subscriber state or a participation read of an event not (yet) known in
        its hub is answered 404 here.
        False if answered."""
        state, entry, corr = self.state, self.entry, self.corr
        template = self.route["template"]
        reads = participations.route_kind(self.route) in participations.READ_KINDS
        if template.endswith("/events/upsert"):
            state.note_events(inputs, entry.get("hub_id"))
            state.participations.note_event_names(inputs)
        elif event_id is not None and ("{subscriberState}" in template or "/attendance/" in template or reads):
            account = (entry.get("query") or {}).get("externalAccountId")
            account = account[0] if isinstance(account, list) else account
            if reads:
                account = self.params.get("externalAccountId")
            if not state.event_known(str(event_id), str(account), entry.get("hub_id")):
                entry["rejected"] = "unknown_event"
                entry["status"], entry["correlation_id"] = 404, corr
                state.record(entry, quota, self.body_json)
                self.handler.send_json(404, {"status": "error", "correlationId": corr, "category": "OBJECT_NOT_FOUND",
                                             "message": "Marketing event %s does not exist" % event_id},
                                       corr=corr, ratelimit=quota)
                return False
        return True

    def drop(self, plan, quota):
        """close / hang: reset the connection or never answer, after delay_ms;
        status and correlation_id stay null in the log."""
        handler = self.handler
        self.state.record(self.entry, quota, self.body_json)
        if plan.delay_s and not handler.wait(plan.delay_s):
            handler.close_connection = True
            handler.answered = True
            return
        if plan.close:
            return handler.reset_connection()
        handler.answered = True
        handler.close_connection = True
        handler.wait(HANG_MAX_S)

    def answer(self, plan, knobs, inputs, quota):
        """Send the planned answer (after delay_ms), with the header knobs applied."""
        state, handler, entry = self.state, self.handler, self.entry
        corr = self.corr
        correlation = knobs.get("correlation")
        if correlation == "bad":
            corr = "not-a-uuid"
        header_corr = None if correlation == "none" else corr

        kind = participations.route_kind(self.route)
        if kind in participations.WRITE_KINDS and (plan.status is None or 200 <= plan.status < 300):
            # HubSpot holds what it answered 2xx (even if the client no longer waits)
            if kind in ("create", "email-create"):
                inputs_written = faults.attendance_errors(state, plan.answer_knobs, inputs)[0]
            else:
                inputs_written = inputs
            account = self.query.get("externalAccountId", [None])[0]
            state.participations.apply_write(kind, account, self.params.get("externalEventId"),
                                             self.params.get("subscriberState"), inputs_written,
                                             entry["api_version"])
        status, payload, ctype = faults.build_answer(state, self.route, self.params, plan.status, plan.body_kind,
                                                     plan.answer_knobs, corr, inputs, self.query)
        extra = []
        if plan.retry_after is not None:
            extra.append(("Retry-After", plan.retry_after))
        if "ratelimit_daily_remaining" in knobs:
            if quota.daily is None:
                quota.daily = DAILY_MAX
            quota.daily_remaining = knobs["ratelimit_daily_remaining"]
        if status == 429:
            state.release(quota)  # HubSpot does not count rate-limited calls
            quota.remaining = 0
        if "ratelimit_remaining" in knobs:
            quota.remaining = knobs["ratelimit_remaining"]

        entry["status"], entry["correlation_id"] = status, corr
        state.record(entry, quota, self.body_json)
        if plan.delay_s and not handler.wait(plan.delay_s):
            handler.answered = True
            handler.close_connection = True
            return
        handler.send_raw(status, payload, ctype, corr=header_corr, extra=extra, ratelimit=quota)
