/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  sync_attendance(), the trigger for attendance tables, and
 *	  backfill_batch(), which enqueues a table's existing rows as the trigger
 *	  would for an INSERT.
 *
 * An application keeps attendance in its own table; an AFTER ROW trigger
 * turns each change of a row into an outbox row, in the application's own
 * transaction:
 *
 *	  CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON my_attendance
 *	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
 *		  'event_id=<col>', 'state=<col>', 'vid=<col>', 'account_id=<col>',
 *		  'at=<col>', 'properties=<col>', 'connection=<col>', 'on_delete=cancel');
 *
 * Design decisions:
 *
 * - The trigger's arguments are parsed once per trigger and cached in a
 *	 backend-local hash keyed by the trigger's OID.  An entry is marked stale
 *	 when the table's relcache entry is invalidated (ALTER TABLE, CREATE OR
 *	 REPLACE TRIGGER, DROP COLUMN..., from any session) and is compared with
 *	 the trigger's current arguments on every fire, so a change is never
 *	 missed; a stale entry is parsed again on the next fire.  A configuration
 *	 that does not parse is never cached: a misconfigured trigger raises its
 *	 ERROR on every fire.  A replaced configuration is not freed at once but
 *	 moved under TopTransactionContext, so that a caller still holding it
 *	 (backfill_batch, or a fire that reached this code again through an
 *	 output function) keeps a valid pointer until the transaction ends.
 *
 * - Values are read from the trigger's tuples with heap_getattr and turned
 *	 into text with the column type's output function, as the invoking role;
 *	 no SQL is run to read them, and column names are looked up in the tuple
 *	 descriptor, never spliced into SQL.  Timestamps are converted the way
 *	 PostgreSQL casts them (a timestamp or date in the session's TimeZone);
 *	 a char(n) value (or a domain over char(n)) loses its trailing spaces,
 *	 as its cast to text does (varchar and text are read as they are).
 *
 * - A cancel the trigger wrote for a DELETE (or for the old image of an
 *	 UPDATE that changed the contact or event) is deleted from the outbox
 *	 when the same transaction then enqueues a new state of the same key
 *	 from the same table: a row moved to another partition, or deleted and
 *	 inserted again, sends its new state without a cancel before it.  See
 *	 "cancels this transaction wrote" below.
 *
 * - The values are assembled into a contact object and checked by the very
 *	 validator the SQL functions use (validate.c), so that a trigger accepts
 *	 exactly what hubspot_enqueue_subscriber accepts, with the same messages.
 *
 * - A row whose values are invalid must not fail the application's write:
 *	 it is recorded in the outbox as 'failed' (LOCAL_VALIDATION_ERROR) with
 *	 its raw values, where failed_syncs shows it.  'on_invalid=error' makes
 *	 such a row an ERROR instead.
 *
 * - The outbox is written by hs_outbox_insert() with the outbox owner's
 *	 rights; the role writing to the attendance table needs no privilege on
 *	 the outbox.  Nothing here is SECURITY DEFINER.
 *
 * - A fire first builds every outbox row it will write (reading the cached
 *	 configuration), then writes them; the configuration is not touched once
 *	 SPI runs.
 *
 * - backfill_batch() reads the table by its primary key's index, starting
 *	 after the last key of the previous batch, so backfill() (plpgsql,
 *	 committing between batches) reads a table once however many batches it
 *	 takes, misses no row an UPDATE moves meanwhile, and no SQL is ever
 *	 built from the table's name.  Each row goes through the same code as a
 *	 fired INSERT.  (Schemas before 0.5.0 page by ctid.)
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaddress.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/rls.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(hubspot_sync_attendance);
PG_FUNCTION_INFO_V1(hubspot_backfill_batch);
PG_FUNCTION_INFO_V1(hubspot_backfill_batch_by_key);

#define VALID_KEYS_HINT \
	"The keys are event_id, state, vid or email (one of them), and account_id (required), and at, properties, connection, on_delete and on_invalid (optional)."

#define VALID_STATES_HINT \
	"Valid states are \"register\", \"attend\" and \"cancel\" (also accepted: \"registered\", \"attended\", \"cancelled\", \"canceled\", in any letter case)."

/* ---- the configuration of one trigger ---- */

/* The keys that name a value: a column (key=col) or a constant (key:=text). */
typedef enum ValueKey
{
	VK_EVENT_ID,
	VK_STATE,
	VK_VID,
	VK_ACCOUNT_ID,
	VK_AT,
	VK_PROPERTIES,
	VK_EMAIL,
	VK_CONNECTION,
	NUM_VALUE_KEYS
} ValueKey;

static const char *const value_key_names[NUM_VALUE_KEYS] = {
	"event_id", "state", "vid", "account_id", "at", "properties", "email", "connection"
};
/* vid or email: exactly one of them, checked apart */
static const bool value_key_required[NUM_VALUE_KEYS] = {
	true, true, false, true, false, false, false, false
};

/* How a mapped column's value is read. */
typedef enum ValueForm
{
	VF_TEXT,					/* any type, as its text output */
	VF_INT,						/* int2, int4, int8 */
	VF_NUMERIC,					/* numeric */
	VF_TIMESTAMPTZ,
	VF_TIMESTAMP,				/* read in the session's TimeZone */
	VF_DATE,					/* likewise, at midnight */
	VF_JSONB,
	VF_JSON
} ValueForm;

typedef struct MappedValue
{
	bool		given;			/* the trigger has an argument for this key */
	const char *arg;			/* that argument, for messages */
	bool		is_const;		/* key:=constant */
	char	   *const_text;		/* the constant */
	Jsonb	   *const_jsonb;	/* the constant, for properties */
	AttrNumber	attnum;			/* key=column: the column */
	ValueForm	form;
	bool		typbyval;
	int16		typlen;
	bool		bpchar;			/* char(n), or a domain over it: trailing spaces trimmed */
	FmgrInfo	output;			/* the column type's output function */
} MappedValue;

typedef struct SyncConfig
{
	Oid			tgoid;
	Oid			relid;
	Oid			root_relid;		/* the partitioned table at the top, or relid */
	char	   *tgname;
	char	   *table;			/* schema.table, as the outbox's source names it */
	int			nargs;			/* the arguments parsed, to detect a change */
	char	  **args;
	MappedValue v[NUM_VALUE_KEYS];
	bool		on_delete_cancel;
	bool		on_invalid_error;
} SyncConfig;

/* An entry of the configuration cache. */
typedef struct ConfigEntry
{
	Oid			tgoid;			/* hash key */
	Oid			relid;
	bool		valid;
	MemoryContext cxt;			/* holds cfg */
	SyncConfig *cfg;
} ConfigEntry;

static HTAB *config_cache = NULL;
static MemoryContext config_cache_cxt = NULL;
static uint64 config_inval_count = 0;

/* ---- error reporting helpers ---- */


/* An invalid row of a trigger with on_invalid=error: the write fails (22023). */
void
hs_trigger_invalid_row(const char *table, const char *tgname, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot sync a row of table %s to HubSpot: %s", table, msg),
			 errdetail("Trigger \"%s\" has on_invalid=error; without it, the write goes on and the row is recorded in hubspot_events.failed_syncs.",
					   tgname),
			 hint ? errhint("%s", hint) : 0));
}

/* The table as source and messages name it: schema.table, quoted as needed. */
char *
hs_table_display_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/* An argument that is not key=column or key:=constant (22023). */
void
hs_trigger_syntax_error(const char *arg, const char *tgname, const char *table,
					  const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid argument \"%s\" of trigger \"%s\" on table %s",
					arg, tgname, table),
			 errdetail_internal("%s", detail),
			 errhint("Each argument is key=column or key:=constant, such as 'vid=contact_vid' or 'account_id:=acme'.")));
}

/* An argument whose form is right but whose value is not (22023). */
void
hs_trigger_value_error(const char *arg, const char *tgname, const char *table,
					 const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid argument \"%s\" of trigger \"%s\" on table %s",
					arg, tgname, table),
			 errdetail_internal("%s", detail)));
}

