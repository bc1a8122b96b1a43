/* The stdio upstream (upstream.command): an in-process Streamable HTTP server, on a
 * thread of its own, that runs one stdio MCP server per MCP session (stdioproc.h) and
 * maps HTTP to its stdin/stdout (stdiomap.h).
 *
 * Why an HTTP server inside the gateway rather than a second path through the proxy:
 * the proxy then treats a stdio server exactly like an HTTP upstream — the same
 * authorization, listing filters, schema checks, audit, rate limits, session binding
 * and backpressure (flow control on the socket) — with no second implementation of
 * any of them. There is no listening socket: each upstream connection is one end of
 * a socketpair whose other end the hub adopts (stdiohub_connect), so no other local
 * process can reach the servers.
 *
 * HTTP semantics of the hub (what the proxy sees as its upstream):
 *   POST with an initialize and no Mcp-Session-Id: a new session and process; the
 *     response carries Mcp-Session-Id. Other POSTs need a known Mcp-Session-Id (400
 *     without, 404 unknown). A POST with no request is answered 202; otherwise 200
 *     text/event-stream carrying the server's messages for it (responses, progress,
 *     and server requests while no GET stream is open) until every request is
 *     answered. At max_processes, a new session gets 503.
 *   GET: the session's stream of server-initiated messages (one at a time: 409).
 *   DELETE: ends the session and its process (200).
 *   When the process exits the session ends: streams in progress are cut (the
 *   client sees an incomplete response) and its id answers 404 from then on.
 *
 * Threading: stdiohub_start/stop on the main thread; stdiohub_connect on any thread. */
#ifndef CERTGATE_STDIOHUB_H
#define CERTGATE_STDIOHUB_H

#include "config.h"

/* Starts the hub thread for cfg->upstream.command (cfg borrowed until stdiohub_stop).
 * Returns 0/-1 (logged). */
int stdiohub_start(const struct config *cfg);

/* Stops the hub: every session's process ended (SIGTERM, then SIGKILL after
 * limits.grace_ms), the thread joined. Safe when not started. */
void stdiohub_stop(void);

/* A new upstream connection: returns our end of a fresh socketpair (non-blocking,
 * close-on-exec) whose other end the hub serves, or -1 (errno). Any thread. */
int stdiohub_connect(void);

#endif
