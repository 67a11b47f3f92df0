#!/usr/bin/env python3
"""Mock of HubSpot's Marketing Events API for the hubspot_events tests.

Standard library only (Python 3.11).  Run ``mock_hubspot.py --help`` for the
command line and ``mock_hubspot.py --self-test`` for a quick check.

What it does
------------
* Every request under ``/marketing/`` is matched against the OpenAPI spec of
  its API version and checked: route, required query parameters, JSON body
  against the schema,
  and the headers our client must send (Content-Type, Accept, User-Agent,
  Authorization).  Violations answer 400 (401 for authentication, 404 for an
  unknown route) in HubSpot's error shape.
* Both path forms are served (``--spec`` may be given several times; by
  default ``openapi/marketing-events-2026-09.openapi.json`` and
  ``openapi/marketing-events-v3.openapi.json`` next to this file):
  ``/marketing/v3/marketing-events/...`` is checked against the v3 spec, and
  the date-versioned ``/marketing/marketing-events/{version}/...`` against the
  newest date spec, for every version the mock serves (``api_versions``
  below; default 2026-03 and 2026-09, as HubSpot in December 2026).  Another
  version is an unknown route (404).  The log entry's ``api_version`` is the
  version the path named and ``spec`` the version of the spec that checked it.
* Tests steer the answers with "knobs": per request through an
  ``externalEventId`` of the form ``mock:key=value;key=value`` or globally
  through ``POST /__mock/config``.  See KNOB_PARSERS below for the list.
* Every /marketing/ request is recorded (JSON Lines file with --log, and
  ``GET /__mock/requests``).  The bearer token is never written anywhere.

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
                      attendance) for an (externalEventId, externalAccountId)
                      that no events/upsert request created since the last
                      reset is answered 404 OBJECT_NOT_FOUND "Marketing event
                      ... does not exist" (logged with rejected=unknown_event)
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

"Counted" requests are the validated ones that did not get a 429 (as HubSpot
counts accepted calls); a connection reset or a slow answer still counts.
Order of decisions for a validated request: storm, daily limit, rate limit,
bad_event/bad_vids, then the knobs above (fail_after, faults, status...).

Log entry fields added for these: ``fault_kind`` (the injected fault: a
fault_mix kind, or status/close/hang for fault_kind), ``limited``
(rate|daily|storm) and ``rejected`` (bad_vid|bad_event); null otherwise.

OAuth (global only, /__mock/config; the token endpoint is
``POST /oauth/v1/token`` and ``POST /oauth/2026-03/token``, form-encoded
``grant_type=refresh_token&client_id=..&client_secret=..&refresh_token=..``):

  oauth_client_id=, oauth_client_secret=, oauth_refresh_token=
                      what the endpoint expects (without a client id
                      configured every request is answered 400 BAD_CLIENT_ID)
  oauth_expires_in=N  expires_in of the tokens it issues (default 1800 s)
  oauth_rotate=1      every refresh issues a new refresh token and only the
                      newest is accepted from then on (a config without
                      oauth_rotate accepts the configured one again)
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
secret and refresh token matched, status, and previous_token_left_ms: how
much lifetime the token issued before still had), never the secrets; /__mock/stats
counts token_requests, tokens_issued, token_failures, expired_401 and
oauth_authorized (/marketing/ requests authorized by an issued token).

Control API (loopback only)
---------------------------
GET /__mock/health, GET /__mock/requests, GET|POST /__mock/config,
POST /__mock/reset (entries, per-event counters, global knobs, rate window,
daily counter, storm and stats), GET /__mock/stats[?window_ms=W] (counts since
the last reset, see State.stats).

HTTPS
-----
``--tls-cert FILE --tls-key FILE`` serve HTTPS (TLS 1.2 or later) instead of
HTTP, the control API included.  A client that refuses the certificate
leaves no request: the mock logs "TLS handshake with ... failed" on stderr
and counts it (``tls_handshake_failures`` in /__mock/stats).

Log entries: ``time`` is the wall clock (time.time(), seconds since the epoch)
when the request line was read, before its body; benchmarks compare it with
a client's clock on the same machine.  ``--lean`` (benchmarks) keeps no
entries in memory and skips the JSON-schema check of bodies.
"""

import argparse
import collections
import datetime
import hmac
import http.server
import ipaddress
import json
import math
import os
import random
import re
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

MAX_BODY = 10 * 1024 * 1024
MAX_CHUNK_LINE = 4096
RATE_MAX = 190
RATE_INTERVAL_MS = 10000
DAILY_MAX = 250000
HANG_MAX_S = 120.0
POLL_STEP_S = 0.05
INT_RANGES = {
    "int64": (-(2 ** 63), 2 ** 63 - 1),
    "int32": (-(2 ** 31), 2 ** 31 - 1),
}
USER_AGENT_PREFIX = "hubspot_events/"
REQUIRED_SCOPE = "crm.objects.marketing_events.write"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

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
REASONS = {423: "Locked", 477: "Migration In Progress", 521: "Web Server Is Down",
           523: "Origin Is Unreachable", 524: "A Timeout Occurred"}


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


def new_correlation_id():
    return str(uuid.uuid4())


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------
# JSON parsing and schema validation
# --------------------------------------------------------------------------

class JSONProblem(ValueError):
    pass


