/* HTTP/1.1 message reader.
 *
 * Why http_parser (Debian's libhttp-parser): it is a proven parser, used by Node.js
 * for about a decade and fuzzed and attacked at that scale, it is packaged by Debian
 * (libhttp-parser-dev, security-supported), it is callback-driven and incremental so
 * bodies stream without copies, and its successor llhttp is not packaged in Debian 12.
 * Writing our own HTTP/1.1 parser for a security gateway would be the riskier choice.
 *
 * http_parser is lenient in a few places that matter for a proxy (request smuggling
 * and header injection), so the reader adds its own strict layer:
 * - a byte scanner over every message head, before http_parser sees it: NUL, bare CR,
 *   bare LF, obs-fold (continuation lines), over-long request lines and heads larger
 *   than max_header_bytes are refused;
 * - at headers-complete: HTTP/1.0 and 1.1 only (HTTP/0.9 and the HTTP/2 preface
 *   "PRI * HTTP/2.0" are refused), at most one Content-Length (even two equal ones are
 *   refused), never Content-Length together with Transfer-Encoding, Transfer-Encoding
 *   must be exactly "chunked", exactly one Host (HTTP/1.1), no Upgrade;
 * - header count and body size limits (431 / 413).
 * Malformed chunk sizes and other syntax errors are http_parser's own errors (400).
 * Trailers of chunked bodies are parsed and dropped. */
#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "log.h"

struct hdr_ent {
	size_t n_off, v_off;
};

struct http_reader {
	http_parser p;
	http_parser_settings s;
	int is_request;
	struct http_limits lim;
	struct http_cbs cbs;
	void *arg;

	/* head scanner (per message) */
	int in_head;
	size_t head_bytes;
	size_t line_len;
	unsigned line_no;
	int prev_cr;
	char line0_tail[9];         /* last bytes of the request line: " HTTP/1.1" */

	/* head storage: one arena, offsets until headers complete */
	char *buf;
	size_t len, cap;
	struct hdr_ent *ent;
	size_t nent, capent;
	int hstate;                 /* 0 none, 1 in name, 2 in value */
	int url_started, url_done;
	size_t url_off;
	int in_body;                /* after headers complete: trailers are ignored */
	int in_msg;
	struct http_header *h;
	size_t caph;
	struct http_msg msg;
	long long body_bytes;

	int user_paused;
	int dead;
	int status;
	const char *reason;
};

static int
http_fail(struct http_reader *r, int status, const char *reason)
{
	if (r->reason == NULL) {
		r->status = status;
		r->reason = reason;
	}
	return -1;
}

