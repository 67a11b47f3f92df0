-- The worker's claim as claim_due plans it (generic plan: LIMIT unknown) and the proposed rewrite
-- (join back by primary key).  Run with psql against a cluster whose outbox has many rows;
-- each EXPLAIN ANALYZE runs in a transaction that is rolled back.  See docs/profiles/claim-fix.txt.
SET plan_cache_mode = force_generic_plan;
PREPARE orig(int) AS
 WITH due AS (SELECT o.id FROM hubspot_events.outbox o
   WHERE o.status = 'pending' AND o.next_attempt_at <= now()
     AND NOT EXISTS (SELECT 1 FROM hubspot_events.outbox p
        WHERE hashtextextended(p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key, 0)
            = hashtextextended(o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key, 0)
          AND p.external_event_id = o.external_event_id AND p.external_account_id = o.external_account_id
          AND p.contact_key = o.contact_key AND p.id < o.id AND p.status IN ('pending', 'sending'))
   ORDER BY o.next_attempt_at, o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED)
 UPDATE hubspot_events.outbox u SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
   FROM due WHERE u.id = due.id
 RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id, u.contact::text, u.attempts;
PREPARE fixed(int) AS
 WITH due AS (SELECT o.id FROM hubspot_events.outbox o
   WHERE o.status = 'pending' AND o.next_attempt_at <= now()
     AND NOT EXISTS (SELECT 1 FROM hubspot_events.outbox p
        WHERE hashtextextended(p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key, 0)
            = hashtextextended(o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key, 0)
          AND p.external_event_id = o.external_event_id AND p.external_account_id = o.external_account_id
          AND p.contact_key = o.contact_key AND p.id < o.id AND p.status IN ('pending', 'sending'))
   ORDER BY o.next_attempt_at, o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED)
 UPDATE hubspot_events.outbox u SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
  WHERE u.id = ANY (ARRAY(SELECT id FROM due))
 RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id, u.contact::text, u.attempts;
SELECT count(*) AS outbox_rows, count(*) FILTER (WHERE status = 'pending') AS pending FROM hubspot_events.outbox;
BEGIN; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) EXECUTE orig(400); ROLLBACK;
BEGIN; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) EXECUTE fixed(400); ROLLBACK;
