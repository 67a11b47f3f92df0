# Operations (issue 16): every failed attempt's history, kept through
# retry_failed() and bounded; why each pending row waits (the waiting view).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

mock_reset();
my $node = hs_node('operations', conf => [
	"hubspot_events.retry_base_ms = 20",
	"hubspot_events.retry_max_ms = 40",
	"hubspot_events.max_attempts = 3",
	"hubspot_events.poll_interval_ms = 100"]);
my $token_file = $node->{hs_token_file};

sub q1 { $node->safe_psql('postgres', $_[0]) }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', 'register', 'acme', '$_[1]')") }
sub row_id { q1("SELECT max(id) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]'") }
# the correlationIds the mock answered for an event, oldest first
sub answered_ids
{
	my ($event) = @_;
	return map { $_->{correlation_id} } grep { ($_->{path}{externalEventId} // '') eq $event } @{ mock_requests() };
}

# ---------------------------------------------------------------------------
# 1. Every failed attempt's history
# ---------------------------------------------------------------------------
my $ev = 'mock:status=503';
enqueue($ev, '{"vid": 1}');
my $id = row_id($ev);
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE id = $id") eq 'failed' }), 'a 503 row fails after max_attempts (3)');
my @cids = answered_ids($ev);
is(scalar @cids, 3, 'the mock answered three attempts');
is(q1("SELECT string_agg(format('%s|%s|%s|%s', attempt, http_status, error_category, correlation_id), ',' ORDER BY attempt) FROM hubspot_events.attempts($id)"),
	join(',', map { "$_|503|INTERNAL_ERROR|$cids[$_ - 1]" } 1 .. 3),
	'attempts(row_id): three entries, numbered, each with its HTTP status, category and the correlationId HubSpot answered');
is(q1("SELECT count(*) FROM hubspot_events.attempts($id) WHERE attempted_at BETWEEN now() - interval '1 minute' AND now() AND error_message = 'internal error'"),
	'3', 'each entry has its time and HubSpot\'s message');
is(q1("SELECT jsonb_array_length(attempt_history) FROM hubspot_events.failed_syncs WHERE id = $id"), '3', 'failed_syncs shows the history');

# retry_failed() clears the error columns but keeps the history
mock_reset();
q1("SELECT hubspot_events.pause()");
is(q1("SELECT hubspot_events.retry_failed(ARRAY[$id])"), '1', 'retry_failed() puts the row back');
is(q1("SELECT format('%s|%s|%s', status, error_category IS NULL, jsonb_array_length(attempt_history)) FROM hubspot_events.outbox WHERE id = $id"),
	'pending|t|3', 'pending, the last error cleared, the three entries kept');
is(q1("SELECT string_agg(correlation_id::text, ',' ORDER BY attempt) FROM hubspot_events.attempts($id)"),
	join(',', @cids), 'with their correlationIds');

# three more rounds: 12 failed attempts, the last 10 kept, oldest first
my @all = @cids;
q1("SELECT hubspot_events.resume()");
for my $round (1 .. 3)
{
	ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE id = $id") eq 'failed' }), "round $round failed again");
	push @all, answered_ids($ev);
	mock_reset();
	q1("SELECT hubspot_events.retry_failed(ARRAY[$id])") if $round < 3;
}
is(scalar @all, 12, 'twelve attempts in all');
is(q1("SELECT string_agg(correlation_id::text, ',' ORDER BY ord) FROM hubspot_events.attempts($id) WITH ORDINALITY AS a(attempt, attempted_at, http_status, error_category, error_subcategory, error_message, correlation_id, ord)"),
	join(',', @all[2 .. 11]), 'the history keeps the last 10 attempts, oldest first');

# a 429 and a 401 are failed attempts too; a 200 adds nothing
mock_reset();
enqueue('mock:status=429;retry_after=1', '{"vid": 2}');
my $id429 = row_id('mock:status=429;retry_after=1');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.attempts($id429)") ge '1' }), 'a 429 is in the history');
is(q1("SELECT format('%s|%s', http_status, error_subcategory) FROM hubspot_events.attempts($id429) LIMIT 1"), '429|TEN_SECONDLY_ROLLING',
	'with its status and policy');
q1("DELETE FROM hubspot_events.outbox WHERE id = $id429");
enqueue('history-ok', '{"vid": 3}');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'history-ok'") eq 'sent' }), 'a good row is sent');
is(q1("SELECT attempt_history IS NULL FROM hubspot_events.outbox WHERE external_event_id = 'history-ok'"), 't', 'a row that never failed has no history');

# an operator's hand edit of the history never breaks the worker or attempts()
q1("UPDATE hubspot_events.outbox SET attempt_history = '{\"not\": \"an array\"}' WHERE id = $id");
is(q1("SELECT count(*) FROM hubspot_events.attempts($id)"), '0', 'attempts() of a history that is not an array: no rows, no error');
q1(qq{UPDATE hubspot_events.outbox SET attempt_history = '[7, {"attempt": "x", "at": "y", "http_status": 99999, "correlation_id": "no"}]' WHERE id = $id});
is(q1("SELECT format('%s|%s|%s|%s', attempt IS NULL, attempted_at IS NULL, http_status IS NULL, correlation_id IS NULL) FROM hubspot_events.attempts($id)"),
	't|t|t|t', 'attempts() of a hand-edited entry: NULLs, no error');
mock_reset();
q1("SELECT hubspot_events.retry_failed(ARRAY[$id])");
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE id = $id") eq 'failed' }), 'the worker records failures on a hand-edited history');
is(q1("SELECT jsonb_array_length(attempt_history) FROM hubspot_events.outbox WHERE id = $id"), '5', 'appended to what was there (2 + 3)');
q1("DELETE FROM hubspot_events.outbox");

# ---------------------------------------------------------------------------
# 2. Why is this row waiting?
# ---------------------------------------------------------------------------
sub waiting { q1("SELECT format('%s|%s', code, reason) FROM hubspot_events.waiting WHERE id = $_[0]") }

# due: a row the worker cannot see yet (this transaction's own)
is($node->safe_psql('postgres', q{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_subscriber('w-due', 'register', 'acme', '{"vid": 1}');
	SELECT format('%s|%s', code, reason) FROM hubspot_events.waiting WHERE external_event_id = 'w-due';
	ROLLBACK;}) =~ s/^.*\n//sr, "due|due: goes in the worker's next turn", 'a due row: due');

# paused
q1("SELECT hubspot_events.pause()");
enqueue('w-paused', '{"vid": 1}');
my $wid = row_id('w-paused');
like(waiting($wid), qr/^paused\|paused: hubspot_events\.resume\(\) restarts sending$/, 'paused');

# held by a 401
my $good = slurp_file($token_file);
append_to_file("$token_file.tmp", "pat-na1-revoked\n");
rename("$token_file.tmp", $token_file) or die;
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'held' }), 'a 401 holds the queue');
like(waiting($wid), qr/^held\|held: HubSpot answered HTTP 401 INVALID_AUTHENTICATION/, 'a row held by a 401 shows held, with the reason');
append_to_file("$token_file.tmp", $good);
rename("$token_file.tmp", $token_file) or die;
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE id = $wid") eq 'sent' }), 'released, sent');
is(q1("SELECT count(*) FROM hubspot_events.waiting WHERE id = $wid"), '0', 'a sent row is not waiting');

