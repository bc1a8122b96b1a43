/* HTTP/1.1 proxying of MCP traffic from an established mTLS connection.
 *
 * One request at a time per client connection: the request reader pauses after each
 * complete request (pipelined requests wait in the input buffer, bounded by the read
 * watermark) and resumes when the response has been handed to the client.
 *
 * Per request: headers complete -> revocation, identity, rate, method, protocol
 * version and session checks (a refusal decided here is answered once the body has
 * been read, so the connection stays usable); message complete -> POST bodies (always
 * buffered, bounded by max_body_bytes) are inspected against the agent's scopes; an
 * allowed request goes to a pooled or new upstream connection with the identity
 * headers; the response streams back as it arrives, re-framed (Content-Length kept,
 * chunked re-chunked, close-delimited turned into chunked for HTTP/1.1 clients).
 * Listing responses (tools/list...) are filtered: JSON bodies are buffered and
 * rewritten, event streams go event by event through the mcp_sse filter.
 *
 * Paths: decide.c normalizes the request target (path.c: dot segments removed,
 * encoded '/', '\' and '.' refused) before it is compared with upstream.path; the
 * normalized target, never the client's spelling, is what head.c forwards.
 *
 * What lives elsewhere: the per-request decision (decide.c, pure), the request and
 * response heads and the hop-by-hop table (head.c), the upstream pool (upstream.c),
 * listing filters (mcp.c), audit records (audit.c). Why this file is still ~1,500
 * lines: it is one state machine (request side, upstream side, response side, the
 * entry points that guard re-entrancy) over one private struct proxy_conn; cutting
 * it across files would export that struct and the enter/leave depth rule to every
 * piece, which is the re-entrancy bug this layout exists to prevent.
 *
 * Audit: exactly one record per request, written when the response is complete (or
 * by proxy_conn_free when the connection ends first, with the close reason). With
 * audit.on_failure = refuse, a request is not forwarded while the audit log is
 * failing (503); the refusal's own audit write doubles as the health probe, so the
 * gateway recovers by itself once the log is writable again. A forwarded request
 * whose final audit write fails cannot be taken back; the next one is refused.
 *
 * Re-entrancy: bufferevent_openssl may run our client callbacks synchronously from
 * inside bufferevent_write. Every entry point counts its depth and only the
 * outermost one acts on a pending close (conn_close frees this structure). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <http_parser.h>

#include "argcheck.h"
#include "activity.h"
#include "audit.h"
#include "buf.h"
#include "clientcert.h"
#include "cluster.h"
#include "decide.h"
#include "enroll.h"
#include "head.h"
#include "http.h"
#include "log.h"
#include "mcp.h"
#include "metrics.h"
#include "path.h"
#include "proxy.h"
#include "rate.h"
#include "session.h"
#include "state.h"
#include "upstream.h"

#define PROXY_OUT_HIGH     (256 * 1024)   /* client output: stop reading upstream */
#define PROXY_OUT_LOW      (64 * 1024)    /* ... resume below this */
#define PROXY_IN_HIGH      (256 * 1024)   /* client input: stop reading the socket */
#define PROXY_SLICE        (16 * 1024)    /* upstream bytes fed per step (pause granularity) */

enum { PH_IDLE, PH_HEAD, PH_BODY, PH_UPSTREAM };
enum { OUT_LENGTH, OUT_CHUNKED, OUT_EOF, OUT_BUFFER };

struct proxy_req {
	int active;                     /* first byte seen */
	int audited;
	struct timespec t0, t_up;
	struct gw_state *st;
	const struct identity_agent *agent;
	int looked_up;
	const struct http_msg *m;       /* the reader's; valid until it resumes */
	const char *http_method;
	unsigned method;
	int keep_alive;
	struct decide_out dec;          /* the head's decision: agent, target, session */
	struct argcheck_key ak;         /* the tool table of schema checks */
	struct enroll_pending *est;     /* an EST request waiting for the CA service */
	struct cluster_op *cl_op;       /* a Redis question about this request (cluster.h) */
	int cl_done;                    /* PX_CL_* steps answered */
	char *bound_session;            /* from an initialize response */
	/* refusal decided at headers complete, answered at message complete */
	int deny_status;
	const char *deny_reason;
	const char *deny_extra;         /* extra response header line(s) */
	int forwarded;
	struct evbuffer *body;
	struct evbuffer *out;           /* upstream request, kept for one retry */
	struct mcp_inspect insp;
	int have_insp;
	json_t *rpc_id;                 /* id / method / name for refusals and audit */
	char *rpc_method;
	char *rpc_name;
	/* upstream side */
	struct upstream_conn *up;
	int retried;
	int up_eof;             /* upstream closed while its bytes waited for the client */
	int up_got;                     /* any response byte received */
	struct http_reader *resp;
	const struct http_msg *resp_m;  /* the response reader's head */
	int got_headers;
	int resp_done;
	int resp_keep;
	int resp_err;                   /* status to answer after a response-side failure */
	const char *resp_err_reason;
	int out_mode;
	int client_keep;
	int head_sent;
	int status_sent;
	struct evbuffer *rbuf;          /* JSON body being buffered for filtering */
	const struct mcp_pending_list *flists;  /* what the response is filtered for */
	size_t nflists;
	struct mcp_sse *sse;
};

/* The gateway listener's per-worker state. */
struct proxy_worker {
	struct upstream_pool *pool;
	struct enroll_worker *ew;       /* EST routes of this listener */
	struct cluster_worker *cw;      /* NULL: a single instance */
};

enum { PX_CL_SESSION = 1, PX_CL_RATE = 2 };

struct proxy_conn {
	struct conn *c;
	struct upstream_pool *pool;     /* the worker's */
	struct enroll_worker *ew;
	struct cluster_worker *cw;      /* the worker's, or NULL */
	const struct config *cfg;
	struct http_reader *rd;
	struct event *timer;
	int phase;
	unsigned nreq;
	int depth;
	enum conn_end close_reason;     /* CONN_END_NONE while open */
	int close_after_flush;
	enum conn_end flush_reason;
	int up_paused;
	int in_paused;                  /* not parsing: the client owes us a read */
	int truncated;                  /* a response was cut after its head went out */
	char *xfcc;                     /* X-Forwarded-Client-Cert value, at first use */
	char *client_cert;              /* RFC 9440 Client-Cert, at first use */
	char *client_cert_chain;        /* and Client-Cert-Chain ("" when none) */
	struct activity_agent *act;     /* live connections per agent (activity.h) */
	struct evbuffer *stage;         /* response bytes of this callback (proxy_flush) */
	struct proxy_req q;
};

static pthread_once_t proxy_once = PTHREAD_ONCE_INIT;
static struct rate_table *proxy_rates;
static struct session_table *proxy_sessions;
static int proxy_tables_ok;

static void proxy_drive(struct proxy_conn *);
static void proxy_enter(struct proxy_conn *);
static void proxy_leave(struct proxy_conn *);
static void proxy_up_readcb(struct bufferevent *, void *);
static void proxy_up_eventcb(struct bufferevent *, short, void *);
static void proxy_up_read(struct proxy_conn *);
static void proxy_up_eof(struct proxy_conn *);
static int proxy_up_start(struct proxy_conn *);

/* Without either table the gateway would serve without rate limits or session
 * binding: that is a start-up failure, never a silent downgrade. */
static void
proxy_metrics(FILE *f)
{
	metrics_put_head(f, "sessions", "gauge",
	    "MCP sessions (Mcp-Session-Id) bound to an agent.");
	fprintf(f, "certgate_sessions %zu\n", session_count(proxy_sessions));
}

static void
proxy_tables_init(void)
{
	proxy_rates = rate_table_new();
	proxy_sessions = session_table_new();
	proxy_tables_ok = proxy_rates != NULL && proxy_sessions != NULL &&
	    argcheck_init(proxy_sessions) == 0;
	if (!proxy_tables_ok)
		log_err("out of memory for the rate limit or session binding table");
	else
		(void)metrics_add_renderer(proxy_metrics);
}

