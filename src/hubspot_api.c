/*-------------------------------------------------------------------------
 *
 * hubspot_api.c
 *	  HubSpot's Marketing Events API: which version is spoken, and the URL
 *	  of every call the extension makes.  No other file names a HubSpot path.
 *
 * HubSpot's REST APIs are date-versioned since 2026-03: a call's path is
 *
 *	  /marketing/marketing-events/{version}/<route>	 (version 2026-03, 2026-09, ...)
 *	  /marketing/v3/marketing-events/<route>		 (the legacy v3 paths)
 *
 * and the <route>, the bodies, the query parameters and the answers are the
 * same in both forms for every call made here.  hubspot_events.api_version
 * picks the form; it is read when a request is built, so the direct
 * functions use the session's value and the worker its own (the server's,
 * after a reload).
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "utils/guc.h"

/* the first date version HubSpot published */
#define HS_FIRST_DATE_VERSION_YEAR	2026
#define HS_FIRST_DATE_VERSION_MONTH	3

/*
 * Whether text is an API version HubSpot can serve: "v3", or a date version
 * "YYYY-MM" from 2026-03 on whose month is one HubSpot releases in (03 or 09).
 */
bool
hs_api_version_is_valid(const char *text)
{
	int			year;
	int			month;

	if (strcmp(text, "v3") == 0)
		return true;
	if (strlen(text) != 7 || text[4] != '-')
		return false;
	for (int i = 0; i < 7; i++)
	{
		if (i != 4 && (text[i] < '0' || text[i] > '9'))
			return false;
	}
	year = atoi(text);
	month = atoi(text + 5);
	if (month != 3 && month != 9)
		return false;
	return year > HS_FIRST_DATE_VERSION_YEAR ||
		(year == HS_FIRST_DATE_VERSION_YEAR && month >= HS_FIRST_DATE_VERSION_MONTH);
}

/* check hook of hubspot_events.api_version */
bool
hs_check_api_version(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || hs_api_version_is_valid(*newval))
		return true;
	GUC_check_errdetail("\"%s\" is not a HubSpot API version.", *newval);
	GUC_check_errhint("Use a date version from 2026-03 on, YYYY-03 or YYYY-09 (such as 2026-09), "
					  "or v3 for the legacy /marketing/v3/ paths.");
	return false;
}

/* The API version requests are built for now (hubspot_events.api_version). */
const char *
hs_api_version_in_use(void)
{
	return (hs_api_version && hs_api_version[0]) ? hs_api_version : HS_API_VERSION_DEFAULT;
}

/*
 * Where every call of the version in use starts: the base URL without
 * trailing slashes, then the version's prefix (palloc'd).
 */
char *
hs_api_root(void)
{
	char	   *base = pstrdup(hs_api_base_url ? hs_api_base_url : "");
	size_t		len = strlen(base);
	const char *version = hs_api_version_in_use();

	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	if (strcmp(version, "v3") == 0)
		return psprintf("%s/marketing/v3/marketing-events", base);
	return psprintf("%s/marketing/marketing-events/%s", base, version);
}

/* The call that records a subscriber state, by the contacts' kind and the endpoint setting. */
HsApiCall
hs_subscriber_call(bool by_email, bool attendance)
{
	if (attendance)
		return by_email ? HS_CALL_ATTENDANCE_EMAIL_CREATE : HS_CALL_ATTENDANCE_CREATE;
	return by_email ? HS_CALL_SUBSCRIBER_EMAIL_UPSERT : HS_CALL_SUBSCRIBER_UPSERT;
}

/*
 * The URL of one call, under root (hs_api_root()).  event_id, state and
 * account_id are used where the call has them (NULL otherwise).  Every path
 * segment and the query value are percent-encoded, whatever they hold (the
 * state too: the worker's comes from a row, which anyone who may update the
 * outbox can edit).
 */
char *
hs_api_url(const char *root, HsApiCall call, const char *event_id, const char *state,
		   const char *account_id)
{
	const char *collection = "events";
	const char *action = NULL;

	switch (call)
	{
		case HS_CALL_EVENT_UPSERT:
			return psprintf("%s/events/upsert", root);
		case HS_CALL_EVENT_CANCEL:
		case HS_CALL_EVENT_COMPLETE:
			return psprintf("%s/events/%s/%s?externalAccountId=%s", root, hs_url_escape(event_id),
							call == HS_CALL_EVENT_CANCEL ? "cancel" : "complete",
							hs_url_escape(account_id));
		case HS_CALL_SUBSCRIBER_UPSERT:
			action = "upsert";
			break;
		case HS_CALL_SUBSCRIBER_EMAIL_UPSERT:
			action = "email-upsert";
			break;
		case HS_CALL_ATTENDANCE_CREATE:
			collection = "attendance";
			action = "create";
			break;
		case HS_CALL_ATTENDANCE_EMAIL_CREATE:
			collection = "attendance";
			action = "email-create";
			break;
	}
	Assert(action != NULL);
	return psprintf("%s/%s/%s/%s/%s?externalAccountId=%s", root, collection,
					hs_url_escape(event_id), hs_url_escape(state), action,
					hs_url_escape(account_id));
}
