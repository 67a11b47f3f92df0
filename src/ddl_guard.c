/*-------------------------------------------------------------------------
 *
 * ddl_guard.c
 *	  Refusing a DDL that would break every write to a table with a
 *	  sync_attendance or sync_event trigger.
 *
 * The triggers find their columns by name at each fire.  Renaming or
 * dropping a mapped column, or changing its type to one the key cannot
 * take, would make every later INSERT, UPDATE and DELETE of the table fail.
 * An event trigger of the extension (guard_sync_triggers, on
 * ddl_command_end of ALTER TABLE) calls check_sync_triggers() for each
 * table altered: it parses every sync trigger of the table (and of its
 * partitions) as a fire would, and its error, which names the trigger, the
 * argument and the column, rolls the DDL back.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/table.h"
#include "catalog/pg_inherits.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(hubspot_check_sync_triggers);

extern Datum hubspot_sync_attendance(PG_FUNCTION_ARGS);
extern Datum hubspot_sync_event(PG_FUNCTION_ARGS);

static void
check_relation(Oid relid)
{
	Relation	rel = try_table_open(relid, AccessShareLock);

	if (rel == NULL)
		return;
	if (rel->trigdesc != NULL)
	{
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *t = &rel->trigdesc->triggers[i];
			FmgrInfo	finfo;

			fmgr_info(t->tgfoid, &finfo);
			if (finfo.fn_addr == hubspot_sync_attendance)
				hs_sync_attendance_check(rel, t);
			else if (finfo.fn_addr == hubspot_sync_event)
				hs_sync_event_check(rel, t);
		}
	}
	table_close(rel, AccessShareLock);
}

/* check_sync_triggers(tbl regclass): throws when a sync trigger of tbl no longer resolves. */
Datum
hubspot_check_sync_triggers(PG_FUNCTION_ARGS)
{
	Oid			relid;
	List	   *rels;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	relid = PG_GETARG_OID(0);
	rels = find_all_inheritors(relid, AccessShareLock, NULL);
	foreach(lc, rels)
		check_relation(lfirst_oid(lc));
	PG_RETURN_VOID();
}
