--
-- 07_outbox: the outbox's shape, hubspot_enqueue_subscriber, and who may
-- do what.  No worker serves this database (hubspot_events.database is
-- "postgres" here), so enqueued rows stay pending: the worker's side is
-- tested in test/t/.
--
SET search_path = hubspot_events, hs_test, public;

-- the outbox's columns are public interface
SELECT column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'hubspot_events' AND table_name = 'outbox'
 ORDER BY ordinal_position;
SELECT relpersistence AS persistence FROM pg_class WHERE oid = 'hubspot_events.outbox'::regclass;
-- a partitioned table (0.9.0): the extension's new rows in the intake, with
-- no btree index (the application's write pays none), the others in
-- outbox_rows, with the indexes
SELECT c.oid::regclass AS partition, pg_get_expr(c.relpartbound, c.oid) AS bound, c.relpersistence AS persistence
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'hubspot_events.outbox'::regclass ORDER BY 1;
SELECT indrelid::regclass AS partition, indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid IN ('hubspot_events.outbox'::regclass, 'hubspot_events.outbox_rows'::regclass,
                                   'hubspot_events.outbox_intake'::regclass) ORDER BY 1, 2;
-- pg_dump keeps the rows
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension WHERE extname = 'hubspot_events' ORDER BY 1;
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'hubspot_events' AND table_name = 'failed_syncs' ORDER BY ordinal_position;

-- ---- enqueue ----
BEGIN;
SELECT hubspot_enqueue_subscriber('webinar-q', 'Attended', 'acme',
  '[{"vid": 1, "interactionDateTime": 1767225600000, "properties": {"n": 1.50}}, {"vid": "2", "interactionDateTime": "2026-01-01T00:00:00Z"}]')
  AS ids \gset
SELECT :'ids'::bigint[] = (SELECT array_agg(id ORDER BY id) FROM outbox WHERE external_event_id = 'webinar-q') AS returns_the_new_ids,
       array_length(:'ids'::bigint[], 1) AS n;
SELECT external_event_id, subscriber_state, external_account_id, contact, contact_key, status, attempts,
       next_attempt_at <= now() AS due, last_attempt_at, sent_at, http_status, error_category, correlation_id,
       source, created_at = now() AS created_in_this_transaction
  FROM outbox WHERE external_event_id = 'webinar-q' ORDER BY id;
-- interactionDateTime defaults to the enqueuing transaction's start
SELECT hubspot_enqueue_subscriber('webinar-q', 'cancel', 'acme', '{"vid": 3}') AS ids \gset
SELECT (contact->>'interactionDateTime')::bigint = floor(extract(epoch FROM now()) * 1000)::bigint AS at_transaction_start
  FROM outbox WHERE id = ANY (:'ids'::bigint[]);
ROLLBACK;
-- rolled back: no rows
SELECT count(*) AS rows_after_rollback FROM outbox WHERE external_event_id = 'webinar-q';

-- the same validation as hubspot_upsert_subscriber; bad input writes nothing
SELECT count(*) AS rows_before FROM outbox \gset
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber(NULL, 'register', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'maybe', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', '', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": "abc"}]')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '[]')$$);
-- numbers past 64 bits never wrap to another contact (2^64 + 1 would be vid 1)
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": 18446744073709551617}]')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '{"vid": "20000000000000000000"}')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '{"vid": 2, "interactionDateTime": 18446744073709551617}')$$);
SELECT * FROM try($$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', '{"vid": 2, "properties": {"leftAt": 18446744073709551617}}')$$);
SELECT count(*) - :rows_before AS rows_written FROM outbox;

-- ---- privileges ----
SELECT has_table_privilege('public', 'hubspot_events.outbox', 'SELECT') AS public_select,
       has_table_privilege('public', 'hubspot_events.outbox', 'INSERT') AS public_insert,
       has_table_privilege('public', 'hubspot_events.failed_syncs', 'SELECT') AS public_failed_syncs,
       has_table_privilege('public', 'hubspot_events.status', 'SELECT') AS public_status;
SELECT p.oid::regprocedure AS function, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events')
 ORDER BY p.oid::regprocedure::text;

CREATE ROLE hs_enqueuer;
GRANT USAGE ON SCHEMA hubspot_events TO hs_enqueuer;
GRANT USAGE ON SCHEMA hs_test TO hs_enqueuer;
GRANT EXECUTE ON FUNCTION hs_test.try(text) TO hs_enqueuer;
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb, text) TO hs_enqueuer;
SET ROLE hs_enqueuer;
-- enqueues without any privilege on the outbox
SELECT array_length(hubspot_events.hubspot_enqueue_subscriber('webinar-role', 'register', 'acme', '{"vid": 5}'), 1) AS enqueued;
-- but cannot read, change or delete the outbox, nor manage syncs
SELECT * FROM try($$SELECT count(*) FROM hubspot_events.outbox$$);
SELECT * FROM try($$UPDATE hubspot_events.outbox SET status = 'sent'$$);
SELECT * FROM try($$DELETE FROM hubspot_events.outbox$$);
SELECT * FROM try($$INSERT INTO hubspot_events.outbox (external_event_id) VALUES ('x')$$);
SELECT * FROM try($$SELECT * FROM hubspot_events.failed_syncs$$);
SELECT * FROM try($$SELECT * FROM hubspot_events.status$$);
SELECT * FROM try($$SELECT hubspot_events.retry_failed()$$);
SELECT * FROM try($$SELECT hubspot_events.purge_sent()$$);
SELECT * FROM try($$SELECT hubspot_events.purge_failed('1 day')$$);
SELECT * FROM try($$SELECT hubspot_events.pause()$$);
SELECT * FROM try($$SELECT hubspot_events.resume()$$);
SELECT * FROM try($$SELECT hubspot_events.hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
RESET ROLE;
SELECT external_event_id, contact - 'interactionDateTime' AS contact, source, status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-role';
REVOKE ALL ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb, text) FROM hs_enqueuer;
REVOKE ALL ON FUNCTION hs_test.try(text) FROM hs_enqueuer;
REVOKE ALL ON SCHEMA hubspot_events, hs_test FROM hs_enqueuer;
DROP ROLE hs_enqueuer;

