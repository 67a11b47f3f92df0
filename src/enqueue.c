/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  Writing outbox rows fast: a direct heap and index insert, for the
 *	  triggers and the enqueue functions.
 *
 * An INSERT through SPI (or PL/pgSQL) pays an executor start and end per
 * row: building the projection, opening the six indexes, parsing the CHECK
 * constraints again, closing it all.  For a trigger that writes one outbox
 * row per application row, that was most of its cost.  Here the outbox is
 * opened once per transaction, with its indexes (ExecOpenIndices), and each
 * row is formed in C, inserted with table_tuple_insert() and indexed with
 * ExecInsertIndexTuples(), which evaluates the expression and partial
 * indexes as the executor does.
 *
 * What the SQL INSERT would do, and how it is kept:
 *	- the identity: nextval of the column's own sequence;
 *	- the defaults (now(), 0) of the columns outbox.c's INSERT leaves out:
 *	  set here, the same values, and only while they are the shipped
 *	  defaults; every other column the INSERT leaves out must have no
 *	  default (a DBA's default, identity, generated column or domain sends
 *	  the rows through the SPI INSERT instead);
 *	- the types: every column written here must have exactly the shipped
 *	  type (no domain, no typmod), else the SPI INSERT coerces and checks;
 *	- NOT NULL and CHECK constraints, the shipped ones and any a DBA adds:
 *	  ExecConstraints, as the executor's INSERT runs it (23502, 23514);
 *	- privileges: rows are written with the outbox owner's rights, inside a
 *	  security-restricted operation (as the SPI path does), so that a DBA's
 *	  CHECK or index expression runs as the owner, never as the caller;
 *	  the direct path is taken only when the outbox has no triggers, no
 *	  rules and no row-level security, which the extension never creates;
 *	  otherwise outbox.c's SPI INSERT is used.
 *
 * The decision (direct or SPI) is computed when the outbox is opened and
 * kept across transactions until a relcache invalidation of the outbox
 * (ALTER TABLE, CREATE TRIGGER, ...) makes it be computed again.
 *
 * The relation and its indexes are opened under the top transaction's
 * resource owner (so that a subtransaction's end neither closes them nor
 * reports a leak) and closed at pre-commit, or before any utility statement
 * (a TRUNCATE or ALTER of the outbox in the same transaction must not find
 * it in use); on abort the resource owner releases them.  A relcache invalidation of the outbox (ALTER TABLE, a new
 * index) makes the next row open it afresh.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "catalog/pg_type.h"
#include "nodes/primnodes.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

typedef enum OutboxColumn
{
	OC_ID,
	OC_CREATED_AT,
	OC_EVENT_ID,
	OC_STATE,
	OC_ACCOUNT_ID,
	OC_CONTACT,
	OC_CONTACT_KEY,
	OC_STATUS,
	OC_ATTEMPTS,
	OC_NEXT_ATTEMPT_AT,
	OC_LAST_ATTEMPT_AT,
	OC_ERROR_CATEGORY,
	OC_ERROR_MESSAGE,
	OC_SOURCE,
	OC_KIND,
	OC_EVENT,
	OC_CONNECTION,				/* from schema 0.8.0 on */
	OC_INTAKE,					/* from schema 0.9.0 on: the partition key, true */
	NUM_OUTBOX_COLUMNS
} OutboxColumn;

static const char *const column_names[NUM_OUTBOX_COLUMNS] = {
	"id", "created_at", "external_event_id", "subscriber_state", "external_account_id",
	"contact", "contact_key", "status", "attempts", "next_attempt_at", "last_attempt_at",
	"error_category", "error_message", "source", "kind", "event", "connection", "intake"
};

/* the shipped type of each column written here (typmod -1 for all) */
static const Oid column_types[NUM_OUTBOX_COLUMNS] = {
	INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, BOOLOID
};

typedef struct OutboxWriter
{
	bool		open;
	bool		stale;			/* the outbox's relcache entry was invalidated */
	LocalTransactionId lxid;	/* the transaction it was opened in */
	Oid			relid;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	Oid			seqoid;
	Oid			owner;			/* the outbox's owner: constraints run with its rights */
	AttrNumber	attnum[NUM_OUTBOX_COLUMNS];
	bool		checks_passed;	/* a row passed ExecConstraints in this transaction */
} OutboxWriter;

