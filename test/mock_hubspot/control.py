"""The control API under /__mock/ (loopback only).

GET /__mock/health, GET /__mock/requests, GET|POST /__mock/config,
POST /__mock/reset, GET /__mock/stats[?window_ms=W], POST /__mock/oauth/expire
and GET /__mock/oauth/requests: see the package's docstring.

The participations HubSpot holds (participations.py), for tests:

GET /__mock/participations[?externalAccountId=A][&externalEventId=E]
    200 {"ok": true, "participations": [row, ...], "emails": {"a@x.com": 1000, ...}}
    rows ordered by account, event, contact id; "emails" is the whole
    email -> vid mapping (lower-case emails).  A row:
      {"externalAccountId": "acct", "externalEventId": "ev", "contactId": 123,
       "email": "a@x.com" or null, "state": "REGISTERED|ATTENDED|CANCELLED|NO_SHOW|EMPTY",
       "occurredAt": <epoch ms>, "createdAt": "<ISO time>", "id": "<participation id>",
       "source": "upsert|email-upsert|create|email-create|set",
       "api_version": "v3|2026-09|..." or null (set), "writes": <writes to this row>}

POST /__mock/participations/forget
    {"externalAccountId": "acct", "externalEventId": "ev", "contacts": [123, "a@x.com", "456"]}
    or {"externalAccountId": ..., "externalEventId": ..., "count": N} (the
    first N by contact id) removes those participations (HubSpot losing
    them; the contacts and their vids stay).
    200 {"ok": true, "forgotten": [row, ...], "not_found": [identifiers that held none]}

POST /__mock/participations/set
    {"externalAccountId": "acct", "externalEventId": "ev", "contact": 123 or "a@x.com"
     (or "contacts": [...]), "state": "NO_SHOW", "occurredAt": <epoch ms, optional: now>}
    sets their states directly (HubSpot changing them behind the client's
    back), creating the rows that do not exist (an unknown email gets a vid
    from the mapping).  state: REGISTERED, ATTENDED, CANCELLED, NO_SHOW or EMPTY.
    200 {"ok": true, "participations": [row, ...]}

A contact identifier is an integer, a string of digits (a contact id) or a
string with an "@" (an email, any case).  Unknown fields, a missing one, or
a bad value answer 400 {"ok": false, "error": "..."}.  POST /__mock/reset
clears the table and the email mapping."""

import urllib.parse

from .common import BodyError, is_loopback_host, new_correlation_id
from .knobs import KNOB_PARSERS, KnobError, knob_pairs_from_json, parse_knobs
from .participations import CONTACT_ID_RE, SET_STATES, is_int
from .spec import JSONProblem, parse_json_strict


class ControlError(ValueError):
    """A control request the mock cannot use: answered 400."""


def contact_list(value, field):
    """The contact identifiers of a control request."""
    if not isinstance(value, list):
        raise ControlError("%s must be a list" % field)
    for ident in value:
        if not (is_int(ident) or isinstance(ident, str) and (CONTACT_ID_RE.match(ident) or "@" in ident)):
            raise ControlError("%s: %r is neither a contact id nor an email" % (field, ident))
    return value


def participation_request(body, allowed, required):
    """The JSON object of a participations/forget|set request, checked."""
    try:
        obj = parse_json_strict(body) if body.strip() else {}
    except JSONProblem as exc:
        raise ControlError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ControlError("the body must be a JSON object")
    unknown = sorted(set(obj) - set(allowed) - {"externalAccountId", "externalEventId"})
    if unknown:
        raise ControlError("unknown field(s) %s" % ", ".join(unknown))
    for field in ("externalAccountId", "externalEventId") + tuple(required):
        if field not in obj:
            raise ControlError("%s is required" % field)
    for field in ("externalAccountId", "externalEventId"):
        if not isinstance(obj[field], str):
            raise ControlError("%s must be a string" % field)
    return obj


def one_of(obj, *fields):
    """The one field of fields the request gives (exactly one must be there)."""
    given = [f for f in fields if f in obj]
    if len(given) != 1:
        raise ControlError("give exactly one of %s" % ", ".join(fields))
    return given[0]


def serve(handler, raw_path, raw_query=""):
    """Answer one control request (the handler routes /__mock and /__mock/... here)."""
    corr = new_correlation_id()
    try:
        body = handler.read_body()
    except BodyError as exc:
        return handler.send_json(exc.status, {"ok": False, "error": exc.message}, corr=corr, close=True)
    if not is_loopback_host(handler.client_address[0]):
        return handler.send_json(403, {"ok": False, "error": "control API is loopback only"}, corr=corr)
    route = (handler.command, raw_path.rstrip("/"))
    endpoint = ENDPOINTS.get(route)
    if endpoint is None:
        return handler.send_json(404, {"ok": False, "error": "unknown control endpoint %s %s" % route}, corr=corr)
    return endpoint(ControlRequest(handler, body, raw_query, corr))


