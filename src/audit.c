/* Request audit log: one JSON object per line, each written with one write(2)
 * on an O_APPEND descriptor, so concurrent lines never interleave and nothing
 * is lost in a user-space buffer when the process dies.
 *
 * Writers hold a read lock on the descriptor only for the write itself; a re-open
 * (rotation) takes the write lock to swap descriptors. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "jsonl.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

/* Longest string field copied into a line (bytes of input); longer values are cut
 * at a character boundary so one hostile name cannot make huge lines. */
#define AUDIT_FIELD_MAX	4096

static pthread_rwlock_t audit_lock = PTHREAD_RWLOCK_INITIALIZER;
static int audit_fd = -1;
static char *audit_path;	/* NULL: stderr */
static dev_t audit_dev;
static ino_t audit_ino;
static atomic_int audit_fail;	/* 1 while in a failure streak */

/* Appends s as a JSON string (or null). Control characters are escaped and
 * invalid UTF-8 becomes U+FFFD, so every line stays valid JSON whatever a client
 * put in a tool name or a certificate. */
static void
audit_put_jstr(struct buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n, i = 0, k;
	char esc[8];

	if (str == NULL) {
		buf_adds(b, "null");
		return;
	}
	n = strlen(str);
	if (n > AUDIT_FIELD_MAX)
		n = AUDIT_FIELD_MAX;
	buf_add(b, "\"", 1);
	while (i < n) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			buf_add(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			switch (c) {
			case '\n': buf_adds(b, "\\n"); break;
			case '\r': buf_adds(b, "\\r"); break;
			case '\t': buf_adds(b, "\\t"); break;
			case '\b': buf_adds(b, "\\b"); break;
			case '\f': buf_adds(b, "\\f"); break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				buf_adds(b, esc);
			}
			i++;
		} else if ((k = text_utf8_seq(s + i, n - i, NULL)) == 0) {
			buf_adds(b, "\\ufffd");
			i++;
		} else {
			buf_add(b, str + i, k);
			i += k;
		}
	}
	buf_add(b, "\"", 1);
}

static void
audit_put_field(struct buf *b, const char *key, const char *val)
{
	buf_add(b, ",\"", 2);
	buf_adds(b, key);
	buf_add(b, "\":", 2);
	audit_put_jstr(b, val);
}

/* Decimal digits of v into p (no terminator); returns the count. printf is the
 * largest cost of a line otherwise (one line per request). */
