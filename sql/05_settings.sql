--
-- 05_settings: the settings, their check hooks, the token file, and who
-- may do what.
--
SET search_path = hubspot_events, hs_test, public;
-- settings are checked once the library is loaded: with
-- shared_preload_libraries always; here, load it first
LOAD 'hubspot_events';

-- every setting, its built-in default and who may change it
SELECT name, boot_val, unit, context, min_val, max_val
  FROM pg_settings WHERE name LIKE 'hubspot\_events.%' ORDER BY name;

-- api_base_url: https anywhere, http only on loopback; no credentials,
-- query or fragment
SELECT u AS url, t.code, t.message, t.detail
  FROM unnest(ARRAY[
    'https://api.hubapi.com',
    'https://api.hubapi.com/',
    'https://proxy.example.com/hubspot',
    'http://127.0.0.1:8080',
    'http://127.200.1.2',
    'http://localhost:8080',
    'HTTP://LOCALHOST',
    'http://[::1]:8080',
    'http://api.hubapi.com',
    'http://128.0.0.1',
    'http://localhost.example.com',
    'http://[::2]',
    'ftp://127.0.0.1',
    'file:///etc/passwd',
    'not a url',
    '',
    'https://user:secret@api.hubapi.com',
    'https://api.hubapi.com/?hapikey=1',
    'https://api.hubapi.com/#x'
  ]) WITH ORDINALITY AS x(u, n),
  LATERAL try(format('SET hubspot_events.api_base_url = %L', u)) t
 ORDER BY n;
RESET hubspot_events.api_base_url;

