/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl: sending one request to HubSpot, interruptibly.
 *
 * Design:
 *	- One multi handle per backend and a pool of easy handles ("slots"),
 *	  created on first use and reused, so that consecutive requests share
 *	  kept-alive connections.  hs_http_post_many() runs several requests with
 *	  at most max_concurrency in flight (the worker); hs_http_post_json() is
 *	  the one-request case (the direct functions).
 *	- Transfers are driven through the multi interface in slices of at most
 *	  HS_POLL_SLICE_MS, with CHECK_FOR_INTERRUPTS() between slices: query
 *	  cancel, statement_timeout and termination stop a request in flight
 *	  promptly (the worker passes its own check, which watches SIGTERM and
 *	  SIGHUP).  An ERROR never unwinds through libcurl's frames: it is thrown
 *	  only between libcurl calls.
 *	- libcurl's callbacks never palloc (an ERROR inside them would longjmp
 *	  through libcurl): the answer is collected in malloc'd memory owned by
 *	  this file, copied into palloc'd memory after the transfer, and freed
 *	  at the end of the request, or at the start of the next one when an
 *	  ERROR interrupted it.  A reset callback on the caller's memory context
 *	  also detaches interrupted transfers, closing their connections at once.
 *	- TLS verification is always on (hs_http_set_tls: the peer's certificate
 *	  and host name, against hubspot_events.ca_file or the system's CA
 *	  bundle; no setting turns it off); redirects are never followed (they
 *	  would carry the token elsewhere); only http and https are spoken;
 *	  CURLOPT_NOSIGNAL keeps libcurl away from the server's signal handlers.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#define HS_POLL_SLICE_MS	100
#define HS_MAX_ANSWER_BYTES	(8 * 1024 * 1024)
#define HS_HEADER_VALUE_MAX	256

/* The answer being received; malloc-owned, see the file header. */
typedef struct HsReceive
{
	char	   *body;
	size_t		len;
	size_t		cap;
	bool		too_large;
	char		content_type[HS_HEADER_VALUE_MAX];
	char		correlation_id[HS_HEADER_VALUE_MAX];
	char		retry_after[HS_HEADER_VALUE_MAX];
	int64		ratelimit_max;
	int64		ratelimit_remaining;
	int64		ratelimit_interval_ms;
	int64		ratelimit_daily;
	int64		ratelimit_daily_remaining;
} HsReceive;

/* One easy handle and what its current transfer owns. */
typedef struct HsSlot
{
	CURL	   *easy;
	bool		attached;		/* added to the multi handle */
	struct curl_slist *headers;
	HsReceive	recv;
	char		errbuf[CURL_ERROR_SIZE];
	HsHttpRequest *req;			/* the request it is serving */
	const char *token;			/* the token it sent (redacted from the answer) */
} HsSlot;

static CURLM *hs_multi = NULL;
static HsSlot *hs_slots = NULL;	/* malloc'd, hs_nslots long */
static int	hs_nslots = 0;
static uint64 hs_transfer_seq = 0;

/* registered on the caller's context for one call of hs_http_post_many */
typedef struct HsTransferGuard
{
	MemoryContextCallback cb;
	uint64		seq;
} HsTransferGuard;

/* ---- URLs ---- */

/*
 * Percent-encode a path segment or query value: everything but RFC 3986's
 * unreserved characters.  A value made only of dots ("." or "..") has its
 * dots encoded too, so that as a path segment it can never be a dot segment
 * (requests are sent with CURLOPT_PATH_AS_IS: nothing else would stop "..",
 * whatever a row holds, from moving the request to another path).
 */
char *
hs_url_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	StringInfoData buf;
	bool		all_dots = (s[strspn(s, ".")] == '\0');

	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || (*p == '.' && !all_dots) ||
			*p == '_' || *p == '~')
			appendStringInfoChar(&buf, (char) *p);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[*p >> 4]);
			appendStringInfoChar(&buf, hex[*p & 0x0f]);
		}
	}
	return buf.data;
}

/* ---- libcurl callbacks: no palloc, no ereport ---- */