static int
http_arena_add(struct http_reader *r, const char *p, size_t n)
{
	char *nb;
	size_t ncap;

	if (r->len + n + 1 > r->cap) {
		ncap = r->cap ? r->cap : 1024;
		while (ncap < r->len + n + 1)
			ncap *= 2;
		if ((nb = realloc(r->buf, ncap)) == NULL)
			return http_fail(r, 500, "out of memory");
		r->buf = nb;
		r->cap = ncap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return 0;
}

static int
http_arena_nul(struct http_reader *r)
{
	return http_arena_add(r, "", 1);
}

static void
http_head_reset(struct http_reader *r)
{
	r->in_head = 1;
	r->head_bytes = 0;
	r->line_len = 0;
	r->line_no = 0;
	r->prev_cr = 0;
	memset(r->line0_tail, 0, sizeof(r->line0_tail));
}

static void
http_msg_reset(struct http_reader *r)
{
	r->len = 0;
	r->nent = 0;
	r->hstate = 0;
	r->url_started = r->url_done = 0;
	r->url_off = 0;
	r->in_body = 0;
	r->body_bytes = 0;
	memset(&r->msg, 0, sizeof(r->msg));
	r->msg.content_length = -1;
	r->msg.is_request = r->is_request;
}

/* 1 when the request line seen so far ends with " HTTP/d.d". */
static int
http_version_tail(const struct http_reader *r)
{
	const char *t = r->line0_tail;

	return r->line_len >= sizeof(r->line0_tail) && memcmp(t, " HTTP/", 6) == 0 &&
	    t[6] >= '0' && t[6] <= '9' && t[7] == '.' && t[8] >= '0' && t[8] <= '9';
}

/* Scans head bytes; returns how many belong to the head (all of n, or up to and
 * including the LF that ends it), or -1 on a violation. */
static ssize_t
http_scan_head(struct http_reader *r, const char *p, size_t n)
{
	size_t i;
	unsigned char ch;

	for (i = 0; i < n; i++) {
		ch = (unsigned char)p[i];
		if (++r->head_bytes > r->lim.max_header_bytes)
			return http_fail(r, 431, "header section too large");
		if (ch == '\0')
			return http_fail(r, 400, "NUL in header section");
		if (r->prev_cr) {
			if (ch != '\n')
				return http_fail(r, 400, "bare CR in header section");
			r->prev_cr = 0;
			/* http_parser reads "GET /" + CRLF as HTTP/0.9 and then waits for
			 * headers: refuse it when its line ends, not at the header timeout. */
			if (r->is_request && r->line_no == 0 && r->line_len > 0 &&
			    !http_version_tail(r))
				return http_fail(r, 400, "request line without HTTP/1.x version");
			if (r->line_len == 0 && r->line_no > 0) {
				r->in_head = 0;
				return i + 1;
			}
			if (r->line_len > 0)
				r->line_no++;
			r->line_len = 0;
			continue;
		}
		if (ch == '\r') {
			r->prev_cr = 1;
			continue;
		}
		if (ch == '\n')
			return http_fail(r, 400, "bare LF in header section");
		if (r->line_len == 0 && r->line_no > 0 && (ch == ' ' || ch == '\t'))
			return http_fail(r, 400, "obsolete line folding in header");
		r->line_len++;
		if (r->line_no == 0) {
			if (r->line_len > HTTP_MAX_REQUEST_LINE)
				return http_fail(r, 400, "request line too long");
			memmove(r->line0_tail, r->line0_tail + 1, sizeof(r->line0_tail) - 1);
			r->line0_tail[sizeof(r->line0_tail) - 1] = (char)ch;
		}
	}
	return n;
}

static int
http_cb_begin(http_parser *p)
{
	struct http_reader *r = p->data;

	http_msg_reset(r);
	r->in_msg = 1;
	if (r->cbs.on_begin && r->cbs.on_begin(r->arg) != 0)
		return http_fail(r, 0, "aborted");
	return 0;
}

static int
http_cb_url(http_parser *p, const char *at, size_t n)
{
	struct http_reader *r = p->data;

	if (!r->url_started) {
		r->url_started = 1;
		r->url_off = r->len;
	}
	return http_arena_add(r, at, n);
}

static int
http_end_url(struct http_reader *r)
{
	if (r->url_done)
		return 0;
	r->url_done = 1;
	if (!r->url_started) {
		r->url_started = 1;
		r->url_off = r->len;
	}
	return http_arena_nul(r);
}

static int
http_end_value(struct http_reader *r)
{
	size_t start = r->ent[r->nent - 1].v_off;

	while (r->len > start && (r->buf[r->len - 1] == ' ' || r->buf[r->len - 1] == '\t'))
		r->len--;
	return http_arena_nul(r);
}

static int
http_cb_field(http_parser *p, const char *at, size_t n)
{
	struct http_reader *r = p->data;
	struct hdr_ent *ne;
	size_t ncap;

	if (r->in_body)
		return 0;               /* trailer: dropped */
	if (r->hstate != 1) {
		if (r->hstate == 0 && http_end_url(r) == -1)
			return -1;
		if (r->hstate == 2 && http_end_value(r) == -1)
			return -1;
		if (r->nent + 1 > r->lim.max_header_count)
			return http_fail(r, 431, "too many header fields");
		if (r->nent == r->capent) {
			ncap = r->capent ? r->capent * 2 : 32;
			if ((ne = reallocarray(r->ent, ncap, sizeof(*ne))) == NULL)
				return http_fail(r, 500, "out of memory");
			r->ent = ne;
			r->capent = ncap;
		}
		r->ent[r->nent].n_off = r->len;
		r->ent[r->nent].v_off = 0;
		r->nent++;
		r->hstate = 1;
	}
	return http_arena_add(r, at, n);
}

static int
http_cb_value(http_parser *p, const char *at, size_t n)
{
	struct http_reader *r = p->data;

	if (r->in_body)
		return 0;
	if (r->hstate == 1) {
		if (http_arena_nul(r) == -1)
			return -1;
		r->ent[r->nent - 1].v_off = r->len;
		r->hstate = 2;
	}
	return http_arena_add(r, at, n);
}

const char *
http_msg_get(const struct http_msg *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nh; i++)
		if (strcasecmp(m->h[i].name, name) == 0)
			return m->h[i].value;
	return NULL;
}

size_t
http_msg_count(const struct http_msg *m, const char *name)
{
	size_t i, n = 0;

	for (i = 0; i < m->nh; i++)
		if (strcasecmp(m->h[i].name, name) == 0)
			n++;
	return n;
}

/* RFC 9110 token characters; Debian builds http_parser non-strict, which lets
 * spaces and other separators into field names. */
static int
http_valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return 0;
	return 1;
}

