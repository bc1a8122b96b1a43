/* OCSP checks on a worker's event loop (ocspcheck.h).
 *
 * A query is its own object (struct ocspcheck_query), not part of the check that
 * started it: the check belongs to a connection that may close at any time, while
 * an evhttp request cannot be taken back safely once sent. The query keeps what it
 * needs (the request, the CertID, the chain, its evhttp connection), fills the
 * cache when the answer comes, and calls its owner back only while the owner is
 * still there. evhttp may not be freed from inside its own callback, so a zero
 * timer frees the query afterwards. Every query is bounded by its own timer
 * (tls.ocsp.timeout_ms): the owner hears by then at
 * the latest; evhttp's own timeout (the same) ends the request itself. */
#include "ocspcheck.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/bn.h>
#include <openssl/err.h>

#include "log.h"
#include "metrics.h"
#include "ocsp.h"
#include "ocspcache.h"
#include "state.h"

#define OCSPCHECK_POLL_MS       50      /* waiting on another connection's query */
#define OCSPCHECK_RETRY_S       5       /* a failed query is not repeated sooner */
#define OCSPCHECK_MAX_RESPONSE  (256 * 1024)

struct ocspcheck_query;

struct ocspcheck {
	int mode, cache_s, timeout_ms;
	char key[OCSP_KEY_LEN];
	char serial[80];                /* for the log */
	char *url;
	X509 *leaf, *issuer;
	STACK_OF(X509) *chain;
	/* ocspcheck_start's wait */
	void (*done)(void *arg, enum ocspcheck_result r);
	void *arg;
	struct event *poll_ev;          /* another's query: look at the cache again */
	struct timespec wait_until;
	struct ocspcheck_query *q;      /* our own query, while it runs */
};

struct ocspcheck_query {
	TAILQ_ENTRY(ocspcheck_query) link;
	struct event_base *base;
	struct ocspcheck *owner;        /* NULL once the owner went away or heard */
	char key[OCSP_KEY_LEN];
	char serial[80];
	char *url;
	int mode, cache_s;
	OCSP_REQUEST *req;
	OCSP_CERTID *id;
	STACK_OF(X509) *chain;
	struct evhttp_connection *evcon;
	struct event *timer;
	struct event *reap;             /* frees evcon and the query after evhttp's callback */
	int finished;                   /* the verdict is in the cache */
};

TAILQ_HEAD(ocspcheck_queries, ocspcheck_query);

/* Per worker thread: its queries and, for responders named by host, its resolver. */
static __thread struct ocspcheck_queries *ocspcheck_running;
static __thread struct evdns_base *ocspcheck_dns;

static atomic_long ocspcheck_answers[4];       /* by enum ocsp_verdict */
static pthread_once_t ocspcheck_once = PTHREAD_ONCE_INIT;

static void
ocspcheck_metrics(FILE *f)
{
	enum ocsp_verdict v;

	metrics_put_head(f, "ocsp_queries_total", "counter",
	    "OCSP queries for client certificates, by answer (error: no usable answer).");
	for (v = OCSP_VERDICT_GOOD; v <= OCSP_VERDICT_ERROR; v++)
		fprintf(f, "certgate_ocsp_queries_total{answer=\"%s\"} %ld\n",
		    ocsp_verdict_name(v), atomic_load(&ocspcheck_answers[v]));
	metrics_put_head(f, "ocsp_cache_entries", "gauge",
	    "Client certificates with an OCSP answer in the cache.");
	fprintf(f, "certgate_ocsp_cache_entries %lu\n", ocspcache_count());
}

static void
ocspcheck_init(void)
{
	(void)metrics_add_renderer(ocspcheck_metrics);
}

