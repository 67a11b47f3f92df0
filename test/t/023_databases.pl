# Many databases from one cluster (issue 15): hubspot_events.databases = '*'
# starts a launcher, which starts a worker per database where the extension
# is installed; each drains its own outbox; a new database given the
# extension is served without a restart; DROP DATABASE of a served database
# succeeds; a reload that lists fewer databases stops the other workers.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
# "postgres" has no extension here: its worker exits and is tried again
my $node = hs_node('databases', no_extension => 1, conf => [
	"hubspot_events.databases = '*'",
	"hubspot_events.poll_interval_ms = 100",
	"max_worker_processes = 16"]);

sub q_in { my ($db, $sql) = @_; return $node->safe_psql($db, $sql) }
# one statement, so that its contacts go in one request
sub enqueue
{
	my ($db, $event, @vids) = @_;
	my $contacts = '[' . join(', ', map { "{\"vid\": $_}" } @vids) . ']';
	q_in($db, "SELECT hubspot_events.hubspot_enqueue_subscriber('$event', 'register', 'acme', '$contacts')");
}
sub sent { my ($db, $event) = @_; q_in($db, "SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$event' AND status = 'sent'") }
# the workers of the launcher, as "database:state" for the databases named
sub workers
{
	my ($db, @names) = @_;
	my $in = join(', ', map { "'$_'" } @names);
	return q_in($db, "SELECT string_agg(format('%s:%s', database, pid IS NOT NULL), ',' ORDER BY database) "
		. "FROM hubspot_events.workers WHERE kind = 'launched' AND database IN ($in)");
}
sub activity
{
	my ($type, $datname) = @_;
	my $where = defined $datname ? "datname = '$datname'" : 'datname IS NULL';
	return q_in('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = '$type' AND $where");
}

# ---------------------------------------------------------------------------
# 1. Two databases with the extension, one without
# ---------------------------------------------------------------------------
for my $db ('db1', 'db2')
{
	q_in('postgres', "CREATE DATABASE $db");
	q_in($db, 'CREATE EXTENSION hubspot_events');
}
is(activity('hubspot_events launcher', undef), '1', 'pg_stat_activity: one "hubspot_events launcher", in no database');
ok(wait_until(sub { activity('hubspot_events worker', 'db1') eq '1' && activity('hubspot_events worker', 'db2') eq '1' }, 20),
	'pg_stat_activity: a "hubspot_events worker" in db1 and one in db2');
is(q_in('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker' AND datname NOT IN ('db1', 'db2', 'postgres')"),
	'0', 'no worker anywhere else');
is(q_in('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hubspot_events launcher'"), '1',
	'exactly one launcher');

# each database enqueues its own event ids
enqueue('db1', 'db1-ev', 1 .. 3);
enqueue('db2', 'db2-ev', 11 .. 12);
ok(wait_until(sub { sent('db1', 'db1-ev') eq '3' }), 'db1: its rows are sent');
ok(wait_until(sub { sent('db2', 'db2-ev') eq '2' }), 'db2: its rows are sent');
is_deeply([ sort { $a <=> $b } mock_vids('db1-ev') ], [ 1, 2, 3 ], "the mock received db1's contacts under db1's event id");
is_deeply([ sort { $a <=> $b } mock_vids('db2-ev') ], [ 11, 12 ], "the mock received db2's contacts under db2's event id");
is(scalar(grep { ($_->{path}{externalEventId} // '') !~ /^db[12]-ev$/ } @{ mock_requests() }), 0, 'and nothing else');

# each was sent by its own database's worker: the requests are counted in its slot
is(q_in('db1', "SELECT string_agg(format('%s:%s:%s', database, kind, successes), ',' ORDER BY database) FROM hubspot_events.workers WHERE database IN ('db1', 'db2')"),
	'db1:launched:1,db2:launched:1', "workers: db1's and db2's workers, each with the one request it made");
is(workers('db2', 'db1', 'db2'), 'db1:t,db2:t', 'the view is cluster-wide: db2 sees both');
is(q_in('db1', "SELECT pid FROM hubspot_events.workers WHERE kind = 'launcher'"),
	q_in('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events launcher'"),
	"workers: the launcher's row has its pid");
is(q_in('db1', "SELECT pid FROM hubspot_events.workers WHERE database = 'db1'"),
	q_in('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker' AND datname = 'db1'"),
	"workers: db1's row has its worker's pid");

# status: per database, its own worker
for my $db ('db1', 'db2')
{
	is(q_in($db, "SELECT format('%s|%s|%s', worker_database, worker_state, requests) FROM hubspot_events.status"),
		"$db|idle|1", "$db: status shows its own worker, idle, with its own counters");
	is(q_in($db, "SELECT worker_pid FROM hubspot_events.status"),
		q_in('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker' AND datname = '$db'"),
		"$db: status shows its worker's pid");
}

# "postgres" has no extension: its worker does not stay
ok(wait_until(sub { activity('hubspot_events worker', 'postgres') eq '0' }, 5),
	'no worker stays in postgres, which has no extension');

# ---------------------------------------------------------------------------
# 2. A new database, given the extension: served without a restart
# ---------------------------------------------------------------------------
my $t0 = time;
q_in('postgres', 'CREATE DATABASE db3');
q_in('db3', 'CREATE EXTENSION hubspot_events');
enqueue('db3', 'db3-ev', 31);
ok(wait_until(sub { sent('db3', 'db3-ev') eq '1' }, 20), 'db3: created with the extension after the server started, its row is sent');
my $took = time - $t0;
cmp_ok($took, '<', 15, sprintf('within 15 s of CREATE DATABASE (took %.1f s)', $took));
is_deeply([ mock_vids('db3-ev') ], [31], "the mock received db3's contact");
is(activity('hubspot_events worker', 'db3'), '1', 'db3 has its worker');

# ---------------------------------------------------------------------------
# 2b. Two databases sending to one HubSpot account share its limit
# ---------------------------------------------------------------------------
# db1 and db2 send with the same credential (the default's token file): one
# HubSpot account, 10 requests a second at the mock; each worker is allowed
# 10 a second too, so only a window they share keeps them under the account's
mock_reset();
mock_config({ rate_limit => 10, rate_window_ms => 1000 });
$node->append_conf('postgresql.conf', "hubspot_events.rate_limit = 10\nhubspot_events.rate_limit_interval_ms = 1000\nhubspot_events.batch_size = 10\n");
$node->reload;
sleep 1;
for my $db ('db1', 'db2')
{
	q_in($db, "SELECT hubspot_events.pause()");
	enqueue($db, "shared-$db", 1001 .. 1300);
}
q_in($_, "SELECT hubspot_events.resume()") for 'db1', 'db2';
ok(wait_until(sub { sent('db1', 'shared-db1') eq '300' && sent('db2', 'shared-db2') eq '300' }, 90),
	'db1 and db2 each send their 300 contacts (30 requests each) to the one account');
my $st = mock_stats();
cmp_ok($st->{max_accepted_in_window}, '<=', 10, "the account's limit (10 a second) was never exceeded in any window: $st->{max_accepted_in_window}");
is($st->{responses_429}, 0, 'no request was answered 429');
mock_config({});
$node->append_conf('postgresql.conf', "hubspot_events.rate_limit = 1000\nhubspot_events.rate_limit_interval_ms = 10000\nhubspot_events.batch_size = 100\n");
$node->reload;

# ---------------------------------------------------------------------------
# 3. DROP DATABASE of a served database, without FORCE
# ---------------------------------------------------------------------------
my $db3_oid = q_in('postgres', "SELECT oid FROM pg_database WHERE datname = 'db3'");
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE db3');
is($rc, 0, 'DROP DATABASE db3 succeeds while its worker was serving it') or diag($err);
is(q_in('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'db3'"), '0', 'db3 is gone');
ok(wait_until(sub { q_in('db1', "SELECT count(*) FROM hubspot_events.workers WHERE datid = $db3_oid") eq '0' }, 10),
	"workers: db3's worker is gone");
is(activity('hubspot_events worker', 'db3'), '0', 'pg_stat_activity: no worker of db3');
ok(wait_until(sub { activity('hubspot_events worker', 'db1') eq '1' && activity('hubspot_events worker', 'db2') eq '1' }, 5),
	'db1 and db2 keep their workers');

# ALTER DATABASE ... RENAME of a served database: its worker steps aside, and comes back
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE db2 RENAME TO db2r');
is($rc, 0, 'ALTER DATABASE db2 RENAME succeeds while its worker was serving it') or diag($err);
ok(wait_until(sub { activity('hubspot_events worker', 'db2r') eq '1' }, 15), 'the renamed database has its worker again');
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE db2r RENAME TO db2');
is($rc, 0, 'and renamed back') or diag($err);
ok(wait_until(sub { activity('hubspot_events worker', 'db2') eq '1' }, 15), 'db2 has its worker again');

# a role that does not own the database stops no worker (its DROP fails as PostgreSQL's would)
q_in('postgres', 'CREATE ROLE stranger LOGIN CREATEDB');
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE db2', extra_params => [ '-U', 'stranger' ]);
like($err, qr/must be owner of database db2/, "a role that does not own db2 cannot drop it");
is(activity('hubspot_events worker', 'db2'), '1', "and db2's worker was not stopped for it");

# ---------------------------------------------------------------------------
# 4. A reload that lists db1 only stops db2's worker
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "hubspot_events.databases = 'db1'\n");
$node->reload;
ok(wait_until(sub { activity('hubspot_events worker', 'db2') eq '0' }, 10), "after the reload, db2's worker stops");
ok(wait_until(sub { workers('db1', 'db1', 'db2') eq 'db1:t' }, 10), 'workers: only db1 is served');
is(activity('hubspot_events worker', 'db1'), '1', 'db1 keeps its worker');
is(q_in('db2', "SELECT format('%s|%s', worker_pid IS NULL, coalesce(worker_database, 'none')) FROM hubspot_events.status"),
	't|none', 'db2: status shows no worker, and none expected (db2 is not listed)');

enqueue('db1', 'db1-after', 41);
enqueue('db2', 'db2-after', 42);
ok(wait_until(sub { sent('db1', 'db1-after') eq '1' }), 'db1 is still drained');
usleep(1_000_000);
is(q_in('db2', "SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'db2-after'"), 'pending',
	"db2's new row stays pending: nobody serves db2");
is_deeply([ mock_vids('db2-after') ], [], 'the mock received nothing from db2');

$node->stop;

# ---------------------------------------------------------------------------
# 5. More databases than hubspot_events.max_databases: refused, with a WARNING
# ---------------------------------------------------------------------------
my $small = hs_node('databases_small', no_extension => 1, conf => [
	"hubspot_events.databases = 'db1, db2'",
	"hubspot_events.max_databases = 1",
	"hubspot_events.poll_interval_ms = 100"]);
for my $db ('db1', 'db2')
{
	$small->safe_psql('postgres', "CREATE DATABASE $db");
	$small->safe_psql($db, 'CREATE EXTENSION hubspot_events');
}
ok(wait_until(sub { -s $small->logfile && slurp_file($small->logfile) =~ /WARNING:  hubspot_events launcher: database "db[12]" is not served: the 1 worker slots of hubspot_events.max_databases are in use/ }, 20),
	'max_databases = 1 and two databases: a WARNING names the database not served');
is($small->safe_psql('db1', "SELECT count(*) FROM hubspot_events.workers WHERE kind = 'launched'"), '1',
	'one worker slot in use');
$small->stop;

# ---------------------------------------------------------------------------
# 6. Without hubspot_events.databases: the one static worker, as before
# ---------------------------------------------------------------------------
my $single = hs_node('databases_single');
ok(wait_until(sub { $single->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker' AND datname = 'postgres'") eq '1' }),
	'single mode: the static worker serves postgres');
is($single->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hubspot_events launcher'"), '0',
	'single mode: no launcher');
is($single->safe_psql('postgres', "SELECT format('%s|%s|%s', kind, database, pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker')) FROM hubspot_events.workers"),
	'static|postgres|t', 'single mode: workers has one row, the static worker of postgres');
$single->safe_psql('postgres', 'CREATE DATABASE other');
my ($src, $sout, $serr) = $single->psql('other', 'CREATE EXTENSION hubspot_events');
like($serr, qr/the hubspot_events worker serves the database "postgres", not "other"/, 'single mode: CREATE EXTENSION elsewhere still warns');
is($single->safe_psql('other', 'SELECT worker_state FROM hubspot_events.status'), 'not serving this database',
	'single mode: status in another database says its worker does not serve it');
$single->stop;

done_testing();
