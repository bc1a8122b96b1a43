/* path.h: dot-segment removal (RFC 3986 §5.2.4 examples and more), request-target
 * normalization, prefix mapping, containment. Table-driven. */
#include <string.h>

#include "check.h"
#include "path.h"

static const struct { const char *in, *out; } dots[] = {
	{ "/", "/" },
	{ "/a/b/c/./../../g", "/a/g" },     /* RFC 3986 §5.2.4 */
	{ "/mid/content=5/../6", "/mid/6" },/* RFC 3986 §5.2.4 */
	{ "/mcp/../x", "/x" },
	{ "/mcp/..", "/" },
	{ "/mcp/.", "/mcp/" },
	{ "/mcp/./x", "/mcp/x" },
	{ "/..", "/" },
	{ "/../../x", "/x" },
	{ "/.", "/" },
	{ "/a/b/..", "/a/" },
	{ "/a/...", "/a/..." },
	{ "/a/.b/..c", "/a/.b/..c" },
	{ "/mcp/", "/mcp/" },
	{ "/mcp", "/mcp" },
	{ "/a/b/../../../c", "/c" },
};

static const struct { const char *in, *out; } targets[] = {
	{ "/mcp", "/mcp" },
	{ "/mcp?x=1", "/mcp?x=1" },
	{ "/mcp/a/../b?q=/../", "/mcp/b?q=/../" },   /* the query is not a path */
	{ "/mcp/../x", "/x" },
	{ "/mcp/./../x", "/x" },
	{ "/mcp/%41", "/mcp/%41" },                 /* other escapes pass as sent */
	{ "/mcp/%2e%2e/x", NULL },
	{ "/mcp/%2E%2E/x", NULL },
	{ "/mcp/.%2e/x", NULL },
	{ "/mcp/..%2fx", NULL },
	{ "/mcp%2F..", NULL },
	{ "/mcp/..%5cx", NULL },
	{ "/mcp/..\\x", NULL },
	{ "/mcp/%00", NULL },
	{ "/mcp/%", NULL },
	{ "/mcp/%4", NULL },
	{ "/mcp/%zz", NULL },
	{ "//mcp", NULL },
	{ "/mcp//x", NULL },
	{ "/mcp#frag", NULL },
	{ "mcp", NULL },
	{ "*", NULL },
	{ "http://h/mcp", NULL },
};

static const struct { const char *prefix, *target, *out; } prefixes[] = {
	{ "/mcp", "/mcp", "/mcp" },
	{ "/mcp", "/mcp/", "/mcp/" },
	{ "/mcp", "/mcp?x", "/mcp?x" },
	{ "/mcp", "/mcp/a", "/mcp/a" },
	{ "/mcp", "/x", "/mcp/x" },
	{ "/mcp", "/mcpx", "/mcp/mcpx" },
	{ "/mcp", "/", "/mcp/" },
	{ "/mcp/", "/x", "/mcp/x" },
	{ "/", "/x", "/x" },
	{ "", "/x", "/x" },
	{ NULL, "/x", "/x" },
};

static const struct { const char *path, *dir; int under; } unders[] = {
	{ "/srv/data", "/srv/data", 1 },
	{ "/srv/data/x", "/srv/data", 1 },
	{ "/srv/data/x", "/srv/data/", 1 },
	{ "/srv/data2", "/srv/data", 0 },
	{ "/srv", "/srv/data", 0 },
	{ "/anything", "/", 1 },
	{ "relative", "/", 0 },
};

int
main(void)
{
	char out[256];
	const char *why;
	size_t i;
	long n;

	for (i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
		n = path_remove_dots(dots[i].in, strlen(dots[i].in), out, sizeof(out));
		CHECK(n == (long)strlen(dots[i].out));
		CHECK_STR(out, dots[i].out);
	}
	CHECK(path_remove_dots("a/b", 3, out, sizeof(out)) == -1);
	CHECK(path_remove_dots("/abc", 4, out, 4) == -1);
	for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		int rc = path_target_normalize(targets[i].in, out, sizeof(out), &why);

		if (targets[i].out == NULL) {
			CHECK(rc == -1 && why != NULL);
			if (rc != -1)
				fprintf(stderr, "  accepted %s as %s\n", targets[i].in, out);
		} else {
			CHECK(rc == 0);
			CHECK_STR(out, targets[i].out);
		}
	}
	CHECK(path_target_normalize("/abcdef", out, 4, &why) == -1);
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		n = path_under_prefix(prefixes[i].prefix, prefixes[i].target, out, sizeof(out));
		CHECK(n == (long)strlen(prefixes[i].out));
		CHECK_STR(out, prefixes[i].out);
	}
	CHECK(path_under_prefix("/mcp", "/xyz", out, 6) == -1);
	for (i = 0; i < sizeof(unders) / sizeof(unders[0]); i++)
		CHECK(path_is_under(unders[i].path, unders[i].dir) == unders[i].under);
	CHECK_DONE();
}
