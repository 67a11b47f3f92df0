"""Knobs: how the tests steer the mock's answers.

Every knob is documented here and parsed by KNOB_PARSERS below; a new knob
goes into both (and, if it is server-wide, into GLOBAL_ONLY_KNOBS).

Knobs
-----
Per request (``mock:...`` event id) or global (``POST /__mock/config``, which
replaces the whole global set; a ``mock:`` request ignores the global set
except for the server-wide knobs marked [server] below):

  status=N category= subcategory= message=   answer status N with that error body
  body=empty|json|text|html|nocategory|badjson|deep|hugenum|huge   body kind of the answer;
                      deep: the usual JSON answer (the error object for an
                      error status, {"status":"ok"} otherwise) with a field
                      "nested" of 100000 nested arrays; hugenum: the same
                      with a field "value": 1e1001 (beyond numeric's range);
                      huge: the same with a field "padding" of 2 MB of text
  delay_ms=N          answer N ms late
  hang=1 / close=1    never answer / reset the connection (RST)
  fail_after=N        the first N requests to this event id succeed
  correlation=none|bad   no x-hubspot-correlation-id / a malformed one
  retry_after=V       send Retry-After: V
  ratelimit_remaining=N, ratelimit_daily_remaining=N   header overrides
  policy=TEN_SECONDLY_ROLLING|SECONDLY|DAILY   429 body policyName
  fault_rate=P        with probability P (seeded RNG) the request is faulty;
                      what that means: fault_mix if given, else fault_kind
  fault_kind=status|close|hang   (fault_status=N for "status", default 503)
  fault_mix=K,K,...   kinds picked uniformly (seeded RNG) per faulty request:
                      500, 502 (HTML body), 503, 504 (HubSpot's 5xx error body),
                      423 (Locked), 429 (TEN_SECONDLY_ROLLING with
                      Retry-After: 1), reset (RST, no answer), slow (the
                      normal answer, slow_ms late)
  slow_ms=N           delay of the "slow" fault (default 5000)
  bad_vids=V,V,...    [server, and per request: the union applies] a request
                      whose inputs hold one of these vids is answered 400
                      VALIDATION_ERROR naming the first of them
  bad_event=1         400 VALIDATION_ERROR "Marketing event ... is invalid"
  bad_emails=E,E,...  [server, and per request] like bad_vids, for contacts
                      given by email.  On the attendance endpoints
                      (.../attendance/.../create and email-create) bad vids
                      and emails do not reject the request: it is answered
                      200 with one error per bad contact in "errors"
                      (category OBJECT_NOT_FOUND, context {"vid": ["5"]} or
                      {"email": ["a@x.com"]}) and "numErrors"
  batch_error=1       attendance endpoints: 200 with one error that names no
                      contact (numErrors 1)
  echo_auth=1         400 VALIDATION_ERROR whose message, context and errors
                      repeat the request's Authorization header (a hostile
                      server); the request log keeps it masked
  tag=...             ignored (makes event ids unique)
  known_events=1      [server] HubSpot's own rule that a subscriber state needs
                      its event: a subscriber-state request (upsert or
                      attendance) or a participation read (breakdown,
                      counters) for an (externalEventId, externalAccountId)
                      that no events/upsert request created since the last
                      reset, in the same hub (a hub's token; the default
                      token's requests are one hub of their own), is
                      answered 404 OBJECT_NOT_FOUND "Marketing event ...
                      does not exist" (logged with rejected=unknown_event)
  known_events_delay_ms=N  [server] with known_events: an upserted event is
                      known only N ms after its upsert (HubSpot's propagation)

Global only (/__mock/config), server-wide: they apply to every /marketing/
request that passed validation, ``mock:`` ones included:

  rate_limit=N        at most N counted requests in any rolling window of
                      rate_window_ms; the next answer is 429
                      TEN_SECONDLY_ROLLING.  Every answer then carries
                      X-HubSpot-RateLimit-Max: N / -Remaining / -Interval-Milliseconds.
                      Without it the headers say 190 per 10000 ms (not enforced).
  rate_window_ms=W    the window (default 10000); also the window of
                      max_*_in_window in /__mock/stats
  daily_limit=N       after N counted requests since the last reset, 429 with
                      policyName DAILY; X-HubSpot-RateLimit-Daily(-Remaining)
                      on every answer
  storm_ms=N          for N ms from the config post, every validated request
                      is answered 429 TEN_SECONDLY_ROLLING, Remaining: 0 and
                      Retry-After: <seconds left, rounded up>
  seed=N              reseed the fault RNG when the config is posted
  api_versions=V,V,...  the date versions served (default 2026-03,2026-09):
                      a test of a version HubSpot will release later
  token_scopes=S,S,...  the scopes every token was granted (without the knob:
                      all).  A request whose operation needs a scope not in
                      the list (the spec's oauth2 security: .write for the
                      writes, crm.objects.marketing_events.read for the
                      participation reads) is answered 403 MISSING_SCOPES
                      (HubSpot's shape, context.requiredGranularScopes
                      naming the missing ones), after the 401 checks and
                      before the 400 ones, and is not counted by the limiter;
                      e.g. token_scopes=crm.objects.marketing_events.write is
                      a service key that cannot read participations.  An
                      empty value grants nothing.

"Counted" requests are the validated ones that did not get a 429 (as HubSpot
counts accepted calls); a connection reset or a slow answer still counts.
Order of decisions for a validated request: storm, daily limit, rate limit,
bad_event/bad_vids, then the knobs above (fail_after, faults, status...).

Participations: every subscriber-state write answered 2xx sets its
contacts' states, which GET .../participations/{externalAccountId}/
{externalEventId}/breakdown and GET .../participations/{externalAccountId}/
{externalEventId} answer (participations.py documents both, and the email ->
vid mapping the email-create answer shares); the per-request knobs of a
``mock:`` event id and every global knob apply to these reads as to any
request (a read counts for fail_after of its event id).  Tests read and
change the table through GET /__mock/participations and POST
/__mock/participations/forget|set (control.py).

Log entry fields added for these: ``fault_kind`` (the injected fault: a
fault_mix kind, or status/close/hang for fault_kind), ``limited``
(rate|daily|storm, or hub_rate|hub_daily: a hub's own limits, see hubs.py)
and ``rejected`` (bad_vid|bad_event); null otherwise.

Hubs (POST /__mock/hubs, control.py) have their own rate_limit,
rate_window_ms and daily_limit; a hub's request must pass the global
limits above and then its hub's (order: storm, global daily, global rate,
hub daily, hub rate), is counted by both, and is answered with its hub's
X-HubSpot-RateLimit-* headers (those of the limits the hub has; the global
ones for the limits it has not), a 429 of the global limiter included.

OAuth (global only, /__mock/config; the token endpoint is
``POST /oauth/v1/token`` and ``POST /oauth/2026-03/token``, form-encoded
``grant_type=refresh_token&client_id=..&client_secret=..&refresh_token=..``,
or ``grant_type=authorization_code&client_id=..&client_secret=..&redirect_uri=..&code=..``
with a code minted by POST /__mock/oauth/codes: it installs the app in the
code's hub and answers new tokens with the hub's "hub_id"; refresh tokens
issued for a hub refresh for that hub.  The knobs below apply to both
grants; oauth_refresh_token only to refresh tokens issued for no hub):

  oauth_client_id=, oauth_client_secret=, oauth_refresh_token=
                      what the endpoint expects (without a client id
                      configured every request is answered 400 BAD_CLIENT_ID)
  oauth_expires_in=N  expires_in of the tokens it issues (default 1800 s)
  oauth_rotate=1      every refresh issues a new refresh token and only the
                      newest is accepted from then on (a config without
                      oauth_rotate accepts the configured one again; a
                      hub's replaced refresh token stays invalid: 400
                      invalid_grant)
  oauth_fail=bad_refresh_token|invalid_grant|500   answer every token
                      request with that failure (HubSpot's shape
                      {"status":"BAD_REFRESH_TOKEN",...}, OAuth 2.0's
                      {"error":"invalid_grant",...}, or a 500)
  oauth_delay_ms=N    answer token requests N ms late
  oauth_echo=json|lower|text   answer every token request 400 repeating
                      the form body it received (a hostile or broken
                      endpoint): json: {"status":"BAD_REQUEST","message":
                      "could not use the request: <body>"}; lower: the same
                      with the body's %XX escapes in lower case; text: the
                      same message as text/plain.  The request log and
                      stats never hold the body.

Access tokens it issues ("oat-mock-...") are accepted by the /marketing/
routes, besides the --token-file token, until they expire; after that they
get 401 EXPIRED_AUTHENTICATION.  ``POST /__mock/oauth/expire`` expires every
issued token now (HubSpot revoking early).  Issued tokens and a rotated
refresh token survive /__mock/reset.  ``GET /__mock/oauth/requests`` lists
the token requests (path, content type, grant type, client id, whether the
secret and refresh token matched, status, refusal: the error code answered
(BAD_CLIENT_ID, invalid_grant, ...), and previous_token_left_ms: how
much lifetime the token issued before still had; for a hub's grant also
hub_id, code_ok and redirect_uri_ok (authorization code), refresh_label
(refresh:<n>) and access_label (oauth:<n>) of the tokens used and issued),
never the secrets nor the code; /__mock/stats
counts token_requests, tokens_issued, token_failures, expired_401 and
oauth_authorized (/marketing/ requests authorized by an issued token).
"""

