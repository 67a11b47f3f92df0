"""The control API under /__mock/ (loopback only).

GET /__mock/health, GET /__mock/requests, GET|POST /__mock/config,
POST /__mock/reset, GET /__mock/stats[?window_ms=W], POST /__mock/oauth/expire
and GET /__mock/oauth/requests: see the package's docstring.  The hubs and
the OAuth install flow: below.

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
clears the table and the email mapping.

Hubs: many HubSpot accounts, each with its own credentials and limits
(hubs.py).  Without any hub the mock behaves as it always did.

POST /__mock/hubs
    {"hubs": [{"hub_id": 101, "tokens": ["static-token-a", ...], "rate_limit": 10,
               "rate_window_ms": 1000, "daily_limit": null}, ...]}
    adds or replaces those hubs (by hub_id).  tokens: the hub's static
    tokens (service keys, static-auth apps; may be empty); rate_limit: at
    most that many counted requests in any rolling window of rate_window_ms
    (default 10000), then 429 TEN_SECONDLY_ROLLING; daily_limit: that many
    counted requests since the last reset, then 429 DAILY; null or absent:
    no such limit.  A token may belong to one hub only.  Replacing a hub
    takes its new tokens and limits and forgets the revocations of its
    static tokens (re-adding a revoked token makes it valid again); its
    stats, its limiter's window, its OAuth tokens and install state stay.
    200 {"ok": true, "hubs": [hub, ...]} (the hubs posted, as GET shows them)

GET /__mock/hubs
    200 {"ok": true, "hubs": [hub, ...]} ordered by hub_id.  A hub:
      {"hub_id": 101, "tokens": ["static:0", ...] (labels, never tokens),
       "revoked": ["static:1"], "rate_limit": 10 or null, "rate_window_ms": 1000,
       "daily_limit": null, "installed": true|false (an authorization-code
       grant installed the app, no uninstall since), "stats": stats}
    stats (also in GET /__mock/stats under "hubs": {"101": stats}), since
    the last reset:
      {"requests": N, "ok": 2xx answers, "limited": 429 answers,
       "unauthorized": 401 answers, "contacts": inputs received (all
       requests), "contacts_ok": inputs of the 2xx answers,
       "by_status": {"204": N, ...}, "by_limit": {"hub_rate": N, ...} (the log's
       "limited" values), "max_in_window": the most requests answered
       anything but 401 in any rolling window of rate_window_ms (the time
       of a request is its admission by the limiter, else its answer; so
       max_in_window <= rate_limit means the hub's limiter never had to
       refuse one), "window_ms": rate_window_ms, "window_used": counted
       requests in the current window, "daily_used": counted requests,
       "tokens_issued": OAuth access tokens issued for the hub,
       "first_request_time", "last_request_time": the log's "time" of the
       first and last request (null before any)}

POST /__mock/hubs/clear   (an empty body or {})
    removes every hub, its static and OAuth tokens and every authorization
    code.  200 {"ok": true, "removed": <hubs removed>}

POST /__mock/hubs/revoke
    {"token": "static-token-a"} revokes one token of a hub (a static token,
    or an OAuth access or refresh token it was issued), or
    {"hub_id": 101, "oauth": true} every OAuth access token issued for the
    hub so far (its refresh tokens stay valid: a refresh issues a working one).
    A revoked access or static token answers 401 INVALID_AUTHENTICATION
    (the same body as an unknown token), a revoked refresh token 400
    invalid_grant.  200 {"ok": true, "hub_id": 101, "revoked": ["static:0"]}
    (labels); a token of no hub or an unknown hub: 400.

POST /__mock/hubs/uninstall
    {"hub_id": 101}: the app uninstalled from that hub.  Every refresh token
    issued for it answers 400 {"error": "invalid_grant", ...}, every access
    token 401 INVALID_AUTHENTICATION; its static tokens are untouched.  A
    later authorization-code grant with a new code re-installs it (new
    tokens; the old ones stay invalid).
    200 {"ok": true, "hub_id": 101, "refresh_tokens_invalidated": N, "access_tokens_revoked": N}

POST /__mock/oauth/codes
    {"code": "abc", "hub_id": 101, "redirect_uri": "https://app.example/cb"}
    mints an authorization code for an existing hub (what HubSpot's install
    page hands the app's redirect_uri).  The token endpoint's
    authorization-code grant (oauth.py) accepts it once, with the
    configured oauth_client_id / oauth_client_secret and the same
    redirect_uri; an unknown, used or mismatched code answers 400
    {"error": "invalid_grant", "error_description": "..."}; a refusal does
    not use the code up.  A code string can be minted once only (until
    /__mock/hubs/clear).  200 {"ok": true, "hub_id": 101}

GET /__mock/oauth/issued[?hub_id=101]
    the OAuth tokens issued for a hub (for every hub without hub_id), in
    clear: tests look for them where they must not be.
    200 {"ok": true,
         "refresh_tokens": [{"hub_id": 101, "label": "refresh:1", "token": "rt-mock-...",
                             "invalid": null|"rotated"|"revoked"|"uninstalled"}, ...],
         "access_tokens": [{"hub_id": 101, "label": "oauth:1", "token": "oat-mock-...",
                            "revoked": null|"revoked"|"uninstalled", "expires_in_ms": N}, ...]}

Hubs, their tokens, revocations, install states and codes survive POST
/__mock/reset, which clears their counters (stats, limiter windows, daily
counts) like the other stats.  Bad bodies answer 400 {"ok": false, "error": "..."}
(never repeating a token)."""

