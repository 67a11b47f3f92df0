# The worker sends the marketing events themselves: an event created in the
# same transaction as its first registrations reaches HubSpot before them;
# event upserts are coalesced; cancel and complete go out in commit order;
# HubSpot's answers land on the event's rows.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('events', conf => ["hubspot_events.poll_interval_ms = 60000"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }

# ---- a new webinar and its first registrations, in one transaction ----
q1(q{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-e1', 'register', 'acme', '[{"vid": 1}, {"vid": 2}]');
	SELECT hubspot_events.hubspot_enqueue_event('webinar-e1', 'acme',
	  '{"eventName": "Spring webinar", "eventOrganizer": "Acme", "startDateTime": "2026-03-01T17:00:00Z",
	    "customProperties": {"room": "A"}}');
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-e1', 'register', 'acme', '[{"vid": 3}]');
	COMMIT;});
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") eq '4' }),
	'the event and its three registrations are sent');
my $reqs = mock_requests();
my @ops = map { $_->{operation} =~ /events\/upsert_upsert$/ ? 'event' : $_->{operation} =~ /upsertByContactId$/ ? 'subscriber' : $_->{operation} } @$reqs;
is_deeply([ map { $_->{spec_errors} } @$reqs ], [ map { [] } @$reqs ], 'every request matches the OpenAPI spec');
# the two subscriber rows enqueued before the event in the same transaction
# are older, but a subscriber row waits for an older event upsert only: they
# may go first; vid 3 (enqueued after the event) must not
my ($event_seq) = map { $_->{seq} } grep { $_->{operation} =~ /events\/upsert_upsert$/ } @$reqs;
ok(defined $event_seq, 'the event upsert reached the mock');
my @after = grep { $_->{operation} =~ /upsertByContactId$/ && grep { $_->{vid} == 3 } @{ $_->{body}{inputs} } } @$reqs;
is(scalar @after, 1, 'vid 3 was sent once');
cmp_ok($after[0]{seq}, '>', $event_seq, 'the registration enqueued after the event reached HubSpot after the event');
my ($ev) = grep { $_->{operation} =~ /events\/upsert_upsert$/ } @$reqs;
is($ev->{body}{inputs}[0]{eventName}, 'Spring webinar', 'the event as given');
is($ev->{body}{inputs}[0]{startDateTime}, '2026-03-01T17:00:00.000Z', 'start as UTC ISO 8601');
is($ev->{body}{inputs}[0]{externalEventId}, 'webinar-e1', 'the external event id in the body');
is($ev->{body}{inputs}[0]{customProperties}[0]{value}, 'A', 'a custom property');

# ---- an event and all its registrations in one transaction, event first ----
mock_reset();
q1(q{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_event('webinar-e2', 'acme', '{"eventName": "Summer", "eventOrganizer": "Acme"}');
	SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-e2', 'register', 'acme',
	  (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 50) v));
	COMMIT;});
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-e2' AND status = 'sent'") eq '51' }),
	'event and 50 registrations sent');
$reqs = mock_requests();
is($reqs->[0]{operation}, 'post-/marketing/marketing-events/2026-09/events/upsert_upsert', 'the first request is the event upsert');
is(scalar(grep { $_->{operation} =~ /upsertByContactId$/ && $_->{seq} < $reqs->[0]{seq} } @$reqs), 0,
	'no registration before the event');

# ---- several events coalesced into one upsert request ----
mock_reset();
q1(q{SELECT hubspot_events.pause()});
q1(q{SELECT hubspot_events.hubspot_enqueue_event('webinar-m' || i, 'acme', jsonb_build_object('eventName', 'M' || i, 'eventOrganizer', 'Acme'))
	   FROM generate_series(1, 5) i});
q1(q{SELECT hubspot_events.resume()});
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id LIKE 'webinar-m%' AND status = 'sent'") eq '5' }),
	'five events sent');
$reqs = mock_requests();
is(scalar @$reqs, 1, 'five event upserts in one request');
is(scalar @{ $reqs->[0]{body}{inputs} }, 5, 'with five inputs');

