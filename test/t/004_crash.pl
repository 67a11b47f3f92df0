# Nothing committed is lost: kill -9 of the worker and an immediate server
# shutdown while requests are in flight; SIGTERM and SIGHUP are honoured
# within a second while requests are in flight.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Utils;
use Test::More;

my $node = hs_node('crash', conf => ["restart_after_crash = on", "hubspot_events.poll_interval_ms = 100",
	"hubspot_events.max_concurrency = 2"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub worker_pid { q1("SELECT coalesce(worker_pid, 0) FROM hubspot_events.status") }

# Enqueue n contacts while the mock answers slowly; wait until some are in flight.
sub enqueue_in_flight
{
	my ($event, $from, $n) = @_;
	mock_reset();
	mock_config({ delay_ms => 3000 });
	q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$event', 'register', 'acme',
	     (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series($from, $from + $n - 1) v))");
	ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sending'") > 0
		  && scalar @{ mock_requests() } > 0 }), "$event: requests in flight");
	return [ split /,/, q1("SELECT string_agg(contact_key, ',') FROM hubspot_events.outbox WHERE status = 'sending' AND external_event_id = '$event'") ];
}

sub check_delivery
{
	my ($event, $from, $n, $in_flight) = @_;
	my %in_flight = map { $_ => 1 } @$in_flight;
	my %count;
	$count{$_}++ for mock_vids($event);
	my @missing = grep { !$count{$_} } $from .. $from + $n - 1;
	is(scalar @missing, 0, "$event: every contact reached the mock at least once") or diag("missing: @missing");
	my @dups = grep { $count{$_} > 1 } keys %count;
	my @bad_dups = grep { !$in_flight{$_} } @dups;
	is(scalar @bad_dups, 0, "$event: duplicates only from the batch in flight (" . scalar(@dups) . " resent)")
	  or diag("unexpected duplicates: @bad_dups");
	is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$event' AND status <> 'sent'"), '0',
		"$event: every row ends sent");
}

for my $round (1 .. 2)
{
	# ---- kill -9 of the worker mid-batch ----
	my $event = "webinar-kill9-$round";
	my $in_flight = enqueue_in_flight($event, 1, 400);
	my $pid = worker_pid();
	kill 'KILL', $pid;
	mock_config({});
	# the postmaster restarts after the crash, and the worker with it
	ok(wait_until(sub { my $p = eval { worker_pid() }; defined $p && $p != 0 && $p != $pid }, 60), "round $round: a new worker after kill -9");
	ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$event' AND status = 'sent'") eq '400' }, 60),
		"round $round: all rows sent after the crash");
	check_delivery($event, 1, 400, $in_flight);

	# ---- immediate shutdown of the server mid-batch ----
	$event = "webinar-immediate-$round";
	$in_flight = enqueue_in_flight($event, 1000, 400);
	$node->stop('immediate');
	mock_config({});
	$node->start;
	ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$event' AND status = 'sent'") eq '400' }, 60),
		"round $round: all rows sent after an immediate shutdown");
	check_delivery($event, 1000, 400, $in_flight);
}

# ---- SIGHUP and SIGTERM while a request hangs ----
mock_reset();
mock_config({ hang => 1 });
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-hang', 'register', 'acme', '{\"vid\": 1}')");
ok(wait_until(sub { scalar @{ mock_requests() } > 0 }), 'a request hangs at the mock');
my $loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
my $t0 = time;
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }, 5), 'SIGHUP is honoured while the request hangs');
my $dt = time - $t0;
cmp_ok($dt, '<', 1.5, "settings reloaded within a second (${dt}s, psql included)");

my $pid = worker_pid();
$t0 = time;
q1("SELECT pg_terminate_backend($pid)");
ok(wait_until(sub { q1("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0' }, 5), 'SIGTERM stops the worker');
$dt = time - $t0;
cmp_ok($dt, '<', 1.5, "within a second while the request hangs (${dt}s, psql included)");
mock_config({});
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-hang'") eq 'sent' }, 30),
	'the restarted worker sends the row that was in flight');

$node->stop;
done_testing();
