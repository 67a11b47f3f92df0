# HubSpot's answers stored on the rows; retries; configuration faults hold
# the queue; the worker survives unexpected errors.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

mock_reset();
my $node = hs_node('errors', conf => [
	"hubspot_events.retry_base_ms = 50",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 3",
	"hubspot_events.poll_interval_ms = 100"]);
my $token_file = $node->{hs_token_file};

sub q1 { $node->safe_psql('postgres', $_[0]) }
sub enqueue { q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$_[0]', 'register', 'acme', '$_[1]')") }
sub row { q1("SELECT format('%s|%s|%s|%s|%s|%s', status, attempts, http_status, error_category, error_subcategory, error_message) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]' ORDER BY id LIMIT 1") }

# ---- a permanent error: failed, with HubSpot's category, subcategory, message, correlationId and body ----
enqueue('mock:status=400;subcategory=MARKETING_EVENTS.INVALID_VID', '[{"vid": 1}, {"vid": 2}]');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'failed'") eq '2' }), '400: both rows of the request failed');
is(row('mock:status=400;subcategory=MARKETING_EVENTS.INVALID_VID'),
	'failed|1|400|VALIDATION_ERROR|MARKETING_EVENTS.INVALID_VID|Invalid input JSON: contact with vid 1 does not exist',
	'status, attempts, http_status, category, subcategory, message');
# a request HubSpot rejects naming one of its contacts is split down to
# single contacts: the request of 2, then each contact alone (3 requests),
# and each row keeps its own answer
my @answers = grep { $_->{status} && $_->{status} == 400 } @{ mock_requests() };
is(scalar @answers, 3, 'a rejected request of 2 is split into its 2 contacts, each rejected alone: 3 requests');
my %answered = map { $_->{correlation_id} => 1 } @answers;
my @stored = split /,/, q1("SELECT string_agg(correlation_id::text, ',' ORDER BY id) FROM hubspot_events.outbox WHERE status = 'failed'");
is(scalar(grep { $answered{$_} } @stored), 2, "each row stores a correlationId the mock answered with");
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'failed' AND error_body->>'category' = 'VALIDATION_ERROR' AND (error_body->>'correlationId')::uuid = correlation_id"),
	'2', "error_body holds HubSpot's whole answer");
is(q1("SELECT count(*) FROM hubspot_events.failed_syncs WHERE error_category = 'VALIDATION_ERROR'"), '2', 'visible in failed_syncs');

# 404 and a non-UUID correlation id: stored as NULL, the raw answer kept in error_body
enqueue('mock:status=404;correlation=bad', '{"vid": 3}');
ok(wait_until(sub { row('mock:status=404;correlation=bad') =~ /^failed/ }), '404 fails');
is(q1("SELECT format('%s|%s|%s', error_category, correlation_id IS NULL, error_body->>'correlationId') FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=404;correlation=bad'"),
	'OBJECT_NOT_FOUND|t|not-a-uuid', 'a correlation id that is not a UUID is NULL, the raw answer stays in error_body');

