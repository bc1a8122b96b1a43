/* Connections: listeners, worker threads, the TLS handshake and the close path.
 *
 * Threading: N workers, each with its own event_base and its own listening socket
 * bound with SO_REUSEPORT. The kernel spreads new connections over the sockets, so
 * there is no acceptor thread, no hand-off queue and no lock on the accept path;
 * every connection lives and dies on one thread. (A single acceptor would have to
 * pass descriptors across threads and becomes the bottleneck at handshake rates.)
 * The main thread only runs signals, the reload/check timer and the admin listener.
 *
 * The handshake is driven here with SSL_do_handshake on a non-blocking socket and
 * our own readiness event and timer, not by bufferevent_openssl: libevent cannot
 * drive SSL_ERROR_WANT_ASYNC (libevent#403), which an asynchronous token needs.
 * With a signer pool (signer.h) the handshake runs with SSL_MODE_ASYNC: the token
 * signature pauses its async job, SSL_do_handshake returns SSL_ERROR_WANT_ASYNC,
 * and the job's wait fd (an eventfd the pool writes) is watched like the socket
 * until the signature is done; the worker serves other connections meanwhile. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "admin.h"
#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "p11.h"
#include "proxy.h"
#include "signer.h"
#include "state.h"
#include "tls.h"

#define CONN_BACKLOG		1024
#define CONN_ACCEPT_BATCH	64
#define CONN_MAX_WORKERS	64
#define CONN_IP_BUCKETS		4096
#define CONN_DRAIN_TICK_MS	100
#define CONN_HEALTH_INTERVAL_MS	5000

/* conn.c's per-worker state (w->priv). */
struct worker_priv {
	int lfd;
	struct event *accept_ev;
	struct event *pause_timer;      /* EMFILE back-off */
	struct event *sweep_timer;      /* 1 s: revocation/identity/expiry re-check */
	struct event *recheck_ev;       /* activated by the main thread after a reload */
	struct event *stop_ev;          /* activated by the main thread on SIGTERM */
	struct event *drain_timer;
	struct timespec drain_deadline;
	uint64_t gen;                   /* state generation last swept */
	int ok;                         /* proxy_worker_new succeeded */
};

struct ip_ent {
	struct ip_ent *next;
	unsigned n;
	char ip[INET6_ADDRSTRLEN];
};

static struct {
	struct config *cfg;
	struct event_base *base;
	struct worker *workers;
	int nworkers;
	int nstarted;
	struct event *sig_hup, *sig_term, *sig_int, *tick;
	unsigned ticks;
	int stopping;
	char pidfile[PATH_MAX];
	pthread_mutex_t ready_mtx;
	pthread_cond_t ready_cv;
	int nready;
	struct signer_pool *signer;     /* NULL: token signatures block the worker */
} g = {
	.ready_mtx = PTHREAD_MUTEX_INITIALIZER,
	.ready_cv = PTHREAD_COND_INITIALIZER,
};

static atomic_uint_fast64_t conn_next_id = 1;
static atomic_int conn_total;
static pthread_mutex_t ip_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct ip_ent *ip_tab[CONN_IP_BUCKETS];

static void conn_hs_step(struct conn *c);
static int conn_nworkers(const struct config *cfg);

/* ------------------------------------------------------------------------- */
/* Connection limits */

static unsigned
ip_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % CONN_IP_BUCKETS;
}

/* Counts one more connection from ip; -1 when that would exceed max. */
static int
ip_acquire(const char *ip, int max)
{
	struct ip_ent *e;
	unsigned h = ip_hash(ip);
	int rc = -1;

	pthread_mutex_lock(&ip_mtx);
	for (e = ip_tab[h]; e != NULL; e = e->next)
		if (strcmp(e->ip, ip) == 0)
			break;
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			goto out;
		snprintf(e->ip, sizeof(e->ip), "%s", ip);
		e->next = ip_tab[h];
		ip_tab[h] = e;
	}
	if (max > 0 && e->n >= (unsigned)max)
		goto out;
	e->n++;
	rc = 0;
out:
	pthread_mutex_unlock(&ip_mtx);
	return rc;
}

static void
ip_release(const char *ip)
{
	struct ip_ent **pp, *e;

	pthread_mutex_lock(&ip_mtx);
	for (pp = &ip_tab[ip_hash(ip)]; (e = *pp) != NULL; pp = &e->next) {
		if (strcmp(e->ip, ip) != 0)
			continue;
		if (e->n > 0)
			e->n--;
		if (e->n == 0) {
			*pp = e->next;
			free(e);
		}
		break;
	}
	pthread_mutex_unlock(&ip_mtx);
}

