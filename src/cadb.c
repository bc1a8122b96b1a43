/* The CA database, OpenSSL index.txt format, and the CA lock (cadb.h). */
#include "cadb.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "catime.h"
#include "file.h"

/* Index = RFC 5280 CRLReason; 7 is unused. */
static const char *const cadb_reasons[] = {
	"unspecified", "keyCompromise", "CACompromise", "affiliationChanged",
	"superseded", "cessationOfOperation", "certificateHold", NULL, "removeFromCRL",
};

int
cadb_reason_code(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(cadb_reasons) / sizeof(cadb_reasons[0]); i++)
		if (cadb_reasons[i] && strcasecmp(cadb_reasons[i], name) == 0)
			return (int)i;
	return -1;
}

static void
cadb_row_clear(struct cadb_row *r)
{
	free(r->expiry);
	free(r->revocation);
	free(r->serial);
	free(r->file);
	free(r->subject);
	memset(r, 0, sizeof(*r));
}

void
cadb_free(struct cadb *db)
{
	size_t i;

	if (db == NULL)
		return;
	for (i = 0; i < db->n; i++)
		cadb_row_clear(&db->rows[i]);
	free(db->rows);
	memset(db, 0, sizeof(*db));
}

/* Moves *row into db (row is zeroed). */
static int
cadb_append(struct cadb *db, struct cadb_row *row)
{
	struct cadb_row *nr;
	size_t ncap;

	if (db->n == db->cap) {
		ncap = db->cap ? db->cap * 2 : 16;
		if ((nr = realloc(db->rows, ncap * sizeof(*nr))) == NULL)
			return -1;
		db->rows = nr;
		db->cap = ncap;
	}
	db->rows[db->n++] = *row;
	memset(row, 0, sizeof(*row));
	return 0;
}

int
cadb_serial_eq(const char *a, const char *b)
{
	while (*a == '0' && a[1] != '\0')
		a++;
	while (*b == '0' && b[1] != '\0')
		b++;
	return strcasecmp(a, b) == 0;
}

struct cadb_row *
cadb_find_serial(const struct cadb *db, const char *serial)
{
	size_t i;

	for (i = 0; i < db->n; i++)
		if (cadb_serial_eq(db->rows[i].serial, serial))
			return &db->rows[i];
	return NULL;
}

/* Splits one line into row; NULL, or a static description of the problem. */
static const char *
cadb_parse_line(const char *line, size_t len, struct cadb_row *row)
{
	const char *f[6], *end = line + len, *p = line;
	size_t fl[6], i;
	const char *comma;

	memset(row, 0, sizeof(*row));
	if (len == 0)
		return "empty line";
	if (memchr(line, '\0', len) || memchr(line, '\r', len))
		return "control character in line";
	for (i = 0; i < 6; i++) {
		const char *tab = (i < 5) ? memchr(p, '\t', (size_t)(end - p)) : NULL;
		if (i < 5 && tab == NULL)
			return "expected 6 tab-separated fields";
		f[i] = p;
		fl[i] = (i < 5) ? (size_t)(tab - p) : (size_t)(end - p);
		p = (i < 5) ? tab + 1 : end;
	}
	if (memchr(f[5], '\t', fl[5]))
		return "more than 6 tab-separated fields";
	if (fl[0] != 1 || (f[0][0] != 'V' && f[0][0] != 'R' && f[0][0] != 'E'))
		return "status must be V, R or E";
	if (catime_parse_n(f[1], fl[1], NULL) == -1)
		return "bad expiry date (want YYMMDDHHMMSSZ)";
	if (f[0][0] == 'R') {
		if (fl[2] == 0)
			return "revoked entry without revocation date";
		comma = memchr(f[2], ',', fl[2]);
		if (catime_parse_n(f[2], comma ? (size_t)(comma - f[2]) : fl[2], NULL) == -1)
			return "bad revocation date (want YYMMDDHHMMSSZ[,reason])";
		if (comma && comma + 1 == f[2] + fl[2])
			return "empty revocation reason";
	} else if (fl[2] != 0)
		return "revocation date on an entry that is not revoked";
	if (fl[3] == 0)
		return "empty serial";
	for (i = 0; i < fl[3]; i++)
		if (!isxdigit((unsigned char)f[3][i]))
			return "serial is not hexadecimal";
	if (fl[4] == 0)
		return "empty file name field";
	if (fl[5] == 0)
		return "empty subject";
	row->status = f[0][0];
	row->expiry = strndup(f[1], fl[1]);
	row->revocation = strndup(f[2], fl[2]);
	row->serial = strndup(f[3], fl[3]);
	row->file = strndup(f[4], fl[4]);
	row->subject = strndup(f[5], fl[5]);
	if (!row->expiry || !row->revocation || !row->serial || !row->file || !row->subject) {
		cadb_row_clear(row);
		return "out of memory";
	}
	return NULL;
}

int
cadb_parse(const char *text, size_t len, struct cadb *db, char *err, size_t errlen)
{
	struct cadb_row row;
	size_t pos = 0, lineno = 0, ll;
	const char *line, *nl, *why;

	memset(db, 0, sizeof(*db));
	while (pos < len) {
		line = text + pos;
		nl = memchr(line, '\n', len - pos);
		ll = nl ? (size_t)(nl - line) : len - pos;
		pos += ll + (nl ? 1 : 0);
		lineno++;
		if ((why = cadb_parse_line(line, ll, &row)) != NULL)
			goto bad;
		if (cadb_find_serial(db, row.serial) != NULL) {
			cadb_row_clear(&row);
			why = "duplicate serial";
			goto bad;
		}
		if (cadb_append(db, &row) == -1) {
			cadb_row_clear(&row);
			why = "out of memory";
			goto bad;
		}
	}
	return 0;
bad:
	if (err && errlen)
		snprintf(err, errlen, "line %zu: %s", lineno, why);
	cadb_free(db);
	return -1;
}

