/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  Shared memory: the workers' latches, states and counters; waking the
 *	  worker when a transaction that enqueued commits.
 *
 * Exists only when the library is in shared_preload_libraries.  Without
 * it, every function here is a harmless no-op and worker_info() says the
 * worker is not running: the direct functions and the enqueue still work.
 *
 * One slot per worker.  Without hubspot_events.databases there is one,
 * the static worker's (hubspot_events.database), and every process uses
 * it, whatever its database.  With hubspot_events.databases (launcher
 * mode, fixed at server start) there are hubspot_events.max_databases,
 * which the launcher (launcher.c) gives to the databases it starts a
 * worker for: a backend then reads and wakes the slot of its own database
 * (MyDatabaseId), found under each slot's spinlock, since the launcher may
 * give a free slot to another database.  A slot keeps its database when
 * its worker stops, so that a restarted worker goes on counting.
 *
 * The wake-up is the pg_net idea done with PostgreSQL's own hooks: a
 * transaction that wrote to the outbox sets a flag; a transaction callback
 * sets the worker's latch at commit (never at abort), so the worker sleeps
 * until there is work instead of polling.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <signal.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "parser/scansup.h"
#include "utils/varlena.h"

/* requests of backends to try a database again at once; databases being dropped */
#define HS_RETRY_REQUESTS	8
#define HS_MAX_STOPPING		8
/* a mark of a database being dropped outlives its backend's statement no longer than this */
#define HS_STOPPING_MAX_MS	60000
/* a backend asks the launcher to try its database at most this often */
#define HS_RETRY_REQUEST_EVERY_MS 1000

/* The workers' slots, and the launcher's fields. */
typedef struct HsWorkersShared
{
	slock_t		mutex;			/* the fields below but the slots (each has its own) */
	bool		launcher_mode;	/* hubspot_events.databases was set at server start */
	int			nslots;
	pid_t		launcher_pid;	/* 0: not running */
	Latch	   *launcher_latch;
	TimestampTz launcher_started_at;
	char		launcher_state[64];
	int			nretry;
	Oid			retry[HS_RETRY_REQUESTS];
	struct
	{
		Oid			dboid;		/* InvalidOid: a free entry */
		pid_t		pid;		/* the backend whose statement needs the database's worker gone */
		TimestampTz since;
	}			stopping[HS_MAX_STOPPING];
	HsWorkerShared slots[FLEXIBLE_ARRAY_MEMBER];
} HsWorkersShared;

HsWorkerShared *hs_shared = NULL;

static HsWorkersShared *cluster = NULL;
static bool launcher_mode = false;
static int	cached_slot = -1;
static TimestampTz last_retry_request = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool xact_callback_registered = false;

static int
slot_count(void)
{
	return launcher_mode ? hs_max_databases : 1;
}

static Size
cluster_size(void)
{
	return add_size(offsetof(HsWorkersShared, slots),
					mul_size(sizeof(HsWorkerShared), slot_count()));
}

/* A slot's state when nobody used it yet (or when it changes database). */
static void
slot_clear(HsWorkerShared *s)
{
	memset((char *) s + offsetof(HsWorkerShared, dboid), 0,
		   sizeof(HsWorkerShared) - offsetof(HsWorkerShared, dboid));
	strlcpy(s->state, "not started", sizeof(s->state));
	s->daily_limit = -1;
	s->daily_remaining = -1;
}