static void
ip_table_free(void)
{
	struct ip_ent *e;
	size_t i;

	pthread_mutex_lock(&ip_mtx);
	for (i = 0; i < CONN_IP_BUCKETS; i++)
		while ((e = ip_tab[i]) != NULL) {
			ip_tab[i] = e->next;
			free(e);
		}
	pthread_mutex_unlock(&ip_mtx);
}

/* ------------------------------------------------------------------------- */
/* Close path */

void
conn_close(struct conn *c, const char *reason)
{
	struct worker *w = c->w;
	int cut;

	if (c->closing)
		return;
	c->closing = 1;
	cut = c->px != NULL && proxy_conn_truncated(c);
	/* A handshake paused for a signature: end its async job before SSL_free. */
	if (!c->established && c->ssl != NULL && SSL_waiting_for_async(c->ssl))
		signer_ssl_abandon(c->ssl);
	if (c->px != NULL) {
		proxy_conn_free(c, reason);
		c->px = NULL;
	}
	if (c->hs_ev != NULL)
		event_free(c->hs_ev);
	if (c->hs_timer != NULL)
		event_free(c->hs_timer);
	c->hs_ev = c->hs_timer = NULL;
	if (c->established && c->ssl != NULL) {
		/* close_notify says "that was everything": only true when nothing we owed
		 * the client is being dropped. With output discarded, an unclean close lets
		 * the client see that a close-delimited body was cut short. One attempt; a
		 * full send buffer is not waited for. */
		if (!cut && (c->bev == NULL ||
		    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)) {
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
		} else
			log_debug("connection %llu from %s: closing without close_notify (%s)",
			    (unsigned long long)c->id, c->peer, cut ? "response cut short" :
			    "output unsent");
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	SSL_free(c->ssl);
	c->ssl = NULL;
	ERR_clear_error();
	if (c->fd != -1)
		close(c->fd);
	TAILQ_REMOVE(&w->conns, c, link);
	w->nconns--;
	ip_release(c->peer_ip);
	atomic_fetch_sub(&conn_total, 1);
	metrics_dec(M_CONN_ACTIVE);
	log_debug("connection %llu from %s closed: %s", (unsigned long long)c->id, c->peer,
	    reason ? reason : "-");
	identity_peer_clear(&c->peer_id);
	free(c);
}

/* ------------------------------------------------------------------------- */
/* Handshake */

/* Why an established peer may not continue: revoked or expired; with
 * check_map also unmapped. NULL when fine. */
static const char *
conn_peer_refusal(const struct conn *c, const struct gw_state *st, int check_map, time_t now)
{
	if (c->peer_id.not_after != 0 && c->peer_id.not_after < now)
		return "expired";
	if (st == NULL)
		return NULL;
	if (state_is_revoked(st, c->peer_id.serial))
		return "revoked";
	if (check_map && st->map != NULL && identity_lookup(st->map, &c->peer_id) == NULL)
		return "unmapped";
	return NULL;
}

static void
conn_hs_fail(struct conn *c, int err)
{
	const char *data = NULL;
	char reason[256];
	int flags = 0;
	unsigned long e;
	long vr;

	reason[0] = '\0';
	switch (err) {
	case SSL_ERROR_SSL:
		vr = SSL_get_verify_result(c->ssl);
		/* The signer raises its own error first: say "queue full" or "timed out",
		 * not OpenSSL's "EVP lib". */
		if (ERR_GET_LIB(ERR_peek_error_data(&data, &flags)) == ERR_LIB_USER &&
		    (flags & ERR_TXT_STRING) && data != NULL && *data != '\0') {
			snprintf(reason, sizeof(reason), "%s", data);
			break;
		}
		e = ERR_peek_last_error();
		if (vr == X509_V_OK && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			/* Port probes and load balancer checks: not worth an info line. */
			log_debug("handshake from %s: connection closed by peer", c->peer);
			metrics_inc(M_HS_FAIL);
			conn_close(c, "handshake");
			return;
		}
		if (vr != X509_V_OK)
			snprintf(reason, sizeof(reason), "certificate verify failed: %s",
			    X509_verify_cert_error_string(vr));
		else if (e != 0)
			snprintf(reason, sizeof(reason), "%s",
			    ERR_reason_error_string(e) ? ERR_reason_error_string(e) :
			    "TLS error");
		else
			snprintf(reason, sizeof(reason), "TLS error");
		break;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == EAGAIN) {
			/* Port probes and load balancer checks: not worth an info line. */
			log_debug("handshake from %s: connection closed by peer", c->peer);
			metrics_inc(M_HS_FAIL);
			conn_close(c, "handshake");
			return;
		}
		snprintf(reason, sizeof(reason), "%s", strerror(errno));
		break;
	case SSL_ERROR_ZERO_RETURN:
		snprintf(reason, sizeof(reason), "closed by peer");
		break;
	default:
		snprintf(reason, sizeof(reason), "SSL error %d", err);
	}
	log_info("handshake failed from %s: %s", c->peer, reason);
	metrics_inc(M_HS_FAIL);
	conn_close(c, "handshake");
}