/* Control characters other than HTAB are refused (obs-text >= 0x80 is allowed). */
static int
http_valid_value(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return 0;
	return 1;
}

static int
http_build_headers(struct http_reader *r)
{
	struct http_header *nh;
	size_t i;

	if (r->hstate == 0 && http_end_url(r) == -1)
		return -1;
	if (r->hstate == 1) {
		if (http_arena_nul(r) == -1)
			return -1;
		r->ent[r->nent - 1].v_off = r->len;
		r->hstate = 2;
	}
	if (r->hstate == 2 && http_end_value(r) == -1)
		return -1;
	r->hstate = 0;
	if (r->nent > r->caph) {
		if ((nh = reallocarray(r->h, r->nent, sizeof(*nh))) == NULL)
			return http_fail(r, 500, "out of memory");
		r->h = nh;
		r->caph = r->nent;
	}
	/* the arena does not grow any more for this message: pointers are stable */
	for (i = 0; i < r->nent; i++) {
		r->h[i].name = r->buf + r->ent[i].n_off;
		r->h[i].value = r->buf + r->ent[i].v_off;
		if (!http_valid_name(r->h[i].name))
			return http_fail(r, r->is_request ? 400 : 502, "invalid header name");
		if (!http_valid_value(r->h[i].value))
			return http_fail(r, r->is_request ? 400 : 502, "invalid header value");
	}
	r->msg.h = r->h;
	r->msg.nh = r->nent;
	if (r->is_request)
		r->msg.url = r->buf + r->url_off;
	return 0;
}

static int
http_parse_length(const char *v, long long *out)
{
	long long n = 0;

	if (*v == '\0')
		return -1;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		if (n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*v - '0');
	}
	*out = n;
	return 0;
}

/* The smuggling rules; see the comment at the top. */
static int
http_check_framing(struct http_reader *r)
{
	struct http_msg *m = &r->msg;
	size_t ncl, nte;
	const char *cl, *te;

	if (m->major != 1 || m->minor > 1)
		return http_fail(r, 400, "unsupported HTTP version");
	ncl = http_msg_count(m, "Content-Length");
	nte = http_msg_count(m, "Transfer-Encoding");
	if (ncl > 1)
		return http_fail(r, 400, "duplicate Content-Length");
	if (nte > 1)
		return http_fail(r, 400, "duplicate Transfer-Encoding");
	if (ncl && nte)
		return http_fail(r, 400, "both Content-Length and Transfer-Encoding");
	if ((cl = http_msg_get(m, "Content-Length")) != NULL &&
	    http_parse_length(cl, &m->content_length) == -1)
		return http_fail(r, 400, "invalid Content-Length");
	if ((te = http_msg_get(m, "Transfer-Encoding")) != NULL) {
		if (r->is_request && strcasecmp(te, "chunked") != 0)
			return http_fail(r, 400, "unsupported Transfer-Encoding");
	}
	m->chunked = (r->p.flags & F_CHUNKED) != 0;
	if (!r->is_request)
		return 0;
	for (te = m->url; *te; te++)
		if ((unsigned char)*te <= 0x20 || (unsigned char)*te >= 0x7f)
			return http_fail(r, 400, "invalid character in request target");
	if (m->url[0] == '\0')
		return http_fail(r, 400, "empty request target");
	if (http_msg_count(m, "Host") > 1 || (m->minor == 1 && http_msg_count(m, "Host") != 1))
		return http_fail(r, 400, "missing or duplicate Host");
	if (r->p.upgrade)
		return http_fail(r, 400, "protocol upgrade not supported");
	if (r->lim.max_body_bytes >= 0 && m->content_length > r->lim.max_body_bytes)
		return http_fail(r, 413, "request body too large");
	return 0;
}

static int
http_cb_headers(http_parser *p)
{
	struct http_reader *r = p->data;
	struct http_msg *m = &r->msg;
	int rv;

	if (http_build_headers(r) == -1)
		return -1;
	m->major = p->http_major;
	m->minor = p->http_minor;
	m->head_bytes = r->head_bytes;
	if (r->is_request) {
		m->method = p->method;
		m->method_str = http_method_str(p->method);
	} else {
		m->status = p->status_code;
		if (m->status == 101)
			return http_fail(r, 502, "unexpected protocol switch");
	}
	if (http_check_framing(r) == -1)
		return -1;
	m->keep_alive = http_should_keep_alive(p);
	r->in_body = 1;
	if (r->cbs.on_headers == NULL)
		return 0;
	rv = r->cbs.on_headers(r->arg, m);
	if (rv < 0)
		return http_fail(r, 0, "aborted");
	return rv == 1 ? 1 : 0;
}

