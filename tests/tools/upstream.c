/* upstream: a small HTTP/1.1 server for certgate tests and benchmarks (libevent,
 * keep-alive, no TLS). Requests are parsed with certgate's own strict reader, so a
 * gateway that sends anything malformed upstream fails here too.
 *
 * usage: upstream --port N [--host 127.0.0.1] [--log FILE]
 *
 * Endpoints (query parameters in brackets):
 *   /echo             JSON {method, path, headers{}, header_list[[n,v]], body}
 *   /mcp              minimal MCP JSON-RPC: initialize (+ Mcp-Session-Id), tools/list,
 *                     tools/call, anything else -> {}; notifications -> 202; unknown
 *                     Mcp-Session-Id -> 404; DELETE forgets the session
 *   /sse [n=5&delay_ms=200]   text/event-stream, n events, then the end
 *   /sse-list         text/event-stream carrying the tools/list response to the POST body
 *   /hang             never answers
 *   /close            announces 100 bytes, sends 10, closes
 *   /bad              malformed response
 *   /chunked          chunked body in several chunks
 *   /big [n=BYTES]    Content-Length body of n bytes
 *   /status [code=N]  empty JSON body with that status
 *   /stats            {connections_open, connections_total, requests, sse_aborted}
 *   anything else     {"ok":true}
 * --log FILE appends one JSON line per request (method, path, headers, header_list,
 * body_len) and one per aborted event stream ({"event":"sse-aborted","sent":k}). */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

struct uc {
	struct bufferevent *bev;
	struct http_reader *rd;
	struct evbuffer *body;
	json_t *hdrs, *hlist;
	char method[16];
	char *url;
	char *sid;
	int keep;
	int closing;
	int hanging;
	struct event *timer;
	int sse_left, sse_sent, sse_delay;
	int requests;
};

static struct event_base *base;
static FILE *logfp;
static long n_open, n_total, n_requests, n_sse_aborted;
static json_t *sessions;        /* object: sid -> true */
static unsigned sid_counter;

static void uc_free(struct uc *u);
static void uc_next(struct uc *u);

static void
log_json(json_t *o)
{
	char *s;

	if (logfp == NULL || (s = json_dumps(o, JSON_COMPACT)) == NULL)
		return;
	fprintf(logfp, "%s\n", s);
	fflush(logfp);
	free(s);
}

static const char *
query(const char *url, const char *key, char *buf, size_t len)
{
	const char *q = strchr(url, '?'), *p;
	size_t k = strlen(key), n;

	if (q == NULL)
		return NULL;
	for (p = q + 1; *p; ) {
		if (strncmp(p, key, k) == 0 && p[k] == '=') {
			p += k + 1;
			n = strcspn(p, "&");
			snprintf(buf, len, "%.*s", (int)n, p);
			return buf;
		}
		p += strcspn(p, "&");
		if (*p == '&')
			p++;
	}
	return NULL;
}

static void
respond(struct uc *u, int status, const char *ctype, const char *extra, const char *body,
    size_t len)
{
	struct evbuffer *out = bufferevent_get_output(u->bev);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%s%s\r\n", status, http_status_text(status), ctype, len, extra ? extra : "",
	    u->keep ? "" : "Connection: close\r\n");
	evbuffer_add(out, body, len);
	uc_next(u);
}

static void
respond_json(struct uc *u, int status, json_t *o, const char *extra)
{
	char *s = json_dumps(o, JSON_COMPACT);

	respond(u, status, "application/json", extra, s ? s : "{}", s ? strlen(s) : 2);
	free(s);
	json_decref(o);
}

static json_t *
tools_list(void)
{
	const char *names[] = { "echo", "add", "delete_file", "search_docs" };
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < 4; i++)
		json_array_append_new(a, json_pack("{s:s,s:s,s:{s:s}}", "name", names[i],
		    "description", names[i], "inputSchema", "type", "object"));
	return json_pack("{s:o}", "tools", a);
}

