--
-- 06_trigger: sync_attendance(), the trigger for attendance tables, and
-- backfill().  No worker drains this database (hubspot_events.database is
-- "postgres"), so outbox rows stay pending: the tests read the outbox.
--
SET search_path = public, hubspot_events, hs_test;
SET TimeZone = 'UTC';
\pset null '(null)'
SELECT coalesce(max(id), 0) AS start FROM hubspot_events.outbox \gset

-- the newest outbox id so far
CREATE FUNCTION hs_test.outbox_mark() RETURNS bigint
LANGUAGE sql AS $$ SELECT coalesce(max(id), 0) FROM hubspot_events.outbox $$;

-- the outbox rows written after a mark, oldest first; an interaction time
-- equal to the start of the transaction that wrote the row (the default)
-- is shown as such
CREATE FUNCTION hs_test.outbox_since(mark bigint)
RETURNS TABLE (event text, state text, account text, contact jsonb, key text, status text, source text)
LANGUAGE sql AS $$
  SELECT external_event_id, subscriber_state, external_account_id,
         CASE WHEN contact->'interactionDateTime' = to_jsonb(floor(extract(epoch FROM created_at) * 1000)::bigint)
              THEN jsonb_set(contact, '{interactionDateTime}', '"<transaction start>"')
              ELSE contact END,
         contact_key, status, source
    FROM hubspot_events.outbox WHERE id > mark ORDER BY id
$$;

-- ---- INSERT, UPDATE, DELETE ----
CREATE TABLE att (
  id int PRIMARY KEY,
  event text,
  status text,
  contact_vid bigint,
  account text,
  attended_at timestamptz,
  props jsonb,
  note text);
CREATE TRIGGER att_sync AFTER INSERT OR UPDATE OR DELETE ON att
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=status', 'vid=contact_vid', 'account_id=account',
    'at=attended_at', 'properties=props', 'on_delete=cancel');

-- one outbox row per row, in order; states normalised; properties as strings
SELECT outbox_mark() AS m \gset
INSERT INTO att VALUES
  (1, 'trg-webinar', 'register', 101, 'acme', '2026-03-01 17:00:00+00',
   '{"source": "zoom", "seats": 2, "vip": true, "gone": null}', 'a'),
  (2, 'trg-webinar', 'REGISTERED', 102, 'acme', NULL, NULL, 'b');
SELECT * FROM outbox_since(:m);

-- an UPDATE of columns that are not mapped, or that changes nothing, enqueues nothing
SELECT outbox_mark() AS m \gset
UPDATE att SET note = 'changed' WHERE id = 1;
UPDATE att SET status = status, contact_vid = contact_vid, props = props;
SELECT count(*) AS enqueued FROM outbox_since(:m);

-- a changed state, time or properties: the new row
UPDATE att SET status = 'attend', attended_at = '2026-03-01 18:00:00+00' WHERE id = 1;
UPDATE att SET props = '{"source": "teams"}' WHERE id = 2;
SELECT * FROM outbox_since(:m);

-- a changed event, contact or account: a cancel for the old, then the new
SELECT outbox_mark() AS m \gset
UPDATE att SET event = 'trg-webinar-2' WHERE id = 1;
UPDATE att SET contact_vid = 202 WHERE id = 2;
UPDATE att SET account = 'acme-eu' WHERE id = 2;
SELECT * FROM outbox_since(:m);

-- a DELETE: a cancel (on_delete=cancel)
SELECT outbox_mark() AS m \gset
DELETE FROM att WHERE id = 1;
SELECT * FROM outbox_since(:m);

-- a NULL state or vid: nothing to sync yet, for any operation
SELECT outbox_mark() AS m \gset
INSERT INTO att (id, event, status, contact_vid, account) VALUES
  (3, 'trg-webinar', NULL, 103, 'acme'),
  (4, 'trg-webinar', 'register', NULL, 'acme');
UPDATE att SET note = 'x', props = '{"a": 1}' WHERE id IN (3, 4);
DELETE FROM att WHERE id = 3;
SELECT count(*) AS enqueued FROM outbox_since(:m);
-- once the vid is set, the row is synced (there was no old contact to cancel)
UPDATE att SET contact_vid = 104 WHERE id = 4;
-- a state set back to NULL enqueues nothing
UPDATE att SET status = NULL WHERE id = 4;
SELECT * FROM outbox_since(:m);

