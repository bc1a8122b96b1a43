/* A client connection: the TLS handshake that certgate drives itself (SSL_do_handshake
 * on a non-blocking socket with its own events and timeout, so that token signatures
 * can run asynchronously), the peer's verified identity, per-IP limits, and the one
 * way a connection ends.
 *
 * The connection layer knows nothing about HTTP. Each listener has an application (a
 * struct conn_app: the gateway's proxy, the enrollment service) that takes a
 * connection over once its handshake is done and is told, exactly once, when it ends
 * (the way Redis's connection layer takes handlers and private data).
 *
 * Ownership and threading: a connection belongs to one worker's event loop (struct
 * conn_home, owned by worker.c) and every function here must be called on that
 * loop's thread, except the process-wide per-IP and total counters, which are
 * locked. A struct conn is opaque; callers use the accessors. After conn_close the
 * pointer is invalid; callers inside the application's own callbacks defer the
 * close until they return (proxy.c's depth counter). */
#ifndef CERTGATE_CONN_H
#define CERTGATE_CONN_H
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "identity.h"

struct bufferevent;
struct event_base;
struct gw_state;
struct conn;

/* Why a connection ends. One table (conn.c) maps each to its name, which is the
 * audit reason of a request it cut, the label of
 * certgate_connections_closed_total{reason} and the word in the debug log. */
enum conn_end {
	CONN_END_NONE = 0,      /* not ending (applications keep this while open) */
	CONN_END_DONE,          /* answered, not kept alive */
	CONN_END_CLIENT_EOF,    /* the client closed */
	CONN_END_CLIENT_ERROR,  /* read/write error on the client side */
	CONN_END_CLIENT_TIMEOUT,/* the client's socket timed out */
	CONN_END_IDLE,          /* keep-alive idle timeout */
	CONN_END_STALLED,       /* the client stopped reading a response */
	CONN_END_UPSTREAM,      /* the upstream cut the response short */
	CONN_END_REVOKED,       /* certificate revoked (handshake, request or sweep) */
	CONN_END_EXPIRED,       /* certificate expired */
	CONN_END_UNMAPPED,      /* certificate no longer mapped to an agent */
	CONN_END_UNTRUSTED,     /* certificate not issued by a trusted CA */
	CONN_END_NO_CERT,       /* no client certificate */
	CONN_END_BAD_CERT,      /* certificate unreadable */
	CONN_END_HANDSHAKE,     /* TLS handshake failed (protocol) */
	CONN_END_PROBE,         /* closed before a handshake (port probe) */
	CONN_END_HS_TIMEOUT,    /* handshake took too long */
	CONN_END_NO_MEMORY,
	CONN_END_INTERNAL,
	CONN_END_SHUTDOWN,      /* the gateway is stopping */
	CONN_END_PROXY,         /* PROXY header missing, malformed, or from an untrusted
	                         * address (proxy_protocol.trusted) */
	CONN_END_OCSP,          /* tls.ocsp.mode hard and no good OCSP answer */
	CONN_END_COUNT
};

/* snake_case name of a reason ("client_closed"); never NULL. */
const char *conn_end_name(enum conn_end why);

/* An application on a listener. Every handler runs on the connection's worker. */
struct conn_app {
	const char *name;
	/* Per-worker state (e.g. the upstream pool), made on the worker's thread before
	 * it accepts and freed after its loop ended. NULL handlers: none. worker_new
	 * returns NULL on failure (the gateway then does not start). */
	void *(*worker_new)(struct event_base *base, const struct config *cfg);
	void (*worker_free)(void *wdata);
	/* The handshake is done and the peer verified: take c over (conn_bev(c)).
	 * Returns 0, or -1 (the connection is then closed with CONN_END_INTERNAL). */
	int (*start)(struct conn *c);
	/* c ends: audit whatever is in flight with why, free the application's state.
	 * Called exactly once per started connection, before the bufferevent is freed. */
	void (*end)(struct conn *c, enum conn_end why);
	/* 1 while graceful shutdown must wait for c (a request in flight). */
	int (*busy)(const struct conn *c);
	/* 1 when closing c now would cut a response short: the close then sends no
	 * close_notify, so the client can tell a close-delimited body is incomplete. */
	int (*cut)(const struct conn *c);
	/* 1: client certificates are optional (the enrollment listener: its own SSL_CTX,
	 * st->enroll_ctx); a connection without one has an empty conn_peer_id (serial
	 * ""), and the sweep does not require a certificate to be mapped. */
	int optional_cert;
};

