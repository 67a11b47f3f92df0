"""The OAuth token endpoint: POST /oauth/v1/token and /oauth/2026-03/token,
form-encoded: the refresh grant
(grant_type=refresh_token&client_id=..&client_secret=..&refresh_token=..)
and the authorization-code grant that installs the app in a hub
(grant_type=authorization_code&client_id=..&client_secret=..&redirect_uri=..&code=..,
the code minted by POST /__mock/oauth/codes, see control.py).  Its knobs
(oauth_*) are documented in knobs.py; the tokens it issues live in State
(for hubs: hubs.py)."""

import re
import time
import urllib.parse

from .common import BodyError, new_correlation_id

OAUTH_PATHS = ("/oauth/v1/token", "/oauth/2026-03/token")
FORM_FIELDS = {"grant_type", "client_id", "client_secret", "refresh_token"}
CODE_FORM_FIELDS = {"grant_type", "client_id", "client_secret", "redirect_uri", "code"}
GRANT_TYPES = ("refresh_token", "authorization_code")


def field(form, name):
    """A form field's (first) value, None if absent."""
    return form.get(name, [None])[0]


def serve(handler, raw_path, raw_query):
    """POST /oauth/v1/token and /oauth/2026-03/token: the refresh and the
    authorization-code grants.  Records what it checked, never the secrets."""
    TokenRequest(handler, raw_path, raw_query).serve()


class TokenRequest:
    """One token request and its entry in the OAuth request log."""

    def __init__(self, handler, raw_path, raw_query):
        self.handler = handler
        self.state = handler.state
        self.raw_query = raw_query
        self.corr = new_correlation_id()
        headers = handler.headers
        self.entry = {"time": time.time(), "method": handler.command, "path": raw_path, "query": raw_query,
                      "content_type": headers.get("Content-Type"), "accept": headers.get("Accept"),
                      "authorization": "present" if headers.get("Authorization") else None,
                      "grant_type": None, "hub_id": None, "problems": [], "status": None, "refusal": None}

    def serve(self):
        entry, corr = self.entry, self.corr
        try:
            body = self.handler.read_body()
        except BodyError as exc:
            entry["problems"].append(exc.message)
            return self.answer(exc.status, {"status": "BAD_REQUEST", "message": exc.message, "correlationId": corr})
        if self.handler.command != "POST":
            entry["problems"].append("method %s" % self.handler.command)
            return self.answer(405, {"status": "error", "message": "method not allowed", "correlationId": corr})
        form = self.read_form(body)
        entry["grant_type"] = field(form, "grant_type")
        if entry["problems"]:
            self.state.oauth_refused()
            return self.answer(400, {"status": "BAD_REQUEST", "message": "; ".join(entry["problems"]),
                                     "correlationId": corr})
        if entry["grant_type"] not in GRANT_TYPES:
            self.state.oauth_refused()
            return self.answer(400, {"status": "BAD_GRANT_TYPE", "message": "missing or unknown grant type",
                                     "correlationId": corr})
        echo = self.state.oauth_echo()
        if echo is not None:
            return self.answer_echo(echo, body)
        if entry["grant_type"] == "authorization_code":
            status, obj, info = self.state.oauth_code_grant(field(form, "client_id"), field(form, "client_secret"),
                                                            field(form, "code"), field(form, "redirect_uri"))
        else:
            status, obj, info = self.state.oauth_grant(field(form, "client_id"), field(form, "client_secret"),
                                                      field(form, "refresh_token"))
        entry.update(info)
        if status != 200 and "error" not in obj:
            obj["correlationId"] = corr
        return self.answer(status, obj)

    def read_form(self, body):
        """The form's fields ({name: [values]}); notes every problem in the entry."""
        problems = self.entry["problems"]
        ctype = (self.entry["content_type"] or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            problems.append("content type %r" % self.entry["content_type"])
        if self.raw_query:
            problems.append("parameters in the query string")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                                         errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            form = {}
            problems.append("body is not form-encoded: %s" % exc)
        for name, values in form.items():
            if len(values) > 1:
                problems.append("%s given %d times" % (name, len(values)))
        allowed = CODE_FORM_FIELDS if field(form, "grant_type") == "authorization_code" else FORM_FIELDS
        unknown = sorted(set(form) - allowed)
        if unknown:
            problems.append("unexpected parameters %s" % ", ".join(unknown))
        return form

    def answer(self, status, obj):
        """Record the request, wait oauth_delay_ms, answer (unless the client left)."""
        self.entry["status"] = status
        if status != 200:  # the answer's error code: BAD_CLIENT_ID, invalid_grant, ...
            self.entry["refusal"] = obj.get("error") or obj.get("status")
        self.state.oauth_record(self.entry)
        delay = self.state.oauth_delay_s()
        if delay and not self.handler.wait(delay):
            self.handler.answered = True
            self.handler.close_connection = True
            return
        self.handler.send_json(status, obj, corr=self.corr)

    def answer_echo(self, echo, body):
        """oauth_echo: a hostile or broken endpoint repeating what it was sent
        (the secrets included), at once (no oauth_delay_ms)."""
        text = body.decode("utf-8", "replace")
        if echo == "lower":
            text = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)
        message = "could not use the request: " + text
        self.state.oauth_refused()
        self.entry["status"] = 400
        self.state.oauth_record(self.entry)
        if echo == "text":
            return self.handler.send_raw(400, message.encode("utf-8"), "text/plain;charset=utf-8", corr=self.corr)
        return self.handler.send_json(400, {"status": "BAD_REQUEST", "message": message, "correlationId": self.corr},
                                      corr=self.corr)
