/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  Shared memory: the worker's latch, state and counters; waking the
 *	  worker when a transaction that enqueued commits.
 *
 * Exists only when the library is in shared_preload_libraries.  Without
 * it, every function here is a harmless no-op and worker_info() says the
 * worker is not running: the direct functions and the enqueue still work.
 *
 * The wake-up is the pg_net idea done with PostgreSQL's own hooks: a
 * transaction that wrote to the outbox sets a flag; a transaction callback
 * sets the worker's latch at commit (never at abort), so the worker sleeps
 * until there is work instead of polling.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"

HsWorkerShared *hs_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool xact_callback_registered = false;

static void
hs_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(HsWorkerShared)));
	RequestAddinShmemSpace(hs_metrics_shmem_size());
	RequestAddinShmemSpace(hs_conn_tokens_shmem_size());
	RequestAddinShmemSpace(hs_pacing_shmem_size());
	hs_oauth_shmem_request();
}

static void
hs_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hs_shared = ShmemInitStruct("hubspot_events", sizeof(HsWorkerShared), &found);
	if (!found)
	{
		memset(hs_shared, 0, sizeof(HsWorkerShared));
		SpinLockInit(&hs_shared->mutex);
		strlcpy(hs_shared->state, "not started", sizeof(hs_shared->state));
		hs_shared->daily_limit = -1;
		hs_shared->daily_remaining = -1;
	}
	hs_metrics_shmem_startup();
	hs_conn_tokens_shmem_init();
	hs_pacing_shmem_init();
	hs_oauth_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

void
hs_shared_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = hs_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = hs_shmem_startup;
}

void
hs_wake_now(void)
{
	Latch	   *latch = NULL;

	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	if (hs_shared->worker_pid != 0)
		latch = hs_shared->worker_latch;
	SpinLockRelease(&hs_shared->mutex);
	if (latch)
		SetLatch(latch);
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				hs_wake_now();
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* Wake the worker when the current transaction commits. */
void
hs_wake_at_commit(void)
{
	if (hs_shared == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

/* ---- the worker's reports ---- */

void
hs_shared_set_state(const char *state, const char *held_reason)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	strlcpy(hs_shared->state, state, sizeof(hs_shared->state));
	strlcpy(hs_shared->held_reason, held_reason ? held_reason : "", sizeof(hs_shared->held_reason));
	SpinLockRelease(&hs_shared->mutex);
}

/* The day (UTC) of a timestamp, for the daily counters. */
static int
day_of(TimestampTz t)
{
	return (int) (t / USECS_PER_DAY);
}

void
hs_shared_set_daily(int64 limit, int64 remaining)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	if (limit >= 0)
		hs_shared->daily_limit = limit;
	hs_shared->daily_remaining = remaining;
	SpinLockRelease(&hs_shared->mutex);
}

void
hs_shared_set_pause(TimestampTz until, const char *reason)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	hs_shared->paused_until = until;
	strlcpy(hs_shared->pause_reason, reason ? reason : "", sizeof(hs_shared->pause_reason));
	SpinLockRelease(&hs_shared->mutex);
}

void
hs_shared_settings_loaded(void)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	hs_shared->settings_loaded_at = GetCurrentTimestamp();
	strlcpy(hs_shared->api_version, hs_api_version ? hs_api_version : "", sizeof(hs_shared->api_version));
	SpinLockRelease(&hs_shared->mutex);
}

/*
 * Count one answer (or transport failure).  category is HubSpot's (or
 * "TRANSPORT", "TIMEOUT", "HTTP_<status>") for failures, NULL for success.
 */
void
hs_shared_count_request(bool success, const char *category, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	hs_shared->requests++;
	if (hs_shared->today != day_of(now))
	{
		hs_shared->today = day_of(now);
		hs_shared->today_requests = 0;
		hs_shared->today_errors = 0;
	}
	hs_shared->today_requests++;
	if (!success)
		hs_shared->today_errors++;
	if (success)
	{
		hs_shared->successes++;
		hs_shared->last_success_at = now;
	}
	else
	{
		int			i;

		hs_shared->errors++;
		hs_shared->last_error_at = now;
		strlcpy(hs_shared->last_error, message ? message : "", sizeof(hs_shared->last_error));
		for (i = 0; i < HS_MAX_CATEGORIES; i++)
		{
			if (hs_shared->by_category[i].category[0] == '\0')
			{
				strlcpy(hs_shared->by_category[i].category, category ? category : "UNKNOWN",
						sizeof(hs_shared->by_category[i].category));
				hs_shared->by_category[i].count = 1;
				break;
			}
			if (strcmp(hs_shared->by_category[i].category, category ? category : "UNKNOWN") == 0)
			{
				hs_shared->by_category[i].count++;
				break;
			}
		}
	}
	SpinLockRelease(&hs_shared->mutex);
}

/* ---- SQL-callable ---- */

