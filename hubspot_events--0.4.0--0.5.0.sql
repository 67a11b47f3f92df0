/* hubspot_events 0.4.0 -> 0.5.0: the review's defects (issue 10). */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.5.0'" to load this file. \quit

-- An event's upsert goes out before every subscriber row of that event,
-- whatever the order of the calls: a subscriber row now waits while ANY
-- upsert of its event is pending or in flight, not only an older one (a
-- transaction that enqueues the registrations and then their new event
-- sent the registrations first, and HubSpot answered 404).  Everything
-- else in the claim is as in 0.4.0; its rules:
--  * a due row: pending, and next_attempt_at passed; oldest first;
--  * one contact's rows go out one at a time in commit order: a row waits
--    while an older row of its contact is pending (status NOT IN
--    ('sending', 'sent', 'failed'), see outbox_pending_contact), or any row
--    of its contact is in flight;
--  * a subscriber row waits while an upsert of its event is pending, or a
--    row of its event itself (upsert, cancel, complete) is in flight;
--  * rows another transaction has locked are skipped.
-- The function runs with search_path = pg_catalog, pg_temp: every
-- operator and function in it resolves in pg_catalog, whatever the
-- caller's path.
CREATE OR REPLACE FUNCTION @extschema@.claim_due(max_rows integer)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact text, attempts integer,
               kind text, event text, contact_key text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
-- planned with max_rows unknown, its cost estimate is large enough for JIT
-- to compile it on every call, which costs far more than the claim itself
SET jit = off
-- The "older upsert of this row's event" check probes the hash index with
-- one key per event, which the planner takes for thousands of rows: it chose
-- a bitmap heap scan, rebuilt for every candidate row (a bitmap, a heap scan
-- start that asks the kernel for the table's size, often a BitmapAnd).  That
-- check was about 11% of the worker's CPU in a drain; a plain index scan
-- reads one bucket page.
SET enable_bitmapscan = off
-- The claim has one good plan: walk the due rows' index in order, probe the
-- indexes per row, stop at max_rows, update by row version.  The planner
-- sees max_rows as unknown (a tenth of the table) and the outbox's
-- statistics are often stale (a burst of enqueues, then a drain), so other
-- plans can look cheaper than they are.  Other scans, sorts and joins are
-- therefore ruled out for the claim, so that its plan does not depend on
-- statistics.
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    WITH due AS (
        SELECT o.ctid AS tid
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
                              AND p.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                            = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                           FROM @extschema@.outbox s WHERE s.status = 'sending')), false)
           AND (o.kind <> 'subscriber' OR (
                NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
                             WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                                 = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                               AND e.external_event_id = o.external_event_id
                               AND e.external_account_id = o.external_account_id
                               AND e.contact_key = ''
                               AND e.kind = 'event_upsert'
                               AND e.status NOT IN ('sending', 'sent', 'failed'))
                AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                                 = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                                FROM @extschema@.outbox s WHERE s.status = 'sending')), false)))
         ORDER BY o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    -- By the row versions the claim has just locked (a TID scan): no
    -- primary-key lookup per row, and no join back to the outbox, which the
    -- planner, guessing max_rows, would plan as a hash join over the whole
    -- table.  Locked by this statement, they cannot have moved.  (No test
    -- of status here: it would let the planner walk the due rows' index
    -- instead, old versions and all.)
    UPDATE @extschema@.outbox u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT due.tid FROM due))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact::text, u.attempts, u.kind, u.event::text, u.contact_key
$$;

-- The worker asks, for a subscriber state HubSpot answered 404, whether the
-- event has an upsert pending, in flight or recently sent (then the 404 is
-- HubSpot not knowing the event yet, and the row is retried).  Event rows
-- are few: a small hash index finds them by event (without it the same
-- question reads the outbox, only on such a 404).
-- Building it reads the whole outbox under a lock that blocks every write
-- through the triggers, and an extension script cannot build an index
-- CONCURRENTLY: on an outbox of more than 100,000 rows the update leaves it
-- out and says how to build it without blocking.
DO $$
BEGIN
    IF (SELECT count(*) FROM (SELECT 1 FROM @extschema@.outbox LIMIT 100001) s) <= 100000 THEN
        CREATE INDEX outbox_event_upserts ON @extschema@.outbox USING hash
            ((external_event_id || ' ' || external_account_id))
            WHERE kind = 'event_upsert';
    ELSE
        RAISE WARNING 'the outbox holds more than 100,000 rows: its new index outbox_event_upserts is not built by the update, so that writes are not blocked meanwhile'
            USING HINT = 'Build it without blocking writes: CREATE INDEX CONCURRENTLY outbox_event_upserts ON @extschema@.outbox USING hash ((external_event_id || '' '' || external_account_id)) WHERE kind = ''event_upsert'';';
    END IF;
