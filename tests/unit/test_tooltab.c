/* tooltab.c: learning from real tools/list responses (server-everything), replacing,
 * continuation pages, list_changed, unusable and conflicting tools, limits, threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tooltab.h"

static json_t *
load_listing(const char *name)
{
	const char *dir = getenv("CERTGATE_SOURCE_DIR");
	char path[1024];

	snprintf(path, sizeof(path), "%s/tests/unit/data/%s", dir ? dir : ".", name);
	return json_load_file(path, 0, NULL);
}

static void
expect(struct tooltab *t, const char *tool, const char *args, int allow, const char *reason,
    const char *detail)
{
	struct tooltab_result res;
	json_t *a = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;

	CHECK(tooltab_check(t, tool, a, &res) == 0);
	if (res.allow != allow || (!allow && (strcmp(res.reason, reason) != 0 ||
	    strstr(res.detail, detail) == NULL)))
		fprintf(stderr, "check %s %s: allow %d reason %s detail \"%s\"\n", tool ? tool : "-",
		    args ? args : "-", res.allow, res.reason ? res.reason : "-", res.detail);
	CHECK(res.allow == allow);
	if (!allow) {
		CHECK(res.reason != NULL && strcmp(res.reason, reason) == 0);
		CHECK(strstr(res.detail, detail) != NULL);
	}
	json_decref(a);
}

static json_t *
listing(const char *tools)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":%s}}", tools);
	return json_loads(buf, 0, NULL);
}

static void
test_everything(void)
{
	json_t *ev = load_listing("tools_list_everything.json"), *l;
	struct tooltab *t = tooltab_new(0, 0);

	CHECK(ev != NULL && t != NULL);
	if (ev == NULL || t == NULL)
		goto done;
	/* before any listing every call is refused */
	expect(t, "echo", "{\"message\":\"hi\"}", 0, "tool never listed",
	    "tool \"echo\" was not listed in this session (call tools/list first)");
	CHECK(tooltab_learn(t, ev, 1) == 13);
	CHECK(tooltab_count(t) == 13);
	expect(t, "echo", "{\"message\":\"hi\"}", 1, NULL, NULL);
	expect(t, "echo", "{}", 0, "invalid arguments", "arguments: missing required property \"message\"");
	expect(t, "echo", NULL, 0, "invalid arguments", "arguments: missing required property \"message\"");
	expect(t, "get-env", NULL, 1, NULL, NULL);   /* absent arguments are {} */
	expect(t, "get-sum", "{\"a\":1,\"b\":\"2\"}", 0, "invalid arguments",
	    "arguments.b: expected number, got string");
	expect(t, "get-resource-links", "{\"count\":99}", 0, "invalid arguments",
	    "arguments.count: 99 is greater than the maximum 10");
	expect(t, "nope", "{}", 0, "tool never listed", "tool \"nope\" was not listed");
	expect(t, NULL, "{}", 0, "tool never listed", "without a tool name");
	expect(t, "ec\"ho\n", "{}", 0, "tool never listed", "tool \"ec?ho?\" was not listed");

	/* notifications/tools/list_changed */
	tooltab_clear(t);
	CHECK(tooltab_count(t) == 0);
	expect(t, "echo", "{\"message\":\"hi\"}", 0, "tool never listed", "call tools/list first");

	/* an error response or a foreign shape changes nothing */
	CHECK(tooltab_learn(t, ev, 1) == 13);
	l = json_loads("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"}}", 0, NULL);
	CHECK(tooltab_learn(t, l, 1) == -1);
	json_decref(l);
	l = json_loads("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{}}}", 0, NULL);
	CHECK(tooltab_learn(t, l, 1) == -1);
	json_decref(l);
	CHECK(tooltab_learn(t, NULL, 1) == -1);
	CHECK(tooltab_count(t) == 13);

	/* a new first page replaces; a continuation page adds */
	l = listing("[{\"name\":\"only\",\"inputSchema\":{\"type\":\"object\",\"additionalProperties\":false}}]");
	CHECK(tooltab_learn(t, l, 1) == 1);
	json_decref(l);
	CHECK(tooltab_count(t) == 1);
	expect(t, "echo", "{\"message\":\"hi\"}", 0, "tool never listed", "not listed");
	expect(t, "only", "{}", 1, NULL, NULL);
	expect(t, "only", "{\"x\":1}", 0, "invalid arguments", "arguments.x: property not allowed");
	CHECK(tooltab_learn(t, ev, 0) == 13);
	CHECK(tooltab_count(t) == 14);
	expect(t, "only", "{}", 1, NULL, NULL);
	expect(t, "echo", "{\"message\":\"hi\"}", 1, NULL, NULL);