-- ---- managing, without a worker ----
-- a failed row to replay, and a superseded one
INSERT INTO outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, attempts, http_status, error_category, error_message, last_attempt_at, source)
VALUES ('webinar-m', 'register', 'acme', '{"vid": 7, "interactionDateTime": 0, "properties": {}}', '7', 'failed', 10, 503, 'INTERNAL_ERROR', 'internal error', now(), 'test'),
       ('webinar-m', 'register', 'acme', '{"vid": 8, "interactionDateTime": 0, "properties": {}}', '8', 'failed', 1, 400, 'VALIDATION_ERROR', 'bad', now(), 'test'),
       ('webinar-m', 'cancel', 'acme', '{"vid": 8, "interactionDateTime": 0, "properties": {}}', '8', 'sent', 1, 204, NULL, NULL, now(), 'test');
SELECT external_event_id, subscriber_state, contact->'vid' AS vid, attempts, http_status, error_category, error_message
  FROM failed_syncs WHERE external_event_id = 'webinar-m' ORDER BY id;
SELECT retry_failed() AS retried;
SELECT subscriber_state, contact_key, status, attempts, http_status, error_category
  FROM outbox WHERE external_event_id = 'webinar-m' ORDER BY id;
SELECT retry_failed(include_superseded => true) AS retried_superseded;
SELECT retry_failed(ARRAY[-1]::bigint[]) AS retried_unknown_id;
SELECT count(*) AS pending FROM outbox WHERE external_event_id = 'webinar-m' AND status = 'pending';
-- pause/resume are recorded in worker_control, and the status view reads it
SELECT pause();
SELECT paused, paused_at IS NOT NULL AS since FROM worker_control;
SELECT paused, worker_state FROM status;
SELECT resume();
SELECT paused, paused_at FROM worker_control;
-- flush gives up after its timeout when no worker drains this database, and
-- says why (its DETAIL names a row id, which depends on the tests run before:
-- TAP 020 checks it)
\set VERBOSITY terse
SELECT flush('100 ms') AS drained;
\set VERBOSITY default
DELETE FROM outbox WHERE external_event_id IN ('webinar-m', 'webinar-role');
-- the status view's columns
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'hubspot_events' AND table_name = 'status' ORDER BY ordinal_position;
-- ids as long as they may be (1000 bytes) fit the outbox's indexes
SELECT array_length(hubspot_enqueue_subscriber((SELECT left(string_agg(md5(g::text), ''), 1000) FROM generate_series(1, 32) g),
                                               'register', 'acme', '{"vid": 1}'), 1) AS long_event_id_enqueued;
