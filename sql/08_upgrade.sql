--
-- 08_upgrade: install the oldest version and update step by step; the
-- result is, object by object and definition by definition, what a fresh
-- install (the full script hubspot_events--0.8.0.sql, then the update to 0.9.0) creates.
--
CREATE DATABASE hs_upgrade;
\c hs_upgrade
CREATE EXTENSION hubspot_events VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
ALTER EXTENSION hubspot_events UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
-- a library newer than the schema it finds, and older than it serves: one
-- clear message, naming both versions and what to run, on every path
\set VERBOSITY default
SELECT hubspot_events.hubspot_enqueue_subscriber('upg-evt', 'register', 'acme', '[{"vid": 1}]');
CREATE TABLE upg_att (event text, state text, vid bigint, account text);
CREATE TRIGGER upg_sync AFTER INSERT ON upg_att FOR EACH ROW EXECUTE FUNCTION
  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');
INSERT INTO upg_att VALUES ('upg-evt', 'register', 2, 'acme');
ALTER EXTENSION hubspot_events UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
ALTER EXTENSION hubspot_events UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
-- 0.4.0 is served by this library before ALTER EXTENSION UPDATE: the
-- function and the trigger write their rows
SELECT cardinality(hubspot_events.hubspot_enqueue_subscriber('upg-evt', 'register', 'acme', '[{"vid": 1}]')) AS enqueued;
INSERT INTO upg_att VALUES ('upg-evt', 'register', 2, 'acme');
SELECT external_event_id, subscriber_state, contact_key, status FROM hubspot_events.outbox ORDER BY id;
-- a large outbox: the update does not build its new index under a lock
-- that would block every write meanwhile; it says how to build it
-- CONCURRENTLY instead
INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, status, source)
SELECT 'upg-big', 'register', 'acme', jsonb_build_object('vid', g), g::text, 'sent', 'test' FROM generate_series(1, 100000) g;
ALTER EXTENSION hubspot_events UPDATE TO '0.5.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT count(*) AS event_upserts_index FROM pg_indexes WHERE schemaname = 'hubspot_events' AND indexname = 'outbox_event_upserts';
CREATE INDEX CONCURRENTLY outbox_event_upserts ON hubspot_events.outbox USING hash ((external_event_id || ' ' || external_account_id)) WHERE kind = 'event_upsert';
DELETE FROM hubspot_events.outbox WHERE external_event_id = 'upg-big';
-- 0.6.0: status names the worker's API version (hubspot_events.api_version)
ALTER EXTENSION hubspot_events UPDATE TO '0.6.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT count(*) AS status_has_api_version FROM pg_attribute
 WHERE attrelid = 'hubspot_events.status'::regclass AND attname = 'api_version';
-- 0.7.0: every failed attempt's history; why rows wait
ALTER EXTENSION hubspot_events UPDATE TO '0.7.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT count(*) AS outbox_has_attempt_history FROM pg_attribute
 WHERE attrelid = 'hubspot_events.outbox'::regclass AND attname = 'attempt_history';
-- 0.8.0: connections; every sending and enqueueing function takes one (a new
-- signature: the EXECUTE a DBA granted on the old one is carried over)
CREATE ROLE hs_upg_app;
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb) TO hs_upg_app WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_cancel_event(text, text) TO hs_upg_app;
ALTER EXTENSION hubspot_events UPDATE TO '0.8.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT p.oid::regprocedure AS function, a.privilege_type, a.is_grantable
  FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
 WHERE p.pronamespace = 'hubspot_events'::regnamespace AND a.grantee = 'hs_upg_app'::regrole
 ORDER BY 1;