/*
 * A sync_attendance trigger must be AFTER ... FOR EACH ROW: a BEFORE trigger
 * would enqueue rows that a later trigger or a constraint may still change or
 * reject, and a statement trigger has no row.  Checked on every fire.
 */
void
hs_check_trigger_type(Relation rel, const Trigger *trigger, const char *fname)
{
	int16		t = trigger->tgtype;
	const char *timing;

	if (TRIGGER_FOR_ROW(t) && TRIGGER_FOR_AFTER(t))
		return;

	timing = TRIGGER_FOR_BEFORE(t) ? "BEFORE" :
		TRIGGER_FOR_INSTEAD(t) ? "INSTEAD OF" : "AFTER";
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("%s trigger \"%s\" on table %s must be AFTER ... FOR EACH ROW",
					fname, trigger->tgname, hs_table_display_name(rel)),
			 errdetail("It is defined %s ... FOR EACH %s.",
					   timing, TRIGGER_FOR_ROW(t) ? "ROW" : "STATEMENT"),
			 errhint("Create it with CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON ... FOR EACH ROW EXECUTE FUNCTION hubspot_events.%s(...).", fname)));
}

/* ---- cancels this transaction wrote, dropped when their key comes back ---- */

/*
 * A row replaced by a DELETE and an INSERT in one transaction (an UPDATE
 * that moves it to another partition fires DELETE on the old partition and
 * INSERT on the new one; an ORM that deletes and reinserts) would send a
 * cancel and then the new state: the contact is briefly cancelled in
 * HubSpot, and the cancel's time is the transaction's start.  So the
 * triggers remember, per transaction, the cancels they wrote for a DELETE
 * (or for the old image of an UPDATE that changed the key), by key: the
 * kind of row, the table (a partitioned table counts as one: its root),
 * event, account, contact and connection.  When the same transaction then enqueues a
 * valid non-cancel state of a key, the pending cancels of that key it wrote
 * are deleted from the outbox first: nobody else ever saw them.
 *
 * The record lives in TopTransactionContext and is recognised by the
 * transaction's local id.  Each cancel keeps the (sub)transaction id that
 * wrote it: a cancel written by a subtransaction since rolled back is not
 * current any more, and is skipped.  A cancel deleted by a subtransaction
 * that then rolls back is back in the outbox: the subtransaction-abort
 * callback marks it as present again (the drops are kept in the order they
 * were made, and a subtransaction's drops are the last ones, with
 * subtransaction ids at least its own).  The DELETE itself checks the id,
 * the writer's xid, that the row is still pending, and the key, so a stale
 * entry never deletes anything else.
 *
 * The record is bounded by work_mem (about 64 bytes a cancel); cancels
 * written beyond it are not remembered, and are sent as before.
 */
typedef struct OwnCancel
{
	int64		id;				/* the outbox row */
	ItemPointerData tid;		/* where it was written */
	TransactionId xmin;			/* the (sub)transaction that wrote it */
	SubTransactionId dropped_in;	/* the subtransaction that deleted it, or Invalid */
	struct OwnCancel *older;	/* an older cancel of the same key */
} OwnCancel;

typedef struct OwnCancelKey
{
	uint64		hash;			/* hash key: the hash of the key */
	OwnCancel  *newest;
} OwnCancelKey;

static struct
{
	LocalTransactionId lxid;	/* the transaction the record is for */
	HTAB	   *by_key;
	int64		count;
	List	   *dropped;		/* OwnCancel *, in the order deleted */
}			own_cancels = {InvalidLocalTransactionId};

static void
own_cancels_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* the memory went with TopTransactionContext */
			memset(&own_cancels, 0, sizeof(own_cancels));
			own_cancels.lxid = InvalidLocalTransactionId;
			break;
		default:
			break;
	}
}

static void
own_cancels_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB || own_cancels.lxid != HS_MY_LXID)
		return;
	/* the deletes this subtransaction (or a child of it) made are undone */
	while (own_cancels.dropped != NIL)
	{
		OwnCancel  *c = (OwnCancel *) llast(own_cancels.dropped);

		if (c->dropped_in < mySubid)
			break;
		c->dropped_in = InvalidSubTransactionId;
		own_cancels.dropped = list_delete_last(own_cancels.dropped);
	}
}

/* The hash of a row's key, within the table (root) the trigger is on. */
static uint64
own_cancel_hash(Oid root_relid, const HsOutboxRow *row)
{
	StringInfoData buf;
	bool		subscriber = row->kind == NULL || strcmp(row->kind, "subscriber") == 0;
	uint64		h;

	initStringInfo(&buf);
	/* NUL-separated: no two different keys give the same bytes */
	appendStringInfoChar(&buf, subscriber ? 's' : 'e');
	appendBinaryStringInfo(&buf, (const char *) &root_relid, sizeof(root_relid));
	appendStringInfoString(&buf, row->external_event_id ? row->external_event_id : "");
	appendBinaryStringInfo(&buf, "", 1);
	appendStringInfoString(&buf, row->external_account_id ? row->external_account_id : "");
	appendBinaryStringInfo(&buf, "", 1);
	appendStringInfoString(&buf, row->contact_key ? row->contact_key : "");
	appendBinaryStringInfo(&buf, "", 1);
	/* a row moved to another connection is another HubSpot account's: its cancel stays */
	appendStringInfoString(&buf, row->connection ? row->connection : "default");
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return h;
}

/*
 * The table a trigger's changes count for: the partitioned table at the top
 * of rel's partition tree (a row that moves between partitions stays in it),
 * or rel itself.
 */
Oid
hs_trigger_root_relid(Relation rel)
{
	List	   *ancestors;

	if (!rel->rd_rel->relispartition)
		return RelationGetRelid(rel);
	ancestors = get_partition_ancestors(RelationGetRelid(rel));
	return ancestors != NIL ? llast_oid(ancestors) : RelationGetRelid(rel);
}

/*
 * A trigger wrote outbox row id, the cancel *row, for a DELETE of a row of
 * root_relid (or the old image of an UPDATE that changed its key).
 */
