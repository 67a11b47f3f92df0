/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The outbox's SQL: writing rows (enqueue), and the worker's claim and
 *	  outcome statements (batch.c coalesces the claimed rows into requests).
 *
 * Every statement is a prepared SPI plan with parameters, kept for the life
 * of the backend; no SQL is ever built from strings.
 *
 * Rows are written with the rights of the outbox's owner (the extension's
 * owner), the way PostgreSQL's own foreign-key triggers act with the rights
 * of the referenced table's owner: a role that may write to a table carrying
 * the trigger, or that was granted hubspot_enqueue_subscriber, enqueues
 * without any privilege on the outbox.  Only the INSERT runs with those
 * rights, inside a security-restricted operation; the values were read and
 * converted before, as the calling role.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "catalog/pg_class.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_plan_conn = NULL;
static SPIPlanPtr insert_plan_intake = NULL;

/* The outbox's owner; throws when the extension is not installed. */
static Oid
outbox_owner(void)
{
	(void) hs_outbox_relid();
	return hs_relation_owner("outbox");
}

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a plan");
	return plan;
}

static void
spi_connect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}


/*
 * Write one outbox row; returns its id, and where it is in *tid (when tid is
 * not NULL).  From schema 0.9.0 on a valid subscriber row goes into the
 * intake (intake = true), any other into outbox_rows.
 */
int64
hs_outbox_insert(const HsOutboxRow *row, ItemPointer tid)
{
	Oid			owner;
	HsOwnerRights rights;
	Datum		values[10];
	char		nulls[10];
	int			rc;
	bool		isnull;
	int64		id;
	bool		with_connection;
	bool		with_intake;

	/* a library newer than this database's schema says so, once, clearly */
	hs_require_schema();

	/*
	 * Before the id is taken, by either path: wait for any transaction in
	 * progress that enqueued the same key, so that ids follow commit order.
	 */
	hs_order_lock(row);

	/* the fast way (enqueue.c), unless the outbox is not as shipped (triggers, row security, ...) */
	if (hs_outbox_insert_direct(row, &id, tid))
	{
		if (row->error_message == NULL)
			hs_wake_at_commit();
		return id;
	}
	owner = outbox_owner();

#define TEXT_ARG(i, s) \
	do { \
		if ((s) != NULL) { values[i] = CStringGetTextDatum(s); nulls[i] = ' '; } \
		else { values[i] = (Datum) 0; nulls[i] = 'n'; } \
	} while (0)

	TEXT_ARG(0, row->external_event_id);
	TEXT_ARG(1, row->subscriber_state);
	TEXT_ARG(2, row->external_account_id);
	if (row->contact)
	{
		values[3] = JsonbPGetDatum(row->contact);
		nulls[3] = ' ';
	}
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	TEXT_ARG(4, row->contact_key);
	TEXT_ARG(5, row->source);
	TEXT_ARG(6, row->error_message);
	TEXT_ARG(7, row->kind ? row->kind : "subscriber");
	TEXT_ARG(9, row->connection ? row->connection : "default");
#undef TEXT_ARG
	if (row->event)
	{
		values[8] = JsonbPGetDatum(row->event);
		nulls[8] = ' ';
	}
	else
	{
		values[8] = (Datum) 0;
		nulls[8] = 'n';
	}

	spi_connect();
	hs_owner_rights_enter(owner, &rights);

	/* from schema 0.8.0 on, the connection is written, never left to the column's default */
	with_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;
	with_intake = hs_schema_version() >= HS_SCHEMA_0_9_0;
	if (with_intake && insert_plan_intake == NULL)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID, TEXTOID};

		insert_plan_intake = keep_plan("INSERT INTO " HS_SCHEMA ".outbox"
									   " (external_event_id, subscriber_state, external_account_id,"
									   "  contact, contact_key, source,"
									   "  status, error_category, error_message, last_attempt_at, kind, event, connection,"
									   "  intake)"
									   " VALUES ($1, $2, $3, $4, $5, $6,"
									   "  CASE WHEN $7 IS NULL THEN 'pending' ELSE 'failed' END,"
									   "  CASE WHEN $7 IS NULL THEN NULL ELSE 'LOCAL_VALIDATION_ERROR' END,"
									   "  $7,"
									   "  CASE WHEN $7 IS NULL THEN NULL ELSE pg_catalog.now() END, $8, $9, $10,"
									   "  $7 IS NULL AND $8 OPERATOR(pg_catalog.=) 'subscriber')"
									   " RETURNING id, ctid",
									   10, types);
	}
	if (with_connection && !with_intake && insert_plan_conn == NULL)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID, TEXTOID};

		insert_plan_conn = keep_plan("INSERT INTO " HS_SCHEMA ".outbox"
									 " (external_event_id, subscriber_state, external_account_id,"
									 "  contact, contact_key, source,"
									 "  status, error_category, error_message, last_attempt_at, kind, event, connection)"
									 " VALUES ($1, $2, $3, $4, $5, $6,"
									 "  CASE WHEN $7 IS NULL THEN 'pending' ELSE 'failed' END,"
									 "  CASE WHEN $7 IS NULL THEN NULL ELSE 'LOCAL_VALIDATION_ERROR' END,"
									 "  $7,"
									 "  CASE WHEN $7 IS NULL THEN NULL ELSE pg_catalog.now() END, $8, $9, $10)"
									 " RETURNING id",
									 10, types);
	}
	if (!with_connection && insert_plan == NULL)
	{
		Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID};

		insert_plan = keep_plan("INSERT INTO " HS_SCHEMA ".outbox"
								" (external_event_id, subscriber_state, external_account_id,"
								"  contact, contact_key, source,"
								"  status, error_category, error_message, last_attempt_at, kind, event)"
								" VALUES ($1, $2, $3, $4, $5, $6,"
								"  CASE WHEN $7 IS NULL THEN 'pending' ELSE 'failed' END,"
								"  CASE WHEN $7 IS NULL THEN NULL ELSE 'LOCAL_VALIDATION_ERROR' END,"
								"  $7,"
								"  CASE WHEN $7 IS NULL THEN NULL ELSE pg_catalog.now() END, $8, $9)"
								" RETURNING id",
								9, types);
	}

	rc = SPI_execute_plan(with_intake ? insert_plan_intake : with_connection ? insert_plan_conn : insert_plan,
						  values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "outbox insert failed: %s", SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (tid != NULL)
	{
		if (with_intake)
			ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
															  &isnull)), tid);
		else
			ItemPointerSetInvalid(tid);
	}

	hs_owner_rights_leave(&rights);
	SPI_finish();

	if (row->error_message == NULL)
		hs_wake_at_commit();
	return id;
}

/*
 * Delete an outbox row this transaction wrote and nobody else ever saw: row
 * id, written by (sub)transaction xmin, still pending, of the kind, state,
 * key and connection of *row.  With the outbox owner's rights, as hs_outbox_insert.
 * Returns whether a row was deleted.  A row whose writer was rolled back (a
 * subtransaction), or that is no longer pending or is another row, is left
 * alone: the caller may hold a stale id without harm.
 */
#define HS_DELETE_OWN_SQL(conn_clause) \
	"DELETE FROM " HS_SCHEMA ".outbox" \
	" WHERE id OPERATOR(pg_catalog.=) $1" \
	"   AND xmin OPERATOR(pg_catalog.=) $2" \
	"   AND status OPERATOR(pg_catalog.=) 'pending'" \
	"   AND kind OPERATOR(pg_catalog.=) $3" \
	"   AND (subscriber_state OPERATOR(pg_catalog.=) $4" \
	"        OR (subscriber_state IS NULL AND $4 IS NULL))" \
	"   AND external_event_id OPERATOR(pg_catalog.=) $5" \
	"   AND external_account_id OPERATOR(pg_catalog.=) $6" \
	"   AND contact_key OPERATOR(pg_catalog.=) $7" conn_clause

