/*
 * hubspot_events 0.1.0, frozen as released: never edit.  Newer versions are
 * reached from here by the upgrade scripts beside this file.
 */
\echo Use "CREATE EXTENSION hubspot_events" to load this file. \quit

CREATE FUNCTION @extschema@.hubspot_upsert_subscriber(
    external_event_id text,
    subscriber_state text,
    external_account_id text,
    contacts jsonb)
RETURNS jsonb
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'hubspot_upsert_subscriber';

-- It sends with the company's token: only roles granted EXECUTE may call it.
REVOKE ALL ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.hubspot_upsert_subscriber(text, text, text, jsonb) IS
'Record a marketing-event subscriber state (register, attend, cancel) for HubSpot contacts now, and return HubSpot''s answer';
