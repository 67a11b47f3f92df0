/*-------------------------------------------------------------------------
 *
 * hubspot_api.c
 *	  HubSpot's Marketing Events API: which version is spoken, the URL and
 *	  the body of every call the extension makes, and how an answer is read
 *	  (success, retryable, a configuration fault, rate limited; the error's
 *	  category, message and Retry-After).  No other file names a HubSpot
 *	  path.  Sending is http.c's (transport only); what an answer becomes
 *	  for a row is the worker's and the outbox's, for a call answer.c's.
 *
 * HubSpot's REST APIs are date-versioned since 2026-03: a call's path is
 *
 *	  /marketing/marketing-events/{version}/<route>	 (version 2026-03, 2026-09, ...)
 *	  /marketing/v3/marketing-events/<route>		 (the legacy v3 paths)
 *
 * and the <route>, the bodies, the query parameters and the answers are the
 * same in both forms for every call made here.  hubspot_events.api_version
 * picks the form; it is read when a request is built, so the direct
 * functions use the session's value and the worker its own (the server's,
 * after a reload).
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "utils/guc.h"
#include "utils/json.h"

/* the first date version HubSpot published */
#define HS_FIRST_DATE_VERSION_YEAR	2026
#define HS_FIRST_DATE_VERSION_MONTH	3

/*
 * Whether text is an API version HubSpot can serve: "v3", or a date version
 * "YYYY-MM" from 2026-03 on whose month is one HubSpot releases in (03 or 09).
 */
bool
hs_api_version_is_valid(const char *text)
{
	int			year;
	int			month;

	if (strcmp(text, "v3") == 0)
		return true;
	if (strlen(text) != 7 || text[4] != '-')
		return false;
	for (int i = 0; i < 7; i++)
	{
		if (i != 4 && (text[i] < '0' || text[i] > '9'))
			return false;
	}
	year = atoi(text);
	month = atoi(text + 5);
	if (month != 3 && month != 9)
		return false;
	return year > HS_FIRST_DATE_VERSION_YEAR ||
		(year == HS_FIRST_DATE_VERSION_YEAR && month >= HS_FIRST_DATE_VERSION_MONTH);
}

/* check hook of hubspot_events.api_version */
bool
hs_check_api_version(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || hs_api_version_is_valid(*newval))
		return true;
	GUC_check_errdetail("\"%s\" is not a HubSpot API version.", *newval);
	GUC_check_errhint("Use a date version from 2026-03 on, YYYY-03 or YYYY-09 (such as 2026-09), "
					  "or v3 for the legacy /marketing/v3/ paths.");
	return false;
}

/* The API version requests are built for now (hubspot_events.api_version). */
static const char *
api_version_in_use(void)
{
	return (hs_api_version && hs_api_version[0]) ? hs_api_version : HS_API_VERSION_DEFAULT;
}

/*
 * Where every call of the version in use starts: the base URL without
 * trailing slashes, then the version's prefix (palloc'd).
 */
char *
hs_api_root(void)
{
	char	   *base = pstrdup(hs_api_base_url ? hs_api_base_url : "");
	size_t		len = strlen(base);
	const char *version = api_version_in_use();

	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	if (strcmp(version, "v3") == 0)
		return psprintf("%s/marketing/v3/marketing-events", base);
	return psprintf("%s/marketing/marketing-events/%s", base, version);
}

/* The call that records a subscriber state, by the contacts' kind and the endpoint setting. */
HsApiCall
hs_subscriber_call(bool by_email, bool attendance)
{
	if (attendance)
		return by_email ? HS_CALL_ATTENDANCE_EMAIL_CREATE : HS_CALL_ATTENDANCE_CREATE;
	return by_email ? HS_CALL_SUBSCRIBER_EMAIL_UPSERT : HS_CALL_SUBSCRIBER_UPSERT;
}

/*
 * The URL of one call, under root (hs_api_root()).  event_id, state and
 * account_id are used where the call has them (NULL otherwise).  Every path
 * segment and the query value are percent-encoded, whatever they hold (the
 * state too: the worker's comes from a row, which anyone who may update the
 * outbox can edit).
 */
