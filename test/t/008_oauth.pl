# OAuth refresh: one token shared by the worker and the backends through
# shared memory, refreshed ahead of expiry and once on 401
# EXPIRED_AUTHENTICATION, the token endpoint's failures, settings that
# cannot work, the 2026-03 token path, and per-backend tokens without
# preload.  Everything is counted at the mock.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $secret = $ENV{HS_OAUTH_SECRET} or die "HS_OAUTH_SECRET is not set: run through test/run.sh";
my $refresh = $ENV{HS_OAUTH_REFRESH} or die "HS_OAUTH_REFRESH is not set: run through test/run.sh";
# the servers this test starts must not inherit them: at DEBUG3 and below
# the postmaster logs its environment (the product reads secrets from files)
delete @ENV{qw(HS_OAUTH_SECRET HS_OAUTH_REFRESH)};
my $client = 'hs-test-client-0001';
my $mock = $ENV{HS_MOCK_URL};

sub oauth_knobs
{
	my %extra = @_;
	return { oauth_client_id => $client, oauth_client_secret => $secret,
		oauth_refresh_token => $refresh, %extra };
}

# the secrets, in files of their own
my $dir = PostgreSQL::Test::Utils::tempdir();
append_to_file("$dir/client_secret", "$secret\n");
append_to_file("$dir/refresh_token", "  $refresh\n");
chmod 0600, "$dir/client_secret", "$dir/refresh_token";
my @oauth_conf = (
	"hubspot_events.oauth_client_id = '$client'",
	"hubspot_events.oauth_client_secret_file = '$dir/client_secret'",
	"hubspot_events.oauth_refresh_token_file = '$dir/refresh_token'",
	"hubspot_events.oauth_token_url = '$mock/oauth/v1/token'");

mock_reset();
# a slow token endpoint, so that concurrent callers overlap the refresh
mock_config(oauth_knobs(oauth_delay_ms => 500));
# debug5: no log line at any level may hold a token or secret, refreshes included (the suite greps the logs)
my $node = hs_node('oauth', conf => [@oauth_conf, "hubspot_events.poll_interval_ms = 100", "log_min_messages = debug5"]);

