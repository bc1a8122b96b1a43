/* stdiomap.c: id rewriting, response routing, progress, server-initiated messages,
 * the GET queue, cancellation, clients that go away, bounds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stdiomap.h"

static json_t *
J(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	if (j == NULL)
		fprintf(stderr, "bad test JSON: %s\n", s);
	return j;
}

/* Sends a client message through the map; returns the (rewritten) message. */
static json_t *
post_msg(struct stdiomap *m, uint64_t post, const char *s, enum stdiomap_kind want)
{
	enum stdiomap_kind k = (enum stdiomap_kind)-1;
	json_t *j = J(s);

	CHECK(stdiomap_post_message(m, post, j, &k) == 0);
	CHECK(k == want);
	return j;
}

static json_int_t
gid_of(json_t *j)
{
	return json_integer_value(json_object_get(j, "id"));
}

/* A response from the server for gateway id gid. */
static json_t *
response(json_int_t gid)
{
	return json_pack("{s:s,s:I,s:{}}", "jsonrpc", "2.0", "id", (json_int_t)gid, "result");
}

static void
test_basic(void)
{
	struct stdiomap *m = stdiomap_new(0, 0, 0);
	struct stdiomap_route r;
	uint64_t a, b;
	json_t *ra, *rb, *resp, *n;

	a = stdiomap_post_open(m);
	b = stdiomap_post_open(m);
	CHECK(a != 0 && b != 0 && a != b);
	/* both POSTs use id 1: the server sees two different ids */
	ra = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", STDIOMAP_REQUEST);
	rb = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", STDIOMAP_REQUEST);
	CHECK(gid_of(ra) != gid_of(rb));
	CHECK(stdiomap_post_waiting(m, a) == 1 && stdiomap_post_waiting(m, b) == 1);
	CHECK(stdiomap_pending(m) == 2);

	/* b's answer first, then a's; each with id 1 again, to the right POST */
	resp = response(gid_of(rb));
	CHECK(stdiomap_route(m, resp, &r) == 0);
	CHECK(r.dest == STDIOMAP_TO_POST && r.post == b && r.post_done == 1);
	CHECK(json_integer_value(json_object_get(resp, "id")) == 1);
	json_decref(resp);
	resp = response(gid_of(ra));
	CHECK(stdiomap_route(m, resp, &r) == 0);
	CHECK(r.dest == STDIOMAP_TO_POST && r.post == a && r.post_done == 1);
	CHECK(json_integer_value(json_object_get(resp, "id")) == 1);
	json_decref(resp);
	CHECK(stdiomap_pending(m) == 0);
	/* the same answer again: no request any more */
	resp = response(gid_of(ra));
	CHECK(stdiomap_route(m, resp, &r) == 0 && r.dest == STDIOMAP_DROPPED);
	CHECK_STR(r.why, "response to no pending request");
	json_decref(resp);
	stdiomap_post_close(m, a);
	stdiomap_post_close(m, b);

	/* string ids are kept as strings */
	a = stdiomap_post_open(m);
	json_decref(ra);
	ra = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}", STDIOMAP_REQUEST);
	CHECK(json_is_integer(json_object_get(ra, "id")));
	resp = json_pack("{s:s,s:I,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", gid_of(ra), "error",
	    "code", -32601, "message", "nope");
	CHECK(stdiomap_route(m, resp, &r) == 0 && r.dest == STDIOMAP_TO_POST && r.post == a);
	CHECK_STR(json_string_value(json_object_get(resp, "id")), "abc");
	json_decref(resp);

	/* notifications and client responses: nothing awaited */
	n = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
	    STDIOMAP_NOTIFICATION);
	json_decref(n);
	n = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"roots\":[]}}", STDIOMAP_RESPONSE);
	CHECK(json_integer_value(json_object_get(n, "id")) == 7);   /* server's id, unchanged */
	json_decref(n);
	CHECK(stdiomap_post_waiting(m, a) == 0);
	json_decref(ra);
	json_decref(rb);
	stdiomap_free(m);
}

