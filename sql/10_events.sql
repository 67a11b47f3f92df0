--
-- 10_events: the marketing events themselves: upsert, cancel and complete,
-- now and through the outbox; the sync_event trigger; and the order in which
-- the worker's claim takes an event and its subscriber states.
--
SET search_path = hubspot_events, hs_test, public;
SET TimeZone = 'UTC';

-- ---- hubspot_upsert_event: what HubSpot receives ----
SELECT mock_mark() AS mark \gset
SELECT r->'http_status' AS http_status, r->'requests' AS requests
  FROM hubspot_upsert_event('webinar-ev1', 'acme',
        '{"eventName": "Spring webinar", "eventOrganizer": "Acme", "eventType": "WEBINAR",
          "eventDescription": "Forty minutes on outboxes", "eventUrl": "https://acme.example/spring",
          "startDateTime": "2026-03-01 17:00:00+01", "endDateTime": 1772387400000,
          "eventCancelled": false,
          "customProperties": {"room": "A", "seats": 40, "dropped": null}}') r;
SELECT r->>'method' AS method, r->>'operation' AS operation, r->>'raw_path' AS raw_path,
       r->'spec_errors' AS spec_errors, r->>'status' AS status
  FROM mock_since(:mark) r;
-- the body: the spec's MarketingEventCreateRequestParams, times in UTC ISO 8601
SELECT jsonb_pretty((r->'body'->'inputs'->0) - 'customProperties') AS event
  FROM mock_since(:mark) r;
-- custom properties: name and value, and the fields the spec's PropertyValue requires
SELECT p->>'name' AS name, p->>'value' AS value, p->>'source' AS source,
       p->>'dataSensitivity' AS sensitivity, p->'maskedSubstrings' AS masked,
       (SELECT count(*) FROM jsonb_object_keys(p)) AS nfields
  FROM mock_since(:mark) r, jsonb_array_elements(r->'body'->'inputs'->0->'customProperties') p;

-- an array of {name, value} works too; no properties send []
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_event('webinar-ev2', 'acme',
        '{"eventName": "B", "eventOrganizer": "Acme", "customProperties": [{"name": "room", "value": "B"}]}')->'http_status' AS http_status;
SELECT hubspot_upsert_event('webinar-ev3', 'acme', '{"eventName": "C", "eventOrganizer": "Acme"}')->'http_status' AS http_status;
SELECT r->'body'->'inputs'->0->'customProperties'->0->>'value' AS first_value,
       jsonb_array_length(r->'body'->'inputs'->0->'customProperties') AS nprops, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- ---- cancel and complete ----
SELECT mock_mark() AS mark \gset
SELECT hubspot_cancel_event('webinar-ev1', 'acme')->'http_status' AS cancel_status;
SELECT hubspot_complete_event('webinar-ev2', 'acme', '2026-03-01 17:00+00', '2026-03-01 18:00+00')->'http_status' AS complete_status;
SELECT r->>'operation' AS operation, r->>'raw_path' AS raw_path, r->'query' AS query,
       r->'body' AS body, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- ---- bad input: a clear ERROR, nothing sent ----
SELECT mock_mark() AS mark \gset
SELECT t.* FROM (VALUES
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventOrganizer": "Acme"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "", "eventOrganizer": "Acme"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "eventname": "x"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": 5, "eventOrganizer": "Acme"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "startDateTime": "yesterday-ish"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "startDateTime": "2026-03-02", "endDateTime": "2026-03-01"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "eventUrl": "javascript:alert(1)"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "eventCancelled": "yes"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "customProperties": {"room": [1]}}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "customProperties": [{"name": "room"}]}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "externalEventId": "other"}')$$),
  ($$SELECT hubspot_upsert_event('e', 'acme', '[]')$$),
  ($$SELECT hubspot_upsert_event('', 'acme', '{"eventName": "A", "eventOrganizer": "Acme"}')$$),
  ($$SELECT hubspot_upsert_event('e', NULL, '{"eventName": "A", "eventOrganizer": "Acme"}')$$),
  ($$SELECT hubspot_complete_event('e', 'acme', '2026-03-02', '2026-03-01')$$),
  ($$SELECT hubspot_complete_event('e', 'acme', '-infinity', '2026-03-01')$$),
  ($$SELECT hubspot_cancel_event('e', NULL)$$)
) AS q(sql), LATERAL try(q.sql) t;
SELECT count(*) AS requests_sent FROM mock_since(:mark);

