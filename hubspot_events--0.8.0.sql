\echo Use "CREATE EXTENSION hubspot_events" to load this file. \quit

/*
 * hubspot_events 0.8.0: the whole schema, in one script.
 *
 * This is where to read today's schema.  CREATE EXTENSION hubspot_events
 * runs this script alone; an installation of an older version reaches the
 * same schema through the upgrade scripts beside this file
 * (hubspot_events--0.1.0.sql, then hubspot_events--0.1.0--0.2.0.sql ...
 * hubspot_events--0.7.0--0.8.0.sql), which stay as released.  Both roads
 * must end in the same catalog, object by object: sql/08_upgrade.sql
 * installs 0.1.0, updates it step by step, and compares every member's
 * definition with a fresh install of this script.
 *
 * A later version adds an upgrade script from 0.8.0 (and may one day
 * re-base on a new full script, as PostgreSQL's contrib modules do); this
 * file, once released, is not edited either.
 *
 * Contents, by topic:
 *   1. the outbox and the worker's switch (tables, indexes, pg_dump)
 *   2. sending now: subscriber states and marketing events
 *   3. the outbox's way in: enqueueing
 *   4. triggers: attendance and events tables, backfill, the DDL guard
 *   5. the worker: its claim, its wake-up, its state (status)
 *   6. managing syncs: failed ones and their attempts, why rows wait,
 *      purges, pause and resume, flush
 *   7. connections: many HubSpot accounts
 *   8. the database the worker serves
 *
 * Privileges: nothing is granted to PUBLIC.  EXECUTE on every function and
 * every privilege on every table and view is revoked from PUBLIC; a DBA
 * grants each role what it needs (README, "Security").  SQL the extension
 * runs is schema-qualified, or runs with search_path = pg_catalog, pg_temp.
 */

-- ---------------------------------------------------------------------------
-- 1. The outbox and the worker's switch
-- ---------------------------------------------------------------------------

-- One row per contact and state change, or per change of a marketing event.
-- WAL-logged (never UNLOGGED), written in the caller's transaction: nothing
-- committed is lost, nothing rolled back is sent.  Columns accept raw
-- values, so that a trigger can record a row it could not validate as
-- 'failed' (LOCAL_VALIDATION_ERROR) instead of failing the application's
-- write.
--
-- What a row asks of HubSpot (kind): 'subscriber' rows record a contact's
-- state (contact holds it); event rows (contact NULL, contact_key '') create
-- or update the event ('event_upsert', event holds the
-- MarketingEventCreateRequestParams object as sent), cancel it
-- ('event_cancel') or mark it completed ('event_complete', event holds
-- {startDateTime, endDateTime}).  An event's rows share the contact_key '',
-- so they go out one at a time in commit order, like one contact's rows.
--
-- The column order is the one the upgrade scripts produce (kind and event
-- were added in 0.3.0, attempt_history, dry_run and dry_run_request in
-- 0.7.0, connection in 0.8.0, at the end): a fresh install and an upgraded
-- one have the same row type.  Columns the enqueue does not write have no default, so that its
-- direct insert (src/enqueue.c) applies.
--
-- attempt_history keeps every failed attempt of the row (time, HTTP
-- status, category, subCategory, message, correlationId), the last 10,
-- oldest first.  The worker appends one entry per failed attempt, in the
-- UPDATE that records the failure anyway; retry_failed() keeps it; NULL for
-- a row that never failed.
--
-- dry_run and dry_run_request: hubspot_events.dry_run makes the worker
-- record a row it did not send as sent, with dry_run = true and the request
-- it would have gone in; NULL for every other row.
--
-- The worker's claim walks the due rows' partial index; the old versions of
-- rows it has claimed stay in it until vacuum.  Vacuum the outbox after every
-- 10,000 changed rows rather than after a share of the table.
CREATE TABLE @extschema@.outbox (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    external_event_id   text,
    subscriber_state    text,
    external_account_id text,
    contact             jsonb,
    contact_key         text,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
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
                        CHECK (kind IN ('subscriber', 'event_upsert', 'event_cancel', 'event_complete')),
    event               jsonb,
    attempt_history     jsonb,
    dry_run             boolean,
    dry_run_request     jsonb,
    connection          text NOT NULL DEFAULT 'default'
) WITH (autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0,
        autovacuum_vacuum_insert_threshold = 10000,
        autovacuum_analyze_scale_factor = 0,
        autovacuum_analyze_threshold = 10000);

