/* MCP authorization: scopes against JSON-RPC messages. Pure functions, no I/O.
 *
 * Scope grammar (README): "*", "mcp:METHOD-GLOB", "tools:NAME-GLOB",
 * "resources:URI-GLOB", "prompts:NAME-GLOB". Globs know '*' and '?' only and match
 * case-sensitively over the whole string. */
#ifndef CERTGATE_POLICY_H
#define CERTGATE_POLICY_H
#include <jansson.h>
#include <stddef.h>

/* 1 when pattern (with '*' and '?') matches the whole of s. */
int policy_glob(const char *pattern, const char *s);

/* 1 when scope is well-formed per the grammar, 0 otherwise. */
int policy_scope_valid(const char *scope);

struct policy_result {
	int allow;           /* 1 allow, 0 deny */
	const char *reason;  /* static string on deny, e.g. "missing scope", "invalid request" */
	const char *method;  /* borrowed from the message (NULL for responses) */
	const char *name;    /* tool / prompt name or resource URI, borrowed, or NULL */
	json_t *id;          /* borrowed request id, or NULL for notifications/responses */
	int is_request;      /* has method and id */
	int is_notification;
	int is_response;     /* client's response to a server request */
};

/* Decides one JSON-RPC message (a JSON object) for an agent with the given effective
 * scopes. Returns 0 with *res filled (allow or deny), or -1 when msg is not a valid
 * JSON-RPC 2.0 message (res->reason says why; the caller answers -32600).
 * Always allowed: initialize, ping, notifications/... sent as notifications, and
 * responses to server requests. Listing methods (tools/list, …) need an mcp: scope; the
 * tools:/prompts:/resources: scopes do not grant them (the result is then filtered).
 * Deny reasons: "missing scope", "missing tool name", "missing prompt name",
 * "missing resource uri", "path traversal". */
int policy_check_message(char *const *scopes, size_t nscopes, json_t *msg,
    struct policy_result *res);

/* 1 if the scopes allow tools/call of tool `name` (same for prompts/get and resource URIs);
 * used to filter listings. kind is "tools", "prompts" or "resources". "*" and an mcp:
 * scope granting the call method (tools/call, prompts/get, resources/read) allow every
 * name. A resource URI containing '%' or a ".." segment is allowed only by a
 * resources: scope equal to it (no glob), the same rule as for resources/read. */
int policy_allows_name(char *const *scopes, size_t nscopes, const char *kind, const char *name);

/* Filters the result of tools/list, prompts/list or resources/list in place (the
 * response object: {"jsonrpc","id","result":{...}}) to the entries the scopes allow.
 * Returns the number of entries removed, or -1 when the shape is not understood
 * (then nothing was changed). */
int policy_filter_listing(char *const *scopes, size_t nscopes, const char *method, json_t *response);

#endif
