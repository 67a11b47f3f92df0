/*-------------------------------------------------------------------------
 *
 * hubspot_events.h
 *	  Declarations shared by the files of the hubspot_events extension.
 *
 * Each .c file owns one concern:
 *	  init.c        loading the library and its settings (GUCs, check hooks)
 *	  functions.c   the SQL-callable functions
 *	  validate.c    input validation and normalisation (shared with the outbox)
 *	  validate_event.c  the same for marketing events (upsert, complete)
 *	  token.c       the access token: the file's, or OAuth's
 *	  secret_file.c reading a secret from the file a setting names, never logged; kept until the file changes
 *	  oauth.c       OAuth refresh: tokens from the token endpoint, shared; the grants
 *	                of the connections (authorization code, a connection's refresh)
 *	  secret_box.c  sealing secrets (AES-256-GCM) under the key of secret_key_file
 *	  connection_secret.c  the OAuth connections' rows and sealed refresh tokens, as their owner
 *	  connect_oauth.c  connect_oauth(): an OAuth install's code exchanged, its token stored
 *	  url_check.c   which URLs may receive a secret (https; http to loopback only)
 *	  hubspot_api.c HubSpot's API: its version, every call's URL and body, reading an answer
 *	  http.c        libcurl: HubSpot requests, interruptible (transport only)
 *	  hs_json.c     JSON (json-c): HubSpot's error answers and per-contact errors
 *	  jsonb_build.c building jsonb values in C (contacts, raw rows), no text round trip
 *	  answer.c      HubSpot's answers turned into SQLSTATEs, ERRORs and jsonb
 *	  pacing.c      the client-side rate limiter, 429 pauses, Retry-After, the daily reset,
 *	                a retry's backoff
 *	  outbox.c      the outbox's SQL: enqueue, claim, record outcomes
 *	  batch.c       claimed rows coalesced into requests; halves of a rejected one, and
 *	                whether to split again
 *	  enqueue.c     writing outbox rows by a direct heap and index insert
 *	  intake.c      the worker's rows kept from the outbox's intake: sweeps, and claims in
 *	                each contact's order
 *	  intake_place.c intake_at_place(): whether an intake row is still the one seen at its
 *	                place (the claims' one TID scan)
 *	  order_lock.c  per-key advisory locks before the id: commit order is id order
 *	  shared.c      shared memory: the workers' state (a slot per database), wake-up at commit
 *	  metrics.c     counters for monitoring (requests by status, latency...), in shared memory
 *	  verify.c      verify_event(): HubSpot's participations compared with what was sent
 *	  notify.c      the worker's notifications (NOTIFY hubspot_events), sent at its commits
 *	  worker.c      the background worker that drains the outbox
 *	  hold.c        a hold on a configuration fault (the queue's or a connection's), and
 *	                what ends it
 *	  worker_connections.c  the worker's view of each connection: pacing, hold, token
 *	  launcher.c    many databases: the launcher that starts a worker per database, and
 *	                stopping a database's worker before DROP DATABASE
 *	  connections.c the connections' SQL functions, and checking a row's connection
 *	  conn_tokens.c the OAuth connections' access tokens, shared through shared memory
 *	  owner_rights.c  statements run with the rights of the extension's tables' owner
 *	  trigger.c     sync_attendance(), the trigger for attendance tables
 *	  trigger_event.c  sync_event(), the trigger for events tables
 *	  schema_version.c  which versions of the extension's schema the library serves
 *	  ddl_guard.c   refusing a DDL that would break a table's sync triggers
 *
 * pg_compat.h holds every difference between the PostgreSQL versions the
 * extension builds against.  test/header_map.py checks this map, that every
 * function below is declared under the file that defines it, and that no
 * two files need each other.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HUBSPOT_EVENTS_H
#define HUBSPOT_EVENTS_H

#include "postgres.h"
#include "pg_compat.h"

#include <sys/stat.h>

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "access/attnum.h"
#include "access/tupdesc.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#ifndef HUBSPOT_EVENTS_VERSION
#error "HUBSPOT_EVENTS_VERSION must be defined by the Makefile"
#endif

#define HS_USER_AGENT "hubspot_events/" HUBSPOT_EVENTS_VERSION

/* the most of an error answer stored in a row's error_body */
#define HS_ERROR_BODY_MAX		(64 * 1024)
/* a request's body is kept under this many bytes (batches are closed early) */
#define HS_REQUEST_BYTES_MAX	(1024 * 1024)

/*
 * The extension's own SQLSTATE class "HS", for failures that are neither the
 * database's nor the input's.  Never class 08: connection pools read 08 as a
 * dead database connection.
 */
#define ERRCODE_HS_TRANSPORT		MAKE_SQLSTATE('H','S','0','0','1')
#define ERRCODE_HS_TIMEOUT			MAKE_SQLSTATE('H','S','0','0','2')
#define ERRCODE_HS_RATE_LIMITED		MAKE_SQLSTATE('H','S','0','0','3')
#define ERRCODE_HS_SERVER_ERROR		MAKE_SQLSTATE('H','S','0','0','4')
#define ERRCODE_HS_UNEXPECTED		MAKE_SQLSTATE('H','S','0','0','5')
/* the OAuth token endpoint rejected the refresh (4xx: bad client, bad refresh token) */
#define ERRCODE_HS_TOKEN_REJECTED	MAKE_SQLSTATE('H','S','0','0','6')
/* the OAuth token endpoint failed otherwise (unreachable, 5xx, 429, an unusable answer) */
#define ERRCODE_HS_TOKEN_ENDPOINT	MAKE_SQLSTATE('H','S','0','0','7')

/* ---- init.c: settings ---- */
extern char *hs_api_base_url;
extern char *hs_access_token_file;
extern int	hs_request_timeout_ms;
extern int	hs_batch_size;
extern int	hs_endpoint;
extern char *hs_api_version;
extern bool hs_dry_run;
extern int	hs_progress_notice_ms;

