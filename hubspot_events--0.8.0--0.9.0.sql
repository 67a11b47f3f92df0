/* hubspot_events 0.8.0 -> 0.9.0: the outbox's intake (issue 17): new rows written without an index entry. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.9.0'" to load this file. \quit

-- The outbox becomes a partitioned table of two partitions, on a new column
-- "intake":
--   outbox_intake (intake = true): the rows the extension's own writes (the
--     triggers, the enqueue functions) add, pending and valid; no btree index,
--     so that the application's transaction pays no index entry for them
--     (docs/intake.md); the worker moves each row out when it claims it;
--   outbox_rows (intake = false): every other row (claimed, sent, failed,
--     waiting for a retry, event rows, rows a DBA inserts), with the
--     outbox's indexes, which keep their names.
-- Every query, UPDATE, DELETE and TRUNCATE of outbox goes on working.  A
-- partitioned table's unique index must hold its partition key, so outbox
-- has no primary key of its own; outbox_rows keeps outbox_pkey, and ids come
-- from one sequence.

-- The id: from a sequence of its own, no longer the identity column of one
-- table (PostgreSQL 17 and later refuse to attach a partition that has one).
-- DROP IDENTITY drops the identity's sequence: the new one, of the same
-- name, goes on from its value.  (The old one leaves the extension first, so
-- that pg_dump's list of the extension's data forgets it.)
ALTER EXTENSION hubspot_events DROP SEQUENCE @extschema@.outbox_id_seq;
DO $upgrade$
DECLARE
    v bigint;
    c boolean;
BEGIN
    SELECT s.last_value, s.is_called INTO v, c FROM @extschema@.outbox_id_seq s;
    ALTER TABLE @extschema@.outbox ALTER COLUMN id DROP IDENTITY;
    CREATE SEQUENCE @extschema@.outbox_id_seq AS bigint;
    PERFORM pg_catalog.setval('@extschema@.outbox_id_seq', v, c);
END
$upgrade$;
ALTER TABLE @extschema@.outbox ALTER COLUMN id SET DEFAULT pg_catalog.nextval('@extschema@.outbox_id_seq'::pg_catalog.regclass);

ALTER TABLE @extschema@.outbox RENAME TO outbox_rows;
ALTER TABLE @extschema@.outbox_rows ADD COLUMN intake boolean NOT NULL DEFAULT false;

CREATE TABLE @extschema@.outbox (
    id                  bigint NOT NULL DEFAULT pg_catalog.nextval('@extschema@.outbox_id_seq'::pg_catalog.regclass),
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    external_event_id   text,
    subscriber_state    text,
    external_account_id text,
    contact             jsonb,
    contact_key         text,
    status              text NOT NULL DEFAULT 'pending'
                        CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_attempt_at     timestamptz,
    sent_at             timestamptz,
    http_status         integer,
    error_category      text,
    error_subcategory   text,
    correlation_id      uuid,
    error_message       text,
    error_body          jsonb,
    source              text,
    kind                text NOT NULL DEFAULT 'subscriber'
                        CONSTRAINT outbox_kind_check
                        CHECK (kind IN ('subscriber', 'event_upsert', 'event_cancel', 'event_complete')),
    event               jsonb,
    attempt_history     jsonb,
    dry_run             boolean,
    dry_run_request     jsonb,
    connection          text NOT NULL DEFAULT 'default',
    intake              boolean NOT NULL DEFAULT false
) PARTITION BY LIST (intake);
ALTER SEQUENCE @extschema@.outbox_id_seq OWNED BY @extschema@.outbox.id;
ALTER TABLE @extschema@.outbox ATTACH PARTITION @extschema@.outbox_rows FOR VALUES IN (false);
CREATE TABLE @extschema@.outbox_intake PARTITION OF @extschema@.outbox FOR VALUES IN (true)
  WITH (autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0,
        autovacuum_vacuum_insert_threshold = 10000,
        autovacuum_analyze_scale_factor = 0,
        autovacuum_analyze_threshold = 10000);

-- A publication of all tables replicates the partitions; with no index,
-- the intake's rows are identified by all their columns (the worker's moves
-- delete them there)
ALTER TABLE @extschema@.outbox_intake REPLICA IDENTITY FULL;

-- What a DBA granted on the outbox is granted on the new one (the grants
-- stay on outbox_rows too: a role that read it still does)
DO $upgrade$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable
               FROM pg_catalog.pg_class r
              CROSS JOIN LATERAL pg_catalog.aclexplode(r.relacl) a
              WHERE r.oid OPERATOR(pg_catalog.=) '@extschema@.outbox_rows'::pg_catalog.regclass
                AND a.grantee OPERATOR(pg_catalog.<>) r.relowner
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON TABLE @extschema@.outbox TO %s%s', g.privilege_type,
                                  CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(g.grantee::pg_catalog.regrole::pg_catalog.text) END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$upgrade$;
REVOKE ALL ON TABLE @extschema@.outbox, @extschema@.outbox_intake FROM PUBLIC;

COMMENT ON TABLE @extschema@.outbox IS
'Subscriber-state changes waiting for, or done with, delivery to HubSpot; one row per contact and change';
COMMENT ON TABLE @extschema@.outbox_rows IS
'The outbox''s rows the worker has taken, and every row not written by the extension''s own enqueue (a partition of outbox)';
COMMENT ON TABLE @extschema@.outbox_intake IS
'The outbox''s new rows, written by the triggers and the enqueue functions without an index entry, until the worker takes them (a partition of outbox)';
COMMENT ON COLUMN @extschema@.outbox.contact IS 'The contact as it is sent ({"vid", "interactionDateTime", "properties"}), or the raw values of a row that failed local validation';
COMMENT ON COLUMN @extschema@.outbox.contact_key IS 'The contact''s identity within its event and account (the vid as text), for per-contact ordering';
COMMENT ON COLUMN @extschema@.outbox.status IS 'pending, sending, sent or failed';
COMMENT ON COLUMN @extschema@.outbox.correlation_id IS 'HubSpot''s correlation id of the last answer (NULL when it was not a UUID; the raw answer is in error_body)';
COMMENT ON COLUMN @extschema@.outbox.source IS 'What enqueued the row: hubspot_enqueue_subscriber, or schema.table for a trigger';
COMMENT ON COLUMN @extschema@.outbox.kind IS
'subscriber (a contact''s state), or event_upsert, event_cancel, event_complete (the marketing event itself)';
COMMENT ON COLUMN @extschema@.outbox.event IS
'For event_upsert, the event as it is sent (MarketingEventCreateRequestParams); for event_complete, {startDateTime, endDateTime}; else NULL';
COMMENT ON COLUMN @extschema@.outbox.attempt_history IS
'The row''s failed attempts, oldest first, the last 10: [{attempt, at, http_status, category, subcategory, message, correlation_id}]';
COMMENT ON COLUMN @extschema@.outbox.dry_run IS
'true: recorded sent by a dry run (hubspot_events.dry_run), never sent to HubSpot; NULL otherwise';
COMMENT ON COLUMN @extschema@.outbox.dry_run_request IS
'For a dry-run row, the request it would have gone in: {method, path, body_bytes, rows}';
COMMENT ON COLUMN @extschema@.outbox.connection IS 'The connection (HubSpot account and credential) the row is sent through';
COMMENT ON COLUMN @extschema@.outbox.intake IS
'true while the row is in the intake (outbox_intake): written by the extension''s enqueue, not yet taken by the worker';

-- pg_dump keeps both partitions' rows and the new sequence (outbox_rows is
-- the table it kept before)
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_intake', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_id_seq', '');

-- The views read the partitioned outbox again (the rename took them along).
-- waiting finds a row's older pending row of its contact with a window over
-- the pending rows (one sort), not a lookup per row: the intake has no
-- index; rows in flight and event upserts are in outbox_rows, indexed.
CREATE OR REPLACE VIEW @extschema@.status AS
SELECT w.pid AS worker_pid,
       CASE WHEN w.pid IS NOT NULL AND w.database <> pg_catalog.current_database()
            THEN 'not serving this database'
            ELSE w.state END AS worker_state,
       w.database AS worker_database,
       coalesce(c.paused, false) AS paused,
       w.held_reason,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'pending' AND next_attempt_at <= pg_catalog.now()) AS due,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sending') AS sending,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sent') AS sent,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'failed') AS failed,
       pg_catalog.now() - (SELECT min(created_at) FROM @extschema@.outbox WHERE status = 'pending') AS oldest_pending_age,
       w.requests, w.successes, w.errors, w.errors_by_category,
       w.last_success_at, w.last_error_at, w.last_error, w.started_at,
       w.settings_loaded_at AS worker_settings_loaded_at,
       w.rate_limited_until, w.rate_limit_reason,
       w.daily_remaining AS daily_quota_remaining,
       w.today_requests,
       round(w.today_errors::numeric / nullif(w.today_requests, 0), 4) AS error_share_today,
       @extschema@.worker_api_version() AS api_version,
       (SELECT count(*) FROM @extschema@.connections WHERE state = 'held') AS held_connections,
       (SELECT count(*) FROM @extschema@.connections WHERE state = 'disconnected') AS disconnected_connections
  FROM @extschema@.worker_info() w
  LEFT JOIN @extschema@.worker_control c ON true;

CREATE OR REPLACE VIEW @extschema@.metrics AS
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

CREATE OR REPLACE VIEW @extschema@.failed_syncs WITH (security_barrier = true) AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body, kind, event, attempt_history, connection
  FROM @extschema@.outbox
 WHERE status = 'failed';

CREATE OR REPLACE VIEW @extschema@.waiting WITH (security_barrier = true) AS
SELECT o.id, o.kind, o.external_event_id, o.subscriber_state, o.external_account_id,
       o.contact_key, o.created_at, o.attempts, o.next_attempt_at,
       r.code,
       CASE r.code
         WHEN 'worker_not_running' THEN
              CASE WHEN s.pid IS NULL THEN 'worker not running'
                   ELSE pg_catalog.format('worker not running for this database (it serves "%s")', s.database) END
         WHEN 'standby' THEN 'standby: this server is a standby; the primary''s worker sends'
         WHEN 'paused' THEN 'paused: hubspot_events.resume() restarts sending'
         WHEN 'held' THEN 'held: ' || coalesce(cn.held_reason, s.held_reason, 'HubSpot refused the connection''s credential')
         WHEN 'disconnected' THEN pg_catalog.format('disconnected: the connection "%s" needs connect_oauth() again%s', o.connection,
              coalesce(' (' || cn.held_reason || ')', ''))
         WHEN 'no_connection' THEN pg_catalog.format('the connection "%s" does not exist: the worker fails the row (CONNECTION_DROPPED)', o.connection)
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
       o.correlation_id AS last_correlation_id,
       o.connection
  FROM (SELECT p.*,
               pg_catalog.first_value(p.id) OVER (PARTITION BY p.external_event_id, p.external_account_id, p.contact_key
                                                  ORDER BY p.id) AS first_pending
          FROM @extschema@.outbox p
         WHERE p.status = 'pending') o
  LEFT JOIN @extschema@.connections cn ON cn.name = o.connection
 CROSS JOIN (SELECT w.pid, w.state, w.database, w.held_reason,
                    w.rate_limited_until, w.rate_limit_reason,
                    coalesce(c.paused, false) AS paused
               FROM @extschema@.worker_info() w
               LEFT JOIN @extschema@.worker_control c ON true) s
 CROSS JOIN LATERAL (
       SELECT coalesce(
                CASE WHEN o.first_pending < o.id AND o.external_event_id IS NOT NULL
                          AND o.external_account_id IS NOT NULL AND o.contact_key IS NOT NULL
                     THEN o.first_pending END,
                (SELECT min(f.id) FROM @extschema@.outbox_rows f
                  WHERE f.status = 'sending'
                    AND f.external_event_id = o.external_event_id
                    AND f.external_account_id = o.external_account_id
                    AND f.contact_key = o.contact_key)) AS contact_behind,
              CASE WHEN o.kind = 'subscriber' THEN coalesce(
                (SELECT min(e.id) FROM @extschema@.outbox_rows e
                  WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                    AND e.external_event_id = o.external_event_id
                    AND e.external_account_id = o.external_account_id
                    AND e.contact_key = ''
                    AND e.kind = 'event_upsert'
                    AND e.status NOT IN ('sending', 'sent', 'failed')),
                (SELECT min(f.id) FROM @extschema@.outbox_rows f
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
                WHEN cn.name IS NULL THEN 'no_connection'
                WHEN cn.state = 'disconnected' THEN 'disconnected'
                WHEN cn.state = 'held' OR (o.connection = 'default' AND s.held_reason IS NOT NULL) THEN 'held'
                WHEN b.behind_id IS NOT NULL THEN 'behind'
                WHEN s.rate_limited_until > pg_catalog.now() THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() AND (o.http_status = 429 OR o.attempts = 0) THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() THEN 'backoff'
                ELSE 'due'
              END AS code
     ) r
 ORDER BY o.connection, o.next_attempt_at, o.id;

-- The worker's claim of rows in outbox_rows (retries, rows moved there to
-- wait, replays, a DBA's rows) reads that partition alone; the intake's rows
-- are claimed by the worker's own statement (src/intake.c), which keeps each
-- contact's order across both.  From 0.9.0 on it reads the identities of
-- the rows in flight once, not twice, and returns contact and event as
-- jsonb, which the worker reads without parsing text again.  It stays a SQL
-- function, planned at every call: the partition it reads can go from empty
-- to a backlog in one statement (a paced connection's rows moved from the
-- intake), and a plan kept from an empty outbox_rows made each claim slower
-- until autovacuum's analyze (measured: 60% of the allowed rate delivered,
-- against 93% planned at every call).
DROP FUNCTION @extschema@.claim_due(integer, text);
CREATE FUNCTION @extschema@.claim_due(max_rows integer, conn text)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact jsonb, attempts integer,
               kind text, event jsonb, contact_key text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    WITH inflight AS MATERIALIZED (
        -- the identities of the connection's rows in flight, read once
        SELECT ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                       FROM @extschema@.outbox_rows s
                      WHERE s.status = 'sending' AND s.connection = conn) AS keys),
    due AS (
        SELECT o.ctid AS tid
          FROM @extschema@.outbox_rows o
         WHERE o.status = 'pending'
           AND o.connection = conn
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows p
                            WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                              AND p.external_event_id = o.external_event_id
                              AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key
                              AND p.connection = o.connection
                              AND p.id < o.id
                              AND p.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)
           AND (o.kind <> 'subscriber' OR (
                NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows e
                             WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                                 = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                               AND e.external_event_id = o.external_event_id
                               AND e.external_account_id = o.external_account_id
                               AND e.contact_key = ''
                               AND e.kind = 'event_upsert'
                               AND e.connection = o.connection
                               AND e.status NOT IN ('sending', 'sent', 'failed'))
                AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                                 = ANY ((SELECT f.keys FROM inflight f)::record[]), false)))
         ORDER BY o.connection, o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE @extschema@.outbox_rows u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT due.tid FROM due))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact, u.attempts, u.kind, u.event, u.contact_key
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_due(integer, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_due(integer, text) IS
'Internal, for the worker: claim up to max_rows due rows of one connection and mark them sending';

CREATE OR REPLACE FUNCTION @extschema@.next_claim_at(conn text)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    SELECT o.next_attempt_at
      FROM @extschema@.outbox_rows o
     WHERE o.status = 'pending'
       AND o.connection = conn
       AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows p
                        WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                            = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                          AND p.external_event_id = o.external_event_id
                          AND p.external_account_id = o.external_account_id
                          AND p.contact_key = o.contact_key
                          AND p.connection = o.connection
                          AND p.id < o.id
                          AND p.status NOT IN ('sending', 'sent', 'failed'))
       AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                        = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                       FROM @extschema@.outbox_rows s
                                      WHERE s.status = 'sending' AND s.connection = conn)), false)
       AND (o.kind <> 'subscriber' OR (
            NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows e
                         WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                             = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                           AND e.external_event_id = o.external_event_id
                           AND e.external_account_id = o.external_account_id
                           AND e.contact_key = ''
                           AND e.kind = 'event_upsert'
                           AND e.connection = o.connection
                           AND e.status NOT IN ('sending', 'sent', 'failed'))
            AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                             = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                            FROM @extschema@.outbox_rows s
                                           WHERE s.status = 'sending' AND s.connection = conn)), false)))
     ORDER BY o.connection, o.next_attempt_at, o.id
     LIMIT 1
$$;

-- In PL/pgSQL, as claim_intake() below: the worker calls it every turn, and a
-- SQL function (before PostgreSQL 18) plans its statement at every call
-- (3% of the worker's CPU in a drain at batch_size 100).
CREATE OR REPLACE FUNCTION @extschema@.pending_connections()
RETURNS TABLE (connection text, next_attempt_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE c(name) AS (
        (SELECT o.connection FROM @extschema@.outbox_rows o
          WHERE o.status = 'pending' ORDER BY o.connection LIMIT 1)
        UNION ALL
        SELECT (SELECT o.connection FROM @extschema@.outbox_rows o
                 WHERE o.status = 'pending' AND o.connection > c.name
                 ORDER BY o.connection LIMIT 1)
          FROM c WHERE c.name IS NOT NULL)
    SELECT c.name,
           (SELECT o.next_attempt_at FROM @extschema@.outbox_rows o
             WHERE o.status = 'pending' AND o.connection = c.name
             ORDER BY o.connection, o.next_attempt_at LIMIT 1)
      FROM c
     WHERE c.name IS NOT NULL;
END
$$;

-- Whether a row of the intake is still the one the worker's sweep saw at its
-- place: (row_tid, row_id) is one of the pairs (tids[k], ids[k]).  Called by
-- claim_intake() and move_intake() with the same arrays for every row of a
-- statement, after one TID scan of the places (the pairs are hashed once per
-- statement: src/intake_place.c).
CREATE FUNCTION @extschema@.intake_at_place(row_tid tid, row_id bigint, tids tid[], ids bigint[])
RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_events_intake_at_place';
REVOKE ALL ON FUNCTION @extschema@.intake_at_place(tid, bigint, tid[], bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.intake_at_place(tid, bigint, tid[], bigint[]) IS
'Internal, for the worker''s claims: whether a row of the intake is the one given with its place';

-- The worker's claim of intake rows (src/intake.c keeps them, from a sweep
-- of the intake, and gives their ctids and ids, at most the oldest of each
-- contact): those of the connection still pending, with no row of their
-- contact pending or in flight in outbox_rows and no upsert of their event
-- pending or in flight there (claim_due's rules: an intake row is younger
-- than every row of its contact in outbox_rows), are marked sending where
-- they are, the attempt counted, and returned with where they now are (tid).
-- A row in flight stays in the intake, which has no index: the claim costs
-- no index entry, and the record that follows moves the row to outbox_rows
-- once, sent (or, for any other outcome, as it is, before it is recorded
-- there).  Rows a session holds locked are skipped.
-- In PL/pgSQL, not SQL: the worker calls it every turn, and PL/pgSQL keeps
-- the statement's plan for the session, where a SQL function (before
-- PostgreSQL 18) plans it at every call (5% of the worker's CPU in a drain
-- at batch_size 100).  Unlike claim_due's, its plan does not depend on
-- how many rows outbox_rows holds: the rows come by ctid, and the order
-- rules' lookups go through indexes (the settings below).
CREATE FUNCTION @extschema@.claim_intake(tids tid[], ids bigint[], conn text)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact jsonb, attempts integer,
               kind text, event jsonb, contact_key text, tid tid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH busy AS MATERIALIZED (
        -- whether the connection has any row pending or in flight in
        -- outbox_rows, read once (two index probes): when it has none, as in
        -- a drain of the intake alone, no row needs the order rules' lookups
        SELECT EXISTS (SELECT 1 FROM @extschema@.outbox_rows b
                        WHERE b.status = 'pending' AND b.connection = conn)
            OR EXISTS (SELECT 1 FROM @extschema@.outbox_rows b
                        WHERE b.status = 'sending' AND b.connection = conn) AS rows),
    inflight AS MATERIALIZED (
        -- the identities of the connection's rows in flight, read once
        SELECT ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                       FROM @extschema@.outbox_rows s
                      WHERE s.status = 'sending' AND s.connection = conn) AS keys),
    c AS (
        -- the places in one TID scan, each row kept when it is the one given
        -- there (a join of the places, one TID scan each, asked the kernel
        -- for the intake's size at every place)
        SELECT o.ctid AS tid
          FROM ONLY @extschema@.outbox_intake o
         WHERE o.ctid = ANY (tids)
           AND @extschema@.intake_at_place(o.ctid, o.id, tids, ids)
           AND o.status = 'pending'
           AND o.kind = 'subscriber'
           AND o.connection = conn
           -- (OR evaluates its arms in order: a connection with nothing in
           -- outbox_rows reads no rule's index)
           AND (NOT (SELECT b.rows FROM busy b) OR (
               NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows p
                            WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                              AND p.external_event_id = o.external_event_id
                              AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key
                              AND p.connection = o.connection
                              AND p.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox_rows e
                            WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                              AND e.external_event_id = o.external_event_id
                              AND e.external_account_id = o.external_account_id
                              AND e.contact_key = ''
                              AND e.kind = 'event_upsert'
                              AND e.connection = o.connection
                              AND e.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                            = ANY ((SELECT f.keys FROM inflight f)::record[]), false)))
           FOR UPDATE OF o SKIP LOCKED),
    m AS (
    UPDATE ONLY @extschema@.outbox_intake u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT c.tid FROM c))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact, u.attempts, u.kind, u.event, u.contact_key, u.ctid)
    SELECT * FROM m;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_intake(tid[], bigint[], text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_intake(tid[], bigint[], text) IS
'Internal, for the worker: claim the given intake rows of one connection that the order rules let through, marking them sending where they are';

-- The worker moves intake rows to outbox_rows as they are: rows that must
-- wait behind a row of their contact there, a connection's backlog that
-- cannot be sent soon, and rows that are not pending subscriber rows (a
-- DBA's edit).  Rows a session holds locked are skipped.  Returns the ids
-- moved.
CREATE FUNCTION @extschema@.move_intake(tids tid[], ids bigint[])
RETURNS SETOF bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    WITH c AS (
        SELECT o.ctid AS tid
          FROM ONLY @extschema@.outbox_intake o
         WHERE o.ctid = ANY (tids)
           AND @extschema@.intake_at_place(o.ctid, o.id, tids, ids)
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE @extschema@.outbox u
       SET intake = false
     WHERE u.intake
       AND u.ctid = ANY (ARRAY(SELECT c.tid FROM c))
    RETURNING u.id
$$;
REVOKE ALL ON FUNCTION @extschema@.move_intake(tid[], bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.move_intake(tid[], bigint[]) IS
'Internal, for the worker: move the given intake rows to outbox_rows as they are';

-- The worker moves all of a connection's intake rows to outbox_rows as they
-- are, when its pacing cannot send them soon (a backlog at HubSpot's pace
-- waits there, and the intake, which the worker's sweeps read whole, stays
-- small for the other connections); not the rows in flight, which the
-- worker has just claimed and records where they are.  Returns how many
-- moved.
CREATE FUNCTION @extschema@.move_intake_connection(conn text)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH c AS (
        SELECT o.ctid AS tid
          FROM ONLY @extschema@.outbox_intake o
         WHERE o.connection = conn
           AND o.status IS DISTINCT FROM 'sending'
           FOR UPDATE OF o SKIP LOCKED),
    m AS (
        UPDATE @extschema@.outbox u
           SET intake = false
         WHERE u.intake
           AND u.ctid = ANY (ARRAY(SELECT c.tid FROM c))
        RETURNING 1)
    SELECT count(*) FROM m
$$;
REVOKE ALL ON FUNCTION @extschema@.move_intake_connection(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.move_intake_connection(text) IS
'Internal, for the worker: move all of a connection''s intake rows to outbox_rows as they are';
