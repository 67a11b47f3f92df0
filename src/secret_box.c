/*-------------------------------------------------------------------------
 *
 * secret_box.c
 *	  Sealing secrets (the connections' OAuth refresh tokens) with
 *	  AES-256-GCM under the key in the file named by
 *	  hubspot_events.secret_key_file, with OpenSSL's libcrypto.
 *
 * A sealed secret is one bytea:
 *
 *	  version (1 byte, 1) | key id (8) | nonce (12) | ciphertext | tag (16)
 *
 * The key id is the first 8 bytes of the SHA-256 of the key: a secret sealed
 * under another key is told apart from a damaged one.  The nonce is random
 * (RAND_bytes) for every seal; with 96-bit random nonces one key seals far
 * more secrets than a database of connections ever will before a collision
 * is a concern.  The additional authenticated data is the version and key id
 * bytes followed by the caller's aad (a connection's name): a sealed secret
 * copied to another connection's row, or with its header altered, does not
 * open.
 *
 * The key file holds 32 random bytes as 64 hexadecimal characters,
 * optionally followed by one newline (openssl rand -hex 32), and is
 * readable by the server's operating-system user only (or owned by root and
 * readable by its group, PostgreSQL's rule for ssl_key_file).  It is read
 * with secret_file.c's reader on first use, and again when the settings
 * change (hs_settings_generation) or the file does (its identity, size or
 * times).  Each process keeps the key in its own memory, wiped when it is
 * replaced or forgotten; it never reaches a log line or an error message.
 *
 * OpenSSL's work is done without any ereport in between: each operation
 * frees its EVP_CIPHER_CTX (which wipes the key schedule) on every path,
 * then the caller reports what failed.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "utils/builtins.h"

#define HS_SEAL_VERSION		1
#define HS_SEAL_KEY_LEN		32
#define HS_SEAL_KEY_ID_LEN	8
#define HS_SEAL_NONCE_LEN	12
#define HS_SEAL_TAG_LEN		16
#define HS_SEAL_HEADER_LEN	(1 + HS_SEAL_KEY_ID_LEN)	/* authenticated, before the nonce */
#define HS_SEAL_OVERHEAD	(HS_SEAL_HEADER_LEN + HS_SEAL_NONCE_LEN + HS_SEAL_TAG_LEN)
/* a secret sealed here is a token of a few hundred bytes: refuse anything absurd */
#define HS_SEAL_PLAIN_MAX	(64 * 1024)
#define HS_SEAL_AAD_MAX		1024

/* The key in use, and the file state it was read from. */
typedef struct HsSecretKey
{
	bool		loaded;
	unsigned char key[HS_SEAL_KEY_LEN];
	unsigned char id[HS_SEAL_KEY_ID_LEN];
	char		path[MAXPGPATH];
	uint64		generation;		/* hs_settings_generation when read */
	struct stat st;				/* the file when read */
} HsSecretKey;

static HsSecretKey key_cache;

/* What an OpenSSL operation says when it fails (filled without ereport). */
typedef struct HsCryptoFailure
{
	const char *step;			/* NULL: it did not fail */
	bool		tag_mismatch;	/* opening: the tag did not verify */
	char		reason[256];	/* OpenSSL's error queue, or "" */
} HsCryptoFailure;

bool
hs_secret_key_configured(void)
{
	return hs_secret_key_file != NULL && hs_secret_key_file[0] != '\0';
}

static void
forget_key(void)
{
	explicit_bzero(&key_cache, sizeof(key_cache));
}

/* Record OpenSSL's first queued error as the failure's reason, and clear the queue. */
static void
note_failure(HsCryptoFailure *f, const char *step)
{
	unsigned long e = ERR_get_error();

	f->step = step;
	if (e != 0)
		ERR_error_string_n(e, f->reason, sizeof(f->reason));
	ERR_clear_error();
}

/*
 * Decode the key file's text into key_cache (64 hex digits, from a file of
 * at most 65 bytes: the digits and one newline).  False when it is not that.
 */
