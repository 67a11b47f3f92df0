/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  sync_attendance(): the trigger for attendance tables.  (In progress.)
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "fmgr.h"

PG_FUNCTION_INFO_V1(hubspot_sync_attendance);

Datum
hubspot_sync_attendance(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("sync_attendance is not available in this build yet")));
	PG_RETURN_NULL();
}