import urllib.parse

from .common import BodyError, is_loopback_host, new_correlation_id
from .hubs import HUB_ID_MAX, HubError, parse_hub
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


def json_object(body, allowed, required=()):
    """The JSON object of a control request, checked: only allowed fields, the required ones there."""
    try:
        obj = parse_json_strict(body) if body.strip() else {}
    except JSONProblem as exc:
        raise ControlError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ControlError("the body must be a JSON object")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ControlError("unknown field(s) %s" % ", ".join(unknown))
    for field in required:
        if field not in obj:
            raise ControlError("%s is required" % field)
    return obj


def hub_id_value(value, field="hub_id"):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= HUB_ID_MAX:
        raise ControlError("%s must be a positive integer" % field)
    return value


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

    # ---- hubs (hubs.py) ------------------------------------------------------

    def hubs(self):
        return self.answer(200, {"ok": True, "hubs": self.state.hubs_view()})

    def post_hubs(self):
        try:
            obj = json_object(self.body, ("hubs",), ("hubs",))
            if not isinstance(obj["hubs"], list):
                raise ControlError("hubs must be a list")
            definitions = [parse_hub(hub) for hub in obj["hubs"]]
            hubs = self.state.hubs_define(definitions)
        except (ControlError, HubError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "hubs": hubs})

    def hubs_clear(self):
        try:
            json_object(self.body, ())
        except ControlError as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "removed": self.state.hubs_clear()})

    def hubs_revoke(self):
        try:
            obj = json_object(self.body, ("token", "hub_id", "oauth"))
            if "token" in obj:
                if set(obj) != {"token"} or not isinstance(obj["token"], str):
                    raise ControlError('give {"token": "<a token>"} or {"hub_id": N, "oauth": true}')
                hub_id, label = self.state.hub_revoke_token(obj["token"])
                revoked = [label]
            else:
                if set(obj) != {"hub_id", "oauth"} or obj["oauth"] is not True:
                    raise ControlError('give {"token": "<a token>"} or {"hub_id": N, "oauth": true}')
                hub_id = hub_id_value(obj["hub_id"])
                revoked = self.state.hub_revoke_oauth(hub_id)
        except (ControlError, HubError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "hub_id": hub_id, "revoked": revoked})

    def hubs_uninstall(self):
        try:
            obj = json_object(self.body, ("hub_id",), ("hub_id",))
            hub_id = hub_id_value(obj["hub_id"])
            refresh, access = self.state.hub_uninstall(hub_id)
        except (ControlError, HubError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "hub_id": hub_id, "refresh_tokens_invalidated": refresh,
                                 "access_tokens_revoked": access})

    def oauth_codes(self):
        try:
            obj = json_object(self.body, ("code", "hub_id", "redirect_uri"), ("code", "hub_id", "redirect_uri"))
            hub_id = hub_id_value(obj["hub_id"])
            for field in ("code", "redirect_uri"):
                if not isinstance(obj[field], str) or not obj[field]:
                    raise ControlError("%s must be a non-empty string" % field)
            self.state.oauth_mint_code(obj["code"], hub_id, obj["redirect_uri"])
        except (ControlError, HubError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "hub_id": hub_id})

    def oauth_issued(self):
        query = urllib.parse.parse_qs(self.raw_query)
        try:
            unknown = sorted(set(query) - {"hub_id"})
            if unknown:
                raise ControlError("unknown parameter(s) %s" % ", ".join(unknown))
            hub_id = None
            if "hub_id" in query:
                text = query["hub_id"][0]
                if not text.isdigit():
                    raise ControlError("hub_id must be a positive integer")
                hub_id = hub_id_value(int(text))
            refresh, access = self.state.oauth_issued(hub_id)
        except (ControlError, HubError) as exc:
            return self.answer(400, {"ok": False, "error": str(exc)})
        return self.answer(200, {"ok": True, "refresh_tokens": refresh, "access_tokens": access})

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
    ("GET", "/__mock/hubs"): ControlRequest.hubs,
    ("POST", "/__mock/hubs"): ControlRequest.post_hubs,
    ("POST", "/__mock/hubs/clear"): ControlRequest.hubs_clear,
    ("POST", "/__mock/hubs/revoke"): ControlRequest.hubs_revoke,
    ("POST", "/__mock/hubs/uninstall"): ControlRequest.hubs_uninstall,
    ("POST", "/__mock/oauth/codes"): ControlRequest.oauth_codes,
    ("GET", "/__mock/oauth/issued"): ControlRequest.oauth_issued,
}
