# OAuth connections through the worker (issue 15): each installed account's
# access token refreshed by the worker with its sealed refresh token, its
# rows sent to its own hub; an uninstall (refresh answered invalid_grant)
# makes that connection "disconnected" while the others drain; connecting
# again resumes it with nothing lost; a session's direct call through an
# OAuth connection takes the token the worker shares.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $secret = $ENV{HS_OAUTH_SECRET} or die "HS_OAUTH_SECRET is not set: run through test/run.sh";
delete @ENV{qw(HS_OAUTH_SECRET HS_OAUTH_REFRESH)};
my $client = 'hs-test-client-0024';
my $mock = $ENV{HS_MOCK_URL};
my $redirect = 'https://platform.example/cb';

my $dir = PostgreSQL::Test::Utils::tempdir();
append_to_file("$dir/client_secret", "$secret\n");
open(my $rnd, '<:raw', '/dev/urandom') or die "/dev/urandom: $!";
read($rnd, my $key_bytes, 32) == 32 or die "short read from /dev/urandom";
close($rnd);
append_to_file("$dir/secret.key", unpack('H*', $key_bytes) . "\n");
chmod 0600, "$dir/client_secret", "$dir/secret.key";

mock_reset();
mock_control('/__mock/hubs/clear');
mock_config({ oauth_client_id => $client, oauth_client_secret => $secret });
mock_control('/__mock/hubs', { hubs => [
	map { { hub_id => $_, tokens => [], rate_limit => 100, rate_window_ms => 10000 } } 201, 202, 203 ] });