static void
test_batch_and_progress(void)
{
	struct stdiomap *m = stdiomap_new(0, 0, 0);
	struct stdiomap_route r;
	uint64_t a, b;
	json_t *r1, *r2, *rb, *j;

	a = stdiomap_post_open(m);
	b = stdiomap_post_open(m);
	r1 = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
	    "{\"name\":\"slow\",\"_meta\":{\"progressToken\":\"tok-a\"}}}", STDIOMAP_REQUEST);
	r2 = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", STDIOMAP_REQUEST);
	rb = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
	    "{\"name\":\"slow\",\"_meta\":{\"progressToken\":7}}}", STDIOMAP_REQUEST);
	CHECK(stdiomap_post_waiting(m, a) == 2);

	/* progress goes to the POST whose request carried the token, even if b is newer */
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
	    "{\"progressToken\":\"tok-a\",\"progress\":1}}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_TO_POST && r.post == a &&
	    r.post_done == 0);
	json_decref(j);
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
	    "{\"progressToken\":7,\"progress\":1}}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_TO_POST && r.post == b);
	json_decref(j);
	/* an unknown token: like any other server message (latest waiting POST: b) */
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
	    "{\"progressToken\":\"zzz\",\"progress\":1}}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_TO_POST && r.post == b);
	json_decref(j);

	/* the batch POST ends with its last response */
	j = response(gid_of(r2));
	CHECK(stdiomap_route(m, j, &r) == 0 && r.post == a && r.post_done == 0);
	json_decref(j);
	j = response(gid_of(r1));
	CHECK(stdiomap_route(m, j, &r) == 0 && r.post == a && r.post_done == 1);
	json_decref(j);
	json_decref(r1);
	json_decref(r2);
	json_decref(rb);
	stdiomap_free(m);
}

static void
test_unsolicited(void)
{
	struct stdiomap *m = stdiomap_new(0, 3, 0);
	struct stdiomap_route r;
	uint64_t a;
	json_t *req, *j, *q;
	int i;

	/* nothing open: queued for the next GET stream */
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_QUEUED);
	json_decref(j);   /* the map kept its own reference */
	/* a waiting POST takes server requests (sampling inside a tool call) */
	a = stdiomap_post_open(m);
	req = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", STDIOMAP_REQUEST);
	j = J("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_TO_POST && r.post == a);
	CHECK(json_integer_value(json_object_get(j, "id")) == 0);   /* server ids untouched */
	json_decref(j);
	/* with a GET stream open, it goes there */
	CHECK(stdiomap_get_open(m) == 0);
	CHECK(stdiomap_get_open(m) == -1 && errno == EBUSY);
	q = stdiomap_queue_pop(m);
	CHECK(q != NULL && strcmp(json_string_value(json_object_get(q, "method")),
	    "notifications/tools/list_changed") == 0);
	json_decref(q);
	CHECK(stdiomap_queue_pop(m) == NULL);
	j = J("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"roots/list\"}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_TO_GET);
	json_decref(j);
	stdiomap_get_close(m);
	/* the POST's client goes away: its response is dropped, not misrouted */
	stdiomap_post_close(m, a);
	j = response(gid_of(req));
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_DROPPED);
	CHECK_STR(r.why, "response for a client that went away");
	json_decref(j);
	json_decref(req);
	CHECK(stdiomap_pending(m) == 0);
	/* the queue is bounded (3 here) */
	for (i = 0; i < 5; i++) {
		j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"x\"}}");
		CHECK(stdiomap_route(m, j, &r) == 0);
		CHECK(r.dest == (i < 3 ? STDIOMAP_QUEUED : STDIOMAP_DROPPED));
		json_decref(j);
	}
	stdiomap_free(m);   /* frees the queued messages (ASan checks) */

	/* the byte bound */
	m = stdiomap_new(0, 100, 200);
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":"
	    "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}");
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_QUEUED);
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_DROPPED);
	json_decref(j);
	stdiomap_free(m);
}

