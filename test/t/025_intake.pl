# The outbox's intake (schema 0.9.0, src/intake.c): the extension's new rows
# wait in outbox_intake, with no index, and the worker claims them from
# sweeps in id order.  What must hold: each contact's rows reach HubSpot in
# commit order, across sweeps and beyond the rows one sweep keeps; a row that
# commits after younger ids were sent is still sent; a paced connection's
# backlog moves to outbox_rows; an operator's edit of an intake row is
# honoured; a row in flight stays in the intake and its outcome moves it to
# outbox_rows, sent or failed, recorded once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000 });
my $node = hs_node('intake', conf => [
	"hubspot_events.poll_interval_ms = 100",
	# the worker's own limiter opened (a drain at the extension's own pace)
	"hubspot_events.rate_limit = 4096",
	"hubspot_events.rate_limit_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
sub flush { is(q1("SELECT hubspot_events.flush('120 s')"), 't', $_[0]) }
sub vids { "(SELECT jsonb_agg(jsonb_build_object('vid', v)) FROM generate_series($_[0], $_[1]) v)" }

# Each vid's states as HubSpot received them, for one event (requests in the
# order the mock received them: one contact's rows are never in flight together)
sub states_by_vid
{
	my ($event) = @_;
	my %by;
	for my $r (@{ mock_requests() })
	{
		next unless ($r->{path}{externalEventId} // '') eq $event && ($r->{status} // 0) < 300;
		my ($state) = $r->{raw_path} =~ m{/([a-z]+)/upsert$};
		push @{ $by{ $_->{vid} } }, $state for @{ $r->{body}{inputs} || [] };
	}
	return \%by;
}

# ---------------------------------------------------------------------------
# 1. Three states of 8,000 contacts, 24,000 rows: more than one sweep keeps
# ---------------------------------------------------------------------------
q1("SELECT hubspot_events.pause()");
for my $state (qw(register attend cancel))
{
	q1("SELECT hubspot_events.hubspot_enqueue_subscriber('int-order', '$state', 'acme', " . vids(1, 8000) . ")");
}
is(q1("SELECT string_agg(tableoid::regclass::text || ':' || n, ',') FROM
         (SELECT tableoid, count(*) AS n FROM hubspot_events.outbox GROUP BY 1) t"),
	'hubspot_events.outbox_intake:24000', 'the enqueued rows wait in the intake');
q1("SELECT hubspot_events.resume()");
flush('the 24,000 rows are sent');
my $by = states_by_vid('int-order');
is(scalar(keys %$by), 8000, 'every contact reached HubSpot');
my @wrong = grep { join(',', @{ $by->{$_} }) ne 'register,attend,cancel' } sort { $a <=> $b } keys %$by;
is(scalar @wrong, 0, 'each contact\'s three states arrived once each, in commit order')
	or diag('first out of order: vid ' . $wrong[0] . ': ' . join(',', @{ $by->{ $wrong[0] } }));
is(q1("SELECT count(*) FROM ONLY hubspot_events.outbox_intake"), '0', 'the intake is empty');
is(q1("SELECT string_agg(status || ':' || n, ',') FROM (SELECT status, count(*) AS n FROM ONLY hubspot_events.outbox_rows
         WHERE external_event_id = 'int-order' GROUP BY 1) t"), 'sent:24000', 'every row is sent, in outbox_rows');

# ---------------------------------------------------------------------------
# 2. A row that commits after younger rows were sent is sent
# ---------------------------------------------------------------------------
mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000 });
my $late = $node->background_psql('postgres');
$late->query_safe("BEGIN");
my $late_id = $late->query_safe("SELECT (hubspot_events.hubspot_enqueue_subscriber('int-late', 'register', 'acme', '[{\"vid\": 1}]'))[1]");
# (20 keys: a transaction of more than 32 waits for every other enqueuer, order_lock.c)
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('int-late', 'register', 'acme', " . vids(2, 21) . ")");
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'int-late' AND status = 'sent'") == 20 }),
	'the rows committed first are sent');
cmp_ok($late_id, '<', q1("SELECT min(id) FROM hubspot_events.outbox WHERE external_event_id = 'int-late' AND status = 'sent'"),
	'the open transaction\'s row has the smaller id');
ok(!grep({ $_ == 1 } mock_vids('int-late')), 'an uncommitted row is not sent');
$late->query_safe("COMMIT");
$late->quit;
flush('the late row is sent');
is(scalar(grep { $_ == 1 } mock_vids('int-late')), 1, 'the row committed late reached HubSpot, once');

# ---------------------------------------------------------------------------
# 3. A connection whose pacing cannot send its backlog soon: the backlog
#    waits in outbox_rows, and the intake stays small
# ---------------------------------------------------------------------------
mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000 });
$node->append_conf('postgresql.conf', "hubspot_events.rate_limit = 5\nhubspot_events.rate_limit_interval_ms = 1000\n");
$node->reload;
usleep(300_000);
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('int-paced', 'register', 'acme', " . vids(1, 5000) . ")");
ok(wait_until(sub { q1("SELECT count(*) FROM ONLY hubspot_events.outbox_intake") == 0 }),
	'at 5 requests/s, 5,000 rows are moved out of the intake');
