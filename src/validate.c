/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Input rules for subscriber states, external ids and contacts.
 *
 * One validator serves every way in (the direct function, the outbox's
 * enqueue, triggers), so that what is accepted is exactly what HubSpot's
 * spec accepts, and every rejection names what is wrong and where.
 *
 * The checks are written as non-throwing cores that return a message
 * (hs_check_*), wrapped by throwing versions (hs_validate_*): a trigger can
 * then record a bad row instead of failing the application's write.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/detoast.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "utils/formatting.h"

#define HS_VALID_STATES_HINT \
	"Valid states are \"register\", \"attend\" and \"cancel\" (also accepted: \"registered\", \"attended\", \"cancelled\", \"canceled\", in any letter case)."


static const char *const state_names[] = {"register", "attend", "cancel"};

const char *
hs_state_name(HsSubscriberState state)
{
	return state_names[state];
}

/*
 * Parse a subscriber state, case-insensitively, accepting the past-tense
 * spellings HubSpot's read APIs use.  Returns false when it is none of them.
 */
bool
hs_parse_state(const char *input, HsSubscriberState *state)
{
	static const struct
	{
		const char *name;
		HsSubscriberState state;
	}			names[] = {
		{"register", HS_STATE_REGISTER},
		{"registered", HS_STATE_REGISTER},
		{"attend", HS_STATE_ATTEND},
		{"attended", HS_STATE_ATTEND},
		{"cancel", HS_STATE_CANCEL},
		{"cancelled", HS_STATE_CANCEL},
		{"canceled", HS_STATE_CANCEL},
	};

	for (int i = 0; i < lengthof(names); i++)
	{
		if (pg_strcasecmp(input, names[i].name) == 0)
		{
			*state = names[i].state;
			return true;
		}
	}
	return false;
}

HsSubscriberState
hs_validate_state(const char *input)
{
	HsSubscriberState state;

	if (!hs_parse_state(input, &state))
	{
		/* the value is echoed, but never more than 64 bytes of it */
		JsonbValue	v;

		v.type = jbvString;
		v.val.string.val = unconstify(char *, input);
		v.val.string.len = strlen(input);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subscriber_state %s", hs_jsonb_scalar_for_message(&v)),
				 errhint(HS_VALID_STATES_HINT)));
	}
	return state;
}

/*
 * External event and account ids: non-empty, at most
 * HS_MAX_EXTERNAL_ID_BYTES, no control characters.  They go into the URL
 * percent-encoded, so any other character is safe.
 */
char *
hs_check_external_id(const char *argname, const char *value)
{
	size_t		len = strlen(value);

	if (len > HS_MAX_EXTERNAL_ID_BYTES)
		return psprintf("%s is too long (%zu bytes; the limit is %d bytes)",
						argname, len, HS_MAX_EXTERNAL_ID_BYTES);
	if (value[0] == '\0')
		return psprintf("%s must not be empty", argname);
	/* a path segment of "." or ".." would move the request to another path */
	if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
		return psprintf("%s must not be \"%s\"", argname, value);
	for (const char *p = value; *p; p++)
	{
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return psprintf("%s must not contain control characters (found 0x%02x at byte %d)",
							argname, (unsigned char) *p, (int) (p - value) + 1);
	}
	return NULL;
}

void
hs_validate_external_id(const char *argname, const char *value)
{
	char	   *msg = hs_check_external_id(argname, value);

	if (msg)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg_internal("%s", msg)));
}

/*
 * The length escape_json() gives a string of len bytes, quotes included,
 * without writing it: a size is checked before anything is built.
 */
size_t
hs_json_string_len(const char *s, size_t len)
{
	size_t		n = 2;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t' ||
			c == '"' || c == '\\')
			n += 2;
		else if (c < ' ')
			n += 6;				/* \u00XX */
		else
			n += 1;
	}
	return n;
}

/*
 * A jsonb argument (contacts, event) at most HS_MAX_JSONB_ARGUMENT_BYTES, as
 * jsonb and uncompressed (what pg_column_size() reports for a value not yet
 * stored): checked on the datum as it was passed, before it is detoasted or
 * read (54000).
 */
void
hs_check_jsonb_argument_size(const char *argname, Datum value, const char *hint)
{
	Size		size = toast_raw_datum_size(value);

	if (size > HS_MAX_JSONB_ARGUMENT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large (%zu bytes as jsonb; the limit is %d bytes)",
						argname, (size_t) size, HS_MAX_JSONB_ARGUMENT_BYTES),
				 errhint("%s", hint)));
}

