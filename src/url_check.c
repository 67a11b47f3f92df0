/*-------------------------------------------------------------------------
 *
 * url_check.c
 *	  Which URLs may receive a secret: the API base URL and the OAuth token
 *	  URL are checked with it when they are set (init.c's check hooks).
 *	  https anywhere; http only to a loopback host; no credentials, query or
 *	  fragment.  Parsed with libcurl's URL parser, as the request will be.
 *	  And the settings that decide where a secret goes or how the peer is
 *	  checked (these URLs, the CA file) whose configured value was refused
 *	  at start: no request goes until a reload fixes them.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "miscadmin.h"

/*
 * Settings whose value in the configuration file was refused when the
 * server started.  PostgreSQL only warns then and keeps the default, which
 * for these is not a safe stand-in: the system's CA bundle instead of the
 * CA file named, HubSpot's own endpoints instead of the ones named.  The
 * requests refuse to go (hs_settings_refused()) until a reload brings a
 * value the check accepts.  Set in the postmaster only (its children
 * inherit it); cleared in any process whose check accepts a value.
 */
static const char *const refusable[HS_REFUSED_SETTINGS] = {
	"hubspot_events.ca_file", "hubspot_events.api_base_url", "hubspot_events.oauth_token_url"
};
static bool refused[lengthof(refusable)];

/* a check hook's verdict on setting "which" (HS_REFUSED_...), noted; returns ok */
bool
hs_note_setting_check(int which, bool ok, GucSource source)
{
	if (ok)
		refused[which] = false;
	else if (!IsUnderPostmaster && source == PGC_S_FILE)
		refused[which] = true;
	return ok;
}

/* The first setting whose configured value was refused at start, or NULL. */
const char *
hs_settings_refused(void)
{
	for (int i = 0; i < lengthof(refusable); i++)
		if (refused[i])
			return refusable[i];
	return NULL;
}

static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char		buf[64];
	size_t		len = strlen(host);

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	/* libcurl gives IPv6 hosts in brackets */
	if (len > 2 && len < sizeof(buf) && host[0] == '[' && host[len - 1] == ']')
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) == 1)
			return IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return false;
}

/*
 * Whether a base URL may receive the token: https anywhere, http only on a
 * loopback host; no credentials, query or fragment.  Never throws (it runs
 * in a GUC check hook); *reason is palloc'd.
 */
bool
hs_url_is_acceptable(const char *url, char **reason)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *part = NULL;
	bool		ok = false;

	*reason = NULL;
	if (u == NULL)
	{
		*reason = pstrdup("Out of memory while parsing the URL.");
		return false;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
	{
		*reason = pstrdup("The value is not a valid absolute URL.");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
	{
		*reason = pstrdup("The URL has no scheme or no host.");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK)
	{
		*reason = pstrdup("The URL must not contain a user name or password.");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK)
	{
		*reason = pstrdup("The URL must not contain a query.");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
	{
		*reason = pstrdup("The URL must not contain a fragment.");
		goto done;
	}
	if (pg_strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (pg_strcasecmp(scheme, "http") == 0)
	{
		if (host_is_loopback(host))
			ok = true;
		else
			*reason = psprintf("http:// is accepted only for loopback hosts, not for \"%s\": the token would cross the network unencrypted.", host);
	}
	else
		*reason = psprintf("The scheme \"%s\" is not supported.", scheme);

done:
	curl_free(part);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}
