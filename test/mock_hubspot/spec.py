"""The OpenAPI specs: loading, routing, and a small JSON-schema validator.

Spec is one OpenAPI document (one API version) with its routes; Specs holds
every version served and tells which one a /marketing/ path speaks."""

import json
import math
import re

INT_RANGES = {
    "int64": (-(2 ** 63), 2 ** 63 - 1),
    "int32": (-(2 ** 31), 2 ** 31 - 1),
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
DATE_VERSION_RE = re.compile(r"^(20[0-9]{2})-(03|09)$")
DEFAULT_DATE_VERSIONS = ("2026-03", "2026-09")


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


def oauth_scopes(op):
    """The OAuth scopes an operation needs (its first security requirement
    naming oauth2; [] if none does): token_scopes checks them."""
    for requirement in op.get("security") or []:
        if isinstance(requirement, dict) and isinstance(requirement.get("oauth2"), list):
            return [s for s in requirement["oauth2"] if isinstance(s, str)]
    return []


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
            "scopes": oauth_scopes(op),
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