# backoff, and a later change of the same contact behind it
$node->append_conf('postgresql.conf', "hubspot_events.retry_base_ms = 600000\nhubspot_events.retry_max_ms = 600000\nhubspot_events.max_attempts = 5\n");
my $loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker loaded a long backoff');
usleep(300_000);
enqueue('mock:status=503', '{"vid": 5}');
my $first = row_id('mock:status=503');
ok(wait_until(sub { q1("SELECT format('%s|%s', status, attempts) FROM hubspot_events.outbox WHERE id = $first") eq 'pending|1' }), 'a 503 row waits for its retry');
# the backoff's draw may be short: 600 s is its ceiling, not its length
like(waiting($first), qr/^backoff\|backoff until .* \(attempt 1 of 5, last error: INTERNAL_ERROR: internal error\)$/, 'backoff, with the attempt, max_attempts and the last error');
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('mock:status=503', 'attend', 'acme', '{\"vid\": 5}')");
my $second = row_id('mock:status=503');
isnt($second, $first, 'a second change of the contact');
is(waiting($second), "behind|behind row $first (an older change of the same contact goes first)", 'behind the older row of its contact');
is(q1("SELECT behind_id FROM hubspot_events.waiting WHERE id = $second"), $first, 'behind_id names it');

# a subscriber row behind its event's retrying upsert
my $event = '{"eventName": "Webinar", "eventOrganizer": "Acme"}';
mock_config({ status => 503 });    # HubSpot fails every request: the upsert retries
q1(qq{SELECT hubspot_events.hubspot_enqueue_event('w-event', 'acme', '$event')});
my $upsert = row_id('w-event');
ok(wait_until(sub { q1("SELECT format('%s|%s', status, attempts) FROM hubspot_events.outbox WHERE id = $upsert") eq 'pending|1' }), 'the event upsert waits for its retry');
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('w-event', 'register', 'acme', '{\"vid\": 6}')");
my $sub = row_id('w-event');
is(waiting($sub), "behind|behind row $upsert (its event's upsert goes first)", "a subscriber row behind its event's upsert");
mock_config({});
# paused wins over behind; behind_id is still known
q1("SELECT hubspot_events.pause()");
is(q1("SELECT format('%s|%s', code, behind_id) FROM hubspot_events.waiting WHERE id = $sub"), "paused|$upsert", 'paused first, behind_id kept');
q1("SELECT hubspot_events.resume()");
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id IN ('w-event', 'mock:status=503')");