static size_t
receive_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	HsReceive  *r = (HsReceive *) userdata;
	size_t		n = size * nmemb;

	if (r->len + n > HS_MAX_ANSWER_BYTES)
	{
		r->too_large = true;
		return 0;				/* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (r->len + n + 1 > r->cap)
	{
		size_t		newcap = Max(r->cap * 2, r->len + n + 1);
		char	   *p;

		newcap = Max(newcap, 4096);
		/* not realloc: the old buffer may hold a token (the token endpoint's answer) */
		p = malloc(newcap);
		if (p == NULL)
			return 0;
		if (r->body)
		{
			memcpy(p, r->body, r->len);
			explicit_bzero(r->body, r->cap);
			free(r->body);
		}
		r->body = p;
		r->cap = newcap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static void
copy_header_value(char *dst, const char *src, size_t len)
{
	while (len > 0 && (*src == ' ' || *src == '\t'))
		src++, len--;
	while (len > 0 && (src[len - 1] == '\r' || src[len - 1] == '\n' ||
					   src[len - 1] == ' ' || src[len - 1] == '\t'))
		len--;
	if (len >= HS_HEADER_VALUE_MAX)
		len = HS_HEADER_VALUE_MAX - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static int64
header_int64(const char *src, size_t len)
{
	char		buf[32];
	char	   *end;
	long long	v;

	copy_header_value(buf, src, Min(len, sizeof(buf) - 1));
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || v < 0)
		return -1;
	return (int64) v;
}

static void
reset_receive_headers(HsReceive *r)
{
	r->content_type[0] = '\0';
	r->correlation_id[0] = '\0';
	r->retry_after[0] = '\0';
	r->ratelimit_max = -1;
	r->ratelimit_remaining = -1;
	r->ratelimit_interval_ms = -1;
	r->ratelimit_daily = -1;
	r->ratelimit_daily_remaining = -1;
}

static size_t
receive_header(char *data, size_t size, size_t nitems, void *userdata)
{
	HsReceive  *r = (HsReceive *) userdata;
	size_t		n = size * nitems;
	const char *colon;
	size_t		namelen;
	const char *value;
	size_t		valuelen;

	/* a new status line (after "100 Continue", say) starts a new header set */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		reset_receive_headers(r);
		return n;
	}
	colon = memchr(data, ':', n);
	if (colon == NULL)
		return n;
	namelen = colon - data;
	value = colon + 1;
	valuelen = n - namelen - 1;

#define HEADER_IS(name) (namelen == strlen(name) && pg_strncasecmp(data, name, namelen) == 0)
	if (HEADER_IS("content-type"))
		copy_header_value(r->content_type, value, valuelen);
	else if (HEADER_IS("x-hubspot-correlation-id"))
		copy_header_value(r->correlation_id, value, valuelen);
	else if (HEADER_IS("retry-after"))
		copy_header_value(r->retry_after, value, valuelen);
	else if (HEADER_IS("x-hubspot-ratelimit-max"))
		r->ratelimit_max = header_int64(value, valuelen);
	else if (HEADER_IS("x-hubspot-ratelimit-remaining"))
		r->ratelimit_remaining = header_int64(value, valuelen);
	else if (HEADER_IS("x-hubspot-ratelimit-interval-milliseconds"))
		r->ratelimit_interval_ms = header_int64(value, valuelen);
	else if (HEADER_IS("x-hubspot-ratelimit-daily"))
		r->ratelimit_daily = header_int64(value, valuelen);
	else if (HEADER_IS("x-hubspot-ratelimit-daily-remaining"))
		r->ratelimit_daily_remaining = header_int64(value, valuelen);
#undef HEADER_IS
	return n;
}

/* ---- requests ---- */

/* Detach a slot's transfer and free what it owns.  Safe at any time. */
static void
release_slot(HsSlot *slot)
{
	if (slot->attached)
	{
		curl_multi_remove_handle(hs_multi, slot->easy);
		slot->attached = false;
	}
	if (slot->headers)
	{
		/* the Authorization line holds the token: libcurl frees without wiping */
		for (struct curl_slist *l = slot->headers; l != NULL; l = l->next)
			if (l->data)
				explicit_bzero(l->data, strlen(l->data));
		curl_slist_free_all(slot->headers);
		slot->headers = NULL;
	}
	/* an answer may hold a secret (the token endpoint's): wipe it */
	if (slot->recv.body)
		explicit_bzero(slot->recv.body, slot->recv.cap);
	free(slot->recv.body);
	memset(&slot->recv, 0, sizeof(slot->recv));
	slot->req = NULL;
}