bool
hs_outbox_delete_own(int64 id, TransactionId xmin, ItemPointer tid, const HsOutboxRow *row)
{
	static SPIPlanPtr delete_own_plan = NULL;
	static SPIPlanPtr delete_own_plan_080 = NULL;
	static SPIPlanPtr delete_own_plan_090 = NULL;
	bool		per_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;
	/* the intake has no index: the row is found where it was written (a TID scan) */
	bool		by_tid = hs_schema_version() >= HS_SCHEMA_0_9_0;
	Oid			owner;
	HsOwnerRights rights;
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;
	bool		deleted;

	/* only a row of the current transaction; a rolled-back one is gone anyway */
	if (!TransactionIdIsValid(xmin) || !TransactionIdIsCurrentTransactionId(xmin))
		return false;

	owner = outbox_owner();
	values[0] = Int64GetDatum(id);
	values[1] = TransactionIdGetDatum(xmin);
	values[2] = CStringGetTextDatum(row->kind ? row->kind : "subscriber");
	if (row->subscriber_state != NULL)
		values[3] = CStringGetTextDatum(row->subscriber_state);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	values[4] = CStringGetTextDatum(row->external_event_id ? row->external_event_id : "");
	values[5] = CStringGetTextDatum(row->external_account_id ? row->external_account_id : "");
	values[6] = CStringGetTextDatum(row->contact_key ? row->contact_key : "");
	values[7] = CStringGetTextDatum(row->connection ? row->connection : "default");
	if (by_tid && (tid == NULL || !ItemPointerIsValid(tid)))
		return false;			/* not written by this library: left alone */
	values[8] = by_tid ? PointerGetDatum(tid) : (Datum) 0;

	spi_connect();
	hs_owner_rights_enter(owner, &rights);

	if (by_tid && delete_own_plan_090 == NULL)
	{
		Oid			types[9] = {INT8OID, XIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIDOID};

		delete_own_plan_090 = keep_plan(HS_DELETE_OWN_SQL("   AND connection OPERATOR(pg_catalog.=) $8"
														  "   AND ctid OPERATOR(pg_catalog.=) $9"), 9, types);
	}
	if (per_connection && delete_own_plan_080 == NULL)
	{
		Oid			types[8] = {INT8OID, XIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		delete_own_plan_080 = keep_plan(HS_DELETE_OWN_SQL("   AND connection OPERATOR(pg_catalog.=) $8"), 8, types);
	}
	if (!per_connection && delete_own_plan == NULL)
	{
		Oid			types[7] = {INT8OID, XIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		delete_own_plan = keep_plan(HS_DELETE_OWN_SQL(""), 7, types);
	}

	rc = SPI_execute_plan(by_tid ? delete_own_plan_090 : per_connection ? delete_own_plan_080 : delete_own_plan,
						  values, nulls, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "outbox delete failed: %s", SPI_result_code_string(rc));
	deleted = (SPI_processed > 0);

	hs_owner_rights_leave(&rights);
	SPI_finish();
	return deleted;
}

/* ---- the worker's statements ---- */

static int
claimed_row_cmp(const ListCell *a, const ListCell *b)
{
	const HsClaimedRow *ra = (const HsClaimedRow *) lfirst(a);
	const HsClaimedRow *rb = (const HsClaimedRow *) lfirst(b);

	return ra->id < rb->id ? -1 : ra->id > rb->id ? 1 : 0;
}


/* Whether this database has the outbox (the extension at 0.2.0 or later). */
bool
hs_outbox_available(void)
{
	Oid			nsp = get_namespace_oid(HS_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("outbox", nsp)) &&
		OidIsValid(get_relname_relid("worker_control", nsp));
}

/*
 * The worker's transactions lock the outbox first, in the mode its writes
 * take (RowExclusiveLock), before any statement reads or writes it or a
 * partition of it.  DDL on the outbox (CREATE TRIGGER, ALTER TABLE, ALTER
 * EXTENSION UPDATE) locks the outbox, then its partitions; a worker that
 * locked a partition first (outbox_rows, by a statement on it alone) and
 * the outbox next, or read the outbox (AccessShareLock) before writing it,
 * could deadlock with it.  Nothing when the outbox does not exist.
 */
void
hs_outbox_lock_first(void)
{
	Oid			nsp = get_namespace_oid(HS_SCHEMA, true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;

	if (OidIsValid(rel))
		LockRelationOid(rel, RowExclusiveLock);
}

/*
 * (A note for every statement below: OPERATOR(pg_catalog.x) has one fixed
 * precedence, whatever x is, so expressions that mix operators are
 * parenthesised.)
 *
 * Rows left "sending" by a crash, a failover, a SIGTERM or an outcome that
 * could not be recorded are pending again, that attempt counted; those that
 * have used max_attempts fail instead (OUTCOME_NOT_RECORDED), so that no
 * failure, whatever it is, makes a row go out more than max_attempts times.
 * From 0.9.0 on, rows claimed from the intake are in flight there, where
 * only a sequential scan finds them: they are looked for when
 * in_intake_too (the worker knows when it left some: a turn that did not
 * record them all); they are reset where they are, and the next sweep
 * finds them pending (or moves them failed).  Returns how many rows were
 * reset; *failed how many of them failed.
 */
#define HS_RESET_SENDING_SQL(table) \
	"UPDATE " table " SET" \
	"  status = CASE WHEN attempts OPERATOR(pg_catalog.>=) $1 THEN 'failed' ELSE 'pending' END," \
	"  error_category = CASE WHEN attempts OPERATOR(pg_catalog.>=) $1" \
	"                        THEN 'OUTCOME_NOT_RECORDED' ELSE error_category END," \
	"  error_message = CASE WHEN attempts OPERATOR(pg_catalog.>=) $1" \
	"                       THEN 'the outcome of the last attempt could not be recorded (see the server log), and the row has used hubspot_events.max_attempts; HubSpot may have recorded it'" \
	"                       ELSE error_message END" \
	" WHERE status OPERATOR(pg_catalog.=) 'sending'" \
	" RETURNING status OPERATOR(pg_catalog.=) 'failed'"

uint64
hs_outbox_reset_sending(int max_attempts, bool in_intake_too, uint64 *failed)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_090 = NULL;
	static SPIPlanPtr plan_intake = NULL;
	bool		in_rows = hs_schema_version() >= HS_SCHEMA_0_9_0;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	SPIPlanPtr	run[2];
	int			nrun = 0;
	uint64		n = 0;

	spi_connect();
	if (in_rows && plan_090 == NULL)
	{
		plan_090 = keep_plan(HS_RESET_SENDING_SQL(HS_SCHEMA ".outbox_rows"), 1, types);
		plan_intake = keep_plan(HS_RESET_SENDING_SQL("ONLY " HS_SCHEMA ".outbox_intake"), 1, types);
	}
	if (!in_rows && plan == NULL)
		plan = keep_plan(HS_RESET_SENDING_SQL(HS_SCHEMA ".outbox"), 1, types);
	run[nrun++] = in_rows ? plan_090 : plan;
	if (in_rows && in_intake_too)
		run[nrun++] = plan_intake;
	values[0] = Int32GetDatum(max_attempts);
	*failed = 0;
	for (int k = 0; k < nrun; k++)
	{
		if (SPI_execute_plan(run[k], values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not reset rows in flight");
		n += SPI_processed;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)))
				(*failed)++;
		}
	}
	SPI_finish();
	return n;
}

/*
 * VACUUM the outbox, as a plain VACUUM would: outside any transaction
 * block, with its own transactions.  Called by the worker when the queue has
 * run dry after a backlog: the old versions of the rows it claimed sit in
 * the due rows' index ahead of every new row until vacuum removes them, and
 * every claim steps over them.  Autovacuum would get there within
 * autovacuum_naptime; this removes them at once, while nothing is due.
 *
 * Returns false, without waiting, when another process holds the outbox's
 * vacuum lock (autovacuum at work, which began before the drain ended and
 * cannot remove what died after it began): the worker tries again at its
 * next idle turn.  SKIP_LOCKED covers the instant between the test and the
 * VACUUM.  cxt holds vacuum's cross-transaction memory (vacuum() takes it
 * from PortalContext, which a background worker does not have).
 */
bool
hs_outbox_vacuum(MemoryContext cxt)
{
	MemoryContext old_cxt;
	VacuumStmt *stmt;
	ParseState *pstate;
	MemoryContext old_portal = PortalContext;
	Oid			relid;

	StartTransactionCommand();
	relid = get_relname_relid("outbox", get_namespace_oid(HS_SCHEMA, false));
	if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, ShareUpdateExclusiveLock))
	{
		CommitTransactionCommand();
		return false;
	}
	UnlockRelationOid(relid, ShareUpdateExclusiveLock);

	/* the statement outlives the transactions VACUUM starts and commits */
	old_cxt = MemoryContextSwitchTo(cxt);
	stmt = makeNode(VacuumStmt);
	stmt->is_vacuumcmd = true;
	stmt->options = list_make1(makeDefElem("skip_locked", NULL, -1));
	/*
	 * By name, not by OID: VACUUM expands a partitioned table (schema 0.9.0
	 * on) into its partitions only when it looks the name up itself.
	 */
	stmt->rels = list_make1(makeVacuumRelation(makeRangeVar(HS_SCHEMA, "outbox", -1), InvalidOid, NIL));
	pstate = make_parsestate(NULL);
	MemoryContextSwitchTo(old_cxt);

	PortalContext = cxt;
	PG_TRY();
	{
		/* top level: VACUUM commits this transaction and starts its own */
		ExecVacuum(pstate, stmt, true);
	}
	PG_FINALLY();
	{
		PortalContext = old_portal;
	}
	PG_END_TRY();
	CommitTransactionCommand();
	return true;
}

/*
 * The subscription that replicates into this outbox, or NULL.  A FOR ALL
 * TABLES publication carries the outbox's rows to a subscriber, whose own
 * worker would send them a second time: the publisher's worker sends them
 * (and its recorded outcomes reach the subscriber the same way).
 */