/* ---- contacts ---- */

const char *
hs_jsonb_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		case jbvArray:
			return "an array";
		case jbvObject:
			return "an object";
		default:
			return "an unknown JSON value";
	}
}

/* A JSON scalar as text, for messages (strings quoted, long ones cut). */
char *
hs_jsonb_scalar_for_message(const JsonbValue *v)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (v->type == jbvString)
	{
		/* at most 64 bytes, never in the middle of a character */
		int			len = v->val.string.len <= 64 ? v->val.string.len :
			pg_mbcliplen(v->val.string.val, v->val.string.len, 64);
		char	   *s = pnstrdup(v->val.string.val, len);

		appendStringInfo(&buf, "\"%s%s\"", s, v->val.string.len > 64 ? "..." : "");
	}
	else if (v->type == jbvNumeric)
		appendStringInfoString(&buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																		  NumericGetDatum(v->val.numeric))));
	else if (v->type == jbvBool)
		appendStringInfoString(&buf, v->val.boolean ? "true" : "false");
	else
		appendStringInfoString(&buf, hs_jsonb_type_name(v));
	return buf.data;
}

/*
 * Parse an unsigned decimal integer of ASCII digits (optionally followed by
 * ".000", as jsonb keeps the scale of 1.0) into *result.  False on anything
 * else, on no digits, and on a value past PG_INT64_MAX: the range is checked
 * before each step, so a long digit string never wraps to a smaller number.
 */
static bool
parse_uint64_digits(const char *s, int len, int64 *result)
{
	uint64		acc = 0;
	int			i = 0;

	if (len <= 0)
		return false;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
	{
		int			digit = s[i] - '0';

		/* checked before it is computed: acc * 10 + digit must not pass PG_INT64_MAX */
		if (acc > ((uint64) PG_INT64_MAX - digit) / 10)
			return false;
		acc = acc * 10 + digit;
	}
	if (i == 0)
		return false;
	if (i < len && s[i] == '.')
	{
		for (i++; i < len; i++)
			if (s[i] != '0')
				return false;
	}
	if (i != len)
		return false;
	*result = (int64) acc;
	return true;
}

static bool
numeric_to_uint64(Numeric num, int64 *result)
{
	char	   *s;

	if (numeric_is_nan(num) || numeric_is_inf(num))
		return false;
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	return parse_uint64_digits(s, strlen(s), result);
}

/*
 * For a PG_CATCH around input parsing that holds no locks, buffers or files:
 * a data exception (SQLSTATE class 22) is flushed and its message returned
 * (allocated in cxt); any other error is re-thrown.
 */
char *
hs_take_data_exception(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		PG_RE_THROW();
	FlushErrorState();
	return edata->message;
}

/*
 * A timestamp string read as PostgreSQL reads timestamptz input (no offset:
 * the session's TimeZone), without throwing on bad input.  On failure,
 * *reason may hold PostgreSQL's own explanation.
 *
 * DecodeDateTime reports most bad input by its return code, but raises a
 * data exception for some (an unknown time zone name): those are caught and
 * turned into a return value.  Parsing a date holds no locks, buffers or
 * files, so catching its data exceptions without a subtransaction leaves
 * nothing behind; any other error is re-thrown.
 */
bool
hs_parse_timestamptz_ms(const char *str, int64 *ms, char **reason)
{
	fsec_t		fsec;
	struct pg_tm tt,
			   *tm = &tt;
	int			tz;
	int			dtype;
	int			nf;
	volatile int dterr = 0;
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	TimestampTz ts;
	MemoryContext oldcxt = CurrentMemoryContext;

	*reason = NULL;
	PG_TRY();
	{
		dterr = ParseDateTime(str, workbuf, sizeof(workbuf),
							  field, ftype, MAXDATEFIELDS, &nf);
		if (dterr == 0)
			dterr = hs_decode_date_time(field, ftype, nf, &dtype, tm, &fsec, &tz, str);
	}
	PG_CATCH();
	{
		*reason = hs_take_data_exception(oldcxt);
		return false;
	}
	PG_END_TRY();

	if (dterr != 0 || dtype != DTK_DATE)
		return false;
	if (tm2timestamp(tm, fsec, &tz, &ts) != 0 || !IS_VALID_TIMESTAMP(ts))
		return false;
	*ms = hs_timestamptz_to_ms(ts);
	return true;
}

