/* Unit tests for src/http.c: valid requests, pipelining, chunked bodies, the framing
 * attacks the reader must refuse, header limits, responses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http.h"

struct rec {
	int begins, heads, completes;
	char body[4096];
	size_t blen;
	char url[256];
	char method[16];
	char host[64];
	long long cl;
	int chunked, keep_alive, status;
	int pause;
};

static int
on_begin(void *arg)
{
	((struct rec *)arg)->begins++;
	return 0;
}

static int
on_headers(void *arg, struct http_msg *m)
{
	struct rec *r = arg;
	const char *h;

	r->heads++;
	if (m->is_request) {
		snprintf(r->url, sizeof(r->url), "%s", m->url);
		snprintf(r->method, sizeof(r->method), "%s", m->method_str);
	}
	h = http_msg_get(m, "host");
	snprintf(r->host, sizeof(r->host), "%s", h ? h : "");
	r->cl = m->content_length;
	r->chunked = m->chunked;
	r->keep_alive = m->keep_alive;
	r->status = m->status;
	return 0;
}

static int
on_body(void *arg, const char *p, size_t n)
{
	struct rec *r = arg;

	if (r->blen + n < sizeof(r->body)) {
		memcpy(r->body + r->blen, p, n);
		r->blen += n;
		r->body[r->blen] = '\0';
	}
	return 0;
}

static int
on_complete(void *arg, struct http_msg *m)
{
	struct rec *r = arg;

	r->completes++;
	return r->pause;
}

static const struct http_cbs cbs = { on_begin, on_headers, on_body, on_complete };

static struct http_reader *
mk(int req, struct rec *r)
{
	struct http_limits lim = { 1024, 20, 100 };

	memset(r, 0, sizeof(*r));
	return http_reader_new(req, &lim, &cbs, r);
}

/* Feeds s (whole, or byte by byte); returns the reader status (0 when ok). */
static int
run(int req, const char *s, int bytewise, struct rec *r)
{
	struct http_reader *hr = mk(req, r);
	size_t i, n = strlen(s);
	int st = 0;

	if (bytewise) {
		for (i = 0; i < n; i++)
			if (http_reader_feed(hr, s + i, 1) < 0) {
				st = http_reader_status(hr);
				break;
			}
	} else if (http_reader_feed(hr, s, n) < 0)
		st = http_reader_status(hr);
	if (st)
		fprintf(stderr, "  (%d %s)\n", st, http_reader_reason(hr));
	http_reader_free(hr);
	return st;
}

static void
test_valid(void)
{
	struct rec r;
	int bw;

	for (bw = 0; bw < 2; bw++) {
		CHECK(run(1, "POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
		    "X-Empty:\r\nX-Pad:  v  \r\n\r\nhello", bw, &r) == 0);
		CHECK(r.completes == 1);
		CHECK_STR(r.url, "/mcp?x=1");
		CHECK_STR(r.method, "POST");
		CHECK_STR(r.host, "a");
		CHECK_STR(r.body, "hello");
		CHECK(r.cl == 5);
		CHECK(r.keep_alive == 1);
	}
	CHECK(run(1, "GET / HTTP/1.0\r\n\r\n", 0, &r) == 0);
	CHECK(r.completes == 1 && r.keep_alive == 0 && r.cl == -1);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0, &r) == 0);
	CHECK(r.keep_alive == 0);
	/* leading empty line tolerated */
	CHECK(run(1, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, &r) == 0);
	CHECK(r.completes == 1);
}

static void
test_chunked(void)
{
	struct rec r;
	int bw;

	for (bw = 0; bw < 2; bw++) {
		CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-X: y\r\n\r\n", bw, &r) == 0);
		CHECK(r.completes == 1 && r.chunked == 1);
		CHECK_STR(r.body, "abcde");
	}
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\nabc\r\n0\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3\r\nabcd\r\n0\r\n\r\n", 0, &r) == 400);
	/* body limit while streaming (limit 100) */
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "70\r\n" "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789\r\n0\r\n\r\n", 0, &r) == 413);
}

static void
test_pipelined(void)
{
	struct rec r;
	struct http_reader *hr = mk(1, &r);
	const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 2\r\n\r\nxyGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s), off = 0;
	ssize_t k;
	int rounds = 0;

	r.pause = 1;
	while (off < n && rounds++ < 10) {
		k = http_reader_feed(hr, s + off, n - off);
		CHECK(k > 0);
		if (k <= 0)
			break;
		off += (size_t)k;
		CHECK(http_reader_paused(hr));
		http_reader_resume(hr);
		if (rounds == 1)
			CHECK_STR(r.url, "/a");
		if (rounds == 2)
			CHECK_STR(r.body, "xy");
	}
	CHECK(r.completes == 3);
	CHECK_STR(r.url, "/c");
	http_reader_free(hr);
}

