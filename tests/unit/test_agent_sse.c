/* agent_sse.c: the WHATWG event stream interpretation, table-driven; every stream
 * is also fed one byte at a time and split at every position, which must not
 * change the events. */
#include <stdlib.h>
#include <string.h>

#include "agent_sse.h"
#include "buf.h"
#include "check.h"

struct sse_case {
	const char *in;
	size_t len;         /* 0: strlen */
	const char *want;   /* events as "type|id|data\n", data's LF shown as '/' */
	const char *last_id;
	long retry;
};

static const struct sse_case cases[] = {
	{ "data: a\n\n", 0, "message||a\n", "", -1 },
	{ "data:a\n\n", 0, "message||a\n", "", -1 },
	{ "data:  a\n\n", 0, "message|| a\n", "", -1 },
	{ "data: a\r\n\r\n", 0, "message||a\n", "", -1 },
	{ "data: a\r\rdata: b\r\r", 0, "message||a\nmessage||b\n", "", -1 },
	{ "data: a\ndata: b\n\n", 0, "message||a/b\n", "", -1 },
	{ "data\n\n", 0, "message||\n", "", -1 },        /* empty data line: "\n" then cut */
	{ "data\ndata\n\n", 0, "message||/\n", "", -1 },
	{ "data: a\n", 0, "", "", -1 },                  /* no blank line: not dispatched */
	{ ": comment\ndata: x\n\n", 0, "message||x\n", "", -1 },
	{ "event: ping\ndata: 1\n\ndata: 2\n\n", 0, "ping||1\nmessage||2\n", "", -1 },
	{ "id: 7\ndata: x\n\n", 0, "message|7|x\n", "7", -1 },
	{ "id: 7\n\ndata: x\n\n", 0, "message|7|x\n", "7", -1 },   /* priming event */
	{ "id: 7\ndata: x\n\nid\ndata: y\n\n", 0, "message|7|x\nmessage||y\n", "", -1 },
	{ "id: a\0b\ndata: x\n\n", 17, "message||x\n", "", -1 },    /* NUL: ignored */
	{ "retry: 1500\n\n", 0, "", "", 1500 },
	{ "retry: 15x\n\n", 0, "", "", -1 },
	{ "retry:\n\n", 0, "", "", -1 },
	{ "\xef\xbb\xbf" "data: bom\n\n", 0, "message||bom\n", "", -1 },
	{ "\xef\xbb" "data: nobom\n\n", 0, "", "", -1 },       /* field "\xef\xbbdata" */
	{ "data: \xef\xbb\xbf\n\n", 0, "message||\xef\xbb\xbf\n", "", -1 },
	{ "foo: bar\ndata: x\n\n", 0, "message||x\n", "", -1 },
	{ "data: {\"a\":1}\n\n\n\ndata: 2\n\n", 0, "message||{\"a\":1}\nmessage||2\n", "", -1 },
	{ "event: e\n\ndata: d\n\n", 0, "message||d\n", "", -1 },  /* type reset */
	{ "data: a:b: c\n\n", 0, "message||a:b: c\n", "", -1 },
};

static int
collect(void *arg, const struct agent_sse_event *ev)
{
	struct buf *b = arg;
	size_t i;

	buf_adds(b, ev->type);
	buf_addc(b, '|');
	buf_adds(b, ev->id);
	buf_addc(b, '|');
	for (i = 0; i < ev->len; i++)
		buf_addc(b, ev->data[i] == '\n' ? '/' : ev->data[i]);
	buf_addc(b, '\n');
	return 0;
}

static int
stop(void *arg, const struct agent_sse_event *ev)
{
	return -1;
}

/* Feeds in pieces: split at cut (0: whole), or byte by byte when cut is -1. */
static int
run(const struct sse_case *c, long cut, struct buf *out, char *last, long *retry)
{
	struct agent_sse *s = agent_sse_new(0);
	size_t n = c->len ? c->len : strlen(c->in), i;
	int rc = 0;

	if (cut < 0) {
		for (i = 0; i < n && rc == 0; i++)
			rc = agent_sse_feed(s, c->in + i, 1, collect, out);
	} else {
		rc = agent_sse_feed(s, c->in, (size_t)cut, collect, out);
		if (rc == 0)
			rc = agent_sse_feed(s, c->in + cut, n - (size_t)cut, collect, out);
	}
	snprintf(last, 64, "%s", agent_sse_last_id(s));
	*retry = agent_sse_retry_ms(s);
	agent_sse_free(s);
	return rc;
}

int
main(void)
{
	struct agent_sse *s;
	struct buf out;
	char last[64], *big;
	long retry, cut;
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = cases[i].len ? cases[i].len : strlen(cases[i].in);
		for (cut = -1; cut <= (long)n; cut++) {
			buf_init(&out);
			CHECK(run(&cases[i], cut, &out, last, &retry) == 0);
			if (strcmp(buf_str(&out), cases[i].want) != 0)
				fprintf(stderr, "case %zu cut %ld: got '%s'\n", i, cut, buf_str(&out));
			CHECK_STR(buf_str(&out), cases[i].want);
			CHECK_STR(last, cases[i].last_id);
			CHECK(retry == cases[i].retry);
			buf_free(&out);
		}
	}

	/* The callback stops the feed. */
	s = agent_sse_new(0);
	CHECK(agent_sse_feed(s, "data: a\n\n", 9, stop, NULL) == -1);
	CHECK_STR(agent_sse_error(s), "stopped");
	CHECK(agent_sse_feed(s, "data: b\n\n", 9, collect, NULL) == -1);
	agent_sse_free(s);

	/* An event over the limit fails the stream instead of growing. */
	s = agent_sse_new(64);
	big = malloc(200);
	memset(big, 'x', 200);
	memcpy(big, "data: ", 6);
	CHECK(agent_sse_feed(s, big, 200, collect, NULL) == -1);
	CHECK_STR(agent_sse_error(s), "event too large");
	agent_sse_free(s);
	s = agent_sse_new(64);
	buf_init(&out);
	for (i = 0; i < 10; i++)
		if (agent_sse_feed(s, "data: 0123456789\n", 17, collect, &out) == -1)
			break;
	CHECK(i < 10);
	CHECK(agent_sse_error(s) != NULL);
	buf_free(&out);
	agent_sse_free(s);
	/* Under the limit is fine, and the limit applies per event. */
	s = agent_sse_new(64);
	buf_init(&out);
	for (i = 0; i < 50; i++)
		CHECK(agent_sse_feed(s, "data: 0123456789\n\n", 18, collect, &out) == 0);
	CHECK(out.len == 50 * strlen("message||0123456789\n"));
	buf_free(&out);
	agent_sse_free(s);
	free(big);

	/* A resumed stream starts from the previous last event ID. */
	s = agent_sse_new(0);
	CHECK(agent_sse_set_last_id(s, "41") == 0);
	CHECK_STR(agent_sse_last_id(s), "41");
	buf_init(&out);
	CHECK(agent_sse_feed(s, "data: x\n\n", 9, collect, &out) == 0);
	CHECK_STR(buf_str(&out), "message|41|x\n");
	CHECK(agent_sse_set_last_id(s, NULL) == 0);
	CHECK_STR(agent_sse_last_id(s), "");
	big = malloc(2000);
	memset(big, 'i', 1999);
	big[1999] = '\0';
	CHECK(agent_sse_set_last_id(s, big) == -1);
	free(big);
	buf_free(&out);
	agent_sse_free(s);
	CHECK_DONE();
}