/* A timestamptz as epoch milliseconds (floor division: microseconds since 2000 to ms since 1970). */
int64
hs_timestamptz_to_ms(TimestampTz ts)
{
	return (ts >= 0 ? ts / 1000 : -((-ts + 999) / 1000)) + HS_PG_EPOCH_MS;
}

/*
 * Put the reason an input is refused in *errmsg_out; returns false (the
 * validators return its result).
 */
bool
hs_input_error(char **errmsg_out, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	*errmsg_out = buf.data;
	return false;
}

/* The contact as sent is larger than HubSpot takes: a limit of the whole contact (54000). */
static bool
contact_too_large(int index, bool at_least, size_t size, char **errmsg_out, char **errhint_out,
				  int *sqlstate)
{
	*sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
	*errhint_out = pstrdup("A contact is sent as one JSON object; give its properties fewer or shorter values.");
	return hs_input_error(errmsg_out, "contacts[%d] is too large (%s%zu bytes as JSON; the limit is %d bytes)",
						  index, at_least ? "at least " : "", size, HS_MAX_CONTACT_BYTES);
}

/*
 * The fixed parts of a contact as hs_append_contact_json writes it, so that
 * its size is known before it is built.
 */
#define CJ_VID			"{\"vid\":"
#define CJ_EMAIL		"{\"email\":"
#define CJ_AT			",\"interactionDateTime\":"
#define CJ_PROPS		",\"properties\":"
#define CJ_CPROPS		",\"contactProperties\":"
#define CJ_END			"}"
#define CJ_LEN(lit)		(sizeof(lit) - 1)

/*
 * A plausible single email address: one '@' with something on each side, a
 * dot-free-or-not domain, no white space or control characters, and at most
 * 254 bytes (RFC 5321's limit for a path).  HubSpot decides the rest.
 */
static bool
plausible_email(const char *s, int len)
{
	const char *at = NULL;

	if (len == 0 || len > 254)
		return false;
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';')
			return false;
		if (c == '@')
		{
			if (at != NULL)
				return false;
			at = s + i;
		}
	}
	return at != NULL && at > s && at < s + len - 1;
}

/*
 * An attendance property (properties.joinedAt, properties.leftAt): a
 * timestamp string or epoch milliseconds, sent as UTC ISO 8601 with
 * milliseconds (*text); *ms is its time.
 */
static bool
attendance_time_text(const JsonbValue *pval, int index, const char *pname, char **text, int64 *ms,
					 char **errmsg_out, char **errhint_out)
{
	char	   *reason = NULL;
	StringInfoData iso;
	bool		ok;

	*ms = -1;
	if (pval->type == jbvNumeric)
		ok = numeric_to_uint64(pval->val.numeric, ms) && *ms <= INT64CONST(253402300799999);
	else if (pval->type == jbvString)
		ok = hs_parse_timestamptz_ms(pnstrdup(pval->val.string.val, pval->val.string.len), ms, &reason) &&
			*ms >= 0 && *ms <= INT64CONST(253402300799999);
	else
		ok = false;
	if (!ok)
	{
		*errhint_out = pstrdup("joinedAt and leftAt are timestamps: an ISO 8601 string such as \"2026-03-01T17:05:00Z\" or epoch milliseconds; they are sent as UTC ISO 8601.");
		return hs_input_error(errmsg_out, "contacts[%d].properties.%s is not a valid timestamp: %s%s%s",
							  index, pname, hs_jsonb_scalar_for_message(pval),
							  reason ? ": " : "", reason ? reason : "");
	}
	initStringInfo(&iso);
	hs_append_iso_ms(&iso, *ms);
	*text = iso.data;
	return true;
}

/* A property's value as the text HubSpot is sent: a string, number or boolean (not null). */
static bool
property_text(const JsonbValue *pval, int index, const char *what, const char *pname, char **text,
			  char **errmsg_out, char **errhint_out)
{
	switch (pval->type)
	{
		case jbvString:
			*text = pnstrdup(pval->val.string.val, pval->val.string.len);
			return true;
		case jbvNumeric:
			*text = DatumGetCString(DirectFunctionCall1(numeric_out,
														NumericGetDatum(pval->val.numeric)));
			return true;
		case jbvBool:
			*text = pstrdup(pval->val.boolean ? "true" : "false");
			return true;
		default:
			*errhint_out = pstrdup("Property values are sent to HubSpot as strings: give a string, number, boolean or null (null leaves the property out).");
			return hs_input_error(errmsg_out, "contacts[%d].%s.%s must be a string, number, boolean or null, not %s",
								  index, what, quote_identifier(pname), hs_jsonb_type_name(pval));
	}
}