-- a rolled-back write enqueues nothing
SELECT outbox_mark() AS m \gset
BEGIN;
INSERT INTO att VALUES (5, 'trg-webinar', 'register', 105, 'acme');
SELECT count(*) AS enqueued_in_transaction FROM outbox_since(:m);
ROLLBACK;
SELECT count(*) AS enqueued FROM outbox_since(:m);

-- ---- constants; deletes ignored without on_delete=cancel ----
CREATE TABLE att_const (event text, vid text, note text);
CREATE TRIGGER att_const_sync AFTER INSERT OR UPDATE OR DELETE ON att_const
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'vid=vid', 'state:=attend', 'account_id:=acme');
SELECT outbox_mark() AS m \gset
INSERT INTO att_const VALUES ('trg-class', '00301', 'x');
UPDATE att_const SET note = 'y';
-- a changed contact without on_delete=cancel: only the new one
UPDATE att_const SET vid = '302';
DELETE FROM att_const;
SELECT * FROM outbox_since(:m);
-- on_delete=ignore says the same explicitly
CREATE OR REPLACE TRIGGER att_const_sync AFTER INSERT OR UPDATE OR DELETE ON att_const
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'vid=vid', 'state:=register', 'account_id:=acme', 'on_delete=ignore');
SELECT outbox_mark() AS m \gset
INSERT INTO att_const VALUES ('trg-class', '303', 'x');
DELETE FROM att_const;
SELECT * FROM outbox_since(:m);

-- ---- invalid values: recorded as failed, the write goes on ----
CREATE TABLE att_raw (event text, state text, vid text, account text, at text, props json);
CREATE TRIGGER att_raw_sync AFTER INSERT OR UPDATE OR DELETE ON att_raw
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'at=at', 'properties=props');
SELECT outbox_mark() AS m \gset
INSERT INTO att_raw VALUES
  ('trg-raw', 'maybe', '401', 'acme', NULL, NULL),
  ('trg-raw', 'attend', 'abc', 'acme', '2026-03-01 10:00', '{"a": "b"}'),
  (NULL, 'attend', '403', 'acme', NULL, NULL),
  ('trg-raw', 'attend', '404', NULL, NULL, NULL),
  ('trg-raw', 'attend', '405', 'acme', 'yesterday-ish', NULL),
  ('trg-raw', 'attend', '406', 'acme', NULL, '[1, 2]'),
  ('', 'attend', '407', 'acme', NULL, NULL),
  ('trg-raw', 'attend', '408', 'acme', '2026-03-01 10:00', '{"n": 12.50, "ok": false, "skip": null}');
SELECT count(*) AS rows_written FROM att_raw;
SELECT external_event_id, subscriber_state, external_account_id, contact, contact_key,
       status, error_category, error_message, last_attempt_at IS NOT NULL AS has_last_attempt
  FROM hubspot_events.outbox WHERE id > :m ORDER BY id;
-- failed_syncs shows them
SELECT external_event_id, subscriber_state, error_category, error_message, source
  FROM hubspot_events.failed_syncs WHERE id > :m ORDER BY id;

-- on_invalid=error: an invalid row is an ERROR naming the table and the problem
CREATE TABLE att_strict (event text, state text, vid text, account text);
CREATE TRIGGER att_strict_sync AFTER INSERT ON att_strict
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_invalid=error');
SELECT outbox_mark() AS m \gset
SELECT * FROM try($$INSERT INTO att_strict VALUES ('trg-strict', 'maybe', '1', 'acme')$$);
SELECT * FROM try($$INSERT INTO att_strict VALUES ('trg-strict', 'attend', 'abc', 'acme')$$);
SELECT * FROM try($$INSERT INTO att_strict VALUES (NULL, 'attend', '1', 'acme')$$);
SELECT * FROM try($$INSERT INTO att_strict VALUES ('trg-strict', 'attend', '1', NULL)$$);
SELECT count(*) AS rows_written FROM att_strict;
INSERT INTO att_strict VALUES ('trg-strict', 'attend', '1', 'acme');
SELECT * FROM outbox_since(:m);

