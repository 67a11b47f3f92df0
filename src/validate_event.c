/*-------------------------------------------------------------------------
 *
 * validate_event.c
 *	  Input rules for marketing events: the object given to
 *	  hubspot_upsert_event / hubspot_enqueue_event / sync_event, turned into
 *	  the spec's MarketingEventCreateRequestParams, and the body of the
 *	  event's complete call.
 *
 * The input object takes the spec's own field names:
 *	  eventName, eventOrganizer (required, non-empty strings),
 *	  eventType, eventDescription, eventUrl (strings; the URL http(s)://),
 *	  startDateTime, endDateTime (ISO 8601 timestamps, or epoch
 *	  milliseconds; sent as UTC ISO 8601 with milliseconds; the end not
 *	  before the start), eventCancelled, eventCompleted (booleans),
 *	  customProperties ({"name": "value", ...}, or the spec's array of
 *	  {"name", "value"} objects),
 *	  externalEventId, externalAccountId (optional: when given they must
 *	  equal the function's arguments).
 * A null value leaves the field out.  Unknown keys are refused (names are
 * case-sensitive), as for contacts.
 *
 * The spec's PropertyValue requires twenty fields, most of them HubSpot's
 * own bookkeeping; each custom property is sent with its name and value and
 * neutral values for the others (source "API", sourceId "hubspot_events",
 * the timestamps of the transaction that gave it), so that every request
 * validates against the spec.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#define HS_EVENT_KEYS_HINT \
	"An event has the keys \"eventName\" and \"eventOrganizer\" (required), \"eventType\", \"eventDescription\", \"eventUrl\", \"startDateTime\", \"endDateTime\", \"eventCancelled\", \"eventCompleted\" and \"customProperties\"; key names are case-sensitive."

/* The event as sent is larger than HubSpot takes: a limit of the whole event (54000). */
static bool
event_too_large(bool at_least, size_t size, char **errmsg_out, char **errhint_out, int *sqlstate)
{
	*sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
	*errhint_out = pstrdup("An event is sent as one JSON object; give it fewer or shorter custom properties, or a shorter description.");
	return hs_input_error(errmsg_out, "event is too large (%s%zu bytes as JSON; the limit is %d bytes)",
						  at_least ? "at least " : "", size, HS_MAX_EVENT_BYTES);
}

/* One custom property, as the spec's PropertyValue. */
static void
append_property_value(StringInfo buf, const char *name, const char *value, int64 now_ms)
{
	appendStringInfoString(buf, "{\"name\":");
	escape_json(buf, name);
	appendStringInfoString(buf, ",\"value\":");
	escape_json(buf, value);
	appendStringInfo(buf,
					 ",\"dataSensitivity\":\"none\",\"isEncrypted\":false,\"isLargeValue\":false,"
					 "\"maskedSubstrings\":{\"substrings\":[]},"
					 "\"persistenceTimestamp\":" INT64_FORMAT ",\"requestId\":\"\","
					 "\"selectedByUser\":false,\"selectedByUserTimestamp\":0,"
					 "\"source\":\"API\",\"sourceId\":\"hubspot_events\",\"sourceLabel\":\"hubspot_events\","
					 "\"sourceMetadata\":\"\",\"sourceUpstreamDeployable\":\"\",\"sourceVid\":[],"
					 "\"timestamp\":" INT64_FORMAT ",\"unit\":\"\",\"updatedByUserId\":0,"
					 "\"useTimestampAsPersistenceTimestamp\":true}",
					 now_ms, now_ms);
}

/* A property value as text: strings as they are, numbers and booleans spelled out. */
static bool
scalar_text(const JsonbValue *v, char **out)
{
	switch (v->type)
	{
		case jbvString:
			*out = pnstrdup(v->val.string.val, v->val.string.len);
			return true;
		case jbvNumeric:
			*out = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
			return true;
		case jbvBool:
			*out = pstrdup(v->val.boolean ? "true" : "false");
			return true;
		default:
			return false;
	}
}

/*
 * A string field of at most max bytes, non-empty if asked; NULL when the
 * value is null (left out).  The length is checked before the copy.
 */
