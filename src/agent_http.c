/* HTTPS client of the agent bridges: libcurl multi_socket on libevent (see
 * include/agent_http.h). The integration follows curl's documented pattern
 * (docs/examples/evhiperfifo.c): CURLMOPT_SOCKETFUNCTION registers a libevent event
 * per socket, CURLMOPT_TIMERFUNCTION arms one timer per multi handle, and both call
 * curl_multi_socket_action, after which finished transfers are collected.
 *
 * libcurl forbids adding, removing and unpausing handles from inside its callbacks,
 * and our users' callbacks run there. So start, cancel and resume only record what
 * is wanted and activate the "kick" event, which applies it from the loop. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>

#include "agent_http.h"
#include "log.h"

#define HTTP_MAX_HEAD_BYTES (64 * 1024)

struct agent_http_sock {
	struct event *ev;
	struct agent_http_pool *p;
	LIST_ENTRY(agent_http_sock) link;
};

struct agent_http_pool {
	struct agent_http *h;
	CURLM *multi;
	struct agent_cred *cred;
	struct event *timer;
	size_t nreq;                       /* requests made with this pool, not freed */
	int retired;
	LIST_HEAD(, agent_http_sock) socks;
	TAILQ_ENTRY(agent_http_pool) link;
};

enum agent_http_state {
	REQ_NEW = 0,       /* waiting for the kick to add it */
	REQ_ACTIVE,        /* in the multi handle */
	REQ_CANCELLED,     /* waiting for the kick to remove and free it */
};

struct agent_http_req {
	struct agent_http *h;
	struct agent_http_pool *pool;
	CURL *e;
	struct curl_slist *hdrs;
	struct agent_http_cbs cbs;
	void *arg;
	enum agent_http_state state;
	int added;
	int recv_paused, send_paused, want_resume;
	int in_done;
	int head_done;
	int aborted;
	struct agent_http_resp resp;
	size_t head_bytes;
	char errbuf[CURL_ERROR_SIZE];
	char msgbuf[CURL_ERROR_SIZE + 256];
	TAILQ_ENTRY(agent_http_req) link;
};

struct agent_http {
	struct event_base *base;
	struct event *kick;
	long connect_timeout_ms;
	struct agent_http_pool *cur;
	TAILQ_HEAD(, agent_http_pool) pools;
	TAILQ_HEAD(, agent_http_req) reqs;
	size_t nactive;
};

static void agent_http_check(struct agent_http_pool *p);

const char *
agent_http_resp_get(const struct agent_http_resp *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nh; i++)
		if (strcasecmp(r->h[i].name, name) == 0)
			return r->h[i].value;
	return NULL;
}

static void
agent_http_kick(struct agent_http *h)
{
	event_active(h->kick, 0, 0);
}

/* ------------------------------------------------------------------------- */
/* libcurl <-> libevent */

static void
agent_http_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_http_pool *p = arg;
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(p->multi, fd, action, &running);
	agent_http_check(p);
}

static void
agent_http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_http_pool *p = arg;
	int running;

	curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	agent_http_check(p);
}