static void
conn_hs_done(struct conn *c)
{
	struct worker *w = c->w;
	struct gw_state *st;
	const char *refusal;
	X509 *peer;

	event_free(c->hs_ev);
	event_free(c->hs_timer);
	c->hs_ev = c->hs_timer = NULL;
	/* Only the handshake signs; reads and writes need no job around them. */
	SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
	c->resumed = SSL_session_reused(c->ssl);
	metrics_inc(c->resumed ? M_HS_RESUMED : M_HS_OK);
	if ((peer = SSL_get0_peer_certificate(c->ssl)) == NULL) {
		log_info("handshake from %s: no client certificate", c->peer);
		conn_close(c, "no certificate");
		return;
	}
	if (identity_peer_from_cert(peer, &c->peer_id) == -1) {
		log_info("handshake from %s: cannot read the client certificate", c->peer);
		conn_close(c, "bad certificate");
		return;
	}
	/* Resumed sessions skipped chain and CRL verification: check the serial
	 * against the current revocation list whatever the handshake was. */
	st = state_get();
	refusal = conn_peer_refusal(c, st, 0, time(NULL));
	state_put(st);
	if (refusal != NULL) {
		log_info("refused %s from %s (serial %s, %s handshake)", refusal, c->peer,
		    c->peer_id.serial, c->resumed ? "resumed" : "full");
		if (strcmp(refusal, "revoked") == 0)
			metrics_inc(M_REVOKED_REFUSED);
		conn_close(c, refusal);
		return;
	}
	/* libevent reads the error queue to report bufferevent errors: start clean. */
	ERR_clear_error();
	log_debug("handshake from %s: %s, %s, serial %s%s", c->peer, SSL_get_version(c->ssl),
	    SSL_get_cipher_name(c->ssl), c->peer_id.serial, c->resumed ? ", resumed" : "");
	c->bev = bufferevent_openssl_socket_new(w->base, c->fd, c->ssl, BUFFEREVENT_SSL_OPEN,
	    BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		log_err("bufferevent_openssl_socket_new failed for %s", c->peer);
		conn_close(c, "internal error");
		return;
	}
	/* Most HTTP clients close without close_notify; that is an EOF, not an attack
	 * (HTTP/1.1 framing protects against truncation). */
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	c->established = 1;
	if (proxy_conn_start(c) == -1)
		conn_close(c, "proxy start");
}

static void
conn_hs_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_hs_step(arg);
}

/* Waits for fd readiness `what` before the next SSL_do_handshake. */
static void
conn_hs_arm(struct conn *c, short what)
{
	event_del(c->hs_ev);
	event_assign(c->hs_ev, c->w->base, c->fd, what, conn_hs_cb, c);
	if (event_add(c->hs_ev, NULL) == -1) {
		log_err("event_add failed for %s", c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, "internal error");
	}
}

/* The handshake's async job is paused until the signer pool is done: wait for
 * its wait fd (an eventfd the pool writes). The timeout resumes the job anyway so
 * the sign can give up after signer.timeout_ms even if the token never answers. */
static void
conn_hs_arm_async(struct conn *c)
{
	OSSL_ASYNC_FD fds[4];
	struct timeval tv;
	size_t n = 0;
	int ms = c->w->cfg->signer.timeout_ms + 100;

	if (SSL_get_all_async_fds(c->ssl, NULL, &n) != 1 || n == 0 ||
	    n > sizeof(fds) / sizeof(fds[0]) || SSL_get_all_async_fds(c->ssl, fds, &n) != 1) {
		log_err("handshake from %s waits for a signature but has no wait fd",
		    c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, "internal error");
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_del(c->hs_ev);
	event_assign(c->hs_ev, c->w->base, fds[0], EV_READ, conn_hs_cb, c);
	if (event_add(c->hs_ev, &tv) == -1) {
		log_err("event_add failed for %s", c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, "internal error");
	}
}

static void
conn_hs_step(struct conn *c)
{
	int r, err;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		conn_hs_done(c);
		return;
	}
	err = SSL_get_error(c->ssl, r);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		conn_hs_arm(c, EV_READ);
		break;
	case SSL_ERROR_WANT_WRITE:
		conn_hs_arm(c, EV_WRITE);
		break;
	case SSL_ERROR_WANT_ASYNC:
		conn_hs_arm_async(c);
		break;
	default:
		conn_hs_fail(c, err);
	}
}

