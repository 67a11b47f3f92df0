--
-- 11_endpoints: contacts given by email (email-upsert), joinedAt/leftAt,
-- and hubspot_events.endpoint = attendance (create, email-create) with its
-- per-contact errors.
--
SET search_path = hubspot_events, hs_test, public;
SET TimeZone = 'UTC';

-- ---- contacts by email: the email-upsert endpoint ----
SELECT mock_mark() AS mark \gset
SELECT r->'http_status' AS http_status, r->'requests' AS requests, r->'contacts' AS contacts
  FROM hubspot_upsert_subscriber('webinar-em1', 'register', 'acme',
        '[{"email": "Ada@Example.com", "interactionDateTime": 1767225600000,
           "properties": {"source": "form"}, "contactProperties": {"firstname": "Ada"}},
          {"email": "bob@example.org", "interactionDateTime": 1767225600001}]') r;
SELECT r->>'operation' AS operation, r->>'raw_path' AS raw_path, r->'spec_errors' AS spec_errors,
       jsonb_pretty(r->'body') AS body
  FROM mock_since(:mark) r;

-- vids and emails in one call: never mixed in one request, sent in order
SELECT mock_mark() AS mark \gset
SELECT r->'requests' AS requests
  FROM hubspot_upsert_subscriber('webinar-em2', 'attend', 'acme',
        '[{"vid": 1}, {"vid": 2}, {"email": "c@example.com"}, {"vid": 3}]') r;
SELECT r->>'raw_path' AS raw_path, jsonb_array_length(r->'body'->'inputs') AS n, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- joinedAt / leftAt: timestamps, sent as UTC ISO 8601
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-em3', 'attend', 'acme',
        '{"vid": 4, "properties": {"joinedAt": "2026-03-01 17:05:00+00", "leftAt": 1772388000000}}')->'http_status' AS http_status;
SELECT r->'body'->'inputs'->0->'properties' AS properties FROM mock_since(:mark) r;

-- ---- bad input ----
SELECT mock_mark() AS mark \gset
SELECT t.code, t.message, t.hint FROM (VALUES
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "email": "a@example.com"}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"properties": {}}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "contactProperties": {"firstname": "A"}}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"email": "not an email"}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"email": "a@b@c"}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"email": 5}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"email": "a@example.com", "contactProperties": {"age": [1]}}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'attend', 'acme', '{"vid": 1, "properties": {"joinedAt": "soon"}}')$$),
  ($$SELECT hubspot_upsert_subscriber('e', 'attend', 'acme', '{"vid": 1, "properties": {"joinedAt": "2026-03-01 18:00+00", "leftAt": "2026-03-01 17:00+00"}}')$$)
) AS q(sql), LATERAL try(q.sql) t;
SELECT count(*) AS requests_sent FROM mock_since(:mark);

-- ---- enqueue by email: the key is the email in lower case ----
DELETE FROM outbox;
SELECT array_length(hubspot_enqueue_subscriber('webinar-em4', 'register', 'acme',
         '[{"email": "Ada@Example.com"}, {"vid": 7}]'), 1) AS enqueued;
SELECT contact_key, contact->>'email' AS email, contact->'contactProperties' AS contact_properties
  FROM outbox ORDER BY id;
DELETE FROM outbox;

-- ---- the attendance endpoints ----
SET hubspot_events.endpoint = 'attendance';
SELECT mock_mark() AS mark \gset
SELECT r->'http_status' AS http_status, r->'body'->'numErrors' AS num_errors, r->'body'->'results' AS results
  FROM hubspot_upsert_subscriber('webinar-at1', 'attend', 'acme',
        '[{"vid": 11, "properties": {"joinedAt": "2026-03-01T17:00:00Z"}}, {"vid": 12}]') r;
-- (the vid is HubSpot's, here the mock's: a number, whatever it is)
SELECT r->'http_status' AS http_status, r->'body'->'results'->0->>'email' AS email,
       jsonb_typeof(r->'body'->'results'->0->'vid') AS vid
  FROM hubspot_upsert_subscriber('webinar-at1', 'register', 'acme', '{"email": "d@example.com"}') r;
SELECT r->>'operation' AS operation, r->>'raw_path' AS raw_path, r->'query' AS query, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;
-- numErrors > 0: an ERROR naming HubSpot's error and how far the call got
SELECT code, message, detail FROM try($$
  SELECT hubspot_upsert_subscriber('mock:bad_vids=12', 'attend', 'acme', '[{"vid": 11}, {"vid": 12}]')$$);
SELECT code, message, detail FROM try($$
  SELECT hubspot_upsert_subscriber('mock:batch_error=1', 'register', 'acme', '{"email": "e@example.com"}')$$);
RESET hubspot_events.endpoint;
SELECT code, message FROM try($$SET hubspot_events.endpoint = 'sideways'$$);

-- ---- the attendance trigger with email=<col> ----
DELETE FROM outbox;
CREATE TABLE public.att_email (event text, state text, email text, note text);
CREATE TRIGGER att_email_sync AFTER INSERT OR UPDATE OR DELETE ON public.att_email FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=event', 'state=state', 'email=email',
                                                  'account_id:=acme', 'on_delete=cancel');
INSERT INTO public.att_email VALUES ('webinar-tr1', 'register', 'Eve@Example.com', 'a'),
                                    ('webinar-tr1', 'register', 'not-an-email', 'b'),
                                    ('webinar-tr1', 'register', NULL, 'c');
UPDATE public.att_email SET note = 'z';                     -- no mapped column changed
UPDATE public.att_email SET email = 'eve@example.org' WHERE note = 'z' AND email = 'Eve@Example.com';
SELECT subscriber_state, contact_key, contact->>'email' AS email, status, error_message
  FROM outbox ORDER BY id;
-- vid and email together, or neither: a misconfigured trigger
CREATE TABLE public.att_both (event text, state text, email text, vid bigint);
CREATE TRIGGER t_both AFTER INSERT ON public.att_both FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=event', 'state=state', 'email=email', 'vid=vid', 'account_id:=acme');
SELECT code, message FROM try($$INSERT INTO public.att_both VALUES ('e', 'register', 'a@example.com', 1)$$);
DROP TRIGGER t_both ON public.att_both;
CREATE TRIGGER t_none AFTER INSERT ON public.att_both FOR EACH ROW
  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=event', 'state=state', 'account_id:=acme');
SELECT code, message, hint FROM try($$INSERT INTO public.att_both VALUES ('e', 'register', 'a@example.com', 1)$$);
DROP TABLE public.att_email, public.att_both;
DELETE FROM outbox;
