/*-------------------------------------------------------------------------
 *
 * intake.c
 *	  The worker's rows kept from the outbox's intake (schema 0.9.0 on).
 *
 * The triggers and the enqueue functions write new rows into
 * outbox_intake, a partition of the outbox with no btree index, so that
 * the application's transaction pays no index entry (docs/intake.md).
 * The worker finds them by a sweep: a sequential scan of the intake with
 * the claim's snapshot, which keeps, per connection, the ctid, id and
 * contact of its oldest rows (at least HS_INTAKE_KEEP of them, and as many
 * as the last sweep saw).  Each turn
 * then claims a connection's next kept rows in id order, at most the oldest
 * of each contact, by ctid (claim_intake(), a TID scan), which marks them
 * sending where they are: a row in flight stays in the intake, and its
 * record moves it to outbox_rows (outbox.c, hs_outbox_record_sent and
 * hs_outbox_leave_intake), so that the claim costs no index entry.
 *
 * Rows in flight in the intake are the worker's own, of the turn under
 * way: the claims' checks for rows in flight read outbox_rows only, and
 * do not need the intake's, because each connection's intake rows are
 * claimed once a turn, at most one of each contact, after its rows of
 * outbox_rows; and between turns nothing is in flight there (a turn that
 * did not record all its rows makes the next claim reset them first,
 * hs_outbox_reset_sending).  A row the sweep finds sending is not one of
 * those: it is moved to outbox_rows as it is, where the checks see it.
 *
 * Why one contact's rows still go out in commit order: the rows kept for a
 * connection are its rows visible to the sweep's snapshot with an id up to
 * some X.  An older row of the same contact committed before the younger
 * one took the contact's order lock (order_lock.c), so it is visible to the
 * same snapshot, and its id is smaller: it is kept too.  A row that commits
 * after the sweep is younger than every kept row of its contact and waits
 * for a later sweep.  claim_intake() also lets no row through whose
 * contact has a row pending or in flight in outbox_rows (every such row is
 * older: it got there from the intake, or it is a retry or a replay).
 *
 * Kept rows the claim did not take because their contact must wait are
 * moved to outbox_rows as pending (move_intake()), where claim_due()'s
 * rules keep them behind.  So are a connection's kept rows once it has not
 * been ready to send for HS_INTAKE_STALL_MS (its pacing, a 429's pause, a
 * hold; hs_intake_unready): its backlog then waits in outbox_rows, at
 * HubSpot's pace, and the intake, which every sweep reads whole, stays
 * small for the other connections.  So, at once, are all of a connection's
 * intake rows when it is paced below HS_INTAKE_PACED_RPS requests a second
 * and its kept rows are more than its pacing lets through in
 * HS_INTAKE_BACKLOG_S (a backlog at HubSpot's pace; a drain with the
 * worker's limiter opened keeps its rows in the intake, whatever its batch
 * size).  Rows of the
 * intake that are not pending subscriber rows (an operator's edit) are
 * moved as they are.  A kept row the claim neither took nor could move
 * (deleted, changed or locked since the sweep) makes the next claim sweep
 * again, before any other row of its connection is taken.
 *
 * When to sweep: at every claim while the intake is small (the last sweep
 * saw at most HS_INTAKE_SMALL rows, in at most HS_INTAKE_SMALL_PAGES pages:
 * a sweep reads every page, and after a burst the intake's pages hold the
 * dead versions of the rows sent, until a vacuum); else when no kept row is
 * left to claim, when a connection's kept rows have run out while the
 * intake held more, and at least every HS_INTAKE_RESWEEP_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define HS_INTAKE_KEEP 20000		/* kept rows per connection, at least */
#define HS_INTAKE_SMALL 20000		/* a sweep that saw no more rows ... */
#define HS_INTAKE_SMALL_PAGES 1000	/* ... in no more pages is cheap: at every claim */
#define HS_INTAKE_RESWEEP_MS 1000	/* else, at least this often */
#define HS_INTAKE_STALL_MS 500		/* a connection not ready this long has its kept rows moved */
#define HS_INTAKE_BACKLOG_S 2		/* kept rows its pacing cannot send this soon move */
#define HS_INTAKE_PACED_RPS 200		/* a connection paced below this many requests/s (HubSpot's
									 * limits are 10 to 25 a second): its backlog may move */

