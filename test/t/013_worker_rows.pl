# The worker trusts no row, and isolates the contacts HubSpot rejects.
#
# 1. Rows an operator puts back in the queue by hand (the obvious replay,
#    UPDATE ... SET status = 'pending' WHERE status = 'failed'), with NULLs,
#    garbage and a subscriber_state that would move the request to another
#    path: the server never crashes, each bad row ends failed with
#    LOCAL_VALIDATION_ERROR and a message saying what is wrong, the good rows
#    around them are sent, and no request reaches any other path.
# 2. A rejected batch is split down to the bad contacts: two bad vids among
#    100, one in each half, end as 2 failed rows (each with its own
#    correlationId) and 98 sent, in a logarithmic number of requests; a bad
#    event (a request-level fault) still costs three requests.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('worker_rows', conf => [
	"hubspot_events.poll_interval_ms = 100",
	"hubspot_events.batch_size = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub settled { q1("SELECT count(*) FROM hubspot_events.outbox WHERE status IN ('pending', 'sending')") eq '0' }

# an application's connection, which a crash of any backend would drop
my $app = $node->background_psql('postgres');
my $app_pid = $app->query_safe('SELECT pg_backend_pid()');
my $worker_pid = q1("SELECT worker_pid FROM hubspot_events.status");
ok($worker_pid, 'the worker runs');
my $log_offset = -s $node->logfile;

# ======== 1. rows replayed by hand ========
q1("SELECT hubspot_events.pause()");
# a DBA may have relaxed the outbox's own constraints: the worker must not rely on them
q1("ALTER TABLE hubspot_events.outbox DROP CONSTRAINT outbox_kind_check, ALTER COLUMN kind DROP NOT NULL");

# good rows before the bad ones
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-good', 'attend', 'acme', '[{"vid": 101}, {"vid": 102}]')});
q1(q{SELECT hubspot_events.hubspot_enqueue_event('webinar-ev', 'acme', '{"eventName": "Good", "eventOrganizer": "Acme", "customProperties": {"room": "A"}}')});

# the bad rows, as failed rows (as the enqueue writes rows that fail its
# checks, or as an operator edited them): name => [columns, expected message]
my $contact = sub { qq('{"vid": $_[0], "interactionDateTime": 1700000000000, "properties": {}}') };
my %bad = (
	null_event   => [ "NULL, 'register', 'acme', " . $contact->(201) . ", '201', 'subscriber', NULL", qr/^external_event_id is null$/ ],
	null_account => [ "'webinar-good', 'register', NULL, " . $contact->(202) . ", '202', 'subscriber', NULL", qr/^external_account_id is null$/ ],
	null_state   => [ "'webinar-good', NULL, 'acme', " . $contact->(203) . ", '203', 'subscriber', NULL", qr/^subscriber_state is null$/ ],
	bad_state    => [ "'webinar-good', 'maybe', 'acme', " . $contact->(204) . ", '204', 'subscriber', NULL",
		qr/^subscriber_state "maybe" is not one of register, attend, cancel$/ ],
	traversal    => [ "'webinar-good', 'attend/../../../../oauth/v1/token', 'acme', " . $contact->(205) . ", '205', 'subscriber', NULL",
		qr{^subscriber_state "attend/\.\./\.\./\.\./\.\./oauth/v1/token" is not one of register, attend, cancel$} ],
	null_contact => [ "'webinar-good', 'register', 'acme', NULL, '206', 'subscriber', NULL", qr/^contact is null$/ ],
	bad_vid      => [ q{'webinar-good', 'register', 'acme', '{"vid": "abc"}', 'abc', 'subscriber', NULL},
		qr/^contact\.vid must be a positive integer within 64 bits, not "abc"$/ ],
	array_contact => [ q{'webinar-good', 'register', 'acme', '[{"vid": 207}]', '207', 'subscriber', NULL}, qr/^contact must be a JSON object$/ ],
	unknown_key  => [ q{'webinar-good', 'register', 'acme', '{"vid": 208, "vip": true}', '208', 'subscriber', NULL},
		qr/^contact has an unknown key "vip"$/ ],
	wrong_key    => [ "'webinar-good', 'register', 'acme', " . $contact->(209) . ", '999', 'subscriber', NULL",
		qr/^contact_key "999" is not the contact's \("209"\)$/ ],
	null_key     => [ "'webinar-good', 'register', 'acme', " . $contact->(210) . ", NULL, 'subscriber', NULL", qr/^contact_key is null$/ ],
	dotdot_event => [ "'..', 'register', 'acme', " . $contact->(211) . ", '211', 'subscriber', NULL", qr/^external_event_id must not be "\.\."$/ ],
	ctl_account  => [ "'webinar-good', 'register', E'ac\\nme', " . $contact->(212) . ", '212', 'subscriber', NULL",
		qr/^external_account_id must not contain control characters/ ],
	event_null   => [ "'webinar-ev2', NULL, 'acme', NULL, '', 'event_upsert', NULL", qr/^event is null$/ ],
	event_garbage => [ q{'webinar-ev3', NULL, 'acme', NULL, '', 'event_upsert', '{"eventName": 5, "eventOrganizer": "Acme"}'},
		qr/^event\.eventName must be a string, not a number$/ ],
	event_other_id => [ q{'webinar-ev4', NULL, 'acme', NULL, '', 'event_upsert', '{"externalEventId": "elsewhere", "eventName": "X", "eventOrganizer": "Acme"}'},
		qr/^event\.externalEventId "elsewhere" differs from the external_event_id argument$/ ],
	event_scalar => [ q{'webinar-ev5', NULL, 'acme', NULL, '', 'event_upsert', '"just text"'}, qr/^event must be a JSON object$/ ],
	complete_garbage => [ q{'webinar-ev6', NULL, 'acme', NULL, '', 'event_complete', '{"startDateTime": "soon", "endDateTime": 3}'},
		qr/^event\.startDateTime is not a timestamp between 1970 and 9999: "soon"/ ],
);
sub insert_failed
{
	my ($rows) = @_;
	for my $name (sort keys %$rows)
	{
		q1("INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key, kind, event,"
		  . " status, error_category, error_message, source)"
		  . " VALUES ($rows->{$name}[0], 'failed', 'LOCAL_VALIDATION_ERROR', 'as enqueued', 'test:$name')");
	}
}
insert_failed(\%bad);
# good rows after the bad ones (one with an event id that needs escaping)
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-good', 'register', 'acme', '[{"vid": 103}, {"vid": 104}]')});
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('a/../b c', 'cancel', 'acme', '{"vid": 105}')});
q1(q{SELECT hubspot_events.hubspot_enqueue_complete_event('webinar-ev', 'acme', '2026-03-01 17:00+00', '2026-03-01 18:00+00')});

