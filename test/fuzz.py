#!/usr/bin/python3
"""Seeded, bounded fuzz test of hubspot_events' SQL surface.

    /usr/bin/python3 test/fuzz.py [--seed N] [--cases N] [--dbname DB] [--quiet]

Connects to an already running cluster through libpq's environment (PGHOST,
PGPORT, PGUSER=postgres), creates its own database hs_fuzz (dropped first if
it exists), CREATE EXTENSION hubspot_events there (the WARNING that the
worker serves another database is expected) and throws thousands of random
and malformed inputs at:

  enqueue  hubspot_enqueue_subscriber(event, state, account, contacts)
  upsert   hubspot_upsert_subscriber(...), fewer cases: valid ones really go to
           the mock HubSpot; a share use the mock's knobs ("mock:status=404")
  trigger  INSERT/UPDATE/DELETE on tables carrying sync_attendance triggers:
           text columns, typed columns (bigint, timestamp, json), numeric/
           timestamptz/date/bigint columns with three triggers, and a table
           with on_invalid=error

Contacts are built as JSON *text* and cast ::jsonb on the server, so that
malformed JSON is tested too (jsonb's own error is fine).  Every generated
value carries what the input rules (docs/reference.md) say of it (valid,
invalid, or unknown), so each case has an expected outcome:

  * success, or an ERROR that carries a SQLSTATE from the set the rules and
    the SQLSTATE table (docs/reference.md) allow for that input (22004 for a
    NULL argument, 22023 for an invalid one, jsonb's input errors for
    malformed JSON, HubSpot's mapped codes for the mock's answers);
  * a trigger never fails the application's write for invalid values (they
    become failed outbox rows, LOCAL_VALIDATION_ERROR), unless the value
    could not even be stored in the table's own column (checked by casting
    the values alone), or the trigger has on_invalid=error (22023);
  * a lost connection (no SQLSTATE) is a crash: recorded, reconnected, and
    the run goes on.  XX000, a statement_timeout, or any SQLSTATE outside the
    allowed set is a failure.

Successful cases are checked further: the ids enqueue returns, the outbox
rows a trigger wrote (count, status, normalised contact), what upsert returns
and, when HS_MOCK_URL is set, what the mock received.  After the run: every
outbox row is either pending with a valid normalised contact or failed with
LOCAL_VALIDATION_ERROR and a message, all text is valid UTF-8, rolled-back
rows are gone, and SELECT 1 still works.

Deterministic for a seed: every case draws from its own generator seeded
with (seed, kind, case number); only the tag that keeps the mock's per-event
counters apart differs from run to run.  The last line is exactly
"fuzz: N passed, M failed" (N: cases that ended as allowed; M: cases that
did not, crashes included, plus post-check findings); the exit code is 0
only when M is 0.  Each failure is printed with the seed, the kind, the case
number and its input (truncated); a summary groups them by kind of defect.

Environment: libpq's PGHOST, PGPORT, PGUSER; HS_MOCK_URL (test/lib.sh), to
compare what the mock received with what was sent (skipped without it);
HS_WORK, to quote the server log's lines about a crash.
"""

import argparse
import collections
import datetime
import decimal
import json
import os
import random
import re
import sys
import time
import urllib.request

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:  # pragma: no cover
    sys.stderr.write("fuzz.py needs psycopg2 (Debian: apt-get install python3-psycopg2)\n")
    print("fuzz: 0 passed, 1 failed")
    sys.exit(1)

DEFAULT_SEED = 20261128
FUZZ_DB = "hs_fuzz"
INT64_MAX = 2 ** 63 - 1

V, I, U = "valid", "invalid", "unknown"

CANONICAL = {
    "register": "register", "registered": "register",
    "attend": "attend", "attended": "attend",
    "cancel": "cancel", "cancelled": "cancel", "canceled": "cancel",
}

# errors a malformed or out-of-range JSON text gets from json/jsonb input
JSONB_INPUT_CODES = {"22P02", "22P05", "22003", "54001"}
# input errors of a table's own column types (the value could not be stored)
TYPE_INPUT_CODES = JSONB_INPUT_CODES | {"22007", "22008", "22009", "22021", "22001"}
# what a HubSpot answer may become (docs/reference.md, SQLSTATEs)
HUBSPOT_CODES = {"22023", "28000", "42501", "42704", "23505", "55P03",
                 "HS001", "HS002", "HS003", "HS004", "HS005"}

SOURCE_ENQUEUE = "hubspot_enqueue_subscriber"

TIMEZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham",
             "Australia/Lord_Howe", "Etc/GMT+12", "Pacific/Kiritimati",
             "Europe/Dublin", "America/St_Johns", "Asia/Kathmandu"]
DATESTYLES = ["ISO, MDY", "ISO, DMY", "ISO, YMD", "SQL, DMY", "SQL, MDY",
              "Postgres, MDY", "German, DMY"]

UNICODE_POOL = ["é", "ß", "Ω", "中", "文", "日本語", "😀", "👩\u200d💻", "ﷺ", "עברית",
                "العربية", "e\u0301", "\u200b", "\u200e", "\u2028", "\u2029", "\ufeff",
                "\u00a0", "\u3000", "\u0085", "\u009f", "İ", "ſ", "\u212a", "𝔘",
                "\U0010fffd", "Ⅻ", "①", "١٢", "％", "／", "ą", "ñ", "ø", "𐍈"]
INJECTION = ["'); DROP TABLE att_text; --", "' OR '1'='1", '"; DROP SCHEMA hubspot_events CASCADE; --',
             "$$; SELECT pg_sleep(60); $$", "\\'; COPY (SELECT 1) TO PROGRAM 'id'; --",
             "%s", "%d%n%x", "%%", "%00", "%2F..%2F", "%E2%82%AC", "../../etc/passwd", "/", "//",
             "a/b", "a?b=c&d=e", "a#frag", "a b", "+", "a+b", "\\", "\\x00", "{{7*7}}",
             "${jndi:ldap://x}", "<script>alert(1)</script>", "NULL", "null", "undefined",
             "0", "-1", "e;f", "café%20", "mock", "mocks", "?", "&", "=", "..", ".", "~user",
             "webinar 2026/03?x=1&y=%41", "' || pg_sleep(30) || '"]
KNOWN_IDS = ["webinar-2026-03", "acme", "evt_1", "class-42", "conf:2026", "A", "x" * 64]
VALID_STATE_WORDS = list(CANONICAL)
BAD_STATES = ["maybe", "NO_SHOW", "attending", "registering", "cancelling", "", " ", " register",
              "register ", "regist er", "\tattend", "attend\n", "register\u200b", "atténd",
              "ＲＥＧＩＳＴＥＲ", "register;", "cancel--", "registred", "cancell", "attend'",
              "r", "registeredd", "pending", "sent", "failed", "ATTENDED ", "unregister", "null"]


def combine(*tags):
    if I in tags:
        return I
    if U in tags:
        return U
    return V


# the input limits (src/hubspot_events.h): longer is invalid (22023)
ID_MAX_BYTES = 1000            # HS_MAX_EXTERNAL_ID_BYTES
PROPERTY_NAME_MAX_BYTES = 256  # HS_MAX_PROPERTY_NAME_BYTES


def utf8_len(s):
    return len(s.encode("utf-8", "surrogatepass"))


def id_tag(s):
    """external ids: non-empty, not "." or ".." (dot path segments), no byte below 0x20 nor 0x7f,
    at most ID_MAX_BYTES bytes."""
    if s is None:
        return I
    if s in ("", ".", "..") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        return I
    if utf8_len(s) > ID_MAX_BYTES:
        return I
    return V


def state_tag(s):
    if s is None:
        return I
    return V if s.isascii() and s.lower() in CANONICAL else I


def digits_tag(s):
    """vid given as a string: ASCII digits only, 1 .. int64 max."""
    if s is None or s == "" or any(c not in "0123456789" for c in s):
        return I
    return V if 1 <= int(s) <= INT64_MAX else I


def decimal_tag(text, allow_zero):
    """A JSON/numeric number as the validator reads it: an integral value
    within 0 (or 1) .. int64 max is valid, anything else invalid."""
    if "_" in text:
        return U, None
    try:
        d = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return U, None
    if not d.is_finite():
        return I, None
    if d.adjusted() > 19:
        return I, None
    if d != d.to_integral_value():
        return I, None
    v = int(d)
    if (0 if allow_zero else 1) <= v <= INT64_MAX:
        return V, v
    return I, None


def strict_json_ok(text):
    """Whether text is JSON (strict: no NaN/Infinity, no control characters)."""
    def bad_constant(_):
        raise ValueError("constant")
    try:
        json.loads(text, parse_constant=bad_constant)
        return True
    except RecursionError:
        return None  # deeper than Python goes: jsonb_risky() covers it
    except ValueError:
        return False