cmp_ok(q1("SELECT count(*) FROM ONLY hubspot_events.outbox_rows WHERE external_event_id = 'int-paced' AND status = 'pending'"),
	'>', 1000, 'most of them wait in outbox_rows, pending');
$node->append_conf('postgresql.conf', "hubspot_events.rate_limit = 4096\nhubspot_events.rate_limit_interval_ms = 100\n");
$node->reload;
flush('then they are sent');
my @paced = mock_vids('int-paced');
my %seen;
$seen{$_}++ for @paced;
is(scalar(keys %seen), 5000, 'every paced row reached HubSpot');
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'none twice');

# ---------------------------------------------------------------------------
# 4. An operator's edits of intake rows: a row marked failed by hand moves
#    to outbox_rows as it is, a deleted row is not sent
# ---------------------------------------------------------------------------
mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000 });
q1("SELECT hubspot_events.pause()");
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('int-edit', 'register', 'acme', " . vids(1, 3) . ")");
q1("UPDATE hubspot_events.outbox SET status = 'failed', error_message = 'by hand'
     WHERE external_event_id = 'int-edit' AND contact_key = '1'");
q1("DELETE FROM hubspot_events.outbox WHERE external_event_id = 'int-edit' AND contact_key = '2'");
q1("SELECT hubspot_events.resume()");
flush('the edited intake is drained');
is(join(',', sort(mock_vids('int-edit'))), '3', 'only the row nobody touched is sent');
is(q1("SELECT tableoid::regclass || ':' || status || ':' || error_message FROM hubspot_events.outbox
        WHERE external_event_id = 'int-edit' AND contact_key = '1'"),
	'hubspot_events.outbox_rows:failed:by hand', 'the row failed by hand is in outbox_rows, as the operator left it');

# ---------------------------------------------------------------------------
# 5. Rows in flight stay in the intake (the claim costs no index entry); the
#    record moves them to outbox_rows: sent, or failed with HubSpot's answer
# ---------------------------------------------------------------------------
mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000, delay_ms => 2000 });
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('int-flight', 'register', 'acme', " . vids(1, 3) . ")");
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE external_event_id = 'int-flight' AND status = 'sending'") == 3 }),
	'the three rows are in flight');
is(q1("SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM hubspot_events.outbox WHERE external_event_id = 'int-flight'"),
	'hubspot_events.outbox_intake', 'in flight, they are still in the intake');
flush('the rows in flight are recorded');
is(q1("SELECT string_agg(DISTINCT tableoid::regclass || ':' || status || ':' || attempts || ':' || http_status, ',')
         FROM hubspot_events.outbox WHERE external_event_id = 'int-flight'"),
	'hubspot_events.outbox_rows:sent:1:204', 'once sent, they are in outbox_rows, sent at the first attempt');
is(join(',', sort(mock_vids('int-flight'))), '1,2,3', 'each reached HubSpot once');

mock_reset();
mock_config({ rate_limit => 1000000, rate_window_ms => 1000 });
my $bad = 'mock:status=400;subcategory=MARKETING_EVENTS.INVALID_VID;tag=intake';
q1("SELECT hubspot_events.hubspot_enqueue_subscriber('$bad', 'register', 'acme', " . vids(1, 2) . ")");
flush('the refused rows are recorded');
is(q1("SELECT string_agg(tableoid::regclass || ':' || status || ':' || http_status || ':' || error_subcategory, ',' ORDER BY id)
         FROM hubspot_events.outbox WHERE external_event_id = '$bad'"),
	'hubspot_events.outbox_rows:failed:400:MARKETING_EVENTS.INVALID_VID,hubspot_events.outbox_rows:failed:400:MARKETING_EVENTS.INVALID_VID',
	'refused, they failed in outbox_rows, with HubSpot\'s answer');
# the request, then each contact alone (the split that finds which contact
# HubSpot refuses); the halves go out together, in either order
my @sent = map { join(',', map { $_->{vid} } @{ $_->{body}{inputs} }) } @{ mock_requests() };
is(join(' ', $sent[0] // '', sort @sent[1 .. $#sent]), '1,2 1 2',
	'the two rows, then each alone, not retried');

$node->stop;
done_testing();
