/* mcp.c: request inspection and refusal bodies, listing filters for JSON bodies and
 * for text/event-stream fed in arbitrary chunks. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcp.h"

static char *guest[] = { "mcp:tools/list", "mcp:prompts/list", "mcp:resources/list",
	"mcp:resources/templates/list", "tools:read_*", "prompts:greet", NULL };
#define NGUEST 6

static int
inspect(const char *body, const char *mm, const char *mn, struct mcp_inspect *in)
{
	return mcp_inspect_body(body, strlen(body), guest, NGUEST, mm, mn, in);
}

/* The error body parsed, checked for code, returned for further checks (caller frees). */
static json_t *
error_json(const struct mcp_inspect *in)
{
	json_t *j;

	CHECK(in->error_body != NULL);
	if (in->error_body == NULL)
		return NULL;
	j = json_loads(in->error_body, 0, NULL);
	CHECK(j != NULL);
	return j;
}

static int
error_code(json_t *e)
{
	return (int)json_integer_value(json_object_get(json_object_get(e, "error"), "code"));
}

static void
test_inspect_single(void)
{
	struct mcp_inspect in;
	json_t *e;

	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"read_file\",\"arguments\":{}}}", NULL, NULL, &in) == 0);
	CHECK(in.status == 0 && !in.batch && in.n == 1 && in.error_body == NULL);
	CHECK_STR(in.method, "tools/call");
	CHECK_STR(in.name, "read_file");
	CHECK(!in.only_notifications && !in.has_initialize && in.nlisting == 0);
	mcp_inspect_free(&in);

	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"id\":\"r7\",\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"delete_file\"}}", NULL, NULL, &in) == 0);
	CHECK(in.status == 403);
	CHECK_STR(in.reason, "missing scope");
	CHECK_STR(in.method, "tools/call");
	CHECK_STR(in.name, "delete_file");
	e = error_json(&in);
	CHECK(json_is_object(e));
	CHECK(error_code(e) == MCP_ERR_FORBIDDEN);
	CHECK_STR(json_string_value(json_object_get(e, "id")), "r7");
	CHECK_STR(json_string_value(json_object_get(e, "jsonrpc")), "2.0");
	CHECK_STR(json_string_value(json_object_get(json_object_get(e, "error"), "message")),
	    "certgate: agent may not call tools/call delete_file (missing scope)");
	json_decref(e);
	mcp_inspect_free(&in);

	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}",
	    NULL, NULL, &in) == 0);
	CHECK(in.status == 0 && in.has_initialize && !in.only_notifications);
	mcp_inspect_free(&in);

	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
	    NULL, NULL, &in) == 0);
	CHECK(in.status == 0 && in.only_notifications);
	mcp_inspect_free(&in);

	/* a denied notification still gets a (null-id) error body */
	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"method\":\"custom/notify\"}", NULL, NULL, &in) == 0);
	CHECK(in.status == 403);
	e = error_json(&in);
	CHECK(json_is_null(json_object_get(e, "id")));
	json_decref(e);
	mcp_inspect_free(&in);
}