typedef struct KeptRow
{
	int64		id;
	uint64		contact;		/* a hash of (event, account, contact key) */
	ItemPointerData tid;
	bool		taken;			/* claimed, moved, or found gone */
} KeptRow;

typedef struct KeptConn
{
	char		name[NAMEDATALEN];	/* hash key */
	KeptRow    *rows;			/* in id order after the sweep */
	int			n;
	int			cap;
	int			next;			/* rows before it are all taken */
	bool		partial;		/* the sweep kept only the oldest of its rows */
} KeptConn;

/* Since when a connection with kept rows has not been ready to send (across sweeps). */
typedef struct UnreadyConn
{
	char		name[NAMEDATALEN];	/* hash key */
	TimestampTz since;
} UnreadyConn;

static MemoryContext intake_cxt = NULL;
static HTAB *kept = NULL;
static bool must_sweep = true;
static TimestampTz last_sweep = 0;
static int64 last_seen = 0;		/* rows the last sweep saw */
static BlockNumber last_pages = 0;	/* pages it read */
static HTAB *unready = NULL;

static void advance(KeptConn *c);

static int
kept_row_cmp(const void *a, const void *b)
{
	int64		x = ((const KeptRow *) a)->id;
	int64		y = ((const KeptRow *) b)->id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Keep only the keep oldest rows of c. */
static void
trim(KeptConn *c, int keep)
{
	qsort(c->rows, c->n, sizeof(KeptRow), kept_row_cmp);
	if (c->n > keep)
	{
		c->n = keep;
		c->partial = true;
	}
}


/* Whether the kept rows must be read again before the next claim. */
static bool
sweep_due(void)
{
	HASH_SEQ_STATUS seq;
	KeptConn   *c;
	bool		due = false;

	bool		any_left = false;

	if (must_sweep || kept == NULL || (last_seen <= HS_INTAKE_SMALL && last_pages <= HS_INTAKE_SMALL_PAGES))
		return true;
	if (TimestampDifferenceExceeds(last_sweep, GetCurrentTimestamp(), HS_INTAKE_RESWEEP_MS))
		return true;
	hash_seq_init(&seq, kept);
	while ((c = (KeptConn *) hash_seq_search(&seq)) != NULL)
	{
		advance(c);
		if (c->partial && c->next >= c->n)
			due = true;
		if (c->next < c->n)
			any_left = true;
	}
	/* nothing kept is left to claim: only a sweep can find rows committed since */
	return due || !any_left;
}

/* Forget every kept row: the next claim sweeps (after a turn that failed). */
void
hs_intake_forget(void)
{
	must_sweep = true;
	kept = NULL;
	if (intake_cxt)
		MemoryContextReset(intake_cxt);
}

/* The intake's columns a sweep reads, by name. */
enum
{
	IC_ID, IC_CONNECTION, IC_EVENT_ID, IC_ACCOUNT_ID, IC_CONTACT_KEY, IC_STATUS, IC_KIND, IC_NUM
};
static const char *const intake_columns[IC_NUM] = {
	"id", "connection", "external_event_id", "external_account_id", "contact_key", "status", "kind"
};

/*
 * A text datum's bytes hashed on from seed (a contact's identity is hashed
 * part by part, without copying it; two identities with the same hash only
 * make one of their rows wait a turn).
 */
static uint64
hash_text(Datum d, uint64 seed)
{
	text	   *t = DatumGetTextPP(d);
	uint64		h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), seed);

	if ((Pointer) t != DatumGetPointer(d))
		pfree(t);
	return h;
}