/* hubspot_events.api_version's default: HubSpot's newest date version */
#define HS_API_VERSION_DEFAULT	"2026-09"
/* HubSpot's OAuth token endpoint (hubspot_events.oauth_token_url's default) */
#define HS_OAUTH_TOKEN_URL_DEFAULT	"https://api.hubapi.com/oauth/2026-03/token"
#define HS_API_VERSION_MAX		16

/* hubspot_events.endpoint */
#define HS_ENDPOINT_UPSERT		0
#define HS_ENDPOINT_ATTENDANCE	1

extern char *hs_database;
extern char *hs_databases;
extern int	hs_max_databases;
extern int	hs_poll_interval_ms;
extern int	hs_max_concurrency;
extern int	hs_max_attempts;
extern int	hs_retry_base_ms;
extern int	hs_retry_max_ms;
extern int	hs_sent_retention_s;
extern int	hs_vacuum_after;
extern int	hs_rate_limit;
extern int	hs_rate_limit_interval_ms;
extern char *hs_daily_reset_time;
extern char *hs_ca_file;
extern char *hs_oauth_client_id;
extern char *hs_oauth_client_secret_file;
extern char *hs_oauth_refresh_token_file;
extern char *hs_oauth_token_url;
extern char *hs_secret_key_file;

#define HS_OAUTH_CLIENT_ID_MAX	256
#define HS_OAUTH_URL_MAX		1024

/* a security-relevant setting whose configured value was refused at start */

/* bumped by a settings reload, so cached secrets are re-read */
extern uint64 hs_settings_generation;

#define HS_SCHEMA "hubspot_events"

/* milliseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch) */
#define HS_PG_EPOCH_MS	INT64CONST(946684800000)

/*
 * ---- input limits ----
 *
 * Every input is bounded where it is taken (the SQL functions, and the
 * triggers through the same validators), so that no caller can write a row
 * the worker cannot send.  All limits are in bytes of the database encoding
 * (octet_length), except the counts.  A value too long is 22023
 * (invalid_parameter_value); a whole input too big or with too many parts is
 * 54000 (program_limit_exceeded).  Every message names the field (with its
 * index where there is one), the length and the limit.  HubSpot's spec gives
 * no maxLength for any of these fields; the values are chosen as below.
 *
 * The external ids are percent-encoded into the URL (the event id in the
 * path, the account id in the query): at most 3 x 1000 bytes each keeps a
 * request line within the 8 KB most HTTP servers and proxies accept.
 */
#define HS_MAX_EXTERNAL_ID_BYTES	1000	/* external_event_id, external_account_id */
#define HS_MAX_EMAIL_BYTES			254 /* RFC 5321: a path is at most 256 with its <> */
#define HS_MAX_PROPERTY_NAME_BYTES	256 /* a property's name (HubSpot's internal names are short) */
#define HS_MAX_PROPERTY_VALUE_BYTES	65536	/* a property's value as text: HubSpot's text properties hold 65,536 characters */
#define HS_MAX_PROPERTIES			1000	/* members of one properties / contactProperties / customProperties */
#define HS_MAX_CONTACT_BYTES		262144	/* one contact's JSON as sent (compact), 256 KB */
#define HS_MAX_CONTACTS				100000	/* contacts in one call (a bulk enqueue of 100,000 is tested) */
#define HS_MAX_EVENT_TEXT_BYTES		1000	/* eventName, eventOrganizer, eventType */
#define HS_MAX_EVENT_DESCRIPTION_BYTES 65536	/* eventDescription, as a text property */
#define HS_MAX_EVENT_URL_BYTES		2048	/* eventUrl: the longest URL every client and proxy takes */
#define HS_MAX_EVENT_BYTES			1048576 /* an event's body as sent (compact JSON), 1 MB */
#define HS_MAX_JSONB_ARGUMENT_BYTES	16777216	/* a contacts or event argument, as jsonb, 16 MB:
												 * refused before it is read */

/* ---- validate.c ---- */
typedef enum HsSubscriberState
{
	HS_STATE_REGISTER,
	HS_STATE_ATTEND,
	HS_STATE_CANCEL
} HsSubscriberState;

/* One contact, validated and normalised, ready to be sent. */
typedef struct HsContact
{
	int64		vid;			/* 0 when given by email */
	char	   *email;			/* NULL when given by vid */
	int64		interaction_ms;		/* epoch milliseconds */
	/* property names and values, as text, in input order */
	List	   *prop_names;
	List	   *prop_values;
	/* contactProperties (email contacts only) */
	bool		has_cprops;
	List	   *cprop_names;
	List	   *cprop_values;
} HsContact;

extern const char *hs_state_name(HsSubscriberState state);
extern bool hs_parse_state(const char *input, HsSubscriberState *state);
extern HsSubscriberState hs_validate_state(const char *input);
extern char *hs_take_data_exception(MemoryContext cxt);
extern char *hs_check_external_id(const char *argname, const char *value);
extern void hs_validate_external_id(const char *argname, const char *value);
extern size_t hs_json_string_len(const char *s, size_t len);
extern void hs_check_jsonb_argument_size(const char *argname, Datum value, const char *hint);
extern bool hs_check_contact(JsonbContainer *obj, int index, HsContact *out,
							 char **errmsg_out, char **errhint_out);
extern List *hs_validate_contacts(Jsonb *contacts);
extern void hs_append_contact_json(StringInfo buf, const HsContact *c);
extern Jsonb *hs_contact_to_jsonb(const HsContact *contact);
extern char *hs_contact_key(const HsContact *c);
extern bool hs_parse_timestamptz_ms(const char *str, int64 *ms, char **reason);
extern int64 hs_timestamptz_to_ms(TimestampTz ts);
extern const char *hs_jsonb_type_name(const JsonbValue *v);
extern char *hs_jsonb_scalar_for_message(const JsonbValue *v);
extern void hs_append_iso_ms(StringInfo buf, int64 epoch_ms);
extern bool hs_input_error(char **errmsg_out, const char *fmt,...) pg_attribute_printf(2, 3);

/* ---- validate_event.c ---- */
extern bool hs_check_event(JsonbContainer *obj, const char *event_id, const char *account_id,
						   StringInfo out, char **errmsg_out, char **errhint_out);
