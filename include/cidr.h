/* Address ranges ("10.0.0.0/8", "::1", "2001:db8::/32") and whether a socket address
 * falls in one. An IPv4 range also matches the IPv4-mapped IPv6 form of its addresses
 * (::ffff:10.1.2.3), which a dual-stack listener reports. Pure; thread-safe. */
#ifndef CERTGATE_CIDR_H
#define CERTGATE_CIDR_H
#include <sys/socket.h>

struct cidr {
	int family;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16];     /* network order, host bits zero */
	int bits;                   /* prefix length */
};

/* Parses "ADDRESS" or "ADDRESS/BITS". Host bits must be zero ("10.0.0.1/8" is an
 * error: it usually means a typo). Returns 0, or -1 with *err set to a static
 * message. */
int cidr_parse(const char *s, struct cidr *out, const char **err);

/* 1 when ss (AF_INET or AF_INET6) is inside r; 0 otherwise. */
int cidr_match(const struct cidr *r, const struct sockaddr_storage *ss);

/* 1 when ss is inside one of r[0..n). */
int cidr_match_any(const struct cidr *r, size_t n, const struct sockaddr_storage *ss);

#endif