/*
 * Check a properties object (properties or contactProperties) and append its
 * names and values as text.  For attendance, properties.joinedAt and
 * properties.leftAt are timestamps (a timestamp string or epoch
 * milliseconds): they are sent as UTC ISO 8601 with milliseconds.
 */
static bool
check_properties(JsonbValue *val, int index, const char *what, bool times,
				 List **names, List **values, size_t *json_len,
				 char **errmsg_out, char **errhint_out, int *sqlstate)
{
	JsonbIterator *pit;
	JsonbIteratorToken tok;
	JsonbValue	pkey;
	JsonbValue	pval;
	int64		joined = -1,
				left = -1;
	int			count;

	if (val->type != jbvBinary || !JsonContainerIsObject(val->val.binary.data))
		return hs_input_error(errmsg_out, "contacts[%d].%s must be a JSON object, not %s",
							  index, what, hs_jsonb_type_name(val));
	/* counted before anything is read: nulls count, as they are given */
	count = JsonContainerSize(val->val.binary.data);
	if (count > HS_MAX_PROPERTIES)
	{
		*errhint_out = pstrdup("Send the contact's properties in several calls, or leave out the ones HubSpot does not need.");
		*sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		return hs_input_error(errmsg_out, "contacts[%d].%s has too many properties (%d; the limit is %d)",
							  index, what, count, HS_MAX_PROPERTIES);
	}

	pit = JsonbIteratorInit(val->val.binary.data);
	(void) JsonbIteratorNext(&pit, &pval, true);	/* BEGIN_OBJECT */
	while ((tok = JsonbIteratorNext(&pit, &pkey, true)) != WJB_END_OBJECT)
	{
		char	   *pname;
		char	   *ptext = NULL;

		(void) JsonbIteratorNext(&pit, &pval, true);
		/* lengths before copies: a long name or value is never copied */
		if (pkey.val.string.len > HS_MAX_PROPERTY_NAME_BYTES)
			return hs_input_error(errmsg_out, "contacts[%d].%s has a property name too long (%d bytes; the limit is %d bytes): %s",
								  index, what, pkey.val.string.len, HS_MAX_PROPERTY_NAME_BYTES,
								  hs_jsonb_scalar_for_message(&pkey));
		if (pval.type == jbvString && pval.val.string.len > HS_MAX_PROPERTY_VALUE_BYTES)
			return hs_input_error(errmsg_out, "contacts[%d].%s.%s is too long (%d bytes; the limit is %d bytes)",
								  index, what,
								  quote_identifier(pnstrdup(pkey.val.string.val, pkey.val.string.len)),
								  pval.val.string.len, HS_MAX_PROPERTY_VALUE_BYTES);
		pname = pnstrdup(pkey.val.string.val, pkey.val.string.len);
		if (pname[0] == '\0')
			return hs_input_error(errmsg_out, "contacts[%d].%s has an empty property name", index, what);
		if (times && (strcmp(pname, "joinedAt") == 0 || strcmp(pname, "leftAt") == 0) &&
			pval.type != jbvNull)
		{
			int64		ms;

			if (!attendance_time_text(&pval, index, pname, &ptext, &ms, errmsg_out, errhint_out))
				return false;
			if (pname[0] == 'j')
				joined = ms;
			else
				left = ms;
		}
		else if (pval.type == jbvNull)
			continue;			/* a null drops the property */
		else if (!property_text(&pval, index, what, pname, &ptext, errmsg_out, errhint_out))
			return false;
		/* a number's text can be long too (jsonb keeps 131072 digits) */
		if (strlen(ptext) > HS_MAX_PROPERTY_VALUE_BYTES)
			return hs_input_error(errmsg_out, "contacts[%d].%s.%s is too long (%zu bytes as text; the limit is %d bytes)",
								  index, what, quote_identifier(pname), strlen(ptext),
								  HS_MAX_PROPERTY_VALUE_BYTES);
		/* "name":"value", and a comma before all but the first */
		*json_len += (*names != NIL ? 1 : 0) +
			hs_json_string_len(pname, strlen(pname)) + 1 +
			hs_json_string_len(ptext, strlen(ptext));
		if (*json_len > HS_MAX_CONTACT_BYTES)
			return contact_too_large(index, true, *json_len, errmsg_out, errhint_out, sqlstate);
		*names = lappend(*names, pname);
		*values = lappend(*values, ptext);
	}
	if (joined >= 0 && left >= 0 && left < joined)
		return hs_input_error(errmsg_out, "contacts[%d].properties.leftAt is before properties.joinedAt", index);
	return true;
}

