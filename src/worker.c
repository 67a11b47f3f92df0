/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker that drains the outbox to HubSpot.
 *
 * One worker, registered when the library is in shared_preload_libraries,
 * serves the database named by hubspot_events.database; or, with
 * hubspot_events.databases, the launcher (launcher.c) starts one per
 * database, with the database's OID as its argument, each with a slot of
 * its own in shared memory.  Its loop:
 *
 *	1. sleep on its latch until a transaction that enqueued commits (see
 *	   shared.c), or hubspot_events.poll_interval_ms passes, or the next
 *	   retry is due;
 *	2. in a short transaction, claim due rows (pending, next_attempt_at
 *	   passed, no older open row of the same contact) with FOR UPDATE SKIP
 *	   LOCKED and mark them sending (outbox.c);
 *	3. outside any transaction, send them: rows of one (event, state,
 *	   account) coalesced into requests of up to batch_size, several
 *	   requests in flight at once (http.c);
 *	4. in another short transaction, record each request's outcome on its
 *	   rows.
 *
 * No transaction stays open across HTTP.  A configuration fault (the token
 * rejected, scopes missing, no token file) is not a fault of the rows: the
 * queue is held, rows stay pending with their attempts untouched, one line
 * is logged, and sending resumes after a reload, a change of the token
 * file, or a minute.  An unexpected ERROR is logged and the loop goes on
 * after a pause: the worker never dies of one bad row or request.  On a hot
 * standby it stays idle and resumes by itself after promotion.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define HS_ERROR_PAUSE_MS	1000	/* pause after an unexpected ERROR */
#define HS_RETENTION_EVERY_MS 60000 /* how often sent rows are purged */
/* a subscriber state answered 404 while its event's upsert is recent waits this long */
#define HS_EVENT_PROPAGATION_MS 5000

/* The queue's hold on a configuration fault (the default connection's; hold.c). */
static HsHold hold;

static TimestampTz last_retention = 0;

/*
 * Rows in flight ("sending") outside a turn are left by a crash, a failover,
 * an outcome that could not be recorded, or an operator's edit.  The worker
 * looks for them at its first turn, after a turn that failed or could not
 * record an outcome, and otherwise at most once a second (not at every turn:
 * the index of rows in flight is full of the old versions of the rows a
 * drain has claimed until the outbox is vacuumed, and reading it every turn
 * cost about 2% of the worker's time in a drain).
 */
#define HS_IN_FLIGHT_CHECK_EVERY_MS 1000
static bool in_flight_known_clear = false;
static bool record_failed = false;
static TimestampTz last_in_flight_check = 0;
/* rows claimed since the worker last vacuumed the outbox */
static uint64 claimed_since_vacuum = 0;
static bool logged_standby = false;

/* the connections the last claim looked at (their OAuth refreshes and states to record) */
static List *turn_conns = NIL;

/* this turn's rows that ended failed (NOTIFY); what was told of a hold and of the daily quota */
static HsFailedRows turn_failed;
static bool hold_notified = false;
/* the connection default was paused by a 429 at the last claim */
static bool default_rate_limited = false;
static bool daily_low_notified = false;
static TimestampTz daily_limit_notified = 0;
static bool logged_no_extension = false;
static bool logged_schema_problem = false;
static bool logged_replicated = false;
/* the database served: hubspot_events.database, or the launcher's database's name */
static const char *served_database = NULL;

static void
worker_detach_shared(int code, Datum arg)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	hs_shared->worker_pid = 0;
	hs_shared->worker_latch = NULL;
	strlcpy(hs_shared->state, "stopped", sizeof(hs_shared->state));
	SpinLockRelease(&hs_shared->mutex);
}

static void
worker_attach_shared(void)
{
	if (hs_shared == NULL)
		return;
	SpinLockAcquire(&hs_shared->mutex);
	hs_shared->worker_pid = MyProcPid;
	hs_shared->worker_latch = MyLatch;
	hs_shared->started_at = GetCurrentTimestamp();
	strlcpy(hs_shared->state, "starting", sizeof(hs_shared->state));
	hs_shared->held_reason[0] = '\0';
	SpinLockRelease(&hs_shared->mutex);
	hs_metrics_reset();
	before_shmem_exit(worker_detach_shared, (Datum) 0);
}

static void
process_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		hs_shared_settings_loaded();
	}
}

/*
 * Between slices of HTTP: honour SIGHUP at once, stop on SIGTERM, and
 * service interrupts (a ProcSignalBarrier, which DROP DATABASE anywhere in
 * the cluster waits for; a cancel, which ends the turn as an ERROR).
 */
static bool
worker_stop_check(void)
{
	CHECK_FOR_INTERRUPTS();
	process_reload();
	return ShutdownRequestPending;
}

/* ---- holding the queue on configuration faults ---- */

/* The file whose change ends a hold: the refresh token's with OAuth, else the token's. */
static const char *
hold_file(void)
{
	return hs_oauth_enabled() ? hs_oauth_refresh_token_file : hs_access_token_file;
}

/* Hold the queue; one log line, unless it is already held for the same reason. */
static void
hold_queue(const char *reason)
{
	bool		was_held;
	bool		new_reason;

	hs_hold_set(&hold, reason, hold_file(), &was_held, &new_reason);
	if (!was_held || new_reason)
		ereport(LOG,
				(errmsg("hubspot_events worker: holding the queue: %s", reason),
				 errdetail("Rows stay pending and their attempts are not counted."),
				 errhint("Sending resumes after the configuration is reloaded, the token file changes, or one minute.")));
	/* told once per hold, not at every retry of a held queue: released ends it */
	if (!hold_notified || new_reason)
	{
		hs_notify_held("default", reason);
		if (!hold_notified)
			hs_metrics_add(HS_METRIC_HOLDS, 1);
	}
	hold_notified = true;
	/*
	 * Inside the record's transaction, record_phase publishes the hold once
	 * that transaction has committed: status never says held while the
	 * turn's rows are still in flight in the outbox.
	 */
	if (!IsTransactionState())
		hs_shared_set_state("held", reason);
}

/* Whether a held queue may be tried again; clears the hold when so. */
static bool
hold_released(void)
{
	bool		ended;

	if (!hs_hold_try(&hold, hold_file(), &ended))
		return false;
	if (ended)
		ereport(LOG, (errmsg("hubspot_events worker: trying the held queue again")));
	return true;
}

/* ---- one request's outcome ---- */

/* A request's connection (the worker's request arg is its HsInFlight). */
typedef struct HsInFlight HsInFlight;
static bool is_expired_outcome(const HsOutcome *o);
static HsConn *batch_conn(HsHttpRequest *req);

/*
 * Fill the outcome of one request from its answer (hs_api_read_answer; a
 * 429 waits at least until the pacing's pause ends), and report it to
 * shared memory.  Returns the kind.
 */
static HsOutcomeKind
build_outcome(HsHttpRequest *req, const HsErrorBody *err, HsOutcome *out)
{
	hs_api_read_answer(&req->result, err, out);
	hs_metrics_count_request(out);
	if (out->kind == HS_OUTCOME_SENT)
	{
		hs_shared_count_request(true, NULL, NULL);
		return out->kind;
	}
	if (out->kind == HS_OUTCOME_RATE_LIMITED)
		out->retry_after_ms = Max(out->retry_after_ms, hs_pacing_wait_ms(batch_conn(req)->pacer));
	hs_shared_count_request(false, out->error_category, out->error_message);
	return out->kind;
}

/* ---- sending in waves ---- */

/*
 * An answer's body, once its outcome is built (the outcome holds copies of
 * what it needs): freed at once, not kept until the turn ends.
 */
static void
free_answer(HsHttpRequest *req)
{
	if (req->result.body)
		pfree(req->result.body);
	req->result.body = NULL;
	req->result.body_len = 0;
}