RISKY_ESCAPE = re.compile(r"\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
RISKY_NUMBER = re.compile(r"[eE][+-]?\d{5,}")


def jsonb_risky(text):
    """JSON that json accepts but jsonb may not: \\u0000, lone surrogates,
    numbers out of numeric's range, nesting deeper than the stack allows."""
    if RISKY_ESCAPE.search(text) or RISKY_NUMBER.search(text):
        return True
    depth = best = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best > 10000


def short(value, limit=300):
    s = repr(value)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


# ---------------------------------------------------------------------------
# value generators: each returns the value and what the rules say of it
# ---------------------------------------------------------------------------

class Gen:
    """A case's generator.  Half the cases are "tame": each part is valid
    with a high probability, so that a case has one or two faults, or none,
    and the success paths get their share."""

    def __init__(self, rnd, max_id_len=6000):
        self.r = rnd
        self.max_id_len = max_id_len
        self.tame = self.r.random() < 0.5

    def chance(self, p):
        return self.r.random() < p

    def t(self, p=0.85):
        """In a tame case, true with probability p."""
        return self.tame and self.r.random() < p

    def ascii_text(self, lo, hi, alphabet=None):
        alphabet = alphabet or "".join(chr(c) for c in range(0x20, 0x7F))
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randint(lo, hi)))

    def unicode_text(self, lo, hi):
        parts = []
        for _ in range(self.r.randint(lo, hi)):
            parts.append(self.r.choice(UNICODE_POOL) if self.chance(0.6)
                         else self.r.choice("abcXYZ019-_ .:"))
        return "".join(parts)

    def long_text(self):
        n = self.r.choice([256, 1000, 2000, 2800, 4000, 6000])
        n = min(n, self.max_id_len)
        if self.chance(0.4):
            return self.r.choice("ax7") * n
        if self.chance(0.5):
            return self.ascii_text(n, n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return "".join(chr(self.r.randint(0x4E00, 0x9FFF)) for _ in range(n // 3))

    # ---- ids, states ----
    def ext_id(self, null_p=0.06):
        if self.t(0.9):
            return self.r.choice(KNOWN_IDS) if self.chance(0.6) else self.r.choice(
                [self.unicode_text(1, 8), self.r.choice(INJECTION), self.ascii_text(1, 30)])
        r = self.r.random()
        if r < null_p:
            return None
        r = self.r.random()
        if r < 0.28:
            return self.r.choice(KNOWN_IDS) if self.chance(0.5) else self.ascii_text(1, 24, "abcdefghijklmnopqrstuvwxyz0123456789-_.:")
        if r < 0.40:
            return self.unicode_text(1, 12)
        if r < 0.52:
            s = self.r.choice(INJECTION)
            return s + (self.ascii_text(0, 4) if self.chance(0.3) else "")
        if r < 0.62:
            base = self.r.choice(KNOWN_IDS)
            pos = self.r.randint(0, len(base))
            ctl = chr(self.r.choice(list(range(1, 0x20)) + [0x7F]))
            return base[:pos] + ctl + base[pos:]
        if r < 0.67:
            return ""
        if r < 0.72:
            return self.r.choice([" ", "  acme  ", "\u3000", " x", "x "])
        if r < 0.745:
            return self.long_text()
        return self.ascii_text(1, 60)

    def state(self, null_p=0.06):
        r = self.r.random()
        if r < null_p and not self.tame:
            return None
        r = 0 if self.t(0.9) else self.r.random()
        if r < 0.5:
            w = self.r.choice(VALID_STATE_WORDS)
            return "".join(c.upper() if self.chance(0.3) else c for c in w)
        if r < 0.85:
            return self.r.choice(BAD_STATES)
        if r < 0.93:
            return self.unicode_text(1, 8)
        return self.ascii_text(0, 12)

    # ---- numbers and timestamps ----
    def positive_int(self):
        return self.r.choice([1, 2, 42, 101, self.r.randint(1, 10 ** 6),
                              self.r.randint(1, INT64_MAX), INT64_MAX])

    def ts_string(self):
        """(text, tag, exact epoch ms or None)"""
        r = self.r.random() * 0.46 if self.t() else self.r.random()
        if r < 0.38:
            y, mo, d = self.r.randint(1971, 2100), self.r.randint(1, 12), self.r.randint(1, 28)
            h, mi, s = self.r.randint(0, 23), self.r.randint(0, 59), self.r.randint(0, 59)
            frac = self.r.choice(["", "", ".5", ".123", ".123456"])
            offsets = {"Z": 0, "z": 0, "+00": 0, "+00:00": 0, "+05:30": 330, "-08:00": -480,
                       "+14": 840, "-12:00": -720, " +03": 180}
            named = ["", " UTC", " GMT", " America/New_York", " Asia/Kolkata",
                     " Europe/Berlin", " Pacific/Chatham", " EST5EDT", " zulu"]
            zone = self.r.choice(list(offsets) + named)
            text = "%04d-%02d-%02d%s%02d:%02d:%02d%s%s" % (
                y, mo, d, self.r.choice("T "), h, mi, s, frac, zone)
            exact = None
            if zone in offsets:
                us = int((frac[1:] + "000000")[:6]) if frac else 0
                tz = datetime.timezone(datetime.timedelta(minutes=offsets[zone]))
                dt = datetime.datetime(y, mo, d, h, mi, s, us, tzinfo=tz)
                delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
                exact = (delta.days * 86400 * 10 ** 6 + delta.seconds * 10 ** 6
                         + delta.microseconds) // 1000
            return text, V, exact
        if r < 0.46:
            return self.r.choice(["now", "today", "tomorrow", "yesterday", "NOW", " today ",
                                  "yesterday 10:00", "today 23:59:59 UTC"]), V, None
        if r < 0.68:
            y = self.r.randint(1, 1968)
            return self.r.choice([
                "infinity", "-infinity", "Infinity", "epoch", "%04d-06-01" % y,
                "%04d-01-01T00:00:00Z" % y, "2026-02-30 10:00", "2026-13-01", "2026-03-01 25:00",
                "2026-03-01 10:00 Mars/Olympus", "2026-03-01 10:00 Etc/Nowhere",
                "2026-03-01 10:00 America/", "", " ", "yesterday-ish",
                "4713-01-01 BC", "1969-12-31 23:59:59+00", "2026-03-01 10:00 +99:99",
                "2026-03-01 10:00 Etc/../../../etc/passwd", "x" * self.r.randint(65, 400),
                "x" + "é" * self.r.randint(32, 60)]), I, None
        return self.r.choice([
            "J2451187", "20260301T100000", "2026-060", "03/04/2026", "Mon Mar 01 2026",
            "1772384400000", "allballs", "2026-03-01 allballs", "12:00", "T10:00",
            "2026-03-01 10:00 :America/New_York", "2026-03-01 10:00 America/New_York+5",
            "1970-01-01 00:00", "epoch 10:00", "2026-03-01 10:00 " + "A" * 300 + "/B",
            self.ascii_text(0, 30), self.unicode_text(1, 30),
            "2026-03-01T10:00:00.123456789Z", "294276-12-31 23:59:59",
            "294277-01-01"]), U, None  # (in range east of UTC)

    # ---- JSON pieces: (text, tag, semantic value, risky) ----
    def ws(self):
        return self.r.choice(["", "", "", " ", "\n", "\t", "\r\n", "  "])

    def jstr(self, s):
        return json.dumps(s, ensure_ascii=self.chance(0.3))

    def vid_json(self):
        r = self.r.random() * 0.55 if self.t() else self.r.random()
        if r < 0.45:
            n = self.positive_int()
            return str(n), V, n, False
        if r < 0.55:
            n = self.positive_int()
            s = "0" * self.r.randint(0, 3) + str(n)
            return self.jstr(s), V, n, False
        if r < 0.70:
            t = self.r.choice(["0", "-0", "-1", "-5", str(INT64_MAX + 1), "18446744073709551615",
                               "1e19", "1.5", "1.0", "2.50", "1e2", "1E+2", "1.5e1", "100e-2",
                               "1e-2", "-1e2", "0.0", "9223372036854775807.0",
                               "9.223372036854775807e18", "1e400", "12345678901234567890123",
                               "0e10", "7e0"])
            tag, v = decimal_tag(t, allow_zero=False)
            return t, tag, v, False
        if r < 0.82:
            t = self.r.choice(['" 12"', '"12 "', '"1.0"', '"-12"', '""', '"abc"', '"１２"', '"+12"',
                               '"1e2"', '"0"', '"0x1F"', '"١٢"', '"9223372036854775808"', '"00"',
                               '"1_000"', '"12\\n"', '"\\u0031\\u0032"', '"1' + "0" * 30 + '"',
                               '"12\\u0000"', '"\\ud800"'])
            if RISKY_ESCAPE.search(t):
                return t, U, None, True
            s = json.loads(t)
            tag = digits_tag(s)
            return t, tag, int(s) if tag == V else None, False
        if r < 0.87:
            s = self.r.choice(["x", "", "1"]) + self.r.choice(["é", "中", "😀"]) * self.r.randint(20, 70)
            return self.jstr(s), I, None, False
        if r < 0.92:
            return self.r.choice(["true", "false"]), I, None, False
        if r < 0.96:
            return "null", I, None, False
        return self.r.choice(["[1]", "{}", '{"vid": 1}', "[]"]), I, None, False

    def at_json(self):
        """(text, tag, exact ms / 'txstart' / None, risky)"""
        r = self.r.choice([0.1, 0.5, 0.85]) if self.t() else self.r.random()
        if r < 0.22:
            n = self.r.choice([0, 1, self.r.randint(0, 4102444800000), 1772384400000])
            return str(n), V, n, False
        if r < 0.32:
            t = self.r.choice(["-1", "1.5", "1e12", "1.0", "-0", str(INT64_MAX), str(INT64_MAX + 1),
                               "1e30", "2.5e3", "0.5", "-1772384400000", "1e999999"])
            if RISKY_NUMBER.search(t):
                return t, U, None, True
            tag, v = decimal_tag(t, allow_zero=True)
            return t, tag, v, False
        if r < 0.82:
            s, tag, exact = self.ts_string()
            return self.jstr(s), tag, exact, False
        if r < 0.90:
            return "null", V, "txstart", False
        return self.r.choice(["true", "false", "{}", "[]", "[1772384400000]", '{"ms": 1}']), I, None, False

    def prop_value_json(self):
        """(text, tag, expected ('s', str) / ('n', Decimal) / None for dropped, risky)"""
        r = self.r.random() * 0.8 if self.t(0.9) else self.r.random()
        if r < 0.35:
            s = self.r.choice(["zoom", "", "12.50", "a\"b\\c", "line\nbreak", "x" * 500]) if self.chance(0.5) \
                else self.unicode_text(0, 20)
            return self.jstr(s), V, ("s", s), False
        if r < 0.55:
            t = self.r.choice(["0", "2", "-7", "12.50", "1e2", "1E+2", "-0", "0.000001",
                               "123456789012345678901234567890", "1E400", "3.14159"])
            return t, V, ("n", decimal.Decimal(t)), False
        if r < 0.70:
            b = self.chance(0.5)
            return ("true" if b else "false"), V, ("s", "true" if b else "false"), False
        if r < 0.80:
            return "null", V, None, False
        if r < 0.95:
            return self.r.choice(["{}", "[]", "[1]", '{"x": 1}', '{"a": {"b": null}}', "[[]]"]), I, None, False
        return self.r.choice(['"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udfff x"', "1e999999",
                              "-1e-999999"]), U, None, True

    def props_json(self):
        """(text, tag, expected dict / None when unknown, risky)"""
        r = self.r.choice([0.05, 0.5]) if self.t() else self.r.random()
        if r < 0.10:
            return "null", V, {}, False
        if r < 0.20:
            return self.r.choice(["[]", "[1, 2]", '"x"', "5", "true", '[{"a": 1}]']), I, None, False
        if r < 0.25:
            d = self.r.choice([2, 10, 1000, 60000])
            return '{"a":' * d + "1" + "}" * d, I, None, d > 10000
        entries = []
        for _ in range(self.r.randint(0, 6)):
            key = self.r.choice(["source", "seats", "vip", "utm_campaign", "", "ключ", "😀", 'a"b',
                                 "a\\b", "k" * 300, "properties", "vid", " ", "\u0000x"]) \
                if self.chance(0.7) else self.unicode_text(1, 6)
            if self.t(0.9):
                key = key.replace("\u0000", "") or "source"
            entries.append((key,) + self.prop_value_json())
        if entries and self.chance(0.1):  # a duplicate key: the last one wins
            key = self.r.choice(entries)[0]
            entries.insert(self.r.randint(0, len(entries)), (key,) + self.prop_value_json())
        tag, risky, expected = V, False, {}
        effective = {}
        for key, text, vtag, exp, vrisky in entries:
            effective[key] = (text, vtag, exp, vrisky)
        for key, (text, vtag, exp, vrisky) in effective.items():
            if key == "" or utf8_len(key) > PROPERTY_NAME_MAX_BYTES:
                tag = combine(tag, I)
            if "\u0000" in key:
                risky = True
                tag = combine(tag, U)
            tag = combine(tag, vtag)
            risky = risky or vrisky
            if exp is not None:
                expected[key] = exp
        body = ",".join("%s%s:%s%s" % (self.ws(), self.jstr(k), self.ws(), t) for k, t, *_ in entries)
        return "{" + body + self.ws() + "}", tag, (expected if tag == V else None), risky

    def contact_json(self):
        """(text, tag, expectation dict, risky)"""
        entries = []  # (key, value's JSON text, tag, semantic value, risky)
        if self.chance(0.93) or self.t(0.95):
            entries.append(("vid",) + self.vid_json())
        if self.chance(0.5):
            entries.append(("interactionDateTime",) + self.at_json())
        if self.chance(0.5):
            entries.append(("properties",) + self.props_json())
        if self.chance(0.07) and not self.t(0.9):
            k = self.r.choice(["vId", "VID", "Vid", "email", "interactiondatetime", "property", "",
                               " vid", "vid ", "vïd", "contact", "properties_"])
            entries.append((k, '"x"', I, None, False))
        if entries and self.chance(0.08):
            k = self.r.choice(entries)[0]
            gen = {"vid": self.vid_json, "interactionDateTime": self.at_json,
                   "properties": self.props_json}.get(k)
            if gen:
                entries.insert(self.r.randint(0, len(entries)), (k,) + gen())
        if self.chance(0.3):
            self.r.shuffle(entries)
        effective = {}
        for k, text, tag, sem, risky in entries:
            effective[k] = (text, tag, sem, risky)
        tag = V
        risky = any(e[4] for e in entries)
        for k in effective:
            if k not in ("vid", "interactionDateTime", "properties"):
                tag = I
        if "vid" not in effective:
            tag = I
        for text, t, sem, _ in effective.values():
            tag = combine(tag, t)
        expect = None
        if tag == V:
            expect = {"vid": effective["vid"][2],
                      "at": effective["interactionDateTime"][2] if "interactionDateTime" in effective else "txstart",
                      "props": effective["properties"][2] if "properties" in effective else {}}

        def keytext(k):
            if k == "vid" and self.chance(0.1):
                return '"v\\u0069d"'  # the same key, escaped
            return self.jstr(k)
        body = ",".join("%s%s%s:%s%s" % (self.ws(), keytext(k), self.ws(), self.ws(), t)
                        for k, t, *_ in entries)
        return "{" + body + self.ws() + "}", tag, expect, risky

    def contacts_text(self, max_contacts=400):
        """(json text or None, tag, [expectations] or None, risky)"""
        r = self.r.choice([0.3, 0.3, 0.7]) if self.t(0.9) else self.r.random()
        if r < 0.05:
            return None, V, None, False
        if r < 0.65:
            w = self.r.random()
            n = 1 if w < 0.4 else self.r.randint(2, 5) if w < 0.8 else self.r.randint(6, 50) if w < 0.95 \
                else self.r.randint(100, 400)
            n = min(n, max_contacts)
            parts = [self.contact_json() for _ in range(n)]
            tag = combine(*[p[1] for p in parts])
            text = "[" + ",".join(self.ws() + p[0] for p in parts) + self.ws() + "]"
            return text, tag, ([p[2] for p in parts] if tag == V else None), any(p[3] for p in parts)
        if r < 0.80:
            text, tag, exp, risky = self.contact_json()
            return self.ws() + text + self.ws(), tag, ([exp] if tag == V else None), risky
        if r < 0.83:
            return self.r.choice(["[]", " [ ] "]), I, None, False
        if r < 0.87:
            return self.r.choice(["42", '"x"', "null", "true", "-1", "1.5", '"[{\\"vid\\":1}]"', "{}"]), I, None, False
        if r < 0.91:
            parts = [self.contact_json()[0] for _ in range(self.r.randint(1, 3))]
            parts.insert(self.r.randint(0, len(parts)), self.r.choice(["2", "null", "[]", '[{"vid":2}]', '"x"', "true"]))
            return "[" + ",".join(parts) + "]", I, None, False
        if r < 0.94:
            d = self.r.choice([1, 2, 50, 500, 5000, 60000])
            return "[" * d + '{"vid":1}' + "]" * d, (V if d == 1 else I), ([{"vid": 1, "at": "txstart", "props": {}}] if d == 1 else None), d > 10000
        # malformed JSON text, built from a real one
        text = self.contact_json()[0]
        if self.chance(0.5):
            text = "[" + text + "]"
        m = self.r.randint(0, 13)
        if m == 0 and len(text) > 1:
            text = text[:self.r.randint(0, len(text) - 1)]
        elif m == 1:
            text = text[:-1] + ",}" if text.endswith("}") else text + ","
        elif m == 2:
            text = text.replace('"', "'", 1)
        elif m == 3:
            text = text.replace('"vid"', "vid", 1) if '"vid"' in text else "{vid: 1}"
        elif m == 4:
            text = '{"vid": 1, "properties": {"a": "x' + chr(self.r.randint(1, 0x1F)) + 'y"}}'
        elif m == 5:
            text = text + self.r.choice(["}", "]", " x", ",", "{}", " 1"])
        elif m == 6:
            text = self.r.choice(['{"vid": NaN}', '{"vid": Infinity}', '{"vid": -Infinity}', '{"vid": 01}',
                                  '{"vid": .5}', '{"vid": 1.}', '{"vid": +1}', '{"vid": 0x10}', '{"vid": 1e}'])
        elif m == 7:
            text = '{"vid": "\\x41"}' if self.chance(0.5) else '{"vid": "\\u12"}'
        elif m == 8:
            text = "/* comment */ " + text
        elif m == 9:
            text = "\ufeff" + text
        elif m == 10:
            text = self.r.choice(["", " ", "[", "{", "]", "}", '{"vid"}', '{"vid":}', '{"vid" 1}', "[1,]",
                                  '{"vid":1,}', "nul", "TRUE", "'x'"])
        elif m == 11:
            text = text.replace(":", "=", 1)
        elif m == 12:
            text = '{"vid": 1 "properties": {}}'
        else:
            text = text + "\x0b"
        return text, U, None, False


def expected_outcomes(args, contacts_text, tag, risky):
    """For the direct and enqueue functions: (set of allowed SQLSTATEs,
    whether success is allowed, one-word reason)."""
    if contacts_text is not None and strict_json_ok(contacts_text) is False:
        return set(JSONB_INPUT_CODES), False, "malformed json"
    risky = risky or (contacts_text is not None and jsonb_risky(contacts_text))
    codes = set(JSONB_INPUT_CODES) if risky else set()
    if any(a is None for a in args):
        codes.add("22004")
        return codes, False, "null argument"
    if tag == I:
        codes.add("22023")
        return codes, False, "invalid"
    if tag == U:
        codes.add("22023")
        return codes, True, "unknown"
    return codes, True, "valid"


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------

class Crash(Exception):
    """The connection was lost: no SQLSTATE."""


class Fuzz:
    def __init__(self, opts):
        self.opts = opts
        self.seed = opts.seed
        self.passed = 0
        self.failed = 0
        self.signatures = collections.Counter()
        self.codes = collections.defaultdict(collections.Counter)
        self.conn = None
        self.last_id = 0
        # post-check bookkeeping
        self.enqueue_expect = {}      # outbox id -> (event, state, account, contact expectation)
        self.trigger_ids = set()      # committed outbox ids written by triggers
        self.rolled_back_ids = set()
        self.reported_rows = set()
        self.upsert_requests = []     # (case, correlation id, event, state, account, [vids], args)
        self.mock_lenient = False     # the mock has global knobs: plain ids may get errors
        # the mock counts fail_after per event id: knob ids carry this run's nonce
        self.nonce = "%x" % (int(time.time() * 1000) ^ os.getpid())
        self.server_log = os.path.join(os.environ["HS_WORK"], "postgresql.log") \
            if os.environ.get("HS_WORK") else None

    # ---- output ----
    def say(self, msg):
        if not self.opts.quiet:
            print(msg, flush=True)

    def fail(self, kind, case, reason, inp, signature=None):
        self.failed += 1
        self.signatures[signature or reason[:90]] += 1
        print("FAIL [seed=%d %s case=%s] %s\n     input: %s" % (self.seed, kind, case, reason, short(inp, 400)),
              flush=True)

    # ---- connections ----
    def connect(self, dbname):
        conn = psycopg2.connect(dbname=dbname, application_name="hubspot_events fuzz")
        return conn

    def session(self):
        self.conn = self.connect(FUZZ_DB)
        self.conn.autocommit = False
        cur = self.conn.cursor()
        cur.execute("SET statement_timeout = '10s'; SET lock_timeout = '5s'; "
                    "SET hubspot_events.request_timeout_ms = 5000")
        self.conn.commit()

    def reconnect(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except psycopg2.Error:
            pass
        deadline = time.time() + 60
        while True:
            try:
                self.session()
                return
            except psycopg2.Error:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    def log_tail(self, since_size):
        if not self.server_log:
            return ""
        try:
            with open(self.server_log, "rb") as f:
                f.seek(since_size)
                lines = f.read().decode("utf-8", "replace").splitlines()
            keep = [l for l in lines if re.search(r"PANIC|terminated by signal|exited with exit code|TRAP|FATAL|server process", l)]
            return "\n     server log: " + "\n     server log: ".join(keep[-12:]) if keep else ""
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.server_log) if self.server_log else 0
        except OSError:
            return 0

    def run(self, sql, params=None, bytes_text=False):
        """Execute in the current transaction; returns (rows, rowcount).
        psycopg2 errors with a SQLSTATE propagate; a lost connection is Crash."""
        try:
            cur = self.conn.cursor()
            if bytes_text:
                psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cur)
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else None
            return rows, cur.rowcount
        except psycopg2.Error as e:
            if e.pgcode is None or self.conn.closed:
                raise Crash("%s: %s" % (type(e).__name__, str(e).strip())) from None
            raise

    def end(self, commit=True):
        try:
            if commit:
                self.conn.commit()
            else:
                self.conn.rollback()
        except psycopg2.Error as e:
            if e.pgcode is None or self.conn.closed:
                raise Crash("%s at %s: %s" % (type(e).__name__, "COMMIT" if commit else "ROLLBACK",
                                              str(e).strip())) from None
            raise

    def rollback_quietly(self):
        try:
            self.conn.rollback()
        except psycopg2.Error:
            pass

    def case(self, kind, n, fn):
        """Run one case: fn returns None (allowed) or a failure reason, or a
        (reason, signature) pair."""
        log_at = self.log_size()
        inp = {"input": None}
        try:
            verdict = fn(inp)
        except Crash as e:
            self.codes[kind]["CRASH"] += 1
            self.fail(kind, n, "lost the connection (crash?): %s%s" % (e, self.log_tail(log_at)),
                      inp["input"], "connection lost")
            self.reconnect()
            return
        except psycopg2.Error as e:
            self.rollback_quietly()
            verdict = "unexpected error in the harness's own statement: %s %s" % (e.pgcode, str(e).strip()[:300])
        except Exception as e:  # a bug of this program, or undecodable text
            self.rollback_quietly()
            verdict = "%s: %s" % (type(e).__name__, str(e)[:300])
        if verdict is None:
            self.passed += 1
            return
        if isinstance(verdict, tuple):
            self.fail(kind, n, verdict[0], inp["input"], verdict[1])
        else:
            self.fail(kind, n, verdict, inp["input"])

    def settings_sql(self, g):
        return "SET LOCAL TimeZone = %s; SET LOCAL DateStyle = %s; " % (
            psycopg2.extensions.QuotedString(g.r.choice(TIMEZONES)).getquoted().decode(),
            psycopg2.extensions.QuotedString(g.r.choice(DATESTYLES)).getquoted().decode())

    @staticmethod
    def check_error_text(e, inputs):
        """The server must send valid UTF-8: a replacement character that the
        input did not have means it cut a character in two."""
        text = (e.pgerror or "") + (e.diag.message_detail or "")
        if "\ufffd" in text and not any(isinstance(a, str) and "\ufffd" in a for a in inputs):
            return ("the error message holds invalid UTF-8 (a character cut in two): %s"
                    % short(e.diag.message_primary, 200), "invalid UTF-8 in an error message")
        return None

    # ---- setup ----
    def setup(self):
        maint = self.connect(self.opts.dbname)
        maint.autocommit = True
        cur = maint.cursor()
        cur.execute("DROP DATABASE IF EXISTS " + FUZZ_DB)
        cur.execute("CREATE DATABASE " + FUZZ_DB)
        maint.close()
        self.session()
        self.conn.notices.clear()
        cur = self.conn.cursor()
        cur.execute("CREATE EXTENSION hubspot_events")
        for notice in self.conn.notices:
            self.say("setup: " + notice.strip().splitlines()[0])
        # keep the outbox still even if a worker serves this database
        cur.execute("SELECT hubspot_events.pause()")
        cur.execute("""
CREATE TABLE att_text (id int, ev text, st text, vid text, acct text, at text, props jsonb, note text);
CREATE TRIGGER att_text_sync AFTER INSERT OR UPDATE OR DELETE ON att_text FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid',
    'account_id=acct', 'at=at', 'properties=props', 'on_delete=cancel');
CREATE TABLE "Att Typed" (id int, ev text, st text, vid bigint, acct text, at timestamp, props json, note text);
CREATE TRIGGER "Att Typed sync" AFTER INSERT OR UPDATE OR DELETE ON "Att Typed" FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid',
    'account_id=acct', 'at=at', 'properties=props', 'on_delete=cancel');
CREATE TABLE att_num (id int, ev varchar, st text, vid numeric, acct text, at timestamptz, d date,
  ms bigint, props jsonb, note text);
CREATE TRIGGER t1_sync AFTER INSERT OR UPDATE OR DELETE ON att_num FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid',
    'account_id=acct', 'at=at', 'properties=props', 'on_delete=cancel');
CREATE TRIGGER t2_sync AFTER INSERT OR UPDATE OR DELETE ON att_num FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid',
    'account_id:=acme-const', 'at=d');
CREATE TRIGGER t3_sync AFTER INSERT OR UPDATE OR DELETE ON att_num FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id:=fuzz-const-event', 'state=st', 'vid=vid',
    'account_id=acct', 'at=ms', 'properties=props', 'on_delete=ignore', 'on_invalid=record');
CREATE TABLE att_strict (id int, ev text, st text, vid text, acct text, at text, props jsonb, note text);
CREATE TRIGGER att_strict_sync AFTER INSERT OR UPDATE OR DELETE ON att_strict FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid',
    'account_id=acct', 'at=at', 'properties=props', 'on_delete=cancel', 'on_invalid=error');
""")
        self.conn.commit()

    def teardown(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except psycopg2.Error:
            pass
        maint = self.connect(self.opts.dbname)
        maint.autocommit = True
        cur = maint.cursor()
        for attempt in range(20):
            try:
                cur.execute("DROP DATABASE IF EXISTS " + FUZZ_DB)
                break
            except psycopg2.Error as e:
                if attempt == 19:
                    print("warning: could not drop %s: %s" % (FUZZ_DB, str(e).strip()))
                time.sleep(0.5)
        maint.close()

    # ---------------------------------------------------------------------
    # kind 1: hubspot_enqueue_subscriber
    # ---------------------------------------------------------------------
    def enqueue_case(self, n):
        g = Gen(random.Random("%d/enqueue/%d" % (self.seed, n)))
        event, state, account = g.ext_id(), g.state(), g.ext_id()
        text, ctag, cexp, risky = g.contacts_text()
        args = (event, state, account, text)
        tag = combine(id_tag(event), state_tag(state), id_tag(account), ctag)
        allowed, may_succeed, why = expected_outcomes(args, text, tag, risky)
        commit = not g.chance(0.1)
        settings = self.settings_sql(g)

        def body(inp):
            inp["input"] = {"args": args, "settings": settings}
            try:
                rows, _ = self.run(settings + "SELECT hubspot_events.hubspot_enqueue_subscriber(%s, %s, %s, %s::jsonb)", args)
            except psycopg2.Error as e:
                self.rollback_quietly()
                self.codes["enqueue"][e.pgcode] += 1
                bad = self.check_error_text(e, args)
                if bad:
                    return bad
                if e.pgcode not in allowed:
                    return ("%s input (%s) gave SQLSTATE %s: %s" % (why, "/".join(sorted(allowed)) or "success expected",
                                                                     e.pgcode, short(e.diag.message_primary, 200)),
                            "enqueue: %s input -> %s" % (why, e.pgcode))
                return None
            self.codes["enqueue"]["ok"] += 1
            ids = rows[0][0]
            if not may_succeed:
                self.rollback_quietly()
                return ("%s input was accepted (expected %s); ids %s" % (why, "/".join(sorted(allowed)), short(ids, 80)),
                        "enqueue: %s input accepted" % why)
            nexp = None
            try:
                parsed = json.loads(text)
                nexp = len(parsed) if isinstance(parsed, list) else 1
            except (ValueError, RecursionError):
                pass
            if nexp is not None and len(ids) != nexp:
                self.rollback_quietly()
                return "returned %d ids for %d contacts" % (len(ids), nexp)
            self.last_id = max([self.last_id] + ids)
            self.end(commit)
            if commit:
                for i, oid in enumerate(ids):
                    self.enqueue_expect[oid] = (event, CANONICAL[state.lower()], account,
                                                cexp[i] if cexp else None, n)
            else:
                self.rolled_back_ids.update(ids)
            return None
        self.case("enqueue", n, body)

    # ---------------------------------------------------------------------
    # kind 2: hubspot_upsert_subscriber (the mock HubSpot answers)
    # ---------------------------------------------------------------------
    KNOBS = [("status=400", "22023"), ("status=401", "28000"), ("status=403", "42501"),
             ("status=404", "42704"), ("status=409", "23505"), ("status=423", "55P03"),
             ("status=429", "HS003"), ("status=429;policy=DAILY", "HS003"),
             ("status=400;category=RATE_LIMITS", "HS003"), ("status=500", "HS004"),
             ("status=502;body=html", "HS004"), ("status=503", "HS004"), ("status=302", "HS005"),
             ("status=418", "HS005"), ("close=1", "HS001"), ("bad_event=1", "22023"),
             ("body=badjson;status=400", "22023"), ("body=text;status=404", "42704"),
             ("correlation=none", None), ("correlation=bad", None), ("body=json", None),
             ("body=text", None), ("status=200", None), ("status=201", None)]

    def upsert_case(self, n):
        g = Gen(random.Random("%d/upsert/%d" % (self.seed, n)), max_id_len=1500)
        knob = None
        if g.chance(0.3):
            knob = g.r.choice(self.KNOBS)
            event = "mock:%s;tag=fuzz%d-%d-%s" % (knob[0], self.seed, n, self.nonce)
        else:
            event = g.ext_id()
            while event is not None and event.startswith("mock:"):
                event = g.ext_id()
        state, account = g.state(), g.ext_id()
        text, ctag, cexp, risky = g.contacts_text(max_contacts=6)
        batch = g.r.choice([None, None, 1, 2, 3])
        fail_after = None
        if knob is None and event is not None and g.chance(0.1):
            fail_after = g.r.randint(0, 2)
            event = "mock:fail_after=%d;status=400;tag=fuzz%d-%d-%s" % (fail_after, self.seed, n, self.nonce)
            batch = g.r.choice([1, 2])
        args = (event, state, account, text)
        tag = combine(id_tag(event), state_tag(state), id_tag(account), ctag)
        allowed, may_succeed, why = expected_outcomes(args, text, tag, risky)
        ncontacts = None
        if text is not None and strict_json_ok(text):
            p = json.loads(text)  # (strict_json_ok: no RecursionError)
            ncontacts = len(p) if isinstance(p, list) else 1
        bsize = batch or 100
        nreq = -(-ncontacts // bsize) if ncontacts else 0
        expect_code = None
        if may_succeed and knob is not None and knob[1] is not None:
            expect_code = knob[1]
        if may_succeed and fail_after is not None and nreq > fail_after:
            expect_code = "22023"
        if expect_code:
            allowed = allowed | {expect_code}
            if tag == V:
                may_succeed = False
        if self.mock_lenient and knob is None and fail_after is None:
            allowed = allowed | HUBSPOT_CODES
        settings = "SET LOCAL hubspot_events.batch_size = %d; " % batch if batch else ""

        def body(inp):
            inp["input"] = {"args": args, "settings": settings}
            try:
                rows, _ = self.run(settings + "SELECT hubspot_events.hubspot_upsert_subscriber(%s, %s, %s, %s::jsonb)", args)
            except psycopg2.Error as e:
                self.rollback_quietly()
                self.codes["upsert"][e.pgcode] += 1
                bad = self.check_error_text(e, args)
                if bad:
                    return bad
                if e.pgcode not in allowed:
                    return ("%s input (%s) gave SQLSTATE %s: %s" % (
                        why, "/".join(sorted(allowed)) or "success expected", e.pgcode,
                        short(e.diag.message_primary, 200)), "upsert: %s input -> %s" % (why, e.pgcode))
                if fail_after is not None and e.pgcode == "22023" and tag == V and ncontacts > min(bsize, ncontacts - fail_after * bsize):
                    want = "%d of %d contacts were recorded before this error." % (fail_after * bsize, ncontacts)
                    if want not in (e.diag.message_detail or ""):
                        return "fail_after=%d: DETAIL %r lacks %r" % (fail_after, e.diag.message_detail, want)
                return None
            self.end(True)
            self.codes["upsert"]["ok"] += 1
            res = rows[0][0]
            if not may_succeed:
                return ("%s input was accepted (expected %s): %s" % (why, "/".join(sorted(allowed)), short(res, 200)),
                        "upsert: %s input accepted" % why)
            if not isinstance(res, dict) or not (200 <= res.get("http_status", 0) <= 299):
                return "success without a 2xx http_status: %s" % short(res, 200)
            if ncontacts is not None:
                resp = res.get("responses") or []
                if res.get("contacts") != ncontacts or res.get("requests") != nreq or len(resp) != nreq \
                        or sum(x.get("contacts", 0) for x in resp) != ncontacts:
                    return "answer does not add up (%d contacts, batch %d): %s" % (ncontacts, bsize, short(res, 300))
                if tag == V and cexp is not None and "correlation=" not in event:  # (those ids are not unique)
                    vids = [c["vid"] for c in cexp]
                    for k, x in enumerate(resp):
                        if x.get("correlation_id"):
                            self.upsert_requests.append((n, x["correlation_id"], event, CANONICAL[state.lower()],
                                                         account, vids[k * bsize:(k + 1) * bsize], args))
            return None
        self.case("upsert", n, body)

    def check_mock_config(self):
        """Global knobs left on the mock (faults, rate limits) would answer
        plain requests with errors: then those are allowed."""
        url = os.environ.get("HS_MOCK_URL")
        if not url:
            return
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/__mock/config", timeout=10) as f:
                config = json.loads(f.read().decode("utf-8")).get("config") or {}
        except (OSError, ValueError, AttributeError):
            return
        if config:
            self.mock_lenient = True
            self.say("mock: global knobs are set (%s): HubSpot errors for plain event ids are allowed" % short(config, 200))

    def check_mock_log(self):
        """What the mock received for each successful request (by correlation id)."""
        url = os.environ.get("HS_MOCK_URL")
        if not url:
            self.say("mock log: HS_MOCK_URL is not set, not checked")
            return
        if not self.upsert_requests:
            return
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/__mock/requests", timeout=30) as f:
                entries = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            self.say("mock log: could not read %s/__mock/requests (%s), not checked" % (url, e))
            return
        by_corr = {}
        for e in entries:
            if e.get("correlation_id"):
                by_corr[e["correlation_id"]] = e
        checked = 0
        for n, corr, event, state, account, vids, args in self.upsert_requests:
            e = by_corr.get(corr)
            problems = []
            if e is None:
                problems.append("the mock has no request with correlation id %s" % corr)
            else:
                path, query, body = e.get("path") or {}, e.get("query") or {}, e.get("body") or {}
                if path.get("externalEventId") != event:
                    problems.append("externalEventId %s, sent %s" % (short(path.get("externalEventId"), 80), short(event, 80)))
                if path.get("subscriberState") != state:
                    problems.append("subscriberState %r, expected %r" % (path.get("subscriberState"), state))
                if query.get("externalAccountId") != account:
                    problems.append("externalAccountId %s, sent %s" % (short(query.get("externalAccountId"), 80), short(account, 80)))
                inputs = body.get("inputs") if isinstance(body, dict) else None
                if not isinstance(inputs, list) or [x.get("vid") for x in inputs] != vids:
                    problems.append("body vids %s, expected %s" % (short(inputs, 120), short(vids, 120)))
                if e.get("spec_errors"):
                    problems.append("spec errors %s" % short(e["spec_errors"], 200))
            checked += 1
            if problems:
                self.fail("upsert", n, "mock log: " + "; ".join(problems), {"args": args}, "upsert: mock received something else")
        self.say("mock log: %d successful requests checked against what the mock received" % checked)

    # ---------------------------------------------------------------------
    # kind 3: attendance tables with sync_attendance triggers
    # ---------------------------------------------------------------------
    def val_text_vid(self, g):
        if g.chance(0.08):
            return None, None
        t, tag, v, risky = g.vid_json()
        if t.startswith('"') and not risky:
            s = json.loads(t)
            return s, (digits_tag(s), int(s) if digits_tag(s) == V else None)
        if risky:
            return "12", (V, 12)
        s = t if g.chance(0.7) else g.r.choice(["12", "00012", " 12", "12 ", "1.0", "-3", "abc", "", "١٢"])
        tag = digits_tag(s)
        return s, (tag, int(s) if tag == V else None)

    def val_bigint_vid(self, g):
        r = g.r.random() * 0.75 if g.t() else g.r.random()
        if r < 0.08:
            return None, None
        if r < 0.75:
            v = g.r.choice([g.positive_int(), g.positive_int(), 0, -1, -(2 ** 63)])
            return v, (V if v > 0 else I, v if v > 0 else None)
        s = g.r.choice([" 12 ", "+7", "abc", "1.5", str(INT64_MAX + 1), "", "0x10", "1e3", "12\n"])
        m = re.fullmatch(r"\s*([+-]?\d+)\s*", s)
        if m and -(2 ** 63) <= int(m.group(1)) <= INT64_MAX:
            v = int(m.group(1))
            return s, (V if v > 0 else I, v if v > 0 else None)
        return s, (U, None)

    def val_numeric_vid(self, g):
        if g.t():
            s = str(g.positive_int()) + g.r.choice(["", "", ".0", ".00"])
            return s, decimal_tag(s, allow_zero=False)
        if g.chance(0.08):
            return None, None
        s = g.r.choice(["1", "42", str(INT64_MAX), str(INT64_MAX + 1), "1.0", "1.5", "2.50", "NaN", "Infinity",
                        "-Infinity", "1e100", "1e2", "0", "-0", "-5", "00012", " 12 ", "1e-2", "abc",
                        str(g.positive_int()), str(g.positive_int())])
        tag, v = decimal_tag(s, allow_zero=False)
        return s, (tag, v)

    def val_ts_text(self, g):
        if g.chance(0.3):
            return None, (V, "txstart")
        s, tag, exact = g.ts_string()
        return s, (tag, exact)

    def val_typed_ts(self, g, with_zone):
        r = g.r.random() * 0.6 if g.t() else g.r.random()
        if r < 0.25:
            return None, (V, "txstart")
        if r < 0.6:
            y = g.r.randint(1971, 2100)
            s = "%04d-%02d-%02d %02d:%02d:%02d" % (y, g.r.randint(1, 12), g.r.randint(1, 28),
                                                   g.r.randint(0, 23), g.r.randint(0, 59), g.r.randint(0, 59))
            if with_zone and g.chance(0.5):
                s += g.r.choice(["+00", "-08", "+05:30", " UTC", " America/New_York"])
            return s, (V, None)
        if r < 0.8:
            y = g.r.randint(1, 1968)
            return g.r.choice(["infinity", "-infinity", "%04d-03-01 10:00" % y, "4713-01-01 BC"]), (I, None)
        return g.r.choice(["now", "epoch", "294276-12-31 23:59:59", "garbage", "2026-02-30", "",
                           "1970-01-01 00:00", "1969-12-31 23:59:59", "today", "03/04/2026"]), (U, None)

    def val_date(self, g):
        r = g.r.random() * 0.65 if g.t() else g.r.random()
        if r < 0.3:
            return None, (V, "txstart")
        if r < 0.65:
            return "%04d-%02d-%02d" % (g.r.randint(1971, 2100), g.r.randint(1, 12), g.r.randint(1, 28)), (V, None)
        if r < 0.85:
            return g.r.choice(["infinity", "-infinity", "1960-01-01", "0001-01-01", "4713-01-01 BC"]), (I, None)
        return g.r.choice(["epoch", "today", "5874897-12-31", "1970-01-01", "garbage", "2026-02-30"]), (U, None)

    def val_ms(self, g):
        r = g.r.random()
        if r < 0.3:
            return None, (V, "txstart")
        v = g.r.choice([0, 1772384400000, g.r.randint(0, INT64_MAX)] + ([] if g.t() else [-1, -1772384400000, INT64_MAX, -(2 ** 63)]))
        return v, (V if v >= 0 else I, v if v >= 0 else None)

    def val_props(self, g):
        if g.chance(0.3):
            return None, (V, {}, False)
        text, tag, exp, risky = g.props_json()
        if g.tame:
            return text, (U if risky else tag, exp if tag == V and not risky else None, risky)
        if g.chance(0.05):  # malformed: the column's own input error
            text = text[:-1] if len(text) > 1 else "{"
            return text, (U, None, False)
        if g.chance(0.06):  # json accepts these, jsonb does not
            text = g.r.choice(['{"a": "\\u0000"}', '{"a": 1e999999}', '{"a": "\\ud800"}', '{"\\u0000": 1}',
                               '{"a": -1e-99999}'])
            risky = True
        if risky:
            tag = U
        return text, (tag, exp if tag == V else None, risky)

    TABLES = {
        "att_text": {"source": "public.att_text", "cols": ["ev", "st", "vid", "acct", "at", "props"],
                     "types": {"ev": "text", "st": "text", "vid": "text", "acct": "text", "at": "text", "props": "jsonb"},
                     "triggers": [{"ev": "ev", "acct": "acct", "at": "at", "props": "props", "cancel": True}]},
        "\"Att Typed\"": {"source": 'public."Att Typed"', "cols": ["ev", "st", "vid", "acct", "at", "props"],
                          "types": {"ev": "text", "st": "text", "vid": "bigint", "acct": "text", "at": "timestamp", "props": "json"},
                          "triggers": [{"ev": "ev", "acct": "acct", "at": "at", "props": "props", "cancel": True}]},
        "att_num": {"source": "public.att_num", "cols": ["ev", "st", "vid", "acct", "at", "d", "ms", "props"],
                    "types": {"ev": "varchar", "st": "text", "vid": "numeric", "acct": "text", "at": "timestamptz",
                              "d": "date", "ms": "bigint", "props": "jsonb"},
                    "triggers": [{"ev": "ev", "acct": "acct", "at": "at", "props": "props", "cancel": True},
                                 {"ev": "ev", "acct": ":acme-const", "at": "d", "props": None, "cancel": False},
                                 {"ev": ":fuzz-const-event", "acct": "acct", "at": "ms", "props": "props", "cancel": False}]},
        "att_strict": {"source": "public.att_strict", "cols": ["ev", "st", "vid", "acct", "at", "props"],
                       "types": {"ev": "text", "st": "text", "vid": "text", "acct": "text", "at": "text", "props": "jsonb"},
                       "triggers": [{"ev": "ev", "acct": "acct", "at": "at", "props": "props", "cancel": True}],
                       "strict": True},
    }

    def gen_column(self, g, table, col):
        """(value to send, tag info)"""
        types = self.TABLES[table]["types"]
        if col in ("ev", "acct"):
            v = g.ext_id(null_p=0.06)
            return v, (id_tag(v),)
        if col == "st":
            v = g.state(null_p=0.08)
            return v, (state_tag(v) if v is not None else None,)
        if col == "vid":
            return {"text": self.val_text_vid, "bigint": self.val_bigint_vid,
                    "numeric": self.val_numeric_vid}[types["vid"]](g)
        if col == "at":
            if types["at"] == "text":
                return self.val_ts_text(g)
            return self.val_typed_ts(g, types["at"] == "timestamptz")
        if col == "d":
            return self.val_date(g)
        if col == "ms":
            return self.val_ms(g)
        if col == "props":
            return self.val_props(g)
        raise AssertionError(col)

    def predict_insert(self, table, row):
        """Expected outbox rows for one inserted row: list of (tag, details)."""
        spec = self.TABLES[table]
        if row["st"][0] is None or row["vid"][0] is None:
            return []
        out = []
        for trig in spec["triggers"]:
            def pick(key):
                ref = trig[key]
                if ref is None:
                    return None
                if ref.startswith(":"):
                    return ref[1:]
                return row[ref][0]
            ev, acct = pick("ev"), pick("acct")
            st_val, st_info = row["st"]
            vid_val, vid_info = row["vid"]
            at_info = row[trig["at"]][1]
            props_info = row["props"][1] if trig["props"] else (V, {}, False)
            tag = combine(id_tag(ev), id_tag(acct), st_info[0], vid_info[0], at_info[0], props_info[0])
            out.append((tag, {"ev": ev, "acct": acct, "state": CANONICAL.get(st_val.lower()) if st_val.isascii() else None,
                              "raw_state": st_val, "vid": vid_info[1], "at": at_info[1],
                              "props": props_info[1], "source": spec["source"]}))
        return out

    OUTBOX_COLS = ("id, status, error_category, error_message, subscriber_state, external_event_id, "
                   "external_account_id, contact_key, contact::text, source, "
                   "floor(extract(epoch FROM created_at) * 1000)::bigint")

    def fetch_new_rows(self):
        rows, _ = self.run("SELECT " + self.OUTBOX_COLS + " FROM hubspot_events.outbox WHERE id > %s ORDER BY id",
                           (self.last_id,), bytes_text=True)
        return rows

    def row_problems(self, row, expect=None):
        """Problems of one outbox row (bytes text); with expect, also what it should say."""
        oid, status, cat, msg, state, ev, acct, key, contact, source, created_ms = row
        problems = []
        texts = {}
        for name, b in (("status", status), ("error_category", cat), ("error_message", msg),
                        ("subscriber_state", state), ("external_event_id", ev),
                        ("external_account_id", acct), ("contact_key", key), ("contact", contact),
                        ("source", source)):
            if b is None:
                texts[name] = None
                continue
            try:
                texts[name] = bytes(b).decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append("%s holds invalid UTF-8 (%s): %r" % (name, e.reason, bytes(b)[max(0, e.start - 40):e.end + 10]))
                texts[name] = bytes(b).decode("utf-8", "replace")
        status = texts["status"]
        if status == "pending":
            try:
                c = json.loads(texts["contact"])
            except ValueError:
                c = None
            ok = (isinstance(c, dict) and set(c) == {"vid", "interactionDateTime", "properties"}
                  and type(c["vid"]) is int and 1 <= c["vid"] <= INT64_MAX
                  and type(c["interactionDateTime"]) is int and 0 <= c["interactionDateTime"] <= INT64_MAX
                  and isinstance(c["properties"], dict)
                  and all(isinstance(k, str) and k and isinstance(v, str) for k, v in c["properties"].items()))
            if not ok:
                problems.append("pending row with a contact that is not normalised: %s" % short(texts["contact"], 200))
            else:
                if texts["contact_key"] != str(c["vid"]):
                    problems.append("contact_key %r for vid %d" % (texts["contact_key"], c["vid"]))
                if texts["subscriber_state"] not in ("register", "attend", "cancel"):
                    problems.append("pending row with state %r" % texts["subscriber_state"])
                if cat is not None or msg is not None:
                    problems.append("pending row with error columns set")
                for name in ("external_event_id", "external_account_id"):
                    if id_tag(texts[name]) != V:
                        problems.append("pending row with invalid %s %s" % (name, short(texts[name], 80)))
                if expect is not None:
                    problems += self.expect_problems(texts, c, created_ms, expect)
        elif status == "failed":
            if texts["error_category"] != "LOCAL_VALIDATION_ERROR":
                problems.append("failed row with error_category %r" % texts["error_category"])
            if not texts["error_message"]:
                problems.append("failed row without an error_message")
        else:
            problems.append("row with status %r" % status)
        return texts, problems

    @staticmethod
    def expect_problems(texts, c, created_ms, e):
        problems = []
        if "ev" in e and texts["external_event_id"] != e["ev"]:
            problems.append("external_event_id %s, expected %s" % (short(texts["external_event_id"], 60), short(e["ev"], 60)))
        if "acct" in e and texts["external_account_id"] != e["acct"]:
            problems.append("external_account_id %s, expected %s" % (short(texts["external_account_id"], 60), short(e["acct"], 60)))
        if e.get("state") and texts["subscriber_state"] != e["state"]:
            problems.append("subscriber_state %r, expected %r" % (texts["subscriber_state"], e["state"]))
        if e.get("vid") is not None and c["vid"] != e["vid"]:
            problems.append("vid %r, expected %r" % (c["vid"], e["vid"]))
        at = e.get("at")
        if at == "txstart":
            if c["interactionDateTime"] != created_ms:
                problems.append("interactionDateTime %r, expected the transaction start %r" % (c["interactionDateTime"], created_ms))
        elif isinstance(at, int) and c["interactionDateTime"] != at:
            problems.append("interactionDateTime %r, expected %r" % (c["interactionDateTime"], at))
        props = e.get("props")
        if isinstance(props, dict):
            got = c["properties"]
            if set(got) != set(props):
                problems.append("properties keys %s, expected %s" % (short(sorted(got), 120), short(sorted(props), 120)))
            else:
                for k, (kind, v) in props.items():
                    if kind == "s" and got[k] != v:
                        problems.append("property %s = %s, expected %s" % (short(k, 40), short(got[k], 60), short(v, 60)))
                    if kind == "n":
                        try:
                            same = decimal.Decimal(got[k]) == v
                        except decimal.InvalidOperation:
                            same = False
                        if not same:
                            problems.append("property %s = %s, expected the number %s" % (short(k, 40), short(got[k], 60), v))
        return problems

    def probe_storable(self, settings, table, assignments):
        """Whether every value can be stored in its column (the input
        functions alone); False when one cannot."""
        types = self.TABLES[table]["types"]
        casts = [(v, types[c]) for c, v in assignments if v is not None]
        if not casts:
            return True
        # (booleans only: psycopg2 cannot read every DateStyle's timestamps)
        sql = settings + "SELECT " + ", ".join("(%%s::%s) IS NULL" % t for _, t in casts)
        try:
            self.run(sql, [v for v, _ in casts])
            self.rollback_quietly()
            return True
        except psycopg2.Error:
            self.rollback_quietly()
            return False

    def trigger_case(self, n):
        g = Gen(random.Random("%d/trigger/%d" % (self.seed, n)))
        table = g.r.choices(list(self.TABLES), weights=[35, 25, 25, 15])[0]
        spec = self.TABLES[table]
        strict = spec.get("strict", False)
        settings = self.settings_sql(g)
        commit = not g.chance(0.1)
        op = g.r.choices(["insert", "update", "delete"], weights=[60, 25, 15])[0]
        target = g.r.randint(1, 40)
        predicted = None
        returning_cancel = False
        max_rows = None
        assignments = []
        if op == "insert":
            rows = []
            for _ in range(1 if g.chance(0.7) else g.r.randint(2, 4)):
                row = {c: self.gen_column(g, table, c) for c in spec["cols"]}
                row["_id"] = g.r.randint(1, 40)
                rows.append(row)
            cols = ["id"] + spec["cols"]
            sql = "INSERT INTO %s (%s) VALUES %s" % (
                table, ", ".join(cols),
                ", ".join("(" + ", ".join(["%s"] * len(cols)) + ")" for _ in rows))
            params = []
            for row in rows:
                params.append(row["_id"])
                params += [row[c][0] for c in spec["cols"]]
                assignments += [(c, row[c][0]) for c in spec["cols"]]
            predicted = []
            for row in rows:
                predicted += self.predict_insert(table, row)
        elif op == "update":
            variant = g.r.choices(["random", "note", "same", "id"], weights=[70, 10, 10, 10])[0]
            if variant == "random":
                chosen = [c for c in spec["cols"] if g.chance(0.4)] or [g.r.choice(spec["cols"])]
                vals = [(c, self.gen_column(g, table, c)[0]) for c in chosen]
                sql = "UPDATE %s SET %s WHERE id = %%s" % (table, ", ".join("%s = %%s" % c for c, _ in vals))
                params = [v for _, v in vals] + [target]
                assignments = vals
                max_rows = 2 * len(spec["triggers"])
            else:
                sets = {"note": "note = %s", "same": ", ".join("%s = %s" % (c, c) for c in spec["cols"]),
                        "id": "id = id + 0 * length(%s)"}[variant]
                sql = "UPDATE %s SET %s WHERE id = %%s" % (table, sets)
                params = ([g.ascii_text(0, 10)] if variant in ("note", "id") else []) + [target]
                max_rows = 0
        else:
            sql = "DELETE FROM %s WHERE id = %%s RETURNING st IS NOT NULL AND vid IS NOT NULL" % table
            params = [target]
            returning_cancel = True

        def body(inp):
            inp["input"] = {"sql": sql, "params": params, "settings": settings}
            try:
                rows, rowcount = self.run(settings + sql, params)
            except psycopg2.Error as e:
                self.rollback_quietly()
                self.codes["trigger"][e.pgcode] += 1
                bad = self.check_error_text(e, params)
                if bad:
                    return bad
                if strict and e.pgcode == "22023":
                    if predicted is not None and all(t == V for t, _ in predicted) and \
                            self.probe_storable(settings, table, assignments):
                        return ("on_invalid=error trigger rejected valid values: %s" % short(e.diag.message_primary, 200),
                                "trigger: valid row rejected (on_invalid=error)")
                    return None
                if e.pgcode in TYPE_INPUT_CODES and not self.probe_storable(settings, table, assignments):
                    return None  # the value could not be stored in the column itself
                return ("the write failed with SQLSTATE %s (the trigger must record invalid rows, not raise): %s%s" % (
                    e.pgcode, short(e.diag.message_primary, 200),
                    " / " + short(e.diag.context, 120) if e.diag.context else ""),
                    "trigger: write failed with %s: %s" % (e.pgcode, re.sub(r'"[^"]*"|\d+', "_", e.diag.message_primary or "")[:60]))
            self.codes["trigger"]["ok"] += 1
            new = self.fetch_new_rows()
            problems = []
            if predicted is not None:
                if strict and any(t == I for t, _ in predicted):
                    problems.append("on_invalid=error trigger accepted an invalid row")
                if len(new) != len(predicted):
                    problems.append("%d outbox rows written, %d expected" % (len(new), len(predicted)))
                else:
                    for outrow, (tag, exp) in zip(new, predicted):
                        texts, probs = self.row_problems(outrow, exp if tag == V else None)
                        problems += probs
                        if tag == V and texts["status"] != "pending":
                            problems.append("valid row recorded as %s: %s" % (texts["status"], short(texts["error_message"], 200)))
                        if tag == I and texts["status"] != "failed":
                            problems.append("invalid row enqueued as %s: %s" % (texts["status"], short(texts["contact"], 200)))
                        if texts["source"] != exp["source"]:
                            problems.append("source %r, expected %r" % (texts["source"], exp["source"]))
                        if texts["status"] == "failed":
                            if texts["external_event_id"] != exp["ev"] or texts["external_account_id"] != exp["acct"]:
                                problems.append("failed row does not keep the raw event/account")
                            if texts["subscriber_state"] != exp["raw_state"]:
                                problems.append("failed row state %r, raw %r" % (texts["subscriber_state"], exp["raw_state"]))
            else:
                for outrow in new:
                    problems += self.row_problems(outrow)[1]
                if max_rows is not None and len(new) > max_rows * max(rowcount, 0):
                    problems.append("%d outbox rows for %d updated rows (at most %d)" % (len(new), rowcount, max_rows * rowcount))
                if returning_cancel:
                    want = sum(1 for (flag,) in rows if flag)
                    if len(new) != want:
                        problems.append("DELETE of %d rows (%d with state and vid) wrote %d outbox rows" % (len(rows), want, len(new)))
                    for outrow in new:
                        if bytes(outrow[4]) != b"cancel":
                            problems.append("DELETE wrote a row with state %r" % bytes(outrow[4]))
            ids = [r[0] for r in new]
            if ids:
                self.last_id = max(self.last_id, max(ids))
            if problems:
                self.reported_rows.update(ids)
            self.end(commit)
            if commit:
                self.trigger_ids.update(ids)
            else:
                self.rolled_back_ids.update(ids)
            if problems:
                return ("; ".join(problems[:4]), "trigger: " + re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", problems[0])[:80])
            return None
        self.case("trigger", n, body)

    # ---------------------------------------------------------------------
    # after the run
    # ---------------------------------------------------------------------
    def post_checks(self):
        problems = 0
        self.rollback_quietly()
        cur = self.conn.cursor()
        psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cur)
        cur.execute("SELECT " + self.OUTBOX_COLS + " FROM hubspot_events.outbox ORDER BY id")
        rows = cur.fetchall()
        self.conn.rollback()
        seen_enqueue, seen_trigger = set(), set()
        sources = {spec["source"] for spec in self.TABLES.values()}
        shown = 0
        for row in rows:
            oid = row[0]
            source = bytes(row[9]).decode("utf-8", "replace") if row[9] is not None else None
            expect = None
            if source == SOURCE_ENQUEUE:
                seen_enqueue.add(oid)
                e = self.enqueue_expect.get(oid)
                if e is not None:
                    event, state, account, cexp, case = e
                    expect = {"ev": event, "acct": account, "state": state}
                    if cexp:
                        expect.update(cexp)
            elif source in sources:
                seen_trigger.add(oid)
            texts, probs = self.row_problems(row, expect)
            if source == SOURCE_ENQUEUE and texts["status"] != "pending":
                probs.append("an enqueued row is %s" % texts["status"])
            if source not in sources and source != SOURCE_ENQUEUE:
                probs.append("unexpected source %r" % source)
            if probs and oid not in self.reported_rows:
                problems += 1
                self.failed += 1
                self.signatures["outbox row: " + re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", probs[0])[:80]] += 1
                if shown < 25:
                    shown += 1
                    case = self.enqueue_expect.get(oid, (None,) * 5)[4]
                    print("FAIL [seed=%d post-check outbox id=%d%s] %s\n     row: %s" % (
                        self.seed, oid, " enqueue case=%s" % case if case is not None else "",
                        "; ".join(probs[:3]), short([bytes(x) if isinstance(x, memoryview) else x for x in row], 400)))
        for name, want, got in (("enqueue", set(self.enqueue_expect), seen_enqueue),
                                ("trigger", self.trigger_ids, seen_trigger)):
            if want != got:
                problems += 1
                self.failed += 1
                self.signatures["outbox: committed rows missing or extra"] += 1
                print("FAIL [seed=%d post-check] %s rows: %d committed rows missing (%s), %d unexpected (%s)" % (
                    self.seed, name, len(want - got), short(sorted(want - got)[:10]), len(got - want),
                    short(sorted(got - want)[:10])))
        back = self.rolled_back_ids & (seen_enqueue | seen_trigger)
        if back:
            problems += 1
            self.failed += 1
            self.signatures["outbox: rolled-back rows present"] += 1
            print("FAIL [seed=%d post-check] %d rows of rolled-back transactions are in the outbox: %s" % (
                self.seed, len(back), short(sorted(back)[:10])))
        cur = self.conn.cursor()
        cur.execute("SELECT 1")
        if cur.fetchone() != (1,):
            problems += 1
            self.failed += 1
            print("FAIL [seed=%d post-check] SELECT 1 did not return 1" % self.seed)
        self.conn.rollback()
        counts = collections.Counter(bytes(r[1]).decode() for r in rows)
        self.say("post-check: %d outbox rows (%s; %d from enqueue, %d from triggers), %d problems, SELECT 1 ok" % (
            len(rows), ", ".join("%s %d" % kv for kv in sorted(counts.items())), len(seen_enqueue),
            len(seen_trigger), problems))

    # ---------------------------------------------------------------------
    def main(self):
        total = self.opts.cases
        plan = [("enqueue", total * 45 // 100, self.enqueue_case),
                ("upsert", total * 15 // 100, self.upsert_case)]
        plan.append(("trigger", total - plan[0][1] - plan[1][1], self.trigger_case))
        started = time.time()
        self.say("fuzz: seed %d, %d cases (%s)" % (self.seed, total, ", ".join("%s %d" % (k, c) for k, c, _ in plan)))
        try:
            self.setup()
        except psycopg2.Error as e:
            print("FAIL [seed=%d setup] %s" % (self.seed, str(e).strip()))
            print("fuzz: 0 passed, 1 failed")
            return 1
        try:
            for kind, count, fn in plan:
                if kind == "upsert":
                    self.check_mock_config()
                t0 = time.time()
                p0, f0 = self.passed, self.failed
                for n in range(count):
                    fn(n)
                self.say("%-8s %5d cases in %5.1f s: %d passed, %d failed" % (
                    kind, count, time.time() - t0, self.passed - p0, self.failed - f0))
                if kind == "upsert":
                    self.check_mock_log()
            if self.conn.closed:
                self.reconnect()
            self.post_checks()
        except (psycopg2.Error, Crash) as e:
            # the server did not come back, or the harness's own statements failed
            self.failed += 1
            print("FAIL [seed=%d] run abandoned: %s" % (self.seed, str(e).strip()))
        self.say("SQLSTATEs by kind (ok = success):")
        for kind, _, _ in plan:
            c = self.codes[kind]
            self.say("  %-8s %s" % (kind, "  ".join("%s=%d" % kv for kv in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))))
        if self.signatures:
            print("failures by kind of defect:")
            for sig, cnt in self.signatures.most_common():
                print("  %4d  %s" % (cnt, sig))
        try:
            self.teardown()
        except psycopg2.Error as e:
            print("warning: teardown: %s" % str(e).strip())
        self.say("time: %.1f s" % (time.time() - started))
        print("fuzz: %d passed, %d failed" % (self.passed, self.failed))
        return 0 if self.failed == 0 else 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--cases", type=int, default=3000, help="total, split across the three kinds")
    p.add_argument("--dbname", default="postgres", help="database to connect to for CREATE/DROP DATABASE")
    p.add_argument("--quiet", action="store_true", help="only failures and the last line")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.setrecursionlimit(12000)  # JSON nested 5000 deep is read back in checks
    sys.exit(Fuzz(parse_args(sys.argv[1:])).main())
