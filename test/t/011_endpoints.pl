# The worker and the endpoints: contacts given by email go to email-upsert,
# never in one request with vids; hubspot_events.endpoint = attendance sends
# to the create endpoints, and their per-contact errors land on the rows
# they name, while an error that names no contact fails the whole request.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('endpoints', conf => ["hubspot_events.poll_interval_ms = 60000"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub sent_of { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = '$_[0]' AND status IN ('sent', 'failed')") }

# ---- vids and emails in one transaction: two requests, never mixed ----
q1(q{SELECT hubspot_events.pause()});
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-x1', 'register', 'acme',
	  '[{"vid": 1}, {"email": "a@example.com", "contactProperties": {"firstname": "A"}}, {"vid": 2}, {"email": "B@example.com"}]')});
q1(q{SELECT hubspot_events.resume()});
ok(wait_until(sub { sent_of('webinar-x1') eq '4' }), 'four rows done');
my $reqs = mock_requests();
is(scalar @$reqs, 2, 'two requests: one per kind of contact');
my ($byvid) = grep { $_->{raw_path} =~ m{/register/upsert$} } @$reqs;
my ($bymail) = grep { $_->{raw_path} =~ m{/register/email-upsert$} } @$reqs;
is_deeply([ map { $_->{vid} } @{ $byvid->{body}{inputs} } ], [1, 2], 'the vids together');
is_deeply([ map { $_->{email} } @{ $bymail->{body}{inputs} } ], ['a@example.com', 'B@example.com'], 'the emails together');
is_deeply($bymail->{body}{inputs}[0]{contactProperties}, { firstname => 'A' }, 'contactProperties sent');
is_deeply([ map { $_->{spec_errors} } @$reqs ], [ [], [] ], 'both match the OpenAPI spec');
is(q1("SELECT string_agg(status, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-x1'"),
	'sent,sent,sent,sent', 'all sent');

# ---- one email contact's changes in commit order, whatever its letter case ----
mock_reset();
q1(q{BEGIN;
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-x2', 'register', 'acme', '{"email": "Carol@Example.com"}');
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-x2', 'cancel', 'acme', '{"email": "carol@example.com"}');
	COMMIT;});
ok(wait_until(sub { sent_of('webinar-x2') eq '2' }), 'both changes sent');
$reqs = [ sort { $a->{seq} <=> $b->{seq} } @{ mock_requests() } ];
is_deeply([ map { $_->{path}{subscriberState} } @$reqs ], ['register', 'cancel'], 'register then cancel: one contact, one at a time');

# ---- the attendance endpoints ----
$node->append_conf('postgresql.conf', "hubspot_events.endpoint = 'attendance'");
$node->reload;
ok(wait_until(sub { q1("SELECT worker_settings_loaded_at > now() - interval '30 s' FROM hubspot_events.status") eq 't' }), 'worker reloaded');
sleep 1;
mock_reset();
mock_config({ bad_vids => '12', bad_emails => 'bad@example.com' });
q1(q{SELECT hubspot_events.pause()});
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-x3', 'attend', 'acme',
	  '[{"vid": 11, "properties": {"joinedAt": "2026-03-01T17:00:00Z", "leftAt": "2026-03-01T17:45:00Z"}}, {"vid": 12}, {"vid": 13},
	    {"email": "ok@example.com"}, {"email": "bad@example.com"}]')});
q1(q{SELECT hubspot_events.resume()});
ok(wait_until(sub { sent_of('webinar-x3') eq '5' }), 'five rows done');
$reqs = mock_requests();
is_deeply([ sort map { $_->{raw_path} } @$reqs ],
	['/marketing/marketing-events/2026-09/attendance/webinar-x3/attend/create',
	 '/marketing/marketing-events/2026-09/attendance/webinar-x3/attend/email-create'], 'create and email-create');
is_deeply([ map { $_->{spec_errors} } @$reqs ], [ [], [] ], 'both match the OpenAPI spec');
my ($create) = grep { $_->{raw_path} =~ m{/create$} } @$reqs;
is_deeply($create->{body}{inputs}[0]{properties}, { joinedAt => '2026-03-01T17:00:00.000Z', leftAt => '2026-03-01T17:45:00.000Z' },
	'joinedAt and leftAt pass through');
is(q1(q{SELECT string_agg(format('%s:%s:%s', contact_key, status, coalesce(error_category, '-')), ',' ORDER BY id)
	  FROM hubspot_events.outbox WHERE external_event_id = 'webinar-x3'}),
	'11:sent:-,12:failed:OBJECT_NOT_FOUND,13:sent:-,ok@example.com:sent:-,bad@example.com:failed:VALIDATION_ERROR',
	'each error lands on the row it names; the others are sent');
is(q1(q{SELECT format('%s|%s|%s', http_status, error_message, error_body->'context'->'vid'->>0)
	  FROM hubspot_events.outbox WHERE external_event_id = 'webinar-x3' AND contact_key = '12'}),
	'200|Contact with vid 12 does not exist|12', "the row keeps HubSpot's words and its error");
is(q1(q{SELECT count(DISTINCT correlation_id) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-x3' AND correlation_id IS NOT NULL}),
	'2', "every row keeps its request's correlation id");
is(q1(q{SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-x3' AND attempts <> 1}), '0',
	'one attempt each: nothing was resent');

# an error that names no contact fails every row of its request
mock_reset();
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:batch_error=1', 'register', 'acme', '[{"vid": 21}, {"vid": 22}]')});
ok(wait_until(sub { sent_of('mock:batch_error=1') eq '2' }), 'the two rows are done');
is(q1(q{SELECT string_agg(format('%s:%s', status, error_category), ',' ORDER BY id) FROM hubspot_events.outbox
	  WHERE external_event_id = 'mock:batch_error=1'}),
	'failed:INTERNAL_ERROR,failed:INTERNAL_ERROR', 'both rows failed with the error');
is(scalar @{ mock_requests() }, 1, 'one request');

$node->stop;
done_testing();
