/* Lexical path handling (path.h). */
#include "path.h"

#include <string.h>

#include "text.h"

long
path_remove_dots(const char *in, size_t n, char *out, size_t outlen)
{
	size_t i = 0, o = 0, seg;

	if (n == 0 || in[0] != '/' || outlen < n + 1)
		return -1;
	/* Output is never longer than input, so writes below stay in bounds. */
	while (i < n) {
		/* in[i] is '/': look at the segment that follows it */
		for (seg = i + 1; seg < n && in[seg] != '/'; seg++)
			;
		seg -= i + 1;                   /* segment length */
		if (seg == 1 && in[i + 1] == '.') {
			i += 2;                 /* "/." : drop, keep the '/' that follows */
			if (i >= n)
				out[o++] = '/';
			continue;
		}
		if (seg == 2 && in[i + 1] == '.' && in[i + 2] == '.') {
			while (o > 0 && out[--o] != '/')
				;               /* drop the last output segment */
			i += 3;
			if (i >= n)
				out[o++] = '/';
			continue;
		}
		memcpy(out + o, in + i, seg + 1);
		o += seg + 1;
		i += seg + 1;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return (long)o;
}

int
path_target_normalize(const char *target, char *out, size_t outlen, const char **why)
{
	const char *q, *p;
	size_t plen;
	long n;
	int hi, lo, v;

	*why = NULL;
	if (target[0] != '/') {
		*why = "request target must be a path";
		return -1;
	}
	q = strchr(target, '?');
	plen = q != NULL ? (size_t)(q - target) : strlen(target);
	if (strchr(target, '#') != NULL) {
		*why = "fragment in request target";
		return -1;
	}
	for (p = target; p < target + plen; p++) {
		if (*p == '\\') {
			*why = "backslash in request path";
			return -1;
		}
		if (*p == '/' && p + 1 < target + plen && p[1] == '/') {
			*why = "empty segment in request path";
			return -1;
		}
		if (*p != '%')
			continue;
		if ((size_t)(target + plen - p) < 3) {
			*why = "malformed percent-encoding in request path";
			return -1;
		}
		hi = text_hexval((unsigned char)p[1]);
		lo = text_hexval((unsigned char)p[2]);
		if (hi < 0 || lo < 0) {
			*why = "malformed percent-encoding in request path";
			return -1;
		}
		v = hi * 16 + lo;
		if (v == '/' || v == '\\' || v == '.' || v == 0) {
			*why = "encoded '/', '\\', '.' or NUL in request path";
			return -1;
		}
		p += 2;
	}
	if (outlen < strlen(target) + 1)
		goto small;
	if ((n = path_remove_dots(target, plen, out, outlen)) < 0)
		goto small;
	if (q != NULL) {
		if ((size_t)n + strlen(q) + 1 > outlen)
			goto small;
		memcpy(out + n, q, strlen(q) + 1);
	}
	return 0;
small:
	*why = "request target too long";
	return -1;
}

long
path_under_prefix(const char *prefix, const char *target, char *out, size_t outlen)
{
	size_t n = prefix != NULL ? strlen(prefix) : 0, tl = strlen(target);

	while (n > 0 && prefix[n - 1] == '/')
		n--;
	if (n > 0 && strncmp(target, prefix, n) == 0 &&
	    (target[n] == '\0' || target[n] == '/' || target[n] == '?'))
		n = 0;          /* already under the prefix */
	if (n + tl + 1 > outlen)
		return -1;
	memcpy(out, prefix != NULL ? prefix : "", n);
	memcpy(out + n, target, tl + 1);
	return (long)(n + tl);
}

int
path_is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 0 && dir[n - 1] == '/')
		n--;
	if (n == 0)
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}