SELECT count(*) AS outbox_rows_on_default FROM hubspot_events.outbox WHERE connection = 'default';
REVOKE ALL ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb, text) FROM hs_upg_app CASCADE;
REVOKE ALL ON FUNCTION hubspot_events.hubspot_cancel_event(text, text, text) FROM hs_upg_app;
-- the carried GRANTs were made by the update's script: PostgreSQL records them
-- as the extension's initial privileges, which only DROP OWNED removes
DROP OWNED BY hs_upg_app;
DROP ROLE hs_upg_app;
-- 0.9.0: the outbox partitioned (issue 17): the rows it had are in
-- outbox_rows, the extension's new rows go into outbox_intake; ids go on
-- from the same sequence; a DBA's GRANT on the outbox is kept
CREATE ROLE hs_upg_reader;
GRANT SELECT ON hubspot_events.outbox TO hs_upg_reader;
SELECT max(id) AS last_id_before FROM hubspot_events.outbox \gset
ALTER EXTENSION hubspot_events UPDATE TO '0.9.0';
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT tableoid::regclass AS partition, status, count(*) FROM hubspot_events.outbox GROUP BY 1, 2 ORDER BY 1, 2;
SELECT (hubspot_events.hubspot_enqueue_subscriber('upg-evt', 'register', 'acme', '[{"vid": 3}]'))[1] > :last_id_before AS ids_go_on;
INSERT INTO upg_att VALUES ('upg-evt', 'attend', 2, 'acme');
SELECT tableoid::regclass AS partition, status, count(*) FROM hubspot_events.outbox GROUP BY 1, 2 ORDER BY 1, 2;
SELECT has_table_privilege('hs_upg_reader', 'hubspot_events.outbox', 'SELECT') AS grant_kept;
DROP OWNED BY hs_upg_reader;
DROP ROLE hs_upg_reader;
-- the chain's trace: a column added by ALTER TABLE ... ADD COLUMN with a
-- default keeps that default as its "missing" value (the outbox's rows are
-- in outbox_rows, the table the chain altered)
SELECT attname AS added_by_the_chain FROM pg_attribute
 WHERE attrelid = 'hubspot_events.outbox_rows'::regclass AND atthasmissing ORDER BY attnum;