static int
agent_http_curl_sock(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct agent_http_pool *p = userp;
	struct agent_http_sock *si = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (si != NULL) {
			LIST_REMOVE(si, link);
			event_free(si->ev);
			free(si);
			curl_multi_assign(p->multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (si == NULL) {
		if ((si = calloc(1, sizeof(*si))) == NULL)
			return -1;
		si->p = p;
		LIST_INSERT_HEAD(&p->socks, si, link);
		curl_multi_assign(p->multi, s, si);
	} else if (si->ev != NULL) {
		event_free(si->ev);
		si->ev = NULL;
	}
	if ((si->ev = event_new(p->h->base, s, kind, agent_http_sock_cb, p)) == NULL ||
	    event_add(si->ev, NULL) == -1) {
		log_err("cannot watch a gateway connection: out of memory");
		return -1;
	}
	return 0;
}

static int
agent_http_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct agent_http_pool *p = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(p->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(p->timer, &tv) == 0 ? 0 : -1;
}

static struct agent_http_pool *
agent_http_pool_new(struct agent_http *h, struct agent_cred *cred)
{
	struct agent_http_pool *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->h = h;
	LIST_INIT(&p->socks);
	if ((p->multi = curl_multi_init()) == NULL ||
	    (p->timer = evtimer_new(h->base, agent_http_timer_cb, p)) == NULL) {
		if (p->multi != NULL)
			curl_multi_cleanup(p->multi);
		free(p);
		return NULL;
	}
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, agent_http_curl_sock);
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, agent_http_curl_timer);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
	p->cred = agent_cred_ref(cred);
	TAILQ_INSERT_TAIL(&h->pools, p, link);
	return p;
}

static void
agent_http_pool_free(struct agent_http_pool *p)
{
	struct agent_http_sock *si;

	TAILQ_REMOVE(&p->h->pools, p, link);
	curl_multi_cleanup(p->multi);
	/* Sockets libcurl did not report removed while cleaning up. */
	while ((si = LIST_FIRST(&p->socks)) != NULL) {
		LIST_REMOVE(si, link);
		if (si->ev != NULL)
			event_free(si->ev);
		free(si);
	}
	event_free(p->timer);
	agent_cred_unref(p->cred);
	free(p);
}

/* ------------------------------------------------------------------------- */
/* Requests */

static void
agent_http_req_free(struct agent_http_req *r)
{
	size_t i;

	TAILQ_REMOVE(&r->h->reqs, r, link);
	if (r->e != NULL) {
		if (r->added)
			curl_multi_remove_handle(r->pool->multi, r->e);
		curl_easy_cleanup(r->e);
	}
	curl_slist_free_all(r->hdrs);
	for (i = 0; i < r->resp.nh; i++) {
		free(r->resp.h[i].name);
		free(r->resp.h[i].value);
	}
	free(r->resp.h);
	if (r->added && r->h->nactive > 0)
		r->h->nactive--;
	if (--r->pool->nreq == 0 && r->pool->retired)
		agent_http_kick(r->h);
	free(r);
}

static void
agent_http_reset_head(struct agent_http_req *r)
{
	size_t i;

	for (i = 0; i < r->resp.nh; i++) {
		free(r->resp.h[i].name);
		free(r->resp.h[i].value);
	}
	r->resp.nh = 0;
	r->head_bytes = 0;
}

static size_t
agent_http_hdr_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct agent_http_req *r = arg;
	size_t n = size * nmemb, nl, vl;
	struct agent_http_header *nh;
	const char *colon, *v;
	long code = 0;

	if (r->state == REQ_CANCELLED)
		return 0;
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		agent_http_reset_head(r);
		return n;
	}
	if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
		curl_easy_getinfo(r->e, CURLINFO_RESPONSE_CODE, &code);
		if (code < 200)
			return n;
		r->resp.status = (int)code;
		r->head_done = 1;
		if (r->cbs.on_head != NULL && r->cbs.on_head(r->arg, &r->resp) != 0) {
			r->aborted = 1;
			return 0;
		}
		return n;
	}
	r->head_bytes += n;
	if (r->resp.nh >= AGENT_HTTP_MAX_HEADERS || r->head_bytes > HTTP_MAX_HEAD_BYTES) {
		snprintf(r->errbuf, sizeof(r->errbuf), "the gateway's response head is too "
		    "large");
		r->aborted = 1;
		return 0;
	}
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	if (n == 0 || p[0] == ' ' || p[0] == '\t' ||
	    (colon = memchr(p, ':', n)) == NULL)
		return size * nmemb;   /* folded or malformed lines are not used */
	nl = (size_t)(colon - p);
	for (v = colon + 1; v < p + n && (*v == ' ' || *v == '\t'); v++)
		;
	vl = (size_t)(p + n - v);
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	if ((nh = realloc(r->resp.h, (r->resp.nh + 1) * sizeof(*nh))) == NULL)
		return 0;
	r->resp.h = nh;
	nh[r->resp.nh].name = strndup(p, nl);
	nh[r->resp.nh].value = strndup(v, vl);
	if (nh[r->resp.nh].name == NULL || nh[r->resp.nh].value == NULL) {
		free(nh[r->resp.nh].name);
		free(nh[r->resp.nh].value);
		return 0;
	}
	r->resp.nh++;
	return size * nmemb;
}

