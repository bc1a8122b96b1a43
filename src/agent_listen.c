/* certgate agent listen: loopback plain HTTP in, mTLS to the gateway out (see
 * include/agent_listen.h).
 *
 * One request at a time per client connection (pipelined requests wait in the input
 * buffer, which libevent stops filling at its watermark). A request is forwarded as
 * soon as its head is parsed; its body streams to the gateway through libcurl's read
 * callback, and the answer streams back through the write callback, re-framed for
 * the client (Content-Length kept, chunked otherwise).
 *
 * SIGTERM (or SIGINT) drains: the listening socket is closed (new connections are
 * refused), idle connections and GET streams are closed at once (a stream has no end
 * to wait for; the client resumes it with Last-Event-ID), and the requests in flight
 * are answered, each connection closing after its answer, for up to --grace
 * seconds; then whatever is left is cut. A second signal cuts at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "agent_bridge.h"
#include "agent_listen.h"
#include "agent_msg.h"
#include "agent_time.h"
#include "agent_url.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "mcp.h"

#define LS_MAX_CONNS      256
#define LS_BODY_HIGH      (256 * 1024)   /* request body waiting for the gateway */
#define LS_OUT_HIGH       (256 * 1024)   /* answer waiting for the client */
#define LS_OUT_LOW        (64 * 1024)
#define LS_IN_WATERMARK   (64 * 1024)
#define LS_IDLE_S         60
#define LS_MAX_BODY       (32LL << 20)
#define LS_REPLAY_MAX     (1 << 20)      /* body kept for a resend */
#define LS_RETRY_S        10             /* resending for at most this long */
#define LS_HOLD_MAX       (16 * 1024)    /* a 403 held back (see agent_listen_up_head) */
#define LS_MAP_POLL_MS    500

/* Request headers passed to the gateway; everything else stays here. */
static const char *const agent_listen_req_headers[] = {
	"Content-Type", "Accept", "Mcp-Session-Id", "MCP-Protocol-Version",
	"Last-Event-ID", "Mcp-Method", "Mcp-Name",
};

/* Response headers passed back to the client. */
static const char *const agent_listen_resp_headers[] = {
	"Content-Type", "Content-Encoding", "Mcp-Session-Id", "MCP-Protocol-Version",
	"Cache-Control", "Retry-After", "Allow", "Strict-Transport-Security",
};

struct ls;

struct agent_listen_conn {
	struct ls *l;
	struct bufferevent *bev;
	struct http_reader *rd;
	struct event *kick;
	char peer[64];
	/* the request in progress */
	int busy;                 /* a request is being forwarded or answered */
	struct agent_http_req *up;
	struct evbuffer *body;    /* request body for the gateway, not yet sent */
	int body_done, send_paused, recv_paused;
	int resp_started, chunked, keep_alive, http10, no_body;
	int close_after;          /* close once the output is written */
	/* what is needed to send the request again when the gateway did not take it */
	char *up_url;
	char **up_hdrs;
	const char *up_method;    /* static (http_parser's name) */
	long long up_len;         /* POST body length, -1 chunked; 0 for GET/DELETE */
	struct evbuffer *sent;    /* body bytes handed to the gateway so far */
	int replayable;
	int holding;              /* the answer is a 403 held back, not yet the client's */
	struct evbuffer *held;    /* ... as it would go to the client */
	struct buf held_body;     /* ... and its body as it came */
	unsigned map_waits;
	unsigned tries;
	time_t first_try;
	struct event *retry_ev;
	TAILQ_ENTRY(agent_listen_conn) link;
};

struct ls {
	struct agent_bridge b;
	const struct agent_listen_args *a;
	struct evconnlistener *lev;
	char *path;               /* the endpoint's path, without a query */
	TAILQ_HEAD(, agent_listen_conn) conns;
	size_t nconns;
	struct event *sig_term, *sig_int;
	struct event *grace_ev;
	int full_logged;
	int draining;
};

static void agent_listen_conn_free(struct agent_listen_conn *c);
static void agent_listen_feed(struct agent_listen_conn *c);
static void agent_listen_forget(struct agent_listen_conn *c);
static void agent_listen_retry_cb(evutil_socket_t fd, short what, void *arg);

static int
agent_listen_listed(const char *const *list, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcasecmp(list[i], name) == 0)
			return 1;
	return 0;
}