-- A fresh install, in a database of its own (the regress database's
-- install carries the other tests' GRANTs): CREATE EXTENSION runs the full
-- script of 0.8.0, not the chain, then the update to 0.9.0: only the
-- column that update adds was added later
CREATE DATABASE hs_fresh;
\c hs_fresh
CREATE EXTENSION hubspot_events;
SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events';
SELECT attname AS added_by_the_chain FROM pg_attribute
 WHERE attrelid = 'hubspot_events.outbox_rows'::regclass AND atthasmissing ORDER BY attnum;

\c contrib_regression
SELECT dblink_connect('fresh', format('host=%s port=%s dbname=hs_fresh user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_user)) AS connected;
SELECT dblink_connect('upgraded', format('host=%s port=%s dbname=hs_upgrade user=%s',
         split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_user)) AS connected;

-- What a database holds of the extension: one row per object and aspect
-- (item), with a definition text that names no OID and no database.  The
-- objects: every member of the extension (pg_depend deptype 'e'; the row
-- types of its tables and views, members too in newer PostgreSQL, come
-- with their relations and are left out, as in 00_setup), the extension
-- itself (its pg_dump configuration) and its schema.  The same query runs
-- in both databases, through dblink, in sessions with the same settings.
--  * functions and procedures: pg_get_functiondef (arguments with their
--    defaults, result, language, attributes, SET clauses, body), and
--    the catalog's attributes, SET clauses, privileges and comment;
--  * tables and views: kind, persistence, options, owner, privileges,
--    comment; the live columns in order (name, type and typmod, not null,
--    default, identity, generated, collation, privileges, comment);
--    constraints, indexes, triggers, rules, policies; a view's definition
--    (PostgreSQL 18's NOT NULL constraints are named in their column's
--    item, so that the items are the same in every version);
--  * sequences: type, start, increment, bounds, cache, cycle, owner column;
--  * event triggers: event, tags, function, enabled, owner, comment;
--  * types: kind, category, base type, default, enum labels, constraints.
CREATE FUNCTION pg_temp.extension_catalog(conn text)
RETURNS TABLE (object text, item text, definition text)
LANGUAGE sql AS $f$
SELECT * FROM dblink(conn, $q$
WITH ext AS (
  SELECT x.* FROM pg_catalog.pg_extension x WHERE x.extname = 'hubspot_events'),
member AS (
  SELECT d.classid, d.objid, pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS object
    FROM pg_catalog.pg_depend d, ext
   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
     AND d.refobjid = ext.oid AND d.deptype = 'e'
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
                      WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = d.objid
                        AND (t.typrelid <> 0 OR e.typrelid <> 0))),
fn AS (
  SELECT m.object, p.*
    FROM member m JOIN pg_catalog.pg_proc p
      ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = m.objid),
rel AS (
  SELECT m.object, c.*
    FROM member m JOIN pg_catalog.pg_class c
      ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid),
typ AS (
  SELECT m.object, t.*
    FROM member m JOIN pg_catalog.pg_type t
      ON m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = m.objid)
-- every member, whatever else is said of it
SELECT m.object::text, 'member'::text, (pg_catalog.pg_identify_object(m.classid, m.objid, 0)).type::text
  FROM member m
-- the extension and its schema
UNION ALL
SELECT 'extension ' || x.extname, 'version', x.extversion FROM ext x
UNION ALL
SELECT 'extension ' || x.extname, 'schema',
       pg_catalog.format('%s, relocatable %s', x.extnamespace::pg_catalog.regnamespace, x.extrelocatable)
  FROM ext x
UNION ALL
SELECT 'extension ' || x.extname, 'dumped by pg_dump: ' || c.tbl::pg_catalog.regclass, pg_catalog.format('condition %L', c.cond)
  FROM ext x, unnest(x.extconfig, x.extcondition) AS c(tbl, cond)
UNION ALL
SELECT 'schema ' || n.nspname, 'schema',
       pg_catalog.format('owner %s, privileges %s, comment %L', n.nspowner::pg_catalog.regrole,
                         coalesce(n.nspacl::text, 'default'),
                         pg_catalog.obj_description(n.oid, 'pg_namespace'))
  FROM ext x JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
-- functions and procedures
UNION ALL
SELECT f.object, 'definition', pg_catalog.pg_get_functiondef(f.oid) FROM fn f
UNION ALL
SELECT f.object, 'attributes',
       pg_catalog.format('kind %s, language %s, owner %s, volatility %s, security definer %s, strict %s, '
                         'parallel %s, leakproof %s, cost %s, rows %s, configuration %s',
                         f.prokind, l.lanname, f.proowner::pg_catalog.regrole, f.provolatile, f.prosecdef,
                         f.proisstrict, f.proparallel, f.proleakproof, f.procost, f.prorows,
                         coalesce(f.proconfig::text, 'none'))
  FROM fn f JOIN pg_catalog.pg_language l ON l.oid = f.prolang
UNION ALL
SELECT f.object, 'privileges', coalesce(f.proacl::text, 'default') FROM fn f
UNION ALL
SELECT f.object, 'comment', pg_catalog.format('%L', pg_catalog.obj_description(f.oid, 'pg_proc')) FROM fn f
-- tables, views, sequences
UNION ALL
SELECT r.object, 'relation',
       pg_catalog.format('kind %s, persistence %s, owner %s, access method %s, options %s, '
                         'row security %s, forced %s, replica identity %s',
                         r.relkind, r.relpersistence, r.relowner::pg_catalog.regrole,
                         coalesce((SELECT a.amname::text FROM pg_catalog.pg_am a WHERE a.oid = r.relam), 'none'),
                         coalesce((SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(r.reloptions) o)::text, 'none'),
                         r.relrowsecurity, r.relforcerowsecurity, r.relreplident)
  FROM rel r
UNION ALL
SELECT r.object, 'privileges', coalesce(r.relacl::text, 'default') FROM rel r
UNION ALL
SELECT r.object, 'comment', pg_catalog.format('%L', pg_catalog.obj_description(r.oid, 'pg_class')) FROM rel r
UNION ALL
SELECT r.object, 'view definition', pg_catalog.pg_get_viewdef(r.oid) FROM rel r WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT r.object, pg_catalog.format('column %s', pg_catalog.lpad(a.pos::text, 2, '0')),
       pg_catalog.format('%I %s, not null %s%s, default %s, identity %L, generated %L, collation %s, '
                         'privileges %s, comment %L',
                         a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         (SELECT ' (' || n.conname || ')' FROM pg_catalog.pg_constraint n
                           WHERE n.conrelid = a.attrelid AND n.contype = 'n' AND n.conkey = ARRAY[a.attnum]),
                         coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), 'none'), a.attidentity, a.attgenerated,
                         coalesce((SELECT co.collname::text FROM pg_catalog.pg_collation co WHERE co.oid = a.attcollation), 'none'),
                         coalesce(a.attacl::text, 'default'), pg_catalog.col_description(a.attrelid, a.attnum))
  FROM rel r
  JOIN (SELECT at.*, pg_catalog.row_number() OVER (PARTITION BY at.attrelid ORDER BY at.attnum) AS pos
          FROM pg_catalog.pg_attribute at
         WHERE at.attnum > 0 AND NOT at.attisdropped) a ON a.attrelid = r.oid
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
UNION ALL
SELECT r.object, 'constraint ' || co.conname,
       pg_catalog.format('%s, comment %L', pg_catalog.pg_get_constraintdef(co.oid),
                         pg_catalog.obj_description(co.oid, 'pg_constraint'))
  FROM rel r JOIN pg_catalog.pg_constraint co ON co.conrelid = r.oid AND co.contype <> 'n'
UNION ALL
SELECT r.object, 'index ' || ic.relname,
       pg_catalog.format('%s, valid %s, clustered %s, comment %L', pg_catalog.pg_get_indexdef(i.indexrelid),
                         i.indisvalid, i.indisclustered, pg_catalog.obj_description(i.indexrelid, 'pg_class'))
  FROM rel r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
UNION ALL
SELECT r.object, 'trigger ' || tg.tgname,
       pg_catalog.format('%s, enabled %s, comment %L', pg_catalog.pg_get_triggerdef(tg.oid), tg.tgenabled,
                         pg_catalog.obj_description(tg.oid, 'pg_trigger'))
  FROM rel r JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = r.oid AND NOT tg.tgisinternal
UNION ALL
SELECT r.object, 'rule ' || ru.rulename, pg_catalog.pg_get_ruledef(ru.oid)
  FROM rel r JOIN pg_catalog.pg_rewrite ru ON ru.ev_class = r.oid AND ru.rulename <> '_RETURN'
UNION ALL
SELECT r.object, 'policy ' || po.polname,
       pg_catalog.format('command %s, permissive %s, roles %s, using %s, with check %s',
                         po.polcmd, po.polpermissive, po.polroles::pg_catalog.regrole[],
                         pg_catalog.pg_get_expr(po.polqual, po.polrelid),
                         pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid))
  FROM rel r JOIN pg_catalog.pg_policy po ON po.polrelid = r.oid