/* A request's final outcome, to record. */
typedef struct HsTurnResult
{
	HsBatch    *batch;
	HsOutcome	outcome;
	bool		unstarted;		/* the pacing held it back: not sent at all */
	bool		recorded;		/* a success recorded already (record_early) */
	HsFailedRows failed;		/* its rows that ended failed, once recorded */
} HsTurnResult;

static void
worker_sleep_ms(int64 ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 (long) ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * A request of a wave: its batch, and its answer's body as parsed once, when
 * it arrives (the pacing, the outcome and the rejection all read it).
 */
struct HsInFlight
{
	HsBatch    *batch;
	HsErrorBody err;
};

static HsConn *
batch_conn(HsHttpRequest *req)
{
	HsBatch    *b = ((HsInFlight *) req->arg)->batch;

	return b->conn ? b->conn : hs_conn_default();
}

/* Pacing per connection: a request waits for its own connection's window. */
static int64
worker_wait_ms(HsHttpRequest *req)
{
	return hs_pacing_wait_ms(batch_conn(req)->pacer);
}

static void
worker_on_start(HsHttpRequest *req)
{
	hs_pacing_note_start(batch_conn(req)->pacer);
}

/* Pacing learns from every answer as it arrives, so a 429 stops the next starts at once. */
static void
worker_on_done(HsHttpRequest *req)
{
	HsInFlight *f = (HsInFlight *) req->arg;
	HsConn	   *c = batch_conn(req);
	char	   *pause;

	hs_parse_error_body(req->result.body, req->result.body_len, &f->err);
	pause = hs_pacing_note_answer(c->pacer, &req->result, &f->err,
								  hs_retry_after_ms(req->result.retry_after));
	if (c->is_default && req->result.ratelimit_daily_remaining >= 0)
	{
		int64		limit,
					remaining;

		/* status shows the default's daily quota */
		if (hs_pacing_daily(c->pacer, &limit, &remaining))
			hs_shared_set_daily(limit, remaining);
	}
	if (pause)
	{
		if (c->is_default)
			ereport(LOG, (errmsg("hubspot_events worker: %s", pause)));
		else
			ereport(LOG, (errmsg("hubspot_events worker: connection \"%s\": %s", c->name, pause)));
		if (!c->is_default)
			return;
		hs_shared_set_pause(hs_pacing_paused_until(c->pacer), pause);
		if (f->err.policy_name && pg_strcasecmp(f->err.policy_name, "DAILY") == 0 &&
			hs_pacing_paused_until(c->pacer) != daily_limit_notified)
		{
			daily_limit_notified = hs_pacing_paused_until(c->pacer);
			hs_notify_daily_limit(daily_limit_notified);
		}
	}
}

/*
 * The attendance endpoints answer 200 and list per-contact errors
 * (hs_api_contact_errors): each row with an error fails with it; the other
 * rows are sent.  Appends the rows' outcomes to *results and returns true
 * when the answer had errors; false (nothing appended) when it had none.
 */
static bool
split_attendance_errors(HsHttpRequest *req, HsBatch *b, const HsOutcome *sent, List **results)
{
	char	  **errors;
	int		   *idx;
	int			nsent = 0;

	if (hs_api_contact_errors(&req->result, b, &errors) <= 0)
		return false;
	idx = palloc(sizeof(int) * b->n);
	for (int j = 0; j < b->n; j++)
	{
		HsTurnResult *tr;

		if (errors[j] == NULL)
		{
			idx[nsent++] = j;
			continue;
		}
		tr = palloc0(sizeof(HsTurnResult));
		tr->batch = hs_batch_pick(b, &j, 1);
		hs_api_contact_error_outcome(errors[j], sent, &tr->outcome);
		*results = lappend(*results, tr);
	}
	if (nsent > 0)
	{
		HsTurnResult *tr = palloc0(sizeof(HsTurnResult));

		tr->batch = hs_batch_pick(b, idx, nsent);
		tr->outcome = *sent;
		*results = lappend(*results, tr);
	}
	return true;
}

/* The rejection of the other half of a split batch, when it was sent in this wave. */
static const HsRejection *
sibling_rejection(const HsInFlight *flights, const HsRejection *rej, int n, const HsBatch *b)
{
	if (b->sibling == NULL)
		return NULL;
	for (int j = 0; j < n; j++)
		if (flights[j].batch == b->sibling)
			return &rej[j];
	return NULL;
}

/*
 * The wave being sent: its requests, and which of their answers are taken
 * (turned into results) already.  The worker records a wave's first
 * successes while its last requests are in flight (record_early).
 */
typedef struct HsWave
{
	HsHttpRequest *reqs;
	HsInFlight *flights;
	HsRejection *rej;
	bool	   *taken;
	int			n;
	List	  **results;
	char	  **hold_reason;
	List	   *next;			/* the halves of split batches: the next wave */
	bool		recorded_early; /* record_early has run for this wave */
} HsWave;

static HsWave *wave_now = NULL;

static void record_early(void);

/*
 * One request's answer (its rejection read: hs_api_read_rejection), into
 * results (or, for a rejected batch, its halves into the next wave); its
 * body is freed.  Returns the request's result when the answer is one
 * outcome for the whole batch, else NULL.
 */
static HsTurnResult *
take_answer(HsWave *w, int i)
{
	HsHttpRequest *req = &w->reqs[i];
	HsBatch    *b = w->flights[i].batch;
	HsTurnResult *tr = palloc0(sizeof(HsTurnResult));

	w->taken[i] = true;
	tr->batch = b;
	if (!req->started)
	{
		/* the pacing held it back: pending again, no attempt used */
		tr->outcome.kind = HS_OUTCOME_RATE_LIMITED;
		tr->outcome.retry_after_ms = Max(hs_pacing_wait_ms(b->conn->pacer), 0);
		tr->unstarted = true;
		*w->results = lappend(*w->results, tr);
		return NULL;
	}
	if (build_outcome(req, &w->flights[i].err, &tr->outcome) == HS_OUTCOME_SENT)
		hs_metrics_add(HS_METRIC_CONTACTS_SENT, b->n);
	if (b->n > 1 && w->rej[i].rejected &&
		hs_batch_split_again(&w->rej[i], sibling_rejection(w->flights, w->rej, w->n, b)))
	{
		HsBatch    *h1,
				   *h2;

		/* counted, but no row records this answer: the halves' will */
		hs_batch_split(b, &h1, &h2);
		hs_metrics_add(HS_METRIC_SPLITS, 1);
		w->next = lappend(lappend(w->next, h1), h2);
		tr = NULL;
	}
	else if (!(tr->outcome.kind == HS_OUTCOME_SENT && b->attendance &&
			   b->kind == HS_KIND_SUBSCRIBER &&
			   split_attendance_errors(req, b, &tr->outcome, w->results)))
	{
		if (tr->outcome.kind == HS_OUTCOME_HOLD && b->conn->auth == HS_AUTH_OAUTH &&
			tr->outcome.http_status == 401 &&
			(is_expired_outcome(&tr->outcome) || !b->conn->reauth_pending))
		{
			/*
			 * HubSpot refused an OAuth connection's access token (expired
			 * early, revoked, the app uninstalled): the next turn refreshes
			 * it, and the refresh tells which (an uninstall answers
			 * invalid_grant).  A new token refused again before any request
			 * went through holds the connection.
			 */
			hs_conn_token_forget(b->conn->name, b->conn->token_now);
			b->conn->reauth_pending = true;
		}
		else if (tr->outcome.kind == HS_OUTCOME_HOLD)
		{
			char	  **why = b->conn->is_default ? w->hold_reason : &b->conn->turn_hold;

			if (*why == NULL)
				*why = psprintf("HubSpot answered HTTP %d %s: %s",
								tr->outcome.http_status,
								tr->outcome.error_category ? tr->outcome.error_category : "",
								tr->outcome.error_message ? tr->outcome.error_message : "");
		}
		else
		{
			b->conn->went_through = true;
			b->conn->reauth_pending = false;
		}
		*w->results = lappend(*w->results, tr);
	}
	else
		tr = NULL;				/* its rows' outcomes are in results */
	free_answer(req);
	return tr;
}

/*
 * Send the batches, paced, and isolate the contacts HubSpot rejects: a
 * request of several contacts answered 400 VALIDATION_ERROR is split in
 * halves and both are resent in the next wave, and a rejected half is split
 * again, down to single contacts, so that only the contacts that fail alone
 * end failed, each with its own answer, and every good contact is sent.
 * Each bad contact costs at most two requests per halving: about
 * 2 x (bad contacts) x log2(batch size) + 1 requests in all.  Splitting
 * stops only when both halves of a split are rejected for the same reason
 * naming no contact of theirs (hs_batch_split_again): the fault is the request's (a
 * bad event id), the rows fail together, and it has cost three requests.
 * Requests the pacing could not start (a long 429 pause) are put back as
 * rate-limited, with no attempt used.
 *
 * Fills *results with the outcome of every row; returns false when SIGTERM
 * stopped it.
 */
static bool
send_in_waves(List *batches, List **results, char **hold_reason)
{
	HsSendHooks hooks = {0};
	List	   *wave = batches;

	hooks.stop_check = worker_stop_check;
	hooks.wait_ms = worker_wait_ms;
	hooks.sleep_ms = worker_sleep_ms;
	hooks.on_start = worker_on_start;
	hooks.on_done = worker_on_done;
	hooks.while_in_flight = record_early;

	pgstat_report_activity(STATE_RUNNING, "hubspot_events: sending");
	while (wave != NIL)
	{
		HsWave		w;
		int			i = 0;
		ListCell   *lc;
		volatile bool finished = false;

		memset(&w, 0, sizeof(w));
		w.n = list_length(wave);
		w.reqs = palloc0(sizeof(HsHttpRequest) * w.n);
		w.flights = palloc0(sizeof(HsInFlight) * w.n);
		w.rej = palloc0(sizeof(HsRejection) * w.n);
		w.taken = palloc0(sizeof(bool) * w.n);
		w.results = results;
		w.hold_reason = hold_reason;
		foreach(lc, wave)
		{
			HsBatch    *b = (HsBatch *) lfirst(lc);

			w.flights[i].batch = b;
			w.reqs[i].url = b->url;
			w.reqs[i].body = b->body;
			w.reqs[i].body_len = b->body_len;
			w.reqs[i].token = b->conn->token_now;
			w.reqs[i].arg = &w.flights[i];
			i++;
		}
		wave_now = &w;
		PG_TRY();
		{
			finished = hs_http_post_many(w.reqs, w.n, NULL, hs_max_concurrency, &hooks);
		}
		PG_FINALLY();
		{
			wave_now = NULL;
		}
		PG_END_TRY();
		if (!finished)
			return false;
		/* every rejection read before any is taken: a split looks at its sibling's */
		for (i = 0; i < w.n; i++)
			if (!w.taken[i] && w.reqs[i].started)
				hs_api_read_rejection(&w.reqs[i].result, &w.flights[i].err, w.flights[i].batch, &w.rej[i]);
		for (i = 0; i < w.n; i++)
			if (!w.taken[i])
				take_answer(&w, i);
		wave = w.next;
	}
	return true;
}

/*
 * hubspot_events.dry_run: every batch built and paced like a request, none
 * sent; their rows are recorded as a dry run.  Returns false when SIGTERM
 * stopped it.
 */
static bool
dry_run_batches(List *batches, List **results)
{
	ListCell   *lc;

	pgstat_report_activity(STATE_RUNNING, "hubspot_events: dry run");
	foreach(lc, batches)
	{
		HsTurnResult *tr = palloc0(sizeof(HsTurnResult));
		HsBatch    *b = (HsBatch *) lfirst(lc);
		int64		wait;

		while ((wait = hs_pacing_wait_ms(b->conn->pacer)) > 0)
		{
			if (worker_stop_check())
				return false;
			worker_sleep_ms(Min(wait, 1000));
		}
		hs_pacing_note_start(b->conn->pacer);
		tr->batch = b;
		tr->outcome.kind = HS_OUTCOME_DRY_RUN;
		*results = lappend(*results, tr);
		hs_metrics_add(HS_METRIC_DRY_RUN_REQUESTS, 1);
	}
	return true;
}

/*
 * Batches whose request could not be built fail alone, with the reason:
 * moved from the list to the results.  Returns the batches to send.
 */
static List *
take_unbuilt(List *batches, List **results)
{
	List	   *keep = NIL;
	ListCell   *lc;

	foreach(lc, batches)
	{
		HsBatch    *b = (HsBatch *) lfirst(lc);
		HsTurnResult *tr;

		if (b->build_error == NULL)
		{
			keep = lappend(keep, b);
			continue;
		}
		tr = palloc0(sizeof(HsTurnResult));
		tr->batch = b;
		tr->outcome.kind = HS_OUTCOME_FAILED;
		tr->outcome.error_category = "REQUEST_NOT_BUILT";
		tr->outcome.error_message = psprintf("the request could not be built: %s", b->build_error);
		tr->outcome.retry_after_ms = -1;
		*results = lappend(*results, tr);
		ereport(LOG,
				(errmsg("hubspot_events worker: %d rows failed: the request could not be built: %s",
						b->n, b->build_error)));
	}
	return keep;
}

/* ---- the token ---- */

/*
 * The token to send, or NULL with *error set (the reason to hold the
 * queue): no token file, an unreadable one, incomplete OAuth settings, or
 * a failed refresh.
 */
static const char *
fetch_token(MemoryContext turn_cxt, HsConn *c, char **error)
{
	const char *volatile token = NULL;

	*error = NULL;
	PG_TRY();
	{
		token = c->is_default ? hs_get_access_token() : hs_conn_token(c);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(turn_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*error = edata->message;
		token = NULL;
	}
	PG_END_TRY();
	return token;
}

/*
 * The HubSpot account a connection sends to, as a key for the rate window
 * that every database's worker sending to it shares (hs_pacer_share): its
 * hub id when known, else a hash of its credential (for OAuth settings,
 * the client and the refresh token's file, which outlive the access
 * tokens).  The top bit tells a hash from a hub id.
 */
static uint64
account_key(const HsConn *c)
{
	StringInfoData buf;
	uint64		h;

	if (c->hub_id > 0)
		return (uint64) c->hub_id;
	initStringInfo(&buf);
	if (c->is_default && hs_oauth_enabled())
		appendStringInfo(&buf, "oauth %s %s", hs_oauth_client_id, hs_oauth_refresh_token_file);
	else if (c->token_now)
		appendStringInfo(&buf, "token %s", c->token_now);
	else
		return 0;
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0x4853);
	explicit_bzero(buf.data, buf.len);
	pfree(buf.data);
	return h | (UINT64CONST(1) << 63);
}

/* Every batch held: rows pending again, no attempt used. */
static void
hold_all(List *batches, List **results)
{
	ListCell   *lc;

	foreach(lc, batches)
	{
		HsTurnResult *tr = palloc0(sizeof(HsTurnResult));

		tr->batch = (HsBatch *) lfirst(lc);
		tr->outcome.kind = HS_OUTCOME_HOLD;
		*results = lappend(*results, tr);
	}
}

static bool
is_expired_outcome(const HsOutcome *o)
{
	return o->kind == HS_OUTCOME_HOLD && o->http_status == 401 &&
		o->error_category && strcmp(o->error_category, "EXPIRED_AUTHENTICATION") == 0;
}

/* Why the first held result holds the queue (as send_in_waves says it), or NULL. */
static char *
first_hold_reason(List *results)
{
	ListCell   *lc;

	foreach(lc, results)
	{
		HsTurnResult *tr = (HsTurnResult *) lfirst(lc);

		if (tr->outcome.kind == HS_OUTCOME_HOLD)
			return psprintf("HubSpot answered HTTP %d %s: %s",
							tr->outcome.http_status,
							tr->outcome.error_category ? tr->outcome.error_category : "",
							tr->outcome.error_message ? tr->outcome.error_message : "");
	}
	return NULL;
}

/* ---- recording outcomes ---- */

/*
 * Run one recording step in a subtransaction of its own.  When it fails (a
 * trigger or constraint a DBA put on the outbox, a lock conflict, a broken
 * answer), the error is logged as a WARNING and its rows stay "sending":
 * the next turn makes them pending again, or failed (OUTCOME_NOT_RECORDED)
 * once they have used max_attempts, so that no failure makes a row go out
 * without bound.  The other steps are recorded all the same.  Returns false
 * when the step failed.
 */
static bool
record_in_subxact(void (*step) (void *arg), void *arg, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		record_failed = true;
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("hubspot_events worker: could not record %s: %s", what, edata->message),
				 errdetail("Its rows stay in flight: the next turn makes them pending again, or failed once they have used hubspot_events.max_attempts.")));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

