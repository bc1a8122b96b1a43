/* Connections: listeners, worker threads (one event_base each), the TLS handshake
 * driven by certgate itself (SSL_do_handshake on a non-blocking socket with our own
 * events and timeout), and the single close path. After the handshake the session is
 * wrapped in a bufferevent_openssl and handed to proxy.c. */
#ifndef CERTGATE_CONN_H
#define CERTGATE_CONN_H
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "identity.h"

struct proxy_worker;
struct proxy_conn;

struct worker {
	int idx;
	struct event_base *base;
	pthread_t thread;
	const struct config *cfg;
	struct proxy_worker *px;        /* owned by proxy.c (upstream pool etc.) */
	TAILQ_HEAD(, conn) conns;
	unsigned nconns;
	int draining;                   /* shutdown: finish in-flight, accept nothing */
	void *priv;                     /* conn.c private */
};

struct conn {
	uint64_t id;
	struct worker *w;
	int fd;
	SSL *ssl;
	struct event *hs_ev;            /* handshake read/write readiness */
	struct event *hs_timer;         /* handshake timeout */
	struct bufferevent *bev;        /* set once established; owned by conn.c */
	char peer_ip[INET6_ADDRSTRLEN];
	char peer[INET6_ADDRSTRLEN + 8];/* "ip:port" for logs and audit */
	struct identity_peer peer_id;   /* from the verified client certificate */
	int resumed;                    /* TLS session was resumed */
	struct timespec t_accept;
	struct proxy_conn *px;          /* owned by proxy.c */
	int closing;
	int established;                /* handshake done, c->bev set */
	TAILQ_ENTRY(conn) link;
};

/* Runs the gateway until SIGTERM/SIGINT: loads the server key, builds the state,
 * starts workers and the admin listener. Returns the process exit code. */
int conn_serve(struct config *cfg);

/* The one way a connection ends: sends close_notify when the session is established,
 * lets proxy.c audit any request still in flight with `reason`, frees everything,
 * updates metrics. c is invalid afterwards. Must run on c's worker thread. */
void conn_close(struct conn *c, const char *reason);

#endif