static void
test_inspect_batch(void)
{
	struct mcp_inspect in;
	json_t *e;

	CHECK(inspect("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"rm\"}},"
	    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"},"
	    "{\"jsonrpc\":\"2.0\",\"method\":\"x/denied-notification\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"prompts/get\",\"params\":{\"name\":\"no\"}},"
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"prompts/get\",\"params\":{\"name\":\"greet\"}}]",
	    NULL, NULL, &in) == 0);
	CHECK(in.status == 403 && in.batch && in.n == 6);
	CHECK_STR(in.reason, "missing scope");
	CHECK_STR(in.method, "tools/list");
	e = error_json(&in);
	CHECK(json_is_array(e) && json_array_size(e) == 2);
	CHECK(json_integer_value(json_object_get(json_array_get(e, 0), "id")) == 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(e, 1), "id")), "x");
	CHECK(error_code(json_array_get(e, 0)) == MCP_ERR_FORBIDDEN);
	CHECK(error_code(json_array_get(e, 1)) == MCP_ERR_FORBIDDEN);
	CHECK(in.nlists == 0);   /* refused: nothing to filter */
	json_decref(e);
	mcp_inspect_free(&in);

	/* only notifications denied: a single null-id error */
	CHECK(inspect("[{\"jsonrpc\":\"2.0\",\"method\":\"x/n\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", NULL, NULL, &in) == 0);
	CHECK(in.status == 403);
	e = error_json(&in);
	CHECK(json_is_object(e) && json_is_null(json_object_get(e, "id")));
	json_decref(e);
	mcp_inspect_free(&in);

	/* allowed batch: listings recorded with their ids */
	CHECK(inspect("[{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"prompts/list\",\"params\":{}},"
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/templates/list\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/list\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}]", NULL, NULL, &in) == 0);
	CHECK(in.status == 0 && in.has_initialize && !in.only_notifications);
	CHECK(in.nlisting == 4);
	if (in.nlists == 4) {
		CHECK(json_integer_value(in.lists[0].id) == 1);
		CHECK_STR(in.lists[0].method, "tools/list");
		CHECK_STR(json_string_value(in.lists[1].id), "p");
		CHECK_STR(in.lists[1].method, "prompts/list");
		CHECK_STR(in.lists[2].method, "resources/templates/list");
		CHECK_STR(in.lists[3].method, "resources/list");
	}
	mcp_inspect_free(&in);

	CHECK(inspect("[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}]", NULL, NULL, &in) == 0);
	CHECK(in.status == 0 && in.only_notifications);
	mcp_inspect_free(&in);
}