static int
http_cb_body(http_parser *p, const char *at, size_t n)
{
	struct http_reader *r = p->data;

	r->body_bytes += (long long)n;
	if (r->is_request && r->lim.max_body_bytes >= 0 && r->body_bytes > r->lim.max_body_bytes)
		return http_fail(r, 413, "request body too large");
	if (r->cbs.on_body && r->cbs.on_body(r->arg, at, n) != 0)
		return http_fail(r, 0, "aborted");
	return 0;
}

static int
http_cb_complete(http_parser *p)
{
	struct http_reader *r = p->data;
	int rv = 0;

	r->msg.keep_alive = http_should_keep_alive(p);
	r->in_msg = 0;
	if (r->cbs.on_complete)
		rv = r->cbs.on_complete(r->arg, &r->msg);
	if (rv < 0)
		return http_fail(r, 0, "aborted");
	if (rv == 1)
		r->user_paused = 1;
	/* Always stop here so the head scanner sees the next message from its start. */
	http_parser_pause(p, 1);
	http_head_reset(r);
	return 0;
}

struct http_reader *
http_reader_new(int is_request, const struct http_limits *lim, const struct http_cbs *cbs,
    void *arg)
{
	struct http_reader *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	http_parser_init(&r->p, is_request ? HTTP_REQUEST : HTTP_RESPONSE);
	r->p.data = r;
	http_parser_settings_init(&r->s);
	r->s.on_message_begin = http_cb_begin;
	r->s.on_url = http_cb_url;
	r->s.on_header_field = http_cb_field;
	r->s.on_header_value = http_cb_value;
	r->s.on_headers_complete = http_cb_headers;
	r->s.on_body = http_cb_body;
	r->s.on_message_complete = http_cb_complete;
	r->is_request = is_request;
	r->lim = *lim;
	if (r->lim.max_header_bytes == 0)
		r->lim.max_header_bytes = 16384;
	if (r->lim.max_header_count == 0)
		r->lim.max_header_count = 100;
	if (cbs)
		r->cbs = *cbs;
	r->arg = arg;
	http_head_reset(r);
	http_msg_reset(r);
	return r;
}

void
http_reader_free(struct http_reader *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	free(r->ent);
	free(r->h);
	free(r);
}

static ssize_t
http_parser_error(struct http_reader *r)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&r->p);

	r->dead = 1;
	if (r->reason)
		return -1;
	if (e == HPE_HEADER_OVERFLOW)
		return http_fail(r, 431, "header section too large");
	return http_fail(r, r->is_request ? 400 : 502, http_errno_description(e));
}

ssize_t
http_reader_feed(struct http_reader *r, const char *p, size_t n)
{
	size_t off = 0, k;
	ssize_t seg;
	enum http_errno e;

	if (r->dead)
		return -1;
	while (off < n) {
		if (r->user_paused)
			break;
		seg = n - off;
		if (r->in_head && (seg = http_scan_head(r, p + off, n - off)) == -1) {
			r->dead = 1;
			return -1;
		}
		k = http_parser_execute(&r->p, &r->s, p + off, seg);
		off += k;
		e = HTTP_PARSER_ERRNO(&r->p);
		if (e == HPE_PAUSED) {
			http_parser_pause(&r->p, 0);
			continue;
		}
		if (e != HPE_OK || r->reason)
			return http_parser_error(r);
		if (r->p.upgrade && k < (size_t)seg)
			return http_parser_error(r);
	}
	return off;
}

int
http_reader_eof(struct http_reader *r)
{
	if (r->dead)
		return -1;
	if (!r->in_msg)
		return 0;
	http_parser_execute(&r->p, &r->s, NULL, 0);
	if (HTTP_PARSER_ERRNO(&r->p) == HPE_PAUSED)
		http_parser_pause(&r->p, 0);
	else if (HTTP_PARSER_ERRNO(&r->p) != HPE_OK)
		r->dead = 1;
	return r->in_msg ? -1 : 0;
}

void
http_reader_resume(struct http_reader *r)
{
	r->user_paused = 0;
}

int
http_reader_paused(const struct http_reader *r)
{
	return r->user_paused;
}

int
http_reader_status(const struct http_reader *r)
{
	return r->status;
}

const char *
http_reader_reason(const struct http_reader *r)
{
	return r->reason ? r->reason : "ok";
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default:
		return http_status_str((enum http_status)status);
	}
}

int
http_name_eq(const char *a, const char *b)
{
	unsigned char x, y;

	for (;; a++, b++) {
		x = (unsigned char)tolower((unsigned char)*a);
		y = (unsigned char)tolower((unsigned char)*b);
		if (x == '_')
			x = '-';
		if (y == '_')
			y = '-';
		if (x != y)
			return 0;
		if (x == '\0')
			return 1;
	}
}
