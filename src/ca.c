/* The CA whose private key lives in the token: `certgate ca init|server|issue|revoke|
 * crl|list`, and the CA database (OpenSSL index.txt format).
 *
 * Every signature (CA certificate, server and agent certificates, CRLs) is made with
 * the EVP_PKEY that p11.c hands out for cfg->ca.key, so the CA key never exists in
 * software. Mutating commands serialise on an flock next to the database and write
 * every file atomically (temp file in the same directory, fsync, rename). */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "config.h"
#include "log.h"
#include "p11.h"
#include "policy.h"

#define CA_MAX_HOURS		8760
#define CA_MAX_CRL_HOURS	87600
#define CA_BACKDATE		300	/* notBefore = now - 5 min: tolerate clock skew */
#define CA_DEFAULT_SUBJECT	"CN=certgate CA,O=certgate"
#define CA_SERVER_SUBJECT	"CN=certgate server,O=certgate"

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static const char *ca_prog = "certgate ca";

/* User-facing error: "certgate ca SUB: message". */
static void __attribute__((format(printf, 1, 2)))
ca_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", ca_prog, msg);
}

/* Like ca_error, followed by OpenSSL's queued errors (drained). */
static void __attribute__((format(printf, 1, 2)))
ca_sslerror(const char *fmt, ...)
{
	char msg[1024], one[256];
	unsigned long e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s", ca_prog, msg);
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		fprintf(stderr, ": %s", one);
	}
	fprintf(stderr, "\n");
}

static char *
ca_strdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		log_err("out of memory");
	return p;
}

static char * __attribute__((format(printf, 1, 2)))
ca_asprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0) {
		log_err("out of memory");
		return NULL;
	}
	return s;
}

/* Returns the malloc'd directory part of path ("." when none). */
static char *
ca_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return ca_strdup(".");
	if (slash == path)
		return ca_strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static const char *
ca_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static int
ca_file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* mkdir -p; directories it creates get exactly `mode` (regardless of umask). */
static int
ca_mkdirs(const char *path, mode_t mode)
{
	char *p = NULL, *s;
	struct stat st;
	int rc = -1;

	if (path[0] == '\0')
		return 0;
	if ((p = ca_strdup(path)) == NULL)
		goto fail;
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (stat(p, &st) == -1) {
			if (mkdir(p, mode) == -1 && errno != EEXIST) {
				ca_error("cannot create directory %s: %s", p, strerror(errno));
				goto fail;
			}
			if (chmod(p, mode) == -1) {
				ca_error("cannot chmod %s: %s", p, strerror(errno));
				goto fail;
			}
		} else if (!S_ISDIR(st.st_mode)) {
			ca_error("%s exists and is not a directory", p);
			goto fail;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	rc = 0;
fail:
	free(p);
	return rc;
}

/* Reads a whole file into a malloc'd, NUL-terminated buffer. -1 with errno set. */
static int
ca_read_file(const char *path, char **out, size_t *outlen)
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
	}
	close(fd);
	if (buf == NULL && (buf = malloc(1)) == NULL)
		return -1;
	buf[len] = '\0';
	*out = buf;
	if (outlen)
		*outlen = len;
	return 0;
fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return -1;
}