char *
hs_outbox_replicated_by(void)
{
	static SPIPlanPtr plan = NULL;
	char	   *name = NULL;

	spi_connect();
	if (plan == NULL)
		plan = keep_plan("SELECT s.subname::pg_catalog.text"
						 "  FROM pg_catalog.pg_subscription_rel r"
						 "  JOIN pg_catalog.pg_subscription s ON s.oid OPERATOR(pg_catalog.=) r.srsubid"
						 " WHERE r.srrelid OPERATOR(pg_catalog.=) '" HS_SCHEMA ".outbox'::pg_catalog.regclass"
						 /* from 0.9.0 on, a publication of all tables carries the partitions */
						 "    OR r.srrelid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
						 "         WHERE i.inhparent OPERATOR(pg_catalog.=) '" HS_SCHEMA ".outbox'::pg_catalog.regclass))"
						 " ORDER BY 1 LIMIT 1", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_subscription_rel");
	if (SPI_processed > 0)
		name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (name)
		name = MemoryContextStrdup(TopMemoryContext, name);
	SPI_finish();
	return name;
}

/*
 * Delete sent rows older than the retention, a bounded number per call;
 * never one that supersedes a failed row of its contact (retry_failed()
 * would replay the failed one once it is gone).
 */
uint64
hs_outbox_purge_retention(int seconds)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	uint64		n;

	spi_connect();
	if (plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		plan = keep_plan("DELETE FROM " HS_SCHEMA ".outbox WHERE id OPERATOR(pg_catalog.=) ANY"
						 " (ARRAY(SELECT c.id FROM " HS_SCHEMA ".outbox c"
						 "   WHERE c.status OPERATOR(pg_catalog.=) 'sent'"
						 "     AND c.sent_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1::pg_catalog.float8))"
						 "     AND NOT EXISTS (SELECT 1 FROM " HS_SCHEMA ".outbox f"
						 "                      WHERE f.status OPERATOR(pg_catalog.=) 'failed'"
						 "                        AND f.external_event_id OPERATOR(pg_catalog.=) c.external_event_id"
						 "                        AND f.external_account_id OPERATOR(pg_catalog.=) c.external_account_id"
						 "                        AND f.contact_key OPERATOR(pg_catalog.=) c.contact_key"
						 "                        AND f.id OPERATOR(pg_catalog.<) c.id)"
						 "   LIMIT 10000))", 1, types);
	}
	values[0] = Int32GetDatum(seconds);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge sent rows");
	n = SPI_processed;
	SPI_finish();
	return n;
}

bool
hs_outbox_paused(void)
{
	static SPIPlanPtr plan = NULL;
	bool		paused = false;

	spi_connect();
	if (plan == NULL)
		plan = keep_plan("SELECT paused FROM " HS_SCHEMA ".worker_control", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read worker_control");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		paused = !isnull && DatumGetBool(d);
	}
	SPI_finish();
	return paused;
}

/* ---- the worker trusts no row: each claimed row is checked again ---- */

/* A value from a row, quoted and cut short for a message. */
static char *
quote_value(const char *s)
{
	int			len = strlen(s);
	int			cut = len <= 64 ? len : pg_mbcliplen(s, len, 64);

	return psprintf("\"%s%s\"", pnstrdup(s, cut), cut < len ? "..." : "");
}

/*
 * A claimed row's JSON column as jsonb, NULL when it is NULL: as it is
 * when the claim returns jsonb (schema 0.9.0 on), else parsed from its text
 * (a data exception on bad JSON: the caller catches it).
 */
static Jsonb *
row_jsonb(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return NULL;
	if (SPI_gettypeid(desc, col) == JSONBOID)
		return DatumGetJsonbP(d);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(SPI_getvalue(tup, desc, col))));
}

/* A claimed subscriber row's state and contact (columns 3, 5 and 9), checked; NULL when good. */
static char *
check_claimed_subscriber(HeapTuple tup, TupleDesc desc, HsClaimedRow *r, StringInfo buf)
{
	char	   *state = SPI_getvalue(tup, desc, 3);
	char	   *key = SPI_getvalue(tup, desc, 9);
	HsSubscriberState st;
	HsContact	c;
	Jsonb	   *jb;
	char	   *own_key;
	char	   *msg;
	char	   *hint;

	if (state == NULL)
		return pstrdup("subscriber_state is null");
	if (!hs_parse_state(state, &st))
		return psprintf("subscriber_state %s is not one of register, attend, cancel",
						quote_value(state));
	r->subscriber_state = (char *) hs_state_name(st);
	jb = row_jsonb(tup, desc, 5);
	if (jb == NULL)
		return pstrdup("contact is null");
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return pstrdup("contact must be a JSON object");
	if (!hs_check_contact(&jb->root, 0, &c, &msg, &hint))
	{
		/* "contacts[0].vid must be ...": there is one contact */
		if (strncmp(msg, "contacts[0]", 11) == 0)
			return psprintf("contact%s", msg + 11);
		return msg;
	}
	if (key == NULL)
		return pstrdup("contact_key is null");
	own_key = hs_contact_key(&c);
	if (strcmp(key, own_key) != 0)
		return psprintf("contact_key %s is not the contact's (%s)",
						quote_value(key), quote_value(own_key));
	hs_append_contact_json(buf, &c);
	r->contact_key = own_key;
	r->by_email = (c.email != NULL);
	r->contact = buf->data;
	return NULL;
}

/* A claimed event upsert's or complete's body (column 8), checked; NULL when good. */
static char *
check_claimed_event(HeapTuple tup, TupleDesc desc, HsClaimedRow *r, StringInfo buf)
{
	Jsonb	   *jb = row_jsonb(tup, desc, 8);
	char	   *msg;
	char	   *hint;

	if (jb == NULL)
		return pstrdup("event is null");
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return pstrdup("event must be a JSON object");
	if (r->kind == HS_KIND_EVENT_UPSERT
		? !hs_check_event_sent(&jb->root, r->external_event_id, r->external_account_id,
							   buf, &msg, &hint)
		: !hs_check_event_complete_body(&jb->root, buf, &msg))
		return msg;
	r->contact = buf->data;
	return NULL;
}

/*
 * Check one claimed row (columns as in hs_outbox_claim's query) as the
 * enqueue checks its input: every field the worker reads is there, of the
 * right shape, and passes the same validation; the state is one of the
 * three, the kind one of the four, the contact key the contact's own.  Fills
 * *r with what is sent, written anew from the checked values.  Returns NULL
 * when the row passes, else what is wrong with it.  May throw a data
 * exception (bad JSON in a column): the caller catches it.
 */
static char *
check_claimed_row(HeapTuple tup, TupleDesc desc, HsClaimedRow *r)
{
	char	   *kind = SPI_getvalue(tup, desc, 7);
	char	   *msg;
	StringInfoData buf;

	if (kind == NULL)
		return pstrdup("kind is null");
	if (strcmp(kind, "subscriber") == 0)
		r->kind = HS_KIND_SUBSCRIBER;
	else if (strcmp(kind, "event_upsert") == 0)
		r->kind = HS_KIND_EVENT_UPSERT;
	else if (strcmp(kind, "event_cancel") == 0)
		r->kind = HS_KIND_EVENT_CANCEL;
	else if (strcmp(kind, "event_complete") == 0)
		r->kind = HS_KIND_EVENT_COMPLETE;
	else
		return psprintf("kind %s is not one of subscriber, event_upsert, event_cancel, event_complete",
						quote_value(kind));

	r->external_event_id = SPI_getvalue(tup, desc, 2);
	if (r->external_event_id == NULL)
		return pstrdup("external_event_id is null");
	if ((msg = hs_check_external_id("external_event_id", r->external_event_id)) != NULL)
		return msg;
	r->external_account_id = SPI_getvalue(tup, desc, 4);
	if (r->external_account_id == NULL)
		return pstrdup("external_account_id is null");
	if ((msg = hs_check_external_id("external_account_id", r->external_account_id)) != NULL)
		return msg;

	r->subscriber_state = "";
	r->contact_key = "";
	r->contact = "";
	r->by_email = false;
	initStringInfo(&buf);
	switch (r->kind)
	{
		case HS_KIND_SUBSCRIBER:
			return check_claimed_subscriber(tup, desc, r, &buf);
		case HS_KIND_EVENT_UPSERT:
		case HS_KIND_EVENT_COMPLETE:
			return check_claimed_event(tup, desc, r, &buf);
		case HS_KIND_EVENT_CANCEL:
			/* a cancel has no body: the event column is not read */
			break;
	}
	return NULL;
}

/*
 * check_claimed_row, with a data exception (bad JSON in a column, a value
 * out of range) turned into the row's fault.  Runs in scratch, which the
 * caller resets; the row's fields and the message are copied into dest.
 */
static char *
check_claimed_row_safely(HeapTuple tup, TupleDesc desc, HsClaimedRow *r,
						 MemoryContext scratch, MemoryContext dest)
{
	HsClaimedRow checked;
	char	   *volatile msg = NULL;
	MemoryContext old = MemoryContextSwitchTo(scratch);

	memset(&checked, 0, sizeof(checked));
	PG_TRY();
	{
		msg = check_claimed_row(tup, desc, &checked);
	}
	PG_CATCH();
	{
		/* parsing holds no locks, buffers or files; anything but a data exception is re-thrown */
		msg = hs_take_data_exception(scratch);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(dest);
	if (msg != NULL)
		msg = pstrdup(msg);
	else
	{
		r->kind = checked.kind;
		r->by_email = checked.by_email;
		r->external_event_id = pstrdup(checked.external_event_id);
		r->subscriber_state = pstrdup(checked.subscriber_state);
		r->external_account_id = pstrdup(checked.external_account_id);
		r->contact_key = pstrdup(checked.contact_key);
		r->contact = pstrdup(checked.contact);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch);
	return msg;
}

/*
 * Run an UPDATE of rows in flight given as pairs ($1 bigint[] of ids, $2
 * text[] of one text each), planned once per schema kind into plans[]:
 * plans[0] runs sql, plans[1] (schema 0.8.0 on) sql and "AND o.connection =
 * r.conn", each row's connection unnested from $3 (conns), so that each row
 * is looked up by id and connection (see HS_RECORD_SENT_SQL); plans[2]
 * (0.9.0 on) the same as sql_rows, the statement on outbox_rows.  sql ends
 * with its WHERE, and unnests $1 and $2 as its r(id, <text>) with
 * HS_PAIRS_CONN in place of the third; what names the rows in the error.
 */
#define HS_PAIRS_FROM(text_column) \
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))" \
	"       AS r(id, " text_column ", conn)"
