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