char *
hs_api_url(const char *root, HsApiCall call, const char *event_id, const char *state,
		   const char *account_id)
{
	const char *collection = "events";
	const char *action = NULL;

	switch (call)
	{
		case HS_CALL_EVENT_UPSERT:
			return psprintf("%s/events/upsert", root);
		case HS_CALL_EVENT_CANCEL:
		case HS_CALL_EVENT_COMPLETE:
			return psprintf("%s/events/%s/%s?externalAccountId=%s", root, hs_url_escape(event_id),
							call == HS_CALL_EVENT_CANCEL ? "cancel" : "complete",
							hs_url_escape(account_id));
		case HS_CALL_SUBSCRIBER_UPSERT:
			action = "upsert";
			break;
		case HS_CALL_SUBSCRIBER_EMAIL_UPSERT:
			action = "email-upsert";
			break;
		case HS_CALL_ATTENDANCE_CREATE:
			collection = "attendance";
			action = "create";
			break;
		case HS_CALL_ATTENDANCE_EMAIL_CREATE:
			collection = "attendance";
			action = "email-create";
			break;
	}
	Assert(action != NULL);
	return psprintf("%s/%s/%s/%s/%s?externalAccountId=%s", root, collection,
					hs_url_escape(event_id), hs_url_escape(state), action,
					hs_url_escape(account_id));
}

/*
 * The URL of one page of an event's participations breakdown (100 per
 * page, HubSpot's most), after the cursor of the page before (NULL: the
 * first page).
 */
char *
hs_api_breakdown_url(const char *root, const char *event_id, const char *account_id, const char *after)
{
	char	   *url = psprintf("%s/participations/%s/%s/breakdown?limit=100", root,
							   hs_url_escape(account_id), hs_url_escape(event_id));

	if (after != NULL)
		url = psprintf("%s&after=%s", url, hs_url_escape(after));
	return url;
}

/* ---- request bodies ---- */

/* The path (and query) of a URL hs_api_url built: what follows its host. */
const char *
hs_api_path_of(const char *url)
{
	const char *p = strstr(url, "://");
	const char *slash = strchr(p ? p + 3 : url, '/');

	return slash ? slash : "/";
}

/*
 * What a dry run records of a request it did not send (outbox.dry_run_request):
 * {"method": "POST", "path": ..., "body_bytes": ..., "rows": ...}.
 */
char *
hs_api_dry_run_request(const char *url, size_t body_len, int rows)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"method\":\"POST\",\"path\":");
	escape_json(&buf, hs_api_path_of(url));
	appendStringInfo(&buf, ",\"body_bytes\":%zu,\"rows\":%d}", body_len, rows);
	return buf.data;
}

/* {"inputs":[item, ...]}: the body of every call but cancel and complete */
void
hs_api_inputs_body(StringInfo buf, char *const *items, int n)
{
	appendStringInfoString(buf, "{\"inputs\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		appendStringInfoString(buf, items[i]);
	}
	appendStringInfoString(buf, "]}");
}

/* {"inputs":[contact, ...]} for contacts[first .. first+count-1] */
void
hs_api_subscriber_body(StringInfo buf, List *contacts, int first, int count)
{
	appendStringInfoString(buf, "{\"inputs\":[");
	for (int i = first; i < first + count; i++)
	{
		if (i > first)
			appendStringInfoChar(buf, ',');
		hs_append_contact_json(buf, (HsContact *) list_nth(contacts, i));
	}
	appendStringInfoString(buf, "]}");
}

/* ---- answers ---- */

/*
 * How an answer is handled.  Retryable per HubSpot's guidance: no answer,
 * 408, 423, 429, 477, and every 5xx but 501 and 505.  401, and 403
 * MISSING_SCOPES, are the configuration's fault, not the rows'.
 */
static HsOutcomeKind
classify(const HsHttpResult *res, const HsErrorBody *err)
{
	if (!res->transport_ok)
		return HS_OUTCOME_RETRY;
	if (res->http_status >= 200 && res->http_status <= 299)
		return HS_OUTCOME_SENT;
	if (res->http_status == 401)
		return HS_OUTCOME_HOLD;
	if (res->http_status == 403 && err->category && strcmp(err->category, "MISSING_SCOPES") == 0)
		return HS_OUTCOME_HOLD;
	if (res->http_status == 429)
		return HS_OUTCOME_RATE_LIMITED;
	if (res->http_status == 408 || res->http_status == 423 || res->http_status == 477)
		return HS_OUTCOME_RETRY;
	if (res->http_status >= 500 && res->http_status <= 599 &&
		res->http_status != 501 && res->http_status != 505)
		return HS_OUTCOME_RETRY;
	return HS_OUTCOME_FAILED;
}