static void
update_pairs(SPIPlanPtr *plans, const char *sql, const char *sql_rows, Datum *ids, Datum *texts, Datum *conns,
			 int n, const char *what)
{
	int			v = hs_schema_version();
	int			h = v >= HS_SCHEMA_0_9_0 ? 2 : v >= HS_SCHEMA_0_8_0 ? 1 : 0;
	Datum		values[3];

	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(texts, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(conns, n, TEXTOID, -1, false, TYPALIGN_INT));
	spi_connect();
	if (plans[h] == NULL)
	{
		Oid			types[3] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};

		plans[h] = keep_plan(h >= 1 ? psprintf("%s AND o.connection OPERATOR(pg_catalog.=) r.conn",
											   h == 2 ? sql_rows : sql) : sql,
							 3, types);
	}
	if (SPI_execute_plan(plans[h], values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record %s in the outbox", what);
	SPI_finish();
}

/*
 * Mark claimed rows (still "sending") failed with LOCAL_VALIDATION_ERROR,
 * each with its own message: rows the worker refuses to send.  ids and
 * messages are parallel arrays of n.
 */
void
hs_outbox_fail_invalid(const int64 *ids, char **messages, int n, const char *conn)
{
	static SPIPlanPtr plans[3];
	Datum	   *idd;
	Datum	   *msgd;
	Datum	   *connd;
	Datum		c = CStringGetTextDatum(conn ? conn : "default");

	if (n <= 0)
		return;
	idd = palloc(sizeof(Datum) * n);
	msgd = palloc(sizeof(Datum) * n);
	connd = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		idd[i] = Int64GetDatum(ids[i]);
		msgd[i] = CStringGetTextDatum(messages[i]);
		connd[i] = c;
	}
#define HS_FAIL_INVALID_SQL(table) \
	"UPDATE " table " o" \
	"   SET status = 'failed', error_category = 'LOCAL_VALIDATION_ERROR'," \
	"       error_message = r.message, error_subcategory = NULL, http_status = NULL," \
	"       correlation_id = NULL, error_body = NULL, last_attempt_at = pg_catalog.now()" \
	HS_PAIRS_FROM("message") \
	" WHERE o.id OPERATOR(pg_catalog.=) r.id" \
	"   AND o.status OPERATOR(pg_catalog.=) 'sending'"
	update_pairs(plans, HS_FAIL_INVALID_SQL(HS_SCHEMA ".outbox"), HS_FAIL_INVALID_SQL(HS_SCHEMA ".outbox_rows"),
				 idd, msgd, connd, n, "invalid rows as failed");
#undef HS_FAIL_INVALID_SQL
}

/*
 * The rows a claim statement just returned (SPI_tuptable: id,
 * external_event_id, subscriber_state, external_account_id, contact,
 * attempts, kind, event, contact_key, and from claim_intake() the row's
 * place in the intake, tid), each checked again (check_claimed_row); ends
 * the SPI connection.  The rows that do not pass are marked failed
 * (LOCAL_VALIDATION_ERROR), in outbox_rows, and added to *failed.  Returns
 * the others, oldest first, allocated in caller.
 */
#define HS_CLAIM_TID_COLUMN 10

/*
 * Of n rows (their places tids[] and ids[]), those in flight in the intake
 * (a valid place) move to outbox_rows as they are (move_intake()), and
 * their places are made invalid: they are rows of outbox_rows from then on.
 */
static void
move_in_flight(ItemPointerData *tids, const int64 *ids, int n)
{
	ItemPointerData *move_tids = NULL;
	int64	   *move_ids = NULL;
	int			nmove = 0;

	for (int i = 0; i < n; i++)
		if (ItemPointerIsValid(&tids[i]))
		{
			if (move_tids == NULL)
			{
				move_tids = palloc(sizeof(ItemPointerData) * n);
				move_ids = palloc(sizeof(int64) * n);
			}
			move_tids[nmove] = tids[i];
			move_ids[nmove++] = ids[i];
			ItemPointerSetInvalid(&tids[i]);
		}
	(void) hs_outbox_move_intake(move_tids, move_ids, nmove);
}

static List *
take_claimed_rows(MemoryContext caller, const char *conn, HsFailedRows *failed)
{
	MemoryContext scratch;
	List	   *rows = NIL;
	int64	   *bad_ids = NULL;
	char	  **bad_msgs = NULL;
	ItemPointerData *bad_tids = NULL;
	int			nbad = 0;

	scratch = AllocSetContextCreate(CurrentMemoryContext, "hubspot_events claimed row",
									ALLOCSET_SMALL_SIZES);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(caller);
		HsClaimedRow *r = palloc0(sizeof(HsClaimedRow));
		bool		isnull;
		Datum		d;
		char	   *msg;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		if (isnull)
		{
			/* cannot be (the primary key), and could not be named to mark it */
			MemoryContextSwitchTo(old);
			continue;
		}
		r->id = DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		r->attempts = isnull ? 0 : DatumGetInt32(d);
		/* claim_intake()'s rows stay in the intake while in flight: where they are */
		ItemPointerSetInvalid(&r->tid);
		if (desc->natts >= HS_CLAIM_TID_COLUMN)
		{
			d = SPI_getbinval(tup, desc, HS_CLAIM_TID_COLUMN, &isnull);
			if (!isnull)
				ItemPointerCopy((ItemPointer) DatumGetPointer(d), &r->tid);
		}
		msg = check_claimed_row_safely(tup, desc, r, scratch, caller);
		if (msg == NULL)
			rows = lappend(rows, r);
		else
		{
			if (bad_ids == NULL)
			{
				bad_ids = palloc(sizeof(int64) * SPI_processed);
				bad_msgs = palloc(sizeof(char *) * SPI_processed);
				bad_tids = palloc(sizeof(ItemPointerData) * SPI_processed);
			}
			bad_tids[nbad] = r->tid;
			bad_ids[nbad] = r->id;
			bad_msgs[nbad++] = msg;
		}
		MemoryContextSwitchTo(old);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(scratch);
	SPI_finish();

	if (nbad > 0)
	{
		/* failed where every failed row is: in outbox_rows */
		move_in_flight(bad_tids, bad_ids, nbad);
		hs_outbox_fail_invalid(bad_ids, bad_msgs, nbad, conn);
		hs_failed_rows_add(failed, bad_ids, nbad);
		ereport(LOG,
				(errmsg("hubspot_events worker: %d claimed row%s failed the worker's checks and %s marked failed (LOCAL_VALIDATION_ERROR)",
						nbad, nbad == 1 ? "" : "s", nbad == 1 ? "is" : "are"),
				 errdetail("Row %lld: %s.", (long long) bad_ids[0],
						   hs_sanitize_remote_text(bad_msgs[0], strlen(bad_msgs[0])))));
	}

	/* the RETURNING order is not the claim order: oldest first */
	list_sort(rows, claimed_row_cmp);
	return rows;
}

/*
 * Claim up to limit due rows, oldest first: pending, next_attempt_at
 * passed, and no older row of the same (event, account, contact) still
 * pending or sending (so that one contact's changes reach HubSpot in commit
 * order, and no request holds two rows of one contact).  They are marked
 * sending, with the attempt counted.
 *
 * No row is trusted: anyone who may update the outbox can put any value in
 * it (a replay of failed rows puts back rows that failed local validation,
 * with NULLs and raw values).  Each claimed row is checked again
 * (check_claimed_row); one that does not pass is marked failed
 * (LOCAL_VALIDATION_ERROR, with what is wrong) in the same transaction and
 * is not returned.  Returns a List of HsClaimedRow, the rows that passed,
 * allocated in the caller's memory context.
 */
List *
hs_outbox_claim(int limit, const char *conn, HsFailedRows *failed)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_080 = NULL;
	MemoryContext caller = CurrentMemoryContext;
	Datum		values[2];
	bool		per_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;

	spi_connect();
	if (per_connection && plan_080 == NULL)
	{
		Oid			types[2] = {INT4OID, TEXTOID};

		/* the claim itself is SQL in the extension: claim_due() */
		plan_080 = keep_plan("SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,"
							 "       kind, event, contact_key"
							 "  FROM " HS_SCHEMA ".claim_due($1, $2)",
							 2, types);
	}
	if (!per_connection && plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		plan = keep_plan("SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,"
						 "       kind, event, contact_key"
						 "  FROM " HS_SCHEMA ".claim_due($1)",
						 1, types);
	}
	values[0] = Int32GetDatum(limit);
	values[1] = CStringGetTextDatum(conn ? conn : "default");
	if (SPI_execute_plan(per_connection ? plan_080 : plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim outbox rows");

	return take_claimed_rows(caller, conn, failed);
}

/* A tid[] of n TIDs. */
static ArrayType *
tid_array(const ItemPointerData *tids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&tids[i]);
	return construct_array(d, n, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT);
}