void
hs_trigger_cancel_written(Oid root_relid, const HsOutboxRow *row, int64 id, ItemPointer tid)
{
	static bool callbacks_registered = false;
	uint64		h;
	OwnCancelKey *entry;
	OwnCancel  *c;
	bool		found;

	if (row->error_message != NULL)
		return;					/* written as failed: never sent */

	if (!callbacks_registered)
	{
		RegisterXactCallback(own_cancels_xact_callback, NULL);
		RegisterSubXactCallback(own_cancels_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (own_cancels.lxid != HS_MY_LXID || own_cancels.by_key == NULL)
	{
		HASHCTL		ctl;

		memset(&own_cancels, 0, sizeof(own_cancels));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(OwnCancelKey);
		ctl.hcxt = TopTransactionContext;
		own_cancels.by_key = hash_create("hubspot_events cancels written", 64, &ctl,
										 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		own_cancels.lxid = HS_MY_LXID;
	}
	if (own_cancels.count >= (int64) work_mem * 1024 / 64)
		return;

	h = own_cancel_hash(root_relid, row);
	entry = (OwnCancelKey *) hash_search(own_cancels.by_key, &h, HASH_ENTER, &found);
	if (!found)
		entry->newest = NULL;
	c = MemoryContextAlloc(TopTransactionContext, sizeof(OwnCancel));
	c->id = id;
	if (tid != NULL)
		ItemPointerCopy(tid, &c->tid);
	else
		ItemPointerSetInvalid(&c->tid);
	c->xmin = GetCurrentTransactionIdIfAny();
	c->dropped_in = InvalidSubTransactionId;
	c->older = entry->newest;
	entry->newest = c;
	own_cancels.count++;
}

/*
 * Before a trigger enqueues *row, a valid state of a key that is not a
 * cancel, for a row of root_relid: delete the pending cancels of that key
 * this transaction's triggers wrote for the same table.  Cheap when there
 * are none (one comparison when the transaction wrote no cancel).
 */
void
hs_trigger_drop_own_cancels(Oid root_relid, const HsOutboxRow *row)
{
	uint64		h;
	OwnCancelKey *entry;
	HsOutboxRow cancel;

	if (own_cancels.lxid != HS_MY_LXID || own_cancels.by_key == NULL)
		return;
	if (row->error_message != NULL)
		return;					/* an invalid row is not sent: the cancel stays the last word */

	h = own_cancel_hash(root_relid, row);
	entry = (OwnCancelKey *) hash_search(own_cancels.by_key, &h, HASH_FIND, NULL);
	if (entry == NULL)
		return;

	/* the cancel rows as written: the key of *row, the state of a cancel */
	memset(&cancel, 0, sizeof(cancel));
	cancel.external_event_id = row->external_event_id;
	cancel.external_account_id = row->external_account_id;
	cancel.contact_key = row->contact_key;
	cancel.connection = row->connection;
	if (row->kind == NULL || strcmp(row->kind, "subscriber") == 0)
	{
		cancel.kind = "subscriber";
		cancel.subscriber_state = hs_state_name(HS_STATE_CANCEL);
	}
	else
		cancel.kind = "event_cancel";

	for (OwnCancel *c = entry->newest; c != NULL; c = c->older)
	{
		if (c->dropped_in != InvalidSubTransactionId)
			continue;			/* deleted already */
		if (!TransactionIdIsValid(c->xmin) || !TransactionIdIsCurrentTransactionId(c->xmin))
			continue;			/* its writer was rolled back: it is gone */
		if (hs_outbox_delete_own(c->id, c->xmin, &c->tid, &cancel))
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);

			c->dropped_in = GetCurrentSubTransactionId();
			own_cancels.dropped = lappend(own_cancels.dropped, c);
			MemoryContextSwitchTo(oldcxt);
		}
	}
}

/* ---- parsing the arguments ---- */

/* A user column of the table by its exact name, or InvalidAttrNumber. */
AttrNumber
hs_find_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/*
 * The text of a char(n) value as PostgreSQL's cast to text gives it: the
 * trailing spaces removed (the cast is rtrim1, which trims the space
 * character only, byte by byte: no server encoding has 0x20 inside a
 * multibyte character).  In place.
 */
void
hs_bpchar_rtrim(char *text)
{
	size_t		len = strlen(text);

	while (len > 0 && text[len - 1] == ' ')
		len--;
	text[len] = '\0';
}

/*
 * Split one trigger argument, key=<column> or key:=<constant>, into its key
 * and value; throws (22023) on bad syntax.  Shared with sync_event.
 */
char *
hs_trigger_split_argument(const char *arg, const char *tgname, const char *table,
						  const char **value, bool *is_const)
{
	const char *eq = strchr(arg, '=');
	char	   *key;

	if (eq == NULL)
		hs_trigger_syntax_error(arg, tgname, table, "It has no \"=\".");
	*is_const = (eq > arg && eq[-1] == ':');
	key = pnstrdup(arg, (eq - arg) - (*is_const ? 1 : 0));
	*value = eq + 1;
	if (key[0] == '\0')
		hs_trigger_syntax_error(arg, tgname, table, "It has no key before \"=\".");
	return key;
}

/* A key given twice (42P17). */
void
hs_trigger_key_twice(const char *key, const char *arg, const char *tgname, const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("key \"%s\" is given twice in the arguments of trigger \"%s\" on table %s",
					key, tgname, table),
			 errdetail("The second time is the argument \"%s\".", arg)));
}

/* The column an argument names (key=<column>); throws when it has none or it does not exist. */
AttrNumber
hs_trigger_column(TupleDesc desc, const char *value, const char *arg,
				  const char *tgname, const char *table)
{
	AttrNumber	attnum;

	if (value[0] == '\0')
		hs_trigger_syntax_error(arg, tgname, table, "It names no column after \"=\".");
	attnum = hs_find_column(desc, value);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of argument \"%s\" of trigger \"%s\" does not exist in table %s",
						value, arg, tgname, table),
				 errhint("Column names are case-sensitive and written without quotes, as in 'event_id=Event Id'.")));
	return attnum;
}

/* A required key with no argument (42P17). */
void
hs_trigger_key_missing(const char *key, const char *tgname, const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("trigger \"%s\" on table %s has no argument for \"%s\"",
					tgname, table, key),
			 errhint("Add '%s=<column>' to read it from a column, or '%s:=<value>' to give a constant.",
					 key, key)));
}

/*
 * Check a constant with the validator, at parse time: a constant that can
 * never be valid is a misconfigured trigger, not a bad row.  Returns the
 * validator's message, or NULL.
 */
static char *
check_constant(ValueKey key, const char *text, Jsonb **jsonb_out)
{
	HsSubscriberState state;
	StringInfoData buf;
	HsContact	contact;
	char	   *msg;
	char	   *hint;

	switch (key)
	{
		case VK_EVENT_ID:
			return hs_check_external_id("external_event_id", text);
		case VK_ACCOUNT_ID:
			return hs_check_external_id("external_account_id", text);
		case VK_STATE:
			if (!hs_parse_state(text, &state))
				return psprintf("invalid subscriber_state \"%s\"", text);
			return NULL;
		case VK_CONNECTION:
			/* whether it exists is checked per row: it may be created after the trigger */
			if (!hs_connection_name_is_valid(text))
				return psprintf("invalid connection name \"%s\"", text);
			return NULL;
		default:
			break;
	}

	/* vid, email, at, properties: check them as part of a contact */
	initStringInfo(&buf);
	if (key == VK_VID)
	{
		appendStringInfoString(&buf, "{\"vid\":");
		escape_json(&buf, text);
	}
	else if (key == VK_EMAIL)
	{
		appendStringInfoString(&buf, "{\"email\":");
		escape_json(&buf, text);
	}
	else if (key == VK_AT)
	{
		appendStringInfoString(&buf, "{\"vid\":1,\"interactionDateTime\":");
		escape_json(&buf, text);
	}
	else
	{
		JsonLexContext *lex;

		lex = hs_json_lexer(text, strlen(text), GetDatabaseEncoding());
		if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
			return pstrdup("properties is not valid JSON");
		*jsonb_out = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		appendStringInfo(&buf, "{\"vid\":1,\"properties\":%s", text);
	}
	appendStringInfoChar(&buf, '}');

	if (!hs_check_contact(&DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															  CStringGetDatum(buf.data)))->root,
						  0, &contact, &msg, &hint))
		return msg;
	return NULL;
}

/* The column types each key accepts; throws on any other. */
static ValueForm
column_form(ValueKey key, Form_pg_attribute att, const char *arg,
			const char *tgname, const char *table)
{
	Oid			base = getBaseType(att->atttypid);
	char		category;
	bool		preferred;
	const char *needs;

	get_type_category_preferred(base, &category, &preferred);

	switch (key)
	{
		case VK_VID:
			if (base == INT2OID || base == INT4OID || base == INT8OID)
				return VF_INT;
			if (base == NUMERICOID)
				return VF_NUMERIC;
			if (category == TYPCATEGORY_STRING)
				return VF_TEXT;
			needs = "The key vid takes an integer, numeric or text column.";
			break;
		case VK_AT:
			if (base == TIMESTAMPTZOID)
				return VF_TIMESTAMPTZ;
			if (base == TIMESTAMPOID)
				return VF_TIMESTAMP;
			if (base == DATEOID)
				return VF_DATE;
			if (base == INT2OID || base == INT4OID || base == INT8OID)
				return VF_INT;
			if (category == TYPCATEGORY_STRING)
				return VF_TEXT;
			needs = "The key at takes a timestamptz, timestamp, date, integer (epoch milliseconds) or text column.";
			break;
		case VK_EMAIL:
			if (category == TYPCATEGORY_STRING)
				return VF_TEXT;
			needs = "The key email takes a text column.";
			break;
		case VK_PROPERTIES:
			if (base == JSONBOID)
				return VF_JSONB;
			if (base == JSONOID)
				return VF_JSON;
			needs = "The key properties takes a jsonb or json column.";
			break;
		default:
			return VF_TEXT;		/* any type, as its text */
	}

	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("column \"%s\" of argument \"%s\" of trigger \"%s\" on table %s has type %s",
					NameStr(att->attname), arg, tgname, table,
					format_type_be(att->atttypid)),
			 errdetail_internal("%s", needs)));
	pg_unreachable();
}