static bool
string_field(const JsonbValue *val, const char *key, bool nonempty, int max,
			 char **out, char **errmsg_out)
{
	*out = NULL;
	if (val->type == jbvNull)
		return true;
	if (val->type != jbvString)
		return hs_input_error(errmsg_out, "event.%s must be a string, not %s", key, hs_jsonb_type_name(val));
	if (val->val.string.len > max)
		return hs_input_error(errmsg_out, "event.%s is too long (%d bytes; the limit is %d bytes)",
							  key, val->val.string.len, max);
	if (nonempty && val->val.string.len == 0)
		return hs_input_error(errmsg_out, "event.%s must not be empty", key);
	if (memchr(val->val.string.val, '\0', val->val.string.len) != NULL)
		return hs_input_error(errmsg_out, "event.%s must not contain a NUL character", key);
	*out = pnstrdup(val->val.string.val, val->val.string.len);
	return true;
}

/* A date-time field: ISO 8601 text or epoch milliseconds. */
static bool
time_field(const JsonbValue *val, const char *key, bool *have, int64 *ms,
		   char **errmsg_out, char **errhint_out)
{
	*have = false;
	if (val->type == jbvNull)
		return true;
	if (val->type == jbvString)
	{
		char	   *s = pnstrdup(val->val.string.val, val->val.string.len);
		char	   *reason;

		if (!hs_parse_timestamptz_ms(s, ms, &reason) || *ms < 0)
		{
			*errhint_out = pstrdup("Give an ISO 8601 timestamp such as \"2026-03-01T17:00:00Z\" (without an offset it is read in the session's TimeZone), or epoch milliseconds as a number.");
			return hs_input_error(errmsg_out, "event.%s is not a valid timestamp: %s%s%s", key,
								  hs_jsonb_scalar_for_message(val),
								  reason ? ": " : "", reason ? reason : "");
		}
	}
	else if (val->type == jbvNumeric)
	{
		char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(val->val.numeric)));
		char	   *end;

		errno = 0;
		*ms = strtoll(s, &end, 10);
		if (errno != 0 || *end != '\0' || *ms < 0 || *ms > INT64CONST(253402300799999))
			return hs_input_error(errmsg_out, "event.%s must be epoch milliseconds (a non-negative integer before year 10000) or a timestamp string, not %s",
								  key, hs_jsonb_scalar_for_message(val));
	}
	else
		return hs_input_error(errmsg_out, "event.%s must be a timestamp string or epoch milliseconds, not %s",
							  key, hs_jsonb_type_name(val));
	if (*ms > INT64CONST(253402300799999))
		return hs_input_error(errmsg_out, "event.%s is after the year 9999", key);
	*have = true;
	return true;
}

static bool
bool_field(const JsonbValue *val, const char *key, int *out, char **errmsg_out)
{
	*out = -1;
	if (val->type == jbvNull)
		return true;
	if (val->type != jbvBool)
		return hs_input_error(errmsg_out, "event.%s must be a boolean, not %s", key, hs_jsonb_type_name(val));
	*out = val->val.boolean ? 1 : 0;
	return true;
}

/*
 * A custom property's value within its limit (22023), as the text that is
 * sent: a number's text can be long too (jsonb keeps 131072 digits).
 * "what" names the property in messages.
 */
static bool
custom_value_length(const char *what, const char *text, char **errmsg_out)
{
	size_t		len = strlen(text);

	if (len > HS_MAX_PROPERTY_VALUE_BYTES)
		return hs_input_error(errmsg_out, "%s is too long (%zu bytes as text; the limit is %d bytes)",
							  what, len, HS_MAX_PROPERTY_VALUE_BYTES);
	return true;
}

/* A string value too long is refused before it is copied. */
static bool
custom_value_too_long(const JsonbValue *v)
{
	return v->type == jbvString && v->val.string.len > HS_MAX_PROPERTY_VALUE_BYTES;
}