# rate limited: a 429 with a long Retry-After
enqueue('mock:status=429;retry_after=120', '{"vid": 8}');
my $rl = row_id('mock:status=429;retry_after=120');
ok(wait_until(sub { q1("SELECT http_status FROM hubspot_events.outbox WHERE id = $rl") eq '429' }), 'a 429 answered');
like(waiting($rl), qr/^rate_limited\|rate limited until /, 'rate limited, until when');

# a count over the view: one row per pending row, each with a code
is(q1("SELECT count(*) = (SELECT count(*) FROM hubspot_events.outbox WHERE status = 'pending') AND bool_and(code IS NOT NULL AND reason IS NOT NULL) FROM hubspot_events.waiting"),
	't', 'one row per pending row, each with a code and a reason');
q1("DELETE FROM hubspot_events.outbox");

# ---------------------------------------------------------------------------
# 3. Be told: NOTIFY hubspot_events after the worker's commits
# ---------------------------------------------------------------------------
# the 429's pause lives in the worker: a restart ends it
$node->restart;
$node->append_conf('postgresql.conf', "hubspot_events.retry_base_ms = 20\nhubspot_events.retry_max_ms = 40\nhubspot_events.max_attempts = 3\n");
$loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker loaded a short backoff');
mock_reset();
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN hubspot_events');
# the notifications received since the last call, decoded
sub notes
{
	my $out = $listener->query_safe('SELECT 1');
	return map { decode_json($_) } ($out =~ /^Asynchronous notification "hubspot_events" with payload "(.*)" received from server process with PID \d+\.$/mg);
}
notes();