extern bool hs_check_event_sent(JsonbContainer *obj, const char *event_id, const char *account_id,
								StringInfo out, char **errmsg_out, char **errhint_out);
extern bool hs_check_event_complete_body(JsonbContainer *obj, StringInfo out, char **errmsg_out);
extern Jsonb *hs_validate_event(Jsonb *event, const char *event_id, const char *account_id);
extern Jsonb *hs_event_complete_body(TimestampTz start, TimestampTz end);

/* ---- outbox.c ---- */

/*
 * One outbox row to write.  A row whose values failed validation has
 * error_message set: it is written as 'failed' with error_category
 * LOCAL_VALIDATION_ERROR, with the raw values as they came (any of the
 * text fields may then be NULL).
 */
typedef struct HsOutboxRow
{
	const char *kind;			/* NULL: "subscriber"; or "event_upsert", "event_cancel", "event_complete" */
	const char *external_event_id;
	const char *subscriber_state;	/* normalised, or raw when invalid */
	const char *external_account_id;
	Jsonb	   *contact;		/* as sent (hs_contact_to_jsonb), or raw values */
	const char *contact_key;	/* the vid as text; may be NULL when invalid */
	const char *source;			/* "hubspot_enqueue_subscriber" or "schema.table" */
	const char *error_message;	/* NULL for a valid row */
	Jsonb	   *event;			/* event rows: the body as sent (upsert, complete) */
	const char *connection;		/* NULL: "default" */
} HsOutboxRow;

/*
 * Write one row to the outbox in the current transaction, with the rights of
 * the outbox's owner (the caller needs no privilege on the outbox), and wake
 * the worker when the transaction commits.  Returns the new id.
 */
extern int64 hs_outbox_insert(const HsOutboxRow *row, ItemPointer tid);
/*
 * Delete row id of the outbox, written by this transaction as (sub)transaction
 * xmin and seen by nobody else, if it is still pending with the kind, state and
 * key of *row; with the owner's rights.  Returns whether it was deleted.
 */
extern bool hs_outbox_delete_own(int64 id, TransactionId xmin, ItemPointer tid, const HsOutboxRow *row);

/* ---- enqueue.c ---- */
/* hs_outbox_insert by a direct heap and index insert; false when it cannot be used */
extern bool hs_outbox_insert_direct(const HsOutboxRow *row, int64 *id, ItemPointer tid);
extern Oid	hs_outbox_relid(void);
extern Oid	hs_outbox_intake_relid(void);

/* ---- order_lock.c ---- */
/* before a row's id, serialise the writers of its key (event, account, contact) */
extern void hs_order_lock(const HsOutboxRow *row);

/* ---- trigger.c: helpers shared with trigger_event.c ---- */
struct RelationData;
struct Trigger;
struct HeapTupleData;
typedef struct HeapTupleData HeapTupleData;
extern char *hs_table_display_name(struct RelationData *rel);
extern AttrNumber hs_find_column(TupleDesc desc, const char *name);
extern void hs_bpchar_rtrim(char *text);
/* cancels a trigger wrote, dropped when the same transaction brings their key back */
extern Oid	hs_trigger_root_relid(struct RelationData *rel);
extern void hs_trigger_cancel_written(Oid root_relid, const HsOutboxRow *row, int64 id, ItemPointer tid);
extern void hs_trigger_drop_own_cancels(Oid root_relid, const HsOutboxRow *row);
extern void hs_check_trigger_type(struct RelationData *rel, const struct Trigger *trigger,
								  const char *fname);
extern char *hs_trigger_split_argument(const char *arg, const char *tgname, const char *table,
									   const char **value, bool *is_const);
pg_noreturn extern void hs_trigger_key_twice(const char *key, const char *arg, const char *tgname,
								 const char *table);
extern AttrNumber hs_trigger_column(TupleDesc desc, const char *value, const char *arg,
									const char *tgname, const char *table);
pg_noreturn extern void hs_trigger_key_missing(const char *key, const char *tgname,
								   const char *table);
extern bool hs_column_changed(AttrNumber attnum, bool typbyval, int16 typlen,
							  HeapTupleData *oldtup, HeapTupleData *newtup, TupleDesc desc);
pg_noreturn extern void hs_trigger_syntax_error(const char *arg, const char *tgname,
									const char *table, const char *detail);
pg_noreturn extern void hs_trigger_invalid_row(const char *table, const char *tgname,
											const char *msg, const char *hint);
pg_noreturn extern void hs_trigger_value_error(const char *arg, const char *tgname,
								   const char *table, const char *detail);

/* for ddl_guard.c: throw when a trigger's arguments no longer resolve */
extern void hs_sync_attendance_check(struct RelationData *rel, const struct Trigger *trigger);

/* ---- trigger_event.c ---- */
extern void hs_sync_event_check(struct RelationData *rel, const struct Trigger *trigger);

/* ---- init.c: the background worker's registration ---- */
extern void hs_register_worker(void);
extern void hs_register_launcher(void);

/* ---- functions.c: the arguments of the SQL-callable functions ---- */
struct FunctionCallInfoBaseData;
extern void hs_check_not_null(struct FunctionCallInfoBaseData *fcinfo, const char *const *argnames, int nargs);
extern char *hs_id_argument(struct FunctionCallInfoBaseData *fcinfo, int i, const char *argname);

/* ---- metrics.c ---- */

#define HS_LATENCY_BUCKETS 13

/* the plain counters of hubspot_events.metrics */
typedef enum HsMetric
{
	HS_METRIC_CONTACTS_SENT,	/* rows (contacts or events) HubSpot accepted */
	HS_METRIC_RETRIES,			/* rows put back to pending for a retry */
	HS_METRIC_SPLITS,			/* rejected requests split in halves */
	HS_METRIC_HOLDS,			/* holds of the queue */
	HS_METRIC_ROWS_FAILED,		/* rows that ended failed */
	HS_METRIC_DRY_RUN_REQUESTS,	/* requests built but not sent (hubspot_events.dry_run) */
	HS_METRIC_COUNT
} HsMetric;

