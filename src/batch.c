/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The worker's requests: claimed rows coalesced into batches (subscriber
 *	  rows of one event, state and account; event upserts together; each
 *	  cancel or complete alone), at most batch_size rows and
 *	  HS_REQUEST_BYTES_MAX bytes each, in claim order; each batch's URL and
 *	  body (hubspot_api.c); and the halves and picks the worker makes of a
 *	  batch HubSpot rejected in part.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

/* Build a batch's URL and body from its rows. */
static void
batch_finish(HsBatch *b)
{
	StringInfoData body;

	initStringInfo(&body);
	hs_api_inputs_body(&body, b->contacts, b->n);
	b->body = body.data;
	b->body_len = body.len;
	switch (b->kind)
	{
		case HS_KIND_SUBSCRIBER:
			b->url = hs_api_url(b->api_root, hs_subscriber_call(b->by_email, b->attendance),
								b->external_event_id, b->subscriber_state,
								b->external_account_id);
			break;
		case HS_KIND_EVENT_UPSERT:
			b->url = hs_api_url(b->api_root, HS_CALL_EVENT_UPSERT, NULL, NULL, NULL);
			break;
		case HS_KIND_EVENT_CANCEL:
		case HS_KIND_EVENT_COMPLETE:
			/* one row, whose own body is sent (none for a cancel) */
			Assert(b->n == 1);
			b->body = b->contacts[0];
			b->body_len = strlen(b->body);
			b->url = hs_api_url(b->api_root,
								b->kind == HS_KIND_EVENT_CANCEL ? HS_CALL_EVENT_CANCEL : HS_CALL_EVENT_COMPLETE,
								b->external_event_id, NULL, b->external_account_id);
			break;
	}
}

/*
 * Build a batch's URL and body; when that fails (whatever the rows hold),
 * the batch carries the error instead (build_error, no URL), so that its
 * rows fail alone and the other batches of the turn go.
 */
static void
batch_finish_or_fail(HsBatch *b)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		batch_finish(b);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		b->url = NULL;
		b->body = NULL;
		b->body_len = 0;
		b->build_error = edata->message;
	}
	PG_END_TRY();
}

static HsBatch *
batch_new(const char *api_root, HsRowKind kind, bool by_email, const char *event, const char *state,
		  const char *account, int capacity)
{
	HsBatch    *b = palloc0(sizeof(HsBatch));

	b->api_root = pstrdup(api_root);
	b->kind = kind;
	b->by_email = by_email;
	b->attendance = (hs_endpoint == HS_ENDPOINT_ATTENDANCE);
	b->keys = palloc(sizeof(char *) * capacity);
	b->external_event_id = pstrdup(event);
	b->subscriber_state = pstrdup(state);
	b->external_account_id = pstrdup(account);
	b->ids = palloc(sizeof(int64) * capacity);
	b->tids = palloc(sizeof(ItemPointerData) * capacity);
	b->attempts = palloc(sizeof(int) * capacity);
	b->contacts = palloc(sizeof(char *) * capacity);
	return b;
}

/*
 * Coalesce claimed rows (oldest first) into requests: subscriber rows of one
 * (event, state, account) together, event upserts together, at most
 * batch_size per request, in claim order; each cancel or complete alone.
 * Builds each request's URL and body.
 */
List *
hs_batch_group(List *rows, int batch_size)
{
	List	   *batches = NIL;
	List	   *open = NIL;		/* batches that still have room */
	ListCell   *lc;
	char	   *api_root = hs_api_root();

	foreach(lc, rows)
	{
		HsClaimedRow *r = (HsClaimedRow *) lfirst(lc);
		HsBatch    *b = NULL;
		HsBatch    *full = NULL;
		ListCell   *lb;
		bool		by_email = r->by_email;
		size_t		len = strlen(r->contact);

		foreach(lb, open)
		{
			HsBatch    *c = (HsBatch *) lfirst(lb);

			if (c->kind != r->kind || c->by_email != by_email)
				continue;
			/* event upserts of any events go together */
			if (r->kind == HS_KIND_EVENT_UPSERT ||
				(strcmp(c->external_event_id, r->external_event_id) == 0 &&
				 strcmp(c->subscriber_state, r->subscriber_state) == 0 &&
				 strcmp(c->external_account_id, r->external_account_id) == 0))
			{
				/* budgeted by bytes too: a request's body stays under HS_REQUEST_BYTES_MAX */
				if (c->bytes + len + 1 > HS_REQUEST_BYTES_MAX)
					full = c;
				else
					b = c;
				break;
			}
		}
		if (full)
			open = list_delete_ptr(open, full);
		if (b == NULL)
		{
			b = batch_new(api_root, r->kind, by_email, r->external_event_id, r->subscriber_state, r->external_account_id, batch_size);
			batches = lappend(batches, b);
			open = lappend(open, b);
		}
		b->contacts[b->n] = r->contact;
		b->keys[b->n] = r->contact_key;
		b->attempts[b->n] = r->attempts;
		b->tids[b->n] = r->tid;
		b->ids[b->n++] = r->id;
		b->bytes += len + 1;
		/* a cancel or complete is a call of its own */
		if (b->n >= batch_size ||
			r->kind == HS_KIND_EVENT_CANCEL || r->kind == HS_KIND_EVENT_COMPLETE)
			open = list_delete_ptr(open, b);
	}

	foreach(lc, batches)
		batch_finish_or_fail((HsBatch *) lfirst(lc));
	return batches;
}

