/*-------------------------------------------------------------------------
 *
 * hs_json.c
 *	  JSON: the request bodies we send, and HubSpot's answers.
 *
 * Request bodies are written directly as text (escape_json) from validated
 * contacts: building them is on the hot path and needs no tree.  HubSpot's
 * answers are read with json-c, defensively: any field may be missing or of
 * another type, the body may not be JSON at all, and text that came from
 * the network is made safe for the server's encoding before it goes into a
 * message.  (json-c's "json_object" type collides with a PostgreSQL function
 * of that name, so this file includes no fmgr prototypes.)  json-c objects are released on every path, ERRORs included.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <limits.h>

#include <json.h>

#include "mb/pg_wchar.h"

#define HS_REMOTE_TEXT_MAX 2000

/*
 * Text that came from the network, made fit for a one-line message: valid
 * in the server encoding (bytes that are not become '?'), runs of white
 * space (newlines included) as one space, other control characters as '?',
 * and at most HS_REMOTE_TEXT_MAX bytes.
 */
char *
hs_sanitize_remote_text(const char *s, size_t len)
{
	char	   *out;
	size_t		n = Min(len, HS_REMOTE_TEXT_MAX);
	bool		cut = len > HS_REMOTE_TEXT_MAX;

	out = palloc(n + 4);
	{
		size_t		o = 0;

		for (size_t i = 0; i < n; i++)
		{
			unsigned char c = (unsigned char) s[i];

			if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			{
				if (o > 0 && out[o - 1] != ' ')
					out[o++] = ' ';
			}
			else if (c == '\0' || c < 0x20 || c == 0x7f)
				out[o++] = '?';
			else
				out[o++] = (char) c;
		}
		while (o > 0 && out[o - 1] == ' ')
			o--;
		n = o;
		out[n] = '\0';
	}
	if (!pg_verifymbstr(out, n, true))
	{
		for (size_t i = 0; i < n; i++)
			if ((unsigned char) out[i] >= 0x80)
				out[i] = '?';
	}
	else if (cut)
	{
		/* do not end in the middle of a multibyte character */
		n = pg_mbcliplen(out, n, n);
		out[n] = '\0';
	}
	if (cut)
		strcat(out, "...");
	return out;
}

static char *
get_string_field(struct json_object *root, const char *name)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(root, name, &v) || v == NULL)
		return NULL;
	if (json_object_is_type(v, json_type_string))
	{
		s = json_object_get_string(v);
		return hs_sanitize_remote_text(s, json_object_get_string_len(v));
	}
	if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array))
	{
		s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		return hs_sanitize_remote_text(s, strlen(s));
	}
	if (json_object_is_type(v, json_type_null))
		return NULL;
	s = json_object_get_string(v);
	return hs_sanitize_remote_text(s, strlen(s));
}

/*
 * Parse a body that should be one JSON object (strict).  Returns the object,
 * which the caller releases with json_object_put, or NULL when the body is
 * empty or not an object.  Holds nothing when it throws (only on out of
 * memory, before parsing).
 */