extern Size hs_metrics_shmem_size(void);
extern void hs_metrics_shmem_startup(void);
extern void hs_metrics_reset(void);
struct HsOutcome;
extern void hs_metrics_count_request(const struct HsOutcome *o);
extern void hs_metrics_add(HsMetric which, int64 n);
extern const double *hs_metrics_latency_bounds(void);
extern void hs_metrics_add_latency(const int64 *per_bucket, int64 count, double sum);

/* ---- notify.c ---- */

#define HS_NOTIFY_CHANNEL "hubspot_events"
#define HS_NOTIFY_MAX_IDS 10

/* Rows that ended failed in a turn: how many, and the first ids. */
typedef struct HsFailedRows
{
	int64		count;
	int			nids;
	int64		ids[HS_NOTIFY_MAX_IDS];
} HsFailedRows;

extern void hs_failed_rows_add(HsFailedRows *failed, const int64 *ids, int n);
extern bool hs_notify_pending(void);
extern void hs_notify_flush(void);
extern void hs_notify_failed(const HsFailedRows *failed);
extern void hs_notify_held(const char *conn, const char *reason);
extern void hs_notify_released(const char *conn);
extern void hs_notify_disconnected(const char *conn, const char *reason);
extern void hs_notify_daily_quota_low(int64 remaining, int64 limit);
extern void hs_notify_daily_limit(TimestampTz resumes_at);

/* ---- launcher.c ---- */
extern PGDLLEXPORT void hubspot_events_launcher_main(Datum arg);
extern void hs_launcher_install_hooks(void);

/* ---- worker.c ---- */
extern PGDLLEXPORT void hubspot_events_worker_main(Datum arg);

/* What a row asks of HubSpot (outbox.kind). */
typedef enum HsRowKind
{
	HS_KIND_SUBSCRIBER,			/* a contact's state: .../{state}/upsert */
	HS_KIND_EVENT_UPSERT,		/* the event itself: .../events/upsert */
	HS_KIND_EVENT_CANCEL,		/* .../events/{id}/cancel */
	HS_KIND_EVENT_COMPLETE		/* .../events/{id}/complete */
} HsRowKind;

/*
 * The worker's side of the outbox: a claimed row, checked again as the
 * enqueue checks it (hs_outbox_claim), with what is sent written anew from
 * the checked values.  Never NULL fields.
 */
typedef struct HsClaimedRow
{
	int64		id;
	HsRowKind	kind;
	bool		by_email;		/* a subscriber row whose contact is given by email */
	char	   *external_event_id;
	char	   *subscriber_state;	/* "register", "attend" or "cancel"; "" for event rows */
	char	   *external_account_id;
	char	   *contact_key;	/* the vid as text, or the email in lower case; "" for event rows */
	char	   *contact;		/* JSON text as sent: the contact, or the event's body ("" for none) */
	int			attempts;		/* this one included */
	ItemPointerData tid;		/* where it is in the intake, while in flight there
								 * (schema 0.9.0 on); invalid for a row of outbox_rows */
	struct HsConn *conn;		/* the connection it was claimed for */
} HsClaimedRow;

/*
 * The rows of one request: subscriber rows of one (event, state, account),
 * or event upserts (any events), at most batch_size; or one cancel or
 * complete call.
 */
typedef struct HsBatch
{
	HsRowKind	kind;
	bool		by_email;		/* subscriber rows given by email (never mixed with vids) */
	bool		attendance;		/* sent to the attendance endpoints (hubspot_events.endpoint) */
	char	   *external_event_id;
	char	   *subscriber_state;
	char	   *external_account_id;
	int			n;
	int64	   *ids;
	ItemPointerData *tids;		/* each row's place in the intake while in flight there
								 * (HsClaimedRow.tid); invalid for a row of outbox_rows */
	int		   *attempts;		/* each row's attempts, the one being made included */
	char	  **keys;			/* each row's contact_key */
	char	  **contacts;		/* each row's JSON text (a contact, or an event's body) */
	char	   *api_root;		/* base URL and version prefix (hs_api_root()) */
	char	   *url;
	char	   *body;
	size_t		body_len;
	struct HsBatch *sibling;	/* the other half, when this is half of a split */
	size_t		bytes;			/* the contacts' JSON, for the byte budget */
	char	   *build_error;	/* the request could not be built: its rows fail alone */
	struct HsConn *conn;		/* the worker's connection it goes through */
} HsBatch;

typedef enum HsOutcomeKind
{
	HS_OUTCOME_SENT,			/* 2xx */
	HS_OUTCOME_FAILED,			/* permanent: the rows fail */
	HS_OUTCOME_RETRY,			/* transient: back to pending, later, until max_attempts */
	HS_OUTCOME_RATE_LIMITED,	/* 429: back to pending after the window; no attempt used */
	HS_OUTCOME_HOLD,			/* a configuration fault: pending, attempt not counted */
	HS_OUTCOME_DRY_RUN			/* not sent (hubspot_events.dry_run): sent, as a dry run */
} HsOutcomeKind;

typedef struct HsOutcome
{
	HsOutcomeKind kind;
	int			http_status;	/* 0: no answer */
	const char *correlation_id; /* as answered; stored only when a UUID */
	const char *error_category;
	const char *error_subcategory;
	const char *error_message;
	Jsonb	   *error_body;
	int64		retry_after_ms; /* -1: none */
} HsOutcome;

/* ---- batch.c ---- */
extern List *hs_batch_group(List *rows, int batch_size);
extern void hs_batch_split(HsBatch *b, HsBatch **first, HsBatch **second);
extern HsBatch *hs_batch_pick(const HsBatch *b, const int *idx, int n);
extern HsBatch *hs_batch_merge(HsBatch **parts, int nparts);
struct HsRejection;
extern bool hs_batch_split_again(const struct HsRejection *rej,
								 const struct HsRejection *sibling_rej);

