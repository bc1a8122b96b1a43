/* MCP JSON-RPC inspection: request bodies against the policy, error bodies, and
 * filtering of listing responses (application/json and text/event-stream). Pure
 * functions, no I/O: the proxy feeds bytes and writes what comes out. */
#ifndef CERTGATE_MCP_H
#define CERTGATE_MCP_H
#include <jansson.h>
#include <stddef.h>

#include "policy.h"

/* JSON-RPC error codes used in refusals. */
#define MCP_ERR_PARSE        (-32700)
#define MCP_ERR_INVALID      (-32600)
#define MCP_ERR_FORBIDDEN    (-32001)
#define MCP_ERR_RATE_LIMITED (-32002)
#define MCP_ERR_GATEWAY      (-32003)
#define MCP_ERR_PARAMS       (-32602)   /* invalid params (schema checks) */

/* The reason of the 403 for a verified certificate that no agent of the identity
 * map matches; refusals carry it as the JSON-RPC error message "certgate: REASON".
 * certgate agent recognises it (a certificate enrolled a moment ago: the gateway
 * has not loaded the new agent yet), so it is part of the outside contract. */
#define MCP_REASON_UNMAPPED  "certificate is not mapped to an agent"

/* What a Content-Type value says a body is, parsed per RFC 9110 §8.3.1 (type and
 * subtype case-insensitive, OWS around ';', parameters token=token|quoted-string).
 * Anything else, malformed values included, is MCP_MEDIA_OTHER: a listing response
 * of another type is refused rather than guessed at. */
enum mcp_media { MCP_MEDIA_OTHER = 0, MCP_MEDIA_JSON, MCP_MEDIA_SSE };
enum mcp_media mcp_media_kind(const char *value);

/* Protocol revisions certgate knows (MCP-Protocol-Version header). 1 if known. */
int mcp_protocol_version_known(const char *v);

/* A request seen in the body. Entries with a method are listing requests whose
 * responses must be filtered; entries with an id and method NULL are the body's other
 * requests, whose responses pass unchanged: with both, a filter knows every response
 * the upstream may send, and fails closed on one it does not know (an id of another
 * JSON type, an id no request had). An entry with id and method NULL (only built by
 * callers of mcp_sse_new / mcp_filter_json, never by mcp_inspect_body) matches every
 * response whose result is shaped like a listing (tools, prompts, resources,
 * resourceTemplates) and never counts as answered: used for GET streams, on which a
 * server may replay earlier responses (Last-Event-ID). */
struct mcp_pending_list {
	json_t *id;            /* owned reference, or NULL (see above) */
	const char *method;    /* static: "tools/list", "prompts/list", "resources/list",
	                        * "resources/templates/list"; NULL for other requests */
	int first_page;        /* the request had no params.cursor */
};

/* What, besides its scopes, decides an agent's calls. */
struct argrule_set;
/* Checks a tools/call's arguments against what the upstream advertised (the
 * session's tool table): returns 1 allow, 0 deny with a static reason and a detail
 * written to detail[0..len). */
typedef int (*mcp_validate_fn)(void *arg, const char *tool, json_t *arguments,
    const char **reason, char *detail, size_t len);
struct mcp_authz {
	char *const *scopes;            /* effective scopes */
	size_t nscopes;
	struct argrule_set *const *rules;       /* argrule.h sets, NULL entries skipped */
	size_t nrules;
	mcp_validate_fn validate;       /* NULL: no schema checks */
	void *validate_arg;
};

struct mcp_inspect {
	json_t *root;                 /* parsed body, owned */
	int batch;                    /* body was an array */
	size_t n;                     /* messages */
	struct policy_result *res;    /* one per message */
	int status;                   /* 0: forward; else HTTP status to answer (400/403) */
	const char *reason;           /* on refusal: short reason for audit/metrics */
	char *error_body;             /* on refusal: JSON-RPC error response body (malloc'd) */
	const char *method;           /* first message's method (for audit), borrowed */
	const char *name;             /* first message's tool/prompt/resource name, borrowed */
	int has_initialize;           /* an initialize request is in the body */
	int only_notifications;       /* no request with an id (upstream answers 202) */
	char **detail;                /* per message: why it was refused (argument rule,
	                               * schema), malloc'd, or NULL */
	struct mcp_pending_list *lists; /* listings first, then the other requests */
	size_t nlists;                /* entries in lists */
	size_t nlisting;              /* of which listing requests (to be filtered) */
};

/* Parses and checks a POST body for an agent with the given effective scopes.
 * Invalid JSON -> status 400, -32700; not JSON-RPC 2.0 (or empty batch) -> 400, -32600;
 * any element denied -> 403 with one JSON-RPC error per denied request id (the whole
 * request is refused); mcp_method/mcp_name (the Mcp-Method / Mcp-Name request headers,
 * NULL when absent) must match the (single) message, else 400.
 * Returns 0 (out filled, check out->status) or -1 on allocation failure.
 * Free with mcp_inspect_free. */
