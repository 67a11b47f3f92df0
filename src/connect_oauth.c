/*-------------------------------------------------------------------------
 *
 * connect_oauth.c
 *	  hubspot_events.connect_oauth(name, code, redirect_uri): the end of
 *	  HubSpot's OAuth install flow, from SQL.
 *
 * The platform's redirect handler hands over the one-time authorization
 * code HubSpot sent to its redirect URL.  The code is exchanged at the token
 * endpoint (oauth.c) with the app's client id and secret from the server's
 * settings; the refresh token of the answer is sealed (secret_box.c) and
 * stored (connection_secret.c) with the connection's row, which is
 * returned.  The refresh token never passes through SQL: it is in no query
 * text, no log line, no result and no table in clear.  The access token of
 * the answer is wiped unused: the worker refreshes on first use.
 *
 * Everything that can refuse the call without HubSpot is checked before the
 * code is spent: the key (hubspot_events.secret_key_file), the app's
 * settings, the arguments, a name taken by another kind of connection.
 *
 * The function is not SECURITY DEFINER: the calling role (granted EXECUTE
 * by a DBA) needs no privilege on the connections' tables, which are
 * written with their owner's rights (connection_secret.c), as the outbox is
 * written on an enqueuer's behalf.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "utils/builtins.h"

/* an authorization code is short (HubSpot's are UUIDs); anything longer is not one */
#define HS_CODE_MAX_BYTES			2048
#define HS_REDIRECT_URI_MAX_BYTES	2048
#define HS_CONNECTION_NAME_MAX_BYTES 63

PG_FUNCTION_INFO_V1(hubspot_connect_oauth);

/*
 * Text argument i, not empty and at most max_bytes long (22023 naming it);
 * the length is checked on the datum as passed, before it is detoasted or
 * copied.
 */
static char *
text_argument(FunctionCallInfo fcinfo, int i, const char *argname, Size max_bytes)
{
	Size		len = toast_raw_datum_size(PG_GETARG_DATUM(i)) - VARHDRSZ;

	if (len == 0 || len > max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 len == 0 ? errmsg("%s must not be empty", argname) :
				 errmsg("%s is too long (%zu bytes; the limit is %zu bytes)",
						argname, (size_t) len, (size_t) max_bytes)));
	return text_to_cstring(PG_GETARG_TEXT_PP(i));
}

static bool
visible_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return false;
	return true;
}

/*
 * A connection's name: the rule of connections.name's CHECK (a letter or
 * digit, then letters, digits and _ . : @ -, at most 63 bytes), and not
 * "default" (the server's settings).  22023 naming it.
 */
static char *
name_argument(FunctionCallInfo fcinfo, int i)
{
	char	   *name = text_argument(fcinfo, i, "name", HS_CONNECTION_NAME_MAX_BYTES);
	bool		ok = true;

	for (const char *p = name; ok && *p; p++)
		ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			(p > name && strchr("_.:@-", *p) != NULL);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name \"%s\" is not a valid connection name", name),
				 errdetail("A connection's name starts with a letter or digit, followed by letters, digits and the characters _ . : @ -, at most %d bytes.",
						   HS_CONNECTION_NAME_MAX_BYTES)));
	if (strcmp(name, "default") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the connection \"default\" cannot be connected with OAuth"),
				 errdetail("It is the credential the server's settings describe (hubspot_events.access_token_file or the OAuth settings)."),
				 errhint("Give the HubSpot account a connection name of its own.")));
	return name;
}

/* The authorization code: visible ASCII; never shown. */
static char *
code_argument(FunctionCallInfo fcinfo, int i)
{
	char	   *code = text_argument(fcinfo, i, "code", HS_CODE_MAX_BYTES);

	if (!visible_ascii(code))
	{
		explicit_bzero(code, strlen(code));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("code is not an authorization code"),
				 errdetail("An authorization code is made of visible ASCII characters only.")));
	}
	return code;
}

/* The redirect_uri the code was issued for: an absolute http(s) URL. */
static char *
redirect_uri_argument(FunctionCallInfo fcinfo, int i)
{
	char	   *uri = text_argument(fcinfo, i, "redirect_uri", HS_REDIRECT_URI_MAX_BYTES);

	if (!visible_ascii(uri))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("redirect_uri is not a valid URL"),
				 errdetail("It contains a character that is not visible ASCII (a URL carries others percent-encoded).")));
	if (pg_strncasecmp(uri, "https://", 8) != 0 && pg_strncasecmp(uri, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("redirect_uri \"%s\" is not an absolute http or https URL", uri),
				 errhint("Pass the redirect URL of the HubSpot app exactly as it appeared in the install link.")));
	return uri;
}

/*
 * connect_oauth(name text, code text, redirect_uri text) RETURNS connections
 *
 * Exchange the authorization code for the installing account's tokens,
 * store its refresh token sealed as connection name's (a new OAuth
 * connection, or one connected again: its refresh token replaced and its
 * state active again), and return the connection's row.
 */
Datum
hubspot_connect_oauth(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"name", "code", "redirect_uri"};
	char	   *name;
	char	   *volatile code = NULL;
	char	   *redirect_uri;
	HsOAuthGrant *grant = palloc0(sizeof(HsOAuthGrant));
	Datum		row = (Datum) 0;

	hs_check_not_null(fcinfo, argnames, 3);

	/* everything that can refuse without HubSpot, before the code is spent */
	hs_secret_require_key();
	hs_oauth_check_client();
	name = name_argument(fcinfo, 0);
	redirect_uri = redirect_uri_argument(fcinfo, 2);
	code = code_argument(fcinfo, 1);
	PG_TRY();
	{
		hs_connection_check_oauth_name(name);

		hs_oauth_code_grant(code, redirect_uri, grant);
		explicit_bzero(code, strlen(code));
		/* unused: the worker refreshes when it first sends through the connection */
		explicit_bzero(grant->access_token, strlen(grant->access_token));
		if (grant->refresh_token == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_HS_TOKEN_ENDPOINT),
					 errmsg("the OAuth token endpoint granted the authorization code without a refresh token"),
					 errdetail("Without a refresh token the connection could not send once the access token expires."),
					 errhint("Check hubspot_events.oauth_token_url: it must be HubSpot's token endpoint.")));

		row = hs_connection_save_oauth(name, grant->hub_id, grant->refresh_token);
	}
	PG_FINALLY();
	{
		explicit_bzero(code, strlen(code));
		hs_oauth_grant_wipe(grant);
	}
	PG_END_TRY();

	/* a disconnected connection's waiting rows may go: the worker looks at commit */
	hs_wake_at_commit();
	PG_RETURN_DATUM(row);
}
