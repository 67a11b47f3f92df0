/*-------------------------------------------------------------------------
 *
 * jsonb_build.c
 *	  Building jsonb values in C, without a round trip through JSON text.
 *
 * The outbox stores every contact as jsonb.  Writing it as JSON text and
 * parsing that text again (jsonb_in) cost the trigger about 5% of its time
 * per row; pushing the values straight into a JsonbParseState gives the same
 * jsonb (pushJsonbValue sorts an object's keys and keeps the last of
 * duplicate keys, as jsonb_in does, since jsonb_in builds with it too).
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

/* A string as a key (WJB_KEY) or as a value (WJB_VALUE). */
static void
push_text(JsonbParseState **ps, JsonbIteratorToken token, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = unconstify(char *, s);
	v.val.string.len = strlen(s);
	pushJsonbValue(ps, token, &v);
}

void
hs_jsonb_push_key(JsonbParseState **ps, const char *key)
{
	push_text(ps, WJB_KEY, key);
}

void
hs_jsonb_push_string(JsonbParseState **ps, const char *s)
{
	push_text(ps, WJB_VALUE, s);
}

void
hs_jsonb_push_numeric(JsonbParseState **ps, Numeric num)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = num;
	pushJsonbValue(ps, WJB_VALUE, &v);
}

void
hs_jsonb_push_int64(JsonbParseState **ps, int64 n)
{
	hs_jsonb_push_numeric(ps, int64_to_numeric(n));
}

void
hs_jsonb_push_null(JsonbParseState **ps)
{
	JsonbValue	v;

	v.type = jbvNull;
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* A jsonb value (scalar or container) as the value of the current key or element. */
void
hs_jsonb_push_jsonb(JsonbParseState **ps, Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		(void) JsonbExtractScalar(&jb->root, &v);
		pushJsonbValue(ps, WJB_VALUE, &v);
		return;
	}
	v.type = jbvBinary;
	v.val.binary.data = &jb->root;
	v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* An object of string values from parallel lists of names and values (text). */
void
hs_jsonb_push_string_object(JsonbParseState **ps, List *names, List *values)
{
	ListCell   *ln,
			   *lv;

	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	forboth(ln, names, lv, values)
	{
		hs_jsonb_push_key(ps, (const char *) lfirst(ln));
		hs_jsonb_push_string(ps, (const char *) lfirst(lv));
	}
	pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}