static void
hs_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(cluster_size()));
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
	cluster = ShmemInitStruct("hubspot_events", cluster_size(), &found);
	if (!found)
	{
		memset(cluster, 0, offsetof(HsWorkersShared, slots));
		SpinLockInit(&cluster->mutex);
		cluster->launcher_mode = launcher_mode;
		cluster->nslots = slot_count();
		strlcpy(cluster->launcher_state, "not started", sizeof(cluster->launcher_state));
		for (int i = 0; i < cluster->nslots; i++)
		{
			SpinLockInit(&cluster->slots[i].mutex);
			slot_clear(&cluster->slots[i]);
		}
	}
	/* one slot for every process: the static worker's */
	if (!cluster->launcher_mode)
		hs_shared = &cluster->slots[0];
	hs_metrics_shmem_startup();
	hs_conn_tokens_shmem_init();
	hs_pacing_shmem_init();
	hs_oauth_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, when preloaded; with_launcher: hubspot_events.databases is set. */
void
hs_shared_init(bool with_launcher)
{
	launcher_mode = with_launcher;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = hs_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = hs_shmem_startup;
}

/* Whether the launcher serves hubspot_events.databases (fixed at server start). */
bool
hs_shared_launcher_mode(void)
{
	return cluster != NULL && cluster->launcher_mode;
}

/*
 * The slot of this process, locked: its own (the static worker's, or a
 * launched worker's), or in launcher mode the slot of this backend's
 * database.  NULL (nothing locked) when there is none.
 */
static HsWorkerShared *
slot_lock(void)
{
	HsWorkerShared *s;

	if (hs_shared != NULL)
	{
		SpinLockAcquire(&hs_shared->mutex);
		return hs_shared;
	}
	if (cluster == NULL || !cluster->launcher_mode || !OidIsValid(MyDatabaseId))
		return NULL;
	if (cached_slot >= 0)
	{
		s = &cluster->slots[cached_slot];
		SpinLockAcquire(&s->mutex);
		if (s->dboid == MyDatabaseId)
			return s;
		SpinLockRelease(&s->mutex);
	}
	for (int i = 0; i < cluster->nslots; i++)
	{
		s = &cluster->slots[i];
		SpinLockAcquire(&s->mutex);
		if (s->dboid == MyDatabaseId)
		{
			cached_slot = i;
			return s;
		}
		SpinLockRelease(&s->mutex);
	}
	return NULL;
}

/*
 * Launcher mode: ask the launcher to try this backend's database at once
 * (its worker is not running: the extension was just created, or a row
 * was enqueued).  At most once a second per backend.
 */
static void
request_retry(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *latch = NULL;

	if (!TimestampDifferenceExceeds(last_retry_request, now, HS_RETRY_REQUEST_EVERY_MS))
		return;
	last_retry_request = now;
	SpinLockAcquire(&cluster->mutex);
	if (cluster->launcher_pid != 0)
	{
		bool		known = false;

		for (int i = 0; i < cluster->nretry; i++)
			known |= (cluster->retry[i] == MyDatabaseId);
		if (!known && cluster->nretry < HS_RETRY_REQUESTS)
			cluster->retry[cluster->nretry++] = MyDatabaseId;
		latch = cluster->launcher_latch;
	}
	SpinLockRelease(&cluster->mutex);
	if (latch)
		SetLatch(latch);
}

/* Whether the worker that serves this process's database runs. */
bool
hs_shared_worker_running(void)
{
	HsWorkerShared *s = slot_lock();
	bool		running = false;

	if (s != NULL)
	{
		running = (s->worker_pid != 0);
		SpinLockRelease(&s->mutex);
	}
	return running;
}

void
hs_wake_now(void)
{
	Latch	   *latch = NULL;
	HsWorkerShared *s = slot_lock();

	if (s != NULL)
	{
		if (s->worker_pid != 0)
			latch = s->worker_latch;
		SpinLockRelease(&s->mutex);
	}
	if (latch)
		SetLatch(latch);
	else if (hs_shared == NULL && hs_shared_launcher_mode() && OidIsValid(MyDatabaseId))
		request_retry();
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
	if (cluster == NULL)
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
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		return;
	strlcpy(s->state, state, sizeof(s->state));
	strlcpy(s->held_reason, held_reason ? held_reason : "", sizeof(s->held_reason));
	SpinLockRelease(&s->mutex);
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
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		return;
	if (limit >= 0)
		s->daily_limit = limit;
	s->daily_remaining = remaining;
	SpinLockRelease(&s->mutex);
}