static void
conn_hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	log_info("handshake from %s timed out", c->peer);
	metrics_inc(M_HS_TIMEOUT);
	metrics_inc(M_HS_FAIL);
	conn_close(c, "handshake timeout");
}

/* ------------------------------------------------------------------------- */
/* Accept */

static void
conn_peer_name(const struct sockaddr_storage *ss, char *ip, size_t iplen, char *peer,
    size_t peerlen)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	unsigned port = 0;

	snprintf(ip, iplen, "?");
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &s4->sin_addr, ip, iplen);
		port = ntohs(s4->sin_port);
		snprintf(peer, peerlen, "%s:%u", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, iplen);
		port = ntohs(s6->sin6_port);
		snprintf(peer, peerlen, "[%s]:%u", ip, port);
	} else
		snprintf(peer, peerlen, "?");
}

static void
conn_new(struct worker *w, int fd, const struct sockaddr_storage *ss)
{
	const struct config_limits *lim = &w->cfg->limits;
	struct timeval tv;
	struct gw_state *st;
	struct conn *c;
	char ip[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN + 8];
	int one = 1;

	conn_peer_name(ss, ip, sizeof(ip), peer, sizeof(peer));
	if (atomic_fetch_add(&conn_total, 1) >= lim->max_connections &&
	    lim->max_connections > 0) {
		atomic_fetch_sub(&conn_total, 1);
		log_debug("refused %s: max_connections (%d) reached", peer, lim->max_connections);
		metrics_inc(M_CONN_REJECTED_LIMIT);
		close(fd);
		return;
	}
	if (ip_acquire(ip, lim->max_connections_per_ip) == -1) {
		atomic_fetch_sub(&conn_total, 1);
		log_debug("refused %s: max_connections_per_ip (%d) reached", peer,
		    lim->max_connections_per_ip);
		metrics_inc(M_CONN_REJECTED_LIMIT);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		ip_release(ip);
		atomic_fetch_sub(&conn_total, 1);
		close(fd);
		return;
	}
	c->id = atomic_fetch_add(&conn_next_id, 1);
	c->w = w;
	c->fd = fd;
	memcpy(c->peer_ip, ip, sizeof(c->peer_ip));
	memcpy(c->peer, peer, sizeof(c->peer));
	clock_gettime(CLOCK_MONOTONIC, &c->t_accept);
	TAILQ_INSERT_TAIL(&w->conns, c, link);
	w->nconns++;
	metrics_inc(M_CONN_ACCEPTED);
	metrics_inc(M_CONN_ACTIVE);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	if ((st = state_get()) == NULL) {
		conn_close(c, "no state");
		return;
	}
	c->ssl = SSL_new(st->ssl_ctx);
	state_put(st);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		log_sslerr("cannot set up TLS for %s", peer);
		conn_close(c, "internal error");
		return;
	}
	SSL_set_accept_state(c->ssl);
	if (g.signer != NULL)
		SSL_set_mode(c->ssl, SSL_MODE_ASYNC);
	c->hs_ev = event_new(w->base, fd, EV_READ, conn_hs_cb, c);
	c->hs_timer = evtimer_new(w->base, conn_hs_timeout_cb, c);
	if (c->hs_ev == NULL || c->hs_timer == NULL) {
		log_err("event_new failed for %s", peer);
		conn_close(c, "internal error");
		return;
	}
	tv.tv_sec = lim->handshake_timeout_ms / 1000;
	tv.tv_usec = (lim->handshake_timeout_ms % 1000) * 1000;
	evtimer_add(c->hs_timer, &tv);
	/* The ClientHello is rarely there yet: wait for it rather than try now. */
	conn_hs_arm(c, EV_READ);
}

static void
conn_pause_accept(struct worker *w, int err)
{
	struct worker_priv *wp = w->priv;
	struct timeval tv = { 1, 0 };

	log_warn("accept: %s; not accepting for 1 s", strerror(err));
	event_del(wp->accept_ev);
	evtimer_add(wp->pause_timer, &tv);
}

static void
conn_resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_priv *wp = w->priv;

	if (!w->draining && wp->lfd != -1)
		event_add(wp->accept_ev, NULL);
}

static void
conn_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker *w = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int i, fd;

	for (i = 0; i < CONN_ACCEPT_BATCH && !w->draining; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
				continue;
			case EAGAIN:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				conn_pause_accept(w, errno);
				return;
			default:
				log_warn("accept: %s", strerror(errno));
				return;
			}
		}
		conn_new(w, fd, &ss);
	}
}

