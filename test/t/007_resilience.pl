# Proof under faults, with counts asserted at the mock: poison-row
# isolation, transient faults, HubSpot's rate limit, 429 storms, the daily
# limit.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use POSIX qw(ceil);
use HTTP::Tiny;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = hs_node('resilience', conf => [
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.retry_base_ms = 20",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 30",
	"hubspot_events.request_timeout_ms = 1000",
	"hubspot_events.rate_limit = 1000",
	"hubspot_events.rate_limit_interval_ms = 1000"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub flush { is(q1("SELECT hubspot_events.flush('$_[1]')"), 't', $_[0]) }
sub enqueue_range
{
	my ($event, $from, $to) = @_;
	q1("SELECT count(*) FROM (SELECT hubspot_events.hubspot_enqueue_subscriber('$event', 'register', 'acme',
	      (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(s, least(s + 999, $to)) v))
	    FROM generate_series($from, $to, 1000) s) x");
}
sub stats { my $r = HTTP::Tiny->new->get("$ENV{HS_MOCK_URL}/__mock/stats?window_ms=1000"); return decode_json($r->{content}) }

# ---- one bad contact in a batch of 100 ----
mock_reset();
mock_config({ bad_vids => '42' });
q1("SELECT hubspot_events.pause()");
enqueue_range('webinar-poison', 1, 100);
q1("SELECT hubspot_events.resume()");
flush('the batch with a bad contact drains', '30 s');
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-poison' AND status = 'sent'"), '99', '99 contacts sent');
is(q1("SELECT format('%s|%s|%s', contact->>'vid', error_category, correlation_id IS NOT NULL) FROM hubspot_events.failed_syncs WHERE external_event_id = 'webinar-poison'"),
	'42|VALIDATION_ERROR|t', 'the bad contact alone failed, with its category and its own correlationId');
my $cid = q1("SELECT correlation_id FROM hubspot_events.failed_syncs WHERE external_event_id = 'webinar-poison'");
my @single = grep { scalar(@{ $_->{body}{inputs} }) == 1 && $_->{body}{inputs}[0]{vid} == 42 } @{ mock_requests() };
is(scalar(@single), 1, 'the mock rejected vid 42 alone once');
is($single[0]{correlation_id}, $cid, "the row stores the correlationId of the answer about it alone");
my $requests = scalar @{ mock_requests() };
my $bound = 1 + 2 * ceil(log(100) / log(2));
cmp_ok($requests, '<=', $bound, "requests within the logarithmic bound ($requests <= $bound)");
my %sent; $sent{$_}++ for map { $_->{vid} } map { @{ $_->{body}{inputs} } } grep { $_->{status} == 204 } @{ mock_requests() };
is(scalar(keys %sent), 99, 'each good contact accepted once');

# ---- a bad request (the event), not a bad contact: splitting stops at once ----
mock_reset();
mock_config({});
q1("SELECT hubspot_events.pause()");
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:bad_event=1', 'register', 'acme',
      (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 100) v))});
q1("SELECT hubspot_events.resume()");
flush('the bad request drains', '30 s');
is(scalar @{ mock_requests() }, 3, 'one request, one split, then both halves failed: 3 requests, not hundreds');
is(q1("SELECT count(*) FROM hubspot_events.failed_syncs WHERE external_event_id = 'mock:bad_event=1'"), '100', 'the rows fail together');

# ---- 30% transient faults: 10,000 contacts all sent, none failed, none lost ----
mock_reset();
mock_config({ fault_rate => 0.3, fault_mix => '500,502,503,504,reset,slow,429,423', slow_ms => 2000 });
q1("SELECT hubspot_events.pause()");
enqueue_range('webinar-faults', 1, 10000);
q1("SELECT hubspot_events.resume()");
# (flush returns when nothing is due; rows waiting for a retry are not due yet)
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-faults' AND status IN ('pending', 'sending')") eq '0' }, 300),
	'10,000 contacts drain under 30% faults');
mock_config({});
is(q1("SELECT string_agg(status || ':' || n, ',') FROM (SELECT status, count(*) n FROM hubspot_events.outbox WHERE external_event_id = 'webinar-faults' GROUP BY 1 ORDER BY 1) s"),
	'sent:10000', 'all 10,000 rows sent, none failed');
