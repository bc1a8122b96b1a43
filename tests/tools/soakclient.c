/* soakclient: many concurrent mTLS clients for the soak test (tests/integration/
 * t_soak.sh), on one libevent loop with bufferevent_openssl.
 *
 *   soakclient --connect HOST:PORT --ca CA.pem --agent DIR[:guest]... [--clients N]
 *              [--duration S] [--think-ms MIN-MAX] [--mix K,C,R,S] [--sse-events N]
 *              [--sse-delay-ms D] [--sse-cancel-pct P] [--timeout-ms T] [--ramp-ms R]
 *              [--drain-ms D] [--burst-ms B --burst-think-ms MIN-MAX]
 *
 * Each client ("slot") uses one agent's certificate (DIR/cert.pem, DIR/key.pem;
 * ":guest" marks an agent without tools:* scopes, whose tools/call must be 403) and
 * one behaviour, chosen by the --mix percentages (default 40,20,20,20):
 *   keep    keep-alive: requests on one connection, reconnecting every 20-80 requests
 *   churn   one request per connection, full handshake every time
 *   resume  one request per connection, resuming the last TLS session (ticket)
 *   sse     GET /sse?n=N&delay_ms=D (long-lived event stream); --sse-cancel-pct of the
 *           streams are cancelled midway (half with close_notify, half without)
 * Requests are POST /mcp JSON-RPC (ping, tools/list, tools/call echo, and 2 % of
 * malformed JSON) with an id unique to the slot; a response must carry the expected
 * status (200; 403 for a guest's tools/call; 400 for malformed JSON) and, except for
 * the 400, the request's id. An event stream must deliver exactly N events.
 * Anything else (handshake failure, timeout, a close while a request is in flight or
 * while idle on a keep-alive connection) is an error.
 *
 * For the first --burst-ms milliseconds the think time is --burst-think-ms instead
 * of --think-ms: a burst at the highest concurrency the run will see, so that the
 * load's working set (and the gateway's allocator high-water mark) is reached early.
 *
 * After --duration seconds no new request starts; requests and streams in flight get
 * --drain-ms to finish, then every connection is closed with close_notify. Prints a
 * summary; exit 0 when there were no errors, 1 otherwise, 2 on bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http.h"

enum mode { M_KEEP, M_CHURN, M_RESUME, M_SSE, M_COUNT };
static const char *mode_name[M_COUNT] = { "keep", "churn", "resume", "sse" };

enum req_kind { R_PING, R_LIST, R_CALL, R_BADJSON, R_SSE };

struct agent {
	char dir[512];
	int guest;
	SSL_CTX *ctx;
};

enum slot_state { S_IDLE, S_CONNECTING, S_WAITING, S_THINKING, S_DONE };

struct slot {
	int idx;
	enum mode mode;
	struct agent *ag;
	SSL_SESSION *sess;              /* last ticket (resume mode) */
	struct bufferevent *bev;
	struct http_reader *rd;
	struct event *timer;            /* think time / ramp-up */
	struct event *deadline;         /* request or handshake timeout */
	enum slot_state state;
	int conn_reqs;                  /* requests done on this connection */
	int conn_max;                   /* keep mode: reconnect after this many */
	/* request in flight */
	enum req_kind kind;
	long long id;
	int want_status;
	int status;
	int keep_alive;
	int complete;
	int sse_events;
	int sse_cancel_at;              /* cancel after this many events, 0: never */
	char last;                      /* previous body byte (event boundaries) */
	char body[4096];
	size_t blen;
	long long seq;
};

struct stats {
	long requests, ok, errors, status[600];
	long hs_full, hs_resumed, resume_tries;
	long conns, sse_complete, sse_cancelled, sse_events;
	long by_kind[5];
};

static struct event_base *base;
static struct sockaddr_in target;
static struct agent agents[16];
static int nagents;
static struct slot *slots;
static int nslots;
static struct stats st;
static int stopping;
static int active_slots;
static char errlog[30][512];
static int nerrlog;
static unsigned rng_state = 2463534242u;

