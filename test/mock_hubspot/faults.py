"""Fault injection and the mock's answer bodies.

plan_answer decides how a validated /marketing/ request is answered (its
knobs, fail_after and the seeded fault dice); build_answer makes the body:
HubSpot's error shapes, batch results of the attendance endpoints, the
participation reads (participations.py), and the broken bodies of the body=
knob."""

import json

from . import participations
from .common import (AUTH_MESSAGE, EXPIRED_MESSAGE, POLICY_MESSAGES, PROXY_502_HTML, REQUIRED_SCOPE,
                     SCOPES_MESSAGE, iso_now)
from .knobs import DEEP_NESTING, SLOW_MS_DEFAULT


class Plan:
    """How to answer a validated request, as its knobs say (before the fault dice)."""

    def __init__(self, knobs, failing):
        self.failing = failing  # False while fail_after lets the request succeed
        self.status = knobs.get("status") if failing else None
        self.close = failing and knobs.get("close", False)
        self.hang = failing and knobs.get("hang", False)
        self.body_kind = knobs.get("body") if failing else None
        self.answer_knobs = knobs  # what shapes an error body
        self.retry_after = knobs.get("retry_after")
        self.delay_s = knobs.get("delay_ms", 0) / 1000.0


def plan_answer(state, knobs, event_id, entry):
    """The Plan for a request that passed the limiter and the input checks.
    Counts the request for its event id (fail_after) and notes in the log
    entry (entry["knobs"] and entry["fault_kind"]) what was applied."""
    failing = True
    if event_id is not None:
        count = state.count_event(event_id)
        if "fail_after" in knobs and count <= knobs["fail_after"]:
            failing = False
    plan = Plan(knobs, failing)
    if failing and "fault_rate" in knobs:
        apply_fault(plan, state, knobs, entry)
    if not failing:
        entry["knobs"]["fail_after_phase"] = "success"
    return plan


def apply_fault(plan, state, knobs, entry):
    """fault_rate: roll the seeded dice; on a hit, turn the plan into the fault
    (a fault_mix kind if given, else fault_kind)."""
    hit, mix_kind = state.roll_fault(knobs["fault_rate"], knobs.get("fault_mix"))
    entry["knobs"]["fault_hit"] = hit
    if hit and mix_kind is not None:
        entry["fault_kind"] = mix_kind
        plan.close, plan.hang = mix_kind == "reset", False
        if mix_kind == "slow":  # the normal answer, late
            plan.delay_s += knobs.get("slow_ms", SLOW_MS_DEFAULT) / 1000.0
        elif mix_kind != "reset":  # a status with HubSpot's canonical body
            plan.status, plan.answer_knobs = int(mix_kind), {}
            plan.body_kind = "html" if plan.status == 502 else None
            if plan.status == 429:
                plan.retry_after = "1"
    elif hit:
        kind = knobs.get("fault_kind", "status")
        entry["fault_kind"] = kind
        if kind == "status":
            plan.status, plan.close, plan.hang = knobs.get("fault_status", 503), False, False
        elif kind == "close":
            plan.close = True
        elif kind == "hang":
            plan.hang = True


def find_bad_input(state, headers, knobs, event_id, inputs, attendance=False):
    """(kind, message, context, errors) for a request HubSpot would reject
    as a whole (bad_event, bad_vids, bad_emails), else None.  On the
    attendance endpoints bad contacts are per-contact errors of a 200
    answer instead (see attendance_errors)."""
    if knobs.get("echo_auth"):
        # a hostile or broken server (or proxy) that repeats the request's
        # Authorization header in its answer: the client must not keep it
        echoed = headers.get("Authorization", "")
        message = "Invalid request headers: Authorization: %s" % echoed
        return ("echo_auth", message, {"authorization": [echoed]},
                [{"message": message, "in": "header", "code": "ECHO"}])
    if knobs.get("bad_event"):
        message = "Marketing event %s is invalid" % event_id
        return ("bad_event", message, {"externalEventId": [str(event_id)]},
                [{"message": message, "in": "externalEventId", "code": "INVALID_EVENT"}])
    if attendance:
        return None
    bad_emails = set(state.global_bad_emails()) | set(knobs.get("bad_emails", ()))
    for item in inputs if bad_emails else ():  # (nothing to look for: no walk of the inputs)
        email = item.get("email") if isinstance(item, dict) else None
        if isinstance(email, str) and email.lower() in bad_emails:
            return ("bad_email", "Invalid input JSON: contact with email %s is invalid" % email,
                    {"email": [email]},
                    [{"message": "Contact with email %s is invalid" % email, "in": "email",
                      "code": "INVALID_EMAIL", "context": {"email": [email]}}])
    bad = set(state.global_bad_vids()) | set(knobs.get("bad_vids", ()))
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


