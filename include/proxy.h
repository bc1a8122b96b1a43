/* HTTP/1.1 proxying (src/proxy.c, with src/http.c for parsing): requests from an
 * established mTLS connection are parsed, checked (identity, revocation, scopes,
 * rate), audited and forwarded to the upstream; responses stream back. */
#ifndef CERTGATE_PROXY_H
#define CERTGATE_PROXY_H
#include "conn.h"

/* Per-worker state (upstream connection pool). Created on the worker's thread
 * before it runs; freed after its loop ended. */
struct proxy_worker *proxy_worker_new(struct worker *w);
void proxy_worker_free(struct proxy_worker *pw);

/* Takes over an established connection: installs c->bev callbacks and starts reading
 * the first request. Returns 0, or -1 (the caller then closes c). */
int proxy_conn_start(struct conn *c);

/* Called exactly once by conn_close before c->bev is freed: closes the upstream side
 * of any request in flight, writes its audit record with `reason`, frees c->px. */
void proxy_conn_free(struct conn *c, const char *reason);

/* 1 when closing c now would cut a response whose head went out (or one was cut
 * already): the close must then not look clean to the client (no close_notify),
 * since a body delimited by the close would seem complete. */
int proxy_conn_truncated(const struct conn *c);

/* 1 when c has a request in flight (used by graceful shutdown). */
int proxy_conn_busy(const struct conn *c);

#endif
