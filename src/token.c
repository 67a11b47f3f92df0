/*-------------------------------------------------------------------------
 *
 * token.c
 *	  The HubSpot access token, read from the file named by
 *	  hubspot_events.access_token_file.
 *
 * The token is read on first use, and again after a settings reload or when
 * the file changes (its identity, size or times differ), so that a rotated
 * token is picked up without a restart.  It is kept in TopMemoryContext and
 * never appears in a log line, an error message or a table: errors name the
 * setting and the path, never the contents.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "pgstat.h"

#include "utils/timestamp.h"

#include "storage/latch.h"

#include "miscadmin.h"

#include <sys/stat.h>

/* the access token file's token, as last read */
static HsSecretFileCache file_token;

/*
 * The access token to send: OAuth's when hubspot_events.oauth_client_id is
 * set (see oauth.c), else the token file's.  Throws when none is
 * configured, the OAuth settings are incomplete, or a file cannot be used.
 */
const char *
hs_get_access_token(void)
{
	const char *path = hs_access_token_file;

	/* OAuth, when configured, takes precedence over the static token file */
	hs_oauth_check_settings();
	if (hs_oauth_enabled())
	{
		hs_secret_file_forget(&file_token);
		return hs_oauth_access_token();
	}

	if (path == NULL || path[0] == '\0')
	{
		hs_secret_file_forget(&file_token);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no HubSpot access token is configured"),
				 errhint("Set hubspot_events.access_token_file to the path of a file holding the token, then reload the configuration.")));
	}

	return hs_secret_file_cached(&file_token, "access_token_file", "access token",
								 "an access token", path);
}

/*
 * An OAuth connection's access token for a call from this session: the one
 * the worker shares (conn_tokens.c).  When there is none, or it expires
 * within a minute, the worker is asked for one and waited for, up to
 * hubspot_events.request_timeout_ms; its reason for having none is the
 * call's ERROR.
 */
static const char *
oauth_connection_token(const char *conn)
{
	char		buf[HS_CONN_OAUTH_TOKEN_MAX];
	char		problem[256];
	bool		asked = false;
	TimestampTz deadline = GetCurrentTimestamp() + (TimestampTz) hs_request_timeout_ms * 1000;

	if (!hs_conn_tokens_available() || !hs_shared_worker_running())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the OAuth connection \"%s\" needs the hubspot_events worker, which is not running", conn),
				 errhint("The worker refreshes the OAuth connections' tokens: load hubspot_events in shared_preload_libraries.")));
	for (;;)
	{
		if (hs_conn_token_copy(conn, 60000, buf, sizeof(buf), problem, sizeof(problem)))
		{
			char	   *token = pstrdup(buf);

			explicit_bzero(buf, sizeof(buf));
			return token;
		}
		if (asked && problem[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_HS_TOKEN_ENDPOINT),
					 errmsg("no OAuth access token for the connection \"%s\": %s", conn, problem)));
		if (!asked)
		{
			hs_conn_token_want(conn);
			hs_wake_now();
			asked = true;
		}
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_HS_TIMEOUT),
					 errmsg("the worker did not refresh the OAuth connection \"%s\"'s token within hubspot_events.request_timeout_ms (%d ms)",
							conn, hs_request_timeout_ms)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The access token of a connection for a call from this session: the
 * server's settings' (hs_get_access_token) for the default (conn NULL),
 * else the connection's token file, read at each call.  The token is
 * palloc'd in the caller's context for a connection's file.
 */
const char *
hs_connection_access_token(const char *conn)
{
	char		auth;
	char	   *path;
	struct stat st;

	if (conn == NULL)
		return hs_get_access_token();
	path = hs_connection_credential(conn, &auth);
	if (auth == HS_AUTH_OAUTH)
		return oauth_connection_token(conn);
	if (path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the connection \"%s\" has no token file", conn)));
	return hs_read_secret_file("connection_secrets.token_file", "access token", "an access token",
							   path, &st, CurrentMemoryContext);
}