void
hs_shared_set_pause(TimestampTz until, const char *reason)
{
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		return;
	s->paused_until = until;
	strlcpy(s->pause_reason, reason ? reason : "", sizeof(s->pause_reason));
	SpinLockRelease(&s->mutex);
}

void
hs_shared_settings_loaded(void)
{
	TimestampTz now = GetCurrentTimestamp();
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		return;
	s->settings_loaded_at = now;
	strlcpy(s->api_version, hs_api_version ? hs_api_version : "", sizeof(s->api_version));
	SpinLockRelease(&s->mutex);
}

/*
 * Count one answer (or transport failure).  category is HubSpot's (or
 * "TRANSPORT", "TIMEOUT", "HTTP_<status>") for failures, NULL for success.
 */
void
hs_shared_count_request(bool success, const char *category, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		return;
	s->requests++;
	if (s->today != day_of(now))
	{
		s->today = day_of(now);
		s->today_requests = 0;
		s->today_errors = 0;
	}
	s->today_requests++;
	if (!success)
		s->today_errors++;
	if (success)
	{
		s->successes++;
		s->last_success_at = now;
	}
	else
	{
		int			i;

		s->errors++;
		s->last_error_at = now;
		strlcpy(s->last_error, message ? message : "", sizeof(s->last_error));
		for (i = 0; i < HS_MAX_CATEGORIES; i++)
		{
			if (s->by_category[i].category[0] == '\0')
			{
				strlcpy(s->by_category[i].category, category ? category : "UNKNOWN",
						sizeof(s->by_category[i].category));
				s->by_category[i].count = 1;
				break;
			}
			if (strcmp(s->by_category[i].category, category ? category : "UNKNOWN") == 0)
			{
				s->by_category[i].count++;
				break;
			}
		}
	}
	SpinLockRelease(&s->mutex);
}

/* ---- the launcher's side (launcher.c) ---- */

/*
 * hubspot_events.databases: "*" (*all), or a list of names with the
 * syntax of PostgreSQL's list settings (search_path): separated by commas,
 * lower-cased unless double-quoted.  Empty: no list.  false (with *error)
 * when the list cannot be read.  *names (when names is not NULL) holds
 * palloc'd names.
 */
bool
hs_parse_database_list(const char *value, bool *all, List **names, char **error)
{
	char	   *copy;
	char	   *p;
	List	   *list = NIL;
	ListCell   *lc;
	bool		ok = true;

	*all = false;
	*error = NULL;
	if (names)
		*names = NIL;
	if (value == NULL)
		return true;
	copy = pstrdup(value);
	p = copy;
	while (scanner_isspace(*p))
		p++;
	if (p[0] == '*')
	{
		char	   *q = p + 1;

		while (scanner_isspace(*q))
			q++;
		if (*q == '\0')
		{
			*all = true;
			pfree(copy);
			return true;
		}
	}
	if (!SplitIdentifierString(copy, ',', &list))
	{
		*error = "The list of database names cannot be read: separate names with commas, and double-quote a name that holds a comma, a space, a double quote or a capital letter.";
		ok = false;
	}
	else
	{
		foreach(lc, list)
		{
			const char *name = lfirst(lc);

			if (strcmp(name, "*") == 0)
			{
				*error = "\"*\" (every database) cannot be combined with database names.";
				ok = false;
				break;
			}
			if (names && ok)
				*names = lappend(*names, pstrdup(name));
		}
	}
	list_free(list);
	pfree(copy);
	if (!ok && names)
	{
		list_free_deep(*names);
		*names = NIL;
	}
	return ok;
}