typedef struct HsSentSet
{
	HsBatch   **batches;
	const HsOutcome **outcomes;
	int			n;
} HsSentSet;

static void
record_sent_step(void *arg)
{
	HsSentSet  *set = (HsSentSet *) arg;

	hs_outbox_record_sent(set->batches, set->outcomes, set->n);
}

static void
record_dry_run_step(void *arg)
{
	HsSentSet  *set = (HsSentSet *) arg;

	hs_outbox_record_dry_run(set->batches, set->n);
}

/*
 * One request's outcome.  A 404 on a subscriber state whose event has an
 * upsert pending, in flight or sent in the last few minutes is HubSpot not
 * knowing the event yet (its own propagation): retried, not failed.
 */
static void
record_one_step(void *arg)
{
	HsTurnResult *tr = (HsTurnResult *) arg;
	HsBatch    *b = tr->batch;

	if (tr->outcome.kind == HS_OUTCOME_FAILED && tr->outcome.http_status == 404 &&
		b->kind == HS_KIND_SUBSCRIBER && b->external_event_id && b->external_account_id &&
		hs_outbox_event_upsert_recent(b->external_event_id, b->external_account_id,
									  b->conn ? b->conn->name : NULL))
	{
		tr->outcome.kind = HS_OUTCOME_RETRY;
		tr->outcome.retry_after_ms = Max(tr->outcome.retry_after_ms, HS_EVENT_PROPAGATION_MS);
	}
	memset(&tr->failed, 0, sizeof(tr->failed));
	hs_outbox_record(b, &tr->outcome, &tr->failed);
}