-- ---- HubSpot's error answer for an event call ----
SELECT code, message FROM try($$SELECT hubspot_cancel_event('mock:status=404', 'acme')$$);

-- ---- through the outbox ----
DELETE FROM outbox;
BEGIN;
SELECT hubspot_enqueue_event('webinar-ev4', 'acme', '{"eventName": "D", "eventOrganizer": "Acme"}') > 0 AS enqueued;
SELECT array_length(hubspot_enqueue_subscriber('webinar-ev4', 'register', 'acme', '[{"vid": 1}, {"vid": 2}]'), 1) AS subscribers;
SELECT hubspot_enqueue_subscriber('webinar-other', 'register', 'acme', '{"vid": 3}') IS NOT NULL AS other_event;
SELECT hubspot_enqueue_complete_event('webinar-ev4', 'acme', '2026-03-01 17:00+00', '2026-03-01 18:00+00') > 0 AS complete_enqueued;
SELECT hubspot_enqueue_cancel_event('webinar-ev4', 'acme') > 0 AS cancel_enqueued;
COMMIT;
SELECT kind, external_event_id, subscriber_state, contact_key, contact IS NULL AS no_contact,
       event - 'customProperties' AS event, source, status
  FROM outbox ORDER BY id;
-- the claim: the event's upsert first (its rows are in outbox_rows:
-- claim_due); its subscriber states (in the intake: claim_intake, given
-- the rows the worker keeps) wait for it, another event's do not; the
-- complete and the cancel wait their turn
SELECT tableoid::regclass AS partition, kind, count(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2;
SELECT kind, external_event_id, contact::jsonb->'vid' AS vid FROM claim_due(100, 'default') ORDER BY id;
SELECT kind, external_event_id, contact::jsonb->'vid' AS vid
  FROM claim_intake((SELECT array_agg(ctid) FROM ONLY outbox_intake), (SELECT array_agg(id) FROM ONLY outbox_intake), 'default')
 ORDER BY id;
SELECT count(*) AS claimed_again FROM claim_due(100, 'default');
SELECT count(*) AS claimed_again
  FROM claim_intake((SELECT array_agg(ctid) FROM ONLY outbox_intake), (SELECT array_agg(id) FROM ONLY outbox_intake), 'default');
-- once the upsert is sent, the complete is due, then the subscribers: a
-- row of their event in flight holds them back (the worker claims the rows
-- of outbox_rows first, those of the intake after)
UPDATE outbox SET status = 'sent', sent_at = now() WHERE kind = 'event_upsert';
SELECT kind, external_event_id, contact::jsonb->'vid' AS vid, event IS NOT NULL AS has_body FROM claim_due(100, 'default') ORDER BY id;
SELECT kind, external_event_id, contact::jsonb->'vid' AS vid, event IS NOT NULL AS has_body
  FROM claim_intake((SELECT array_agg(ctid) FROM ONLY outbox_intake), (SELECT array_agg(id) FROM ONLY outbox_intake), 'default')
 ORDER BY id;
SELECT tableoid::regclass AS partition, status, count(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2;
UPDATE outbox SET status = 'sent', sent_at = now() WHERE status = 'sending';
SELECT kind, external_event_id, contact::jsonb->'vid' AS vid
  FROM claim_intake((SELECT array_agg(ctid) FROM ONLY outbox_intake), (SELECT array_agg(id) FROM ONLY outbox_intake), 'default')
 ORDER BY id;
SELECT kind FROM claim_due(100, 'default');
DELETE FROM outbox;

-- rows in flight: a contact's newer row waits while its older row is
-- sending; identities are compared exactly (these two join to the same text
-- 'x y acme 1'), and a row with a missing part is not held by them
INSERT INTO outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, source) VALUES
  ('x y', 'register', 'acme', '{"vid": 1}', '1', 'sending', 'test'),
  (NULL, 'register', NULL, NULL, NULL, 'sending', 'test'),
  ('x y', 'attend', 'acme', '{"vid": 1}', '1', 'pending', 'test'),
  ('x', 'attend', 'y acme', '{"vid": 1}', '1', 'pending', 'test'),
  ('z', 'attend', 'acme', NULL, NULL, 'pending', 'test');
SELECT external_event_id, external_account_id, subscriber_state FROM claim_due(100, 'default') ORDER BY id;
-- once the older row is sent, the newer one is due
UPDATE outbox SET status = 'sent', sent_at = now() WHERE status = 'sending';
SELECT external_event_id, external_account_id, subscriber_state FROM claim_due(100, 'default') ORDER BY id;
DELETE FROM outbox;

-- the claim's plan: one ordered scan of the due rows' index, and one probe
-- of the pending rows' hash index per candidate, even when the due index's
-- statistics say it is empty (vacuumed while nothing was pending)
VACUUM outbox;
INSERT INTO outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, source)
SELECT 'webinar-plan', 'attend', 'acme', jsonb_build_object('vid', v), v::text, 'test' FROM generate_series(1, 500) v;
SELECT pg_stat_force_next_flush();
SELECT sum(idx_scan) FILTER (WHERE indexrelname = 'outbox_due') AS due0,
       sum(idx_scan) FILTER (WHERE indexrelname = 'outbox_pending_contact') AS contact0
  FROM pg_stat_user_indexes WHERE schemaname = 'hubspot_events' \gset
