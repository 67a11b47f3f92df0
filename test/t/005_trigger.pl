# An attendance table with sync_attendance: what the application commits
# reaches HubSpot through the worker; rollbacks and invalid rows do not.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('trigger', conf => ["hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub flush { is(q1("SELECT hubspot_events.flush('30 s')"), 't', $_[0] // 'flush drains') }

q1(q{
	CREATE TABLE attendance (
	  id serial PRIMARY KEY, webinar text, status text, hubspot_vid bigint,
	  checked_in timestamptz, extra jsonb, note text);
	CREATE TRIGGER attendance_to_hubspot
	  AFTER INSERT OR UPDATE OR DELETE ON attendance
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=webinar', 'state=status', 'vid=hubspot_vid', 'account_id:=acme',
	    'at=checked_in', 'properties=extra', 'on_delete=cancel');
	CREATE ROLE app LOGIN;
	GRANT SELECT, INSERT, UPDATE, DELETE ON attendance TO app;
	GRANT USAGE ON SEQUENCE attendance_id_seq TO app;});

# the application writes as a role without any privilege on the outbox
sub app { $node->safe_psql('postgres', $_[0], extra_params => ['-U', 'app']) }

# ---- insert ----
app(q{INSERT INTO attendance (webinar, status, hubspot_vid, checked_in, extra)
      VALUES ('webinar-t', 'registered', 501, '2026-03-01 17:00:00+00', '{"source": "landing"}'),
             ('webinar-t', 'registered', 502, NULL, NULL)});
flush();
my $reqs = mock_requests();
is(scalar @$reqs, 1, 'two inserted rows: one request');
is($reqs->[0]{raw_path}, '/marketing/marketing-events/2026-09/events/webinar-t/register/upsert', 'the registration');
is_deeply($reqs->[0]{query}, { externalAccountId => 'acme' }, 'the constant account id');
is_deeply($reqs->[0]{body}{inputs}[0], { vid => 501, interactionDateTime => 1772384400000, properties => { source => 'landing' } },
	'the row, mapped and normalised');
is_deeply($reqs->[0]{spec_errors}, [], 'valid against the spec');

# ---- update: a mapped column, an unmapped one, the contact itself ----
mock_reset();
app(q{UPDATE attendance SET status = 'attended' WHERE hubspot_vid = 501});
app(q{UPDATE attendance SET note = 'called' WHERE hubspot_vid = 502});
flush();
is_deeply([ map { "$_->{path}{subscriberState}:" . join(',', map { $_->{vid} } @{ $_->{body}{inputs} }) } @{ mock_requests() } ],
	['attend:501'], 'a state change is sent; an update of an unmapped column is not');
mock_reset();
app(q{UPDATE attendance SET hubspot_vid = 503 WHERE hubspot_vid = 502});
flush();
# two contacts, so two requests that may arrive in either order (order is per contact)
is_deeply([ sort map { "$_->{path}{subscriberState}:" . join(',', map { $_->{vid} } @{ $_->{body}{inputs} }) } @{ mock_requests() } ],
	['cancel:502', 'register:503'], 'changing the contact: a cancel for the old contact and the new row are sent');
is(q1("SELECT string_agg(subscriber_state || ':' || contact_key, ',' ORDER BY id) FROM hubspot_events.outbox WHERE contact_key IN ('502', '503') AND id > (SELECT max(id) FROM hubspot_events.outbox WHERE contact_key = '501')"),
	'cancel:502,register:503', 'enqueued as a DELETE of the old row, then an INSERT of the new one');

# ---- delete ----
mock_reset();
app(q{DELETE FROM attendance WHERE hubspot_vid = 501});
flush();
is_deeply([ map { "$_->{path}{subscriberState}:" . join(',', map { $_->{vid} } @{ $_->{body}{inputs} }) } @{ mock_requests() } ],
	['cancel:501'], 'on_delete=cancel: a delete sends a cancel');

# ---- rollback sends nothing ----
mock_reset();
$node->safe_psql('postgres', q{BEGIN; INSERT INTO attendance (webinar, status, hubspot_vid) VALUES ('webinar-rb', 'registered', 601); ROLLBACK;},
	extra_params => ['-U', 'app']);
q1("SELECT hubspot_events.wake()");
flush();
is(scalar @{ mock_requests() }, 0, 'a rolled-back insert sends nothing');

# ---- invalid values never break the write, and are never sent ----
mock_reset();
my ($ret, $out, $err) = $node->psql('postgres',
	q{INSERT INTO attendance (webinar, status, hubspot_vid) VALUES ('webinar-t', 'maybe', 701), (NULL, 'attended', 702)},
	extra_params => ['-U', 'app']);
is($ret, 0, "the application's insert succeeds") or diag($err);
flush();
is(scalar @{ mock_requests() }, 0, 'nothing is sent for invalid rows');
is(q1(q{SELECT string_agg(format('%s|%s|%s', coalesce(subscriber_state, '-'), error_category, error_message), E'\n' ORDER BY id)
          FROM hubspot_events.failed_syncs WHERE source = 'public.attendance'}),
	qq{maybe|LOCAL_VALIDATION_ERROR|invalid subscriber_state "maybe"\nattended|LOCAL_VALIDATION_ERROR|external_event_id must not be null},
	'recorded as failed syncs with the reason and the raw values');
is(app("SELECT count(*) FROM attendance WHERE hubspot_vid IN (701, 702)"), "2", "the invalid rows are in the application table");

# ---- backfill: rows that were there before the trigger ----
mock_reset();
q1(q{
	CREATE TABLE legacy (webinar text, status text, vid bigint PRIMARY KEY);
	INSERT INTO legacy SELECT 'webinar-legacy', 'attended', v FROM generate_series(1, 25) v;
	CREATE TRIGGER legacy_to_hubspot AFTER INSERT OR UPDATE OR DELETE ON legacy
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=webinar', 'state=status', 'vid=vid', 'account_id:=acme');});
is(q1("CALL hubspot_events.backfill('legacy', 'legacy_to_hubspot', 10)"), '25', 'backfill enqueues the existing rows');
flush();
is_deeply([ sort { $a <=> $b } mock_vids('webinar-legacy') ], [ 1 .. 25 ], 'and the worker sends them');

$node->stop;
done_testing();