char *
cadb_format(const struct cadb *db)
{
	const struct cadb_row *r;
	struct buf b;
	size_t i;

	buf_init(&b);
	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		buf_addc(&b, r->status);
		buf_addc(&b, '\t');
		buf_adds(&b, r->expiry);
		buf_addc(&b, '\t');
		buf_adds(&b, r->revocation);
		buf_addc(&b, '\t');
		buf_adds(&b, r->serial);
		buf_addc(&b, '\t');
		buf_adds(&b, r->file);
		buf_addc(&b, '\t');
		buf_adds(&b, r->subject);
		buf_addc(&b, '\n');
	}
	if (buf_failed(&b)) {
		buf_free(&b);
		return NULL;
	}
	if (b.len == 0) {
		buf_free(&b);
		return strdup("");
	}
	return buf_detach(&b, NULL);
}

int
cadb_load(const char *path, struct cadb *db, char *err, size_t errlen)
{
	char *text = NULL, why[256];
	size_t len;
	int rc;

	memset(db, 0, sizeof(*db));
	if (file_read(path, CADB_MAX_FILE, &text, &len) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = cadb_parse(text, len, db, why, sizeof(why));
	if (rc == -1)
		snprintf(err, errlen, "%s: %s", path, why);
	free(text);
	return rc;
}

int
cadb_save(const char *path, const struct cadb *db)
{
	char *text;
	int rc, saved;

	if ((text = cadb_format(db)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = file_write_atomic(path, text, strlen(text), 0644);
	saved = errno;
	free(text);
	errno = saved;
	return rc;
}

int
cadb_add_valid(struct cadb *db, const char *expiry, const char *serial, const char *subject)
{
	struct cadb_row row;

	memset(&row, 0, sizeof(row));
	row.status = 'V';
	row.expiry = strdup(expiry);
	row.revocation = strdup("");
	row.serial = strdup(serial);
	row.file = strdup("unknown");
	row.subject = strdup(subject);
	if (!row.expiry || !row.revocation || !row.serial || !row.file || !row.subject ||
	    cadb_append(db, &row) == -1) {
		cadb_row_clear(&row);
		return -1;
	}
	return 0;
}

void
cadb_pop(struct cadb *db)
{
	if (db->n > 0)
		cadb_row_clear(&db->rows[--db->n]);
}

int
cadb_revoke(struct cadb_row *r, time_t when, const char *reason)
{
	char date[CATIME_INDEX_LEN], *rev;

	catime_format(when, date, sizeof(date));
	if (asprintf(&rev, "%s%s%s", date, reason ? "," : "", reason ? reason : "") < 0)
		return -1;
	free(r->revocation);
	r->revocation = rev;
	r->status = 'R';
	return 0;
}

int
cadb_expiry(const struct cadb_row *r, time_t *out)
{
	return catime_parse(r->expiry, out);
}

enum cadb_status
cadb_status(const struct cadb_row *r, time_t now)
{
	time_t exp;

	if (r->status == 'R')
		return CADB_REVOKED;
	if (r->status == 'E')
		return CADB_EXPIRED;
	if (catime_parse(r->expiry, &exp) == 0 && exp <= now)
		return CADB_EXPIRED;
	return CADB_VALID;
}

const char *
cadb_status_name(enum cadb_status s)
{
	switch (s) {
	case CADB_VALID: return "valid";
	case CADB_REVOKED: return "revoked";
	case CADB_EXPIRED: return "expired";
	}
	return "?";
}

const char *
cadb_agent_of(const struct cadb_row *r, char *buf, size_t len)
{
	const char *cn;
	size_t n;

	if (strncmp(r->subject, "/CN=", 4) != 0)
		return NULL;
	cn = r->subject + 4;
	n = strlen(cn);
	/* Agents carry exactly one RDN; ids never contain '/', spaces or '=' . */
	if (n == 0 || n >= len || strpbrk(cn, "/ =,\\") != NULL)
		return NULL;
	memcpy(buf, cn, n + 1);
	return buf;
}

int
cadb_lock(const char *db_path, char *err, size_t errlen)
{
	char *dir = NULL, *path = NULL;
	struct stat st;
	int fd = -1;

	if ((dir = file_dirname(db_path)) == NULL)
		goto oom;
	if (stat(dir, &st) == -1 && (file_mkdirs(dir, 0700) == -1 || chmod(dir, 0700) == -1)) {
		snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (asprintf(&path, "%s/.lock", dir) < 0) {
		path = NULL;
		goto oom;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		snprintf(err, errlen, "cannot open lock file %s: %s", path, strerror(errno));
		goto fail;
	}
	while (flock(fd, LOCK_EX) == -1) {
		if (errno == EINTR)
			continue;
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		close(fd);
		fd = -1;
		goto fail;
	}
	goto fail;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(dir);
	free(path);
	return fd;
}

void
cadb_unlock(int fd)
{
	if (fd != -1)
		close(fd);
}
