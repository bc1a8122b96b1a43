/* policy.c: globs, scope grammar, message decisions (table-driven), listing filters. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "policy.h"

#define MAXSCOPES 16

/* Splits a space-separated scope list into a NULL-terminated array (static storage). */
static size_t
split_scopes(const char *list, char *buf, size_t buflen, char **out)
{
	size_t n = 0;
	char *tok, *save = NULL;

	snprintf(buf, buflen, "%s", list);
	for (tok = strtok_r(buf, " ", &save); tok != NULL && n < MAXSCOPES - 1;
	    tok = strtok_r(NULL, " ", &save))
		out[n++] = tok;
	out[n] = NULL;
	return n;
}

struct glob_case {
	const char *pattern;
	const char *s;
	int match;
};

static const struct glob_case glob_cases[] = {
	{ "", "", 1 },
	{ "", "a", 0 },
	{ "*", "", 1 },
	{ "*", "anything/at all", 1 },
	{ "a", "a", 1 },
	{ "a", "A", 0 },
	{ "?", "", 0 },
	{ "?", "x", 1 },
	{ "??", "x", 0 },
	{ "read_*", "read_file", 1 },
	{ "read_*", "read_", 1 },
	{ "read_*", "READ_file", 0 },
	{ "read_*", "xread_file", 0 },
	{ "*_file", "read_file", 1 },
	{ "*_file", "read_file2", 0 },
	{ "a*b*c", "abc", 1 },
	{ "a*b*c", "aXXbYYc", 1 },
	{ "a*b*c", "aXXbYY", 0 },
	{ "a*b?d", "abbbcd", 1 },
	{ "a**b", "ab", 1 },
	{ "*a", "aaaa", 1 },
	{ "*ab", "aaab", 1 },
	{ "*ab", "abab", 1 },
	{ "*ab", "abac", 0 },
	{ "tools/*", "tools/list", 1 },
	{ "tools/*", "tool/list", 0 },
	{ "file:///srv/public/*", "file:///srv/public/a/b.txt", 1 },
	{ "[a]", "a", 0 },           /* no classes: '[' is literal */
	{ "[a]", "[a]", 1 },
	{ "\\*", "\\x", 1 },          /* no escapes: '\' is literal, '*' still a star */
	{ "a?c", "a/c", 1 },
};

static void
test_glob(void)
{
	char pat[200], str[20000];
	size_t i;

	for (i = 0; i < sizeof(glob_cases) / sizeof(glob_cases[0]); i++) {
		int m = policy_glob(glob_cases[i].pattern, glob_cases[i].s);

		if (m != glob_cases[i].match)
			fprintf(stderr, "glob(\"%s\", \"%s\") = %d\n", glob_cases[i].pattern,
			    glob_cases[i].s, m);
		CHECK(m == glob_cases[i].match);
	}
	CHECK(policy_glob(NULL, "a") == 0);
	CHECK(policy_glob("a", NULL) == 0);
	/* pathological pattern: exponential backtracking would not finish */
	memset(pat, 0, sizeof(pat));
	for (i = 0; i < 60; i++)
		strcat(pat, "a*");
	strcat(pat, "b");
	memset(str, 'a', sizeof(str) - 1);
	str[sizeof(str) - 1] = '\0';
	CHECK(policy_glob(pat, str) == 0);
	str[sizeof(str) - 2] = 'b';
	CHECK(policy_glob(pat, str) == 1);
}

