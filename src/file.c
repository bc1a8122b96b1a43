/* Whole-file reads and crash-safe replacement (file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
file_read(const char *path, size_t max, char **out, size_t *lenp)
{
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t r;
	int fd, saved;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			if ((nb = realloc(buf, cap)) == NULL) {
				errno = ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (max > 0 && len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	if (lenp != NULL)
		*lenp = len;
	return 0;
fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return -1;
}

char *
file_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int
file_fsync_dir(const char *dir)
{
	int fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
file_write_atomic_do(const char *path, const void *data, size_t len, mode_t mode, int syncdir)
{
	const char *base = strrchr(path, '/'), *p = data;
	char *dir = NULL, *tmp = NULL;
	struct stat st;
	ssize_t w;
	int fd = -1, rc = -1, saved;

	/* A device or a FIFO (/dev/null, /dev/stdout, a pipe) is written to, never
	 * renamed over: replacing /dev/null with a regular file breaks the machine. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode)) {
			errno = EISDIR;
			return -1;
		}
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
			return -1;
		while (len > 0) {
			if ((w = write(fd, p, len)) == -1) {
				if (errno == EINTR)
					continue;
				saved = errno;
				close(fd);
				errno = saved;
				return -1;
			}
			p += w;
			len -= (size_t)w;
		}
		return close(fd);
	}
	base = base != NULL ? base + 1 : path;
	if ((dir = file_dirname(path)) == NULL)
		goto fail;
	if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) == -1) {
		tmp = NULL;
		errno = ENOMEM;
		goto fail;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	if (fchmod(fd, mode) == -1)
		goto fail;
	while (len > 0) {
		if ((w = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	free(tmp);
	tmp = NULL;
	if (syncdir)
		(void)file_fsync_dir(dir);
	rc = 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	free(dir);
	errno = saved;
	return rc;
}

int
file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return file_write_atomic_do(path, data, len, mode, 1);
}

int
file_write_atomic_nodirsync(const char *path, const void *data, size_t len, mode_t mode)
{
	return file_write_atomic_do(path, data, len, mode, 0);
}

int
file_mkdirs(const char *path, mode_t mode)
{
	char *p, *s;
	int rc = -1;

	if ((p = strdup(path)) == NULL)
		return -1;
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) == -1 && errno != EEXIST)
			goto fail;
		*s = c;
		if (c == '\0')
			break;
	}
	rc = 0;
fail:
	free(p);
	return rc;
}
