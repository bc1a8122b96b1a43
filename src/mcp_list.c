/* MCP listing responses: tools/list, prompts/list, resources/list (and the templates
 * listing) narrowed to what the agent may use, in a buffered JSON body
 * (mcp_filter_json) or event by event in a text/event-stream (mcp_sse_*). Fails
 * closed: a listing that cannot be parsed or filtered becomes a JSON-RPC error, never
 * the unfiltered body. Request inspection is mcp.c's; both implement include/mcp.h. */
#include "mcp.h"

#include "buf.h"
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Default cap on one buffered SSE event when mcp_sse_new gets 0. */
#define MCP_SSE_DEFAULT_MAX (16u * 1024 * 1024)
#define MCP_SSE_TOO_LARGE   "certgate: event too large to filter"
#define MCP_SSE_PASS        2   /* discard mode: an oversized event streams through */

/* JSON-RPC ids compare by value: 1 and 1.0 are the same id to a JavaScript client. */
static int
mcp_id_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

/* The listing method whose result shape msg (a response) has, or NULL. */
static const char *
mcp_listing_shape(json_t *msg)
{
	json_t *res = json_object_get(msg, "result");

	if (!json_is_object(res))
		return NULL;
	if (json_object_get(res, "tools") != NULL)
		return "tools/list";
	if (json_object_get(res, "prompts") != NULL)
		return "prompts/list";
	if (json_object_get(res, "resourceTemplates") != NULL)
		return "resources/templates/list";
	if (json_object_get(res, "resources") != NULL)
		return "resources/list";
	return NULL;
}

/* 1 when msg could be taken for a response by a client: it carries a result or an
 * error, or an id without a method. */
static int
mcp_is_response(json_t *msg)
{
	if (!json_is_object(msg))
		return 0;
	if (json_object_get(msg, "result") != NULL || json_object_get(msg, "error") != NULL)
		return 1;
	return json_object_get(msg, "id") != NULL && json_object_get(msg, "method") == NULL;
}

/* 1 when the entries hold a listing request with an id (not only a wildcard). */
static int
mcp_lists_strict(const struct mcp_pending_list *lists, size_t nlists)
{
	size_t i;

	for (i = 0; i < nlists; i++)
		if (lists[i].id != NULL && lists[i].method != NULL)
			return 1;
	return 0;
}

#define MCP_MATCH_NONE    (-1)  /* not a response, or nothing to do with it */
#define MCP_MATCH_UNKNOWN (-2)  /* a response no request of ours explains */

/* Index of the entry that msg (a response) answers: a listing (method set, to be
 * filtered) or another request of the body (method NULL, passed as is). Ids compare
 * by JSON type and value, so "1" does not answer 1: a client that matches ids loosely
 * (the SDK looks up Number(id)) would otherwise take an unfiltered "1" for the answer
 * to listing 1. A wildcard entry (id NULL, see mcp.h) matches any listing-shaped
 * response, after the entries with ids. MCP_MATCH_UNKNOWN: a response that answers
 * no entry while a listing with an id is pending (the caller fails closed); an error
 * with a null id (a parse error report) is never unknown. */
static long
mcp_match_list(json_t *msg, const struct mcp_pending_list *lists, size_t nlists)
{
	json_t *id;
	size_t i;

	if (!mcp_is_response(msg))
		return MCP_MATCH_NONE;
	id = json_object_get(msg, "id");
	for (i = 0; id != NULL && i < nlists; i++)
		if (lists[i].id != NULL && mcp_id_equal(lists[i].id, id))
			return (long)i;
	for (i = 0; i < nlists; i++)
		if (lists[i].id == NULL && mcp_listing_shape(msg) != NULL)
			return (long)i;
	if (json_is_null(id) && json_object_get(msg, "result") == NULL)
		return MCP_MATCH_NONE;
	return mcp_lists_strict(lists, nlists) ? MCP_MATCH_UNKNOWN : MCP_MATCH_NONE;
}

