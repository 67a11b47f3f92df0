"""An experiment for issue 17's next step: the floors of an intake design, against the present
outbox's, measured in one sitting (so that a slow or busy machine weighs on both alike).

  A, the present design: each application row's outbox row is written into hubspot_events.outbox,
     with its primary key, the claim's due-rows index and the per-contact hash index; the drain
     is claim_due(800) and the record's UPDATE, as the worker runs them at batch_size 100.
  B, an intake: the outbox rows are written into a table of the outbox's columns with no index
     (the intake); the drain's claim moves 800 of them at a time into a table with every index of
     the outbox, already 'sending' with the attempt counted (a DELETE from the intake and an
     INSERT, with claim_due's per-contact hash probe and in-flight check against that table and
     claim_due's planner settings), then the same record.

  C, an intake moved whole: the same writes as B; the drain first moves every intake row, in id
     order, into hubspot_events.outbox as pending (DELETE ... RETURNING, INSERT), then runs A's
     claim_due and record: the order rules stay claim_due's, and the worker pays the index
     entries the application's write no longer does.

  S, B with each contact's order kept: a sweep reads the intake's K oldest rows (ORDER BY id
     LIMIT K, K=20000 by default: a sequential scan and a bounded sort), the caller keeps their
     ctids and ids, and each claim takes the next 800 of them by ctid (a TID scan, the id checked
     again), with B's rules and move.  The kept rows are visible rows with an id up to some X, a
     set that holds every older row of each of its contacts (an older row of a contact committed
     first, order_lock.c), so claims in id order keep each contact's order.

  B with a BRIN index on id (the write only): what a claim by id ranges would cost the write
     (one way to keep each contact's rows in id order without a per-contact index, see the Analysis).

Both writes are the floors of scenario 1 (one statement writes 10,000 bare application rows and,
from its RETURNING, their outbox rows; no trigger); both drains are the SQL alone (no request, no
JSON, no checks of the claimed rows), as scenario 2's floor.  Backend CPU (schedstat), median of
R runs, the variants alternated.

What B leaves out, and a real intake would need (C has it): the order of one contact's rows.  Ids of one
contact are in commit order (order_lock.c), but rows are not in id order on the intake's pages
(each backend fills its own page), so a claim that takes the intake's rows in page order could
send a contact's younger row first.  B takes them in page order; a real design must take them
in id order per contact (see docs/benchmarks.md, Analysis).

Run by `BENCH_EXPERIMENT=intake bash bench/run.sh` (a throwaway cluster, fsync on, a database
no worker serves), or against any such database with the extension:
  python3 bench/intake_floor.py --pghost H --pgport P --dbname D   (N=100000 R=3 by default)
"""
import argparse
import os
import statistics
import uuid

import psycopg2

ap = argparse.ArgumentParser()
for a in ("pghost", "pgport", "dbname"):
    ap.add_argument("--" + a, required=True)
args = ap.parse_args()
N = int(os.environ.get("N", "100000"))
R = int(os.environ.get("R", "3"))
PER_STATEMENT = 10000
PER_CLAIM = 800
SWEEP = int(os.environ.get("SWEEP", "20000"))

conn = psycopg2.connect(host=args.pghost, port=args.pgport, user="postgres", dbname=args.dbname)
conn.autocommit = True
cur = conn.cursor()
pid = conn.get_backend_pid()


def cpu():
    return int(open("/proc/%d/schedstat" % pid).read().split()[0]) / 1e9


def q(sql, params=None):
    cur.execute(sql, params)
    return cur.fetchall() if cur.description else None


# (run it in a database no worker serves: a worker takes rows 'sending' that it did not claim
# for rows a crash left in flight, and sends them again)
q("SELECT hubspot_events.pause()")
q("SET synchronize_seqscans = off")
q("""DROP TABLE IF EXISTS exp_intake, exp_intake_brin, exp_queue, exp_bare;
     DROP SEQUENCE IF EXISTS exp_ids;
     CREATE SEQUENCE exp_ids;
     CREATE TABLE exp_intake (LIKE hubspot_events.outbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
     ALTER TABLE exp_intake ALTER COLUMN id SET DEFAULT pg_catalog.nextval('exp_ids');
     CREATE TABLE exp_intake_brin (LIKE exp_intake INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
     CREATE INDEX ON exp_intake_brin USING brin (id);
     CREATE TABLE exp_queue (LIKE hubspot_events.outbox INCLUDING ALL);
     CREATE TABLE exp_bare (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, webinar text NOT NULL,
                            status text NOT NULL, hubspot_vid bigint NOT NULL, checked_in timestamptz NOT NULL)""")

