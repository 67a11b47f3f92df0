# Issue 11, item 11 (the input half): a role that may only enqueue cannot
# stall the queue with an oversized input.  The issue's 8 MB event id and
# 20 MB properties object are refused at the call (nothing written, nothing
# sent), cheaply, and a normal row enqueued after them is delivered; the
# trigger records an oversized row as a failed sync that is never sent.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;

mock_reset();
my $node = hs_node('limits', conf => ["hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }

q1(q{
	CREATE ROLE enq LOGIN;
	GRANT USAGE ON SCHEMA hubspot_events TO enq;
	GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb, text),
	                          hubspot_events.hubspot_enqueue_event(text, text, jsonb, text) TO enq;
	CREATE TABLE big (j jsonb);
	GRANT SELECT ON big TO enq;
	-- the issue's 20 MB properties object, stored (toasted and compressed)
	INSERT INTO big SELECT jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('x', 20 * 1024 * 1024)));
	CREATE TABLE attendance (webinar text, status text, vid bigint, props jsonb);
	CREATE TRIGGER attendance_to_hubspot AFTER INSERT ON attendance FOR EACH ROW
	  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=webinar', 'state=status', 'vid=vid',
	    'account_id:=acme', 'properties=props');
	GRANT INSERT ON attendance TO enq;});

# as the enqueue-only role, with the SQLSTATE in the message and the time
sub as_enq
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', "\\set VERBOSITY verbose\n\\timing on\n$sql",
		stdout => \$out, stderr => \$err, extra_params => ['-U', 'enq']);
	my ($ms) = $out =~ /Time: ([0-9.]+) ms/;
	return ($err, $ms);
}

my $log_start = -s $node->logfile;

# ---- the issue's inputs, refused at the call ----
my ($err, $ms) = as_enq(q{SELECT hubspot_events.hubspot_enqueue_event(repeat('e', 8 * 1024 * 1024), 'acme',
	'{"eventName": "A", "eventOrganizer": "Acme"}')});
like($err, qr/ERROR:  22023: external_event_id is too long \(8388608 bytes; the limit is 1000 bytes\)/,
	'an 8 MB event id is refused at the call with 22023');
diag(sprintf('8 MB event id (built in the statement) refused in %.1f ms', $ms // -1));

($err, $ms) = as_enq(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-lim', 'register', 'acme', j) FROM big});
like($err, qr/ERROR:  54000: contacts is too large \(20971\d{3} bytes as jsonb; the limit is 16777216 bytes\)/,
	'a stored 20 MB properties object is refused at the call with 54000');
ok(defined $ms && $ms < 1000, 'and quickly: it is never detoasted');
diag(sprintf('20 MB properties object (stored, toasted) refused in %.1f ms', $ms // -1));

($err, $ms) = as_enq(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-lim', 'register', 'acme',
	jsonb_build_object('vid', 1, 'properties', jsonb_build_object('p', repeat('x', 20 * 1024 * 1024))))});
like($err, qr/ERROR:  54000: contacts is too large/, 'a 20 MB properties object built in the call is refused too');
diag(sprintf('20 MB properties object (built in the statement, jsonb building included) refused in %.1f ms', $ms // -1));

($err, $ms) = as_enq(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-lim', 'register', 'acme',
	jsonb_build_object('vid', 1, 'properties', (SELECT jsonb_object_agg('p' || g, g) FROM generate_series(1, 100000) g)))});
like($err, qr/ERROR:  54000: contacts\[0\]\.properties has too many properties \(100000; the limit is 1000\)/,
	'100,000 small properties are refused by their count, before they are read');

is(q1("SELECT count(*) FROM hubspot_events.outbox"), '0', 'nothing was written to the outbox');

# ---- the trigger: an oversized row is a failed sync, the write goes on ----
($err) = as_enq(q{INSERT INTO attendance VALUES (repeat('e', 8 * 1024 * 1024), 'register', 1, NULL),
	('webinar-lim', 'register', 2, jsonb_build_object('p', repeat('x', 20 * 1024 * 1024)))});
is($err, '', 'the application writes its rows');
is(q1("SELECT string_agg(format('%s %s', octet_length(external_event_id), error_message), ' | ' ORDER BY id)
         FROM hubspot_events.outbox WHERE status = 'failed' AND error_category = 'LOCAL_VALIDATION_ERROR'"),
	'8388608 external_event_id is too long (8388608 bytes; the limit is 1000 bytes) | '
	  . '11 contacts[0].properties.p is too long (20971520 bytes; the limit is 65536 bytes)',
	'the trigger records both as failed syncs, with the limit named');

# ---- a normal row enqueued after them is delivered, and nothing else is sent ----
($err) = as_enq(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-lim', 'attend', 'acme', '{"vid": 3}')});
is($err, '', 'a normal row is enqueued');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE status = 'sent'") eq '1' }),
	'the normal row is sent');
my @reqs = @{ mock_requests() };
is(scalar(@reqs), 1, 'HubSpot received one request');
is(join(',', map { ($_->{path}{externalEventId} // '') . ':' . join('/', mock_vids()) } @reqs),
	'webinar-lim:3', 'the normal row only');
is(q1("SELECT count(*) FROM hubspot_events.outbox WHERE status IN ('pending', 'sending')"), '0',
	'no row is left pending or sending');
my $worker_pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'hubspot_events worker'");
ok($worker_pid =~ /^\d+$/, 'the worker runs');
my $log = substr(slurp_file($node->logfile), $log_start);
my @worker_errors = $log =~ /(\[$worker_pid\][^\n]*(?:ERROR|WARNING)[^\n]*)/g;
is(join("\n", @worker_errors), '', 'the worker logged no error');

$node->stop;
done_testing();
