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

from . import knobs as knobs_module
from .common import POLICY_MESSAGES
from .knobs import GLOBAL_ONLY_KNOBS, KNOB_PARSERS
from .server import make_server
from .spec import Specs
from .state import State, max_in_window

TOKEN = "pat-na1-selftest-0123456789abcdef"
GOOD = {"inputs": [{"vid": 123, "interactionDateTime": 1700000000000, "properties": {}}]}
_TOKEN = object()  # call()'s default: the --token-file token


def upsert_path(event_id, state_name="register", account="acct 1"):
    return "/marketing/v3/marketing-events/events/%s/%s/upsert?externalAccountId=%s" % (
        event_id, state_name, urllib.parse.quote(account, safe=""))


def hs_headers(hdrs):
    return tuple(hdrs.get("x-hubspot-ratelimit-" + k) for k in ("max", "remaining", "interval-milliseconds"))


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
                "test_events_and_attendance", "test_echoes", "test_knob_docs")

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

    def test_knob_docs(self):
        """Every knob is documented in knobs.py's docstring."""
        doc = knobs_module.__doc__
        missing = [k for k in KNOB_PARSERS if "%s=" % k not in doc]
        self.check("every knob documented", not missing, missing)
        self.check("global-only knobs are knobs", set(GLOBAL_ONLY_KNOBS) <= set(KNOB_PARSERS),
                   set(GLOBAL_ONLY_KNOBS) - set(KNOB_PARSERS))
