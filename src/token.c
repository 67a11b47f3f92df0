/*-------------------------------------------------------------------------
 *
 * token.c
 *	  The HubSpot access token, read from the file named by
 *	  hubspot_events.access_token_file.
 *
 * The token is read on first use, and again after a settings reload or when
 * the file changes (its identity, size or times differ), so that a rotated
 * token is picked up without a restart.  It is kept in TopMemoryContext and
 * never appears in a log line, an error message or a table: errors name the
 * setting and the path, never the contents.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

/* HubSpot tokens are a few hundred characters; refuse anything absurd. */
#define HS_TOKEN_MAX_LEN 8192

static char *cached_token = NULL;
static char *cached_path = NULL;
static uint64 cached_generation = 0;
static struct stat cached_stat;

static bool
same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
		a->st_size == b->st_size &&
		a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
		a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
		a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
		a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void
forget_token(void)
{
	if (cached_token)
	{
		/* do not leave the secret behind in freed memory */
		explicit_bzero(cached_token, strlen(cached_token));
		pfree(cached_token);
		cached_token = NULL;
	}
	if (cached_path)
	{
		pfree(cached_path);
		cached_path = NULL;
	}
}

/*
 * Read and check a file holding a secret (the access token, the OAuth
 * client secret or refresh token): its contents without surrounding white
 * space, visible ASCII only, allocated in cxt.  setting is the setting that
 * names the file ("access_token_file"), what the secret ("access token"),
 * what_a the same with its article ("an access token").  Throws naming the
 * setting and the path, never the contents.
 */
char *
hs_read_secret_file(const char *setting, const char *what, const char *what_a,
					const char *path, struct stat *st, MemoryContext cxt)
{
	int			fd;
	char		buf[HS_TOKEN_MAX_LEN + 2];
	ssize_t		len = 0;
	char	   *start;
	char	   *end;
	char	   *result;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the file named by hubspot_events.%s \"%s\": %m", setting, path),
				 errhint("The file must be readable by the operating-system user the server runs as.")));
	if (fstat(fd, st) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat the file named by hubspot_events.%s \"%s\": %m", setting, path)));
	}
	for (;;)
	{
		ssize_t		n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n < 0)
		{
			int			save_errno = errno;

			if (errno == EINTR)
				continue;
			explicit_bzero(buf, sizeof(buf));
			CloseTransientFile(fd);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the file named by hubspot_events.%s \"%s\": %m", setting, path)));
		}
		if (n == 0)
			break;
		len += n;
		if (len >= (ssize_t) sizeof(buf) - 1)
			break;
	}
	CloseTransientFile(fd);
	buf[len] = '\0';

	if (len > HS_TOKEN_MAX_LEN)
	{
		explicit_bzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the file named by hubspot_events.%s \"%s\" is too large to hold %s", setting, path, what_a),
				 errdetail("The file may hold at most %d bytes.", HS_TOKEN_MAX_LEN)));
	}

	start = buf;
	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = buf + len;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	*end = '\0';

	if (start == end)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the file named by hubspot_events.%s \"%s\" is empty", setting, path),
				 errhint("Write the HubSpot %s into the file.", what)));

	/* a token goes into an HTTP header: only visible ASCII, or a header could be forged */
	for (char *p = start; p < end; p++)
	{
		if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
		{
			explicit_bzero(buf, sizeof(buf));
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("the file named by hubspot_events.%s \"%s\" does not hold a valid %s", setting, path, what),
					 errdetail("The %s contains a character that is not visible ASCII at position %d.",
							   what, (int) (p - start) + 1)));
		}
	}

	result = MemoryContextStrdup(cxt, start);
	explicit_bzero(buf, sizeof(buf));
	return result;
}

/*
 * The access token to send: OAuth's when hubspot_events.oauth_client_id is
 * set (see oauth.c), else the token file's.  Throws when none is
 * configured, the OAuth settings are incomplete, or a file cannot be used.
 */
const char *
hs_get_access_token(void)
{
	const char *path = hs_access_token_file;
	struct stat st;

	/* OAuth, when configured, takes precedence over the static token file */
	hs_oauth_check_settings();
	if (hs_oauth_enabled())
	{
		forget_token();
		return hs_oauth_access_token();
	}

	if (path == NULL || path[0] == '\0')
	{
		forget_token();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no HubSpot access token is configured"),
				 errhint("Set hubspot_events.access_token_file to the path of a file holding the token, then reload the configuration.")));
	}

	if (cached_token != NULL &&
		cached_generation == hs_settings_generation &&
		strcmp(cached_path, path) == 0 &&
		stat(path, &st) == 0 &&
		same_file_state(&st, &cached_stat))
		return cached_token;

	forget_token();
	{
		char	   *token = hs_read_secret_file("access_token_file", "access token",
												"an access token", path, &st,
												TopMemoryContext);

		cached_token = token;
		cached_path = MemoryContextStrdup(TopMemoryContext, path);
		cached_stat = st;
		cached_generation = hs_settings_generation;
	}
	return cached_token;
}
