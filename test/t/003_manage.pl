# Managing syncs: retry_failed (and supersession), purges, pause/resume
# across a restart, settings reload, another database, no preload.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('manage', conf => ["hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', '$_[1]', 'acme', '$_[2]')") }
sub flush { is(q1("SELECT hubspot_events.flush('30 s')"), 't', $_[0] // 'flush drains') }

# ---- retry_failed ----
# everything fails (HubSpot rejects), then HubSpot accepts again
mock_config({ fault_rate => 1, fault_status => 400 });
enqueue('webinar-r', 'register', '[{"vid": 1}, {"vid": 2}, {"vid": 3}]');
flush();
is(q1("SELECT count(*) FROM hubspot_events.failed_syncs WHERE external_event_id = 'webinar-r'"), '3', 'three failed syncs');
mock_config({});
# contact 3 is sent again later (a newer change): its failed row is superseded
enqueue('webinar-r', 'attend', '{"vid": 3}');
flush();
is(q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-r' AND subscriber_state = 'attend'"), 'sent', 'the newer row of contact 3 is sent');
mock_reset();
my $id1 = q1("SELECT id FROM hubspot_events.outbox WHERE external_event_id = 'webinar-r' AND contact_key = '1'");
is(q1("SELECT hubspot_events.retry_failed(ARRAY[$id1])"), '1', 'retry_failed(ids) replays one row');
flush();
is_deeply([ mock_vids('webinar-r') ], [1], 'only that contact was sent');
is(q1("SELECT hubspot_events.retry_failed()"), '1', 'retry_failed() replays all but the superseded row');
flush();
is_deeply([ mock_vids('webinar-r') ], [1, 2], 'contact 2 sent; contact 3 not moved backwards');
is(q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-r' AND subscriber_state = 'register' AND contact_key = '3'"),
	'failed', 'the superseded row stays failed');
is(q1("SELECT hubspot_events.retry_failed(include_superseded => true)"), '1', 'include_superseded replays it');
flush();
my @states3 = map { $_->{path}{subscriberState} } grep { grep { $_->{vid} == 3 } @{ $_->{body}{inputs} } } @{ mock_requests() };
is_deeply(\@states3, ['register'], 'as asked for');
is(q1("SELECT hubspot_events.retry_failed()"), '0', 'nothing left to retry');

# ---- purges ----
q1("UPDATE hubspot_events.outbox SET sent_at = now() - interval '8 days' WHERE external_event_id = 'webinar-r' AND contact_key = '1'");
is(q1("SELECT hubspot_events.purge_sent()"), '1', 'purge_sent() removes sent rows older than 7 days');
is(q1("SELECT hubspot_events.purge_sent('0 s')"), '3', "purge_sent('0 s') removes every sent row");
mock_config({ fault_rate => 1, fault_status => 400 });
enqueue('webinar-p', 'register', '{"vid": 4}');
flush();
mock_config({});
is(q1("SELECT hubspot_events.purge_failed('1 hour')"), '0', 'purge_failed keeps recent failures');
is(q1("SELECT hubspot_events.purge_failed('0 s')"), '1', 'and removes older ones');

# automatic removal after hubspot_events.sent_retention
enqueue('webinar-ret', 'register', '{"vid": 5}');
flush();
q1("UPDATE hubspot_events.outbox SET sent_at = now() - interval '2 hours' WHERE external_event_id = 'webinar-ret'");
$node->append_conf('postgresql.conf', "hubspot_events.sent_retention = '1h'");
$node->restart;
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-ret'") eq '0' }),
	'the worker removes sent rows older than sent_retention');

# ---- pause / resume, surviving a restart ----
mock_reset();
q1("SELECT hubspot_events.pause()");
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'paused' }), 'status shows paused');
enqueue('webinar-pause', 'register', '{"vid": 6}');
$node->restart;
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'paused' }), 'still paused after a restart');
is(q1("SELECT paused FROM hubspot_events.status"), 't', 'paused column');
sleep 1;
is(scalar @{ mock_requests() }, 0, 'nothing sent while paused; enqueueing went on');
q1("SELECT hubspot_events.resume()");
flush('resume() restarts sending');
is_deeply([ mock_vids('webinar-pause') ], [6], 'the row enqueued while paused is sent');

# ---- settings reload (SIGHUP): batch_size ----
mock_reset();
q1("SELECT hubspot_events.pause()");
enqueue('webinar-b', 'register', (q1("SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 10) v")));
$node->append_conf('postgresql.conf', "hubspot_events.batch_size = 4");
$node->reload;
q1("SELECT hubspot_events.resume()");
flush();
is_deeply([ sort { $a <=> $b } map { scalar @{ $_->{body}{inputs} } } @{ mock_requests() } ], [2, 4, 4],
	'the reloaded batch_size applies (requests go out concurrently, in any order)')
  or diag(explain([ map { scalar @{ $_->{body}{inputs} } } @{ mock_requests() } ]));