/* worker_info()'s columns */
#define HS_WORKER_INFO_COLUMNS 18

PG_FUNCTION_INFO_V1(hubspot_wake);
PG_FUNCTION_INFO_V1(hubspot_worker_info);
PG_FUNCTION_INFO_V1(hubspot_worker_api_version);

/* worker_info()'s column i: the text, or NULL when it is empty */
static void
info_text(Datum *values, bool *nulls, int i, const char *text)
{
	nulls[i] = (text[0] == '\0');
	if (!nulls[i])
		values[i] = CStringGetTextDatum(text);
}

/* worker_info()'s column i: the time, or NULL when it was never set */
static void
info_time(Datum *values, bool *nulls, int i, TimestampTz t)
{
	nulls[i] = (t == 0);
	if (!nulls[i])
		values[i] = TimestampTzGetDatum(t);
}

/* The errors by category, as a jsonb object {"category": count, ...}. */
static Datum
categories_jsonb(const HsWorkerShared *snap)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < HS_MAX_CATEGORIES && snap->by_category[i].category[0]; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, snap->by_category[i].category);
		appendStringInfo(&buf, ":" INT64_FORMAT, snap->by_category[i].count);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * worker_info() when the library is not preloaded: no worker, and the
 * database the setting names (at most a placeholder then).
 */
static Datum
info_not_preloaded(TupleDesc tupdesc)
{
	Datum		values[HS_WORKER_INFO_COLUMNS];
	bool		nulls[HS_WORKER_INFO_COLUMNS];
	const char *db = GetConfigOption("hubspot_events.database", true, false);

	for (int i = 0; i < HS_WORKER_INFO_COLUMNS; i++)
		nulls[i] = true;
	values[1] = CStringGetTextDatum("not running (hubspot_events is not in shared_preload_libraries)");
	nulls[1] = false;
	values[2] = CStringGetTextDatum(db ? db : "postgres");
	nulls[2] = false;
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* wake(): now, and again at commit (so that rows this transaction changes are seen) */
Datum
hubspot_wake(PG_FUNCTION_ARGS)
{
	hs_wake_now();
	hs_wake_at_commit();
	PG_RETURN_VOID();
}

/* worker_info(): the worker's state and counters, from shared memory (the status view) */
Datum
hubspot_worker_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[HS_WORKER_INFO_COLUMNS];
	bool		nulls[HS_WORKER_INFO_COLUMNS];
	HsWorkerShared snap;
	bool		paused;
	bool		today;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (hs_shared == NULL)
		PG_RETURN_DATUM(info_not_preloaded(tupdesc));

	SpinLockAcquire(&hs_shared->mutex);
	memcpy(&snap, hs_shared, sizeof(snap));
	SpinLockRelease(&hs_shared->mutex);

	memset(nulls, 0, sizeof(nulls));
	if (snap.worker_pid != 0)
		values[0] = Int32GetDatum(snap.worker_pid);
	else
		nulls[0] = true;
	values[1] = CStringGetTextDatum(snap.worker_pid != 0 ? snap.state : "not running");
	values[2] = CStringGetTextDatum(hs_database ? hs_database : "");
	info_text(values, nulls, 3, snap.held_reason);
	info_time(values, nulls, 4, snap.started_at);
	values[5] = Int64GetDatum(snap.requests);
	values[6] = Int64GetDatum(snap.successes);
	values[7] = Int64GetDatum(snap.errors);
	values[8] = categories_jsonb(&snap);
	info_time(values, nulls, 9, snap.last_success_at);
	info_time(values, nulls, 10, snap.last_error_at);
	info_text(values, nulls, 11, snap.last_error);
	info_time(values, nulls, 12, snap.settings_loaded_at);
	paused = snap.paused_until > GetCurrentTimestamp();
	info_time(values, nulls, 13, paused ? snap.paused_until : 0);
	info_text(values, nulls, 14, paused ? snap.pause_reason : "");
	if (snap.daily_remaining >= 0)
		values[15] = Int64GetDatum(snap.daily_remaining);
	else
		nulls[15] = true;
	today = (snap.today == day_of(GetCurrentTimestamp()));
	values[16] = Int64GetDatum(today ? snap.today_requests : 0);
	values[17] = Int64GetDatum(today ? snap.today_errors : 0);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* worker_api_version(): the worker's hubspot_events.api_version; NULL when no worker runs */
Datum
hubspot_worker_api_version(PG_FUNCTION_ARGS)
{
	char		version[HS_API_VERSION_MAX];
	pid_t		pid;

	if (hs_shared == NULL)
		PG_RETURN_NULL();
	SpinLockAcquire(&hs_shared->mutex);
	pid = hs_shared->worker_pid;
	strlcpy(version, hs_shared->api_version, sizeof(version));
	SpinLockRelease(&hs_shared->mutex);
	if (pid == 0 || version[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(version));
}
