/* certgate agent stdio: MCP stdio transport on one side, Streamable HTTP with mTLS
 * on the other (see include/agent_stdio.h).
 *
 * A client message becomes a "post": its text, the ids of the requests in it (whose
 * answers are pending), and the HTTP exchange carrying it. A post whose answer
 * stream breaks after an event id resumes with a GET carrying Last-Event-ID; a post
 * that could not be sent at all (the gateway is restarting) is retried for a while;
 * whatever stays unanswered gets a JSON-RPC error, so the client never waits
 * forever. Messages from the gateway reach stdout whole, one per line, in arrival
 * order. Reading stdin pauses while too many posts are in flight or stdout is not
 * being read, and transfers pause while stdout's buffer is full, so memory stays
 * bounded whatever either side does. Line framing on stdin/stdout is agent_lines.c's.
 *
 * Why one file of this size: posts, the GET stream, re-opening a lost session and
 * the end of the session are one state machine (a session's life); every
 * transition touches several of them, and split into files they would have to reach
 * into each other's state. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "agent_bridge.h"
#include "agent_lines.h"
#include "agent_msg.h"
#include "agent_sse.h"
#include "agent_stdio.h"
#include "agent_time.h"
#include "buf.h"
#include "log.h"
#include "mcp.h"

#define ST_MAX_MSG        (16u << 20)  /* one message, either direction */
#define ST_MAX_INFLIGHT   64           /* posts in flight or queued */
#define ST_OUT_HIGH       (4u << 20)   /* stdout buffer: pause producers above */
#define ST_OUT_LOW        (1u << 20)   /* ... and resume below */
#define ST_RETRY_BUDGET_S 30           /* waiting for an unreachable gateway */
#define ST_RESUME_TRIES   5
#define ST_REINIT_MAX     5            /* new sessions per minute */
#define ST_DELETE_MS      5000
#define ST_SNIPPET        512
#define ST_MAP_POLL_MS    500          /* the gateway loading a new agent */

enum agent_stdio_sess {
	SESS_NONE = 0,    /* no initialize seen (or it failed) */
	SESS_INIT,        /* the client's initialize is in flight: others wait */
	SESS_READY,
	SESS_REINIT,      /* opening a new session after a 404: others wait */
	SESS_LOST,        /* re-opening failed: the next message tries again */
};

enum agent_stdio_body { BODY_NONE = 0, BODY_JSON, BODY_SSE, BODY_OTHER };

enum agent_stdio_get {
	GET_OFF = 0,
	GET_CONNECTING,
	GET_OPEN,
	GET_WAIT,
	GET_UNSUPPORTED,  /* 405: the server has no GET stream */
};

enum agent_stdio_later { LATER_NONE = 0, LATER_SEND, LATER_RESUME, LATER_FREE };

struct st;

struct agent_stdio_post {
	struct st *s;
	struct agent_http_req *req;
	char *body;
	size_t len;
	json_t *ids;              /* request ids still waiting for an answer */
	json_t *init_id;          /* the initialize request's id */
	int initialize;           /* holds an initialize request */
	int initialized;          /* is notifications/initialized */
	int internal;             /* made by the bridge: nothing reaches stdout */
	int init_ok;              /* internal initialize got its result */
	int resuming;             /* the exchange is a GET resuming the stream */
	int paused;
	int finish;               /* everything answered on a resumed stream */
	char *sent_session;
	int status;
	enum agent_stdio_body kind;
	struct buf body_in;       /* JSON answer, or a snippet of another one */
	struct agent_sse *sse;
	unsigned attempts;
	unsigned map_waits;       /* re-sent while the gateway loads a new agent */
	time_t first;
	enum agent_stdio_later later;
	struct event *later_ev;
	int queued;
	TAILQ_ENTRY(agent_stdio_post) link;
};

TAILQ_HEAD(agent_stdio_posts, agent_stdio_post);

struct st {
	struct agent_bridge b;
	struct agent_lines *io;   /* stdin and stdout */
	int in_eof, out_broken;
	/* session */
	enum agent_stdio_sess sess;
	char *session_id;
	char *protocol;
	json_t *init_root;
	int client_initialized;
	unsigned reinit_n, reinit_seq;
	time_t reinit_t0;
	struct agent_stdio_posts queue, posts;
	size_t nqueue, nposts;
	/* GET stream */
	enum agent_stdio_get get;
	struct agent_http_req *get_req;
	struct agent_sse *get_sse;
	char *get_last_id;
	unsigned get_attempt;
	int get_paused, get_status;
	enum agent_stdio_body get_kind;
	struct event *get_timer;
	/* the end */
	int closing;              /* 1: stdin ended, draining; 2: at once */
	struct agent_http_req *del_req;
	struct event *sig_term, *sig_int;
};

static void agent_stdio_send(struct st *s, struct agent_stdio_post *p);
static void agent_stdio_reinit(struct st *s);
static void agent_stdio_get_start(struct st *s);
static void agent_stdio_get_stop(struct st *s, int new_session);
static void agent_stdio_maybe_end(struct st *s);
static void agent_stdio_post_free(struct agent_stdio_post *p);
static void agent_stdio_flush_queue(struct st *s);

/* ------------------------------------------------------------------------- */
/* stdout */

static int
agent_stdio_out_full(const struct st *s)
{
	return s->io != NULL && agent_lines_out_full(s->io);
}

static void
agent_stdio_in_more(struct st *s)
{
	if (s->closing != 2 && s->io != NULL)
		agent_lines_poll(s->io);
}

