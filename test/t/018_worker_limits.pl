# The worker's own bounds (issue 11): it services interrupts while HubSpot
# hangs, stores a bounded excerpt of a huge error answer, and keeps each
# request's body under its byte budget.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

mock_reset();
my $node = hs_node('limits', conf => [
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.request_timeout_ms = 20000",
	"hubspot_events.retry_base_ms = 50",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 2"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub requests_for { my ($e) = @_; grep { ($_->{path}{externalEventId} // '') eq $e } @{ mock_requests() } }

# ---- interrupts while HubSpot hangs: DROP DATABASE does not wait for the send ----
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:hang=1', 'register', 'acme', '[{"vid": 1}]')});
ok(wait_until(sub { scalar(requests_for('mock:hang=1')) >= 1 }, 30), 'the worker is waiting for a HubSpot that hangs');
q1('CREATE DATABASE hs_drop_me');
my $t0 = time;
q1('DROP DATABASE hs_drop_me');
my $took = time - $t0;
cmp_ok($took, '<', 5, sprintf('DROP DATABASE does not wait for the send phase (%.2f s; the request times out after 20 s)', $took));
# a cancel of the worker ends its turn, not the worker
my $pid = q1('SELECT worker_pid FROM hubspot_events.status');
q1("SELECT pg_cancel_backend($pid)");
ok(wait_until(sub { q1('SELECT worker_pid FROM hubspot_events.status') eq $pid
	  && slurp_file($node->logfile) =~ /canceling statement due to user request/ }, 10),
	'a cancel ends the turn at once, and the worker lives on');
q1(q{DELETE FROM hubspot_events.outbox});

# ---- a huge error answer: a bounded excerpt in the row ----
mock_reset();
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:status=400;body=huge', 'register', 'acme', '[{"vid": 2}]')});
ok(wait_until(sub { q1(q{SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=400;body=huge'}) eq 'failed' }, 30),
	'the row fails');
my ($size, $type) = split /\|/, q1(q{SELECT octet_length(error_body::text), jsonb_typeof(error_body) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=400;body=huge'});
cmp_ok($size, '<=', 70000, "the stored answer is a bounded excerpt ($size bytes of a 2 MB answer)");
is($type, 'string', 'kept as text (cut, it no longer parses)');

# ---- the byte budget: big contacts go in several requests, each under 1 MiB ----
mock_reset();
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('big-contacts', 'register', 'acme',
	(SELECT jsonb_agg(jsonb_build_object('vid', g, 'properties', jsonb_build_object(" .
	join(', ', map { "'p$_', repeat('x', 10000)" } 1 .. 12) . "))) FROM generate_series(1, 12) g))");
ok(wait_until(sub { q1(q{SELECT string_agg(DISTINCT status, ',') FROM hubspot_events.outbox WHERE external_event_id = 'big-contacts'}) eq 'sent' }, 30),
	'12 contacts of 120 KB each are sent');
my @big = requests_for('big-contacts');
cmp_ok(scalar @big, '>=', 2, 'in several requests (' . scalar(@big) . '), not one of 1.4 MB');
my $max = 0;
for my $r (@big) { my $l = $r->{headers}{'content-length'} // 0; $max = $l if $l > $max; }
cmp_ok($max, '<', 1024 * 1024, "each request's body is under 1 MiB (largest: $max bytes)");
my %seen;
$seen{$_}++ for map { $_->{vid} } map { @{ $_->{body}{inputs} || [] } } @big;
is(join(',', map { "$_=$seen{$_}" } sort { $a <=> $b } keys %seen), join(',', map { "$_=1" } 1 .. 12), 'every contact once');

$node->stop;
done_testing();