static ArrayType *
int8_array(const int64 *ids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * Claim intake rows of a connection (schema 0.9.0 on): the n rows given by
 * where they are and their ids (intake.c keeps them), those the order rules
 * let through (claim_intake()), marked sending where they are (each
 * HsClaimedRow knows its place there, tid).  Returns
 * the claimed rows as hs_outbox_claim does, checked again, oldest first.
 */
List *
hs_outbox_claim_intake(const char *conn, const ItemPointerData *tids, const int64 *ids, int n,
					   HsFailedRows *failed)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext caller = CurrentMemoryContext;
	Datum		values[3];

	if (n <= 0)
		return NIL;
	values[0] = PointerGetDatum(tid_array(tids, n));
	values[1] = PointerGetDatum(int8_array(ids, n));
	values[2] = CStringGetTextDatum(conn ? conn : "default");
	spi_connect();
	if (plan == NULL)
	{
		Oid			types[3] = {TIDARRAYOID, INT8ARRAYOID, TEXTOID};

		plan = keep_plan("SELECT id, external_event_id, subscriber_state, external_account_id, contact, attempts,"
						 "       kind, event, contact_key, tid"
						 "  FROM " HS_SCHEMA ".claim_intake($1, $2, $3)",
						 3, types);
	}
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim intake rows");
	return take_claimed_rows(caller, conn, failed);
}

/*
 * Move the n intake rows given (where they are, their ids) to outbox_rows as
 * they are (move_intake()).  Returns how many moved.
 */
int
hs_outbox_move_intake(const ItemPointerData *tids, const int64 *ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];
	int			count;

	if (n <= 0)
		return 0;
	values[0] = PointerGetDatum(tid_array(tids, n));
	values[1] = PointerGetDatum(int8_array(ids, n));
	spi_connect();
	if (plan == NULL)
	{
		Oid			types[2] = {TIDARRAYOID, INT8ARRAYOID};

		plan = keep_plan("SELECT " HS_SCHEMA ".move_intake($1, $2)", 2, types);
	}
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not move intake rows");
	count = (int) SPI_processed;
	SPI_finish();
	return count;
}

/*
 * A batch's rows in flight in the intake (claimed by claim_intake()) move
 * to outbox_rows as they are, still sending, so that an outcome other than
 * a success is recorded on them there, by id, as on every other row; the
 * batch then knows them as rows of outbox_rows.  (A success moves them and
 * records them in one statement: hs_outbox_record_sent.)
 */
void
hs_outbox_leave_intake(HsBatch *batch)
{
	if (batch->tids != NULL)
		move_in_flight(batch->tids, batch->ids, batch->n);
}

/* Move all of conn's intake rows to outbox_rows as they are (move_intake_connection()). */
int64
hs_outbox_move_intake_connection(const char *conn)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	bool		isnull;
	int64		n;

	values[0] = CStringGetTextDatum(conn);
	spi_connect();
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = keep_plan("SELECT " HS_SCHEMA ".move_intake_connection($1)", 1, types);
	}
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not move a connection's intake rows");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return isnull ? 0 : n;
}

/*
 * The pending rows of a connection the connections table no longer has
 * (dropped while a transaction that enqueued for it was in progress, or
 * an operator's edit) fail with CONNECTION_DROPPED.
 */
void
hs_outbox_fail_dropped(const char *conn, HsFailedRows *failed)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];

	spi_connect();
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = keep_plan("UPDATE " HS_SCHEMA ".outbox o"
						 "   SET status = 'failed', error_category = 'CONNECTION_DROPPED',"
						 "       error_message = pg_catalog.format('the connection \"%s\" does not exist', $1),"
						 "       error_subcategory = NULL, http_status = NULL, correlation_id = NULL,"
						 "       error_body = NULL, last_attempt_at = pg_catalog.now()"
						 " WHERE o.connection OPERATOR(pg_catalog.=) $1"
						 "   AND o.status OPERATOR(pg_catalog.=) 'pending'"
						 "   AND NOT EXISTS (SELECT 1 FROM " HS_SCHEMA ".connections c"
						 "                    WHERE c.name OPERATOR(pg_catalog.=) $1)"
						 " RETURNING o.id", 1, types);
	}
	values[0] = CStringGetTextDatum(conn);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not fail the rows of a dropped connection");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		hs_failed_rows_add(failed, &id, 1);
	}
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("hubspot_events worker: %llu rows of the connection \"%s\", which does not exist, failed with CONNECTION_DROPPED",
						(unsigned long long) SPI_processed, conn)));
	SPI_finish();
}

/*
 * Milliseconds until a pending row can next be claimed; -1 when none can.
 * From schema 0.5.0 on, next_claim_at() applies the claim's order rules (a
 * due row held back by a retrying row of its contact or by its event's
 * retrying upsert does not count); on 0.4.0, the earliest next_attempt_at
 * of any pending row.
 */
int64
hs_outbox_next_due_ms(const char *conn)
{
	static SPIPlanPtr plan_040 = NULL;
	static SPIPlanPtr plan_050 = NULL;
	static SPIPlanPtr plan_080 = NULL;
	SPIPlanPtr	plan;
	int64		ms = -1;
	Datum		values[1];

	spi_connect();
	values[0] = CStringGetTextDatum(conn ? conn : "default");
	if (hs_schema_version() >= HS_SCHEMA_0_8_0)
	{
		if (plan_080 == NULL)
		{
			Oid			types[1] = {TEXTOID};

			plan_080 = keep_plan("SELECT (pg_catalog.extract('epoch', " HS_SCHEMA ".next_claim_at($1) OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())"
								 "        OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8", 1, types);
		}
		plan = plan_080;
	}
	else if (hs_schema_version() >= HS_SCHEMA_0_5_0)
	{
		if (plan_050 == NULL)
			plan_050 = keep_plan("SELECT (pg_catalog.extract('epoch', " HS_SCHEMA ".next_claim_at() OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())"
								 "        OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8", 0, NULL);
		plan = plan_050;
	}
	else
	{
		if (plan_040 == NULL)
			plan_040 = keep_plan("SELECT (pg_catalog.extract('epoch', pg_catalog.min(next_attempt_at) OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())"
								 "        OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8"
								 "  FROM " HS_SCHEMA ".outbox WHERE status OPERATOR(pg_catalog.=) 'pending'", 0, NULL);
		plan = plan_040;
	}
	if (SPI_execute_plan(plan, plan == plan_080 ? values : NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the next due row");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ms = Max(DatumGetInt64(d), 0);
	}
	SPI_finish();
	return ms;
}

/*
 * Whether the event has an upsert pending, in flight, or sent in the last
 * HS_EVENT_RECENT_S seconds through the same connection (an event lives in
 * the HubSpot account its upsert reached): a subscriber state HubSpot
 * answers 404 for is then waiting for the event to exist (or to propagate),
 * not wrong.  (outbox_event_upserts indexes these rows from 0.5.0 on; on an
 * older schema the same statement scans.  Before 0.8.0 there is one
 * connection.)
 */
#define HS_EVENT_RECENT_S 300
#define HS_UPSERT_RECENT_SQL(table, conn_clause) \
	"SELECT EXISTS (SELECT 1 FROM " table " e" \
	" WHERE (e.external_event_id OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) e.external_account_id)" \
	"       OPERATOR(pg_catalog.=) ($1 OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) $2)" \
	"   AND e.external_event_id OPERATOR(pg_catalog.=) $1" \
	"   AND e.external_account_id OPERATOR(pg_catalog.=) $2" \
	"   AND e.kind OPERATOR(pg_catalog.=) 'event_upsert'" conn_clause \
	"   AND (e.status OPERATOR(pg_catalog.=) ANY ('{pending,sending}'::pg_catalog.text[])" \
	"        OR (e.status OPERATOR(pg_catalog.=) 'sent' AND e.sent_at OPERATOR(pg_catalog.>)" \
	"            (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $3::pg_catalog.float8)))))"

bool
hs_outbox_event_upsert_recent(const char *event_id, const char *account_id, const char *conn)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_080 = NULL;
	static SPIPlanPtr plan_090 = NULL;
	bool		in_rows = hs_schema_version() >= HS_SCHEMA_0_9_0;
	bool		per_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;
	Datum		values[4];
	bool		found = false;

	spi_connect();
	if (in_rows && plan_090 == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

		/* event rows are never in the intake */
		plan_090 = keep_plan(HS_UPSERT_RECENT_SQL(HS_SCHEMA ".outbox_rows", "   AND e.connection OPERATOR(pg_catalog.=) $4"),
							 4, types);
	}
	if (per_connection && !in_rows && plan_080 == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

		plan_080 = keep_plan(HS_UPSERT_RECENT_SQL(HS_SCHEMA ".outbox", "   AND e.connection OPERATOR(pg_catalog.=) $4"), 4, types);
	}
	if (!per_connection && plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};

		plan = keep_plan(HS_UPSERT_RECENT_SQL(HS_SCHEMA ".outbox", ""), 3, types);
	}
	values[0] = CStringGetTextDatum(event_id);
	values[1] = CStringGetTextDatum(account_id);
	values[2] = Int32GetDatum(HS_EVENT_RECENT_S);
	values[3] = CStringGetTextDatum(conn ? conn : "default");
	if (SPI_execute_plan(in_rows ? plan_090 : per_connection ? plan_080 : plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for the event's upsert");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		found = !isnull && DatumGetBool(d);
	}
	SPI_finish();
	return found;
}

/* A correlation id as HubSpot sends it, if it is a canonical UUID. */
static bool
is_canonical_uuid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * Record the rows of the requests a dry run built but did not send: sent,
 * with dry_run = true and the request each would have gone in
 * (hs_api_dry_run_request), no answer.  Schema 0.7.0 on (the worker holds
 * the queue before a dry run on an older schema).
 */