static bool
decode_key(const char *text, const struct stat *st)
{
	/* checked first: hex_decode's error would show the offending character */
	if (strlen(text) != 2 * HS_SEAL_KEY_LEN || st->st_size > 2 * HS_SEAL_KEY_LEN + 1 ||
		strspn(text, "0123456789abcdefABCDEF") != 2 * HS_SEAL_KEY_LEN)
		return false;
	return hex_decode(text, 2 * HS_SEAL_KEY_LEN, (char *) key_cache.key) == HS_SEAL_KEY_LEN;
}

/*
 * Whether the key file's owner and mode keep it from other users:
 * PostgreSQL's rule for ssl_key_file.  *why says what is wrong.
 */
static bool
key_file_private(const struct stat *st, const char **why)
{
	if (st->st_uid != geteuid() && st->st_uid != 0)
	{
		*why = "The file must be owned by the operating-system user the server runs as, or by root.";
		return false;
	}
	if ((st->st_uid == geteuid() && (st->st_mode & (S_IRWXG | S_IRWXO))) ||
		(st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
	{
		*why = "The file must not be accessible to other users: u=rw (0600) or less when owned by the server's user, u=rw,g=r (0640) or less when owned by root.";
		return false;
	}
	return true;
}

/*
 * Make key_cache hold the configured key: read again when the setting, the
 * settings' generation or the file changed.  Throws 55000 when no key file
 * is configured, F0000 when the file does not hold a key or is not private,
 * and the reader's errors when it cannot be read; the key is forgotten
 * first in every such case.  Never shows the file's content.
 */
static void
load_key(void)
{
	const char *path = hs_secret_key_file;
	struct stat st;
	char	   *text;
	const char *why = NULL;
	bool		ok;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	HsCryptoFailure f = {0};

	if (!hs_secret_key_configured())
	{
		forget_key();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no key to seal secrets with: hubspot_events.secret_key_file is not set"),
				 errhint("Write 32 random bytes as 64 hexadecimal characters into a file outside the data directory that only the server's operating-system user can read (openssl rand -hex 32), set hubspot_events.secret_key_file to its absolute path in postgresql.conf, and reload the configuration.")));
	}
	if (key_cache.loaded &&
		key_cache.generation == hs_settings_generation &&
		strcmp(key_cache.path, path) == 0 &&
		stat(path, &st) == 0 &&
		hs_same_file(&st, &key_cache.st))
		return;

	forget_key();
	text = hs_read_secret_file("secret_key_file", "secret key", "a secret key", path, &st,
							   CurrentMemoryContext);
	ok = key_file_private(&st, &why);
	if (ok)
		ok = decode_key(text, &st);
	explicit_bzero(text, strlen(text));
	pfree(text);
	if (!ok)
	{
		forget_key();
		if (why)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("the file named by hubspot_events.secret_key_file \"%s\" is accessible to other users", path),
					 errdetail("%s", why),
					 errhint("Run chmod 600 on the file, as its owner.")));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the file named by hubspot_events.secret_key_file \"%s\" does not hold a valid key", path),
				 errdetail("The file must hold 32 bytes as 64 hexadecimal characters, optionally followed by one newline, and nothing else."),
				 errhint("Create it with: openssl rand -hex 32.")));
	}

	/* the key's id: the first bytes of its SHA-256 */
	ERR_clear_error();
	if (EVP_Digest(key_cache.key, HS_SEAL_KEY_LEN, digest, &dlen, EVP_sha256(), NULL) != 1 ||
		dlen < HS_SEAL_KEY_ID_LEN)
		note_failure(&f, "EVP_Digest");
	else
		memcpy(key_cache.id, digest, HS_SEAL_KEY_ID_LEN);
	explicit_bzero(digest, sizeof(digest));
	if (f.step)
	{
		forget_key();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the secret key's id: %s failed%s%s",
						f.step, f.reason[0] ? ": " : "", f.reason)));
	}
	strlcpy(key_cache.path, path, sizeof(key_cache.path));
	key_cache.st = st;
	key_cache.generation = hs_settings_generation;
	key_cache.loaded = true;
}

/*
 * Throw unless a key is configured and its file holds a usable key (as
 * load_key): for a caller that must know before it does anything that
 * cannot be undone (connect_oauth exchanges a single-use code).
 */
void
hs_secret_require_key(void)
{
	load_key();
}

