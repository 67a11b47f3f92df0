/*-------------------------------------------------------------------------
 *
 * trigger_event.c
 *	  sync_event(), the trigger for an events table: each committed change of
 *	  a marketing event is queued in the outbox as the event's upsert (or, on
 *	  DELETE with on_delete=cancel, its cancel).
 *
 *	  CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON my_webinars
 *	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_event(
 *		  'event_id=<col>', 'account_id=<col>', 'name=<col>', 'organizer=<col>',
 *		  'type=<col>', 'description=<col>', 'url=<col>', 'start=<col>',
 *		  'end=<col>', 'cancelled=<col>', 'completed=<col>',
 *		  'properties=<col>', 'on_delete=cancel');
 *
 * The same mapping style as sync_attendance (trigger.c): key=<column> reads
 * a column, key:=<text> gives a constant.  event_id, account_id, name and
 * organizer are required.  The row's values are assembled into the input
 * object hubspot_enqueue_event takes and checked by the same validator
 * (validate_event.c).  An invalid row does not fail the application's write:
 * it is recorded as failed (LOCAL_VALIDATION_ERROR) with its raw values;
 * on_invalid=error raises instead.  An UPDATE enqueues only when a mapped
 * column changed; one that changes the event id or account is a DELETE of
 * the old event plus an INSERT of the new one.  An upsert drops the pending
 * cancel of the same event that this transaction's DELETE of the same table
 * wrote (an event row moved to another partition, or deleted and inserted
 * again), as sync_attendance does (trigger.c).  A char(n) value is read
 * without its trailing spaces, as its cast to text gives it.
 *
 * Events tables change rarely, so the arguments are parsed on every fire
 * (a few string comparisons and column lookups) rather than cached.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(hubspot_sync_event);

#define EVENT_KEYS_HINT \
	"The keys are event_id, account_id, name and organizer (required), and type, description, url, start, end, cancelled, completed, properties, connection, on_delete and on_invalid (optional)."

typedef enum EventKey
{
	EK_EVENT_ID,
	EK_ACCOUNT_ID,
	EK_NAME,
	EK_ORGANIZER,
	EK_TYPE,
	EK_DESCRIPTION,
	EK_URL,
	EK_START,
	EK_END,
	EK_CANCELLED,
	EK_COMPLETED,
	EK_PROPERTIES,
	EK_CONNECTION,				/* not a field of the event: the connection it goes through */
	NUM_EVENT_KEYS
} EventKey;

/* the event's fields are the keys EK_NAME .. EK_LAST_FIELD */
#define EK_LAST_FIELD EK_PROPERTIES

static const char *const key_names[NUM_EVENT_KEYS] = {
	"event_id", "account_id", "name", "organizer", "type", "description", "url",
	"start", "end", "cancelled", "completed", "properties", "connection"
};

/* the input object's field for each key (NULL: an id, not a field) */
static const char *const field_names[NUM_EVENT_KEYS] = {
	NULL, NULL, "eventName", "eventOrganizer", "eventType", "eventDescription", "eventUrl",
	"startDateTime", "endDateTime", "eventCancelled", "eventCompleted", "customProperties", NULL
};

typedef struct EventMapping
{
	bool		given;
	const char *arg;
	bool		is_const;
	const char *const_text;
	AttrNumber	attnum;
	Oid			basetype;
	bool		typbyval;
	int16		typlen;
} EventMapping;

typedef struct EventConfig
{
	EventMapping m[NUM_EVENT_KEYS];
	bool		on_delete_cancel;
	bool		on_invalid_error;
} EventConfig;