# ---- the worker vacuums the outbox once a backlog has gone through (vacuum_after) ----
mock_reset();
# (a partitioned table has no statistics of its own: its partition outbox_rows, which a vacuum of the outbox vacuums)
sub vacuum_count { q1("SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'hubspot_events.outbox_rows'::regclass") }
sub set_vacuum_after
{
	$node->append_conf('postgresql.conf', "hubspot_events.vacuum_after = $_[0]");
	$node->reload;
	select(undef, undef, undef, 0.5);
}
sub vids { "(SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series($_[0], $_[1]) v)" }
set_vacuum_after(0);
my $v0 = vacuum_count();
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-vac', 'register', 'acme', " . vids(1, 30) . ")");
flush();
select(undef, undef, undef, 0.5);
is(vacuum_count(), $v0, 'vacuum_after = 0: the worker leaves the outbox to autovacuum');
set_vacuum_after(20);
ok(wait_until(sub { vacuum_count() > $v0 }), 'vacuum_after = 20: with more rows than that gone through and none due, the worker vacuums the outbox');
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'idle' }), 'and is idle again');
my $v1 = vacuum_count();
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-vac', 'attend', 'acme', " . vids(1, 10) . ")");
flush();
select(undef, undef, undef, 0.5);
is(vacuum_count(), $v1, 'ten rows since: no vacuum');
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-vac', 'attend', 'acme', " . vids(11, 25) . ")");
flush();
ok(wait_until(sub { vacuum_count() > $v1 }), 'twenty-five rows since: it vacuums again');
my @vac_vids = mock_vids('webinar-vac');
is(scalar @vac_vids, 55, 'every row reached HubSpot');
unlike(slurp_file($node->logfile), qr/skipping vacuum|ERROR:.*vacuum/i, 'no vacuum error or skip in the server log');
# while another process holds the outbox's vacuum lock (autovacuum at work, say), the worker
# does not wait for it: rows are still sent, and it vacuums once the lock is free
my $v2 = vacuum_count();
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN});
$holder->query_safe(q{LOCK TABLE hubspot_events.outbox IN SHARE UPDATE EXCLUSIVE MODE});
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-vac', 'cancel', 'acme', " . vids(1, 25) . ")");
flush('rows are sent while another process holds the vacuum lock');
select(undef, undef, undef, 1.5);
is(vacuum_count(), $v2, 'and no vacuum meanwhile');
$holder->query_safe(q{COMMIT});
$holder->quit;
ok(wait_until(sub { vacuum_count() > $v2 }), 'once the lock is free, the worker vacuums at an idle turn');
unlike(slurp_file($node->logfile), qr/skipping vacuum/i, 'without a "skipping vacuum" warning');
set_vacuum_after(10000);

# ---- pg_dump keeps the outbox's rows (pg_extension_config_dump) ----
mock_config({ fault_rate => 1, fault_status => 400 });
enqueue('webinar-dump', 'register', '[{"vid": 8}, {"vid": 9}]');
flush();
mock_config({});
my $rows_before = q1("SELECT string_agg(format('%s|%s|%s|%s', id, status, contact_key, error_category), ',' ORDER BY id) FROM hubspot_events.outbox");
my $dump = $node->basedir . '/dump.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
q1("CREATE DATABASE restored");
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ], 'restore');
is($node->safe_psql('restored', "SELECT string_agg(format('%s|%s|%s|%s', id, status, contact_key, error_category), ',' ORDER BY id) FROM hubspot_events.outbox"),
	$rows_before, 'the restored outbox has the same rows');
my $max_id = $node->safe_psql('restored', "SELECT max(id) FROM hubspot_events.outbox");
cmp_ok($node->safe_psql('restored', "SELECT (hubspot_events.hubspot_enqueue_subscriber('webinar-dump', 'attend', 'acme', '{\"vid\": 8}'))[1]"),
	'>', $max_id, 'and new ids continue after the restored ones');
is($node->safe_psql('restored', "SELECT paused FROM hubspot_events.status"), 'f', 'worker_control restored');

# ---- another database: a clear warning ----
q1("CREATE DATABASE other");
my ($ret, $out, $err) = $node->psql('other', 'CREATE EXTENSION hubspot_events');
like($err, qr/WARNING:  the hubspot_events worker serves the database "postgres", not "other"/, 'CREATE EXTENSION elsewhere warns');
is($ret, 0, 'and succeeds (the direct function works there)');
$node->stop;

# ---- without preloading: the functions work, status says the worker is not running ----
my $plain = hs_node('nopreload', preload => 0);
is($plain->safe_psql('postgres', "SELECT worker_state FROM hubspot_events.status"),
	'not running (hubspot_events is not in shared_preload_libraries)', 'status says the worker is not running');
is($plain->safe_psql('postgres', "SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-np', 'register', 'acme', '{\"vid\": 7}')"),
	'{1}', 'enqueue works');
is($plain->safe_psql('postgres', "SELECT hubspot_events.hubspot_upsert_subscriber('webinar-np', 'register', 'acme', '{\"vid\": 7}')->>'http_status'"),
	'204', 'the direct function works');
is($plain->safe_psql('postgres', "SELECT hubspot_events.flush('200 ms')"), 'f', 'flush reports it could not drain');
$plain->stop;
done_testing();
