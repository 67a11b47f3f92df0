/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The outbox's SQL: writing rows (enqueue), and the worker's claim and
 *	  outcome statements.
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
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "catalog/pg_class.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

static SPIPlanPtr insert_plan = NULL;

/* The outbox's OID and owner; throws when the extension is not installed. */
static Oid
outbox_owner(void)
{
	Oid			nsp = get_namespace_oid(HS_SCHEMA, true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the hubspot_events outbox does not exist in this database"),
				 errhint("Run CREATE EXTENSION hubspot_events, or ALTER EXTENSION hubspot_events UPDATE.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

int64
hs_outbox_insert(const HsOutboxRow *row)
{
	Oid			owner = outbox_owner();
	Oid			save_userid;
	int			save_sec_context;
	Datum		values[7];
	char		nulls[7];
	int			rc;
	bool		isnull;
	int64		id;

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
#undef TEXT_ARG

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	if (insert_plan == NULL)
	{
		Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("INSERT INTO " HS_SCHEMA ".outbox"
						   " (external_event_id, subscriber_state, external_account_id,"
						   "  contact, contact_key, source,"
						   "  status, error_category, error_message, last_attempt_at)"
						   " VALUES ($1, $2, $3, $4, $5, $6,"
						   "  CASE WHEN $7 IS NULL THEN 'pending' ELSE 'failed' END,"
						   "  CASE WHEN $7 IS NULL THEN NULL ELSE 'LOCAL_VALIDATION_ERROR' END,"
						   "  $7,"
						   "  CASE WHEN $7 IS NULL THEN NULL ELSE pg_catalog.now() END)"
						   " RETURNING id",
						   7, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the outbox insert: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the outbox insert plan");
		insert_plan = plan;
	}

	rc = SPI_execute_plan(insert_plan, values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "outbox insert failed: %s", SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	if (row->error_message == NULL)
		hs_wake_at_commit();
	return id;
}
