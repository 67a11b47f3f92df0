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
