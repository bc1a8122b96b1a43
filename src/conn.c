/* Connections: the TLS handshake, the peer's identity, per-IP limits and the one
 * close path (conn.h).
 *
 * The handshake is driven here with SSL_do_handshake on a non-blocking socket and
 * our own readiness event and timer, not by bufferevent_openssl: libevent cannot
 * drive SSL_ERROR_WANT_ASYNC (libevent#403), which an asynchronous token needs.
 * With a signer pool (signer.h) the handshake runs with SSL_MODE_ASYNC: the token
 * signature pauses its async job, SSL_do_handshake returns SSL_ERROR_WANT_ASYNC,
 * and the job's wait fd (an eventfd the pool writes) is watched like the socket
 * until the signature is done; the worker serves other connections meanwhile. Only
 * then is the session wrapped in a bufferevent_openssl and handed to the
 * listener's application. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "activity.h"
#include "audit.h"
#include "cidr.h"
#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "ocspcheck.h"
#include "proxyproto.h"
#include "signer.h"
#include "state.h"
#include "tls.h"
#include "tlsvcache.h"

#define CONN_IP_BUCKETS		4096

struct conn {
	uint64_t id;
	struct conn_home *home;
	int fd;
	SSL *ssl;
	struct event *hs_ev;            /* handshake read/write readiness */
	struct event *hs_timer;         /* handshake timeout */
	struct bufferevent *bev;        /* set once established */
	char peer_ip[INET6_ADDRSTRLEN];
	char peer[INET6_ADDRSTRLEN + 8];/* "ip:port" for logs and audit */
	struct identity_peer peer_id;   /* from the verified client certificate */
	int resumed;
	int closing;
	int started;                    /* the application took it over */
	int ip_held;                    /* counted in the per-IP table under peer_ip */
	int pp_peek;                    /* not trusted for PROXY: refuse a PROXY header */
	unsigned char *pp_buf;          /* reading a PROXY header (PROXYPROTO_MAX_ADDR) */
	size_t pp_have, pp_need, pp_skip;
	STACK_OF(X509) *chain;          /* conn_peer_chain, built at first use */
	struct ocspcheck *ocsp;         /* tls.ocsp applies to the peer's certificate */
	/* The CA bundle the peer was last verified under (tls_trust_id) when that is
	 * not its session's (conn_retrust); trust_len 0: the session's. */
	unsigned char trust[SSL_MAX_SID_CTX_LENGTH];
	unsigned int trust_len;
	void *app_data;
	TAILQ_ENTRY(conn) link;
};

/* The close reasons (conn.h): the one place they are named. */
static const char *const conn_end_names[CONN_END_COUNT] = {
	[CONN_END_NONE] = "none",
	[CONN_END_DONE] = "done",
	[CONN_END_CLIENT_EOF] = "client_closed",
	[CONN_END_CLIENT_ERROR] = "client_error",
	[CONN_END_CLIENT_TIMEOUT] = "client_timeout",
	[CONN_END_IDLE] = "idle_timeout",
	[CONN_END_STALLED] = "client_stalled",
	[CONN_END_UPSTREAM] = "upstream_cut",
	[CONN_END_REVOKED] = "revoked",
	[CONN_END_EXPIRED] = "expired",
	[CONN_END_UNMAPPED] = "unmapped",
	[CONN_END_UNTRUSTED] = "untrusted",
	[CONN_END_NO_CERT] = "no_certificate",
	[CONN_END_BAD_CERT] = "bad_certificate",
	[CONN_END_HANDSHAKE] = "handshake_failed",
	[CONN_END_PROBE] = "probe",
	[CONN_END_HS_TIMEOUT] = "handshake_timeout",
	[CONN_END_NO_MEMORY] = "out_of_memory",
	[CONN_END_INTERNAL] = "internal_error",
	[CONN_END_SHUTDOWN] = "shutdown",
	[CONN_END_PROXY] = "proxy_protocol",
	[CONN_END_OCSP] = "ocsp_unavailable",
};

struct ip_ent {
	struct ip_ent *next;
	unsigned n;
	char ip[INET6_ADDRSTRLEN];
};

