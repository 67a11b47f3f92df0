/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  Which versions of the extension's schema this library serves.
 *
 * A package upgrade replaces the library at once, in every database of the
 * cluster; each database's schema changes only when ALTER EXTENSION
 * hubspot_events UPDATE runs there.  In between, this library still serves
 * every schema from HS_SCHEMA_MIN on: the enqueue paths, the triggers and
 * the worker use only what that version already has, or look for what is
 * newer and do without it.  An older schema, or one newer than the library,
 * gets one clear message naming both versions and what to run, instead of
 * an error about a missing column on every write.
 *
 * The installed version is read from pg_extension once per transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

/* the oldest schema this library serves */
#define HS_SCHEMA_MIN			"0.4.0"

static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
static int	cached_version = 0;
static char cached_text[64];

/* "a.b.c" as a*10000 + b*100 + c; -1 when it is not of that form */
static int
version_number(const char *v)
{
	int			a,
				b,
				c;
	char		tail;

	if (sscanf(v, "%d.%d.%d%c", &a, &b, &c, &tail) != 3 ||
		a < 0 || b < 0 || b > 99 || c < 0 || c > 99 || a > 999)
		return -1;
	return a * 10000 + b * 100 + c;
}

/* The installed version (0: not installed), and its text; cached per transaction. */
static int
installed_version(const char **vtext)
{
	if (cached_lxid != HS_MY_LXID || cached_lxid == InvalidLocalTransactionId)
	{
		Relation	rel;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		cached_version = 0;
		cached_text[0] = '\0';
		rel = table_open(ExtensionRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
					CStringGetDatum("hubspot_events"));
		scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);

			if (!isnull)
			{
				char	   *v = TextDatumGetCString(d);

				strlcpy(cached_text, v, sizeof(cached_text));
				cached_version = version_number(v);
				pfree(v);
			}
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		cached_lxid = HS_MY_LXID;
	}
	*vtext = cached_text;
	return cached_version;
}

/*
 * Why this library cannot serve this database's schema, or NULL when it
 * can (or when the extension is not installed: the callers say that their
 * own way).  *hint gets what to run.
 */
char *
hs_schema_problem(char **hint)
{
	static int	min_version = 0;
	static int	max_version = 0;
	const char *vtext;
	int			v = installed_version(&vtext);

	*hint = NULL;
	if (v == 0 && vtext[0] == '\0')
		return NULL;
	if (min_version == 0)
	{
		/* parsed once: the enqueue paths ask on every row */
		min_version = version_number(HS_SCHEMA_MIN);
		max_version = version_number(HUBSPOT_EVENTS_VERSION);
	}
	if (v >= min_version && v <= max_version)
		return NULL;
	if (v >= 0 && v < min_version)
	{
		*hint = psprintf("Run ALTER EXTENSION hubspot_events UPDATE in database \"%s\".",
						 get_database_name(MyDatabaseId));
		return psprintf("the hubspot_events library %s serves the extension's schema from version %s on, and this database has version %s",
						HUBSPOT_EVENTS_VERSION, HS_SCHEMA_MIN, vtext);
	}
	/* not of the form a.b.c, or newer than this library */
	*hint = psprintf("Install the hubspot_events library of version %s (and restart the server), or recreate the extension.",
					 vtext);
	return psprintf("the extension's schema in this database has version %s, which the hubspot_events library %s does not know",
					vtext, HUBSPOT_EVENTS_VERSION);
}

/* The installed schema's version as a*10000 + b*100 + c (0: not installed). */
int
hs_schema_version(void)
{
	const char *vtext;

	return Max(installed_version(&vtext), 0);
}

/* Throw when this library cannot serve this database's schema. */
void
hs_require_schema(void)
{
	char	   *hint;
	char	   *problem = hs_schema_problem(&hint);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s", problem),
				 errhint("%s", hint)));
}
