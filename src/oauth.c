/*-------------------------------------------------------------------------
 *
 * oauth.c
 *	  OAuth refresh: access tokens obtained from HubSpot's token endpoint
 *	  with the app's client id, client secret and a refresh token.
 *
 * OAuth is used when hubspot_events.oauth_client_id is set; the static
 * hubspot_events.access_token_file is then ignored.  The client secret and
 * the refresh token are read from the files named by
 * hubspot_events.oauth_client_secret_file and oauth_refresh_token_file
 * (never from setting values, which PostgreSQL logs and shows).
 *
 * Refresh policy: a token is refreshed when less than a tenth of its
 * lifetime (expires_in, counted from when the request was sent) or five
 * minutes remain, whichever is less; and once when HubSpot answers 401
 * EXPIRED_AUTHENTICATION (the callers invalidate the token they sent, then
 * ask again).
 *
 * With the library preloaded, one token lives in shared memory and is
 * shared by the worker and every backend.  An LWLock guards the state, but
 * is never held across HTTP: one process marks itself as the refresher,
 * sends the request with the lock released, and the others either use the
 * still-valid token or wait on a condition variable (interruptibly) for the
 * refresher's outcome; a refresher that vanished is taken over after the
 * request timeout.  That timeout is the server's hubspot_events.request_timeout_ms
 * (the postmaster's value, from the configuration files, kept in shared
 * memory), never a session's: any role may SET its own, and it must neither
 * let a waiter take over a refresh still in flight nor make a refresh that
 * others wait for fail early.  Without preload, each backend keeps its own
 * state.
 *
 * A refresh interrupted (query cancel, statement_timeout, termination, the
 * worker's shutdown) is not a failure: the waiters are woken and one of them
 * refreshes; nothing is recorded for them to raise.
 *
 * HubSpot may answer with a new refresh token: the newest is kept in memory
 * (shared or the backend's) and used from then on; it cannot be written
 * back to the file.  Any change of the settings, or of either file, drops
 * the state and starts again from the file.  Secrets are wiped
 * (explicit_bzero) from every buffer that held them, and never reach a log
 * line, an error message or a table.
 *
 * The connections (connect_oauth.c, the worker) use the same token request
 * for their own grants, outside the shared state: the authorization-code
 * grant that installs the app in an account (hs_oauth_code_grant), and the
 * refresh of a connection's own refresh token (hs_oauth_refresh_grant,
 * which reports a failure instead of throwing it).  They need the client id
 * and secret only; the refresh token file is the connection default's.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <sys/stat.h>
#include <json.h>
#include <printbuf.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "pgstat.h"

#define HS_SECRET_MAX			2048	/* longest access or refresh token kept */
#define HS_REFRESH_MARGIN_MAX_MS (5 * 60 * 1000)	/* refresh 5 minutes ahead at most */
#define HS_REFRESH_GRACE_MS		5000	/* a refresher silent this long past the timeout is gone */
#define HS_FAIL_TEXT_MAX		512
#define HS_SECRET_REDACTED		"[secret removed]"

typedef struct HsOAuthState
{
	uint64		key;			/* hash of the settings and files the state is for */
	bool		have_token;
	char		access_token[HS_SECRET_MAX + 1];
	char		refresh_token[HS_SECRET_MAX + 1];	/* newest from HubSpot; "": the file's */
	TimestampTz refresh_at;		/* refresh from then on */
	TimestampTz expires_at;		/* unusable from then on */
	int			refreshing_pid; /* 0: nobody is refreshing */
	TimestampTz refreshing_since;
	uint64		attempts;		/* refresh attempts finished */
	int64		refreshes;		/* successful ones */
	/* the last finished attempt's failure, for those who waited for it */
	bool		failed;
	int			fail_code;
	char		fail_message[HS_FAIL_TEXT_MAX];
	char		fail_detail[HS_FAIL_TEXT_MAX];
	char		fail_hint[HS_FAIL_TEXT_MAX];
} HsOAuthState;

typedef struct HsOAuthShared
{
	LWLock	   *lock;
	ConditionVariable cv;
	/* the server's hubspot_events.request_timeout_ms, written by the postmaster */
	pg_atomic_uint32 server_timeout_ms;
	HsOAuthState s;
} HsOAuthShared;

static HsOAuthShared *oauth_shared = NULL;	/* NULL unless preloaded */
static HsOAuthState local_state;	/* without preload */
static char returned_token[HS_SECRET_MAX + 1];	/* what the caller was given */
static bool exit_callback_registered = false;
static bool (*oauth_stop_check) (void) = NULL;

/* What a token answer held (fixed buffers: filled while json-c objects are live). */
typedef struct HsTokenAnswer
{
	char		access_token[HS_SECRET_MAX + 1];
	char		refresh_token[HS_SECRET_MAX + 1];
	int64		expires_in;
	int64		hub_id;			/* the answer's hub_id; 0: none */
	const char *problem;		/* why a 2xx answer is not usable; NULL: it is */
} HsTokenAnswer;

/*
 * One grant asked of the token endpoint: what its form carries besides the
 * grant type and the client's id and secret, and how its failures read.
 */
typedef struct HsGrantRequest
{
	const char *grant_type;		/* "refresh_token" or "authorization_code" */
	const char *what;			/* in messages: "the refresh", "the authorization code" */
	const char *action;			/* "token refresh", "authorization code exchange" */
	const char *reject_hint;	/* the hint of a rejection (4xx) */
	const char *fail_hint;		/* the hint of any other failure */
	int			nfields;
	const char *names[2];
	const char *values[2];
	bool		secret[2];		/* wiped, and taken out of everything shown */
	bool		(*stop_check) (void);	/* NULL: CHECK_FOR_INTERRUPTS only */
	int			timeout_ms;		/* 0: the session's request_timeout_ms */
} HsGrantRequest;

/* the last rejection reported: HubSpot said the refresh token is dead */
static bool last_rejection_dead_token = false;

/* ---- shared memory ---- */