-- numeric settings are range-checked
SELECT * FROM try($$SET hubspot_events.batch_size = 0$$);
SELECT * FROM try($$SET hubspot_events.batch_size = 1001$$);
SELECT * FROM try($$SET hubspot_events.batch_size = 1000$$);
-- (PostgreSQL's message for it names the unit from 18 on)
SELECT code, message ~ '^50 ms is outside the valid range for parameter "hubspot_events.request_timeout_ms" \(100( ms)? \.\. 3600000( ms)?\)$' AS out_of_range
  FROM try($$SET hubspot_events.request_timeout_ms = 50$$);
SELECT * FROM try($$SET hubspot_events.request_timeout_ms = '2s'$$);
SHOW hubspot_events.request_timeout_ms;
RESET hubspot_events.batch_size;
RESET hubspot_events.request_timeout_ms;
-- daily_reset_time (a postgresql.conf setting: checked by ALTER SYSTEM):
-- a time of day and a known IANA zone
ALTER SYSTEM SET hubspot_events.daily_reset_time = '23:59 America/New_York';
ALTER SYSTEM SET hubspot_events.daily_reset_time = '07:30 Europe/Berlin';
ALTER SYSTEM SET hubspot_events.daily_reset_time = '24:00 UTC';
ALTER SYSTEM SET hubspot_events.daily_reset_time = '7:30 UTC';
ALTER SYSTEM SET hubspot_events.daily_reset_time = '00:00';
ALTER SYSTEM SET hubspot_events.daily_reset_time = '00:00 Mars/Olympus';
ALTER SYSTEM RESET hubspot_events.daily_reset_time;
-- worker settings are not for sessions
SELECT * FROM try($$SET hubspot_events.rate_limit = 10$$);
-- the prefix is reserved: a misspelt setting is an error, not a new placeholder
SELECT * FROM try($$SET hubspot_events.batchsize = 10$$);

-- ---- the token file ----
SELECT regexp_replace(current_setting('hs_test.token_file'), '/[^/]*$', '') AS dir \gset
\set empty_token :dir/empty_token
\set spaced_token :dir/spaced_token
\set wrong_token :dir/wrong_token
\set rotating_token :dir/rotating_token
SELECT mock_mark() AS mark \gset

-- not configured: an ERROR whose HINT names the setting
SET hubspot_events.access_token_file = '';
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
-- missing, a directory, empty, not a token: ERRORs naming the setting
SET hubspot_events.access_token_file = '/nonexistent/token';
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
SELECT set_config('hubspot_events.access_token_file', :'dir', false) IS NOT NULL AS set;
SELECT code, replace(message, :'dir', '<dir>') AS message
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
COPY (SELECT E' \t ') TO :'empty_token' WITH (FORMAT csv);
SELECT set_config('hubspot_events.access_token_file', :'dir' || '/empty_token', false) IS NOT NULL AS set;
SELECT code, replace(message, :'dir', '<dir>') AS message, hint
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
COPY (SELECT 'secret-part1 secret-part2') TO :'spaced_token' WITH (FORMAT csv);
SELECT set_config('hubspot_events.access_token_file', :'dir' || '/spaced_token', false) IS NOT NULL AS set;
SELECT code, replace(message, :'dir', '<dir>') AS message, detail,
       (message || coalesce(detail, '') || coalesce(hint, '')) LIKE '%secret-part%' AS leaks_token
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
-- none of these sent anything
SELECT count(*) AS requests_sent FROM mock_since(:mark);

-- a token HubSpot does not accept: 401, and the mock saw the wrong token
COPY (SELECT 'pat-na1-wrong') TO :'wrong_token' WITH (FORMAT csv);
SELECT set_config('hubspot_events.access_token_file', :'dir' || '/wrong_token', false) IS NOT NULL AS set;
SELECT code, message, hint FROM try($$SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')$$);
SELECT r->'headers'->>'authorization' AS authorization FROM mock_since(:mark) r;

-- the file is read again when it changes, without a reload; surrounding
-- white space is not part of the token
COPY (SELECT '  ' || trim(pg_read_file(current_setting('hs_test.token_file')), E' \n') || '  ') TO :'rotating_token' WITH (FORMAT csv);
SELECT set_config('hubspot_events.access_token_file', :'dir' || '/rotating_token', false) IS NOT NULL AS set;
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')->'http_status' AS with_good_token;
COPY (SELECT 'pat-na1-revoked') TO :'rotating_token' WITH (FORMAT csv);
SELECT code, message FROM try($$SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')$$);
COPY (SELECT trim(pg_read_file(current_setting('hs_test.token_file')), E' \n')) TO :'rotating_token' WITH (FORMAT csv);
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')->'http_status' AS with_good_token_again;
RESET hubspot_events.access_token_file;

-- ---- privileges ----
CREATE ROLE hs_app;
-- not executable by PUBLIC
SELECT has_function_privilege('public', 'hubspot_events.hubspot_upsert_subscriber(text, text, text, jsonb, text)', 'EXECUTE') AS public_may_execute;
GRANT USAGE ON SCHEMA hubspot_events, hs_test TO hs_app;
GRANT EXECUTE ON FUNCTION hs_test.try(text) TO hs_app;
SET ROLE hs_app;
SELECT * FROM try($$SELECT hubspot_events.hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
-- it cannot send the token elsewhere, nor see or change where it is read from
SELECT * FROM try($$SET hubspot_events.api_base_url = 'https://evil.example.com'$$);
SELECT * FROM try($$SET hubspot_events.access_token_file = '/tmp/x'$$);
-- (PostgreSQL's message for it changed in 16)
SELECT code, message ~ 'examine "hubspot_events.access_token_file"' AS hidden FROM try($$SHOW hubspot_events.access_token_file$$);
SELECT count(*) AS visible_token_file_settings FROM pg_settings WHERE name = 'hubspot_events.access_token_file';
-- but may tune its own requests
SET hubspot_events.batch_size = 10;
RESET hubspot_events.batch_size;
RESET ROLE;
-- the documented GRANT
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_upsert_subscriber(text, text, text, jsonb, text) TO hs_app;
SET ROLE hs_app;
SELECT hubspot_events.hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')->'http_status' AS granted_call;
RESET ROLE;
REVOKE ALL ON FUNCTION hubspot_events.hubspot_upsert_subscriber(text, text, text, jsonb, text) FROM hs_app;
REVOKE ALL ON FUNCTION hs_test.try(text) FROM hs_app;
REVOKE ALL ON SCHEMA hubspot_events, hs_test FROM hs_app;
DROP ROLE hs_app;

-- ---- ca_file: a postgresql.conf setting, checked by ALTER SYSTEM: empty
-- (the system's CA bundle) or a readable file holding a PEM certificate;
-- its content is never repeated ----
ALTER SYSTEM SET hubspot_events.ca_file = '/nonexistent/ca.pem';
ALTER SYSTEM SET hubspot_events.ca_file = '/';
ALTER SYSTEM SET hubspot_events.ca_file = '/etc/passwd';
ALTER SYSTEM SET hubspot_events.ca_file = '';
ALTER SYSTEM RESET hubspot_events.ca_file;
-- not for sessions, not even a superuser's
SET hubspot_events.ca_file = '';
