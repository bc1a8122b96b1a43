/* OCSP checks of client certificates, on a worker's event loop (tls.ocsp). The
 * queries are HTTP POSTs (RFC 6960 A.1) made with libevent's evhttp client on the
 * connection's own event base, so a slow responder delays only the connections that
 * wait for it; answers go to the process-wide cache (ocspcache.h), verdicts come
 * from ocsp.h.
 *
 * When a check applies: tls.ocsp.mode is soft or hard, the certificate's AIA names
 * an http:// responder, and its issuer is known (the verified chain). The verdict:
 *   revoked                         always refused (and an open connection closed);
 *   good                            accepted while the answer stands;
 *   unknown, error, timeout, down   hard: refused; soft: accepted (logged).
 *
 * Ownership and threading: a struct ocspcheck belongs to one connection and is used
 * on its worker's thread only. A query that is under way when its connection goes
 * keeps running to its timeout (it is bounded) and still fills the cache; it never
 * calls back into the freed connection. ocspcheck_worker_end frees what a worker's
 * queries still hold, before its event base is freed. */
#ifndef CERTGATE_OCSPCHECK_H
#define CERTGATE_OCSPCHECK_H
#include <time.h>

#include <openssl/x509.h>

#include "config.h"

struct event_base;
struct ocspcheck;

enum ocspcheck_result {
	OCSPCHECK_PASS,
	OCSPCHECK_REVOKED,
	OCSPCHECK_UNAVAILABLE,  /* hard mode without a good answer */
	OCSPCHECK_PENDING,      /* ocspcheck_start: the callback will tell */
};

/* The check for a peer whose verified chain (end entity first) is chain; *out is
 * NULL when no check applies (see above). Returns 0, or -1 (out of memory). */
int ocspcheck_new(const struct config *cfg, X509 *leaf, STACK_OF(X509) *chain,
    struct ocspcheck **out);

/* Forgets k; a query under way is detached (see above). NULL is a no-op. */
void ocspcheck_free(struct ocspcheck *k);

/* At the handshake: the verdict from the cache, or PENDING while a query (this
 * one's, or another connection's on the same certificate) runs; then done(arg, r)
 * is called once on base's thread, within tls.ocsp.timeout_ms plus 100 ms, never
 * from inside this call, unless k is freed first. */
enum ocspcheck_result ocspcheck_start(struct ocspcheck *k, struct event_base *base,
    time_t now, void (*done)(void *arg, enum ocspcheck_result r), void *arg);

/* For an open connection (the sweep): the verdict the cache holds now; when the
 * answer has expired a refresh query is started in the background and the last
 * answer stands until it completes. Never PENDING. */
enum ocspcheck_result ocspcheck_recheck(struct ocspcheck *k, struct event_base *base,
    time_t now);

/* Frees the queries still under way on base (its worker is ending). */
void ocspcheck_worker_end(struct event_base *base);

#endif