static double
proxy_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1e3 + (now.tv_nsec - t->tv_nsec) / 1e6;
}

static double
proxy_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec + now.tv_nsec / 1e9;
}

static void
proxy_timer(struct proxy_conn *px, int ms)
{
	struct timeval tv;

	if (ms <= 0) {
		evtimer_del(px->timer);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(px->timer, &tv);
}

/* Everything for the client is staged here during one callback and leaves at its
 * end (proxy_flush), after the audit write of a completed request. */
static struct evbuffer *
proxy_client_out(struct proxy_conn *px)
{
	return px->stage;
}

/* Bytes owed to the client: staged plus queued in the bufferevent. */
static size_t
proxy_out_len(const struct proxy_conn *px)
{
	return evbuffer_get_length(px->stage) +
	    evbuffer_get_length(bufferevent_get_output(conn_bev(px->c)));
}

/* ---- small helpers ---- */

static void
proxy_lookup(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;

	if (q->looked_up)
		return;
	q->looked_up = 1;
	if ((q->st = state_get()) != NULL && q->st->map != NULL)
		q->agent = identity_lookup(q->st->map, conn_peer_id(px->c));
}

static const char *
proxy_audit_method(const struct proxy_req *q)
{
	if (q->have_insp && q->insp.method)
		return q->insp.method;
	if (q->rpc_method)
		return q->rpc_method;
	return q->http_method;
}

static const char *
proxy_audit_name(const struct proxy_req *q)
{
	if (q->have_insp && q->insp.name)
		return q->insp.name;
	return q->rpc_name;
}

/* The first refusal detail of an inspected body (argument rule, schema), or NULL. */
static const char *
proxy_audit_detail(const struct proxy_req *q)
{
	size_t i;

	if (!q->have_insp || q->insp.detail == NULL)
		return NULL;
	for (i = 0; i < q->insp.n; i++)
		if (q->insp.detail[i] != NULL)
			return q->insp.detail[i];
	return NULL;
}

static void
proxy_audit(struct proxy_conn *px, int allow, const char *reason, int status)
{
	struct proxy_req *q = &px->q;
	struct audit_rec r;
	char rid[64];

	if (q->audited)
		return;
	q->audited = 1;
	memset(&r, 0, sizeof(r));
	r.agent = q->agent ? q->agent->id : NULL;
	r.serial = conn_peer_id(px->c)->serial[0] ? conn_peer_id(px->c)->serial : NULL;
	r.peer = conn_peer(px->c);
	r.method = proxy_audit_method(q);
	r.name = proxy_audit_name(q);
	r.decision = allow ? "allow" : "deny";
	r.reason = reason;
	r.status = status;
	r.duration_ms = proxy_ms_since(&q->t0);
	r.session = q->dec.session ? q->dec.session : q->bound_session;
	r.detail = proxy_audit_detail(q);
	/* Request id, JSON-RPC id, who an unmapped certificate is,
	 * and the per-agent activity of the status page. */
	audit_request_id(rid, sizeof(rid), conn_id(px->c), px->nreq + 1);
	r.request_id = rid;
	r.rpc_id = q->rpc_id;
	r.rpc_msg = q->have_insp ? q->insp.root : NULL;
	r.subject = conn_peer_id(px->c)->subject;
	r.uri = conn_peer_id(px->c)->nuris > 0 ? conn_peer_id(px->c)->uris[0] : NULL;
	activity_request(r.agent, r.peer, allow, reason, r.method, r.name);
	audit_write(&r);
	metrics_inc(M_REQ_TOTAL);
	if (status >= 100)
		metrics_status(status);
	if (!allow)
		metrics_deny(r.agent, reason);      /* counts M_REQ_DENIED too */
}

static int
proxy_rpc_code(int status)
{
	switch (status) {
	case 403:
		return MCP_ERR_FORBIDDEN;
	case 429:
		return MCP_ERR_RATE_LIMITED;
	case 502:
	case 503:
	case 504:
		return MCP_ERR_GATEWAY;
	default:
		return MCP_ERR_INVALID;
	}
}

static void
proxy_close_after_flush(struct proxy_conn *px, enum conn_end reason)
{
	px->close_after_flush = 1;
	px->flush_reason = reason;
	px->phase = PH_UPSTREAM;        /* read nothing more; the timer bounds the flush */
	proxy_timer(px, px->cfg->limits.idle_timeout_ms);
	bufferevent_setwatermark(conn_bev(px->c), EV_WRITE, 0, 0);
	if (proxy_out_len(px) == 0 && px->close_reason == CONN_END_NONE)
		px->close_reason = reason;
}

/* Writes a complete refusal: JSON-RPC error body (body, or built from msg and the
 * request id), HSTS, optional extra header lines, Connection: close when closing. */
static void
proxy_send_error(struct proxy_conn *px, int status, const char *msg, const char *body,
    const char *extra, int close)
{
	struct evbuffer *out = proxy_client_out(px);
	char *built = NULL, text[256];

	if (body == NULL) {
		snprintf(text, sizeof(text), "certgate: %s", msg);
		built = mcp_error_body(px->q.rpc_id, proxy_rpc_code(status), text);
		if (built == NULL) {
			json_t *o = json_pack("{s:s,s:n,s:{s:i,s:s}}", "jsonrpc", "2.0", "id",
			    "error", "code", proxy_rpc_code(status), "message", text);
			built = o ? json_dumps(o, JSON_COMPACT) : NULL;
			json_decref(o);
		}
		body = built ? built : "{}";
	}
	/* Say what happens to the connection: HTTP/1.0 clients (ab -k) wait for the
	 * server to close unless the response echoes keep-alive. */
	if (!close && (!px->q.keep_alive || conn_draining(px->c)))
		close = 1;
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nStrict-Transport-Security: max-age=%d; includeSubDomains\r\n"
	    "%s%s\r\n", status, http_status_text(status), strlen(body), px->cfg->hsts_max_age,
	    extra ? extra : "", close ? "Connection: close\r\n" :
	    (px->q.m != NULL && px->q.m->minor == 0) ? "Connection: keep-alive\r\n" : "");
	evbuffer_add(out, body, strlen(body));
	free(built);
	px->q.head_sent = 1;
	px->q.status_sent = status;
}

static void
proxy_req_clear(struct proxy_req *q)
{
	enroll_cancel(q->est);
	cluster_cancel(q->cl_op);
	if (q->up)
		upstream_free(q->up);
	if (q->st)
		state_put(q->st);
	if (q->body)
		evbuffer_free(q->body);
	if (q->out)
		evbuffer_free(q->out);
	if (q->rbuf)
		evbuffer_free(q->rbuf);
	if (q->sse)
		mcp_sse_free(q->sse);
	if (q->have_insp)
		mcp_inspect_free(&q->insp);
	if (q->resp)
		http_reader_free(q->resp);
	json_decref(q->rpc_id);
	free(q->rpc_method);
	free(q->rpc_name);
	decide_out_free(&q->dec);
	free(q->bound_session);
	memset(q, 0, sizeof(*q));
}

/* The request is answered: reset for the next one or close after the flush. */
static void
proxy_end_request(struct proxy_conn *px, int keep)
{
	keep = keep && px->q.keep_alive && !conn_draining(px->c);
	proxy_req_clear(&px->q);
	px->nreq++;
	px->up_paused = 0;
	if (!keep) {
		proxy_close_after_flush(px, CONN_END_DONE);
		return;
	}
	px->phase = PH_IDLE;
	proxy_timer(px, px->cfg->limits.idle_timeout_ms);
	if (px->rd != NULL)
		http_reader_resume(px->rd);
}

static void
proxy_refuse(struct proxy_conn *px, int status, const char *reason, const char *body,
    const char *extra, int close, int allow)
{
	proxy_send_error(px, status, reason, body, extra, close);
	proxy_audit(px, allow, reason, status);
	proxy_end_request(px, !close);
}