/* options */
static int o_clients = 100, o_duration = 60, o_think_min = 300, o_think_max = 1000;
static int o_mix[M_COUNT] = { 40, 20, 20, 20 };
static int o_sse_events = 20, o_sse_delay = 100, o_sse_cancel = 30, o_timeout = 20000;
static int o_ramp = 3000, o_drain = 30000;
static int o_burst_ms, o_burst_min, o_burst_max;
static long long burst_until;

static void slot_connect(struct slot *s);
static void slot_send(struct slot *s);
static void slot_close(struct slot *s, int clean);
static void slot_next(struct slot *s);

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static int
rnd_range(int lo, int hi)
{
	return hi <= lo ? lo : lo + (int)(rnd() % (unsigned)(hi - lo + 1));
}

/* The agent directory's last component (the agent id). */
static const char *
agent_name(const struct agent *a)
{
	const char *p = strrchr(a->dir, '/');

	return p != NULL && p[1] != '\0' ? p + 1 : a->dir;
}

static void __attribute__((format(printf, 2, 3)))
note_error(struct slot *s, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st.errors++;
	if (nerrlog < (int)(sizeof(errlog) / sizeof(errlog[0])))
		snprintf(errlog[nerrlog++], sizeof(errlog[0]), "slot %d (%s, %.200s%s): %s",
		    s->idx, mode_name[s->mode], agent_name(s->ag), s->ag->guest ? ", guest" : "",
		    msg);
}

static void
arm(struct event *ev, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* ---- TLS ---- */

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct slot *s = SSL_get_app_data(ssl);

	if (s == NULL || s->mode != M_RESUME)
		return 0;
	SSL_SESSION_free(s->sess);
	s->sess = sess;         /* we keep the reference */
	return 1;
}

