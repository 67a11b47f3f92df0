/*-------------------------------------------------------------------------
 *
 * pacing.c
 *	  The worker's client-side rate limiter: HubSpot's limits used to the
 *	  full without being exceeded.
 *
 * HubSpot allows a number of requests per rolling window per app (100 to
 * 250 per 10 s) and a number per day, and answers 429 beyond them.  The
 * worker keeps the start times of its recent requests and starts a new one
 * only while fewer than the limit started within the window, so that in
 * steady state it never provokes a 429:
 *
 *	- the limit and window are hubspot_events.rate_limit and
 *	  rate_limit_interval_ms, lowered to X-HubSpot-RateLimit-Max and
 *	  -Interval-Milliseconds when HubSpot sends them (the app's real tier);
 *	- X-HubSpot-RateLimit-Remaining tells how much of the window others
 *	  (other backends, other programs with the same app) used: the limiter
 *	  counts that usage as its own;
 *	- a 429 for the rolling window (TEN_SECONDLY_ROLLING, SECONDLY, or a
 *	  proxy's RATE_LIMITS) pauses the whole sender for the window, or for
 *	  Retry-After when longer; a 429 for the DAILY limit pauses it until
 *	  hubspot_events.daily_reset_time (HubSpot resets at midnight in the
 *	  account's time zone).
 *
 * The state is a pacer per connection (HsPacer: one HubSpot account and
 * credential has its own limits); the connection default's pause and daily
 * figures are also published in shared memory for hubspot_events.status.
 * hubspot_events.rate_limit and rate_limit_interval_ms are replaced by a
 * connection's own (connections.rate_limit, rate_limit_interval_ms).
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <curl/curl.h>

#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "pgtime.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/*
 * The window is stretched by a margin, for clock and network skew: 2% of
 * the window, at least HS_WINDOW_MARGIN_MIN_MS and at most
 * HS_WINDOW_MARGIN_MAX_MS.  On HubSpot's windows (10 s) that is 50 ms, 0.5%
 * of the rate; a fixed 50 ms on a window of 1 s (a limit set in
 * rate_limit_interval_ms) cost 5% of it (docs/benchmarks.md, paced delivery).
 */
#define HS_WINDOW_MARGIN_MIN_MS 10
#define HS_WINDOW_MARGIN_MAX_MS 50
#define HS_WINDOW_MARGIN_SHARE 50	/* 1/50 of the window */
#define HS_MAX_TRACKED 4096
/* the longest Retry-After honoured, in either form: one day */
#define HS_RETRY_AFTER_MAX_MS INT64CONST(86400000)

/* the starts a window shared between databases keeps (HubSpot's limits are at most 250 per window) */
#define HS_SHARED_TRACKED 1024
#define HS_SHARED_WINDOWS 256

/*
 * A rolling window: the recent starts of one HubSpot account's requests
 * (a ring), what HubSpot's headers said of its limit, and its 429 pause.
 * Each pacer has one of its own; pacers of different databases' workers
 * that send to the same account share one in shared memory instead
 * (hs_pacer_share), so that together they keep to the account's limit.
 */
typedef struct HsWindow
{
	uint64		key;			/* shared windows: the account's key (0: free) */
	TimestampTz last_used;		/* shared windows */
	int			cap;			/* the ring's size */
	int			nstarts;
	int			first;
	int			header_limit;	/* 0: HubSpot did not say */
	int			header_interval_ms;
	int64		paused_until_ms;
	int64		starts[FLEXIBLE_ARRAY_MEMBER];	/* ms */
} HsWindow;

#define HS_WINDOW_SIZE(cap) MAXALIGN(offsetof(HsWindow, starts) + sizeof(int64) * (cap))

typedef struct HsSharedWindows
{
	slock_t		mutex;
	char		windows[FLEXIBLE_ARRAY_MEMBER];	/* HS_SHARED_WINDOWS of HS_WINDOW_SIZE(HS_SHARED_TRACKED) */
} HsSharedWindows;

static HsSharedWindows *shared_windows = NULL;

static void record_start(HsWindow *w, int64 t);

/*
 * One connection's pacing (a HubSpot account reached with one credential):
 * its window, its own limit, its daily quota.  The worker keeps one per
 * connection; verify.c one for its reads.
 */
struct HsPacer
{
	HsWindow   *window;			/* own or shared */
	bool		shared;			/* window is in shared memory: under the mutex */
	uint64		shared_key;		/* the account's key of the shared window */
	HsWindow   *own;
	int			rate_limit;		/* the connection's own; 0: hubspot_events.rate_limit */
	int			rate_interval_ms;	/* 0: hubspot_events.rate_limit_interval_ms */