def parse_json_strict(raw):
    """Parse bytes as UTF-8 JSON; reject NaN/Infinity and duplicate keys.

    Returns the value; raises JSONProblem with a readable message."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONProblem("body is not valid UTF-8 (%s)" % exc) from None
    duplicates = []

    def pairs_hook(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    def bad_constant(name):
        raise JSONProblem("invalid JSON literal %s" % name)

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=bad_constant)
    except JSONProblem:
        raise
    except (ValueError, RecursionError) as exc:
        raise JSONProblem("body is not valid JSON: %s" % exc) from None
    if duplicates:
        raise JSONProblem("duplicate object key(s): %s" % ", ".join(sorted(set(duplicates))))
    return value


def json_type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_matches(expected, value):
    if isinstance(expected, list):
        return any(type_matches(t, value) for t in expected)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        if isinstance(value, bool):
            return False
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "null":
        return value is None
    return True  # unknown type keyword: do not reject


def json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def join_where(where, key):
    if isinstance(key, int):
        return "%s[%d]" % (where, key)
    return key if not where else "%s.%s" % (where, key)


class Spec:
    """The OpenAPI document, its routes and a small JSON-schema validator."""

    def __init__(self, document):
        self.doc = document
        self.routes = []
        for template, item in (document.get("paths") or {}).items():
            item = self.resolve(item)
            if not isinstance(item, dict):
                continue
            shared = item.get("parameters") or []
            for method in HTTP_METHODS:
                op = item.get(method)
                if isinstance(op, dict):
                    self.routes.append(self._route(method.upper(), template, shared, op))

    @classmethod
    def load(cls, path):
        with open(path, "rb") as fh:
            return cls(json.loads(fh.read().decode("utf-8")))

    def _route(self, method, template, shared, op):
        params = {}
        for p in list(shared) + list(op.get("parameters") or []):
            p = self.resolve(p)
            if isinstance(p, dict) and "name" in p:
                params[(p["name"], p.get("in"))] = p
        segments = []
        for seg in template.split("/"):
            if len(seg) > 2 and seg.startswith("{") and seg.endswith("}"):
                segments.append((True, seg[1:-1]))
            else:
                segments.append((False, seg))
        body = op.get("requestBody")
        return {
            "method": method,
            "template": template,
            "segments": segments,
            # rank: more literal segments first, then literals earlier in the path
            "rank": (sum(1 for is_param, _ in segments if not is_param),
                     tuple(0 if is_param else 1 for is_param, _ in segments)),
            "operation_id": op.get("operationId"),
            "params": list(params.values()),
            "body": self.resolve(body) if body is not None else None,
        }

    def pointer(self, ref):
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise KeyError("unsupported $ref %r" % (ref,))
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node[part]
        return node

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
            seen += 1
            if seen > 32:
                raise KeyError("$ref loop")
        return node

    def match(self, method, raw_path):
        """Return (route, {name: raw segment}) or (None, None).

        Matching uses the raw (still percent-encoded) path split on '/'."""
        parts = raw_path.split("/")
        best = None
        best_params = None
        for route in self.routes:
            if route["method"] != method or len(route["segments"]) != len(parts):
                continue
            params = {}
            for (is_param, text), part in zip(route["segments"], parts):
                if is_param:
                    if part == "":
                        break
                    params[text] = part
                elif part != text:
                    break
            else:
                if best is None or route["rank"] > best["rank"]:
                    best, best_params = route, params
        return best, best_params

    def validate(self, schema, value, where, problems, depth=0):
        """Append (where, message) for every violation of schema by value."""
        if depth > 100:
            problems.append((where, "nesting too deep"))
            return
        try:
            schema = self.resolve(schema)
        except (KeyError, IndexError, ValueError) as exc:
            problems.append((where, "spec error: %s" % exc))
            return
        if not isinstance(schema, dict):
            if schema is False:
                problems.append((where, "no value allowed here"))
            return
        expected = schema.get("type")
        if expected is not None and not type_matches(expected, value):
            fmt = schema.get("format")
            problems.append((where, "expected %s%s, got %s" % (
                expected, " (%s)" % fmt if fmt else "", json_type_name(value))))
            return
        if "enum" in schema and isinstance(schema["enum"], list):
            if not any(json_equal(value, e) for e in schema["enum"]):
                problems.append((where, "value %s is not one of %s" % (
                    json.dumps(value)[:80], json.dumps(schema["enum"]))))
        fmt = schema.get("format")
        if fmt in INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
            low, high = INT_RANGES[fmt]
            if not low <= value <= high:
                problems.append((where, "integer %d out of %s range" % (value, fmt)))
        if isinstance(value, dict):
            for name in schema.get("required") or []:
                if name not in value:
                    problems.append((join_where(where, name), "required property missing"))
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties", True)
            for key, item in value.items():
                if key in props:
                    self.validate(props[key], item, join_where(where, key), problems, depth + 1)
                elif extra is False:
                    problems.append((join_where(where, key), "unexpected property"))
                elif isinstance(extra, dict):
                    self.validate(extra, item, join_where(where, key), problems, depth + 1)
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self.validate(schema["items"], item, join_where(where, index), problems, depth + 1)


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------

DATE_VERSION_RE = re.compile(r"^(20[0-9]{2})-(03|09)$")
DEFAULT_DATE_VERSIONS = ("2026-03", "2026-09")


class Specs:
    """The specs of every API version served, and which one a path speaks.

    /marketing/v3/marketing-events/... is the v3 spec's; the date-versioned
    /marketing/marketing-events/{version}/... is checked against the newest
    date spec (HubSpot's date versions so far keep v3's bodies), with the
    version segment standing for the spec's own."""

    def __init__(self, specs):
        self.by_version = {}
        for spec in specs:
            version = str((spec.doc.get("info") or {}).get("version") or "")
            if not (version == "v3" or DATE_VERSION_RE.match(version)):
                raise ValueError("spec version %r is neither v3 nor a date version" % version)
            self.by_version[version] = spec
        dates = sorted(v for v in self.by_version if v != "v3")
        self.newest_date = dates[-1] if dates else None

    @classmethod
    def load(cls, paths):
        return cls([Spec.load(path) for path in paths])

    def match(self, method, raw_path, served_dates):
        """Return (spec, spec version, api version, route, params); route None if no route."""
        parts = raw_path.split("/")
        if raw_path.startswith("/marketing/v3/marketing-events/") and "v3" in self.by_version:
            spec = self.by_version["v3"]
            route, params = spec.match(method, raw_path)
            return spec, "v3", "v3", route, params
        if (len(parts) > 3 and parts[1] == "marketing" and parts[2] == "marketing-events"
                and DATE_VERSION_RE.match(parts[3])):
            version = parts[3]
            if version in served_dates and self.newest_date is not None:
                spec = self.by_version[self.newest_date]
                parts[3] = self.newest_date
                route, params = spec.match(method, "/".join(parts))
                return spec, self.newest_date, version, route, params
            return None, None, version, None, None
        return None, None, None, None, None


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
                     "oauth_client_id", "oauth_client_secret", "oauth_refresh_token",
                     "oauth_expires_in", "oauth_rotate", "oauth_fail", "oauth_delay_ms", "oauth_echo")
OAUTH_PATHS = ("/oauth/v1/token", "/oauth/2026-03/token")
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


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# HTTP handling
# --------------------------------------------------------------------------

class BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-hubspot/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None

    # ---- plumbing -------------------------------------------------------

    def version_string(self):
        return self.server_version

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
            return self.control(raw_path, raw_query)
        if raw_path.startswith("/marketing/"):
            return self.api(raw_path, raw_query)
        if raw_path in OAUTH_PATHS:
            return self.oauth_token(raw_path, raw_query)
        try:
            self.read_body()
        except BodyError:
            pass
        log_err("unlogged request to unknown path %s %s" % (self.command, raw_path[:200]))
        corr = new_correlation_id()
        self.send_json(404, {"status": "error", "message": "Resource not found", "correlationId": corr,
                             "category": "OBJECT_NOT_FOUND"}, corr=corr)

    # ---- control API -----------------------------------------------------

    def control(self, raw_path, raw_query=""):
        corr = new_correlation_id()
        try:
            body = self.read_body()
        except BodyError as exc:
            return self.send_json(exc.status, {"ok": False, "error": exc.message}, corr=corr, close=True)
        if not is_loopback_host(self.client_address[0]):
            return self.send_json(403, {"ok": False, "error": "control API is loopback only"}, corr=corr)
        state = self.state
        route = (self.command, raw_path.rstrip("/"))
        if route == ("GET", "/__mock/health"):
            return self.send_json(200, {"ok": True}, corr=corr)
        if route == ("GET", "/__mock/requests"):
            return self.send_raw(200, state.snapshot(), "application/json;charset=utf-8", corr=corr)
        if route == ("POST", "/__mock/reset"):
            state.reset()
            return self.send_json(200, {"ok": True}, corr=corr)
        if route == ("GET", "/__mock/stats"):
            query = urllib.parse.parse_qs(raw_query)
            window_ms = None
            if "window_ms" in query:
                try:
                    window_ms = _int_knob(1, 24 * 3600 * 1000)(query["window_ms"][0])
                except KnobError as exc:
                    return self.send_json(400, {"ok": False, "error": "window_ms: %s" % exc}, corr=corr)
            return self.send_json(200, state.stats(window_ms), corr=corr)
        if route == ("POST", "/__mock/oauth/expire"):
            return self.send_json(200, {"ok": True, "expired": state.oauth_expire_all()}, corr=corr)
        if route == ("GET", "/__mock/oauth/requests"):
            with state.lock:
                entries = list(state.oauth_log)
            return self.send_json(200, entries, corr=corr)
        if route == ("GET", "/__mock/config"):
            with state.lock:
                current = dict(state.global_knobs)
            return self.send_json(200, {"ok": True, "config": current}, corr=corr)
        if route == ("POST", "/__mock/config"):
            try:
                obj = parse_json_strict(body) if body.strip() else {}
                knobs, problems = parse_knobs(knob_pairs_from_json(obj))
            except (JSONProblem, KnobError) as exc:
                return self.send_json(400, {"ok": False, "error": str(exc)}, corr=corr)
            if problems:
                return self.send_json(400, {"ok": False, "error": "; ".join(problems)}, corr=corr)
            state.configure(knobs)
            return self.send_json(200, {"ok": True, "config": knobs}, corr=corr)
        return self.send_json(404, {"ok": False, "error": "unknown control endpoint %s %s" % route}, corr=corr)

    # ---- the API ----------------------------------------------------------

    def check_headers(self, route, body, problems):
        """Header checks other than Authorization; appends (kind, where, message)."""
        ctypes = self.headers.get_all("Content-Type") or []
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
        accept = self.headers.get_all("Accept") or []
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
        agents = self.headers.get_all("User-Agent") or []
        if len(agents) != 1 or not agents[0].startswith(USER_AGENT_PREFIX):
            problems.append(("header", "User-Agent", "must start with %r, got %r" % (USER_AGENT_PREFIX, ", ".join(agents))))

    def check_auth(self):
        """Returns (problem or None, masked header value or None)."""
        values = self.headers.get_all("Authorization") or []
        if not values:
            return "missing", None
        if len(values) > 1:
            return "sent %d times" % len(values), "<duplicate>"
        value = values[0]
        if not value.startswith("Bearer "):
            return "must be 'Bearer <token>'", "<malformed>"
        token = value[len("Bearer "):]
        if not token or token != token.strip():
            return "empty or padded token", "Bearer <wrong>"
        try:
            expected = self.state.expected_token()
        except OSError as exc:
            log_err("cannot read token file: %s" % exc)
            return "token file unreadable", "Bearer <wrong>"
        if expected is not None and expected and hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
            return None, "Bearer <token>"
        issued = self.state.oauth_check_token(token)
        if issued == "ok":
            return None, "Bearer <oauth>"
        if issued == "expired":
            return "expired", "Bearer <oauth-expired>"
        if expected is None:
            return None, "Bearer <token>"
        return "token does not match", "Bearer <wrong>"

    def api(self, raw_path, raw_query):
        state = self.state
        received = time.time()
        remaining = state.rate_tick()
        corr = new_correlation_id()
        entry = {
            "seq": None, "time": received, "method": self.command, "raw_path": raw_path,
            "raw_query": raw_query, "path": {}, "operation": None, "query": {}, "headers": {},
            "body": None, "spec_errors": [], "status": None, "correlation_id": None,
            "knobs": {}, "knob_source": None, "fault_kind": None, "limited": None, "rejected": None,
            "api_version": None, "spec": None,
        }
        body_error = None
        try:
            body = self.read_body()
        except BodyError as exc:
            body, body_error = b"", exc

        # headers, with the Authorization value masked
        auth_problem, auth_masked = self.check_auth()
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            if name == "authorization":
                continue
            headers[name] = value if name not in headers else headers[name] + ", " + value
        if auth_masked is not None:
            headers["authorization"] = auth_masked
        entry["headers"] = headers

        parsed, parse_problem = None, None
        if body:
            try:
                parsed = parse_json_strict(body)
                entry["body"] = parsed
            except JSONProblem as exc:
                parse_problem = str(exc)
                entry["body_raw"] = body.decode("utf-8", "replace")

        problems = []  # (kind, where, message)
        try:
            query = urllib.parse.parse_qs(raw_query, keep_blank_values=True, errors="strict")
            entry["query"] = {k: v[0] for k, v in query.items()}
        except (UnicodeDecodeError, ValueError) as exc:
            query = {}
            problems.append(("query", "(query string)", "not valid percent-encoded UTF-8: %s" % exc))

        def answer_error(status, category, message, close=False, errors=None):
            payload = {"status": "error", "message": message, "correlationId": corr, "category": category}
            if errors:
                payload["errors"] = errors
            entry["status"], entry["correlation_id"] = status, corr
            entry["spec_errors"] = ["%s %s: %s" % p for p in problems]
            state.record(entry)
            self.send_json(status, payload, corr=corr, close=close, ratelimit=state.quota_view(remaining))

        if body_error is not None:
            problems.append(("body", "(body)", body_error.message))
            return answer_error(body_error.status, "VALIDATION_ERROR",
                                "Invalid request body: %s" % body_error.message, close=True)

        spec, entry["spec"], entry["api_version"], route, raw_params = \
            state.specs.match(self.command, raw_path, state.served_date_versions())
        if route is None:
            problems.append(("route", raw_path, "no operation for %s in the spec" % self.command))
            return answer_error(404, "OBJECT_NOT_FOUND",
                                "Unable to route %s %s: no such resource" % (self.command, raw_path))
        entry["operation"] = route["operation_id"]

        params = {}
        for name, raw in raw_params.items():
            try:
                params[name] = urllib.parse.unquote(raw, errors="strict")
            except UnicodeDecodeError:
                params[name] = urllib.parse.unquote(raw, errors="replace")
                problems.append(("path", name, "not valid percent-encoded UTF-8: %r" % raw))
        entry["path"] = params

        for p in route["params"]:
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

        # FACTS.md: the documented values are lowercase register/attend/cancel;
        # the read APIs' REGISTERED/ATTENDED/... must never be sent
        if "subscriberState" in params and params["subscriberState"] not in ("register", "attend", "cancel"):
            problems.append(("path", "subscriberState",
                             "must be one of register, attend, cancel, got %r" % params["subscriberState"]))

        self.check_headers(route, body, problems)

        rb = route["body"]
        if rb is not None:
            if not body:
                if rb.get("required"):
                    problems.append(("body", "(body)", "request body is required"))
            elif parse_problem:
                problems.append(("body", "(body)", parse_problem))
            else:
                content = rb.get("content") or {}
                media = content.get("application/json") or next(iter(content.values()), None) or {}
                if media.get("schema") is not None and not state.lean:
                    sub = []
                    spec.validate(media["schema"], parsed, "", sub)
                    problems.extend(("body", w or "(body)", m) for w, m in sub)
        elif parse_problem:
            problems.append(("body", "(body)", parse_problem))

        if auth_problem == "expired":
            problems.insert(0, ("header", "Authorization", "the OAuth token expired"))
            return answer_error(401, "EXPIRED_AUTHENTICATION", EXPIRED_MESSAGE)
        if auth_problem is not None:
            problems.insert(0, ("header", "Authorization", auth_problem))
            return answer_error(401, "INVALID_AUTHENTICATION", AUTH_MESSAGE)
        if problems:
            first = "%s: %s" % (problems[0][1], problems[0][2])
            more = " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""
            return answer_error(400, "VALIDATION_ERROR", "Invalid input JSON: %s%s" % (first, more),
                                errors=[{"message": m, "in": w} for _, w, m in problems])

        self.answer_valid(route, params, parsed, entry, corr, state.admit(remaining))

    def oauth_token(self, raw_path, raw_query):
        """POST /oauth/v1/token and /oauth/2026-03/token: the refresh grant.
        Records what it checked, never the secrets."""
        state = self.state
        corr = new_correlation_id()
        entry = {"time": time.time(), "method": self.command, "path": raw_path, "query": raw_query,
                 "content_type": self.headers.get("Content-Type"), "accept": self.headers.get("Accept"),
                 "authorization": "present" if self.headers.get("Authorization") else None,
                 "grant_type": None, "problems": [], "status": None}

        def answer(status, obj):
            entry["status"] = status
            state.oauth_record(entry)
            delay = state.oauth_delay_s()
            if delay and not self.wait(delay):
                self.answered = True
                self.close_connection = True
                return
            self.send_json(status, obj, corr=corr)

        try:
            body = self.read_body()
        except BodyError as exc:
            entry["problems"].append(exc.message)
            return answer(exc.status, {"status": "BAD_REQUEST", "message": exc.message, "correlationId": corr})
        if self.command != "POST":
            entry["problems"].append("method %s" % self.command)
            return answer(405, {"status": "error", "message": "method not allowed", "correlationId": corr})
        ctype = (entry["content_type"] or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            entry["problems"].append("content type %r" % entry["content_type"])
        if raw_query:
            entry["problems"].append("parameters in the query string")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                                         errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            form = {}
            entry["problems"].append("body is not form-encoded: %s" % exc)
        for name, values in form.items():
            if len(values) > 1:
                entry["problems"].append("%s given %d times" % (name, len(values)))
        unknown = sorted(set(form) - {"grant_type", "client_id", "client_secret", "refresh_token"})
        if unknown:
            entry["problems"].append("unexpected parameters %s" % ", ".join(unknown))
        value = lambda name: form.get(name, [None])[0]
        entry["grant_type"] = value("grant_type")
        if entry["problems"]:
            with state.lock:
                state.stats_oauth["token_requests"] += 1
                state.stats_oauth["token_failures"] += 1
            return answer(400, {"status": "BAD_REQUEST", "message": "; ".join(entry["problems"]), "correlationId": corr})
        if entry["grant_type"] != "refresh_token":
            with state.lock:
                state.stats_oauth["token_requests"] += 1
                state.stats_oauth["token_failures"] += 1
            return answer(400, {"status": "BAD_GRANT_TYPE", "message": "missing or unknown grant type",
                                "correlationId": corr})
        echo = state.oauth_echo()
        if echo is not None:
            # a hostile or broken endpoint repeating what it was sent (the secrets included)
            text = body.decode("utf-8", "replace")
            if echo == "lower":
                text = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)
            message = "could not use the request: " + text
            with state.lock:
                state.stats_oauth["token_requests"] += 1
                state.stats_oauth["token_failures"] += 1
            entry["status"] = 400
            state.oauth_record(entry)
            if echo == "text":
                return self.send_raw(400, message.encode("utf-8"), "text/plain;charset=utf-8", corr=corr)
            return self.send_json(400, {"status": "BAD_REQUEST", "message": message, "correlationId": corr}, corr=corr)
        status, obj, info = state.oauth_grant(value("client_id"), value("client_secret"), value("refresh_token"))
        entry.update(info)
        if status != 200 and "error" not in obj:
            obj["correlationId"] = corr
        return answer(status, obj)

    def answer_valid(self, route, params, parsed, entry, corr, quota):
        state = self.state
        event_id = params.get("externalEventId")
        knobs, source = {}, None
        pairs = knob_pairs_from_event_id(event_id) if event_id is not None else None
        if pairs is not None:
            knobs, knob_problems = parse_knobs(pairs, per_request=True)
            source = "request"
            if knob_problems:
                log_err("ignored knob(s) in %r: %s" % (event_id[:200], "; ".join(knob_problems)))
                knobs["_invalid"] = knob_problems
        else:
            with state.lock:
                knobs = dict(state.global_knobs)
            source = "global" if knobs else None
        applied = dict(knobs)
        entry["knobs"], entry["knob_source"] = applied, source
        inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
        inputs = inputs if isinstance(inputs, list) else []

        if quota.verdict is not None:  # storm, daily or rate limit
            return self.answer_limited(entry, corr, quota)
        rejection = self.find_bad_input(knobs, event_id, inputs,
                                        attendance="/attendance/" in (route or {}).get("template", ""))
        if rejection is not None:
            return self.answer_rejected(entry, corr, quota, *rejection)
        template = (route or {}).get("template", "")
        if template.endswith("/events/upsert"):
            state.note_events(inputs)
        elif event_id is not None and ("{subscriberState}" in template or "/attendance/" in template):
            account = (entry.get("query") or {}).get("externalAccountId")
            account = account[0] if isinstance(account, list) else account
            if not state.event_known(str(event_id), str(account)):
                entry["rejected"] = "unknown_event"
                entry["status"], entry["correlation_id"] = 404, corr
                state.record(entry, quota)
                return self.send_json(404, {"status": "error", "correlationId": corr, "category": "OBJECT_NOT_FOUND",
                                            "message": "Marketing event %s does not exist" % event_id},
                                      corr=corr, ratelimit=quota)

        failing = True
        if event_id is not None:
            count = state.count_event(event_id)
            if "fail_after" in knobs and count <= knobs["fail_after"]:
                failing = False
        status = knobs.get("status") if failing else None
        close = failing and knobs.get("close", False)
        hang = failing and knobs.get("hang", False)
        body_kind = knobs.get("body") if failing else None
        answer_knobs = knobs  # what shapes an error body
        retry_after = knobs.get("retry_after")
        delay_s = knobs.get("delay_ms", 0) / 1000.0
        if failing and "fault_rate" in knobs:
            hit, mix_kind = state.roll_fault(knobs["fault_rate"], knobs.get("fault_mix"))
            applied["fault_hit"] = hit
            if hit and mix_kind is not None:
                entry["fault_kind"] = mix_kind
                close, hang = mix_kind == "reset", False
                if mix_kind == "slow":  # the normal answer, late
                    delay_s += knobs.get("slow_ms", SLOW_MS_DEFAULT) / 1000.0
                elif mix_kind != "reset":  # a status with HubSpot's canonical body
                    status, answer_knobs = int(mix_kind), {}
                    body_kind = "html" if status == 502 else None
                    if status == 429:
                        retry_after = "1"
            elif hit:
                kind = knobs.get("fault_kind", "status")
                entry["fault_kind"] = kind
                if kind == "status":
                    status, close, hang = knobs.get("fault_status", 503), False, False
                elif kind == "close":
                    close = True
                elif kind == "hang":
                    hang = True
        if not failing:
            applied["fail_after_phase"] = "success"

        if close or hang:
            state.record(entry, quota)  # status and correlation_id stay null
            if delay_s and not self.wait(delay_s):
                self.close_connection = True
                self.answered = True
                return
            if close:
                return self.reset_connection()
            self.answered = True
            self.close_connection = True
            self.wait(HANG_MAX_S)
            return

        correlation = knobs.get("correlation")
        if correlation == "bad":
            corr = "not-a-uuid"
        header_corr = None if correlation == "none" else corr

        status, payload, ctype = self.build_answer(route, params, status, body_kind, answer_knobs, corr, inputs)

        extra = []
        if retry_after is not None:
            extra.append(("Retry-After", retry_after))
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
        state.record(entry, quota)
        if delay_s and not self.wait(delay_s):
            self.answered = True
            self.close_connection = True
            return
        self.send_raw(status, payload, ctype, corr=header_corr, extra=extra, ratelimit=quota)

    def answer_limited(self, entry, corr, quota):
        """429 from the limiter (rate_limit, daily_limit, storm_ms)."""
        policy = "DAILY" if quota.verdict == "daily" else "TEN_SECONDLY_ROLLING"
        payload = {"status": "error", "message": POLICY_MESSAGES[policy], "errorType": "RATE_LIMIT",
                   "correlationId": corr, "policyName": policy}
        extra = []
        if quota.retry_after is not None:
            extra.append(("Retry-After", str(quota.retry_after)))
        entry["limited"] = quota.verdict
        entry["status"], entry["correlation_id"] = 429, corr
        self.state.record(entry, quota)
        self.send_json(429, payload, corr=corr, extra=extra, ratelimit=quota)

    def find_bad_input(self, knobs, event_id, inputs, attendance=False):
        """(kind, message, context, errors) for a request HubSpot would reject
        as a whole (bad_event, bad_vids, bad_emails), else None.  On the
        attendance endpoints bad contacts are per-contact errors of a 200
        answer instead (see attendance_errors)."""
        if knobs.get("echo_auth"):
            # a hostile or broken server (or proxy) that repeats the request's
            # Authorization header in its answer: the client must not keep it
            echoed = self.headers.get("Authorization", "")
            message = "Invalid request headers: Authorization: %s" % echoed
            return ("echo_auth", message, {"authorization": [echoed]},
                    [{"message": message, "in": "header", "code": "ECHO"}])
        if knobs.get("bad_event"):
            message = "Marketing event %s is invalid" % event_id
            return ("bad_event", message, {"externalEventId": [str(event_id)]},
                    [{"message": message, "in": "externalEventId", "code": "INVALID_EVENT"}])
        if attendance:
            return None
        bad_emails = set(self.state.global_bad_emails()) | set(knobs.get("bad_emails", ()))
        for item in inputs:
            email = item.get("email") if isinstance(item, dict) else None
            if isinstance(email, str) and email.lower() in bad_emails:
                return ("bad_email", "Invalid input JSON: contact with email %s is invalid" % email,
                        {"email": [email]},
                        [{"message": "Contact with email %s is invalid" % email, "in": "email",
                          "code": "INVALID_EMAIL", "context": {"email": [email]}}])
        bad = set(self.state.global_bad_vids()) | set(knobs.get("bad_vids", ()))
        if not bad:
            return None
        found = []
        for item in inputs:
            vid = item.get("vid") if isinstance(item, dict) else None
            if isinstance(vid, int) and not isinstance(vid, bool) and vid in bad and vid not in found:
                found.append(vid)
        if not found:
            return None
        return ("bad_vid", "Invalid input JSON: contact with vid %d does not exist" % found[0],
                {"vid": [str(found[0])]},
                [{"message": "Contact with vid %d does not exist" % vid, "in": "vid", "code": "INVALID_VID",
                  "context": {"vid": [str(vid)]}} for vid in found])

    def answer_rejected(self, entry, corr, quota, kind, message, context, errors):
        """400 VALIDATION_ERROR for bad_event / bad_vids: the request's own fault."""
        payload = {"status": "error", "message": message, "correlationId": corr,
                   "category": "VALIDATION_ERROR", "context": context, "errors": errors}
        entry["rejected"] = kind
        entry["status"], entry["correlation_id"] = 400, corr
        self.state.record(entry, quota)
        self.send_json(400, payload, corr=corr, ratelimit=quota)

    def build_answer(self, route, params, status, body_kind, knobs, corr, inputs):
        """Returns (status, body bytes, content type or None)."""
        template = route["template"]
        default_status, default_body = 204, None
        if "/attendance/" in template and template.endswith("/create"):
            default_status = 200
            good, errors = self.attendance_errors(knobs, inputs)
            default_body = self.batch_result([{"vid": i.get("vid")} for i in good], errors)
        elif "/attendance/" in template and template.endswith("/email-create"):
            default_status = 200
            good, errors = self.attendance_errors(knobs, inputs)
            default_body = self.batch_result([{"email": i.get("email"), "vid": 1000 + n}
                                              for n, i in enumerate(good)], errors)
        if status is None:
            status = default_status
            if body_kind not in (None, "empty") and status == 204:
                status = 200
        elif status == 204 or status == 304:
            body_kind = "empty"

        if body_kind == "empty":
            return status, b"", None
        if body_kind == "text":
            return status, b"Something went wrong, please try again later.\n", "text/plain;charset=utf-8"
        if body_kind == "html":
            return status, PROXY_502_HTML.encode("ascii"), "text/html"
        if body_kind == "badjson":
            return status, b'{"status":"err', "application/json;charset=utf-8"
        if body_kind in ("deep", "hugenum", "huge"):
            # written as text: json.dumps would recurse past Python's limit
            obj = self.error_object(status, knobs, corr, params, inputs) if status >= 400 else {"status": "ok"}
            extra = ('"nested":' + "[" * DEEP_NESTING + "]" * DEEP_NESTING if body_kind == "deep"
                     else '"padding":"' + "x" * (2 * 1024 * 1024) + '"' if body_kind == "huge"
                     else '"value":1e1001')
            text = json.dumps(obj, separators=(",", ":"))[:-1] + "," + extra + "}"
            return status, text.encode("utf-8"), "application/json;charset=utf-8"
        if status < 400 and body_kind != "nocategory":
            if body_kind == "json":
                obj = {"status": "ok", "echo": len(inputs)}
            elif default_body is not None and status == default_status:
                obj = default_body
            else:
                return status, b"", None
        else:
            obj = self.error_object(status, knobs, corr, params, inputs)
            if body_kind == "nocategory":
                obj.pop("category", None)
        return status, json.dumps(obj, separators=(",", ":")).encode("utf-8"), "application/json;charset=utf-8"

    @staticmethod
    def batch_result(results, errors=()):
        now = iso_now()
        return {"status": "COMPLETE", "results": results, "numErrors": len(errors), "errors": list(errors),
                "requestedAt": now, "startedAt": now, "completedAt": now}

    def attendance_errors(self, knobs, inputs):
        """The per-contact errors of an attendance answer: (good inputs, errors)."""
        bad_vids = set(self.state.global_bad_vids()) | set(knobs.get("bad_vids", ()))
        bad_emails = set(self.state.global_bad_emails()) | set(knobs.get("bad_emails", ()))
        good, errors = [], []
        for item in inputs:
            if not isinstance(item, dict):
                continue
            vid, email = item.get("vid"), item.get("email")
            if isinstance(vid, int) and not isinstance(vid, bool) and vid in bad_vids:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "Contact with vid %d does not exist" % vid,
                               "context": {"vid": [str(vid)]}, "errors": []})
            elif isinstance(email, str) and email.lower() in bad_emails:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": "Contact with email %s is invalid" % email,
                               "context": {"email": [email]}, "errors": []})
            else:
                good.append(item)
        if knobs.get("batch_error"):
            errors.append({"status": "error", "category": "INTERNAL_ERROR",
                           "message": "Attendance could not be recorded for this request", "context": {},
                           "errors": []})
        return good, errors

    @staticmethod
    def error_object(status, knobs, corr, params, inputs):
        category = knobs.get("category")
        message = knobs.get("message")
        sub = knobs.get("subcategory")
        if status == 429:
            policy = knobs.get("policy", "TEN_SECONDLY_ROLLING")
            obj = {"status": "error", "message": message or POLICY_MESSAGES[policy], "errorType": "RATE_LIMIT",
                   "correlationId": corr, "policyName": policy}
            if category:  # e.g. category=RATE_LIMITS for the proxy variant
                obj["category"] = category
            if sub:
                obj["subCategory"] = sub
            return obj
        obj = {"status": "error", "message": None, "correlationId": corr, "category": None}
        if status >= 500:
            obj["message"], obj["category"] = "internal error", "INTERNAL_ERROR"
        elif status == 400:
            vid = next((i.get("vid") for i in inputs if isinstance(i, dict) and "vid" in i), None)
            vid_text = str(vid) if vid is not None else "0"
            obj["message"] = "Invalid input JSON: contact with vid %s does not exist" % vid_text
            obj["category"] = "VALIDATION_ERROR"
            obj["context"] = {"vid": [vid_text]}
            obj["errors"] = [{"message": "Contact with vid %s does not exist" % vid_text, "in": "vid",
                              "code": "INVALID_VID"}]
        elif status == 401:
            obj["category"] = "INVALID_AUTHENTICATION"
            obj["message"] = EXPIRED_MESSAGE if category == "EXPIRED_AUTHENTICATION" else AUTH_MESSAGE
        elif status == 403:
            obj["message"], obj["category"] = SCOPES_MESSAGE, "MISSING_SCOPES"
            obj["context"] = {"requiredGranularScopes": [REQUIRED_SCOPE]}
            obj["errors"] = [{"message": "One or more of the following scopes are required.",
                              "context": {"requiredGranularScopes": [REQUIRED_SCOPE]}}]
            obj["links"] = {"scopes": "https://developers.hubspot.com/scopes"}
        elif status == 404:
            obj["message"] = "Marketing event %s not found" % params.get("externalEventId", "")
            obj["category"] = "OBJECT_NOT_FOUND"
        elif status == 409:
            obj["message"], obj["category"] = "Conflict: the object was modified concurrently", "CONFLICT"
        elif status == 423:
            obj["message"] = "The resource is locked; retry in a few seconds."
            obj["category"] = "LOCKED"
        elif status == 477:
            obj["message"], obj["category"] = "The account is being migrated; retry later.", "MIGRATION_IN_PROGRESS"
        elif status >= 400:
            obj["message"], obj["category"] = "error", "BAD_REQUEST"
        else:
            obj["message"], obj["category"] = "error", "ERROR"
        if category:
            obj["category"] = category
        if message:
            obj["message"] = message
        if sub:
            obj["subCategory"] = sub
        return obj


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
    return server


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("%d\n" % port)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------
# Self test
# --------------------------------------------------------------------------

