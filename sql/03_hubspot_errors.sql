--
-- 03_hubspot_errors: every HubSpot error category becomes an ERROR whose
-- message names the HTTP status, HubSpot's category and message, whose
-- DETAIL carries the correlationId (the one the mock sent), subCategory
-- and context, with the documented SQLSTATE.
--
SET search_path = hubspot_events, hs_test, public;

SELECT k AS knobs, t.*
  FROM unnest(ARRAY[
    'mock:status=400',
    'mock:status=400;subcategory=MARKETING_EVENTS.INVALID_VID',
    'mock:status=401',
    'mock:status=401;category=EXPIRED_AUTHENTICATION',
    'mock:status=403',
    'mock:status=404',
    'mock:status=409',
    'mock:status=423',
    'mock:status=429',
    'mock:status=429;policy=DAILY',
    'mock:status=429;policy=SECONDLY',
    'mock:status=429;category=RATE_LIMITS',
    'mock:status=500',
    'mock:status=502;body=html',
    'mock:status=503;body=empty',
    'mock:status=400;body=nocategory',
    'mock:status=400;body=badjson',
    'mock:status=418;body=text',
    'mock:status=302'
  ]) WITH ORDINALITY AS k(k, n),
  LATERAL try(format('SELECT hubspot_upsert_subscriber(%L, %L, %L, %L)', k, 'register', 'acme', '{"vid": 1}')) t
 ORDER BY n;

-- a correlationId only in the body (no header) is still reported
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('mock:status=404;correlation=none', 'register', 'acme', '{"vid": 1}')$$);
-- a correlation id that is not a UUID is reported as it came
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('mock:status=404;correlation=bad', 'register', 'acme', '{"vid": 1}')$$);

-- a failure after some requests succeeded: the DETAIL says how many
-- contacts HubSpot had already recorded, and no request follows the failure
SET hubspot_events.batch_size = 100;
SELECT mock_mark() AS mark \gset
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('mock:fail_after=2;status=400', 'register', 'acme',
  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 450) v))$$);
SELECT r->>'status' AS status, jsonb_array_length(r->'body'->'inputs') AS contacts,
       r->'body'->'inputs'->0->'vid' AS first_vid
  FROM mock_since(:mark) r;
-- a failure of the only request: no progress sentence
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('mock:status=400', 'register', 'acme',
  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 100) v))$$);
-- a failure of the first of several requests: "0 of ..."
SELECT * FROM try($$SELECT hubspot_upsert_subscriber('mock:status=503', 'register', 'acme',
  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 101) v))$$);
RESET hubspot_events.batch_size;

-- the ERROR is a real ERROR: it aborts the transaction
\set VERBOSITY terse
BEGIN;
SELECT hubspot_upsert_subscriber('mock:status=404', 'register', 'acme', '{"vid": 1}');
SELECT 1;
ROLLBACK;
\set VERBOSITY default
