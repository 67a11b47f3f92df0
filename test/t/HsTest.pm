# HsTest: what the worker-level TAP tests share.
#
# A cluster with hubspot_events preloaded, pointed at the mock HubSpot that
# test/run.sh started (HS_MOCK_URL, HS_TOKEN_FILE), and helpers to steer the
# mock and read what it received.
package HsTest;

use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(hs_node mock_reset mock_config mock_requests mock_vids wait_until
  mock_stats mock_oauth_expire mock_oauth_requests mock_control decode_json encode_json);

my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;

sub mock_url { $ENV{HS_MOCK_URL} or die "HS_MOCK_URL is not set: run through test/run.sh" }

# A started cluster with the extension created in "postgres" (the database the worker serves).
sub hs_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} || {} });
	my $preload = exists $opt{preload} ? $opt{preload} : 1;
	# a token file of the node's own, so that a test can rotate or break it
	# without changing the token the mock expects
	my $token_file = $node->basedir . '/token';
	PostgreSQL::Test::Utils::append_to_file($token_file, PostgreSQL::Test::Utils::slurp_file($ENV{HS_TOKEN_FILE}));
	chmod 0600, $token_file;
	$node->{hs_token_file} = $token_file;
	$node->append_conf('postgresql.conf', join("\n",
		($preload ? "shared_preload_libraries = 'hubspot_events'" : ()),
		"hubspot_events.api_base_url = '" . mock_url() . "'",
		"hubspot_events.access_token_file = '$token_file'",
		"hubspot_events.database = 'postgres'",
		"log_statement = none",
		@{ $opt{conf} || [] }) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION hubspot_events') unless $opt{no_extension};
	return $node;
}

sub mock_reset
{
	my $r = $http->post(mock_url() . '/__mock/reset');
	die "mock reset failed: $r->{status}" unless $r->{success};
}

sub mock_config
{
	my ($knobs) = @_;
	my $r = $http->post(mock_url() . '/__mock/config',
		{ content => $json->encode($knobs || {}), headers => { 'content-type' => 'application/json' } });
	die "mock config failed: $r->{status} $r->{content}" unless $r->{success};
}

# The mock's counters since the last reset (GET /__mock/stats).
sub mock_stats
{
	my $r = $http->get(mock_url() . '/__mock/stats');
	die "mock stats failed: $r->{status}" unless $r->{success};
	return $json->decode($r->{content});
}

# Expire every OAuth access token the mock issued (HubSpot revoking early).
sub mock_oauth_expire
{
	my $r = $http->post(mock_url() . '/__mock/oauth/expire');
	die "mock oauth expire failed: $r->{status}" unless $r->{success};
}

# The token requests the mock received since the last reset (never the secrets).
sub mock_oauth_requests
{
	my $r = $http->get(mock_url() . '/__mock/oauth/requests');
	die "mock oauth requests failed: $r->{status}" unless $r->{success};
	return $json->decode($r->{content});
}

# POST a JSON body to one of the mock's control endpoints (/__mock/...); its decoded answer.
sub mock_control
{
	my ($path, $body) = @_;
	my $r = $http->post(mock_url() . $path,
		{ content => $json->encode($body || {}), headers => { 'content-type' => 'application/json' } });
	die "mock $path failed: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

# Every request the mock received since the last reset, oldest first.
sub mock_requests
{
	my $r = $http->get(mock_url() . '/__mock/requests');
	die "mock requests failed: $r->{status}" unless $r->{success};
	return $json->decode($r->{content});
}

# The vids of every input the mock received (optionally only for one event id).
sub mock_vids
{
	my ($event) = @_;
	my @vids;
	for my $r (@{ mock_requests() })
	{
		next if defined $event && ($r->{path}{externalEventId} // '') ne $event;
		push @vids, map { $_->{vid} } @{ $r->{body}{inputs} || [] };
	}
	return @vids;
}

# Poll a condition (a sub) until it is true or the timeout (seconds) passes.
sub wait_until
{
	my ($cond, $timeout) = @_;
	$timeout //= 30;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(20_000);
	}
	return $cond->();
}

1;
