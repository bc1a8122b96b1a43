/* PROXY protocol v2 parsing (proxyproto.h). */
#include "proxyproto.h"

#include <netinet/in.h>
#include <string.h>

static const unsigned char proxyproto_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char proxyproto_v1[] = "PROXY ";

int
proxyproto_looks_like(const unsigned char *p, size_t n)
{
	size_t k;

	k = n < sizeof(proxyproto_sig) ? n : sizeof(proxyproto_sig);
	if (k > 0 && memcmp(p, proxyproto_sig, k) == 0)
		return 1;
	k = n < sizeof(proxyproto_v1) - 1 ? n : sizeof(proxyproto_v1) - 1;
	return k > 0 && memcmp(p, proxyproto_v1, k) == 0;
}

int
proxyproto_parse(const unsigned char *p, size_t n, struct proxyproto *out,
    size_t *need, const char **err)
{
	struct sockaddr_in *s4, *d4;
	struct sockaddr_in6 *s6, *d6;
	size_t len, alen;
	unsigned cmd, fam, proto;

	memset(out, 0, sizeof(*out));
	if (n > 0 && !proxyproto_looks_like(p, n)) {
		*err = "the connection does not start with a PROXY protocol v2 header";
		return -1;
	}
	if (n >= 1 && p[0] == 'P') {
		if (n < sizeof(proxyproto_v1) - 1) {
			*need = sizeof(proxyproto_v1) - 1;
			return 0;
		}
		*err = "PROXY protocol version 1 (text) header: only version 2 is accepted";
		return -1;
	}
	if (n < PROXYPROTO_HEAD) {
		*need = PROXYPROTO_HEAD;
		return 0;
	}
	if ((p[12] >> 4) != 2) {
		*err = "PROXY protocol header with a version other than 2";
		return -1;
	}
	cmd = p[12] & 0x0f;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	len = (size_t)p[14] << 8 | p[15];
	if (cmd > 1) {
		*err = "PROXY protocol v2 header with an unknown command";
		return -1;
	}
	switch (fam) {
	case 0: alen = 0; break;
	case 1: alen = 12; break;
	case 2: alen = 36; break;
	case 3: alen = 216; break;
	default:
		*err = "PROXY protocol v2 header with an unknown address family";
		return -1;
	}
	if (len < alen) {
		*err = "PROXY protocol v2 header too short for its address family";
		return -1;
	}
	out->total = PROXYPROTO_HEAD + len;
	if (cmd == 0 || fam == 0 || fam == 3) {
		/* LOCAL (the balancer's own health check) or addresses that say nothing
		 * about a TCP client: the connection's own endpoints stand. */
		out->local = 1;
		return 1;
	}
	if (proto != 1) {
		*err = "PROXY protocol v2 header for a transport other than TCP";
		return -1;
	}
	if (n < PROXYPROTO_HEAD + alen) {
		*need = PROXYPROTO_HEAD + alen;
		return 0;
	}
	p += PROXYPROTO_HEAD;
	if (fam == 1) {
		s4 = (struct sockaddr_in *)&out->src;
		d4 = (struct sockaddr_in *)&out->dst;
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p, 4);
		memcpy(&d4->sin_addr, p + 4, 4);
		memcpy(&s4->sin_port, p + 8, 2);
		memcpy(&d4->sin_port, p + 10, 2);
	} else {
		s6 = (struct sockaddr_in6 *)&out->src;
		d6 = (struct sockaddr_in6 *)&out->dst;
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p, 16);
		memcpy(&d6->sin6_addr, p + 16, 16);
		memcpy(&s6->sin6_port, p + 32, 2);
		memcpy(&d6->sin6_port, p + 34, 2);
	}
	return 1;
}