def self_test(spec_paths):
    import http.client
    tmpdir = tempfile.mkdtemp(prefix="mock_hubspot_selftest.")
    token_file = os.path.join(tmpdir, "token")
    token = "pat-na1-selftest-0123456789abcdef"
    with open(token_file, "w") as fh:
        fh.write(token + "\n")
    log_path = os.path.join(tmpdir, "requests.jsonl")
    state = State(Specs.load(spec_paths), token_file=token_file, log_path=log_path, seed=1)
    server = make_server("127.0.0.1", 0, state)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = "http://127.0.0.1:%d" % port
    passed, failed = [0], [0]

    def check(name, cond, detail=""):
        if cond:
            passed[0] += 1
        else:
            failed[0] += 1
            print("FAIL %s %s" % (name, detail))

    def call(method, path, body=None, headers=None, auth=token, timeout=10):
        hdrs = {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "hubspot_events/0.1 selftest"}
        if auth is not None:
            hdrs["Authorization"] = "Bearer " + auth
        hdrs.update(headers or {})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict((k.lower(), v) for k, v in resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict((k.lower(), v) for k, v in err.headers.items()), err.read()

    def last_entry():
        entries = json.loads(call("GET", "/__mock/requests")[2])
        return entries[-1] if entries else {}

    def upsert_path(event_id, state_name="register", account="acct 1"):
        return "/marketing/v3/marketing-events/events/%s/%s/upsert?externalAccountId=%s" % (
            event_id, state_name, urllib.parse.quote(account, safe=""))

    good = {"inputs": [{"vid": 123, "interactionDateTime": 1700000000000, "properties": {}}]}
    try:
        status, _, body = call("GET", "/__mock/health")
        check("health", status == 200 and json.loads(body) == {"ok": True}, body)

        status, hdrs, body = call("POST", upsert_path("evt-1"), good)
        entry = last_entry()
        check("valid upsert 204", status == 204 and body == b"", (status, body))
        check("valid upsert spec_errors", entry.get("spec_errors") == [], entry.get("spec_errors"))
        check("valid upsert log fields", entry.get("operation", "").endswith("upsertByContactId")
              and entry.get("path") == {"externalEventId": "evt-1", "subscriberState": "register"}
              and entry.get("query") == {"externalAccountId": "acct 1"}
              and entry.get("headers", {}).get("authorization") == "Bearer <token>"
              and entry.get("status") == 204 and entry.get("correlation_id") == hdrs.get("x-hubspot-correlation-id")
              and hdrs.get("x-hubspot-ratelimit-max") == "190", entry)

        # the date-versioned paths: 2026-09 and 2026-03 served, checked against the 2026-09 spec
        for version in ("2026-09", "2026-03"):
            status, _, body = call("POST", "/marketing/marketing-events/%s/events/evt-1/register/upsert"
                                   "?externalAccountId=acct" % version, good)
            entry = last_entry()
            check("date version %s 204" % version, status == 204 and entry.get("spec_errors") == []
                  and entry.get("api_version") == version and entry.get("spec") == "2026-09"
                  and entry.get("operation", "").startswith("post-/marketing/marketing-events/2026-09/"),
                  (status, entry))
        check("v3 path checked by the v3 spec", call("POST", upsert_path("evt-1"), good)[0] == 204
              and last_entry().get("api_version") == "v3" and last_entry().get("spec") == "v3", last_entry())
        status, _, body = call("POST", "/marketing/marketing-events/2026-09/events/evt-1/register/upsert"
                               "?externalAccountId=acct", {"inputs": [{"vid": "1"}]})
        check("date version body checked", status == 400 and len(last_entry()["spec_errors"]) == 3,
              last_entry().get("spec_errors"))
        for version in ("2027-03", "2026-06", "v4"):
            status, _, _ = call("POST", "/marketing/marketing-events/%s/events/evt-1/register/upsert"
                                "?externalAccountId=acct" % version, good)
            check("version %s not served: 404" % version, status == 404, status)
        call("POST", "/__mock/config", {"api_versions": "2026-09,2027-03"})
        status, _, _ = call("POST", "/marketing/marketing-events/2027-03/events/evt-1/register/upsert"
                            "?externalAccountId=acct", good)
        check("api_versions serves 2027-03", status == 204 and last_entry().get("api_version") == "2027-03",
              (status, last_entry()))
        status, _, _ = call("POST", "/marketing/marketing-events/2026-03/events/evt-1/register/upsert"
                            "?externalAccountId=acct", good)
        check("api_versions no longer serves 2026-03", status == 404, status)
        call("POST", "/__mock/config", {})

        bad = {"inputs": [{"vid": "123", "interactionDateTime": 1700000000000, "properties": {}}]}
        status, hdrs, body = call("POST", upsert_path("evt-1"), bad)
        obj, entry = json.loads(body), last_entry()
        check("vid string 400", status == 400 and obj.get("category") == "VALIDATION_ERROR"
              and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id"), obj)
        check("vid string spec_errors", entry.get("spec_errors") and "vid" in entry["spec_errors"][0], entry)

        status, _, body = call("POST", upsert_path("evt-1"), {"inputs": [{"vid": True, "interactionDateTime": 2 ** 63,
                                                                           "properties": {"a": 1}}]})
        check("bool/int64/properties rejected", status == 400 and len(last_entry()["spec_errors"]) == 3,
              last_entry().get("spec_errors"))

        status, _, body = call("POST", "/marketing/v3/marketing-events/events/evt-1/register/upsert", good)
        check("missing query 400", status == 400 and any("externalAccountId" in e for e in last_entry()["spec_errors"]),
              last_entry().get("spec_errors"))

        status, _, body = call("POST", upsert_path("evt-1"), good, headers={"User-Agent": "curl/8"})
        check("bad user agent 400", status == 400, status)

        status, hdrs, body = call("POST", upsert_path("evt-1"), good, auth="wrong-token")
        obj, entry = json.loads(body), last_entry()
        check("wrong token 401", status == 401 and obj.get("category") == "INVALID_AUTHENTICATION"
              and obj.get("message", "").startswith("Authentication credentials not found"), obj)
        check("wrong token masked", entry["headers"].get("authorization") == "Bearer <wrong>", entry["headers"])

        status, _, body = call("POST", upsert_path("evt-1"), good, auth=None)
        check("missing auth 401", status == 401 and "authorization" not in last_entry()["headers"], status)

        status, hdrs, body = call("POST", upsert_path("mock:status=429"), good)
        obj = json.loads(body)
        check("429 shape", status == 429 and obj.get("errorType") == "RATE_LIMIT"
              and obj.get("policyName") == "TEN_SECONDLY_ROLLING"
              and obj.get("message") == "You have reached your ten_secondly_rolling limit."
              and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
              and hdrs.get("x-hubspot-ratelimit-remaining") == "0", (obj, hdrs))

        status, hdrs, body = call("POST", upsert_path(urllib.parse.quote("mock:status=404", safe="")), good)
        obj = json.loads(body)
        check("404 shape", status == 404 and obj.get("category") == "OBJECT_NOT_FOUND"
              and obj.get("status") == "error" and obj.get("correlationId")
              and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
              and last_entry().get("correlation_id") == obj.get("correlationId"), (obj, hdrs))

        status, _, _ = call("POST", upsert_path("a%2Fb"), good)
        check("percent-decoded path", status == 204 and last_entry()["path"].get("externalEventId") == "a/b",
              last_entry().get("path"))

        status, hdrs, body = call("POST", upsert_path("mock:status=503;retry_after=3;correlation=none"), good)
        obj = json.loads(body)
        check("503 knobs", status == 503 and obj.get("category") == "INTERNAL_ERROR"
              and "x-hubspot-correlation-id" not in hdrs and hdrs.get("retry-after") == "3", (obj, hdrs))

        results = [call("POST", upsert_path("mock:fail_after=2;status=500;tag=x"), good)[0] for _ in range(3)]
        check("fail_after", results == [204, 204, 500], results)

        call("POST", "/__mock/config", {"fault_rate": 1, "fault_status": 502, "body": "html"}, auth=None)
        status, hdrs, body = call("POST", upsert_path("evt-2"), good)
        check("global fault", status == 502 and hdrs.get("content-type") == "text/html", (status, hdrs))
        call("POST", "/__mock/config", {}, auth=None)

        started = time.monotonic()
        try:
            call("POST", upsert_path("mock:hang=1"), good, timeout=0.5)
            hung = False
        except (TimeoutError, socket.timeout, urllib.error.URLError):
            hung = True
        check("hang", hung and time.monotonic() - started < 5, hung)

        try:
            call("POST", upsert_path("mock:close=1"), good)
            reset = False
        except (ConnectionError, urllib.error.URLError, http.client.HTTPException):
            reset = True
        check("close", reset and last_entry().get("status") is None, reset)

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        hdrs = {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "hubspot_events/0.1", "Authorization": "Bearer " + token}
        statuses = []
        for _ in range(3):
            conn.request("POST", upsert_path("keepalive"), json.dumps(good), hdrs)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        sock_reused = conn.sock is not None
        conn.close()
        check("keep-alive", statuses == [204, 204, 204] and sock_reused, statuses)

        entries = json.loads(call("GET", "/__mock/requests")[2])
        seqs = [e["seq"] for e in entries]
        check("seq increasing", seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs)
        call("POST", "/__mock/reset", {}, auth=None)
        check("reset", json.loads(call("GET", "/__mock/requests")[2]) == [], "")

        with open(log_path, "rb") as fh:
            log_text = fh.read().decode()
        lines = [json.loads(line) for line in log_text.splitlines()]
        check("log file", len(lines) == len(entries) and token not in log_text, len(lines))

        # ---- rate limit, daily limit, bad input, fault mix, storm, stats ----
        def config(obj):
            status, _, body = call("POST", "/__mock/config", obj, auth=None)
            return status, json.loads(body)

        def stats(query=""):
            return json.loads(call("GET", "/__mock/stats" + query, auth=None)[2])

        def hs_headers(hdrs):
            return tuple(hdrs.get("x-hubspot-ratelimit-" + k) for k in ("max", "remaining", "interval-milliseconds"))

        call("POST", "/__mock/reset", {}, auth=None)
        check("per-request rate_limit refused", call("POST", upsert_path("mock:rate_limit=1"), good)[0] == 204
              and any("rate_limit" in p for p in last_entry()["knobs"].get("_invalid", [])), last_entry()["knobs"])
        check("config rejects bad fault_mix", config({"fault_mix": "503,boom"})[0] == 400)
        check("new entry fields", all(k in last_entry() for k in ("fault_kind", "limited", "rejected")), last_entry())

        call("POST", "/__mock/reset", {}, auth=None)
        config({"rate_limit": 3, "rate_window_ms": 1000})
        window_start = time.monotonic()
        answers = [call("POST", upsert_path("rl-%d" % n), good) for n in range(4)]
        in_window = time.monotonic() - window_start < 0.9
        check("rate_limit: 3 pass, 4th is 429", [a[0] for a in answers] == [204, 204, 204, 429] or not in_window,
              [a[0] for a in answers])
        check("rate_limit: headers on successes", not in_window or [hs_headers(a[1]) for a in answers[:3]]
              == [("3", "2", "1000"), ("3", "1", "1000"), ("3", "0", "1000")], [hs_headers(a[1]) for a in answers])
        status, hdrs, body = answers[3]
        obj = json.loads(body)
        check("rate_limit: 429 body and headers", not in_window or hs_headers(hdrs) == ("3", "0", "1000")
              and obj.get("policyName") == "TEN_SECONDLY_ROLLING" and obj.get("errorType") == "RATE_LIMIT"
              and obj.get("message") == POLICY_MESSAGES["TEN_SECONDLY_ROLLING"]
              and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
              and last_entry().get("limited") == "rate", (obj, hdrs))
        status, hdrs, _ = call("POST", "/marketing/v3/marketing-events/events/x/register/upsert", good)
        check("rate_limit: headers on an invalid request", status == 400 and hs_headers(hdrs) == ("3", "0", "1000"),
              (status, hdrs))
        time.sleep(max(0.0, window_start + 1.05 - time.monotonic()))
        check("rate_limit: window rolls", call("POST", upsert_path("rl-late"), good)[0] == 204, "")

        call("POST", "/__mock/reset", {}, auth=None)
        config({"rate_limit": 3, "rate_window_ms": 2000})
        check("rate_limit: a 429 answer is not counted", call("POST", upsert_path("mock:status=429"), good)[0] == 429
              and [call("POST", upsert_path("c-%d" % n), good)[0] for n in range(3)] == [204] * 3, "")
        call("POST", "/__mock/reset", {}, auth=None)
        config({"rate_limit": 3, "rate_window_ms": 2000})
        results = []
        workers = [threading.Thread(target=lambda n=n: results.append(call("POST", upsert_path("par-%d" % n), good)[0]))
                   for n in range(10)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        st = stats()
        check("rate_limit: concurrent requests", sorted(results) == [204] * 3 + [429] * 7, results)
        check("stats after concurrency", st["requests"] == 10 and st["accepted"] == 3 and st["responses_429"] == 7
              and st["by_status"] == {"204": 3, "429": 7} and st["by_limit"] == {"rate": 7}
              and st["max_accepted_in_window"] == 3 and st["max_validated_in_window"] == 10
              and st["window_ms"] == 2000 and st["window_used"] == 3, st)

        call("POST", "/__mock/reset", {}, auth=None)
        config({"daily_limit": 2})
        answers = [call("POST", upsert_path("d-%d" % n), good) for n in range(3)]
        obj = json.loads(answers[2][2])
        check("daily_limit", [a[0] for a in answers] == [204, 204, 429]
              and [(a[1].get("x-hubspot-ratelimit-daily"), a[1].get("x-hubspot-ratelimit-daily-remaining"))
                   for a in answers] == [("2", "1"), ("2", "0"), ("2", "0")]
              and obj.get("policyName") == "DAILY" and obj.get("message") == "You have reached your daily limit."
              and hs_headers(answers[0][1]) == ("190", hs_headers(answers[0][1])[1], "10000"), answers)
        check("daily_limit: a 429 answer is not counted", call("POST", "/__mock/reset", {}, auth=None)[0] == 200
              and config({"daily_limit": 2})[0] == 200
              and call("POST", upsert_path("mock:status=429"), good)[1].get("x-hubspot-ratelimit-daily-remaining") == "2"
              and [call("POST", upsert_path("d2-%d" % n), good)[0] for n in range(3)] == [204, 204, 429], "")
        call("POST", "/__mock/reset", {}, auth=None)
        config({"daily_limit": 2})
        check("reset clears the daily count", call("POST", upsert_path("d-x"), good)[1]
              .get("x-hubspot-ratelimit-daily-remaining") == "1", "")

        call("POST", "/__mock/reset", {}, auth=None)
        config({"bad_vids": "5,17,99"})
        three = {"inputs": [dict(good["inputs"][0], vid=v) for v in (1, 17, 5)]}
        status, hdrs, body = call("POST", upsert_path("bv"), three)
        obj = json.loads(body)
        check("bad_vids: 400 naming the first bad vid", status == 400 and obj.get("category") == "VALIDATION_ERROR"
              and "17" in obj.get("message", "") and obj.get("context") == {"vid": ["17"]}
              and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
              and [e["context"]["vid"] for e in obj.get("errors", [])] == [["17"], ["5"]]
              and last_entry().get("rejected") == "bad_vid", obj)
        corr1 = obj.get("correlationId")
        obj2 = json.loads(call("POST", upsert_path("bv"), three)[2])
        check("bad_vids: fresh correlation id", obj2.get("correlationId") not in (None, corr1), obj2)
        check("bad_vids: good vids pass", call("POST", upsert_path("bv"), good)[0] == 204, "")
        check("bad_vids: global list applies to mock: ids",
              call("POST", upsert_path("mock:tag=1"), three)[0] == 400, "")
        config({})
        status, _, body = call("POST", upsert_path("mock:bad_vids=123"), good)
        check("bad_vids per request", status == 400 and json.loads(body).get("context") == {"vid": ["123"]}, body)
        status, _, body = call("POST", upsert_path("mock:bad_event=1"), good)
        obj = json.loads(body)
        check("bad_event", status == 400 and obj.get("category") == "VALIDATION_ERROR"
              and obj.get("message") == "Marketing event mock:bad_event=1 is invalid"
              and last_entry().get("rejected") == "bad_event", obj)

        # fault_mix: the same seed gives the same sequence, which follows random.Random(seed)
        mix = ["500", "502", "503", "504", "423", "429"]
        rng, expected = random.Random(7), []
        for _ in range(16):
            expected.append(int(rng.choice(mix)) if rng.random() < 0.5 else 204)
        runs = []
        for _ in range(2):
            config({"seed": 7, "fault_rate": 0.5, "fault_mix": ",".join(mix)})
            runs.append([call("POST", upsert_path("mix"), good)[0] for _ in range(16)])
        check("fault_mix: seeded and deterministic", runs[0] == runs[1] == expected, (runs, expected))

        def one_fault(kind, timeout=10, **more):
            config(dict({"fault_rate": 1, "fault_mix": kind}, **more))
            try:
                answer = call("POST", upsert_path("fk"), good, timeout=timeout)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                answer = exc
            return answer, last_entry()

        (status, hdrs, body), entry = one_fault("503")
        check("fault 503", status == 503 and json.loads(body).get("category") == "INTERNAL_ERROR"
              and entry.get("fault_kind") == "503" and entry["knobs"].get("fault_hit") is True, (status, entry))
        (status, hdrs, body), entry = one_fault("502")
        check("fault 502 html", status == 502 and hdrs.get("content-type") == "text/html" and b"502" in body, status)
        (status, hdrs, body), entry = one_fault("423")
        check("fault 423", status == 423 and json.loads(body).get("category") == "LOCKED", status)
        (status, hdrs, body), entry = one_fault("429")
        obj = json.loads(body)
        check("fault 429", status == 429 and hdrs.get("retry-after") == "1"
              and obj.get("policyName") == "TEN_SECONDLY_ROLLING" and hdrs.get("x-hubspot-ratelimit-remaining") == "0",
              (status, hdrs, obj))
        answer, entry = one_fault("reset")
        check("fault reset", isinstance(answer, Exception) and entry.get("fault_kind") == "reset"
              and entry.get("status") is None, (answer, entry))
        started = time.monotonic()
        answer, entry = one_fault("slow", timeout=0.3, slow_ms=800)
        check("fault slow: client times out", isinstance(answer, Exception) and entry.get("fault_kind") == "slow"
              and time.monotonic() - started < 2, answer)
        started = time.monotonic()
        answer, entry = one_fault("slow", slow_ms=300)
        check("fault slow: late answer", not isinstance(answer, Exception) and answer[0] == 204
              and time.monotonic() - started >= 0.3, answer)

        call("POST", "/__mock/reset", {}, auth=None)
        config({"fault_rate": 1, "fault_mix": "503,423", "seed": 3})
        for _ in range(6):
            call("POST", upsert_path("st"), good)
        st = stats()
        check("stats by fault kind", sum(st["by_fault_kind"].values()) == 6 and st["accepted"] == 0
              and set(st["by_fault_kind"]) <= {"503", "423"}
              and st["by_status"] == {k: v for k, v in st["by_fault_kind"].items()}, st)

        call("POST", "/__mock/reset", {}, auth=None)
        storm_start = time.monotonic()
        config({"storm_ms": 1500, "rate_limit": 50})
        status, hdrs, body = call("POST", upsert_path("mock:tag=storm"), good)
        obj = json.loads(body)
        check("storm: 429 with Retry-After", status == 429 and hdrs.get("retry-after") in ("1", "2")
              and hs_headers(hdrs) == ("50", "0", "10000") and obj.get("policyName") == "TEN_SECONDLY_ROLLING"
              and last_entry().get("limited") == "storm", (status, hdrs, obj))
        time.sleep(max(0.0, storm_start + 1.55 - time.monotonic()))
        check("storm: over", call("POST", upsert_path("storm-after"), good)[0] == 204, "")
        st = stats()
        check("stats: storm and counts", st["requests"] == 2 and st["by_limit"] == {"storm": 1}
              and st["responses_429"] == 1 and st["accepted"] == 1, st)
        config({"storm_ms": 60000})
        check("storm: reset ends it", call("POST", upsert_path("s1"), good)[0] == 429
              and call("POST", "/__mock/reset", {}, auth=None)[0] == 200
              and call("POST", upsert_path("s2"), good)[0] == 204, "")
        call("POST", "/__mock/reset", {}, auth=None)
        st = stats()
        check("reset clears stats", st["requests"] == 0 and st["by_status"] == {} and st["accepted"] == 0
              and st["max_accepted_in_window"] == 0 and st["daily_used"] == 0 and st["storm_left_ms"] == 0, st)
        check("stats window_ms query", stats("?window_ms=500")["window_ms"] == 500
              and call("GET", "/__mock/stats?window_ms=x", auth=None)[0] == 400, "")
        check("max_in_window", max_in_window([0.0, 0.5, 0.99, 1.0, 1.5, 1.6], 1.0) == 4
              and max_in_window([], 1.0) == 0, "")

        # ---- OAuth: the token endpoint and the tokens it issues ----
        def grant(path="/oauth/v1/token", **fields):
            form = dict({"grant_type": "refresh_token", "client_id": "cid", "client_secret": "s3cret",
                         "refresh_token": "rt-1"}, **fields)
            form = {k: v for k, v in form.items() if v is not None}
            status, _, body = call("POST", path, urllib.parse.urlencode(form).encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=None)
            return status, json.loads(body)

        call("POST", "/__mock/reset", {}, auth=None)
        config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                "oauth_expires_in": 1})
        status, obj = grant()
        check("oauth: a refresh grant", status == 200 and obj.get("access_token", "").startswith("oat-mock-")
              and obj.get("expires_in") == 1 and obj.get("refresh_token") == "rt-1", obj)
        issued = obj.get("access_token")
        check("oauth: the issued token is accepted", call("POST", upsert_path("oa-1"), good, auth=issued)[0] == 204
              and last_entry()["headers"].get("authorization") == "Bearer <oauth>", last_entry())
        check("oauth: the 2026-03 path", grant("/oauth/2026-03/token")[0] == 200, "")
        status, obj = grant(refresh_token="rt-wrong")
        check("oauth: BAD_REFRESH_TOKEN", status == 400 and obj.get("status") == "BAD_REFRESH_TOKEN"
              and "correlationId" in obj, obj)
        check("oauth: BAD_CLIENT_ID", grant(client_id="x")[1].get("status") == "BAD_CLIENT_ID", "")
        check("oauth: BAD_CLIENT_SECRET", grant(client_secret="x")[1].get("status") == "BAD_CLIENT_SECRET", "")
        check("oauth: BAD_GRANT_TYPE", grant(grant_type="password")[1].get("status") == "BAD_GRANT_TYPE", "")
        status, _, _ = call("POST", "/oauth/v1/token", b'{"grant_type":"refresh_token"}', auth=None)
        check("oauth: JSON is not form-encoded", status == 400, status)
        time.sleep(1.1)
        status, _, body = call("POST", upsert_path("oa-2"), good, auth=issued)
        check("oauth: an expired token gets 401 EXPIRED_AUTHENTICATION", status == 401
              and json.loads(body).get("category") == "EXPIRED_AUTHENTICATION", body)
        config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                "oauth_rotate": True})
        status, obj = grant()
        check("oauth: rotation issues a new refresh token", status == 200
              and obj.get("refresh_token", "").startswith("rt-mock-"), obj)
        check("oauth: then the old one is refused", grant()[0] == 400
              and grant(refresh_token=obj.get("refresh_token"))[0] == 200, "")
        status, obj = grant()
        issued = grant(refresh_token=None)  # no refresh token at all
        check("oauth: a missing refresh token is refused", issued[0] == 400, issued)
        config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                "oauth_fail": "invalid_grant"})
        status, obj = grant()
        check("oauth: invalid_grant in OAuth 2.0's shape", status == 400 and obj.get("error") == "invalid_grant", obj)
        config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1"})
        status, obj = grant()
        check("oauth: without rotation the configured refresh token is accepted again", status == 200, obj)
        call("POST", upsert_path("oa-3"), good, auth=obj["access_token"])
        call("POST", "/__mock/oauth/expire", {}, auth=None)
        check("oauth: /__mock/oauth/expire", call("POST", upsert_path("oa-4"), good, auth=obj["access_token"])[0] == 401, "")
        st = stats()
        logged = json.loads(call("GET", "/__mock/oauth/requests", auth=None)[2])
        check("oauth: stats", st["token_requests"] == len(logged) and st["tokens_issued"] == 5
              and st["expired_401"] == 2 and st["oauth_authorized"] == 2, st)
        check("oauth: the secrets are never recorded", "s3cret" not in json.dumps(logged)
              and "rt-1" not in json.dumps(logged), logged)
    finally:
        server.shutdown()
        server.server_close()
        state.stop.set()
    print("%d passed, %d failed" % (passed[0], failed[0]))
    return 0 if failed[0] == 0 else 1


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main(argv=None):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi")
    default_specs = [os.path.join(here, "marketing-events-2026-09.openapi.json"),
                     os.path.join(here, "marketing-events-v3.openapi.json")]
    ap = argparse.ArgumentParser(description="Mock HubSpot Marketing Events API for tests.")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    ap.add_argument("--port-file", help="write the bound port number here (atomically)")
    ap.add_argument("--token-file", help="file with the expected bearer token (re-read per request)")
    ap.add_argument("--spec", action="append",
                    help="an OpenAPI JSON, one per API version; may be repeated "
                         "(default: the 2026-09 and v3 specs in openapi/)")
    ap.add_argument("--log", help="append one JSON object per /marketing/ request (JSON Lines)")
    ap.add_argument("--seed", type=int, help="seed for fault-injection decisions")
    ap.add_argument("--verbose", action="store_true", help="log every request line to stderr")
    ap.add_argument("--lean", action="store_true",
                    help="for benchmarks: keep no entries in memory (GET /__mock/requests answers []; "
                         "the --log file and /__mock/stats still have everything) and skip the "
                         "JSON-schema check of request bodies (routes, query, headers and the token "
                         "are still checked)")
    ap.add_argument("--self-test", action="store_true", help="run the built-in self test and exit")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain) instead of HTTP")
    ap.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    args = ap.parse_args(argv)

    spec_paths = args.spec or default_specs
    if args.self_test:
        return self_test(spec_paths)

    if not is_loopback_host(args.host):
        print("mock_hubspot: refusing non-loopback host %r" % args.host, file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print("mock_hubspot: bad port %d" % args.port, file=sys.stderr)
        return 2
    try:
        specs = Specs.load(spec_paths)
    except (OSError, ValueError, KeyError) as exc:
        print("mock_hubspot: cannot load specs %s: %s" % (", ".join(spec_paths), exc), file=sys.stderr)
        return 2
    try:
        state = State(specs, token_file=args.token_file, log_path=args.log, seed=args.seed, verbose=args.verbose,
                      lean=args.lean)
    except OSError as exc:
        print("mock_hubspot: cannot open log %s: %s" % (args.log, exc), file=sys.stderr)
        return 2
    tls_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("mock_hubspot: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        try:
            tls_context = make_tls_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print("mock_hubspot: cannot load the TLS certificate or key: %s" % exc, file=sys.stderr)
            return 2
    try:
        server = make_server(args.host, args.port, state, tls_context)
    except OSError as exc:
        print("mock_hubspot: cannot bind %s:%d: %s" % (args.host, args.port, exc), file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    if args.port_file:
        try:
            write_port_file(args.port_file, port)
        except OSError as exc:
            print("mock_hubspot: cannot write port file: %s" % exc, file=sys.stderr)
            server.shutdown()
            return 2
    log_err("listening on %s port %d%s" % (args.host, port, " (HTTPS)" if tls_context else ""))
    while not stop.wait(0.5):
        pass
    state.stop.set()
    server.shutdown()
    server.server_close()
    log_err("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