/* Best effort: the JSON-RPC id, method and name of a body that was refused before
 * inspection, for the error body and the audit record. */
static void
proxy_body_meta(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	json_t *root, *v, *params;
	const char *p;
	size_t len;

	if (q->body == NULL || (len = evbuffer_get_length(q->body)) == 0)
		return;
	if ((p = (const char *)evbuffer_pullup(q->body, -1)) == NULL)
		return;
	root = json_loadb(p, len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return;
	}
	if ((v = json_object_get(root, "id")) != NULL)
		q->rpc_id = json_incref(v);
	if (json_is_string(v = json_object_get(root, "method")))
		q->rpc_method = strdup(json_string_value(v));
	params = json_object_get(root, "params");
	if (json_is_string(v = json_object_get(params, "name")) ||
	    json_is_string(v = json_object_get(params, "uri")))
		q->rpc_name = strdup(json_string_value(v));
	json_decref(root);
}

/* The certificate does not change on a connection: the values that carry it
 * upstream (upstream.client_cert_header) are built once, at the first request (not
 * at the handshake: idle connections stay small). */
static int
proxy_cert_values(struct proxy_conn *px)
{
	const struct config_upstream *u = &conn_cfg(px->c)->upstream;

	if (u->client_cert_xfcc && px->xfcc == NULL &&
	    (px->xfcc = identity_xfcc(conn_peer_id(px->c))) == NULL)
		return -1;
	if (u->client_cert_rfc9440 && px->client_cert == NULL) {
		if ((px->client_cert = clientcert_field(conn_peer_cert(px->c))) == NULL)
			return -1;
		/* no chain (a resumed session whose CA left the store): Client-Cert alone */
		if ((px->client_cert_chain = clientcert_chain_field(conn_peer_chain(px->c))) ==
		    NULL)
			return -1;
	}
	return 0;
}

static int
proxy_build_upstream(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	const struct identity_agent *a = q->agent;
	size_t blen = q->body ? evbuffer_get_length(q->body) : 0;
	struct head_ident id;
	char stack[4096];
	struct buf b;
	int rc;

	if ((q->out = evbuffer_new()) == NULL)
		return -1;
	if (proxy_cert_values(px) == -1)
		return -1;
	id.agent = a->id;
	id.scopes = a->scopes_str;
	id.xfcc = px->xfcc;
	id.client_cert = px->client_cert;
	id.client_cert_chain = px->client_cert_chain;
	id.peer_ip = conn_peer_ip(px->c);
	/* A head is assembled in one buffer (on the stack while it fits) and handed to
	 * the evbuffer in one evbuffer_add: an evbuffer call per line costs more. */
	buf_init_stack(&b, stack, sizeof(stack));
	rc = head_request(&b, q->m, q->dec.target, upstream_hostport(px->pool), &id,
	    (long long)blen);
	if (rc == 0)
		rc = evbuffer_add(q->out, b.p, b.len);
	buf_free(&b);
	if (rc == -1)
		return -1;
	/* The body is already contiguous (inspected); the upstream request keeps
	 * it by reference rather than by copy. */
	if (blen > 0 && evbuffer_add_buffer_reference(q->out, q->body) == -1)
		return -1;
	return 0;
}

/* ---- client request side ---- */

static int
proxy_rq_begin(void *arg)
{
	struct proxy_conn *px = arg;

	px->q.active = 1;
	clock_gettime(CLOCK_MONOTONIC, &px->q.t0);
	px->phase = PH_HEAD;
	proxy_timer(px, px->cfg->limits.header_timeout_ms);
	return 0;
}

static void
proxy_deny(struct proxy_req *q, int status, const char *reason)
{
	if (q->deny_status == 0) {
		q->deny_status = status;
		q->deny_reason = reason;
	}
}

/* The head's decision (decide.h). Returns -1 to stop reading this connection
 * (revoked). */
static int
proxy_check_headers(struct proxy_conn *px, const struct http_msg *m)
{
	struct proxy_req *q = &px->q;
	const struct config *cfg = px->cfg;
	struct decide_ctx x;

	if (q->st == NULL)
		q->st = state_get();
	memset(&x, 0, sizeof(x));
	x.st = q->st;
	x.peer = conn_peer_id(px->c);
	x.rates = proxy_rates;
	x.sessions = proxy_sessions;
	x.rate_per_second = cfg->rate_per_second;
	x.rate_burst = cfg->rate_burst;
	x.prefix = cfg->upstream.path;
	x.now = proxy_now();
	if (decide_request(&x, m, &q->dec) == -1) {
		proxy_deny(q, 503, "out of memory");
		return 0;
	}
	q->agent = q->dec.agent;
	q->looked_up = 1;
	if (q->dec.status == DECIDE_CLOSE) {
		proxy_deny(q, -1, q->dec.reason);
		px->close_reason = CONN_END_REVOKED;
		return -1;
	}
	if (q->dec.status != 0) {
		proxy_deny(q, q->dec.status, q->dec.reason);
		q->deny_extra = q->dec.extra;
	}
	return 0;
}

static int
proxy_rq_headers(void *arg, struct http_msg *m)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;
	const char *expect;

	q->m = m;
	q->method = m->method;
	q->http_method = m->method_str;
	q->keep_alive = m->keep_alive;
	px->phase = PH_BODY;
	proxy_timer(px, px->cfg->limits.body_timeout_ms);
	if (proxy_check_headers(px, m) == -1)
		return -1;
	expect = http_msg_get(m, "Expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 &&
	    (m->content_length > 0 || m->chunked)) {
		if (q->deny_status) {
			/* do not make the client send a body we will refuse anyway */
			proxy_lookup(px);
			proxy_refuse(px, q->deny_status, q->deny_reason, NULL, q->deny_extra, 1, 0);
			return -1;
		}
		evbuffer_add_printf(proxy_client_out(px), "HTTP/1.1 100 Continue\r\n\r\n");
	}
	return 0;
}

static int
proxy_rq_body(void *arg, const char *p, size_t n)
{
	struct proxy_conn *px = arg;

	/* A refused body is read (the framing was valid) but only a POST's is kept, for
	 * the JSON-RPC id of the refusal. */
	if (px->q.deny_status != 0 && px->q.method != HTTP_POST)
		return 0;
	if (px->q.body == NULL && (px->q.body = evbuffer_new()) == NULL)
		return -1;
	return evbuffer_add(px->q.body, p, n);
}

static int
proxy_rq_complete(void *arg, struct http_msg *m)
{
	return 1;       /* pause: one request at a time */
}

static const struct http_cbs proxy_rq_cbs = { proxy_rq_begin, proxy_rq_headers, proxy_rq_body, proxy_rq_complete };

/* ---- EST on the mTLS listener (enroll.h) ---- */

static void
proxy_est_answer(struct proxy_conn *px, const struct est_response *resp)
{
	struct proxy_req *q = &px->q;
	struct evbuffer *out = proxy_client_out(px);
	int close = !q->keep_alive || conn_draining(px->c);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "Cache-Control: no-store\r\nStrict-Transport-Security: max-age=%d; "
	    "includeSubDomains\r\n%s%s", resp->status, http_status_text(resp->status),
	    resp->content_type != NULL ? resp->content_type : "text/plain",
	    resp->body_len, px->cfg->hsts_max_age, resp->status == 200 &&
	    resp->content_type != NULL && strncmp(resp->content_type,
	    "application/pkcs7-mime", 22) == 0 ? "Content-Transfer-Encoding: base64\r\n" : "",
	    close ? "Connection: close\r\n" : q->m->minor == 0 ?
	    "Connection: keep-alive\r\n" : "");
	if (resp->retry_after > 0)
		evbuffer_add_printf(out, "Retry-After: %d\r\n", resp->retry_after);
	if (resp->www_authenticate != NULL)
		evbuffer_add_printf(out, "WWW-Authenticate: %s\r\n", resp->www_authenticate);
	evbuffer_add(out, "\r\n", 2);
	if (resp->body_len > 0)
		evbuffer_add(out, resp->body, resp->body_len);
	q->head_sent = 1;
	q->status_sent = resp->status;
	proxy_audit(px, resp->status < 400, resp->status < 400 ? NULL : "enrollment refused",
	    resp->status);
	proxy_end_request(px, !close);
}