static int
ca_fsync_dir(const char *dir)
{
	int fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Writes data to path atomically with the given mode: a reader sees the old file
 * or the new one, never a partial one. Returns 0/-1 (message printed). */
static int
ca_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char *dir = NULL, *tmp = NULL;
	const char *p = data;
	ssize_t w;
	int fd = -1, rc = -1;

	if ((dir = ca_dirname(path)) == NULL)
		goto fail;
	if ((tmp = ca_asprintf("%s/.%s.XXXXXX", dir, ca_basename(path))) == NULL)
		goto fail;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		ca_error("cannot create a temporary file in %s: %s", dir, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	if (fchmod(fd, mode) == -1)
		goto syserr;
	while (len > 0) {
		w = write(fd, p, len);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			goto syserr;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) == -1)
		goto syserr;
	if (close(fd) == -1) {
		fd = -1;
		goto syserr;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto syserr;
	free(tmp);
	tmp = NULL;
	(void)ca_fsync_dir(dir);
	rc = 0;
	goto fail;
syserr:
	ca_error("cannot write %s: %s", path, strerror(errno));
fail:
	if (fd != -1)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(dir);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Time strings (ASN.1 UTCTime / GeneralizedTime as in index.txt)           */
/* ------------------------------------------------------------------------ */

static int
ca_digits(const char *s, size_t n)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* Parses "YYMMDDHHMMSSZ" or "YYYYMMDDHHMMSSZ" (n characters of s). */
static int
ca_time_parse_n(const char *s, size_t n, time_t *out)
{
	struct tm tm;
	size_t i, off;
	int year;

	if ((n != 13 && n != 15) || s[n - 1] != 'Z')
		return -1;
	for (i = 0; i < n - 1; i++)
		if (!isdigit((unsigned char)s[i]))
			return -1;
	memset(&tm, 0, sizeof(tm));
	if (n == 13) {
		year = ca_digits(s, 2);
		year += year >= 50 ? 1900 : 2000;
		off = 2;
	} else {
		year = ca_digits(s, 4);
		off = 4;
	}
	tm.tm_year = year - 1900;
	tm.tm_mon = ca_digits(s + off, 2) - 1;
	tm.tm_mday = ca_digits(s + off + 2, 2);
	tm.tm_hour = ca_digits(s + off + 4, 2);
	tm.tm_min = ca_digits(s + off + 6, 2);
	tm.tm_sec = ca_digits(s + off + 8, 2);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	if (out)
		*out = timegm(&tm);
	return 0;
}

static int
ca_time_parse(const char *s, time_t *out)
{
	return ca_time_parse_n(s, strlen(s), out);
}

/* The index.txt form: UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280). */
static void
ca_time_format(time_t t, char *buf, size_t len)
{
	struct tm tm;
	int y;

	gmtime_r(&t, &tm);
	y = tm.tm_year + 1900;
	/* strftime, unlike snprintf with %02d, cannot be flagged for truncation at -O2. */
	if (strftime(buf, len, "%Y%m%d%H%M%SZ", &tm) == 0) {
		if (len > 0)
			buf[0] = '\0';
		return;
	}
	if (y >= 1950 && y < 2050)
		memmove(buf, buf + 2, strlen(buf + 2) + 1);	/* UTCTime: two-digit year */
}

static void
ca_time_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* index.txt time string of an ASN1_TIME (normalised through time_t). */
static int
ca_asn1_to_index(const ASN1_TIME *at, char *buf, size_t len, time_t *tout)
{
	struct tm tm;
	time_t t;

	if (ASN1_TIME_to_tm(at, &tm) != 1)
		return -1;
	t = timegm(&tm);
	ca_time_format(t, buf, len);
	if (tout)
		*tout = t;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* CA database                                                              */
/* ------------------------------------------------------------------------ */

static const char *const ca_reasons[] = {
	"unspecified", "keyCompromise", "CACompromise", "affiliationChanged",
	"superseded", "cessationOfOperation", "certificateHold", NULL, "removeFromCRL",
};

/* CRL reason code of an OpenSSL reason name (case-insensitive like OpenSSL), or -1. */
static int
ca_reason_code(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(ca_reasons) / sizeof(ca_reasons[0]); i++)
		if (ca_reasons[i] && strcasecmp(ca_reasons[i], name) == 0)
			return (int)i;
	return -1;
}

static void
ca_row_clear(struct ca_db_row *r)
{
	free(r->expiry);
	free(r->revocation);
	free(r->serial);
	free(r->file);
	free(r->subject);
	memset(r, 0, sizeof(*r));
}

void
ca_db_free(struct ca_db *db)
{
	size_t i;

	if (db == NULL)
		return;
	for (i = 0; i < db->n; i++)
		ca_row_clear(&db->rows[i]);
	free(db->rows);
	memset(db, 0, sizeof(*db));
}

static int
ca_db_append(struct ca_db *db, struct ca_db_row *row)
{
	struct ca_db_row *nr;
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

static int
ca_is_hex(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* Compares two hex serials ignoring case and leading zeros. */
static int
ca_serial_eq(const char *a, const char *b)
{
	while (*a == '0' && a[1] != '\0')
		a++;
	while (*b == '0' && b[1] != '\0')
		b++;
	return strcasecmp(a, b) == 0;
}

struct ca_db_row *
ca_db_find_serial(struct ca_db *db, const char *serial)
{
	size_t i;

	for (i = 0; i < db->n; i++)
		if (ca_serial_eq(db->rows[i].serial, serial))
			return &db->rows[i];
	return NULL;
}

/* Splits one line into the row; returns NULL or a static description of the problem. */
static const char *
ca_db_parse_line(const char *line, size_t len, struct ca_db_row *row)
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
	if (ca_time_parse_n(f[1], fl[1], NULL) == -1)
		return "bad expiry date (want YYMMDDHHMMSSZ)";
	if (f[0][0] == 'R') {
		if (fl[2] == 0)
			return "revoked entry without revocation date";
		comma = memchr(f[2], ',', fl[2]);
		if (ca_time_parse_n(f[2], comma ? (size_t)(comma - f[2]) : fl[2], NULL) == -1)
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
		ca_row_clear(row);
		return "out of memory";
	}
	return NULL;
}

int
ca_db_parse(const char *text, size_t len, struct ca_db *db, char *err, size_t errlen)
{
	struct ca_db_row row;
	size_t pos = 0, lineno = 0, ll;
	const char *line, *nl, *why;

	memset(db, 0, sizeof(*db));
	while (pos < len) {
		line = text + pos;
		nl = memchr(line, '\n', len - pos);
		ll = nl ? (size_t)(nl - line) : len - pos;
		pos += ll + (nl ? 1 : 0);
		lineno++;
		if ((why = ca_db_parse_line(line, ll, &row)) != NULL)
			goto bad;
		if (ca_db_find_serial(db, row.serial) != NULL) {
			ca_row_clear(&row);
			why = "duplicate serial";
			goto bad;
		}
		if (ca_db_append(db, &row) == -1) {
			ca_row_clear(&row);
			why = "out of memory";
			goto bad;
		}
	}
	return 0;
bad:
	if (err && errlen)
		snprintf(err, errlen, "line %zu: %s", lineno, why);
	ca_db_free(db);
	return -1;
}

char *
ca_db_format(const struct ca_db *db)
{
	size_t i, len = 1, off = 0;
	const struct ca_db_row *r;
	char *out;
	int n;

	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		len += 7 + strlen(r->expiry) + strlen(r->revocation) + strlen(r->serial) +
		    strlen(r->file) + strlen(r->subject);
	}
	if ((out = malloc(len)) == NULL)
		return NULL;
	out[0] = '\0';
	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		n = snprintf(out + off, len - off, "%c\t%s\t%s\t%s\t%s\t%s\n", r->status,
		    r->expiry, r->revocation, r->serial, r->file, r->subject);
		if (n < 0 || (size_t)n >= len - off) {
			free(out);
			return NULL;
		}
		off += (size_t)n;
	}
	return out;
}

int
ca_db_load(const char *path, struct ca_db *db, char *err, size_t errlen)
{
	char *text = NULL, why[256];
	size_t len;
	int rc;

	memset(db, 0, sizeof(*db));
	if (ca_read_file(path, &text, &len) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = ca_db_parse(text, len, db, why, sizeof(why));
	if (rc == -1)
		snprintf(err, errlen, "%s: %s", path, why);
	free(text);
	return rc;
}

int
ca_db_save(const char *path, const struct ca_db *db)
{
	char *text;
	int rc;

	if ((text = ca_db_format(db)) == NULL) {
		log_err("out of memory");
		return -1;
	}
	rc = ca_write_atomic(path, text, strlen(text), 0644);
	free(text);
	return rc;
}

/* 'V' rows whose expiry has passed count as expired. */
static const char *
ca_row_status(const struct ca_db_row *r, time_t now)
{
	time_t exp;

	if (r->status == 'R')
		return "revoked";
	if (r->status == 'E')
		return "expired";
	if (ca_time_parse(r->expiry, &exp) == 0 && exp <= now)
		return "expired";
	return "valid";
}

/* The CN of an X509_NAME_oneline subject ("/CN=x/O=y"), copied into buf. */
static const char *
ca_subject_cn(const char *subject, char *buf, size_t len)
{
	const char *p = strstr(subject, "/CN=");
	size_t n;

	if (p == NULL) {
		snprintf(buf, len, "-");
		return buf;
	}
	p += 4;
	n = strcspn(p, "/");
	if (n >= len)
		n = len - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Locking and the audit trail                                              */
/* ------------------------------------------------------------------------ */

/* Exclusive lock on DIR/ca/.lock (the directory of the database). Returns the fd. */
static int
ca_lock(const struct config *cfg)
{
	char *dir = NULL, *path = NULL;
	int fd = -1;

	if ((dir = ca_dirname(cfg->ca.db)) == NULL)
		goto fail;
	if (ca_mkdirs(dir, 0755) == -1)
		goto fail;
	if ((path = ca_asprintf("%s/.lock", dir)) == NULL)
		goto fail;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		ca_error("cannot open lock file %s: %s", path, strerror(errno));
		goto fail;
	}
	while (flock(fd, LOCK_EX) == -1) {
		if (errno == EINTR)
			continue;
		ca_error("cannot lock %s: %s", path, strerror(errno));
		close(fd);
		fd = -1;
		goto fail;
	}
fail:
	free(dir);
	free(path);
	return fd;
}

static void
ca_unlock(int fd)
{
	if (fd != -1)
		close(fd);
}

struct ca_audit_rec {
	const char *what;
	const char *serial;
	const char *agent;
	const char *subject;
	const char *reason;
	const char *not_after;
};

static void
ca_json_set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

/* Appends one JSON line to cfg->ca.audit. A failure is reported (the operation itself
 * already happened and is not undone) and returns -1. */
static int
ca_audit(const struct config *cfg, const struct ca_audit_rec *a)
{
	struct passwd *pw;
	const char *sudo;
	char ts[32], who[256], *line = NULL, *buf = NULL;
	json_t *o = NULL;
	size_t len;
	int fd = -1, rc = -1;

	if (cfg->ca.audit == NULL)
		return 0;
	ca_time_rfc3339(time(NULL), ts, sizeof(ts));
	pw = getpwuid(geteuid());
	if (pw)
		snprintf(who, sizeof(who), "%s", pw->pw_name);
	else
		snprintf(who, sizeof(who), "uid %u", (unsigned)geteuid());
	sudo = getenv("SUDO_USER");
	if (sudo && *sudo) {
		size_t wl = strlen(who);
		snprintf(who + wl, sizeof(who) - wl, " (sudo by %s)", sudo);
	}
	if ((o = json_object()) == NULL)
		goto oom;
	ca_json_set_str(o, "ts", ts);
	ca_json_set_str(o, "who", who);
	ca_json_set_str(o, "what", a->what);
	ca_json_set_str(o, "serial", a->serial);
	ca_json_set_str(o, "agent", a->agent);
	ca_json_set_str(o, "subject", a->subject);
	ca_json_set_str(o, "reason", a->reason);
	ca_json_set_str(o, "not_after", a->not_after);
	if ((line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		goto oom;
	len = strlen(line);
	if ((buf = malloc(len + 2)) == NULL)
		goto oom;
	memcpy(buf, line, len);
	buf[len++] = '\n';
	if ((fd = open(cfg->ca.audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) == -1)
		goto syserr;
	/* One write(2) per line with O_APPEND: concurrent writers never interleave. */
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd) == -1)
		goto syserr;
	rc = 0;
	goto fail;
oom:
	ca_error("out of memory writing the audit log");
	goto fail;
syserr:
	ca_error("cannot append to audit log %s: %s", cfg->ca.audit, strerror(errno));
fail:
	if (fd != -1)
		close(fd);
	free(line);
	free(buf);
	json_decref(o);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Certificates and CRLs                                                    */
/* ------------------------------------------------------------------------ */

static X509 *
ca_read_cert(const char *path)
{
	X509 *x = NULL;
	BIO *b;

	if ((b = BIO_new_file(path, "r")) == NULL) {
		ca_sslerror("cannot open %s", path);
		return NULL;
	}
	if ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL)
		ca_sslerror("cannot read a PEM certificate from %s", path);
	BIO_free(b);
	return x;
}

static int
ca_write_pem(const char *path, X509 *x, X509_CRL *crl, EVP_PKEY *key, mode_t mode)
{
	BIO *b = NULL;
	char *data;
	long len;
	int rc = -1, ok;

	if ((b = BIO_new(BIO_s_mem())) == NULL)
		goto sslfail;
	if (x)
		ok = PEM_write_bio_X509(b, x);
	else if (crl)
		ok = PEM_write_bio_X509_CRL(b, crl);
	else
		ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	if (!ok)
		goto sslfail;
	len = BIO_get_mem_data(b, &data);
	rc = ca_write_atomic(path, data, (size_t)len, mode);
	goto out;
sslfail:
	ca_sslerror("cannot encode %s", path);
out:
	BIO_free(b);
	return rc;
}

/* Builds an X509_NAME from "CN=a,O=b" or "/CN=a/O=b". */
static X509_NAME *
ca_parse_dn(const char *dn)
{
	X509_NAME *name = NULL;
	char *copy = NULL, *tok, *save = NULL, *eq;
	const char *sep = ",";

	if ((copy = ca_strdup(dn)) == NULL)
		return NULL;
	if (copy[0] == '/')
		sep = "/";
	if ((name = X509_NAME_new()) == NULL)
		goto fail;
	for (tok = strtok_r(copy, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
		while (*tok == ' ')
			tok++;
		if ((eq = strchr(tok, '=')) == NULL || eq == tok || eq[1] == '\0') {
			ca_error("bad subject component '%s' (want TYPE=value)", tok);
			goto fail;
		}
		*eq = '\0';
		if (!X509_NAME_add_entry_by_txt(name, tok, MBSTRING_UTF8,
		    (unsigned char *)eq + 1, -1, -1, 0)) {
			ca_sslerror("bad subject attribute '%s'", tok);
			goto fail;
		}
	}
	if (X509_NAME_entry_count(name) == 0) {
		ca_error("empty subject '%s'", dn);
		goto fail;
	}
	free(copy);
	return name;
fail:
	X509_NAME_free(name);
	free(copy);
	return NULL;
}

/* A random positive 128-bit serial (top bit cleared) not yet in db; hex in *hex
 * (OPENSSL_free). */
static ASN1_INTEGER *
ca_new_serial(struct ca_db *db, char **hex)
{
	unsigned char b[16];
	ASN1_INTEGER *ai = NULL;
	BIGNUM *bn = NULL;
	int tries;

	*hex = NULL;
	for (tries = 0; tries < 16; tries++) {
		if (RAND_bytes(b, sizeof(b)) != 1)
			goto fail;
		b[0] &= 0x7f;
		BN_free(bn);
		if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
			goto fail;
		if (BN_is_zero(bn))
			continue;
		OPENSSL_free(*hex);
		if ((*hex = BN_bn2hex(bn)) == NULL)
			goto fail;
		if (db == NULL || ca_db_find_serial(db, *hex) == NULL)
			break;
	}
	if (tries == 16)
		goto fail;
	if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto fail;
	BN_free(bn);
	return ai;
fail:
	ca_sslerror("cannot make a random serial number");
	BN_free(bn);
	OPENSSL_free(*hex);
	*hex = NULL;
	return NULL;
}

static int
ca_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL) {
		ca_sslerror("cannot make extension %s = %s", OBJ_nid2sn(nid), value);
		return -1;
	}
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok) {
		ca_sslerror("cannot add extension %s", OBJ_nid2sn(nid));
		return -1;
	}
	return 0;
}

struct ca_ext {
	int nid;
	const char *value;
};

struct ca_certspec {
	X509_NAME *subject;    /* borrowed */
	EVP_PKEY *pubkey;      /* key certified (borrowed) */
	X509 *issuer;          /* NULL: self-signed */
	EVP_PKEY *signer;      /* the token key */
	long seconds;          /* lifetime from now */
	const struct ca_ext *ext;
	size_t next;
	struct ca_db *db;      /* for serial uniqueness, may be NULL */
};

/* Builds and signs a v3 certificate, then checks its signature against the issuer's
 * public key (which proves the token key matches the CA certificate). *serial is
 * OPENSSL_malloc'd uppercase hex. */
static X509 *
ca_make_cert(const struct ca_certspec *s, char **serial)
{
	ASN1_INTEGER *sn = NULL;
	X509 *x = NULL;
	size_t i;

	if ((sn = ca_new_serial(s->db, serial)) == NULL)
		goto fail;
	if ((x = X509_new()) == NULL)
		goto sslfail;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_set_serialNumber(x, sn) ||
	    !X509_set_subject_name(x, s->subject) ||
	    !X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer) : s->subject) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -CA_BACKDATE) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), 0, s->seconds, NULL) ||
	    !X509_set_pubkey(x, s->pubkey))
		goto sslfail;
	for (i = 0; i < s->next; i++)
		if (ca_add_ext(x, s->issuer, s->ext[i].nid, s->ext[i].value) == -1)
			goto fail;
	if (X509_sign(x, s->signer, EVP_sha256()) <= 0) {
		ca_sslerror("signing the certificate with the token key failed");
		goto fail;
	}
	if (X509_verify(x, s->issuer ? X509_get0_pubkey(s->issuer) : s->pubkey) != 1) {
		ca_sslerror("the token key does not match the CA certificate");
		goto fail;
	}
	ASN1_INTEGER_free(sn);
	return x;
