--
-- 02_validation: every input rule of hubspot_upsert_subscriber.  Each bad
-- input is an ERROR with SQLSTATE 22023 (22004 for NULLs) naming what is
-- wrong, and nothing reaches HubSpot.
--
SET search_path = hubspot_events, hs_test, public;
SELECT mock_mark() AS mark \gset

-- NULL arguments name the argument
SELECT * FROM try($$SELECT hubspot_upsert_subscriber(NULL, 'register', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', NULL, 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', NULL, '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', NULL)$$);

-- subscriber_state
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'maybe', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', '', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'NO_SHOW', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', ' register', 'acme', '{"vid": 1}')$$);

-- external ids: non-empty, no control characters
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('', 'register', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', '', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber(E'e\n1', 'register', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', E'ac\tme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', E'acme\x7f', '{"vid": 1}')$$);

-- contacts: an array of objects, or one object; not empty
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '42')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '"x"')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', 'null')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, 2]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, [{"vid": 2}]]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, null]')$$);

-- vid: a positive integer within int64, or a string of digits
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, {}]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": null}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 0}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": -5}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1.5}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 9223372036854775808}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": "abc"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": "12a"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": " 12"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": "-12"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": "1.0"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": ""}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": true}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": [1]}')$$);

-- interactionDateTime: epoch milliseconds or a timestamp string
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": -1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": 1.5}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": "yesterday-ish"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": "2026-02-30 10:00"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": "infinity"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": "1960-01-01"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": true}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "interactionDateTime": {}}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": 2, "interactionDateTime": "2026-03-01 10:00 Mars/Olympus"}]')$$);

-- numbers past 64 bits never wrap to another value (2^64 + 1 would become 1):
-- out of range is an error naming the field and the contact, on every field
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 20000000000000000000}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": 18446744073709551617}]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": "18446744073709551617"}]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 18446744073709551617.000}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 9223372036854775807, "interactionDateTime": 18446744073709551617}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": {"joinedAt": 18446744073709551617}}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": {"joinedAt": 1, "leftAt": 18446744073709551716}}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "startDateTime": 18446744073709551617}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_event('e', 'acme', '{"eventName": "A", "eventOrganizer": "Acme", "endDateTime": 20000000000000000000}')$$);

-- properties: an object of scalars
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": []}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": "x"}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": {"a": {"b": 1}}}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": {"a": [1]}}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "properties": {"": "x"}}')$$);

-- unknown keys are errors, not silently dropped; the index names the contact
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '[{"vid": 1}, {"vid": 2}, {"vId": 3}]')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1, "email": "a@b.c"}')$$);

-- one bad contact among many: nothing at all is sent
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme',
  (SELECT jsonb_agg(jsonb_build_object('vid', CASE WHEN v = 150 THEN to_jsonb('x'::text) ELSE to_jsonb(v) END)) FROM generate_series(1, 300) v))$$);

-- none of the above reached the mock
SELECT count(*) AS requests_sent FROM mock_since(:mark);

-- "." and ".." would be dot segments of the URL path: refused
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('..', 'register', 'acme', '{"vid": 1}')$$);
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', '.', '{"vid": 1}')$$);
-- a long value in a message is cut at a character boundary (the message stays valid UTF-8)
SELECT code, convert_to(message, 'UTF8') IS NOT NULL AS valid_text, right(message, 8) AS tail
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', ('{"vid": "x' || repeat('é', 40) || '"}')::jsonb)$$);