static void
proxy_est_done(void *arg, const struct est_response *resp)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	px->q.est = NULL;
	proxy_est_answer(px, resp);
	if (px->phase == PH_IDLE && px->depth == 1)
		proxy_drive(px);
	proxy_leave(px);
}

/* An EST route (renewal with the current certificate, the CA certificates): answered
 * here, never forwarded. Returns 1 when it was one. */
static int
proxy_est_request(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	const struct http_msg *m = q->m;
	struct est_request r;
	struct est_response resp;
	char path[256];
	const char *qm = strchr(m->url, '?');
	size_t n = qm != NULL ? (size_t)(qm - m->url) : strlen(m->url);

	if (n >= sizeof(path))
		return 0;
	memcpy(path, m->url, n);
	path[n] = '\0';
	if (!enroll_route(path, 1))
		return 0;
	memset(&r, 0, sizeof(r));
	r.method = m->method_str;
	r.path = path;
	r.content_type = http_msg_get(m, "Content-Type");
	r.authorization = http_msg_get(m, "Authorization");
	if (q->body != NULL && evbuffer_get_length(q->body) > 0) {
		r.body_len = evbuffer_get_length(q->body);
		r.body = evbuffer_pullup(q->body, -1);
	}
	r.client_cert = conn_peer_cert(px->c);
	r.peer = conn_peer_ip(px->c);
	/* audited as the enrollment listener audits it: "POST /.well-known/est/..." */
	if (asprintf(&q->rpc_method, "%s %s", m->method_str, path) < 0)
		q->rpc_method = NULL;
	if (enroll_serve(px->ew, &r, &resp, proxy_est_done, px, &q->est) == 1) {
		proxy_est_answer(px, &resp);
		est_response_clear(&resp);
	}
	return 1;
}

/* ---- the cluster (cluster.h): what this instance does not know, Redis does ---- */

static void proxy_request_ready(struct proxy_conn *);

static void
proxy_cluster_resume(struct proxy_conn *px)
{
	proxy_enter(px);
	px->q.cl_op = NULL;
	proxy_request_ready(px);
	if (px->phase == PH_IDLE && px->depth == 1)
		proxy_drive(px);
	proxy_leave(px);
}

static void
proxy_cluster_unavailable(struct proxy_req *q)
{
	/* Never fail open: an id this instance did not bind may be another agent's. */
	q->deny_status = 503;
	q->deny_reason = "session store unavailable (Redis unreachable): the session is "
	    "not known to this instance";
	q->deny_extra = NULL;
	cluster_count_refused_unavailable();
}

static void
proxy_cluster_session_cb(void *arg, enum cluster_session a)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;

	switch (a) {
	case CLUSTER_SESSION_MINE:
		/* Bound here too, so the rest of this session costs no round trip. */
		if (session_bind(proxy_sessions, q->dec.session, q->agent->id) == 0) {
			q->deny_status = 0;
			q->deny_reason = NULL;
		}
		break;
	case CLUSTER_SESSION_OTHER:
		q->deny_status = 403;
		q->deny_reason = "session belongs to another agent";
		break;
	case CLUSTER_SESSION_UNKNOWN:
		break;          /* the 404 stands */
	case CLUSTER_SESSION_DOWN:
		proxy_cluster_unavailable(q);
		break;
	}
	proxy_cluster_resume(px);
}

static void
proxy_cluster_rate_cb(void *arg, int allowed, double retry)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;

	if (allowed == 0 && q->deny_status == 0) {
		snprintf(q->dec.retry, sizeof(q->dec.retry), "Retry-After: %.0f\r\n",
		    retry < 1 ? 1 : ceil(retry));
		q->deny_status = 429;
		q->deny_reason = "rate limited";
		q->deny_extra = q->dec.retry;
	}
	proxy_cluster_resume(px);
}

/* Starts the next Redis question this request needs: the binding of a session id
 * this instance does not hold, then the agent's shared rate budget. Returns 1 when
 * one is in flight (the request waits), 0 when the request goes on now. */
static int
proxy_cluster_ask(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	const struct identity_agent *a = q->agent;
	double per, burst;

	if (!(q->cl_done & PX_CL_SESSION)) {
		q->cl_done |= PX_CL_SESSION;
		if (q->deny_status == 404 && q->dec.session_unknown && a != NULL) {
			if (cluster_session_lookup(px->cw, q->dec.session, a->id,
			    proxy_cluster_session_cb, px, &q->cl_op) == 0)
				return 1;
			proxy_cluster_unavailable(q);
			return 0;
		}
		if (q->deny_status == 0 && q->dec.session != NULL)
			cluster_session_touch(px->cw, q->dec.session);
	}
	if (!(q->cl_done & PX_CL_RATE)) {
		q->cl_done |= PX_CL_RATE;
		if (q->deny_status != 0 || a == NULL)
			return 0;
		per = a->rate_per_second > 0 ? a->rate_per_second : px->cfg->rate_per_second;
		burst = a->rate_burst > 0 ? a->rate_burst : px->cfg->rate_burst;
		/* Redis down: this instance's own bucket (decide.h) has decided. */
		if (per > 0 && cluster_rate_take(px->cw, a->id, per, burst,
		    proxy_cluster_rate_cb, px, &q->cl_op) == 0)
			return 1;
	}
	return 0;
}

/* A complete request is in q: refuse it, or inspect and forward it. */
static void
proxy_request_ready(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	const struct http_msg *m = q->m;
	const struct identity_agent *a;
	struct mcp_authz az;
	const char *body;
	size_t blen;

	proxy_timer(px, 0);
	px->phase = PH_UPSTREAM;
	if (px->cw != NULL && proxy_cluster_ask(px))
		return;         /* proxy_cluster_resume comes back here */
	if (q->deny_status) {
		if (q->method == HTTP_POST)
			proxy_body_meta(px);
		proxy_refuse(px, q->deny_status, q->deny_reason, NULL, q->deny_extra, 0, 0);
		return;
	}
	a = q->agent;
	if (proxy_est_request(px))
		return;
	q->ak.session = q->dec.session;
	q->ak.agent = a->id;
	if (q->method == HTTP_POST) {
		blen = q->body ? evbuffer_get_length(q->body) : 0;
		body = blen ? (const char *)evbuffer_pullup(q->body, -1) : "";
		memset(&az, 0, sizeof(az));
		az.scopes = a->scopes;
		az.nscopes = a->nscopes;
		az.rules = a->argrules;
		az.nrules = a->nargrules;
		if (px->cfg->mcp.validate_arguments) {
			az.validate = argcheck_validate;
			az.validate_arg = &q->ak;
		}
		if (body == NULL || mcp_inspect_request(body, blen, &az,
		    http_msg_get(m, "Mcp-Method"), http_msg_get(m, "Mcp-Name"), &q->insp) == -1) {
			proxy_body_meta(px);
			proxy_refuse(px, 503, "out of memory", NULL, NULL, 0, 0);
			return;
		}
		q->have_insp = 1;
		if (q->insp.status) {
			proxy_body_meta(px);
			proxy_refuse(px, q->insp.status, q->insp.reason ? q->insp.reason : "refused",
			    q->insp.error_body, NULL, 0, 0);
			return;
		}
		/* The id for a later error (502, 504) comes from the one parse. */
		if (json_is_object(q->insp.root) &&
		    (q->rpc_id = json_object_get(q->insp.root, "id")) != NULL)
			json_incref(q->rpc_id);
	}
	if (!px->cfg->audit_fail_open && audit_failing()) {
		proxy_refuse(px, 503, "audit log unavailable", NULL, NULL, 0, 0);
		return;
	}
	if (proxy_build_upstream(px) == -1) {
		proxy_refuse(px, 502, "upstream unavailable", NULL, NULL, 0, 1);
		return;
	}
	q->forwarded = 1;
	if (proxy_up_start(px) == -1) {
		metrics_inc(M_UPSTREAM_ERRORS);
		proxy_refuse(px, 502, "upstream unreachable", NULL, NULL, 0, 1);
	}
}

