/* Address ranges (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int
cidr_parse(const char *s, struct cidr *out, const char **err)
{
	char host[64];
	const char *slash;
	char *end;
	size_t n;
	long bits;
	int i, max;

	memset(out, 0, sizeof(*out));
	slash = strchr(s, '/');
	n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(host)) {
		*err = "not an address";
		return -1;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		*err = "not an IPv4 or IPv6 address";
		return -1;
	}
	bits = max;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9') {
			*err = "prefix length is not a number";
			return -1;
		}
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || bits < 0 || bits > max) {
			*err = max == 32 ? "prefix length must be 0 to 32" :
			    "prefix length must be 0 to 128";
			return -1;
		}
	}
	out->bits = (int)bits;
	for (i = 0; i < max / 8; i++) {
		int keep = (int)bits - i * 8;
		unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 :
		    (unsigned char)(0xff << (8 - keep));

		if ((out->addr[i] & (unsigned char)~mask) != 0) {
			*err = "host bits set after the prefix (write the network address)";
			return -1;
		}
	}
	return 0;
}

static int
cidr_prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int full = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (full > 0 && memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

int
cidr_match(const struct cidr *r, const struct sockaddr_storage *ss)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	const unsigned char *a;

	if (ss->ss_family == AF_INET) {
		if (r->family != AF_INET)
			return 0;
		return cidr_prefix_eq((const unsigned char *)&s4->sin_addr, r->addr, r->bits);
	}
	if (ss->ss_family != AF_INET6)
		return 0;
	a = (const unsigned char *)&s6->sin6_addr;
	if (r->family == AF_INET6)
		return cidr_prefix_eq(a, r->addr, r->bits);
	if (memcmp(a, mapped, sizeof(mapped)) != 0)
		return 0;
	return cidr_prefix_eq(a + 12, r->addr, r->bits);
}

int
cidr_match_any(const struct cidr *r, size_t n, const struct sockaddr_storage *ss)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cidr_match(&r[i], ss))
			return 1;
	return 0;
}
