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

#include "access/detoast.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(hubspot_upsert_subscriber);

/* NULL arguments are errors naming the argument, never a NULL result. */
void
hs_check_not_null(FunctionCallInfo fcinfo, const char *const *argnames, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", argnames[i])));
}

/*
 * An external id argument, validated; its length is checked on the datum as
 * passed, before it is detoasted or copied (HS_MAX_EXTERNAL_ID_BYTES, 22023).
 */
char *
hs_id_argument(FunctionCallInfo fcinfo, int i, const char *argname)
{
	Size		len = toast_raw_datum_size(PG_GETARG_DATUM(i)) - VARHDRSZ;
	char	   *value;

	if (len > HS_MAX_EXTERNAL_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long (%zu bytes; the limit is %d bytes)",
						argname, (size_t) len, HS_MAX_EXTERNAL_ID_BYTES)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(i));
	hs_validate_external_id(argname, value);
	return value;
}

/*
 * The subscriber_state argument: no state is longer than 9 bytes, so a long
 * value is read no further than the message that refuses it shows.
 */
static HsSubscriberState
state_argument(FunctionCallInfo fcinfo, int i)
{
	return hs_validate_state(text_to_cstring(PG_GETARG_TEXT_P_SLICE(i, 0, 65)));
}

#define HS_CONTACTS_SIZE_HINT "Split the contacts over several calls."
#define HS_EVENT_SIZE_HINT "An event's body is at most " CppAsString2(HS_MAX_EVENT_BYTES) " bytes as sent to HubSpot."

static void
append_json_string_or_null(StringInfo buf, const char *s)
{
	if (s)
		escape_json(buf, s);
	else
		appendStringInfoString(buf, "null");
}

/*
 * hubspot_events.dry_run: a request not sent, as the answer lists it:
 * {"method": "POST", "path": ..., "body": ... (null for none)}.
 */
static void
append_dry_run_request(StringInfo buf, const char *url, const char *body)
{
	appendStringInfo(buf, "%s{\"method\":\"POST\",\"path\":", buf->len ? "," : "");
	escape_json(buf, hs_api_path_of(url));
	appendStringInfo(buf, ",\"body\":%s}", body && body[0] ? body : "null");
}

/* A dry run's answer: {"dry_run": true, "requests": n, "contacts": n (when >= 0), "would_send": [...]}. */
static Datum
dry_run_answer(StringInfo requests, int nrequests, int ncontacts)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfo(&out, "{\"dry_run\":true,\"requests\":%d", nrequests);
	if (ncontacts >= 0)
		appendStringInfo(&out, ",\"contacts\":%d", ncontacts);
	appendStringInfo(&out, ",\"would_send\":[%s]}", requests->data);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
}

/*
 * Send one request and count it in the metrics (hubspot_events.metrics):
 * its HTTP status, its category and 429 policy when it failed, and its
 * contacts when HubSpot accepted it.
 */
static void
post_counted(const char *url, const char *token, const char *body, size_t len, int contacts,
			 HsHttpResult *res)
{
	HsErrorBody err;
	HsOutcome	o;

	hs_http_post_json(url, token, body, len, res);
	hs_parse_error_body(res->body, res->body_len, &err);
	hs_api_read_answer(res, &err, &o);
	hs_metrics_count_request(&o);
	if (o.kind == HS_OUTCOME_SENT)
		hs_metrics_add(HS_METRIC_CONTACTS_SENT, contacts);
}

/*
 * The attendance endpoints answer 200 with per-contact errors (numErrors):
 * raise the first, with how many there were and how far the call got.
 */
