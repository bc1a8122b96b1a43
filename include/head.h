/* Message heads certgate writes: the request head it sends upstream and the response
 * head it sends a client, built from a parsed message (http.h). certgate frames every
 * message itself, so the heads it writes never carry the peer's framing headers.
 * Pure functions (no I/O); thread-safe.
 *
 * One table decides which received headers are not forwarded, with a direction:
 * hop-by-hop fields (RFC 9110 §7.6.1, and whatever a Connection header lists),
 * framing (Content-Length, Transfer-Encoding: re-framed by certgate), and per
 * direction the fields certgate sets itself (the identity headers and Host toward the
 * upstream, Strict-Transport-Security toward the client). Identity header names are
 * compared with '_' equal to '-', since some upstream stacks fold one into the other. */
#ifndef CERTGATE_HEAD_H
#define CERTGATE_HEAD_H
#include "buf.h"
#include "http.h"

enum head_dir {
	HEAD_TO_UPSTREAM,       /* a client's request, forwarded */
	HEAD_TO_CLIENT,         /* an upstream's response, forwarded */
};

/* 1 when header `name` of m is not forwarded in direction dir. */
int head_drop(const struct http_msg *m, const char *name, enum head_dir dir);

/* What certgate asserts about the client to the upstream (values are copied with
 * control characters replaced by '?', so no value can split the head). */
struct head_ident {
	const char *agent;      /* X-Agent-Id */
	const char *scopes;     /* X-Agent-Scopes */
	const char *xfcc;       /* X-Forwarded-Client-Cert; NULL: not sent */
	const char *client_cert;        /* RFC 9440 Client-Cert; NULL: not sent */
	const char *client_cert_chain;  /* Client-Cert-Chain; NULL or "": not sent */
	const char *peer_ip;    /* X-Forwarded-For */
};

/* Appends the upstream request head for request m to b: "METHOD target HTTP/1.1",
 * Host: hostport, m's headers minus head_drop(…, HEAD_TO_UPSTREAM) (which drops
 * every identity header a client sends, RFC 9440's included), the identity
 * headers id gives, "Content-Length: body_len" when body_len > 0 or the method is POST, and
 * the blank line. target is the normalized request target (path.h). Returns 0/-1
 * (buf error). */
int head_request(struct buf *b, const struct http_msg *m, const char *target,
    const char *hostport, const struct head_ident *id, long long body_len);

/* How a response's body is framed toward the client. */
enum head_framing {
	HEAD_LENGTH,            /* Content-Length: length (length < 0: none, 204/304) */
	HEAD_CHUNKED,           /* Transfer-Encoding: chunked */
	HEAD_CLOSE,             /* delimited by the close (HTTP/1.0 clients) */
};

/* Appends the client response head for upstream response m to b: "HTTP/1.1 status
 * reason", m's headers minus head_drop(…, HEAD_TO_CLIENT), HSTS, the framing, and
 * "Connection: close" (keep 0) or "Connection: keep-alive" (keep 1 for an HTTP/1.0
 * client, which needs it said). Returns 0/-1. */
int head_response(struct buf *b, const struct http_msg *m, int hsts_max_age,
    enum head_framing framing, long long length, int keep, int client_http10);

#endif
