--
-- 00_setup: install the extension and the helpers the other tests use.
--
-- The tests run against the mock HubSpot (test/mock_hubspot.py), which logs
-- every request it receives as one JSON line; mock_requests() reads that
-- log so that tests assert what HubSpot would have received.
--
\getenv mock_log HS_MOCK_LOG
\getenv mock_url HS_MOCK_URL
\getenv mock_port HS_MOCK_PORT
\getenv token_file HS_TOKEN_FILE

CREATE EXTENSION hubspot_events;

-- every object is in the fixed schema hubspot_events
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace
  FROM pg_extension WHERE extname = 'hubspot_events';
-- (the row types of its tables and views are listed as members too in
-- newer PostgreSQL, 18 here: they come with their relations, and are left out)
SELECT pg_describe_object(d.classid, d.objid, 0) AS member
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events')
   AND d.deptype = 'e'
   AND NOT EXISTS (SELECT 1 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                      AND (t.typrelid <> 0 OR e.typrelid <> 0))
 ORDER BY 1;
-- the schema is fixed: the extension cannot be moved
CREATE SCHEMA elsewhere;
ALTER EXTENSION hubspot_events SET SCHEMA elsewhere;
DROP SCHEMA elsewhere;

-- where the mock is, for the sessions of the other test files
SELECT format('ALTER DATABASE %I SET hs_test.mock_log = %L', current_database(), :'mock_log') AS cmd \gset
:cmd;
SELECT format('ALTER DATABASE %I SET hs_test.mock_url = %L', current_database(), :'mock_url') AS cmd \gset
:cmd;
SELECT format('ALTER DATABASE %I SET hs_test.mock_port = %L', current_database(), :'mock_port') AS cmd \gset
:cmd;
SELECT format('ALTER DATABASE %I SET hs_test.token_file = %L', current_database(), :'token_file') AS cmd \gset
:cmd;

CREATE SCHEMA hs_test;

-- every request the mock received, oldest first
CREATE FUNCTION hs_test.mock_requests() RETURNS SETOF jsonb
LANGUAGE sql AS $$
  SELECT line::jsonb
    FROM regexp_split_to_table(pg_read_file(current_setting('hs_test.mock_log')), E'\n') AS line
   WHERE line <> ''
$$;

-- the sequence number of the newest request so far (0 when none)
CREATE FUNCTION hs_test.mock_mark() RETURNS int
LANGUAGE sql AS $$
  SELECT coalesce(max((r->>'seq')::int), 0) FROM hs_test.mock_requests() r
$$;

-- the requests received after a mark
CREATE FUNCTION hs_test.mock_since(mark int) RETURNS SETOF jsonb
LANGUAGE sql AS $$
  SELECT r FROM hs_test.mock_requests() r WHERE (r->>'seq')::int > mark ORDER BY (r->>'seq')::int
$$;

-- UUIDs in a text, replaced by what they are: an id the mock answered with,
-- or one it never sent
CREATE FUNCTION hs_test.mask_ids(t text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  m text[];
BEGIN
  IF t IS NULL THEN RETURN NULL; END IF;
  FOR m IN SELECT regexp_matches(t, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'g') LOOP
    IF EXISTS (SELECT 1 FROM hs_test.mock_requests() r WHERE r->>'correlation_id' = m[1]) THEN
      t := replace(t, m[1], '<id sent by the mock>');
    ELSE
      t := replace(t, m[1], '<id the mock never sent>');
    END IF;
  END LOOP;
  RETURN t;
END $$;

-- run a statement and show how it failed: SQLSTATE, message, detail, hint
CREATE FUNCTION hs_test.try(q text,
  OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  code := '00000';
  message := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                          detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  message := hs_test.mask_ids(message);
  detail := nullif(hs_test.mask_ids(detail), '');
  hint := nullif(hint, '');
END $$;