/* ---- outbox.c: the worker's side ---- */
extern bool hs_outbox_available(void);
extern void hs_outbox_lock_first(void);
extern uint64 hs_outbox_reset_sending(int max_attempts, bool in_intake_too, uint64 *failed);
extern uint64 hs_outbox_purge_retention(int seconds);
extern bool hs_outbox_vacuum(MemoryContext cxt);
extern bool hs_outbox_paused(void);
extern char *hs_outbox_replicated_by(void);
extern List *hs_outbox_claim(int limit, const char *conn, HsFailedRows *failed);
extern void hs_outbox_fail_dropped(const char *conn, HsFailedRows *failed);
extern void hs_outbox_fail_invalid(const int64 *ids, char **messages, int n, const char *conn);
extern int64 hs_outbox_next_due_ms(const char *conn);
extern void hs_outbox_record(HsBatch *batch, const HsOutcome *outcome, HsFailedRows *failed);
extern void hs_outbox_record_sent(HsBatch **batches, const HsOutcome **outcomes, int n);
extern void hs_outbox_record_dry_run(HsBatch **batches, int n);
extern bool hs_outbox_event_upsert_recent(const char *event_id, const char *account_id, const char *conn);
extern List *hs_outbox_claim_intake(const char *conn, const ItemPointerData *tids, const int64 *ids, int n,
									HsFailedRows *failed);
extern int	hs_outbox_move_intake(const ItemPointerData *tids, const int64 *ids, int n);
extern void hs_outbox_leave_intake(HsBatch *batch);
extern int64 hs_outbox_move_intake_connection(const char *conn);

/* ---- intake.c (the worker's rows kept from the outbox's intake) ---- */
extern void hs_intake_sweep(void);
extern List *hs_intake_connections(void);
extern List *hs_intake_claim(const char *conn, int max_rows, double requests_per_s, HsFailedRows *failed);
extern void hs_intake_forget(void);
extern void hs_intake_unready(const char *conn);

/* ---- schema_version.c ---- */
extern char *hs_schema_problem(char **hint);
extern void hs_require_schema(void);
extern int	hs_schema_version(void);

#define HS_SCHEMA_0_5_0		500	/* next_claim_at() */
#define HS_SCHEMA_0_7_0		700	/* outbox.attempt_history, dry_run, dry_run_request */
#define HS_SCHEMA_0_8_0		800	/* connections, outbox.connection, claim per connection */
#define HS_SCHEMA_0_9_0		900	/* outbox partitioned: outbox_intake and outbox_rows */

/* ---- shared.c ---- */

#define HS_MAX_CATEGORIES 24

/*
 * One worker's state and counters.  Without hubspot_events.databases there
 * is one (the static worker of hubspot_events.database); with it, one per
 * database the launcher serves (hubspot_events.max_databases of them).
 */
typedef struct HsWorkerShared
{
	slock_t		mutex;
	/* launcher mode: the database of the slot; kept when its worker stops (its counters) */
	Oid			dboid;
	bool		in_use;			/* launcher mode: a worker was started for it, not yet reaped */
	pid_t		worker_pid;		/* 0: not running */
	Latch	   *worker_latch;
	char		state[64];		/* "idle", "sending", "held", "paused", "standby"... */
	char		held_reason[256];
	TimestampTz started_at;
	TimestampTz settings_loaded_at; /* the worker's last reload */
	char		api_version[HS_API_VERSION_MAX];	/* the worker's hubspot_events.api_version */
	int64		requests;
	int64		successes;
	int64		errors;
	TimestampTz last_success_at;
	TimestampTz last_error_at;
	char		last_error[256];
	TimestampTz paused_until;	/* rate limited until (0: not) */
	char		pause_reason[256];
	int64		daily_limit;	/* from X-HubSpot-RateLimit-Daily; -1 unknown */
	int64		daily_remaining;	/* X-HubSpot-RateLimit-Daily-Remaining; -1 unknown */
	int			today;			/* the day the counters below are for (days since 2000, UTC) */
	int64		today_requests;
	int64		today_errors;
	struct
	{
		char		category[48];
		int64		count;
	}			by_category[HS_MAX_CATEGORIES];
} HsWorkerShared;

/*
 * This process's worker slot: the static worker's (every process, without
 * hubspot_events.databases), or a launched worker's own; NULL otherwise
 * (a backend in launcher mode finds its database's slot by its OID).
 */
extern HsWorkerShared *hs_shared;

/* from _PG_init, when preloaded; with_launcher: hubspot_events.databases is set */
extern void hs_shared_init(bool with_launcher);
extern bool hs_shared_launcher_mode(void);
extern void hs_wake_at_commit(void);
extern void hs_wake_now(void);
extern bool hs_shared_worker_running(void);
extern void hs_shared_set_state(const char *state, const char *held_reason);
extern void hs_shared_settings_loaded(void);
extern void hs_shared_set_daily(int64 limit, int64 remaining);
extern void hs_shared_set_pause(TimestampTz until, const char *reason);
extern void hs_shared_count_request(bool success, const char *category, const char *message);

/* a launched worker: its slot, unless the launcher gave it away or its database is being dropped */
extern bool hs_shared_attach_launched(Oid dboid, int slot, Latch *latch);

/* the launcher's side (launcher.c) */
extern bool hs_parse_database_list(const char *value, bool *all, List **names, char **error);
extern int	hs_shared_slot_count(void);
extern bool hs_shared_launcher_attach(Latch *latch);
extern void hs_shared_launcher_detach(void);
extern void hs_shared_launcher_set_state(const char *state);
extern int	hs_shared_take_retry_requests(Oid *dboids, int max);
extern bool hs_shared_database_stopping(Oid dboid);
extern int	hs_shared_find_slot(Oid dboid, bool in_use_only);
extern int	hs_shared_assign_slot(Oid dboid);
extern void hs_shared_release_slot(int slot);
extern void hs_shared_forget_databases(const Oid *existing, int n);
extern pid_t hs_shared_slot_pid(int slot);

/* stopping a database's worker before a statement that needs it gone (launcher.c) */
extern pid_t hs_shared_mark_stopping(Oid dboid, bool *marked);
extern void hs_shared_unmark_stopping(Oid dboid);
extern bool hs_shared_database_served(Oid dboid);