static json_t *
rpc_answer(json_t *msg, char *sidbuf, size_t sidlen)
{
	json_t *id = json_object_get(msg, "id");
	const char *m = json_string_value(json_object_get(msg, "method"));
	json_t *result, *params = json_object_get(msg, "params");

	if (id == NULL || m == NULL)
		return NULL;    /* notification or response */
	if (strcmp(m, "initialize") == 0) {
		snprintf(sidbuf, sidlen, "sess-%u-%ld", ++sid_counter, random());
		result = json_pack("{s:s,s:{s:{}},s:{s:s,s:s}}", "protocolVersion", "2025-06-18",
		    "capabilities", "tools", "serverInfo", "name", "upstream", "version", "1");
	} else if (strcmp(m, "tools/list") == 0)
		result = tools_list();
	else if (strcmp(m, "tools/call") == 0)
		result = json_pack("{s:[{s:s,s:s?}]}", "content", "type", "text", "text",
		    json_string_value(json_object_get(params, "name")));
	else
		result = json_object();
	return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

static void
handle_mcp(struct uc *u, json_t *root)
{
	char sid[64] = "", extra[128] = "";
	json_t *ans, *arr, *v;
	size_t i;

	if (u->sid && json_object_get(sessions, u->sid) == NULL) {
		respond_json(u, 404, json_pack("{s:s}", "error", "unknown session"), NULL);
		return;
	}
	if (strcmp(u->method, "DELETE") == 0) {
		if (u->sid)
			json_object_del(sessions, u->sid);
		respond(u, 200, "application/json", NULL, "{}", 2);
		return;
	}
	if (json_is_array(root)) {
		arr = json_array();
		json_array_foreach(root, i, v)
			if ((ans = rpc_answer(v, sid, sizeof(sid))) != NULL)
				json_array_append_new(arr, ans);
		ans = json_array_size(arr) ? arr : NULL;
		if (ans == NULL)
			json_decref(arr);
	} else
		ans = root ? rpc_answer(root, sid, sizeof(sid)) : NULL;
	if (sid[0]) {
		json_object_set_new(sessions, sid, json_true());
		snprintf(extra, sizeof(extra), "Mcp-Session-Id: %s\r\n", sid);
	}
	if (ans == NULL) {
		respond(u, root ? 202 : 400, "application/json", NULL, "", 0);
		return;
	}
	respond_json(u, 200, ans, extra);
}

static void
chunk(struct evbuffer *out, const char *s, size_t n)
{
	evbuffer_add_printf(out, "%zx\r\n", n);
	evbuffer_add(out, s, n);
	evbuffer_add(out, "\r\n", 2);
}

static void
sse_tick(evutil_socket_t fd, short what, void *arg)
{
	struct uc *u = arg;
	struct evbuffer *out = bufferevent_get_output(u->bev);
	char ev[128];
	struct timeval tv = { u->sse_delay / 1000, (u->sse_delay % 1000) * 1000 };
	int n;

	if (u->sse_left <= 0) {
		evbuffer_add(out, "0\r\n\r\n", 5);
		u->hanging = 0;
		uc_next(u);
		return;
	}
	n = snprintf(ev, sizeof(ev), "id: %d\nevent: message\ndata: {\"seq\":%d}\n\n",
	    u->sse_sent, u->sse_sent);
	chunk(out, ev, (size_t)n);
	u->sse_sent++;
	u->sse_left--;
	evtimer_add(u->timer, &tv);
}

static void
start_sse(struct uc *u)
{
	char b[32];

	u->sse_left = query(u->url, "n", b, sizeof(b)) ? atoi(b) : 5;
	u->sse_delay = query(u->url, "delay_ms", b, sizeof(b)) ? atoi(b) : 200;
	u->sse_sent = 0;
	u->hanging = 1;         /* response in progress: not finished yet */
	evbuffer_add_printf(bufferevent_get_output(u->bev), "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n");
	u->timer = evtimer_new(base, sse_tick, u);
	sse_tick(-1, 0, u);
}

static void
handle(struct uc *u)
{
	char path[512], b[32];
	size_t blen = u->body ? evbuffer_get_length(u->body) : 0;
	const char *body = blen ? (const char *)evbuffer_pullup(u->body, -1) : "";
	json_t *root = blen ? json_loadb(body, blen, 0, NULL) : NULL, *o;
	struct evbuffer *out = bufferevent_get_output(u->bev);
	long n;

	snprintf(path, sizeof(path), "%.*s", (int)strcspn(u->url, "?"), u->url);
	o = json_pack("{s:s,s:s,s:s,s:O,s:O,s:I}", "method", u->method, "path", path,
	    "url", u->url, "headers", u->hdrs, "header_list", u->hlist, "body_len",
	    (json_int_t)blen);
	log_json(o);
	json_decref(o);
	n_requests++;
	if (strcmp(path, "/echo") == 0) {
		respond_json(u, 200, json_pack("{s:s,s:s,s:O,s:O,s:s%}", "method", u->method,
		    "path", u->url, "headers", u->hdrs, "header_list", u->hlist, "body", body,
		    blen), NULL);
	} else if (strcmp(path, "/mcp") == 0 || strncmp(path, "/mcp/", 5) == 0) {
		handle_mcp(u, root);
	} else if (strcmp(path, "/sse") == 0) {
		start_sse(u);
	} else if (strcmp(path, "/sse-list") == 0) {
		char *s = NULL, *sj;
		json_t *ans = json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id",
		    json_object_get(root, "id") ? json_object_get(root, "id") : json_null(),
		    "result", tools_list());

		sj = json_dumps(ans, JSON_COMPACT);
		json_decref(ans);
		evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n");
		chunk(out, ": comment\n\n", 11);
		free(s);
		s = NULL;
		if (asprintf(&s, "event: message\ndata: %s\n\n", sj) > 0)
			chunk(out, s, strlen(s));
		evbuffer_add(out, "0\r\n\r\n", 5);
		free(s);
		free(sj);
		uc_next(u);
	} else if (strcmp(path, "/hang") == 0) {
		u->hanging = 1;
	} else if (strcmp(path, "/close") == 0) {
		evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
		    "Content-Length: 100\r\n\r\n0123456789");
		u->keep = 0;
		u->closing = 1;
	} else if (strcmp(path, "/bad") == 0) {
		evbuffer_add_printf(out, "HTTP/1.1 2x0 What\r\nBroken header\r\n\r\n");
		u->keep = 0;
		u->closing = 1;
	} else if (strcmp(path, "/chunked") == 0) {
		evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n");
		chunk(out, "alpha,", 6);
		chunk(out, "beta,", 5);
		chunk(out, "gamma", 5);
		evbuffer_add(out, "0\r\nX-Trailer: t\r\n\r\n", 19);
		uc_next(u);
	} else if (strcmp(path, "/big") == 0) {
		char *buf;

		n = query(u->url, "n", b, sizeof(b)) ? atol(b) : 1048576;
		if ((buf = malloc((size_t)n + 1)) == NULL)
			n = 0;
		else
			memset(buf, 'x', (size_t)n);
		respond(u, 200, "application/octet-stream", NULL, buf ? buf : "", (size_t)n);
		free(buf);
	} else if (strcmp(path, "/status") == 0) {
		n = query(u->url, "code", b, sizeof(b)) ? atol(b) : 200;
		respond(u, (int)n, "application/json", NULL, "{}", 2);
	} else if (strcmp(path, "/stats") == 0) {
		respond_json(u, 200, json_pack("{s:I,s:I,s:I,s:I}", "connections_open",
		    (json_int_t)n_open, "connections_total", (json_int_t)n_total, "requests",
		    (json_int_t)n_requests, "sse_aborted", (json_int_t)n_sse_aborted), NULL);
	} else {
		respond(u, 200, "application/json", NULL, "{\"ok\":true}", 11);
	}
	json_decref(root);
}