# the app's settings for the installs only: the default keeps its static token
my $node = hs_node('oauth_connections', conf => [
	"hubspot_events.oauth_client_id = '$client'",
	"hubspot_events.oauth_client_secret_file = '$dir/client_secret'",
	"hubspot_events.oauth_token_url = '$mock/oauth/v1/token'",
	"hubspot_events.secret_key_file = '$dir/secret.key'",
	"hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }

my $run = sprintf('%08x', int(rand(2**32)));
my $ncodes = 0;
sub mint
{
	my ($hub) = @_;
	my $code = "code24-$run-" . ++$ncodes;
	mock_control('/__mock/oauth/codes', { code => $code, hub_id => $hub, redirect_uri => $redirect });
	return $code;
}
sub connect_tenant { q1("SELECT format('%s %s %s', name, hub_id, state) FROM hubspot_events.connect_oauth('$_[0]', '" . mint($_[1]) . "', '$redirect')") }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[1]', 'register', 'acct-$_[0]', '[{\"vid\": $_[2]}]', '$_[0]')") }
sub status_of { q1("SELECT string_agg(status, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'") }
sub hubs_of
{
	my ($event) = @_;
	return join(',', map { $_->{hub_id} // 'none' } grep { ($_->{path}{externalEventId} // '') eq $event } @{ mock_requests() });
}

is(connect_tenant('t1', 201), 't1 201 active', 'tenant t1 installed (hub 201)');
is(connect_tenant('t2', 202), 't2 202 active', 'tenant t2 installed (hub 202)');
is(q1("SELECT state FROM hubspot_events.connections WHERE name = 'default'"), 'active',
	'the default is not held by the app\'s settings without a refresh token file');

# ---- the worker refreshes each connection's token and sends to its own hub ----
enqueue('t1', 'o-1', 1);
enqueue('t2', 'o-1', 2);
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('o-1', 'register', 'acct-d', '[{\"vid\": 3}]')");
ok(wait_until(sub { status_of('o-1') eq 'sent,sent,sent' }), 'the rows of t1, t2 and the default are sent');
is(join(',', sort split /,/, hubs_of('o-1')), '201,202,none', 'to hub 201, hub 202, and the default\'s token');
my @grants = grep { ($_->{grant_type} // '') eq 'refresh_token' } @{ mock_oauth_requests() };
is(scalar(grep { ($_->{hub_id} // 0) == 201 } @grants), 1, 'one refresh for t1');
is(scalar(grep { ($_->{hub_id} // 0) == 202 } @grants), 1, 'one refresh for t2');

# a second round reuses the shared tokens: no refresh
enqueue('t1', 'o-2', 4);
ok(wait_until(sub { status_of('o-2') eq 'sent' }), 'a second row of t1 is sent');
is(scalar(grep { ($_->{grant_type} // '') eq 'refresh_token' } @{ mock_oauth_requests() }), 2,
	'with the token the worker already had (no third refresh)');

# ---- a session's direct call through an OAuth connection ----
like(q1("SELECT hubspot_events.hubspot_upsert_subscriber('o-direct', 'attend', 'acct-t2', '{\"vid\": 5}', connection => 't2')->>'http_status'"),
	qr/^20\d$/, 'a direct call through t2 is answered 2xx');
is(hubs_of('o-direct'), '202', 'with t2\'s token, at hub 202');

# ---- an uninstall disconnects t1 only ----
mock_control('/__mock/hubs/uninstall', { hub_id => 201 });
q1("SELECT pg_catalog.pg_sleep(0)");
# its token is revoked too: the next request is a 401, then the refresh says invalid_grant
enqueue('t1', 'o-3', 6);
enqueue('t2', 'o-3', 7);
ok(wait_until(sub { q1("SELECT state FROM hubspot_events.connections WHERE name = 't1'") eq 'disconnected' }, 60),
	'an uninstall (refresh answered invalid_grant) makes t1 disconnected');
like(q1("SELECT held_reason FROM hubspot_events.connections WHERE name = 't1'"), qr/invalid_grant|refresh/i, 'with the reason');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'o-3' AND connection = 't2'") eq 'sent' }),
	't2 drains meanwhile');
is(q1("SELECT format('%s %s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'o-3' AND connection = 't1'"),
	'pending 0', "t1's row waits, no attempt counted");
is(q1("SELECT code FROM hubspot_events.waiting WHERE external_event_id = 'o-3'"), 'disconnected', 'waiting says disconnected');
is(q1("SELECT disconnected_connections FROM hubspot_events.status"), '1', 'status counts it');
my $refreshes = scalar(grep { ($_->{grant_type} // '') eq 'refresh_token' } @{ mock_oauth_requests() });
sleep 2;
is(scalar(grep { ($_->{grant_type} // '') eq 'refresh_token' } @{ mock_oauth_requests() }), $refreshes,
	'nothing is retried against HubSpot while it is disconnected');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT hubspot_events.hubspot_upsert_subscriber('o-direct', 'attend', 'acct-t1', '{\"vid\": 8}', connection => 't1')");
like($err, qr/disconnected/, 'a direct call through t1 says it is disconnected');

# ---- reinstalled: connect_oauth again resumes it, nothing lost ----
is(connect_tenant('t1', 201), 't1 201 active', 'connect_oauth again makes t1 active');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'o-3' AND connection = 't1'") eq 'sent' }),
	"t1's waiting row is sent after the reconnect");
is(q1("SELECT attempts FROM hubspot_events.outbox WHERE external_event_id = 'o-3' AND connection = 't1'"), '1',
	'on its first counted attempt');
is(scalar(grep { ($_->{path}{externalEventId} // '') eq 'o-3' && ($_->{hub_id} // 0) == 201 && ($_->{status} // 0) =~ /^2/ } @{ mock_requests() }),
	1, 'accepted once, at hub 201');

# ---- a rotated refresh token is stored (sealed) ----
my $before = q1("SELECT encode(refresh_token, 'hex') FROM hubspot_events.connection_secrets WHERE connection = 't2'");
mock_config({ oauth_client_id => $client, oauth_client_secret => $secret, oauth_rotate => 1, oauth_expires_in => 1 });
mock_oauth_expire();
enqueue('t2', 'o-4', 9);
ok(wait_until(sub { status_of('o-4') eq 'sent' }, 60), 't2 is sent with a refreshed token');
isnt(q1("SELECT encode(refresh_token, 'hex') FROM hubspot_events.connection_secrets WHERE connection = 't2'"), $before,
	'the rotated refresh token replaced the sealed one');
enqueue('t2', 'o-5', 10);
ok(wait_until(sub { status_of('o-5') eq 'sent' }, 60), 'and works for the next refresh');

mock_config({});
mock_control('/__mock/hubs/clear');
$node->stop;
done_testing();
