/* PKCS#11 URIs (RFC 7512): parsing with strict attribute rules, and redaction for
 * logs (p11.h). Pure: no PKCS#11 calls, no I/O. */
#include "p11.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

/* ------------------------------------------------------------------------- */
/* URIs */

static const char *const p11_attr_names[] = {
	"token", "manufacturer", "serial", "model", "object", "type", "id",
	"slot-id", "pin-source", "pin-value", "module-path", "module-name",
};

/* Decodes n bytes of s into a malloc'd buffer (NUL-terminated, *outlen bytes).
 * Returns 0, or -1 on bad encoding or allocation failure. */
static int
p11_pct_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
	unsigned char *b;
	size_t i, o = 0;
	int hi, lo;

	if ((b = malloc(n + 1)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] != '%') {
			b[o++] = (unsigned char)s[i];
			continue;
		}
		if (i + 2 >= n)
			goto bad;
		hi = text_hexval((unsigned char)s[i + 1]);
		lo = text_hexval((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0)
			goto bad;
		b[o++] = (unsigned char)(hi << 4 | lo);
		i += 2;
	}
	b[o] = '\0';
	*out = b;
	*outlen = o;
	return 0;
bad:
	OPENSSL_cleanse(b, n + 1);
	free(b);
	return -1;
}

int
p11_is_uri(const char *s)
{
	return s != NULL && strncasecmp(s, "pkcs11:", 7) == 0;
}

static char **
p11_uri_field(struct p11_uri *u, const char *name)
{
	if (strcmp(name, "token") == 0)
		return &u->token;
	if (strcmp(name, "manufacturer") == 0)
		return &u->manufacturer;
	if (strcmp(name, "serial") == 0)
		return &u->serial;
	if (strcmp(name, "model") == 0)
		return &u->model;
	if (strcmp(name, "object") == 0)
		return &u->object;
	if (strcmp(name, "type") == 0)
		return &u->type;
	if (strcmp(name, "module-path") == 0)
		return &u->module_path;
	if (strcmp(name, "module-name") == 0)
		return &u->module_name;
	if (strcmp(name, "pin-source") == 0)
		return &u->pin_source;
	if (strcmp(name, "pin-value") == 0)
		return &u->pin_value;
	return NULL;
}

/* Stores one decoded attribute value (takes ownership of val). */
static int
p11_uri_set(struct p11_uri *u, const char *name, unsigned char *val, size_t len,
    char *err, size_t errlen)
{
	char **field, *end;
	unsigned long sid;

	if (strcmp(name, "id") == 0) {
		u->id = val;
		u->id_len = len;
		return 0;
	}
	/* Every other attribute is text: an embedded NUL would silently truncate. */
	if (memchr(val, '\0', len) != NULL) {
		snprintf(err, errlen, "attribute '%s' contains a NUL byte", name);
		goto fail;
	}
	if (strcmp(name, "slot-id") == 0) {
		errno = 0;
		sid = strtoul((char *)val, &end, 10);
		if (len == 0 || *end != '\0' || errno != 0 || sid > LONG_MAX ||
		    !isdigit(val[0])) {
			snprintf(err, errlen, "attribute 'slot-id' is not a decimal number");
			goto fail;
		}
		u->slot_id = (long)sid;
		free(val);
		return 0;
	}
	if (strcmp(name, "type") == 0 && strcmp((char *)val, "private") != 0 &&
	    strcmp((char *)val, "public") != 0 && strcmp((char *)val, "cert") != 0 &&
	    strcmp((char *)val, "secret-key") != 0 && strcmp((char *)val, "data") != 0) {
		snprintf(err, errlen, "attribute 'type' has unsupported value '%s' "
		    "(private, public, cert, secret-key or data)", (char *)val);
		goto fail;
	}
	field = p11_uri_field(u, name);
	*field = (char *)val;
	return 0;
fail:
	OPENSSL_cleanse(val, len);
	free(val);
	return -1;
}

/* Parses one "name=value" segment of length n; seen is a bitmask over
 * p11_attr_names to catch duplicates. */
