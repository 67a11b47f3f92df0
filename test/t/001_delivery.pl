# The worker delivers what was committed, exactly as committed: contents,
# coalescing, per-contact order, wake-up at commit, nothing from rollbacks.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use Time::HiRes qw(time);
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('delivery', conf => ["hubspot_events.poll_interval_ms = 60000"]);

# the worker is visible with its backend_type, serving "postgres"
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker' AND datname = 'postgres'") eq '1' }),
	'worker visible in pg_stat_activity with backend_type "hubspot_events worker"');

# ---- one enqueue, delivered exactly ----
my $ids = $node->safe_psql('postgres', q{
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-d1', 'ATTENDED', 'acme',
	  '[{"vid": 11, "interactionDateTime": 1767225600000, "properties": {"source": "zoom"}}, {"vid": "12"}]')});
is($ids, '{1,2}', 'enqueue returns the new outbox ids');
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") eq '2' }),
	'both rows sent');
my $reqs = mock_requests();
is(scalar @$reqs, 1, 'one request for two contacts of one (event, state, account)');
my $r = $reqs->[0];
is($r->{raw_path}, '/marketing/marketing-events/2026-09/events/webinar-d1/attend/upsert', 'path');
is_deeply($r->{query}, { externalAccountId => 'acme' }, 'query');
is_deeply($r->{spec_errors}, [], 'the request matches the OpenAPI spec');
is($r->{headers}{authorization}, 'Bearer <token>', 'bearer token');
is_deeply($r->{body}{inputs}[0], { vid => 11, interactionDateTime => 1767225600000, properties => { source => 'zoom' } },
	'first contact as normalised');
is($r->{body}{inputs}[1]{vid}, 12, 'vid given as a string is sent as a number');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT correlation_id::text, ',') FROM hubspot_events.outbox WHERE id IN (1, 2)"),
	$r->{correlation_id}, "rows store the mock's correlation id");
is($node->safe_psql('postgres',
	"SELECT string_agg(format('%s:%s:%s:%s', status, attempts, http_status, sent_at IS NOT NULL), ',' ORDER BY id) FROM hubspot_events.outbox"),
	'sent:1:204:t,sent:1:204:t', 'status, attempts, http_status, sent_at');

# ---- woken at commit, not by polling (poll_interval_ms is 60 s here) ----
my $t0 = time;
$node->safe_psql('postgres', q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-d2', 'register', 'acme', '{"vid": 21}')});
ok(wait_until(sub { scalar(grep { $_ == 21 } mock_vids('webinar-d2')) == 1 }, 10), 'delivered after commit');
my $latency = time - $t0;
cmp_ok($latency, '<', 2, "delivered within 2 s of commit with a 60 s poll interval (took ${latency}s)");

# ---- nothing rolled back is sent; nothing is sent before commit ----
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-rollback', 'register', 'acme', '{"vid": 31}');
	ROLLBACK;});
my $bg = $node->background_psql('postgres');
$bg->query_safe(q{BEGIN});
$bg->query_safe(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-open', 'register', 'acme', '{"vid": 32}')});
$node->safe_psql('postgres', 'SELECT hubspot_events.wake()');
sleep 1;
is(scalar(mock_vids('webinar-open')), 0, 'nothing is sent while the enqueuing transaction is open');
$bg->query_safe(q{COMMIT});
ok(wait_until(sub { scalar(mock_vids('webinar-open')) == 1 }), 'sent once committed');
$bg->quit;
is(scalar(mock_vids('webinar-rollback')), 0, 'a rolled-back enqueue is never sent');
is($node->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-rollback'"),
	'0', 'and leaves no row');

# ---- coalescing: N rows -> ceil(N / batch_size) requests per (event, state, account) ----
mock_reset();
$node->safe_psql('postgres', q{
	SELECT hubspot_events.pause();
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-c1', 'register', 'acme',
	  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1000, 1249) v));
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-c2', 'register', 'acme',
	  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(2000, 2029) v));
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-c1', 'attend', 'acme',
	  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(3000, 3004) v));});