# the operator's replay, then sending resumes
q1("UPDATE hubspot_events.outbox SET status = 'pending' WHERE status = 'failed'");
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'pending'"), 7 + scalar(keys %bad), 'every row is pending');
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { settled() }, 60), 'the worker settles every row');

# the server did not crash, nor did the worker
ok(!$node->log_contains(qr/terminated by signal/, $log_offset), 'no backend was terminated by a signal');
is($app->query_safe('SELECT pg_backend_pid()'), $app_pid, "the application's connection survived");
is(q1("SELECT worker_pid FROM hubspot_events.status"), $worker_pid, 'the same worker process');

# each bad row: failed, LOCAL_VALIDATION_ERROR, what is wrong
sub check_failed
{
	my ($rows) = @_;
	for my $name (sort keys %$rows)
	{
		my $row = q1("SELECT format('%s|%s|%s|%s', status, error_category, coalesce(http_status::text, ''), error_message)"
			. " FROM hubspot_events.outbox WHERE source = 'test:$name'");
		my ($status, $category, $http, $message) = split /\|/, $row, 4;
		is("$status|$category|$http", 'failed|LOCAL_VALIDATION_ERROR|', "$name: failed, LOCAL_VALIDATION_ERROR");
		like($message, $rows->{$name}[1], "$name: the message says what is wrong");
	}
}
check_failed(\%bad);
ok($node->log_contains(qr/claimed rows? failed the worker's checks and (is|are) marked failed \(LOCAL_VALIDATION_ERROR\)/, $log_offset),
	'the worker logs the rows it refused');

# the good rows were sent, and only they reached HubSpot
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE source NOT LIKE 'test:%' AND status <> 'sent'"), '0', 'every good row is sent');
is_deeply([ sort { $a <=> $b } mock_vids('webinar-good') ], [ 101, 102, 103, 104 ], 'HubSpot received exactly the good contacts of webinar-good');
is_deeply([ mock_vids('a/../b c') ], [ 105 ], 'and the good contact of an event id that needs escaping');
my $reqs = mock_requests();
my %expected = map { $_ => 1 } (
	'/marketing/marketing-events/2026-09/events/webinar-good/attend/upsert',
	'/marketing/marketing-events/2026-09/events/webinar-good/register/upsert',
	'/marketing/marketing-events/2026-09/events/a%2F..%2Fb%20c/cancel/upsert',
	'/marketing/marketing-events/2026-09/events/upsert',
	'/marketing/marketing-events/2026-09/events/webinar-ev/complete');
is_deeply([ grep { !$expected{$_} } map { $_->{raw_path} } @$reqs ], [], 'no request reached any other path');
is_deeply({ map { $_->{raw_path} => 1 } @$reqs }, \%expected, 'each expected path was requested');
is_deeply([ map { $_->{spec_errors} } @$reqs ], [ map { [] } @$reqs ], 'every request matches the OpenAPI spec');
my ($ev) = grep { $_->{raw_path} =~ m{/events/upsert$} } @$reqs;
is_deeply([ map { $_->{externalEventId} } @{ $ev->{body}{inputs} } ], [ 'webinar-ev' ], 'the good event only');
is($ev->{body}{inputs}[0]{customProperties}[0]{value}, 'A', "the event's custom property, checked again and sent");
my ($complete) = grep { $_->{raw_path} =~ m{/complete$} } @$reqs;
is_deeply($complete->{body}, { startDateTime => '2026-03-01T17:00:00.000Z', endDateTime => '2026-03-01T18:00:00.000Z' },
	'the complete call with its body');

# a kind the worker does not know (the outbox's CHECK and NOT NULL dropped):
# failed too, and it stops nothing else (it used to fail every claim)
my %bad_kind = (
	unknown_kind => [ "'webinar-good', 'register', 'acme', " . $contact->(213) . ", '213', 'bogus', NULL",
		qr/^kind "bogus" is not one of subscriber, event_upsert, event_cancel, event_complete$/ ],
	null_kind    => [ "'webinar-good', 'register', 'acme', " . $contact->(214) . ", '214', NULL, NULL", qr/^kind is null$/ ],
);
mock_reset();
q1("SELECT hubspot_events.pause()");
insert_failed(\%bad_kind);
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-good', 'register', 'acme', '{"vid": 106}')});
q1("UPDATE hubspot_events.outbox SET status = 'pending' WHERE status = 'failed' AND source IN ('test:unknown_kind', 'test:null_kind')");
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { settled() }, 60), 'the worker settles the rows of unknown kinds');
check_failed(\%bad_kind);
is_deeply([ mock_vids() ], [ 106 ], 'the good row beside them is sent, and only it');

