/* Differential fuzz target for the forwarding path: what reaches the upstream is
 * exactly what the gateway authorized.
 *
 * The input is a client byte stream. It is read with the gateway's request reader
 * and the gateway's HTTP rules (decide.h); every request they let through is framed
 * the way proxy.c frames it (head.h: the gateway's own head, its own Content-Length,
 * the body that was read). The bytes so produced are then parsed twice more, the way
 * upstreams parse: by http_parser without certgate's strict layer, and by a naive
 * parser in the manner of Python's http.server (split at the blank line, read
 * Content-Length bytes, nothing else). Both must see exactly the requests that were
 * authorized, in order, with the same method, target and body, one X-Agent-Id and one
 * Client-Cert (a client's own are never forwarded), and no
 * byte left over: any difference is a request the upstream would run unchecked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "buf.h"
#include "decide.h"
#include "head.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQS 64
#define PREFIX "/mcp"
#define AGENT "fuzz-agent"

struct req {
	unsigned method;
	char *target;
	size_t body_off, body_len;      /* in the authorized-bodies buffer */
};

struct side {
	struct req r[MAX_REQS];
	size_t n;
	struct buf bodies;
	struct buf wire;                /* what the gateway sends upstream */
	/* gateway reader state */
	struct buf body;                /* the request being read */
	int stop;
};

static int
gw_begin(void *arg)
{
	struct side *s = arg;

	buf_reset(&s->body);
	return 0;
}

static int
gw_body(void *arg, const char *p, size_t n)
{
	return buf_add(&((struct side *)arg)->body, p, n);
}

static int
gw_complete(void *arg, struct http_msg *m)
{
	struct side *s = arg;
	struct decide_http dh;
	struct head_ident id = { .agent = AGENT, .scopes = "*", .xfcc = "Hash=00",
	    .client_cert = ":AA==:", .client_cert_chain = ":AQ==:", .peer_ip = "127.0.0.1" };
	struct req *r;

	if (s->n == MAX_REQS) {
		s->stop = 1;
		return 1;
	}
	if (decide_http_request(m, PREFIX, &dh) == -1)
		abort();
	if (dh.status != 0) {
		if (dh.target != NULL)
			abort();        /* a refusal forwards nothing */
		return 1;
	}
	if (m->method != HTTP_POST && s->body.len != 0)
		abort();                /* decide.h: no body on GET/DELETE */
	r = &s->r[s->n++];
	r->method = m->method;
	r->target = dh.target;
	r->body_off = s->bodies.len;
	r->body_len = s->body.len;
	buf_add(&s->bodies, s->body.p, s->body.len);
	if (head_request(&s->wire, m, dh.target, "upstream:1", &id,
	    (long long)s->body.len) == -1)
		abort();
	buf_add(&s->wire, s->body.p, s->body.len);
	return 1;
}

static const struct http_cbs gw_cbs = { gw_begin, NULL, gw_body, gw_complete };

/* ---- the upstream's view, 1: http_parser without certgate's strict layer ---- */

struct up {
	const struct side *s;
	size_t n;                       /* messages seen */
	struct buf url, body, field;
	int agent_ids, client_certs, te, in_value;
	int bad;
};

static int
up_begin(http_parser *p)
{
	struct up *u = p->data;

	buf_reset(&u->url);
	buf_reset(&u->body);
	u->agent_ids = u->client_certs = u->te = 0;
	return 0;
}

static int
up_url(http_parser *p, const char *at, size_t n)
{
	return buf_add(&((struct up *)p->data)->url, at, n);
}

static int
up_field(http_parser *p, const char *at, size_t n)
{
	struct up *u = p->data;

	if (u->in_value) {
		buf_reset(&u->field);
		u->in_value = 0;
	}
	return buf_add(&u->field, at, n);
}

static int
up_value(http_parser *p, const char *at, size_t n)
{
	struct up *u = p->data;

	if (!u->in_value) {
		u->in_value = 1;
		if (strcasecmp(buf_str(&u->field), "X-Agent-Id") == 0)
			u->agent_ids++;
		if (strcasecmp(buf_str(&u->field), "Client-Cert") == 0)
			u->client_certs++;
		if (strcasecmp(buf_str(&u->field), "Transfer-Encoding") == 0)
			u->te++;
	}
	return 0;
}

static int
up_headers(http_parser *p)
{
	struct up *u = p->data;

	u->in_value = 1;        /* the next field starts a new name */
	return 0;
}

static int
up_body(http_parser *p, const char *at, size_t n)
{
	return buf_add(&((struct up *)p->data)->body, at, n);
}