/* A protocol error from the request reader: answer and close. */
static void
proxy_parse_error(struct proxy_conn *px)
{
	int status = px->rd != NULL ? http_reader_status(px->rd) : 0;

	if (status == 0 || px->q.audited || px->close_reason != CONN_END_NONE)
		return;         /* we aborted the feed ourselves and already acted */
	proxy_lookup(px);
	px->q.active = 1;
	if (px->q.t0.tv_sec == 0)
		clock_gettime(CLOCK_MONOTONIC, &px->q.t0);
	proxy_refuse(px, status >= 400 && status < 600 ? status : 400,
	    http_reader_reason(px->rd), NULL, NULL, 1, 0);
}

/* Feeds buffered client bytes to the reader while no request is in progress. */
/* The request reader is made when the first request byte arrives: a connection
 * that stays idle after its handshake does not carry one. */
static int
proxy_reader(struct proxy_conn *px)
{
	const struct config *cfg = px->cfg;
	struct http_limits hl;

	if (px->rd != NULL)
		return 0;
	hl.max_header_bytes = cfg->limits.max_header_bytes > 0 ?
	    (size_t)cfg->limits.max_header_bytes : 16384;
	hl.max_header_count = cfg->limits.max_header_count > 0 ?
	    (size_t)cfg->limits.max_header_count : 100;
	hl.max_body_bytes = cfg->limits.max_body_bytes;
	if ((px->rd = http_reader_new(1, &hl, &proxy_rq_cbs, px)) == NULL) {
		log_err("out of memory for the request reader of %s", conn_peer(px->c));
		if (px->close_reason == CONN_END_NONE)
			px->close_reason = CONN_END_NO_MEMORY;
		return -1;
	}
	return 0;
}

/* The client's TLS records already read from the socket but not decrypted. With
 * read-ahead (proxy_start) one read(2) takes a whole record and whatever follows it,
 * instead of a 5-byte header read and a body read; bufferevent_openssl only looks at
 * SSL_pending (decrypted bytes), so records waiting in OpenSSL's buffer when the
 * socket has nothing more are decrypted here. Returns the bytes added to the input,
 * 0 when none wait, -1 when the connection ends. */
static int
proxy_read_ahead(struct proxy_conn *px)
{
	struct bufferevent *bev = conn_bev(px->c);
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	int r, err;

	if (ssl == NULL || !SSL_has_pending(ssl))
		return 0;
	if (evbuffer_reserve_space(in, 16384, &v, 1) < 1)
		return -1;
	ERR_clear_error();
	if ((r = SSL_read(ssl, v.iov_base, (int)(v.iov_len > 16384 ? 16384 : v.iov_len))) > 0) {
		v.iov_len = (size_t)r;
		evbuffer_commit_space(in, &v, 1);
		return r;
	}
	err = SSL_get_error(ssl, r);
	ERR_clear_error();
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return 0;       /* a partial record: libevent reads the rest */
	if (px->close_reason == CONN_END_NONE)
		px->close_reason = err == SSL_ERROR_ZERO_RETURN ? CONN_END_CLIENT_EOF :
		    CONN_END_CLIENT_ERROR;
	return -1;
}