Size
hs_oauth_shmem_size(void)
{
	return MAXALIGN(sizeof(HsOAuthShared));
}

void
hs_oauth_shmem_request(void)
{
	RequestAddinShmemSpace(hs_oauth_shmem_size());
	RequestNamedLWLockTranche("hubspot_events_oauth", 1);
}

/* From the shmem startup hook, with AddinShmemInitLock held. */
void
hs_oauth_shmem_startup(void)
{
	bool		found;

	oauth_shared = ShmemInitStruct("hubspot_events oauth", sizeof(HsOAuthShared), &found);
	if (!found)
	{
		memset(oauth_shared, 0, sizeof(HsOAuthShared));
		oauth_shared->lock = &(GetNamedLWLockTranche("hubspot_events_oauth"))->lock;
		ConditionVariableInit(&oauth_shared->cv);
		/* the postmaster's value: the configuration files', no session's */
		pg_atomic_init_u32(&oauth_shared->server_timeout_ms, (uint32) hs_request_timeout_ms);
	}
}

/*
 * hubspot_events.request_timeout_ms was assigned (its assign hook).  In the
 * postmaster the value comes from the configuration files or the command
 * line only, at start and at each reload: that is the server's value, which
 * the refresh and the takeover of a refresh use.  Sessions' values (SET, a
 * role's or a database's default, connection options) are ignored here.
 */
void
hs_oauth_request_timeout_assigned(int newval)
{
	if (!IsUnderPostmaster && oauth_shared != NULL)
		pg_atomic_write_u32(&oauth_shared->server_timeout_ms, (uint32) newval);
}

/* The server's request timeout (shared), or this backend's own without preload. */
static int
server_timeout_ms(void)
{
	if (oauth_shared == NULL)
		return hs_request_timeout_ms;
	return (int) pg_atomic_read_u32(&oauth_shared->server_timeout_ms);
}

void
hs_oauth_set_stop_check(bool (*stop_check) (void))
{
	oauth_stop_check = stop_check;
}

static HsOAuthState *
state(void)
{
	return oauth_shared ? &oauth_shared->s : &local_state;
}

static void
state_lock(LWLockMode mode)
{
	if (oauth_shared)
		LWLockAcquire(oauth_shared->lock, mode);
}

static void
state_unlock(void)
{
	if (oauth_shared)
		LWLockRelease(oauth_shared->lock);
}

static void
wake_waiters(void)
{
	if (oauth_shared)
		ConditionVariableBroadcast(&oauth_shared->cv);
}

static void
wipe_tokens(HsOAuthState *s)
{
	explicit_bzero(s->access_token, sizeof(s->access_token));
	explicit_bzero(s->refresh_token, sizeof(s->refresh_token));
	s->have_token = false;
	s->refresh_at = s->expires_at = 0;
}

/* A process that dies while refreshing (FATAL, termination) lets the others go on. */
static void
oauth_exit_callback(int code, Datum arg)
{
	/* an int read is atomic: most processes leave without touching the lock */
	if (oauth_shared == NULL || oauth_shared->s.refreshing_pid != MyProcPid)
		return;
	LWLockReleaseAll();
	LWLockAcquire(oauth_shared->lock, LW_EXCLUSIVE);
	if (oauth_shared->s.refreshing_pid == MyProcPid)
		oauth_shared->s.refreshing_pid = 0;
	LWLockRelease(oauth_shared->lock);
	ConditionVariableBroadcast(&oauth_shared->cv);
}

/* ---- settings ---- */

static bool
is_set(const char *v)
{
	return v != NULL && v[0] != '\0';
}

/*
 * Whether the connection default's credential is OAuth: the app's client
 * id and a refresh token file are set.  An app's client id without a
 * refresh token file serves the other connections' installs
 * (connect_oauth) only; the default then uses access_token_file, if set.
 */
bool
hs_oauth_enabled(void)
{
	return is_set(hs_oauth_client_id) && is_set(hs_oauth_refresh_token_file);
}

/*
 * Why the OAuth settings cannot work, or NULL when they can (or OAuth is
 * not configured at all).  Looks at the settings only, never at the files;
 * never throws but for out-of-memory.  The reason is palloc'd.
 */
char *
hs_oauth_settings_problem(void)
{
	if (is_set(hs_oauth_client_id))
	{
		if (!is_set(hs_oauth_client_secret_file))
			return pstrdup("hubspot_events.oauth_client_id is set but hubspot_events.oauth_client_secret_file is not");
		return NULL;
	}
	if (is_set(hs_oauth_client_secret_file))
		return pstrdup("hubspot_events.oauth_client_secret_file is set but hubspot_events.oauth_client_id is not");
	if (is_set(hs_oauth_refresh_token_file))
		return pstrdup("hubspot_events.oauth_refresh_token_file is set but hubspot_events.oauth_client_id is not");
	return NULL;
}

/* Throw the settings problem, if any (SQLSTATE 55000). */
void
hs_oauth_check_settings(void)
{
	char	   *problem = hs_oauth_settings_problem();

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the OAuth settings cannot work: %s", problem),
				 errhint("Set hubspot_events.oauth_client_id, hubspot_events.oauth_client_secret_file and hubspot_events.oauth_refresh_token_file together, or none of them to use hubspot_events.access_token_file, then reload the configuration.")));
}

static void
append_file_signature(StringInfo buf, const char *path)
{
	struct stat st;

	appendStringInfo(buf, "%s\n", path);
	if (stat(path, &st) == 0)
		appendStringInfo(buf, "%llu:%llu:%lld:%lld.%ld:%lld.%ld\n",
						 (unsigned long long) st.st_dev, (unsigned long long) st.st_ino,
						 (long long) st.st_size,
						 (long long) st.st_mtim.tv_sec, (long) st.st_mtim.tv_nsec,
						 (long long) st.st_ctim.tv_sec, (long) st.st_ctim.tv_nsec);
	else
		appendStringInfoString(buf, "-\n");
}