/* ---- token.c ---- */
extern const char *hs_get_access_token(void);
extern const char *hs_connection_access_token(const char *conn);

/* ---- secret_file.c ---- */
extern char *hs_read_secret_file(const char *setting, const char *what, const char *what_a,
								 const char *path, struct stat *st, MemoryContext cxt);
extern bool hs_same_file(const struct stat *now, const struct stat *then);

/* A secret read from a file, kept until the file or the settings change. */
typedef struct HsSecretFileCache
{
	char	   *value;			/* the secret (TopMemoryContext), NULL when none */
	char	   *path;			/* the file it was read from */
	struct stat st;				/* that file when it was read */
	uint64		generation;		/* hs_settings_generation when it was read */
} HsSecretFileCache;

extern const char *hs_secret_file_cached(HsSecretFileCache *cache, const char *setting,
										 const char *what, const char *what_a, const char *path);
extern void hs_secret_file_forget(HsSecretFileCache *cache);

/* ---- oauth.c ---- */
extern Size hs_oauth_shmem_size(void);
extern void hs_oauth_shmem_request(void);
extern void hs_oauth_shmem_startup(void);
extern void hs_oauth_set_stop_check(bool (*stop_check) (void));
extern bool hs_oauth_enabled(void);
extern char *hs_oauth_settings_problem(void);
extern void hs_oauth_check_settings(void);
extern const char *hs_oauth_access_token(void);
extern void hs_oauth_token_expired(const char *token);
extern int64 hs_oauth_refresh_count(void);
extern void hs_oauth_request_timeout_assigned(int newval);

/* What the token endpoint granted a connection; palloc'd, wiped by hs_oauth_grant_wipe. */
typedef struct HsOAuthGrant
{
	char	   *access_token;
	char	   *refresh_token;	/* NULL: the answer had none (keep the one sent) */
	int64		expires_in_s;
	int64		hub_id;			/* the installing account; 0: the answer did not say */
} HsOAuthGrant;

extern void hs_oauth_check_client(void);
extern void hs_oauth_code_grant(const char *code, const char *redirect_uri, HsOAuthGrant *out);
extern bool hs_oauth_refresh_grant(const char *refresh_token, HsOAuthGrant *out,
								   bool *invalid_grant, char **error);
extern void hs_oauth_grant_wipe(HsOAuthGrant *grant);

/* ---- secret_box.c ---- */
/*
 * Secrets sealed with AES-256-GCM under the key in the file named by
 * hubspot_events.secret_key_file.  aad binds a sealed secret to its record
 * (a connection's name): it opens with the same aad only.
 */
extern bool hs_secret_key_configured(void);
extern void hs_secret_require_key(void);
extern bytea *hs_secret_seal(const char *plain, size_t len, const char *aad);
extern char *hs_secret_open(const bytea *sealed, const char *aad);

/* ---- connection_secret.c ---- */
/* a connection's refresh token, opened (palloc'd; the caller wipes it), or NULL when none */
extern char *hs_connection_refresh_token(const char *name);
/* seal and store a connection's (rotated) refresh token; false when it is not an OAuth connection */
extern bool hs_connection_store_refresh_token(const char *name, const char *refresh_token);
/* for connect_oauth: refuse (42710) a name taken by another kind of connection */
extern void hs_connection_check_oauth_name(const char *name);
/* for connect_oauth: the active OAuth connection name, its token sealed; its row */
extern Datum hs_connection_save_oauth(const char *name, int64 hub_id, const char *refresh_token);

/* ---- url_check.c ---- */
extern bool hs_url_is_acceptable(const char *url, char **reason);
/* the settings whose value refused at start stops every request */
#define HS_REFUSED_CA_FILE		0
#define HS_REFUSED_API_BASE_URL	1
#define HS_REFUSED_OAUTH_URL	2
#define HS_REFUSED_SETTINGS		3
extern bool hs_note_setting_check(int which, bool ok, GucSource source);
extern const char *hs_settings_refused(void);

/* ---- hubspot_api.c ---- */

/* every call the extension makes to HubSpot */
typedef enum HsApiCall
{
	HS_CALL_SUBSCRIBER_UPSERT,	/* events/{id}/{state}/upsert */
	HS_CALL_SUBSCRIBER_EMAIL_UPSERT,	/* events/{id}/{state}/email-upsert */
	HS_CALL_ATTENDANCE_CREATE,	/* attendance/{id}/{state}/create */
	HS_CALL_ATTENDANCE_EMAIL_CREATE,	/* attendance/{id}/{state}/email-create */
	HS_CALL_EVENT_UPSERT,		/* events/upsert */
	HS_CALL_EVENT_CANCEL,		/* events/{id}/cancel */
	HS_CALL_EVENT_COMPLETE		/* events/{id}/complete */
} HsApiCall;

extern bool hs_api_version_is_valid(const char *text);
extern bool hs_check_api_version(char **newval, void **extra, GucSource source);
extern char *hs_api_root(void);
extern HsApiCall hs_subscriber_call(bool by_email, bool attendance);
extern char *hs_api_url(const char *root, HsApiCall call, const char *event_id,
						const char *state, const char *account_id);
extern const char *hs_api_path_of(const char *url);
extern char *hs_api_dry_run_request(const char *url, size_t body_len, int rows);
extern char *hs_api_breakdown_url(const char *root, const char *event_id, const char *account_id,
								  const char *after);
extern void hs_api_inputs_body(StringInfo buf, char *const *items, int n);
extern void hs_api_subscriber_body(StringInfo buf, List *contacts, int first, int count);
struct HsHttpResult;
struct HsErrorBody;
extern void hs_api_read_answer(const struct HsHttpResult *res, const struct HsErrorBody *err,
							   HsOutcome *out);

/*
 * How HubSpot rejected a request's content: 400 VALIDATION_ERROR (or a 400
 * without a category), which one bad contact causes for the whole request.
 */
typedef struct HsRejection
{
	bool		rejected;
	char	   *category;		/* may be NULL */
	char	   *message;		/* may be NULL */
	bool		names_contact;	/* the answer blames a contact of the request */
} HsRejection;