static atomic_uint_fast64_t conn_next_id = 1;
static atomic_int conn_total;
static atomic_long conn_ended[CONN_END_COUNT];
static pthread_mutex_t ip_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct ip_ent *ip_tab[CONN_IP_BUCKETS];
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void conn_hs_step(struct conn *c);
static void conn_pp_step(struct conn *c);
static void conn_start(struct conn *c);
static void conn_ocsp_done(void *arg, enum ocspcheck_result r);

const char *
conn_end_name(enum conn_end why)
{
	return (unsigned)why < CONN_END_COUNT ? conn_end_names[why] : "unknown";
}

static void
conn_metrics(FILE *f)
{
	size_t i;
	long v;

	metrics_put_head(f, "connections_closed_total", "counter",
	    "Client connections closed, by reason.");
	for (i = 1; i < CONN_END_COUNT; i++)
		if ((v = atomic_load_explicit(&conn_ended[i], memory_order_relaxed)) != 0)
			fprintf(f, "certgate_connections_closed_total{reason=\"%s\"} %ld\n",
			    conn_end_names[i], v);
}

/* Handshakes that did not complete, counted by reason
 * (certgate_handshake_failures_total{reason}); the refusals of a client certificate
 * (none, untrusted, expired, revoked by CRL or OCSP, unreadable, no good OCSP
 * answer) and of a PROXY header also get an audit line and a place in the status
 * page's recent refusals. */
static atomic_long conn_hs_failed[CONN_END_COUNT];

static void
conn_hs_metrics(FILE *f)
{
	size_t i;
	long v;

	metrics_put_head(f, "handshake_failures_total", "counter",
	    "TLS handshakes that did not complete, by reason.");
	for (i = 1; i < CONN_END_COUNT; i++)
		if ((v = atomic_load_explicit(&conn_hs_failed[i], memory_order_relaxed)) != 0)
			fprintf(f, "certgate_handshake_failures_total{reason=\"%s\"} %ld\n",
			    conn_end_names[i], v);
}

static void
conn_hs_refused(struct conn *c, enum conn_end why)
{
	struct identity_peer tmp = { 0 }, *p = &c->peer_id;
	const struct identity_agent *a = NULL;
	struct gw_state *st = NULL;
	struct audit_rec r;
	char rid[64], what[160];
	X509 *x = NULL;

	if ((unsigned)why < CONN_END_COUNT)
		atomic_fetch_add_explicit(&conn_hs_failed[why], 1, memory_order_relaxed);
	if (why != CONN_END_NO_CERT && why != CONN_END_UNTRUSTED && why != CONN_END_EXPIRED &&
	    why != CONN_END_REVOKED && why != CONN_END_BAD_CERT && why != CONN_END_OCSP &&
	    why != CONN_END_PROXY)
		return;
	/* After a failed verification OpenSSL keeps no peer certificate: tls.c does. */
	if (p->serial[0] == '\0' && c->ssl != NULL && (x = tls_refused_cert(c->ssl)) != NULL &&
	    identity_peer_from_cert(x, &tmp) == 0)
		p = &tmp;
	if (p->serial[0] != '\0' && (st = state_get()) != NULL && st->map != NULL) {
		if (p == &tmp)
			identity_peer_own_ca(p, x, st->own_ca);
		a = identity_lookup(st->map, p);
	}
	memset(&r, 0, sizeof(r));
	audit_request_id(rid, sizeof(rid), c->id, 0);
	r.agent = a ? a->id : NULL;
	r.serial = p->serial[0] ? p->serial : NULL;
	r.peer = c->peer;
	r.method = "tls";
	r.decision = "deny";
	r.reason = conn_end_name(why);
	r.request_id = rid;
	r.subject = p->subject;
	r.uri = p->nuris > 0 ? p->uris[0] : NULL;
	(void)audit_write(&r);
	snprintf(what, sizeof(what), "TLS handshake%s%s", r.serial ? ", serial " : "",
	    r.serial ? r.serial : "");
	activity_refusal(r.agent, c->peer, r.reason, what);
	state_put(st);
	identity_peer_clear(&tmp);
}