/* ------------------------------------------------------------------------- */
/* Periodic re-check of established connections */

static void
conn_sweep(struct worker *w)
{
	struct worker_priv *wp = w->priv;
	struct gw_state *st = NULL;
	struct conn *c, *next;
	const char *why;
	uint64_t gen = state_generation();
	time_t now = time(NULL);
	int recheck = gen != wp->gen;

	if (recheck)
		st = state_get();
	for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (!c->established || c->closing)
			continue;
		why = conn_peer_refusal(c, recheck ? st : NULL, 1, now);
		if (why == NULL)
			continue;
		log_info("closing connection from %s (serial %s): %s", c->peer,
		    c->peer_id.serial, why);
		if (strcmp(why, "revoked") == 0)
			metrics_inc(M_REVOKED_REFUSED);
		conn_close(c, why);
	}
	wp->gen = gen;
	state_put(st);
}

static void
conn_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_sweep(arg);
}

/* ------------------------------------------------------------------------- */
/* Graceful shutdown (worker side) */

static void
conn_drain(struct worker *w)
{
	struct worker_priv *wp = w->priv;
	struct conn *c, *next;
	struct timespec now;
	int force;

	clock_gettime(CLOCK_MONOTONIC, &now);
	force = now.tv_sec > wp->drain_deadline.tv_sec ||
	    (now.tv_sec == wp->drain_deadline.tv_sec &&
	    now.tv_nsec >= wp->drain_deadline.tv_nsec);
	for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (force || !c->established || c->px == NULL || !proxy_conn_busy(c))
			conn_close(c, "shutdown");
	}
	if (w->nconns == 0)
		event_base_loopbreak(w->base);
}

static void
conn_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_drain(arg);
}

static void
conn_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_priv *wp = w->priv;
	struct timeval tv = { 0, CONN_DRAIN_TICK_MS * 1000 };
	long ns;

	if (w->draining)
		return;
	w->draining = 1;
	event_del(wp->accept_ev);
	event_del(wp->pause_timer);
	if (wp->lfd != -1)
		close(wp->lfd);
	wp->lfd = -1;
	clock_gettime(CLOCK_MONOTONIC, &wp->drain_deadline);
	ns = wp->drain_deadline.tv_nsec + (long)(w->cfg->limits.grace_ms % 1000) * 1000000L;
	wp->drain_deadline.tv_sec += w->cfg->limits.grace_ms / 1000 + ns / 1000000000L;
	wp->drain_deadline.tv_nsec = ns % 1000000000L;
	event_add(wp->drain_timer, &tv);
	conn_drain(w);
}

/* ------------------------------------------------------------------------- */
/* Workers */

static void
conn_ready(void)
{
	pthread_mutex_lock(&g.ready_mtx);
	g.nready++;
	pthread_cond_broadcast(&g.ready_cv);
	pthread_mutex_unlock(&g.ready_mtx);
}

static void *
conn_worker_main(void *arg)
{
	struct worker *w = arg;
	struct worker_priv *wp = w->priv;
	struct conn *c;

	w->px = proxy_worker_new(w);
	wp->ok = w->px != NULL;
	if (!wp->ok)
		log_err("worker %d: cannot set up the upstream side (proxy)", w->idx);
	conn_ready();
	if (wp->ok)
		event_base_dispatch(w->base);
	while ((c = TAILQ_FIRST(&w->conns)) != NULL)
		conn_close(c, "shutdown");
	if (w->px != NULL)
		proxy_worker_free(w->px);
	w->px = NULL;
	/* bufferevents freed above with deferred callbacks are finalized by the loop:
	 * run it once more so nothing is left for event_base_free to leak. */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	return NULL;
}

/* Binds one listening socket; reuseport lets every worker bind its own. */
static int
conn_listen_socket(const struct config *cfg, int reuseport, int quiet)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[16];
	int fd = -1, one = 1, rc, err = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)cfg->listen_port);
	if ((rc = getaddrinfo(cfg->listen_host, port, &hints, &res)) != 0) {
		log_err("listen address %s: %s", cfg->listen_host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			err = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		    sizeof(one)) == -1) {
			err = errno;
			close(fd);
			fd = -1;
			continue;
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    (!reuseport || listen(fd, CONN_BACKLOG) == 0))
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1 && !quiet)
		log_err("cannot listen on %s:%s: %s", cfg->listen_host, port, strerror(err));
	return fd;
}

/* SO_REUSEPORT would silently share the port with another gateway of the same
 * user: bind once without it first, so a port in use is an error. */
static int
conn_port_free(const struct config *cfg)
{
	int fd;

	if ((fd = conn_listen_socket(cfg, 0, 0)) == -1)
		return -1;
	close(fd);
	return 0;
}

