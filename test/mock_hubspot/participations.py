"""HubSpot's participations: what the mock holds after the subscriber-state
writes, and the two read endpoints that show it.

What is held
------------
One table per (externalAccountId, externalEventId): a contact's
participation, keyed by its contact id (vid).  Every subscriber-state write
the mock answers 2xx sets the state of each of its contacts, in every API
version:

  .../events/{externalEventId}/{subscriberState}/upsert         by vid
  .../events/{externalEventId}/{subscriberState}/email-upsert   by email
  .../attendance/{externalEventId}/{subscriberState}/create     by vid
  .../attendance/{externalEventId}/{subscriberState}/email-create   by email

register -> REGISTERED, attend -> ATTENDED, cancel -> CANCELLED; the latest
write wins (in the order the mock answered the requests, the order of their
seq in the request log; within one request, the later input).  occurredAt is
the input's interactionDateTime.  Writes answered otherwise (an error status,
a limiter 429, a reset or hung connection, bad_vids / bad_event) change
nothing; a write answered 2xx counts even when the client no longer waits for
the answer (delay_ms, the "slow" fault).  On the attendance endpoints the
contacts named in "errors" (bad_vids, bad_emails) are not written, the others
are (batch_error too).  An attendance write without externalAccountId is
held under the account "" (visible in GET /__mock/participations, not
reachable by the read routes).  With --lean the writes leave nothing (and
keep no email mapping: email-create answers vids 1000, 1001, ... in input
order); /__mock/participations/set still works.

Contacts written by email get a contact id from one mapping, shared by every
route and the email-create answer (results [{"email", "vid"}]): an email
(compared in lower case) keeps the vid it got first; a new one gets the
lowest id from 1000 up that no contact holds yet (a vid written directly
counts as held).  The mapping is cleared by /__mock/reset.

Read routes (both path forms, like every route: the 2026-09 form for every
served version, checked against the 2026-09 spec; /marketing/v3/marketing-events/...
against the v3 spec), path segments percent-encoded, scope
crm.objects.marketing_events.read:

  GET .../participations/{externalAccountId}/{externalEventId}/breakdown
      ?contactIdentifier=&state=&limit=&after=
    200 {"total": N, "results": [ParticipationBreakdown...],
         "paging": {"next": {"after": "<cursor>"}}}   (paging only when a
    next page exists).  results are ordered by contact id; total counts every
    result matching contactIdentifier and state, whatever the page.  One
    result:
      {"id": "<participation id>", "createdAt": "<ISO time of its first write>",
       "associations": {
         "contact": {"contactId": "<vid>", "email": "<lower-case email, or \"\" if the mock never saw one>"},
         "marketingEvent": {"marketingEventId": "<HubSpot id, derived from the pair>",
                            "name": "<eventName of the latest events/upsert, or \"\">",
                            "externalAccountId": "...", "externalEventId": "..."}},
       "properties": {"attendanceState": "REGISTERED|ATTENDED|CANCELLED|NO_SHOW|EMPTY",
                      "occurredAt": <epoch ms>}}
    contactIdentifier: all digits (an optional leading "-") is a contact id,
    anything else an email (case-insensitive; an email the mock does not
    know matches nothing).  state: REGISTERED, CANCELLED, ATTENDED or
    NO_SHOW.  limit: 1..100, default 10.  after: the cursor of the previous
    page (opaque; the contacts after the id it names, so a page stays right
    when contacts are forgotten in between).  An empty contactIdentifier or
    after is ignored.  limit over 100 (or under 1), another state or a cursor
    the mock did not make: 400 VALIDATION_ERROR (logged in spec_errors).
    An event nobody wrote to: 200 {"total": 0, "results": []}.

  GET .../participations/{externalAccountId}/{externalEventId}
    200 {"attended": N, "cancelled": N, "noShows": N, "registered": N}: each
    contact counted once, in its current state (EMPTY in none).

With the known_events knob both answer 404 OBJECT_NOT_FOUND for an event no
events/upsert created.  Everything else (auth, token_scopes, the limiter,
fault injection, the per-request knobs of a mock: event id, the log) is as
for every /marketing/ request.

Control (loopback only, see control.py): GET /__mock/participations,
POST /__mock/participations/forget and POST /__mock/participations/set;
their shapes are documented in control.py's docstring.
"""