static void
parse_event_config(Relation rel, const Trigger *trigger, EventConfig *cfg)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *table = hs_table_display_name(rel);

	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < trigger->tgnargs; i++)
	{
		const char *arg = trigger->tgargs[i];
		bool		is_const;
		const char *value;
		char	   *key = hs_trigger_split_argument(arg, trigger->tgname, table, &value, &is_const);
		int			k;

		for (k = 0; k < NUM_EVENT_KEYS; k++)
			if (strcmp(key, key_names[k]) == 0)
				break;
		if (k < NUM_EVENT_KEYS)
		{
			EventMapping *m = &cfg->m[k];

			if (m->given)
				hs_trigger_key_twice(key, arg, trigger->tgname, table);
			m->given = true;
			m->arg = arg;
			if (is_const)
			{
				m->is_const = true;
				m->const_text = value;
				if (k == EK_PROPERTIES)
				{
					/*
					 * The constant goes into the event object as JSON: keep
					 * it as one canonical JSON value, so that text such as
					 * '{"a": "1"}, "eventName": "x"' cannot add fields.
					 */
					Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(value)));

					m->const_text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				}
				continue;
			}
			m->attnum = hs_trigger_column(desc, value, arg, trigger->tgname, table);
			{
				Form_pg_attribute att = TupleDescAttr(desc, m->attnum - 1);

				m->basetype = getBaseType(att->atttypid);
				m->typbyval = att->attbyval;
				m->typlen = att->attlen;
				if (k == EK_PROPERTIES && m->basetype != JSONBOID && m->basetype != JSONOID)
					ereport(ERROR,
							(errcode(ERRCODE_DATATYPE_MISMATCH),
							 errmsg("column \"%s\" of argument \"%s\" of trigger \"%s\" on table %s has type %s",
									NameStr(att->attname), arg, trigger->tgname, table,
									format_type_be(att->atttypid)),
							 errdetail("The key properties takes a jsonb or json column.")));
			}
		}
		else if (strcmp(key, "on_delete") == 0 && !is_const &&
				 (strcmp(value, "cancel") == 0 || strcmp(value, "ignore") == 0))
			cfg->on_delete_cancel = (strcmp(value, "cancel") == 0);
		else if (strcmp(key, "on_invalid") == 0 && !is_const &&
				 (strcmp(value, "error") == 0 || strcmp(value, "record") == 0))
			cfg->on_invalid_error = (strcmp(value, "error") == 0);
		else if (strcmp(key, "on_delete") == 0)
			hs_trigger_value_error(arg, trigger->tgname, table,
								   "on_delete is \"cancel\" (a DELETE cancels the event in HubSpot) or \"ignore\" (the default).");
		else if (strcmp(key, "on_invalid") == 0)
			hs_trigger_value_error(arg, trigger->tgname, table,
								   "on_invalid is \"record\" (the default: an invalid row is recorded as a failed sync) or \"error\".");
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("unknown key \"%s\" in argument \"%s\" of trigger \"%s\" on table %s",
							key, arg, trigger->tgname, table),
					 errhint(EVENT_KEYS_HINT)));
	}
	for (int k = EK_EVENT_ID; k <= EK_ORGANIZER; k++)
		if (!cfg->m[k].given)
			hs_trigger_key_missing(key_names[k], trigger->tgname, table);
}

/*
 * A mapped value as text; NULL when the column is NULL.  A char(n) value
 * (or a domain over char(n)) without its padding, as col::text gives it.
 */
static char *
mapped_text(const EventMapping *m, HeapTuple tuple, TupleDesc desc, Datum *datum)
{
	bool		isnull;
	Oid			outfunc;
	bool		isvarlena;
	char	   *text;

	if (m->is_const)
		return pstrdup(m->const_text);
	*datum = heap_getattr(tuple, m->attnum, desc, &isnull);
	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(desc, m->attnum - 1)->atttypid, &outfunc, &isvarlena);
	text = OidOutputFunctionCall(outfunc, *datum);
	if (m->basetype == BPCHAROID)
		hs_bpchar_rtrim(text);
	return text;
}