static void
agent_stdio_resume_all(struct st *s)
{
	struct agent_stdio_post *p;

	TAILQ_FOREACH(p, &s->posts, link)
		if (p->paused) {
			p->paused = 0;
			agent_http_resume_recv(p->req);
		}
	if (s->get_paused) {
		s->get_paused = 0;
		agent_http_resume_recv(s->get_req);
	}
	agent_stdio_in_more(s);
}

static void
agent_stdio_end(struct st *s, int at_once);

/* Queues one complete line (one message). */
static void
agent_stdio_out_line(struct st *s, const struct buf *line)
{
	if (s->out_broken || line->len == 0 || s->io == NULL)
		return;
	(void)agent_lines_write(s->io, line->p, line->len);
}

static void
agent_stdio_out_error(struct st *s, json_t *id, int code, const char *msg)
{
	struct buf line;

	buf_init(&line);
	if (agent_msg_error_line(id, code, msg, &line) == 0)
		agent_stdio_out_line(s, &line);
	buf_free(&line);
}

/* JSON-RPC errors for every request of p still waiting, then nothing waits. */
static void
agent_stdio_fail_pending(struct agent_stdio_post *p, const char *msg)
{
	size_t i;

	if (p->ids == NULL)
		return;
	if (!p->internal)
		for (i = 0; i < json_array_size(p->ids); i++)
			agent_stdio_out_error(p->s, json_array_get(p->ids, i),
			    MCP_ERR_GATEWAY, msg);
	json_array_clear(p->ids);
}

/* ------------------------------------------------------------------------- */
/* Messages from the gateway */

static void
agent_stdio_answered(struct agent_stdio_post *p, const struct agent_msg *m)
{
	json_t *rid;
	size_t i;
	int k;

	for (i = 0; i < json_array_size(m->response_ids); i++) {
		rid = json_array_get(m->response_ids, i);
		if ((k = agent_msg_id_index(p->ids, rid)) >= 0)
			json_array_remove(p->ids, (size_t)k);
	}
}

/* One message from the gateway, on p's answer (NULL: the GET stream). */
static void
agent_stdio_server_msg(struct st *s, struct agent_stdio_post *p, const char *data, size_t len)
{
	struct agent_msg m;
	struct buf line;
	const char *ver;
	char err[256];
	int code, parsed;

	parsed = agent_msg_parse(data, len, &m, &code, err, sizeof(err)) == 0;
	if (!parsed)
		log_debug("a message from the gateway is not JSON-RPC (%s); passed on", err);
	else
		log_debug("from the gateway (%s stream): %s", p == NULL ? "GET" :
		    p->resuming ? "resumed" : "POST", m.method ? m.method : "response");
	if (p != NULL && p->initialize && parsed &&
	    (ver = agent_msg_protocol_version(&m, p->init_id)) != NULL) {
		free(s->protocol);
		s->protocol = strdup(ver);
		if (p->internal)
			p->init_ok = 1;
	}
	if (p == NULL || !p->internal) {
		buf_init(&line);
		if (agent_msg_line(data, len, &line) == 0)
			agent_stdio_out_line(s, &line);
		else
			log_err("out of memory: a message to the client was lost");
		buf_free(&line);
	}
	if (p != NULL && parsed) {
		agent_stdio_answered(p, &m);
		if (p->resuming && json_array_size(p->ids) == 0)
			p->finish = 1;
		/* The answer is out: what the client sends next need not wait for the
		 * end of this stream. */
		if (p->initialize && !p->internal && json_array_size(p->ids) == 0 &&
		    s->sess == SESS_INIT) {
			s->sess = SESS_READY;
			agent_stdio_flush_queue(s);
		}
	}
	agent_msg_free(&m);
}

/* ------------------------------------------------------------------------- */
/* Posts */

static void
agent_stdio_post_later_cb(evutil_socket_t fd, short what, void *arg);

static struct agent_stdio_post *
agent_stdio_post_new(struct st *s, const char *body, size_t len)
{
	struct agent_stdio_post *p;

	if ((p = calloc(1, sizeof(*p))) == NULL || (p->body = malloc(len + 1)) == NULL ||
	    (p->later_ev = evtimer_new(s->b.base, agent_stdio_post_later_cb, p)) == NULL) {
		if (p != NULL) {
			free(p->body);
			free(p);
		}
		log_err("out of memory");
		return NULL;
	}
	memcpy(p->body, body, len);
	p->body[len] = '\0';
	p->len = len;
	p->s = s;
	p->first = time(NULL);
	buf_init(&p->body_in);
	return p;
}

static void
agent_stdio_post_free(struct agent_stdio_post *p)
{
	struct st *s = p->s;

	if (p->req != NULL)
		agent_http_cancel(p->req);
	if (p->queued) {
		TAILQ_REMOVE(&s->queue, p, link);
		s->nqueue--;
	} else {
		TAILQ_REMOVE(&s->posts, p, link);
		s->nposts--;
	}
	event_free(p->later_ev);
	json_decref(p->ids);
	json_decref(p->init_id);
	agent_sse_free(p->sse);
	buf_free(&p->body_in);
	free(p->sent_session);
	free(p->body);
	free(p);
	agent_stdio_in_more(s);
	agent_stdio_maybe_end(s);
}

static void
agent_stdio_post_later(struct agent_stdio_post *p, enum agent_stdio_later what, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	p->later = what;
	evtimer_add(p->later_ev, &tv);
}

static void
agent_stdio_enqueue(struct st *s, struct agent_stdio_post *p, int front)
{
	if (front)
		TAILQ_INSERT_HEAD(&s->queue, p, link);
	else
		TAILQ_INSERT_TAIL(&s->queue, p, link);
	p->queued = 1;
	s->nqueue++;
}

