/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Many databases from one cluster: the launcher, a background worker
 *	  that starts a worker per database named by hubspot_events.databases
 *	  (or every database, with "*"), and the statements that need a
 *	  database's worker gone (DROP DATABASE, its RENAME, a copy of it).
 *
 * With hubspot_events.databases set at server start, the postmaster
 * registers the launcher instead of the static worker of
 * hubspot_events.database.  The launcher connects to no database (it reads
 * the shared catalog pg_database only) and, in a loop:
 *
 *	1. reaps the workers that stopped (the postmaster tells it: it is their
 *	   notify pid), freeing their slots in shared memory;
 *	2. lists the databases to serve: those named (or every one that allows
 *	   connections, templates excepted), and that exist;
 *	3. stops the workers of the databases no longer listed (after a reload)
 *	   and of those a statement needs gone;
 *	4. starts a worker (a dynamic background worker, bgw_type
 *	   "hubspot_events worker", bgw_main_arg the database's OID) for each
 *	   listed database that has none, giving it a slot of shared memory.
 *
 * A worker exits where the extension is not installed; its database is
 * tried again every HS_LAUNCHER_RETRY_MS, or at once when a backend of that
 * database asks (CREATE EXTENSION hubspot_events, an enqueue: shared.c's
 * wake finds no worker and wakes the launcher instead).
 *
 * DROP DATABASE (and ALTER DATABASE ... RENAME, ... SET TABLESPACE, CREATE
 * DATABASE ... TEMPLATE) refuse a database someone is connected to.  A
 * ProcessUtility hook stops the database's worker first: it marks the
 * database (the launcher starts no worker for it while the statement runs),
 * signals the worker, and waits until it is gone; only for a role that
 * owns the database, so that no other role can stop a worker.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* a database whose worker stopped (or could not start) is tried again after this */
#define HS_LAUNCHER_RETRY_MS	10000
/* the databases are listed again at least this often (new ones, with "*") */
#define HS_LAUNCHER_SCAN_MS		10000
/* a database's worker is started at most this often, asked or not */
#define HS_LAUNCHER_MIN_RESTART_MS 1000
/* a statement waits this long at most for a database's worker to be gone */
#define HS_STOP_WAIT_MS			10000

/* pg_database.datconnlimit of a database whose DROP DATABASE was interrupted */
#ifndef DATCONNLIMIT_INVALID_DB
#define DATCONNLIMIT_INVALID_DB -2
#endif

/* A database of the cluster, as the launcher's scan saw it. */
typedef struct HsDbRow
{
	Oid			oid;
	NameData	name;
	bool		servable;		/* allows connections, not a template, not half-dropped */
} HsDbRow;

/* A database the launcher serves, and when to start its worker. */
typedef struct HsServed
{
	Oid			oid;
	NameData	name;
	TimestampTz next_try;		/* 0: at once */
	TimestampTz last_start;
	bool		warned;			/* told why it could not be started */
	bool		asked;			/* a backend asked while its worker was still running */
} HsServed;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* the launcher's own state */
static List *served = NIL;		/* of HsServed, in TopMemoryContext */
static BackgroundWorkerHandle **handles = NULL; /* per slot: the worker started */
static Oid *handle_db = NULL;	/* per slot: its database */
static bool *terminating = NULL;	/* per slot: asked to stop */
static int	nslots = 0;
static bool list_all = false;
static List *list_names = NIL;	/* of char *, in TopMemoryContext */
static List *told_names = NIL;	/* names of the list already logged as not servable */

/* ---- the list ---- */

static void
load_list(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	char	   *error;
	ListCell   *lc;

	list_free_deep(list_names);
	list_names = NIL;
	list_free_deep(told_names);
	told_names = NIL;
	if (!hs_parse_database_list(hs_databases, &list_all, &list_names, &error))
	{
		/* the check hook refuses such a value: never here */
		list_all = false;
		list_names = NIL;
	}
	MemoryContextSwitchTo(old);
	/* say again why a database cannot be served */
	foreach(lc, served)
		((HsServed *) lfirst(lc))->warned = false;
}

/* Log once (per reload) that a name of the list is not served, and why. */
static void
tell_not_served(const char *name, const char *why)
{
	MemoryContext old;
	ListCell   *lc;

	foreach(lc, told_names)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return;
	}
	ereport(LOG,
			(errmsg("hubspot_events launcher: database \"%s\" in hubspot_events.databases is not served: %s",
					name, why)));
	old = MemoryContextSwitchTo(TopMemoryContext);
	told_names = lappend(told_names, pstrdup(name));
	MemoryContextSwitchTo(old);
}

