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

/* The whole per-request decision at the end of a request head, over (state, peer,
 * request, now). In order, the first refusal is the answer: no state (503); the
 * certificate revoked (DECIDE_CLOSE: the connection is cut, nothing answered); not
 * mapped to an agent (403); over the agent's rate (429 with Retry-After; the rate
 * table's bucket is taken from, so this is the one side effect, on the table passed
 * in); the HTTP rules above; an Mcp-Session-Id bound to another agent (403) or to none
 * (404: the client starts a new session). What the body says is decided later, when
 * it is complete (mcp.h). */
struct rate_table;
struct session_table;
struct gw_state;
struct identity_peer;
struct identity_agent;

struct decide_ctx {
	const struct gw_state *st;              /* NULL: state unavailable */
	const struct identity_peer *peer;       /* the verified client certificate */
	struct rate_table *rates;
	struct session_table *sessions;
	double rate_per_second, rate_burst;     /* for agents the map gives none */
	const char *prefix;                     /* upstream.path */
	double now;                             /* monotonic seconds (rate buckets) */
};

#define DECIDE_CLOSE (-1)

struct decide_out {
	int status;             /* 0 forward, DECIDE_CLOSE, or the HTTP status */
	const char *reason;     /* static */
	const char *extra;      /* extra header lines of the refusal, or NULL */
	char retry[48];         /* the Retry-After line of a 429 (extra points here) */
	const struct identity_agent *agent;     /* borrowed from st's map, or NULL */
	char *target;           /* malloc'd normalized target, or NULL */
	char *session;          /* malloc'd copy of Mcp-Session-Id, or NULL */
	int session_unknown;    /* the 404 is the session table's: no binding here (an
	                         * instance of a cluster asks the others, cluster.h) */
};

/* Returns 0 with *out filled, or -1 when out of memory (out holds nothing to free).
 * Free with decide_out_free. */
int decide_request(const struct decide_ctx *x, const struct http_msg *m,
    struct decide_out *out);
void decide_out_free(struct decide_out *out);

#endif
