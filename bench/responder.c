/* responder: a minimal, fast HTTP/1.1 keep-alive upstream for benchmarks.
 *
 * Answers every request (any method, any path) with 200 and a small JSON-RPC result
 * with Content-Length, echoing the request's JSON-RPC id when it finds one, so the
 * upstream is never the bottleneck of a gateway benchmark. No TLS. Pipelined
 * requests are answered in order. Bodies are found through Content-Length only
 * (a chunked request body is refused with 411 and the connection closed).
 *
 * usage: responder [--listen HOST:PORT] [--threads N] [--quiet]
 * Prints "responder listening on HOST:PORT" on stdout once bound. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define RSP_MAX_HEAD 16384

struct rsp_worker {
	struct event_base *base;
	struct evconnlistener *lst;
	pthread_t tid;
};

static int rsp_quiet;

/* Length of the JSON-RPC id token in body (a number or a short string), or 0. */
static size_t
rsp_find_id(const char *body, size_t len, const char **idp)
{
	const char *p, *end = body + len;
	size_t n;

	p = memmem(body, len, "\"id\"", 4);
	if (p == NULL)
		return 0;
	p += 4;
	while (p < end && (*p == ' ' || *p == ':' || *p == '\t'))
		p++;
	if (p >= end)
		return 0;
	*idp = p;
	if (*p == '"') {
		for (n = 1; p + n < end && p[n] != '"' && n < 64; n++)
			;
		if (p + n >= end || p[n] != '"')
			return 0;
		return n + 1;
	}
	for (n = 0; p + n < end && n < 32 &&
	    (p[n] == '-' || (p[n] >= '0' && p[n] <= '9')); n++)
		;
	return n;
}

/* Content-Length of the header block head[0..hlen), -1 when chunked, 0 when absent. */
static long
rsp_content_length(const char *head, size_t hlen)
{
	const char *p = head, *end = head + hlen, *eol;

	while (p < end) {
		eol = memchr(p, '\n', end - p);
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
			return strtol(p + 15, NULL, 10);
		if ((size_t)(eol - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0)
			return -1;
		p = eol + 1;
	}
	return 0;
}

static void
rsp_reply(struct evbuffer *out, const char *body, size_t blen)
{
	const char *id = "null";
	size_t idlen;
	char resp[512];
	int n;

	idlen = rsp_find_id(body, blen, &id);
	if (idlen == 0) {
		id = "null";
		idlen = 4;
	}
	n = snprintf(resp, sizeof(resp),
	    "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"result\":{\"content\":[{\"type\":\"text\","
	    "\"text\":\"ok\"}],\"isError\":false}}", (int)idlen, id);
	evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: %d\r\n\r\n", n);
	evbuffer_add(out, resp, n);
}

static void
rsp_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(bev);
	struct evbuffer_ptr pos;
	size_t hlen, avail;
	long clen;
	char *data;

	for (;;) {
		avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (pos.pos < 0) {
			if (avail > RSP_MAX_HEAD)
				goto fail;
			return;
		}
		hlen = pos.pos + 4;
		data = (char *)evbuffer_pullup(in, hlen);
		clen = rsp_content_length(data, hlen);
		if (clen < 0) {
			evbuffer_add_printf(out, "HTTP/1.1 411 Length Required\r\n"
			    "Content-Length: 0\r\nConnection: close\r\n\r\n");
			goto fail;
		}
		if (avail < hlen + (size_t)clen)
			return;
		data = (char *)evbuffer_pullup(in, hlen + clen);
		rsp_reply(out, data + hlen, clen);
		evbuffer_drain(in, hlen + clen);
	}
fail:
	bufferevent_free(bev);
}

static void
rsp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void
rsp_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct event_base *base = evconnlistener_get_base(l);
	struct bufferevent *bev;
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, rsp_read_cb, NULL, rsp_event_cb, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void *
rsp_run(void *arg)
{
	struct rsp_worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

static int
rsp_parse_listen(const char *s, struct sockaddr_in *sin)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	size_t hl;

	if (colon == NULL)
		return -1;
	hl = colon - s;
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(atoi(colon + 1));
	if (strcmp(host, "localhost") == 0 || hl == 0)
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

static void
rsp_usage(FILE *f)
{
	fprintf(f, "usage: responder [--listen HOST:PORT] [--threads N] [--quiet]\n"
	    "Minimal HTTP/1.1 keep-alive upstream for benchmarks: answers every request\n"
	    "with 200 and a small JSON-RPC result (Content-Length). Default listen\n"
	    "127.0.0.1:3001, 1 thread (SO_REUSEPORT listeners when more).\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = "127.0.0.1:3001";
	struct rsp_worker *w;
	struct sockaddr_in sin;
	int c, i, nthreads = 1;
	unsigned flags;

	while ((c = getopt_long(argc, argv, "l:t:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 't': nthreads = atoi(optarg); break;
		case 'q': rsp_quiet = 1; break;
		case 'h': rsp_usage(stdout); return 0;
		default: rsp_usage(stderr); return 2;
		}
	}
	if (nthreads < 1 || nthreads > 64 || rsp_parse_listen(listen, &sin) == -1) {
		rsp_usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	w = calloc(nthreads, sizeof(*w));
	if (w == NULL)
		return 1;
	flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;
	if (nthreads > 1)
		flags |= LEV_OPT_REUSEABLE_PORT;
	for (i = 0; i < nthreads; i++) {
		w[i].base = event_base_new();
		if (w[i].base == NULL)
			return 1;
		w[i].lst = evconnlistener_new_bind(w[i].base, rsp_accept_cb, NULL, flags,
		    1024, (struct sockaddr *)&sin, sizeof(sin));
		if (w[i].lst == NULL) {
			fprintf(stderr, "responder: bind %s: %s\n", listen, strerror(errno));
			return 1;
		}
	}
	if (!rsp_quiet)
		printf("responder listening on %s\n", listen);
	fflush(stdout);
	for (i = 1; i < nthreads; i++)
		pthread_create(&w[i].tid, NULL, rsp_run, &w[i]);
	rsp_run(&w[0]);
	return 0;
}
