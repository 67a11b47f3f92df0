/*-------------------------------------------------------------------------
 *
 * worker_connections.c
 *	  The worker's view of each connection (one HubSpot account reached with
 *	  one credential, hubspot_events.connections): its pacing, its hold,
 *	  its token, and its share of a turn.
 *
 * A connection's faults are its own: a 401 or 403 holds that connection's
 * rows only (connections.state = 'held', with the reason), a 429 pauses
 * only its sending, its window and daily quota are learned from the
 * answers to its own requests.  The other connections go on.
 *
 * The connection default is the server's settings (access_token_file or
 * the OAuth settings): its token comes from token.c and its hold is the
 * worker's own (worker.c, hubspot_events.status), as before connections
 * existed.  The others are read from the connections table at every claim,
 * so that a change (a new token file, connect_oauth() again, a new limit)
 * applies at the next turn.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

static HTAB *conns = NULL;
static HsConn *default_conn = NULL;

static void
conns_init(void)
{
	HASHCTL		ctl;

	if (conns != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(HsConn);
	ctl.hcxt = TopMemoryContext;
	conns = hash_create("hubspot_events connections", 64, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* The worker's entry for a connection, created on first use. */
HsConn *
hs_conn_get(const char *name)
{
	HsConn	   *c;
	bool		found;
	char		key[NAMEDATALEN];

	conns_init();
	memset(key, 0, sizeof(key));
	strlcpy(key, name, sizeof(key));
	c = (HsConn *) hash_search(conns, key, HASH_ENTER, &found);
	if (!found)
	{
		char		saved[NAMEDATALEN];

		memcpy(saved, c->name, NAMEDATALEN);
		memset(c, 0, sizeof(HsConn));
		memcpy(c->name, saved, NAMEDATALEN);
		c->is_default = (strcmp(c->name, "default") == 0);
		c->auth = c->is_default ? HS_AUTH_SETTINGS : HS_AUTH_TOKEN_FILE;
		c->exists = c->is_default;
		c->pacer = hs_pacer_create(TopMemoryContext);
	}
	return c;
}

HsConn *
hs_conn_default(void)
{
	if (default_conn == NULL)
		default_conn = hs_conn_get("default");
	return default_conn;
}

static void
set_token_file(HsConn *c, const char *path)
{
	if (c->token_file && path && strcmp(c->token_file, path) == 0)
		return;
	if (c->token_file)
		pfree(c->token_file);
	c->token_file = path ? MemoryContextStrdup(TopMemoryContext, path) : NULL;
}

/*
 * The connections with pending rows (c->has_pending), each with its
 * earliest next_attempt_at (c->next_ms: ms from now, <= 0 when due), and
 * those named in wanted (OAuth connections whose token a session waits
 * for), with what the connections table says of each, read in the caller's
 * transaction (the claim's).  A List of HsConn (the worker's entries,
 * updated); c->exists is false for a connection the table does not have
 * (dropped: its rows fail with CONNECTION_DROPPED).
 */