DELETE FROM outbox WHERE length(external_event_id) = 1000;

-- ---- input limits (src/hubspot_events.h): one byte over is refused at the
-- call, and nothing is written; at the limit the row is written whole ----
SELECT count(*) AS rows_before FROM outbox \gset
SELECT q.what, t.code, t.message FROM (VALUES
  ('event id 1001 bytes', $$SELECT hubspot_enqueue_subscriber(repeat('e', 1001), 'register', 'acme', '{"vid": 1}')$$),
  ('account id 1001 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', repeat('a', 1001), '{"vid": 1}')$$),
  ('email 255 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('email', repeat('a', 243) || '@example.com'))$$),
  ('property name 257 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object(repeat('p', 257), 'x')))$$),
  ('property value 65537 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_array('{"vid": 2}'::jsonb, jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('v', 65537)))))$$),
  ('contactProperties name 257 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('email', 'a@b.c', 'contactProperties', jsonb_build_object(repeat('n', 257), 'x')))$$),
  ('1001 contactProperties', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('email', 'a@b.c', 'contactProperties', (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 1001) g)))$$),
  ('contact 262145 bytes', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'interactionDateTime', 1700000000000,
      'properties', jsonb_build_object('a', repeat('x', 65536), 'b', repeat('x', 65536), 'c', repeat('x', 65536), 'd', repeat('x', 65449))))$$),
  ('100001 contacts', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', (SELECT jsonb_agg(jsonb_build_object('vid', g)) FROM generate_series(1, 100001) g))$$),
  ('the issue: 8 MB event id', $$SELECT hubspot_enqueue_subscriber(repeat('e', 8 * 1024 * 1024), 'register', 'acme', '{"vid": 1}')$$),
  ('the issue: 20 MB properties', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))))$$),
  ('20 MB of small properties', $$SELECT hubspot_enqueue_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', (SELECT jsonb_object_agg('p' || g, repeat('x', 100)) FROM generate_series(1, 200000) g)))$$)
) AS q(what, sql), LATERAL try(q.sql) t;
SELECT count(*) - :rows_before AS rows_written FROM outbox;
-- at each limit: the rows are written whole
BEGIN;
SELECT array_length(hubspot_enqueue_subscriber(repeat('e', 1000), 'register', repeat('a', 1000), jsonb_build_array(
  jsonb_build_object('email', repeat('a', 242) || '@example.com', 'interactionDateTime', 1700000000000,
                     'contactProperties', jsonb_build_object(repeat('n', 256), repeat('v', 65536))),
  jsonb_build_object('vid', 1, 'properties', (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 1000) g)),
  jsonb_build_object('vid', 2, 'interactionDateTime', 1700000000000,
    'properties', jsonb_build_object('a', repeat('x', 65536), 'b', repeat('x', 65536), 'c', repeat('x', 65536), 'd', repeat('x', 65448))))), 1) AS enqueued;
