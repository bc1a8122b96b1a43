/* The stdio upstream as an in-process Streamable HTTP server (stdiohub.h).
 *
 * One thread, one event loop: every stdioproc (child process) and every hub-side
 * connection lives here, so the bookkeeping needs no locks; the only cross-thread
 * step is stdiohub_connect handing over a socket. Each connection reads one request
 * at a time (the proxy sends one at a time on an upstream connection), answers it —
 * at once, or as an event stream that lasts until the server has answered every
 * request of the POST (or, for GET, until either side closes) — and then reads the
 * next. A connection whose output is above the watermark pauses its session's
 * process: the server blocks in write(2) rather than this process buffering. */
#include "stdiohub.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "buf.h"
#include "http.h"
#include "log.h"
#include "stdiomap.h"
#include "stdioproc.h"

#define HUB_OUT_HIGH	(256 * 1024)	/* pause the session's process above this */
#define HUB_OUT_LOW	(64 * 1024)
#define HUB_MAX_BODY	(8 * 1024 * 1024)
#define HUB_MAX_FDS	64		/* handed over, not yet adopted */

struct stdiohub_session;

struct stdiohub_conn {
	struct bufferevent *bev;
	struct http_reader *rd;
	struct buf body;
	struct stdiohub_session *sess;       /* while streaming a response for it */
	uint64_t post;                  /* the POST being answered, 0 none */
	int get;                        /* this is the session's GET stream */
	int streaming;                  /* a chunked response is open */
	int method;
	int keep;
	int done;                       /* answered, not kept: closes once written */
	char sid[64];
	TAILQ_ENTRY(stdiohub_conn) link;     /* hub.conns */
	TAILQ_ENTRY(stdiohub_conn) slink;    /* sess->conns while streaming */
};

struct stdiohub_session {
	char sid[33];
	struct stdioproc *proc;
	struct stdiomap *map;
	TAILQ_HEAD(, stdiohub_conn) conns;
	int paused;
	TAILQ_ENTRY(stdiohub_session) link;
};

static struct {
	const struct config *cfg;
	struct event_base *base;
	pthread_t thr;
	int running;
	struct event *adopt_ev, *stop_ev;
	pthread_mutex_t mtx;
	int fds[HUB_MAX_FDS];
	int nfds;
	TAILQ_HEAD(, stdiohub_conn) conns;
	TAILQ_HEAD(, stdiohub_session) sessions;
} hub = { .mtx = PTHREAD_MUTEX_INITIALIZER };

static void stdiohub_conn_free(struct stdiohub_conn *hc);
static void stdiohub_next(struct stdiohub_conn *hc);

/* ---- sessions ---- */

static struct stdiohub_session *
stdiohub_session_find(const char *sid)
{
	struct stdiohub_session *s;

	TAILQ_FOREACH(s, &hub.sessions, link)
		if (strcmp(s->sid, sid) == 0)
			return s;
	return NULL;
}

/* Ends a session: its streams are cut (their responses are incomplete), the process
 * is ended. */
static void
stdiohub_session_end(struct stdiohub_session *s, const char *why)
{
	struct stdiohub_conn *hc;

	log_info("stdio session %s ended: %s", s->sid, why);
	while ((hc = TAILQ_FIRST(&s->conns)) != NULL)
		stdiohub_conn_free(hc);
	TAILQ_REMOVE(&hub.sessions, s, link);
	if (s->proc != NULL)
		stdioproc_close(s->proc);
	stdiomap_free(s->map);
	free(s);
}

static void
stdiohub_pause_check(struct stdiohub_session *s)
{
	struct stdiohub_conn *hc;
	int full = 0;

	TAILQ_FOREACH(hc, &s->conns, slink)
		if (evbuffer_get_length(bufferevent_get_output(hc->bev)) > HUB_OUT_HIGH)
			full = 1;
	if (full != s->paused) {
		s->paused = full;
		stdioproc_pause(s->proc, full);
	}
}

/* ---- responses ---- */