/* A recorded request's failed rows, into the turn's tally. */
static void
add_failed(const HsFailedRows *f)
{
	hs_failed_rows_add(&turn_failed, f->ids, f->nids);
	turn_failed.count += f->count - f->nids;
}

/*
 * Record a turn's outcomes (in the caller's transaction): every success in
 * one statement, each other request's outcome on its own, the requests the
 * pacing held back together; each in a subtransaction, so that one that
 * cannot be recorded does not lose the others.
 */
static void
record_outcomes(List *results)
{
	int			n = list_length(results);
	HsSentSet	sent;
	HsSentSet	dry;
	List	   *unsent = NIL;
	ListCell   *lc;

	sent.batches = palloc(sizeof(HsBatch *) * Max(n, 1));
	sent.outcomes = palloc(sizeof(HsOutcome *) * Max(n, 1));
	sent.n = 0;
	dry.batches = palloc(sizeof(HsBatch *) * Max(n, 1));
	dry.outcomes = NULL;
	dry.n = 0;
	foreach(lc, results)
	{
		HsTurnResult *tr = (HsTurnResult *) lfirst(lc);

		if (tr->recorded)
			continue;
		if (tr->outcome.kind == HS_OUTCOME_DRY_RUN)
			dry.batches[dry.n++] = tr->batch;
		else if (tr->outcome.kind == HS_OUTCOME_SENT)
		{
			sent.batches[sent.n] = tr->batch;
			sent.outcomes[sent.n++] = &tr->outcome;
		}
		else if (tr->unstarted)
			unsent = lappend(unsent, tr);
		else if (record_in_subxact(record_one_step, tr, "a request's outcome"))
		{
			add_failed(&tr->failed);
			if (tr->outcome.kind == HS_OUTCOME_RETRY)
				hs_metrics_add(HS_METRIC_RETRIES, tr->batch->n - tr->failed.count);
		}
	}
	if (dry.n > 0)
		(void) record_in_subxact(record_dry_run_step, &dry, "the turn's dry run");
	if (sent.n > 0 && !record_in_subxact(record_sent_step, &sent, "the turn's successes"))
	{
		/* one at a time, so that only the requests that cannot be recorded stay in flight */
		for (int i = 0; i < sent.n; i++)
		{
			HsTurnResult one;

			memset(&one, 0, sizeof(one));
			one.batch = sent.batches[i];
			one.outcome = *sent.outcomes[i];
			if (record_in_subxact(record_one_step, &one, "a successful request's outcome"))
				add_failed(&one.failed);
		}
	}
	/* the requests the pacing held back share one outcome per connection: one statement each */
	while (unsent != NIL)
	{
		HsTurnResult merged = *(HsTurnResult *) linitial(unsent);
		HsConn	   *c = merged.batch->conn;
		HsBatch   **parts = palloc(sizeof(HsBatch *) * list_length(unsent));
		int			nparts = 0;
		List	   *rest = NIL;

		foreach(lc, unsent)
		{
			HsTurnResult *tr = (HsTurnResult *) lfirst(lc);

			if (tr->batch->conn == c)
				parts[nparts++] = tr->batch;
			else
				rest = lappend(rest, tr);
		}
		merged.batch = hs_batch_merge(parts, nparts);
		(void) record_in_subxact(record_one_step, &merged, "the requests held back by the pacing");
		unsent = rest;
	}
}

/*
 * Whether an answer is one success for its whole batch: a 2xx, not from an
 * attendance endpoint (which lists per-contact errors in a 200).
 */
static bool
is_plain_success(const HsHttpRequest *req, const HsBatch *b)
{
	return req->done && req->result.transport_ok &&
		req->result.http_status >= 200 && req->result.http_status < 300 &&
		!(b->attendance && b->kind == HS_KIND_SUBSCRIBER);
}

/*
 * While a wave's last requests are in flight (all of them started), the
 * successes already answered are recorded in a transaction of their own,
 * so that recording them overlaps HubSpot's answering the others instead
 * of following it.  Once per wave, when they are at least half of its
 * requests.  A success that cannot be recorded here is left to the record
 * phase, which tries it again.  Never inside a transaction (the send phase
 * runs outside one).
 */
static void
record_early(void)
{
	HsWave	   *w = wave_now;
	MemoryContext cxt = CurrentMemoryContext;
	HsSentSet	set;
	HsTurnResult **trs;
	int			ndone = 0;

	if (w == NULL || w->recorded_early || IsTransactionState())
		return;
	for (int i = 0; i < w->n; i++)
		if (!w->taken[i] && is_plain_success(&w->reqs[i], w->flights[i].batch))
			ndone++;
	if (ndone == 0 || ndone * 2 < w->n)
		return;
	w->recorded_early = true;

	set.batches = palloc(sizeof(HsBatch *) * ndone);
	set.outcomes = palloc(sizeof(HsOutcome *) * ndone);
	set.n = 0;
	trs = palloc(sizeof(HsTurnResult *) * ndone);
	for (int i = 0; i < w->n; i++)
	{
		HsTurnResult *tr;

		if (w->taken[i] || !is_plain_success(&w->reqs[i], w->flights[i].batch))
			continue;
		hs_api_read_rejection(&w->reqs[i].result, &w->flights[i].err, w->flights[i].batch, &w->rej[i]);
		tr = take_answer(w, i);
		if (tr == NULL || tr->outcome.kind != HS_OUTCOME_SENT)
			continue;
		trs[set.n] = tr;
		set.batches[set.n] = tr->batch;
		set.outcomes[set.n++] = &tr->outcome;
	}
	if (set.n == 0)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "hubspot_events: recording outcomes");
	hs_outbox_lock_first();
	if (record_in_subxact(record_sent_step, &set, "the turn's successes"))
		for (int k = 0; k < set.n; k++)
			trs[k]->recorded = true;
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_RUNNING, "hubspot_events: sending");
}

