/* The upstream side: one pool of keep-alive connections to the upstream MCP server
 * per worker (plain TCP or TLS with upstream.ca), and the sending of a request.
 *
 * Threading: a pool and its connections belong to one worker's event loop; every call
 * is made on that thread. Ownership: a connection taken with upstream_get belongs to
 * the caller until it gives it back (upstream_put) or frees it (upstream_free); while
 * idle in the pool, the pool owns it and frees it when the upstream closes it or sends
 * anything. */
#ifndef CERTGATE_UPSTREAM_H
#define CERTGATE_UPSTREAM_H
#include <event2/bufferevent.h>

#include "config.h"

struct upstream_pool;
struct upstream_conn;

/* Resolves upstream.host once, prepares the TLS context for an https upstream.
 * Returns NULL on failure (logged). */
struct upstream_pool *upstream_pool_new(struct event_base *base, const struct config *cfg);
/* Frees the pool and every idle connection in it. */
void upstream_pool_free(struct upstream_pool *p);

/* "host:port" (brackets for IPv6): the Host header of upstream requests. */
const char *upstream_hostport(const struct upstream_pool *p);
/* 1 for an https upstream. */
int upstream_is_tls(const struct upstream_pool *p);

/* An idle pooled connection, or (fresh, or none idle) a new one that is still
 * connecting. NULL on failure (logged). */
struct upstream_conn *upstream_get(struct upstream_pool *p, int fresh);
/* Returns a connection whose response was read completely to the pool (or frees it
 * when the pool is full or draining is set). */
void upstream_put(struct upstream_conn *u, int draining);
void upstream_free(struct upstream_conn *u);

/* The connection's bufferevent, for the caller's callbacks, timeouts and reads. */
struct bufferevent *upstream_bev(const struct upstream_conn *u);
/* 1 when it came from the pool (it may have been closed by the upstream meanwhile:
 * a failure before any response byte deserves one retry on a fresh connection). */
int upstream_reused(const struct upstream_conn *u);
int upstream_connected(const struct upstream_conn *u);
/* The BEV_EVENT_CONNECTED event arrived: disables Nagle on plain TCP. */
void upstream_set_connected(struct upstream_conn *u);

/* Sends req (left intact, so the caller may retry) on u: a connected plain-TCP
 * connection with nothing queued gets it in one sendmsg without a copy; the rest,
 * and every other case, goes through the bufferevent, which reports write errors
 * the usual way. Returns 0, or -1 when out of memory. */
int upstream_send(struct upstream_conn *u, struct evbuffer *req);

#endif