/*
 * Release what earlier requests left behind (normally nothing; after an
 * ERROR in the middle of transfers, their handles and buffers).
 */
static void
release_all_slots(void)
{
	for (int i = 0; i < hs_nslots; i++)
		release_slot(&hs_slots[i]);
}

static void
release_transfer_callback(void *arg)
{
	HsTransferGuard *guard = (HsTransferGuard *) arg;

	/* only the transfers this guard was made for; later ones are not ours */
	if (guard->seq == hs_transfer_seq)
		release_all_slots();
}

static void
ensure_slots(int n)
{
	if (hs_multi == NULL)
	{
		hs_multi = curl_multi_init();
		if (hs_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
	}
	if (n > hs_nslots)
	{
		HsSlot	   *p = realloc(hs_slots, sizeof(HsSlot) * n);

		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory for HTTP transfers")));
		memset(p + hs_nslots, 0, sizeof(HsSlot) * (n - hs_nslots));
		hs_slots = p;
		hs_nslots = n;
	}
	for (int i = 0; i < n; i++)
	{
		if (hs_slots[i].easy == NULL)
		{
			hs_slots[i].easy = curl_easy_init();
			if (hs_slots[i].easy == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("could not create a libcurl handle")));
		}
	}
}

/* Append a header to the slot's list, throwing when out of memory. */
static void
add_header(HsSlot *slot, const char *line)
{
	struct curl_slist *l = curl_slist_append(slot->headers, line);

	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building an HTTP request")));
	slot->headers = l;
}

#define SETOPT(opt, val) \
	do { \
		CURLcode _rc = curl_easy_setopt(easy, (opt), (val)); \
		if (_rc != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_INTERNAL_ERROR), \
					 errmsg("could not set libcurl option %s: %s", #opt, curl_easy_strerror(_rc)))); \
	} while (0)

/*
 * Verification of the peer's certificate and host name, always; the CA
 * bundle is hubspot_events.ca_file, or libcurl's default (the system's) when
 * that is empty.  No setting and no code path turns verification off.
 * TLS 1.2 at least, as HubSpot requires.
 */
void
hs_http_set_tls(void *handle)
{
	CURL	   *easy = (CURL *) handle;
	const char *refused = hs_settings_refused();

	/* never the defaults in place of a CA file or endpoint that was configured */
	if (refused)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s in the server's configuration was refused when the server started: nothing is sent with the default in its place",
						refused),
				 errhint("Correct it (the server log at start says why it was refused) and reload the configuration.")));

	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
	if (hs_ca_file != NULL && hs_ca_file[0] != '\0')
		SETOPT(CURLOPT_CAINFO, hs_ca_file);
}

/* Set a slot up for a request and add it to the multi handle. */
static void
start_slot(HsSlot *slot, HsHttpRequest *req, const char *token)
{
	CURL	   *easy = slot->easy;
	char	   *auth;
	CURLMcode	mc;

	curl_easy_reset(easy);
	memset(&slot->recv, 0, sizeof(slot->recv));
	reset_receive_headers(&slot->recv);
	slot->errbuf[0] = '\0';
	slot->req = req;
	slot->token = token;

	if (token != NULL)
	{
		auth = psprintf("Authorization: Bearer %s", token);
		PG_TRY();
		{
			add_header(slot, auth);
		}
		PG_FINALLY();
		{
			explicit_bzero(auth, strlen(auth));
			pfree(auth);
		}
		PG_END_TRY();
	}
	if (!req->get)
		add_header(slot, req->content_type ? req->content_type : "Content-Type: application/json");
	add_header(slot, "Accept: application/json");
	add_header(slot, "Expect:");

	SETOPT(CURLOPT_URL, req->url);
	SETOPT(CURLOPT_PRIVATE, slot);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
	/*
	 * A request abandoned during a slow DNS lookup (a cancel, a
	 * statement_timeout, SIGTERM) does not wait for libcurl's resolver
	 * thread to finish: it is left to end by itself.
	 */
	SETOPT(CURLOPT_QUICK_EXIT, 1L);
#endif
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	/* send the path as built: never squash dot segments */
	SETOPT(CURLOPT_PATH_AS_IS, 1L);
	hs_http_set_tls(easy);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_TIMEOUT_MS, (long) (req->timeout_ms > 0 ? req->timeout_ms : hs_request_timeout_ms));
	SETOPT(CURLOPT_ERRORBUFFER, slot->errbuf);
	SETOPT(CURLOPT_USERAGENT, HS_USER_AGENT);
	SETOPT(CURLOPT_HTTPHEADER, slot->headers);
	if (req->get)
		SETOPT(CURLOPT_HTTPGET, 1L);
	else
	{
		SETOPT(CURLOPT_POST, 1L);
		SETOPT(CURLOPT_POSTFIELDS, req->body);
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	SETOPT(CURLOPT_WRITEFUNCTION, receive_body);
	SETOPT(CURLOPT_WRITEDATA, &slot->recv);
	SETOPT(CURLOPT_HEADERFUNCTION, receive_header);
	SETOPT(CURLOPT_HEADERDATA, &slot->recv);

	mc = curl_multi_add_handle(hs_multi, easy);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an HTTP request: %s", curl_multi_strerror(mc))));
	slot->attached = true;
}