import base64
import binascii
import hashlib
import re
import time

from .common import iso_now

READ_SCOPE = "crm.objects.marketing_events.read"
WRITE_STATES = {"register": "REGISTERED", "attend": "ATTENDED", "cancel": "CANCELLED"}
FILTER_STATES = ("REGISTERED", "CANCELLED", "ATTENDED", "NO_SHOW")  # the breakdown's state filter
SET_STATES = ("REGISTERED", "CANCELLED", "ATTENDED", "NO_SHOW", "EMPTY")  # ParticipationProperties' enum
LIMIT_DEFAULT, LIMIT_MAX = 10, 100
FIRST_EMAIL_VID = 1000
CURSOR_RE = re.compile(r"^after:(-?[0-9]{1,19})$")
CONTACT_ID_RE = re.compile(r"^-?[0-9]{1,19}$")

# template endings -> route kind (the templates of both specs end alike)
ROUTE_KINDS = (
    ("/participations/{externalAccountId}/{externalEventId}/breakdown", "breakdown"),
    ("/participations/{externalAccountId}/{externalEventId}", "counters"),
    ("/events/{externalEventId}/{subscriberState}/upsert", "upsert"),
    ("/events/{externalEventId}/{subscriberState}/email-upsert", "email-upsert"),
    ("/attendance/{externalEventId}/{subscriberState}/create", "create"),
    ("/attendance/{externalEventId}/{subscriberState}/email-create", "email-create"),
)
READ_KINDS = ("breakdown", "counters")
WRITE_KINDS = ("upsert", "email-upsert", "create", "email-create")
BY_EMAIL = ("email-upsert", "email-create")


# a participation record: (state, occurredAt, createdAt, source, api_version, writes)
# (a tuple, replaced by each write: a batch write makes up to 100, they are
# kept until a reset, and a tuple of strings and numbers is small and soon
# left alone by the garbage collector)
STATE, OCCURRED_AT, CREATED_AT, SOURCE, API_VERSION, WRITES = range(6)


def route_kind(route):
    """breakdown|counters|upsert|email-upsert|create|email-create, or None."""
    if route is None:
        return None
    template = route["template"]
    for suffix, kind in ROUTE_KINDS:
        if template.endswith(suffix):
            return kind
    return None