sslfail:
	ca_sslerror("cannot build the certificate");
fail:
	ASN1_INTEGER_free(sn);
	X509_free(x);
	OPENSSL_free(*serial);
	*serial = NULL;
	return NULL;
}

/* Reads the CRL number file (hex). Missing file: 1. */
static BIGNUM *
ca_crlnumber_read(const char *path)
{
	BIGNUM *bn = NULL;
	char *text = NULL;
	size_t len;

	if (ca_read_file(path, &text, &len) == -1) {
		if (errno != ENOENT) {
			ca_error("cannot read %s: %s", path, strerror(errno));
			return NULL;
		}
		bn = BN_new();
		if (bn && !BN_set_word(bn, 1)) {
			BN_free(bn);
			bn = NULL;
		}
		return bn;
	}
	text[strcspn(text, "\r\n")] = '\0';
	if (!ca_is_hex(text) || BN_hex2bn(&bn, text) == 0) {
		ca_error("%s: not a hexadecimal CRL number", path);
		BN_free(bn);
		bn = NULL;
	}
	free(text);
	return bn;
}

/* Writes bn as OpenSSL does: uppercase hex, whole bytes, newline. */
static int
ca_crlnumber_write(const char *path, const BIGNUM *bn)
{
	char *hex, *line;
	int rc;

	if ((hex = BN_bn2hex(bn)) == NULL)
		return -1;
	line = ca_asprintf("%s%s\n", strlen(hex) % 2 ? "0" : "", hex);
	OPENSSL_free(hex);
	if (line == NULL)
		return -1;
	rc = ca_write_atomic(path, line, strlen(line), 0644);
	free(line);
	return rc;
}

static X509_REVOKED *
ca_revoked_entry(const struct ca_db_row *r)
{
	X509_REVOKED *rev = NULL;
	ASN1_INTEGER *sn = NULL;
	ASN1_ENUMERATED *e = NULL;
	ASN1_TIME *t = NULL;
	BIGNUM *bn = NULL;
	char date[20];
	const char *comma = strchr(r->revocation, ',');
	size_t dl = comma ? (size_t)(comma - r->revocation) : strlen(r->revocation);
	time_t when;
	int code = -1;

	if (dl >= sizeof(date))
		goto bad;
	memcpy(date, r->revocation, dl);
	date[dl] = '\0';
	if (ca_time_parse(date, &when) == -1)
		goto bad;
	if (comma && (code = ca_reason_code(comma + 1)) == -1)
		log_warn("serial %s: reason '%s' has no CRL reason code; omitted",
		    r->serial, comma + 1);
	if (BN_hex2bn(&bn, r->serial) == 0 || (sn = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto bad;
	if ((rev = X509_REVOKED_new()) == NULL || (t = ASN1_TIME_set(NULL, when)) == NULL)
		goto sslfail;
	if (!X509_REVOKED_set_serialNumber(rev, sn) || !X509_REVOKED_set_revocationDate(rev, t))
		goto sslfail;
	/* RFC 5280 5.3.1: omit reasonCode rather than sending unspecified (0). */
	if (code > 0) {
		if ((e = ASN1_ENUMERATED_new()) == NULL || !ASN1_ENUMERATED_set(e, code) ||
		    !X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, e, 0, 0))
			goto sslfail;
	}
	goto out;
bad:
	ca_error("database entry %s has a bad serial or revocation date", r->serial);
	goto fail;
sslfail:
	ca_sslerror("cannot build the CRL entry for %s", r->serial);
fail:
	X509_REVOKED_free(rev);
	rev = NULL;
out:
	ASN1_ENUMERATED_free(e);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return rev;
}

/* DIR/ca/crlnumber: next to the database, like OpenSSL's layout. */
static char *
ca_crlnumber_path(const struct config *cfg)
{
	char *dir, *p;

	if ((dir = ca_dirname(cfg->ca.db)) == NULL)
		return NULL;
	p = ca_asprintf("%s/crlnumber", dir);
	free(dir);
	return p;
}

static int
ca_crl_add_exts(X509_CRL *crl, X509 *cacert, const BIGNUM *number)
{
	X509_EXTENSION *ext = NULL;
	ASN1_INTEGER *num = NULL;
	X509V3_CTX ctx;
	int rc = -1;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cacert, NULL, NULL, crl, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
	    "keyid:always")) == NULL || !X509_CRL_add_ext(crl, ext, -1))
		goto fail;
	if ((num = BN_to_ASN1_INTEGER(number, NULL)) == NULL ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto fail;
	rc = 0;
fail:
	if (rc == -1)
		ca_sslerror("cannot add the CRL extensions");
	X509_EXTENSION_free(ext);
	ASN1_INTEGER_free(num);
	return rc;
}

/* Signs a v2 CRL listing every revoked row of db, numbered from the crlnumber file.
 * On success *number holds the number used (caller frees with BN_free). */
static X509_CRL *
ca_make_crl(const struct config *cfg, X509 *cacert, EVP_PKEY *key, const struct ca_db *db,
    int hours, BIGNUM **number)
{
	X509_CRL *crl = NULL;
	X509_REVOKED *rev;
	ASN1_TIME *last = NULL, *next = NULL;
	time_t now = time(NULL);
	char *numpath = NULL;
	size_t i;

	*number = NULL;
	if ((numpath = ca_crlnumber_path(cfg)) == NULL)
		goto fail;
	if ((*number = ca_crlnumber_read(numpath)) == NULL)
		goto fail;
	if ((crl = X509_CRL_new()) == NULL ||
	    (last = ASN1_TIME_set(NULL, now)) == NULL ||
	    (next = ASN1_TIME_set(NULL, now + (time_t)hours * 3600)) == NULL ||
	    !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(cacert)) ||
	    !X509_CRL_set1_lastUpdate(crl, last) ||
	    !X509_CRL_set1_nextUpdate(crl, next)) {
		ca_sslerror("cannot build the CRL");
		goto fail;
	}
	for (i = 0; i < db->n; i++) {
		if (db->rows[i].status != 'R')
			continue;
		if ((rev = ca_revoked_entry(&db->rows[i])) == NULL)
			goto fail;
		if (!X509_CRL_add0_revoked(crl, rev)) {
			X509_REVOKED_free(rev);
			ca_sslerror("cannot add a CRL entry");
			goto fail;
		}
	}
	if (!X509_CRL_sort(crl) || ca_crl_add_exts(crl, cacert, *number) == -1)
		goto fail;
	if (X509_CRL_sign(crl, key, EVP_sha256()) <= 0) {
		ca_sslerror("signing the CRL with the token key failed");
		goto fail;
	}
	if (X509_CRL_verify(crl, X509_get0_pubkey(cacert)) != 1) {
		ca_sslerror("the token key does not match the CA certificate");
		goto fail;
	}
	goto out;