-- ---- misconfigured triggers: an ERROR naming the table and the argument ----
CREATE TABLE att_cfg (event text, state text, vid bigint, account text, note text, flag boolean);
-- create a trigger with these arguments, fire it, drop it
CREATE FUNCTION hs_test.try_config(args text,
  how text DEFAULT 'AFTER INSERT OR UPDATE OR DELETE ON att_cfg FOR EACH ROW')
RETURNS TABLE (code text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE TRIGGER cfg_test %s EXECUTE FUNCTION hubspot_events.sync_attendance(%s)', how, args);
  RETURN QUERY SELECT * FROM hs_test.try($q$INSERT INTO att_cfg VALUES ('trg-cfg', 'register', 1, 'acme', 'x', true)$q$);
  EXECUTE 'DROP TRIGGER cfg_test ON att_cfg';
END $$;
SELECT outbox_mark() AS m \gset
-- unknown key
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'colour=note'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'Vid=vid'$$);
-- missing column (names are case-sensitive)
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=contact_vid', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=Event', 'state=state', 'vid=vid', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=ctid', 'account_id=account'$$);
-- missing required key
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid'$$);
SELECT * FROM try_config('');
-- bad syntax
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', '=vid', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=', 'account_id=account'$$);
-- a key twice
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'state:=attend'$$);
-- bad options
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete=maybe'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete:=cancel'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_invalid=warn'$$);
-- constants that can never be valid
SELECT * FROM try_config($$'event_id=event', 'state:=atend', 'vid=vid', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id:='$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid:=abc', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'properties:={"a":'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'properties:=[1]'$$);
-- a column of a type the key cannot take
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=flag', 'account_id=account'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'properties=note'$$);
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'at=flag'$$);
-- not AFTER ... FOR EACH ROW
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account'$$,
                         'BEFORE INSERT ON att_cfg FOR EACH ROW');
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account'$$,
                         'AFTER INSERT ON att_cfg FOR EACH STATEMENT');