static void
stdiohub_respond(struct stdiohub_conn *hc, int status, const char *ctype, const char *body,
    const char *sid)
{
	struct evbuffer *out = bufferevent_get_output(hc->bev);
	size_t n = body != NULL ? strlen(body) : 0;

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
	if (ctype != NULL)
		evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
	if (sid != NULL)
		evbuffer_add_printf(out, "Mcp-Session-Id: %s\r\n", sid);
	evbuffer_add_printf(out, "Content-Length: %zu\r\n%s\r\n", n,
	    hc->keep ? "" : "Connection: close\r\n");
	if (n > 0)
		evbuffer_add(out, body, n);
	stdiohub_next(hc);
}

static void
stdiohub_error(struct stdiohub_conn *hc, int status, json_t *id, const char *msg)
{
	json_t *o = json_pack("{s:s,s:O?,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error",
	    "code", status == 503 ? -32003 : -32600, "message", msg);
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	stdiohub_respond(hc, status, "application/json", s != NULL ? s : "{}", NULL);
	free(s);
	json_decref(o);
}

static void
stdiohub_stream_start(struct stdiohub_conn *hc, struct stdiohub_session *s)
{
	evbuffer_add_printf(bufferevent_get_output(hc->bev), "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
	    "Mcp-Session-Id: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n", s->sid,
	    hc->keep ? "" : "Connection: close\r\n");
	hc->streaming = 1;
	hc->sess = s;
	TAILQ_INSERT_TAIL(&s->conns, hc, slink);
}

static void
stdiohub_stream_event(struct stdiohub_conn *hc, json_t *msg)
{
	struct evbuffer *out = bufferevent_get_output(hc->bev);
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s);
	/* one chunk per event: "data: JSON\n\n" */
	evbuffer_add_printf(out, "%zx\r\ndata: ", n + 8);
	evbuffer_add(out, s, n);
	evbuffer_add(out, "\n\n\r\n", 4);
	free(s);
	stdiohub_pause_check(hc->sess);
}

static void
stdiohub_stream_end(struct stdiohub_conn *hc)
{
	struct stdiohub_session *s = hc->sess;

	evbuffer_add(bufferevent_get_output(hc->bev), "0\r\n\r\n", 5);
	if (s != NULL) {
		TAILQ_REMOVE(&s->conns, hc, slink);
		if (hc->post != 0) {
			stdiomap_post_close(s->map, hc->post);
			stdioproc_hold(s->proc, -1);
		}
		if (hc->get) {
			stdiomap_get_close(s->map);
			stdioproc_hold(s->proc, -1);
		}
	}
	hc->sess = NULL;
	hc->post = 0;
	hc->get = 0;
	hc->streaming = 0;
	stdiohub_next(hc);
	if (s != NULL)
		stdiohub_pause_check(s);
}

/* ---- messages from a server ---- */

static void
stdiohub_route_one(struct stdiohub_session *s, json_t *msg)
{
	struct stdiomap_route r;
	struct stdiohub_conn *hc;

	if (stdiomap_route(s->map, msg, &r) == -1 || r.dest == STDIOMAP_DROPPED) {
		log_debug("stdio session %s: message dropped: %s", s->sid,
		    r.why != NULL ? r.why : "not JSON-RPC");
		return;
	}
	TAILQ_FOREACH(hc, &s->conns, slink) {
		if ((r.dest == STDIOMAP_TO_POST && hc->post == r.post) ||
		    (r.dest == STDIOMAP_TO_GET && hc->get))
			break;
	}
	if (hc == NULL)
		return;         /* QUEUED, or its stream is gone */
	stdiohub_stream_event(hc, msg);
	if (r.dest == STDIOMAP_TO_POST && r.post_done)
		stdiohub_stream_end(hc);
}

static void
stdiohub_on_message(struct stdioproc *p, json_t *msg, void *arg)
{
	struct stdiohub_session *s = arg;
	size_t i;

	if (json_is_array(msg))
		for (i = 0; i < json_array_size(msg); i++)
			stdiohub_route_one(s, json_array_get(msg, i));
	else
		stdiohub_route_one(s, msg);
}