static void
proxy_drive(struct proxy_conn *px)
{
	struct evbuffer *in;
	struct evbuffer_iovec v;
	ssize_t k;

	while (px->close_reason == CONN_END_NONE && !px->close_after_flush && px->phase != PH_UPSTREAM) {
		in = bufferevent_get_input(conn_bev(px->c));
		if (evbuffer_get_length(in) == 0 && proxy_read_ahead(px) <= 0)
			break;
		/* A client that pipelines and never reads would make us queue answers
		 * (refusals included) without bound: stop parsing while the answers it owes
		 * are above the watermark; the input then fills to its own watermark and
		 * libevent stops reading the socket. proxy_client_writecb resumes. */
		if (proxy_out_len(px) > PROXY_OUT_HIGH) {
			px->in_paused = 1;
			break;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if (proxy_reader(px) == -1)
			break;
		k = http_reader_feed(px->rd, v.iov_base, v.iov_len);
		if (k < 0) {
			proxy_parse_error(px);
			break;
		}
		evbuffer_drain(in, (size_t)k);
		if (http_reader_paused(px->rd))
			proxy_request_ready(px);
	}
}

/* ---- upstream response side ---- */

static int
proxy_emit(void *arg, const char *p, size_t n)
{
	struct proxy_conn *px = arg;
	struct evbuffer *out = proxy_client_out(px);

	if (n == 0)
		return 0;
	if (px->q.out_mode == OUT_CHUNKED) {
		evbuffer_add_printf(out, "%zx\r\n", n);
		evbuffer_add(out, p, n);
		return evbuffer_add(out, "\r\n", 2);
	}
	return evbuffer_add(out, p, n);
}

static void
proxy_send_head(struct proxy_conn *px, const struct http_msg *m, long long length)
{
	struct proxy_req *q = &px->q;
	char stack[4096];
	struct buf b;

	buf_init_stack(&b, stack, sizeof(stack));
	if (head_response(&b, m, px->cfg->hsts_max_age, q->out_mode == OUT_CHUNKED ?
	    HEAD_CHUNKED : q->out_mode == OUT_EOF ? HEAD_CLOSE : HEAD_LENGTH, length,
	    q->client_keep, q->m->minor == 0) == -1 ||
	    evbuffer_add(proxy_client_out(px), b.p, b.len) == -1) {
		log_err("out of memory for a response head to %s", conn_peer(px->c));
		if (px->close_reason == CONN_END_NONE)
			px->close_reason = CONN_END_NO_MEMORY;
	}
	buf_free(&b);
	q->head_sent = 1;
	q->status_sent = m->status;
}

static void
proxy_session_effects(struct proxy_conn *px, const struct http_msg *m)
{
	struct proxy_req *q = &px->q;
	const char *sid = http_msg_get(m, "Mcp-Session-Id");
	int ok = m->status >= 200 && m->status < 300;

	if (ok && sid && q->have_insp && q->insp.has_initialize && q->agent) {
		if (session_bind(proxy_sessions, sid, q->agent->id) == -1)
			log_warn("upstream session id already bound to another agent");
		else {
			if (q->dec.session == NULL)
				q->bound_session = strdup(sid);
			/* Written before the response head goes out: the client can only
			 * reach another instance with this id after Redis has it queued. */
			if (px->cw != NULL)
				cluster_session_bind(px->cw, sid, q->agent->id);
		}
	}
	if (q->dec.session && (m->status == 404 || (ok && q->method == HTTP_DELETE))) {
		session_remove(proxy_sessions, q->dec.session);
		if (px->cw != NULL)
			cluster_session_forget(px->cw, q->dec.session);
	}
}

/* Matches every listing-shaped response on a GET stream (mcp.h). */
static const struct mcp_pending_list proxy_any_listing = { NULL, NULL, 0 };

/* 1 when the agent holds "*": nothing to filter for it. */
static int
proxy_agent_has_all(const struct identity_agent *a)
{
	size_t i;

	for (i = 0; i < a->nscopes; i++)
		if (strcmp(a->scopes[i], "*") == 0)
			return 1;
	return 0;
}

/* Why a listing response (or a GET stream that may replay one) cannot be filtered,
 * or NULL when it can (*kind says how). A client may read a body in ways the filter
 * does not (two Content-Type lines joined, an encoding after "identity", a media type
 * it matches loosely): anything but one plain JSON or event-stream body is refused. */
static const char *
proxy_unfilterable(const struct http_msg *m, enum mcp_media *kind)
{
	const char *te = http_msg_get(m, "Transfer-Encoding");
	size_t i;

	if (http_msg_count(m, "Content-Type") != 1)
		return "listing response without exactly one Content-Type";
	if ((*kind = mcp_media_kind(http_msg_get(m, "Content-Type"))) == MCP_MEDIA_OTHER)
		return "listing response of a media type that cannot be filtered";
	for (i = 0; i < m->nh; i++)
		if (strcasecmp(m->h[i].name, "Content-Encoding") == 0 &&
		    strcasecmp(m->h[i].value, "identity") != 0)
			return "encoded listing response cannot be filtered";
	if (http_msg_count(m, "Transfer-Encoding") > 1 ||
	    (te != NULL && strcasecmp(te, "chunked") != 0))
		return "transfer-coded listing response cannot be filtered";
	return NULL;
}

static int
proxy_rs_headers(void *arg, struct http_msg *m)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;
	/* A GET stream may replay earlier responses (Last-Event-ID): filter any listing
	 * in what a client reads as the stream (a 2xx body). */
	int any_list = q->method == HTTP_GET && q->agent != NULL &&
	    !proxy_agent_has_all(q->agent) && m->status >= 200 && m->status < 300;
	int lists = (q->have_insp && q->insp.nlisting > 0) || any_list;
	int bodyless = m->status == 204 || m->status == 304 || m->content_length == 0;
	enum mcp_media kind = MCP_MEDIA_OTHER;
	const char *why;
	struct timeval tv;

	if (m->status < 200)
		return 0;               /* interim response: skipped */
	q->got_headers = 1;
	q->resp_m = m;
	metrics_upstream_latency(proxy_ms_since(&q->t_up) / 1e3);
	tv.tv_sec = px->cfg->limits.stream_idle_timeout_ms / 1000;
	tv.tv_usec = (px->cfg->limits.stream_idle_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(upstream_bev(q->up), px->cfg->limits.stream_idle_timeout_ms > 0 ?
	    &tv : NULL, NULL);
	proxy_session_effects(px, m);
	q->client_keep = q->keep_alive && !conn_draining(px->c);
	if (lists && !bodyless) {
		if ((why = proxy_unfilterable(m, &kind)) != NULL) {
			q->resp_err = 502;
			q->resp_err_reason = why;
			return -1;
		}
		q->flists = any_list ? &proxy_any_listing : q->insp.lists;
		q->nflists = any_list ? 1 : q->insp.nlists;
	}
	if (lists && !bodyless && kind == MCP_MEDIA_JSON) {
		q->out_mode = OUT_BUFFER;
		if ((q->rbuf = evbuffer_new()) == NULL)
			return -1;
		return 0;       /* head goes out with the filtered body */
	}
	if (lists && !bodyless) {
		q->sse = mcp_sse_new(q->flists, q->nflists, q->agent->scopes,
		    q->agent->nscopes, (size_t)px->cfg->limits.max_body_bytes);
		if (q->sse == NULL) {
			q->resp_err = 502;
			q->resp_err_reason = "cannot filter event stream";
			return -1;
		}
		if (px->cfg->mcp.validate_arguments)
			mcp_sse_observe(q->sse, argcheck_observe, &q->ak);
	} else if (px->cfg->mcp.validate_arguments && q->agent != NULL && !bodyless &&
	    mcp_media_kind(http_msg_get(m, "Content-Type")) == MCP_MEDIA_SSE) {
		/* Nothing to filter, but the stream may say the tool list changed. */
		if ((q->sse = mcp_sse_new(NULL, 0, q->agent->scopes, q->agent->nscopes,
		    (size_t)px->cfg->limits.max_body_bytes)) == NULL) {
			q->resp_err = 502;
			q->resp_err_reason = "cannot observe event stream";
			return -1;
		}
		mcp_sse_observe(q->sse, argcheck_observe, &q->ak);
	} else if (m->content_length >= 0 || bodyless) {
		q->out_mode = OUT_LENGTH;
		/* 204 and 304 carry no Content-Length */
		proxy_send_head(px, m, (m->status == 204 || m->status == 304) ? -1 :
		    bodyless ? 0 : m->content_length);
		return 0;
	}
	if (q->m->minor >= 1)
		q->out_mode = OUT_CHUNKED;
	else {
		q->out_mode = OUT_EOF;
		q->client_keep = 0;
	}
	proxy_send_head(px, m, -1);
	return 0;
}

static void
proxy_backpressure(struct proxy_conn *px)
{
	if (px->up_paused || px->q.up == NULL)
		return;
	if (proxy_out_len(px) > PROXY_OUT_HIGH) {
		px->up_paused = 1;
		bufferevent_disable(upstream_bev(px->q.up), EV_READ);
		proxy_timer(px, px->cfg->limits.stream_idle_timeout_ms);
	}
}

static int
proxy_rs_body(void *arg, const char *p, size_t n)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;

	if (q->out_mode == OUT_BUFFER) {
		if ((long long)(evbuffer_get_length(q->rbuf) + n) > px->cfg->limits.max_body_bytes) {
			q->resp_err = 502;
			q->resp_err_reason = "listing response too large to filter";
			return -1;
		}
		return evbuffer_add(q->rbuf, p, n);
	}
	if (q->sse)
		return mcp_sse_feed(q->sse, p, n, proxy_emit, px);
	return proxy_emit(px, p, n);
}

static int
proxy_rs_complete(void *arg, struct http_msg *m)
{
	struct proxy_conn *px = arg;

	if (m->status < 200)
		return 0;
	px->q.resp_done = 1;
	px->q.resp_keep = m->keep_alive;
	return 1;
}

static const struct http_cbs proxy_rs_cbs = { NULL, proxy_rs_headers, proxy_rs_body, proxy_rs_complete };

/* What goes out when even the error body cannot be built: never the listing. */
static const char proxy_filter_oom[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
    "{\"code\":-32003,\"message\":\"certgate: listing response could not be filtered\"}}";

static void
proxy_flush_filtered(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	size_t len = evbuffer_get_length(q->rbuf), flen = 0;
	const char *body = len ? (const char *)evbuffer_pullup(q->rbuf, -1) : "";
	char *filtered = NULL;

	if (body != NULL)
		filtered = mcp_filter_json_observed(body, len, q->flists, q->nflists,
		    q->agent->scopes, q->agent->nscopes, px->cfg->mcp.validate_arguments ?
		    argcheck_observe : NULL, &q->ak, &flen);
	if (body == NULL || (filtered == NULL && flen == (size_t)-1)) {
		/* Out of memory: an error instead of the unfiltered listing. */
		log_err("cannot filter a listing response for %s: out of memory", conn_peer(px->c));
		body = proxy_filter_oom;
		len = sizeof(proxy_filter_oom) - 1;
	} else if (filtered != NULL) {
		body = filtered;
		len = flen;
	}
	q->out_mode = OUT_LENGTH;
	/* the response reader paused after this message: its head is still valid */
	proxy_send_head(px, q->resp_m, (long long)len);
	evbuffer_add(proxy_client_out(px), body, len);
	free(filtered);
}

/* The upstream response is complete: finish the client response, recycle the
 * upstream connection, audit, and get ready for the next request. */
static void
proxy_resp_finish(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	struct upstream_conn *up = q->up;
	int keep;

	if (q->out_mode == OUT_BUFFER)
		proxy_flush_filtered(px);
	if (q->sse && mcp_sse_finish(q->sse, proxy_emit, px) == -1)
		log_warn("event stream filter failed at end of stream");
	if (q->out_mode == OUT_CHUNKED)
		evbuffer_add(proxy_client_out(px), "0\r\n\r\n", 5);
	q->up = NULL;
	if (q->resp_keep && evbuffer_get_length(bufferevent_get_input(upstream_bev(up))) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(upstream_bev(up))) == 0)
		upstream_put(up, conn_draining(px->c));
	else
		upstream_free(up);
	proxy_audit(px, 1, NULL, q->status_sent);
	keep = q->client_keep;
	proxy_end_request(px, keep);
}