static int
agent_ctx(struct agent *a, const char *ca)
{
	char cert[600], key[600];

	snprintf(cert, sizeof(cert), "%s/cert.pem", a->dir);
	snprintf(key, sizeof(key), "%s/key.pem", a->dir);
	if ((a->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return -1;
	SSL_CTX_set_min_proto_version(a->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(a->ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(a->ctx, ca, NULL) != 1 ||
	    SSL_CTX_use_certificate_chain_file(a->ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(a->ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "soakclient: cannot load %s, %s or %s\n", ca, cert, key);
		ERR_print_errors_fp(stderr);
		return -1;
	}
	SSL_CTX_set_session_cache_mode(a->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(a->ctx, new_session_cb);
	return 0;
}

/* ---- HTTP response reader callbacks ---- */

static int
on_headers(void *arg, struct http_msg *m)
{
	struct slot *s = arg;

	s->status = m->status;
	s->keep_alive = m->keep_alive;
	return 0;
}

static int
on_body(void *arg, const char *p, size_t n)
{
	struct slot *s = arg;
	size_t i, k;

	if (s->kind == R_SSE) {
		for (i = 0; i < n; i++) {
			if (p[i] == '\n' && s->last == '\n')
				s->sse_events++;
			s->last = p[i];
		}
		return 0;
	}
	k = sizeof(s->body) - 1 - s->blen;
	if (n < k)
		k = n;
	memcpy(s->body + s->blen, p, k);
	s->blen += k;
	s->body[s->blen] = '\0';
	return 0;
}

static int
on_complete(void *arg, struct http_msg *m)
{
	struct slot *s = arg;

	s->complete = 1;
	return 1;
}

static const struct http_cbs rd_cbs = { NULL, on_headers, on_body, on_complete };

/* ---- slot life cycle ---- */

static void
slot_finish(struct slot *s)
{
	if (s->state == S_DONE)
		return;
	slot_close(s, 1);
	s->state = S_DONE;
	if (--active_slots == 0)
		event_base_loopexit(base, NULL);
}

static void
slot_close(struct slot *s, int clean)
{
	SSL *ssl;

	evtimer_del(s->deadline);
	if (s->bev != NULL) {
		ssl = bufferevent_openssl_get_ssl(s->bev);
		if (clean && ssl != NULL && SSL_is_init_finished(ssl))
			SSL_shutdown(ssl);      /* best effort close_notify */
		bufferevent_free(s->bev);       /* frees the SSL, closes the socket */
		s->bev = NULL;
	}
	if (s->rd != NULL) {
		http_reader_free(s->rd);
		s->rd = NULL;
	}
	s->conn_reqs = 0;
}

/* After a request ended: think, then go on (or stop). */
static void
slot_next(struct slot *s)
{
	evtimer_del(s->deadline);
	if (stopping) {
		slot_finish(s);
		return;
	}
	s->state = S_THINKING;
	if (burst_until != 0 && now_ms() < burst_until)
		arm(s->timer, rnd_range(o_burst_min, o_burst_max));
	else
		arm(s->timer, rnd_range(o_think_min, o_think_max));
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;

	if (stopping) {
		slot_finish(s);
		return;
	}
	if (s->bev != NULL)
		slot_send(s);
	else
		slot_connect(s);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;

	note_error(s, "timeout after %d ms (%s)", o_timeout,
	    s->state == S_CONNECTING ? "handshake" : s->kind == R_SSE ? "event stream" :
	    "waiting for the response");
	slot_close(s, 0);
	slot_next(s);
}

static void
response_done(struct slot *s)
{
	const char *needle;
	char idbuf[64];
	int reuse;

	st.requests++;
	st.by_kind[s->kind]++;
	if (s->status > 0 && s->status < 600)
		st.status[s->status]++;
	if (s->status != s->want_status) {
		note_error(s, "kind %d: status %d, expected %d: %.120s", s->kind, s->status,
		    s->want_status, s->body);
		slot_close(s, 1);
		slot_next(s);
		return;
	}
	if (s->kind == R_SSE) {
		if (s->sse_events != o_sse_events) {
			note_error(s, "event stream ended after %d events, expected %d",
			    s->sse_events, o_sse_events);
		} else {
			st.ok++;
			st.sse_complete++;
		}
		st.sse_events += s->sse_events;
	} else if (s->kind != R_BADJSON) {
		snprintf(idbuf, sizeof(idbuf), "\"id\":%lld", s->id);
		needle = strstr(s->body, idbuf);
		if (needle == NULL || (needle[strlen(idbuf)] >= '0' && needle[strlen(idbuf)] <= '9'))
			note_error(s, "response without the request id %lld: %.120s", s->id,
			    s->body);
		else
			st.ok++;
	} else
		st.ok++;
	s->conn_reqs++;
	reuse = s->keep_alive && (s->mode == M_KEEP || s->mode == M_SSE) &&
	    (s->mode != M_KEEP || s->conn_reqs < s->conn_max);
	if (!reuse)
		slot_close(s, 1);
	else
		http_reader_resume(s->rd);
	slot_next(s);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct slot *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	ssize_t k;

	while (evbuffer_get_length(in) > 0) {
		if (s->state != S_WAITING) {
			note_error(s, "%zu unexpected bytes from the gateway while idle",
			    evbuffer_get_length(in));
			slot_close(s, 0);
			slot_next(s);
			return;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		if ((k = http_reader_feed(s->rd, v.iov_base, v.iov_len)) < 0) {
			note_error(s, "malformed response (%s)", http_reader_reason(s->rd));
			slot_close(s, 0);
			slot_next(s);
			return;
		}
		evbuffer_drain(in, (size_t)k);
		if (s->kind == R_SSE && s->sse_cancel_at > 0 &&
		    s->sse_events >= s->sse_cancel_at && !s->complete) {
			/* the client walks away midway through the stream */
			st.requests++;
			st.by_kind[R_SSE]++;
			st.ok++;
			st.sse_cancelled++;
			st.sse_events += s->sse_events;
			slot_close(s, s->sse_cancel_at % 2 == 0);
			slot_next(s);
			return;
		}
		if (s->complete) {
			response_done(s);
			return;
		}
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct slot *s = arg;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e;
	char why[160] = "";

	if (what & BEV_EVENT_CONNECTED) {
		st.conns++;
		if (SSL_session_reused(ssl))
			st.hs_resumed++;
		else
			st.hs_full++;
		slot_send(s);
		return;
	}
	if ((e = bufferevent_get_openssl_error(bev)) != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
	else
		snprintf(why, sizeof(why), "EOF");
	while (bufferevent_get_openssl_error(bev) != 0)
		;
	if (s->state == S_CONNECTING)
		note_error(s, "handshake failed: %s", why);
	else if (s->state == S_WAITING)
		note_error(s, "connection closed during a request (%d bytes of body, "
		    "status %d, %d events): %s", (int)s->blen, s->status, s->sse_events, why);
	else
		note_error(s, "idle keep-alive connection closed by the gateway: %s", why);
	slot_close(s, 0);
	if (s->state != S_THINKING)
		slot_next(s);
}

static void
slot_connect(struct slot *s)
{
	struct http_limits lim = { 65536, 200, -1 };
	SSL *ssl;

	if ((ssl = SSL_new(s->ag->ctx)) == NULL) {
		note_error(s, "SSL_new failed");
		slot_next(s);
		return;
	}
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set_app_data(ssl, s);
	if (s->mode == M_RESUME && s->sess != NULL) {
		SSL_set_session(ssl, s->sess);
		st.resume_tries++;
	}
	s->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		note_error(s, "bufferevent_openssl_socket_new failed");
		slot_next(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	s->rd = http_reader_new(0, &lim, &rd_cbs, s);
	bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->state = S_CONNECTING;
	s->conn_reqs = 0;
	s->conn_max = rnd_range(20, 80);
	arm(s->deadline, o_timeout);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&target,
	    sizeof(target)) == -1) {
		note_error(s, "connect: %s", strerror(errno));
		slot_close(s, 0);
		slot_next(s);
	}
}

static void
slot_send(struct slot *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char body[256];
	int n, r;

	s->id = (long long)s->idx * 1000000 + ++s->seq;
	s->status = s->blen = s->complete = s->sse_events = 0;
	s->body[0] = s->last = '\0';
	s->sse_cancel_at = 0;
	if (s->mode == M_SSE) {
		s->kind = R_SSE;
		s->want_status = 200;
		if ((int)(rnd() % 100) < o_sse_cancel)
			s->sse_cancel_at = rnd_range(1, o_sse_events - 1);
		evbuffer_add_printf(out, "GET /sse?n=%d&delay_ms=%d HTTP/1.1\r\nHost: localhost\r\n"
		    "Accept: text/event-stream\r\n\r\n", o_sse_events, o_sse_delay);
	} else {
		r = (int)(rnd() % 100);
		s->kind = r < 2 ? R_BADJSON : r < 40 ? R_PING : r < 60 ? R_LIST : R_CALL;
		s->want_status = 200;
		switch (s->kind) {
		case R_BADJSON:
			n = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":%lld,", s->id);
			s->want_status = 400;
			break;
		case R_PING:
			n = snprintf(body, sizeof(body),
			    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"ping\"}", s->id);
			break;
		case R_LIST:
			n = snprintf(body, sizeof(body),
			    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"tools/list\"}", s->id);
			break;
		default:
			n = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":%lld,"
			    "\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
			    "\"arguments\":{\"text\":\"soak %lld\"}}}", s->id, s->seq);
			if (s->ag->guest)
				s->want_status = 403;
			break;
		}
		evbuffer_add_printf(out, "POST /mcp HTTP/1.1\r\nHost: localhost\r\n"
		    "Content-Type: application/json\r\nAccept: application/json, "
		    "text/event-stream\r\nContent-Length: %d\r\n\r\n%s", n, body);
	}
	s->state = S_WAITING;
	arm(s->deadline, o_timeout);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	int i;

	stopping = 1;
	fprintf(stderr, "soakclient: duration over, draining\n");
	for (i = 0; i < nslots; i++)
		if (slots[i].state == S_THINKING || slots[i].state == S_IDLE)
			slot_finish(&slots[i]);
	arm((struct event *)arg, o_drain);
}

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	int i;

	for (i = 0; i < nslots; i++)
		if (slots[i].state != S_DONE) {
			note_error(&slots[i], "still busy %d ms after the end (state %d)",
			    o_drain, slots[i].state);
			slot_finish(&slots[i]);
		}
}

static void
report(void)
{
	int i;

	printf("clients: %d for %d s (keep %d%%, churn %d%%, resume %d%%, sse %d%%)\n",
	    nslots, o_duration, o_mix[M_KEEP], o_mix[M_CHURN], o_mix[M_RESUME], o_mix[M_SSE]);
	printf("connections: %ld (full handshakes %ld, resumed %ld of %ld attempts)\n",
	    st.conns, st.hs_full, st.hs_resumed, st.resume_tries);
	printf("requests: %ld (ping %ld, tools/list %ld, tools/call %ld, bad json %ld, "
	    "sse %ld), ok %ld\n", st.requests, st.by_kind[R_PING], st.by_kind[R_LIST],
	    st.by_kind[R_CALL], st.by_kind[R_BADJSON], st.by_kind[R_SSE], st.ok);
	printf("status:");
	for (i = 0; i < 600; i++)
		if (st.status[i])
			printf(" %d=%ld", i, st.status[i]);
	printf("\nsse: complete %ld, cancelled %ld, events %ld\n", st.sse_complete,
	    st.sse_cancelled, st.sse_events);
	printf("errors: %ld\n", st.errors);
	for (i = 0; i < nerrlog; i++)
		printf("  error: %s\n", errlog[i]);
}

static int
parse_mix(const char *s)
{
	int i, t = 0;

	if (sscanf(s, "%d,%d,%d,%d", &o_mix[0], &o_mix[1], &o_mix[2], &o_mix[3]) != 4)
		return -1;
	for (i = 0; i < M_COUNT; i++) {
		if (o_mix[i] < 0)
			return -1;
		t += o_mix[i];
	}
	return t == 100 ? 0 : -1;
}

static int
add_agent(const char *arg)
{
	struct agent *a;
	const char *colon;

	if (nagents == (int)(sizeof(agents) / sizeof(agents[0])))
		return -1;
	a = &agents[nagents++];
	colon = strrchr(arg, ':');
	a->guest = colon != NULL && strcmp(colon, ":guest") == 0;
	snprintf(a->dir, sizeof(a->dir), "%.*s", a->guest ? (int)(colon - arg) :
	    (int)strlen(arg), arg);
	return 0;
}

static int
set_target(const char *hostport)
{
	char host[64];
	const char *colon = strrchr(hostport, ':');

	if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &target.sin_addr) == 1 ? 0 : -1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: soakclient --connect HOST:PORT --ca CA.pem --agent DIR[:guest]...\n"
	    "  [--clients N] [--duration S] [--think-ms MIN-MAX] [--mix KEEP,CHURN,RESUME,SSE]\n"
	    "  [--sse-events N] [--sse-delay-ms D] [--sse-cancel-pct P] [--timeout-ms T]\n"
	    "  [--ramp-ms R] [--drain-ms D] [--burst-ms B --burst-think-ms MIN-MAX]\n");
}

static int
parse_opts(int argc, char **argv, const char **ca)
{
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "ca", required_argument, NULL, 'a' },
		{ "agent", required_argument, NULL, 'A' },
		{ "clients", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "think-ms", required_argument, NULL, 't' },
		{ "mix", required_argument, NULL, 'm' },
		{ "sse-events", required_argument, NULL, 'e' },
		{ "sse-delay-ms", required_argument, NULL, 'D' },
		{ "sse-cancel-pct", required_argument, NULL, 'x' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "ramp-ms", required_argument, NULL, 'r' },
		{ "drain-ms", required_argument, NULL, 'w' },
		{ "burst-ms", required_argument, NULL, 'b' },
		{ "burst-think-ms", required_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, have_target = 0;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (set_target(optarg) == -1)
				return -1;
			have_target = 1;
			break;
		case 'a': *ca = optarg; break;
		case 'A':
			if (add_agent(optarg) == -1)
				return -1;
			break;
		case 'n': o_clients = atoi(optarg); break;
		case 'd': o_duration = atoi(optarg); break;
		case 't':
			if (sscanf(optarg, "%d-%d", &o_think_min, &o_think_max) != 2 ||
			    o_think_min < 0 || o_think_max < o_think_min)
				return -1;
			break;
		case 'm':
			if (parse_mix(optarg) == -1)
				return -1;
			break;
		case 'e': o_sse_events = atoi(optarg); break;
		case 'D': o_sse_delay = atoi(optarg); break;
		case 'x': o_sse_cancel = atoi(optarg); break;
		case 'T': o_timeout = atoi(optarg); break;
		case 'r': o_ramp = atoi(optarg); break;
		case 'w': o_drain = atoi(optarg); break;
		case 'b': o_burst_ms = atoi(optarg); break;
		case 'B':
			if (sscanf(optarg, "%d-%d", &o_burst_min, &o_burst_max) != 2 ||
			    o_burst_min < 0 || o_burst_max < o_burst_min)
				return -1;
			break;
		default: return -1;
		}
	}
	if (!have_target || *ca == NULL || nagents == 0 || o_clients < 1 || o_duration < 1 ||
	    o_sse_events < 2 || o_timeout < 1 || o_ramp < 0)
		return -1;
	return 0;
}

