--
-- 12_review: the review's defects (issue 10) that the SQL surface shows.
--
SET search_path = public, hubspot_events;
\set VERBOSITY default

-- ---- backfill refuses what it cannot honour ----
CREATE TABLE rv_att (id int PRIMARY KEY, event text, state text, vid bigint, account text);
INSERT INTO rv_att SELECT g, 'rv-backfill', 'register', 700 + g, CASE WHEN g <= 2 THEN 'acme' ELSE 'other' END
  FROM generate_series(1, 4) g;
CREATE TRIGGER rv_sync AFTER INSERT OR UPDATE OR DELETE ON rv_att
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
CREATE ROLE hs_rv_reader;
GRANT USAGE ON SCHEMA hubspot_events TO hs_rv_reader;
GRANT EXECUTE ON FUNCTION backfill_batch(regclass, name, text[], integer) TO hs_rv_reader;
GRANT SELECT ON rv_att TO hs_rv_reader;
-- row-level security that hides rows from the caller: the backfill would
-- have sent them all
ALTER TABLE rv_att ENABLE ROW LEVEL SECURITY;
CREATE POLICY rv_acme ON rv_att FOR SELECT TO hs_rv_reader USING (account = 'acme');
SET ROLE hs_rv_reader;
SELECT count(*) AS rows_the_reader_sees FROM rv_att;
SELECT * FROM hubspot_events.backfill_batch('rv_att', 'rv_sync', NULL, 10);
RESET ROLE;
-- the owner is not subject to it: allowed (rolled back)
BEGIN;
SELECT enqueued, scanned FROM backfill_batch('rv_att', 'rv_sync', NULL, 10);
ROLLBACK;
ALTER TABLE rv_att DISABLE ROW LEVEL SECURITY;
-- a disabled trigger enqueues nothing; nor does its backfill
ALTER TABLE rv_att DISABLE TRIGGER rv_sync;
SELECT * FROM backfill_batch('rv_att', 'rv_sync', NULL, 10);
ALTER TABLE rv_att ENABLE REPLICA TRIGGER rv_sync;
SELECT * FROM backfill_batch('rv_att', 'rv_sync', NULL, 10);
ALTER TABLE rv_att ENABLE TRIGGER rv_sync;
-- a WHEN condition the backfill would not evaluate
CREATE TRIGGER rv_when AFTER INSERT ON rv_att FOR EACH ROW WHEN (NEW.account = 'acme')
  EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
SELECT * FROM backfill_batch('rv_att', 'rv_when', NULL, 10);
DROP TRIGGER rv_when ON rv_att;
DROP TABLE rv_att;
REVOKE ALL ON SCHEMA hubspot_events FROM hs_rv_reader;
REVOKE ALL ON FUNCTION backfill_batch(regclass, name, text[], integer) FROM hs_rv_reader;
DROP ROLE hs_rv_reader;

-- ---- backfill pages by the primary key: a row an UPDATE moves is not missed ----
CREATE TABLE rv_move (id int PRIMARY KEY, event text, state text, vid bigint, account text, note text)
  WITH (fillfactor = 100, autovacuum_enabled = false);
INSERT INTO rv_move SELECT g, 'rv-move', 'register', 800 + g, 'acme', repeat('x', 2000) FROM generate_series(1, 12) g;
CREATE TRIGGER rv_move_sync AFTER INSERT OR UPDATE OR DELETE ON rv_move
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
-- free room on the first page
DELETE FROM rv_move WHERE id = 2;
VACUUM rv_move;
SELECT last_key, enqueued, scanned FROM backfill_batch('rv_move', 'rv_move_sync', NULL, 3) \gset
SELECT :'last_key' AS last_key, :enqueued AS enqueued;
-- a change the trigger does not send (an unmapped column) moves row 11 to
-- the first page, which a ctid-paged backfill had passed
UPDATE rv_move SET note = 'moved' WHERE id = 11;
SELECT (ctid::text::point)[0] AS page_of_row_11 FROM rv_move WHERE id = 11;
SELECT enqueued, scanned FROM backfill_batch('rv_move', 'rv_move_sync', :'last_key', 100);
SELECT count(*) AS enqueued, count(*) FILTER (WHERE contact_key = '811') AS row_11
  FROM hubspot_events.outbox WHERE external_event_id = 'rv-move';
-- a table without a primary key is refused
CREATE TABLE rv_nokey (event text, state text, vid bigint, account text);
CREATE TRIGGER rv_nokey_sync AFTER INSERT ON rv_nokey FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
SELECT * FROM backfill_batch('rv_nokey', 'rv_nokey_sync', NULL, 10);
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'rv-move';
DROP TABLE rv_move, rv_nokey;

-- ---- an ALTER TABLE that would break a sync trigger is refused ----
CREATE TABLE rv_ddl (id int PRIMARY KEY, event text, state text, vid bigint, account text, note text);
CREATE TRIGGER rv_ddl_sync AFTER INSERT OR UPDATE OR DELETE ON rv_ddl
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
ALTER TABLE rv_ddl RENAME COLUMN vid TO contact_vid;
ALTER TABLE rv_ddl DROP COLUMN event;
ALTER TABLE rv_ddl ALTER COLUMN vid TYPE boolean USING vid > 0;
-- what the trigger does not map may change
ALTER TABLE rv_ddl RENAME COLUMN note TO remark;
ALTER TABLE rv_ddl DROP COLUMN remark;
INSERT INTO rv_ddl VALUES (1, 'rv-ddl', 'register', 901, 'acme');
SELECT count(*) AS enqueued FROM hubspot_events.outbox WHERE external_event_id = 'rv-ddl';
-- through a partitioned table's cloned triggers too
CREATE TABLE rv_ddl_parted (event text, state text, vid bigint, account text) PARTITION BY LIST (account);
CREATE TABLE rv_ddl_parted_acme PARTITION OF rv_ddl_parted FOR VALUES IN ('acme');
CREATE TRIGGER rv_ddl_parted_sync AFTER INSERT ON rv_ddl_parted
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
ALTER TABLE rv_ddl_parted RENAME COLUMN state TO status;
-- and sync_event's
CREATE TABLE rv_ddl_events (id text PRIMARY KEY, account text, name text, organizer text);
CREATE TRIGGER rv_ddl_events_sync AFTER INSERT OR UPDATE ON rv_ddl_events
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_event(
    'event_id=id', 'account_id=account', 'name=name', 'organizer=organizer');