/* customProperties as an object of name -> value */
static bool
custom_properties_object(JsonbContainer *c, StringInfo props, int64 now_ms,
						 char **errmsg_out, char **errhint_out, int *sqlstate)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	int			n = 0;

	(void) JsonbIteratorNext(&it, &v, true);	/* BEGIN_OBJECT */
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_END_OBJECT)
	{
		char	   *name;
		char	   *text;

		(void) JsonbIteratorNext(&it, &v, true);
		if (k.val.string.len > HS_MAX_PROPERTY_NAME_BYTES)
		{
			*errhint_out = NULL;
			return hs_input_error(errmsg_out, "event.customProperties has a property name too long (%d bytes; the limit is %d bytes): %s",
								  k.val.string.len, HS_MAX_PROPERTY_NAME_BYTES, hs_jsonb_scalar_for_message(&k));
		}
		name = pnstrdup(k.val.string.val, k.val.string.len);
		if (name[0] == '\0')
			return hs_input_error(errmsg_out, "event.customProperties has an empty property name");
		if (v.type == jbvNull)
			continue;		/* a null leaves the property out */
		if (custom_value_too_long(&v))
		{
			*errhint_out = NULL;
			return hs_input_error(errmsg_out, "event.customProperties.%s is too long (%d bytes; the limit is %d bytes)",
								  quote_identifier(name), v.val.string.len, HS_MAX_PROPERTY_VALUE_BYTES);
		}
		if (!scalar_text(&v, &text))
			return hs_input_error(errmsg_out, "event.customProperties.%s must be a string, number, boolean or null, not %s",
								  quote_identifier(name), hs_jsonb_type_name(&v));
		if (!custom_value_length(psprintf("event.customProperties.%s", quote_identifier(name)),
								 text, errmsg_out))
		{
			*errhint_out = NULL;
			return false;
		}
		if (n++ > 0)
			appendStringInfoChar(props, ',');
		append_property_value(props, name, text, now_ms);
		if (props->len > HS_MAX_EVENT_BYTES)
			return event_too_large(true, props->len, errmsg_out, errhint_out, sqlstate);
	}
	return true;
}

/* customProperties as an array of {name, value} (PropertyValue objects in the form as sent) */
static bool
custom_properties_array(JsonbContainer *c, StringInfo props, int64 now_ms, bool sent_form,
						char **errmsg_out, char **errhint_out, int *sqlstate)
{
	int			n = 0;

	int			nelems = JsonContainerSize(c);

	for (int i = 0; i < nelems; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(c, i);
		JsonbValue *name;
		JsonbValue *value;
		char	   *text;
		char	   *namestr;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			return hs_input_error(errmsg_out, "event.customProperties[%d] must be an object with \"name\" and \"value\", not %s",
								  i, hs_jsonb_type_name(elem));
		if (!sent_form && JsonContainerSize(elem->val.binary.data) != 2)
			return hs_input_error(errmsg_out, "event.customProperties[%d] must have exactly the keys \"name\" and \"value\"", i);
		name = getKeyJsonValueFromContainer(elem->val.binary.data, "name", 4, NULL);
		value = getKeyJsonValueFromContainer(elem->val.binary.data, "value", 5, NULL);
		if (name == NULL || value == NULL)
			return hs_input_error(errmsg_out, "event.customProperties[%d] must have exactly the keys \"name\" and \"value\"", i);
		if (name->type != jbvString || name->val.string.len == 0)
			return hs_input_error(errmsg_out, "event.customProperties[%d].name must be a non-empty string", i);
		if (name->val.string.len > HS_MAX_PROPERTY_NAME_BYTES)
		{
			*errhint_out = NULL;
			return hs_input_error(errmsg_out, "event.customProperties[%d].name is too long (%d bytes; the limit is %d bytes)",
								  i, name->val.string.len, HS_MAX_PROPERTY_NAME_BYTES);
		}
		namestr = pnstrdup(name->val.string.val, name->val.string.len);
		if (value->type == jbvNull)
			continue;
		if (custom_value_too_long(value))
		{
			*errhint_out = NULL;
			return hs_input_error(errmsg_out, "event.customProperties[%d].value is too long (%d bytes; the limit is %d bytes)",
								  i, value->val.string.len, HS_MAX_PROPERTY_VALUE_BYTES);
		}
		if (!scalar_text(value, &text))
			return hs_input_error(errmsg_out, "event.customProperties[%d].value must be a string, number, boolean or null, not %s",
								  i, hs_jsonb_type_name(value));
		if (!custom_value_length(psprintf("event.customProperties[%d].value", i),
								 text, errmsg_out))
		{
			*errhint_out = NULL;
			return false;
		}
		if (n++ > 0)
			appendStringInfoChar(props, ',');
		append_property_value(props, namestr, text, now_ms);
		if (props->len > HS_MAX_EVENT_BYTES)
			return event_too_large(true, props->len, errmsg_out, errhint_out, sqlstate);
	}
	return true;
}