static void
report_batch_errors(const HsHttpResult *res, int first, int count, int ncontacts)
{
	int			nerrors;
	List	   *errors = hs_parse_batch_errors(res->body, res->body_len, &nerrors);
	HsHttpResult shown = *res;

	if (nerrors <= 0)
		return;
	if (errors != NIL)
	{
		shown.body = ((HsItemError *) linitial(errors))->json;
		shown.body_len = strlen(shown.body);
	}
	hs_report_http_failure(&shown,
						   psprintf("HubSpot reported %d error%s (numErrors) for the %d contact%s of this request; the first is shown. "
									"The request's other contacts may have been recorded, and %d of %d contacts were recorded before this request.",
									nerrors, nerrors == 1 ? "" : "s", count, count == 1 ? "" : "s",
									first, ncontacts));
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
	char	   *account_id;
	HsSubscriberState state;
	List	   *contacts;
	const char *token;
	char	   *api_root;
	bool		attendance;
	int			ncontacts;
	int			batch;
	int			count;
	int			nrequests = 0;
	StringInfoData body;
	StringInfoData responses;
	HsHttpResult res = {0};
	Jsonb	   *last_body = NULL;
	StringInfoData out;
	bool		refreshed = false;
	const char *conn;

	hs_check_not_null(fcinfo, argnames, 4);
	event_id = hs_id_argument(fcinfo, 0, "external_event_id");
	state = state_argument(fcinfo, 1);
	account_id = hs_id_argument(fcinfo, 2, "external_account_id");
	hs_check_jsonb_argument_size("contacts", PG_GETARG_DATUM(3), HS_CONTACTS_SIZE_HINT);
	contacts = hs_validate_contacts(PG_GETARG_JSONB_P(3));
	conn = hs_connection_argument(fcinfo, 4);

	/* a dry run needs no credential: it may come before there is one */
	token = hs_dry_run ? NULL : hs_connection_access_token(conn);
	api_root = hs_api_root();
	attendance = (hs_endpoint == HS_ENDPOINT_ATTENDANCE);

	ncontacts = list_length(contacts);
	batch = hs_batch_size;
	initStringInfo(&body);
	initStringInfo(&responses);
	for (int first = 0; first < ncontacts; first += count)
	{
		/* consecutive contacts of one kind (vid or email), at most batch_size */
		bool		by_email = ((HsContact *) list_nth(contacts, first))->email != NULL;
		char	   *url;

		count = 1;
		while (first + count < ncontacts && count < batch &&
			   (((HsContact *) list_nth(contacts, first + count))->email != NULL) == by_email)
			count++;
		url = hs_api_url(api_root, hs_subscriber_call(by_email, attendance), event_id,
						 hs_state_name(state), account_id);

		resetStringInfo(&body);
		hs_api_subscriber_body(&body, contacts, first, count);
		nrequests++;
		if (hs_dry_run)
		{
			append_dry_run_request(&responses, url, body.data);
			continue;
		}
		post_counted(url, token, body.data, body.len, count, &res);
		if (!refreshed && conn == NULL && hs_oauth_enabled() && hs_answer_is_expired_token(&res))
		{
			/* the OAuth token expired early: refresh once and send again */
			hs_oauth_token_expired(token);
			token = hs_get_access_token();
			refreshed = true;
			post_counted(url, token, body.data, body.len, count, &res);
		}

		if (!res.transport_ok || res.http_status < 200 || res.http_status > 299)
			hs_report_http_failure(&res,
								   ncontacts > count ?
								   psprintf("%d of %d contacts were recorded before this error.",
											first, ncontacts) : NULL);
		if (attendance)
			report_batch_errors(&res, first, count, ncontacts);

		last_body = hs_body_to_jsonb(res.body, res.body_len);
		appendStringInfo(&responses, "%s{\"http_status\":%ld,\"contacts\":%d,\"correlation_id\":",
						 responses.len ? "," : "", res.http_status, count);
		append_json_string_or_null(&responses, res.correlation_id);
		appendStringInfoChar(&responses, '}');
	}

	if (hs_dry_run)
		PG_RETURN_DATUM(dry_run_answer(&responses, nrequests, ncontacts));

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
	const char *conn;

	hs_check_not_null(fcinfo, argnames, 4);
	event_id = hs_id_argument(fcinfo, 0, "external_event_id");
	state = state_argument(fcinfo, 1);
	account_id = hs_id_argument(fcinfo, 2, "external_account_id");
	hs_check_jsonb_argument_size("contacts", PG_GETARG_DATUM(3), HS_CONTACTS_SIZE_HINT);
	contacts = hs_validate_contacts(PG_GETARG_JSONB_P(3));
	conn = hs_connection_argument(fcinfo, 4);

	ids = palloc(sizeof(Datum) * list_length(contacts));
	foreach(lc, contacts)
	{
		HsContact  *c = (HsContact *) lfirst(lc);
		HsOutboxRow row = {0};

		row.external_event_id = event_id;
		row.subscriber_state = hs_state_name(state);
		row.external_account_id = account_id;
		row.contact = hs_contact_to_jsonb(c);
		row.contact_key = hs_contact_key(c);
		row.source = "hubspot_enqueue_subscriber";
		row.connection = conn;
		ids[n++] = Int64GetDatum(hs_outbox_insert(&row, NULL));
	}

	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* ---- the marketing events themselves ---- */

/*
 * Send one event request now (POST url with body, which may be empty) and
 * return HubSpot's answer as for hubspot_upsert_subscriber, without the
 * contact counts.
 */
static Datum
send_event_request(const char *url, const char *body, const char *conn)
{
	const char *token;
	HsHttpResult res = {0};
	Jsonb	   *answer;
	StringInfoData out;

	if (hs_dry_run)
	{
		initStringInfo(&out);
		append_dry_run_request(&out, url, body);
		return dry_run_answer(&out, 1, -1);
	}
	token = hs_connection_access_token(conn);
	post_counted(url, token, body, body ? strlen(body) : 0, 1, &res);
	if (!res.transport_ok || res.http_status < 200 || res.http_status > 299)
		hs_report_http_failure(&res, NULL);

	answer = hs_body_to_jsonb(res.body, res.body_len);
	initStringInfo(&out);
	appendStringInfo(&out, "{\"http_status\":%ld,\"requests\":1,\"correlation_id\":", res.http_status);
	append_json_string_or_null(&out, res.correlation_id);
	appendStringInfoString(&out, ",\"body\":");
	if (answer)
		appendStringInfoString(&out, JsonbToCString(NULL, &answer->root, VARSIZE(answer)));
	else
		appendStringInfoString(&out, "null");
	appendStringInfoChar(&out, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
}

/* The event and account ids of an event function, validated. */
static void
event_ids(FunctionCallInfo fcinfo, const char *const *argnames, int nargs,
		  char **event_id, char **account_id)
{
	hs_check_not_null(fcinfo, argnames, nargs);
	*event_id = hs_id_argument(fcinfo, 0, "external_event_id");
	*account_id = hs_id_argument(fcinfo, 1, "external_account_id");
}

static int64
enqueue_event_row(const char *kind, const char *event_id, const char *account_id,
				  Jsonb *event, const char *source, const char *conn)
{
	HsOutboxRow row = {0};

	row.connection = conn;
	row.kind = kind;
	row.external_event_id = event_id;
	row.external_account_id = account_id;
	row.event = event;
	row.contact_key = "";
	row.source = source;
	return hs_outbox_insert(&row, NULL);
}

PG_FUNCTION_INFO_V1(hubspot_upsert_event);

/* hubspot_upsert_event(external_event_id text, external_account_id text, event jsonb) -> jsonb */
Datum
hubspot_upsert_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id", "event"};
	char	   *event_id;
	char	   *account_id;
	Jsonb	   *event;
	char	   *item;
	StringInfoData body;
	const char *conn;

	event_ids(fcinfo, argnames, 3, &event_id, &account_id);
	hs_check_jsonb_argument_size("event", PG_GETARG_DATUM(2), HS_EVENT_SIZE_HINT);
	event = hs_validate_event(PG_GETARG_JSONB_P(2), event_id, account_id);
	conn = hs_connection_argument(fcinfo, 3);
	item = JsonbToCString(NULL, &event->root, VARSIZE(event));
	initStringInfo(&body);
	hs_api_inputs_body(&body, &item, 1);
	PG_RETURN_DATUM(send_event_request(hs_api_url(hs_api_root(), HS_CALL_EVENT_UPSERT,
												  NULL, NULL, NULL),
									   body.data, conn));
}

PG_FUNCTION_INFO_V1(hubspot_enqueue_event);

/* hubspot_enqueue_event(external_event_id text, external_account_id text, event jsonb) -> bigint */
Datum
hubspot_enqueue_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id", "event"};
	char	   *event_id;
	char	   *account_id;
	Jsonb	   *event;

	event_ids(fcinfo, argnames, 3, &event_id, &account_id);
	hs_check_jsonb_argument_size("event", PG_GETARG_DATUM(2), HS_EVENT_SIZE_HINT);
	event = hs_validate_event(PG_GETARG_JSONB_P(2), event_id, account_id);
	PG_RETURN_INT64(enqueue_event_row("event_upsert", event_id, account_id, event,
									  "hubspot_enqueue_event", hs_connection_argument(fcinfo, 3)));
}