#define HS_SECRET_REMOVED "[token removed]"

/*
 * A palloc'd, NUL-terminated copy of len bytes of data in which every
 * occurrence of secret is replaced by HS_SECRET_REMOVED; *outlen gets the
 * copy's length.  An answer that repeats the token (a broken proxy's error
 * page, a hostile server echoing the request) must not carry it into an
 * outbox row, an ERROR or a log line.
 */
static char *
copy_without_secret(const char *data, size_t len, const char *secret, size_t *outlen)
{
	size_t		slen = secret ? strlen(secret) : 0;
	const char *p = data;
	const char *end = data + len;
	StringInfoData buf;

	initStringInfo(&buf);
	while (p < end)
	{
		const char *hit = NULL;

		if (slen > 0)
		{
			for (const char *q = p; (size_t) (end - q) >= slen; q++)
			{
				q = memchr(q, secret[0], (end - q) - slen + 1);
				if (q == NULL)
					break;
				if (memcmp(q, secret, slen) == 0)
				{
					hit = q;
					break;
				}
			}
		}
		if (hit == NULL)
		{
			appendBinaryStringInfo(&buf, p, end - p);
			break;
		}
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, HS_SECRET_REMOVED);
		p = hit + slen;
	}
	if (outlen)
		*outlen = buf.len;
	return buf.data;
}

static char *
header_without_secret(const char *value, const char *token)
{
	return value[0] ? copy_without_secret(value, strlen(value), token, NULL) : NULL;
}

/*
 * Copy a finished slot's answer into its request's result (palloc'd),
 * without the token should the answer repeat it.
 */
static void
finish_slot(HsSlot *slot, CURLcode rc)
{
	HsHttpResult *result = &slot->req->result;
	HsReceive  *r = &slot->recv;

	memset(result, 0, sizeof(*result));
	if (rc != CURLE_OK)
	{
		result->transport_ok = false;
		result->timed_out = (rc == CURLE_OPERATION_TIMEDOUT);
		if (r->too_large)
			result->transport_error = psprintf("the answer was larger than %d bytes", HS_MAX_ANSWER_BYTES);
		else if (result->timed_out)
			result->transport_error = psprintf("no complete answer within hubspot_events.request_timeout_ms (%d ms): %s",
											   slot->req->timeout_ms > 0 ? slot->req->timeout_ms : hs_request_timeout_ms,
											   slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(rc));
		else
			result->transport_error = pstrdup(slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(rc));
	}
	else
	{
		long		status = 0;

		curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
		result->transport_ok = true;
		result->http_status = status;
	}
	result->body = copy_without_secret(r->body ? r->body : "", r->len, slot->token,
									   &result->body_len);
	result->content_type = header_without_secret(r->content_type, slot->token);
	result->correlation_id = header_without_secret(r->correlation_id, slot->token);
	result->retry_after = header_without_secret(r->retry_after, slot->token);
	result->ratelimit_max = r->ratelimit_max;
	result->ratelimit_remaining = r->ratelimit_remaining;
	result->ratelimit_interval_ms = r->ratelimit_interval_ms;
	result->ratelimit_daily = r->ratelimit_daily;
	result->ratelimit_daily_remaining = r->ratelimit_daily_remaining;
	slot->req->done = true;
	release_slot(slot);
}

