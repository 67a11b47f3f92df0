# Answers a hostile or broken endpoint can give: JSON nested too deep and
# numbers beyond numeric's range (kept as text, never an ERROR of our own),
# Retry-After in both its forms capped at a day; and OAuth: the server's
# request timeout bounds a shared refresh whatever a session sets, an
# interrupted refresh is no failure, and secrets echoed by the token
# endpoint are redacted in every form the request carried them.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use IPC::Run;
use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

# the suite's OAuth secrets are not used here: this test has its own
delete @ENV{qw(HS_OAUTH_SECRET HS_OAUTH_REFRESH)};

mock_reset();
my $node = hs_node('answers', conf => [
	"hubspot_events.retry_base_ms = 50",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 3",
	"hubspot_events.poll_interval_ms = 100"]);

sub q1 { $node->safe_psql('postgres', $_[0]) }
# the output, or the error (so that a failing call fails its test, not the script)
sub q_or_err { my ($rc, $out, $err) = $node->psql('postgres', $_[0]); return $rc == 0 ? $out : $err }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', 'register', 'acme', '$_[1]')") }
sub direct_sql { "SELECT hubspot_events.hubspot_upsert_subscriber('$_[0]', 'register', 'acme', '{\"vid\": 1}')" }
sub requests_for { scalar(grep { ($_->{path}{externalEventId} // '') eq $_[0] } @{ mock_requests() }) }
sub row
{
	q1("SELECT format('%s|%s|%s|%s', status, attempts, http_status, jsonb_typeof(error_body)) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'");
}

# ---- the direct function: a 2xx answer jsonb cannot hold is returned as text ----
my $log_offset = -s $node->logfile;
is(q_or_err("SELECT format('%s|%s|%s', r->>'http_status', jsonb_typeof(r->'body'), left(r->>'body', 40)) FROM ("
	. direct_sql('mock:status=200;body=deep') . " AS r) s"),
	'200|string|{"status":"ok","nested":[[[[[[[[[[[[[[[[',
	'direct, 200 with 100000 nested arrays: the body is returned as text, no stack-depth ERROR');
like(q_or_err("SELECT format('%s|%s|%s', r->>'http_status', jsonb_typeof(r->'body'), r->>'body') FROM ("
	. direct_sql('mock:status=200;body=hugenum') . " AS r) s"),
	qr/^200\|string\|\{"status":"ok","value":1e1001\}$/,
	'direct, 200 with a number beyond numeric (1e1001): the body is returned as text, no numeric ERROR');

# ---- the direct function: an error answer of either kind is a clean ERROR with HubSpot's status ----
for my $kind (qw(deep hugenum))
{
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n" . direct_sql("mock:status=400;body=$kind"));
	like($err, qr/ERROR:  22023: hubspot answered HTTP 400[ :]/, "direct, 400 with body=$kind: ERROR 22023 naming HTTP 400");
	unlike($err, qr/stack depth|numeric|internal/i, "direct, 400 with body=$kind: no parser ERROR of our own");
}

# ---- the worker: such answers are recorded on the row, failed or retried ----
enqueue('mock:status=400;body=deep;tag=w', '{"vid": 2}');
ok(wait_until(sub { row('mock:status=400;body=deep;tag=w') =~ /^failed/ }), 'worker, 400 with a deep body: the row fails')
  or diag(row('mock:status=400;body=deep;tag=w'));
is(row('mock:status=400;body=deep;tag=w'), 'failed|1|400|string', 'failed at the first attempt, HTTP 400 recorded, the body stored as text');
like(q1("SELECT format('%s|%s|%s', length(error_body #>> '{}'), error_body #>> '{}', error_message) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=400;body=deep;tag=w'"),
	qr/^2003\|\{"status":"error","message":"Invalid input JSON: contact with vid 2 does not exist".*\[\[\[\.\.\.\|\{"status":"error","message":"Invalid/,
	'error_body is an excerpt of the answer (2000 bytes and "..."), error_message its beginning');
is(requests_for('mock:status=400;body=deep;tag=w'), 1, 'the mock saw one request: the outcome was recorded, not resent');

enqueue('mock:status=503;body=hugenum', '{"vid": 3}');
ok(wait_until(sub { row('mock:status=503;body=hugenum') =~ /^failed/ }, 30), 'worker, 503 with 1e1001: retried, then failed')
  or diag(row('mock:status=503;body=hugenum'));
is(row('mock:status=503;body=hugenum'), 'failed|3|503|string', 'three attempts (max_attempts), HTTP 503 recorded, the body as text');
like(q1("SELECT error_body #>> '{}' FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=503;body=hugenum'"),
	qr/"value":1e1001\}$/, 'the whole answer kept as text');
is(requests_for('mock:status=503;body=hugenum'), 3, 'the mock saw exactly 3 attempts');
ok(!$node->log_contains(qr/stack depth limit|value overflows numeric|invalid input syntax for type numeric|recovering from an error/, $log_offset),
	'no ERROR in the server log: the worker recorded every outcome')
  or diag(slurp_file($node->logfile, $log_offset));

# ---- Retry-After: a date is honoured, and both forms are capped at a day ----
my $http_date = sub { strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time + $_[0])) };
sub rate_limited_within
{
	my ($lo, $hi) = @_;
	return q1("SELECT rate_limited_until BETWEEN now() + interval '$lo' AND now() + interval '$hi' FROM hubspot_events.status");
}
sub retry_after_case
{
	my ($value, $lo, $hi, $what) = @_;
	my $event = "mock:status=429;retry_after=$value";
	q1("DELETE FROM hubspot_events.outbox");
	enqueue($event, '{"vid": 4}');
	ok(wait_until(sub { q1("SELECT rate_limited_until IS NOT NULL FROM hubspot_events.status") eq 't' }),
		"$what: the worker paused");
	is(rate_limited_within($lo, $hi), 't', "$what: paused for between $lo and $hi")
	  or diag(q1("SELECT rate_limited_until - now() FROM hubspot_events.status"));
	is(q1("SELECT format('%s|%s|%s', status, attempts, next_attempt_at BETWEEN now() + interval '$lo' AND now() + interval '$hi') FROM hubspot_events.outbox WHERE external_event_id = '$event'"),
		'pending|0|t', "$what: the row waits as long, no attempt used");
	is(requests_for($event), 1, "$what: one request");
	# the pause lives in the worker: a restart ends it for the next case
	q1("DELETE FROM hubspot_events.outbox");
	$node->restart;
}
retry_after_case($http_date->(60), '40 s', '70 s', 'Retry-After as a date one minute ahead');
retry_after_case('Fri, 31 Dec 9999 23:59:59 GMT', '23 h 58 min', '24 h 1 min', 'Retry-After as a date in the year 9999');
retry_after_case('99999999999999999999', '23 h 58 min', '24 h 1 min', 'Retry-After as seconds past any integer type');
$node->stop;

# ---- OAuth ----
my $client = 'hs-test-client-0012';
my $mock = $ENV{HS_MOCK_URL};
my $rand = sub { join('', map { sprintf('%02x', int(rand(256))) } 1 .. 12) };
# secrets with characters a form body percent-encodes, so that an echo carries them encoded
my $secret = '/+=cs-echo-' . $rand->() . '&%41!' . ('~x/' x 20);
my $refresh = ':rt-echo-' . $rand->() . '/+=?';
my $esc = sub { my $v = shift; $v =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord($1))/ge; $v };
my @forms = ($secret, $refresh, $esc->($secret), $esc->($refresh), lc($esc->($secret)), lc($esc->($refresh)));
# no prefix of a secret either (an excerpt cut in the middle of one)
push @forms, map { substr($_, 0, 14) } @forms;
my $leak = join('|', map { quotemeta } @forms);

my $dir = PostgreSQL::Test::Utils::tempdir();
append_to_file("$dir/client_secret", "$secret\n");
append_to_file("$dir/refresh_token", "$refresh\n");
chmod 0600, "$dir/client_secret", "$dir/refresh_token";
sub oauth_knobs
{
	my %extra = @_;
	return { oauth_client_id => $client, oauth_client_secret => $secret, oauth_refresh_token => $refresh, %extra };
}
mock_reset();
mock_config(oauth_knobs());
my $oauth = hs_node('answers_oauth', conf => [
	"hubspot_events.oauth_client_id = '$client'",
	"hubspot_events.oauth_client_secret_file = '$dir/client_secret'",
	"hubspot_events.oauth_refresh_token_file = '$dir/refresh_token'",
	"hubspot_events.oauth_token_url = '$mock/oauth/v1/token'",
	"hubspot_events.poll_interval_ms = 100"]);
sub o1 { $oauth->safe_psql('postgres', $_[0]) }
# a new mtime on the refresh token file: the shared state starts again, the next caller refreshes
my $mtime = time;
sub force_refresh { $mtime += 2; utime($mtime, $mtime, "$dir/refresh_token") or die "utime: $!" }
sub token_requests { mock_stats()->{token_requests} }
sub start_call
{
	my ($event, %opt) = @_;
	my %c = (out => '', err => '');
	local $ENV{PGOPTIONS} = $opt{pgoptions} if $opt{pgoptions};
	$c{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $oauth->connstr('postgres'), '-c',
		  ($opt{set} // '') . "SELECT hubspot_events.hubspot_upsert_subscriber('$event', 'register', 'acme', '{\"vid\": 1}')->>'http_status'" ],
		'>', \$c{out}, '2>', \$c{err});
	return \%c;
}
sub result { my $c = shift; $c->{h}->finish; return ($c->{out} =~ s/\s+//gr) . ($c->{err} =~ /ERROR|FATAL/ ? " $c->{err}" : '') }

is(o1(direct_sql('webinar-oauth-first') . "->>'http_status'"), '204', 'OAuth works with the special-character secrets');

# (a) a session's request_timeout_ms neither shortens a shared refresh nor lets a waiter take it over
mock_config(oauth_knobs(oauth_delay_ms => 8000));
force_refresh();
my $t0 = token_requests();
my $a = start_call('webinar-timeout-a', set => 'SET hubspot_events.request_timeout_ms = 1000; ');
ok(wait_until(sub { token_requests() > $t0 }), 'a session with request_timeout_ms = 1000 is refreshing (8 s endpoint)');
my $b = start_call('webinar-timeout-b', set => 'SET hubspot_events.request_timeout_ms = 1000; ');
my $c = start_call('webinar-timeout-c', pgoptions => '-c hubspot_events.request_timeout_ms=1000');
is(result($a), '204', 'the refresher: its refresh ran under the server\'s 30 s timeout, not its own 1 s');
is(result($b), '204', 'a waiter with SET request_timeout_ms = 1000 waited for it (no takeover after 6 s)');
is(result($c), '204', 'a waiter with the setting as a connection option too');
is(token_requests() - $t0, 1, 'one token request at the mock for the three sessions');

# (b) the worker terminated during its refresh: no failure recorded, a waiting backend refreshes itself
mock_config(oauth_knobs(oauth_delay_ms => 3000));
force_refresh();
$log_offset = -s $oauth->logfile;
$t0 = token_requests();
o1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-sigterm', 'register', 'acme', '{\"vid\": 21}')");
ok(wait_until(sub { token_requests() > $t0 }), 'the worker is refreshing');
my $waiter = start_call('webinar-sigterm-waiter');
usleep(700_000);
my $worker_pid = o1("SELECT worker_pid FROM hubspot_events.status");
o1("SELECT pg_terminate_backend($worker_pid)");
is(result($waiter), '204', 'the backend that waited for the worker\'s refresh refreshed itself: no error from the interrupted one');
is(token_requests() - $t0, 2, 'two token requests: the abandoned one and the waiter\'s');
ok(wait_until(sub { o1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-sigterm'") eq 'sent' }, 30),
	'the restarted worker sent the row');
ok($oauth->log_contains(qr/FATAL:  terminating during an OAuth token refresh due to administrator command/, $log_offset),
	'the worker ended as a terminated process does');
ok(!$oauth->log_contains(qr/holding the queue|refresh was interrupted|refresh was abandoned/, $log_offset),
	'no hold and no refresh failure logged for the interruption')
  or diag(slurp_file($oauth->logfile, $log_offset));
is(o1("SELECT coalesce(held_reason, '') FROM hubspot_events.status"), '', 'no hold reason');

# (b) a refresher cancelled mid-request: its waiter refreshes itself
mock_config(oauth_knobs(oauth_delay_ms => 3000));
force_refresh();
$t0 = token_requests();
my $cancelled = start_call('webinar-cancel-refresher');
ok(wait_until(sub { token_requests() > $t0 }), 'a backend is refreshing');
$waiter = start_call('webinar-cancel-waiter');
usleep(500_000);
o1("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%webinar-cancel-refresher%' AND pid <> pg_backend_pid()");
like(result($cancelled), qr/canceling statement due to user request/, 'the refresher was cancelled');
is(result($waiter), '204', 'its waiter refreshed itself, without the cancel as its error');
is(token_requests() - $t0, 2, 'two token requests');

# (c) an endpoint that echoes the form body: no form of the secrets reaches an error or the log
for my $echo (qw(json lower text))
{
	mock_config(oauth_knobs(oauth_echo => $echo));
	force_refresh();
	my ($rc, $out, $err) = $oauth->psql('postgres', "\\set VERBOSITY verbose\n" . direct_sql("webinar-echo-$echo"));
	like($err, qr/ERROR:  HS006: the OAuth token endpoint rejected the refresh: HTTP 400.*client_secret=\[secret removed\]/,
		"echo ($echo): the rejection, with the echoed secret removed");
	like($err, qr/refresh_token=\[secret removed\]/, "echo ($echo): the echoed refresh token removed") if $echo ne 'text';
	unlike($err, qr/$leak/, "echo ($echo): no form or prefix of either secret in the ERROR");
}
o1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-echo-worker', 'register', 'acme', '{\"vid\": 22}')");
ok(wait_until(sub { o1("SELECT coalesce(held_reason, '') FROM hubspot_events.status") =~ /secret removed/ }),
	'the worker holds the queue with the redacted reason');
unlike(o1("SELECT held_reason FROM hubspot_events.status"), qr/$leak/, 'no form of either secret in status');
$oauth->stop;
unlike(slurp_file($oauth->logfile), qr/$leak/, 'no form or prefix of either secret anywhere in the server log');

done_testing();