/* Feed the additional authenticated data: the header, then the caller's aad. */
static bool
feed_aad(EVP_CIPHER_CTX *ctx, bool encrypt, const unsigned char *header, const char *aad)
{
	int			outl;
	size_t		alen = strlen(aad);

	if (encrypt)
		return EVP_EncryptUpdate(ctx, NULL, &outl, header, HS_SEAL_HEADER_LEN) == 1 &&
			(alen == 0 || EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *) aad, (int) alen) == 1);
	return EVP_DecryptUpdate(ctx, NULL, &outl, header, HS_SEAL_HEADER_LEN) == 1 &&
		(alen == 0 || EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *) aad, (int) alen) == 1);
}

/*
 * Encrypt len bytes of plain into out (the sealed layout after the header:
 * nonce, ciphertext, tag), the header and aad authenticated.  Never throws.
 */
static void
seal_raw(const unsigned char *plain, int len, const unsigned char *header, const char *aad,
		 unsigned char *out, HsCryptoFailure *f)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *nonce = out;
	unsigned char *ct = out + HS_SEAL_NONCE_LEN;
	unsigned char *tag = ct + len;
	int			outl = 0;
	int			finl = 0;

	ERR_clear_error();
	if (RAND_bytes(nonce, HS_SEAL_NONCE_LEN) != 1)
	{
		note_failure(f, "RAND_bytes");
		return;
	}
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		note_failure(f, "EVP_CIPHER_CTX_new");
	else if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
			 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, HS_SEAL_NONCE_LEN, NULL) != 1 ||
			 EVP_EncryptInit_ex(ctx, NULL, NULL, key_cache.key, nonce) != 1)
		note_failure(f, "EVP_EncryptInit_ex");
	else if (!feed_aad(ctx, true, header, aad))
		note_failure(f, "EVP_EncryptUpdate (aad)");
	else if (len > 0 && (EVP_EncryptUpdate(ctx, ct, &outl, plain, len) != 1 || outl != len))
		note_failure(f, "EVP_EncryptUpdate");
	else if (EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1 || finl != 0)
		note_failure(f, "EVP_EncryptFinal_ex");
	else if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, HS_SEAL_TAG_LEN, tag) != 1)
		note_failure(f, "EVP_CTRL_GCM_GET_TAG");
	/* frees and wipes the key schedule, on every path */
	EVP_CIPHER_CTX_free(ctx);
}

/*
 * Decrypt the sealed layout after the header (nonce, ciphertext of len
 * bytes, tag) into plain, the header and aad authenticated.  Never throws;
 * f->tag_mismatch when the tag did not verify (plain then holds bytes that
 * must not be used: the caller wipes it).
 */
static void
open_raw(const unsigned char *in, int len, const unsigned char *header, const char *aad,
		 unsigned char *plain, HsCryptoFailure *f)
{
	EVP_CIPHER_CTX *ctx = NULL;
	const unsigned char *nonce = in;
	const unsigned char *ct = in + HS_SEAL_NONCE_LEN;
	unsigned char tag[HS_SEAL_TAG_LEN];
	int			outl = 0;
	int			finl = 0;

	/* EVP_CTRL_GCM_SET_TAG takes a writable buffer */
	memcpy(tag, ct + len, HS_SEAL_TAG_LEN);
	ERR_clear_error();
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		note_failure(f, "EVP_CIPHER_CTX_new");
	else if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
			 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, HS_SEAL_NONCE_LEN, NULL) != 1 ||
			 EVP_DecryptInit_ex(ctx, NULL, NULL, key_cache.key, nonce) != 1)
		note_failure(f, "EVP_DecryptInit_ex");
	else if (!feed_aad(ctx, false, header, aad))
		note_failure(f, "EVP_DecryptUpdate (aad)");
	else if (len > 0 && (EVP_DecryptUpdate(ctx, plain, &outl, ct, len) != 1 || outl != len))
		note_failure(f, "EVP_DecryptUpdate");
	else if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, HS_SEAL_TAG_LEN, tag) != 1)
		note_failure(f, "EVP_CTRL_GCM_SET_TAG");
	else if (EVP_DecryptFinal_ex(ctx, plain + outl, &finl) != 1)
	{
		f->tag_mismatch = true;
		note_failure(f, "EVP_DecryptFinal_ex");
	}
	EVP_CIPHER_CTX_free(ctx);
}

