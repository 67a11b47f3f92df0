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

#include <sys/stat.h>
#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"
#include "pgtime.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *hs_api_base_url = NULL;
char	   *hs_access_token_file = NULL;
int			hs_request_timeout_ms = 30000;
int			hs_batch_size = 100;
int			hs_endpoint = HS_ENDPOINT_UPSERT;
char	   *hs_api_version = NULL;
bool		hs_dry_run = false;
int			hs_progress_notice_ms = 5000;

static const struct config_enum_entry endpoint_options[] = {
	{"upsert", HS_ENDPOINT_UPSERT, false},
	{"attendance", HS_ENDPOINT_ATTENDANCE, false},
	{NULL, 0, false}
};
char	   *hs_database = NULL;
char	   *hs_databases = NULL;
int			hs_max_databases = 16;
int			hs_poll_interval_ms = 1000;
int			hs_max_concurrency = 4;
int			hs_max_attempts = 10;
int			hs_retry_base_ms = 1000;
int			hs_retry_max_ms = 300000;
int			hs_sent_retention_s = 7 * 24 * 3600;
int			hs_vacuum_after = 10000;
int			hs_rate_limit = 100;
int			hs_rate_limit_interval_ms = 10000;
char	   *hs_daily_reset_time = NULL;
char	   *hs_ca_file = NULL;
char	   *hs_oauth_client_id = NULL;
char	   *hs_oauth_client_secret_file = NULL;
char	   *hs_oauth_refresh_token_file = NULL;
char	   *hs_oauth_token_url = NULL;
char	   *hs_secret_key_file = NULL;

uint64		hs_settings_generation = 0;

static bool
check_api_base_url_impl(char **newval, void **extra, GucSource source)
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

static bool
check_database_name(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The database name must not be empty.");
		return false;
	}
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("The database name is longer than %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/* hubspot_events.databases: empty, "*", or a list of names (shared.c reads it) */
static bool
check_database_list(char **newval, void **extra, GucSource source)
{
	bool		all;
	char	   *error;

	if (!hs_parse_database_list(*newval, &all, NULL, &error))
	{
		GUC_check_errdetail("%s", error);
		GUC_check_errhint("Name the databases, as in 'appdb, \"Tenant A\"', or write '*' for every database that allows connections.");
		return false;
	}
	return true;
}

static bool
check_daily_reset_time(char **newval, void **extra, GucSource source)
{
	int			hh,
				mm;
	char		zone[256];

	if (!hs_parse_daily_reset_time(*newval, &hh, &mm, zone, sizeof(zone)))
	{
		GUC_check_errdetail("The value must be a time of day and an IANA time zone, such as \"00:00 America/New_York\".");
		return false;
	}
	if (pg_tzset(zone) == NULL)
	{
		GUC_check_errdetail("The time zone \"%s\" is not known.", zone);
		return false;
	}
	return true;
}

/*
 * ca_file: empty (the system's CA bundle), or a readable regular file that
 * holds at least one PEM certificate.  The check reads the file but never
 * repeats any of its content: a superuser who names the token file by
 * mistake gets "no PEM certificate", not the token.
 */
static bool
check_ca_file_impl(char **newval, void **extra, GucSource source)
{
	struct stat st;
	FILE	   *f;
	char		buf[4096];
	size_t		n;
	bool		found = false;
	size_t		keep = 0;
	static const char marker[] = "-----BEGIN CERTIFICATE-----";

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* empty: the system's CA bundle */
	for (const char *p = *newval; *p; p++)
	{
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The path contains a control character.");
			return false;
		}
	}
	if (stat(*newval, &st) != 0)
	{
		GUC_check_errdetail("The file \"%s\" cannot be used: %m.", *newval);
		return false;
	}
	if (!S_ISREG(st.st_mode))
	{
		GUC_check_errdetail("\"%s\" is not a regular file.", *newval);
		return false;
	}
	f = fopen(*newval, "r");
	if (f == NULL)
	{
		GUC_check_errdetail("The file \"%s\" cannot be read: %m.", *newval);
		GUC_check_errhint("The file must be readable by the operating-system user the server runs as.");
		return false;
	}
	/* look for the PEM marker, also across two reads */
	while (!found && (n = fread(buf + keep, 1, sizeof(buf) - 1 - keep, f)) > 0)
	{
		size_t		len = keep + n;

		buf[len] = '\0';
		/* a NUL byte in the data only ends this search early: no harm */
		found = strstr(buf, marker) != NULL;
		keep = Min(len, sizeof(marker) - 2);
		memmove(buf, buf + len - keep, keep);
	}
	explicit_bzero(buf, sizeof(buf));
	fclose(f);
	if (!found)
	{
		GUC_check_errdetail("The file \"%s\" holds no PEM certificate (\"%s\").", *newval, marker);
		GUC_check_errhint("Name a file of PEM-encoded CA certificates, or leave the setting empty to use the system's CA bundle.");
		return false;
	}
	return true;
}