/* The verdict an answer gives in mode; -1 when it does not stand (ask again). */
static int
ocspcheck_decide(int mode, const struct ocspcache_answer *a, time_t now)
{
	if (a->known && a->verdict == OCSP_VERDICT_REVOKED)
		return OCSPCHECK_REVOKED;
	if (!a->known || now >= a->expires)
		return -1;
	if (a->verdict == OCSP_VERDICT_GOOD || mode == CONFIG_OCSP_SOFT)
		return OCSPCHECK_PASS;
	return OCSPCHECK_UNAVAILABLE;
}

static void
ocspcheck_serial(X509 *x, char *buf, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

	snprintf(buf, len, "%s", hex != NULL ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

int
ocspcheck_new(const struct config *cfg, X509 *leaf, STACK_OF(X509) *chain,
    struct ocspcheck **out)
{
	struct ocspcheck *k = NULL;
	int https_only = 0;
	char *url = NULL;

	*out = NULL;
	pthread_once(&ocspcheck_once, ocspcheck_init);
	if (cfg->tls.ocsp_mode == CONFIG_OCSP_OFF || leaf == NULL || chain == NULL ||
	    sk_X509_num(chain) < 2)
		return 0;
	if ((url = ocsp_url_of(leaf, &https_only)) == NULL) {
		if (https_only)
			log_debug("client certificate names only https:// OCSP responders: "
			    "not checked by OCSP (its CRL still applies)");
		return 0;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL)
		goto fail;
	k->mode = cfg->tls.ocsp_mode;
	k->cache_s = cfg->tls.ocsp_cache_s;
	k->timeout_ms = cfg->tls.ocsp_timeout_ms;
	k->url = url;
	url = NULL;
	k->leaf = leaf;
	X509_up_ref(leaf);
	k->issuer = sk_X509_value(chain, 1);
	X509_up_ref(k->issuer);
	if ((k->chain = X509_chain_up_ref(chain)) == NULL ||
	    ocsp_key(k->leaf, k->issuer, k->key) == -1)
		goto fail;
	ocspcheck_serial(leaf, k->serial, sizeof(k->serial));
	*out = k;
	return 0;
fail:
	free(url);
	ocspcheck_free(k);
	ERR_clear_error();
	return -1;
}

/* ---- queries ---- */

static void
ocspcheck_query_free(struct ocspcheck_query *q)
{
	if (ocspcheck_running != NULL)
		TAILQ_REMOVE(ocspcheck_running, q, link);
	if (q->timer != NULL)
		event_free(q->timer);
	if (q->reap != NULL)
		event_free(q->reap);
	if (q->evcon != NULL)
		evhttp_connection_free(q->evcon);
	OCSP_REQUEST_free(q->req);
	OCSP_CERTID_free(q->id);
	sk_X509_pop_free(q->chain, X509_free);
	free(q->url);
	free(q);
}

/* The verdict is known (or the time is up): into the cache, to the owner. */
static void
ocspcheck_query_finish(struct ocspcheck_query *q, enum ocsp_verdict v, time_t next,
    const char *why)
{
	struct ocspcheck *k = q->owner;
	struct ocspcache_answer a;
	time_t now = time(NULL), expires;
	int r;

	if (q->finished)
		return;
	q->finished = 1;
	atomic_fetch_add(&ocspcheck_answers[v], 1);
	if (v == OCSP_VERDICT_ERROR) {
		expires = now + (q->cache_s < OCSPCHECK_RETRY_S ? q->cache_s : OCSPCHECK_RETRY_S);
		log_warn("OCSP query to %s for serial %s failed: %s (%s mode: %s)", q->url,
		    q->serial, why, q->mode == CONFIG_OCSP_HARD ? "hard" : "soft",
		    q->mode == CONFIG_OCSP_HARD ? "refused" : "accepted");
	} else {
		expires = now + q->cache_s;
		if (next != 0 && next < expires)
			expires = next > now ? next : now + 1;
		log_debug("OCSP %s answers %s for serial %s", q->url, ocsp_verdict_name(v),
		    q->serial);
		if (v == OCSP_VERDICT_REVOKED)
			log_info("OCSP: %s says serial %s is revoked", q->url, q->serial);
	}
	ocspcache_put(q->key, v, now, expires);
	if (k != NULL) {
		k->q = NULL;
		q->owner = NULL;
		if (k->done != NULL) {
			void (*done)(void *, enum ocspcheck_result) = k->done;

			k->done = NULL;
			ocspcache_get(k->key, now, &a);
			r = ocspcheck_decide(k->mode, &a, now);
			done(k->arg, r == -1 ? (k->mode == CONFIG_OCSP_HARD ?
			    OCSPCHECK_UNAVAILABLE : OCSPCHECK_PASS) : (enum ocspcheck_result)r);
		}
	}
}

static void
ocspcheck_query_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ocspcheck_query *q = arg;

	ocspcheck_query_finish(q, OCSP_VERDICT_ERROR, 0, "the responder did not answer in "
	    "time (tls.ocsp.timeout_ms)");
	/* evhttp's own timeout ends the request and frees the query */
}

/* evhttp is done with the request: its connection may be freed now (not from
 * inside its own callback). */
static void
ocspcheck_query_reap(evutil_socket_t fd, short what, void *arg)
{
	ocspcheck_query_free(arg);
}

static void
ocspcheck_query_cb(struct evhttp_request *req, void *arg)
{
	struct ocspcheck_query *q = arg;
	struct evbuffer *in;
	struct gw_state *st;
	enum ocsp_verdict v = OCSP_VERDICT_ERROR;
	const char *why = "the responder could not be reached";
	unsigned char *der;
	time_t next = 0;
	size_t len;

	if (req != NULL && evhttp_request_get_response_code(req) != 200 &&
	    evhttp_request_get_response_code(req) != 0)
		why = "the responder answered with an HTTP error";
	else if (req != NULL && evhttp_request_get_response_code(req) == 200) {
		in = evhttp_request_get_input_buffer(req);
		len = evbuffer_get_length(in);
		if (len > OCSPCHECK_MAX_RESPONSE)
			why = "the response is too large";
		else if ((der = evbuffer_pullup(in, (ssize_t)len)) == NULL && len > 0)
			why = "out of memory";
		else if ((st = state_get()) == NULL)
			why = "no gateway state";
		else {
			v = ocsp_response_eval(der, len, q->req, q->id,
			    SSL_CTX_get_cert_store(st->ssl_ctx), q->chain, time(NULL), &next, &why);
			state_put(st);
		}
	}
	ocspcheck_query_finish(q, v, next, why);
	{
		struct timeval zero = { 0, 0 };

		evtimer_add(q->reap, &zero);
	}
}

/* Starts k's query on base. 0, or -1 (nothing started; the claim is released). */
static int
ocspcheck_query_start(struct ocspcheck *k, struct event_base *base)
{
	struct ocspcheck_query *q = NULL;
	struct evhttp_uri *uri = NULL;
	struct evhttp_request *req;
	struct timeval tv;
	unsigned char *der = NULL;
	const char *host, *path, *query;
	char target[2048], hostport[300];
	int derlen, port;

	if (ocspcheck_running == NULL) {
		if ((ocspcheck_running = calloc(1, sizeof(*ocspcheck_running))) == NULL)
			goto fail;
		TAILQ_INIT(ocspcheck_running);
	}
	if ((q = calloc(1, sizeof(*q))) == NULL)
		goto fail;
	q->base = base;
	memcpy(q->key, k->key, sizeof(q->key));
	memcpy(q->serial, k->serial, sizeof(q->serial));
	q->mode = k->mode;
	q->cache_s = k->cache_s;
	TAILQ_INSERT_TAIL(ocspcheck_running, q, link);
	if ((q->url = strdup(k->url)) == NULL || (q->chain = X509_chain_up_ref(k->chain)) == NULL ||
	    ocsp_request_new(k->leaf, k->issuer, &q->req, &q->id, &der, &derlen) == -1)
		goto fail;
	if ((uri = evhttp_uri_parse(k->url)) == NULL ||
	    (host = evhttp_uri_get_host(uri)) == NULL) {
		log_warn("OCSP responder URL %s cannot be parsed", k->url);
		goto fail;
	}
	port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);
	snprintf(target, sizeof(target), "%s%s%s", path != NULL && *path ? path : "/",
	    query ? "?" : "", query ? query : "");
	snprintf(hostport, sizeof(hostport), port == 80 ? "%s" : "%s:%d", host, port);
	/* a name needs the resolver (NULL would resolve blocking, on the loop) */
	if (evutil_inet_pton(AF_INET, host, target + sizeof(target) - 16) != 1 &&
	    evutil_inet_pton(AF_INET6, host, target + sizeof(target) - 16) != 1 &&
	    ocspcheck_dns == NULL &&
	    (ocspcheck_dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		goto fail;
	if ((q->evcon = evhttp_connection_base_new(base, ocspcheck_dns, host,
	    (unsigned short)port)) == NULL)
		goto fail;
	tv.tv_sec = k->timeout_ms / 1000;
	tv.tv_usec = (k->timeout_ms % 1000) * 1000;
	evhttp_connection_set_timeout_tv(q->evcon, &tv);
	evhttp_connection_set_retries(q->evcon, 0);
	if ((q->timer = evtimer_new(base, ocspcheck_query_timeout, q)) == NULL ||
	    (q->reap = evtimer_new(base, ocspcheck_query_reap, q)) == NULL ||
	    (req = evhttp_request_new(ocspcheck_query_cb, q)) == NULL)
		goto fail;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", hostport);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/ocsp-request");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Accept",
	    "application/ocsp-response");
	evbuffer_add(evhttp_request_get_output_buffer(req), der, (size_t)derlen);
	if (evhttp_make_request(q->evcon, req, EVHTTP_REQ_POST, target) == -1)
		goto fail;      /* evhttp freed req */
	evtimer_add(q->timer, &tv);
	q->owner = k;
	k->q = q;
	evhttp_uri_free(uri);
	OPENSSL_free(der);
	return 0;
fail:
	if (uri != NULL)
		evhttp_uri_free(uri);
	OPENSSL_free(der);
	if (q != NULL)
		ocspcheck_query_free(q);
	ocspcache_release(k->key);
	ERR_clear_error();
	return -1;
}