fail:
	X509_CRL_free(crl);
	crl = NULL;
	BN_free(*number);
	*number = NULL;
out:
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	free(numpath);
	return crl;
}

/* Writes the CRL to cfg->ca.crl and advances the crlnumber file. */
static int
ca_publish_crl(const struct config *cfg, X509_CRL *crl, BIGNUM *number)
{
	char *numpath = NULL;
	int rc = -1;

	if (ca_write_pem(cfg->ca.crl, NULL, crl, NULL, 0644) == -1)
		goto fail;
	if ((numpath = ca_crlnumber_path(cfg)) == NULL || !BN_add_word(number, 1) ||
	    ca_crlnumber_write(numpath, number) == -1) {
		ca_error("cannot advance the CRL number in %s", numpath ? numpath : "crlnumber");
		goto fail;
	}
	rc = 0;
fail:
	free(numpath);
	return rc;
}

/* Signs and publishes a CRL from db; prints a summary line on stdout when verbose. */
static int
ca_crl_refresh(const struct config *cfg, X509 *cacert, EVP_PKEY *key, const struct ca_db *db,
    int hours, int verbose)
{
	X509_CRL *crl;
	BIGNUM *number = NULL;
	char *hex = NULL, next[32];
	int rc = -1;

	if ((crl = ca_make_crl(cfg, cacert, key, db, hours, &number)) == NULL)
		return -1;
	hex = BN_bn2hex(number);
	if (ca_publish_crl(cfg, crl, number) == -1)
		goto fail;
	if (verbose) {
		ca_time_rfc3339(time(NULL) + (time_t)hours * 3600, next, sizeof(next));
		printf("CRL %s written to %s (next update %s, %d revoked)\n",
		    hex ? hex : "?", cfg->ca.crl, next,
		    sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)));
	}
	rc = 0;
fail:
	OPENSSL_free(hex);
	BN_free(number);
	X509_CRL_free(crl);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Token access                                                             */
/* ------------------------------------------------------------------------ */

static void
ca_defaults(const struct config *cfg, struct p11_defaults *d)
{
	memset(d, 0, sizeof(*d));
	d->module = cfg->pkcs11.module;
	d->token = cfg->pkcs11.token;
	d->pin_file = cfg->pkcs11.pin_file;
	d->pin_env = cfg->pkcs11.pin_env;
	d->softhsm2_conf = cfg->pkcs11.softhsm2_conf;
}

static int
ca_require_uri(const char *what, const char *uri)
{
	if (uri == NULL || !p11_is_uri(uri)) {
		ca_error("%s must be a pkcs11: URI (the key is made in the token), got '%s'",
		    what, uri ? uri : "(none)");
		return -1;
	}
	return 0;
}

/* Loads the CA certificate and the CA key from the token. */
static int
ca_load_ca(const struct config *cfg, const struct p11_defaults *d, X509 **cert, EVP_PKEY **key)
{
	*cert = NULL;
	*key = NULL;
	if (!ca_file_exists(cfg->ca.cert)) {
		ca_error("CA certificate %s does not exist: run 'certgate ca init' first "
		    "(scripts/pki-init)", cfg->ca.cert);
		return -1;
	}
	if ((*cert = ca_read_cert(cfg->ca.cert)) == NULL)
		return -1;
	if (ca_require_uri("ca.key", cfg->ca.key) == -1)
		goto fail;
	if (p11_load_private_key(d, cfg->ca.key, 0, key) == -1) {
		ca_error("cannot load the CA key from the token (see above)");
		goto fail;
	}
	return 0;
fail:
	X509_free(*cert);
	*cert = NULL;
	return -1;
}

static int
ca_db_load_or_fail(const struct config *cfg, struct ca_db *db)
{
	char err[512];

	if (ca_db_load(cfg->ca.db, db, err, sizeof(err)) == -1) {
		ca_error("cannot load the CA database: %s", err);
		return -1;
	}
	return 0;
}

static int
ca_db_add_cert(struct ca_db *db, X509 *x, const char *serial)
{
	struct ca_db_row row;
	char exp[20], *subj;

	memset(&row, 0, sizeof(row));
	if (ca_asn1_to_index(X509_get0_notAfter(x), exp, sizeof(exp), NULL) == -1)
		return -1;
	if ((subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0)) == NULL)
		return -1;
	row.status = 'V';
	row.expiry = strdup(exp);
	row.revocation = strdup("");
	row.serial = strdup(serial);
	row.file = strdup("unknown");
	row.subject = strdup(subj);
	OPENSSL_free(subj);
	if (!row.expiry || !row.revocation || !row.serial || !row.file || !row.subject ||
	    ca_db_append(db, &row) == -1) {
		ca_row_clear(&row);
		ca_error("out of memory");
		return -1;
	}
	return 0;
}