void
hs_outbox_record_dry_run(HsBatch **batches, int n)
{
	static SPIPlanPtr plans[3];
	int			nrows = 0;
	int			k = 0;
	Datum	   *ids;
	Datum	   *reqs;
	Datum	   *conns;

	for (int i = 0; i < n; i++)
	{
		nrows += batches[i]->n;
		hs_outbox_leave_intake(batches[i]);
	}
	if (nrows == 0)
		return;
	ids = palloc(sizeof(Datum) * nrows);
	reqs = palloc(sizeof(Datum) * nrows);
	conns = palloc(sizeof(Datum) * nrows);
	for (int i = 0; i < n; i++)
	{
		Datum		req = CStringGetTextDatum(hs_api_dry_run_request(batches[i]->url, batches[i]->body_len,
																	 batches[i]->n));
		Datum		conn = CStringGetTextDatum(batches[i]->conn ? batches[i]->conn->name : "default");

		for (int j = 0; j < batches[i]->n; j++, k++)
		{
			ids[k] = Int64GetDatum(batches[i]->ids[j]);
			reqs[k] = req;
			conns[k] = conn;
		}
	}
#define HS_DRY_RUN_SQL(table) \
	"UPDATE " table " o" \
	"   SET status = 'sent', sent_at = pg_catalog.now(), dry_run = true," \
	"       dry_run_request = r.req::pg_catalog.jsonb, http_status = NULL, correlation_id = NULL," \
	"       error_category = NULL, error_subcategory = NULL, error_message = NULL, error_body = NULL" \
	HS_PAIRS_FROM("req") \
	" WHERE o.id OPERATOR(pg_catalog.=) r.id AND o.status OPERATOR(pg_catalog.=) 'sending'"
	update_pairs(plans, HS_DRY_RUN_SQL(HS_SCHEMA ".outbox"), HS_DRY_RUN_SQL(HS_SCHEMA ".outbox_rows"),
				 ids, reqs, conns, nrows, "dry-run rows");
#undef HS_DRY_RUN_SQL
}

/*
 * The latency histogram of the rows just recorded sent (SPI_tuptable: one
 * row per bucket, width_bucket's index, count and sum) into the metrics.
 * Index i counts the rows under bound i (i = HS_LATENCY_BUCKETS: above the
 * last bound, only in the count).
 */
static void
record_latency(void)
{
	int64		per_bucket[HS_LATENCY_BUCKETS] = {0};
	int64		count = 0;
	double		sum = 0;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		bucket = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		int64		n = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		s = SPI_getbinval(tup, desc, 3, &isnull);

		if (bucket >= 0 && bucket < HS_LATENCY_BUCKETS)
			per_bucket[bucket] += n;
		count += n;
		if (!isnull)
			sum += DatumGetFloat8(s);
	}
	hs_metrics_add_latency(per_bucket, count, sum);
}

/*
 * Record the rows of many successful requests at once (still "sending"):
 * one UPDATE for a whole turn, each row with its own request's status and
 * correlation id.  batches and outcomes are parallel arrays of n.
 *
 * Each row of outbox_rows is looked up by its id and, from 0.8.0 on, its
 * connection, so that either index that can find a row in flight goes
 * straight to it: the primary key, or outbox_sending on (connection, id).
 * With the id alone, a planner whose statistics say no row is in flight
 * (the outbox analyzed after a drain, when its rows were sent: the usual
 * state before the next burst) probed outbox_sending for each row by its
 * second column, a walk of the whole index; until the outbox is vacuumed
 * that index holds the old version of every row claimed.  In a drain that
 * met such statistics, each record of 800 rows read 65,000 buffers (92 ms)
 * and the worker spent 79% of its time there (1.2 to 1.4 CPU s per 10,000
 * contacts instead of 0.4).
 *
 * From 0.9.0 on, the rows claimed from the intake are still there, where
 * the claim left them (HsBatch.tids): a second UPDATE, of the partitioned
 * outbox, finds each by its place (a TID scan, the id and status checked
 * again) and moves it to outbox_rows, sent, in one step: its only index
 * entries are the ones a sent row keeps.  A row changed since the claim is
 * no longer there and is not recorded: it stays as it is (in flight, it is
 * sent again after the check for rows in flight).
 */
#define HS_RECORD_SENT_SQL(table, set_extra, extra_array, extra_column, extra_clause) \
	"WITH u AS (UPDATE " table " o" \
	"   SET " set_extra "status = 'sent', sent_at = pg_catalog.now(), http_status = r.http_status," \
	"       correlation_id = r.cid::pg_catalog.uuid, error_category = NULL, error_subcategory = NULL," \
	"       error_message = NULL, error_body = NULL" \
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)" extra_array ")" \
	"       AS r(id, http_status, cid" extra_column ")" \
	" WHERE o.id OPERATOR(pg_catalog.=) r.id AND o.status OPERATOR(pg_catalog.=) 'sending'" extra_clause \
	" RETURNING CASE WHEN o.attempts OPERATOR(pg_catalog.=) 1" \
	"   THEN pg_catalog.date_part('epoch', o.last_attempt_at OPERATOR(pg_catalog.-) o.created_at) END AS lat)" \
	" SELECT pg_catalog.width_bucket(u.lat, $4), pg_catalog.count(*), pg_catalog.sum(u.lat)" \
	"   FROM u WHERE u.lat IS NOT NULL GROUP BY 1"

/* The record of sent rows by schema: before 0.8.0, by connection (0.8.0 on), in the intake (0.9.0 on). */
typedef enum
{
	HS_SENT_PLAN_ONE_CONNECTION,
	HS_SENT_PLAN_BY_CONNECTION,
	HS_SENT_PLAN_ROWS,
	HS_SENT_PLAN_INTAKE,
	HS_SENT_PLANS
} HsSentPlan;

static SPIPlanPtr
record_sent_plan(HsSentPlan which)
{
	static SPIPlanPtr plans[HS_SENT_PLANS];
	static const char *const sql[HS_SENT_PLANS] = {
		HS_RECORD_SENT_SQL(HS_SCHEMA ".outbox", "", "", "", ""),
		HS_RECORD_SENT_SQL(HS_SCHEMA ".outbox", "", ", pg_catalog.unnest($5)", ", conn",
						   " AND o.connection OPERATOR(pg_catalog.=) r.conn"),
		HS_RECORD_SENT_SQL(HS_SCHEMA ".outbox_rows", "", ", pg_catalog.unnest($5)", ", conn",
						   " AND o.connection OPERATOR(pg_catalog.=) r.conn"),
		HS_RECORD_SENT_SQL(HS_SCHEMA ".outbox", "intake = false, ", ", pg_catalog.unnest($5)", ", tid",
						   " AND o.intake AND o.ctid OPERATOR(pg_catalog.=) r.tid")
	};
	Oid			types[5] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
							which == HS_SENT_PLAN_INTAKE ? TIDARRAYOID : TEXTARRAYOID};

	if (plans[which] == NULL)
		plans[which] = keep_plan(sql[which], which == HS_SENT_PLAN_ONE_CONNECTION ? 4 : 5, types);
	return plans[which];
}

/*
 * One record of n sent rows: their ids, statuses and correlation ids, and
 * their connections (or, for HS_SENT_PLAN_INTAKE, their places in the
 * intake).
 * With, for the metrics, the latency of the rows sent at their first
 * attempt (from the enqueuing transaction's start to the claim), in the
 * histogram's buckets ($4, the upper bounds): one row per bucket.
 */