/* ---- the loop ---- */

/*
 * How many rows a turn claims: two waves of full requests, and at least
 * HS_MIN_CLAIM rows, so that the turn's fixed cost (two transactions, a few
 * statements) is spread over many rows even with small batches.  Requests
 * that the pacing cannot start go back to pending with no attempt used.
 */
#define HS_MIN_CLAIM 500
#define HS_MAX_CLAIM 5000

static int
claim_size(void)
{
	int64		n = (int64) 2 * hs_max_concurrency * hs_batch_size;

	return (int) Min(Max(n, HS_MIN_CLAIM), HS_MAX_CLAIM);
}

/*
 * The gate of a turn: whether sending may be tried now.  Not on a standby,
 * not with settings refused at start or OAuth settings that cannot work
 * (the queue is held), not while a hold lasts, not during a 429 pause
 * (*wait_ms is then the pause's rest, at most the poll interval).
 */
static bool
turn_gate(long *wait_ms)
{
	char	   *problem;

	if (RecoveryInProgress())
	{
		if (!logged_standby)
			ereport(LOG,
					(errmsg("hubspot_events worker: the server is a standby; the worker stays idle until promotion")));
		logged_standby = true;
		hs_shared_set_state("standby", NULL);
		return false;
	}
	if (logged_standby)
	{
		ereport(LOG, (errmsg("hubspot_events worker: the server was promoted; resuming the outbox")));
		logged_standby = false;
	}

	/* a CA file or endpoint refused at start: never send with the default instead */
	if (hs_settings_refused())
	{
		hold_queue(psprintf("%s in the server's configuration was refused when the server started; correct it and reload",
							hs_settings_refused()));
		return false;
	}

	/*
	 * OAuth settings that cannot work hold the connection default until a
	 * reload fixes them; the other connections go on.
	 */
	problem = hs_oauth_settings_problem();
	if (problem)
		hold_queue(psprintf("the OAuth settings cannot work: %s", problem));
	return true;
}

/*
 * Whether a connection may be sent through now: not held (or its hold may
 * be tried again), not disconnected, not paused by a 429, and its window
 * has room.  Otherwise *soonest_ms (when it is >= 0 or -1 for none) becomes
 * the sooner of itself and when this connection may be tried again.
 */
static void
note_soonest(int64 *soonest_ms, int64 ms)
{
	ms = Max(ms, 1);
	if (*soonest_ms < 0 || ms < *soonest_ms)
		*soonest_ms = ms;
}

static bool
conn_ready(HsConn *c, int64 *soonest_ms)
{
	TimestampTz paused;

	if (c->is_default)
	{
		if (hold.held && !hold_released())
			return false;
	}
	else
	{
		if (c->disconnected)
		{
			/* until connect_oauth() makes it active again; a session waiting for its token is told */
			hs_conn_token_fail(c->name, "the connection is disconnected: connect it again with connect_oauth()");
			return false;
		}
		if (c->hold.held && !hs_conn_hold_released(c))
		{
			note_soonest(soonest_ms, HS_HOLD_RETRY_MS);
			return false;
		}
	}
	paused = hs_pacing_paused_until(c->pacer);
	if (paused != 0)
	{
		if (c->is_default)
			default_rate_limited = true;
		note_soonest(soonest_ms, (paused - GetCurrentTimestamp()) / 1000);
		return false;
	}
	if (c->is_default)
		hs_shared_set_pause(0, NULL);
	if (hs_pacing_room(c->pacer, 1) == 0)
	{
		note_soonest(soonest_ms, hs_pacing_wait_ms(c->pacer));
		return false;
	}
	return true;
}

/*
 * Claim a connection's due rows, at most max_rows and what its window lets
 * start now; each claimed row knows its connection.  When it has none,
 * *soonest_ms learns when one will be due.
 */
static List *
claim_for(HsConn *c, int max_rows, int64 *soonest_ms)
{
	int			room = hs_pacing_room(c->pacer, HS_MAX_CLAIM);
	int64		n = Min((int64) max_rows, (int64) room * hs_batch_size);
	List	   *rows;
	ListCell   *lc;

	if (n <= 0)
		return NIL;
	/*
	 * The rows of outbox_rows first; from 0.9.0 on, only when the turn's
	 * look at the pending connections found some there (a drain of the
	 * intake alone does not plan and run claim_due() at every turn, 4% of
	 * the worker's CPU)
	 */
	if (hs_schema_version() < HS_SCHEMA_0_9_0 || c->rows_pending)
		rows = hs_outbox_claim((int) n, c->is_default ? NULL : c->name, &turn_failed);
	else
		rows = NIL;
	/* then the intake's rows (schema 0.9.0 on), younger than any of its contacts' rows above */
	if (hs_schema_version() >= HS_SCHEMA_0_9_0 && list_length(rows) < n)
		rows = list_concat(rows, hs_intake_claim(c->name, (int) n - list_length(rows),
												 hs_pacing_rate_per_s(c->pacer), &turn_failed));
	foreach(lc, rows)
		((HsClaimedRow *) lfirst(lc))->conn = c;
	if (rows == NIL)
	{
		int64		due = hs_outbox_next_due_ms(c->is_default ? NULL : c->name);

		if (due >= 0)
			note_soonest(soonest_ms, due);
	}
	return rows;
}

/*
 * The claim of a turn, shared fairly among the connections with due rows:
 * each ready connection claims at most its share of claim_size() (and at
 * least a request's worth), starting each turn with the next connection
 * (round robin), so that one connection's backlog never delays another's
 * new rows by more than a turn.  Rows of a connection the table no longer
 * has fail (CONNECTION_DROPPED).  *soonest_ms: when, if nothing was
 * claimed, a connection may have rows to send (-1: none).
 */
