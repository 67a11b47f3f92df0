#!/bin/bash
# What reading the operations views costs on a large outbox (issue 16), as root:
#   bash bench/waiting.sh
# 1,000,000 outbox rows (900,000 sent, 100,000 pending: 10,000 contacts x 10
# changes), the worker paused, fsync on; prints the timings of waiting (LIMIT
# 20, 10,000 rows, all) with jit off and on, metrics, metrics_text() and
# verify_event's read of an event's sent rows.  Figures in docs/operations.md.
set -e
source "$(dirname "$0")/../test/lib.sh"
hs_require_root
hs_install_packages
hs_build_install
hs_make_workdir
hs_write_token
hs_start_mock --lean
hs_start_cluster "shared_preload_libraries = 'hubspot_events'" "hubspot_events.database = 'postgres'" "fsync = on"
hs_psql -d postgres -q <<'SQL'
CREATE EXTENSION hubspot_events;
SELECT hubspot_events.pause();
INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, sent_at, source)
SELECT 'ev-' || (g % 100), 'register', 'acme', jsonb_build_object('vid', g, 'interactionDateTime', 1700000000000, 'properties', '{}'::jsonb), g::text,
       'sent', now(), 'bench' FROM generate_series(1, 900000) g;
INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, source)
SELECT 'ev-p', CASE WHEN g % 2 = 0 THEN 'register' ELSE 'attend' END, 'acme',
       jsonb_build_object('vid', g % 10000, 'interactionDateTime', 1700000000000, 'properties', '{}'::jsonb), (g % 10000)::text,
       'pending', 'bench' FROM generate_series(1, 100000) g;
VACUUM ANALYZE hubspot_events.outbox;
SQL
hs_psql -d postgres <<'SQL'
\timing on
\echo == jit off
SET jit = off;
SELECT count(*) FROM (SELECT id, code, reason FROM hubspot_events.waiting LIMIT 20) w;
SELECT count(*) FROM (SELECT id, code, reason FROM hubspot_events.waiting LIMIT 20) w;
SELECT code, count(*) FROM (SELECT code FROM hubspot_events.waiting LIMIT 10000) w GROUP BY code;
SELECT code, count(*) FROM hubspot_events.waiting GROUP BY code;
\echo == jit on (the default)
SET jit = on;
SELECT count(*) FROM (SELECT id, code, reason FROM hubspot_events.waiting LIMIT 20) w;
SELECT code, count(*) FROM hubspot_events.waiting GROUP BY code;
\echo == metrics, metrics_text(), verify_event's read of one event's sent rows (9,000 of them)
SELECT count(*) FROM hubspot_events.metrics;
SELECT length(hubspot_events.metrics_text()) > 0;
SELECT count(*) FROM (SELECT DISTINCT ON (o.contact_key) o.contact_key
  FROM hubspot_events.outbox o WHERE o.external_event_id = 'ev-7' AND o.external_account_id = 'acme'
   AND o.kind = 'subscriber' AND o.status = 'sent' AND o.dry_run IS NOT TRUE ORDER BY o.contact_key, o.id DESC) s;
SQL
