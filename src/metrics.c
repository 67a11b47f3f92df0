/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters for monitoring, in shared memory: every request made to
 *	  HubSpot's API by the worker or a direct call (by HTTP status, and by
 *	  category and 429 policy when it failed), the contacts sent, retries,
 *	  splits, holds, rows failed, and the commit-to-request latency of rows
 *	  sent at their first attempt as a histogram.  Bumped under a spinlock
 *	  (a few adds per request, never a table write); reset when the worker
 *	  starts; read by metrics_counters(), which the view
 *	  hubspot_events.metrics and metrics_text() present with Prometheus'
 *	  names.  Without shared_preload_libraries, nothing is counted.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "fmgr.h"
#include "funcapi.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* distinct HTTP statuses, categories and policies kept; later ones are "other" */
#define HS_METRICS_SLOTS	32
#define HS_METRICS_NAME		48

/* the latency histogram's upper bounds, in seconds (Prometheus' "le") */
static const double latency_bounds[HS_LATENCY_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};

typedef struct HsNamedCount
{
	char		name[HS_METRICS_NAME];
	int64		count;
} HsNamedCount;

typedef struct HsMetricsShared
{
	slock_t		mutex;
	TimestampTz since;
	struct
	{
		int			status;		/* 0: no answer (transport) */
		int64		count;
	}			by_status[HS_METRICS_SLOTS];
	HsNamedCount by_category[HS_METRICS_SLOTS];
	HsNamedCount by_policy[HS_METRICS_SLOTS];
	int64		counters[HS_METRIC_COUNT];
	int64		latency[HS_LATENCY_BUCKETS];	/* per bucket, not cumulative */
	int64		latency_count;
	double		latency_sum;
} HsMetricsShared;

static HsMetricsShared *metrics = NULL;

/* the names of the plain counters (HsMetric), as Prometheus names them */
static const char *const counter_names[HS_METRIC_COUNT] = {
	[HS_METRIC_CONTACTS_SENT] = "hubspot_events_contacts_sent_total",
	[HS_METRIC_RETRIES] = "hubspot_events_retries_total",
	[HS_METRIC_SPLITS] = "hubspot_events_splits_total",
	[HS_METRIC_HOLDS] = "hubspot_events_holds_total",
	[HS_METRIC_ROWS_FAILED] = "hubspot_events_rows_failed_total",
	[HS_METRIC_DRY_RUN_REQUESTS] = "hubspot_events_dry_run_requests_total",
};

Size
hs_metrics_shmem_size(void)
{
	return MAXALIGN(sizeof(HsMetricsShared));
}

/* From the shmem startup hook, under AddinShmemInitLock. */
void
hs_metrics_shmem_startup(void)
{
	bool		found;

	metrics = ShmemInitStruct("hubspot_events metrics", sizeof(HsMetricsShared), &found);
	if (!found)
	{
		memset(metrics, 0, sizeof(HsMetricsShared));
		SpinLockInit(&metrics->mutex);
		metrics->since = GetCurrentTimestamp();
	}
}

/* The worker starts: counters start again from zero. */
void
hs_metrics_reset(void)
{
	if (metrics == NULL)
		return;
	SpinLockAcquire(&metrics->mutex);
	memset((char *) metrics + offsetof(HsMetricsShared, since), 0,
		   sizeof(HsMetricsShared) - offsetof(HsMetricsShared, since));
	metrics->since = GetCurrentTimestamp();
	SpinLockRelease(&metrics->mutex);
}

/* One more of name in a bounded table (under the lock); past its size, "other". */
static void
count_named(HsNamedCount *table, const char *name)
{
	for (int i = 0; i < HS_METRICS_SLOTS; i++)
	{
		if (table[i].name[0] == '\0')
		{
			strlcpy(table[i].name, i == HS_METRICS_SLOTS - 1 ? "other" : name, HS_METRICS_NAME);
			table[i].count = 1;
			return;
		}
		if (strcmp(table[i].name, name) == 0 || i == HS_METRICS_SLOTS - 1)
		{
			table[i].count++;
			return;
		}
	}
}

/*
 * One request to HubSpot's API, by its outcome (hs_api_read_answer): its
 * HTTP status (0 when no answer came), its category when it was not a
 * success, and a 429's policy (the outcome's subCategory then).
 */
void
hs_metrics_count_request(const HsOutcome *o)
{
	const char *category = o->kind == HS_OUTCOME_SENT ? NULL : o->error_category;
	int			i;

	if (metrics == NULL)
		return;
	SpinLockAcquire(&metrics->mutex);
	for (i = 0; i < HS_METRICS_SLOTS - 1; i++)
		if (metrics->by_status[i].count == 0 || metrics->by_status[i].status == o->http_status)
			break;
	/* past the table: the last slot counts every other status, as -1 */
	if (i == HS_METRICS_SLOTS - 1 && metrics->by_status[i].count == 0)
		metrics->by_status[i].status = -1;
	else if (metrics->by_status[i].count == 0)
		metrics->by_status[i].status = o->http_status;
	metrics->by_status[i].count++;
	if (category)
		count_named(metrics->by_category, category);
	if (o->http_status == 429)
		count_named(metrics->by_policy, o->error_subcategory ? o->error_subcategory : "UNKNOWN");
	SpinLockRelease(&metrics->mutex);
}