PG_FUNCTION_INFO_V1(hubspot_cancel_event);

/* hubspot_cancel_event(external_event_id text, external_account_id text) -> jsonb */
Datum
hubspot_cancel_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id"};
	char	   *event_id;
	char	   *account_id;

	event_ids(fcinfo, argnames, 2, &event_id, &account_id);
	PG_RETURN_DATUM(send_event_request(hs_api_url(hs_api_root(), HS_CALL_EVENT_CANCEL, event_id,
												  NULL, account_id), NULL,
									   hs_connection_argument(fcinfo, 2)));
}

PG_FUNCTION_INFO_V1(hubspot_enqueue_cancel_event);

/* hubspot_enqueue_cancel_event(external_event_id text, external_account_id text) -> bigint */
Datum
hubspot_enqueue_cancel_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id"};
	char	   *event_id;
	char	   *account_id;

	event_ids(fcinfo, argnames, 2, &event_id, &account_id);
	PG_RETURN_INT64(enqueue_event_row("event_cancel", event_id, account_id, NULL,
									  "hubspot_enqueue_cancel_event", hs_connection_argument(fcinfo, 2)));
}

PG_FUNCTION_INFO_V1(hubspot_complete_event);

/*
 * hubspot_complete_event(external_event_id text, external_account_id text,
 *						  start_date_time timestamptz, end_date_time timestamptz) -> jsonb
 */
