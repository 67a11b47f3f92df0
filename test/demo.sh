#!/bin/bash
# The demo, end to end, on a fresh Debian 12 machine:
#   sudo bash test/demo.sh
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
hs_start_cluster

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
echo "Demo finished: the cluster and the mock are stopped and removed."
