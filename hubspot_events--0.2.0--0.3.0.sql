/* hubspot_events 0.2.0 -> 0.3.0: marketing events, OAuth, email and attendance endpoints, security. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.3.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- The marketing events themselves: their upsert, cancel and complete calls
-- go through the outbox too, in order with the subscriber states
-- ---------------------------------------------------------------------------

-- What a row asks of HubSpot.  'subscriber' rows record a contact's state
-- (contact holds it); event rows (contact NULL, contact_key '') create or
-- update the event ('event_upsert', event holds the
-- MarketingEventCreateRequestParams object as sent), cancel it
-- ('event_cancel') or mark it completed ('event_complete', event holds
-- {startDateTime, endDateTime}).  An event's rows share the contact_key '',
-- so they go out one at a time in commit order, like one contact's rows.
ALTER TABLE @extschema@.outbox
    ADD COLUMN kind text NOT NULL DEFAULT 'subscriber'
        CHECK (kind IN ('subscriber', 'event_upsert', 'event_cancel', 'event_complete')),
    ADD COLUMN event jsonb;
-- Per-contact order, on the open rows only: a hash index on the contact's
-- identity (event, account, contact), partial on pending and sending rows.
-- A hash index keeps only a 4-byte hash code, so identities of any length
-- fit; its inserts are cheaper than a btree's (the application's writes pay
-- them), and it stays the size of the queue, not of the history.  It
-- replaces 0.2.0's btree on a 64-bit hash of every row.  Queries add the
-- equality of the three columns (the separator can occur in them).
DROP INDEX @extschema@.outbox_contact;
CREATE INDEX outbox_open_contact ON @extschema@.outbox USING hash
    ((external_event_id || ' ' || external_account_id || ' ' || contact_key))
    WHERE status IN ('pending', 'sending');

-- The worker's claim walks the due rows' partial index; the old versions of
-- rows it has claimed stay in it until vacuum.  Vacuum the outbox after every
-- 10,000 changed rows rather than after a share of the table.
ALTER TABLE @extschema@.outbox SET (autovacuum_vacuum_scale_factor = 0,
                                    autovacuum_vacuum_threshold = 10000,
                                    autovacuum_vacuum_insert_scale_factor = 0,
                                    autovacuum_vacuum_insert_threshold = 10000,
                                    autovacuum_analyze_scale_factor = 0,
                                    autovacuum_analyze_threshold = 10000);

COMMENT ON COLUMN @extschema@.outbox.kind IS
'subscriber (a contact''s state), or event_upsert, event_cancel, event_complete (the marketing event itself)';
COMMENT ON COLUMN @extschema@.outbox.event IS
'For event_upsert, the event as it is sent (MarketingEventCreateRequestParams); for event_complete, {startDateTime, endDateTime}; else NULL';

-- The claim, as before, and one more rule: a subscriber row waits while an
-- older upsert of its event (same event and account) is pending or sending,
-- so that a new event and its first registrations can be committed in one
-- transaction.  The result gains the row's kind, event and contact_key.
DROP FUNCTION @extschema@.claim_due(integer);
CREATE FUNCTION @extschema@.claim_due(max_rows integer)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact text, attempts integer,
               kind text, event text, contact_key text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
-- planned with max_rows unknown, its cost estimate is large enough for JIT
-- to compile it on every call, which costs far more than the claim itself
SET jit = off
AS $$
    WITH due AS (
        SELECT o.id
          FROM @extschema@.outbox o
         WHERE o.status = 'pending'
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
                            WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                              AND p.external_event_id = o.external_event_id
                              AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key
                              AND p.id < o.id
                              AND p.status IN ('pending', 'sending'))
           AND (o.kind <> 'subscriber' OR NOT EXISTS (
                 SELECT 1 FROM @extschema@.outbox e
                  WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                    AND e.external_event_id = o.external_event_id
                    AND e.external_account_id = o.external_account_id
                    AND e.contact_key = ''
                    AND e.kind = 'event_upsert'
                    AND e.id < o.id
                    AND e.status IN ('pending', 'sending')))
         ORDER BY o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    -- by primary key, whatever the planner guesses of max_rows (a join back
    -- to the outbox would be planned as a hash join over the whole table)
    UPDATE @extschema@.outbox u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.id = ANY (ARRAY(SELECT due.id FROM due))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact::text, u.attempts, u.kind, u.event::text, u.contact_key
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_due(integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_due(integer) IS
'Internal, for the worker: claim up to max_rows due rows and mark them sending';

CREATE OR REPLACE VIEW @extschema@.failed_syncs AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body, kind, event
  FROM @extschema@.outbox
 WHERE status = 'failed';

CREATE FUNCTION @extschema@.hubspot_upsert_event(external_event_id text, external_account_id text, event jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hubspot_upsert_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb) IS
'Create or update a marketing event in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_enqueue_event(external_event_id text, external_account_id text, event jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hubspot_enqueue_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb) IS
'Queue the creation or update of a marketing event in the outbox (sent after commit, before the event''s later subscriber states); returns the row id';

CREATE FUNCTION @extschema@.hubspot_cancel_event(external_event_id text, external_account_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hubspot_cancel_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_cancel_event(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_cancel_event(text, text) IS
'Mark a marketing event cancelled in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_enqueue_cancel_event(external_event_id text, external_account_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hubspot_enqueue_cancel_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text) IS
'Queue the cancellation of a marketing event in the outbox; returns the row id';

CREATE FUNCTION @extschema@.hubspot_complete_event(external_event_id text, external_account_id text,
                                                   start_date_time timestamptz, end_date_time timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hubspot_complete_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz) IS
'Mark a marketing event completed in HubSpot now, with its start and end, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_enqueue_complete_event(external_event_id text, external_account_id text,
                                                           start_date_time timestamptz, end_date_time timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'hubspot_enqueue_complete_event'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz) IS
'Queue the completion of a marketing event in the outbox; returns the row id';

CREATE FUNCTION @extschema@.sync_event()
RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_sync_event';
REVOKE ALL ON FUNCTION @extschema@.sync_event() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.sync_event() IS
'Trigger for an events table: queues each committed change of a marketing event (upsert; cancel on delete with on_delete=cancel)';

-- ---- end of marketing events ----

-- ---------------------------------------------------------------------------
-- Security: operators need only EXECUTE
-- ---------------------------------------------------------------------------

-- In 0.2.0 these ran with the caller's rights, so an operator granted
-- EXECUTE (as the README said) still failed on the outbox, and only a role
-- with UPDATE or DELETE on the whole outbox could use them; that is more
-- than they need.  They now run with the rights of the extension's owner;
-- their search_path is already pinned (pg_catalog, pg_temp), and every name
-- they use is schema-qualified.  EXECUTE stays revoked from PUBLIC: a role
-- must be granted each one.  claim_due stays the caller's (only the worker
-- calls it).
ALTER FUNCTION @extschema@.retry_failed(bigint[], boolean) SECURITY DEFINER;
ALTER FUNCTION @extschema@.purge_sent(interval) SECURITY DEFINER;
ALTER FUNCTION @extschema@.purge_failed(interval) SECURITY DEFINER;
ALTER FUNCTION @extschema@.pause() SECURITY DEFINER;
ALTER FUNCTION @extschema@.resume() SECURITY DEFINER;
ALTER FUNCTION @extschema@.flush(interval) SECURITY DEFINER;

-- ---------------------------------------------------------------------------
-- retry_failed without the 0.2.0 contact index: a failed row is superseded
-- when a newer row of the same contact was sent; the sent rows are read once
-- (a hash anti-join), not probed per failed row.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.retry_failed(ids bigint[] DEFAULT NULL, include_superseded boolean DEFAULT false)
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