done:
	tooltab_free(t);
	json_decref(ev);
}

static void
test_odd_listings(void)
{
	struct tooltab *t = tooltab_new(0, 0);
	json_t *l;

	l = listing("[5, {\"name\":5}, {\"name\":\"\"}, {\"title\":\"no name\"},"
	    " {\"name\":\"noschema\"},"
	    " {\"name\":\"bad\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"q\":{\"pattern\":\"(\"}}}},"
	    " {\"name\":\"twice\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}},"
	    " {\"name\":\"twice\",\"inputSchema\":{\"properties\":{\"a\":{\"type\":\"string\"}},\"type\":\"object\"}},"
	    " {\"name\":\"clash\",\"inputSchema\":{\"type\":\"object\"}},"
	    " {\"name\":\"clash\",\"inputSchema\":{\"type\":\"object\",\"required\":[\"x\"]}}]");
	CHECK(tooltab_learn(t, l, 1) == 4);
	CHECK(tooltab_count(t) == 4);
	expect(t, "noschema", "{}", 0, "unusable inputSchema", "tool \"noschema\": no inputSchema");
	expect(t, "bad", "{}", 0, "unusable inputSchema",
	    "tool \"bad\": inputSchema not usable: $.properties.q: pattern: PCRE2: missing closing parenthesis");
	/* the same schema twice (key order aside) is one tool */
	expect(t, "twice", "{\"a\":\"x\"}", 1, NULL, NULL);
	expect(t, "clash", "{}", 0, "unusable inputSchema", "listed more than once with different inputSchemas");
	json_decref(l);
	tooltab_free(t);
	tooltab_free(NULL);
	tooltab_clear(NULL);
	CHECK(tooltab_count(NULL) == 0);
}

static void
test_limits(void)
{
	struct tooltab *t = tooltab_new(2, 0);
	json_t *l;

	l = listing("[{\"name\":\"a\",\"inputSchema\":{}},{\"name\":\"b\",\"inputSchema\":{}},"
	    "{\"name\":\"c\",\"inputSchema\":{}}]");
	CHECK(tooltab_learn(t, l, 1) == 2);
	expect(t, "a", "{}", 1, NULL, NULL);
	expect(t, "c", "{}", 0, "tool never listed",
	    "tool \"c\" was not learnt: the session's tools/list exceeded the gateway's limit of 2 tools");
	tooltab_free(t);

	/* bytes: the compiled size counts */
	t = tooltab_new(0, 1000);
	CHECK(tooltab_learn(t, l, 1) >= 1);
	CHECK(tooltab_count(t) < 3);
	expect(t, "c", "{}", 0, "tool never listed", "bytes of schemas");
	json_decref(l);
	tooltab_free(t);
}

/* Concurrent learn/clear/check from several threads (run under TSan/ASan for races). */
static struct tooltab *shared;
static json_t *shared_listing;

static void *
worker(void *arg)
{
	struct tooltab_result res;
	json_t *a = json_loads("{\"message\":\"hi\"}", 0, NULL);
	int i, id = (int)(long)arg;

	for (i = 0; i < 300; i++) {
		if (id == 0 && i % 10 == 0)
			tooltab_learn(shared, shared_listing, 1);
		else if (id == 1 && i % 25 == 0)
			tooltab_clear(shared);
		tooltab_check(shared, "echo", a, &res);
		if (res.allow != 0 && res.allow != 1)
			abort();
	}
	json_decref(a);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t th[4];
	long i;

	shared = tooltab_new(0, 0);
	shared_listing = load_listing("tools_list_everything.json");
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK(tooltab_count(shared) == 0 || tooltab_count(shared) == 13);
	tooltab_free(shared);
	json_decref(shared_listing);
}

int
main(void)
{
	test_everything();
	test_odd_listings();
	test_limits();
	test_threads();
	CHECK_DONE();
}
