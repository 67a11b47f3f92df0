/* hubspot_events 0.6.0 -> 0.7.0: operations (issue 16): every failure's history, why a row waits, dry runs, metrics, backfill progress, verify_event. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.7.0'" to load this file. \quit

-- Every failed attempt of a row (time, HTTP status, category, subCategory,
-- message, correlationId), the last 10, oldest first.  The worker appends
-- one entry per failed attempt; retry_failed() keeps them; NULL for a row
-- that never failed.  A column of the row, not a table: written by the
-- UPDATE that records the failure anyway, and gone with the row.
ALTER TABLE @extschema@.outbox ADD COLUMN attempt_history jsonb;
COMMENT ON COLUMN @extschema@.outbox.attempt_history IS
'The row''s failed attempts, oldest first, the last 10: [{attempt, at, http_status, category, subcategory, message, correlation_id}]';

-- hubspot_events.dry_run: the worker records a row it did not send as
-- sent, with dry_run = true and the request it would have gone in.  NULL
-- (not false) for every other row: a column without a default keeps the
-- enqueue's direct insert (src/enqueue.c).
ALTER TABLE @extschema@.outbox ADD COLUMN dry_run boolean;
ALTER TABLE @extschema@.outbox ADD COLUMN dry_run_request jsonb;
COMMENT ON COLUMN @extschema@.outbox.dry_run IS
'true: recorded sent by a dry run (hubspot_events.dry_run), never sent to HubSpot; NULL otherwise';
COMMENT ON COLUMN @extschema@.outbox.dry_run_request IS
'For a dry-run row, the request it would have gone in: {method, path, body_bytes, rows}';

-- Send the dry-run rows for real: pending again, in their order, unless a
-- newer row of the same contact (or event) was really sent since (that
-- would move its state backwards).  Returns the count.
CREATE FUNCTION @extschema@.replay_dry_run()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    WITH r AS (
        UPDATE @extschema@.outbox o
           SET status = 'pending', attempts = 0, next_attempt_at = now(), sent_at = NULL,
               dry_run = NULL, dry_run_request = NULL
         WHERE o.status = 'sent' AND o.dry_run
           AND NOT EXISTS (
                 SELECT 1 FROM @extschema@.outbox s
                  WHERE s.external_event_id = o.external_event_id
                    AND s.external_account_id = o.external_account_id
                    AND s.contact_key = o.contact_key
                    AND s.id > o.id
                    AND s.status = 'sent'
                    AND s.dry_run IS NOT TRUE)
        RETURNING 1)
    SELECT count(*) INTO n FROM r;
    IF n > 0 THEN
        PERFORM @extschema@.wake();
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.replay_dry_run() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.replay_dry_run() IS
'Send the rows a dry run recorded for real (pending again, in order), except those a newer really sent row of the same contact supersedes; returns the count';

-- failed_syncs as before, with the history as its last column (CREATE OR
-- REPLACE keeps the view's grants)
CREATE OR REPLACE VIEW @extschema@.failed_syncs WITH (security_barrier = true) AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body, kind, event, attempt_history
  FROM @extschema@.outbox
 WHERE status = 'failed';

-- attempts(row_id): one row per failed attempt of the row, oldest first.
-- Reads the history defensively: an entry an operator edited by hand into
-- something else gives NULLs, never an error.
CREATE FUNCTION @extschema@.attempts(row_id bigint)
RETURNS TABLE (attempt integer, attempted_at timestamptz, http_status integer,
               error_category text, error_subcategory text, error_message text,
               correlation_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN e->>'attempt' ~ '^[0-9]{1,9}$' THEN (e->>'attempt')::integer END,
           CASE WHEN jsonb_typeof(e->'at') = 'number' AND abs((e->>'at')::numeric) < 1e11
                THEN to_timestamp((e->>'at')::float8) END,
           CASE WHEN e->>'http_status' ~ '^[0-9]{1,3}$' THEN (e->>'http_status')::integer END,
           e->>'category', e->>'subcategory', e->>'message',
           CASE WHEN e->>'correlation_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN (e->>'correlation_id')::uuid END
      FROM @extschema@.outbox o,
           jsonb_array_elements(CASE WHEN jsonb_typeof(o.attempt_history) = 'array'
                                     THEN o.attempt_history ELSE '[]'::jsonb END)
                WITH ORDINALITY AS h(e, n)
     WHERE o.id = row_id AND jsonb_typeof(h.e) = 'object'
     ORDER BY h.n
$$;
REVOKE ALL ON FUNCTION @extschema@.attempts(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.attempts(bigint) IS
'The failed attempts of an outbox row (the last 10), oldest first, each with HubSpot''s category, message and correlationId';

-- waiting: why each pending row is not sent yet, in words (reason) and as
-- a code: due, backoff, rate_limited, held, paused, behind,
-- worker_not_running, standby.  In the claim's order (the due rows'
-- index), so that SELECT ... FROM waiting LIMIT n reads about n rows and a
-- few index probes for each (about 17 us a row); a count(*) over it reads
-- every pending row (1.7 s for 100,000: operations.md).
CREATE VIEW @extschema@.waiting WITH (security_barrier = true) AS
SELECT o.id, o.kind, o.external_event_id, o.subscriber_state, o.external_account_id,
       o.contact_key, o.created_at, o.attempts, o.next_attempt_at,
       r.code,
       CASE r.code
         WHEN 'worker_not_running' THEN
              CASE WHEN s.pid IS NULL THEN 'worker not running'
                   ELSE pg_catalog.format('worker not running for this database (it serves "%s")', s.database) END
         WHEN 'standby' THEN 'standby: this server is a standby; the primary''s worker sends'
         WHEN 'paused' THEN 'paused: hubspot_events.resume() restarts sending'
         WHEN 'held' THEN 'held: ' || s.held_reason
         WHEN 'behind' THEN pg_catalog.format('behind row %s (%s)', b.behind_id,
              CASE WHEN b.behind_event THEN 'its event''s upsert goes first'
                   ELSE 'an older change of the same contact goes first' END)
         WHEN 'rate_limited' THEN pg_catalog.format('rate limited until %s%s',
              greatest(o.next_attempt_at, s.rate_limited_until),
              coalesce(' (' || s.rate_limit_reason || ')', ''))
         WHEN 'backoff' THEN pg_catalog.format('backoff until %s (attempt %s of %s, last error: %s)',
              o.next_attempt_at, o.attempts,
              coalesce(pg_catalog.current_setting('hubspot_events.max_attempts', true), '?'),
              coalesce(o.error_category || ': ' || o.error_message, o.error_category, o.error_message, 'none recorded'))
         ELSE 'due: goes in the worker''s next turn'
       END AS reason,
       b.behind_id,
       o.error_category AS last_error_category,
       o.error_message AS last_error_message,
       o.correlation_id AS last_correlation_id
  FROM @extschema@.outbox o
 CROSS JOIN (SELECT w.pid, w.state, w.database, w.held_reason,
                    w.rate_limited_until, w.rate_limit_reason,
                    coalesce(c.paused, false) AS paused
               FROM @extschema@.worker_info() w
               LEFT JOIN @extschema@.worker_control c ON true) s
 CROSS JOIN LATERAL (
       SELECT coalesce(
                (SELECT min(p.id) FROM @extschema@.outbox p
                  WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                    AND p.external_event_id = o.external_event_id
                    AND p.external_account_id = o.external_account_id
                    AND p.contact_key = o.contact_key
                    AND p.id < o.id
                    AND p.status NOT IN ('sending', 'sent', 'failed')),
                (SELECT min(f.id) FROM @extschema@.outbox f
                  WHERE f.status = 'sending'
                    AND f.external_event_id = o.external_event_id
                    AND f.external_account_id = o.external_account_id
                    AND f.contact_key = o.contact_key)) AS contact_behind,
              CASE WHEN o.kind = 'subscriber' THEN coalesce(
                (SELECT min(e.id) FROM @extschema@.outbox e
                  WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                    AND e.external_event_id = o.external_event_id
                    AND e.external_account_id = o.external_account_id
                    AND e.contact_key = ''
                    AND e.kind = 'event_upsert'
                    AND e.status NOT IN ('sending', 'sent', 'failed')),
                (SELECT min(f.id) FROM @extschema@.outbox f
                  WHERE f.status = 'sending'
                    AND f.kind = 'event_upsert'
                    AND f.external_event_id = o.external_event_id
                    AND f.external_account_id = o.external_account_id)) END AS event_behind
        OFFSET 0   -- evaluated once per row, not once per reference below
     ) k
 CROSS JOIN LATERAL (
       SELECT coalesce(k.contact_behind, k.event_behind) AS behind_id,
              k.contact_behind IS NULL AND k.event_behind IS NOT NULL AS behind_event
     ) b
 CROSS JOIN LATERAL (
       SELECT CASE
                WHEN s.pid IS NULL OR s.database <> pg_catalog.current_database() THEN 'worker_not_running'
                WHEN s.state = 'standby' THEN 'standby'
                WHEN s.paused THEN 'paused'
                WHEN s.held_reason IS NOT NULL THEN 'held'
                WHEN b.behind_id IS NOT NULL THEN 'behind'
                WHEN s.rate_limited_until > pg_catalog.now() THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() AND (o.http_status = 429 OR o.attempts = 0) THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() THEN 'backoff'
                ELSE 'due'
              END AS code
     ) r
 WHERE o.status = 'pending'
 ORDER BY o.next_attempt_at, o.id;
REVOKE ALL ON @extschema@.waiting FROM PUBLIC;
COMMENT ON VIEW @extschema@.waiting IS
'Why each pending row is not sent yet (code and reason), in the order the worker claims; read it with a LIMIT';

-- metrics: counters since the worker started (shared memory; every request
-- to HubSpot's API, the worker's and the direct calls') and gauges of the
-- outbox and the worker, with Prometheus' names; metrics_text() gives the
-- same in Prometheus' text exposition format (docs/operations.md,
-- docs/postgres_exporter.yml)
CREATE FUNCTION @extschema@.metrics_counters(OUT name text, OUT labels jsonb, OUT value double precision)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_metrics_counters';
REVOKE ALL ON FUNCTION @extschema@.metrics_counters() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.metrics_counters() IS
'The counters of hubspot_events.metrics, from shared memory (no rows when the library is not preloaded)';

CREATE VIEW @extschema@.metrics AS
SELECT c.name, c.labels, c.value
  FROM @extschema@.metrics_counters() c
UNION ALL
SELECT 'hubspot_events_outbox_rows', pg_catalog.jsonb_build_object('status', s.status), s.n::double precision
  FROM (VALUES ('pending', (SELECT count(*) FROM @extschema@.outbox WHERE status = 'pending')),
               ('sending', (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sending')),
               ('sent', (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sent')),
               ('failed', (SELECT count(*) FROM @extschema@.outbox WHERE status = 'failed'))) s(status, n)
UNION ALL
SELECT 'hubspot_events_outbox_oldest_age_seconds', pg_catalog.jsonb_build_object('status', a.status),
       coalesce(pg_catalog.date_part('epoch', pg_catalog.now() - a.oldest), 0)
  FROM (VALUES ('pending', (SELECT min(created_at) FROM @extschema@.outbox WHERE status = 'pending')),
               ('sending', (SELECT min(created_at) FROM @extschema@.outbox WHERE status = 'sending'))) a(status, oldest)
UNION ALL
SELECT g.name, '{}'::jsonb, g.value
  FROM @extschema@.worker_info() w
 CROSS JOIN LATERAL (VALUES
       ('hubspot_events_worker_up',
        CASE WHEN w.pid IS NOT NULL AND w.database = pg_catalog.current_database() THEN 1 ELSE 0 END::double precision),
       ('hubspot_events_held', CASE WHEN w.held_reason IS NOT NULL THEN 1 ELSE 0 END::double precision),
       ('hubspot_events_rate_limited', CASE WHEN w.rate_limited_until IS NOT NULL THEN 1 ELSE 0 END::double precision),
       ('hubspot_events_daily_quota_remaining', w.daily_remaining::double precision)) g(name, value)
 WHERE g.value IS NOT NULL;
REVOKE ALL ON @extschema@.metrics FROM PUBLIC;
COMMENT ON VIEW @extschema@.metrics IS
'Counters (since the worker started) and gauges, named as Prometheus names them: one row per series (name, labels, value)';

-- The view in Prometheus' text exposition format (version 0.0.4): a TYPE
-- line per family, then its series, label values escaped.
CREATE FUNCTION @extschema@.metrics_text()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH m AS (
        SELECT name, labels, value,
               CASE WHEN name LIKE 'hubspot\_events\_commit\_to\_request\_seconds\_%'
                    THEN 'hubspot_events_commit_to_request_seconds' ELSE name END AS family,
               CASE WHEN name LIKE 'hubspot\_events\_commit\_to\_request\_seconds\_%' THEN 'histogram'
                    WHEN name LIKE '%\_total' THEN 'counter' ELSE 'gauge' END AS type
          FROM @extschema@.metrics),
    lines AS (
        SELECT family, type, name, labels,
               name
               || coalesce('{' || (SELECT string_agg(l.key || '="'
                                          || replace(replace(replace(l.value, '\', '\\'), '"', '\"'), E'\n', '\n')
                                          || '"', ',' ORDER BY l.key)
                                     FROM jsonb_each_text(m.labels) l) || '}', '')
               || ' '
               || CASE WHEN value = 'Infinity' THEN '+Inf' WHEN value = '-Infinity' THEN '-Inf'
                       ELSE value::text END
               || E'\n' AS line
          FROM m)
    SELECT coalesce(string_agg(block, '' ORDER BY family), '')
      FROM (SELECT family,
                   '# TYPE ' || family || ' ' || type || E'\n'
                   || string_agg(line, '' ORDER BY name,
                                 labels->>'le' = '+Inf',
                                 CASE WHEN labels ? 'le' AND labels->>'le' <> '+Inf' THEN (labels->>'le')::float8 END,
                                 labels::text) AS block
              FROM lines GROUP BY family, type) b
$$;
REVOKE ALL ON FUNCTION @extschema@.metrics_text() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.metrics_text() IS
'hubspot_events.metrics in Prometheus'' text exposition format';

-- backfill reports its progress: one row per (table, trigger) in
-- backfill_runs, updated after each batch (committed, so another session
-- sees it), the view backfill_progress with the rate and the time left,
-- and a NOTICE every hubspot_events.progress_notice_ms (5 seconds).  backfill_report() writes the row with the
-- owner's rights (SECURITY DEFINER): the role that backfills needs EXECUTE
-- on it, not privileges on the table.
CREATE TABLE @extschema@.backfill_runs (
    relid         oid NOT NULL,
    table_name    text NOT NULL,
    trigger_name  name NOT NULL,
    pid           integer,
    started_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    rows_scanned  bigint NOT NULL DEFAULT 0,
    rows_enqueued bigint NOT NULL DEFAULT 0,
    rows_estimate bigint,
    PRIMARY KEY (relid, trigger_name)
);
REVOKE ALL ON @extschema@.backfill_runs FROM PUBLIC;
COMMENT ON TABLE @extschema@.backfill_runs IS
'The last backfill of each (table, trigger): rows scanned and enqueued so far, when it started, last reported and finished';

CREATE FUNCTION @extschema@.backfill_report(tbl regclass, trigger_name name, scanned bigint, enqueued bigint, finished boolean)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.backfill_runs AS r
           (relid, table_name, trigger_name, pid, started_at, updated_at, finished_at,
            rows_scanned, rows_enqueued, rows_estimate)
    SELECT c.oid, c.oid::regclass::text, backfill_report.trigger_name, pg_backend_pid(),
           clock_timestamp(), clock_timestamp(), CASE WHEN finished THEN clock_timestamp() END,
           scanned, enqueued, CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END
      FROM pg_class c WHERE c.oid = tbl
    ON CONFLICT (relid, trigger_name) DO UPDATE
       SET table_name = excluded.table_name, pid = excluded.pid,
           started_at = CASE WHEN scanned = 0 THEN excluded.started_at ELSE r.started_at END,
           updated_at = excluded.updated_at, finished_at = excluded.finished_at,
           rows_scanned = excluded.rows_scanned, rows_enqueued = excluded.rows_enqueued,
           rows_estimate = CASE WHEN scanned = 0 THEN excluded.rows_estimate ELSE r.rows_estimate END
$$;
REVOKE ALL ON FUNCTION @extschema@.backfill_report(regclass, name, bigint, bigint, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.backfill_report(regclass, name, bigint, bigint, boolean) IS
'Internal, for backfill: record its progress in backfill_runs (scanned = 0 starts a run)';

-- every role that may run backfill() may report its progress, so that what
-- backfills today still does after the update
DO $$
DECLARE
  grantee regrole;
BEGIN
  FOR grantee IN
    SELECT a.grantee::regrole
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.backfill(pg_catalog.regclass, pg_catalog.name, pg_catalog.int4, pg_catalog.int8)'::pg_catalog.regprocedure
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) 0
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
  LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.backfill_report(pg_catalog.regclass, pg_catalog.name, pg_catalog.int8, pg_catalog.int8, boolean) TO %s', grantee);
  END LOOP;
END $$;

CREATE VIEW @extschema@.backfill_progress AS
SELECT r.table_name, r.trigger_name, r.pid,
       CASE WHEN r.finished_at IS NOT NULL THEN 'finished'
            WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = r.pid) THEN 'running'
            ELSE 'stopped' END AS state,
       r.started_at, r.updated_at, r.finished_at, r.rows_scanned, r.rows_enqueued, r.rows_estimate,
       round(r.rows_scanned / nullif(pg_catalog.date_part('epoch', r.updated_at - r.started_at), 0)) AS rows_per_second,
       CASE WHEN r.finished_at IS NULL AND r.rows_estimate > r.rows_scanned AND r.rows_scanned > 0 THEN
            pg_catalog.make_interval(secs => (r.rows_estimate - r.rows_scanned)
                 * pg_catalog.date_part('epoch', r.updated_at - r.started_at) / r.rows_scanned) END AS time_left
  FROM @extschema@.backfill_runs r;
REVOKE ALL ON @extschema@.backfill_progress FROM PUBLIC;
COMMENT ON VIEW @extschema@.backfill_progress IS
'Each backfill''s progress: state (running, finished, stopped), rows scanned and enqueued, the rate and an estimate of the time left';

CREATE OR REPLACE PROCEDURE @extschema@.backfill(
    tbl regclass,
    trigger_name name,
    batch_rows integer DEFAULT 10000,
    INOUT enqueued bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    from_key pg_catalog.text[];
    b record;
    scanned pg_catalog.int8 := 0;
    started pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    told pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    estimate pg_catalog.int8;
    elapsed pg_catalog.float8;
    every pg_catalog.interval;
BEGIN
    enqueued := 0;
    SELECT CASE WHEN c.reltuples OPERATOR(pg_catalog.>=) 0 THEN c.reltuples::pg_catalog.int8 END
      INTO estimate FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl;
    -- started (committed with the first batch: a call refused there leaves no row)
    PERFORM @extschema@.backfill_report(tbl, trigger_name, 0, 0, false);
    every := pg_catalog.make_interval(secs => COALESCE(
                 pg_catalog.current_setting('hubspot_events.progress_notice_ms', true), '5000')::pg_catalog.int4
                 OPERATOR(pg_catalog./) 1000.0::pg_catalog.float8);
    LOOP
        SELECT * INTO STRICT b
          FROM @extschema@.backfill_batch(tbl, trigger_name, from_key, batch_rows);
        enqueued := enqueued OPERATOR(pg_catalog.+) b.enqueued;
        scanned := scanned OPERATOR(pg_catalog.+) b.scanned;
        PERFORM @extschema@.backfill_report(tbl, trigger_name, scanned, enqueued,
                                            b.scanned OPERATOR(pg_catalog.<) batch_rows::pg_catalog.int8);
        COMMIT;
        EXIT WHEN b.scanned OPERATOR(pg_catalog.<) batch_rows::pg_catalog.int8;
        from_key := b.last_key;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) told OPERATOR(pg_catalog.>=) every THEN
            told := pg_catalog.clock_timestamp();
            elapsed := pg_catalog.date_part('epoch', told OPERATOR(pg_catalog.-) started);
            RAISE NOTICE 'backfill of % (trigger %): % rows scanned%, % enqueued, % rows/s%',
                tbl, trigger_name, scanned,
                CASE WHEN estimate OPERATOR(pg_catalog.>) scanned THEN pg_catalog.format(' of about %s', estimate) ELSE '' END,
                enqueued, pg_catalog.round((scanned OPERATOR(pg_catalog./) elapsed)::pg_catalog.numeric),
                CASE WHEN estimate OPERATOR(pg_catalog.>) scanned
                     THEN pg_catalog.format(', about %s s left',
                          pg_catalog.round(((estimate OPERATOR(pg_catalog.-) scanned) OPERATOR(pg_catalog.*) elapsed
                                            OPERATOR(pg_catalog./) scanned)::pg_catalog.numeric))
                     ELSE '' END;
        END IF;
    END LOOP;
END
$$;

-- flush() says what it waited for when it gives up
CREATE OR REPLACE FUNCTION @extschema@.flush(timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    due bigint;
    in_flight bigint;
    first record;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'flush() cannot wait in a % transaction', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'Its snapshot would never see the worker''s progress: it would wait its whole timeout and hold back vacuum.',
                  HINT = 'Call it outside the transaction, or in a READ COMMITTED one.';
    END IF;
    PERFORM @extschema@.wake();
    LOOP
        IF NOT EXISTS (SELECT 1 FROM @extschema@.outbox
                        WHERE status = 'sending'
                           OR (status = 'pending' AND next_attempt_at <= clock_timestamp())) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            SELECT count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()),
                   count(*) FILTER (WHERE status = 'sending')
              INTO due, in_flight
              FROM @extschema@.outbox WHERE status IN ('pending', 'sending');
            SELECT w.id, w.code, w.reason INTO first FROM @extschema@.waiting w LIMIT 1;
            RAISE NOTICE 'flush() gave up after %: % rows due and % in flight', timeout, due, in_flight
                USING DETAIL = coalesce(pg_catalog.format('The first waiting row, %s, is %s: %s.', first.id, first.code, first.reason),
                                        'The rows in flight are the worker''s current requests.'),
                      HINT = 'hubspot_events.waiting says why each pending row waits.';
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- verify_event(): what HubSpot holds for one marketing event (its
-- participations breakdown, read to the last page, paced; needs the scope
-- crm.objects.marketing_events.read) compared with the latest state the
-- outbox sent for each contact (within sent_retention): one row per contact
-- that differs; with repair, that state enqueued again (repair_id).
-- NO_SHOW in HubSpot matches a sent register.  Runs with the owner's
-- rights: a role needs only EXECUTE.  connection: 'default' (the server's
-- settings) is the only one so far.
CREATE FUNCTION @extschema@.verify_event(external_event_id text, external_account_id text,
                                         connection text DEFAULT 'default', repair boolean DEFAULT false)
RETURNS TABLE (contact text, expected_state text, hubspot_state text,
               last_sent_at timestamptz, correlation_id uuid, repair_id bigint)
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'hubspot_verify_event';
REVOKE ALL ON FUNCTION @extschema@.verify_event(text, text, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.verify_event(text, text, text, boolean) IS
'Compare HubSpot''s participations of a marketing event with the latest state sent for each contact; one row per difference; repair => true enqueues those states again';