/* Every database of the cluster (pg_database, a shared catalog). */
static HsDbRow *
scan_databases(int *n)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			cap = 16;
	HsDbRow    *rows = palloc(cap * sizeof(HsDbRow));

	*n = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (*n == cap)
		{
			cap *= 2;
			rows = repalloc(rows, cap * sizeof(HsDbRow));
		}
		rows[*n].oid = db->oid;
		rows[*n].name = db->datname;
		rows[*n].servable = db->datallowconn && !db->datistemplate &&
			db->datconnlimit != DATCONNLIMIT_INVALID_DB;
		(*n)++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return rows;
}

static HsServed *
find_served(Oid oid)
{
	ListCell   *lc;

	foreach(lc, served)
	{
		HsServed   *s = lfirst(lc);

		if (s->oid == oid)
			return s;
	}
	return NULL;
}

/* Whether the list names the database. */
static bool
named_in_list(const char *name)
{
	ListCell   *lc;

	if (list_all)
		return true;
	foreach(lc, list_names)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	}
	return false;
}

/* The databases of the list that exist and may be served (served, kept across turns). */
static void
update_served(const HsDbRow *rows, int n)
{
	List	   *now_served = NIL;
	ListCell   *lc;
	MemoryContext old;

	for (int i = 0; i < n; i++)
	{
		const char *name = NameStr(rows[i].name);
		HsServed   *s;

		if (!named_in_list(name))
			continue;
		if (!rows[i].servable)
		{
			if (!list_all)
				tell_not_served(name, "it is a template, does not allow connections, or is invalid");
			continue;
		}
		s = find_served(rows[i].oid);
		if (s == NULL)
			s = MemoryContextAllocZero(TopMemoryContext, sizeof(HsServed));
		s->oid = rows[i].oid;
		s->name = rows[i].name;
		old = MemoryContextSwitchTo(TopMemoryContext);
		now_served = lappend(now_served, s);
		MemoryContextSwitchTo(old);
	}
	/* names of the list that no database has */
	foreach(lc, list_names)
	{
		const char *listed = lfirst(lc);
		bool		exists = false;

		for (int i = 0; i < n && !exists; i++)
			exists = (strcmp(listed, NameStr(rows[i].name)) == 0);
		if (!exists)
			tell_not_served(listed, "no such database");
	}
	/* the databases no longer served are forgotten */
	foreach(lc, served)
	{
		HsServed   *s = lfirst(lc);

		if (!list_member_ptr(now_served, s))
			pfree(s);
	}
	list_free(served);
	served = now_served;
}

/* ---- the workers ---- */

/* The workers that stopped: their slots are free; their databases tried again later. */
static void
reap_workers(TimestampTz now)
{
	for (int i = 0; i < nslots; i++)
	{
		pid_t		pid;
		HsServed   *s;

		if (handles[i] == NULL)
			continue;
		if (GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
			continue;
		s = find_served(handle_db[i]);
		if (s != NULL)
		{
			/* asked while it was exiting (CREATE EXTENSION as it found none): soon */
			s->next_try = s->asked ?
				TimestampTzPlusMilliseconds(s->last_start, HS_LAUNCHER_MIN_RESTART_MS) :
				TimestampTzPlusMilliseconds(now, HS_LAUNCHER_RETRY_MS);
			s->asked = false;
		}
		pfree(handles[i]);
		handles[i] = NULL;
		handle_db[i] = InvalidOid;
		terminating[i] = false;
		hs_shared_release_slot(i);
	}
}

static int
slot_of(Oid oid)
{
	for (int i = 0; i < nslots; i++)
	{
		if (handles[i] != NULL && handle_db[i] == oid)
			return i;
	}
	return -1;
}

/* Start the worker of a database. */
static void
start_worker(HsServed *s, TimestampTz now)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	int			slot = hs_shared_assign_slot(s->oid);
	bool		ok;

	s->next_try = TimestampTzPlusMilliseconds(now, HS_LAUNCHER_RETRY_MS);
	if (slot < 0)
	{
		if (!s->warned)
			ereport(WARNING,
					(errmsg("hubspot_events launcher: database \"%s\" is not served: the %d worker slots of hubspot_events.max_databases are in use",
							NameStr(s->name), nslots),
					 errdetail("At most hubspot_events.max_databases databases are served at once."),
					 errhint("Raise hubspot_events.max_databases (a restart), or name fewer databases in hubspot_events.databases.")));
		s->warned = true;
		return;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "hubspot_events", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "hubspot_events_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "hubspot_events worker for database %s", NameStr(s->name));
	strlcpy(worker.bgw_type, "hubspot_events worker", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(s->oid);
	memcpy(worker.bgw_extra, &slot, sizeof(slot));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		hs_shared_release_slot(slot);
		if (!s->warned)
			ereport(WARNING,
					(errmsg("hubspot_events launcher: could not start the worker of database \"%s\": no background worker slot is free",
							NameStr(s->name)),
					 errhint("Raise max_worker_processes (a restart): it must leave room for the launcher and a worker per database served.")));
		s->warned = true;
		return;
	}
	handles[slot] = handle;
	handle_db[slot] = s->oid;
	terminating[slot] = false;
	s->last_start = now;
	s->warned = false;
	s->asked = false;
}

/*
 * Workers a launcher before this one left (it was terminated): stopped, and
 * their slots freed, so that this launcher has a handle on every worker.
 */
static void
stop_leftover_workers(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HS_STOP_WAIT_MS);

	for (int i = 0; i < nslots; i++)
	{
		pid_t		pid = hs_shared_slot_pid(i);

		if (pid != 0)
			(void) kill(pid, SIGTERM);
		while (hs_shared_slot_pid(i) != 0 && GetCurrentTimestamp() < deadline)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 20, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		hs_shared_release_slot(i);
	}
}