static void
agent_stdio_flush_queue(struct st *s)
{
	struct agent_stdio_post *p;

	while ((s->sess == SESS_READY || s->sess == SESS_NONE) &&
	    (p = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, p, link);
		s->nqueue--;
		p->queued = 0;
		TAILQ_INSERT_TAIL(&s->posts, p, link);
		s->nposts++;
		agent_stdio_send(s, p);
	}
}

static int
agent_stdio_post_head(void *arg, const struct agent_http_resp *r)
{
	struct agent_stdio_post *p = arg;
	struct st *s = p->s;
	const char *ct = agent_http_resp_get(r, "Content-Type"), *sid;

	p->status = r->status;
	buf_reset(&p->body_in);
	if (r->status / 100 == 2 && ct != NULL &&
	    strncasecmp(ct, "text/event-stream", 17) == 0) {
		p->kind = BODY_SSE;
		if (p->sse == NULL && (p->sse = agent_sse_new(ST_MAX_MSG)) == NULL)
			return -1;
	} else if (ct != NULL && strncasecmp(ct, "application/json", 16) == 0) {
		p->kind = BODY_JSON;
		p->body_in.max = ST_MAX_MSG;
	} else {
		p->kind = BODY_OTHER;
	}
	if (p->initialize && r->status / 100 == 2 &&
	    (sid = agent_http_resp_get(r, "Mcp-Session-Id")) != NULL) {
		free(s->session_id);
		s->session_id = strdup(sid);
	}
	return 0;
}

static int
agent_stdio_post_event(void *arg, const struct agent_sse_event *ev)
{
	struct agent_stdio_post *p = arg;

	if (strcmp(ev->type, "message") == 0 && ev->len > 0)
		agent_stdio_server_msg(p->s, p, ev->data, ev->len);
	return 0;
}

static int
agent_stdio_post_body(void *arg, const char *d, size_t n)
{
	struct agent_stdio_post *p = arg;

	if (!p->internal && agent_stdio_out_full(p->s)) {
		p->paused = 1;
		return AGENT_HTTP_PAUSE;
	}
	switch (p->kind) {
	case BODY_SSE:
		if (agent_sse_feed(p->sse, d, n, agent_stdio_post_event, p) == -1) {
			log_err("the gateway's event stream broke: %s",
			    agent_sse_error(p->sse));
			return -1;
		}
		if (p->finish && p->later == LATER_NONE)
			agent_stdio_post_later(p, LATER_FREE, 0);
		return 0;
	case BODY_JSON:
		if (buf_add(&p->body_in, d, n) == -1) {
			log_err("an answer from the gateway is larger than %u bytes",
			    ST_MAX_MSG);
			return -1;
		}
		return 0;
	default:
		if (p->body_in.len < ST_SNIPPET)
			buf_add(&p->body_in, d, n < ST_SNIPPET ? n : ST_SNIPPET);
		return 0;
	}
}

