--
-- 09_oauth: the OAuth settings: who may see and change them, and their
-- checks.  The refresh itself (the token endpoint, the shared token, 401
-- EXPIRED_AUTHENTICATION, settings that cannot work) is tested end to end
-- in test/t/008_oauth.pl.
--
SET search_path = hubspot_events, hs_test, public;
LOAD 'hubspot_events';

-- read from the configuration files only: SET is refused even to a superuser
SET hubspot_events.oauth_client_id = 'x';
SET hubspot_events.oauth_token_url = 'https://api.hubapi.com/oauth/v1/token';
SET hubspot_events.oauth_refresh_token_file = '/tmp/x';

-- values are checked (ALTER SYSTEM runs the check hooks, and writes nothing here)
ALTER SYSTEM SET hubspot_events.oauth_token_url = 'http://api.hubapi.com/oauth/v1/token';
ALTER SYSTEM SET hubspot_events.oauth_token_url = 'https://user:pw@api.hubapi.com/oauth/v1/token';
ALTER SYSTEM SET hubspot_events.oauth_token_url = 'https://api.hubapi.com/oauth/v1/token?x=1';
ALTER SYSTEM SET hubspot_events.oauth_token_url = 'ftp://127.0.0.1/token';
ALTER SYSTEM SET hubspot_events.oauth_client_id = 'has space';
ALTER SYSTEM SET hubspot_events.oauth_client_secret_file = E'/tmp/a\nb';
SELECT count(*) AS oauth_lines_in_auto_conf
  FROM pg_file_settings WHERE name LIKE 'hubspot\_events.oauth%';

-- the secret files' names are hidden from roles without pg_read_all_settings,
-- and no other role may change any of them
CREATE ROLE hs_oauth_reader;
SET ROLE hs_oauth_reader;
-- (the SQLSTATE: PostgreSQL's message for it changed in 16)
DO $$
DECLARE
  setting text;
BEGIN
  FOREACH setting IN ARRAY ARRAY['hubspot_events.oauth_client_secret_file', 'hubspot_events.oauth_refresh_token_file']
  LOOP
    BEGIN
      PERFORM pg_catalog.current_setting(setting);
      RAISE WARNING '% is visible', setting;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE WARNING '% is hidden: %', setting, SQLSTATE;
    END;
  END LOOP;
END $$;
SHOW hubspot_events.oauth_client_id;
SHOW hubspot_events.oauth_token_url;
SELECT name FROM pg_settings WHERE name LIKE 'hubspot\_events.oauth%' ORDER BY name;
ALTER SYSTEM SET hubspot_events.oauth_token_url = 'https://evil.example.com/token';
RESET ROLE;
DROP ROLE hs_oauth_reader;

-- without OAuth settings, the static token file is used as before
SELECT hubspot_events.hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')->'http_status' AS static_token_call;