sub q1 { $node->safe_psql('postgres', $_[0]) }
sub direct { q1("SELECT hubspot_events.hubspot_upsert_subscriber('$_[0]', 'register', 'acme', '{\"vid\": " . ($_[1] // 1) . "}')->>'http_status'") }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', 'register', 'acme', '$_[1]')") }
sub sent_count { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]' AND status = 'sent'") }
sub statuses_for
{
	my ($event) = @_;
	return join(',', map { $_->{status} // 'none' }
		grep { ($_->{path}{externalEventId} // '') eq $event } @{ mock_requests() });
}
sub delta { my ($a, $b, $k) = @_; return $b->{$k} - $a->{$k} }

# ---- one token for six backends and the worker at once ----
my @calls;
for my $i (1 .. 6)
{
	my %c = (out => '', err => '');
	$c{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		  "SELECT hubspot_events.hubspot_upsert_subscriber('webinar-shared-$i', 'register', 'acme', '{\"vid\": $i}')->>'http_status'" ],
		'>', \$c{out}, '2>', \$c{err});
	push @calls, \%c;
}
enqueue('webinar-shared-worker', '[{"vid": 100}, {"vid": 101}]');
$_->{h}->finish for @calls;
is(join(',', map { $_->{out} =~ s/\s+//gr } @calls), '204,204,204,204,204,204', 'six concurrent backends: all sent')
  or diag(join("\n", map { $_->{err} } @calls));
ok(wait_until(sub { sent_count('webinar-shared-worker') eq '2' }), 'the worker sent its rows');
my $stats = mock_stats();
is($stats->{token_requests}, 1, 'the worker and six backends shared ONE token: one token request at the mock');
is($stats->{tokens_issued}, 1, 'and it was granted');
my @api = @{ mock_requests() };
is(scalar(@api), 7, 'seven API requests');
is(scalar(grep { ($_->{headers}{authorization} // '') eq 'Bearer <oauth>' } @api), 7,
	'all of them carried the OAuth token, not the static token file (OAuth takes precedence)');
my ($treq) = @{ mock_oauth_requests() };
is(join('|', map { $treq->{$_} // '' } qw(path content_type grant_type client_id client_id_ok client_secret_ok refresh_token_ok)),
	"/oauth/v1/token|application/x-www-form-urlencoded|refresh_token|$client|1|1|1",
	'the token request: form-encoded refresh grant with the client id, the secret and the refresh token from their files');
is($treq->{authorization}, undef, 'no bearer token is sent to the token endpoint');

# ---- 401 EXPIRED_AUTHENTICATION: one refresh, and the request sent again ----
mock_config(oauth_knobs());
mock_oauth_expire();
my $s0 = mock_stats();
is(direct('webinar-expired-direct'), '204', 'direct: the call succeeds although HubSpot expired the token early');
my $s1 = mock_stats();
is(delta($s0, $s1, 'expired_401'), 1, 'direct: one 401 EXPIRED_AUTHENTICATION');
is(delta($s0, $s1, 'token_requests'), 1, 'direct: exactly one refresh');
is(statuses_for('webinar-expired-direct'), '401,204', 'direct: the request was sent again after the refresh');

mock_oauth_expire();
$s0 = mock_stats();
enqueue('webinar-expired-worker', '[{"vid": 7}, {"vid": 8}]');
ok(wait_until(sub { sent_count('webinar-expired-worker') eq '2' }), 'worker: the rows are sent although the token expired early');
$s1 = mock_stats();
is(delta($s0, $s1, 'expired_401'), 1, 'worker: one 401 EXPIRED_AUTHENTICATION');
is(delta($s0, $s1, 'token_requests'), 1, 'worker: exactly one refresh');
is(statuses_for('webinar-expired-worker'), '401,204', 'worker: the request was sent again after the refresh');
is(q1("SELECT string_agg(attempts::text, ',') FROM hubspot_events.outbox WHERE external_event_id = 'webinar-expired-worker'"),
	'1,1', 'worker: one attempt counted');
is(q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status"), '', 'worker: the queue was not held');

# ---- refreshed ahead of expiry: 6 s tokens (a 0.6 s margin), a call every ~0.1 s, no 401 ----
# (about 10 calls a second: under the mock's 190 per 10 s, so the worker's pacing never waits)
# (rotating refresh tokens: every refresh must use the newest)
mock_config(oauth_knobs(oauth_expires_in => 6, oauth_rotate => 1));
mock_oauth_expire();
is(direct('webinar-ahead-0'), '204', 'a first 6-second token');
$s0 = mock_stats();
my $oauth_seen = scalar @{ mock_oauth_requests() };
# one session calls the direct function for 14 s; the worker sends meanwhile
my %loop = (out => '', err => '');
$loop{h} = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', q{
DO $$
DECLARE
  n int := 0;
  ok int := 0;
  stop timestamptz := clock_timestamp() + interval '14 s';
BEGIN
  WHILE clock_timestamp() < stop LOOP
    n := n + 1;
    IF hubspot_events.hubspot_upsert_subscriber('webinar-ahead-' || n, 'register', 'acme',
                                                jsonb_build_object('vid', n))->>'http_status' = '204' THEN
      ok := ok + 1;
    END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RAISE NOTICE 'calls: %, succeeded: %', n, ok;
END $$} ],
	'>', \$loop{out}, '2>', \$loop{err});
for my $i (1 .. 10)
{
	enqueue("webinar-ahead-worker", "{\"vid\": $i}");
	sleep 1;
}
ok(wait_until(sub { sent_count('webinar-ahead-worker') eq '10' }), 'the worker sent its rows meanwhile');
$loop{h}->finish;
my ($ncalls, $nok) = $loop{err} =~ /calls: (\d+), succeeded: (\d+)/;
ok(defined $ncalls && $ncalls > 40 && $nok == $ncalls, 'every direct call succeeded (' . ($ncalls // 'none') . ' calls)')
  or diag($loop{err});
$s1 = mock_stats();
is(delta($s0, $s1, 'expired_401'), 0, 'no 401 at the mock: tokens were refreshed before they expired');
my @ahead = @{ mock_oauth_requests() }[ $oauth_seen .. $#{ mock_oauth_requests() } ];
ok(@ahead >= 2 && @ahead <= 3, 'refreshed over ~14 s of 6-second tokens: ' . scalar(@ahead) . ' refreshes');
my @left = map { $_->{previous_token_left_ms} // -1 } @ahead;
is(scalar(grep { $_ >= 300 && $_ <= 700 } @left), scalar(@left),
	'each refresh came when about a tenth of the lifetime was left (' . join(', ', map { "${_} ms" } @left) . ' of 6000 ms)');
is(delta($s0, $s1, 'token_failures'), 0, 'each refresh used the newest refresh token HubSpot returned');

# ---- the 2026-03 token path: one setting away ----
mock_config(oauth_knobs());
q1("ALTER SYSTEM SET hubspot_events.oauth_token_url = '$mock/oauth/2026-03/token'");
my $loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker reloaded');
$s0 = mock_stats();
my $n_before = scalar @{ mock_oauth_requests() };
is(direct('webinar-2026'), '204', 'direct call with the 2026-03 token endpoint');
enqueue('webinar-2026-worker', '{"vid": 9}');
ok(wait_until(sub { sent_count('webinar-2026-worker') eq '1' }), 'the worker sends with it too');
my @new = @{ mock_oauth_requests() }[ $n_before .. $#{ mock_oauth_requests() } ];
is(join(',', map { "$_->{path}:$_->{status}" } @new), '/oauth/2026-03/token:200',
	'a changed token URL starts again: one refresh, at /oauth/2026-03/token, shared by the worker');

# ---- the token endpoint fails ----
mock_config(oauth_knobs(oauth_fail => 'bad_refresh_token'));
mock_oauth_expire();
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT hubspot_events.hubspot_upsert_subscriber('webinar-bad-refresh', 'register', 'acme', '{\"vid\": 1}')");
like($err, qr/ERROR:  HS006: the OAuth token endpoint rejected the refresh: HTTP 400 BAD_REFRESH_TOKEN: missing or unknown refresh token/,
	'direct: a rejected refresh is ERROR HS006 with HubSpot\'s status and message');
like($err, qr/DETAIL:  correlationId: [0-9a-f-]{36}\./, 'direct: with the correlationId');
mock_config(oauth_knobs(oauth_fail => '500'));
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT hubspot_events.hubspot_upsert_subscriber('webinar-bad-refresh', 'register', 'acme', '{\"vid\": 1}')");
like($err, qr/ERROR:  HS007: the OAuth token endpoint failed the refresh: HTTP 500/, 'direct: a failing token endpoint is ERROR HS007');

mock_config(oauth_knobs(oauth_fail => 'invalid_grant'));
my $log_offset = -s $node->logfile;
enqueue('webinar-held', '[{"vid": 11}, {"vid": 12}]');
ok(wait_until(sub { (q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status")) =~ /the OAuth token endpoint rejected the refresh: HTTP 400 invalid_grant: refresh token is invalid/ }),
	'worker: a rejected refresh holds the queue, the reason in status');
is(q1("SELECT string_agg(format('%s:%s', status, attempts), ',') FROM hubspot_events.outbox WHERE external_event_id = 'webinar-held'"),
	'pending:0,pending:0', 'worker: the rows stay pending, no attempt counted');
is(q1("SELECT worker_state FROM hubspot_events.status"), 'held', 'worker: held');
ok($node->log_contains(qr/holding the queue: the OAuth token endpoint rejected the refresh/, $log_offset), 'worker: one clear log line');
mock_config(oauth_knobs());
$node->reload;
ok(wait_until(sub { sent_count('webinar-held') eq '2' }), 'worker: a reload releases the hold once the endpoint grants again');

# ---- concurrent callers share a failed refresh too: one token request, one ERROR for all ----
mock_config(oauth_knobs(oauth_fail => 'bad_refresh_token', oauth_delay_ms => 700));
mock_oauth_expire();
$s0 = mock_stats();
@calls = ();
for my $i (1 .. 4)
{
	my %c = (out => '', err => '');
	$c{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'), '-c',
		  "SELECT hubspot_events.hubspot_upsert_subscriber('webinar-shared-failure-$i', 'register', 'acme', '{\"vid\": $i}')" ],
		'>', \$c{out}, '2>', \$c{err});
	push @calls, \%c;
}
$_->{h}->finish for @calls;
is(scalar(grep { $_->{err} =~ /ERROR:  HS006: the OAuth token endpoint rejected the refresh: HTTP 400 BAD_REFRESH_TOKEN/ } @calls), 4,
	'four concurrent backends: all raise the rejected refresh')
  or diag(join("\n", map { $_->{err} } @calls));
$s1 = mock_stats();
is(delta($s0, $s1, 'token_requests'), 1, 'one token request: the waiting backends took the refresher\'s outcome');

# ---- a refresher cancelled or terminated mid-request leaves nobody waiting for it ----
mock_config(oauth_knobs(oauth_delay_ms => 3000));
($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '500ms';\nSELECT hubspot_events.hubspot_upsert_subscriber('webinar-cancelled', 'register', 'acme', '{\"vid\": 1}')");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout cancels a slow refresh');
my %t = (out => '', err => '');
$t{h} = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  "SELECT hubspot_events.hubspot_upsert_subscriber('webinar-terminated', 'register', 'acme', '{\"vid\": 1}')" ],
	'>', \$t{out}, '2>', \$t{err});
my $victim = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%webinar-terminated%' AND pid <> pg_backend_pid()";
ok(wait_until(sub { q1($victim) ne '' }), 'a backend is refreshing');
usleep(500_000);
q1("SELECT pg_terminate_backend(($victim))");
$t{h}->finish;
like($t{err}, qr/terminating connection due to administrator command/, 'and is terminated mid-refresh');
mock_config(oauth_knobs());
my $t0 = time;
is(direct('webinar-after-cancel'), '204', 'the next call refreshes');
cmp_ok(time - $t0, '<', 5, 'at once: neither the cancelled nor the terminated refresher left a claim behind');

# ---- settings that cannot work ----
q1("ALTER SYSTEM SET hubspot_events.oauth_client_secret_file = ''");
$log_offset = -s $node->logfile;
$loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker reloaded');
ok(wait_until(sub { q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status") =~ /the OAuth settings cannot work: hubspot_events.oauth_client_id is set but hubspot_events.oauth_client_secret_file is not/ }),
	'a client id without a secret file: the queue is held and status says why');
$s0 = mock_stats();
enqueue('webinar-incomplete', '{"vid": 13}');
sleep 1;
is(q1("SELECT format('%s:%s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-incomplete'"),
	'pending:0', 'the row waits, no attempt counted');
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT hubspot_events.hubspot_upsert_subscriber('webinar-incomplete', 'register', 'acme', '{\"vid\": 1}')");
like($err, qr/ERROR:  55000: the OAuth settings cannot work: hubspot_events.oauth_client_id is set but hubspot_events.oauth_client_secret_file is not/,
	'the direct function raises it, SQLSTATE 55000');
$s1 = mock_stats();
is(delta($s0, $s1, 'token_requests') + delta($s0, $s1, 'requests'), 0, 'nothing reached the mock');
my $lines = () = slurp_file($node->logfile, $log_offset) =~ /holding the queue/g;
is($lines, 1, 'one log line, not one per loop');

# a secret file without a client id is refused as well (the static token is not used silently)
q1("ALTER SYSTEM SET hubspot_events.oauth_client_secret_file = '$dir/client_secret'");
q1("ALTER SYSTEM SET hubspot_events.oauth_client_id = ''");
$node->reload;
ok(wait_until(sub { q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status") =~ /oauth_client_secret_file is set but hubspot_events.oauth_client_id is not/ }),
	'a secret file without a client id: held, with its own reason');
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT hubspot_events.hubspot_upsert_subscriber('webinar-incomplete', 'register', 'acme', '{\"vid\": 1}')");
like($err, qr/ERROR:  55000: the OAuth settings cannot work: hubspot_events.oauth_client_secret_file is set but hubspot_events.oauth_client_id is not/,
	'and the direct function raises it');
$lines = () = slurp_file($node->logfile, $log_offset) =~ /holding the queue/g;
is($lines, 2, 'a new reason, one more log line');

q1("ALTER SYSTEM RESET hubspot_events.oauth_client_id");
$node->reload;
ok(wait_until(sub { sent_count('webinar-incomplete') eq '1' }), 'complete settings again: the row is sent');
is(q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status"), '', 'no longer held');

ok(!$node->log_contains(qr/\Q$secret\E|\Q$refresh\E|oat-mock-|rt-mock-/), 'no secret or token in the server log');
$node->stop;

# ---- without preload: each backend refreshes and caches its own ----
mock_reset();
mock_config(oauth_knobs(oauth_expires_in => 3));
my $plain = hs_node('oauth_nopreload', preload => 0, conf => [@oauth_conf]);
my $three = join("\n", map {
	"SELECT hubspot_events.hubspot_upsert_subscriber('webinar-plain-$_', 'register', 'acme', '{\"vid\": $_}')->>'http_status';"
} 1 .. 3);
is($plain->safe_psql('postgres', $three), "204\n204\n204", 'one backend, three calls');
is(mock_stats()->{token_requests}, 1, 'one token request: the backend cached its token');
is($plain->safe_psql('postgres', $three), "204\n204\n204", 'another backend, three calls');
is(mock_stats()->{token_requests}, 2, 'one more token request: each backend has its own token');
is($plain->safe_psql('postgres', "SELECT hubspot_events.hubspot_upsert_subscriber('webinar-plain-a', 'register', 'acme', '{\"vid\": 1}')->>'http_status';
SELECT pg_sleep(3);
SELECT hubspot_events.hubspot_upsert_subscriber('webinar-plain-b', 'register', 'acme', '{\"vid\": 1}')->>'http_status';"),
	"204\n\n204", 'a backend outliving its 3-second token');
is(mock_stats()->{token_requests}, 4, 'refreshed its own token: two more token requests');
is(mock_stats()->{expired_401}, 0, 'and never sent an expired one');
ok(!$plain->log_contains(qr/\Q$secret\E|\Q$refresh\E|oat-mock-|rt-mock-/), 'no secret or token in the server log');
$plain->stop;

done_testing();