/* The upstream side failed: answer with status when nothing was sent yet, else end
 * the client connection so that the client sees a truncated response. */
static void
proxy_up_fail(struct proxy_conn *px, int status, const char *reason, int timeout)
{
	struct proxy_req *q = &px->q;

	metrics_inc(timeout ? M_UPSTREAM_TIMEOUTS : M_UPSTREAM_ERRORS);
	log_info("%s: %s (conn %llu)", upstream_hostport(px->pool), reason,
	    (unsigned long long)conn_id(px->c));
	upstream_free(q->up);
	q->up = NULL;
	px->up_paused = 0;
	if (!q->head_sent) {
		proxy_refuse(px, status, reason, NULL, NULL, 0, 1);
		return;
	}
	/* what was received goes out, then the close shows the truncation */
	px->truncated = 1;
	proxy_audit(px, 1, reason, q->status_sent);
	proxy_close_after_flush(px, CONN_END_UPSTREAM);
}

static int
proxy_up_start(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	const struct config_limits *l = &px->cfg->limits;
	struct http_limits hl;
	struct timeval rtv, ctv;
	struct upstream_conn *up;

	if ((up = upstream_get(px->pool, q->retried)) == NULL)
		return -1;
	q->up = up;
	if (q->resp)
		http_reader_free(q->resp);
	hl.max_header_bytes = l->max_header_bytes > 65536 ? (size_t)l->max_header_bytes : 65536;
	hl.max_header_count = l->max_header_count > 256 ? (size_t)l->max_header_count : 256;
	hl.max_body_bytes = -1;
	if ((q->resp = http_reader_new(0, &hl, &proxy_rs_cbs, px)) == NULL)
		return -1;
	rtv.tv_sec = l->upstream_response_timeout_ms / 1000;
	rtv.tv_usec = (l->upstream_response_timeout_ms % 1000) * 1000;
	ctv.tv_sec = l->upstream_connect_timeout_ms / 1000;
	ctv.tv_usec = (l->upstream_connect_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(upstream_bev(up), l->upstream_response_timeout_ms > 0 ?
	    &rtv : NULL, l->upstream_connect_timeout_ms > 0 ? &ctv : NULL);
	bufferevent_setcb(upstream_bev(up), proxy_up_readcb, NULL, proxy_up_eventcb, px);
	if (upstream_send(up, q->out) == -1)
		return -1;
	/* Arming EV_WRITE with nothing queued costs two epoll_ctl calls and a loop
	 * pass for nothing; the bufferevent keeps EV_WRITE in its enabled set, so
	 * later writes still arm it themselves. */
	bufferevent_enable(upstream_bev(up),
	    evbuffer_get_length(bufferevent_get_output(upstream_bev(up))) > 0 ||
	    !upstream_connected(up) ? EV_READ | EV_WRITE : EV_READ);
	clock_gettime(CLOCK_MONOTONIC, &q->t_up);
	return 0;
}

/* Feeds buffered upstream bytes to the response reader, in slices so that a full
 * client output buffer stops the flow promptly. */
static void
proxy_up_read(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;
	struct evbuffer *in;
	struct evbuffer_iovec v;
	ssize_t k;
	size_t n;

	while (q->up && !px->up_paused && !q->resp_done && px->close_reason == CONN_END_NONE) {
		in = bufferevent_get_input(upstream_bev(q->up));
		if (evbuffer_get_length(in) == 0)
			break;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = v.iov_len > PROXY_SLICE ? PROXY_SLICE : v.iov_len;
		q->up_got = 1;
		k = http_reader_feed(q->resp, v.iov_base, n);
		if (k < 0) {
			if (q->resp_err)
				proxy_up_fail(px, q->resp_err, q->resp_err_reason, 0);
			else
				proxy_up_fail(px, 502, "malformed upstream response", 0);
			return;
		}
		evbuffer_drain(in, (size_t)k);
		proxy_backpressure(px);
	}
	if (q->up && q->resp_done)
		proxy_resp_finish(px);
}

/* ---- entry points: every libevent callback goes through enter/leave ---- */

static void
proxy_enter(struct proxy_conn *px)
{
	px->depth++;
}

/* Hands the staged bytes to the connection: straight to SSL_write when nothing is
 * queued before them (the usual keep-alive response: one write, and no write event
 * armed and disarmed, which costs two epoll_ctl and a loop pass), else behind what is
 * queued. Returns 1 when everything went out, 0 when bytes wait in the bufferevent.
 * A refused or partial SSL_write leaves the bytes in one chain that is moved, not
 * copied, into the output: libevent retries with the same buffer, as OpenSSL needs. */
static int
proxy_flush(struct proxy_conn *px)
{
	struct bufferevent *bev = conn_bev(px->c);
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t n = evbuffer_get_length(px->stage);
	SSL *ssl;
	unsigned char *p;
	int w;

	if (n == 0)
		return evbuffer_get_length(out) == 0;
	if (evbuffer_get_length(out) == 0 && n <= INT_MAX &&
	    (ssl = bufferevent_openssl_get_ssl(bev)) != NULL &&
	    (p = evbuffer_pullup(px->stage, -1)) != NULL) {
		ERR_clear_error();
		if ((w = SSL_write(ssl, p, (int)n)) > 0 && (size_t)w == n) {
			evbuffer_drain(px->stage, n);
			return 1;
		}
		/* SSL_write writes all or nothing here (no partial-write mode); the
		 * error (if any) shows again on libevent's retry and ends the connection
		 * through the event callback. */
		ERR_clear_error();
	}
	evbuffer_add_buffer(out, px->stage);
	return 0;
}

/* The client's output went below the low watermark: resume what waited for it. */
static void
proxy_drained(struct proxy_conn *px)
{
	size_t len = proxy_out_len(px);

	if (px->close_after_flush && len == 0 && px->close_reason == CONN_END_NONE)
		px->close_reason = px->flush_reason;
	if (px->depth == 1 && px->in_paused && len <= PROXY_OUT_LOW) {
		px->in_paused = 0;
		if (px->phase != PH_UPSTREAM)
			proxy_drive(px);
	}
	if (px->depth == 1 && px->up_paused && len <= PROXY_OUT_LOW && px->q.up) {
		px->up_paused = 0;
		proxy_timer(px, 0);
		if (px->q.up_eof)
			proxy_up_eof(px);
		else {
			bufferevent_enable(upstream_bev(px->q.up), EV_READ);
			proxy_up_read(px);
		}
		if (px->phase == PH_IDLE)
			proxy_drive(px);
	}
}

static void
proxy_leave(struct proxy_conn *px)
{
	/* The outermost entry point releases what its callbacks staged; a direct
	 * write that emptied everything stands in for the write callback. */
	while (px->depth == 1 && px->close_reason == CONN_END_NONE &&
	    evbuffer_get_length(px->stage) > 0 && proxy_flush(px) == 1)
		proxy_drained(px);
	if (--px->depth == 0 && px->close_reason != CONN_END_NONE)
		conn_close(px->c, px->close_reason);       /* frees px */
}

static void
proxy_up_readcb(struct bufferevent *bev, void *arg)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	proxy_up_read(px);
	if (px->phase == PH_IDLE && px->depth == 1)
		proxy_drive(px);           /* pipelined requests waiting */
	proxy_leave(px);
}

/* The upstream closed after the response head: the response ends here if it is read
 * until close, else the client sees the truncation. Bytes still buffered because the
 * client is slow go out first: the end waits for them (q->up_eof, proxy_client_writecb). */
