/*-------------------------------------------------------------------------
 *
 * order_lock.c
 *	  Commit order is id order: the enqueues of one outbox key are
 *	  serialised by a transaction-level advisory lock taken before the id.
 *
 * The worker sends one key's rows (event, account, contact; an event's own
 * rows have the contact key '') in id order, and the id is taken at insert.
 * Without more, transaction A could enqueue "register" (id 1), B "cancel"
 * for the same contact (id 2) and commit, A commit after B: the worker would
 * send register then cancel, and HubSpot would end with the state of the
 * transaction that committed first.  So every valid row takes, before its
 * id, an ExclusiveLock on its key, held to the end of the transaction: a
 * second writer of the key waits until the first commits or aborts, and
 * its ids come after.  Ids of one key are then in commit order.
 *
 * The lock tag is LOCKTAG_ADVISORY with MyDatabaseId, the two halves of a
 * 64-bit hash of the key, and a field4 of our own (pg_advisory_* use 1 and
 * 2), so it never meets the application's advisory locks.  A hash collision
 * only makes two keys wait for each other.
 *
 * One lock per row would exhaust the shared lock table on a statement that
 * enqueues 100,000 rows (its size is max_locks_per_transaction per
 * backend).  So a transaction holds per-key locks for at most
 * Max(16, max_locks_per_transaction / 2) distinct keys, and then
 * ESCALATES.  Every enqueuing transaction first takes, once, a ShareLock on
 * a database-wide "bulk" key.  An escalating transaction releases it and
 * takes the bulk key in ExclusiveLock mode, which waits for every other
 * enqueuing transaction to end and makes new ones wait until it ends: while
 * it runs, nobody else enqueues.  From then on it takes and at once releases
 * each key's lock, which waits for a writer of that key still in
 * progress (another escalated transaction that kept per-key locks) without
 * keeping an entry in the lock table.
 *
 * Locks are acquired under the top transaction's resource owner: a
 * subtransaction's abort does not release them (conservative: a key stays
 * locked until the transaction ends), so the backend-local set of keys
 * held stays true for the whole transaction.  It lives in
 * TopTransactionContext and is recognised by the transaction's local id.
 *
 * Rows that failed local validation (written 'failed', never sent) take no
 * lock.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* field4 of our advisory lock tags (pg_advisory_* use 1 and 2) */
#define HS_LOCK_FIELD4_KEY	0x4853	/* "HS": one outbox key */
#define HS_LOCK_FIELD4_BULK	0x4854	/* the database's bulk key */

typedef struct OrderLockState
{
	LocalTransactionId lxid;	/* the transaction this state is for */
	HTAB	   *keys;			/* uint64 hashes of the keys taken */
	int			nheld;			/* per-key locks held (before escalation) */
	bool		have_share;		/* the bulk key in ShareLock mode */
	bool		escalated;		/* the bulk key in ExclusiveLock mode */
} OrderLockState;

static OrderLockState state = {InvalidLocalTransactionId};
static bool callback_registered = false;

/* At the transaction's end its locks are gone, and the set's memory with them. */
static void
order_lock_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			memset(&state, 0, sizeof(state));
			state.lxid = InvalidLocalTransactionId;
			break;
		default:
			break;
	}
}

/* How many per-key locks one transaction holds before it escalates. */
static int
escalation_threshold(void)
{
	return Max(16, max_locks_per_xact / 2);
}

/* One part of a key into its hash: the part's bytes and its terminating NUL. */
static uint64
hash_part(const char *part, uint64 seed)
{
	const char *p = part ? part : "";

	/* with the NUL: no two different keys give the same bytes */
	return hash_bytes_extended((const unsigned char *) p, strlen(p) + 1, seed);
}

/*
 * The 64-bit hash of a row's key: its class, event, account and contact,
 * each hashed in turn (no copy: the enqueue paths take it for every row).
 */
static uint64
row_key_hash(const HsOutboxRow *row)
{
	bool		subscriber = row->kind == NULL || strcmp(row->kind, "subscriber") == 0;
	uint64		h = hash_part(subscriber ? "s" : "e", 0);

	h = hash_part(row->external_event_id, h);
	h = hash_part(row->external_account_id, h);
	return hash_part(row->contact_key, h);
}

static void
acquire(uint64 h, uint32 field4, LOCKMODE mode, bool release_at_once)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, field4);
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		(void) LockAcquire(&tag, mode, false, false);
		if (release_at_once)
			LockRelease(&tag, mode, false);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

static void
release(uint64 h, uint32 field4, LOCKMODE mode)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, field4);
	CurrentResourceOwner = TopTransactionResourceOwner;
	LockRelease(&tag, mode, false);
	CurrentResourceOwner = save;
}

/*
 * Before a row's id is taken: wait until no other transaction in progress
 * has enqueued a row of the same key, and make later writers of the key
 * wait for this transaction.  Rows that failed validation are not locked.
 */
void
hs_order_lock(const HsOutboxRow *row)
{
	uint64		h;
	bool		found;

	if (row->error_message != NULL)
		return;

	if (!callback_registered)
	{
		RegisterXactCallback(order_lock_xact_callback, NULL);
		callback_registered = true;
	}
	if (state.lxid != HS_MY_LXID || state.keys == NULL)
	{
		HASHCTL		ctl;

		/* a new transaction: the old state's memory went with its transaction */
		memset(&state, 0, sizeof(state));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(uint64);
		ctl.hcxt = TopTransactionContext;
		state.keys = hash_create("hubspot_events order locks", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		state.lxid = HS_MY_LXID;
	}

	h = row_key_hash(row);
	if (state.escalated)
	{
		/*
		 * Nobody else enqueues until this transaction ends: take and release
		 * the key's lock, to wait for a writer of it that escalated before
		 * (one whose lock is held here already is counted and uncounted).
		 * The set of keys taken is no longer needed.
		 */
		acquire(h, HS_LOCK_FIELD4_KEY, ExclusiveLock, true);
		return;
	}
	(void) hash_search(state.keys, &h, HASH_FIND, &found);
	if (found)
		return;

	if (!state.have_share && !state.escalated)
	{
		acquire(0, HS_LOCK_FIELD4_BULK, ShareLock, false);
		state.have_share = true;
	}
	if (!state.escalated && state.nheld >= escalation_threshold())
	{
		/*
		 * Too many keys for the lock table: from now on, nobody else
		 * enqueues until this transaction ends.  Release the share first, so
		 * that two escalating transactions queue instead of deadlocking.
		 */
		release(0, HS_LOCK_FIELD4_BULK, ShareLock);
		state.have_share = false;
		acquire(0, HS_LOCK_FIELD4_BULK, ExclusiveLock, false);
		state.escalated = true;
	}
	acquire(h, HS_LOCK_FIELD4_KEY, ExclusiveLock, state.escalated);
	if (!state.escalated)
		state.nheld++;
	(void) hash_search(state.keys, &h, HASH_ENTER, NULL);
}
