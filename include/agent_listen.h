/* certgate agent listen: a plain-HTTP listener on loopback that forwards every
 * request to the gateway's MCP endpoint over HTTPS with the agent's certificate, for
 * MCP clients that speak Streamable HTTP but cannot do mTLS (mcp-remote with
 * --allow-http, IDE plugins).
 *
 * Incoming requests are read with certgate's strict HTTP/1.1 reader (http.h) and
 * only what it parsed is forwarded: GET, POST and DELETE of the --url's path, with
 * the headers the MCP transport uses (Content-Type, Accept, Mcp-Session-Id,
 * MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name). Answers stream back as
 * they arrive (SSE included), with backpressure both ways: a client that stops
 * reading stops the transfer from the gateway, a gateway that stops reading stops
 * the reading of the client's body.
 *
 * Anyone who can connect acts with the agent's certificate, so the listener binds
 * loopback only (unless --allow-remote), and refuses requests whose Host is not a
 * loopback name or whose Origin is a web page elsewhere (DNS rebinding and
 * cross-site requests from a local browser).
 *
 * One thread (plus the renewal thread of agent_renew.h). */
#ifndef CERTGATE_AGENT_LISTEN_H
#define CERTGATE_AGENT_LISTEN_H

struct agent_listen_args {
	const char *listen;       /* HOST:PORT */
	const char *url;          /* https://HOST:PORT/PATH of the gateway's endpoint */
	const char *dir;          /* AGENTDIR */
	const char *renew_url;    /* EST origin for renewal, NULL: url's origin */
	int allow_remote;         /* bind a non-loopback address */
	int grace_s;              /* how long requests in flight may finish after
	                           * SIGTERM/SIGINT */
};

/* Runs until SIGTERM/SIGINT, then drains: no new connections, idle ones and GET
 * streams closed, requests in flight answered for up to grace_s seconds. Returns
 * the exit status (0 after a signal, 1 when it cannot start). */
int agent_listen_run(const struct agent_listen_args *a);

#endif