class ControlRequest:
    """One control request that passed the loopback check; a method per endpoint."""

    def __init__(self, handler, body, raw_query, corr):
        self.handler = handler
        self.state = handler.state
        self.body = body
        self.raw_query = raw_query
        self.corr = corr

    def answer(self, status, obj):
        return self.handler.send_json(status, obj, corr=self.corr)

    def health(self):
        return self.answer(200, {"ok": True})

    def requests(self):
        return self.handler.send_raw(200, self.state.snapshot(), "application/json;charset=utf-8", corr=self.corr)

    def reset(self):
        self.state.reset()
        return self.answer(200, {"ok": True})

    def stats(self):
        query = urllib.parse.parse_qs(self.raw_query)
        window_ms = None
        if "window_ms" in query:
            try:
                window_ms = KNOB_PARSERS["rate_window_ms"](query["window_ms"][0])  # 1 ms .. 24 h
            except KnobError as exc:
                return self.answer(400, {"ok": False, "error": "window_ms: %s" % exc})
        return self.answer(200, self.state.stats(window_ms))

    def oauth_expire(self):
        return self.answer(200, {"ok": True, "expired": self.state.oauth_expire_all()})

    def oauth_requests(self):
        with self.state.lock:
            entries = list(self.state.oauth_log)
        return self.answer(200, entries)

    def get_config(self):
        with self.state.lock:
            current = dict(self.state.global_knobs)
        return self.answer(200, {"ok": True, "config": current})

    def participations(self):
        query = urllib.parse.parse_qs(self.raw_query)
        account = query.get("externalAccountId", [None])[0]
        event = query.get("externalEventId", [None])[0]
        return self.answer(200, dict({"ok": True}, **self.state.participations.table(account, event)))

    def participations_forget(self):
        try:
            obj = participation_request(self.body, ("contacts", "count"), ())
            if one_of(obj, "contacts", "count") == "count":
                if not is_int(obj["count"]) or obj["count"] < 0:
                    raise ControlError("count must be an integer >= 0")
                contacts, count = None, obj["count"]
            else:
                contacts, count = contact_list(obj["contacts"], "contacts"), None
        except ControlError as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        forgotten, missing = self.state.participations.forget(obj["externalAccountId"], obj["externalEventId"],
                                                              contacts, count)
        return self.answer(200, {"ok": True, "forgotten": forgotten, "not_found": missing})

    def participations_set(self):
        try:
            obj = participation_request(self.body, ("contact", "contacts", "state", "occurredAt"), ("state",))
            field = one_of(obj, "contact", "contacts")
            contacts = contact_list(obj[field] if field == "contacts" else [obj[field]], field)
            if obj["state"] not in SET_STATES:
                raise ControlError("state must be one of %s" % ", ".join(SET_STATES))
            occurred_at = obj.get("occurredAt")
            if occurred_at is not None and not is_int(occurred_at):
                raise ControlError("occurredAt must be an integer (epoch ms)")
        except ControlError as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        rows = self.state.participations.set_states(obj["externalAccountId"], obj["externalEventId"], contacts,
                                                    obj["state"], occurred_at)
        return self.answer(200, {"ok": True, "participations": rows})

    def post_config(self):
        """Replace the whole global knob set (an empty body or {} clears it)."""
        try:
            obj = parse_json_strict(self.body) if self.body.strip() else {}
            knobs, problems = parse_knobs(knob_pairs_from_json(obj))
        except (JSONProblem, KnobError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        if problems:
            return self.answer(400, {"ok": False, "error": "; ".join(problems)})
        self.state.configure(knobs)
        return self.answer(200, {"ok": True, "config": knobs})


ENDPOINTS = {
    ("GET", "/__mock/health"): ControlRequest.health,
    ("GET", "/__mock/requests"): ControlRequest.requests,
    ("POST", "/__mock/reset"): ControlRequest.reset,
    ("GET", "/__mock/stats"): ControlRequest.stats,
    ("POST", "/__mock/oauth/expire"): ControlRequest.oauth_expire,
    ("GET", "/__mock/oauth/requests"): ControlRequest.oauth_requests,
    ("GET", "/__mock/config"): ControlRequest.get_config,
    ("POST", "/__mock/config"): ControlRequest.post_config,
    ("GET", "/__mock/participations"): ControlRequest.participations,
    ("POST", "/__mock/participations/forget"): ControlRequest.participations_forget,
    ("POST", "/__mock/participations/set"): ControlRequest.participations_set,
}