/* A key=column or key=:constant argument that maps a value (VK_...). */
static void
parse_value_argument(SyncConfig *cfg, int k, const char *arg, const char *value, bool is_const,
					 TupleDesc desc, const char *table, MemoryContext cxt)
{
	MappedValue *mv = &cfg->v[k];

	if (mv->given)
		hs_trigger_key_twice(value_key_names[k], arg, cfg->tgname, table);
	mv->given = true;
	mv->arg = arg;
	if (is_const)
	{
		char	   *msg;

		mv->is_const = true;
		mv->const_text = pstrdup(value);
		msg = check_constant(k, value, &mv->const_jsonb);
		if (msg)
			hs_trigger_value_error(arg, cfg->tgname, table,
								   psprintf("The constant is not valid: %s.", msg));
	}
	else
	{
		Form_pg_attribute att;
		Oid			outfunc;
		bool		isvarlena;

		mv->attnum = hs_trigger_column(desc, value, arg, cfg->tgname, table);
		att = TupleDescAttr(desc, mv->attnum - 1);
		mv->form = column_form(k, att, arg, cfg->tgname, table);
		mv->typbyval = att->attbyval;
		mv->typlen = att->attlen;
		mv->bpchar = (getBaseType(att->atttypid) == BPCHAROID);
		getTypeOutputInfo(att->atttypid, &outfunc, &isvarlena);
		fmgr_info_cxt(outfunc, &mv->output, cxt);
	}
}

/* An on_delete=... or on_invalid=... option (*seen: given already). */
static void
parse_option_argument(SyncConfig *cfg, bool is_delete, bool *seen, const char *key, const char *arg,
					  const char *value, bool is_const, const char *table)
{
	if (*seen)
		hs_trigger_key_twice(key, arg, cfg->tgname, table);
	*seen = true;
	if (is_const)
		hs_trigger_value_error(arg, cfg->tgname, table,
							   is_delete ? "on_delete takes a word after \"=\", as in 'on_delete=cancel'." :
							   "on_invalid takes a word after \"=\", as in 'on_invalid=error'.");
	if (is_delete && strcmp(value, "cancel") == 0)
		cfg->on_delete_cancel = true;
	else if (is_delete && strcmp(value, "ignore") == 0)
		cfg->on_delete_cancel = false;
	else if (!is_delete && strcmp(value, "error") == 0)
		cfg->on_invalid_error = true;
	else if (!is_delete && strcmp(value, "record") == 0)
		cfg->on_invalid_error = false;
	else
		hs_trigger_value_error(arg, cfg->tgname, table,
							   is_delete ?
							   "on_delete is \"cancel\" (a DELETE enqueues a cancel) or \"ignore\" (the default)." :
							   "on_invalid is \"record\" (the default: an invalid row is recorded as a failed sync) or \"error\".");
}

/* The keys a trigger must have: every required one, and exactly one of vid and email. */
static void
check_required_arguments(const SyncConfig *cfg, const char *table)
{
	for (int k = 0; k < NUM_VALUE_KEYS; k++)
		if (value_key_required[k] && !cfg->v[k].given)
			hs_trigger_key_missing(value_key_names[k], cfg->tgname, table);
	if (cfg->v[VK_VID].given == cfg->v[VK_EMAIL].given)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 cfg->v[VK_VID].given ?
				 errmsg("trigger \"%s\" on table %s has arguments for both \"vid\" and \"email\"",
						cfg->tgname, table) :
				 errmsg("trigger \"%s\" on table %s has no argument for \"vid\" or \"email\"",
						cfg->tgname, table),
				 errhint("Identify contacts by 'vid=<column>' (HubSpot contact ids) or by 'email=<column>', one of them.")));
}

/*
 * Parse and check a trigger's arguments against its table, allocating the
 * result in cxt.  Throws (naming the table and the argument) on any
 * misconfiguration: bad syntax (22023), an unknown or repeated key or a
 * missing required one (42P17), a column that does not exist (42703) or has
 * a type the key cannot take (42804), an invalid constant or option (22023).
 */
static SyncConfig *
parse_config(Relation rel, const Trigger *trigger, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *table = hs_table_display_name(rel);
	SyncConfig *cfg = palloc0(sizeof(SyncConfig));
	bool		seen_on_delete = false;
	bool		seen_on_invalid = false;

	cfg->tgoid = trigger->tgoid;
	cfg->relid = RelationGetRelid(rel);
	cfg->root_relid = hs_trigger_root_relid(rel);
	cfg->tgname = pstrdup(trigger->tgname);
	cfg->table = table;
	cfg->nargs = trigger->tgnargs;
	cfg->args = palloc0(sizeof(char *) * Max(1, trigger->tgnargs));
	for (int i = 0; i < trigger->tgnargs; i++)
		cfg->args[i] = pstrdup(trigger->tgargs[i]);

	for (int i = 0; i < cfg->nargs; i++)
	{
		const char *arg = cfg->args[i];
		bool		is_const;
		const char *value;
		char	   *key = hs_trigger_split_argument(arg, cfg->tgname, table, &value, &is_const);
		int			k;

		for (k = 0; k < NUM_VALUE_KEYS; k++)
			if (strcmp(key, value_key_names[k]) == 0)
				break;
		if (k < NUM_VALUE_KEYS)
			parse_value_argument(cfg, k, arg, value, is_const, desc, table, cxt);
		else if (strcmp(key, "on_delete") == 0)
			parse_option_argument(cfg, true, &seen_on_delete, key, arg, value, is_const, table);
		else if (strcmp(key, "on_invalid") == 0)
			parse_option_argument(cfg, false, &seen_on_invalid, key, arg, value, is_const, table);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("unknown key \"%s\" in argument \"%s\" of trigger \"%s\" on table %s",
							key, arg, cfg->tgname, table),
					 errhint(VALID_KEYS_HINT)));
	}
	check_required_arguments(cfg, table);

	MemoryContextSwitchTo(oldcxt);
	return cfg;
}

/* ---- the configuration cache ---- */

static void
config_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ConfigEntry *entry;

	config_inval_count++;
	if (config_cache == NULL)
		return;
	hash_seq_init(&status, config_cache);
	while ((entry = (ConfigEntry *) hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
}

/* A schema renamed: every cached configuration's table name may be stale. */
static void
config_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	config_relcache_callback(arg, InvalidOid);
}

static bool
same_arguments(const SyncConfig *cfg, const Trigger *trigger)
{
	if (cfg->nargs != trigger->tgnargs)
		return false;
	for (int i = 0; i < cfg->nargs; i++)
		if (strcmp(cfg->args[i], trigger->tgargs[i]) != 0)
			return false;
	return true;
}

/*
 * The checked configuration of a sync_attendance trigger on rel.  Throws on
 * a misconfigured trigger, on every call.  The result stays valid at least
 * until the end of the current transaction.
 */
