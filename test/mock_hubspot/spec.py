"""The OpenAPI specs: loading, routing, and a small JSON-schema validator.

Spec is one OpenAPI document (one API version) with its routes; Specs holds
every version served and tells which one a /marketing/ path speaks."""

import json
import math
import re
import threading

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
    return parse_json_body(raw)[0]


# what json.dumps(..., separators=(",", ":")) never writes outside a string
# (whitespace; "-0", which it writes 0) and never writes raw inside one (\, DEL)
_NOT_COMPACT = ("\\", "\x7f", " ", "\t", "\n", "\r", "-0")


def parse_json_body(raw):
    """parse_json_strict's value, and the text of raw if it is exactly the
    value's compact JSON (what json.dumps(value, separators=(",", ":"))
    writes), else None: the request log then writes the text as it came
    instead of writing the value again (State.record).

    The text is taken only when it is plain ASCII without backslashes or DEL
    (so every string is written as it came), has no whitespace and no "-0"
    (so no separator or integer is written otherwise), and every number
    with a fraction or an exponent is written as repr(float) writes it;
    keys cannot repeat (an error here).  Otherwise None, whatever the
    reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONProblem("body is not valid UTF-8 (%s)" % exc) from None
    duplicates = []
    odd_floats = []

    def pairs_hook(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    def bad_constant(name):
        raise JSONProblem("invalid JSON literal %s" % name)

    def parse_float(token):  # json's own parse_float is float
        value = float(token)
        if repr(value) != token:
            odd_floats.append(token)
        return value

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=bad_constant,
                           parse_float=parse_float)
    except JSONProblem:
        raise
    except (ValueError, RecursionError) as exc:
        raise JSONProblem("body is not valid JSON: %s" % exc) from None
    if duplicates:
        raise JSONProblem("duplicate object key(s): %s" % ", ".join(sorted(set(duplicates))))
    if odd_floats or not text.isascii() or any(s in text for s in _NOT_COMPACT):
        return value, None
    return value, text


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


# --------------------------------------------------------------------------
# Compiled checks: the fast path of Spec.validate
# --------------------------------------------------------------------------

_MISSING = object()

# a schema "type" -> a test of the value named v (the exact types json.loads,
# the query parser and int() make; any other type fails, and the walk decides)
TYPE_TESTS = {
    "integer": "type({v}) is int",
    "number": "(type({v}) is int or (type({v}) is float and _isfinite({v})))",
    "string": "type({v}) is str",
    "boolean": "type({v}) is bool",
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "null": "{v} is None",
}
MAX_DEPTH = 100  # Spec.walk's "nesting too deep"
INLINE_LEVELS = 8  # schema levels written into one function (deeper, or recursive: a call)


def _enum_ok(value, members):
    return any(json_equal(value, e) for e in members)


class FastChecks:
    """For each schema validated, a generated Python function f(value, depth)
    that is True only if Spec.walk would find no problem in value (walk
    reports "nesting too deep" past depth 100, resolves $refs, checks type,
    enum, the int32/int64 ranges, required, properties,
    additionalProperties and items).  False means "maybe not": Spec.walk
    then decides, and words the problems.  So the verdicts and the problems
    stay the walk's, and the common valid body costs one call of straight-
    line code (nested schemas are written inline, their $refs resolved once)
    instead of a walk of the OpenAPI document (resolving every $ref,
    building every "where" path) for each value in it.

    Whatever the generator does not model exactly (a $ref that does not
    resolve, a type list or keyword it does not know, a required that is not
    a list of names...) compiles to "return False", so that the walk always
    has the last word.  A value deeper than the walk's limit fails too."""

    def __init__(self, spec):
        self.spec = spec
        # the document's own schemas (alive as long as it): only those are
        # compiled and remembered, a schema made by a caller is walked
        self.doc_nodes = set()
        stack = [spec.doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                self.doc_nodes.add(id(node))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        self.namespace = {"_isfinite": math.isfinite, "_enum_ok": _enum_ok, "_MISSING": _MISSING}
        self.by_schema = {}  # id(schema) -> (schema, function)
        self.names = {}  # id(resolved node) -> (node, function name)
        self.lock = threading.Lock()

    def check(self, schema):
        """The compiled check of schema (made on first use); None if schema
        is not one of the document's."""
        hit = self.by_schema.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        if id(schema) not in self.doc_nodes:
            return None
        with self.lock:
            lines, queue = [], []
            name = self._name(schema, queue)
            while queue:
                node, fname = queue.pop()
                self._function(node, fname, lines, queue)
            exec(compile("\n".join(lines) + "\n", "<mock_hubspot fast checks>", "exec"), self.namespace)
            function = self.namespace[name]
            self.by_schema[id(schema)] = (schema, function)
            return function

    def source(self, schema):
        """The generated code of schema's check (for reading; not cached)."""
        saved = dict(self.names), dict(self.namespace)
        try:
            self.names = {}
            lines, queue = [], []
            self._name(schema, queue)
            while queue:
                node, fname = queue.pop()
                self._function(node, fname, lines, queue)
            return "\n".join(lines)
        finally:
            self.names, self.namespace = saved

    # ---- generation -------------------------------------------------------

    def _const(self, value):
        name = "_C%d" % len(self.namespace)
        self.namespace[name] = value
        return name

    def _resolved(self, schema):
        """The node schema stands for; _MISSING if walk reports a spec error."""
        try:
            return self.spec.resolve(schema)
        except Exception:  # walk reports it (or raises it) itself
            return _MISSING

    def _name(self, schema, queue):
        """The function name of schema's check, queued for generation if new."""
        node = self._resolved(schema)
        key = schema if node is _MISSING else node
        hit = self.names.get(id(key))
        if hit is not None and hit[0] is key:
            return hit[1]
        fname = "_check%d" % len(self.names)
        self.names[id(key)] = (key, fname)
        queue.append((node, fname))
        return fname

    def _function(self, node, fname, lines, queue):
        body = []
        deepest = self._node(node, "v", 0, body, queue, (id(node),))
        lines.append("def %s(v, d):" % fname)
        if isinstance(node, dict):
            lines.append("    if d > %d: return False" % (MAX_DEPTH - deepest))
        lines.extend("    " + line for line in body)
        lines.extend(["    return True", ""])

    def _node(self, node, var, level, out, queue, stack):
        """Lines that return False unless var (at depth d + level) passes
        node (resolved); returns the deepest level they look at."""
        if node is _MISSING or node is False:
            out.append("return False")
            return level
        if not isinstance(node, dict):
            return level  # walk checks nothing here
        checks = self._value_checks(node, var)
        out.extend(checks)
        if checks[-1:] == ["return False"]:
            return level
        deepest = level
        expected = node.get("type")
        for kind, pytype, make in (("object", "dict", self._object_checks), ("array", "list", self._array_checks)):
            if expected is not None and expected != kind:
                continue  # var cannot be one
            lines = []
            deepest = max(deepest, make(node, var, level, lines, queue, stack))
            if not lines:
                continue
            if expected == kind:
                out.extend(lines)
            else:
                out.append("if type(%s) is %s:" % (var, pytype))
                out.extend("    " + line for line in lines)
                out.append("elif isinstance(%s, %s): return False" % (var, pytype))
        return deepest

    def _child(self, schema, var, level, out, queue, stack):
        """Lines that return False unless var passes schema at depth d +
        level: written inline, or a call of the child's own function."""
        node = self._resolved(schema)
        if isinstance(node, dict) and (id(node) in stack or level > INLINE_LEVELS):
            out.append("if not %s(%s, d + %d): return False" % (self._name(schema, queue), var, level))
            return level
        return self._node(node, var, level, out, queue, stack + (id(node),))

    def _value_checks(self, node, var):
        """type, enum and format (int32/int64 range) of var: lines that return False."""
        out = []
        expected = node.get("type")
        if expected is not None:
            if not isinstance(expected, str) or expected not in TYPE_TESTS:
                return ["return False"]  # walk decides (type lists, unknown types)
            out.append("if not %s: return False" % TYPE_TESTS[expected].format(v=var))
        if "enum" in node and isinstance(node["enum"], list):
            members = node["enum"]
            if all(type(e) is str for e in members):
                out.append("if type(%s) is not str or %s not in %s: return False"
                           % (var, var, self._const(frozenset(members))))
            else:
                out.append("if not _enum_ok(%s, %s): return False" % (var, self._const(list(members))))
        fmt = node.get("format")
        try:
            ranged = fmt in INT_RANGES
        except TypeError:  # walk raises it
            return ["return False"]
        if ranged:
            low, high = INT_RANGES[fmt]
            if expected == "integer":
                out.append("if not %d <= %s <= %d: return False" % (low, var, high))
            else:
                out.append("if isinstance(%s, int) and not isinstance(%s, bool) and not %d <= %s <= %d: return False"
                           % (var, var, low, var, high))
        return out

    def _object_checks(self, node, var, level, out, queue, stack):
        """walk's checks of a dict var: required, properties, additionalProperties."""
        required = node.get("required") or []
        props = node.get("properties") or {}
        extra = node.get("additionalProperties", True)
        if (not isinstance(required, list) or not all(type(n) is str for n in required)
                or not isinstance(props, dict)):
            out.append("return False")
            return level
        deepest = level
        child_var = "x%d" % (level + 1)
        out.extend("if %r not in %s: return False" % (name, var) for name in required)
        if extra is False:
            out.append("if not %s.keys() <= %s: return False" % (var, self._const(frozenset(props))))
        for name, schema in props.items():
            lines = []
            deepest = max(deepest, self._child(schema, child_var, level + 1, lines, queue, stack))
            if not lines:
                continue
            if name in required:
                out.append("%s = %s[%r]" % (child_var, var, name))
                out.extend(lines)
            else:
                out.append("%s = %s.get(%r, _MISSING)" % (child_var, var, name))
                out.append("if %s is not _MISSING:" % child_var)
                out.extend("    " + line for line in lines)
        if isinstance(extra, dict):
            lines = []
            deepest = max(deepest, self._child(extra, child_var, level + 1, lines, queue, stack))
            if lines:
                if props:
                    out.append("for k%d, %s in %s.items():" % (level, child_var, var))
                    out.append("    if k%d in %s: continue" % (level, self._const(frozenset(props))))
                else:
                    out.append("for %s in %s.values():" % (child_var, var))
                out.extend("    " + line for line in lines)
        return deepest

    def _array_checks(self, node, var, level, out, queue, stack):
        """walk's checks of a list var: items."""
        if "items" not in node:
            return level
        child_var = "x%d" % (level + 1)
        lines = []
        deepest = self._child(node["items"], child_var, level + 1, lines, queue, stack)
        if lines:
            out.append("for %s in %s:" % (child_var, var))
            out.extend("    " + line for line in lines)
        return deepest


class Spec:
    """The OpenAPI document, its routes and a small JSON-schema validator."""

    def __init__(self, document):
        self.doc = document
        self.fast = FastChecks(self)
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
        self.routes_by_shape = {}  # (method, number of segments) -> its routes, in order
        for route in self.routes:
            self.routes_by_shape.setdefault((route["method"], len(route["segments"])), []).append(route)

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
        for route in self.routes_by_shape.get((method, len(parts)), ()):
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
        """Append (where, message) for every violation of schema by value.

        A compiled check (FastChecks) answers first; only a value it does
        not pass is walked (walk), which finds and words the problems."""
        check = self.fast.check(schema)
        if check is None or not check(value, depth):
            self.walk(schema, value, where, problems, depth)

    def walk(self, schema, value, where, problems, depth=0):
        """validate's walk of the schema (its $refs resolved as met): the
        problems, in order and worded, for every value."""
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
                    self.walk(props[key], item, join_where(where, key), problems, depth + 1)
                elif extra is False:
                    problems.append((join_where(where, key), "unexpected property"))
                elif isinstance(extra, dict):
                    self.walk(extra, item, join_where(where, key), problems, depth + 1)
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self.walk(schema["items"], item, join_where(where, index), problems, depth + 1)


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
