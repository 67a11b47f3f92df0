/*-------------------------------------------------------------------------
 *
 * conn_tokens.c
 *	  The OAuth connections' access tokens, shared by every session through
 *	  shared memory: one per connection and database.
 *
 * Only the worker refreshes a connection's token (worker.c): it alone
 * holds the refresh token, opened from connection_secrets, and stores the
 * one HubSpot may return in its place in a transaction of its own, so that
 * no refresh is ever lost with a caller's rolled-back transaction and no
 * two refreshes race.  A session that calls a function through an OAuth
 * connection takes the token from here; when there is none (or it is about
 * to expire), it asks the worker (a "wanted" mark and a wake-up) and waits
 * for it, up to hubspot_events.request_timeout_ms.  When the worker cannot
 * get one (the connection is disconnected, the token endpoint refused), it
 * leaves the reason in the slot and the session's call fails with it.
 *
 * The slots are a fixed array under a spinlock (a copy of a few hundred
 * bytes under it, nothing more); when they are all taken, the least
 * recently used one is given up.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define HS_CONN_TOKEN_SLOTS	256
#define HS_CONN_TOKEN_MAX	1024	/* HubSpot's access tokens are about 300 characters */

typedef struct HsConnTokenSlot
{
	Oid			dbid;			/* InvalidOid: free */
	char		name[NAMEDATALEN];
	char		token[HS_CONN_TOKEN_MAX];	/* "" when none */
	TimestampTz expires_at;
	TimestampTz wanted_at;		/* a session waits for a token: 0 when none */
	char		problem[256];	/* why the worker could not get one ("" when none) */
	TimestampTz last_used;
} HsConnTokenSlot;

typedef struct HsConnTokens
{
	slock_t		mutex;
	HsConnTokenSlot slots[HS_CONN_TOKEN_SLOTS];
} HsConnTokens;

static HsConnTokens *tokens = NULL;

Size
hs_conn_tokens_shmem_size(void)
{
	return MAXALIGN(sizeof(HsConnTokens));
}

/* In the shared-memory startup hook, under AddinShmemInitLock. */
void
hs_conn_tokens_shmem_init(void)
{
	bool		found;

	tokens = ShmemInitStruct("hubspot_events connection tokens", sizeof(HsConnTokens), &found);
	if (!found)
	{
		memset(tokens, 0, sizeof(HsConnTokens));
		SpinLockInit(&tokens->mutex);
	}
}

bool
hs_conn_tokens_available(void)
{
	return tokens != NULL;
}

/* The slot of (db, name), or NULL; with create, a free or the least recently used one.  Under the mutex. */
static HsConnTokenSlot *
find_slot(Oid db, const char *name, bool create)
{
	HsConnTokenSlot *free_slot = NULL;
	HsConnTokenSlot *oldest = NULL;

	for (int i = 0; i < HS_CONN_TOKEN_SLOTS; i++)
	{
		HsConnTokenSlot *s = &tokens->slots[i];

		if (s->dbid == db && strcmp(s->name, name) == 0)
			return s;
		if (s->dbid == InvalidOid)
		{
			if (free_slot == NULL)
				free_slot = s;
		}
		else if (oldest == NULL || s->last_used < oldest->last_used)
			oldest = s;
	}
	if (!create)
		return NULL;
	if (free_slot == NULL)
		free_slot = oldest;
	explicit_bzero(free_slot, sizeof(HsConnTokenSlot));
	free_slot->dbid = db;
	strlcpy(free_slot->name, name, sizeof(free_slot->name));
	return free_slot;
}

/*
 * Copy the token of a connection of this database into out, when there is
 * one that lives at least min_life_ms more; else false, with the worker's
 * reason for having none in problem (may be "").
 */