/*
 * One request's answer (or its failure to arrive) read once: its kind, HTTP
 * status (0 without an answer), correlationId (the header's, else the
 * body's), the least wait before a retry (Retry-After, at least 2 s after
 * 423 Locked; -1 when none), and for anything but a success, HubSpot's
 * category (the rate-limit shape's errorType, else HTTP_<status>; TIMEOUT
 * or TRANSPORT without an answer), subCategory (a 429's policyName wins),
 * message, and a bounded excerpt of the body as jsonb.  err is the body
 * as hs_parse_error_body read it (once per answer: pacing reads it too).
 */
void
hs_api_read_answer(const struct HsHttpResult *res, const HsErrorBody *errp, HsOutcome *out)
{
	HsErrorBody err = *errp;

	memset(out, 0, sizeof(*out));
	out->kind = classify(res, &err);
	out->http_status = res->transport_ok ? (int) res->http_status : 0;
	out->correlation_id = res->correlation_id ? res->correlation_id : err.correlation_id;
	out->retry_after_ms = hs_retry_after_ms(res->retry_after);
	if (out->kind == HS_OUTCOME_SENT)
		return;

	/* HubSpot's guidance: after 423 Locked, wait at least 2 s */
	if (res->transport_ok && res->http_status == 423)
		out->retry_after_ms = Max(out->retry_after_ms, 2000);

	if (!res->transport_ok)
	{
		out->error_category = res->timed_out ? "TIMEOUT" : "TRANSPORT";
		out->error_message = res->transport_error;
		return;
	}
	out->error_category = err.category ? err.category :
		err.error_type ? err.error_type : psprintf("HTTP_%ld", res->http_status);
	out->error_subcategory = err.sub_category;
	if (err.message)
		out->error_message = err.message;
	else if (res->body_len > 0)
		out->error_message = hs_sanitize_remote_text(res->body, Min(res->body_len, 200));
	else
		out->error_message = psprintf("HTTP %ld without a body", res->http_status);

	/*
	 * A bounded excerpt, stored in every row of the request: an answer
	 * longer than HS_ERROR_BODY_MAX is cut there, and no longer parses, so
	 * it is kept as a short sanitised text (hs_body_to_jsonb).
	 */
	out->error_body = hs_body_to_jsonb(res->body, Min(res->body_len, HS_ERROR_BODY_MAX));
	if (err.policy_name)
		out->error_subcategory = err.policy_name;
}

/* ---- rejected contacts ---- */

/* Whether text holds key as a whole word (not inside a longer id, number or address). */
static bool
text_names(const char *text, const char *key)
{
	size_t		klen = strlen(key);

	if (klen == 0)
		return false;
	for (const char *p = strstr(text, key); p != NULL; p = strstr(p + 1, key))
	{
		unsigned char before = p > text ? (unsigned char) p[-1] : ' ';
		unsigned char after = (unsigned char) p[klen];

#define HS_WORD_CHAR(c) (isalnum(c) || (c) == '@' || (c) == '_' || (c) == '-')
		if (!HS_WORD_CHAR(before) && !HS_WORD_CHAR(after))
			return true;
#undef HS_WORD_CHAR
	}
	return false;
}

/* The row of the batch whose contact_key is name, or -1. */
static int
batch_row_named(const HsBatch *b, const char *name)
{
	for (int j = 0; j < b->n; j++)
		if (strcmp(name, b->keys[j]) == 0)
			return j;
	return -1;
}

/*
 * Whether HubSpot's answer blames a contact of the batch: its context, or
 * the context of one of its errors, names one of the batch's vids or emails
 * ({"vid": ["17"]}, {"email": ["a@x.com"]}); or, when the answer gives no
 * context at all, its message names one as a word.
 */
