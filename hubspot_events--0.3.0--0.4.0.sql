/* hubspot_events 0.3.0 -> 0.4.0: a cheaper claim. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.4.0'" to load this file. \quit

-- Per-contact order without an index entry per claim.  The worker claims,
-- sends and records one turn at a time, so when it claims, no row is in
-- flight ("sending") unless a crash left it there, and it resets those first.
-- The open rows' hash index therefore holds pending rows only: a claim no
-- longer adds an entry for each row it marks sending (about 6% of the
-- worker's CPU in a drain).  Rows in flight are still honoured, through the
-- small index on them: the claim reads their identities once, not once per
-- row.
-- Its predicate names the other statuses rather than 'pending': a query
-- can then use it only by saying the same (status NOT IN ('sending', 'sent',
-- 'failed'), the same rows under the CHECK constraint), which does not let
-- the planner use the due rows' index (status = 'pending') instead.  When
-- that index's statistics say it is empty (vacuumed while nothing was
-- pending), the planner took it for the cheaper way to find a contact's
-- pending rows and scanned all of them for every row claimed: 786 ms for a
-- claim of 400 among 10,000 pending rows, instead of 5.
DROP INDEX @extschema@.outbox_open_contact;
CREATE INDEX outbox_pending_contact ON @extschema@.outbox USING hash
    ((external_event_id || ' ' || external_account_id || ' ' || contact_key))
    WHERE status NOT IN ('sending', 'sent', 'failed');

-- The claim.  Its rules:
--  * a due row: pending, and next_attempt_at passed; oldest first;
--  * one contact's rows go out one at a time in commit order: a row waits
--    while an older row of its contact is pending (status NOT IN
--    ('sending', 'sent', 'failed'), see outbox_pending_contact), or any row
--    of its contact is in flight;
--  * a subscriber row waits while an older upsert of its event is pending,
--    or a row of its event itself (upsert, cancel, complete) is in flight;
--  * rows another transaction has locked are skipped.
-- The identities in flight are read once (normally there are none).
-- Compared as rows, not as joined text, so that no two identities are
-- confused; a NULL part (a raw row that failed validation and was
-- replayed) matches nothing, as before.
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
                               AND e.id < o.id
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