/* ---- checks ---- */

void
ocspcheck_free(struct ocspcheck *k)
{
	if (k == NULL)
		return;
	if (k->q != NULL)
		k->q->owner = NULL;     /* it runs on and fills the cache */
	if (k->poll_ev != NULL)
		event_free(k->poll_ev);
	free(k->url);
	X509_free(k->leaf);
	X509_free(k->issuer);
	sk_X509_pop_free(k->chain, X509_free);
	free(k);
}

static void
ocspcheck_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ocspcheck *k = arg;
	struct ocspcache_answer a;
	struct timespec mono;
	struct timeval tv = { 0, OCSPCHECK_POLL_MS * 1000 };
	time_t now = time(NULL);
	void (*done)(void *, enum ocspcheck_result);
	int r;

	ocspcache_get(k->key, now, &a);
	r = ocspcheck_decide(k->mode, &a, now);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	if (r == -1 && !a.fetching) {
		/* the other query gave up without an answer: ask ourselves */
		if (ocspcache_claim(k->key, now) == 1 &&
		    ocspcheck_query_start(k, event_get_base(k->poll_ev)) == 0)
			return;
	}
	if (r == -1 && (mono.tv_sec < k->wait_until.tv_sec ||
	    (mono.tv_sec == k->wait_until.tv_sec && mono.tv_nsec < k->wait_until.tv_nsec))) {
		evtimer_add(k->poll_ev, &tv);
		return;
	}
	done = k->done;
	k->done = NULL;
	if (done != NULL)
		done(k->arg, r != -1 ? (enum ocspcheck_result)r : k->mode == CONFIG_OCSP_HARD ?
		    OCSPCHECK_UNAVAILABLE : OCSPCHECK_PASS);
}