/* certs_dir/SERIAL.pem */
static int
ca_archive_cert(const struct config *cfg, X509 *x, const char *serial)
{
	char *path;
	int rc;

	if (ca_mkdirs(cfg->ca.certs_dir, 0755) == -1)
		return -1;
	if ((path = ca_asprintf("%s/%s.pem", cfg->ca.certs_dir, serial)) == NULL)
		return -1;
	rc = ca_write_pem(path, x, NULL, NULL, 0644);
	free(path);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

enum {
	O_CONFIG, O_HELP, O_SUBJECT, O_FORCE, O_DNS, O_IP, O_AGENT, O_ROLE, O_SCOPE,
	O_HOURS, O_CSR, O_OUT, O_SERIAL, O_REASON, O_JSON, O_COUNT
};

static const struct option ca_all_opts[O_COUNT] = {
	[O_CONFIG] = { "config", required_argument, NULL, 'c' },
	[O_HELP] = { "help", no_argument, NULL, 'h' },
	[O_SUBJECT] = { "subject", required_argument, NULL, 256 + O_SUBJECT },
	[O_FORCE] = { "force", no_argument, NULL, 256 + O_FORCE },
	[O_DNS] = { "dns", required_argument, NULL, 256 + O_DNS },
	[O_IP] = { "ip", required_argument, NULL, 256 + O_IP },
	[O_AGENT] = { "agent", required_argument, NULL, 256 + O_AGENT },
	[O_ROLE] = { "role", required_argument, NULL, 256 + O_ROLE },
	[O_SCOPE] = { "scope", required_argument, NULL, 256 + O_SCOPE },
	[O_HOURS] = { "hours", required_argument, NULL, 256 + O_HOURS },
	[O_CSR] = { "csr", required_argument, NULL, 256 + O_CSR },
	[O_OUT] = { "out", required_argument, NULL, 256 + O_OUT },
	[O_SERIAL] = { "serial", required_argument, NULL, 256 + O_SERIAL },
	[O_REASON] = { "reason", required_argument, NULL, 256 + O_REASON },
	[O_JSON] = { "json", no_argument, NULL, 256 + O_JSON },
};

#define B(o) (1u << (o))

struct ca_args {
	const char *config;
	const char *subject;
	int force;
	const char **dns;
	size_t ndns;
	const char **ip;
	size_t nip;
	const char *agent;
	const char **roles;
	size_t nroles;
	const char **scopes;
	size_t nscopes;
	int hours;              /* 0: default */
	const char *csr;
	const char *out;
	const char *serial;
	const char *reason;
	int json;
};

struct ca_cmd {
	const char *name;
	unsigned opts;
	int (*run)(struct config *, const struct p11_defaults *, struct ca_args *);
	const char *usage;
};

static int ca_cmd_init(struct config *, const struct p11_defaults *, struct ca_args *);
static int ca_cmd_server(struct config *, const struct p11_defaults *, struct ca_args *);
static int ca_cmd_issue(struct config *, const struct p11_defaults *, struct ca_args *);
static int ca_cmd_revoke(struct config *, const struct p11_defaults *, struct ca_args *);
static int ca_cmd_crl(struct config *, const struct p11_defaults *, struct ca_args *);
static int ca_cmd_list(struct config *, const struct p11_defaults *, struct ca_args *);

static const struct ca_cmd ca_cmds[] = {
	{ "init", B(O_SUBJECT) | B(O_FORCE), ca_cmd_init,
	    "usage: certgate ca init -c CONFIG [--subject DN] [--force]\n\n"
	    "Generates the CA key inside the token (EC P-256, sensitive, not extractable)\n"
	    "at ca.key, writes the self-signed CA certificate (ca.cert, valid ca_days),\n"
	    "an empty database, the CRL number and the first (empty) CRL.\n\n"
	    "  --subject DN   CA subject, \"CN=...,O=...\" (default \"" CA_DEFAULT_SUBJECT "\")\n"
	    "  --force        replace an existing CA certificate file; a key that already\n"
	    "                 exists in the token is never overwritten (re-create the token)\n" },
	{ "server", B(O_DNS) | B(O_IP), ca_cmd_server,
	    "usage: certgate ca server -c CONFIG [--dns NAME]... [--ip ADDR]...\n\n"
	    "Generates the server key in the token at tls.key (or reuses it when it already\n"
	    "exists) and issues the server certificate to tls.cert: SAN DNS:localhost,\n"
	    "IP:127.0.0.1 and the names given, serverAuth, valid server_days.\n\n"
	    "  --dns NAME     extra DNS subjectAltName (repeatable)\n"
	    "  --ip ADDR      extra IP subjectAltName, IPv4 or IPv6 (repeatable)\n" },
	{ "issue", B(O_AGENT) | B(O_ROLE) | B(O_SCOPE) | B(O_HOURS) | B(O_CSR) | B(O_OUT),
	    ca_cmd_issue,
	    "usage: certgate ca issue -c CONFIG --agent ID [--role ROLE]... [--scope SCOPE]...\n"
	    "                         [--hours N] [--csr FILE] [--out DIR]\n\n"
	    "Issues a client certificate for agent ID (subject CN=ID, SAN URI\n"
	    "spiffe://TRUST_DOMAIN/agent/ID, clientAuth) signed in the token, records it in\n"
	    "the CA database and adds or updates the agent in the identity map. Prints the\n"
	    "serial number (hex) on stdout.\n\n"
	    "  --agent ID     [A-Za-z0-9][A-Za-z0-9._-]{0,63}\n"
	    "  --role ROLE    role from the identity map (repeatable; replaces the agent's\n"
	    "                 roles; without --role an existing agent keeps its roles)\n"
	    "  --scope SCOPE  extra scope (repeatable; same replacement rule)\n"
	    "  --hours N      lifetime, 1..8760 (default ca.default_hours)\n"
	    "  --csr FILE     certify the key of this PKCS#10 request (PEM or DER); its\n"
	    "                 subject is ignored. Without --csr an EC P-256 key is generated\n"
	    "                 and written to DIR/key.pem (0600)\n"
	    "  --out DIR      output directory (default ca.agents_dir/ID)\n" },
	{ "revoke", B(O_SERIAL) | B(O_AGENT) | B(O_REASON), ca_cmd_revoke,
	    "usage: certgate ca revoke -c CONFIG (--serial HEX | --agent ID) [--reason R]\n\n"
	    "Marks the certificate (or every valid certificate of the agent) revoked in the\n"
	    "database and re-signs the CRL in the token. Prints the revoked serial(s).\n\n"
	    "  --reason R     unspecified (default), keyCompromise, CACompromise,\n"
	    "                 affiliationChanged, superseded, cessationOfOperation\n" },
	{ "crl", B(O_HOURS), ca_cmd_crl,
	    "usage: certgate ca crl -c CONFIG [--hours N]\n\n"
	    "Signs a fresh CRL in the token (nextUpdate now + N hours, default ca.crl_hours)\n"
	    "and writes it atomically to ca.crl.\n" },
	{ "list", B(O_JSON), ca_cmd_list,
	    "usage: certgate ca list -c CONFIG [--json]\n\n"
	    "Lists the certificates in the CA database: serial, agent (CN), subject,\n"
	    "not-after and status (valid, revoked or expired).\n\n"
	    "  --json         one JSON object per line\n" },
};

static void
ca_usage(FILE *f)
{
	fprintf(f,
	    "usage: certgate ca SUBCOMMAND -c CONFIG [options]\n\n"
	    "CA operations; every signature is made with the CA key inside the token.\n\n"
	    "subcommands:\n"
	    "  init     create the CA key (in the token), CA certificate and empty CRL\n"
	    "  server   create the server key (in the token) and certificate\n"
	    "  issue    issue an agent certificate\n"
	    "  revoke   revoke a certificate and re-sign the CRL\n"
	    "  crl      re-sign the CRL\n"
	    "  list     list issued certificates\n\n"
	    "  certgate ca SUBCOMMAND --help   help for one subcommand\n");
}

static int
ca_parse_int(const char *opt, const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < min || v > max) {
		ca_error("%s must be an integer from %d to %d, got '%s'", opt, min, max, s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Parses the subcommand's options into a. Returns 0, 1 for --help (printed), or 2. */
static int
ca_parse_args(const struct ca_cmd *cmd, int argc, char **argv, struct ca_args *a)
{
	struct option opts[O_COUNT + 1];
	size_t n = 0, i;
	unsigned allowed = cmd->opts | B(O_CONFIG) | B(O_HELP);
	int ch;

	memset(a, 0, sizeof(*a));
	memset(opts, 0, sizeof(opts));
	for (i = 0; i < O_COUNT; i++)
		if (allowed & B(i))
			opts[n++] = ca_all_opts[i];
	a->dns = calloc((size_t)argc + 1, sizeof(char *));
	a->ip = calloc((size_t)argc + 1, sizeof(char *));
	a->roles = calloc((size_t)argc + 1, sizeof(char *));
	a->scopes = calloc((size_t)argc + 1, sizeof(char *));
	if (!a->dns || !a->ip || !a->roles || !a->scopes) {
		ca_error("out of memory");
		return 2;
	}
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': a->config = optarg; break;
		case 'h':
			fputs(cmd->usage, stdout);
			return 1;
		case 256 + O_SUBJECT: a->subject = optarg; break;
		case 256 + O_FORCE: a->force = 1; break;
		case 256 + O_DNS: a->dns[a->ndns++] = optarg; break;
		case 256 + O_IP: a->ip[a->nip++] = optarg; break;
		case 256 + O_AGENT: a->agent = optarg; break;
		case 256 + O_ROLE: a->roles[a->nroles++] = optarg; break;
		case 256 + O_SCOPE: a->scopes[a->nscopes++] = optarg; break;
		case 256 + O_HOURS:
			if (ca_parse_int("--hours", optarg, 1,
			    strcmp(cmd->name, "crl") == 0 ? CA_MAX_CRL_HOURS : CA_MAX_HOURS,
			    &a->hours) == -1)
				goto usage;
			break;
		case 256 + O_CSR: a->csr = optarg; break;
		case 256 + O_OUT: a->out = optarg; break;
		case 256 + O_SERIAL: a->serial = optarg; break;
		case 256 + O_REASON: a->reason = optarg; break;
		case 256 + O_JSON: a->json = 1; break;
		case ':':
			ca_error("option '%s' needs a value", argv[optind - 1]);
			goto usage;
		default:
			if (optopt)
				ca_error("unknown option '-%c'", optopt);
			else
				ca_error("unknown option '%s'", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc) {
		ca_error("unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (a->config == NULL) {
		ca_error("-c CONFIG is required");
		goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "try '%s --help'\n", ca_prog);
	return 2;
}

static void
ca_args_free(struct ca_args *a)
{
	free(a->dns);
	free(a->ip);
	free(a->roles);
	free(a->scopes);
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,63} */
static int
ca_agent_id_valid(const char *id)
{
	size_t i, n = strlen(id);

	if (n == 0 || n > 64 || !isalnum((unsigned char)id[0]))
		return 0;
	for (i = 1; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* init                                                                     */
/* ------------------------------------------------------------------------ */

static int
ca_cmd_init(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	static const struct ca_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	struct ca_certspec spec;
	struct ca_db db = { 0 };
	X509_NAME *name = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char *serial = NULL, *subj = NULL, *numpath = NULL, na[32], *dir = NULL;
	BIGNUM *one = NULL;
	int lock = -1, rc = 1, ex;

	if (ca_require_uri("ca.key", cfg->ca.key) == -1)
		return 1;
	if ((name = ca_parse_dn(a->subject ? a->subject : CA_DEFAULT_SUBJECT)) == NULL)
		return 1;
	if ((lock = ca_lock(cfg)) == -1)
		goto fail;
	if (ca_file_exists(cfg->ca.cert) && !a->force) {
		ca_error("CA certificate %s already exists (use --force to replace it)",
		    cfg->ca.cert);
		goto fail;
	}
	if ((ex = p11_key_exists(d, cfg->ca.key)) == -1) {
		ca_error("cannot look for the CA key in the token (see above)");
		goto fail;
	}
	if (ex == 1) {
		ca_error("the CA key already exists in the token; keys in the token are never "
		    "overwritten: re-create the token (scripts/pki-init --force)");
		goto fail;
	}
	if ((dir = ca_dirname(cfg->ca.cert)) == NULL || ca_mkdirs(dir, 0755) == -1 ||
	    ca_mkdirs(cfg->ca.certs_dir, 0755) == -1)
		goto fail;
	if (p11_generate_ec_key(d, cfg->ca.key, &key) == -1) {
		ca_error("cannot generate the CA key in the token (see above)");
		goto fail;
	}
	memset(&spec, 0, sizeof(spec));
	spec.subject = name;
	spec.pubkey = key;
	spec.signer = key;
	spec.seconds = (long)cfg->ca.ca_days * 86400L;
	spec.ext = exts;
	spec.next = sizeof(exts) / sizeof(exts[0]);
	if ((x = ca_make_cert(&spec, &serial)) == NULL)
		goto fail;
	if (ca_write_pem(cfg->ca.cert, x, NULL, NULL, 0644) == -1)
		goto fail;
	if (ca_db_save(cfg->ca.db, &db) == -1)
		goto fail;
	if ((numpath = ca_crlnumber_path(cfg)) == NULL || (one = BN_new()) == NULL ||
	    !BN_set_word(one, 1) || ca_crlnumber_write(numpath, one) == -1)
		goto fail;
	if (ca_crl_refresh(cfg, x, key, &db, cfg->ca.crl_hours, 0) == -1)
		goto fail;
	subj = X509_NAME_oneline(name, NULL, 0);
	ca_time_rfc3339(time(NULL) + (time_t)cfg->ca.ca_days * 86400, na, sizeof(na));
	(void)ca_audit(cfg, &(struct ca_audit_rec){ .what = "init", .serial = serial,
	    .subject = subj, .not_after = na });
	printf("CA certificate %s written to %s (key in the token, serial %s)\n",
	    subj ? subj : "?", cfg->ca.cert, serial);
	rc = 0;
fail:
	ca_unlock(lock);
	OPENSSL_free(subj);
	OPENSSL_free(serial);
	BN_free(one);
	free(numpath);
	free(dir);
	X509_free(x);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* server                                                                   */
/* ------------------------------------------------------------------------ */

static int
ca_dns_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' &&
		    !(s[i] == '*' && i == 0))
			return 0;
	return 1;
}

/* "DNS:localhost,IP:127.0.0.1,..." from the arguments (validated). */
static char *
ca_server_san(const struct ca_args *a)
{
	unsigned char buf[16];
	size_t i, len = 64;
	char *s;

	for (i = 0; i < a->ndns; i++) {
		if (!ca_dns_valid(a->dns[i])) {
			ca_error("--dns '%s' is not a valid host name", a->dns[i]);
			return NULL;
		}
		len += strlen(a->dns[i]) + 6;
	}
	for (i = 0; i < a->nip; i++) {
		if (inet_pton(AF_INET, a->ip[i], buf) != 1 &&
		    inet_pton(AF_INET6, a->ip[i], buf) != 1) {
			ca_error("--ip '%s' is not an IPv4 or IPv6 address", a->ip[i]);
			return NULL;
		}
		len += strlen(a->ip[i]) + 5;
	}
	if ((s = malloc(len)) == NULL)
		return NULL;
	snprintf(s, len, "DNS:localhost,IP:127.0.0.1");
	for (i = 0; i < a->ndns; i++)
		if (strcmp(a->dns[i], "localhost") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",DNS:%s", a->dns[i]);
	for (i = 0; i < a->nip; i++)
		if (strcmp(a->ip[i], "127.0.0.1") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",IP:%s", a->ip[i]);
	return s;
}

/* Loads the server key when it exists (renewal), else generates it in the token. */
static int
ca_server_key(const struct p11_defaults *d, const char *uri, EVP_PKEY **key)
{
	int ex;

	if ((ex = p11_key_exists(d, uri)) == -1) {
		ca_error("cannot look for the server key in the token (see above)");
		return -1;
	}
	if (ex == 1) {
		fprintf(stderr, "%s: the server key already exists in the token; reusing it\n",
		    ca_prog);
		if (p11_load_private_key(d, uri, 0, key) == -1) {
			ca_error("cannot load the server key from the token (see above)");
			return -1;
		}
		return 0;
	}
	if (p11_generate_ec_key(d, uri, key) == -1) {
		ca_error("cannot generate the server key in the token (see above)");
		return -1;
	}
	return 0;
}

static int
ca_cmd_server(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	struct ca_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "serverAuth" },
		{ NID_subject_alt_name, NULL },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	struct ca_certspec spec;
	struct ca_db db = { 0 };
	X509_NAME *name = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	X509 *cacert = NULL, *x = NULL;
	char *san = NULL, *serial = NULL, *subj = NULL, *dir = NULL, exp[20], na[32];
	time_t t;
	int lock = -1, rc = 1;

	if (ca_require_uri("tls.key", cfg->tls.key) == -1)
		return 1;
	if ((san = ca_server_san(a)) == NULL)
		return 2;
	exts[3].value = san;
	if ((name = ca_parse_dn(CA_SERVER_SUBJECT)) == NULL)
		goto fail;
	if ((lock = ca_lock(cfg)) == -1 || ca_db_load_or_fail(cfg, &db) == -1)
		goto fail;
	if (ca_load_ca(cfg, d, &cacert, &cakey) == -1)
		goto fail;
	if (ca_server_key(d, cfg->tls.key, &key) == -1)
		goto fail;
	memset(&spec, 0, sizeof(spec));
	spec.subject = name;
	spec.pubkey = key;
	spec.issuer = cacert;
	spec.signer = cakey;
	spec.seconds = (long)cfg->ca.server_days * 86400L;
	spec.ext = exts;
	spec.next = sizeof(exts) / sizeof(exts[0]);
	spec.db = &db;
	if ((x = ca_make_cert(&spec, &serial)) == NULL)
		goto fail;
	if ((dir = ca_dirname(cfg->tls.cert)) == NULL || ca_mkdirs(dir, 0755) == -1)
		goto fail;
	if (ca_archive_cert(cfg, x, serial) == -1 || ca_db_add_cert(&db, x, serial) == -1)
		goto fail;
	if (ca_write_pem(cfg->tls.cert, x, NULL, NULL, 0644) == -1 ||
	    ca_db_save(cfg->ca.db, &db) == -1)
		goto fail;
	subj = X509_NAME_oneline(name, NULL, 0);
	if (ca_asn1_to_index(X509_get0_notAfter(x), exp, sizeof(exp), &t) == 0)
		ca_time_rfc3339(t, na, sizeof(na));
	else
		snprintf(na, sizeof(na), "?");
	(void)ca_audit(cfg, &(struct ca_audit_rec){ .what = "server", .serial = serial,
	    .subject = subj, .not_after = na });
	printf("%s\n", serial);
	rc = 0;
fail:
	ca_unlock(lock);
	ca_db_free(&db);
	OPENSSL_free(serial);
	OPENSSL_free(subj);
	free(san);
	free(dir);
	X509_NAME_free(name);
	X509_free(x);
	X509_free(cacert);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* issue                                                                    */
/* ------------------------------------------------------------------------ */

/* EC P-256/P-384 or RSA >= 2048. */
static int
ca_agent_key_ok(EVP_PKEY *k)
{
	char group[64];
	size_t glen = 0;
	int bits = EVP_PKEY_get_bits(k);

	if (EVP_PKEY_is_a(k, "EC")) {
		if (!EVP_PKEY_get_group_name(k, group, sizeof(group), &glen)) {
			ca_sslerror("cannot read the curve of the request's EC key");
			return -1;
		}
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
		    strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return 0;
		ca_error("the request's EC key is on curve %s; only P-256 and P-384 are accepted",
		    group);
		return -1;
	}
	if (EVP_PKEY_is_a(k, "RSA")) {
		if (bits >= 2048 && bits <= 16384)
			return 0;
		ca_error("the request's RSA key has %d bits; at least 2048 are required", bits);
		return -1;
	}
	ca_error("the request's key type %s is not accepted (EC P-256/P-384 or RSA >= 2048)",
	    EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "?");
	return -1;
}

/* Reads a PEM or DER CSR, verifies its self-signature, returns its public key. */
static EVP_PKEY *
ca_csr_key(const char *path)
{
	X509_REQ *req = NULL;
	EVP_PKEY *k = NULL;
	BIO *b;

	if ((b = BIO_new_file(path, "rb")) == NULL) {
		ca_error("cannot open CSR %s: %s", path, strerror(errno));
		ERR_clear_error();
		return NULL;
	}
	req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	if (req == NULL) {
		(void)BIO_reset(b);
		ERR_clear_error();
		req = d2i_X509_REQ_bio(b, NULL);
	}
	BIO_free(b);
	if (req == NULL) {
		ca_sslerror("%s is not a certificate signing request (PEM or DER)", path);
		return NULL;
	}
	if ((k = X509_REQ_get_pubkey(req)) == NULL) {
		ca_sslerror("cannot read the public key of %s", path);
		goto fail;
	}
	if (X509_REQ_verify(req, k) != 1) {
		ca_sslerror("the signature of %s does not verify", path);
		goto fail;
	}
	if (ca_agent_key_ok(k) == -1)
		goto fail;
	X509_REQ_free(req);
	return k;
fail:
	EVP_PKEY_free(k);
	X509_REQ_free(req);
	return NULL;
}

/* Index of the first valid, unexpired row for subject /CN=id, or -1. */
static long
ca_find_valid(const struct ca_db *db, const char *subject, time_t now)
{
	size_t i;

	for (i = 0; i < db->n; i++)
		if (strcmp(db->rows[i].subject, subject) == 0 &&
		    strcmp(ca_row_status(&db->rows[i], now), "valid") == 0)
			return (long)i;
	return -1;
}

static json_t *
ca_json_strarray(const char **v, size_t n)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_string(v[i])) == -1) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

/* Loads the identity map (or starts one), validates roles and scopes, and returns the
 * updated document without writing it. */
static json_t *
ca_map_update(const struct config *cfg, const struct ca_args *a, const char *uri)
{
	json_error_t jerr;
	json_t *root = NULL, *roles, *agents, *ag = NULL, *v;
	const char *id;
	size_t i;

	if (ca_file_exists(cfg->identity_map)) {
		if ((root = json_load_file(cfg->identity_map, 0, &jerr)) == NULL) {
			ca_error("%s:%d: %s", cfg->identity_map, jerr.line, jerr.text);
			return NULL;
		}
	} else if ((root = json_pack("{s:{}, s:[]}", "roles", "agents")) == NULL)
		goto oom;
	if (!json_is_object(root)) {
		ca_error("%s: the identity map must be a JSON object", cfg->identity_map);
		goto fail;
	}
	roles = json_object_get(root, "roles");
	if (roles && !json_is_object(roles)) {
		ca_error("%s: \"roles\" must be an object", cfg->identity_map);
		goto fail;
	}
	for (i = 0; i < a->nroles; i++)
		if (roles == NULL || json_object_get(roles, a->roles[i]) == NULL) {
			ca_error("unknown role '%s' (not in %s)", a->roles[i], cfg->identity_map);
			goto fail;
		}
	for (i = 0; i < a->nscopes; i++)
		if (!policy_scope_valid(a->scopes[i])) {
			ca_error("invalid scope '%s' (want *, mcp:GLOB, tools:GLOB, resources:GLOB "
			    "or prompts:GLOB)", a->scopes[i]);
			goto fail;
		}
	if ((agents = json_object_get(root, "agents")) == NULL) {
		if (json_object_set_new(root, "agents", agents = json_array()) == -1)
			goto oom;
	} else if (!json_is_array(agents)) {
		ca_error("%s: \"agents\" must be an array", cfg->identity_map);
		goto fail;
	}
	json_array_foreach(agents, i, v) {
		id = json_string_value(json_object_get(v, "id"));
		if (id && strcmp(id, a->agent) == 0)
			ag = v;
		else if (json_is_string(json_object_get(v, "uri")) &&
		    strcmp(json_string_value(json_object_get(v, "uri")), uri) == 0) {
			ca_error("agent '%s' in %s already uses URI %s", id ? id : "?",
			    cfg->identity_map, uri);
			goto fail;
		}
	}
	if (ag == NULL) {
		if ((ag = json_object()) == NULL || json_array_append_new(agents, ag) == -1)
			goto oom;
		if (json_object_set_new(ag, "id", json_string(a->agent)) == -1)
			goto oom;
	}
	if (json_object_set_new(ag, "uri", json_string(uri)) == -1)
		goto oom;
	if ((a->nroles || json_object_get(ag, "roles") == NULL) &&
	    json_object_set_new(ag, "roles", ca_json_strarray(a->roles, a->nroles)) == -1)
		goto oom;
	if ((a->nscopes || json_object_get(ag, "scopes") == NULL) &&
	    json_object_set_new(ag, "scopes", ca_json_strarray(a->scopes, a->nscopes)) == -1)
		goto oom;
	return root;
oom:
	ca_error("out of memory");
fail:
	json_decref(root);
	return NULL;
}

static int
ca_map_write(const struct config *cfg, json_t *root)
{
	char *text, *nl;
	int rc;

	if ((text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
		ca_error("out of memory");
		return -1;
	}
	if ((nl = ca_asprintf("%s\n", text)) == NULL) {
		free(text);
		return -1;
	}
	rc = ca_write_atomic(cfg->identity_map, nl, strlen(nl), 0644);
	free(text);
	free(nl);
	return rc;
}

struct ca_issued {
	X509 *cert;
	EVP_PKEY *key;      /* NULL with --csr */
	char *serial;
};

/* Writes OUT/{cert.pem,key.pem,ca.pem}; a stale key.pem is removed after a CSR issue. */
static int
ca_issue_write_out(const char *out, const struct ca_issued *is, X509 *cacert)
{
	char *p = NULL;
	int rc = -1;

	if (ca_mkdirs(out, 0700) == -1)
		return -1;
	if ((p = ca_asprintf("%s/key.pem", out)) == NULL)
		goto fail;
	if (is->key) {
		if (ca_write_pem(p, NULL, NULL, is->key, 0600) == -1)
			goto fail;
	} else if (unlink(p) == -1 && errno != ENOENT) {
		ca_error("cannot remove the stale %s: %s", p, strerror(errno));
		goto fail;
	}
	free(p);
	if ((p = ca_asprintf("%s/cert.pem", out)) == NULL ||
	    ca_write_pem(p, is->cert, NULL, NULL, 0644) == -1)
		goto fail;
	free(p);
	if ((p = ca_asprintf("%s/ca.pem", out)) == NULL ||
	    ca_write_pem(p, cacert, NULL, NULL, 0644) == -1)
		goto fail;
	rc = 0;
fail:
	free(p);
	return rc;
}

static int
ca_issue_sign(const struct config *cfg, struct ca_args *a, struct ca_db *db, X509 *cacert,
    EVP_PKEY *cakey, EVP_PKEY *pub, const char *uri, struct ca_issued *is)
{
	struct ca_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "clientAuth" },
		{ NID_subject_alt_name, NULL },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	struct ca_certspec spec;
	X509_NAME *name = NULL;
	char *san = NULL;
	int rc = -1;

	if ((san = ca_asprintf("URI:%s", uri)) == NULL)
		goto fail;
	exts[3].value = san;
	if ((name = X509_NAME_new()) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)a->agent, -1, -1, 0)) {
		ca_sslerror("cannot build the subject");
		goto fail;
	}
	memset(&spec, 0, sizeof(spec));
	spec.subject = name;
	spec.pubkey = pub;
	spec.issuer = cacert;
	spec.signer = cakey;
	spec.seconds = (long)a->hours * 3600L;
	spec.ext = exts;
	spec.next = sizeof(exts) / sizeof(exts[0]);
	spec.db = db;
	if ((is->cert = ca_make_cert(&spec, &is->serial)) == NULL)
		goto fail;
	rc = 0;
	(void)cfg;
fail:
	X509_NAME_free(name);
	free(san);
	return rc;
}

static int
ca_cmd_issue(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	struct ca_issued is = { 0 };
	struct ca_db db = { 0 };
	EVP_PKEY *cakey = NULL, *pub = NULL;
	X509 *cacert = NULL;
	json_t *map = NULL;
	char *uri = NULL, *out = NULL, *subject = NULL, exp[20], na[32];
	const char *td = cfg->ca.trust_domain ? cfg->ca.trust_domain : "certgate.local";
	time_t t;
	long dup;
	int lock = -1, rc = 1;

	if (a->agent == NULL) {
		ca_error("--agent ID is required");
		return 2;
	}
	if (!ca_agent_id_valid(a->agent)) {
		ca_error("bad agent id '%s': want [A-Za-z0-9][A-Za-z0-9._-]{0,63}", a->agent);
		return 2;
	}
	if (a->hours == 0)
		a->hours = cfg->ca.default_hours > 0 ? cfg->ca.default_hours : 24;
	if (a->hours > CA_MAX_HOURS) {
		ca_error("lifetime %d hours exceeds the maximum of %d", a->hours, CA_MAX_HOURS);
		return 1;
	}
	if ((uri = ca_asprintf("spiffe://%s/agent/%s", td, a->agent)) == NULL ||
	    (subject = ca_asprintf("/CN=%s", a->agent)) == NULL)
		goto fail;
	if ((out = a->out ? ca_strdup(a->out) :
	    ca_asprintf("%s/%s", cfg->ca.agents_dir, a->agent)) == NULL)
		goto fail;
	if ((lock = ca_lock(cfg)) == -1 || ca_db_load_or_fail(cfg, &db) == -1)
		goto fail;
	if ((dup = ca_find_valid(&db, subject, time(NULL))) != -1) {
		ca_error("agent %s already has a valid certificate %s; revoke it first",
		    a->agent, db.rows[dup].serial);
		goto fail;
	}
	if ((map = ca_map_update(cfg, a, uri)) == NULL)
		goto fail;
	if (a->csr) {
		if ((pub = ca_csr_key(a->csr)) == NULL)
			goto fail;
	} else if ((is.key = pub = EVP_EC_gen("P-256")) == NULL) {
		ca_sslerror("cannot generate the agent key");
		goto fail;
	}
	if (ca_load_ca(cfg, d, &cacert, &cakey) == -1)
		goto fail;
	if (ca_issue_sign(cfg, a, &db, cacert, cakey, pub, uri, &is) == -1)
		goto fail;
	if (ca_mkdirs(cfg->ca.agents_dir, 0700) == -1 ||
	    ca_issue_write_out(out, &is, cacert) == -1 ||
	    ca_archive_cert(cfg, is.cert, is.serial) == -1 ||
	    ca_db_add_cert(&db, is.cert, is.serial) == -1 ||
	    ca_db_save(cfg->ca.db, &db) == -1 ||
	    ca_map_write(cfg, map) == -1)
		goto fail;
	if (ca_asn1_to_index(X509_get0_notAfter(is.cert), exp, sizeof(exp), &t) == 0)
		ca_time_rfc3339(t, na, sizeof(na));
	else
		snprintf(na, sizeof(na), "?");
	(void)ca_audit(cfg, &(struct ca_audit_rec){ .what = "issue", .serial = is.serial,
	    .agent = a->agent, .subject = subject, .not_after = na });
	printf("%s\n", is.serial);
	rc = 0;
fail:
	ca_unlock(lock);
	ca_db_free(&db);
	json_decref(map);
	if (is.key == NULL)
		EVP_PKEY_free(pub);
	EVP_PKEY_free(is.key);
	X509_free(is.cert);
	OPENSSL_free(is.serial);
	X509_free(cacert);
	EVP_PKEY_free(cakey);
	free(uri);
	free(out);
	free(subject);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* revoke, crl, list                                                        */
/* ------------------------------------------------------------------------ */

/* Normalises a user-given serial (optional 0x, colons) to uppercase hex. */
static int
ca_serial_arg(const char *in, char *out, size_t len)
{
	size_t n = 0;

	if (strncasecmp(in, "0x", 2) == 0)
		in += 2;
	for (; *in; in++) {
		if (*in == ':')
			continue;
		if (!isxdigit((unsigned char)*in) || n + 1 >= len)
			return -1;
		out[n++] = (char)toupper((unsigned char)*in);
	}
	out[n] = '\0';
	return n ? 0 : -1;
}

/* Marks the selected rows revoked; fails without changing anything when none qualify. */
static int
ca_revoke_mark(struct ca_db *db, const struct ca_args *a, const char *reason,
    size_t *picked, size_t *npicked)
{
	char serial[80], *subject = NULL, date[20], *rev;
	struct ca_db_row *r;
	time_t now = time(NULL);
	size_t i, nrevoked = 0;
	int rc = -1;

	*npicked = 0;
	if (a->serial) {
		if (ca_serial_arg(a->serial, serial, sizeof(serial)) == -1) {
			ca_error("--serial '%s' is not a hexadecimal serial number", a->serial);
			return -1;
		}
		if ((r = ca_db_find_serial(db, serial)) == NULL) {
			ca_error("no certificate with serial %s in the CA database", serial);
			return -1;
		}
		if (r->status == 'R') {
			ca_error("certificate %s is already revoked", r->serial);
			return -1;
		}
		picked[(*npicked)++] = (size_t)(r - db->rows);
	} else {
		if ((subject = ca_asprintf("/CN=%s", a->agent)) == NULL)
			return -1;
		for (i = 0; i < db->n; i++) {
			if (strcmp(db->rows[i].subject, subject) != 0)
				continue;
			if (db->rows[i].status == 'R')
				nrevoked++;
			else if (strcmp(ca_row_status(&db->rows[i], now), "valid") == 0)
				picked[(*npicked)++] = i;
		}
		if (*npicked == 0) {
			if (nrevoked)
				ca_error("agent %s has no valid certificate (already revoked)", a->agent);
			else
				ca_error("agent %s has no valid certificate in the CA database",
				    a->agent);
			goto fail;
		}
	}
	ca_time_format(now, date, sizeof(date));
	for (i = 0; i < *npicked; i++) {
		r = &db->rows[picked[i]];
		if ((rev = ca_asprintf("%s,%s", date, reason)) == NULL)
			goto fail;
		free(r->revocation);
		r->revocation = rev;
		r->status = 'R';
	}
	rc = 0;
fail:
	free(subject);
	return rc;
}

static int
ca_cmd_revoke(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	static const char *const allowed[] = { "unspecified", "keyCompromise", "CACompromise",
	    "affiliationChanged", "superseded", "cessationOfOperation", NULL };
	struct ca_db db = { 0 };
	EVP_PKEY *cakey = NULL;
	X509 *cacert = NULL;
	size_t *picked = NULL, npicked = 0, i;
	const char *reason = NULL;
	char cn[128], na[32];
	time_t t;
	int lock = -1, rc = 1;

	if ((a->serial == NULL) == (a->agent == NULL)) {
		ca_error("give exactly one of --serial HEX or --agent ID");
		return 2;
	}
	for (i = 0; allowed[i]; i++)
		if (strcasecmp(allowed[i], a->reason ? a->reason : "unspecified") == 0)
			reason = allowed[i];
	if (reason == NULL) {
		ca_error("unknown reason '%s' (unspecified, keyCompromise, CACompromise, "
		    "affiliationChanged, superseded, cessationOfOperation)", a->reason);
		return 2;
	}
	if ((lock = ca_lock(cfg)) == -1 || ca_db_load_or_fail(cfg, &db) == -1)
		goto fail;
	if ((picked = calloc(db.n + 1, sizeof(*picked))) == NULL)
		goto fail;
	if (ca_load_ca(cfg, d, &cacert, &cakey) == -1)
		goto fail;
	if (ca_revoke_mark(&db, a, reason, picked, &npicked) == -1)
		goto fail;
	/* The CRL is signed before anything is written: a token failure changes nothing. */
	{
		X509_CRL *crl;
		BIGNUM *number = NULL;
		int ok;

		if ((crl = ca_make_crl(cfg, cacert, cakey, &db, cfg->ca.crl_hours, &number)) == NULL)
			goto fail;
		ok = ca_db_save(cfg->ca.db, &db) == 0 && ca_publish_crl(cfg, crl, number) == 0;
		X509_CRL_free(crl);
		BN_free(number);
		if (!ok)
			goto fail;
	}
	for (i = 0; i < npicked; i++) {
		struct ca_db_row *r = &db.rows[picked[i]];
		if (ca_time_parse(r->expiry, &t) == 0)
			ca_time_rfc3339(t, na, sizeof(na));
		else
			snprintf(na, sizeof(na), "?");
		(void)ca_audit(cfg, &(struct ca_audit_rec){ .what = "revoke", .serial = r->serial,
		    .agent = ca_subject_cn(r->subject, cn, sizeof(cn)), .subject = r->subject,
		    .reason = reason, .not_after = na });
		printf("%s\n", r->serial);
	}
	rc = 0;
fail:
	ca_unlock(lock);
	ca_db_free(&db);
	free(picked);
	X509_free(cacert);
	EVP_PKEY_free(cakey);
	return rc;
}

static int
ca_cmd_crl(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	struct ca_db db = { 0 };
	EVP_PKEY *cakey = NULL;
	X509 *cacert = NULL;
	char na[32];
	int lock = -1, rc = 1, hours = a->hours ? a->hours : cfg->ca.crl_hours;

	if (hours <= 0)
		hours = 168;
	if ((lock = ca_lock(cfg)) == -1 || ca_db_load_or_fail(cfg, &db) == -1)
		goto fail;
	if (ca_load_ca(cfg, d, &cacert, &cakey) == -1)
		goto fail;
	if (ca_crl_refresh(cfg, cacert, cakey, &db, hours, 1) == -1)
		goto fail;
	ca_time_rfc3339(time(NULL) + (time_t)hours * 3600, na, sizeof(na));
	(void)ca_audit(cfg, &(struct ca_audit_rec){ .what = "crl", .not_after = na });
	rc = 0;
fail:
	ca_unlock(lock);
	ca_db_free(&db);
	X509_free(cacert);
	EVP_PKEY_free(cakey);
	return rc;
}

static int
ca_list_json(const struct ca_db *db, time_t now)
{
	const struct ca_db_row *r;
	char cn[128], na[32], *line;
	json_t *o;
	time_t t;
	size_t i;

	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		if (ca_time_parse(r->expiry, &t) == 0)
			ca_time_rfc3339(t, na, sizeof(na));
		else
			snprintf(na, sizeof(na), "%s", r->expiry);
		o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "serial", r->serial,
		    "agent", ca_subject_cn(r->subject, cn, sizeof(cn)), "subject", r->subject,
		    "not_after", na, "status", ca_row_status(r, now));
		if (o && r->status == 'R')
			json_object_set_new(o, "revoked", json_string(r->revocation));
		if (o == NULL || (line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
			json_decref(o);
			ca_error("out of memory");
			return 1;
		}
		printf("%s\n", line);
		free(line);
		json_decref(o);
	}
	return 0;
}

static int
ca_list_table(const struct ca_db *db, time_t now)
{
	int ws = 6, wa = 5, wj = 7;
	char cn[128], na[32];
	const struct ca_db_row *r;
	time_t t;
	size_t i;

	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		if ((int)strlen(r->serial) > ws)
			ws = (int)strlen(r->serial);
		if ((int)strlen(ca_subject_cn(r->subject, cn, sizeof(cn))) > wa)
			wa = (int)strlen(cn);
		if ((int)strlen(r->subject) > wj)
			wj = (int)strlen(r->subject);
	}
	printf("%-*s  %-*s  %-*s  %-20s  %s\n", ws, "SERIAL", wa, "AGENT", wj, "SUBJECT",
	    "NOT-AFTER", "STATUS");
	for (i = 0; i < db->n; i++) {
		r = &db->rows[i];
		if (ca_time_parse(r->expiry, &t) == 0)
			ca_time_rfc3339(t, na, sizeof(na));
		else
			snprintf(na, sizeof(na), "%s", r->expiry);
		printf("%-*s  %-*s  %-*s  %-20s  %s\n", ws, r->serial, wa,
		    ca_subject_cn(r->subject, cn, sizeof(cn)), wj, r->subject, na,
		    ca_row_status(r, now));
	}
	return 0;
}