BARE = ("INSERT INTO exp_bare (webinar, status, hubspot_vid, checked_in)"
        " SELECT 'webinar-' || (i %% 10), 'register', i, now() FROM generate_series(%s::bigint, %s::bigint) i")
FLOOR = ("WITH ins AS (" + BARE + " RETURNING webinar, status, hubspot_vid)"
         " INSERT INTO {t} (external_event_id, subscriber_state, external_account_id, contact, contact_key, source)"
         " SELECT webinar, status, 'acme', jsonb_build_object('vid', hubspot_vid, 'interactionDateTime', 1767225600000,"
         " 'properties', '{{}}'::jsonb), hubspot_vid::text, 'public.exp_bare' FROM ins")
RECORD = ("UPDATE {t} o SET status = 'sent', sent_at = now(), http_status = 204, correlation_id = r.cid::uuid,"
          " error_category = NULL, error_subcategory = NULL, error_message = NULL, error_body = NULL"
          " FROM ROWS FROM (unnest(%s::bigint[]), unnest(%s::text[])) AS r(id, cid) WHERE o.id = r.id AND o.status = 'sending'")
CLAIM_A = "SELECT pg_catalog.array_agg(id) FROM hubspot_events.claim_due(%s, 'default')" % PER_CLAIM
# B's claim: the intake's rows from a page on (a TID range scan: the rows before it are claimed),
# with claim_due's order rules against the indexed table, moved into it as 'sending'
CLAIM_B = """
WITH due AS (
    SELECT i.ctid AS tid FROM exp_intake i
     WHERE i.ctid >= %s::tid
       AND NOT EXISTS (SELECT 1 FROM exp_queue p
                        WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                            = (i.external_event_id || ' ' || i.external_account_id || ' ' || i.contact_key)
                          AND p.external_event_id = i.external_event_id AND p.external_account_id = i.external_account_id
                          AND p.contact_key = i.contact_key AND p.connection = i.connection AND p.id < i.id
                          AND p.status NOT IN ('sending', 'sent', 'failed'))
       AND NOT coalesce(ROW(i.external_event_id, i.external_account_id, i.contact_key)
                        = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                       FROM exp_queue s WHERE s.status = 'sending' AND s.connection = 'default')), false)
     LIMIT %s FOR UPDATE OF i SKIP LOCKED),
moved AS (DELETE FROM exp_intake d WHERE d.ctid = ANY (ARRAY(SELECT tid FROM due)) RETURNING d.*)
INSERT INTO exp_queue (id, created_at, external_event_id, subscriber_state, external_account_id, contact, contact_key,
                       status, attempts, next_attempt_at, last_attempt_at, source, kind, connection)
OVERRIDING SYSTEM VALUE
SELECT id, created_at, external_event_id, subscriber_state, external_account_id, contact, contact_key,
       'sending', attempts + 1, next_attempt_at, now(), source, kind, connection FROM moved
RETURNING id, (SELECT max(tid) FROM due)"""
# S, B with the order kept: a sweep reads the intake's oldest rows (ORDER BY id LIMIT K: a
# sequential scan and a bounded sort), the worker keeps them (ctid, id) and claims them in id
# order, 800 at a time, by their ctids (a TID scan), with the same rules and the same move
SWEEP_S = "SELECT ctid::text, id FROM exp_intake ORDER BY id LIMIT %s"
CLAIM_S = CLAIM_B.replace("WHERE i.ctid >= %s::tid", "WHERE i.ctid = ANY (%s::tid[]) AND i.id = ANY (%s::bigint[])")
CLAIM_SETTINGS = ("SET LOCAL jit = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;"
                  " SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
TARGET = {"bare": None, "A": "hubspot_events.outbox", "B": "exp_intake", "C": "exp_intake", "B_brin": "exp_intake_brin",
          "S": "exp_intake"}
MOVE_C = """WITH moved AS (DELETE FROM exp_intake RETURNING *)
INSERT INTO hubspot_events.outbox (id, created_at, external_event_id, subscriber_state, external_account_id, contact,
                                   contact_key, source, kind, connection)
OVERRIDING SYSTEM VALUE
SELECT id, created_at, external_event_id, subscriber_state, external_account_id, contact, contact_key, source, kind,
       connection FROM moved ORDER BY id"""


def write(way):
    c0 = cpu()
    for lo in range(1, N + 1, PER_STATEMENT):
        hi = min(N, lo + PER_STATEMENT - 1)
        q(BARE if way == "bare" else FLOOR.format(t=TARGET[way]), (lo, hi))
    return cpu() - c0


def drain(way):
    done, spent, page = 0, 0.0, "(0,0)"
    if way == "C":
        c0 = cpu()
        q(MOVE_C)
        spent += cpu() - c0
    staged = []
    while True:
        c0 = cpu()
        if way == "S" and not staged:
            staged = q(SWEEP_S, (SWEEP,))
        q("BEGIN")
        if way in ("A", "C"):
            ids = q(CLAIM_A)[0][0]
        elif way == "S":
            q(CLAIM_SETTINGS)
            take, staged = staged[:PER_CLAIM], staged[PER_CLAIM:]
            rows = q(CLAIM_S, ([t for t, _ in take], [i for _, i in take], PER_CLAIM)) if take else []
            ids = [r[0] for r in rows] or None
        else:
            q(CLAIM_SETTINGS)
            rows = q(CLAIM_B, (page, PER_CLAIM))
            if not rows and page != "(0,0)":
                page = "(0,0)"
                rows = q(CLAIM_B, (page, PER_CLAIM))
            ids = [r[0] for r in rows] or None
            page = rows[0][1] if rows else page
        q("COMMIT")
        if ids:
            q("BEGIN")
            q(RECORD.format(t="exp_queue" if way in ("B", "S") else "hubspot_events.outbox"),
              (ids, [str(uuid.uuid4()) for _ in ids]))
            q("COMMIT")
        spent += cpu() - c0
        if not ids:
            break
        done += len(ids)
    if done != N:
        raise SystemExit("%s drained %d rows of %d" % (way, done, N))
    return spent


res = {}
for r in range(R):
    for way in ("bare", "A", "B", "C", "B_brin", "S"):
        q("TRUNCATE hubspot_events.outbox, exp_intake, exp_intake_brin, exp_queue, exp_bare")
        q("CHECKPOINT")
        res.setdefault(("write", way), []).append(write(way))
        if way in ("A", "B", "C", "S"):
            q("CHECKPOINT")
            res.setdefault(("drain", way), []).append(drain(way))
        print("== intake floor: run %d, %s: write %.3f s%s" % (
            r + 1, way, res[("write", way)][-1], ", drain %.3f s" % res[("drain", way)][-1] if ("drain", way) in res else ""),
            flush=True)
q("TRUNCATE hubspot_events.outbox")
q("DROP TABLE exp_intake, exp_intake_brin, exp_queue, exp_bare")
q("DROP SEQUENCE exp_ids")
q("SELECT hubspot_events.resume()")
m = {k: statistics.median(v) for k, v in res.items()}
per = lambda s: s / N * 10000
print("== intake floor: %d rows, %d-row statements, %d runs each (medians), backend CPU s per 10,000 rows" % (N, PER_STATEMENT, R))
print("== write: bare %.4f; A, the outbox %.4f (%.2fx bare); B, the intake %.4f (%.2fx bare);"
      " the intake with a BRIN index on id %.4f (%.2fx bare)" % (
          per(m[("write", "bare")]), per(m[("write", "A")]), m[("write", "A")] / m[("write", "bare")],
          per(m[("write", "B")]), m[("write", "B")] / m[("write", "bare")],
          per(m[("write", "B_brin")]), m[("write", "B_brin")] / m[("write", "bare")]))
print("== drain SQL: A, claim_due and the record %.3f; B, the intake's claim and the record %.3f (B/A %.2f);"
      " C, the move, claim_due and the record %.3f (C/A %.2f)" % (
          per(m[("drain", "A")]), per(m[("drain", "B")]), m[("drain", "B")] / m[("drain", "A")],
          per(m[("drain", "C")]), m[("drain", "C")] / m[("drain", "A")]))
print("== drain SQL: S, B with each contact's order kept (a sweep of the %d oldest rows, claims by ctid) %.3f (S/A %.2f)" % (
          SWEEP, per(m[("drain", "S")]), m[("drain", "S")] / m[("drain", "A")]))
