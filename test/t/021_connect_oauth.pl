# connect_oauth() (issue 15): an OAuth install's authorization code
# exchanged from SQL, the refresh token sealed (AES-256-GCM) under the key
# in hubspot_events.secret_key_file and found nowhere in clear: not in the
# data directory (tables, WAL), not in a pg_dump, not in the server log at
# log_statement = all and debug5.  Refusals before the code is spent, a
# used code, reconnecting, another account under the same name, a name
# taken by a token file, and a role granted only EXECUTE.  Everything is
# checked at the mock's token endpoint and its record of the tokens issued.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use HsTest;
use File::Find;
use HTTP::Tiny;
use PostgreSQL::Test::Utils;
use Test::More;

my $secret = $ENV{HS_OAUTH_SECRET} or die "HS_OAUTH_SECRET is not set: run through test/run.sh";
# the servers this test starts must not inherit them (a postmaster logs its environment at DEBUG3)
delete @ENV{qw(HS_OAUTH_SECRET HS_OAUTH_REFRESH)};
my $client = 'hs-test-client-0021';
my $mock = $ENV{HS_MOCK_URL};
my $redirect = 'https://app.example/cb';

# the client secret and the key, in files of their own (the key: 32 random bytes as hex)
my $dir = PostgreSQL::Test::Utils::tempdir();
append_to_file("$dir/client_secret", "$secret\n");
open(my $rnd, '<:raw', '/dev/urandom') or die "/dev/urandom: $!";
read($rnd, my $key_bytes, 32) == 32 or die "short read from /dev/urandom";
close($rnd);
append_to_file("$dir/secret.key", unpack('H*', $key_bytes) . "\n");
chmod 0600, "$dir/client_secret", "$dir/secret.key";

mock_reset();
mock_control('/__mock/hubs/clear');
mock_config({ oauth_client_id => $client, oauth_client_secret => $secret });
mock_control('/__mock/hubs', { hubs => [
	{ hub_id => 101, tokens => [], rate_limit => 100, rate_window_ms => 10000 },
	{ hub_id => 102, tokens => [], rate_limit => 100, rate_window_ms => 10000 } ] });

# every statement and every message at every level in the log: none may hold a token
my $node = hs_node('connect_oauth', conf => [
	"hubspot_events.oauth_client_id = '$client'",
	"hubspot_events.oauth_client_secret_file = '$dir/client_secret'",
	"hubspot_events.oauth_token_url = '$mock/oauth/v1/token'",
	"log_statement = 'all'",
	"log_min_messages = debug5"]);

sub q1 { $node->safe_psql('postgres', $_[0]) }
sub try_sql
{
	my ($sql, @opt) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql", @opt);
	return $err;
}