enum ocspcheck_result
ocspcheck_start(struct ocspcheck *k, struct event_base *base, time_t now,
    void (*done)(void *arg, enum ocspcheck_result r), void *arg)
{
	struct ocspcache_answer a;
	struct timeval tv = { 0, OCSPCHECK_POLL_MS * 1000 };
	int r, claim;

	ocspcache_get(k->key, now, &a);
	if ((r = ocspcheck_decide(k->mode, &a, now)) != -1)
		return (enum ocspcheck_result)r;
	k->done = done;
	k->arg = arg;
	if ((claim = ocspcache_claim(k->key, now)) == 1 && ocspcheck_query_start(k, base) == 0)
		return OCSPCHECK_PENDING;
	if (claim == 1 || claim == -1) {
		/* no query could be started: no answer */
		k->done = NULL;
		atomic_fetch_add(&ocspcheck_answers[OCSP_VERDICT_ERROR], 1);
		return k->mode == CONFIG_OCSP_HARD ? OCSPCHECK_UNAVAILABLE : OCSPCHECK_PASS;
	}
	/* another connection's query is under way: wait for its answer */
	clock_gettime(CLOCK_MONOTONIC, &k->wait_until);
	k->wait_until.tv_sec += (k->timeout_ms + 100) / 1000;
	k->wait_until.tv_nsec += (long)((k->timeout_ms + 100) % 1000) * 1000000L;
	if (k->wait_until.tv_nsec >= 1000000000L) {
		k->wait_until.tv_sec++;
		k->wait_until.tv_nsec -= 1000000000L;
	}
	if ((k->poll_ev == NULL && (k->poll_ev = evtimer_new(base, ocspcheck_poll_cb, k)) ==
	    NULL) || evtimer_add(k->poll_ev, &tv) == -1) {
		k->done = NULL;
		return k->mode == CONFIG_OCSP_HARD ? OCSPCHECK_UNAVAILABLE : OCSPCHECK_PASS;
	}
	return OCSPCHECK_PENDING;
}

