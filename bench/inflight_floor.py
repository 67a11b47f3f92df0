"""An experiment for issue 17 (docs/intake.md, "Rows in flight stay in the intake"): the SQL
floor of a drain of intake rows, the claim and the record alone (no request, no JSON, no checks
of the claimed rows), per 10,000 contacts, the variants alternated in one sitting.

  shipped  the installed claim_intake() (rows marked sending where they are, the order rules
           skipped when the connection has nothing pending or in flight in outbox_rows), then
           the record of a success: one UPDATE of the partitioned outbox that finds each row by
           its place and moves it to outbox_rows, sent (as hs_outbox_record_sent does)
  rules    the same claim with the order rules' lookups for every row (as before e087d39)
  norules  the same claim with no order rule at all (the floor under both)

The figure "before" in docs/intake.md (0.322 s: the claim that moved each row to outbox_rows as
sending, then the record by id) was measured by this script as of commit 493d157, against the
claim_intake() of that time.

Each drain keeps the intake's pending rows in id order 20,000 at a time (as the worker's sweep
does) and claims them 800 at a time (the worker's claim at batch_size 100); it must end with
every row sent, in outbox_rows.  Run by
  BENCH_EXPERIMENT=intake BENCH_EXPERIMENT_SCRIPT=inflight_floor.py bash bench/run.sh
(a throwaway cluster, fsync on, a database no worker serves), N=100000 R=3 by default.
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
PER_CLAIM = 800
KEEP = 20000

conn = psycopg2.connect(host=args.pghost, port=args.pgport, user="postgres", dbname=args.dbname)
conn.autocommit = True
cur = conn.cursor()
pid = conn.get_backend_pid()


def cpu():
    return int(open("/proc/%d/schedstat" % pid).read().split()[0]) / 1e9


def q(sql, params=None):
    cur.execute(sql, params)
    return cur.fetchall() if cur.description else None


q("SELECT hubspot_events.pause()")
WRITE = ("INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact,"
         " contact_key, source, intake)"
         " SELECT 'webinar-' || (i %% 10), 'register', 'acme', jsonb_build_object('vid', i, 'interactionDateTime',"
         " 1767225600000, 'properties', '{}'::jsonb), i::text, 'public.exp', true"
         " FROM generate_series(%s::bigint, %s::bigint) i")
KEPT = "SELECT ctid::text, id FROM ONLY hubspot_events.outbox_intake WHERE status = 'pending' ORDER BY id LIMIT %s"
RECORD = ("UPDATE hubspot_events.outbox o SET intake = false, status = 'sent', sent_at = now(), http_status = 204,"
          " correlation_id = r.cid::uuid, error_category = NULL, error_subcategory = NULL, error_message = NULL,"
          " error_body = NULL"
          " FROM ROWS FROM (unnest(%s::tid[]), unnest(%s::text[])) AS r(tid, cid)"
          " WHERE o.intake AND o.ctid = r.tid AND o.status = 'sending'")
CLAIM_SETTINGS = ("SET LOCAL jit = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;"
                  " SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
CLAIM_SHIPPED = "SELECT tid::text FROM hubspot_events.claim_intake(%s::tid[], %s::bigint[], 'default')"
RULES = """
           AND NOT EXISTS (SELECT 1 FROM hubspot_events.outbox_rows p
                            WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                              AND p.external_event_id = o.external_event_id AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key AND p.connection = o.connection
                              AND p.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT EXISTS (SELECT 1 FROM hubspot_events.outbox_rows e
                            WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                              AND e.external_event_id = o.external_event_id AND e.external_account_id = o.external_account_id
                              AND e.contact_key = '' AND e.kind = 'event_upsert' AND e.connection = o.connection
                              AND e.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)"""
CLAIM_INLINE = """
    WITH inflight AS MATERIALIZED (
        SELECT ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                       FROM hubspot_events.outbox_rows s
                      WHERE s.status = 'sending' AND s.connection = 'default') AS keys),
    c AS (
        SELECT o.ctid AS tid
          FROM ROWS FROM (pg_catalog.unnest(%s::tid[]), pg_catalog.unnest(%s::bigint[])) AS k(tid, id)
          JOIN ONLY hubspot_events.outbox_intake o ON o.ctid = k.tid AND o.id = k.id
         WHERE o.status = 'pending' AND o.kind = 'subscriber' AND o.connection = 'default'{rules}
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE ONLY hubspot_events.outbox_intake u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT c.tid FROM c))
    RETURNING u.ctid::text"""
CLAIMS = {"shipped": CLAIM_SHIPPED, "rules": CLAIM_INLINE.format(rules=RULES),
          "norules": CLAIM_INLINE.format(rules="")}


def drain(way):
    spent, kept = 0.0, []
    while True:
        c0 = cpu()
        if not kept:
            kept = q(KEPT, (KEEP,))
        take, kept = kept[:PER_CLAIM], kept[PER_CLAIM:]
        q("BEGIN")
        if way != "shipped":
            q(CLAIM_SETTINGS)
        tids = [r[0] for r in q(CLAIMS[way], ([t for t, _ in take], [i for _, i in take]))] if take else []
        q("COMMIT")
        if tids:
            q("BEGIN")
            q(RECORD, (tids, [str(uuid.uuid4()) for _ in tids]))
            q("COMMIT")
        spent += cpu() - c0
        if not tids:
            break
    sent = q("SELECT count(*) FROM ONLY hubspot_events.outbox_rows WHERE status = 'sent'")[0][0]
    if sent != N:
        raise SystemExit("%s: %d rows of %d ended sent in outbox_rows" % (way, sent, N))
    return spent


res = {}
for r in range(R):
    for way in CLAIMS:
        q("TRUNCATE hubspot_events.outbox")
        q("CHECKPOINT")
        for lo in range(1, N + 1, 10000):
            q(WRITE, (lo, min(N, lo + 9999)))
        q("CHECKPOINT")
        res.setdefault(way, []).append(drain(way))
        print("== inflight floor: run %d, %s: drain %.3f s (%.3f s per 10,000)"
              % (r + 1, way, res[way][-1], res[way][-1] * 10000 / N), flush=True)
for way in CLAIMS:
    print("== inflight floor: median %s: %.3f s per 10,000 contacts" % (way, statistics.median(res[way]) * 10000 / N))