static bool
answer_names_contact(const HsHttpResult *res, const HsErrorBody *err, const HsBatch *b)
{
	StringInfoData wrapped;
	List	   *items;
	int			nitems;
	bool		any_names = false;
	ListCell   *lc;

	if (b->kind != HS_KIND_SUBSCRIBER)
		return false;

	/*
	 * The answer as the one error of a batch answer: hs_parse_batch_errors
	 * then reads its context and its errors' contexts.
	 */
	initStringInfo(&wrapped);
	appendStringInfoString(&wrapped, "{\"errors\":[");
	appendBinaryStringInfo(&wrapped, res->body, res->body_len);
	appendStringInfoString(&wrapped, "]}");
	items = hs_parse_batch_errors(wrapped.data, wrapped.len, &nitems);
	foreach(lc, items)
	{
		HsItemError *e = (HsItemError *) lfirst(lc);
		ListCell   *ln;

		foreach(ln, e->names)
		{
			any_names = true;
			if (batch_row_named(b, (char *) lfirst(ln)) >= 0)
				return true;
		}
	}
	if (!any_names && err->message != NULL)
	{
		char	   *lower = pstrdup(err->message);

		for (char *p = lower; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
		for (int j = 0; j < b->n; j++)
			if (text_names(lower, b->keys[j]))
				return true;
	}
	return false;
}

/*
 * Whether HubSpot rejected a request's content (400 VALIDATION_ERROR, or a
 * 400 without a category), why, and whether it blamed a contact of the
 * batch.  err is the answer's body as parsed once.
 */
void
hs_api_read_rejection(const HsHttpResult *res, const HsErrorBody *err, const HsBatch *b,
					  HsRejection *out)
{
	memset(out, 0, sizeof(*out));
	if (!res->transport_ok || res->http_status != 400)
		return;
	if (err->category != NULL && strcmp(err->category, "VALIDATION_ERROR") != 0)
		return;
	out->rejected = true;
	out->category = err->category;
	out->message = err->message;
	out->names_contact = err->parsed && answer_names_contact(res, err, b);
}

/*
 * The per-contact errors of an attendance endpoint's answer (200 with
 * numErrors and errors[]), as each row's error: an error whose context
 * names a contact of the batch is that row's (its first); an error that
 * names none is every other row's; numErrors without the errors themselves
 * is such an error too (BATCH_ERROR).  Fills (*errors)[j] with row j's
 * error object as JSON text, NULL for a row recorded; returns numErrors (0
 * or less: no errors, *errors untouched).
 */
int
hs_api_contact_errors(const HsHttpResult *res, const HsBatch *b, char ***errors)
{
	int			nerrors;
	List	   *items = hs_parse_batch_errors(res->body, res->body_len, &nerrors);
	char	  **own;
	char	   *general = NULL;
	ListCell   *lc;

	if (nerrors <= 0)
		return nerrors;
	own = palloc0(sizeof(char *) * Max(b->n, 1));
	foreach(lc, items)
	{
		HsItemError *e = (HsItemError *) lfirst(lc);
		bool		named = false;
		ListCell   *ln;

		foreach(ln, e->names)
		{
			/* a name may appear in several rows (the same contact twice) */
			for (int j = 0; j < b->n; j++)
				if (strcmp((char *) lfirst(ln), b->keys[j]) == 0)
				{
					named = true;
					if (own[j] == NULL)
						own[j] = e->json;
				}
		}
		if (!named && general == NULL)
			general = e->json;
	}
	if (general == NULL && items == NIL)
		general = psprintf("{\"status\":\"error\",\"category\":\"BATCH_ERROR\",\"message\":\"HubSpot reported %d error%s without details\"}",
						   nerrors, nerrors == 1 ? "" : "s");
	for (int j = 0; j < b->n; j++)
		if (own[j] == NULL)
			own[j] = general;
	*errors = own;
	return nerrors;
}

/*
 * A contact's error of an attendance answer (hs_api_contact_errors) as its
 * row's outcome: failed, with the error's category, subCategory, message and
 * correlationId (else the request's), the error object as the body.
 */
void
hs_api_contact_error_outcome(const char *error_json, const HsOutcome *sent, HsOutcome *out)
{
	HsErrorBody err;

	hs_parse_error_body(error_json, strlen(error_json), &err);
	memset(out, 0, sizeof(*out));
	out->kind = HS_OUTCOME_FAILED;
	out->http_status = sent->http_status;
	out->correlation_id = err.correlation_id ? err.correlation_id : sent->correlation_id;
	out->error_category = err.category ? err.category : "BATCH_ERROR";
	out->error_subcategory = err.sub_category;
	out->error_message = err.message ? err.message : "HubSpot reported an error for this contact";
	out->error_body = hs_body_to_jsonb(error_json, strlen(error_json));
	out->retry_after_ms = -1;
}
