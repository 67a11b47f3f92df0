/* hubspot_events 0.5.0 -> 0.6.0: HubSpot's date-versioned API (issue 12). */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.6.0'" to load this file. \quit

-- Requests are built for hubspot_events.api_version, whose default is now
-- HubSpot's date version 2026-09 (paths /marketing/marketing-events/2026-09/...);
-- 'v3' keeps the legacy paths.  The setting lives in the library: nothing
-- in the schema changes for it, except that status shows the version the
-- worker speaks.

CREATE FUNCTION @extschema@.worker_api_version()
RETURNS text
LANGUAGE c VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hubspot_worker_api_version';
REVOKE ALL ON FUNCTION @extschema@.worker_api_version() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.worker_api_version() IS
  'The HubSpot API version the background worker builds its requests in (its hubspot_events.api_version); NULL when no worker runs';

-- status calls it: every role that may run worker_info() (the operator
-- role README's GRANTs make) may run it too, so that what reads status
-- today still does after the update
DO $$
DECLARE
  grantee regrole;
BEGIN
  FOR grantee IN
    SELECT a.grantee::regrole
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.worker_info()'::pg_catalog.regprocedure
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) 0
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
  LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.worker_api_version() TO %s', grantee);
  END LOOP;
END $$;

-- status as before, with the worker's API version as its last column
-- (CREATE OR REPLACE keeps the view's grants)
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
       @extschema@.worker_api_version() AS api_version
  FROM @extschema@.worker_info() w
  LEFT JOIN @extschema@.worker_control c ON true;
