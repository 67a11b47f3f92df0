/* hubspot_events 0.2.0 -> 0.3.0: marketing events, OAuth, email and attendance endpoints, security. */
\echo Use "ALTER EXTENSION hubspot_events UPDATE TO '0.3.0'" to load this file. \quit