def build_answer(state, route, params, status, body_kind, knobs, corr, inputs, query=None):
    """Returns (status, body bytes, content type or None).  query: the
    request's ({name: [values]}), for the participation reads."""
    template = route["template"]
    kind = participations.route_kind(route)
    scope = participations.READ_SCOPE if kind in participations.READ_KINDS else REQUIRED_SCOPE
    default_status, default_body = 204, None  # default_body: made only when it is the answer

    if "/attendance/" in template and template.endswith("/create"):
        default_status = 200

        def default_body():
            good, errors = attendance_errors(state, knobs, inputs)
            return batch_result([{"vid": i.get("vid")} for i in good], errors)
    elif "/attendance/" in template and template.endswith("/email-create"):
        default_status = 200

        def default_body():
            # the vids of the mapping the participations share (participations.py)
            good, errors = attendance_errors(state, knobs, inputs)
            vids = state.participations.vids_for_emails([i.get("email") for i in good])
            return batch_result([{"email": i.get("email"), "vid": vid} for i, vid in zip(good, vids)], errors)
    elif kind in participations.READ_KINDS:
        default_status = 200

        def default_body():
            return state.participations.read(kind, params, query or {})
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
        obj = error_object(status, knobs, corr, params, inputs, scope) if status >= 400 else {"status": "ok"}
        extra = ('"nested":' + "[" * DEEP_NESTING + "]" * DEEP_NESTING if body_kind == "deep"
                 else '"padding":"' + "x" * (2 * 1024 * 1024) + '"' if body_kind == "huge"
                 else '"value":1e1001')
        text = json.dumps(obj, separators=(",", ":"))[:-1] + "," + extra + "}"
        return status, text.encode("utf-8"), "application/json;charset=utf-8"
    if status < 400 and body_kind != "nocategory":
        if body_kind == "json":
            obj = {"status": "ok", "echo": len(inputs)}
        elif default_body is not None and status == default_status:
            obj = default_body()
        else:
            return status, b"", None
    else:
        obj = error_object(status, knobs, corr, params, inputs, scope)
        if body_kind == "nocategory":
            obj.pop("category", None)
    return status, json.dumps(obj, separators=(",", ":")).encode("utf-8"), "application/json;charset=utf-8"

def batch_result(results, errors=()):
    now = iso_now()
    return {"status": "COMPLETE", "results": results, "numErrors": len(errors), "errors": list(errors),
            "requestedAt": now, "startedAt": now, "completedAt": now}

def attendance_errors(state, knobs, inputs):
    """The per-contact errors of an attendance answer: (good inputs, errors)."""
    bad_vids = set(state.global_bad_vids()) | set(knobs.get("bad_vids", ()))
    bad_emails = set(state.global_bad_emails()) | set(knobs.get("bad_emails", ()))
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

def missing_scopes_fields(obj, scopes):
    """HubSpot's MISSING_SCOPES details (403), added to an error object."""
    obj["context"] = {"requiredGranularScopes": list(scopes)}
    obj["errors"] = [{"message": "One or more of the following scopes are required.",
                      "context": {"requiredGranularScopes": list(scopes)}}]
    obj["links"] = {"scopes": "https://developers.hubspot.com/scopes"}
    return obj


def error_object(status, knobs, corr, params, inputs, scope=REQUIRED_SCOPE):
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
        missing_scopes_fields(obj, [scope])
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
