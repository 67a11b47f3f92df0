"""Floor of 'rows in flight stay in the intake' (P: present 0.9.0; N: new), SQL only."""
import argparse, os, statistics, uuid
import psycopg2
ap = argparse.ArgumentParser()
for a in ("pghost", "pgport", "dbname"):
    ap.add_argument("--" + a, required=True)
args = ap.parse_args()
N = int(os.environ.get("N", "100000")); R = int(os.environ.get("R", "3"))
PER_CLAIM = 800; SWEEP = 20000
conn = psycopg2.connect(host=args.pghost, port=args.pgport, user="postgres", dbname=args.dbname)
conn.autocommit = True
cur = conn.cursor(); pid = conn.get_backend_pid()
def cpu(): return int(open("/proc/%d/schedstat" % pid).read().split()[0]) / 1e9
def q(sql, p=None):
    cur.execute(sql, p); return cur.fetchall() if cur.description else None
q("SELECT hubspot_events.pause()")
WRITE = ("INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, source, intake)"
         " SELECT 'webinar-' || (i %% 10), 'register', 'acme', jsonb_build_object('vid', i, 'interactionDateTime', 1767225600000,"
         " 'properties', '{}'::jsonb), i::text, 'public.exp', true FROM generate_series(%s::bigint, %s::bigint) i")
SWEEP_SQL = "SELECT ctid::text, id FROM ONLY hubspot_events.outbox_intake WHERE status = 'pending' ORDER BY id LIMIT %s"
RECORD_P = ("UPDATE hubspot_events.outbox_rows o SET status = 'sent', sent_at = now(), http_status = 204, correlation_id = r.cid::uuid,"
          " error_category = NULL, error_subcategory = NULL, error_message = NULL, error_body = NULL"
          " FROM ROWS FROM (unnest(%s::bigint[]), unnest(%s::text[])) AS r(id, cid) WHERE o.id = r.id AND o.status = 'sending'")
RECORD_N = ("UPDATE hubspot_events.outbox o SET intake = false, status = 'sent', sent_at = now(), http_status = 204, correlation_id = r.cid::uuid,"
          " error_category = NULL, error_subcategory = NULL, error_message = NULL, error_body = NULL"
          " FROM ROWS FROM (unnest(%s::tid[]), unnest(%s::text[])) AS r(tid, cid) WHERE o.intake AND o.ctid = r.tid AND o.status = 'sending'")
SETTINGS = ("SET LOCAL jit = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;"
            " SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
CLAIM_N = """
    WITH inflight AS MATERIALIZED (
        SELECT ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                       FROM hubspot_events.outbox_rows s
                      WHERE s.status = 'sending' AND s.connection = 'default') AS keys),
    c AS (
        SELECT o.ctid AS tid
          FROM ROWS FROM (pg_catalog.unnest(%s::tid[]), pg_catalog.unnest(%s::bigint[])) AS k(tid, id)
          JOIN ONLY hubspot_events.outbox_intake o ON o.ctid = k.tid AND o.id = k.id
         WHERE o.status = 'pending' AND o.kind = 'subscriber' AND o.connection = 'default'
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
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE ONLY hubspot_events.outbox_intake u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT c.tid FROM c))
    RETURNING u.ctid::text, u.id, u.contact"""
import re
CLAIM_N0 = re.sub(r"AND NOT EXISTS .*?FOR UPDATE", "FOR UPDATE", CLAIM_N, flags=re.S)
CLAIM_N0 = CLAIM_N0.replace("WITH inflight AS MATERIALIZED (\n        SELECT ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)\n                       FROM hubspot_events.outbox_rows s\n                      WHERE s.status = 'sending' AND s.connection = 'default') AS keys),\n    c AS", "WITH c AS")
def drain(way):
    done, spent, staged = 0, 0.0, []
    while True:
        c0 = cpu()
        if not staged:
            staged = q(SWEEP_SQL, (SWEEP,))
        take, staged = staged[:PER_CLAIM], staged[PER_CLAIM:]
        q("BEGIN")
        if way == "P":
            rows = q("SELECT tid::text, id, contact FROM hubspot_events.claim_intake(%s::tid[], %s::bigint[], 'default')",
                     ([t for t, _ in take], [i for _, i in take])) if take else []
            keys = [r[0] for r in rows]
        else:
            q(SETTINGS)
            rows = q(CLAIM_N if way == "N" else CLAIM_N0, ([t for t, _ in take], [i for _, i in take])) if take else []
            keys = [r[0] for r in rows]
        q("COMMIT")
        if keys:
            q("BEGIN")
            q(RECORD_N, (keys, [str(uuid.uuid4()) for _ in keys]))
            q("COMMIT")
        spent += cpu() - c0
        if not keys:
            break
        done += len(keys)
    if done != N:
        raise SystemExit("%s drained %d of %d" % (way, done, N))
    return spent
res = {}
for r in range(R):
    for way in ("P", "N", "N0"):
        q("TRUNCATE hubspot_events.outbox")
        q("CHECKPOINT")
        for lo in range(1, N + 1, 10000):
            q(WRITE, (lo, min(N, lo + 9999)))
        q("CHECKPOINT")
        res.setdefault(way, []).append(drain(way))
        print("run %d %s drain %.3f s (%.3f per 10k)" % (r + 1, way, res[way][-1], res[way][-1] * 10000 / N), flush=True)
for way in res:
    print("median %s: %.3f s per 10,000" % (way, statistics.median(res[way]) * 10000 / N))