/* An OAuth client id: visible ASCII, as it goes into a form field. */
static bool
check_oauth_client_id(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* empty: OAuth is not used */
	if (strlen(*newval) > HS_OAUTH_CLIENT_ID_MAX)
	{
		GUC_check_errdetail("The client id is longer than %d bytes.", HS_OAUTH_CLIENT_ID_MAX);
		return false;
	}
	for (const char *p = *newval; *p; p++)
	{
		if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
		{
			GUC_check_errdetail("The client id contains a character that is not visible ASCII.");
			return false;
		}
	}
	return true;
}

static bool
check_oauth_token_url_impl(char **newval, void **extra, GucSource source)
{
	char	   *reason = NULL;

	if (*newval == NULL)
		return true;			/* only the boot value can be NULL */
	if (strlen(*newval) > HS_OAUTH_URL_MAX)
	{
		GUC_check_errdetail("The URL is longer than %d bytes.", HS_OAUTH_URL_MAX);
		return false;
	}
	if (!hs_url_is_acceptable(*newval, &reason))
	{
		GUC_check_errdetail("%s", reason);
		GUC_check_errhint("Use an https:// URL such as " HS_OAUTH_TOKEN_URL_DEFAULT "; http:// is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost).");
		return false;
	}
	return true;
}

/*
 * secret_key_file: empty (no key: connect_oauth refuses), or an absolute
 * path outside the data directory.  A key inside the data directory would
 * travel with every base backup and file copy of it, beside the secrets it
 * protects.  The file itself is read when a secret is sealed or opened
 * (secret_box.c), never here: the check repeats nothing of its content.
 */
static bool
check_secret_key_file(char **newval, void **extra, GucSource source)
{
	char		path[MAXPGPATH];
	size_t		dlen;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* empty: no key */
	if (!check_access_token_file(newval, extra, source))
		return false;
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("The path \"%s\" is not absolute.", *newval);
		GUC_check_errhint("Name the key file by its absolute path, outside the data directory.");
		return false;
	}
	if (strlen(*newval) >= MAXPGPATH)
	{
		GUC_check_errdetail("The path is longer than %d bytes.", MAXPGPATH - 1);
		return false;
	}
	strlcpy(path, *newval, sizeof(path));
	canonicalize_path(path);
	dlen = DataDir ? strlen(DataDir) : 0;
	if (dlen > 0 && strncmp(path, DataDir, dlen) == 0 && (path[dlen] == '/' || path[dlen] == '\0'))
	{
		GUC_check_errdetail("The path \"%s\" is inside the data directory, which base backups copy.", *newval);
		GUC_check_errhint("Keep the key file outside the data directory, so that a backup of the data does not carry the key to its secrets.");
		return false;
	}
	return true;
}

static bool
check_api_base_url(char **newval, void **extra, GucSource source)
{
	return hs_note_setting_check(HS_REFUSED_API_BASE_URL, check_api_base_url_impl(newval, extra, source), source);
}

static bool
check_ca_file(char **newval, void **extra, GucSource source)
{
	return hs_note_setting_check(HS_REFUSED_CA_FILE, check_ca_file_impl(newval, extra, source), source);
}

static bool
check_oauth_token_url(char **newval, void **extra, GucSource source)
{
	return hs_note_setting_check(HS_REFUSED_OAUTH_URL, check_oauth_token_url_impl(newval, extra, source), source);
}

/* the postmaster's value is the server's: oauth.c keeps it in shared memory */
static void
assign_request_timeout(int newval, void *extra)
{
	hs_oauth_request_timeout_assigned(newval);
}

static void
assign_bump_generation(const char *newval, void *extra)
{
	hs_settings_generation++;
}

/*
 * The background worker, registered while the postmaster loads the library
 * (shared_preload_libraries); its main function is worker.c's.
 */