	/*
	 * The daily quota left, as HubSpot last said, within the current daily
	 * period (it only goes down until daily_reset_time).  Answers to
	 * concurrent requests complete in any order, so the smallest figure of
	 * the period wins.
	 */
	int64		daily_remaining;
	int64		daily_limit;
	TimestampTz daily_period_end;
	char		daily_period_setting[128];
};

Size
hs_pacing_shmem_size(void)
{
	return MAXALIGN(offsetof(HsSharedWindows, windows) + HS_SHARED_WINDOWS * HS_WINDOW_SIZE(HS_SHARED_TRACKED));
}

/* In the shared-memory startup hook, under AddinShmemInitLock. */
void
hs_pacing_shmem_init(void)
{
	bool		found;

	shared_windows = ShmemInitStruct("hubspot_events rate windows", hs_pacing_shmem_size(), &found);
	if (!found)
	{
		memset(shared_windows, 0, hs_pacing_shmem_size());
		SpinLockInit(&shared_windows->mutex);
		for (int i = 0; i < HS_SHARED_WINDOWS; i++)
			((HsWindow *) (shared_windows->windows + i * HS_WINDOW_SIZE(HS_SHARED_TRACKED)))->cap = HS_SHARED_TRACKED;
	}
}

/*
 * A new pacer, in cxt.  (The worker publishes the connection default's
 * daily figures for hubspot_events.status.)
 */
HsPacer *
hs_pacer_create(MemoryContext cxt)
{
	HsPacer    *p = MemoryContextAllocZero(cxt, sizeof(HsPacer));

	p->own = MemoryContextAllocZero(cxt, HS_WINDOW_SIZE(HS_MAX_TRACKED));
	p->own->cap = HS_MAX_TRACKED;
	p->window = p->own;
	p->daily_remaining = -1;
	p->daily_limit = -1;
	return p;
}

/* The connection's own limit and window (0: the global settings). */
void
hs_pacer_set_limits(HsPacer *p, int rate_limit, int rate_interval_ms)
{
	p->rate_limit = Max(rate_limit, 0);
	p->rate_interval_ms = Max(rate_interval_ms, 0);
}

/*
 * Pace with the window of the HubSpot account key (its hub id, or a hash
 * of its credential where the hub is unknown), shared with every other
 * database's worker that sends to it; key 0: the pacer's own window.
 * Without shared memory (not preloaded), or with every shared window
 * taken by accounts used in the last minute, the pacer keeps its own.
 */
void
hs_pacer_share(HsPacer *p, uint64 key)
{
	HsWindow   *found = NULL;
	HsWindow   *oldest = NULL;
	TimestampTz now = GetCurrentTimestamp();

	if (key == 0 || shared_windows == NULL)
	{
		p->window = p->own;
		p->shared = false;
		return;
	}
	if (p->shared && p->shared_key == key)
	{
		SpinLockAcquire(&shared_windows->mutex);
		if (p->window->key == key)
		{
			p->window->last_used = now;
			SpinLockRelease(&shared_windows->mutex);
			return;
		}
		SpinLockRelease(&shared_windows->mutex);
		p->window = p->own;
		p->shared = false;
	}
	SpinLockAcquire(&shared_windows->mutex);
	for (int i = 0; i < HS_SHARED_WINDOWS && found == NULL; i++)
	{
		HsWindow   *w = (HsWindow *) (shared_windows->windows + i * HS_WINDOW_SIZE(HS_SHARED_TRACKED));

		if (w->key == key)
			found = w;
		else if (oldest == NULL || w->key == 0 || (oldest->key != 0 && w->last_used < oldest->last_used))
			oldest = w;
	}
	if (found == NULL && oldest != NULL &&
		(oldest->key == 0 || TimestampDifferenceExceeds(oldest->last_used, now, 60000)))
	{
		found = oldest;
		found->key = key;
		found->nstarts = found->first = 0;
		found->header_limit = found->header_interval_ms = 0;
		found->paused_until_ms = 0;
	}
	if (found)
	{
		found->last_used = now;
		/* what this pacer started on its own window still counts in the account's */
		if (!p->shared)
		{
			HsWindow   *own = p->own;
			int64		now_ms_ = now / 1000;

			for (int i = 0; i < own->nstarts; i++)
			{
				int64		t = own->starts[(own->first + i) % own->cap];

				if (t > now_ms_ - 3600000)
					record_start(found, t);
			}
			found->paused_until_ms = Max(found->paused_until_ms, own->paused_until_ms);
			if (found->header_limit == 0)
			{
				found->header_limit = Min(own->header_limit, found->cap);
				found->header_interval_ms = own->header_interval_ms;
			}
		}
	}
	SpinLockRelease(&shared_windows->mutex);
	p->window = found ? found : p->own;
	p->shared = (found != NULL);
	p->shared_key = found ? key : 0;
}