static size_t
audit_put_u64(char *p, unsigned long long v)
{
	char t[20];
	size_t n = 0, i;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	for (i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

static void
audit_put_2(char *p, int v)
{
	p[0] = (char)('0' + v / 10 % 10);
	p[1] = (char)('0' + v % 10);
}

static void
audit_put_ts(struct buf *b)
{
	/* The date and time of the current second, per thread: gmtime once a second. */
	static _Thread_local time_t sec = (time_t)-1;
	static _Thread_local char day[32];
	struct timespec ts;
	struct tm tm;
	char t[48];
	long ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != sec) {
		gmtime_r(&ts.tv_sec, &tm);
		if (strftime(day, sizeof(day), "{\"ts\":\"%Y-%m-%dT%H:%M:%S.", &tm) == 0)
			day[0] = '\0';
		sec = ts.tv_sec;
	}
	ms = ts.tv_nsec / 1000000;
	buf_adds(b, day);
	t[0] = (char)('0' + ms / 100);
	audit_put_2(t + 1, (int)(ms % 100));
	memcpy(t + 3, "Z\"", 2);
	buf_add(b, t, 5);
}

/* A JSON-RPC id: a string, a number or null (anything else is not an id). */
static void
audit_put_rpc_id_value(struct buf *b, const json_t *id)
{
	char num[48];

	if (json_is_string(id))
		audit_put_jstr(b, json_string_value(id));
	else if (json_is_integer(id)) {
		json_int_t v = json_integer_value(id);
		size_t n = 0;

		if (v < 0)
			num[n++] = '-';
		n += audit_put_u64(num + n,
		    v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
		buf_add(b, num, n);
	} else if (json_is_real(id) && isfinite(json_real_value(id))) {
		snprintf(num, sizeof(num), "%.17g", json_real_value(id));
		buf_adds(b, num);
	} else
		buf_adds(b, "null");
}

/* "rpc_id": see audit.h. A notification (no id) has none. */
static void
audit_put_rpc_id(struct buf *b, const json_t *id, const json_t *msg)
{
	const json_t *v;
	size_t i, n = 0;

	if (id == NULL && json_is_object(msg))
		id = json_object_get(msg, "id");
	if (id != NULL) {
		buf_adds(b, ",\"rpc_id\":");
		audit_put_rpc_id_value(b, id);
		return;
	}
	if (!json_is_array(msg))
		return;
	buf_adds(b, ",\"rpc_id\":[");
	for (i = 0; i < json_array_size(msg); i++) {
		if ((v = json_object_get(json_array_get(msg, i), "id")) == NULL)
			continue;
		if (n++ > 0)
			buf_add(b, ",", 1);
		audit_put_rpc_id_value(b, v);
	}
	buf_add(b, "]", 1);
}

void
audit_request_id(char *buf, size_t len, uint64_t conn_id, unsigned nreq)
{
	static atomic_uint instance;
	unsigned v = atomic_load(&instance), r = 0;

	if (v == 0) {
		if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
			r = (unsigned)time(NULL) ^ (unsigned)getpid() << 16;
		r |= 1;         /* never 0: 0 means "not yet chosen" */
		atomic_compare_exchange_strong(&instance, &v, r);
		v = atomic_load(&instance);
	}
	{
		static const char hex[] = "0123456789abcdef";
		char t[64];
		size_t n = 0;
		int i;

		for (i = 7; i >= 0; i--)
			t[n++] = hex[(v >> (i * 4)) & 0xf];
		t[n++] = '-';
		n += audit_put_u64(t + n, (unsigned long long)conn_id);
		t[n++] = '-';
		n += audit_put_u64(t + n, nreq);
		if (len == 0)
			return;
		if (n >= len)
			n = len - 1;
		memcpy(buf, t, n);
		buf[n] = '\0';
	}
}

/* Builds the whole line (with its newline) into b. */
static void
audit_format(struct buf *b, const struct audit_rec *r)
{
	char num[64];
	double d = r->duration_ms;

	audit_put_ts(b);
	audit_put_field(b, "agent", r->agent);
	audit_put_field(b, "serial", r->serial);
	audit_put_field(b, "peer", r->peer);
	audit_put_field(b, "method", r->method);
	audit_put_field(b, "name", r->name);
	audit_put_field(b, "decision", r->decision);
	if (r->reason != NULL)
		audit_put_field(b, "reason", r->reason);
	if (r->detail != NULL)
		audit_put_field(b, "detail", r->detail);
	if (!(d >= 0) || d > 1e12)	/* NaN and infinities are not JSON */
		d = 0;
	{
		/* ",\"status\":%d,\"duration_ms\":%.3f" without printf */
		unsigned long long us = (unsigned long long)(d * 1000.0 + 0.5);
		size_t n = 0;

		memcpy(num, ",\"status\":", 10);
		n = 10;
		if (r->status < 0) {
			num[n++] = '-';
			n += audit_put_u64(num + n, (unsigned long long)-(long long)r->status);
		} else
			n += audit_put_u64(num + n, (unsigned long long)r->status);
		memcpy(num + n, ",\"duration_ms\":", 15);
		n += 15;
		n += audit_put_u64(num + n, us / 1000);
		num[n++] = '.';
		num[n++] = (char)('0' + us % 1000 / 100);
		audit_put_2(num + n, (int)(us % 100));
		n += 2;
		buf_add(b, num, n);
	}
	if (r->session != NULL)
		audit_put_field(b, "session", r->session);
	if (r->request_id != NULL)
		audit_put_field(b, "request_id", r->request_id);
	audit_put_rpc_id(b, r->rpc_id, r->rpc_msg);
	if (r->agent == NULL && r->subject != NULL)
		audit_put_field(b, "subject", r->subject);
	if (r->agent == NULL && r->uri != NULL)
		audit_put_field(b, "uri", r->uri);
	buf_add(b, "}\n", 2);
}

/* Counts a failure and logs the first of a streak. Called with audit_lock held
 * (read), so audit_path cannot be swapped away underneath. */
static void
audit_failed(const char *what, int err)
{
	metrics_inc(M_AUDIT_WRITE_FAIL);
	if (atomic_exchange(&audit_fail, 1) == 0)
		log_err("audit log %s: %s: %s", audit_path ? audit_path :
		    audit_fd == -1 ? "(none)" : "(stderr)", what,
		    err ? strerror(err) : "short write");
}

int
audit_write(const struct audit_rec *r)
{
	char stack[2048];
	struct buf b;
	ssize_t w = -1;
	int err = 0, rc = -1;

	/* On the stack while it fits: one line per request, no allocation. */
	buf_init_stack(&b, stack, sizeof(stack));
	audit_format(&b, r);
	pthread_rwlock_rdlock(&audit_lock);
	if (buf_failed(&b)) {
		audit_failed("cannot format line", ENOMEM);
		goto fail;
	}
	if (audit_fd == -1) {
		audit_failed("not open", EBADF);
		goto fail;
	}
	w = jsonl_write(audit_fd, b.p, b.len) == 0 ? (ssize_t)b.len : -1;
	err = w == -1 ? errno : 0;
	if (w != (ssize_t)b.len) {
		audit_failed("write failed", err);
		goto fail;
	}
	if (atomic_exchange(&audit_fail, 0) == 1)
		log_info("audit log %s: writable again", audit_path ? audit_path : "(stderr)");
	rc = 0;
fail:
	pthread_rwlock_unlock(&audit_lock);
	buf_free(&b);
	return rc;
}

static int
audit_open_fd(const char *path, dev_t *dev, ino_t *ino)
{
	struct stat st;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd == -1) {
		log_err("cannot open audit log %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		log_err("fstat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
	return fd;
}

/* Swaps in a new descriptor (and path) under the write lock; closes the old one. */
static void
audit_swap(int fd, char *path, dev_t dev, ino_t ino)
{
	int old;
	char *oldpath;

	pthread_rwlock_wrlock(&audit_lock);
	old = audit_fd;
	oldpath = audit_path;
	audit_fd = fd;
	audit_path = path;
	audit_dev = dev;
	audit_ino = ino;
	pthread_rwlock_unlock(&audit_lock);
	if (old != -1 && old != STDERR_FILENO)
		close(old);
	if (oldpath != path)
		free(oldpath);
}

int
audit_open(const char *path)
{
	dev_t dev = 0;
	ino_t ino = 0;
	char *copy;
	int fd;

	if (path == NULL || strcmp(path, "-") == 0) {
		audit_swap(STDERR_FILENO, NULL, 0, 0);
		return 0;
	}
	if ((copy = strdup(path)) == NULL) {
		log_err("strdup: %s", strerror(errno));
		return -1;
	}
	if ((fd = audit_open_fd(copy, &dev, &ino)) == -1) {
		free(copy);
		return -1;
	}
	audit_swap(fd, copy, dev, ino);
	return 0;
}

int
audit_reopen(void)
{
	dev_t dev = 0;
	ino_t ino = 0;
	char *path;
	int fd;

	pthread_rwlock_rdlock(&audit_lock);
	path = audit_path ? strdup(audit_path) : NULL;
	fd = audit_fd;
	pthread_rwlock_unlock(&audit_lock);
	if (fd == STDERR_FILENO && path == NULL)
		return 0;
	if (path == NULL) {
		log_err("audit log is not open");
		return -1;
	}
	/* Open first: on failure the old descriptor keeps working. */
	fd = audit_open_fd(path, &dev, &ino);
	if (fd == -1) {
		free(path);
		return -1;
	}
	audit_swap(fd, path, dev, ino);
	return 0;
}

int
audit_check_file(void)
{
	struct stat st;
	int changed;

	pthread_rwlock_rdlock(&audit_lock);
	if (audit_path == NULL) {
		pthread_rwlock_unlock(&audit_lock);
		return 0;
	}
	changed = stat(audit_path, &st) == -1 || st.st_dev != audit_dev ||
	    st.st_ino != audit_ino;
	pthread_rwlock_unlock(&audit_lock);
	if (!changed)
		return 0;
	if (audit_reopen() == -1)
		return -1;
	log_info("audit log re-opened (file was moved or removed)");
	return 1;
}

int
audit_failing(void)
{
	return atomic_load(&audit_fail);
}

void
audit_close(void)
{
	audit_swap(-1, NULL, 0, 0);
	atomic_store(&audit_fail, 0);
}
