# The security proof: who may read or redirect the token, TLS, the
# documented GRANTs, SQL injection through triggers and arguments, and no
# token in any log line (at debug5 too), error message or table.
#
# It runs its own mock HubSpot over HTTPS, with a throwaway CA made here
# with the openssl command line, and a token of its own that it rotates
# (the node's token file and the mock's in step).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# ---------------------------------------------------------------------------
# The lists this test is about.  A setting or a function that is not listed
# here fails the test: add it, with its class, and it is checked below.
# ---------------------------------------------------------------------------

# Every hubspot_events setting, by what it is to the token:
#   secret_file  names a file whose content is a secret: hidden from roles
#                without pg_read_all_settings, changed only by superusers
#   routing      decides where a secret goes or how the peer is checked:
#                changed only by superusers
#   plain        neither
my %settings = (
	'hubspot_events.access_token_file' => 'secret_file',
	'hubspot_events.api_base_url' => 'routing',
	'hubspot_events.ca_file' => 'routing',
	'hubspot_events.database' => 'plain',
	'hubspot_events.databases' => 'plain',
	'hubspot_events.max_databases' => 'plain',
	'hubspot_events.request_timeout_ms' => 'plain',
	'hubspot_events.batch_size' => 'plain',
	'hubspot_events.poll_interval_ms' => 'plain',
	'hubspot_events.max_concurrency' => 'plain',
	'hubspot_events.max_attempts' => 'plain',
	'hubspot_events.retry_base_ms' => 'plain',
	'hubspot_events.retry_max_ms' => 'plain',
	'hubspot_events.sent_retention' => 'plain',
	'hubspot_events.vacuum_after' => 'plain',
	'hubspot_events.rate_limit' => 'plain',
	'hubspot_events.rate_limit_interval_ms' => 'plain',
	'hubspot_events.daily_reset_time' => 'plain',
	'hubspot_events.endpoint' => 'plain',
	'hubspot_events.api_version' => 'plain',   # a path segment from a fixed set of forms (checked)
	'hubspot_events.dry_run' => 'plain',       # a session's own direct calls send nothing
	'hubspot_events.progress_notice_ms' => 'plain',
	'hubspot_events.oauth_client_id' => 'plain',
	'hubspot_events.oauth_client_secret_file' => 'secret_file',
	'hubspot_events.oauth_refresh_token_file' => 'secret_file',
	'hubspot_events.secret_key_file' => 'secret_file',
	'hubspot_events.oauth_token_url' => 'routing',
);

