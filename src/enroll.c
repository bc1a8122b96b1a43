/* Enrollment over HTTP (enroll.h).
 *
 * The enroll listener speaks to clients that may have no certificate yet, so it is
 * kept small and strict: one request at a time per connection, the same HTTP reader
 * as the gateway (http.h), bodies capped at EST_MAX_BODY, the gateway's header, body
 * and idle timeouts, and nothing but the EST and OCSP routes. */
#include "enroll.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>

#include "audit.h"
#include "buf.h"
#include "caclient.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "rate.h"

/* Enrollment attempts per client address: a token is 256 bits, so this bounds the
 * load (CSR checks, CA round trips), not guessing. */
#define ENROLL_RATE_PER_S	2.0
#define ENROLL_RATE_BURST	20.0
#define ENROLL_OUT_HIGH		(64 * 1024)

static struct {
	struct est *est;
	const struct config *cfg;
	int with_ca;
	struct rate_table *rates;
} enr;

struct enroll_worker {
	struct caclient *ca;
};

struct enroll_pending {
	struct enroll_worker *ew;
	struct caclient_req *creq;
	struct est_call call;
	enroll_done_fn done;
	void *arg;
};

int
enroll_init(const struct config *cfg, int with_ca)
{
	char err[256];

	enr.cfg = cfg;
	enr.with_ca = with_ca;
	if ((enr.est = est_new(cfg->ca.cert, err, sizeof(err))) == NULL) {
		if (with_ca) {
			log_err("enrollment: %s", err);
			return -1;
		}
		/* A gateway in front of another CA (no ca.cert of ours): no EST routes. */
		log_info("EST routes off: %s", err);
	}
	if ((enr.rates = rate_table_new()) == NULL) {
		log_err("enrollment: out of memory");
		return -1;
	}
	return 0;
}

void
enroll_shutdown(void)
{
	est_free(enr.est);
	rate_table_free(enr.rates);
	enr.est = NULL;
	enr.rates = NULL;
}

struct enroll_worker *
enroll_worker_new(struct event_base *base, const struct config *cfg)
{
	struct enroll_worker *ew;

	if ((ew = calloc(1, sizeof(*ew))) == NULL)
		return NULL;
	if (enr.with_ca && (ew->ca = caclient_new(base, cfg->ca.socket, 10000)) == NULL) {
		free(ew);
		return NULL;
	}
	return ew;
}

void
enroll_worker_free(struct enroll_worker *ew)
{
	if (ew == NULL)
		return;
	caclient_free(ew->ca);
	free(ew);
}

int
enroll_route(const char *path, int mtls)
{
	if (!est_path(path))
		return 0;
	/* The mTLS listener serves what an agent with a certificate needs. */
	return !mtls || strcmp(path, "/.well-known/est/cacerts") == 0 ||
	    strcmp(path, "/.well-known/est/simplereenroll") == 0;
}

static void
enroll_text(struct est_response *resp, int status, const char *msg)
{
	memset(resp, 0, sizeof(*resp));
	resp->status = status;
	resp->content_type = "text/plain; charset=utf-8";
	if ((resp->body = strdup(msg)) != NULL)
		resp->body_len = strlen(msg);
}

static void
enroll_ca_cb(const struct caproto_reply *rep, void *arg)
{
	struct enroll_pending *p = arg;
	struct est_response resp;

	memset(&resp, 0, sizeof(resp));
	est_reply(enr.est, &p->call, rep, &resp);
	est_call_clear(&p->call);
	p->done(p->arg, &resp);
	est_response_clear(&resp);
	free(p);
}

int
enroll_serve(struct enroll_worker *ew, const struct est_request *r,
    struct est_response *resp, enroll_done_fn done, void *arg,
    struct enroll_pending **pending)
{
	struct enroll_pending *p;
	double retry = 1;
	struct timespec now;
	char key[80];

