/* Gateway configuration: certgate.json parsed with jansson and validated as a
 * whole, so an operator sees every problem at once, each as
 * "FILE:LINE: $.json.path: message".
 *
 * jansson keeps no per-value positions, so jsonpos.h maps every JSON path to the
 * line where its value starts. Validation is table driven: unknown keys are errors,
 * so a typo never silently falls back to a default.
 *
 * What lives elsewhere: JSON positions (jsonpos.c), string lists (strlist.c),
 * addresses and URLs (hostport.c), the PATH lookup of a stdio command (child.c),
 * PKCS#11 URIs (p11_uri.c). Why the rest stays in one file of ~1,400 lines: the
 * field tables, the walker that applies them and the cross-field checks (config_check_*)
 * share one private validation context (struct cctx: the error list with line
 * numbers, the JSON root, the flags); every section's checks need all three, and a
 * second file would have to export that context to gain nothing a reader can use.
 * Read it top down: context, tables, values, sections, cross-field rules, entry
 * points. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "hostport.h"
#include "jsonpos.h"
#include "p11.h"

#define CONFIG_MAX_BYTES	(1024 * 1024)

int
config_line_of(const char *text, size_t len, const char *path)
{
	struct jsonpos *m = NULL;
	int line;

	(void)jsonpos_build(text, len, &m);
	line = jsonpos_line(m, path);
	jsonpos_free(m);
	return line;
}

/* ---- validation context ------------------------------------------------------ */

struct cerr_ent {
	int line;
	size_t seq;
	char *msg;
};

struct cctx {
	const char *name;
	const char *dir;
	int flags;
	struct jsonpos *lm;
	struct cerr_ent *e;
	size_t ne, cape;
	int oom;
	json_t *root;
};

static void config_err(struct cctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
config_err(struct cctx *c, const char *path, const char *fmt, ...)
{
	struct cerr_ent *nv;
	char *msg = NULL;
	va_list ap;
	size_t ncap;
	int line, r;

	line = jsonpos_line(c->lm, path);
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0) {
		c->oom = 1;
		return;
	}
	if (c->ne == c->cape) {
		ncap = c->cape ? c->cape * 2 : 16;
		if ((nv = realloc(c->e, ncap * sizeof(*nv))) == NULL) {
			free(msg);
			c->oom = 1;
			return;
		}
		c->e = nv;
		c->cape = ncap;
	}
	c->e[c->ne].line = line;
	c->e[c->ne].seq = c->ne;
	if (asprintf(&c->e[c->ne].msg, "%s:%d: %s: %s", c->name, line, path, msg) < 0) {
		free(msg);
		c->oom = 1;
		return;
	}
	free(msg);
	c->ne++;
}

