# Connections (issue 15): many HubSpot accounts from one database.  Each
# connection has its own token, limit and faults; the worker shares its
# turns among them.  The mock serves several hubs, each with its own
# tokens and limit (POST /__mock/hubs), and logs which hub each request
# reached.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use List::Util qw(max);

mock_reset();
my $node = hs_node('connections', conf => [
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.batch_size = 100",
	"hubspot_events.rate_limit = 1000",
	"hubspot_events.rate_limit_interval_ms = 10000"]);
my $dir = $node->basedir;

sub q1 { $node->safe_psql('postgres', $_[0]) }
sub q_err
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err, on_error_stop => 1);
	return $err;
}

# 20 connections c1 .. c20, each its own hub 1001 .. 1020 and token; c1 is
# the big one, limited to 10 requests a second (by HubSpot, and by its row)
my %token;
my @hubs;
for my $n (1 .. 20)
{
	$token{$n} = "tok-c$n-" . int(rand(1e9));
	my $file = "$dir/token-c$n";
	PostgreSQL::Test::Utils::append_to_file($file, $token{$n});
	chmod 0600, $file;
	push @hubs, { hub_id => 1000 + $n, tokens => [ $token{$n} ],
		rate_limit => ($n == 1 ? 10 : 100), rate_window_ms => ($n == 1 ? 1000 : 10000) };
	is(q1("SELECT name || ' ' || auth || ' ' || state FROM hubspot_events.create_connection('c$n', '$file')"),
		"c$n token_file active", "create_connection c$n") if $n <= 2;
	q1("SELECT hubspot_events.create_connection('c$n', '$file')") if $n > 2;
}
mock_control('/__mock/hubs', { hubs => \@hubs });
q1("UPDATE hubspot_events.connections SET rate_limit = 10, rate_limit_interval_ms = 1000 WHERE name = 'c1'");
is(q1("SELECT count(*) FROM hubspot_events.connections"), '21', 'the default and 20 connections');
is(q1("SELECT count(*) FROM hubspot_events.connection_secrets WHERE token_file IS NOT NULL AND refresh_token IS NULL"),
	'20', 'each with its token file in connection_secrets');

# ---------------------------------------------------------------------------
# 1. Refusals
# ---------------------------------------------------------------------------
like(q_err("SELECT hubspot_events.hubspot_enqueue_subscriber('e', 'register', 'a', '[{\"vid\": 1}]', 'nope')"),
	qr/connection "nope" does not exist/, 'an unknown connection is an error at the call');
like(q_err("SELECT hubspot_events.hubspot_enqueue_subscriber('e', 'register', 'a', '[{\"vid\": 1}]', connection => NULL)"),
	qr/connection must not be null/, 'a NULL connection is an error');
like(q_err("SELECT hubspot_events.create_connection('c1', '$dir/token-c1')"), qr/connection "c1" already exists/,
	'create_connection refuses an existing name');
like(q_err("SELECT hubspot_events.create_connection('bad name', '$dir/token-c1')"), qr/invalid connection name/,
	'and a name with a space');
like(q_err("SELECT hubspot_events.create_connection('cx', '$dir/no-such-file')"), qr/could not open the file/,
	'and a token file it cannot read');
like(q_err("SELECT hubspot_events.drop_connection('default')"), qr/cannot be dropped/, 'the default cannot be dropped');
q1("CREATE ROLE platform LOGIN");
q1("GRANT USAGE ON SCHEMA hubspot_events TO platform");
q1("GRANT EXECUTE ON FUNCTION hubspot_events.create_connection(text, text) TO platform");
my ($o, $e) = ('', '');
$node->psql('postgres', "SELECT hubspot_events.create_connection('cy', '$dir/token-c1')",
	extra_params => [ '-U', 'platform' ], stdout => \$o, stderr => \$e);
like($e, qr/only a superuser may create a connection/, 'create_connection is for superusers only');
is(q1("SELECT count(*) FROM hubspot_events.connections WHERE name IN ('cx', 'cy')"), '0', 'nothing was created');

# ---------------------------------------------------------------------------
# 2. Fairness: c1 with a backlog of 100,000 contacts at 10 requests/s, the
#    others with single new rows
# ---------------------------------------------------------------------------
mock_reset();
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('big', 'register', 'acct-c1',
      (SELECT jsonb_agg(jsonb_build_object('vid', g)) FROM generate_series(1, 100000) g), 'c1')");
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE connection = 'c1' AND status = 'sent'") >= 1000 }),
	'the backlog of c1 is being sent');