static void
test_scope_valid(void)
{
	static const char *const good[] = { "*", "mcp:*", "mcp:tools/list", "tools:search_*",
	    "resources:file:///srv/public/*", "prompts:p?", "tools:a" };
	static const char *const bad[] = { "", "**", "mcp:", "tools:", "tool:x", "Tools:x",
	    "mcp", "admin", "tools:a b", "tools:a\tb", "tools:a\nb", "resources:\x7f",
	    " tools:x", "*x" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(policy_scope_valid(good[i]) == 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (policy_scope_valid(bad[i]))
			fprintf(stderr, "scope accepted: \"%s\"\n", bad[i]);
		CHECK(policy_scope_valid(bad[i]) == 0);
	}
	CHECK(policy_scope_valid(NULL) == 0);
}

struct msg_case {
	const char *scopes;   /* space-separated */
	const char *msg;
	int rc;               /* policy_check_message return */
	int allow;
	const char *reason;   /* expected on deny/invalid */
};

#define REQ(m, params) "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"" m "\",\"params\":" params "}"
#define CALL(tool) REQ("tools/call", "{\"name\":\"" tool "\",\"arguments\":{}}")
#define READ(uri) REQ("resources/read", "{\"uri\":\"" uri "\"}")
#define GUEST "mcp:tools/list mcp:resources/list mcp:prompts/list"
#define MEMBER "mcp:* tools:* resources:* prompts:*"

static const struct msg_case msg_cases[] = {
	/* "*" grants everything */
	{ "*", CALL("delete_everything"), 0, 1, NULL },
	{ "*", REQ("custom/method", "{}"), 0, 1, NULL },
	{ "*", READ("file:///etc/../shadow"), 0, 1, NULL },
	/* mcp: globs on the method */
	{ "mcp:tools/list", REQ("tools/list", "{}"), 0, 1, NULL },
	{ "mcp:tools/list", REQ("tools/call", "{\"name\":\"x\"}"), 0, 0, "missing scope" },
	{ "mcp:tools/*", CALL("anything"), 0, 1, NULL },
	{ "mcp:resources/*", REQ("resources/templates/list", "{}"), 0, 1, NULL },
	{ "mcp:resources/*", REQ("prompts/list", "{}"), 0, 0, "missing scope" },
	{ "mcp:*", REQ("completion/complete", "{}"), 0, 1, NULL },
	{ "mcp:tools/lis?", REQ("tools/list", "{}"), 0, 1, NULL },
	{ "mcp:Tools/list", REQ("tools/list", "{}"), 0, 0, "missing scope" },
	/* listing methods are not granted by tools:… scopes */
	{ "tools:*", REQ("tools/list", "{}"), 0, 0, "missing scope" },
	{ "tools:echo mcp:tools/list", REQ("tools/list", "{}"), 0, 1, NULL },
	{ "resources:*", REQ("resources/list", "{}"), 0, 0, "missing scope" },
	{ "prompts:*", REQ("prompts/list", "{}"), 0, 0, "missing scope" },
	{ GUEST, REQ("resources/list", "{}"), 0, 1, NULL },
	{ GUEST, REQ("resources/templates/list", "{}"), 0, 0, "missing scope" },
	{ GUEST, CALL("search_web"), 0, 0, "missing scope" },
	/* tools: globs on params.name, case-sensitive */
	{ "tools:read_*", CALL("read_file"), 0, 1, NULL },
	{ "tools:read_*", CALL("READ_file"), 0, 0, "missing scope" },
	{ "tools:read_*", CALL("write_file"), 0, 0, "missing scope" },
	{ "tools:search_? tools:echo", CALL("search_1"), 0, 1, NULL },
	{ "tools:search_? tools:echo", CALL("search_12"), 0, 0, "missing scope" },
	{ "tools:search_? tools:echo", CALL("echo"), 0, 1, NULL },
	{ "tools:echo", CALL("echo2"), 0, 0, "missing scope" },
	{ "tools:*", REQ("tools/call", "{\"arguments\":{}}"), 0, 0, "missing tool name" },
	{ "tools:*", REQ("tools/call", "{\"name\":42}"), 0, 0, "missing tool name" },
	{ "tools:*", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", 0, 0,
	    "missing tool name" },
	{ "tools:*", REQ("tools/call", "[\"echo\"]"), 0, 0, "missing tool name" },
	{ "prompts:*", CALL("echo"), 0, 0, "missing scope" },
	/* prompts: */
	{ "prompts:greet*", REQ("prompts/get", "{\"name\":\"greeting\"}"), 0, 1, NULL },
	{ "prompts:greet*", REQ("prompts/get", "{\"name\":\"farewell\"}"), 0, 0, "missing scope" },
	{ "prompts:*", REQ("prompts/get", "{}"), 0, 0, "missing prompt name" },
	{ "tools:*", REQ("prompts/get", "{\"name\":\"greeting\"}"), 0, 0, "missing scope" },
	/* resources: read, subscribe, unsubscribe */
	{ "resources:file:///srv/public/*", READ("file:///srv/public/a.txt"), 0, 1, NULL },
	{ "resources:file:///srv/public/*", READ("file:///srv/private/a.txt"), 0, 0,
	    "missing scope" },
	{ "resources:file:///srv/public/*", REQ("resources/subscribe",
	    "{\"uri\":\"file:///srv/public/a\"}"), 0, 1, NULL },
	{ "resources:file:///srv/public/*", REQ("resources/unsubscribe",
	    "{\"uri\":\"file:///srv/public/a\"}"), 0, 1, NULL },
	{ "resources:*", REQ("resources/read", "{}"), 0, 0, "missing resource uri" },
	{ "tools:*", READ("file:///srv/public/a.txt"), 0, 0, "missing scope" },
	/* traversal and percent-encoding: only a literal scope grants them */
	{ "resources:file:///srv/public/*", READ("file:///srv/public/../secret"), 0, 0,
	    "path traversal" },
	{ "resources:file:///srv/public/*", READ("file:///srv/public/%2e%2e/secret"), 0, 0,
	    "path traversal" },
	{ "resources:file:///srv/public/*", READ("file:///srv/public/a%20b"), 0, 0,
	    "path traversal" },
	{ "resources:file:///srv/public/*", READ("file:///srv/public/..\\\\secret"), 0, 0,
	    "path traversal" },
	{ "resources:file:///srv/public/*", READ("file:///srv/public/x/.."), 0, 0,
	    "path traversal" },
	{ "resources:*", READ("file:..") , 0, 0, "path traversal" },
	{ "resources:file:///srv/public/a%20b", READ("file:///srv/public/a%20b"), 0, 1, NULL },
	{ "resources:file:///srv/public/../x", READ("file:///srv/public/../x"), 0, 1, NULL },
	/* "..." and "..x" are ordinary names, not traversal */
	{ "resources:file:///srv/public/*", READ("file:///srv/public/.../x"), 0, 1, NULL },
	{ "resources:file:///srv/public/*", READ("file:///srv/public/..x"), 0, 1, NULL },
	/* mcp:resources/read grants any URI, like "*" */
	{ "mcp:resources/read", READ("file:///srv/../x"), 0, 1, NULL },
	/* lifecycle: always allowed, even with no scopes at all */
	{ "", REQ("initialize", "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
	    "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}"), 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}", 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
	    "\"params\":{\"requestId\":3}}", 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"notifications/initialized\"}", 0, 0,
	    "missing scope" },
	/* responses to server requests (sampling, roots, elicitation) */
	{ "", "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"roots\":[]}}", 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"error\":{\"code\":-1,\"message\":\"no\"}}",
	    0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}", 0, 1, NULL },
	/* unknown methods */
	{ "tools:* resources:* prompts:*", REQ("sampling/createMessage", "{}"), 0, 0,
	    "missing scope" },
	{ MEMBER, REQ("x/unknown", "{}"), 0, 1, NULL },
	{ "", "{\"jsonrpc\":\"2.0\",\"method\":\"x/unknown\"}", 0, 0, "missing scope" },
	/* invalid JSON-RPC */
	{ "*", "[]", -1, 0, "invalid request" },
	{ "*", "42", -1, 0, "invalid request" },
	{ "*", "{\"id\":1,\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}", -1, 0,
	    "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":1}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"result\":{}}", -1, 0, "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"result\":{}}", -1, 0,
	    "invalid request" },
	{ "*", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":\"x\"}", -1, 0,
	    "invalid request" },
	{ "*", "{}", -1, 0, "invalid request" },
};

