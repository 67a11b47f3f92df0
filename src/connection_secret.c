/*-------------------------------------------------------------------------
 *
 * connection_secret.c
 *	  The OAuth connections' rows and sealed refresh tokens
 *	  (hubspot_events.connections, hubspot_events.connection_secrets), read
 *	  and written with the rights of the tables' owner.
 *
 * connection_secrets is readable by no role but the extension's owner.
 * connect_oauth() (called by whatever role a DBA granted it) and the worker
 * read and write it here, with the owner's user id inside a
 * security-restricted operation and search_path = pg_catalog, pg_temp, as
 * outbox.c writes the outbox on a caller's behalf.  The refresh token is
 * sealed (secret_box.c) before any SQL sees it, bound to the connection's
 * name, and passed as a parameter of a prepared plan: never in a query
 * text, never in clear in a table, its WAL or a dump.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#define HS_CONNECTIONS_HINT_DROP "Drop it first with hubspot_events.drop_connection(), or choose another name."

/* The owner's rights, entered around each statement's execution. */
typedef struct SecretsOwner
{
	HsOwnerRights rights;
} SecretsOwner;

/* What an error while sealing or opening a connection's token is about. */
typedef struct SecretErrorContext
{
	const char *doing;
	const char *name;
} SecretErrorContext;

/*
 * The owner of connection_secrets (the extension's owner); throws when the
 * table does not exist (an extension older than 0.8.0).
 */
static Oid
secrets_owner(void)
{
	Oid			owner = hs_relation_owner("connection_secrets");

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the hubspot_events connections do not exist in this database"),
				 errhint("Run ALTER EXTENSION hubspot_events UPDATE (connections came with version 0.8.0).")));
	return owner;
}

/* Connect to SPI and take the owner's rights (undone by as_caller, or by an abort). */
static void
as_owner(SecretsOwner *r)
{
	Oid			owner = secrets_owner();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	hs_owner_rights_enter(owner, &r->rights);
}

static void
as_caller(const SecretsOwner *r)
{
	hs_owner_rights_leave(&r->rights);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/* The plan in *slot, prepared and kept for the life of the backend on first use. */
static SPIPlanPtr
plan_for(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

static void
secret_error_context(void *arg)
{
	SecretErrorContext *c = (SecretErrorContext *) arg;

	errcontext("while %s the refresh token of the connection \"%s\"", c->doing, c->name);
}

/* Errors from here on say which connection's token they are about (until pop_context). */
static void
push_context(ErrorContextCallback *cb, SecretErrorContext *c)
{
	cb->callback = secret_error_context;
	cb->arg = c;
	cb->previous = error_context_stack;
	error_context_stack = cb;
}

static void
pop_context(ErrorContextCallback *cb)
{
	error_context_stack = cb->previous;
}

/* Seal a connection's refresh token, bound to its name. */
static bytea *
seal_for(const char *name, const char *refresh_token)
{
	SecretErrorContext c = {"sealing", name};
	ErrorContextCallback cb;
	bytea	   *sealed;

	push_context(&cb, &c);
	sealed = hs_secret_seal(refresh_token, strlen(refresh_token), name);
	pop_context(&cb);
	return sealed;
}

/*
 * The refresh token of the connection name, opened: palloc'd (the caller
 * wipes it with explicit_bzero), or NULL when it has none (no such
 * connection, or not an OAuth one).  Throws secret_box.c's errors (no key,
 * another key, damaged), with the connection named in their context.
 */
char *
hs_connection_refresh_token(const char *name)
{
	static SPIPlanPtr select_plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	SecretsOwner r;
	MemoryContext cxt = CurrentMemoryContext;
	bytea	   *sealed = NULL;
	char	   *plain;
	int			rc;

	values[0] = CStringGetTextDatum(name);
	as_owner(&r);
	rc = SPI_execute_plan(plan_for(&select_plan,
								   "SELECT s.refresh_token FROM " HS_SCHEMA ".connection_secrets s"
								   " WHERE s.connection OPERATOR(pg_catalog.=) $1",
								   1, types),
						  values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading a connection's secret failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			sealed = DatumGetByteaPCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	as_caller(&r);
	if (sealed == NULL)
		return NULL;

	{
		SecretErrorContext c = {"opening", name};
		ErrorContextCallback cb;

		push_context(&cb, &c);
		plain = hs_secret_open(sealed, name);
		pop_context(&cb);
	}
	pfree(sealed);
	return plain;
}

/* Store sealed as the refresh token of name, an OAuth connection (SPI connected, as owner). */
static bool
store_sealed(const char *name, bytea *sealed)
{
	static SPIPlanPtr store_plan = NULL;
	Oid			types[2] = {TEXTOID, BYTEAOID};
	Datum		values[2];
	int			rc;

	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(sealed);
	rc = SPI_execute_plan(plan_for(&store_plan,
								   "INSERT INTO " HS_SCHEMA ".connection_secrets AS s"
								   "  (connection, token_file, refresh_token, updated_at)"
								   " SELECT c.name, NULL, $2, pg_catalog.now()"
								   "   FROM " HS_SCHEMA ".connections c"
								   "  WHERE c.name OPERATOR(pg_catalog.=) $1"
								   "    AND c.auth OPERATOR(pg_catalog.=) 'oauth'"
								   " ON CONFLICT (connection) DO UPDATE"
								   "   SET refresh_token = excluded.refresh_token, token_file = NULL,"
								   "       updated_at = excluded.updated_at",
								   2, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "storing a connection's secret failed: %s", SPI_result_code_string(rc));
	return SPI_processed == 1;
}

/*
 * Seal refresh_token for the connection name and store it (the worker,
 * when HubSpot rotated it at a refresh).  False, and nothing stored, when
 * name is not an OAuth connection (it was dropped meanwhile).  The caller
 * wipes refresh_token.
 */
bool
hs_connection_store_refresh_token(const char *name, const char *refresh_token)
{
	bytea	   *sealed = seal_for(name, refresh_token);
	SecretsOwner r;
	bool		stored;

	as_owner(&r);
	stored = store_sealed(name, sealed);
	as_caller(&r);
	pfree(sealed);
	return stored;
}

pg_noreturn static void
refuse_existing(const char *name, const char *auth, int64 hub_id, int64 new_hub_id)
{
	if (strcmp(auth, "oauth") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("connection \"%s\" already exists with another credential (auth %s)", name, auth),
				 errhint(HS_CONNECTIONS_HINT_DROP)));
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_OBJECT),
			 errmsg("connection \"%s\" is HubSpot account %lld; the authorization code installed the app in account %lld",
					name, (long long) hub_id, (long long) new_hub_id),
			 errdetail("Nothing was changed: connecting again keeps a connection's HubSpot account, so that its rows never go to another one."),
			 errhint(HS_CONNECTIONS_HINT_DROP)));
}