static int
conn_worker_init(struct worker *w, int idx, struct config *cfg)
{
	struct worker_priv *wp;
	struct timeval sec = { 1, 0 };

	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->cfg = cfg;
	TAILQ_INIT(&w->conns);
	if ((wp = calloc(1, sizeof(*wp))) == NULL)
		return -1;
	w->priv = wp;
	wp->lfd = -1;
	wp->gen = state_generation();
	if ((w->base = event_base_new()) == NULL) {
		log_err("event_base_new failed");
		return -1;
	}
	if ((wp->lfd = conn_listen_socket(cfg, 1, 0)) == -1)
		return -1;
	wp->accept_ev = event_new(w->base, wp->lfd, EV_READ | EV_PERSIST, conn_accept_cb, w);
	wp->pause_timer = evtimer_new(w->base, conn_resume_accept_cb, w);
	wp->sweep_timer = event_new(w->base, -1, EV_PERSIST, conn_sweep_cb, w);
	wp->recheck_ev = event_new(w->base, -1, 0, conn_sweep_cb, w);
	wp->stop_ev = event_new(w->base, -1, 0, conn_stop_cb, w);
	wp->drain_timer = event_new(w->base, -1, EV_PERSIST, conn_drain_cb, w);
	if (wp->accept_ev == NULL || wp->pause_timer == NULL || wp->sweep_timer == NULL ||
	    wp->recheck_ev == NULL || wp->stop_ev == NULL || wp->drain_timer == NULL ||
	    event_add(wp->accept_ev, NULL) == -1 || event_add(wp->sweep_timer, &sec) == -1) {
		log_err("cannot set up worker %d events", idx);
		return -1;
	}
	return 0;
}

static void
conn_worker_free(struct worker *w)
{
	struct worker_priv *wp = w->priv;

	if (wp != NULL) {
		if (wp->accept_ev)
			event_free(wp->accept_ev);
		if (wp->pause_timer)
			event_free(wp->pause_timer);
		if (wp->sweep_timer)
			event_free(wp->sweep_timer);
		if (wp->recheck_ev)
			event_free(wp->recheck_ev);
		if (wp->stop_ev)
			event_free(wp->stop_ev);
		if (wp->drain_timer)
			event_free(wp->drain_timer);
		if (wp->lfd != -1)
			close(wp->lfd);
		free(wp);
	}
	w->priv = NULL;
	if (w->base != NULL)
		event_base_free(w->base);
	w->base = NULL;
}

/* Tells every worker that the state changed, so revoked and unmapped peers are
 * cut now rather than at their next 1 s sweep. */
static void
conn_wake_workers(void)
{
	int i;

	for (i = 0; i < g.nstarted; i++)
		event_active(((struct worker_priv *)g.workers[i].priv)->recheck_ev, EV_TIMEOUT, 0);
}

static void
conn_stop_workers(void)
{
	int i;

	for (i = 0; i < g.nstarted; i++)
		event_active(((struct worker_priv *)g.workers[i].priv)->stop_ev, EV_TIMEOUT, 0);
}

/* ------------------------------------------------------------------------- */
/* Main thread */

static void
conn_reload(const char *why)
{
	if (state_reload(why) == 0)
		conn_wake_workers();
}

static void
conn_sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("SIGHUP: reloading");
	conn_reload("SIGHUP");
	p11_health_reset();     /* a fixed PIN file may be tried again */
	if (audit_reopen() == -1)
		log_err("audit log re-open failed; still writing to the previous file");
}

static void
conn_sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	if (g.stopping) {
		log_info("signal %d: already shutting down", (int)sig);
		return;
	}
	g.stopping = 1;
	log_info("signal %d: shutting down (finishing in-flight requests, up to %d ms)",
	    (int)sig, g.cfg->limits.grace_ms);
	conn_stop_workers();
	event_base_loopbreak(g.base);
}

static void
conn_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t gen = state_generation();

	state_check_files();
	if (state_generation() != gen)
		conn_wake_workers();
	(void)audit_check_file();
	if (g.ticks++ % 60 == 0)
		state_check_crl_expiry();
}

static void
conn_pidfile_write(const struct config *cfg)
{
	char tmp[PATH_MAX + 8], buf[32];
	int fd, n;

	if (cfg->dir == NULL)
		return;
	snprintf(g.pidfile, sizeof(g.pidfile), "%s/certgate.pid", cfg->dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", g.pidfile);
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 || write(fd, buf, (size_t)n) != n || close(fd) == -1 ||
	    rename(tmp, g.pidfile) == -1) {
		log_warn("cannot write %s: %s (scripts cannot signal this gateway)",
		    g.pidfile, strerror(errno));
		if (fd != -1)
			unlink(tmp);
		g.pidfile[0] = '\0';
	}
}