static List *
claim_connections(int64 *soonest_ms)
{
	static uint32 rotation = 0;
	List	   *pending;
	List	   *rows = NIL;
	HsConn	  **ready;
	int			nready = 0;
	int			budget = claim_size();
	int			share;
	ListCell   *lc;

	*soonest_ms = -1;
	turn_conns = NIL;
	/* status says "rate limited" while the default's 429 pause lasts, whatever else is due */
	default_rate_limited = hs_pacing_paused_until(hs_conn_default()->pacer) != 0;
	if (hs_schema_version() < HS_SCHEMA_0_8_0)
	{
		/* one connection, the default, before connections existed */
		HsConn	   *c = hs_conn_default();

		return conn_ready(c, soonest_ms) ? claim_for(c, budget, soonest_ms) : NIL;
	}

	/* the intake's rows (schema 0.9.0 on): read again when due, then their connections */
	if (hs_schema_version() >= HS_SCHEMA_0_9_0)
		hs_intake_sweep();
	pending = hs_conn_load_pending(hs_conn_tokens_wanted(),
								   hs_schema_version() >= HS_SCHEMA_0_9_0 ? hs_intake_connections() : NIL);
	turn_conns = pending;
	ready = palloc(sizeof(HsConn *) * Max(list_length(pending), 1));
	foreach(lc, pending)
	{
		HsConn	   *c = (HsConn *) lfirst(lc);

		c->turn_hold = NULL;
		c->went_through = false;
		if (!c->has_pending)
		{
			/* only a session waits for its OAuth token */
			if (!c->exists)
				hs_conn_token_fail(c->name, "the connection does not exist");
			else if (c->auth != HS_AUTH_OAUTH)
				hs_conn_token_fail(c->name, "the connection is not an OAuth connection");
			else if (c->disconnected)
				hs_conn_token_fail(c->name, "the connection is disconnected: connect it again with connect_oauth()");
			else
				hs_conn_prepare_oauth(c, CurrentMemoryContext);
		}
		else if (!c->exists)
			hs_outbox_fail_dropped(c->name, &turn_failed);
		else if (c->next_ms > 0)
			note_soonest(soonest_ms, c->next_ms);
		else if (conn_ready(c, soonest_ms))
		{
			hs_conn_prepare_oauth(c, CurrentMemoryContext);
			ready[nready++] = c;
		}
		else if (hs_schema_version() >= HS_SCHEMA_0_9_0)
			hs_intake_unready(c->name);
	}
	if (nready == 0)
		return NIL;
	share = Max(hs_batch_size, budget / nready);
	for (int k = 0; k < nready && budget > 0; k++)
	{
		HsConn	   *c = ready[(rotation + k) % nready];
		List	   *got = claim_for(c, Min(share, budget), soonest_ms);

		budget -= list_length(got);
		rows = list_concat(rows, got);
	}
	rotation++;
	return rows;
}

/*
 * Whether this database's outbox may be drained (in the claim's
 * transaction): the extension is installed, its schema is one the library
 * serves, and the outbox is not a logical-replication target.  Otherwise
 * says why, once, and sets the worker's state.
 */
static bool
outbox_usable(void)
{
	char	   *hint;
	char	   *problem;
	char	   *subscription;

	if (!hs_outbox_available())
	{
		if (!logged_no_extension)
			ereport(LOG,
					(errmsg("hubspot_events worker: the extension hubspot_events (0.2.0 or later) is not installed in database \"%s\"; waiting for it",
							served_database)));
		logged_no_extension = true;
		hs_shared_set_state("waiting for CREATE EXTENSION", NULL);
		return false;
	}
	logged_no_extension = false;

	problem = hs_schema_problem(&hint);
	if (problem)
	{
		if (!logged_schema_problem)
			ereport(LOG,
					(errmsg("hubspot_events worker: %s; waiting", problem),
					 errhint("%s", hint)));
		logged_schema_problem = true;
		hs_shared_set_state("waiting for ALTER EXTENSION UPDATE", NULL);
		return false;
	}
	logged_schema_problem = false;

	subscription = hs_outbox_replicated_by();
	if (subscription)
	{
		char	   *reason = psprintf("the outbox is replicated into this database by subscription \"%s\": its rows are sent by the publisher's worker",
									  subscription);

		if (!logged_replicated)
			ereport(LOG,
					(errmsg("hubspot_events worker: not sending: %s", reason),
					 errhint("Exclude hubspot_events.outbox from the subscription (or stop the worker here with hubspot_events.database), so that nothing is sent twice.")));
		logged_replicated = true;
		hs_shared_set_state("held", reason);
		return false;
	}
	logged_replicated = false;
	return true;
}

/*
 * Nothing is in flight between turns (one worker per cluster, one turn at a
 * time), so any row still "sending" was left by a crash, a failover, a
 * SIGTERM or an outcome that could not be recorded: it is pending again,
 * with that attempt counted.  The intake (schema 0.9.0 on), which only a
 * sequential scan reads, is searched too when the last turn may have left
 * rows in flight there (at the worker's start, after a turn that failed).
 */
static void
recover_in_flight(void)
{
	uint64		nfailed;
	uint64		n = hs_outbox_reset_sending(hs_max_attempts, !in_flight_known_clear, &nfailed);

	turn_failed.count += nfailed;

	if (n > nfailed)
		ereport(LOG,
				(errmsg("hubspot_events worker: %llu rows left in flight by a crash, a failover or an unrecorded outcome are pending again",
						(unsigned long long) (n - nfailed))));
	if (nfailed > 0)
		ereport(LOG,
				(errmsg("hubspot_events worker: %llu rows left in flight have used hubspot_events.max_attempts and failed with OUTCOME_NOT_RECORDED",
						(unsigned long long) nfailed)));
}

/* What the claim's transaction found. */
typedef enum HsClaimResult
{
	HS_CLAIM_UNUSABLE,			/* the outbox cannot be drained (outbox_usable) */
	HS_CLAIM_PAUSED,			/* pause() is in force */
	HS_CLAIM_NOTHING_DUE,		/* no row is due; *next_due_ms: when one will be (-1: none) */
	HS_CLAIM_ROWS				/* *rows are claimed ("sending") */
} HsClaimResult;

/*
 * The claim, in a short transaction of its own: the outbox's checks, rows
 * left in flight, the retention purge, then up to claim_size() due rows
 * (allocated in turn_cxt).
 */
