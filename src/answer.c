/*-------------------------------------------------------------------------
 *
 * answer.c
 *	  HubSpot's answers, turned into SQLSTATEs and ERRORs.
 *
 * The message names the HTTP status and HubSpot's own category and message;
 * the DETAIL carries HubSpot's correlationId, subCategory and context, which
 * HubSpot's support asks for.  SQLSTATEs follow HubSpot's category first and
 * the HTTP status second; failures that are neither the database's nor the
 * input's use the extension's own class HS (see hubspot_events.h).
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

typedef struct CategoryCode
{
	const char *category;
	int			sqlstate;
	const char *hint;
} CategoryCode;

static const CategoryCode category_codes[] = {
	{"VALIDATION_ERROR", ERRCODE_INVALID_PARAMETER_VALUE,
	"HubSpot rejected the request's content; when several contacts were sent, one bad contact rejects them all."},
	{"INVALID_AUTHENTICATION", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
	"Check the token in the file named by hubspot_events.access_token_file."},
	{"EXPIRED_AUTHENTICATION", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
	"The access token has expired: write a fresh one into the file named by hubspot_events.access_token_file."},
	{"MISSING_SCOPES", ERRCODE_INSUFFICIENT_PRIVILEGE,
	"The HubSpot app needs the scope crm.objects.marketing_events.write."},
	{"OBJECT_NOT_FOUND", ERRCODE_UNDEFINED_OBJECT,
	"HubSpot records subscriber states only for a marketing event that exists and was created by the same app."},
	{"CONFLICT", ERRCODE_UNIQUE_VIOLATION, NULL},
	{"RATE_LIMITS", ERRCODE_HS_RATE_LIMITED,
	"HubSpot's rate limit was reached: retry later, or enqueue through the outbox, which paces requests."},
	{"RATE_LIMIT", ERRCODE_HS_RATE_LIMITED,
	"HubSpot's rate limit was reached: retry later, or enqueue through the outbox, which paces requests."},
};

static const CategoryCode *
lookup_category(const char *category)
{
	if (category == NULL)
		return NULL;
	for (int i = 0; i < lengthof(category_codes); i++)
		if (strcmp(category_codes[i].category, category) == 0)
			return &category_codes[i];
	return NULL;
}

/* HubSpot's category, or the rate-limit shape's errorType */
static const char *
answer_category(const HsErrorBody *err)
{
	if (err->category)
		return err->category;
	return err->error_type;
}

/*
 * The SQLSTATE for a HubSpot answer that was not a success.
 */
int
hs_sqlstate_for_answer(long http_status, const HsErrorBody *err)
{
	const CategoryCode *cc = lookup_category(answer_category(err));

	if (cc)
		return cc->sqlstate;
	switch (http_status)
	{
		case 400:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 401:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 403:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case 404:
			return ERRCODE_UNDEFINED_OBJECT;
		case 409:
			return ERRCODE_UNIQUE_VIOLATION;
		case 423:
			return ERRCODE_LOCK_NOT_AVAILABLE;
		case 429:
			return ERRCODE_HS_RATE_LIMITED;
	}
	if (http_status >= 500 && http_status <= 599)
		return ERRCODE_HS_SERVER_ERROR;
	return ERRCODE_HS_UNEXPECTED;
}

/*
 * Raise the ERROR for a request that got no answer or a non-2xx answer.
 * progress_detail, when not NULL, is a sentence on what was already
 * recorded ("200 of 250 contacts were recorded before this error.").
 */
void
hs_report_http_failure(const HsHttpResult *res, const char *progress_detail)
{
	HsErrorBody err;
	StringInfoData msg;
	StringInfoData detail;
	const char *category;
	const char *correlation_id;
	const CategoryCode *cc;

	if (!res->transport_ok)
		ereport(ERROR,
				(errcode(res->timed_out ? ERRCODE_HS_TIMEOUT : ERRCODE_HS_TRANSPORT),
				 errmsg("could not reach HubSpot: %s", res->transport_error),
				 progress_detail ? errdetail("%s", progress_detail) : 0,
				 res->timed_out ?
				 errhint("Raise hubspot_events.request_timeout_ms if HubSpot is slow to answer.") :
				 errhint("Check hubspot_events.api_base_url and the network path to it.")));

	hs_parse_error_body(res->body, res->body_len, &err);
	category = answer_category(&err);
	cc = lookup_category(category);
	correlation_id = res->correlation_id ? res->correlation_id : err.correlation_id;

	initStringInfo(&msg);
	appendStringInfo(&msg, "hubspot answered HTTP %ld", res->http_status);
	if (category)
		appendStringInfo(&msg, " %s", category);
	if (err.policy_name)
		appendStringInfo(&msg, " (%s)", err.policy_name);
	if (err.message)
		appendStringInfo(&msg, ": %s", err.message);
	else if (!err.parsed && res->body_len > 0)
		appendStringInfo(&msg, ": %s", hs_sanitize_remote_text(res->body, Min(res->body_len, 200)));

	initStringInfo(&detail);
	if (correlation_id)
		appendStringInfo(&detail, "correlationId: %s", correlation_id);
	if (err.sub_category)
		appendStringInfo(&detail, "%ssubCategory: %s", detail.len ? "; " : "", err.sub_category);
	if (err.context)
		appendStringInfo(&detail, "%scontext: %s", detail.len ? "; " : "", err.context);
	if (detail.len)
		appendStringInfoChar(&detail, '.');
	if (progress_detail)
		appendStringInfo(&detail, "%s%s", detail.len ? "\n" : "", progress_detail);

	/* with OAuth, the token was refreshed once already: the file is not the cure */
	if (cc && strcmp(cc->category, "EXPIRED_AUTHENTICATION") == 0 && hs_oauth_enabled())
		ereport(ERROR,
				(errcode(cc->sqlstate),
				 errmsg_internal("%s", msg.data),
				 detail.len ? errdetail_internal("%s", detail.data) : 0,
				 errhint("HubSpot called the access token expired again after it was refreshed; check the app's installation and the clocks.")));
	ereport(ERROR,
			(errcode(hs_sqlstate_for_answer(res->http_status, &err)),
			 errmsg_internal("%s", msg.data),
			 detail.len ? errdetail_internal("%s", detail.data) : 0,
			 (cc && cc->hint) ? errhint("%s", cc->hint) : 0));
}