/*
 * customProperties: an object of name -> value, or an array of {name, value}.
 * In the form as sent (sent_form), the array's elements are the spec's
 * PropertyValue objects: their other fields are allowed, and replaced.
 * Their number is checked before they are read, and the size of what is
 * built as they are appended: an oversized one costs at most the limit.
 */
static bool
custom_properties(const JsonbValue *val, StringInfo props, int64 now_ms, bool sent_form,
				  char **errmsg_out, char **errhint_out, int *sqlstate)
{
	int			count;
	bool		ok;

	if (val->type == jbvNull)
		return true;
	if (val->type != jbvBinary)
		return hs_input_error(errmsg_out, "event.customProperties must be an object of names and values, not %s",
							  hs_jsonb_type_name(val));
	count = JsonContainerSize(val->val.binary.data);
	if (count > HS_MAX_PROPERTIES)
	{
		*errhint_out = pstrdup("Leave out the custom properties HubSpot does not need.");
		*sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		return hs_input_error(errmsg_out, "event.customProperties has too many properties (%d; the limit is %d)",
							  count, HS_MAX_PROPERTIES);
	}
	*errhint_out = pstrdup("Give custom properties as {\"name\": \"value\", ...} or as [{\"name\": \"...\", \"value\": \"...\"}, ...]; values are sent as strings.");

	if (JsonContainerIsObject(val->val.binary.data))
		ok = custom_properties_object(val->val.binary.data, props, now_ms,
									  errmsg_out, errhint_out, sqlstate);
	else
		ok = custom_properties_array(val->val.binary.data, props, now_ms, sent_form,
									 errmsg_out, errhint_out, sqlstate);
	if (!ok)
		return false;
	*errhint_out = NULL;
	return true;
}

/* The text fields of an event, as EventFields keeps them. */
typedef enum EventText
{
	ET_NAME,
	ET_ORGANIZER,
	ET_TYPE,
	ET_DESCRIPTION,
	ET_URL,
	ET_COUNT
} EventText;

/* How a key of an event is read. */
typedef enum EventKeyKind
{
	EK_TEXT,					/* a string, into text[slot] */
	EK_URL,						/* the same, an http(s) URL */
	EK_TIME,					/* a date-time, into time[slot] (0: start, 1: end) */
	EK_BOOL,					/* a boolean, into flag[slot] (0: cancelled, 1: completed) */
	EK_PROPERTIES,				/* customProperties */
	EK_ID						/* must equal ids[slot] (0: event id, 1: account id) when given */
} EventKeyKind;

typedef struct EventKey
{
	const char *key;
	EventKeyKind kind;
	int			slot;
	bool		nonempty;		/* text: must not be empty */
	int			max_bytes;		/* text: the longest accepted */
} EventKey;

/* Every key an event may have (MarketingEventCreateRequestParams), how each is read, in the order sent. */
static const EventKey event_keys[] = {
	{"eventName", EK_TEXT, ET_NAME, true, HS_MAX_EVENT_TEXT_BYTES},
	{"eventOrganizer", EK_TEXT, ET_ORGANIZER, true, HS_MAX_EVENT_TEXT_BYTES},
	{"eventType", EK_TEXT, ET_TYPE, false, HS_MAX_EVENT_TEXT_BYTES},
	{"eventDescription", EK_TEXT, ET_DESCRIPTION, false, HS_MAX_EVENT_DESCRIPTION_BYTES},
	{"eventUrl", EK_URL, ET_URL, false, HS_MAX_EVENT_URL_BYTES},
	{"startDateTime", EK_TIME, 0, false, 0},
	{"endDateTime", EK_TIME, 1, false, 0},
	{"eventCancelled", EK_BOOL, 0, false, 0},
	{"eventCompleted", EK_BOOL, 1, false, 0},
	{"customProperties", EK_PROPERTIES, 0, false, 0},
	{"externalEventId", EK_ID, 0, false, HS_MAX_EXTERNAL_ID_BYTES},
	{"externalAccountId", EK_ID, 1, false, HS_MAX_EXTERNAL_ID_BYTES},
};