/* Removes the pid file unless another gateway has replaced it since. */
static void
conn_pidfile_remove(void)
{
	char buf[32];
	ssize_t n;
	int fd;

	if (g.pidfile[0] == '\0')
		return;
	if ((fd = open(g.pidfile, O_RDONLY | O_CLOEXEC)) == -1)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		if (atol(buf) == (long)getpid())
			unlink(g.pidfile);
	}
}

static int
conn_main_events(void)
{
	struct timeval sec = { 1, 0 };

	g.sig_hup = evsignal_new(g.base, SIGHUP, conn_sighup_cb, NULL);
	g.sig_term = evsignal_new(g.base, SIGTERM, conn_sigterm_cb, NULL);
	g.sig_int = evsignal_new(g.base, SIGINT, conn_sigterm_cb, NULL);
	g.tick = event_new(g.base, -1, EV_PERSIST, conn_tick_cb, NULL);
	if (g.sig_hup == NULL || g.sig_term == NULL || g.sig_int == NULL || g.tick == NULL ||
	    evsignal_add(g.sig_hup, NULL) == -1 || evsignal_add(g.sig_term, NULL) == -1 ||
	    evsignal_add(g.sig_int, NULL) == -1 || event_add(g.tick, &sec) == -1) {
		log_err("cannot set up signal handling");
		return -1;
	}
	return 0;
}

static void
conn_main_events_free(void)
{
	if (g.sig_hup)
		event_free(g.sig_hup);
	if (g.sig_term)
		event_free(g.sig_term);
	if (g.sig_int)
		event_free(g.sig_int);
	if (g.tick)
		event_free(g.tick);
	g.sig_hup = g.sig_term = g.sig_int = g.tick = NULL;
}

static int
conn_nworkers(const struct config *cfg)
{
	long n = cfg->workers;

	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	if (n > CONN_MAX_WORKERS)
		n = CONN_MAX_WORKERS;
	return (int)n;
}

/* Starts the workers and waits until each one is ready (or failed). */
static int
conn_start_workers(struct config *cfg)
{
	int i, failed = 0;

	g.nworkers = conn_nworkers(cfg);
	if ((g.workers = calloc((size_t)g.nworkers, sizeof(*g.workers))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		return -1;
	}
	if (conn_port_free(cfg) == -1)
		return -1;
	for (i = 0; i < g.nworkers; i++) {
		if (conn_worker_init(&g.workers[i], i, cfg) == -1)
			return -1;
	}
	for (i = 0; i < g.nworkers; i++) {
		if ((errno = pthread_create(&g.workers[i].thread, NULL, conn_worker_main,
		    &g.workers[i])) != 0) {
			log_err("pthread_create: %s", strerror(errno));
			return -1;
		}
		g.nstarted++;
	}
	pthread_mutex_lock(&g.ready_mtx);
	while (g.nready < g.nstarted)
		pthread_cond_wait(&g.ready_cv, &g.ready_mtx);
	pthread_mutex_unlock(&g.ready_mtx);
	for (i = 0; i < g.nstarted; i++)
		if (!((struct worker_priv *)g.workers[i].priv)->ok)
			failed = 1;
	return failed ? -1 : 0;
}

static void
conn_join_workers(void)
{
	int i;

	conn_stop_workers();
	for (i = 0; i < g.nstarted; i++)
		pthread_join(g.workers[i].thread, NULL);
	for (i = 0; g.workers != NULL && i < g.nworkers; i++)
		conn_worker_free(&g.workers[i]);
	free(g.workers);
	g.workers = NULL;
	g.nworkers = g.nstarted = 0;
}

/* Token signatures off the event loop (signer.h), when configured and possible. */
static int
conn_signer_start(const struct config *cfg, EVP_PKEY *key)
{
	/* Also in synchronous mode: the key signs in per-thread sessions of its own. */
	if (p11_key_enable_async(key, NULL) == -1) {
		log_info("the server key is not a token key: signing stays synchronous");
		return 0;
	}
	if (!cfg->signer.async) {
		log_info("signer.async is false: token signatures run on the worker threads "
		    "and block their event loop");
		return 0;
	}
	if (!signer_async_capable()) {
		log_warn("OpenSSL async jobs are not available on this platform: token "
		    "signatures run synchronously on the worker threads");
		return 0;
	}
	if ((g.signer = signer_pool_new(cfg->signer.threads, cfg->signer.queue,
	    cfg->signer.timeout_ms)) == NULL)
		return -1;
	if (p11_key_enable_async(key, g.signer) == -1) {
		signer_pool_free(g.signer);
		g.signer = NULL;
	}
	return 0;
}

static void
conn_signer_stop(EVP_PKEY *key)
{
	if (g.signer == NULL)
		return;
	(void)p11_key_enable_async(key, NULL);
	signer_pool_free(g.signer);
	g.signer = NULL;
}

/* Descriptors a connection may hold at once: the client socket, and either the
 * async job's eventfd (only while its handshake waits for a signature) or the
 * upstream socket of its request in flight (only after the handshake): never
 * both. Idle pooled upstream connections are counted per worker. */
#define CONN_FDS_PER_CONN	2
#define CONN_FDS_RESERVED	256	/* listeners, token files, logs, admin */

/* Raises the descriptor limit to the hard limit and caps max_connections to what it
 * allows. Running out of descriptors is worse than refusing a connection: SoftHSM
 * re-opens its token files on every operation and fails every signature without
 * them, so the budget is enforced here rather than discovered at EMFILE. */
static void
conn_fd_budget(struct config *cfg)
{
	struct rlimit rl;
	rlim_t need, cap, fixed;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	fixed = CONN_FDS_RESERVED + (rlim_t)(cfg->upstream.pool_size > 0 ?
	    cfg->upstream.pool_size : 0) * (rlim_t)conn_nworkers(cfg);
	need = (rlim_t)cfg->limits.max_connections * CONN_FDS_PER_CONN + fixed;
	if (rl.rlim_max < need) {
		/* Privileged (CAP_SYS_RESOURCE) it may raise the hard limit too, as
		 * nginx's worker_rlimit_nofile does; otherwise EPERM, and the soft limit
		 * goes up to the hard one below. */
		struct rlimit want = { need, need };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s",
			    (unsigned long long)rl.rlim_cur, strerror(errno));
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need)
		return;
	cap = rl.rlim_cur > fixed + CONN_FDS_PER_CONN ?
	    (rl.rlim_cur - fixed) / CONN_FDS_PER_CONN : 1;
	log_warn("limits.max_connections %d needs %llu descriptors but the limit is %llu: "
	    "serving at most %llu connections (raise `ulimit -n`)",
	    cfg->limits.max_connections, (unsigned long long)need,
	    (unsigned long long)rl.rlim_cur, (unsigned long long)cap);
	cfg->limits.max_connections = (int)cap;
}

