/* The per-request HTTP rules (decide.h). */
#include "decide.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "mcp.h"
#include "path.h"

/* 1 when a header the gateway checks appears twice, or spelt with '_' for '-'. */
static int
decide_dup_header(const struct http_msg *m)
{
	static const char *const once[] = { "Mcp-Session-Id", "Mcp-Method", "Mcp-Name",
	    "MCP-Protocol-Version", "Content-Type", NULL };
	size_t i, j, n;

	for (i = 0; once[i] != NULL; i++) {
		for (j = 0, n = 0; j < m->nh; j++) {
			if (!http_name_eq(m->h[j].name, once[i]))
				continue;
			if (strcasecmp(m->h[j].name, once[i]) != 0 || ++n > 1)
				return 1;
		}
	}
	return 0;
}

static int
decide_refuse(struct decide_http *out, int status, const char *reason, const char *extra)
{
	out->status = status;
	out->reason = reason;
	out->extra = extra;
	return 0;
}

int
decide_http_request(const struct http_msg *m, const char *prefix, struct decide_http *out)
{
	const char *why, *v;
	char *norm = NULL;
	size_t n, cap;

	memset(out, 0, sizeof(*out));
	if (m->method != HTTP_POST && m->method != HTTP_GET && m->method != HTTP_DELETE)
		return decide_refuse(out, 405, "method not allowed",
		    "Allow: GET, POST, DELETE\r\n");
	if (m->method != HTTP_POST && (m->content_length > 0 || m->chunked))
		return decide_refuse(out, 400, "body not allowed on this method", NULL);
	n = strlen(m->url) + 1;
	if ((norm = malloc(n)) == NULL)
		return -1;
	if (path_target_normalize(m->url, norm, n, &why) == -1) {
		free(norm);
		return decide_refuse(out, 400, why, NULL);
	}
	if (decide_dup_header(m)) {
		free(norm);
		return decide_refuse(out, 400, "duplicate MCP header", NULL);
	}
	if ((v = http_msg_get(m, "MCP-Protocol-Version")) != NULL &&
	    !mcp_protocol_version_known(v)) {
		free(norm);
		return decide_refuse(out, 400, "unsupported MCP-Protocol-Version", NULL);
	}
	cap = strlen(norm) + (prefix != NULL ? strlen(prefix) : 0) + 1;
	if ((out->target = malloc(cap)) == NULL) {
		free(norm);
		return -1;
	}
	if (path_under_prefix(prefix, norm, out->target, cap) < 0) {
		free(norm);
		free(out->target);
		out->target = NULL;
		return -1;
	}
	free(norm);
	return 0;
}