/* no key above is longer: a longer unknown one is never copied */
#define EVENT_KEY_MAX 32

/* The names of the ids an EK_ID key must agree with, by slot. */
static const char *const event_id_arguments[2] = {"external_event_id", "external_account_id"};

/* An event's fields, as read from its object. */
typedef struct EventFields
{
	const char *ids[2];			/* the event and account ids (arguments) */
	bool		sent_form;		/* an outbox row's event: PropertyValue custom properties */
	int64		now_ms;			/* a custom property's timestamp */
	char	   *text[ET_COUNT]; /* NULL: absent */
	bool		have_time[2];
	int64		time_ms[2];
	int			flag[2];		/* -1: absent */
	StringInfoData props;		/* the custom properties as sent, comma-separated */
} EventFields;

/* Read one key's value into f. */
static bool
read_event_key(const EventKey *ek, const JsonbValue *val, EventFields *f,
			   char **errmsg_out, char **errhint_out, int *sqlstate)
{
	char	   *given;

	switch (ek->kind)
	{
		case EK_TEXT:
			return string_field(val, ek->key, ek->nonempty, ek->max_bytes, &f->text[ek->slot], errmsg_out);
		case EK_URL:
			if (!string_field(val, ek->key, false, ek->max_bytes, &f->text[ek->slot], errmsg_out))
				return false;
			given = f->text[ek->slot];
			if (given && given[0] &&
				pg_strncasecmp(given, "https://", 8) != 0 && pg_strncasecmp(given, "http://", 7) != 0)
			{
				*errhint_out = pstrdup("Give an absolute URL such as \"https://example.com/webinar\".");
				return hs_input_error(errmsg_out, "event.%s must be an http:// or https:// URL, not %s",
									  ek->key, hs_jsonb_scalar_for_message(val));
			}
			return true;
		case EK_TIME:
			return time_field(val, ek->key, &f->have_time[ek->slot], &f->time_ms[ek->slot],
							  errmsg_out, errhint_out);
		case EK_BOOL:
			return bool_field(val, ek->key, &f->flag[ek->slot], errmsg_out);
		case EK_PROPERTIES:
			return custom_properties(val, &f->props, f->now_ms, f->sent_form,
									 errmsg_out, errhint_out, sqlstate);
		case EK_ID:
			if (!string_field(val, ek->key, false, ek->max_bytes, &given, errmsg_out))
				return false;
			if (given && f->ids[ek->slot] && strcmp(given, f->ids[ek->slot]) != 0)
			{
				*errhint_out = pstrdup("Leave it out: the id comes from the function's argument (or the trigger's mapping).");
				return hs_input_error(errmsg_out, "event.%s %s differs from the %s argument", ek->key,
									  hs_jsonb_scalar_for_message(val), event_id_arguments[ek->slot]);
			}
			return true;
	}
	return false;					/* not reached */
}

/* Read every key of an event object into f, each by its entry in event_keys. */
static bool
read_event(JsonbContainer *obj, EventFields *f, char **errmsg_out, char **errhint_out, int *sqlstate)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	val;

	if (!JsonContainerIsObject(obj))
		return hs_input_error(errmsg_out, "event must be a JSON object");
	it = JsonbIteratorInit(obj);
	(void) JsonbIteratorNext(&it, &val, true);	/* BEGIN_OBJECT */
	while (JsonbIteratorNext(&it, &key, true) != WJB_END_OBJECT)
	{
		const EventKey *ek = NULL;

		(void) JsonbIteratorNext(&it, &val, true);
		for (int i = 0; i < lengthof(event_keys) && key.val.string.len <= EVENT_KEY_MAX; i++)
		{
			if (strlen(event_keys[i].key) == (size_t) key.val.string.len &&
				memcmp(event_keys[i].key, key.val.string.val, key.val.string.len) == 0)
				ek = &event_keys[i];
		}
		if (ek == NULL)
		{
			*errhint_out = pstrdup(HS_EVENT_KEYS_HINT);
			return hs_input_error(errmsg_out, "event has an unknown key %s", hs_jsonb_scalar_for_message(&key));
		}
		if (!read_event_key(ek, &val, f, errmsg_out, errhint_out, sqlstate))
			return false;
	}
	return true;
}

