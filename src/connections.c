/*-------------------------------------------------------------------------
 *
 * connections.c
 *	  The connections' SQL functions (create_connection), and the check of
 *	  the connection a call or a trigger row names.
 *
 * A connection is one HubSpot account reached with one credential
 * (hubspot_events.connections).  Every function that sends or enqueues
 * takes one, 'default' when omitted; the triggers take 'connection=<col>'
 * or 'connection:=<name>'.  An unknown name is an error at the call
 * (22023, naming it), checked once per name and transaction: the lookup
 * runs as the extension's owner (the caller needs no privilege on the
 * connections table), and 'default', which always exists, costs nothing.
 *
 * drop_connection() is SQL (the install script); connect_oauth() is in
 * connect_oauth.c.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/* names found in this transaction (TopTransactionContext) */
static List *known_names = NIL;
static bool callback_registered = false;

static void
forget_known(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		known_names = NIL;
}

/* The rule of connections.name: letters, digits, _ . - : @, first a letter or digit, <= 63 bytes. */
bool
hs_connection_name_is_valid(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char ch = (unsigned char) name[i];
		bool		alnum = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (!alnum && (i == 0 || strchr("_.:@-", ch) == NULL))
			return false;
	}
	return true;
}

/* The owner of hubspot_events.connections; throws when it does not exist (schema before 0.8.0). */
static Oid
connections_owner(void)
{
	Oid			owner = hs_relation_owner("connections");

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("connections other than \"default\" need the extension's schema 0.8.0 or later"),
				 errhint("Run ALTER EXTENSION hubspot_events UPDATE.")));
	return owner;
}

/*
 * Why a connection name cannot be used (it is not a valid name, or no such
 * connection exists), or NULL when it can.  'default' always can; other
 * names are looked up once per transaction, as the connections table's
 * owner (the caller needs no privilege on it).  Throws only when the
 * schema has no connections (before 0.8.0).
 */