static void
conn_init(void)
{
	(void)metrics_add_renderer(conn_metrics);
	(void)metrics_add_renderer(conn_hs_metrics);
}

/* ------------------------------------------------------------------------- */
/* Connection limits */

static unsigned
conn_ip_hash(const char *s)
{
	return hash_str(s) % CONN_IP_BUCKETS;
}

/* Counts one more connection from ip; -1 when that would exceed max. */
static int
conn_ip_acquire(const char *ip, int max)
{
	struct ip_ent *e;
	unsigned h = conn_ip_hash(ip);
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
conn_ip_release(const char *ip)
{
	struct ip_ent **pp, *e;

	pthread_mutex_lock(&ip_mtx);
	for (pp = &ip_tab[conn_ip_hash(ip)]; (e = *pp) != NULL; pp = &e->next) {
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

void
conn_shutdown(void)
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
/* Accessors */

struct bufferevent *conn_bev(const struct conn *c) { return c->bev; }
struct event_base *conn_base(const struct conn *c) { return c->home->base; }
const struct config *conn_cfg(const struct conn *c) { return c->home->cfg; }
uint64_t conn_id(const struct conn *c) { return c->id; }
const char *conn_peer(const struct conn *c) { return c->peer; }
const char *conn_peer_ip(const struct conn *c) { return c->peer_ip; }
const struct identity_peer *conn_peer_id(const struct conn *c) { return &c->peer_id; }
X509 *conn_peer_cert(const struct conn *c)
{
	return c->ssl != NULL && c->peer_id.serial[0] != '\0' ?
	    SSL_get0_peer_certificate(c->ssl) : NULL;
}
int conn_resumed(const struct conn *c) { return c->resumed; }

STACK_OF(X509) *
conn_peer_chain(struct conn *c)
{
	STACK_OF(X509) *v;
	struct gw_state *st;
	X509 *leaf;

	if (c->chain != NULL || (leaf = conn_peer_cert(c)) == NULL)
		return c->chain;
	/* A full handshake kept the chain it verified; a resumed one verified nothing,
	 * so the chain is built again against today's trust store. */
	if ((v = SSL_get0_verified_chain(c->ssl)) != NULL && sk_X509_num(v) > 0)
		c->chain = X509_chain_up_ref(v);
	else if ((st = state_get()) != NULL) {
		c->chain = tls_build_chain(st->ssl_ctx, leaf, SSL_get_peer_cert_chain(c->ssl));
		state_put(st);
	}
	return c->chain;
}
int conn_draining(const struct conn *c) { return c->home->draining; }
void *conn_app_data(const struct conn *c) { return c->app_data; }
void conn_set_app_data(struct conn *c, void *data) { c->app_data = data; }
void *conn_worker_data(const struct conn *c) { return c->home->app_wdata; }

/* ------------------------------------------------------------------------- */
/* Close path */

void
conn_close(struct conn *c, enum conn_end why)
{
	struct conn_home *h = c->home;
	const struct conn_app *app = h->app;
	int cut;

	if (c->closing)
		return;
	c->closing = 1;
	if (c->bev == NULL)     /* the handshake (or its OCSP check) did not complete */
		conn_hs_refused(c, why);
	cut = c->started && app->cut != NULL && app->cut(c);
	/* A handshake paused for a signature: end its async job before SSL_free. */
	if (c->bev == NULL && c->ssl != NULL && SSL_waiting_for_async(c->ssl))
		signer_ssl_abandon(c->ssl);
	if (c->started && app->end != NULL)
		app->end(c, why);
	c->started = 0;
	if (c->hs_ev != NULL)
		event_free(c->hs_ev);
	if (c->hs_timer != NULL)
		event_free(c->hs_timer);
	c->hs_ev = c->hs_timer = NULL;
	if (c->bev != NULL) {
		/* close_notify says "that was everything": only true when nothing we owed
		 * the client is dropped. Without it the client can tell that a
		 * close-delimited body was cut short. One attempt; a full send buffer is
		 * not waited for. */
		if (!cut && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
		} else
			log_debug("connection %llu from %s: closing without close_notify (%s)",
			    (unsigned long long)c->id, c->peer, cut ? "response cut short" :
			    "output unsent");
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
	ERR_clear_error();
	if (c->fd != -1)
		close(c->fd);
	TAILQ_REMOVE(&h->conns, c, link);
	h->nconns--;
	if (c->ip_held)
		conn_ip_release(c->peer_ip);
	free(c->pp_buf);
	ocspcheck_free(c->ocsp);
	sk_X509_pop_free(c->chain, X509_free);
	atomic_fetch_sub(&conn_total, 1);
	metrics_dec(M_CONN_ACTIVE);
	if ((unsigned)why < CONN_END_COUNT)
		atomic_fetch_add_explicit(&conn_ended[why], 1, memory_order_relaxed);
	if (why == CONN_END_REVOKED)
		metrics_inc(M_REVOKED_REFUSED);
	log_debug("connection %llu from %s closed: %s", (unsigned long long)c->id, c->peer,
	    conn_end_name(why));
	identity_peer_clear(&c->peer_id);
	free(c);
}

/* ------------------------------------------------------------------------- */
/* Handshake */

static enum conn_end conn_retrust(struct conn *c, const struct gw_state *st);

/* Why an established peer may not continue: expired; with st also revoked and
 * (check_map) unmapped. CONN_END_NONE when fine. */
static enum conn_end
conn_peer_refusal(const struct conn *c, const struct gw_state *st, int check_map, time_t now)
{
	if (c->peer_id.not_after != 0 && c->peer_id.not_after < now)
		return CONN_END_EXPIRED;
	if (st == NULL)
		return CONN_END_NONE;
	if (state_is_revoked(st, c->peer_id.issuer, c->peer_id.serial))
		return CONN_END_REVOKED;
	if (check_map && st->map != NULL && identity_lookup(st->map, &c->peer_id) == NULL)
		return CONN_END_UNMAPPED;
	return CONN_END_NONE;
}

/* The close reason for a failed verification. */
static enum conn_end
conn_verify_end(long vr)
{
	switch (vr) {
	case X509_V_ERR_CERT_REVOKED:
		return CONN_END_REVOKED;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return CONN_END_EXPIRED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return CONN_END_UNTRUSTED;
	default:
		return CONN_END_HANDSHAKE;
	}
}

static void
conn_hs_fail(struct conn *c, int err)
{
	enum conn_end why = CONN_END_HANDSHAKE;
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
			conn_close(c, CONN_END_PROBE);
			return;
		}
		if (vr != X509_V_OK) {
			why = conn_verify_end(vr);
			snprintf(reason, sizeof(reason), "certificate verify failed: %s",
			    X509_verify_cert_error_string(vr));
		} else if (e != 0) {
			if (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
				why = CONN_END_NO_CERT;
			snprintf(reason, sizeof(reason), "%s",
			    ERR_reason_error_string(e) ? ERR_reason_error_string(e) :
			    "TLS error");
		} else
			snprintf(reason, sizeof(reason), "TLS error");
		break;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == EAGAIN) {
			log_debug("handshake from %s: connection closed by peer", c->peer);
			metrics_inc(M_HS_FAIL);
			conn_close(c, CONN_END_PROBE);
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
	conn_close(c, why);
}

static void
conn_hs_done(struct conn *c)
{
	struct conn_home *h = c->home;
	struct gw_state *st;
	enum conn_end refusal;
	X509 *peer;

	event_free(c->hs_ev);
	event_free(c->hs_timer);
	c->hs_ev = c->hs_timer = NULL;
	/* Only the handshake signs; reads and writes need no job around them. */
	SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
	c->resumed = SSL_session_reused(c->ssl);
	metrics_inc(c->resumed ? M_HS_RESUMED : M_HS_OK);
	if ((peer = SSL_get0_peer_certificate(c->ssl)) == NULL) {
		if (h->app->optional_cert)
			goto start;
		log_info("handshake from %s: no client certificate", c->peer);
		conn_close(c, CONN_END_NO_CERT);
		return;
	}
	if (identity_peer_from_cert(peer, &c->peer_id) == -1) {
		log_info("handshake from %s: cannot read the client certificate", c->peer);
		conn_close(c, CONN_END_BAD_CERT);
		return;
	}
	/* Resumed sessions skipped chain and CRL verification: check the serial
	 * against the current revocation list whatever the handshake was. */
	st = state_get();
	/* Issuer binding (identity.h): once per connection, lookups reuse it. From the
	 * chain verified for it when there is one (a full handshake, or the verified
	 * chain cache for a resumed session's certificate), else by the signature. */
	if (st != NULL) {
		STACK_OF(X509) *v = SSL_get0_verified_chain(c->ssl);

		if (sk_X509_num(v) < 2 && c->chain == NULL)
			c->chain = tlsvcache_lookup(SSL_get_SSL_CTX(c->ssl), peer, time(NULL));
		if (sk_X509_num(v) >= 2)
			identity_peer_own_ca_chain(&c->peer_id, v, st->own_ca);
		else if (sk_X509_num(c->chain) >= 2)
			identity_peer_own_ca_chain(&c->peer_id, c->chain, st->own_ca);
		else
			identity_peer_own_ca(&c->peer_id, peer, st->own_ca);
	}
	/* A handshake that began under the CA bundle a reload just replaced is judged
	 * by the new one, as the sweep judges open connections. */
	refusal = st != NULL ? conn_retrust(c, st) : CONN_END_NONE;
	if (refusal == CONN_END_NONE)
		refusal = conn_peer_refusal(c, st, 0, time(NULL));
	state_put(st);
	if (refusal != CONN_END_NONE) {
		log_info("refused %s from %s (serial %s, %s handshake)", conn_end_name(refusal),
		    c->peer, c->peer_id.serial, c->resumed ? "resumed" : "full");
		conn_close(c, refusal);
		return;
	}
	/* OCSP (tls.ocsp), for full and resumed handshakes alike: the answer may be
	 * cached, or the connection waits for a query on this loop. */
	if (ocspcheck_new(h->cfg, peer, conn_peer_chain(c), &c->ocsp) == -1) {
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	if (c->ocsp != NULL) {
		enum ocspcheck_result r = ocspcheck_start(c->ocsp, h->base, time(NULL),
		    conn_ocsp_done, c);

		if (r == OCSPCHECK_PENDING)
			return;
		conn_ocsp_done(c, r);
		return;
	}
start:
	conn_start(c);
}

/* The OCSP verdict for a connection that has finished its handshake. */
static void
conn_ocsp_done(void *arg, enum ocspcheck_result r)
{
	struct conn *c = arg;

	if (r == OCSPCHECK_PASS) {
		conn_start(c);
		return;
	}
	log_info("refused %s (serial %s): OCSP %s", c->peer, c->peer_id.serial,
	    r == OCSPCHECK_REVOKED ? "says revoked" : "gave no good answer (tls.ocsp.mode hard)");
	conn_close(c, r == OCSPCHECK_REVOKED ? CONN_END_REVOKED : CONN_END_OCSP);
}

/* The peer is accepted: wrap the session and hand it to the application. */
static void
conn_start(struct conn *c)
{
	struct conn_home *h = c->home;

	/* libevent reads the error queue to report bufferevent errors: start clean. */
	ERR_clear_error();
	log_debug("handshake from %s: %s, %s, serial %s%s", c->peer, SSL_get_version(c->ssl),
	    SSL_get_cipher_name(c->ssl), c->peer_id.serial, c->resumed ? ", resumed" : "");
	c->bev = bufferevent_openssl_socket_new(h->base, c->fd, c->ssl, BUFFEREVENT_SSL_OPEN,
	    BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		log_err("bufferevent_openssl_socket_new failed for %s", c->peer);
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	/* Most HTTP clients close without close_notify; that is an EOF, not an attack
	 * (HTTP/1.1 framing protects against truncation). */
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	c->started = 1;
	if (h->app->start(c) == -1) {
		c->started = 0;
		conn_close(c, CONN_END_INTERNAL);
	}
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
	event_assign(c->hs_ev, c->home->base, c->fd, what, conn_hs_cb, c);
	if (event_priority_set(c->hs_ev, CONN_PRI_HANDSHAKE) == -1 ||
	    event_add(c->hs_ev, NULL) == -1) {
		log_err("event_add failed for %s", c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, CONN_END_INTERNAL);
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
	int ms = c->home->cfg->signer.timeout_ms + 100;

	if (SSL_get_all_async_fds(c->ssl, NULL, &n) != 1 || n == 0 ||
	    n > sizeof(fds) / sizeof(fds[0]) || SSL_get_all_async_fds(c->ssl, fds, &n) != 1) {
		log_err("handshake from %s waits for a signature but has no wait fd",
		    c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, CONN_END_INTERNAL);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_del(c->hs_ev);
	event_assign(c->hs_ev, c->home->base, fds[0], EV_READ, conn_hs_cb, c);
	if (event_priority_set(c->hs_ev, CONN_PRI_HANDSHAKE) == -1 ||
	    event_add(c->hs_ev, &tv) == -1) {
		log_err("event_add failed for %s", c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, CONN_END_INTERNAL);
	}
}

/* A listener that trusts some addresses for PROXY headers refuses one from any other
 * address by name (OpenSSL would only see a broken ClientHello). Looks at the first
 * bytes without consuming them. Returns 1 when the handshake may go on, 0 when it
 * waits for bytes or c was closed. */
static int
conn_pp_peek(struct conn *c)
{
	unsigned char b[12];
	ssize_t n;

	n = recv(c->fd, b, sizeof(b), MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		conn_hs_arm(c, EV_READ);
		return 0;
	}
	if (n > 0 && proxyproto_looks_like(b, (size_t)n)) {
		log_info("refused %s: a PROXY protocol header from an address not in "
		    "proxy_protocol.trusted", c->peer);
		metrics_inc(M_HS_FAIL);
		conn_close(c, CONN_END_PROXY);
		return 0;
	}
	c->pp_peek = 0;         /* EOF and errors: the handshake reports them */
	return 1;
}

static void
conn_hs_step(struct conn *c)
{
	int r, err;

	if (c->pp_buf != NULL) {
		conn_pp_step(c);
		return;
	}
	if (c->pp_peek && !conn_pp_peek(c))
		return;
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
	conn_close(c, CONN_END_HS_TIMEOUT);
}

/* ------------------------------------------------------------------------- */
/* Accept */

static void
conn_peer_name(const struct sockaddr_storage *ss, char *ip, size_t iplen, char *peer,
    size_t peerlen)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	snprintf(ip, iplen, "?");
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &s4->sin_addr, ip, iplen);
		snprintf(peer, peerlen, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, iplen);
		snprintf(peer, peerlen, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
	} else
		snprintf(peer, peerlen, "?");
}

/* Counts c in the per-IP table under its (possibly PROXY-given) address. -1: over
 * limits.max_connections_per_ip, c not counted. */
static int
conn_ip_take(struct conn *c)
{
	if (conn_ip_acquire(c->peer_ip, c->home->cfg->limits.max_connections_per_ip) == -1) {
		log_debug("refused %s: max_connections_per_ip (%d) reached", c->peer,
		    c->home->cfg->limits.max_connections_per_ip);
		metrics_inc(M_CONN_REJECTED_LIMIT);
		return -1;
	}
	c->ip_held = 1;
	return 0;
}

/* The PROXY header is complete: the client it names becomes the peer (logs, audit,
 * X-Forwarded-For, per-IP limits), then the TLS handshake starts. */
static void
conn_pp_done(struct conn *c, const struct proxyproto *pp)
{
	char was[sizeof(c->peer)];

	free(c->pp_buf);
	c->pp_buf = NULL;
	memcpy(was, c->peer, sizeof(was));
	if (!pp->local)
		conn_peer_name(&pp->src, c->peer_ip, sizeof(c->peer_ip), c->peer,
		    sizeof(c->peer));
	log_debug("connection %llu via %s: PROXY header %s%s", (unsigned long long)c->id, was,
	    pp->local ? "LOCAL (balancer's own)" : "for ", pp->local ? "" : c->peer);
	if (conn_ip_take(c) == -1) {
		conn_close(c, CONN_END_PROBE);
		return;
	}
	conn_hs_arm(c, EV_READ);
}

/* Reads the PROXY v2 header a trusted balancer sends before the ClientHello: never
 * a byte beyond it (OpenSSL reads the rest of the socket), and of its TLVs only a
 * fixed-size discard buffer's worth at a time. */
static void
conn_pp_step(struct conn *c)
{
	unsigned char skip[512];
	struct proxyproto pp;
	const char *why = NULL;
	ssize_t n;
	size_t want;
	int rc;

	for (;;) {
		want = c->pp_skip > 0 ? (c->pp_skip < sizeof(skip) ? c->pp_skip : sizeof(skip)) :
		    c->pp_need - c->pp_have;
		n = recv(c->fd, c->pp_skip > 0 ? skip : c->pp_buf + c->pp_have, want, 0);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			conn_hs_arm(c, EV_READ);
			return;
		}
		if (n <= 0) {
			log_info("connection from %s %s before its PROXY header ended", c->peer,
			    n == 0 ? "closed" : strerror(errno));
			conn_close(c, n == 0 ? CONN_END_PROBE : CONN_END_CLIENT_ERROR);
			return;
		}
		if (c->pp_skip > 0) {
			if ((c->pp_skip -= (size_t)n) == 0)
				break;
			continue;
		}
		c->pp_have += (size_t)n;
		/* parsed after every read: a stream that is not a PROXY header is refused
		 * at its first bytes, not after a timeout */
		rc = proxyproto_parse(c->pp_buf, c->pp_have, &pp, &c->pp_need, &why);
		if (rc == -1) {
			log_info("refused %s: %s (proxy_protocol.trusted requires one)", c->peer,
			    why);
			metrics_inc(M_HS_FAIL);
			conn_close(c, CONN_END_PROXY);
			return;
		}
		if (rc == 1) {
			c->pp_skip = pp.total - c->pp_have;
			if (c->pp_skip == 0)
				break;
		}
	}
	conn_pp_done(c, &pp);
}

void
conn_accept(struct conn_home *h, int fd, const struct sockaddr_storage *ss)
{
	const struct config_limits *lim = &h->cfg->limits;
	const struct config_proxy_protocol *ppc = &h->cfg->proxy_protocol;
	struct timeval tv;
	struct gw_state *st;
	struct conn *c;
	char ip[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN + 8];
	int one = 1, pp_trusted;

	pthread_once(&conn_once, conn_init);
	conn_peer_name(ss, ip, sizeof(ip), peer, sizeof(peer));
	if (atomic_fetch_add(&conn_total, 1) >= lim->max_connections &&
	    lim->max_connections > 0) {
		atomic_fetch_sub(&conn_total, 1);
		log_debug("refused %s: max_connections (%d) reached", peer, lim->max_connections);
		metrics_inc(M_CONN_REJECTED_LIMIT);
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		atomic_fetch_sub(&conn_total, 1);
		close(fd);
		return;
	}
	c->id = atomic_fetch_add(&conn_next_id, 1);
	c->home = h;
	c->fd = fd;
	memcpy(c->peer_ip, ip, sizeof(c->peer_ip));
	memcpy(c->peer, peer, sizeof(c->peer));
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	h->nconns++;
	metrics_inc(M_CONN_ACCEPTED);
	metrics_inc(M_CONN_ACTIVE);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	/* A balancer's connections count against the client its PROXY header names,
	 * not against the balancer's own address. */
	pp_trusted = ppc->ntrusted > 0 && cidr_match_any(ppc->trusted, ppc->ntrusted, ss);
	if (pp_trusted) {
		if ((c->pp_buf = malloc(PROXYPROTO_MAX_ADDR)) == NULL) {
			conn_close(c, CONN_END_NO_MEMORY);
			return;
		}
		c->pp_need = PROXYPROTO_HEAD;
	} else {
		c->pp_peek = ppc->ntrusted > 0;
		if (conn_ip_take(c) == -1) {
			conn_close(c, CONN_END_PROBE);
			return;
		}
	}
	if ((st = state_get()) == NULL) {
		conn_close(c, CONN_END_INTERNAL);
		return;
	}
	c->ssl = SSL_new(h->app->optional_cert ? st->enroll_ctx : st->ssl_ctx);
	state_put(st);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		log_sslerr("cannot set up TLS for %s", peer);
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	SSL_set_accept_state(c->ssl);
	if (h->async_sign)
		SSL_set_mode(c->ssl, SSL_MODE_ASYNC);
	c->hs_ev = event_new(h->base, fd, EV_READ, conn_hs_cb, c);
	c->hs_timer = evtimer_new(h->base, conn_hs_timeout_cb, c);
	if (c->hs_ev == NULL || c->hs_timer == NULL) {
		log_err("event_new failed for %s", peer);
		conn_close(c, CONN_END_NO_MEMORY);
		return;
	}
	/* The handshake timeout covers the PROXY header too. */
	tv.tv_sec = lim->handshake_timeout_ms / 1000;
	tv.tv_usec = (lim->handshake_timeout_ms % 1000) * 1000;
	evtimer_add(c->hs_timer, &tv);
	/* The ClientHello (or PROXY header) is rarely there yet: wait for it. */
	conn_hs_arm(c, EV_READ);
}

/* ------------------------------------------------------------------------- */
/* Re-checks and shutdown */

/* After tls.ca changed (a CA retired, a corporate chain replaced), a connection
 * verified under another bundle is verified again against st's: a certificate
 * whose issuer is no longer trusted ends as untrusted, the chain (RFC 9440) and the
 * own-CA flag (issuer binding) follow the new bundle. Revocation is checked by the
 * caller as always. One chain verification per open connection, and only when the
 * bundle changed. */
static enum conn_end
conn_retrust(struct conn *c, const struct gw_state *st)
{
	SSL_CTX *ctx = c->home->app->optional_cert ? st->enroll_ctx : st->ssl_ctx;
	const unsigned char *id, *mine = c->trust;
	unsigned int len, mlen = c->trust_len;
	const SSL_SESSION *sess;
	STACK_OF(X509) *chain;
	X509 *peer;

	if (ctx == NULL || (id = tls_trust_id(ctx, &len)) == NULL || len > sizeof(c->trust) ||
	    (peer = SSL_get0_peer_certificate(c->ssl)) == NULL)
		return CONN_END_NONE;
	if (mlen == 0 && (sess = SSL_get_session(c->ssl)) != NULL)
		mine = SSL_SESSION_get0_id_context(sess, &mlen);
	if (mlen == len && memcmp(mine, id, len) == 0)
		return CONN_END_NONE;
	if ((chain = tls_build_chain(ctx, peer, SSL_get_peer_cert_chain(c->ssl))) == NULL)
		return CONN_END_UNTRUSTED;
	sk_X509_pop_free(c->chain, X509_free);
	c->chain = chain;
	identity_peer_own_ca(&c->peer_id, peer, st->own_ca);
	memcpy(c->trust, id, len);
	c->trust_len = len;
	return CONN_END_NONE;
}

void
conn_sweep(struct conn_home *h, const struct gw_state *st, time_t now)
{
	enum conn_end why;
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->bev == NULL || c->closing || c->peer_id.serial[0] == '\0')
			continue;
		why = st != NULL ? conn_retrust(c, st) : CONN_END_NONE;
		if (why == CONN_END_NONE)
			why = conn_peer_refusal(c, st, !h->app->optional_cert, now);
		if (why == CONN_END_NONE && c->ocsp != NULL)
			switch (ocspcheck_recheck(c->ocsp, h->base, now)) {
			case OCSPCHECK_REVOKED: why = CONN_END_REVOKED; break;
			case OCSPCHECK_UNAVAILABLE: why = CONN_END_OCSP; break;
			default: break;
			}
		if (why == CONN_END_NONE)
			continue;
		log_info("closing connection from %s (serial %s): %s", c->peer,
		    c->peer_id.serial, conn_end_name(why));
		conn_close(c, why);
	}
}

unsigned
conn_drain(struct conn_home *h, int force)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (force || !c->started || h->app->busy == NULL || !h->app->busy(c))
			conn_close(c, CONN_END_SHUTDOWN);
	}
	return h->nconns;
}