/* One turn; returns how long to sleep (ms). */
static long
launcher_turn(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake = TimestampTzPlusMilliseconds(now, HS_LAUNCHER_SCAN_MS);
	Oid			asked[16];
	int			nasked;
	int			nrows;
	HsDbRow    *rows;
	Oid		   *oids;
	int			running = 0;
	char		state[64];
	ListCell   *lc;

	reap_workers(now);

	rows = scan_databases(&nrows);
	oids = palloc((nrows + 1) * sizeof(Oid));
	for (int i = 0; i < nrows; i++)
		oids[i] = rows[i].oid;
	hs_shared_forget_databases(oids, nrows);
	update_served(rows, nrows);
	pfree(oids);
	pfree(rows);

	/* databases whose backends asked: at once (but not more than once a second) */
	nasked = hs_shared_take_retry_requests(asked, lengthof(asked));
	for (int k = 0; k < nasked; k++)
	{
		HsServed   *s = find_served(asked[k]);

		if (s == NULL)
			continue;
		if (slot_of(s->oid) < 0)
			s->next_try = TimestampTzPlusMilliseconds(s->last_start, HS_LAUNCHER_MIN_RESTART_MS);
		else
			s->asked = true;
	}

	/* stop the workers of databases no longer served, or that a statement needs gone */
	for (int i = 0; i < nslots; i++)
	{
		if (handles[i] == NULL || terminating[i])
			continue;
		if (find_served(handle_db[i]) == NULL || hs_shared_database_stopping(handle_db[i]))
		{
			TerminateBackgroundWorker(handles[i]);
			terminating[i] = true;
		}
	}

	/* start the missing ones */
	foreach(lc, served)
	{
		HsServed   *s = lfirst(lc);

		if (slot_of(s->oid) >= 0)
		{
			running++;
			continue;
		}
		if (hs_shared_database_stopping(s->oid))
			continue;
		if (s->next_try <= now)
		{
			start_worker(s, now);
			if (slot_of(s->oid) >= 0)
				running++;
		}
		if (slot_of(s->oid) < 0 && s->next_try < wake)
			wake = s->next_try;
	}

	if (!list_all && list_names == NIL)
		strlcpy(state, "idle: hubspot_events.databases is empty", sizeof(state));
	else
		snprintf(state, sizeof(state), "running: %d of %d databases have a worker",
				 running, list_length(served));
	hs_shared_launcher_set_state(state);
	return Max(TimestampDifferenceMilliseconds(now, wake), 10);
}

/* At exit (SIGTERM, an ERROR): the launcher's workers stop with it. */
static void
launcher_on_exit(int code, Datum arg)
{
	for (int i = 0; i < nslots; i++)
	{
		if (handles != NULL && handles[i] != NULL)
			TerminateBackgroundWorker(handles[i]);
	}
	hs_shared_launcher_detach();
}

