/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  The differences between the PostgreSQL versions the extension builds
 *	  against (15 to 19), in one place.  Every PG_VERSION_NUM test of the
 *	  extension is here; the .c files use the names defined below.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HS_PG_COMPAT_H
#define HS_PG_COMPAT_H

#include "postgres.h"

#include "utils/datetime.h"

#if PG_VERSION_NUM < 150000
#error "hubspot_events needs PostgreSQL 15 or later"
#endif

/*
 * A function that does not return: PostgreSQL 18 replaced the suffix
 * pg_attribute_noreturn() by the prefix pg_noreturn; before it, the
 * suffix's attribute serves as a prefix as well.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * A lexer of a JSON text: PostgreSQL 17 added the context to fill as the
 * first argument (NULL: a new one, in CurrentMemoryContext).
 */
#if PG_VERSION_NUM >= 170000
#define hs_json_lexer(json, len, encoding) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), true)
#else
#define hs_json_lexer(json, len, encoding) \
	makeJsonLexContextCstringLen((char *) (json), (len), (encoding), true)
#endif

/*
 * pg_parse_json's semantic actions return an error code from PostgreSQL 16
 * on (nothing before): declare one as HS_JSON_ACTION and end it with
 * HS_JSON_ACTION_DONE.
 */
#if PG_VERSION_NUM >= 160000
#define HS_JSON_ACTION		JsonParseErrorType
#define HS_JSON_ACTION_DONE	return JSON_SUCCESS
#else
#define HS_JSON_ACTION		void
#define HS_JSON_ACTION_DONE	return
#endif

/* This backend's local transaction id: PostgreSQL 17 moved it into MyProc->vxid */
#if PG_VERSION_NUM >= 170000
#define HS_MY_LXID	(MyProc->vxid.lxid)
#else
#define HS_MY_LXID	(MyProc->lxid)
#endif

/* The identity column's sequence: PostgreSQL 17 takes the relation, not its oid */
#if PG_VERSION_NUM >= 170000
#define hs_identity_sequence(rel, attnum) getIdentitySequence((rel), (attnum), false)
#else
#define hs_identity_sequence(rel, attnum) getIdentitySequence(RelationGetRelid(rel), (attnum), false)
#endif

/*
 * A new row's index entries, as the executor's INSERT makes them (no
 * speculative insertion, every index): PostgreSQL 16 added onlySummarizing.
 */
#if PG_VERSION_NUM >= 160000
#define hs_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define hs_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/*
 * DecodeDateTime: PostgreSQL 16 added the error details' out argument and
 * returns an unknown time zone as an error code instead of raising it; it
 * is raised here, as before 16 (str is the text being decoded).
 */
static inline int
hs_decode_date_time(char **field, int *ftype, int nf, int *dtype, struct pg_tm *tm,
					fsec_t *fsec, int *tzp, const char *str)
{
#if PG_VERSION_NUM >= 160000
	DateTimeErrorExtra extra = {0};
	int			dterr = DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp, &extra);

	if (dterr == DTERR_BAD_TIMEZONE || dterr == DTERR_BAD_ZONE_ABBREV)
		DateTimeParseError(dterr, &extra, str, "timestamp with time zone", NULL);
	return dterr;
#else
	return DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp);
#endif
}

/* The primary key's index (NULL when none): PostgreSQL 18 added deferrable_ok */
#if PG_VERSION_NUM >= 180000
#define hs_primary_key_index(rel)	RelationGetPrimaryKeyIndex((rel), false)
#else
#define hs_primary_key_index(rel)	RelationGetPrimaryKeyIndex(rel)
#endif

/* An index scan: PostgreSQL 18 added its instrumentation (NULL: none) */
#if PG_VERSION_NUM >= 180000
#define hs_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define hs_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

#endif							/* HS_PG_COMPAT_H */
