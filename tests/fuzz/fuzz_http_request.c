/* Fuzz target: the client request path of the gateway up to the identity check.
 * The input is a byte stream from a client connection, fed to a request reader
 * with the gateway's default limits the way proxy.c drives it (pause after every
 * complete request, resume, feed the rest) in several chunkings: whole, split at an
 * offset taken from the input, chunk sizes taken from the input, and byte by byte
 * for small inputs. Every chunking must give the same transcript (requests seen,
 * their heads and bodies, error or not): a reader whose view of the framing depends
 * on how TCP cut the stream is a request smuggling bug. The heads are checked the
 * way proxy.c checks them before the identity lookup. A last pass with tiny limits
 * reaches the 413/431 paths, and one reads the input as an upstream response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "mcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the gateway's defaults (config.c, proxy.c px_reader) */
#define GW_HEADER_BYTES 16384
#define GW_HEADER_COUNT 100
#define GW_BODY_BYTES (4LL * 1024 * 1024)
#define BYTEWISE_MAX 4096

struct run {
	struct http_limits lim;
	int is_request;
	size_t input;           /* bytes in the whole input */
	const char *chunk;      /* the slice being fed, for pointer checks */
	size_t chunklen;

	int in_msg;
	size_t begins, completes;
	long long msg_body;     /* body bytes of the current message */
	long long body_total;   /* body bytes over all messages */
	uint64_t body_hash;     /* of the current message */
	uint64_t transcript;    /* of every completed message */
	long long cl;           /* content_length seen at headers */
	int chunked;
	int no_body;            /* response mode: on_headers returned 1 */
	int failed;
	int status;
	int eof;
};

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n-- > 0)
		h = (h ^ *b++) * 0x100000001b3ULL;
	return h;
}

static uint64_t
fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s) + 1);
}

static int
on_begin(void *arg)
{
	struct run *r = arg;

	if (r->in_msg)
		abort();
	r->in_msg = 1;
	r->begins++;
	r->msg_body = 0;
	r->body_hash = 0xcbf29ce484222325ULL;
	r->cl = -1;
	r->chunked = 0;
	r->no_body = 0;
	return 0;
}

static int
has_ctl(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return 1;
	return 0;
}

/* What proxy.c px_check_headers/rq_headers look at, minus the token and state. */
static void
gateway_checks(const struct http_msg *m)
{
	static const char *const once[] = { "Mcp-Session-Id", "Mcp-Method", "Mcp-Name",
	    "MCP-Protocol-Version", "Content-Type", "Host", "Expect", NULL };
	const char *v;
	size_t i, n;

	for (i = 0; once[i]; i++) {
		n = http_msg_count(m, once[i]);
		v = http_msg_get(m, once[i]);
		if ((n == 0) != (v == NULL))
			abort();
	}
	if ((v = http_msg_get(m, "MCP-Protocol-Version")) != NULL)
		(void)mcp_protocol_version_known(v);
	for (i = 0; i < m->nh; i++) {
		/* a client must not be able to pass headers the gateway sets itself */
		if (http_name_eq(m->h[i].name, "X-Agent-Id") !=
		    http_name_eq("x_agent_id", m->h[i].name))
			abort();
		(void)http_name_eq(m->h[i].name, "X-Forwarded-Client-Cert");
	}
}