-- the worker's claim, per connection: only due rows are in this index, so
-- sent rows never slow it down
CREATE INDEX outbox_due ON @extschema@.outbox (connection, next_attempt_at, id) WHERE status = 'pending';
-- rows in flight: a crash may leave some; each connection's claim reads its
-- own rows' identities once through this small index
CREATE INDEX outbox_sending ON @extschema@.outbox (connection, id) WHERE status = 'sending';
-- failed-sync queries and purges
CREATE INDEX outbox_failed ON @extschema@.outbox (last_attempt_at) WHERE status = 'failed';
CREATE INDEX outbox_sent ON @extschema@.outbox (sent_at) WHERE status = 'sent';

-- Per-contact order: a hash index on the contact's identity (event,
-- account, contact), on the pending rows only.  A hash index keeps only a
-- 4-byte hash code, so identities of any length fit (a btree entry holds at
-- most 2704 bytes); its inserts are cheaper than a btree's (the
-- application's writes pay them), and it stays the size of the queue, not of
-- the history.  Queries add the equality of the three columns (the
-- separator can occur in them).
-- Pending rows only, not rows in flight: the worker claims, sends and
-- records one turn at a time, so when it claims, no row is in flight
-- ("sending") unless a crash left it there, and it resets those first.  A
-- claim therefore adds no entry for each row it marks sending (about 6% of
-- the worker's CPU in a drain).  Rows in flight are still honoured, through
-- outbox_sending.
-- Its predicate names the other statuses rather than 'pending': a query
-- can then use it only by saying the same (status NOT IN ('sending', 'sent',
-- 'failed'), the same rows under the CHECK constraint), which does not let
-- the planner use the due rows' index (status = 'pending') instead.  When
-- that index's statistics say it is empty (vacuumed while nothing was
-- pending), the planner took it for the cheaper way to find a contact's
-- pending rows and scanned all of them for every row claimed: 786 ms for a
-- claim of 400 among 10,000 pending rows, instead of 5.
CREATE INDEX outbox_pending_contact ON @extschema@.outbox USING hash
    ((external_event_id || ' ' || external_account_id || ' ' || contact_key))
    WHERE status NOT IN ('sending', 'sent', 'failed');

-- The worker asks, for a subscriber state HubSpot answered 404, whether the
-- event has an upsert pending, in flight or recently sent (then the 404 is
-- HubSpot not knowing the event yet, and the row is retried).  Event rows
-- are few: a small hash index finds them by event (without it the same
-- question reads the outbox, only on such a 404).  (The update from 0.4.0
-- leaves it out on an outbox of more than 100,000 rows, and says how to
-- build it CONCURRENTLY; a fresh install always has it.)
CREATE INDEX outbox_event_upserts ON @extschema@.outbox USING hash
    ((external_event_id || ' ' || external_account_id))
    WHERE kind = 'event_upsert';

COMMENT ON TABLE @extschema@.outbox IS
'Subscriber-state changes waiting for, or done with, delivery to HubSpot; one row per contact and change';
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

-- The worker's persistent switches: at most one row, written by pause() and
-- resume(); no row means not paused.  Survives restarts and pg_dump (the
-- install script writes no row, so a restored dump never collides with one).
CREATE TABLE @extschema@.worker_control (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    paused      boolean NOT NULL DEFAULT false,
    paused_at   timestamptz
);
COMMENT ON TABLE @extschema@.worker_control IS 'Whether sending is paused (hubspot_events.pause/resume); at most one row';

-- pg_dump keeps the outbox's rows, its id sequence, and the pause switch
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.worker_control', '');

REVOKE ALL ON TABLE @extschema@.outbox, @extschema@.worker_control FROM PUBLIC;

-- A connection is one HubSpot account reached with one credential.  The
-- connection 'default' is what the server's settings describe
-- (access_token_file, or the OAuth settings): auth 'settings'.  Others are
-- created by create_connection() (a token read from a server file) or
-- connect_oauth() (an OAuth app's install).  No secret is ever in this
-- table: token files' paths and sealed refresh tokens are in
-- connection_secrets, which no role but the extension's owner reads.
--
-- A name is short and plain (letters, digits, _ . - : @, at most 63
-- bytes): it appears in log lines, notifications and metrics labels.
-- state: active; held (HubSpot refused the credential: 401, 403; its rows
-- wait, the other connections go on); disconnected (an OAuth refresh was
-- answered invalid_grant: the app was uninstalled or the token revoked;
-- connect_oauth() again resumes it).  rate_limit and
-- rate_limit_interval_ms: this connection's own pacing (NULL: the global
-- settings and HubSpot's headers).
CREATE TABLE @extschema@.connections (
    name                    text PRIMARY KEY
                            CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]*$' AND octet_length(name) <= 63),
    hub_id                  bigint CHECK (hub_id > 0),
    auth                    text NOT NULL CHECK (auth IN ('settings', 'token_file', 'oauth')),
    state                   text NOT NULL DEFAULT 'active'
                            CHECK (state IN ('active', 'held', 'disconnected')),
    held_reason             text,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rate_limit              integer CHECK (rate_limit BETWEEN 1 AND 1000000),
    rate_limit_interval_ms  integer CHECK (rate_limit_interval_ms BETWEEN 1 AND 86400000),
    CHECK ((name = 'default') = (auth = 'settings'))
);
COMMENT ON TABLE @extschema@.connections IS
'HubSpot accounts the extension sends to, each with its own credential, limits and faults; ''default'' is the server''s settings';
COMMENT ON COLUMN @extschema@.connections.hub_id IS 'HubSpot''s account id, learned from the token answer where HubSpot gives it';
COMMENT ON COLUMN @extschema@.connections.auth IS 'settings (the connection default), token_file (create_connection) or oauth (connect_oauth)';
COMMENT ON COLUMN @extschema@.connections.state IS
'active; held (HubSpot refused the credential; its rows wait); disconnected (the OAuth app was uninstalled or its token revoked; connect_oauth() again resumes it)';
INSERT INTO @extschema@.connections (name, auth) VALUES ('default', 'settings');