-- the compact JSON of each contact: its text without the blanks jsonb adds after ':' and ','
SELECT octet_length(external_event_id) AS event_id_bytes, octet_length(external_account_id) AS account_id_bytes,
       octet_length(contact->>'email') AS email_bytes,
       (SELECT max(octet_length(k)) FROM jsonb_object_keys(contact->'contactProperties') k) AS cprop_name_bytes,
       (SELECT max(octet_length(v)) FROM jsonb_each_text(contact->'contactProperties') p(k, v)) AS cprop_value_bytes,
       (SELECT count(*) FROM jsonb_object_keys(contact->'properties')) AS properties,
       octet_length(replace(replace(contact::text, '": ', '":'), ', "', ',"')) AS contact_json_bytes, status
  FROM outbox WHERE external_event_id = repeat('e', 1000) ORDER BY id;
ROLLBACK;

-- the trigger checks with the same validator: an over-long value is a failed
-- sync (LOCAL_VALIDATION_ERROR), or with on_invalid=error an ERROR; the
-- application's write goes on
CREATE TABLE public.hs_lim_att (ev text, st text, vid bigint, em text, props jsonb);
CREATE TRIGGER hs_lim_vid AFTER INSERT ON public.hs_lim_att FOR EACH ROW WHEN (NEW.em IS NULL)
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme', 'properties=props');
CREATE TRIGGER hs_lim_email AFTER INSERT ON public.hs_lim_att FOR EACH ROW WHEN (NEW.em IS NOT NULL)
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'email=em', 'account_id:=acme');
INSERT INTO public.hs_lim_att VALUES
  ('lim-ok', 'register', 1, NULL, jsonb_build_object('p', repeat('v', 65536))),
  ('lim-ok', 'register', NULL, repeat('a', 242) || '@example.com', NULL),
  (repeat('e', 1000), 'register', 2, NULL, NULL),
  (repeat('e', 1001), 'register', 3, NULL, NULL),
  ('lim-bad', 'register', 4, NULL, jsonb_build_object('p', repeat('v', 65537))),
  ('lim-bad', 'register', NULL, repeat('a', 243) || '@example.com', NULL),
  ('lim-bad', 'register', 5, NULL, (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 1001) g)),
  ('lim-bad', 'register', 6, NULL, jsonb_build_object('a', repeat('x', 65536), 'b', repeat('x', 65536), 'c', repeat('x', 65536), 'd', repeat('x', 65536))),
  ('lim-bad', 'register', 7, NULL, jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))),
  (repeat('e', 8 * 1024 * 1024), 'register', 8, NULL, NULL);
SELECT left(external_event_id, 8) AS event, octet_length(external_event_id) AS event_id_bytes,
       left(contact_key, 8) AS key, octet_length(contact_key) AS key_bytes, status, error_category, error_message
  FROM outbox WHERE source = 'public.hs_lim_att' ORDER BY id;
SELECT count(*) AS application_rows FROM public.hs_lim_att;
DELETE FROM outbox WHERE source = 'public.hs_lim_att';
DROP TRIGGER hs_lim_vid ON public.hs_lim_att;
CREATE TRIGGER hs_lim_vid AFTER INSERT ON public.hs_lim_att FOR EACH ROW WHEN (NEW.em IS NULL)
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme', 'properties=props', 'on_invalid=error');
SELECT q.what, t.code, t.message FROM (VALUES
  ('event id 1001 bytes', $$INSERT INTO public.hs_lim_att VALUES (repeat('e', 1001), 'register', 3, NULL, NULL)$$),
  ('property value 65537 bytes', $$INSERT INTO public.hs_lim_att VALUES ('lim-bad', 'register', 4, NULL, jsonb_build_object('p', repeat('v', 65537)))$$),
  ('the issue: 20 MB properties', $$INSERT INTO public.hs_lim_att VALUES ('lim-bad', 'register', 7, NULL, jsonb_build_object('p', repeat('x', 20 * 1024 * 1024)))$$)
) AS q(what, sql), LATERAL try(q.sql) t;
SELECT count(*) AS rows_written FROM outbox WHERE source = 'public.hs_lim_att';
DROP TABLE public.hs_lim_att;

