/*-------------------------------------------------------------------------
 *
 * hold.c
 *	  A hold on a configuration fault (a 401, a 403 for missing scopes, an
 *	  OAuth refresh refused): the queue's (worker.c) or one connection's
 *	  (worker_connections.c), and what ends it.
 *
 * Held, nothing is sent and rows keep their attempts.  A hold is tried
 * again when the configuration is reloaded, when the file whose change can
 * mend it (the token file, or the refresh token's) is no longer the one
 * seen when it began, or after a while; the caller's request then tells
 * whether the fault is still there.  The callers log and tell listeners.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "utils/timestamp.h"

/* file: the file whose change ends the hold (NULL or "": none) */
static bool
file_stat(const char *file, struct stat *st)
{
	return file && file[0] && stat(file, st) == 0;
}

/*
 * Hold for reason; *was_held says whether it was held already, *new_reason
 * whether reason differs from the last hold's (held now or not).
 */
void
hs_hold_set(HsHold *h, const char *reason, const char *file, bool *was_held, bool *new_reason)
{
	*was_held = h->held;
	*new_reason = strncmp(h->reason, reason, sizeof(h->reason) - 1) != 0;
	h->held = true;
	strlcpy(h->reason, reason, sizeof(h->reason));
	h->since = GetCurrentTimestamp();
	h->generation = hs_settings_generation;
	h->file_seen = file_stat(file, &h->file_st);
}

/*
 * Whether sending may be tried (again): not held, or held and the
 * configuration reloaded since, file changed (or appeared, or went), or
 * HS_HOLD_RETRY_MS passed.  A hold that ends is cleared, and true is returned once
 * with *ended set, for the caller to say so.
 */
bool
hs_hold_try(HsHold *h, const char *file, bool *ended)
{
	struct stat st;
	bool		seen;

	*ended = false;
	if (!h->held)
		return true;
	seen = file_stat(file, &st);
	if (hs_settings_generation != h->generation ||
		seen != h->file_seen ||
		(seen && !hs_same_file(&st, &h->file_st)) ||
		TimestampDifferenceExceeds(h->since, GetCurrentTimestamp(), HS_HOLD_RETRY_MS))
	{
		h->held = false;
		*ended = true;
		return true;
	}
	return false;
}