-- The connections' credentials: a token file's path (token_file), or the
-- OAuth refresh token sealed with AES-256-GCM under the key in
-- hubspot_events.secret_key_file (oauth).  Readable by the extension's
-- owner only; the functions that use it run as the owner.
CREATE TABLE @extschema@.connection_secrets (
    connection      text PRIMARY KEY
                    REFERENCES @extschema@.connections (name) ON DELETE CASCADE,
    token_file      text,
    refresh_token   bytea,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((token_file IS NULL) <> (refresh_token IS NULL))
);
COMMENT ON TABLE @extschema@.connection_secrets IS
'Each connection''s credential: a token file''s path, or a refresh token sealed with AES-256-GCM (never in clear)';

-- pg_dump keeps the connections a DBA or an application created (the
-- default row is the install script's) and their sealed secrets
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connections', 'WHERE name <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connection_secrets', '');
REVOKE ALL ON TABLE @extschema@.connections, @extschema@.connection_secrets FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- 2. Sending now: one request to HubSpot in the caller's session
-- ---------------------------------------------------------------------------

-- They send with the company's token: only roles granted EXECUTE may call them.
CREATE FUNCTION @extschema@.hubspot_upsert_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb,
    connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_upsert_subscriber';
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb, text) IS
'Record a marketing-event subscriber state (register, attend, cancel) for HubSpot contacts now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_upsert_event(external_event_id text, external_account_id text, event jsonb,
                                                 connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_upsert_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb, text) IS
'Create or update a marketing event in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_cancel_event(external_event_id text, external_account_id text,
                                                 connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_cancel_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_cancel_event(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_cancel_event(text, text, text) IS
'Mark a marketing event cancelled in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_complete_event(external_event_id text, external_account_id text,
                                                   start_date_time timestamptz, end_date_time timestamptz,
                                                   connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_complete_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz, text) IS
'Mark a marketing event completed in HubSpot now, with its start and end, and return HubSpot''s answer';

-- ---------------------------------------------------------------------------
-- 3. Enqueueing: rows written to the outbox in the caller's transaction,
--    sent by the worker after commit
-- ---------------------------------------------------------------------------

CREATE FUNCTION @extschema@.hubspot_enqueue_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb,
    connection text DEFAULT 'default')
RETURNS bigint[]
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_subscriber';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb, text) IS
'Validate and write subscriber-state changes to the outbox in the current transaction; the worker sends them after commit. Returns the new outbox ids';

CREATE FUNCTION @extschema@.hubspot_enqueue_event(external_event_id text, external_account_id text, event jsonb,
                                                  connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb, text) IS
'Queue the creation or update of a marketing event in the outbox (sent after commit, before the event''s later subscriber states); returns the row id';

CREATE FUNCTION @extschema@.hubspot_enqueue_cancel_event(external_event_id text, external_account_id text,
                                                         connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_cancel_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text, text) IS
'Queue the cancellation of a marketing event in the outbox; returns the row id';

CREATE FUNCTION @extschema@.hubspot_enqueue_complete_event(external_event_id text, external_account_id text,
                                                           start_date_time timestamptz, end_date_time timestamptz,
                                                           connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_complete_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz, text) IS
'Queue the completion of a marketing event in the outbox; returns the row id';

-- ---------------------------------------------------------------------------
-- 4. Triggers (src/trigger.c)
-- ---------------------------------------------------------------------------