static void
check_aad(const char *aad)
{
	if (strlen(aad) > HS_SEAL_AAD_MAX)
		elog(ERROR, "the additional data of a sealed secret is longer than %d bytes", HS_SEAL_AAD_MAX);
}

/*
 * Seal len bytes of plain, bound to aad (a connection's name), under the
 * configured key: a palloc'd bytea in the layout above.  Throws as load_key
 * when there is no usable key.  The caller wipes plain.
 */
bytea *
hs_secret_seal(const char *plain, size_t len, const char *aad)
{
	bytea	   *sealed;
	unsigned char *p;
	HsCryptoFailure f = {0};

	check_aad(aad);
	if (len > HS_SEAL_PLAIN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a secret to seal is %zu bytes long; the limit is %d bytes", len, HS_SEAL_PLAIN_MAX)));
	load_key();
	sealed = palloc(VARHDRSZ + HS_SEAL_OVERHEAD + len);
	SET_VARSIZE(sealed, VARHDRSZ + HS_SEAL_OVERHEAD + len);
	p = (unsigned char *) VARDATA(sealed);
	p[0] = HS_SEAL_VERSION;
	memcpy(p + 1, key_cache.id, HS_SEAL_KEY_ID_LEN);
	seal_raw((const unsigned char *) plain, (int) len, p, aad, p + HS_SEAL_HEADER_LEN, &f);
	if (f.step)
	{
		pfree(sealed);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not seal a secret: %s failed%s%s",
						f.step, f.reason[0] ? ": " : "", f.reason)));
	}
	return sealed;
}

/*
 * The secret sealed in sealed for aad, as a palloc'd NUL-terminated string
 * (the caller wipes it with explicit_bzero).  Throws 55000 when no key is
 * configured (or the key file's errors, as load_key); 0A000 when it was
 * sealed in a format this library does not read; F0000 when it was sealed
 * under another key than the configured one; XX001 when it is damaged,
 * altered, or bound to another aad (it was copied from another record).
 */
char *
hs_secret_open(const bytea *sealed, const char *aad)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(sealed);
	size_t		n = VARSIZE_ANY_EXHDR(sealed);
	size_t		ct_len;
	char	   *plain;
	HsCryptoFailure f = {0};

	check_aad(aad);
	load_key();
	if (n >= 1 && p[0] != HS_SEAL_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the sealed secret has an unknown format"),
				 errdetail("Its format version is %d; this library reads version %d.",
						   p[0], HS_SEAL_VERSION)));
	if (n < HS_SEAL_OVERHEAD || n - HS_SEAL_OVERHEAD > HS_SEAL_PLAIN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the sealed secret is damaged"),
				 errdetail("It is %zu bytes long; a sealed secret is %d to %d bytes long.",
						   n, HS_SEAL_OVERHEAD, HS_SEAL_OVERHEAD + HS_SEAL_PLAIN_MAX)));
	if (memcmp(p + 1, key_cache.id, HS_SEAL_KEY_ID_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the sealed secret was sealed with another key than the one in the file named by hubspot_events.secret_key_file"),
				 errdetail("The key's id in the sealed secret differs from the configured key's: the key file was replaced or changed since."),
				 errhint("Put the key the secret was sealed with back into the file, or store the secret again under the current key.")));

	ct_len = n - HS_SEAL_OVERHEAD;
	plain = palloc(ct_len + 1);
	open_raw(p + HS_SEAL_HEADER_LEN, (int) ct_len, p, aad, (unsigned char *) plain, &f);
	if (f.step)
	{
		/* nothing of an unauthenticated plaintext is left behind */
		explicit_bzero(plain, ct_len + 1);
		pfree(plain);
		if (f.tag_mismatch)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the sealed secret is damaged or was tampered with"),
					 errdetail("Its authentication tag does not match: its bytes were altered, or it was copied from another record than the one it was sealed for.")));
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not open a sealed secret: %s failed%s%s",
						f.step, f.reason[0] ? ": " : "", f.reason)));
	}
	plain[ct_len] = '\0';
	return plain;
}