-- a good configuration, for comparison
SELECT * FROM try_config($$'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'properties:={"k": 1}'$$);
-- the check runs on every fire, and sees the table as it is now
CREATE TRIGGER cfg_sync AFTER INSERT ON att_cfg
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
INSERT INTO att_cfg VALUES ('trg-cfg', 'attend', 2, 'acme');
-- (the extension's event trigger refuses such a rename, see 12_review;
-- with it disabled, the check at each fire says what is wrong)
ALTER EVENT TRIGGER hubspot_events_guard_sync_triggers DISABLE;
ALTER TABLE att_cfg RENAME COLUMN vid TO contact_vid;
ALTER EVENT TRIGGER hubspot_events_guard_sync_triggers ENABLE;
SELECT * FROM try($$INSERT INTO att_cfg VALUES ('trg-cfg', 'attend', 3, 'acme')$$);
SELECT * FROM try($$INSERT INTO att_cfg VALUES ('trg-cfg', 'attend', 3, 'acme')$$);
-- fixed in place (the same trigger, new arguments)
CREATE OR REPLACE TRIGGER cfg_sync AFTER INSERT ON att_cfg
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=contact_vid', 'account_id:=acme-2');
INSERT INTO att_cfg VALUES ('trg-cfg', 'attend', 4, 'acme');
SELECT * FROM outbox_since(:m);

-- ---- the "at" column: each type, read as PostgreSQL casts it ----
CREATE TABLE att_at (n int, ts timestamp, tstz timestamptz, d date, ms bigint, t text);
CREATE TRIGGER at_1_timestamp AFTER INSERT ON att_at FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id:=trg-at-timestamp', 'state:=attend', 'vid=n', 'account_id:=acme', 'at=ts');
CREATE TRIGGER at_2_timestamptz AFTER INSERT ON att_at FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id:=trg-at-timestamptz', 'state:=attend', 'vid=n', 'account_id:=acme', 'at=tstz');
CREATE TRIGGER at_3_date AFTER INSERT ON att_at FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id:=trg-at-date', 'state:=attend', 'vid=n', 'account_id:=acme', 'at=d');
CREATE TRIGGER at_4_bigint AFTER INSERT ON att_at FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id:=trg-at-bigint', 'state:=attend', 'vid=n', 'account_id:=acme', 'at=ms');
CREATE TRIGGER at_5_text AFTER INSERT ON att_at FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id:=trg-at-text', 'state:=attend', 'vid=n', 'account_id:=acme', 'at=t');
SELECT outbox_mark() AS m \gset
-- timestamp, date and text are read in the session's TimeZone
SET TimeZone = 'America/New_York';
INSERT INTO att_at VALUES (1, '2026-03-01 12:00', '2026-03-01 12:00+00', '2026-03-01', 1772366400000, '2026-03-01 12:00');
SET TimeZone = 'Asia/Tokyo';
INSERT INTO att_at VALUES (2, '2026-03-01 12:00', '2026-03-01 12:00+00', '2026-03-01', 1772366400000, '2026-03-01 12:00');
SET TimeZone = 'UTC';
SELECT event, (contact->>'vid')::int AS vid, contact->'interactionDateTime' AS epoch_ms,
       to_timestamp((contact->>'interactionDateTime')::bigint / 1000.0) AS utc
  FROM outbox_since(:m);
-- out of range: before 1970, infinity, a negative epoch; NULL is the transaction start
SELECT outbox_mark() AS m \gset
INSERT INTO att_at VALUES (3, 'infinity', '1969-12-31 23:59:59+00', '1960-01-01', -1, NULL);
SELECT o.external_event_id, o.status, o.contact, o.error_message
  FROM hubspot_events.outbox o WHERE id > :m AND status = 'failed' ORDER BY id;
SELECT * FROM outbox_since(:m) WHERE status = 'pending';

-- ---- names that need quoting; values that look like SQL ----
CREATE TABLE "Attendance Table" ("Event Id" text, "State" text, "Contact VID" bigint PRIMARY KEY, account text);
CREATE TRIGGER "Sync It" AFTER INSERT OR UPDATE OR DELETE ON "Attendance Table"
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=Event Id', 'state=State', 'vid=Contact VID', 'account_id=account', 'on_delete=cancel');
CREATE TABLE x (y int);
SELECT outbox_mark() AS m \gset
INSERT INTO "Attendance Table" VALUES ($$'); DROP TABLE x; --$$, 'register', 501, $$acme"); DROP TABLE x; --$$);
SELECT * FROM outbox_since(:m);
SELECT to_regclass('x') IS NOT NULL AS x_still_exists;

-- ---- privileges ----
-- a role that may only write to the table enqueues through the trigger,
-- and still cannot read or write the outbox
CREATE ROLE hs_trg_writer;
GRANT INSERT ON att TO hs_trg_writer;
GRANT USAGE ON SCHEMA hubspot_events TO hs_trg_writer;
SELECT outbox_mark() AS m \gset
SET ROLE hs_trg_writer;
INSERT INTO att VALUES (10, 'trg-role', 'attend', 110, 'acme');
SELECT count(*) FROM hubspot_events.outbox;
SELECT count(*) FROM hubspot_events.failed_syncs;
INSERT INTO hubspot_events.outbox (external_event_id) VALUES ('x');
RESET ROLE;
SELECT * FROM outbox_since(:m);

-- a table owner who is not a superuser needs USAGE on the schema and
-- EXECUTE on sync_attendance() to create the trigger
CREATE ROLE hs_trg_owner;
GRANT CREATE ON SCHEMA public TO hs_trg_owner;
SET ROLE hs_trg_owner;
CREATE TABLE owned_att (event text, state text, vid bigint, account text);
CREATE TRIGGER owned_sync AFTER INSERT ON owned_att FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
RESET ROLE;
GRANT USAGE ON SCHEMA hubspot_events TO hs_trg_owner;
SET ROLE hs_trg_owner;
CREATE TRIGGER owned_sync AFTER INSERT ON owned_att FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
RESET ROLE;
GRANT EXECUTE ON FUNCTION hubspot_events.sync_attendance() TO hs_trg_owner;
SELECT outbox_mark() AS m \gset
SET ROLE hs_trg_owner;
CREATE TRIGGER owned_sync AFTER INSERT ON owned_att FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
INSERT INTO owned_att VALUES ('trg-owned', 'register', 120, 'acme');
RESET ROLE;
SELECT * FROM outbox_since(:m);

-- ---- backfill: rows that were there before the trigger ----
CREATE TABLE bf (id int PRIMARY KEY, event text, state text, vid bigint, account text);
INSERT INTO bf
SELECT g, 'trg-backfill', CASE g WHEN 4 THEN NULL WHEN 6 THEN 'maybe' ELSE 'register' END, 600 + g, 'acme'
  FROM generate_series(1, 7) g;
CREATE TRIGGER bf_sync AFTER INSERT OR UPDATE OR DELETE ON bf
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
CREATE FUNCTION hs_test.not_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER bf_other AFTER INSERT ON bf FOR EACH ROW EXECUTE FUNCTION hs_test.not_sync();
-- what backfill does, batch by hand (rolled back): primary-key order, each
-- batch starting after the last key of the one before
BEGIN;
SELECT * FROM backfill_batch('bf', 'bf_sync', NULL, 3);
SELECT * FROM backfill_batch('bf', 'bf_sync', '{3}', 3);
SELECT * FROM backfill_batch('bf', 'bf_sync', '{6}', 3);
SELECT * FROM backfill_batch('bf', 'bf_sync', '{7}', 3);
ROLLBACK;
-- the key has one element per key column
SELECT * FROM try($$SELECT backfill_batch('bf', 'bf_sync', '{1,2}', 3)$$);
-- wrong arguments
SELECT * FROM try($$SELECT backfill_batch('bf', 'no_such_trigger', NULL, 3)$$);
SELECT * FROM try($$SELECT backfill_batch('bf', 'bf_other', NULL, 3)$$);
SELECT * FROM try($$SELECT backfill_batch('bf', 'bf_sync', NULL, 0)$$);
SELECT * FROM try($$SELECT backfill_batch('bf', NULL, NULL, 3)$$);
SELECT * FROM try($$SELECT backfill_batch('bf', 'bf_sync', NULL, NULL)$$);
CREATE TABLE bf_parted (event text, state text, vid bigint, account text, PRIMARY KEY (account, vid)) PARTITION BY LIST (account);
CREATE TABLE bf_parted_acme PARTITION OF bf_parted FOR VALUES IN ('acme');
CREATE TRIGGER bf_parted_sync AFTER INSERT ON bf_parted
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account');
SELECT * FROM try($$SELECT backfill_batch('bf_parted', 'bf_parted_sync', NULL, 3)$$);
-- SELECT on the table is required
GRANT EXECUTE ON FUNCTION backfill_batch(regclass, name, text[], integer) TO hs_trg_writer;
SET ROLE hs_trg_writer;
SELECT * FROM hubspot_events.backfill_batch('public.att', 'att_sync', NULL, 3);
RESET ROLE;
\set VERBOSITY terse
CALL backfill('bf', 'no_such_trigger');
-- it commits between batches: not inside a transaction block
BEGIN;
CALL backfill('bf', 'bf_sync', 3);
ROLLBACK;
\set VERBOSITY default
-- the whole table, 3 rows per transaction
SELECT outbox_mark() AS m \gset
CALL backfill('bf', 'bf_sync', 3);
SELECT * FROM outbox_since(:m);
SELECT error_message FROM hubspot_events.outbox WHERE id > :m AND status = 'failed';
SELECT count(DISTINCT xmin::text) AS transactions FROM hubspot_events.outbox WHERE id > :m;
-- a quoted name, and the default batch size
SELECT outbox_mark() AS m \gset
CALL backfill('"Attendance Table"', 'Sync It');
SELECT event, key, source FROM outbox_since(:m);
-- an empty partition, through the trigger cloned from its parent
CALL backfill('bf_parted_acme', 'bf_parted_sync', 1);

-- ---- char(n) columns: their values as col::text gives them, without the padding ----
-- (issue 11 item 18: the ids were sent padded, char(n) emails and vids
-- were recorded invalid)
CREATE DOMAIN hs_test.padded_account AS char(16);
CREATE TABLE att_char (
  id int PRIMARY KEY, event char(20), account hs_test.padded_account, state char(12),
  email char(40), vid char(12), event_v varchar(20), note text);
CREATE TRIGGER att_char_by_vid AFTER INSERT OR UPDATE OR DELETE ON att_char
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete=cancel');
CREATE TRIGGER att_char_by_email AFTER INSERT ON att_char
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'email=email', 'account_id=account');
-- varchar keeps its trailing spaces, as varchar::text does
CREATE TRIGGER att_char_varchar AFTER INSERT ON att_char
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event_v', 'state=state', 'vid=vid', 'account_id=account');
SELECT castfunc::regprocedure AS "char(n)::text is", p.prosrc
  FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
 WHERE castsource = 'bpchar'::regtype AND casttarget = 'text'::regtype;
SELECT outbox_mark() AS m \gset
INSERT INTO att_char VALUES
  (1, 'trg-char', 'acme', 'register', 'Ann@Example.com', '00801', 'trg-varchar  ', 'a');
SELECT * FROM outbox_since(:m);
SELECT count(*) AS failed FROM hubspot_events.outbox WHERE id > :m AND status = 'failed';
-- the values exactly, quoted: char(n) trimmed, varchar as it is
SELECT quote_literal(external_event_id) AS event, quote_literal(external_account_id) AS account,
       quote_literal(subscriber_state) AS state, quote_literal(contact_key) AS key
  FROM hubspot_events.outbox WHERE id > :m ORDER BY id;
-- an UPDATE and a DELETE read the old row the same way
SELECT outbox_mark() AS m \gset
UPDATE att_char SET state = 'attend' WHERE id = 1;
UPDATE att_char SET vid = '00802' WHERE id = 1;
DELETE FROM att_char WHERE id = 1;
SELECT event, state, account, contact - 'interactionDateTime' AS contact, key, status
  FROM outbox_since(:m) WHERE source = 'public.att_char';
-- a char(n) of spaces is the empty string, as ''::char(4)::text is
SELECT outbox_mark() AS m \gset
INSERT INTO att_char (id, event, account, state, vid, event_v) VALUES (2, 'trg-char', ' ', 'register', '803', 'x');
SELECT external_event_id, external_account_id, status, error_message
  FROM hubspot_events.outbox WHERE id > :m ORDER BY id;
DROP TABLE att_char;
DROP DOMAIN hs_test.padded_account;

-- sync_event: char(n) ids and fields likewise
CREATE TABLE ev_char (id char(20), account char(10), title char(30), host char(20), done char(5));
CREATE TRIGGER ev_char_sync AFTER INSERT ON ev_char
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_event(
    'event_id=id', 'account_id=account', 'name=title', 'organizer=host', 'completed=done');
SELECT outbox_mark() AS m \gset
INSERT INTO ev_char VALUES ('trg-ev-char', 'acme', 'Spring webinar', 'Acme', 'no');
SELECT kind, external_event_id, external_account_id, event, status
  FROM hubspot_events.outbox WHERE id > :m ORDER BY id;
DROP TABLE ev_char;

-- ---- a row replaced in one transaction: no cancel before its new state ----
-- (issue 11 item 19) A table partitioned by state: an UPDATE of the state
-- moves the row to another partition, which fires DELETE on the old one and
-- INSERT on the new one.  The trigger is on the parent, cloned to the
-- partitions (one of them partitioned again).
CREATE TABLE att_moved (id int, event text, state text, vid bigint, account text, note text)
  PARTITION BY LIST (state);
CREATE TABLE att_moved_reg PARTITION OF att_moved FOR VALUES IN ('register');
CREATE TABLE att_moved_att PARTITION OF att_moved FOR VALUES IN ('attend') PARTITION BY HASH (id);
CREATE TABLE att_moved_att0 PARTITION OF att_moved_att FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE att_moved_att1 PARTITION OF att_moved_att FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE att_moved_other PARTITION OF att_moved DEFAULT;
CREATE TRIGGER att_moved_sync AFTER INSERT OR UPDATE OR DELETE ON att_moved
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete=cancel');
INSERT INTO att_moved SELECT g, 'trg-moved', 'register', 900 + g, 'acme' FROM generate_series(1, 12) g;
-- an UPDATE that moves rows between partitions: only the new states
SELECT outbox_mark() AS m \gset
UPDATE att_moved SET state = 'attend' WHERE id IN (1, 2);
SELECT tableoid::regclass AS partition, id FROM att_moved WHERE id IN (1, 2) ORDER BY id;
SELECT event, state, key, status, source FROM outbox_since(:m);
-- and back, to a partition one level up
SELECT outbox_mark() AS m \gset
UPDATE att_moved SET state = 'register' WHERE id = 1;
SELECT event, state, key, status, source FROM outbox_since(:m);
-- an explicit DELETE then INSERT of the same key in one transaction (an ORM
-- replacing a row): only the new state
SELECT outbox_mark() AS m \gset
BEGIN;
DELETE FROM att_moved WHERE id = 3;
INSERT INTO att_moved VALUES (3, 'trg-moved', 'attend', 903, 'acme', 'replaced');
COMMIT;
SELECT event, state, key, status FROM outbox_since(:m);
-- the same as a role without any privilege on the outbox: the cancel is
-- deleted with the outbox owner's rights
GRANT SELECT, INSERT, DELETE ON att_moved TO hs_trg_writer;
SELECT outbox_mark() AS m \gset
SET ROLE hs_trg_writer;
BEGIN;
DELETE FROM att_moved WHERE id = 4;
INSERT INTO att_moved VALUES (4, 'trg-moved', 'attend', 904, 'acme');
COMMIT;
RESET ROLE;
SELECT event, state, key, status FROM outbox_since(:m);
-- a DELETE alone: the cancel stays
SELECT outbox_mark() AS m \gset
DELETE FROM att_moved WHERE id = 5;
SELECT event, state, key, status FROM outbox_since(:m);
-- a DELETE and an INSERT in different transactions: the cancel stays
SELECT outbox_mark() AS m \gset
DELETE FROM att_moved WHERE id = 6;
INSERT INTO att_moved VALUES (6, 'trg-moved', 'register', 906, 'acme');
SELECT event, state, key, status FROM outbox_since(:m);
-- a DELETE, then the INSERT rolled back to a savepoint: the cancel stays
SELECT outbox_mark() AS m \gset
BEGIN;
DELETE FROM att_moved WHERE id = 7;
SAVEPOINT s;
INSERT INTO att_moved VALUES (7, 'trg-moved', 'register', 907, 'acme');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT event, state, key, status FROM outbox_since(:m);
-- ... and an INSERT after that rollback drops it after all
SELECT outbox_mark() AS m \gset
BEGIN;
DELETE FROM att_moved WHERE id = 8;
SAVEPOINT s;
INSERT INTO att_moved VALUES (8, 'trg-moved', 'register', 908, 'acme');
ROLLBACK TO SAVEPOINT s;
INSERT INTO att_moved VALUES (8, 'trg-moved', 'attend', 908, 'acme');
COMMIT;
SELECT event, state, key, status FROM outbox_since(:m);
-- a cancel written by a subtransaction that was rolled back is gone: the
-- INSERT after it has nothing to drop, and the row is sent as usual
SELECT outbox_mark() AS m \gset
BEGIN;
SAVEPOINT s;
DELETE FROM att_moved WHERE id = 9;
ROLLBACK TO SAVEPOINT s;
UPDATE att_moved SET state = 'attend' WHERE id = 9;
COMMIT;
SELECT event, state, key, status FROM outbox_since(:m);
-- another contact, an invalid new row, another table: the cancel stays
CREATE TABLE att_moved_copy (LIKE att_moved);
CREATE TRIGGER att_moved_copy_sync AFTER INSERT OR UPDATE OR DELETE ON att_moved_copy
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete=cancel');
SELECT outbox_mark() AS m \gset
BEGIN;
DELETE FROM att_moved WHERE id IN (10, 11, 12);
INSERT INTO att_moved VALUES (10, 'trg-moved', 'register', 999, 'acme');
INSERT INTO att_moved VALUES (11, 'trg-moved', 'maybe', 911, 'acme');
INSERT INTO att_moved_copy VALUES (12, 'trg-moved', 'register', 912, 'acme');
COMMIT;
SELECT event, state, key, status, source FROM outbox_since(:m);
-- a contact changed and changed back in one transaction: its cancel goes
INSERT INTO att_moved VALUES (13, 'trg-moved', 'register', 913, 'acme');
SELECT outbox_mark() AS m \gset
BEGIN;
UPDATE att_moved SET vid = 914 WHERE id = 13;
UPDATE att_moved SET vid = 913 WHERE id = 13;
COMMIT;
SELECT event, state, key, status FROM outbox_since(:m);
-- the cancels of this table left in the outbox: only those that must stay
-- (905, 906, 907, 910, 911, 912 and 914)
SELECT count(*) AS cancels_left FROM hubspot_events.outbox
 WHERE external_event_id = 'trg-moved' AND subscriber_state = 'cancel';
DROP TABLE att_moved, att_moved_copy;

-- sync_event: an event deleted and inserted again in one transaction is
-- upserted, not cancelled first
CREATE TABLE ev_moved (id text, title text, host text);
CREATE TRIGGER ev_moved_sync AFTER INSERT OR UPDATE OR DELETE ON ev_moved
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_event(
    'event_id=id', 'account_id:=acme', 'name=title', 'organizer=host', 'on_delete=cancel');
INSERT INTO ev_moved VALUES ('trg-ev-moved', 'Spring', 'Acme'), ('trg-ev-gone', 'Summer', 'Acme');
SELECT outbox_mark() AS m \gset
BEGIN;
DELETE FROM ev_moved;
INSERT INTO ev_moved VALUES ('trg-ev-moved', 'Spring, again', 'Acme');
COMMIT;
SELECT kind, external_event_id, event->>'eventName' AS name, status
  FROM hubspot_events.outbox WHERE id > :m ORDER BY id;
DROP TABLE ev_moved;

-- ---- clean up ----
DELETE FROM hubspot_events.outbox WHERE id > :start;
DROP TABLE att, att_const, att_raw, att_strict, att_cfg, att_at, "Attendance Table", x, bf, bf_parted;
DROP FUNCTION hs_test.outbox_mark(), hs_test.outbox_since(bigint), hs_test.try_config(text, text), hs_test.not_sync();
DROP OWNED BY hs_trg_owner, hs_trg_writer;
DROP ROLE hs_trg_owner, hs_trg_writer;
RESET TimeZone;

-- a json properties value that jsonb cannot hold never fails the write:
-- the row is recorded as a failed sync
CREATE TABLE hs_json_props (ev text, st text, vid bigint, props json);
CREATE TRIGGER hs_json_props_sync AFTER INSERT ON hs_json_props FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme', 'properties=props');
INSERT INTO hs_json_props VALUES ('webinar-json', 'register', 1, '{"a": "\u0000"}'),
                                 ('webinar-json', 'register', 2, '{"a": 1e999999}'),
                                 ('webinar-json', 'register', 3, '{"a": "fine"}');
SELECT contact_key, status, error_category, error_message, contact->'properties' AS properties
  FROM hubspot_events.outbox WHERE external_event_id = 'webinar-json' ORDER BY id;
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'webinar-json';
DROP TABLE hs_json_props;

-- a numeric vid past 64 bits never wraps to another contact
-- (2^64 + 1 would become vid 1): the row is recorded as a failed sync, or
-- with on_invalid=error the write fails (22023), naming the field
CREATE TABLE hs_wide (ev text, st text, vid numeric);
CREATE TRIGGER hs_wide_sync AFTER INSERT ON hs_wide FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme');
INSERT INTO hs_wide VALUES ('webinar-wide', 'register', 18446744073709551617),
                           ('webinar-wide', 'register', 20000000000000000000),
                           ('webinar-wide', 'register', 9223372036854775807);
SELECT contact_key, status, error_category, error_message, contact - 'interactionDateTime' AS contact
  FROM hubspot_events.outbox WHERE external_event_id = 'webinar-wide' ORDER BY id;
CREATE TABLE hs_wide_strict (ev text, st text, vid numeric);
CREATE TRIGGER hs_wide_strict_sync AFTER INSERT ON hs_wide_strict FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme', 'on_invalid=error');
SELECT * FROM try($$INSERT INTO hs_wide_strict VALUES ('webinar-wide', 'register', 18446744073709551617)$$);
SELECT count(*) AS rows_written FROM hs_wide_strict;
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'webinar-wide';
DROP TABLE hs_wide, hs_wide_strict;