extern void hs_api_read_rejection(const struct HsHttpResult *res, const struct HsErrorBody *err,
								  const HsBatch *b, HsRejection *out);
extern int	hs_api_contact_errors(const struct HsHttpResult *res, const HsBatch *b,
								  char ***errors);
extern void hs_api_contact_error_outcome(const char *error_json, const HsOutcome *sent,
										 HsOutcome *out);

/* ---- http.c ---- */

/* What came back from one HTTP exchange (or why none did). */
typedef struct HsHttpResult
{
	bool		transport_ok;	/* false: no HTTP answer at all */
	bool		timed_out;		/* transport failure was our timeout */
	char	   *transport_error;	/* libcurl's reason, when !transport_ok */
	long		http_status;
	char	   *body;			/* palloc'd, NUL-terminated, may be "" */
	size_t		body_len;
	char	   *content_type;	/* may be NULL */
	char	   *correlation_id; /* x-hubspot-correlation-id, may be NULL */
	char	   *retry_after;	/* Retry-After, may be NULL */
	int64		ratelimit_max;	/* -1 when the header was absent */
	int64		ratelimit_remaining;
	int64		ratelimit_interval_ms;
	int64		ratelimit_daily;
	int64		ratelimit_daily_remaining;
} HsHttpResult;

/* One request for hs_http_post_many. */
typedef struct HsHttpRequest
{
	const char *url;
	const char *body;
	size_t		body_len;
	const char *content_type;	/* a "Content-Type: ..." header line; NULL: JSON */
	const char *token;			/* its bearer token; NULL: the call's */
	bool		get;			/* a GET (no body) instead of a POST */
	int			timeout_ms;		/* 0: hubspot_events.request_timeout_ms */
	void	   *arg;			/* the caller's */
	bool		started;		/* it was sent */
	bool		done;			/* result is filled */
	HsHttpResult result;
} HsHttpRequest;

extern char *hs_url_escape(const char *s);
/* What hs_http_post_many asks of its caller; any may be NULL. */
typedef struct HsSendHooks
{
	bool		(*stop_check) (void);	/* true: abandon */
	int64		(*wait_ms) (HsHttpRequest *req);	/* pacing: wait before it starts */
	void		(*sleep_ms) (int64 ms); /* how to wait (default pg_usleep) */
	void		(*on_start) (HsHttpRequest *req);
	void		(*on_done) (HsHttpRequest *req);
	/* every request started, some in flight: work to do while they are */
	void		(*while_in_flight) (void);
} HsSendHooks;

extern bool hs_http_post_many(HsHttpRequest *reqs, int nreqs, const char *token,
							  int max_concurrency, const HsSendHooks *hooks);
extern void hs_http_get_json(const char *url, const char *token, const HsSendHooks *hooks,
							 HsHttpResult *result);
extern void hs_http_post_json(const char *url, const char *token,
							  const char *body, size_t body_len,
							  HsHttpResult *result);
extern bool hs_http_post_form(const char *url, const char *body, size_t body_len,
							  bool (*stop_check) (void), int timeout_ms,
							  HsHttpResult *result);
/*
 * TLS for an easy handle that carries a secret (API requests, and the OAuth
 * token request): peer and host verification on, with hubspot_events.ca_file
 * when set.  Throws when libcurl refuses an option.
 */
extern void hs_http_set_tls(void *easy);

/* ---- jsonb_build.c ---- */

extern void hs_jsonb_push_key(JsonbParseState **ps, const char *key);
extern void hs_jsonb_push_string(JsonbParseState **ps, const char *s);
extern void hs_jsonb_push_numeric(JsonbParseState **ps, Numeric num);
extern void hs_jsonb_push_int64(JsonbParseState **ps, int64 n);
extern void hs_jsonb_push_null(JsonbParseState **ps);
extern void hs_jsonb_push_jsonb(JsonbParseState **ps, Jsonb *jb);
extern void hs_jsonb_push_string_object(JsonbParseState **ps, List *names, List *values);

/* ---- hs_json.c ---- */

/* The fields of a HubSpot error answer that we act on; any may be NULL. */
typedef struct HsErrorBody
{
	bool		parsed;			/* the body was a JSON object */
	char	   *status;
	char	   *message;
	char	   *correlation_id;
	char	   *category;
	char	   *sub_category;
	char	   *context;		/* JSON text of "context" */
	char	   *error_type;		/* 429 shape: "RATE_LIMIT" */
	char	   *policy_name;	/* 429 shape: "TEN_SECONDLY_ROLLING", "DAILY" */
} HsErrorBody;

extern void hs_parse_error_body(const char *body, size_t len, HsErrorBody *out);

/* One per-contact error of an attendance answer (numErrors/errors). */
typedef struct HsItemError
{
	char	   *json;			/* the error object, as HubSpot sent it */
	List	   *names;			/* what its context names (vids, emails), lower case */
} HsItemError;

extern List *hs_parse_batch_errors(const char *body, size_t len, int *num_errors);

/* One contact's participation in a marketing event, as HubSpot's breakdown reads it. */
typedef struct HsParticipation
{
	char	   *contact_id;		/* HubSpot's contact id (the vid), or NULL */
	char	   *email;			/* lower case, or NULL */
	char	   *state;			/* REGISTERED, ATTENDED, CANCELLED, NO_SHOW... */
} HsParticipation;

extern bool hs_parse_breakdown(const char *body, size_t len, List **items, char **after);
extern char *hs_sanitize_remote_text(const char *s, size_t len);

/* ---- pacing.c ---- */
typedef struct HsPacer HsPacer;
extern HsPacer *hs_pacer_create(MemoryContext cxt);
extern void hs_pacer_set_limits(HsPacer *p, int rate_limit, int rate_interval_ms);
extern void hs_pacer_share(HsPacer *p, uint64 key);
extern Size hs_pacing_shmem_size(void);
extern void hs_pacing_shmem_init(void);
extern int64 hs_pacing_wait_ms(HsPacer *p);
extern void hs_pacing_note_start(HsPacer *p);
extern int	hs_pacing_room(HsPacer *p, int max);
extern double hs_pacing_rate_per_s(HsPacer *p);
extern char *hs_pacing_note_answer(HsPacer *p, const HsHttpResult *res, const HsErrorBody *err,
								   int64 retry_after_ms);