my %got; $got{$_}++ for map { $_->{vid} } map { @{ $_->{body}{inputs} } } grep { ($_->{status} // 0) == 204 } @{ mock_requests() };
is(scalar(grep { !$got{$_} } 1 .. 10000), 0, 'every contact was accepted by the mock: none lost');
my $st = stats();
cmp_ok($st->{requests} // 0, '>', 100, "faults were injected and retried (" . ($st->{requests} // 0) . " requests for 100 batches)");

# ---- HubSpot's rate limit: the worker adapts to the headers and stays under it ----
mock_reset();
mock_config({ rate_limit => 20, rate_window_ms => 1000 });
q1("SELECT hubspot_events.pause()");
$node->append_conf('postgresql.conf', "hubspot_events.batch_size = 10");
$node->reload;
enqueue_range('webinar-paced', 1, 1500);
q1("SELECT hubspot_events.resume()");
flush('1,500 contacts drain under a limit of 20 requests per second', '120 s');
$st = stats();
my $reqs = $st->{requests};
my $n429 = $st->{responses_429} // 0;
cmp_ok($reqs, '>=', 150, "$reqs requests for 150 batches");
cmp_ok($n429 / $reqs, '<', 0.01, "fewer than 1% answered 429 ($n429 of $reqs)");
cmp_ok($st->{max_validated_in_window}, '<=', 20, "the worker never sent more than the limit in any window ($st->{max_validated_in_window})");
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-paced' AND status = 'sent'"), '1500', 'every contact delivered');

# ---- a 429 storm pauses the whole sender, not just one request ----
mock_reset();
mock_config({ storm_ms => 2000 });
enqueue_range('webinar-storm', 1, 200);
# (not flush(): rows put back by a 429 wait for the pause, and flush() does
# not wait for rows that are not due yet)
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-storm' AND status = 'sent'") eq '200' }, 60),
	'the storm passes and the rows drain');
$n429 = (stats()->{responses_429} // 0);
cmp_ok($n429, '<=', 8, "the sender paused instead of hammering: $n429 answers 429 during a 2 s storm");
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-storm' AND status = 'sent' AND attempts = 1"),
	'200', 'every row sent, and the 429s used no attempt');

# ---- the daily limit: paused until daily_reset_time, shown in status ----
mock_reset();
mock_config({ daily_limit => 2 });
$node->append_conf('postgresql.conf', "hubspot_events.daily_reset_time = '03:30 America/New_York'");
$node->reload;
enqueue_range('webinar-daily', 1, 50);
ok(wait_until(sub { q1("SELECT rate_limited_until IS NOT NULL FROM hubspot_events.status") eq 't' }), 'status shows the pause');
is(q1("SELECT worker_state FROM hubspot_events.status"), 'rate limited', 'worker_state: rate limited');
like(q1("SELECT rate_limit_reason FROM hubspot_events.status"), qr/daily limit/, 'the reason names the daily limit');
is(q1(q{SELECT rate_limited_until = (SELECT ((date_trunc('day', now() AT TIME ZONE 'America/New_York') + interval '3 hours 30 minutes')
                                         + CASE WHEN (date_trunc('day', now() AT TIME ZONE 'America/New_York') + interval '3 hours 30 minutes') <= now() AT TIME ZONE 'America/New_York'
                                                THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE 'America/New_York')
          FROM hubspot_events.status}), 't', 'paused until the next 03:30 America/New_York');
is(q1("SELECT daily_quota_remaining FROM hubspot_events.status"), '0', 'the daily quota left, from HubSpot\'s header');
my $before = scalar @{ mock_requests() };
sleep 1;
is(scalar @{ mock_requests() }, $before, 'nothing is sent while the daily limit lasts');
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-daily' AND status = 'pending' AND attempts = 0"),
	q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-daily' AND status <> 'sent'"),
	'the waiting rows are pending with no attempt used');
cmp_ok(q1("SELECT error_share_today FROM hubspot_events.status"), '>', 0, "today's share of error answers is shown");

$node->stop;
done_testing();
