"""Mock of HubSpot's Marketing Events API for the hubspot_events tests.

Standard library only (Python 3.11).  Run ``test/mock_hubspot.py --help``
for the command line and ``test/mock_hubspot.py --self-test`` for a quick
check (``python3 -m mock_hubspot`` from test/ is the same).

What it does
------------
* Every request under ``/marketing/`` is matched against the OpenAPI spec of
  its API version and checked: route, required query parameters, JSON body
  against the schema,
  and the headers our client must send (Content-Type, Accept, User-Agent,
  Authorization).  Violations answer 400 (401 for authentication, 404 for an
  unknown route) in HubSpot's error shape.
* Both path forms are served (``--spec`` may be given several times; by
  default ``openapi/marketing-events-2026-09.openapi.json`` and
  ``openapi/marketing-events-v3.openapi.json`` in test/, next to this package):
  ``/marketing/v3/marketing-events/...`` is checked against the v3 spec, and
  the date-versioned ``/marketing/marketing-events/{version}/...`` against the
  newest date spec, for every version the mock serves (``api_versions``
  in knobs.py; default 2026-03 and 2026-09, as HubSpot in December 2026).  Another
  version is an unknown route (404).  The log entry's ``api_version`` is the
  version the path named and ``spec`` the version of the spec that checked it.
* Tests steer the answers with "knobs": per request through an
  ``externalEventId`` of the form ``mock:key=value;key=value`` or globally
  through ``POST /__mock/config``.  Every knob is documented in knobs.py.
* Every /marketing/ request is recorded (JSON Lines file with --log, and
  ``GET /__mock/requests``).  The bearer token is never written anywhere.
* It remembers what the subscriber-state writes it answered 2xx left in
  HubSpot (the participations) and serves HubSpot's participation reads:
  ``GET .../participations/{externalAccountId}/{externalEventId}/breakdown``
  (?contactIdentifier=&state=&limit=&after=) and
  ``GET .../participations/{externalAccountId}/{externalEventId}`` (the
  counters), in both path forms; participations.py documents them.
* Hubs (optional): many HubSpot accounts, defined by ``POST /__mock/hubs``,
  each reached with its own static tokens or the OAuth tokens issued for it
  (the authorization-code grant installs the app in a hub, the refresh
  grant renews them), each with its own rolling-window limiter (429
  TEN_SECONDLY_ROLLING, or DAILY), X-HubSpot-RateLimit-* headers and stats;
  tokens can be revoked and the app uninstalled.  A hub's request is
  logged with ``hub_id`` and ``token_label`` (``static:<i>`` / ``oauth:<n>``,
  never the token); other requests have both null.  The global knobs
  (rate_limit ...) still apply to every request, the hubs' included.
  hubs.py and control.py's docstring document them.  Without hubs nothing
  changes.

Control API (loopback only)
---------------------------
GET /__mock/health, GET /__mock/requests, GET|POST /__mock/config,
POST /__mock/reset (entries, per-event counters, global knobs, rate window,
daily counter, storm, stats, participations and the email -> vid mapping),
GET /__mock/stats[?window_ms=W] (counts since the last reset, see State.stats
in state.py), POST /__mock/oauth/expire, GET /__mock/oauth/requests,
GET /__mock/participations[?externalAccountId=A&externalEventId=E],
POST /__mock/participations/forget and POST /__mock/participations/set,
GET|POST /__mock/hubs, POST /__mock/hubs/clear, POST /__mock/hubs/revoke,
POST /__mock/hubs/uninstall, POST /__mock/oauth/codes and
GET /__mock/oauth/issued[?hub_id=N] (shapes in control.py's docstring).
Hubs, their tokens and the OAuth install states survive /__mock/reset
(their counters do not); POST /__mock/hubs/clear removes them.

HTTPS
-----
``--tls-cert FILE --tls-key FILE`` serve HTTPS (TLS 1.2 or later) instead of
HTTP, the control API included.  A client that refuses the certificate
leaves no request: the mock logs "TLS handshake with ... failed" on stderr
and counts it (``tls_handshake_failures`` in /__mock/stats).

Log entries: ``time`` is the wall clock (time.time(), seconds since the epoch)
when the request line was read, before its body; benchmarks compare it with
a client's clock on the same machine.  ``--lean`` (benchmarks) keeps no
entries and no participations in memory and skips the JSON-schema check of
bodies.

Modules
-------
  cli.py       the command line (main)
  server.py    the threaded HTTP(S) server
  handler.py   the HTTP handler: reading requests, sending answers, routing
  api.py       the /marketing/ API: checks a request, answers it
  faults.py    what the knobs do to an answer: fault injection, answer bodies
  participations.py  what the writes left in HubSpot, and the participation reads
  oauth.py     the OAuth token endpoint (refresh and authorization-code grants)
  hubs.py      hubs: HubSpot accounts with their own credentials, limiter and stats
  control.py   the control API under /__mock/
  state.py     shared state: limiter, stats, known events, participations, OAuth tokens, log
  knobs.py     the knobs: documentation and parsing
  spec.py      OpenAPI specs: loading, routing, a small JSON-schema validator
               (with compiled checks in front of it for the valid bodies)
  common.py    helpers and HubSpot's texts
  selftest.py  --self-test
  cpubench.py  not part of the mock: its CPU per request, for a batch size
               (python3 test/mock_hubspot/cpubench.py --help)
"""