static void
stdiohub_on_error(struct stdioproc *p, const char *what, void *arg)
{
	log_warn("%s: %s", stdioproc_label(p), what);
}

static void
stdiohub_on_exit(struct stdioproc *p, const struct stdioproc_exit *e, void *arg)
{
	struct stdiohub_session *s = arg;
	char why[96];

	snprintf(why, sizeof(why), "%s (%s %d)", e->reason == STDIOPROC_END_IDLE ?
	    "idle timeout" : e->reason == STDIOPROC_END_TRANSPORT ? "transport closed" :
	    "the server exited", e->si_code == CLD_EXITED ? "status" : "signal", e->status);
	stdiohub_session_end(s, why);
}

static const struct stdioproc_cbs stdiohub_cbs_tmpl = { stdiohub_on_message,
    stdiohub_on_error, stdiohub_on_exit,
    NULL };

/* ---- requests ---- */

static struct stdiohub_session *
stdiohub_session_new(char *err, size_t errlen)
{
	const struct config_upstream *u = &hub.cfg->upstream;
	struct stdioproc_conf conf;
	struct stdioproc_cbs cbs = stdiohub_cbs_tmpl;
	struct stdiohub_session *s;
	unsigned char rnd[16];
	char label[64];
	size_t i;

	if ((s = calloc(1, sizeof(*s))) == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(s->sid + 2 * i, 3, "%02x", rnd[i]);
	TAILQ_INIT(&s->conns);
	if ((s->map = stdiomap_new(0, 0, 0)) == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memset(&conf, 0, sizeof(conf));
	conf.argv = u->command;
	conf.env = u->env;
	conf.max_processes = u->max_processes;
	conf.idle_timeout_ms = u->idle_timeout_ms;
	conf.max_message_bytes = (size_t)hub.cfg->limits.max_body_bytes;
	cbs.arg = s;
	snprintf(label, sizeof(label), "stdio session %.8s", s->sid);
	if ((s->proc = stdioproc_spawn(hub.base, &conf, label, &cbs, err, errlen)) == NULL) {
		stdiomap_free(s->map);
		free(s);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&hub.sessions, s, link);
	log_info("stdio session %s: started %s (pid %ld)", s->sid, u->command[0],
	    (long)stdioproc_pid(s->proc));
	return s;
}

static int
stdiohub_has_initialize(json_t *root)
{
	size_t i, n = json_is_array(root) ? json_array_size(root) : 1;
	json_t *m, *meth;

	for (i = 0; i < n; i++) {
		m = json_is_array(root) ? json_array_get(root, i) : root;
		meth = json_object_get(m, "method");
		if (json_is_string(meth) && strcmp(json_string_value(meth), "initialize") == 0 &&
		    json_object_get(m, "id") != NULL)
			return 1;
	}
	return 0;
}

static void
stdiohub_post(struct stdiohub_conn *hc)
{
	struct stdiohub_session *s = NULL;
	enum stdiomap_kind kind;
	json_t *root, *m;
	size_t i, n;
	char err[256];
	uint64_t post;

	if ((root = json_loadb(buf_str(&hc->body), hc->body.len, 0, NULL)) == NULL ||
	    (!json_is_object(root) && !json_is_array(root))) {
		json_decref(root);
		stdiohub_error(hc, 400, NULL, "Parse error");
		return;
	}
	if (hc->sid[0] != '\0') {
		if ((s = stdiohub_session_find(hc->sid)) == NULL) {
			json_decref(root);
			stdiohub_error(hc, 404, NULL, "unknown session");
			return;
		}
	} else if (stdiohub_has_initialize(root)) {
		if ((s = stdiohub_session_new(err, sizeof(err))) == NULL) {
			json_decref(root);
			log_warn("stdio upstream: cannot start a session: %s", err);
			stdiohub_error(hc, 503, NULL, errno == EAGAIN ? "too many stdio sessions "
			    "(upstream.max_processes)" : "the stdio server could not be started");
			return;
		}
	} else {
		json_decref(root);
		stdiohub_error(hc, 400, NULL, "Mcp-Session-Id required");
		return;
	}
	post = stdiomap_post_open(s->map);
	n = json_is_array(root) ? json_array_size(root) : 1;
	for (i = 0; i < n; i++) {
		m = json_is_array(root) ? json_array_get(root, i) : root;
		if (stdiomap_post_message(s->map, post, m, &kind) == -1 ||
		    stdioproc_send(s->proc, m) == -1) {
			log_warn("stdio session %s: message not delivered: %s", s->sid,
			    strerror(errno));
			stdiomap_post_close(s->map, post);
			json_decref(root);
			stdiohub_error(hc, 503, NULL, "the stdio server cannot take more now");
			return;
		}
	}
	json_decref(root);
	stdioproc_touch(s->proc);
	if (stdiomap_post_waiting(s->map, post) == 0) {
		stdiomap_post_close(s->map, post);
		stdiohub_respond(hc, 202, NULL, NULL, s->sid);
		return;
	}
	hc->post = post;
	stdioproc_hold(s->proc, 1);
	stdiohub_stream_start(hc, s);
}

static void
stdiohub_get(struct stdiohub_conn *hc)
{
	struct stdiohub_session *s;
	json_t *m;

	if (hc->sid[0] == '\0') {
		stdiohub_error(hc, 400, NULL, "Mcp-Session-Id required");
		return;
	}
	if ((s = stdiohub_session_find(hc->sid)) == NULL) {
		stdiohub_error(hc, 404, NULL, "unknown session");
		return;
	}
	if (stdiomap_get_open(s->map) == -1) {
		stdiohub_error(hc, 409, NULL, "the session has an event stream already");
		return;
	}
	hc->get = 1;
	stdioproc_hold(s->proc, 1);     /* a client listening is not an idle session */
	stdiohub_stream_start(hc, s);
	while ((m = stdiomap_queue_pop(s->map)) != NULL) {
		stdiohub_stream_event(hc, m);
		json_decref(m);
	}
}

static void
stdiohub_delete(struct stdiohub_conn *hc)
{
	struct stdiohub_session *s;

	if (hc->sid[0] == '\0' || (s = stdiohub_session_find(hc->sid)) == NULL) {
		stdiohub_error(hc, 404, NULL, "unknown session");
		return;
	}
	stdiohub_session_end(s, "DELETE");
	stdiohub_respond(hc, 200, NULL, NULL, NULL);
}

static int
stdiohub_rq_begin(void *arg)
{
	struct stdiohub_conn *hc = arg;

	buf_reset(&hc->body);
	hc->sid[0] = '\0';
	return 0;
}

static int
stdiohub_rq_headers(void *arg, struct http_msg *m)
{
	struct stdiohub_conn *hc = arg;
	const char *sid = http_msg_get(m, "Mcp-Session-Id");

	hc->method = (int)m->method;
	hc->keep = m->keep_alive;
	if (sid != NULL)
		snprintf(hc->sid, sizeof(hc->sid), "%s", sid);
	return 0;
}

static int
stdiohub_rq_body(void *arg, const char *p, size_t n)
{
	return buf_add(&((struct stdiohub_conn *)arg)->body, p, n);
}

static int
stdiohub_rq_complete(void *arg, struct http_msg *m)
{
	struct stdiohub_conn *hc = arg;

	log_debug("stdio upstream: %s, session %s", http_method_str((enum http_method)hc->method),
	    hc->sid[0] ? hc->sid : "-");
	switch (hc->method) {
	case HTTP_POST:
		stdiohub_post(hc);
		break;
	case HTTP_GET:
		stdiohub_get(hc);
		break;
	case HTTP_DELETE:
		stdiohub_delete(hc);
		break;
	default:
		stdiohub_error(hc, 405, NULL, "method not allowed");
	}
	return 1;       /* one request at a time */
}

static const struct http_cbs stdiohub_rq_cbs = { stdiohub_rq_begin, stdiohub_rq_headers,
    stdiohub_rq_body,
    stdiohub_rq_complete };

/* Feeds buffered request bytes while no response is open. */
static void
stdiohub_drive(struct stdiohub_conn *hc)
{
	struct evbuffer *in = bufferevent_get_input(hc->bev);
	struct evbuffer_iovec v;
	ssize_t k;

	while (!hc->streaming && !hc->done && evbuffer_get_length(in) > 0) {
		/* A request answered at once left the reader paused (its callback ran
		 * inside the feed): the next one may start. */
		if (http_reader_paused(hc->rd))
			http_reader_resume(hc->rd);
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if ((k = http_reader_feed(hc->rd, v.iov_base, v.iov_len)) < 0) {
			log_warn("stdio upstream: a request from the proxy was refused: %d %s",
			    http_reader_status(hc->rd), http_reader_reason(hc->rd));
			stdiohub_conn_free(hc);
			return;
		}
		evbuffer_drain(in, (size_t)k);
	}
}

/* The answer is written (or its stream ended): the next request may be read (by
 * stdiohub_drive, which resumes the reader outside of its callbacks). */
static void
stdiohub_next(struct stdiohub_conn *hc)
{
	if (hc->streaming)
		return;
	if (!hc->keep) {
		hc->done = 1;
		bufferevent_disable(hc->bev, EV_READ);
		return;         /* freed once the output drained (stdiohub_writecb) */
	}
}

static void
stdiohub_readcb(struct bufferevent *bev, void *arg)
{
	stdiohub_drive(arg);
}

static void
stdiohub_writecb(struct bufferevent *bev, void *arg)
{
	struct stdiohub_conn *hc = arg;

	if (hc->sess != NULL)
		stdiohub_pause_check(hc->sess);
	if (hc->done && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		stdiohub_conn_free(hc);
		return;
	}
	if (!hc->streaming)
		stdiohub_drive(hc);
}

static void
stdiohub_eventcb(struct bufferevent *bev, short what, void *arg)
{
	stdiohub_conn_free(arg);
}

static void
stdiohub_conn_free(struct stdiohub_conn *hc)
{
	struct stdiohub_session *s = hc->sess;

	if (s != NULL) {
		TAILQ_REMOVE(&s->conns, hc, slink);
		if (hc->post != 0) {
			stdiomap_post_close(s->map, hc->post);
			stdioproc_hold(s->proc, -1);
		}
		if (hc->get) {
			stdiomap_get_close(s->map);
			stdioproc_hold(s->proc, -1);
		}
		stdiohub_pause_check(s);
	}
	TAILQ_REMOVE(&hub.conns, hc, link);
	bufferevent_free(hc->bev);
	http_reader_free(hc->rd);
	buf_free(&hc->body);
	free(hc);
}

/* ---- the thread ---- */

static void
stdiohub_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_limits lim = { 65536, 256, HUB_MAX_BODY };
	int fds[HUB_MAX_FDS], n, i;
	struct stdiohub_conn *hc;

	pthread_mutex_lock(&hub.mtx);
	n = hub.nfds;
	memcpy(fds, hub.fds, (size_t)n * sizeof(int));
	hub.nfds = 0;
	pthread_mutex_unlock(&hub.mtx);
	for (i = 0; i < n; i++) {
		if ((hc = calloc(1, sizeof(*hc))) == NULL ||
		    (hc->bev = bufferevent_socket_new(hub.base, fds[i],
		    BEV_OPT_CLOSE_ON_FREE)) == NULL ||
		    (hc->rd = http_reader_new(1, &lim, &stdiohub_rq_cbs, hc)) == NULL) {
			log_err("stdio upstream: out of memory for a connection");
			if (hc != NULL && hc->bev != NULL)
				bufferevent_free(hc->bev);
			else
				close(fds[i]);
			free(hc);
			continue;
		}
		buf_init(&hc->body);
		hc->body.max = HUB_MAX_BODY;
		log_debug("stdio upstream: connection adopted");
		TAILQ_INSERT_TAIL(&hub.conns, hc, link);
		bufferevent_setcb(hc->bev, stdiohub_readcb, stdiohub_writecb,
		    stdiohub_eventcb, hc);
		bufferevent_setwatermark(hc->bev, EV_WRITE, HUB_OUT_LOW, 0);
		bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
	}
}

static void
stdiohub_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(hub.base);
}

