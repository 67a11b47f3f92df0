# hubspot_events.api_version: every kind of request, made by the direct
# functions and by the worker, in each of HubSpot's path forms; the mock
# checks each one against the spec of its version (HubSpot's 2026-09 spec
# for date versions, the v3 spec for the legacy paths).  An installation
# updated from 0.5.0 moves to 2026-09 by itself.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

# the seven calls, by the operation id's tail in HubSpot's specs
my %operation = (
	'upsert'            => '/events/{externalEventId}/{subscriberState}/upsert_upsertByContactId',
	'email-upsert'      => '/events/{externalEventId}/{subscriberState}/email-upsert_upsertByContactEmail',
	'create'            => '/attendance/{externalEventId}/{subscriberState}/create_recordByContactIds',
	'email-create'      => '/attendance/{externalEventId}/{subscriberState}/email-create_recordByContactEmails',
	'event upsert'      => '/events/upsert_upsert',
	'event cancel'      => '/events/{externalEventId}/cancel_cancel',
	'event complete'    => '/events/{externalEventId}/complete_complete');
my %prefix = (
	'2026-09' => '/marketing/marketing-events/2026-09',
	'2026-03' => '/marketing/marketing-events/2026-03',
	'2027-03' => '/marketing/marketing-events/2027-03',
	'v3'      => '/marketing/v3/marketing-events');

