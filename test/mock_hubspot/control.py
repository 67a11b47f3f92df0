"""The control API under /__mock/ (loopback only).

GET /__mock/health, GET /__mock/requests, GET|POST /__mock/config,
POST /__mock/reset, GET /__mock/stats[?window_ms=W], POST /__mock/oauth/expire
and GET /__mock/oauth/requests: see the package's docstring."""

import urllib.parse

from .common import BodyError, is_loopback_host, new_correlation_id
from .knobs import KNOB_PARSERS, KnobError, knob_pairs_from_json, parse_knobs
from .spec import JSONProblem, parse_json_strict


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
}