/* The pacer's window, locked when shared; window_done() unlocks. */
static HsWindow *
window_of(HsPacer *p)
{
	if (p->shared)
	{
		SpinLockAcquire(&shared_windows->mutex);
		if (p->window->key == p->shared_key)
			return p->window;
		/* given to another account meanwhile (unused for a minute): back to its own */
		SpinLockRelease(&shared_windows->mutex);
		p->window = p->own;
		p->shared = false;
	}
	return p->window;
}

static void
window_done(const HsPacer *p)
{
	if (p->shared)
		SpinLockRelease(&shared_windows->mutex);
}

static int64
now_ms(void)
{
	return GetCurrentTimestamp() / 1000;
}

static int
effective_limit(const HsPacer *p, const HsWindow *w)
{
	int			limit = p->rate_limit > 0 ? p->rate_limit : hs_rate_limit;

	if (w->header_limit > 0 && w->header_limit < limit)
		limit = w->header_limit;
	return Min(Max(limit, 1), w->cap);
}

static int
effective_interval_ms(const HsPacer *p, const HsWindow *w)
{
	if (w->header_interval_ms > 0)
		return w->header_interval_ms;
	return p->rate_interval_ms > 0 ? p->rate_interval_ms : hs_rate_limit_interval_ms;
}

/* The window with its margin, in ms. */
static int64
stretched_interval_ms(const HsPacer *p, const HsWindow *w)
{
	int64		interval = effective_interval_ms(p, w);

	return interval + Min(Max(interval / HS_WINDOW_MARGIN_SHARE, HS_WINDOW_MARGIN_MIN_MS),
						  HS_WINDOW_MARGIN_MAX_MS);
}

static void
forget_old(const HsPacer *p, HsWindow *w, int64 now)
{
	int64		horizon = now - stretched_interval_ms(p, w);

	while (w->nstarts > 0 && w->starts[w->first] <= horizon)
	{
		w->first = (w->first + 1) % w->cap;
		w->nstarts--;
	}
}

static void
record_start(HsWindow *w, int64 t)
{
	if (w->nstarts == w->cap)
	{
		w->first = (w->first + 1) % w->cap;
		w->nstarts--;
	}
	w->starts[(w->first + w->nstarts) % w->cap] = t;
	w->nstarts++;
}

/*
 * How long to wait before the next request may start: 0 when it may start
 * now.
 */
int64
hs_pacing_wait_ms(HsPacer *p)
{
	int64		now = now_ms();
	int64		wait = 0;
	HsWindow   *w = window_of(p);
	int			limit = effective_limit(p, w);

	if (w->paused_until_ms > now)
		wait = w->paused_until_ms - now;
	forget_old(p, w, now);
	if (w->nstarts >= limit)
	{
		/* the (nstarts - limit + 1)-th oldest start must leave the window */
		int			idx = (w->first + (w->nstarts - limit)) % w->cap;
		int64		free_at = w->starts[idx] + stretched_interval_ms(p, w);

		wait = Max(wait, free_at - now);
	}
	window_done(p);
	return Max(wait, 0);
}

/* A request starts now. */
void
hs_pacing_note_start(HsPacer *p)
{
	HsWindow   *w = window_of(p);

	record_start(w, now_ms());
	if (p->shared)
		w->last_used = GetCurrentTimestamp();
	window_done(p);
}

/*
 * How many requests may start now without waiting (the window's room), at
 * most max; 0 during a pause.
 */
int
hs_pacing_room(HsPacer *p, int max)
{
	int64		now = now_ms();
	int			room = 0;
	HsWindow   *w = window_of(p);

	if (w->paused_until_ms <= now)
	{
		forget_old(p, w, now);
		room = effective_limit(p, w) - w->nstarts;
	}
	window_done(p);
	return Min(Max(room, 0), max);
}