/* A contact while its keys are read. */
typedef struct ContactState
{
	HsContact  *out;
	int			index;			/* names the contact in messages */
	bool		have_vid;
	bool		have_at;
	size_t		json_len;		/* the members of properties and contactProperties */
} ContactState;

typedef bool (*ContactKeyReader) (ContactState *st, const char *key, JsonbValue *val,
								  char **errmsg_out, char **errhint_out, int *sqlstate);

/* "vid": a positive integer within 64 bits, as a number or as digits */
static bool
read_vid(ContactState *st, const char *key, JsonbValue *val,
		 char **errmsg_out, char **errhint_out, int *sqlstate)
{
	HsContact  *out = st->out;
	bool		ok;

	if (val->type == jbvNull)
		return hs_input_error(errmsg_out, "contacts[%d].vid must not be null", st->index);
	if (val->type != jbvNumeric && val->type != jbvString)
		return hs_input_error(errmsg_out, "contacts[%d].vid must be a positive integer, not %s",
							  st->index, hs_jsonb_type_name(val));
	if (val->type == jbvNumeric)
		ok = numeric_to_uint64(val->val.numeric, &out->vid);
	else
		ok = parse_uint64_digits(val->val.string.val, val->val.string.len, &out->vid) &&
			memchr(val->val.string.val, '.', val->val.string.len) == NULL;
	if (!ok || out->vid == 0)
		return hs_input_error(errmsg_out, "contacts[%d].vid must be a positive integer within 64 bits, not %s",
							  st->index, hs_jsonb_scalar_for_message(val));
	st->have_vid = true;
	return true;
}

/* "interactionDateTime": epoch milliseconds, or a timestamp string; null: absent */
static bool
read_interaction_time(ContactState *st, const char *key, JsonbValue *val,
					  char **errmsg_out, char **errhint_out, int *sqlstate)
{
	HsContact  *out = st->out;
	char	   *reason;

	if (val->type == jbvNull)
		return true;
	if (val->type == jbvNumeric)
	{
		if (!numeric_to_uint64(val->val.numeric, &out->interaction_ms))
			return hs_input_error(errmsg_out, "contacts[%d].interactionDateTime must be epoch milliseconds (a non-negative integer) or a timestamp string, not %s",
								  st->index, hs_jsonb_scalar_for_message(val));
		st->have_at = true;
		return true;
	}
	if (val->type != jbvString)
		return hs_input_error(errmsg_out, "contacts[%d].interactionDateTime must be epoch milliseconds or a timestamp string, not %s",
							  st->index, hs_jsonb_type_name(val));
	if (!hs_parse_timestamptz_ms(pnstrdup(val->val.string.val, val->val.string.len),
								 &out->interaction_ms, &reason) ||
		out->interaction_ms < 0)
	{
		*errhint_out = pstrdup("Give an ISO 8601 timestamp such as \"2026-03-01T17:00:00Z\" (without an offset it is read in the session's TimeZone), or epoch milliseconds as a number.");
		if (out->interaction_ms < 0)
			reason = "before 1970";
		return hs_input_error(errmsg_out, "contacts[%d].interactionDateTime is not a valid timestamp: %s%s%s",
							  st->index, hs_jsonb_scalar_for_message(val),
							  reason ? ": " : "", reason ? reason : "");
	}
	st->have_at = true;
	return true;
}

