/*-------------------------------------------------------------------------
 *
 * owner_rights.c
 *	  Running statements with the rights of the extension's tables' owner,
 *	  for the statements that read or write them on a caller's behalf (the
 *	  outbox's writes, the connections' lookups and secrets).
 *
 * The owner's user id inside a security-restricted operation, and, as a
 * SECURITY DEFINER function with SET search_path would, nothing the caller
 * put on their search_path is found meanwhile (the statements are
 * qualified too).  An ERROR in between restores the caller's identity and
 * settings at the (sub)transaction's abort.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The owner of the relation relname of the extension's schema; InvalidOid when it does not exist. */
Oid
hs_relation_owner(const char *relname)
{
	Oid			nsp = get_namespace_oid(HS_SCHEMA, true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(rel))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

void
hs_owner_rights_enter(Oid owner, HsOwnerRights *r)
{
	GetUserIdAndSecContext(&r->save_userid, &r->save_sec_context);
	SetUserIdAndSecContext(owner, r->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	r->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
hs_owner_rights_leave(const HsOwnerRights *r)
{
	AtEOXact_GUC(true, r->save_nestlevel);
	SetUserIdAndSecContext(r->save_userid, r->save_sec_context);
}