/* Whether hubspot_events.databases (this process's value) lists the database. */
static bool
database_listed(const char *name)
{
	bool		all;
	List	   *names;
	char	   *error;
	bool		listed = false;
	ListCell   *lc;

	if (!hs_parse_database_list(hs_databases, &all, &names, &error))
		return false;
	if (all)
		return true;
	foreach(lc, names)
		listed |= (strcmp((const char *) lfirst(lc), name) == 0);
	list_free_deep(names);
	return listed;
}

int
hs_shared_slot_count(void)
{
	return cluster ? cluster->nslots : 0;
}

/* The launcher starts: false when another one runs. */
bool
hs_shared_launcher_attach(Latch *latch)
{
	bool		ok;

	if (cluster == NULL)
		return false;
	SpinLockAcquire(&cluster->mutex);
	/* a launcher that died without its exit callback (it never does) is no obstacle */
	ok = (cluster->launcher_pid == 0 || kill(cluster->launcher_pid, 0) != 0);
	if (ok)
	{
		cluster->launcher_pid = MyProcPid;
		cluster->launcher_latch = latch;
		cluster->launcher_started_at = GetCurrentTimestamp();
		strlcpy(cluster->launcher_state, "starting", sizeof(cluster->launcher_state));
		cluster->nretry = 0;
	}
	SpinLockRelease(&cluster->mutex);
	return ok;
}

void
hs_shared_launcher_detach(void)
{
	if (cluster == NULL)
		return;
	SpinLockAcquire(&cluster->mutex);
	if (cluster->launcher_pid == MyProcPid)
	{
		cluster->launcher_pid = 0;
		cluster->launcher_latch = NULL;
		strlcpy(cluster->launcher_state, "stopped", sizeof(cluster->launcher_state));
	}
	SpinLockRelease(&cluster->mutex);
}

void
hs_shared_launcher_set_state(const char *state)
{
	if (cluster == NULL)
		return;
	SpinLockAcquire(&cluster->mutex);
	strlcpy(cluster->launcher_state, state, sizeof(cluster->launcher_state));
	SpinLockRelease(&cluster->mutex);
}

/* The databases backends asked to be tried at once since the last call (at most max). */
int
hs_shared_take_retry_requests(Oid *dboids, int max)
{
	int			n;

	SpinLockAcquire(&cluster->mutex);
	n = Min(cluster->nretry, max);
	memcpy(dboids, cluster->retry, n * sizeof(Oid));
	cluster->nretry = 0;
	SpinLockRelease(&cluster->mutex);
	return n;
}

/* Whether a statement waits for the database's worker to be gone (DROP DATABASE...). */
bool
hs_shared_database_stopping(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		stopping = false;

	SpinLockAcquire(&cluster->mutex);
	for (int i = 0; i < HS_MAX_STOPPING; i++)
	{
		if (cluster->stopping[i].dboid != dboid)
			continue;
		/* a mark whose backend died (a FATAL before it could remove it) lapses */
		if (TimestampDifferenceExceeds(cluster->stopping[i].since, now, HS_STOPPING_MAX_MS))
			cluster->stopping[i].dboid = InvalidOid;
		else
			stopping = true;
	}
	SpinLockRelease(&cluster->mutex);
	return stopping;
}

/* The slot of a database (in use only, or also one its stopped worker left); -1: none. */
int
hs_shared_find_slot(Oid dboid, bool in_use_only)
{
	int			found = -1;

	for (int i = 0; i < cluster->nslots && found < 0; i++)
	{
		HsWorkerShared *s = &cluster->slots[i];

		SpinLockAcquire(&s->mutex);
		if (s->dboid == dboid && (s->in_use || !in_use_only))
			found = i;
		SpinLockRelease(&s->mutex);
	}
	return found;
}

/*
 * A slot for a worker of the database, marked in use: the one it had (its
 * counters go on), else one never used, else the free slot of another
 * database (cleared).  -1 when every slot is in use.  Only the launcher
 * assigns and releases slots.
 */