/* The rows first .. first + n - 1 of a batch, as a batch of its own (no URL or body yet). */
static HsBatch *
batch_subset(const HsBatch *b, int first, int n)
{
	HsBatch    *s = batch_new(b->api_root, b->kind, b->by_email, b->external_event_id,
							  b->subscriber_state, b->external_account_id, Max(n, 1));

	s->conn = b->conn;

	s->attendance = b->attendance;
	memcpy(s->ids, b->ids + first, sizeof(int64) * n);
	memcpy(s->tids, b->tids + first, sizeof(ItemPointerData) * n);
	memcpy(s->attempts, b->attempts + first, sizeof(int) * n);
	memcpy(s->keys, b->keys + first, sizeof(char *) * n);
	memcpy(s->contacts, b->contacts + first, sizeof(char *) * n);
	s->n = n;
	return s;
}

/*
 * Some rows of a batch (by index) as a batch of their own, for recording
 * per-contact outcomes (the attendance endpoints' errors).  Its URL and body
 * are the parent's: nothing is sent again.
 */
HsBatch *
hs_batch_pick(const HsBatch *b, const int *idx, int n)
{
	HsBatch    *s = batch_new(b->api_root, b->kind, b->by_email, b->external_event_id,
							  b->subscriber_state, b->external_account_id, Max(n, 1));

	s->conn = b->conn;

	s->attendance = b->attendance;
	for (int i = 0; i < n; i++)
	{
		s->ids[i] = b->ids[idx[i]];
		s->tids[i] = b->tids[idx[i]];
		s->attempts[i] = b->attempts[idx[i]];
		s->keys[i] = b->keys[idx[i]];
		s->contacts[i] = b->contacts[idx[i]];
	}
	s->n = n;
	s->url = b->url;
	s->body = b->body;
	s->body_len = b->body_len;
	return s;
}

/*
 * Split a batch of two or more rows into halves (for isolating a contact
 * HubSpot rejects); each half knows the other.
 */
void
hs_batch_split(HsBatch *b, HsBatch **first, HsBatch **second)
{
	int			n1 = b->n / 2;
	int			n2 = b->n - n1;
	HsBatch    *h1 = batch_subset(b, 0, n1);
	HsBatch    *h2 = batch_subset(b, n1, n2);

	Assert(b->n >= 2);
	batch_finish(h1);
	batch_finish(h2);
	h1->sibling = h2;
	h2->sibling = h1;
	*first = h1;
	*second = h2;
}

/*
 * The rows of several batches as one batch, for recording one outcome on
 * them all (the requests the pacing held back).  No URL or body: it is
 * never sent.
 */
HsBatch *
hs_batch_merge(HsBatch **parts, int nparts)
{
	HsBatch    *m = palloc0(sizeof(HsBatch));
	int			n = 0;

	for (int i = 0; i < nparts; i++)
		n += parts[i]->n;
	m->conn = nparts > 0 ? parts[0]->conn : NULL;
	m->ids = palloc(sizeof(int64) * Max(n, 1));
	m->tids = palloc(sizeof(ItemPointerData) * Max(n, 1));
	m->attempts = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < nparts; i++)
	{
		memcpy(m->ids + m->n, parts[i]->ids, sizeof(int64) * parts[i]->n);
		memcpy(m->tids + m->n, parts[i]->tids, sizeof(ItemPointerData) * parts[i]->n);
		memcpy(m->attempts + m->n, parts[i]->attempts, sizeof(int) * parts[i]->n);
		m->n += parts[i]->n;
	}
	return m;
}

static bool
same_text(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Whether a rejected batch of several rows is split again.  Yes, as long as
 * the rejection may be a contact's: it names a contact of the batch, or the
 * batch is a whole request, or its other half was not rejected the same
 * way.  No when both halves of a split were rejected for the same reason
 * (category and message), naming no contact of theirs: the fault is the
 * request's (a bad event id, say), and splitting further would only cost
 * requests.
 */
bool
hs_batch_split_again(const HsRejection *rej, const HsRejection *sibling_rej)
{
	if (rej->names_contact)
		return true;
	if (sibling_rej == NULL || !sibling_rej->rejected || sibling_rej->names_contact)
		return true;
	return !(same_text(rej->category, sibling_rej->category) &&
			 same_text(rej->message, sibling_rej->message));
}