BEGIN;
SELECT count(*) AS claimed FROM claim_due(400, 'default');
ROLLBACK;
SELECT pg_stat_force_next_flush();
SELECT sum(idx_scan) FILTER (WHERE indexrelname = 'outbox_due') - :due0 AS due_index_scans,
       sum(idx_scan) FILTER (WHERE indexrelname = 'outbox_pending_contact') - :contact0 >= 400 AS a_contact_probe_per_row
  FROM pg_stat_user_indexes WHERE schemaname = 'hubspot_events';
DELETE FROM outbox;

-- a rolled-back event sends nothing
BEGIN;
SELECT hubspot_enqueue_event('webinar-ev5', 'acme', '{"eventName": "E", "eventOrganizer": "Acme"}') > 0 AS enqueued;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM outbox;

-- ---- the sync_event trigger ----
CREATE TABLE public.webinars (
  id text PRIMARY KEY, title text, host text, starts timestamptz, ends timestamp,
  done boolean, link text, props jsonb, kind text);
CREATE TRIGGER webinars_sync AFTER INSERT OR UPDATE OR DELETE ON public.webinars
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_event(
    'event_id=id', 'account_id:=acme', 'name=title', 'organizer=host', 'start=starts', 'end=ends',
    'completed=done', 'url=link', 'properties=props', 'type:=WEBINAR', 'on_delete=cancel');
INSERT INTO public.webinars VALUES
  ('w1', 'Spring', 'Acme', '2026-03-01 17:00+00', '2026-03-01 18:00', false, NULL, '{"room": "A"}', 'x'),
  ('w2', 'Bad', 'Acme', '2026-03-01 17:00+00', NULL, NULL, 'ftp://nope', NULL, 'x'),
  ('w3', NULL, 'Acme', NULL, NULL, NULL, NULL, NULL, 'x');
UPDATE public.webinars SET kind = 'y';                 -- no mapped column changed: nothing
UPDATE public.webinars SET title = 'Spring 2' WHERE id = 'w1';
UPDATE public.webinars SET id = 'w1b' WHERE id = 'w1'; -- a new event: cancel the old, upsert the new
DELETE FROM public.webinars WHERE id = 'w1b';
SELECT id > 0 AS has_id, kind, external_event_id, external_account_id, status, error_category, error_message,
       event->>'eventName' AS name, event->>'eventType' AS type, event->>'startDateTime' AS start,
       event->>'endDateTime' AS "end", event->'eventCompleted' AS completed,
       event->'customProperties'->0->>'value' AS room, source
  FROM outbox ORDER BY id;
DELETE FROM outbox;

-- misconfigured triggers: a clear ERROR naming the table and the argument
CREATE TABLE public.webinars_bad (id text, title text);
CREATE TRIGGER t1 AFTER INSERT ON public.webinars_bad FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title');
SELECT code, message, hint FROM try($$INSERT INTO public.webinars_bad VALUES ('a', 'b')$$);
DROP TRIGGER t1 ON public.webinars_bad;
CREATE TRIGGER t2 AFTER INSERT ON public.webinars_bad FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer=nosuch');
SELECT code, message FROM try($$INSERT INTO public.webinars_bad VALUES ('a', 'b')$$);
DROP TRIGGER t2 ON public.webinars_bad;
CREATE TRIGGER t3 AFTER INSERT ON public.webinars_bad FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme', 'colour=title');
SELECT code, message FROM try($$INSERT INTO public.webinars_bad VALUES ('a', 'b')$$);
DROP TRIGGER t3 ON public.webinars_bad;
CREATE TRIGGER t4 AFTER INSERT ON public.webinars_bad FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme', 'on_invalid=error');
SELECT code, message FROM try($$INSERT INTO public.webinars_bad VALUES ('a', '')$$);
SELECT count(*) AS outbox_rows FROM outbox;
DROP TABLE public.webinars, public.webinars_bad;