/* A complete local answer with a JSON-RPC error body; the connection closes after
 * it unless keep is set. */
static void
agent_listen_answer(struct agent_listen_conn *c, int status, int code, const char *msg,
    const char *extra,
    int keep)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char *body = mcp_error_body(NULL, code, msg);
	size_t n = body != NULL ? strlen(body) : 0;

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n%s%sConnection: %s\r\n\r\n", status,
	    http_status_text(status), n, extra ? extra : "", extra ? "\r\n" : "",
	    keep ? "keep-alive" : "close");
	if (body != NULL)
		evbuffer_add(out, body, n);
	free(body);
	c->resp_started = 1;
	if (!keep)
		c->close_after = 1;
}

/* ------------------------------------------------------------------------- */
/* The gateway side of a request */

/* 1 while the certificate in use may still be unknown to the gateway's identity
 * map (issued a moment ago: the gateway loads a new agent within about a second). */
static int
agent_listen_map_pending(const struct ls *l)
{
	return agent_time_map_pending(agent_cred_not_before(l->b.cred),
	    agent_cred_not_after(l->b.cred), time(NULL));
}

/* The held 403 becomes the client's answer after all. */
static void
agent_listen_release(struct agent_listen_conn *c)
{
	c->holding = 0;
	c->resp_started = 1;
	evbuffer_add_buffer(bufferevent_get_output(c->bev), c->held);
	buf_reset(&c->held_body);
}

/* A 403 while the certificate is new may be the gateway not knowing the agent yet:
 * the answer is held back (small, as refusals are) until its body tells, and the
 * request is sent again instead when it does (agent_listen_up_done). */
static int
agent_listen_up_head(void *arg, const struct agent_http_resp *r)
{
	struct agent_listen_conn *c = arg;
	struct evbuffer *out;
	const char *cl = NULL;
	size_t i;

	if (c->l->draining)
		c->keep_alive = 0;     /* this answer is the connection's last */
	c->holding = r->status == 403 && c->replayable && agent_listen_map_pending(c->l);
	out = c->holding ? c->held : bufferevent_get_output(c->bev);
	evbuffer_drain(c->held, evbuffer_get_length(c->held));
	buf_reset(&c->held_body);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", r->status,
	    http_status_text(r->status));
	for (i = 0; i < r->nh; i++) {
		if (strcasecmp(r->h[i].name, "Content-Length") == 0)
			cl = r->h[i].value;
		else if (agent_listen_listed(agent_listen_resp_headers,
		    sizeof(agent_listen_resp_headers) /
		    sizeof(agent_listen_resp_headers[0]), r->h[i].name))
			evbuffer_add_printf(out, "%s: %s\r\n", r->h[i].name, r->h[i].value);
	}
	c->no_body = r->status == 204 || r->status == 304;
	if (c->no_body)
		;
	else if (cl != NULL)
		evbuffer_add_printf(out, "Content-Length: %s\r\n", cl);
	else if (!c->http10) {
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
		c->chunked = 1;
	} else
		c->keep_alive = 0;     /* HTTP/1.0: the end of the body is the close */
	evbuffer_add_printf(out, "Connection: %s\r\n\r\n", c->keep_alive ? "keep-alive" :
	    "close");
	c->resp_started = !c->holding;
	return 0;
}

static int
agent_listen_up_body(void *arg, const char *p, size_t n)
{
	struct agent_listen_conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->holding && (c->held_body.len + n > LS_HOLD_MAX ||
	    buf_add(&c->held_body, p, n) == -1))
		agent_listen_release(c);         /* too large for the refusal it would be */
	if (c->holding)
		out = c->held;
	else if (evbuffer_get_length(out) > LS_OUT_HIGH) {
		c->recv_paused = 1;
		return AGENT_HTTP_PAUSE;
	}
	if (n == 0 || c->no_body)
		return 0;
	if (c->chunked) {
		evbuffer_add_printf(out, "%zx\r\n", n);
		evbuffer_add(out, p, n);
		evbuffer_add(out, "\r\n", 2);
	} else
		evbuffer_add(out, p, n);
	return 0;
}