static void
proxy_up_eof(struct proxy_conn *px)
{
	struct proxy_req *q = &px->q;

	proxy_up_read(px);
	if (q->up == NULL || q->resp_done)
		return;
	if (px->up_paused && evbuffer_get_length(bufferevent_get_input(upstream_bev(q->up))) > 0) {
		q->up_eof = 1;
		return;
	}
	q->up_eof = 0;
	if (http_reader_eof(q->resp) == 0 && q->resp_done) {
		q->resp_keep = 0;
		proxy_resp_finish(px);
	} else
		proxy_up_fail(px, 502, "upstream closed mid-response", 0);
}

static void
proxy_up_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_conn *px = arg;
	struct proxy_req *q = &px->q;
	struct upstream_conn *up = q->up;

	if (what & BEV_EVENT_CONNECTED) {
		upstream_set_connected(up);
		return;
	}
	proxy_enter(px);
	if (what & BEV_EVENT_TIMEOUT) {
		if (!upstream_connected(up))
			proxy_up_fail(px, 502, "upstream connect timeout", 1);
		else if (!q->got_headers)
			proxy_up_fail(px, 504, "upstream response timeout", 1);
		else
			proxy_up_fail(px, 502, "upstream stream idle timeout", 1);
	} else if (upstream_reused(up) && !q->up_got && !q->retried) {
		/* a pooled connection the upstream had just closed: one fresh attempt */
		upstream_free(up);
		q->up = NULL;
		q->retried = 1;
		if (proxy_up_start(px) == -1)
			proxy_up_fail(px, 502, "upstream unreachable", 0);
	} else if ((what & BEV_EVENT_EOF) && q->got_headers) {
		proxy_up_eof(px);
	} else {
		if (what & BEV_EVENT_ERROR)
			log_debug("upstream: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		proxy_up_fail(px, 502, upstream_connected(up) ? "upstream closed the connection" :
		    "upstream unreachable", 0);
	}
	if (px->phase == PH_IDLE && px->depth == 1)
		proxy_drive(px);
	proxy_leave(px);
}

static void
proxy_client_readcb(struct bufferevent *bev, void *arg)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	if (px->depth == 1)
		proxy_drive(px);
	proxy_leave(px);
}

static void
proxy_client_writecb(struct bufferevent *bev, void *arg)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	proxy_drained(px);
	proxy_leave(px);
}

static void
proxy_client_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	if (px->close_reason == CONN_END_NONE)
		px->close_reason = (what & BEV_EVENT_EOF) ? CONN_END_CLIENT_EOF :
		    (what & BEV_EVENT_TIMEOUT) ? CONN_END_CLIENT_TIMEOUT : CONN_END_CLIENT_ERROR;
	proxy_leave(px);
}

static void
proxy_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_conn *px = arg;

	proxy_enter(px);
	switch (px->phase) {
	case PH_IDLE:
		if (px->close_reason == CONN_END_NONE)
			px->close_reason = CONN_END_IDLE;
		break;
	case PH_HEAD:
	case PH_BODY:
		proxy_lookup(px);
		proxy_refuse(px, 408, px->phase == PH_HEAD ? "header timeout" : "body timeout",
		    NULL, NULL, 1, 0);
		break;
	default:
		if (px->close_reason == CONN_END_NONE)
			px->close_reason = CONN_END_STALLED;
		break;
	}
	proxy_leave(px);
}

/* ---- the application's handlers (conn.h) ---- */

static void
proxy_worker_free(void *wdata)
{
	struct proxy_worker *pw = wdata;

	if (pw == NULL)
		return;
	upstream_pool_free(pw->pool);
	enroll_worker_free(pw->ew);
	cluster_worker_free(pw->cw);
	free(pw);
}

static void *
proxy_worker_new(struct event_base *base, const struct config *cfg)
{
	struct proxy_worker *pw;
	int err;

	pthread_once(&proxy_once, proxy_tables_init);
	if (!proxy_tables_ok || (pw = calloc(1, sizeof(*pw))) == NULL)
		return NULL;
	if ((pw->pool = upstream_pool_new(base, cfg)) == NULL ||
	    (pw->ew = enroll_worker_new(base, cfg)) == NULL ||
	    ((pw->cw = cluster_worker_new(base, cfg, &err)) == NULL && err)) {
		proxy_worker_free(pw);
		return NULL;
	}
	return pw;
}

static int
proxy_start(struct conn *c)
{
	const struct config *cfg = conn_cfg(c);
	struct bufferevent *bev = conn_bev(c);
	struct proxy_conn *px;

	if ((px = calloc(1, sizeof(*px))) == NULL)
		return -1;
	px->c = c;
	px->pool = ((struct proxy_worker *)conn_worker_data(c))->pool;
	px->ew = ((struct proxy_worker *)conn_worker_data(c))->ew;
	px->cw = ((struct proxy_worker *)conn_worker_data(c))->cw;
	px->cfg = cfg;
	if ((px->timer = evtimer_new(conn_base(c), proxy_timer_cb, px)) == NULL ||
	    (px->stage = evbuffer_new()) == NULL) {
		if (px->timer)
			event_free(px->timer);
		free(px);
		return -1;
	}
	conn_set_app_data(c, px);
	px->act = activity_conn_open(conn_peer_id(c), conn_peer_ip(c));
	px->phase = PH_IDLE;
	bufferevent_setcb(bev, proxy_client_readcb, proxy_client_writecb, proxy_client_eventcb,
	    px);
	bufferevent_setwatermark(bev, EV_READ, 0, PROXY_IN_HIGH);
	bufferevent_setwatermark(bev, EV_WRITE, PROXY_OUT_LOW, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	proxy_timer(px, cfg->limits.header_timeout_ms);
	if (bufferevent_openssl_get_ssl(bev) != NULL)
		SSL_set_read_ahead(bufferevent_openssl_get_ssl(bev), 1);
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
	    (bufferevent_openssl_get_ssl(bev) != NULL &&
	    SSL_has_pending(bufferevent_openssl_get_ssl(bev))))
		bufferevent_trigger(bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
	return 0;
}

/* The connection ends: a request still in flight is audited with the reason. */
static void
proxy_end(struct conn *c, enum conn_end why)
{
	struct proxy_conn *px = conn_app_data(c);
	struct proxy_req *q;

	if (px == NULL)
		return;
	q = &px->q;
	if (q->active && !q->audited) {
		if (!q->looked_up)
			proxy_lookup(px);
		proxy_audit(px, q->deny_status == 0 && q->forwarded, conn_end_name(why),
		    q->status_sent);
	}
	if (conn_bev(c) != NULL)
		bufferevent_setcb(conn_bev(c), NULL, NULL, NULL, NULL);
	proxy_req_clear(q);
	http_reader_free(px->rd);
	if (px->timer)
		event_free(px->timer);
	if (px->stage)
		evbuffer_free(px->stage);
	activity_conn_close(px->act);
	free(px->xfcc);
	free(px->client_cert);
	free(px->client_cert_chain);
	free(px);
	conn_set_app_data(c, NULL);
}

/* A response was cut after its head went out, or would be by closing now. */
static int
proxy_cut(const struct conn *c)
{
	const struct proxy_conn *px = conn_app_data(c);

	if (px == NULL)
		return 0;
	return px->truncated || (px->q.active && !px->q.audited && px->q.head_sent);
}

/* Busy while a request is unanswered, and while a final response is still being
 * flushed before a close (graceful shutdown must not cut it off). */
static int
proxy_busy(const struct conn *c)
{
	const struct proxy_conn *px = conn_app_data(c);

	if (px == NULL)
		return 0;
	if (px->q.active && !px->q.audited)
		return 1;
	return px->close_after_flush && conn_bev(c) != NULL &&
	    proxy_out_len(px) > 0;
}

const struct conn_app proxy_app = {
	.name = "the MCP gateway",
	.worker_new = proxy_worker_new,
	.worker_free = proxy_worker_free,
	.start = proxy_start,
	.end = proxy_end,
	.busy = proxy_busy,
	.cut = proxy_cut,
};
