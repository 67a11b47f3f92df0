--
-- 13_api_version: hubspot_events.api_version picks HubSpot's path form for
-- every call; the mock checks each request against the spec of its version.
--
SET search_path = hubspot_events, hs_test, public;
SET TimeZone = 'UTC';

-- the default: HubSpot's date version 2026-09, and the date-based token URL
SHOW hubspot_events.api_version;
SHOW hubspot_events.oauth_token_url;

-- every kind of call, once per version: subscriber states by vid and by
-- email on both endpoints, then the event's upsert, cancel and complete
CREATE FUNCTION pg_temp.every_call(tag text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  SET LOCAL hubspot_events.endpoint = 'upsert';
  RETURN NEXT hubspot_events.hubspot_upsert_subscriber('webinar-' || tag, 'register', 'acme',
                '[{"vid": 1}, {"email": "a@example.com"}]')->>'http_status';
  SET LOCAL hubspot_events.endpoint = 'attendance';
  RETURN NEXT hubspot_events.hubspot_upsert_subscriber('webinar-' || tag, 'attend', 'acme',
                '[{"vid": 1}, {"email": "a@example.com"}]')->>'http_status';
  RETURN NEXT hubspot_events.hubspot_upsert_event('webinar-' || tag, 'acme',
                '{"eventName": "Webinar", "eventOrganizer": "Acme"}')->>'http_status';
  RETURN NEXT hubspot_events.hubspot_cancel_event('webinar-' || tag, 'acme')->>'http_status';
  RETURN NEXT hubspot_events.hubspot_complete_event('webinar-' || tag, 'acme',
                '2026-12-01 17:00+00', '2026-12-01 18:00+00')->>'http_status';
END $$;

SELECT mock_mark() AS mark \gset
SELECT string_agg(s, ',') AS statuses FROM pg_temp.every_call('av1') s;
SELECT r->>'raw_path' AS raw_path, r->>'api_version' AS api_version, r->>'spec' AS spec,
       r->'spec_errors' AS spec_errors, r->>'status' AS status
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;
-- the operations are the 2026-09 spec's own
SELECT r->>'operation' AS operation FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- v3: the legacy paths, checked against the v3 spec
SET hubspot_events.api_version = 'v3';
SELECT mock_mark() AS mark \gset
SELECT string_agg(s, ',') AS statuses FROM pg_temp.every_call('av2') s;
SELECT r->>'raw_path' AS raw_path, r->>'api_version' AS api_version, r->>'spec' AS spec,
       r->'spec_errors' AS spec_errors, r->>'status' AS status
  FROM mock_since(:mark) r ORDER BY (r->>'seq')::int;

-- any date version from 2026-03 on: the previous one, or HubSpot's next
-- one without a new release (the mock serves 2026-03 and 2026-09, as
-- HubSpot does in December 2026: 2027-03 is an unknown route there, which
-- HubSpot answers 404, in its own words)
SET hubspot_events.api_version = '2026-03';
SELECT mock_mark() AS mark \gset
SELECT hubspot_upsert_subscriber('webinar-av3', 'register', 'acme', '{"vid": 1}')->>'http_status' AS status;
SELECT r->>'raw_path' AS raw_path, r->>'api_version' AS api_version, r->>'spec' AS spec, r->'spec_errors' AS spec_errors
  FROM mock_since(:mark) r;
SET hubspot_events.api_version = '2027-03';
SELECT mock_mark() AS mark \gset
\set VERBOSITY terse
SELECT hubspot_upsert_subscriber('webinar-av4', 'register', 'acme', '{"vid": 1}');
SELECT r->>'raw_path' AS raw_path, r->>'api_version' AS api_version, r->>'status' AS status
  FROM mock_since(:mark) r;
RESET hubspot_events.api_version;
SHOW hubspot_events.api_version;

-- anything else is refused when set, with the accepted forms named
\set VERBOSITY default
SET hubspot_events.api_version = '2025-09';
SET hubspot_events.api_version = '2026-13';
SET hubspot_events.api_version = '2026-06';
SET hubspot_events.api_version = '2026-9';
SET hubspot_events.api_version = 'v4';
SET hubspot_events.api_version = 'V3';
SET hubspot_events.api_version = ' 2026-09';
SET hubspot_events.api_version = '2026-09/../../oauth';
SET hubspot_events.api_version = '';
ALTER SYSTEM SET hubspot_events.api_version = 'latest';
\set VERBOSITY terse
-- the SQLSTATE is 22023
DO $$
BEGIN
  SET hubspot_events.api_version = 'v2';
EXCEPTION WHEN invalid_parameter_value THEN
  RAISE WARNING 'refused: %', SQLSTATE;
END $$;
SHOW hubspot_events.api_version;