int
hs_shared_assign_slot(Oid dboid)
{
	int			pick = hs_shared_find_slot(dboid, false);
	HsWorkerShared *s;

	for (int pass = 0; pass < 2 && pick < 0; pass++)
	{
		for (int i = 0; i < cluster->nslots && pick < 0; i++)
		{
			s = &cluster->slots[i];
			SpinLockAcquire(&s->mutex);
			if (!s->in_use && (pass == 1 || !OidIsValid(s->dboid)))
				pick = i;
			SpinLockRelease(&s->mutex);
		}
	}
	if (pick < 0)
		return -1;
	s = &cluster->slots[pick];
	SpinLockAcquire(&s->mutex);
	if (s->in_use)
	{
		SpinLockRelease(&s->mutex);
		return -1;				/* its worker still runs: the launcher reaps it first */
	}
	if (s->dboid != dboid)
		slot_clear(s);
	s->dboid = dboid;
	s->in_use = true;
	s->worker_pid = 0;
	s->worker_latch = NULL;
	strlcpy(s->state, "starting", sizeof(s->state));
	s->held_reason[0] = '\0';
	SpinLockRelease(&s->mutex);
	return pick;
}

/* The launcher reaped the slot's worker: the slot is free (its database and counters kept). */
void
hs_shared_release_slot(int slot)
{
	HsWorkerShared *s = &cluster->slots[slot];

	SpinLockAcquire(&s->mutex);
	s->in_use = false;
	s->worker_pid = 0;
	s->worker_latch = NULL;
	strlcpy(s->state, "stopped", sizeof(s->state));
	SpinLockRelease(&s->mutex);
}

/* Free slots of databases that no longer exist are forgotten (their counters with them). */
void
hs_shared_forget_databases(const Oid *existing, int n)
{
	for (int i = 0; i < cluster->nslots; i++)
	{
		HsWorkerShared *s = &cluster->slots[i];
		bool		exists = false;

		SpinLockAcquire(&s->mutex);
		for (int k = 0; k < n && !exists; k++)
			exists = (existing[k] == s->dboid);
		if (!s->in_use && OidIsValid(s->dboid) && !exists)
			slot_clear(s);
		SpinLockRelease(&s->mutex);
	}
}

pid_t
hs_shared_slot_pid(int slot)
{
	pid_t		pid;

	SpinLockAcquire(&cluster->slots[slot].mutex);
	pid = cluster->slots[slot].worker_pid;
	SpinLockRelease(&cluster->slots[slot].mutex);
	return pid;
}

/*
 * A worker the launcher started: its slot, where the launcher left its
 * database.  false when the slot is not (or no longer) for it, or when a
 * statement waits for the database's worker to be gone: it then exits.
 */
bool
hs_shared_attach_launched(Oid dboid, int slot, Latch *latch)
{
	HsWorkerShared *s;
	bool		ok;

	if (cluster == NULL || !cluster->launcher_mode || slot < 0 || slot >= cluster->nslots)
		return false;
	s = &cluster->slots[slot];
	SpinLockAcquire(&s->mutex);
	ok = (s->in_use && s->dboid == dboid && s->worker_pid == 0);
	if (ok)
	{
		s->worker_pid = MyProcPid;
		s->worker_latch = latch;
		s->started_at = GetCurrentTimestamp();
		strlcpy(s->state, "starting", sizeof(s->state));
		s->held_reason[0] = '\0';
	}
	SpinLockRelease(&s->mutex);
	if (!ok)
		return false;
	hs_shared = s;
	/* after the pid is set: a DROP DATABASE that marked it before reading the pid stops us here */
	if (hs_shared_database_stopping(dboid))
	{
		SpinLockAcquire(&s->mutex);
		s->worker_pid = 0;
		s->worker_latch = NULL;
		SpinLockRelease(&s->mutex);
		hs_shared = NULL;
		return false;
	}
	return true;
}