static ssize_t
agent_listen_up_send(void *arg, char *p, size_t n)
{
	struct agent_listen_conn *c = arg;
	size_t have = evbuffer_get_length(c->body);
	int got;

	if (have == 0) {
		if (c->body_done)
			return 0;
		c->send_paused = 1;
		return AGENT_HTTP_SEND_PAUSE;
	}
	if ((got = evbuffer_remove(c->body, p, n)) < 0)
		return -1;
	if (c->replayable) {
		if (evbuffer_get_length(c->sent) + (size_t)got > LS_REPLAY_MAX) {
			c->replayable = 0;
			evbuffer_drain(c->sent, evbuffer_get_length(c->sent));
		} else if (evbuffer_add(c->sent, p, (size_t)got) == -1)
			c->replayable = 0;
	}
	/* Room again: read more of the client's body (from the loop). */
	if (have >= LS_BODY_HIGH && evbuffer_get_length(c->body) < LS_BODY_HIGH)
		event_active(c->kick, 0, 0);
	return got;
}

/* The request is answered: the next one may be read (not while draining). */
static void
agent_listen_request_end(struct agent_listen_conn *c)
{
	struct timeval idle = { LS_IDLE_S, 0 };

	c->busy = 0;
	c->up = NULL;
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	agent_listen_forget(c);
	if (!c->keep_alive || !c->body_done || c->l->draining) {
		c->close_after = 1;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			agent_listen_conn_free(c);
		return;
	}
	bufferevent_set_timeouts(c->bev, &idle, NULL);
	http_reader_resume(c->rd);
	event_active(c->kick, 0, 0);
}

static void
agent_listen_up_done(void *arg, enum agent_http_result res, const char *msg)
{
	struct agent_listen_conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char text[600];

	c->up = NULL;
	if (c->holding && res == AGENT_HTTP_OK && c->replayable && agent_listen_map_pending(c->l) &&
	    agent_msg_unmapped(c->held_body.p, c->held_body.len)) {
		struct timeval tv = { 0, LS_MAP_POLL_MS * 1000 };

		if (c->map_waits++ == 0)
			log_info("%s: the gateway has not loaded the identity of certificate %s "
			    "yet; sending again for up to %d s after its issuance", c->peer,
			    agent_cred_serial(c->l->b.cred), AGENT_TIME_MAP_WAIT);
		c->holding = 0;
		evbuffer_drain(c->held, evbuffer_get_length(c->held));
		buf_reset(&c->held_body);
		evbuffer_prepend_buffer(c->body, c->sent);
		evtimer_add(c->retry_ev, &tv);
		return;
	}
	if (c->holding) {
		if (res == AGENT_HTTP_OK)
			agent_listen_release(c);
		else {
			c->holding = 0;
			evbuffer_drain(c->held, evbuffer_get_length(c->held));
			buf_reset(&c->held_body);
		}
	}
	if (res == AGENT_HTTP_OK) {
		if (c->chunked)
			evbuffer_add(out, "0\r\n\r\n", 5);
		agent_listen_request_end(c);
		return;
	}
	if (res == AGENT_HTTP_NOT_SENT && !c->resp_started && c->replayable &&
	    time(NULL) - c->first_try < LS_RETRY_S) {
		long ms = 250L << (c->tries < 3 ? c->tries : 3);
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

		if (c->tries++ == 0)
			log_info("%s: the gateway did not take the request (%s); sending it "
			    "again for up to %d s", c->peer, msg, LS_RETRY_S);
		evbuffer_prepend_buffer(c->body, c->sent);
		evtimer_add(c->retry_ev, &tv);
		return;
	}
	log_warn("%s: forwarding to the gateway failed: %s", c->peer, msg);
	if (!c->resp_started) {
		snprintf(text, sizeof(text), "certgate agent: the gateway %s: %s%s%s%s",
		    res == AGENT_HTTP_NOT_SENT ? "cannot be reached" : "failed", msg,
		    *agent_cred_hint(msg) ? " (" : "", agent_cred_hint(msg),
		    *agent_cred_hint(msg) ? ")" : "");
		agent_listen_answer(c, 502, MCP_ERR_GATEWAY, text, NULL,
		    c->keep_alive && c->body_done);
		agent_listen_request_end(c);
		return;
	}
	/* Part of the answer is out: only closing tells the client it is cut. */
	c->keep_alive = 0;
	agent_listen_request_end(c);
}

/* ------------------------------------------------------------------------- */
/* The client side */

static int
agent_listen_on_begin(void *arg)
{
	struct agent_listen_conn *c = arg;

	c->busy = 1;
	c->body_done = c->send_paused = c->recv_paused = 0;
	c->resp_started = c->chunked = c->no_body = 0;
	return 0;
}