static size_t
agent_http_body_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct agent_http_req *r = arg;
	size_t n = size * nmemb;
	int rv;

	if (r->state == REQ_CANCELLED)
		return 0;
	if (r->cbs.on_body == NULL)
		return n;
	rv = r->cbs.on_body(r->arg, p, n);
	if (rv == AGENT_HTTP_PAUSE) {
		r->recv_paused = 1;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (rv != 0) {
		r->aborted = 1;
		return 0;
	}
	return n;
}

static size_t
agent_http_read_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct agent_http_req *r = arg;
	ssize_t got;

	if (r->state == REQ_CANCELLED)
		return CURL_READFUNC_ABORT;
	got = r->cbs.on_send(r->arg, p, size * nmemb);
	if (got == AGENT_HTTP_SEND_PAUSE) {
		r->send_paused = 1;
		return CURL_READFUNC_PAUSE;
	}
	if (got < 0) {
		r->aborted = 1;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)got;
}

/* A streamed body cannot be sent twice: refuse the rewind libcurl asks for when a
 * reused connection turns out dead (the transfer then fails). */
static int
agent_http_seek_cb(void *arg, curl_off_t off, int origin)
{
	return CURL_SEEKFUNC_CANTSEEK;
}

/* The end of a transfer in the multi handle. */
static void
agent_http_finish(struct agent_http_req *r, CURLcode rc)
{
	enum agent_http_result res = AGENT_HTTP_OK;
	const char *msg = NULL;
	long sent = 0, fresh = -1, got = -1;
	curl_off_t hs = 0;
	int closed;

	if (r->state == REQ_CANCELLED) {
		agent_http_req_free(r);
		return;
	}
	if (rc != CURLE_OK || r->aborted) {
		curl_easy_getinfo(r->e, CURLINFO_REQUEST_SIZE, &sent);
		curl_easy_getinfo(r->e, CURLINFO_NUM_CONNECTS, &fresh);
		curl_easy_getinfo(r->e, CURLINFO_HEADER_SIZE, &got);
		res = sent == 0 && !r->head_done ? AGENT_HTTP_NOT_SENT : AGENT_HTTP_FAILED;
		/* A kept-alive connection the server closed (or reset) just as the
		 * request went out, before a byte of answer: the server closed it
		 * without reading the request (a reset means unread data), so it was
		 * not processed. Browsers retry such requests too. */
		closed = !r->aborted && got == 0 && !r->head_done &&
		    (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
		    rc == CURLE_GOT_NOTHING);
		if (res == AGENT_HTTP_FAILED && closed && fresh == 0)
			res = AGENT_HTTP_NOT_SENT;
		/* A server that fails verification will not pass it on a retry. */
		if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CERTPROBLEM)
			res = AGENT_HTTP_FAILED;
		msg = r->errbuf[0] != '\0' ? r->errbuf : r->aborted ? "aborted" :
		    curl_easy_strerror(rc);
		/* On a connection of its own, after a complete handshake: see
		 * AGENT_CRED_CLOSED_HINT. Retrying would not help. */
		if (closed && fresh > 0 && *agent_cred_hint(msg) == '\0' &&
		    curl_easy_getinfo(r->e,
		    CURLINFO_APPCONNECT_TIME_T, &hs) == CURLE_OK && hs > 0) {
			res = AGENT_HTTP_FAILED;
			snprintf(r->msgbuf, sizeof(r->msgbuf), "%s (%s)", msg,
			    AGENT_CRED_CLOSED_HINT);
			msg = r->msgbuf;
		}
	}
	r->in_done = 1;
	if (r->cbs.on_done != NULL)
		r->cbs.on_done(r->arg, res, msg);
	agent_http_req_free(r);
}