extern TimestampTz hs_pacing_paused_until(HsPacer *p);
extern int64 hs_retry_delay_ms(int attempts, int64 retry_after_ms);
extern bool hs_pacing_daily(const HsPacer *p, int64 *limit, int64 *remaining);
extern int64 hs_retry_after_ms(const char *value);
extern bool hs_parse_daily_reset_time(const char *value, int *hh, int *mm,
									  char *zone, size_t zonelen);

/* ---- hold.c ---- */
#define HS_HOLD_RETRY_MS 60000	/* a hold, the queue's or a connection's, is tried again after this */

typedef struct HsHold
{
	bool		held;
	char		reason[256];	/* the last hold's, kept after it ends */
	TimestampTz since;
	uint64		generation;		/* hs_settings_generation when held */
	struct stat file_st;		/* the file whose change ends it, when held */
	bool		file_seen;		/* it existed then */
} HsHold;

extern void hs_hold_set(HsHold *h, const char *reason, const char *file, bool *was_held,
						bool *new_reason);
extern bool hs_hold_try(HsHold *h, const char *file, bool *ended);

/* ---- worker_connections.c ---- */

/* connections.auth */
#define HS_AUTH_SETTINGS	's'		/* the connection default: the server's settings */
#define HS_AUTH_TOKEN_FILE	't'
#define HS_AUTH_OAUTH		'o'

#define HS_CONN_OAUTH_TOKEN_MAX 1024

/* The worker's view of one connection (hubspot_events.connections). */
typedef struct HsConn
{
	char		name[NAMEDATALEN];	/* the hash key */
	bool		is_default;
	bool		exists;			/* in the connections table at the last claim */
	char		auth;			/* HS_AUTH_* */
	bool		disconnected;	/* state 'disconnected': nothing is sent until connect_oauth() */
	bool		table_held;		/* the table says 'held' */
	int64		hub_id;			/* 0: unknown */
	char	   *token_file;		/* token_file connections, TopMemoryContext */
	HsPacer    *pacer;
	int64		next_ms;		/* at the last claim: its earliest row is due in this many ms */
	/* the hold (not the default's: worker.c's) */
	HsHold		hold;
	bool		hold_changed;	/* the table does not say so yet */
	/* its token, read from token_file */
	HsSecretFileCache token;
	/* OAuth connections */
	char	   *refresh_token;	/* opened for a refresh this turn, wiped after it */
	char	   *new_refresh_token;	/* HubSpot rotated it: to store */
	int64		new_hub_id;		/* learned from the token answer: to store */
	char	   *disconnected_reason;	/* the refresh was answered invalid_grant: to record */
	bool		reauth_pending;	/* HubSpot refused its token (401): refreshed, not yet proven */
	char		oauth_token[HS_CONN_OAUTH_TOKEN_MAX];	/* a copy of the shared access token */
	bool		has_pending;	/* it has pending rows (else only a session waits for its token) */
	bool		rows_pending;	/* some of them in outbox_rows (schema 0.9.0 on; else all in
								 * the intake, and claim_due() has nothing to claim) */
	/* this turn */
	const char *token_now;		/* the token its requests carry */
	int			claimed;		/* rows claimed */
	bool		went_through;	/* a request was answered other than hold */
	bool		recorded_this_turn;
	char	   *turn_hold;		/* why this turn holds it */
} HsConn;

extern HsConn *hs_conn_get(const char *name);
extern HsConn *hs_conn_default(void);
extern List *hs_conn_load_pending(List *wanted, List *intake);
extern void hs_conn_prepare_oauth(HsConn *c, MemoryContext turn_cxt);
extern void hs_conn_refresh_oauth(HsConn *c, MemoryContext turn_cxt);
extern void hs_conn_hold(HsConn *c, const char *reason);
extern bool hs_conn_hold_released(HsConn *c);
extern void hs_conn_record_state(HsConn *c, bool went_through);
extern const char *hs_conn_token(HsConn *c);

/* ---- owner_rights.c ---- */
typedef struct HsOwnerRights
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} HsOwnerRights;

extern Oid	hs_relation_owner(const char *relname);
extern void hs_owner_rights_enter(Oid owner, HsOwnerRights *r);
extern void hs_owner_rights_leave(const HsOwnerRights *r);

/* ---- conn_tokens.c ---- */
extern Size hs_conn_tokens_shmem_size(void);
extern void hs_conn_tokens_shmem_init(void);
extern bool hs_conn_tokens_available(void);
extern bool hs_conn_token_copy(const char *name, int64 min_life_ms, char *out, size_t outlen,
							   char *problem, size_t problemlen);
extern void hs_conn_token_set(const char *name, const char *token, TimestampTz expires_at);
extern void hs_conn_token_fail(const char *name, const char *problem);
extern void hs_conn_token_forget(const char *name, const char *token);
extern void hs_conn_token_want(const char *name);
extern List *hs_conn_tokens_wanted(void);

/* ---- connections.c ---- */
/* the connection a row or a call names, checked (22023 when unknown); NULL: default */
extern const char *hs_connection_argument(struct FunctionCallInfoBaseData *fcinfo, int i);
extern void hs_connection_require(const char *name);
extern char *hs_connection_problem(const char *name);
extern bool hs_connection_name_is_valid(const char *name);
extern char *hs_connection_credential(const char *name, char *auth);

/* ---- answer.c ---- */
extern Jsonb *hs_body_to_jsonb(const char *body, size_t len);
extern int	hs_sqlstate_for_answer(long http_status, const HsErrorBody *err);
extern bool hs_answer_is_expired_token(const HsHttpResult *res);
pg_noreturn extern void hs_report_http_failure(const HsHttpResult *res,
								   const char *progress_detail);

#endif							/* HUBSPOT_EVENTS_H */