-- a constant crafted to add fields to the event is one JSON value or nothing
CREATE TABLE public.webinars_inj (id text, title text);
CREATE TRIGGER t_inj AFTER INSERT ON public.webinars_inj FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme',
    'properties:={"room": "A"}, "eventName": "evil", "x": {"y": 1}');
SELECT code, message FROM try($$INSERT INTO public.webinars_inj VALUES ('w-inj', 'Good')$$);
DROP TRIGGER t_inj ON public.webinars_inj;
CREATE TRIGGER t_inj AFTER INSERT ON public.webinars_inj FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme''s "team"',
    'properties:={"room": "A\"}, \"eventName\": \"evil"}');
INSERT INTO public.webinars_inj VALUES ('w-inj', 'Good'' OR 1=1; --');
SELECT event->>'eventName' AS name, event->>'eventOrganizer' AS organizer,
       event->'customProperties'->0->>'name' AS prop, event->'customProperties'->0->>'value' AS value,
       jsonb_array_length(event->'customProperties') AS nprops
  FROM outbox WHERE external_event_id = 'w-inj';
DELETE FROM outbox;
DROP TABLE public.webinars_inj;

-- the outbox written directly can still be truncated or altered later in
-- the same transaction, and written again after that
BEGIN;
SELECT hubspot_enqueue_event('webinar-ddl', 'acme', '{"eventName": "T", "eventOrganizer": "Acme"}') > 0 AS enqueued;
TRUNCATE outbox;
SELECT hubspot_enqueue_event('webinar-ddl', 'acme', '{"eventName": "T", "eventOrganizer": "Acme"}') > 0 AS enqueued_again;
ALTER TABLE outbox ADD COLUMN scratch int;
SELECT array_length(hubspot_enqueue_subscriber('webinar-ddl', 'register', 'acme', '{"vid": 9}'), 1) AS enqueued_after_alter;
SELECT kind, external_event_id, status, scratch FROM outbox ORDER BY id;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM outbox WHERE external_event_id = 'webinar-ddl';

-- subtransactions: rows written directly in a rolled-back savepoint or
-- exception block are gone; the rows before and after stay
DELETE FROM outbox;
BEGIN;
SELECT array_length(hubspot_enqueue_subscriber('webinar-sp', 'register', 'acme', '{"vid": 1}'), 1) AS a;
SAVEPOINT s;
SELECT array_length(hubspot_enqueue_subscriber('webinar-sp', 'register', 'acme', '{"vid": 2}'), 1) AS b;
ROLLBACK TO SAVEPOINT s;
SELECT array_length(hubspot_enqueue_subscriber('webinar-sp', 'register', 'acme', '{"vid": 3}'), 1) AS c;
DO $$
BEGIN
  PERFORM hubspot_events.hubspot_enqueue_subscriber('webinar-sp', 'register', 'acme', '{"vid": 4}');
  RAISE EXCEPTION 'undo vid 4';
EXCEPTION WHEN raise_exception THEN
  PERFORM hubspot_events.hubspot_enqueue_subscriber('webinar-sp', 'register', 'acme', '{"vid": 5}');
END $$;
COMMIT;
SELECT string_agg(contact_key, ',' ORDER BY id) AS committed FROM outbox WHERE external_event_id = 'webinar-sp';
DELETE FROM outbox;