-- ---- what a DBA adds to the outbox binds the functions and the trigger as it binds an INSERT ----
CREATE TABLE public.hs_dba_att (ev text, st text, vid bigint);
CREATE TRIGGER hs_dba_att_sync AFTER INSERT ON public.hs_dba_att FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=ev', 'state=st', 'vid=vid', 'account_id:=acme');
-- a CHECK constraint: the write fails with 23514, nothing is written; other rows go in
ALTER TABLE outbox ADD CONSTRAINT dba_no_forbidden CHECK (external_event_id IS DISTINCT FROM 'dba-forbidden');
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-forbidden', 'register', 'acme', '{"vid": 1}')$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-forbidden', 'register', 1)$$);
SELECT code, message FROM try($$SELECT hubspot_enqueue_cancel_event('dba-forbidden', 'acme')$$);
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-allowed', 'register', 'acme', '{"vid": 1}')$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-allowed', 'register', 2)$$);
SELECT external_event_id, contact_key, status FROM outbox WHERE external_event_id LIKE 'dba-%' ORDER BY id;
SELECT ev, vid FROM public.hs_dba_att ORDER BY vid;
-- in one transaction, after a row that passed, it still runs on every row (it reads a column rows differ in)
BEGIN;
INSERT INTO public.hs_dba_att VALUES ('dba-allowed', 'register', 5);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-forbidden', 'register', 6)$$);
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-forbidden', 'register', 'acme', '{"vid": 6}')$$);
SELECT count(*) AS forbidden_rows FROM outbox WHERE external_event_id = 'dba-forbidden';
ROLLBACK;
-- a CHECK on the status, the same on every new row: the first row of a transaction and the next ones fail
ALTER TABLE outbox ADD CONSTRAINT dba_no_pending CHECK (status <> 'pending') NOT VALID;
BEGIN;
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-allowed', 'register', 7)$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-allowed', 'register', 8)$$);
ROLLBACK;
ALTER TABLE outbox DROP CONSTRAINT dba_no_pending;
-- dropped: the same writes go in
ALTER TABLE outbox DROP CONSTRAINT dba_no_forbidden;
SELECT array_length(hubspot_enqueue_subscriber('dba-forbidden', 'register', 'acme', '{"vid": 1}'), 1) AS enqueued;
INSERT INTO public.hs_dba_att VALUES ('dba-forbidden', 'register', 3);
SELECT external_event_id, contact_key, status FROM outbox WHERE external_event_id = 'dba-forbidden' ORDER BY id;
-- a NOT NULL column the row leaves NULL: 23502, as an INSERT
ALTER TABLE outbox ADD COLUMN dba_note text NOT NULL DEFAULT 'old rows';
ALTER TABLE outbox ALTER COLUMN dba_note DROP DEFAULT;
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-notnull', 'register', 'acme', '{"vid": 1}')$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-notnull', 'register', 1)$$);
ALTER TABLE outbox DROP COLUMN dba_note;
BEGIN;
DELETE FROM outbox;
ALTER TABLE outbox ALTER COLUMN error_subcategory SET NOT NULL;
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-notnull', 'register', 'acme', '{"vid": 1}')$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-notnull', 'register', 1)$$);
ROLLBACK;
SELECT count(*) AS not_null_rows FROM outbox WHERE external_event_id = 'dba-notnull';
-- an extra column with a default, and a changed default: the rows get them
ALTER TABLE outbox ADD COLUMN dba_tenant text DEFAULT 'tenant-1';
ALTER TABLE outbox ALTER COLUMN created_at SET DEFAULT '2000-01-01 00:00:00+00';
SELECT array_length(hubspot_enqueue_subscriber('dba-default', 'register', 'acme', '{"vid": 1}'), 1) AS enqueued;
INSERT INTO public.hs_dba_att VALUES ('dba-default', 'register', 2);
SELECT contact_key, source, dba_tenant, created_at = '2000-01-01 00:00:00+00' AS created_by_the_default FROM outbox WHERE external_event_id = 'dba-default' ORDER BY id;
ALTER TABLE outbox DROP COLUMN dba_tenant;
ALTER TABLE outbox ALTER COLUMN created_at SET DEFAULT pg_catalog.now();
-- a domain on a column: its CHECK applies (23514)
CREATE DOMAIN hs_test.dba_key AS text CHECK (VALUE IS DISTINCT FROM '666');
BEGIN;
-- (the view waiting reads contact_key: PostgreSQL changes no column type
-- a view reads, so it goes for the length of this transaction)
ALTER EXTENSION hubspot_events DROP VIEW waiting;
DROP VIEW waiting;
ALTER TABLE outbox ALTER COLUMN contact_key TYPE hs_test.dba_key;
SELECT code, message FROM try($$SELECT hubspot_enqueue_subscriber('dba-domain', 'register', 'acme', '{"vid": 666}')$$);
SELECT code, message FROM try($$INSERT INTO public.hs_dba_att VALUES ('dba-domain', 'register', 666)$$);
SELECT array_length(hubspot_enqueue_subscriber('dba-domain', 'register', 'acme', '{"vid": 665}'), 1) AS enqueued;
SELECT contact_key FROM outbox WHERE external_event_id = 'dba-domain' ORDER BY id;
ROLLBACK;
DROP DOMAIN hs_test.dba_key;
-- all reverted: the outbox is as shipped, and the writes behave as before
BEGIN;
SELECT array_length(hubspot_enqueue_subscriber('dba-after', 'register', 'acme', '{"vid": 666}'), 1) AS enqueued;
INSERT INTO public.hs_dba_att VALUES ('dba-after', 'register', 666);
SELECT external_event_id, contact_key, status, attempts, created_at = now() AS created_now, next_attempt_at = now() AS due_now
  FROM outbox WHERE external_event_id = 'dba-after' ORDER BY id;