/* Checks a request head; 0, or the status of a local refusal (msg set). */
static int
agent_listen_check(struct agent_listen_conn *c, const struct http_msg *m, const char **msg,
    const char **extra)
{
	const char *host, *origin, *ct, *q;
	size_t pl;

	*extra = NULL;
	host = http_msg_get(m, "Host");
	if (!c->l->a->allow_remote && !agent_url_host_loopback(host)) {
		*msg = "certgate agent: Host must be a loopback name (127.0.0.1, localhost, "
		    "[::1]): refused as a possible DNS rebinding";
		return 403;
	}
	origin = http_msg_get(m, "Origin");
	if (origin != NULL && !agent_url_origin_loopback(origin)) {
		*msg = "certgate agent: requests from web pages of other origins are "
		    "refused";
		return 403;
	}
	if (strcmp(m->method_str, "GET") != 0 && strcmp(m->method_str, "POST") != 0 &&
	    strcmp(m->method_str, "DELETE") != 0) {
		*msg = "certgate agent: only GET, POST and DELETE are forwarded";
		*extra = "Allow: GET, POST, DELETE";
		return 405;
	}
	if (m->url[0] != '/') {
		*msg = "certgate agent: the request target must be a path";
		return 400;
	}
	q = strchr(m->url, '?');
	pl = q != NULL ? (size_t)(q - m->url) : strlen(m->url);
	if (pl != strlen(c->l->path) || strncmp(m->url, c->l->path, pl) != 0) {
		*msg = "certgate agent: nothing here; the MCP endpoint is the path of --url";
		return 404;
	}
	ct = http_msg_get(m, "Content-Type");
	if (strcmp(m->method_str, "POST") == 0 && (ct == NULL ||
	    strncasecmp(ct, "application/json", 16) != 0)) {
		*msg = "certgate agent: POST bodies must be application/json";
		return 415;
	}
	return 0;
}

static void
agent_listen_forget(struct agent_listen_conn *c)
{
	size_t i;

	free(c->up_url);
	c->up_url = NULL;
	for (i = 0; c->up_hdrs != NULL && c->up_hdrs[i] != NULL; i++)
		free(c->up_hdrs[i]);
	free(c->up_hdrs);
	c->up_hdrs = NULL;
	c->up_method = NULL;
	evbuffer_drain(c->sent, evbuffer_get_length(c->sent));
	evbuffer_drain(c->held, evbuffer_get_length(c->held));
	buf_reset(&c->held_body);
	c->holding = 0;
	c->map_waits = 0;
	evtimer_del(c->retry_ev);
}

/* Starts (or starts again) the request to the gateway. Returns 0/-1. */
static int
agent_listen_up_start(struct agent_listen_conn *c)
{
	static const struct agent_http_cbs cbs = {
		.on_head = agent_listen_up_head, .on_body = agent_listen_up_body,
		    .on_send = agent_listen_up_send,
		.on_done = agent_listen_up_done,
	};
	struct agent_http_spec spec = { 0 };

	spec.method = c->up_method;
	spec.url = c->up_url;
	spec.headers = (const char *const *)c->up_hdrs;
	if (strcmp(c->up_method, "POST") == 0) {
		spec.streamed_body = 1;
		spec.send_len = c->up_len;
	}
	c->send_paused = c->recv_paused = 0;
	c->up = agent_http_start(c->l->b.http, &spec, &cbs, c);
	return c->up != NULL ? 0 : -1;
}

static void
agent_listen_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_listen_conn *c = arg;

	if (agent_listen_up_start(c) == -1) {
		agent_listen_answer(c, 502, MCP_ERR_GATEWAY,
		    "certgate agent: cannot start the request "
		    "(out of memory)", NULL, 0);
		agent_listen_request_end(c);
	}
}