-- ---- input limits (src/hubspot_events.h): one byte over is refused at the
-- call (22023 for a field, 54000 for the whole event), nothing is sent or
-- written; at each limit the event goes out whole ----
SELECT mock_mark() AS mark \gset
SELECT count(*) AS rows_before FROM outbox \gset
SELECT q.what, t.code, t.message FROM (VALUES
  ('event id 1001 bytes', $$SELECT hubspot_upsert_event(repeat('e', 1001), 'acme', '{"eventName": "A", "eventOrganizer": "Acme"}')$$),
  ('account id 1001 bytes', $$SELECT hubspot_upsert_event('e', repeat('a', 1001), '{"eventName": "A", "eventOrganizer": "Acme"}')$$),
  ('cancel: event id', $$SELECT hubspot_cancel_event(repeat('e', 1001), 'acme')$$),
  ('complete: account id', $$SELECT hubspot_complete_event('e', repeat('a', 1001), '2026-03-01', '2026-03-02')$$),
  ('enqueue cancel: event id', $$SELECT hubspot_enqueue_cancel_event(repeat('e', 1001), 'acme')$$),
  ('enqueue complete: event id', $$SELECT hubspot_enqueue_complete_event(repeat('e', 1001), 'acme', '2026-03-01', '2026-03-02')$$),
  ('eventName 1001 bytes', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', repeat('n', 1001), 'eventOrganizer', 'Acme'))$$),
  ('eventOrganizer 1001 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', repeat('o', 1001)))$$),
  ('eventType 1001 bytes', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'eventType', repeat('t', 1001)))$$),
  ('eventDescription 65537 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'eventDescription', repeat('d', 65537)))$$),
  ('eventUrl 2049 bytes', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'eventUrl', 'https://' || repeat('u', 2041)))$$),
  ('externalEventId 1001 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'externalEventId', repeat('e', 1001)))$$),
  ('custom property name 257 bytes', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_object(repeat('p', 257), 'x')))$$),
  ('custom property value 65537 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_object('room', repeat('v', 65537))))$$),
  ('custom number of 65537 digits', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_object('seats', ('1' || repeat('0', 65536))::numeric)))$$),
  ('array form: name 257 bytes', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_array(jsonb_build_object('name', repeat('p', 257), 'value', 'x'))))$$),
  ('array form: value 65537 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_array('{"name": "a", "value": "b"}'::jsonb, jsonb_build_object('name', 'room', 'value', repeat('v', 65537)))))$$),
  ('1001 custom properties', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', (SELECT jsonb_object_agg('p' || g, NULL) FROM generate_series(1, 1001) g)))$$),
  ('1001 custom properties, array form', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', (SELECT jsonb_agg(jsonb_build_object('name', 'p' || g, 'value', g)) FROM generate_series(1, 1001) g)))$$),
  ('event far too large', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', (SELECT jsonb_object_agg('p' || g, repeat('x', 65536)) FROM generate_series(1, 20) g)))$$),
  ('event argument over 16 MB', $$SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'zpad', repeat('x', 16 * 1024 * 1024)))$$),
  ('the issue: 8 MB event id', $$SELECT hubspot_enqueue_event(repeat('e', 8 * 1024 * 1024), 'acme', '{"eventName": "A", "eventOrganizer": "Acme"}')$$),
  ('the issue: 20 MB custom properties', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties', jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))))$$),
  ('8 MB unknown key: echoed 64 bytes', $$SELECT hubspot_enqueue_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', repeat('k', 8 * 1024 * 1024), 1))$$)
) AS q(what, sql), LATERAL try(q.sql) t;
SELECT count(*) AS requests_sent FROM mock_since(:mark);
SELECT count(*) - :rows_before AS rows_written FROM outbox;

-- every field at its limit: accepted, and HubSpot receives it whole
SELECT hubspot_upsert_event(repeat('e', 1000), repeat('a', 1000), jsonb_build_object(
  'eventName', repeat('n', 1000), 'eventOrganizer', repeat('o', 1000), 'eventType', repeat('t', 1000),
  'eventDescription', repeat('d', 65536), 'eventUrl', 'https://' || repeat('u', 2040),
  'customProperties', jsonb_build_object(repeat('p', 256), repeat('v', 65536))))->'http_status' AS every_field_at_its_limit;
SELECT hubspot_upsert_event('e', 'acme', jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme',
  'customProperties', (SELECT jsonb_agg(jsonb_build_object('name', 'p' || g, 'value', g)) FROM generate_series(1, 1000) g)))->'http_status' AS custom_properties_1000;
SELECT (r->>'seq')::int - :mark AS request, r->>'operation' AS operation, r->'spec_errors' AS spec_errors,
       (SELECT string_agg(k || ':' || octet_length(v), ' ' ORDER BY k)
          FROM jsonb_each_text(r->'body'->'inputs'->0) e(k, v) WHERE k <> 'customProperties') AS field_bytes,
       jsonb_array_length(r->'body'->'inputs'->0->'customProperties') AS nprops,
       octet_length(r->'body'->'inputs'->0->'customProperties'->0->>'name') AS prop_name_bytes,
       (SELECT max(octet_length(p->>'value')) FROM jsonb_array_elements(r->'body'->'inputs'->0->'customProperties') p) AS max_prop_value_bytes
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- the whole event: 1048576 bytes of compact JSON as built is written, one
-- byte more is refused with its size (the size of a probe with an empty pad
-- gives the pad that reaches the limit exactly)
CREATE FUNCTION hs_test.lim_event(pad int) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('eventName', 'A', 'eventOrganizer', 'Acme', 'customProperties',
           (SELECT jsonb_object_agg('p' || g, repeat('x', 65536)) FROM generate_series(10, 24) g)
           || jsonb_build_object('pad', repeat('x', pad)))
$$;
CREATE FUNCTION hs_test.compact_len(j jsonb) RETURNS int LANGUAGE sql AS $$
  SELECT octet_length(replace(replace(j::text, ': ', ':'), ', ', ','))
$$;
BEGIN;
SELECT hubspot_enqueue_event('lim-ev', 'acme', lim_event(0)) AS probe \gset
SELECT 1048576 - compact_len(event) AS pad FROM outbox WHERE id = :probe \gset
ROLLBACK;
SELECT :pad BETWEEN 0 AND 65536 AS pad_within_a_value;
SELECT hubspot_enqueue_event('lim-ev', 'acme', lim_event(:pad)) > 0 AS at_the_limit_enqueued;
SELECT compact_len(event) AS event_json_bytes, status FROM outbox WHERE external_event_id = 'lim-ev';
SELECT code, message, hint FROM try(format('SELECT hubspot_enqueue_event(%L, %L, hs_test.lim_event(%s))', 'lim-ev', 'acme', :pad + 1));
SELECT count(*) AS rows_for_lim_ev FROM outbox WHERE external_event_id = 'lim-ev';
DELETE FROM outbox WHERE external_event_id = 'lim-ev';

-- the sync_event trigger checks with the same validator: an over-long value
-- is a failed sync, or with on_invalid=error an ERROR
CREATE TABLE public.webinars_lim (id text, title text, descr text, link text, props jsonb);
CREATE TRIGGER webinars_lim_sync AFTER INSERT ON public.webinars_lim FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme',
    'description=descr', 'url=link', 'properties=props');
INSERT INTO public.webinars_lim VALUES
  (repeat('e', 1000), repeat('n', 1000), repeat('d', 65536), 'https://' || repeat('u', 2040), jsonb_build_object(repeat('p', 256), repeat('v', 65536))),
  (repeat('e', 1001), 'A', NULL, NULL, NULL),
  ('lim-t1', repeat('n', 1001), NULL, NULL, NULL),
  ('lim-t2', 'A', repeat('d', 65537), NULL, NULL),
  ('lim-t3', 'A', NULL, 'https://' || repeat('u', 2041), NULL),
  ('lim-t4', 'A', NULL, NULL, jsonb_build_object('room', repeat('v', 65537))),
  ('lim-t5', 'A', NULL, NULL, (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 1001) g)),
  ('lim-t6', 'A', NULL, NULL, lim_event(65536)->'customProperties'),
  ('lim-t7', 'A', NULL, NULL, jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))),
  (repeat('e', 8 * 1024 * 1024), 'A', NULL, NULL, NULL);