#define HS_AUTH_MAX 32

/* The row of name (SPI connected): false when none; else its auth and hub_id (0: NULL). */
static bool
read_connection(const char *name, char auth[HS_AUTH_MAX], int64 *hub_id)
{
	static SPIPlanPtr read_plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;
	int			rc;

	values[0] = CStringGetTextDatum(name);
	rc = SPI_execute_plan(plan_for(&read_plan,
								   "SELECT c.auth, c.hub_id FROM " HS_SCHEMA ".connections c"
								   " WHERE c.name OPERATOR(pg_catalog.=) $1",
								   1, types),
						  values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading a connection failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	text_to_cstring_buffer(DatumGetTextPP(d), auth, HS_AUTH_MAX);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*hub_id = isnull ? 0 : DatumGetInt64(d);
	return true;
}

/*
 * Throw 42710 when the connection name exists and is not an OAuth one:
 * connect_oauth's check before it spends a single-use code.
 */
void
hs_connection_check_oauth_name(const char *name)
{
	SecretsOwner r;
	char		auth[HS_AUTH_MAX];
	int64		hub_id = 0;
	bool		exists;

	as_owner(&r);
	exists = read_connection(name, auth, &hub_id);
	as_caller(&r);
	if (exists && strcmp(auth, "oauth") != 0)
		refuse_existing(name, auth, hub_id, 0);
}

/*
 * Make name an active OAuth connection of HubSpot account hub_id (0:
 * unknown) whose refresh token is refresh_token: a new connection, or an
 * OAuth one connected again (its refresh token replaced, its state active
 * again, its hub_id kept).  Returns the connections row as a composite
 * Datum (the table's row type), in the caller's memory context.  Throws
 * 42710 when name exists with another credential, or is connected to
 * another HubSpot account; the secret_box.c errors when the token cannot be
 * sealed.  The caller wipes refresh_token.
 */
Datum
hs_connection_save_oauth(const char *name, int64 hub_id, const char *refresh_token)
{
	static SPIPlanPtr upsert_plan = NULL;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bytea	   *sealed = seal_for(name, refresh_token);
	SecretsOwner r;
	Datum		row = (Datum) 0;
	bool		saved;
	char		auth[HS_AUTH_MAX];
	int64		old_hub_id = 0;
	int			rc;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(hub_id);
	if (hub_id <= 0)
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	as_owner(&r);
	rc = SPI_execute_plan(plan_for(&upsert_plan,
								   "INSERT INTO " HS_SCHEMA ".connections AS c (name, hub_id, auth, state, held_reason)"
								   " VALUES ($1, $2, 'oauth', 'active', NULL)"
								   " ON CONFLICT (name) DO UPDATE"
								   "   SET hub_id = COALESCE(excluded.hub_id, c.hub_id),"
								   "       state = 'active', held_reason = NULL"
								   "   WHERE c.auth OPERATOR(pg_catalog.=) 'oauth'"
								   "     AND (c.hub_id IS NULL OR excluded.hub_id IS NULL"
								   "          OR c.hub_id OPERATOR(pg_catalog.=) excluded.hub_id)"
								   " RETURNING c",
								   2, types),
						  values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "saving a connection failed: %s", SPI_result_code_string(rc));
	saved = SPI_processed == 1;
	if (saved)
	{
		bool		isnull;

		row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
								false, -1);
		if (!store_sealed(name, sealed))
			elog(ERROR, "the connection \"%s\" was saved but its secret was not", name);
	}
	else if (!read_connection(name, auth, &old_hub_id))
		elog(ERROR, "the connection \"%s\" was neither inserted nor found", name);
	as_caller(&r);
	pfree(sealed);
	if (!saved)
		refuse_existing(name, auth, old_hub_id, hub_id);
	return row;
}