static void
agent_http_check(struct agent_http_pool *p)
{
	struct agent_http_req *r;
	CURLMsg *m;
	CURLcode rc;
	CURL *e;
	char *priv;
	int left;

	while ((m = curl_multi_info_read(p->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		e = m->easy_handle;
		rc = m->data.result;
		priv = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		r = (struct agent_http_req *)priv;
		curl_multi_remove_handle(p->multi, e);
		if (r == NULL)
			continue;
		r->added = 0;
		if (r->h->nactive > 0)
			r->h->nactive--;
		agent_http_finish(r, rc);
	}
}

/* Applies what start, cancel and resume recorded, then closes retired pools. */
static void
agent_http_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_http *h = arg;
	struct agent_http_pool *p, *pn;
	struct agent_http_req *r, *rn;
	int mask;

	for (r = TAILQ_FIRST(&h->reqs); r != NULL; r = rn) {
		rn = TAILQ_NEXT(r, link);
		if (r->state == REQ_CANCELLED) {
			agent_http_req_free(r);
		} else if (r->state == REQ_NEW) {
			if (curl_multi_add_handle(r->pool->multi, r->e) != CURLM_OK) {
				snprintf(r->errbuf, sizeof(r->errbuf), "cannot start the "
				    "request (out of memory)");
				r->aborted = 1;
				agent_http_finish(r, CURLE_OUT_OF_MEMORY);
				continue;
			}
			r->added = 1;
			r->state = REQ_ACTIVE;
			h->nactive++;
		} else if (r->want_resume) {
			r->want_resume = 0;
			mask = (r->recv_paused ? CURLPAUSE_RECV : 0) |
			    (r->send_paused ? CURLPAUSE_SEND : 0);
			curl_easy_pause(r->e, mask);
		}
	}
	for (p = TAILQ_FIRST(&h->pools); p != NULL; p = pn) {
		pn = TAILQ_NEXT(p, link);
		if (p->retired && p->nreq == 0)
			agent_http_pool_free(p);
	}
}

struct agent_http *
agent_http_new(struct event_base *base, struct agent_cred *cred, long connect_timeout_ms)
{
	struct agent_http *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		goto oom;
	h->base = base;
	h->connect_timeout_ms = connect_timeout_ms;
	TAILQ_INIT(&h->pools);
	TAILQ_INIT(&h->reqs);
	if ((h->kick = event_new(base, -1, 0, agent_http_kick_cb, h)) == NULL ||
	    (h->cur = agent_http_pool_new(h, cred)) == NULL) {
		if (h->kick != NULL)
			event_free(h->kick);
		free(h);
		goto oom;
	}
	return h;
oom:
	log_err("out of memory");
	return NULL;
}

void
agent_http_free(struct agent_http *h)
{
	struct agent_http_pool *p;
	struct agent_http_req *r;

	if (h == NULL)
		return;
	while ((r = TAILQ_FIRST(&h->reqs)) != NULL) {
		r->state = REQ_CANCELLED;
		agent_http_req_free(r);
	}
	while ((p = TAILQ_FIRST(&h->pools)) != NULL)
		agent_http_pool_free(p);
	event_free(h->kick);
	free(h);
}

int
agent_http_set_cred(struct agent_http *h, struct agent_cred *cred)
{
	struct agent_http_pool *p;

	if ((p = agent_http_pool_new(h, cred)) == NULL) {
		log_err("out of memory: the new certificate is used for nothing yet");
		return -1;
	}
	h->cur->retired = 1;
	h->cur = p;
	agent_http_kick(h);
	return 0;
}

size_t
agent_http_active(const struct agent_http *h)
{
	const struct agent_http_req *r;
	size_t n = 0;

	TAILQ_FOREACH(r, &h->reqs, link)
		if (r->state != REQ_CANCELLED)
			n++;
	return n;
}

static int
agent_http_setup(struct agent_http_req *r, const struct agent_http_spec *s)
{
	static const char ua[] = "User-Agent: certgate-agent/" CERTGATE_VERSION;
	struct curl_slist *l;
	CURL *e = r->e;
	size_t i;

	for (i = 0; s->headers != NULL && s->headers[i] != NULL; i++) {
		if ((l = curl_slist_append(r->hdrs, s->headers[i])) == NULL)
			return -1;
		r->hdrs = l;
	}
	if ((l = curl_slist_append(r->hdrs, "Expect:")) == NULL)
		return -1;
	r->hdrs = l;
	if ((l = curl_slist_append(r->hdrs, ua)) == NULL)
		return -1;
	r->hdrs = l;
	if (s->streamed_body && s->send_len < 0) {
		if ((l = curl_slist_append(r->hdrs, "Transfer-Encoding: chunked")) == NULL)
			return -1;
		r->hdrs = l;
	}
	curl_easy_setopt(e, CURLOPT_URL, s->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->h->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
	if (s->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, agent_http_hdr_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, agent_http_body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	if (strcmp(s->method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		if (s->streamed_body) {
			curl_easy_setopt(e, CURLOPT_READFUNCTION, agent_http_read_cb);
			curl_easy_setopt(e, CURLOPT_READDATA, r);
			curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, agent_http_seek_cb);
			curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			    (curl_off_t)s->send_len);
		} else {
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			    (curl_off_t)s->body_len);
			if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
			    s->body != NULL ? s->body : "") != CURLE_OK)
				return -1;
		}
	} else if (strcmp(s->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, s->method);
	}
	return agent_cred_curl(e, r->pool->cred);
}

