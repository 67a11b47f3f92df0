/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  verify_event(): prove what HubSpot holds.  Reads HubSpot's
 *	  participations breakdown of one marketing event, page by page and
 *	  paced like the worker's requests (hubspot_api.c's route, pacing.c's
 *	  limiter in this backend), and compares it with the latest state the
 *	  outbox sent for each contact of the event (within sent_retention).
 *	  Returns one row per contact that differs; with repair, enqueues each
 *	  such contact's latest state again, as it was sent.
 *
 *	  HubSpot's read states map to the states sent: REGISTERED to register,
 *	  ATTENDED to attend, CANCELLED to cancel; NO_SHOW (HubSpot's own
 *	  verdict on a registered contact who did not attend) matches register.
 *	  Contacts HubSpot holds that the outbox never sent are not reported.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* a breakdown of more pages than this is refused: 1,000,000 participations */
#define HS_VERIFY_MAX_PAGES		10000
/* 429s in a row on one page before giving up */
#define HS_VERIFY_MAX_429		5

/* The latest sent state of one contact of the event, from the outbox. */
typedef struct HsSentState
{
	char	   *key;			/* contact_key: the vid, or the email in lower case */
	char	   *state;			/* register, attend, cancel */
	Datum		sent_at;
	bool		sent_at_null;
	char	   *correlation_id; /* or NULL */
	char	   *contact;		/* the contact as sent (JSON text) */
	const char *hubspot_state;	/* what HubSpot holds, once read */
} HsSentState;

/* The latest sent state of each contact of the event (not a dry run's). */
static List *
read_sent_states(const char *event_id, const char *account_id, const char *conn)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_080 = NULL;
	bool		per_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;
	Datum		values[3];
	List	   *states = NIL;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(event_id);
	values[1] = CStringGetTextDatum(account_id);
	values[2] = CStringGetTextDatum(conn ? conn : "default");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if ((per_connection ? plan_080 : plan) == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		SPIPlanPtr	p;

		p = SPI_prepare(per_connection ?
						"SELECT DISTINCT ON (o.contact_key) o.contact_key, o.subscriber_state, o.sent_at,"
						"       o.correlation_id::pg_catalog.text, o.contact::pg_catalog.text"
						"  FROM " HS_SCHEMA ".outbox o"
						" WHERE o.external_event_id OPERATOR(pg_catalog.=) $1"
						"   AND o.external_account_id OPERATOR(pg_catalog.=) $2"
						"   AND o.connection OPERATOR(pg_catalog.=) $3"
						"   AND o.kind OPERATOR(pg_catalog.=) 'subscriber'"
						"   AND o.status OPERATOR(pg_catalog.=) 'sent' AND o.dry_run IS NOT TRUE"
						" ORDER BY o.contact_key, o.id DESC" :
						"SELECT DISTINCT ON (o.contact_key) o.contact_key, o.subscriber_state, o.sent_at,"
						"       o.correlation_id::pg_catalog.text, o.contact::pg_catalog.text"
						"  FROM " HS_SCHEMA ".outbox o"
						" WHERE o.external_event_id OPERATOR(pg_catalog.=) $1"
						"   AND o.external_account_id OPERATOR(pg_catalog.=) $2"
						"   AND o.kind OPERATOR(pg_catalog.=) 'subscriber'"
						"   AND o.status OPERATOR(pg_catalog.=) 'sent' AND o.dry_run IS NOT TRUE"
						" ORDER BY o.contact_key, o.id DESC", per_connection ? 3 : 2, types);
		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the outbox's sent states");
		if (per_connection)
			plan_080 = p;
		else
			plan = p;
	}
	if (SPI_execute_plan(per_connection ? plan_080 : plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the outbox's sent states");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(caller);
		HsSentState *s = palloc0(sizeof(HsSentState));
		s->key = SPI_getvalue(tup, desc, 1);
		s->state = SPI_getvalue(tup, desc, 2);
		s->sent_at = SPI_getbinval(tup, desc, 3, &s->sent_at_null);
		s->correlation_id = SPI_getvalue(tup, desc, 4);
		s->contact = SPI_getvalue(tup, desc, 5);
		if (s->key && s->state && s->contact)
			states = lappend(states, s);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return states;
}

/*
 * One page of the breakdown, paced; a 429 waits for the pacing's pause and
 * asks again (HS_VERIFY_MAX_429 times), an expired OAuth token is refreshed
 * once; any other failure is the call's ERROR.
 */
/* this backend's pacing of its reads (one connection at a time) */
static HsPacer *verify_pacer = NULL;

static int64
verify_wait_ms(HsHttpRequest *req)
{
	return hs_pacing_wait_ms(verify_pacer);
}

static void
verify_note_start(HsHttpRequest *req)
{
	hs_pacing_note_start(verify_pacer);
}

static void
read_page(const char *url, const char **token, const char *conn, int pages_read, HsHttpResult *res)
{
	HsSendHooks hooks = {0};
	bool		refreshed = false;

	if (verify_pacer == NULL)
		verify_pacer = hs_pacer_create(TopMemoryContext);
	hooks.wait_ms = verify_wait_ms;
	hooks.on_start = verify_note_start;
	for (int tries = 0;; tries++)
	{
		HsErrorBody err;
		HsOutcome	o;

		/* one request at a time: the answer, read once, teaches the pacing before the next */
		hs_http_get_json(url, *token, &hooks, res);
		hs_parse_error_body(res->body, res->body_len, &err);
		(void) hs_pacing_note_answer(verify_pacer, res, &err, hs_retry_after_ms(res->retry_after));
		hs_api_read_answer(res, &err, &o);
		hs_metrics_count_request(&o);
		if (o.kind == HS_OUTCOME_SENT)
			return;
		if (o.kind == HS_OUTCOME_RATE_LIMITED && tries < HS_VERIFY_MAX_429)
			continue;			/* the next start waits for the pause */
		if (!refreshed && conn == NULL && hs_oauth_enabled() && hs_answer_is_expired_token(res))
		{
			hs_oauth_token_expired(*token);
			*token = hs_get_access_token();
			refreshed = true;
			continue;
		}
		hs_report_http_failure(res, psprintf("verify_event read %d page%s of the breakdown before this error.",
											 pages_read, pages_read == 1 ? "" : "s"));
	}
}

/* Every participation HubSpot holds for the event, read to the last page. */
static List *
read_breakdown(const char *event_id, const char *account_id, const char *conn)
{
	const char *token = hs_connection_access_token(conn);
	char	   *root = hs_api_root();
	char	   *after = NULL;
	List	   *items = NIL;

	for (int page = 0;; page++)
	{
		HsHttpResult res = {0};
		char	   *next = NULL;

		if (page >= HS_VERIFY_MAX_PAGES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the breakdown of marketing event \"%s\" has more than %d pages",
							event_id, HS_VERIFY_MAX_PAGES)));
		read_page(hs_api_breakdown_url(root, event_id, account_id, after), &token, conn, page, &res);
		if (!hs_parse_breakdown(res.body, res.body_len, &items, &next))
			ereport(ERROR,
					(errcode(ERRCODE_HS_UNEXPECTED),
					 errmsg("HubSpot's participations breakdown could not be read"),
					 errdetail("Page %d answered HTTP %ld without a \"results\" array.", page + 1, res.http_status)));
		if (next == NULL || next[0] == '\0')
			break;
		if (after != NULL && strcmp(next, after) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_HS_UNEXPECTED),
					 errmsg("HubSpot's participations breakdown did not advance"),
					 errdetail("Page %d named the same next page as the page before.", page + 1)));
		after = next;
	}
	return items;
}

