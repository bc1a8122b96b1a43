/* The per-request HTTP rules: what certgate refuses about a request before it looks
 * at who sent it or what the body says. Pure (no I/O, no shared state), so the
 * request path and the differential fuzz target apply exactly the same rules.
 *
 * In order (the first that applies is the answer): a method other than GET, POST or
 * DELETE (405, with an Allow header line); a body on GET or DELETE (400: MCP defines
 * none, and an upstream that does not read one would parse it as the next request
 * on a pooled connection); a request target that path_target_normalize refuses
 * (400); a header certgate checks (Mcp-Session-Id, Mcp-Method, Mcp-Name,
 * MCP-Protocol-Version, Content-Type) repeated or spelt with '_' (400: some upstream
 * stacks fold '_' into '-', so the spelling we did not check would reach them as the
 * one we did); an unknown MCP-Protocol-Version (400). */
#ifndef CERTGATE_DECIDE_H
#define CERTGATE_DECIDE_H
#include "http.h"

struct decide_http {
	int status;             /* 0: nothing to refuse; else the HTTP status */
	const char *reason;     /* static: for the refusal body, audit and metrics */
	const char *extra;      /* static extra header lines of the refusal, or NULL */
	char *target;           /* malloc'd: the normalized target under the upstream
	                         * prefix (path.h); NULL when refused */
};

/* Applies the rules above to request head m for an upstream whose path prefix is
 * prefix ("/", "" or NULL: none). Returns 0 with *out filled (check out->status), or
 * -1 when out of memory (nothing to free). Free out->target with free(). */
int decide_http_request(const struct http_msg *m, const char *prefix,
    struct decide_http *out);

#endif