static int
p11_uri_attr(struct p11_uri *u, const char *seg, size_t n, unsigned int *seen,
    char *err, size_t errlen)
{
	const char *eq;
	char name[32];
	unsigned char *val;
	size_t nlen, vlen, i;

	eq = memchr(seg, '=', n);
	nlen = eq ? (size_t)(eq - seg) : n;
	/* Longer names are unknown anyway; the copy only feeds the message. */
	i = nlen < sizeof(name) ? nlen : sizeof(name) - 1;
	memcpy(name, seg, i);
	name[i] = '\0';
	for (i = 0; name[i] != '\0'; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	for (i = 0; i < sizeof(p11_attr_names) / sizeof(p11_attr_names[0]); i++)
		if (strcmp(name, p11_attr_names[i]) == 0)
			break;
	if (i == sizeof(p11_attr_names) / sizeof(p11_attr_names[0])) {
		/* Only the name is echoed: values, PINs included, sit after '='. */
		snprintf(err, errlen, "unknown attribute '%s'", name);
		return -1;
	}
	if (eq == NULL) {
		snprintf(err, errlen, "attribute '%s' has no value ('=' missing)", name);
		return -1;
	}
	if (*seen & (1u << i)) {
		snprintf(err, errlen, "duplicate attribute '%s'", name);
		return -1;
	}
	*seen |= 1u << i;
	if (p11_pct_decode(eq + 1, n - nlen - 1, &val, &vlen) == -1) {
		snprintf(err, errlen, "attribute '%s' has bad percent-encoding", name);
		return -1;
	}
	return p11_uri_set(u, name, val, vlen, err, errlen);
}

int
p11_uri_parse(const char *s, struct p11_uri *u, char *err, size_t errlen)
{
	const char *p, *end, *q;
	unsigned int seen = 0;
	char sep;

	memset(u, 0, sizeof(*u));
	u->slot_id = -1;
	if (errlen > 0)
		err[0] = '\0';
	if (s == NULL || !p11_is_uri(s)) {
		snprintf(err, errlen, "not a PKCS#11 URI (must start with 'pkcs11:')");
		return -1;
	}
	p = s + 7;
	q = strchr(p, '?');
	sep = ';';
	while (*p != '\0') {
		if (q != NULL && p == q) {
			/* Path ends; query attributes are '&'-separated. */
			sep = '&';
			p++;
			continue;
		}
		end = p;
		while (*end != '\0' && *end != sep && !(sep == ';' && *end == '?'))
			end++;
		if (end > p && p11_uri_attr(u, p, (size_t)(end - p), &seen, err,
		    errlen) == -1)
			return -1;
		p = *end == sep ? end + 1 : end;
	}
	return 0;
}

void
p11_uri_free(struct p11_uri *u)
{
	if (u == NULL)
		return;
	if (u->pin_value != NULL) {
		OPENSSL_cleanse(u->pin_value, strlen(u->pin_value));
		free(u->pin_value);
	}
	free(u->token);
	free(u->manufacturer);
	free(u->serial);
	free(u->model);
	free(u->object);
	free(u->type);
	free(u->id);
	free(u->module_path);
	free(u->module_name);
	free(u->pin_source);
	memset(u, 0, sizeof(*u));
	u->slot_id = -1;
}

char *
p11_uri_redact(const char *uri)
{
	const char *p, *end;
	char *out, *o;
	size_t n;

	if (uri == NULL)
		return strdup("(null)");
	n = strlen(uri);
	/* A segment of at least 10 bytes becomes at most 13: 2n + 4 always fits. */
	if ((out = malloc(2 * n + 4)) == NULL)
		return NULL;
	o = out;
	p = uri;
	if (p11_is_uri(uri)) {
		memcpy(o, uri, 7);
		o += 7;
		p += 7;
	}
	while (*p != '\0') {
		end = p;
		while (*end != '\0' && *end != ';' && *end != '?' && *end != '&')
			end++;
		if ((size_t)(end - p) >= 10 && strncasecmp(p, "pin-value=", 10) == 0) {
			memcpy(o, p, 10);
			memcpy(o + 10, "***", 3);
			o += 13;
		} else {
			memcpy(o, p, (size_t)(end - p));
			o += end - p;
		}
		if (*end != '\0')
			*o++ = *end++;
		p = end;
	}
	*o = '\0';
	return out;
}