/* "HTTP 403: first line of the body", for error messages. */
static void
agent_stdio_describe(const struct agent_stdio_post *p, char *out, size_t outlen)
{
	size_t i, o;
	int k;

	k = snprintf(out, outlen, "the gateway answered HTTP %d", p->status);
	o = k > 0 && (size_t)k < outlen ? (size_t)k : 0;
	if (p->kind == BODY_JSON || p->body_in.len == 0 || o + 3 >= outlen)
		return;
	out[o++] = ':';
	out[o++] = ' ';
	for (i = 0; i < p->body_in.len && i < 200 && o + 1 < outlen; i++) {
		unsigned char c = (unsigned char)p->body_in.p[i];

		if (c == '\n' || c == '\r')
			break;
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[o] = '\0';
}

/* A refusal with a JSON-RPC body: pass on what answers our requests. */
static void
agent_stdio_forward_refusal(struct agent_stdio_post *p)
{
	struct agent_msg m;
	char err[128];
	int code;

	if (p->kind != BODY_JSON || p->body_in.len == 0 ||
	    agent_msg_parse(p->body_in.p, p->body_in.len, &m, &code, err,
	    sizeof(err)) == -1) {
		agent_msg_free(&m);
		return;
	}
	if (json_array_size(m.response_ids) > 0 &&
	    json_array_size(m.response_ids) <= json_array_size(p->ids)) {
		size_t i;
		int all = 1;

		for (i = 0; i < json_array_size(m.response_ids); i++)
			if (agent_msg_id_index(p->ids, json_array_get(m.response_ids, i)) < 0)
				all = 0;
		if (all)
			agent_stdio_server_msg(p->s, p, p->body_in.p, p->body_in.len);
	}
	agent_msg_free(&m);
}

static void
agent_stdio_reinit_failed(struct st *s, const char *why)
{
	struct agent_stdio_post *p;

	log_err("could not open a new session with the gateway: %s; the next message "
	    "tries again", why);
	s->sess = SESS_LOST;
	while ((p = TAILQ_FIRST(&s->queue)) != NULL) {
		agent_stdio_fail_pending(p,
		    "the gateway lost the MCP session and a new one could "
		    "not be opened");
		agent_stdio_post_free(p);
	}
}

/* The end of an internal exchange of a session re-opening. */
static void
agent_stdio_internal_done(struct st *s, struct agent_stdio_post *p, int ok, const char *why)
{
	struct agent_stdio_post *n;
	char msg[300];

	if (!ok) {
		agent_stdio_reinit_failed(s, why);
		return;
	}
	if (p->initialize) {
		if (!p->init_ok) {
			agent_stdio_reinit_failed(s, "initialize got no result");
			return;
		}
		snprintf(msg, sizeof(msg),
		    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
		if ((n = agent_stdio_post_new(s, msg, strlen(msg))) == NULL) {
			agent_stdio_reinit_failed(s, "out of memory");
			return;
		}
		n->internal = n->initialized = 1;
		if ((n->ids = json_array()) == NULL) {
			free(n->body);
			event_free(n->later_ev);
			free(n);
			agent_stdio_reinit_failed(s, "out of memory");
			return;
		}
		TAILQ_INSERT_TAIL(&s->posts, n, link);
		s->nposts++;
		agent_stdio_send(s, n);
		return;
	}
	log_info("opened a new MCP session %s with the gateway; resending %zu message(s)",
	    s->session_id ? s->session_id : "(none)", s->nqueue);
	s->sess = SESS_READY;
	agent_stdio_flush_queue(s);
	agent_stdio_get_start(s);
}

/* 404 for a session the gateway no longer knows. Returns 1 when p was requeued. */
static int
agent_stdio_session_lost(struct st *s, struct agent_stdio_post *p)
{
	if (p->initialize || p->internal || p->sent_session == NULL)
		return 0;
	if (s->session_id != NULL && strcmp(p->sent_session, s->session_id) != 0 &&
	    s->sess == SESS_READY) {
		/* A newer session exists already: just send again. */
		free(p->sent_session);
		p->sent_session = NULL;
		agent_stdio_post_later(p, LATER_SEND, 0);
		return 1;
	}
	TAILQ_REMOVE(&s->posts, p, link);
	s->nposts--;
	agent_stdio_enqueue(s, p, 1);
	agent_stdio_reinit(s);
	return 1;
}

/* A 403 for a certificate issued a moment ago that the gateway does not map yet: it
 * loads a new agent within about a second of the enrollment, so the message is sent
 * again until AGENT_TIME_MAP_WAIT after the issuance. Returns 1 when p was
 * rescheduled. */
static int
agent_stdio_unmapped_retry(struct st *s, struct agent_stdio_post *p)
{
	struct agent_cred *c = s->b.cred;
	time_t nb = agent_cred_not_before(c), na = agent_cred_not_after(c);

	if (p->status != 403 || p->resuming || s->closing == 2 || p->kind != BODY_JSON ||
	    !agent_time_map_pending(nb, na, time(NULL)) ||
	    !agent_msg_unmapped(p->body_in.p, p->body_in.len))
		return 0;
	if (p->map_waits++ == 0)
		log_info("the gateway has not loaded the identity of certificate %s yet "
		    "(issued %ld s ago); sending again for up to %d s after its issuance",
		    agent_cred_serial(c), (long)(time(NULL) - agent_time_issued(nb, na)),
		    AGENT_TIME_MAP_WAIT);
	agent_stdio_post_later(p, LATER_SEND, ST_MAP_POLL_MS);
	return 1;
}

static void
agent_stdio_post_done(void *arg, enum agent_http_result res, const char *msg)
{
	struct agent_stdio_post *p = arg;
	struct st *s = p->s;
	char why[1024];
	long delay;
	int ok2xx;

	p->req = NULL;
	p->paused = 0;
	if (p->later == LATER_FREE) {
		agent_stdio_post_free(p);
		return;
	}
	if (res == AGENT_HTTP_NOT_SENT && !p->resuming && s->closing != 2 &&
	    time(NULL) - p->first < ST_RETRY_BUDGET_S) {
		delay = 250L << (p->attempts < 4 ? p->attempts : 4);
		if (p->attempts++ == 0)
			log_warn("cannot reach the gateway (%s); retrying for up to %d s",
			    msg, ST_RETRY_BUDGET_S);
		agent_stdio_post_later(p, LATER_SEND, delay);
		return;
	}
	if (res != AGENT_HTTP_OK) {
		if (p->kind == BODY_SSE && json_array_size(p->ids) > 0 && p->sse != NULL &&
		    *agent_sse_last_id(p->sse) != '\0' && p->attempts < ST_RESUME_TRIES &&
		    s->closing != 2) {
			log_info("the answer stream broke (%s); resuming after event %s",
			    msg, agent_sse_last_id(p->sse));
			agent_stdio_post_later(p, LATER_RESUME, 250L << p->attempts);
			p->attempts++;
			return;
		}
		snprintf(why, sizeof(why), "the connection to the gateway failed before the "
		    "answer arrived: %s%s%s%s", msg, *agent_cred_hint(msg) ? " (" : "",
		    agent_cred_hint(msg), *agent_cred_hint(msg) ? ")" : "");
		if (p->internal)
			agent_stdio_internal_done(s, p, 0, why);
		else
			log_warn("%s", why);
		agent_stdio_fail_pending(p, why);
		agent_stdio_post_free(p);
		return;
	}
	ok2xx = p->status / 100 == 2;
	if (ok2xx && p->kind == BODY_JSON && p->body_in.len > 0)
		agent_stdio_server_msg(s, p, p->body_in.p, p->body_in.len);
	if (p->status == 404 && agent_stdio_session_lost(s, p))
		return;
	if (agent_stdio_unmapped_retry(s, p))
		return;
	if (p->internal) {
		snprintf(why, sizeof(why), "HTTP %d", p->status);
		agent_stdio_internal_done(s, p, ok2xx, why);
		agent_stdio_post_free(p);
		return;
	}
	if (!ok2xx) {
		agent_stdio_describe(p, why, sizeof(why));
		agent_stdio_forward_refusal(p);
		if (json_array_size(p->ids) > 0)
			agent_stdio_fail_pending(p, why);
		else if (p->status != 404 || s->sess != SESS_LOST)
			log_warn("%s to a %s", why, p->initialized ? "notification" :
			    "message without a request");
		if (p->initialize && s->sess == SESS_INIT) {
			s->sess = SESS_NONE;
			agent_stdio_flush_queue(s);
		}
		agent_stdio_post_free(p);
		return;
	}
	if (json_array_size(p->ids) > 0) {
		if (p->kind == BODY_SSE && *agent_sse_last_id(p->sse) != '\0' &&
		    p->attempts < ST_RESUME_TRIES) {
			log_info("the gateway ended an answer stream early; resuming after "
			    "event %s", agent_sse_last_id(p->sse));
			agent_stdio_post_later(p, LATER_RESUME, 250L << p->attempts);
			p->attempts++;
			return;
		}
		agent_stdio_fail_pending(p, "the gateway ended the exchange without an answer");
	}
	if (p->initialize && s->sess == SESS_INIT) {
		s->sess = SESS_READY;
		agent_stdio_flush_queue(s);
	}
	if (p->initialized) {
		s->client_initialized = 1;
		agent_stdio_get_start(s);
	}
	agent_stdio_post_free(p);
}

static int
agent_stdio_headers(struct st *s, char **h, int with_session, const char *accept,
    const char *last_id)
{
	int n = 0;

	if (asprintf(&h[n++], "Accept: %s", accept) == -1)
		return -1;
	if (strcmp(accept, "text/event-stream") != 0 &&
	    asprintf(&h[n++], "Content-Type: application/json") == -1)
		return -1;
	if (with_session && s->session_id != NULL &&
	    asprintf(&h[n++], "Mcp-Session-Id: %s", s->session_id) == -1)
		return -1;
	if (with_session && s->protocol != NULL &&
	    asprintf(&h[n++], "MCP-Protocol-Version: %s", s->protocol) == -1)
		return -1;
	if (last_id != NULL && *last_id != '\0' &&
	    asprintf(&h[n++], "Last-Event-ID: %s", last_id) == -1)
		return -1;
	h[n] = NULL;
	return 0;
}

static void
agent_stdio_headers_free(char **h)
{
	for (; *h != NULL; h++)
		free(*h);
}

static void
agent_stdio_send(struct st *s, struct agent_stdio_post *p)
{
	static const struct agent_http_cbs cbs = {
		.on_head = agent_stdio_post_head, .on_body = agent_stdio_post_body,
		    .on_done = agent_stdio_post_done,
	};
	struct agent_http_spec spec = { 0 };
	char *h[8] = { NULL };
	int rc;

	p->status = 0;
	p->kind = BODY_NONE;
	p->finish = 0;
	buf_reset(&p->body_in);
	p->body_in.max = 0;
	if (!p->resuming) {
		agent_sse_free(p->sse);
		p->sse = NULL;
		free(p->sent_session);
		p->sent_session = s->session_id && !p->initialize ?
		    strdup(s->session_id) : NULL;
	}
	if (p->resuming)
		rc = agent_stdio_headers(s, h, 1, "text/event-stream", agent_sse_last_id(p->sse));
	else
		rc = agent_stdio_headers(s, h, !p->initialize,
		    "application/json, text/event-stream",
		    NULL);
	if (rc == -1) {
		agent_stdio_headers_free(h);
		agent_stdio_fail_pending(p, "out of memory in the bridge");
		agent_stdio_post_free(p);
		return;
	}
	spec.method = p->resuming ? "GET" : "POST";
	spec.url = s->b.endpoint;
	spec.headers = (const char *const *)h;
	if (!p->resuming) {
		spec.body = p->body;
		spec.body_len = p->len;
	}
	p->req = agent_http_start(s->b.http, &spec, &cbs, p);
	agent_stdio_headers_free(h);
	if (p->req == NULL) {
		agent_stdio_fail_pending(p, "the bridge could not start a request");
		agent_stdio_post_free(p);
	}
}

static void
agent_stdio_post_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_stdio_post *p = arg;
	enum agent_stdio_later w = p->later;

	p->later = LATER_NONE;
	switch (w) {
	case LATER_SEND:
		if (p->s->sess == SESS_REINIT) {
			TAILQ_REMOVE(&p->s->posts, p, link);
			p->s->nposts--;
			agent_stdio_enqueue(p->s, p, 1);
			return;
		}
		p->resuming = 0;
		agent_stdio_send(p->s, p);
		break;
	case LATER_RESUME:
		p->resuming = 1;
		agent_stdio_send(p->s, p);
		break;
	case LATER_FREE:
		agent_stdio_post_free(p);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------------- */
/* Sessions */

static void
agent_stdio_reinit(struct st *s)
{
	struct agent_msg m = { 0 };
	struct agent_stdio_post *p;
	struct buf body;
	json_t *id = NULL;
	time_t now = time(NULL);
	char idtxt[64];

	if (s->sess == SESS_REINIT || s->closing == 2)
		return;
	if (s->init_root == NULL) {
		s->sess = SESS_LOST;
		agent_stdio_reinit_failed(s, "the client's initialize is not known");
		return;
	}
	if (now - s->reinit_t0 > 60) {
		s->reinit_t0 = now;
		s->reinit_n = 0;
	}
	if (++s->reinit_n > ST_REINIT_MAX) {
		agent_stdio_reinit_failed(s, "too many new sessions within a minute");
		return;
	}
	log_warn("the gateway does not know session %s any more (restarted, or the "
	    "session expired): opening a new one by replaying the client's initialize; "
	    "server-side state of the old session (subscriptions, log level) is gone",
	    s->session_id ? s->session_id : "(none)");
	agent_stdio_get_stop(s, 1);
	free(s->session_id);
	s->session_id = NULL;
	s->sess = SESS_REINIT;
	buf_init(&body);
	snprintf(idtxt, sizeof(idtxt), "certgate-agent-reinit-%u", ++s->reinit_seq);
	m.kind = AGENT_MSG_REQUEST;
	m.root = s->init_root;
	if ((id = json_string(idtxt)) == NULL || agent_msg_with_id(&m, id, &body) == -1 ||
	    (p = agent_stdio_post_new(s, body.p, body.len)) == NULL) {
		json_decref(id);
		buf_free(&body);
		agent_stdio_reinit_failed(s, "out of memory");
		return;
	}
	buf_free(&body);
	p->internal = p->initialize = 1;
	p->init_id = id;
	if ((p->ids = json_array()) == NULL || json_array_append(p->ids, id) == -1) {
		TAILQ_INSERT_TAIL(&s->posts, p, link);
		s->nposts++;
		agent_stdio_post_free(p);
		agent_stdio_reinit_failed(s, "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&s->posts, p, link);
	s->nposts++;
	agent_stdio_send(s, p);
}

/* ------------------------------------------------------------------------- */
/* The GET stream */

static void
agent_stdio_get_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct st *s = arg;

	if (s->get == GET_WAIT)
		s->get = GET_OFF;
	agent_stdio_get_start(s);
}

static int
agent_stdio_get_head(void *arg, const struct agent_http_resp *r)
{
	struct st *s = arg;
	const char *ct = agent_http_resp_get(r, "Content-Type");

	s->get_status = r->status;
	if (r->status == 200 && ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0) {
		s->get_kind = BODY_SSE;
		s->get = GET_OPEN;
		s->get_attempt = 0;
		log_debug("GET stream open");
	} else
		s->get_kind = BODY_OTHER;
	return 0;
}

static int
agent_stdio_get_event(void *arg, const struct agent_sse_event *ev)
{
	struct st *s = arg;

	if (strcmp(ev->type, "message") == 0 && ev->len > 0)
		agent_stdio_server_msg(s, NULL, ev->data, ev->len);
	return 0;
}

static int
agent_stdio_get_body(void *arg, const char *d, size_t n)
{
	struct st *s = arg;
	const char *id;

	if (s->get_kind != BODY_SSE)
		return 0;
	if (agent_stdio_out_full(s)) {
		s->get_paused = 1;
		return AGENT_HTTP_PAUSE;
	}
	if (agent_sse_feed(s->get_sse, d, n, agent_stdio_get_event, s) == -1) {
		log_err("the gateway's GET stream broke: %s", agent_sse_error(s->get_sse));
		return -1;
	}
	id = agent_sse_last_id(s->get_sse);
	if (*id != '\0' && (s->get_last_id == NULL || strcmp(id, s->get_last_id) != 0)) {
		free(s->get_last_id);
		s->get_last_id = strdup(id);
	}
	return 0;
}

static void
agent_stdio_get_done(void *arg, enum agent_http_result res, const char *msg)
{
	struct st *s = arg;
	struct timeval tv;
	long ms, retry;

	s->get_req = NULL;
	s->get_paused = 0;
	retry = s->get_sse != NULL ? agent_sse_retry_ms(s->get_sse) : -1;
	agent_sse_free(s->get_sse);
	s->get_sse = NULL;
	if (s->closing)
		return;
	if (res == AGENT_HTTP_OK && s->get_status == 405) {
		log_info("the gateway's MCP server offers no GET stream (405): server "
		    "notifications arrive only with answers");
		s->get = GET_UNSUPPORTED;
		return;
	}
	if (res == AGENT_HTTP_OK && s->get_status == 404 && s->session_id != NULL) {
		s->get = GET_OFF;
		agent_stdio_reinit(s);
		return;
	}
	ms = retry > 0 ? retry : 500L << (s->get_attempt < 5 ? s->get_attempt : 5);
	if (ms > 10000)
		ms = 10000;
	if (s->get_attempt++ >= 2)
		log_warn("GET stream to the gateway: %s; reconnecting in %ld ms",
		    res == AGENT_HTTP_OK ? (s->get_status == 200 ? "ended" : "refused") :
		    msg, ms);
	else
		log_info("GET stream %s (%s); reconnecting in %ld ms%s", res ==
		    AGENT_HTTP_OK && s->get_status == 200 ? "ended" : "failed",
		    res == AGENT_HTTP_OK ? "HTTP status" : msg, ms,
		    s->get_last_id ? " with Last-Event-ID" : "");
	s->get = GET_WAIT;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(s->get_timer, &tv);
}

static void
agent_stdio_get_start(struct st *s)
{
	static const struct agent_http_cbs cbs = {
		.on_head = agent_stdio_get_head, .on_body = agent_stdio_get_body,
		    .on_done = agent_stdio_get_done,
	};
	struct agent_http_spec spec = { 0 };
	char *h[8] = { NULL };

	if (s->closing || s->get != GET_OFF || s->get_req != NULL ||
	    s->sess != SESS_READY || !s->client_initialized)
		return;
	if ((s->get_sse = agent_sse_new(ST_MAX_MSG)) == NULL ||
	    agent_sse_set_last_id(s->get_sse, s->get_last_id) == -1 ||
	    agent_stdio_headers(s, h, 1, "text/event-stream", s->get_last_id) == -1) {
		agent_stdio_headers_free(h);
		agent_sse_free(s->get_sse);
		s->get_sse = NULL;
		log_err("out of memory: no GET stream");
		return;
	}
	spec.method = "GET";
	spec.url = s->b.endpoint;
	spec.headers = (const char *const *)h;
	s->get_status = 0;
	s->get_kind = BODY_NONE;
	s->get = GET_CONNECTING;
	s->get_req = agent_http_start(s->b.http, &spec, &cbs, s);
	agent_stdio_headers_free(h);
	if (s->get_req == NULL) {
		agent_sse_free(s->get_sse);
		s->get_sse = NULL;
		s->get = GET_OFF;
	}
}

static void
agent_stdio_get_stop(struct st *s, int new_session)
{
	if (s->get_req != NULL)
		agent_http_cancel(s->get_req);
	s->get_req = NULL;
	s->get_paused = 0;
	agent_sse_free(s->get_sse);
	s->get_sse = NULL;
	evtimer_del(s->get_timer);
	if (s->get != GET_UNSUPPORTED)
		s->get = GET_OFF;
	if (new_session) {
		free(s->get_last_id);
		s->get_last_id = NULL;
		s->get_attempt = 0;
	}
}

/* A renewal: a GET stream that can resume moves to the new certificate now rather
 * than when the gateway drops connections made with the old one at its expiry. */
static void
agent_stdio_renewed(void *arg, struct agent_cred *cred)
{
	struct st *s = arg;

	if (s->get_req == NULL || s->get_last_id == NULL)
		return;
	log_info("moving the GET stream to the new certificate (resuming after event %s)",
	    s->get_last_id);
	agent_stdio_get_stop(s, 0);
	agent_stdio_get_start(s);
}

/* ------------------------------------------------------------------------- */
/* stdin */

/* Too much in flight, or the client is not reading: no more lines for now. */
static int
agent_stdio_in_blocked(const struct st *s)
{
	return s->nposts + s->nqueue >= ST_MAX_INFLIGHT || agent_stdio_out_full(s) ||
	    s->closing == 2;
}

static void
agent_stdio_client_msg(struct st *s, const char *line, size_t n)
{
	struct agent_msg m;
	struct agent_stdio_post *p;
	char err[300];
	int code;
	size_t i;

	for (i = 0; i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'); i++)
		;
	if (i == n)
		return;
	if (agent_msg_parse(line, n, &m, &code, err, sizeof(err)) == -1) {
		log_warn("a message from the MCP client was refused: %s", err);
		agent_stdio_out_error(s, m.id, code, err);
		agent_msg_free(&m);
		return;
	}
	if ((p = agent_stdio_post_new(s, line, n)) == NULL) {
		agent_stdio_out_error(s, m.id, MCP_ERR_GATEWAY, "out of memory in the bridge");
		agent_msg_free(&m);
		return;
	}
	p->ids = json_incref(m.request_ids);
	p->initialize = m.initialize;
	p->initialized = m.initialized;
	if (m.initialize && m.kind == AGENT_MSG_REQUEST) {
		json_decref(s->init_root);
		s->init_root = json_deep_copy(m.root);
		p->init_id = json_incref(m.id);
		/* A new initialize is a new session. */
		agent_stdio_get_stop(s, 1);
		free(s->session_id);
		s->session_id = NULL;
		free(s->protocol);
		s->protocol = NULL;
		s->client_initialized = 0;
		s->sess = SESS_INIT;
		TAILQ_INSERT_TAIL(&s->posts, p, link);
		s->nposts++;
		agent_stdio_send(s, p);
	} else if (s->sess == SESS_INIT || s->sess == SESS_REINIT) {
		agent_stdio_enqueue(s, p, 0);
	} else if (s->sess == SESS_LOST) {
		agent_stdio_enqueue(s, p, 0);
		agent_stdio_reinit(s);
	} else {
		TAILQ_INSERT_TAIL(&s->posts, p, link);
		s->nposts++;
		agent_stdio_send(s, p);
	}
	agent_msg_free(&m);
}

/* Handles the complete lines in the input buffer, as far as backpressure allows. */
static void
agent_stdio_lines_msg(void *arg, const char *line, size_t n)
{
	agent_stdio_client_msg(arg, line, n);
}

static int
agent_stdio_lines_busy(void *arg)
{
	return agent_stdio_in_blocked(arg);
}

static void
agent_stdio_lines_too_long(void *arg)
{
	agent_stdio_out_error(arg, NULL, MCP_ERR_INVALID, "message too large for the bridge");
}

static void
agent_stdio_lines_eof(void *arg)
{
	struct st *s = arg;

	s->in_eof = 1;
	log_info("stdin closed: finishing %zu exchange(s), then ending the session",
	    s->nposts + s->nqueue);
	agent_stdio_end(s, 0);
}

static void
agent_stdio_lines_drained(void *arg)
{
	struct st *s = arg;

	agent_stdio_resume_all(s);
	agent_stdio_maybe_end(s);
}

static void
agent_stdio_lines_broken(void *arg)
{
	struct st *s = arg;

	log_err("stdout closed: the MCP client is gone");
	s->out_broken = 1;
	agent_stdio_end(s, 1);
}

/* ------------------------------------------------------------------------- */
/* The end */

static void
agent_stdio_del_done(void *arg, enum agent_http_result res, const char *msg)
{
	struct st *s = arg;

	s->del_req = NULL;
	if (res != AGENT_HTTP_OK)
		log_info("ending the session: %s", msg);
	event_base_loopexit(s->b.base, NULL);
}

static int
agent_stdio_del_head(void *arg, const struct agent_http_resp *r)
{
	if (r->status / 100 == 2)
		log_info("session ended (HTTP %d)", r->status);
	else if (r->status != 405 && r->status != 404)
		log_info("ending the session: HTTP %d", r->status);
	return 0;
}

static void
agent_stdio_delete(struct st *s)
{
	static const struct agent_http_cbs cbs = {
		.on_head = agent_stdio_del_head, .on_done = agent_stdio_del_done,
	};
	struct agent_http_spec spec = { 0 };
	char *h[8] = { NULL };

	if (s->del_req != NULL)
		return;
	if (s->session_id == NULL || agent_stdio_headers(s, h, 1, "application/json",
	    NULL) == -1) {
		agent_stdio_headers_free(h);
		event_base_loopexit(s->b.base, NULL);
		return;
	}
	spec.method = "DELETE";
	spec.url = s->b.endpoint;
	spec.headers = (const char *const *)h;
	spec.timeout_ms = ST_DELETE_MS;
	s->del_req = agent_http_start(s->b.http, &spec, &cbs, s);
	agent_stdio_headers_free(h);
	if (s->del_req == NULL)
		event_base_loopexit(s->b.base, NULL);
}

static void
agent_stdio_maybe_end(struct st *s)
{
	if (s->closing == 1 && s->nposts == 0 && s->nqueue == 0 && s->del_req == NULL &&
	    s->sess != SESS_REINIT && (s->io == NULL || agent_lines_pending(s->io) == 0))
		agent_stdio_delete(s);
}

static void
agent_stdio_end(struct st *s, int at_once)
{
	struct agent_stdio_post *p;

	if (at_once && s->closing != 2) {
		s->closing = 2;
		agent_stdio_get_stop(s, 0);
		while ((p = TAILQ_FIRST(&s->queue)) != NULL)
			agent_stdio_post_free(p);
		while ((p = TAILQ_FIRST(&s->posts)) != NULL)
			agent_stdio_post_free(p);
		agent_stdio_delete(s);
		return;
	}
	if (s->closing)
		return;
	s->closing = 1;
	agent_stdio_get_stop(s, 0);
	agent_stdio_maybe_end(s);
}

static void
agent_stdio_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct st *s = arg;

	if (s->closing == 2) {
		log_info("second signal: exiting now");
		event_base_loopbreak(s->b.base);
		return;
	}
	log_info("signal %d: ending the session", (int)sig);
	agent_stdio_end(s, 1);
}

/* ------------------------------------------------------------------------- */
/* Set-up */

static int
agent_stdio_setup_io(struct st *s)
{
	static const struct agent_lines_cbs cbs = {
		.busy = agent_stdio_lines_busy, .on_line = agent_stdio_lines_msg,
		.on_too_long = agent_stdio_lines_too_long, .on_eof = agent_stdio_lines_eof,
		.on_drained = agent_stdio_lines_drained, .on_broken = agent_stdio_lines_broken,
	};

	if ((s->io = agent_lines_new(s->b.base, STDIN_FILENO, STDOUT_FILENO, ST_MAX_MSG,
	    ST_OUT_HIGH, ST_OUT_LOW, &cbs, s)) == NULL ||
	    (s->get_timer = evtimer_new(s->b.base, agent_stdio_get_timer_cb, s)) == NULL ||
	    (s->sig_term = evsignal_new(s->b.base, SIGTERM, agent_stdio_signal_cb, s)) == NULL ||
	    (s->sig_int = evsignal_new(s->b.base, SIGINT, agent_stdio_signal_cb, s)) == NULL ||
	    event_add(s->sig_term, NULL) == -1 || event_add(s->sig_int, NULL) == -1)
		return -1;
	return 0;
}

static void
agent_stdio_free(struct st *s)
{
	struct agent_stdio_post *p;

	while ((p = TAILQ_FIRST(&s->queue)) != NULL)
		agent_stdio_post_free(p);
	while ((p = TAILQ_FIRST(&s->posts)) != NULL)
		agent_stdio_post_free(p);
	agent_sse_free(s->get_sse);
	/* Whatever is still queued for the client goes out before exit. */
	agent_lines_free(s->io);
	s->io = NULL;
	if (s->get_timer != NULL)
		event_free(s->get_timer);
	if (s->sig_term != NULL)
		event_free(s->sig_term);
	if (s->sig_int != NULL)
		event_free(s->sig_int);
	json_decref(s->init_root);
	free(s->session_id);
	free(s->protocol);
	free(s->get_last_id);
}

int
agent_stdio_run(const struct agent_stdio_args *a)
{
	struct st s;

	memset(&s, 0, sizeof(s));
	TAILQ_INIT(&s.queue);
	TAILQ_INIT(&s.posts);
	signal(SIGPIPE, SIG_IGN);
	if (agent_bridge_open(&s.b, "agent stdio", a->url, a->dir, a->renew_url) == -1)
		return 1;
	s.b.renewed = agent_stdio_renewed;
	s.b.renewed_arg = &s;
	if (agent_stdio_setup_io(&s) == -1) {
		log_err("agent stdio: out of memory");
		agent_stdio_free(&s);
		agent_bridge_close(&s.b);
		return 1;
	}
	agent_stdio_in_more(&s);
	event_base_dispatch(s.b.base);
	s.closing = 2;
	agent_stdio_free(&s);
	agent_bridge_close(&s.b);
	return 0;
}
