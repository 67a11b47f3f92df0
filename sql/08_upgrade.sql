--
-- 08_upgrade: install the oldest version and update step by step; the
-- result has the same objects as a fresh install.
--
CREATE DATABASE hs_upgrade;
\c hs_upgrade
CREATE EXTENSION hubspot_events VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
ALTER EXTENSION hubspot_events UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
-- a library newer than the schema it finds, and older than it serves: one
-- clear message, naming both versions and what to run, on every path
\set VERBOSITY default
SELECT hubspot_events.hubspot_enqueue_subscriber('upg-evt', 'register', 'acme', '[{"vid": 1}]');
CREATE TABLE upg_att (event text, state text, vid bigint, account text);
CREATE TRIGGER upg_sync AFTER INSERT ON upg_att FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
INSERT INTO upg_att VALUES ('upg-evt', 'register', 2, 'acme');
ALTER EXTENSION hubspot_events UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
ALTER EXTENSION hubspot_events UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
-- 0.4.0 is served by this library before ALTER EXTENSION UPDATE: the
-- function and the trigger write their rows
SELECT cardinality(hubspot_events.hubspot_enqueue_subscriber('upg-evt', 'register', 'acme', '[{"vid": 1}]')) AS enqueued;
INSERT INTO upg_att VALUES ('upg-evt', 'register', 2, 'acme');
SELECT external_event_id, subscriber_state, contact_key, status FROM hubspot_events.outbox ORDER BY id;
-- a large outbox: the update does not build its new index under a lock
-- that would block every write meanwhile; it says how to build it
-- CONCURRENTLY instead
INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, source)
SELECT 'upg-big', 'register', 'acme', jsonb_build_object('vid', g), g::text, 'sent', 'test' FROM generate_series(1, 100000) g;
ALTER EXTENSION hubspot_events UPDATE TO '0.5.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT count(*) AS event_upserts_index FROM pg_indexes WHERE schemaname = 'hubspot_events' AND indexname = 'outbox_event_upserts';
CREATE INDEX CONCURRENTLY outbox_event_upserts ON hubspot_events.outbox USING hash ((external_event_id || ' ' || external_account_id)) WHERE kind = 'event_upsert';
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'upg-big';
-- 0.6.0: status names the worker's API version (hubspot_events.api_version)
ALTER EXTENSION hubspot_events UPDATE TO '0.6.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT count(*) AS status_has_api_version FROM pg_attribute
 WHERE attrelid = 'hubspot_events.status'::regclass AND attname = 'api_version';
CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, 0) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events');
SELECT count(*) > 0 AS has_members FROM upgraded;
\c contrib_regression
SELECT dblink_connect('upgraded', format('host=%s port=%s dbname=hs_upgrade user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_user)) AS connected;
-- objects only in the fresh install, or only in the upgraded one: none
WITH fresh AS (
  SELECT pg_describe_object(classid, objid, 0) AS member
    FROM pg_depend
   WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
     AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events')),
upgraded AS (
  SELECT member FROM dblink('upgraded', $$
    SELECT pg_describe_object(classid, objid, 0)
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events')$$) AS t(member text))
SELECT 'only fresh' AS side, member FROM (SELECT member FROM fresh EXCEPT SELECT member FROM upgraded) a
UNION ALL
SELECT 'only upgraded', member FROM (SELECT member FROM upgraded EXCEPT SELECT member FROM fresh) b;
SELECT dblink_disconnect('upgraded') AS disconnected;
DROP DATABASE hs_upgrade;