static OutboxWriter writer;

/*
 * Whether the direct path may write the outbox: computed at an open, kept
 * until a relcache invalidation of the outbox (or of every relation).
 */
static bool shape_known = false;
static Oid	shape_relid = InvalidOid;
static Oid	shape_parent = InvalidOid;	/* the partitioned outbox, when shape_relid is the intake */
static bool shape_direct = false;
static AttrNumber shape_attnum[NUM_OUTBOX_COLUMNS];
static bool shape_checks_per_row = true;	/* see constant_checks() */
static bool callbacks_registered = false;
static ProcessUtility_hook_type prev_process_utility = NULL;

static void writer_close(void);

/*
 * Before any utility statement, close the writer: TRUNCATE, ALTER TABLE or
 * DROP of the outbox later in the same transaction must not find it in use
 * by this session.  The next row opens it again.
 */
static void
writer_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (writer.open)
	{
		if (writer.lxid == HS_MY_LXID)
			writer_close();
		else
			writer.open = false;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* Close the writer; resources are the top transaction's. */
static void
writer_close(void)
{
	ResourceOwner save = CurrentResourceOwner;

	if (!writer.open)
		return;
	writer.open = false;
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		ExecDropSingleTupleTableSlot(writer.slot);
		ExecCloseIndices(writer.rri);
		table_close(writer.rel, NoLock);
		FreeExecutorState(writer.estate);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

static void
writer_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			writer_close();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the resource owner releases the relation; the memory goes with the transaction */
			writer.open = false;
			break;
		default:
			break;
	}
}

static void
writer_relcache_callback(Datum arg, Oid relid)
{
	if (writer.open && (relid == InvalidOid || relid == writer.relid))
		writer.stale = true;
	if (relid == InvalidOid || relid == shape_relid || relid == shape_parent)
		shape_known = false;
}

/* The expression is pg_catalog.now(), as shipped. */
static bool
is_now_call(Node *expr)
{
	return expr != NULL && IsA(expr, FuncExpr) &&
		((FuncExpr *) expr)->funcid == F_NOW && ((FuncExpr *) expr)->args == NIL;
}

/* The expression is the integer constant 0, as shipped. */
static bool
is_int4_zero(Node *expr)
{
	return expr != NULL && IsA(expr, Const) && ((Const *) expr)->consttype == INT4OID &&
		!((Const *) expr)->constisnull && DatumGetInt32(((Const *) expr)->constvalue) == 0;
}

/*
 * The expression is nextval() of a sequence given as a constant (the id's
 * default from schema 0.9.0 on): that sequence, else InvalidOid.
 */
static Oid
nextval_sequence(Node *expr)
{
	FuncExpr   *f = (FuncExpr *) expr;
	Node	   *arg;

	if (expr == NULL || !IsA(expr, FuncExpr) || f->funcid != F_NEXTVAL || list_length(f->args) != 1)
		return InvalidOid;
	arg = linitial(f->args);
	if (!IsA(arg, Const) || ((Const *) arg)->constisnull || ((Const *) arg)->consttype != REGCLASSOID)
		return InvalidOid;
	return DatumGetObjectId(((Const *) arg)->constvalue);
}

/*
 * Whether a direct insert writes exactly the row outbox.c's SPI INSERT
 * would: the relation is a plain table without triggers, rules or row
 * security; the columns written here have their shipped types; the
 * columns the INSERT takes from their defaults (id, created_at, attempts,
 * next_attempt_at) have the shipped ones; every other column has no
 * default at all (so NULL, as here); no column is generated or of a domain
 * type.  Constraints are not part of it: ExecConstraints checks them.
 * Fills attnum[] with the columns' numbers.
 */