/*
 * POST each request's body (JSON unless the request names another
 * Content-Type header line) to its URL with the bearer token (none when
 * token is NULL), with at most max_concurrency in flight, and fill each
 * request's result with the answer or with the reason there was none.  HTTP error statuses are not
 * errors here: the caller decides.
 *
 * The hooks (any may be NULL):
 *	- stop_check, called between slices of at most HS_POLL_SLICE_MS, may
 *	  throw (CHECK_FOR_INTERRUPTS) or return true to abandon the requests in
 *	  flight or not started;
 *	- wait_ms says how long the next request must wait (pacing): short waits
 *	  are waited out here, a wait longer than HS_MAX_INLINE_WAIT_MS leaves
 *	  the requests not yet started unsent;
 *	- on_start and on_done are told of each request started and answered.
 *
 * Returns false when stop_check stopped it.  Requests left unsent have
 * started = false; requests answered have done = true.
 */
#define HS_MAX_INLINE_WAIT_MS 2000

/*
 * Start requests while slots are free and pacing allows, each with its own
 * token (req->token) or the call's.  Requests go in order, except that one
 * whose pacing says wait (another connection's limit) lets the later ones
 * of other connections go first.  *wait: the shortest wait of the requests
 * held back (0: none); *left: requests not started.
 */
static void
start_requests(HsHttpRequest *reqs, int nreqs, int nslots, int *active,
			   const char *token, const HsSendHooks *hooks, int64 *wait, int *left)
{
	int			scan = 0;

	*wait = 0;
	*left = 0;
	for (int i = 0; i < nslots; i++)
	{
		if (hs_slots[i].req != NULL)
			continue;
		for (; scan < nreqs; scan++)
		{
			HsHttpRequest *req = &reqs[scan];
			int64		w;

			if (req->started)
				continue;
			if (hooks->wait_ms && (w = hooks->wait_ms(req)) > 0)
			{
				*wait = (*wait == 0) ? w : Min(*wait, w);
				continue;
			}
			req->started = true;
			if (hooks->on_start)
				hooks->on_start(req);
			start_slot(&hs_slots[i], req, req->token ? req->token : token);
			(*active)++;
			scan++;
			break;
		}
		if (scan >= nreqs)
			break;
	}
	for (int j = 0; j < nreqs; j++)
		if (!reqs[j].started)
			(*left)++;
}

/* Drive the transfers in flight one slice; finish those done.  Returns how many are still active. */
static int
drive_transfers(int nslots, int active, bool all_started, const HsSendHooks *hooks)
{
	int			running = 0;
	CURLMcode	mc;
	CURLMsg    *msg;
	int			msgs_left;

	mc = curl_multi_perform(hs_multi, &running);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_HS_TRANSPORT),
				 errmsg("HTTP requests to HubSpot failed: %s", curl_multi_strerror(mc))));
	while ((msg = curl_multi_info_read(hs_multi, &msgs_left)) != NULL)
	{
		HsSlot	   *slot = NULL;
		HsHttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
		if (slot == NULL || slot->req == NULL)
			continue;
		req = slot->req;
		finish_slot(slot, msg->data.result);
		active--;
		if (hooks->on_done)
			hooks->on_done(req);
	}
	if (active > 0 && running == 0)
	{
		/* cannot happen: libcurl finished transfers without saying how */
		for (int i = 0; i < nslots; i++)
			if (hs_slots[i].req != NULL)
			{
				HsHttpRequest *req = hs_slots[i].req;

				finish_slot(&hs_slots[i], CURLE_RECV_ERROR);
				active--;
				if (hooks->on_done)
					hooks->on_done(req);
			}
	}
	if (active > 0 && all_started && hooks->while_in_flight)
	{
		/* the requests are on their way: the caller's work overlaps the answers' */
		hooks->while_in_flight();
	}
	if (active > 0)
	{
		mc = curl_multi_poll(hs_multi, NULL, 0, HS_POLL_SLICE_MS, NULL);
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_HS_TRANSPORT),
					 errmsg("HTTP requests to HubSpot failed: %s", curl_multi_strerror(mc))));
	}
	return active;
}