/* Filters one response in place. A result whose shape is not understood is replaced by
 * an error (*repl, new reference) rather than passed on unfiltered.
 * Returns 1 changed, 0 unchanged, -1 out of memory. */
static int
mcp_filter_response(json_t *msg, const char *method, char *const *scopes, size_t nscopes,
    json_t **repl)
{
	int r;

	*repl = NULL;
	r = policy_filter_listing(scopes, nscopes, method, msg);
	if (r >= 0)
		return r > 0;
	*repl = mcp_error_obj(json_object_get(msg, "id"), MCP_ERR_GATEWAY,
	    "certgate: listing response could not be filtered");
	return *repl != NULL ? 1 : -1;
}

#define MCP_FILTER_UNKNOWN 2      /* mcp_filter_root: an unexplained response */

/* Filters a parsed body (response or batch of responses) in place, possibly replacing
 * *rootp. answered (optional) gets 1 for every pending list that was answered.
 * Returns 1 changed, 0 unchanged, MCP_FILTER_UNKNOWN when a response answers no
 * request of ours while a listing is pending (nothing of it may be sent), -1 out of
 * memory. */
static int
mcp_filter_root(json_t **rootp, const struct mcp_pending_list *lists, size_t nlists,
    char *const *scopes, size_t nscopes, unsigned char *answered, mcp_observe_fn obs,
    void *obs_arg)
{
	json_t *msg, *repl;
	size_t i, n;
	long k;
	int changed = 0, r;

	n = json_is_array(*rootp) ? json_array_size(*rootp) : 1;
	for (i = 0; i < n; i++) {
		msg = json_is_array(*rootp) ? json_array_get(*rootp, i) : *rootp;
		if ((k = mcp_match_list(msg, lists, nlists)) == MCP_MATCH_UNKNOWN)
			return MCP_FILTER_UNKNOWN;
		if (obs != NULL)
			obs(obs_arg, msg, k >= 0 && lists[k].id != NULL ? &lists[k] : NULL);
		if (k < 0 || (lists[k].method == NULL && lists[k].id != NULL))
			continue;       /* not a response, or one to a request we pass */
		/* a listing-shaped wildcard stays pending for the whole stream */
		if (answered != NULL && lists[k].id != NULL)
			answered[k] = 1;
		if ((r = mcp_filter_response(msg, lists[k].method != NULL ? lists[k].method :
		    mcp_listing_shape(msg), scopes, nscopes, &repl)) == -1)
			return -1;
		changed |= r;
		if (repl == NULL)
			continue;
		if (json_is_array(*rootp)) {
			if (json_array_set_new(*rootp, i, repl) == -1)
				return -1;
		} else {
			json_decref(*rootp);
			*rootp = repl;
		}
	}
	return changed;
}

/* A copy with every ill-formed byte replaced by U+FFFD, as a browser's or Node's
 * TextDecoder would; NULL when p is well-formed already (or out of memory). */
static char *
mcp_utf8_fix(const char *p, size_t n, size_t *outlen)
{
	struct buf b;
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, k, start = 0;
	int bad = 0;

	buf_init(&b);
	while (i < n) {
		if ((k = text_utf8_seq(u + i, n - i, NULL)) > 0) {
			i += k;
			continue;
		}
		bad = 1;
		if (buf_add(&b, p + start, i - start) == -1 ||
		    buf_add(&b, "\xEF\xBF\xBD", 3) == -1)
			goto fail;
		start = ++i;
	}
	if (!bad || buf_add(&b, p + start, n - start) == -1)
		goto fail;
	return buf_detach(&b, outlen);
fail:
	buf_free(&b);
	return NULL;
}

/*
 * Parses a response from upstream as leniently as the client will: NUL escapes are
 * allowed and ill-formed UTF-8 is replaced. What still fails (nesting deeper than
 * jansson's limit, lone surrogate escapes, integers beyond 64 bits) might parse in the
 * client, so callers fail closed when a listing is pending.
 */