static struct json_object *
parse_json_object(const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *root;

	if (body == NULL || len == 0)
		return NULL;
	tok = json_tokener_new();
	if (tok == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while reading HubSpot's answer")));
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, body, (int) Min(len, (size_t) INT_MAX));
	if (json_tokener_get_error(tok) != json_tokener_success ||
		(root != NULL && !json_object_is_type(root, json_type_object)))
	{
		if (root != NULL)
			json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	return root;
}

/*
 * Read the fields of a HubSpot error answer.  Both shapes are understood:
 * the standard one (category, subCategory, context...) and the rate-limit
 * one (errorType, policyName).  Never throws on bad input.
 */
void
hs_parse_error_body(const char *body, size_t len, HsErrorBody *out)
{
	struct json_object *volatile root;

	memset(out, 0, sizeof(*out));
	root = parse_json_object(body, len);
	if (root == NULL)
		return;

	PG_TRY();
	{
		out->parsed = true;
		out->status = get_string_field(root, "status");
		out->message = get_string_field(root, "message");
		out->correlation_id = get_string_field(root, "correlationId");
		out->category = get_string_field(root, "category");
		out->sub_category = get_string_field(root, "subCategory");
		out->context = get_string_field(root, "context");
		out->error_type = get_string_field(root, "errorType");
		out->policy_name = get_string_field(root, "policyName");
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
}

/* Collect the strings of a context object ({"key": ["value", ...]}) in lower case. */
static List *
context_names(struct json_object *ctx, List *names)
{
	struct json_object_iterator it;
	struct json_object_iterator end;

	if (ctx == NULL || !json_object_is_type(ctx, json_type_object))
		return names;
	it = json_object_iter_begin(ctx);
	end = json_object_iter_end(ctx);
	while (!json_object_iter_equal(&it, &end))
	{
		struct json_object *v = json_object_iter_peek_value(&it);

		if (v && json_object_is_type(v, json_type_array))
		{
			size_t		n = json_object_array_length(v);

			for (size_t i = 0; i < n; i++)
			{
				struct json_object *e = json_object_array_get_idx(v, i);

				if (e && (json_object_is_type(e, json_type_string) || json_object_is_type(e, json_type_int)))
				{
					char	   *s = pstrdup(json_object_get_string(e));

					for (char *p = s; *p; p++)
						*p = pg_ascii_tolower((unsigned char) *p);
					names = lappend(names, s);
				}
			}
		}
		json_object_iter_next(&it);
	}
	return names;
}

/*
 * The per-contact errors of a 2xx answer of the attendance endpoints:
 * {"numErrors": N, "errors": [{"category", "message", "context": {"vid":
 * ["123"]}, ...}, ...]}.  Returns a List of HsItemError (each error's JSON
 * text and the contact identities its context names, in lower case), empty
 * when there are none; *num_errors is numErrors (or the list's length when
 * absent).  Never throws on bad input: an answer that is not such an
 * object has no errors.
 */
List *
hs_parse_batch_errors(const char *body, size_t len, int *num_errors)
{
	struct json_object *volatile root;
	List	   *volatile result = NIL;

	*num_errors = 0;
	root = parse_json_object(body, len);
	if (root == NULL)
		return NIL;

	PG_TRY();
	{
		struct json_object *errors;
		struct json_object *num;

		if (json_object_object_get_ex(root, "errors", &errors) && errors &&
			json_object_is_type(errors, json_type_array))
		{
			size_t		n = json_object_array_length(errors);

			for (size_t i = 0; i < n; i++)
			{
				struct json_object *e = json_object_array_get_idx(errors, i);
				struct json_object *ctx;
				struct json_object *inner;
				HsItemError *ie;
				const char *text;

				if (e == NULL || !json_object_is_type(e, json_type_object))
					continue;
				ie = palloc0(sizeof(HsItemError));
				text = json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
				ie->json = pstrdup(text);
				if (json_object_object_get_ex(e, "context", &ctx))
					ie->names = context_names(ctx, ie->names);
				/* the detailed errors may name the contact instead */
				if (json_object_object_get_ex(e, "errors", &inner) && inner &&
					json_object_is_type(inner, json_type_array))
				{
					for (size_t j = 0; j < json_object_array_length(inner); j++)
					{
						struct json_object *d = json_object_array_get_idx(inner, j);

						if (d && json_object_is_type(d, json_type_object) &&
							json_object_object_get_ex(d, "context", &ctx))
							ie->names = context_names(ctx, ie->names);
					}
				}
				result = lappend(result, ie);
			}
		}
		if (json_object_object_get_ex(root, "numErrors", &num) && num &&
			json_object_is_type(num, json_type_int))
			*num_errors = (int) Min(Max(json_object_get_int64(num), 0), INT_MAX);
		if (*num_errors < list_length(result))
			*num_errors = list_length(result);
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
	return result;
}

/* obj.name as an object, or NULL */
static struct json_object *
get_object_field(struct json_object *obj, const char *name)
{
	struct json_object *v;

	if (obj == NULL || !json_object_object_get_ex(obj, name, &v) || v == NULL ||
		!json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

/* One result of a participations breakdown; NULL when it names no contact. */
static HsParticipation *
read_participation(struct json_object *r)
{
	struct json_object *contact = get_object_field(get_object_field(r, "associations"), "contact");
	struct json_object *props = get_object_field(r, "properties");
	HsParticipation *p;

	if (contact == NULL)
		return NULL;
	p = palloc0(sizeof(HsParticipation));
	p->contact_id = get_string_field(contact, "contactId");
	p->email = get_string_field(contact, "email");
	if (p->email)
	{
		for (char *c = p->email; *c; c++)
			*c = pg_ascii_tolower((unsigned char) *c);
		if (p->email[0] == '\0')
			p->email = NULL;
	}
	p->state = props ? get_string_field(props, "attendanceState") : NULL;
	if (p->contact_id == NULL && p->email == NULL)
		return NULL;
	return p;
}

/*
 * One page of a participations breakdown
 * ({"total", "results": [{"associations": {"contact": {"contactId",
 * "email"}}, "properties": {"attendanceState"}}, ...], "paging": {"next":
 * {"after"}}}): appends an HsParticipation per result that names a contact
 * to *items, and sets *after to the next page's cursor (NULL on the last
 * page).  Returns false when the body is not such an answer.  Never throws
 * on bad input.
 */
bool
hs_parse_breakdown(const char *body, size_t len, List **items, char **after)
{
	struct json_object *volatile root;
	volatile bool ok = false;

	*after = NULL;
	root = parse_json_object(body, len);
	if (root == NULL)
		return false;
	PG_TRY();
	{
		struct json_object *results;
		struct json_object *next;

		if (json_object_object_get_ex(root, "results", &results) && results &&
			json_object_is_type(results, json_type_array))
		{
			for (size_t i = 0; i < json_object_array_length(results); i++)
			{
				struct json_object *r = json_object_array_get_idx(results, i);
				HsParticipation *p = (r && json_object_is_type(r, json_type_object)) ? read_participation(r) : NULL;

				if (p)
					*items = lappend(*items, p);
			}
			next = get_object_field(get_object_field(root, "paging"), "next");
			*after = next ? get_string_field(next, "after") : NULL;
			ok = true;
		}
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
	return ok;
}
