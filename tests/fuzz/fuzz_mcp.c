/* Fuzz target: MCP request inspection, JSON listing filter and the SSE filter with a
 * fixed scope set. The input is used three ways: as a request body, as a response
 * body and as an event stream fed in chunks whose sizes come from the input itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *scopes[] = { "mcp:tools/list", "mcp:prompts/list", "mcp:resources/*",
	"tools:read_*", "tools:echo", "resources:file:///pub/*", "prompts:p?", NULL };
#define NSCOPES 7

static int
sink(void *arg, const char *p, size_t n)
{
	size_t *total = arg;

	/* touch every byte so ASan sees reads past the end */
	while (n-- > 0)
		*total += (unsigned char)*p++;
	return 0;
}

static void
fuzz_sse(const struct mcp_pending_list *lists, size_t nlists, const uint8_t *data,
    size_t size)
{
	struct mcp_sse *s;
	size_t pos = 0, n, total = 0, step;

	/* small max_event so the oversized paths run too */
	s = mcp_sse_new(lists, nlists, scopes, NSCOPES, size > 0 ? 64 + data[0] * 4 : 0);
	if (s == NULL)
		return;
	step = size > 1 ? data[1] : 1;
	while (pos < size) {
		n = 1 + (step + pos) % 23;
		if (n > size - pos)
			n = size - pos;
		if (mcp_sse_feed(s, (const char *)data + pos, n, sink, &total) != 0)
			break;
		pos += n;
	}
	mcp_sse_finish(s, sink, &total);
	mcp_sse_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mcp_pending_list fixed[3];
	struct mcp_inspect in;
	size_t outlen;
	char *out;

	if (mcp_inspect_body((const char *)data, size, scopes, NSCOPES, NULL, NULL, &in) == 0) {
		if (in.status != 0 && in.error_body == NULL)
			abort();
		if (in.status == 0 && in.error_body != NULL)
			abort();
		mcp_inspect_free(&in);
	}
	if (mcp_inspect_body((const char *)data, size, scopes, NSCOPES, "tools/call", "echo",
	    &in) == 0)
		mcp_inspect_free(&in);

	fixed[0].id = json_integer(1);
	fixed[0].method = "tools/list";
	fixed[1].id = json_string("p");
	fixed[1].method = "prompts/list";
	fixed[2].id = json_integer(3);
	fixed[2].method = "resources/templates/list";
	out = mcp_filter_json((const char *)data, size, fixed, 3, scopes, NSCOPES, &outlen);
	if (out != NULL && strlen(out) != outlen)
		abort();
	free(out);
	fuzz_sse(fixed, 3, data, size);
	fuzz_sse(fixed, 1, data, size);
	fuzz_sse(NULL, 0, data, size);
	json_decref(fixed[0].id);
	json_decref(fixed[1].id);
	json_decref(fixed[2].id);
	return 0;
}