List *
hs_conn_load_pending(List *wanted, List *intake)
{
	static SPIPlanPtr plan = NULL;
	List	   *result = NIL;
	MemoryContext caller = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	Datum		values[2];
	Datum	   *names;
	Datum	   *inames;
	int			n = 0;
	int			ni = 0;
	ListCell   *lc;

	names = palloc(sizeof(Datum) * Max(list_length(wanted), 1));
	foreach(lc, wanted)
		names[n++] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	inames = palloc(sizeof(Datum) * Max(list_length(intake), 1));
	foreach(lc, intake)
		inames[ni++] = CStringGetTextDatum((char *) lfirst(lc));
	values[1] = PointerGetDatum(construct_array(inames, ni, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};

		/* $2: the connections with rows kept from the intake (intake.c), due now */
		plan = SPI_prepare("SELECT coalesce(p.connection, w.name), p.next_attempt_at, c.name IS NOT NULL, c.auth, c.state,"
						   "       c.hub_id, c.rate_limit, c.rate_limit_interval_ms, s.token_file, p.connection IS NOT NULL,"
						   "       coalesce(p.in_rows, false)"
						   "  FROM (SELECT coalesce(q.connection, i.name) AS connection,"
						   "               CASE WHEN i.name IS NULL THEN q.next_attempt_at END AS next_attempt_at,"
						   "               q.connection IS NOT NULL AS in_rows"
						   "          FROM " HS_SCHEMA ".pending_connections() q"
						   "          FULL JOIN pg_catalog.unnest($2) i(name) ON i.name OPERATOR(pg_catalog.=) q.connection) p"
						   "  FULL JOIN pg_catalog.unnest($1) w(name) ON w.name OPERATOR(pg_catalog.=) p.connection"
						   "  LEFT JOIN " HS_SCHEMA ".connections c"
						   "         ON c.name OPERATOR(pg_catalog.=) coalesce(p.connection, w.name)"
						   "  LEFT JOIN " HS_SCHEMA ".connection_secrets s"
						   "         ON s.connection OPERATOR(pg_catalog.=) coalesce(p.connection, w.name)",
						   2, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the connections' query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the connections");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = SPI_getvalue(tup, desc, 1);
		Datum		d;
		HsConn	   *c;

		if (name == NULL || strlen(name) >= NAMEDATALEN)
			continue;			/* cannot be: the outbox's names come from the table's */
		c = hs_conn_get(name);
		c->has_pending = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
		c->rows_pending = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		c->next_ms = isnull ? 0 : (int64) ((DatumGetTimestampTz(d) - now) / 1000);
		c->exists = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		if (c->exists)
		{
			char	   *auth = SPI_getvalue(tup, desc, 4);
			char	   *state = SPI_getvalue(tup, desc, 5);
			int			limit = 0,
						interval = 0;
			bool		was_flagged = c->disconnected || c->table_held;

			c->auth = (auth && strcmp(auth, "oauth") == 0) ? HS_AUTH_OAUTH :
				(auth && strcmp(auth, "settings") == 0) ? HS_AUTH_SETTINGS : HS_AUTH_TOKEN_FILE;

			c->disconnected = (state && strcmp(state, "disconnected") == 0);
			c->table_held = (state && strcmp(state, "held") == 0);
			/* made active again by someone else (connect_oauth() again): try it now */
			if (was_flagged && !c->disconnected && !c->table_held && !c->hold_changed)
				c->hold.held = false;
			d = SPI_getbinval(tup, desc, 6, &isnull);
			c->hub_id = isnull ? 0 : DatumGetInt64(d);
			d = SPI_getbinval(tup, desc, 7, &isnull);
			if (!isnull)
				limit = DatumGetInt32(d);
			d = SPI_getbinval(tup, desc, 8, &isnull);
			if (!isnull)
				interval = DatumGetInt32(d);
			hs_pacer_set_limits(c->pacer, limit, interval);
			set_token_file(c, SPI_getvalue(tup, desc, 9));
		}
		{
			/* the list outlives SPI's memory: the caller's */
			MemoryContext old = MemoryContextSwitchTo(caller);

			result = lappend(result, c);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	return result;
}

/* ---- holds ---- */

/*
 * Hold a connection (not the default: worker.c holds that one): its rows
 * wait, attempts untouched; one log line per reason.  The table says so
 * when the turn's record phase runs hs_conn_record_holds().
 */
void
hs_conn_hold(HsConn *c, const char *reason)
{
	bool		was_held;
	bool		new_reason;

	hs_hold_set(&c->hold, reason, c->token_file, &was_held, &new_reason);
	if (!was_held || new_reason)
	{
		ereport(LOG,
				(errmsg("hubspot_events worker: holding the connection \"%s\": %s", c->name, reason),
				 errdetail("Its rows stay pending and their attempts are not counted; the other connections go on."),
				 errhint("Sending through it resumes after its token file changes, the configuration is reloaded, or one minute.")));
		c->hold_changed = true;
	}
}

/* Whether a held connection may be tried again; clears the hold when so. */
bool
hs_conn_hold_released(HsConn *c)
{
	bool		ended;

	if (!hs_hold_try(&c->hold, c->token_file, &ended))
		return false;
	if (ended)
		ereport(LOG, (errmsg("hubspot_events worker: trying the held connection \"%s\" again", c->name)));
	return true;
}

/*
 * In the record phase's transaction: write each connection's hold, or its
 * release (a request went through), into the connections table, and tell
 * listeners.  succeeded: the connections with a request through this turn.
 */
void
hs_conn_record_state(HsConn *c, bool went_through)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr hub_plan = NULL;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	const char *state;

	if (c->is_default)
		return;
	if (c->new_refresh_token)
	{
		/* HubSpot rotated it: the new one, sealed, in place of the old (it wipes the copy) */
		(void) hs_connection_store_refresh_token(c->name, c->new_refresh_token);
		pfree(c->new_refresh_token);
		c->new_refresh_token = NULL;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (c->new_hub_id > 0)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		if (hub_plan == NULL)
		{
			hub_plan = SPI_prepare("UPDATE " HS_SCHEMA ".connections SET hub_id = $2"
								   " WHERE name OPERATOR(pg_catalog.=) $1", 2, types);
			if (hub_plan == NULL)
				elog(ERROR, "could not prepare the connection's hub update");
			SPI_keepplan(hub_plan);
		}
		values[0] = CStringGetTextDatum(c->name);
		values[1] = Int64GetDatum(c->new_hub_id);
		if (SPI_execute_plan(hub_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record the connection's hub id");
		c->hub_id = c->new_hub_id;
		c->new_hub_id = 0;
	}

	if (c->disconnected_reason && !c->disconnected)
		state = "disconnected";
	else if (c->hold.held && c->hold_changed)
		state = "held";
	else if (!c->hold.held && went_through && c->table_held)
		state = "active";
	else
	{
		SPI_finish();
		return;
	}
	if (plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

		plan = SPI_prepare("UPDATE " HS_SCHEMA ".connections SET state = $2, held_reason = $3"
						   " WHERE name OPERATOR(pg_catalog.=) $1"
						   "   AND state OPERATOR(pg_catalog.<>) 'disconnected'",
						   3, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the connection's state update");
		SPI_keepplan(plan);
	}
	values[0] = CStringGetTextDatum(c->name);
	values[1] = CStringGetTextDatum(state);
	if (strcmp(state, "held") == 0)
		values[2] = CStringGetTextDatum(c->hold.reason);
	else if (strcmp(state, "disconnected") == 0)
		values[2] = CStringGetTextDatum(c->disconnected_reason);
	else
		nulls[2] = 'n';
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the connection's state");
	SPI_finish();

	if (strcmp(state, "held") == 0)
	{
		hs_notify_held(c->name, c->hold.reason);
		hs_metrics_add(HS_METRIC_HOLDS, 1);
		c->table_held = true;
	}
	else if (strcmp(state, "disconnected") == 0)
	{
		hs_notify_disconnected(c->name, c->disconnected_reason);
		c->disconnected = true;
		pfree(c->disconnected_reason);
		c->disconnected_reason = NULL;
	}
	else
	{
		hs_notify_released(c->name);
		c->table_held = false;
	}
	c->hold_changed = false;
}

/* ---- tokens ---- */

/* A token file's credential, read again when the file changes; throws when it cannot be read. */
static const char *
file_token(HsConn *c)
{
	if (c->token_file == NULL || c->token_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the connection \"%s\" has no token file", c->name)));
	return hs_secret_file_cached(&c->token, "connection_secrets.token_file", "access token",
								 "an access token", c->token_file);
}

/*
 * The token of a connection that is not the default: its token file's, or
 * its OAuth access token as the worker last got it (hs_conn_refresh_oauth).
 * Throws when there is none (the caller holds the connection with the
 * message).
 */
const char *
hs_conn_token(HsConn *c)
{
	char		problem[256];

	if (c->auth != HS_AUTH_OAUTH)
		return file_token(c);
	if (!hs_conn_token_copy(c->name, 0, c->oauth_token, sizeof(c->oauth_token), problem, sizeof(problem)))
		ereport(ERROR,
				(errcode(ERRCODE_HS_TOKEN_ENDPOINT),
				 errmsg("no OAuth access token for the connection \"%s\"%s%s", c->name,
						problem[0] ? ": " : "", problem)));
	return c->oauth_token;
}

/* An OAuth token shorter-lived than this is refreshed before it is used */
#define HS_CONN_TOKEN_MIN_LIFE_MS 300000

/*
 * In a transaction (the claim's): an OAuth connection whose token is
 * missing or about to expire gets its refresh token opened, for
 * hs_conn_refresh_oauth() after the commit.  A refresh token that cannot be
 * opened (no key, another key, damaged) holds the connection, with why.
 */
void
hs_conn_prepare_oauth(HsConn *c, MemoryContext turn_cxt)
{
	char		ignored[HS_CONN_OAUTH_TOKEN_MAX];
	MemoryContext cxt = CurrentMemoryContext;

	if (c->auth != HS_AUTH_OAUTH || c->disconnected || !c->exists)
		return;
	if (hs_conn_token_copy(c->name, HS_CONN_TOKEN_MIN_LIFE_MS, ignored, sizeof(ignored), NULL, 0))
	{
		explicit_bzero(ignored, sizeof(ignored));
		return;
	}
	PG_TRY();
	{
		char	   *rt;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		rt = hs_connection_refresh_token(c->name);
		if (rt)
		{
			c->refresh_token = MemoryContextStrdup(TopMemoryContext, rt);
			explicit_bzero(rt, strlen(rt));
		}
		else
			c->turn_hold = MemoryContextStrdup(turn_cxt, "the connection has no refresh token: connect it again with connect_oauth()");
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(turn_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		c->turn_hold = psprintf("its refresh token cannot be opened: %s", edata->message);
		hs_conn_token_fail(c->name, c->turn_hold);
	}
	PG_END_TRY();
}

/*
 * Outside any transaction: refresh the OAuth connection's access token
 * with the refresh token hs_conn_prepare_oauth() opened, and share it.  An
 * answer invalid_grant (the app was uninstalled, the token revoked)
 * disconnects the connection; another failure holds it.  What the table
 * must learn (a rotated refresh token, the hub id, the disconnection) is
 * written by hs_conn_record_state() in the next transaction.
 */
void
hs_conn_refresh_oauth(HsConn *c, MemoryContext turn_cxt)
{
	HsOAuthGrant grant;
	bool		invalid_grant = false;
	char	   *error = NULL;

	if (c->refresh_token == NULL)
		return;
	if (hs_oauth_refresh_grant(c->refresh_token, &grant, &invalid_grant, &error))
	{
		hs_conn_token_set(c->name, grant.access_token,
						  GetCurrentTimestamp() + (TimestampTz) Max(grant.expires_in_s, 60) * USECS_PER_SEC);
		if (grant.refresh_token && strcmp(grant.refresh_token, c->refresh_token) != 0)
			c->new_refresh_token = MemoryContextStrdup(TopMemoryContext, grant.refresh_token);
		if (grant.hub_id > 0 && grant.hub_id != c->hub_id)
			c->new_hub_id = grant.hub_id;
		hs_oauth_grant_wipe(&grant);
		if (c->disconnected_reason)
		{
			pfree(c->disconnected_reason);
			c->disconnected_reason = NULL;
		}
	}
	else if (invalid_grant)
	{
		c->disconnected_reason = MemoryContextStrdup(TopMemoryContext,
													 error ? error : "the OAuth refresh was answered invalid_grant");
		hs_conn_token_fail(c->name, psprintf("the connection is disconnected: %s", c->disconnected_reason));
		ereport(LOG,
				(errmsg("hubspot_events worker: the connection \"%s\" is disconnected: %s", c->name, c->disconnected_reason),
				 errdetail("Its rows wait; nothing is sent through it until connect_oauth() connects it again. The other connections go on.")));
	}
	else
	{
		c->turn_hold = MemoryContextStrdup(turn_cxt, error ? error : "the OAuth refresh failed");
		hs_conn_token_fail(c->name, c->turn_hold);
	}
	explicit_bzero(c->refresh_token, strlen(c->refresh_token));
	pfree(c->refresh_token);
	c->refresh_token = NULL;
}