mock_reset();
my $node = hs_node('api_version', no_extension => 1, conf => ["hubspot_events.poll_interval_ms = 200"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
# the mock's knobs, set again after each reset (a reset clears them)
my $knobs = {};
sub reset_mock { mock_reset(); mock_config($knobs); }
sub done_of { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id LIKE '$_[0]%' AND status IN ('sent', 'failed')") }

# Check that the requests are exactly one of each call named, in the path
# form of $version, each valid against the spec of that form and answered 2xx.
sub check_requests
{
	my ($what, $version, $reqs, @calls) = @_;
	my $spec = $version eq 'v3' ? 'v3' : '2026-09';
	my @bad = grep { index($_->{raw_path}, "$prefix{$version}/") != 0 } @$reqs;
	is_deeply([ map { $_->{raw_path} } @bad ], [], "$what: every path starts with $prefix{$version}/");
	is_deeply([ sort map { $_->{operation} // 'none' } @$reqs ],
		[ sort map { "post-$prefix{$spec}$operation{$_}" } @calls ],
		"$what: one request of each kind (" . join(', ', @calls) . "), routed by the $spec spec");
	is_deeply([ map { $_->{spec_errors} } @$reqs ], [ map { [] } @$reqs ],
		"$what: every request is valid against the $spec spec");
	is_deeply([ grep { $_ ne "$version/$spec" } map { ($_->{api_version} // '?') . '/' . ($_->{spec} // '?') } @$reqs ],
		[], "$what: the mock read version $version and checked it with the $spec spec");
	is_deeply([ grep { $_ !~ /^20[04]$/ } map { $_->{status} } @$reqs ], [], "$what: HubSpot answered 2xx to all");
}

# Set the server's api_version and endpoint, reload, and wait until the worker has them.
sub worker_settings
{
	my ($version, $endpoint) = @_;
	my $before = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
	q1(defined $version ? "ALTER SYSTEM SET hubspot_events.api_version = '$version'"
		: "ALTER SYSTEM RESET hubspot_events.api_version");
	q1("ALTER SYSTEM SET hubspot_events.endpoint = '$endpoint'");
	q1("SELECT pg_reload_conf()");
	ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $before }),
		"the worker reloaded (api_version " . ($version // 'default') . ", endpoint $endpoint)");
}

# Every call through the outbox: contacts by vid and by email, the event's
# upsert, cancel and complete (each its own event); then, with the worker on
# the attendance endpoints, by vid and by email again.
sub worker_every_call
{
	my ($tag, $version) = @_;
	reset_mock();
	q1(qq{SELECT hubspot_events.pause();
		SELECT hubspot_events.hubspot_enqueue_subscriber('$tag-s', 'register', 'acme', '[{"vid": 1}, {"email": "a\@example.com"}]');
		SELECT hubspot_events.hubspot_enqueue_event('$tag-e', 'acme', '{"eventName": "Webinar", "eventOrganizer": "Acme"}');
		SELECT hubspot_events.hubspot_enqueue_cancel_event('$tag-c', 'acme');
		SELECT hubspot_events.hubspot_enqueue_complete_event('$tag-m', 'acme', '2026-12-01 17:00+00', '2026-12-01 18:00+00');
		SELECT hubspot_events.resume();});
	ok(wait_until(sub { done_of($tag) eq '5' }), "$tag: the five rows are done");
	my $reqs = mock_requests();
	reset_mock();
	worker_settings($version, 'attendance');
	q1(qq{SELECT hubspot_events.hubspot_enqueue_subscriber('$tag-a', 'attend', 'acme', '[{"vid": 1}, {"email": "a\@example.com"}]')});
	ok(wait_until(sub { done_of("$tag-a") eq '2' }), "$tag: the two attendance rows are done");
	check_requests("worker, $tag", $version // '2026-09', mock_requests(), 'create', 'email-create');
	is(q1("SELECT string_agg(DISTINCT status, ',') FROM hubspot_events.outbox WHERE external_event_id LIKE '$tag-%'"),
		'sent', "$tag: every row sent");
	worker_settings($version, 'upsert');
	return $reqs;
}

# Every call from a session, by the direct functions.
sub direct_every_call
{
	my ($tag, $set) = @_;
	reset_mock();
	my $statuses = q1(qq{$set
		SET hubspot_events.endpoint = 'upsert';
		SELECT hubspot_events.hubspot_upsert_subscriber('$tag', 'register', 'acme', '[{"vid": 1}, {"email": "a\@example.com"}]')->>'http_status';
		SELECT hubspot_events.hubspot_upsert_event('$tag', 'acme', '{"eventName": "Webinar", "eventOrganizer": "Acme"}')->>'http_status';
		SELECT hubspot_events.hubspot_cancel_event('$tag', 'acme')->>'http_status';
		SELECT hubspot_events.hubspot_complete_event('$tag', 'acme', '2026-12-01 17:00+00', '2026-12-01 18:00+00')->>'http_status';
		SET hubspot_events.endpoint = 'attendance';
		SELECT hubspot_events.hubspot_upsert_subscriber('$tag', 'attend', 'acme', '[{"vid": 1}, {"email": "a\@example.com"}]')->>'http_status';});
	is(join(',', split /\n/, $statuses), '204,204,204,204,200', "$tag: every direct call succeeded");
	return mock_requests();
}

my @all = sort keys %operation;

# ---- an installation of 0.5.0 under this library: the default, 2026-09 ----
q1("CREATE EXTENSION hubspot_events VERSION '0.5.0'");
mock_reset();
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('old-schema', 'register', 'acme', '{"vid": 7}')});
ok(wait_until(sub { done_of('old-schema') eq '1' }), 'a 0.5.0 schema: the row is done');
my $reqs = mock_requests();
is(q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'old-schema'"), 'sent', 'a 0.5.0 schema: sent');
is_deeply([ map { $_->{raw_path} } @$reqs ], ['/marketing/marketing-events/2026-09/events/old-schema/register/upsert'],
	'a 0.5.0 schema: sent on the 2026-09 path');
# a monitoring role with 0.5.0's documented operator GRANTs
q1(q{CREATE ROLE mon LOGIN;
	GRANT USAGE ON SCHEMA hubspot_events TO mon;
	GRANT SELECT ON hubspot_events.status TO mon;
	GRANT EXECUTE ON FUNCTION hubspot_events.worker_info() TO mon;});
q1("ALTER EXTENSION hubspot_events UPDATE TO '0.6.0'");
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'hubspot_events'"), '0.6.0', 'updated to 0.6.0 (the rest of this test runs the 0.7.0 library on it)');
is(q1("SELECT api_version FROM hubspot_events.status"), '2026-09', 'status: the worker speaks 2026-09');
is($node->safe_psql('postgres', 'SELECT api_version, pending FROM hubspot_events.status', extra_params => ['-U', 'mon']),
	'2026-09|0', 'the monitoring role still reads status after the update');

# ---- the default: 2026-09, both from a session and from the worker ----
check_requests('direct, default', '2026-09', direct_every_call('direct-default', ''), @all);
$reqs = worker_every_call('w-default', undef);
check_requests('worker, default', '2026-09', $reqs, 'upsert', 'email-upsert', 'event upsert', 'event cancel', 'event complete');

# ---- v3: the legacy paths ----
check_requests('direct, v3', 'v3', direct_every_call('direct-v3', "SET hubspot_events.api_version = 'v3';"), @all);
worker_settings('v3', 'upsert');
is(q1("SELECT api_version FROM hubspot_events.status"), 'v3', 'status: the worker speaks v3');
$reqs = worker_every_call('w-v3', 'v3');
check_requests('worker, v3', 'v3', $reqs, 'upsert', 'email-upsert', 'event upsert', 'event cancel', 'event complete');

# ---- HubSpot's next version, without a new release ----
$knobs = { api_versions => '2026-09,2027-03' };
check_requests('direct, 2027-03', '2027-03', direct_every_call('direct-2027', "SET hubspot_events.api_version = '2027-03';"), @all);
worker_settings('2027-03', 'upsert');
is(q1("SELECT api_version FROM hubspot_events.status"), '2027-03', 'status: the worker speaks 2027-03');
$reqs = worker_every_call('w-2027', '2027-03');
$knobs = {};
reset_mock();
check_requests('worker, 2027-03', '2027-03', $reqs, 'upsert', 'email-upsert', 'event upsert', 'event cancel', 'event complete');

# ---- a bad value in the server's configuration: refused, the worker keeps its version ----
# (postgresql.auto.conf's value would hide postgresql.conf's: reset it first)
q1("ALTER SYSTEM RESET hubspot_events.api_version");
my $before = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->append_conf('postgresql.conf', "hubspot_events.api_version = 'v4'\n");
q1("SELECT pg_reload_conf()");
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $before }), 'reloaded with a bad value');
is(q1("SELECT api_version FROM hubspot_events.status"), '2027-03', 'the worker keeps the version it had');
like(slurp_file($node->logfile), qr/invalid value for parameter "hubspot_events\.api_version": "v4"/,
	"the server's log names the refused value");

# ---- back to the default ----
$node->adjust_conf('postgresql.conf', 'hubspot_events.api_version', undef);
worker_settings(undef, 'upsert');
is(q1("SELECT api_version FROM hubspot_events.status"), '2026-09', 'status: back to 2026-09');

$node->stop;
done_testing();
