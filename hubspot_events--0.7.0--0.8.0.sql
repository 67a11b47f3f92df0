/* hubspot_events 0.7.0 -> 0.8.0: connections (issue 15): many HubSpot accounts from one database. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.8.0'" to load this file. \quit

-- A connection is one HubSpot account reached with one credential.  The
-- connection 'default' is what the server's settings describe
-- (access_token_file, or the OAuth settings): auth 'settings'.  Others are
-- created by create_connection() (a token read from a server file) or
-- connect_oauth() (an OAuth app's install).  No secret is ever in this
-- table: token files' paths and sealed refresh tokens are in
-- connection_secrets, which no role but the extension's owner reads.
--
-- A name is short and plain (letters, digits, _ . - : @, at most 63
-- bytes): it appears in log lines, notifications and metrics labels.
-- state: active; held (HubSpot refused the credential: 401, 403; its rows
-- wait, the other connections go on); disconnected (an OAuth refresh was
-- answered invalid_grant: the app was uninstalled or the token revoked;
-- connect_oauth() again resumes it).  rate_limit and
-- rate_limit_interval_ms: this connection's own pacing (NULL: the global
-- settings and HubSpot's headers).
CREATE TABLE @extschema@.connections (
    name                    text PRIMARY KEY
                            CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]*$' AND octet_length(name) <= 63),
    hub_id                  bigint CHECK (hub_id > 0),
    auth                    text NOT NULL CHECK (auth IN ('settings', 'token_file', 'oauth')),
    state                   text NOT NULL DEFAULT 'active'
                            CHECK (state IN ('active', 'held', 'disconnected')),
    held_reason             text,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rate_limit              integer CHECK (rate_limit BETWEEN 1 AND 1000000),
    rate_limit_interval_ms  integer CHECK (rate_limit_interval_ms BETWEEN 1 AND 86400000),
    CHECK ((name = 'default') = (auth = 'settings'))
);
COMMENT ON TABLE @extschema@.connections IS
'HubSpot accounts the extension sends to, each with its own credential, limits and faults; ''default'' is the server''s settings';
COMMENT ON COLUMN @extschema@.connections.hub_id IS 'HubSpot''s account id, learned from the token answer where HubSpot gives it';
COMMENT ON COLUMN @extschema@.connections.auth IS 'settings (the connection default), token_file (create_connection) or oauth (connect_oauth)';
COMMENT ON COLUMN @extschema@.connections.state IS
'active; held (HubSpot refused the credential; its rows wait); disconnected (the OAuth app was uninstalled or its token revoked; connect_oauth() again resumes it)';
INSERT INTO @extschema@.connections (name, auth) VALUES ('default', 'settings');

-- The connections' credentials: a token file's path (token_file), or the
-- OAuth refresh token sealed with AES-256-GCM under the key in
-- hubspot_events.secret_key_file (oauth).  Readable by the extension's
-- owner only; the functions that use it run as the owner.
CREATE TABLE @extschema@.connection_secrets (
    connection      text PRIMARY KEY
                    REFERENCES @extschema@.connections (name) ON DELETE CASCADE,
    token_file      text,
    refresh_token   bytea,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((token_file IS NULL) <> (refresh_token IS NULL))
);
COMMENT ON TABLE @extschema@.connection_secrets IS
'Each connection''s credential: a token file''s path, or a refresh token sealed with AES-256-GCM (never in clear)';

-- pg_dump keeps the connections a DBA or an application created (the
-- default row is the install script's) and their sealed secrets
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connections', 'WHERE name <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connection_secrets', '');
REVOKE ALL ON TABLE @extschema@.connections, @extschema@.connection_secrets FROM PUBLIC;

-- Each outbox row's connection.  A constant default: the column is added
-- without a rewrite, and the enqueue's direct insert writes it.  No
-- foreign key (a trigger per row on the application's write path): the
-- enqueue checks the name, the worker fails a row whose connection is gone
-- (CONNECTION_DROPPED).
ALTER TABLE @extschema@.outbox ADD COLUMN connection text NOT NULL DEFAULT 'default';
COMMENT ON COLUMN @extschema@.outbox.connection IS 'The connection (HubSpot account and credential) the row is sent through';

-- The worker claims per connection (its fair share of each turn): the due
-- rows' index leads with the connection.
DROP INDEX @extschema@.outbox_due;
CREATE INDEX outbox_due ON @extschema@.outbox (connection, next_attempt_at, id) WHERE status = 'pending';

-- Rows in flight, by connection: each claim reads its own connection's
-- (rows another connection's claim marked sending in the same turn are not
-- its business).
DROP INDEX @extschema@.outbox_sending;
CREATE INDEX outbox_sending ON @extschema@.outbox (connection, id) WHERE status = 'sending';

-- The worker's claim, per connection: claim_due(max_rows) and
-- next_claim_at() of 0.7.0 with the connection, and the order rules kept
-- within each connection (a request never mixes connections; one
-- connection's held rows never hold back another's).
DROP FUNCTION @extschema@.claim_due(integer);
DROP FUNCTION @extschema@.next_claim_at();

CREATE FUNCTION @extschema@.claim_due(max_rows integer, conn text)
RETURNS TABLE (id bigint, external_event_id text, subscriber_state text,
               external_account_id text, contact text, attempts integer,
               kind text, event text, contact_key text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    WITH due AS (
        SELECT o.ctid AS tid
          FROM @extschema@.outbox o
         WHERE o.status = 'pending'
           AND o.connection = conn
           AND o.next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
                            WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                                = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                              AND p.external_event_id = o.external_event_id
                              AND p.external_account_id = o.external_account_id
                              AND p.contact_key = o.contact_key
                              AND p.connection = o.connection
                              AND p.id < o.id
                              AND p.status NOT IN ('sending', 'sent', 'failed'))
           AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                            = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                           FROM @extschema@.outbox s
                                          WHERE s.status = 'sending' AND s.connection = conn)), false)
           AND (o.kind <> 'subscriber' OR (
                NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
                             WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                                 = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                               AND e.external_event_id = o.external_event_id
                               AND e.external_account_id = o.external_account_id
                               AND e.contact_key = ''
                               AND e.kind = 'event_upsert'
                               AND e.connection = o.connection
                               AND e.status NOT IN ('sending', 'sent', 'failed'))
                AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                                 = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                                FROM @extschema@.outbox s
                                               WHERE s.status = 'sending' AND s.connection = conn)), false)))
         ORDER BY o.connection, o.next_attempt_at, o.id
         LIMIT max_rows
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE @extschema@.outbox u
       SET status = 'sending', attempts = u.attempts + 1, last_attempt_at = now()
     WHERE u.ctid = ANY (ARRAY(SELECT due.tid FROM due))
    RETURNING u.id, u.external_event_id, u.subscriber_state, u.external_account_id,
              u.contact::text, u.attempts, u.kind, u.event::text, u.contact_key
$$;
REVOKE ALL ON FUNCTION @extschema@.claim_due(integer, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.claim_due(integer, text) IS
'Internal, for the worker: claim up to max_rows due rows of one connection and mark them sending';

CREATE FUNCTION @extschema@.next_claim_at(conn text)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    SELECT o.next_attempt_at
      FROM @extschema@.outbox o
     WHERE o.status = 'pending'
       AND o.connection = conn
       AND NOT EXISTS (SELECT 1 FROM @extschema@.outbox p
                        WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                            = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                          AND p.external_event_id = o.external_event_id
                          AND p.external_account_id = o.external_account_id
                          AND p.contact_key = o.contact_key
                          AND p.connection = o.connection
                          AND p.id < o.id
                          AND p.status NOT IN ('sending', 'sent', 'failed'))
       AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, o.contact_key)
                        = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                       FROM @extschema@.outbox s
                                      WHERE s.status = 'sending' AND s.connection = conn)), false)
       AND (o.kind <> 'subscriber' OR (
            NOT EXISTS (SELECT 1 FROM @extschema@.outbox e
                         WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                             = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                           AND e.external_event_id = o.external_event_id
                           AND e.external_account_id = o.external_account_id
                           AND e.contact_key = ''
                           AND e.kind = 'event_upsert'
                           AND e.connection = o.connection
                           AND e.status NOT IN ('sending', 'sent', 'failed'))
            AND NOT coalesce(ROW(o.external_event_id, o.external_account_id, ''::text)
                             = ANY (ARRAY(SELECT ROW(s.external_event_id, s.external_account_id, s.contact_key)
                                            FROM @extschema@.outbox s
                                           WHERE s.status = 'sending' AND s.connection = conn)), false)))
     ORDER BY o.connection, o.next_attempt_at, o.id
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION @extschema@.next_claim_at(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.next_claim_at(text) IS
'When the worker can next claim a row of the connection: the earliest next_attempt_at among its pending rows that no older row of their contact, and no upsert of their event, holds back (NULL when none)';

-- The connections with pending rows and the earliest next_attempt_at of
-- each: a skip scan of the due rows' index (one probe per connection, not a
-- read of every pending row).
CREATE FUNCTION @extschema@.pending_connections()
RETURNS TABLE (connection text, next_attempt_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
    WITH RECURSIVE c(name) AS (
        (SELECT o.connection FROM @extschema@.outbox o
          WHERE o.status = 'pending' ORDER BY o.connection LIMIT 1)
        UNION ALL
        SELECT (SELECT o.connection FROM @extschema@.outbox o
                 WHERE o.status = 'pending' AND o.connection > c.name
                 ORDER BY o.connection LIMIT 1)
          FROM c WHERE c.name IS NOT NULL)
    SELECT c.name,
           (SELECT o.next_attempt_at FROM @extschema@.outbox o
             WHERE o.status = 'pending' AND o.connection = c.name
             ORDER BY o.connection, o.next_attempt_at LIMIT 1)
      FROM c
     WHERE c.name IS NOT NULL
$$;
REVOKE ALL ON FUNCTION @extschema@.pending_connections() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.pending_connections() IS
'Internal, for the worker: each connection with pending rows, and its earliest next_attempt_at';

-- Every function that sends or enqueues takes the connection as its last
-- argument, 'default' when omitted: existing calls keep working.  A new
-- argument is a new signature: the 0.7.0 functions are replaced, and the
-- EXECUTE grants a DBA gave on them are carried over to the new ones.
-- (kept in a transaction-local setting: a table made here would become a
-- member of the extension)
SELECT pg_catalog.set_config('hubspot_events_upgrade.carried_grants', coalesce((
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'name', p.proname, 'grantee', a.grantee::regrole::text, 'grantable', a.is_grantable))
      FROM pg_catalog.pg_proc p
     CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
     WHERE p.pronamespace = '@extschema@'::regnamespace
       AND p.proname IN ('hubspot_upsert_subscriber', 'hubspot_upsert_event', 'hubspot_cancel_event',
                         'hubspot_complete_event', 'hubspot_enqueue_subscriber', 'hubspot_enqueue_event',
                         'hubspot_enqueue_cancel_event', 'hubspot_enqueue_complete_event')
       AND a.privilege_type = 'EXECUTE'
       AND a.grantee <> p.proowner
       AND a.grantee <> 0), '[]')::text, true);

DROP FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb);
DROP FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb);
DROP FUNCTION @extschema@.hubspot_cancel_event(text, text);
DROP FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz);
DROP FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb);
DROP FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb);
DROP FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text);
DROP FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz);

CREATE FUNCTION @extschema@.hubspot_upsert_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb,
    connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_upsert_subscriber';
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb, text) IS
'Record a marketing-event subscriber state (register, attend, cancel) for HubSpot contacts now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_upsert_event(external_event_id text, external_account_id text, event jsonb,
                                                 connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_upsert_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_upsert_event(text, text, jsonb, text) IS
'Create or update a marketing event in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_cancel_event(external_event_id text, external_account_id text,
                                                 connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_cancel_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_cancel_event(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_cancel_event(text, text, text) IS
'Mark a marketing event cancelled in HubSpot now, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_complete_event(external_event_id text, external_account_id text,
                                                   start_date_time timestamptz, end_date_time timestamptz,
                                                   connection text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_complete_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_complete_event(text, text, timestamptz, timestamptz, text) IS
'Mark a marketing event completed in HubSpot now, with its start and end, and return HubSpot''s answer';

CREATE FUNCTION @extschema@.hubspot_enqueue_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb,
    connection text DEFAULT 'default')
RETURNS bigint[]
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_subscriber';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_subscriber(text, text, text, jsonb, text) IS
'Validate and write subscriber-state changes to the outbox in the current transaction; the worker sends them after commit. Returns the new outbox ids';

CREATE FUNCTION @extschema@.hubspot_enqueue_event(external_event_id text, external_account_id text, event jsonb,
                                                  connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_event(text, text, jsonb, text) IS
'Queue the creation or update of a marketing event in the outbox (sent after commit, before the event''s later subscriber states); returns the row id';

CREATE FUNCTION @extschema@.hubspot_enqueue_cancel_event(external_event_id text, external_account_id text,
                                                         connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_cancel_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_cancel_event(text, text, text) IS
'Queue the cancellation of a marketing event in the outbox; returns the row id';

CREATE FUNCTION @extschema@.hubspot_enqueue_complete_event(external_event_id text, external_account_id text,
                                                           start_date_time timestamptz, end_date_time timestamptz,
                                                           connection text DEFAULT 'default')
RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_enqueue_complete_event';
REVOKE ALL ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz, text) IS
'Queue the completion of a marketing event in the outbox; returns the row id';

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT p.oid::regprocedure AS fn, c.grantee, c.grantable
               FROM pg_catalog.jsonb_to_recordset(
                      pg_catalog.current_setting('hubspot_events_upgrade.carried_grants')::jsonb)
                      AS c(name text, grantee text, grantable boolean)
               JOIN pg_catalog.pg_proc p
                 ON p.proname = c.name AND p.pronamespace = '@extschema@'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', g.fn, g.grantee,
                                  CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- ---- managing connections ----

-- A connection with a static credential (a service key, a project app's
-- static token, a legacy private-app token) read from a server file, like
-- hubspot_events.access_token_file.  Superuser only: it names a server
-- file.  Returns the new row.
CREATE FUNCTION @extschema@.create_connection(name text, token_file text)
RETURNS @extschema@.connections
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_create_connection';
REVOKE ALL ON FUNCTION @extschema@.create_connection(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.create_connection(text, text) IS
'Create a connection whose token is read from a server file (superuser only)';

-- Delete a connection and its secret.  Refused while rows are pending or in
-- flight for it, unless force: they then fail with CONNECTION_DROPPED.  The
-- connection default cannot be dropped (it is the server's settings).
CREATE FUNCTION @extschema@.drop_connection(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conn text := name;
    waiting bigint;
BEGIN
    IF conn IS NULL OR force IS NULL THEN
        RAISE EXCEPTION 'drop_connection() needs a name and force'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF conn = 'default' THEN
        RAISE EXCEPTION 'the connection "default" cannot be dropped'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is the credential the server''s settings describe (hubspot_events.access_token_file or the OAuth settings).';
    END IF;
    PERFORM 1 FROM @extschema@.connections c WHERE c.name = conn FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connection "%" does not exist', conn
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT count(*) INTO waiting FROM @extschema@.outbox o
     WHERE o.connection = conn AND o.status IN ('pending', 'sending');
    IF waiting > 0 AND NOT force THEN
        RAISE EXCEPTION 'connection "%" has % rows pending or in flight', conn, waiting
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait for them (hubspot_events.flush()), or drop it with force => true: they then fail with CONNECTION_DROPPED.';
    END IF;
    UPDATE @extschema@.outbox o
       SET status = 'failed', error_category = 'CONNECTION_DROPPED',
           error_message = pg_catalog.format('the connection "%s" was dropped', conn),
           error_subcategory = NULL, http_status = NULL, correlation_id = NULL, error_body = NULL,
           last_attempt_at = pg_catalog.now()
     WHERE o.connection = conn AND o.status IN ('pending', 'sending');
    DELETE FROM @extschema@.connections c WHERE c.name = conn;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.drop_connection(text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.drop_connection(text, boolean) IS
'Delete a connection and its secret; refused while rows wait for it unless force (they then fail with CONNECTION_DROPPED)';

-- ---- the views: each row's connection, and the connections' holds ----

-- failed_syncs and waiting show each row's connection (new last column);
-- waiting says when a row waits for its connection (held, disconnected,
-- or dropped: no_connection) and lists the rows in the claim's order, by
-- connection.  status counts the connections held and disconnected.
CREATE OR REPLACE VIEW @extschema@.failed_syncs WITH (security_barrier = true) AS
SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,
       http_status, error_category, error_subcategory, correlation_id, error_message,
       last_attempt_at, source, created_at, error_body, kind, event, attempt_history, connection
  FROM @extschema@.outbox
 WHERE status = 'failed';

CREATE OR REPLACE VIEW @extschema@.waiting WITH (security_barrier = true) AS
SELECT o.id, o.kind, o.external_event_id, o.subscriber_state, o.external_account_id,
       o.contact_key, o.created_at, o.attempts, o.next_attempt_at,
       r.code,
       CASE r.code
         WHEN 'worker_not_running' THEN
              CASE WHEN s.pid IS NULL THEN 'worker not running'
                   ELSE pg_catalog.format('worker not running for this database (it serves "%s")', s.database) END
         WHEN 'standby' THEN 'standby: this server is a standby; the primary''s worker sends'
         WHEN 'paused' THEN 'paused: hubspot_events.resume() restarts sending'
         WHEN 'held' THEN 'held: ' || coalesce(cn.held_reason, s.held_reason, 'HubSpot refused the connection''s credential')
         WHEN 'disconnected' THEN pg_catalog.format('disconnected: the connection "%s" needs connect_oauth() again%s', o.connection,
              coalesce(' (' || cn.held_reason || ')', ''))
         WHEN 'no_connection' THEN pg_catalog.format('the connection "%s" does not exist: the worker fails the row (CONNECTION_DROPPED)', o.connection)
         WHEN 'behind' THEN pg_catalog.format('behind row %s (%s)', b.behind_id,
              CASE WHEN b.behind_event THEN 'its event''s upsert goes first'
                   ELSE 'an older change of the same contact goes first' END)
         WHEN 'rate_limited' THEN pg_catalog.format('rate limited until %s%s',
              greatest(o.next_attempt_at, s.rate_limited_until),
              coalesce(' (' || s.rate_limit_reason || ')', ''))
         WHEN 'backoff' THEN pg_catalog.format('backoff until %s (attempt %s of %s, last error: %s)',
              o.next_attempt_at, o.attempts,
              coalesce(pg_catalog.current_setting('hubspot_events.max_attempts', true), '?'),
              coalesce(o.error_category || ': ' || o.error_message, o.error_category, o.error_message, 'none recorded'))
         ELSE 'due: goes in the worker''s next turn'
       END AS reason,
       b.behind_id,
       o.error_category AS last_error_category,
       o.error_message AS last_error_message,
       o.correlation_id AS last_correlation_id,
       o.connection
  FROM @extschema@.outbox o
  LEFT JOIN @extschema@.connections cn ON cn.name = o.connection
 CROSS JOIN (SELECT w.pid, w.state, w.database, w.held_reason,
                    w.rate_limited_until, w.rate_limit_reason,
                    coalesce(c.paused, false) AS paused
               FROM @extschema@.worker_info() w
               LEFT JOIN @extschema@.worker_control c ON true) s
 CROSS JOIN LATERAL (
       SELECT coalesce(
                (SELECT min(p.id) FROM @extschema@.outbox p
                  WHERE (p.external_event_id || ' ' || p.external_account_id || ' ' || p.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || o.contact_key)
                    AND p.external_event_id = o.external_event_id
                    AND p.external_account_id = o.external_account_id
                    AND p.contact_key = o.contact_key
                    AND p.id < o.id
                    AND p.status NOT IN ('sending', 'sent', 'failed')),
                (SELECT min(f.id) FROM @extschema@.outbox f
                  WHERE f.status = 'sending'
                    AND f.external_event_id = o.external_event_id
                    AND f.external_account_id = o.external_account_id
                    AND f.contact_key = o.contact_key)) AS contact_behind,
              CASE WHEN o.kind = 'subscriber' THEN coalesce(
                (SELECT min(e.id) FROM @extschema@.outbox e
                  WHERE (e.external_event_id || ' ' || e.external_account_id || ' ' || e.contact_key)
                      = (o.external_event_id || ' ' || o.external_account_id || ' ' || '')
                    AND e.external_event_id = o.external_event_id
                    AND e.external_account_id = o.external_account_id
                    AND e.contact_key = ''
                    AND e.kind = 'event_upsert'
                    AND e.status NOT IN ('sending', 'sent', 'failed')),
                (SELECT min(f.id) FROM @extschema@.outbox f
                  WHERE f.status = 'sending'
                    AND f.kind = 'event_upsert'
                    AND f.external_event_id = o.external_event_id
                    AND f.external_account_id = o.external_account_id)) END AS event_behind
        OFFSET 0   -- evaluated once per row, not once per reference below
     ) k
 CROSS JOIN LATERAL (
       SELECT coalesce(k.contact_behind, k.event_behind) AS behind_id,
              k.contact_behind IS NULL AND k.event_behind IS NOT NULL AS behind_event
     ) b
 CROSS JOIN LATERAL (
       SELECT CASE
                WHEN s.pid IS NULL OR s.database <> pg_catalog.current_database() THEN 'worker_not_running'
                WHEN s.state = 'standby' THEN 'standby'
                WHEN s.paused THEN 'paused'
                WHEN cn.name IS NULL THEN 'no_connection'
                WHEN cn.state = 'disconnected' THEN 'disconnected'
                WHEN cn.state = 'held' OR (o.connection = 'default' AND s.held_reason IS NOT NULL) THEN 'held'
                WHEN b.behind_id IS NOT NULL THEN 'behind'
                WHEN s.rate_limited_until > pg_catalog.now() THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() AND (o.http_status = 429 OR o.attempts = 0) THEN 'rate_limited'
                WHEN o.next_attempt_at > pg_catalog.now() THEN 'backoff'
                ELSE 'due'
              END AS code
     ) r
 WHERE o.status = 'pending'
 ORDER BY o.connection, o.next_attempt_at, o.id;

CREATE OR REPLACE VIEW @extschema@.status AS
SELECT w.pid AS worker_pid,
       CASE WHEN w.pid IS NOT NULL AND w.database <> pg_catalog.current_database()
            THEN 'not serving this database'
            ELSE w.state END AS worker_state,
       w.database AS worker_database,
       coalesce(c.paused, false) AS paused,
       w.held_reason,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'pending' AND next_attempt_at <= pg_catalog.now()) AS due,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sending') AS sending,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'sent') AS sent,
       (SELECT count(*) FROM @extschema@.outbox WHERE status = 'failed') AS failed,
       pg_catalog.now() - (SELECT min(created_at) FROM @extschema@.outbox WHERE status = 'pending') AS oldest_pending_age,
       w.requests, w.successes, w.errors, w.errors_by_category,
       w.last_success_at, w.last_error_at, w.last_error, w.started_at,
       w.settings_loaded_at AS worker_settings_loaded_at,
       w.rate_limited_until, w.rate_limit_reason,
       w.daily_remaining AS daily_quota_remaining,
       w.today_requests,
       round(w.today_errors::numeric / nullif(w.today_requests, 0), 4) AS error_share_today,
       @extschema@.worker_api_version() AS api_version,
       (SELECT count(*) FROM @extschema@.connections WHERE state = 'held') AS held_connections,
       (SELECT count(*) FROM @extschema@.connections WHERE state = 'disconnected') AS disconnected_connections
  FROM @extschema@.worker_info() w
  LEFT JOIN @extschema@.worker_control c ON true;

-- The end of an OAuth app's install flow (HubSpot's authorization-code
-- grant): the application's redirect handler passes the one-time code
-- HubSpot sent to its redirect URL, and the redirect_uri it was issued for.
-- The code is exchanged at hubspot_events.oauth_token_url with the app's
-- client id and secret (the server's OAuth settings); the refresh token of
-- the answer is sealed (AES-256-GCM, under the key in
-- hubspot_events.secret_key_file) into connection_secrets, and the
-- connection's row is returned, with the hub_id of the installing account.
-- Connecting a name again (a new code for the same account) replaces its
-- refresh token and makes it active again; a name keeps its HubSpot
-- account (a code another account granted is refused).  Refused before the
-- code is spent when no key is configured, the app's settings are missing,
-- or the name is taken by a token_file connection.  Not SECURITY DEFINER: it
-- writes the connections' tables with their owner's rights, and the
-- refresh token never passes through SQL.  A DBA grants it to the role of
-- the application that handles the redirect.
CREATE FUNCTION @extschema@.connect_oauth(name text, code text, redirect_uri text)
RETURNS @extschema@.connections
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_connect_oauth';
REVOKE ALL ON FUNCTION @extschema@.connect_oauth(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.connect_oauth(text, text, text) IS
'Connect a HubSpot account with the authorization code of an OAuth install; its refresh token is stored sealed, never in clear';

-- Every worker of the cluster, from shared memory: with
-- hubspot_events.databases, the launcher and a worker per database it
-- serves (kind 'launcher', 'launched'); without, the one static worker of
-- hubspot_events.database (kind 'static').  Cluster-wide: it names every
-- served database and their workers' last errors, so it is granted to no
-- role by default (docs/security.md).
CREATE FUNCTION @extschema@.workers_info(
    OUT pid integer, OUT kind text, OUT datid oid, OUT database text, OUT state text,
    OUT held_reason text, OUT started_at timestamptz, OUT requests bigint,
    OUT successes bigint, OUT errors bigint, OUT last_error text)
RETURNS SETOF record
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_workers_info';
REVOKE ALL ON FUNCTION @extschema@.workers_info() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.workers_info() IS
'Every worker of the cluster (the launcher, a worker per database, or the static worker), from shared memory';

CREATE VIEW @extschema@.workers AS
SELECT pid, kind, datid, database, state, held_reason, started_at,
       requests, successes, errors, last_error
  FROM @extschema@.workers_info();
REVOKE ALL ON @extschema@.workers FROM PUBLIC;
COMMENT ON VIEW @extschema@.workers IS
'Every worker of the cluster: the launcher and the worker of each database it serves, or the static worker';