static SyncConfig *
get_config(Relation rel, const Trigger *trigger)
{
	ConfigEntry *entry;
	MemoryContext cxt;
	SyncConfig *cfg;
	uint64		inval_before;
	bool		found;

	hs_check_trigger_type(rel, trigger, "sync_attendance");

	if (config_cache == NULL)
	{
		static bool callback_registered = false;
		HASHCTL		ctl;

		if (!callback_registered)
		{
			CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
			CacheRegisterSyscacheCallback(NAMESPACEOID, config_namespace_callback, (Datum) 0);
			callback_registered = true;
		}
		config_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												 "hubspot_events sync_attendance configs",
												 ALLOCSET_SMALL_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ConfigEntry);
		ctl.hcxt = config_cache_cxt;
		config_cache = hash_create("hubspot_events sync_attendance triggers", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	entry = (ConfigEntry *) hash_search(config_cache, &trigger->tgoid, HASH_FIND, NULL);
	if (entry != NULL && entry->valid && entry->cfg != NULL &&
		entry->relid == RelationGetRelid(rel) &&
		same_arguments(entry->cfg, trigger))
		return entry->cfg;

	/*
	 * Parse in a context that is a child of the caller's until it succeeds,
	 * so that an ERROR frees it; then move it into the cache.
	 */
	inval_before = config_inval_count;
	cxt = AllocSetContextCreate(CurrentMemoryContext,
								"hubspot_events sync_attendance config",
								ALLOCSET_SMALL_SIZES);
	cfg = parse_config(rel, trigger, cxt);
	MemoryContextSetParent(cxt, config_cache_cxt);

	entry = (ConfigEntry *) hash_search(config_cache, &trigger->tgoid, HASH_ENTER, &found);
	if (found && entry->cxt != NULL)
		MemoryContextSetParent(entry->cxt, TopTransactionContext);	/* retired */
	entry->relid = RelationGetRelid(rel);
	entry->cxt = cxt;
	entry->cfg = cfg;
	/* an invalidation that arrived while parsing makes the next fire parse again */
	entry->valid = (config_inval_count == inval_before);
	return cfg;
}

/* ---- reading a row ---- */

/* The value of a key in a row; false when it is NULL. */
static bool
get_value(const MappedValue *mv, HeapTuple tuple, TupleDesc desc, Datum *value)
{
	bool		isnull;

	if (mv->is_const)
	{
		*value = (Datum) 0;
		return true;
	}
	*value = heap_getattr(tuple, mv->attnum, desc, &isnull);
	return !isnull;
}

/*
 * A non-NULL value as text: the constant, or the type's output; a char(n)
 * value without its padding, as col::text gives it.
 */
static char *
value_text(MappedValue *mv, Datum value)
{
	char	   *text;

	if (mv->is_const)
		return mv->const_text;
	text = OutputFunctionCall(&mv->output, value);
	if (mv->bpchar)
		hs_bpchar_rtrim(text);
	return text;
}

/*
 * A non-NULL properties value as jsonb (json is converted).  A json value
 * that jsonb cannot hold (\u0000, a lone surrogate, a number beyond
 * numeric's range) returns NULL with the reason in *error: the row is then
 * recorded as invalid instead of failing the application's write.  Those
 * are data exceptions of jsonb_in, which holds no locks, buffers or files
 * while parsing: catching them without a subtransaction leaves nothing
 * behind; any other error is re-thrown.
 */
static Jsonb *
value_jsonb(MappedValue *mv, Datum value, char **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	*error = NULL;
	if (mv->is_const)
		return mv->const_jsonb;
	if (mv->form == VF_JSONB)
		return DatumGetJsonbP(value);
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(TextDatumGetCString(value))));
	}
	PG_CATCH();
	{
		*error = psprintf("contacts[0].properties cannot be read as jsonb: %s",
						  hs_take_data_exception(oldcxt));
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/*
 * Push the interactionDateTime of a non-NULL "at" value as the validator
 * takes it: epoch milliseconds for a timestamp that PostgreSQL converts to
 * one from 1970 on, else its text, so that the validator reports it (before
 * 1970, infinity) with its usual message.
 */
static void
push_at(JsonbParseState **ps, MappedValue *mv, Datum value)
{
	TimestampTz ts;
	int			overflow = 0;

	if (mv->is_const || mv->form == VF_TEXT)
	{
		hs_jsonb_push_string(ps, value_text(mv, value));
		return;
	}
	switch (mv->form)
	{
		case VF_INT:
			hs_jsonb_push_numeric(ps, DatumGetNumeric(DirectFunctionCall3(numeric_in,
																 CStringGetDatum(value_text(mv, value)),
																 ObjectIdGetDatum(InvalidOid),
																 Int32GetDatum(-1))));
			return;
		case VF_TIMESTAMPTZ:
			ts = DatumGetTimestampTz(value);
			break;
		case VF_TIMESTAMP:
			/* as timestamp::timestamptz: in the session's TimeZone */
			ts = timestamp2timestamptz_opt_overflow(DatumGetTimestamp(value), &overflow);
			break;
		case VF_DATE:
			ts = date2timestamptz_opt_overflow(DatumGetDateADT(value), &overflow);
			break;
		default:
			elog(ERROR, "unexpected form %d of an \"at\" column", (int) mv->form);
	}
	if (overflow == 0 && !TIMESTAMP_NOT_FINITE(ts) && hs_timestamptz_to_ms(ts) >= 0)
		hs_jsonb_push_int64(ps, hs_timestamptz_to_ms(ts));
	else
		hs_jsonb_push_string(ps, value_text(mv, value));
}

/* One image of a row, as its mapped columns read (row_to_outbox's first phase). */
typedef struct RowValues
{
	ValueKey	id_key;			/* VK_EMAIL or VK_VID */
	const char *id_name;		/* "email" or "vid" */
	char	   *state_text;		/* "cancel" for a cancel */
	char	   *vid_text;		/* the contact's id, as text */
	char	   *event;			/* NULL when the column is NULL */
	char	   *account;
	bool		connection_null;	/* mapped, and NULL in this row */
	char	   *connection;		/* NULL: the default (not mapped) */
	bool		have_at;
	Datum		d_at;
	bool		have_props;		/* a usable properties value */
	Datum		d_props;		/* the raw value, when given */
	Jsonb	   *props;
	char	   *props_error;	/* the properties value is not usable: why */
} RowValues;

/* Read a row's mapped values; false when there is nothing to sync (a NULL state or contact id). */
static bool
read_row_values(SyncConfig *cfg, TupleDesc desc, HeapTuple tuple, bool cancel, RowValues *rv)
{
	MappedValue *v = cfg->v;
	Datum		d_state,
				d_vid,
				d_event,
				d_account;

	memset(rv, 0, sizeof(*rv));
	rv->id_key = v[VK_EMAIL].given ? VK_EMAIL : VK_VID;
	rv->id_name = rv->id_key == VK_EMAIL ? "email" : "vid";
	if (!get_value(&v[VK_STATE], tuple, desc, &d_state) ||
		!get_value(&v[rv->id_key], tuple, desc, &d_vid))
		return false;

	rv->state_text = cancel ? "cancel" : value_text(&v[VK_STATE], d_state);
	rv->vid_text = value_text(&v[rv->id_key], d_vid);
	if (get_value(&v[VK_EVENT_ID], tuple, desc, &d_event))
		rv->event = value_text(&v[VK_EVENT_ID], d_event);
	if (get_value(&v[VK_ACCOUNT_ID], tuple, desc, &d_account))
		rv->account = value_text(&v[VK_ACCOUNT_ID], d_account);
	if (v[VK_CONNECTION].given)
	{
		Datum		d_conn;

		if (get_value(&v[VK_CONNECTION], tuple, desc, &d_conn))
			rv->connection = value_text(&v[VK_CONNECTION], d_conn);
		else
			rv->connection_null = true;
	}
	if (v[VK_AT].given && !cancel)
		rv->have_at = get_value(&v[VK_AT], tuple, desc, &rv->d_at);
	if (v[VK_PROPERTIES].given)
	{
		rv->have_props = get_value(&v[VK_PROPERTIES], tuple, desc, &rv->d_props);
		if (rv->have_props)
		{
			rv->props = value_jsonb(&v[VK_PROPERTIES], rv->d_props, &rv->props_error);
			if (rv->props == NULL)
				rv->have_props = false; /* recorded as invalid */
		}
	}
	return true;
}

/* The contact as the validator takes it: the id (a number for a numeric vid column), time, properties. */
static Jsonb *
build_contact_input(SyncConfig *cfg, const RowValues *rv)
{
	MappedValue *v = cfg->v;
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	hs_jsonb_push_key(&ps, rv->id_name);
	if (rv->id_key == VK_VID && !v[VK_VID].is_const &&
		(v[VK_VID].form == VF_INT || v[VK_VID].form == VF_NUMERIC))
		hs_jsonb_push_numeric(&ps, DatumGetNumeric(DirectFunctionCall3(numeric_in,
															  CStringGetDatum(rv->vid_text),
															  ObjectIdGetDatum(InvalidOid),
															  Int32GetDatum(-1))));
	else
		hs_jsonb_push_string(&ps, rv->vid_text);
	if (rv->have_at)
	{
		hs_jsonb_push_key(&ps, "interactionDateTime");
		push_at(&ps, &v[VK_AT], rv->d_at);
	}
	if (rv->have_props)
	{
		hs_jsonb_push_key(&ps, "properties");
		hs_jsonb_push_jsonb(&ps, rv->props);
	}
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * The same checks, in the same order, as hubspot_enqueue_subscriber: the
 * event id, the state, the account id, then the contact.  NULL when the row
 * is valid (*state and *contact filled); otherwise the message (and *hint).
 */
static char *
validate_row(const RowValues *rv, Jsonb *input, HsSubscriberState *state, HsContact *contact,
			 char **hint)
{
	char	   *msg;

	*hint = NULL;
	if (rv->event == NULL)
		return pstrdup("external_event_id must not be null");
	if ((msg = hs_check_external_id("external_event_id", rv->event)) != NULL)
		return msg;
	if (!hs_parse_state(rv->state_text, state))
	{
		*hint = VALID_STATES_HINT;
		return psprintf("invalid subscriber_state \"%s\"", rv->state_text);
	}
	if (rv->account == NULL)
		return pstrdup("external_account_id must not be null");
	if ((msg = hs_check_external_id("external_account_id", rv->account)) != NULL)
		return msg;
	if (rv->connection_null)
		return pstrdup("connection must not be null");
	if (rv->connection && (msg = hs_connection_problem(rv->connection)) != NULL)
		return msg;
	if (rv->props_error != NULL)
		return rv->props_error;
	if (!hs_check_contact(&input->root, 0, contact, &msg, hint))
	{
		Assert(msg != NULL);
		return msg;
	}
	return NULL;
}

/* An invalid row's contact for failed_syncs: the raw values, as text. */
static Jsonb *
raw_contact(SyncConfig *cfg, const RowValues *rv, bool cancel)
{
	MappedValue *v = cfg->v;
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	hs_jsonb_push_key(&ps, rv->id_name);
	hs_jsonb_push_string(&ps, rv->vid_text);
	if (v[VK_AT].given && !cancel)
	{
		hs_jsonb_push_key(&ps, "interactionDateTime");
		if (rv->have_at)
			hs_jsonb_push_string(&ps, value_text(&v[VK_AT], rv->d_at));
		else
			hs_jsonb_push_null(&ps);
	}
	if (v[VK_PROPERTIES].given)
	{
		hs_jsonb_push_key(&ps, "properties");
		if (rv->have_props)
			hs_jsonb_push_jsonb(&ps, rv->props);
		else if (rv->props_error != NULL)
		{
			/* the json text as it came, as far as text can hold it */
			char	   *raw = TextDatumGetCString(rv->d_props);

			hs_jsonb_push_string(&ps, hs_sanitize_remote_text(raw, strlen(raw)));
		}
		else
			hs_jsonb_push_null(&ps);
	}
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * Turn one image of a row (the new row of an INSERT or UPDATE, the old row of
 * a DELETE) into an outbox row: read, build, validate, or record as invalid.
 * With cancel, the state is "cancel" and the interaction time the
 * transaction's start, whatever the row says.
 *
 * Returns false when there is nothing to sync (a NULL state or vid).  An
 * invalid row is returned with error_message set and its raw values, or,
 * with on_invalid=error, is an ERROR (22023).
 */
static bool
row_to_outbox(SyncConfig *cfg, TupleDesc desc, HeapTuple tuple, bool cancel,
			  const char *table, HsOutboxRow *row)
{
	RowValues	rv;
	HsSubscriberState state;
	HsContact	contact;
	char	   *msg;
	char	   *hint;

	if (!read_row_values(cfg, desc, tuple, cancel, &rv))
		return false;
	msg = validate_row(&rv, build_contact_input(cfg, &rv), &state, &contact, &hint);

	memset(row, 0, sizeof(*row));
	row->source = table;
	row->external_event_id = rv.event;
	row->external_account_id = rv.account;
	row->connection = (rv.connection && strcmp(rv.connection, "default") != 0) ? rv.connection : NULL;
	if (msg == NULL)
	{
		row->subscriber_state = hs_state_name(state);
		row->contact = hs_contact_to_jsonb(&contact);
		row->contact_key = hs_contact_key(&contact);
		return true;
	}

	if (cfg->on_invalid_error)
		hs_trigger_invalid_row(table, cfg->tgname, msg, hint);

	row->subscriber_state = rv.state_text;
	row->contact = raw_contact(cfg, &rv, cancel);
	row->contact_key = rv.vid_text;
	row->error_message = msg;
	return true;
}

/* Whether an UPDATE changed the column a key maps (constants never change). */
static bool
value_changed(const MappedValue *mv, HeapTuple oldtup, HeapTuple newtup, TupleDesc desc)
{
	if (!mv->given || mv->is_const)
		return false;
	return hs_column_changed(mv->attnum, mv->typbyval, mv->typlen, oldtup, newtup, desc);
}

/* Whether an UPDATE changed a column (NULL to value or back counts; compared as stored). */
bool
hs_column_changed(AttrNumber attnum, bool typbyval, int16 typlen,
				  HeapTuple oldtup, HeapTuple newtup, TupleDesc desc)
{
	Datum		d1,
				d2;
	bool		n1,
				n2;

	d1 = heap_getattr(oldtup, attnum, desc, &n1);
	d2 = heap_getattr(newtup, attnum, desc, &n2);
	if (n1 || n2)
		return n1 != n2;
	return !datum_image_eq(d1, d2, typbyval, typlen);
}

/*
 * sync_attendance() RETURNS trigger
 *
 * INSERT: the new row's state.  DELETE: a cancel, with on_delete=cancel.
 * UPDATE: nothing unless a mapped column changed; a change of the event or
 * the contact (event_id, vid, account_id) is a DELETE of the old row and an
 * INSERT of the new one; any other change, the new row's state.  A new state
 * (not a cancel) first drops the pending cancels of its key that this
 * transaction's DELETEs of the same table wrote.
 */
Datum
hubspot_sync_attendance(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	Relation	rel;
	TupleDesc	desc;
	SyncConfig *cfg;
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
				 errmsg("sync_attendance() was not called by the trigger manager")));
	td = (TriggerData *) fcinfo->context;
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);

	cfg = get_config(rel, td->tg_trigger);
	table = cfg->table;
	root_relid = cfg->root_relid;

	/* build every row first; the configuration is not used once SPI runs */
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		if (row_to_outbox(cfg, desc, td->tg_trigtuple, false, table, &rows[nrows]))
			nrows++;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		if (cfg->on_delete_cancel &&
			row_to_outbox(cfg, desc, td->tg_trigtuple, true, table, &rows[nrows]))
			replaced[nrows++] = true;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;
		bool		identity_changed;

		identity_changed = value_changed(&cfg->v[VK_EVENT_ID], oldtup, newtup, desc) ||
			value_changed(&cfg->v[VK_VID], oldtup, newtup, desc) ||
			value_changed(&cfg->v[VK_EMAIL], oldtup, newtup, desc) ||
			value_changed(&cfg->v[VK_ACCOUNT_ID], oldtup, newtup, desc) ||
			value_changed(&cfg->v[VK_CONNECTION], oldtup, newtup, desc);

		if (identity_changed && cfg->on_delete_cancel &&
			row_to_outbox(cfg, desc, oldtup, true, table, &rows[nrows]))
			replaced[nrows++] = true;
		if ((identity_changed ||
			 value_changed(&cfg->v[VK_STATE], oldtup, newtup, desc) ||
			 value_changed(&cfg->v[VK_AT], oldtup, newtup, desc) ||
			 value_changed(&cfg->v[VK_PROPERTIES], oldtup, newtup, desc)) &&
			row_to_outbox(cfg, desc, newtup, false, table, &rows[nrows]))
			nrows++;
	}

	for (int i = 0; i < nrows; i++)
	{
		/*
		 * A new state of a key drops the cancel this transaction wrote for
		 * it (a row moved to another partition, deleted and inserted again).
		 */
		if (!replaced[i] && rows[i].subscriber_state != NULL &&
			strcmp(rows[i].subscriber_state, "cancel") != 0)
			hs_trigger_drop_own_cancels(root_relid, &rows[i]);
		id = hs_outbox_insert(&rows[i], &tid);
		if (replaced[i])
			hs_trigger_cancel_written(root_relid, &rows[i], id, &tid);
	}

	return PointerGetDatum(NULL);
}