/* What an event must have as a whole: a name and organizer, times in order, valid ids. */
static bool
check_event_whole(const EventFields *f, char **errmsg_out, char **errhint_out)
{
	if (f->text[ET_NAME] == NULL)
	{
		*errhint_out = pstrdup(HS_EVENT_KEYS_HINT);
		return hs_input_error(errmsg_out, "event has no \"eventName\"");
	}
	if (f->text[ET_ORGANIZER] == NULL)
	{
		*errhint_out = pstrdup(HS_EVENT_KEYS_HINT);
		return hs_input_error(errmsg_out, "event has no \"eventOrganizer\"");
	}
	if (f->have_time[0] && f->have_time[1] && f->time_ms[1] < f->time_ms[0])
		return hs_input_error(errmsg_out, "event.endDateTime is before event.startDateTime");
	for (int i = 0; i < 2; i++)
	{
		char	   *msg = hs_check_external_id(event_id_arguments[i], f->ids[i]);

		if (msg != NULL)
		{
			*errmsg_out = msg;
			return false;
		}
	}
	return true;
}

/* The event as sent: the ids, then the fields given, in event_keys' order. */
static void
write_event(StringInfo out, const EventFields *f)
{
	appendStringInfoString(out, "{\"externalEventId\":");
	escape_json(out, f->ids[0]);
	appendStringInfoString(out, ",\"externalAccountId\":");
	escape_json(out, f->ids[1]);
	for (int i = 0; i < lengthof(event_keys); i++)
	{
		const EventKey *ek = &event_keys[i];

		switch (ek->kind)
		{
			case EK_TEXT:
			case EK_URL:
				if (f->text[ek->slot] == NULL)
					break;
				appendStringInfo(out, ",\"%s\":", ek->key);
				escape_json(out, f->text[ek->slot]);
				break;
			case EK_TIME:
				if (!f->have_time[ek->slot])
					break;
				appendStringInfo(out, ",\"%s\":\"", ek->key);
				hs_append_iso_ms(out, f->time_ms[ek->slot]);
				appendStringInfoChar(out, '"');
				break;
			case EK_BOOL:
				if (f->flag[ek->slot] >= 0)
					appendStringInfo(out, ",\"%s\":%s", ek->key, f->flag[ek->slot] ? "true" : "false");
				break;
			case EK_PROPERTIES:
			case EK_ID:
				break;			/* the ids come first, the properties last */
		}
	}
	appendStringInfo(out, ",\"customProperties\":[%s]}", f->props.data);
}

/*
 * Check one event object and write the MarketingEventCreateRequestParams
 * to send into *out.  On bad input returns false with the reason in
 * *errmsg_out, maybe a hint in *errhint_out, and in *sqlstate 22023 for a
 * bad value or 54000 for a limit of the whole event (its size as sent, its
 * number of custom properties).  Every field's length is checked before it
 * is copied.  sent_form: the object is one this wrote before (an outbox
 * row's event), whose custom properties are PropertyValue objects.
 */
static bool
check_event(JsonbContainer *obj, const char *event_id, const char *account_id, bool sent_form,
			StringInfo out, char **errmsg_out, char **errhint_out, int *sqlstate)
{
	EventFields f;

	memset(&f, 0, sizeof(f));
	f.ids[0] = event_id;
	f.ids[1] = account_id;
	f.sent_form = sent_form;
	f.now_ms = hs_timestamptz_to_ms(GetCurrentTransactionStartTimestamp());
	f.flag[0] = f.flag[1] = -1;
	initStringInfo(&f.props);
	*errhint_out = NULL;
	*sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;

	if (!read_event(obj, &f, errmsg_out, errhint_out, sqlstate) ||
		!check_event_whole(&f, errmsg_out, errhint_out))
		return false;
	write_event(out, &f);
	if (out->len > HS_MAX_EVENT_BYTES)
		return event_too_large(false, out->len, errmsg_out, errhint_out, sqlstate);
	return true;
}

/*
 * The same, for callers that treat every invalid event alike (the trigger
 * records it, or raises 22023 with on_invalid=error).
 */
bool
hs_check_event(JsonbContainer *obj, const char *event_id, const char *account_id,
			   StringInfo out, char **errmsg_out, char **errhint_out)
{
	int			sqlstate;

	return check_event(obj, event_id, account_id, false, out, errmsg_out, errhint_out, &sqlstate);
}

