/* hubspot_events 0.2.0 -> 0.3.0: marketing events, OAuth, email and attendance endpoints, security. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.3.0'" to load this file. \quit


-- ---------------------------------------------------------------------------
-- Security: operators need only EXECUTE
-- ---------------------------------------------------------------------------

-- In 0.2.0 these ran with the caller's rights, so an operator granted
-- EXECUTE (as the README said) still failed on the outbox, and only a role
-- with UPDATE or DELETE on the whole outbox could use them; that is more
-- than they need.  They now run with the rights of the extension's owner;
-- their search_path is already pinned (pg_catalog, pg_temp), and every name
-- they use is schema-qualified.  EXECUTE stays revoked from PUBLIC: a role
-- must be granted each one.  claim_due stays the caller's (only the worker
-- calls it).
ALTER FUNCTION @extschema@.retry_failed(bigint[], boolean) SECURITY DEFINER;
ALTER FUNCTION @extschema@.purge_sent(interval) SECURITY DEFINER;
ALTER FUNCTION @extschema@.purge_failed(interval) SECURITY DEFINER;
ALTER FUNCTION @extschema@.pause() SECURITY DEFINER;
ALTER FUNCTION @extschema@.resume() SECURITY DEFINER;
ALTER FUNCTION @extschema@.flush(interval) SECURITY DEFINER;
