/* The PROXY protocol, version 2 (HAProxy's "proxy-protocol.txt", section 2.2): the
 * binary header a load balancer puts in front of a TCP stream to say whom the
 * connection is really from. Pure parsing, no I/O; thread-safe.
 *
 * Only version 2 is accepted; a version 1 (text) header is recognised so that it
 * can be refused by name. The parser needs at most PROXYPROTO_MAX_ADDR bytes of the
 * header to decide; the TLVs after the addresses are not interpreted (the caller
 * reads and discards them, up to the header's length), so a peer cannot make the
 * gateway hold more than that per connection. */
#ifndef CERTGATE_PROXYPROTO_H
#define CERTGATE_PROXYPROTO_H
#include <stddef.h>
#include <sys/socket.h>

#define PROXYPROTO_HEAD		16              /* signature, version, family, length */
#define PROXYPROTO_MAX_ADDR	(16 + 216)      /* head + the largest address block */

struct proxyproto {
	int local;                      /* LOCAL command, or no usable addresses (UNSPEC,
	                                 * AF_UNIX): keep the connection's own addresses */
	struct sockaddr_storage src;    /* the client (AF_INET/AF_INET6) unless local */
	struct sockaddr_storage dst;    /* the address the client connected to */
	size_t total;                   /* header length, TLVs included */
};

/* Parses the start of a stream, p[0..n). Returns
 *   1  header complete as far as the parser needs: *out is filled, and out->total
 *      bytes (possibly more than n) make up the header;
 *   0  more bytes needed: *need is how many p must hold for the next step
 *      (never more than PROXYPROTO_MAX_ADDR);
 *  -1  not a valid PROXY v2 header: *err says why (a static message).
 * A version 1 header ("PROXY ...") gets -1 with its own message. */
int proxyproto_parse(const unsigned char *p, size_t n, struct proxyproto *out,
    size_t *need, const char **err);

/* 1 when p[0..n) (n >= 1) can be the start of a PROXY header of either version:
 * used to refuse one from an address that is not allowed to send it. */
int proxyproto_looks_like(const unsigned char *p, size_t n);

#endif