/* Append one field of the input object from a mapped value. */
static void
append_field(StringInfo buf, EventKey k, const EventMapping *m, HeapTuple tuple, TupleDesc desc)
{
	Datum		d = (Datum) 0;
	char	   *text = mapped_text(m, tuple, desc, &d);

	if (text == NULL)
		return;					/* a NULL leaves the field out */
	appendStringInfo(buf, ",\"%s\":", field_names[k]);
	if (k == EK_PROPERTIES)
	{
		/* json text, as the column holds it (a constant is checked as JSON by jsonb_in) */
		appendStringInfoString(buf, text);
		return;
	}
	if ((k == EK_START || k == EK_END) && !m->is_const &&
		(m->basetype == TIMESTAMPTZOID || m->basetype == TIMESTAMPOID || m->basetype == DATEOID))
	{
		TimestampTz ts;
		int			overflow = 0;

		if (m->basetype == TIMESTAMPTZOID)
			ts = DatumGetTimestampTz(d);
		else if (m->basetype == TIMESTAMPOID)
			ts = timestamp2timestamptz_opt_overflow(DatumGetTimestamp(d), &overflow);
		else
			ts = date2timestamptz_opt_overflow(DatumGetDateADT(d), &overflow);
		if (overflow == 0 && !TIMESTAMP_NOT_FINITE(ts) && hs_timestamptz_to_ms(ts) >= 0)
		{
			appendStringInfo(buf, INT64_FORMAT, hs_timestamptz_to_ms(ts));
			return;
		}
	}
	if (k == EK_CANCELLED || k == EK_COMPLETED)
	{
		bool		b;

		if (parse_bool(text, &b))
		{
			appendStringInfoString(buf, b ? "true" : "false");
			return;
		}
	}
	escape_json(buf, text);
}

/* One row image as an outbox row: the event's upsert, or its cancel. */
static void
row_to_event(const EventConfig *cfg, const Trigger *trigger, TupleDesc desc, HeapTuple tuple,
			 bool cancel, const char *table, HsOutboxRow *row)
{
	Datum		d;
	char	   *event_id = mapped_text(&cfg->m[EK_EVENT_ID], tuple, desc, &d);
	char	   *account_id = mapped_text(&cfg->m[EK_ACCOUNT_ID], tuple, desc, &d);
	StringInfoData input;
	StringInfoData out;
	char	   *msg = NULL;
	char	   *hint = NULL;
	char	   *conn_problem = NULL;
	Jsonb	   *input_jsonb = NULL;

	memset(row, 0, sizeof(*row));
	row->kind = cancel ? "event_cancel" : "event_upsert";
	row->external_event_id = event_id;
	row->external_account_id = account_id;
	row->contact_key = "";
	row->source = table;
	if (cfg->m[EK_CONNECTION].given)
	{
		char	   *conn = mapped_text(&cfg->m[EK_CONNECTION], tuple, desc, &d);

		if (conn == NULL)
			conn_problem = pstrdup("connection must not be null");
		else if ((conn_problem = hs_connection_problem(conn)) == NULL && strcmp(conn, "default") != 0)
			row->connection = conn;
		else if (conn_problem != NULL)
			row->connection = conn;
	}

	initStringInfo(&input);
	appendStringInfoString(&input, "{\"_\":0");
	if (!cancel)
		for (int k = EK_NAME; k <= EK_LAST_FIELD; k++)
			if (cfg->m[k].given)
				append_field(&input, k, &cfg->m[k], tuple, desc);
	appendStringInfoChar(&input, '}');

	if (event_id == NULL)
		msg = pstrdup("external_event_id must not be null");
	else if (account_id == NULL)
		msg = pstrdup("external_account_id must not be null");
	else if ((msg = hs_check_external_id("external_event_id", event_id)) == NULL)
		msg = hs_check_external_id("external_account_id", account_id);
	if (msg == NULL)
		msg = conn_problem;

	/* the placeholder key "_" keeps the text an object when no field is mapped */
	if (msg == NULL || !cancel)
	{
		MemoryContext oldcxt = CurrentMemoryContext;
		char	   *json_error = NULL;

		PG_TRY();
		{
			input_jsonb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(input.data)));
		}
		PG_CATCH();
		{
			json_error = hs_take_data_exception(oldcxt);
		}
		PG_END_TRY();
		if (json_error && msg == NULL)
			msg = psprintf("event.customProperties is not valid JSON: %s", json_error);
		if (input_jsonb)
		{
			/* drop the placeholder */
			input_jsonb = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(input_jsonb),
															 CStringGetTextDatum("_")));
		}
	}

	if (msg == NULL && !cancel)
	{
		initStringInfo(&out);
		if (hs_check_event(&input_jsonb->root, event_id, account_id, &out, &msg, &hint))
		{
			row->event = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
			return;
		}
	}
	if (msg == NULL)
		return;					/* a valid cancel */

	if (cfg->on_invalid_error)
		hs_trigger_invalid_row(table, trigger->tgname, msg, hint);
	/* recorded as failed, with the values as they came */
	row->event = input_jsonb;
	row->error_message = msg;
}