	*pending = NULL;
	memset(resp, 0, sizeof(*resp));
	if (strcasecmp(r->method, "POST") == 0 && (strstr(r->path, "enroll") != NULL)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		snprintf(key, sizeof(key), "ip %s", r->peer != NULL ? r->peer : "?");
		if (!rate_take(enr.rates, key, ENROLL_RATE_PER_S, ENROLL_RATE_BURST,
		    now.tv_sec + now.tv_nsec / 1e9, &retry)) {
			enroll_text(resp, 429, "too many enrollment requests from this address\n");
			resp->retry_after = retry < 1 ? 1 : (int)(retry + 0.999);
			return 1;
		}
	}
	if (enr.est == NULL) {
		enroll_text(resp, 404, "EST is not served by this gateway\n");
		return 1;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		enroll_text(resp, 500, "out of memory\n");
		return 1;
	}
	if (est_handle(enr.est, r, resp, &p->call) == EST_RESPOND) {
		est_call_clear(&p->call);
		free(p);
		return 1;
	}
	est_response_clear(resp);
	if (ew == NULL || ew->ca == NULL) {
		est_call_clear(&p->call);
		free(p);
		enroll_text(resp, 404, "enrollment is not enabled on this gateway "
		    "(enroll.listen)\n");
		return 1;
	}
	p->ew = ew;
	p->done = done;
	p->arg = arg;
	if ((p->creq = caclient_send(ew->ca, &p->call.req, enroll_ca_cb, p)) == NULL) {
		est_call_clear(&p->call);
		free(p);
		enroll_text(resp, 503, "the CA service cannot be asked now\n");
		resp->retry_after = 5;
		return 1;
	}
	*pending = p;
	return 0;
}

void
enroll_cancel(struct enroll_pending *p)
{
	if (p == NULL)
		return;
	caclient_cancel(p->creq);
	est_call_clear(&p->call);
	free(p);
}

/* ---- the enroll listener's connections ---- */

enum { EC_IDLE, EC_HEAD, EC_BODY, EC_WAIT, EC_FLUSH };

struct enroll_conn {
	struct conn *c;
	struct http_reader *rd;
	struct event *timer;
	struct buf body;
	struct enroll_pending *pending;
	int phase;
	int keep;
	int depth;
	int too_big;
	enum conn_end close_reason;
	char method[16];
	char path[256];
	char *ctype, *auth;
	struct timespec t0;
};

static void enroll_drive(struct enroll_conn *ec);

static void
enroll_timer(struct enroll_conn *ec, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms <= 0)
		evtimer_del(ec->timer);
	else
		evtimer_add(ec->timer, &tv);
}

static void
enroll_enter(struct enroll_conn *ec)
{
	ec->depth++;
}

static void
enroll_leave(struct enroll_conn *ec)
{
	if (--ec->depth == 0 && ec->close_reason != CONN_END_NONE)
		conn_close(ec->c, ec->close_reason);     /* frees ec */
}

static void
enroll_audit(struct enroll_conn *ec, int status, const char *reason)
{
	const struct identity_peer *pid = conn_peer_id(ec->c);
	struct audit_rec r;
	struct timespec now;
	char method[300];

	memset(&r, 0, sizeof(r));
	snprintf(method, sizeof(method), "%s %s", ec->method, ec->path);
	clock_gettime(CLOCK_MONOTONIC, &now);
	r.serial = pid->serial[0] ? pid->serial : NULL;
	r.peer = conn_peer(ec->c);
	r.method = method;
	r.decision = status >= 200 && status < 300 ? "allow" : "deny";
	r.reason = status >= 200 && status < 300 ? NULL : reason;
	r.status = status;
	r.duration_ms = (now.tv_sec - ec->t0.tv_sec) * 1e3 + (now.tv_nsec - ec->t0.tv_nsec) / 1e6;
	audit_write(&r);
	metrics_inc(M_REQ_TOTAL);
	metrics_status(status);
}

static void
enroll_write(struct enroll_conn *ec, const struct est_response *resp)
{
	struct evbuffer *out = bufferevent_get_output(conn_bev(ec->c));
	const char *body = resp->body != NULL ? resp->body : "";

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "Cache-Control: no-store\r\nStrict-Transport-Security: max-age=%d; "
	    "includeSubDomains\r\n", resp->status, http_status_text(resp->status),
	    resp->content_type != NULL ? resp->content_type : "text/plain",
	    resp->body_len, ec->c != NULL ? conn_cfg(ec->c)->hsts_max_age : 0);
	if (resp->status == 200 && resp->content_type != NULL &&
	    strncmp(resp->content_type, "application/pkcs7-mime", 22) == 0)
		evbuffer_add_printf(out, "Content-Transfer-Encoding: base64\r\n");
	if (resp->retry_after > 0)
		evbuffer_add_printf(out, "Retry-After: %d\r\n", resp->retry_after);
	if (resp->www_authenticate != NULL)
		evbuffer_add_printf(out, "WWW-Authenticate: %s\r\n", resp->www_authenticate);
	if (resp->allow != NULL)
		evbuffer_add_printf(out, "Allow: %s\r\n", resp->allow);
	evbuffer_add_printf(out, "%s\r\n", ec->keep && !conn_draining(ec->c) ? "" :
	    "Connection: close\r\n");
	evbuffer_add(out, body, resp->body_len);
	enroll_audit(ec, resp->status, resp->status >= 400 && resp->body != NULL ?
	    "refused" : NULL);
	free(ec->ctype);
	free(ec->auth);
	ec->ctype = ec->auth = NULL;
	buf_reset(&ec->body);
	if (!ec->keep || conn_draining(ec->c)) {
		ec->phase = EC_FLUSH;
		bufferevent_setwatermark(conn_bev(ec->c), EV_WRITE, 0, 0);
		enroll_timer(ec, conn_cfg(ec->c)->limits.idle_timeout_ms);
		return;
	}
	ec->phase = EC_IDLE;
	enroll_timer(ec, conn_cfg(ec->c)->limits.idle_timeout_ms);
	http_reader_resume(ec->rd);
}