COMMIT;
DELETE FROM outbox WHERE external_event_id LIKE 'dba-%';
DROP TABLE public.hs_dba_att;

-- intake_at_place(): whether an intake row is the one given with its place
-- (the worker's claims read the places in one TID scan and keep such rows)
SELECT hubspot_events.intake_at_place('(0,1)', 10, '{"(0,1)","(0,2)"}', '{10,20}') AS same_row,
       hubspot_events.intake_at_place('(0,2)', 10, '{"(0,1)","(0,2)"}', '{10,20}') AS another_row,
       hubspot_events.intake_at_place('(0,3)', 30, '{"(0,1)","(0,2)"}', '{10,20}') AS not_given,
       hubspot_events.intake_at_place('(0,1)', 10, '{"(0,1)","(0,1)"}', '{10,11}') AS given_twice,
       hubspot_events.intake_at_place('(0,1)', 10, '{"(0,1)",NULL}', '{10,NULL}') AS with_nulls;
-- arrays that differ from row to row are read at each call (never a stale hash)
SELECT v.t, v.i, hubspot_events.intake_at_place(v.t, v.i, ARRAY[v.t], ARRAY[v.a]) AS at_place
  FROM (VALUES ('(0,1)'::tid, 1::bigint, 1::bigint), ('(0,1)', 3, 3), ('(0,1)', 4, 5)) v(t, i, a);
-- the same arrays for every row of a statement (a parameter, as in the claims)
PREPARE at_place(tid[], bigint[]) AS
  SELECT v.t, hubspot_events.intake_at_place(v.t, v.i, $1, $2) AS at_place
    FROM (VALUES ('(0,1)'::tid, 1::bigint), ('(0,2)', 2), ('(0,2)', 3), ('(0,4)', 4)) v(t, i);
EXECUTE at_place('{"(0,1)","(0,2)","(0,4)"}', '{1,2,5}');
EXECUTE at_place('{"(0,4)"}', '{4}');
DEALLOCATE at_place;
SELECT hubspot_events.intake_at_place('(0,1)', 1, '{"(0,1)"}', '{1,2}');
SELECT hubspot_events.intake_at_place('(0,1)', 1, '{{"(0,1)"}}', '{{1}}');