static int
up_complete(http_parser *p)
{
	struct up *u = p->data;
	const struct req *r;

	if (u->n >= u->s->n) {
		u->bad = 1;             /* a request the gateway never authorized */
		return -1;
	}
	r = &u->s->r[u->n++];
	if (p->method != r->method || strcmp(buf_str(&u->url), r->target) != 0 ||
	    u->body.len != r->body_len ||
	    (r->body_len > 0 && memcmp(u->body.p, u->s->bodies.p + r->body_off, r->body_len)) ||
	    u->agent_ids != 1 || u->client_certs != 1 || u->te != 0)
		u->bad = 1;
	return 0;
}

static void
check_http_parser(const struct side *s)
{
	http_parser_settings st;
	http_parser p;
	struct up u;
	size_t k;

	memset(&u, 0, sizeof(u));
	u.s = s;
	buf_init(&u.url);
	buf_init(&u.body);
	buf_init(&u.field);
	http_parser_settings_init(&st);
	st.on_message_begin = up_begin;
	st.on_url = up_url;
	st.on_header_field = up_field;
	st.on_header_value = up_value;
	st.on_headers_complete = up_headers;
	st.on_body = up_body;
	st.on_message_complete = up_complete;
	http_parser_init(&p, HTTP_REQUEST);
	p.data = &u;
	k = http_parser_execute(&p, &st, s->wire.p != NULL ? s->wire.p : "", s->wire.len);
	if (u.bad || k != s->wire.len || HTTP_PARSER_ERRNO(&p) != HPE_OK || u.n != s->n) {
		fprintf(stderr, "upstream http_parser: %zu of %zu requests, %zu of %zu bytes, "
		    "%s, bad %d\n", u.n, s->n, k, s->wire.len,
		    http_errno_name(HTTP_PARSER_ERRNO(&p)), u.bad);
		abort();
	}
	buf_free(&u.url);
	buf_free(&u.body);
	buf_free(&u.field);
}

/* ---- the upstream's view, 2: a naive head/Content-Length splitter ---- */

static void
check_naive(const struct side *s)
{
	const char *p, *end, *eoh, *line, *nl;
	size_t n = 0;
	long long cl;

	if (s->wire.len == 0) {
		if (s->n != 0)
			abort();
		return;
	}
	p = s->wire.p;
	end = p + s->wire.len;

	while (p != NULL && p < end) {
		const struct req *r;
		char method[16];
		const char *sp;

		if ((eoh = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) == NULL)
			abort();
		if (n >= s->n)
			abort();
		r = &s->r[n++];
		/* request line */
		if ((sp = memchr(p, ' ', (size_t)(eoh - p))) == NULL ||
		    (size_t)(sp - p) >= sizeof(method))
			abort();
		memcpy(method, p, (size_t)(sp - p));
		method[sp - p] = '\0';
		if (strcmp(method, http_method_str((enum http_method)r->method)) != 0 ||
		    strncmp(sp + 1, r->target, strlen(r->target)) != 0 ||
		    sp[1 + strlen(r->target)] != ' ')
			abort();
		cl = 0;
		for (line = memchr(p, '\n', (size_t)(eoh - p)); line != NULL && line < eoh;
		    line = nl) {
			line++;
			nl = memchr(line, '\n', (size_t)(eoh + 2 - line));
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				cl = strtoll(line + 15, NULL, 10);
			if (nl == NULL)
				break;
		}
		p = eoh + 4;
		if (cl < 0 || (size_t)cl != r->body_len || (size_t)(end - p) < (size_t)cl ||
		    (cl > 0 && memcmp(p, s->bodies.p + r->body_off, (size_t)cl) != 0))
			abort();
		p += cl;
	}
	if (n != s->n)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_limits lim = { 16384, 100, 65536 };
	struct http_reader *rd;
	struct side s;
	size_t off = 0;
	ssize_t k;

	memset(&s, 0, sizeof(s));
	buf_init(&s.bodies);
	buf_init(&s.wire);
	buf_init(&s.body);
	if ((rd = http_reader_new(1, &lim, &gw_cbs, &s)) == NULL)
		return 0;
	while (off < size && !s.stop) {
		k = http_reader_feed(rd, (const char *)data + off, size - off);
		if (k < 0)
			break;          /* refused and closed: nothing more is forwarded */
		off += (size_t)k;
		if (http_reader_paused(rd))
			http_reader_resume(rd);
	}
	http_reader_free(rd);
	check_http_parser(&s);
	check_naive(&s);
	while (s.n > 0)
		free(s.r[--s.n].target);
	buf_free(&s.bodies);
	buf_free(&s.wire);
	buf_free(&s.body);
	return 0;
}