static int
ca_cmd_list(struct config *cfg, const struct p11_defaults *d, struct ca_args *a)
{
	struct ca_db db = { 0 };
	int rc;

	(void)d;
	if (ca_db_load_or_fail(cfg, &db) == -1)
		return 1;
	rc = a->json ? ca_list_json(&db, time(NULL)) : ca_list_table(&db, time(NULL));
	ca_db_free(&db);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

static int
ca_load_config(const char *path, struct config **cfg)
{
	struct strlist errs = { 0 };
	size_t i;

	if (config_load(path, 0, cfg, &errs) == 0) {
		strlist_free(&errs);
		return 0;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i]);
	if (errs.n == 0)
		ca_error("%s: cannot load the configuration", path);
	strlist_free(&errs);
	return -1;
}

int
ca_main(int argc, char **argv)
{
	static char prog[64];
	const struct ca_cmd *cmd = NULL;
	struct p11_defaults d;
	struct config *cfg = NULL;
	struct ca_args a;
	size_t i;
	int rc;

	if (argc < 2) {
		ca_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ca_usage(stdout);
		return 0;
	}
	for (i = 0; i < sizeof(ca_cmds) / sizeof(ca_cmds[0]); i++)
		if (strcmp(argv[1], ca_cmds[i].name) == 0)
			cmd = &ca_cmds[i];
	if (cmd == NULL) {
		fprintf(stderr, "certgate ca: unknown subcommand '%s'\n", argv[1]);
		ca_usage(stderr);
		return 2;
	}
	snprintf(prog, sizeof(prog), "certgate ca %s", cmd->name);
	ca_prog = prog;
	/* Keys, PIN-adjacent files and directories holding secrets are private by default;
	 * public files get their mode explicitly. */
	umask(077);
	rc = ca_parse_args(cmd, argc - 1, argv + 1, &a);
	if (rc != 0) {
		ca_args_free(&a);
		return rc == 1 ? 0 : 2;
	}
	if (ca_load_config(a.config, &cfg) == -1) {
		ca_args_free(&a);
		return 1;
	}
	ca_defaults(cfg, &d);
	rc = cmd->run(cfg, &d, &a);
	fflush(stdout);
	p11_shutdown();
	config_free(cfg);
	ca_args_free(&a);
	return rc;
}