# ---- a retryable error: pending again with a later next_attempt_at, failed after max_attempts ----
enqueue('mock:status=503', '{"vid": 4}');
ok(wait_until(sub { row('mock:status=503') =~ /^failed/ }, 30), '503 is retried, then failed after max_attempts');
is(row('mock:status=503'), 'failed|3|503|INTERNAL_ERROR||internal error', 'three attempts, then failed');
is(scalar(grep { ($_->{path}{externalEventId} // '') eq 'mock:status=503' } @{ mock_requests() }), 3, 'the mock saw exactly 3 attempts');

enqueue('mock:fail_after=0;status=502', '{"vid": 5}');
mock_config({});
# transport failure: a connection reset
enqueue('mock:close=1', '{"vid": 6}');
ok(wait_until(sub { row('mock:close=1') =~ /^failed\|3\|\|TRANSPORT/ }, 30), 'connection resets are retried and recorded as TRANSPORT')
  or diag(row('mock:close=1'));

# a retry that then succeeds (backoff has full jitter, so a retry may come at
# once: allow many attempts, and count them against the mock's answers)
mock_reset();
q1("ALTER SYSTEM SET hubspot_events.max_attempts = 1000");
my $loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker reloaded its settings');
mock_config({ fault_rate => 1, fault_status => 503 });
enqueue('webinar-flaky', '{"vid": 7}');
sub flaky_503 { scalar(grep { ($_->{path}{externalEventId} // '') eq 'webinar-flaky' && ($_->{status} // 0) == 503 } @{ mock_requests() }) }
ok(wait_until(sub { flaky_503() >= 1 }), 'HubSpot answers 503 first');
is(q1("SELECT status IN ('pending', 'sending') FROM hubspot_events.outbox WHERE external_event_id = 'webinar-flaky'"), 't',
	'the row waits for a retry; it has not failed');
mock_config({});
ok(wait_until(sub { row('webinar-flaky') =~ /^sent\|\d+\|204/ }), 'the retry succeeds')
  or diag(row('webinar-flaky'));
my $attempts = q1("SELECT attempts FROM hubspot_events.outbox WHERE external_event_id = 'webinar-flaky'");
cmp_ok($attempts, '>=', 2, 'sent on a retry');
is(flaky_503(), $attempts - 1, "attempts count every answer: " . flaky_503() . " answered 503, then sent on attempt $attempts");
is(q1("SELECT format('%s|%s|%s', error_category, error_message, error_body) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-flaky'"),
	'||', 'a successful retry clears the error columns');
q1("ALTER SYSTEM RESET hubspot_events.max_attempts");
$node->reload;

# ---- 429 uses no attempt ----
enqueue('mock:status=429;retry_after=1', '{"vid": 8}');
ok(wait_until(sub { row('mock:status=429;retry_after=1') =~ /^pending\|0\|429\|RATE_LIMIT\|TEN_SECONDLY_ROLLING/ }),
	'429: pending, attempts not counted, policy recorded') or diag(row('mock:status=429;retry_after=1'));
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=429;retry_after=1'");

# ---- configuration faults hold the queue ----
# a token HubSpot rejects: 401
mock_reset();
my $good = slurp_file($token_file);
append_to_file("$token_file.tmp", "pat-na1-revoked\n");
rename("$token_file.tmp", $token_file) or die;
my $log_offset = -s $node->logfile;
enqueue('webinar-auth', '[{"vid": 9}, {"vid": 10}]');
ok(wait_until(sub { q1("SELECT held_reason FROM hubspot_events.status") =~ /401 INVALID_AUTHENTICATION/ }),
	'401: status shows the queue held and why');
# (status shows the hold only once the turn's record has committed: the rows
# are pending again by then)
is(q1("SELECT string_agg(format('%s:%s', status, attempts), ',') FROM hubspot_events.outbox WHERE external_event_id = 'webinar-auth'"),
	'pending:0,pending:0', 'rows stay pending, attempts untouched');
is(q1("SELECT worker_state FROM hubspot_events.status"), 'held', 'worker_state is held');
sleep 1;
# (the 429 row above is deleted, but the worker may have claimed it just
# before: its last request can reach the mock after the reset)
my @since_hold = grep { ($_->{path}{externalEventId} // '') ne 'mock:status=429;retry_after=1' } @{ mock_requests() };
is(scalar(@since_hold), 1, 'a held queue sends nothing more')
  or diag(join("\n", map { "$_->{time} $_->{method} $_->{raw_path} -> " . ($_->{status} // '?') } @{ mock_requests() }));
ok($node->log_contains(qr/holding the queue: HubSpot answered HTTP 401 INVALID_AUTHENTICATION/, $log_offset), 'one clear log line');
my $lines = () = slurp_file($node->logfile, $log_offset) =~ /holding the queue/g;
is($lines, 1, 'logged once, not per row or per poll');
# the token file changes: sending resumes by itself
append_to_file("$token_file.tmp", $good);
rename("$token_file.tmp", $token_file) or die;
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-auth' AND status = 'sent'") eq '2' }),
	'a new token file releases the queue and the rows are sent');
is(q1("SELECT attempts FROM hubspot_events.outbox WHERE external_event_id = 'webinar-auth' LIMIT 1"), '1', 'sent on the first counted attempt');
is(q1("SELECT coalesce(held_reason, '') FROM hubspot_events.status"), '', 'no longer held');

# 403 MISSING_SCOPES holds too; a reload releases it
enqueue('mock:status=403', '{"vid": 11}');
ok(wait_until(sub { q1("SELECT held_reason FROM hubspot_events.status") =~ /MISSING_SCOPES/ }), '403 MISSING_SCOPES holds the queue');
my $before = scalar @{ mock_requests() };
$node->reload;
ok(wait_until(sub { scalar @{ mock_requests() } > $before }), 'a reload releases the hold: the request is tried again');
# (the mock saw the request: the worker may not have recorded its answer yet)
ok(wait_until(sub { q1("SELECT format('%s:%s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=403'") eq 'pending:0' }, 10),
	'still pending with no attempt counted')
  or diag(q1("SELECT format('%s:%s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=403'"));
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=403'");
$node->reload;

# ---- the backoff: each row its own jittered wait up to retry_base_ms, never under Retry-After ----
$node->append_conf('postgresql.conf', "hubspot_events.retry_base_ms = 60000\nhubspot_events.retry_max_ms = 60000\nhubspot_events.max_attempts = 5\n");
$loaded = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $loaded }), 'the worker loaded the longer backoff');
usleep(300_000);
enqueue('mock:status=503;correlation=none', '[' . join(',', map { qq({"vid": $_}) } 1 .. 20) . ']');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=503;correlation=none' AND status = 'pending' AND attempts >= 1") eq '20' }),
	'503: the 20 rows of the request are pending again after an attempt');
is(q1("SELECT format('%s|%s|%s', bool_and(next_attempt_at <= now() + interval '60 s' * 2 ^ (attempts - 1)), count(DISTINCT next_attempt_at) > 5, max(next_attempt_at) - min(next_attempt_at) > interval '10 s') FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=503;correlation=none'"),
	't|t|t', 'each row waits at most retry_base_ms (doubled per attempt), each with its own draw spread over the range (full jitter per row)');
enqueue('mock:status=503;retry_after=120', '{"vid": 21}');
ok(wait_until(sub { q1("SELECT format('%s|%s', status, attempts) FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=503;retry_after=120'") eq 'pending|1' }), '503 with Retry-After: 120 tried once');
is(q1("SELECT format('%s|%s', status, next_attempt_at >= now() + interval '110 s' AND next_attempt_at <= now() + interval '121 s') FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=503;retry_after=120'"),
	'pending|t', 'a Retry-After longer than the backoff is waited in full');
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id LIKE 'mock:status=503;%'");

# ---- the worker never dies of an unexpected ERROR ----
my $pid = q1("SELECT worker_pid FROM hubspot_events.status");
$log_offset = -s $node->logfile;
q1("ALTER TABLE hubspot_events.worker_control RENAME COLUMN paused TO paused_x");
ok($node->wait_for_log(qr/ERROR:.*paused/, $log_offset), 'an unexpected ERROR is logged');
q1("ALTER TABLE hubspot_events.worker_control RENAME COLUMN paused_x TO paused");
enqueue('webinar-after-error', '{"vid": 12}');
ok(wait_until(sub { row('webinar-after-error') =~ /^sent/ }), 'the loop goes on after the error');
is(q1("SELECT worker_pid FROM hubspot_events.status"), $pid, 'same worker process');

$node->stop;
done_testing();
