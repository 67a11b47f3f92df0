"""The self-test (``mock_hubspot.py --self-test``): a mock on a free port,
driven over HTTP; prints "N passed, N failed"."""

import http.client
import json
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from . import control as control_module
from . import knobs as knobs_module
from . import participations as participations_module
from .common import POLICY_MESSAGES, new_correlation_id
from .knobs import GLOBAL_ONLY_KNOBS, KNOB_PARSERS
from .server import make_server
from .spec import Spec, Specs, parse_json_body
from .state import State, log_line, max_in_window

TOKEN = "pat-na1-selftest-0123456789abcdef"
GOOD = {"inputs": [{"vid": 123, "interactionDateTime": 1700000000000, "properties": {}}]}
_TOKEN = object()  # call()'s default: the --token-file token


def upsert_path(event_id, state_name="register", account="acct 1"):
    return "/marketing/v3/marketing-events/events/%s/%s/upsert?externalAccountId=%s" % (
        event_id, state_name, urllib.parse.quote(account, safe=""))


V3_ROOT = "/marketing/v3/marketing-events"
READ_SCOPE = "crm.objects.marketing_events.read"
WRITE_SCOPE = "crm.objects.marketing_events.write"
WRITE_ROUTES = {"upsert": "events/%s/%s/upsert", "email-upsert": "events/%s/%s/email-upsert",
                "create": "attendance/%s/%s/create", "email-create": "attendance/%s/%s/email-create"}


def api_root(version):
    return V3_ROOT if version == "v3" else "/marketing/marketing-events/" + version


def write_path(version, kind, event_id, state_name, account="acct 1"):
    """A subscriber-state write of any kind, in either path form."""
    rest = WRITE_ROUTES[kind] % (urllib.parse.quote(event_id, safe=""), state_name)
    return "%s/%s?externalAccountId=%s" % (api_root(version), rest, urllib.parse.quote(account, safe=""))


def read_path(version, account, event_id, breakdown=True, **query):
    """The breakdown (or the counters) of an event, in either path form."""
    path = "%s/participations/%s/%s%s" % (api_root(version), urllib.parse.quote(account, safe=""),
                                          urllib.parse.quote(event_id, safe=""), "/breakdown" if breakdown else "")
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def vid_inputs(vids, when=None):
    return {"inputs": [{"vid": v, "interactionDateTime": when if when is not None else 1700000000000 + v,
                        "properties": {}} for v in vids]}


def email_inputs(emails, when=1700000000000):
    return {"inputs": [{"email": e, "interactionDateTime": when, "properties": {}, "contactProperties": {}}
                       for e in emails]}


def hs_headers(hdrs):
    return tuple(hdrs.get("x-hubspot-ratelimit-" + k) for k in ("max", "remaining", "interval-milliseconds"))


def daily_headers(hdrs):
    return tuple(hdrs.get("x-hubspot-ratelimit-" + k) for k in ("daily", "daily-remaining"))


HUB_A = ("hub-a-token-0-0123456789", "hub-a-token-1-0123456789")  # hub 101's static tokens
HUB_B = ("hub-b-token-0-0123456789",)  # hub 102's
REDIRECT = "https://app.example/cb"