/* The requests per second the pacer lets start at most: its limit over its interval. */
double
hs_pacing_rate_per_s(HsPacer *p)
{
	HsWindow   *w = window_of(p);
	double		rate = (double) effective_limit(p, w) * 1000.0 / (double) Max(effective_interval_ms(p, w), 1);

	window_done(p);
	return rate;
}

/* The time the sender is paused until (a 429), 0 when it is not. */
TimestampTz
hs_pacing_paused_until(HsPacer *p)
{
	HsWindow   *w = window_of(p);
	int64		until = w->paused_until_ms;

	window_done(p);
	return until > now_ms() ? until * 1000 : 0;
}

/*
 * The next time of day hubspot_events.daily_reset_time ("HH:MM Zone")
 * comes, after now.
 */
static TimestampTz
next_daily_reset(void)
{
	int			hh = 0,
				mm = 0;
	char		zone[256];
	pg_tz	   *tz;
	TimestampTz now = GetCurrentTimestamp();
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	TimestampTz reset;

	if (!hs_parse_daily_reset_time(hs_daily_reset_time, &hh, &mm, zone, sizeof(zone)) ||
		(tz = pg_tzset(zone)) == NULL)
		return now + USECS_PER_DAY; /* cannot happen: checked by the GUC's hook */

	for (int day = 0; day < 3; day++)
	{
		if (timestamp2tm(now + day * USECS_PER_DAY, &tzoff, &tm, &fsec, NULL, tz) != 0)
			break;
		tm.tm_hour = hh;
		tm.tm_min = mm;
		tm.tm_sec = 0;
		tzoff = DetermineTimeZoneOffset(&tm, tz);
		if (tm2timestamp(&tm, 0, &tzoff, &reset) != 0)
			break;
		if (reset > now)
			return reset;
	}
	return now + USECS_PER_DAY;
}

/*
 * One answer's X-HubSpot-RateLimit-Daily-Remaining: the lowest figure of the
 * daily period is the true one (an earlier request's answer may be processed
 * after a later one's); a new period, or a new daily_reset_time, starts over.
 */
static void
note_daily_remaining(HsPacer *p, int64 limit, int64 remaining)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now >= p->daily_period_end ||
		strncmp(p->daily_period_setting, hs_daily_reset_time, sizeof(p->daily_period_setting)) != 0)
	{
		p->daily_period_end = next_daily_reset();
		strlcpy(p->daily_period_setting, hs_daily_reset_time, sizeof(p->daily_period_setting));
		p->daily_remaining = -1;
	}
	if (p->daily_remaining < 0 || remaining < p->daily_remaining)
		p->daily_remaining = remaining;
	p->daily_limit = limit;
}

/* An HTTP date (Retry-After), as seconds since the epoch; -1 when unreadable. */
static time_t
http_date(const char *value)
{
	return curl_getdate(value, NULL);
}

/*
 * Retry-After in milliseconds: delay-seconds or an HTTP date (RFC 9110
 * 10.2.3); -1 when absent or unreadable.  Both forms are capped at
 * HS_RETRY_AFTER_MAX_MS, so that no answer (a date in the year 9999, a
 * number of seconds past any integer type) can stop sending for longer
 * than a day; a date in the past is 0.
 */
int64
hs_retry_after_ms(const char *value)
{
	const char *p;
	int64		secs = 0;

	if (value == NULL || value[0] == '\0')
		return -1;
	for (p = value; *p >= '0' && *p <= '9'; p++)
	{
		/* saturate: only whether it exceeds the cap matters */
		if (secs <= HS_RETRY_AFTER_MAX_MS / 1000)
			secs = secs * 10 + (*p - '0');
	}
	if (p != value && *p == '\0')
		return Min(secs * 1000, HS_RETRY_AFTER_MAX_MS);
	{
		time_t		t = http_date(value);

		if (t > 0)
		{
			int64		ms = ((int64) t - (int64) time(NULL)) * 1000;

			return Min(Max(ms, 0), HS_RETRY_AFTER_MAX_MS);
		}
	}
	return -1;
}

/*
 * Learn from one answer: the app's real limit and window, what others used
 * of it, and 429s.  Returns a description of a pause it started (palloc'd),
 * or NULL.
 */
