# The review's defects (issue 10) at the worker's level: a database owner's
# planted code never runs in the worker; outcomes that cannot be recorded
# are bounded by max_attempts; an event's upsert goes out before its
# registrations; a newer library serves an older schema; an outbox
# replicated by logical replication is not sent twice.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my @conf = (
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.retry_base_ms = 50",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 3");

# the worker's log lines of planted code (RAISE WARNING names the backend)
sub planted_in_worker
{
	my ($node) = @_;
	my $log = slurp_file($node->logfile);
	my @hits = $log =~ /(PLANTED CODE RAN in hubspot_events worker[^\n]*)/g;
	return scalar @hits;
}

sub requests_for
{
	my ($event) = @_;
	return grep { ($_->{path}{externalEventId} // '') eq $event } @{ mock_requests() };
}

# ---------------------------------------------------------------------------
# 1. A non-superuser database owner plants shadowing operators and functions
# ---------------------------------------------------------------------------
mock_reset();
my $node = hs_node('hostile', conf => [@conf]);
# the test's own queries run as a superuser of their own, with a clean path
$node->safe_psql('postgres', q{CREATE ROLE tester SUPERUSER LOGIN; CREATE ROLE evil LOGIN;
	ALTER DATABASE postgres OWNER TO evil;});
sub q1 { $node->safe_psql('postgres', "SET search_path = pg_catalog, pg_temp; $_[0]", extra_params => ['-U', 'tester']) }
sub evil { $node->safe_psql('postgres', $_[0], extra_params => ['-U', 'evil']) }

# PostgreSQL 15 gives schema public to pg_database_owner: evil may create
# there.  Every planted function logs a WARNING naming the backend that ran
# it (a log line works even in a read-only transaction).
evil(q{
CREATE FUNCTION public.planted(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE WARNING 'PLANTED CODE RAN in % as %: %',
    (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
    pg_catalog.current_user(), what;
END $$;
CREATE FUNCTION public.p_mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('numeric * integer'); RETURN $1 OPERATOR(pg_catalog.*) $2::numeric; END $$;
CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.p_mul);
CREATE FUNCTION public.p_div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('float8 / numeric'); RETURN $1 OPERATOR(pg_catalog./) $2::float8; END $$;
CREATE OPERATOR public./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = public.p_div);
CREATE FUNCTION public.p_tsminus(timestamptz, timestamptz) RETURNS interval LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('timestamptz - timestamptz'); RETURN $1 OPERATOR(pg_catalog.-) $2; END $$;
CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.p_tsminus);
CREATE FUNCTION public.p_texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.p_texteq);
CREATE FUNCTION public.power(float8, integer) RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('power(float8, integer)'); RETURN pg_catalog.power($1, $2::float8); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.random() RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('random()'); RETURN pg_catalog.random(); END $$;
CREATE FUNCTION public.min(timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('min'); RETURN $1; END $$;
CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM public.planted('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
ALTER DATABASE postgres SET search_path = public, pg_catalog;
});
# and a hostile path at the role level too (the worker's role, in this database)
q1("ALTER ROLE " . $node->safe_psql('postgres', 'SELECT current_user') . " IN DATABASE postgres SET search_path = public, pg_catalog");

# the plant is live: a session that takes the database's path runs it
evil("SELECT now()");
ok(wait_until(sub { slurp_file($node->logfile) =~ /PLANTED CODE RAN in client backend as evil: now\(\)/ }, 10),
	'the planted code runs for a session that takes the database\'s search_path (the test can fail)');

$node->restart;    # the worker starts with the hostile defaults in force
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', 'register', 'acme', '$_[1]')") }
sub status_of { q1("SELECT string_agg(status || '/' || attempts, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'") }

enqueue('hostile-ok', '[{"vid": 1}, {"vid": 2}]');
enqueue('mock:status=503;tag=hostile', '[{"vid": 3}]');
enqueue('mock:status=400;tag=hostile', '[{"vid": 4}]');
ok(wait_until(sub { status_of('hostile-ok') eq 'sent/1,sent/1' }, 30), 'hostile defaults: rows are sent');
ok(wait_until(sub { status_of('mock:status=503;tag=hostile') eq 'failed/3' }, 30), 'hostile defaults: a 503 is retried and fails after max_attempts')
  or diag(status_of('mock:status=503;tag=hostile'));
ok(wait_until(sub { status_of('mock:status=400;tag=hostile') eq 'failed/1' }, 30), 'hostile defaults: a 400 fails');
is(scalar(requests_for('mock:status=503;tag=hostile')), 3, 'the mock saw the three attempts');

# hostile timeouts and a read-only default, at the role level, and a restart
my $su = $node->safe_psql('postgres', 'SELECT current_user');
q1("ALTER ROLE $su IN DATABASE postgres SET default_transaction_read_only = on");
q1("ALTER ROLE $su IN DATABASE postgres SET statement_timeout = '1ms'");
q1("ALTER ROLE $su IN DATABASE postgres SET lock_timeout = '1ms'");
q1("ALTER ROLE $su IN DATABASE postgres SET default_transaction_isolation = 'serializable'");
q1("ALTER ROLE $su IN DATABASE postgres SET TimeZone = 'Pacific/Kiritimati'");
q1("ALTER ROLE $su IN DATABASE postgres SET DateStyle = 'SQL, DMY'");
$node->restart;
enqueue('hostile-after-restart', '[{"vid": 5}]');
ok(wait_until(sub { status_of('hostile-after-restart') eq 'sent/1' }, 30),
	'read-only, timeouts, serializable and odd date styles in the role\'s defaults: still sent')
  or diag(status_of('hostile-after-restart'));
enqueue('mock:status=503;tag=hostile2', '[{"vid": 6}]');
ok(wait_until(sub { status_of('mock:status=503;tag=hostile2') eq 'failed/3' }, 30), 'and retried, then failed');
is(planted_in_worker($node), 0, 'no planted operator or function ever ran in the worker');
$node->stop;

# ---------------------------------------------------------------------------
# 2. Outcomes that cannot be recorded: bounded by max_attempts, others kept
# ---------------------------------------------------------------------------
mock_reset();
$node = hs_node('record', conf => [@conf]);
sub r1 { $node->safe_psql('postgres', $_[0]) }
r1(q{
CREATE FUNCTION public.refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'sent' AND NEW.external_event_id = 'rec-fail' THEN
    RAISE EXCEPTION 'a DBA''s rule refuses this row';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_sent BEFORE UPDATE ON hubspot_events.outbox
  FOR EACH ROW EXECUTE FUNCTION public.refuse_sent();
});
r1(q{BEGIN;
SELECT hubspot_events.hubspot_enqueue_subscriber('rec-fail', 'register', 'acme', '[{"vid": 10}]');
SELECT hubspot_events.hubspot_enqueue_subscriber('rec-ok', 'register', 'acme', '[{"vid": 11}]');
COMMIT;});
sub rec_row { r1("SELECT format('%s|%s|%s', status, attempts, error_category) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'") }
ok(wait_until(sub { rec_row('rec-ok') =~ /^sent\|1\|/ }, 30),
	'the other request of the same turn is recorded sent') or diag(rec_row('rec-ok'));
ok(wait_until(sub { rec_row('rec-fail') =~ /^failed\|3\|OUTCOME_NOT_RECORDED$/ }, 30),
	'a row whose outcome cannot be recorded fails after max_attempts') or diag(rec_row('rec-fail'));
usleep(1_000_000);
is(scalar(requests_for('rec-fail')), 3, 'it went out exactly max_attempts times, not without end');
is(scalar(requests_for('rec-ok')), 1, 'the other one once');
like(slurp_file($node->logfile), qr/could not record .*a DBA's rule refuses this row/, 'the failure is logged');
$node->stop;

# ---------------------------------------------------------------------------
# 3. An event's upsert goes out before its registrations, whatever the order
# ---------------------------------------------------------------------------
mock_reset();
mock_config({ known_events => 1 });
$node = hs_node('events', conf => [@conf, "hubspot_events.batch_size = 10"]);
my $event = '{"eventName": "Launch", "eventOrganizer": "Acme"}';
my $sql = "BEGIN;\n";
$sql .= "SELECT hubspot_events.hubspot_enqueue_subscriber('evt-late', 'register', 'acme', '[{\"vid\": $_}]');\n" for 1 .. 40;
$sql .= "SELECT hubspot_events.hubspot_enqueue_event('evt-late', 'acme', '$event');\nCOMMIT;";
r1($sql);
sub late_status { r1("SELECT string_agg(DISTINCT status, ',') FROM hubspot_events.outbox WHERE external_event_id = 'evt-late'") }
ok(wait_until(sub { late_status() eq 'sent' }, 30), 'the 40 registrations and their event are all sent')
  or diag(late_status(), r1("SELECT string_agg(DISTINCT error_message, ';') FROM hubspot_events.outbox WHERE status = 'failed'"));
my @late = @{ mock_requests() };    # since the reset: this part's only
like($late[0]{raw_path}, qr{/events/upsert$}, 'the first request is the event\'s upsert');
is(scalar(grep { ($_->{status} // 0) == 404 } @late), 0, 'no registration was answered 404');

# HubSpot's propagation: a 404 right after the event's upsert is retried
mock_reset();
mock_config({ known_events => 1, known_events_delay_ms => 1500 });
r1("SELECT hubspot_events.hubspot_enqueue_event('evt-prop', 'acme', '$event')");
ok(wait_until(sub { r1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'evt-prop' AND kind = 'event_upsert'") eq 'sent' }, 30),
	'the event is sent');
r1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('evt-prop', 'attend', 'acme', '[{"vid": 1}, {"vid": 2}]')});
sub prop_status { r1("SELECT string_agg(status, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = 'evt-prop' AND kind = 'subscriber'") }
ok(wait_until(sub { prop_status() eq 'sent,sent' }, 40), 'registrations answered 404 while the event propagates are retried, then sent')
  or diag(prop_status());
my @prop = grep { ($_->{path}{externalEventId} // '') eq 'evt-prop' } @{ mock_requests() };
ok(scalar(grep { ($_->{status} // 0) == 404 } @prop) >= 1, 'HubSpot did answer 404 first (the retry was exercised)');
$node->stop;

# ---------------------------------------------------------------------------
# 4. A newer library over an older schema
# ---------------------------------------------------------------------------
mock_reset();
$node = hs_node('oldschema', conf => [@conf], no_extension => 1);
r1("CREATE EXTENSION hubspot_events VERSION '0.2.0'");
ok(wait_until(sub { slurp_file($node->logfile) =~ /serves the extension's schema from version 0\.4\.0 on, and this database has version 0\.2\.0; waiting/ }, 30),
	'a 0.2.0 schema: the worker says which versions it serves, and waits');
r1("ALTER EXTENSION hubspot_events UPDATE TO '0.4.0'");
r1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('old-schema', 'register', 'acme', '[{"vid": 1}]')});
ok(wait_until(sub { r1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'old-schema'") eq 'sent' }, 30),
	'a 0.4.0 schema is served: the row is sent');
r1(q{BEGIN; SELECT hubspot_events.hubspot_enqueue_subscriber('old-schema-evt', 'register', 'acme', '[{"vid": 2}]');
	SELECT hubspot_events.hubspot_enqueue_event('old-schema-evt', 'acme', '} . $event . q{'); COMMIT;});
ok(wait_until(sub { r1("SELECT string_agg(DISTINCT status, ',') FROM hubspot_events.outbox WHERE external_event_id = 'old-schema-evt'") eq 'sent' }, 30),
	'event rows too');
r1("ALTER EXTENSION hubspot_events UPDATE");
r1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('new-schema', 'register', 'acme', '[{"vid": 3}]')});
ok(wait_until(sub { r1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'new-schema'") eq 'sent' }, 30),
	'and after ALTER EXTENSION UPDATE');
$node->stop;

# ---------------------------------------------------------------------------
# 5. An outbox replicated by a FOR ALL TABLES publication is sent once
# ---------------------------------------------------------------------------
mock_reset();
my $pub = hs_node('pub', conf => [@conf], init => { allows_streaming => 'logical' });
my $sub = hs_node('sub', conf => [@conf]);
$pub->safe_psql('postgres', 'CREATE PUBLICATION everything FOR ALL TABLES');
my $connstr = $pub->connstr('postgres');
$connstr =~ s/'/''/g;
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION everything CONNECTION '$connstr' PUBLICATION everything WITH (copy_data = false)");
$pub->wait_for_catchup('everything');
# the publisher's worker cannot send for now (a token HubSpot refuses): its
# row waits, replicated to the subscriber, whose own token is fine
my $good_token = slurp_file($pub->{hs_token_file});
open(my $fh, '>', $pub->{hs_token_file}) or die; print $fh "pat-refused-for-now\n"; close $fh;
$pub->reload;
$pub->safe_psql('postgres', q{SELECT hubspot_events.hubspot_enqueue_subscriber('replicated', 'register', 'acme', '[{"vid": 1}]')});
$pub->wait_for_catchup('everything');
is($sub->safe_psql('postgres', "SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'replicated'"), 'pending',
	'the row reached the subscriber');
usleep(1_500_000);
sub sent_ok { scalar grep { ($_->{status} // 0) >= 200 && ($_->{status} // 0) < 300 } requests_for('replicated') }
is(sent_ok(), 0, 'the subscriber\'s worker does not send a replicated row');
like($sub->safe_psql('postgres', 'SELECT held_reason FROM hubspot_events.status'), qr/replicated into this database by subscription "everything"/,
	'the subscriber\'s status says why its worker does not send');
open($fh, '>', $pub->{hs_token_file}) or die; print $fh $good_token; close $fh;
ok(wait_until(sub { $pub->safe_psql('postgres', "SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'replicated'") eq 'sent' }, 90),
	'the publisher sends it once its token is good');
$pub->wait_for_catchup('everything');
ok(wait_until(sub { $sub->safe_psql('postgres', "SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'replicated'") eq 'sent' }, 30),
	'the subscriber receives the outcome');
usleep(1_000_000);
is(sent_ok(), 1, 'HubSpot recorded it once, not once per server');
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION everything');
$sub->stop;
$pub->stop;

# ---------------------------------------------------------------------------
# 6. No spinning while due rows wait behind a retrying event upsert
# ---------------------------------------------------------------------------
mock_reset();
$node = hs_node('spin', conf => [
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.retry_base_ms = 4000",
	"hubspot_events.retry_max_ms = 4000",
	"hubspot_events.max_attempts = 10"]);
mock_config({ status => 503 });    # HubSpot fails every request: the upsert retries
r1("SELECT hubspot_events.hubspot_enqueue_event('evt-spin', 'acme', '$event')");
ok(wait_until(sub { scalar(@{ mock_requests() }) >= 1 }, 30), 'the event upsert was tried and is retrying');
r1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('evt-spin', 'register', 'acme', '[{"vid": 1}, {"vid": 2}]')});
usleep(300_000);
my $pid = r1('SELECT worker_pid FROM hubspot_events.status');
sub cpu_ticks { my @f = split ' ', (slurp_file("/proc/$pid/stat") =~ s/^.*\)\s//sr); return $f[11] + $f[12]; }
my $t0 = cpu_ticks();
usleep(2_000_000);
my $used = cpu_ticks() - $t0;
cmp_ok($used, '<', 30, "the worker sleeps while its due rows wait behind a retrying upsert ($used ticks of CPU in 2 s)");
is(r1(q{SELECT string_agg(status, ',' ORDER BY id) FROM hubspot_events.outbox WHERE kind = 'subscriber'}), 'pending,pending',
	'the registrations wait for their event');
mock_config({});
$node->stop;

# ---------------------------------------------------------------------------
# 7. A CA file refused at start: nothing is sent with the system's bundle
# ---------------------------------------------------------------------------
mock_reset();
$node = hs_node('cafile', conf => [@conf, "hubspot_events.ca_file = '/nonexistent/ca.pem'"]);
like(slurp_file($node->logfile), qr/invalid value for parameter "hubspot_events.ca_file"/, 'PostgreSQL refused the value at start');
r1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('ca-refused', 'register', 'acme', '[{"vid": 1}]')});
ok(wait_until(sub { r1('SELECT held_reason FROM hubspot_events.status') =~ /hubspot_events\.ca_file in the server's configuration was refused/ }, 30),
	'the worker holds the queue, naming the setting');
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT hubspot_events.hubspot_upsert_subscriber('ca-refused-direct', 'register', 'acme', '[{"vid": 2}]')});
like($err, qr/hubspot_events\.ca_file in the server's configuration was refused when the server started/, 'a direct call refuses too');
is(scalar(@{ mock_requests() }), 0, 'nothing reached HubSpot');
$node->append_conf('postgresql.conf', "hubspot_events.ca_file = ''\n");
$node->reload;
ok(wait_until(sub { r1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'ca-refused'") eq 'sent' }, 90),
	'after a reload with a value the check accepts, the row is sent');
$node->stop;

# ---------------------------------------------------------------------------
# 8. The worker locks the outbox before its partitions, as DDL on the outbox
#    does (CREATE TRIGGER, ALTER TABLE): the two never deadlock.  CI once saw
#    a worker's first turn (which resets rows in flight in outbox_rows, then
#    purges sent rows through the outbox) deadlock with a CREATE TRIGGER.
# ---------------------------------------------------------------------------
mock_reset();
$node = hs_node('lockorder', conf => [@conf]);
sub l1 { $node->safe_psql('postgres', $_[0]) }
my $worker_sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker'";
ok(wait_until(sub { l1($worker_sql) ne '' }), 'the worker runs');
my $old_worker = l1($worker_sql);
# a new worker, whose first turn looks for rows in flight and purges sent
# rows; the old one stops first (a worker waiting for a lock does not see
# SIGTERM until it has the lock), and the next starts 5 s later
l1("SELECT pg_terminate_backend($old_worker)");
ok(wait_until(sub { l1("SELECT count(*) FROM pg_stat_activity WHERE pid = $old_worker") eq '0' }), 'the old worker stops');
my $ddl = $node->background_psql('postgres');
$ddl->query_safe("SET lock_timeout = '20s'");
$ddl->query_safe("BEGIN");
# the DDL's first lock: the outbox itself
$ddl->query_safe("LOCK TABLE ONLY hubspot_events.outbox IN SHARE ROW EXCLUSIVE MODE");
ok(wait_until(sub { l1("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                         WHERE a.backend_type = 'hubspot_events worker' AND a.pid <> $old_worker
                           AND NOT l.granted AND l.relation = 'hubspot_events.outbox'::regclass") eq '1' }, 60),
	'the new worker waits for the outbox');
is(l1("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE a.backend_type = 'hubspot_events worker' AND l.granted
          AND l.relation IN ('hubspot_events.outbox_rows'::regclass, 'hubspot_events.outbox_intake'::regclass)"),
	'0', 'holding no lock on its partitions');
# the DDL's next locks, on the partitions: granted, no deadlock
my ($out, $err) = $ddl->query("LOCK TABLE hubspot_events.outbox_rows, hubspot_events.outbox_intake IN SHARE ROW EXCLUSIVE MODE");
is($err ? $ddl->{stderr} : '', '', 'the DDL then locks the partitions: no deadlock');
$ddl->query("COMMIT");
$ddl->quit;
l1("SELECT hubspot_events.hubspot_enqueue_subscriber('lock-after', 'register', 'acme', '{\"vid\": 1}')");
is(l1("SELECT hubspot_events.flush('30 s')"), 't', 'the worker goes on once the DDL ends');
ok(slurp_file($node->logfile) !~ /deadlock detected/, 'no deadlock in the server log');
$node->stop;

done_testing();