static bool
outbox_shape_is_shipped(Relation rel, AttrNumber *attnum)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rules != NULL || rel->rd_rel->relrowsecurity)
		return false;

	for (int c = 0; c < NUM_OUTBOX_COLUMNS; c++)
		attnum[c] = InvalidAttrNumber;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			c;
		Node	   *def;

		if (att->attisdropped)
			continue;
		if (att->attgenerated != '\0' || get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
			return false;
		for (c = 0; c < NUM_OUTBOX_COLUMNS; c++)
			if (strcmp(NameStr(att->attname), column_names[c]) == 0)
				break;
		if (c == NUM_OUTBOX_COLUMNS)
		{
			/* a column nobody writes: the INSERT gives it its default, if any */
			if (att->atthasdef || att->attidentity != '\0')
				return false;
			continue;
		}
		attnum[c] = att->attnum;
		if (att->atttypid != column_types[c] || att->atttypmod != -1)
			return false;
		switch (c)
		{
			case OC_ID:
				/* an identity (before 0.9.0), or nextval() of the outbox's sequence */
				if (att->attidentity == '\0' &&
					!OidIsValid(nextval_sequence(build_column_default(rel, att->attnum))))
					return false;
				break;
			case OC_CREATED_AT:
			case OC_NEXT_ATTEMPT_AT:
				def = build_column_default(rel, att->attnum);
				if (!is_now_call(def))
					return false;
				break;
			case OC_ATTEMPTS:
				def = build_column_default(rel, att->attnum);
				if (!is_int4_zero(def))
					return false;
				break;
			default:
				/* written by both paths: a default would not be used */
				if (att->attidentity != '\0')
					return false;
				break;
		}
	}
	for (int c = 0; c < NUM_OUTBOX_COLUMNS; c++)
		if (attnum[c] == InvalidAttrNumber && c != OC_CONNECTION && c != OC_INTAKE)
			return false;		/* the SPI INSERT reports it */
	return true;
}

/*
 * Whether every CHECK constraint of the intake gives the same answer for
 * every row the direct path writes into it in one transaction, so that
 * ExecConstraints need run only on the transaction's first row: each reads
 * only columns whose value is the same on all those rows (the intake takes
 * only valid subscriber rows: status 'pending', kind 'subscriber', attempts
 * 0, intake true, created_at and next_attempt_at the transaction's start),
 * and calls no function that is not immutable.  The shipped ones (status,
 * kind) are such.  A DBA's CHECK on any other column runs on every row, and
 * so does ExecConstraints for a row with a NULL in a NOT NULL column.
 */
static bool
constant_checks(Relation rel, const AttrNumber *attnum)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	static const OutboxColumn constant[] = {
		OC_STATUS, OC_KIND, OC_ATTEMPTS, OC_INTAKE, OC_CREATED_AT, OC_NEXT_ATTEMPT_AT
	};

	if (constr == NULL)
		return true;
	for (int i = 0; i < constr->num_check; i++)
	{
		Node	   *expr = stringToNode(constr->check[i].ccbin);
		Bitmapset  *attrs = NULL;
		int			k = -1;

		if (contain_mutable_functions(expr))
			return false;
		pull_varattnos(expr, 1, &attrs);
		while ((k = bms_next_member(attrs, k)) >= 0)
		{
			AttrNumber	a = k + FirstLowInvalidHeapAttributeNumber;
			bool		ok = false;

			for (int c = 0; c < lengthof(constant); c++)
				if (a != InvalidAttrNumber && a == attnum[constant[c]])
					ok = true;
			if (!ok)
				return false;	/* another column, or the whole row */
		}
	}
	return true;
}

/*
 * From schema 0.9.0 on the direct path writes the intake, a partition of
 * the outbox.  The rows the SPI INSERT would route there must meet the same
 * conditions on the partitioned outbox itself: no row security, no rules
 * and no triggers of its own (its row triggers are the intake's too).
 * A relcache invalidation of the parent comes with one of the partition's.
 */
static bool
parent_is_plain(Relation rel)
{
	Relation	parent = table_open(get_partition_parent(RelationGetRelid(rel), false), AccessShareLock);
	bool		plain = parent->trigdesc == NULL && parent->rd_rules == NULL &&
		!parent->rd_rel->relrowsecurity;

	shape_parent = RelationGetRelid(parent);
	table_close(parent, AccessShareLock);
	return plain;
}

/* Whether a NOT NULL column is NULL in the row. */
static bool
null_in_not_null(TupleDesc desc, const bool *nulls)
{
	for (int i = 0; i < desc->natts; i++)
		if (nulls[i] && TupleDescAttr(desc, i)->attnotnull)
			return true;
	return false;
}