static int
on_headers(void *arg, struct http_msg *m)
{
	struct run *r = arg;
	const char *cl;
	size_t i;

	if (!r->in_msg || m->is_request != r->is_request ||
	    (m->h == NULL && m->nh > 0))
		abort();
	if (m->major != 1 || m->minor > 1)
		abort();
	if (m->head_bytes == 0 || m->head_bytes > r->lim.max_header_bytes ||
	    m->nh > r->lim.max_header_count)
		abort();
	for (i = 0; i < m->nh; i++)
		if (m->h[i].name == NULL || m->h[i].value == NULL ||
		    m->h[i].name[0] == '\0' || has_ctl(m->h[i].name) || has_ctl(m->h[i].value))
			abort();
	/* framing: exactly one of CL / TE: chunked / nothing, CL well-formed */
	if (http_msg_count(m, "Content-Length") > 1 ||
	    http_msg_count(m, "Transfer-Encoding") > 1)
		abort();
	cl = http_msg_get(m, "Content-Length");
	if ((cl == NULL) != (m->content_length == -1) || m->content_length < -1)
		abort();
	if (cl != NULL && (m->chunked || http_msg_get(m, "Transfer-Encoding") != NULL))
		abort();
	if (r->is_request) {
		if (m->method_str == NULL || m->url == NULL || m->url[0] == '\0' ||
		    strchr(m->url, ' ') != NULL || has_ctl(m->url))
			abort();
		if (m->chunked != (http_msg_get(m, "Transfer-Encoding") != NULL))
			abort();
		if (r->lim.max_body_bytes >= 0 && m->content_length > r->lim.max_body_bytes)
			abort();
		if (http_msg_count(m, "Host") > 1 ||
		    (m->minor == 1 && http_msg_count(m, "Host") != 1))
			abort();
		gateway_checks(m);
		r->transcript = fnv_str(r->transcript, m->method_str);
		r->transcript = fnv_str(r->transcript, m->url);
	} else
		r->transcript = fnv(r->transcript, &m->status, sizeof(m->status));
	for (i = 0; i < m->nh; i++) {
		r->transcript = fnv_str(r->transcript, m->h[i].name);
		r->transcript = fnv_str(r->transcript, m->h[i].value);
	}
	r->transcript = fnv(r->transcript, &m->minor, sizeof(m->minor));
	r->transcript = fnv(r->transcript, &m->head_bytes, sizeof(m->head_bytes));
	r->cl = m->content_length;
	r->chunked = m->chunked;
	/* response to a HEAD, decided by the input */
	if (!r->is_request && r->input > 0 && r->input % 7 == 0) {
		r->no_body = 1;
		return 1;
	}
	return 0;
}

static int
on_body(void *arg, const char *p, size_t n)
{
	struct run *r = arg;

	if (!r->in_msg || r->no_body || n == 0)
		abort();
	/* bodies are handed over in place, never copied or invented */
	if (p < r->chunk || p + n > r->chunk + r->chunklen)
		abort();
	r->msg_body += (long long)n;
	r->body_total += (long long)n;
	if (r->body_total > (long long)r->input)
		abort();
	if (r->cl >= 0 && r->msg_body > r->cl)
		abort();
	if (r->is_request && r->lim.max_body_bytes >= 0 && r->msg_body > r->lim.max_body_bytes)
		abort();
	r->body_hash = fnv(r->body_hash, p, n);
	return 0;
}

static int
on_complete(void *arg, struct http_msg *m)
{
	struct run *r = arg;

	if (!r->in_msg)
		abort();
	r->in_msg = 0;
	r->completes++;
	/* (responses: 1xx, 204 and 304 have no body whatever they declare) */
	if (r->is_request && r->cl >= 0 && r->msg_body != r->cl)
		abort();
	if (r->is_request && r->cl < 0 && !r->chunked && r->msg_body != 0)
		abort();
	r->transcript = fnv(r->transcript, &r->msg_body, sizeof(r->msg_body));
	r->transcript = fnv(r->transcript, &r->body_hash, sizeof(r->body_hash));
	r->transcript = fnv(r->transcript, &m->keep_alive, sizeof(m->keep_alive));
	return 1;       /* pause: one request at a time, as proxy.c */
}

static const struct http_cbs cbs = { on_begin, on_headers, on_body, on_complete };