static void
record_sent_rows(HsSentPlan which, Datum *ids, Datum *statuses, Datum *cids, bool *cid_nulls,
				 Datum *extra, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		values[5];
	Datum		bounds[HS_LATENCY_BUCKETS];

	if (n == 0)
		return;
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(statuses, n, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_md_array(cids, cid_nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	for (int i = 0; i < HS_LATENCY_BUCKETS; i++)
		bounds[i] = Float8GetDatum(hs_metrics_latency_bounds()[i]);
	values[3] = PointerGetDatum(construct_array(bounds, HS_LATENCY_BUCKETS, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (which == HS_SENT_PLAN_INTAKE)
		values[4] = PointerGetDatum(construct_array(extra, n, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT));
	else
		values[4] = PointerGetDatum(construct_array(extra, n, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_plan(record_sent_plan(which), values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record sent rows in the outbox");
	record_latency();
}

void
hs_outbox_record_sent(HsBatch **batches, const HsOutcome **outcomes, int n)
{
	bool		in_intake = hs_schema_version() >= HS_SCHEMA_0_9_0;
	HsSentPlan	which = in_intake ? HS_SENT_PLAN_ROWS :
		hs_schema_version() >= HS_SCHEMA_0_8_0 ? HS_SENT_PLAN_BY_CONNECTION : HS_SENT_PLAN_ONE_CONNECTION;
	int			nrows = 0;
	int			k = 0;			/* rows of outbox_rows, from the start of the arrays */
	int			t;				/* rows in the intake, from their end */
	Datum	   *ids;
	Datum	   *statuses;
	Datum	   *cids;
	Datum	   *extra;
	bool	   *cid_nulls;

	for (int i = 0; i < n; i++)
		nrows += batches[i]->n;
	if (nrows == 0)
		return;
	ids = palloc(sizeof(Datum) * nrows);
	statuses = palloc(sizeof(Datum) * nrows);
	cids = palloc(sizeof(Datum) * nrows);
	cid_nulls = palloc(sizeof(bool) * nrows);
	extra = palloc(sizeof(Datum) * nrows);
	t = nrows;
	for (int i = 0; i < n; i++)
	{
		bool		valid = is_canonical_uuid(outcomes[i]->correlation_id);
		Datum		cid = valid ? CStringGetTextDatum(outcomes[i]->correlation_id) : (Datum) 0;
		Datum		conn = CStringGetTextDatum(batches[i]->conn ? batches[i]->conn->name : "default");

		for (int j = 0; j < batches[i]->n; j++)
		{
			bool		intake_row = in_intake && batches[i]->tids && ItemPointerIsValid(&batches[i]->tids[j]);
			int			at = intake_row ? --t : k++;

			ids[at] = Int64GetDatum(batches[i]->ids[j]);
			statuses[at] = Int32GetDatum(outcomes[i]->http_status);
			cids[at] = cid;
			cid_nulls[at] = !valid;
			extra[at] = intake_row ? PointerGetDatum(&batches[i]->tids[j]) : conn;
		}
	}

	spi_connect();
	record_sent_rows(which, ids, statuses, cids, cid_nulls, extra, k);
	record_sent_rows(HS_SENT_PLAN_INTAKE, ids + t, statuses + t, cids + t, cid_nulls + t, extra + t, nrows - t);
	SPI_finish();
}

/* A sent request's rows: sent, with its status and correlation id; no error. */
/* the rows' connection, from schema 0.8.0 on: parameter $n */
#define HS_AND_CONNECTION(n) " AND connection OPERATOR(pg_catalog.=) $" CppAsString2(n)

#define HS_RECORD_SENT_ONE_SQL(table) \
	"UPDATE " table \
	"   SET status = 'sent', sent_at = pg_catalog.now(), http_status = $2," \
	"       correlation_id = $3::pg_catalog.uuid, error_category = NULL, error_subcategory = NULL," \
	"       error_message = NULL, error_body = NULL" \
	" WHERE id OPERATOR(pg_catalog.=) ANY ($1) AND status OPERATOR(pg_catalog.=) 'sending'"

static int
record_sent(ArrayType *ids, const HsOutcome *o, const char *conn)
{
	static SPIPlanPtr sent_plan = NULL;
	static SPIPlanPtr sent_plan_080 = NULL;
	static SPIPlanPtr sent_plan_090 = NULL;
	bool		per_connection = hs_schema_version() >= HS_SCHEMA_0_8_0;
	bool		in_rows = hs_schema_version() >= HS_SCHEMA_0_9_0;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (in_rows && sent_plan_090 == NULL)
	{
		Oid			types[4] = {INT8ARRAYOID, INT4OID, TEXTOID, TEXTOID};

		sent_plan_090 = keep_plan(HS_RECORD_SENT_ONE_SQL(HS_SCHEMA ".outbox_rows") HS_AND_CONNECTION(4), 4, types);
	}
	if (per_connection && !in_rows && sent_plan_080 == NULL)
	{
		Oid			types[4] = {INT8ARRAYOID, INT4OID, TEXTOID, TEXTOID};

		/* by id and connection, as HS_RECORD_SENT_SQL */
		sent_plan_080 = keep_plan(HS_RECORD_SENT_ONE_SQL(HS_SCHEMA ".outbox") HS_AND_CONNECTION(4), 4, types);
	}
	if (!per_connection && sent_plan == NULL)
	{
		Oid			types[3] = {INT8ARRAYOID, INT4OID, TEXTOID};

		sent_plan = keep_plan(HS_RECORD_SENT_ONE_SQL(HS_SCHEMA ".outbox"), 3, types);
	}
	values[0] = PointerGetDatum(ids);
	values[1] = Int32GetDatum(o->http_status);
	if (is_canonical_uuid(o->correlation_id))
		values[2] = CStringGetTextDatum(o->correlation_id);
	else
		nulls[2] = 'n';
	values[3] = CStringGetTextDatum(conn);
	return SPI_execute_plan(in_rows ? sent_plan_090 : per_connection ? sent_plan_080 : sent_plan,
							values, nulls, false, 0);
}

/*
 * HubSpot's error, as parameters $2 .. $7 of the UPDATEs below: the HTTP
 * status, correlation id, category, subCategory, message and the body's
 * excerpt.  values[0] is the rows' ids.
 */
#define HS_ERROR_NARGS 7
#define HS_ERROR_TYPES INT8ARRAYOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID
#define HS_ERROR_SET \
	"  http_status = $2, correlation_id = $3::pg_catalog.uuid," \
	"  error_category = $4, error_subcategory = $5, error_message = $6, error_body = $7"

/*
 * The failed attempt appended to the row's attempt_history (schema 0.7.0
 * on), which keeps the last HS_ATTEMPT_HISTORY_MAX: the attempt's number
 * and time (epoch seconds; the row's claim), and HubSpot's answer ($2 ..
 * $6).  A history an operator replaced by something other than an array
 * starts again.
 */
#define HS_ATTEMPT_HISTORY_MAX 10
#define HS_HISTORY_EXPR \
	"pg_catalog.jsonb_path_query_array(" \
	"     (CASE WHEN pg_catalog.jsonb_typeof(attempt_history) OPERATOR(pg_catalog.=) 'array'" \
	"           THEN attempt_history ELSE '[]'::pg_catalog.jsonb END)" \
	"     OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(" \
	"        'attempt', attempts, 'at', pg_catalog.date_part('epoch', last_attempt_at)," \
	"        'http_status', $2, 'category', $4, 'subcategory', $5, 'message', $6, 'correlation_id', $3))," \
	"     '$[last - " CppAsString2(HS_ATTEMPT_HISTORY_MAX) " + 1 to last]'::pg_catalog.jsonpath)"
#define HS_HISTORY_SET ", attempt_history = " HS_HISTORY_EXPR

/*
 * Which of an error UPDATE's three statements this database's schema takes:
 * 0 before 0.7.0; 1 from 0.7.0 (it writes attempt_history); 2 from 0.8.0
 * (the same, and it looks each row up by id and connection, as the record
 * of sent rows does, so that no plan walks a whole index by its second
 * column: see HS_RECORD_SENT_SQL); 3 from 0.9.0 (the same in outbox_rows,
 * where every row in flight is: the intake is not read).
 */
#define HS_ERROR_KINDS 4
static int
error_plan_kind(void)
{
	int			v = hs_schema_version();

	return v >= HS_SCHEMA_0_9_0 ? 3 : v >= HS_SCHEMA_0_8_0 ? 2 : v >= HS_SCHEMA_0_7_0 ? 1 : 0;
}

static void
error_params(ArrayType *ids, const HsOutcome *o, Datum *values, char *nulls)
{
	values[0] = PointerGetDatum(ids);
	nulls[0] = ' ';
	for (int i = 1; i < HS_ERROR_NARGS; i++)
		nulls[i] = 'n';
	if (o->http_status > 0)
	{
		values[1] = Int32GetDatum(o->http_status);
		nulls[1] = ' ';
	}
	if (is_canonical_uuid(o->correlation_id))
	{
		values[2] = CStringGetTextDatum(o->correlation_id);
		nulls[2] = ' ';
	}
#define OPT_TEXT(i, s) do { if (s) { values[i] = CStringGetTextDatum(s); nulls[i] = ' '; } } while (0)
	OPT_TEXT(3, o->error_category);
	OPT_TEXT(4, o->error_subcategory);
	OPT_TEXT(5, o->error_message);
#undef OPT_TEXT
	if (o->error_body)
	{
		values[6] = JsonbPGetDatum(o->error_body);
		nulls[6] = ' ';
	}
}

/*
 * Plan (once per schema kind, error_plan_kind) and run one of the error
 * UPDATEs below.  Their parameters: the ids and HubSpot's error ($1 .. $7,
 * error_params), then nextra more (extra_types, extra), then, in sql[2]
 * only, the rows' connection (conn).
 */
#define HS_ERROR_MAX_EXTRA 2
static int
run_error_update(SPIPlanPtr *plans, const char *const *sql, ArrayType *ids, const HsOutcome *o,
				 int nextra, const Oid *extra_types, const Datum *extra, const char *conn)
{
	int			h = error_plan_kind();
	int			nargs = HS_ERROR_NARGS + nextra + (h >= 2 ? 1 : 0);
	Datum		values[HS_ERROR_NARGS + HS_ERROR_MAX_EXTRA + 1];
	char		nulls[HS_ERROR_NARGS + HS_ERROR_MAX_EXTRA + 1];

	Assert(nextra <= HS_ERROR_MAX_EXTRA);
	if (plans[h] == NULL)
	{
		Oid			types[HS_ERROR_NARGS + HS_ERROR_MAX_EXTRA + 1] = {HS_ERROR_TYPES};

		for (int i = 0; i < nextra; i++)
			types[HS_ERROR_NARGS + i] = extra_types[i];
		types[HS_ERROR_NARGS + nextra] = TEXTOID;
		plans[h] = keep_plan(sql[h], nargs, types);
	}
	error_params(ids, o, values, nulls);
	for (int i = 0; i < nextra; i++)
	{
		values[HS_ERROR_NARGS + i] = extra[i];
		nulls[HS_ERROR_NARGS + i] = ' ';
	}
	values[HS_ERROR_NARGS + nextra] = CStringGetTextDatum(conn);
	nulls[HS_ERROR_NARGS + nextra] = ' ';
	return SPI_execute_plan(plans[h], values, nulls, false, 0);
}

#define HS_WHERE_IN_FLIGHT \
	" WHERE id OPERATOR(pg_catalog.=) ANY ($1) AND status OPERATOR(pg_catalog.=) 'sending'"

/*
 * A held request's rows: pending again, the attempt not counted (the fault
 * is the configuration's); the attempt goes into the history.
 */
static int
record_hold(ArrayType *ids, const HsOutcome *o, const char *conn)
{
	static SPIPlanPtr plans[HS_ERROR_KINDS];

	/* kinds 2 and 3 (by connection): the same statement on the outbox, then on outbox_rows */
#define HS_HOLD_SQL(table) \
	"UPDATE " table \
	"   SET status = 'pending', attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0)" HS_HISTORY_SET \
	HS_WHERE_IN_FLIGHT HS_AND_CONNECTION(8)
	static const char *const sql[HS_ERROR_KINDS] = {
		"UPDATE " HS_SCHEMA ".outbox"
		"   SET status = 'pending', attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0)"
		HS_WHERE_IN_FLIGHT,
		"UPDATE " HS_SCHEMA ".outbox"
		"   SET status = 'pending', attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0)" HS_HISTORY_SET
		HS_WHERE_IN_FLIGHT,
		HS_HOLD_SQL(HS_SCHEMA ".outbox"),
		HS_HOLD_SQL(HS_SCHEMA ".outbox_rows")
	};
#undef HS_HOLD_SQL

	return run_error_update(plans, sql, ids, o, 0, NULL, NULL, conn);
}

/* A failed request's rows: failed, with HubSpot's error. */
static int
record_failed(ArrayType *ids, const HsOutcome *o, const char *conn)
{
	static SPIPlanPtr plans[HS_ERROR_KINDS];

#define HS_FAILED_SQL(table) \
	"UPDATE " table " SET status = 'failed'," HS_ERROR_SET HS_HISTORY_SET HS_WHERE_IN_FLIGHT HS_AND_CONNECTION(8)
	static const char *const sql[HS_ERROR_KINDS] = {
		"UPDATE " HS_SCHEMA ".outbox SET status = 'failed'," HS_ERROR_SET HS_WHERE_IN_FLIGHT,
		"UPDATE " HS_SCHEMA ".outbox SET status = 'failed'," HS_ERROR_SET HS_HISTORY_SET HS_WHERE_IN_FLIGHT,
		HS_FAILED_SQL(HS_SCHEMA ".outbox"),
		HS_FAILED_SQL(HS_SCHEMA ".outbox_rows")
	};
#undef HS_FAILED_SQL

	return run_error_update(plans, sql, ids, o, 0, NULL, NULL, conn);
}

/*
 * A rate-limited request's rows: pending until the pacing's pause ends
 * (the outcome's retry_after_ms, $8), the attempt given back.  A request
 * the pacing held back (no HTTP status) was not an attempt: no history.
 */
static int
record_rate_limited(ArrayType *ids, const HsOutcome *o, const char *conn)
{
	static SPIPlanPtr plans[HS_ERROR_KINDS];

#define HS_RATE_LIMITED_SQL(table) \
	"UPDATE " table " SET status = 'pending'," \
	"  attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0), next_attempt_at = $8," HS_ERROR_SET \
	"  , attempt_history = CASE WHEN $2 IS NULL THEN attempt_history ELSE " HS_HISTORY_EXPR " END" \
	HS_WHERE_IN_FLIGHT HS_AND_CONNECTION(9)
	static const char *const sql[HS_ERROR_KINDS] = {
		"UPDATE " HS_SCHEMA ".outbox SET status = 'pending',"
		"  attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0), next_attempt_at = $8," HS_ERROR_SET
		HS_WHERE_IN_FLIGHT,
		"UPDATE " HS_SCHEMA ".outbox SET status = 'pending',"
		"  attempts = GREATEST(attempts OPERATOR(pg_catalog.-) 1, 0), next_attempt_at = $8," HS_ERROR_SET
		"  , attempt_history = CASE WHEN $2 IS NULL THEN attempt_history ELSE " HS_HISTORY_EXPR " END"
		HS_WHERE_IN_FLIGHT,
		HS_RATE_LIMITED_SQL(HS_SCHEMA ".outbox"),
		HS_RATE_LIMITED_SQL(HS_SCHEMA ".outbox_rows")
	};
#undef HS_RATE_LIMITED_SQL
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		until = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
																		Max(o->retry_after_ms, 0)));

	return run_error_update(plans, sql, ids, o, 1, types, &until, conn);
}

/*
 * A retried request's rows: each pending again after its own backoff
 * (hs_retry_delay_ms, from the row's attempts), or failed once it has used
 * max_attempts: per row, $8 the status and $9 when (NULL: unchanged).
 */
static int
record_retry(ArrayType *ids, const HsBatch *batch, const HsOutcome *o, const char *conn)
{
	static SPIPlanPtr plans[HS_ERROR_KINDS];

#define HS_RETRY_SQL(table) \
	"UPDATE " table " o SET status = r.status," \
	"  next_attempt_at = COALESCE(r.next_at, o.next_attempt_at)," HS_ERROR_SET HS_HISTORY_SET \
	"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($8), pg_catalog.unnest($9))" \
	"       AS r(id, status, next_at)" \
	" WHERE o.id OPERATOR(pg_catalog.=) r.id AND o.status OPERATOR(pg_catalog.=) 'sending'" \
	"   AND o.connection OPERATOR(pg_catalog.=) $10"
	static const char *const sql[HS_ERROR_KINDS] = {
		"UPDATE " HS_SCHEMA ".outbox o SET status = r.status,"
		"  next_attempt_at = COALESCE(r.next_at, o.next_attempt_at)," HS_ERROR_SET
		"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($8), pg_catalog.unnest($9))"
		"       AS r(id, status, next_at)"
		" WHERE o.id OPERATOR(pg_catalog.=) r.id AND o.status OPERATOR(pg_catalog.=) 'sending'",
		"UPDATE " HS_SCHEMA ".outbox o SET status = r.status,"
		"  next_attempt_at = COALESCE(r.next_at, o.next_attempt_at)," HS_ERROR_SET HS_HISTORY_SET
		"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($8), pg_catalog.unnest($9))"
		"       AS r(id, status, next_at)"
		" WHERE o.id OPERATOR(pg_catalog.=) r.id AND o.status OPERATOR(pg_catalog.=) 'sending'",
		HS_RETRY_SQL(HS_SCHEMA ".outbox"),
		HS_RETRY_SQL(HS_SCHEMA ".outbox_rows")
	};
#undef HS_RETRY_SQL
	Oid			types[2] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		extra[2];
	Datum	   *statuses = palloc(sizeof(Datum) * batch->n);
	Datum	   *next_at = palloc(sizeof(Datum) * batch->n);
	bool	   *next_null = palloc(sizeof(bool) * batch->n);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			dims[1] = {batch->n};
	int			lbs[1] = {1};

	for (int i = 0; i < batch->n; i++)
	{
		bool		exhausted = batch->attempts[i] >= hs_max_attempts;

		statuses[i] = CStringGetTextDatum(exhausted ? "failed" : "pending");
		next_null[i] = exhausted;
		next_at[i] = exhausted ? (Datum) 0 :
			TimestampTzGetDatum(TimestampTzPlusMilliseconds(now,
															hs_retry_delay_ms(batch->attempts[i], o->retry_after_ms)));
	}
	extra[0] = PointerGetDatum(construct_array(statuses, batch->n, TEXTOID, -1, false, TYPALIGN_INT));
	extra[1] = PointerGetDatum(construct_md_array(next_at, next_null, 1, dims, lbs,
												  TIMESTAMPTZOID, sizeof(TimestampTz),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	return run_error_update(plans, sql, ids, o, 2, types, extra, conn);
}

/*
 * Record a request's outcome on its rows (still "sending"); the rows that
 * end failed are added to *failed.
 */
void
hs_outbox_record(HsBatch *batch, const HsOutcome *o, HsFailedRows *failed)
{
	Datum	   *idd = palloc(sizeof(Datum) * batch->n);
	ArrayType  *ids;
	int			rc;
	const char *conn = batch->conn ? batch->conn->name : "default";

	/* recorded in outbox_rows, by id */
	hs_outbox_leave_intake(batch);
	for (int i = 0; i < batch->n; i++)
		idd[i] = Int64GetDatum(batch->ids[i]);
	ids = construct_array(idd, batch->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	spi_connect();
	switch (o->kind)
	{
		case HS_OUTCOME_HOLD:
			rc = record_hold(ids, o, conn);
			break;
		case HS_OUTCOME_SENT:
			rc = record_sent(ids, o, conn);
			break;
		case HS_OUTCOME_FAILED:
			rc = record_failed(ids, o, conn);
			hs_failed_rows_add(failed, batch->ids, batch->n);
			break;
		case HS_OUTCOME_RETRY:
			rc = record_retry(ids, batch, o, conn);
			for (int i = 0; i < batch->n; i++)
				if (batch->attempts[i] >= hs_max_attempts)
					hs_failed_rows_add(failed, &batch->ids[i], 1);
			break;
		case HS_OUTCOME_RATE_LIMITED:
			rc = record_rate_limited(ids, o, conn);
			break;
		default:
			elog(ERROR, "unexpected outcome kind %d", (int) o->kind);
	}
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not record an outcome in the outbox");
	SPI_finish();
}