static int
config_err_cmp(const void *a, const void *b)
{
	const struct cerr_ent *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the errors over in file order. */
static void
config_err_flush(struct cctx *c, struct strlist *errs)
{
	size_t i;

	if (c->ne > 1)
		qsort(c->e, c->ne, sizeof(*c->e), config_err_cmp);
	for (i = 0; i < c->ne; i++) {
		if (errs)
			strlist_addf(errs, "%s", c->e[i].msg);
		free(c->e[i].msg);
	}
	if (c->oom && errs)
		strlist_addf(errs, "%s:0: $: out of memory", c->name);
	free(c->e);
	c->e = NULL;
}

/* A user-supplied value for a message: quoted, control characters escaped, cut. */
static char *
config_quote(const char *s, char *buf, size_t len)
{
	size_t o = 0, i;

	buf[o++] = '"';
	for (i = 0; s[i] && o + 8 < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
		else if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else
			buf[o++] = (char)ch;
	}
	if (s[i])
		o += (size_t)snprintf(buf + o, len - o, "...");
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* ---- field tables -------------------------------------------------------------- */

enum ftype {
	FT_STR,		/* non-empty string */
	FT_PATH,	/* non-empty string, resolved against the config directory */
	FT_BOOL,
	FT_INT,		/* int in [min, max] */
	FT_LONG,	/* long in [min, max] */
	FT_NUM,		/* finite number > 0 */
	FT_OBJ,		/* object described by sub */
	FT_SPECIAL	/* known key, validated by dedicated code */
};

struct field {
	const char *key;
	enum ftype type;
	size_t off;
	long long min, max;
	const struct field *sub;
};

#define OFF(m) offsetof(struct config, m)

static const struct field f_upstream[] = {
	{ "url", FT_SPECIAL, 0, 0, 0, NULL },
	{ "ca", FT_PATH, OFF(upstream.ca), 0, 0, NULL },
	{ "pool_size", FT_INT, OFF(upstream.pool_size), 0, 4096, NULL },
	{ "command", FT_SPECIAL, 0, 0, 0, NULL },
	{ "env", FT_SPECIAL, 0, 0, 0, NULL },
	{ "max_processes", FT_INT, OFF(upstream.max_processes), 1, 100000, NULL },
	{ "idle_timeout_ms", FT_INT, OFF(upstream.idle_timeout_ms), 1000, INT_MAX, NULL },
	{ "client_cert_header", FT_SPECIAL, 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_proxy_protocol[] = {
	{ "trusted", FT_SPECIAL, 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_ocsp[] = {
	{ "mode", FT_SPECIAL, 0, 0, 0, NULL },
	{ "cache_s", FT_INT, OFF(tls.ocsp_cache_s), 1, 86400, NULL },
	{ "timeout_ms", FT_INT, OFF(tls.ocsp_timeout_ms), 100, 60000, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_cluster[] = {
	{ "redis", FT_SPECIAL, 0, 0, 0, NULL },
	{ "name", FT_STR, OFF(cluster.name), 0, 0, NULL },
	{ "session_ttl_s", FT_INT, OFF(cluster.session_ttl_s), 1, 31536000, NULL },
	{ "timeout_ms", FT_INT, OFF(cluster.timeout_ms), 10, 60000, NULL },
	{ "ticket_rotate_s", FT_INT, OFF(cluster.ticket_rotate_s), 2, 604800, NULL },
	{ "user", FT_STR, OFF(cluster.user), 0, 0, NULL },
	{ "password_file", FT_PATH, OFF(cluster.password_file), 0, 0, NULL },
	{ "password_env", FT_SPECIAL, 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_mcp[] = {
	{ "validate_arguments", FT_BOOL, OFF(mcp.validate_arguments), 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_pkcs11[] = {
	{ "module", FT_PATH, OFF(pkcs11.module), 0, 0, NULL },
	{ "token", FT_STR, OFF(pkcs11.token), 0, 0, NULL },
	{ "pin_file", FT_PATH, OFF(pkcs11.pin_file), 0, 0, NULL },
	{ "pin_env", FT_SPECIAL, 0, 0, 0, NULL },
	{ "softhsm2_conf", FT_PATH, OFF(pkcs11.softhsm2_conf), 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_tls[] = {
	{ "cert", FT_PATH, OFF(tls.cert), 0, 0, NULL },
	{ "key", FT_SPECIAL, 0, 0, 0, NULL },
	{ "ca", FT_PATH, OFF(tls.ca), 0, 0, NULL },
	{ "crl", FT_PATH, OFF(tls.crl), 0, 0, NULL },
	{ "crl_check", FT_BOOL, OFF(tls.crl_check), 0, 0, NULL },
	{ "allow_extractable_key", FT_BOOL, OFF(tls.allow_extractable_key), 0, 0, NULL },
	{ "session_tickets", FT_BOOL, OFF(tls.session_tickets), 0, 0, NULL },
	{ "min_version", FT_SPECIAL, 0, 0, 0, NULL },
	{ "allow_shared_token", FT_BOOL, OFF(tls.allow_shared_token), 0, 0, NULL },
	{ "ocsp", FT_OBJ, 0, 0, 0, f_ocsp },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_ca_pkcs11[] = {
	{ "module", FT_PATH, OFF(ca.pkcs11.module), 0, 0, NULL },
	{ "token", FT_STR, OFF(ca.pkcs11.token), 0, 0, NULL },
	{ "pin_file", FT_PATH, OFF(ca.pkcs11.pin_file), 0, 0, NULL },
	{ "pin_env", FT_SPECIAL, 0, 0, 0, NULL },
	{ "softhsm2_conf", FT_PATH, OFF(ca.pkcs11.softhsm2_conf), 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_ca[] = {
	{ "key", FT_SPECIAL, 0, 0, 0, NULL },
	{ "cert", FT_PATH, OFF(ca.cert), 0, 0, NULL },
	{ "db", FT_PATH, OFF(ca.db), 0, 0, NULL },
	{ "certs_dir", FT_PATH, OFF(ca.certs_dir), 0, 0, NULL },
	{ "crl", FT_PATH, OFF(ca.crl), 0, 0, NULL },
	{ "agents_dir", FT_PATH, OFF(ca.agents_dir), 0, 0, NULL },
	{ "audit", FT_PATH, OFF(ca.audit), 0, 0, NULL },
	{ "trust_domain", FT_SPECIAL, 0, 0, 0, NULL },
	{ "crl_hours", FT_INT, OFF(ca.crl_hours), 1, 87600, NULL },
	{ "default_hours", FT_INT, OFF(ca.default_hours), 1, 87600, NULL },
	{ "server_days", FT_INT, OFF(ca.server_days), 1, 36500, NULL },
	{ "ca_days", FT_INT, OFF(ca.ca_days), 1, 36500, NULL },
	{ "pkcs11", FT_OBJ, 0, 0, 0, f_ca_pkcs11 },
	{ "tokens_dir", FT_PATH, OFF(ca.tokens_dir), 0, 0, NULL },
	{ "socket", FT_PATH, OFF(ca.socket), 0, 0, NULL },
	{ "service", FT_SPECIAL, 0, 0, 0, NULL },
	{ "ocsp_url", FT_SPECIAL, 0, 0, 0, NULL },
	{ "renew_per_hour", FT_INT, OFF(ca.renew_per_hour), 1, 1000000, NULL },
	{ "renew_burst", FT_INT, OFF(ca.renew_burst), 1, 1000000, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_enroll[] = {
	{ "listen", FT_SPECIAL, 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_audit[] = {
	{ "file", FT_SPECIAL, 0, 0, 0, NULL },
	{ "on_failure", FT_SPECIAL, 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_rate[] = {
	{ "per_second", FT_NUM, OFF(rate_per_second), 0, 0, NULL },
	{ "burst", FT_NUM, OFF(rate_burst), 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

#define LIM(name) { #name, FT_INT, OFF(limits.name), 1, INT_MAX, NULL }
static const struct field f_limits[] = {
	LIM(handshake_timeout_ms),
	LIM(header_timeout_ms),
	LIM(body_timeout_ms),
	LIM(idle_timeout_ms),
	LIM(upstream_connect_timeout_ms),
	LIM(upstream_response_timeout_ms),
	LIM(stream_idle_timeout_ms),
	LIM(grace_ms),
	LIM(max_connections),
	LIM(max_connections_per_ip),
	LIM(max_header_bytes),
	LIM(max_header_count),
	{ "max_body_bytes", FT_LONG, OFF(limits.max_body_bytes), 1, LONG_MAX, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};
#undef LIM

static const struct field f_signer[] = {
	{ "async", FT_BOOL, OFF(signer.async), 0, 0, NULL },
	{ "threads", FT_INT, OFF(signer.threads), 1, 256, NULL },
	{ "queue", FT_INT, OFF(signer.queue), 0, 1000000, NULL },
	{ "timeout_ms", FT_INT, OFF(signer.timeout_ms), 1, 600000, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

static const struct field f_top[] = {
	{ "listen", FT_SPECIAL, 0, 0, 0, NULL },
	{ "admin", FT_SPECIAL, 0, 0, 0, NULL },
	{ "workers", FT_INT, OFF(workers), 0, 256, NULL },
	{ "upstream", FT_SPECIAL, 0, 0, 0, NULL },
	{ "pkcs11", FT_OBJ, 0, 0, 0, f_pkcs11 },
	{ "tls", FT_OBJ, 0, 0, 0, f_tls },
	{ "ca", FT_OBJ, 0, 0, 0, f_ca },
	{ "identity_map", FT_PATH, OFF(identity_map), 0, 0, NULL },
	{ "audit", FT_OBJ, 0, 0, 0, f_audit },
	{ "rate", FT_OBJ, 0, 0, 0, f_rate },
	{ "limits", FT_OBJ, 0, 0, 0, f_limits },
	{ "signer", FT_OBJ, 0, 0, 0, f_signer },
	{ "mcp", FT_OBJ, 0, 0, 0, f_mcp },
	{ "enroll", FT_OBJ, 0, 0, 0, f_enroll },
	{ "proxy_protocol", FT_OBJ, 0, 0, 0, f_proxy_protocol },
	{ "cluster", FT_OBJ, 0, 0, 0, f_cluster },
	{ "hsts_max_age", FT_INT, OFF(hsts_max_age), 0, INT_MAX, NULL },
	{ NULL, 0, 0, 0, 0, NULL }
};

#undef OFF

/* Edit distance for "did you mean"; keys are short. */
static size_t
config_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, up;
	size_t row[65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			cur = prev + (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));
			if (row[j] + 1 < cur)
				cur = row[j] + 1;
			if (row[j - 1] + 1 < cur)
				cur = row[j - 1] + 1;
			row[j] = cur;
			prev = up;
		}
	}
	return row[lb];
}

static void
config_unknown_key(struct cctx *c, const char *path, const char *key, const struct field *tab)
{
	const struct field *f, *best = NULL;
	size_t d, bestd = SIZE_MAX;

	for (f = tab; f->key; f++)
		if ((d = config_edit_distance(key, f->key)) < bestd) {
			bestd = d;
			best = f;
		}
	if (best && bestd <= 2 && bestd < strlen(best->key) / 2 + 1)
		config_err(c, path, "unknown key (did you mean \"%s\"?)", best->key);
	else
		config_err(c, path, "unknown key");
}

/* ---- values ------------------------------------------------------------------ */

static char *
config_resolve_path(const char *dir, const char *p)
{
	char *out;

	if (p[0] == '/')
		return strdup(p);
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (asprintf(&out, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", p) < 0)
		return NULL;
	return out;
}

static const char *
config_json_type(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* A non-empty string value, or NULL after reporting the problem. */
static const char *
config_want_string(struct cctx *c, const char *path, const json_t *v)
{
	if (!json_is_string(v)) {
		config_err(c, path, "must be a string, not %s", config_json_type(v));
		return NULL;
	}
	if (json_string_length(v) == 0) {
		config_err(c, path, "must not be empty");
		return NULL;
	}
	return json_string_value(v);
}

static int
config_set_str(struct cctx *c, char **dst, const char *val)
{
	char *s = strdup(val);

	if (s == NULL) {
		c->oom = 1;
		return -1;
	}
	free(*dst);
	*dst = s;
	return 0;
}

static int
config_set_path(struct cctx *c, char **dst, const char *val)
{
	char *s = config_resolve_path(c->dir, val);

	if (s == NULL) {
		c->oom = 1;
		return -1;
	}
	free(*dst);
	*dst = s;
	return 0;
}

static void
config_set_int(struct cctx *c, const struct field *f, const char *path, const json_t *v,
    char *base)
{
	json_int_t i;

	if (!json_is_integer(v)) {
		config_err(c, path, "must be an integer, not %s", config_json_type(v));
		return;
	}
	i = json_integer_value(v);
	if (i < f->min || i > f->max) {
		if (f->max == INT_MAX || f->max == LONG_MAX)
			config_err(c, path, "must be at least %lld (got %lld)", f->min,
			    (long long)i);
		else
			config_err(c, path, "must be between %lld and %lld (got %lld)",
			    f->min, f->max,
			    (long long)i);
		return;
	}
	if (f->type == FT_INT)
		*(int *)(base + f->off) = (int)i;
	else
		*(long *)(base + f->off) = (long)i;
}

static void config_walk(struct cctx *c, json_t *obj, const char *path,
    const struct field *tab, struct config *cfg);

static void
config_set_field(struct cctx *c, const struct field *f, const char *path, json_t *v,
    struct config *cfg)
{
	char *base = (char *)cfg;
	const char *s;
	double d;

	switch (f->type) {
	case FT_STR:
	case FT_PATH:
		if ((s = config_want_string(c, path, v)) == NULL)
			return;
		if (f->type == FT_STR)
			config_set_str(c, (char **)(base + f->off), s);
		else
			config_set_path(c, (char **)(base + f->off), s);
		break;
	case FT_BOOL:
		if (!json_is_boolean(v)) {
			config_err(c, path, "must be true or false, not %s", config_json_type(v));
			return;
		}
		*(int *)(base + f->off) = json_is_true(v);
		break;
	case FT_INT:
	case FT_LONG:
		config_set_int(c, f, path, v, base);
		break;
	case FT_NUM:
		if (!json_is_number(v)) {
			config_err(c, path, "must be a number, not %s", config_json_type(v));
			return;
		}
		d = json_number_value(v);
		if (!(d > 0) || !isfinite(d)) {
			config_err(c, path, "must be greater than 0");
			return;
		}
		*(double *)(base + f->off) = d;
		break;
	case FT_OBJ:
		if (!json_is_object(v)) {
			config_err(c, path, "must be an object, not %s", config_json_type(v));
			return;
		}
		config_walk(c, v, path, f->sub, cfg);
		break;
	case FT_SPECIAL:
		break;
	}
}

/* Checks every member against tab and stores the plain ones; FT_SPECIAL members
 * are left to the dedicated checks below. */
static void
config_walk(struct cctx *c, json_t *obj, const char *path, const struct field *tab,
    struct config *cfg)
{
	const struct field *f;
	const char *key;
	json_t *v;
	char *p;

	json_object_foreach(obj, key, v) {
		if ((p = jsonpos_child(path, key)) == NULL) {
			c->oom = 1;
			return;
		}
		for (f = tab; f->key && strcmp(f->key, key) != 0; f++)
			;
		if (f->key == NULL)
			config_unknown_key(c, p, key, tab);
		else
			config_set_field(c, f, p, v, cfg);
		free(p);
	}
}

/* json value at a dotted list of keys under root, NULL when absent. */
static json_t *
config_jget(json_t *root, const char *a, const char *b)
{
	json_t *v = json_object_get(root, a);

	if (v && b)
		v = json_is_object(v) ? json_object_get(v, b) : NULL;
	return v;
}

static int
config_is_pkcs11(const char *s)
{
	return strncasecmp(s, "pkcs11:", 7) == 0;
}

/* Validates a pkcs11: URI; fills u on success (caller frees with p11_uri_free). */
static int
config_check_uri(struct cctx *c, const char *path, const char *uri, struct p11_uri *u)
{
	char err[256] = "";

	/* The URI itself is not echoed: it may carry a pin-value. */
	if (p11_uri_parse(uri, u, err, sizeof(err)) == 0)
		return 0;
	config_err(c, path, "invalid pkcs11: URI%s%s", err[0] ? ": " : "", err);
	return -1;
}

static void
config_check_listen(struct cctx *c, struct config *cfg)
{
	const char *s, *why = "";
	char q[128];
	json_t *v;

	if ((v = json_object_get(c->root, "listen")) != NULL &&
	    (s = config_want_string(c, "$.listen", v)) != NULL &&
	    hostport_parse(s, &cfg->listen_host, &cfg->listen_port, &why) == -1)
		config_err(c, "$.listen", "%s: %s", config_quote(s, q, sizeof(q)), why);
	if ((v = config_jget(c->root, "enroll", "listen")) != NULL && !json_is_null(v) &&
	    !(json_is_string(v) && json_string_length(v) == 0) &&
	    (s = config_want_string(c, "$.enroll.listen", v)) != NULL &&
	    hostport_parse(s, &cfg->enroll.listen_host, &cfg->enroll.listen_port, &why) == -1)
		config_err(c, "$.enroll.listen", "%s: %s", config_quote(s, q, sizeof(q)), why);
	if ((v = json_object_get(c->root, "admin")) == NULL || json_is_null(v) ||
	    (json_is_string(v) && json_string_length(v) == 0))
		return;	/* admin listener disabled */
	if ((s = config_want_string(c, "$.admin", v)) != NULL &&
	    hostport_parse(s, &cfg->admin_host, &cfg->admin_port, &why) == -1)
		config_err(c, "$.admin", "%s: %s", config_quote(s, q, sizeof(q)), why);
}

/* A NULL-terminated copy of strings; -1 on ENOMEM. */
static int
config_strv_push(struct cctx *c, char ***v, size_t *n, char *s)
{
	char **nv;

	if (s == NULL || (nv = reallocarray(*v, *n + 2, sizeof(*nv))) == NULL) {
		free(s);
		c->oom = 1;
		return -1;
	}
	*v = nv;
	nv[(*n)++] = s;
	nv[*n] = NULL;
	return 0;
}

/* 1 when prog would be found by stdioproc the way it spawns it: in the PATH of the
 * upstream's env, else ours, else CHILD_DEFAULT_PATH. *used is that PATH. */
static int
config_command_found(const struct config_upstream *u, const char *prog, const char **used)
{
	const char *p;
	char *r;

	if ((p = child_env_get(u->env, "PATH")) == NULL &&
	    ((p = getenv("PATH")) == NULL || *p == '\0'))
		p = CHILD_DEFAULT_PATH;
	*used = p;
	if ((r = child_resolve(prog, p)) == NULL)
		return 0;
	free(r);
	return 1;
}

static void
config_check_command(struct cctx *c, struct config *cfg, json_t *cmd, json_t *env)
{
	struct config_upstream *u = &cfg->upstream;
	const char *s, *key, *pathv;
	char path[64], q[128];
	json_t *v;
	size_t i, k;

	if (!json_is_array(cmd) || json_array_size(cmd) == 0) {
		config_err(c, "$.upstream.command", "must be a non-empty array of strings "
		    "[\"PROGRAM\", \"ARG\", ...]");
		return;
	}
	json_array_foreach(cmd, i, v) {
		snprintf(path, sizeof(path), "$.upstream.command[%zu]", i);
		if (!json_is_string(v) || (i == 0 && json_string_length(v) == 0) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			config_err(c, path, "must be a%s string without NUL",
			    i == 0 ? " non-empty" : "");
			return;
		}
		s = json_string_value(v);
		if (config_strv_push(c, &u->command, &u->ncommand, i == 0 && strchr(s,
		    '/') != NULL ?
		    config_resolve_path(c->dir, s) : strdup(s)) == -1)
			return;
	}
	if (env != NULL) {
		if (!json_is_object(env)) {
			config_err(c, "$.upstream.env", "must be an object of strings {\"NAME\": "
			    "\"VALUE\"}");
			return;
		}
		json_object_foreach(env, key, v) {
			char *kv, *pc;
			int bad;

			if ((pc = jsonpos_child("$.upstream.env", key)) == NULL) {
				c->oom = 1;
				return;
			}
			for (k = 0; key[k] && (isalnum((unsigned char)key[k]) || key[k] == '_'); k++)
				;
			bad = key[k] != '\0' || k == 0 || isdigit((unsigned char)key[0]);
			if (bad)
				config_err(c, pc, "%s is not an environment variable name",
				    config_quote(key, q, sizeof(q)));
			else if (!json_is_string(v) ||
			    strlen(json_string_value(v)) != json_string_length(v)) {
				config_err(c, pc, "must be a string without NUL");
				bad = 1;
			}
			free(pc);
			if (bad)
				continue;
			if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0) {
				c->oom = 1;
				return;
			}
			if (config_strv_push(c, &u->env, &u->nenv, kv) == -1)
				return;
		}
	}
	if ((c->flags & CONFIG_CHECK_FILES) && u->ncommand > 0) {
		s = u->command[0];
		if (strchr(s, '/') != NULL) {
			if (access(s, X_OK) != 0)
				config_err(c, "$.upstream.command[0]", "%s: %s",
				    config_quote(s, q, sizeof(q)),
				    strerror(errno));
		} else if (!config_command_found(u, s, &pathv))
			config_err(c, "$.upstream.command[0]",
			    "%s: no executable of that name in "
			    "PATH=%s", config_quote(s, q, sizeof(q)), pathv);
	}
}

/* upstream.url into u (url, tls, host, port, path), replacing what was there. */
static int
config_upstream_url(const char *url, struct config_upstream *u, const char **why)
{
	struct hostport_url h;
	char *copy;

	if (hostport_parse_url(url, &h, why) == -1)
		return -1;
	if ((copy = strdup(url)) == NULL) {
		hostport_url_free(&h);
		*why = "out of memory";
		return -1;
	}
	free(u->url);
	free(u->host);
	free(u->path);
	u->url = copy;
	u->host = h.host;
	u->path = h.path;
	u->port = h.port;
	u->tls = h.tls;
	return 0;
}

static void
config_check_upstream(struct cctx *c, struct config *cfg)
{
	static const char *const url_only[] = { "ca", "pool_size", "client_cert_header", NULL };
	static const char *const cmd_only[] = { "env", "max_processes", "idle_timeout_ms", NULL };
	json_t *v = json_object_get(c->root, "upstream"), *url, *cmd = NULL;
	const char *s, *why = "", *upath = "$.upstream.url";
	const char *const *k;
	char q[128], *p;

	if (v == NULL) {
		config_err(c, "$.upstream", "required field is missing");
		return;
	}
	if (json_is_string(v)) {
		url = v;
		upath = "$.upstream";
	} else if (json_is_object(v)) {
		config_walk(c, v, "$.upstream", f_upstream, cfg);
		url = json_object_get(v, "url");
		cmd = json_object_get(v, "command");
		if (url != NULL && cmd != NULL) {
			config_err(c, "$.upstream.command",
			    "\"url\" and \"command\" are mutually "
			    "exclusive: an HTTP upstream or a stdio MCP server, not both");
			return;
		}
		if (url == NULL && cmd == NULL) {
			config_err(c, upath,
			    "required field is missing (or \"command\" for a stdio "
			    "MCP server)");
			return;
		}
		/* keys that only mean something for the other kind of upstream */
		for (k = cmd != NULL ? url_only : cmd_only; *k != NULL; k++)
			if (json_object_get(v, *k) != NULL &&
			    (p = jsonpos_child("$.upstream", *k)) != NULL) {
				config_err(c, p, "only valid with \"%s\"",
				    cmd != NULL ? "url" : "command");
				free(p);
			}
		if (cmd != NULL) {
			config_check_command(c, cfg, cmd, json_object_get(v, "env"));
			return;
		}
	} else {
		config_err(c, "$.upstream", "must be a URL string or an object, not %s",
		    config_json_type(v));
		return;
	}
	if ((s = config_want_string(c, upath, url)) != NULL && config_upstream_url(s,
	    &cfg->upstream, &why) == -1)
		config_err(c, upath, "%s: %s", config_quote(s, q, sizeof(q)), why);
}

static void
config_check_pin_env(struct cctx *c, json_t *v, const char *path, char **dst)
{
	const char *s;
	char q[128];
	size_t i;

	if (v == NULL || (s = config_want_string(c, path, v)) == NULL)
		return;
	for (i = 0; s[i] && (isalnum((unsigned char)s[i]) || s[i] == '_'); i++)
		;
	if (s[i] || isdigit((unsigned char)s[0]))
		config_err(c, path, "%s is not an environment variable name",
		    config_quote(s, q, sizeof(q)));
	else
		config_set_str(c, dst, s);
}

/* "proxy_protocol.trusted": a list of address ranges (cidr.h). */
static void
config_check_proxy_protocol(struct cctx *c, struct config *cfg)
{
	json_t *v = config_jget(c->root, "proxy_protocol", "trusted"), *e;
	const char *s, *why;
	char path[64], q[128];
	size_t i;

	if (v == NULL)
		return;
	if (!json_is_array(v) || json_array_size(v) == 0) {
		config_err(c, "$.proxy_protocol.trusted",
		    "must be a non-empty list of addresses or "
		    "CIDR ranges, not %s",
		    json_is_array(v) ? "an empty list" : config_json_type(v));
		return;
	}
	if ((cfg->proxy_protocol.trusted = calloc(json_array_size(v),
	    sizeof(*cfg->proxy_protocol.trusted))) == NULL) {
		c->oom = 1;
		return;
	}
	json_array_foreach(v, i, e) {
		snprintf(path, sizeof(path), "$.proxy_protocol.trusted[%zu]", i);
		if ((s = config_want_string(c, path, e)) == NULL)
			continue;
		if (cidr_parse(s, &cfg->proxy_protocol.trusted[cfg->proxy_protocol.ntrusted],
		    &why) == -1) {
			config_err(c, path, "%s: %s", config_quote(s, q, sizeof(q)), why);
			continue;
		}
		cfg->proxy_protocol.ntrusted++;
	}
}

/* "cluster.redis": redis://HOST[:PORT][/DB] (hostport.h). */
static void
config_check_cluster(struct cctx *c, struct config *cfg)
{
	json_t *v = config_jget(c->root, "cluster", "redis");
	const char *s, *why = NULL;
	char q[128];
	uint16_t port;

	if (v == NULL || (s = config_want_string(c, "$.cluster.redis", v)) == NULL)
		return;
	if (hostport_parse_redis(s, &cfg->cluster.redis_host, &port, &cfg->cluster.redis_db,
	    &why) == -1) {
		if (strcmp(why, "out of memory") == 0)
			c->oom = 1;
		else
			config_err(c, "$.cluster.redis", "%s: %s", config_quote(s, q,
			    sizeof(q)), why);
		return;
	}
	cfg->cluster.redis_port = port;
	config_set_str(c, &cfg->cluster.redis, s);
	config_check_pin_env(c, config_jget(c->root, "cluster", "password_env"),
	    "$.cluster.password_env", &cfg->cluster.password_env);
	if (config_jget(c->root, "cluster", "password_env") != NULL &&
	    config_jget(c->root, "cluster", "password_file") != NULL)
		config_err(c, "$.cluster.password_env",
		    "set cluster.password_file or cluster.password_env, not both");
}

static void
config_check_simple_specials(struct cctx *c, struct config *cfg)
{
	json_t *v;
	const char *s;
	char q[128];
	size_t i;

	if ((v = config_jget(c->root, "tls", "min_version")) != NULL &&
	    (s = config_want_string(c, "$.tls.min_version", v)) != NULL) {
		if (strcmp(s, "1.2") == 0)
			cfg->tls.min_version = TLS1_2_VERSION;
		else if (strcmp(s, "1.3") == 0)
			cfg->tls.min_version = TLS1_3_VERSION;
		else
			config_err(c, "$.tls.min_version", "must be \"1.2\" or \"1.3\", not %s",
			    config_quote(s, q, sizeof(q)));
	}
	if ((v = config_jget(c->root, "audit", "file")) != NULL &&
	    (s = config_want_string(c, "$.audit.file", v)) != NULL && strcmp(s, "-") != 0)
		config_set_path(c, &cfg->audit_file, s);
	if ((v = config_jget(c->root, "audit", "on_failure")) != NULL &&
	    (s = config_want_string(c, "$.audit.on_failure", v)) != NULL) {
		if (strcmp(s, "refuse") == 0)
			cfg->audit_fail_open = 0;
		else if (strcmp(s, "serve") == 0)
			cfg->audit_fail_open = 1;
		else
			config_err(c, "$.audit.on_failure",
			    "must be \"refuse\" or \"serve\", not %s",
			    config_quote(s, q, sizeof(q)));
	}
	if ((v = config_jget(c->root, "upstream", "client_cert_header")) != NULL &&
	    (s = config_want_string(c, "$.upstream.client_cert_header", v)) != NULL) {
		cfg->upstream.client_cert_xfcc = strcmp(s, "xfcc") == 0 || strcmp(s, "both") == 0;
		cfg->upstream.client_cert_rfc9440 = strcmp(s, "rfc9440") == 0 ||
		    strcmp(s, "both") == 0;
		if (!cfg->upstream.client_cert_xfcc && !cfg->upstream.client_cert_rfc9440)
			config_err(c, "$.upstream.client_cert_header",
			    "must be \"xfcc\", \"rfc9440\" "
			    "or \"both\", not %s", config_quote(s, q, sizeof(q)));
	}
	if ((v = config_jget(config_jget(c->root, "tls", "ocsp"), "mode", NULL)) != NULL &&
	    (s = config_want_string(c, "$.tls.ocsp.mode", v)) != NULL) {
		if (strcmp(s, "off") == 0)
			cfg->tls.ocsp_mode = CONFIG_OCSP_OFF;
		else if (strcmp(s, "soft") == 0)
			cfg->tls.ocsp_mode = CONFIG_OCSP_SOFT;
		else if (strcmp(s, "hard") == 0)
			cfg->tls.ocsp_mode = CONFIG_OCSP_HARD;
		else
			config_err(c, "$.tls.ocsp.mode",
			    "must be \"off\", \"soft\" or \"hard\", not %s",
			    config_quote(s, q, sizeof(q)));
	}
	config_check_pin_env(c, config_jget(c->root, "pkcs11", "pin_env"), "$.pkcs11.pin_env",
	    &cfg->pkcs11.pin_env);
	if ((v = config_jget(c->root, "ca", "pkcs11")) != NULL && json_is_object(v)) {
		cfg->ca.has_pkcs11 = 1;
		config_check_pin_env(c, json_object_get(v, "pin_env"), "$.ca.pkcs11.pin_env",
		    &cfg->ca.pkcs11.pin_env);
	}
	if ((v = config_jget(c->root, "ca", "service")) != NULL &&
	    (s = config_want_string(c, "$.ca.service", v)) != NULL) {
		if (strcmp(s, "spawn") == 0)
			cfg->ca.service_external = 0;
		else if (strcmp(s, "external") == 0)
			cfg->ca.service_external = 1;
		else
			config_err(c, "$.ca.service", "must be \"spawn\" or \"external\", not %s",
			    config_quote(s, q, sizeof(q)));
	}
	if ((v = config_jget(c->root, "ca", "ocsp_url")) != NULL &&
	    (s = config_want_string(c, "$.ca.ocsp_url", v)) != NULL) {
		/* It goes into an X509V3 config string: no separators, no spaces. */
		for (i = 0; s[i] && s[i] > 0x20 && s[i] < 0x7f && !strchr(",\"\\", s[i]); i++)
			;
		if ((strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
		    s[i] || i > 1000)
			config_err(c, "$.ca.ocsp_url",
			    "%s is not an http:// or https:// URL (printable, "
			    "no spaces, commas, quotes or backslashes, at most 1000 bytes)",
			    config_quote(s, q, sizeof(q)));
		else
			config_set_str(c, &cfg->ca.ocsp_url, s);
	}
	if ((v = config_jget(c->root, "ca", "trust_domain")) != NULL &&
	    (s = config_want_string(c, "$.ca.trust_domain", v)) != NULL) {
		/* SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' */
		for (i = 0; s[i] && (islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		    s[i] == '.' || s[i] == '-' || s[i] == '_'); i++)
			;
		if (s[i] || i > 255)
			config_err(c, "$.ca.trust_domain", "%s is not a SPIFFE trust domain "
			    "(lowercase letters, digits, '.', '-', '_')", config_quote(s, q,
			    sizeof(q)));
		else
			config_set_str(c, &cfg->ca.trust_domain, s);
	}
}

/* stat + access: a message fragment on failure, NULL when readable. */
static const char *
config_unreadable(const char *file)
{
	struct stat st;

	if (stat(file, &st) == -1 || access(file, R_OK) == -1)
		return strerror(errno);
	if (S_ISDIR(st.st_mode))
		return "is a directory";
	return NULL;
}

static void
config_check_file(struct cctx *c, const char *path, const char *file)
{
	const char *why;

	if (file && (c->flags & CONFIG_CHECK_FILES) && (why = config_unreadable(file)) != NULL)
		config_err(c, path, "cannot read %s: %s", file, why);
}

/* tls.key: a pkcs11: URI (with what the token needs to be found) or a PEM file. */
static void
config_check_tls_key(struct cctx *c, struct config *cfg)
{
	json_t *v = config_jget(c->root, "tls", "key");
	struct p11_uri u;
	const char *s, *why;
	int has_module, has_token, has_pin;

	if (v == NULL) {
		if (json_is_object(json_object_get(c->root, "tls")))
			config_err(c, "$.tls.key", "required field is missing");
		return;
	}
	if ((s = config_want_string(c, "$.tls.key", v)) == NULL)
		return;
	if (!config_is_pkcs11(s)) {
		if (config_set_path(c, &cfg->tls.key,
		    s) == 0 && (c->flags & CONFIG_CHECK_FILES) &&
		    (why = config_unreadable(cfg->tls.key)) != NULL)
			config_err(c, "$.tls.key",
			    "not a pkcs11: URI or readable PEM file (%s: %s)",
			    cfg->tls.key, why);
		return;
	}
	if (config_set_str(c, &cfg->tls.key, s) == -1)
		return;
	memset(&u, 0, sizeof(u));
	if (config_check_uri(c, "$.tls.key", s, &u) == -1) {
		p11_uri_free(&u);
		return;
	}
	has_module = config_jget(c->root, "pkcs11", "module") || u.module_path;
	has_token = config_jget(c->root, "pkcs11", "token") || u.token;
	has_pin = config_jget(c->root, "pkcs11", "pin_file") || config_jget(c->root,
	    "pkcs11", "pin_env") ||
	    u.pin_source || u.pin_value;
	p11_uri_free(&u);
	if (!has_module)
		config_err(c, "$.pkcs11.module", "required: tls.key is a pkcs11: URI without "
		    "module-path");
	if (!has_token)
		config_err(c, "$.pkcs11.token",
		    "required: tls.key is a pkcs11: URI without token=");
	if (!has_pin)
		config_err(c, "$.pkcs11.pin_file",
		    "pin_file or pin_env is required for a pkcs11: "
		    "key (or pin-source in the URI)");
}

static void
config_check_ca_key(struct cctx *c, struct config *cfg)
{
	json_t *v = config_jget(c->root, "ca", "key");
	struct p11_uri u;
	const char *s;
	char q[128];

	if (v == NULL || (s = config_want_string(c, "$.ca.key", v)) == NULL)
		return;
	if (!config_is_pkcs11(s)) {
		/* The CA key never leaves the token. */
		config_err(c, "$.ca.key", "must be a pkcs11: URI, not %s", config_quote(s,
		    q, sizeof(q)));
		return;
	}
	memset(&u, 0, sizeof(u));
	if (config_check_uri(c, "$.ca.key", s, &u) == 0) {
		config_set_str(c, &cfg->ca.key, s);
		/* With its own section the CA token never borrows the gateway's PIN. */
		if (json_is_object(config_jget(c->root, "ca",
		    "pkcs11")) && u.pin_source == NULL &&
		    u.pin_value == NULL && config_jget(config_jget(c->root, "ca", "pkcs11"),
		    "pin_file", NULL) == NULL &&
		    config_jget(config_jget(c->root, "ca", "pkcs11"), "pin_env", NULL) == NULL)
			config_err(c, "$.ca.pkcs11",
			    "pin_file or pin_env is required for the CA token "
			    "(or pin-source in ca.key)");
	}
	p11_uri_free(&u);
}

static void
config_check_required(struct cctx *c)
{
	json_t *tls = json_object_get(c->root, "tls"), *chk;

	if (json_object_get(c->root, "identity_map") == NULL)
		config_err(c, "$.identity_map", "required field is missing");
	if (tls == NULL) {
		config_err(c, "$.tls", "required field is missing");
		return;
	}
	if (!json_is_object(tls))
		return;
	if (json_object_get(tls, "cert") == NULL)
		config_err(c, "$.tls.cert", "required field is missing");
	if (json_object_get(tls, "ca") == NULL)
		config_err(c, "$.tls.ca", "required field is missing: client certificates (mTLS) "
		    "are verified against it");
	chk = json_object_get(tls, "crl_check");
	if ((chk == NULL || json_is_true(chk)) && json_object_get(tls, "crl") == NULL)
		config_err(c, "$.tls.crl", "required when crl_check is true "
		    "(set \"crl_check\": false to run without revocation checks)");
}

static void
config_check_files(struct cctx *c, struct config *cfg)
{
	config_check_file(c, "$.tls.cert", cfg->tls.cert);
	config_check_file(c, "$.tls.ca", cfg->tls.ca);
	if (cfg->tls.crl_check)
		config_check_file(c, "$.tls.crl", cfg->tls.crl);
	config_check_file(c, "$.identity_map", cfg->identity_map);
	config_check_file(c, "$.pkcs11.module", cfg->pkcs11.module);
	config_check_file(c, "$.pkcs11.pin_file", cfg->pkcs11.pin_file);
	config_check_file(c, "$.pkcs11.softhsm2_conf", cfg->pkcs11.softhsm2_conf);
	config_check_file(c, "$.upstream.ca", cfg->upstream.ca);
}

/* ca.* paths default to the layout scripts/pki-init creates, so the ca commands
 * work with a minimal file; ca.crl follows tls.crl when only that is given. */
static void
config_check_ca_defaults(struct cctx *c, struct config *cfg)
{
	static const struct { size_t off; const char *rel; } d[] = {
		{ offsetof(struct config, ca.cert), "ca/ca.pem" },
		{ offsetof(struct config, ca.db), "ca/index.txt" },
		{ offsetof(struct config, ca.certs_dir), "ca/certs" },
		{ offsetof(struct config, ca.crl), "ca/crl.pem" },
		{ offsetof(struct config, ca.agents_dir), "agents" },
		{ offsetof(struct config, ca.audit), "ca-audit.jsonl" },
		{ offsetof(struct config, ca.tokens_dir), "ca/tokens" },
		{ offsetof(struct config, ca.socket), "ca/ca.sock" },
	};
	char **dst;
	size_t i;

	if (cfg->ca.crl == NULL && cfg->tls.crl != NULL && config_jget(c->root, "ca",
	    "crl") == NULL)
		config_set_str(c, &cfg->ca.crl, cfg->tls.crl);
	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		dst = (char **)((char *)cfg + d[i].off);
		if (*dst == NULL)
			config_set_path(c, dst, d[i].rel);
	}
}

void
config_tls_p11(const struct config *cfg, struct p11_defaults *d)
{
	memset(d, 0, sizeof(*d));
	d->module = cfg->pkcs11.module;
	d->token = cfg->pkcs11.token;
	d->pin_file = cfg->pkcs11.pin_file;
	d->pin_env = cfg->pkcs11.pin_env;
	d->softhsm2_conf = cfg->pkcs11.softhsm2_conf;
}

void
config_ca_p11(const struct config *cfg, struct p11_defaults *d)
{
	const struct config_pkcs11 *ca = &cfg->ca.pkcs11;

	config_tls_p11(cfg, d);
	if (!cfg->ca.has_pkcs11)
		return;
	if (ca->module != NULL)
		d->module = ca->module;
	if (ca->token != NULL)
		d->token = ca->token;
	if (ca->softhsm2_conf != NULL)
		d->softhsm2_conf = ca->softhsm2_conf;
	/* The CA token's PIN is never the gateway's. */
	d->pin_file = ca->pin_file;
	d->pin_env = ca->pin_env;
}

/* tls.key and ca.key in one token means code running in the gateway (which parses
 * network input) could sign certificates with the CA key. */
static void
config_check_shared_token(struct cctx *c, struct config *cfg)
{
	struct p11_defaults dt, dc;
	struct p11_uri ut, uc;
	const char *lt, *lc, *mt, *mc;

	if (cfg->tls.key == NULL || cfg->ca.key == NULL || !config_is_pkcs11(cfg->tls.key) ||
	    cfg->tls.allow_shared_token)
		return;
	memset(&ut, 0, sizeof(ut));
	memset(&uc, 0, sizeof(uc));
	if (p11_uri_parse(cfg->tls.key, &ut, NULL, 0) == -1 ||
	    p11_uri_parse(cfg->ca.key, &uc, NULL, 0) == -1)
		goto out;	/* reported by config_check_tls_key / config_check_ca_key */
	config_tls_p11(cfg, &dt);
	config_ca_p11(cfg, &dc);
	lt = ut.token ? ut.token : dt.token;
	lc = uc.token ? uc.token : dc.token;
	mt = ut.module_path ? ut.module_path : dt.module;
	mc = uc.module_path ? uc.module_path : dc.module;
	if (lt == NULL || lc == NULL || strcmp(lt, lc) != 0)
		goto out;
	if ((mt == NULL) != (mc == NULL) || (mt != NULL && strcmp(mt, mc) != 0))
		goto out;
	if (ut.serial != NULL && uc.serial != NULL && strcmp(ut.serial, uc.serial) != 0)
		goto out;
	config_err(c, "$.ca.key", "the CA key (ca.key) is in the same token as the server key "
	    "(tls.key), token \"%s\": code running in the gateway could sign certificates. "
	    "Give the CA key its own token (scripts/pki-init creates two; re-create an old "
	    "PKI with --force) or accept the risk with \"tls\": {\"allow_shared_token\": true}",
	    lt);
out:
	p11_uri_free(&ut);
	p11_uri_free(&uc);
}

static int
config_defaults(struct config *cfg)
{
	cfg->listen_port = 8443;
	cfg->workers = 0;
	cfg->cluster.session_ttl_s = 86400;
	cfg->cluster.timeout_ms = 200;
	cfg->cluster.ticket_rotate_s = 3600;
	cfg->upstream.pool_size = 16;
	cfg->upstream.max_processes = 32;
	cfg->upstream.idle_timeout_ms = 300000;
	cfg->tls.crl_check = 1;
	cfg->tls.allow_extractable_key = 0;
	cfg->tls.session_tickets = 1;
	cfg->tls.min_version = TLS1_2_VERSION;
	cfg->tls.ocsp_cache_s = 300;
	cfg->tls.ocsp_timeout_ms = 2000;
	cfg->upstream.client_cert_xfcc = 1;
	cfg->ca.crl_hours = 168;
	cfg->ca.default_hours = 24;
	cfg->ca.server_days = 365;
	cfg->ca.ca_days = 3650;
	cfg->ca.renew_per_hour = 60;
	cfg->ca.renew_burst = 10;
	cfg->limits.handshake_timeout_ms = 10000;
	cfg->limits.header_timeout_ms = 10000;
	cfg->limits.body_timeout_ms = 30000;
	cfg->limits.idle_timeout_ms = 60000;
	cfg->limits.upstream_connect_timeout_ms = 5000;
	cfg->limits.upstream_response_timeout_ms = 60000;
	cfg->limits.stream_idle_timeout_ms = 300000;
	cfg->limits.grace_ms = 10000;
	cfg->limits.max_connections = 0;   /* not set: the descriptor budget decides (daemon.c) */
	cfg->limits.max_connections_per_ip = 1000;
	cfg->limits.max_header_bytes = 16384;
	cfg->limits.max_header_count = 100;
	cfg->limits.max_body_bytes = 4L * 1024 * 1024;
	cfg->signer.async = 1;
	cfg->signer.threads = 8;
	cfg->signer.queue = 256;
	cfg->signer.timeout_ms = 5000;
	cfg->audit_fail_open = 0;
	cfg->rate_per_second = 50;
	cfg->rate_burst = 100;
	cfg->hsts_max_age = 31536000;
	if ((cfg->listen_host = strdup("127.0.0.1")) == NULL ||
	    (cfg->ca.trust_domain = strdup("certgate.local")) == NULL)
		return -1;
	return 0;
}

/* jansson's parse error, with the duplicated key's path when that is the error. */
static void
config_json_error(struct cctx *c, const char *text, size_t len, const json_error_t *je,
    struct strlist *errs)
{
	const char *dp;

	if (strncmp(je->text, "duplicate object key", 20) == 0) {
		(void)jsonpos_build(text, len, &c->lm);
		if ((dp = jsonpos_duplicate(c->lm, je->line)) != NULL) {
			if (errs)
				strlist_addf(errs, "%s:%d: %s: duplicate key", c->name,
				    je->line > 0 ? je->line : 0, dp);
			return;
		}
	}
	if (errs)
		strlist_addf(errs, "%s:%d: $: invalid JSON: %s (column %d)", c->name,
		    je->line > 0 ? je->line : 0, je->text, je->column);
}

int
config_parse(const char *text, size_t len, const char *name, const char *dir, int flags,
    struct config **out, struct strlist *errs)
{
	struct cctx c = { .name = name ? name : "(config)", .flags = flags };
	struct config *cfg = NULL;
	char cwd[PATH_MAX];
	json_error_t je;
	int rc = -1;

	*out = NULL;
	if (dir == NULL)
		dir = getcwd(cwd, sizeof(cwd)) ? cwd : ".";
	c.dir = dir;
	c.root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (c.root == NULL) {
		config_json_error(&c, text, len, &je, errs);
		goto fail;
	}
	(void)jsonpos_build(text, len, &c.lm);
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || config_defaults(cfg) == -1 ||
	    (cfg->path = strdup(c.name)) == NULL || (cfg->dir = strdup(dir)) == NULL) {
		c.oom = 1;
		config_err_flush(&c, errs);
		goto fail;
	}
	if (!json_is_object(c.root)) {
		config_err(&c, "$", "the configuration must be a JSON object, not %s",
		    config_json_type(c.root));
		config_err_flush(&c, errs);
		goto fail;
	}
	config_walk(&c, c.root, "$", f_top, cfg);
	config_check_listen(&c, cfg);
	config_check_upstream(&c, cfg);
	config_check_simple_specials(&c, cfg);
	config_check_proxy_protocol(&c, cfg);
	config_check_cluster(&c, cfg);
	config_check_tls_key(&c, cfg);
	config_check_ca_key(&c, cfg);
	config_check_required(&c);
	config_check_files(&c, cfg);
	config_check_ca_defaults(&c, cfg);
	if (flags & CONFIG_GATEWAY)
		config_check_shared_token(&c, cfg);
	if (c.ne == 0 && !c.oom) {
		*out = cfg;
		cfg = NULL;
		rc = 0;
	}
	config_err_flush(&c, errs);
fail:
	config_free(cfg);
	json_decref(c.root);
	jsonpos_free(c.lm);
	return rc;
}

/* Absolute directory of path (symlinks in the directory part resolved). */
static char *
config_dir_of(const char *path)
{
	char *copy, *slash, *dir;

	if ((copy = strdup(path)) == NULL)
		return NULL;
	slash = strrchr(copy, '/');
	if (slash == copy)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	dir = realpath(slash ? copy : ".", NULL);
	free(copy);
	return dir;
}

int
config_load(const char *path, int flags, struct config **out, struct strlist *errs)
{
	struct stat st;
	char *text = NULL, *dir = NULL, *abs;
	ssize_t r;
	size_t off = 0;
	int fd = -1, rc = -1;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		if (errs)
			strlist_addf(errs, "%s:0: $: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES) {
		if (errs)
			strlist_addf(errs, "%s:0: $: %s", path, S_ISREG(st.st_mode) ?
			    "file too large (limit 1 MiB)" : "not a regular file");
		goto fail;
	}
	if ((text = malloc((size_t)st.st_size + 1)) == NULL)
		goto oom;
	while (off < (size_t)st.st_size) {
		r = read(fd, text + off, (size_t)st.st_size - off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (errs)
				strlist_addf(errs, "%s:0: $: read: %s", path,
				    r == 0 ? "file shrank while reading" : strerror(errno));
			goto fail;
		}
		off += (size_t)r;
	}
	if ((dir = config_dir_of(path)) == NULL) {
		if (errs)
			strlist_addf(errs, "%s:0: $: cannot resolve directory: %s", path,
			    strerror(errno));
		goto fail;
	}
	rc = config_parse(text, off, path, dir, flags, out, errs);
	/* Keep an absolute path for reloads, whatever the working directory becomes. */
	if (rc == 0 && (abs = realpath(path, NULL)) != NULL) {
		free((*out)->path);
		(*out)->path = abs;
	}
	goto done;
oom:
	if (errs)
		strlist_addf(errs, "%s:0: $: out of memory", path);
fail:
	rc = -1;
done:
	if (fd != -1)
		close(fd);
	free(text);
	free(dir);
	return rc;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->dir);
	free(cfg->listen_host);
	free(cfg->admin_host);
	free(cfg->upstream.url);
	free(cfg->upstream.host);
	free(cfg->upstream.path);
	free(cfg->upstream.ca);
	for (size_t i = 0; i < cfg->upstream.ncommand; i++)
		free(cfg->upstream.command[i]);
	free(cfg->upstream.command);
	for (size_t i = 0; i < cfg->upstream.nenv; i++)
		free(cfg->upstream.env[i]);
	free(cfg->upstream.env);
	free(cfg->proxy_protocol.trusted);
	free(cfg->pkcs11.module);
	free(cfg->pkcs11.token);
	free(cfg->pkcs11.pin_file);
	free(cfg->pkcs11.pin_env);
	free(cfg->pkcs11.softhsm2_conf);
	free(cfg->tls.cert);
	free(cfg->tls.key);
	free(cfg->tls.ca);
	free(cfg->tls.crl);
	free(cfg->ca.key);
	free(cfg->ca.cert);
	free(cfg->ca.db);
	free(cfg->ca.certs_dir);
	free(cfg->ca.crl);
	free(cfg->ca.agents_dir);
	free(cfg->ca.audit);
	free(cfg->ca.trust_domain);
	free(cfg->ca.pkcs11.module);
	free(cfg->ca.pkcs11.token);
	free(cfg->ca.pkcs11.pin_file);
	free(cfg->ca.pkcs11.pin_env);
	free(cfg->ca.pkcs11.softhsm2_conf);
	free(cfg->ca.tokens_dir);
	free(cfg->ca.socket);
	free(cfg->ca.ocsp_url);
	free(cfg->enroll.listen_host);
	free(cfg->cluster.redis);
	free(cfg->cluster.redis_host);
	free(cfg->cluster.name);
	free(cfg->cluster.user);
	free(cfg->cluster.password_file);
	free(cfg->cluster.password_env);
	free(cfg->identity_map);
	free(cfg->audit_file);
	free(cfg);
}