static HsClaimResult
claim_phase(MemoryContext turn_cxt, List **rows, int64 *next_due_ms)
{
	HsClaimResult result;

	*rows = NIL;
	*next_due_ms = -1;
	memset(&turn_failed, 0, sizeof(turn_failed));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "hubspot_events: claiming due rows");
	hs_outbox_lock_first();

	if (!outbox_usable())
		result = HS_CLAIM_UNUSABLE;
	else
	{
		if (!in_flight_known_clear ||
			TimestampDifferenceExceeds(last_in_flight_check, GetCurrentTimestamp(),
									   HS_IN_FLIGHT_CHECK_EVERY_MS))
		{
			recover_in_flight();
			in_flight_known_clear = true;
			last_in_flight_check = GetCurrentTimestamp();
		}
		if (hs_sent_retention_s > 0 &&
			TimestampDifferenceExceeds(last_retention, GetCurrentTimestamp(), HS_RETENTION_EVERY_MS))
		{
			hs_outbox_purge_retention(hs_sent_retention_s);
			last_retention = GetCurrentTimestamp();
		}
		if (hs_outbox_paused())
			result = HS_CLAIM_PAUSED;
		else if (hs_dry_run && hs_schema_version() < HS_SCHEMA_0_7_0)
		{
			hold_queue("hubspot_events.dry_run needs the extension's schema 0.7.0 or later: run ALTER EXTENSION hubspot_events UPDATE, or turn dry_run off and reload");
			result = HS_CLAIM_UNUSABLE;
		}
		else
		{
			MemoryContext old = MemoryContextSwitchTo(turn_cxt);

			*rows = claim_connections(next_due_ms);
			MemoryContextSwitchTo(old);
			result = *rows != NIL ? HS_CLAIM_ROWS : HS_CLAIM_NOTHING_DUE;
		}
	}

	/* no record phase follows: tell now of the rows the claim failed */
	if (result != HS_CLAIM_ROWS)
	{
		hs_notify_failed(&turn_failed);
		hs_metrics_add(HS_METRIC_ROWS_FAILED, turn_failed.count);
	}
	hs_notify_flush();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* the commit leaves TopMemoryContext current: the turn's allocations belong to the turn */
	MemoryContextSwitchTo(turn_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/*
 * Nothing is due: if a backlog has gone through since the last vacuum,
 * vacuum now, before the old versions of its rows slow the next claims
 * (hs_outbox_vacuum).
 */
static void
idle_housekeeping(MemoryContext turn_cxt)
{
	if (hs_vacuum_after <= 0 || claimed_since_vacuum < (uint64) hs_vacuum_after)
		return;
	hs_shared_set_state("vacuuming the outbox", NULL);
	pgstat_report_activity(STATE_RUNNING, "hubspot_events: vacuuming the outbox");
	/* not done while autovacuum holds the outbox: again at the next idle turn */
	if (hs_outbox_vacuum(AllocSetContextCreate(turn_cxt, "hubspot_events vacuum", ALLOCSET_DEFAULT_SIZES)))
		claimed_since_vacuum = 0;
	MemoryContextSwitchTo(turn_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
}

/*
 * An OAuth token HubSpot calls expired (revoked early, or it expired during
 * a long turn): refresh once, and send those requests again.  Returns false
 * when SIGTERM stopped the sending.
 */
static bool
resend_expired(MemoryContext turn_cxt, List **results, char **hold_reason)
{
	HsConn	   *def = hs_conn_default();
	const char *token = def->token_now;
	List	   *expired = NIL;
	List	   *kept = NIL;
	char	   *token_error = NULL;
	ListCell   *lc;

	foreach(lc, *results)
	{
		HsTurnResult *tr = (HsTurnResult *) lfirst(lc);

		if (is_expired_outcome(&tr->outcome) && tr->batch->conn == def)
			expired = lappend(expired, tr->batch);
		else
			kept = lappend(kept, tr);
	}
	if (expired == NIL)
		return true;
	*results = kept;
	*hold_reason = first_hold_reason(kept);
	if (token)
		hs_oauth_token_expired(token);
	def->token_now = fetch_token(turn_cxt, def, &token_error);
	if (token_error != NULL)
	{
		hold_all(expired, results);
		*hold_reason = token_error;
		return true;
	}
	return send_in_waves(expired, results, hold_reason);
}

/*
 * Outside any transaction: refresh the OAuth connections' access tokens
 * the claim found missing or about to expire (hs_conn_prepare_oauth opened
 * their refresh tokens).
 */
static void
refresh_oauth_connections(MemoryContext turn_cxt)
{
	ListCell   *lc;

	foreach(lc, turn_conns)
	{
		HsConn	   *c = (HsConn *) lfirst(lc);

		if (c->refresh_token)
		{
			pgstat_report_activity(STATE_RUNNING, "hubspot_events: refreshing a connection's OAuth token");
			hs_conn_refresh_oauth(c, turn_cxt);
		}
	}
}

/* Whether a refresh left something for the table: a rotated token, a hub id, a disconnection. */
static bool
oauth_state_to_record(void)
{
	ListCell   *lc;

	foreach(lc, turn_conns)
	{
		HsConn	   *c = (HsConn *) lfirst(lc);

		if (c->new_refresh_token || c->new_hub_id > 0 || (c->disconnected_reason && !c->disconnected))
			return true;
	}
	return false;
}

/* The connections' states a turn that claimed nothing learned, in a transaction of their own. */
static void
record_oauth_alone(MemoryContext turn_cxt)
{
	ListCell   *lc;

	if (!oauth_state_to_record())
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, turn_conns)
		hs_conn_record_state((HsConn *) lfirst(lc), false);
	hs_notify_flush();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(turn_cxt);
}

/*
 * The sending, outside any transaction: the claimed rows coalesced into
 * requests, sent in waves with the token (all held when there is none).
 * Returns false when SIGTERM stopped it: the rows stay "sending", pending
 * again at the next turn.
 */
static bool
send_phase(MemoryContext turn_cxt, List *rows, List **results, char **hold_reason)
{
	List	   *batches = NIL;
	List	   *sendable = NIL;
	ListCell   *lc;
	int			start = 0;
	int			nrows = list_length(rows);
	bool		default_sent = false;

	hs_shared_set_state("sending", NULL);
	refresh_oauth_connections(turn_cxt);
	foreach(lc, rows)
		((HsClaimedRow *) lfirst(lc))->conn->token_now = NULL;
	/* each connection's rows (claimed together, in claim order) coalesced apart */
	while (start < nrows)
	{
		HsConn	   *c = ((HsClaimedRow *) list_nth(rows, start))->conn;
		int			end = start;
		List	   *part = NIL;
		List	   *group;
		ListCell   *lb;

		while (end < nrows && ((HsClaimedRow *) list_nth(rows, end))->conn == c)
			part = lappend(part, list_nth(rows, end++));
		group = hs_batch_group(part, hs_batch_size);
		foreach(lb, group)
			((HsBatch *) lfirst(lb))->conn = c;
		batches = list_concat(batches, group);
		start = end;
	}
	batches = take_unbuilt(batches, results);
	if (hs_dry_run)
		return dry_run_batches(batches, results);

	/* each connection's token; a connection without one is held */
	foreach(lc, batches)
	{
		HsBatch    *b = (HsBatch *) lfirst(lc);
		HsConn	   *c = b->conn;
		char	   *token_error = NULL;

		if (c->token_now == NULL && c->turn_hold == NULL && !(c->is_default && *hold_reason))
		{
			c->token_now = fetch_token(turn_cxt, c, &token_error);
			if (token_error != NULL)
			{
				if (c->is_default)
					*hold_reason = token_error;
				else
					c->turn_hold = token_error;
			}
			else
				hs_pacer_share(c->pacer, account_key(c));
		}
		if (c->token_now == NULL)
			hold_all(list_make1(b), results);
		else
		{
			sendable = lappend(sendable, b);
			default_sent |= c->is_default;
		}
	}
	if (!send_in_waves(sendable, results, hold_reason))
		return false;
	if (default_sent && hs_oauth_enabled())
		return resend_expired(turn_cxt, results, hold_reason);
	return true;
}

/*
 * What a turn tells listeners, queued in the record phase's transaction and
 * sent when it commits: the rows that ended failed, a hold (hold_queue), the
 * end of a hold (a request went through), the daily quota under 10%.
 */
static void
turn_notes(List *results, const char *hold_reason)
{
	int64		limit;
	int64		remaining;

	hs_notify_failed(&turn_failed);
	hs_metrics_add(HS_METRIC_ROWS_FAILED, turn_failed.count);
	if (hold_reason)
		hold_queue(hold_reason);
	else if (hold_notified)
	{
		ListCell   *lc;

		foreach(lc, results)
		{
			HsTurnResult *tr = (HsTurnResult *) lfirst(lc);
			HsOutcomeKind k = tr->outcome.kind;

			if (k != HS_OUTCOME_HOLD && !tr->unstarted &&
				(tr->batch->conn == NULL || tr->batch->conn->is_default))
			{
				hs_notify_released("default");
				hold_notified = false;
				break;
			}
		}
	}
	if (hs_pacing_daily(hs_conn_default()->pacer, &limit, &remaining))
	{
		if (remaining * 10 < limit && !daily_low_notified)
			hs_notify_daily_quota_low(remaining, limit);
		daily_low_notified = (remaining * 10 < limit);
	}
	hs_notify_flush();
}

/*
 * The connections (not the default) whose requests were held this turn are
 * held, and the table says so; a held one whose request went through is
 * active again.
 */
static void
record_connection_holds(List *results)
{
	ListCell   *lc;

	foreach(lc, results)
	{
		HsConn	   *c = ((HsTurnResult *) lfirst(lc))->batch->conn;

		if (c == NULL || c->is_default || c->recorded_this_turn)
			continue;
		c->recorded_this_turn = true;
		if (c->turn_hold && !c->disconnected_reason)
			hs_conn_hold(c, c->turn_hold);
		hs_conn_record_state(c, c->went_through);
	}
	/* the connections only a refresh touched (a session waits for their token) */
	foreach(lc, turn_conns)
	{
		HsConn	   *c = (HsConn *) lfirst(lc);

		if (!c->recorded_this_turn)
			hs_conn_record_state(c, false);
	}
	foreach(lc, results)
	{
		HsConn	   *c = ((HsTurnResult *) lfirst(lc))->batch->conn;

		if (c)
			c->recorded_this_turn = false;
	}
}

/* The outcomes and what they tell listeners, recorded in a short transaction of their own. */
static void
record_phase(MemoryContext turn_cxt, List *results, const char *hold_reason)
{
	SetCurrentStatementStartTimestamp();
	record_failed = false;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "hubspot_events: recording outcomes");
	hs_outbox_lock_first();
	record_outcomes(results);
	record_connection_holds(results);
	turn_notes(results, hold_reason);
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* every row of the turn recorded, unless record_in_subxact could not */
	in_flight_known_clear = !record_failed;
	MemoryContextSwitchTo(turn_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
	/* the default's hold outlasts a turn of the other connections */
	if (hold.held)
		hs_shared_set_state("held", hold.reason);
	else
		hs_shared_set_state("idle", NULL);
}

/*
 * Notifications queued outside any transaction (a hold by the gate) when no
 * claim follows: sent in a transaction of their own.  Not on a standby,
 * where NOTIFY cannot run (nothing is queued there).
 */
static void
notify_alone(MemoryContext turn_cxt)
{
	if (!hs_notify_pending() || RecoveryInProgress())
		return;
	StartTransactionCommand();
	hs_notify_flush();
	CommitTransactionCommand();
	MemoryContextSwitchTo(turn_cxt);
}

/*
 * One turn: gate, claim, send, record (or, with nothing due, housekeeping).
 * Returns true when it did work (the loop then goes on at once); otherwise
 * *wait_ms says how long to sleep.
 */
static bool
worker_turn(MemoryContext turn_cxt, long *wait_ms)
{
	List	   *rows;
	List	   *results = NIL;
	char	   *hold_reason = NULL;
	int64		next_due_ms;

	*wait_ms = hs_poll_interval_ms;
	if (!turn_gate(wait_ms))
	{
		notify_alone(turn_cxt);
		return false;
	}

	switch (claim_phase(turn_cxt, &rows, &next_due_ms))
	{
		case HS_CLAIM_UNUSABLE:
			/* a hold the claim's transaction made (dry_run before 0.7.0) shows once it ended */
			if (hold.held)
				hs_shared_set_state("held", hold.reason);
			return false;
		case HS_CLAIM_PAUSED:
			hs_shared_set_state("paused", NULL);
			return false;
		case HS_CLAIM_NOTHING_DUE:
			/* sessions may wait for an OAuth connection's token */
			refresh_oauth_connections(turn_cxt);
			record_oauth_alone(turn_cxt);
			idle_housekeeping(turn_cxt);
			if (hold.held)
				hs_shared_set_state("held", hold.reason);
			else
				hs_shared_set_state(default_rate_limited ? "rate limited" : "idle", NULL);
			if (next_due_ms >= 0 && next_due_ms < *wait_ms)
				*wait_ms = Max(next_due_ms, 1);
			return false;
		case HS_CLAIM_ROWS:
			break;
	}

	claimed_since_vacuum += list_length(rows);
	/* until the record phase has committed, this turn's rows are in flight */
	in_flight_known_clear = false;
	if (!send_phase(turn_cxt, rows, &results, &hold_reason))
		return true;			/* SIGTERM: the rows stay "sending", pending again at the next turn */
	record_phase(turn_cxt, results, hold_reason);
	return true;
}

/*
 * The worker's session settings, fixed whatever the database's and the
 * role's defaults say (ALTER DATABASE/ROLE ... SET, which the database's
 * owner may run).  PGC_S_OVERRIDE outranks every source a user can reach,
 * and a reload of postgresql.conf does not replace it.
 *
 * search_path above all: the worker runs as the bootstrap superuser, and
 * an operator or function that a user creates in a schema on the path,
 * with an exact match where ours needs an implicit cast, would otherwise
 * run with its rights.  With pg_catalog and the worker's own pg_temp only,
 * no user-created function or operator is ever found by name (functions
 * and operators are never looked up in pg_temp).  The extension's SQL is
 * also schema-qualified; this is the second wall.
 *
 * The others: a timeout or read-only default would make every turn fail
 * (item: recording must not fail), and the isolation level and the date
 * and interval styles are what its statements were written for.
 */
static void
worker_pin_settings(void)
{
	static const struct
	{
		const char *name;
		const char *value;
	}			pins[] =
	{
		{"search_path", "pg_catalog, pg_temp"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"session_replication_role", "origin"},
		{"DateStyle", "ISO, MDY"},
		{"IntervalStyle", "postgres"},
		{"TimeZone", "UTC"},
		{"extra_float_digits", "1"},
		/* the worker's statements are small and many: compiling them never pays */
		{"jit", "off"},
	};

	for (int i = 0; i < lengthof(pins); i++)
		SetConfigOption(pins[i].name, pins[i].value, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * A worker the launcher started (arg: the database's OID; bgw_extra: its
 * slot): attached to its slot and connected.  false when it has nothing to
 * do: its slot is not its own, its database is being dropped, or the
 * extension is not installed there (the launcher tries again later, or at
 * once after CREATE EXTENSION).
 */
static bool
launched_worker_start(Oid dboid)
{
	int			slot;
	bool		available;

	memcpy(&slot, MyBgworkerEntry->bgw_extra, sizeof(slot));
	if (!hs_shared_attach_launched(dboid, slot, MyLatch))
		return false;
	before_shmem_exit(worker_detach_shared, (Datum) 0);
	hs_shared_settings_loaded();
	/* a token refresh in flight honours SIGHUP and SIGTERM too */
	hs_oauth_set_stop_check(worker_stop_check);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	worker_pin_settings();
	pgstat_report_appname("hubspot_events worker");

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	served_database = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	available = hs_outbox_available();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!available)
	{
		/* no line at LOG: the launcher tries such a database every few seconds */
		ereport(DEBUG1,
				(errmsg("hubspot_events worker: the extension is not installed in database \"%s\"; exiting",
						served_database)));
		hs_shared_set_state("no extension", NULL);
		return false;
	}
	return true;
}

void
hubspot_events_worker_main(Datum arg)
{
	MemoryContext turn_cxt;
	Oid			launched_for = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (OidIsValid(launched_for))
	{
		if (!launched_worker_start(launched_for))
			proc_exit(0);
	}
	else
	{
		worker_attach_shared();
		hs_shared_settings_loaded();
		/* a token refresh in flight honours SIGHUP and SIGTERM too */
		hs_oauth_set_stop_check(worker_stop_check);
		BackgroundWorkerInitializeConnection(hs_database, NULL, 0);
		worker_pin_settings();
		pgstat_report_appname("hubspot_events worker");
		served_database = hs_database;
	}
	ereport(LOG,
			(errmsg("hubspot_events worker started for database \"%s\"", served_database)));

	turn_cxt = AllocSetContextCreate(TopMemoryContext, "hubspot_events worker turn",
									 ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		long		wait_ms = hs_poll_interval_ms;
		bool		did_work = false;

		process_reload();
		MemoryContextReset(turn_cxt);
		MemoryContextSwitchTo(turn_cxt);

		PG_TRY();
		{
			did_work = worker_turn(turn_cxt, &wait_ms);
		}
		PG_CATCH();
		{
			/* log it, clean up, pause, and go on: one bad turn never kills the worker */
			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
			in_flight_known_clear = false;
			/* what the claim took from the intake may have been rolled back */
			hs_intake_forget();
			MemoryContextReset(turn_cxt);
			RESUME_INTERRUPTS();
			pgstat_report_activity(STATE_IDLE, NULL);
			hs_shared_set_state("recovering from an error", NULL);
			did_work = false;
			wait_ms = HS_ERROR_PAUSE_MS;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);

		/* a launched worker whose extension was dropped gives its slot back */
		if (OidIsValid(launched_for) && logged_no_extension)
			break;
		if (did_work || ShutdownRequestPending)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ereport(LOG, (errmsg("hubspot_events worker shutting down")));
	/* a launched worker: the launcher starts it again when it should */
	if (OidIsValid(launched_for))
		proc_exit(0);
	/* exit code 1: the postmaster restarts it after bgw_restart_time, unless the server is stopping */
	proc_exit(1);
}