Datum
hubspot_complete_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id",
	"start_date_time", "end_date_time"};
	char	   *event_id;
	char	   *account_id;
	Jsonb	   *body;

	event_ids(fcinfo, argnames, 4, &event_id, &account_id);
	body = hs_event_complete_body(PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_TIMESTAMPTZ(3));
	PG_RETURN_DATUM(send_event_request(hs_api_url(hs_api_root(), HS_CALL_EVENT_COMPLETE, event_id,
												  NULL, account_id),
									   JsonbToCString(NULL, &body->root, VARSIZE(body)),
									   hs_connection_argument(fcinfo, 4)));
}

PG_FUNCTION_INFO_V1(hubspot_enqueue_complete_event);

/*
 * hubspot_enqueue_complete_event(external_event_id text, external_account_id text,
 *								  start_date_time timestamptz, end_date_time timestamptz) -> bigint
 */
Datum
hubspot_enqueue_complete_event(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"external_event_id", "external_account_id",
	"start_date_time", "end_date_time"};
	char	   *event_id;
	char	   *account_id;
	Jsonb	   *body;

	event_ids(fcinfo, argnames, 4, &event_id, &account_id);
	body = hs_event_complete_body(PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_TIMESTAMPTZ(3));
	PG_RETURN_INT64(enqueue_event_row("event_complete", event_id, account_id, body,
									  "hubspot_enqueue_complete_event", hs_connection_argument(fcinfo, 4)));
}