static json_t *
mcp_parse_response(const char *p, size_t n)
{
	json_t *root;
	char *fixed;
	size_t flen = 0;

	/* Response.json() decodes with a BOM-stripping UTF-8 decoder. */
	if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
		p += 3;
		n -= 3;
	}

	if ((root = json_loadb(p, n, JSON_ALLOW_NUL, NULL)) != NULL)
		return root;
	if ((fixed = mcp_utf8_fix(p, n, &flen)) == NULL)
		return NULL;
	root = json_loadb(fixed, flen, JSON_ALLOW_NUL, NULL);
	free(fixed);
	return root;
}

/* Errors for every pending listing: what goes out instead of a listing response that
 * could not be filtered. Returns malloc'd JSON text. */
static char *
mcp_fail_closed(const struct mcp_pending_list *lists, size_t nlists, const char *why)
{
	json_t *arr;
	char *s;
	size_t i;

	if (nlists == 1)
		return mcp_error_body(lists[0].id, MCP_ERR_GATEWAY, why);
	if ((arr = json_array()) == NULL)
		return NULL;
	for (i = 0; i < nlists; i++)
		if (json_array_append_new(arr, mcp_error_obj(lists[i].id, MCP_ERR_GATEWAY,
		    why)) == -1) {
			json_decref(arr);
			return NULL;
		}
	s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

char *
mcp_filter_json(const char *body, size_t len, const struct mcp_pending_list *lists,
    size_t nlists, char *const *scopes, size_t nscopes, size_t *outlen)
{
	return mcp_filter_json_observed(body, len, lists, nlists, scopes, nscopes, NULL,
	    NULL, outlen);
}

char *
mcp_filter_json_observed(const char *body, size_t len,
    const struct mcp_pending_list *lists, size_t nlists, char *const *scopes,
    size_t nscopes, mcp_observe_fn obs, void *obs_arg, size_t *outlen)
{
	json_t *root;
	const char *why;
	char *s = NULL;
	int r;

	if (outlen != NULL)
		*outlen = 0;
	if (nlists == 0 || body == NULL)
		return NULL;
	if ((root = mcp_parse_response(body, len)) == NULL) {
		/* Whatever a client might make of it, it is not sent unfiltered. */
		why = "certgate: listing response could not be parsed for filtering";
		goto closed;
	}
	r = mcp_filter_root(&root, lists, nlists, scopes, nscopes, NULL, obs, obs_arg);
	if (r == 1 && (s = json_dumps(root, JSON_COMPACT)) == NULL)
		r = -1;
	json_decref(root);
	if (r == -1)
		goto fail;
	if (r == MCP_FILTER_UNKNOWN) {
		why = "certgate: upstream answered a request it was not sent";
		goto closed;
	}
	if (s != NULL && outlen != NULL)
		*outlen = strlen(s);
	return s;
closed:
	if ((s = mcp_fail_closed(lists, nlists, why)) == NULL)
		goto fail;
	if (outlen != NULL)
		*outlen = strlen(s);
	return s;
fail:
	/* out of memory: the caller must not send the unfiltered body */
	if (outlen != NULL)
		*outlen = (size_t)-1;
	return NULL;
}

/*
 * text/event-stream filter (HTML "event stream" format). Bytes of the event being
 * assembled are kept verbatim in raw so that an event that needs no filtering goes out
 * byte-identical. A CR that ends a line may be followed by an LF in the next chunk; that
 * LF then starts the next event's raw bytes (skip) but is no line of its own.
 */
struct mcp_sse {
	const struct mcp_pending_list *lists;
	size_t nlists;
	char *const *scopes;
	size_t nscopes;
	size_t max_event;
	unsigned char *answered;
	struct buf raw;      /* the event being assembled, original bytes */
	struct buf data;     /* its data field: lines joined with \n */
	size_t line_start;       /* offset in raw of the current line */
	size_t line_len;         /* bytes of the current line so far */
	char line_head[5];       /* first bytes of the line (for discard mode) */
	size_t skip;             /* leading raw bytes that end the previous event */
	int has_data;
	int cr;                  /* previous byte was a CR that ended a line */
	int first_line;          /* no line finished yet: a UTF-8 BOM may lead */
	int ev_bom;              /* this event's raw starts with that BOM */
	int discard;             /* the event outgrew max_event and is being dropped */
	int passthrough;         /* nothing left to filter: bytes go straight out */
	mcp_observe_fn obs;      /* sees every message (mcp_sse_observe) */
	void *obs_arg;
};

struct mcp_sse *
mcp_sse_new(const struct mcp_pending_list *lists, size_t nlists, char *const *scopes,
    size_t nscopes, size_t max_event)
{
	struct mcp_sse *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if (nlists > 0 && (s->answered = calloc(nlists, 1)) == NULL) {
		free(s);
		return NULL;
	}
	s->lists = lists;
	s->nlists = nlists;
	s->scopes = scopes;
	s->nscopes = nscopes;
	s->max_event = max_event ? max_event : MCP_SSE_DEFAULT_MAX;
	s->first_line = 1;
	s->passthrough = nlists == 0;
	return s;
}

void
mcp_sse_observe(struct mcp_sse *s, mcp_observe_fn fn, void *arg)
{
	s->obs = fn;
	s->obs_arg = arg;
	if (fn != NULL)
		s->passthrough = 0;     /* every event is parsed to be observed */
}

void
mcp_sse_free(struct mcp_sse *s)
{
	if (s == NULL)
		return;
	buf_free(&s->raw);
	buf_free(&s->data);
	free(s->answered);
	free(s);
}

static size_t
mcp_sse_unanswered(const struct mcp_sse *s)
{
	size_t i, n = 0;

	for (i = 0; i < s->nlists; i++)
		n += s->lists[i].method != NULL && !s->answered[i];
	return n;
}

static void
mcp_sse_reset_event(struct mcp_sse *s)
{
	s->raw.len = 0;
	s->data.len = 0;
	s->line_start = 0;
	s->line_len = 0;
	s->skip = 0;
	s->has_data = 0;
	s->ev_bom = 0;
	s->discard = 0;
}

static int
mcp_emit(mcp_emit_fn emit, void *arg, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	return emit(arg, p, n) == 0 ? 0 : -1;
}

static int
mcp_sse_is_data(const char *l, size_t n)
{
	return n >= 4 && memcmp(l, "data", 4) == 0 && (n == 4 || l[4] == ':');
}

/* The event with every data line replaced by one "data: JSON" line at the position of
 * the first; other lines and terminators are kept as they were. */
static int
mcp_sse_rewrite(struct mcp_sse *s, const char *json, struct buf *out)
{
	const char *b = s->raw.p;
	size_t pos, e, term, pre = s->skip + (s->ev_bom ? 3 : 0);
	int wrote = 0;

	if (buf_add(out, b, pre) == -1)
		return -1;
	for (pos = pre; pos < s->raw.len; pos = e + term) {
		for (e = pos; e < s->raw.len && b[e] != '\r' && b[e] != '\n'; e++)
			;
		term = e == s->raw.len ? 0 :
		    (b[e] == '\r' && e + 1 < s->raw.len && b[e + 1] == '\n') ? 2 : 1;
		if (!mcp_sse_is_data(b + pos, e - pos)) {
			if (buf_add(out, b + pos, e - pos + term) == -1)
				return -1;
			continue;
		}
		if (wrote++)
			continue;
		if (buf_add(out, "data: ", 6) == -1 ||
		    buf_add(out, json, strlen(json)) == -1 ||
		    buf_add(out, "\n", 1) == -1)
			return -1;
	}
	return 0;
}

static int mcp_sse_dropped(struct mcp_sse *, mcp_emit_fn, void *, const char *);

/* Emits the complete (or, at end of stream, partial) event: filtered when its data is a
 * response to a pending listing request, verbatim otherwise. Fails closed: data that
 * does not parse, or a response that answers no request of the POST, is replaced by
 * an error event for the listing (a listing that was answered already stays
 * answered: a second copy of it is filtered like the first). */
static int
mcp_sse_dispatch(struct mcp_sse *s, mcp_emit_fn emit, void *arg)
{
	struct buf out;
	json_t *root = NULL;
	char *json = NULL;
	int r, rv = -1;

	buf_init(&out);
	/* an empty data field dispatches nothing in the client */
	if (!s->has_data || s->data.len <= 1)
		return mcp_emit(emit, arg, s->raw.p, s->raw.len);
	/* drop the \n that followed the last data line */
	root = mcp_parse_response(s->data.p, s->data.len - 1);
	if (root == NULL && s->nlists == 0)
		return mcp_emit(emit, arg, s->raw.p, s->raw.len);     /* observing only */
	if (root == NULL)
		return mcp_sse_dropped(s, emit, arg, "certgate: event could not be parsed "
		    "for filtering");
	r = mcp_filter_root(&root, s->lists, s->nlists, s->scopes, s->nscopes, s->answered,
	    s->obs, s->obs_arg);
	if (r == -1)
		goto fail;
	if (r == MCP_FILTER_UNKNOWN) {
		rv = mcp_sse_dropped(s, emit, arg, "certgate: upstream answered a request it "
		    "was not sent");
		goto fail;
	}
	if (r == 0) {
		rv = mcp_emit(emit, arg, s->raw.p, s->raw.len);
		goto fail;
	}
	if ((json = json_dumps(root, JSON_COMPACT)) == NULL ||
	    mcp_sse_rewrite(s, json, &out) == -1)
		goto fail;
	rv = mcp_emit(emit, arg, out.p, out.len);
fail:
	buf_free(&out);
	free(json);
	json_decref(root);
	return rv;
}

/* An event too large to buffer whose data could answer a pending listing request: the
 * client gets an error for the (only) outstanding listing instead of unfiltered data.
 * The listing stays pending, so a later real answer is still filtered. */
static int
mcp_sse_dropped(struct mcp_sse *s, mcp_emit_fn emit, void *arg, const char *why)
{
	json_t *id = NULL;
	char *body;
	size_t i;
	int rv;

	if (!s->has_data)
		return 0;
	if (mcp_sse_unanswered(s) == 1)
		for (i = 0; i < s->nlists; i++)
			if (!s->answered[i])
				id = s->lists[i].id;
	body = mcp_error_body(id, MCP_ERR_GATEWAY, why);
	if (body == NULL)
		return -1;
	/* the LF that ended the previous event's CRLF belongs to that event */
	rv = !s->discard && s->skip > 0 ? mcp_emit(emit, arg, s->raw.p, s->skip) : 0;
	if (rv == 0)
		rv = mcp_emit(emit, arg, "data: ", 6);
	if (rv == 0)
		rv = mcp_emit(emit, arg, body, strlen(body));
	if (rv == 0)
		rv = mcp_emit(emit, arg, "\n\n", 2);
	free(body);
	return rv;
}

/* A line ended. Blank lines end the event; data lines feed the data field. */
static int
mcp_sse_line(struct mcp_sse *s, mcp_emit_fn emit, void *arg)
{
	const char *l = s->discard ? s->line_head : s->raw.p + s->line_start, *v;
	size_t n = s->line_len, vn;
	int rv = 0;

	if (!s->discard && s->first_line && n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) {
		s->ev_bom = 1;
		l += 3;
		n -= 3;
	}
	s->first_line = 0;
	if (n == 0) {
		rv = s->discard == MCP_SSE_PASS ? 0 : s->discard ?
		    mcp_sse_dropped(s, emit, arg, MCP_SSE_TOO_LARGE) :
		    mcp_sse_dispatch(s, emit, arg);
		mcp_sse_reset_event(s);
		return rv;
	}
	if (s->discard) {
		if (mcp_sse_is_data(s->line_head, n < 5 ? n : 5))
			s->has_data = 1;
	} else if (mcp_sse_is_data(l, n)) {
		v = l + 4;
		vn = n - 4;
		if (vn > 0) {
			v++;
			vn--;
			if (vn > 0 && *v == ' ') {
				v++;
				vn--;
			}
		}
		if (buf_add(&s->data, v, vn) == -1 || buf_add(&s->data, "\n", 1) == -1)
			return -1;
		s->has_data = 1;
	}
	s->line_start = s->raw.len;
	s->line_len = 0;
	return 0;
}

/* The event outgrew max_event: it is dropped (and answered with an error if it
 * carried data), even once every listing was answered, since it could be another copy
 * of one and cannot be parsed to tell. */
static int
mcp_sse_overflow(struct mcp_sse *s, mcp_emit_fn emit, void *arg)
{
	size_t keep;
	int rv = 0;

	keep = s->line_len < sizeof(s->line_head) ? s->line_len : sizeof(s->line_head);
	memcpy(s->line_head, s->raw.p + s->line_start, keep);
	/* Observing only (nothing to filter): the big event streams on unobserved. */
	if (s->nlists == 0) {
		rv = mcp_emit(emit, arg, s->raw.p, s->raw.len);
		s->discard = MCP_SSE_PASS;
	} else
		s->discard = 1;
	s->raw.len = 0;
	s->data.len = 0;
	s->line_start = 0;
	return rv;
}

/* Appends a run of line content (no CR/LF) to the current line. */
static int
mcp_sse_content(struct mcp_sse *s, const char *p, size_t n, mcp_emit_fn emit, void *arg)
{
	size_t i;

	if (s->discard) {
		for (i = 0; i < n && s->line_len + i < sizeof(s->line_head); i++)
			s->line_head[s->line_len + i] = p[i];
		s->line_len += n;
		return s->discard == MCP_SSE_PASS ? mcp_emit(emit, arg, p, n) : 0;
	}
	if (buf_add(&s->raw, p, n) == -1)
		return -1;
	s->line_len += n;
	if (s->raw.len > s->max_event)
		return mcp_sse_overflow(s, emit, arg);
	return 0;
}

int
mcp_sse_feed(struct mcp_sse *s, const char *p, size_t n, mcp_emit_fn emit, void *arg)
{
	size_t i, run;
	char c;

	for (i = 0; i < n && !s->passthrough;) {
		c = p[i];
		if (c == '\n' && s->cr) {
			s->cr = 0;
			if (!s->discard) {
				if (buf_add(&s->raw, &c, 1) == -1)
					return -1;
				if (s->raw.len == 1)
					s->skip = 1;
				s->line_start = s->raw.len;
			} else if (s->discard == MCP_SSE_PASS && mcp_emit(emit, arg, &c, 1) == -1)
				return -1;
			i++;
			continue;
		}
		s->cr = 0;
		if (c == '\r' || c == '\n') {
			if (!s->discard && buf_add(&s->raw, &c, 1) == -1)
				return -1;
			if (s->discard == MCP_SSE_PASS && mcp_emit(emit, arg, &c, 1) == -1)
				return -1;
			s->cr = c == '\r';
			i++;
			if (mcp_sse_line(s, emit, arg) == -1)
				return -1;
			continue;
		}
		for (run = i; run < n && p[run] != '\r' && p[run] != '\n'; run++)
			;
		if (mcp_sse_content(s, p + i, run - i, emit, arg) == -1)
			return -1;
		i = run;
	}
	if (s->passthrough && i < n)
		return mcp_emit(emit, arg, p + i, n - i);
	return 0;
}

int
mcp_sse_finish(struct mcp_sse *s, mcp_emit_fn emit, void *arg)
{
	int rv;

	if (s->passthrough || s->discard == MCP_SSE_PASS)
		return 0;
	if (s->discard)
		rv = mcp_sse_dropped(s, emit, arg, MCP_SSE_TOO_LARGE);
	else
		rv = mcp_sse_dispatch(s, emit, arg);
	mcp_sse_reset_event(s);
	return rv;
}