/* HubSpot's read state for a state sent, and whether what HubSpot holds matches it. */
static bool
state_matches(const char *sent, const char *held)
{
	if (held == NULL)
		return false;
	if (strcmp(sent, "register") == 0)
		return strcmp(held, "REGISTERED") == 0 || strcmp(held, "NO_SHOW") == 0;
	if (strcmp(sent, "attend") == 0)
		return strcmp(held, "ATTENDED") == 0;
	if (strcmp(sent, "cancel") == 0)
		return strcmp(held, "CANCELLED") == 0;
	return false;
}

/* What HubSpot holds for each sent contact (by its id, or its email). */
static void
match_participations(List *sent, List *held)
{
	ListCell   *ls;

	foreach(ls, sent)
	{
		HsSentState *s = (HsSentState *) lfirst(ls);
		ListCell   *lh;

		foreach(lh, held)
		{
			HsParticipation *p = (HsParticipation *) lfirst(lh);

			if ((p->contact_id && strcmp(p->contact_id, s->key) == 0) ||
				(p->email && strcmp(p->email, s->key) == 0))
			{
				s->hubspot_state = p->state;
				break;
			}
		}
	}
}

/* Enqueue a contact's latest sent state again, as it was sent; returns the new row's id. */
static int64
enqueue_again(const char *event_id, const char *account_id, const char *conn, const HsSentState *s)
{
	HsOutboxRow row = {0};

	row.connection = conn;
	row.external_event_id = event_id;
	row.subscriber_state = s->state;
	row.external_account_id = account_id;
	row.contact = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s->contact)));
	row.contact_key = s->key;
	row.source = "verify_event";
	return hs_outbox_insert(&row, NULL);
}

PG_FUNCTION_INFO_V1(hubspot_verify_event);

/*
 * verify_event(external_event_id text, external_account_id text,
 *				connection text DEFAULT 'default', repair boolean DEFAULT false)
 *	 RETURNS TABLE (contact text, expected_state text, hubspot_state text,
 *					last_sent_at timestamptz, correlation_id uuid, repair_id bigint)
 */
Datum
hubspot_verify_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {
		"external_event_id", "external_account_id", "connection", "repair"
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *event_id;
	char	   *account_id;
	char	   *connection;
	bool		repair;
	List	   *sent;
	ListCell   *lc;

	hs_check_not_null(fcinfo, argnames, 4);
	event_id = hs_id_argument(fcinfo, 0, "external_event_id");
	account_id = hs_id_argument(fcinfo, 1, "external_account_id");
	repair = PG_GETARG_BOOL(3);
	hs_require_schema();
	connection = (char *) hs_connection_argument(fcinfo, 2);

	InitMaterializedSRF(fcinfo, 0);
	sent = read_sent_states(event_id, account_id, connection);
	if (sent == NIL)
		PG_RETURN_VOID();		/* nothing sent: nothing to compare, no request */
	match_participations(sent, read_breakdown(event_id, account_id, connection));

	foreach(lc, sent)
	{
		HsSentState *s = (HsSentState *) lfirst(lc);
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		if (state_matches(s->state, s->hubspot_state))
			continue;
		values[0] = CStringGetTextDatum(s->key);
		values[1] = CStringGetTextDatum(s->state);
		if (s->hubspot_state)
			values[2] = CStringGetTextDatum(s->hubspot_state);
		else
			nulls[2] = true;
		values[3] = s->sent_at;
		nulls[3] = s->sent_at_null;
		if (s->correlation_id)
			values[4] = DirectFunctionCall1(uuid_in, CStringGetDatum(s->correlation_id));
		else
			nulls[4] = true;
		if (repair)
			values[5] = Int64GetDatum(enqueue_again(event_id, account_id, connection, s));
		else
			nulls[5] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