/*
 * A statement needs the database's worker gone (DROP DATABASE, its RENAME,
 * a copy of it): mark the database so that the launcher starts no worker
 * for it, and return the pid of the worker to stop (0: none runs).
 * *marked says whether a mark was made (then hs_shared_unmark_stopping()).
 */
pid_t
hs_shared_mark_stopping(Oid dboid, bool *marked)
{
	int			slot;

	*marked = false;
	if (!hs_shared_launcher_mode())
		return 0;
	SpinLockAcquire(&cluster->mutex);
	for (int i = 0; i < HS_MAX_STOPPING && !*marked; i++)
	{
		if (OidIsValid(cluster->stopping[i].dboid))
			continue;
		cluster->stopping[i].dboid = dboid;
		cluster->stopping[i].pid = MyProcPid;
		cluster->stopping[i].since = GetCurrentTimestamp();
		*marked = true;
	}
	SpinLockRelease(&cluster->mutex);
	slot = hs_shared_find_slot(dboid, true);
	return slot >= 0 ? hs_shared_slot_pid(slot) : 0;
}

void
hs_shared_unmark_stopping(Oid dboid)
{
	Latch	   *latch;

	SpinLockAcquire(&cluster->mutex);
	for (int i = 0; i < HS_MAX_STOPPING; i++)
	{
		if (cluster->stopping[i].dboid == dboid && cluster->stopping[i].pid == MyProcPid)
		{
			cluster->stopping[i].dboid = InvalidOid;
			break;
		}
	}
	/* the statement failed (the database is still there): its worker comes back at once */
	if (cluster->nretry < HS_RETRY_REQUESTS)
		cluster->retry[cluster->nretry++] = dboid;
	latch = cluster->launcher_pid != 0 ? cluster->launcher_latch : NULL;
	SpinLockRelease(&cluster->mutex);
	if (latch)
		SetLatch(latch);
}

/* Whether a worker of the launcher's holds a slot for the database (running or starting). */
bool
hs_shared_database_served(Oid dboid)
{
	return hs_shared_launcher_mode() && hs_shared_find_slot(dboid, true) >= 0;
}

/* ---- SQL-callable ---- */

/* worker_info()'s columns */
#define HS_WORKER_INFO_COLUMNS 18

PG_FUNCTION_INFO_V1(hubspot_wake);
PG_FUNCTION_INFO_V1(hubspot_worker_info);
PG_FUNCTION_INFO_V1(hubspot_worker_api_version);
PG_FUNCTION_INFO_V1(hubspot_workers_info);

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

/*
 * The database column of worker_info(): the static worker's
 * (hubspot_events.database); in launcher mode, the current database when
 * its worker runs or the list names it (its worker is expected), else
 * NULL: nobody serves this database.
 */
static void
info_database(Datum *values, bool *nulls, bool running)
{
	char	   *name;

	nulls[2] = false;
	if (!hs_shared_launcher_mode())
	{
		values[2] = CStringGetTextDatum(hs_database ? hs_database : "");
		return;
	}
	name = get_database_name(MyDatabaseId);
	if (name != NULL && !running && !database_listed(name))
		name = NULL;
	nulls[2] = (name == NULL);
	if (name != NULL)
		values[2] = CStringGetTextDatum(name);
}