/* Whether a text datum equals s. */
static bool
text_is(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* Note an intake row the claim cannot take, to move it to outbox_rows as it is. */
static void
note_odd(ItemPointer tid, int64 id, ItemPointerData **tids, int64 **ids, int *n, int *cap)
{
	if (*n == *cap)
	{
		*cap = Max(64, *cap * 2);
		*tids = *tids ? repalloc(*tids, sizeof(ItemPointerData) * *cap) : palloc(sizeof(ItemPointerData) * *cap);
		*ids = *ids ? repalloc(*ids, sizeof(int64) * *cap) : palloc(sizeof(int64) * *cap);
	}
	ItemPointerCopy(tid, &(*tids)[*n]);
	(*ids)[(*n)++] = id;
}

/*
 * Read the intake again, when due (sweep_due), in the claim's transaction,
 * with its snapshot: a sequential scan of the heap (no SQL: every row of
 * the intake is read, and only seven of its columns).  Rows that are not
 * pending subscriber rows of a valid connection name are moved to
 * outbox_rows as they are.
 */
void
hs_intake_sweep(void)
{
	HASHCTL		ctl;
	int			keep = (int) Min(Max((int64) HS_INTAKE_KEEP, last_seen), (int64) INT_MAX / 4);
	int64		seen = 0;
	ItemPointerData *odd_tids = NULL;
	int64	   *odd_ids = NULL;
	int			nodd = 0;
	int			odd_cap = 0;
	HASH_SEQ_STATUS seq;
	KeptConn   *c;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	AttrNumber	attnum[IC_NUM];
	AttrNumber	maxatt = 0;
	TupleDesc	desc;
	MemoryContext old;

	if (!sweep_due())
		return;
	if (intake_cxt == NULL)
		intake_cxt = AllocSetContextCreate(TopMemoryContext, "hubspot_events intake",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(intake_cxt);
	kept = NULL;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(KeptConn);
	ctl.hcxt = intake_cxt;
	kept = hash_create("hubspot_events kept intake rows", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	rel = table_open(hs_outbox_intake_relid(), AccessShareLock);
	desc = RelationGetDescr(rel);
	last_pages = RelationGetNumberOfBlocks(rel);
	for (int k = 0; k < IC_NUM; k++)
	{
		attnum[k] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), intake_columns[k]) == 0 &&
				att->atttypid == (k == IC_ID ? INT8OID : TEXTOID))
				attnum[k] = att->attnum;
		}
		if (attnum[k] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the hubspot_events outbox's intake has no column \"%s\" of the shipped type",
							intake_columns[k]),
					 errhint("Recreate the extension, or undo the change to hubspot_events.outbox.")));
		maxatt = Max(maxatt, attnum[k]);
	}

	old = MemoryContextSwitchTo(intake_cxt);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull[IC_NUM];
		Datum		v[IC_NUM];
		bool		takeable = true;
		text	   *name;
		char		namebuf[NAMEDATALEN];
		bool		found;
		KeptRow    *r;

		seen++;
		slot_getsomeattrs(slot, maxatt);
		for (int k = 0; k < IC_NUM; k++)
		{
			v[k] = slot->tts_values[attnum[k] - 1];
			isnull[k] = slot->tts_isnull[attnum[k] - 1];
			if (isnull[k])
				takeable = false;
		}
		if (isnull[IC_ID])
			continue;			/* cannot be moved by id either: left to the operator */
		if (takeable)
			takeable = text_is(v[IC_STATUS], "pending") && text_is(v[IC_KIND], "subscriber");
		name = takeable ? DatumGetTextPP(v[IC_CONNECTION]) : NULL;
		if (takeable && VARSIZE_ANY_EXHDR(name) >= NAMEDATALEN)
			takeable = false;
		if (!takeable)
		{
			note_odd(&slot->tts_tid, DatumGetInt64(v[IC_ID]), &odd_tids, &odd_ids, &nodd, &odd_cap);
			continue;
		}
		memcpy(namebuf, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
		namebuf[VARSIZE_ANY_EXHDR(name)] = '\0';
		c = (KeptConn *) hash_search(kept, namebuf, HASH_ENTER, &found);
		if (!found)
		{
			c->cap = 256;
			c->rows = palloc(sizeof(KeptRow) * c->cap);
			c->n = 0;
			c->next = 0;
			c->partial = false;
		}
		if (c->n == c->cap)
		{
			if (c->n >= 2 * keep)
				trim(c, keep);
			else
			{
				c->cap *= 2;
				c->rows = repalloc(c->rows, sizeof(KeptRow) * c->cap);
			}
		}
		r = &c->rows[c->n++];
		r->id = DatumGetInt64(v[IC_ID]);
		ItemPointerCopy(&slot->tts_tid, &r->tid);
		r->contact = hash_text(v[IC_CONTACT_KEY],
							   hash_text(v[IC_ACCOUNT_ID], hash_text(v[IC_EVENT_ID], 0)));
		r->taken = false;
		if ((seen & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);

	hash_seq_init(&seq, kept);
	while ((c = (KeptConn *) hash_seq_search(&seq)) != NULL)
		trim(c, keep);
	if (unready != NULL)
	{
		UnreadyConn *u;

		/* a connection with nothing kept starts afresh */
		hash_seq_init(&seq, unready);
		while ((u = (UnreadyConn *) hash_seq_search(&seq)) != NULL)
			if (hash_search(kept, u->name, HASH_FIND, NULL) == NULL)
				(void) hash_search(unready, u->name, HASH_REMOVE, NULL);
	}
	if (nodd > 0)
		(void) hs_outbox_move_intake(odd_tids, odd_ids, nodd);

	last_seen = seen;
	last_sweep = GetCurrentTimestamp();
	must_sweep = false;
}

/* The connections with kept rows not yet taken (names allocated in the caller's context). */
List *
hs_intake_connections(void)
{
	HASH_SEQ_STATUS seq;
	KeptConn   *c;
	List	   *names = NIL;

	if (kept == NULL)
		return NIL;
	hash_seq_init(&seq, kept);
	while ((c = (KeptConn *) hash_seq_search(&seq)) != NULL)
		if (c->next < c->n)
			names = lappend(names, pstrdup(c->name));
	return names;
}

/* Move past the taken rows at the start of c's. */
static void
advance(KeptConn *c)
{
	while (c->next < c->n && c->rows[c->next].taken)
		c->next++;
}

/*
 * Claim up to max_rows of conn's kept rows, in id order, at most the
 * oldest of each contact (claim_intake()).  Those the order rules held back
 * are moved to outbox_rows as pending.  Returns the claimed rows, as
 * hs_outbox_claim() does.
 */
List *
hs_intake_claim(const char *conn, int max_rows, double requests_per_s, HsFailedRows *failed)
{
	/* a connection paced below HS_INTAKE_PACED_RPS: the rows it sends a second */
	double		rows_per_s = requests_per_s < HS_INTAKE_PACED_RPS ? requests_per_s * hs_batch_size : 0;

	KeptConn   *c;
	HTAB	   *chosen;
	HASHCTL		ctl;
	int		   *pick;
	ItemPointerData *tids;
	int64	   *ids;
	int			npick = 0;
	List	   *rows;
	ListCell   *lc;
	int			nrest = 0;
	int			nmoved;

	if (kept == NULL || max_rows <= 0)
		return NIL;
	c = (KeptConn *) hash_search(kept, conn, HASH_FIND, NULL);
	if (c == NULL)
		return NIL;
	advance(c);
	if (c->next >= c->n)
		return NIL;

	/* ready to send again */
	if (unready != NULL)
		(void) hash_search(unready, conn, HASH_REMOVE, NULL);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	chosen = hash_create("hubspot_events contacts claimed", Min(max_rows, 1024), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	pick = palloc(sizeof(int) * max_rows);
	for (int i = c->next; i < c->n && npick < max_rows; i++)
	{
		bool		found;

		if (c->rows[i].taken)
			continue;
		/* a contact's younger rows wait for its oldest, which is chosen first */
		(void) hash_search(chosen, &c->rows[i].contact, HASH_ENTER, &found);
		if (!found)
			pick[npick++] = i;
	}
	tids = palloc(sizeof(ItemPointerData) * npick);
	ids = palloc(sizeof(int64) * npick);
	for (int k = 0; k < npick; k++)
	{
		tids[k] = c->rows[pick[k]].tid;
		ids[k] = c->rows[pick[k]].id;
		c->rows[pick[k]].taken = true;
	}
	rows = hs_outbox_claim_intake(conn, tids, ids, npick, failed);

	/* the ones not claimed: held back by their contact (moved), or gone */
	{
		HTAB	   *claimed;
		HASHCTL		ctl2;

		memset(&ctl2, 0, sizeof(ctl2));
		ctl2.keysize = sizeof(int64);
		ctl2.entrysize = sizeof(int64);
		ctl2.hcxt = CurrentMemoryContext;
		claimed = hash_create("hubspot_events rows claimed", Max(list_length(rows), 16), &ctl2,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		foreach(lc, rows)
			(void) hash_search(claimed, &((HsClaimedRow *) lfirst(lc))->id, HASH_ENTER, NULL);
		for (int k = 0; k < npick; k++)
			if (hash_search(claimed, &ids[k], HASH_FIND, NULL) == NULL)
			{
				tids[nrest] = tids[k];
				ids[nrest++] = ids[k];
			}
	}
	nmoved = hs_outbox_move_intake(tids, ids, nrest);
	/*
	 * A row neither claimed nor moved: deleted, changed or locked since the
	 * sweep, or claimed and failed by the worker's checks.  Sweep again
	 * before any younger row of its contact is taken.
	 */
	if (nmoved < nrest)
		must_sweep = true;
	advance(c);

	/*
	 * A backlog its pacing cannot send within HS_INTAKE_BACKLOG_S: every row
	 * it has in the intake moves to outbox_rows now (those taken above were
	 * older), and the next claim sweeps an intake without them.
	 */
	if (rows_per_s > 0 && (double) (c->n - c->next) > rows_per_s * HS_INTAKE_BACKLOG_S)
	{
		(void) hs_outbox_move_intake_connection(conn);
		for (int i = c->next; i < c->n; i++)
			c->rows[i].taken = true;
		advance(c);
		must_sweep = true;
	}
	return rows;
}

/*
 * The worker found conn not ready to send (its pacing, a 429's pause, a
 * hold).  Once that has lasted HS_INTAKE_STALL_MS, its kept rows move to
 * outbox_rows as pending, in the same transaction (the claim's), and so do
 * the rows later sweeps keep for it, until it is ready again.
 */
void
hs_intake_unready(const char *conn)
{
	KeptConn   *c;
	UnreadyConn *u;
	bool		found;
	ItemPointerData *tids;
	int64	   *ids;
	int			n = 0;

	if (kept == NULL || strlen(conn) >= NAMEDATALEN)
		return;
	c = (KeptConn *) hash_search(kept, conn, HASH_FIND, NULL);
	if (c == NULL)
		return;
	advance(c);
	if (c->next >= c->n)
		return;
	if (unready == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(UnreadyConn);
		unready = hash_create("hubspot_events connections not ready", 16, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	u = (UnreadyConn *) hash_search(unready, conn, HASH_ENTER, &found);
	if (!found)
		u->since = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(u->since, GetCurrentTimestamp(), HS_INTAKE_STALL_MS))
		return;

	tids = palloc(sizeof(ItemPointerData) * (c->n - c->next));
	ids = palloc(sizeof(int64) * (c->n - c->next));
	for (int i = c->next; i < c->n; i++)
		if (!c->rows[i].taken)
		{
			tids[n] = c->rows[i].tid;
			ids[n++] = c->rows[i].id;
			c->rows[i].taken = true;
		}
	if (hs_outbox_move_intake(tids, ids, n) < n)
		must_sweep = true;
	advance(c);
}
