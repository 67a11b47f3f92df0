/*-------------------------------------------------------------------------
 *
 * secret_file.c
 *	  Reading a secret from the file a setting names (the access token, the
 *	  OAuth client secret and refresh token): checked, never logged.
 *
 *-------------------------------------------------------------------------
 */
#include "hubspot_events.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

/* HubSpot's secrets are a few hundred characters; refuse anything absurd. */
#define HS_TOKEN_MAX_LEN 8192

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
 * Whether a file named by a setting is still the one read before: the same
 * device and inode (not replaced by a rename), size, and modification and
 * change times to the nanosecond (not rewritten in place, not chmod'ed).
 * Every cache of a file's contents, and every hold a file's change
 * releases, asks this one question.
 */
bool
hs_same_file(const struct stat *now, const struct stat *then)
{
	return now->st_dev == then->st_dev && now->st_ino == then->st_ino &&
		now->st_size == then->st_size &&
		now->st_mtim.tv_sec == then->st_mtim.tv_sec &&
		now->st_mtim.tv_nsec == then->st_mtim.tv_nsec &&
		now->st_ctim.tv_sec == then->st_ctim.tv_sec &&
		now->st_ctim.tv_nsec == then->st_ctim.tv_nsec;
}

/* Wipe a cached secret (not left behind in freed memory) and forget its file. */
void
hs_secret_file_forget(HsSecretFileCache *cache)
{
	if (cache->value)
	{
		explicit_bzero(cache->value, strlen(cache->value));
		pfree(cache->value);
	}
	if (cache->path)
		pfree(cache->path);
	memset(cache, 0, sizeof(*cache));
}

/*
 * The secret in the file at path, read again only when the file is not the
 * one read before (hs_same_file), the path changed, or the configuration
 * was reloaded; kept in TopMemoryContext.  Throws as hs_read_secret_file,
 * with nothing cached.
 */
const char *
hs_secret_file_cached(HsSecretFileCache *cache, const char *setting,
					  const char *what, const char *what_a, const char *path)
{
	struct stat st;

	if (cache->value != NULL &&
		cache->generation == hs_settings_generation &&
		strcmp(cache->path, path) == 0 &&
		stat(path, &st) == 0 &&
		hs_same_file(&st, &cache->st))
		return cache->value;
	hs_secret_file_forget(cache);
	cache->value = hs_read_secret_file(setting, what, what_a, path, &st, TopMemoryContext);
	cache->path = MemoryContextStrdup(TopMemoryContext, path);
	cache->st = st;
	cache->generation = hs_settings_generation;
	return cache->value;
}