is($node->safe_psql('postgres', q{SELECT hubspot_events.resume(); SELECT hubspot_events.flush('30 s')}), "\nt", 'flush drains');
$reqs = mock_requests();
my %by;
for my $q (@$reqs) { push @{ $by{"$q->{path}{externalEventId}/$q->{path}{subscriberState}"} }, scalar @{ $q->{body}{inputs} } }
is(scalar @{ $by{'webinar-c1/register'} }, 3, '250 rows -> 3 requests');
is(scalar @{ $by{'webinar-c2/register'} }, 1, '30 rows -> 1 request');
is(scalar @{ $by{'webinar-c1/attend'} }, 1, '5 rows of another state -> their own request');
ok(!grep({ $_ > 100 } map { @$_ } values %by), 'no request holds more than batch_size contacts');
my @vids = sort { $a <=> $b } mock_vids();
is_deeply(\@vids, [ 1000 .. 1249, 2000 .. 2029, 3000 .. 3004 ], 'every contact delivered exactly once');
is($node->safe_psql('postgres', "SELECT count(*) FROM hubspot_events.outbox WHERE status <> 'sent'"), '0', 'all rows sent');

# ---- per-contact order: one contact's changes arrive in commit order, one at a time ----
mock_reset();
$node->safe_psql('postgres', q{SELECT hubspot_events.pause()});
for my $state (qw(register attend cancel register))
{
	$node->safe_psql('postgres', qq{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-o', '$state', 'acme', '[{"vid": 77}, {"vid": 78}]')});
}
$node->safe_psql('postgres', q{SELECT hubspot_events.resume(); SELECT hubspot_events.flush('30 s')});
$reqs = mock_requests();
my @seq77 = map { $_->{path}{subscriberState} } grep { grep { $_->{vid} == 77 } @{ $_->{body}{inputs} } } @$reqs;
is_deeply(\@seq77, [qw(register attend cancel register)], "a contact's changes reach HubSpot in commit order");
ok(!grep({ my @v = map { $_->{vid} } @{ $_->{body}{inputs} }; my %s; grep { $s{$_}++ } @v } @$reqs),
	'no request holds two rows of one contact');

# ---- a turn's first answers are recorded while its last request is in flight ----
# Four requests of one turn, started together (max_concurrency 4); HubSpot
# answers one 4 s late.  Once half of them have answered with a success,
# those are recorded at once, in a transaction of their own, not when the
# slow answer comes (the third fast answer may come a moment later, and
# then waits for the turn's record).
mock_reset();
my $slow = 'mock:delay_ms=4000;tag=early';
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-early' || e, 'register', 'acme', jsonb_build_object('vid', 80 + e))
	  FROM generate_series(1, 3) e;
	SELECT hubspot_events.hubspot_enqueue_subscriber('$slow', 'register', 'acme', '{"vid": 84}');
	COMMIT;});
ok(wait_until(sub { $node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE external_event_id LIKE 'webinar-early%' AND status = 'sent') >= 2
	   AND bool_or(external_event_id = '$slow' AND status = 'sending')
	  FROM hubspot_events.outbox WHERE external_event_id LIKE 'webinar-early%' OR external_event_id = '$slow'}) eq 't' }, 10),
	'two or three answered requests are recorded sent while the slow one is still in flight');
$node->safe_psql('postgres', q{SELECT hubspot_events.flush('30 s')});
is($node->safe_psql('postgres', qq{
	SELECT string_agg(format('%s:%s:%s:%s', external_event_id, status, attempts, http_status), ',' ORDER BY id)
	  FROM hubspot_events.outbox WHERE external_event_id LIKE 'webinar-early%' OR external_event_id = '$slow'}),
	"webinar-early1:sent:1:204,webinar-early2:sent:1:204,webinar-early3:sent:1:204,$slow:sent:1:204",
	'then the fourth is recorded too; each row sent at its first attempt');
is(join(',', sort { $a <=> $b } mock_vids()), '81,82,83,84', 'each contact reached HubSpot once');

# ---- status view ----
my $status = $node->safe_psql('postgres',
	"SELECT worker_pid IS NOT NULL, worker_state, worker_database, paused, pending, sending, failed, successes > 0 FROM hubspot_events.status");
is($status, 't|idle|postgres|f|0|0|0|t', 'status: worker running and idle, counts');

$node->stop;
done_testing();