# a fresh single-use code for a hub (unique in this run: the mock mints a code string once)
my $run = sprintf('%08x', int(rand(2**32)));
my $ncodes = 0;
sub mint
{
	my ($hub, $uri) = @_;
	my $code = "code-$run-" . ++$ncodes;
	mock_control('/__mock/oauth/codes', { code => $code, hub_id => $hub, redirect_uri => $uri // $redirect });
	return $code;
}
sub token_requests { scalar @{ mock_oauth_requests() } }
sub last_token_request { my @r = @{ mock_oauth_requests() }; return $r[-1] }
sub connect_sql { "SELECT format('%s|%s|%s|%s|%s', name, hub_id, auth, state, coalesce(held_reason, '-')) FROM hubspot_events.connect_oauth('$_[0]', '$_[1]', '" . ($_[2] // $redirect) . "')" }
sub sealed_hex { q1("SELECT coalesce(encode(refresh_token, 'hex'), 'none') FROM hubspot_events.connection_secrets WHERE connection = '$_[0]'") }

# ---- refused before the code is spent ----
my $code1 = mint(101);
my $t0 = token_requests();
like(try_sql(connect_sql('acme', $code1)),
	qr/ERROR:  55000: no key to seal secrets with: hubspot_events.secret_key_file is not set/,
	'without secret_key_file: ERROR 55000 naming the setting');
is(token_requests(), $t0, 'and no request reached the token endpoint (the code is not spent)');

q1("ALTER SYSTEM SET hubspot_events.secret_key_file = '$dir/secret.key'");
$node->reload;
ok(wait_until(sub { q1("SHOW hubspot_events.secret_key_file") eq "$dir/secret.key" }), 'the key file is configured');

like(try_sql(connect_sql('no good', $code1)), qr/ERROR:  22023: name "no good" is not a valid connection name/,
	'an invalid name: 22023 naming it');
like(try_sql(connect_sql('default', $code1)), qr/ERROR:  22023: the connection "default" cannot be connected with OAuth/,
	'the connection default: 22023');
like(try_sql(connect_sql('acme', $code1, 'app.example/cb')), qr/ERROR:  22023: redirect_uri "app.example\/cb" is not an absolute http or https URL/,
	'a redirect_uri that is not a URL: 22023');
like(try_sql("SELECT hubspot_events.connect_oauth('acme', NULL, '$redirect')"), qr/ERROR:  22004: code must not be null/,
	'a NULL code: 22004');
is(token_requests(), $t0, 'none of them reached the token endpoint');

q1("SELECT hubspot_events.create_connection('static-one', '$node->{hs_token_file}')");
like(try_sql(connect_sql('static-one', $code1)), qr/ERROR:  42710: connection "static-one" already exists with another credential \(auth token_file\)/,
	'a name taken by a token_file connection: 42710');
like(try_sql(connect_sql('static-one', $code1)), qr/HINT:  Drop it first with hubspot_events.drop_connection\(\)/,
	'with the hint to drop it first');
is(token_requests(), $t0, 'refused before the token endpoint too');

# ---- connected ----
is(q1(connect_sql('acme', $code1)), 'acme|101|oauth|active|-',
	'connect_oauth returns the row: hub_id 101 from the token answer, auth oauth, active');
my $req = last_token_request();
is(join('|', map { $req->{$_} // 'null' } qw(path grant_type client_id client_id_ok client_secret_ok code_ok redirect_uri_ok hub_id status)),
	"/oauth/v1/token|authorization_code|$client|1|1|1|1|101|200",
	'the token endpoint got the authorization-code grant: client id and secret, the code and its redirect_uri');
is(token_requests(), $t0 + 1, 'one token request');
is(q1("SELECT count(*) FROM hubspot_events.connections WHERE name = 'acme'"), '1', 'one connections row');
my $sealed1 = sealed_hex('acme');
like($sealed1, qr/^01[0-9a-f]{16}[0-9a-f]{24}[0-9a-f]+$/, 'connection_secrets holds the sealed refresh token (version 1, key id, nonce, ciphertext, tag)');
is(q1("SELECT token_file IS NULL FROM hubspot_events.connection_secrets WHERE connection = 'acme'"), 't', 'and no token file');

# ---- a used code ----
$t0 = token_requests();
my $err = try_sql(connect_sql('acme', $code1));
like($err, qr/ERROR:  HS006: the OAuth token endpoint rejected the authorization code: HTTP 400 invalid_grant: the authorization code was already used/,
	'the same code again: ERROR HS006 with HubSpot\'s answer');
ok(index($err, $code1) < 0, 'the code is not in the error');
is(token_requests(), $t0 + 1, 'it reached the token endpoint once');
is(sealed_hex('acme'), $sealed1, 'the stored secret is unchanged');

# ---- an endpoint that echoes what it was sent: the code and the client secret are taken out ----
my $echoed = mint(101);
mock_config({ oauth_client_id => $client, oauth_client_secret => $secret, oauth_echo => 'json' });
$err = try_sql(connect_sql('acme', $echoed));
mock_config({ oauth_client_id => $client, oauth_client_secret => $secret });
like($err, qr/ERROR:  HS006: the OAuth token endpoint rejected the authorization code: HTTP 400 BAD_REQUEST: could not use the request: grant_type=authorization_code/,
	'an echoing endpoint: HS006 with its answer');
like($err, qr/client_secret=\[secret removed\].*code=\[secret removed\]/, 'the client secret and the code removed from it');
ok(index($err, $echoed) < 0 && index($err, $secret) < 0, 'neither appears');
like($err, qr/redirect_uri=https%3A%2F%2Fapp.example%2Fcb/, 'the redirect_uri (no secret) is kept');

# ---- connecting again: the secret replaced, the row kept, active again ----
q1("UPDATE hubspot_events.connections SET state = 'disconnected', held_reason = 'the app was uninstalled' WHERE name = 'acme'");
my $code2 = mint(101);
is(q1(connect_sql('acme', $code2)), 'acme|101|oauth|active|-', 'connecting again: active again, the reason cleared');
my $sealed2 = sealed_hex('acme');
isnt($sealed2, $sealed1, 'the sealed refresh token was replaced');
is(q1("SELECT count(*) FROM hubspot_events.connections WHERE name = 'acme'") . '|' .
	q1("SELECT count(*) FROM hubspot_events.connection_secrets WHERE connection = 'acme'"), '1|1', 'still one row in each table');

# ---- another HubSpot account under the same name ----
my $other = mint(102);
like(try_sql(connect_sql('acme', $other)), qr/ERROR:  42710: connection "acme" is HubSpot account 101; the authorization code installed the app in account 102/,
	'a code of another account under the name: 42710');
is(q1("SELECT hub_id FROM hubspot_events.connections WHERE name = 'acme'") . '|' . (sealed_hex('acme') eq $sealed2 ? 'same' : 'changed'),
	'101|same', 'the connection and its secret are unchanged');

# ---- a role granted only EXECUTE (and USAGE on the schema) ----
q1("CREATE ROLE platform LOGIN");
q1("GRANT USAGE ON SCHEMA hubspot_events TO platform");
q1("GRANT EXECUTE ON FUNCTION hubspot_events.connect_oauth(text, text, text) TO platform");
my $code3 = mint(102);
my ($rc, $out);
($rc, $out, $err) = $node->psql('postgres', connect_sql('tenant-2', $code3), extra_params => [ '-U', 'platform' ]);
is($out, 'tenant-2|102|oauth|active|-', 'a role granted EXECUTE connects an account')
  or diag($err);
is(q1("SELECT hub_id FROM hubspot_events.connections WHERE name = 'tenant-2'") . '|' .
	q1("SELECT count(*) FROM hubspot_events.connection_secrets WHERE connection = 'tenant-2' AND refresh_token IS NOT NULL"),
	'102|1', 'its connection and sealed secret are stored');
($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM hubspot_events.connection_secrets', extra_params => [ '-U', 'platform' ]);
like($err, qr/permission denied for table connection_secrets/, 'but it cannot read connection_secrets');
($rc, $out, $err) = $node->psql('postgres', "UPDATE hubspot_events.connections SET hub_id = 1 WHERE name = 'tenant-2'", extra_params => [ '-U', 'platform' ]);
like($err, qr/permission denied for table connections/, 'nor write connections');

# ---- no token in clear anywhere ----
my $http = HTTP::Tiny->new(timeout => 30);
my @tokens;
for my $hub (101, 102)
{
	my $r = $http->get("$mock/__mock/oauth/issued?hub_id=$hub");
	die "mock oauth issued failed: $r->{status}" unless $r->{success};
	my $issued = decode_json($r->{content});
	push @tokens, map { $_->{token} } @{ $issued->{refresh_tokens} }, @{ $issued->{access_tokens} };
}
my $nrefresh = grep { /^rt-/ } @tokens;
is(scalar(@tokens) . '|' . $nrefresh, '8|4', 'the mock issued four refresh tokens and four access tokens (acme twice, tenant-2, and the code of hub 102 refused under acme)');

# a marker written the same way, to show that each search finds what is there
my $marker = "marker-$run-" . sprintf('%08x', int(rand(2**32)));
q1("CREATE TABLE public.marker (m text)");
q1("INSERT INTO public.marker VALUES ('$marker')");
q1("CHECKPOINT");

# the files found under a directory that hold one of the needles (binary-safe)
sub files_holding
{
	my ($root, @needles) = @_;
	my %hits;
	find({ no_chdir => 1, wanted => sub {
		return unless -f $File::Find::name;
		open(my $fh, '<:raw', $File::Find::name) or return;
		local $/;
		my $data = <$fh>;
		close($fh);
		return unless defined $data;
		for my $n (@needles)
		{
			$hits{$File::Find::name}++ if index($data, $n) >= 0;
		}
	} }, $root);
	return sort keys %hits;
}

my $pgdata = $node->data_dir;
my @in_base = files_holding("$pgdata/base", $marker);
my @in_wal = files_holding("$pgdata/pg_wal", $marker);
ok(@in_base > 0 && @in_wal > 0, 'the search finds a marker in base/ and pg_wal/');
my @hits = files_holding($pgdata, @tokens);
is(scalar @hits, 0, 'no refresh or access token in the data directory (base/, global/, pg_wal/...)')
  or diag('found in: ' . join(', ', @hits));

my ($dump, $dump_err) = PostgreSQL::Test::Utils::run_command([ 'pg_dump', '-d', $node->connstr('postgres') ]);
like($dump, qr/COPY hubspot_events\.connection_secrets .*\n(?:.*\n)*?acme\t\\N\t\\\\x01/,
	'pg_dump carries connection_secrets (the sealed tokens)');
ok(index($dump, $marker) >= 0, 'and the marker');
is(scalar(grep { index($dump, $_) >= 0 } @tokens), 0, 'no token in the pg_dump');

my $log = slurp_file($node->logfile);
ok(index($log, "connect_oauth('acme', '$code2'") >= 0 && $log =~ /DEBUG:/,
	'the server log has the statements (log_statement = all) and debug messages');
is(scalar(grep { index($log, $_) >= 0 } @tokens), 0, 'no token in the server log');

$node->stop;
done_testing();