char *
hs_pacing_note_answer(HsPacer *p, const HsHttpResult *res, const HsErrorBody *err,
					  int64 retry_after_ms)
{
	int64		now = now_ms();
	HsWindow   *w;
	char	   *said = NULL;
	bool		daily_429 = false;
	int64		pause_ms = 0;
	const char *policy = err->policy_name ? err->policy_name : "";

	if (!res->transport_ok)
		return NULL;
	if (res->ratelimit_daily_remaining >= 0)
		note_daily_remaining(p, res->ratelimit_daily, res->ratelimit_daily_remaining);
	if (res->http_status == 429 && pg_strcasecmp(policy, "DAILY") == 0)
		daily_429 = true;
	/* no palloc or time zone work under a shared window's spinlock: the daily reset first */
	if (daily_429)
		pause_ms = next_daily_reset() / 1000 - now;

	w = window_of(p);
	if (res->ratelimit_max > 0)
		w->header_limit = (int) Min(res->ratelimit_max, (int64) w->cap);
	if (res->ratelimit_interval_ms > 0)
		w->header_interval_ms = (int) Min(res->ratelimit_interval_ms, (int64) 3600000);
	if (res->ratelimit_max > 0 && res->ratelimit_remaining >= 0)
	{
		/* usage HubSpot counted in the window that we did not: count it as ours */
		int64		used = res->ratelimit_max - res->ratelimit_remaining;

		forget_old(p, w, now);
		while (w->nstarts < used && w->nstarts < w->cap)
			record_start(w, now);
	}
	if (res->http_status == 429)
	{
		if (daily_429)
			w->paused_until_ms = now + pause_ms;
		else
		{
			pause_ms = Max((int64) effective_interval_ms(p, w),
						   Min(retry_after_ms, HS_RETRY_AFTER_MAX_MS));
			w->paused_until_ms = Max(w->paused_until_ms, now + pause_ms);
		}
	}
	window_done(p);

	if (res->http_status != 429)
		return NULL;
	if (daily_429)
		said = psprintf("HubSpot's daily limit is reached; sending resumes at %s (hubspot_events.daily_reset_time = '%s')",
						timestamptz_to_str((now + pause_ms) * 1000), hs_daily_reset_time);
	else
		said = psprintf("HubSpot's %s rate limit was reached; sending pauses for %lld ms",
						policy[0] ? policy : "rate", (long long) pause_ms);
	return said;
}

/*
 * Parse "HH:MM Zone" (hubspot_events.daily_reset_time).  False when it is
 * not of that form; the zone is not checked here.
 */
bool
hs_parse_daily_reset_time(const char *value, int *hh, int *mm, char *zone, size_t zonelen)
{
	const char *p = value;
	const char *z;

	if (value == NULL)
		return false;
	while (*p == ' ')
		p++;
	if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] == ':' &&
		  p[3] >= '0' && p[3] <= '9' && p[4] >= '0' && p[4] <= '9'))
		return false;
	*hh = (p[0] - '0') * 10 + (p[1] - '0');
	*mm = (p[3] - '0') * 10 + (p[4] - '0');
	if (*hh > 23 || *mm > 59)
		return false;
	p += 5;
	if (*p != ' ')
		return false;
	while (*p == ' ')
		p++;
	z = p;
	if (*z == '\0' || strlen(z) >= zonelen)
		return false;
	strlcpy(zone, z, zonelen);
	/* no trailing spaces in a zone name */
	for (char *q = zone + strlen(zone); q > zone && q[-1] == ' '; q--)
		q[-1] = '\0';
	return zone[0] != '\0';
}

/*
 * The daily quota as HubSpot last said, within the current daily period:
 * false when no answer of this period told it.
 */
bool
hs_pacing_daily(const HsPacer *p, int64 *limit, int64 *remaining)
{
	if (p->daily_remaining < 0 || p->daily_limit <= 0 || GetCurrentTimestamp() >= p->daily_period_end)
		return false;
	*limit = p->daily_limit;
	*remaining = p->daily_remaining;
	return true;
}

/*
 * How long a retried row waits before its next attempt: exponential backoff
 * with full jitter (a uniform draw below retry_base_ms doubled per attempt
 * already made, capped at retry_max_ms), and never less than the
 * Retry-After HubSpot asked for (retry_after_ms, -1 when none).  attempts
 * counts the attempt that just failed.
 */
int64
hs_retry_delay_ms(int attempts, int64 retry_after_ms)
{
	int			doublings = Min(Max(attempts - 1, 0), 40);
	double		ceiling = Min((double) hs_retry_max_ms,
							  (double) hs_retry_base_ms * ldexp(1.0, doublings));
	int64		jittered = (int64) (pg_prng_double(&pg_global_prng_state) * ceiling);

	return Max(jittered, Max(retry_after_ms, 0));
}