SELECT left(external_event_id, 8) AS event, octet_length(external_event_id) AS event_id_bytes, status,
       error_category, error_message
  FROM outbox WHERE source = 'public.webinars_lim' ORDER BY id;
DELETE FROM outbox WHERE source = 'public.webinars_lim';
DROP TRIGGER webinars_lim_sync ON public.webinars_lim;
CREATE TRIGGER webinars_lim_sync AFTER INSERT ON public.webinars_lim FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title', 'organizer:=Acme',
    'description=descr', 'url=link', 'properties=props', 'on_invalid=error');
SELECT q.what, t.code, t.message FROM (VALUES
  ('event id 1001 bytes', $$INSERT INTO public.webinars_lim VALUES (repeat('e', 1001), 'A', NULL, NULL, NULL)$$),
  ('eventDescription 65537 bytes', $$INSERT INTO public.webinars_lim VALUES ('lim-t2', 'A', repeat('d', 65537), NULL, NULL)$$),
  ('the issue: 20 MB custom properties', $$INSERT INTO public.webinars_lim VALUES ('lim-t7', 'A', NULL, NULL, jsonb_build_object('p', repeat('x', 20 * 1024 * 1024)))$$)
) AS q(what, sql), LATERAL try(q.sql) t;
SELECT count(*) AS rows_written FROM outbox WHERE source = 'public.webinars_lim';
DROP TABLE public.webinars_lim;
DROP FUNCTION hs_test.lim_event(int), hs_test.compact_len(jsonb);