CREATE FUNCTION @extschema@.sync_attendance()
RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_sync_attendance';
REVOKE ALL ON FUNCTION @extschema@.sync_attendance() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.sync_attendance() IS
'Trigger: enqueue every committed change of an attendance table. Arguments: ''event_id=<col>'', ''state=<col>'', ''vid=<col>'', ''account_id=<col>'' (or key:=<constant>), optional ''at=<col>'', ''properties=<col>'', ''on_delete=cancel'', ''on_invalid=error''';

CREATE FUNCTION @extschema@.sync_event()
RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_sync_event';
REVOKE ALL ON FUNCTION @extschema@.sync_event() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.sync_event() IS
'Trigger for an events table: queues each committed change of a marketing event (upsert; cancel on delete with on_delete=cancel)';

-- ---- backfill: the rows a table held before its trigger ----

-- One batch of a backfill: the rows whose primary key comes after after_key
-- (from the start when NULL), in key order.  after_key and last_key are the
-- key as text, one element per key column; a table without a primary key is
-- refused.  By key, not by ctid: an UPDATE of a column the trigger does not
-- map (so the trigger enqueues nothing) could move a row to a page a
-- ctid-paged backfill had passed, and the row was never enqueued.  Needs
-- SELECT on the table.
CREATE FUNCTION @extschema@.backfill_batch(
    tbl regclass,
    trigger_name name,
    after_key text[],
    batch_rows integer,
    OUT last_key text[],
    OUT enqueued bigint,
    OUT scanned bigint)
RETURNS record
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_backfill_batch_by_key';
REVOKE ALL ON FUNCTION @extschema@.backfill_batch(regclass, name, text[], integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.backfill_batch(regclass, name, text[], integer) IS
'Enqueue up to batch_rows rows of tbl whose primary key comes after after_key (from the start when NULL), in key order, as its sync_attendance trigger trigger_name would for an INSERT; returns the last key read (NULL when none), the outbox rows written and the rows read';

-- The loop, with a COMMIT after every batch.  No SET clause: a procedure
-- with one cannot commit; every name and operator below is
-- schema-qualified instead.
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

CREATE PROCEDURE @extschema@.backfill(
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
REVOKE ALL ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) FROM PUBLIC;
COMMENT ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) IS
'Enqueue every existing row of tbl as its sync_attendance trigger trigger_name would for an INSERT, batch_rows per transaction, in primary-key order; returns the count';

-- ---- the DDL guard ----

-- Renaming or dropping a column that a sync_attendance or sync_event trigger
-- maps (or changing its type to one the key cannot take) would make every
-- later write to the table fail.  An event trigger refuses such an ALTER
-- TABLE, with the error the trigger's next fire would have raised (it names
-- the trigger, its argument and the column): drop or recreate the trigger
-- first.
CREATE FUNCTION @extschema@.check_sync_triggers(tbl regclass)
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_check_sync_triggers';
REVOKE ALL ON FUNCTION @extschema@.check_sync_triggers(regclass) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.check_sync_triggers(regclass) IS
'Internal (the DDL guard): raise the error a sync_attendance or sync_event trigger of tbl, or of its partitions, would raise at its next fire';

-- SECURITY DEFINER: the role that alters its table needs no privilege on
-- the extension for the check to run (an event trigger function cannot be
-- called directly).
CREATE FUNCTION @extschema@.guard_sync_triggers()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    state text;
    msg text;
    detail text;
BEGIN
    FOR r IN SELECT DISTINCT c.objid
               FROM pg_event_trigger_ddl_commands() c
              WHERE c.classid = 'pg_catalog.pg_class'::regclass
                AND c.object_type IN ('table', 'table column')
    LOOP
        BEGIN
            PERFORM @extschema@.check_sync_triggers(r.objid::regclass);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            RAISE EXCEPTION '%', msg
                USING ERRCODE = state,
                      DETAIL = concat_ws(' ', nullif(detail, ''),
                               'The ALTER TABLE would make every later write to the table fail, so it is refused.'),
                      HINT = 'Recreate the trigger with arguments that fit the new definition (CREATE OR REPLACE TRIGGER), or drop it, before altering the table.';
        END;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.guard_sync_triggers() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.guard_sync_triggers() IS
'Internal: the event trigger that refuses an ALTER TABLE breaking a sync trigger';

CREATE EVENT TRIGGER hubspot_events_guard_sync_triggers ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION @extschema@.guard_sync_triggers();

-- ---------------------------------------------------------------------------
-- 5. The worker
-- ---------------------------------------------------------------------------