/* "properties" or "contactProperties": an object of names and values; null: absent */
static bool
read_properties(ContactState *st, const char *key, JsonbValue *val,
				char **errmsg_out, char **errhint_out, int *sqlstate)
{
	HsContact  *out = st->out;
	bool		contact_props = (strcmp(key, "contactProperties") == 0);

	if (val->type == jbvNull)
		return true;
	if (!check_properties(val, st->index, key, !contact_props,
						  contact_props ? &out->cprop_names : &out->prop_names,
						  contact_props ? &out->cprop_values : &out->prop_values,
						  &st->json_len, errmsg_out, errhint_out, sqlstate))
		return false;
	if (contact_props)
		out->has_cprops = true;
	return true;
}

/* "email": one plausible address, at most HS_MAX_EMAIL_BYTES */
static bool
read_email(ContactState *st, const char *key, JsonbValue *val,
		   char **errmsg_out, char **errhint_out, int *sqlstate)
{
	HsContact  *out = st->out;

	if (val->type == jbvNull)
		return hs_input_error(errmsg_out, "contacts[%d].email must not be null", st->index);
	if (val->type != jbvString)
		return hs_input_error(errmsg_out, "contacts[%d].email must be a string, not %s",
							  st->index, hs_jsonb_type_name(val));
	if (val->val.string.len > HS_MAX_EMAIL_BYTES)
	{
		*errhint_out = pstrdup("An email address is at most " CppAsString2(HS_MAX_EMAIL_BYTES) " bytes (RFC 5321).");
		return hs_input_error(errmsg_out, "contacts[%d].email is too long (%d bytes; the limit is %d bytes)",
							  st->index, val->val.string.len, HS_MAX_EMAIL_BYTES);
	}
	out->email = pnstrdup(val->val.string.val, val->val.string.len);
	if (!plausible_email(out->email, val->val.string.len))
	{
		*errhint_out = pstrdup("Give one address such as \"ada@example.com\", without spaces or a display name.");
		return hs_input_error(errmsg_out, "contacts[%d].email is not an email address: %s",
							  st->index, hs_jsonb_scalar_for_message(val));
	}
	return true;
}

/* Every key a contact may have, and how each is read. */
static const struct
{
	const char *key;
	ContactKeyReader read;
}			contact_keys[] = {
	{"vid", read_vid},
	{"interactionDateTime", read_interaction_time},
	{"properties", read_properties},
	{"contactProperties", read_properties},
	{"email", read_email},
};

/* What a contact must be as a whole: identified by vid or email, contactProperties only with email. */
static bool
check_contact_whole(const ContactState *st, char **errmsg_out, char **errhint_out)
{
	const HsContact *out = st->out;

	if (st->have_vid && out->email != NULL)
	{
		*errhint_out = pstrdup("A contact is identified by its vid or by its email, not both: they are sent to different endpoints.");
		return hs_input_error(errmsg_out, "contacts[%d] has both \"vid\" and \"email\"", st->index);
	}
	if (!st->have_vid && out->email == NULL)
	{
		*errhint_out = pstrdup("Identify the contact by \"vid\" (its HubSpot id) or by \"email\".");
		return hs_input_error(errmsg_out, "contacts[%d] has no \"vid\" and no \"email\"", st->index);
	}
	if (out->has_cprops && out->email == NULL)
	{
		*errhint_out = pstrdup("contactProperties are used by the email endpoints, to create a contact that does not exist yet; a contact given by vid exists already.");
		return hs_input_error(errmsg_out, "contacts[%d].contactProperties is only for contacts given by \"email\"", st->index);
	}
	return true;
}

/* The size of the whole contact as hs_append_contact_json writes it. */
static size_t
contact_json_len(const ContactState *st)
{
	const HsContact *out = st->out;
	char		digits[32];
	size_t		len = st->json_len;

	len += CJ_LEN(CJ_AT) + snprintf(digits, sizeof(digits), INT64_FORMAT, out->interaction_ms) +
		CJ_LEN(CJ_PROPS) + 2 + CJ_LEN(CJ_END);
	if (out->email)
		len += CJ_LEN(CJ_EMAIL) + hs_json_string_len(out->email, strlen(out->email)) +
			CJ_LEN(CJ_CPROPS) + 2;
	else
		len += CJ_LEN(CJ_VID) + snprintf(digits, sizeof(digits), INT64_FORMAT, out->vid);
	return len;
}

/*
 * Check one contact object (a jsonb container) and fill *out.  On a bad
 * contact returns false with the reason in *errmsg_out, where useful a hint
 * in *errhint_out, and in *sqlstate 22023 for a bad value or 54000 for a
 * limit of the whole contact (its size, its number of properties).  "index"
 * only names the contact in messages.  Every length is checked before the
 * value is copied, and the contact's size is counted as it is read, so that
 * an oversized contact costs at most the limit to refuse.
 */