UNION ALL
SELECT r.object, 'sequence',
       pg_catalog.format('type %s, start %s, increment %s, min %s, max %s, cache %s, cycle %s, owned by %s',
                         pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                         s.seqmax, s.seqcache, s.seqcycle,
                         (SELECT pg_catalog.format('%s.%I (%s)', d.refobjid::pg_catalog.regclass, at.attname, d.deptype)
                            FROM pg_catalog.pg_depend d
                            JOIN pg_catalog.pg_attribute at ON at.attrelid = d.refobjid AND at.attnum = d.refobjsubid
                           WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = r.oid
                             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                             AND d.deptype IN ('a', 'i')))
  FROM rel r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.oid
-- event triggers
UNION ALL
SELECT m.object, 'event trigger',
       pg_catalog.format('on %s, tags %s, function %s, enabled %s, owner %s, comment %L',
                         et.evtevent, et.evttags, et.evtfoid::pg_catalog.regprocedure, et.evtenabled,
                         et.evtowner::pg_catalog.regrole, pg_catalog.obj_description(et.oid, 'pg_event_trigger'))
  FROM member m JOIN pg_catalog.pg_event_trigger et
    ON m.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass AND et.oid = m.objid
-- types
UNION ALL
SELECT t.object, 'type',
       pg_catalog.format('%s, kind %s, category %s, base %s, not null %s, default %L, labels %s, owner %s, '
                         'privileges %s, comment %L',
                         pg_catalog.format_type(t.oid, NULL), t.typtype, t.typcategory,
                         CASE WHEN t.typbasetype <> 0 THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
                         t.typdefault,
                         (SELECT pg_catalog.array_agg(en.enumlabel ORDER BY en.enumsortorder)
                            FROM pg_catalog.pg_enum en WHERE en.enumtypid = t.oid),
                         t.typowner::pg_catalog.regrole, t.typacl, pg_catalog.obj_description(t.oid, 'pg_type'))
  FROM typ t
UNION ALL
SELECT t.object, 'constraint ' || co.conname, pg_catalog.pg_get_constraintdef(co.oid)
  FROM typ t JOIN pg_catalog.pg_constraint co ON co.contypid = t.oid
$q$) AS t(object text, item text, definition text)
$f$;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.extension_catalog('fresh');
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.extension_catalog('upgraded');
SELECT dblink_disconnect('fresh') AS disconnected;
SELECT dblink_disconnect('upgraded') AS disconnected;
-- what was compared: every member (31 objects, and the extension and its
-- schema), each in several items
SELECT side, count(DISTINCT object) AS objects, count(*) AS items
  FROM (SELECT 'fresh' AS side, * FROM fresh UNION ALL SELECT 'upgraded', * FROM upgraded) s
 GROUP BY side ORDER BY side;
-- objects whose definition differs: none (an object or item only one side
-- has shows as "(none)" on the other)
SELECT coalesce(f.object, u.object) AS object, coalesce(f.item, u.item) AS item,
       coalesce(f.definition, '(none)') AS fresh, coalesce(u.definition, '(none)') AS upgraded
  FROM fresh f FULL JOIN upgraded u ON u.object = f.object AND u.item = f.item
 WHERE f.definition IS DISTINCT FROM u.definition
 ORDER BY 1, 2;
DROP DATABASE hs_fresh;
DROP DATABASE hs_upgrade;