static void
slots_init(void)
{
	int i, m, acc, pick;

	for (i = 0; i < nslots; i++) {
		struct slot *s = &slots[i];

		s->idx = i;
		s->ag = &agents[i % nagents];
		/* spread the modes evenly over slots (and so over agents) */
		pick = (int)(((long)i * 100 + 50) / nslots);
		for (m = 0, acc = 0; m < M_COUNT; m++) {
			acc += o_mix[m];
			if (pick < acc)
				break;
		}
		s->mode = m < M_COUNT ? (enum mode)m : M_KEEP;
		s->timer = evtimer_new(base, timer_cb, s);
		s->deadline = evtimer_new(base, deadline_cb, s);
		s->state = S_IDLE;
		arm(s->timer, o_ramp ? rnd_range(0, o_ramp) : 0);
	}
	active_slots = nslots;
}

int
main(int argc, char **argv)
{
	const char *ca = NULL;
	struct event *stop_ev, *drain_ev;
	struct timeval dur;
	int i;

	if (parse_opts(argc, argv, &ca) == -1) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	rng_state ^= (unsigned)getpid();
	for (i = 0; i < nagents; i++)
		if (agent_ctx(&agents[i], ca) == -1)
			return 2;
	if ((base = event_base_new()) == NULL)
		return 2;
	nslots = o_clients;
	if ((slots = calloc((size_t)nslots, sizeof(*slots))) == NULL)
		return 2;
	if (o_burst_ms > 0)
		burst_until = now_ms() + o_burst_ms;
	slots_init();
	drain_ev = evtimer_new(base, drain_cb, NULL);
	stop_ev = evtimer_new(base, stop_cb, drain_ev);
	dur.tv_sec = o_duration;
	dur.tv_usec = 0;
	evtimer_add(stop_ev, &dur);
	event_base_dispatch(base);
	report();
	for (i = 0; i < nslots; i++) {
		slot_close(&slots[i], 1);
		event_free(slots[i].timer);
		event_free(slots[i].deadline);
		SSL_SESSION_free(slots[i].sess);
	}
	free(slots);
	event_free(stop_ev);
	event_free(drain_ev);
	event_base_free(base);
	for (i = 0; i < nagents; i++)
		SSL_CTX_free(agents[i].ctx);
	return st.errors == 0 ? 0 : 1;
}