import math

from .common import POLICY_MESSAGES
from .spec import DATE_VERSION_RE


class KnobError(ValueError):
    pass


def _int_knob(low, high):
    def parse(text):
        text = text.strip()
        if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
            raise KnobError("not an integer: %r" % text)
        value = int(text)
        if not low <= value <= high:
            raise KnobError("%d outside %d..%d" % (value, low, high))
        return value
    return parse


def _float_knob(low, high):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise KnobError("not a number: %r" % text) from None
        if not (math.isfinite(value) and low <= value <= high):
            raise KnobError("%r outside %s..%s" % (text, low, high))
        return value
    return parse


def _choice_knob(*choices, upper=False):
    def parse(text):
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise KnobError("%r is not one of %s" % (text, "|".join(choices)))
        return value
    return parse


def _bool_knob(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise KnobError("not a boolean: %r" % text)


def _text_knob(text):
    return text


def _header_knob(text):
    if not text or any(c in text for c in "\r\n\0"):
        raise KnobError("unusable header value %r" % text)
    return text


def _int_list_knob(text):
    """'5, 17,99' -> [5, 17, 99]"""
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not (item.isdigit() or (item[0] == "-" and item[1:].isdigit())):
            raise KnobError("not an integer: %r" % item)
        values.append(int(item))
    return values


def _str_list_knob(text):
    """'a@x.com, b@y.org' -> ['a@x.com', 'b@y.org'] (lower case)"""
    return [item.strip().lower() for item in text.split(",") if item.strip()]


def _date_versions_knob(text):
    """'2026-09, 2027-03' -> ('2026-09', '2027-03'): HubSpot date versions"""
    versions = tuple(v.strip() for v in text.split(",") if v.strip())
    if not versions:
        raise KnobError("empty list")
    for v in versions:
        if not DATE_VERSION_RE.match(v):
            raise KnobError("%r is not a date version YYYY-03 or YYYY-09" % v)
    return versions


def _kind_list_knob(*choices):
    def parse(text):
        kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
        if not kinds:
            raise KnobError("empty list")
        for kind in kinds:
            if kind not in choices:
                raise KnobError("%r is not one of %s" % (kind, "|".join(choices)))
        return kinds
    return parse


BODY_KINDS = ("empty", "json", "text", "html", "nocategory", "badjson", "deep", "hugenum", "huge")
DEEP_NESTING = 100000
FAULT_KINDS = ("status", "close", "hang")  # extend here (and in apply_fault) for new fault kinds
FAULT_MIX_KINDS = ("500", "502", "503", "504", "reset", "slow", "429", "423")
SLOW_MS_DEFAULT = 5000
# server-wide knobs: only through /__mock/config, applied to every request
GLOBAL_ONLY_KNOBS = ("rate_limit", "rate_window_ms", "daily_limit", "storm_ms", "seed", "api_versions",
                     "token_scopes", "oauth_client_id", "oauth_client_secret", "oauth_refresh_token",
                     "oauth_expires_in", "oauth_rotate", "oauth_fail", "oauth_delay_ms", "oauth_echo")
OAUTH_FAILS = ("bad_refresh_token", "invalid_grant", "500")

KNOB_PARSERS = {
    "status": _int_knob(200, 599),
    "category": _text_knob,
    "subcategory": _text_knob,
    "message": _text_knob,
    "body": _choice_knob(*BODY_KINDS),
    "delay_ms": _int_knob(0, 3600 * 1000),
    "hang": _bool_knob,
    "fail_after": _int_knob(0, 10 ** 9),
    "correlation": _choice_knob("none", "bad"),
    "retry_after": _header_knob,
    "ratelimit_daily_remaining": _int_knob(0, 10 ** 9),
    "ratelimit_remaining": _int_knob(0, 10 ** 9),
    "close": _bool_knob,
    "policy": _choice_knob(*POLICY_MESSAGES, upper=True),
    "fault_rate": _float_knob(0.0, 1.0),
    "fault_status": _int_knob(200, 599),
    "fault_kind": _choice_knob(*FAULT_KINDS),
    "fault_mix": _kind_list_knob(*FAULT_MIX_KINDS),
    "slow_ms": _int_knob(0, 3600 * 1000),
    "bad_vids": _int_list_knob,
    "bad_emails": _str_list_knob,
    "batch_error": _bool_knob,
    "bad_event": _bool_knob,
    "known_events": _bool_knob,
    "known_events_delay_ms": _int_knob(0, 3600 * 1000),
    "echo_auth": _bool_knob,
    "rate_limit": _int_knob(0, 10 ** 9),
    "rate_window_ms": _int_knob(1, 24 * 3600 * 1000),
    "daily_limit": _int_knob(0, 10 ** 12),
    "storm_ms": _int_knob(0, 3600 * 1000),
    "seed": _int_knob(-(2 ** 63), 2 ** 63 - 1),
    "api_versions": _date_versions_knob,
    "token_scopes": _str_list_knob,
    "tag": _text_knob,  # ignored; lets tests make event ids unique
    "oauth_client_id": _text_knob,
    "oauth_client_secret": _text_knob,
    "oauth_refresh_token": _text_knob,
    "oauth_expires_in": _int_knob(1, 366 * 86400),
    "oauth_rotate": _bool_knob,
    "oauth_fail": _choice_knob(*OAUTH_FAILS),
    "oauth_delay_ms": _int_knob(0, 3600 * 1000),
    "oauth_echo": _choice_knob("json", "lower", "text"),
}


def parse_knobs(pairs, per_request=False):
    """pairs: iterable of (key, text).  Returns (knobs, problems)."""
    knobs, problems = {}, []
    for key, text in pairs:
        parser = KNOB_PARSERS.get(key)
        if parser is None:
            problems.append("unknown knob %r" % key)
            continue
        if per_request and key in GLOBAL_ONLY_KNOBS:
            problems.append("%s: only settable through /__mock/config" % key)
            continue
        try:
            knobs[key] = parser(text)
        except KnobError as exc:
            problems.append("%s: %s" % (key, exc))
    return knobs, problems


def knob_pairs_from_event_id(event_id):
    """'mock:a=1;b=2' -> [('a','1'), ('b','2')]; None if not a knob id."""
    if not event_id.startswith("mock:"):
        return None
    pairs = []
    for item in event_id[5:].split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        pairs.append((key.strip().lower(), value if sep else "1"))
    return pairs


def knob_pairs_from_json(obj):
    """Config object -> pairs; raises KnobError for unusable values."""
    if not isinstance(obj, dict):
        raise KnobError("config must be a JSON object")
    pairs = []
    for key, value in obj.items():
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = repr(value)
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                             for v in value):
            text = ",".join(str(v) for v in value)  # e.g. "bad_vids": [5, 17]
        else:
            raise KnobError("%s: value must be a number, string, boolean or list" % key)
        pairs.append((key, text))
    return pairs