static void
test_inspect_invalid(void)
{
	struct mcp_inspect in;
	char *deep;
	json_t *e;
	size_t i;

	static const char *const parse_errors[] = { "", "{", "{\"jsonrpc\":\"2.0\",}", "nul",
	    "{\"a\":1} x", "[1,]", "\"\\u0000\"x" };
	static const char *const not_rpc[] = { "42", "\"str\"", "null", "[1]", "{}",
	    "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{}]",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"error\":{}}" };

	for (i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++) {
		CHECK(inspect(parse_errors[i], NULL, NULL, &in) == 0);
		CHECK(in.status == 400);
		CHECK_STR(in.reason, "invalid json");
		e = error_json(&in);
		CHECK(error_code(e) == MCP_ERR_PARSE);
		CHECK(json_is_null(json_object_get(e, "id")));
		json_decref(e);
		mcp_inspect_free(&in);
	}
	for (i = 0; i < sizeof(not_rpc) / sizeof(not_rpc[0]); i++) {
		CHECK(inspect(not_rpc[i], NULL, NULL, &in) == 0);
		if (in.status != 400)
			fprintf(stderr, "not_rpc %zu: status %d\n", i, in.status);
		CHECK(in.status == 400);
		e = error_json(&in);
		CHECK(error_code(e) == MCP_ERR_INVALID);
		json_decref(e);
		mcp_inspect_free(&in);
	}
	/* the id survives when it is usable */
	CHECK(inspect("{\"jsonrpc\":\"1.0\",\"id\":5,\"method\":\"ping\"}", NULL, NULL, &in) == 0);
	CHECK(in.status == 400);
	e = error_json(&in);
	CHECK(json_integer_value(json_object_get(e, "id")) == 5);
	json_decref(e);
	mcp_inspect_free(&in);

	CHECK(inspect("[]", NULL, NULL, &in) == 0);
	CHECK(in.status == 400);
	CHECK_STR(in.reason, "empty batch");
	e = error_json(&in);
	CHECK(error_code(e) == MCP_ERR_INVALID);
	json_decref(e);
	mcp_inspect_free(&in);

	/* 100,000 levels of nesting: rejected cleanly, no stack overflow */
	deep = malloc(200001);
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[200000] = '\0';
	CHECK(mcp_inspect_body(deep, 200000, guest, NGUEST, NULL, NULL, &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
	for (i = 0; i < 100000; i++)
		memcpy(deep + 2 * i, "{\"", 2);
	CHECK(mcp_inspect_body(deep, 200000, guest, NGUEST, NULL, NULL, &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
	free(deep);
	/* NULL body counts as empty */
	CHECK(mcp_inspect_body(NULL, 0, guest, NGUEST, NULL, NULL, &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
}

static void
test_headers(void)
{
	static const char call[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"read_x\"}}";
	struct mcp_inspect in;
	json_t *e;

	CHECK(inspect(call, "tools/call", "read_x", &in) == 0);
	CHECK(in.status == 0);
	mcp_inspect_free(&in);
	CHECK(inspect(call, "tools/list", NULL, &in) == 0);
	CHECK(in.status == 400);
	CHECK_STR(in.reason, "Mcp-Method header mismatch");
	e = error_json(&in);
	CHECK(error_code(e) == MCP_ERR_INVALID);
	CHECK(json_integer_value(json_object_get(e, "id")) == 3);
	json_decref(e);
	mcp_inspect_free(&in);
	CHECK(inspect(call, NULL, "read_y", &in) == 0);
	CHECK(in.status == 400);
	CHECK_STR(in.reason, "Mcp-Name header mismatch");
	mcp_inspect_free(&in);
	/* header for a message without a name */
	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", "tools/list",
	    "x", &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
	/* mismatch wins over a denial (400 before 403) */
	CHECK(inspect("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"rm\"}}", "tools/call", "read_x", &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
	/* header must fit every element of a batch */
	CHECK(inspect("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},"
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/list\"}]", "tools/list", NULL,
	    &in) == 0);
	CHECK(in.status == 400);
	mcp_inspect_free(&in);
}

static void
test_versions(void)
{
	CHECK(mcp_protocol_version_known("2024-11-05"));
	CHECK(mcp_protocol_version_known("2025-03-26"));
	CHECK(mcp_protocol_version_known("2025-06-18"));
	CHECK(mcp_protocol_version_known("2025-11-25"));
	CHECK(!mcp_protocol_version_known("2024-10-07"));
	CHECK(!mcp_protocol_version_known("2025-06-18 "));
	CHECK(!mcp_protocol_version_known(""));
	CHECK(!mcp_protocol_version_known(NULL));
}

static void
test_error_body(void)
{
	json_t *id = json_string("a\"b");
	char *s;

	s = mcp_error_body(id, MCP_ERR_RATE_LIMITED, "rate limited");
	CHECK_STR(s, "{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"error\":{\"code\":-32002,"
	    "\"message\":\"rate limited\"}}");
	free(s);
	s = mcp_error_body(NULL, MCP_ERR_GATEWAY, "upstream unreachable");
	CHECK_STR(s, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32003,"
	    "\"message\":\"upstream unreachable\"}}");
	free(s);
	json_decref(id);
}

/* Pending lists: 1 -> tools/list, "p" -> prompts/list; 7 -> another request of the
 * same body (its response passes unchanged). */
static struct mcp_pending_list lists[3];

static void
init_lists(void)
{
	lists[0].id = json_integer(1);
	lists[0].method = "tools/list";
	lists[1].id = json_string("p");
	lists[1].method = "prompts/list";
	lists[2].id = json_integer(7);
	lists[2].method = NULL;
}

#define ERR2(why) "[{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32003," \
	"\"message\":\"certgate: " why "\"}},{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"error\":" \
	"{\"code\":-32003,\"message\":\"certgate: " why "\"}}]"
#define UNPARSED "listing response could not be parsed for filtering"
#define UNKNOWN "upstream answered a request it was not sent"

#define TOOLS_RESP(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"tools\":[" \
	"{\"name\":\"read_a\"},{\"name\":\"write_b\"}]}}"
#define TOOLS_FILTERED(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"tools\":[" \
	"{\"name\":\"read_a\"}]}}"
#define TOOLS_FILTERED_M(id) "{\"id\":" id ",\"method\":\"x\",\"result\":{\"tools\":[]}}"

static void
filter_json_case(const char *in, size_t nl, const char *expect)
{
	size_t outlen = 99;
	char *out;

	out = mcp_filter_json(in, strlen(in), lists, nl, guest, NGUEST, &outlen);
	if (expect == NULL) {
		if (out != NULL)
			fprintf(stderr, "expected unchanged, got %s\n", out);
		CHECK(out == NULL);
		CHECK(outlen == 0);
	} else {
		CHECK_STR(out, expect);
		CHECK(out != NULL && outlen == strlen(out));
	}
	free(out);
}

static void
test_filter_json(void)
{
	filter_json_case(TOOLS_RESP("1"), 2, TOOLS_FILTERED("1"));
	/* same id by value */
	filter_json_case(TOOLS_RESP("1.0"), 2, TOOLS_FILTERED("1.0"));
	/* nothing pending: unchanged */
	filter_json_case(TOOLS_RESP("1"), 0, NULL);
	/* a response to no request of ours, or an id of another type (the SDK would match
	 * "1" to 1): fail closed for every pending request */
	filter_json_case(TOOLS_RESP("2"), 2, ERR2(UNKNOWN));
	filter_json_case(TOOLS_RESP("\"1\""), 2, ERR2(UNKNOWN));
	filter_json_case(TOOLS_RESP("null"), 2, ERR2(UNKNOWN));
	filter_json_case("{\"id\":1,\"method\":\"x\",\"result\":{\"tools\":[{\"name\":\"write_b\"}]}}",
	    1, TOOLS_FILTERED_M("1"));
	/* an error with a null id (a parse error report) is not an unknown response */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
	    "\"message\":\"x\"}}", 2, NULL);
	/* the other request of the body passes unchanged */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"x\"}]}}",
	    3, NULL);
	/* whatever does not parse is not sent: not JSON, empty */
	filter_json_case("not json", 2, ERR2(UNPARSED));
	filter_json_case("", 2, ERR2(UNPARSED));
	/* a UTF-8 BOM is what Response.json() skips: filtered, sent without it */
	filter_json_case("\xEF\xBB\xBF" TOOLS_RESP("1"), 1, TOOLS_FILTERED("1"));
	/* cannot be parsed here but perhaps by the client: fail closed for every listing */
	filter_json_case("{not json", 2, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":"
	    "-32003,\"message\":\"certgate: listing response could not be parsed for "
	    "filtering\"}},{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: listing response could not be parsed for filtering\"}}]");
	filter_json_case(" {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":"
	    "\"\\ud800\"}]}}", 1, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: listing response could not be parsed for filtering\"}}");
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":"
	    "\"x\",\"max\":184467440737095516160}]}}", 1, "{\"jsonrpc\":\"2.0\",\"id\":1,"
	    "\"error\":{\"code\":-32003,\"message\":\"certgate: listing response could not be "
	    "parsed for filtering\"}}");
	/* ill-formed UTF-8 is replaced (as the client's decoder would) and then filtered */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":"
	    "\"read_\xff\"},{\"name\":\"write\xc0\xaf\"}]}}", 1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":"
	    "\"read_\xef\xbf\xbd\"}]}}");
	/* a NUL escape: the C string would say read_, the client sees read_<NUL>x */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":"
	    "\"read_\\u0000x\"},{\"name\":\"read_b\"}]}}", 1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_b\"}]}}");
	/* a listing with nothing to remove is passed byte-identical */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,  \"result\":{\"tools\":[{\"name\":\"read_z\"}]}}",
	    2, NULL);
	/* batch: only the listing response changes */
	filter_json_case("[{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"x\"}]}},"
	    TOOLS_RESP("1") ",{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":["
	    "{\"name\":\"greet\"},{\"name\":\"secret\"}]}}]", 3,
	    "[{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"x\"}]}},"
	    TOOLS_FILTERED("1") ",{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":["
	    "{\"name\":\"greet\"}]}}]");
	/* a result that cannot be understood is replaced by an error, not passed on */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":\"all of them\"}}", 2,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: listing response could not be filtered\"}}");
	filter_json_case("[{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":[]}]", 2,
	    "[{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: listing response could not be filtered\"}}]");
	/* a request with a matching id is not a response */
	filter_json_case("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", 2, NULL);
}

/* SSE harness: collects output; optionally fails emits. */
struct sink {
	char *p;
	size_t len;
	int calls;
	int fail_at;
};

static int
sink_emit(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;

	s->calls++;
	if (s->fail_at && s->calls >= s->fail_at)
		return -1;
	s->p = realloc(s->p, s->len + n + 1);
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
	return 0;
}

static unsigned int lcg_state;

static unsigned int
lcg(void)
{
	lcg_state = lcg_state * 1103515245u + 12345u;
	return (lcg_state >> 16) & 0x7fff;
}

/* Feeds in in chunks: mode 0 whole, 1 byte by byte, else random (seeded by mode).
 * Returns malloc'd output (or NULL when feed/finish failed). */
static char *
sse_run(const char *in, size_t inlen, size_t nl, size_t max_event, unsigned int mode,
    size_t *outlen)
{
	struct sink k = { NULL, 0, 0, 0 };
	struct mcp_sse *s;
	size_t pos = 0, n;
	int rc = 0;

	s = mcp_sse_new(lists, nl, guest, NGUEST, max_event);
	CHECK(s != NULL);
	lcg_state = mode;
	while (pos < inlen && rc == 0) {
		n = mode == 0 ? inlen : mode == 1 ? 1 : 1 + lcg() % 17;
		if (n > inlen - pos)
			n = inlen - pos;
		rc = mcp_sse_feed(s, in + pos, n, sink_emit, &k);
		pos += n;
	}
	if (rc == 0)
		rc = mcp_sse_finish(s, sink_emit, &k);
	mcp_sse_free(s);
	if (rc != 0) {
		free(k.p);
		return NULL;
	}
	*outlen = k.len;
	if (k.p == NULL)
		k.p = calloc(1, 1);
	return k.p;
}

static void
sse_case(const char *name, const char *in, size_t nl, size_t max_event, const char *expect)
{
	unsigned int mode;
	size_t outlen = 0;
	char *out;

	for (mode = 0; mode < 40; mode++) {
		out = sse_run(in, strlen(in), nl, max_event, mode, &outlen);
		CHECK(out != NULL);
		if (out == NULL)
			continue;
		if (outlen != strlen(expect) || memcmp(out, expect, outlen) != 0) {
			fprintf(stderr, "sse %s (mode %u):\n got: %s\nwant: %s\n", name, mode,
			    out, expect);
			CHECK(0);
		} else
			CHECK(1);
		free(out);
	}
}

#define BADEV(id) "data: {\"jsonrpc\":\"2.0\",\"id\":" id ",\"error\":{\"code\":-32003," \
	"\"message\":\"certgate: event could not be parsed for filtering\"}}\n\n"
#define BADID(id) "data: {\"jsonrpc\":\"2.0\",\"id\":" id ",\"error\":{\"code\":-32003," \
	"\"message\":\"certgate: upstream answered a request it was not sent\"}}\n\n"

static void
test_sse(void)
{
	static const char notif[] = "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\","
	    "\"method\":\"notifications/message\",\"params\":{}}\n\n";
	char big[4096], bigexp[4096];
	size_t outlen;
	char *out;

	/* no pending listing: byte-identical passthrough, whatever the input */
	sse_case("passthrough", ": hi\r\ndata: " TOOLS_RESP("1") "\r\n\r\ngarbage\rno end", 0, 0,
	    ": hi\r\ndata: " TOOLS_RESP("1") "\r\n\r\ngarbage\rno end");

	/* comments and other events verbatim; the listing event rewritten with its id and
	 * retry fields kept; multi-line data joined; CRLF terminators */
	sse_case("mixed", ": keepalive\n\n" "data: {\"jsonrpc\":\"2.0\",\"id\":1,\n"
	    "data: \"result\":{\"tools\":[{\"name\":\"read_a\"},{\"name\":\"write_b\"}]}}\r\n"
	    "retry: 100\r\n\r\n", 0, 0,
	    ": keepalive\n\n" "data: {\"jsonrpc\":\"2.0\",\"id\":1,\n"
	    "data: \"result\":{\"tools\":[{\"name\":\"read_a\"},{\"name\":\"write_b\"}]}}\r\n"
	    "retry: 100\r\n\r\n");
	sse_case("listing", ": keepalive\n\n" "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\","
	    "\"method\":\"notifications/message\",\"params\":{}}\n\n"
	    "id: 8\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\r\n"
	    "data: \"result\":{\"tools\":[{\"name\":\"read_a\"},{\"name\":\"write_b\"}]}}\r\n"
	    "retry: 100\r\n\r\n" "data: after\n\n", 1, 0,
	    ": keepalive\n\n" "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\","
	    "\"method\":\"notifications/message\",\"params\":{}}\n\n"
	    "id: 8\r\ndata: " TOOLS_FILTERED("1") "\nretry: 100\r\n\r\n" BADEV("null"));
	/* CR-only line ends; "data:" without a space; the listing comes first; data that
	 * does not parse while filtering becomes an error event */
	sse_case("cr", "data:" TOOLS_RESP("1") "\r\r" "data: {}\r\r", 2, 0,
	    "data: " TOOLS_FILTERED("1") "\n\r" "data: {}\r\r");
	sse_case("cr-bad", "data:" TOOLS_RESP("1") "\r\r" "data: x\r\r", 1, 0,
	    "data: " TOOLS_FILTERED("1") "\n\r" BADEV("null"));
	/* CRLF blank line split anywhere; the event after it must start clean */
	sse_case("crlf", "data: " TOOLS_RESP("1") "\r\n\r\n" "id: 2\r\ndata: {}\r\n\r\n", 2, 0,
	    "data: " TOOLS_FILTERED("1") "\n\r\n" "id: 2\r\ndata: {}\r\n\r\n");
	/* both listings in one stream; a second copy of an answered one is filtered too */
	sse_case("two", "data: {\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":"
	    "[{\"name\":\"x\"}]}}\n\n" "event: message\ndata: " TOOLS_RESP("1") "\n\n"
	    "data: " TOOLS_RESP("1") "\n\n", 2, 0,
	    "data: {\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":[]}}\n\n"
	    "event: message\ndata: " TOOLS_FILTERED("1") "\n\n" "data: " TOOLS_FILTERED("1") "\n\n");
	/* a response with an id of another type is an error event, not passed */
	sse_case("idtype", "data: " TOOLS_RESP("\"1\"") "\n\n", 1, 0, BADID("1"));
	/* batch response in one event */
	sse_case("batch", "data: [" TOOLS_RESP("1") "]\n\n", 1, 0,
	    "data: [" TOOLS_FILTERED("1") "]\n\n");
	/* leading BOM kept */
	sse_case("bom", "\xEF\xBB\xBF" "data: " TOOLS_RESP("1") "\n\n", 1, 0,
	    "\xEF\xBB\xBF" "data: " TOOLS_FILTERED("1") "\n\n");
	/* a listing response with nothing to remove is not rewritten */
	sse_case("unchanged", "data:   {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n",
	    1, 0, "data:   {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n");
	/* "data" without colon is an empty data line */
	sse_case("nocolon", "data\ndata: {}\n\n" "data:" TOOLS_RESP("1") "\n\n", 1, 0,
	    "data\ndata: {}\n\n" "data: " TOOLS_FILTERED("1") "\n\n");
	/* end of stream inside the listing event: filtered anyway */
	sse_case("partial", "data: " TOOLS_RESP("1") "\n", 1, 0,
	    "data: " TOOLS_FILTERED("1") "\n");
	sse_case("notif", notif, 1, 0, notif);
	/* empty data passes; data that cannot be parsed while filtering becomes an error */
	sse_case("emptydata", "data:\n\ndata: hello\n\n", 1, 0, "data:\n\n" BADEV("1"));
	sse_case("unparsable", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":"
	    "[{\"name\":\"\\udc00\"}]}}\n\n", 1, 0, "data: {\"jsonrpc\":\"2.0\",\"id\":1,"
	    "\"error\":{\"code\":-32003,\"message\":\"certgate: event could not be parsed for "
	    "filtering\"}}\n\n");
	sse_case("unparsable-nolist", "data: {x\n\n", 0, 0, "data: {x\n\n");

	/* an oversized event while a listing is pending: replaced by an error for it */
	snprintf(big, sizeof(big), "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":["
	    "{\"name\":\"write_%0300d\"}]}}\n\n" "data: {}\n\n", 0);
	sse_case("oversized", big, 1, 64,
	    "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: event too large to filter\"}}\n\n" "data: {}\n\n");
	/* two pending: the error cannot name one, id null */
	sse_case("oversized2", big, 2, 64,
	    "data: {\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32003,"
	    "\"message\":\"certgate: event too large to filter\"}}\n\n" "data: {}\n\n");
	/* oversized comment-only event: dropped */
	memset(bigexp, 'c', 300);
	bigexp[0] = ':';
	memcpy(bigexp + 300, "\n\ndata: {}\n\n", 13);
	sse_case("bigcomment", bigexp, 1, 64, "data: {}\n\n");
	/* oversized event once every listing was answered: still dropped (it could be a
	 * second copy of the listing) */
	snprintf(big, sizeof(big), "data: " TOOLS_RESP("1") "\n\n" "data: %0300d\n\n", 0);
	snprintf(bigexp, sizeof(bigexp), "data: " TOOLS_FILTERED("1") "\n\n" "data: {\"jsonrpc\":"
	    "\"2.0\",\"id\":null,\"error\":{\"code\":-32003,\"message\":\"certgate: event too "
	    "large to filter\"}}\n\n");
	sse_case("oversized-after", big, 1, 200, bigexp);
	snprintf(bigexp, sizeof(bigexp), "data: " TOOLS_FILTERED("1") "\n\n" BADEV("null"));

	/* a failing emit is reported */
	{
		struct sink k = { NULL, 0, 0, 1 };
		struct mcp_sse *s = mcp_sse_new(lists, 1, guest, NGUEST, 0);

		CHECK(mcp_sse_feed(s, "data: x\n\n", 9, sink_emit, &k) == -1);
		mcp_sse_free(s);
		free(k.p);
	}
	/* big stream, byte by byte, stays linear */
	out = sse_run(big, strlen(big), 1, 0, 1, &outlen);
	CHECK(out != NULL && outlen == strlen(bigexp));
	free(out);
	mcp_sse_free(NULL);
}

static void
test_media(void)
{
	static const struct { const char *v; enum mcp_media want; } t[] = {
		{ "application/json", MCP_MEDIA_JSON },
		{ "Application/JSON", MCP_MEDIA_JSON },
		{ "application/json; charset=utf-8", MCP_MEDIA_JSON },
		{ "application/json ;charset=utf-8", MCP_MEDIA_JSON },
		{ "application/json\t;\tcharset=\"utf-8\"", MCP_MEDIA_JSON },
		{ "application/json;;", MCP_MEDIA_JSON },
		{ " text/event-stream", MCP_MEDIA_SSE },
		{ "text/event-stream; x=\"a;b\\\"c\"", MCP_MEDIA_SSE },
		{ "application/json; x=\"text/event-stream\"", MCP_MEDIA_JSON },
		{ "application/json-seq", MCP_MEDIA_OTHER },
		{ "text/event-streamx", MCP_MEDIA_OTHER },
		{ "text/plain; profile=\"application/json\"", MCP_MEDIA_OTHER },
		{ "text/plain, application/json", MCP_MEDIA_OTHER },
		{ "application/json, text/plain", MCP_MEDIA_OTHER },
		{ "application/json; charset", MCP_MEDIA_OTHER },
		{ "application/json; =x", MCP_MEDIA_OTHER },
		{ "application/json; x=\"unterminated", MCP_MEDIA_OTHER },
		{ "application / json", MCP_MEDIA_OTHER },
		{ "application/", MCP_MEDIA_OTHER },
		{ "", MCP_MEDIA_OTHER },
		{ NULL, MCP_MEDIA_OTHER },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (mcp_media_kind(t[i].v) != t[i].want)
			fprintf(stderr, "media kind of '%s': got %d\n", t[i].v ? t[i].v : "(null)",
			    mcp_media_kind(t[i].v));
		CHECK(mcp_media_kind(t[i].v) == t[i].want);
	}
}

int
main(void)
{
	init_lists();
	test_media();
	test_inspect_single();
	test_inspect_batch();
	test_inspect_invalid();
	test_headers();
	test_versions();
	test_error_body();
	test_filter_json();
	test_sse();
	json_decref(lists[0].id);
	json_decref(lists[1].id);
	json_decref(lists[2].id);
	CHECK_DONE();
}
