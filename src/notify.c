/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  The worker's notifications on the channel "hubspot_events": small JSON
 *	  payloads ({"kind": ..., "connection": ..., ...}) for the things an
 *	  operator is paged for (rows that ended failed, a queue held or
 *	  released, the daily quota running low or spent).  The worker queues
 *	  them as it works, often outside any transaction, and they go out with
 *	  the next transaction it commits (NOTIFY is delivered at commit), so a
 *	  listener hears of a thing only once it is committed.
 *
 *	  Kinds and their fields (docs/operations.md):
 *	    failed           count, ids (the first HS_NOTIFY_MAX_IDS): one per turn
 *	    held             reason (connection: the one held)
 *	    released         (none): a held connection's requests go through again
 *	    disconnected     reason: an OAuth connection's refresh was answered invalid_grant
 *	    daily_quota_low  remaining, limit: under 10% of the daily limit left
 *	    daily_limit      resumes_at: HubSpot answered 429 DAILY
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "commands/async.h"
#include "utils/json.h"
#include "utils/memutils.h"

/* payloads waiting for a commit, in TopMemoryContext; bounded */
#define HS_NOTIFY_MAX_QUEUED 32

static List *queued = NIL;
static int	dropped = 0;

/* Queue a payload (copied); past HS_NOTIFY_MAX_QUEUED, counted instead. */
static void
queue_payload(StringInfo payload)
{
	MemoryContext old;

	if (list_length(queued) >= HS_NOTIFY_MAX_QUEUED)
	{
		dropped++;
		return;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	queued = lappend(queued, pstrdup(payload->data));
	MemoryContextSwitchTo(old);
}

/* {"kind": kind, "connection": conn, */
static void
begin_conn_payload(StringInfo buf, const char *kind, const char *conn)
{
	initStringInfo(buf);
	appendStringInfoString(buf, "{\"kind\":");
	escape_json(buf, kind);
	appendStringInfoString(buf, ",\"connection\":");
	escape_json(buf, conn ? conn : "default");
}

/* {"kind": kind, "connection": "default", */
static void
begin_payload(StringInfo buf, const char *kind)
{
	begin_conn_payload(buf, kind, "default");
}

/* {"kind": kind, "connection": conn, "reason": reason (its first 1,000 bytes)} */
static void
queue_reason(const char *kind, const char *conn, const char *reason)
{
	StringInfoData buf;
	char	   *shown = pnstrdup(reason, Min(strlen(reason), 1000));

	begin_conn_payload(&buf, kind, conn);
	appendStringInfoString(&buf, ",\"reason\":");
	escape_json(&buf, shown);
	appendStringInfoChar(&buf, '}');
	queue_payload(&buf);
}

/* Whether payloads wait for a commit. */
bool
hs_notify_pending(void)
{
	return queued != NIL;
}

/*
 * NOTIFY every queued payload in the current transaction (they are sent
 * when it commits, lost if it aborts), and forget them.  A queue that
 * overflowed adds one payload saying how many were dropped.
 */
void
hs_notify_flush(void)
{
	ListCell   *lc;

	Assert(IsTransactionState());
	if (dropped > 0)
	{
		StringInfoData buf;

		begin_payload(&buf, "dropped");
		appendStringInfo(&buf, ",\"count\":%d}", dropped);
		Async_Notify(HS_NOTIFY_CHANNEL, buf.data);
		dropped = 0;
	}
	foreach(lc, queued)
		Async_Notify(HS_NOTIFY_CHANNEL, (char *) lfirst(lc));
	list_free_deep(queued);
	queued = NIL;
}

/* Rows that ended failed in one turn: their count and the first ids. */
void
hs_notify_failed(const HsFailedRows *failed)
{
	StringInfoData buf;

	if (failed->count <= 0)
		return;
	begin_payload(&buf, "failed");
	appendStringInfo(&buf, ",\"count\":" INT64_FORMAT ",\"ids\":[", failed->count);
	for (int i = 0; i < failed->nids; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i > 0 ? "," : "", failed->ids[i]);
	appendStringInfoString(&buf, "]}");
	queue_payload(&buf);
}

/* The queue is held (a 401, a 403 MISSING_SCOPES, settings that cannot work). */
void
hs_notify_held(const char *conn, const char *reason)
{
	queue_reason("held", conn, reason);
}

/* An OAuth connection's refresh was answered invalid_grant: uninstalled, or revoked. */
void
hs_notify_disconnected(const char *conn, const char *reason)
{
	queue_reason("disconnected", conn, reason);
}

/* A held queue's requests go through again. */
void
hs_notify_released(const char *conn)
{
	StringInfoData buf;

	begin_conn_payload(&buf, "released", conn);
	appendStringInfoChar(&buf, '}');
	queue_payload(&buf);
}

/* Less than 10% of HubSpot's daily limit is left. */
void
hs_notify_daily_quota_low(int64 remaining, int64 limit)
{
	StringInfoData buf;

	begin_payload(&buf, "daily_quota_low");
	appendStringInfo(&buf, ",\"remaining\":" INT64_FORMAT ",\"limit\":" INT64_FORMAT "}", remaining, limit);
	queue_payload(&buf);
}

/* HubSpot answered 429 with the DAILY policy: sending waits for the reset. */
void
hs_notify_daily_limit(TimestampTz resumes_at)
{
	StringInfoData buf;

	begin_payload(&buf, "daily_limit");
	appendStringInfoString(&buf, ",\"resumes_at\":");
	escape_json(&buf, timestamptz_to_str(resumes_at));
	appendStringInfoChar(&buf, '}');
	queue_payload(&buf);
}

/* Add rows that ended failed to a turn's tally (the first HS_NOTIFY_MAX_IDS ids kept). */
void
hs_failed_rows_add(HsFailedRows *failed, const int64 *ids, int n)
{
	for (int i = 0; i < n && failed->nids < HS_NOTIFY_MAX_IDS; i++)
		failed->ids[failed->nids++] = ids[i];
	failed->count += n;
}