ALTER TABLE rv_ddl_events DROP COLUMN organizer;
-- without the trigger, the same DDL goes through
DROP TRIGGER rv_ddl_sync ON rv_ddl;
ALTER TABLE rv_ddl RENAME COLUMN vid TO contact_vid;
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'rv-ddl';
DROP TABLE rv_ddl, rv_ddl_parted, rv_ddl_events;

-- ---- failed_syncs is a security barrier ----
-- a role granted only the view, with a cheap function that prints what it
-- is given: it sees the failed rows' values, never the pending ones'
SELECT count(*) > 0 AS enqueued FROM
  (SELECT unnest(hubspot_events.hubspot_enqueue_subscriber('rv-secret-pending', 'register', 'acme', '[{"vid": 1}]'))) e;
SELECT count(*) > 0 AS enqueued FROM
  (SELECT unnest(hubspot_events.hubspot_enqueue_subscriber('rv-failed', 'register', 'acme', '[{"vid": 2}]'))) e;
UPDATE hubspot_events.outbox SET status = 'failed', error_category = 'VALIDATION_ERROR'
 WHERE external_event_id = 'rv-failed';
CREATE FUNCTION public.rv_leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
  IF $1 LIKE 'rv-%' THEN RAISE NOTICE 'seen: %', $1; END IF;
  RETURN true;
END $$;
CREATE ROLE hs_rv_ops;
GRANT USAGE ON SCHEMA hubspot_events TO hs_rv_ops;
GRANT SELECT ON hubspot_events.failed_syncs TO hs_rv_ops;
SET ROLE hs_rv_ops;
SELECT external_event_id FROM hubspot_events.failed_syncs WHERE public.rv_leak(external_event_id) AND external_event_id LIKE 'rv-%';
RESET ROLE;
SELECT reloptions FROM pg_class WHERE oid = 'hubspot_events.failed_syncs'::regclass;
DELETE FROM hubspot_events.outbox WHERE external_event_id IN ('rv-failed', 'rv-secret-pending');

-- ---- a sent row that supersedes a failed one outlives purge_sent ----
-- a failed cancel of an event, then the event's upsert, sent long ago
SELECT hubspot_events.hubspot_enqueue_cancel_event('rv-live', 'acme') > 0 AS enqueued;
UPDATE hubspot_events.outbox SET status = 'failed', error_category = 'HTTP_500', last_attempt_at = now() - interval '9 days'
 WHERE external_event_id = 'rv-live' AND kind = 'event_cancel';
SELECT hubspot_events.hubspot_enqueue_event('rv-live', 'acme', '{"eventName": "Live", "eventOrganizer": "Acme"}') > 0 AS enqueued;
UPDATE hubspot_events.outbox SET status = 'sent', sent_at = now() - interval '8 days'
 WHERE external_event_id = 'rv-live' AND kind = 'event_upsert';
SELECT hubspot_events.purge_sent('7 days') AS purged;
SELECT kind, status FROM hubspot_events.outbox WHERE external_event_id = 'rv-live' ORDER BY id;
-- so the cancel is still superseded: not replayed, the live event stays
SELECT hubspot_events.retry_failed() AS replayed;
SELECT kind, status FROM hubspot_events.outbox WHERE external_event_id = 'rv-live' ORDER BY id;
-- once the failed row is gone, the sent one goes too
SELECT hubspot_events.purge_failed('1 day') >= 1 AS failed_purged;
SELECT hubspot_events.purge_sent('7 days') AS purged;
SELECT count(*) AS left FROM hubspot_events.outbox WHERE external_event_id = 'rv-live';

-- ---- flush() refuses a snapshot that would never see the worker ----
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT hubspot_events.flush('1 s');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT hubspot_events.flush('1 s');
ROLLBACK;

DELETE FROM hubspot_events.outbox WHERE external_event_id LIKE 'rv-%';
REVOKE ALL ON hubspot_events.failed_syncs FROM hs_rv_ops;
REVOKE ALL ON SCHEMA hubspot_events FROM hs_rv_ops;
DROP ROLE hs_rv_ops;
DROP FUNCTION public.rv_leak(text);
RESET search_path;

-- ---- emails fold the same way whatever the database's collation ----
CREATE DATABASE hs_turkish LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8' TEMPLATE template0;
\c hs_turkish
CREATE EXTENSION hubspot_events;
SELECT lower('INFO') AS collation_lower;
SELECT cardinality(hubspot_events.hubspot_enqueue_subscriber('tr-evt', 'register', 'acme',
         '[{"email": "INFO@Example.COM"}, {"email": "info@example.com"}, {"email": "Ünal@Example.com"}]')) AS enqueued;
-- one key for both spellings, A-Z folded only
SELECT contact_key, contact->>'email' AS email FROM hubspot_events.outbox ORDER BY id;
\c contrib_regression
DROP DATABASE hs_turkish;