def as_json(body):
    """A JSON answer's object; {} if it is none (a failed check then reports, not crashes)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


# ---- random values for test_fast_paths --------------------------------------

ODD_VALUES = (None, True, False, 0, -1, 1.5, float("inf"), float("-inf"), 2 ** 31, -2 ** 31 - 1, 2 ** 63,
              -2 ** 63 - 1, 2 ** 63 - 1, "", "x", "REGISTERED", [], {}, [1], {"a": 1}, {"": None})


def schema_instance(spec, schema, rng, depth=0):
    """A value of schema (random optional members), as a body would hold it."""
    try:
        node = spec.resolve(schema)
    except KeyError:  # a $ref to nothing
        return rng.choice(ODD_VALUES)
    if not isinstance(node, dict) or depth > 12:
        return None
    if isinstance(node.get("enum"), list) and node["enum"]:
        return rng.choice(node["enum"])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        props = node.get("properties") or {}
        required = node.get("required") or []
        obj = {}
        for name, sub in props.items():
            if name in required or rng.random() < 0.5:
                obj[name] = schema_instance(spec, sub, rng, depth + 1)
        extra = node.get("additionalProperties", True)
        if isinstance(extra, dict):
            for n in range(rng.randrange(3)):
                obj["k%d" % n] = schema_instance(spec, extra, rng, depth + 1)
        return obj
    if kind == "array":
        return [schema_instance(spec, node.get("items", {}), rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "integer":
        low, high = {"int32": (-2 ** 31, 2 ** 31 - 1)}.get(node.get("format"), (-2 ** 63, 2 ** 63 - 1))
        return rng.choice((low, high, 0, rng.randrange(low, high)))
    if kind == "number":
        return rng.choice((0, 1.25, -3))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(("", "a b", "2026-01-01T00:00:00Z", "\u00e9\"\\"))
    return rng.choice(ODD_VALUES)


def mutated(value, rng):
    """value with one random change somewhere (a copy)."""
    value = json.loads(json.dumps(value))
    path, node = [], value
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    change = rng.randrange(4)
    if change == 0 or not path:
        new = rng.choice(ODD_VALUES)
        if rng.random() < 0.1:
            for _ in range(rng.randrange(90, 110)):
                new = [new] if rng.random() < 0.5 else {"x": new}
    elif change == 1 and isinstance(path[-1][0], dict):
        del path[-1][0][path[-1][1]]
        return value
    elif change == 2 and isinstance(node, dict):
        node["unexpected-%d" % rng.randrange(3)] = rng.choice(ODD_VALUES)
        return value
    else:
        new = rng.choice(ODD_VALUES)
    if not path:
        return new
    parent, key = path[-1]
    parent[key] = new
    return value


def self_test(spec_paths):
    """Run the sections of SelfTest in order; 0 if every check passed."""
    test = SelfTest(spec_paths)
    try:
        for name in SelfTest.SECTIONS:
            getattr(test, name)()
    finally:
        test.stop()
    print("%d passed, %d failed" % (test.passed, test.failed))
    return 0 if test.failed == 0 else 1


class SelfTest:
    SECTIONS = ("test_basics", "test_versions", "test_validation", "test_answer_knobs", "test_connection_and_log",
                "test_limits", "test_bad_input", "test_faults", "test_storm_and_stats", "test_oauth",
                "test_events_and_attendance", "test_echoes", "test_participations", "test_participation_control",
                "test_participation_reads", "test_hubs", "test_hub_limits", "test_hub_revocation", "test_hub_oauth",
                "test_hub_uninstall", "test_knob_docs", "test_fast_paths")

    def __init__(self, spec_paths):
        self.tmpdir = tempfile.mkdtemp(prefix="mock_hubspot_selftest.")
        token_file = os.path.join(self.tmpdir, "token")
        self.token = TOKEN
        with open(token_file, "w") as fh:
            fh.write(self.token + "\n")
        self.log_path = os.path.join(self.tmpdir, "requests.jsonl")
        self.state = State(Specs.load(spec_paths), token_file=token_file, log_path=self.log_path, seed=1)
        self.server = make_server("127.0.0.1", 0, self.state)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.port
        self.passed = self.failed = 0

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.state.stop.set()
        if self.state.log_file is not None:
            self.state.log_file.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # ---- helpers -------------------------------------------------------------

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail))

    def call(self, method, path, body=None, headers=None, auth=_TOKEN, timeout=10):
        """(status, {lower-case header: value}, body bytes) of one request."""
        if auth is _TOKEN:
            auth = self.token
        hdrs = {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "hubspot_events/0.1 selftest"}
        if auth is not None:
            hdrs["Authorization"] = "Bearer " + auth
        hdrs.update(headers or {})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict((k.lower(), v) for k, v in resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict((k.lower(), v) for k, v in err.headers.items()), err.read()

    def last_entry(self):
        entries = json.loads(self.call("GET", "/__mock/requests")[2])
        return entries[-1] if entries else {}

    def config(self, obj):
        status, _, body = self.call("POST", "/__mock/config", obj, auth=None)
        return status, json.loads(body)

    def stats(self, query=""):
        return json.loads(self.call("GET", "/__mock/stats" + query, auth=None)[2])

    def one_fault(self, kind, timeout=10, **more):
        """One request with fault_rate 1 and this fault_mix kind: (answer or exception, log entry)."""
        self.config(dict({"fault_rate": 1, "fault_mix": kind}, **more))
        try:
            answer = self.call("POST", upsert_path("fk"), GOOD, timeout=timeout)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            answer = exc
        return answer, self.last_entry()

    def grant(self, path="/oauth/v1/token", **fields):
        """A refresh grant (the fields given replace the defaults; None drops one): (status, answer)."""
        form = dict({"grant_type": "refresh_token", "client_id": "cid", "client_secret": "s3cret",
                     "refresh_token": "rt-1"}, **fields)
        form = {k: v for k, v in form.items() if v is not None}
        status, _, body = self.call("POST", path, urllib.parse.urlencode(form).encode(),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=None)
        return status, json.loads(body)

    def read(self, version, account, event_id, breakdown=True, **query):
        """(status, answer object or None) of a participation read."""
        status, _, body = self.call("GET", read_path(version, account, event_id, breakdown, **query))
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body

    def answer_problems(self, version, breakdown, obj):
        """What is wrong with a 200 answer of a read by the spec of its version:
        schema violations, and keys the schema does not name."""
        specs = self.state.specs
        spec = specs.by_version["v3" if version == "v3" else specs.newest_date]
        suffix = ("/participations/{externalAccountId}/{externalEventId}"
                  + ("/breakdown" if breakdown else ""))
        template = next(t for t in spec.doc["paths"] if t.endswith(suffix))
        schema = spec.doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        problems = []
        spec.validate(schema, obj, "", problems)

        def unknown_keys(node, value, where):
            node = spec.resolve(node)
            if isinstance(value, dict) and isinstance(node, dict):
                props = node.get("properties") or {}
                for key, item in value.items():
                    if key not in props:
                        problems.append((where + "." + key, "not in the schema"))
                    else:
                        unknown_keys(props[key], item, where + "." + key)
            elif isinstance(value, list) and isinstance(node, dict) and "items" in node:
                for item in value:
                    unknown_keys(node["items"], item, where + "[]")
        unknown_keys(schema, obj, "")
        return problems

    def walk(self, version, account, event_id, limit, **query):
        """Every page of a breakdown at this limit: (contact ids in order, pages,
        problems: what was wrong with any page)."""
        ids, pages, problems, after, seen_after = [], 0, [], None, set()
        while True:
            q = dict(query, limit=limit)
            if after is not None:
                q["after"] = after
            status, obj = self.read(version, account, event_id, **q)
            pages += 1
            entry = self.last_entry()
            if status != 200 or not isinstance(obj, dict):
                problems.append(("status", status, obj))
                break
            problems.extend(self.answer_problems(version, True, obj))
            if entry.get("spec_errors") != [] or entry.get("method") != "GET":
                problems.append(("log", entry))
            page_ids = [int(r["associations"]["contact"]["contactId"]) for r in obj["results"]]
            ids.extend(page_ids)
            if len(page_ids) > limit:
                problems.append(("page longer than the limit", len(page_ids)))
            after = (obj.get("paging") or {}).get("next", {}).get("after")
            if "paging" in obj and (after is None or after in seen_after
                                    or obj["paging"] != {"next": {"after": after}}):
                problems.append(("paging", obj["paging"]))
                break
            if after is None:
                break
            if len(page_ids) != limit:
                problems.append(("a page before the last one is short", len(page_ids)))
            seen_after.add(after)
            if pages > 1000:
                problems.append("endless paging")
                break
        return ids, pages, problems, obj

    def table(self, **query):
        path = "/__mock/participations" + ("?" + urllib.parse.urlencode(query) if query else "")
        return json.loads(self.call("GET", path, auth=None)[2])

    def post(self, path, obj):
        """(status, answer object) of a control POST."""
        status, _, body = self.call("POST", path, obj if isinstance(obj, bytes) else json.dumps(obj).encode(),
                                    auth=None)
        return status, json.loads(body)

    def get(self, path):
        status, _, body = self.call("GET", path, auth=None)
        return status, json.loads(body)

    def define_hubs(self, *hubs):
        return self.post("/__mock/hubs", {"hubs": list(hubs)})

    def hub_stats(self, hub_id):
        return self.stats()["hubs"].get(str(hub_id), {})

    def code_grant(self, code, redirect_uri=REDIRECT, path="/oauth/v1/token", **fields):
        """An authorization-code grant: (status, answer)."""
        return self.grant(path, **dict({"grant_type": "authorization_code", "refresh_token": None, "code": code,
                                        "redirect_uri": redirect_uri}, **fields))

    def control(self, name, obj):
        status, _, body = self.call("POST", "/__mock/participations/" + name,
                                    obj if isinstance(obj, bytes) else json.dumps(obj).encode(), auth=None)
        return status, json.loads(body)

    # ---- the tests, in SECTIONS' order -----------------------------------------

    def test_basics(self):
        """Health, a valid upsert and its log entry."""
        status, _, body = self.call("GET", "/__mock/health")
        self.check("health", status == 200 and json.loads(body) == {"ok": True}, body)

        status, hdrs, body = self.call("POST", upsert_path("evt-1"), GOOD)
        entry = self.last_entry()
        self.check("valid upsert 204", status == 204 and body == b"", (status, body))
        self.check("valid upsert spec_errors", entry.get("spec_errors") == [], entry.get("spec_errors"))
        self.check("valid upsert log fields", entry.get("operation", "").endswith("upsertByContactId")
                   and entry.get("path") == {"externalEventId": "evt-1", "subscriberState": "register"}
                   and entry.get("query") == {"externalAccountId": "acct 1"}
                   and entry.get("headers", {}).get("authorization") == "Bearer <token>"
                   and entry.get("status") == 204
                   and entry.get("correlation_id") == hdrs.get("x-hubspot-correlation-id")
                   and hdrs.get("x-hubspot-ratelimit-max") == "190", entry)

    def test_versions(self):
        """The date-versioned paths and api_versions."""
        # the date-versioned paths: 2026-09 and 2026-03 served, checked against the 2026-09 spec
        for version in ("2026-09", "2026-03"):
            status, _, body = self.call("POST", "/marketing/marketing-events/%s/events/evt-1/register/upsert"
                                        "?externalAccountId=acct" % version, GOOD)
            entry = self.last_entry()
            self.check("date version %s 204" % version, status == 204 and entry.get("spec_errors") == []
                       and entry.get("api_version") == version and entry.get("spec") == "2026-09"
                       and entry.get("operation", "").startswith("post-/marketing/marketing-events/2026-09/"),
                       (status, entry))
        self.check("v3 path checked by the v3 spec", self.call("POST", upsert_path("evt-1"), GOOD)[0] == 204
                   and self.last_entry().get("api_version") == "v3" and self.last_entry().get("spec") == "v3",
                   self.last_entry())
        status, _, body = self.call("POST", "/marketing/marketing-events/2026-09/events/evt-1/register/upsert"
                                    "?externalAccountId=acct", {"inputs": [{"vid": "1"}]})
        self.check("date version body checked", status == 400 and len(self.last_entry()["spec_errors"]) == 3,
                   self.last_entry().get("spec_errors"))
        for version in ("2027-03", "2026-06", "v4"):
            status, _, _ = self.call("POST", "/marketing/marketing-events/%s/events/evt-1/register/upsert"
                                     "?externalAccountId=acct" % version, GOOD)
            self.check("version %s not served: 404" % version, status == 404, status)
        self.call("POST", "/__mock/config", {"api_versions": "2026-09,2027-03"})
        status, _, _ = self.call("POST", "/marketing/marketing-events/2027-03/events/evt-1/register/upsert"
                                 "?externalAccountId=acct", GOOD)
        self.check("api_versions serves 2027-03", status == 204 and self.last_entry().get("api_version") == "2027-03",
                   (status, self.last_entry()))
        status, _, _ = self.call("POST", "/marketing/marketing-events/2026-03/events/evt-1/register/upsert"
                                 "?externalAccountId=acct", GOOD)
        self.check("api_versions no longer serves 2026-03", status == 404, status)
        self.call("POST", "/__mock/config", {})

    def test_validation(self):
        """Requests that break the spec or the rules for headers and the token."""
        bad = {"inputs": [{"vid": "123", "interactionDateTime": 1700000000000, "properties": {}}]}
        status, hdrs, body = self.call("POST", upsert_path("evt-1"), bad)
        obj, entry = json.loads(body), self.last_entry()
        self.check("vid string 400", status == 400 and obj.get("category") == "VALIDATION_ERROR"
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id"), obj)
        self.check("vid string spec_errors", entry.get("spec_errors") and "vid" in entry["spec_errors"][0], entry)

        status, _, body = self.call("POST", upsert_path("evt-1"),
                                    {"inputs": [{"vid": True, "interactionDateTime": 2 ** 63, "properties": {"a": 1}}]})
        self.check("bool/int64/properties rejected", status == 400 and len(self.last_entry()["spec_errors"]) == 3,
                   self.last_entry().get("spec_errors"))

        status, _, body = self.call("POST", "/marketing/v3/marketing-events/events/evt-1/register/upsert", GOOD)
        self.check("missing query 400", status == 400
                   and any("externalAccountId" in e for e in self.last_entry()["spec_errors"]),
                   self.last_entry().get("spec_errors"))

        status, _, body = self.call("POST", upsert_path("evt-1"), GOOD, headers={"User-Agent": "curl/8"})
        self.check("bad user agent 400", status == 400, status)

        status, hdrs, body = self.call("POST", upsert_path("evt-1"), GOOD, auth="wrong-token")
        obj, entry = json.loads(body), self.last_entry()
        self.check("wrong token 401", status == 401 and obj.get("category") == "INVALID_AUTHENTICATION"
                   and obj.get("message", "").startswith("Authentication credentials not found"), obj)
        self.check("wrong token masked", entry["headers"].get("authorization") == "Bearer <wrong>", entry["headers"])

        status, _, body = self.call("POST", upsert_path("evt-1"), GOOD, auth=None)
        self.check("missing auth 401", status == 401 and "authorization" not in self.last_entry()["headers"], status)

    def test_answer_knobs(self):
        """Per-request knobs: error shapes, fail_after, a global fault, hang, close."""
        status, hdrs, body = self.call("POST", upsert_path("mock:status=429"), GOOD)
        obj = json.loads(body)
        self.check("429 shape", status == 429 and obj.get("errorType") == "RATE_LIMIT"
                   and obj.get("policyName") == "TEN_SECONDLY_ROLLING"
                   and obj.get("message") == "You have reached your ten_secondly_rolling limit."
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
                   and hdrs.get("x-hubspot-ratelimit-remaining") == "0", (obj, hdrs))

        status, hdrs, body = self.call("POST", upsert_path(urllib.parse.quote("mock:status=404", safe="")), GOOD)
        obj = json.loads(body)
        self.check("404 shape", status == 404 and obj.get("category") == "OBJECT_NOT_FOUND"
                   and obj.get("status") == "error" and obj.get("correlationId")
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
                   and self.last_entry().get("correlation_id") == obj.get("correlationId"), (obj, hdrs))

        status, _, _ = self.call("POST", upsert_path("a%2Fb"), GOOD)
        self.check("percent-decoded path", status == 204 and self.last_entry()["path"].get("externalEventId") == "a/b",
                   self.last_entry().get("path"))

        status, hdrs, body = self.call("POST", upsert_path("mock:status=503;retry_after=3;correlation=none"), GOOD)
        obj = json.loads(body)
        self.check("503 knobs", status == 503 and obj.get("category") == "INTERNAL_ERROR"
                   and "x-hubspot-correlation-id" not in hdrs and hdrs.get("retry-after") == "3", (obj, hdrs))

        results = [self.call("POST", upsert_path("mock:fail_after=2;status=500;tag=x"), GOOD)[0] for _ in range(3)]
        self.check("fail_after", results == [204, 204, 500], results)

        self.call("POST", "/__mock/config", {"fault_rate": 1, "fault_status": 502, "body": "html"}, auth=None)
        status, hdrs, body = self.call("POST", upsert_path("evt-2"), GOOD)
        self.check("global fault", status == 502 and hdrs.get("content-type") == "text/html", (status, hdrs))
        self.call("POST", "/__mock/config", {}, auth=None)

        started = time.monotonic()
        try:
            self.call("POST", upsert_path("mock:hang=1"), GOOD, timeout=0.5)
            hung = False
        except (TimeoutError, socket.timeout, urllib.error.URLError):
            hung = True
        self.check("hang", hung and time.monotonic() - started < 5, hung)

        try:
            self.call("POST", upsert_path("mock:close=1"), GOOD)
            reset = False
        except (ConnectionError, urllib.error.URLError, http.client.HTTPException):
            reset = True
        self.check("close", reset and self.last_entry().get("status") is None, reset)

    def test_connection_and_log(self):
        """Keep-alive, the request log, reset and the --log file."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        hdrs = {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "hubspot_events/0.1", "Authorization": "Bearer " + self.token}
        statuses = []
        for _ in range(3):
            conn.request("POST", upsert_path("keepalive"), json.dumps(GOOD), hdrs)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        sock_reused = conn.sock is not None
        conn.close()
        self.check("keep-alive", statuses == [204, 204, 204] and sock_reused, statuses)

        entries = json.loads(self.call("GET", "/__mock/requests")[2])
        seqs = [e["seq"] for e in entries]
        self.check("seq increasing", seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs)
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.check("reset", json.loads(self.call("GET", "/__mock/requests")[2]) == [], "")

        with open(self.log_path, "rb") as fh:
            log_text = fh.read().decode()
        lines = [json.loads(line) for line in log_text.splitlines()]
        self.check("log file", len(lines) == len(entries) and self.token not in log_text, len(lines))

    def test_limits(self):
        """rate_limit and daily_limit."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.check("per-request rate_limit refused",
                   self.call("POST", upsert_path("mock:rate_limit=1"), GOOD)[0] == 204
                   and any("rate_limit" in p for p in self.last_entry()["knobs"].get("_invalid", [])),
                   self.last_entry()["knobs"])
        self.check("config rejects bad fault_mix", self.config({"fault_mix": "503,boom"})[0] == 400)
        self.check("new entry fields", all(k in self.last_entry() for k in ("fault_kind", "limited", "rejected")),
                   self.last_entry())

        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"rate_limit": 3, "rate_window_ms": 1000})
        window_start = time.monotonic()
        answers = [self.call("POST", upsert_path("rl-%d" % n), GOOD) for n in range(4)]
        in_window = time.monotonic() - window_start < 0.9
        self.check("rate_limit: 3 pass, 4th is 429", [a[0] for a in answers] == [204, 204, 204, 429] or not in_window,
                   [a[0] for a in answers])
        self.check("rate_limit: headers on successes", not in_window or [hs_headers(a[1]) for a in answers[:3]]
                   == [("3", "2", "1000"), ("3", "1", "1000"), ("3", "0", "1000")], [hs_headers(a[1]) for a in answers])
        status, hdrs, body = answers[3]
        obj = json.loads(body)
        self.check("rate_limit: 429 body and headers", not in_window or hs_headers(hdrs) == ("3", "0", "1000")
                   and obj.get("policyName") == "TEN_SECONDLY_ROLLING" and obj.get("errorType") == "RATE_LIMIT"
                   and obj.get("message") == POLICY_MESSAGES["TEN_SECONDLY_ROLLING"]
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
                   and self.last_entry().get("limited") == "rate", (obj, hdrs))
        status, hdrs, _ = self.call("POST", "/marketing/v3/marketing-events/events/x/register/upsert", GOOD)
        self.check("rate_limit: headers on an invalid request",
                   status == 400 and hs_headers(hdrs) == ("3", "0", "1000"), (status, hdrs))
        time.sleep(max(0.0, window_start + 1.05 - time.monotonic()))
        self.check("rate_limit: window rolls", self.call("POST", upsert_path("rl-late"), GOOD)[0] == 204, "")

        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"rate_limit": 3, "rate_window_ms": 2000})
        self.check("rate_limit: a 429 answer is not counted",
                   self.call("POST", upsert_path("mock:status=429"), GOOD)[0] == 429
                   and [self.call("POST", upsert_path("c-%d" % n), GOOD)[0] for n in range(3)] == [204] * 3, "")
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"rate_limit": 3, "rate_window_ms": 2000})
        results = []
        workers = [threading.Thread(
            target=lambda n=n: results.append(self.call("POST", upsert_path("par-%d" % n), GOOD)[0]))
            for n in range(10)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        st = self.stats()
        self.check("rate_limit: concurrent requests", sorted(results) == [204] * 3 + [429] * 7, results)
        self.check("stats after concurrency", st["requests"] == 10 and st["accepted"] == 3 and st["responses_429"] == 7
                   and st["by_status"] == {"204": 3, "429": 7} and st["by_limit"] == {"rate": 7}
                   and st["max_accepted_in_window"] == 3 and st["max_validated_in_window"] == 10
                   and st["window_ms"] == 2000 and st["window_used"] == 3, st)

        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"daily_limit": 2})
        answers = [self.call("POST", upsert_path("d-%d" % n), GOOD) for n in range(3)]
        obj = json.loads(answers[2][2])
        self.check("daily_limit", [a[0] for a in answers] == [204, 204, 429]
                   and [(a[1].get("x-hubspot-ratelimit-daily"), a[1].get("x-hubspot-ratelimit-daily-remaining"))
                        for a in answers] == [("2", "1"), ("2", "0"), ("2", "0")]
                   and obj.get("policyName") == "DAILY" and obj.get("message") == "You have reached your daily limit."
                   and hs_headers(answers[0][1]) == ("190", hs_headers(answers[0][1])[1], "10000"), answers)
        self.check("daily_limit: a 429 answer is not counted",
                   self.call("POST", "/__mock/reset", {}, auth=None)[0] == 200
                   and self.config({"daily_limit": 2})[0] == 200
                   and self.call("POST", upsert_path("mock:status=429"), GOOD)[1]
                   .get("x-hubspot-ratelimit-daily-remaining") == "2"
                   and [self.call("POST", upsert_path("d2-%d" % n), GOOD)[0] for n in range(3)] == [204, 204, 429], "")
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"daily_limit": 2})
        self.check("reset clears the daily count", self.call("POST", upsert_path("d-x"), GOOD)[1]
                   .get("x-hubspot-ratelimit-daily-remaining") == "1", "")

    def test_bad_input(self):
        """bad_vids and bad_event."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"bad_vids": "5,17,99"})
        three = {"inputs": [dict(GOOD["inputs"][0], vid=v) for v in (1, 17, 5)]}
        status, hdrs, body = self.call("POST", upsert_path("bv"), three)
        obj = json.loads(body)
        self.check("bad_vids: 400 naming the first bad vid", status == 400 and obj.get("category") == "VALIDATION_ERROR"
                   and "17" in obj.get("message", "") and obj.get("context") == {"vid": ["17"]}
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
                   and [e["context"]["vid"] for e in obj.get("errors", [])] == [["17"], ["5"]]
                   and self.last_entry().get("rejected") == "bad_vid", obj)
        corr1 = obj.get("correlationId")
        obj2 = json.loads(self.call("POST", upsert_path("bv"), three)[2])
        self.check("bad_vids: fresh correlation id", obj2.get("correlationId") not in (None, corr1), obj2)
        self.check("bad_vids: good vids pass", self.call("POST", upsert_path("bv"), GOOD)[0] == 204, "")
        self.check("bad_vids: global list applies to mock: ids",
                   self.call("POST", upsert_path("mock:tag=1"), three)[0] == 400, "")
        self.config({})
        status, _, body = self.call("POST", upsert_path("mock:bad_vids=123"), GOOD)
        self.check("bad_vids per request", status == 400 and json.loads(body).get("context") == {"vid": ["123"]}, body)
        status, _, body = self.call("POST", upsert_path("mock:bad_event=1"), GOOD)
        obj = json.loads(body)
        self.check("bad_event", status == 400 and obj.get("category") == "VALIDATION_ERROR"
                   and obj.get("message") == "Marketing event mock:bad_event=1 is invalid"
                   and self.last_entry().get("rejected") == "bad_event", obj)

    def test_faults(self):
        """fault_mix: seeded, and every kind."""
        # fault_mix: the same seed gives the same sequence, which follows random.Random(seed)
        mix = ["500", "502", "503", "504", "423", "429"]
        rng, expected = random.Random(7), []
        for _ in range(16):
            expected.append(int(rng.choice(mix)) if rng.random() < 0.5 else 204)
        runs = []
        for _ in range(2):
            self.config({"seed": 7, "fault_rate": 0.5, "fault_mix": ",".join(mix)})
            runs.append([self.call("POST", upsert_path("mix"), GOOD)[0] for _ in range(16)])
        self.check("fault_mix: seeded and deterministic", runs[0] == runs[1] == expected, (runs, expected))

        (status, hdrs, body), entry = self.one_fault("503")
        self.check("fault 503", status == 503 and json.loads(body).get("category") == "INTERNAL_ERROR"
                   and entry.get("fault_kind") == "503" and entry["knobs"].get("fault_hit") is True, (status, entry))
        (status, hdrs, body), entry = self.one_fault("502")
        self.check("fault 502 html", status == 502 and hdrs.get("content-type") == "text/html" and b"502" in body,
                   status)
        (status, hdrs, body), entry = self.one_fault("423")
        self.check("fault 423", status == 423 and json.loads(body).get("category") == "LOCKED", status)
        (status, hdrs, body), entry = self.one_fault("429")
        obj = json.loads(body)
        self.check("fault 429", status == 429 and hdrs.get("retry-after") == "1"
                   and obj.get("policyName") == "TEN_SECONDLY_ROLLING"
                   and hdrs.get("x-hubspot-ratelimit-remaining") == "0",
                   (status, hdrs, obj))
        answer, entry = self.one_fault("reset")
        self.check("fault reset", isinstance(answer, Exception) and entry.get("fault_kind") == "reset"
                   and entry.get("status") is None, (answer, entry))
        started = time.monotonic()
        answer, entry = self.one_fault("slow", timeout=0.3, slow_ms=800)
        self.check("fault slow: client times out", isinstance(answer, Exception) and entry.get("fault_kind") == "slow"
                   and time.monotonic() - started < 2, answer)
        started = time.monotonic()
        answer, entry = self.one_fault("slow", slow_ms=300)
        self.check("fault slow: late answer", not isinstance(answer, Exception) and answer[0] == 204
                   and time.monotonic() - started >= 0.3, answer)

        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"fault_rate": 1, "fault_mix": "503,423", "seed": 3})
        for _ in range(6):
            self.call("POST", upsert_path("st"), GOOD)
        st = self.stats()
        self.check("stats by fault kind", sum(st["by_fault_kind"].values()) == 6 and st["accepted"] == 0
                   and set(st["by_fault_kind"]) <= {"503", "423"}
                   and st["by_status"] == {k: v for k, v in st["by_fault_kind"].items()}, st)

    def test_storm_and_stats(self):
        """storm_ms and /__mock/stats."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        storm_start = time.monotonic()
        self.config({"storm_ms": 1500, "rate_limit": 50})
        status, hdrs, body = self.call("POST", upsert_path("mock:tag=storm"), GOOD)
        obj = json.loads(body)
        self.check("storm: 429 with Retry-After", status == 429 and hdrs.get("retry-after") in ("1", "2")
                   and hs_headers(hdrs) == ("50", "0", "10000") and obj.get("policyName") == "TEN_SECONDLY_ROLLING"
                   and self.last_entry().get("limited") == "storm", (status, hdrs, obj))
        time.sleep(max(0.0, storm_start + 1.55 - time.monotonic()))
        self.check("storm: over", self.call("POST", upsert_path("storm-after"), GOOD)[0] == 204, "")
        st = self.stats()
        self.check("stats: storm and counts", st["requests"] == 2 and st["by_limit"] == {"storm": 1}
                   and st["responses_429"] == 1 and st["accepted"] == 1, st)
        self.config({"storm_ms": 60000})
        self.check("storm: reset ends it", self.call("POST", upsert_path("s1"), GOOD)[0] == 429
                   and self.call("POST", "/__mock/reset", {}, auth=None)[0] == 200
                   and self.call("POST", upsert_path("s2"), GOOD)[0] == 204, "")
        self.call("POST", "/__mock/reset", {}, auth=None)
        st = self.stats()
        self.check("reset clears stats", st["requests"] == 0 and st["by_status"] == {} and st["accepted"] == 0
                   and st["max_accepted_in_window"] == 0 and st["daily_used"] == 0 and st["storm_left_ms"] == 0, st)
        self.check("stats window_ms query", self.stats("?window_ms=500")["window_ms"] == 500
                   and self.call("GET", "/__mock/stats?window_ms=x", auth=None)[0] == 400, "")
        self.check("max_in_window", max_in_window([0.0, 0.5, 0.99, 1.0, 1.5, 1.6], 1.0) == 4
                   and max_in_window([], 1.0) == 0, "")

    def test_oauth(self):
        """The token endpoint and the tokens it issues."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                     "oauth_expires_in": 1})
        status, obj = self.grant()
        self.check("oauth: a refresh grant", status == 200 and obj.get("access_token", "").startswith("oat-mock-")
                   and obj.get("expires_in") == 1 and obj.get("refresh_token") == "rt-1", obj)
        issued = obj.get("access_token")
        self.check("oauth: the issued token is accepted",
                   self.call("POST", upsert_path("oa-1"), GOOD, auth=issued)[0] == 204
                   and self.last_entry()["headers"].get("authorization") == "Bearer <oauth>", self.last_entry())
        self.check("oauth: the 2026-03 path", self.grant("/oauth/2026-03/token")[0] == 200, "")
        status, obj = self.grant(refresh_token="rt-wrong")
        self.check("oauth: BAD_REFRESH_TOKEN", status == 400 and obj.get("status") == "BAD_REFRESH_TOKEN"
                   and "correlationId" in obj, obj)
        self.check("oauth: BAD_CLIENT_ID", self.grant(client_id="x")[1].get("status") == "BAD_CLIENT_ID", "")
        self.check("oauth: BAD_CLIENT_SECRET",
                   self.grant(client_secret="x")[1].get("status") == "BAD_CLIENT_SECRET", "")
        self.check("oauth: BAD_GRANT_TYPE", self.grant(grant_type="password")[1].get("status") == "BAD_GRANT_TYPE", "")
        status, _, _ = self.call("POST", "/oauth/v1/token", b'{"grant_type":"refresh_token"}', auth=None)
        self.check("oauth: JSON is not form-encoded", status == 400, status)
        time.sleep(1.1)
        status, _, body = self.call("POST", upsert_path("oa-2"), GOOD, auth=issued)
        self.check("oauth: an expired token gets 401 EXPIRED_AUTHENTICATION", status == 401
                   and json.loads(body).get("category") == "EXPIRED_AUTHENTICATION", body)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                     "oauth_rotate": True})
        status, obj = self.grant()
        self.check("oauth: rotation issues a new refresh token", status == 200
                   and obj.get("refresh_token", "").startswith("rt-mock-"), obj)
        self.check("oauth: then the old one is refused", self.grant()[0] == 400
                   and self.grant(refresh_token=obj.get("refresh_token"))[0] == 200, "")
        status, obj = self.grant()
        issued = self.grant(refresh_token=None)  # no refresh token at all
        self.check("oauth: a missing refresh token is refused", issued[0] == 400, issued)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                     "oauth_fail": "invalid_grant"})
        status, obj = self.grant()
        self.check("oauth: invalid_grant in OAuth 2.0's shape",
                   status == 400 and obj.get("error") == "invalid_grant", obj)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1"})
        status, obj = self.grant()
        self.check("oauth: without rotation the configured refresh token is accepted again", status == 200, obj)
        self.call("POST", upsert_path("oa-3"), GOOD, auth=obj["access_token"])
        self.call("POST", "/__mock/oauth/expire", {}, auth=None)
        self.check("oauth: /__mock/oauth/expire",
                   self.call("POST", upsert_path("oa-4"), GOOD, auth=obj["access_token"])[0] == 401, "")
        st = self.stats()
        logged = json.loads(self.call("GET", "/__mock/oauth/requests", auth=None)[2])
        self.check("oauth: stats", st["token_requests"] == len(logged) and st["tokens_issued"] == 5
                   and st["expired_401"] == 2 and st["oauth_authorized"] == 2, st)
        self.check("oauth: the secrets are never recorded", "s3cret" not in json.dumps(logged)
                   and "rt-1" not in json.dumps(logged), logged)

    def test_events_and_attendance(self):
        """known_events, and the per-contact errors of the attendance endpoints."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"known_events": True})
        status, _, body = self.call("POST", upsert_path("ke-1"), GOOD)
        obj = json.loads(body)
        self.check("known_events: an unknown event is 404", status == 404 and obj.get("category") == "OBJECT_NOT_FOUND"
                   and obj.get("message") == "Marketing event ke-1 does not exist"
                   and self.last_entry().get("rejected") == "unknown_event", (status, obj))
        event = {"externalEventId": "ke-1", "externalAccountId": "acct 1", "eventName": "n", "eventOrganizer": "o",
                 "customProperties": []}
        status, _, _ = self.call("POST", "/marketing/v3/marketing-events/events/upsert", {"inputs": [event]})
        self.check("known_events: events/upsert", status == 204 and self.last_entry().get("spec_errors") == [],
                   self.last_entry())
        self.check("known_events: then it is known", self.call("POST", upsert_path("ke-1"), GOOD)[0] == 204
                   and self.call("POST", upsert_path("ke-1", account="acct 2"), GOOD)[0] == 404, "")
        # an event lives in the hub (the HubSpot account) its upsert reached
        self.define_hubs({"hub_id": 301, "tokens": ["ke-hub-a"]}, {"hub_id": 302, "tokens": ["ke-hub-b"]})
        status, _, _ = self.call("POST", "/marketing/v3/marketing-events/events/upsert",
                                 {"inputs": [dict(event, externalEventId="ke-2")]}, auth="ke-hub-a")
        self.check("known_events: known in its hub only", status == 204
                   and self.call("POST", upsert_path("ke-2"), GOOD, auth="ke-hub-a")[0] == 204
                   and self.call("POST", upsert_path("ke-2"), GOOD, auth="ke-hub-b")[0] == 404
                   and self.call("POST", upsert_path("ke-2"), GOOD)[0] == 404, "")
        self.post("/__mock/hubs/clear", {})

        self.config({"bad_vids": [5]})
        inputs = [dict(GOOD["inputs"][0], vid=v) for v in (4, 5)]
        status, _, body = self.call("POST", "/marketing/v3/marketing-events/attendance/ev/attend/create"
                                    "?externalAccountId=acct", {"inputs": inputs})
        obj = json.loads(body)
        self.check("attendance: 200 with one error per bad contact", status == 200
                   and obj.get("status") == "COMPLETE" and obj.get("results") == [{"vid": 4}]
                   and obj.get("numErrors") == 1 and obj["errors"][0].get("context") == {"vid": ["5"]}, obj)
        emails = [{"email": e, "interactionDateTime": 1700000000000, "properties": {}, "contactProperties": {}}
                  for e in ("a@x.com", "B@y.org")]
        status, _, body = self.call("POST", upsert_path_email := "/marketing/v3/marketing-events/attendance/ev/attend/"
                                    "email-create?externalAccountId=acct", {"inputs": emails},
                                    headers={})
        obj = json.loads(body)
        self.check("attendance: email-create", status == 200 and obj.get("numErrors") == 0
                   and obj.get("results") == [{"email": "a@x.com", "vid": 1000}, {"email": "B@y.org", "vid": 1001}],
                   (upsert_path_email, obj))
        self.config({"bad_emails": "b@y.org", "batch_error": True})
        obj = json.loads(self.call("POST", upsert_path_email, {"inputs": emails})[2])
        self.check("attendance: bad_emails and batch_error", obj.get("numErrors") == 2
                   and obj["errors"][0].get("context") == {"email": ["B@y.org"]}
                   and obj["errors"][1].get("category") == "INTERNAL_ERROR", obj)
        self.config({})

    def test_echoes(self):
        """echo_auth and oauth_echo: hostile answers; the logs keep no secret."""
        status, _, body = self.call("POST", upsert_path("mock:echo_auth=1"), GOOD)
        self.check("echo_auth: the answer repeats the token", status == 400 and self.token in body.decode()
                   and self.last_entry().get("rejected") == "echo_auth", body)
        self.check("echo_auth: the log masks it", self.token not in json.dumps(self.last_entry()), self.last_entry())
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                     "oauth_echo": "lower"})
        status, obj = self.grant(client_secret="s3cret/x")
        logged = self.call("GET", "/__mock/oauth/requests", auth=None)[2].decode()
        self.check("oauth_echo: the answer repeats the form", status == 400 and "s3cret%2fx" in obj.get("message", "")
                   and "s3cret" not in logged, (obj, logged))
        self.config({})
        self.call("POST", "/__mock/reset", {}, auth=None)

    def test_participations(self):
        """Writes of every kind and version, then the breakdown and the counters."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        vids = list(range(5001, 5231))  # 230 contacts by vid
        email_vids = {}
        for version, event in (("v3", "pv3"), ("2026-09", "p2609")):
            statuses = [self.call("POST", write_path(version, "upsert", event, "register"), vid_inputs(chunk))[0]
                        for chunk in (vids[:100], vids[100:200], vids[200:])]
            statuses.append(self.call("POST", write_path(version, "email-upsert", event, "register"),
                                      email_inputs(["e1@x.com", "E2@x.com", "e3@x.com"]))[0])
            statuses.append(self.call("POST", write_path(version, "create", event, "attend"),
                                      vid_inputs([5001, 5002], when=1800000000000))[0])
            status, _, body = self.call("POST", write_path(version, "email-create", event, "cancel"),
                                        email_inputs(["e3@x.com", "New@x.com"]))
            statuses.append(status)
            created = {r["email"].lower(): r["vid"] for r in json.loads(body)["results"]}
            self.check("participations %s: the writes" % version, statuses == [204] * 4 + [200] * 2, statuses)
            known = self.table()["emails"]
            self.check("participations %s: one vid per email, the email-create answer's" % version,
                       set(known) == {"e1@x.com", "e2@x.com", "e3@x.com", "new@x.com"}
                       and all(known[e] == v for e, v in created.items())
                       and (not email_vids or known == email_vids)
                       and len(set(known.values())) == 4 and not set(known.values()) & set(vids), (known, created))
            email_vids = known
            everyone = sorted(vids + list(known.values()))
            for limit in (100, 7):
                ids, pages, problems, last = self.walk(version, "acct 1", event, limit)
                self.check("participations %s: limit=%d, every contact once, in order" % (version, limit),
                           ids == everyone and pages == -(-len(everyone) // limit) and not problems
                           and last.get("total") == len(everyone), (pages, problems, len(ids)))
            entries = [e for e in json.loads(self.call("GET", "/__mock/requests")[2])
                       if e["method"] == "GET" and e["path"].get("externalEventId") == event]
            pages = 3 + -(-len(everyone) // 7)
            self.check("participations %s: the reads are logged, valid by the spec" % version,
                       len(entries) == pages and all(
                           e["spec_errors"] == [] and e["status"] == 200 and e["api_version"] == version
                           and e["spec"] == ("v3" if version == "v3" else "2026-09")
                           and e["operation"].endswith("_getParticipationsBreakdownByExternalEventId")
                           and e["path"] == {"externalAccountId": "acct 1", "externalEventId": event}
                           and e["query"].get("limit") in ("100", "7") for e in entries)
                       and entries[1]["query"] == {"limit": "100", "after": entries[1]["query"].get("after")}
                       and entries[0]["query"] == {"limit": "100"}, entries[:2])
            # the state filter and the counters
            by_state = {}
            for wanted, expected in (("ATTENDED", [5001, 5002]),
                                     ("CANCELLED", sorted([known["e3@x.com"], known["new@x.com"]])),
                                     ("REGISTERED", sorted(vids[2:] + [known["e1@x.com"], known["e2@x.com"]])),
                                     ("NO_SHOW", [])):
                ids, _, problems, last = self.walk(version, "acct 1", event, 100, state=wanted)
                by_state[wanted] = len(ids)
                self.check("participations %s: state=%s" % (version, wanted), ids == expected and not problems
                           and last.get("total") == len(expected)
                           and all(r["properties"]["attendanceState"] == wanted for r in last["results"]),
                           (wanted, ids[:5], problems))
            status, obj = self.read(version, "acct 1", event, breakdown=False)
            entry = self.last_entry()
            self.check("participations %s: the counters" % version, status == 200 and obj == {
                "attended": by_state["ATTENDED"], "cancelled": by_state["CANCELLED"], "noShows": 0,
                "registered": by_state["REGISTERED"]} and obj == {"attended": 2, "cancelled": 2, "noShows": 0,
                                                                  "registered": 230}
                       and not self.answer_problems(version, False, obj) and entry["spec_errors"] == []
                       and entry["operation"].endswith("_getParticipationsCountersByEventExternalId"), (obj, entry))
            # contactIdentifier: an id, an email (any case), one that matches nothing
            status, obj = self.read(version, "acct 1", event, contactIdentifier="5003")
            self.check("participations %s: contactIdentifier by id" % version, status == 200 and obj["total"] == 1
                       and obj["results"][0]["associations"]["contact"] == {"contactId": "5003", "email": ""}
                       and obj["results"][0]["properties"] == {"attendanceState": "REGISTERED",
                                                               "occurredAt": 1700000005003}
                       and "paging" not in obj, obj)
            status, obj = self.read(version, "acct 1", event, contactIdentifier="E2@X.com", limit=1)
            self.check("participations %s: contactIdentifier by email" % version, status == 200 and obj["total"] == 1
                       and obj["results"][0]["associations"]["contact"]
                       == {"contactId": str(known["e2@x.com"]), "email": "e2@x.com"}
                       and obj["results"][0]["properties"]["attendanceState"] == "REGISTERED"
                       and not self.answer_problems(version, True, obj), obj)
            self.check("participations %s: contactIdentifier matching nothing" % version,
                       self.read(version, "acct 1", event, contactIdentifier="nobody@x.com")[1]
                       == {"total": 0, "results": []}
                       and self.read(version, "acct 1", event, contactIdentifier="5001", state="REGISTERED")[1]
                       == {"total": 0, "results": []}
                       and self.read(version, "acct 1", event, contactIdentifier="5001", state="ATTENDED")[1]
                       .get("total") == 1, "")
            status, obj = self.read(version, "acct 1", event, contactIdentifier="5001")
            item = obj["results"][0]
            self.check("participations %s: one result's shape" % version,
                       set(item) == {"id", "createdAt", "associations", "properties"}
                       and item["associations"]["marketingEvent"]["externalEventId"] == event
                       and item["associations"]["marketingEvent"]["externalAccountId"] == "acct 1"
                       and item["associations"]["marketingEvent"]["name"] == ""
                       and item["associations"]["marketingEvent"]["marketingEventId"].isdigit()
                       and item["properties"] == {"attendanceState": "ATTENDED", "occurredAt": 1800000000000}
                       and item["createdAt"].endswith("Z"), item)
        status, obj = self.read("2026-03", "acct 1", "p2609", limit=3)
        self.check("participations: 2026-03 reads the same table", status == 200 and obj["total"] == 234
                   and [r["associations"]["contact"]["contactId"] for r in obj["results"]] == ["1000", "1001", "1002"]
                   and self.last_entry().get("api_version") == "2026-03", obj)
        self.check("participations: the other event is apart", self.read("v3", "acct 2", "pv3")[1]
                   == {"total": 0, "results": []} and self.read("v3", "acct 1", "never", breakdown=False)[1]
                   == {"attended": 0, "cancelled": 0, "noShows": 0, "registered": 0}, "")

        # the latest write wins, in the order received (not by interactionDateTime)
        for version, kind, state_name, when in (("v3", "upsert", "register", 300),
                                                ("2026-09", "upsert", "cancel", 400),
                                                ("v3", "create", "attend", 500),
                                                ("2026-03", "create", "register", 200)):
            self.call("POST", write_path(version, kind, "lw", state_name), vid_inputs([7], when=when))
        status, obj = self.read("v3", "acct 1", "lw")
        rows = self.table(externalEventId="lw")["participations"]
        self.check("participations: the latest write wins", obj["total"] == 1
                   and obj["results"][0]["properties"] == {"attendanceState": "REGISTERED", "occurredAt": 200}
                   and rows[0]["writes"] == 4 and rows[0]["source"] == "create" and rows[0]["api_version"] == "2026-03",
                   (obj, rows))
        self.call("POST", write_path("2026-09", "email-upsert", "lw", "attend"), email_inputs(["e1@x.com"], when=900))
        self.call("POST", write_path("v3", "email-create", "lw", "cancel"), email_inputs(["E1@x.com"], when=950))
        status, obj = self.read("2026-09", "acct 1", "lw", contactIdentifier="e1@x.com")
        self.check("participations: by email too", obj["total"] == 1 and obj["results"][0]["properties"]
                   == {"attendanceState": "CANCELLED", "occurredAt": 950}, obj)

        # what is not answered 2xx leaves nothing
        self.config({"fault_rate": 1, "fault_mix": "503"})
        failed = [self.call("POST", write_path("v3", kind, "fw", "register"),
                            email_inputs(["f@x.com"]) if "email" in kind else vid_inputs([9]))[0]
                  for kind in WRITE_ROUTES]
        self.config({"bad_vids": [11]})
        created = self.call("POST", write_path("v3", "create", "fw", "attend"), vid_inputs([10, 11]))[0]
        rejected = self.call("POST", write_path("v3", "upsert", "fw", "attend"), vid_inputs([12, 11]))[0]
        self.config({})
        self.call("POST", write_path("v3", "upsert", "mock:status=500", "register"), vid_inputs([13]))
        try:
            self.call("POST", write_path("v3", "upsert", "mock:close=1", "register"), vid_inputs([14]))
        except (OSError, urllib.error.URLError, http.client.HTTPException):
            pass
        rows = self.table(externalEventId="fw")["participations"]
        self.check("participations: failed writes leave nothing", failed == [503] * 4 and created == 200
                   and rejected == 400 and [r["contactId"] for r in rows] == [10] and "f@x.com" not in
                   self.table()["emails"] and self.table(externalEventId="mock:status=500")["participations"] == []
                   and self.table(externalEventId="mock:close=1")["participations"] == [],
                   (failed, created, rejected, rows))
        try:
            self.call("POST", write_path("v3", "upsert", "mock:delay_ms=600", "register"), vid_inputs([15]),
                      timeout=0.2)
            late = False
        except (OSError, urllib.error.URLError, http.client.HTTPException):
            late = True
        self.check("participations: a 2xx the client did not wait for still counts", late and [
            r["contactId"] for r in self.table(externalEventId="mock:delay_ms=600")["participations"]] == [15], late)

        # percent-encoded path segments
        self.call("POST", write_path("2026-09", "upsert", "a/b c", "register", account="x/y"), vid_inputs([21]))
        status, obj = self.read("v3", "x/y", "a/b c")
        entry = self.last_entry()
        self.check("participations: percent-encoded segments", status == 200 and obj["total"] == 1
                   and entry["path"] == {"externalAccountId": "x/y", "externalEventId": "a/b c"}
                   and "/participations/x%2Fy/a%2Fb%20c/breakdown" in entry["raw_path"], (obj, entry))

    def test_participation_control(self):
        """/__mock/participations, forget, set, reset; the email -> vid mapping."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.check("participations: reset empties the table", self.table() == {"ok": True, "participations": [],
                                                                              "emails": {}}, self.table())
        self.call("POST", write_path("v3", "upsert", "ctl", "register"), vid_inputs(list(range(1, 21))))
        self.call("POST", write_path("v3", "email-upsert", "ctl", "register"), email_inputs(["a@x.com", "b@x.com"]))
        emails = self.table()["emails"]
        self.check("participations: emails get vids from 1000", emails == {"a@x.com": 1000, "b@x.com": 1001}, emails)
        self.call("POST", write_path("v3", "upsert", "ctl2", "register"), vid_inputs([1002]))
        obj = json.loads(self.call("POST", write_path("v3", "email-create", "ctl2", "attend"),
                                   email_inputs(["C@x.com", "A@X.com"]))[2])
        self.check("participations: email-create keeps the mapping and skips held vids",
                   obj["results"] == [{"email": "C@x.com", "vid": 1003}, {"email": "A@X.com", "vid": 1000}], obj)
        rows = self.table(externalAccountId="acct 1", externalEventId="ctl")["participations"]
        self.check("participations: the table", len(rows) == 22 and rows[0] == {
            "externalAccountId": "acct 1", "externalEventId": "ctl", "contactId": 1, "email": None,
            "state": "REGISTERED", "occurredAt": 1700000000001, "createdAt": rows[0]["createdAt"],
            "id": rows[0]["id"], "source": "upsert", "api_version": "v3", "writes": 1}
                   and rows[-1]["email"] == "b@x.com" and rows[-1]["contactId"] == 1001
                   and rows[-1]["source"] == "email-upsert", rows[:1] + rows[-1:])
        status, obj = self.control("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl",
                                              "contacts": [3, "4", "A@x.com", 999, "nobody@x.com", 3]})
        after = [r["contactId"] for r in self.table(externalEventId="ctl")["participations"]]
        ids, _, problems, last = self.walk("v3", "acct 1", "ctl", 7)
        self.check("participations: forget the named ones", status == 200
                   and [r["contactId"] for r in obj["forgotten"]] == [3, 4, 1000]
                   and obj["not_found"] == [999, "nobody@x.com"]
                   and after == [1, 2] + list(range(5, 21)) + [1001] and ids == after and last["total"] == 19
                   and not problems, (obj, after, ids))
        status, obj = self.control("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl", "count": 2})
        self.check("participations: forget the first n", status == 200
                   and [r["contactId"] for r in obj["forgotten"]] == [1, 2]
                   and self.read("v3", "acct 1", "ctl")[1]["total"] == 17, obj)
        status, obj = self.control("set", {"externalAccountId": "acct 1", "externalEventId": "ctl", "contact": 5,
                                           "state": "NO_SHOW", "occurredAt": 1234})
        self.check("participations: set NO_SHOW", status == 200 and len(obj["participations"]) == 1
                   and obj["participations"][0]["state"] == "NO_SHOW" and obj["participations"][0]["source"] == "set",
                   obj)
        status, obj = self.read("2026-09", "acct 1", "ctl", state="NO_SHOW")
        self.check("participations: NO_SHOW in the breakdown", status == 200 and obj["total"] == 1
                   and obj["results"][0]["associations"]["contact"]["contactId"] == "5"
                   and obj["results"][0]["properties"] == {"attendanceState": "NO_SHOW", "occurredAt": 1234}, obj)
        self.check("participations: NO_SHOW in the counters", self.read("v3", "acct 1", "ctl", breakdown=False)[1]
                   == {"attended": 0, "cancelled": 0, "noShows": 1, "registered": 16}, "")
        status, obj = self.control("set", {"externalAccountId": "acct 1", "externalEventId": "ctl",
                                           "contacts": ["new@x.com", "6"], "state": "ATTENDED"})
        self.check("participations: set by email creates the contact", status == 200
                   and [(r["contactId"], r["email"], r["state"]) for r in obj["participations"]]
                   == [(1004, "new@x.com", "ATTENDED"), (6, None, "ATTENDED")]
                   and self.read("v3", "acct 1", "ctl", contactIdentifier="NEW@x.com")[1]["total"] == 1, obj)
        for name, bad in (("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl", "count": 1,
                                      "contacts": [1]}),
                          ("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl"}),
                          ("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl", "contacts": ["abc"]}),
                          ("forget", {"externalEventId": "ctl", "count": 1}),
                          ("forget", {"externalAccountId": "acct 1", "externalEventId": "ctl", "count": -1}),
                          ("set", {"externalAccountId": "acct 1", "externalEventId": "ctl", "contact": 5,
                                   "state": "GONE"}),
                          ("set", {"externalAccountId": "acct 1", "externalEventId": "ctl", "contact": 5,
                                   "state": "REGISTERED", "when": 1}),
                          ("set", {"externalAccountId": "acct 1", "externalEventId": "ctl", "contact": True,
                                   "state": "REGISTERED"}),
                          ("set", b"[1]")):
            status, obj = self.control(name, bad)
            self.check("participations: %s refuses %s" % (name, bad), status == 400 and obj.get("ok") is False, obj)
        self.check("participations: the refusals changed nothing",
                   len(self.table(externalEventId="ctl")["participations"]) == 18, "")
        self.call("POST", "/__mock/reset", {}, auth=None)
        obj = json.loads(self.call("POST", write_path("v3", "email-create", "ctl", "attend"),
                                   email_inputs(["zed@x.com"]))[2])
        self.check("participations: reset clears the table and the mapping", obj["results"] == [
            {"email": "zed@x.com", "vid": 1000}] and [r["contactId"] for r in self.table()["participations"]] == [1000],
                   obj)
        self.call("POST", "/__mock/reset", {}, auth=None)

    def test_participation_reads(self):
        """The reads' validation, auth, scopes, knobs, known_events and the limiter."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.call("POST", write_path("v3", "upsert", "rd", "register"), vid_inputs(list(range(1, 151))))
        for version in ("v3", "2026-09"):
            status, obj = self.read(version, "acct 1", "rd", limit=101)
            entry = self.last_entry()
            self.check("reads %s: limit over 100 is a 400" % version, status == 400
                       and obj.get("category") == "VALIDATION_ERROR" and obj.get("correlationId")
                       and any("limit" in e for e in entry["spec_errors"]), (obj, entry.get("spec_errors")))
            status, obj = self.read(version, "acct 1", "rd", limit=100)
            self.check("reads %s: limit 100 is the maximum" % version, status == 200 and len(obj["results"]) == 100
                       and obj["total"] == 150, status)
            for limit in (50, 75, 1):
                ids, pages, problems, last = self.walk(version, "acct 1", "rd", limit)
                self.check("reads %s: limit=%d divides the total: no empty last page" % (version, limit),
                           ids == list(range(1, 151)) and pages == 150 // limit and not problems
                           and "paging" not in last, (pages, problems))
            status, obj = self.read(version, "acct 1", "rd")
            self.check("reads %s: limit 10 by default" % version, status == 200 and len(obj["results"]) == 10
                       and "after" in obj.get("paging", {}).get("next", {}), status)
            for bad in ({"limit": 0}, {"limit": "x"}, {"state": "registered"}, {"state": "EMPTY"},
                        {"after": "5"}, {"after": "not-a-cursor"}):
                status, obj = self.read(version, "acct 1", "rd", **bad)
                self.check("reads %s: %s is a 400" % (version, bad), status == 400
                           and obj.get("category") == "VALIDATION_ERROR", (status, obj))
        status, obj = self.read("2027-03", "acct 1", "rd")
        self.check("reads: a version not served is a 404", status == 404, status)
        status, _, body = self.call("GET", read_path("v3", "acct 1", "rd"), auth="wrong-token")
        self.check("reads: a wrong token is a 401", status == 401
                   and json.loads(body).get("category") == "INVALID_AUTHENTICATION", body)
        status, _, _ = self.call("GET", read_path("v3", "acct 1", "rd"), headers={"User-Agent": "curl/8"})
        self.check("reads: the headers are checked", status == 400, status)

        # token_scopes, and the 403 knob naming the read scope
        self.config({"token_scopes": WRITE_SCOPE})
        status, hdrs, body = self.call("GET", read_path("v3", "acct 1", "rd"))
        obj = json.loads(body)
        self.check("reads: token_scopes without the read scope is a 403", status == 403
                   and obj.get("category") == "MISSING_SCOPES" and obj.get("context") == {
                       "requiredGranularScopes": [READ_SCOPE]}
                   and obj["errors"][0]["context"] == {"requiredGranularScopes": [READ_SCOPE]}
                   and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id")
                   and self.last_entry().get("status") == 403, obj)
        self.check("reads: the writes still pass",
                   self.call("POST", write_path("v3", "upsert", "rd", "register"), vid_inputs([151]))[0] == 204, "")
        self.config({"token_scopes": READ_SCOPE})
        status, _, body = self.call("POST", write_path("v3", "upsert", "rd", "register"), vid_inputs([152]))
        self.check("reads: token_scopes without the write scope", status == 403
                   and json.loads(body).get("context") == {"requiredGranularScopes": [WRITE_SCOPE]}
                   and self.read("v3", "acct 1", "rd")[0] == 200, body)
        self.config({})
        status, _, body = self.call("GET", read_path("v3", "acct 1", "mock:status=403"))
        self.check("reads: status=403 names the read scope", status == 403
                   and json.loads(body).get("context") == {"requiredGranularScopes": [READ_SCOPE]}, body)
        status, _, body = self.call("POST", write_path("v3", "upsert", "mock:status=403", "register"), GOOD)
        self.check("reads: status=403 on a write still names the write scope", status == 403
                   and json.loads(body).get("context") == {"requiredGranularScopes": [WRITE_SCOPE]}, body)

        # fault injection and the per-request knobs
        self.config({"fault_rate": 1, "fault_mix": "503"})
        status, _ = self.read("v3", "acct 1", "rd")
        self.check("reads: fault injection", status == 503 and self.last_entry().get("fault_kind") == "503", status)
        self.config({})
        self.check("reads: per-request knobs", self.read("v3", "acct 1", "mock:status=502;body=text")[0] == 502
                   and self.read("2026-09", "acct 1", "mock:status=500", breakdown=False)[0] == 500, "")

        # known_events: an event no events/upsert created is a 404; its name
        self.config({"known_events": True})
        status, obj = self.read("v3", "acct 1", "rd")
        self.check("reads: known_events", status == 404 and obj.get("category") == "OBJECT_NOT_FOUND"
                   and self.last_entry().get("rejected") == "unknown_event"
                   and self.read("v3", "acct 1", "rd", breakdown=False)[0] == 404, obj)
        event = {"externalEventId": "rd", "externalAccountId": "acct 1", "eventName": "Webinar", "eventOrganizer": "o",
                 "customProperties": []}
        self.call("POST", V3_ROOT + "/events/upsert", {"inputs": [event]})
        status, obj = self.read("v3", "acct 1", "rd", limit=1)
        self.check("reads: the event's name", status == 200
                   and obj["results"][0]["associations"]["marketingEvent"]["name"] == "Webinar", obj)
        self.config({})

        # the limiter counts the reads as any request
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"rate_limit": 3, "rate_window_ms": 2000})
        window_start = time.monotonic()
        answers = [self.call("GET", read_path("v3", "acct 1", "rd")) for _ in range(3)]
        answers.append(self.call("POST", write_path("v3", "upsert", "rd", "register"), vid_inputs([1])))
        answers.append(self.call("GET", read_path("2026-09", "acct 1", "rd", breakdown=False)))
        in_window = time.monotonic() - window_start < 1.8
        st = self.stats()
        self.check("reads: the limiter counts them", not in_window or (
            [a[0] for a in answers] == [200, 200, 200, 429, 429]
            and [hs_headers(a[1]) for a in answers[:3]] == [("3", "2", "2000"), ("3", "1", "2000"), ("3", "0", "2000")]
            and st["accepted"] == 3 and st["responses_429"] == 2 and st["by_status"] == {"200": 3, "429": 2}),
                   ([a[0] for a in answers], st))
        self.check("reads: a write refused by the limiter leaves nothing",
                   self.table(externalEventId="rd")["participations"] == [], "")
        self.config({})
        self.call("POST", "/__mock/reset", {}, auth=None)

    def test_hubs(self):
        """Hubs: their definition, log fields, headers and stats."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({})
        status, obj = self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 3, "rate_window_ms": 1000},
                                       {"hub_id": 102, "tokens": list(HUB_B), "rate_limit": 5, "rate_window_ms": 1000,
                                        "daily_limit": 100})
        self.check("hubs: defined", status == 200 and [h["hub_id"] for h in obj.get("hubs", [])] == [101, 102]
                   and obj["hubs"][0]["tokens"] == ["static:0", "static:1"] and obj["hubs"][0]["rate_limit"] == 3
                   and obj["hubs"][1]["daily_limit"] == 100 and obj["hubs"][0]["installed"] is False
                   and not any(t in json.dumps(obj) for t in HUB_A + HUB_B), obj)
        status, obj = self.define_hubs({"hub_id": 103, "tokens": []})
        self.check("hubs: defaults", status == 200 and obj["hubs"][0]["rate_window_ms"] == 10000
                   and obj["hubs"][0]["rate_limit"] is None and obj["hubs"][0]["daily_limit"] is None, obj)
        status, obj = self.get("/__mock/hubs")
        self.check("hubs: listed", status == 200 and [h["hub_id"] for h in obj["hubs"]] == [101, 102, 103]
                   and obj["hubs"][0]["stats"]["requests"] == 0, obj)
        for name, body in (("a token of two hubs", {"hubs": [{"hub_id": 104, "tokens": [HUB_A[1]]}]}),
                           ("unknown field", {"hubs": [{"hub_id": 104, "tokens": [], "limit": 3}]}),
                           ("bad hub_id", {"hubs": [{"hub_id": "104", "tokens": []}]}),
                           ("hub_id twice", {"hubs": [{"hub_id": 104}, {"hub_id": 104}]}),
                           ("a token twice", {"hubs": [{"hub_id": 104, "tokens": ["t-1", "t-1"]}]}),
                           ("bad rate_window_ms", {"hubs": [{"hub_id": 104, "rate_window_ms": 0}]}),
                           ("padded token", {"hubs": [{"hub_id": 104, "tokens": [" t-2"]}]}),
                           ("not a list", {"hubs": {"hub_id": 104}}), ("no hubs", {})):
            status, obj = self.post("/__mock/hubs", body)
            self.check("hubs: refused: " + name, status == 400 and obj.get("ok") is False
                       and HUB_A[1] not in obj.get("error", ""), (status, obj))
        self.check("hubs: a refused post changes nothing",
                   [h["hub_id"] for h in self.get("/__mock/hubs")[1]["hubs"]] == [101, 102, 103], "")

        # the token-file token: no hub, the old headers
        status, hdrs, _ = self.call("POST", upsert_path("hub-none"), GOOD)
        entry = self.last_entry()
        self.check("hubs: the token file's token is no hub's", status == 204 and entry.get("hub_id") is None
                   and "token_label" in entry and entry["token_label"] is None
                   and hs_headers(hdrs)[0] == "190", (entry, hdrs))
        status, hdrs, _ = self.call("POST", upsert_path("hub-a"), GOOD, auth=HUB_A[1])
        entry = self.last_entry()
        self.check("hubs: a static token is its hub's", status == 204 and entry.get("hub_id") == 101
                   and entry.get("token_label") == "static:1"
                   and entry["headers"].get("authorization") == "Bearer <token>", entry)
        self.check("hubs: the hub's headers", hs_headers(hdrs) == ("3", "2", "1000")
                   and daily_headers(hdrs) == (None, None), hdrs)
        status, hdrs, _ = self.call("POST", upsert_path("hub-b"), vid_inputs([1, 2, 3]), auth=HUB_B[0])
        self.check("hubs: the other hub's headers", status == 204 and self.last_entry().get("hub_id") == 102
                   and self.last_entry().get("token_label") == "static:0"
                   and hs_headers(hdrs) == ("5", "4", "1000") and daily_headers(hdrs) == ("100", "99"), hdrs)
        status, hdrs, _ = self.call("POST", "/marketing/v3/marketing-events/events/x/register/upsert", GOOD,
                                    auth=HUB_B[0])
        self.check("hubs: an invalid request is the hub's too", status == 400
                   and self.last_entry().get("hub_id") == 102 and hs_headers(hdrs) == ("5", "4", "1000"),
                   (status, hdrs))
        status, hdrs, _ = self.call("POST", upsert_path("hub-c"), GOOD, auth=None, headers={
            "Authorization": "Bearer " + "no-hub-token"})
        self.check("hubs: an unknown token is no hub's", status == 401 and self.last_entry().get("hub_id") is None,
                   (status, self.last_entry()))
        hub_b = self.hub_stats(102)
        self.check("hubs: stats", hub_b.get("requests") == 2 and hub_b.get("ok") == 1 and hub_b.get("limited") == 0
                   and hub_b.get("unauthorized") == 0 and hub_b.get("contacts") == 4 and hub_b.get("contacts_ok") == 3
                   and hub_b.get("by_status") == {"204": 1, "400": 1} and hub_b.get("max_in_window") == 2
                   and hub_b.get("window_used") == 1 and hub_b.get("daily_used") == 1
                   and isinstance(hub_b.get("first_request_time"), float)
                   and hub_b["first_request_time"] <= hub_b["last_request_time"] <= time.time(), hub_b)
        self.check("hubs: stats in GET /__mock/hubs too", self.get("/__mock/hubs")[1]["hubs"][1]["stats"]["requests"]
                   == 2 and self.hub_stats(103) == dict(self.hub_stats(103), requests=0, first_request_time=None), "")
        self.call("POST", "/__mock/reset", {}, auth=None)
        hubs = self.get("/__mock/hubs")[1]["hubs"]
        self.check("hubs: reset keeps the hubs, clears their counters",
                   [h["hub_id"] for h in hubs] == [101, 102, 103] and hubs[1]["stats"]["requests"] == 0
                   and hubs[1]["stats"]["daily_used"] == 0 and hubs[1]["stats"]["max_in_window"] == 0
                   and self.call("POST", upsert_path("hub-b2"), GOOD, auth=HUB_B[0])[0] == 204, hubs)

    def test_hub_limits(self):
        """Each hub's limiter, on its own and under the global one; max_in_window."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({})
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 3, "rate_window_ms": 1000},
                         {"hub_id": 102, "tokens": list(HUB_B), "rate_limit": 5, "rate_window_ms": 1000,
                          "daily_limit": 100})
        start = time.monotonic()
        a_answers, b_answers = [], []
        for n in range(6):  # interleaved: 4 of hub 101 (both tokens), 6 of hub 102
            if n < 4:
                a_answers.append(self.call("POST", upsert_path("la-%d" % n), GOOD, auth=HUB_A[n % 2]))
            b_answers.append(self.call("POST", upsert_path("lb-%d" % n), GOOD, auth=HUB_B[0]))
        in_window = time.monotonic() - start < 0.9
        if in_window:
            self.check("hub limits: each hub limited on its own", [a[0] for a in a_answers] == [204, 204, 204, 429]
                       and [b[0] for b in b_answers] == [204] * 5 + [429],
                       ([a[0] for a in a_answers], [b[0] for b in b_answers]))
            self.check("hub limits: the headers of each", [hs_headers(a[1]) for a in a_answers]
                       == [("3", "2", "1000"), ("3", "1", "1000"), ("3", "0", "1000"), ("3", "0", "1000")]
                       and [hs_headers(b[1])[1] for b in b_answers] == ["4", "3", "2", "1", "0", "0"]
                       and [daily_headers(b[1]) for b in b_answers][4:] == [("100", "95"), ("100", "95")],
                       ([hs_headers(a[1]) for a in a_answers], [(hs_headers(b[1]), daily_headers(b[1]))
                                                                for b in b_answers]))
            status, hdrs, body = a_answers[3]
            obj = as_json(body)
            self.check("hub limits: HubSpot's 429 body", obj.get("policyName") == "TEN_SECONDLY_ROLLING"
                       and obj.get("errorType") == "RATE_LIMIT" and obj.get("status") == "error"
                       and obj.get("message") == POLICY_MESSAGES["TEN_SECONDLY_ROLLING"]
                       and obj.get("correlationId") == hdrs.get("x-hubspot-correlation-id"), obj)
            entries = json.loads(self.call("GET", "/__mock/requests")[2])
            limited = [(e["hub_id"], e["token_label"], e["limited"]) for e in entries if e["status"] == 429]
            self.check("hub limits: logged", limited == [(101, "static:1", "hub_rate"), (102, "static:0", "hub_rate")],
                       limited)
            a, b = self.hub_stats(101), self.hub_stats(102)
            self.check("hub limits: stats", a["requests"] == 4 and a["ok"] == 3 and a["limited"] == 1
                       and a["by_limit"] == {"hub_rate": 1} and a["max_in_window"] == 4 and a["window_used"] == 3
                       and b["requests"] == 6 and b["limited"] == 1 and b["max_in_window"] == 6
                       and self.stats()["responses_429"] == 2, (a, b))
        time.sleep(max(0.0, start + 1.05 - time.monotonic()))
        self.check("hub limits: the window rolls", self.call("POST", upsert_path("la-late"), GOOD,
                                                             auth=HUB_A[0])[0] == 204, "")

        # a client that keeps to the limit: max_in_window <= rate_limit
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 3, "rate_window_ms": 400})
        statuses = []
        for n in range(9):
            if n and n % 3 == 0:
                time.sleep(0.45)
            statuses.append(self.call("POST", upsert_path("paced-%d" % n), GOOD, auth=HUB_A[0])[0])
        a = self.hub_stats(101)
        self.check("hub limits: max_in_window of a paced client", statuses == [204] * 9 and a["max_in_window"] == 3
                   and a["window_ms"] == 400 and a["limited"] == 0, (statuses, a))

        # concurrency: exactly rate_limit pass
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 3, "rate_window_ms": 5000})
        results = []
        workers = [threading.Thread(target=lambda n=n: results.append(
            self.call("POST", upsert_path("hpar-%d" % n), GOOD, auth=HUB_A[n % 2])[0])) for n in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        a = self.hub_stats(101)
        self.check("hub limits: concurrent requests", sorted(results) == [204] * 3 + [429] * 5
                   and a["ok"] == 3 and a["limited"] == 5 and a["max_in_window"] == 8, (results, a))

        # the global rate_limit still applies on top of the hubs'
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 3, "rate_window_ms": 10000},
                         {"hub_id": 102, "tokens": list(HUB_B), "rate_limit": 5, "rate_window_ms": 10000})
        self.config({"rate_limit": 2, "rate_window_ms": 10000})
        answers = [self.call("POST", upsert_path("g-%d" % n), GOOD, auth=token)
                   for n, token in enumerate((HUB_A[0], HUB_B[0], HUB_A[0]))]
        self.check("hub limits: the global rate_limit on top", [a[0] for a in answers] == [204, 204, 429]
                   and self.last_entry().get("limited") == "rate" and hs_headers(answers[2][1]) == ("3", "2", "10000")
                   and self.stats()["window_used"] == 2 and self.hub_stats(101)["window_used"] == 1,
                   ([a[0] for a in answers], self.last_entry(), answers[2][1]))
        self.config({})

        # a hub's daily limit; a mock:status=429 answer is not counted
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.define_hubs({"hub_id": 103, "tokens": ["hub-c-token"], "daily_limit": 2})
        answers = [self.call("POST", upsert_path(ev), GOOD, auth="hub-c-token")
                   for ev in ("mock:status=429", "hd-1", "hd-2", "hd-3")]
        obj = as_json(answers[3][2])
        self.check("hub limits: daily_limit", [a[0] for a in answers] == [429, 204, 204, 429]
                   and [daily_headers(a[1]) for a in answers] == [("2", "2"), ("2", "1"), ("2", "0"), ("2", "0")]
                   and hs_headers(answers[1][1])[0] == "190" and obj.get("policyName") == "DAILY"
                   and self.last_entry().get("limited") == "hub_daily", answers)
        self.call("POST", "/__mock/hubs/clear", {}, auth=None)

    def test_hub_revocation(self):
        """Revoking a static token, re-adding it, clearing the hubs; no token in the log."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({})
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 10, "rate_window_ms": 1000})
        status, _, unknown_body = self.call("POST", upsert_path("rv-0"), GOOD, auth="no-hub-token")
        status, obj = self.post("/__mock/hubs/revoke", {"token": HUB_A[0]})
        self.check("revoke: a static token", status == 200 and obj == {"ok": True, "hub_id": 101,
                                                                        "revoked": ["static:0"]}, obj)
        status, hdrs, body = self.call("POST", upsert_path("rv-1"), GOOD, auth=HUB_A[0])
        answer, unknown = as_json(body), as_json(unknown_body)
        entry = self.last_entry()
        self.check("revoke: 401 INVALID_AUTHENTICATION, an unknown token's body", status == 401
                   and answer.get("category") == "INVALID_AUTHENTICATION" and sorted(answer) == sorted(unknown)
                   and answer.get("message") == unknown.get("message") and hs_headers(hdrs) == ("10", "10", "1000"),
                   (answer, unknown, hdrs))
        self.check("revoke: logged as the hub's", entry.get("hub_id") == 101 and entry.get("token_label") == "static:0"
                   and entry["headers"].get("authorization") == "Bearer <revoked>"
                   and entry.get("status") == 401, entry)
        self.check("revoke: the hub's other token works",
                   self.call("POST", upsert_path("rv-2"), GOOD, auth=HUB_A[1])[0] == 204, "")
        a = self.hub_stats(101)
        self.check("revoke: stats", a["unauthorized"] == 1 and a["requests"] == 2 and a["max_in_window"] == 1
                   and self.get("/__mock/hubs")[1]["hubs"][0]["revoked"] == ["static:0"], a)
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.check("revoke: survives reset", self.call("POST", upsert_path("rv-3"), GOOD, auth=HUB_A[0])[0] == 401, "")
        self.define_hubs({"hub_id": 101, "tokens": list(HUB_A), "rate_limit": 10, "rate_window_ms": 1000})
        self.check("revoke: re-adding the token", self.call("POST", upsert_path("rv-4"), GOOD, auth=HUB_A[0])[0] == 204
                   and self.get("/__mock/hubs")[1]["hubs"][0]["revoked"] == []
                   and self.hub_stats(101)["requests"] == 2, self.hub_stats(101))
        for name, body in (("unknown token", {"token": "no-hub-token"}),
                           ("unknown hub", {"hub_id": 999, "oauth": True}),
                           ("oauth false", {"hub_id": 101, "oauth": False}),
                           ("both", {"token": HUB_A[0], "hub_id": 101}),
                           ("empty", {})):
            status, obj = self.post("/__mock/hubs/revoke", body)
            self.check("revoke: refused: " + name, status == 400 and HUB_A[0] not in obj.get("error", "")
                       and "no-hub-token" not in obj.get("error", ""), (status, obj))

        # without a token file any token is accepted, but a revoked one is not
        self.state.token_file, token_file = None, self.state.token_file
        try:
            self.post("/__mock/hubs/revoke", {"token": HUB_A[0]})
            self.check("revoke: refused even when any token goes",
                       self.call("POST", upsert_path("rv-5"), GOOD, auth="any-token")[0] == 204
                       and self.call("POST", upsert_path("rv-6"), GOOD, auth=HUB_A[0])[0] == 401, "")
        finally:
            self.state.token_file = token_file

        status, obj = self.post("/__mock/hubs/clear", {})
        self.check("hubs/clear", status == 200 and obj == {"ok": True, "removed": 1}
                   and self.get("/__mock/hubs")[1]["hubs"] == [] and self.stats()["hubs"] == {}
                   and self.call("POST", upsert_path("rv-7"), GOOD, auth=HUB_A[1])[0] == 401
                   and self.last_entry().get("hub_id") is None, obj)
        with open(self.log_path, "rb") as fh:
            log_text = fh.read().decode()
        logged = self.call("GET", "/__mock/requests")[2].decode() + log_text
        self.check("hubs: no token in any log entry",
                   not any(t in logged for t in HUB_A + HUB_B + ("hub-c-token",)), "")

    def test_hub_oauth(self):
        """The authorization-code grant, a hub's refresh tokens, rotation, revocation of its access tokens."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1"})
        self.define_hubs({"hub_id": 201, "rate_limit": 4, "rate_window_ms": 1000}, {"hub_id": 202})
        self.check("codes: minted", self.post("/__mock/oauth/codes", {"code": "code-201", "hub_id": 201,
                                                                      "redirect_uri": REDIRECT}) ==
                   (200, {"ok": True, "hub_id": 201}), "")
        for name, body in (("unknown hub", {"code": "code-x", "hub_id": 999, "redirect_uri": REDIRECT}),
                           ("minted twice", {"code": "code-201", "hub_id": 201, "redirect_uri": REDIRECT}),
                           ("no redirect_uri", {"code": "code-y", "hub_id": 201}),
                           ("unknown field", {"code": "code-z", "hub_id": 201, "redirect_uri": REDIRECT, "x": 1})):
            self.check("codes: refused: " + name, self.post("/__mock/oauth/codes", body)[0] == 400, body)

        status, obj = self.code_grant("code-201", client_secret="wrong")
        self.check("code grant: wrong client secret", status == 400 and obj.get("status") == "BAD_CLIENT_SECRET"
                   and "correlationId" in obj, obj)
        self.check("code grant: wrong client id", self.code_grant("code-201", client_id="x")[1].get("status")
                   == "BAD_CLIENT_ID", "")
        status, obj = self.code_grant("code-201", redirect_uri="https://evil.example/cb")
        self.check("code grant: wrong redirect_uri", status == 400 and obj.get("error") == "invalid_grant"
                   and "redirect_uri" in obj.get("error_description", ""), obj)
        self.check("code grant: no redirect_uri", self.code_grant("code-201", redirect_uri=None)[1].get("error")
                   == "invalid_grant", "")
        status, obj = self.code_grant("code-201", refresh_token="rt-1")
        self.check("code grant: an unknown field", status == 400 and obj.get("status") == "BAD_REQUEST"
                   and "refresh_token" in obj.get("message", ""), obj)
        status, _, body = self.call("POST", "/oauth/v1/token?redirect_uri=x", urllib.parse.urlencode(
            {"grant_type": "authorization_code", "client_id": "cid", "client_secret": "s3cret",
             "code": "code-201", "redirect_uri": REDIRECT}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=None)
        self.check("code grant: nothing in the query string", status == 400, body)
        status, obj = self.code_grant("code-201")
        self.check("code grant: success", status == 200 and set(obj) == {
            "token_type", "refresh_token", "access_token", "expires_in", "hub_id", "token_use"}
            and obj["token_type"] == "bearer" and obj["hub_id"] == 201 and obj["expires_in"] == 1800
            and obj["token_use"] == "access_token" and obj["access_token"].startswith("oat-mock-")
            and obj["refresh_token"].startswith("rt-mock-"), obj)
        access, refresh = obj.get("access_token"), obj.get("refresh_token")
        status, obj = self.code_grant("code-201")
        self.check("code grant: a code is single use", status == 400 and obj.get("error") == "invalid_grant"
                   and "already used" in obj.get("error_description", ""), obj)
        self.check("code grant: an unknown code", self.code_grant("code-nope")[1].get("error") == "invalid_grant", "")
        self.post("/__mock/oauth/codes", {"code": "code-202", "hub_id": 202, "redirect_uri": REDIRECT})
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_refresh_token": "rt-1",
                     "oauth_expires_in": 600})
        status, obj = self.code_grant("code-202", path="/oauth/2026-03/token")
        self.check("code grant: the 2026-03 path, oauth_expires_in", status == 200 and obj.get("hub_id") == 202
                   and obj.get("expires_in") == 600, obj)
        access_202, refresh_202 = obj.get("access_token"), obj.get("refresh_token")
        self.check("code grant: the app is installed", [h["installed"] for h in self.get("/__mock/hubs")[1]["hubs"]]
                   == [True, True], "")

        status, hdrs, _ = self.call("POST", upsert_path("ho-1"), GOOD, auth=access)
        entry = self.last_entry()
        self.check("hub oauth: the access token is its hub's", status == 204 and entry.get("hub_id") == 201
                   and entry.get("token_label") == "oauth:1"
                   and entry["headers"].get("authorization") == "Bearer <oauth>"
                   and hs_headers(hdrs) == ("4", "3", "1000"), (entry, hdrs))
        status, obj = self.grant(refresh_token=refresh)
        self.check("hub oauth: refresh", status == 200 and obj.get("hub_id") == 201 and obj.get("refresh_token")
                   == refresh and obj.get("access_token") not in (None, access) and obj.get("expires_in") == 600, obj)
        access2 = obj.get("access_token")
        self.check("hub oauth: the refreshed token",
                   self.call("POST", upsert_path("ho-2"), GOOD, auth=access2)[0] == 204
                   and self.last_entry().get("token_label") == "oauth:2"
                   and self.call("POST", upsert_path("ho-3"), GOOD, auth=access)[0] == 204, "")
        status, obj = self.grant()
        self.check("hub oauth: the single refresh token still works", status == 200 and "hub_id" not in obj, obj)
        self.call("POST", upsert_path("ho-4"), GOOD, auth=obj.get("access_token"))
        entry = self.last_entry()
        self.check("hub oauth: its access token is no hub's", entry.get("status") == 204 and entry.get("hub_id") is None
                   and entry.get("token_label") is None, entry)

        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret", "oauth_rotate": True})
        status, obj = self.grant(refresh_token=refresh)
        rotated = obj.get("refresh_token")
        self.check("hub oauth: rotation", status == 200 and obj.get("hub_id") == 201
                   and rotated not in (None, refresh), obj)
        status, obj = self.grant(refresh_token=refresh)
        self.check("hub oauth: the replaced refresh token is refused", status == 400
                   and obj.get("error") == "invalid_grant", obj)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret"})
        self.check("hub oauth: ... for good", self.grant(refresh_token=refresh)[0] == 400
                   and self.grant(refresh_token=rotated)[0] == 200, "")
        self.check("hub oauth: the client is checked", self.grant(refresh_token=rotated, client_secret="x")[1]
                   .get("status") == "BAD_CLIENT_SECRET", "")

        status, obj = self.post("/__mock/hubs/revoke", {"hub_id": 201, "oauth": True})
        self.check("hub oauth: revoke the access tokens", status == 200 and obj.get("hub_id") == 201
                   and obj.get("revoked") == ["oauth:1", "oauth:2", "oauth:3", "oauth:4"], obj)
        status, _, body = self.call("POST", upsert_path("ho-5"), GOOD, auth=access2)
        self.check("hub oauth: a revoked access token", status == 401
                   and as_json(body).get("category") == "INVALID_AUTHENTICATION"
                   and self.last_entry().get("token_label") == "oauth:2", body)
        self.check("hub oauth: the other hub's token works",
                   self.call("POST", upsert_path("ho-6"), GOOD, auth=access_202)[0] == 204, "")
        status, obj = self.grant(refresh_token=rotated)
        self.check("hub oauth: a refresh after the revocation", status == 200 and
                   self.call("POST", upsert_path("ho-7"), GOOD, auth=obj.get("access_token"))[0] == 204, obj)
        self.call("POST", "/__mock/oauth/expire", {}, auth=None)
        status, _, body = self.call("POST", upsert_path("ho-8"), GOOD, auth=obj.get("access_token"))
        self.check("hub oauth: an expired access token", status == 401
                   and as_json(body).get("category") == "EXPIRED_AUTHENTICATION"
                   and self.last_entry().get("hub_id") == 201, body)

        status, obj = self.get("/__mock/oauth/issued?hub_id=201")
        tokens = ([r["token"] for r in obj.get("refresh_tokens", [])]
                  + [a["token"] for a in obj.get("access_tokens", [])])
        self.check("oauth/issued", status == 200 and {refresh, rotated, access, access2} <= set(tokens)
                   and access_202 not in tokens and all(r["hub_id"] == 201 for r in obj["refresh_tokens"])
                   and [r["invalid"] for r in obj["refresh_tokens"]] == ["rotated", None], obj)
        self.check("oauth/issued: every hub", refresh_202 in json.dumps(self.get("/__mock/oauth/issued")[1])
                   and self.get("/__mock/oauth/issued?hub_id=999")[0] == 400
                   and self.get("/__mock/oauth/issued?hub_id=x")[0] == 400, "")
        logged = json.loads(self.call("GET", "/__mock/oauth/requests", auth=None)[2])
        codes = [e for e in logged if e.get("grant_type") == "authorization_code"]
        self.check("hub oauth: the code grants logged", [(e["status"], e["hub_id"], e["refusal"]) for e in codes] == [
            (400, 201, "BAD_CLIENT_SECRET"), (400, 201, "BAD_CLIENT_ID"), (400, 201, "invalid_grant"),
            (400, 201, "invalid_grant"), (400, None, "BAD_REQUEST"), (400, None, "BAD_REQUEST"), (200, 201, None),
            (400, 201, "invalid_grant"), (400, None, "invalid_grant"), (200, 202, None)]
            and codes[6]["code_ok"] and codes[6]["redirect_uri_ok"] and not codes[2]["redirect_uri_ok"]
            and not codes[7]["code_ok"] and codes[6]["access_label"] == "oauth:1", codes)
        refreshes = [e for e in logged if e.get("hub_id") is not None and e.get("grant_type") == "refresh_token"]
        self.check("hub oauth: the refreshes logged", [(e["status"], e.get("refresh_label"), e.get("refusal"))
                                                      for e in refreshes][:3] ==
                   [(200, "refresh:1", None), (200, "refresh:1", None), (400, "refresh:1", "invalid_grant")], refreshes)
        secrets = ["code-201", "code-202"] + tokens + [access_202, refresh_202]
        with open(self.log_path, "rb") as fh:
            everything = json.dumps(logged) + self.call("GET", "/__mock/requests")[2].decode() + fh.read().decode()
        self.check("hub oauth: no token or code in any log", not [t for t in secrets if t in everything]
                   and "s3cret" not in json.dumps(logged), [t for t in secrets if t in everything])
        st = self.stats()
        self.check("hub oauth: stats", st["hubs"]["201"]["tokens_issued"] == 5
                   and st["hubs"]["201"]["unauthorized"] == 2
                   and st["hubs"]["202"]["tokens_issued"] == 1, st["hubs"])

    def test_hub_uninstall(self):
        """Uninstall: refresh answers invalid_grant, calls 401; the other hub goes on; a reinstall."""
        self.call("POST", "/__mock/reset", {}, auth=None)
        self.config({"oauth_client_id": "cid", "oauth_client_secret": "s3cret"})
        self.post("/__mock/hubs/clear", {})
        self.define_hubs({"hub_id": 301, "tokens": ["hub-301-static"]}, {"hub_id": 302})
        grants = {}
        for hub_id in (301, 302):
            self.post("/__mock/oauth/codes", {"code": "install-%d" % hub_id, "hub_id": hub_id,
                                              "redirect_uri": REDIRECT})
            grants[hub_id] = self.code_grant("install-%d" % hub_id)[1]
        status, obj = self.post("/__mock/hubs/uninstall", {"hub_id": 301})
        self.check("uninstall", status == 200 and obj == {"ok": True, "hub_id": 301, "refresh_tokens_invalidated": 1,
                                                          "access_tokens_revoked": 1}, obj)
        status, obj = self.grant(refresh_token=grants[301].get("refresh_token"))
        self.check("uninstall: refresh answers invalid_grant", status == 400 and obj.get("error") == "invalid_grant"
                   and "uninstalled" in obj.get("error_description", ""), obj)
        status, _, body = self.call("POST", upsert_path("un-1"), GOOD, auth=grants[301].get("access_token"))
        self.check("uninstall: calls answer 401", status == 401
                   and as_json(body).get("category") == "INVALID_AUTHENTICATION"
                   and self.last_entry().get("hub_id") == 301, body)
        self.check("uninstall: static tokens untouched",
                   self.call("POST", upsert_path("un-2"), GOOD, auth="hub-301-static")[0] == 204, "")
        self.check("uninstall: the other hub goes on",
                   self.call("POST", upsert_path("un-3"), GOOD, auth=grants[302].get("access_token"))[0] == 204
                   and self.grant(refresh_token=grants[302].get("refresh_token"))[0] == 200, "")
        self.check("uninstall: installed false", [h["installed"] for h in self.get("/__mock/hubs")[1]["hubs"]]
                   == [False, True], "")
        self.check("uninstall: an unknown hub", self.post("/__mock/hubs/uninstall", {"hub_id": 999})[0] == 400, "")
        self.post("/__mock/oauth/codes", {"code": "reinstall-301", "hub_id": 301, "redirect_uri": REDIRECT})
        status, obj = self.code_grant("reinstall-301")
        self.check("reinstall", status == 200 and obj.get("hub_id") == 301
                   and self.grant(refresh_token=obj.get("refresh_token"))[0] == 200
                   and self.call("POST", upsert_path("un-4"), GOOD, auth=obj.get("access_token"))[0] == 204
                   and self.last_entry().get("token_label") == "oauth:2"
                   and self.get("/__mock/hubs")[1]["hubs"][0]["installed"] is True, obj)
        self.check("reinstall: the old tokens stay invalid",
                   self.grant(refresh_token=grants[301].get("refresh_token"))[0] == 400
                   and self.call("POST", upsert_path("un-5"), GOOD, auth=grants[301].get("access_token"))[0] == 401, "")
        self.post("/__mock/hubs/clear", {})
        self.config({})
        self.call("POST", "/__mock/reset", {}, auth=None)

    def test_fast_paths(self):
        """The compiled schema checks, the compact body text and the log line
        agree with what they stand for (Spec.walk, json.dumps)."""
        rng = random.Random(7)
        disagree, fast_valid, generated = [], 0, 0
        odd_schemas = [{"$ref": "#/components/schemas/NoSuchSchema"}, {"type": ["string", "null"]},
                       {"type": "number"}, {"items": {"type": "number", "format": "int64"}},
                       {"enum": [1, "1", True, None]}, {"additionalProperties": False,
                                                        "properties": {"a": {"format": "int32"}}},
                       {"properties": {"self": {"$ref": "#/components/schemas/Odd6"}}, "required": ["x"]}]
        odd_spec = Spec({"info": {"version": "v3"}, "paths": {},
                         "components": {"schemas": {"Odd%d" % n: s for n, s in enumerate(odd_schemas)}}})
        cases = []
        for version, spec in sorted(self.state.specs.by_version.items()):
            schemas = []
            for route in spec.routes:
                content = (route["body"] or {}).get("content") or {}
                media = content.get("application/json") or next(iter(content.values()), None) or {}
                if media.get("schema") is not None:
                    schemas.append(media["schema"])
                schemas.extend(p["schema"] for p in route["params"] if isinstance(p.get("schema"), dict))
            schemas.extend(spec.doc["components"]["schemas"].values())
            cases.extend((version, spec, schema, True) for schema in schemas)
        cases.extend(("odd", odd_spec, schema, False) for schema in odd_spec.doc["components"]["schemas"].values())
        for version, spec, schema, own in cases:
            check = spec.fast.check(schema)
            odd = [] if own else (list(ODD_VALUES) + [[v] for v in ODD_VALUES]
                                  + [{"self": {"self": v, "x": 1}, "x": 1} for v in ODD_VALUES])
            for n in range(12 + len(odd)):
                valid = schema_instance(spec, schema, rng)
                value = valid if n < 4 else mutated(valid, rng) if n < 12 else odd[n - 12]
                generated += 1
                walked, validated = [], []
                spec.walk(schema, value, "", walked)
                spec.validate(schema, value, "", validated)
                passed = check(value, 0)
                if (passed and walked) or validated != walked:
                    disagree.append((version, schema, value, walked, validated))
                if n < 4 and not walked and own:
                    fast_valid += passed
                    if not passed:
                        disagree.append((version, schema, "valid, not passed", value))
        self.check("fast checks: never pass what the walk rejects, same problems", not disagree,
                   repr(disagree[:3])[:2000])
        self.check("fast checks: pass the valid values", fast_valid > 200, (fast_valid, generated))
        spec = self.state.specs.by_version["v3"]
        problems = []
        spec.validate({"type": "string"}, 5, "x", problems)
        self.check("fast checks: a schema not in the document is walked",
                   spec.fast.check({"type": "string"}) is None and problems == [("x", "expected string, got integer")],
                   problems)
        deep = {"inputs": [{"vid": 1, "interactionDateTime": 1, "properties": {"a": "b"}}]}
        schema = spec.doc["components"]["schemas"]["BatchInputMarketingEventSubscriber"]
        verdicts = []
        for depth in range(94, 100):
            problems = []
            spec.walk(schema, deep, "", problems, depth)
            verdicts.append((depth, spec.fast.check(schema)(deep, depth), problems))
        self.check("fast checks: the depth limit is the walk's",
                   [(d, p) for d, p, _ in verdicts] == [(d, d < 97) for d in range(94, 100)]
                   and verdicts[3][2] == [("inputs[0].properties.a", "nesting too deep")], verdicts)

        bodies = [json.dumps(GOOD, separators=(",", ":")), json.dumps(GOOD), '{"a":1.5,"b":[true,false,null]}',
                  '{"a":1.50}', '{"a":1e5}', '{"a":-0}', '{"a":-0.0}', '{"a":-5,"b":"-0"}', '{"a":"\\u00e9"}',
                  '{"a":"\u00e9"}', '{"a":"\\/"}', '{"a":"\x7f"}', '{"a":12345678901234567890123}', '[]', '"x"',
                  '{"a":{},"b":[],"c":""}', ' {"a":1}', '{"a":1}\n', '{"a": "b c"}', '{"a":"b c"}', '3',
                  '{"a":1e400}', '{"a":0.1}', '{"a":"x\\"y"}']
        bodies += [json.dumps(schema_instance(spec, {"$ref": "#/components/schemas/" + n}, rng),
                              separators=(",", ":"))
                   for n in sorted(spec.doc["components"]["schemas"])]
        wrong, compact = [], 0
        for text in bodies:
            value, body_json = parse_json_body(text.encode("utf-8"))
            if body_json is not None:
                compact += 1
                if body_json != json.dumps(value, separators=(",", ":")):
                    wrong.append(text)
                entry = {"seq": 1, "headers": {"a": "b"}, "body": value, "status": 204, "x": float("nan")}
                for variant in (entry, {"body": value}, {"body": value, "z": 1}, {"a": [], "body": value}):
                    if log_line(variant, body_json) != json.dumps(variant, separators=(",", ":"), default=str) + "\n":
                        wrong.append(("log", text))
        self.check("compact body text is json.dumps's", not wrong and compact >= 10, (wrong, compact))
        self.check("a batch as the extension writes it is compact",
                   parse_json_body(json.dumps(vid_inputs(range(100)), separators=(",", ":")).encode())[1]
                   is not None, "")

        ids = [new_correlation_id() for _ in range(1000)]
        self.check("correlation ids are uuid4's", len(set(ids)) == 1000 and all(
            str(uuid.UUID(c)) == c and uuid.UUID(c).version == 4 and uuid.UUID(c).variant == uuid.RFC_4122
            for c in ids), ids[:3])

        # the handling lock is not held while a request waits (delay_ms, hang)
        done = {}

        def slow(name, path):
            try:
                done[name] = self.call("POST", path, GOOD, timeout=3)[0]
            except OSError as exc:  # the hang: no answer
                done[name] = type(exc).__name__

        threads = [threading.Thread(target=slow, args=("delay", upsert_path("mock:delay_ms=1500")), daemon=True),
                   threading.Thread(target=slow, args=("hang", upsert_path("mock:hang=1")), daemon=True)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        statuses = [self.call("POST", upsert_path("meanwhile-%d" % n), GOOD)[0] for n in range(3)]
        took = time.monotonic() - started
        for thread in threads:
            thread.join(10)
        self.check("a waiting request holds up no other", statuses == [204] * 3 and took < 1.0
                   and done == {"delay": 204, "hang": "TimeoutError"}, (statuses, took, done))

        # end to end: every --log line is json.dumps of its entry
        self.call("POST", "/__mock/reset", {}, auth=None)
        for body in (json.dumps(GOOD, separators=(",", ":")).encode(), json.dumps(GOOD).encode(),
                     b'{"inputs":[{"vid":1,"interactionDateTime":1.5e3,"properties":{}}]}',
                     b'{"inputs":[{"vid":5,"interactionDateTime":1,"properties":{"a":"\\u00e9 x"}}]}',
                     b'{"inputs":[{"vid":5,"vid":6,"interactionDateTime":1,"properties":{}}]}', b'{"inputs":'):
            self.call("POST", upsert_path("log-line"), body)
        entries = json.loads(self.call("GET", "/__mock/requests")[2])
        with open(self.log_path, "rb") as fh:
            lines = fh.read().decode().splitlines()[-len(entries):]
        expected = [json.dumps(e, separators=(",", ":"), default=str) for e in entries]
        self.check("log lines are json.dumps of the entries", len(entries) == 6 and lines == expected,
                   (len(entries), [(a, b) for a, b in zip(lines, expected) if a != b][:2]))
        self.call("POST", "/__mock/reset", {}, auth=None)

    def test_knob_docs(self):
        """Every knob is documented in knobs.py's docstring."""
        doc = knobs_module.__doc__
        missing = [k for k in KNOB_PARSERS if "%s=" % k not in doc]
        self.check("every knob documented", not missing, missing)
        self.check("global-only knobs are knobs", set(GLOBAL_ONLY_KNOBS) <= set(KNOB_PARSERS),
                   set(GLOBAL_ONLY_KNOBS) - set(KNOB_PARSERS))
        package_doc = __import__(__package__).__doc__ + control_module.__doc__
        undocumented = [path for _, path in control_module.ENDPOINTS if path not in package_doc]
        self.check("every control endpoint documented", not undocumented, undocumented)
        self.check("the participation reads documented", all(
            suffix in participations_module.__doc__ for suffix, kind in participations_module.ROUTE_KINDS
            if kind in participations_module.READ_KINDS), "")