static void *
stdiohub_main(void *arg)
{
	struct stdiohub_session *s;
	struct stdiohub_conn *hc;

	/* Nothing may be pending between sessions: run until told to stop. */
	event_base_loop(hub.base, EVLOOP_NO_EXIT_ON_EMPTY);
	while ((hc = TAILQ_FIRST(&hub.conns)) != NULL)
		stdiohub_conn_free(hc);
	/* The processes are ended by stdioproc_shutdown (SIGTERM, then SIGKILL after the
	 * grace): forget the sessions without closing each handle first. */
	while ((s = TAILQ_FIRST(&hub.sessions)) != NULL) {
		TAILQ_REMOVE(&hub.sessions, s, link);
		stdiomap_free(s->map);
		free(s);
	}
	(void)stdioproc_shutdown(hub.cfg->limits.grace_ms);
	event_base_loop(hub.base, EVLOOP_NONBLOCK);
	return NULL;
}

int
stdiohub_start(const struct config *cfg)
{
	int rc;

	hub.cfg = cfg;
	TAILQ_INIT(&hub.conns);
	TAILQ_INIT(&hub.sessions);
	if ((hub.base = event_base_new()) == NULL ||
	    (hub.adopt_ev = event_new(hub.base, -1, 0, stdiohub_adopt_cb, NULL)) == NULL ||
	    (hub.stop_ev = event_new(hub.base, -1, 0, stdiohub_stop_cb, NULL)) == NULL) {
		log_err("stdio upstream: cannot set up its event loop");
		return -1;
	}
	if ((rc = pthread_create(&hub.thr, NULL, stdiohub_main, NULL)) != 0) {
		log_err("stdio upstream: pthread_create: %s", strerror(rc));
		return -1;
	}
	hub.running = 1;
	log_info("stdio upstream: %s, one process per MCP session (at most %d)",
	    cfg->upstream.command[0], cfg->upstream.max_processes);
	return 0;
}

