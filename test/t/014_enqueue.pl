# Commit order is id order: what HubSpot ends with for a contact is the state
# of the transaction that committed last, whatever the order of the enqueues,
# for the functions and the trigger; and statements of 100,000 rows still
# work, at once, with the default max_locks_per_transaction.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

mock_reset();
my $node = hs_node('enqueue', conf => ["hubspot_events.poll_interval_ms = 100", "track_commit_timestamp = on"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }

is(q1("SHOW max_locks_per_transaction"), '64', 'the default max_locks_per_transaction');
q1(q{
	CREATE TABLE attendance (webinar text, status text, vid bigint);
	CREATE TRIGGER attendance_to_hubspot AFTER INSERT ON attendance FOR EACH ROW
	  EXECUTE FUNCTION hubspot_events.sync_attendance('event_id=webinar', 'state=status', 'vid=vid', 'account_id:=acme');});

# The issue's interleaving: A enqueues register, B enqueues cancel for the same
# contact and tries to commit, A commits.  With the worker paused (it claims
# after both commits), HubSpot must end with the state of the last commit.
sub interleave
{
	my ($name, $event, $a_sql, $b_sql) = @_;
	q1("SELECT hubspot_events.pause()");
	my $a = $node->background_psql('postgres');
	my $b = $node->background_psql('postgres');
	$a->query_safe('BEGIN');
	my $xa = $a->query_safe('SELECT pg_current_xact_id()');
	$a->query_safe($a_sql);
	$b->query_safe('BEGIN');
	my $xb = $b->query_safe('SELECT pg_current_xact_id()');
	my $bpid = $b->query_safe('SELECT pg_backend_pid()');
	# B's write and commit, not waited for: it may block
	$b->query_until(qr/b_sent/, "\\echo b_sent\n$b_sql;\nCOMMIT;\n");
	ok(wait_until(sub { q1("SELECT count(*) FROM pg_locks WHERE pid = $bpid AND NOT granted") > 0 }, 5),
		"$name: B's write waits for A, which enqueued the same contact");
	$a->query_safe('COMMIT');
	$b->query_safe('SELECT 1');	# B's statements are done
	is($b->{stderr}, '', "$name: B's write succeeds once A committed");
	$a->quit;
	$b->quit;
	my $last = q1("SELECT CASE WHEN pg_xact_commit_timestamp('$xa'::xid8::text::xid) > pg_xact_commit_timestamp('$xb'::xid8::text::xid) THEN 'register' ELSE 'cancel' END");
	is(q1("SELECT hubspot_events.resume(); SELECT hubspot_events.flush('30 s')"), "\nt", "$name: flush drains");
	my @states = map { $_->{path}{subscriberState} }
	  grep { ($_->{path}{externalEventId} // '') eq $event && grep { ($_->{vid} // 0) == 501 } @{ $_->{body}{inputs} || [] } }
	  @{ mock_requests() };
	is(scalar(@states), 2, "$name: two requests for the contact");
	is($states[-1], $last, "$name: the last request carries the state of the last commit ($last)");
	is_deeply(\@states, [ 'register', 'cancel' ], "$name: register, then cancel (the order of the ids)");
}

interleave('functions', 'webinar-order-f',
	q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-order-f', 'register', 'acme', '{"vid": 501}')},
	q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-order-f', 'cancel', 'acme', '{"vid": 501}')});
interleave('trigger', 'webinar-order-t',
	q{INSERT INTO attendance VALUES ('webinar-order-t', 'register', 501)},
	q{INSERT INTO attendance VALUES ('webinar-order-t', 'cancel', 501)});
interleave('trigger then function', 'webinar-order-m',
	q{INSERT INTO attendance VALUES ('webinar-order-m', 'register', 501)},
	q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-order-m', 'cancel', 'acme', '{"vid": 501}')});

# ---- two statements of 100,000 rows each, at the same time: both succeed ----
q1("SELECT hubspot_events.pause()");
my $bulk = $node->background_psql('postgres');
$bulk->query_until(qr/bulk_sent/,
	"\\echo bulk_sent\nINSERT INTO attendance SELECT 'webinar-bulk-1', 'register', v FROM generate_series(1, 100000) v;\n");
my ($out, $err) = ('', '');
my $rc = $node->psql('postgres',
	"SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-bulk-2', 'register', 'acme', (SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series(1, 100000) v))",
	stdout => \$out, stderr => \$err);
is($rc, 0, 'the function enqueues 100,000 rows in one statement while the trigger does too');
is($err, '', 'without an error (no lock table exhaustion, no deadlock)');
$bulk->query_safe('SELECT 1');
is($bulk->{stderr}, '', 'the trigger enqueues 100,000 rows in one statement');
$bulk->quit;
is(q1("SELECT string_agg(format('%s:%s:%s', external_event_id, count, contacts), ',' ORDER BY external_event_id)
         FROM (SELECT external_event_id, count(*), count(DISTINCT contact_key) AS contacts FROM hubspot_events.outbox
                WHERE external_event_id LIKE 'webinar-bulk-%' GROUP BY 1) s"),
	'webinar-bulk-1:100000:100000,webinar-bulk-2:100000:100000', 'every row of both is in the outbox');
is(q1("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), '0', 'no advisory lock outlives its transaction');
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id LIKE 'webinar-bulk-%'; TRUNCATE attendance; VACUUM hubspot_events.outbox");

# ---- the write path's cost: a 10,000-row INSERT through sync_attendance, median of 5 ----
my @ms;
for my $i (1 .. 5)
{
	my $t = $node->safe_psql('postgres', q{
		\timing on
		INSERT INTO attendance SELECT 'webinar-cost', 'register', v FROM generate_series(1, 10000) v;});
	push @ms, $1 if $t =~ /Time: ([0-9.]+) ms/;
	q1("DELETE FROM hubspot_events.outbox WHERE external_event_id = 'webinar-cost'; TRUNCATE attendance; VACUUM hubspot_events.outbox");
}
@ms = sort { $a <=> $b } @ms;
is(scalar(@ms), 5, 'five timed inserts');
diag(sprintf('10,000-row INSERT through sync_attendance: median %.1f ms (runs: %s)', $ms[2], join(', ', @ms)));
q1("SELECT hubspot_events.resume()");

$node->stop;
done_testing();