my @lat;
for my $round (1 .. 5)
{
	my %committed;
	for my $n (2 .. 20)
	{
		# from before the call: an upper bound of the time from the commit to the request
		$committed{$n} = time;
		q1("SELECT hubspot_events.hubspot_enqueue_subscriber('single-$round', 'register', 'acct-c$n', '[{\"vid\": $n}]', 'c$n')");
	}
	ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'single-$round' AND status = 'sent'") == 19 }, 20),
		"round $round: the 19 single rows are sent while c1's backlog drains");
	for my $r (@{ mock_requests() })
	{
		next unless ($r->{path}{externalEventId} // '') eq "single-$round";
		my ($n) = ($r->{query}{externalAccountId} =~ /^acct-c(\d+)$/);
		push @lat, $r->{time} - $committed{$n} if $n && $committed{$n};
	}
}
@lat = sort { $a <=> $b } @lat;
is(scalar @lat, 95, '95 single rows measured');
my $p99 = $lat[ int(0.99 * $#lat) ];
note(sprintf('commit-to-request of the single rows: p50 %.0f ms, p99 %.0f ms, max %.0f ms',
	1000 * $lat[ int(0.5 * $#lat) ], 1000 * $p99, 1000 * $lat[-1]));
cmp_ok($p99, '<', 1.0, 'p99 commit-to-request of the single rows is under 1 s');
cmp_ok(q1("SELECT count(*) FROM hubspot_events.outbox WHERE connection = 'c1' AND status = 'pending'"), '>', 0,
	'(c1 still had a backlog)');

# every request reached its own hub with its own token; no hub over its limit
my $wrong = 0;
my %by_hub;
for my $r (@{ mock_requests() })
{
	my ($n) = (($r->{query}{externalAccountId} // '') =~ /^acct-c(\d+)$/);
	next unless $n;
	$wrong++ unless defined $r->{hub_id} && $r->{hub_id} == 1000 + $n && ($r->{status} // 0) =~ /^2\d\d$/;
	$by_hub{$n}++;
}
is($wrong, 0, 'every request reached the right hub with the right token, and was accepted');
is(scalar(keys %by_hub), 20, 'all 20 hubs received requests');
my $stats = mock_stats();
for my $n (1, 2, 20)
{
	my $h = $stats->{hubs}{ 1000 + $n };
	cmp_ok($h->{max_in_window}, '<=', $n == 1 ? 10 : 100, "hub of c$n: never over its limit in any window");
	is($h->{limited}, 0, "hub of c$n: no 429");
}

# ---------------------------------------------------------------------------
# 3. A revoked token holds its connection only; a new token file resumes it
# ---------------------------------------------------------------------------
q1("SELECT hubspot_events.drop_connection('c1', force => true)");
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE connection = 'c1' AND status = 'pending'"), '0',
	'drop_connection(force) leaves no pending row of it');
cmp_ok(q1("SELECT count(*) FROM hubspot_events.failed_syncs WHERE connection = 'c1' AND error_category = 'CONNECTION_DROPPED'"),
	'>', 0, 'its rows failed with CONNECTION_DROPPED');
mock_reset();
mock_control('/__mock/hubs/revoke', { token => $token{3} });
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('rev', 'register', 'acct-c$_', '[{\"vid\": $_}]', 'c$_')") for 3, 4;
ok(wait_until(sub { q1("SELECT state FROM hubspot_events.connections WHERE name = 'c3'") eq 'held' }),
	'a 401 holds the connection c3');
like(q1("SELECT held_reason FROM hubspot_events.connections WHERE name = 'c3'"), qr/401/, 'with the reason');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'rev' AND connection = 'c4'") eq 'sent' }),
	'c4 is sent all the same');
is(q1("SELECT format('%s %s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'rev' AND connection = 'c3'"),
	'pending 0', "c3's row waits, its attempt not counted");
is(q1("SELECT code FROM hubspot_events.waiting WHERE external_event_id = 'rev'"), 'held', 'waiting says held');
is(q1("SELECT held_connections FROM hubspot_events.status"), '1', 'status counts one held connection');
is(q1("SELECT state FROM hubspot_events.connections WHERE name = 'default'"), 'active', 'the default is not held');

# a new token, in the file and known to the hub: the next turn resumes c3
my $new3 = "tok-c3-new-" . int(rand(1e9));
mock_control('/__mock/hubs', { hubs => [ { hub_id => 1003, tokens => [$new3], rate_limit => 100, rate_window_ms => 10000 } ] });
unlink "$dir/token-c3";
PostgreSQL::Test::Utils::append_to_file("$dir/token-c3", $new3);
chmod 0600, "$dir/token-c3";
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'rev' AND connection = 'c3'") eq 'sent' }),
	"a new token file resumes c3: its row is sent");
is(q1("SELECT format('%s %s', state, held_reason IS NULL) FROM hubspot_events.connections WHERE name = 'c3'"), 'active t',
	'c3 is active again');
my @c3 = grep { ($_->{hub_id} // 0) == 1003 && ($_->{status} // 0) =~ /^2\d\d$/ } @{ mock_requests() };
is(scalar @c3, 1, 'its row reached hub 1003 once, accepted');

# ---------------------------------------------------------------------------
# 4. The default's hold does not stop the others
# ---------------------------------------------------------------------------
my $default_file = $node->{hs_token_file};
my $good = PostgreSQL::Test::Utils::slurp_file($default_file);
unlink $default_file;
PostgreSQL::Test::Utils::append_to_file($default_file, 'not-the-token');
chmod 0600, $default_file;
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('dflt', 'register', 'acct-d', '[{\"vid\": 7}]')");
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('dflt', 'register', 'acct-c5', '[{\"vid\": 5}]', 'c5')");
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'held' }), 'a 401 holds the default');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'dflt' AND connection = 'c5'") eq 'sent' }),
	'c5 is sent while the default is held');
unlink $default_file;
PostgreSQL::Test::Utils::append_to_file($default_file, $good);
chmod 0600, $default_file;
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'dflt' AND connection = 'default'") eq 'sent' }),
	'the default resumes with its token back');

# ---------------------------------------------------------------------------
# 5. Triggers: connection=<column> and connection:=<name>
# ---------------------------------------------------------------------------
q1("CREATE TABLE att (id serial PRIMARY KEY, ev text, vid bigint, st text, acct text, conn text)");
q1("CREATE TRIGGER sync AFTER INSERT OR UPDATE OR DELETE ON att FOR EACH ROW EXECUTE FUNCTION
    hubspot_events.sync_attendance('event_id=ev', 'vid=vid', 'state=st', 'account_id=acct', 'connection=conn')");
q1("CREATE TABLE att2 (id serial PRIMARY KEY, ev text, vid bigint, st text)");
q1("CREATE TRIGGER sync AFTER INSERT ON att2 FOR EACH ROW EXECUTE FUNCTION
    hubspot_events.sync_attendance('event_id=ev', 'vid=vid', 'state=st', 'account_id:=acct-c7', 'connection:=c7')");
q1("INSERT INTO att (ev, vid, st, acct, conn) VALUES ('trg', 6, 'attend', 'acct-c6', 'c6'), ('trg', 8, 'attend', 'acct-c8', 'ghost'), ('trg', 9, 'attend', 'acct-c9', NULL)");
q1("INSERT INTO att2 (ev, vid, st) VALUES ('trg2', 7, 'register')");
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id IN ('trg', 'trg2') AND status = 'sent'") == 2 }),
	'the valid trigger rows are sent');
is(q1("SELECT string_agg(format('%s:%s:%s', external_event_id, connection, status), ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id IN ('trg', 'trg2')"),
	'trg:c6:sent,trg:ghost:failed,trg:default:failed,trg2:c7:sent', 'each row with its connection (the column, or the constant)');
like(q1("SELECT string_agg(error_message, ' | ' ORDER BY id) FROM hubspot_events.failed_syncs WHERE external_event_id = 'trg'"),
	qr/connection "ghost" does not exist \| connection must not be null/, 'an unknown or NULL connection is an invalid row');
# A row moved to another connection (an UPDATE of its connection, or a
# DELETE and an INSERT in one transaction), with on_delete=cancel: the old
# connection's account gets its cancel first.  Only a cancel of the same
# connection is the transaction's own to drop.
q1("CREATE TABLE att3 (id serial PRIMARY KEY, ev text, vid bigint, st text, acct text, conn text)");
q1("CREATE TRIGGER sync AFTER INSERT OR UPDATE OR DELETE ON att3 FOR EACH ROW EXECUTE FUNCTION
    hubspot_events.sync_attendance('event_id=ev', 'vid=vid', 'state=st', 'account_id=acct', 'connection=conn', 'on_delete=cancel')");
sub moved { q1("SELECT string_agg(format('%s:%s', connection, subscriber_state), ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'") }
q1("INSERT INTO att3 (ev, vid, st, acct, conn) VALUES ('mv-u', 21, 'register', 'acct-m', 'c14')");
q1("UPDATE att3 SET conn = 'c15' WHERE ev = 'mv-u'");
is(moved('mv-u'), 'c14:register,c14:cancel,c15:register', 'an UPDATE of the connection: a cancel to the old one, then the state to the new');
q1("INSERT INTO att3 (ev, vid, st, acct, conn) VALUES ('mv-d', 22, 'register', 'acct-m', 'c14')");
q1("BEGIN; DELETE FROM att3 WHERE ev = 'mv-d'; INSERT INTO att3 (ev, vid, st, acct, conn) VALUES ('mv-d', 22, 'register', 'acct-m', 'c15'); COMMIT;");
is(moved('mv-d'), 'c14:register,c14:cancel,c15:register', 'deleted and inserted again for another connection: the same');
q1("BEGIN; DELETE FROM att3 WHERE ev = 'mv-d'; INSERT INTO att3 (ev, vid, st, acct, conn) VALUES ('mv-d', 22, 'register', 'acct-m', 'c15'); COMMIT;");
is(moved('mv-d'), 'c14:register,c14:cancel,c15:register,c15:register',
	'deleted and inserted again for the same connection: its cancel is dropped, as without connections');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id IN ('mv-u', 'mv-d') AND status = 'sent'") == 7 }),
	'all seven are sent');
my %hub_of = map { (($_->{path}{externalEventId} // '') . ':' . ($_->{query}{externalAccountId} // '')) => $_->{hub_id} } @{ mock_requests() };
is($hub_of{'trg:acct-c6'}, 1006, 'the trigger row of c6 reached hub 1006');
is($hub_of{'trg2:acct-c7'}, 1007, 'the constant connection c7 reached hub 1007');

# ---------------------------------------------------------------------------
# 6. drop_connection
# ---------------------------------------------------------------------------
q1("SELECT hubspot_events.pause()");
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('drop', 'register', 'acct-c10', '[{\"vid\": 10}]', 'c10')");
like(q_err("SELECT hubspot_events.drop_connection('c10')"), qr/connection "c10" has 1 rows pending or in flight/,
	'drop_connection refuses while rows wait');
q1("SELECT hubspot_events.drop_connection('c10', force => true)");
is(q1("SELECT format('%s %s', status, error_category) FROM hubspot_events.outbox WHERE external_event_id = 'drop'"),
	'failed CONNECTION_DROPPED', 'with force, they fail with CONNECTION_DROPPED');
is(q1("SELECT count(*) FROM hubspot_events.connection_secrets WHERE connection = 'c10'"), '0', 'its secret is gone');
q1("SELECT hubspot_events.drop_connection('c11')");
is(q1("SELECT count(*) FROM hubspot_events.connections WHERE name IN ('c10', 'c11')"), '0', 'both are gone');
q1("SELECT hubspot_events.resume()");

# ---------------------------------------------------------------------------
# 7. An event upserted through one connection is not another account's: a
#    404 from another hub is not taken for the event's propagation
# ---------------------------------------------------------------------------
mock_config({ known_events => 1 });
q1(q{SELECT hubspot_events.hubspot_enqueue_event('shared-ev', 'acct-x', '{"eventName": "Launch", "eventOrganizer": "Acme"}', 'c12')});
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'shared-ev' AND kind = 'event_upsert'") eq 'sent' }),
	'the event is upserted through c12');
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('shared-ev', 'register', 'acct-x', '[{"vid": 1}]', 'c13')});
sub shared_row { q1("SELECT format('%s|%s|%s', status, attempts, http_status) FROM hubspot_events.outbox WHERE external_event_id = 'shared-ev' AND kind = 'subscriber'") }
ok(wait_until(sub { shared_row() eq 'failed|1|404' }, 15),
	'the same event id through c13 (another hub, which has no such event) fails at its first 404: c12\'s upsert is not its')
  or diag(shared_row());
my @shared = grep { ($_->{path}{externalEventId} // '') eq 'shared-ev' } @{ mock_requests() };
is(join(',', map { "$_->{hub_id}:$_->{status}" } @shared), '1013:404', 'the mock saw the subscriber state once, answered 404 at hub 1013');
is(join(',', map { "$_->{hub_id}:$_->{status}" } grep { $_->{raw_path} =~ m{/events/upsert$} } @{ mock_requests() }),
	'1012:204', 'and the event\'s upsert at hub 1012');
mock_config({});

mock_control('/__mock/hubs/clear', {});
$node->stop;
done_testing();