-- The worker's claim, in SQL so that it can be read and tested (see
-- test/specs/claim.spec).  Internal: only the worker calls it (rows it
-- claims are sent by nobody else), with the caller's rights.  It claims
-- the rows of one connection (the worker shares each turn among the
-- connections with due rows: pending_connections()), and its rules hold
-- within that connection (a request never mixes connections, and one
-- connection's rows never hold back another's):
--  * a due row: pending, and next_attempt_at passed; oldest first;
--  * one contact's rows go out one at a time in commit order: a row waits
--    while an older row of its contact is pending (status NOT IN
--    ('sending', 'sent', 'failed'), see outbox_pending_contact), or any row
--    of its contact is in flight;
--  * an event's upsert goes out before every subscriber row of that event,
--    whatever the order of the calls: a subscriber row waits while an
--    upsert of its event is pending, or a row of its event itself (upsert,
--    cancel, complete) is in flight (so that a new event and its first
--    registrations can be committed in one transaction, in either order);
--  * rows another transaction has locked are skipped (FOR UPDATE SKIP
--    LOCKED: concurrent claimers never take the same row).
-- The claimed rows are marked sending with the attempt counted.
-- The identities in flight are read once (normally there are none).
-- Compared as rows, not as joined text, so that no two identities are
-- confused; a NULL part (a raw row that failed validation and was
-- replayed) matches nothing.
-- The function runs with search_path = pg_catalog, pg_temp: every
-- operator and function in it resolves in pg_catalog, whatever the
-- caller's path.  Its planner settings: jit off (planned with max_rows
-- unknown, its cost estimate is large enough for JIT to compile it on
-- every call); no bitmap scans (the hash index probes for the order rules
-- were planned as a bitmap heap scan per candidate row, 11% of the
-- worker's CPU); no sequential scans, sorts, hash or merge joins (it has
-- one good plan, the due rows' index in order, and stale statistics after
-- a burst of enqueues made others look cheaper).
CREATE FUNCTION @extschema@.claim_due(max_rows integer, conn text)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact text, attempts integer,
               kind text, event text, contact_key text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    WITH due AS (
        SELECT o.ctid AS tid
          FROM @extschema@.outbox o
         WHERE o.status = 'pending'
           AND o.connection = conn
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
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
                                           FROM @extschema@.outbox s
                                          WHERE s.status = 'sending' AND s.connection = conn)), false)
           AND (o.kind <> 'subscriber' OR (
                NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
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
                                                FROM @extschema@.outbox s
                                               WHERE s.status = 'sending' AND s.connection = conn)), false)))
         ORDER BY o.connection, o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE @extschema@.outbox u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT due.tid FROM due))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact::text, u.attempts, u.kind, u.event::text, u.contact_key
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_due(integer, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_due(integer, text) IS
'Internal, for the worker: claim up to max_rows due rows of one connection and mark them sending';

-- When the worker finds nothing to claim, it sleeps until a row can
-- actually be claimed: the earliest next_attempt_at of the rows the claim's
-- order rules let through, not of every pending row.  (A due row behind a
-- retrying row of its contact, or behind its event's retrying upsert,
-- would make the worker sleep 1 ms and claim again, a thousand times a
-- second.)  The order rules are claim_due()'s, without the due time and the
-- locks; so are its settings.
CREATE FUNCTION @extschema@.next_claim_at(conn text)
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
      FROM @extschema@.outbox o
     WHERE o.status = 'pending'
       AND o.connection = conn
       AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
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
                                       FROM @extschema@.outbox s
                                      WHERE s.status = 'sending' AND s.connection = conn)), false)
       AND (o.kind <> 'subscriber' OR (
            NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
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
                                            FROM @extschema@.outbox s
                                           WHERE s.status = 'sending' AND s.connection = conn)), false)))
     ORDER BY o.connection, o.next_attempt_at, o.id
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION @extschema@.next_claim_at(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.next_claim_at(text) IS
'When the worker can next claim a row of the connection: the earliest next_attempt_at among its pending rows that no older row of their contact, and no upsert of their event, holds back (NULL when none)';

-- The connections with pending rows and the earliest next_attempt_at of
-- each: a skip scan of the due rows' index (one probe per connection, not a
-- read of every pending row).
CREATE FUNCTION @extschema@.pending_connections()
RETURNS TABLE (connection text, next_attempt_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
    WITH RECURSIVE c(name) AS (
        (SELECT o.connection FROM @extschema@.outbox o
          WHERE o.status = 'pending' ORDER BY o.connection LIMIT 1)
        UNION ALL
        SELECT (SELECT o.connection FROM @extschema@.outbox o
                 WHERE o.status = 'pending' AND o.connection > c.name
                 ORDER BY o.connection LIMIT 1)
          FROM c WHERE c.name IS NOT NULL)
    SELECT c.name,
           (SELECT o.next_attempt_at FROM @extschema@.outbox o
             WHERE o.status = 'pending' AND o.connection = c.name
             ORDER BY o.connection, o.next_attempt_at LIMIT 1)
      FROM c
     WHERE c.name IS NOT NULL
$$;
REVOKE ALL ON FUNCTION @extschema@.pending_connections() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.pending_connections() IS
'Internal, for the worker: each connection with pending rows, and its earliest next_attempt_at';

CREATE FUNCTION @extschema@.wake()
RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_wake';
REVOKE ALL ON FUNCTION @extschema@.wake() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wake() IS 'Wake the worker now, and again when the current transaction commits';

CREATE FUNCTION @extschema@.worker_info(
    OUT pid integer, OUT state text, OUT database text, OUT held_reason text,
    OUT started_at timestamptz, OUT requests bigint, OUT successes bigint,
    OUT errors bigint, OUT errors_by_category jsonb,
    OUT last_success_at timestamptz, OUT last_error_at timestamptz, OUT last_error text,
    OUT settings_loaded_at timestamptz, OUT rate_limited_until timestamptz,
    OUT rate_limit_reason text, OUT daily_remaining bigint,
    OUT today_requests bigint, OUT today_errors bigint)
RETURNS record
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_worker_info';
REVOKE ALL ON FUNCTION @extschema@.worker_info() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.worker_info() IS 'The background worker''s state and counters, from shared memory';

-- Requests are built for hubspot_events.api_version (HubSpot's date version,
-- by default; 'v3' keeps the legacy paths).  The setting lives in the
-- library; status shows the version the worker speaks.  status calls this:
-- a role that reads status needs EXECUTE on it as on worker_info() (README's
-- GRANTs; the update from 0.5.0 gave it to every role that could run
-- worker_info(), a fresh install has no such role).
CREATE FUNCTION @extschema@.worker_api_version()
RETURNS text
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_worker_api_version';
REVOKE ALL ON FUNCTION @extschema@.worker_api_version() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.worker_api_version() IS
  'The HubSpot API version the background worker builds its requests in (its hubspot_events.api_version); NULL when no worker runs';

-- The worker and the outbox at a glance; the worker's API version is its
-- last column (added in 0.6.0: a view's new columns go at the end).
CREATE VIEW @extschema@.status AS
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
REVOKE ALL ON @extschema@.status FROM PUBLIC;
COMMENT ON VIEW @extschema@.status IS 'The worker and the outbox at a glance';

-- Every worker of the cluster, from shared memory: with
-- hubspot_events.databases, the launcher and a worker per database it
-- serves (kind 'launcher', 'launched'); without, the one static worker of
-- hubspot_events.database (kind 'static').  Cluster-wide: it names every
-- served database and their workers' last errors, so it is granted to no
-- role by default (docs/security.md).
CREATE FUNCTION @extschema@.workers_info(
    OUT pid integer, OUT kind text, OUT datid oid, OUT database text, OUT state text,
    OUT held_reason text, OUT started_at timestamptz, OUT requests bigint,
    OUT successes bigint, OUT errors bigint, OUT last_error text)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_workers_info';
REVOKE ALL ON FUNCTION @extschema@.workers_info() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.workers_info() IS
'Every worker of the cluster (the launcher, a worker per database, or the static worker), from shared memory';

CREATE VIEW @extschema@.workers AS
SELECT pid, kind, datid, database, state, held_reason, started_at,
       requests, successes, errors, last_error
  FROM @extschema@.workers_info();
REVOKE ALL ON @extschema@.workers FROM PUBLIC;
COMMENT ON VIEW @extschema@.workers IS
'Every worker of the cluster: the launcher and the worker of each database it serves, or the static worker';

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

-- ---------------------------------------------------------------------------
-- 6. Managing syncs
-- ---------------------------------------------------------------------------

-- These run with the rights of the extension's owner (SECURITY DEFINER), so
-- that an operator needs only EXECUTE on them, not UPDATE or DELETE on the
-- whole outbox (in 0.2.0 they ran with the caller's rights); their
-- search_path is pinned (pg_catalog, pg_temp), and every name they use is
-- schema-qualified.  EXECUTE is revoked from PUBLIC: a role must be granted
-- each one.

-- failed_syncs filters the outbox for roles granted only the view: a
-- security barrier, so that a cheap leaky function in such a role's WHERE
-- clause is never applied to rows the view hides (pending and sent ones).
CREATE VIEW @extschema@.failed_syncs WITH (security_barrier = true) AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body, kind, event, attempt_history, connection
  FROM @extschema@.outbox
 WHERE status = 'failed';
REVOKE ALL ON @extschema@.failed_syncs FROM PUBLIC;
COMMENT ON VIEW @extschema@.failed_syncs IS 'The syncs that failed, with HubSpot''s answer; replay them with retry_failed()';

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
  FROM @extschema@.outbox o
  LEFT JOIN @extschema@.connections cn ON cn.name = o.connection
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
 WHERE o.status = 'pending'
 ORDER BY o.connection, o.next_attempt_at, o.id;
REVOKE ALL ON @extschema@.waiting FROM PUBLIC;
COMMENT ON VIEW @extschema@.waiting IS
'Why each pending row is not sent yet (code and reason), in the order the worker claims; read it with a LIMIT';

-- A failed row is superseded when a newer row of the same contact (or
-- event) was sent; it is skipped unless include_superseded.  The sent rows
-- are read once (a hash anti-join), not probed per failed row.
CREATE FUNCTION @extschema@.retry_failed(ids bigint[] DEFAULT NULL, include_superseded boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    WITH r AS (
        UPDATE @extschema@.outbox o
           SET status = 'pending', attempts = 0, next_attempt_at = now(),
               http_status = NULL, error_category = NULL, error_subcategory = NULL,
               correlation_id = NULL, error_message = NULL, error_body = NULL
         WHERE o.status = 'failed'
           AND (ids IS NULL OR o.id = ANY (ids))
           AND o.error_category IS DISTINCT FROM 'LOCAL_VALIDATION_ERROR'
           AND (include_superseded OR NOT EXISTS (
                 SELECT 1 FROM @extschema@.outbox s
                  WHERE s.external_event_id = o.external_event_id
                    AND s.external_account_id = o.external_account_id
                    AND s.contact_key = o.contact_key
                    AND s.id > o.id
                    AND s.status = 'sent'))
        RETURNING 1)
    SELECT count(*) INTO n FROM r;
    IF n > 0 THEN
        PERFORM @extschema@.wake();
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.retry_failed(bigint[], boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.retry_failed(bigint[], boolean) IS
'Put failed syncs back to pending (all when ids is NULL). A failed row superseded by a newer sent row of the same contact is skipped unless include_superseded. Returns the count';

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

-- A sent row that supersedes a failed one is kept as long as the failed
-- row: purging it would make the failed one replayable again (a failed
-- cancel older than the event's sent upsert would be replayed, and cancel
-- the live event).  (A body in quotes, not BEGIN ATOMIC: an atomic body
-- would depend on the outbox's columns, and a DBA could no longer change
-- their types.)
CREATE FUNCTION @extschema@.purge_sent(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        DELETE FROM @extschema@.outbox o
         WHERE o.status = 'sent' AND o.sent_at < now() - older_than
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox f
                            WHERE f.status = 'failed'
                              AND f.external_event_id = o.external_event_id
                              AND f.external_account_id = o.external_account_id
                              AND f.contact_key = o.contact_key
                              AND f.id < o.id)
        RETURNING 1)
    SELECT count(*) FROM d
$$;
REVOKE ALL ON FUNCTION @extschema@.purge_sent(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.purge_sent(interval) IS
'Delete sent rows older than the interval, except those that supersede a failed row (kept while it is); returns the count';

CREATE FUNCTION @extschema@.purge_failed(older_than interval)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (DELETE FROM @extschema@.outbox WHERE status = 'failed' AND coalesce(last_attempt_at, created_at) < now() - older_than RETURNING 1)
    SELECT count(*) FROM d;
END;
REVOKE ALL ON FUNCTION @extschema@.purge_failed(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.purge_failed(interval) IS 'Delete failed rows whose last attempt is older than the interval; returns the count';

CREATE FUNCTION @extschema@.pause()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.worker_control (paused, paused_at) VALUES (true, now())
    ON CONFLICT (singleton) DO UPDATE
       SET paused = true, paused_at = coalesce(worker_control.paused_at, excluded.paused_at);
    PERFORM @extschema@.wake();
END
$$;
REVOKE ALL ON FUNCTION @extschema@.pause() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.pause() IS 'Stop sending (enqueueing goes on); survives restarts; undo with resume()';

CREATE FUNCTION @extschema@.resume()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.worker_control SET paused = false, paused_at = NULL;
    PERFORM @extschema@.wake();
END
$$;
REVOKE ALL ON FUNCTION @extschema@.resume() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.resume() IS 'Restart sending after pause()';

-- flush() says what it waited for when it gives up (a NOTICE naming the
-- first waiting row and why).  It waits for the worker's progress, which a REPEATABLE READ or
-- SERIALIZABLE snapshot never sees: it would wait its whole timeout and
-- hold back vacuum.  It refuses there.
CREATE FUNCTION @extschema@.flush(timeout interval DEFAULT '30 s')
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
REVOKE ALL ON FUNCTION @extschema@.flush(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.flush(interval) IS
'Wake the worker and wait until nothing is due or in flight; true when drained within the timeout';

-- ---------------------------------------------------------------------------
-- 7. Connections: many HubSpot accounts
-- ---------------------------------------------------------------------------

-- A connection with a static credential (a service key, a project app's
-- static token, a legacy private-app token) read from a server file, like
-- hubspot_events.access_token_file.  Superuser only: it names a server
-- file.  Returns the new row.
CREATE FUNCTION @extschema@.create_connection(name text, token_file text)
RETURNS @extschema@.connections
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_create_connection';
REVOKE ALL ON FUNCTION @extschema@.create_connection(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.create_connection(text, text) IS
'Create a connection whose token is read from a server file (superuser only)';

-- Delete a connection and its secret.  Refused while rows are pending or in
-- flight for it, unless force: they then fail with CONNECTION_DROPPED.  The
-- connection default cannot be dropped (it is the server's settings).
CREATE FUNCTION @extschema@.drop_connection(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conn text := name;
    waiting bigint;
BEGIN
    IF conn IS NULL OR force IS NULL THEN
        RAISE EXCEPTION 'drop_connection() needs a name and force'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF conn = 'default' THEN
        RAISE EXCEPTION 'the connection "default" cannot be dropped'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is the credential the server''s settings describe (hubspot_events.access_token_file or the OAuth settings).';
    END IF;
    PERFORM 1 FROM @extschema@.connections c WHERE c.name = conn FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connection "%" does not exist', conn
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT count(*) INTO waiting FROM @extschema@.outbox o
     WHERE o.connection = conn AND o.status IN ('pending', 'sending');
    IF waiting > 0 AND NOT force THEN
        RAISE EXCEPTION 'connection "%" has % rows pending or in flight', conn, waiting
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait for them (hubspot_events.flush()), or drop it with force => true: they then fail with CONNECTION_DROPPED.';
    END IF;
    UPDATE @extschema@.outbox o
       SET status = 'failed', error_category = 'CONNECTION_DROPPED',
           error_message = pg_catalog.format('the connection "%s" was dropped', conn),
           error_subcategory = NULL, http_status = NULL, correlation_id = NULL, error_body = NULL,
           last_attempt_at = pg_catalog.now()
     WHERE o.connection = conn AND o.status IN ('pending', 'sending');
    DELETE FROM @extschema@.connections c WHERE c.name = conn;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.drop_connection(text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.drop_connection(text, boolean) IS
'Delete a connection and its secret; refused while rows wait for it unless force (they then fail with CONNECTION_DROPPED)';

-- The end of an OAuth app's install flow (HubSpot's authorization-code
-- grant): the application's redirect handler passes the one-time code
-- HubSpot sent to its redirect URL, and the redirect_uri it was issued for.
-- The code is exchanged at hubspot_events.oauth_token_url with the app's
-- client id and secret (the server's OAuth settings); the refresh token of
-- the answer is sealed (AES-256-GCM, under the key in
-- hubspot_events.secret_key_file) into connection_secrets, and the
-- connection's row is returned, with the hub_id of the installing account.
-- Connecting a name again (a new code for the same account) replaces its
-- refresh token and makes it active again; a name keeps its HubSpot
-- account (a code another account granted is refused).  Refused before the
-- code is spent when no key is configured, the app's settings are missing,
-- or the name is taken by a token_file connection.  Not SECURITY DEFINER: it
-- writes the connections' tables with their owner's rights, and the
-- refresh token never passes through SQL.  A DBA grants it to the role of
-- the application that handles the redirect.
CREATE FUNCTION @extschema@.connect_oauth(name text, code text, redirect_uri text)
RETURNS @extschema@.connections
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_connect_oauth';
REVOKE ALL ON FUNCTION @extschema@.connect_oauth(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.connect_oauth(text, text, text) IS
'Connect a HubSpot account with the authorization code of an OAuth install; its refresh token is stored sealed, never in clear';

-- ---------------------------------------------------------------------------
-- 8. The database the worker serves
-- ---------------------------------------------------------------------------

-- The worker serves one database (hubspot_events.database).  Say so when the
-- extension is created anywhere else.  With hubspot_events.databases, the
-- launcher serves the databases it lists (status says when it does not).
DO $$
DECLARE
    served text := coalesce(current_setting('hubspot_events.database', true), 'postgres');
    listed text := coalesce(current_setting('hubspot_events.databases', true), '');
BEGIN
    IF listed = '' AND served <> current_database() THEN
        RAISE WARNING 'the hubspot_events worker serves the database "%", not "%"', served, current_database()
            USING DETAIL = 'Rows enqueued in this database are kept in its outbox but not sent.',
                  HINT = 'Set hubspot_events.database to this database in postgresql.conf and restart, or use the extension in "' || served || '".';
    END IF;
END
$$;
