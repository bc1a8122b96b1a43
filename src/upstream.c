/* Upstream connection pool and request sending (upstream.h). */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "stdiohub.h"

#define UPSTREAM_IOV 16

struct upstream_conn {
	struct upstream_pool *p;
	struct bufferevent *bev;
	int reused;
	int connected;
	int idle;                       /* in the pool */
	TAILQ_ENTRY(upstream_conn) link;
};

struct upstream_pool {
	struct event_base *base;
	const struct config *cfg;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char hostport[300];
	SSL_CTX *ssl_ctx;               /* https upstream */
	TAILQ_HEAD(, upstream_conn) idle;
	unsigned nidle;
};

void
upstream_free(struct upstream_conn *u)
{
	if (u == NULL)
		return;
	if (u->idle) {
		TAILQ_REMOVE(&u->p->idle, u, link);
		u->p->nidle--;
	}
	if (u->bev != NULL)
		bufferevent_free(u->bev);
	free(u);
}

/* An idle pooled connection had data or an event: the upstream closed it (or sent
 * what nobody asked for). Either way it is no longer reusable. */
static void
upstream_idle_readcb(struct bufferevent *bev, void *arg)
{
	upstream_free(arg);
}

static void
upstream_idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
	upstream_free(arg);
}

void
upstream_put(struct upstream_conn *u, int draining)
{
	struct upstream_pool *p = u->p;

	if (draining || p->nidle >= (unsigned)(p->cfg->upstream.pool_size > 0 ?
	    p->cfg->upstream.pool_size : 0)) {
		upstream_free(u);
		return;
	}
	u->reused = 1;
	u->idle = 1;
	bufferevent_set_timeouts(u->bev, NULL, NULL);
	bufferevent_setcb(u->bev, upstream_idle_readcb, NULL, upstream_idle_eventcb, u);
	bufferevent_enable(u->bev, EV_READ);    /* to notice the upstream closing it */
	TAILQ_INSERT_HEAD(&p->idle, u, link);
	p->nidle++;
}