/* Add n to one of the plain counters. */
void
hs_metrics_add(HsMetric which, int64 n)
{
	if (metrics == NULL || n == 0)
		return;
	SpinLockAcquire(&metrics->mutex);
	metrics->counters[which] += n;
	SpinLockRelease(&metrics->mutex);
}

/* The latency bucket bounds, for the SQL that sorts rows into them. */
const double *
hs_metrics_latency_bounds(void)
{
	return latency_bounds;
}

/*
 * Rows sent at their first attempt: per_bucket[i] of them within
 * latency_bounds[i] (and above the bound before), beyond the last bound the
 * rest of count; sum their seconds.
 */
void
hs_metrics_add_latency(const int64 *per_bucket, int64 count, double sum)
{
	if (metrics == NULL || count == 0)
		return;
	SpinLockAcquire(&metrics->mutex);
	for (int i = 0; i < HS_LATENCY_BUCKETS; i++)
		metrics->latency[i] += per_bucket[i];
	metrics->latency_count += count;
	metrics->latency_sum += sum;
	SpinLockRelease(&metrics->mutex);
}

/* ---- metrics_counters() ---- */

typedef struct HsMetricRow
{
	const char *name;
	char	   *labels;			/* JSON object text */
	double		value;
} HsMetricRow;

static char *
one_label(const char *key, const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	escape_json(&buf, key);
	appendStringInfoChar(&buf, ':');
	escape_json(&buf, value);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Every counter of a snapshot as rows (name, labels, value). */
static List *
snapshot_rows(const HsMetricsShared *s)
{
	List	   *rows = NIL;
	HsMetricRow *r;
	int64		cumulative = 0;

#define ADD_ROW(n, l, v) do { r = palloc(sizeof(HsMetricRow)); r->name = (n); r->labels = (l); \
		r->value = (double) (v); rows = lappend(rows, r); } while (0)

	for (int i = 0; i < HS_METRICS_SLOTS && s->by_status[i].count > 0; i++)
		ADD_ROW("hubspot_events_requests_total",
				one_label("status", s->by_status[i].status == 0 ? "transport" :
						  s->by_status[i].status < 0 ? "other" : psprintf("%d", s->by_status[i].status)),
				s->by_status[i].count);
	for (int i = 0; i < HS_METRICS_SLOTS && s->by_category[i].name[0]; i++)
		ADD_ROW("hubspot_events_errors_total", one_label("category", s->by_category[i].name),
				s->by_category[i].count);
	for (int i = 0; i < HS_METRICS_SLOTS && s->by_policy[i].name[0]; i++)
		ADD_ROW("hubspot_events_rate_limited_total", one_label("policy", s->by_policy[i].name),
				s->by_policy[i].count);
	for (int i = 0; i < HS_METRIC_COUNT; i++)
		ADD_ROW(counter_names[i], pstrdup("{}"), s->counters[i]);
	for (int i = 0; i < HS_LATENCY_BUCKETS; i++)
	{
		cumulative += s->latency[i];
		ADD_ROW("hubspot_events_commit_to_request_seconds_bucket",
				one_label("le", psprintf("%g", latency_bounds[i])), cumulative);
	}
	ADD_ROW("hubspot_events_commit_to_request_seconds_bucket", one_label("le", "+Inf"), s->latency_count);
	ADD_ROW("hubspot_events_commit_to_request_seconds_sum", pstrdup("{}"), s->latency_sum);
	ADD_ROW("hubspot_events_commit_to_request_seconds_count", pstrdup("{}"), s->latency_count);
	ADD_ROW("hubspot_events_counters_since_seconds", pstrdup("{}"),
			(double) (s->since - SetEpochTimestamp()) / USECS_PER_SEC);
#undef ADD_ROW
	return rows;
}

PG_FUNCTION_INFO_V1(hubspot_metrics_counters);

/*
 * metrics_counters(): the counters as (name, labels, value) rows, from one
 * consistent snapshot; no rows when the library is not preloaded.
 */
Datum
hubspot_metrics_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HsMetricsShared snap;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (metrics == NULL)
		PG_RETURN_VOID();
	SpinLockAcquire(&metrics->mutex);
	memcpy(&snap, metrics, sizeof(snap));
	SpinLockRelease(&metrics->mutex);

	foreach(lc, snapshot_rows(&snap))
	{
		HsMetricRow *r = (HsMetricRow *) lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(r->name);
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->labels));
		values[2] = Float8GetDatum(r->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