static void uc_drive(struct uc *u);

/* Response queued: get ready for the next request (or close after the flush). */
static void
uc_next(struct uc *u)
{
	if (u->body)
		evbuffer_drain(u->body, evbuffer_get_length(u->body));
	json_object_clear(u->hdrs);
	json_array_clear(u->hlist);
	free(u->sid);
	u->sid = NULL;
	u->hanging = 0;
	if (!u->keep)
		u->closing = 1;
	else
		http_reader_resume(u->rd);
}

static int
on_headers(void *arg, struct http_msg *m)
{
	struct uc *u = arg;
	size_t i;
	const char *sid;

	snprintf(u->method, sizeof(u->method), "%s", m->method_str);
	free(u->url);
	u->url = strdup(m->url);
	u->keep = m->keep_alive;
	for (i = 0; i < m->nh; i++) {
		json_object_set_new(u->hdrs, m->h[i].name, json_string(m->h[i].value));
		json_array_append_new(u->hlist, json_pack("[s,s]", m->h[i].name, m->h[i].value));
	}
	sid = http_msg_get(m, "Mcp-Session-Id");
	u->sid = sid ? strdup(sid) : NULL;
	return 0;
}

static int
on_body(void *arg, const char *p, size_t n)
{
	struct uc *u = arg;

	return evbuffer_add(u->body, p, n);
}