static int
agent_listen_on_headers(void *arg, struct http_msg *m)
{
	struct agent_listen_conn *c = arg;
	const char *msg, *extra;
	size_t i, n = 0;
	int status, accept = 0, oom = 0;

	c->http10 = m->major == 1 && m->minor == 0;
	c->keep_alive = m->keep_alive;
	if ((status = agent_listen_check(c, m, &msg, &extra)) != 0) {
		/* 404s are mostly OAuth discovery probes of clients such as mcp-remote. */
		log_msg(status == 404 ? LOG_LVL_DEBUG : LOG_LVL_INFO, __func__,
		    "%s: %s %s refused (%d): %s", c->peer, m->method_str, m->url, status, msg);
		agent_listen_answer(c, status, MCP_ERR_INVALID, msg, extra, 0);
		return -1;
	}
	agent_listen_forget(c);
	if ((c->up_hdrs = calloc(m->nh + 2, sizeof(*c->up_hdrs))) == NULL ||
	    asprintf(&c->up_url, "%s%s", c->l->b.url.origin, m->url) == -1) {
		c->up_url = NULL;
		oom = 1;
	}
	for (i = 0; !oom && i < m->nh; i++) {
		if (!agent_listen_listed(agent_listen_req_headers,
		    sizeof(agent_listen_req_headers) /
		    sizeof(agent_listen_req_headers[0]), m->h[i].name))
			continue;
		accept |= strcasecmp(m->h[i].name, "Accept") == 0;
		if (asprintf(&c->up_hdrs[n], "%s: %s", m->h[i].name, m->h[i].value) == -1) {
			c->up_hdrs[n] = NULL;
			oom = 1;
		} else
			n++;
	}
	/* No Accept from the client: none to the gateway either (not curl's). */
	if (!oom && !accept && (c->up_hdrs[n] = strdup("Accept:")) == NULL)
		oom = 1;
	c->up_method = m->method_str;
	c->up_len = strcmp(m->method_str, "POST") != 0 ? 0 : m->chunked ? -1 :
	    m->content_length > 0 ? m->content_length : 0;
	c->replayable = 1;
	c->tries = 0;
	c->first_try = time(NULL);
	if (oom || agent_listen_up_start(c) == -1) {
		agent_listen_answer(c, 502, MCP_ERR_GATEWAY,
		    "certgate agent: cannot start the request "
		    "(out of memory)", NULL, 0);
		return -1;
	}
	/* No idle limit while the request is being answered (streams last). */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	return 0;
}

static int
agent_listen_on_body(void *arg, const char *p, size_t n)
{
	struct agent_listen_conn *c = arg;

	if (evbuffer_add(c->body, p, n) == -1)
		return -1;
	if (c->send_paused) {
		c->send_paused = 0;
		agent_http_resume_send(c->up);
	}
	return 0;
}

static int
agent_listen_on_complete(void *arg, struct http_msg *m)
{
	struct agent_listen_conn *c = arg;

	c->body_done = 1;
	if (c->send_paused) {
		c->send_paused = 0;
		agent_http_resume_send(c->up);
	}
	return 1;   /* the next request waits until this one is answered */
}

/* Feeds buffered client bytes to the reader while it may take them. */
static void
agent_listen_feed(struct agent_listen_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	ssize_t k;

	while (!c->close_after && !http_reader_paused(c->rd) &&
	    evbuffer_get_length(c->body) < LS_BODY_HIGH &&
	    evbuffer_get_length(in) > 0) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		k = http_reader_feed(c->rd, v.iov_base, v.iov_len);
		if (k < 0) {
			if (c->up != NULL) {
				agent_http_cancel(c->up);
				c->up = NULL;
			}
			if (!c->resp_started && http_reader_status(c->rd) != 0) {
				log_info("%s: bad request: %s", c->peer,
				    http_reader_reason(c->rd));
				agent_listen_answer(c, http_reader_status(c->rd), MCP_ERR_INVALID,
				    http_reader_reason(c->rd), NULL, 0);
			} else
				c->close_after = 1;
			if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
				agent_listen_conn_free(c);
			return;
		}
		evbuffer_drain(in, (size_t)k);
	}
}

static void
agent_listen_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	agent_listen_feed(arg);
}

static void
agent_listen_read_cb(struct bufferevent *bev, void *arg)
{
	agent_listen_feed(arg);
}

static void
agent_listen_write_cb(struct bufferevent *bev, void *arg)
{
	struct agent_listen_conn *c = arg;

	if (c->close_after && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		agent_listen_conn_free(c);
		return;
	}
	if (c->recv_paused) {
		c->recv_paused = 0;
		agent_http_resume_recv(c->up);
	}
}