/* Whether the caller asks to stop: then every slot is released. */
static bool
stop_requested(const HsSendHooks *hooks)
{
	if (hooks->stop_check && hooks->stop_check())
	{
		release_all_slots();
		return true;
	}
	return false;
}

bool
hs_http_post_many(HsHttpRequest *reqs, int nreqs, const char *token,
				  int max_concurrency, const HsSendHooks *hooks)
{
	HsTransferGuard *guard;
	int			active = 0;
	int			nslots = Max(1, Min(max_concurrency, nreqs));
	static const HsSendHooks no_hooks = {0};

	if (hooks == NULL)
		hooks = &no_hooks;
	for (int i = 0; i < nreqs; i++)
		reqs[i].done = reqs[i].started = false;
	release_all_slots();
	ensure_slots(nslots);

	/* if an ERROR interrupts us, the caller's context reset detaches the transfers */
	guard = palloc(sizeof(HsTransferGuard));
	guard->seq = ++hs_transfer_seq;
	guard->cb.func = release_transfer_callback;
	guard->cb.arg = guard;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &guard->cb);

	for (;;)
	{
		int64		wait;
		int			left;

		start_requests(reqs, nreqs, nslots, &active, token, hooks, &wait, &left);
		if (active == 0)
		{
			if (left == 0 || wait > HS_MAX_INLINE_WAIT_MS)
				break;			/* done, or the rest must wait too long: unsent */
			/* nothing in flight: wait for pacing, in slices */
			if (hooks->sleep_ms)
				hooks->sleep_ms(Min(wait, HS_POLL_SLICE_MS));
			else
				pg_usleep(Min(wait, HS_POLL_SLICE_MS) * 1000L);
			if (stop_requested(hooks))
				return false;
			continue;
		}
		active = drive_transfers(nslots, active, left == 0, hooks);
		if (stop_requested(hooks))
			return false;
	}
	return true;
}

static bool
backend_stop_check(void)
{
	CHECK_FOR_INTERRUPTS();
	return false;
}

/*
 * POST one JSON body to url with the bearer token (the direct functions).
 * Query cancel and statement_timeout interrupt it.
 */
void
hs_http_post_json(const char *url, const char *token,
				  const char *body, size_t body_len, HsHttpResult *result)
{
	HsHttpRequest req = {0};

	req.url = url;
	req.body = body;
	req.body_len = body_len;
	{
		HsSendHooks hooks = {0};

		hooks.stop_check = backend_stop_check;
		(void) hs_http_post_many(&req, 1, token, 1, &hooks);
	}
	*result = req.result;
}

/*
 * GET url with the bearer token (the reads of verify_event()), with the
 * caller's hooks (pacing; NULL: none).  Query cancel and statement_timeout
 * interrupt it.
 */
void
hs_http_get_json(const char *url, const char *token, const HsSendHooks *hooks,
				 HsHttpResult *result)
{
	HsHttpRequest req = {0};
	HsSendHooks h = {0};

	if (hooks)
		h = *hooks;
	if (h.stop_check == NULL)
		h.stop_check = backend_stop_check;
	req.url = url;
	req.get = true;
	(void) hs_http_post_many(&req, 1, token, 1, &h);
	*result = req.result;
}

/*
 * POST a form-encoded body to url without a bearer token (the OAuth token
 * endpoint).  stop_check as for hs_http_post_many (NULL: CHECK_FOR_INTERRUPTS
 * only); timeout_ms is the request's time limit (0: request_timeout_ms).
 * Returns false when stop_check abandoned the request.
 */
bool
hs_http_post_form(const char *url, const char *body, size_t body_len,
				  bool (*stop_check) (void), int timeout_ms, HsHttpResult *result)
{
	HsHttpRequest req = {0};
	HsSendHooks hooks = {0};
	bool		finished;

	req.url = url;
	req.body = body;
	req.body_len = body_len;
	req.content_type = "Content-Type: application/x-www-form-urlencoded";
	req.timeout_ms = timeout_ms;
	hooks.stop_check = stop_check ? stop_check : backend_stop_check;
	finished = hs_http_post_many(&req, 1, NULL, 1, &hooks);
	*result = req.result;
	return finished && req.done;
}