-- ---- input limits (src/hubspot_events.h): one byte over each is refused at
-- the call, 22023 for a value, 54000 for the whole; nothing is sent ----
SELECT mock_mark() AS mark \gset
SELECT q.what, t.code, t.message, t.hint FROM (VALUES
  ('event id 1001 bytes', $$SELECT hubspot_upsert_subscriber(repeat('e', 1001), 'register', 'acme', '{"vid": 1}')$$),
  ('account id 1001 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', repeat('a', 1001), '{"vid": 1}')$$),
  ('bytes, not characters: 501 x é', $$SELECT hubspot_upsert_subscriber(repeat('é', 501), 'register', 'acme', '{"vid": 1}')$$),
  ('email 255 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('email', repeat('a', 243) || '@example.com'))$$),
  ('property name 257 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object(repeat('p', 257), 'x')))$$),
  ('property value 65537 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('v', 65537))))$$),
  ('number of 65537 digits', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', ('1' || repeat('0', 65536))::numeric)))$$),
  ('contactProperties value', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_array('{"vid": 1}'::jsonb, jsonb_build_object('email', 'a@b.c', 'contactProperties', jsonb_build_object('firstname', repeat('v', 65537)))))$$),
  ('1001 properties', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', (SELECT jsonb_object_agg('p' || g, NULL) FROM generate_series(1, 1001) g)))$$),
  ('contact 262145 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'interactionDateTime', 1700000000000,
      'properties', jsonb_build_object('a', repeat('x', 65536), 'b', repeat('x', 65536), 'c', repeat('x', 65536), 'd', repeat('x', 65449))))$$),
  ('contact far too large', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1,
      'properties', (SELECT jsonb_object_agg('p' || g, repeat('x', 65536)) FROM generate_series(1, 20) g)))$$),
  ('100001 contacts', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', (SELECT jsonb_agg(jsonb_build_object('vid', g)) FROM generate_series(1, 100001) g))$$),
  ('the issue: 20 MB properties', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))))$$),
  ('the issue: 8 MB event id', $$SELECT hubspot_upsert_subscriber(repeat('e', 8 * 1024 * 1024), 'register', 'acme', '{"vid": 1}')$$),
  ('8 MB state: echoed 64 bytes', $$SELECT hubspot_upsert_subscriber('e', repeat('s', 8 * 1024 * 1024), 'acme', '{"vid": 1}')$$),
  ('8 MB unknown key: echoed 64 bytes', $$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, repeat('k', 8 * 1024 * 1024), 1))$$)
) AS q(what, sql), LATERAL try(q.sql) t;
-- the contacts argument: at 16 MB as jsonb it is read (and refused here for
-- its unknown key); one byte more and it is refused before it is read
SELECT 16777216 - pg_column_size(jsonb_build_array(jsonb_build_object('vid', 1, 'zpad', ''))) AS pad \gset
SELECT code, message FROM try(format($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_array(jsonb_build_object('vid', 1, 'zpad', repeat('x', %s))))$$, :pad));
SELECT code, message FROM try(format($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_array(jsonb_build_object('vid', 1, 'zpad', repeat('x', %s))))$$, :pad + 1));
-- 100,000 contacts pass the count (the last one's error shows they were all read)
SELECT code, message FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme',
  (SELECT jsonb_agg(CASE WHEN g = 100000 THEN jsonb_build_object('vid', g, 'x', 1) ELSE jsonb_build_object('vid', g) END) FROM generate_series(1, 100000) g))$$);
SELECT count(*) AS requests_sent FROM mock_since(:mark);

-- at each limit: accepted, and HubSpot receives it whole
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber(repeat('e', 1000), 'register', repeat('a', 1000), '{"vid": 1}')->'http_status' AS ids_1000_bytes;
SELECT hubspot_upsert_subscriber('e', 'register', 'acme',
  jsonb_build_object('email', repeat('a', 242) || '@example.com',
                     'contactProperties', jsonb_build_object(repeat('n', 256), repeat('v', 65536))))->'http_status' AS email_254_name_256_value_65536;
SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1,
  'properties', (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 1000) g)))->'http_status' AS properties_1000;
SELECT hubspot_upsert_subscriber('e', 'register', 'acme', jsonb_build_object('vid', 1, 'interactionDateTime', 1700000000000,
  'properties', jsonb_build_object('a', repeat('x', 65536), 'b', repeat('x', 65536), 'c', repeat('x', 65536), 'd', repeat('x', 65448))))->'http_status' AS contact_262144;
SELECT (r->>'seq')::int - :mark AS request, octet_length(r->'path'->>'externalEventId') AS event_id_bytes,
       octet_length(r->'query'->>'externalAccountId') AS account_id_bytes,
       octet_length(r->'body'->'inputs'->0->>'email') AS email_bytes,
       (SELECT max(octet_length(k)) FROM jsonb_object_keys(r->'body'->'inputs'->0->'contactProperties') k) AS cprop_name_bytes,
       (SELECT max(octet_length(v)) FROM jsonb_each_text(r->'body'->'inputs'->0->'contactProperties') p(k, v)) AS cprop_value_bytes,
       (SELECT count(*) FROM jsonb_object_keys(r->'body'->'inputs'->0->'properties')) AS properties,
       (r->'headers'->>'content-length')::int - length('{"inputs":[]}') AS contact_json_bytes,
       r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;