void
hubspot_events_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (!hs_shared_launcher_attach(MyLatch))
	{
		ereport(LOG, (errmsg("hubspot_events launcher: another launcher is running; exiting")));
		proc_exit(1);
	}
	nslots = hs_shared_slot_count();
	handles = MemoryContextAllocZero(TopMemoryContext, nslots * sizeof(BackgroundWorkerHandle *));
	handle_db = MemoryContextAllocZero(TopMemoryContext, nslots * sizeof(Oid));
	terminating = MemoryContextAllocZero(TopMemoryContext, nslots * sizeof(bool));
	before_shmem_exit(launcher_on_exit, (Datum) 0);

	/* the cluster-wide counters start again with the launcher, not with each worker */
	hs_metrics_reset();
	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("hubspot_events launcher");
	stop_leftover_workers();
	load_list();
	ereport(LOG,
			(errmsg("hubspot_events launcher started (hubspot_events.databases = '%s', %d worker slots)",
					hs_databases, nslots)));

	while (!ShutdownRequestPending)
	{
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			load_list();
		}
		wait_ms = launcher_turn();
		if (ShutdownRequestPending)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	ereport(LOG, (errmsg("hubspot_events launcher shutting down")));
	/* exit code 1: the postmaster restarts it after bgw_restart_time, unless the server is stopping */
	proc_exit(1);
}

/* ---- statements that need a database's worker gone ---- */

/* The database a statement needs nobody connected to, if any. */
static const char *
database_to_free(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				DefElem    *d = lfirst_node(DefElem, lc);

				if (strcmp(d->defname, "tablespace") == 0)
					return ((AlterDatabaseStmt *) stmt)->dbname;
			}
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) stmt)->options)
			{
				DefElem    *d = lfirst_node(DefElem, lc);

				if (strcmp(d->defname, "template") == 0 && d->arg != NULL && IsA(d->arg, String))
					return strVal(d->arg);
			}
			break;
		default:
			break;
	}
	return NULL;
}

/* Whether the current role owns the database (or is a superuser). */
static bool
may_stop(Oid dboid)
{
	HeapTuple	tup;
	Oid			owner;

	if (superuser())
		return true;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (!HeapTupleIsValid(tup))
		return false;
	owner = ((Form_pg_database) GETSTRUCT(tup))->datdba;
	ReleaseSysCache(tup);
	return has_privs_of_role(GetUserId(), owner);
}

/*
 * Stop the worker of the database a statement is about to drop, rename,
 * move or copy, and wait (HS_STOP_WAIT_MS at most) until it is gone.
 * Returns the database when it was marked (the caller unmarks it after
 * the statement).
 */
static Oid
stop_worker_of(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	TimestampTz deadline;
	pid_t		pid;
	pid_t		signalled = 0;
	bool		marked;

	/*
	 * Marked even when no worker serves it now: the launcher might be about
	 * to start one.
	 */
	if (!OidIsValid(dboid) || dboid == MyDatabaseId || !may_stop(dboid))
		return InvalidOid;
	pid = hs_shared_mark_stopping(dboid, &marked);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HS_STOP_WAIT_MS);
	for (;;)
	{
		if (pid != 0 && pid != signalled)
		{
			(void) kill(pid, SIGTERM);
			signalled = pid;
		}
		if (!hs_shared_database_served(dboid) || GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/* a worker that was starting when the database was marked */
		{
			int			slot = hs_shared_find_slot(dboid, true);

			pid = slot >= 0 ? hs_shared_slot_pid(slot) : 0;
		}
	}
	if (hs_shared_database_served(dboid))
		ereport(DEBUG1,
				(errmsg("hubspot_events: the worker of database \"%s\" has not exited yet", dbname)));
	return marked ? dboid : InvalidOid;
}

static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
launcher_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						 ProcessUtilityContext context, ParamListInfo params,
						 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *dbname = database_to_free(stmt);
	Oid			marked = dbname != NULL ? stop_worker_of(dbname) : InvalidOid;

	if (OidIsValid(marked))
	{
		PG_TRY();
		{
			run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		}
		PG_FINALLY();
		{
			hs_shared_unmark_stopping(marked);
		}
		PG_END_TRY();
	}
	else
		run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	/* the extension is new here: the launcher starts this database's worker at commit */
	if (IsA(stmt, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) stmt)->extname, "hubspot_events") == 0)
		hs_wake_at_commit();
}

/* From _PG_init, in launcher mode. */
void
hs_launcher_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = launcher_process_utility;
}