static int
upstream_ip_literal(const char *h)
{
	unsigned char b[16];

	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static struct upstream_conn *
upstream_connect(struct upstream_pool *p)
{
	struct upstream_conn *u;
	SSL *ssl = NULL;
	const char *host = p->cfg->upstream.host;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->p = p;
	if (p->cfg->upstream.command != NULL) {
		/* A stdio upstream: one end of a socketpair the hub serves (stdiohub.h). */
		int fd = stdiohub_connect();

		if (fd == -1) {
			log_warn("stdio upstream: %s", strerror(errno));
			free(u);
			return NULL;
		}
		if ((u->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
			close(fd);
			free(u);
			return NULL;
		}
		u->connected = 1;
		return u;
	}
	if (p->ssl_ctx != NULL) {
		if ((ssl = SSL_new(p->ssl_ctx)) == NULL)
			goto fail;
		if (upstream_ip_literal(host)) {
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host))
				goto fail;
		} else if (!SSL_set_tlsext_host_name(ssl, host) || !SSL_set1_host(ssl, host))
			goto fail;
		u->bev = bufferevent_openssl_socket_new(p->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (u->bev == NULL)
			goto fail;
		ssl = NULL;     /* owned by the bufferevent now */
	} else if ((u->bev = bufferevent_socket_new(p->base, -1,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		goto fail;
	if (bufferevent_socket_connect(u->bev, (struct sockaddr *)&p->addr,
	    (int)p->addrlen) == -1) {
		log_warn("connect to upstream %s: %s", p->hostport, strerror(errno));
		goto fail;
	}
	return u;
fail:
	if (ssl != NULL)
		SSL_free(ssl);
	log_sslerr("cannot open an upstream connection to %s", p->hostport);
	upstream_free(u);
	return NULL;
}

struct upstream_conn *
upstream_get(struct upstream_pool *p, int fresh)
{
	struct upstream_conn *u;

	if (!fresh && (u = TAILQ_FIRST(&p->idle)) != NULL) {
		TAILQ_REMOVE(&p->idle, u, link);
		p->nidle--;
		u->idle = 0;
		return u;
	}
	return upstream_connect(p);
}

struct bufferevent *upstream_bev(const struct upstream_conn *u) { return u->bev; }
int upstream_reused(const struct upstream_conn *u) { return u->reused; }
int upstream_connected(const struct upstream_conn *u) { return u->connected; }
const char *upstream_hostport(const struct upstream_pool *p) { return p->hostport; }
int upstream_is_tls(const struct upstream_pool *p) { return p->ssl_ctx != NULL; }

void
upstream_set_connected(struct upstream_conn *u)
{
	int one = 1;

	u->connected = 1;
	if (u->p->ssl_ctx == NULL)
		(void)setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
}

int
upstream_send(struct upstream_conn *u, struct evbuffer *req)
{
	struct evbuffer_iovec v[UPSTREAM_IOV];
	struct iovec iov[UPSTREAM_IOV];
	struct msghdr mh;
	evutil_socket_t fd;
	ssize_t w = 0;
	size_t skip;
	int i, n;

	n = evbuffer_peek(req, -1, NULL, v, UPSTREAM_IOV);
	if (n < 0 || n > UPSTREAM_IOV) {
		n = 1;
		v[0].iov_base = evbuffer_pullup(req, -1);
		v[0].iov_len = evbuffer_get_length(req);
		if (v[0].iov_base == NULL && v[0].iov_len > 0)
			return -1;
	}
	/* Arming EV_WRITE and a loop pass for a request that fits the socket buffer
	 * costs two epoll_ctl calls: write it now when nothing is queued. */
	if (u->connected && u->p->ssl_ctx == NULL &&
	    evbuffer_get_length(bufferevent_get_output(u->bev)) == 0 &&
	    (fd = bufferevent_getfd(u->bev)) != -1) {
		for (i = 0; i < n; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)n;
		if ((w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0)
			w = 0;          /* the bufferevent retries and reports the error */
	}
	for (i = 0, skip = (size_t)w; i < n; i++) {
		if (skip >= v[i].iov_len) {
			skip -= v[i].iov_len;
			continue;
		}
		if (bufferevent_write(u->bev, (char *)v[i].iov_base + skip,
		    v[i].iov_len - skip) == -1)
			return -1;
		skip = 0;
	}
	return 0;
}

static int
upstream_resolve(struct upstream_pool *p)
{
	const struct config_upstream *u = &p->cfg->upstream;
	struct addrinfo hints, *res = NULL;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", u->port);
	if ((rc = getaddrinfo(u->host, port, &hints, &res)) != 0) {
		log_err("upstream host %s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
	p->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	if (strchr(u->host, ':'))
		snprintf(p->hostport, sizeof(p->hostport), "[%s]:%u", u->host, u->port);
	else
		snprintf(p->hostport, sizeof(p->hostport), "%s:%u", u->host, u->port);
	return 0;
}

static int
upstream_tls_ctx(struct upstream_pool *p)
{
	const struct config_upstream *u = &p->cfg->upstream;
	static const unsigned char alpn[] = "\x08http/1.1";

	if ((p->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(p->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(p->ssl_ctx, SSL_VERIFY_PEER, NULL);
	if (u->ca ? !SSL_CTX_load_verify_locations(p->ssl_ctx, u->ca, NULL) :
	    !SSL_CTX_set_default_verify_paths(p->ssl_ctx))
		goto fail;
	if (SSL_CTX_set_alpn_protos(p->ssl_ctx, alpn, sizeof(alpn) - 1) != 0)
		goto fail;
	return 0;
fail:
	log_sslerr("upstream TLS context (%s)", u->ca ? u->ca : "system store");
	return -1;
}

struct upstream_pool *
upstream_pool_new(struct event_base *base, const struct config *cfg)
{
	struct upstream_pool *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		return NULL;
	}
	p->base = base;
	p->cfg = cfg;
	TAILQ_INIT(&p->idle);
	if (cfg->upstream.command != NULL) {
		snprintf(p->hostport, sizeof(p->hostport), "stdio");
		return p;
	}
	if (cfg->upstream.host == NULL || upstream_resolve(p) == -1)
		goto fail;
	if (cfg->upstream.tls && upstream_tls_ctx(p) == -1)
		goto fail;
	return p;
fail:
	upstream_pool_free(p);
	return NULL;
}

void
upstream_pool_free(struct upstream_pool *p)
{
	if (p == NULL)
		return;
	while (!TAILQ_EMPTY(&p->idle))
		upstream_free(TAILQ_FIRST(&p->idle));
	SSL_CTX_free(p->ssl_ctx);
	free(p);
}