/*
 * Open the outbox for direct inserts in this transaction.  False when the
 * direct path must not be used (triggers or row-level security on the
 * outbox): the caller then inserts through SPI.
 */
static bool
writer_open(Oid relid)
{
	ResourceOwner save = CurrentResourceOwner;
	MemoryContext oldcxt;
	Relation	rel;
	TupleDesc	desc;
	bool		usable;

	if (!callbacks_registered)
	{
		RegisterXactCallback(writer_xact_callback, NULL);
		CacheRegisterRelcacheCallback(writer_relcache_callback, (Datum) 0);
		prev_process_utility = ProcessUtility_hook;
		ProcessUtility_hook = writer_process_utility;
		callbacks_registered = true;
	}

	CurrentResourceOwner = TopTransactionResourceOwner;
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PG_TRY();
	{
		rel = table_open(relid, RowExclusiveLock);
		memset(&writer, 0, sizeof(writer));
		/* the relcache entry is locked and current: what it says holds until an invalidation */
		if (!shape_known || shape_relid != relid)
		{
			shape_direct = outbox_shape_is_shipped(rel, shape_attnum) &&
				(rel->rd_rel->relispartition ? parent_is_plain(rel) : true);
			/* only the intake takes nothing but pending subscriber rows */
			shape_checks_per_row = !(shape_direct && rel->rd_rel->relispartition &&
									 constant_checks(rel, shape_attnum));
			shape_relid = relid;
			shape_known = true;
		}
		usable = shape_direct;
		if (!usable)
			table_close(rel, NoLock);
		else
		{
			memcpy(writer.attnum, shape_attnum, sizeof(writer.attnum));
			writer.rel = rel;
			writer.relid = relid;
			writer.owner = rel->rd_rel->relowner;
			desc = RelationGetDescr(rel);
			if (TupleDescAttr(desc, writer.attnum[OC_ID] - 1)->attidentity != '\0')
				writer.seqoid = hs_identity_sequence(rel, writer.attnum[OC_ID]);
			else
				writer.seqoid = nextval_sequence(build_column_default(rel, writer.attnum[OC_ID]));
			writer.estate = CreateExecutorState();
			MemoryContextSwitchTo(writer.estate->es_query_cxt);
			writer.rri = makeNode(ResultRelInfo);
			/* no range table: ExecConstraints' error detail then needs none */
			InitResultRelInfo(writer.rri, rel, 0, NULL, 0);
			ExecOpenIndices(writer.rri, false);
			writer.slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
			writer.lxid = HS_MY_LXID;
			writer.open = true;
		}
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return usable;
}

/*
 * Insert one outbox row directly.  Returns false (nothing written) when the
 * direct path cannot be used; *id is the new row's id, *tid where it is.
 * From schema 0.9.0 on only the intake is written here, so only a valid
 * subscriber row (pending); any other goes through the SPI INSERT, into
 * outbox_rows.
 */
bool
hs_outbox_insert_direct(const HsOutboxRow *row, int64 *id, ItemPointer tid)
{
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	tuple;
	MemoryContext oldcxt;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Oid			save_userid;
	int			save_sec_context;

	if (writer.open && writer.lxid != HS_MY_LXID)
		writer.open = false;	/* left by an ended transaction: its resources are gone */
	if (writer.open && writer.stale)
		writer_close();
	if (hs_schema_version() >= HS_SCHEMA_0_9_0 &&
		(row->error_message != NULL || (row->kind != NULL && strcmp(row->kind, "subscriber") != 0)))
		return false;
	if (!writer.open && !writer_open(hs_schema_version() >= HS_SCHEMA_0_9_0 ?
									 hs_outbox_intake_relid() : hs_outbox_relid()))
		return false;

	desc = RelationGetDescr(writer.rel);
	oldcxt = MemoryContextSwitchTo(GetPerTupleMemoryContext(writer.estate));
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	memset(nulls, true, sizeof(bool) * desc->natts);

#define SET(col, datum) \
	do { values[writer.attnum[col] - 1] = (datum); nulls[writer.attnum[col] - 1] = false; } while (0)
#define SET_TEXT(col, s) \
	do { if ((s) != NULL) SET(col, CStringGetTextDatum(s)); } while (0)

	*id = nextval_internal(writer.seqoid, false);
	SET(OC_ID, Int64GetDatum(*id));
	SET(OC_CREATED_AT, TimestampTzGetDatum(now));
	SET_TEXT(OC_EVENT_ID, row->external_event_id);
	SET_TEXT(OC_STATE, row->subscriber_state);
	SET_TEXT(OC_ACCOUNT_ID, row->external_account_id);
	if (row->contact)
		SET(OC_CONTACT, JsonbPGetDatum(row->contact));
	SET_TEXT(OC_CONTACT_KEY, row->contact_key);
	SET(OC_ATTEMPTS, Int32GetDatum(0));
	SET(OC_NEXT_ATTEMPT_AT, TimestampTzGetDatum(now));
	SET_TEXT(OC_SOURCE, row->source);
	SET_TEXT(OC_KIND, row->kind ? row->kind : "subscriber");
	if (row->event)
		SET(OC_EVENT, JsonbPGetDatum(row->event));
	if (writer.attnum[OC_INTAKE] != InvalidAttrNumber)
		SET(OC_INTAKE, BoolGetDatum(true));
	if (writer.attnum[OC_CONNECTION] != InvalidAttrNumber)
		SET_TEXT(OC_CONNECTION, row->connection ? row->connection : "default");
	else if (row->connection != NULL && strcmp(row->connection, "default") != 0)
		elog(ERROR, "the outbox has no connection column");	/* checked before: hs_connection_require */
	if (row->error_message == NULL)
		SET_TEXT(OC_STATUS, "pending");
	else
	{
		/* a row that failed local validation: recorded, never sent */
		SET_TEXT(OC_STATUS, "failed");
		SET_TEXT(OC_ERROR_CATEGORY, "LOCAL_VALIDATION_ERROR");
		SET_TEXT(OC_ERROR_MESSAGE, row->error_message);
		SET(OC_LAST_ATTEMPT_AT, TimestampTzGetDatum(now));
	}
#undef SET_TEXT
#undef SET

	tuple = heap_form_tuple(desc, values, nulls);
	ExecStoreHeapTuple(tuple, writer.slot, false);

	/*
	 * As the outbox's owner, in a security-restricted operation, as the SPI
	 * INSERT runs: a DBA's CHECK constraint or index expression never runs
	 * with the caller's rights.  An error restores the caller's identity at
	 * the (sub)transaction's abort.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(writer.owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/*
	 * NOT NULL and CHECK, the shipped ones and a DBA's, exactly as an INSERT
	 * checks them; in the intake, CHECKs that read only columns with the
	 * same value on every row once per transaction (constant_checks).
	 */
	if (desc->constr != NULL &&
		(shape_checks_per_row || !writer.checks_passed ||
		 (desc->constr->has_not_null && null_in_not_null(desc, nulls))))
	{
		ExecConstraints(writer.rri, writer.slot, writer.estate);
		writer.checks_passed = true;
	}
	table_tuple_insert(writer.rel, writer.slot, GetCurrentCommandId(true), 0, NULL);
	if (tid != NULL)
		ItemPointerCopy(&writer.slot->tts_tid, tid);
	(void) hs_insert_index_tuples(writer.rri, writer.slot, writer.estate);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	ExecClearTuple(writer.slot);
	MemoryContextSwitchTo(oldcxt);
	ResetPerTupleExprContext(writer.estate);
	return true;
}

/* A table of the extension's schema, by name; throws, with hint, when it does not exist. */
static Oid
extension_table_relid(const char *relname, const char *hint)
{
	Oid			nsp = get_namespace_oid(HS_SCHEMA, true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table %s.%s does not exist in this database", HS_SCHEMA, relname),
				 errhint("%s", hint)));
	return rel;
}

/* The intake's OID (schema 0.9.0 on); throws when it does not exist. */
Oid
hs_outbox_intake_relid(void)
{
	return extension_table_relid("outbox_intake", "Run ALTER EXTENSION hubspot_events UPDATE.");
}

/* The outbox's OID; throws when the extension is not installed. */
Oid
hs_outbox_relid(void)
{
	return extension_table_relid("outbox",
								 "Run CREATE EXTENSION hubspot_events, or ALTER EXTENSION hubspot_events UPDATE.");
}