struct agent_http_req *
agent_http_start(struct agent_http *h, const struct agent_http_spec *s,
    const struct agent_http_cbs *cbs, void *arg)
{
	struct agent_http_req *r;

	if (s->streamed_body && (cbs->on_send == NULL || strcmp(s->method, "POST") != 0)) {
		log_err("internal error: a streamed body needs on_send and POST");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_err("out of memory");
		return NULL;
	}
	r->h = h;
	r->pool = h->cur;
	r->pool->nreq++;
	r->cbs = *cbs;
	r->arg = arg;
	r->state = REQ_NEW;
	TAILQ_INSERT_TAIL(&h->reqs, r, link);
	if ((r->e = curl_easy_init()) == NULL || agent_http_setup(r, s) == -1) {
		log_err("cannot set up a request to %s (out of memory?)", s->url);
		r->state = REQ_CANCELLED;
		agent_http_req_free(r);
		return NULL;
	}
	agent_http_kick(h);
	return r;
}

void
agent_http_cancel(struct agent_http_req *r)
{
	if (r == NULL || r->in_done || r->state == REQ_CANCELLED)
		return;
	r->state = REQ_CANCELLED;
	agent_http_kick(r->h);
}

void
agent_http_resume_recv(struct agent_http_req *r)
{
	if (r == NULL || r->state != REQ_ACTIVE || !r->recv_paused)
		return;
	r->recv_paused = 0;
	r->want_resume = 1;
	agent_http_kick(r->h);
}

void
agent_http_resume_send(struct agent_http_req *r)
{
	if (r == NULL || r->state == REQ_CANCELLED || !r->send_paused)
		return;
	r->send_paused = 0;
	r->want_resume = 1;
	agent_http_kick(r->h);
}