void
hs_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* from consistent state, so that it idles on a hot standby and resumes after promotion */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "hubspot_events", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "hubspot_events_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "hubspot_events worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "hubspot_events worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Instead of the static worker when hubspot_events.databases is set: the
 * launcher (launcher.c), which starts a worker per database.
 */
void
hs_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "hubspot_events", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "hubspot_events_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "hubspot_events launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "hubspot_events launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
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
							NULL, assign_request_timeout, NULL);

	DefineCustomIntVariable("hubspot_events.batch_size",
							"Largest number of contacts sent in one request.",
							"More contacts are sent as several requests, in order.",
							&hs_batch_size,
							100, 1, 1000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("hubspot_events.endpoint",
							 "Which HubSpot endpoints record subscriber states.",
							 "upsert: .../events/{id}/{state}/upsert and email-upsert (the default); "
							 "attendance: .../attendance/{id}/{state}/create and email-create, their announced successors.",
							 &hs_endpoint,
							 HS_ENDPOINT_UPSERT, endpoint_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("hubspot_events.api_version",
							   "Which version of HubSpot's API requests are made in.",
							   "A date version, YYYY-03 or YYYY-09 from 2026-03 on (HubSpot's date-versioned paths), "
							   "or v3 (HubSpot's legacy v3 paths).",
							   &hs_api_version,
							   HS_API_VERSION_DEFAULT,
							   PGC_USERSET,
							   0,
							   hs_check_api_version, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.progress_notice_ms",
							"How often backfill() reports its progress in a NOTICE.",
							"0: after every batch.",
							&hs_progress_notice_ms,
							5000, 0, 3600000,
							PGC_USERSET,
							0,	/* no unit: backfill() reads the number */
							NULL, NULL, NULL);

	DefineCustomBoolVariable("hubspot_events.dry_run",
							 "Build every request but send none.",
							 "The worker claims, coalesces, orders, validates, builds and paces each request, "
							 "then records its rows sent with dry_run = true and the request it would have made; "
							 "the direct functions return the requests they would send.  "
							 "replay_dry_run() sends the dry-run rows for real.",
							 &hs_dry_run,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * A PGC_POSTMASTER setting can only be defined while the postmaster
	 * loads the library (shared_preload_libraries); it only matters to the
	 * worker, which exists only then.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("hubspot_events.database",
								   "Database whose outbox the background worker drains.",
								   NULL,
								   &hs_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   check_database_name, NULL, NULL);

	DefineCustomStringVariable("hubspot_events.databases",
							   "Databases served by a worker each, started by a launcher: a list of names, or * for every database.",
							   "Names are separated by commas (double-quote a name with capitals, spaces or commas); "
							   "* is every database that allows connections, templates excepted; a worker exits "
							   "where the extension is not installed and is tried again later. "
							   "Empty: the one worker serves hubspot_events.database. "
							   "Setting it where it was empty, or emptying it, needs a restart; a reload "
							   "changes the databases the launcher serves.",
							   &hs_databases,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_database_list, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("hubspot_events.max_databases",
								"Largest number of databases served at once with hubspot_events.databases.",
								"Each has a worker (a background worker process: max_worker_processes must "
								"leave room for them and the launcher) and a slot of shared memory.",
								&hs_max_databases,
								16, 1, 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.poll_interval_ms",
							"Longest time the worker sleeps before looking for due retries.",
							"The worker is woken at once when a transaction that enqueued commits; this is the fallback.",
							&hs_poll_interval_ms,
							1000, 10, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.max_concurrency",
							"Largest number of requests the worker has in flight at once.",
							NULL,
							&hs_max_concurrency,
							4, 1, 64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.max_attempts",
							"Attempts after which a row that keeps failing is marked failed.",
							NULL,
							&hs_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.retry_base_ms",
							"Wait before the first retry; it doubles with every attempt.",
							NULL,
							&hs_retry_base_ms,
							1000, 1, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.retry_max_ms",
							"Longest wait between two attempts.",
							NULL,
							&hs_retry_max_ms,
							300000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.sent_retention",
							"Age after which the worker deletes sent rows; 0 keeps them.",
							NULL,
							&hs_sent_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.vacuum_after",
							"Rows the worker claims before it vacuums the outbox, once no row is due; 0 leaves it to autovacuum.",
							"Until the outbox is vacuumed, every claim steps over the old versions of the rows claimed before it.",
							&hs_vacuum_after,
							10000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.rate_limit",
							"Largest number of requests the worker starts per rate_limit_interval_ms.",
							"HubSpot allows 100 (Free/Starter) to 250 requests per 10 s per app; "
							"a lower X-HubSpot-RateLimit-Max from HubSpot takes precedence.",
							&hs_rate_limit,
							100, 1, 4096,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hubspot_events.rate_limit_interval_ms",
							"The rolling window of hubspot_events.rate_limit.",
							NULL,
							&hs_rate_limit_interval_ms,
							10000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("hubspot_events.daily_reset_time",
							   "When HubSpot's daily limit resets: a time of day and an IANA time zone.",
							   "HubSpot resets the daily limit at midnight in the account's time zone.",
							   &hs_daily_reset_time,
							   "00:00 UTC",
							   PGC_SIGHUP,
							   0,
							   check_daily_reset_time, NULL, NULL);

	/*
	 * The CA bundle HubSpot's certificate is verified with.  There is no
	 * setting that turns verification off: only which CAs are trusted can
	 * change, and only in postgresql.conf.
	 */
	DefineCustomStringVariable("hubspot_events.ca_file",
							   "File of PEM CA certificates that HubSpot's TLS certificate is verified with.",
							   "Empty: the system's CA bundle. Certificate and host name "
							   "verification cannot be turned off.",
							   &hs_ca_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_ca_file, assign_bump_generation, NULL);

	/*
	 * OAuth refresh (see oauth.c).  The secrets are files, never values; the
	 * settings are read from postgresql.conf only, and the file names are
	 * hidden like access_token_file's.
	 */
	DefineCustomStringVariable("hubspot_events.oauth_client_id",
							   "Client id of the HubSpot app whose OAuth tokens are refreshed.",
							   "When set, OAuth refresh is used and hubspot_events.access_token_file is ignored.",
							   &hs_oauth_client_id,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_oauth_client_id, assign_bump_generation, NULL);

	DefineCustomStringVariable("hubspot_events.oauth_client_secret_file",
							   "Path of the file holding the HubSpot app's client secret.",
							   "Surrounding whitespace is ignored. A relative path is relative to the data directory.",
							   &hs_oauth_client_secret_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_access_token_file, assign_bump_generation, NULL);

	DefineCustomStringVariable("hubspot_events.oauth_refresh_token_file",
							   "Path of the file holding the OAuth refresh token.",
							   "Read at the first refresh and when the file changes; a newer refresh token "
							   "from HubSpot is kept in memory only.",
							   &hs_oauth_refresh_token_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_access_token_file, assign_bump_generation, NULL);

	DefineCustomStringVariable("hubspot_events.oauth_token_url",
							   "URL of HubSpot's OAuth token endpoint.",
							   "https is required except for loopback hosts.",
							   &hs_oauth_token_url,
							   HS_OAUTH_TOKEN_URL_DEFAULT,
							   PGC_SIGHUP,
							   0,
							   check_oauth_token_url, assign_bump_generation, NULL);

	/*
	 * The key that seals the connections' refresh tokens (secret_box.c): a
	 * file, never a value, read from postgresql.conf only, its name hidden
	 * like the other secret files'.
	 */
	DefineCustomStringVariable("hubspot_events.secret_key_file",
							   "Path of the file holding the key that seals the connections' OAuth refresh tokens.",
							   "The file holds 32 random bytes as 64 hexadecimal characters (openssl rand -hex 32), "
							   "readable by the server's operating-system user only; an absolute path outside "
							   "the data directory. Empty: hubspot_events.connect_oauth() refuses.",
							   &hs_secret_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_secret_key_file, assign_bump_generation, NULL);

	MarkGUCPrefixReserved("hubspot_events");

	if (process_shared_preload_libraries_in_progress)
	{
		/* hubspot_events.databases at server start: a launcher and a worker per database */
		bool		all;
		List	   *names;
		char	   *error;
		bool		with_launcher;

		with_launcher = hs_parse_database_list(hs_databases, &all, &names, &error) &&
			(all || names != NIL);
		list_free_deep(names);

		hs_shared_init(with_launcher);
		if (with_launcher)
			hs_launcher_install_hooks();
		if (!IsBinaryUpgrade)
		{
			if (with_launcher)
				hs_register_launcher();
			else
				hs_register_worker();
		}
	}

	rc = curl_global_init(CURL_GLOBAL_ALL);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libcurl: %s", curl_easy_strerror(rc))));
}