static void
test_messages(void)
{
	char buf[1024], *scopes[MAXSCOPES];
	struct policy_result res;
	json_error_t jerr;
	size_t i, n;
	json_t *msg;
	int rc;

	for (i = 0; i < sizeof(msg_cases) / sizeof(msg_cases[0]); i++) {
		const struct msg_case *c = &msg_cases[i];

		n = split_scopes(c->scopes, buf, sizeof(buf), scopes);
		msg = json_loads(c->msg, JSON_DECODE_ANY, &jerr);
		if (msg == NULL) {
			fprintf(stderr, "case %zu: bad test JSON: %s\n", i, jerr.text);
			CHECK(0);
			continue;
		}
		rc = policy_check_message(scopes, n, msg, &res);
		if (rc != c->rc || res.allow != c->allow ||
		    (c->reason != NULL && (res.reason == NULL || strcmp(res.reason, c->reason))))
			fprintf(stderr, "case %zu [%s] %s: rc %d allow %d reason %s\n", i,
			    c->scopes, c->msg, rc, res.allow, res.reason ? res.reason : "-");
		CHECK(rc == c->rc);
		CHECK(res.allow == c->allow);
		if (c->reason != NULL)
			CHECK_STR(res.reason, c->reason);
		json_decref(msg);
	}
}