/*
 * The same for an event as it was written to the outbox (the worker checks
 * every row it claims again): the body to send is written into *out.
 */
bool
hs_check_event_sent(JsonbContainer *obj, const char *event_id, const char *account_id,
					StringInfo out, char **errmsg_out, char **errhint_out)
{
	int			sqlstate;

	return check_event(obj, event_id, account_id, true, out, errmsg_out, errhint_out, &sqlstate);
}

/*
 * A complete call's body as written to the outbox ({"startDateTime",
 * "endDateTime"}, both timestamps, the end not before the start, neither
 * before 1970 nor after 9999), written again into *out as it is sent.
 * Returns false with the reason in *errmsg_out.
 */
bool
hs_check_event_complete_body(JsonbContainer *obj, StringInfo out, char **errmsg_out)
{
	const char *const keys[2] = {"startDateTime", "endDateTime"};
	int64		ms[2];

	if (!JsonContainerIsObject(obj) || JsonContainerIsScalar(obj))
		return hs_input_error(errmsg_out, "event must be a JSON object with \"startDateTime\" and \"endDateTime\"");
	if (JsonContainerSize(obj) != 2)
		return hs_input_error(errmsg_out, "event must have exactly the keys \"startDateTime\" and \"endDateTime\"");
	for (int i = 0; i < 2; i++)
	{
		JsonbValue *v = getKeyJsonValueFromContainer(obj, keys[i], strlen(keys[i]), NULL);
		char	   *reason = NULL;

		if (v == NULL)
			return hs_input_error(errmsg_out, "event has no \"%s\"", keys[i]);
		if (v->type != jbvString ||
			!hs_parse_timestamptz_ms(pnstrdup(v->val.string.val, v->val.string.len), &ms[i], &reason) ||
			ms[i] < 0 || ms[i] > INT64CONST(253402300799999))
			return hs_input_error(errmsg_out, "event.%s is not a timestamp between 1970 and 9999: %s%s%s", keys[i],
								  hs_jsonb_scalar_for_message(v), reason ? ": " : "", reason ? reason : "");
	}
	if (ms[1] < ms[0])
		return hs_input_error(errmsg_out, "event.endDateTime is before event.startDateTime");
	appendStringInfoString(out, "{\"startDateTime\":\"");
	hs_append_iso_ms(out, ms[0]);
	appendStringInfoString(out, "\",\"endDateTime\":\"");
	hs_append_iso_ms(out, ms[1]);
	appendStringInfoString(out, "\"}");
	return true;
}

/* Throwing version: the event as it is sent, as jsonb. */
Jsonb *
hs_validate_event(Jsonb *event, const char *event_id, const char *account_id)
{
	StringInfoData buf;
	char	   *msg;
	char	   *hint;
	int			sqlstate;

	if (!JB_ROOT_IS_OBJECT(event) || JB_ROOT_IS_SCALAR(event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event must be a JSON object"),
				 errhint("Pass for example '{\"eventName\": \"Spring webinar\", \"eventOrganizer\": \"Acme\"}'.")));
	initStringInfo(&buf);
	if (!check_event(&event->root, event_id, account_id, false, &buf, &msg, &hint, &sqlstate))
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg_internal("%s", msg),
				 hint ? errhint("%s", hint) : 0));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* The complete call's body: {"startDateTime", "endDateTime"}. */
Jsonb *
hs_event_complete_body(TimestampTz start, TimestampTz end)
{
	StringInfoData buf;

	if (TIMESTAMP_NOT_FINITE(start) || TIMESTAMP_NOT_FINITE(end))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_date_time and end_date_time must be finite timestamps")));
	if (end < start)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("end_date_time is before start_date_time")));
	if (start < 0 - ((TimestampTz) HS_PG_EPOCH_MS * 1000))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_date_time must not be before 1970")));
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"startDateTime\":\"");
	hs_append_iso_ms(&buf, hs_timestamptz_to_ms(start));
	appendStringInfoString(&buf, "\",\"endDateTime\":\"");
	hs_append_iso_ms(&buf, hs_timestamptz_to_ms(end));
	appendStringInfoString(&buf, "\"}");
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
