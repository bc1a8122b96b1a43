/* Fuzz target: the agent's SSE interpreter (agent_sse.c). The first byte picks where
 * the rest is cut in two; the events must be the same as when it is fed whole and
 * when it is fed byte by byte, every event's data is NUL-terminated at its length,
 * and nothing is kept beyond the limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_sse.h"
#include "buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXEV 4096

static int
note(void *arg, const struct agent_sse_event *ev)
{
	struct buf *b = arg;

	if (ev->data[ev->len] != '\0' || ev->len > MAXEV || ev->type[0] == '\0')
		abort();
	buf_addu(b, ev->len);
	buf_addc(b, ':');
	buf_add(b, ev->data, ev->len);
	buf_adds(b, ev->type);
	buf_addc(b, '\0');
	buf_adds(b, ev->id);
	buf_addc(b, '\n');
	return 0;
}

static int
feed(const char *p, size_t n, size_t cut, struct buf *out, char **last)
{
	struct agent_sse *s = agent_sse_new(MAXEV);
	size_t i;
	int rc = 0;

	if (s == NULL)
		abort();
	if (cut == (size_t)-1) {
		for (i = 0; i < n && rc == 0; i++)
			rc = agent_sse_feed(s, p + i, 1, note, out);
	} else {
		rc = agent_sse_feed(s, p, cut, note, out);
		if (rc == 0)
			rc = agent_sse_feed(s, p + cut, n - cut, note, out);
	}
	if (rc == -1 && agent_sse_error(s) == NULL)
		abort();
	*last = strdup(agent_sse_last_id(s));
	agent_sse_free(s);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b, c;
	char *la, *lb, *lc;
	const char *p;
	size_t n, cut;
	int ra, rb, rc;

	if (size == 0)
		return 0;
	p = (const char *)data + 1;
	n = size - 1;
	cut = n ? data[0] % (n + 1) : 0;
	buf_init(&a);
	buf_init(&b);
	buf_init(&c);
	ra = feed(p, n, n, &a, &la);
	rb = feed(p, n, cut, &b, &lb);
	rc = feed(p, n, (size_t)-1, &c, &lc);
	/* Where the input is cut cannot matter (unless the limit was hit, which may
	 * happen at different points of an over-long event). */
	if (ra == 0 && rb == 0 && rc == 0) {
		if (a.len != b.len || a.len != c.len || memcmp(a.p, b.p, a.len) != 0 ||
		    memcmp(a.p, c.p, a.len) != 0 || strcmp(la, lb) != 0 || strcmp(la, lc) != 0)
			abort();
	}
	free(la);
	free(lb);
	free(lc);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
	return 0;
}