/* worker_info(): the worker's state and counters, from shared memory (the status view) */
Datum
hubspot_worker_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[HS_WORKER_INFO_COLUMNS];
	bool		nulls[HS_WORKER_INFO_COLUMNS];
	HsWorkerShared snap;
	HsWorkerShared *s;
	bool		paused;
	bool		today;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (cluster == NULL)
		PG_RETURN_DATUM(info_not_preloaded(tupdesc));

	s = slot_lock();
	if (s != NULL)
	{
		memcpy(&snap, s, sizeof(snap));
		SpinLockRelease(&s->mutex);
	}
	else
	{
		/* launcher mode, and no worker ever ran for this database */
		memset(&snap, 0, sizeof(snap));
		snap.daily_remaining = -1;
	}

	memset(nulls, 0, sizeof(nulls));
	if (snap.worker_pid != 0)
		values[0] = Int32GetDatum(snap.worker_pid);
	else
		nulls[0] = true;
	values[1] = CStringGetTextDatum(snap.worker_pid != 0 ? snap.state : "not running");
	info_database(values, nulls, snap.worker_pid != 0);
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
	HsWorkerShared *s = slot_lock();

	if (s == NULL)
		PG_RETURN_NULL();
	pid = s->worker_pid;
	strlcpy(version, s->api_version, sizeof(version));
	SpinLockRelease(&s->mutex);
	if (pid == 0 || version[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(version));
}

/* workers_info()'s columns */
#define HS_WORKERS_INFO_COLUMNS 11

/*
 * workers_info(): every worker of the cluster (the view workers): the
 * launcher and its workers, one per slot in use, or the static worker.
 * Nothing when the library is not preloaded.
 */
Datum
hubspot_workers_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[HS_WORKERS_INFO_COLUMNS];
	bool		nulls[HS_WORKERS_INFO_COLUMNS];

	InitMaterializedSRF(fcinfo, 0);
	if (cluster == NULL)
		return (Datum) 0;

	if (cluster->launcher_mode)
	{
		pid_t		pid;
		TimestampTz started;
		char		state[64];

		SpinLockAcquire(&cluster->mutex);
		pid = cluster->launcher_pid;
		started = cluster->launcher_started_at;
		strlcpy(state, cluster->launcher_state, sizeof(state));
		SpinLockRelease(&cluster->mutex);

		for (int i = 0; i < HS_WORKERS_INFO_COLUMNS; i++)
			nulls[i] = true;
		nulls[0] = (pid == 0);
		values[0] = Int32GetDatum(pid);
		values[1] = CStringGetTextDatum("launcher");
		nulls[1] = false;
		values[4] = CStringGetTextDatum(pid != 0 ? state : "not running");
		nulls[4] = false;
		info_time(values, nulls, 6, pid != 0 ? started : 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	for (int i = 0; i < cluster->nslots; i++)
	{
		HsWorkerShared snap;
		HsWorkerShared *s = &cluster->slots[i];
		char	   *name;

		SpinLockAcquire(&s->mutex);
		memcpy(&snap, s, sizeof(snap));
		SpinLockRelease(&s->mutex);
		if (cluster->launcher_mode && !snap.in_use)
			continue;

		memset(nulls, 0, sizeof(nulls));
		nulls[0] = (snap.worker_pid == 0);
		values[0] = Int32GetDatum(snap.worker_pid);
		values[1] = CStringGetTextDatum(cluster->launcher_mode ? "launched" : "static");
		if (cluster->launcher_mode)
		{
			values[2] = ObjectIdGetDatum(snap.dboid);
			name = get_database_name(snap.dboid);
		}
		else
		{
			nulls[2] = true;
			name = hs_database ? pstrdup(hs_database) : NULL;
		}
		nulls[3] = (name == NULL);
		if (name != NULL)
			values[3] = CStringGetTextDatum(name);
		if (snap.worker_pid != 0)
			values[4] = CStringGetTextDatum(snap.state);
		else
			values[4] = CStringGetTextDatum(cluster->launcher_mode ? snap.state : "not running");
		info_text(values, nulls, 5, snap.held_reason);
		info_time(values, nulls, 6, snap.worker_pid != 0 ? snap.started_at : 0);
		values[7] = Int64GetDatum(snap.requests);
		values[8] = Int64GetDatum(snap.successes);
		values[9] = Int64GetDatum(snap.errors);
		info_text(values, nulls, 10, snap.last_error);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