TAILQ_HEAD(conn_list, conn);

/* Event priorities on a worker's loop. worker.c makes the base with CONN_PRIORITIES
 * queues and lets at most one callback of CONN_PRI_HANDSHAKE or lower run per loop
 * iteration; every event that is not a handshake step (established connections,
 * upstream connections, timers, the accept event) keeps libevent's default, the
 * middle queue. A handshake step (SSL_do_handshake, ~1-2 ms of CPU for a full
 * handshake) therefore runs only when no established connection is ready, one per
 * iteration, and a handshake flood delays a keep-alive request by at most one step
 * instead of a whole iteration of steps. The price is paid by new connections on a
 * saturated worker: a handshake kept waiting longer than limits.handshake_timeout_ms
 * is closed (hs_timeout), as one that stalls for any other reason. */
#define CONN_PRIORITIES         3
#define CONN_PRI_HANDSHAKE      2

/* One listener on one worker: what its connections share. Filled and owned by
 * worker.c; conn.c reads it and keeps the list. */
struct conn_home {
	struct event_base *base;
	const struct config *cfg;
	const struct conn_app *app;
	void *app_wdata;                /* app->worker_new's result */
	int async_sign;                 /* handshakes run with SSL_MODE_ASYNC */
	int draining;                   /* shutdown: finish in flight, keep nothing */
	struct conn_list conns;
	unsigned nconns;
};

/* Takes over an accepted socket fd from ss and starts its handshake (or closes it
 * at once when over limits.max_connections or max_connections_per_ip). From an
 * address in proxy_protocol.trusted the connection must start with a PROXY v2
 * header (proxyproto.h), whose client becomes the peer before the handshake and
 * the per-IP count; from any other address, while some are trusted, a PROXY header
 * is refused (CONN_END_PROXY). */
void conn_accept(struct conn_home *h, int fd, const struct sockaddr_storage *ss);

/* The one way a connection ends (see the thread note above): the application's end
 * handler, close_notify when nothing was cut, every resource, the counters and the
 * log line. A second call on a closing connection is a no-op. */
void conn_close(struct conn *c, enum conn_end why);

/* Re-checks every established connection of h: expired certificates always; with
 * st (a state that changed since the last sweep) also revoked and unmapped ones.
 * Those are closed. */
void conn_sweep(struct conn_home *h, const struct gw_state *st, time_t now);

/* Graceful shutdown: closes every connection of h that is idle (or, with force,
 * every one). Returns the number left. */
unsigned conn_drain(struct conn_home *h, int force);

/* Accessors (valid while c is open). */
struct bufferevent *conn_bev(const struct conn *c);     /* NULL before start */
struct event_base *conn_base(const struct conn *c);
const struct config *conn_cfg(const struct conn *c);
uint64_t conn_id(const struct conn *c);
const char *conn_peer(const struct conn *c);            /* "ip:port" */
const char *conn_peer_ip(const struct conn *c);
const struct identity_peer *conn_peer_id(const struct conn *c);
X509 *conn_peer_cert(const struct conn *c);     /* verified, borrowed; NULL: none */
/* The verified chain, end entity first, trust anchor last (RFC 9440's
 * Client-Cert-Chain): the handshake's own, or for a resumed session one built again
 * against the current trust store. Built at first use, owned by c; NULL: none. */
STACK_OF(X509) *conn_peer_chain(struct conn *c);
int conn_resumed(const struct conn *c);
int conn_draining(const struct conn *c);
void *conn_app_data(const struct conn *c);
void conn_set_app_data(struct conn *c, void *data);
void *conn_worker_data(const struct conn *c);           /* the home's app_wdata */

/* Frees the per-IP table (shutdown, after every connection is gone). */
void conn_shutdown(void);

#endif