static bool
mapping_changed(const EventMapping *m, HeapTuple oldtup, HeapTuple newtup, TupleDesc desc)
{
	if (!m->given || m->is_const)
		return false;
	return hs_column_changed(m->attnum, m->typbyval, m->typlen, oldtup, newtup, desc);
}

/*
 * sync_event() RETURNS trigger
 *
 * INSERT: the event's upsert.  DELETE: its cancel, with on_delete=cancel.
 * UPDATE: nothing unless a mapped column changed; a change of event_id or
 * account_id is a DELETE of the old event and an INSERT of the new one.
 */
Datum
hubspot_sync_event(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	Relation	rel;
	TupleDesc	desc;
	EventConfig cfg;
	char	   *table;
	HsOutboxRow rows[2];
	bool		replaced[2] = {false, false};	/* a cancel for an image that is gone */
	int			nrows = 0;
	Oid			root_relid;
	int64		id;
	ItemPointerData tid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync_event() was not called by the trigger manager")));
	td = (TriggerData *) fcinfo->context;
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	hs_check_trigger_type(rel, td->tg_trigger, "sync_event");
	parse_event_config(rel, td->tg_trigger, &cfg);
	table = hs_table_display_name(rel);
	root_relid = hs_trigger_root_relid(rel);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		row_to_event(&cfg, td->tg_trigger, desc, td->tg_trigtuple, false, table, &rows[nrows++]);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		if (cfg.on_delete_cancel)
		{
			row_to_event(&cfg, td->tg_trigger, desc, td->tg_trigtuple, true, table, &rows[nrows]);
			replaced[nrows++] = true;
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;
		bool		identity_changed = mapping_changed(&cfg.m[EK_EVENT_ID], oldtup, newtup, desc) ||
			mapping_changed(&cfg.m[EK_ACCOUNT_ID], oldtup, newtup, desc) ||
			mapping_changed(&cfg.m[EK_CONNECTION], oldtup, newtup, desc);
		bool		changed = identity_changed;

		for (int k = EK_NAME; k <= EK_LAST_FIELD && !changed; k++)
			changed = mapping_changed(&cfg.m[k], oldtup, newtup, desc);
		if (identity_changed && cfg.on_delete_cancel)
		{
			row_to_event(&cfg, td->tg_trigger, desc, oldtup, true, table, &rows[nrows]);
			replaced[nrows++] = true;
		}
		if (changed)
			row_to_event(&cfg, td->tg_trigger, desc, newtup, false, table, &rows[nrows++]);
	}

	for (int i = 0; i < nrows; i++)
	{
		/* an upsert drops the cancel this transaction wrote for the event (trigger.c) */
		if (!replaced[i])
			hs_trigger_drop_own_cancels(root_relid, &rows[i]);
		id = hs_outbox_insert(&rows[i], &tid);
		if (replaced[i])
			hs_trigger_cancel_written(root_relid, &rows[i], id, &tid);
	}
	return PointerGetDatum(NULL);
}

/* The same for a sync_event trigger (ddl_guard.c). */
void
hs_sync_event_check(Relation rel, const Trigger *trigger)
{
	EventConfig cfg;

	parse_event_config(rel, trigger, &cfg);
}