/*
 * A backfill sends what the trigger would have sent for each row, and only
 * rows the caller may read: it refuses when the trigger would not fire (it
 * is disabled, or enabled for the other session_replication_role), when it
 * has a WHEN condition (which the backfill does not evaluate), and when
 * row-level security applies to the caller on the table (the backfill reads
 * the table directly, and would send rows the caller cannot see).
 */
static void
backfill_check_trigger_fires(Relation rel, const Trigger *trigger, const char *table)
{
	bool		fires;

	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		fires = trigger->tgenabled == TRIGGER_FIRES_ON_REPLICA ||
			trigger->tgenabled == TRIGGER_FIRES_ALWAYS;
	else
		fires = trigger->tgenabled == TRIGGER_FIRES_ON_ORIGIN ||
			trigger->tgenabled == TRIGGER_FIRES_ALWAYS;
	if (!fires)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot backfill through trigger \"%s\" on table %s: it is disabled",
						trigger->tgname, table),
				 errdetail("A backfill enqueues what the trigger would; a disabled trigger enqueues nothing."),
				 errhint("Enable it with ALTER TABLE %s ENABLE TRIGGER %s, or check session_replication_role.",
						 table, quote_identifier(trigger->tgname))));
	if (trigger->tgqual != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot backfill through trigger \"%s\" on table %s: it has a WHEN condition",
						trigger->tgname, table),
				 errhint("Enqueue the rows with hubspot_events.hubspot_enqueue_subscriber(), or use a trigger without WHEN.")));
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot backfill table %s: row-level security applies to the current user",
						table),
				 errdetail("A backfill reads every row of the table and would send rows the current user cannot see."),
				 errhint("Run the backfill as the table's owner or as a role with BYPASSRLS.")));
}