# rows that end failed: one notification per turn, with the count and the ids
q1("SELECT hubspot_events.pause()");
enqueue('mock:status=404', '[{"vid": 1}, {"vid": 2}, {"vid": 3}]');
my $ids404 = q1("SELECT string_agg(id::text, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=404'");
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=404' AND status = 'failed'") eq '3' }), 'three rows failed (404)');
usleep(300_000);
my @n = notes();
my @failed = grep { $_->{kind} eq 'failed' } @n;
is(scalar @failed, 1, 'one failed notification for the turn, not one per row');
is(join('|', $failed[0]{count} // '', join(',', sort { $a <=> $b } @{ $failed[0]{ids} || [] }), $failed[0]{connection} // ''),
	"3|$ids404|default", 'with the count, the rows\' ids and the connection');
is(scalar(grep { $_->{kind} ne 'failed' } @n), 0, 'and nothing else');

# a retried row that uses max_attempts ends failed too
enqueue('mock:status=503', '{"vid": 4}');
my $id503 = row_id('mock:status=503');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE id = $id503") eq 'failed' }), 'a 503 row failed after max_attempts');
usleep(300_000);
@failed = grep { $_->{kind} eq 'failed' } notes();
is(join('|', scalar @failed, $failed[0]{count} // '', join(',', @{ $failed[0]{ids} || [] })), "1|1|$id503", 'one notification, for the last attempt');

# a hold and its release
$good = slurp_file($token_file);
append_to_file("$token_file.tmp", "pat-na1-revoked\n");
rename("$token_file.tmp", $token_file) or die;
enqueue('n-held', '{"vid": 5}');
ok(wait_until(sub { q1("SELECT worker_state FROM hubspot_events.status") eq 'held' }), 'held by a 401');
sleep 1;
@n = notes();
is(scalar @n, 1, 'one notification for the hold');
like($n[0]{kind} . ': ' . ($n[0]{reason} // ''), qr/^held: HubSpot answered HTTP 401 INVALID_AUTHENTICATION/, 'held, with the reason');
append_to_file("$token_file.tmp", $good);
rename("$token_file.tmp", $token_file) or die;
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'n-held'") eq 'sent' }), 'the new token file releases the hold');
usleep(300_000);
@n = notes();
is(join(',', map { $_->{kind} } @n), 'released', 'one released notification');

# the daily quota: under 10% left, then spent (429 DAILY)
mock_reset();
mock_config({ daily_limit => 5 });
q1("SELECT hubspot_events.pause()");
enqueue("n-daily-$_", '{"vid": 1}') for 1 .. 6;
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { (q1("SELECT rate_limit_reason FROM hubspot_events.status") // '') =~ /daily limit/ }), 'a 429 DAILY pauses the worker');
usleep(300_000);
@n = notes();
my ($low) = grep { $_->{kind} eq 'daily_quota_low' } @n;
my ($spent) = grep { $_->{kind} eq 'daily_limit' } @n;
is(join('|', $low->{remaining} // '', $low->{limit} // ''), '0|5', 'daily_quota_low, with what is left of the limit');
ok($spent && ($spent->{resumes_at} // '') =~ /^\d{4}-\d\d-\d\d /, 'daily_limit, with when sending resumes');
is(scalar(grep { $_->{kind} =~ /^daily/ } @n), 2, 'each once');
$listener->quit;
mock_config({});
q1("DELETE FROM hubspot_events.outbox");
$node->stop;

# ---------------------------------------------------------------------------
# 4. Dry run: everything but contacting HubSpot; then the same rows for real
# ---------------------------------------------------------------------------
mock_reset();
my $dry = hs_node('dryrun', conf => ["hubspot_events.dry_run = on", "hubspot_events.poll_interval_ms = 100"]);
sub d1 { $dry->safe_psql('postgres', $_[0]) }
d1(q{SELECT hubspot_events.pause()});
d1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('dry-a', 'register', 'acme', '[{"vid": 1}, {"vid": 2}]')});
d1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('dry-b', 'attend', 'acme', '{"vid": 3}')});
d1(q{SELECT hubspot_events.resume()});
ok(wait_until(sub { d1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") eq '3' }), 'a dry run records the rows sent');
is(scalar(@{ mock_requests() }), 0, 'and contacts the mock zero times');
is(d1(q{SELECT string_agg(format('%s|%s|%s|%s|%s', external_event_id, dry_run, dry_run_request->>'method', dry_run_request->>'path', dry_run_request->>'rows'), ',' ORDER BY id) FROM hubspot_events.outbox}),
	'dry-a|t|POST|/marketing/marketing-events/2026-09/events/dry-a/register/upsert?externalAccountId=acme|2,'
	. 'dry-a|t|POST|/marketing/marketing-events/2026-09/events/dry-a/register/upsert?externalAccountId=acme|2,'
	. 'dry-b|t|POST|/marketing/marketing-events/2026-09/events/dry-b/attend/upsert?externalAccountId=acme|1',
	'each row records the request it would have gone in (coalesced: dry-a\'s two rows share one)');
is(d1(q{SELECT string_agg(((dry_run_request->>'body_bytes')::int > 40 AND http_status IS NULL AND correlation_id IS NULL)::text, ',' ORDER BY id) FROM hubspot_events.outbox}),
	'true,true,true', 'with the body\'s size, and no answer');
is(d1(q{SELECT value FROM hubspot_events.metrics WHERE name = 'hubspot_events_dry_run_requests_total'}), '2', 'two requests built, counted as dry-run requests');
is(d1(q{SELECT count(*) FROM hubspot_events.metrics WHERE name = 'hubspot_events_requests_total'}), '0', 'and none as requests to HubSpot');
# a direct call returns the requests it would send
my $answer = decode_json(d1(q{SELECT hubspot_events.hubspot_upsert_subscriber('dry-direct', 'cancel', 'acme', '[{"vid": 7}, {"email": "a@example.com"}]')}));
is(join('|', $answer->{dry_run} ? 'dry' : 'sent', $answer->{requests}, $answer->{contacts},
		map { $_->{path} . ' ' . scalar(@{ $_->{body}{inputs} }) } @{ $answer->{would_send} }),
	'dry|2|2|/marketing/marketing-events/2026-09/events/dry-direct/cancel/upsert?externalAccountId=acme 1|/marketing/marketing-events/2026-09/events/dry-direct/cancel/email-upsert?externalAccountId=acme 1',
	'a direct call in a dry run returns the requests it would send, bodies included');
is(scalar(@{ mock_requests() }), 0, 'still nothing sent');
# leave the dry run, and send the same rows for real in one call
d1("ALTER SYSTEM SET hubspot_events.dry_run = off");
$loaded = d1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$dry->reload;
ok(wait_until(sub { d1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'dry run turned off');
usleep(300_000);
is(d1("SELECT hubspot_events.replay_dry_run()"), '3', 'replay_dry_run() puts the three rows back');
ok(wait_until(sub { d1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent' AND dry_run IS NULL AND http_status BETWEEN 200 AND 299") eq '3' }), 'sent for real');
is(join(',', sort { $a <=> $b } mock_vids()), '1,2,3', 'the mock received the three contacts');
is(d1("SELECT hubspot_events.replay_dry_run()"), '0', 'nothing left to replay');
$dry->stop;

# ---------------------------------------------------------------------------
# 5. Metrics: the counters equal what the mock counted after a mixed run
# ---------------------------------------------------------------------------
mock_reset();
my $met = hs_node('metrics', conf => [
	"hubspot_events.retry_base_ms = 20",
	"hubspot_events.retry_max_ms = 40",
	"hubspot_events.max_attempts = 3",
	"hubspot_events.poll_interval_ms = 100"]);
sub m1 { $met->safe_psql('postgres', $_[0]) }
sub metric { m1("SELECT coalesce(sum(value), 0) FROM hubspot_events.metrics WHERE name = '$_[0]'" . (defined $_[1] ? " AND labels = '$_[1]'" : '')) }
m1(q{SELECT hubspot_events.pause()});
m1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('m-ok', 'register', 'acme', '[{"vid": 1}, {"vid": 2}, {"vid": 3}]')});
m1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:status=404', 'register', 'acme', '{"vid": 4}')});
m1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:status=503', 'register', 'acme', '{"vid": 5}')});
m1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:status=400;subcategory=MARKETING_EVENTS.INVALID_VID', 'register', 'acme', '[{"vid": 1}, {"vid": 2}]')});
m1(q{SELECT hubspot_events.resume()});
m1(q{SELECT hubspot_events.hubspot_upsert_subscriber('m-direct', 'attend', 'acme', '[{"vid": 8}, {"vid": 9}]')});
ok(wait_until(sub { m1("SELECT count(*) FROM hubspot_events.outbox WHERE status IN ('sent', 'failed')") eq '7' }), 'the mixed run is done');
my @log = @{ mock_requests() };
my %by_status;
$by_status{ $_->{status} }++ for @log;
is(m1(q{SELECT string_agg(format('%s=%s', labels->>'status', value), ',' ORDER BY labels->>'status') FROM hubspot_events.metrics WHERE name = 'hubspot_events_requests_total'}),
	join(',', map { "$_=$by_status{$_}" } sort keys %by_status), 'requests_total, one series per HTTP status, equals the mock\'s count of each');
is(metric('hubspot_events_requests_total'), scalar @log, 'the series add up to every request the mock received (' . scalar(@log) . ')');
my $accepted = 0;
$accepted += scalar(@{ $_->{body}{inputs} || [] }) for grep { $_->{status} >= 200 && $_->{status} < 300 } @log;
is(metric('hubspot_events_contacts_sent_total'), $accepted, "contacts_sent_total equals the contacts of the 2xx requests ($accepted)");
is(join(',', map { metric('hubspot_events_errors_total', qq({"category": "$_"})) } qw(INTERNAL_ERROR OBJECT_NOT_FOUND VALIDATION_ERROR)),
	'3,1,3', 'errors_total by category: three 503s, one 404, three 400s (the request of two, then each contact)');
is(join(',', map { metric("hubspot_events_${_}_total") } qw(splits retries rows_failed)), '1,2,4',
	'one split, two retries, four rows failed');
is(metric('hubspot_events_outbox_rows', '{"status": "failed"}'), '4', 'the outbox gauge by status');
is(metric('hubspot_events_commit_to_request_seconds_count'), '3', 'the latency histogram counts the worker\'s three rows sent at their first attempt');
is(m1(q{SELECT value FROM hubspot_events.metrics WHERE name = 'hubspot_events_commit_to_request_seconds_bucket' AND labels->>'le' = '+Inf'}), '3', 'its +Inf bucket holds them all');
is(m1(q{SELECT bool_and(a.value <= b.value) FROM hubspot_events.metrics a JOIN hubspot_events.metrics b ON b.name = a.name AND (b.labels->>'le' = '+Inf' OR (a.labels->>'le' <> '+Inf' AND (b.labels->>'le')::float8 >= (a.labels->>'le')::float8)) WHERE a.name = 'hubspot_events_commit_to_request_seconds_bucket'}),
	't', 'its buckets are cumulative');
my $text = m1('SELECT hubspot_events.metrics_text()');
like($text, qr/^# TYPE hubspot_events_requests_total counter\n(hubspot_events_requests_total\{status="\d+"\} \d+\n)+/m, 'metrics_text(): a TYPE line, then the series in Prometheus\' format');
like($text, qr/^# TYPE hubspot_events_commit_to_request_seconds histogram\nhubspot_events_commit_to_request_seconds_bucket\{le="0.005"\} \d+\n/m, 'the histogram as one family, buckets in order');
like($text, qr/^hubspot_events_commit_to_request_seconds_bucket\{le="\+Inf"\} 3\n/m, 'with its +Inf bucket');
like($text, qr/^hubspot_events_outbox_rows\{status="failed"\} 4$/m, 'gauges too');
# a worker restart starts the counters again
$met->restart;
ok(wait_until(sub { m1("SELECT worker_pid IS NOT NULL FROM hubspot_events.status") eq 't' }), 'the worker restarted');
is(metric('hubspot_events_requests_total'), '0', 'its counters start from zero');
$met->stop;

# ---------------------------------------------------------------------------
# 6. Without a worker for this database
# ---------------------------------------------------------------------------
mock_reset();
my $other = hs_node('operations_other', conf => ["hubspot_events.database = 'elsewhere'"]);
$other->safe_psql('postgres', q{SELECT hubspot_events.hubspot_enqueue_subscriber('w-none', 'register', 'acme', '{"vid": 1}')});
is($other->safe_psql('postgres', q{SELECT code FROM hubspot_events.waiting WHERE external_event_id = 'w-none'}), 'worker_not_running',
	'the worker serves another database: worker_not_running');

# ---------------------------------------------------------------------------
# 7. Long work shows progress; flush() says what it waited for
# ---------------------------------------------------------------------------
my ($rc, $out, $err) = $other->psql('postgres', q{SELECT hubspot_events.flush('300 ms')});
is($out, 'f', 'flush() gives up on a row nobody sends');
like($err, qr/NOTICE:  flush\(\) gave up after 00:00:00\.3: 1 rows due and 0 in flight/, 'and says how many rows it waited for');
like($err, qr/DETAIL:  The first waiting row, \d+, is worker_not_running: worker not running/, 'and why the first one waits');
like($err, qr/HINT:  hubspot_events\.waiting says why each pending row waits\./, 'and where to look');

$other->safe_psql('postgres', q{
	CREATE TABLE att (id int PRIMARY KEY, event text, state text, vid bigint, account text);
	INSERT INTO att SELECT g, 'bf', 'register', g, 'acme' FROM generate_series(1, 350) g;
	ANALYZE att;
	CREATE TRIGGER att_sync AFTER INSERT OR UPDATE ON att FOR EACH ROW EXECUTE FUNCTION
	  hubspot_events.sync_attendance('event_id=event', 'state=state', 'vid=vid', 'account_id=account');});
($rc, $out, $err) = $other->psql('postgres', q{SET hubspot_events.progress_notice_ms = 0; CALL hubspot_events.backfill('att', 'att_sync', 100)});
is($rc, 0, 'backfill ran');
my @progress = $err =~ /NOTICE:  backfill of att \(trigger att_sync\): (\d+) rows scanned of about 350, (\d+) enqueued, \d+ rows\/s, about \d+ s left/g;
is(join(',', @progress), '100,100,200,200,300,300', 'a NOTICE after each batch (progress_notice_ms = 0): rows scanned of the estimate, enqueued, rate, time left');
is($other->safe_psql('postgres', q{SELECT format('%s|%s|%s|%s|%s', table_name, state, rows_scanned, rows_enqueued, rows_estimate) FROM hubspot_events.backfill_progress WHERE trigger_name = 'att_sync'}),
	'public.att|finished|350|350|350', 'backfill_progress: finished, with its counts');

# another session watches a backfill that is running: a transaction that
# enqueued vid 150 and has not ended holds that contact's order lock, so the
# backfill's batch of ids 141 to 150 waits for it (batches of 10 keys: under
# the order lock's escalation, which would wait for every enqueuer)
my $holder = $other->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe(q{SELECT hubspot_events.hubspot_enqueue_subscriber('bf', 'register', 'acme', '{"vid": 150}')});
my %bf = (out => '', err => '');
$bf{h} = IPC::Run::start([ 'psql', '-XAtq', '-d', $other->connstr('postgres'), '-c',
	q{CALL hubspot_events.backfill('att', 'att_sync', 10)} ], '>', \$bf{out}, '2>', \$bf{err});
ok(wait_until(sub { $other->safe_psql('postgres', q{SELECT state || ':' || rows_scanned || ':' || rows_enqueued FROM hubspot_events.backfill_progress WHERE trigger_name = 'att_sync'}) eq 'running:140:140' }),
	'another session sees it running, its first 14 batches done');
$holder->query_safe('ROLLBACK');
$holder->quit;
$bf{h}->finish;
is($other->safe_psql('postgres', q{SELECT state || ':' || rows_scanned FROM hubspot_events.backfill_progress WHERE trigger_name = 'att_sync'}), 'finished:350',
	'then finished');
$other->stop;

# ---------------------------------------------------------------------------
# 8. Prove what HubSpot holds: verify_event finds what the mock forgot, repair restores it
# ---------------------------------------------------------------------------
mock_reset();
my $ver = hs_node('verify', conf => ["hubspot_events.poll_interval_ms = 100"]);
sub v1 { $ver->safe_psql('postgres', $_[0]) }
v1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('v-ev', 'register', 'acme',
	(SELECT jsonb_agg(jsonb_build_object('vid', g, 'interactionDateTime', 1700000000000 + g)) FROM generate_series(1, 150) g))});
v1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('v-ev', 'register', 'acme', '[{"email": "Ann@Example.com"}, {"email": "bob@example.com"}]')});
v1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('v-ev', 'attend', 'acme', '{"vid": 2}')});
ok(wait_until(sub { v1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") eq '153' }), 'the event\'s 153 rows are sent');
is(v1(q{SELECT count(*) FROM hubspot_events.verify_event('v-ev', 'acme')}), '0', 'verify_event: HubSpot holds what was sent');
my @gets = grep { ($_->{method} // '') eq 'GET' } @{ mock_requests() };
is(scalar @gets, 2, 'it read the breakdown\'s two pages (152 participations, 100 a page)');
is(join(',', map { scalar(@{ $_->{spec_errors} || [] }) } @gets), '0,0', 'each GET valid against HubSpot\'s spec');
is(join('|', map { join(',', $_->{path}{externalAccountId} // '', $_->{path}{externalEventId} // '', $_->{query}{limit} // '', defined $_->{query}{after} ? 'after' : 'first') } @gets),
	'acme,v-ev,100,first|acme,v-ev,100,after', 'for the event and account, 100 a page, the second after the first\'s cursor');

# HubSpot forgets three contacts, and one state changes behind the extension's back
mock_control('/__mock/participations/forget', { externalAccountId => 'acme', externalEventId => 'v-ev', contacts => [5, 77, 'ann@example.com'] });
mock_control('/__mock/participations/set', { externalAccountId => 'acme', externalEventId => 'v-ev', contact => 9, state => 'CANCELLED' });
mock_control('/__mock/participations/set', { externalAccountId => 'acme', externalEventId => 'v-ev', contact => 10, state => 'NO_SHOW' });
is(v1(q{SELECT string_agg(format('%s|%s|%s|%s', contact, expected_state, coalesce(hubspot_state, '-'), last_sent_at IS NOT NULL AND correlation_id IS NOT NULL AND repair_id IS NULL), ',' ORDER BY contact)
        FROM hubspot_events.verify_event('v-ev', 'acme')}),
	'77|register|-|t,9|register|CANCELLED|t,ann@example.com|register|-|t,5|register|-|t' =~ s/^(.*)$/join(',', sort split(',', $1))/er,
	'exactly the forgotten contacts (by vid and by email) and the changed state; NO_SHOW matches register; the attend of vid 2 matches');
my $repaired = v1(q{SELECT string_agg(contact, ',' ORDER BY contact) FROM hubspot_events.verify_event('v-ev', 'acme', repair => true) WHERE repair_id IS NOT NULL});
is($repaired, join(',', sort('5', '77', '9', 'ann@example.com')), 'repair => true enqueues each of them again');
ok(wait_until(sub { v1("SELECT count(*) FROM hubspot_events.outbox WHERE source = 'verify_event' AND status = 'sent'") eq '4' }), 'the repairs are sent');
is(v1(q{SELECT count(*) FROM hubspot_events.verify_event('v-ev', 'acme')}), '0', 'and HubSpot holds them again');

# errors: an unknown connection, and a credential without the read scope
my ($vrc, $vout, $verr) = $ver->psql('postgres', q{SELECT * FROM hubspot_events.verify_event('v-ev', 'acme', 'tenant-1')});
like($verr, qr/ERROR:  connection "tenant-1" does not exist/, 'an unknown connection is an error');
mock_config({ token_scopes => 'crm.objects.marketing_events.write' });
($vrc, $vout, $verr) = $ver->psql('postgres', q{SELECT * FROM hubspot_events.verify_event('v-ev', 'acme')}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($verr, qr/ERROR:  42501: hubspot answered HTTP 403 MISSING_SCOPES/, 'a credential without crm.objects.marketing_events.read: 42501, in HubSpot\'s words');
mock_config({});
$ver->stop;

done_testing();
