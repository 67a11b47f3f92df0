/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL-callable functions.
 *
 * hubspot_upsert_subscriber records a subscriber state now, from the
 * calling session: it validates everything before sending anything, sends
 * the contacts in requests of at most hubspot_events.batch_size, in order,
 * and stops at the first failure with an ERROR that says how many contacts
 * HubSpot had already recorded.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "catalog/pg_type.h"
#include "utils/array.h"

PG_FUNCTION_INFO_V1(hubspot_upsert_subscriber);

/* NULL arguments are errors naming the argument, never a NULL result. */
static void
check_not_null(FunctionCallInfo fcinfo, const char *const *argnames, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", argnames[i])));
}

static void
append_json_string_or_null(StringInfo buf, const char *s)
{
	if (s)
		escape_json(buf, s);
	else
		appendStringInfoString(buf, "null");
}

/*
 * hubspot_upsert_subscriber(external_event_id text, subscriber_state text,
 *							 external_account_id text, contacts jsonb) -> jsonb
 */
Datum
hubspot_upsert_subscriber(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {
		"external_event_id", "subscriber_state", "external_account_id", "contacts"
	};
	char	   *event_id;
	char	   *state_in;
	char	   *account_id;
	HsSubscriberState state;
	List	   *contacts;
	const char *token;
	char	   *url;
	int			ncontacts;
	int			batch;
	int			nrequests = 0;
	StringInfoData body;
	StringInfoData responses;
	HsHttpResult res = {0};
	Jsonb	   *last_body = NULL;
	StringInfoData out;
	bool		refreshed = false;

	check_not_null(fcinfo, argnames, 4);
	event_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	state_in = text_to_cstring(PG_GETARG_TEXT_PP(1));
	account_id = text_to_cstring(PG_GETARG_TEXT_PP(2));

	hs_validate_external_id("external_event_id", event_id);
	state = hs_validate_state(state_in);
	hs_validate_external_id("external_account_id", account_id);
	contacts = hs_validate_contacts(PG_GETARG_JSONB_P(3));

	token = hs_get_access_token();
	url = psprintf("%s/marketing/v3/marketing-events/events/%s/%s/upsert?externalAccountId=%s",
				   hs_api_base(), hs_url_escape(event_id), hs_state_name(state),
				   hs_url_escape(account_id));

	ncontacts = list_length(contacts);
	batch = hs_batch_size;
	initStringInfo(&body);
	initStringInfo(&responses);
	for (int first = 0; first < ncontacts; first += batch)
	{
		int			count = Min(batch, ncontacts - first);

		resetStringInfo(&body);
		hs_build_subscriber_body(&body, contacts, first, count);
		hs_http_post_json(url, token, body.data, body.len, &res);
		if (!refreshed && hs_oauth_enabled() && hs_answer_is_expired_token(&res))
		{
			/* the OAuth token expired early: refresh once and send again */
			hs_oauth_token_expired(token);
			token = hs_get_access_token();
			refreshed = true;
			hs_http_post_json(url, token, body.data, body.len, &res);
		}
		nrequests++;

		if (!res.transport_ok || res.http_status < 200 || res.http_status > 299)
			hs_report_http_failure(&res,
								   ncontacts > count ?
								   psprintf("%d of %d contacts were recorded before this error.",
											first, ncontacts) : NULL);

		last_body = hs_body_to_jsonb(res.body, res.body_len);
		appendStringInfo(&responses, "%s{\"http_status\":%ld,\"contacts\":%d,\"correlation_id\":",
						 responses.len ? "," : "", res.http_status, count);
		append_json_string_or_null(&responses, res.correlation_id);
		appendStringInfoChar(&responses, '}');
	}

	initStringInfo(&out);
	appendStringInfo(&out, "{\"http_status\":%ld,\"requests\":%d,\"contacts\":%d,\"correlation_id\":",
					 res.http_status, nrequests, ncontacts);
	append_json_string_or_null(&out, res.correlation_id);
	appendStringInfoString(&out, ",\"body\":");
	if (last_body)
		appendStringInfoString(&out, JsonbToCString(NULL, &last_body->root, VARSIZE(last_body)));
	else
		appendStringInfoString(&out, "null");
	appendStringInfo(&out, ",\"responses\":[%s]}", responses.data);

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

PG_FUNCTION_INFO_V1(hubspot_enqueue_subscriber);

/*
 * hubspot_enqueue_subscriber(external_event_id text, subscriber_state text,
 *							  external_account_id text, contacts jsonb) -> bigint[]
 *
 * The same arguments and validation as hubspot_upsert_subscriber; one outbox
 * row per contact, in the caller's transaction.  Nothing is sent before the
 * transaction commits; the worker is woken at commit.
 */
Datum
hubspot_enqueue_subscriber(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {
		"external_event_id", "subscriber_state", "external_account_id", "contacts"
	};
	char	   *event_id;
	char	   *account_id;
	HsSubscriberState state;
	List	   *contacts;
	ListCell   *lc;
	Datum	   *ids;
	int			n = 0;

	check_not_null(fcinfo, argnames, 4);
	event_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	account_id = text_to_cstring(PG_GETARG_TEXT_PP(2));

	hs_validate_external_id("external_event_id", event_id);
	state = hs_validate_state(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	hs_validate_external_id("external_account_id", account_id);
	contacts = hs_validate_contacts(PG_GETARG_JSONB_P(3));

	ids = palloc(sizeof(Datum) * list_length(contacts));
	foreach(lc, contacts)
	{
		HsContact  *c = (HsContact *) lfirst(lc);
		HsOutboxRow row = {0};

		row.external_event_id = event_id;
		row.subscriber_state = hs_state_name(state);
		row.external_account_id = account_id;
		row.contact = hs_contact_to_jsonb(c);
		row.contact_key = psprintf(INT64_FORMAT, c->vid);
		row.source = "hubspot_enqueue_subscriber";
		ids[n++] = Int64GetDatum(hs_outbox_insert(&row));
	}

	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
