/* Host names, ports, HOST:PORT and http(s) URLs as the configuration writes them
 * (include/hostport.h). Pure. */
#include "hostport.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static int
hostport_valid_name(const char *h, size_t n)
{
	size_t i;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_')
			return 0;
	return 1;
}

static int
hostport_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* "host" or "[v6]" at s..s+n into a malloc'd host without brackets. */
static int
hostport_host(const char *s, size_t n, char **host, const char **why)
{
	char v6[INET6_ADDRSTRLEN + 1];
	struct in6_addr a6;

	if (n > 0 && s[0] == '[') {
		if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof(v6)) {
			*why = "malformed [IPv6] address";
			return -1;
		}
		memcpy(v6, s + 1, n - 2);
		v6[n - 2] = '\0';
		if (inet_pton(AF_INET6, v6, &a6) != 1) {
			*why = "malformed [IPv6] address";
			return -1;
		}
		s++;
		n -= 2;
	} else if (memchr(s, ':', n) != NULL) {
		*why = "an IPv6 address needs brackets, e.g. [::1]:8443";
		return -1;
	} else if (n == 0) {
		*why = "missing host";
		return -1;
	} else if (!hostport_valid_name(s, n)) {
		*why = "invalid host name";
		return -1;
	}
	if ((*host = strndup(s, n)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

int
hostport_parse(const char *s, char **host, uint16_t *port, const char **why)
{
	const char *colon;
	char *h = NULL;
	uint16_t pt;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		colon = rb ? rb + 1 : NULL;
		if (colon == NULL || *colon != ':') {
			*why = "must be HOST:PORT or [IPv6]:PORT";
			return -1;
		}
	} else if ((colon = strrchr(s, ':')) == NULL) {
		*why = "must be HOST:PORT (port missing)";
		return -1;
	}
	if (hostport_port(colon + 1, strlen(colon + 1), &pt) == -1) {
		*why = "port must be a number between 1 and 65535";
		return -1;
	}
	if (hostport_host(s, (size_t)(colon - s), &h, why) == -1)
		return -1;
	free(*host);
	*host = h;
	*port = pt;
	return 0;
}

/* The authority of a URL starting at a: *end at the first '/' (or the NUL), *colon at
 * the ':' before the port or NULL. User info is refused; a bracketed IPv6 host must be
 * followed by ":port" or the end. */
static int
hostport_authority(const char *a, const char **endp, const char **colonp, const char **why)
{
	const char *end, *colon = NULL, *rb;

	for (end = a; *end && *end != '/'; end++)
		;
	if (memchr(a, '@', (size_t)(end - a)) != NULL) {
		*why = "user info in the URL is not supported";
		return -1;
	}
	if (a < end && *a == '[') {
		rb = memchr(a, ']', (size_t)(end - a));
		if (rb && rb + 1 < end && rb[1] == ':')
			colon = rb + 1;
		else if (rb == NULL || rb + 1 != end) {
			*why = "malformed [IPv6] host in URL";
			return -1;
		}
	} else
		colon = memchr(a, ':', (size_t)(end - a));
	*endp = end;
	*colonp = colon;
	return 0;
}

int
hostport_parse_url(const char *url, struct hostport_url *u, const char **why)
{
	const char *a, *end, *colon = NULL;
	char *host = NULL, *path = NULL;
	uint16_t port;
	int tls;

	if (strncasecmp(url, "http://", 7) == 0) {
		tls = 0;
		a = url + 7;
	} else if (strncasecmp(url, "https://", 8) == 0) {
		tls = 1;
		a = url + 8;
	} else {
		*why = "URL scheme must be http:// or https://";
		return -1;
	}
	if (strpbrk(url, "?#") != NULL) {
		*why = "URL must not have a query or fragment";
		return -1;
	}
	if (hostport_authority(a, &end, &colon, why) == -1)
		return -1;
	port = tls ? 443 : 80;
	if (colon && hostport_port(colon + 1, (size_t)(end - colon - 1), &port) == -1) {
		*why = "URL port must be a number between 1 and 65535";
		return -1;
	}
	if (hostport_host(a, (size_t)((colon ? colon : end) - a), &host, why) == -1)
		return -1;
	if ((path = strdup(*end ? end : "/")) == NULL) {
		free(host);
		*why = "out of memory";
		return -1;
	}
	u->host = host;
	u->path = path;
	u->port = port;
	u->tls = tls;
	return 0;
}

void
hostport_url_free(struct hostport_url *u)
{
	free(u->host);
	free(u->path);
	u->host = u->path = NULL;
}

int
hostport_parse_redis(const char *url, char **host, uint16_t *port, int *db, const char **why)
{
	const char *a, *end, *colon = NULL, *d;
	char *h = NULL, *e;
	uint16_t pt = 6379;
	long n = 0;

	if (strncmp(url, "redis://", 8) != 0) {
		*why = "must be redis://HOST:PORT[/DB]";
		return -1;
	}
	a = url + 8;
	if (hostport_authority(a, &end, &colon, why) == -1)
		return -1;
	if (colon && hostport_port(colon + 1, (size_t)(end - colon - 1), &pt) == -1) {
		*why = "URL port must be a number between 1 and 65535";
		return -1;
	}
	if (*end == '/' && end[1] != '\0') {
		d = end + 1;
		errno = 0;
		n = strtol(d, &e, 10);
		if (*d < '0' || *d > '9' || *e != '\0' || errno != 0 || n > 10000) {
			*why = "the database must be a number between 0 and 10000";
			return -1;
		}
	}
	if (hostport_host(a, (size_t)((colon ? colon : end) - a), &h, why) == -1)
		return -1;
	*host = h;
	*port = pt;
	*db = (int)n;
	return 0;
}
