--
-- 01_upsert: hubspot_upsert_subscriber's success path, and exactly what
-- HubSpot receives.
--
SET search_path = hubspot_events, hs_test, public;

-- one contact, everything given
SELECT mock_mark() AS mark \gset
SELECT r - 'correlation_id' - 'responses' AS answer, r->>'correlation_id' ~ '^[0-9a-f-]{36}$' AS has_correlation_id,
       (r->'responses'->0) - 'correlation_id' AS response
  FROM hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme',
        '[{"vid": 101, "interactionDateTime": 1767225600000, "properties": {"source": "landing page"}}]') r;
-- what the mock received: method, operation, decoded path and query, headers, body
SELECT r->>'method' AS method, r->>'operation' AS operation, r->>'raw_path' AS raw_path,
       r->'path' AS path, r->'query' AS query, r->'spec_errors' AS spec_errors, r->>'status' AS status
  FROM mock_since(:mark) r;
SELECT r->'headers'->>'authorization' AS authorization,
       r->'headers'->>'content-type' AS content_type,
       r->'headers'->>'accept' AS accept,
       r->'headers'->>'user-agent' = 'hubspot_events/' || (SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events') AS user_agent_names_version
  FROM mock_since(:mark) r;
SELECT r->'body' AS body FROM mock_since(:mark) r;
-- the answer's correlation_id is the one the mock sent
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'attend', 'acme', '{"vid": 101}')->>'correlation_id' AS cid \gset
SELECT r->>'correlation_id' = :'cid' AS same_correlation_id
  FROM mock_requests() r ORDER BY (r->>'seq')::int DESC LIMIT 1;

-- a single object is an array of one; interactionDateTime defaults to the
-- transaction's start; properties default to {}
BEGIN;
SELECT mock_mark() AS mark \gset
SELECT (hubspot_upsert_subscriber('webinar-2026-03', 'attend', 'acme', '{"vid": "102"}'))->'contacts' AS contacts;
SELECT r->'body'->'inputs'->0->'vid' AS vid,
       (r->'body'->'inputs'->0->>'interactionDateTime')::bigint
         = floor(extract(epoch FROM transaction_timestamp()) * 1000)::bigint AS at_transaction_start,
       r->'body'->'inputs'->0->'properties' AS properties
  FROM mock_since(:mark) r;
COMMIT;

-- states are normalised: past tense and any letter case
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-2026-03', s, 'acme', '{"vid": 103}')->'http_status' AS http_status
  FROM unnest(ARRAY['REGISTERED', 'Attended', 'cancelled', 'canceled', 'Cancel']) s;
SELECT r->'path'->>'subscriberState' AS state_sent, r->>'raw_path' LIKE '%/' || (r->'path'->>'subscriberState') || '/upsert' AS in_path
  FROM mock_since(:mark) r;

-- path segments and the query value are percent-encoded
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('spring/summit 2026?#é', 'register', 'acme&co=1 +x', '{"vid": 104}')->'http_status' AS http_status;
SELECT r->>'raw_path' AS raw_path, r->'path'->>'externalEventId' AS event_id,
       r->'query'->>'externalAccountId' AS account_id, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r;

-- interactionDateTime: epoch milliseconds, or a timestamp read as timestamptz
-- (no offset: the session's TimeZone)
SET TimeZone = 'America/New_York';
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'attend', 'acme',
  '[{"vid": 105, "interactionDateTime": 0},
    {"vid": 106, "interactionDateTime": "2026-03-01T17:00:00Z"},
    {"vid": 107, "interactionDateTime": "2026-03-01 12:00:00"},
    {"vid": 108, "interactionDateTime": "2026-03-01 12:00:00+01"},
    {"vid": 109, "interactionDateTime": 1767225600000.000},
    {"vid": 9223372036854775807, "interactionDateTime": null}]')->'contacts' AS contacts;
SELECT i->'vid' AS vid, i->'interactionDateTime' AS at,
       to_timestamp((i->>'interactionDateTime')::numeric / 1000) AT TIME ZONE 'UTC' AS at_utc
  FROM mock_since(:mark) r, jsonb_array_elements(r->'body'->'inputs') i
 WHERE (i->>'vid')::bigint <> 9223372036854775807;
RESET TimeZone;

-- properties: strings as they are, numbers in their JSON text, booleans,
-- nulls dropped
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'attend', 'acme',
  '{"vid": 110, "properties": {"s": "text", "n": 12.50, "i": 7, "e": 1e3, "t": true, "f": false, "z": null, "u": "ünï \"q\" \n"}}')->'contacts' AS contacts;
SELECT r->'body'->'inputs'->0->'properties' AS properties, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r;

-- more contacts than batch_size: several requests, in order
SET hubspot_events.batch_size = 2;
SELECT mock_mark() AS mark \gset
SELECT r - 'correlation_id' - 'responses' AS answer,
       jsonb_array_length(r->'responses') AS responses,
       (SELECT array_agg(x->>'contacts') FROM jsonb_array_elements(r->'responses') x) AS per_request
  FROM hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme',
        (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(201, 205) v)) r;
SELECT r->>'seq' IS NOT NULL AS logged,
       (SELECT array_agg((i->>'vid')::int) FROM jsonb_array_elements(r->'body'->'inputs') i) AS vids
  FROM mock_since(:mark) r;
RESET hubspot_events.batch_size;

-- any 2xx is success, with or without a body; the body comes back parsed
SELECT mock_mark() AS mark \gset
SELECT e AS knobs, r->'http_status' AS http_status, r->'body' AS body
  FROM unnest(ARRAY['mock:status=204', 'mock:status=200;body=empty', 'mock:status=200;body=json',
                    'mock:status=201;body=text', 'mock:status=202;body=badjson']) e,
       hubspot_upsert_subscriber(e, 'register', 'acme', '{"vid": 111}') r;
SELECT count(*) AS requests, count(*) FILTER (WHERE r->'spec_errors' = '[]') AS valid
  FROM mock_since(:mark) r;

-- no correlation header: correlation_id is null
SELECT hubspot_upsert_subscriber('mock:correlation=none', 'register', 'acme', '{"vid": 112}')->'correlation_id' AS correlation_id;

-- a base URL with a trailing slash works the same
SELECT set_config('hubspot_events.api_base_url', current_setting('hs_test.mock_url') || '/', false) IS NOT NULL AS set;
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 113}')->'http_status' AS http_status;
SELECT r->>'raw_path' AS raw_path FROM mock_since(:mark) r;

-- every request of this file matched the spec
SELECT count(*) > 0 AS some_requests, count(*) FILTER (WHERE r->'spec_errors' <> '[]') AS invalid
  FROM mock_requests() r;