static bool
check_contact(JsonbContainer *obj, int index, HsContact *out,
			  char **errmsg_out, char **errhint_out, int *sqlstate)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	key;
	JsonbValue	val;
	ContactState st = {out, index, false, false, 0};
	size_t		len;

	memset(out, 0, sizeof(*out));
	*errhint_out = NULL;
	*sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;

	it = JsonbIteratorInit(obj);
	tok = JsonbIteratorNext(&it, &val, true);
	Assert(tok == WJB_BEGIN_OBJECT);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_END_OBJECT)
	{
		int			k = -1;

		Assert(tok == WJB_KEY);
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		for (int i = 0; i < lengthof(contact_keys); i++)
		{
			if (strlen(contact_keys[i].key) == (size_t) key.val.string.len &&
				memcmp(contact_keys[i].key, key.val.string.val, key.val.string.len) == 0)
				k = i;
		}
		if (k < 0)
		{
			*errhint_out = pstrdup("A contact has the key \"vid\" or \"email\" (one of them), and \"interactionDateTime\", \"properties\" and, with \"email\", \"contactProperties\"; key names are case-sensitive.");
			return hs_input_error(errmsg_out, "contacts[%d] has an unknown key %s", index,
								  hs_jsonb_scalar_for_message(&key));
		}
		if (!contact_keys[k].read(&st, contact_keys[k].key, &val, errmsg_out, errhint_out, sqlstate))
			return false;
	}

	if (!check_contact_whole(&st, errmsg_out, errhint_out))
		return false;
	if (!st.have_at)
		out->interaction_ms = hs_timestamptz_to_ms(GetCurrentTransactionStartTimestamp());
	len = contact_json_len(&st);
	if (len > HS_MAX_CONTACT_BYTES)
		return contact_too_large(index, false, len, errmsg_out, errhint_out, sqlstate);
	return true;
}

/*
 * The same, for callers that treat every invalid contact alike (the
 * triggers record it, or raise 22023 with on_invalid=error).
 */
bool
hs_check_contact(JsonbContainer *obj, int index, HsContact *out,
				 char **errmsg_out, char **errhint_out)
{
	int			sqlstate;

	return check_contact(obj, index, out, errmsg_out, errhint_out, &sqlstate);
}

typedef struct ContactsErrorContext
{
	int			index;
} ContactsErrorContext;

static void
contacts_error_callback(void *arg)
{
	ContactsErrorContext *ctx = (ContactsErrorContext *) arg;

	if (ctx->index >= 0)
		errcontext("validating contacts[%d]", ctx->index);
}

/*
 * Validate a contacts argument: an array of contact objects, or one object.
 * Returns a List of HsContact *, never empty.  Throws 22023 on bad input,
 * 54000 past a limit (HS_MAX_CONTACTS, HS_MAX_CONTACT_BYTES...).  The
 * argument's own size is checked by the caller before it is detoasted
 * (hs_check_jsonb_argument_size).
 */
List *
hs_validate_contacts(Jsonb *contacts)
{
	List	   *result = NIL;
	ErrorContextCallback errcb;
	ContactsErrorContext ctx = {-1};
	int			n;

	if (JB_ROOT_IS_SCALAR(contacts))
	{
		JsonbValue	v;

		(void) JsonbExtractScalar(&contacts->root, &v);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("contacts must be a JSON array of contact objects, not %s",
						hs_jsonb_type_name(&v)),
				 errhint("Pass for example '[{\"vid\": 123}]'.")));
	}

	/* errors raised below us (time zone lookups, say) name the contact too */
	errcb.callback = contacts_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (JB_ROOT_IS_OBJECT(contacts))
		n = 1;
	else
	{
		n = JB_ROOT_COUNT(contacts);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("contacts must not be an empty array")));
		if (n > HS_MAX_CONTACTS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("contacts has too many contacts (%d; the limit is %d)",
							n, HS_MAX_CONTACTS),
					 errhint("Split the contacts over several calls.")));
	}

	for (int i = 0; i < n; i++)
	{
		JsonbContainer *obj;
		HsContact  *c = palloc(sizeof(HsContact));
		char	   *msg;
		char	   *hint;
		int			sqlstate;

		ctx.index = i;
		if (JB_ROOT_IS_OBJECT(contacts))
			obj = &contacts->root;
		else
		{
			JsonbValue *elem = getIthJsonbValueFromContainer(&contacts->root, i);

			if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("contacts[%d] must be a JSON object, not %s",
								i, hs_jsonb_type_name(elem)),
						 errhint("Each contact is an object such as {\"vid\": 123}.")));
			obj = elem->val.binary.data;
		}
		if (!check_contact(obj, i, c, &msg, &hint, &sqlstate))
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg_internal("%s", msg),
					 hint ? errhint("%s", hint) : 0));
		result = lappend(result, c);
		CHECK_FOR_INTERRUPTS();
	}

	error_context_stack = errcb.previous;
	return result;
}