char *
hs_connection_problem(const char *name)
{
	static SPIPlanPtr plan = NULL;
	ListCell   *lc;
	HsOwnerRights rights;
	Oid			owner;
	Datum		values[1];
	bool		found;

	if (strcmp(name, "default") == 0)
		return NULL;
	foreach(lc, known_names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return NULL;
	if (!hs_connection_name_is_valid(name))
		return psprintf("connection \"%s\" does not exist (a connection's name is 1 to 63 letters, digits and _ . - : @, starting with a letter or digit)",
						hs_sanitize_remote_text(name, Min(strlen(name), 200)));

	owner = connections_owner();
	hs_owner_rights_enter(owner, &rights);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = SPI_prepare("SELECT 1 FROM " HS_SCHEMA ".connections"
						   " WHERE name OPERATOR(pg_catalog.=) $1", 1, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the connection lookup");
		SPI_keepplan(plan);
	}
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look the connection up");
	found = SPI_processed > 0;
	SPI_finish();
	hs_owner_rights_leave(&rights);

	if (!found)
		return psprintf("connection \"%s\" does not exist", name);
	if (!callback_registered)
	{
		RegisterXactCallback(forget_known, NULL);
		callback_registered = true;
	}
	{
		/* the list and its names live as long as the transaction */
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		known_names = lappend(known_names, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	return NULL;
}

/* Throw 22023 unless the connection exists (hs_connection_problem). */
void
hs_connection_require(const char *name)
{
	char	   *problem = hs_connection_problem(name);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", problem),
				 errhint("hubspot_events.connections lists the connections; create_connection() and connect_oauth() create them.")));
}

/*
 * The connection argument i of a SQL function: NULL (the default) when the
 * function was declared without it (a schema before 0.8.0) or it says
 * 'default'; else the name, checked.  NULL as a value is refused.
 */
const char *
hs_connection_argument(FunctionCallInfo fcinfo, int i)
{
	char	   *name;

	if (PG_NARGS() <= i)
		return NULL;
	if (PG_ARGISNULL(i))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("connection must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_P_SLICE(i, 0, 256));
	hs_connection_require(name);
	return strcmp(name, "default") == 0 ? NULL : name;
}

PG_FUNCTION_INFO_V1(hubspot_create_connection);

/*
 * create_connection(name text, token_file text) -> connections
 *
 * A connection with a static credential read from a server file.
 * Superuser only: it names a server file, which is read once here (so that
 * a typo is an error now, not a hold later) and again by whoever sends.
 */
Datum
hubspot_create_connection(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *path;
	char	   *token;
	struct stat st;
	Datum		values[2];
	Datum		result;
	bool		isnull;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "name" : "token_file")));
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may create a connection with a token file"),
				 errdetail("It names a file of the server.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!hs_connection_name_is_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connection name \"%s\"", name),
				 errdetail("A connection's name is 1 to 63 letters, digits and _ . - : @, starting with a letter or digit.")));
	if (strcmp(name, "default") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the connection \"default\" is the server's settings"),
				 errhint("Set hubspot_events.access_token_file for it.")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token_file must be an absolute path")));
	(void) connections_owner();

	/* readable, and holding a token: checked now (the contents are dropped at once) */
	token = hs_read_secret_file("connection_secrets.token_file", "access token", "an access token",
								path, &st, CurrentMemoryContext);
	explicit_bzero(token, strlen(token));
	pfree(token);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(path);
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		int			rc;

		rc = SPI_execute_with_args("SELECT 1 FROM " HS_SCHEMA ".connections WHERE name OPERATOR(pg_catalog.=) $1",
								   1, types, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not look the connection up");
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("connection \"%s\" already exists", name),
					 errhint("Write the new token into its file (the worker reads it again when it changes), or drop_connection() it first.")));
		rc = SPI_execute_with_args("INSERT INTO " HS_SCHEMA ".connections (name, auth) VALUES ($1, 'token_file')",
								   1, types, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not create the connection");
		rc = SPI_execute_with_args("INSERT INTO " HS_SCHEMA ".connection_secrets (connection, token_file) VALUES ($1, $2)",
								   2, types, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not create the connection");
		rc = SPI_execute_with_args("SELECT c FROM " HS_SCHEMA ".connections c WHERE c.name OPERATOR(pg_catalog.=) $1",
								   1, types, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read the new connection");
	}
	/* the row, copied out of SPI's memory before SPI_finish */
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * A connection's credential, as its table says (read as the tables'
 * owner): its auth (HS_AUTH_*), and for a token_file connection the file's
 * path (palloc'd; NULL otherwise).  Throws 22023 when it does not exist.
 */
char *
hs_connection_credential(const char *name, char *auth)
{
	HsOwnerRights rights;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *path = NULL;
	char	   *a;
	MemoryContext caller = CurrentMemoryContext;

	hs_owner_rights_enter(connections_owner(), &rights);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT c.auth, s.token_file, c.state, c.held_reason FROM " HS_SCHEMA ".connections c"
							  "  LEFT JOIN " HS_SCHEMA ".connection_secrets s"
							  "         ON s.connection OPERATOR(pg_catalog.=) c.name"
							  " WHERE c.name OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look the connection up");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection \"%s\" does not exist", name)));
	a = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*auth = (a && strcmp(a, "oauth") == 0) ? HS_AUTH_OAUTH :
		(a && strcmp(a, "settings") == 0) ? HS_AUTH_SETTINGS : HS_AUTH_TOKEN_FILE;
	{
		char	   *p = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
		char	   *reason = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);

		if (state && strcmp(state, "disconnected") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the connection \"%s\" is disconnected", name),
					 reason ? errdetail("%s", reason) : 0,
					 errhint("The HubSpot app was uninstalled or its token revoked: connect it again with connect_oauth().")));
		if (p)
			path = MemoryContextStrdup(caller, p);
	}
	SPI_finish();
	hs_owner_rights_leave(&rights);
	return path;
}
