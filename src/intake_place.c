/*-------------------------------------------------------------------------
 *
 * intake_place.c
 *	  intake_at_place(): whether a row of the intake is still the one the
 *	  worker's sweep saw at its place.
 *
 * The worker gives claim_intake() and move_intake() the rows it took from
 * a sweep by place (ctid) and id.  Those functions read the places in one
 * TID scan (o.ctid = ANY (tids)) and keep a row only when its id is the
 * one given with its place: a place the sweep saw may since hold another
 * row (the first was deleted, and its line pointer reused).  Before, they
 * joined the places to the intake, one TID scan per place, and each scan
 * asked the kernel for the intake's size (an lseek): 9% of the worker's
 * CPU in a drain of the intake.
 *
 * The pairs are hashed once per statement, at the first call, when the
 * arrays are a constant or a parameter of the statement (as in those
 * functions): kept in fn_extra, which the executor frees with the
 * statement.  Other arrays are hashed at each call.  Internal: revoked
 * from PUBLIC.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

PG_FUNCTION_INFO_V1(hubspot_events_intake_at_place);

typedef struct PlaceEntry
{
	ItemPointerData tid;		/* the key */
	int64		id;
	bool		ambiguous;		/* the place was given twice, with other ids */
} PlaceEntry;

typedef struct PlaceCache
{
	Datum		tids;			/* the arrays the hash was built from */
	Datum		ids;
	HTAB	   *places;
} PlaceCache;

static HTAB *
hash_places(ArrayType *tids, ArrayType *ids, MemoryContext cxt)
{
	Datum	   *tidd;
	Datum	   *idd;
	bool	   *tidn;
	bool	   *idn;
	int			nt;
	int			ni;
	HASHCTL		ctl;
	HTAB	   *places;

	if (ARR_NDIM(tids) > 1 || ARR_NDIM(ids) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("the places and the ids must be one-dimensional arrays")));
	deconstruct_array(tids, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT, &tidd, &tidn, &nt);
	deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &idd, &idn, &ni);
	if (nt != ni)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("the places and the ids differ in number: %d and %d", nt, ni),
				 errdetail("Each place needs the id of the row the sweep saw there.")));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ItemPointerData);
	ctl.entrysize = sizeof(PlaceEntry);
	ctl.hcxt = cxt;
	places = hash_create("hubspot_events intake places", Max(nt, 16), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < nt; i++)
	{
		PlaceEntry *e;
		bool		found;

		if (tidn[i] || idn[i])
			continue;			/* matches no row */
		e = (PlaceEntry *) hash_search(places, DatumGetPointer(tidd[i]), HASH_ENTER, &found);
		if (!found)
		{
			e->id = DatumGetInt64(idd[i]);
			e->ambiguous = false;
		}
		else if (e->id != DatumGetInt64(idd[i]))
			e->ambiguous = true;
	}
	return places;
}

/*
 * intake_at_place(row_tid tid, row_id bigint, tids tid[], ids bigint[])
 * RETURNS boolean, STRICT: whether (row_tid, row_id) is one of the pairs
 * (tids[k], ids[k]).  A place given twice with different ids matches
 * neither.
 */
Datum
hubspot_events_intake_at_place(PG_FUNCTION_ARGS)
{
	ItemPointer tid = (ItemPointer) PG_GETARG_POINTER(0);
	int64		id = PG_GETARG_INT64(1);
	Datum		tids = PG_GETARG_DATUM(2);
	Datum		ids = PG_GETARG_DATUM(3);
	PlaceCache *cache = (PlaceCache *) fcinfo->flinfo->fn_extra;
	PlaceEntry *e;

	/*
	 * Arrays that may differ from row to row (not a constant or a
	 * parameter of the statement): hashed at each call, never kept.
	 */
	if (!get_fn_expr_arg_stable(fcinfo->flinfo, 2) || !get_fn_expr_arg_stable(fcinfo->flinfo, 3))
	{
		HTAB	   *once = hash_places(PG_GETARG_ARRAYTYPE_P(2), PG_GETARG_ARRAYTYPE_P(3),
									   CurrentMemoryContext);
		bool		at;

		e = (PlaceEntry *) hash_search(once, tid, HASH_FIND, NULL);
		at = (e != NULL && !e->ambiguous && e->id == id);
		hash_destroy(once);
		PG_RETURN_BOOL(at);
	}
	if (cache == NULL || cache->tids != tids || cache->ids != ids)
	{
		MemoryContext cxt = fcinfo->flinfo->fn_mcxt;

		if (cache == NULL)
			cache = MemoryContextAllocZero(cxt, sizeof(PlaceCache));
		else if (cache->places)
			hash_destroy(cache->places);
		cache->places = NULL;
		fcinfo->flinfo->fn_extra = cache;
		cache->places = hash_places(PG_GETARG_ARRAYTYPE_P(2), PG_GETARG_ARRAYTYPE_P(3), cxt);
		cache->tids = tids;
		cache->ids = ids;
	}
	e = (PlaceEntry *) hash_search(cache->places, tid, HASH_FIND, NULL);
	PG_RETURN_BOOL(e != NULL && !e->ambiguous && e->id == id);
}