# ---- complete, then cancel, in commit order; each its own call ----
mock_reset();
q1(q{
	BEGIN;
	SELECT hubspot_events.hubspot_enqueue_complete_event('webinar-m1', 'acme', '2026-03-01 17:00+00', '2026-03-01 18:00+00');
	SELECT hubspot_events.hubspot_enqueue_cancel_event('webinar-m2', 'acme');
	SELECT hubspot_events.hubspot_enqueue_cancel_event('webinar-m1', 'acme');
	COMMIT;});
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE kind IN ('event_complete', 'event_cancel') AND status = 'sent'") eq '3' }),
	'complete and cancels sent');
$reqs = mock_requests();
is(scalar @$reqs, 3, 'three calls');
my @m1 = map { $_->{raw_path} } grep { $_->{raw_path} =~ m{/webinar-m1/} } sort { $a->{seq} <=> $b->{seq} } @$reqs;
is_deeply(\@m1, ['/marketing/marketing-events/2026-09/events/webinar-m1/complete',
	'/marketing/marketing-events/2026-09/events/webinar-m1/cancel'], "one event's calls in commit order");
my ($complete) = grep { $_->{raw_path} =~ /complete$/ } @$reqs;
is_deeply($complete->{body}, { startDateTime => '2026-03-01T17:00:00.000Z', endDateTime => '2026-03-01T18:00:00.000Z' }, 'the complete body');
is_deeply([ map { $_->{spec_errors} } @$reqs ], [ [], [], [] ], 'the calls match the OpenAPI spec');

# ---- HubSpot's error on an event row: stored on that row ----
mock_reset();
q1(q{SELECT hubspot_events.hubspot_enqueue_cancel_event('mock:status=404', 'acme')});
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=404'") eq 'failed' }),
	'a 404 fails the cancel row');
is(q1("SELECT format('%s %s %s', kind, http_status, error_category) FROM hubspot_events.failed_syncs WHERE external_event_id = 'mock:status=404'"),
	'event_cancel 404 OBJECT_NOT_FOUND', 'failed_syncs shows the kind and HubSpot\'s category');
my $cid = (mock_requests())->[0]{correlation_id};
is(q1("SELECT correlation_id FROM hubspot_events.outbox WHERE external_event_id = 'mock:status=404'"), $cid,
	"the row keeps HubSpot's correlationId");

# ---- the sync_event trigger, end to end ----
mock_reset();
q1(q{
	CREATE TABLE webinars (id text PRIMARY KEY, title text, host text, starts timestamptz);
	CREATE TABLE registrations (webinar text, vid bigint, state text);
	CREATE TRIGGER w AFTER INSERT OR UPDATE OR DELETE ON webinars FOR EACH ROW
	  EXECUTE FUNCTION hubspot_events.sync_event('event_id=id', 'account_id:=acme', 'name=title',
	    'organizer=host', 'start=starts', 'on_delete=cancel');
	CREATE TRIGGER r AFTER INSERT OR UPDATE OR DELETE ON registrations FOR EACH ROW
	  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=webinar', 'state=state', 'vid=vid', 'account_id:=acme');
	BEGIN;
	INSERT INTO webinars VALUES ('webinar-t1', 'Autumn', 'Acme', '2026-10-01 16:00+00');
	INSERT INTO registrations VALUES ('webinar-t1', 7, 'register');
	COMMIT;
	DELETE FROM webinars;});
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-t1' AND status = 'sent'") eq '3' }),
	'trigger rows sent');
$reqs = [ sort { $a->{seq} <=> $b->{seq} } @{ mock_requests() } ];
is($reqs->[0]{raw_path}, '/marketing/marketing-events/2026-09/events/upsert', 'the event first');
# the cancel waits for the event's upsert, not for its registrations: those
# two may arrive in either order
is_deeply([ sort map { $_->{raw_path} } @$reqs[1 .. $#$reqs] ],
	['/marketing/marketing-events/2026-09/events/webinar-t1/cancel',
	 '/marketing/marketing-events/2026-09/events/webinar-t1/register/upsert'],
	'then the registration and the cancel');

$node->stop;
done_testing();