bool
hs_conn_token_copy(const char *name, int64 min_life_ms, char *out, size_t outlen,
				   char *problem, size_t problemlen)
{
	HsConnTokenSlot *s;
	bool		ok = false;
	TimestampTz now = GetCurrentTimestamp();

	out[0] = '\0';
	if (problem)
		problem[0] = '\0';
	if (tokens == NULL)
		return false;
	SpinLockAcquire(&tokens->mutex);
	s = find_slot(MyDatabaseId, name, false);
	if (s != NULL)
	{
		s->last_used = now;
		if (s->token[0] != '\0' &&
			s->expires_at - now > min_life_ms * 1000 && strlen(s->token) < outlen)
		{
			strlcpy(out, s->token, outlen);
			ok = true;
		}
		else if (problem && s->problem[0] != '\0')
			strlcpy(problem, s->problem, problemlen);
	}
	SpinLockRelease(&tokens->mutex);
	return ok;
}

/* The worker got a token for the connection: it lives until expires_at. */
void
hs_conn_token_set(const char *name, const char *token, TimestampTz expires_at)
{
	HsConnTokenSlot *s;

	if (tokens == NULL || strlen(token) >= HS_CONN_TOKEN_MAX)
		return;
	SpinLockAcquire(&tokens->mutex);
	s = find_slot(MyDatabaseId, name, true);
	strlcpy(s->token, token, sizeof(s->token));
	s->expires_at = expires_at;
	s->problem[0] = '\0';
	s->wanted_at = 0;
	s->last_used = GetCurrentTimestamp();
	SpinLockRelease(&tokens->mutex);
}

/* The worker could not get a token: why, for the sessions that wait for one. */
void
hs_conn_token_fail(const char *name, const char *problem)
{
	HsConnTokenSlot *s;

	if (tokens == NULL)
		return;
	SpinLockAcquire(&tokens->mutex);
	s = find_slot(MyDatabaseId, name, true);
	explicit_bzero(s->token, sizeof(s->token));
	s->expires_at = 0;
	strlcpy(s->problem, problem, sizeof(s->problem));
	s->wanted_at = 0;
	SpinLockRelease(&tokens->mutex);
}

/* HubSpot called this token expired or invalid: forget it (unless already replaced). */
void
hs_conn_token_forget(const char *name, const char *token)
{
	HsConnTokenSlot *s;

	if (tokens == NULL)
		return;
	SpinLockAcquire(&tokens->mutex);
	s = find_slot(MyDatabaseId, name, false);
	if (s != NULL && (token == NULL || strcmp(s->token, token) == 0))
	{
		explicit_bzero(s->token, sizeof(s->token));
		s->expires_at = 0;
	}
	SpinLockRelease(&tokens->mutex);
}

/* A session waits for the connection's token: the worker's next turn gets one. */
void
hs_conn_token_want(const char *name)
{
	HsConnTokenSlot *s;

	if (tokens == NULL)
		return;
	SpinLockAcquire(&tokens->mutex);
	s = find_slot(MyDatabaseId, name, true);
	s->wanted_at = GetCurrentTimestamp();
	s->problem[0] = '\0';
	s->last_used = s->wanted_at;
	SpinLockRelease(&tokens->mutex);
}

/* The connections of this database whose token a session waits for (names, palloc'd). */
List *
hs_conn_tokens_wanted(void)
{
	List	   *names = NIL;
	char		found[HS_CONN_TOKEN_SLOTS][NAMEDATALEN];
	int			n = 0;

	if (tokens == NULL)
		return NIL;
	SpinLockAcquire(&tokens->mutex);
	for (int i = 0; i < HS_CONN_TOKEN_SLOTS; i++)
	{
		HsConnTokenSlot *s = &tokens->slots[i];

		if (s->dbid == MyDatabaseId && s->wanted_at != 0)
			strlcpy(found[n++], s->name, NAMEDATALEN);
	}
	SpinLockRelease(&tokens->mutex);
	for (int i = 0; i < n; i++)
		names = lappend(names, pstrdup(found[i]));
	return names;
}