int
conn_serve(struct config *cfg)
{
	EVP_PKEY *key = NULL;
	int rc = 1, state_ok = 0, audit_ok = 0;

	g.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	conn_fd_budget(cfg);
	if (evthread_use_pthreads() == -1) {
		log_err("evthread_use_pthreads failed");
		return 1;
	}
	if (tls_load_server_key(cfg, &key) == -1)
		goto fail;
	if (conn_signer_start(cfg, key) == -1)
		goto fail;
	/* Token health off the main loop (p11.h): /healthz never waits for a token. */
	if (p11_monitor_start(CONN_HEALTH_INTERVAL_MS) == -1)
		goto fail;
	if (state_init(cfg, key) == -1)
		goto fail;
	state_ok = 1;
	if (audit_open(cfg->audit_file) == -1)
		goto fail;
	audit_ok = 1;
	if ((g.base = event_base_new()) == NULL) {
		log_err("event_base_new failed");
		goto fail;
	}
	/* libevent restores, when its signal events are freed at shutdown, the handlers
	 * it found when they were added: with SIG_IGN there, a second SIGTERM during the
	 * shutdown (a supervisor repeating itself) cannot kill the process half-way. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (conn_main_events() == -1)
		goto fail;
	if (admin_start(g.base, cfg) == -1)
		goto fail;
	if (conn_start_workers(cfg) == -1)
		goto fail;
	conn_pidfile_write(cfg);
	log_info("certgate %s listening on %s:%u (%d workers), upstream %s", CERTGATE_VERSION,
	    cfg->listen_host, (unsigned)cfg->listen_port, g.nworkers,
	    cfg->upstream.url ? cfg->upstream.url : "-");
	event_base_dispatch(g.base);
	rc = 0;
fail:
	conn_join_workers();
	/* Every handshake is over: no job waits for the pool any more. */
	conn_signer_stop(key);
	admin_stop();
	conn_main_events_free();
	if (g.base != NULL)
		event_base_free(g.base);
	g.base = NULL;
	conn_pidfile_remove();
	p11_monitor_stop();
	if (state_ok)
		state_shutdown();
	if (audit_ok)
		audit_close();
	ip_table_free();
	EVP_PKEY_free(key);
	tls_shutdown();
	p11_shutdown();
	if (rc == 0)
		log_info("stopped");
	return rc;
}
