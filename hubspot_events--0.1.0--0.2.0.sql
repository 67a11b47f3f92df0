/* hubspot_events 0.1.0 -> 0.2.0: the durable outbox, its worker, triggers and sync management. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- 0.2.0: the durable outbox, its worker, triggers and sync management
-- ---------------------------------------------------------------------------

-- One row per contact and state change.  WAL-logged (never UNLOGGED), written
-- in the caller's transaction: nothing committed is lost, nothing rolled back
-- is sent.  Columns accept raw values, so that a trigger can record a row it
-- could not validate as 'failed' (LOCAL_VALIDATION_ERROR) instead of failing
-- the application's write.
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
    source              text
);

-- the worker's claim: only due rows are in this index, so sent rows never slow it down
CREATE INDEX outbox_due ON @extschema@.outbox (next_attempt_at, id) WHERE status = 'pending';
-- per-contact order (an older open row blocks a newer one) and supersession.
-- On a 64-bit hash of the contact's identity, not the texts themselves: ids
-- of any length fit (a btree entry holds at most 2704 bytes); queries add the
-- equality of the texts.  hashtextextended is stable across versions (hash
-- partitioning relies on it).
CREATE INDEX outbox_contact ON @extschema@.outbox
    (pg_catalog.hashtextextended(external_event_id || ' ' || external_account_id || ' ' || contact_key, 0), id);
-- rows a crash left in flight
CREATE INDEX outbox_sending ON @extschema@.outbox (id) WHERE status = 'sending';
-- failed-sync queries and purges
CREATE INDEX outbox_failed ON @extschema@.outbox (last_attempt_at) WHERE status = 'failed';
CREATE INDEX outbox_sent ON @extschema@.outbox (sent_at) WHERE status = 'sent';

COMMENT ON TABLE @extschema@.outbox IS
'Subscriber-state changes waiting for, or done with, delivery to HubSpot; one row per contact and change';
COMMENT ON COLUMN @extschema@.outbox.contact IS 'The contact as it is sent ({"vid", "interactionDateTime", "properties"}), or the raw values of a row that failed local validation';
COMMENT ON COLUMN @extschema@.outbox.contact_key IS 'The contact''s identity within its event and account (the vid as text), for per-contact ordering';
COMMENT ON COLUMN @extschema@.outbox.status IS 'pending, sending, sent or failed';
COMMENT ON COLUMN @extschema@.outbox.correlation_id IS 'HubSpot''s correlation id of the last answer (NULL when it was not a UUID; the raw answer is in error_body)';
COMMENT ON COLUMN @extschema@.outbox.source IS 'What enqueued the row: hubspot_enqueue_subscriber, or schema.table for a trigger';

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

-- ---- enqueue ----

CREATE FUNCTION @extschema@.hubspot_enqueue_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb)
RETURNS bigint[]
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_subscriber';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb) IS
'Validate and write subscriber-state changes to the outbox in the current transaction; the worker sends them after commit. Returns the new outbox ids';

-- ---- triggers (src/trigger.c) ----
CREATE FUNCTION @extschema@.sync_attendance()
RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_sync_attendance';
REVOKE ALL ON FUNCTION @extschema@.sync_attendance() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.sync_attendance() IS
'Trigger: enqueue every committed change of an attendance table. Arguments: ''event_id=<col>'', ''state=<col>'', ''vid=<col>'', ''account_id=<col>'' (or key:=<constant>), optional ''at=<col>'', ''properties=<col>'', ''on_delete=cancel'', ''on_invalid=error''';

-- One batch of a backfill: the rows after after_ctid (from the start when
-- NULL), in ctid order, read with a TID range scan (no SQL is built from the
-- table's name).  Needs SELECT on the table.
CREATE FUNCTION @extschema@.backfill_batch(
    tbl regclass,
    trigger_name name,
    after_ctid tid,
    batch_rows integer,
    OUT last_ctid tid,
    OUT enqueued bigint,
    OUT scanned bigint)
RETURNS record
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_backfill_batch';
REVOKE ALL ON FUNCTION @extschema@.backfill_batch(regclass, name, tid, integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.backfill_batch(regclass, name, tid, integer) IS
'Enqueue up to batch_rows rows of tbl after after_ctid as its sync_attendance trigger trigger_name would for an INSERT; returns the last ctid read (NULL when none), the outbox rows written and the rows read';

-- The loop, with a COMMIT after every batch.  No SET clause: a procedure
-- with one cannot commit; every name below is schema-qualified instead.
CREATE PROCEDURE @extschema@.backfill(
    tbl regclass,
    trigger_name name,
    batch_rows integer DEFAULT 10000,
    INOUT enqueued bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    from_ctid tid;
    b record;
BEGIN
    enqueued := 0;
    LOOP
        SELECT * INTO STRICT b
          FROM @extschema@.backfill_batch(tbl, trigger_name, from_ctid, batch_rows);
        enqueued := enqueued + b.enqueued;
        COMMIT;
        EXIT WHEN b.scanned < batch_rows;
        from_ctid := b.last_ctid;
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) FROM PUBLIC;
COMMENT ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) IS
'Enqueue every existing row of tbl as its sync_attendance trigger trigger_name would for an INSERT, committing every batch_rows rows; returns the number of outbox rows written. CALL it outside a transaction block';

-- ---- end of triggers ----

-- ---- the worker ----

-- The worker's claim, in SQL so that it can be read and tested (see
-- test/specs/claim.spec): due rows, oldest first, never a row while an
-- older row of the same (event, account, contact) is still pending or
-- sending (one contact's changes go out in commit order, one at a time),
-- FOR UPDATE SKIP LOCKED so that concurrent claimers never take the same
-- row.  The rows are marked sending with the attempt counted.  Internal:
-- only the worker calls it (rows it claims are sent by nobody else).
CREATE FUNCTION @extschema@.claim_due(max_rows integer)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact text, attempts integer)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT o.id
          FROM @extschema@.outbox o
         WHERE o.status = 'pending'
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
                            WHERE hashtextextended(p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key, 0)
                                = hashtextextended(o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key, 0)
                              AND p.external_event_id = o.external_event_id
                              AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key
                              AND p.id < o.id
                              AND p.status IN ('pending', 'sending'))
         ORDER BY o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE @extschema@.outbox u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
      FROM due
     WHERE u.id = due.id
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact::text, u.attempts
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_due(integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_due(integer) IS
'Internal, for the worker: claim up to max_rows due rows and mark them sending';

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
       round(w.today_errors::numeric / nullif(w.today_requests, 0), 4) AS error_share_today
  FROM @extschema@.worker_info() w
  LEFT JOIN @extschema@.worker_control c ON true;
REVOKE ALL ON @extschema@.status FROM PUBLIC;
COMMENT ON VIEW @extschema@.status IS 'The worker and the outbox at a glance';

-- ---- managing syncs ----

CREATE VIEW @extschema@.failed_syncs AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body
  FROM @extschema@.outbox
 WHERE status = 'failed';
REVOKE ALL ON @extschema@.failed_syncs FROM PUBLIC;
COMMENT ON VIEW @extschema@.failed_syncs IS 'The syncs that failed, with HubSpot''s answer; replay them with retry_failed()';

CREATE FUNCTION @extschema@.retry_failed(ids bigint[] DEFAULT NULL, include_superseded boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
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
                  WHERE hashtextextended(s.external_event_id || ' ' || s.external_account_id || ' ' || s.contact_key, 0)
                      = hashtextextended(o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key, 0)
                    AND s.external_event_id = o.external_event_id
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

CREATE FUNCTION @extschema@.purge_sent(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (DELETE FROM @extschema@.outbox WHERE status = 'sent' AND sent_at < now() - older_than RETURNING 1)
    SELECT count(*) FROM d;
END;
REVOKE ALL ON FUNCTION @extschema@.purge_sent(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.purge_sent(interval) IS 'Delete sent rows older than the interval; returns the count';

CREATE FUNCTION @extschema@.purge_failed(older_than interval)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (DELETE FROM @extschema@.outbox WHERE status = 'failed' AND coalesce(last_attempt_at, created_at) < now() - older_than RETURNING 1)
    SELECT count(*) FROM d;
END;
REVOKE ALL ON FUNCTION @extschema@.purge_failed(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.purge_failed(interval) IS 'Delete failed rows whose last attempt is older than the interval; returns the count';

CREATE FUNCTION @extschema@.pause()
RETURNS void
LANGUAGE plpgsql VOLATILE
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
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.worker_control SET paused = false, paused_at = NULL;
    PERFORM @extschema@.wake();
END
$$;
REVOKE ALL ON FUNCTION @extschema@.resume() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.resume() IS 'Restart sending after pause()';

CREATE FUNCTION @extschema@.flush(timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
BEGIN
    PERFORM @extschema@.wake();
    LOOP
        IF NOT EXISTS (SELECT 1 FROM @extschema@.outbox
                        WHERE status = 'sending'
                           OR (status = 'pending' AND next_attempt_at <= clock_timestamp())) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.flush(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.flush(interval) IS
'Wake the worker and wait until nothing is due or in flight; true when drained within the timeout';

-- The worker serves one database (hubspot_events.database).  Say so when the
-- extension is created anywhere else.
DO $$
DECLARE
    served text := coalesce(current_setting('hubspot_events.database', true), 'postgres');
BEGIN
    IF served <> current_database() THEN
        RAISE WARNING 'the hubspot_events worker serves the database "%", not "%"', served, current_database()
            USING DETAIL = 'Rows enqueued in this database are kept in its outbox but not sent.',
                  HINT = 'Set hubspot_events.database to this database in postgresql.conf and restart, or use the extension in "' || served || '".';
    END IF;
END
$$;
