# The outbox is WAL-logged: it reaches a streaming standby, whose worker
# stays idle (no errors, no writes) until promotion, then drains the
# replicated outbox with nothing lost.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $primary = hs_node('primary', init => { allows_streaming => 1 },
	conf => ["hubspot_events.poll_interval_ms = 100", "hubspot_events.max_concurrency = 1", "hubspot_events.batch_size = 50"]);
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# the standby's worker is idle, says so once, and shows it in status
ok($standby->wait_for_log(qr/the server is a standby; the worker stays idle until promotion/), 'the standby worker logs that it stays idle');
is($standby->safe_psql('postgres', "SELECT worker_state FROM hubspot_events.status"), 'standby', 'status on the standby: standby');

# enqueue on the primary; stop it in the middle of the drain
mock_config({ delay_ms => 300 });
$primary->safe_psql('postgres', q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-failover', 'register', 'acme',
	(SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 2000) v))});
ok(wait_until(sub { $primary->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") >= 50 }),
	'the primary is draining');
$primary->wait_for_catchup($standby);
$primary->stop('immediate');
my $sent_by_primary = scalar(mock_vids('webinar-failover'));
cmp_ok($sent_by_primary, '<', 2000, "the primary stopped mid-drain ($sent_by_primary of 2000 sent)");

is($standby->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-failover'"),
	'2000', 'the outbox reached the standby');
my $log_before = slurp_file($standby->logfile);
my ($wpid) = $log_before =~ /\[(\d+)\] LOG:  hubspot_events worker started/;
ok($wpid, "the standby's worker pid is in the log");
unlike($log_before, qr/\[$wpid\] (ERROR|FATAL|PANIC)/, "the standby's worker logged no error before promotion");
unlike($log_before, qr/(ERROR|FATAL).*hubspot_events|cannot execute .* in a read-only transaction/, 'nor did anything about hubspot_events');

# promote: the standby's worker drains the replicated outbox by itself
mock_config({});
$standby->promote;
ok($standby->wait_for_log(qr/the server was promoted; resuming the outbox/), 'the worker resumes after promotion');
ok(wait_until(sub { $standby->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent' AND external_event_id = 'webinar-failover'") eq '2000' }, 60),
	'every row ends sent on the promoted standby');
my %seen = map { $_ => 1 } mock_vids('webinar-failover');
is(scalar(grep { !$seen{$_} } 1 .. 2000), 0, 'every contact reached the mock; none lost');

$standby->stop;
done_testing();
