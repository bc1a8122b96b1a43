/* certgate agent stdio: an MCP server on stdin/stdout (the MCP stdio transport:
 * newline-delimited JSON-RPC) that relays every message to the gateway over
 * Streamable HTTP with mTLS. This is what a desktop MCP client runs as its server
 * "command".
 *
 * Client to gateway: each line is POSTed (Accept: application/json,
 * text/event-stream) with the session's Mcp-Session-Id and MCP-Protocol-Version
 * once initialize has answered. Gateway to client: JSON answers and every message
 * of an SSE answer are written to stdout in the order they arrive, one whole
 * message per line (messages never interleave); 202 answers write nothing. After the
 * client's notifications/initialized the GET stream carries the server's own
 * requests and notifications (405: the server has none); it is resumed with
 * Last-Event-ID after a drop, and so is a POST's stream that ended before its
 * answer. If the gateway no longer knows the session (404: it restarted), the
 * bridge opens a new one by replaying the client's initialize, then resends. On
 * stdin EOF it finishes what is in flight and ends the session (DELETE).
 *
 * Logs go to stderr only. The whole bridge runs on one thread (plus the renewal
 * thread of agent_renew.h). */
#ifndef CERTGATE_AGENT_STDIO_H
#define CERTGATE_AGENT_STDIO_H

struct agent_stdio_args {
	const char *url;         /* https://HOST:PORT/PATH of the gateway's MCP endpoint */
	const char *dir;         /* AGENTDIR */
	const char *renew_url;   /* EST origin for renewal, NULL: url's origin */
};

/* Runs the bridge until stdin ends (or SIGTERM/SIGINT, or stdout closes). Returns
 * the process exit status: 0 after a clean end, 1 when it could not start. */
int agent_stdio_run(const struct agent_stdio_args *a);

#endif
