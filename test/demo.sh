#!/bin/bash
# The demo, end to end, on a fresh Debian 12 machine:
#   bash test/demo.sh        (as root)
# Builds and installs the extension, starts the bundled mock HubSpot and a
# throwaway cluster pointed at it, records a subscriber state, shows
# HubSpot's answer and what the mock received, then shows a rejected call
# with HubSpot's category and correlationId.  Everything is removed at the end.
source "$(dirname "$0")/lib.sh"

hs_require_root
hs_install_packages
hs_build_install
hs_make_workdir
hs_write_token
hs_start_mock
hs_start_cluster "shared_preload_libraries = 'hubspot_events'" "hubspot_events.database = 'postgres'"

echo
echo "The cluster's settings point at the mock HubSpot:"
echo "    hubspot_events.api_base_url      = '$HS_MOCK_URL'"
echo "    hubspot_events.access_token_file = '$HS_WORK/token'"
echo

hs_psql -d postgres -e <<'SQL'
CREATE EXTENSION hubspot_events;

-- Record that two contacts attended a webinar, and get HubSpot's answer.
SELECT jsonb_pretty(hubspot_events.hubspot_upsert_subscriber(
         'webinar-2026-03',          -- externalEventId
         'attended',                 -- normalised to "attend"
         'acme',                     -- externalAccountId
         '[{"vid": 101, "interactionDateTime": "2026-03-01T17:00:00Z", "properties": {"source": "demo"}},
           {"vid": 102}]')) AS answer;
SQL

echo
echo "What the mock HubSpot received:"
python3 - "$HS_MOCK_LOG" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"    {r['method']} {r['raw_path']}?externalAccountId={r['query'].get('externalAccountId')}")
    print(f"    Authorization: {r['headers'].get('authorization')}   User-Agent: {r['headers'].get('user-agent')}")
    print(f"    body: {json.dumps(r['body'])}")
    print(f"    spec check: {'valid' if not r['spec_errors'] else r['spec_errors']}")
PY

echo
echo "A call HubSpot rejects (the mock answers 404 for this event id):"
hs_psql -d postgres -e -v ON_ERROR_STOP=0 <<'SQL'
\set VERBOSITY verbose
SELECT hubspot_events.hubspot_upsert_subscriber('mock:status=404', 'register', 'acme', '{"vid": 103}');
SQL

echo
echo "The transactional way: an attendance table with the sync_attendance trigger."
echo "The worker sends what commits; a rolled-back write sends nothing; HubSpot's"
echo "rejections land in failed_syncs with its category and correlationId."
hs_psql -d postgres -e <<'SQL'
CREATE TABLE attendance (webinar text, status text, hubspot_vid bigint, checked_in timestamptz);
CREATE TRIGGER attendance_to_hubspot AFTER INSERT OR UPDATE OR DELETE ON attendance
  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
    'event_id=webinar', 'state=status', 'vid=hubspot_vid', 'account_id:=acme', 'at=checked_in', 'on_delete=cancel');

INSERT INTO attendance VALUES ('webinar-2026-03', 'registered', 201, now()), ('webinar-2026-03', 'registered', 202, now());
UPDATE attendance SET status = 'attended' WHERE hubspot_vid = 201;
BEGIN;
INSERT INTO attendance VALUES ('webinar-2026-03', 'registered', 203, now());
ROLLBACK;
INSERT INTO attendance VALUES ('mock:status=404', 'registered', 204, now());   -- HubSpot will answer 404
INSERT INTO attendance VALUES ('webinar-2026-03', 'maybe', 205, now());        -- invalid: recorded, never sent

SELECT hubspot_events.flush('10 s') AS drained;
SELECT id, external_event_id, subscriber_state, contact->>'vid' AS vid, status, attempts, http_status,
       correlation_id IS NOT NULL AS has_correlation_id
  FROM hubspot_events.outbox WHERE source = 'public.attendance' ORDER BY id;

-- which syncs failed, and why
SELECT id, external_event_id, subscriber_state, error_category, error_message, correlation_id
  FROM hubspot_events.failed_syncs ORDER BY id;
SELECT worker_state, pending, sent, failed, requests, successes, errors, errors_by_category FROM hubspot_events.status;
SQL
echo
echo "Every request the mock received (the direct calls above, then the worker's):"
python3 - "$HS_MOCK_LOG" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    vids = [i['vid'] for i in (r.get('body') or {}).get('inputs', [])]
    print(f"    {r['status']}  {r['path'].get('subscriberState'):8} {r['path'].get('externalEventId'):18} vids {vids}")
PY
echo
echo "Demo finished: the cluster and the mock are stopped and removed."