/*
 * What both backfill_batch variants check and open: the table (SELECT
 * needed), its sync_attendance trigger, and that the trigger would fire.
 */
typedef struct BackfillSetup
{
	Relation	rel;
	char	   *table;
	SyncConfig *cfg;
	TupleDesc	desc;
	int32		batch_rows;
	TupleDesc	resultdesc;
} BackfillSetup;

static void
backfill_setup(FunctionCallInfo fcinfo, BackfillSetup *b)
{
	Oid			relid;
	char	   *tgname;
	AclResult	aclresult;
	Trigger    *trigger = NULL;
	FmgrInfo	finfo;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trigger_name must not be null")));
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch_rows must not be null")));
	relid = PG_GETARG_OID(0);
	tgname = NameStr(*PG_GETARG_NAME(1));
	b->batch_rows = PG_GETARG_INT32(3);
	if (b->batch_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_rows must be at least 1, not %d", b->batch_rows)));

	if (get_func_result_type(fcinfo->flinfo->fn_oid, NULL, &b->resultdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "backfill_batch must return a record type");
	b->resultdesc = BlessTupleDesc(b->resultdesc);

	/* check the privilege before taking any lock */
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));

	b->rel = table_open(relid, AccessShareLock);
	b->table = hs_table_display_name(b->rel);
	if (b->rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot backfill partitioned table %s", b->table),
				 errhint("Backfill each partition: a trigger on a partitioned table is cloned to its partitions under the same name.")));
	if (b->rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot backfill %s: it is not a table", b->table)));

	if (b->rel->trigdesc != NULL)
	{
		for (int i = 0; i < b->rel->trigdesc->numtriggers; i++)
			if (strcmp(b->rel->trigdesc->triggers[i].tgname, tgname) == 0)
				trigger = &b->rel->trigdesc->triggers[i];
	}
	if (trigger == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("trigger \"%s\" for table %s does not exist", tgname, b->table)));
	fmgr_info(trigger->tgfoid, &finfo);
	if (finfo.fn_addr != hubspot_sync_attendance)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table %s does not execute hubspot_events.sync_attendance()",
						tgname, b->table),
				 errdetail("It executes %s.", format_procedure_qualified(trigger->tgfoid))));
	backfill_check_trigger_fires(b->rel, trigger, b->table);
	b->cfg = get_config(b->rel, trigger);
	b->desc = RelationGetDescr(b->rel);
}

/* A backfill batch's result: where it stopped (NULL: no row read), rows enqueued, rows read. */
static Datum
backfill_result(const BackfillSetup *b, Datum last, bool last_isnull, int64 enqueued, int64 scanned)
{
	Datum		values[3];
	bool		nulls[3] = {last_isnull, false, false};

	values[0] = last;
	values[1] = Int64GetDatum(enqueued);
	values[2] = Int64GetDatum(scanned);
	return HeapTupleGetDatum(heap_form_tuple(b->resultdesc, values, nulls));
}

/* One row read by a backfill: enqueued as a fired INSERT would be. */
static bool
backfill_row(BackfillSetup *b, TupleTableSlot *slot, MemoryContext rowcxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(rowcxt);
	bool		should_free;
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
	HsOutboxRow row;
	bool		enqueued = false;

	if (row_to_outbox(b->cfg, b->desc, tuple, false, b->table, &row))
	{
		(void) hs_outbox_insert(&row, NULL);
		enqueued = true;
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(rowcxt);
	return enqueued;
}

/* after_key: one value per primary key column, read by the column's input function */
static Datum *
backfill_after_key(ArrayType *arr, const BackfillSetup *b, Relation idx, int nkeys)
{
	Datum	   *elems;
	bool	   *elnulls;
	int			nelems;
	Datum	   *after;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elnulls, &nelems);
	if (ARR_NDIM(arr) > 1 || nelems != nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_key must have %d element%s, one per column of the primary key of %s, not %d",
						nkeys, nkeys == 1 ? "" : "s", b->table, nelems)));
	after = palloc(sizeof(Datum) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(b->desc, idx->rd_index->indkey.values[i] - 1);
		Oid			typinput;
		Oid			typioparam;

		if (elnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("after_key must not hold a null")));
		getTypeInputInfo(att->atttypid, &typinput, &typioparam);
		after[i] = OidInputFunctionCall(typinput, TextDatumGetCString(elems[i]),
										typioparam, att->atttypmod);
	}
	return after;
}

/* A scan of the primary key's index, from after_key's first column's value on (>=) when given. */
static IndexScanDesc
backfill_begin_scan(const BackfillSetup *b, Relation idx, Snapshot snapshot, const Datum *after,
					ScanKeyData *skey)
{
	IndexScanDesc scan = hs_index_beginscan(b->rel, idx, snapshot, after ? 1 : 0, 0);

	if (after)
	{
		/* the rest of the key is compared row by row (backfill_after) */
		Oid			opfamily = idx->rd_opfamily[0];
		Oid			opcintype = idx->rd_opcintype[0];
		Oid			op = get_opfamily_member(opfamily, opcintype, opcintype, BTGreaterEqualStrategyNumber);

		if (!OidIsValid(op))
			elog(ERROR, "no >= operator in the primary key's operator family");
		ScanKeyEntryInitialize(skey, 0, 1, BTGreaterEqualStrategyNumber, opcintype,
							   idx->rd_indcollation[0], get_opcode(op), after[0]);
	}
	index_rescan(scan, after ? skey : NULL, after ? 1 : 0, NULL, 0);
	return scan;
}

