--
-- 04_transport: failures below HTTP get SQLSTATEs of the extension's own
-- class HS (never class 08), and a request in flight stops promptly on
-- query cancel and statement_timeout.
--
SET search_path = hubspot_events, hs_test, public;

-- connection refused: HS001
SET hubspot_events.api_base_url = 'http://127.0.0.1:9';
SELECT code, message ~ '^could not reach HubSpot: .*(refused|Failed to connect|Couldn''t connect)' AS names_reason, detail, hint
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);

-- TLS to a server that does not speak it: HS001
SELECT set_config('hubspot_events.api_base_url', 'https://127.0.0.1:' || current_setting('hs_test.mock_port'), false) IS NOT NULL AS set;
SELECT code, message ~ '^could not reach HubSpot: .*(SSL|TLS|ssl|tls)' AS names_tls_reason, hint
  FROM try($$SELECT hubspot_upsert_subscriber('e', 'register', 'acme', '{"vid": 1}')$$);
RESET hubspot_events.api_base_url;

-- the answer takes longer than request_timeout_ms: HS002
SET hubspot_events.request_timeout_ms = 300;
SELECT code, message ~ '^could not reach HubSpot: no complete answer within hubspot_events.request_timeout_ms \(300 ms\)' AS names_timeout, hint
  FROM try($$SELECT hubspot_upsert_subscriber('mock:delay_ms=3000', 'register', 'acme', '{"vid": 1}')$$);
RESET hubspot_events.request_timeout_ms;

-- statement_timeout stops a request to a mock that never answers: the
-- statement is cancelled after 1 s and returns in well under 5 s
SELECT clock_timestamp() AS t0 \gset
SET statement_timeout = '1s';
SELECT hubspot_upsert_subscriber('mock:hang=1', 'register', 'acme', '{"vid": 1}');
RESET statement_timeout;
SELECT clock_timestamp() - :'t0'::timestamptz < interval '5 s' AS returned_within_5s,
       clock_timestamp() - :'t0'::timestamptz >= interval '1 s' AS waited_for_the_timeout;

-- the session is healthy afterwards and the next request works
SELECT hubspot_upsert_subscriber('webinar-2026-03', 'register', 'acme', '{"vid": 1}')->'http_status' AS http_status;

-- query cancel from another session (pg_cancel_backend) stops it too:
-- a second session, through dblink, waits 1 s and cancels this one
CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public;
SELECT dblink_connect('canceller', format('host=%s port=%s dbname=%s user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1),
         current_setting('port'), current_database(), current_user)) AS connected;
SELECT dblink_send_query('canceller',
         format('SELECT pg_sleep(1); SELECT pg_cancel_backend(%s)', pg_backend_pid())) AS sent;
SELECT clock_timestamp() AS t0 \gset
SELECT hubspot_upsert_subscriber('mock:hang=1', 'register', 'acme', '{"vid": 1}');
SELECT clock_timestamp() - :'t0'::timestamptz < interval '5 s' AS returned_within_5s,
       clock_timestamp() - :'t0'::timestamptz >= interval '1 s' AS waited_for_the_cancel;
SELECT dblink_disconnect('canceller') AS disconnected;