/*
 * What the state is for: the settings and the identity and times of both
 * files, hashed.  A rewritten refresh token file starts again from it.
 */
static uint64
settings_key(void)
{
	StringInfoData buf;
	uint64		key;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s\n%s\n", hs_oauth_client_id, hs_oauth_token_url);
	append_file_signature(&buf, hs_oauth_client_secret_file);
	append_file_signature(&buf, hs_oauth_refresh_token_file);
	key = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0x48534f41);
	pfree(buf.data);
	return key == 0 ? 1 : key;	/* 0 is "no state yet" */
}

/* ---- the token request ---- */

/*
 * Wipe every string value of a json-c tree (a token answer's tokens) before
 * json_object_put frees it: json-c frees without wiping.  json-c bounds the
 * depth (32), so the recursion is bounded too.
 */
static void
wipe_json_strings(struct json_object *o)
{
	if (o == NULL)
		return;
	if (json_object_is_type(o, json_type_string))
		explicit_bzero((char *) json_object_get_string(o), json_object_get_string_len(o));
	else if (json_object_is_type(o, json_type_array))
	{
		size_t		n = json_object_array_length(o);

		for (size_t i = 0; i < n; i++)
			wipe_json_strings(json_object_array_get_idx(o, i));
	}
	else if (json_object_is_type(o, json_type_object))
	{
		struct json_object_iterator it = json_object_iter_begin(o);
		struct json_object_iterator end = json_object_iter_end(o);

		while (!json_object_iter_equal(&it, &end))
		{
			wipe_json_strings(json_object_iter_peek_value(&it));
			json_object_iter_next(&it);
		}
	}
}

/*
 * A tokener for a body that holds secrets.  json-c collects each string in
 * the tokener's print buffer, which it grows by realloc (leaving unwiped
 * copies behind): it is sized for the whole body first, so it never grows,
 * and wiped by free_secret_tokener.  (The print buffer is a field json-c
 * 0.16 still publishes; a json-c that hides it fails to build here.)
 */
static struct json_tokener *
new_secret_tokener(size_t len)
{
	struct json_tokener *tok = json_tokener_new();

	if (tok == NULL)
		return NULL;
	if (printbuf_memset(tok->pb, 0, 0, (int) Min(len + 1, (size_t) INT_MAX)) < 0)
	{
		json_tokener_free(tok);
		return NULL;
	}
	printbuf_reset(tok->pb);
	return tok;
}

static void
free_secret_tokener(struct json_tokener *tok)
{
	if (tok->pb && tok->pb->buf)
		explicit_bzero(tok->pb->buf, tok->pb->size);
	json_tokener_free(tok);
}

/*
 * Percent-encode a secret for the form body (as hs_url_escape does), into a
 * buffer allocated once at its final size: a growing buffer would leave
 * unwiped partial copies behind.
 */
static char *
escape_secret(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *out = palloc(strlen(s) * 3 + 1);
	char	   *o = out;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
			*p == '_' || *p == '~')
			*o++ = (char) *p;
		else
		{
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 0x0f];
		}
	}
	*o = '\0';
	return out;
}

/* Copy a JSON string that may be a token: visible ASCII, not too long. */
static bool
copy_token_field(struct json_object *root, const char *name, char *dst, bool *present)
{
	struct json_object *v;
	const char *s;
	int			len;

	*present = false;
	if (!json_object_object_get_ex(root, name, &v) || v == NULL ||
		json_object_is_type(v, json_type_null))
		return true;
	*present = true;
	if (!json_object_is_type(v, json_type_string))
		return false;
	s = json_object_get_string(v);
	len = json_object_get_string_len(v);
	if (len < 1 || len > HS_SECRET_MAX)
		return false;
	for (int i = 0; i < len; i++)
		if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e)
			return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

/*
 * Read a 2xx token answer into *ans; ans->problem says why it is not
 * usable.  Never throws: no ereport happens while json-c objects are live.
 */
