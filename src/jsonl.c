/* JSON-lines appends (jsonl.h). */
#include "jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

int
jsonl_write(int fd, const char *line, size_t len)
{
	ssize_t w;

	do
		w = write(fd, line, len);
	while (w == -1 && errno == EINTR);
	if (w == -1)
		return -1;
	if ((size_t)w != len) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/* jansson's dump callback: appends to a struct buf. */
static int
jsonl_dump_cb(const char *p, size_t n, void *arg)
{
	return buf_add(arg, p, n);
}

int
jsonl_append(const char *path, json_t *obj, int sync)
{
	return jsonl_append_many(path, &obj, 1, sync);
}

int
jsonl_append_many(const char *path, json_t *const *objs, size_t n, int sync)
{
	struct buf b;
	size_t i;
	int fd = -1, rc = -1, saved;

	buf_init(&b);
	for (i = 0; i < n; i++)
		if (json_dump_callback(objs[i], jsonl_dump_cb, &b,
		    JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 || buf_addc(&b, '\n') == -1) {
			errno = ENOMEM;
			goto fail;
		}
	if (n == 0) {
		rc = 0;
		goto fail;
	}
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) == -1)
		goto fail;
	if (jsonl_write(fd, b.p, b.len) == -1 || (sync && fsync(fd) == -1))
		goto fail;
	rc = 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	buf_free(&b);
	errno = saved;
	return rc;
}
