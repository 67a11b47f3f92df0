--
-- 12_review: the review's defects (issue 10) that the SQL surface shows.
--
SET search_path = public, hubspot_events;
\set VERBOSITY default

-- ---- backfill refuses what it cannot honour ----
CREATE TABLE rv_att (id int, event text, state text, vid bigint, account text);
INSERT INTO rv_att SELECT g, 'rv-backfill', 'register', 700 + g, CASE WHEN g <= 2 THEN 'acme' ELSE 'other' END
  FROM generate_series(1, 4) g;
CREATE TRIGGER rv_sync AFTER INSERT OR UPDATE OR DELETE ON rv_att
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
CREATE ROLE hs_rv_reader;
GRANT USAGE ON SCHEMA hubspot_events TO hs_rv_reader;
GRANT EXECUTE ON FUNCTION backfill_batch(regclass, name, tid, integer) TO hs_rv_reader;
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
REVOKE ALL ON FUNCTION backfill_batch(regclass, name, tid, integer) FROM hs_rv_reader;
DROP ROLE hs_rv_reader;
RESET search_path;