static int
on_complete(void *arg, struct http_msg *m)
{
	return 1;
}

static const struct http_cbs cbs = { NULL, on_headers, on_body, on_complete };

static void
uc_drive(struct uc *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	struct evbuffer_iovec v;
	ssize_t k;

	while (!u->closing && !u->hanging && evbuffer_get_length(in) > 0) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if ((k = http_reader_feed(u->rd, v.iov_base, v.iov_len)) < 0) {
			respond(u, http_reader_status(u->rd) ? http_reader_status(u->rd) : 400,
			    "text/plain", NULL, "bad request\n", 12);
			u->closing = 1;
			break;
		}
		evbuffer_drain(in, (size_t)k);
		if (http_reader_paused(u->rd))
			handle(u);
	}
	if (u->closing && evbuffer_get_length(bufferevent_get_output(u->bev)) == 0)
		uc_free(u);
}

static void
readcb(struct bufferevent *bev, void *arg)
{
	uc_drive(arg);
}

static void
writecb(struct bufferevent *bev, void *arg)
{
	struct uc *u = arg;

	if (u->closing)
		uc_free(u);
	else if (!u->hanging)
		uc_drive(u);
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct uc *u = arg;
	json_t *o;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (u->timer && u->hanging) {
			n_sse_aborted++;
			o = json_pack("{s:s,s:i}", "event", "sse-aborted", "sent", u->sse_sent);
			log_json(o);
			json_decref(o);
		}
		uc_free(u);
	}
}

static void
uc_free(struct uc *u)
{
	n_open--;
	if (u->timer)
		event_free(u->timer);
	bufferevent_free(u->bev);
	http_reader_free(u->rd);
	evbuffer_free(u->body);
	json_decref(u->hdrs);
	json_decref(u->hlist);
	free(u->url);
	free(u->sid);
	free(u);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct http_limits lim = { 65536, 200, -1 };
	struct uc *u = calloc(1, sizeof(*u));

	if (u == NULL) {
		evutil_closesocket(fd);
		return;
	}
	u->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	u->rd = http_reader_new(1, &lim, &cbs, u);
	u->body = evbuffer_new();
	u->hdrs = json_object();
	u->hlist = json_array();
	n_open++;
	n_total++;
	bufferevent_setcb(u->bev, readcb, writecb, eventcb, u);
	bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "log", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_in sin;
	struct evconnlistener *l;
	const char *host = "127.0.0.1";
	int port = 0, ch;

	while ((ch = getopt_long(argc, argv, "p:H:l:", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'H':
			host = optarg;
			break;
		case 'l':
			if ((logfp = fopen(optarg, "a")) == NULL) {
				perror(optarg);
				return 1;
			}
			break;
		default:
			fprintf(stderr, "usage: upstream --port N [--host ADDR] [--log FILE]\n");
			return 2;
		}
	}
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: upstream --port N [--host ADDR] [--log FILE]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sessions = json_object();
	base = event_base_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
		fprintf(stderr, "upstream: bad --host %s\n", host);
		return 2;
	}
	l = evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_REUSEABLE |
	    LEV_OPT_CLOSE_ON_FREE, 512, (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		perror("upstream: bind");
		return 1;
	}
	fprintf(stderr, "upstream listening on %s:%d\n", host, port);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_base_free(base);
	return 0;
}