int mcp_inspect_body(const char *body, size_t len, char *const *scopes, size_t nscopes,
    const char *mcp_method, const char *mcp_name, struct mcp_inspect *out);
/* The same with every rule the agent has: after the scopes, each tools/call they
 * allow is checked against az->rules (a failure is 403, JSON-RPC -32001, reason
 * "argument rule", the message naming the argument and the rule: argrule.h) and then
 * with az->validate (a failure is 400, JSON-RPC -32602). In a batch the first refused
 * message decides the status; every refused request gets its own error. */
int mcp_inspect_request(const char *body, size_t len, const struct mcp_authz *az,
    const char *mcp_method, const char *mcp_name, struct mcp_inspect *out);
void mcp_inspect_free(struct mcp_inspect *in);

/* A JSON-RPC error response {"jsonrpc":"2.0","id":id|null,"error":{code,message}}.
 * id is borrowed (NULL -> null). Returns malloc'd text or NULL. */
char *mcp_error_body(json_t *id, int code, const char *message);
/* The same error as a new object (caller owns the reference), or NULL. */
json_t *mcp_error_obj(json_t *id, int code, const char *message);

/* ---- listing responses (mcp_list.c) ---- */

/* Rewrites a JSON response body (single or batch) so that responses to the pending
 * listing requests only contain entries the scopes allow. Returns a malloc'd new body
 * (*outlen set) when something changed, NULL when the body is to be passed unchanged
 * (nothing pending, nothing removed, or not JSON at all).
 * Fails closed: a listing result of a shape policy_filter_listing does not understand
 * becomes a JSON-RPC error (-32003), and a body that starts like JSON but cannot be
 * parsed here (nesting beyond 2048, lone surrogate escapes, 64-bit overflow — all of
 * which a JavaScript client might accept) is replaced by one error per pending listing.
 * Ill-formed UTF-8 is replaced by U+FFFD before filtering, as the client would.
 * Out of memory: NULL with *outlen == (size_t)-1; the caller must not send the body. */
char *mcp_filter_json(const char *body, size_t len, const struct mcp_pending_list *lists,
    size_t nlists, char *const *scopes, size_t nscopes, size_t *outlen);

/* Sees every message of a filtered body or stream before it is filtered: answered is
 * the pending entry a response answers (a listing or another request), NULL for
 * requests and notifications from the server. Used to learn tool schemas from
 * tools/list answers and to forget them on notifications/tools/list_changed. */
typedef void (*mcp_observe_fn)(void *arg, json_t *msg, const struct mcp_pending_list *answered);
/* mcp_filter_json with an observer (NULL: none). */
char *mcp_filter_json_observed(const char *body, size_t len,
    const struct mcp_pending_list *lists, size_t nlists, char *const *scopes,
    size_t nscopes, mcp_observe_fn fn, void *arg, size_t *outlen);

/* Incremental text/event-stream filter. Bytes go in as they arrive; complete events
 * come out through emit() unchanged, except an event whose data is a JSON-RPC response
 * to one of the pending listing requests, which comes out filtered. Only the event being
 * assembled is buffered (at most max_event bytes; a larger event that could be a listing
 * response is replaced by a JSON-RPC error event rather than leaked unfiltered). */
struct mcp_sse;
/* emit returns 0 on success; anything else makes feed/finish return -1. */
typedef int (*mcp_emit_fn)(void *arg, const char *p, size_t n);
/* lists/scopes are borrowed and must outlive the filter. max_event 0 means 16 MiB.
 * With nlists == 0 (e.g. a GET stream) and once every listing has been answered, bytes
 * pass straight through without buffering. Returns NULL when out of memory. */
struct mcp_sse *mcp_sse_new(const struct mcp_pending_list *lists, size_t nlists,
    char *const *scopes, size_t nscopes, size_t max_event);
/* Returns 0, or -1 when emit failed or memory ran out. */
int mcp_sse_feed(struct mcp_sse *s, const char *p, size_t n, mcp_emit_fn emit, void *arg);
/* Sets an observer (see mcp_observe_fn) before the first feed. With one set, a filter
 * with nothing to filter still parses each event (to observe it) and emits it as
 * received. */
void mcp_sse_observe(struct mcp_sse *s, mcp_observe_fn fn, void *arg);
/* Emits whatever partial event is left (end of stream). */
int mcp_sse_finish(struct mcp_sse *s, mcp_emit_fn emit, void *arg);
void mcp_sse_free(struct mcp_sse *s);

#endif