void
stdiohub_stop(void)
{
	int i;

	if (hub.running) {
		event_active(hub.stop_ev, EV_TIMEOUT, 0);
		pthread_join(hub.thr, NULL);
		hub.running = 0;
	}
	pthread_mutex_lock(&hub.mtx);
	for (i = 0; i < hub.nfds; i++)
		close(hub.fds[i]);
	hub.nfds = 0;
	pthread_mutex_unlock(&hub.mtx);
	if (hub.adopt_ev != NULL)
		event_free(hub.adopt_ev);
	if (hub.stop_ev != NULL)
		event_free(hub.stop_ev);
	if (hub.base != NULL)
		event_base_free(hub.base);
	hub.adopt_ev = hub.stop_ev = NULL;
	hub.base = NULL;
}

int
stdiohub_connect(void)
{
	int sv[2];

	if (!hub.running) {
		errno = ENOTCONN;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	pthread_mutex_lock(&hub.mtx);
	if (hub.nfds == HUB_MAX_FDS) {
		pthread_mutex_unlock(&hub.mtx);
		close(sv[0]);
		close(sv[1]);
		errno = EAGAIN;
		return -1;
	}
	hub.fds[hub.nfds++] = sv[1];
	pthread_mutex_unlock(&hub.mtx);
	log_debug("stdio upstream: connection handed over");
	event_active(hub.adopt_ev, EV_TIMEOUT, 0);
	return sv[0];
}