static void
append_properties(StringInfo buf, List *names, List *values)
{
	ListCell   *ln,
			   *lv;

	appendStringInfoChar(buf, '{');
	forboth(ln, names, lv, values)
	{
		if (ln != list_head(names))
			appendStringInfoChar(buf, ',');
		escape_json(buf, (char *) lfirst(ln));
		appendStringInfoChar(buf, ':');
		escape_json(buf, (char *) lfirst(lv));
	}
	appendStringInfoChar(buf, '}');
}

/*
 * The contact as it is sent: {"vid":..,"interactionDateTime":..,"properties":{..}},
 * or for a contact given by email {"email":..,"interactionDateTime":..,
 * "properties":{..},"contactProperties":{..}} (the spec requires all four).
 */
void
hs_append_contact_json(StringInfo buf, const HsContact *c)
{
	/* check_contact counts the same parts (CJ_*) */
	if (c->email)
	{
		appendStringInfoString(buf, CJ_EMAIL);
		escape_json(buf, c->email);
		appendStringInfo(buf, CJ_AT INT64_FORMAT CJ_PROPS, c->interaction_ms);
		append_properties(buf, c->prop_names, c->prop_values);
		appendStringInfoString(buf, CJ_CPROPS);
		append_properties(buf, c->cprop_names, c->cprop_values);
	}
	else
	{
		appendStringInfo(buf, CJ_VID INT64_FORMAT CJ_AT INT64_FORMAT CJ_PROPS,
						 c->vid, c->interaction_ms);
		append_properties(buf, c->prop_names, c->prop_values);
	}
	appendStringInfoString(buf, CJ_END);
}

/*
 * A contact's identity within its event, for per-contact ordering: the vid
 * as text, or the email with A-Z folded to a-z (HubSpot matches emails
 * without regard to ASCII case; a vid never holds '@').  The fold is fixed,
 * the same in every database whatever its collation: a collation-aware
 * lower() turns "INFO@" into a dotless "ınfo@" under tr_TR, and HubSpot's
 * error answers, folded the same ASCII-only way (hs_json.c), would no
 * longer name the row.
 */
char *
hs_contact_key(const HsContact *c)
{
	if (c->email)
	{
		char	   *key = pstrdup(c->email);

		for (char *p = key; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
		return key;
	}
	return psprintf(INT64_FORMAT, c->vid);
}

/*
 * The contact as hs_append_contact_json writes it, built as jsonb directly
 * (the same keys and values; jsonb orders an object's keys by itself).
 */
Jsonb *
hs_contact_to_jsonb(const HsContact *c)
{
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	if (c->email)
	{
		hs_jsonb_push_key(&ps, "email");
		hs_jsonb_push_string(&ps, c->email);
	}
	else
	{
		hs_jsonb_push_key(&ps, "vid");
		hs_jsonb_push_int64(&ps, c->vid);
	}
	hs_jsonb_push_key(&ps, "interactionDateTime");
	hs_jsonb_push_int64(&ps, c->interaction_ms);
	hs_jsonb_push_key(&ps, "properties");
	hs_jsonb_push_string_object(&ps, c->prop_names, c->prop_values);
	if (c->email)
	{
		hs_jsonb_push_key(&ps, "contactProperties");
		hs_jsonb_push_string_object(&ps, c->cprop_names, c->cprop_values);
	}
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/* Epoch milliseconds as the spec's date-time: UTC, ISO 8601, milliseconds. */
void
hs_append_iso_ms(StringInfo buf, int64 epoch_ms)
{
	TimestampTz ts = (epoch_ms - HS_PG_EPOCH_MS) * 1000;
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}