/* Whether the row's key comes after after_key, by the index's comparison functions. */
static bool
backfill_after(TupleTableSlot *slot, Relation idx, int nkeys, const Datum *after)
{
	int			cmp = 0;

	for (int i = 0; i < nkeys && cmp == 0; i++)
	{
		AttrNumber	attno = idx->rd_index->indkey.values[i];
		FmgrInfo   *proc = index_getprocinfo(idx, i + 1, BTORDER_PROC);

		cmp = DatumGetInt32(FunctionCall2Coll(proc, idx->rd_indcollation[i],
											  slot->tts_values[attno - 1], after[i]));
	}
	return cmp > 0;
}

/* The row's key as text, one element per key column: the next batch's after_key. */
static void
backfill_row_key(TupleTableSlot *slot, const BackfillSetup *b, Relation idx, int nkeys, Datum *key)
{
	for (int i = 0; i < nkeys; i++)
	{
		AttrNumber	attno = idx->rd_index->indkey.values[i];
		Form_pg_attribute att = TupleDescAttr(b->desc, attno - 1);
		Oid			typoutput;
		bool		varlena;

		getTypeOutputInfo(att->atttypid, &typoutput, &varlena);
		key[i] = CStringGetTextDatum(OidOutputFunctionCall(typoutput, slot->tts_values[attno - 1]));
	}
}

/*
 * backfill_batch(tbl regclass, trigger_name name, after_key text[],
 *				  batch_rows int, OUT last_key text[], OUT enqueued bigint,
 *				  OUT scanned bigint)
 *
 * Enqueue up to batch_rows rows of tbl, those whose primary key comes after
 * after_key (from the start when NULL), in primary-key order, as the
 * sync_attendance trigger named trigger_name would for an INSERT.  Returns
 * the last key read, as text (NULL when no row was read), the number of
 * outbox rows written, and the number of rows read: fewer than batch_rows
 * means the table is done.
 *
 * Paged by the primary key, not by ctid: an UPDATE during a backfill (of a
 * column the trigger does not map, so that the trigger enqueues nothing)
 * moves a row's version to another page, possibly one a ctid-paged backfill
 * has passed, but keeps its key.  The scan walks the primary key's index
 * from the first column's value on, and skips the rows at or before
 * after_key by the index's own ordering.  A table without a primary key
 * is refused.
 */
Datum
hubspot_backfill_batch_by_key(PG_FUNCTION_ARGS)
{
	BackfillSetup b;
	Oid			pkoid;
	Relation	idx;
	int			nkeys;
	Datum	   *after = NULL;
	Snapshot	snapshot;
	IndexScanDesc scan;
	ScanKeyData skey;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	int64		enqueued = 0;
	int64		scanned = 0;
	Datum	   *last = NULL;

	backfill_setup(fcinfo, &b);
	pkoid = hs_primary_key_index(b.rel);
	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot backfill table %s: it has no primary key", b.table),
				 errdetail("A backfill reads the table in primary-key order, so that rows updated while it runs are not missed."),
				 errhint("Add a primary key, or enqueue the rows with hubspot_events.hubspot_enqueue_subscriber().")));
	idx = index_open(pkoid, AccessShareLock);
	nkeys = IndexRelationGetNumberOfKeyAttributes(idx);
	if (!PG_ARGISNULL(2))
		after = backfill_after_key(PG_GETARG_ARRAYTYPE_P(2), &b, idx, nkeys);

	snapshot = RegisterSnapshot(GetActiveSnapshot());
	slot = table_slot_create(b.rel, NULL);
	scan = backfill_begin_scan(&b, idx, snapshot, after, &skey);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "hubspot_events backfill row",
								   ALLOCSET_DEFAULT_SIZES);

	while (scanned < b.batch_rows && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		if (after && !backfill_after(slot, idx, nkeys, after))
			continue;
		scanned++;
		if (last == NULL)
			last = palloc(sizeof(Datum) * nkeys);
		backfill_row_key(slot, &b, idx, nkeys, last);
		if (backfill_row(&b, slot, rowcxt))
			enqueued++;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	MemoryContextDelete(rowcxt);
	index_close(idx, AccessShareLock);
	table_close(b.rel, NoLock);

	PG_RETURN_DATUM(backfill_result(&b, last ? PointerGetDatum(construct_array(last, nkeys, TEXTOID, -1, false, TYPALIGN_INT)) : (Datum) 0,
									last == NULL, enqueued, scanned));
}

/*
 * backfill_batch(tbl regclass, trigger_name name, after_ctid tid,
 *				  batch_rows int, OUT last_ctid tid, OUT enqueued bigint,
 *				  OUT scanned bigint)
 *
 * The ctid-paged backfill of schemas before 0.5.0 (whose backfill() calls
 * it), kept so that this library serves them: a row an UPDATE moves to a
 * page the backfill has passed is missed (the key-paged one above is not).
 * Enqueue up to batch_rows rows of tbl, those after after_ctid (from the
 * start when NULL) in ctid order, as the sync_attendance trigger named
 * trigger_name would for an INSERT.  Returns the ctid of the last row read
 * (NULL when none was), the number of outbox rows written, and the number
 * of rows read: fewer than batch_rows means the table is done.
 */
Datum
hubspot_backfill_batch(PG_FUNCTION_ARGS)
{
	BackfillSetup b;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	ItemPointerData mintid;
	ItemPointerData maxtid;
	ItemPointerData last;
	MemoryContext rowcxt;
	int64		enqueued = 0;
	int64		scanned = 0;

	backfill_setup(fcinfo, &b);

	/* the rows after after_ctid, to the end of the table */
	if (PG_ARGISNULL(2))
		ItemPointerSet(&mintid, 0, FirstOffsetNumber);
	else
	{
		ItemPointerCopy((ItemPointer) PG_GETARG_POINTER(2), &mintid);
		ItemPointerInc(&mintid);
	}
	ItemPointerSet(&maxtid, MaxBlockNumber, MaxOffsetNumber);
	ItemPointerSetInvalid(&last);

	snapshot = RegisterSnapshot(GetActiveSnapshot());
	slot = table_slot_create(b.rel, NULL);
	scan = table_beginscan_tidrange(b.rel, snapshot, &mintid, &maxtid);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "hubspot_events backfill row",
								   ALLOCSET_DEFAULT_SIZES);

	while (scanned < b.batch_rows &&
		   table_scan_getnextslot_tidrange(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		scanned++;
		ItemPointerCopy(&slot->tts_tid, &last);
		if (backfill_row(&b, slot, rowcxt))
			enqueued++;
	}

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	MemoryContextDelete(rowcxt);
	table_close(b.rel, NoLock);

	if (ItemPointerIsValid(&last))
	{
		ItemPointer result = palloc(sizeof(ItemPointerData));

		ItemPointerCopy(&last, result);
		PG_RETURN_DATUM(backfill_result(&b, PointerGetDatum(result), false, enqueued, scanned));
	}
	PG_RETURN_DATUM(backfill_result(&b, (Datum) 0, true, enqueued, scanned));
}

/*
 * Check that a sync_attendance trigger's arguments still resolve against its
 * table, throwing the error its next fire would raise (ddl_guard.c calls it
 * after an ALTER TABLE, so that a DDL that would break every write to the
 * table is refused instead).
 */
void
hs_sync_attendance_check(Relation rel, const Trigger *trigger)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "hubspot_events trigger check",
											  ALLOCSET_SMALL_SIZES);

	(void) parse_config(rel, trigger, cxt);
	MemoryContextDelete(cxt);
}