static void
test_attacks(void)
{
	struct rec r;
	char big[2048];

	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 3\r\n\r\n0\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	    "Content-Length: 3\r\n\r\nabc", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	    "Content-Length: 4\r\n\r\nabcd", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 0, &r) == 0); /* strlen stops */
	{
		struct http_limits lim = { 1024, 20, 100 };
		struct http_reader *hr = http_reader_new(1, &lim, &cbs, &r);
		const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";

		CHECK(http_reader_feed(hr, s, sizeof(s) - 1) == -1);
		CHECK(http_reader_status(hr) == 400);
		http_reader_free(hr);
	}
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET /\r\n\r\n", 0, &r) == 400);
	/* refused as soon as the request line ends, not when headers would end */
	CHECK(run(1, "GET /\r\n", 0, &r) == 400);
	CHECK(run(1, "GET /mcp\r\n", 1, &r) == 400);
	CHECK(run(1, "GET / HTTP/1\r\n", 0, &r) == 400);
	CHECK(run(1, "GET /HTTP/1.1\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\n\r\n", 0, &r) == 400);          /* no Host */
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 0, &r) == 400);
	CHECK(run(1, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
	    0, &r) == 400);
	CHECK(run(1, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 0, &r) == 413);
	/* absurd request line (limit 8192 > max header bytes 1024 here -> 431) */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	big[sizeof(big) - 1] = '\0';
	CHECK(run(1, big, 0, &r) == 431);
}

static void
test_limits(void)
{
	struct rec r;
	char buf[4096];
	size_t off;
	int i;

	off = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 0; i < 25; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "X-%d: 1\r\n", i);
	snprintf(buf + off, sizeof(buf) - off, "\r\n");
	CHECK(run(1, buf, 0, &r) == 431);
	CHECK(run(1, buf, 1, &r) == 431);
	off = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
	memset(buf + off, 'v', 1100);
	strcpy(buf + off + 1100, "\r\n\r\n");
	CHECK(run(1, buf, 0, &r) == 431);
	/* a big request line with a big limit -> 400 */
	{
		struct http_limits lim = { 65536, 20, 100 };
		char *s = malloc(HTTP_MAX_REQUEST_LINE + 100);
		struct http_reader *hr = http_reader_new(1, &lim, &cbs, &r);

		memset(s, 'a', HTTP_MAX_REQUEST_LINE + 99);
		memcpy(s, "GET /", 5);
		CHECK(http_reader_feed(hr, s, HTTP_MAX_REQUEST_LINE + 99) == -1);
		CHECK(http_reader_status(hr) == 400);
		http_reader_free(hr);
		free(s);
	}
}

static void
test_response(void)
{
	struct rec r;
	struct http_reader *hr;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-eof";

	CHECK(run(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, &r) == 0);
	CHECK(r.status == 200 && r.completes == 1 && r.keep_alive == 1);
	CHECK_STR(r.body, "ok");
	CHECK(run(0, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 1, &r) == 0);
	CHECK(r.completes == 2 && r.status == 204);
	CHECK(run(0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 1, &r) == 0);
	CHECK(r.completes == 1 && r.chunked);
	CHECK_STR(r.body, "hello");
	CHECK(run(0, "HTTP/1.1 abc\r\n\r\n", 0, &r) == 502);

	hr = mk(0, &r);
	CHECK(http_reader_feed(hr, s, strlen(s)) == (ssize_t)strlen(s));
	CHECK(r.completes == 0 && r.keep_alive == 0);
	CHECK(http_reader_eof(hr) == 0);
	CHECK(r.completes == 1);
	CHECK_STR(r.body, "until-eof");
	http_reader_free(hr);

	hr = mk(0, &r);
	s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
	CHECK(http_reader_feed(hr, s, strlen(s)) == (ssize_t)strlen(s));
	CHECK(http_reader_eof(hr) == -1);
	CHECK(r.completes == 0);
	http_reader_free(hr);
}

static void
test_names(void)
{
	CHECK(http_name_eq("X-Agent-Id", "x-agent-id"));
	CHECK(http_name_eq("X_AGENT_ID", "x-agent-id"));
	CHECK(!http_name_eq("X-Agent-Ids", "x-agent-id"));
	CHECK(!http_name_eq("X-Agent", "x-agent-id"));
	CHECK_STR(http_status_text(431), "Request Header Fields Too Large");
}

int
main(void)
{
	test_valid();
	test_chunked();
	test_pipelined();
	test_attacks();
	test_limits();
	test_response();
	test_names();
	CHECK_DONE();
}