/*
 * How deep an answer's arrays and objects may nest, and how many digits and
 * how large an exponent its numbers may have, to be kept as JSON.  HubSpot's
 * answers nest a few levels and hold small numbers; beyond these bounds
 * PostgreSQL's JSON parser would hit the stack-depth check and numeric's
 * input would fail (numeric allows exponents up to 1000 and a limited
 * number of digits), so such an answer is kept as text instead.
 */
#define HS_ANSWER_MAX_DEPTH		64
#define HS_ANSWER_MAX_DIGITS	1000
#define HS_ANSWER_MAX_EXPONENT	1000

/*
 * Whether the arrays and objects of a JSON text nest at most max_depth
 * deep.  A lexical scan (strings skipped), so that it cannot recurse: the
 * text need not be valid JSON.
 */
static bool
json_depth_within(const char *s, size_t len, int max_depth)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > max_depth)
				return false;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return true;
}

/* Whether a JSON number token can be read by numeric's input without an ERROR. */
static bool
json_number_fits(const char *token)
{
	const char *p = token;
	int			digits = 0;
	int			exponent = 0;

	if (*p == '-')
		p++;
	for (; *p; p++)
	{
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (*p == 'e' || *p == 'E')
			break;
		else if (*p != '.')
			return false;
	}
	if (digits == 0 || digits > HS_ANSWER_MAX_DIGITS)
		return false;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (*p == '\0')
			return false;
		for (; *p; p++)
		{
			if (*p < '0' || *p > '9')
				return false;
			exponent = exponent * 10 + (*p - '0');
			if (exponent > HS_ANSWER_MAX_EXPONENT)
				return false;
		}
	}
	return true;
}

/* pg_parse_json's scalar callback: notes a number numeric cannot hold */
static HS_JSON_ACTION
check_answer_scalar(void *state, char *token, JsonTokenType tokentype)
{
	if (tokentype == JSON_TOKEN_NUMBER && !json_number_fits(token))
		*(bool *) state = false;
	HS_JSON_ACTION_DONE;
}

/*
 * An answer's body as jsonb: the parsed JSON when it is JSON that jsonb can
 * hold, otherwise the text (sanitised, at most a few thousand bytes) as a
 * JSON string; NULL when the body is empty.  Never throws on bad input:
 * nesting is bounded before PostgreSQL's (recursive) parser runs, that
 * parser is run first in its non-throwing form with every number checked
 * against numeric's limits, so jsonb_in cannot fail on what passes.
 */
Jsonb *
hs_body_to_jsonb(const char *body, size_t len)
{
	size_t		i;
	char	   *copy;
	JsonbValue	v;

	for (i = 0; i < len; i++)
		if (!(body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
			break;
	if (i == len)
		return NULL;

	if (memchr(body, '\0', len) == NULL && pg_verifymbstr(body, len, true) &&
		json_depth_within(body, len, HS_ANSWER_MAX_DEPTH))
	{
		JsonLexContext *lex;
		JsonSemAction sem = {0};
		bool		numbers_fit = true;

		copy = pnstrdup(body, len);
		lex = hs_json_lexer(copy, len, GetDatabaseEncoding());
		sem.semstate = &numbers_fit;
		sem.scalar = check_answer_scalar;
		if (pg_parse_json(lex, &sem) == JSON_SUCCESS && numbers_fit)
			return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
	}

	copy = hs_sanitize_remote_text(body, len);
	v.type = jbvString;
	v.val.string.val = copy;
	v.val.string.len = strlen(copy);
	return JsonbValueToJsonb(&v);
}

/*
 * Whether HubSpot answered 401 EXPIRED_AUTHENTICATION: with OAuth, the
 * token is refreshed once and the request sent again.
 */
bool
hs_answer_is_expired_token(const HsHttpResult *res)
{
	HsErrorBody err;

	if (!res->transport_ok || res->http_status != 401)
		return false;
	hs_parse_error_body(res->body, res->body_len, &err);
	return err.category != NULL && strcmp(err.category, "EXPIRED_AUTHENTICATION") == 0;
}
