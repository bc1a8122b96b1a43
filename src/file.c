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
file_stage_write(struct file_stage *st, const char *path, const void *data, size_t len,
    mode_t mode)
{
	const char *base = strrchr(path, '/'), *p = data;
	char *dir = NULL;
	struct stat st_;
	ssize_t w;
	int saved;

	memset(st, 0, sizeof(*st));
	st->fd = -1;
	/* Not a regular file (a device, a FIFO): written at once, as file_write_atomic. */
	if (stat(path, &st_) == 0 && !S_ISREG(st_.st_mode))
		return file_write_atomic_nodirsync(path, data, len, mode);
	base = base != NULL ? base + 1 : path;
	if ((st->path = strdup(path)) == NULL || (dir = file_dirname(path)) == NULL ||
	    asprintf(&st->tmp, "%s/.%s.XXXXXX", dir, base) == -1) {
		st->tmp = NULL;
		errno = ENOMEM;
		goto fail;
	}
	if ((st->fd = mkostemp(st->tmp, O_CLOEXEC)) == -1) {
		free(st->tmp);
		st->tmp = NULL;
		goto fail;
	}
	if (fchmod(st->fd, mode) == -1)
		goto fail;
	while (len > 0) {
		if ((w = write(st->fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	/* Start the writeback now: the fsyncs of file_stage_commit then mostly wait
	 * for one journal commit instead of one each. */
	(void)sync_file_range(st->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	free(dir);
	return 0;
fail:
	saved = errno;
	file_stage_discard(st);
	free(dir);
	errno = saved;
	return -1;
}

int
file_stage_commit(struct file_stage *const *st, size_t n)
{
	size_t i;
	int saved;

	for (i = 0; i < n; i++)
		if (st[i]->tmp != NULL && fsync(st[i]->fd) == -1)
			goto fail;
	for (i = 0; i < n; i++) {
		if (st[i]->tmp == NULL)
			continue;
		if (close(st[i]->fd) == -1) {
			st[i]->fd = -1;
			goto fail;
		}
		st[i]->fd = -1;
		if (rename(st[i]->tmp, st[i]->path) == -1)
			goto fail;
		free(st[i]->tmp);
		st[i]->tmp = NULL;
		free(st[i]->path);
		st[i]->path = NULL;
	}
	return 0;
fail:
	saved = errno;
	for (i = 0; i < n; i++)
		file_stage_discard(st[i]);
	errno = saved;
	return -1;
}

void
file_stage_discard(struct file_stage *st)
{
	if (st->tmp != NULL) {
		if (st->fd != -1)
			close(st->fd);
		unlink(st->tmp);
	}
	st->fd = -1;
	free(st->tmp);
	free(st->path);
	st->tmp = st->path = NULL;
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
