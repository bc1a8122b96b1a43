/* Per-session tool table for mcp.validate_arguments: tool name -> compiled inputSchema,
 * learnt from the session's tools/list responses (schema.h does the checking).
 *
 * Lifecycle, as the proxy drives it for one MCP session:
 *   tooltab_new                 when the session is created (initialize)
 *   tooltab_learn               on every tools/list response relayed to the client
 *   tooltab_clear               on notifications/tools/list_changed from the server
 *   tooltab_check               on every tools/call from the client, before forwarding
 *   tooltab_free                when the session ends
 * A call to a tool the table does not hold is refused ("tool never listed"), so a
 * client that calls before listing, or after list_changed without listing again, is
 * refused until it lists. Refusals are JSON-RPC -32602 (HTTP 400) per the README.
 *
 * Bounds: at most max_tools tools and max_bytes bytes (tool names plus the compact JSON
 * of their inputSchemas) per table; the tools beyond are not learnt and calls to them
 * are refused with a message that names the limit.
 *
 * Thread-safety: every function takes the table's mutex, so requests of one session
 * arriving on different worker threads may use it concurrently. A validation holds the
 * mutex while it runs (bounded by schema.h's step limit). */
#ifndef CERTGATE_TOOLTAB_H
#define CERTGATE_TOOLTAB_H
#include <jansson.h>
#include <stddef.h>

#define TOOLTAB_DEFAULT_MAX_TOOLS 1024
#define TOOLTAB_DEFAULT_MAX_BYTES (4u * 1024 * 1024)

struct tooltab;

/* 0 for either bound means its default. NULL on ENOMEM. Any thread. */
struct tooltab *tooltab_new(size_t max_tools, size_t max_bytes);

/* NULL is a no-op. Only when no other thread uses the table. */
void tooltab_free(struct tooltab *t);

/* Learns from a tools/list response object ({"jsonrpc", "id", "result": {"tools":
 * [...], "nextCursor"?}}). first_page is 1 when the request carried no params.cursor:
 * the table is then replaced by this page's tools; 0 (a continuation page) adds them.
 * Per tool: its inputSchema is compiled (schema_compile); a tool without a string name
 * is skipped; a tool whose inputSchema is missing or does not compile is kept as
 * unusable (calls refused, with the compile error); a name listed twice with different
 * schemas is kept as unusable (ambiguous). Returns the number of tools learnt from
 * this page, or -1 when the response is not a tools/list result (an error response,
 * no result.tools array), and then the table is unchanged. */
int tooltab_learn(struct tooltab *t, json_t *response, int first_page);

/* Forgets every tool (notifications/tools/list_changed). */
void tooltab_clear(struct tooltab *t);

/* Number of tools held (usable or not). */
size_t tooltab_count(struct tooltab *t);

#define TOOLTAB_DETAIL_MAX 480

struct tooltab_result {
	int allow;                /* 1 allow, 0 deny */
	const char *reason;       /* on deny (static): "tool never listed",
	                           * "unusable inputSchema", "invalid arguments" */
	/* On deny, for the JSON-RPC error message (-32602) and the audit record, e.g.
	 *   tool "get-sum" was not listed in this session (call tools/list first)
	 *   tool "x": inputSchema not usable: $.properties.q.pattern: PCRE2: ...
	 *   arguments.a: expected number, got string */
	char detail[TOOLTAB_DETAIL_MAX];
};

/* Checks a tools/call: tool is params.name, arguments params.arguments (NULL when the
 * call has none: validated as {}). Returns 0 with *res filled. Any thread. */
int tooltab_check(struct tooltab *t, const char *tool, json_t *arguments,
    struct tooltab_result *res);

#endif