static void
enroll_done(void *arg, const struct est_response *resp)
{
	struct enroll_conn *ec = arg;

	enroll_enter(ec);
	ec->pending = NULL;
	enroll_write(ec, resp);
	if (ec->phase == EC_IDLE)
		enroll_drive(ec);
	enroll_leave(ec);
}

static void
enroll_request(struct enroll_conn *ec)
{
	struct est_request r;
	struct est_response resp;

	enroll_timer(ec, 0);
	memset(&r, 0, sizeof(r));
	r.method = ec->method;
	r.path = ec->path;
	r.content_type = ec->ctype;
	r.authorization = ec->auth;
	r.body = (const unsigned char *)buf_str(&ec->body);
	r.body_len = ec->body.len;
	r.client_cert = conn_peer_cert(ec->c);
	r.peer = conn_peer_ip(ec->c);
	ec->phase = EC_WAIT;
	if (ec->too_big) {
		memset(&resp, 0, sizeof(resp));
		enroll_text(&resp, 413, "request body too large\n");
		enroll_write(ec, &resp);
		est_response_clear(&resp);
		return;
	}
	if (!enroll_route(ec->path, 0)) {
		memset(&resp, 0, sizeof(resp));
		enroll_text(&resp, 404, "not found: this listener serves EST "
		    "(/.well-known/est/...) and OCSP (/ocsp)\n");
		enroll_write(ec, &resp);
		est_response_clear(&resp);
		return;
	}
	if (enroll_serve(conn_worker_data(ec->c), &r, &resp, enroll_done, ec,
	    &ec->pending) == 1) {
		enroll_write(ec, &resp);
		est_response_clear(&resp);
	}
	/* else: enroll_done follows; the response timeout bounds the wait */
}

static int
enroll_rq_begin(void *arg)
{
	struct enroll_conn *ec = arg;

	clock_gettime(CLOCK_MONOTONIC, &ec->t0);
	ec->phase = EC_HEAD;
	ec->too_big = 0;
	enroll_timer(ec, conn_cfg(ec->c)->limits.header_timeout_ms);
	return 0;
}

static int
enroll_rq_headers(void *arg, struct http_msg *m)
{
	struct enroll_conn *ec = arg;
	const char *v, *q;
	size_t n;

	snprintf(ec->method, sizeof(ec->method), "%s", m->method_str);
	q = strchr(m->url, '?');
	n = q != NULL ? (size_t)(q - m->url) : strlen(m->url);
	snprintf(ec->path, sizeof(ec->path), "%.*s", (int)(n < 255 ? n : 255), m->url);
	ec->keep = m->keep_alive;
	if ((v = http_msg_get(m, "Content-Type")) != NULL)
		ec->ctype = strdup(v);
	if ((v = http_msg_get(m, "Authorization")) != NULL)
		ec->auth = strdup(v);
	ec->phase = EC_BODY;
	enroll_timer(ec, conn_cfg(ec->c)->limits.body_timeout_ms);
	return 0;
}

static int
enroll_rq_body(void *arg, const char *p, size_t n)
{
	struct enroll_conn *ec = arg;

	if (ec->body.len + n > EST_MAX_BODY) {
		ec->too_big = 1;        /* read (the framing is valid) but not kept */
		return 0;
	}
	return buf_add(&ec->body, p, n);
}

static int
enroll_rq_complete(void *arg, struct http_msg *m)
{
	return 1;       /* one request at a time */
}

static const struct http_cbs enroll_cbs = { enroll_rq_begin, enroll_rq_headers,
    enroll_rq_body, enroll_rq_complete };