# Every function of the extension: its signature, who may call it, and a
# call.  Who:
#   enqueue    the application (documented GRANT)
#   trigger    the application, to create its triggers (documented GRANT)
#   direct     sends with the company's token now: only roles granted it
#   operator   the operator role (documented GRANT)
#   manage     pause, resume, purges, backfill: only roles granted them
#   internal   the worker and superusers
my @functions = (
	[ 'hubspot_events.hubspot_upsert_subscriber(text,text,text,jsonb,text)', 'direct',
		q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-sec', 'register', 'acme', '{"vid": 1}')} ],
	[ 'hubspot_events.hubspot_enqueue_subscriber(text,text,text,jsonb,text)', 'enqueue',
		q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-sec', 'register', 'acme', '{"vid": 1}')} ],
	[ 'hubspot_events.sync_attendance()', 'trigger', q{SELECT hubspot_events.sync_attendance()} ],
	[ 'hubspot_events.hubspot_upsert_event(text,text,jsonb,text)', 'direct',
		q{SELECT hubspot_events.hubspot_upsert_event('webinar-sec', 'acme', '{"eventName": "S", "eventOrganizer": "Acme"}')} ],
	[ 'hubspot_events.hubspot_cancel_event(text,text,text)', 'direct',
		q{SELECT hubspot_events.hubspot_cancel_event('webinar-sec', 'acme')} ],
	[ 'hubspot_events.hubspot_complete_event(text,text,timestamptz,timestamptz,text)', 'direct',
		q{SELECT hubspot_events.hubspot_complete_event('webinar-sec', 'acme', now(), now())} ],
	[ 'hubspot_events.hubspot_enqueue_event(text,text,jsonb,text)', 'enqueue',
		q{SELECT hubspot_events.hubspot_enqueue_event('webinar-sec', 'acme', '{"eventName": "S", "eventOrganizer": "Acme"}')} ],
	[ 'hubspot_events.hubspot_enqueue_cancel_event(text,text,text)', 'enqueue',
		q{SELECT hubspot_events.hubspot_enqueue_cancel_event('webinar-sec', 'acme')} ],
	[ 'hubspot_events.hubspot_enqueue_complete_event(text,text,timestamptz,timestamptz,text)', 'enqueue',
		q{SELECT hubspot_events.hubspot_enqueue_complete_event('webinar-sec', 'acme', now(), now())} ],
	[ 'hubspot_events.sync_event()', 'trigger', q{SELECT hubspot_events.sync_event()} ],
	[ 'hubspot_events.retry_failed(bigint[],boolean)', 'operator', q{SELECT hubspot_events.retry_failed()} ],
	[ 'hubspot_events.wake()', 'operator', q{SELECT hubspot_events.wake()} ],
	[ 'hubspot_events.flush(interval)', 'operator', q{SELECT hubspot_events.flush('1 s')} ],
	[ 'hubspot_events.worker_info()', 'operator', q{SELECT * FROM hubspot_events.worker_info()} ],
	[ 'hubspot_events.worker_api_version()', 'operator', q{SELECT hubspot_events.worker_api_version()} ],
	[ 'hubspot_events.metrics_counters()', 'operator', q{SELECT * FROM hubspot_events.metrics_counters()} ],
	[ 'hubspot_events.metrics_text()', 'operator', q{SELECT hubspot_events.metrics_text()} ],
	[ 'hubspot_events.attempts(bigint)', 'operator', q{SELECT * FROM hubspot_events.attempts(1)} ],
	[ 'hubspot_events.replay_dry_run()', 'operator', q{SELECT hubspot_events.replay_dry_run()} ],
	[ 'hubspot_events.verify_event(text,text,text,boolean)', 'operator',
		q{SELECT * FROM hubspot_events.verify_event('webinar-sec-none', 'acme')} ],
	[ 'hubspot_events.pause()', 'manage', q{SELECT hubspot_events.pause()} ],
	[ 'hubspot_events.resume()', 'manage', q{SELECT hubspot_events.resume()} ],
	[ 'hubspot_events.purge_sent(interval)', 'manage', q{SELECT hubspot_events.purge_sent('100 years')} ],
	[ 'hubspot_events.purge_failed(interval)', 'manage', q{SELECT hubspot_events.purge_failed('100 years')} ],
	[ 'hubspot_events.backfill_batch(regclass,name,text[],integer)', 'manage',
		q{SELECT * FROM hubspot_events.backfill_batch('public.app_att', 'app_att_sync', NULL, 1)} ],
	[ 'hubspot_events.backfill_report(regclass,name,bigint,bigint,boolean)', 'manage',
		q{SELECT hubspot_events.backfill_report('public.app_att', 'app_att_sync', 0, 0, false)} ],
	[ 'hubspot_events.backfill(regclass,name,integer,bigint)', 'manage',
		q{CALL hubspot_events.backfill('public.app_att', 'app_att_sync')} ],
	[ 'hubspot_events.claim_due(integer,text)', 'internal', q{SELECT * FROM hubspot_events.claim_due(1, 'default')} ],
	[ 'hubspot_events.next_claim_at(text)', 'internal', q{SELECT hubspot_events.next_claim_at('default')} ],
	[ 'hubspot_events.pending_connections()', 'internal', q{SELECT * FROM hubspot_events.pending_connections()} ],
	[ 'hubspot_events.claim_intake(tid[],bigint[],text)', 'internal',
		q{SELECT * FROM hubspot_events.claim_intake('{}', '{}', 'default')} ],
	[ 'hubspot_events.move_intake(tid[],bigint[])', 'internal', q{SELECT * FROM hubspot_events.move_intake('{}', '{}')} ],
	[ 'hubspot_events.move_intake_connection(text)', 'internal', q{SELECT hubspot_events.move_intake_connection('none')} ],
	[ 'hubspot_events.intake_at_place(tid,bigint,tid[],bigint[])', 'internal',
		q{SELECT hubspot_events.intake_at_place('(0,1)', 1, '{}', '{}')} ],
	[ 'hubspot_events.create_connection(text,text)', 'internal',
		q{SELECT hubspot_events.create_connection('sec', '/nonexistent')} ],
	[ 'hubspot_events.drop_connection(text,boolean)', 'manage', q{SELECT hubspot_events.drop_connection('sec-none')} ],
	[ 'hubspot_events.connect_oauth(text,text,text)', 'manage',
		q{SELECT hubspot_events.connect_oauth('sec', 'code', 'https://app.example/cb')} ],
	[ 'hubspot_events.check_sync_triggers(regclass)', 'internal', q{SELECT hubspot_events.check_sync_triggers('public.app_att')} ],
	[ 'hubspot_events.guard_sync_triggers()', 'internal', q{SELECT hubspot_events.guard_sync_triggers()} ],
	# cluster-wide: every served database's name and last error (docs/security.md)
	[ 'hubspot_events.workers_info()', 'internal', q{SELECT * FROM hubspot_events.workers_info()} ],
);

# Every relation of the extension, and what the documented roles may do.
my %relations = (
	'hubspot_events.outbox' => { app => '', ops => '' },
	'hubspot_events.outbox_id_seq' => { app => '', ops => '' },
	'hubspot_events.outbox_rows' => { app => '', ops => '' },
	'hubspot_events.outbox_intake' => { app => '', ops => '' },
	'hubspot_events.worker_control' => { app => '', ops => '' },
	'hubspot_events.status' => { app => '', ops => 'SELECT' },
	'hubspot_events.failed_syncs' => { app => '', ops => 'SELECT' },
	'hubspot_events.waiting' => { app => '', ops => 'SELECT' },
	'hubspot_events.metrics' => { app => '', ops => 'SELECT' },
	'hubspot_events.backfill_runs' => { app => '', ops => '' },
	'hubspot_events.backfill_progress' => { app => '', ops => '' },
	'hubspot_events.connections' => { app => '', ops => '' },
	'hubspot_events.connection_secrets' => { app => '', ops => '' },
	'hubspot_events.workers' => { app => '', ops => '' },
);

# The documented GRANTs (docs/security.md, "Roles"; the app and ops ones also in
# README, "The GRANTs"), run as they are written there.
my $app_grants = q{
GRANT USAGE ON SCHEMA hubspot_events TO app;
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_enqueue_subscriber(text, text, text, jsonb, text) TO app;
GRANT EXECUTE ON FUNCTION hubspot_events.sync_attendance() TO app;
GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_enqueue_event(text, text, jsonb, text),
                          hubspot_events.hubspot_enqueue_cancel_event(text, text, text),
                          hubspot_events.hubspot_enqueue_complete_event(text, text, timestamptz, timestamptz, text),
                          hubspot_events.sync_event() TO app;
};
my $ops_grants = q{
GRANT USAGE ON SCHEMA hubspot_events TO ops;
GRANT SELECT ON hubspot_events.failed_syncs, hubspot_events.status, hubspot_events.waiting,
                hubspot_events.metrics TO ops;
GRANT EXECUTE ON FUNCTION hubspot_events.worker_info(), hubspot_events.worker_api_version(),
                          hubspot_events.retry_failed(bigint[], boolean),
                          hubspot_events.attempts(bigint), hubspot_events.replay_dry_run(),
                          hubspot_events.verify_event(text, text, text, boolean),
                          hubspot_events.metrics_counters(), hubspot_events.metrics_text(),
                          hubspot_events.wake(),
                          hubspot_events.flush(interval) TO ops;
};
my $manage_grants = q{
GRANT EXECUTE ON FUNCTION hubspot_events.pause(), hubspot_events.resume(),
                          hubspot_events.purge_sent(interval),
                          hubspot_events.purge_failed(interval) TO ops;
};
# PostgreSQL's refusal to show a GUC_SUPERUSER_ONLY setting (its words changed in 16)
my $hidden_setting = qr/must be superuser or have privileges of pg_read_all_settings to examine|permission denied to examine/;
my $cannot_set = qr/permission denied to set parameter|cannot be changed now|cannot be set|must be superuser/;
my %allowed = (app => { enqueue => 1, trigger => 1 }, ops => { operator => 1 }, nobody => {});

# ---------------------------------------------------------------------------
# A throwaway CA, a server certificate for "localhost" only (so that a
# request to https://127.0.0.1 also proves the host name is checked), a
# second CA that signed nothing here, and the HTTPS mock.
# ---------------------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir();
sub openssl { run_log([ 'openssl', @_ ]) or die "openssl @_ failed" }
for my $ca ('ca', 'other_ca')
{
	openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-keyout', "$dir/$ca.key", '-out', "$dir/$ca.pem", '-subj', "/CN=hubspot_events test $ca",
		'-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/server.key",
	'-out', "$dir/server.csr", '-subj', '/CN=localhost');
append_to_file("$dir/server.ext",
	"subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
openssl('x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.pem", '-CAkey', "$dir/ca.key",
	'-CAcreateserial', '-days', '2', '-out', "$dir/server.pem", '-extfile', "$dir/server.ext");

# tokens: random, so that any leak can be grepped for; every one used is kept
my @tokens;
sub new_token
{
	my $t = 'pat-sec-' . join('', map { sprintf('%02x', int(rand(256))) } 1 .. 16);
	push @tokens, $t;
	return $t;
}
sub write_atomically
{
	my ($path, $content) = @_;
	open(my $fh, '>', "$path.tmp") or die "$path.tmp: $!";
	print $fh $content;
	close($fh);
	chmod 0600, "$path.tmp";
	rename("$path.tmp", $path) or die "rename $path: $!";
}
my $token = new_token();
my $token_file = "$dir/token";
my $mock_token_file = "$dir/mock_token";
# both at once: the node sends what the mock expects
sub rotate
{
	$token = new_token();
	write_atomically($mock_token_file, "$token\n");
	write_atomically($token_file, "$token\n");
}
write_atomically($mock_token_file, "$token\n");
write_atomically($token_file, "$token\n");

my $mock_log = "$dir/mock_requests.jsonl";
my $mock = IPC::Run::start(
	[ 'python3', "$FindBin::Bin/../mock_hubspot.py", '--host', '127.0.0.1', '--port', '0',
	  '--port-file', "$dir/mock.port", '--token-file', $mock_token_file, '--log', $mock_log,
	  '--tls-cert', "$dir/server.pem", '--tls-key', "$dir/server.key" ],
	'<', \undef, '>', "$dir/mock.out", '2>', "$dir/mock.err");
# a test that dies must not leave the mock running
END { eval { $mock->kill_kill } if $mock; }
wait_until(sub { -s "$dir/mock.port" }, 20) or die "the HTTPS mock did not start: " . slurp_file("$dir/mock.err");
chomp(my $port = slurp_file("$dir/mock.port"));

sub mock_seen
{
	return [] unless -e $mock_log;
	return [ map { decode_json($_) } grep { /\S/ } split /\n/, slurp_file($mock_log) ];
}
sub handshake_failures { scalar(() = slurp_file("$dir/mock.err") =~ /TLS handshake with .* failed/g) }

# ---------------------------------------------------------------------------
# The node: preloaded, its worker on this database, pointed at the HTTPS
# mock by name, with the system's CA bundle (which does not know our CA).
# ---------------------------------------------------------------------------
my $node = hs_node('security', conf => [
	"hubspot_events.api_base_url = 'https://localhost:$port'",
	"hubspot_events.access_token_file = '$token_file'",
	"hubspot_events.retry_base_ms = 50",
	"hubspot_events.retry_max_ms = 200",
	"hubspot_events.max_attempts = 1000",
	"hubspot_events.poll_interval_ms = 100"]);
sub q1 { $node->safe_psql('postgres', $_[0]) }
# run as a role: (exit code, stdout, stderr); every output is kept, to be
# grepped for tokens at the end
my @outputs;
sub as_role
{
	my ($role, $sql, $db) = @_;
	my ($rc, $out, $err) = $node->psql($db // 'postgres', $sql, extra_params => [ '-U', $role ]);
	push @outputs, "$out\n$err";
	return ($rc, $out, $err);
}
sub denied
{
	my ($role, $sql, $re, $name) = @_;
	my ($rc, $out, $err) = as_role($role, $sql);
	ok($rc != 0 && $err =~ $re, $name) or diag("rc=$rc out=$out err=$err");
}
sub worker_reloaded
{
	my ($before) = @_;
	return wait_until(sub { q1("SELECT worker_settings_loaded_at FROM hubspot_events.status") ne $before });
}
sub reload_and_wait
{
	my $before = q1("SELECT worker_settings_loaded_at FROM hubspot_events.status");
	$node->reload;
	ok(worker_reloaded($before), $_[0] // 'the worker reloaded');
}

# ---- every setting and function is classified above ----
is_deeply([ split /\n/, q1("SELECT name FROM pg_settings WHERE name LIKE 'hubspot\\_events.%' ORDER BY name") ],
	[ sort keys %settings ], 'every hubspot_events setting is in the list at the top of this test');
is_deeply([ split /\n/, q1(q{
	SELECT replace(replace(p.oid::regprocedure::text, 'timestamp with time zone', 'timestamptz'), ' ', '') FROM pg_proc p
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events') ORDER BY 1}) ],
	[ sort map { $_->[0] } @functions ], 'every function of the extension is in the list at the top of this test');
is_deeply([ split /\n/, q1(q{
	SELECT c.oid::regclass::text FROM pg_class c
	  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
	 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events') ORDER BY 1}) ],
	[ sort keys %relations ], 'every relation of the extension is in the list at the top of this test');

# ---- verification cannot be turned off: no setting does it ----
is(q1("SELECT string_agg(name, ',') FROM pg_settings WHERE name LIKE 'hubspot\\_events.%' AND name ~* '(verif|insecure|skip|ssl|tls|cert|pin)'"),
	'', 'no setting about verifying certificates exists (ca_file only chooses which CAs are trusted)');
for my $v ('off', '0', 'false', 'none', '-', '/dev/null', $dir)
{
	my ($rc, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET hubspot_events.ca_file = '$v'");
	ok($rc != 0 && $err =~ /invalid value for parameter "hubspot_events.ca_file"/, "ca_file = '$v' is refused (not a CA file)")
	  or diag($err);
}

# ===========================================================================
# TLS
# ===========================================================================
q1("CREATE ROLE sender LOGIN");
q1("GRANT USAGE ON SCHEMA hubspot_events TO sender");
q1("GRANT EXECUTE ON FUNCTION hubspot_events.hubspot_upsert_subscriber(text, text, text, jsonb, text) TO sender");

# the system's CA bundle does not know our CA: the direct function refuses
my ($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-tls', 'register', 'acme', '{"vid": 701}')});
like($err, qr/ERROR:  could not reach HubSpot: SSL certificate problem: (unable to get local issuer certificate|self.signed certificate)/,
	'direct: a certificate from an unknown CA is refused, and the error says why');
$node->psql('postgres', q{\set VERBOSITY verbose
	SELECT hubspot_events.hubspot_upsert_subscriber('webinar-tls', 'register', 'acme', '{"vid": 701}')},
	stderr => \$err);
like($err, qr/ERROR:  HS001:/, 'as a transport error (HS001)');
# and so does the worker: the row is not sent, it waits for a retry with the reason
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-tls', 'register', 'acme', '{"vid": 702}')});
ok(wait_until(sub { q1("SELECT attempts >= 2 FROM hubspot_events.outbox WHERE contact_key = '702'") eq 't' }),
	'worker: the row is tried and retried');
is(q1("SELECT format('%s|%s|%s', status IN ('pending', 'sending'), error_category, error_message ~ 'SSL certificate problem') FROM hubspot_events.outbox WHERE contact_key = '702'"),
	't|TRANSPORT|t', 'worker: not sent; a TRANSPORT error naming the certificate problem');
is(scalar @{ mock_seen() }, 0, 'the mock received no request');
cmp_ok(handshake_failures(), '>=', 3, 'the mock saw the handshakes fail (the client refused it)');

# a CA file naming another CA: still refused
q1("ALTER SYSTEM SET hubspot_events.ca_file = '$dir/other_ca.pem'");
reload_and_wait('ca_file = another CA: the worker reloaded');
my $before = handshake_failures();
ok(wait_until(sub { handshake_failures() > $before + 1 }), 'worker: retried with another CA');
($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-tls', 'register', 'acme', '{"vid": 701}')});
like($err, qr/SSL certificate problem/, 'direct: refused with a CA that did not sign the certificate');
is(scalar @{ mock_seen() }, 0, 'the mock still received nothing');

# ca_file names the CA: delivered
q1("ALTER SYSTEM SET hubspot_events.ca_file = '$dir/ca.pem'");
reload_and_wait('ca_file = our CA: the worker reloaded');
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '702'") eq 'sent' }),
	'worker: with ca_file naming the CA, the row is sent');
is_deeply([ map { $_->{body}{inputs}[0]{vid} } @{ mock_seen() } ], [702], 'the mock received the contact');
is(q1("SELECT format('%s|%s|%s', http_status, error_category, error_message) FROM hubspot_events.outbox WHERE contact_key = '702'"),
	'204||', 'the transport error is cleared');
($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-tls', 'register', 'acme', '{"vid": 701}')->'http_status'});
is($out, '204', 'direct: delivered with ca_file');

# the host name is verified too: the certificate is for localhost, not 127.0.0.1
q1("ALTER SYSTEM SET hubspot_events.api_base_url = 'https://127.0.0.1:$port'");
reload_and_wait();
($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-tls', 'register', 'acme', '{"vid": 703}')});
like($err, qr/could not reach HubSpot: .*(subject name|does not match|no alternative certificate subject name matches target host name)/,
	'direct: a certificate for another host name is refused') or diag($err);
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-tls', 'register', 'acme', '{"vid": 704}')});
ok(wait_until(sub { q1("SELECT attempts >= 2 AND status <> 'sent' AND error_category = 'TRANSPORT' FROM hubspot_events.outbox WHERE contact_key = '704'") eq 't' }),
	'worker: refused too, and retried');
is_deeply([ grep { $_ != 701 && $_ != 702 } map { $_->{body}{inputs}[0]{vid} } @{ mock_seen() } ], [], 'the mock received neither');
q1("ALTER SYSTEM SET hubspot_events.api_base_url = 'https://localhost:$port'");
reload_and_wait();
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '704'") eq 'sent' }),
	'back to the right host name: sent');

# http:// is refused for any host that is not loopback, from every way in
for my $url ('http://api.hubapi.com', 'http://10.1.2.3:8080', 'http://[2001:db8::1]', 'HTTP://EXAMPLE.COM', 'http://localhost.evil.example')
{
	for my $how ("SET hubspot_events.api_base_url = '$url'", "ALTER SYSTEM SET hubspot_events.api_base_url = '$url'",
		"ALTER DATABASE postgres SET hubspot_events.api_base_url = '$url'")
	{
		($rc, $out, $err) = $node->psql('postgres', $how);
		ok($rc != 0 && $err =~ /http:\/\/ is accepted only for loopback hosts/, "superuser: $how is refused");
	}
}
is(q1("SHOW hubspot_events.api_base_url"), "https://localhost:$port", 'the base URL is unchanged');
# even written into postgresql.conf: the reload keeps the old value and says why
q1("ALTER SYSTEM RESET hubspot_events.api_base_url");
reload_and_wait('the base URL comes from postgresql.conf again');
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "hubspot_events.api_base_url = 'http://api.hubapi.com'\n");
$node->reload;
ok($node->wait_for_log(qr/invalid value for parameter "hubspot_events.api_base_url"/, $log_offset),
	'postgresql.conf with a non-loopback http URL: the reload refuses it');
$node->append_conf('postgresql.conf', "hubspot_events.api_base_url = 'https://localhost:$port'\n");
reload_and_wait();
is(q1("SHOW hubspot_events.api_base_url"), "https://localhost:$port", 'and the URL in force stays the https one');

# ===========================================================================
# Roles with the documented GRANTs
# ===========================================================================
q1(q{CREATE ROLE app LOGIN; CREATE ROLE ops LOGIN; CREATE ROLE nobody LOGIN;
	GRANT CREATE ON SCHEMA public TO app;
	CREATE TABLE public.victim (x int); INSERT INTO public.victim VALUES (1), (2);});
q1($app_grants);
q1($ops_grants);
# nothing of the extension is granted to PUBLIC
is(q1(q{SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hubspot_events')
	  AND has_function_privilege('public', p.oid, 'EXECUTE')}), '0', 'no function of the extension is executable by PUBLIC');
is(q1(q{SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
	WHERE c.relnamespace = 'hubspot_events'::regnamespace AND a.grantee = 0}), '0', 'no relation of the extension grants anything to PUBLIC');
is(q1(q{SELECT has_schema_privilege('public', 'hubspot_events', 'USAGE')}), 'f', 'PUBLIC has no USAGE on the schema');

# the application's table and trigger, made by the application itself
($rc, $out, $err) = as_role('app', q{
	CREATE TABLE public.app_att (id serial PRIMARY KEY, ev text, st text, vid bigint, acct text, props jsonb,
	  "we""ird'; DROP TABLE public.victim; --" text);
	CREATE TRIGGER app_att_sync AFTER INSERT OR UPDATE OR DELETE ON public.app_att
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=ev', 'state=st', 'vid=vid', 'account_id=acct', 'properties=props', 'on_invalid=error');});
is($rc, 0, 'app: creates its table and a sync_attendance trigger with the documented GRANTs') or diag($err);

# function privileges: exactly the documented ones
for my $f (@functions)
{
	my ($sig, $who, $call) = @$f;
	for my $role ('app', 'ops', 'nobody')
	{
		my $may = $allowed{$role}{$who} ? 't' : 'f';
		is(q1("SELECT has_function_privilege('$role', '$sig', 'EXECUTE')"), $may,
			"$role " . ($may eq 't' ? 'may' : 'may not') . " execute $sig");
		next if $may eq 't';
		denied($role, $call, qr/permission denied for (function|procedure|schema)/, "$role: $call is denied");
	}
}
# relation privileges: exactly the documented ones
for my $rel (sort keys %relations)
{
	for my $role ('app', 'ops', 'nobody')
	{
		my $want = $relations{$rel}{$role} // '';
		my @have = grep { q1("SELECT has_" . ($rel =~ /_seq$/ ? 'sequence' : 'table') . "_privilege('$role', '$rel', '$_')") eq 't' }
		  ($rel =~ /_seq$/ ? ('SELECT', 'UPDATE', 'USAGE') : ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'));
		is(join(',', @have), $want, "$role on $rel: " . ($want || 'nothing'));
	}
}
for my $role ('app', 'nobody')
{
	for my $sql ('SELECT count(*) FROM hubspot_events.outbox', "UPDATE hubspot_events.outbox SET status = 'sent'",
		'DELETE FROM hubspot_events.outbox', 'TRUNCATE hubspot_events.outbox',
		q{INSERT INTO hubspot_events.outbox (external_event_id, status) VALUES ('x', 'pending')},
		'SELECT * FROM hubspot_events.failed_syncs', 'SELECT * FROM hubspot_events.status',
		'SELECT * FROM hubspot_events.worker_control', "SELECT pg_catalog.setval('hubspot_events.outbox_id_seq', 1)",
		"SELECT pg_catalog.nextval('hubspot_events.outbox_id_seq')")
	{
		denied($role, $sql, qr/permission denied/, "$role: $sql is denied");
	}
}

# app: enqueues, directly and through its trigger
my $outbox_before = q1("SELECT count(*) FROM hubspot_events.outbox");
($rc, $out, $err) = as_role('app', q{SELECT cardinality(hubspot_events.hubspot_enqueue_subscriber('webinar-app', 'register', 'acme', '[{"vid": 801}, {"vid": 802}]'))});
is($out, '2', 'app: enqueues') or diag($err);
($rc, $out, $err) = as_role('app', q{INSERT INTO public.app_att (ev, st, vid, acct) VALUES ('webinar-app', 'attend', 803, 'acme')});
is($rc, 0, 'app: writes to its table with the trigger') or diag($err);
is(q1("SELECT count(*) - $outbox_before FROM hubspot_events.outbox"), '3', 'three rows enqueued');
is(q1("SELECT string_agg(contact_key || ':' || source, ',' ORDER BY id) FROM hubspot_events.outbox WHERE external_event_id = 'webinar-app'"),
	'801:hubspot_enqueue_subscriber,802:hubspot_enqueue_subscriber,803:public.app_att', 'from the function and from the trigger');

# ops: the documented operator GRANTs are enough for what they promise
q1(q{INSERT INTO hubspot_events.outbox (external_event_id, subscriber_state, external_account_id, contact, contact_key,
	status, attempts, error_category, error_message, last_attempt_at)
	VALUES ('webinar-ops', 'register', 'acme', '{"vid": 901, "interactionDateTime": 1700000000000, "properties": {}}', '901',
	'failed', 3, 'OBJECT_NOT_FOUND', 'not found', now())});
($rc, $out, $err) = as_role('ops', q{SELECT count(*) FROM hubspot_events.failed_syncs WHERE external_event_id = 'webinar-ops'});
is($out, '1', 'ops: reads failed_syncs') or diag($err);
($rc, $out, $err) = as_role('ops', q{SELECT worker_state IS NOT NULL, pending >= 0 FROM hubspot_events.status});
is($out, 't|t', 'ops: reads status') or diag($err);
($rc, $out, $err) = as_role('ops', q{SELECT hubspot_events.retry_failed((SELECT array_agg(id) FROM hubspot_events.failed_syncs WHERE external_event_id = 'webinar-ops'))});
is($out, '1', 'ops: retry_failed') or diag($err);
($rc, $out, $err) = as_role('ops', q{SELECT hubspot_events.flush('30 s')});
is($out, 't', 'ops: flush') or diag($err);
is(q1("SELECT status FROM hubspot_events.outbox WHERE external_event_id = 'webinar-ops'"), 'sent', 'the retried row was sent');
for my $sql ('SELECT count(*) FROM hubspot_events.outbox', "UPDATE hubspot_events.outbox SET status = 'sent'",
	'DELETE FROM hubspot_events.outbox')
{
	denied('ops', $sql, qr/permission denied/, "ops: $sql is denied");
}
# pause, resume and purges: only once granted
q1($manage_grants);
($rc, $out, $err) = as_role('ops', q{SELECT hubspot_events.pause(); SELECT paused FROM hubspot_events.status});
like($out, qr/^t$/m, 'ops, granted it: pause') or diag($err);
($rc, $out, $err) = as_role('ops', q{SELECT hubspot_events.resume(); SELECT paused FROM hubspot_events.status});
like($out, qr/^f$/m, 'ops, granted it: resume') or diag($err);
($rc, $out, $err) = as_role('ops', q{SELECT hubspot_events.purge_sent('100 years') >= 0, hubspot_events.purge_failed('100 years') >= 0});
is($out, 't|t', 'ops, granted them: purge_sent, purge_failed') or diag($err);

# ===========================================================================
# SQL injection: arguments and values do what they say, nothing else
# ===========================================================================
my $outbox_count = q1("SELECT count(*) FROM hubspot_events.outbox");
my %evil = (
	ev => q{x'); DROP TABLE public.victim; --},
	acct => q{a'b"c\\d$$e$$ ; DELETE FROM hubspot_events.outbox; -- \\' $q$ %s %L},
	note => q{'; DROP TABLE public.victim; -- "quoted" $$dollar$$ \\back\\slash \\x00 E'\\n'},
);
my $props = encode_json({ note => $evil{note}, 'k\'ey"; DROP' => 'v', uni => "caf\x{e9} \x{2603}" });
# dollar-quoted with a tag that appears in none of the values
($rc, $out, $err) = as_role('app', "INSERT INTO public.app_att (ev, st, vid, acct, props) VALUES (\$inj\$$evil{ev}\$inj\$, 'register', 811, \$inj\$$evil{acct}\$inj\$, \$inj\$$props\$inj\$::jsonb)");
is($rc, 0, 'app: a row of crafted values is written') or diag($err);
($rc, $out, $err) = as_role('app', "SELECT cardinality(hubspot_events.hubspot_enqueue_subscriber(\$inj\$$evil{ev}\$inj\$, 'attend', \$inj\$$evil{acct}\$inj\$, \$inj\$[{\"vid\": 812, \"properties\": $props}]\$inj\$::jsonb))");
is($out, '1', 'app: crafted arguments are enqueued') or diag($err);
# a column whose name is crafted, and a constant that is
($rc, $out, $err) = as_role('app', q{
	CREATE TRIGGER app_att_sync2 AFTER INSERT ON public.app_att
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=we"ird''; DROP TABLE public.victim; --', 'state:=cancel', 'vid=vid',
	    'account_id:=acme''); DROP TABLE public.victim; --');
	ALTER TABLE public.app_att DISABLE TRIGGER app_att_sync;
	INSERT INTO public.app_att (ev, st, vid, acct, "we""ird'; DROP TABLE public.victim; --")
	  VALUES ('webinar-inj2', 'register', 813, 'acme', 'ev''"$$\\');
	DROP TRIGGER app_att_sync2 ON public.app_att;
	ALTER TABLE public.app_att ENABLE TRIGGER app_att_sync;});
is($rc, 0, 'app: a trigger with a crafted column name and constant fires') or diag($err);
# a trigger argument naming a column with SQL in it is just a missing column
($rc, $out, $err) = as_role('app', q{
	CREATE TRIGGER app_att_bad AFTER INSERT ON public.app_att
	  FOR EACH ROW EXECUTE FUNCTION hubspot_events.sync_attendance(
	    'event_id=ev; DROP TABLE public.victim', 'state=st', 'vid=vid', 'account_id=acct');
	INSERT INTO public.app_att (ev, st, vid, acct) VALUES ('webinar-inj3', 'register', 814, 'acme');});
like($err, qr/column "ev; DROP TABLE public.victim" of argument .* does not exist in table/, 'a crafted column argument is a missing column');
as_role('app', 'DROP TRIGGER app_att_bad ON public.app_att');

is(q1("SELECT count(*) FROM public.victim"), '2', 'the victim table and its rows are untouched');
is(q1("SELECT count(*) - $outbox_count FROM hubspot_events.outbox"), '3', 'exactly the three rows asked for were enqueued');
is(q1(q{SELECT string_agg(format('%s|%s|%s|%s', contact_key, external_event_id, subscriber_state, external_account_id), E'\n' ORDER BY id)
	FROM hubspot_events.outbox WHERE contact_key IN ('811', '812', '813')}),
	join("\n", "811|$evil{ev}|register|$evil{acct}", "812|$evil{ev}|attend|$evil{acct}",
		q{813|ev'"$$\\|cancel|acme'); DROP TABLE public.victim; --}),
	'the values are in the outbox verbatim');
is(q1(q{SELECT string_agg(contact->'properties'->>'note', ',' ORDER BY id) FROM hubspot_events.outbox WHERE contact_key IN ('811', '812')}),
	"$evil{note},$evil{note}", 'properties verbatim');
ok(wait_until(sub { q1("SELECT count(*) FROM hubspot_events.outbox WHERE contact_key IN ('811', '812', '813') AND status = 'sent'") eq '3' }),
	'and sent');
my %at_mock = map { $_->{body}{inputs}[0]{vid} => $_ } @{ mock_seen() };
is(join('|', map { $at_mock{$_}{path}{externalEventId} // 'none' } 811, 812, 813), join('|', $evil{ev}, $evil{ev}, q{ev'"$$\\}),
	'the mock received the event ids verbatim');
is(join('|', map { $at_mock{$_}{query}{externalAccountId} // 'none' } 811, 812, 813),
	join('|', $evil{acct}, $evil{acct}, q{acme'); DROP TABLE public.victim; --}), 'and the account ids');
is_deeply($at_mock{811}{body}{inputs}[0]{properties}, decode_json($props), 'and the properties');
is_deeply([ map { @{ $at_mock{$_}{spec_errors} || [] } } 811, 812, 813 ], [], 'valid against the spec');

# ===========================================================================
# The token and the secret-bearing settings, seen by roles that are not superuser
# ===========================================================================
# a database owned by the application: its owner still may not redirect the token
q1("CREATE DATABASE appdb OWNER app");
for my $name (sort grep { $settings{$_} ne 'plain' } keys %settings)
{
	my $class = $settings{$name};
	for my $role ('app', 'nobody')
	{
		if ($class eq 'secret_file')
		{
			denied($role, "SHOW $name", $hidden_setting, "$role: SHOW $name is denied");
			denied($role, "SELECT current_setting('$name')", $hidden_setting,
				"$role: current_setting('$name') is denied");
			denied($role, "SELECT current_setting('$name', true)", $hidden_setting,
				"$role: current_setting('$name', true) is denied");
			($rc, $out, $err) = as_role($role, "SELECT count(*) FROM pg_settings WHERE name = '$name'");
			is($out, '0', "$role: $name is not in pg_settings");
		}
		denied($role, "SET $name = '/tmp/x'", $cannot_set, "$role: SET $name is denied");
		denied($role, "SELECT set_config('$name', '/tmp/x', false)", $cannot_set, "$role: set_config('$name') is denied");
		denied($role, "ALTER ROLE $role SET $name = '/tmp/x'", $cannot_set, "$role: ALTER ROLE $role SET $name is denied");
		denied($role, "ALTER SYSTEM SET $name = '/tmp/x'", qr/must be superuser|permission denied/, "$role: ALTER SYSTEM SET $name is denied");
		denied($role, "CREATE FUNCTION public.f_$role() RETURNS int LANGUAGE sql SET $name = '/tmp/x' AS 'SELECT 1'",
			qr/$cannot_set|permission denied for schema/, "$role: a function's SET $name is denied");
		# at connection time
		{
			local $ENV{PGOPTIONS} = "-c $name=https://evil.example.com";
			# psql refused at connection may exit before its input is written:
			# the harness then dies of a broken pipe, which is a refusal too
			my ($rc2, $out2, $err2) = (1, '', '');
			eval {
				($rc2, $out2, $err2) = $node->psql('postgres', "SELECT current_setting('hubspot_events.api_base_url')", extra_params => [ '-U', $role ]);
				1;
			} or ($rc2, $out2) = (1, '');
			ok($rc2 != 0 || $out2 !~ /evil/, "$role: $name in the connection's options is not applied");
		}
	}
	my ($rc3, $out3, $err3) = $node->psql('appdb', "ALTER DATABASE appdb SET $name = 'https://evil.example.com'", extra_params => [ '-U', 'app' ]);
	ok($rc3 != 0 && $err3 =~ $cannot_set, "app, owner of appdb: ALTER DATABASE appdb SET $name is denied")
	  or diag($err3);
}
is(q1("SELECT count(*) FROM pg_db_role_setting"), '0', 'no per-role or per-database setting was stored');
is(q1("SHOW hubspot_events.api_base_url") . '|' . q1("SHOW hubspot_events.ca_file") . '|' . q1("SHOW hubspot_events.access_token_file"),
	"https://localhost:$port|$dir/ca.pem|$token_file", 'the settings in force are unchanged');
denied('app', 'SELECT * FROM pg_file_settings', qr/permission denied/, 'app: pg_file_settings is denied');
denied('app', "SELECT pg_read_file('$token_file')", qr/permission denied/, 'app: pg_read_file of the token file is denied');
denied('app', "SELECT pg_read_binary_file('$token_file')", qr/permission denied/, 'app: pg_read_binary_file is denied');
denied('app', "CREATE TEMP TABLE t (x text); COPY t FROM '$token_file'", qr/permission denied|must be superuser|pg_read_server_files/,
	'app: COPY FROM the token file is denied');
denied('app', "SELECT lo_import('$token_file')", qr/permission denied|must be superuser|pg_read_server_files/,
	'app: lo_import of the token file is denied');

# error messages, when the token file holds something unusable: a role
# granted the direct function provokes every error there is
my $tok = $token;
my %bad_files = (
	'control character' => "$tok\x01\n",
	'header injection' => "$tok\r\nX-Evil: $tok\n",
	'inner space' => "$tok $tok\n",
	'too large' => ($tok x 400) . "\n",
	'not ASCII' => "$tok\x{e9}\n",
);
for my $what (sort keys %bad_files)
{
	write_atomically("$dir/bad_token", $bad_files{$what});
	q1("ALTER ROLE sender SET hubspot_events.access_token_file = '$dir/bad_token'");
	($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-err', 'register', 'acme', '{"vid": 1}')});
	like($err, qr/hubspot_events.access_token_file .* (does not hold a valid access token|is too large)/, "$what: the error names the setting");
	unlike($err, qr/\Q$tok\E|X-Evil/, "$what: and not the content");
	($rc, $out, $err) = as_role('sender', "SELECT setconfig FROM pg_db_role_setting");
	unlike($out, qr/\Q$tok\E/, "$what: pg_db_role_setting holds the path, never the token");
}
for my $path ($dir, "$dir/missing")
{
	q1("ALTER ROLE sender SET hubspot_events.access_token_file = '$path'");
	($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-err', 'register', 'acme', '{"vid": 1}')});
	like($err, qr/hubspot_events.access_token_file/, "$path: the error names the setting");
}
q1("ALTER ROLE sender RESET ALL");
# the token file named where a CA bundle or a URL is expected: refused, content unsaid
($rc, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET hubspot_events.ca_file = '$token_file'");
like($err, qr/holds no PEM certificate/, 'ca_file = the token file: refused');
unlike($err, qr/\Q$token\E/, 'without a word of its content');
($rc, $out, $err) = $node->psql('postgres', "SET hubspot_events.api_base_url = 'file://$token_file'");
like($err, qr/invalid value for parameter "hubspot_events.api_base_url"/, 'api_base_url = file://token: refused');
unlike($err, qr/\Q$token\E/, 'without a word of its content either');

# the worker holds the queue on an unusable token file; the reason it shows is content-free
write_atomically($token_file, "$token\x01\n");
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-hold', 'register', 'acme', '{"vid": 921}')});
ok(wait_until(sub { q1("SELECT held_reason FROM hubspot_events.status") =~ /access_token_file/ }), 'a bad token file holds the queue');
($rc, $out, $err) = as_role('ops', 'SELECT held_reason, last_error FROM hubspot_events.status');
unlike($out, qr/\Q$token\E/, 'ops: status shows why, not the token');
write_atomically($token_file, "$token\n");
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '921'") eq 'sent' }), 'a good file releases it');

# ===========================================================================
# No log line holds a token: at debug5, across reloads and rotations
# ===========================================================================
my $debug_offset = -s $node->logfile;
q1("ALTER SYSTEM SET log_min_messages = debug5");
reload_and_wait('log_min_messages = debug5');
for my $round (1 .. 3)
{
	rotate();
	q1("SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-rot', 'register', 'acme', '{\"vid\": " . (930 + $round) . "}')");
	ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '" . (930 + $round) . "'") eq 'sent' }),
		"rotation $round: sent with the new token");
	is(q1("SELECT hubspot_events.hubspot_upsert_subscriber('webinar-rot', 'attend', 'acme', '{\"vid\": " . (930 + $round) . "}')->'http_status'"),
		'204', "rotation $round: the direct function too");
	reload_and_wait("rotation $round: reload");
}
# a server (or a proxy) that repeats the token in its answer: the token is
# removed from the answer before it is stored, raised or logged
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('mock:echo_auth=1', 'register', 'acme', '{"vid": 951}')});
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '951'") eq 'failed' }),
	'an answer that repeats the token: the row failed (400)');
is(q1(q{SELECT format('%s|%s|%s', error_message, error_body->>'message', error_body->'context'->'authorization'->>0)
	FROM hubspot_events.outbox WHERE contact_key = '951'}),
	'Invalid request headers: Authorization: Bearer [token removed]|Invalid request headers: Authorization: Bearer [token removed]|Bearer [token removed]',
	'the stored message and body hold "[token removed]" instead of the token');
($rc, $out, $err) = as_role('sender', q{SELECT hubspot_events.hubspot_upsert_subscriber('mock:echo_auth=1', 'register', 'acme', '{"vid": 952}')});
like($err, qr/ERROR:  hubspot answered HTTP 400 VALIDATION_ERROR: Invalid request headers: Authorization: Bearer \[token removed\]/,
	'direct: the ERROR quotes the answer without the token');
my @echoed = grep { ($_->{path}{externalEventId} // '') eq 'mock:echo_auth=1' } @{ mock_seen() };
is(scalar @echoed, 2, 'the mock did answer both with the token in them');

# a token HubSpot refuses (401), then one that is back
write_atomically($token_file, new_token() . "\n");
q1(q{SELECT hubspot_events.hubspot_enqueue_subscriber('webinar-rot', 'register', 'acme', '{"vid": 939}')});
ok(wait_until(sub { q1("SELECT held_reason FROM hubspot_events.status") =~ /401/ }), 'a refused token holds the queue');
($rc, $out, $err) = $node->psql('postgres', q{SELECT hubspot_events.hubspot_upsert_subscriber('webinar-rot', 'register', 'acme', '{"vid": 939}')});
like($err, qr/401/, 'direct: 401');
rotate();
ok(wait_until(sub { q1("SELECT status FROM hubspot_events.outbox WHERE contact_key = '939'") eq 'sent' }), 'released by a new token');
q1("ALTER SYSTEM RESET log_min_messages");
reload_and_wait();
my $debug_log = slurp_file($node->logfile, $debug_offset);
my $worker_pid = q1("SELECT worker_pid FROM hubspot_events.status");
ok($debug_log =~ /DEBUG:  (StartTransaction|CommitTransaction)/ && $debug_log =~ /\[$worker_pid\] DEBUG:/,
	'the server, the worker included, really logged at debug5 (' . scalar(() = $debug_log =~ /DEBUG:/g) . ' DEBUG lines)');

# ---- the end: no token anywhere ----
my $log = slurp_file($node->logfile);
is(scalar(grep { index($log, $_) >= 0 } @tokens), 0, 'no token used here (' . scalar(@tokens) . ') appears in the server log');
is(scalar(grep { index($log, $_) >= 0 } $ENV{HS_TOKEN_FILE} ? (slurp_file($ENV{HS_TOKEN_FILE}) =~ /(\S+)/) : ()), 0,
	"nor the suite's token");
my $outputs = join("\n", @outputs);
is(scalar(grep { index($outputs, $_) >= 0 } @tokens), 0, 'nor any output or error a non-superuser saw');
my $tables = q1(q{SELECT string_agg(o::text, E'\n') FROM hubspot_events.outbox o}) . q1(q{SELECT string_agg(s::text, E'\n') FROM hubspot_events.status s});
is(scalar(grep { index($tables, $_) >= 0 } @tokens), 0, 'nor the outbox (error bodies included) or status');
my $mock_files = slurp_file($mock_log) . slurp_file("$dir/mock.err");
is(scalar(grep { index($mock_files, $_) >= 0 } @tokens), 0, "nor the mock's request log");
cmp_ok(scalar(@{ mock_seen() }), '>', 10, 'while the mock did receive requests with them');

$node->stop;
$mock->signal('TERM');
$mock->finish;
undef $mock;
done_testing();