static void
agent_listen_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent_listen_conn *c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug("%s: idle for %d s: closed", c->peer, LS_IDLE_S);
	else if (c->busy)
		log_msg(c->resp_started ? LOG_LVL_DEBUG : LOG_LVL_INFO, __func__,
		    "%s: the client closed the connection%s", c->peer, c->up != NULL ?
		    "; the request to the gateway is dropped" : "");
	agent_listen_conn_free(c);
}

static void
agent_listen_conn_free(struct agent_listen_conn *c)
{
	struct ls *l = c->l;

	if (c->up != NULL)
		agent_http_cancel(c->up);
	TAILQ_REMOVE(&l->conns, c, link);
	l->nconns--;
	if (l->draining && l->nconns == 0) {
		log_info("every request in flight was answered: stopping");
		event_base_loopexit(l->b.base, NULL);
	}
	agent_listen_forget(c);
	bufferevent_free(c->bev);
	http_reader_free(c->rd);
	event_free(c->kick);
	event_free(c->retry_ev);
	evbuffer_free(c->body);
	evbuffer_free(c->sent);
	evbuffer_free(c->held);
	buf_free(&c->held_body);
	free(c);
}

static void
agent_listen_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	static const struct http_cbs cbs = {
		.on_begin = agent_listen_on_begin, .on_headers = agent_listen_on_headers,
		.on_body = agent_listen_on_body, .on_complete = agent_listen_on_complete,
	};
	struct http_limits lim = { 16384, 100, LS_MAX_BODY };
	struct timeval idle = { LS_IDLE_S, 0 };
	struct ls *l = arg;
	struct agent_listen_conn *c;
	char host[48] = "?";

	if (l->nconns >= LS_MAX_CONNS) {
		if (!l->full_logged++)
			log_warn("%d client connections open: refusing more", LS_MAX_CONNS);
		evutil_closesocket(fd);
		return;
	}
	l->full_logged = 0;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->l = l;
	buf_init(&c->held_body);
	if (sa->sa_family == AF_INET)
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host,
		    sizeof(host));
	else if (sa->sa_family == AF_INET6)
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host,
		    sizeof(host));
	snprintf(c->peer, sizeof(c->peer), "%s:%u", host, sa->sa_family == AF_INET ?
	    ntohs(((struct sockaddr_in *)sa)->sin_port) :
	    ntohs(((struct sockaddr_in6 *)sa)->sin6_port));
	if ((c->bev = bufferevent_socket_new(l->b.base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(c);
		goto fail;
	}
	fd = -1;
	if ((c->rd = http_reader_new(1, &lim, &cbs, c)) == NULL ||
	    (c->kick = event_new(l->b.base, -1, 0, agent_listen_kick_cb, c)) == NULL ||
	    (c->retry_ev = evtimer_new(l->b.base, agent_listen_retry_cb, c)) == NULL ||
	    (c->body = evbuffer_new()) == NULL || (c->sent = evbuffer_new()) == NULL ||
	    (c->held = evbuffer_new()) == NULL) {
		http_reader_free(c->rd);
		if (c->kick != NULL)
			event_free(c->kick);
		if (c->retry_ev != NULL)
			event_free(c->retry_ev);
		if (c->body != NULL)
			evbuffer_free(c->body);
		if (c->sent != NULL)
			evbuffer_free(c->sent);
		bufferevent_free(c->bev);
		free(c);
		goto fail;
	}
	TAILQ_INSERT_TAIL(&l->conns, c, link);
	l->nconns++;
	bufferevent_setcb(c->bev, agent_listen_read_cb, agent_listen_write_cb,
	    agent_listen_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, LS_IN_WATERMARK);
	bufferevent_setwatermark(c->bev, EV_WRITE, LS_OUT_LOW, 0);
	bufferevent_set_timeouts(c->bev, &idle, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return;
fail:
	log_err("out of memory: a client connection was refused");
	if (fd >= 0)
		evutil_closesocket(fd);
}

/* What a drain waits for: a request forwarded (or about to be sent again) whose
 * answer has not ended, other than a GET stream, and an answer still being written
 * to a client before its connection closes. */
static int
agent_listen_in_flight(struct agent_listen_conn *c)
{
	if (c->close_after)
		return evbuffer_get_length(bufferevent_get_output(c->bev)) > 0;
	return c->busy && c->up_url != NULL && c->up_method != NULL &&
	    strcmp(c->up_method, "GET") != 0;
}

static void
agent_listen_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ls *l = arg;

	log_warn("grace period of %d s over: cutting %zu connection(s) still busy",
	    l->a->grace_s, l->nconns);
	event_base_loopexit(l->b.base, NULL);
}

static void
agent_listen_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = { 0, 0 };
	struct ls *l = arg;
	struct agent_listen_conn *c, *next;
	size_t busy = 0;

	if (l->draining) {
		log_info("signal %d again: stopping now, cutting %zu connection(s)",
		    (int)sig, l->nconns);
		event_base_loopexit(l->b.base, NULL);
		return;
	}
	if (l->lev != NULL) {
		evconnlistener_free(l->lev);
		l->lev = NULL;
	}
	for (c = TAILQ_FIRST(&l->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (agent_listen_in_flight(c)) {
			busy++;
			continue;
		}
		if (c->busy && c->up_url != NULL)
			log_debug("%s: GET stream closed for the shutdown", c->peer);
		agent_listen_conn_free(c);
	}
	l->draining = 1;
	if (busy == 0) {
		log_info("signal %d: stopping (no request in flight)", (int)sig);
		event_base_loopexit(l->b.base, NULL);
		return;
	}
	log_info("signal %d: stopping; new connections are refused, %zu request(s) in "
	    "flight may finish for up to %d s (a second signal stops at once)", (int)sig,
	    busy, l->a->grace_s);
	tv.tv_sec = l->a->grace_s;
	evtimer_add(l->grace_ev, &tv);
}

int
agent_listen_run(const struct agent_listen_args *a)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct ls l;
	struct agent_listen_conn *c;
	char err[300];
	const char *q;
	int rc = 1;

	memset(&l, 0, sizeof(l));
	TAILQ_INIT(&l.conns);
	l.a = a;
	signal(SIGPIPE, SIG_IGN);
	if (agent_url_listen_addr(a->listen, &ss, &sslen, err, sizeof(err)) == -1) {
		log_err("agent listen: --listen %s", err);
		return 1;
	}
	if (!agent_url_sockaddr_loopback((struct sockaddr *)&ss)) {
		if (!a->allow_remote) {
			log_err("agent listen: refusing to listen on %s: the listener speaks "
			    "plain HTTP without authentication, and anyone who can connect "
			    "acts with this agent's certificate. Bind 127.0.0.1 or [::1], or "
			    "pass --allow-remote if something in front of it authenticates",
			    a->listen);
			return 1;
		}
		log_warn("agent listen: listening on %s beyond loopback (--allow-remote): "
		    "whoever can connect acts as this agent", a->listen);
	}
	if (agent_bridge_open(&l.b, "agent listen", a->url, a->dir, a->renew_url) == -1)
		return 1;
	q = strchr(l.b.url.path, '?');
	if ((l.path = strndup(l.b.url.path, q ? (size_t)(q - l.b.url.path) :
	    strlen(l.b.url.path))) == NULL)
		goto done;
	l.lev = evconnlistener_new_bind(l.b.base, agent_listen_accept_cb, &l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
	    (struct sockaddr *)&ss, (int)sslen);
	if (l.lev == NULL) {
		log_err("agent listen: cannot listen on %s: %s", a->listen, strerror(errno));
		goto done;
	}
	if ((l.sig_term = evsignal_new(l.b.base, SIGTERM, agent_listen_signal_cb, &l)) == NULL ||
	    (l.sig_int = evsignal_new(l.b.base, SIGINT, agent_listen_signal_cb, &l)) == NULL ||
	    (l.grace_ev = evtimer_new(l.b.base, agent_listen_grace_cb, &l)) == NULL ||
	    event_add(l.sig_term, NULL) == -1 || event_add(l.sig_int, NULL) == -1) {
		log_err("agent listen: out of memory");
		goto done;
	}
	log_info("agent listen: listening on http://%s%s, forwarding to %s", a->listen,
	    l.path, a->url);
	event_base_dispatch(l.b.base);
	rc = 0;
done:
	l.draining = 0;
	while ((c = TAILQ_FIRST(&l.conns)) != NULL)
		agent_listen_conn_free(c);
	if (l.lev != NULL)
		evconnlistener_free(l.lev);
	if (l.sig_term != NULL)
		event_free(l.sig_term);
	if (l.sig_int != NULL)
		event_free(l.sig_int);
	if (l.grace_ev != NULL)
		event_free(l.grace_ev);
	free(l.path);
	agent_bridge_close(&l.b);
	return rc;
}