static void
test_result_fields(void)
{
	char *scopes[] = { "tools:echo", NULL };
	struct policy_result r;
	json_t *m;

	m = json_loads(CALL("echo"), 0, NULL);
	CHECK(policy_check_message(scopes, 1, m, &r) == 0);
	CHECK(r.allow && r.is_request && !r.is_notification && !r.is_response);
	CHECK_STR(r.method, "tools/call");
	CHECK_STR(r.name, "echo");
	CHECK(json_is_integer(r.id) && json_integer_value(r.id) == 1);
	json_decref(m);

	m = json_loads(READ("file:///a"), 0, NULL);
	CHECK(policy_check_message(scopes, 1, m, &r) == 0);
	CHECK(!r.allow);
	CHECK_STR(r.name, "file:///a");
	json_decref(m);

	m = json_loads("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 0, NULL);
	CHECK(policy_check_message(scopes, 1, m, &r) == 0);
	CHECK(r.is_notification && !r.is_request && r.id == NULL && r.name == NULL);
	json_decref(m);

	m = json_loads("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}", 0, NULL);
	CHECK(policy_check_message(scopes, 1, m, &r) == 0);
	CHECK(r.is_response && r.method == NULL && r.allow);
	json_decref(m);
}

static void
test_allows_name(void)
{
	char *s1[] = { "tools:read_*", "resources:file:///pub/*", "prompts:p?", NULL };
	char *s2[] = { "*", NULL };
	char *s3[] = { "mcp:tools/call", NULL };

	CHECK(policy_allows_name(s1, 3, "tools", "read_x") == 1);
	CHECK(policy_allows_name(s1, 3, "tools", "write_x") == 0);
	CHECK(policy_allows_name(s1, 3, "prompts", "p1") == 1);
	CHECK(policy_allows_name(s1, 3, "prompts", "p12") == 0);
	CHECK(policy_allows_name(s1, 3, "resources", "file:///pub/a") == 1);
	CHECK(policy_allows_name(s1, 3, "resources", "file:///pub/../a") == 0);
	CHECK(policy_allows_name(s1, 3, "bogus", "read_x") == 0);
	CHECK(policy_allows_name(s2, 1, "tools", "anything") == 1);
	CHECK(policy_allows_name(s3, 1, "tools", "anything") == 1);
	CHECK(policy_allows_name(s3, 1, "prompts", "anything") == 0);
	CHECK(policy_allows_name(s1, 3, "tools", NULL) == 0);
}

/* Runs policy_filter_listing on text and compares the compact result. */
static void
filter_case(char *const *scopes, size_t n, const char *method, const char *in,
    int expect_rc, const char *expect)
{
	json_t *r = json_loads(in, 0, NULL);
	char *out;
	int rc;

	CHECK(r != NULL);
	if (r == NULL)
		return;
	rc = policy_filter_listing(scopes, n, method, r);
	if (rc != expect_rc)
		fprintf(stderr, "filter %s: rc %d, expected %d\n", method, rc, expect_rc);
	CHECK(rc == expect_rc);
	out = json_dumps(r, JSON_COMPACT);
	CHECK_STR(out, expect);
	free(out);
	json_decref(r);
}

static void
test_filter(void)
{
	char *s[] = { "mcp:tools/list", "tools:read_*", "prompts:greet", "resources:file:///pub/*",
	    NULL };
	char *all[] = { "*", NULL };

	filter_case(s, 4, "tools/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_a\"},"
	    "{\"name\":\"write_b\"},{\"name\":\"read_c\",\"x\":1},{\"noname\":1},\"junk\"],"
	    "\"nextCursor\":\"c\"}}", 3,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_a\"},"
	    "{\"name\":\"read_c\",\"x\":1}],\"nextCursor\":\"c\"}}");
	filter_case(all, 1, "tools/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_a\"},"
	    "{\"name\":\"write_b\"}]}}", 0,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_a\"},"
	    "{\"name\":\"write_b\"}]}}");
	filter_case(s, 4, "prompts/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"greet\"},"
	    "{\"name\":\"greeting\"}]}}", 1,
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"greet\"}]}}");
	filter_case(s, 4, "resources/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resources\":[{\"uri\":\"file:///pub/a\","
	    "\"name\":\"a\"},{\"uri\":\"file:///priv/b\",\"name\":\"b\"},"
	    "{\"uri\":\"file:///pub/%2e%2e/c\",\"name\":\"c\"}]}}", 2,
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resources\":[{\"uri\":\"file:///pub/a\","
	    "\"name\":\"a\"}]}}");
	filter_case(s, 4, "resources/templates/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resourceTemplates\":["
	    "{\"uriTemplate\":\"file:///pub/{name}\"},{\"uriTemplate\":\"db://{table}\"}]}}", 1,
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resourceTemplates\":["
	    "{\"uriTemplate\":\"file:///pub/{name}\"}]}}");
	/* shapes */
	filter_case(s, 4, "tools/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}", 0,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}");
	filter_case(s, 4, "tools/list", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 0,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
	filter_case(s, 4, "tools/list",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{\"name\":\"x\"}}}", -1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{\"name\":\"x\"}}}");
	filter_case(s, 4, "tools/list", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}", -1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}");
	filter_case(s, 4, "tools/list", "{\"jsonrpc\":\"2.0\",\"id\":1}", -1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1}");
	filter_case(s, 4, "tools/call",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}", -1,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}");
	CHECK(policy_filter_listing(s, 4, NULL, NULL) == -1);
}

int
main(void)
{
	test_glob();
	test_scope_valid();
	test_messages();
	test_result_fields();
	test_allows_name();
	test_filter();
	CHECK_DONE();
}