static void
parse_token_answer(const char *body, size_t len, HsTokenAnswer *ans)
{
	struct json_tokener *tok;
	struct json_object *root = NULL;
	bool		present;

	memset(ans, 0, sizeof(*ans));
	tok = new_secret_tokener(len);
	if (tok == NULL)
	{
		ans->problem = "out of memory while reading it";
		return;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, body, (int) Min(len, (size_t) INT_MAX));
	if (json_tokener_get_error(tok) != json_tokener_success || root == NULL ||
		!json_object_is_type(root, json_type_object))
		ans->problem = "it is not a JSON object";
	else if (!copy_token_field(root, "access_token", ans->access_token, &present) || !present)
		ans->problem = "it has no access_token of at most 2048 visible ASCII characters";
	else if (!copy_token_field(root, "refresh_token", ans->refresh_token, &present))
		ans->problem = "its refresh_token is not a string of at most 2048 visible ASCII characters";
	else
	{
		struct json_object *v;

		if (!json_object_object_get_ex(root, "expires_in", &v) || v == NULL ||
			!json_object_is_type(v, json_type_int) ||
			json_object_get_int64(v) <= 0 || json_object_get_int64(v) > 366 * 86400)
			ans->problem = "it has no expires_in of a positive number of seconds";
		else
			ans->expires_in = json_object_get_int64(v);
		/* the installing account, where the answer names it (else unknown) */
		if (json_object_object_get_ex(root, "hub_id", &v) && v != NULL &&
			json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
			ans->hub_id = json_object_get_int64(v);
	}
	if (ans->problem)
		explicit_bzero(ans, offsetof(HsTokenAnswer, problem));
	/* json-c frees its copies without wiping them */
	if (root)
	{
		wipe_json_strings(root);
		json_object_put(root);
	}
	free_secret_tokener(tok);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The byte value of an encoded character at t (before end): %XX (either
 * case, as a form body or URL carries it) or \uXXXX (as JSON text carries
 * it) for a byte below 0x80, or a JSON escape \/ \" \\.  *n gets the length
 * of the encoding; -1 when there is none at t.
 */
static int
encoded_char(const char *t, const char *end, int *n)
{
	if (end - t >= 3 && t[0] == '%' && hex_value(t[1]) >= 0 && hex_value(t[2]) >= 0)
	{
		*n = 3;
		return hex_value(t[1]) * 16 + hex_value(t[2]);
	}
	if (end - t >= 6 && t[0] == '\\' && t[1] == 'u' && t[2] == '0' && t[3] == '0' &&
		hex_value(t[4]) >= 0 && hex_value(t[5]) >= 0 && hex_value(t[4]) < 8)
	{
		*n = 6;
		return hex_value(t[4]) * 16 + hex_value(t[5]);
	}
	if (end - t >= 2 && t[0] == '\\' && (t[1] == '/' || t[1] == '"' || t[1] == '\\'))
	{
		*n = 2;
		return (unsigned char) t[1];
	}
	return -1;
}

/*
 * The length of the text at t (before end) that spells secret, each of its
 * characters written as itself or encoded (encoded_char); 0 when it does
 * not.  Where a character could be read both ways ("%25" is '%' encoded, or
 * the literal '%' then "25") both are tried.
 */
static size_t
secret_match(const char *t, const char *end, const char *secret)
{
	const char *p = t;

	for (const char *c = secret; *c; c++)
	{
		int			n;
		int			v = encoded_char(p, end, &n);

		if (v == (unsigned char) *c)
		{
			if (p < end && *p == *c)
			{
				/* ambiguous: the literal character may be meant */
				size_t		rest = secret_match(p + 1, end, c + 1);

				if (rest > 0 || c[1] == '\0')
					return (p + 1 - t) + rest;
			}
			p += n;
		}
		else if (p < end && *p == *c)
			p++;
		else
			return 0;
	}
	return p - t;
}

/*
 * A palloc'd copy of len bytes of text with every occurrence of the
 * secrets, as they are or encoded as a form body or JSON text would carry
 * them, replaced by HS_SECRET_REDACTED; *outlen (when not NULL) gets its
 * length.  Secrets shorter than 4 characters are not looked for.  An
 * endpoint that echoes what it was sent must not put the client secret or
 * the refresh token into an error message, a log line or shared memory.
 */
static char *
redact_secrets(const char *text, size_t len, const char *const *secrets, int nsecrets,
			   size_t *outlen)
{
	StringInfoData buf;
	const char *p = text;
	const char *end = text + len;

	initStringInfo(&buf);
	while (p < end)
	{
		size_t		hit = 0;

		for (int i = 0; i < nsecrets && hit == 0; i++)
			if (secrets[i] != NULL && strlen(secrets[i]) >= 4)
				hit = secret_match(p, end, secrets[i]);
		if (hit > 0)
		{
			appendStringInfoString(&buf, HS_SECRET_REDACTED);
			p += hit;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	if (outlen)
		*outlen = buf.len;
	return buf.data;
}

static char *
redact_string(const char *text, const char *const *secrets, int nsecrets)
{
	return text ? redact_secrets(text, strlen(text), secrets, nsecrets, NULL) : NULL;
}

/* Fields of a token endpoint's error answer, HubSpot's shape or OAuth 2.0's. */
static void
parse_token_error(const HsHttpResult *res, char **status, char **message,
				  char **correlation_id)
{
	HsErrorBody err;
	struct json_tokener *tok;
	struct json_object *root;

	hs_parse_error_body(res->body, res->body_len, &err);
	*status = err.status ? err.status : err.category;
	*message = err.message;
	*correlation_id = res->correlation_id ? res->correlation_id : err.correlation_id;
	if (*status && *message)
		return;
	/* OAuth 2.0's {"error": "invalid_grant", "error_description": "..."} */
	tok = json_tokener_new();
	if (tok == NULL)
		return;
	root = json_tokener_parse_ex(tok, res->body, (int) Min(res->body_len, (size_t) INT_MAX));
	if (json_tokener_get_error(tok) == json_tokener_success && root != NULL &&
		json_object_is_type(root, json_type_object))
	{
		struct json_object *v;
		const char *e = NULL;
		const char *d = NULL;

		if (json_object_object_get_ex(root, "error", &v) && json_object_is_type(v, json_type_string))
			e = json_object_get_string(v);
		if (json_object_object_get_ex(root, "error_description", &v) && json_object_is_type(v, json_type_string))
			d = json_object_get_string(v);
		/* copied with malloc'd memory still live: only non-throwing copies */
		if (*status == NULL && e != NULL)
			*status = strdup(e);
		if (*message == NULL && d != NULL)
			*message = strdup(d);
	}
	if (root)
		json_object_put(root);
	json_tokener_free(tok);
	/* move the malloc'd copies into palloc'd, sanitised ones */
	if (*status && *status != err.status && *status != err.category)
	{
		char	   *m = *status;

		*status = hs_sanitize_remote_text(m, strlen(m));
		free(m);
	}
	if (*message && *message != err.message)
	{
		char	   *m = *message;

		*message = hs_sanitize_remote_text(m, strlen(m));
		free(m);
	}
}

/*
 * Raise the ERROR for a grant the token endpoint answered with anything
 * but 2xx: rejected (4xx but 408 and 429: the credentials) or failed.  An
 * endpoint that echoes what it was sent must not put it in our log, so the
 * client secret and every secret field of the grant (the refresh token, the
 * authorization code) are taken out of everything shown.  Notes in
 * last_rejection_dead_token whether HubSpot said the refresh token is dead.
 */
pg_noreturn static void
report_grant_failure(const HsHttpResult *res, const HsGrantRequest *g, const char *secret)
{
	const char *secrets[3] = {secret, NULL, NULL};
	HsHttpResult clean = *res;
	char	   *status = NULL;
	char	   *message = NULL;
	char	   *correlation_id = NULL;
	bool		rejected;

	for (int i = 0; i < g->nfields; i++)
		if (g->secret[i])
			secrets[i + 1] = g->values[i];
	/* the secrets out of the whole answer first, before any part of it is cut */
	clean.body = redact_secrets(res->body, res->body_len, secrets, 3, &clean.body_len);
	clean.correlation_id = redact_string(res->correlation_id, secrets, 3);
	parse_token_error(&clean, &status, &message, &correlation_id);
	if (message == NULL && clean.body_len > 0)
		message = hs_sanitize_remote_text(clean.body, Min(clean.body_len, 200));
	/* and out of what JSON decoding produced */
	status = redact_string(status, secrets, 3);
	message = redact_string(message, secrets, 3);
	correlation_id = redact_string(correlation_id, secrets, 3);
	rejected = res->http_status >= 400 && res->http_status <= 499 &&
		res->http_status != 408 && res->http_status != 429;
	/* OAuth 2.0's invalid_grant, or HubSpot's own word for an unknown refresh token */
	last_rejection_dead_token = res->http_status == 400 && status != NULL &&
		(strcmp(status, "invalid_grant") == 0 || strcmp(status, "BAD_REFRESH_TOKEN") == 0);
	ereport(ERROR,
			(errcode(rejected ? ERRCODE_HS_TOKEN_REJECTED : ERRCODE_HS_TOKEN_ENDPOINT),
			 errmsg("the OAuth token endpoint %s %s: HTTP %ld%s%s%s%s",
					rejected ? "rejected" : "failed", g->what,
					res->http_status,
					status ? " " : "", status ? status : "",
					message ? ": " : "", message ? message : ""),
			 correlation_id ? errdetail("correlationId: %s.", correlation_id) : 0,
			 rejected ?
			 errhint("%s", g->reject_hint) :
			 errhint("%s", g->fail_hint)));
}

/*
 * Ask the token endpoint for the grant g with the app's client id and the
 * client secret from its file.  Fills *ans; throws HS006 when the endpoint
 * rejects the grant, HS007 when it fails otherwise, the file's errors when
 * it cannot be read, and 57P01 (ERRCODE_ADMIN_SHUTDOWN) when g's stop check
 * abandoned the request.  Every copy of a secret is wiped.
 */
static void
request_grant(const HsGrantRequest *g, HsTokenAnswer *ans)
{
	struct stat st;
	char	   *volatile secret = NULL;
	char	   *volatile body = NULL;
	char	   *volatile esc_secret = NULL;
	char	   *volatile esc_values[2] = {NULL, NULL};
	HsHttpResult res = {0};
	bool		finished = false;

	Assert(g->nfields <= 2);
	secret = hs_read_secret_file("oauth_client_secret_file", "client secret", "a client secret",
								 hs_oauth_client_secret_file, &st, CurrentMemoryContext);
	PG_TRY();
	{
		char	   *esc_id = hs_url_escape(hs_oauth_client_id);
		size_t		size;
		char	   *p;

		esc_secret = escape_secret(secret);
		size = strlen("grant_type=") + strlen(g->grant_type) + strlen("&client_id=") + strlen(esc_id) +
			strlen("&client_secret=") + strlen(esc_secret) + 1;
		for (int i = 0; i < g->nfields; i++)
		{
			esc_values[i] = escape_secret(g->values[i]);
			size += 2 + strlen(g->names[i]) + strlen(esc_values[i]);
		}
		/* allocated once at its size: no unwiped first attempt is left behind */
		body = palloc(size);
		p = body;
		p += snprintf(p, size, "grant_type=%s&client_id=%s&client_secret=%s",
					  g->grant_type, esc_id, esc_secret);
		for (int i = 0; i < g->nfields; i++)
			p += snprintf(p, size - (p - body), "&%s=%s", g->names[i], esc_values[i]);

		res.body = NULL;
		finished = hs_http_post_form(hs_oauth_token_url, body, strlen(body), g->stop_check,
									 g->timeout_ms, &res);

		if (!finished)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("the OAuth %s was abandoned: the process is shutting down", g->action)));
		if (!res.transport_ok)
			ereport(ERROR,
					(errcode(ERRCODE_HS_TOKEN_ENDPOINT),
					 errmsg("could not reach the OAuth token endpoint: %s", res.transport_error),
					 errhint("Check hubspot_events.oauth_token_url and the network path to it.")));
		if (res.http_status >= 200 && res.http_status <= 299)
		{
			parse_token_answer(res.body, res.body_len, ans);
			if (ans->problem)
				ereport(ERROR,
						(errcode(ERRCODE_HS_TOKEN_ENDPOINT),
						 errmsg("the OAuth token endpoint answered HTTP %ld with an unusable answer: %s",
								res.http_status, ans->problem),
						 res.correlation_id ? errdetail("correlationId: %s.", res.correlation_id) : 0));
		}
		else
			report_grant_failure(&res, g, secret);
	}
	PG_FINALLY();
	{
		explicit_bzero(secret, strlen(secret));
		if (esc_secret)
			explicit_bzero(esc_secret, strlen(esc_secret));
		for (int i = 0; i < 2; i++)
			if (esc_values[i])
				explicit_bzero(esc_values[i], strlen(esc_values[i]));
		if (body)
			explicit_bzero(body, strlen(body));
		if (res.body)
			explicit_bzero(res.body, res.body_len);
	}
	PG_END_TRY();
}

#define HS_REFRESH_REJECTED_HINT \
	"Check hubspot_events.oauth_client_id and the files named by hubspot_events.oauth_client_secret_file and hubspot_events.oauth_refresh_token_file; a refresh token stops working when the app is uninstalled."

/* The refresh grant with refresh_token (not empty), as the shared state's refresher does it. */
static void
refresh_grant_request(const char *refresh_token, const char *reject_hint, HsTokenAnswer *ans)
{
	HsGrantRequest g = {0};

	g.grant_type = "refresh_token";
	g.what = "the refresh";
	g.action = "token refresh";
	g.reject_hint = reject_hint;
	g.fail_hint = "HubSpot's token endpoint may be unavailable; the refresh is tried again on the next call.";
	g.nfields = 1;
	g.names[0] = "refresh_token";
	g.values[0] = refresh_token;
	g.secret[0] = true;
	/* the server's time limit, not the session's: others may be waiting for this refresh */
	g.stop_check = oauth_stop_check;
	g.timeout_ms = server_timeout_ms();
	request_grant(&g, ans);
}

/*
 * Ask the token endpoint for an access token with the refresh token given
 * (or the file's when it is empty).  Fills *ans; throws as request_grant.
 */
static void
request_token(const char *refresh_token, HsTokenAnswer *ans)
{
	struct stat st;
	char	   *volatile refresh = NULL;

	PG_TRY();
	{
		if (refresh_token[0] != '\0')
			refresh = pstrdup(refresh_token);
		else
			refresh = hs_read_secret_file("oauth_refresh_token_file", "refresh token", "a refresh token",
										  hs_oauth_refresh_token_file, &st, CurrentMemoryContext);
		refresh_grant_request(refresh, HS_REFRESH_REJECTED_HINT, ans);
	}
	PG_FINALLY();
	{
		if (refresh)
			explicit_bzero(refresh, strlen(refresh));
	}
	PG_END_TRY();
}

/* ---- the token ---- */

static bool
own_failure(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_HS_TOKEN_REJECTED || sqlerrcode == ERRCODE_HS_TOKEN_ENDPOINT;
}

/* A refresh stopped by an interrupt, not failed (ProcessInterrupts' ERRORs, our stop check's). */
static bool
is_interrupt(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED || sqlerrcode == ERRCODE_ADMIN_SHUTDOWN;
}

/*
 * The stop check (the worker's SIGTERM) abandoned a refresh or the wait for
 * one: the process ends, as PostgreSQL ends a terminated process, without
 * anything recorded as a failure (no hold, no failed refresh for others).
 */
static void
stop_for_shutdown(void)
{
	ereport(FATAL,
			(errcode(ERRCODE_ADMIN_SHUTDOWN),
			 errmsg("terminating during an OAuth token refresh due to administrator command")));
}

/*
 * Refresh (this process is marked as the refresher), store the outcome and
 * wake the waiters.  Returns the new token (returned_token).  refresh_copy
 * (the refresh token to use, "": the file's) and ans are the caller's,
 * allocated before it marked itself: the mark is cleared on every path.
 */
static const char *
refresh(uint64 key, char *refresh_copy, HsTokenAnswer *ans)
{
	HsOAuthState *s = state();
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz sent_at = GetCurrentTimestamp();
	int64		lifetime_ms;
	int64		margin_ms;

	PG_TRY();
	{
		request_token(refresh_copy, ans);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		interrupted;
		bool		stopped;

		explicit_bzero(refresh_copy, HS_SECRET_MAX + 1);
		explicit_bzero(ans, sizeof(HsTokenAnswer));
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		interrupted = is_interrupt(edata->sqlerrcode);
		/* only request_token raises 57P01 as an ERROR (ProcessInterrupts' is FATAL) */
		stopped = (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN);
		state_lock(LW_EXCLUSIVE);
		if (s->refreshing_pid == MyProcPid)
			s->refreshing_pid = 0;
		/*
		 * An interrupt is no outcome: the waiters, woken by the cleared
		 * mark, find no finished attempt to take a failure from, and one of
		 * them refreshes.
		 */
		if (!interrupted)
		{
			s->attempts++;
			s->failed = own_failure(edata->sqlerrcode);
			s->fail_code = edata->sqlerrcode;
			strlcpy(s->fail_message, edata->message ? edata->message : "", HS_FAIL_TEXT_MAX);
			strlcpy(s->fail_detail, edata->detail ? edata->detail : "", HS_FAIL_TEXT_MAX);
			strlcpy(s->fail_hint, edata->hint ? edata->hint : "", HS_FAIL_TEXT_MAX);
		}
		state_unlock();
		wake_waiters();
		FreeErrorData(edata);
		if (stopped)
		{
			FlushErrorState();
			stop_for_shutdown();
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	explicit_bzero(refresh_copy, HS_SECRET_MAX + 1);

	lifetime_ms = ans->expires_in * 1000;
	margin_ms = Min(lifetime_ms / 10, HS_REFRESH_MARGIN_MAX_MS);

	state_lock(LW_EXCLUSIVE);
	if (s->key == key)
	{
		explicit_bzero(s->access_token, sizeof(s->access_token));
		strlcpy(s->access_token, ans->access_token, sizeof(s->access_token));
		if (ans->refresh_token[0] != '\0')
		{
			explicit_bzero(s->refresh_token, sizeof(s->refresh_token));
			strlcpy(s->refresh_token, ans->refresh_token, sizeof(s->refresh_token));
		}
		s->have_token = true;
		s->expires_at = TimestampTzPlusMilliseconds(sent_at, lifetime_ms);
		s->refresh_at = TimestampTzPlusMilliseconds(sent_at, lifetime_ms - margin_ms);
	}
	if (s->refreshing_pid == MyProcPid)
		s->refreshing_pid = 0;
	s->attempts++;
	s->refreshes++;
	s->failed = false;
	explicit_bzero(returned_token, sizeof(returned_token));
	strlcpy(returned_token, ans->access_token, sizeof(returned_token));
	state_unlock();
	wake_waiters();
	explicit_bzero(ans, sizeof(HsTokenAnswer));
	pfree(ans);
	return returned_token;
}

/* Wait (interruptibly, at most a second) until the refresh in progress ends. */
static void
wait_for_refresh(uint64 seen_attempts)
{
	ConditionVariablePrepareToSleep(&oauth_shared->cv);
	for (;;)
	{
		bool		done;

		LWLockAcquire(oauth_shared->lock, LW_SHARED);
		done = oauth_shared->s.attempts != seen_attempts || oauth_shared->s.refreshing_pid == 0;
		LWLockRelease(oauth_shared->lock);
		if (done)
			break;
		if (ConditionVariableTimedSleep(&oauth_shared->cv, 1000, PG_WAIT_EXTENSION))
			break;				/* the caller looks again (a vanished refresher is taken over) */
	}
	ConditionVariableCancelSleep();
}

/*
 * The OAuth access token to send (OAuth must be enabled and its settings
 * complete: hs_get_access_token checks).  The result is valid until the next
 * call.  Throws the token endpoint's failure (HS006, HS007) or the files'.
 */
const char *
hs_oauth_access_token(void)
{
	HsOAuthState *s = state();
	uint64		key = settings_key();
	/* allocated before the lock: nothing may throw while it is held or marked */
	char	   *refresh_copy = palloc0(HS_SECRET_MAX + 1);
	HsTokenAnswer *ans = palloc0(sizeof(HsTokenAnswer));

	if (oauth_shared && !exit_callback_registered)
	{
		before_shmem_exit(oauth_exit_callback, (Datum) 0);
		exit_callback_registered = true;
	}

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		wait = false;
		uint64		seen_attempts = 0;

		state_lock(LW_EXCLUSIVE);
		if (s->key != key)
		{
			/* other settings or files: start again from the files */
			wipe_tokens(s);
			s->key = key;
			s->failed = false;
		}
		if (s->have_token &&
			(now < s->refresh_at || (now < s->expires_at && s->refreshing_pid != 0 &&
									 s->refreshing_pid != MyProcPid)))
		{
			/* valid, and not due (or someone else is refreshing it) */
			explicit_bzero(returned_token, sizeof(returned_token));
			strlcpy(returned_token, s->access_token, sizeof(returned_token));
			state_unlock();
			return returned_token;
		}
		/* the refresher's request ends within the server's timeout, whatever this session's */
		if (s->refreshing_pid != 0 && s->refreshing_pid != MyProcPid &&
			!TimestampDifferenceExceeds(s->refreshing_since, now,
										server_timeout_ms() + HS_REFRESH_GRACE_MS))
		{
			wait = true;
			seen_attempts = s->attempts;
		}
		else
		{
			/* this process refreshes */
			s->refreshing_pid = MyProcPid;
			s->refreshing_since = now;
			strlcpy(refresh_copy, s->refresh_token, HS_SECRET_MAX + 1);
		}
		state_unlock();

		if (!wait)
			return refresh(key, refresh_copy, ans);

		wait_for_refresh(seen_attempts);
		/* the worker stops waiting at SIGTERM, as it would stop its own refresh */
		if (oauth_stop_check && oauth_stop_check())
			stop_for_shutdown();

		/* the refresh waited for failed at the token endpoint: its error is ours */
		state_lock(LW_SHARED);
		if (s->attempts != seen_attempts && s->failed && s->key == key && !s->have_token)
		{
			int			code = s->fail_code;
			char		message[HS_FAIL_TEXT_MAX];
			char		detail[HS_FAIL_TEXT_MAX];
			char		hint[HS_FAIL_TEXT_MAX];

			/* copied without palloc: nothing may throw while the lock is held */
			strlcpy(message, s->fail_message, sizeof(message));
			strlcpy(detail, s->fail_detail, sizeof(detail));
			strlcpy(hint, s->fail_hint, sizeof(hint));
			state_unlock();
			ereport(ERROR,
					(errcode(code),
					 errmsg_internal("%s", message),
					 detail[0] ? errdetail_internal("%s", detail) : 0,
					 hint[0] ? errhint("%s", hint) : 0));
		}
		state_unlock();
	}
}

/*
 * HubSpot answered 401 EXPIRED_AUTHENTICATION to token: forget it (unless
 * another process has already replaced it), so that the next
 * hs_oauth_access_token() refreshes once.
 */
void
hs_oauth_token_expired(const char *token)
{
	HsOAuthState *s = state();

	if (token == NULL)
		return;
	state_lock(LW_EXCLUSIVE);
	if (s->have_token && strcmp(s->access_token, token) == 0)
	{
		explicit_bzero(s->access_token, sizeof(s->access_token));
		s->have_token = false;
		s->refresh_at = s->expires_at = 0;
	}
	state_unlock();
}

/* Successful refreshes so far (shared, or this backend's). */
int64
hs_oauth_refresh_count(void)
{
	HsOAuthState *s = state();
	int64		n;

	state_lock(LW_SHARED);
	n = s->refreshes;
	state_unlock();
	return n;
}

/* ---- grants for the connections (connect_oauth, the worker) ---- */

/*
 * Why the app's client settings cannot be used for a grant of a connection,
 * or NULL: the client id and the client secret's file must be set (the
 * refresh token file is the connection default's, and not needed here).
 * The reason is palloc'd.
 */
static char *
client_problem(void)
{
	if (!is_set(hs_oauth_client_id))
		return pstrdup("hubspot_events.oauth_client_id is not set");
	if (!is_set(hs_oauth_client_secret_file))
		return pstrdup("hubspot_events.oauth_client_id is set but hubspot_events.oauth_client_secret_file is not");
	return NULL;
}

/* Throw (55000) when the app's client settings cannot be used for a grant. */
void
hs_oauth_check_client(void)
{
	char	   *problem = client_problem();

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the OAuth app's settings are incomplete: %s", problem),
				 errhint("Set hubspot_events.oauth_client_id and hubspot_events.oauth_client_secret_file (the HubSpot app's client id, and a file holding its client secret) in postgresql.conf, then reload the configuration.")));
}

/* The grant from a token answer, in palloc'd copies; the answer is wiped. */
static void
grant_from_answer(HsTokenAnswer *ans, HsOAuthGrant *out)
{
	memset(out, 0, sizeof(*out));
	out->access_token = pstrdup(ans->access_token);
	out->refresh_token = ans->refresh_token[0] != '\0' ? pstrdup(ans->refresh_token) : NULL;
	out->expires_in_s = ans->expires_in;
	out->hub_id = ans->hub_id;
	explicit_bzero(ans, sizeof(*ans));
}

/* Wipe and free a grant's tokens. */
void
hs_oauth_grant_wipe(HsOAuthGrant *grant)
{
	if (grant->access_token)
	{
		explicit_bzero(grant->access_token, strlen(grant->access_token));
		pfree(grant->access_token);
	}
	if (grant->refresh_token)
	{
		explicit_bzero(grant->refresh_token, strlen(grant->refresh_token));
		pfree(grant->refresh_token);
	}
	memset(grant, 0, sizeof(*grant));
}

/*
 * The authorization-code grant: the end of HubSpot's install flow.  The
 * code (single use) and the redirect_uri it was issued for are exchanged,
 * with the app's client id and secret, for the installing account's tokens
 * (and its hub_id, where the answer carries it).  The session's request
 * timeout applies, and query cancel interrupts it.  Throws 55000 when the
 * client settings are missing, HS006 when the endpoint rejects the code
 * (used, expired, another redirect_uri, another app's), HS007 when it fails
 * otherwise; the code is taken out of every message.  The caller wipes the
 * grant (hs_oauth_grant_wipe).
 */
void
hs_oauth_code_grant(const char *code, const char *redirect_uri, HsOAuthGrant *out)
{
	HsGrantRequest g = {0};
	HsTokenAnswer *ans;

	hs_oauth_check_client();
	g.grant_type = "authorization_code";
	g.what = "the authorization code";
	g.action = "authorization code exchange";
	g.reject_hint = "An authorization code works once, shortly after HubSpot issued it, with the redirect_uri it was issued for; check also hubspot_events.oauth_client_id and the file named by hubspot_events.oauth_client_secret_file.";
	g.fail_hint = "HubSpot's token endpoint may be unavailable: call hubspot_events.connect_oauth() again (with a new authorization code if HubSpot then says this one was used).";
	g.nfields = 2;
	g.names[0] = "redirect_uri";
	g.values[0] = redirect_uri;
	g.secret[0] = false;
	g.names[1] = "code";
	g.values[1] = code;
	g.secret[1] = true;
	g.stop_check = NULL;
	g.timeout_ms = 0;

	ans = palloc0(sizeof(HsTokenAnswer));
	PG_TRY();
	{
		request_grant(&g, ans);
	}
	PG_CATCH();
	{
		explicit_bzero(ans, sizeof(HsTokenAnswer));
		PG_RE_THROW();
	}
	PG_END_TRY();
	grant_from_answer(ans, out);
	pfree(ans);
}

/*
 * Whether a refresh grant's ERROR is a failure to report to the caller
 * (the endpoint's answer, the transport, the settings or the files), not
 * one to raise (an interrupt, the process's shutdown, out of memory, a
 * bug).
 */
static bool
reportable_grant_failure(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_HS_TOKEN_REJECTED ||
		sqlerrcode == ERRCODE_HS_TOKEN_ENDPOINT ||
		sqlerrcode == ERRCODE_HS_TRANSPORT ||
		sqlerrcode == ERRCODE_HS_TIMEOUT ||
		sqlerrcode == ERRCODE_CONFIG_FILE_ERROR ||
		sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
		sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||	/* a setting refused at start */
		sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE || /* a file's permissions */
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_SYSTEM_ERROR;	/* a file's other errors */
}

/*
 * The refresh grant with a connection's refresh token (not the settings'
 * file), for the worker, which must not throw for a refresh that failed:
 * true with *out filled (the caller wipes it with hs_oauth_grant_wipe, and
 * stores out->refresh_token when HubSpot rotated it); false with
 * *invalid_grant when HubSpot answered 400 invalid_grant or
 * BAD_REFRESH_TOKEN (the app was uninstalled or the token revoked: the
 * connection needs connect_oauth again); false with *error (palloc'd, no
 * secret in it) for every other failure.  Interrupts and the worker's
 * shutdown (the stop check) are raised, as for the settings' refresh.  The
 * server's request timeout applies.  Uses no shared state: the caller keeps
 * the connection's access token.
 */
bool
hs_oauth_refresh_grant(const char *refresh_token, HsOAuthGrant *out, bool *invalid_grant,
					   char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	HsTokenAnswer *ans;
	char	   *problem;

	memset(out, 0, sizeof(*out));
	*invalid_grant = false;
	*error = NULL;
	problem = client_problem();
	if (problem)
	{
		*error = psprintf("the OAuth app's settings are incomplete: %s", problem);
		return false;
	}
	if (refresh_token == NULL || refresh_token[0] == '\0')
	{
		*error = pstrdup("the connection has no refresh token");
		return false;
	}

	ans = palloc0(sizeof(HsTokenAnswer));
	last_rejection_dead_token = false;
	PG_TRY();
	{
		refresh_grant_request(refresh_token,
							  "A refresh token stops working when the app is uninstalled or the token revoked: connect the account again with hubspot_events.connect_oauth().",
							  ans);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		explicit_bzero(ans, sizeof(HsTokenAnswer));
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		/* only request_grant raises 57P01 as an ERROR: the stop check's */
		if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		{
			FlushErrorState();
			stop_for_shutdown();
		}
		if (!reportable_grant_failure(edata->sqlerrcode))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		*invalid_grant = edata->sqlerrcode == ERRCODE_HS_TOKEN_REJECTED && last_rejection_dead_token;
		if (edata->detail)
		{
			/* "correlationId: ...." as a parenthesis of the message */
			int			dlen = strlen(edata->detail);

			if (dlen > 0 && edata->detail[dlen - 1] == '.')
				dlen--;
			*error = psprintf("%s (%.*s)", edata->message, dlen, edata->detail);
		}
		else
			*error = pstrdup(edata->message);
		FreeErrorData(edata);
		pfree(ans);
		return false;
	}
	PG_END_TRY();
	grant_from_answer(ans, out);
	pfree(ans);
	return true;
}