static void
enroll_drive(struct enroll_conn *ec)
{
	struct evbuffer *in = bufferevent_get_input(conn_bev(ec->c));
	struct est_response resp;
	struct evbuffer_iovec v;
	ssize_t k;
	int st;

	while (ec->close_reason == CONN_END_NONE && (ec->phase == EC_IDLE ||
	    ec->phase == EC_HEAD || ec->phase == EC_BODY) && evbuffer_get_length(in) > 0) {
		if (evbuffer_get_length(bufferevent_get_output(conn_bev(ec->c))) > ENROLL_OUT_HIGH)
			break;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if ((k = http_reader_feed(ec->rd, v.iov_base, v.iov_len)) < 0) {
			st = http_reader_status(ec->rd);
			memset(&resp, 0, sizeof(resp));
			enroll_text(&resp, st >= 400 ? st : 400, http_reader_reason(ec->rd));
			ec->keep = 0;
			if (ec->method[0] == '\0')
				snprintf(ec->method, sizeof(ec->method), "?");
			enroll_write(ec, &resp);
			est_response_clear(&resp);
			break;
		}
		evbuffer_drain(in, (size_t)k);
		if (http_reader_paused(ec->rd))
			enroll_request(ec);
	}
}

static void
enroll_readcb(struct bufferevent *bev, void *arg)
{
	struct enroll_conn *ec = arg;

	enroll_enter(ec);
	if (ec->depth == 1)
		enroll_drive(ec);
	enroll_leave(ec);
}

static void
enroll_writecb(struct bufferevent *bev, void *arg)
{
	struct enroll_conn *ec = arg;

	enroll_enter(ec);
	if (ec->phase == EC_FLUSH && evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
	    ec->close_reason == CONN_END_NONE)
		ec->close_reason = CONN_END_DONE;
	else if (ec->phase == EC_IDLE && ec->depth == 1)
		enroll_drive(ec);
	enroll_leave(ec);
}

static void
enroll_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct enroll_conn *ec = arg;

	enroll_enter(ec);
	if (ec->close_reason == CONN_END_NONE)
		ec->close_reason = (what & BEV_EVENT_EOF) ? CONN_END_CLIENT_EOF :
		    CONN_END_CLIENT_ERROR;
	enroll_leave(ec);
}

static void
enroll_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct enroll_conn *ec = arg;

	enroll_enter(ec);
	if (ec->close_reason == CONN_END_NONE)
		ec->close_reason = ec->phase == EC_IDLE ? CONN_END_IDLE :
		    ec->phase == EC_FLUSH ? CONN_END_STALLED : CONN_END_CLIENT_TIMEOUT;
	enroll_leave(ec);
}

static void *
enroll_wnew(struct event_base *base, const struct config *cfg)
{
	return enroll_worker_new(base, cfg);
}

static void
enroll_wfree(void *wdata)
{
	enroll_worker_free(wdata);
}

static int
enroll_start(struct conn *c)
{
	struct http_limits lim = { 0, 0, EST_MAX_BODY * 4 };
	struct bufferevent *bev = conn_bev(c);
	struct enroll_conn *ec;

	if ((ec = calloc(1, sizeof(*ec))) == NULL)
		return -1;
	ec->c = c;
	buf_init(&ec->body);
	lim.max_header_bytes = (size_t)conn_cfg(c)->limits.max_header_bytes;
	lim.max_header_count = (size_t)conn_cfg(c)->limits.max_header_count;
	if ((ec->rd = http_reader_new(1, &lim, &enroll_cbs, ec)) == NULL ||
	    (ec->timer = evtimer_new(conn_base(c), enroll_timer_cb, ec)) == NULL) {
		http_reader_free(ec->rd);
		free(ec);
		return -1;
	}
	conn_set_app_data(c, ec);
	bufferevent_setcb(bev, enroll_readcb, enroll_writecb, enroll_eventcb, ec);
	bufferevent_setwatermark(bev, EV_READ, 0, 64 * 1024);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	ec->phase = EC_IDLE;
	enroll_timer(ec, conn_cfg(c)->limits.header_timeout_ms);
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		bufferevent_trigger(bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
	return 0;
}

static void
enroll_end(struct conn *c, enum conn_end why)
{
	struct enroll_conn *ec = conn_app_data(c);

	if (ec == NULL)
		return;
	enroll_cancel(ec->pending);
	if (conn_bev(c) != NULL)
		bufferevent_setcb(conn_bev(c), NULL, NULL, NULL, NULL);
	http_reader_free(ec->rd);
	event_free(ec->timer);
	buf_free(&ec->body);
	free(ec->ctype);
	free(ec->auth);
	free(ec);
	conn_set_app_data(c, NULL);
}

static int
enroll_busy(const struct conn *c)
{
	const struct enroll_conn *ec = conn_app_data(c);

	return ec != NULL && (ec->phase == EC_WAIT || ec->phase == EC_BODY);
}

const struct conn_app enroll_app = {
	.name = "the enrollment listener",
	.worker_new = enroll_wnew,
	.worker_free = enroll_wfree,
	.start = enroll_start,
	.end = enroll_end,
	.busy = enroll_busy,
	.cut = NULL,
	.optional_cert = 1,
};