/* Feeds one slice like proxy.c px_drive: resume after each complete message. */
static int
feed(struct http_reader *rd, struct run *r, const char *p, size_t n)
{
	size_t off = 0;
	ssize_t k;
	int st;

	while (off < n) {
		r->chunk = p + off;
		r->chunklen = n - off;
		k = http_reader_feed(rd, p + off, n - off);
		if (k < 0) {
			st = http_reader_status(rd);
			/* our callbacks never abort, so 0 cannot come back */
			if (st != 400 && st != 413 && st != 431 && st != 500 &&
			    !(st == 502 && !r->is_request))
				abort();
			if (http_reader_reason(rd) == NULL || http_reader_feed(rd, "x", 1) != -1 ||
			    http_reader_status(rd) != st)
				abort();
			r->failed = 1;
			r->status = st;
			return -1;
		}
		if ((size_t)k > n - off)
			abort();
		off += (size_t)k;
		if (http_reader_paused(rd)) {
			if (r->in_msg)
				abort();
			http_reader_resume(rd);
		} else if (off < n)
			abort();        /* short count without a pause */
	}
	return 0;
}

/* Splits the input at the offsets cuts[0..ncuts) (increasing). */
static void
run_cuts(struct run *r, int is_request, const struct http_limits *lim,
    const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts)
{
	struct http_reader *rd;
	size_t i, from = 0, to;

	memset(r, 0, sizeof(*r));
	r->lim = *lim;
	r->is_request = is_request;
	r->input = size;
	r->transcript = 0xcbf29ce484222325ULL;
	if ((rd = http_reader_new(is_request, lim, &cbs, r)) == NULL)
		abort();
	for (i = 0; i <= ncuts; i++) {
		to = i < ncuts ? cuts[i] : size;
		if (feed(rd, r, (const char *)data + from, to - from) == -1)
			break;
		from = to;
	}
	if (!r->failed) {
		r->eof = http_reader_eof(rd);
		if (!r->in_msg && r->eof != 0)
			abort();
	}
	if (r->begins != r->completes + (r->in_msg ? 1 : 0))
		abort();
	http_reader_free(rd);
}

static void
same(const struct run *a, const struct run *b)
{
	if (a->completes != b->completes || a->transcript != b->transcript ||
	    a->failed != b->failed || (!a->failed && a->eof != b->eof))
		abort();
}

static void
stepped(struct run *r, const struct http_limits *lim, const uint8_t *data, size_t size,
    size_t (*step)(const uint8_t *, size_t, size_t))
{
	static size_t cuts[BYTEWISE_MAX];
	size_t n = 0, pos = 0;

	while (n < BYTEWISE_MAX && (pos += step(data, size, pos)) < size)
		cuts[n++] = pos;
	run_cuts(r, 1, lim, data, size, cuts, n);
}

static size_t
step_one(const uint8_t *data, size_t size, size_t pos)
{
	return 1;
}

static size_t
step_input(const uint8_t *data, size_t size, size_t pos)
{
	return 1 + (data[pos % size] + pos) % 61;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_limits lim = { GW_HEADER_BYTES, GW_HEADER_COUNT, GW_BODY_BYTES };
	struct http_limits tiny = { 200, 6, 24 };
	struct http_limits up = { 65536, 256, -1 };
	struct run whole, other;
	size_t cut;

	run_cuts(&whole, 1, &lim, data, size, NULL, 0);
	if (size > 1) {
		cut = (data[0] | (size_t)data[size - 1] << 8) % size;
		run_cuts(&other, 1, &lim, data, size, &cut, 1);
		same(&whole, &other);
		stepped(&other, &lim, data, size, step_input);
		same(&whole, &other);
	}
	if (size > 1 && size <= BYTEWISE_MAX) {
		stepped(&other, &lim, data, size, step_one);
		same(&whole, &other);
	}
	run_cuts(&other, 1, &tiny, data, size, NULL, 0);
	run_cuts(&other, 0, &up, data, size, NULL, 0);
	return 0;
}