END
$$;

-- backfill pages by the table's primary key instead of ctid: an UPDATE of
-- a column the trigger does not map (so the trigger enqueues nothing) could
-- move a row to a page a ctid-paged backfill had passed, and the row was
-- never enqueued.  backfill_batch's third argument and first result are now
-- the key (as text, one element per key column); a table without a primary
-- key is refused.  GRANTs on the old backfill_batch(regclass, name, tid,
-- integer) must be given again on the new one.
DROP PROCEDURE @extschema@.backfill(regclass, name, integer, bigint);
DROP FUNCTION @extschema@.backfill_batch(regclass, name, tid, integer);
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
BEGIN
    enqueued := 0;
    LOOP
        SELECT * INTO STRICT b
          FROM @extschema@.backfill_batch(tbl, trigger_name, from_key, batch_rows);
        enqueued := enqueued OPERATOR(pg_catalog.+) b.enqueued;
        COMMIT;
        EXIT WHEN b.scanned OPERATOR(pg_catalog.<) batch_rows::pg_catalog.int8;
        from_key := b.last_key;
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) FROM PUBLIC;
COMMENT ON PROCEDURE @extschema@.backfill(regclass, name, integer, bigint) IS
'Enqueue every existing row of tbl as its sync_attendance trigger trigger_name would for an INSERT, batch_rows per transaction, in primary-key order; returns the count';

-- failed_syncs filters the outbox for roles granted only the view: a
-- security barrier, so that a cheap leaky function in such a role's WHERE
-- clause is never applied to rows the view hides (pending and sent ones).
ALTER VIEW @extschema@.failed_syncs SET (security_barrier = true);

-- A failed row is superseded when a newer row of its contact (or event)
-- was sent, and retry_failed() skips it.  Purging that sent row used to
-- make the failed one replayable again (a failed cancel older than the
-- event's sent upsert was replayed, and cancelled the live event): a sent
-- row that supersedes a failed one is now kept as long as the failed row.
-- (A body in quotes, not BEGIN ATOMIC: an atomic body would depend on the
-- outbox's columns, and a DBA could no longer change their types.)
CREATE OR REPLACE FUNCTION @extschema@.purge_sent(older_than interval DEFAULT '7 days')
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
COMMENT ON FUNCTION @extschema@.purge_sent(interval) IS
'Delete sent rows older than the interval, except those that supersede a failed row (kept while it is); returns the count';

-- flush() waits for the worker's progress, which a REPEATABLE READ or
-- SERIALIZABLE snapshot never sees: it waited its whole timeout and held
-- back vacuum.  It refuses there.
CREATE OR REPLACE FUNCTION @extschema@.flush(timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
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
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- When the worker finds nothing to claim, it sleeps until a row can
-- actually be claimed: the earliest next_attempt_at of the rows the claim's
-- order rules let through, not of every pending row.  (A due row behind a
-- retrying row of its contact, or behind its event's retrying upsert,
-- made the worker sleep 1 ms and claim again, a thousand times a second.)
-- The order rules are claim_due()'s, without the due time and the locks.
CREATE FUNCTION @extschema@.next_claim_at()
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
       AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
                        WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                            = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                          AND p.external_event_id = o.external_event_id
                          AND p.external_account_id = o.external_account_id
                          AND p.contact_key = o.contact_key
                          AND p.id < o.id
                          AND p.status NOT IN ('sending', 'sent', 'failed'))
       AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                        = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                       FROM @extschema@.outbox s WHERE s.status = 'sending')), false)
       AND (o.kind <> 'subscriber' OR (
            NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
                         WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                             = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                           AND e.external_event_id = o.external_event_id
                           AND e.external_account_id = o.external_account_id
                           AND e.contact_key = ''
                           AND e.kind = 'event_upsert'
                           AND e.status NOT IN ('sending', 'sent', 'failed'))
            AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                             = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                            FROM @extschema@.outbox s WHERE s.status = 'sending')), false)))
     ORDER BY o.next_attempt_at, o.id
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION @extschema@.next_claim_at() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.next_claim_at() IS
'When the worker can next claim a row: the earliest next_attempt_at among pending rows that no older row of their contact, and no upsert of their event, holds back (NULL when none)';

-- Renaming or dropping a column that a sync_attendance or sync_event trigger
-- maps (or changing its type to one the key cannot take) made every later
-- write to the table fail.  An event trigger now refuses such an ALTER
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
