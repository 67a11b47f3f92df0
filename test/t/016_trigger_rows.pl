# What the triggers send for rows of char(n) columns, and for rows replaced
# in one transaction (issue 11, items 18 and 19), as the mock HubSpot
# receives it through the worker.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('trigger_rows', conf => ["hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub flush { is(q1("SELECT hubspot_events.flush('30 s')"), 't', $_[0] // 'flush drains') }
# each request as "state:raw path?account:vids or emails"
sub requests
{
	return [ map {
		"$_->{path}{subscriberState}:$_->{raw_path}?$_->{query}{externalAccountId}:"
		  . join(',', map { $_->{vid} // $_->{email} } @{ $_->{body}{inputs} })
	} @{ mock_requests() } ];
}

# ---- item 18: char(n) ids, emails and vids, sent as col::text gives them ----
q1(q{
	CREATE DOMAIN padded AS char(16);
	CREATE TABLE att_char (id int PRIMARY KEY, event char(24), account padded, state char(12),
	                       vid char(12), email char(40));
	CREATE TRIGGER by_vid AFTER INSERT OR UPDATE OR DELETE ON att_char
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=event', 'state=state', 'vid=vid', 'account_id=account', 'on_delete=cancel');
	CREATE TRIGGER by_email AFTER INSERT ON att_char
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=event', 'state=state', 'email=email', 'account_id=account');});
q1(q{INSERT INTO att_char VALUES (1, 'evt-char', 'acme', 'register', '0001601', 'Ann@Example.com')});
flush();
is_deeply([ sort @{ requests() } ],
	[ 'register:/marketing/marketing-events/2026-09/events/evt-char/register/email-upsert?acme:Ann@Example.com',
	  'register:/marketing/marketing-events/2026-09/events/evt-char/register/upsert?acme:1601' ],
	'char(n) event id, account and state sent without padding; the char(n) vid and email are sent');
is(q1("SELECT count(*) FROM hubspot_events.failed_syncs WHERE source = 'public.att_char'"), '0',
	'no char(n) row is recorded invalid');

# ---- item 19: a row moved to another partition, or deleted and inserted again ----
q1(q{
	CREATE TABLE att_moved (id int, event text, state text, vid bigint)
	  PARTITION BY LIST (state);
	CREATE TABLE att_moved_reg PARTITION OF att_moved FOR VALUES IN ('register');
	CREATE TABLE att_moved_att PARTITION OF att_moved FOR VALUES IN ('attend');
	CREATE TRIGGER att_moved_sync AFTER INSERT OR UPDATE OR DELETE ON att_moved
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=event', 'state=state', 'vid=vid', 'account_id:=acme', 'on_delete=cancel');
	INSERT INTO att_moved VALUES (1, 'evt-moved', 'register', 1701), (2, 'evt-moved', 'register', 1702);});
flush('the registrations are sent');
mock_reset();
q1(q{UPDATE att_moved SET state = 'attend' WHERE id = 1});
flush();
is_deeply(requests(), [ 'attend:/marketing/marketing-events/2026-09/events/evt-moved/attend/upsert?acme:1701' ],
	'a row moved to another partition: its new state is sent, no cancel');
mock_reset();
q1(q{BEGIN; DELETE FROM att_moved WHERE id = 2;
	INSERT INTO att_moved VALUES (2, 'evt-moved', 'attend', 1702); COMMIT;});
flush();
is_deeply(requests(), [ 'attend:/marketing/marketing-events/2026-09/events/evt-moved/attend/upsert?acme:1702' ],
	'a row deleted and inserted again in one transaction: no cancel');
mock_reset();
q1(q{DELETE FROM att_moved WHERE id = 2});
flush();
is_deeply(requests(), [ 'cancel:/marketing/marketing-events/2026-09/events/evt-moved/cancel/upsert?acme:1702' ],
	'a delete alone still sends its cancel');

$node->stop;
done_testing();
