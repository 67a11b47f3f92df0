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

#include <sys/stat.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* a held connection is tried again after this, as the worker's own hold */
#define HS_CONN_HOLD_RETRY_MS 60000

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
		c->pacer = hs_pacer_create(TopMemoryContext, c->is_default);
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
 * The connections with pending rows, each with its earliest next_attempt_at
 * (*next_ms: ms from now, <= 0 when due) and what the connections table says
 * of it, read in the caller's transaction (the claim's).  A List of HsConn
 * (the worker's entries, updated); c->exists is false for a connection the
 * table does not have (dropped: its rows fail with CONNECTION_DROPPED).
 */
List *
hs_conn_load_pending(void)
{
	static SPIPlanPtr plan = NULL;
	List	   *result = NIL;
	TimestampTz now = GetCurrentTimestamp();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT p.connection, p.next_attempt_at, c.name IS NOT NULL, c.auth, c.state,"
						   "       c.hub_id, c.rate_limit, c.rate_limit_interval_ms, s.token_file"
						   "  FROM " HS_SCHEMA ".pending_connections() p"
						   "  LEFT JOIN " HS_SCHEMA ".connections c"
						   "         ON c.name OPERATOR(pg_catalog.=) p.connection"
						   "  LEFT JOIN " HS_SCHEMA ".connection_secrets s"
						   "         ON s.connection OPERATOR(pg_catalog.=) p.connection",
						   0, NULL);
		if (plan == NULL)
			elog(ERROR, "could not prepare the connections' query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
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
		d = SPI_getbinval(tup, desc, 2, &isnull);
		c->next_ms = isnull ? 0 : (int64) ((DatumGetTimestampTz(d) - now) / 1000);
		c->exists = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		if (c->exists)
		{
			char	   *auth = SPI_getvalue(tup, desc, 4);
			char	   *state = SPI_getvalue(tup, desc, 5);
			int			limit = 0,
						interval = 0;

			c->auth = (auth && strcmp(auth, "oauth") == 0) ? HS_AUTH_OAUTH :
				(auth && strcmp(auth, "settings") == 0) ? HS_AUTH_SETTINGS : HS_AUTH_TOKEN_FILE;
			c->disconnected = (state && strcmp(state, "disconnected") == 0);
			c->table_held = (state && strcmp(state, "held") == 0);
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
		result = lappend(result, c);
	}
	SPI_finish();
	return result;
}

/* ---- holds ---- */

static bool
token_file_stat(const HsConn *c, struct stat *st)
{
	return c->token_file && c->token_file[0] && stat(c->token_file, st) == 0;
}

/*
 * Hold a connection (not the default: worker.c holds that one): its rows
 * wait, attempts untouched; one log line per reason.  The table says so
 * when the turn's record phase runs hs_conn_record_holds().
 */
void
hs_conn_hold(HsConn *c, const char *reason)
{
	bool		new_reason = strncmp(c->held_reason, reason, sizeof(c->held_reason) - 1) != 0;

	if (!c->held || new_reason)
		ereport(LOG,
				(errmsg("hubspot_events worker: holding the connection \"%s\": %s", c->name, reason),
				 errdetail("Its rows stay pending and their attempts are not counted; the other connections go on."),
				 errhint("Sending through it resumes after its token file changes, the configuration is reloaded, or one minute.")));
	if (!c->held || new_reason)
		c->hold_changed = true;
	c->held = true;
	strlcpy(c->held_reason, reason, sizeof(c->held_reason));
	c->held_since = GetCurrentTimestamp();
	c->held_generation = hs_settings_generation;
	c->held_stat_ok = token_file_stat(c, &c->held_stat);
}

/* Whether a held connection may be tried again; clears the hold when so. */
bool
hs_conn_hold_released(HsConn *c)
{
	struct stat st;
	bool		stat_ok;
	bool		release = false;

	if (!c->held)
		return true;
	stat_ok = token_file_stat(c, &st);
	if (hs_settings_generation != c->held_generation)
		release = true;
	else if (stat_ok != c->held_stat_ok)
		release = true;
	else if (stat_ok &&
			 (st.st_ino != c->held_stat.st_ino || st.st_size != c->held_stat.st_size ||
			  st.st_mtim.tv_sec != c->held_stat.st_mtim.tv_sec ||
			  st.st_mtim.tv_nsec != c->held_stat.st_mtim.tv_nsec))
		release = true;
	else if (TimestampDifferenceExceeds(c->held_since, GetCurrentTimestamp(), HS_CONN_HOLD_RETRY_MS))
		release = true;
	if (release)
	{
		c->held = false;
		ereport(LOG, (errmsg("hubspot_events worker: trying the held connection \"%s\" again", c->name)));
	}
	return release;
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
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	const char *state;

	if (c->is_default)
		return;
	if (c->held && c->hold_changed)
		state = "held";
	else if (!c->held && went_through && c->table_held)
		state = "active";
	else
		return;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
		values[2] = CStringGetTextDatum(c->held_reason);
	else
		nulls[2] = 'n';
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the connection's state");
	SPI_finish();

	if (strcmp(state, "held") == 0)
	{
		hs_notify_held(c->name, c->held_reason);
		hs_metrics_add(HS_METRIC_HOLDS, 1);
		c->table_held = true;
	}
	else
	{
		hs_notify_released(c->name);
		c->table_held = false;
	}
	c->hold_changed = false;
}

/* ---- tokens ---- */

/*
 * The token of a connection that is not the default: its token file's
 * content, read again when the file changes.  Throws when it cannot be
 * read (the caller holds the connection with the message).
 */
const char *
hs_conn_token(HsConn *c)
{
	struct stat st;

	if (c->auth == HS_AUTH_OAUTH)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the worker does not send through OAuth connections yet")));
	if (c->token_file == NULL || c->token_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the connection \"%s\" has no token file", c->name)));
	if (c->token != NULL && c->token_generation == hs_settings_generation &&
		c->token_path && strcmp(c->token_path, c->token_file) == 0 &&
		stat(c->token_file, &st) == 0 &&
		st.st_ino == c->token_stat.st_ino && st.st_size == c->token_stat.st_size &&
		st.st_mtim.tv_sec == c->token_stat.st_mtim.tv_sec &&
		st.st_mtim.tv_nsec == c->token_stat.st_mtim.tv_nsec)
		return c->token;
	if (c->token)
	{
		explicit_bzero(c->token, strlen(c->token));
		pfree(c->token);
		c->token = NULL;
	}
	if (c->token_path)
	{
		pfree(c->token_path);
		c->token_path = NULL;
	}
	c->token = hs_read_secret_file("connection_secrets.token_file", "access token", "an access token",
								   c->token_file, &st, TopMemoryContext);
	c->token_path = MemoryContextStrdup(TopMemoryContext, c->token_file);
	c->token_stat = st;
	c->token_generation = hs_settings_generation;
	return c->token;
}