enum ocspcheck_result
ocspcheck_recheck(struct ocspcheck *k, struct event_base *base, time_t now)
{
	struct ocspcache_answer a;
	int r;

	ocspcache_get(k->key, now, &a);
	if ((r = ocspcheck_decide(k->mode, &a, now)) != -1)
		return (enum ocspcheck_result)r;
	/* the answer has expired: refresh it once, in the background */
	if (k->q == NULL && ocspcache_claim(k->key, now) == 1)
		(void)ocspcheck_query_start(k, base);
	/* meanwhile the last answer stands (a query is bounded by timeout_ms) */
	if (!a.known || a.verdict == OCSP_VERDICT_GOOD || k->mode == CONFIG_OCSP_SOFT)
		return OCSPCHECK_PASS;
	return OCSPCHECK_UNAVAILABLE;
}

void
ocspcheck_worker_end(struct event_base *base)
{
	struct ocspcheck_query *q, *next;

	if (ocspcheck_running != NULL) {
		for (q = TAILQ_FIRST(ocspcheck_running); q != NULL; q = next) {
			next = TAILQ_NEXT(q, link);
			if (q->owner != NULL)
				q->owner->q = NULL;
			if (!q->finished)
				ocspcache_release(q->key);
			ocspcheck_query_free(q);
		}
		free(ocspcheck_running);
		ocspcheck_running = NULL;
	}
	if (ocspcheck_dns != NULL) {
		evdns_base_free(ocspcheck_dns, 0);
		ocspcheck_dns = NULL;
	}
}