static void
test_cancel(void)
{
	struct stdiomap *m = stdiomap_new(0, 0, 0);
	uint64_t a, b;
	json_t *ra, *rb, *c;

	a = stdiomap_post_open(m);
	ra = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\"}", STDIOMAP_REQUEST);
	b = stdiomap_post_open(m);
	c = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
	    "{\"requestId\":5,\"reason\":\"user\"}}", STDIOMAP_NOTIFICATION);
	CHECK(json_integer_value(json_object_get(json_object_get(c, "params"), "requestId")) ==
	    gid_of(ra));
	json_decref(c);
	/* an id nobody uses is left as it is */
	c = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
	    "{\"requestId\":\"other\"}}", STDIOMAP_NOTIFICATION);
	CHECK_STR(json_string_value(json_object_get(json_object_get(c, "params"), "requestId")),
	    "other");
	json_decref(c);
	/* the most recent of two pending requests with the same client id */
	rb = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\"}", STDIOMAP_REQUEST);
	c = post_msg(m, b, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
	    "{\"requestId\":5}}", STDIOMAP_NOTIFICATION);
	CHECK(json_integer_value(json_object_get(json_object_get(c, "params"), "requestId")) ==
	    gid_of(rb));
	json_decref(c);
	json_decref(ra);
	json_decref(rb);
	stdiomap_free(m);
}

static void
test_bounds_and_errors(void)
{
	struct stdiomap *m = stdiomap_new(2, 0, 0);
	enum stdiomap_kind k;
	struct stdiomap_route r;
	uint64_t a, b;
	json_t *j, *x, *y;

	a = stdiomap_post_open(m);
	x = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}", STDIOMAP_REQUEST);
	y = post_msg(m, a, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"b\"}", STDIOMAP_REQUEST);
	j = J("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"c\"}");
	CHECK(stdiomap_post_message(m, a, j, &k) == -1 && errno == ENOSPC);
	CHECK(json_integer_value(json_object_get(j, "id")) == 3);   /* untouched */
	/* once a's client is gone its requests make room */
	stdiomap_post_close(m, a);
	b = stdiomap_post_open(m);
	CHECK(stdiomap_post_message(m, b, j, &k) == 0 && k == STDIOMAP_REQUEST);
	CHECK(stdiomap_pending(m) == 2);
	json_decref(j);
	/* unknown or closed post */
	j = J("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}");
	CHECK(stdiomap_post_message(m, a, j, &k) == -1 && errno == ENOENT);
	CHECK(stdiomap_post_message(m, 9999, j, &k) == -1 && errno == ENOENT);
	json_decref(j);
	/* not JSON-RPC */
	j = J("{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"x\"}");
	CHECK(stdiomap_post_message(m, b, j, &k) == -1 && errno == EINVAL);
	json_decref(j);
	j = J("{\"jsonrpc\":\"2.0\"}");
	CHECK(stdiomap_post_message(m, b, j, &k) == -1 && errno == EINVAL);
	CHECK(stdiomap_route(m, j, &r) == -1 && r.dest == STDIOMAP_DROPPED);
	json_decref(j);
	j = J("[1]");
	CHECK(stdiomap_post_message(m, b, j, &k) == -1 && errno == EINVAL);
	CHECK(stdiomap_route(m, j, &r) == -1 && r.dest == STDIOMAP_DROPPED);
	json_decref(j);
	j = J("{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{}}");   /* gateway ids are integers */
	CHECK(stdiomap_route(m, j, &r) == 0 && r.dest == STDIOMAP_DROPPED);
	json_decref(j);
	CHECK(stdiomap_post_waiting(m, 12345) == 0);
	stdiomap_post_close(m, 12345);
	json_decref(x);
	json_decref(y);
	stdiomap_free(m);
	stdiomap_free(NULL);
}

int
main(void)
{
	test_basic();
	test_batch_and_progress();
	test_unsolicited();
	test_cancel();
	test_bounds_and_errors();
	CHECK_DONE();
}