# ======== 2. splitting a rejected batch ========
q1("TRUNCATE hubspot_events.outbox");
mock_reset();
# one bad vid in each half of the batch of 100 (vids 1001..1100: halves 1001..1050, 1051..1100)
mock_config({ bad_vids => '1017,1083' });
q1("SELECT hubspot_events.pause()");
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-split', 'register', 'acme',"
  . " (SELECT jsonb_agg(jsonb_build_object('vid', v) ORDER BY v) FROM generate_series(1001, 1100) v))");
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { settled() }, 60), 'the batch is settled');
is(q1("SELECT count(*) FILTER (WHERE status = 'sent') || '/' || count(*) FILTER (WHERE status = 'failed') FROM hubspot_events.outbox"),
	'98/2', 'two bad contacts in different halves: 98 sent, 2 failed');
is(q1("SELECT string_agg(contact_key || ':' || error_category, ',' ORDER BY contact_key) FROM hubspot_events.outbox WHERE status = 'failed'"),
	'1017:VALIDATION_ERROR,1083:VALIDATION_ERROR', 'the failed rows are the two bad contacts, with HubSpot\'s category');
$reqs = mock_requests();
my %answered400 = map { $_->{correlation_id} => 1 } grep { ($_->{status} // 0) == 400 } @$reqs;
my @cids = split /,/, q1("SELECT string_agg(correlation_id::text, ',' ORDER BY contact_key) FROM hubspot_events.outbox WHERE status = 'failed'");
is(scalar(@cids), 2, 'both failed rows have a correlationId');
isnt($cids[0], $cids[1], 'each its own');
is(scalar(grep { $answered400{$_} } @cids), 2, 'each one the mock answered with');
my @sent_vids = sort { $a <=> $b } map { map { $_->{vid} } @{ $_->{body}{inputs} } } grep { ($_->{status} // 0) == 204 } @$reqs;
is_deeply(\@sent_vids, [ grep { $_ != 1017 && $_ != 1083 } 1001 .. 1100 ], 'HubSpot accepted each good contact once');
# 2 x (bad contacts) x log2(batch) + 1
my $bound = int(2 * 2 * log(100) / log(2) + 1);
cmp_ok(scalar(@$reqs), '<=', $bound, "within 2 x 2 x log2(100) + 1 = $bound requests (" . scalar(@$reqs) . ")");

# a rejection of the whole request (a bad event) stops after one split: 3 requests
q1("TRUNCATE hubspot_events.outbox");
mock_reset();
q1("SELECT hubspot_events.pause()");
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('mock:bad_event=1', 'register', 'acme',"
  . " (SELECT jsonb_agg(jsonb_build_object('vid', v) ORDER BY v) FROM generate_series(2001, 2100) v))");
q1("SELECT hubspot_events.resume()");
ok(wait_until(sub { settled() }, 60), 'the bad event batch is settled');
is(q1("SELECT count(*) FILTER (WHERE status = 'failed' AND error_category = 'VALIDATION_ERROR') FROM hubspot_events.outbox"),
	'100', 'a bad event fails every row');
$reqs = mock_requests();
is(scalar(@$reqs), 3, 'a bad event over a batch of 100 costs 3 requests (the batch, then its two halves)');
is(scalar(grep { ($_->{rejected} // '') eq 'bad_event' } @$reqs), 3, 'all three rejected for the event');

ok(!$node->log_contains(qr/terminated by signal/, $log_offset), 'still no backend terminated by a signal');
$app->quit;
$node->stop;
done_testing();
