/*-------------------------------------------------------------------------
 *
 * init.c
 *	  Loading the library: the settings (GUCs), their check hooks, and
 *	  libcurl's one-time initialisation.
 *
 * Every setting that decides where the company's token is sent, or where it
 * is read from, is PGC_SUSET: only a superuser may change it.  No secret is
 * ever the value of a setting: PostgreSQL logs changed values on reload and
 * shows them in pg_settings/pg_file_settings, so the token lives in a file
 * named by hubspot_events.access_token_file.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *hs_api_base_url = NULL;
char	   *hs_access_token_file = NULL;
int			hs_request_timeout_ms = 30000;
int			hs_batch_size = 100;

uint64		hs_settings_generation = 0;

static bool
check_api_base_url(char **newval, void **extra, GucSource source)
{
	char	   *reason = NULL;

	if (*newval == NULL)
		return true;			/* only the boot value can be NULL */
	if (!hs_url_is_acceptable(*newval, &reason))
	{
		GUC_check_errdetail("%s", reason);
		GUC_check_errhint("Use an https:// URL such as https://api.hubapi.com; http:// is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost).");
		return false;
	}
	return true;
}

static bool
check_access_token_file(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* empty: not configured */
	for (p = *newval; *p; p++)
	{
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The path contains a control character.");
			return false;
		}
	}
	return true;
}

static void
assign_bump_generation(const char *newval, void *extra)
{
	hs_settings_generation++;
}

void
_PG_init(void)
{
	CURLcode	rc;

	DefineCustomStringVariable("hubspot_events.api_base_url",
							   "Base URL of HubSpot's API.",
							   "Requests go to this URL followed by the API path. "
							   "https is required except for loopback hosts.",
							   &hs_api_base_url,
							   "https://api.hubapi.com",
							   PGC_SUSET,
							   0,
							   check_api_base_url, assign_bump_generation, NULL);

	DefineCustomStringVariable("hubspot_events.access_token_file",
							   "Path of the file holding the HubSpot access token.",
							   "The file holds a private-app token or an OAuth access token; "
							   "surrounding whitespace is ignored. A relative path is "
							   "relative to the data directory.",
							   &hs_access_token_file,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY,
							   check_access_token_file, assign_bump_generation, NULL);

	DefineCustomIntVariable("hubspot_events.request_timeout_ms",
							"Time limit for one HTTP request to HubSpot, connection included.",
							NULL,
							&hs_request_timeout_ms,
							30000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.batch_size",
							"Largest number of contacts sent in one request.",
							"More contacts are sent as several requests, in order.",
							&hs_batch_size,
							100, 1, 1000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("hubspot_events");

	rc = curl_global_init(CURL_GLOBAL_ALL);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libcurl: %s", curl_easy_strerror(rc))));
}