def encode_cursor(contact_id):
    return base64.urlsafe_b64encode(("after:%d" % contact_id).encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(text):
    """The contact id a cursor names; ValueError if the mock did not make it."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        match = CURSOR_RE.match(raw.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        match = None
    if match is None or encode_cursor(int(match.group(1))) != text:
        raise ValueError("not a cursor of this API: %r" % text[:80])
    return int(match.group(1))


def query_value(query, name):
    """A query parameter's first value, None if absent ({name: [values]})."""
    values = query.get(name)
    return values[0] if values else None


def check_read_query(query, problems):
    """The breakdown's rules beyond its schema; appends (kind, where, message)."""
    limit = query_value(query, "limit")
    if limit is not None:
        try:
            value = int(limit)
        except ValueError:
            value = None  # reported by the schema check
        if value is not None and not 1 <= value <= LIMIT_MAX:
            problems.append(("query", "limit", "must be between 1 and %d, got %d" % (LIMIT_MAX, value)))
    state = query_value(query, "state")
    if state is not None and state not in FILTER_STATES:
        problems.append(("query", "state", "must be one of %s, got %r" % (", ".join(FILTER_STATES), state)))
    after = query_value(query, "after")
    if after:
        try:
            decode_cursor(after)
        except ValueError as exc:
            problems.append(("query", "after", str(exc)))


def derived_id(*parts):
    """A stable numeric id (as text) for HubSpot's own ids the mock makes up."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
    return str(100000000 + int(digest[:15], 16) % 900000000)


def now_ms():
    return int(time.time() * 1000)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Participations:
    """The participation tables and the email -> vid mapping, under the
    State's lock (``lock``); keep=False (--lean): the writes leave nothing."""

    def __init__(self, lock, keep=True):
        self.lock = lock
        self.keep = keep
        self.clear_locked()

    def clear_locked(self):
        """Forget everything (caller holds the lock: State.reset)."""
        self.tables = {}  # (account, event) -> {vid: record}
        self.contacts = {}  # vid -> lower-case email or None
        self.email_vids = {}  # lower-case email -> vid
        self.next_vid = FIRST_EMAIL_VID
        self.event_names = {}  # (account, event) -> eventName of the latest events/upsert

    # ---- contacts (caller holds the lock) -------------------------------

    def _vid_for_email(self, email, allocate=True):
        key = email.lower()
        vid = self.email_vids.get(key)
        if vid is None and allocate:
            while self.next_vid in self.contacts:
                self.next_vid += 1
            vid = self.next_vid
            self.next_vid += 1
            self.email_vids[key] = vid
            self.contacts[vid] = key
        return vid

    def _resolve(self, identifier, allocate):
        """A contact id from an id (int or digits) or an email; None if unknown."""
        if is_int(identifier):
            return identifier
        if isinstance(identifier, str):
            text = identifier.strip()
            if CONTACT_ID_RE.match(text):
                return int(text)
            if text:
                return self._vid_for_email(text, allocate)
        return None

    def _row(self, key, vid, rec):
        return {"externalAccountId": key[0], "externalEventId": key[1], "contactId": vid,
                "email": self.contacts.get(vid), "state": rec[STATE], "occurredAt": rec[OCCURRED_AT],
                "createdAt": rec[CREATED_AT], "id": derived_id(key[0], key[1], str(vid)), "source": rec[SOURCE],
                "api_version": rec[API_VERSION], "writes": rec[WRITES]}

    def _put(self, key, vid, state, occurred_at, source, api_version):
        table = self.tables.setdefault(key, {})
        self.contacts.setdefault(vid, None)
        rec = table.get(vid)
        # (its id, derived_id of key and vid, is made when it is shown)
        created, writes = (iso_now(), 0) if rec is None else (rec[CREATED_AT], rec[WRITES])
        rec = table[vid] = (state, occurred_at, created, source, api_version, writes + 1)
        return rec

    # ---- the writes (api.py) ---------------------------------------------

    def vids_for_emails(self, emails):
        """The vids of these emails (allocated if new): the email-create answer.
        With --lean (no mapping kept) 1000, 1001, ... in the order given."""
        if not self.keep:
            return [FIRST_EMAIL_VID + n for n in range(len(emails))]
        with self.lock:
            return [self._vid_for_email(e) if isinstance(e, str) else None for e in emails]

    def apply_write(self, kind, account, event, subscriber_state, inputs, api_version):
        """A subscriber-state write answered 2xx: set each input contact's state."""
        state = WRITE_STATES.get(subscriber_state)
        if not self.keep or state is None:
            return
        key = ("" if account is None else account, event)
        by_email = kind in BY_EMAIL
        # _put's work inlined (a batch is up to 100 contacts, the benchmark's
        # drain rate is bounded by the mock): one createdAt for the records
        # this write creates
        created = None
        with self.lock:
            table = self.tables.get(key)
            contacts = self.contacts
            for item in inputs:
                if not isinstance(item, dict):
                    continue
                if by_email:
                    email = item.get("email")
                    vid = self._vid_for_email(email) if isinstance(email, str) and email else None
                else:
                    vid = item.get("vid")
                    if not (type(vid) is int or is_int(vid)):
                        continue
                if vid is None:
                    continue
                when = item.get("interactionDateTime")
                if not (type(when) is int or is_int(when)):
                    when = now_ms()
                if table is None:
                    table = self.tables.setdefault(key, {})
                if vid not in contacts:
                    contacts[vid] = None
                rec = table.get(vid)
                if rec is None:
                    if created is None:
                        created = iso_now()
                    table[vid] = (state, when, created, kind, api_version, 1)
                else:
                    table[vid] = (state, when, rec[CREATED_AT], kind, api_version, rec[WRITES] + 1)

    def note_event_names(self, inputs):
        """events/upsert: the names the breakdown's marketingEvent shows."""
        if not self.keep:
            return
        with self.lock:
            for item in inputs:
                if isinstance(item, dict) and isinstance(item.get("eventName"), str):
                    key = (str(item.get("externalAccountId")), str(item.get("externalEventId")))
                    self.event_names[key] = item["eventName"]

    # ---- the read routes ---------------------------------------------------

    def _item(self, key, vid, rec):
        return {
            "id": derived_id(key[0], key[1], str(vid)),
            "createdAt": rec[CREATED_AT],
            "associations": {
                "contact": {"contactId": str(vid), "email": self.contacts.get(vid) or ""},
                "marketingEvent": {"marketingEventId": derived_id(key[0], key[1]),
                                   "name": self.event_names.get(key, ""),
                                   "externalAccountId": key[0], "externalEventId": key[1]},
            },
            "properties": {"attendanceState": rec[STATE], "occurredAt": rec[OCCURRED_AT]},
        }

    def read(self, kind, params, query):
        """The answer object of a read route (its query already checked)."""
        key = (params.get("externalAccountId", ""), params.get("externalEventId", ""))
        with self.lock:
            table = self.tables.get(key, {})
            if kind == "counters":
                states = [rec[STATE] for rec in table.values()]
                return {"attended": states.count("ATTENDED"), "cancelled": states.count("CANCELLED"),
                        "noShows": states.count("NO_SHOW"), "registered": states.count("REGISTERED")}
            wanted_state = query_value(query, "state")
            who = query_value(query, "contactIdentifier")
            vid = self._resolve(who, allocate=False) if who else None
            matching = sorted(v for v, rec in table.items()
                              if (not who or v == vid) and (wanted_state is None or rec[STATE] == wanted_state))
            limit = int(query_value(query, "limit") or LIMIT_DEFAULT)
            after = query_value(query, "after")
            start = decode_cursor(after) if after else None
            page_from = [v for v in matching if start is None or v > start]
            page = page_from[:limit]
            answer = {"total": len(matching), "results": [self._item(key, v, table[v]) for v in page]}
            if len(page_from) > limit:
                answer["paging"] = {"next": {"after": encode_cursor(page[-1])}}
            return answer

    # ---- control (control.py) ---------------------------------------------

    def table(self, account=None, event=None):
        """GET /__mock/participations: the rows (optionally of one account / event)."""
        with self.lock:
            rows = []
            for key in sorted(self.tables):
                if (account is None or key[0] == account) and (event is None or key[1] == event):
                    table = self.tables[key]
                    rows.extend(self._row(key, vid, table[vid]) for vid in sorted(table))
            return {"participations": rows, "emails": dict(sorted(self.email_vids.items()))}

    def forget(self, account, event, contacts=None, count=None):
        """Remove the named contacts (ids or emails), or the first count by
        contact id: (rows forgotten, identifiers that held no participation)."""
        key = (account, event)
        with self.lock:
            table = self.tables.get(key, {})
            if count is not None:
                targets, missing = sorted(table)[:count], []
            else:
                targets, missing = [], []
                for ident in contacts:
                    vid = self._resolve(ident, allocate=False)
                    if vid is None or vid not in table:
                        missing.append(ident)
                    elif vid not in targets:
                        targets.append(vid)
            rows = [self._row(key, vid, table.pop(vid)) for vid in targets]
            if key in self.tables and not table:
                del self.tables[key]
            return rows, missing

    def set_states(self, account, event, contacts, state, occurred_at=None):
        """Set contacts' states directly (a HubSpot-side change): their rows."""
        key = (account, event)
        with self.lock:
            vids = []
            for ident in contacts:
                vid = self._resolve(ident, allocate=True)
                if vid is not None and vid not in vids:
                    vids.append(vid)
            when = occurred_at if occurred_at is not None else now_ms()
            return [self._row(key, vid, self._put(key, vid, state, when, "set", None)) for vid in vids]
